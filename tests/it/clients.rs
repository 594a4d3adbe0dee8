//! One store, many clients (issue 13): podman 4.3, skopeo 1.9, buildah 1.28
//! and the upstream Go `containers-storage` 1.43 CLI share one graph root
//! with our CLI, both ways, and nothing is lost.
//!
//! - Our CLI storing an image the c/image way leaves the records skopeo
//!   leaves (but for times).
//! - An image our CLI stored the way c/image stores one is listed,
//!   mounted, copied out and exported byte for byte by the clients, and
//!   our `check` and diffs are unchanged afterwards.
//! - After our own mount built an image's directories, podman mounts a
//!   container of it with every layer (it used to drop the lower ones).
//! - A store skopeo and the Go CLI wrote is listed, exported and mounted
//!   by our CLI, and survives our `gc` and `dedup` for every client.
//! - The same both ways on a vfs store, with the Go CLI.
//! - Locks: each CLI waits for the other's lock holder; our CLI reads the
//!   Go CLI's binary lock tokens.
//! - Our imports and Go imports into one store at once lose nothing.
//! - The clients' own commands on our store: `podman create`/`mount`/
//!   `save`, `skopeo copy` in and out, `buildah from`/`mount`/`commit`.
//! - `gc --evict all` leaves what a mounted podman container uses.
//! - With the Debian dataset: `dedup` adopts six images skopeo copied in
//!   (at most 0.7x of the space), and our import time into a shared store
//!   against the Go CLI's (printed, never asserted).
//!
//! Every test needs root and the clients (CI has both; elsewhere it skips
//! saying why) and runs them only on its own temporary roots
//! ([`common::clients::Shared`]). Images come from local files: no
//! registry is reachable. `podman run` needs cgroups this VM lacks;
//! `create` and `mount` need no runtime. Checks are collected
//! ([`Findings`]) so that a failing test lists every disagreement at once.
//!
//! Controls (`the_clients_use_an_image_skopeo_stored`,
//! `the_go_cli_waits_for_its_own_lock_holders`,
//! `go_imports_into_one_store_at_once_lose_nothing`) run the same checks
//! with a Go client in our place: they pass, so a failure of the tests
//! beside them is ours, not the checks'.

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::clients::{
    compare_tree, expected_tree, finish, hex_of, spawn, verify_oci_layout, Cli, Client, Findings,
    OciLayout, Shared,
};
use common::tar::{meta, Meta, TarBuilder};
use common::{blocks, random_bytes, sha256, sha256_file};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const OURS: &str = "localhost/cs-test/ours:latest";

/// A layer ID in the form every client accepts: 64 hex digits.
fn hex_id(label: &str) -> String {
    hex_of(&sha256(label.as_bytes())).to_string()
}

/// Three layer tars (lowest first) with what image layers have:
/// directories, files of a few sizes, a symlink, a hard link, other
/// owners, an xattr with a sub-second time, and files a later layer
/// replaces; no whiteouts (extracting them in order is then the overlay
/// view, see [`expected_tree`]). `seed` makes their content unique.
fn sample_tars(s: &Shared, seed: u64) -> Vec<PathBuf> {
    let user = Meta {
        uid: 1000,
        gid: 1000,
        mode: 0o640,
        ..Meta::default()
    };
    let mut base = TarBuilder::new();
    base.dir("etc/", &meta(0o755));
    base.file("etc/os-release", &meta(0o644), b"ID=cs-test\n");
    base.file("etc/config", &meta(0o644), b"version 1\n");
    base.pax_xattr_file(
        "etc/tagged",
        &[("user.cs-test", b"base")],
        "1700000000.123456789",
        &meta(0o644),
        b"tagged\n",
    );
    base.dir("usr/", &meta(0o755));
    base.dir("usr/bin/", &meta(0o755));
    base.file("usr/bin/tool", &meta(0o755), &random_bytes(seed, 300_000));
    base.hardlink("usr/bin/tool-link", "usr/bin/tool", &meta(0o755));
    base.symlink("usr/bin/alias", "tool", &meta(0o777));
    base.dir("usr/lib/", &meta(0o755));
    base.file(
        "usr/lib/libshared.so",
        &meta(0o644),
        &random_bytes(seed + 1, 200_000),
    );
    base.dir("home/", &meta(0o755));
    base.dir(
        "home/user/",
        &Meta {
            mode: 0o750,
            ..user.clone()
        },
    );
    base.file("home/user/notes", &user, b"a user's file\n");

    let mut middle = TarBuilder::new();
    middle.dir("etc/", &meta(0o755));
    middle.file("etc/config", &meta(0o644), b"version 2\n");
    middle.dir("data/", &meta(0o755));
    middle.dir("data/sub/", &meta(0o700));
    middle.file("data/big", &meta(0o644), &random_bytes(seed + 2, 1 << 20));
    middle.file("data/sub/small", &meta(0o600), b"small\n");
    middle.file("data/empty", &meta(0o644), b"");

    let mut top = TarBuilder::new();
    top.dir("usr/", &meta(0o755));
    top.dir("usr/lib/", &meta(0o755));
    top.file(
        "usr/lib/libshared.so",
        &meta(0o644),
        &random_bytes(seed + 3, 250_000),
    );
    top.dir("etc/", &meta(0o755));
    top.file("etc/motd", &meta(0o644), b"built by the cs tests\n");

    [("base", base), ("middle", middle), ("top", top)]
        .into_iter()
        .map(|(name, tar)| {
            let path = s.scratch(&format!("tars/{seed}-{name}.tar"));
            std::fs::write(&path, tar.finish()).unwrap();
            path
        })
        .collect()
}

/// A one-layer tar of a few files, unique by `seed`.
fn small_tar(s: &Shared, label: &str, seed: u64) -> PathBuf {
    let mut t = TarBuilder::new();
    t.dir(&format!("{label}/"), &meta(0o755));
    t.file(
        &format!("{label}/a"),
        &meta(0o644),
        &random_bytes(seed, 150_000),
    );
    t.file(
        &format!("{label}/b"),
        &meta(0o600),
        &random_bytes(seed + 1, 70_000),
    );
    t.file(&format!("{label}/note"), &meta(0o644), label.as_bytes());
    let path = s.scratch(&format!("tars/{label}.tar"));
    std::fs::write(&path, t.finish()).unwrap();
    path
}

/// Our image (three layers) stored the c/image way, with the tree its
/// mounts must show.
fn store_our_image(
    s: &Shared,
) -> (
    OciLayout,
    common::clients::StoredImage,
    BTreeMap<PathBuf, common::tree::Node>,
) {
    let tars = sample_tars(s, 100);
    let layout = OciLayout::write(&s.scratch("oci-ours"), &tars);
    let image = s
        .store_like_c_image(&layout, OURS)
        .unwrap_or_else(|e| panic!("our CLI stores an image in its own store: {e}"));
    let want = expected_tree(&s.scratch("want-ours"), &tars);
    (layout, image, want)
}

#[test]
fn podman_skopeo_and_go_use_an_image_our_cli_stored() {
    let what = "podman, skopeo and the Go CLI on an image our CLI stored";
    let Some(s) = Shared::new(what, &[Client::Podman, Client::Skopeo, Client::Go]) else {
        return;
    };
    let mut f = Findings::new("podman_skopeo_and_go_use_an_image_our_cli_stored");
    let (layout, _image, want) = store_our_image(&s);
    s.check_exports(&mut f, Cli::Ours, "before any client ran");
    assert!(
        f.clean(),
        "our own exports must be exact before the clients run"
    );

    clients_use_the_image(&s, &mut f, &layout, OURS, &want);

    f.ok("our `check` after the clients", s.ours(&["check"]));
    s.check_exports(&mut f, Cli::Ours, "after the clients");
    f.done();
}

#[test]
fn podman_mounts_our_image_whole_after_our_mount_built_its_directories() {
    // Issue 13's worst case: once our own mount had built the layers'
    // directories, podman mounted a container of our two-layer image
    // without its base layer (no `lower` file), silently.
    let what = "podman on our image after our own mount";
    let Some(s) = Shared::new(what, &[Client::Podman]) else {
        return;
    };
    let mut f =
        Findings::new("podman_mounts_our_image_whole_after_our_mount_built_its_directories");
    let (_layout, image, want) = store_our_image(&s);
    let mounted = s
        .ours(&["mount", "-r", &image.id])
        .expect("our CLI mounts its own image");
    compare_tree(
        &mut f,
        "our own image mount",
        Path::new(mounted.trim()),
        &want,
    );
    s.ours(&["unmount", &image.id]).expect("our unmount");
    assert!(f.clean(), "our own mount must be right before podman's");

    let created = s.podman(&["create", "--name", "c-after-ours", OURS, "/bin/true"]);
    if f.ok("podman create", created).is_some() {
        s.check_podman_tree(
            &mut f,
            "podman's container mount has every layer of the image",
            "c-after-ours",
            &want,
        );
    }
    f.done();
}

#[test]
fn we_mount_podmans_id_mapped_container_with_the_owners_podman_shows() {
    // Podman's overlay shifts a container's IDs at mount time where the
    // kernel can (no mapped copy of the image): our mount of its
    // container must show the same owners as its own.
    let what = "podman's ID-mapped container mounted by our CLI";
    let Some(s) = Shared::new(what, &[Client::Podman]) else {
        return;
    };
    let mut f = Findings::new("we_mount_podmans_id_mapped_container_with_the_owners_podman_shows");
    store_our_image(&s);
    let map = "0:100000:65536";
    let created = s.podman(&[
        "create",
        "--name",
        "c-mapped",
        "--uidmap",
        map,
        "--gidmap",
        map,
        OURS,
        "/bin/true",
    ]);
    if f.ok("podman create --uidmap", created).is_none() {
        f.done();
        return;
    }
    let owners = |dir: &Path| -> BTreeMap<PathBuf, (u32, u32)> {
        walkdir(dir)
            .into_iter()
            .map(|p| {
                let m = std::fs::symlink_metadata(&p).unwrap();
                (
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    (m.uid(), m.gid()),
                )
            })
            .collect()
    };
    let Some(theirs) = f.ok("podman mount", s.podman(&["mount", "c-mapped"])) else {
        f.done();
        return;
    };
    let theirs = owners(Path::new(theirs.trim()));
    f.ok("podman unmount", s.podman(&["unmount", "c-mapped"]));
    assert!(
        theirs.values().any(|(uid, _)| *uid >= 100_000),
        "podman's mount is not shifted: {theirs:?}"
    );
    if let Some(ours) = f.ok(
        "our mount of podman's container",
        s.ours(&["mount", "c-mapped"]),
    ) {
        let ours = owners(Path::new(ours.trim()));
        f.ok("our unmount", s.ours(&["unmount", "c-mapped"]));
        assert_eq!(ours, theirs, "our mount's owners, then podman's");
    }
    f.done();
}

/// Every path below `dir` (not following symlinks).
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walkdir(&path));
        }
        out.push(path);
    }
    out
}

/// A layer's tar with `same/a` and `same/note` in common with every other
/// tar made by this, and six files of its own: too little in common for
/// a layer to be built as a delta over another (stacking).
fn tar_sharing_one_file(s: &Shared, name: &str, seed: u64) -> PathBuf {
    let mut t = TarBuilder::new();
    t.dir("same/", &meta(0o755));
    t.file("same/a", &meta(0o644), &random_bytes(5, 150_000));
    t.file("same/note", &meta(0o644), b"same");
    for i in 0..6 {
        t.file(
            &format!("own-{i}"),
            &meta(0o644),
            &random_bytes(seed + i, 9_000),
        );
    }
    let tar = s.scratch(&format!("tars/{name}.tar"));
    std::fs::write(&tar, t.finish()).unwrap();
    tar
}

#[test]
fn dedup_hardlinks_the_copies_materialize_always_built_once_they_are_image_layers() {
    // Under `materialize = "always"` (the shared-host setting) a layer's
    // directory is built at import, while it may still be written: as
    // copies. Once it is an image's layer `dedup` shares its files, each
    // compared with the pool first.
    let what = "dedup of the copies materialize = always built";
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new(
        "dedup_hardlinks_the_copies_materialize_always_built_once_they_are_image_layers",
    );
    let overlay = s.graph().join("overlay");
    let mut layers = Vec::new();
    for (seed, name) in [(10, "one"), (20, "two"), (30, "three")] {
        let tar = tar_sharing_one_file(&s, name, seed);
        let imported = s.ours(&["import-layer", "-f", tar.to_str().unwrap()]);
        let layer = first_line(&imported.expect("our import"));
        s.ours(&["create-image", "-n", name, &layer])
            .expect("our create-image");
        layers.push(layer);
    }
    let inode = |layer: &str, path: &str| {
        std::fs::metadata(overlay.join(layer).join("diff").join(path))
            .map(|m| m.ino())
            .ok()
    };
    // Copies (no reflinks on ext4) come straight from the pool: no
    // content object in `objects/` doubles them.
    let objects = s.graph().join("objects");
    let ext4 = nix::sys::statfs::statfs(&objects)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::EXT4_SUPER_MAGIC);
    if ext4 {
        let files: Vec<_> = walkdir(&objects)
            .into_iter()
            .filter(|p| {
                p.is_file()
                    && !p.starts_with(objects.join("tmp"))
                    && p.file_name() != Some(".lock".as_ref())
            })
            .collect();
        f.check(
            "the copies left no file objects behind",
            files.is_empty(),
            format_args!("{files:?}"),
        );
    }
    let before: Vec<_> = layers.iter().map(|l| inode(l, "same/a")).collect();
    f.check(
        "the copies are three inodes before dedup",
        before.iter().all(Option::is_some) && before[0] != before[1] && before[1] != before[2],
        format_args!("{before:?}"),
    );
    // The third layer's copy changed behind our back (same size and
    // times): never shared.
    let changed = overlay.join(&layers[2]).join("diff/same/a");
    let st = std::fs::metadata(&changed).unwrap();
    let mut bytes = std::fs::read(&changed).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&changed, &bytes).unwrap();
    let file = std::fs::File::options().write(true).open(&changed).unwrap();
    let times = std::fs::FileTimes::new()
        .set_accessed(st.accessed().unwrap())
        .set_modified(st.modified().unwrap());
    file.set_times(times).unwrap();
    drop(file);

    if let Some(out) = f.ok("our `dedup --json`", s.ours(&["dedup", "--json"])) {
        let report: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        f.check(
            "dedup reports the bytes the hardlinks freed",
            report["Linked"].as_u64().is_some_and(|n| n >= 150_000),
            &out,
        );
    }
    let after: Vec<_> = layers.iter().map(|l| inode(l, "same/a")).collect();
    f.check(
        "the two unchanged copies are one inode after dedup",
        after[0].is_some() && after[0] == after[1],
        format_args!("{after:?}"),
    );
    f.check(
        "the changed copy is left as it is",
        after[2].is_some() && after[2] != after[0],
        format_args!("{after:?}"),
    );
    f.eq(
        "the changed copy still has its bytes",
        &std::fs::read(&changed).ok().map(|b| sha256(&b)),
        &Some(sha256(&bytes)),
    );
    for (layer, name) in layers.iter().zip(["one", "two"]) {
        let tar = std::fs::read(s.scratch(&format!("tars/{name}.tar"))).unwrap();
        let exported = s.ours_export(layer);
        f.check(
            &format!("{name} exports its tar after dedup"),
            exported.as_ref().is_ok_and(|e| *e == sha256(&tar)),
            format_args!("{exported:?}"),
        );
    }
    f.done();
}

#[test]
fn our_mounts_hardlink_image_layers_past_gos_bind_mount_of_overlay() {
    // Go's overlay driver bind-mounts `overlay/` on itself and leaves it
    // mounted: links from `objects/` into a layer's `diff` then cross
    // mounts (EXDEV), and every file of a directory our mount built was a
    // copy of its own.
    let what = "our mounts past Go's bind mount of overlay/";
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new("our_mounts_hardlink_image_layers_past_gos_bind_mount_of_overlay");
    // Directories built on demand, by our mounts (not at import).
    s.write_storage_conf("");
    f.ok("the Go CLI starts on the store", s.go(&["layers"]));
    let home = std::fs::canonicalize(s.graph().join("overlay")).unwrap();
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let bound = table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|point| Path::new(point) == home);
    assert!(bound, "Go bind-mounts {} on itself", home.display());

    let mut layers = Vec::new();
    for (seed, name) in [(10, "one"), (20, "two")] {
        let tar = tar_sharing_one_file(&s, name, seed);
        let imported = s.ours(&["import-layer", "-f", tar.to_str().unwrap()]);
        let layer = first_line(&imported.expect("our import"));
        s.ours(&["create-image", "-n", name, &layer])
            .expect("our create-image");
        let mounted = f.ok(
            &format!("our `mount -r {name}`"),
            s.ours(&["mount", "-r", name]),
        );
        if let Some(mounted) = mounted {
            let read = std::fs::read_to_string(Path::new(mounted.trim()).join("same/note"));
            f.eq(
                &format!("{name}: same/note"),
                &read.ok(),
                &Some("same".to_string()),
            );
        }
        layers.push(layer);
    }
    let file = |layer: &str| {
        std::fs::metadata(home.join(layer).join("diff/same/a"))
            .map(|m| (m.ino(), m.nlink()))
            .ok()
    };
    let (one, two) = (file(&layers[0]), file(&layers[1]));
    f.check(
        "both image layers' same/a are one inode (hardlinks of one object)",
        one.is_some() && one.map(|(ino, _)| ino) == two.map(|(ino, _)| ino),
        format_args!("{one:?} {two:?}"),
    );
    for name in ["one", "two"] {
        f.ok(&format!("our `unmount {name}`"), s.ours(&["unmount", name]));
    }
    if let Some(out) = f.ok("our `check`", s.ours(&["check"])) {
        f.eq("our `check` says nothing", &out.trim(), &"");
    }
    s.check_exports(&mut f, Cli::Go, "after our mounts");
    f.done();
}

#[test]
fn a_go_client_opening_the_store_leaves_our_mounts_in_sight() {
    // Go's overlay driver binds `overlay/` on itself (without the mounts
    // below) when it finds it unmounted: made after our mount, that bind
    // hid it, so our `mount`'s path showed an empty directory and our
    // `mounted` said no. Our mounts bind it first, as Go's driver does,
    // and the last unmount drops the bind, as Go's shutdown does.
    let what = "our mounts after a Go client opens the store";
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new("a_go_client_opening_the_store_leaves_our_mounts_in_sight");
    let mounts_below = || {
        let home = std::fs::canonicalize(s.graph().join("overlay")).unwrap();
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        table
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|point| Path::new(point).starts_with(&home))
            .count()
    };
    let layer = first_line(
        &s.ours(&["create-layer", "-n", "lay"])
            .expect("our create-layer"),
    );
    let mounted = s.ours(&["mount", "lay"]).expect("our mount");
    let merged = PathBuf::from(mounted.trim());
    std::fs::write(merged.join("note"), "ours").unwrap();
    f.ok("the Go CLI opens the store", s.go(&["mounted", &layer]));
    f.eq(
        "the file written through our mount, after Go's open",
        &std::fs::read_to_string(merged.join("note")).ok(),
        &Some("ours".to_string()),
    );
    f.eq(
        "our `mounted` after Go's open",
        &s.ours(&["mounted", "lay"]).ok(),
        &Some("lay mounted\n".to_string()),
    );
    f.ok("our `unmount`", s.ours(&["unmount", "lay"]));
    f.eq("mounts left under overlay/", &mounts_below(), &0);
    let go_sees = s.go(&["diff", &layer]).map(|tar| tar.contains("note"));
    f.eq("Go's `diff` holds the file", &go_sees.ok(), &Some(true));
    f.done();
}

#[test]
fn go_makes_its_short_links_again_in_a_store_we_used() {
    // Upstream's overlay driver, missing a short link (`l/<short>`),
    // makes them all again from every directory in `overlay/`, and fails
    // on one without a `link` file: ours (`.used/`, `.unsynced/`, the
    // shared `empty/`) were there, so Go could mount nothing.
    let what = "Go making its short links again in a store we used";
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new("go_makes_its_short_links_again_in_a_store_we_used");
    let base = first_line(
        &s.ours(&["create-layer", "-n", "base"])
            .expect("our create-layer"),
    );
    let mounted = s.ours(&["mount", "base"]).expect("our mount");
    std::fs::write(Path::new(mounted.trim()).join("note"), "base").unwrap();
    s.ours(&["unmount", "base"]).expect("our unmount");
    let top = first_line(
        &s.ours(&["create-layer", "-n", "top", "base"])
            .expect("create-layer"),
    );
    s.ours(&["create-image", "-n", "img", "top"])
        .expect("create-image");
    // A read-only mount of a one-layer image needs the shared empty lower.
    let one = first_line(
        &s.ours(&["create-layer", "-n", "one"])
            .expect("create-layer"),
    );
    s.ours(&["create-image", "-n", "one-img", "one"])
        .expect("create-image");
    s.ours(&["mount", "-r", "one-img"]).expect("our mount -r");
    s.ours(&["unmount", "one-img"]).expect("our unmount");
    let home = s.graph().join("overlay");
    let strays: Vec<String> = std::fs::read_dir(&home)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "l" && ![&base, &top, &one].contains(&n))
        .collect();
    f.eq(
        "directories in overlay/ that are no layer's",
        &strays,
        &Vec::new(),
    );
    let short = std::fs::read_to_string(home.join(&base).join("link")).unwrap();
    std::fs::remove_file(home.join("l").join(short.trim())).unwrap();
    if let Some(mounted) = f.ok(
        "Go `mount top` with a short link gone",
        s.go(&["mount", &top]),
    ) {
        let read = std::fs::read_to_string(Path::new(mounted.trim()).join("note"));
        f.eq(
            "base's file through Go's mount",
            &read.ok(),
            &Some("base".to_string()),
        );
        f.ok("Go `unmount top`", s.go(&["unmount", &top]));
    }
    f.check(
        "Go made the short link again",
        home.join("l").join(short.trim()).exists(),
        "l/<short> still missing",
    );
    if let Some(out) = f.ok("our `check`", s.ours(&["check"])) {
        f.eq("our `check` says nothing", &out.trim(), &"");
    }
    f.done();
}

#[test]
fn gc_and_check_r_make_again_the_driver_entries_a_crash_left_missing() {
    // An import adds its record, then the driver entries Go reads: a
    // crash between the two leaves a layer Go cannot mount. Removing the
    // entries leaves the same state.
    let what = "driver entries a crash left missing";
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new("gc_and_check_r_make_again_the_driver_entries_a_crash_left_missing");
    let (_layout, image, want) = store_our_image(&s);
    let overlay = s.graph().join("overlay");
    let crash = |f: &mut Findings| {
        let (top, middle) = (image.top_layer(), &image.layers[1]);
        let short = std::fs::read_to_string(overlay.join(middle).join("link")).unwrap();
        std::fs::remove_dir_all(overlay.join(top)).unwrap();
        std::fs::remove_file(overlay.join(middle).join("lower")).unwrap();
        std::fs::remove_file(overlay.join("l").join(short.trim())).unwrap();
        let mounted = s.go(&["mount", "-r", &image.id]);
        f.check(
            "the Go CLI cannot mount the image without the entries",
            mounted.is_err(),
            "it mounted",
        );
        if mounted.is_ok() {
            let _ = s.go(&["unmount", &image.id]);
        }
    };
    let go_mounts = |f: &mut Findings, when: &str| {
        let mounted = s.go(&["mount", "-r", &image.id]);
        if let Some(mounted) = f.ok(&format!("{when}: Go `mount -r IMAGE`"), mounted) {
            let what = format!("{when}: the Go CLI's image mount equals tar -x of the image");
            compare_tree(f, &what, Path::new(mounted.trim()), &want);
            f.ok("Go `unmount IMAGE`", s.go(&["unmount", &image.id]));
        }
        s.check_exports(f, Cli::Go, when);
    };

    crash(&mut f);
    if let Some(out) = f.ok("our `gc`", s.ours(&["gc", "-v"])) {
        f.check(
            "gc says it made the entries of the two layers again",
            out.contains("layers given their missing driver entries: 2"),
            &out,
        );
    }
    go_mounts(&mut f, "after gc");

    crash(&mut f);
    let found = s.ours(&["check"]);
    let found = found.err().unwrap_or_default();
    for layer in [image.top_layer(), &image.layers[1]] {
        f.check(
            "check names each layer whose entries are missing",
            found.contains(&format!("{layer}: driver entries missing")),
            &found,
        );
    }
    f.ok("our `check -r`", s.ours(&["check", "-r"]));
    if let Some(out) = f.ok("our `check` after check -r", s.ours(&["check"])) {
        f.eq("our `check` after check -r says nothing", &out.trim(), &"");
    }
    go_mounts(&mut f, "after check -r");
    f.done();
}

/// What the clients must do with an image stored in `s` under `name`:
/// podman lists it and mounts a container of it that equals `want`;
/// skopeo copies it out with every digest verified; the Go CLI mounts it
/// (equal to `want`) and exports every layer of the store byte for byte.
fn clients_use_the_image(
    s: &Shared,
    f: &mut Findings,
    layout: &OciLayout,
    name: &str,
    want: &BTreeMap<PathBuf, common::tree::Node>,
) {
    let image_id = layout.image_id();
    let container = format!("c-{}", &image_id[..12]);
    let listing = s.podman(&[
        "images",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Repository}}:{{.Tag}} {{.Digest}}",
    ]);
    if let Some(listing) = f.ok("podman images", listing) {
        let line = format!("sha256:{} {name} {}", image_id, layout.manifest_digest);
        f.check(
            "podman lists the image with its ID, name and manifest digest",
            listing.lines().any(|l| l == line),
            format_args!("no line {line:?} in:\n{listing}"),
        );
    }
    let created = s.podman(&["create", "--name", &container, name, "/bin/true"]);
    if f.ok("podman create", created).is_some() {
        s.check_podman_tree(
            f,
            "podman's container mount equals tar -x of the image",
            &container,
            want,
        );
    }

    let out = s.scratch("oci-out");
    if f.ok(
        "skopeo copy containers-storage: -> oci:",
        s.skopeo_copy_out(name, &out),
    )
    .is_some()
    {
        if let Some(copied) = f.ok("the layout skopeo wrote verifies", verify_oci_layout(&out)) {
            // skopeo gzips the layers for oci:, so the manifest is new;
            // the config and the uncompressed layers are the stored ones.
            f.eq(
                "skopeo copied the stored config",
                &copied.config_digest,
                &layout.config_digest,
            );
            f.eq(
                "skopeo copied the stored layers",
                &copied.diff_ids,
                &layout.diff_ids,
            );
        }
    }

    if let Some(mounted) = f.ok("Go `mount -r IMAGE`", s.go(&["mount", "-r", &image_id])) {
        compare_tree(
            f,
            "the Go CLI's image mount equals tar -x of the image",
            Path::new(mounted.trim()),
            want,
        );
        f.ok("Go `unmount IMAGE`", s.go(&["unmount", &image_id]));
    }
    s.check_exports(f, Cli::Go, "the Go CLI");
}

#[test]
fn our_cli_stores_an_image_with_the_records_skopeo_writes() {
    // The same image stored by skopeo (c/image) in one store and by our
    // CLI the c/image way in another: the records agree in every key the
    // Go library writes, but for times.
    let what = "the records of an image stored by skopeo and by our CLI";
    let Some(theirs) = Shared::new(what, &[Client::Skopeo]) else {
        return;
    };
    let Some(ours) = Shared::new(what, &[]) else {
        return;
    };
    let mut f = Findings::new("our_cli_stores_an_image_with_the_records_skopeo_writes");
    let tars = sample_tars(&theirs, 100);
    let layout = OciLayout::write(&theirs.scratch("oci"), &tars);
    theirs
        .skopeo_copy_in(&layout, OURS)
        .expect("skopeo copies the image in");
    ours.store_like_c_image(&layout, OURS)
        .expect("our CLI stores the image");
    for (file, keys) in [
        (
            "layers",
            &[
                "id",
                "parent",
                "names",
                "compressed-diff-digest",
                "compressed-size",
                "diff-digest",
                "diff-size",
                "compression",
                "uidset",
                "gidset",
                "flags",
            ][..],
        ),
        (
            "images",
            &[
                "id",
                "digest",
                "names",
                "layer",
                "metadata",
                "big-data-names",
                "big-data-sizes",
                "big-data-digests",
                "flags",
            ],
        ),
    ] {
        let read = |s: &Shared| -> Vec<BTreeMap<String, serde_json::Value>> {
            let path = s.record_file(file);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
            records
                .iter()
                .map(|r| {
                    keys.iter()
                        .filter_map(|k| r.get(*k).map(|v| (k.to_string(), v.clone())))
                        .collect()
                })
                .collect()
        };
        let (got, want) = (read(&ours), read(&theirs));
        f.eq(&format!("{file}: records"), &got.len(), &want.len());
        for (i, (got, want)) in got.iter().zip(&want).enumerate() {
            for key in keys {
                f.eq(
                    &format!("{file}: record {i}: `{key}`, ours as skopeo's"),
                    &got.get(*key),
                    &want.get(*key),
                );
            }
        }
    }
    f.done();
}

#[test]
fn the_clients_use_an_image_skopeo_stored() {
    // The control for the test above: the same checks pass on an image a
    // Go client stored, so what fails there is ours.
    let what = "podman, skopeo and the Go CLI on an image skopeo stored";
    let Some(s) = Shared::new(what, &[Client::Podman, Client::Skopeo, Client::Go]) else {
        return;
    };
    let mut f = Findings::new("the_clients_use_an_image_skopeo_stored");
    let tars = sample_tars(&s, 100);
    let layout = OciLayout::write(&s.scratch("oci-in"), &tars);
    let name = "localhost/cs-test/skopeo:latest";
    s.skopeo_copy_in(&layout, name)
        .expect("skopeo copies the image in");
    let want = expected_tree(&s.scratch("want"), &tars);
    clients_use_the_image(&s, &mut f, &layout, name, &want);
    f.done();
}

#[test]
fn our_cli_uses_a_store_skopeo_and_go_wrote_and_its_gc_and_dedup_keep_it_intact() {
    let what = "our CLI on a store skopeo and the Go CLI wrote";
    let Some(s) = Shared::new(what, &[Client::Podman, Client::Skopeo, Client::Go]) else {
        return;
    };
    let mut f = Findings::new(
        "our_cli_uses_a_store_skopeo_and_go_wrote_and_its_gc_and_dedup_keep_it_intact",
    );
    let tars = sample_tars(&s, 200);
    let theirs = "localhost/cs-test/skopeo:latest";
    let layout = OciLayout::write(&s.scratch("oci-skopeo"), &tars[..2]);
    s.skopeo_copy_in(&layout, theirs)
        .expect("skopeo copies an image into its own store");
    let want = expected_tree(&s.scratch("want-skopeo"), &tars[..2]);

    // The Go CLI adds a layer on top of skopeo's, an image of it and a
    // container, and writes a file into the container.
    let top = layout.layer_ids().pop().unwrap();
    let tar = tars[2].to_str().unwrap();
    let go_layer = first_line(
        &s.go(&["import-layer", "-f", tar, &top])
            .expect("Go import-layer"),
    );
    let go_image = first_line(
        &s.go(&[
            "create-image",
            "-n",
            "localhost/cs-test/go:latest",
            &go_layer,
        ])
        .expect("Go create-image"),
    );
    let go_ctr = first_line(
        &s.go(&["create-container", "-n", "go-ctr", &go_image])
            .expect("Go create-container"),
    );
    let mounted = s.go(&["mount", "go-ctr"]).expect("Go mount");
    std::fs::write(Path::new(mounted.trim()).join("written-by-go"), "go\n").unwrap();
    s.go(&["unmount", "go-ctr"]).expect("Go unmount");
    let before: Vec<_> = s.layer_records().iter().map(|l| l.digests()).collect();
    assert!(
        before.len() >= 4,
        "skopeo's two layers, Go's layer and the container's"
    );

    for listing in ["layers", "images", "containers"] {
        let go = s.go(&[listing]).expect("the Go CLI lists its own store");
        if let Some(ours) = f.ok(&format!("our `{listing}`"), s.ours(&[listing])) {
            f.eq(
                &format!("our `{listing}` lists what the Go CLI lists"),
                &blocks(&ours),
                &blocks(&go),
            );
        }
    }
    s.check_exports(&mut f, Cli::Ours, "skopeo's and Go's layers");
    for layer in s.layer_records() {
        for args in [vec!["changes", "--json"], vec!["diffsize"]] {
            let mut args = args.clone();
            args.push(&layer.id);
            let go = s.go(&args).map(|out| sorted_changes(&out));
            let what = format!("our `{}` as the Go CLI's", args.join(" "));
            if let (Ok(go), Some(ours)) = (go, f.ok(&what, s.ours(&args))) {
                f.eq(&what, &sorted_changes(&ours), &go);
            }
        }
    }
    f.ok("our `check` on skopeo's and Go's store", s.ours(&["check"]));
    if let Some(mounted) = f.ok("our `mount` of Go's container", s.ours(&["mount", &go_ctr])) {
        let file = Path::new(mounted.trim()).join("written-by-go");
        f.eq(
            "our mount of Go's container shows the file Go wrote",
            &std::fs::read_to_string(&file).map_err(|e| e.to_string()),
            &Ok("go\n".to_string()),
        );
        f.ok(
            "our `unmount` of Go's container",
            s.ours(&["unmount", &go_ctr]),
        );
    }

    f.ok("our `gc`", s.ours(&["gc"]));
    f.ok("our `dedup`", s.ours(&["dedup"]));
    let after: Vec<_> = s.layer_records().iter().map(|l| l.digests()).collect();
    f.eq(
        "every recorded ID, parent, digest and size after our gc and dedup",
        &after,
        &before,
    );
    s.check_exports(&mut f, Cli::Go, "after our gc and dedup");
    match s.go(&["mount", "go-ctr"]) {
        Ok(mounted) => {
            let file = Path::new(mounted.trim()).join("written-after-gc");
            f.ok(
                "the Go CLI still writes into its container",
                std::fs::write(&file, "again\n"),
            );
            f.eq(
                "the Go container still has the file Go wrote first",
                &std::fs::read_to_string(Path::new(mounted.trim()).join("written-by-go"))
                    .map_err(|e| e.to_string()),
                &Ok("go\n".to_string()),
            );
            f.ok("Go unmount after gc", s.go(&["unmount", "go-ctr"]));
        }
        Err(e) => f.fail("Go still mounts its container after our gc and dedup", e),
    }
    let created = s.podman(&["create", "--name", "c-skopeo", theirs, "/bin/true"]);
    if f.ok("podman create after our gc and dedup", created)
        .is_some()
    {
        s.check_podman_tree(
            &mut f,
            "podman still mounts skopeo's image exactly",
            "c-skopeo",
            &want,
        );
    }

    // Our delete of Go's container takes its layer (and its directory).
    let containers = std::fs::read_to_string(s.record_file("containers")).unwrap_or_default();
    let containers: Vec<serde_json::Value> = serde_json::from_str(&containers).unwrap_or_default();
    let ctr_layer = containers
        .iter()
        .find(|c| c["id"] == go_ctr.as_str())
        .and_then(|c| c["layer"].as_str().map(String::from));
    if f.ok(
        "our `delete-container` of Go's container",
        s.ours(&["delete-container", &go_ctr]),
    )
    .is_some()
    {
        if let Some(ids) = f.ok("Go `layers` after our delete", s.layer_ids(Cli::Go)) {
            f.check(
                "the Go CLI no longer lists the container's layer",
                ctr_layer.as_ref().is_none_or(|l| !ids.contains(l)),
                format_args!("{ctr_layer:?} in {ids:?}"),
            );
        }
        f.check(
            "the container's layer directory is gone",
            ctr_layer
                .as_ref()
                .is_none_or(|l| !s.graph().join(s.driver()).join(l).exists()),
            format_args!("{ctr_layer:?}"),
        );
    }
    f.done();
}

/// A `changes --json` listing in a stable order (a `diffsize` as it is).
fn sorted_changes(out: &str) -> String {
    match serde_json::from_str::<Vec<serde_json::Value>>(out) {
        Ok(mut changes) => {
            changes.sort_by_key(|c| c.to_string());
            serde_json::to_string(&changes).unwrap()
        }
        Err(_) => out.trim().to_string(),
    }
}

#[test]
fn the_go_cli_and_our_cli_share_a_vfs_store() {
    // The vfs driver, both ways: the Go CLI mounts and exports an image
    // our CLI stored (its layers as `vfs/dir/<id>`, each a whole tree);
    // our CLI exports a layer the Go CLI added on top and mounts the Go
    // container with the file written into it.
    let what = "the Go CLI and our CLI on one vfs store";
    let Some(s) = Shared::on_driver(what, &[Client::Go], "vfs") else {
        return;
    };
    let mut f = Findings::new("the_go_cli_and_our_cli_share_a_vfs_store");
    let (_layout, image, want) = store_our_image(&s);
    s.check_exports(&mut f, Cli::Ours, "before the Go CLI ran");
    assert!(f.clean(), "our own exports must be exact before Go runs");

    // (Go's `mount -r IMAGE` refuses vfs: "vfs driver does not support
    // mount options"; its top layer is the image's whole tree.)
    let top = image.top_layer();
    if let Some(mounted) = f.ok("Go `mount TOP-LAYER`", s.go(&["mount", top])) {
        let root = PathBuf::from(mounted.trim());
        let what = "the Go CLI's vfs mount of our top layer equals tar -x";
        compare_tree(&mut f, what, &root, &want);
        f.ok("Go `unmount TOP-LAYER`", s.go(&["unmount", top]));
    }
    s.check_exports(&mut f, Cli::Go, "the Go CLI on our vfs layers");

    let extra = small_tar(&s, "go-vfs", 500);
    let added = s.go(&[
        "import-layer",
        "-f",
        extra.to_str().unwrap(),
        image.top_layer(),
    ]);
    let Some(added) = f.ok("Go import-layer on our top layer", added) else {
        return f.done();
    };
    let added = first_line(&added);
    let go_image = s.go(&[
        "create-image",
        "-n",
        "localhost/cs-test/go-vfs:latest",
        &added,
    ]);
    let go_image = first_line(&go_image.expect("Go create-image"));
    s.go(&["create-container", "-n", "go-vfs-ctr", &go_image])
        .expect("Go create-container");
    let mounted = s.go(&["mount", "go-vfs-ctr"]).expect("Go mount");
    std::fs::write(Path::new(mounted.trim()).join("written-by-go"), "go\n").unwrap();
    s.go(&["unmount", "go-vfs-ctr"]).expect("Go unmount");

    let what = "our export of the Go layer on top of ours";
    if let Some(got) = f.ok(what, s.ours_export(&added)) {
        f.eq(what, &got, &sha256_file(&extra).0);
    }
    if let Some(mounted) = f.ok(
        "our `mount` of Go's vfs container",
        s.ours(&["mount", "go-vfs-ctr"]),
    ) {
        let root = Path::new(mounted.trim());
        f.eq(
            "our mount of Go's vfs container shows the file Go wrote",
            &std::fs::read_to_string(root.join("written-by-go")).map_err(|e| e.to_string()),
            &Ok("go\n".to_string()),
        );
        f.check(
            "our mount of Go's vfs container shows our image's files",
            root.join("usr/bin/tool").is_file() && root.join("data/big").is_file(),
            "usr/bin/tool or data/big missing",
        );
        f.ok("our `unmount`", s.ours(&["unmount", "go-vfs-ctr"]));
    }
    f.ok("our `check` after the Go CLI", s.ours(&["check"]));
    f.done();
}

#[test]
fn changes_of_vfs_layers_are_the_go_clis() {
    // Upstream's vfs compares the layer's tree with its parent's
    // (`ChangesDirs`): a directory with changes inside is a `Modify` of
    // its own, even when the layer's tar does not name it. Ours left
    // `/etc` out for a tar that only replaced `etc/hostname`.
    let what = "changes of vfs layers";
    let Some(s) = Shared::on_driver(what, &[Client::Go], "vfs") else {
        return;
    };
    let mut f = Findings::new("changes_of_vfs_layers_are_the_go_clis");
    let m = Meta::default();
    let dir = meta(0o755);
    let mut base = TarBuilder::new();
    base.dir("etc/", &dir);
    base.file("etc/hostname", &m, b"base\n");
    base.file("etc/hosts", &m, b"127.0.0.1 localhost\n");
    base.dir("usr/", &dir);
    base.file("usr/gone", &m, b"x");
    let mut child = TarBuilder::new();
    child.file("etc/hostname", &m, b"child\n");
    child.whiteout("usr/", "gone");
    child.file("opt/x/y", &m, b"new\n");
    let tars = [
        ("base", base.finish(), ""),
        ("child", child.finish(), "base"),
    ];
    let [go_ids, our_ids] = import_with_each(&s, &tars);
    let (go_child, our_child) = (go_ids["child"].clone(), our_ids["child"].clone());
    let go = s
        .go(&["changes", "--json", &go_child])
        .map(|o| sorted_changes(&o));
    let go = f.ok("Go's `changes` of its layer", go);
    let ours_on_go = s
        .ours(&["changes", "--json", &go_child])
        .map(|o| sorted_changes(&o));
    let ours_on_go = f.ok("our `changes` of Go's layer", ours_on_go);
    let ours = s
        .ours(&["changes", "--json", &our_child])
        .map(|o| sorted_changes(&o));
    let ours = f.ok("our `changes` of our layer", ours);
    f.check(
        "Go's changes hold the parents with changes inside",
        go.as_deref()
            .is_some_and(|c| c.contains(r#""Path":"/etc""#) && c.contains(r#""Path":"/opt/x""#)),
        format_args!("{go:?}"),
    );
    f.eq("our changes of Go's layer", &ours_on_go, &go);
    f.eq("our changes of our layer", &ours, &go);
    f.done();
}

#[test]
fn changes_and_diffsize_against_any_layer_are_the_go_clis() {
    // Against a layer other than its parent, upstream compares the two
    // layers' whole trees (`NaiveDiffDriver`); ours refused.
    for driver in ["vfs", "overlay"] {
        let what = "changes against any layer";
        let Some(s) = Shared::on_driver(what, &[Client::Go], driver) else {
            return;
        };
        let mut f = Findings::new("changes_and_diffsize_against_any_layer_are_the_go_clis");
        let m = Meta::default();
        let at = |mtime| Meta {
            mtime,
            ..Meta::default()
        };
        let dir = meta(0o755);
        let mut base = TarBuilder::new();
        base.dir("etc/", &dir);
        base.file("etc/hostname", &m, b"base\n");
        base.file("etc/hosts", &m, b"127.0.0.1 localhost\n");
        base.dir("usr/", &dir);
        base.file("usr/gone", &m, b"x");
        let mut mid = TarBuilder::new();
        mid.file("etc/hostname", &at(1_700_000_000), b"middle\n");
        mid.file("opt/x/y", &m, b"new\n");
        let mut top = TarBuilder::new();
        top.whiteout("usr/", "gone");
        top.file("etc/new", &m, b"added\n");
        let mut sibling = TarBuilder::new();
        sibling.file("etc/hosts", &meta(0o600), b"127.0.0.1 localhost\n");
        let tars = [
            ("base", base.finish(), ""),
            ("mid", mid.finish(), "base"),
            ("top", top.finish(), "mid"),
            ("sibling", sibling.finish(), "base"),
        ];
        let ids = import_with_each(&s, &tars);
        for (layer, from) in [("top", "base"), ("sibling", "mid"), ("base", "top")] {
            for cmd in ["changes", "diffsize"] {
                let args = |i: usize| {
                    let mut a = vec![cmd.to_string()];
                    if cmd == "changes" {
                        a.push("--json".into());
                    }
                    a.extend([ids[i][layer].clone(), ids[i][from].clone()]);
                    a
                };
                let run = |cli, i| {
                    let a = args(i);
                    let a: Vec<&str> = a.iter().map(String::as_str).collect();
                    s.cli(cli, &a).map(|o| sorted_changes(&o))
                };
                let what = format!("{driver}: {cmd} {layer} {from}");
                let go = f.ok(&format!("Go's {what}"), run(Cli::Go, 0));
                let ours_on_go = f.ok(&format!("our {what} of Go's layers"), run(Cli::Ours, 0));
                let ours = f.ok(&format!("our {what} of our layers"), run(Cli::Ours, 1));
                f.eq(&format!("our {what} of Go's layers"), &ours_on_go, &go);
                f.eq(&format!("our {what} of our layers"), &ours, &go);
            }
            // The tar of those changes: the same entries (times aside:
            // directories a tar left out get the time they were made).
            let listing = |cli, i: usize| {
                let args = ["diff", "-u", ids[i][layer].as_str(), ids[i][from].as_str()];
                s.cli(cli, &args).map(|tar| tar_entries(tar.as_bytes()))
            };
            let what = format!("{driver}: diff {layer} {from}");
            let go = f.ok(&format!("Go's {what}"), listing(Cli::Go, 0));
            let ours = f.ok(&format!("our {what} of our layers"), listing(Cli::Ours, 1));
            f.eq(&format!("our {what} of our layers"), &ours, &go);
        }
        f.done();
    }
}

/// Imports `tars` (name, tar, parent's name or ""), in order, with the Go
/// CLI and with ours; the layer IDs each gave, by name.
fn import_with_each<'a>(
    s: &Shared,
    tars: &[(&'a str, Vec<u8>, &'a str)],
) -> [BTreeMap<&'a str, String>; 2] {
    let mut ids: [BTreeMap<&str, String>; 2] = Default::default();
    for (i, cli) in [Cli::Go, Cli::Ours].into_iter().enumerate() {
        for (name, tar, parent) in tars {
            let file = s.scratch(&format!("{name}-{i}.tar"));
            std::fs::write(&file, tar).unwrap();
            let mut args = vec!["import-layer", "-f", file.to_str().unwrap()];
            if !parent.is_empty() {
                args.push(&ids[i][parent]);
            }
            let id = first_line(&s.cli(cli, &args).expect("import-layer"));
            ids[i].insert(name, id);
        }
    }
    ids
}

/// A tar's entries as `tar -tv` lists them, without times, sorted.
fn tar_entries(tar: &[u8]) -> Vec<String> {
    let mut cmd = std::process::Command::new("tar");
    cmd.args(["-tv", "--numeric-owner"]);
    let out = common::run_command(cmd, Some(tar));
    let mut entries: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let (head, rest) = fields.split_at(3.min(fields.len()));
            format!(
                "{} {}",
                head.join(" "),
                rest.get(2..).unwrap_or(&[]).join(" ")
            )
        })
        .collect();
    entries.sort();
    entries
}

#[test]
fn our_cli_waits_for_a_lock_the_go_cli_holds() {
    let what = "our CLI waiting for the Go CLI's lock";
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new("our_cli_waits_for_a_lock_the_go_cli_holds");
    waits_while_go_applies_a_diff(&s, &mut f, Cli::Ours);
    f.done();
}

#[test]
fn the_go_cli_waits_for_a_lock_our_cli_holds() {
    let what = "the Go CLI waiting for our lock";
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new("the_go_cli_waits_for_a_lock_our_cli_holds");
    go_waits_for_a_stopped_create_layer(&s, &mut f, Cli::Ours);
    f.done();
}

#[test]
fn the_go_cli_waits_for_its_own_lock_holders() {
    // The control for the two tests above: with the Go CLI on both sides
    // they pass, so what fails there is ours.
    let what = "the Go CLI waiting for itself";
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new("the_go_cli_waits_for_its_own_lock_holders");
    waits_while_go_applies_a_diff(&s, &mut f, Cli::Go);
    go_waits_for_a_stopped_create_layer(&s, &mut f, Cli::Go);
    f.done();
}

/// `waiter`'s `layers` and `create-layer` wait while a Go `applydiff`
/// holds the layers lock, and succeed once it is done.
fn waits_while_go_applies_a_diff(s: &Shared, f: &mut Findings, waiter: Cli) {
    let target = hex_id(&format!("applydiff target {waiter:?}"));
    s.go(&["create-layer", "-i", &target])
        .expect("Go create-layer");

    // Go's `applydiff` takes the layers lock for writing, then reads the
    // diff, holding the lock until the diff ends (its store set-up takes
    // and drops the same lock before). Once it has read the first bytes
    // it holds the lock until we send the rest.
    let mut tar = TarBuilder::new();
    tar.file("applied", &meta(0o644), &random_bytes(7, 8192));
    let tar = tar.finish();
    let mut cmd = s.go_command();
    cmd.args(["applydiff", &target]);
    let mut go = spawn(cmd, true);
    let mut stdin = go.stdin.take().unwrap();
    stdin.write_all(&tar[..1024]).unwrap();
    while unread(&stdin) > 0 {
        assert!(
            go.try_wait().unwrap().is_none(),
            "Go applydiff ended before it read its input"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    eprintln!("Go applydiff holds: {:?}", s.locks());

    let mut waiting = Vec::new();
    let created = hex_id(&format!("created by {waiter:?} while Go applied a diff"));
    for args in [vec!["layers"], vec!["create-layer", "-i", &created]] {
        let mut cmd = match waiter {
            Cli::Ours => s.ours_command(),
            Cli::Go => s.go_command(),
        };
        cmd.args(&args);
        let before = s.waiters();
        let mut child = spawn(cmd, false);
        let blocked = s.wait_until_blocked(&mut child, before);
        let what = format!(
            "{waiter:?} `{}` waits while Go applies a diff",
            args.join(" ")
        );
        if f.ok(&what, blocked).is_some() {
            waiting.push((args.join(" "), child));
        }
    }

    stdin.write_all(&tar[1024..]).unwrap();
    drop(stdin);
    f.ok("Go applydiff", finish(go));
    for (args, child) in waiting {
        f.ok(
            &format!("{waiter:?} `{args}` after Go's applydiff"),
            finish(child),
        );
    }
    if let Some(ids) = f.ok("Go `layers`", s.layer_ids(Cli::Go)) {
        f.check(
            &format!("Go lists the layer {waiter:?} created"),
            ids.contains(&created),
            format_args!("{ids:?}"),
        );
    }
}

/// The bytes written to a pipe that its reader has not read yet.
#[allow(unsafe_code)] // FIONREAD: no safe wrapper
fn unread(pipe: &std::process::ChildStdin) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int; on a pipe it counts the bytes in
    // it from either end.
    let rc = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as usize
}

/// A Go `layers` waits while `holder`'s `create-layer`, stopped (SIGSTOP)
/// while it holds the layers lock, keeps it, and lists the new layer when
/// it was stopped after writing it.
fn go_waits_for_a_stopped_create_layer(s: &Shared, f: &mut Findings, holder: Cli) {
    s.cli(
        holder,
        &["create-layer", "-i", &hex_id(&format!("first {holder:?}"))],
    )
    .expect("create-layer");
    let holds_layers_lock = || {
        s.locks()
            .iter()
            .any(|l| !l.waiting && l.file.ends_with("layers.lock"))
    };

    // Catch `create-layer` holding the layers lock and stop it there
    // (a stopped process keeps its locks); retry when it let go first.
    let mut caught = None;
    for attempt in 0..400 {
        let id = hex_id(&format!("held by {holder:?} {attempt}"));
        let mut cmd = match holder {
            Cli::Ours => s.ours_command(),
            Cli::Go => s.go_command(),
        };
        cmd.args(["create-layer", "-i", &id]);
        let mut child = spawn(cmd, false);
        let pid = Pid::from_raw(child.id() as i32);
        while child.try_wait().unwrap().is_none() {
            if holds_layers_lock() {
                kill(pid, Signal::SIGSTOP).unwrap();
                break;
            }
        }
        if holds_layers_lock() {
            eprintln!("caught {holder:?} create-layer holding layers.lock at attempt {attempt}");
            caught = Some((id, child, pid));
            break;
        }
        let _ = kill(pid, Signal::SIGCONT);
        finish(child).expect("create-layer");
    }
    let (id, holder_child, pid) =
        caught.expect("create-layer was never caught holding layers.lock");
    eprintln!("{holder:?} create-layer holds: {:?}", s.locks());
    let written = s.layer_records().iter().any(|l| l.id == id);

    let before = s.waiters();
    let mut cmd = s.go_command();
    cmd.args(["layers", "--json"]);
    let mut go = spawn(cmd, false);
    let waited = s.wait_until_blocked(&mut go, before);
    kill(pid, Signal::SIGCONT).unwrap();
    let waited = f.ok(
        &format!("Go `layers` waits while {holder:?} create-layer holds layers.lock"),
        waited,
    );
    f.ok(
        &format!("{holder:?} create-layer, continued"),
        finish(holder_child),
    );
    let listing = finish(go);
    if let (Some(()), Some(listing), true) = (waited, f.ok("Go `layers`", listing), written) {
        f.check(
            "Go's listing, taken after the lock was released, has the layer written under it",
            listing.contains(&id),
            &listing,
        );
    }
}

#[test]
fn our_cli_reads_lock_files_holding_the_go_clis_token() {
    let what = "our CLI on the Go CLI's lock tokens";
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new("our_cli_reads_lock_files_holding_the_go_clis_token");
    let tar = small_tar(&s, "go-token", 300);
    let layer = first_line(
        &s.go(&["import-layer", "-f", tar.to_str().unwrap()])
            .expect("Go import-layer"),
    );
    let image = first_line(
        &s.go(&["create-image", "-n", "go-token", &layer])
            .expect("Go create-image"),
    );
    s.go(&["create-container", "-n", "go-token-ctr", &image])
        .expect("Go create-container");
    s.go(&["mount", "go-token-ctr"]).expect("Go mount");
    s.go(&["unmount", "go-token-ctr"]).expect("Go unmount");
    for lock in s.lock_files() {
        let len = std::fs::metadata(&lock).map(|m| m.len()).unwrap_or(0);
        eprintln!("{}: {len} bytes", lock.display());
    }

    for args in [
        &["layers"][..],
        &["images"],
        &["containers"],
        &["mounted", "go-token-ctr"],
        &["layer", &layer],
    ] {
        f.ok(
            &format!("our `{}` on Go's store", args.join(" ")),
            s.ours(args),
        );
    }
    let created = hex_id("ours after Go");
    f.ok(
        "our `create-layer` on Go's store",
        s.ours(&["create-layer", "-i", &created]),
    );
    if let Some(ids) = f.ok("Go `layers` after our write", s.layer_ids(Cli::Go)) {
        f.check(
            "Go sees the layer we wrote",
            ids.contains(&created),
            format_args!("{ids:?}"),
        );
    }
    f.done();
}

#[test]
fn an_open_store_handle_sees_each_go_write_and_go_sees_ours() {
    // Records are cached per handle while the lock's token stays the
    // same: a Go write must change what the handle's next read returns.
    let what = "an open store handle and the Go CLI's writes";
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new("an_open_store_handle_sees_each_go_write_and_go_sees_ours");
    let store = containers_storage::Store::open(containers_storage::StoreOptions {
        graph_root: s.graph(),
        run_root: s.run_root(),
        driver: common::clients::DRIVER.into(),
        ..containers_storage::StoreOptions::defaults()
    })
    .expect("our library opens the store");
    let ids = |store: &containers_storage::Store| -> Result<Vec<String>, String> {
        store
            .layers()
            .map(|ls| ls.into_iter().map(|l| l.id).collect())
            .map_err(|e| e.to_string())
    };
    f.ok("our handle's first listing", ids(&store));
    let go_layer = hex_id("created by Go under an open handle");
    s.go(&["create-layer", "-i", &go_layer])
        .expect("Go create-layer");
    if let Some(listed) = f.ok("our handle lists after Go's create", ids(&store)) {
        f.check(
            "our handle sees the layer Go created",
            listed.contains(&go_layer),
            format_args!("{listed:?}"),
        );
    }
    let ours = hex_id("created through our handle");
    let options = containers_storage::LayerOptions {
        id: Some(ours.clone()),
        ..Default::default()
    };
    f.ok(
        "our create_layer",
        store
            .create_layer(None, &options)
            .map_err(|e| e.to_string()),
    );
    let lock = s
        .graph()
        .join(format!("{}-layers/layers.lock", common::clients::DRIVER));
    f.eq(
        "the token we leave in layers.lock is 64 bytes, as Go's",
        &std::fs::metadata(&lock).map(|m| m.len()).unwrap_or(0),
        &64,
    );
    if let Some(listed) = f.ok("Go `layers` after our create", s.layer_ids(Cli::Go)) {
        f.check(
            "Go sees the layer our handle created",
            listed.contains(&ours),
            format_args!("{listed:?}"),
        );
    }
    f.ok(
        "Go `delete-layer` of its layer, after our write",
        s.go(&["delete-layer", &go_layer]),
    );
    if let Some(listed) = f.ok("our handle lists after Go's delete", ids(&store)) {
        f.check(
            "our handle no longer lists the layer Go deleted",
            !listed.contains(&go_layer) && listed.contains(&ours),
            format_args!("{listed:?}"),
        );
    }
    f.done();
}

#[test]
fn our_imports_and_go_imports_into_one_store_at_once_lose_nothing() {
    let what = "our imports and Go imports at once";
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new("our_imports_and_go_imports_into_one_store_at_once_lose_nothing");
    s.ours(&["layers"]).expect("our CLI makes the store");
    s.go(&["layers"]).expect("the Go CLI opens it");
    imports_at_once(&s, &mut f, [Cli::Ours, Cli::Go]);
    f.ok("our `check` (the Go CLI 1.43 has none)", s.ours(&["check"]));
    f.done();
}

#[test]
fn a_go_write_in_the_middle_of_our_import_keeps_our_layer() {
    // A Go client deletes every layer record flagged `incomplete`
    // whenever it loads the records for writing: an import that wrote
    // its record first lost it to any Go command that ran meanwhile.
    let what = "a Go write in the middle of our import";
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new("a_go_write_in_the_middle_of_our_import_keeps_our_layer");
    s.ours(&["layers"]).expect("our CLI makes the store");
    let tar = std::fs::read(small_tar(&s, "under-way", 400)).unwrap();
    let ours = hex_id("our import under way");
    let mut cmd = s.ours_command();
    cmd.args(["import-layer", "-i", &ours]);
    let mut child = spawn(cmd, true);
    let mut stdin = child.stdin.take().unwrap();
    // All but the end of the archive: our import reads it and waits.
    let cut = tar.len() - 1024;
    stdin.write_all(&tar[..cut]).unwrap();
    while unread(&stdin) > 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "our import-layer ended before it read its input"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let go_layer = hex_id("created by Go during our import");
    f.ok(
        "Go `create-layer` while our import is under way",
        s.go(&["create-layer", "-i", &go_layer]),
    );
    stdin.write_all(&tar[cut..]).unwrap();
    drop(stdin);
    f.ok("our import-layer, finished after Go's write", finish(child));
    for cli in [Cli::Ours, Cli::Go] {
        if let Some(ids) = f.ok(&format!("{cli:?} `layers`"), s.layer_ids(cli)) {
            f.check(
                &format!("{cli:?} lists both layers"),
                ids.contains(&ours) && ids.contains(&go_layer),
                format_args!("{ids:?}"),
            );
        }
    }
    if let Some(got) = f.ok("our `diff -u` of our layer", s.export(Cli::Ours, &ours)) {
        f.eq("our export of our layer", &got, &sha256(&tar));
    }
    f.done();
}

#[test]
fn go_imports_into_one_store_at_once_lose_nothing() {
    // The control for the test above: Go processes on both sides.
    let what = "Go imports at once";
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new("go_imports_into_one_store_at_once_lose_nothing");
    imports_at_once(&s, &mut f, [Cli::Go, Cli::Go]);
    f.done();
}

/// Three processes per side import a chain of four layers each (each the
/// parent of the next), all at once; then each side's CLI lists every
/// layer and exports each exactly as its tar.
fn imports_at_once(s: &Shared, f: &mut Findings, sides: [Cli; 2]) {
    const WORKERS: usize = 3;
    const CHAIN: usize = 4;
    let mut plans = Vec::new();
    for (side, cli) in sides.into_iter().enumerate() {
        for worker in 0..WORKERS {
            let layers: Vec<(String, PathBuf)> = (0..CHAIN)
                .map(|k| {
                    let label = format!("{cli:?}{side}-{worker}-{k}").to_lowercase();
                    let seed = 1000 + ((side * WORKERS + worker) * CHAIN + k) as u64 * 10;
                    (hex_id(&label), small_tar(s, &label, seed))
                })
                .collect();
            plans.push((cli, layers));
        }
    }
    let results: Vec<(String, Result<String, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .iter()
            .map(|(cli, layers)| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    let mut parent: Option<&str> = None;
                    for (id, tar) in layers {
                        let tar = tar.to_str().unwrap();
                        let mut args = vec!["import-layer", "-i", id.as_str(), "-f", tar];
                        args.extend(parent);
                        out.push((format!("{cli:?} import-layer {id}"), s.cli(*cli, &args)));
                        parent = Some(id.as_str());
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for (what, result) in results {
        f.ok(&what, result);
    }

    let want: Vec<(&String, String)> = plans
        .iter()
        .flat_map(|(_, layers)| layers.iter().map(|(id, tar)| (id, sha256_file(tar).0)))
        .collect();
    let mut clis = sides.to_vec();
    clis.dedup();
    for cli in clis {
        if let Some(listed) = f.ok(&format!("{cli:?} `layers`"), s.layer_ids(cli)) {
            let missing: Vec<&str> = want
                .iter()
                .map(|(id, _)| id.as_str())
                .filter(|id| !listed.iter().any(|l| l == *id))
                .collect();
            f.check(
                &format!("{cli:?} lists every layer both sides imported"),
                missing.is_empty(),
                format_args!("missing {missing:?}"),
            );
        }
        for (id, digest) in &want {
            let what = format!("{cli:?} `diff -u {id}` equals the tar imported");
            if let Some(got) = f.ok(&what, s.export(cli, id)) {
                f.eq(&what, &got, digest);
            }
        }
    }
}

#[test]
fn podman_skopeo_and_buildah_commands_work_on_our_store() {
    let what = "podman, skopeo and buildah commands on our store";
    let Some(s) = Shared::new(what, &[Client::Podman, Client::Skopeo, Client::Buildah]) else {
        return;
    };
    let mut f = Findings::new("podman_skopeo_and_buildah_commands_work_on_our_store");
    let (layout, _image, want) = store_our_image(&s);

    // podman create, mount, save.
    if f.ok(
        "podman create",
        s.podman(&["create", "--name", "c-ours", OURS, "/bin/true"]),
    )
    .is_some()
    {
        s.check_podman_tree(
            &mut f,
            "podman's container mount equals tar -x",
            "c-ours",
            &want,
        );
    }
    let saved = s.scratch("podman-save");
    let save = s.podman_copying(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        saved.to_str().unwrap(),
        OURS,
    ]);
    if f.ok("podman save --format oci-dir", save).is_some() {
        if let Some(v) = f.ok(
            "the layout podman saved verifies",
            verify_oci_layout(&saved),
        ) {
            f.eq(
                "podman saved our layers' diff IDs",
                &v.diff_ids,
                &layout.diff_ids,
            );
        }
    }

    // skopeo copy in (sharing our base layer) and out.
    let extra = small_tar(&s, "skopeo-layer", 400);
    let base = layout.tars[0].clone();
    let theirs = OciLayout::write(&s.scratch("oci-skopeo"), &[base, extra.clone()]);
    let their_name = "localhost/cs-test/skopeo-in:latest";
    if f.ok(
        "skopeo copy oci: -> our store",
        s.skopeo_copy_in(&theirs, their_name),
    )
    .is_some()
    {
        if let Some(images) = f.ok("our `images -q`", s.ours(&["images", "-q"])) {
            f.check(
                "our CLI lists skopeo's image",
                images.lines().any(|l| l == theirs.image_id()),
                &images,
            );
        }
        let layer = theirs.layer_ids().pop().unwrap();
        let digest = sha256_file(&extra).0;
        if let Some(got) = f.ok("our export of skopeo's new layer", s.ours_export(&layer)) {
            f.eq(
                "our export of skopeo's new layer equals its tar",
                &got,
                &digest,
            );
        }
    }
    let out = s.scratch("oci-out");
    if f.ok(
        "skopeo copy our store -> oci:",
        s.skopeo_copy_out(OURS, &out),
    )
    .is_some()
    {
        if let Some(v) = f.ok("the layout skopeo wrote verifies", verify_oci_layout(&out)) {
            f.eq(
                "skopeo copied our config",
                &v.config_digest,
                &layout.config_digest,
            );
            f.eq("skopeo copied our layers", &v.diff_ids, &layout.diff_ids);
        }
    }

    // buildah from, mount, commit.
    let committed = "localhost/cs-test/buildah:latest";
    if let Some(working) = f.ok("buildah from", s.buildah(&["from", "--pull=never", OURS])) {
        let working = working.trim().to_string();
        if let Some(mounted) = f.ok("buildah mount", s.buildah(&["mount", &working])) {
            compare_tree(
                &mut f,
                "buildah's working container equals tar -x",
                Path::new(mounted.trim()),
                &want,
            );
            std::fs::write(
                Path::new(mounted.trim()).join("etc/buildah-was-here"),
                "yes\n",
            )
            .unwrap();
            f.ok("buildah umount", s.buildah(&["umount", &working]));
        }
        if f.ok(
            "buildah commit",
            s.buildah_copying(&["commit", "-q", &working, committed]),
        )
        .is_some()
        {
            check_committed_layer(&s, &mut f, committed);
        }
    }
    f.done();
}

/// Our CLI lists the image buildah committed and exports its new layer
/// exactly (its record's diff digest, which is the config's last diff ID).
fn check_committed_layer(s: &Shared, f: &mut Findings, name: &str) {
    let Some(images) = f.ok("our `images --json`", s.ours(&["images", "--json"])) else {
        return;
    };
    let images: serde_json::Value = serde_json::from_str(&images).unwrap_or_default();
    let image = images.as_array().into_iter().flatten().find(|i| {
        i["names"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n.as_str() == Some(name)))
    });
    let Some(image) = image else {
        f.fail("our CLI lists the image buildah committed", images);
        return;
    };
    let top = image["layer"].as_str().unwrap_or_default().to_string();
    let Some(record) = s.layer_records().into_iter().find(|l| l.id == top) else {
        f.fail("the committed image's top layer has a record", &top);
        return;
    };
    let Some(want) = record.diff_digest else {
        f.fail("buildah recorded the new layer's diff digest", &record.raw);
        return;
    };
    let what = "our export of buildah's new layer equals its diff digest";
    if let Some(got) = f.ok(what, s.ours_export(&top)) {
        f.eq(what, &got, &want);
    }
    let mut tar = s.ours_command();
    tar.args(["diff", "-u", &top]);
    if let Ok(bytes) = common::clients::run(tar, None) {
        f.check(
            "our export of buildah's layer holds the file written through buildah's mount",
            bytes.contains("etc/buildah-was-here"),
            "etc/buildah-was-here not in the tar",
        );
    }
}

#[test]
fn gc_evict_all_keeps_what_a_mounted_podman_container_uses() {
    let what = "gc --evict all under a mounted podman container";
    let Some(s) = Shared::new(what, &[Client::Podman]) else {
        return;
    };
    let mut f = Findings::new("gc_evict_all_keeps_what_a_mounted_podman_container_uses");
    let (_layout, _image, want) = store_our_image(&s);
    if f.ok(
        "podman create",
        s.podman(&["create", "--name", "c-evict", OURS, "/bin/true"]),
    )
    .is_none()
    {
        return f.done();
    }
    let Some(mounted) = f.ok("podman mount", s.podman(&["mount", "c-evict"])) else {
        return f.done();
    };
    let root = PathBuf::from(mounted.trim());
    compare_tree(&mut f, "podman's mount before our gc", &root, &want);
    f.ok("our `gc --evict all`", s.ours(&["gc", "--evict", "all"]));
    compare_tree(
        &mut f,
        "podman's mount still reads every file after our gc --evict all",
        &root,
        &want,
    );
    f.ok("podman unmount", s.podman(&["unmount", "c-evict"]));
    f.done();
}

/// The six squashed Debian images: `(name, tar)`.
fn debian_images(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for suite in ["bookworm", "trixie"] {
        out.push((
            format!("{suite}-base"),
            dir.join(format!("{suite}-base.tar")),
        ));
        for variant in ["python3", "curl"] {
            out.push((
                format!("{suite}-{variant}"),
                dir.join(format!("{suite}-{variant}.full.tar")),
            ));
        }
    }
    out
}

#[test]
fn dedup_adopts_six_debian_images_skopeo_copied_in() {
    let what = "dedup adopting the Debian images skopeo copied in";
    let Some(dir) = common::debian_tars() else {
        return;
    };
    let Some(s) = Shared::new(what, &[Client::Podman, Client::Skopeo, Client::Go]) else {
        return;
    };
    let mut f = Findings::new("dedup_adopts_six_debian_images_skopeo_copied_in");
    let images = debian_images(&dir);
    let copy_started = Instant::now();
    for (name, tar) in &images {
        let layout = OciLayout::write(
            &s.scratch(&format!("oci-{name}")),
            std::slice::from_ref(tar),
        );
        s.skopeo_copy_in(&layout, &format!("localhost/debian/{name}:latest"))
            .unwrap_or_else(|e| panic!("skopeo copies {name} into its own store: {e}"));
    }
    eprintln!(
        "skopeo copied the six images in {:.1?}",
        copy_started.elapsed()
    );
    let before = s.layer_records();
    let used_before = common::clients::disk_use(&s.graph());

    let started = Instant::now();
    let dedup = f.ok("our `dedup`", s.ours(&["dedup"]));
    let took = started.elapsed();
    let used_after = common::clients::disk_use(&s.graph());
    let ratio = used_after as f64 / used_before as f64;
    eprintln!(
        "adoption: the graph root took {} MB before our dedup and {} MB after: {ratio:.3}x (goal 0.5x, at most 0.7x); dedup took {took:.1?} and said {:?}",
        used_before / 1_000_000,
        used_after / 1_000_000,
        dedup.unwrap_or_default().trim()
    );
    f.check(
        "dedup takes the store to at most 0.7x",
        ratio <= 0.7,
        format_args!("{ratio:.3}x"),
    );

    let after = s.layer_records();
    f.eq(
        "every recorded digest after our dedup",
        &after.iter().map(|l| l.digests()).collect::<Vec<_>>(),
        &before.iter().map(|l| l.digests()).collect::<Vec<_>>(),
    );
    s.check_exports(&mut f, Cli::Go, "after our dedup");
    for (name, tar) in &images {
        let ctr = format!("c-{name}");
        let image = format!("localhost/debian/{name}:latest");
        if f.ok(
            &format!("podman create {name}"),
            s.podman(&["create", "--name", &ctr, &image, "/bin/true"]),
        )
        .is_some()
        {
            let want = expected_tree(&s.scratch("want"), std::slice::from_ref(tar));
            s.check_podman_tree(
                &mut f,
                &format!("podman's mount of {name} after our dedup"),
                &ctr,
                &want,
            );
        }
    }
    f.done();
}

#[test]
fn import_time_ours_against_go_into_a_shared_store() {
    let what = "import time, ours against the Go CLI's";
    let Some(dir) = common::debian_tars() else {
        return;
    };
    let Some(s) = Shared::new(what, &[Client::Go]) else {
        return;
    };
    let mut f = Findings::new("import_time_ours_against_go_into_a_shared_store");
    let tar = dir.join("bookworm-base.tar");
    let size = std::fs::metadata(&tar).unwrap().len();
    let path = tar.to_str().unwrap();
    s.go(&["layers"]).expect("the Go CLI makes the store");
    let mut times: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for round in 0..2 {
        for cli in [Cli::Go, Cli::Ours] {
            let id = hex_id(&format!("{cli:?} {round}"));
            let started = Instant::now();
            let result = s.cli(cli, &["import-layer", "-i", &id, "-f", path]);
            let secs = started.elapsed().as_secs_f64();
            if f.ok(&format!("{cli:?} import-layer, round {round}"), result)
                .is_some()
            {
                times.entry(format!("{cli:?}")).or_default().push(secs);
            }
        }
    }
    for (cli, secs) in &times {
        let shown: Vec<String> = secs.iter().map(|t| format!("{t:.2} s")).collect();
        eprintln!(
            "import of bookworm-base.tar ({} MB) into a shared store, {cli}: {} ({})",
            size / 1_000_000,
            shown.join(", "),
            if cfg!(debug_assertions) {
                "our binary is a debug build: take figures from `cargo test --release`"
            } else {
                "release build"
            }
        );
    }
    f.done();
}

fn first_line(out: &str) -> String {
    common::first_line_of(out)
}
