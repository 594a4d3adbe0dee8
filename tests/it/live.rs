//! Live layers (root only; CI is root): the scripted scenario upstream's
//! test helper runs — create a layer, mount it, create and remove files
//! and directories, unmount; a child layer on it; three levels — gives the
//! expected `changes`, and each layer's `diff` applied to fresh layers
//! rebuilds the same tree. For both drivers.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::tree::{differences, snapshot};
use common::{first_line_of, Cs};

struct Driver<'a> {
    cs: &'a Cs,
    name: &'a str,
}

impl Driver<'_> {
    fn ok(&self, args: &[&str]) -> String {
        let mut cmd = self.cs.command();
        cmd.args(["--storage-driver", self.name]).args(args);
        let out = common::run_command(cmd, None);
        common::expect_status(&out, args, 0);
        String::from_utf8(out.stdout).unwrap()
    }

    fn ok_input(&self, args: &[&str], input: &[u8]) -> String {
        let mut cmd = self.cs.command();
        cmd.args(["--storage-driver", self.name]).args(args);
        let out = common::run_command(cmd, Some(input));
        common::expect_status(&out, args, 0);
        String::from_utf8(out.stdout).unwrap()
    }

    /// `shutdown -f` on a store with mounts: they are unmounted, and the
    /// command fails as upstream's does.
    fn shutdown_with_mounts(&self) {
        let mut cmd = self.cs.command();
        cmd.args(["--storage-driver", self.name, "shutdown", "-f"]);
        let out = common::run_command(cmd, None);
        common::expect_status(&out, &["shutdown", "-f"], 1);
        let table = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let graph = self.cs.graph().display().to_string();
        assert!(!table.contains(&graph), "{table}");
    }

    fn mount(&self, id: &str) -> PathBuf {
        PathBuf::from(self.ok(&["mount", id]).trim())
    }

    fn changes(&self, id: &str) -> Vec<String> {
        self.ok(&["changes", id])
            .lines()
            .map(String::from)
            .collect()
    }
}

fn tree_without_dir_times(root: &Path) -> std::collections::BTreeMap<PathBuf, common::tree::Node> {
    let mut s = snapshot(root);
    for n in s.values_mut().filter(|n| n.kind == "dir") {
        n.mtime = (0, 0);
    }
    s
}

fn scenario(driver: &str) {
    let cs = Cs::new();
    let d = Driver {
        cs: &cs,
        name: driver,
    };

    // Level 1: a fresh layer.
    let l1 = first_line_of(&d.ok(&["create-layer"]));
    let m = d.mount(&l1);
    fs::write(m.join("a"), b"level one").unwrap();
    fs::create_dir_all(m.join("dir/sub")).unwrap();
    fs::write(m.join("dir/b"), b"b").unwrap();
    fs::write(m.join("dir/sub/c"), b"c").unwrap();
    fs::write(m.join("tmp-file"), b"removed before unmount").unwrap();
    fs::remove_file(m.join("tmp-file")).unwrap();
    std::os::unix::fs::symlink("a", m.join("s")).unwrap();
    d.ok(&["unmount", &l1]);
    assert_eq!(
        d.changes(&l1),
        [
            "Add \"/a\"",
            "Add \"/dir\"",
            "Add \"/dir/b\"",
            "Add \"/dir/sub\"",
            "Add \"/dir/sub/c\"",
            "Add \"/s\""
        ],
        "{driver} level 1"
    );

    // Level 2: a child sees its parent, changes some of it.
    let l2 = first_line_of(&d.ok(&["create-layer", &l1]));
    let m = d.mount(&l2);
    assert_eq!(fs::read(m.join("dir/sub/c")).unwrap(), b"c");
    fs::write(m.join("a"), b"level two").unwrap();
    fs::remove_file(m.join("dir/b")).unwrap();
    fs::write(m.join("dir/d"), b"d").unwrap();
    d.ok(&["unmount", &l2]);
    assert_eq!(
        d.changes(&l2),
        [
            "Modify \"/a\"",
            "Modify \"/dir\"",
            "Delete \"/dir/b\"",
            "Add \"/dir/d\""
        ],
        "{driver} level 2"
    );

    // Level 3: remove a whole directory, add a file.
    let l3 = first_line_of(&d.ok(&["create-layer", &l2]));
    let m = d.mount(&l3);
    assert_eq!(fs::read(m.join("a")).unwrap(), b"level two");
    assert!(!m.join("dir/b").exists());
    fs::remove_dir_all(m.join("dir")).unwrap();
    fs::write(m.join("e"), b"e").unwrap();
    d.ok(&["unmount", &l3]);
    assert_eq!(
        d.changes(&l3),
        ["Delete \"/dir\"", "Add \"/e\""],
        "{driver} level 3"
    );
    assert_eq!(d.ok(&["diffsize", &l3]).trim(), "1");

    // Each diff applied to a fresh chain rebuilds the same tree.
    let mut parent: Option<String> = None;
    for layer in [&l1, &l2, &l3] {
        let tar = {
            let mut cmd = cs.command();
            cmd.args(["--storage-driver", driver, "diff", "-u", layer]);
            let out = common::run_command(cmd, None);
            common::expect_status(&out, &["diff", layer], 0);
            out.stdout
        };
        let mut args = vec!["create-layer"];
        if let Some(p) = &parent {
            args.push(p);
        }
        let fresh = first_line_of(&d.ok(&args));
        d.ok_input(&["applydiff", &fresh], &tar);
        parent = Some(fresh);
    }
    let rebuilt = d.mount(parent.as_ref().unwrap());
    let original = d.mount(&l3);
    let diff = differences(
        &tree_without_dir_times(&original),
        &tree_without_dir_times(&rebuilt),
    );
    assert!(diff.is_empty(), "{driver}:\n{}", diff.join("\n"));
    d.shutdown_with_mounts();
}

#[test]
fn the_upstream_scenario_on_overlay() {
    if common::need_root("mounting live layers") {
        scenario("overlay");
    }
}

#[test]
fn the_upstream_scenario_on_vfs() {
    if common::need_root("mounting live layers") {
        scenario("vfs");
    }
}

fn copy_scenario(driver: &str) {
    let cs = Cs::new();
    let d = Driver {
        cs: &cs,
        name: driver,
    };
    let src = cs.dir.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("one"), b"1").unwrap();
    fs::write(src.join("sub/two"), b"2").unwrap();
    let mut base = common::tar::TarBuilder::new();
    base.dir(
        "etc/",
        &common::tar::Meta {
            mode: 0o755,
            ..Default::default()
        },
    );
    base.file("etc/os-release", &common::tar::Meta::default(), b"base os");
    let sealed = first_line_of(&d.ok_input(&["import-layer"], &base.finish()));
    let live = first_line_of(&d.ok(&["create-layer", &sealed]));

    d.ok(&[
        "copy",
        "--chown",
        "1234:99",
        src.to_str().unwrap(),
        &format!("{live}:/dst"),
    ]);
    d.ok(&[
        "copy",
        &format!("{sealed}:/etc/os-release"),
        &format!("{live}:/dst/sub"),
    ]);
    let m = d.mount(&live);
    assert_eq!(fs::read(m.join("dst/one")).unwrap(), b"1");
    assert_eq!(fs::read(m.join("dst/sub/two")).unwrap(), b"2");
    assert_eq!(fs::read(m.join("dst/sub/os-release")).unwrap(), b"base os");
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(m.join("dst/sub/two")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 99));
    // A symlink in the layer never leads a copy outside it.
    std::os::unix::fs::symlink(cs.dir.path(), m.join("evil")).unwrap();
    d.ok(&["unmount", &live]);
    let changes = d.changes(&live);
    assert!(
        changes.contains(&"Add \"/dst/sub/os-release\"".to_string()),
        "{changes:?}"
    );
    let out = {
        let mut cmd = cs.command();
        cmd.args(["--storage-driver", driver, "copy"])
            .arg(src.join("one"))
            .arg(format!("{live}:/evil/escaped"));
        common::run_command(cmd, None)
    };
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("symlink"));
    assert!(!cs.dir.path().join("escaped").exists());
    // A pool-backed layer takes the copy too, as upstream's layers do:
    // it becomes directory-backed, its recorded digest unchanged.
    let before = d.ok(&["layer", "--json", &sealed]);
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    d.ok(&[
        "copy",
        src.join("one").to_str().unwrap(),
        &format!("{sealed}:/x"),
    ]);
    let after: serde_json::Value =
        serde_json::from_str(&d.ok(&["layer", "--json", &sealed])).unwrap();
    assert_eq!(after[0]["diff-digest"], before[0]["diff-digest"]);
    assert_eq!(after[0]["sealed"], serde_json::Value::Null);
    assert!(d.ok(&["changes", &sealed]).contains("/x"));
    d.ok(&["shutdown", "-f"]);
}

#[test]
fn copy_into_live_layers_on_overlay() {
    if common::need_root("mounting live layers") {
        copy_scenario("overlay");
    }
}

#[test]
fn copy_into_live_layers_on_vfs() {
    if common::need_root("mounting live layers") {
        copy_scenario("vfs");
    }
}

/// An xattr value of any length in a live layer's directory is in its
/// `diff` (one longer than 256 bytes was left out).
#[test]
fn a_live_layers_diff_keeps_long_xattr_values() {
    let cs = Cs::new();
    let d = Driver {
        cs: &cs,
        name: "vfs",
    };
    let long: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut tar = common::tar::TarBuilder::new();
    tar.pax_xattr_file(
        "f",
        &[("user.long", &long), ("user.short", b"y")],
        "1700000000.5",
        &common::tar::Meta::default(),
        b"content",
    );
    let live = first_line_of(&d.ok(&["create-layer"]));
    // Content first, so that the layer stays live and takes the tar
    // into its directory.
    let host = cs.dir.path().join("host");
    fs::write(&host, b"host").unwrap();
    d.ok(&["copy", host.to_str().unwrap(), &format!("{live}:/host")]);
    d.ok_input(&["applydiff", &live], &tar.finish());
    let dir = cs.graph().join(format!("vfs/dir/{live}"));
    if common::tree::xattrs(&dir.join("f")).get("user.long") != Some(&long) {
        eprintln!("skipped: this filesystem keeps no user xattrs");
        return;
    }
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", "vfs", "diff", "-u", &live]);
    let out = common::run_command(cmd, None);
    common::expect_status(&out, &["diff", &live], 0);
    let has = |needle: &[u8]| out.stdout.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"SCHILY.xattr.user.short=y"));
    assert!(has(&[&b"SCHILY.xattr.user.long="[..], &long].concat()));
}
