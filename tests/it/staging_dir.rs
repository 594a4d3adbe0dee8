//! `applydiff-using-staging-dir LAYER DIR` through the CLI, on both
//! drivers, with `enable_partial_images` set in `storage.conf` as
//! upstream's users set it: the staged directory (overlay's format: a 0:0
//! character device is a whiteout) becomes the layer's content, seen by
//! `mount` and `diff`; the directory itself is left as it was.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::{first_line_of, Cs};

fn drivers() -> Vec<&'static str> {
    let mut drivers = vec!["vfs"];
    if common::need_root("overlay") {
        drivers.push("overlay");
    }
    drivers
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
    for driver in drivers() {
        let cs = Cs::new();
        let conf = cs.dir.path().join("storage.conf");
        std::fs::write(
            &conf,
            "[storage]\n[storage.options.pull_options]\nenable_partial_images = \"true\"\n",
        )
        .unwrap();
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

#[test]
fn a_missing_staging_directory_or_layer_is_refused() {
    let cs = Cs::new();
    let layer = first_line_of(&cs.ok(&["create-layer"]));
    let missing = cs.dir.path().join("nothing-here");
    let err = cs.fails(
        &[
            "applydiff-using-staging-dir",
            &layer,
            missing.to_str().unwrap(),
        ],
        None,
    );
    assert!(err.contains("nothing-here"), "{err}");
    let staged = cs.dir.path().join("staged");
    stage(&staged);
    let err = cs.fails(
        &[
            "applydiff-using-staging-dir",
            "no-such-layer",
            staged.to_str().unwrap(),
        ],
        None,
    );
    assert!(err.contains("layer not known"), "{err}");
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
