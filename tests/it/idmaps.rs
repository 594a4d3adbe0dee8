//! ID maps through the CLI, as a script would use them, on vfs and
//! overlay: `import-layer` and `create-layer` with `--uidmap`/`--gidmap`
//! store their files with host IDs and `diff` gives the tar back byte for
//! byte; children take their parent's maps; a container mapping IDs
//! otherwise than its image goes on a mapped copy of the top layer (the
//! image's `mapped-layers`), whose tree has the container's owners while
//! the unmapped layers' files keep theirs; `copy` maps owners both ways;
//! `layer-parent-owners` and `container-parent-owners` print what the Go
//! CLI prints on the same steps; `gc` evicts the mapped directories (and
//! their objects) and a mount builds them again.
//!
//! Where the kernel mounts overlayfs over idmapped layers, overlay
//! containers are shifted at mount time instead, as Go's are: no mapped
//! copy, and the Go CLI and we mount each other's mapped containers with
//! the same owners. The mapped-copy tests make the store answer that the
//! kernel cannot (upstream's cached answer), so that they cover overlay
//! too.
//!
//! Ownership needs root (as do overlay mounts): the tests skip without
//! it. The Go CLI comparisons are skipped, with a reason, when the Go
//! CLI is not installed.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::tar::{Meta, TarBuilder};
use crate::common::{self, first_line_of, Cs};

const GO_CLI: &str = "/usr/bin/containers-storage";
const UIDMAP: &str = "0:100000:65536";
const GIDMAP: &str = "0:200000:65536";
const CMAP: &str = "0:300000:65536";

fn meta(uid: u64, gid: u64, mode: u32) -> Meta {
    Meta {
        mode,
        uid,
        gid,
        ..Meta::default()
    }
}

/// The base layer: root's and user 1000's entries, a setuid file, a
/// symlink, and a file the top layer deletes.
fn base_tar() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("etc/", &meta(0, 0, 0o755));
    t.file("etc/f", &meta(0, 0, 0o644), b"root's file\n");
    t.file("etc/gone", &meta(0, 0, 0o644), b"deleted above\n");
    t.symlink("etc/l", "f", &meta(1000, 1001, 0o777));
    t.dir("home/", &meta(0, 0, 0o755));
    t.dir("home/u/", &meta(1000, 1001, 0o750));
    t.file("home/u/g", &meta(1000, 1001, 0o4755), b"user's file\n");
    t.finish()
}

/// The top layer: a file of user 2 and a whiteout of `etc/gone`.
fn top_tar() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("etc/", &meta(0, 0, 0o755));
    t.file("etc/top", &meta(2, 3, 0o600), b"top\n");
    t.whiteout("etc", "gone");
    t.finish()
}

/// Path -> (uid, gid, mode) of every entry under `root` (not itself).
fn owners(root: &Path) -> BTreeMap<String, (u32, u32, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, u32, u32)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let m = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.insert(rel, (m.uid(), m.gid(), m.mode() & 0o7777));
            if m.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn root_owner(root: &Path) -> (u32, u32) {
    let m = std::fs::metadata(root).unwrap();
    (m.uid(), m.gid())
}

/// Runs ours on `driver` (exit 0), stdout.
fn on(cs: &Cs, driver: &str, args: &[&str]) -> String {
    cs.ok_on(driver, args)
}

/// Runs ours on `driver` with `stdin`, requiring exit 0; the first line.
fn on_input(cs: &Cs, driver: &str, args: &[&str], stdin: &[u8]) -> String {
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", driver]).args(args);
    let out = common::run_command(cmd, Some(stdin));
    common::expect_status(&out, args, 0);
    first_line_of(&common::stdout(&out))
}

/// Runs ours on `driver`, requiring a failure; stderr.
fn fails_on(cs: &Cs, driver: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", driver]).args(args);
    let out = common::run_command(cmd, stdin);
    assert!(
        !out.status.success(),
        "expected failure: {args:?}\nstdout: {}",
        common::stdout(&out)
    );
    common::stderr(&out)
}

fn drivers() -> Vec<&'static str> {
    if !common::need_root("ID-mapped ownership (chown to other IDs) and overlay mounts") {
        return Vec::new();
    }
    vec!["vfs", "overlay"]
}

/// The Go CLI on a vfs store of its own in `dir`.
fn go(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut cmd = Command::new(GO_CLI);
    cmd.arg("--graph")
        .arg(dir.join("graph"))
        .arg("--run")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args);
    let out = common::run_command(cmd, stdin);
    common::expect_status(&out, args, 0);
    common::stdout(&out)
}

fn have_go(what: &str) -> bool {
    if Path::new(GO_CLI).exists() {
        return true;
    }
    eprintln!("skipped: {what}: {GO_CLI} is not installed");
    false
}

/// Makes the store answer that the kernel does not shift IDs at mount
/// time (upstream's cached answer, which it and we read), so that
/// containers get mapped copies on overlay too.
fn without_shifting(cs: &Cs) {
    let dir = cs.run_root().join("overlay");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("idmapped-lower-dir-false"), b"").unwrap();
}

/// Mounts `arg` on `driver`; the mount point.
fn mount(cs: &Cs, driver: &str, arg: &str) -> PathBuf {
    PathBuf::from(first_line_of(&on(cs, driver, &["mount", arg])))
}

#[test]
fn an_imported_mapped_layer_stores_host_ids_and_diff_gives_the_tar_back() {
    for driver in drivers() {
        let cs = Cs::new();
        let tar = base_tar();
        let flags = ["--uidmap", UIDMAP, "--gidmap", GIDMAP];
        let mut args = vec!["import-layer"];
        args.extend(flags);
        let id = on_input(&cs, driver, &args, &tar);
        let shown = on(&cs, driver, &["layer", &id]);
        assert!(
            shown.contains("UID mapping: (container=0, host=100000, size=65536)")
                && shown.contains("GID mapping: (container=0, host=200000, size=65536)"),
            "{driver}: {shown}"
        );
        // Pool-backed, before anything is built: the tar, byte for byte.
        assert_eq!(on_bytes(&cs, driver, &["diff", &id]), tar, "{driver}");
        let tree = mount(&cs, driver, &id);
        let got = owners(&tree);
        assert_eq!(got["etc/f"], (100_000, 200_000, 0o644), "{driver}");
        assert_eq!(got["etc/l"].0, 101_000, "{driver}");
        assert_eq!(got["etc/l"].1, 201_001, "{driver}");
        assert_eq!(got["home/u"], (101_000, 201_001, 0o750), "{driver}");
        // The set-user-ID bit survives the owner change.
        assert_eq!(got["home/u/g"], (101_000, 201_001, 0o4755), "{driver}");
        // The tar has no root entry: the mapped root's.
        assert_eq!(root_owner(&tree), (100_000, 200_000), "{driver}");
        on(&cs, driver, &["unmount", &id]);
        // Written to (the mount made it directory-backed): still the tar.
        assert_eq!(on_bytes(&cs, driver, &["diff", &id]), tar, "{driver}");
        assert_eq!(
            common::sha256(&tar),
            cs.layer_json_on(driver, &id)["diff-digest"]
                .as_str()
                .unwrap(),
            "{driver}"
        );

        // An owner outside the map fails the import, as upstream's untar,
        // and leaves no layer.
        let mut t = TarBuilder::new();
        t.file("far", &meta(70_000, 0, 0o644), b"x");
        let mut args = vec!["import-layer"];
        args.extend(flags);
        let err = fails_on(&cs, driver, &args, Some(&t.finish()));
        assert!(
            err.contains("70000") && err.contains("cannot be mapped"),
            "{err}"
        );
        assert_eq!(
            on(&cs, driver, &["layers", "-q"]).lines().count(),
            1,
            "{driver}"
        );
    }
}

#[test]
fn the_go_cli_stores_a_mapped_import_as_we_do() {
    if drivers().is_empty() || !have_go("comparing a mapped import with the Go CLI's") {
        return;
    }
    let cs = Cs::new();
    let tar = base_tar();
    let flags = ["--uidmap", UIDMAP, "--gidmap", GIDMAP];
    let mut args = vec!["import-layer"];
    args.extend(flags);
    let ours = on_input(&cs, "vfs", &args, &tar);
    let ours_tree = mount(&cs, "vfs", &ours);
    let dir = tempfile::tempdir().unwrap();
    let theirs = first_line_of(&go(dir.path(), &args, Some(&tar)));
    let theirs_tree = dir.path().join("graph/vfs/dir").join(&theirs);
    assert_eq!(owners(&ours_tree), owners(&theirs_tree));
    assert_eq!(root_owner(&ours_tree), root_owner(&theirs_tree));
    // The records' maps, as the Go CLI writes them.
    let record = cs.layer_json_on("vfs", &ours);
    let go_record: serde_json::Value =
        serde_json::from_str(&go(dir.path(), &["layer", "--json", &theirs], None)).unwrap();
    assert_eq!(record["uidmap"], go_record[0]["uidmap"]);
    assert_eq!(record["gidmap"], go_record[0]["gidmap"]);
    on(&cs, "vfs", &["unmount", &ours]);
}

#[test]
fn a_chain_of_layers_mapping_ids_each_its_own_way_mounts_with_the_tops_owners() {
    // Upstream's idmaps-create-apply-layer: a host-mapped base layer
    // written through its mount, then layers on it each with other
    // maps, a diff applied to each, every layer's mount showing every
    // file with its own maps' owners.
    for driver in drivers() {
        let cs = Cs::new();
        let base = first_line_of(&on(
            &cs,
            driver,
            &["create-layer", "--hostuidmap", "--hostgidmap"],
        ));
        let tree = mount(&cs, driver, &base);
        std::fs::write(tree.join("file1"), b"one\n").unwrap();
        std::os::unix::fs::chown(tree.join("file1"), Some(1), Some(1)).unwrap();
        on(&cs, driver, &["unmount", &base]);
        let mut last = base;
        for i in 2u32..=4 {
            let (uids, gids) = (i * 100_000, i * 100_000 + 50_000);
            let uidmap = format!("0:{uids}:6");
            let gidmap = format!("0:{gids}:6");
            let args = [
                "create-layer",
                "--uidmap",
                &uidmap,
                "--gidmap",
                &gidmap,
                &last,
            ];
            let layer = first_line_of(&on(&cs, driver, &args));
            let mut t = TarBuilder::new();
            t.file(
                &format!("file{i}"),
                &meta(i.into(), i.into(), 0o644),
                b"x\n",
            );
            on_input(&cs, driver, &["applydiff", &layer], &t.finish());
            let tree = mount(&cs, driver, &layer);
            let got = owners(&tree);
            for j in 1..=i {
                let name = format!("file{j}");
                assert_eq!(
                    (got[&name].0, got[&name].1),
                    (uids + j, gids + j),
                    "{driver}: layer {i}, {name}"
                );
            }
            on(&cs, driver, &["unmount", &layer]);
            last = layer;
        }
    }
}

#[test]
fn created_layers_take_their_maps_or_their_parents_and_bad_flags_fail() {
    for driver in drivers() {
        let cs = Cs::new();
        let parent = first_line_of(&on(
            &cs,
            driver,
            &["create-layer", "--uidmap", UIDMAP, "--gidmap", GIDMAP],
        ));
        let record = cs.layer_json_on(driver, &parent);
        assert_eq!(record["uidmap"][0]["host_id"], 100_000, "{record}");
        assert_eq!(record["gidmap"][0]["host_id"], 200_000, "{record}");
        let content = match driver {
            "vfs" => cs.graph().join("vfs/dir").join(&parent),
            _ => cs.graph().join("overlay").join(&parent).join("diff"),
        };
        assert_eq!(root_owner(&content), (100_000, 200_000), "{driver}");
        // A file written into it: container IDs 7:8 are host 100007:200008.
        let host_file = cs.dir.path().join("h");
        std::fs::write(&host_file, b"x").unwrap();
        std::os::unix::fs::chown(&host_file, Some(7), Some(8)).unwrap();
        let dest = format!("{parent}:/f");
        on(&cs, driver, &["copy", host_file.to_str().unwrap(), &dest]);
        // Its diff (made from the directory) has the container's IDs, as
        // the Go CLI's.
        let tar = on_bytes(&cs, driver, &["diff", &parent]);
        let listing = common::run_command(
            {
                let mut c = Command::new("tar");
                c.args(["--numeric-owner", "-tvf", "-"]);
                c
            },
            Some(&tar),
        );
        let listing = common::stdout(&listing);
        assert!(
            listing
                .lines()
                .any(|l| l.contains(" 7/8 ") && l.ends_with(" f")),
            "{driver}: {listing}"
        );
        // A child without maps takes its parent's; --hostuidmap drops it.
        let child = first_line_of(&on(&cs, driver, &["create-layer", &parent]));
        let record = cs.layer_json_on(driver, &child);
        assert_eq!(record["uidmap"][0]["host_id"], 100_000, "{record}");
        let host = first_line_of(&on(
            &cs,
            driver,
            &["create-layer", "--hostuidmap", "--hostgidmap", &parent],
        ));
        let record = cs.layer_json_on(driver, &host);
        assert!(record.get("uidmap").is_none(), "{record}");
        assert!(record.get("gidmap").is_none(), "{record}");
        // Each shows the parent's file with its own owners.
        for (layer, want) in [(&child, (100_007, 200_008)), (&host, (7, 8))] {
            let tree = mount(&cs, driver, layer);
            let got = owners(&tree)["f"];
            assert_eq!((got.0, got.1), want, "{driver}: {layer}");
            on(&cs, driver, &["unmount", layer]);
        }

        let err = fails_on(
            &cs,
            driver,
            &["create-layer", "--hostuidmap", "--uidmap", UIDMAP],
            None,
        );
        assert!(
            err.contains("host uid map specified along with UID mapping"),
            "{err}"
        );
        // Upstream's words and exit code (1, not a usage error's 125).
        let mut cmd = cs.command();
        cmd.args([
            "--storage-driver",
            driver,
            "create-layer",
            "--uidmap",
            "0:1",
        ]);
        let out = common::run_command(cmd, None);
        assert_eq!(out.status.code(), Some(1));
        let err = common::stderr(&out);
        assert!(
            err.contains(
                "initializing ID mappings: uid setting is malformed expected [\"uint32:uint32:uint32\"]: [\"0:1\"]"
            ),
            "{err}"
        );
        let err = fails_on(
            &cs,
            driver,
            &["create-layer", "--subuidmap", "no-such-user-here"],
            None,
        );
        assert!(err.contains("no subordinate ID ranges"), "{err}");
    }
}

/// A store with the base and top layers and an image of them; returns
/// (base, top, image).
fn image_of_two(cs: &Cs, driver: &str) -> (String, String, String) {
    let base = on_input(cs, driver, &["import-layer"], &base_tar());
    let top = on_input(cs, driver, &["import-layer", &base], &top_tar());
    let image = first_line_of(&on(cs, driver, &["create-image", &top]));
    (base, top, image)
}

fn shifted(tree: &BTreeMap<String, (u32, u32, u32)>, by: u32) -> BTreeMap<String, (u32, u32, u32)> {
    tree.iter()
        .map(|(p, (u, g, m))| (p.clone(), (u + by, g + by, *m)))
        .collect()
}

#[test]
fn a_container_mapping_otherwise_goes_on_a_mapped_copy_and_shared_files_keep_their_owners() {
    for driver in drivers() {
        let cs = Cs::new();
        without_shifting(&cs);
        let (base, top, image) = image_of_two(&cs, driver);
        // The unmapped view, from a container without maps.
        let plain = first_line_of(&on(&cs, driver, &["create-container", &image]));
        let plain_tree = mount(&cs, driver, &plain);
        let unmapped = owners(&plain_tree);
        on(&cs, driver, &["unmount", &plain]);
        assert!(!unmapped.contains_key("etc/gone"), "{driver}");

        let flags = ["--uidmap", CMAP, "--gidmap", CMAP];
        let mut args = vec!["create-container"];
        args.extend(flags);
        args.push(&image);
        let mapped = first_line_of(&on(&cs, driver, &args));
        let images = cs.json_on(driver, &["images", "--json"]);
        let copies = images[0]["mapped-layers"].as_array().unwrap().clone();
        assert_eq!(copies.len(), 1, "{driver}: {images}");
        let copy = copies[0].as_str().unwrap().to_string();
        let record = cs.layer_json_on(driver, &copy);
        assert_eq!(record["parent"], base.as_str(), "{driver}: {record}");
        assert_eq!(record["uidmap"][0]["host_id"], 300_000, "{record}");
        assert_eq!(
            record["diff-digest"],
            cs.layer_json_on(driver, &top)["diff-digest"]
        );
        let container = cs.json_on(driver, &["container", "--json", &mapped]);
        assert_eq!(container[0]["uidmap"][0]["host_id"], 300_000);
        let layer = container[0]["layer"].as_str().unwrap().to_string();
        let layer_record = cs.layer_json_on(driver, &layer);
        assert_eq!(layer_record["parent"], copy.as_str());
        assert_eq!(layer_record["uidmap"][0]["host_id"], 300_000);
        assert!(on(&cs, driver, &["image", &image])
            .lines()
            .any(|l| l == format!("Top Layer: {copy}")));

        // The whole tree has the container's owners, the base layer's
        // entries included; what the top layer deleted stays deleted.
        let tree = mount(&cs, driver, &mapped);
        assert_eq!(owners(&tree), shifted(&unmapped, 300_000), "{driver}");
        assert_eq!(root_owner(&tree).0, 300_000, "{driver}");
        on(&cs, driver, &["unmount", &mapped]);

        // A second container mapping the same way reuses the copy.
        let again = first_line_of(&on(&cs, driver, &args));
        let images = cs.json_on(driver, &["images", "--json"]);
        assert_eq!(images[0]["mapped-layers"].as_array().unwrap().len(), 1);

        // The unmapped layers' files kept their owners (no shared file or
        // object was chowned).
        let tree = mount(&cs, driver, &plain);
        assert_eq!(owners(&tree), unmapped, "{driver}");
        on(&cs, driver, &["unmount", &plain]);
        assert_eq!(on_bytes(&cs, driver, &["diff", &base]), base_tar());
        assert_eq!(on_bytes(&cs, driver, &["diff", &copy]), top_tar());

        // Deleting the image deletes its mapped copy.
        for c in [&plain, &mapped, &again] {
            on(&cs, driver, &["delete-container", c]);
        }
        on(&cs, driver, &["delete-image", &image]);
        assert_eq!(on(&cs, driver, &["layers", "-q"]), "", "{driver}");
        on(&cs, driver, &["check"]);
    }
}

#[test]
fn a_directory_backed_top_layer_gets_a_remapped_copy_of_its_directory() {
    for driver in drivers() {
        let cs = Cs::new();
        without_shifting(&cs);
        let base = on_input(&cs, driver, &["import-layer"], &base_tar());
        let top = first_line_of(&on(&cs, driver, &["create-layer", &base]));
        let host_file = cs.dir.path().join("h");
        std::fs::write(&host_file, b"x").unwrap();
        std::os::unix::fs::chown(&host_file, Some(7), Some(8)).unwrap();
        let dest = format!("{top}:/etc/new");
        on(&cs, driver, &["copy", host_file.to_str().unwrap(), &dest]);
        let image = first_line_of(&on(&cs, driver, &["create-image", &top]));
        let plain = first_line_of(&on(&cs, driver, &["create-container", &image]));
        let tree = mount(&cs, driver, &plain);
        let unmapped = owners(&tree);
        on(&cs, driver, &["unmount", &plain]);
        assert_eq!(unmapped["etc/new"].0, 7, "{driver}");
        let mapped = mapped_container(&cs, driver, &image);
        let tree = mount(&cs, driver, &mapped);
        assert_eq!(owners(&tree), shifted(&unmapped, 300_000), "{driver}");
        on(&cs, driver, &["unmount", &mapped]);
        // The top layer's own files kept their owners.
        let tree = mount(&cs, driver, &plain);
        assert_eq!(owners(&tree), unmapped, "{driver}");
        on(&cs, driver, &["unmount", &plain]);
    }
}

#[test]
fn a_mapped_container_looks_as_the_go_clis_does() {
    if drivers().is_empty() || !have_go("comparing a mapped container with the Go CLI's") {
        return;
    }
    let cs = Cs::new();
    let (_, _, image) = image_of_two(&cs, "vfs");
    let args = |image: &str| {
        [
            "create-container",
            "--uidmap",
            CMAP,
            "--gidmap",
            CMAP,
            image,
        ]
        .map(String::from)
    };
    let a: Vec<String> = args(&image).to_vec();
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let ours = first_line_of(&on(&cs, "vfs", &a));
    let ours_tree = mount(&cs, "vfs", &ours);

    let dir = tempfile::tempdir().unwrap();
    let base = first_line_of(&go(dir.path(), &["import-layer"], Some(&base_tar())));
    let top = first_line_of(&go(dir.path(), &["import-layer", &base], Some(&top_tar())));
    let go_image = first_line_of(&go(dir.path(), &["create-image", &top], None));
    let a: Vec<String> = args(&go_image).to_vec();
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let theirs = first_line_of(&go(dir.path(), &a, None));
    let theirs_tree = PathBuf::from(first_line_of(&go(dir.path(), &["mount", &theirs], None)));
    assert_eq!(owners(&ours_tree), owners(&theirs_tree));
    // Not compared: the root directory itself. Go 1.43's vfs leaves the
    // mapped copy's root (and so the container's) to the host's root,
    // which the container cannot map; ours has the container's root.
    assert_eq!(root_owner(&ours_tree), (300_000, 300_000));

    // The image lists its mapped copy, as Go's does.
    let top_lines = |s: &str| s.lines().filter(|l| l.starts_with("Top Layer:")).count();
    assert_eq!(
        top_lines(&on(&cs, "vfs", &["image", &image])),
        top_lines(&go(dir.path(), &["image", &go_image], None))
    );
    // Parent owners of the mounted containers: the same lines (the
    // directories above both mount points are root's).
    let ours_owners = on(&cs, "vfs", &["container-parent-owners", &ours]);
    let theirs_owners = go(dir.path(), &["container-parent-owners", &theirs], None);
    assert_eq!(
        ours_owners.replace(&ours, "C"),
        theirs_owners.replace(&theirs, "C")
    );
    let ours_json = on(&cs, "vfs", &["container-parent-owners", "-j", &ours]);
    let theirs_json = go(
        dir.path(),
        &["container-parent-owners", "-j", &theirs],
        None,
    );
    assert_eq!(
        ours_json.replace(&ours, "C"),
        theirs_json.replace(&theirs, "C")
    );
    let ours_layer = cs.json_on("vfs", &["container", "--json", &ours])[0]["layer"]
        .as_str()
        .unwrap()
        .to_string();
    let theirs_layer: serde_json::Value =
        serde_json::from_str(&go(dir.path(), &["container", "--json", &theirs], None)).unwrap();
    let theirs_layer = theirs_layer[0]["layer"].as_str().unwrap().to_string();
    assert_eq!(
        on(&cs, "vfs", &["layer-parent-owners", &ours_layer]).replace(&ours_layer, "L"),
        go(dir.path(), &["layer-parent-owners", &theirs_layer], None).replace(&theirs_layer, "L")
    );
    on(&cs, "vfs", &["unmount", &ours]);
    go(dir.path(), &["unmount", &theirs], None);
}

#[test]
fn on_overlay_a_mapped_container_shifts_the_layers_below_at_mount_time_as_gos_does() {
    if drivers().is_empty() || !have_go("sharing mapped overlay containers with the Go CLI") {
        return;
    }
    let cs = Cs::new();
    let (_, top, image) = image_of_two(&cs, "overlay");
    let plain = first_line_of(&on(&cs, "overlay", &["create-container", &image]));
    let unmapped = owners(&mount(&cs, "overlay", &plain));
    on(&cs, "overlay", &["unmount", &plain]);
    let ours = mapped_container(&cs, "overlay", &image);
    // The store asked the kernel and kept its answer where Go keeps it.
    let answer = |yes: bool| {
        let path = format!("overlay/idmapped-lower-dir-{yes}");
        cs.run_root().join(path).exists()
    };
    if answer(false) {
        eprintln!("skipped: this kernel does not mount overlayfs over idmapped layers");
        return;
    }
    assert!(
        answer(true),
        "the store did not record whether the kernel shifts"
    );
    // No mapped copy: the container's layer is on the top layer and maps
    // no IDs; the container's record keeps the maps.
    let images = cs.json_on("overlay", &["images", "--json"]);
    assert!(images[0].get("mapped-layers").is_none(), "{images}");
    let container = cs.json_on("overlay", &["container", "--json", &ours]);
    assert_eq!(container[0]["uidmap"][0]["host_id"], 300_000);
    let layer = container[0]["layer"].as_str().unwrap().to_string();
    let record = cs.layer_json_on("overlay", &layer);
    assert_eq!(record["parent"], top.as_str(), "{record}");
    assert!(record.get("uidmap").is_none(), "{record}");

    // Our mount shows the layers below with the container's owners; what
    // the container writes is stored with host IDs.
    let tree = mount(&cs, "overlay", &ours);
    assert_eq!(owners(&tree), shifted(&unmapped, 300_000));
    std::fs::write(tree.join("etc/new"), b"new\n").unwrap();
    std::os::unix::fs::chown(tree.join("etc/new"), Some(300_001), Some(300_002)).unwrap();
    let written = owners(&tree);
    on(&cs, "overlay", &["unmount", &ours]);

    // The Go CLI mounts our container the same.
    let go_tree = PathBuf::from(first_line_of(&go_overlay(&cs, &["mount", &ours])));
    assert_eq!(owners(&go_tree), written);
    go_overlay(&cs, &["unmount", &ours]);
    // And we mount the Go CLI's mapped container on our image the same.
    let mut args = vec!["create-container", "--uidmap", CMAP, "--gidmap", CMAP];
    args.push(&image);
    let theirs = first_line_of(&go_overlay(&cs, &args));
    let tree = mount(&cs, "overlay", &theirs);
    assert_eq!(owners(&tree), shifted(&unmapped, 300_000));
    on(&cs, "overlay", &["unmount", &theirs]);

    // The layers' own files kept their owners.
    assert_eq!(owners(&mount(&cs, "overlay", &plain)), unmapped);
    on(&cs, "overlay", &["unmount", &plain]);
    // The container's diff holds what it wrote, with host IDs, from both.
    let listing = |tar: Vec<u8>| {
        let mut cmd = Command::new("tar");
        cmd.args(["--numeric-owner", "-tvf", "-"]);
        common::stdout(&common::run_command(cmd, Some(&tar)))
    };
    let ours_diff = listing(on_bytes(&cs, "overlay", &["diff", &layer]));
    assert!(ours_diff.contains("300001/300002"), "{ours_diff}");
    let go_diff = listing(go_overlay_bytes(&cs, &["diff", &layer]));
    assert_eq!(ours_diff, go_diff);
}

/// `_CONTAINERS_OVERLAY_DISABLE_IDMAP=yes` (upstream's switch, set by
/// its tests) turns shifting off on overlay, as upstream's
/// `SupportsShifting` does: a mapped container then gets a mapped copy of
/// its image's top layer and a layer that maps IDs, and its parent
/// owners are what they are on vfs.
#[test]
fn upstreams_switch_turns_shifting_off_on_overlay() {
    if drivers().is_empty() {
        return;
    }
    let cs = Cs::new();
    let (_, top, image) = image_of_two(&cs, "overlay");
    let with_switch = |args: &[&str]| {
        let mut cmd = cs.command();
        cmd.env("_CONTAINERS_OVERLAY_DISABLE_IDMAP", "yes")
            .args(["--storage-driver", "overlay"])
            .args(args);
        let out = common::run_command(cmd, None);
        common::expect_status(&out, args, 0);
        // (`status` writes to stderr, as upstream's does.)
        common::stdout(&out) + &common::stderr(&out)
    };
    let status = with_switch(&["status"]);
    assert!(status.contains("Supports shifting: false"), "{status}");
    let ours = first_line_of(&with_switch(&mapped_args(&image)));
    let container = cs.json_on("overlay", &["container", "--json", &ours]);
    let layer = container[0]["layer"].as_str().unwrap().to_string();
    let record = cs.layer_json_on("overlay", &layer);
    assert_ne!(record["parent"], top.as_str(), "on the top layer: {record}");
    assert_eq!(record["uidmap"][0]["host_id"], 300_000, "{record}");
    let shown = with_switch(&["layer", &layer]);
    assert!(
        shown.contains("UID mapping: (container=0, host=300000, size=65536)"),
        "{shown}"
    );
    let images = cs.json_on("overlay", &["images", "--json"]);
    assert!(images[0].get("mapped-layers").is_some(), "{images}");
    // Mounted, the container shows the image's files with its owners,
    // and its parent directories' owners are listed as on vfs.
    let tree = PathBuf::from(first_line_of(&with_switch(&["mount", &ours])));
    assert_eq!(root_owner(&tree), (300_000, 300_000));
    let parents = with_switch(&["container-parent-owners", &ours]);
    assert!(
        parents.contains("UIDs: [0]") && parents.contains("GIDs: [0]"),
        "{parents}"
    );
    with_switch(&["unmount", &ours]);
}

#[test]
fn on_overlay_a_mapped_container_goes_on_a_read_only_stores_image_shifted() {
    if drivers().is_empty() || !have_go("mounting the container with the Go CLI too") {
        return;
    }
    let ro = Cs::new();
    let (_, _, image) = image_of_two(&ro, "overlay");
    let plain = first_line_of(&on(&ro, "overlay", &["create-container", &image]));
    let unmapped = owners(&mount(&ro, "overlay", &plain));
    on(&ro, "overlay", &["unmount", &plain]);
    let cs = Cs::new();
    let opt = format!("overlay.imagestore={}", ro.graph().display());
    let with_ro = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--storage-opt".to_string(), opt.clone()];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    };
    let mut args = vec!["create-container", "--uidmap", CMAP, "--gidmap", CMAP];
    args.push(&image);
    let create = with_ro(&[&["--storage-driver", "overlay"], &args[..]].concat());
    let out = cs.run(&strs(&create), None);
    if cs
        .run_root()
        .join("overlay/idmapped-lower-dir-false")
        .exists()
    {
        eprintln!("skipped: this kernel does not mount overlayfs over idmapped layers");
        return;
    }
    common::expect_status(&out, &args, 0);
    let container = first_line_of(&common::stdout(&out));
    let ours = |args: &[&str]| {
        let args = with_ro(&[&["--storage-driver", "overlay"], args].concat());
        let out = cs.run(&strs(&args), None);
        common::expect_status(&out, &strs(&args), 0);
        first_line_of(&common::stdout(&out))
    };
    let tree = ours(&["mount", &container]);
    assert_eq!(owners(Path::new(&tree)), shifted(&unmapped, 300_000));
    ours(&["unmount", &container]);
    let go_tree = go_overlay(&cs, &strs(&with_ro(&["mount", &container])));
    assert_eq!(
        owners(Path::new(&first_line_of(&go_tree))),
        shifted(&unmapped, 300_000)
    );
    go_overlay(&cs, &strs(&with_ro(&["unmount", &container])));
}

#[test]
fn a_mapped_container_on_a_read_only_stores_image_gets_its_owners_without_shifting() {
    // Where IDs are not shifted at mount time, the container's own
    // layer maps IDs over the read-only image's layers: its tree (vfs)
    // or the tree below it (overlay `diff1`) is built with its owners.
    for driver in drivers() {
        let ro = Cs::new();
        let (_, _, image) = image_of_two(&ro, driver);
        let plain = first_line_of(&on(&ro, driver, &["create-container", &image]));
        let unmapped = owners(&mount(&ro, driver, &plain));
        on(&ro, driver, &["unmount", &plain]);
        let cs = Cs::new();
        without_shifting(&cs);
        let opt = format!("{driver}.imagestore={}", ro.graph().display());
        let ours = |args: &[&str]| {
            let mut all = vec!["--storage-opt", opt.as_str()];
            all.extend_from_slice(args);
            first_line_of(&on(&cs, driver, &all))
        };
        let container = ours(&[
            "create-container",
            "--uidmap",
            CMAP,
            "--gidmap",
            CMAP,
            &image,
        ]);
        let tree = ours(&["mount", &container]);
        assert_eq!(
            owners(Path::new(&tree)),
            shifted(&unmapped, 300_000),
            "{driver}"
        );
        ours(&["unmount", &container]);
        // The read-only store's own view is unchanged.
        assert_eq!(owners(&mount(&ro, driver, &plain)), unmapped, "{driver}");
        on(&ro, driver, &["unmount", &plain]);
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Runs the Go CLI on `cs`'s store on overlay (exit 0); stdout.
fn go_overlay(cs: &Cs, args: &[&str]) -> String {
    String::from_utf8(go_overlay_bytes(cs, args)).unwrap()
}

fn go_overlay_bytes(cs: &Cs, args: &[&str]) -> Vec<u8> {
    let mut cmd = Command::new(GO_CLI);
    cmd.arg("--graph")
        .arg(cs.graph())
        .arg("--run")
        .arg(cs.run_root())
        .args(["--storage-driver", "overlay"])
        .args(args);
    let out = common::run_command(cmd, None);
    common::expect_status(&out, args, 0);
    out.stdout
}

#[test]
fn copy_maps_owners_from_the_source_and_into_the_destination() {
    for driver in drivers() {
        let cs = Cs::new();
        without_shifting(&cs);
        let (base, _, image) = image_of_two(&cs, driver);
        let plain = first_line_of(&on(&cs, driver, &["create-container", &image]));
        let mapped = mapped_container(&cs, driver, &image);
        let host_file = cs.dir.path().join("h");
        std::fs::write(&host_file, b"from the host\n").unwrap();
        std::os::unix::fs::chown(&host_file, Some(7), Some(8)).unwrap();
        let host_file = host_file.to_str().unwrap();
        // Host path -> mapped container: the host IDs as container IDs.
        on(
            &cs,
            driver,
            &["copy", host_file, &format!("{mapped}:/etc/h")],
        );
        // --chown gives container IDs.
        on(
            &cs,
            driver,
            &[
                "copy",
                "--chown",
                "5:6",
                host_file,
                &format!("{mapped}:/etc/c"),
            ],
        );
        // A UID alone is UID:UID.
        on(
            &cs,
            driver,
            &[
                "copy",
                "--chown",
                "9",
                host_file,
                &format!("{mapped}:/etc/nine"),
            ],
        );
        // Unmapped layer -> mapped container.
        on(
            &cs,
            driver,
            &[
                "copy",
                &format!("{base}:/home/u/g"),
                &format!("{mapped}:/etc/"),
            ],
        );
        // Mapped container -> unmapped one: back to the container's IDs.
        on(
            &cs,
            driver,
            &[
                "copy",
                &format!("{mapped}:/etc/h"),
                &format!("{plain}:/etc/back"),
            ],
        );
        let tree = mount(&cs, driver, &mapped);
        let got = owners(&tree);
        assert_eq!(got["etc/h"].0, 300_007, "{driver}");
        assert_eq!(got["etc/h"].1, 300_008, "{driver}");
        assert_eq!((got["etc/c"].0, got["etc/c"].1), (300_005, 300_006));
        assert_eq!((got["etc/nine"].0, got["etc/nine"].1), (300_009, 300_009));
        assert_eq!((got["etc/g"].0, got["etc/g"].1), (301_000, 301_001));
        on(&cs, driver, &["unmount", &mapped]);
        let tree = mount(&cs, driver, &plain);
        let got = owners(&tree);
        assert_eq!((got["etc/back"].0, got["etc/back"].1), (7, 8), "{driver}");
        on(&cs, driver, &["unmount", &plain]);
    }
}

#[test]
fn gc_evicts_mapped_directories_and_their_objects_and_mounts_build_them_again() {
    for driver in drivers() {
        let cs = Cs::new();
        without_shifting(&cs);
        // What is cached: on overlay, the mapped copy's `diff` and `diff1`
        // (the layers below with its owners), built for the container's
        // mount; on vfs, the tree of a mapped layer an image mount built.
        let (arg, cached) = match driver {
            "vfs" => {
                let id = on_input(
                    &cs,
                    driver,
                    &["import-layer", "--uidmap", UIDMAP, "--gidmap", GIDMAP],
                    &base_tar(),
                );
                let image = first_line_of(&on(&cs, driver, &["create-image", &id]));
                (image, vec![cs.graph().join("vfs/dir").join(&id)])
            }
            _ => {
                let (_, _, image) = image_of_two(&cs, driver);
                let id = mapped_container(&cs, driver, &image);
                let images = cs.json_on(driver, &["images", "--json"]);
                let copy = images[0]["mapped-layers"][0].as_str().unwrap().to_string();
                let dir = cs.graph().join("overlay").join(&copy);
                (id, vec![dir.join("diff"), dir.join("diff1")])
            }
        };
        let mount_args: Vec<&str> = match driver {
            "vfs" => vec!["mount", "-r", &arg],
            _ => vec!["mount", &arg],
        };
        let tree = PathBuf::from(first_line_of(&on(&cs, driver, &mount_args)));
        let expected = owners(&tree);
        assert!(
            expected.values().all(|(uid, ..)| *uid >= 100_000),
            "{driver}: {expected:?}"
        );
        on(&cs, driver, &["unmount", &arg]);
        for dir in &cached {
            assert!(dir.is_dir(), "{driver}: {} was not built", dir.display());
        }
        let report = cs.json_on(driver, &["gc", "-v", "--evict", "all", "--json"]);
        assert!(
            report["evicted"]["layers"].as_u64().unwrap() >= 1,
            "{driver}: {report}"
        );
        for dir in &cached {
            assert!(!dir.exists(), "{driver}: {} was not evicted", dir.display());
        }
        // The objects written for them (the shifted ones) go too. (A vfs
        // tree is copies: on a filesystem without reflinks they come
        // straight from the pool and leave no object to sweep.)
        let swept = report["objects"]["objects"].as_u64().unwrap();
        let left = object_files(&cs.graph().join("objects"));
        assert!(
            swept >= 1 || (driver == "vfs" && left.is_empty()),
            "{driver}: no object was swept: {report}; left: {left:?}"
        );
        // Built again, with the mapped owners.
        let tree = PathBuf::from(first_line_of(&on(&cs, driver, &mount_args)));
        assert_eq!(owners(&tree), expected, "{driver}");
        on(&cs, driver, &["unmount", &arg]);
        on(&cs, driver, &["check"]);
    }
}

/// The file objects under `objects` (not its `tmp/` or lock).
fn object_files(objects: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(objects).into_iter().flatten().flatten() {
        if shard.file_name() == "tmp" || !shard.path().is_dir() {
            continue;
        }
        for object in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(object.path());
        }
    }
    out
}

/// A container of `image` whose IDs are mapped by `CMAP`; its ID.
fn mapped_container(cs: &Cs, driver: &str, image: &str) -> String {
    first_line_of(&on(cs, driver, &mapped_args(image)))
}

/// `create-container` of `image` with its IDs mapped by `CMAP`.
fn mapped_args(image: &str) -> [&str; 6] {
    [
        "create-container",
        "--uidmap",
        CMAP,
        "--gidmap",
        CMAP,
        image,
    ]
}

fn on_bytes(cs: &Cs, driver: &str, args: &[&str]) -> Vec<u8> {
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", driver]).args(args);
    let out = common::run_command(cmd, None);
    common::expect_status(&out, args, 0);
    out.stdout
}

trait OnDriver {
    fn layer_json_on(&self, driver: &str, id: &str) -> serde_json::Value;
    fn json_on(&self, driver: &str, args: &[&str]) -> serde_json::Value;
}

impl OnDriver for Cs {
    fn layer_json_on(&self, driver: &str, id: &str) -> serde_json::Value {
        self.json_on(driver, &["layer", "--json", id])[0].clone()
    }

    fn json_on(&self, driver: &str, args: &[&str]) -> serde_json::Value {
        let out = self.ok_on(driver, args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"))
    }
}
