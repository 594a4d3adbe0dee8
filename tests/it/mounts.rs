//! Mounts through the real binary (root only; CI is root): an overlay
//! container mount and a read-only image mount show exactly what `tar -x`
//! of the layers gives, writes through a container never reach lower
//! layers, objects or other containers, mounts are reference counted, a
//! 500-layer image mounts and exports on both drivers, and the vfs driver
//! works without
//! CAP_SYS_ADMIN.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::tar::{Meta, TarBuilder};
use common::tree::{differences, extract, snapshot};
use common::{first_line_of, Cs};

fn with_driver(cs: &Cs, driver: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", driver]).args(args);
    common::run_command(cmd, None)
}

fn ok(cs: &Cs, driver: &str, args: &[&str]) -> String {
    let out = with_driver(cs, driver, args);
    common::expect_status(&out, args, 0);
    String::from_utf8(out.stdout).unwrap()
}

fn base_and_diff() -> (Vec<u8>, Vec<u8>) {
    let m = Meta::default();
    let d = Meta {
        mode: 0o755,
        ..Meta::default()
    };
    let mut base = TarBuilder::new();
    base.dir("etc/", &d);
    base.file("etc/os-release", &m, b"base\n");
    base.file("etc/gone", &m, b"to be deleted");
    base.dir("usr/", &d);
    base.file(
        "usr/big",
        &Meta {
            mode: 0o755,
            ..Meta::default()
        },
        &common::random_bytes(3, 200_000),
    );
    base.symlink("bin", "usr", &m);
    let mut diff = TarBuilder::new();
    diff.file("etc/os-release", &m, b"changed\n");
    diff.whiteout("etc", "gone");
    diff.file("usr/new", &m, b"new file");
    (base.finish(), diff.finish())
}

/// Imports base + diff, an image on the diff and two containers; returns
/// the expected tree (`tar -x` of base then diff, whiteouts applied).
fn populate(cs: &Cs, driver: &str) -> PathBuf {
    let (base, diff) = base_and_diff();
    let dir = cs.dir.path();
    std::fs::write(dir.join("base.tar"), &base).unwrap();
    std::fs::write(dir.join("diff.tar"), &diff).unwrap();
    let b = first_line_of(&ok(
        cs,
        driver,
        &["import-layer", "-f", dir.join("base.tar").to_str().unwrap()],
    ));
    let d = first_line_of(&ok(
        cs,
        driver,
        &[
            "import-layer",
            "-f",
            dir.join("diff.tar").to_str().unwrap(),
            &b,
        ],
    ));
    ok(cs, driver, &["create-image", "-n", "img", &d]);
    ok(cs, driver, &["create-container", "-n", "c1", "img"]);
    ok(cs, driver, &["create-container", "-n", "c2", "img"]);
    let expected = dir.join("expected");
    extract(&dir.join("base.tar"), &expected);
    extract(&dir.join("diff.tar"), &expected);
    std::fs::remove_file(expected.join("etc/.wh.gone")).unwrap();
    std::fs::remove_file(expected.join("etc/gone")).unwrap();
    expected
}

/// Compares trees, leaving out directory times (they change as entries
/// are added or removed).
fn compare(expected: &Path, got: &Path) {
    let mut want = snapshot(expected);
    let mut have = snapshot(got);
    for map in [&mut want, &mut have] {
        for node in map.values_mut().filter(|n| n.kind == "dir") {
            node.mtime = (0, 0);
        }
    }
    let diff = differences(&want, &have);
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}

fn compare_without_times(expected: &Path, got: &Path) {
    let mut want = snapshot(expected);
    let mut have = snapshot(got);
    for map in [&mut want, &mut have] {
        for node in map.values_mut() {
            node.mtime = (0, 0);
        }
    }
    let diff = differences(&want, &have);
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}

#[test]
fn overlay_mounts_show_the_image_and_keep_writes_private() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    let expected = populate(&cs, "overlay");
    let m1 = PathBuf::from(ok(&cs, "overlay", &["mount", "c1"]).trim());
    let m2 = PathBuf::from(ok(&cs, "overlay", &["mount", "c2"]).trim());
    compare(&expected, &m1);
    let ro = PathBuf::from(ok(&cs, "overlay", &["mount", "-r", "img"]).trim());
    compare(&expected, &ro);
    // Write, truncate, chmod and delete through container one.
    std::fs::write(m1.join("usr/big"), b"overwritten").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(m1.join("etc/os-release"))
        .unwrap()
        .set_len(2)
        .unwrap();
    std::fs::set_permissions(
        m1.join("usr/new"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::remove_file(m1.join("bin")).unwrap();
    compare(&expected, &m2);
    compare(&expected, &ro);
    for unmount in ["c1", "c2"] {
        assert_eq!(
            ok(&cs, "overlay", &["unmount", unmount]),
            format!("{unmount} mountpoint unmounted\n")
        );
    }
    ok(&cs, "overlay", &["unmount", "img"]);
    // Remounting shows the first container's own changes, and only there.
    let m1 = PathBuf::from(ok(&cs, "overlay", &["mount", "c1"]).trim());
    assert_eq!(std::fs::read(m1.join("usr/big")).unwrap(), b"overwritten");
    assert!(!m1.join("bin").exists());
    let out = with_driver(&cs, "overlay", &["shutdown", "-f"]);
    common::expect_status(&out, &["shutdown", "-f"], 1);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(cs.graph().to_str().unwrap()), "{mounts}");
}

/// `overlay.mountopt` (a `--storage-opt` or `mountopt` under
/// `[storage.options.overlay]` of `storage.conf`) gives the overlay mounts
/// its flags, as upstream's driver does: Debian's own `storage.conf` asks
/// for `nodev`.
#[test]
fn overlay_mounts_take_mountopt() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    let flags_of = |path: &str| {
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = table
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(path))
            .unwrap_or_else(|| panic!("{path} is not mounted"))
            .to_string();
        line.split(' ').nth(5).unwrap().to_string()
    };
    let layer = first_line_of(&ok(&cs, "overlay", &["create-layer", "-n", "lay"]));
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", "overlay"])
        .args(["--storage-opt", "overlay.mountopt=nodev,nosuid"])
        .args(["mount", "lay"]);
    let out = common::run_command(cmd, None);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let merged = common::stdout(&out).trim().to_string();
    let flags = flags_of(&merged);
    assert!(
        flags.contains("nodev") && flags.contains("nosuid"),
        "{flags}"
    );
    assert!(!flags.contains("noexec"), "{flags}");
    ok(&cs, "overlay", &["unmount", "lay"]);
    // From storage.conf, for a read-only mount too.
    let conf = cs.dir.path().join("storage.conf");
    std::fs::write(&conf, "[storage.options.overlay]\nmountopt = \"noexec\"\n").unwrap();
    ok(&cs, "overlay", &["create-image", "-n", "img", &layer]);
    let mut cmd = cs.command();
    cmd.env("CONTAINERS_STORAGE_CONF", &conf).args([
        "--storage-driver",
        "overlay",
        "mount",
        "-r",
        "img",
    ]);
    let out = common::run_command(cmd, None);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let flags = flags_of(common::stdout(&out).trim());
    assert!(
        flags.contains("noexec") && !flags.contains("nodev"),
        "{flags}"
    );
    ok(&cs, "overlay", &["unmount", "img"]);
    // Without it, none.
    let merged = ok(&cs, "overlay", &["mount", "lay"]);
    let flags = flags_of(merged.trim());
    assert!(
        !flags.contains("nodev") && !flags.contains("noexec"),
        "{flags}"
    );
    ok(&cs, "overlay", &["unmount", "lay"]);
}

#[test]
fn mounts_are_reference_counted() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    populate(&cs, "overlay");
    let first = ok(&cs, "overlay", &["mount", "c1"]);
    assert_eq!(ok(&cs, "overlay", &["mount", "c1"]), first);
    assert_eq!(ok(&cs, "overlay", &["mounted", "c1"]), "c1 mounted\n");
    let records =
        std::fs::read_to_string(cs.run_root().join("overlay-layers/mountpoints.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&records).unwrap();
    assert_eq!(v[0]["count"], 2, "{records}");
    assert_eq!(ok(&cs, "overlay", &["unmount", "c1"]), "");
    assert_eq!(ok(&cs, "overlay", &["mounted", "c1"]), "c1 mounted\n");
    assert_eq!(
        ok(&cs, "overlay", &["umount", "c1"]),
        "c1 mountpoint unmounted\n"
    );
    assert_eq!(ok(&cs, "overlay", &["mounted", "c1"]), "");
    // -f drops every reference at once.
    ok(&cs, "overlay", &["mount", "c1"]);
    ok(&cs, "overlay", &["mount", "c1"]);
    assert_eq!(
        ok(&cs, "overlay", &["unmount", "-f", "c1"]),
        "c1 mountpoint unmounted\n"
    );
}

/// A mount label is an SELinux context: on a host without SELinux it is
/// ignored (as upstream ignores it), on one with SELinux it becomes the
/// mount's `context=` option.
#[test]
fn a_mount_label_is_taken() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    populate(&cs, "overlay");
    let label = "system_u:object_r:container_file_t:s0:c1,c2";
    let path = ok(&cs, "overlay", &["mount", "-l", label, "c1"]);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(path.trim()))
        .unwrap_or_else(|| panic!("{} is not mounted", path.trim()));
    let selinux = Path::new("/sys/fs/selinux/enforce").exists();
    assert_eq!(line.contains("context="), selinux, "{line}");
    ok(&cs, "overlay", &["unmount", "c1"]);
}

#[test]
fn a_500_layer_image_mounts_and_exports_every_layer_on_both_drivers() {
    // Upstream's newer releases take images deeper than 127 layers (the
    // old overlay driver's limit) and chains of 500.
    for driver in ["overlay", "vfs"] {
        if driver == "overlay" && !common::need_root("overlay mounts") {
            continue;
        }
        let cs = Cs::new();
        let options = containers_storage::StoreOptions {
            graph_root: cs.graph(),
            run_root: cs.run_root(),
            driver: driver.into(),
            ..containers_storage::StoreOptions::defaults()
        };
        let store = containers_storage::Store::open(options).unwrap();
        let mut parent: Option<String> = None;
        let mut tars = Vec::new();
        for i in 0..500 {
            let mut t = TarBuilder::new();
            t.file(
                &format!("file-{i:03}"),
                &Meta::default(),
                format!("layer {i}\n").as_bytes(),
            );
            let tar = t.finish();
            let layer = store
                .import_layer(parent.as_deref(), &Default::default(), &tar[..], &())
                .unwrap();
            tars.push((layer.id.clone(), tar));
            parent = Some(layer.id);
        }
        drop(store);
        let top = parent.unwrap();
        cs.ok_on(driver, &["create-image", "-n", "deep", &top]);
        cs.ok_on(driver, &["create-container", "-n", "c", "deep"]);
        for (target, what) in [("c", "container"), ("deep", "image")] {
            let mut args = vec!["mount"];
            if what == "image" {
                args.push("-r");
            }
            args.push(target);
            let merged = PathBuf::from(cs.ok_on(driver, &args).trim());
            let names: Vec<String> = std::fs::read_dir(&merged)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names.len(), 500, "{driver} {what}");
            for i in [0, 127, 128, 499] {
                assert_eq!(
                    std::fs::read_to_string(merged.join(format!("file-{i:03}"))).unwrap(),
                    format!("layer {i}\n"),
                    "{driver} {what}"
                );
            }
            cs.ok_on(driver, &["unmount", target]);
        }
        // Every layer exports its own tar, byte for byte, at any depth.
        for (i, (id, tar)) in tars.iter().enumerate() {
            if i % 50 != 0 && i != 499 {
                continue;
            }
            let out = cs.run(&["--storage-driver", driver, "diff", id], None);
            assert!(out.status.success(), "{driver} diff of layer {i}");
            assert!(out.stdout == *tar, "{driver}: layer {i} exports its tar");
        }
    }
}

#[test]
fn the_vfs_driver_works_without_cap_sys_admin() {
    if !common::need_root("dropping a capability") {
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have setpriv (util-linux)"
        );
        eprintln!("skipped: setpriv is not installed");
        return;
    }
    let cs = Cs::new();
    let expected = populate(&cs, "vfs");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--inh-caps=-sys_admin", "--bounding-set=-sys_admin", "--"])
        .arg(env!("CARGO_BIN_EXE_containers-storage"))
        .arg("--graph")
        .arg(cs.graph())
        .arg("--run")
        .arg(cs.run_root())
        .args(["--storage-driver", "vfs", "mount", "c1"])
        .env("CONTAINERS_STORAGE_CONF", "/dev/null");
    let out = common::run_command(cmd, None);
    common::expect_status(&out, &["setpriv", "mount", "c1"], 0);
    let tree = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    compare(&expected, &tree);
    // The container's tree is private: writes reach neither the image's
    // tree nor objects.
    std::fs::write(tree.join("usr/big"), b"mine").unwrap();
    let ro = PathBuf::from(ok(&cs, "vfs", &["mount", "-r", "img"]).trim());
    compare(&expected, &ro);
    let c2 = PathBuf::from(ok(&cs, "vfs", &["mount", "c2"]).trim());
    compare(&expected, &c2);
}

#[test]
fn debian_container_mounts_equal_the_squashed_image() {
    let Some(tars) = common::debian_tars() else {
        return;
    };
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    let base = first_line_of(&ok(
        &cs,
        "overlay",
        &[
            "import-layer",
            "-f",
            tars.join("bookworm-base.tar").to_str().unwrap(),
        ],
    ));
    let curl = first_line_of(&ok(
        &cs,
        "overlay",
        &[
            "import-layer",
            "-f",
            tars.join("bookworm-curl.diff.tar").to_str().unwrap(),
            &base,
        ],
    ));
    ok(&cs, "overlay", &["create-image", "-n", "curl", &curl]);
    ok(&cs, "overlay", &["create-container", "-n", "c", "curl"]);
    let merged = PathBuf::from(ok(&cs, "overlay", &["mount", "c"]).trim());
    // The expected tree: tar -x of the base, then of the diff over it.
    // (The squashed tar differs in the times of files whose content the
    // diff did not change, and holds whole seconds only.)
    let expected = cs.dir.path().join("expected");
    extract(&tars.join("bookworm-base.tar"), &expected);
    extract(&tars.join("bookworm-curl.diff.tar"), &expected);
    compare(&expected, &merged);
    // And the squashed image, but for times.
    let squashed = cs.dir.path().join("squashed");
    extract(&tars.join("bookworm-curl.full.tar"), &squashed);
    compare_without_times(&squashed, &merged);
    ok(&cs, "overlay", &["unmount", "c"]);
}

/// Upstream's deletes unmount what they delete (they refused before).
#[test]
fn deletes_unmount_mounted_layers_and_leave_no_directories() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    populate(&cs, "overlay");
    let merged = PathBuf::from(ok(&cs, "overlay", &["mount", "c1"]).trim());
    let layer_dir = merged.parent().unwrap().to_path_buf();
    ok(&cs, "overlay", &["mount", "c1"]);
    ok(&cs, "overlay", &["delete-container", "c1"]);
    assert!(
        !is_mounted(&merged),
        "{} is still mounted",
        merged.display()
    );
    assert!(
        !layer_dir.exists(),
        "{} is left behind",
        layer_dir.display()
    );
    let layer = first_line_of(&ok(&cs, "overlay", &["create-layer"]));
    let merged = PathBuf::from(ok(&cs, "overlay", &["mount", &layer]).trim());
    ok(&cs, "overlay", &["wipe"]);
    assert!(!is_mounted(&merged));
    assert!(ok(&cs, "overlay", &["layers"]).trim().is_empty());
}

/// A mount something holds open unmounts, and its layer deletes, as
/// upstream's lazy unmount lets them; the holder keeps what it has open.
#[test]
fn a_mount_in_use_unmounts_and_deletes() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    populate(&cs, "overlay");
    let merged = PathBuf::from(ok(&cs, "overlay", &["mount", "c1"]).trim());
    let held = std::fs::File::open(&merged).unwrap();
    ok(&cs, "overlay", &["unmount", "c1"]);
    assert!(
        !is_mounted(&merged),
        "{} is still mounted",
        merged.display()
    );
    drop(held);
    let merged = PathBuf::from(ok(&cs, "overlay", &["mount", "c2"]).trim());
    let held = std::fs::File::open(merged.join("etc")).unwrap();
    ok(&cs, "overlay", &["delete-container", "c2"]);
    assert!(
        !is_mounted(&merged),
        "{} is still mounted",
        merged.display()
    );
    assert!(!merged.parent().unwrap().exists());
    drop(held);
    let left = ok(&cs, "overlay", &["containers"]);
    assert!(
        left.contains("name: c1") && !left.contains("name: c2"),
        "{left}"
    );
}

/// The last unmount drops the driver's bind of its home even while a
/// process holds a file through it (an import or `gc` reading layers),
/// as upstream's lazy `Cleanup` does; a plain unmount failed as busy and
/// left the bind behind.
#[test]
fn the_homes_bind_goes_with_the_last_unmount_while_held() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    populate(&cs, "overlay");
    let merged = PathBuf::from(ok(&cs, "overlay", &["mount", "c1"]).trim());
    let home = merged.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(is_mounted(&home), "{} is not bound", home.display());
    let held = std::fs::File::open(merged.parent().unwrap()).unwrap();
    ok(&cs, "overlay", &["unmount", "c1"]);
    assert!(!is_mounted(&home), "{} is still bound", home.display());
    ok(&cs, "overlay", &["mount", "c1"]);
    ok(&cs, "overlay", &["unmount", "c1"]);
    drop(held);
    assert!(!is_mounted(&home), "{} is still bound", home.display());
}

/// Whether the kernel's mount table lists `path`.
fn is_mounted(path: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.display().to_string();
    table
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.as_str()))
}

/// Whether process `pid` waits for a `flock` on the file with inode `ino`
/// (a blocked waiter's line in `/proc/locks`: `N: -> FLOCK ... PID
/// MAJ:MIN:INODE ...`).
fn waits_for_lock(pid: u32, ino: u64) -> bool {
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"->")
            && fields.get(5) == Some(&pid.to_string().as_str())
            && fields
                .get(6)
                .and_then(|dev| dev.rsplit(':').next())
                .is_some_and(|i| i == ino.to_string())
    })
}

/// A mount that loses a race with `delete-layer` removes what it built:
/// the mount is held at the start of its build (the test holds the
/// builders' lock, as `gc`'s object sweep does), the layer is deleted
/// meanwhile (its delete finds nothing to remove yet), then the build
/// runs and the mount finds the layer gone.
fn a_mount_that_loses_to_a_delete(driver: &str) {
    use std::os::unix::fs::MetadataExt;
    let cs = Cs::new();
    let mut tar = TarBuilder::new();
    for i in 0..20 {
        let name = format!("f{i}");
        tar.file(&name, &Meta::default(), &common::random_bytes(i, 100_000));
    }
    let path = cs.dir.path().join("t.tar");
    std::fs::write(&path, tar.finish()).unwrap();
    let id = first_line_of(&ok(
        &cs,
        driver,
        &["import-layer", "-f", path.to_str().unwrap()],
    ));
    let objects = cs.graph().join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(objects.join(".lock"))
        .unwrap();
    let ino = lock.metadata().unwrap().ino();
    let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let mut mount = cs.command();
    mount.args(["--storage-driver", driver, "mount", &id]);
    mount
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mount = mount.spawn().unwrap();
    let since = std::time::Instant::now();
    while !waits_for_lock(mount.id(), ino) {
        assert!(
            since.elapsed() < std::time::Duration::from_secs(120),
            "the mount never reached its build"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ok(&cs, driver, &["delete-layer", &id]);
    drop(lock);
    let out = mount.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    assert!(
        common::stderr(&out).contains("not known"),
        "{}",
        common::stderr(&out)
    );
    let driver_dir = cs.graph().join(driver);
    for left in [
        driver_dir.join(&id),
        driver_dir.join("dir").join(&id),
        cs.graph().join(format!("{driver}-layers/.used")).join(&id),
    ] {
        assert!(
            std::fs::symlink_metadata(&left).is_err(),
            "{driver}: {} is left behind",
            left.display()
        );
    }
    let links: Vec<_> = std::fs::read_dir(driver_dir.join("l"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(links.is_empty(), "{driver}: short links left: {links:?}");
}

#[test]
fn a_vfs_mount_that_loses_a_race_with_a_delete_leaves_nothing() {
    a_mount_that_loses_to_a_delete("vfs");
}

#[test]
fn an_overlay_mount_that_loses_a_race_with_a_delete_leaves_nothing() {
    if common::need_root("overlay mounts") {
        a_mount_that_loses_to_a_delete("overlay");
    }
}

/// The base the path-twice cases stand on: `d/` holding `d/old`, files
/// `a` and `b`, and `target`.
fn twice_base() -> Vec<u8> {
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.dir(
        "d/",
        &Meta {
            mode: 0o755,
            ..Meta::default()
        },
    );
    t.file("d/old", &m, b"lower content of d");
    t.file("a", &m, b"lower a");
    t.file("b", &m, b"lower b");
    t.file("target", &m, b"lower target");
    t.finish()
}

/// Tars that give a path twice: `tar -x` (and upstream) leave the last
/// entry for a path, a file or symlink replacing a directory takes what
/// it held along, and a hard link links what its target is at that point.
fn twice_cases() -> Vec<(&'static str, Vec<u8>)> {
    let m = Meta::default();
    let other = Meta {
        mode: 0o600,
        uid: 7,
        gid: 8,
        mtime: 1_600_000_000,
    };
    let dir = Meta {
        mode: 0o750,
        ..Meta::default()
    };
    let big = common::random_bytes(11, 70_000);
    let mut cases = Vec::new();
    let mut t = TarBuilder::new();
    t.file("a", &m, b"first a");
    t.file("a", &other, &big);
    cases.push(("file-then-file", t.finish()));
    let mut t = TarBuilder::new();
    t.file("a", &m, b"first a");
    t.symlink("a", "target", &m);
    cases.push(("file-then-symlink", t.finish()));
    let mut t = TarBuilder::new();
    t.symlink("a", "target", &m);
    t.file("a", &other, b"a file after all");
    cases.push(("symlink-then-file", t.finish()));
    let mut t = TarBuilder::new();
    t.dir("d/", &dir);
    t.file("d/x", &m, b"inside d");
    t.file("d", &other, b"d is a file now");
    cases.push(("dir-then-file", t.finish()));
    let mut t = TarBuilder::new();
    t.file("d", &m, b"d is a file first");
    t.dir("d/", &dir);
    t.file("d/y", &m, b"in the new d");
    cases.push(("file-then-dir", t.finish()));
    let mut t = TarBuilder::new();
    t.file("a", &m, b"the link's content");
    t.file("b", &m, b"replaced by the link");
    t.hardlink("b", "a", &m);
    cases.push(("hardlink-onto-existing", t.finish()));
    let mut t = TarBuilder::new();
    t.file("a", &m, b"what the link keeps");
    t.hardlink("h", "a", &m);
    t.file("a", &other, &big);
    cases.push(("hardlink-then-target-replaced", t.finish()));
    cases
}

/// `tar -x` of `tars` in order into a new directory `name` of the store's
/// temporary directory, a file replacing a directory (the cases' tars
/// list no directory whose lower content must stay).
fn extracted(cs: &Cs, name: &str, tars: &[&[u8]]) -> PathBuf {
    let out = cs.dir.path().join(name);
    for (i, tar) in tars.iter().enumerate() {
        let file = cs.dir.path().join(format!("{name}.{i}.tar"));
        std::fs::write(&file, tar).unwrap();
        common::tree::extract_replacing(&file, &out);
    }
    out
}

/// Regression: a tar giving the same file twice imported, but an overlay
/// mount failed (`link …/objects/…: File exists`); the last entry for a
/// path wins, on both drivers, on its own and over a lower layer.
#[test]
fn a_tar_that_gives_a_path_twice_mounts_as_tar_x_leaves_it() {
    if !common::need_root("overlay mounts, and tar -x keeping owners") {
        return;
    }
    for driver in ["overlay", "vfs"] {
        let cs = Cs::new();
        let base = twice_base();
        ok_with(&cs, driver, &["import-layer", "-n", "base"], &base);
        for (name, tar) in twice_cases() {
            let case = format!("{driver} {name}");
            // On its own: every attribute as tar -x gives it.
            ok_with(&cs, driver, &["import-layer", "-n", name], &tar);
            ok(&cs, driver, &["create-image", "-n", name, name]);
            let tree = PathBuf::from(ok(&cs, driver, &["mount", "-r", name]).trim());
            let alone = extracted(&cs, &format!("{name}.alone"), &[&tar]);
            let diff = differences(&snapshot(&alone), &snapshot(&tree));
            assert!(diff.is_empty(), "{case}: {}", diff.join("\n"));
            ok(&cs, driver, &["unmount", name]);
            assert_eq!(
                ok_bytes(&cs, driver, &["diff", "-u", name]),
                tar,
                "{case}: diff"
            );
            let changes = ok(&cs, driver, &["changes", name]);
            let mut paths: Vec<&str> = changes.lines().collect();
            let listed = paths.len();
            paths.sort();
            paths.dedup();
            assert_eq!(paths.len(), listed, "{case}: {changes}");
            ok(&cs, driver, &["diffsize", name]);

            // Over the base: the lower content the tar replaces is gone.
            let upper = format!("{name}-upper");
            ok_with(&cs, driver, &["import-layer", "-n", &upper, "base"], &tar);
            let image = format!("{name}-image");
            ok(&cs, driver, &["create-image", "-n", &image, &upper]);
            let expected = extracted(&cs, &format!("{name}.over"), &[&base, &tar]);
            let tree = PathBuf::from(ok(&cs, driver, &["mount", "-r", &image]).trim());
            compare(&expected, &tree);
            ok(&cs, driver, &["unmount", &image]);
            ok(&cs, driver, &["changes", &upper]);
            ok(&cs, driver, &["diffsize", &upper]);

            // Applied onto a container's live layer.
            let container = format!("{name}-container");
            ok(
                &cs,
                driver,
                &["create-image", "-n", &format!("{name}-b"), "base"],
            );
            ok(
                &cs,
                driver,
                &["create-container", "-n", &container, &format!("{name}-b")],
            );
            let layer = container_layer(&cs, driver, &container);
            ok_with(&cs, driver, &["applydiff", &layer], &tar);
            let tree = PathBuf::from(ok(&cs, driver, &["mount", &container]).trim());
            compare(&expected, &tree);
            ok(&cs, driver, &["unmount", &container]);
            ok(&cs, driver, &["changes", &container]);
            ok(&cs, driver, &["diffsize", &container]);
        }
        // The materialized directories are what the manifests say.
        assert_eq!(ok(&cs, driver, &["check"]), "", "{driver}: check");
    }
}

/// A file after a symlink to `/` of the same path replaces the symlink
/// (GNU tar keeps such a symlink for last, so this is not compared with
/// `tar -x`), and nothing is written through it.
#[test]
fn a_file_after_a_symlink_to_the_root_replaces_it() {
    if !common::need_root("overlay mounts") {
        return;
    }
    for driver in ["overlay", "vfs"] {
        let cs = Cs::new();
        let m = Meta::default();
        let mut t = TarBuilder::new();
        t.symlink("a", "/", &m);
        t.file("a", &m, b"a file");
        ok_with(&cs, driver, &["import-layer", "-n", "l"], &t.finish());
        ok(&cs, driver, &["create-image", "-n", "i", "l"]);
        let tree = PathBuf::from(ok(&cs, driver, &["mount", "-r", "i"]).trim());
        let meta = std::fs::symlink_metadata(tree.join("a")).unwrap();
        assert!(meta.is_file(), "{driver}: {meta:?}");
        assert_eq!(std::fs::read(tree.join("a")).unwrap(), b"a file");
        ok(&cs, driver, &["unmount", "i"]);
    }
}

fn ok_with(cs: &Cs, driver: &str, args: &[&str], input: &[u8]) -> String {
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", driver]).args(args);
    let out = common::run_command(cmd, Some(input));
    common::expect_status(&out, args, 0);
    String::from_utf8(out.stdout).unwrap()
}

fn ok_bytes(cs: &Cs, driver: &str, args: &[&str]) -> Vec<u8> {
    let out = with_driver(cs, driver, args);
    common::expect_status(&out, args, 0);
    out.stdout
}

fn container_layer(cs: &Cs, driver: &str, name: &str) -> String {
    let out = ok(cs, driver, &["container", "--json", name]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["layer"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every xattr under `root` whose name starts with one of `prefixes`.
fn xattrs_named(root: &Path, prefixes: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut paths = vec![root.to_path_buf()];
    paths.extend(snapshot(root).keys().map(|p| root.join(p)));
    for path in paths {
        for name in common::tree::xattrs(&path).keys() {
            if prefixes.iter().any(|p| name.starts_with(p)) {
                found.push(format!("{}: {name}", path.display()));
            }
        }
    }
    found
}

/// Regression: `trusted.overlay.*` xattrs from a tar (an opaque marker,
/// a redirect) were written onto the lower directories overlayfs reads,
/// so a layer could hide or redirect content below it. They stay in the
/// tar (`diff` gives it back byte for byte) but are never written; other
/// xattrs are.
#[test]
fn overlay_xattrs_from_a_tar_are_never_written() {
    if !common::need_root("overlay mounts and trusted xattrs") {
        return;
    }
    let m = Meta::default();
    let dir = Meta {
        mode: 0o755,
        ..Meta::default()
    };
    let mut base = TarBuilder::new();
    base.dir("etc/", &dir);
    base.file("etc/passwd", &m, b"root:x:0:0::/root:/bin/sh\n");
    base.dir("d/", &dir);
    base.file("d/lower", &m, b"from the base");
    let base = base.finish();
    let mut upper = TarBuilder::new();
    upper.pax(&[
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ("SCHILY.xattr.user.overlay.opaque", b"y"),
        ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
        ("SCHILY.xattr.user.note", b"kept"),
    ]);
    upper.dir("d/", &dir);
    upper.pax(&[
        ("SCHILY.xattr.trusted.overlay.metacopy", b""),
        ("SCHILY.xattr.user.overlay.redirect", b"/etc/passwd"),
    ]);
    upper.file("d/new", &m, b"from the upper layer");
    upper.pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")]);
    upper.dir("x/", &dir);
    let upper = upper.finish();
    let overlay_names = ["trusted.overlay.", "user.overlay."];
    for driver in ["overlay", "vfs"] {
        let cs = Cs::new();
        ok_with(&cs, driver, &["import-layer", "-n", "base"], &base);
        let id = first_line_of(&ok_with(
            &cs,
            driver,
            &["import-layer", "-n", "upper", "base"],
            &upper,
        ));
        assert_eq!(
            ok_bytes(&cs, driver, &["diff", "-u", "upper"]),
            upper,
            "{driver}: diff"
        );
        ok(&cs, driver, &["create-image", "-n", "img", "upper"]);
        let tree = PathBuf::from(ok(&cs, driver, &["mount", "-r", "img"]).trim());
        // No opaque effect, no redirect.
        let mut names: Vec<String> = std::fs::read_dir(tree.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["lower", "new"], "{driver}");
        assert_eq!(
            std::fs::read_dir(tree.join("x")).unwrap().count(),
            0,
            "{driver}"
        );
        assert_eq!(
            common::tree::xattrs(&tree.join("d"))
                .get("user.note")
                .map(Vec::as_slice),
            Some(&b"kept"[..]),
            "{driver}"
        );
        let materialized = match driver {
            "overlay" => cs.graph().join("overlay").join(&id).join("diff"),
            _ => tree.clone(),
        };
        let found = xattrs_named(&materialized, &overlay_names);
        assert!(found.is_empty(), "{driver}: {found:?}");
        ok(&cs, driver, &["unmount", "img"]);
    }
}

#[test]
fn a_volatile_containers_overlay_mount_is_volatile_and_others_are_not() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    let layer = first_line_of(&ok(&cs, "overlay", &["create-layer"]));
    let image = first_line_of(&ok(&cs, "overlay", &["create-image", &layer]));
    let options = |container: &str| {
        let path = first_line_of(&ok(&cs, "overlay", &["mount", container]));
        let table = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let line = table
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(path.as_str()))
            .unwrap_or_else(|| panic!("{path} is not mounted"))
            .to_string();
        ok(&cs, "overlay", &["unmount", container]);
        line.split(' ')
            .nth(3)
            .unwrap()
            .split(',')
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let volatile = first_line_of(&ok(
        &cs,
        "overlay",
        &["create-container", "--volatile", &image],
    ));
    let got = options(&volatile);
    // (Newer kernels show it as `fsync=volatile`.)
    let is_volatile = |o: &String| o == "volatile" || o == "fsync=volatile";
    assert!(got.iter().any(is_volatile), "{got:?}");
    let plain = first_line_of(&ok(&cs, "overlay", &["create-container", &image]));
    assert!(!options(&plain).iter().any(is_volatile));
}
