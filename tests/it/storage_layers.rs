//! Driver-level layers through the CLI, on both drivers: `storage-layers`
//! lists what the driver holds, `create-storage-layer [PARENT]` makes a
//! layer directory without a record, `check` reports it in upstream's
//! words and `check -r` removes it (its short link too), leaving the
//! layers with records alone.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use common::tar::{Meta, TarBuilder};
use common::{first_line_of, Cs};

const UNACCOUNTED: &str = "layer in lower level storage driver not accounted for";

fn drivers() -> Vec<&'static str> {
    let mut drivers = vec!["vfs"];
    if common::need_root("overlay") {
        drivers.push("overlay");
    }
    drivers
}

fn a_tar() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.file("hello", &Meta::default(), b"hello\n");
    t.finish()
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines().map(String::from).collect()
}

/// Runs `args` on `driver`; exit code, stdout, stderr.
fn run(cs: &Cs, driver: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--storage-driver", driver];
    all.extend_from_slice(args);
    let out = cs.run(&all, None);
    (
        out.status.code().unwrap_or(-1),
        common::stdout(&out),
        common::stderr(&out),
    )
}

/// Entries of `overlay/l/` (the short links).
fn short_links(cs: &Cs) -> usize {
    std::fs::read_dir(cs.graph().join("overlay/l"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn storage_layers_are_listed_reported_by_check_and_removed_by_check_r() {
    for driver in drivers() {
        let cs = Cs::new();
        let path = cs.dir.path().join("layer.tar");
        std::fs::write(&path, a_tar()).unwrap();
        let layer =
            first_line_of(&cs.ok_on(driver, &["import-layer", "-f", path.to_str().unwrap()]));
        let plain = first_line_of(&cs.ok_on(driver, &["create-storage-layer"]));
        let on_plain = first_line_of(&cs.ok_on(driver, &["create-storage-layer", &plain]));
        let on_layer = first_line_of(&cs.ok_on(driver, &["create-storage-layer", &layer]));
        let made = [plain.clone(), on_plain.clone(), on_layer.clone()];
        for id in &made {
            assert_eq!(id.len(), 64, "{driver}: {id}");
        }

        // Listed by storage-layers (with the layer), not by layers.
        let listed = lines(&cs.ok_on(driver, &["storage-layers"]));
        let want: BTreeSet<String> = made.iter().cloned().chain([layer.clone()]).collect();
        assert_eq!(listed, want, "{driver}");
        let json: Vec<String> =
            serde_json::from_str(&cs.ok_on(driver, &["storage-layers", "--json"])).unwrap();
        assert_eq!(json.into_iter().collect::<BTreeSet<_>>(), want, "{driver}");
        assert_eq!(
            cs.ok_on(driver, &["layers", "-q"]).trim(),
            layer,
            "{driver}"
        );
        let (code, _, _) = run(&cs, driver, &["exists", "-l", &plain]);
        assert_eq!(code, 1, "{driver}: exists -l of a storage layer");

        // What the driver holds: upstream's directories.
        if driver == "overlay" {
            let dir = cs.graph().join("overlay").join(&on_layer);
            for entry in ["diff", "work", "merged", "link"] {
                assert!(dir.join(entry).exists(), "{driver}: {entry}");
            }
            let lower = std::fs::read_to_string(dir.join("lower")).unwrap();
            let parent_link =
                std::fs::read_to_string(cs.graph().join("overlay").join(&layer).join("link"))
                    .unwrap();
            assert_eq!(lower, format!("l/{parent_link}"), "{driver}: lower");
            let lower =
                std::fs::read_to_string(cs.graph().join("overlay").join(&on_plain).join("lower"))
                    .unwrap();
            let plain_link =
                std::fs::read_to_string(cs.graph().join("overlay").join(&plain).join("link"))
                    .unwrap();
            assert_eq!(lower, format!("l/{plain_link}"), "{driver}: lower");
            // The layer's (made for the parent) and one per storage layer.
            assert_eq!(short_links(&cs), 4, "{driver}: l/");
        } else {
            // A vfs layer on a parent starts as a copy of the parent's tree.
            let tree = cs.graph().join("vfs/dir").join(&on_layer);
            assert_eq!(std::fs::read(tree.join("hello")).unwrap(), b"hello\n");
            assert!(Path::new(&cs.graph().join("vfs/dir").join(&plain)).is_dir());
        }

        // check: one line per storage layer, in upstream's words.
        let (code, out, err) = run(&cs, driver, &["check"]);
        assert_eq!(code, 1, "{driver}: {out}{err}");
        let want: BTreeSet<String> = made
            .iter()
            .map(|id| format!("layer {id}: {UNACCOUNTED}"))
            .collect();
        assert_eq!(lines(&out), want, "{driver}: {err}");

        // check -r removes them and nothing else.
        let (code, out, err) = run(&cs, driver, &["check", "-r"]);
        assert_eq!(code, 0, "{driver}: {out}{err}");
        let (code, out, err) = run(&cs, driver, &["check"]);
        assert_eq!((code, out.as_str()), (0, ""), "{driver}: {err}");
        assert_eq!(
            cs.ok_on(driver, &["storage-layers"]).trim(),
            layer,
            "{driver}"
        );
        for id in &made {
            assert!(
                !cs.graph().join(driver).join(id).exists()
                    && !cs.graph().join("vfs/dir").join(id).exists(),
                "{driver}: {id} left behind"
            );
        }
        if driver == "overlay" {
            assert_eq!(short_links(&cs), 1, "{driver}: short links left");
        }
        // The layer with a record is whole.
        let mnt = first_line_of(&cs.ok_on(driver, &["mount", &layer]));
        assert_eq!(
            std::fs::read(Path::new(&mnt).join("hello")).unwrap(),
            b"hello\n"
        );
        cs.ok_on(driver, &["unmount", &layer]);
    }
}

#[test]
fn create_storage_layer_on_an_unknown_parent_is_refused_and_leaves_nothing() {
    for driver in drivers() {
        let cs = Cs::new();
        let (code, _, err) = run(&cs, driver, &["create-storage-layer", "no-such-layer"]);
        assert_eq!(code, 1, "{driver}: {err}");
        assert!(err.contains("layer not known"), "{driver}: {err}");
        assert_eq!(cs.ok_on(driver, &["storage-layers"]), "", "{driver}");
        let (code, out, err) = run(&cs, driver, &["check"]);
        assert_eq!((code, out.as_str()), (0, ""), "{driver}: {err}");
    }
}

#[test]
fn a_storage_layer_goes_on_a_read_only_stores_layer() {
    for driver in drivers() {
        let ro = Cs::new();
        // A directory-backed layer, used in place from its store.
        let parent = first_line_of(&ro.ok_on(driver, &["create-layer"]));
        let tree = first_line_of(&ro.ok_on(driver, &["mount", &parent]));
        std::fs::write(Path::new(&tree).join("hello"), b"hello\n").unwrap();
        ro.ok_on(driver, &["unmount", &parent]);
        let cs = Cs::new();
        let opt = format!("{driver}.imagestore={}", ro.graph().display());
        let with_ro = |args: &[&str]| {
            let mut all = vec!["--storage-opt", opt.as_str()];
            all.extend_from_slice(args);
            run(&cs, driver, &all)
        };
        let (code, out, err) = with_ro(&["create-storage-layer", &parent]);
        assert_eq!(code, 0, "{driver}: {err}");
        let id = first_line_of(&out);
        // The new directory shows the parent's content below it.
        let hello = match driver {
            "vfs" => cs.graph().join("vfs/dir").join(&id).join("hello"),
            _ => {
                let lower =
                    std::fs::read_to_string(cs.graph().join("overlay").join(&id).join("lower"))
                        .unwrap();
                let link = lower.split(':').next().unwrap().to_string();
                let here = cs.graph().join("overlay").join(&link);
                let there = ro.graph().join("overlay").join(&link);
                match here.exists() {
                    true => here.join("hello"),
                    false => there.join("hello"),
                }
            }
        };
        assert_eq!(std::fs::read(&hello).unwrap(), b"hello\n", "{driver}");
        let (_, out, _) = with_ro(&["storage-layers"]);
        assert!(lines(&out).contains(&id), "{driver}: {out}");
    }
}

/// Upstream's flags: `-i` names the ID (a taken one is refused), `-l`
/// and `-r` are taken, ID maps give the tree's root to the container's
/// root, and `--json` prints the ID as a JSON string.
#[test]
fn create_storage_layer_takes_upstreams_flags() {
    use std::os::unix::fs::MetadataExt;
    let content = |cs: &Cs, driver: &str, id: &str| match driver {
        "vfs" => cs.graph().join("vfs/dir").join(id),
        _ => cs.graph().join("overlay").join(id).join("diff"),
    };
    for driver in drivers() {
        let cs = Cs::new();
        let id = "5".repeat(64);
        let out = cs.ok_on(
            driver,
            &["create-storage-layer", "-i", &id, "-l", "system_u", "-r"],
        );
        assert_eq!(out, format!("{id}\n"), "{driver}");
        assert!(content(&cs, driver, &id).is_dir(), "{driver}");
        let (code, _, err) = run(&cs, driver, &["create-storage-layer", "--id", &id]);
        assert_eq!(code, 1, "{driver}: {err}");
        assert!(err.contains("already in use"), "{driver}: {err}");
        let layer = first_line_of(&cs.ok_on(driver, &["create-layer"]));
        let (code, _, err) = run(&cs, driver, &["create-storage-layer", "-i", &layer]);
        assert_eq!(code, 1, "{driver}: {err}");
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping the ID-mapped storage layer: chown needs root");
            continue;
        }
        let out = cs.ok_on(
            driver,
            &[
                "create-storage-layer",
                "--uidmap",
                "0:100000:65536",
                "--gidmap",
                "0:200000:65536",
                "--json",
            ],
        );
        let mapped: String = serde_json::from_str(out.trim()).unwrap();
        let meta = std::fs::metadata(content(&cs, driver, &mapped)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (100000, 200000), "{driver}");
        let listed = lines(&cs.ok_on(driver, &["storage-layers"]));
        assert!(listed.contains(&id) && listed.contains(&mapped), "{driver}");
    }
}
