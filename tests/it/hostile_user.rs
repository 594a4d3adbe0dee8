//! Other local users against a store, through the real binary:
//! - as root, under umask 022 and 000, a store is filled (an imported
//!   layer holding a 0600 secret, images and containers with big data,
//!   an overlay container mounted, vfs trees materialized, live layers);
//!   then `nobody` (a real process, by `setpriv`) tries to list every
//!   directory and read and write every file under the graph root and
//!   the run root, and to plant symbolic links at the lock and record
//!   paths and in every directory. Nothing succeeds, every directory the
//!   store made is 0700 and every file 0600 (materialized trees and
//!   objects keep the tar's modes), and root's later commands leave a
//!   root-owned file untouched. Root only; elsewhere it skips, saying why.
//! - a symbolic link at a lock, record or store directory path (as an
//!   older store with loose modes may hold) is refused with an error
//!   naming it, and what it points at is left untouched;
//! - a store an older version left open to others is given 0700 again
//!   when opened for writing.

use crate::common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::tar::{Meta, TarBuilder};
use common::Cs;

const SECRET: &str = "root:$6$the-secret-hash-of-the-image:19000:0:99999:7:::";

/// A layer with a 0600 secret file, a 0700 directory and ordinary files.
fn secret_tar() -> Vec<u8> {
    let dir = Meta {
        mode: 0o755,
        ..Meta::default()
    };
    let mut t = TarBuilder::new();
    t.dir("./", &dir);
    t.dir("etc/", &dir);
    t.file(
        "etc/shadow",
        &Meta {
            mode: 0o600,
            ..Meta::default()
        },
        SECRET.as_bytes(),
    );
    t.dir(
        "root/",
        &Meta {
            mode: 0o700,
            ..Meta::default()
        },
    );
    t.file("root/.history", &Meta::default(), b"secret commands\n");
    let mut rng = common::Rng(7);
    let mut big = vec![0u8; 300 << 10];
    rng.fill(&mut big);
    t.file("usr/lib/big.so", &Meta::default(), &big);
    t.finish()
}

/// A store run through `sh` with a given umask.
struct Store {
    dir: tempfile::TempDir,
    umask: &'static str,
}

impl Drop for Store {
    /// What a failed test left mounted under the store is detached, so
    /// that the directory can be removed.
    fn drop(&mut self) {
        for mount in crate::harness::mounts_under(self.dir.path()) {
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Store {
    fn new(umask: &'static str) -> Store {
        let dir = tempfile::tempdir().expect("temp dir");
        // Only the store's own modes may keep others out.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        Store { dir, umask }
    }

    fn graph(&self) -> PathBuf {
        self.dir.path().join("graph")
    }

    fn run_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn run(&self, driver: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "umask \"$CS_UMASK\" && exec \"$@\"", "sh"])
            .arg(env!("CARGO_BIN_EXE_containers-storage"))
            .arg("--graph")
            .arg(self.graph())
            .arg("--run")
            .arg(self.run_root())
            .args(["--storage-driver", driver])
            .args(args)
            .env("CS_UMASK", self.umask)
            .env_remove("STORAGE_DRIVER")
            .env_remove("STORAGE_OPTS")
            .env("CONTAINERS_STORAGE_CONF", "/dev/null");
        common::run_command(cmd, None)
    }

    fn ok(&self, driver: &str, args: &[&str]) -> String {
        let out = self.run(driver, args);
        common::expect_status(&out, args, 0);
        common::stdout(&out)
    }
}

/// Every path under `dir` (itself included), not following links.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return;
    }
    for entry in fs::read_dir(dir).unwrap() {
        walk(&entry.unwrap().path(), out);
    }
}

/// Whether `path` lies in a tree of layer content (whose modes are the
/// tar's) or is a file object (whose modes are the entries').
fn in_content(store: &Store, path: &Path) -> bool {
    let graph = store.graph();
    let Ok(rel) = path.strip_prefix(&graph) else {
        return false;
    };
    let parts: Vec<_> = rel.iter().map(|p| p.to_string_lossy()).collect();
    match parts.as_slice() {
        [drv, _, tree, ..] if drv == "overlay" && ["diff", "merged", "work"].contains(&&**tree) => {
            true
        }
        [drv, dir, _, ..] if drv == "vfs" && dir == "dir" => true,
        [objects, shard, _] if objects == "objects" && shard != "tmp" => true,
        _ => false,
    }
}

/// As `nobody`: lists, reads and appends to every path given on stdin and
/// plants a link in every directory, then at the given lock and record
/// paths; prints what succeeded.
const ATTACK: &str = r#"
tried=0
while IFS= read -r p; do
  tried=$((tried + 1))
  ls -- "$p" >/dev/null 2>&1 && echo "LISTED $p"
  cat -- "$p" >/dev/null 2>&1 && echo "READ $p"
  (: >> "$p") 2>/dev/null && echo "WROTE $p"
  ln -s "$TARGET" "$p/planted" 2>/dev/null && echo "PLANTED $p/planted"
done
for p in "$@"; do
  ln -sfn "$TARGET" "$p" 2>/dev/null && echo "PLANTED $p"
  mkdir -p "$(dirname "$p")" 2>/dev/null && [ -O "$(dirname "$p")" ] && echo "MADE $(dirname "$p")"
done
tail -c +9 "$G"/chunks/packs/*.pack 2>/dev/null | zstd -dc 2>/dev/null
cat "$G"/overlay/*/diff/etc/shadow "$G"/vfs/dir/*/etc/shadow 2>/dev/null
echo "tried $tried"
"#;

fn setpriv_available() -> bool {
    if Command::new("setpriv").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have setpriv (util-linux)"
    );
    eprintln!("skipped: setpriv is not installed");
    false
}

#[test]
fn another_user_can_neither_read_nor_redirect_a_root_store() {
    if !common::need_root("switching to an unprivileged user") || !setpriv_available() {
        return;
    }
    for umask in ["022", "000"] {
        attack_a_root_store(umask);
    }
}

fn attack_a_root_store(umask: &'static str) {
    let s = Store::new(umask);
    let tar = s.dir.path().join("secret.tar");
    fs::write(&tar, secret_tar()).unwrap();
    let tar = tar.to_str().unwrap();
    let data = s.dir.path().join("data");
    fs::write(&data, b"{\"schemaVersion\": 2, \"secret\": \"big data\"}").unwrap();
    let data = data.to_str().unwrap();
    // A root-owned file the attacker would like root to overwrite.
    let target = s.dir.path().join("precious");
    fs::write(&target, b"root's own file\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();

    for drv in ["overlay", "vfs"] {
        s.ok(drv, &["import-layer", "-n", "base", "-f", tar]);
        s.ok(drv, &["set-layer-data", "-f", data, "base", "notes"]);
        s.ok(drv, &["create-image", "-n", "img", "base"]);
        s.ok(drv, &["set-image-data", "-f", data, "img", "manifest"]);
        s.ok(drv, &["create-container", "-n", "c", "img"]);
        s.ok(drv, &["set-container-data", "-f", data, "c", "state"]);
        for cmd in ["get-image-dir", "get-image-run-dir"] {
            s.ok(drv, &[cmd, "img"]);
        }
        for cmd in ["get-container-dir", "get-container-run-dir"] {
            s.ok(drv, &[cmd, "c"]);
        }
        s.ok(drv, &["create-layer", "-n", "live"]);
        s.ok(drv, &["mount", "c"]);
        s.ok(drv, &["mount", "live"]);
    }
    let merged = PathBuf::from(s.ok("overlay", &["mount", "c"]).trim());
    assert_eq!(
        fs::read_to_string(merged.join("etc/shadow")).unwrap(),
        SECRET,
        "the secret is in the mounted container"
    );

    let mut paths = Vec::new();
    walk(&s.graph(), &mut paths);
    walk(&s.run_root(), &mut paths);
    // The store's own directories and files have its modes, whatever the
    // umask; content keeps the tar's.
    for p in &paths {
        if in_content(&s, p) {
            continue;
        }
        let m = fs::symlink_metadata(p).unwrap();
        if m.file_type().is_symlink() {
            continue;
        }
        let want = if m.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(
            m.mode() & 0o7777,
            want,
            "umask {umask}: {} has mode {:o}",
            p.display(),
            m.mode() & 0o7777
        );
    }
    let secrets: Vec<_> = paths.iter().filter(|p| p.ends_with("etc/shadow")).collect();
    assert!(
        secrets.len() >= 3,
        "the secret is in diff, merged and vfs trees: {secrets:?}"
    );

    let g = s.graph();
    let r = s.run_root();
    let mut plant: Vec<PathBuf> = [
        "storage.lock",
        "gc.lock",
        "overlay-layers/layers.lock",
        "overlay-layers/layers.json",
        "overlay-layers/.incomplete/next.lock",
        "overlay-images/images.lock",
        "overlay-images/images.json",
        "overlay-containers/containers.lock",
        "overlay-containers/containers.json",
        "vfs-layers/layers.lock",
        "chunks/sweep.lock",
        "chunks/config.json",
        "chunks/tmp/next.pack",
        "objects/.lock",
        "objects/tmp/next",
        "overlay-layers/.unsynced/next",
        "manifests/next",
        "overlay-layers/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/notes",
    ]
    .iter()
    .map(|p| g.join(p))
    .collect();
    plant.extend(
        [
            "overlay-layers/mountpoints.lock",
            "overlay-layers/mountpoints.json",
            "vfs-layers/mountpoints.lock",
        ]
        .iter()
        .map(|p| r.join(p)),
    );
    let list: String = paths
        .iter()
        .map(|p| format!("{}\n", p.to_str().unwrap()))
        .collect();
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sh",
        "-c",
        ATTACK,
        "sh",
    ])
    .args(&plant)
    .env("TARGET", &target)
    .env("G", &g);
    let out = common::run_command(cmd, Some(list.as_bytes()));
    let said = common::stdout(&out);
    assert!(
        said.contains(&format!("tried {}\n", paths.len())),
        "the attack ran over every path: {said}\nstderr: {}",
        common::stderr(&out)
    );
    let succeeded: Vec<&str> = said.lines().filter(|l| !l.starts_with("tried ")).collect();
    assert!(
        succeeded.is_empty(),
        "umask {umask}: as nobody:\n{}",
        succeeded.join("\n")
    );
    assert!(!said.contains("the-secret-hash"), "{said}");

    // Root goes on using the store; the file nobody aimed at stays as it is.
    let before = fs::read(&target).unwrap();
    s.ok(
        "overlay",
        &[
            "create-layer",
            "-i",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ],
    );
    s.ok(
        "overlay",
        &["set-layer-data", "-f", data, "0123456789abcdef", "notes"],
    );
    s.ok("overlay", &["import-layer", "-n", "again", "-f", tar]);
    s.ok("overlay", &["create-image", "-n", "img2", "again"]);
    s.ok(
        "overlay",
        &["set-image-data", "-f", data, "img2", "manifest"],
    );
    s.ok("vfs", &["create-layer"]);
    for drv in ["overlay", "vfs"] {
        s.ok(drv, &["unmount", "c"]);
        s.ok(drv, &["unmount", "live"]);
    }
    s.ok("overlay", &["unmount", "c"]);
    s.ok("overlay", &["gc"]);
    assert_eq!(fs::read(&target).unwrap(), before, "umask {umask}");
    let m = fs::symlink_metadata(&target).unwrap();
    assert!(m.is_file() && m.mode() & 0o7777 == 0o644 && m.uid() == 0);
}

/// One planted link: where, what then runs, and whether that must fail.
struct Plant {
    /// Relative to the graph root, or to the run root with `run`.
    path: &'static str,
    run: bool,
    /// A directory link (pointing at an empty directory).
    dir: bool,
    command: &'static [&'static str],
}

const PLANTS: &[Plant] = &[
    Plant {
        path: "vfs-layers/layers.lock",
        run: false,
        dir: false,
        command: &["create-layer"],
    },
    Plant {
        path: "vfs-layers/layers.json",
        run: false,
        dir: false,
        command: &["create-layer"],
    },
    Plant {
        path: "vfs-images/images.lock",
        run: false,
        dir: false,
        command: &["images"],
    },
    Plant {
        path: "vfs-images/images.json",
        run: false,
        dir: false,
        command: &["create-image", "base"],
    },
    Plant {
        path: "vfs-containers/containers.json",
        run: false,
        dir: false,
        command: &["create-container", "img"],
    },
    Plant {
        path: "storage.lock",
        run: false,
        dir: false,
        command: &["layers"],
    },
    Plant {
        path: "gc.lock",
        run: false,
        dir: false,
        command: &["gc"],
    },
    Plant {
        path: "chunks/sweep.lock",
        run: false,
        dir: false,
        command: &["gc"],
    },
    Plant {
        path: "objects/.lock",
        run: false,
        dir: false,
        command: &["mount", "base"],
    },
    Plant {
        path: "vfs-layers/mountpoints.lock",
        run: true,
        dir: false,
        command: &["mount", "base"],
    },
    Plant {
        path: "vfs-layers/mountpoints.json",
        run: true,
        dir: false,
        command: &["mount", "base"],
    },
    Plant {
        path: "vfs-layers/.incomplete",
        run: false,
        dir: true,
        command: &["create-layer"],
    },
    Plant {
        path: "vfs-layers",
        run: false,
        dir: true,
        command: &["layers"],
    },
    Plant {
        path: "chunks",
        run: false,
        dir: true,
        command: &["layers"],
    },
    Plant {
        path: "vfs/dir",
        run: false,
        dir: true,
        command: &["layers"],
    },
];

#[test]
fn a_symlink_at_a_lock_or_record_path_is_refused_and_its_target_untouched() {
    let mut tar = TarBuilder::new();
    tar.file("a", &Meta::default(), b"a\n");
    let tar = tar.finish();
    for plant in PLANTS {
        let cs = Cs::new();
        cs.import(&tar, &["-n", "base"]);
        cs.ok(&["create-image", "-n", "img", "base"]);
        let root = if plant.run { cs.run_root() } else { cs.graph() };
        let at = root.join(plant.path);
        let target = cs.dir.path().join("target");
        if plant.dir {
            fs::create_dir(&target).unwrap();
        } else {
            fs::write(&target, b"precious\n").unwrap();
            fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        }
        let before = fs::symlink_metadata(&target).unwrap();
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&at).unwrap(),
            Ok(_) => fs::remove_file(&at).unwrap(),
            // As an older store may have it.
            Err(_) => fs::create_dir_all(at.parent().unwrap()).unwrap(),
        }
        std::os::unix::fs::symlink(&target, &at).unwrap();

        let err = cs.fails(plant.command, None);
        assert!(
            err.contains(&format!("{}: is a symbolic link", at.display())),
            "{}: {:?}: {err}",
            plant.path,
            plant.command
        );
        assert!(fs::symlink_metadata(&at).unwrap().file_type().is_symlink());
        let after = fs::symlink_metadata(&target).unwrap();
        if plant.dir {
            let inside: Vec<_> = fs::read_dir(&target).unwrap().collect();
            assert!(inside.is_empty(), "{}: {inside:?}", plant.path);
        } else {
            assert_eq!(fs::read(&target).unwrap(), b"precious\n", "{}", plant.path);
            assert_eq!(after.mode(), before.mode(), "{}", plant.path);
        }
        assert_eq!(after.mtime(), before.mtime(), "{}", plant.path);
        assert_eq!(after.mtime_nsec(), before.mtime_nsec(), "{}", plant.path);
    }
}

#[test]
fn a_store_left_open_to_others_is_closed_when_opened_for_writing() {
    let cs = Cs::new();
    let mut tar = TarBuilder::new();
    tar.file("a", &Meta::default(), b"a\n");
    let id = cs.import(&tar.finish(), &["-n", "base"]);
    cs.ok(&["create-image", "-n", "img", "base"]);
    cs.ok(&["mount", "base"]);
    cs.ok(&["unmount", "base"]);
    // As an older version left it under umask 000 (with the directory of
    // its import markers, which imports no longer make).
    fs::create_dir_all(cs.graph().join("vfs-layers/.incomplete")).unwrap();
    let mut paths = Vec::new();
    walk(&cs.graph(), &mut paths);
    walk(&cs.run_root(), &mut paths);
    let tree = cs.graph().join("vfs/dir").join(&id);
    for p in &paths {
        let m = fs::symlink_metadata(p).unwrap();
        if !m.file_type().is_symlink() && !p.starts_with(&tree) {
            let mode = if m.is_dir() { 0o777 } else { 0o666 };
            fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    cs.ok(&["layers"]);
    let mode = |p: PathBuf| fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(
        mode(cs.graph()),
        0o755,
        "the graph root loses its write bits"
    );
    assert_eq!(
        mode(cs.run_root()),
        0o755,
        "the run root loses its write bits"
    );
    for dir in [
        "vfs-layers",
        "vfs-layers/.incomplete",
        "vfs-images",
        "vfs-containers",
        "vfs",
        "vfs/dir",
        "vfs-layers/.used",
        "chunks",
        "chunks/packs",
        "chunks/tmp",
        "manifests",
        "objects",
        "objects/tmp",
    ] {
        assert_eq!(mode(cs.graph().join(dir)), 0o700, "{dir}");
    }
    assert_eq!(mode(cs.run_root().join("vfs-layers")), 0o700);
    // The tree keeps its own modes.
    assert_eq!(mode(tree), 0o755);
}
