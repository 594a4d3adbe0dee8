//! Overlay directories are built without waiting for the disk, behind a
//! marker that names the boot: a marker from another boot (a machine that
//! went down before the build reached the disk) makes the next mount
//! build the directory again and drop the objects written since; `gc`
//! settles this boot's markers unless a build still holds them. Also: a
//! build's files get the tar's modes and owners whatever the umask, and a
//! file whose content the cache holds under other metadata is copied.

use crate::common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::tar::{Meta, TarBuilder};
use common::Cs;

fn meta(mode: u32, uid: u64, mtime: u64) -> Meta {
    Meta {
        mode,
        uid,
        gid: uid,
        mtime,
    }
}

/// Files and directories of many modes and two owners.
fn image(mtime: u64) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("etc/", &meta(0o755, 0, mtime));
    t.dir("tmp/", &meta(0o1777, 0, mtime));
    t.dir("home/", &meta(0o750, 1000, mtime));
    let modes = [0o644, 0o755, 0o600, 0o4755, 0o2755, 0o664, 0o000, 0o444];
    for (i, mode) in modes.into_iter().enumerate() {
        let owner = if i % 2 == 0 { 0 } else { 1000 };
        let content = format!("file {i} of mode {mode:o}\n").repeat(100 + i);
        t.file(
            &format!("etc/f{i}"),
            &meta(mode, owner, mtime),
            content.as_bytes(),
        );
    }
    t.file("home/own", &meta(0o640, 1000, mtime), b"mine");
    // Filled before it loses its owner's write permission.
    t.dir("ro/", &meta(0o555, 0, mtime));
    t.file("ro/inside", &meta(0o444, 0, mtime), b"inside");
    t.symlink("etc/link", "f0", &meta(0o777, 1000, mtime));
    t.finish()
}

fn cs_overlay(cs: &Cs, args: &[&str]) -> String {
    cs.ok_on("overlay", args)
}

fn import(cs: &Cs, name: &str, tar: &[u8], driver: &str) -> String {
    cs.import_named(driver, name, tar)
}

fn same_as_tar(cs: &Cs, name: &str, tree: &Path) {
    cs.assert_same_as_tar(name, tree)
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

fn markers(cs: &Cs) -> Vec<PathBuf> {
    let dir = cs.graph().join("overlay-layers").join(".unsynced");
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    found.sort();
    found
}

/// Every object file and its inode number.
/// Every object, held open: an inode that stays open cannot be freed and
/// its number given to a new file, so "still linked" is never confused
/// with "a new object that got the old number".
fn open_objects(cs: &Cs) -> Vec<(PathBuf, fs::File)> {
    let mut found = Vec::new();
    for shard in fs::read_dir(cs.graph().join("objects")).unwrap().flatten() {
        let name = shard.file_name().to_string_lossy().into_owned();
        if name.len() != 2 {
            continue;
        }
        for object in fs::read_dir(shard.path()).unwrap().flatten() {
            let file = fs::File::open(object.path()).unwrap();
            found.push((object.path(), file));
        }
    }
    found
}

#[test]
fn a_build_another_boot_left_unsettled_is_built_again_with_fresh_objects() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    let layer = import(&cs, "img", &image(1_600_000_000), "overlay");
    cs_overlay(&cs, &["create-image", "-n", "one", "img"]);
    let mounted = PathBuf::from(cs_overlay(&cs, &["mount", "-r", "one"]).trim());
    same_as_tar(&cs, "img", &mounted);
    let left = markers(&cs);
    assert_eq!(left.len(), 1, "one build, one marker: {left:?}");
    let name = left[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("{layer}-")), "{name}");
    assert_eq!(fs::read_to_string(&left[0]).unwrap(), boot_id());
    cs_overlay(&cs, &["unmount", "one"]);

    // The machine went down before the build reached the disk: what the
    // directory holds now cannot be trusted, nor can the objects.
    let diff = cs.graph().join("overlay").join(&layer).join("diff");
    fs::write(diff.join("etc/f0"), b"lost").unwrap();
    let before = open_objects(&cs);
    assert!(!before.is_empty());
    fs::write(&left[0], "00000000-0000-0000-0000-000000000000").unwrap();
    // Written after the build without an fsync, the short link's name may
    // not have reached the disk either.
    let link = cs.graph().join("overlay").join(&layer).join("link");
    fs::write(&link, "").unwrap();

    let mounted = PathBuf::from(cs_overlay(&cs, &["mount", "-r", "one"]).trim());
    same_as_tar(&cs, "img", &mounted);
    assert!(!left[0].exists(), "the other boot's marker is settled");
    for (path, file) in &before {
        assert_eq!(
            file.metadata().unwrap().nlink(),
            0,
            "{} survived from the other boot",
            path.display()
        );
    }
    let rebuilt = markers(&cs);
    assert_eq!(rebuilt.len(), 1, "the rebuild has its own marker");
    cs_overlay(&cs, &["unmount", "one"]);
    cs_overlay(&cs, &["gc", "--evict", "never"]);
    assert!(markers(&cs).is_empty(), "gc settles this boot's markers");
    let mounted = PathBuf::from(cs_overlay(&cs, &["mount", "-r", "one"]).trim());
    same_as_tar(&cs, "img", &mounted);
    cs_overlay(&cs, &["unmount", "one"]);

    // Another build lost with the machine, its short link intact: the
    // link goes with its directory, and the rebuild gets a new one.
    let short = fs::read_to_string(&link).unwrap();
    let shorts = cs.graph().join("overlay").join("l");
    assert!(shorts.join(&short).exists());
    let lost = format!("{layer}-00000000000000ff");
    let unsynced = cs.graph().join("overlay-layers").join(".unsynced");
    fs::write(unsynced.join(lost), "00000000-0000-0000-0000-000000000000").unwrap();
    let mounted = PathBuf::from(cs_overlay(&cs, &["mount", "-r", "one"]).trim());
    same_as_tar(&cs, "img", &mounted);
    assert!(
        !shorts.join(&short).exists(),
        "the lost build's short link stays"
    );
    assert_ne!(fs::read_to_string(&link).unwrap(), short);
    cs_overlay(&cs, &["unmount", "one"]);
}

#[test]
fn the_directories_an_earlier_version_kept_in_overlay_are_moved_and_honoured() {
    // Earlier versions kept `.used/`, `.unsynced/` and the shared
    // `empty/` in `overlay/`, where upstream's driver, making its short
    // links again, fails on them. A writable open moves them beside the
    // layer records; a lost build's marker still has its build redone.
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    let layer = import(&cs, "img", &image(1_600_000_000), "overlay");
    cs_overlay(&cs, &["create-image", "-n", "one", "img"]);
    cs_overlay(&cs, &["mount", "-r", "one"]);
    cs_overlay(&cs, &["unmount", "one"]);
    cs_overlay(&cs, &["gc", "--evict", "never"]);
    let home = cs.graph().join("overlay");
    let records = cs.graph().join("overlay-layers");
    // The layout as an earlier version left it.
    fs::rename(records.join(".used"), home.join(".used")).unwrap();
    fs::rename(records.join(".empty"), home.join("empty")).unwrap();
    fs::create_dir(home.join(".unsynced")).unwrap();
    let link = home.join(&layer).join("link");
    let short = fs::read_to_string(&link).unwrap();
    let lost = home
        .join(".unsynced")
        .join(format!("{layer}-00000000000000ff"));
    fs::write(&lost, "00000000-0000-0000-0000-000000000000").unwrap();
    let mounted = PathBuf::from(cs_overlay(&cs, &["mount", "-r", "one"]).trim());
    same_as_tar(&cs, "img", &mounted);
    assert_ne!(
        fs::read_to_string(&link).unwrap(),
        short,
        "the lost build was built again"
    );
    cs_overlay(&cs, &["unmount", "one"]);
    for old in [".used", ".unsynced", "empty"] {
        assert!(!home.join(old).exists(), "overlay/{old} is left");
    }
    for new in [".used", ".unsynced", ".empty"] {
        assert!(
            records.join(new).is_dir(),
            "overlay-layers/{new} is missing"
        );
    }
    assert!(records.join(".used").join(&layer).is_file());
}

#[test]
fn gc_leaves_the_marker_of_a_build_in_progress() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    let layer = import(&cs, "img", &image(1_600_000_000), "overlay");
    cs_overlay(&cs, &["create-image", "-n", "one", "img"]);
    cs_overlay(&cs, &["mount", "-r", "one"]);
    let finished = markers(&cs);
    assert_eq!(finished.len(), 1);
    // A build that is still running holds its marker locked.
    let running = finished[0].with_file_name(format!("{layer}-0123456789abcdef"));
    fs::write(&running, boot_id()).unwrap();
    let held = fs::File::open(&running).unwrap();
    let held = nix::fcntl::Flock::lock(held, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    cs_overlay(&cs, &["gc", "--evict", "never"]);
    assert_eq!(markers(&cs), vec![running.clone()]);
    drop(held);
    cs_overlay(&cs, &["gc", "--evict", "never"]);
    assert!(markers(&cs).is_empty());
    cs_overlay(&cs, &["unmount", "one"]);
}

/// `mount -r` of `image` with the given umask, on `driver`.
fn mount_with_umask(cs: &Cs, driver: &str, image: &str, umask: &str) -> PathBuf {
    let script = format!(
        "umask {umask}; exec \"$B\" --graph \"$G\" --run \"$R\" --storage-driver {driver} mount -r {image}"
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("B", env!("CARGO_BIN_EXE_containers-storage"))
        .env("G", cs.graph())
        .env("R", cs.run_root())
        .env("CONTAINERS_STORAGE_CONF", "/dev/null")
        .env_remove("STORAGE_DRIVER")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    PathBuf::from(common::stdout(&out).trim())
}

fn check_modes(tree: &Path) {
    let root = nix::unistd::geteuid().is_root();
    let modes = [0o644, 0o755, 0o600, 0o4755, 0o2755, 0o664, 0o000, 0o444];
    for (i, mode) in modes.into_iter().enumerate() {
        let path = tree.join(format!("etc/f{i}"));
        let m = fs::symlink_metadata(&path).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, mode, "{}", path.display());
        if root {
            let owner = if i % 2 == 0 { 0 } else { 1000 };
            assert_eq!((m.uid(), m.gid()), (owner, owner), "{}", path.display());
        }
    }
    for (dir, mode) in [
        ("tmp", 0o1777),
        ("ro", 0o555),
        ("home", 0o750),
        ("etc", 0o755),
    ] {
        let m = fs::metadata(tree.join(dir)).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, mode, "{dir}");
    }
    assert_eq!(fs::read(tree.join("ro/inside")).unwrap(), b"inside");
}

#[test]
fn files_get_the_tar_modes_and_owners_whatever_the_umask() {
    let drivers: &[&str] = if nix::unistd::geteuid().is_root() {
        &["vfs", "overlay"]
    } else {
        eprintln!("overlay skipped: it needs root (vfs runs)");
        &["vfs"]
    };
    for driver in drivers {
        for umask in ["077", "000", "022"] {
            let cs = Cs::new();
            import(&cs, "img", &image(1_600_000_000), driver);
            cs.ok_on(driver, &["create-image", "-n", "one", "img"]);
            let tree = mount_with_umask(&cs, driver, "one", umask);
            check_modes(&tree);
            if nix::unistd::geteuid().is_root() {
                same_as_tar(&cs, "img", &tree);
            }
            cs.ok_on(driver, &["unmount", "one"]);
        }
    }
}

#[test]
fn content_cached_under_other_metadata_is_copied_into_a_file_of_its_own() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    let first = import(&cs, "first", &image(1_600_000_000), "overlay");
    // Same content, other times: not a delta's worth of sharing, and no
    // hardlink object has this metadata.
    let second = import(&cs, "second", &image(1_700_000_000), "overlay");
    cs_overlay(&cs, &["create-image", "-n", "one", "first"]);
    cs_overlay(&cs, &["create-image", "-n", "two", "second"]);
    cs_overlay(&cs, &["mount", "-r", "one"]);
    let two = PathBuf::from(cs_overlay(&cs, &["mount", "-r", "two"]).trim());
    same_as_tar(&cs, "second", &two);
    let diff = |id: &str| cs.graph().join("overlay").join(id).join("diff");
    for i in 0..8 {
        let a = fs::metadata(diff(&first).join(format!("etc/f{i}"))).unwrap();
        let b = fs::metadata(diff(&second).join(format!("etc/f{i}"))).unwrap();
        assert_ne!(
            a.ino(),
            b.ino(),
            "etc/f{i} must not share the other's inode"
        );
        assert_ne!(a.mtime(), b.mtime());
    }
    cs_overlay(&cs, &["unmount", "one"]);
    cs_overlay(&cs, &["unmount", "two"]);
}
