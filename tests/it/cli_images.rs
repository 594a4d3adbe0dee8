//! The image commands through the real binary: `images`,
//! `images-by-digest`, `image`, `create-image`, `delete-image`, the image
//! directories and image big data, with their exact text and JSON output,
//! sizes, digests, the file names of big data keys, and which layers
//! `delete-image` removes or keeps.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use common::tar::{Meta, TarBuilder};
use common::{blocks, expect_status, first_line_of, sha256, stderr, stdout, Cs};
use serde_json::Value;

/// `image --json ARG`, the one record.
fn image_json(cs: &Cs, arg: &str) -> Value {
    let v = cs.json(&["image", "--json", arg]);
    let list = v.as_array().expect("image --json is an array");
    assert_eq!(list.len(), 1, "{v}");
    list[0].clone()
}

fn digest_of_char(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// A one-file tar whose file holds `content`.
fn tar_with(name: &str, content: &[u8]) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.file(name, &Meta::default(), content);
    t.finish()
}

/// Creates an image and returns its ID.
fn create_image(cs: &Cs, args: &[&str]) -> String {
    let mut all = vec!["create-image"];
    all.extend_from_slice(args);
    first_line_of(&cs.ok(&all))
}

/// Writes `data` to a file in the test's temp dir and returns its path.
fn write_file(cs: &Cs, name: &str, data: &[u8]) -> PathBuf {
    let path = cs.dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn set_image_data_from_file(cs: &Cs, image: &str, key: &str, data: &[u8]) {
    let path = write_file(cs, "data.in", data);
    cs.ok(&["set-image-data", "-f", path.to_str().unwrap(), image, key]);
}

/// Every path (files and directories) under `dir`.
fn all_paths(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

fn manifest_path(cs: &Cs, layer: &str) -> PathBuf {
    cs.graph().join("manifests").join(layer)
}

#[test]
fn images_lists_id_names_digests_and_data_keys() {
    let cs = Cs::new();
    let layer = first_line_of(&cs.ok(&["create-layer"]));
    let d = digest_of_char('a');
    let a = create_image(&cs, &["-n", "first", "-n", "second", "-d", &d, &layer]);
    let b = create_image(&cs, &[]);
    let manifest = b"{\"schemaVersion\":2}".to_vec();
    set_image_data_from_file(&cs, &a, "manifest", &manifest);
    set_image_data_from_file(&cs, &a, "config", b"{}");

    let listing = cs.ok(&["images"]);
    let got = blocks(&listing);
    let mut want = BTreeMap::new();
    want.insert(
        a.clone(),
        format!(
            "{a}\n\tname: first\n\tname: second\n\tdigest: {d}\n\tdigest: {}\n\
             \tdata: manifest\n\tdata: config\n",
            sha256(&manifest)
        ),
    );
    want.insert(b.clone(), format!("{b}\n"));
    assert_eq!(got, want, "listing:\n{listing}");

    let quiet = cs.ok(&["images", "-q"]);
    let ids: BTreeSet<&str> = quiet.lines().collect();
    assert_eq!(ids, BTreeSet::from([a.as_str(), b.as_str()]), "{quiet}");
    assert_eq!(quiet.lines().count(), 2, "{quiet}");
    assert_eq!(cs.ok(&["images", "--quiet"]), quiet);
}

#[test]
fn images_json_is_an_array_of_records_with_upstream_fields() {
    let cs = Cs::new();
    let layer = first_line_of(&cs.ok(&["create-layer"]));
    let d = digest_of_char('b');
    let id = create_image(
        &cs,
        &[
            "-n",
            "one",
            "-n",
            "two",
            "-d",
            &d,
            "-m",
            "the metadata",
            &layer,
        ],
    );
    let blob = vec![7u8; 300];
    set_image_data_from_file(&cs, &id, "manifest", &blob);
    set_image_data_from_file(&cs, &id, "sig", b"s");

    let v = cs.json(&["images", "--json"]);
    let list = v.as_array().expect("images --json is an array");
    assert_eq!(list.len(), 1, "{v}");
    let r = &list[0];
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["names"], serde_json::json!(["one", "two"]));
    // Newest first: "two" was given last.
    assert_eq!(r["names-history"], serde_json::json!(["two", "one"]));
    assert_eq!(r["layer"], layer.as_str());
    assert_eq!(r["metadata"], "the metadata");
    assert_eq!(r["digest"], d.as_str());
    let created = r["created"].as_str().expect("created is a string");
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "created {created:?}"
    );
    assert_eq!(r["big-data-names"], serde_json::json!(["manifest", "sig"]));
    assert_eq!(
        r["big-data-sizes"],
        serde_json::json!({"manifest": 300, "sig": 1})
    );
    assert_eq!(
        r["big-data-digests"],
        serde_json::json!({"manifest": sha256(&blob), "sig": sha256(b"s")})
    );
    // `-j` is the short form; an empty store lists `[]`.
    assert_eq!(cs.json(&["images", "-j"]), v);
    let empty = Cs::new();
    assert_eq!(empty.ok(&["images", "--json"]), "[]\n");
    assert_eq!(empty.ok(&["images"]), "");
}

#[test]
fn images_by_digest_finds_the_digest_flag_and_manifest_data_only() {
    let cs = Cs::new();
    let d = digest_of_char('c');
    let by_flag = create_image(&cs, &["-n", "by-flag", "-d", &d]);
    let by_manifest = create_image(&cs, &["-n", "by-manifest"]);
    let manifest = b"manifest body".to_vec();
    set_image_data_from_file(&cs, &by_manifest, "manifest-sha256.abc", &manifest);
    let by_config = create_image(&cs, &["-n", "by-config"]);
    let config = b"config body".to_vec();
    set_image_data_from_file(&cs, &by_config, "config", &config);

    assert_eq!(
        cs.ok(&["images-by-digest", &d]),
        format!("{by_flag}\n\tname: by-flag\n\tdigest: {d}\n")
    );
    assert_eq!(
        cs.ok(&["images-by-digest", "-q", &d]),
        format!("{by_flag}\n")
    );
    let md = sha256(&manifest);
    assert_eq!(
        cs.ok(&["images-by-digest", &md]),
        format!(
            "{by_manifest}\n\tname: by-manifest\n\tdigest: {md}\n\tdata: manifest-sha256.abc\n"
        )
    );
    let v = cs.json(&["images-by-digest", "--json", &md]);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["id"], by_manifest.as_str());
    // A big data item whose key does not start with `manifest` is no digest.
    assert_eq!(cs.ok(&["images-by-digest", &sha256(&config)]), "");
    assert_eq!(
        cs.json(&["images-by-digest", "--json", &sha256(&config)]),
        serde_json::json!([])
    );
    // Invalid digests are errors.
    for bad in [
        "sha256:xyz",
        "nodigest",
        "sha256:",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
    ] {
        cs.fails(&["images-by-digest", bad], None);
    }
    // Two images with the same digest are both found.
    let twin = create_image(&cs, &["-d", &d]);
    let ids: BTreeSet<String> = cs
        .ok(&["images-by-digest", "-q", &d])
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(ids, BTreeSet::from([by_flag, twin]));
}

#[test]
fn image_prints_every_field_and_the_size() {
    let cs = Cs::new();
    let tar = tar_with("f", b"content");
    let layer = cs.import(&tar, &[]);
    let diff_size = cs.layer_json(&layer)["diff-size"].as_u64().unwrap();
    let d = digest_of_char('d');
    let id = create_image(&cs, &["-n", "n1", "-n", "n2", "-d", &d, &layer]);
    let manifest = vec![1u8; 10];
    set_image_data_from_file(&cs, &id, "manifest", &manifest);
    set_image_data_from_file(&cs, &id, "config", &[2u8; 5]);
    let want = format!(
        "ID: {id}\nName: n1\nName: n2\nTop Layer: {layer}\nDigest: {d}\nDigest: {}\n\
         Data: manifest\nData: config\nSize: {}\n",
        sha256(&manifest),
        diff_size + 15
    );
    assert_eq!(cs.ok(&["image", &id]), want);
    assert_eq!(cs.ok(&["image", "n2"]), want);
    assert_eq!(cs.ok(&["image", &id[..12]]), want);

    // Any unknown argument: exit 1, the known ones still printed.
    let out = cs.run(&["image", "n1", "nope"], None);
    expect_status(&out, &["image", "n1", "nope"], 1);
    assert_eq!(stdout(&out), want);
    let out = cs.run(&["image", "nope"], None);
    expect_status(&out, &["image", "nope"], 1);
    assert_eq!(stdout(&out), "");

    // JSON: an array with one record per known argument.
    let v = cs.json(&["image", "--json", "n1", "n2"]);
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|r| r["id"] == id.as_str()), "{v}");
}

#[test]
fn layerless_image_with_two_256_byte_items_has_size_512() {
    let cs = Cs::new();
    let id = create_image(&cs, &["-n", "bare"]);
    let one: Vec<u8> = (0..=255u8).collect();
    let two: Vec<u8> = (0..=255u8).rev().collect();
    set_image_data_from_file(&cs, "bare", "one", &one);
    cs.ok_with_input(&["set-image-data", "bare", "two"], &two);
    let out = cs.ok(&["image", "bare"]);
    assert!(out.lines().any(|l| l == "Size: 512"), "{out}");
    assert!(out.starts_with(&format!("ID: {id}\nName: bare\n")), "{out}");
    assert!(out.contains("Data: one\nData: two\n"), "{out}");
    assert!(!out.contains("Digest:"), "{out}");
    assert_eq!(
        cs.ok(&["get-image-data-digest", "bare", "one"]),
        format!("{}\n", sha256(&one))
    );
    assert_eq!(
        cs.ok(&["get-image-data-digest", "bare", "two"]),
        format!("{}\n", sha256(&two))
    );
    assert_eq!(cs.ok(&["get-image-data-size", "bare", "one"]), "256\n");
    let r = image_json(&cs, "bare");
    assert!(r["layer"].is_null() || r["layer"] == "", "{r}");
}

#[test]
fn image_size_is_the_layer_chain_plus_big_data() {
    let cs = Cs::new();
    let base_tar = tar_with("base", &[b'b'; 20_000]);
    let mid_tar = tar_with("mid", &[b'm'; 3_000]);
    let top_tar = tar_with("top", &[b't'; 45_000]);
    let other_tar = tar_with("other", &[b'o'; 12_000]);
    let base = cs.import(&base_tar, &[]);
    let mid = cs.import(&mid_tar, &[&base]);
    let top = cs.import(&top_tar, &[&mid]);
    let _other = cs.import(&other_tar, &[]);
    let size = |id: &str| {
        let s = cs.layer_json(id)["diff-size"].as_u64().unwrap();
        assert!(s > 0, "layer {id} has a diff-size");
        s
    };
    let (sb, sm, st) = (size(&base), size(&mid), size(&top));
    assert_eq!(sb, base_tar.len() as u64);

    let image = create_image(&cs, &["-n", "chain", &top]);
    set_image_data_from_file(&cs, &image, "config", &[0u8; 100]);
    let out = cs.ok(&["image", "chain"]);
    assert!(
        out.ends_with(&format!("Size: {}\n", sb + sm + st + 100)),
        "{out}"
    );
    create_image(&cs, &["-n", "mid-only", &mid]);
    let out = cs.ok(&["image", "mid-only"]);
    assert!(out.ends_with(&format!("Size: {}\n", sb + sm)), "{out}");
}

#[test]
fn create_image_prints_id_then_names_and_honours_every_flag() {
    let cs = Cs::new();
    let layer = first_line_of(&cs.ok(&["create-layer", "-n", "the-layer"]));
    let d = digest_of_char('e');
    let out = cs.ok(&[
        "create-image",
        "-n",
        "alpha",
        "--name",
        "beta",
        "-i",
        "my-image-id",
        "-d",
        &d,
        "-m",
        "meta value",
        "the-layer",
    ]);
    assert_eq!(out, "my-image-id\n\talpha\n\tbeta\n");
    let r = image_json(&cs, "my-image-id");
    assert_eq!(r["names"], serde_json::json!(["alpha", "beta"]));
    assert_eq!(r["layer"], layer.as_str());
    assert_eq!(r["digest"], d.as_str());
    assert_eq!(r["metadata"], "meta value");

    // Long forms, a metadata file, and --json: one record.
    let meta_file = write_file(&cs, "meta.txt", b"from a file\nsecond line\n");
    let d2 = digest_of_char('f');
    let out = cs.ok(&[
        "create-image",
        "--id",
        "second-id",
        "--digest",
        &d2,
        "--metadata-file",
        meta_file.to_str().unwrap(),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).expect("create-image --json parses");
    assert!(v.is_object(), "{v}");
    assert_eq!(v["id"], "second-id");
    assert_eq!(v["digest"], d2.as_str());
    assert_eq!(v["metadata"], "from a file\nsecond line\n");
    assert_eq!(
        image_json(&cs, "second-id")["metadata"],
        "from a file\nsecond line\n"
    );
    let short = write_file(&cs, "meta2.txt", b"short flag");
    create_image(&cs, &["-i", "third", "-f", short.to_str().unwrap()]);
    assert_eq!(image_json(&cs, "third")["metadata"], "short flag");

    // A random ID is 64 lowercase hex digits.
    let random = create_image(&cs, &[]);
    assert_eq!(random.len(), 64);
    assert!(random
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));

    // Unknown top layer, invalid digest: refused, nothing added.
    let err = cs.fails(&["create-image", "-n", "x", "no-such-layer"], None);
    assert!(err.contains("layer not known"), "{err}");
    cs.fails(&["create-image", "-n", "y", "-d", "sha256:short"], None);
    assert_eq!(cs.ok(&["images", "-q"]).lines().count(), 4);
}

#[test]
fn create_image_refuses_a_taken_name_or_id_per_kind() {
    let cs = Cs::new();
    create_image(&cs, &["-n", "taken", "-i", "taken-id"]);
    let err = cs.fails(&["create-image", "-n", "other", "-n", "taken"], None);
    // Upstream's words.
    assert!(
        err.contains("image name \"taken\" is already associated with image \"taken-id\": that name is already in use"),
        "{err}"
    );
    let err = cs.fails(&["create-image", "-i", "taken-id"], None);
    assert!(err.contains("that ID is already in use"), "{err}");
    assert_eq!(cs.ok(&["images", "-q"]), "taken-id\n");
    // Another kind may hold the same name and ID.
    cs.ok(&["create-layer", "-n", "shared", "-i", "shared-id"]);
    let out = cs.ok(&["create-image", "-n", "shared", "-i", "shared-id"]);
    assert_eq!(out, "shared-id\n\tshared\n");
    cs.ok(&["create-container", "-n", "taken", "-i", "taken-id", ""]);
    assert_eq!(cs.ok(&["images", "-q"]).lines().count(), 2);
}

#[test]
fn delete_image_test_reports_and_keeps_then_delete_removes() {
    let cs = Cs::new();
    let base = cs.import(&tar_with("a", b"a"), &[]);
    let top = cs.import(&tar_with("b", b"b"), &[&base]);
    let id = create_image(&cs, &["-n", "img", &top]);
    let dir = cs.ok(&["get-image-dir", "img"]);
    let before = cs.layer_ids();

    let out = cs.run(&["delete-image", "-t", "img"], None);
    expect_status(&out, &["delete-image", "-t", "img"], 0);
    assert_eq!(stderr(&out), format!("img: {top}\nimg: {base}\n"));
    assert_eq!(stdout(&out), "");
    let out = cs.ok(&["delete-image", "--test", "--json", "img"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"img": {"deleted-layers": [top, base], "error": ""}})
    );
    // Nothing went.
    assert_eq!(cs.layer_ids(), before);
    assert_eq!(cs.ok(&["images", "-q"]), format!("{id}\n"));
    assert!(manifest_path(&cs, &top).exists());
    assert!(Path::new(dir.trim_end()).is_dir());

    let out = cs.run(&["delete-image", "img"], None);
    expect_status(&out, &["delete-image", "img"], 0);
    assert_eq!(stderr(&out), format!("img: {top}\nimg: {base}\n"));
    assert!(cs.layer_ids().is_empty());
    assert_eq!(cs.ok(&["images", "-q"]), "");
    assert!(!manifest_path(&cs, &top).exists());
    assert!(!manifest_path(&cs, &base).exists());
    assert!(!cs.graph().join("vfs-images").join(&id).exists());
    cs.fails(&["image", "img"], None);
    let err = cs.fails(&["delete-image", "img"], None);
    assert!(err.contains("img: identifier is not an image"), "{err}");
}

#[test]
fn delete_image_json_maps_each_argument_to_its_result() {
    let cs = Cs::new();
    let layer = cs.import(&tar_with("a", b"a"), &[]);
    create_image(&cs, &["-n", "gone", &layer]);
    let out = cs.run(&["delete-image", "--json", "gone", "missing"], None);
    expect_status(&out, &["delete-image", "--json", "gone", "missing"], 1);
    let v: Value = serde_json::from_str(&stdout(&out)).expect("one JSON value");
    assert_eq!(
        v["gone"],
        serde_json::json!({"deleted-layers": [layer], "error": ""})
    );
    assert_eq!(v["missing"]["deleted-layers"], serde_json::json!([]));
    let err = v["missing"]["error"].as_str().unwrap();
    assert_eq!(err, "identifier is not an image");
    assert_eq!(v.as_object().unwrap().len(), 2);
}

#[test]
fn delete_image_keeps_a_base_layer_another_image_shares() {
    let cs = Cs::new();
    let base = cs.import(&tar_with("base", b"base"), &[]);
    let left = cs.import(&tar_with("left", b"left"), &[&base]);
    let right = cs.import(&tar_with("right", b"right"), &[&base]);
    create_image(&cs, &["-n", "one", &left]);
    create_image(&cs, &["-n", "two", &right]);

    let out = cs.run(&["delete-image", "one"], None);
    expect_status(&out, &["delete-image", "one"], 0);
    assert_eq!(stderr(&out), format!("one: {left}\n"));
    let ids: BTreeSet<String> = cs.layer_ids().into_iter().collect();
    assert_eq!(ids, BTreeSet::from([base.clone(), right.clone()]));
    assert!(manifest_path(&cs, &base).exists());
    assert!(!manifest_path(&cs, &left).exists());

    let out = cs.run(&["delete-image", "two"], None);
    expect_status(&out, &["delete-image", "two"], 0);
    assert_eq!(stderr(&out), format!("two: {right}\ntwo: {base}\n"));
    assert!(cs.layer_ids().is_empty());
    assert!(!manifest_path(&cs, &base).exists());
    assert!(!manifest_path(&cs, &right).exists());
}

#[test]
fn delete_image_of_two_images_on_the_same_top_layer() {
    let cs = Cs::new();
    let base = cs.import(&tar_with("base", b"base"), &[]);
    create_image(&cs, &["-n", "one", &base]);
    create_image(&cs, &["-n", "two", &base]);
    let out = cs.run(&["delete-image", "one"], None);
    expect_status(&out, &["delete-image", "one"], 0);
    assert_eq!(stderr(&out), "");
    assert_eq!(cs.layer_ids(), vec![base.clone()]);
    assert!(manifest_path(&cs, &base).exists());
    cs.ok(&["delete-image", "two"]);
    assert!(cs.layer_ids().is_empty());
    assert!(!manifest_path(&cs, &base).exists());
}

#[test]
fn delete_image_stops_at_a_layer_that_is_another_images_top() {
    let cs = Cs::new();
    let base = cs.import(&tar_with("base", b"base"), &[]);
    let mid = cs.import(&tar_with("mid", b"mid"), &[&base]);
    let top = cs.import(&tar_with("top", b"top"), &[&mid]);
    create_image(&cs, &["-n", "image1", &top]);
    let image2 = create_image(&cs, &["-n", "image2", &base]);

    let out = cs.run(&["delete-image", "image1"], None);
    expect_status(&out, &["delete-image", "image1"], 0);
    assert_eq!(stderr(&out), format!("image1: {top}\nimage1: {mid}\n"));
    assert_eq!(cs.layer_ids(), vec![base.clone()]);
    assert!(manifest_path(&cs, &base).exists());
    assert!(!manifest_path(&cs, &mid).exists());
    assert!(!manifest_path(&cs, &top).exists());
    assert_eq!(cs.ok(&["images", "-q"]), format!("{image2}\n"));
}

#[test]
fn delete_image_refuses_an_image_a_container_uses() {
    let cs = Cs::new();
    let layer = cs.import(&tar_with("a", b"a"), &[]);
    let image = create_image(&cs, &["-n", "used", &layer]);
    cs.ok(&["create-container", "-n", "user", "used"]);
    let layers_before = cs.layer_ids();

    let out = cs.run(&["delete-image", "used"], None);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("used: "), "{}", stderr(&out));
    let out = cs.run(&["delete-image", "--json", "used"], None);
    assert_ne!(out.status.code(), Some(0));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_ne!(v["used"]["error"], "", "{v}");
    assert_eq!(v["used"]["deleted-layers"], serde_json::json!([]));
    assert_eq!(cs.ok(&["images", "-q"]), format!("{image}\n"));
    assert_eq!(cs.layer_ids(), layers_before);
    assert!(manifest_path(&cs, &layer).exists());
    // Once the container is gone, the image can go.
    cs.ok(&["delete-container", "user"]);
    cs.ok(&["delete-image", "used"]);
    assert!(cs.layer_ids().is_empty());
}

#[test]
fn delete_layer_refuses_an_images_top_layer() {
    let cs = Cs::new();
    let layer = cs.import(&tar_with("a", b"a"), &[]);
    create_image(&cs, &["-n", "img", &layer]);
    let out = cs.run(&["delete-layer", &layer], None);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).starts_with(&format!("{layer}: ")),
        "{}",
        stderr(&out)
    );
    assert_eq!(cs.layer_ids(), vec![layer.clone()]);
    assert!(manifest_path(&cs, &layer).exists());
}

#[test]
fn image_dirs_are_userdata_under_the_graph_and_run_roots() {
    let cs = Cs::new();
    let id = create_image(&cs, &["-n", "img"]);
    let dir = cs.ok(&["get-image-dir", "img"]);
    let want = cs.graph().join("vfs-images").join(&id).join("userdata");
    assert_eq!(dir, format!("{}\n", want.display()));
    assert!(want.is_dir());
    let run = cs.ok(&["get-image-run-dir", &id]);
    let want_run = cs.run_root().join("vfs-images").join(&id).join("userdata");
    assert_eq!(run, format!("{}\n", want_run.display()));
    assert!(want_run.is_dir());
    for cmd in ["get-image-dir", "get-image-run-dir"] {
        let err = cs.fails(&[cmd, "nope"], None);
        assert!(err.contains("image not known"), "{cmd}: {err}");
    }
    cs.ok(&["delete-image", "img"]);
    assert!(!cs.graph().join("vfs-images").join(&id).exists());
    assert!(!cs.run_root().join("vfs-images").join(&id).exists());
}

#[test]
fn image_big_data_round_trips_through_every_command() {
    let cs = Cs::new();
    let id = create_image(&cs, &["-n", "img"]);
    let binary: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    let path = write_file(&cs, "in.bin", &binary);
    cs.ok(&[
        "set-image-data",
        "-f",
        path.to_str().unwrap(),
        "img",
        "blob",
    ]);
    cs.ok_with_input(&["setimagedata", &id, "second"], b"via stdin");
    cs.ok_with_input(
        &["set-image-data", "--file", "/dev/stdin", "img", "third"],
        b"3",
    );

    assert_eq!(cs.ok(&["list-image-data", "img"]), "blob\nsecond\nthird\n");
    assert_eq!(
        cs.json(&["list-image-data", "--json", "img"]),
        serde_json::json!(["blob", "second", "third"])
    );
    assert_eq!(cs.ok_bytes(&["get-image-data", "img", "blob"]), binary);
    assert_eq!(
        cs.ok_bytes(&["getimagedata", "img", "second"]),
        b"via stdin"
    );
    let out = cs.dir.path().join("out.bin");
    let out_arg = out.to_str().unwrap();
    assert_eq!(cs.ok(&["get-image-data", "-f", out_arg, "img", "blob"]), "");
    assert_eq!(std::fs::read(&out).unwrap(), binary);
    assert_eq!(cs.ok(&["get-image-data-size", "img", "blob"]), "4096\n");
    assert_eq!(
        cs.ok(&["get-image-data-digest", "img", "blob"]),
        format!("{}\n", sha256(&std::fs::read(&path).unwrap()))
    );

    // Replacing an item keeps one key and updates size and digest.
    cs.ok_with_input(&["set-image-data", "img", "blob"], b"short");
    assert_eq!(cs.ok(&["list-image-data", "img"]), "blob\nsecond\nthird\n");
    assert_eq!(cs.ok(&["get-image-data-size", "img", "blob"]), "5\n");
    let r = image_json(&cs, "img");
    assert_eq!(r["big-data-sizes"]["blob"], 5);
    assert_eq!(r["big-data-digests"]["blob"], sha256(b"short").as_str());
    // An empty item is an item.
    cs.ok_with_input(&["set-image-data", "img", "empty"], b"");
    assert_eq!(cs.ok_bytes(&["get-image-data", "img", "empty"]), b"");
    assert_eq!(cs.ok(&["get-image-data-size", "img", "empty"]), "0\n");

    // Missing keys and images are errors.
    for args in [
        &["get-image-data", "img", "nokey"][..],
        &["get-image-data-size", "img", "nokey"],
        &["get-image-data-digest", "img", "nokey"],
    ] {
        cs.fails(args, None);
    }
    for args in [
        &["get-image-data", "nope", "blob"][..],
        &["get-image-data-size", "nope", "blob"],
        &["get-image-data-digest", "nope", "blob"],
        &["list-image-data", "nope"],
    ] {
        let err = cs.fails(args, None);
        assert!(err.contains("image not known"), "{args:?}: {err}");
    }
    let err = cs.fails(&["set-image-data", "nope", "k"], Some(b"x"));
    assert!(err.contains("image not known"), "{err}");
}

#[test]
fn ids_that_are_not_one_path_component_are_refused_and_write_nothing_outside() {
    let cs = Cs::new();
    let before = all_paths(cs.dir.path());
    for args in [
        &["create-image", "-i", "../../escape"][..],
        &["create-image", "-i", ".."],
        &["create-image", "-i", "a/b"],
        &["create-image", "-i", ""],
        &["create-container", "-i", "../../escape", ""],
        &["create-container", "-i", "..", ""],
        &["create-layer", "-i", "../../escape"],
    ] {
        cs.fails(args, None);
    }
    assert!(!cs.dir.path().join("escape").exists());
    assert_eq!(cs.ok(&["images", "-q"]), "");
    assert_eq!(cs.ok(&["containers", "--json"]), "[]\n");
    assert!(cs.layer_ids().is_empty());
    let graph = cs.graph();
    let run = cs.run_root();
    for new in all_paths(cs.dir.path()).difference(&before) {
        assert!(
            new.starts_with(&graph) || new.starts_with(&run),
            "{} is outside the store",
            new.display()
        );
    }
}

/// Decodes `=<base64>` file names with either base64 alphabet.
fn decode_key_file_name(name: &str) -> Option<String> {
    let encoded = name.strip_prefix('=')?;
    let engines = [
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|e| e.decode(encoded).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

#[test]
fn big_data_keys_become_safe_file_names_inside_the_image_dir() {
    let cs = Cs::new();
    let id = create_image(&cs, &["-n", "img"]);
    let image_dir = cs.graph().join("vfs-images").join(&id);
    let plain = ["manifest", "config.json", "sha256.0123abc", "..x"];
    let odd = [
        "Manifest-Sha256:abc",
        "../../etc/x",
        "../../../../../../tmp/escape",
        "a/b",
        "..",
        ".",
        "userdata",
        "with space",
        "UPPER",
    ];
    let before = all_paths(cs.dir.path());
    for (i, key) in plain.iter().chain(odd.iter()).enumerate() {
        cs.ok_with_input(
            &["set-image-data", "img", key],
            format!("value {i}").as_bytes(),
        );
    }
    let after = all_paths(cs.dir.path());
    for new in after.difference(&before) {
        assert!(
            new.starts_with(&image_dir),
            "{} is outside {}",
            new.display(),
            image_dir.display()
        );
    }
    assert!(!cs.graph().join("etc").exists());
    assert!(!cs.graph().join("vfs-images").join("etc").exists());
    assert!(!Path::new("/tmp/escape").exists());

    let names: BTreeSet<String> = std::fs::read_dir(&image_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for key in plain {
        assert!(names.contains(key), "{key} stored verbatim: {names:?}");
        assert!(image_dir.join(key).is_file());
    }
    let decoded: BTreeSet<String> = names
        .iter()
        .filter_map(|n| decode_key_file_name(n))
        .collect();
    for key in odd {
        assert!(decoded.contains(key), "{key} stored as =base64: {names:?}");
    }
    // Every file is one of the keys (or the userdata directory).
    for name in &names {
        assert!(
            plain.contains(&name.as_str())
                || decode_key_file_name(name).is_some()
                || name == "userdata",
            "unexpected file {name}"
        );
    }
    for (i, key) in plain.iter().chain(odd.iter()).enumerate() {
        assert_eq!(
            cs.ok_bytes(&["get-image-data", "img", key]),
            format!("value {i}").into_bytes(),
            "{key}"
        );
    }
    let listed: Vec<String> = cs
        .ok(&["list-image-data", "img"])
        .lines()
        .map(String::from)
        .collect();
    let want: Vec<String> = plain
        .iter()
        .chain(odd.iter())
        .map(|k| k.to_string())
        .collect();
    assert_eq!(listed, want);
    // The userdata directory is not disturbed by a key named `userdata`.
    assert_eq!(
        cs.ok(&["get-image-dir", "img"]),
        format!("{}\n", image_dir.join("userdata").display())
    );
    assert!(image_dir.join("userdata").is_dir());
}

/// Regression: writing to a closed pipe (`containers-storage images | head
/// -0`) must exit 0 quietly, not panic.
#[test]
fn images_into_a_closed_pipe_exits_zero_without_a_panic() {
    let cs = Cs::new();
    for i in 0..3 {
        create_image(&cs, &["-n", &format!("img{i}")]);
    }
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd: Command = cs.command();
    cmd.arg("images")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}
