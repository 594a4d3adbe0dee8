//! IDs that are names of the layout's own entries (`l`, `empty`, record
//! and lock files, dot names, `<x>.tar-split.gz`) are refused at creation;
//! a store that uses everything is listed, and no name our layout made in
//! a directory where IDs live is accepted as an ID; a record that has such
//! an ID from before (or by hand) never takes the layout's entry along.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::tar::{Meta, TarBuilder};
use common::{first_line_of, random_bytes, Cs};

fn on(cs: &Cs, driver: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", driver]).args(args);
    common::run_command(cmd, None)
}

fn ok(cs: &Cs, driver: &str, args: &[&str]) -> String {
    let out = on(cs, driver, args);
    common::expect_status(&out, args, 0);
    common::stdout(&out)
}

fn tar(seed: u64) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir(
        "etc/",
        &Meta {
            mode: 0o755,
            ..Meta::default()
        },
    );
    t.file("etc/data", &Meta::default(), &random_bytes(seed, 100_000));
    t.file("etc/same", &Meta::default(), b"shared by every layer");
    t.finish()
}

fn write(cs: &Cs, name: &str, bytes: &[u8]) -> String {
    let path = cs.dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// Requires that `id` is refused as the ID of a new layer (created and
/// imported), image and container, with the reason, and that nothing was
/// made.
fn refused_everywhere(cs: &Cs, driver: &str, id: &str, tar: &str) {
    let attempts: [&[&str]; 4] = [
        &["create-layer", "-i", id],
        &["import-layer", "-i", id, "-f", tar],
        &["create-image", "-i", id],
        &["create-container", "-i", id, "img"],
    ];
    for args in attempts {
        let out = on(cs, driver, args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{driver}: {args:?} was accepted\nstdout: {}\nstderr: {}",
            common::stdout(&out),
            common::stderr(&out)
        );
        let err = common::stderr(&out);
        assert!(
            err.contains("the store's layout uses this name") || err.contains("not a valid ID"),
            "{args:?}: {err}"
        );
    }
    for kind in ["layers", "images", "containers"] {
        assert!(
            !ids(cs, driver, kind).contains(id),
            "{driver}: {kind} lists {id}"
        );
    }
}

/// The IDs of every item of a kind (`layers`, `images`, `containers`).
fn ids(cs: &Cs, driver: &str, kind: &str) -> BTreeSet<String> {
    let listing: serde_json::Value =
        serde_json::from_str(&ok(cs, driver, &[kind, "--json"])).unwrap();
    listing
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_ids_of_the_layouts_own_files_are_refused_for_every_kind() {
    let cs = Cs::new();
    let path = write(&cs, "t.tar", &tar(1));
    let layer = first_line_of(&ok(&cs, "vfs", &["import-layer", "-f", &path]));
    ok(&cs, "vfs", &["create-image", "-n", "img", &layer]);
    for id in [
        "l",
        "empty",
        "layers.json",
        "images.json",
        "containers.json",
        "mountpoints.json",
        "volatile-layers.json",
        "layers.lock",
        "mountpoints.lock",
        "x.lock",
        "3f2a.tar-split.gz",
        ".incomplete",
        ".tmp-1-layers.json",
    ] {
        refused_everywhere(&cs, "vfs", id, &path);
        refused_everywhere(&cs, "overlay", id, &path);
    }
    // Names merely like them stay usable.
    for id in ["ll", "lower", "dir", "layers.json.bak"] {
        ok(&cs, "vfs", &["create-layer", "-i", id]);
    }
}

/// The directories where item IDs live, for both drivers.
fn id_dirs(cs: &Cs) -> Vec<(PathBuf, &'static str)> {
    let (g, r) = (cs.graph(), cs.run_root());
    let mut out = vec![(g.join("manifests"), "layers")];
    for d in ["overlay", "vfs"] {
        out.push((g.join(format!("{d}-layers")), "layers"));
        out.push((g.join(format!("{d}-layers/.deleting")), "layers"));
        out.push((g.join(format!("{d}-images")), "images"));
        out.push((g.join(format!("{d}-containers")), "containers"));
        out.push((r.join(format!("{d}-images")), "images"));
        out.push((r.join(format!("{d}-containers")), "containers"));
        out.push((g.join(format!("{d}-layers/.used")), "layers"));
    }
    out.push((g.join("overlay"), "layers"));
    out.push((g.join("vfs/dir"), "layers"));
    out
}

fn listed(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Builds a store that uses everything the layout has, on both drivers,
/// then tries every name the layout made where IDs live as a new ID.
#[test]
fn no_name_the_layout_made_where_ids_live_is_accepted_as_an_id() {
    let root = common::need_root("overlay mounts");
    let cs = Cs::new();
    let data = write(&cs, "data", b"big data");
    for d in ["overlay", "vfs"] {
        let a = write(&cs, &format!("{d}-a.tar"), &tar(2));
        let b = write(&cs, &format!("{d}-b.tar"), &tar(3));
        let c = write(&cs, &format!("{d}-c.tar"), &tar(4));
        let base = first_line_of(&ok(&cs, d, &["import-layer", "-f", &a]));
        let top = first_line_of(&ok(&cs, d, &["import-layer", "-f", &b, &base]));
        // A parentless sibling: on overlay, stacked over the first one.
        let sibling = first_line_of(&ok(&cs, d, &["import-layer", "-f", &c]));
        ok(&cs, d, &["set-layer-data", "-f", &data, &top, "key"]);
        ok(
            &cs,
            d,
            &["create-image", "-n", "img", "-i", "my-image", &top],
        );
        ok(
            &cs,
            d,
            &["set-image-data", "-f", &data, "img", "Key/with=chars"],
        );
        ok(&cs, d, &["create-image", "-n", "img2", &sibling]);
        ok(
            &cs,
            d,
            &["create-container", "-n", "c", "-i", "my-box", "img"],
        );
        ok(&cs, d, &["set-container-data", "-f", &data, "c", "key"]);
        for cmd in [
            "get-image-dir",
            "get-image-run-dir",
            "get-container-dir",
            "get-container-run-dir",
        ] {
            let what = if cmd.contains("image") { "img" } else { "c" };
            let dir = ok(&cs, d, &[cmd, what]);
            std::fs::create_dir_all(dir.trim()).unwrap();
        }
        let live = first_line_of(&ok(&cs, d, &["create-layer", "-i", "my-live", &top]));
        let gone = first_line_of(&ok(&cs, d, &["create-layer"]));
        if d == "vfs" || root {
            ok(&cs, d, &["mount", "-r", "img"]);
            ok(&cs, d, &["mount", "-r", "img2"]);
            ok(&cs, d, &["mount", "c"]);
            ok(&cs, d, &["mount", &live]);
            ok(&cs, d, &["mount", &gone]);
            ok(&cs, d, &["unmount", &gone]);
            ok(&cs, d, &["unmount", &live]);
            ok(&cs, d, &["unmount", "img"]);
        }
        ok(&cs, d, &["delete-layer", &gone]);
        ok(&cs, d, &["gc", "--evict", "never"]);
    }
    let tar_path = write(&cs, "t.tar", &tar(5));
    let mut layout_names = BTreeSet::new();
    for (dir, kind) in id_dirs(&cs) {
        let mut ids = BTreeSet::new();
        for d in ["overlay", "vfs"] {
            ids.extend(self::ids(&cs, d, kind));
        }
        for name in listed(&dir) {
            if ids.contains(&name) {
                continue;
            }
            layout_names.insert(name.clone());
            for d in ["overlay", "vfs"] {
                refused_everywhere(&cs, d, &name, &tar_path);
            }
        }
    }
    // The store did use the layout's entries beside IDs.
    let mut expected = vec![
        "layers.json",
        "layers.lock",
        "images.json",
        "images.lock",
        "containers.json",
        "containers.lock",
        // Made by the delete above (imports no longer make `.incomplete/`;
        // it stays reserved, as every name starting with `.`).
        ".deleting",
    ];
    if root {
        expected.extend(["l", ".used", ".unsynced"]);
    }
    for name in expected {
        assert!(
            layout_names.contains(name),
            "{name} not found: {layout_names:?}"
        );
    }
    for d in ["overlay", "vfs"] {
        if d == "vfs" || root {
            ok(&cs, d, &["unmount", "c"]);
            ok(&cs, d, &["unmount", "img2"]);
        }
    }
}

/// Replaces the ID `from` by `to` in a record file, as a store written
/// before `to` was reserved (or by hand) has it.
fn rename_record(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let needle = format!("\"id\":\"{from}\"");
    assert!(text.contains(&needle), "{from} not in {}", path.display());
    std::fs::write(path, text.replace(&needle, &format!("\"id\":\"{to}\""))).unwrap();
}

/// The attack: a layer `l` whose delete took `overlay/l` (every short
/// link) along, so that no other layer mounted again.
#[test]
fn a_layer_named_l_is_refused_and_one_from_before_never_takes_the_short_links_along() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    let out = on(&cs, "overlay", &["create-layer", "-i", "l"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    assert!(common::stderr(&out).contains("the store's layout uses this name"));

    // A record `l` from before the name was reserved.
    ok(&cs, "overlay", &["create-layer", "-i", "old-l"]);
    let records = cs.graph().join("overlay-layers/layers.json");
    rename_record(&records, "old-l", "l");
    // As such a store had it: no directory (`create-layer` makes one now).
    let old = cs.graph().join("overlay/old-l");
    let short = std::fs::read_to_string(old.join("link")).unwrap();
    std::fs::remove_file(cs.graph().join("overlay/l").join(short)).unwrap();
    std::fs::remove_dir_all(old).unwrap();
    let out = on(&cs, "overlay", &["mount", "l"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    let path = write(&cs, "t.tar", &tar(6));
    ok(&cs, "overlay", &["import-layer", "-n", "real", "-f", &path]);
    let merged = PathBuf::from(ok(&cs, "overlay", &["mount", "real"]).trim());
    assert!(merged.join("etc/data").is_file());
    ok(&cs, "overlay", &["unmount", "real"]);
    let links = cs.graph().join("overlay/l");
    assert_eq!(listed(&links).len(), 1, "{:?}", listed(&links));
    ok(&cs, "overlay", &["delete-layer", "l"]);
    assert_eq!(listed(&links).len(), 1, "the short links went with layer l");
    assert!(!links.join("diff").exists() && !links.join("merged").exists());
    let merged = PathBuf::from(ok(&cs, "overlay", &["mount", "real"]).trim());
    assert!(merged.join("etc/data").is_file());
    ok(&cs, "overlay", &["unmount", "real"]);
    let out = on(&cs, "overlay", &["check"]);
    common::expect_status(&out, &["check"], 0);
}

/// `layers.json` and `images.json` as IDs (once accepted, then unusable):
/// a record that has one still lists, exports and deletes, and its delete
/// leaves the record files alone.
#[test]
fn records_with_the_ids_layers_json_and_images_json_from_before_delete_cleanly() {
    let cs = Cs::new();
    let path = write(&cs, "t.tar", &tar(7));
    let layer = first_line_of(&ok(
        &cs,
        "vfs",
        &["import-layer", "-i", "old-layer", "-f", &path],
    ));
    ok(&cs, "vfs", &["create-image", "-i", "old-image", &layer]);
    rename_record(
        &cs.graph().join("vfs-layers/layers.json"),
        "old-layer",
        "layers.json",
    );
    let manifests = cs.graph().join("manifests");
    std::fs::rename(manifests.join("old-layer"), manifests.join("layers.json")).unwrap();
    let images = cs.graph().join("vfs-images/images.json");
    rename_record(&images, "old-image", "images.json");
    let text = std::fs::read_to_string(&images).unwrap();
    std::fs::write(&images, text.replace("old-layer", "layers.json")).unwrap();
    let digest = common::sha256(&std::fs::read(&path).unwrap());
    assert_eq!(
        common::sha256(&cs.ok_bytes(&["diff", "-u", "layers.json"])),
        digest
    );
    ok(&cs, "vfs", &["delete-image", "images.json"]);
    assert!(ids(&cs, "vfs", "layers").is_empty());
    assert!(ids(&cs, "vfs", "images").is_empty());
    for file in ["vfs-layers/layers.json", "vfs-images/images.json"] {
        assert!(cs.graph().join(file).is_file(), "{file} was removed");
    }
    let out = on(&cs, "vfs", &["check"]);
    common::expect_status(&out, &["check"], 0);
}
