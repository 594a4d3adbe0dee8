//! Rootless overlay: in a user namespace (where `trusted.*` attributes
//! cannot be set) layers are materialized with `user.overlay.*` opaque
//! markers and mounted with `userxattr`; whiteouts, opaque directories,
//! writes and `changes` work as they do for root.

use crate::common;

use std::process::Command;

use common::tar::{Meta, TarBuilder};
use common::Cs;

#[test]
fn overlay_works_rootless_in_a_user_namespace() {
    if !common::need_root("creating a user namespace as a stand-in for a rootless user") {
        return;
    }
    let cs = Cs::new();
    let m = Meta::default();
    let mut base = TarBuilder::new();
    base.dir("d/", &m);
    base.file("d/a", &m, b"a");
    base.file("d/b", &m, b"b");
    base.dir("o/", &m);
    base.file("o/x", &m, b"x");
    let mut change = TarBuilder::new();
    change.whiteout("d", "b");
    change.dir("o/", &m);
    change.opaque("o");
    change.file("o/y", &m, b"y");
    let dir = cs.dir.path();
    std::fs::write(dir.join("base.tar"), base.finish()).unwrap();
    std::fs::write(dir.join("change.tar"), change.finish()).unwrap();
    let script = r#"
set -e
cs() { "$B" --graph "$G" --run "$R" --storage-driver overlay "$@"; }
cs import-layer -n base -f "$D/base.tar" >/dev/null
cs import-layer -n top -f "$D/change.tar" base >/dev/null
cs create-image -n img top >/dev/null
cs create-container -n c img >/dev/null
M=$(cs mount c)
echo "files: $(cd "$M" && find . -type f | sort | tr '\n' ' ')"
echo written > "$M/written"
rm "$M/d/a"
cs changes c
cs unmount c
"#;
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", script])
        .env("B", env!("CARGO_BIN_EXE_containers-storage"))
        .env("G", cs.graph())
        .env("R", cs.run_root())
        .env("D", dir)
        .env("CONTAINERS_STORAGE_CONF", "/dev/null")
        .output()
        .expect("unshare runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("files: ./d/a ./o/y \n"),
        "the whiteout and the opaque directory hide lower files: {stdout}"
    );
    for change in ["Add \"/written\"", "Delete \"/d/a\""] {
        assert!(stdout.contains(change), "{change} in {stdout}");
    }
    let mut cmd = cs.command();
    cmd.args(["--storage-driver", "overlay", "layers", "--json"]);
    let out = common::run_command(cmd, None);
    let layers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top = layers
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["names"][0] == "top")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let opaque = cs.graph().join("overlay").join(&top).join("diff/o");
    let xattrs = common::tree::xattrs(&opaque);
    assert_eq!(
        xattrs.get("user.overlay.opaque").map(Vec::as_slice),
        Some(b"y".as_slice()),
        "{xattrs:?}"
    );
    assert!(!xattrs.contains_key("trusted.overlay.opaque"), "{xattrs:?}");
}

/// Without root, device nodes cannot be made: a layer that has one (and
/// a hardlink to it, as `tar` writes a second name of the same node)
/// still materializes, without them, and its diff is still the tar. As
/// root every command runs as `nobody`.
#[test]
fn a_device_node_and_its_hardlinks_are_skipped_without_root() {
    let cs = Cs::new();
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.char_dev("null", 1, 3, &m);
    t.hardlink("null2", "null", &m);
    t.hardlink("null3", "null2", &m);
    t.file("f", &m, b"f");
    let tar = t.finish();
    let run = |args: &[&str], input: Option<&[u8]>| {
        let mut cmd = cs.command_without_root();
        cmd.args(args);
        let out = common::run_command(cmd, input);
        common::expect_status(&out, args, 0);
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["import-layer", "-n", "dev"], Some(&tar));
    let tree = std::path::PathBuf::from(run(&["mount", "dev"], None).trim());
    let mut names: Vec<_> = std::fs::read_dir(&tree)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["f"]);
    run(&["unmount", "dev"], None);
    let diff = {
        let mut cmd = cs.command_without_root();
        cmd.args(["diff", "-u", "dev"]);
        common::run_command(cmd, None).stdout
    };
    assert!(diff == tar, "the diff is not the tar");
}

/// `unshare` runs a command as root of a user namespace that maps the
/// caller (without root: `nobody` as root runs it), and as it is with
/// the host's root; a command that fails fails it in upstream's words.
#[test]
fn unshare_runs_a_command_as_the_namespaces_root() {
    let cs = Cs::new();
    let run = |mut cmd: Command, args: &[&str]| {
        cmd.arg("unshare").args(args);
        common::run_command(cmd, None)
    };
    let uid = nix::unistd::geteuid().as_raw();
    let out = run(
        cs.command(),
        &["sh", "-c", "id -u; head -n1 /proc/self/uid_map"],
    );
    common::expect_status(&out, &["unshare"], 0);
    let lines: Vec<String> = common::stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines[0], "0", "{lines:?}");
    let first: Vec<String> = lines[1].split_whitespace().map(String::from).collect();
    if uid == 0 {
        // The host's own namespace.
        assert_eq!(first, ["0", "0", "4294967295"]);
    } else {
        assert_eq!(first[..2], ["0".to_string(), uid.to_string()]);
    }
    if uid == 0 {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        let out = run(
            cs.command_without_root(),
            &["sh", "-c", "id -u; head -n1 /proc/self/uid_map"],
        );
        common::expect_status(&out, &["unshare"], 0);
        let text = common::stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "0", "{lines:?}");
        let first: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(first, ["0", &nobody.uid.to_string(), "1"], "{lines:?}");
    }
    let out = run(cs.command(), &["sh", "-c", "exit 3"]);
    common::expect_status(&out, &["unshare"], 1);
    assert!(common::stderr(&out).contains("exit status 3"));
}
