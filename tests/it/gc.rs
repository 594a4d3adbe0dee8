//! `gc`: what it removes, what it must never remove (chunks an import in
//! flight reuses, anything a record names), eviction, and dry runs.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::tar::{Meta, TarBuilder};
use common::{random_bytes, sha256, Cs};

/// A tar with the given files (directories implied by none: flat names).
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut t = TarBuilder::new();
    for (name, content) in files {
        t.file(name, &Meta::default(), content);
    }
    t.finish()
}

/// Runs `gc --json` with extra flags; returns the report.
fn gc(cs: &Cs, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["gc", "-v", "--json"];
    args.extend_from_slice(extra);
    cs.json(&args)
}

/// Every regular file under `root` with its size, but the record files,
/// locks and the pool's config: what a store holds beyond empty structure.
fn content_files(root: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if meta.is_dir() {
                stack.push(path);
            } else if !(name.ends_with(".json")
                || name.ends_with(".lock")
                || name == "sweep.intent")
            {
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), meta.len());
            }
        }
    }
    out
}

/// Directories under `root` that are named like item IDs.
fn id_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.len() == 64 || name.starts_with(".tmp-") {
                    out.push(entry.path());
                }
                stack.push(entry.path());
            }
        }
    }
    out
}

/// Exports a layer and returns the sha256 of its uncompressed tar.
fn exported(cs: &Cs, id: &str) -> String {
    sha256(&cs.ok_bytes(&["diff", "--uncompressed", id]))
}

fn with_driver(cs: &Cs, driver: &str, args: &[&str]) -> String {
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", driver]).args(args);
    let out = common::run_command(cmd, None);
    common::expect_status(&out, args, 0);
    String::from_utf8(out.stdout).unwrap()
}

/// Builds images, containers, mounts and a written live layer, then
/// deletes everything: `gc` must leave nothing but empty structure.
fn everything_goes(driver: &str) {
    let cs = Cs::new();
    let run = |args: &[&str]| with_driver(&cs, driver, args);
    let shared = random_bytes(1, 300_000);
    let base_tar = tar_of(&[("a", &shared), ("b", &random_bytes(2, 90_000))]);
    let base = common::first_line_of(&run(&[
        "import-layer",
        "-f",
        write_tmp(&cs, "base.tar", &base_tar).to_str().unwrap(),
    ]));
    let top = common::first_line_of(&run(&[
        "import-layer",
        "-f",
        write_tmp(&cs, "top.tar", &tar_of(&[("c", &shared), ("d", b"small")]))
            .to_str()
            .unwrap(),
        &base,
    ]));
    run(&["create-image", "--name", "img", &top]);
    run(&["create-container", "--name", "c1", "img"]);
    let mnt = run(&["mount", "c1"]).trim().to_string();
    std::fs::write(Path::new(&mnt).join("written"), b"by the container").unwrap();
    run(&["mount", "-r", "img"]);
    run(&[
        "set-image-data",
        "-f",
        write_tmp(&cs, "data", b"data").to_str().unwrap(),
        "img",
        "key",
    ]);
    let live = common::first_line_of(&run(&["create-layer", &top]));
    let dir = run(&["mount", &live]).trim().to_string();
    std::fs::write(Path::new(&dir).join("new"), b"live").unwrap();
    run(&["unmount", &live]);
    run(&["unmount", "img"]);
    run(&["unmount", "c1"]);
    run(&["delete-container", "c1"]);
    run(&["delete-layer", &live]);
    run(&["delete-image", "img"]);
    for id in cs.layer_ids() {
        run(&["delete-layer", &id]);
    }
    assert!(cs.layer_ids().is_empty());
    let report = gc(&cs, &["--storage-driver", driver]);
    assert!(
        report["chunks"]["chunks_removed"].as_u64().unwrap() > 0,
        "{report}"
    );
    let left = content_files(&cs.graph());
    assert!(
        left.is_empty(),
        "{driver}: gc left content behind: {left:?}"
    );
    let dirs = id_dirs(&cs.graph());
    assert!(
        dirs.is_empty(),
        "{driver}: gc left directories behind: {dirs:?}"
    );
    let links: Vec<_> = std::fs::read_dir(cs.graph().join("overlay/l"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(links.is_empty(), "{driver}: short links left: {links:?}");
    let again = gc(&cs, &["--storage-driver", driver]);
    assert_eq!(again["freed_bytes"], 0, "{again}");
}

fn write_tmp(cs: &Cs, name: &str, bytes: &[u8]) -> PathBuf {
    let path = cs.dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn after_deleting_everything_vfs_gc_leaves_only_empty_structure() {
    everything_goes("vfs");
}

#[test]
fn after_deleting_everything_overlay_gc_leaves_only_empty_structure() {
    if common::need_root("overlay mounts") {
        everything_goes("overlay");
    }
}

#[test]
fn a_dry_run_reports_what_a_real_run_then_removes_and_removes_nothing() {
    let cs = Cs::new();
    let a = cs.import(&tar_of(&[("a", &random_bytes(3, 200_000))]), &[]);
    let b = cs.import(&tar_of(&[("b", &random_bytes(4, 200_000))]), &[]);
    cs.ok(&["delete-layer", &a]);
    let before = content_files(&cs.graph());
    let dry = gc(&cs, &["--dry-run"]);
    assert_eq!(
        content_files(&cs.graph()),
        before,
        "a dry run removed something"
    );
    let real = gc(&cs, &[]);
    for key in ["chunks_removed", "chunk_bytes_removed", "packs_removed"] {
        assert_eq!(
            dry["chunks"][key], real["chunks"][key],
            "{key}: {dry} vs {real}"
        );
    }
    assert_eq!(real["chunks"]["chunk_bytes_removed"], 200_000);
    assert_eq!(
        exported(&cs, &b),
        cs.layer_json(&b)["diff-digest"].as_str().unwrap()
    );
    let text = cs.ok(&["gc", "--dry-run"]);
    assert!(text.ends_with("Would free 0 bytes\n"), "{text:?}");
    // Without `--dry-run` or `-v`, nothing, as upstream's `gc` prints;
    // with `-v`, what was freed.
    assert_eq!(cs.ok(&["gc"]), "");
    assert_eq!(cs.ok(&["gc", "--json"]), "\"\"\n");
    assert_eq!(cs.ok(&["gc", "-v"]), "Freed 0 bytes\n");
}

#[test]
fn leftovers_of_dead_writers_and_stray_directories_go_and_committed_layers_stay() {
    let cs = Cs::new();
    let content = random_bytes(5, 500_000);
    let id = cs.import(&tar_of(&[("f", &content)]), &["--name", "kept"]);
    let digest = cs.layer_json(&id)["diff-digest"]
        .as_str()
        .unwrap()
        .to_string();
    cs.ok(&["create-image", "--name", "img", &id]);
    let g = cs.graph();
    let stray_id = "ab".repeat(32);
    let plant = |rel: &str, bytes: &[u8]| {
        let path = g.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    };
    // An import killed before publishing, one killed between the pack
    // and its index, an index write that never got renamed.
    plant("chunks/tmp/0123456789abcdef.pack", &random_bytes(6, 4096));
    plant(
        "chunks/packs/00000000000000000000000000000000.pack",
        &random_bytes(7, 4096),
    );
    plant("chunks/packs/.tmp-0011223344556677-x.idx", b"partial");
    // Deleted layers' manifests and directories, and partial writes.
    plant(&format!("manifests/{stray_id}"), b"orphan manifest");
    plant("manifests/.tmp-0011223344556677-y", b"partial");
    plant(&format!("vfs-layers/{stray_id}/key"), b"layer data");
    plant(
        &format!("vfs-layers/{stray_id}.tar-split.gz"),
        b"a deleted layer's tar-split",
    );
    plant(&format!("vfs-images/{stray_id}/key"), b"image data");
    plant(
        &format!("vfs-containers/{stray_id}/userdata/x"),
        b"container data",
    );
    plant("vfs-images/.tmp-0011223344556677-images.json", b"[]");
    plant(
        &format!("vfs/dir/{stray_id}/etc/file"),
        b"a deleted layer's tree",
    );
    plant(
        &format!("vfs/dir/.tmp-0011223344556677-{id}/half"),
        b"a build that died",
    );
    plant("objects/tmp/0123abcd", b"an object being written");
    plant(
        &format!("objects/cd/{}", "cd".repeat(32)),
        b"an object no tree needs",
    );
    let report = gc(&cs, &[]);
    assert_eq!(report["chunks"]["leftovers_removed"], 3, "{report}");
    assert_eq!(report["manifests"], 1, "{report}");
    assert_eq!(report["data_dirs"], 3, "{report}");
    assert_eq!(report["driver_dirs"], 2, "{report}");
    assert_eq!(report["objects"]["objects"], 2, "{report}");
    assert!(report["temporary"].as_u64().unwrap() >= 3, "{report}");
    let kept_split = PathBuf::from(format!("vfs-layers/{id}.tar-split.gz"));
    let left: Vec<_> = content_files(&g)
        .into_keys()
        .filter(|p| !p.starts_with("chunks/packs") && !p.starts_with("manifests"))
        .filter(|p| *p != kept_split)
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let packs = std::fs::read_dir(g.join("chunks/packs")).unwrap().count();
    assert_eq!(packs, 2, "one pack and its index remain");
    assert_eq!(exported(&cs, "kept"), digest);
    cs.ok(&["create-container", "--name", "c", "img"]);
    let mnt = cs.ok(&["mount", "c"]).trim().to_string();
    assert_eq!(std::fs::read(Path::new(&mnt).join("f")).unwrap(), content);
}

#[test]
fn a_record_file_write_that_a_live_process_holds_survives_gc() {
    let cs = Cs::new();
    cs.ok(&["layers"]);
    let dir = cs.graph().join("vfs-layers");
    let held = dir.join(".tmp-00112233aabbccdd-layers.json");
    let dead = dir.join(".tmp-44556677aabbccdd-layers.json");
    std::fs::write(&dead, b"[]").unwrap();
    // A writer that has taken the room for the next layers.json (an
    // import between its chunks and its record) holds a lock on it.
    let script = format!(
        "exec 9>{}; flock --exclusive 9; exec sleep 60",
        held.display()
    );
    let mut holder = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .spawn()
        .expect("sh runs");
    let is_held = || {
        Command::new("flock")
            .args(["--nonblock", "--exclusive", held.to_str().unwrap(), "true"])
            .status()
            .is_ok_and(|s| s.code() == Some(1))
    };
    let start = std::time::Instant::now();
    while !is_held() {
        assert!(start.elapsed().as_secs() < 10, "the lock was never taken");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let report = gc(&cs, &[]);
    let (held_left, dead_left) = (held.exists(), dead.exists());
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        held_left,
        "gc removed a temporary file a live process holds"
    );
    assert!(!dead_left, "gc left a dead writer's temporary file");
    assert_eq!(report["temporary"], 1, "{report}");
    let report = gc(&cs, &[]);
    assert!(
        !held.exists(),
        "gc left a temporary file once its holder died"
    );
    assert_eq!(report["temporary"], 1, "{report}");
}

#[test]
fn a_pack_with_some_garbage_is_rewritten_and_its_live_chunks_survive() {
    let cs = Cs::new();
    let shared = random_bytes(8, 400_000);
    let gone = random_bytes(9, 300_000);
    let x = cs.import(&tar_of(&[("shared", &shared), ("gone", &gone)]), &[]);
    let y = cs.import(&tar_of(&[("again", &shared), ("own", b"own")]), &[]);
    let digest = cs.layer_json(&y)["diff-digest"]
        .as_str()
        .unwrap()
        .to_string();
    cs.ok(&["delete-layer", &x]);
    // Below the threshold the pack stays as it is.
    let kept = gc(&cs, &["--pack-garbage", "90"]);
    assert_eq!(kept["chunks"]["packs_rewritten"], 0, "{kept}");
    assert_eq!(kept["chunks"]["chunks_removed"], 0, "{kept}");
    let report = gc(&cs, &[]);
    assert_eq!(report["chunks"]["packs_rewritten"], 1, "{report}");
    assert_eq!(report["chunks"]["chunk_bytes_removed"], 300_000, "{report}");
    assert_eq!(exported(&cs, &y), digest);
    let status = common::stderr(&cs.run(&["status"], None));
    assert!(
        status.contains("Pool Unique Bytes: 400003"),
        "only the shared file and `own` remain: {status}"
    );
}

/// The race the sweep guard exists for: an import that reuses chunks a
/// deleted layer left (still in the pool, referenced by no manifest)
/// while `gc` runs in another process.
#[test]
fn gc_never_sweeps_chunks_that_an_import_in_flight_reuses() {
    let cs = Cs::new();
    let rounds = 12;
    let mut layers = Vec::new();
    for round in 0..rounds {
        let tar = tar_of(&[
            ("big", &random_bytes(100 + round, 3_000_000)),
            ("other", &random_bytes(200 + round, 1_000_000)),
        ]);
        let first = cs.import(&tar, &[]);
        cs.ok(&["delete-layer", &first]);
        let path = write_tmp(&cs, &format!("round{round}.tar"), &tar);
        let mut import = cs.command();
        import
            .args(["import-layer", "-f", path.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut sweep = cs.command();
        sweep
            .args(["gc"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Alternate which starts first, so both orders are exercised.
        let (import, sweep) = if round % 2 == 0 {
            let i = import.spawn().unwrap();
            (i, sweep.spawn().unwrap())
        } else {
            let s = sweep.spawn().unwrap();
            (import.spawn().unwrap(), s)
        };
        let imported = import.wait_with_output().unwrap();
        let swept = sweep.wait_with_output().unwrap();
        assert!(swept.status.success(), "gc: {}", common::stderr(&swept));
        assert!(
            imported.status.success(),
            "import: {}",
            common::stderr(&imported)
        );
        let id = common::first_line_of(&common::stdout(&imported));
        layers.push((id, sha256(&tar)));
    }
    gc(&cs, &[]);
    for (id, digest) in &layers {
        assert_eq!(&exported(&cs, id), digest, "layer {id} lost chunks");
    }
}

/// A command with a `storage.conf` that sets the eviction policy.
fn with_policy(cs: &Cs, after: &str, args: &[&str]) -> String {
    let conf = write_tmp(
        cs,
        "storage.conf",
        format!("[storage.options]\nmaterialized_evict_after = \"{after}\"\n").as_bytes(),
    );
    let mut cmd = cs.command();
    cmd.env("CONTAINERS_STORAGE_CONF", conf).args(args);
    let out = common::run_command(cmd, None);
    common::expect_status(&out, args, 0);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn eviction_follows_the_policy_spares_mounted_layers_and_rebuilds_on_mount() {
    let cs = Cs::new();
    let content = random_bytes(10, 100_000);
    let id = cs.import(&tar_of(&[("f", &content)]), &[]);
    cs.ok(&["create-image", "--name", "img", &id]);
    let tree = PathBuf::from(cs.ok(&["mount", "-r", "img"]).trim());
    let evicted = |r: &serde_json::Value| r["evicted"]["layers"].as_u64().unwrap();
    assert_eq!(
        evicted(&gc(&cs, &["--evict", "all"])),
        0,
        "a mounted tree was evicted"
    );
    assert!(tree.is_dir());
    cs.ok(&["unmount", "img"]);
    let report: serde_json::Value =
        serde_json::from_str(&with_policy(&cs, "1h", &["gc", "-v", "--json"])).unwrap();
    assert_eq!(
        evicted(&report),
        0,
        "a tree used a moment ago was evicted: {report}"
    );
    // An hour and a half later, by the use stamp.
    let stamp = cs.graph().join("vfs-layers/.used").join(&id);
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(5400);
    std::fs::File::options()
        .write(true)
        .open(&stamp)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(
        evicted(&gc(&cs, &["--evict", "2h"])),
        0,
        "--evict overrides the policy"
    );
    let report: serde_json::Value =
        serde_json::from_str(&with_policy(&cs, "1h", &["gc", "-v", "--json"])).unwrap();
    assert_eq!(evicted(&report), 1, "{report}");
    assert!(!tree.exists(), "the evicted tree is still there");
    let again = PathBuf::from(cs.ok(&["mount", "-r", "img"]).trim());
    assert_eq!(std::fs::read(again.join("f")).unwrap(), content);
    cs.ok(&["unmount", "img"]);
    let bad = cs.dir.path().join("bad.conf");
    std::fs::write(
        &bad,
        "[storage.options]\nmaterialized_evict_after = \"soon\"\n",
    )
    .unwrap();
    let out = common::run_command(
        {
            let mut c = cs.command();
            c.env("CONTAINERS_STORAGE_CONF", &bad).arg("gc");
            c
        },
        None,
    );
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("materialized_evict_after"),
        "{}",
        common::stderr(&out)
    );
}

/// Regression (issue 14): `gc` sealed a written `create-layer` layer into
/// the pool, after which the next mount was read-only.
#[test]
fn gc_never_seals_a_written_layer_and_it_stays_writable() {
    let cs = Cs::new();
    let live = common::first_line_of(&cs.ok(&["create-layer"]));
    let dir = PathBuf::from(cs.ok(&["mount", &live]).trim());
    std::fs::write(dir.join("made"), b"while live").unwrap();
    cs.ok(&["unmount", &live]);
    let before = cs.layer_json(&live);
    gc(&cs, &[]);
    assert_eq!(cs.layer_json(&live), before);
    assert!(!cs.graph().join("manifests").join(&live).exists());
    let dir = PathBuf::from(cs.ok(&["mount", &live]).trim());
    std::fs::write(dir.join("again"), b"still writable").unwrap();
    cs.ok(&["unmount", &live]);
    let listing = Command::new("tar")
        .arg("-t")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut tar| {
            use std::io::Write;
            tar.stdin
                .take()
                .unwrap()
                .write_all(&cs.ok_bytes(&["diff", &live]))?;
            tar.wait_with_output()
        })
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing.contains("made") && listing.contains("again"),
        "{listing}"
    );
}

/// The six squashed Debian images in one store; three are deleted: `gc`
/// frees at least every chunk only those three used.
#[test]
fn on_the_debian_store_gc_frees_the_chunks_only_deleted_images_used() {
    let Some(tars) = common::debian_tars() else {
        return;
    };
    use containers_storage::{ImageOptions, LayerOptions, Store, StoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        graph_root: dir.path().join("graph"),
        run_root: dir.path().join("run"),
        driver: "vfs".into(),
        ..containers_storage::StoreOptions::defaults()
    };
    let store = Store::open(options.clone()).unwrap();
    let names = [
        "bookworm-base.tar",
        "trixie-base.tar",
        "bookworm-curl.full.tar",
        "trixie-curl.full.tar",
        "bookworm-python3.full.tar",
        "trixie-python3.full.tar",
    ];
    let mut images = Vec::new();
    for name in names {
        let file = std::fs::File::open(tars.join(name)).unwrap();
        let layer = store
            .import_layer(
                None,
                &LayerOptions::default(),
                std::io::BufReader::new(file),
                &(),
            )
            .unwrap();
        let image = store
            .create_image(Some(&layer.id), &ImageOptions::default())
            .unwrap();
        images.push((name, image.id, layer));
    }
    let chunks_of =
        |layer: &containers_storage::Layer| -> HashSet<(containers_storage::ChunkId, u32)> {
            let m = store.layer_manifest(layer).unwrap();
            m.entries
                .iter()
                .flat_map(|e| e.chunks.iter().map(|c| (c.id, c.len)))
                .collect()
        };
    let (gone, stay) = images.split_at(3);
    let kept: HashSet<_> = stay.iter().flat_map(|(_, _, l)| chunks_of(l)).collect();
    let only_gone: HashSet<_> = gone
        .iter()
        .flat_map(|(_, _, l)| chunks_of(l))
        .filter(|c| !kept.contains(c))
        .collect();
    let expected: u64 = only_gone.iter().map(|(_, len)| *len as u64).sum();
    let before = store.pool().stats().unwrap();
    for (_, image, _) in gone {
        store.delete_image(image, false).unwrap();
    }
    let report = store
        .gc(&containers_storage::store::GcOptions::default())
        .unwrap();
    drop(store);
    let after = Store::open(options).unwrap().pool().stats().unwrap();
    eprintln!(
        "pool: {} -> {} unique bytes, {} -> {} on disk; chunks only the deleted images used: {} bytes; gc freed {} bytes",
        before.unique_bytes, after.unique_bytes, before.stored_bytes, after.stored_bytes, expected,
        report.freed_bytes
    );
    assert!(expected > 0);
    assert!(
        before.unique_bytes - after.unique_bytes >= expected,
        "freed {} of {} bytes only the deleted images used",
        before.unique_bytes - after.unique_bytes,
        expected
    );
    assert_eq!(
        after.unique_bytes,
        kept.iter().map(|(_, l)| *l as u64).sum::<u64>()
    );
    assert!(after.stored_bytes < before.stored_bytes);
}

/// Every layer of `driver` exports its diff digest, byte for byte.
fn all_export(cs: &Cs, driver: &str) -> usize {
    let listing: serde_json::Value =
        serde_json::from_str(&with_driver(cs, driver, &["layers", "--json"])).unwrap();
    let layers = listing.as_array().unwrap();
    for layer in layers {
        let id = layer["id"].as_str().unwrap();
        let want = layer["diff-digest"].as_str().unwrap_or_default();
        if want.is_empty() {
            continue;
        }
        let mut cmd = cs.command();
        cmd.args(["--storage-driver", driver, "diff", "-u", id]);
        let got = common::streamed_digest(cmd).unwrap_or_else(|e| panic!("{driver} {id}: {e}"));
        assert_eq!(got, want, "{driver} layer {id} no longer exports its tar");
    }
    layers.len()
}

/// `check` with `driver` must be clean (exit 0, no problem listed).
fn checks_clean(cs: &Cs, driver: &str) {
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", driver, "check"]);
    let out = common::run_command(cmd, None);
    common::expect_status(&out, &[driver, "check"], 0);
    assert!(out.stdout.is_empty(), "{}", common::stdout(&out));
}

/// The pool, manifests and objects are shared by both drivers: `gc` and
/// `check -r` with either one must keep what the other's layers use.
#[test]
fn gc_and_check_with_either_driver_keep_every_layer_of_both_drivers() {
    let cs = Cs::new();
    let on = |driver: &str, args: &[&str]| with_driver(&cs, driver, args);
    let tar = |name: &str, seed: u64| {
        write_tmp(
            &cs,
            name,
            &tar_of(&[(name, &random_bytes(seed, 400_000)), ("s", b"small")]),
        )
    };
    let import = |driver: &str, name: &str, seed: u64, parent: Option<&str>| {
        let path = tar(name, seed);
        let mut args = vec!["import-layer", "-n", name, "-f", path.to_str().unwrap()];
        args.extend(parent);
        common::first_line_of(&on(driver, &args))
    };
    // overlay: a chain, imported without a mount.
    let keep = import("overlay", "keep", 11, None);
    import("overlay", "keep-child", 12, Some(&keep));
    // vfs: a chain under an image, materialized, and a live layer.
    let base = import("vfs", "vbase", 13, None);
    let top = import("vfs", "vtop", 14, Some(&base));
    on("vfs", &["create-image", "-n", "vimg", &top]);
    on("vfs", &["mount", "-r", "vimg"]);
    on("vfs", &["unmount", "vimg"]);
    let live = common::first_line_of(&on("vfs", &["create-layer", &top]));
    let dir = on("vfs", &["mount", &live]).trim().to_string();
    std::fs::write(Path::new(&dir).join("written"), b"live").unwrap();
    on("vfs", &["unmount", &live]);

    for driver in ["vfs", "overlay", "vfs", "overlay"] {
        let report: serde_json::Value =
            serde_json::from_str(&on(driver, &["gc", "-v", "--json", "--evict", "never"])).unwrap();
        assert_eq!(report["manifests"], 0, "{driver}: {report}");
        assert_eq!(report["chunks"]["chunks_removed"], 0, "{driver}: {report}");
        assert_eq!(report["objects"]["objects"], 0, "{driver}: {report}");
        for check in [&["check", "-r"][..], &["check"]] {
            on(driver, check);
        }
    }
    assert_eq!(all_export(&cs, "overlay"), 2);
    // The live layer was sealed by vfs's `gc`: it exports too.
    assert_eq!(all_export(&cs, "vfs"), 3);
    checks_clean(&cs, "overlay");
    checks_clean(&cs, "vfs");
    let tree = Path::new(&dir);
    assert_eq!(std::fs::read(tree.join("written")).unwrap(), b"live");
}

/// Two drivers pulling one image get layers with the same IDs (upstream
/// derives them from the content), which share `manifests/<id>`: deleting
/// one keeps the other's manifest, and other content under the same ID
/// is refused instead of replacing it.
#[test]
fn a_layer_id_both_drivers_hold_keeps_its_manifest_until_both_are_deleted() {
    let cs = Cs::new();
    let on = |driver: &str, args: &[&str]| with_driver(&cs, driver, args);
    let same = write_tmp(
        &cs,
        "same.tar",
        &tar_of(&[("f", &random_bytes(21, 300_000))]),
    );
    let other = write_tmp(
        &cs,
        "other.tar",
        &tar_of(&[("g", &random_bytes(22, 300_000))]),
    );
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for driver in ["overlay", "vfs"] {
        on(
            driver,
            &["import-layer", "-i", id, "-f", same.to_str().unwrap()],
        );
    }
    let mut cmd = cs.command();
    cmd.args([
        "--storage-driver",
        "overlay",
        "import-layer",
        "-i",
        "other-id",
    ]);
    cmd.args(["-f", other.to_str().unwrap()]);
    common::expect_status(&common::run_command(cmd, None), &["import-layer"], 0);
    // A vfs layer with the ID of overlay's `other-id` and other content.
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", "vfs", "import-layer", "-i", "other-id"]);
    cmd.args(["-f", same.to_str().unwrap()]);
    let out = common::run_command(cmd, None);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("the overlay driver has a layer with this ID"),
        "{}",
        common::stderr(&out)
    );
    on("vfs", &["delete-layer", id]);
    on("vfs", &["gc"]);
    assert_eq!(all_export(&cs, "overlay"), 2);
    checks_clean(&cs, "overlay");
    checks_clean(&cs, "vfs");
    on("overlay", &["delete-layer", id]);
    assert!(!cs.graph().join("manifests").join(id).exists());
}

/// Runs the Debian test above again in a child (this test binary) with
/// `CS_DEBIAN_TARS` naming an empty directory, `CI` set or not.
fn rerun_the_debian_test(empty: &Path, ci: bool) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "gc::on_the_debian_store_gc_frees_the_chunks_only_deleted_images_used",
        "--nocapture",
    ])
    .env("CS_DEBIAN_TARS", empty);
    if ci {
        cmd.env("CI", "true");
    } else {
        cmd.env_remove("CI");
    }
    cmd.output().unwrap()
}

/// Without the dataset (`CS_DEBIAN_TARS` set, the directory empty), a
/// dataset test skips, saying why and how to build the dataset, instead of
/// failing on a missing tar; in CI as root, where `make test` can build
/// it, it fails saying how.
#[test]
fn without_the_dataset_a_dataset_test_skips_saying_why() {
    let empty = tempfile::tempdir().unwrap();
    let out = rerun_the_debian_test(empty.path(), false);
    let (stdout, stderr) = (common::stdout(&out), common::stderr(&out));
    assert!(
        out.status.success(),
        "without the dataset the test failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the test did not run: {stdout}"
    );
    assert!(
        stderr.contains("skipped: the Debian dataset")
            && stderr.contains("holds none of its tars")
            && stderr.contains("make dataset"),
        "no reason printed: {stderr}"
    );

    let out = rerun_the_debian_test(empty.path(), true);
    let (stdout, stderr) = (common::stdout(&out), common::stderr(&out));
    if nix::unistd::geteuid().is_root() {
        assert!(
            !out.status.success() && stderr.contains("CI runs as root and must have it"),
            "in CI as root a missing dataset must fail\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert!(stderr.contains("make dataset"), "{stderr}");
    } else {
        assert!(out.status.success(), "{stdout}\n{stderr}");
    }
}
