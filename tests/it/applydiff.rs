//! `applydiff`: a tar applied to a layer with no content seals it exactly
//! as an import would; applied to a layer with content it adds to it (a
//! sealed layer gets a new manifest, a live one stays live); bad input
//! leaves the layer as it was.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::tar::{every_kind, Meta, TarBuilder};
use common::{compress_with, first_line_of, sha256, Cs};

#[test]
fn applydiff_seals_an_empty_layer_like_an_import() {
    let cs = Cs::new();
    let tar = every_kind();
    let file = cs.dir.path().join("layer.tar");
    std::fs::write(&file, &tar).unwrap();
    let id = first_line_of(&cs.ok(&["create-layer", "-n", "empty"]));
    assert_eq!(
        cs.ok(&["applydiff", "-f", file.to_str().unwrap(), "empty"]),
        ""
    );
    assert_eq!(sha256(&cs.ok_bytes(&["diff", "-u", &id])), sha256(&tar));
    let record = cs.layer_json(&id);
    assert_eq!(record["diff-digest"], sha256(&tar));
    assert_eq!(record["sealed"], true);
    assert!(cs.graph().join("manifests").join(&id).is_file());
    // Compressed input on stdin, with the alias.
    let gz = compress_with("gzip", &tar);
    let other = first_line_of(&cs.ok(&["create-layer"]));
    cs.ok_with_input(&["apply-diff", &other], &gz);
    assert_eq!(cs.layer_json(&other)["compressed-diff-digest"], sha256(&gz));
    assert_eq!(sha256(&cs.ok_bytes(&["diff", "-u", &other])), sha256(&tar));
}

/// Runs with the given driver; requires exit 0.
fn ok(cs: &Cs, driver: &str, args: &[&str], input: Option<&[u8]>) -> String {
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", driver]).args(args);
    let out = common::run_command(cmd, input);
    common::expect_status(&out, args, 0);
    String::from_utf8(out.stdout).unwrap()
}

/// `d/a`, `d/b`, `keep`, `o/x`, and `p/` for a child to delete from.
fn base_tar() -> Vec<u8> {
    let mut t = TarBuilder::new();
    let m = Meta::default();
    let dir = dir_meta();
    t.dir("d/", &dir);
    t.file("d/a", &m, b"a");
    t.file("d/b", &m, b"b");
    t.file("keep", &m, b"k");
    t.dir("o/", &dir);
    t.file("o/x", &m, b"x");
    t.finish()
}

/// The metadata of the tars' directories: searchable, so that a user
/// without root can read the trees back (0644, the files' mode, is not).
fn dir_meta() -> Meta {
    Meta {
        mode: 0o755,
        ..Meta::default()
    }
}

/// Replaces `d/a`, deletes `d/b` and `keep`, adds `new`, makes `o`
/// opaque with only `o/y` in it.
fn change_tar() -> Vec<u8> {
    let mut t = TarBuilder::new();
    let m = Meta::default();
    let dir = dir_meta();
    t.dir("d/", &dir);
    t.file("d/a", &m, b"A2");
    t.whiteout("d", "b");
    t.whiteout("", "keep");
    t.file("new", &m, b"n");
    t.dir("o/", &dir);
    t.opaque("o");
    t.file("o/y", &m, b"y");
    t.finish()
}

/// The regular files of a mounted tree and their contents.
fn files(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (path, node) in common::tree::snapshot(root) {
        if node.kind == "file" {
            let content = std::fs::read_to_string(root.join(&path)).unwrap();
            out.insert(path.display().to_string(), content);
        }
    }
    out
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn drivers() -> Vec<&'static str> {
    let mut drivers = vec!["vfs"];
    if common::need_root("overlay mounts") {
        drivers.push("overlay");
    }
    drivers
}

#[test]
fn applydiff_onto_a_pool_backed_layer_gives_it_both_contents_in_its_directory() {
    for driver in drivers() {
        let cs = Cs::new();
        let run = |args: &[&str], input: Option<&[u8]>| ok(&cs, driver, args, input);
        let base = first_line_of(&run(&["import-layer", "-n", "base"], Some(&base_tar())));
        let before = run(&["diff", "-u", "base"], None);
        let imported = cs_layer(&cs, driver, &base);
        run(&["applydiff", "base"], Some(&change_tar()));
        // As upstream (its `ApplyDiff`): the layer is written; its
        // directory is its content from now on, and its recorded digests,
        // sizes and tar-split are the applied stream's, which `diff`
        // gives back.
        let record = cs_layer(&cs, driver, &base);
        assert_eq!(record["sealed"], serde_json::Value::Null, "{driver}");
        assert_ne!(record["diff-digest"], imported["diff-digest"], "{driver}");
        assert_eq!(
            record["diff-digest"].as_str(),
            Some(common::sha256(&change_tar()).as_str()),
            "{driver}"
        );
        assert_eq!(record["diff-size"], change_tar().len(), "{driver}");
        assert!(
            !cs.graph().join("manifests").join(&base).exists(),
            "{driver}"
        );
        let after = cs.ok_bytes(&["-s", driver, "diff", "-u", "base"]);
        assert_ne!(String::from_utf8_lossy(&after), before, "{driver}");
        assert_eq!(
            after,
            change_tar(),
            "{driver}: diff gives the applied tar back"
        );
        assert_eq!(cs.ok(&["-s", driver, "check"]), "", "{driver}");
        run(&["create-image", "-n", "img", "base"], None);
        let tree = PathBuf::from(run(&["mount", "-r", "img"], None).trim());
        assert_eq!(
            files(&tree),
            expected(&[("d/a", "A2"), ("new", "n"), ("o/y", "y")]),
            "{driver}"
        );
        run(&["unmount", "img"], None);
        // A layer with a child takes a diff too, as upstream's does.
        run(&["create-layer", "base"], None);
        run(&["applydiff", "base"], Some(&change_tar()));
        // On a layer with a parent, deletions reach the parent's files.
        let mut t = TarBuilder::new();
        t.whiteout("d", "a");
        let mut child = TarBuilder::new();
        child.file("c", &Meta::default(), b"c");
        let top = first_line_of(&run(&["import-layer", "base"], Some(&child.finish())));
        run(&["applydiff", &top], Some(&t.finish()));
        let changes = run(&["changes", &top], None);
        assert!(changes.contains("Delete \"/d/a\""), "{driver}: {changes}");
    }
}

fn cs_layer(cs: &Cs, driver: &str, id: &str) -> serde_json::Value {
    let out = ok(cs, driver, &["layer", "--json", id], None);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

#[test]
fn applydiff_onto_container_layers_and_written_live_layers_keeps_them_live() {
    for driver in drivers() {
        let cs = Cs::new();
        let run = |args: &[&str], input: Option<&[u8]>| ok(&cs, driver, args, input);
        run(&["import-layer", "-n", "base"], Some(&base_tar()));
        run(&["create-image", "-n", "img", "base"], None);
        run(&["create-container", "-n", "c", "img"], None);
        let layer = cs_container_layer(&cs, driver, "c");
        run(&["applydiff", &layer], Some(&change_tar()));
        let tree = PathBuf::from(run(&["mount", "c"], None).trim());
        assert_eq!(
            files(&tree),
            expected(&[("d/a", "A2"), ("new", "n"), ("o/y", "y")]),
            "{driver}"
        );
        // Mounted, it takes a diff into what the mount shows, as
        // upstream's does.
        let mut applied = TarBuilder::new();
        applied.file("applied", &Meta::default(), b"a");
        run(&["applydiff", &layer], Some(&applied.finish()));
        assert_eq!(
            std::fs::read_to_string(tree.join("applied"))
                .ok()
                .as_deref(),
            Some("a"),
            "{driver}"
        );
        std::fs::write(tree.join("written"), b"w").unwrap();
        run(&["unmount", "c"], None);
        let changes = run(&["changes", "c"], None);
        for change in [
            "Modify \"/d/a\"",
            "Delete \"/d/b\"",
            "Delete \"/keep\"",
            "Add \"/new\"",
            "Add \"/written\"",
        ] {
            assert!(changes.contains(change), "{driver}: {change} in {changes}");
        }
        let mut more = TarBuilder::new();
        more.file("more", &Meta::default(), b"m");
        run(&["applydiff", &layer], Some(&more.finish()));
        assert_ne!(cs_layer(&cs, driver, &layer)["sealed"], true, "{driver}");
        let tree = PathBuf::from(run(&["mount", "c"], None).trim());
        let got = files(&tree);
        assert_eq!(
            got.get("written").map(String::as_str),
            Some("w"),
            "{driver}"
        );
        assert_eq!(got.get("more").map(String::as_str), Some("m"), "{driver}");
        run(&["unmount", "c"], None);
    }
}

fn cs_container_layer(cs: &Cs, driver: &str, name: &str) -> String {
    let out = ok(cs, driver, &["container", "--json", name], None);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["layer"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_bad_diff_leaves_the_layer_as_it_was() {
    let cs = Cs::new();
    let id = first_line_of(&cs.ok(&["create-layer", "-n", "target"]));
    let before = cs.layer_json(&id);
    let mut truncated = every_kind();
    truncated.truncate(3000);
    let err = cs.fails(&["applydiff", "target"], Some(&truncated));
    assert!(
        err.contains(&format!("layer {id}")) && err.contains("truncated"),
        "{err}"
    );
    assert_eq!(cs.layer_json(&id), before);
    assert!(!cs.graph().join("manifests").join(&id).exists());
    // The layer still takes a good diff.
    cs.ok_with_input(&["applydiff", "target"], &every_kind());
    assert_eq!(cs.layer_json(&id)["sealed"], true);
}

/// Without root, a diff applies inside a directory whose mode keeps its
/// owner from writing (`d`, 0555, as `/usr/lib` in some images): the
/// directory is opened up while the layer goes in and keeps its mode
/// after, on a live layer (a container's tree) and on a sealed one. As
/// root the store is handed to `nobody` and every command runs as it.
#[test]
fn applydiff_without_root_writes_in_read_only_directories() {
    use std::os::unix::fs::MetadataExt;
    let cs = Cs::new();
    let run = |args: &[&str], input: Option<&[u8]>| {
        let mut cmd = cs.command_without_root();
        cmd.args(args);
        let out = common::run_command(cmd, input);
        common::expect_status(&out, args, 0);
        String::from_utf8(out.stdout).unwrap()
    };
    let shut = Meta {
        mode: 0o555,
        ..Meta::default()
    };
    let m = Meta::default();
    let mut base = TarBuilder::new();
    base.dir("d/", &shut);
    base.file("d/a", &m, b"a");
    base.file("d/b", &m, b"b");
    base.dir("d/e/", &shut);
    base.file("d/e/x", &m, b"x");
    let base = base.finish();
    // Deletes inside `d`, replaces `d/a`, adds `d/c`, removes the shut
    // directory `d/e` with what it holds; `d` itself is not listed.
    let mut change = TarBuilder::new();
    change.file("d/a", &m, b"A2");
    change.whiteout("d", "b");
    change.file("d/c", &m, b"c");
    change.whiteout("d", "e");
    let change = change.finish();
    let want = expected(&[("d/a", "A2"), ("d/c", "c")]);
    let mode = |tree: &Path| std::fs::symlink_metadata(tree.join("d")).unwrap().mode() & 0o7777;
    run(&["import-layer", "-n", "base"], Some(&base));
    run(&["create-image", "-n", "img", "base"], None);
    run(&["create-container", "-n", "c", "img"], None);
    let layer = run(&["container", "--json", "c"], None);
    let layer: serde_json::Value = serde_json::from_str(&layer).unwrap();
    let layer = layer[0]["layer"].as_str().unwrap().to_string();
    // A live layer: applied in place.
    run(&["applydiff", &layer], Some(&change));
    let tree = PathBuf::from(run(&["mount", "c"], None).trim());
    assert_eq!((files(&tree), mode(&tree)), (want.clone(), 0o555));
    run(&["unmount", "c"], None);
    // A sealed layer: its tree is built, the diff applied, and the
    // result imported.
    run(&["delete-container", "c"], None);
    run(&["applydiff", "base"], Some(&change));
    let tree = PathBuf::from(run(&["mount", "-r", "img"], None).trim());
    assert_eq!((files(&tree), mode(&tree)), (want, 0o555));
    run(&["unmount", "img"], None);
    // Nothing is left behind, and the layer can go.
    run(&["delete-image", "img"], None);
    let vfs = cs.graph().join("vfs");
    let left: Vec<_> = std::fs::read_dir(&vfs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let trees = std::fs::read_dir(vfs.join("dir")).map_or(0, |d| d.count());
    assert_eq!(trees, 0, "a layer's tree is left");
}
