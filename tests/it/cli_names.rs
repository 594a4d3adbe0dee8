//! Commands on items of any kind through the real binary: names (and how
//! they move between items of one kind), the lookup order within and
//! across kinds, metadata, `exists`, the unchecked `delete`, `wipe` and
//! `shutdown`.

use crate::common;

use std::collections::BTreeSet;

use common::tar::{Meta, TarBuilder};
use common::{expect_status, first_line_of, stderr, stdout, Cs};
use serde_json::{json, Value};

/// `<kind> --json ARG`, the one record.
fn record(cs: &Cs, kind: &str, arg: &str) -> Value {
    let v = cs.json(&[kind, "--json", arg]);
    let list = v.as_array().expect("an array");
    assert_eq!(list.len(), 1, "{v}");
    list[0].clone()
}

fn names_of(cs: &Cs, kind: &str, arg: &str) -> Value {
    let r = record(cs, kind, arg);
    if r["names"].is_null() {
        json!([])
    } else {
        r["names"].clone()
    }
}

fn tar_with(name: &str, content: &[u8]) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.file(name, &Meta::default(), content);
    t.finish()
}

fn create(cs: &Cs, args: &[&str]) -> String {
    first_line_of(&cs.ok(args))
}

/// A layer, an image and a container, each with metadata.
fn one_of_each(cs: &Cs) -> (String, String, String) {
    let layer = create(cs, &["create-layer", "-n", "lay", "-n", "lay2"]);
    cs.ok(&["set-metadata", "-m", "layer meta", "lay"]);
    let image = create(
        cs,
        &[
            "create-image",
            "-n",
            "img",
            "-n",
            "img2",
            "-m",
            "image meta",
            "lay",
        ],
    );
    let container = create(
        cs,
        &[
            "create-container",
            "-n",
            "ctr",
            "-m",
            "container meta",
            "img",
        ],
    );
    (layer, image, container)
}

fn assert_missing_error(err: &str) {
    assert!(
        err.contains("not known")
            || err.contains("identifier is not")
            || err.contains("no new metadata provided"),
        "{err}"
    );
}

#[test]
fn get_names_prints_one_name_per_line_for_every_kind() {
    let cs = Cs::new();
    let (layer, image, container) = one_of_each(&cs);
    assert_eq!(cs.ok(&["get-names", "lay"]), "lay\nlay2\n");
    assert_eq!(cs.ok(&["get-names", &layer]), "lay\nlay2\n");
    assert_eq!(cs.ok(&["getnames", &image]), "img\nimg2\n");
    assert_eq!(cs.ok(&["get-names", &container]), "ctr\n");
    assert_eq!(
        cs.json(&["get-names", "--json", "img2"]),
        json!(["img", "img2"])
    );
    assert_eq!(cs.json(&["get-names", "-j", "ctr"]), json!(["ctr"]));
    let bare = create(&cs, &["create-image"]);
    assert_eq!(cs.ok(&["get-names", &bare]), "");
}

#[test]
fn add_names_moves_a_name_from_another_image_and_keeps_history_newest_first() {
    let cs = Cs::new();
    let a = create(&cs, &["create-image", "-n", "x", "-n", "a-own"]);
    let b = create(&cs, &["create-image", "-n", "b-own"]);
    assert_eq!(cs.ok(&["add-names", "-n", "x", &b]), "");
    assert_eq!(names_of(&cs, "image", &a), json!(["a-own"]));
    assert_eq!(names_of(&cs, "image", &b), json!(["b-own", "x"]));
    assert_eq!(cs.ok(&["get-names", "x"]), "b-own\nx\n");
    assert_eq!(record(&cs, "image", "x")["id"], b.as_str());
    // The history is newest first; the old holder keeps its history.
    assert_eq!(
        record(&cs, "image", &b)["names-history"],
        json!(["x", "b-own"])
    );
    assert_eq!(
        record(&cs, "image", &a)["names-history"],
        json!(["a-own", "x"])
    );
    cs.ok(&["add-names", "-n", "y", "--name", "z", &b]);
    assert_eq!(names_of(&cs, "image", &b), json!(["b-own", "x", "y", "z"]));
    assert_eq!(
        record(&cs, "image", &b)["names-history"],
        json!(["z", "y", "x", "b-own"])
    );
    // Adding a name the image already has changes nothing but history order.
    cs.ok(&["add-names", "-n", "x", &b]);
    assert_eq!(names_of(&cs, "image", &b), json!(["b-own", "x", "y", "z"]));
    assert_eq!(
        record(&cs, "image", &b)["names-history"],
        json!(["x", "z", "y", "b-own"])
    );
    // Images listed by `images` agree.
    let listing = cs.ok(&["images"]);
    assert_eq!(listing.matches("\tname: x\n").count(), 1, "{listing}");
}

#[test]
fn names_json_follows_an_item_whose_own_name_the_change_took() {
    // `--json` prints the names after the change: found by ID, since the
    // name given may be one the change removed.
    let cs = Cs::new();
    cs.ok(&["create-layer", "-n", "a"]);
    cs.ok(&["create-image", "-n", "ia", "a"]);
    assert_eq!(
        cs.json(&["set-names", "--json", "-n", "zz", "ia"]),
        json!(["zz"])
    );
    assert_eq!(
        cs.json(&["add-names", "--json", "-n", "y", "zz"]),
        json!(["zz", "y"])
    );
    assert_eq!(
        cs.json(&["remove-names", "--json", "-n", "zz", "zz"]),
        json!(["y"])
    );
    assert_eq!(
        cs.json(&["set-names", "--json", "-n", "q", "a"]),
        json!(["q"])
    );
}

#[test]
fn set_names_replaces_names_and_moves_taken_ones() {
    let cs = Cs::new();
    let a = create(&cs, &["create-image", "-n", "x", "-n", "keep"]);
    let b = create(&cs, &["create-image", "-n", "old1", "-n", "old2"]);
    cs.ok(&["set-names", "-n", "x", "-n", "new", &b]);
    assert_eq!(names_of(&cs, "image", &b), json!(["x", "new"]));
    assert_eq!(names_of(&cs, "image", &a), json!(["keep"]));
    let history = record(&cs, "image", &b)["names-history"].clone();
    assert_eq!(history, json!(["new", "x", "old2", "old1"]));
    // The old names are free again.
    create(&cs, &["create-image", "-n", "old1"]);
    // No -n: no names left.
    cs.ok(&["setnames", &b]);
    assert_eq!(names_of(&cs, "image", &b), json!([]));
    assert_eq!(cs.ok(&["get-names", &b]), "");
}

#[test]
fn remove_names_removes_only_the_given_names() {
    let cs = Cs::new();
    let a = create(&cs, &["create-image", "-n", "p", "-n", "q", "-n", "r"]);
    cs.ok(&["remove-names", "-n", "q", "-n", "absent", "p"]);
    assert_eq!(names_of(&cs, "image", &a), json!(["p", "r"]));
    // Removing keeps the history.
    assert_eq!(
        record(&cs, "image", &a)["names-history"],
        json!(["r", "q", "p"])
    );
    cs.fails(&["get-names", "q"], None);
    cs.ok(&["removenames", "-n", "p", "-n", "r", &a]);
    assert_eq!(names_of(&cs, "image", &a), json!([]));
}

#[test]
fn names_move_between_layers_and_between_containers_but_not_across_kinds() {
    let cs = Cs::new();
    let l1 = create(&cs, &["create-layer", "-n", "shared", "-n", "l1"]);
    let l2 = create(&cs, &["create-layer", "-n", "l2"]);
    let c1 = create(&cs, &["create-container", "-n", "cname", "-n", "c1", ""]);
    let c2 = create(&cs, &["create-container", "-n", "c2", ""]);
    let i1 = create(&cs, &["create-image", "-n", "iname"]);

    cs.ok(&["add-names", "-n", "shared", &l2]);
    assert_eq!(names_of(&cs, "layer", &l1), json!(["l1"]));
    assert_eq!(names_of(&cs, "layer", &l2), json!(["l2", "shared"]));
    cs.ok(&["set-names", "-n", "cname", &c2]);
    assert_eq!(names_of(&cs, "container", &c1), json!(["c1"]));
    assert_eq!(names_of(&cs, "container", &c2), json!(["cname"]));

    // An image may take a layer's name: the layer keeps it.
    cs.ok(&["add-names", "-n", "shared", &i1]);
    assert_eq!(names_of(&cs, "image", &i1), json!(["iname", "shared"]));
    assert_eq!(names_of(&cs, "layer", &l2), json!(["l2", "shared"]));
    // And a container an image's name.
    cs.ok(&["add-names", "-n", "iname", &c1]);
    assert_eq!(names_of(&cs, "image", &i1), json!(["iname", "shared"]));
    assert_eq!(names_of(&cs, "container", &c1), json!(["c1", "iname"]));
}

#[test]
fn lookups_across_kinds_try_layers_then_images_then_containers() {
    let cs = Cs::new();
    let layer = create(&cs, &["create-layer", "-n", "same", "-n", "l-only"]);
    cs.ok(&["set-metadata", "-m", "from the layer", &layer]);
    let image = create(
        &cs,
        &[
            "create-image",
            "-n",
            "same",
            "-n",
            "i-only",
            "-m",
            "from the image",
        ],
    );
    let container = create(
        &cs,
        &[
            "create-container",
            "-n",
            "same",
            "-n",
            "c-only",
            "-m",
            "from the container",
            "",
        ],
    );
    assert_eq!(cs.ok(&["get-names", "same"]), "same\nl-only\n");
    assert_eq!(cs.ok(&["metadata", "-q", "same"]), "from the layer\n");
    for (flag, want) in [("-l", true), ("-i", true), ("-c", true)] {
        let out = cs.run(&["exists", flag, "same"], None);
        assert_eq!(out.status.success(), want, "{flag}");
    }
    // A change by name goes to the layer.
    cs.ok(&["add-names", "-n", "added", "same"]);
    assert_eq!(
        names_of(&cs, "layer", &layer),
        json!(["same", "l-only", "added"])
    );
    assert_eq!(names_of(&cs, "image", &image), json!(["same", "i-only"]));
    cs.ok(&["set-metadata", "-m", "changed", "same"]);
    assert_eq!(record(&cs, "layer", &layer)["metadata"], "changed");
    assert_eq!(record(&cs, "image", &image)["metadata"], "from the image");

    // With the layer's name gone, the image is next, then the container.
    cs.ok(&["remove-names", "-n", "same", &layer]);
    assert_eq!(cs.ok(&["get-names", "same"]), "same\ni-only\n");
    assert_eq!(cs.ok(&["metadata", "-q", "same"]), "from the image\n");
    cs.ok(&["remove-names", "-n", "same", &image]);
    assert_eq!(cs.ok(&["get-names", "same"]), "same\nc-only\n");
    assert_eq!(cs.ok(&["metadata", "-q", "same"]), "from the container\n");
    assert_eq!(record(&cs, "container", "same")["id"], container.as_str());
}

#[test]
fn lookup_order_is_id_then_name_then_unique_prefix() {
    let cs = Cs::new();
    // Images.
    create(&cs, &["create-image", "-i", "abc", "-m", "A"]);
    create(&cs, &["create-image", "-i", "zz-b", "-n", "abc", "-m", "B"]);
    create(&cs, &["create-image", "-i", "abcdef", "-m", "C"]);
    assert_eq!(record(&cs, "image", "abc")["id"], "abc");
    assert_eq!(record(&cs, "image", "abcd")["id"], "abcdef");
    create(&cs, &["create-image", "-i", "zz-d", "-n", "abcd"]);
    assert_eq!(record(&cs, "image", "abcd")["id"], "zz-d");
    let out = cs.run(&["image", "ab"], None);
    expect_status(&out, &["image", "ab"], 1);
    assert_eq!(stdout(&out), "");
    let out = cs.run(&["image", "zz-"], None);
    expect_status(&out, &["image", "zz-"], 1);
    assert_missing_error(&cs.fails(&["get-image-dir", "ab"], None));

    // Layers.
    create(&cs, &["create-layer", "-i", "lay"]);
    create(&cs, &["create-layer", "-i", "qq-x", "-n", "lay"]);
    create(&cs, &["create-layer", "-i", "layer-long"]);
    assert_eq!(record(&cs, "layer", "lay")["id"], "lay");
    assert_eq!(record(&cs, "layer", "layer-")["id"], "layer-long");
    let out = cs.run(&["layer", "la"], None);
    expect_status(&out, &["layer", "la"], 1);

    // Generic commands use the same rules: `ab` is ambiguous among images
    // and nothing else, so it is not found.
    assert_missing_error(&cs.fails(&["get-names", "ab"], None));
    assert_eq!(cs.ok(&["metadata", "-q", "abcde"]), "C\n");
    assert_eq!(cs.ok(&["metadata", "-q", "abc"]), "A\n");
    // Each kind's whole lookup runs in turn, as upstream's store does: a
    // layer's unique prefix wins over an image's exact ID.
    create(&cs, &["create-layer", "-i", "zz-dx", "-n", "the-layer"]);
    assert_eq!(cs.ok(&["get-names", "zz-d"]), "the-layer\n");
    assert_eq!(cs.ok(&["get-names", "-j", "zz-d"]), "[\"the-layer\"]\n");
    assert_eq!(cs.ok(&["exists", "-q", "-i", "zz-d"]), "");
}

#[test]
fn metadata_prints_values_by_argument_quietly_and_as_json() {
    let cs = Cs::new();
    one_of_each(&cs);
    assert_eq!(
        cs.ok(&["metadata", "lay", "img", "ctr"]),
        "lay: layer meta\nimg: image meta\nctr: container meta\n"
    );
    assert_eq!(
        cs.ok(&["metadata", "-q", "lay", "img", "ctr"]),
        "layer meta\nimage meta\ncontainer meta\n"
    );
    assert_eq!(
        cs.json(&["metadata", "--json", "lay", "img", "ctr"]),
        json!({"lay": "layer meta", "img": "image meta", "ctr": "container meta"})
    );
    // An unknown item is printed with an empty value, as upstream does.
    let out = cs.run(&["metadata", "nope", "img"], None);
    expect_status(&out, &["metadata", "nope", "img"], 1);
    assert_eq!(stdout(&out), "nope: \nimg: image meta\n");
    let out = cs.run(&["metadata", "-q", "nope", "img"], None);
    assert_eq!(stdout(&out), "\nimage meta\n");
    let out = cs.run(&["metadata", "--json", "img", "nope"], None);
    expect_status(&out, &["metadata", "--json", "img", "nope"], 1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["img"], "image meta");
    assert!(v.get("nope").is_none() || v["nope"].is_null(), "{v}");
    // The final newline of a value from a file is left out, in JSON too.
    let file = cs.dir.path().join("meta");
    std::fs::write(&file, "line one\nline two\n").unwrap();
    cs.ok(&["set-metadata", "-f", file.to_str().unwrap(), "img"]);
    assert_eq!(
        cs.json(&["metadata", "-j", "img"]),
        json!({"img": "line one\nline two"})
    );
}

#[test]
fn set_metadata_from_a_value_or_a_file_for_every_kind() {
    let cs = Cs::new();
    let (layer, image, container) = one_of_each(&cs);
    cs.ok(&["set-metadata", "-m", "new layer meta", &layer]);
    cs.ok(&["setmetadata", "--metadata", "new image meta", "img"]);
    let file = cs.dir.path().join("meta.json");
    std::fs::write(&file, b"{\"a\": 1}\n").unwrap();
    cs.ok(&["set-metadata", "-f", file.to_str().unwrap(), "ctr"]);
    assert_eq!(record(&cs, "layer", &layer)["metadata"], "new layer meta");
    assert_eq!(record(&cs, "image", &image)["metadata"], "new image meta");
    assert_eq!(
        record(&cs, "container", &container)["metadata"],
        "{\"a\": 1}\n"
    );
    cs.ok(&[
        "set-metadata",
        "--metadata-file",
        file.to_str().unwrap(),
        "img",
    ]);
    assert_eq!(record(&cs, "image", &image)["metadata"], "{\"a\": 1}\n");
    // Neither -m nor -f, or a missing file: refused, nothing changed.
    cs.fails(&["set-metadata", "lay"], None);
    cs.fails(&["set-metadata", "-f", "/nonexistent/meta", "lay"], None);
    assert_eq!(record(&cs, "layer", &layer)["metadata"], "new layer meta");
}

#[test]
fn exists_reports_each_argument_and_can_be_restricted_to_kinds() {
    let cs = Cs::new();
    let (layer, image, container) = one_of_each(&cs);
    assert_eq!(
        cs.ok(&["exists", &layer, "img", &container]),
        format!("{layer}: true\nimg: true\n{container}: true\n")
    );
    let out = cs.run(&["exists", "lay", "nope"], None);
    expect_status(&out, &["exists", "lay", "nope"], 1);
    assert_eq!(stdout(&out), "lay: true\nnope: false\n");
    // Quiet: only the exit code.
    assert_eq!(cs.ok(&["exists", "-q", "lay", "img", "ctr"]), "");
    let out = cs.run(&["exists", "-q", "nope"], None);
    expect_status(&out, &["exists", "-q", "nope"], 1);
    assert_eq!(stdout(&out), "");
    // Kinds.
    for (args, found) in [
        (&["exists", "-l", "lay"][..], true),
        (&["exists", "-l", "img"], false),
        (&["exists", "-l", "ctr"], false),
        (&["exists", "-i", "img"], true),
        (&["exists", "--image", &image], true),
        (&["exists", "-i", "lay"], false),
        (&["exists", "-i", "ctr"], false),
        (&["exists", "-c", "ctr"], true),
        (&["exists", "--container", "img"], false),
        (&["exists", "-c", "lay"], false),
        (&["exists", "--layer", "-c", "lay"], true),
        (&["exists", "-l", "-c", "img"], false),
        (&["exists", "-i", "-c", "ctr"], true),
    ] {
        let out = cs.run(args, None);
        expect_status(&out, args, if found { 0 } else { 1 });
        // As upstream: the kinds decide the exit code; what is printed
        // is whether the item exists at all.
        let arg = args.last().unwrap();
        assert_eq!(stdout(&out), format!("{arg}: true\n"), "{args:?}");
    }
    let out = cs.run(&["exists", "-l", "-j", "lay", "img"], None);
    expect_status(&out, &["exists", "-l", "-j"], 1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v, json!({"lay": true, "img": true}));
    let out = cs.run(&["exists", "--json", "lay", "nope"], None);
    expect_status(&out, &["exists", "--json", "lay", "nope"], 1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v, json!({"lay": true, "nope": false}));
    assert_eq!(
        cs.json(&["exists", "-j", "-i", "img"]),
        json!({"img": true})
    );
}

#[test]
fn unknown_arguments_fail_for_every_generic_command() {
    let cs = Cs::new();
    one_of_each(&cs);
    for args in [
        &["get-names", "nope"][..],
        &["add-names", "-n", "x", "nope"],
        &["set-names", "-n", "x", "nope"],
        &["remove-names", "-n", "x", "nope"],
        &["metadata", "nope"],
        &["set-metadata", "-m", "x", "nope"],
        &["delete", "nope"],
        &["exists", "nope"],
        &["image", "nope"],
        &["layer", "nope"],
        &["container", "nope"],
    ] {
        let out = cs.run(args, None);
        assert_ne!(out.status.code(), Some(0), "{args:?} succeeded");
    }
    for args in [
        &["get-names", "nope"][..],
        &["add-names", "-n", "x", "nope"],
        &["set-names", "-n", "x", "nope"],
        &["remove-names", "-n", "x", "nope"],
        &["set-metadata", "-m", "x", "nope"],
        &["delete", "nope"],
    ] {
        assert_missing_error(&cs.fails(args, None));
    }
    // Kind-specific commands name the kind.
    for (args, kind) in [
        (&["get-image-dir", "nope"][..], "image not known"),
        (&["list-layer-data", "nope"], "layer not known"),
        (&["get-container-dir", "nope"], "container not known"),
        // The deletes in upstream's words.
        (&["delete-layer", "nope"], "nope: identifier is not a layer"),
        (
            &["delete-image", "nope"],
            "nope: identifier is not an image",
        ),
        (
            &["delete-container", "nope"],
            "nope: identifier is not a container",
        ),
    ] {
        let err = cs.fails(args, None);
        assert!(err.contains(kind), "{args:?}: {err}");
    }
    // The `x` name went nowhere.
    for kind in ["-l", "-i", "-c"] {
        let out = cs.run(&["exists", kind, "x"], None);
        expect_status(&out, &["exists", kind, "x"], 1);
    }
}

#[test]
fn delete_skips_the_safety_checks() {
    let cs = Cs::new();
    let base = cs.import(&tar_with("a", b"a"), &[]);
    let child = cs.import(&tar_with("b", b"b"), &[&base]);
    let image = create(&cs, &["create-image", "-n", "img", &child]);
    let other = cs.import(&tar_with("c", b"c"), &[]);
    create(&cs, &["create-image", "-n", "used", &other]);
    let container = create(&cs, &["create-container", "-n", "ctr", "used"]);
    let clayer = record(&cs, "container", "ctr")["layer"]
        .as_str()
        .unwrap()
        .to_string();

    // A layer with a child goes; the child stays.
    assert_eq!(cs.ok(&["delete", &base]), "");
    let ids: BTreeSet<String> = cs.layer_ids().into_iter().collect();
    assert_eq!(
        ids,
        BTreeSet::from([child.clone(), other.clone(), clayer.clone()])
    );
    assert!(!cs.graph().join("manifests").join(&base).exists());
    // The image on the child can no longer be sized, but is still shown.
    let out = cs.ok(&["image", "img"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("Size unknown: ") && l.contains(&base)),
        "{out}"
    );

    // An image record goes; its layers stay.
    cs.ok(&["delete", "img"]);
    assert!(!cs.ok(&["images", "-q"]).contains(&image));
    assert!(cs.layer_ids().contains(&child));
    assert!(cs.graph().join("manifests").join(&child).exists());

    // An image a container uses goes too.
    cs.ok(&["delete", "used"]);
    assert_eq!(cs.ok(&["images", "-q"]), "");
    assert_eq!(record(&cs, "container", "ctr")["id"], container.as_str());

    // A container goes with its layer; --json maps arguments to errors.
    let out = cs.run(&["delete", "--json", "ctr", "nope"], None);
    expect_status(&out, &["delete", "--json", "ctr", "nope"], 1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["ctr"], "");
    assert_missing_error(v["nope"].as_str().unwrap());
    assert_eq!(cs.ok(&["containers", "--json"]), "[]\n");
    assert!(!cs.layer_ids().contains(&clayer));
    assert!(!cs.graph().join("vfs-containers").join(&container).exists());

    // An image's top layer goes too.
    create(&cs, &["create-image", "-n", "again", &other]);
    cs.ok(&["delete", &other]);
    assert!(!cs.layer_ids().contains(&other));
    let out = cs.run(&["delete", "nope"], None);
    expect_status(&out, &["delete", "nope"], 1);
    assert!(stderr(&out).starts_with("nope: "), "{}", stderr(&out));
}

#[test]
fn wipe_removes_every_container_image_and_layer() {
    let cs = Cs::new();
    let base = cs.import(&tar_with("a", b"a"), &[]);
    let top = cs.import(&tar_with("b", b"b"), &[&base]);
    let image = create(&cs, &["create-image", "-n", "img", &top]);
    cs.ok_with_input(&["set-image-data", "img", "manifest"], b"m");
    let container = create(&cs, &["create-container", "-n", "ctr", "img"]);
    cs.ok_with_input(&["set-container-data", "ctr", "k"], b"v");
    cs.ok(&["get-container-dir", "ctr"]);
    cs.ok(&["get-container-run-dir", "ctr"]);
    cs.ok(&["get-image-run-dir", "img"]);
    create(&cs, &["create-layer", "-n", "loose"]);
    create(&cs, &["create-image", "-n", "layerless"]);

    cs.ok(&["wipe"]);
    assert_eq!(cs.ok(&["layers", "-q"]), "");
    assert_eq!(cs.ok(&["layers", "--json"]), "[]\n");
    assert_eq!(cs.ok(&["images", "-q"]), "");
    assert_eq!(cs.ok(&["images", "--json"]), "[]\n");
    assert_eq!(cs.ok(&["containers"]), "");
    assert_eq!(cs.ok(&["containers", "--json"]), "[]\n");
    for dir in [
        cs.graph().join("vfs-images").join(&image),
        cs.run_root().join("vfs-images").join(&image),
        cs.graph().join("vfs-containers").join(&container),
        cs.run_root().join("vfs-containers").join(&container),
        cs.graph().join("manifests").join(&base),
        cs.graph().join("manifests").join(&top),
    ] {
        assert!(!dir.exists(), "{} survived wipe", dir.display());
    }
    for name in ["img", "ctr", "loose", "layerless"] {
        let out = cs.run(&["exists", name], None);
        expect_status(&out, &["exists", name], 1);
    }
    // The store still works, names are free again, and --json is JSON.
    create(&cs, &["create-layer", "-n", "loose"]);
    create(&cs, &["create-image", "-n", "img"]);
    // Upstream's `""`.
    assert_eq!(cs.ok(&["wipe", "--json"]), "\"\"\n");
    assert_eq!(cs.ok(&["layers", "-q"]), "");
    assert_eq!(cs.ok(&["images", "-q"]), "");
}

#[test]
fn shutdown_releases_the_store_and_changes_nothing() {
    let cs = Cs::new();
    let (layer, image, container) = one_of_each(&cs);
    let layers = cs.ok(&["layers"]);
    cs.ok(&["shutdown"]);
    cs.ok(&["shutdown", "-f"]);
    cs.ok(&["shutdown", "--force"]);
    assert_eq!(cs.ok(&["shutdown", "--json"]), "\"\"\n");
    assert_eq!(cs.ok(&["shutdown", "-j", "-f"]), "\"\"\n");
    assert_eq!(cs.ok(&["layers"]), layers);
    cs.ok(&["exists", &layer, &image, &container]);
    cs.fails(&["shutdown", "extra"], None);
}

#[test]
fn shutdown_with_mounts_fails_in_upstreams_words_and_force_unmounts_them() {
    let cs = Cs::new();
    let layer = crate::common::first_line_of(&cs.ok(&["create-layer"]));
    cs.ok(&["mount", &layer]);
    let err = cs.fails(&["shutdown"], None);
    assert!(
        err.contains("a layer is mounted: layer is in use by a container"),
        "{err}"
    );
    assert_eq!(cs.ok(&["mounted", &layer]), format!("{layer} mounted\n"));
    cs.ok(&["mount", &layer]);
    // Forced, it unmounts them and fails all the same, as upstream's does.
    let err = cs.fails(&["shutdown", "-f"], None);
    assert!(
        err.contains("a layer is mounted: layer is in use by a container"),
        "{err}"
    );
    assert_eq!(cs.ok(&["mounted", &layer]), "");
    cs.ok(&["mount", &layer]);
    let out = cs.run(&["shutdown", "-f", "--json"], None);
    crate::common::expect_status(&out, &["shutdown", "-f", "--json"], 1);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{}\n");
    assert_eq!(cs.ok(&["mounted", &layer]), "");
    cs.ok(&["shutdown"]);
    cs.ok(&["shutdown", "-f"]);
}
