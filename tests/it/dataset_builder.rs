//! The dataset builder's layer writer, `scripts/layer_tar.py`, on small
//! trees: its diff lists what an image builder's change scan lists (a new
//! mtime is a change, a directory whose entries changed is listed, a
//! vanished entry gets a whiteout), and its check finds base + diff equal
//! to `tar -c` of the new tree, metadata included, and finds a layer
//! that leaves something out unequal. Needs python3 and GNU tar; skips
//! saying why without them.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/layer_tar.py")
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

fn layer_tar(args: &[&Path]) -> Output {
    Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("run python3")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed\nstdout: {}\nstderr: {}",
        common::stdout(&out),
        common::stderr(&out)
    );
    common::stdout(&out)
}

/// Sets the mtime of `path` (not following a symlink) to `secs`.
fn set_mtime(path: &Path, secs: u64) {
    let out = Command::new("touch")
        .args(["-h", "-d", &format!("@{secs}")])
        .arg(path)
        .output()
        .unwrap();
    ok(out, "touch");
}

/// Every path below `root`, deepest first (so a directory's time is set
/// after its entries change it).
fn all_paths(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

fn names_in(tar: &Path) -> Vec<String> {
    let out = Command::new("tar").arg("-tf").arg(tar).output().unwrap();
    ok(out, "tar -tf")
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn the_layer_diff_lists_what_a_change_scan_lists_and_adds_up_to_the_new_tree() {
    if !have("python3") || !have("tar") {
        eprintln!("skipped: the dataset builder needs python3 and tar");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    for d in ["etc", "usr/share/doc/pkg", "bin", "untouched/deep"] {
        fs::create_dir_all(old.join(d)).unwrap();
    }
    fs::write(old.join("etc/keep"), "same bytes").unwrap();
    fs::write(old.join("etc/conf"), "a").unwrap();
    fs::write(old.join("usr/share/doc/pkg/README"), "doc").unwrap();
    fs::write(old.join("bin/ls"), "ls").unwrap();
    std::os::unix::fs::symlink("ls", old.join("bin/dir")).unwrap();
    fs::write(old.join("untouched/deep/file"), "x").unwrap();
    const T0: u64 = 1_000_000_000;
    for path in all_paths(&old) {
        set_mtime(&path, T0);
    }
    ok(
        Command::new("cp")
            .arg("-a")
            .arg(&old)
            .arg(&new)
            .output()
            .unwrap(),
        "cp -a",
    );
    // Same bytes, new mtime: a change.
    set_mtime(&new.join("etc/keep"), T0 + 10);
    // Same size and mtime, other bytes: listed by the safety net.
    fs::write(new.join("etc/conf"), "b").unwrap();
    set_mtime(&new.join("etc/conf"), T0);
    // A removed directory, its parent's time put back: the parent is
    // still listed (its entries changed), and so is its own parent.
    fs::remove_dir_all(new.join("usr/share/doc")).unwrap();
    set_mtime(&new.join("usr/share"), T0);
    // A mode change, a new directory, a hardlink.
    fs::set_permissions(new.join("bin/ls"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(new.join("opt")).unwrap();
    fs::write(new.join("opt/tool"), "tool").unwrap();
    fs::hard_link(new.join("opt/tool"), new.join("opt/tool2")).unwrap();
    for d in ["etc", "bin"] {
        set_mtime(&new.join(d), T0);
    }

    let base = dir.path().join("base.tar");
    let diff = dir.path().join("diff.tar");
    let full = dir.path().join("full.tar");
    ok(
        layer_tar(&[Path::new("diff"), Path::new("-"), &old, &base]),
        "diff -",
    );
    ok(layer_tar(&[Path::new("diff"), &old, &new, &diff]), "diff");
    ok(
        Command::new("tar")
            .arg("-C")
            .arg(&new)
            .args(["--sort=name", "-cf"])
            .arg(&full)
            .arg(".")
            .output()
            .unwrap(),
        "tar -c",
    );

    assert_eq!(
        names_in(&diff),
        [
            "bin",
            "bin/ls",
            "etc",
            "etc/conf",
            "etc/keep",
            "opt",
            "opt/tool",
            "opt/tool2",
            "usr",
            "usr/share",
            "usr/share/.wh.doc",
        ],
        "the diff's listing"
    );
    assert_eq!(names_in(&base).len(), 14, "the base layer: every entry");

    let out = ok(
        layer_tar(&[Path::new("check"), &full, &base, &diff]),
        "check against the squashed tar",
    );
    assert!(out.contains("== full.tar"), "{out}");
    ok(
        layer_tar(&[Path::new("check"), &new, &base, &diff]),
        "check against the tree",
    );

    // The base alone is not the new tree: the check says where.
    let out = layer_tar(&[Path::new("check"), &full, &base]);
    let stderr = common::stderr(&out);
    assert!(!out.status.success(), "base alone passed the check");
    for changed in [
        "etc/keep",
        "etc/conf",
        "bin/ls",
        "opt/tool",
        "usr/share/doc",
    ] {
        assert!(stderr.contains(changed), "{changed} not reported: {stderr}");
    }
}
