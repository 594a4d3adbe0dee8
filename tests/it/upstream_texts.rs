//! Error texts scripts written for upstream's tool match on: junk given
//! to `import-layer` or `applydiff`, plain or compressed, fails with
//! `invalid tar header` or `unexpected EOF` (Go's words), followed by our
//! own detail (the layer and the offset). Where the Go CLI is installed,
//! the same input is given to it too, so the two are seen to agree.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::tar::every_kind;
use common::{compress_with, random_bytes, Cs};

const GO_CLI: &str = "/usr/bin/containers-storage";

/// Junk inputs and the phrase upstream's error holds for each.
fn junk() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut garbage = random_bytes(7, 4096);
    garbage[0] = b'x'; // no compression magic
    let tar = every_kind();
    vec![
        ("garbage", garbage.clone(), "invalid tar header"),
        ("short text", b"hello world\n".to_vec(), "unexpected EOF"),
        (
            "gzip of garbage",
            compress_with("gzip", &garbage),
            "invalid tar header",
        ),
        (
            "zstd of garbage",
            compress_with("zstd", &garbage),
            "invalid tar header",
        ),
        (
            "cut mid header",
            tar[..5 * 512 + 100].to_vec(),
            "unexpected EOF",
        ),
        (
            "cut gzip",
            {
                let gz = compress_with("gzip", &tar);
                gz[..gz.len() / 2].to_vec()
            },
            "unexpected EOF",
        ),
        (
            "cut zstd",
            {
                let z = compress_with("zstd", &random_bytes(9, 200_000));
                z[..z.len() / 2].to_vec()
            },
            "unexpected EOF",
        ),
    ]
}

fn drivers() -> Vec<&'static str> {
    let mut drivers = vec!["vfs"];
    if common::need_root("overlay") {
        drivers.push("overlay");
    }
    drivers
}

/// Runs the Go CLI's `cmd -f FILE positionals...` on `input`; returns its
/// stderr (it must fail).
fn go_cli_says(dir: &Path, driver: &str, cmd: &str, positionals: &[&str], input: &[u8]) -> String {
    let file = dir.join("input");
    std::fs::write(&file, input).unwrap();
    let out = Command::new(GO_CLI)
        .arg("--graph")
        .arg(dir.join("graph"))
        .arg("--run")
        .arg(dir.join("run"))
        .args(["--storage-driver", driver])
        .arg(cmd)
        .arg("-f")
        .arg(&file)
        .args(positionals)
        .output()
        .unwrap();
    assert!(!out.status.success(), "Go CLI took junk: {cmd}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn junk_to_import_layer_says_what_upstream_says() {
    let go = Path::new(GO_CLI).exists() && common::need_root("the Go CLI (it chowns its store)");
    for driver in drivers() {
        let cs = Cs::new();
        let go_dir = common::TempRoot::new();
        for (what, input, phrase) in junk() {
            let out = cs.run(&["--storage-driver", driver, "import-layer"], Some(&input));
            assert!(!out.status.success(), "{driver} {what}: junk was taken");
            let err = common::stderr(&out);
            assert!(err.contains(phrase), "{driver} {what}: {err}");
            assert!(
                err.contains("import-layer: layer "),
                "{driver} {what}: {err}"
            );
            // Only a compressed stream cut short has no tar offset.
            if !what.starts_with("cut gzip") && !what.starts_with("cut zstd") {
                assert!(err.contains("tar offset "), "{driver} {what}: {err}");
            }
            assert_eq!(cs.layer_ids(), Vec::<String>::new(), "{driver} {what}");
            if go {
                let theirs = go_cli_says(go_dir.path(), driver, "import-layer", &[], &input);
                assert!(theirs.contains(phrase), "Go CLI, {driver} {what}: {theirs}");
            }
        }
    }
}

#[test]
fn junk_to_applydiff_says_what_upstream_says() {
    let go = Path::new(GO_CLI).exists() && common::need_root("the Go CLI (it chowns its store)");
    for driver in drivers() {
        let cs = Cs::new();
        let layer = common::first_line_of(&cs.ok(&["--storage-driver", driver, "create-layer"]));
        let go_dir = common::TempRoot::new();
        let go_layer = go.then(|| {
            let out = Command::new(GO_CLI)
                .arg("--graph")
                .arg(go_dir.path().join("graph"))
                .arg("--run")
                .arg(go_dir.path().join("run"))
                .args(["--storage-driver", driver, "create-layer"])
                .output()
                .unwrap();
            common::first_line_of(&common::stdout(&out))
        });
        for (what, input, phrase) in junk() {
            let out = cs.run(
                &["--storage-driver", driver, "applydiff", &layer],
                Some(&input),
            );
            assert!(!out.status.success(), "{driver} {what}: junk was taken");
            let err = common::stderr(&out);
            assert!(err.contains(phrase), "{driver} {what}: {err}");
            assert!(
                err.contains(&format!("layer {layer}")),
                "{driver} {what}: {err}"
            );
            if let Some(go_layer) = &go_layer {
                let theirs = go_cli_says(go_dir.path(), driver, "applydiff", &[go_layer], &input);
                assert!(theirs.contains(phrase), "Go CLI, {driver} {what}: {theirs}");
            }
        }
    }
}

/// What a lookup that finds nothing, and other refusals scripts match
/// on, say: upstream's words, with the exit code 1. Where the Go CLI is
/// installed, each is asked of it too, on a store with the same names.
#[test]
fn refusals_say_what_upstream_says() {
    let go = Path::new(GO_CLI).exists() && common::need_root("the Go CLI (it chowns its store)");
    let cases: &[(&[&str], &str)] = &[
        (
            &["delete-layer", "nosuch"],
            "nosuch: identifier is not a layer",
        ),
        (
            &["delete-image", "nosuch"],
            "nosuch: identifier is not an image",
        ),
        (
            &["delete-container", "nosuch"],
            "nosuch: identifier is not a container",
        ),
        (&["delete", "nosuch"], "nosuch: layer not known"),
        (
            &["mount", "nosuch"],
            "layer not known while mounting nosuch",
        ),
        (
            &["unmount", "nosuch"],
            "layer not known while unmounting nosuch",
        ),
        (&["get-names", "nosuch"], "layer not known"),
        (&["set-names", "-n", "x", "nosuch"], "layer not known"),
        (
            &["set-metadata", "-m", "x", "nosuch"],
            "identifier is not a layer, image, or container",
        ),
        (&["set-metadata", "img"], "no new metadata provided"),
        (
            &["set-metadata", "-m", "", "img"],
            "no new metadata provided",
        ),
        (
            &["get-image-data", "img", "nokey"],
            "locating item named \"nokey\" for image with ID",
        ),
        (
            &["get-layer-data", "lay", "nokey"],
            "locating item named \"nokey\" for layer with ID",
        ),
        (
            &["images-by-digest", "sha256:abc"],
            "invalid checksum digest length",
        ),
        (
            &["images-by-digest", "sha256"],
            "invalid checksum digest format",
        ),
        (
            &["create-layer", "--uidmap", "0:1"],
            "initializing ID mappings: uid setting is malformed",
        ),
    ];
    let cs = Cs::new();
    cs.ok(&["create-layer", "-n", "lay"]);
    cs.ok(&["create-image", "-n", "img", "lay"]);
    let go_dir = common::TempRoot::new();
    let go_cli = |args: &[&str]| {
        Command::new(GO_CLI)
            .arg("--graph")
            .arg(go_dir.path().join("graph"))
            .arg("--run")
            .arg(go_dir.path().join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap()
    };
    if go {
        assert!(go_cli(&["create-layer", "-n", "lay"]).status.success());
        assert!(go_cli(&["create-image", "-n", "img", "lay"])
            .status
            .success());
    }
    for (args, words) in cases {
        let out = cs.run(args, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = common::stderr(&out);
        assert!(err.contains(words), "ours, {args:?}: {err}");
        if go {
            let out = go_cli(args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(words), "Go CLI, {args:?}: {err}");
        }
    }
}
