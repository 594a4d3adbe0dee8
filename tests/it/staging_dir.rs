//! `applydiff-using-staging-dir LAYER DIR` through the CLI, with
//! `enable_partial_images` set in `storage.conf` as upstream's users set
//! it: on overlay the staged directory (overlay's format: a 0:0 character
//! device is a whiteout) becomes the layer's content, seen by `mount` and
//! `diff`, the directory itself left as it was, and an ID no layer has
//! makes that layer. Without the option, and on vfs, it is refused in
//! upstream's words.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::{first_line_of, Cs};

/// A `storage.conf` beside the store that enables partial images.
fn partial_conf(cs: &Cs) -> std::path::PathBuf {
    let conf = cs.dir.path().join("storage.conf");
    std::fs::write(
        &conf,
        "[storage]\n[storage.options.pull_options]\nenable_partial_images = \"true\"\n",
    )
    .unwrap();
    conf
}

/// `cs`'s command on `driver`, reading `conf` as its storage.conf.
fn with_conf(cs: &Cs, driver: &str, conf: &Path, args: &[&str]) -> Command {
    let mut cmd = cs.command();
    cmd.env("CONTAINERS_STORAGE_CONF", conf)
        .args(["--storage-driver", driver])
        .args(args);
    cmd
}

fn ok(cmd: Command) -> String {
    let out = common::run_command(cmd, None);
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        common::stdout(&out),
        common::stderr(&out)
    );
    common::stdout(&out)
}

/// A staged directory: a file in a subdirectory, a symlink, an
/// executable, and (as root) a whiteout.
fn stage(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/file"), b"staged content\n").unwrap();
    std::fs::write(dir.join("tool"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        dir.join("tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("sub/file", dir.join("link")).unwrap();
    if nix::unistd::geteuid().is_root() {
        nix::sys::stat::mknod(
            &dir.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
    }
}

#[test]
fn a_staged_directory_becomes_the_layers_content() {
    if !common::need_root("overlay") {
        return;
    }
    for driver in ["overlay"] {
        let cs = Cs::new();
        let conf = partial_conf(&cs);
        let staged = cs.dir.path().join("staged");
        stage(&staged);
        let layer = first_line_of(&ok(with_conf(&cs, driver, &conf, &["create-layer"])));
        ok(with_conf(
            &cs,
            driver,
            &conf,
            &[
                "applydiff-using-staging-dir",
                &layer,
                staged.to_str().unwrap(),
            ],
        ));
        // The staged directory is read, not moved.
        assert_eq!(
            std::fs::read(staged.join("sub/file")).unwrap(),
            b"staged content\n"
        );

        let mnt = first_line_of(&ok(with_conf(&cs, driver, &conf, &["mount", &layer])));
        let mnt = Path::new(&mnt);
        assert_eq!(
            std::fs::read(mnt.join("sub/file")).unwrap(),
            b"staged content\n",
            "{driver}"
        );
        assert_eq!(
            std::fs::read_link(mnt.join("link")).unwrap(),
            Path::new("sub/file")
        );
        assert_eq!(
            std::fs::metadata(mnt.join("tool")).unwrap().mode() & 0o777,
            0o755
        );
        assert!(
            !mnt.join("gone").exists(),
            "{driver}: a whiteout is no file"
        );
        ok(with_conf(&cs, driver, &conf, &["unmount", &layer]));

        // diff carries it: the files, and the whiteout as `.wh.gone`.
        let tar = common::run_command(with_conf(&cs, driver, &conf, &["diff", "-u", &layer]), None);
        assert!(tar.status.success(), "{}", common::stderr(&tar));
        let names = tar_names(&tar.stdout);
        for want in ["sub/", "sub/file", "tool", "link"] {
            assert!(
                names.iter().any(|n| n == want),
                "{driver}: {want} in {names:?}"
            );
        }
        if nix::unistd::geteuid().is_root() {
            assert!(names.iter().any(|n| n == ".wh.gone"), "{driver}: {names:?}");
        }
    }
}

/// As upstream's: without `enable_partial_images`, and on vfs, nothing
/// is applied; on overlay a missing directory is refused, and a layer ID
/// no layer has makes that layer (but not when the directory is missing).
#[test]
fn staging_needs_partial_images_and_overlay_and_makes_an_unknown_layer() {
    let cs = Cs::new();
    let staged = cs.dir.path().join("staged");
    stage(&staged);
    let staged = staged.to_str().unwrap();
    let layer = first_line_of(&cs.ok(&["create-layer"]));
    let err = cs.fails(&["applydiff-using-staging-dir", &layer, staged], None);
    assert!(err.contains("partial images are disabled"), "{err}");
    let conf = partial_conf(&cs);
    let out = common::run_command(
        with_conf(
            &cs,
            "vfs",
            &conf,
            &["applydiff-using-staging-dir", &layer, staged],
        ),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("graph driver vfs does not support partial pull"),
        "{err}"
    );
    assert_eq!(cs.ok(&["diffsize", &layer]), "0\n");
    if !common::need_root("overlay") {
        return;
    }
    let missing = cs.dir.path().join("nothing-here");
    let args = [
        "applydiff-using-staging-dir",
        "fresh",
        missing.to_str().unwrap(),
    ];
    let out = common::run_command(with_conf(&cs, "overlay", &conf, &args), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr(&out).contains("nothing-here"));
    assert!(!cs.run(&["exists", "-l", "fresh"], None).status.success());
    ok(with_conf(
        &cs,
        "overlay",
        &conf,
        &["applydiff-using-staging-dir", "fresh", staged],
    ));
    let tar = common::run_command(
        with_conf(&cs, "overlay", &conf, &["diff", "-u", "fresh"]),
        None,
    );
    assert!(tar_names(&tar.stdout).iter().any(|n| n == "sub/file"));
}

/// The names in an uncompressed tar, via `tar -t`.
fn tar_names(tar: &[u8]) -> Vec<String> {
    use std::io::Write;
    let mut child = Command::new("tar")
        .arg("-t")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(tar).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}
