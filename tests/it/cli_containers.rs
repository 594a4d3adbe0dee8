//! The container commands through the real binary: `containers`,
//! `container`, `create-container`, `delete-container`, the container
//! directories, parent owners, container and layer big data, and what
//! `layers` shows about images and containers.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::tar::{Meta, TarBuilder};
use common::{blocks, expect_status, first_line_of, sha256, stderr, stdout, Cs};
use serde_json::Value;

/// `container --json ARG`, the one record.
fn container_json(cs: &Cs, arg: &str) -> Value {
    let v = cs.json(&["container", "--json", arg]);
    let list = v.as_array().expect("container --json is an array");
    assert_eq!(list.len(), 1, "{v}");
    list[0].clone()
}

fn tar_with(name: &str, content: &[u8]) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.file(name, &Meta::default(), content);
    t.finish()
}

fn write_file(cs: &Cs, name: &str, data: &[u8]) -> PathBuf {
    let path = cs.dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    path
}

/// An imported layer and an image named `image_name` on it.
fn image_on_layer(cs: &Cs, image_name: &str) -> (String, String) {
    let layer = cs.import(&tar_with("f", image_name.as_bytes()), &[]);
    let image = first_line_of(&cs.ok(&["create-image", "-n", image_name, &layer]));
    (layer, image)
}

fn create_container(cs: &Cs, args: &[&str]) -> String {
    let mut all = vec!["create-container"];
    all.extend_from_slice(args);
    first_line_of(&cs.ok(&all))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn create_container_prints_id_and_names_and_layers_on_the_image_top() {
    let cs = Cs::new();
    let (top, image) = image_on_layer(&cs, "img");
    let out = cs.ok(&[
        "create-container",
        "-n",
        "c1",
        "--name",
        "c2",
        "-i",
        "my-container",
        "-m",
        "meta",
        "img",
    ]);
    // A line per name, after a tab, as upstream prints them.
    assert_eq!(out, "my-container\n\tc1\n\tc2\n");
    let r = container_json(&cs, "my-container");
    assert_eq!(r["id"], "my-container");
    assert_eq!(r["names"], serde_json::json!(["c1", "c2"]));
    assert_eq!(r["image"], image.as_str());
    assert_eq!(r["metadata"], "meta");
    let created = r["created"].as_str().expect("created");
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
    let layer = r["layer"].as_str().unwrap().to_string();
    assert!(is_hex64(&layer), "{layer}");
    assert_ne!(layer, top);
    // The container's layer exists, on the image's top layer.
    assert_eq!(cs.layer_json(&layer)["parent"], top.as_str());
    let ids: BTreeSet<String> = cs.layer_ids().into_iter().collect();
    assert_eq!(ids, BTreeSet::from([top.clone(), layer.clone()]));

    // The image may be named by ID or prefix too; a random ID is hex.
    let second = create_container(&cs, &[&image[..10]]);
    assert!(is_hex64(&second), "{second}");
    let r = container_json(&cs, &second);
    assert_eq!(r["image"], image.as_str());
    assert_eq!(
        cs.layer_json(r["layer"].as_str().unwrap())["parent"],
        top.as_str()
    );
    assert_eq!(cs.layer_ids().len(), 3);
}

#[test]
fn create_container_on_a_layered_chain_uses_the_top_layer_only() {
    let cs = Cs::new();
    let base = cs.import(&tar_with("a", b"a"), &[]);
    let top = cs.import(&tar_with("b", b"b"), &[&base]);
    cs.ok(&["create-image", "-n", "img", &top]);
    create_container(&cs, &["-n", "c", "img"]);
    let layer = container_json(&cs, "c")["layer"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cs.layer_json(&layer)["parent"], top.as_str());
}

#[test]
fn create_container_without_an_image() {
    let cs = Cs::new();
    let id = create_container(&cs, &["-n", "bare", ""]);
    let r = container_json(&cs, "bare");
    assert_eq!(r["id"], id.as_str());
    assert!(r["image"].is_null() || r["image"] == "", "{r}");
    let layer = r["layer"].as_str().unwrap().to_string();
    let l = cs.layer_json(&layer);
    assert!(l["parent"].is_null() || l["parent"] == "", "{l}");
    assert_eq!(cs.layer_ids(), vec![layer]);
    let out = cs.ok(&["container", "bare"]);
    assert!(out.contains("\nImage: \n"), "{out}");
    assert!(!out.contains("Image name:"), "{out}");
}

#[test]
fn create_container_json_metadata_file_and_volatile() {
    let cs = Cs::new();
    image_on_layer(&cs, "img");
    let meta = write_file(&cs, "meta", b"from\nfile");
    let out = cs.ok(&[
        "create-container",
        "--json",
        "-f",
        meta.to_str().unwrap(),
        "--volatile",
        "-n",
        "v",
        "img",
    ]);
    let v: Value = serde_json::from_str(&out).expect("--json parses");
    assert!(v.is_object(), "{v}");
    assert_eq!(v["names"], serde_json::json!(["v"]));
    assert_eq!(v["metadata"], "from\nfile");
    assert_eq!(v["flags"]["Volatile"], true, "{v}");
    assert_eq!(container_json(&cs, "v"), v);
    let long = write_file(&cs, "meta2", b"long flag");
    create_container(
        &cs,
        &["--metadata-file", long.to_str().unwrap(), "-n", "w", "img"],
    );
    assert_eq!(container_json(&cs, "w")["metadata"], "long flag");
    let plain = container_json(&cs, &create_container(&cs, &["img"]));
    assert!(plain["flags"].get("Volatile").is_none(), "{plain}");
}

#[test]
fn create_container_refuses_taken_names_ids_and_unknown_images() {
    let cs = Cs::new();
    image_on_layer(&cs, "img");
    create_container(&cs, &["-n", "taken", "-i", "taken-id", "img"]);
    let layers_before = cs.layer_ids();
    let err = cs.fails(&["create-container", "-n", "taken", "img"], None);
    // Upstream's words.
    assert!(
        err.contains("the container name \"taken\" is already in use by taken-id. You have to remove that container to be able to reuse that name: that name is already in use"),
        "{err}"
    );
    let err = cs.fails(&["create-container", "-i", "taken-id", "img"], None);
    assert!(err.contains("that ID is already in use"), "{err}");
    let err = cs.fails(&["create-container", "-n", "new", "no-such-image"], None);
    assert!(err.contains("image not known"), "{err}");
    // A refused container leaves no layer and no record behind.
    assert_eq!(cs.layer_ids(), layers_before);
    assert_eq!(
        cs.json(&["containers", "--json"]).as_array().unwrap().len(),
        1
    );
    // Names and IDs are unique per kind only.
    create_container(&cs, &["-n", "img", "-i", "other", "img"]);
    cs.fails(&["create-container"], None);
}

/// Upstream creates the container's layer with the image's top layer as
/// parent and fails with "layer not known" when that layer is gone.
#[test]
fn create_container_refuses_an_image_whose_top_layer_is_gone() {
    let cs = Cs::new();
    let (top, _) = image_on_layer(&cs, "img");
    cs.ok(&["delete", &top]);
    let err = cs.fails(&["create-container", "-n", "c", "img"], None);
    assert!(err.contains("layer not known"), "{err}");
    assert!(cs.layer_ids().is_empty(), "a layer was left behind");
    assert_eq!(cs.ok(&["containers", "--json"]), "[]\n");
}

#[test]
fn containers_lists_ids_names_and_data_keys() {
    let cs = Cs::new();
    image_on_layer(&cs, "img");
    let a = create_container(&cs, &["-n", "a1", "-n", "a2", "img"]);
    let b = create_container(&cs, &["img"]);
    cs.ok_with_input(&["set-container-data", "a1", "state"], b"x");
    cs.ok_with_input(&["set-container-data", "a1", "config.json"], b"{}");
    let listing = cs.ok(&["containers"]);
    let mut want = BTreeMap::new();
    want.insert(
        a.clone(),
        format!("{a}\n\tname: a1\n\tname: a2\n\tdata: state\n\tdata: config.json\n"),
    );
    want.insert(b.clone(), format!("{b}\n"));
    assert_eq!(blocks(&listing), want, "{listing}");

    let v = cs.json(&["containers", "--json"]);
    let list = v.as_array().expect("array");
    assert_eq!(list.len(), 2);
    let ra = list
        .iter()
        .find(|r| r["id"] == a.as_str())
        .expect("a listed");
    assert_eq!(
        ra["big-data-names"],
        serde_json::json!(["state", "config.json"])
    );
    assert_eq!(
        ra["big-data-sizes"],
        serde_json::json!({"state": 1, "config.json": 2})
    );
    assert_eq!(
        ra["big-data-digests"],
        serde_json::json!({"state": sha256(b"x"), "config.json": sha256(b"{}")})
    );
    let empty = Cs::new();
    assert_eq!(empty.ok(&["containers"]), "");
    assert_eq!(empty.ok(&["containers", "--json"]), "[]\n");
}

#[test]
fn container_prints_every_field() {
    let cs = Cs::new();
    let layer = cs.import(&tar_with("f", b"f"), &[]);
    let image = first_line_of(&cs.ok(&["create-image", "-n", "i1", "-n", "i2", &layer]));
    let id = create_container(&cs, &["-n", "c1", "-n", "c2", "i1"]);
    cs.ok_with_input(&["set-container-data", "c1", "k1"], &[0u8; 100]);
    cs.ok_with_input(&["set-container-data", "c1", "k2"], &[1u8; 28]);
    let clayer = container_json(&cs, "c1")["layer"]
        .as_str()
        .unwrap()
        .to_string();
    let want = format!(
        "ID: {id}\nName: c1\nName: c2\nImage: {image}\nImage name: i1\nImage name: i2\n\
         Size: 128\nLayer: {clayer}\nData: k1\nData: k2\n"
    );
    assert_eq!(cs.ok(&["container", "c1"]), want);
    assert_eq!(cs.ok(&["container", &id]), want);

    let out = cs.run(&["container", "c2", "nope"], None);
    expect_status(&out, &["container", "c2", "nope"], 1);
    assert_eq!(stdout(&out), want);
    let out = cs.run(&["container", "nope"], None);
    expect_status(&out, &["container", "nope"], 1);
    assert_eq!(stdout(&out), "");
    let v = cs.json(&["container", "--json", "c1", "c2"]);
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
}

#[test]
fn container_is_found_by_its_layer_id_and_a_unique_prefix() {
    let cs = Cs::new();
    create_container(&cs, &["-i", "abc1", ""]);
    create_container(&cs, &["-i", "abc2", ""]);
    create_container(&cs, &["-i", "xyz9", ""]);
    let layer = container_json(&cs, "abc2")["layer"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(container_json(&cs, &layer)["id"], "abc2");
    assert_eq!(container_json(&cs, "xy")["id"], "xyz9");
    // An ambiguous prefix finds nothing.
    let out = cs.run(&["container", "abc"], None);
    expect_status(&out, &["container", "abc"], 1);
    assert_eq!(stdout(&out), "");
    let err = cs.fails(&["get-container-dir", "abc"], None);
    assert!(err.contains("container not known"), "{err}");
    // A name comes before another container's layer ID.
    create_container(&cs, &["-i", "named", "-n", &layer, ""]);
    assert_eq!(container_json(&cs, &layer)["id"], "named");
}

/// Upstream looks a container up by exact ID before names: a container
/// whose ID another container holds as a name must still be found by ID.
#[test]
fn container_exact_id_beats_another_containers_name() {
    let cs = Cs::new();
    create_container(&cs, &["-i", "first", "-n", "dup", ""]);
    create_container(&cs, &["-i", "dup", ""]);
    assert_eq!(container_json(&cs, "dup")["id"], "dup");
    assert_eq!(
        cs.ok(&["get-container-dir", "dup"]),
        format!(
            "{}\n",
            cs.graph().join("vfs-containers/dup/userdata").display()
        )
    );
    cs.ok(&["set-metadata", "-m", "for dup", "dup"]);
    assert_eq!(container_json(&cs, "dup")["metadata"], "for dup");
    assert!(container_json(&cs, "first")["metadata"].is_null());
    cs.ok(&["delete-container", "dup"]);
    let left: Vec<String> = cs
        .json(&["containers", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, vec!["first".to_string()]);
}

#[test]
fn delete_container_removes_its_layer_directories_and_record() {
    let cs = Cs::new();
    let (top, image) = image_on_layer(&cs, "img");
    let id = create_container(&cs, &["-n", "doomed", "img"]);
    let keep = create_container(&cs, &["-n", "kept", "img"]);
    cs.ok_with_input(&["set-container-data", "doomed", "k"], b"data");
    let dir = cs.ok(&["get-container-dir", "doomed"]);
    let run = cs.ok(&["get-container-run-dir", "doomed"]);
    std::fs::write(Path::new(dir.trim_end()).join("file"), b"x").unwrap();
    std::fs::write(Path::new(run.trim_end()).join("file"), b"x").unwrap();
    let clayer = container_json(&cs, "doomed")["layer"]
        .as_str()
        .unwrap()
        .to_string();
    let klayer = container_json(&cs, "kept")["layer"]
        .as_str()
        .unwrap()
        .to_string();

    assert_eq!(cs.ok(&["delete-container", "doomed"]), "");
    let ids: BTreeSet<String> = cs.layer_ids().into_iter().collect();
    assert_eq!(ids, BTreeSet::from([top.clone(), klayer]));
    assert!(!clayer.is_empty());
    assert!(!cs.graph().join("vfs-containers").join(&id).exists());
    assert!(!cs.run_root().join("vfs-containers").join(&id).exists());
    assert!(!cs.graph().join("vfs-layers").join(&clayer).exists());
    let out = cs.run(&["container", "doomed"], None);
    expect_status(&out, &["container", "doomed"], 1);
    let v = cs.json(&["containers", "--json"]);
    let left: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(left, vec![keep.as_str()]);
    // The image and its layer stay.
    assert_eq!(cs.ok(&["images", "-q"]), format!("{image}\n"));
    assert!(cs.graph().join("manifests").join(&top).exists());

    // By layer ID, with --json; unknown ones are reported per argument.
    let klayer = container_json(&cs, "kept")["layer"]
        .as_str()
        .unwrap()
        .to_string();
    let out = cs.run(&["delete-container", "--json", &klayer, "nope"], None);
    expect_status(&out, &["delete-container", "--json", &klayer, "nope"], 1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v[&klayer], "");
    assert!(
        v["nope"].as_str().unwrap() == "identifier is not a container",
        "{v}"
    );
    assert_eq!(cs.ok(&["containers", "--json"]), "[]\n");
    assert_eq!(cs.layer_ids(), vec![top]);

    let out = cs.run(&["deletecontainer", "nope"], None);
    expect_status(&out, &["deletecontainer", "nope"], 1);
    assert!(stderr(&out).starts_with("nope: "), "{}", stderr(&out));
    assert!(stderr(&out).contains("identifier is not a container"));
}

#[test]
fn delete_layer_refuses_a_containers_layer() {
    let cs = Cs::new();
    let id = create_container(&cs, &["-n", "c", ""]);
    let layer = container_json(&cs, "c")["layer"]
        .as_str()
        .unwrap()
        .to_string();
    let out = cs.run(&["delete-layer", &layer], None);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).starts_with(&format!("{layer}: ")),
        "{}",
        stderr(&out)
    );
    let out = cs.run(&["delete-layer", "--json", &layer], None);
    assert_ne!(out.status.code(), Some(0));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_ne!(v[&layer], "", "{v}");
    assert_eq!(cs.layer_ids(), vec![layer]);
    assert_eq!(container_json(&cs, "c")["id"], id.as_str());
}

#[test]
fn container_dirs_are_userdata_under_the_graph_and_run_roots() {
    let cs = Cs::new();
    let id = create_container(&cs, &["-n", "c", ""]);
    let want = cs.graph().join("vfs-containers").join(&id).join("userdata");
    assert_eq!(
        cs.ok(&["get-container-dir", "c"]),
        format!("{}\n", want.display())
    );
    assert!(want.is_dir());
    let want_run = cs
        .run_root()
        .join("vfs-containers")
        .join(&id)
        .join("userdata");
    assert_eq!(
        cs.ok(&["get-container-run-dir", &id]),
        format!("{}\n", want_run.display())
    );
    assert!(want_run.is_dir());
    for cmd in ["get-container-dir", "get-container-run-dir"] {
        let err = cs.fails(&[cmd, "nope"], None);
        assert!(err.contains("container not known"), "{cmd}: {err}");
    }
}

/// Upstream's format (`tests/it/parent_owners.rs` compares it with the
/// Go CLI): a layer without a mapping prints its ID only, a container
/// empty `UIDs: []` and `GIDs: []`; JSON is one object per item with
/// `null` for none.
#[test]
fn parent_owners_print_the_id_and_empty_sets() {
    let cs = Cs::new();
    let (top, _) = image_on_layer(&cs, "img");
    let id = create_container(&cs, &["-n", "c", "img"]);
    assert_eq!(
        cs.ok(&["container-parent-owners", "c"]),
        format!("ID: {id}\nUIDs: []\nGIDs: []\n")
    );
    assert_eq!(
        cs.ok(&["layer-parent-owners", &top]),
        format!("ID: {top}\n")
    );
    assert_eq!(
        cs.json(&["container-parent-owners", "--json", "c"]),
        serde_json::json!({"ID": id, "UIDs": null, "GIDs": null})
    );
    assert_eq!(
        cs.json(&["layer-parent-owners", "--json", &top]),
        serde_json::json!({"ID": top, "UIDs": null, "GIDs": null})
    );
    let err = cs.fails(&["container-parent-owners", "nope"], None);
    assert!(err.contains("container not known"), "{err}");
    let err = cs.fails(&["layer-parent-owners", "nope"], None);
    assert!(err.contains("layer not known"), "{err}");
}

#[test]
fn container_big_data_round_trips_through_every_command() {
    let cs = Cs::new();
    let id = create_container(&cs, &["-n", "c", ""]);
    let binary: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 256) as u8).collect();
    let path = write_file(&cs, "in", &binary);
    cs.ok(&[
        "set-container-data",
        "-f",
        path.to_str().unwrap(),
        "c",
        "blob",
    ]);
    cs.ok_with_input(&["setcontainerdata", &id, "Odd/Key:1"], b"stdin data");
    assert_eq!(cs.ok(&["list-container-data", "c"]), "blob\nOdd/Key:1\n");
    assert_eq!(
        cs.json(&["list-container-data", "--json", "c"]),
        serde_json::json!(["blob", "Odd/Key:1"])
    );
    assert_eq!(cs.ok_bytes(&["get-container-data", "c", "blob"]), binary);
    assert_eq!(
        cs.ok_bytes(&["get-container-data", "c", "Odd/Key:1"]),
        b"stdin data"
    );
    let out = cs.dir.path().join("out");
    cs.ok(&[
        "get-container-data",
        "-f",
        out.to_str().unwrap(),
        "c",
        "blob",
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), binary);
    assert_eq!(cs.ok(&["get-container-data-size", "c", "blob"]), "3000\n");
    assert_eq!(
        cs.ok(&["get-container-data-digest", "c", "blob"]),
        format!("{}\n", sha256(&binary))
    );
    // Stored under the container's directory; the odd key never makes a
    // subdirectory.
    let dir = cs.graph().join("vfs-containers").join(&id);
    assert!(dir.join("blob").is_file());
    assert!(!dir.join("Odd").exists());
    for args in [
        &["get-container-data", "c", "nokey"][..],
        &["get-container-data-size", "c", "nokey"],
        &["get-container-data-digest", "c", "nokey"],
    ] {
        cs.fails(args, None);
    }
    for args in [
        &["get-container-data", "nope", "blob"][..],
        &["list-container-data", "nope"],
        &["get-container-data-size", "nope", "blob"],
        &["get-container-data-digest", "nope", "blob"],
    ] {
        let err = cs.fails(args, None);
        assert!(err.contains("container not known"), "{args:?}: {err}");
    }
    let err = cs.fails(&["set-container-data", "nope", "k"], Some(b"x"));
    assert!(err.contains("container not known"), "{err}");
}

#[test]
fn layer_big_data_round_trips() {
    let cs = Cs::new();
    let layer = first_line_of(&cs.ok(&["create-layer", "-n", "l"]));
    let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let path = write_file(&cs, "in", &data);
    cs.ok(&["set-layer-data", "-f", path.to_str().unwrap(), "l", "blob"]);
    cs.ok_with_input(&["setlayerdata", &layer, "Second:Key"], b"two");
    assert_eq!(cs.ok(&["list-layer-data", "l"]), "blob\nSecond:Key\n");
    assert_eq!(
        cs.json(&["list-layer-data", "--json", &layer]),
        serde_json::json!(["blob", "Second:Key"])
    );
    assert_eq!(cs.ok_bytes(&["get-layer-data", "l", "blob"]), data);
    assert_eq!(cs.ok_bytes(&["getlayerdata", "l", "Second:Key"]), b"two");
    let out = cs.dir.path().join("out");
    cs.ok(&["get-layer-data", "-f", out.to_str().unwrap(), "l", "blob"]);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(cs
        .graph()
        .join("vfs-layers")
        .join(&layer)
        .join("blob")
        .is_file());
    cs.fails(&["get-layer-data", "l", "nokey"], None);
    let err = cs.fails(&["get-layer-data", "nope", "blob"], None);
    assert!(err.contains("layer not known"), "{err}");
    let err = cs.fails(&["set-layer-data", "nope", "k"], Some(b"x"));
    assert!(err.contains("layer not known"), "{err}");
    let err = cs.fails(&["list-layer-data", "nope"], None);
    assert!(err.contains("layer not known"), "{err}");
}

#[test]
fn layers_shows_the_images_and_containers_that_use_each_layer() {
    let cs = Cs::new();
    let base = first_line_of(&cs.ok(&["create-layer", "-n", "base"]));
    let plain = first_line_of(&cs.ok(&["create-layer", "-n", "plain"]));
    let i1 = first_line_of(&cs.ok(&["create-image", "-n", "i1", "-n", "i1b", "base"]));
    let i2 = first_line_of(&cs.ok(&["create-image", "base"]));
    let c = create_container(&cs, &["-n", "c1", "-n", "c2", "i1"]);
    let clayer = container_json(&cs, "c1")["layer"]
        .as_str()
        .unwrap()
        .to_string();
    let listing = cs.ok(&["layers"]);
    let got = blocks(&listing);
    let mut want = BTreeMap::new();
    want.insert(
        base.clone(),
        format!(
            "{base}\n\tname: base\n\timage: {i1}\n\t\tname: i1\n\t\tname: i1b\n\timage: {i2}\n"
        ),
    );
    want.insert(plain.clone(), format!("{plain}\n\tname: plain\n"));
    want.insert(
        clayer.clone(),
        format!("{clayer}\n\tcontainer: {c}\n\t\tname: c1\n\t\tname: c2\n"),
    );
    assert_eq!(got, want, "{listing}");
}

/// Regression: `mount c2` took the container name `c2` for the prefix of a
/// layer whose random ID started with `c2`, and mounted that layer.
#[test]
fn a_container_name_beats_a_layer_id_prefix_for_mount() {
    let cs = Cs::new();
    cs.ok(&["create-layer", "-i", "c2aaaa"]);
    let base = first_line_of(&cs.ok(&["create-layer"]));
    cs.ok(&["create-image", "-n", "img", &base]);
    cs.ok(&["create-container", "-n", "c2", "img"]);
    let layer = cs.json(&["container", "--json", "c2"])[0]["layer"]
        .as_str()
        .unwrap()
        .to_string();
    let mounted = cs.ok(&["mount", "c2"]);
    assert!(mounted.trim().ends_with(&layer), "{mounted}");
    assert_eq!(cs.ok(&["mounted", "c2"]), "c2 mounted\n");
    assert_eq!(cs.ok(&["mounted", "c2aaaa"]), "");
    assert_eq!(cs.ok(&["unmount", "c2"]), "c2 mountpoint unmounted\n");
}

/// What is in use says so in upstream's words, and a container's layer
/// is nobody's parent, as upstream has it; nothing is created or removed.
#[test]
fn what_is_in_use_refuses_in_upstreams_words() {
    let cs = Cs::new();
    let (layer, image) = image_on_layer(&cs, "img");
    let err = cs.fails(&["delete-layer", &layer], None);
    assert!(
        err.contains(&format!(
            "layer {layer} used by image {image}: layer is in use by an image"
        )),
        "{err}"
    );
    let container = create_container(&cs, &["-n", "c", "img"]);
    let c_layer = container_json(&cs, "c")["layer"]
        .as_str()
        .unwrap()
        .to_string();
    let err = cs.fails(&["delete-layer", &c_layer], None);
    assert!(
        err.contains(&format!(
            "used by container {container}: layer is in use by a container"
        )),
        "{err}"
    );
    let err = cs.fails(&["delete-image", "img"], None);
    assert!(
        err.contains(&format!(
            "used by container {container}: image is in use by a container"
        )),
        "{err}"
    );
    let before = cs.layer_ids();
    let err = cs.fails(&["create-layer", &c_layer], None);
    assert!(
        err.contains("would-be parent layer is a container"),
        "{err}"
    );
    let err = cs.fails(&["import-layer", &c_layer], Some(&tar_with("f", b"x")));
    assert!(
        err.contains("would-be parent layer is a container"),
        "{err}"
    );
    assert_eq!(cs.layer_ids(), before);
}
