//! Faults of the filesystem under the graph root (root only: loop mounts;
//! elsewhere the tests skip with the reason printed):
//! - disk full: imports into a small ext4 fail with a clear "no space"
//!   error, leave no record or manifest behind, `check` stays clean and
//!   earlier layers export identically; after deletes and `gc` free space,
//!   the import succeeds;
//! - an import given exactly as many free blocks as each of its steps
//!   needs, and a few more or less: it fails at that step or fits, and in
//!   every case leaves no temporary file, no pack without its index, no
//!   record and no manifest, and the store opens on the full disk;
//! - an import killed while its pack grows, on a disk then filled: the
//!   store opens, and `gc` frees the pack's space and then removes the
//!   import's record;
//! - `mount` of a container (overlay and vfs) on a full disk: a clear
//!   error, no half-built directory, no mount left or counted, `check`
//!   clean; once space is back, the mount shows every file whole;
//! - read-only graph root: write commands fail with an error that says
//!   read-only, reads keep working.
//!
//! A flipped byte in a pack is covered by the `check` tests.

use crate::common;
use crate::harness;

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Rng;
use harness::{id_of, is_incomplete, layer_tar, names_in, seed_from_env, Store};

/// An ext4 image loop-mounted at a directory; unmounted when dropped.
struct LoopFs {
    mountpoint: PathBuf,
}

impl LoopFs {
    /// Makes a `size_mib` ext4 image beside `mountpoint` (with `mkfs_args`
    /// for `mkfs.ext4`) and mounts it there.
    fn mount(mountpoint: &Path, size_mib: u64, mkfs_args: &[&str]) -> LoopFs {
        let image = mountpoint.with_extension("img");
        let file = fs::File::create(&image).unwrap();
        file.set_len(size_mib << 20).unwrap();
        drop(file);
        run_ok(
            Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .args(mkfs_args)
                .arg(&image),
        );
        fs::create_dir_all(mountpoint).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(mountpoint),
        );
        LoopFs {
            mountpoint: mountpoint.to_path_buf(),
        }
    }

    fn remount(&self, mode: &str) {
        run_ok(
            Command::new("mount")
                .args(["-o", &format!("remount,{mode}")])
                .arg(&self.mountpoint),
        );
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Lazy: a failed test may still hold files open under it.
        let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tools_present() -> bool {
    for tool in ["mkfs.ext4", "mount"] {
        let found = Command::new("which")
            .arg(tool)
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(std::env::var_os("CI").is_none(), "CI must have {tool}");
            eprintln!("skipped: {tool} is not installed");
            return false;
        }
    }
    true
}

/// The random source of the test `what`, seeded from `CS_FAULTS_SEED`
/// or afresh (and printed); `None` when the test must skip (not root, or
/// the tools are missing).
fn start(what: &str) -> Option<Rng> {
    if !common::need_root("loop-mounted filesystems") || !tools_present() {
        return None;
    }
    Some(Rng(seed_from_env("CS_FAULTS_SEED", what)))
}

/// A vfs store whose graph root is a fresh loop-mounted ext4.
fn store_on_loop_fs(size_mib: u64) -> (Store, LoopFs) {
    let st = Store::new("vfs");
    let fs = LoopFs::mount(&st.graph(), size_mib, &[]);
    (st, fs)
}

fn says_no_space(stderr: &str) -> bool {
    let lower = stderr.to_lowercase();
    lower.contains("no space") || lower.contains("enospc") || lower.contains("os error 28")
}

/// Sealed layer IDs as listed, and the manifests on disk (temporary
/// files of an interrupted write aside).
fn sealed_and_manifests(st: &Store) -> (BTreeSet<String>, BTreeSet<String>) {
    let listed = st.layers();
    for l in &listed {
        assert!(!is_incomplete(l), "incomplete layer listed: {l}");
    }
    let sealed = listed
        .iter()
        .filter(|l| l["sealed"].as_bool() == Some(true))
        .map(id_of)
        .collect();
    let manifests = names_in(&st.graph().join("manifests"))
        .into_iter()
        .filter(|n| !n.starts_with(".tmp-"))
        .collect();
    (sealed, manifests)
}

#[test]
fn a_full_disk_fails_imports_cleanly_and_gc_makes_room_again() {
    let Some(mut rng) = start("disk full") else {
        return;
    };
    let (st, _fs) = store_on_loop_fs(48);
    st.ok(&["layers"]);

    // Incompressible 5-6 MiB layers until one no longer fits.
    let mut committed: Vec<(String, String)> = Vec::new();
    let mut failure = None;
    for i in 0..30 {
        let size = rng.range(5 << 20, 6 << 20) as usize;
        let (tar, digest) = layer_tar(&mut rng, &format!("full{i}"), size, &[]);
        let path = st.cs.dir.path().join("next.tar");
        fs::write(&path, &tar).unwrap();
        let out = st.run(&["import-layer", "-f", path.to_str().unwrap()], None);
        if out.status.success() {
            let id = common::first_line_of(&common::stdout(&out));
            committed.push((id, digest));
            continue;
        }
        failure = Some((common::stderr(&out), path, digest));
        break;
    }
    let (stderr, failed_tar, failed_digest) =
        failure.expect("30 imports of 5+ MiB fit into 48 MiB: the disk never filled");
    eprintln!(
        "disk full after {} imports; the error: {}",
        committed.len(),
        stderr.trim()
    );
    assert!(
        says_no_space(&stderr),
        "the error does not say the disk is full: {stderr}"
    );
    assert!(!committed.is_empty(), "not even one layer fit");

    // The failed import left no record and no manifest; the store opens
    // (even while full), check is clean, earlier layers are intact.
    let (sealed, manifests) = sealed_and_manifests(&st);
    let ids: BTreeSet<String> = committed.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(sealed, ids, "listed layers after the failed import");
    assert_eq!(manifests, sealed, "manifests after the failed import");
    st.check_clean("after a failed import on a full disk");
    for (id, digest) in &committed {
        assert_eq!(
            &st.export_digest(id),
            digest,
            "layer {id} after the disk filled"
        );
    }

    // Free space: delete half of the layers and collect garbage. (Needs
    // the real gc: deleting alone frees no chunks.)
    let keep = committed.len() / 2;
    for (id, _) in committed.drain(keep..) {
        st.ok(&["delete-layer", &id]);
    }
    st.ok(&["gc"]);
    let out = st.run(&["import-layer", "-f", failed_tar.to_str().unwrap()], None);
    common::expect_status(
        &out,
        &["import-layer", "-f", "<the tar that did not fit>"],
        0,
    );
    let id = common::first_line_of(&common::stdout(&out));
    assert_eq!(st.export_digest(&id), failed_digest);
    for (id, digest) in &committed {
        assert_eq!(&st.export_digest(id), digest, "layer {id} after gc");
    }
    let (sealed, manifests) = sealed_and_manifests(&st);
    assert_eq!(manifests, sealed, "manifests after gc and a new import");
    st.check_clean("after gc made room");
}

/// Blocks of the filesystem at `dir` that files may take (the test
/// filesystems reserve none for root) and the block size.
fn free_blocks(dir: &Path) -> (u64, u64) {
    let st = nix::sys::statvfs::statvfs(dir).unwrap();
    (st.blocks_available() as u64, st.fragment_size() as u64)
}

/// Takes space with allocated files in `dir` until exactly `blocks` stay
/// free.
fn leave_free(dir: &Path, blocks: u64) {
    for i in 0..8 {
        let (free, size) = free_blocks(dir);
        if free == blocks {
            return;
        }
        assert!(free > blocks, "{free} blocks free, wanted {blocks}");
        // A large file may take blocks for its extent tree too: it stops
        // short, and a small one takes the rest.
        let take = match free - blocks {
            n if n > 64 => n - 16,
            n => n,
        };
        let file = fs::File::create(dir.join(format!("filler{i}"))).unwrap();
        let len = (take * size) as i64;
        nix::fcntl::fallocate(
            file.as_raw_fd(),
            nix::fcntl::FallocateFlags::empty(),
            0,
            len,
        )
        .unwrap();
        file.sync_all().unwrap();
    }
    panic!("could not leave exactly {blocks} blocks free");
}

fn remove_fillers(dir: &Path) {
    for name in names_in(dir) {
        if name.starts_with("filler") {
            fs::remove_file(dir.join(name)).unwrap();
        }
    }
}

/// The pool's files: no temporary pack is left, and every pack has its
/// index and every index its pack.
fn assert_pool_has_no_leftovers(st: &Store, context: &str) {
    let chunks = st.graph().join("chunks");
    let tmp = names_in(&chunks.join("tmp"));
    assert!(tmp.is_empty(), "{context}: chunks/tmp holds {tmp:?}");
    let packs = names_in(&chunks.join("packs"));
    for name in &packs {
        let (stem, other) = match name.rsplit_once('.') {
            Some((stem, "pack")) => (stem, "idx"),
            Some((stem, "idx")) => (stem, "pack"),
            _ => panic!("{context}: unexpected file chunks/packs/{name}"),
        };
        assert!(
            packs.contains(&format!("{stem}.{other}")),
            "{context}: chunks/packs/{name} has no .{other}"
        );
    }
}

/// A small ext4 with 4 KiB blocks and no blocks reserved for root, holding
/// a store with one layer imported (so every directory exists).
fn small_store(warmup: &[u8]) -> (Store, LoopFs) {
    let st = Store::new("vfs");
    let fs = LoopFs::mount(&st.graph(), 32, &["-b", "4096", "-m", "0"]);
    st.import(warmup, None);
    (st, fs)
}

#[test]
fn an_import_that_runs_out_of_space_at_any_step_leaves_nothing_behind() {
    let Some(mut rng) = start("space sweep") else {
        return;
    };
    let (warmup, _) = layer_tar(&mut rng, "warmup", 4096, &[]);
    // Smaller than the pack writer's buffer: its first write to disk is
    // the one that seals the pack.
    let (tar, digest) = layer_tar(&mut rng, "sweep", 600 << 10, &[]);

    // The blocks the import keeps when it succeeds: its pack, the pack's
    // index, the manifest, and the record.
    let needed = {
        let (st, _fs) = small_store(&warmup);
        let (before, _) = free_blocks(&st.graph());
        st.import(&tar, None);
        let (after, _) = free_blocks(&st.graph());
        before - after
    };
    assert!(needed > 100, "the import took only {needed} blocks");

    // Run out of space while writing the pack, when sealing it, at its
    // index, at the manifest and at the record (whose next version takes
    // its room, with some slack, before the chunks are published), and
    // not at all.
    let mut failed = 0;
    let mut fitted = 0;
    let spares = [
        needed / 2,
        needed - 3,
        needed - 2,
        needed - 1,
        needed,
        needed + 2,
        needed + 4,
        needed + 8,
        needed + 16,
    ];
    for spare in spares {
        let context = format!("{spare} blocks free for an import that takes {needed}");
        let (st, _fs) = small_store(&warmup);
        let before = st.layers().len();
        leave_free(&st.graph(), spare);
        let out = st.run(&["import-layer"], Some(&tar));
        let imported = out.status.success();
        eprintln!("{context}: {}", common::stderr(&out).trim());
        if imported {
            fitted += 1;
            let id = common::first_line_of(&common::stdout(&out));
            assert_eq!(st.export_digest(&id), digest, "{context}");
        } else {
            failed += 1;
            let stderr = common::stderr(&out);
            assert!(
                says_no_space(&stderr),
                "{context}: the error does not say the disk is full: {stderr}"
            );
        }
        // Whatever happened, the store opens while the disk is full, and
        // what a failed import wrote is gone.
        let (sealed, manifests) = sealed_and_manifests(&st);
        assert_eq!(
            sealed.len(),
            before + usize::from(imported),
            "{context}: layers"
        );
        assert_eq!(manifests, sealed, "{context}: manifests");
        assert_pool_has_no_leftovers(&st, &context);
        st.check_clean(&context);

        // With space again, the layer imports.
        remove_fillers(&st.graph());
        if !imported {
            let id = st.import(&tar, None);
            assert_eq!(
                st.export_digest(&id),
                digest,
                "{context}: once space is back"
            );
        }
    }
    assert!(
        failed >= 4 && fitted >= 1,
        "{failed} imports failed and {fitted} fitted"
    );
}

#[test]
fn on_a_disk_a_killed_import_filled_the_store_opens_and_gc_frees_the_space() {
    let Some(mut rng) = start("killed import") else {
        return;
    };
    let (warmup, warmup_digest) = layer_tar(&mut rng, "warmup", 4096, &[]);
    let (st, _fs) = small_store(&warmup);
    st.ok(&["gc"]);

    // An import killed while its pack grows: a tar announcing a 20 MiB
    // file, of which 6 MiB arrive (buffers on the way hold up to about
    // 2 MiB).
    let mut big = vec![0u8; 20 << 20];
    rng.fill(&mut big);
    let mut t = common::tar::TarBuilder::new();
    t.file("big", &common::tar::Meta::default(), &big);
    let tar = t.finish();
    let mut importer = st
        .command()
        .arg("import-layer")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = importer.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &tar[..6 << 20]).unwrap();
    let tmp = st.graph().join("chunks/tmp");
    let pack_bytes = || -> u64 {
        names_in(&tmp)
            .iter()
            .filter_map(|n| fs::metadata(tmp.join(n)).ok())
            .map(|m| m.len())
            .sum()
    };
    let start = std::time::Instant::now();
    while pack_bytes() < 2 << 20 {
        assert!(
            start.elapsed().as_secs() < 30,
            "the import never wrote 2 MiB"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    importer.kill().unwrap();
    importer.wait().unwrap();
    drop(stdin);

    // Something else takes the rest of the disk.
    leave_free(&st.graph(), 0);

    // The store opens; the import never wrote a record (it adds its
    // record only once complete).
    let listed = st.layers();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed.iter().all(|l| !is_incomplete(l)), "{listed:?}");

    // gc removes the dead import's pack on the full disk.
    let report: serde_json::Value =
        serde_json::from_str(&st.ok(&["gc", "-v", "--json"])).expect("gc --json");
    assert_eq!(report["skipped"], serde_json::json!([]), "{report}");
    let (sealed, manifests) = sealed_and_manifests(&st);
    assert_eq!(sealed.len(), 1, "layers after gc");
    assert_eq!(manifests, sealed, "manifests after gc");
    assert_pool_has_no_leftovers(&st, "after gc");
    st.check_clean("after gc on a full disk");
    let warmup_id = sealed.into_iter().next().unwrap();
    assert_eq!(st.export_digest(&warmup_id), warmup_digest);
}

/// Every `.tmp-` name below `dir`.
fn temporaries_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                found.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found
}

fn a_mount_on_a_full_disk_fails_cleanly(driver: &'static str) {
    let Some(mut rng) = start("mount on a full disk") else {
        return;
    };
    let st = Store::new(driver);
    let _fs = LoopFs::mount(&st.graph(), 64, &["-b", "4096", "-m", "0"]);
    // 10 MB in 200 files of random content: no build fits in 100 blocks.
    let mut t = common::tar::TarBuilder::new();
    let meta = common::tar::Meta::default();
    let mut files = Vec::new();
    for i in 0..200 {
        let mut data = vec![0u8; 50_000];
        rng.fill(&mut data);
        t.file(&format!("f{i}"), &meta, &data);
        files.push((format!("f{i}"), data));
    }
    let id = st.import(&t.finish(), None);
    st.ok(&["create-image", "--name", "img", &id]);
    st.ok(&["create-container", "--name", "c", "img"]);
    st.ok(&["gc"]);
    leave_free(&st.graph(), 100);

    // A vfs container's tree is made with the container (a copy of the
    // image's, as upstream's vfs driver makes it): what a vfs mount builds
    // is the image's own tree.
    let (mount, name): (&[&str], &str) = match driver {
        "vfs" => (&["mount", "-r", "img"], "img"),
        _ => (&["mount", "c"], "c"),
    };
    let out = st.run(mount, None);
    let stderr = common::stderr(&out);
    assert!(!out.status.success(), "mount fitted into 100 blocks");
    assert!(
        says_no_space(&stderr),
        "the error does not say the disk is full: {stderr}"
    );
    let left = temporaries_under(&st.graph());
    assert!(left.is_empty(), "the failed mount left {left:?}");
    let mounts: Vec<_> = st
        .kernel_mounts()
        .into_iter()
        .filter(|m| *m != st.graph())
        .collect();
    assert!(
        mounts.is_empty(),
        "mounts after the failed mount: {mounts:?}"
    );
    let counted: Vec<_> = st
        .raw_mounts()
        .into_iter()
        .filter(|m| m["count"].as_u64() > Some(0))
        .collect();
    assert!(
        counted.is_empty(),
        "mount records after the failed mount: {counted:?}"
    );
    st.check_clean("after a mount failed on a full disk");

    // With space again, the mount shows every file whole.
    remove_fillers(&st.graph());
    let mnt = PathBuf::from(st.ok(mount).trim());
    for (file, data) in &files {
        assert!(
            fs::read(mnt.join(file)).unwrap() == *data,
            "{file} after the retry"
        );
    }
    st.ok(&["unmount", name]);
    st.check_clean("after the mount succeeded");
}

#[test]
fn an_overlay_mount_on_a_full_disk_fails_cleanly_and_works_once_space_is_back() {
    a_mount_on_a_full_disk_fails_cleanly("overlay");
}

#[test]
fn a_vfs_mount_on_a_full_disk_fails_cleanly_and_works_once_space_is_back() {
    a_mount_on_a_full_disk_fails_cleanly("vfs");
}

/// Whether an error says the store or its filesystem is read-only.
fn says_read_only(stderr: &str) -> bool {
    let lower = stderr.to_lowercase();
    lower.contains("read-only") || lower.contains("read only") || lower.contains("os error 30")
}

#[test]
fn a_read_only_graph_root_refuses_writes_clearly_and_still_reads() {
    let Some(mut rng) = start("read-only graph root") else {
        return;
    };
    let (st, loop_fs) = store_on_loop_fs(32);
    let (base_tar, base_digest) = layer_tar(&mut rng, "base", 1 << 20, &[]);
    let base = st.import(&base_tar, None);
    let (top_tar, top_digest) = layer_tar(&mut rng, "top", 512 << 10, &[]);
    let top = st.import(&top_tar, Some(&base));
    st.ok(&["create-image", "-n", "img", &top]);
    st.ok(&["create-layer", "-n", "empty"]);
    let layers_before = st.ok(&["layers"]);
    let images_before = st.ok(&["images"]);

    loop_fs.remount("ro");
    let (new_tar, _) = layer_tar(&mut rng, "new", 64 << 10, &[]);
    let new_path = st.cs.dir.path().join("new.tar");
    fs::write(&new_path, &new_tar).unwrap();
    let writes: Vec<Vec<&str>> = vec![
        vec!["import-layer", "-f", new_path.to_str().unwrap()],
        vec!["create-layer"],
        vec!["delete-layer", "empty"],
        vec!["set-names", "-n", "renamed", "empty"],
        vec!["gc"],
    ];
    // Every write is tried; unclear refusals are collected and reported
    // after the reads have been checked too.
    let mut unclear = Vec::new();
    for args in &writes {
        let out = st.run(args, None);
        assert!(
            !out.status.success(),
            "{args:?} succeeded on a read-only graph root\nstdout: {}",
            common::stdout(&out)
        );
        let text = format!("{}{}", common::stderr(&out), common::stdout(&out));
        eprintln!("{args:?} on a read-only graph root: {}", text.trim());
        if !says_read_only(&text) {
            unclear.push(format!("{args:?}: {}", text.trim()));
        }
    }
    assert_eq!(st.ok(&["layers"]), layers_before);
    assert_eq!(st.ok(&["images"]), images_before);
    st.ok(&["layer", &top]);
    st.ok(&["image", "img"]);
    let out = st.run(&["status"], None);
    common::expect_status(&out, &["status"], 0);
    assert!(
        common::stderr(&out).contains("Root: "),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(st.export_digest(&base), base_digest);
    assert_eq!(st.export_digest(&top), top_digest);

    assert!(
        unclear.is_empty(),
        "on a read-only graph root, these errors do not say read-only:\n{}",
        unclear.join("\n")
    );

    // Writable again: nothing changed, and the store works.
    loop_fs.remount("rw");
    assert_eq!(st.ok(&["layers"]), layers_before);
    st.check_clean("after the read-only period");
    st.ok(&["delete-layer", "empty"]);
}
