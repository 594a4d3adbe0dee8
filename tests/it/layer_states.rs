//! Layer states derived from disk, never from keys only we write (issue
//! 13, "layers other clients wrote are first-class"), and layers writable
//! as upstream's (issue 14): Go-written layers whatever their parents,
//! `gc` leaving their digests alone, writes into pool-backed layers
//! giving them a private directory, `check` of a written layer.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::common;
use common::clients::{Client, Shared};
use common::tar::{Meta, TarBuilder};
use common::{first_line_of, sha256, Cs};

fn go_tar() -> Vec<u8> {
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.dir("etc/", &m);
    t.file("etc/a", &m, &common::random_bytes(1, 50_000));
    t.hardlink("etc/b", "etc/a", &m);
    t.symlink("etc/s", "a", &m);
    t.file("small", &m, b"small\n");
    t.finish()
}

/// Go's CLI leaves a 64-byte binary token in the lock files, which our
/// CLI reads as text until the lock-file work of issue 13 lands; an empty
/// file is a token both read.
fn forget_go_tokens(s: &Shared) {
    for root in [s.graph(), s.run_root()] {
        for dir in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if f.file_name().to_string_lossy().ends_with(".lock") {
                    std::fs::write(f.path(), b"").unwrap();
                }
            }
        }
    }
}

fn ok(r: common::clients::Ran) -> String {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn record(s: &Shared, id: &str) -> serde_json::Value {
    let records: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.record_file("layers")).unwrap()).unwrap();
    records
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id)
        .unwrap_or_else(|| panic!("no record {id}"))
        .clone()
}

fn ours_bytes(s: &Shared, args: &[&str]) -> Vec<u8> {
    let mut cmd = s.ours_command();
    cmd.args(args);
    let out = common::run_command(cmd, None);
    common::expect_status(&out, args, 0);
    out.stdout
}

/// Regression: a Go layer on a Go parent failed `diff` and `changes`
/// (`a live layer below another layer is not supported yet`), our `diff`
/// of a Go-imported layer ignored its tar-split, and `gc` sealed Go's
/// layers, rewriting their digests and making a Go container read-only.
#[test]
fn go_layers_on_go_parents_are_first_class_and_gc_leaves_them_as_go_wrote_them() {
    let Some(s) = Shared::new("Go-written layers", &[Client::Go]) else {
        return;
    };
    let tar = go_tar();
    let tar_path = s.scratch("go.tar");
    std::fs::write(&tar_path, &tar).unwrap();
    let parent = first_line_of(&ok(s.go(&[
        "import-layer",
        "-f",
        tar_path.to_str().unwrap(),
    ])));
    let child = first_line_of(&ok(s.go(&["create-layer", &parent])));
    let merged = PathBuf::from(ok(s.go(&["mount", &child])).trim());
    std::fs::write(merged.join("written"), b"by go\n").unwrap();
    ok(s.go(&["unmount", &child]));
    forget_go_tokens(&s);
    let before = (record(&s, &parent), record(&s, &child));

    // The exact tar, from Go's tar-split.
    let diff = ours_bytes(&s, &["diff", "-u", &parent]);
    assert_eq!(
        sha256(&diff),
        sha256(&tar),
        "our diff of Go's layer is not its tar"
    );
    let changes = ok(s.ours(&["changes", &child]));
    assert!(changes.contains("/written"), "{changes}");
    let child_tar = ours_bytes(&s, &["diff", "-u", &child]);
    let listing = tar_listing(&child_tar);
    assert_eq!(listing, vec!["written".to_string()], "{listing:?}");
    for id in [&parent, &child] {
        assert_eq!(
            ok(s.ours(&["diffsize", id])).trim(),
            ok(s.go(&["diffsize", id])).trim(),
            "diffsize of {id} (hard links count once)"
        );
    }
    forget_go_tokens(&s);

    // Our gc, and a mount and a child of Go's live layer.
    ok(s.ours(&["gc"]));
    assert_eq!((record(&s, &parent), record(&s, &child)), before);
    assert!(!s.graph().join("manifests").join(&parent).exists());
    let merged = PathBuf::from(ok(s.ours(&["mount", &child])).trim());
    assert_eq!(std::fs::read(merged.join("written")).unwrap(), b"by go\n");
    std::fs::write(merged.join("ours"), b"by us\n").unwrap();
    ok(s.ours(&["unmount", &child]));
    let grandchild = first_line_of(&ok(s.ours(&["create-layer", &child])));
    let merged = PathBuf::from(ok(s.ours(&["mount", &grandchild])).trim());
    assert!(merged.join("ours").is_file() && merged.join("etc/b").is_file());
    ok(s.ours(&["unmount", &grandchild]));
    ok(s.ours(&["gc", "--evict", "all"]));
    forget_go_tokens(&s);

    // Go still exports its layer exactly and writes into its child.
    let mut go = s.go_command();
    go.args(["diff", "-u", &parent]);
    let out = common::run_command(go, None);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(sha256(&out.stdout), sha256(&tar));
    let merged = PathBuf::from(ok(s.go(&["mount", &child])).trim());
    std::fs::write(merged.join("again"), b"go again\n").unwrap();
    ok(s.go(&["unmount", &child]));
}

/// Upstream's `check` exports a layer and compares its digest: one
/// written through a mount no longer matches.
#[test]
fn check_reports_a_go_layer_written_through_our_mount() {
    let Some(s) = Shared::new("check of a written layer", &[Client::Go]) else {
        return;
    };
    let tar_path = s.scratch("go.tar");
    std::fs::write(&tar_path, go_tar()).unwrap();
    let layer = first_line_of(&ok(s.go(&[
        "import-layer",
        "-f",
        tar_path.to_str().unwrap(),
    ])));
    forget_go_tokens(&s);
    assert_eq!(ok(s.ours(&["check"])).trim(), "");
    // A file the tar-split names, rewritten (a file it does not name
    // leaves the exact tar as it was, for upstream too).
    let source = s.scratch("small");
    std::fs::write(&source, b"rewritten\n").unwrap();
    ok(s.ours(&["copy", source.to_str().unwrap(), &format!("{layer}:/")]));
    let mut cmd = s.ours_command();
    cmd.arg("check");
    let out = common::run_command(cmd, None);
    let report = common::stdout(&out);
    assert!(
        report.contains(&format!("layer {layer}: layer content incorrect digest")),
        "{report}"
    );
}

/// A pool-backed layer mounted writable gets a directory of its own: no
/// file shares an inode with `objects/` any more (the hardlinks a lower
/// layer's build made), a hard link pair stays one inode, the manifest is
/// gone and the recorded digest stays. Before, such a mount was
/// read-only (`Read-only file system`) for layers with an image.
#[test]
fn a_pool_backed_layer_mounted_writable_gets_a_private_directory() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    let on = |args: &[&str]| cs.ok_on("overlay", args);
    let tar = go_tar();
    let tar_path = cs.dir.path().join("t.tar");
    std::fs::write(&tar_path, &tar).unwrap();
    let base = first_line_of(&on(&["import-layer", "-f", tar_path.to_str().unwrap()]));
    let digest = cs_record(&cs, &base)["diff-digest"].clone();
    // As a lower layer (read-only by contract) it is built with hardlinks
    // into the object cache where the filesystem cannot reflink.
    let child = first_line_of(&on(&["create-layer", &base]));
    on(&["mount", &child]);
    on(&["unmount", &child]);
    on(&["delete-layer", &child]);
    let diff = cs.graph().join("overlay").join(&base).join("diff");
    let shared_before = std::fs::metadata(diff.join("etc/a")).unwrap().nlink();
    let merged = PathBuf::from(on(&["mount", &base]).trim());
    let a = std::fs::metadata(diff.join("etc/a")).unwrap();
    let b = std::fs::metadata(diff.join("etc/b")).unwrap();
    assert_eq!(a.ino(), b.ino(), "the hard link pair was split");
    assert_eq!(a.nlink(), 2, "still shared ({shared_before} links before)");
    assert!(!cs.graph().join("manifests").join(&base).exists());
    std::fs::write(merged.join("etc/a"), b"written").unwrap();
    assert_eq!(std::fs::read(merged.join("etc/b")).unwrap(), b"written");
    on(&["unmount", &base]);
    assert_eq!(cs_record(&cs, &base)["diff-digest"], digest);
    assert!(!objects_hold(&cs.graph().join("objects"), b"written"));
    let changes = on(&["changes", &base]);
    assert!(changes.contains("/etc/a"), "{changes}");
}

/// vfs: a layer on a written `create-layer` layer starts as a copy of its
/// tree (as upstream's vfs `Create`); an imported layer on it mounts with
/// both layers' files. Before: `a live layer below another layer is not
/// supported yet`.
#[test]
fn vfs_layers_on_a_written_layer_start_from_its_tree() {
    let cs = Cs::new();
    let parent = first_line_of(&cs.ok(&["create-layer"]));
    let tree = PathBuf::from(cs.ok(&["mount", &parent]).trim());
    std::fs::write(tree.join("from-parent"), b"p").unwrap();
    cs.ok(&["unmount", &parent]);
    let child = first_line_of(&cs.ok(&["create-layer", &parent]));
    let tree = PathBuf::from(cs.ok(&["mount", &child]).trim());
    assert_eq!(std::fs::read(tree.join("from-parent")).unwrap(), b"p");
    std::fs::write(tree.join("from-child"), b"c").unwrap();
    cs.ok(&["unmount", &child]);
    let changes = cs.ok(&["changes", &child]);
    assert!(
        changes.contains("/from-child") && !changes.contains("/from-parent"),
        "{changes}"
    );
    let mut t = TarBuilder::new();
    t.file("imported", &Meta::default(), b"i");
    let top = cs.import(&t.finish(), &[&child]);
    let tree = PathBuf::from(cs.ok(&["mount", &top]).trim());
    for f in ["from-parent", "from-child", "imported"] {
        assert!(tree.join(f).is_file(), "{f} is missing");
    }
    cs.ok(&["unmount", &top]);
    let image = first_line_of(&cs.ok(&["create-image", &child]));
    assert!(!image.is_empty());
    assert_eq!(cs.layer_json(&child)["sealed"], serde_json::Value::Null);
}

fn cs_record(cs: &Cs, id: &str) -> serde_json::Value {
    cs.ok_on("overlay", &["layer", "--json", id]);
    let records: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cs.graph().join("overlay-layers/layers.json")).unwrap(),
    )
    .unwrap();
    records
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id)
        .unwrap()
        .clone()
}

/// Whether any file under `dir` holds exactly `content`.
fn objects_hold(dir: &Path, content: &[u8]) -> bool {
    walk(dir)
        .iter()
        .any(|p| std::fs::read(p).is_ok_and(|c| c == content))
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn tar_listing(tar: &[u8]) -> Vec<String> {
    let mut cmd = std::process::Command::new("tar");
    cmd.arg("-t");
    let out = common::run_command(cmd, Some(tar));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}
