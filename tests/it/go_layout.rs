//! The Go drivers' layout (issue 13): every layer we create, import or
//! delete has (or loses) the entries upstream's overlay and vfs drivers
//! read, `<drv>-layers/<id>.tar-split.gz` comes and goes with each
//! imported layer, `materialize = "always"` builds every directory at
//! import and keeps it, eviction leaves what a host overlay mount (one
//! made by hand here, as podman would) uses, and an image keeps its
//! manifest's digest in its record. The real clients on such a store are
//! `clients.rs`'s.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::tar::{Meta, TarBuilder};
use common::Cs;

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut t = TarBuilder::new();
    for (name, content) in files {
        t.file(name, &Meta::default(), content);
    }
    t.finish()
}

/// Imports `tar` on `driver` (on `parent`, if any); returns the ID.
fn import_on(cs: &Cs, driver: &str, tar: &[u8], parent: Option<&str>) -> String {
    let name = common::sha256(tar).replace(':', "-");
    let path = cs.dir.path().join(format!("{name}.tar"));
    std::fs::write(&path, tar).unwrap();
    let mut args = vec!["import-layer", "-f", path.to_str().unwrap()];
    args.extend(parent);
    common::first_line_of(&cs.ok_on(driver, &args))
}

fn overlay(cs: &Cs) -> PathBuf {
    cs.graph().join("overlay")
}

fn link_of(cs: &Cs, id: &str) -> String {
    std::fs::read_to_string(overlay(cs).join(id).join("link"))
        .unwrap_or_else(|e| panic!("overlay/{id}/link: {e}"))
}

/// Asserts upstream's overlay entries of layer `id`: its directory,
/// `link` and the short link to its `diff`, `work`, `merged`, and
/// `empty/` (no `lower`) or the `lower` file `want_lower`.
fn assert_overlay_entries(cs: &Cs, id: &str, want_lower: Option<String>) {
    let dir = overlay(cs).join(id);
    for sub in ["work", "merged"] {
        assert!(dir.join(sub).is_dir(), "overlay/{id}/{sub} is missing");
    }
    let short = link_of(cs, id);
    assert_eq!(short.len(), 26, "overlay/{id}/link: {short:?}");
    assert_eq!(
        std::fs::read_link(overlay(cs).join("l").join(&short)).unwrap(),
        PathBuf::from(format!("../{id}/diff")),
        "l/{short}"
    );
    let lower = std::fs::read_to_string(dir.join("lower")).ok();
    assert_eq!(lower, want_lower, "overlay/{id}/lower");
    if want_lower.is_none() {
        assert!(dir.join("empty").is_dir(), "overlay/{id}/empty is missing");
    }
}

#[test]
fn every_overlay_layer_has_the_go_layout_from_creation_to_delete() {
    if !common::need_root("overlay layout") {
        return;
    }
    let cs = Cs::new();
    let base = import_on(&cs, "overlay", &tar_of(&[("a", b"base\n")]), None);
    let child = import_on(&cs, "overlay", &tar_of(&[("b", b"child\n")]), Some(&base));
    assert_overlay_entries(&cs, &base, None);
    let l = |id: &str| format!("l/{}", link_of(&cs, id));
    assert_overlay_entries(&cs, &child, Some(l(&base)));
    // Pool-backed, built on demand: no `diff` yet.
    assert!(!overlay(&cs).join(&base).join("diff").exists());
    for id in [&base, &child] {
        let split = cs.graph().join(format!("overlay-layers/{id}.tar-split.gz"));
        assert!(split.is_file(), "{} is missing", split.display());
    }

    let created = common::first_line_of(&cs.ok_on("overlay", &["create-layer", &child]));
    assert_overlay_entries(&cs, &created, Some(format!("{}:{}", l(&child), l(&base))));
    let diff = overlay(&cs).join(&created).join("diff");
    assert!(diff.is_dir(), "a created layer's diff is made with it");
    assert!(
        !cs.graph()
            .join(format!("overlay-layers/{created}.tar-split.gz"))
            .exists(),
        "a layer without a tar has no tar-split"
    );

    cs.ok_on("overlay", &["create-image", "-n", "img", &child]);
    let container = common::first_line_of(&cs.ok_on("overlay", &["create-container", "img"]));
    let layer = cs.ok_on("overlay", &["container", "--json", &container]);
    let layer: serde_json::Value = serde_json::from_str(&layer).unwrap();
    let layer = layer[0]["layer"].as_str().unwrap().to_string();
    assert_overlay_entries(&cs, &layer, Some(format!("{}:{}", l(&child), l(&base))));
    assert!(
        overlay(&cs).join(&layer).join("diff").is_dir(),
        "a container's layer has its diff before any mount"
    );

    // A mount builds the chain's directories and keeps the layout.
    let mounted = cs.ok_on("overlay", &["mount", &container]);
    assert_eq!(
        std::fs::read(Path::new(mounted.trim()).join("a")).unwrap(),
        b"base\n"
    );
    cs.ok_on("overlay", &["unmount", &container]);
    assert_overlay_entries(&cs, &child, Some(l(&base)));

    // Deleting removes the directory, the short link and the tar-split.
    let short = link_of(&cs, &created);
    cs.ok_on("overlay", &["delete-layer", &created]);
    assert!(!overlay(&cs).join(&created).exists());
    assert!(std::fs::symlink_metadata(overlay(&cs).join("l").join(short)).is_err());
    cs.ok_on("overlay", &["delete-container", &container]);
    cs.ok_on("overlay", &["delete-image", "img"]);
    for id in [&base, &child, &layer] {
        assert!(!overlay(&cs).join(id).exists(), "overlay/{id} outlived it");
        assert!(
            !cs.graph()
                .join(format!("overlay-layers/{id}.tar-split.gz"))
                .exists(),
            "{id}'s tar-split outlived it"
        );
    }
}

#[test]
fn a_vfs_layer_created_on_a_parent_starts_as_its_parents_tree() {
    // The tree keeps the parent's owners (root's) only when made as root.
    if !common::need_root("a vfs tree copied with its owners") {
        return;
    }
    let cs = Cs::new();
    let base = import_on(&cs, "vfs", &tar_of(&[("a", b"base\n")]), None);
    let created = common::first_line_of(&cs.ok(&["create-layer", &base]));
    let tree = cs.graph().join("vfs/dir").join(&created);
    assert_eq!(std::fs::read(tree.join("a")).unwrap(), b"base\n");
    cs.ok(&["create-image", "-n", "img", &base]);
    let container = common::first_line_of(&cs.ok(&["create-container", "img"]));
    let c: serde_json::Value =
        serde_json::from_str(&cs.ok(&["container", "--json", &container])).unwrap();
    let layer = c[0]["layer"].as_str().unwrap();
    let tree = cs.graph().join("vfs/dir").join(layer);
    assert_eq!(std::fs::read(tree.join("a")).unwrap(), b"base\n");
    // Applying a diff to the fresh layer keeps the tar (and gives it a
    // tar-split) as an import does.
    let tar = tar_of(&[("b", b"applied\n")]);
    cs.ok_with_input(&["applydiff", &created], &tar);
    assert_eq!(cs.ok_bytes(&["diff", &created]), tar);
    assert!(cs
        .graph()
        .join(format!("vfs-layers/{created}.tar-split.gz"))
        .is_file());
}

/// A `storage.conf` with `[storage.options.pull_options]` `text`.
fn conf(cs: &Cs, text: &str) -> PathBuf {
    let path = cs.dir.path().join("storage.conf");
    std::fs::write(&path, format!("[storage.options.pull_options]\n{text}")).unwrap();
    path
}

fn run_with_conf(cs: &Cs, conf: &Path, driver: &str, args: &[&str]) -> String {
    let mut cmd = cs.command();
    cmd.env("CONTAINERS_STORAGE_CONF", conf)
        .args(["--storage-driver", driver])
        .args(args);
    let out = common::run_command(cmd, None);
    common::expect_status(&out, args, 0);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn materialize_always_builds_every_directory_at_import_and_never_evicts() {
    let cs = Cs::new();
    let always = conf(&cs, "materialize = \"always\"\n");
    for driver in ["vfs", "overlay"] {
        if driver == "overlay" && !common::need_root("overlay materialize") {
            return;
        }
        let path = cs.dir.path().join(format!("{driver}.tar"));
        std::fs::write(&path, tar_of(&[("f", b"built at import\n")])).unwrap();
        let id = common::first_line_of(&run_with_conf(
            &cs,
            &always,
            driver,
            &["import-layer", "-f", path.to_str().unwrap()],
        ));
        let content = match driver {
            "vfs" => cs.graph().join("vfs/dir").join(&id),
            _ => overlay(&cs).join(&id).join("diff"),
        };
        assert_eq!(
            std::fs::read(content.join("f")).unwrap(),
            b"built at import\n",
            "{driver}: the directory is built at import"
        );
        let report = run_with_conf(
            &cs,
            &always,
            driver,
            &["gc", "-v", "--json", "--evict", "all"],
        );
        let report: serde_json::Value = serde_json::from_str(&report).unwrap();
        assert_eq!(report["evicted"]["layers"], 0, "{driver}: {report}");
        assert!(content.join("f").is_file(), "{driver}: evicted");
    }
}

#[test]
fn eviction_leaves_what_a_host_overlay_mount_uses() {
    if !common::need_root("a host overlay mount") {
        return;
    }
    let cs = Cs::new();
    let id = import_on(&cs, "overlay", &tar_of(&[("f", b"in use\n")]), None);
    cs.ok_on("overlay", &["create-image", "-n", "img", &id]);
    let mounted = cs.ok_on("overlay", &["mount", "-r", "img"]);
    assert!(Path::new(mounted.trim()).join("f").is_file());
    cs.ok_on("overlay", &["unmount", "img"]);
    // Mounted the way upstream's driver does when the absolute list is
    // too long: lower directories relative to the driver directory.
    let target = cs.dir.path().join("host-mount");
    std::fs::create_dir(&target).unwrap();
    let empty = cs.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let lowers = format!("lowerdir=l/{}:{}", link_of(&cs, &id), empty.display());
    let status = Command::new("mount")
        .current_dir(overlay(&cs))
        .args(["-t", "overlay", "overlay", "-o", &lowers])
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success(), "mount -t overlay -o {lowers}");
    let evicted = |cs: &Cs| {
        let report: serde_json::Value =
            serde_json::from_str(&cs.ok_on("overlay", &["gc", "-v", "--json", "--evict", "all"]))
                .unwrap();
        report["evicted"]["layers"].as_u64().unwrap()
    };
    let kept = evicted(&cs);
    let read = std::fs::read(target.join("f"));
    let _ = Command::new("umount").arg(&target).status();
    assert_eq!(kept, 0, "a directory under a host mount was evicted");
    assert_eq!(read.unwrap(), b"in use\n");
    assert_eq!(evicted(&cs), 1, "unused again, it is evicted");
}

#[test]
fn an_image_keeps_the_digest_of_its_first_manifest() {
    let cs = Cs::new();
    let id = common::first_line_of(&cs.ok(&["create-image"]));
    cs.ok_with_input(&["set-image-data", &id, "config"], b"{}");
    let manifest = br#"{"schemaVersion":2}"#;
    cs.ok_with_input(&["set-image-data", &id, "manifest-x"], manifest);
    cs.ok_with_input(&["set-image-data", &id, "manifest"], b"{}");
    let records: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cs.graph().join("vfs-images/images.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        records[0]["digest"].as_str(),
        Some(common::sha256(manifest).as_str()),
        "{records}"
    );
}

#[test]
fn a_new_store_has_its_drivers_directory_as_upstreams_driver_makes_it() {
    for (driver, dir) in [("vfs", "vfs/dir"), ("overlay", "overlay")] {
        let cs = Cs::new();
        cs.ok_on(driver, &["layers"]);
        let path = cs.graph().join(dir);
        assert!(path.is_dir(), "{} is missing", path.display());
    }
}
