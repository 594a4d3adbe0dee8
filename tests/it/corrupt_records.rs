//! Corrupt record files (`images.json`, `containers.json`, `layers.json`):
//! every command that reads one fails with an error naming the file, and
//! the file is left byte for byte as it was (never overwritten, emptied or
//! "repaired" into an empty list), as are the other record files.

use crate::common;

use std::path::{Path, PathBuf};

use common::{first_line_of, Cs};

/// A store with a layer `lay`, an image `img` on it (with big data) and a
/// container `ctr` on the image.
fn populated() -> Cs {
    let cs = Cs::new();
    first_line_of(&cs.ok(&["create-layer", "-n", "lay"]));
    first_line_of(&cs.ok(&["create-image", "-n", "img", "lay"]));
    cs.ok_with_input(&["set-image-data", "img", "manifest"], b"{}");
    first_line_of(&cs.ok(&["create-container", "-n", "ctr", "img"]));
    cs.ok_with_input(&["set-container-data", "ctr", "state"], b"s");
    cs
}

fn records(cs: &Cs) -> [PathBuf; 3] {
    let g = cs.graph();
    [
        g.join("vfs-layers/layers.json"),
        g.join("vfs-images/images.json"),
        g.join("vfs-containers/containers.json"),
    ]
}

fn read_all(paths: &[PathBuf; 3]) -> [Vec<u8>; 3] {
    paths
        .clone()
        .map(|p| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// The ways a record file gets damaged.
fn corruptions(original: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("truncated", original[..original.len() / 2].to_vec()),
        ("truncated to one byte", original[..1].to_vec()),
        (
            "garbage",
            b"\x00\x01\x02 this is not JSON at all \xff\xfe".to_vec(),
        ),
        ("not an array", b"{\"id\": \"x\"}".to_vec()),
    ]
}

fn temp_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

/// Corrupts record file `which` (index into [`records`]) in every way and
/// runs each of `commands` (args, stdin): each must fail, name the file on
/// stderr, and leave all three record files unchanged. Afterwards the
/// original file is put back and the store works as before.
fn check(which: usize, commands: &[(&[&str], Option<&[u8]>)]) {
    let cs = populated();
    let paths = records(&cs);
    let original = read_all(&paths);
    let listing = (
        cs.ok(&["layers", "--json"]),
        cs.ok(&["images", "--json"]),
        cs.ok(&["containers", "--json"]),
    );
    let target = &paths[which];
    let shown = target.display().to_string();
    for (how, bytes) in corruptions(&original[which]) {
        std::fs::write(target, &bytes).unwrap();
        let mut expected = original.clone();
        expected[which] = bytes.clone();
        for (args, stdin) in commands {
            let out = cs.run(args, *stdin);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{how} {shown}: {args:?} succeeded\nstdout: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert!(
                stderr.contains(&shown),
                "{how}: {args:?}: the error does not name {shown}: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
            assert_eq!(
                read_all(&paths),
                expected,
                "{how}: {args:?} changed a record file"
            );
        }
        assert_eq!(
            temp_leftovers(target.parent().unwrap()),
            Vec::<String>::new()
        );
    }
    std::fs::write(target, &original[which]).unwrap();
    assert_eq!(
        (
            cs.ok(&["layers", "--json"]),
            cs.ok(&["images", "--json"]),
            cs.ok(&["containers", "--json"]),
        ),
        listing,
        "the records changed behind the corrupt file"
    );
    assert_eq!(cs.ok_bytes(&["get-image-data", "img", "manifest"]), b"{}");
}

#[test]
fn a_corrupt_images_json_is_an_error_naming_it_and_is_left_alone() {
    check(
        1,
        &[
            (&["images"], None),
            (&["images", "--json"], None),
            (&["images", "-q"], None),
            (&["image", "img"], None),
            (&["image", "--json", "img"], None),
            (&["create-image", "-n", "new", "lay"], None),
            (&["create-image"], None),
            (&["set-image-data", "img", "key"], Some(b"data")),
            (&["set-names", "-n", "other", "img"], None),
            (&["delete-image", "img"], None),
            (&["wipe"], None),
        ],
    );
}

#[test]
fn a_corrupt_containers_json_is_an_error_naming_it_and_is_left_alone() {
    check(
        2,
        &[
            (&["containers"], None),
            (&["containers", "--json"], None),
            (&["container", "ctr"], None),
            (&["create-container", "-n", "new", "img"], None),
            (&["create-container", ""], None),
            (&["set-container-data", "ctr", "key"], Some(b"data")),
            (&["delete-container", "ctr"], None),
            (&["wipe"], None),
        ],
    );
}

#[test]
fn a_corrupt_layers_json_is_an_error_naming_it_and_is_left_alone() {
    check(
        0,
        &[
            (&["layers"], None),
            (&["layers", "--json"], None),
            (&["layer", "lay"], None),
            (&["create-layer", "-n", "new"], None),
            (&["set-layer-data", "lay", "key"], Some(b"data")),
            (&["create-image", "-n", "new"], None),
            (&["wipe"], None),
        ],
    );
}
