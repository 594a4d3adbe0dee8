//! `dedup` through the CLI: the bytes layers share in the pool (from the
//! manifests), and identical materialized files shared on the filesystem
//! with FIDEDUPERANGE — on a loop-mounted XFS with reflinks (root only),
//! and not at all (without an error) where the filesystem cannot.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::loopfs::Xfs;
use common::tar::{Meta, TarBuilder};
use common::{random_bytes, Cs};

fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir(
        "data/",
        &Meta {
            mode: 0o755,
            ..Meta::default()
        },
    );
    for (name, content) in files {
        t.file(&format!("data/{name}"), &Meta::default(), content);
    }
    t.finish()
}

fn dedup_json(cs: &Cs, extra: &[&str]) -> (u64, u64) {
    let mut args = vec!["dedup", "--json"];
    args.extend_from_slice(extra);
    let v = cs.json(&args);
    (
        v["Deduped"].as_u64().expect("Deduped is a number"),
        v["Shared"].as_u64().expect("Shared is a number"),
    )
}

#[test]
fn shared_bytes_count_each_content_held_by_more_than_one_layer_once() {
    let cs = Cs::new();
    let common_file = random_bytes(1, 300_000);
    let twice = random_bytes(2, 70_000);
    // `common_file` is in three layers, `twice` in two (once under two
    // names in one layer, which does not count), the rest in one.
    cs.import(
        &tar_of(&[
            ("a", common_file.clone()),
            ("own-1", random_bytes(3, 10_000)),
            ("twice-1", twice.clone()),
            ("twice-2", twice.clone()),
        ]),
        &[],
    );
    cs.import(
        &tar_of(&[("b", common_file.clone()), ("twice", twice.clone())]),
        &[],
    );
    cs.import(
        &tar_of(&[
            ("c", common_file.clone()),
            ("own-2", random_bytes(4, 20_000)),
        ]),
        &[],
    );
    let only_once = random_bytes(5, 50_000);
    cs.import(&tar_of(&[("x", only_once.clone()), ("y", only_once)]), &[]);
    let (_, shared) = dedup_json(&cs, &[]);
    assert_eq!(shared, 300_000 + 70_000);
    for method in ["crc", "size", "sha256"] {
        assert_eq!(dedup_json(&cs, &["--hash-method", method]).1, shared);
    }
}

#[test]
fn where_the_filesystem_cannot_dedupe_nothing_is_deduped_and_nothing_fails() {
    let cs = Cs::new();
    let content = random_bytes(7, 200_000);
    let layer = cs.import(&tar_of(&[("f", content.clone())]), &[]);
    let image = common::first_line_of(&cs.ok(&["create-image", &layer]));
    let one = common::first_line_of(&cs.ok(&["create-container", &image]));
    let two = common::first_line_of(&cs.ok(&["create-container", &image]));
    let trees: Vec<PathBuf> = [&one, &two]
        .iter()
        .map(|c| PathBuf::from(cs.ok(&["mount", c]).trim()))
        .collect();
    let written = random_bytes(8, 1 << 20);
    for tree in &trees {
        std::fs::write(tree.join("data/written"), &written).unwrap();
    }
    let out = cs.ok(&["dedup"]);
    let line = out.trim();
    assert!(
        line.starts_with("Deduplicated ") && line.ends_with(" bytes"),
        "{out}"
    );
    if filesystem_type(&cs.graph()) != "xfs" && filesystem_type(&cs.graph()) != "btrfs" {
        assert_eq!(line, "Deduplicated 0 bytes");
    }
    for tree in &trees {
        assert_eq!(std::fs::read(tree.join("data/written")).unwrap(), written);
        assert_eq!(std::fs::read(tree.join("data/f")).unwrap(), content);
    }
    let err = cs.fails(&["dedup", "--hash-method", "md5"], None);
    assert!(
        err.contains("invalid hash method: md5") && err.contains("crc, size or sha256"),
        "{err}"
    );
}

/// The filesystem type of the filesystem holding `path` (as `stat -f`).
fn filesystem_type(path: &Path) -> String {
    let mut dir = path.to_path_buf();
    while !dir.exists() {
        dir.pop();
    }
    let out = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(&dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A store whose graph and run roots are on `root`.
fn store_under(root: &Path) -> Cs {
    let cs = Cs {
        dir: tempfile::tempdir_in(root).unwrap(),
    };
    assert_eq!(filesystem_type(cs.dir.path()), "xfs");
    cs
}

#[test]
fn on_xfs_identical_written_files_are_shared_and_read_the_same() {
    if !common::need_root("mounting a loop XFS") {
        return;
    }
    let Some(xfs) = Xfs::mount(1 << 30) else {
        return;
    };
    let cs = store_under(&xfs.root());
    let content = random_bytes(21, 300_000);
    let layer = cs.import(&tar_of(&[("f", content.clone())]), &[]);
    let image = common::first_line_of(&cs.ok(&["create-image", &layer]));
    let containers: Vec<String> = (0..2)
        .map(|_| common::first_line_of(&cs.ok(&["create-container", &image])))
        .collect();
    // vfs trees: files reflinked from the object cache (already shared).
    let trees: Vec<PathBuf> = containers
        .iter()
        .map(|c| PathBuf::from(cs.ok(&["mount", c]).trim()))
        .collect();
    // Nothing new to share yet.
    assert_eq!(dedup_json(&cs, &[]).0, 0);

    // Identical files written into both trees take their own blocks
    // until dedup shares them; each method finds them.
    for (n, method) in ["sha256", "crc", "size"].iter().enumerate() {
        let size = (2 << 20) + n * 4096 + 100;
        let written = random_bytes(30 + n as u64, size);
        let name = format!("data/written-{method}");
        for tree in &trees {
            std::fs::write(tree.join(&name), &written).unwrap();
        }
        let (deduped, _) = dedup_json(&cs, &["--hash-method", method]);
        assert!(
            deduped >= size as u64,
            "{method}: deduped {deduped} of {size}"
        );
        for tree in &trees {
            assert!(std::fs::read(tree.join(&name)).unwrap() == written);
            assert!(std::fs::read(tree.join("data/f")).unwrap() == content);
        }
        // Shared now: a second run has nothing new to share.
        assert_eq!(dedup_json(&cs, &["--hash-method", method]).0, 0, "{method}");
    }
    // Writes after sharing stay in their own tree.
    std::fs::write(trees[0].join("data/written-sha256"), b"changed").unwrap();
    assert_ne!(
        std::fs::read(trees[1].join("data/written-sha256")).unwrap(),
        b"changed"
    );
    for c in &containers {
        cs.ok(&["unmount", c]);
    }
    drop(cs);
}
