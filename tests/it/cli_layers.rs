//! The layer commands through the real binary: exact text and JSON output,
//! lookups, refusals, global flags, `storage.conf`, `status`, and the
//! record files (`layers.json`, `layers.lock`) after every write.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::tar::{every_kind, Meta, TarBuilder};
use common::{expect_status, run_command, stderr, stdout, Cs};
use serde_json::Value;

fn is_layer_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A small one-file tar.
fn small_tar(content: &[u8]) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.file("hello", &Meta::default(), content);
    t.finish()
}

/// The binary with no store flags and a clean environment.
fn bare_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_containers-storage"));
    cmd.env_remove("STORAGE_DRIVER")
        .env_remove("STORAGE_OPTS")
        .env("CONTAINERS_STORAGE_CONF", "/dev/null");
    cmd
}

fn run(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args);
    run_command(cmd, None)
}

/// The `status --json` pairs as a map from label to value.
fn status_pairs(out: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(out).expect("status --json parses");
    v.as_array()
        .expect("status --json is an array")
        .iter()
        .map(|pair| {
            let pair = pair.as_array().expect("each status item is an array");
            assert_eq!(pair.len(), 2, "status pair {pair:?}");
            (
                pair[0].as_str().expect("label").to_string(),
                pair[1].as_str().expect("value").to_string(),
            )
        })
        .collect()
}

fn status_value(pairs: &[(String, String)], label: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == label)
        .unwrap_or_else(|| panic!("status has no {label:?}: {pairs:?}"))
        .1
        .clone()
}

fn layers_json_path(cs: &Cs) -> PathBuf {
    cs.graph().join("vfs-layers").join("layers.json")
}

fn layers_lock_path(cs: &Cs) -> PathBuf {
    cs.graph().join("vfs-layers").join("layers.lock")
}

/// The IDs recorded in `layers.json`, which must parse as a JSON array.
fn recorded_ids(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("read layers.json");
    let v: Value = serde_json::from_slice(&bytes).expect("layers.json parses");
    v.as_array()
        .expect("layers.json is an array")
        .iter()
        .map(|r| r["id"].as_str().expect("record has an id").to_string())
        .collect()
}

#[test]
fn import_layer_prints_the_id_then_each_name_indented() {
    let cs = Cs::new();
    let out = cs.ok_with_input(&["import-layer", "-n", "a", "-n", "b"], &small_tar(b"x"));
    let out = String::from_utf8(out).unwrap();
    let id = out.lines().next().unwrap().to_string();
    assert!(is_layer_id(&id), "{out:?}");
    assert_eq!(out, format!("{id}\n\ta\n\tb\n"));
    // The long form and the alias take the same flags.
    let out = cs.ok_with_input(&["importlayer", "--name", "c"], &small_tar(b"y"));
    let out = String::from_utf8(out).unwrap();
    let id2 = out.lines().next().unwrap();
    assert_eq!(out, format!("{id2}\n\tc\n"));
    assert_ne!(id, id2);
}

#[test]
fn create_layer_prints_the_id_then_each_name_and_json_is_one_object() {
    let cs = Cs::new();
    let out = cs.ok(&["create-layer", "-n", "first", "-n", "second"]);
    let id = out.lines().next().unwrap().to_string();
    assert!(is_layer_id(&id), "{out:?}");
    assert_eq!(out, format!("{id}\n\tfirst\n\tsecond\n"));

    let out = cs.ok(&["create-layer", "--json", "-n", "third"]);
    assert!(out.ends_with('\n'), "{out:?}");
    assert_eq!(out.matches('\n').count(), 1, "one line of JSON: {out:?}");
    let v: Value = serde_json::from_str(&out).expect("create-layer --json parses");
    assert!(v.is_object(), "{v}");
    let id3 = v["id"].as_str().unwrap();
    assert!(is_layer_id(id3), "{v}");
    assert_eq!(v["names"], serde_json::json!(["third"]));

    let out = cs.ok(&["createlayer", "-j", "-i", "chosen-id", "-n", "fourth"]);
    let v: Value = serde_json::from_str(&out).expect("createlayer -j parses");
    assert_eq!(v["id"], "chosen-id");
    assert_eq!(
        cs.layer_ids(),
        vec![id, id3.to_string(), "chosen-id".to_string()]
    );
}

#[test]
fn import_layer_json_is_one_object_with_the_digests() {
    let cs = Cs::new();
    let tar = small_tar(b"content");
    let out = cs.ok_with_input(&["import-layer", "--json", "-n", "j"], &tar);
    let out = String::from_utf8(out).unwrap();
    assert!(out.ends_with('\n'), "{out:?}");
    assert_eq!(out.matches('\n').count(), 1, "{out:?}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(is_layer_id(v["id"].as_str().unwrap()), "{v}");
    assert_eq!(v["names"], serde_json::json!(["j"]));
    assert_eq!(v["diff-digest"], common::sha256(&tar));
    assert_eq!(v["diff-size"], tar.len() as u64);
}

#[test]
fn layers_lists_ids_with_names_quick_and_json_forms() {
    let cs = Cs::new();
    let base = cs.import(&every_kind(), &["-n", "base", "-n", "alias"]);
    let child = cs.import(&small_tar(b"child"), &["-n", "kid", &base]);
    let bare = cs.ok(&["create-layer"]).trim().to_string();

    assert_eq!(
        cs.ok(&["layers"]),
        format!("{base}\n\tname: base\n\tname: alias\n{child}\n\tname: kid\n{bare}\n")
    );
    assert_eq!(
        cs.ok(&["layers", "-q"]),
        format!("{base}\n{child}\n{bare}\n")
    );
    assert_eq!(
        cs.ok(&["layers", "--quick"]),
        format!("{base}\n{child}\n{bare}\n")
    );

    let out = cs.ok(&["layers", "--json"]);
    assert!(
        out.ends_with('\n') && out.matches('\n').count() == 1,
        "{out:?}"
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let records = v.as_array().expect("layers --json is an array");
    assert_eq!(records.len(), 3);
    let (b, c) = (&records[0], &records[1]);
    assert_eq!(b["id"], base.as_str());
    assert_eq!(b["names"], serde_json::json!(["base", "alias"]));
    assert_eq!(c["parent"], base.as_str());
    assert!(
        b.get("parent").is_none(),
        "a base layer has no parent key: {b}"
    );
    for record in [b, c] {
        for key in [
            "id",
            "created",
            "compressed-diff-digest",
            "compressed-size",
            "diff-digest",
            "diff-size",
            "uidset",
            "gidset",
        ] {
            assert!(record.get(key).is_some(), "record lacks {key:?}: {record}");
        }
        let created = record["created"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(created).is_ok(),
            "created is RFC 3339: {created}"
        );
        for key in record.as_object().unwrap().keys() {
            assert!(!key.contains('_'), "upstream names use dashes: {key}");
        }
    }
    assert_eq!(b["uidset"], serde_json::json!([0, 1000]));
    assert_eq!(b["gidset"], serde_json::json!([0, 100]));
    assert_eq!(b["diff-digest"], common::sha256(&every_kind()));
    // Grouped short bools: -q and -j together.
    let grouped: Value = serde_json::from_str(&cs.ok(&["layers", "-qj"])).unwrap();
    assert_eq!(grouped, v);
}

#[test]
fn layers_tree_draws_children_under_parents_as_upstream_does() {
    let cs = Cs::new();
    let parent = cs
        .ok(&["create-layer", "-n", "p"])
        .lines()
        .next()
        .unwrap()
        .to_string();
    let other = cs
        .ok(&["create-layer", "-n", "o"])
        .lines()
        .next()
        .unwrap()
        .to_string();
    let child = cs
        .ok(&["create-layer", "-n", "c", &parent])
        .lines()
        .next()
        .unwrap()
        .to_string();
    let grandchild = cs.import(&small_tar(b"g"), &[&child]);
    // Upstream's drawing: `(base)` at the root, `├─`/`└─` before each
    // child, notes under it, two columns per generation.
    let tree = cs.ok(&["layers", "-t"]);
    assert_eq!(
        tree,
        format!(
            "(base)\n├─{parent}\n│ name: p\n│ └─{child}\n│   name: c\n│   └─{grandchild}\n└─{other}\n  name: o\n"
        )
    );
}

#[test]
fn layer_prints_id_parent_and_names() {
    let cs = Cs::new();
    let parent = cs.import(&small_tar(b"p"), &["-n", "p1", "-n", "p2"]);
    let child = cs.import(&small_tar(b"c"), &["-n", "c1", &parent]);
    assert_eq!(
        cs.ok(&["layer", &parent]),
        format!("ID: {parent}\nName: p1\nName: p2\n")
    );
    assert_eq!(
        cs.ok(&["layer", &child]),
        format!("ID: {child}\nParent: {parent}\nName: c1\n")
    );
    assert_eq!(
        cs.ok(&["layer", "c1", "p2"]),
        format!("ID: {child}\nParent: {parent}\nName: c1\nID: {parent}\nName: p1\nName: p2\n")
    );
    let v: Value = serde_json::from_str(&cs.ok(&["layer", "--json", "c1"])).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], child.as_str());
    assert_eq!(v[0]["parent"], parent.as_str());
}

#[test]
fn layer_with_an_unknown_argument_exits_1_but_prints_the_known_ones() {
    let cs = Cs::new();
    let id = cs.import(&small_tar(b"k"), &["-n", "known"]);
    let out = cs.run(&["layer", "no-such-layer"], None);
    expect_status(&out, &["layer", "no-such-layer"], 1);
    assert_eq!(stdout(&out), "");

    let out = cs.run(&["layer", "known", "no-such-layer"], None);
    expect_status(&out, &["layer", "known", "no-such-layer"], 1);
    assert_eq!(stdout(&out), format!("ID: {id}\nName: known\n"));

    let out = cs.run(&["layer", "no-such-layer", "known"], None);
    expect_status(&out, &["layer", "no-such-layer", "known"], 1);
    assert_eq!(stdout(&out), format!("ID: {id}\nName: known\n"));
}

#[test]
fn layer_lookup_by_name_and_unique_prefix_but_not_an_ambiguous_prefix() {
    let cs = Cs::new();
    let a = cs.ok(&["create-layer", "-i", "cafe01", "-n", "alpha"]);
    let b = cs.ok(&["create-layer", "-i", "cafe02"]);
    let c = cs.ok(&["create-layer", "-i", "beef03"]);
    assert_eq!(
        (a.trim(), b.trim(), c.trim()),
        ("cafe01\n\talpha", "cafe02", "beef03")
    );

    assert_eq!(cs.ok(&["layer", "alpha"]), "ID: cafe01\nName: alpha\n");
    assert_eq!(cs.ok(&["layer", "cafe02"]), "ID: cafe02\n");
    assert_eq!(cs.ok(&["layer", "bee"]), "ID: beef03\n");
    let out = cs.run(&["layer", "cafe"], None);
    expect_status(&out, &["layer", "cafe"], 1);
    assert_eq!(stdout(&out), "", "an ambiguous prefix finds nothing");
    // A random 64-hex ID by a unique prefix of it.
    let id = cs.import(&small_tar(b"r"), &[]);
    assert_eq!(cs.ok(&["layer", &id[..12]]), format!("ID: {id}\n"));
    assert_eq!(cs.ok_bytes(&["diff", "-u", &id[..12]]), small_tar(b"r"));
}

#[test]
fn a_duplicate_name_is_refused_and_adds_no_layer() {
    let cs = Cs::new();
    let first = cs.import(&small_tar(b"1"), &["-n", "taken"]);
    let before = std::fs::read(layers_json_path(&cs)).unwrap();

    let err = cs.fails(&["create-layer", "-n", "free", "-n", "taken"], None);
    assert!(err.contains("taken: that name is already in use"), "{err}");
    let err = cs.fails(&["import-layer", "-n", "taken"], Some(&small_tar(b"2")));
    assert!(err.contains("taken: that name is already in use"), "{err}");

    assert_eq!(cs.layer_ids(), vec![first]);
    assert_eq!(std::fs::read(layers_json_path(&cs)).unwrap(), before);
    let manifests = std::fs::read_dir(cs.graph().join("manifests"))
        .unwrap()
        .count();
    assert_eq!(manifests, 1, "no manifest for the refused import");
    // The name that was not taken is still free.
    cs.ok(&["create-layer", "-n", "free"]);
}

#[test]
fn a_duplicate_id_is_refused_and_adds_no_layer() {
    let cs = Cs::new();
    cs.ok(&["create-layer", "-i", "fixed-id", "-n", "one"]);
    let before = std::fs::read(layers_json_path(&cs)).unwrap();

    let err = cs.fails(&["create-layer", "-i", "fixed-id", "-n", "two"], None);
    assert!(err.contains("fixed-id: that ID is already in use"), "{err}");
    let err = cs.fails(
        &["import-layer", "-i", "fixed-id", "-n", "three"],
        Some(&small_tar(b"x")),
    );
    assert!(err.contains("fixed-id: that ID is already in use"), "{err}");

    assert_eq!(cs.layer_ids(), vec!["fixed-id".to_string()]);
    assert_eq!(std::fs::read(layers_json_path(&cs)).unwrap(), before);
    assert_eq!(cs.ok(&["layer", "fixed-id"]), "ID: fixed-id\nName: one\n");
    // The refused names stay free.
    cs.ok(&["create-layer", "-n", "two"]);
}

#[test]
fn an_id_that_is_not_one_path_component_is_refused() {
    let cs = Cs::new();
    for bad in ["../evil", "a/b", ".hidden", "..", "with space"] {
        let err = cs.fails(&["create-layer", "-i", bad], None);
        assert!(err.contains(bad), "{bad:?}: {err}");
        let err = cs.fails(&["import-layer", "-i", bad], Some(&small_tar(b"x")));
        assert!(err.contains(bad), "{bad:?}: {err}");
    }
    assert!(cs.layer_ids().is_empty());
    assert!(!cs.graph().join("evil").exists() && !cs.dir.path().join("evil").exists());
    assert_eq!(
        std::fs::read_dir(cs.graph().join("manifests"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn import_onto_an_unknown_parent_is_refused_and_adds_no_layer() {
    let cs = Cs::new();
    let err = cs.fails(
        &["import-layer", "-n", "orphan", "no-such-parent"],
        Some(&small_tar(b"o")),
    );
    assert!(err.contains("no-such-parent: layer not known"), "{err}");
    assert!(cs.layer_ids().is_empty());
    let err = cs.fails(&["create-layer", "no-such-parent"], None);
    assert!(err.contains("layer not known"), "{err}");
    assert!(cs.layer_ids().is_empty());
}

#[test]
fn delete_layer_refuses_a_layer_with_children() {
    let cs = Cs::new();
    let parent = cs.import(&every_kind(), &["-n", "parent"]);
    let child = cs.import(&small_tar(b"kid"), &["-n", "child", &parent]);

    let out = cs.run(&["delete-layer", "parent"], None);
    expect_status(&out, &["delete-layer", "parent"], 1);
    let err = stderr(&out);
    assert!(err.starts_with("parent: "), "{err}");
    assert!(
        err.contains(&parent)
            && err.contains(&format!("used by layer {child}: layer has children")),
        "{err}"
    );
    assert_eq!(cs.layer_ids(), vec![parent.clone(), child.clone()]);
    assert!(cs.graph().join("manifests").join(&parent).is_file());

    let out = cs.run(&["delete-layer", "--json", "parent"], None);
    expect_status(&out, &["delete-layer", "--json", "parent"], 1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let message = v["parent"]
        .as_str()
        .expect("an error message keyed by the argument");
    assert!(message.contains("layer has children"), "{v}");
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
}

#[test]
fn delete_layer_removes_the_record_and_the_manifest() {
    let cs = Cs::new();
    let parent = cs.import(&every_kind(), &["-n", "parent"]);
    let child = cs.import(&small_tar(b"kid"), &["-n", "child", &parent]);
    let manifests = cs.graph().join("manifests");
    assert!(manifests.join(&child).is_file());

    let out = cs.run(&["delete-layer", "--json", "child"], None);
    expect_status(&out, &["delete-layer", "--json", "child"], 0);
    assert_eq!(stdout(&out), "{\"child\":\"\"}\n");
    assert!(
        !manifests.join(&child).exists(),
        "manifest of a deleted layer is gone"
    );
    assert_eq!(cs.layer_ids(), vec![parent.clone()]);
    assert!(!recorded_ids(&layers_json_path(&cs)).contains(&child));

    // Now the parent has no children; plain form prints nothing on success.
    let out = cs.run(&["deletelayer", &parent], None);
    expect_status(&out, &["deletelayer", &parent], 0);
    assert_eq!((stdout(&out), stderr(&out)), (String::new(), String::new()));
    assert!(!manifests.join(&parent).exists());
    assert_eq!(cs.ok(&["layers"]), "");
    assert_eq!(recorded_ids(&layers_json_path(&cs)), Vec::<String>::new());

    let out = cs.run(&["delete-layer", "--json", "child"], None);
    expect_status(&out, &["delete-layer", "--json", "child"], 1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        v["child"].as_str().unwrap() == "identifier is not a layer",
        "{v}"
    );
}

#[test]
fn global_flags_work_after_the_command_and_the_last_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let g = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (a, b, c, r) = (g("a"), g("b"), g("c"), g("run"));

    let out = run(
        bare_command(),
        &[
            "create-layer",
            "-n",
            "x",
            "--graph",
            &a,
            "--run",
            &r,
            "-s",
            "vfs",
        ],
    );
    expect_status(&out, &["create-layer", "--graph", &a], 0);
    assert!(Path::new(&a).join("vfs-layers/layers.json").is_file());

    let out = run(
        bare_command(),
        &["layers", "--graph", &a, "-R", &r, "--storage-driver", "vfs"],
    );
    expect_status(&out, &["layers", "--graph", &a], 0);
    assert!(stdout(&out).contains("\tname: x\n"), "{}", stdout(&out));

    // Repeated: the last one wins, before or after the command name.
    let out = run(
        bare_command(),
        &[
            "--graph", &b, "-s", "vfs", "status", "--json", "--graph", &c, "--run", &r,
        ],
    );
    expect_status(&out, &["status", "--graph", &c], 0);
    assert_eq!(status_value(&status_pairs(&stdout(&out)), "Root"), c);
    let out = run(
        bare_command(),
        &["-g", &c, "-g", &a, "-R", &r, "-s", "vfs", "layers", "-q"],
    );
    expect_status(&out, &["-g", &c, "-g", &a, "layers"], 0);
    assert_eq!(
        stdout(&out).lines().count(),
        1,
        "the store at {a} holds one layer"
    );
    assert!(
        !Path::new(&b).join("vfs-layers").exists(),
        "the overridden graph root is unused"
    );
}

#[test]
fn debug_flag_forms() {
    let cs = Cs::new();
    let out = cs.run(&["--debug=false", "layers"], None);
    expect_status(&out, &["--debug=false", "layers"], 0);
    let out = cs.run(&["layers", "--debug=false"], None);
    expect_status(&out, &["layers", "--debug=false"], 0);

    let quiet = cs.run(&["import-layer", "-n", "quiet"], Some(&small_tar(b"q")));
    expect_status(&quiet, &["import-layer"], 0);
    assert_eq!(stderr(&quiet), "", "no logging without --debug");

    let out = cs.run(
        &["--debug", "import-layer", "-n", "loud"],
        Some(&small_tar(b"l")),
    );
    expect_status(&out, &["--debug", "import-layer"], 0);
    let id = stdout(&out).lines().next().unwrap().to_string();
    let err = stderr(&out);
    assert!(
        err.contains("debug: importing") && err.contains(&id),
        "{err}"
    );

    let out = cs.run(
        &["import-layer", "-D", "-n", "short"],
        Some(&small_tar(b"s")),
    );
    expect_status(&out, &["import-layer", "-D"], 0);
    assert!(stderr(&out).contains("importing"), "{}", stderr(&out));
}

#[test]
fn unknown_commands_flags_and_argument_counts_are_errors() {
    let cs = Cs::new();
    let out = cs.run(&["frobnicate"], None);
    expect_status(&out, &["frobnicate"], 1);
    assert_eq!(stderr(&out), "frobnicate: unrecognized command.\n");

    let out = cs.run(&["layer"], None);
    expect_status(&out, &["layer"], 1);
    assert_eq!(stderr(&out), "layer: more arguments required.\n");

    let out = cs.run(&["layers", "extra"], None);
    expect_status(&out, &["layers", "extra"], 1);
    assert_eq!(stderr(&out), "layers: too many arguments.\n");

    let out = cs.run(&["create-layer", "p1", "p2"], None);
    expect_status(&out, &["create-layer", "p1", "p2"], 1);
    assert_eq!(stderr(&out), "create-layer: too many arguments.\n");

    let out = cs.run(&["diff"], None);
    expect_status(&out, &["diff"], 1);
    assert_eq!(stderr(&out), "diff: more arguments required.\n");

    let out = cs.run(&["layers", "--no-such-flag"], None);
    expect_status(&out, &["layers", "--no-such-flag"], 125);
    assert!(stderr(&out).contains("--no-such-flag"), "{}", stderr(&out));
    let out = cs.run(&["layers", "-Z"], None);
    expect_status(&out, &["layers", "-Z"], 125);
    assert!(cs.layer_ids().is_empty());
}

#[test]
fn a_relative_graph_root_is_made_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    let mut cmd = bare_command();
    cmd.current_dir(&cwd);
    let out = run(
        cmd,
        &[
            "--graph",
            "rel/graph",
            "--run",
            "rel-run",
            "-s",
            "vfs",
            "status",
            "--json",
        ],
    );
    expect_status(&out, &["--graph", "rel/graph", "status"], 0);
    let pairs = status_pairs(&stdout(&out));
    assert_eq!(
        status_value(&pairs, "Root"),
        cwd.join("rel/graph").to_str().unwrap()
    );
    assert_eq!(
        status_value(&pairs, "Run Root"),
        cwd.join("rel-run").to_str().unwrap()
    );
    assert!(cwd.join("rel/graph/vfs-layers").is_dir());
}

#[test]
fn status_prints_roots_driver_and_pool_figures() {
    let cs = Cs::new();
    let tar = every_kind();
    cs.import(&tar, &[]);
    let out = cs.run(&["status"], None);
    expect_status(&out, &["status"], 0);
    assert_eq!(stdout(&out), "", "status prints on stderr");
    let err = stderr(&out);
    let graph = cs.graph();
    let run_root = cs.run_root();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines[0], format!("Root: {}", graph.display()));
    assert_eq!(lines[1], format!("Run Root: {}", run_root.display()));
    assert_eq!(lines[2], "Driver Name: vfs");
    assert!(lines[3].starts_with("Driver Options: "), "{err}");
    for label in [
        "Pool Logical Bytes: ",
        "Pool Stored Bytes: ",
        "Pool Dedup Ratio: ",
        "Pool Chunks: ",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(label)),
            "{label:?} missing:\n{err}"
        );
    }

    let out = cs.ok(&["status", "--json"]);
    assert!(
        out.ends_with('\n') && out.matches('\n').count() == 1,
        "{out:?}"
    );
    let pairs = status_pairs(&out);
    // The text form is the JSON pairs, one per line.
    let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    assert_eq!(lines, text);
    assert_eq!(status_value(&pairs, "Driver Name"), "vfs");
    let logical: u64 = status_value(&pairs, "Pool Logical Bytes").parse().unwrap();
    assert_eq!(logical, tar.len() as u64);
    let stored: u64 = status_value(&pairs, "Pool Stored Bytes").parse().unwrap();
    assert!(
        stored > 0 && stored < logical,
        "every_kind compresses: {stored} of {logical}"
    );
    let chunks: u64 = status_value(&pairs, "Pool Chunks").parse().unwrap();
    assert!(chunks >= 1, "{pairs:?}");
    let ratio: f64 = status_value(&pairs, "Pool Dedup Ratio").parse().unwrap();
    assert!(
        (ratio - logical as f64 / stored as f64).abs() < 0.01,
        "{ratio} {pairs:?}"
    );
}

/// On overlay, upstream's driver facts follow `Driver Options`, as the
/// Go CLI prints them for the same graph root.
#[test]
fn overlay_status_has_the_drivers_facts_as_upstreams() {
    if !common::need_root("overlay") {
        return;
    }
    let cs = Cs::new();
    let out = cs.run(&["--storage-driver", "overlay", "status"], None);
    expect_status(&out, &["status"], 0);
    let ours: Vec<String> = stderr(&out).lines().map(String::from).collect();
    assert_eq!(
        ours[4..10]
            .iter()
            .map(|l| l.split(": ").next().unwrap())
            .collect::<Vec<_>>(),
        [
            "Backing Filesystem",
            "Supports d_type",
            "Native Overlay Diff",
            "Using metacopy",
            "Supports shifting",
            "Supports volatile",
        ],
        "{ours:?}"
    );
    // The kernel's answers are kept where upstream's driver keeps them.
    let cache = cs.run_root().join("overlay");
    for feature in ["idmapped-lower-dir", "volatile"] {
        let yes = ours.iter().any(|l| {
            l.starts_with(match feature {
                "volatile" => "Supports volatile: true",
                _ => "Supports shifting: true",
            })
        });
        assert!(
            cache.join(format!("{feature}-{yes}")).exists(),
            "{feature}: {ours:?}"
        );
    }
    let go = std::path::Path::new("/usr/bin/containers-storage");
    if go.exists() {
        let out = std::process::Command::new(go)
            .arg("--graph")
            .arg(cs.graph())
            .arg("--run")
            .arg(cs.run_root())
            .args(["--storage-driver", "overlay", "status"])
            .output()
            .unwrap();
        let theirs: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(ours[..8], theirs[..8], "ours, then the Go CLI's");
        // Go's driver binds `overlay/` on itself and leaves it mounted.
        let _ = nix::mount::umount2(
            &cs.graph().join("overlay"),
            nix::mount::MntFlags::MNT_DETACH,
        );
    }
    let out = cs.run(&["--storage-driver", "vfs", "status"], None);
    assert!(!stderr(&out).contains("Backing Filesystem"));
}

#[test]
fn version_prints_the_version() {
    let cs = Cs::new();
    // On standard error, as upstream prints it.
    let out = cs.run(&["version"], None);
    expect_status(&out, &["version"], 0);
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        format!("Version: {}\n", env!("CARGO_PKG_VERSION"))
    );
    // Pairs, as upstream's JSON of its `[][2]string`.
    let v: Value = serde_json::from_str(&cs.ok(&["version", "--json"])).unwrap();
    assert_eq!(
        v,
        serde_json::json!([["Version", env!("CARGO_PKG_VERSION")]])
    );
}

#[test]
fn a_readonly_layer_refuses_writes_but_is_not_listed_as_a_read_only_stores() {
    // Upstream's `Read Only: true` means "in a read-only store".
    let cs = Cs::new();
    let id = crate::common::first_line_of(&cs.ok(&["create-layer", "-r"]));
    let shown = cs.ok(&["layer", &id]);
    assert!(!shown.contains("Read Only"), "{shown}");
    assert_eq!(shown, format!("ID: {id}\n"));
    let err = cs.fails(&["applydiff", &id], Some(b""));
    assert!(err.contains("read-only"), "{err}");
}

#[test]
fn storage_conf_places_the_store_when_no_root_flags_are_given() {
    let dir = tempfile::tempdir().unwrap();
    let graph = dir.path().join("conf-graph");
    let run_root = dir.path().join("conf-run");
    let conf = dir.path().join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            graph.display(),
            run_root.display()
        ),
    )
    .unwrap();
    let command = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_containers-storage"));
        cmd.env_remove("STORAGE_DRIVER")
            .env_remove("STORAGE_OPTS")
            .env("CONTAINERS_STORAGE_CONF", &conf)
            .current_dir(dir.path());
        cmd
    };
    let out = run(command(), &["create-layer", "-n", "via-conf"]);
    expect_status(&out, &["create-layer"], 0);
    let id = stdout(&out).lines().next().unwrap().to_string();
    assert_eq!(
        recorded_ids(&graph.join("vfs-layers/layers.json")),
        vec![id]
    );

    let out = run(command(), &["status", "--json"]);
    expect_status(&out, &["status"], 0);
    let pairs = status_pairs(&stdout(&out));
    assert_eq!(status_value(&pairs, "Root"), graph.to_str().unwrap());
    assert_eq!(status_value(&pairs, "Run Root"), run_root.to_str().unwrap());
    assert_eq!(status_value(&pairs, "Driver Name"), "vfs");

    // A flag still overrides the file.
    let other = dir.path().join("flag-graph");
    let out = run(
        command(),
        &["--graph", other.to_str().unwrap(), "layers", "-q"],
    );
    expect_status(&out, &["--graph", "layers"], 0);
    assert_eq!(stdout(&out), "");
    assert!(other.join("vfs-layers").is_dir());
}

#[test]
fn layers_lock_changes_on_every_write_and_layers_json_stays_an_array() {
    let cs = Cs::new();
    let lock = layers_lock_path(&cs);
    let json = layers_json_path(&cs);
    let mut seen = Vec::new();
    let mut check = |what: &str, expect: &[&String]| {
        let token = std::fs::read(&lock).unwrap();
        assert!(!token.is_empty(), "{what}: empty lock file");
        assert!(
            !seen.contains(&token),
            "{what}: lock content did not change"
        );
        seen.push(token);
        let ids = recorded_ids(&json);
        let expect: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
        assert_eq!(ids, expect, "{what}");
    };
    let a = cs.import(&small_tar(b"a"), &[]);
    check("import", &[&a]);
    let b = cs.ok(&["create-layer", &a]).trim().to_string();
    check("create", &[&a, &b]);
    let c = cs.import(&every_kind(), &["-n", "c"]);
    check("second import", &[&a, &b, &c]);
    cs.ok(&["delete-layer", &b]);
    check("delete", &[&a, &c]);

    // Reads leave the token alone.
    let token = std::fs::read(&lock).unwrap();
    cs.ok(&["layers"]);
    cs.ok(&["layer", &a]);
    cs.ok_bytes(&["diff", "-u", &c]);
    assert_eq!(std::fs::read(&lock).unwrap(), token);
}

#[test]
fn a_created_layer_diffs_as_an_empty_archive() {
    let cs = Cs::new();
    let id = cs.ok(&["create-layer"]).trim().to_string();
    assert_eq!(cs.ok_bytes(&["diff", "-u", &id]), vec![0u8; 1024]);
    assert_eq!(
        cs.ok_bytes(&["diff", &id]),
        vec![0u8; 1024],
        "default: uncompressed"
    );
    let v = cs.layer_json(&id);
    assert!(v.get("compression").is_none(), "{v}");
}

#[test]
fn concurrent_imports_all_land_and_a_contested_name_goes_to_one() {
    let cs = Cs::new();
    let tars: Vec<Vec<u8>> = (0..4u8)
        .map(|i| {
            let mut t = TarBuilder::new();
            t.file("shared", &Meta::default(), &vec![7u8; 200_000]);
            t.file("own", &Meta::default(), &vec![i; 300_000 + i as usize]);
            t.finish()
        })
        .collect();
    let outputs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = tars
            .iter()
            .enumerate()
            .map(|(i, tar)| {
                let cs = &cs;
                s.spawn(move || {
                    let name = format!("n{i}");
                    cs.run(&["import-layer", "-n", &name, "-n", "contested"], Some(tar))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<usize> = (0..4).filter(|&i| outputs[i].status.success()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one import gets the contested name"
    );
    for (i, out) in outputs.iter().enumerate() {
        if !winners.contains(&i) {
            assert!(
                stderr(out).contains("contested: that name is already in use"),
                "{}",
                stderr(out)
            );
        }
    }
    // Without the contested name, all land, concurrently.
    let outputs: Vec<(usize, Output)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .filter(|i| !winners.contains(i))
            .map(|i| {
                let (cs, tar) = (&cs, &tars[i]);
                s.spawn(move || {
                    (
                        i,
                        cs.run(&["import-layer", "-n", &format!("n{i}")], Some(tar)),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (_, out) in &outputs {
        expect_status(out, &["import-layer"], 0);
    }
    assert_eq!(cs.layer_ids().len(), 4);
    for (i, tar) in tars.iter().enumerate() {
        assert_eq!(
            &cs.ok_bytes(&["diff", "-u", &format!("n{i}")]),
            tar,
            "layer n{i}"
        );
    }
    assert_eq!(recorded_ids(&layers_json_path(&cs)).len(), 4);
}

/// Standard error that fails every write: a pipe whose reading end is
/// closed (`cs ... 2>&1 | true` after `true` has gone), or no descriptor
/// at all (`2>&-`).
enum BrokenStderr {
    Pipe,
    Closed,
}

#[test]
#[allow(unsafe_code)] // pre_exec, to close the child's standard error
fn commands_with_a_broken_or_closed_standard_error_exit_with_their_own_code() {
    use std::os::unix::process::CommandExt;
    let cs = Cs::new();
    cs.ok(&["create-layer", "-n", "there"]);
    for how in [BrokenStderr::Pipe, BrokenStderr::Closed] {
        for (args, code) in [
            (&["delete-layer", "no-such-layer"][..], 1),
            (&["create-layer", "-n", "there"], 1),
            (&["no-such-command"], 1),
            (&["status"], 0),
        ] {
            let mut cmd = cs.command();
            cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
            match how {
                BrokenStderr::Pipe => {
                    let (reader, writer) = nix::unistd::pipe().unwrap();
                    drop(reader);
                    cmd.stderr(Stdio::from(writer));
                }
                // SAFETY: only close(2) runs in the child between fork
                // and exec.
                BrokenStderr::Closed => unsafe {
                    cmd.pre_exec(|| {
                        libc::close(2);
                        Ok(())
                    });
                },
            }
            let status = cmd.status().unwrap();
            assert_eq!(status.code(), Some(code), "{args:?}");
        }
    }
    assert_eq!(cs.layer_ids().len(), 1);
}

#[test]
fn mount_unmount_and_mounted_report_every_argument_as_upstream_does() {
    let cs = Cs::new();
    let id = common::first_line_of(&cs.ok(&["create-layer"]));
    // A bad argument among good ones: the others are done, the bad one
    // is reported in upstream's words, and the exit code is 1.
    let out = cs.run(&["mount", &id, "no-such-layer"], None);
    expect_status(&out, &["mount"], 1);
    let printed = stdout(&out);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].ends_with(&id), "{lines:?}");
    assert_eq!(lines[1], "");
    assert!(
        stderr(&out).contains("while mounting no-such-layer"),
        "{}",
        stderr(&out)
    );
    let out = cs.run(&["mounted", "--json", &id, "no-such-layer"], None);
    expect_status(&out, &["mounted"], 1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    // Upstream's fields first, in its order.
    assert!(
        stdout(&out).starts_with(&format!("[{{\"id\":\"{id}\",\"error\":\"\",")),
        "{v}"
    );
    assert_eq!(v[0]["id"], id.as_str());
    assert_eq!(v[0]["mounted"], true);
    assert_eq!(v[0]["error"], "");
    assert!(v[1]["error"].as_str().unwrap().contains("not known"), "{v}");
    let v: Value = serde_json::from_str(&cs.ok(&["mount", "--json", &id])).unwrap();
    assert_eq!(v[0]["error"], "");
    assert!(v[0]["mountpoint"].as_str().unwrap().ends_with(&id), "{v}");
    let out = cs.run(&["unmount", "--json", &id, "no-such-layer"], None);
    expect_status(&out, &["unmount"], 1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (&v[0]["error"], &v[0]["unmounted"]),
        (&Value::from(""), &Value::from(false))
    );
    let out = cs.run(&["unmount", &id, "no-such-layer"], None);
    expect_status(&out, &["unmount"], 1);
    assert_eq!(stdout(&out), format!("{id} mountpoint unmounted\n"));
    assert!(
        stderr(&out).contains("layer not known while unmounting no-such-layer"),
        "{}",
        stderr(&out)
    );
    // An image's top layer is unmounted without a word, as upstream's.
    cs.ok(&["create-image", "-n", "img", &id]);
    cs.ok(&["mount", "-r", "img"]);
    assert_eq!(cs.ok(&["unmount", "img"]), "");
    assert_eq!(cs.ok(&["mounted", &id]), "");
}
