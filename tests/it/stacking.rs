//! Stacked overlay layers: a parentless layer that shares most entries
//! with one already materialized is built as a delta over it. The mounted
//! tree must be exactly the layer's own; the directory below stays while
//! the delta needs it, and `gc` and `check` know about both.

use crate::common;

use std::path::{Path, PathBuf};

use common::tar::{Meta, TarBuilder};
use common::Cs;

fn meta(mode: u32, mtime: u64) -> Meta {
    Meta {
        mode,
        mtime,
        ..Meta::default()
    }
}

/// Forty shared files, plus what the two images do differently: a
/// changed directory time and file mode, a new file, a changed hard-link
/// pair, a file that became a directory, a removed file and directory.
/// Each directory's entries are contiguous, as real images have them.
fn image(second: bool) -> Vec<u8> {
    let mut t = TarBuilder::new();
    let old = meta(0o755, 1_600_000_000);
    let etc_time = if second { 1_700_000_000 } else { 1_600_000_000 };
    t.dir("etc/", &meta(0o755, etc_time));
    for i in 0..40 {
        let mode = if second && i == 0 { 0o600 } else { 0o644 };
        t.file(
            &format!("etc/f{i}"),
            &meta(mode, 1_600_000_000),
            format!("file {i}").as_bytes(),
        );
    }
    if second {
        t.file("etc/new", &meta(0o644, 1_700_000_000), b"new");
    } else {
        t.file("etc/removed", &meta(0o644, 1_600_000_000), b"removed");
    }
    t.dir("usr/", &old);
    t.file("usr/target", &old, if second { b"v2" } else { b"v1" });
    t.hardlink("usr/link", "usr/target", &old);
    t.symlink("usr/sym", "target", &meta(0o777, 1_600_000_000));
    if second {
        t.dir("was-file/", &old);
        t.file("was-file/inside", &old, b"inside");
    } else {
        t.dir("gone/", &old);
        t.file("gone/child", &old, b"child");
        t.file("was-file", &old, b"plain");
    }
    t.finish()
}

fn run(cs: &Cs, args: &[&str]) -> String {
    cs.ok_on("overlay", args)
}

fn import(cs: &Cs, name: &str, tar: &[u8]) -> String {
    cs.import_named("overlay", name, tar)
}

/// The mounted tree equals `tar -x` of the image, every attribute.
fn same_as_tar(cs: &Cs, name: &str, tree: &Path) {
    cs.assert_same_as_tar(name, tree)
}

fn check_is_clean(cs: &Cs) {
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", "overlay", "check"]);
    let out = common::run_command(cmd, None);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "check: {}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
}

#[test]
fn a_sibling_image_is_a_delta_over_the_first_and_mounts_as_itself() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    let first = import(&cs, "first", &image(false));
    let second = import(&cs, "second", &image(true));
    run(&cs, &["create-image", "-n", "one", "first"]);
    run(&cs, &["create-image", "-n", "two", "second"]);
    let one = PathBuf::from(run(&cs, &["mount", "-r", "one"]).trim());
    same_as_tar(&cs, "first", &one);
    let two = PathBuf::from(run(&cs, &["mount", "-r", "two"]).trim());
    same_as_tar(&cs, "second", &two);
    let overlay = cs.graph().join("overlay");
    assert_eq!(
        std::fs::read_to_string(overlay.join(&second).join("base")).unwrap(),
        first,
        "the second image is not stacked on the first"
    );
    let delta_files = walk_count(&overlay.join(&second).join("diff"));
    assert!(delta_files < 20, "the delta holds {delta_files} entries");
    check_is_clean(&cs);

    // A container on the stacked image writes privately.
    run(&cs, &["create-container", "-n", "c", "two"]);
    let c = PathBuf::from(run(&cs, &["mount", "c"]).trim());
    same_as_tar(&cs, "second", &c);
    std::fs::write(c.join("etc/f5"), b"changed in c").unwrap();
    assert_eq!(std::fs::read(one.join("etc/f5")).unwrap(), b"file 5");
    assert_eq!(std::fs::read(two.join("etc/f5")).unwrap(), b"file 5");

    // The first image goes; its directory stays under the mounted delta.
    run(&cs, &["unmount", "one"]);
    run(&cs, &["delete-image", "one"]);
    run(&cs, &["gc", "--evict", "all"]);
    assert!(
        overlay.join(&first).join("diff").is_dir(),
        "the base was removed"
    );
    same_as_tar(&cs, "second", &two);
    check_is_clean(&cs);

    // Once nothing is mounted, eviction takes the delta, then gc the base.
    run(&cs, &["unmount", "c"]);
    run(&cs, &["unmount", "two"]);
    let report: serde_json::Value =
        serde_json::from_str(&run(&cs, &["gc", "-v", "--json", "--evict", "all"])).unwrap();
    assert!(
        report["evicted"]["layers"].as_u64().unwrap() >= 1,
        "{report}"
    );
    run(&cs, &["gc"]);
    assert!(
        !overlay.join(&first).exists(),
        "the base outlived its delta"
    );
    // Rebuilt on the next mount, now on its own.
    let two = PathBuf::from(run(&cs, &["mount", "-r", "two"]).trim());
    same_as_tar(&cs, "second", &two);
    assert!(!overlay.join(&second).join("base").exists());
    run(&cs, &["unmount", "two"]);
    check_is_clean(&cs);
}

/// Sixty files that no other image here has.
fn unrelated() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("opt/", &meta(0o755, 1_500_000_000));
    for i in 0..60 {
        let content = format!("unrelated {i}");
        t.file(
            &format!("opt/u{i}"),
            &meta(0o644, 1_500_000_000),
            content.as_bytes(),
        );
    }
    t.finish()
}

/// Rewrites a layer's manifest as format version 1 (fields by name, no
/// sketch), as an older build wrote it.
fn rewrite_as_version_1(cs: &Cs, id: &str) {
    let path = cs.graph().join("manifests").join(id);
    let bytes = std::fs::read(&path).unwrap();
    let manifest = containers_storage::manifest::decode(&path, &bytes).unwrap();
    let named = rmp_serde::to_vec_named(&manifest).unwrap();
    let mut v1 = b"CSMANIF\0".to_vec();
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&zstd::bulk::compress(&named, 3).unwrap());
    std::fs::write(&path, v1).unwrap();
    assert!(containers_storage::manifest::read_sketch(&path).is_none());
}

#[test]
fn the_base_is_the_candidate_the_sketches_point_to_or_one_without_a_sketch() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    import(&cs, "other", &unrelated());
    let first = import(&cs, "first", &image(false));
    let second = import(&cs, "second", &image(true));
    for (image, layer) in [("o", "other"), ("one", "first"), ("two", "second")] {
        run(&cs, &["create-image", "-n", image, layer]);
    }
    run(&cs, &["mount", "-r", "o"]);
    run(&cs, &["mount", "-r", "one"]);
    let overlay = cs.graph().join("overlay");
    let base = || std::fs::read_to_string(overlay.join(&second).join("base")).ok();
    let two = PathBuf::from(run(&cs, &["mount", "-r", "two"]).trim());
    same_as_tar(&cs, "second", &two);
    assert_eq!(base().as_deref(), Some(first.as_str()));

    // Built again with the first layer's manifest as an older build wrote
    // it: without a sketch it is still a candidate.
    run(&cs, &["unmount", "two"]);
    run(&cs, &["gc", "--evict", "all"]);
    assert!(!overlay.join(&second).join("diff").exists());
    rewrite_as_version_1(&cs, &first);
    let two = PathBuf::from(run(&cs, &["mount", "-r", "two"]).trim());
    same_as_tar(&cs, "second", &two);
    assert_eq!(base().as_deref(), Some(first.as_str()));
    check_is_clean(&cs);
}

fn walk_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            1 + if e.file_type().unwrap().is_dir() {
                walk_count(&e.path())
            } else {
                0
            }
        })
        .sum()
}
