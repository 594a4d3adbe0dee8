//! The split image store's layers (`--image-store DIR`), the second place
//! of the writable layer store as upstream has it, driven as a script
//! would, on both drivers (overlay needs root):
//!
//! - `--readonly` layers (`import-layer -r`, `create-layer -r`) go under
//!   DIR: record in `DIR/<drv>-layers/layers.json`, driver directory in
//!   `DIR/<drv>/`, tar-split in `DIR/<drv>-layers/`; nothing of theirs in
//!   the graph root. They export the tar they came from, mount read-only
//!   with the tree it gives, carry the graph root's layers, images and
//!   containers, and go (files and all) with `delete-layer`,
//!   `delete-image` and `wipe`;
//! - DIR's layers are not `Read Only`: names (moving between the two
//!   places as within one), metadata and big data change DIR's records;
//!   a directory-backed one (ours, or one the Go CLI wrote, which then
//!   sees what was written) is written in place by `mount`, `copy` and
//!   `applydiff`, and a pool-backed one (a store of ours used as DIR) is
//!   made directory-backed there first, from DIR's pool, a cache of that
//!   store's made private in place (refused while mounted);
//! - a store written before, used as DIR, has its layers deleted there
//!   with their files;
//! - `check` looks at both places, and four processes share a split
//!   store without a hang or leftovers;
//! - a move to DIR that a killed process left half done is finished or
//!   undone by the next command, and `import-layer -r` killed at random
//!   moments leaves the layer whole in one place (DIR, or the graph root
//!   when killed before the move) or nowhere; `delete-image` killed so
//!   leaves each of DIR's layers whole or gone with all its files.

use crate::common;
use crate::harness;
use crate::ro_stores::{assert_tree, driver_usable, go_present, Cli, Scratch};

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// The `#[test]`s that run `$body` on vfs and on overlay.
macro_rules! on_both_drivers {
    ($body:ident: $vfs:ident, $overlay:ident) => {
        #[test]
        fn $vfs() {
            $body("vfs");
        }

        #[test]
        fn $overlay() {
            $body("overlay");
        }
    };
}

/// A scratch directory with a store on `driver` whose split image store
/// is `DIR` (returned), when the driver can be tested here.
fn split_store(driver: &'static str) -> Option<(Scratch, Cli, PathBuf)> {
    if !driver_usable(driver) {
        return None;
    }
    let s = Scratch::new();
    let dir = s.path("images");
    let mut cli = Cli::ours(s.path("graph"), s.path("run"), driver);
    cli.extra = vec!["--image-store".into(), dir.display().to_string()];
    Some((s, cli, dir))
}

/// The layer records of `driver` under `root`, as the file holds them.
fn records(root: &Path, driver: &str) -> Vec<Value> {
    let path = root.join(format!("{driver}-layers/layers.json"));
    match std::fs::read(&path) {
        Ok(bytes) if !bytes.is_empty() => serde_json::from_slice(&bytes).unwrap(),
        _ => Vec::new(),
    }
}

fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn names_of(records: &[Value], id: &str) -> Vec<String> {
    let record = records.iter().find(|r| r["id"] == id).unwrap();
    match record["names"].as_array() {
        Some(names) => names
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect(),
        None => Vec::new(),
    }
}

/// The layer's driver directory under `root`.
fn layer_dir(root: &Path, driver: &str, id: &str) -> PathBuf {
    match driver {
        "overlay" => root.join("overlay").join(id),
        _ => root.join("vfs/dir").join(id),
    }
}

fn tar_split(root: &Path, driver: &str, id: &str) -> PathBuf {
    root.join(format!("{driver}-layers/{id}.tar-split.gz"))
}

/// Every file the layer `id` has under `root`, its short link included.
fn files_of(root: &Path, driver: &str, id: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = [
        layer_dir(root, driver, id),
        tar_split(root, driver, id),
        root.join("manifests").join(id),
    ]
    .into_iter()
    .filter(|p| std::fs::symlink_metadata(p).is_ok())
    .collect();
    if let Ok(links) = std::fs::read_dir(root.join("overlay/l")) {
        for link in links.flatten() {
            let target = std::fs::read_link(link.path()).unwrap_or_default();
            if target == Path::new(&format!("../{id}/diff")) {
                out.push(link.path());
            }
        }
    }
    out
}

/// `check` must report nothing: exit 0 and no output.
fn check_clean(cli: &Cli, context: &str) {
    let out = cli.run(&["check"], None);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{context}: check: {}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
}

fn refused_with(cli: &Cli, args: &[&str], words: &str) {
    let out = cli.run(args, None);
    let err = common::stderr(&out);
    assert!(!out.status.success(), "{args:?} was not refused");
    assert!(err.contains(words), "{args:?}: {err}");
}

fn readonly_layers_go_to_the_image_store(driver: &'static str) {
    let Some((s, split, dir)) = split_store(driver) else {
        return;
    };
    let graph = s.path("graph");
    let base_tar = s.path("base.tar");
    let top_tar = s.path("top.tar");
    let base = split.first_line(&[
        "import-layer",
        "-r",
        "-n",
        "base",
        "-f",
        base_tar.to_str().unwrap(),
    ]);
    let top = split.first_line(&[
        "import-layer",
        "-r",
        "-n",
        "top",
        "-f",
        top_tar.to_str().unwrap(),
        "base",
    ]);
    let empty = split.first_line(&["create-layer", "-r", "-n", "empty", "top"]);
    let writable = split.first_line(&["create-layer", "-n", "writable", "top"]);

    // Placement: the `--readonly` ones under DIR, whole; the writable one
    // in the graph root, as upstream places them.
    assert_eq!(
        ids(&records(&dir, driver)),
        [base.clone(), top.clone(), empty.clone()]
    );
    assert_eq!(
        ids(&records(&graph, driver)),
        std::slice::from_ref(&writable)
    );
    for id in [&base, &top, &empty] {
        assert!(
            files_of(&graph, driver, id).is_empty(),
            "{:?}",
            files_of(&graph, driver, id)
        );
        let content = match driver {
            "overlay" => layer_dir(&dir, driver, id).join("diff"),
            _ => layer_dir(&dir, driver, id),
        };
        assert!(content.is_dir(), "{} missing", content.display());
        if driver == "overlay" {
            let short = std::fs::read_to_string(layer_dir(&dir, driver, id).join("link")).unwrap();
            let link = dir.join("overlay/l").join(short.trim());
            assert_eq!(
                std::fs::read_link(&link).unwrap(),
                Path::new(&format!("../{id}/diff"))
            );
        }
    }
    for id in [&base, &top] {
        assert!(tar_split(&dir, driver, id).is_file());
    }
    let shown = split.ok(&["layer", "top"]);
    assert!(
        shown.contains(&format!("ID: {top}")) && !shown.contains("Read Only"),
        "{shown}"
    );
    assert!(split.ok(&["layers"]).contains("name: empty"));

    // Content: the tars they came from, a read-only mount of the tree.
    assert_eq!(
        split.ok_bytes(&["diff", "-u", "base"]),
        std::fs::read(&base_tar).unwrap()
    );
    assert_eq!(
        split.ok_bytes(&["diff", "-u", "top"]),
        std::fs::read(&top_tar).unwrap()
    );
    let mounted = PathBuf::from(split.ok(&["mount", "top"]).trim());
    assert_tree(
        &s,
        &mounted,
        "the mount of a --readonly layer of the image store",
    );
    if driver == "overlay" {
        // (A vfs mount is the layer's directory, as upstream's.)
        let e = std::fs::write(mounted.join("new"), "x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    }
    split.ok(&["unmount", "top"]);
    if driver == "overlay" {
        // No bare mountpoint left for Go clients to take for the layer's
        // directory (they look in the graph root first), by `unmount` or
        // by `shutdown -f`.
        assert!(!layer_dir(&graph, driver, &top).exists());
        split.ok(&["mount", "top"]);
        // (Upstream's `shutdown -f` unmounts, then still says a layer
        // was mounted.)
        split.run(&["shutdown", "-f"], None);
        assert_eq!(split.ok(&["mounted", "top"]), "");
        assert!(!layer_dir(&graph, driver, &top).exists());
    }
    refused_with(
        &split,
        &["copy", base_tar.to_str().unwrap(), "top:/x"],
        "it is read-only",
    );
    refused_with(
        &split,
        &["applydiff", "-f", top_tar.to_str().unwrap(), "top"],
        "it is read-only",
    );

    // The graph root's layers, images and containers build on them.
    let image = split.first_line(&["create-image", "-n", "img", "top"]);
    split.ok(&["create-container", "-n", "c", &image]);
    let mounted = PathBuf::from(split.ok(&["mount", "c"]).trim());
    assert!(mounted.starts_with(&graph), "{}", mounted.display());
    assert_tree(&s, &mounted, "a container on the image store's layers");
    std::fs::write(mounted.join("written"), "by c").unwrap();
    split.ok(&["unmount", "c"]);

    // Names, metadata and big data change DIR's records; a name moves
    // between the two places as within one.
    split.ok(&["add-names", "-n", "shared", "top"]);
    assert!(names_of(&records(&dir, driver), &top).contains(&"shared".to_string()));
    refused_with(&split, &["create-layer", "-n", "shared"], "already in use");
    split.ok(&["add-names", "-n", "shared", "writable"]);
    assert!(!names_of(&records(&dir, driver), &top).contains(&"shared".to_string()));
    assert!(names_of(&records(&graph, driver), &writable).contains(&"shared".to_string()));
    split.ok(&["set-names", "-n", "shared", "-n", "top", "top"]);
    assert_eq!(names_of(&records(&graph, driver), &writable), ["writable"]);
    split.ok(&["set-metadata", "-m", "kept in DIR", "top"]);
    assert_eq!(split.ok(&["metadata", "-q", "top"]).trim(), "kept in DIR");
    let dir_top = records(&dir, driver)
        .into_iter()
        .find(|r| r["id"] == top.as_str())
        .unwrap();
    assert_eq!(dir_top["metadata"], "kept in DIR");
    split.ok(&[
        "set-layer-data",
        "-f",
        base_tar.to_str().unwrap(),
        "top",
        "blob",
    ]);
    assert_eq!(
        split.ok_bytes(&["get-layer-data", "top", "blob"]),
        std::fs::read(&base_tar).unwrap()
    );
    assert_eq!(split.ok(&["check"]), "");

    // Deletes: guarded as the graph root's, and the files go with them.
    refused_with(&split, &["delete-layer", "base"], "layer has children");
    split.ok(&["delete-layer", "writable"]);
    split.ok(&["delete-layer", "empty"]);
    assert!(
        files_of(&dir, driver, &empty).is_empty(),
        "{:?}",
        files_of(&dir, driver, &empty)
    );
    split.ok(&["delete-container", "c"]);
    let out = split.run(&["delete-image", "img"], None);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let deleted = common::stderr(&out);
    assert!(
        deleted.contains(&top) && deleted.contains(&base),
        "{deleted}"
    );
    assert!(records(&dir, driver).is_empty());
    for id in [&base, &top] {
        assert!(
            files_of(&dir, driver, id).is_empty(),
            "{:?}",
            files_of(&dir, driver, id)
        );
        assert!(
            files_of(&graph, driver, id).is_empty(),
            "{:?}",
            files_of(&graph, driver, id)
        );
    }
    assert!(
        !dir.join(format!("{driver}-layers/{top}")).exists(),
        "big data left"
    );

    // `wipe` takes both places' layers.
    let again = split.first_line(&["import-layer", "-r", "-f", base_tar.to_str().unwrap()]);
    split.first_line(&["create-layer", "-n", "plain"]);
    split.ok(&["wipe"]);
    assert!(records(&dir, driver).is_empty() && records(&graph, driver).is_empty());
    assert!(files_of(&dir, driver, &again).is_empty());
    assert_eq!(split.ok(&["check"]), "");
}

on_both_drivers!(
    readonly_layers_go_to_the_image_store:
        readonly_layers_go_to_the_image_store_vfs,
        readonly_layers_go_to_the_image_store_overlay
);

/// A store written before, used as DIR: its layers are this store's,
/// their content read where it is and never written; `delete-image`
/// deletes them there, files and all.
fn the_image_stores_own_layers_are_this_stores(driver: &'static str) {
    let Some((s, split, dir)) = split_store(driver) else {
        return;
    };
    let writer = Cli::ours(dir.clone(), s.path("run-writer"), driver);
    let base = writer.first_line(&[
        "import-layer",
        "-n",
        "base",
        "-f",
        s.path("base.tar").to_str().unwrap(),
    ]);
    let top = writer.first_line(&[
        "import-layer",
        "-f",
        s.path("top.tar").to_str().unwrap(),
        &base,
    ]);
    writer.ok(&["create-image", "-n", "theirs", &top]);
    // One of them built in place, as a mount there leaves it.
    writer.ok(&["mount", "-r", "theirs"]);
    writer.ok(&["unmount", "theirs"]);

    let shown = split.ok(&["layer", "base"]);
    assert!(!shown.contains("Read Only"), "{shown}");
    split.ok(&["add-names", "-n", "renamed", "base"]);
    assert!(names_of(&records(&dir, driver), &base).contains(&"renamed".to_string()));
    split.ok(&["set-metadata", "-m", "noted", "renamed"]);
    assert_eq!(split.ok(&["metadata", "-q", "base"]).trim(), "noted");
    let mounted = PathBuf::from(split.ok(&["mount", "-r", "theirs"]).trim());
    assert_tree(&s, &mounted, "a read-only mount of the image store's image");
    split.ok(&["unmount", "theirs"]);
    assert_eq!(split.ok(&["check"]), "");

    // A directory-backed one is written in place, through a mount and
    // `copy`, as upstream writes its layers there.
    let live = writer.first_line(&["create-layer", "-n", "live", &top]);
    let mounted = PathBuf::from(split.ok(&["mount", "live"]).trim());
    std::fs::write(mounted.join("written"), "in place").unwrap();
    split.ok(&["unmount", "live"]);
    split.ok(&[
        "copy",
        s.path("top.tar").to_str().unwrap(),
        "live:/copied.tar",
    ]);
    let content = layer_dir(&dir, driver, &live);
    let content = match driver {
        "overlay" => content.join("diff"),
        _ => content,
    };
    assert_eq!(
        std::fs::read_to_string(content.join("written")).unwrap(),
        "in place"
    );
    assert!(content.join("copied.tar").is_file());
    let changes = split.ok(&["changes", "live"]);
    assert!(
        changes.contains("Add \"/written\"") && changes.contains("Add \"/copied.tar\""),
        "{changes}"
    );
    // `applydiff` too: the layer's tar-split and digests are then the
    // stream's, in DIR, so that `diff` gives it back.
    let top_tar = s.path("top.tar");
    split.ok(&["applydiff", "-f", top_tar.to_str().unwrap(), "live"]);
    assert_eq!(
        split.ok_bytes(&["diff", "-u", "live"]),
        std::fs::read(&top_tar).unwrap()
    );
    assert!(tar_split(&dir, driver, &live).is_file());
    let record = records(&dir, driver)
        .into_iter()
        .find(|r| r["id"] == live.as_str())
        .unwrap();
    let digest = common::sha256(&std::fs::read(&top_tar).unwrap());
    assert_eq!(record["diff-digest"], digest);
    assert!(files_of(&s.path("graph"), driver, &live).is_empty());
    // The store used alone sees what was written.
    let mounted = PathBuf::from(writer.ok(&["mount", "live"]).trim());
    assert_eq!(
        std::fs::read_to_string(mounted.join("written")).unwrap(),
        "in place"
    );
    writer.ok(&["unmount", "live"]);
    split.ok(&["delete-layer", "live"]);
    assert!(!layer_dir(&dir, driver, &live).exists());

    pool_backed_layers_are_written_there(&s, &split, &writer, (&dir, driver), &top);

    split.ok(&["delete-image", "theirs"]);
    assert!(records(&dir, driver).is_empty());
    for id in [&base, &top] {
        assert!(
            files_of(&dir, driver, id).is_empty(),
            "{:?}",
            files_of(&dir, driver, id)
        );
    }
    // The store itself, used alone again, has nothing left.
    assert_eq!(writer.ok(&["layers"]), "");
    assert_eq!(writer.ok(&["check"]), "");
}

/// The pool-backed layers of a store of ours used as DIR (`writer`'s,
/// under `top`, one of them) are written too, as upstream writes any
/// layer not `--readonly`: made directory-backed there first, from DIR's
/// pool, their manifest gone and their tar-split beside their record.
/// One never built there gets a new directory; one whose directory that
/// store built (sharing inodes with its `objects/`) is made private in
/// place, so no other tree sees the write.
fn pool_backed_layers_are_written_there(
    s: &Scratch,
    split: &Cli,
    writer: &Cli,
    (dir, driver): (&Path, &str),
    top: &str,
) {
    let graph = s.path("graph");
    let (base_tar, top_tar) = (s.path("base.tar"), s.path("top.tar"));
    let manifest = |id: &str| dir.join("manifests").join(id);
    let content = |id: &str| match driver {
        "overlay" => layer_dir(dir, driver, id).join("diff"),
        _ => layer_dir(dir, driver, id),
    };
    // Never built there.
    let extra = writer.first_line(&[
        "import-layer",
        "-n",
        "extra",
        "-f",
        base_tar.to_str().unwrap(),
        top,
    ]);
    assert!(manifest(&extra).is_file() && !content(&extra).exists());
    let mounted = PathBuf::from(split.ok(&["mount", "extra"]).trim());
    assert!(
        !manifest(&extra).exists(),
        "still pool-backed while mounted"
    );
    assert!(content(&extra).join("etc/hello").is_file());
    std::fs::write(mounted.join("etc/hello"), "changed\n").unwrap();
    std::fs::write(mounted.join("written"), "through the mount\n").unwrap();
    split.ok(&["unmount", "extra"]);
    assert!(tar_split(dir, driver, &extra).is_file());
    assert!(
        files_of(&graph, driver, &extra).is_empty(),
        "{:?}",
        files_of(&graph, driver, &extra)
    );
    let changes = split.ok(&["changes", "extra"]);
    assert!(
        changes.contains("Add \"/written\"") && changes.contains("Modify \"/etc/hello\""),
        "{changes}"
    );
    // The store used alone sees the layer as a directory with the writes.
    let alone = PathBuf::from(writer.ok(&["mount", "extra"]).trim());
    assert_eq!(
        std::fs::read_to_string(alone.join("etc/hello")).unwrap(),
        "changed\n"
    );
    assert!(alone.join("written").is_file());
    writer.ok(&["unmount", "extra"]);

    // Built there by that store (on overlay, a mount there left `top`'s
    // directory, hardlinked to its `objects/`): made private in place.
    // Refused while mounted: the mount shows the pool's tree.
    split.ok(&["mount", "-r", "theirs"]);
    refused_with(split, &["mount", top], "before it is written");
    split.ok(&["unmount", "theirs"]);
    let note = s.path("note");
    std::fs::write(&note, "copied in\n").unwrap();
    split.ok(&["copy", note.to_str().unwrap(), &format!("{top}:/opt/top")]);
    assert!(!manifest(top).exists());
    assert_eq!(
        std::fs::read_to_string(content(top).join("opt/top")).unwrap(),
        "copied in\n"
    );
    let objects = dir.join("objects");
    for entry in walk(&objects) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            bytes != b"copied in\n",
            "{} took the write",
            entry.display()
        );
    }
    // The store used alone sees it too.
    let alone = PathBuf::from(writer.ok(&["mount", "-r", "theirs"]).trim());
    assert_eq!(
        std::fs::read_to_string(alone.join("opt/top")).unwrap(),
        "copied in\n"
    );
    writer.ok(&["unmount", "theirs"]);

    // `applydiff` into a pool-backed one: its tar-split and digests are
    // then the stream's, in DIR.
    let more = writer.first_line(&["import-layer", "-f", top_tar.to_str().unwrap()]);
    split.ok(&["applydiff", "-f", base_tar.to_str().unwrap(), &more]);
    assert!(!manifest(&more).exists() && tar_split(dir, driver, &more).is_file());
    assert_eq!(
        split.ok_bytes(&["diff", "-u", &more]),
        std::fs::read(&base_tar).unwrap()
    );
    let record = records(dir, driver)
        .into_iter()
        .find(|r| r["id"] == more.as_str())
        .unwrap();
    assert_eq!(
        record["diff-digest"],
        common::sha256(&std::fs::read(&base_tar).unwrap())
    );
    // As upstream's `check`: the layers written since their digests
    // were recorded no longer match them; `more` took its stream's.
    assert_eq!(digest_mismatches(split), sorted(&[top, &extra]));
    for id in [&more, &extra] {
        split.ok(&["delete-layer", id]);
        assert!(
            files_of(dir, driver, id).is_empty(),
            "{:?}",
            files_of(dir, driver, id)
        );
    }
    // `gc` sweeps DIR's pool of what no manifest there lists any more
    // (`top.tar`'s chunks); `base` keeps its own, which `extra` listed
    // too.
    let pool_bytes = || -> u64 {
        walk(&dir.join("chunks"))
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum()
    };
    let before = pool_bytes();
    let gc = split.ok(&["gc", "-v"]);
    assert!(gc.contains("unreferenced chunks: "), "{gc}");
    assert!(
        pool_bytes() < before,
        "{gc}: DIR's pool kept {before} bytes"
    );
    let again = split.ok(&["gc", "-v"]);
    assert!(!again.contains("unreferenced chunks"), "{again}");
    assert_eq!(
        writer.ok_bytes(&["diff", "-u", "base"]),
        std::fs::read(&base_tar).unwrap()
    );
    assert_eq!(digest_mismatches(split), vec![top.to_string()]);
}

/// The layers `check` reports as no longer matching their digests
/// (sorted); it must report nothing else.
fn digest_mismatches(cli: &Cli) -> Vec<String> {
    let out = cli.run(&["check"], None);
    let text = common::stdout(&out);
    let mut ids = Vec::new();
    for line in text.lines() {
        let (id, what) = line
            .strip_prefix("layer ")
            .and_then(|l| l.split_once(": "))
            .unwrap_or_else(|| panic!("check: {text}"));
        assert!(what.starts_with("layer content incorrect digest"), "{text}");
        ids.push(id.to_string());
    }
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    ids.sort();
    ids
}

/// Every regular file under `root`.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk(&path)),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
    out
}

/// A store the Go CLI wrote, used as DIR: its directory-backed layer is
/// written in place through our mount, and the Go CLI on that store sees
/// what was written.
fn a_go_written_image_stores_layer_is_written_in_place(driver: &'static str) {
    if !go_present() {
        return;
    }
    let Some((s, split, dir)) = split_store(driver) else {
        return;
    };
    let go = Cli::go(dir.clone(), s.path("run-go"), driver);
    let base = go.first_line(&[
        "import-layer",
        "-n",
        "base",
        "-f",
        s.path("base.tar").to_str().unwrap(),
    ]);
    let child = go.first_line(&["create-layer", "-n", "child", &base]);
    go.ok(&["create-image", "-n", "goimg", "child"]);
    // Go's overlay driver leaves its home bind mounted.
    let _ = nix::mount::umount2(&dir.join("overlay"), nix::mount::MntFlags::MNT_DETACH);
    let shown = split.ok(&["layer", "child"]);
    assert!(!shown.contains("Read Only"), "{shown}");
    let mounted = PathBuf::from(split.ok(&["mount", "child"]).trim());
    assert!(mounted.join("etc/hello").is_file());
    std::fs::write(mounted.join("from-ours"), "written in DIR").unwrap();
    split.ok(&["unmount", "child"]);
    split.ok(&["add-names", "-n", "renamed", "child"]);
    assert!(go.ok(&["layer", &child]).contains("Name: renamed"));
    // (Go 1.43's `mount` takes a layer by ID only.)
    let mounted = PathBuf::from(go.ok(&["mount", &child]).trim());
    assert_eq!(
        std::fs::read_to_string(mounted.join("from-ours")).unwrap(),
        "written in DIR"
    );
    go.ok(&["unmount", &child]);
    let _ = nix::mount::umount2(&dir.join("overlay"), nix::mount::MntFlags::MNT_DETACH);
    split.ok(&["delete-image", "goimg"]);
    assert_eq!(go.ok(&["layers"]), "");
    let _ = nix::mount::umount2(&dir.join("overlay"), nix::mount::MntFlags::MNT_DETACH);
}

on_both_drivers!(
    a_go_written_image_stores_layer_is_written_in_place:
        a_go_written_image_stores_layer_is_written_in_place_vfs,
        a_go_written_image_stores_layer_is_written_in_place_overlay
);

on_both_drivers!(
    the_image_stores_own_layers_are_this_stores:
        the_image_stores_own_layers_are_this_stores_vfs,
        the_image_stores_own_layers_are_this_stores_overlay
);

/// Moves a killed process left half done, made by hand: the next command
/// finishes one whose record DIR holds (the graph root's leftover copy
/// goes), and undoes one whose record it does not (the content comes
/// back to the graph root with the record).
fn half_done_moves_are_finished_or_undone(driver: &'static str) {
    let Some((s, split, dir)) = split_store(driver) else {
        return;
    };
    let graph = s.path("graph");
    let tar = std::fs::read(s.path("base.tar")).unwrap();
    let import = |name: &str| {
        split.first_line(&[
            "import-layer",
            "-r",
            "-n",
            name,
            "-f",
            s.path("base.tar").to_str().unwrap(),
        ])
    };
    let marker = |id: &str| graph.join(format!("{driver}-layers/.moving/{id}"));
    let write_marker = |id: &str| {
        std::fs::create_dir_all(marker(id).parent().unwrap()).unwrap();
        std::fs::write(marker(id), "").unwrap();
    };

    // Killed after DIR's records were saved: a copy of the directory is
    // still in the graph root, and the graph root's record too.
    let done = import("done");
    write_marker(&done);
    let copy = common::run_command(
        {
            let mut cp = std::process::Command::new("cp");
            cp.arg("-a")
                .arg(layer_dir(&dir, driver, &done))
                .arg(layer_dir(&graph, driver, &done));
            cp
        },
        None,
    );
    assert!(copy.status.success());
    let mut graph_records = records(&graph, driver);
    graph_records.push(records(&dir, driver)[0].clone());
    let graph_json = graph.join(format!("{driver}-layers/layers.json"));
    std::fs::write(&graph_json, serde_json::to_vec(&graph_records).unwrap()).unwrap();
    let listed = split.ok(&["layers"]);
    assert_eq!(listed.matches(&done).count(), 1, "{listed}");
    assert!(!marker(&done).exists());
    assert!(!layer_dir(&graph, driver, &done).exists());
    assert_eq!(ids(&records(&dir, driver)), std::slice::from_ref(&done));
    assert!(records(&graph, driver).is_empty());
    assert_eq!(split.ok_bytes(&["diff", "-u", "done"]), tar);

    // Killed before: the content is in DIR, the record in the graph root.
    let undone = import("undone");
    write_marker(&undone);
    let mut dir_records = records(&dir, driver);
    let record = dir_records.pop().unwrap();
    assert_eq!(record["id"], undone.as_str());
    std::fs::write(
        dir.join(format!("{driver}-layers/layers.json")),
        serde_json::to_vec(&dir_records).unwrap(),
    )
    .unwrap();
    std::fs::write(&graph_json, serde_json::to_vec(&[record]).unwrap()).unwrap();
    let listed = split.ok(&["layers"]);
    assert_eq!(listed.matches(&undone).count(), 1, "{listed}");
    assert!(!marker(&undone).exists());
    assert!(
        files_of(&dir, driver, &undone).is_empty(),
        "{:?}",
        files_of(&dir, driver, &undone)
    );
    assert!(layer_dir(&graph, driver, &undone).is_dir());
    assert!(tar_split(&graph, driver, &undone).is_file());
    assert_eq!(ids(&records(&graph, driver)), std::slice::from_ref(&undone));
    assert_eq!(split.ok_bytes(&["diff", "-u", "undone"]), tar);
    let mounted = PathBuf::from(split.ok(&["mount", "undone"]).trim());
    assert!(mounted.join("etc/hello").is_file());
    split.ok(&["unmount", "undone"]);
    assert_eq!(split.ok(&["check"]), "");
}

/// A container record whose layer DIR holds (here, records of a store
/// of ours used as DIR, copied by hand into the graph root's): as in
/// upstream's one layer store, `delete-container` deletes that layer
/// there, files and all.
fn a_containers_layer_in_the_image_store_goes_with_it(driver: &'static str) {
    let Some((s, split, dir)) = split_store(driver) else {
        return;
    };
    let writer = Cli::ours(dir.clone(), s.path("run-writer"), driver);
    let top = writer.first_line(&["import-layer", "-f", s.path("top.tar").to_str().unwrap()]);
    writer.ok(&["create-image", "-n", "theirs", &top]);
    writer.ok(&["create-container", "-n", "c", "theirs"]);
    let layer = writer.ok(&["container", "-j", "c"]);
    let layer: Value = serde_json::from_str(&layer).unwrap();
    let layer = layer[0]["layer"].as_str().unwrap().to_string();
    let mounted = PathBuf::from(writer.ok(&["mount", "c"]).trim());
    std::fs::write(mounted.join("written"), "by the container").unwrap();
    writer.ok(&["unmount", "c"]);
    assert!(!files_of(&dir, driver, &layer).is_empty());
    let containers = format!("{driver}-containers");
    let graph = s.path("graph").join(&containers);
    std::fs::create_dir_all(&graph).unwrap();
    for file in ["containers.json", "containers.lock"] {
        std::fs::copy(dir.join(&containers).join(file), graph.join(file)).unwrap();
    }
    assert!(split.ok(&["containers"]).contains("c"));
    split.ok(&["delete-container", "c"]);
    assert!(!ids(&records(&dir, driver)).contains(&layer));
    assert!(
        files_of(&dir, driver, &layer).is_empty(),
        "{:?}",
        files_of(&dir, driver, &layer)
    );
    assert_eq!(split.ok(&["containers"]), "");
    assert_eq!(split.ok(&["check"]), "");
}

on_both_drivers!(
    a_containers_layer_in_the_image_store_goes_with_it:
        a_containers_layer_in_the_image_store_goes_with_it_vfs,
        a_containers_layer_in_the_image_store_goes_with_it_overlay
);

on_both_drivers!(
    half_done_moves_are_finished_or_undone:
        half_done_moves_are_finished_or_undone_vfs,
        half_done_moves_are_finished_or_undone_overlay
);

/// `import-layer -r` under a split image store, SIGKILLed at random
/// moments (seed: `CS_CRASH_SEED`): after each kill the layer is whole in
/// one place (its tar exported byte for byte; DIR, or the graph root when
/// the kill came before the move) or nowhere, no directory or marker is
/// left once it is deleted, and `check` is clean.
fn a_killed_readonly_import_is_whole_in_the_image_store_or_gone(driver: &'static str) {
    let Some((s, split, dir)) = split_store(driver) else {
        return;
    };
    let seed = harness::seed_from_env("CS_CRASH_SEED", "image store import kills");
    let mut rng = common::Rng(seed);
    let graph = s.path("graph");
    let shared = harness::shared_blobs(seed, 2, 256 << 10);
    let (tar, _) = harness::layer_tar(&mut rng, "timed", 4 << 20, &shared);
    let path = s.path("layer.tar");
    std::fs::write(&path, &tar).unwrap();
    let import = |name: &str| {
        let mut cmd = split.command();
        cmd.args([
            "import-layer",
            "-r",
            "-n",
            name,
            "-f",
            path.to_str().unwrap(),
        ]);
        cmd
    };
    let (typical, _) = harness::time_command(import("timed"), "the timed import");
    // Uninterrupted, the layer lands in DIR.
    assert_eq!(records(&dir, driver).len(), 1);
    split.ok(&["delete-layer", "timed"]);
    let trials = harness::number_from_env("CS_IMAGE_STORE_TRIALS", 12);
    let mut outcomes = [0u32; 3];
    for trial in 0..trials {
        let name = format!("l{trial}");
        let delay = harness::pick_delay(&mut rng, typical.max(Duration::from_millis(20)));
        let ended = harness::run_and_kill(import(&name), delay, &s.path("scratch"));
        let context = format!("trial {trial} (seed {seed}, {delay:?}, {ended:?})");
        let listed = split.ok(&["layers"]);
        let in_dir = ids(&records(&dir, driver)).len();
        let in_graph = ids(&records(&graph, driver)).len();
        if listed.contains(&format!("name: {name}")) {
            // Whole, in one place: DIR, or the graph root when the kill
            // came between the import and the move.
            assert_eq!(in_dir + in_graph, 1, "{context}: {listed}");
            outcomes[usize::from(in_graph == 1)] += 1;
            assert_eq!(split.ok_bytes(&["diff", "-u", &name]), tar, "{context}");
            split.ok(&["delete-layer", &name]);
        } else {
            outcomes[2] += 1;
        }
        assert!(records(&dir, driver).is_empty(), "{context}");
        assert!(records(&graph, driver).is_empty(), "{context}");
        let moving = graph.join(format!("{driver}-layers/.moving"));
        let markers = std::fs::read_dir(&moving).map(|d| d.count()).unwrap_or(0);
        assert_eq!(markers, 0, "{context}: markers left");
        let left: Vec<_> = std::fs::read_dir(layer_dir(&dir, driver, "x").parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != "l")
            .collect();
        assert!(left.is_empty(), "{context}: left in DIR: {left:?}");
        check_clean(&split, &context);
    }
    eprintln!(
        "image store import kills ({driver}, seed {seed}): {} in DIR, {} in the graph root, {} gone",
        outcomes[0], outcomes[1], outcomes[2]
    );
}

on_both_drivers!(
    a_killed_readonly_import_is_whole_in_the_image_store_or_gone:
        a_killed_readonly_import_is_whole_in_the_image_store_or_gone_vfs,
        a_killed_readonly_import_is_whole_in_the_image_store_or_gone_overlay
);

/// `delete-image` of an image on two `--readonly` layers (so in DIR),
/// SIGKILLed at random moments (seed: `CS_CRASH_SEED`): after each kill
/// and the next command, each layer is there whole (its tar exported
/// byte for byte) or gone with all its files in DIR, no delete marker is
/// left, and `check` is clean.
fn a_killed_delete_in_the_image_store_is_whole_or_not_at_all(driver: &'static str) {
    let Some((s, split, dir)) = split_store(driver) else {
        return;
    };
    let seed = harness::seed_from_env("CS_CRASH_SEED", "image store delete kills");
    let mut rng = common::Rng(seed);
    let shared = harness::shared_blobs(seed, 2, 128 << 10);
    let (lower_tar, _) = harness::layer_tar(&mut rng, "lower", 1 << 20, &shared);
    let (upper_tar, _) = harness::layer_tar(&mut rng, "upper", 1 << 20, &shared);
    let lower_path = s.path("lower.tar");
    let upper_path = s.path("upper.tar");
    std::fs::write(&lower_path, &lower_tar).unwrap();
    std::fs::write(&upper_path, &upper_tar).unwrap();
    let fill = |trial: u64| -> [String; 2] {
        let lower = split.first_line(&["import-layer", "-r", "-f", lower_path.to_str().unwrap()]);
        let upper = split.first_line(&[
            "import-layer",
            "-r",
            "-f",
            upper_path.to_str().unwrap(),
            &lower,
        ]);
        split.ok(&["create-image", "-n", &format!("img{trial}"), &upper]);
        [lower, upper]
    };
    let delete = |trial: u64| {
        let mut cmd = split.command();
        cmd.args(["delete-image", &format!("img{trial}")]);
        cmd
    };
    fill(0);
    assert_eq!(records(&dir, driver).len(), 2, "the layers are DIR's");
    let (typical, _) = harness::time_command(delete(0), "the timed delete");
    assert!(records(&dir, driver).is_empty());
    let trials = harness::number_from_env("CS_IMAGE_STORE_TRIALS", 12);
    let mut outcomes = [0u32; 2];
    for trial in 1..=trials {
        let made = fill(trial);
        let delay = harness::pick_delay(&mut rng, typical.max(Duration::from_millis(5)));
        let ended = harness::run_and_kill(delete(trial), delay, &s.path("scratch"));
        let context = format!("trial {trial} (seed {seed}, {delay:?}, {ended:?})");
        split.ok(&["layers"]);
        let left = ids(&records(&dir, driver));
        for (id, tar) in made.iter().zip([&lower_tar, &upper_tar]) {
            if left.contains(id) {
                assert_eq!(&split.ok_bytes(&["diff", "-u", id]), tar, "{context}");
            } else {
                assert!(
                    files_of(&dir, driver, id).is_empty(),
                    "{context}: {:?}",
                    files_of(&dir, driver, id)
                );
            }
        }
        // A layer goes only once nothing above it is left.
        assert!(
            !left.contains(&made[1]) || left.contains(&made[0]),
            "{context}: {left:?}"
        );
        outcomes[usize::from(left.is_empty())] += 1;
        let deleting = s.path("graph").join(format!("{driver}-layers/.deleting"));
        assert_eq!(
            std::fs::read_dir(&deleting).map(|d| d.count()).unwrap_or(0),
            0,
            "{context}"
        );
        check_clean(&split, &context);
        split.ok(&["wipe"]);
    }
    eprintln!(
        "image store delete kills ({driver}, seed {seed}): {} with layers left, {} wholly deleted",
        outcomes[0], outcomes[1]
    );
}

on_both_drivers!(
    a_killed_delete_in_the_image_store_is_whole_or_not_at_all:
        a_killed_delete_in_the_image_store_is_whole_or_not_at_all_vfs,
        a_killed_delete_in_the_image_store_is_whole_or_not_at_all_overlay
);

/// Runs `cli` with `args`, failing the test when it takes more than two
/// minutes (a lock taken in the wrong order would hang it); returns
/// whether it succeeded, and its stderr.
fn run_bounded(cli: &Cli, args: &[&str]) -> (bool, String) {
    let mut cmd = cli.command();
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.success(), err);
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("{args:?} hung: a deadlock between the two places' locks?");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A refusal that a race between the processes below may cause.
fn raced(err: &str) -> bool {
    [
        "not known",
        "in use",
        "has children",
        "already in use",
        "does not exist",
        "not a layer, image, or container",
    ]
    .iter()
    .any(|words| err.contains(words))
}

/// Four processes at once on one split store, each in a loop: one
/// imports `--readonly` layers (moved to DIR) and makes images of them,
/// one deletes images (and their layers, from both places), one moves a
/// name among the layers of both places and sets metadata, one makes and
/// deletes graph-root layers on DIR's. None hangs (the two places' locks
/// are always taken in one order), and afterwards `check` is clean, no
/// move is left half done and DIR holds the directories of its recorded
/// layers only.
fn processes_share_a_split_store(driver: &'static str) {
    let Some((s, split, dir)) = split_store(driver) else {
        return;
    };
    let base = s.path("base.tar");
    let rounds = harness::number_from_env("CS_IMAGE_STORE_ROUNDS", 25) as usize;
    let layer_ids = |cli: &Cli| -> Vec<String> {
        let out = cli.run(&["layers", "-q"], None);
        common::stdout(&out).lines().map(str::to_string).collect()
    };
    let expect = |(ok, err): (bool, String), what: &str| {
        assert!(ok || raced(&err), "{what}: {err}");
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..rounds {
                let name = format!("imp{i}");
                let imported = run_bounded(
                    &split,
                    &[
                        "import-layer",
                        "-r",
                        "-n",
                        &name,
                        "-f",
                        base.to_str().unwrap(),
                    ],
                );
                assert!(imported.0, "import: {}", imported.1);
                expect(
                    run_bounded(&split, &["create-image", "-n", &format!("img{i}"), &name]),
                    "create-image",
                );
            }
        });
        scope.spawn(|| {
            for _ in 0..rounds {
                let out = split.run(&["images", "-q"], None);
                for image in common::stdout(&out).lines() {
                    expect(
                        run_bounded(&split, &["delete-image", image]),
                        "delete-image",
                    );
                }
            }
        });
        scope.spawn(|| {
            for i in 0..rounds * 2 {
                let ids = layer_ids(&split);
                if let Some(id) = ids.get(i % ids.len().max(1)) {
                    expect(
                        run_bounded(&split, &["add-names", "-n", "hot", id]),
                        "add-names",
                    );
                    expect(
                        run_bounded(&split, &["set-metadata", "-m", "m", id]),
                        "set-metadata",
                    );
                }
            }
        });
        scope.spawn(|| {
            for i in 0..rounds {
                let ids = layer_ids(&split);
                let parent = ids.get(i % ids.len().max(1)).cloned().unwrap_or_default();
                let name = format!("g{i}");
                let mut args = vec!["create-layer", "-n", &name];
                if !parent.is_empty() {
                    args.push(&parent);
                }
                if run_bounded(&split, &args).0 {
                    expect(
                        run_bounded(&split, &["delete-layer", &name]),
                        "delete-layer",
                    );
                }
            }
        });
    });
    assert_eq!(split.ok(&["check"]), "");
    let moving = s.path("graph").join(format!("{driver}-layers/.moving"));
    assert_eq!(
        std::fs::read_dir(&moving).map(|d| d.count()).unwrap_or(0),
        0
    );
    let recorded = ids(&records(&dir, driver));
    let parent = layer_dir(&dir, driver, "x");
    for entry in std::fs::read_dir(parent.parent().unwrap())
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            name == "l" || recorded.contains(&name),
            "{name} left in DIR"
        );
    }
    // Everything goes, from both places.
    split.ok(&["wipe"]);
    assert!(records(&dir, driver).is_empty());
    assert_eq!(split.ok(&["check"]), "");
}

on_both_drivers!(
    processes_share_a_split_store:
        processes_share_a_split_store_vfs,
        processes_share_a_split_store_overlay
);

/// A store of ours used as DIR while its own writer goes on using it:
/// the writer imports layers there, makes images of them, mounts them
/// (building their directories in DIR, hardlinked to its `objects/`) and
/// runs `gc --evict all` (its pool, objects and directories); the split
/// store writes those layers (each made directory-backed in DIR first)
/// and runs `gc` (which sweeps DIR's pool too). No command hangs or
/// fails but for a refusal a race explains; afterwards every layer still
/// pool-backed exports its tar byte for byte, every written one holds
/// its write, and `check` on either side reports only the written
/// layers' digests.
fn the_image_stores_pool_is_shared_with_its_writer(driver: &'static str) {
    let Some((s, split, dir)) = split_store(driver) else {
        return;
    };
    let writer = Cli::ours(dir.clone(), s.path("run-writer"), driver);
    let rounds = harness::number_from_env("CS_IMAGE_STORE_ROUNDS", 12) as usize;
    let tar_of = |i: usize| s.path(if i % 2 == 0 { "base.tar" } else { "top.tar" });
    let expect = |(ok, err): (bool, String), what: &str| {
        assert!(
            ok || raced(&err) || err.contains("before it is written"),
            "{what}: {err}"
        );
    };
    let written = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..rounds {
                let name = format!("w{i}");
                let tar = tar_of(i);
                let args = ["import-layer", "-n", &name, "-f", tar.to_str().unwrap()];
                let imported = run_bounded(&writer, &args);
                assert!(imported.0, "import: {}", imported.1);
                let image = format!("i{i}");
                expect(
                    run_bounded(&writer, &["create-image", "-n", &image, &name]),
                    "create-image",
                );
                if run_bounded(&writer, &["mount", "-r", &image]).0 {
                    expect(run_bounded(&writer, &["unmount", &image]), "unmount");
                }
                expect(run_bounded(&writer, &["gc", "--evict", "all"]), "writer gc");
            }
        });
        scope.spawn(|| {
            // Every third one is left pool-backed.
            for i in (0..rounds * 2).filter(|i| (i / 2) % 3 != 0) {
                let name = format!("w{}", i / 2);
                // Once the writer has made it.
                let start = std::time::Instant::now();
                while !split.run(&["layer", &name], None).status.success() {
                    assert!(
                        start.elapsed() < Duration::from_secs(120),
                        "{name} never came"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                let mark = s.path(&format!("mark-{i}"));
                std::fs::write(&mark, format!("{i}\n")).unwrap();
                let target = format!("{name}:/mark-{i}");
                let copied = run_bounded(&split, &["copy", mark.to_str().unwrap(), &target]);
                expect(copied.clone(), "copy");
                if copied.0 {
                    written.lock().unwrap().push((name, format!("mark-{i}")));
                }
            }
        });
        scope.spawn(|| {
            for _ in 0..rounds {
                expect(run_bounded(&split, &["gc"]), "split gc");
            }
        });
    });
    let written = written.into_inner().unwrap();
    assert!(!written.is_empty(), "no layer was written");
    eprintln!("{driver}: {} writes into DIR's layers", written.len());
    let layer_id = |name: &str| {
        split
            .first_line(&["layer", name])
            .trim_start_matches("ID: ")
            .to_string()
    };
    let mut written_ids = Vec::new();
    for (name, mark) in &written {
        let id = layer_id(name);
        let content = match driver {
            "overlay" => layer_dir(&dir, driver, &id).join("diff"),
            _ => layer_dir(&dir, driver, &id),
        };
        assert!(content.join(mark).is_file(), "{name} lost {mark}");
        assert!(!dir.join("manifests").join(&id).exists());
        written_ids.push(id);
    }
    written_ids.sort();
    written_ids.dedup();
    for i in (0..rounds).filter(|i| i % 3 == 0) {
        let name = format!("w{i}");
        let id = layer_id(&name);
        assert!(dir.join("manifests").join(&id).exists(), "{name}");
        {
            assert_eq!(
                writer.ok_bytes(&["diff", "-u", &name]),
                std::fs::read(tar_of(i)).unwrap(),
                "{name}"
            );
        }
    }
    for cli in [&split, &writer] {
        for id in digest_mismatches(cli) {
            assert!(written_ids.contains(&id), "{id} reported");
        }
    }
}

on_both_drivers!(
    the_image_stores_pool_is_shared_with_its_writer:
        the_image_stores_pool_is_shared_with_its_writer_vfs,
        the_image_stores_pool_is_shared_with_its_writer_overlay
);

/// `check` looks at what upstream's looks at under a split image store:
/// DIR's layers (a parent or the content missing) and the graph root's
/// images (a layer or a big data item missing) besides DIR's; `check -r`
/// removes the damaged ones from where they are kept.
fn check_covers_both_places(driver: &'static str) {
    let Some((s, split, dir)) = split_store(driver) else {
        return;
    };
    let graph = s.path("graph");
    let plain = Cli::ours(graph.clone(), s.path("run"), driver);
    let old_top = plain.first_line(&["create-layer", "-n", "old-top"]);
    plain.ok(&["create-image", "-n", "old", &old_top]);
    let kept = plain.first_line(&["create-layer", "-n", "kept"]);
    plain.ok(&["create-image", "-n", "with-data", &kept]);
    plain.ok(&[
        "set-image-data",
        "-f",
        s.path("base.tar").to_str().unwrap(),
        "with-data",
        "blob",
    ]);
    let base = split.first_line(&[
        "import-layer",
        "-r",
        "-n",
        "base",
        "-f",
        s.path("base.tar").to_str().unwrap(),
    ]);
    split.ok(&["create-image", "-n", "new", &base]);
    assert_eq!(split.ok(&["check"]), "");

    // Damage: DIR's layer loses its directory; the graph root's image
    // `old` loses its top layer's record, `with-data` its big data file.
    let _ = std::fs::remove_dir_all(layer_dir(&dir, driver, &base));
    let graph_json = graph.join(format!("{driver}-layers/layers.json"));
    let mut layers = records(&graph, driver);
    layers.retain(|l| l["id"] != old_top.as_str());
    std::fs::write(&graph_json, serde_json::to_vec(&layers).unwrap()).unwrap();
    let images = graph.join(format!("{driver}-images"));
    let data_dir = std::fs::read_dir(&images)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("blob").is_file())
        .unwrap();
    std::fs::remove_file(data_dir.join("blob")).unwrap();

    let out = split.run(&["check"], None);
    let report = common::stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains(&format!("layer {base}: layer directory")),
        "{report}"
    );
    assert!(
        report.contains(&format!("layer {old_top}: image layer is missing")),
        "{report}"
    );
    assert!(
        report.contains("data item \"blob\": image data item is missing"),
        "{report}"
    );
    let out = split.run(&["check", "-r"], None);
    assert!(
        out.status.success(),
        "{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    assert_eq!(split.ok(&["check"]), "");
    // Gone from where each was kept: the layer (and the image on it)
    // from DIR, the graph root's images from the graph root.
    assert!(records(&dir, driver).is_empty());
    let listed = split.ok(&["images"]);
    assert!(
        !listed.contains("name: new") && !listed.contains("name: old"),
        "{listed}"
    );
    assert!(!listed.contains("name: with-data"), "{listed}");
    let left = std::fs::read_to_string(images.join("images.json")).unwrap();
    assert!(
        !left.contains("with-data") && !left.contains("\"old\""),
        "{left}"
    );
}

/// `check` reads the split image store's pool-backed layers from DIR's
/// pool (a store of ours used as DIR), as upstream's checks every layer
/// of its one layer store: one whose chunk there is damaged is reported,
/// and `check -r` removes it from DIR, files and all.
fn check_reads_the_image_stores_pool(driver: &'static str) {
    let Some((s, split, dir)) = split_store(driver) else {
        return;
    };
    let writer = Cli::ours(dir.clone(), s.path("run-writer"), driver);
    let base = s.path("base.tar");
    let layer = writer.first_line(&["import-layer", "-f", base.to_str().unwrap()]);
    assert_eq!(split.ok(&["check"]), "");
    // The last bytes of its pack, the end of its last compressed frame.
    let packs: Vec<PathBuf> = walk(&dir.join("chunks"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    assert_eq!(packs.len(), 1, "{packs:?}");
    let mut bytes = std::fs::read(&packs[0]).unwrap();
    let end = bytes.len();
    for b in &mut bytes[end - 8..] {
        *b ^= 0x5a;
    }
    std::fs::write(&packs[0], bytes).unwrap();
    let out = split.run(&["check"], None);
    let report = common::stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains(&format!("layer {layer}: layer content incorrect digest")),
        "{report}"
    );
    split.ok(&["check", "-r"]);
    assert!(!ids(&records(&dir, driver)).contains(&layer));
    assert!(!dir.join("manifests").join(&layer).exists());
    assert_eq!(split.ok(&["check"]), "");
}

on_both_drivers!(
    check_reads_the_image_stores_pool:
        check_reads_the_image_stores_pool_vfs,
        check_reads_the_image_stores_pool_overlay
);

on_both_drivers!(
    check_covers_both_places:
        check_covers_both_places_vfs,
        check_covers_both_places_overlay
);
