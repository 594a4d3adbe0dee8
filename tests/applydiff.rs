//! `applydiff`: a tar applied to a layer with no content seals it exactly
//! as an import would; bad input leaves the layer as it was.

mod common;

use common::tar::every_kind;
use common::{compress_with, first_line_of, sha256, Cs};

#[test]
fn applydiff_seals_an_empty_layer_like_an_import() {
    let cs = Cs::new();
    let tar = every_kind();
    let file = cs.dir.path().join("layer.tar");
    std::fs::write(&file, &tar).unwrap();
    let id = first_line_of(&cs.ok(&["create-layer", "-n", "empty"]));
    assert_eq!(
        cs.ok(&["applydiff", "-f", file.to_str().unwrap(), "empty"]),
        ""
    );
    assert_eq!(sha256(&cs.ok_bytes(&["diff", "-u", &id])), sha256(&tar));
    let record = cs.layer_json(&id);
    assert_eq!(record["diff-digest"], sha256(&tar));
    assert_eq!(record["sealed"], true);
    assert!(cs.graph().join("manifests").join(&id).is_file());
    // Compressed input on stdin, with the alias.
    let gz = compress_with("gzip", &tar);
    let other = first_line_of(&cs.ok(&["create-layer"]));
    cs.ok_with_input(&["apply-diff", &other], &gz);
    assert_eq!(cs.layer_json(&other)["compressed-diff-digest"], sha256(&gz));
    assert_eq!(sha256(&cs.ok_bytes(&["diff", "-u", &other])), sha256(&tar));
}

#[test]
fn applydiff_refuses_layers_with_content_and_container_layers() {
    let cs = Cs::new();
    let tar = every_kind();
    let sealed = cs.import(&tar, &[]);
    let err = cs.fails(&["applydiff", &sealed], Some(&tar));
    assert!(err.contains("already has content"), "{err}");
    cs.ok(&["create-image", "-n", "img", &sealed]);
    cs.ok(&["create-container", "-n", "c", "img"]);
    let layer = cs.json(&["container", "--json", "c"])[0]["layer"]
        .as_str()
        .unwrap()
        .to_string();
    let err = cs.fails(&["applydiff", &layer], Some(&tar));
    assert!(err.contains("container's layer"), "{err}");
}

#[test]
fn a_bad_diff_leaves_the_layer_as_it_was() {
    let cs = Cs::new();
    let id = first_line_of(&cs.ok(&["create-layer", "-n", "target"]));
    let before = cs.layer_json(&id);
    let mut truncated = every_kind();
    truncated.truncate(3000);
    let err = cs.fails(&["applydiff", "target"], Some(&truncated));
    assert!(
        err.contains(&format!("layer {id}")) && err.contains("truncated"),
        "{err}"
    );
    assert_eq!(cs.layer_json(&id), before);
    assert!(!cs.graph().join("manifests").join(&id).exists());
    // The layer still takes a good diff.
    cs.ok_with_input(&["applydiff", "target"], &every_kind());
    assert_eq!(cs.layer_json(&id)["sealed"], true);
}
