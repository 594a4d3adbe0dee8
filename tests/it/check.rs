//! `check` through the CLI: a real store is built, damaged in one way at a
//! time, and the upstream-style problem lines, exit codes, `--quick`,
//! `--json`, and `--repair` with and without `--force` are pinned. Repairs
//! must remove exactly the damaged items; what survives must still export
//! byte for byte.

use crate::common;

use std::path::{Path, PathBuf};

use common::tar::{Meta, TarBuilder};
use common::{random_bytes, Cs};

/// A layer tar: `data/` and `data/<name>` holding `size` random bytes.
fn layer_tar(name: &str, seed: u64, size: usize) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir(
        "data/",
        &Meta {
            mode: 0o755,
            ..Meta::default()
        },
    );
    t.file(
        &format!("data/{name}"),
        &Meta::default(),
        &random_bytes(seed, size),
    );
    t.finish()
}

/// Runs `check ARGS`; returns exit code, stdout and stderr.
fn check(cs: &Cs, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let out = cs.run(&all, None);
    (
        out.status.code().unwrap_or(-1),
        common::stdout(&out),
        common::stderr(&out),
    )
}

/// Requires `check ARGS` to exit `code`; returns its stdout lines.
fn check_lines(cs: &Cs, args: &[&str], code: i32) -> Vec<String> {
    let (got, out, err) = check(cs, args);
    assert_eq!(got, code, "check {args:?}\nstdout: {out}\nstderr: {err}");
    out.lines().map(String::from).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A store with two chained layers under an image with a container, and
/// another image on a layer of its own.
struct Fixture {
    cs: Cs,
    base: String,
    top: String,
    image: String,
    container: String,
    other: String,
    other_image: String,
    base_tar: Vec<u8>,
    top_tar: Vec<u8>,
    other_tar: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(Cs::new(), &[])
    }

    /// Builds the fixture; `global` flags go before every command.
    fn with(cs: Cs, global: &[&str]) -> Fixture {
        let args = |a: &[&str]| -> Vec<String> {
            global
                .iter()
                .chain(a.iter())
                .map(|s| s.to_string())
                .collect()
        };
        let run = |a: &[&str], input: Option<&[u8]>| -> String {
            let owned = args(a);
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            let out = cs.run(&refs, input);
            common::expect_status(&out, &refs, 0);
            common::first_line_of(&common::stdout(&out))
        };
        let base_tar = layer_tar("base", 1, 200 << 10);
        let top_tar = layer_tar("top", 2, 100 << 10);
        let other_tar = layer_tar("other", 3, 150 << 10);
        let base = run(&["import-layer"], Some(&base_tar));
        let top = run(&["import-layer", &base], Some(&top_tar));
        let image = run(&["create-image", &top], None);
        let container = run(&["create-container", &image], None);
        let other = run(&["import-layer"], Some(&other_tar));
        let other_image = run(&["create-image", &other], None);
        Fixture {
            cs,
            base,
            top,
            image,
            container,
            other,
            other_image,
            base_tar,
            top_tar,
            other_tar,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.cs.graph().join(rel)
    }

    /// `diff -u LAYER` must be the tar it was imported from.
    fn exports(&self, layer: &str, tar: &[u8]) {
        let out = self.cs.ok_bytes(&["diff", "-u", layer]);
        assert!(out == tar, "layer {layer} no longer exports its tar");
    }
}

/// Removes the record `id` from a record file.
fn drop_record(path: &Path, id: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let before = records.len();
    records.retain(|r| r["id"] != id);
    assert_eq!(records.len() + 1, before, "{id} not in {}", path.display());
    std::fs::write(path, serde_json::to_vec(&records).unwrap()).unwrap();
}

fn ids(cs: &Cs, what: &str) -> Vec<String> {
    let v = cs.json(&[what, "--json"]);
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_healthy_store_checks_clean_with_mounts_and_big_data() {
    let f = Fixture::new();
    let cs = &f.cs;
    cs.ok_with_input(&["set-layer-data", &f.base, "notes"], b"layer notes");
    cs.ok_with_input(&["set-image-data", &f.image, "manifest"], &[7u8; 300]);
    cs.ok_with_input(&["set-container-data", &f.container, "state"], b"{}");
    // vfs mounts need no privileges: a container tree and a layer tree.
    cs.ok(&["mount", &f.container]);
    cs.ok(&["mount", &f.top]);
    let layers = ids(cs, "layers");
    assert!(check_lines(cs, &[], 0).is_empty());
    assert!(check_lines(cs, &["-q"], 0).is_empty());
    // Everything is used by an image, a container or a mount.
    assert!(check_lines(cs, &["-m", "0"], 0).is_empty());
    let v: serde_json::Value = serde_json::from_str(&check_lines(cs, &["--json"], 0)[0]).unwrap();
    let none = serde_json::json!({});
    assert_eq!(
        v,
        serde_json::json!({"problems": [], "repaired": [], "remaining": [],
            "Layers": none, "ROLayers": none, "Images": none, "ROImages": none,
            "Containers": none})
    );
    assert!(check_lines(cs, &["-r", "-f"], 0).is_empty());
    assert_eq!(ids(cs, "layers"), layers);
    cs.ok(&["unmount", &f.container]);
    cs.ok(&["unmount", &f.top]);
    assert!(check_lines(cs, &[], 0).is_empty());
}

/// Global flags for an overlay store.
const OVERLAY: [&str; 2] = ["--storage-driver", "overlay"];

fn ov<'a>(args: &[&'a str]) -> Vec<&'a str> {
    OVERLAY
        .iter()
        .copied()
        .chain(args.iter().copied())
        .collect()
}

#[test]
fn an_overlay_store_with_mounts_checks_clean_and_damaged_diff_dirs_are_rebuilt() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let f = Fixture::with(Cs::new(), &OVERLAY);
    let cs = &f.cs;
    let merged = cs.ok(&ov(&["mount", &f.container]));
    std::fs::write(
        Path::new(merged.trim()).join("written"),
        b"by the container",
    )
    .unwrap();
    cs.ok(&ov(&["mount", "-r", &f.image]));
    assert!(check_lines(cs, &ov(&[]), 0).is_empty());
    assert!(check_lines(cs, &ov(&["-q"]), 0).is_empty());
    assert!(check_lines(cs, &ov(&["-m", "0"]), 0).is_empty());
    cs.ok(&ov(&["unmount", &f.container]));
    cs.ok(&ov(&["unmount", &f.image]));

    // Same size, other bytes: only a full check reads contents.
    let file = f.path(&format!("overlay/{}/diff/data/top", f.top));
    let original = std::fs::read(&file).unwrap();
    flip_byte(&file, 1000);
    assert!(check_lines(cs, &ov(&["-q"]), 0).is_empty());
    let lines = check_lines(cs, &ov(&[]), 1);
    assert_eq!(
        lines,
        vec![format!(
            "layer {}: layer content has been modified: {}: content differs from the layer's",
            f.top,
            file.display()
        )]
    );
    let (code, out, err) = check(cs, &ov(&["-r"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "repaired: layer {}: materialized directory rebuilt",
            f.top
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), original);
    assert!(check_lines(cs, &ov(&[]), 0).is_empty());
    assert!(cs.ok_bytes(&ov(&["diff", "-u", &f.top])) == f.top_tar);

    // While a mount uses it, the directory is reported and left alone.
    cs.ok(&ov(&["mount", "-r", &f.image]));
    flip_byte(&file, 1000);
    let (code, _, err) = check(cs, &ov(&["-r"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "remaining: layer {}: layer content has been modified",
            f.top
        )),
        "{err}"
    );
    assert_ne!(std::fs::read(&file).unwrap(), original);
    cs.ok(&ov(&["unmount", &f.image]));
    let (code, out, err) = check(cs, &ov(&["-r"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(std::fs::read(&file).unwrap(), original);
    let images = cs.json(&ov(&["images", "--json"]));
    assert_eq!(images.as_array().unwrap().len(), 2);
}

#[test]
fn unreferenced_layers_are_reported_once_older_than_max_and_removed_deepest_first() {
    let f = Fixture::new();
    let cs = &f.cs;
    let lone = cs.import(&layer_tar("lone", 4, 10_000), &[]);
    let child = cs.import(&layer_tar("child", 5, 10_000), &[&lone]);
    assert!(check_lines(cs, &[], 0).is_empty());
    assert!(check_lines(cs, &["-m", "1h"], 0).is_empty());
    let message = "layer not referenced by any images or containers";
    assert_eq!(
        sorted(check_lines(cs, &["-m", "0"], 1)),
        sorted(vec![
            format!("layer {lone}: {message}"),
            format!("layer {child}: {message}"),
        ])
    );
    let (code, _, err) = check(cs, &["-r", "-m", "0"]);
    assert_eq!(code, 0, "{err}");
    let child_at = err.find(&format!("repaired: layer {child}: removed"));
    let lone_at = err.find(&format!("repaired: layer {lone}: removed"));
    assert!(
        child_at.is_some() && lone_at.is_some() && child_at < lone_at,
        "{err}"
    );
    let layers = ids(cs, "layers");
    assert!(!layers.contains(&lone) && !layers.contains(&child));
    assert_eq!(layers.len(), 4, "{layers:?}");
    f.exports(&f.base, &f.base_tar);
    f.exports(&f.other, &f.other_tar);
}

#[test]
fn missing_or_undecodable_manifests_take_their_layers_and_what_sits_on_them() {
    let f = Fixture::new();
    let cs = &f.cs;
    let spare_tar = layer_tar("spare", 6, 50_000);
    let spare = cs.import(&spare_tar, &[]);
    let spare_image = common::first_line_of(&cs.ok(&["create-image", &spare]));
    let manifest = f.path(&format!("manifests/{}", f.base));
    std::fs::remove_file(&manifest).unwrap();
    std::fs::write(f.path(&format!("manifests/{}", f.other)), b"not a manifest").unwrap();
    // Both are found without reading any content.
    let lines = check_lines(cs, &["-q"], 1);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        format!(
            "layer {}: layer manifest {} is missing",
            f.base,
            manifest.display()
        )
    );
    assert!(
        lines[1].starts_with(&format!(
            "layer {}: layer manifest cannot be read: ",
            f.other
        )),
        "{lines:?}"
    );
    assert_eq!(check_lines(cs, &[], 1), lines);

    // Without --force the container stays, and with it its image and
    // layers; the other image and its layer go.
    let (code, _, err) = check(cs, &["-r"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("remaining: layer {}: layer manifest", f.base)),
        "{err}"
    );
    assert_eq!(
        ids(cs, "images"),
        sorted(vec![f.image.clone(), spare_image.clone()])
    );
    assert!(!ids(cs, "layers").contains(&f.other));
    assert_eq!(ids(cs, "containers"), vec![f.container.clone()]);

    let (code, _, err) = check(cs, &["-r", "-f"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids(cs, "images"), vec![spare_image]);
    assert_eq!(ids(cs, "layers"), vec![spare.clone()]);
    assert!(ids(cs, "containers").is_empty());
    f.exports(&spare, &spare_tar);
    assert!(check_lines(cs, &[], 0).is_empty());
}

#[test]
fn missing_or_resized_big_data_is_reported_in_upstream_words() {
    let f = Fixture::new();
    let cs = &f.cs;
    let second = common::first_line_of(&cs.ok(&["create-container", &f.image]));
    cs.ok_with_input(&["set-layer-data", &f.other, "notes"], b"notes");
    cs.ok_with_input(&["set-image-data", &f.other_image, "manifest"], &[1u8; 100]);
    cs.ok_with_input(&["set-image-data", &f.image, "config"], &[2u8; 100]);
    cs.ok_with_input(&["set-image-data", &f.image, "extra"], &[3u8; 100]);
    cs.ok_with_input(&["set-container-data", &f.container, "state"], &[4u8; 100]);
    cs.ok_with_input(&["set-container-data", &second, "state"], &[5u8; 100]);
    assert!(check_lines(cs, &[], 0).is_empty());

    std::fs::remove_file(f.path(&format!("vfs-layers/{}/notes", f.other))).unwrap();
    std::fs::remove_file(f.path(&format!("vfs-images/{}/manifest", f.other_image))).unwrap();
    std::fs::write(f.path(&format!("vfs-images/{}/config", f.image)), [2u8; 10]).unwrap();
    std::fs::write(f.path(&format!("vfs-images/{}/extra", f.image)), [9u8; 100]).unwrap();
    std::fs::remove_file(f.path(&format!("vfs-containers/{}/state", f.container))).unwrap();
    std::fs::write(f.path(&format!("vfs-containers/{second}/state")), [5u8; 99]).unwrap();
    let quick = vec![
        format!(
            "layer {}: data item \"notes\": layer data item is missing",
            f.other
        ),
        format!(
            "image {}: data item \"config\": image data item has incorrect size",
            f.image
        ),
        format!(
            "image {}: data item \"manifest\": image data item is missing",
            f.other_image
        ),
        format!(
            "container {}: data item \"state\": container data item is missing",
            f.container
        ),
        format!("container {second}: data item \"state\": container data item has incorrect size"),
    ];
    assert_eq!(sorted(check_lines(cs, &["-q"], 1)), sorted(quick.clone()));
    // Same size, other bytes: only a full check reads them.
    let mut full = quick.clone();
    full.push(format!(
        "image {}: data item \"extra\": image data item has incorrect digest",
        f.image
    ));
    assert_eq!(sorted(check_lines(cs, &[], 1)), sorted(full));

    // Without --force: the other image and its layer go; the image the
    // containers use stays, and so do they.
    let (code, _, err) = check(cs, &["-r"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(ids(cs, "images"), vec![f.image.clone()]);
    assert_eq!(
        ids(cs, "containers"),
        sorted(vec![f.container.clone(), second.clone()])
    );
    assert!(!ids(cs, "layers").contains(&f.other));

    // With it: the containers, then the image; its healthy layers stay.
    let (code, _, err) = check(cs, &["-r", "-f"]);
    assert_eq!(code, 0, "{err}");
    assert!(ids(cs, "images").is_empty());
    assert!(ids(cs, "containers").is_empty());
    assert_eq!(
        ids(cs, "layers"),
        sorted(vec![f.base.clone(), f.top.clone()])
    );
    f.exports(&f.top, &f.top_tar);
    f.exports(&f.base, &f.base_tar);
    assert!(check_lines(cs, &[], 0).is_empty());
}

#[test]
fn records_that_point_at_missing_layers_and_images_are_reported() {
    let f = Fixture::new();
    let cs = &f.cs;
    drop_record(&f.path("vfs-layers/layers.json"), &f.base);
    assert_eq!(
        sorted(check_lines(cs, &["-q"], 1)),
        sorted(vec![
            format!("layer {}: parent layer {}: layer is missing", f.top, f.base),
            format!(
                "image {}: layer {}: image layer is missing",
                f.image, f.base
            ),
        ])
    );

    let f = Fixture::new();
    let cs = &f.cs;
    let second = common::first_line_of(&cs.ok(&["create-container", &f.other_image]));
    let second_layer = cs.json(&["container", "--json", &second])[0]["layer"]
        .as_str()
        .unwrap()
        .to_string();
    drop_record(&f.path("vfs-images/images.json"), &f.image);
    drop_record(&f.path("vfs-layers/layers.json"), &second_layer);
    let expected = sorted(vec![
        format!(
            "container {}: image {}: image missing",
            f.container, f.image
        ),
        format!("container {second}: layer {second_layer}: layer is missing"),
        // Its directory, made with the container, now belongs to no layer.
        format!("layer {second_layer}: layer in lower level storage driver not accounted for"),
    ]);
    assert_eq!(sorted(check_lines(cs, &[], 1)), expected);
    // Containers go only with --force.
    let (code, _, err) = check(cs, &["-r"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(ids(cs, "containers").len(), 2);
    let (code, _, err) = check(cs, &["-r", "-f"]);
    assert_eq!(code, 0, "{err}");
    assert!(ids(cs, "containers").is_empty());
    assert_eq!(ids(cs, "images"), vec![f.other_image.clone()]);
    f.exports(&f.other, &f.other_tar);
    f.exports(&f.top, &f.top_tar);
}

/// The 64-hex chunk IDs named in `lines`.
fn chunk_ids(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = lines
        .iter()
        .filter_map(|l| {
            let rest = l.split("chunk ").nth(1)?;
            let id = rest.split(' ').next()?;
            assert!(
                id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{l}"
            );
            Some(id.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A layer with one random (incompressible) 256 KiB file, `blob`: the
/// file and the tar.
fn blob_tar(seed: u64) -> (Vec<u8>, Vec<u8>) {
    let blob = random_bytes(seed, 256 << 10);
    let mut t = TarBuilder::new();
    t.file("blob", &Meta::default(), &blob);
    (blob, t.finish())
}

/// The pack files of the store's pool.
fn packs_of(cs: &Cs) -> Vec<PathBuf> {
    std::fs::read_dir(cs.graph().join("chunks/packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect()
}

#[test]
fn a_flipped_byte_in_a_pack_names_the_chunk_and_every_layer_using_it() {
    let cs = Cs::new();
    // The damaged layer is imported first, alone in its pack; its only
    // file is random (incompressible), so the pack is mostly that file.
    let (blob, damaged_tar) = blob_tar(11);
    let damaged = cs.import(&damaged_tar, &[]);
    let packs = packs_of(&cs);
    assert_eq!(packs.len(), 1);
    // Another layer holding the same file shares its chunks.
    let mut t = TarBuilder::new();
    t.file("copy-of-blob", &Meta::default(), &blob);
    t.file("own", &Meta::default(), &random_bytes(12, 50_000));
    let sharing = cs.import(&t.finish(), &[]);
    let sharing_image = common::first_line_of(&cs.ok(&["create-image", &sharing]));
    // A child of the damaged layer, an image and a container on it.
    let child = cs.import(&layer_tar("child", 13, 40_000), &[&damaged]);
    let image = common::first_line_of(&cs.ok(&["create-image", &child]));
    let container = common::first_line_of(&cs.ok(&["create-container", &image]));
    // And a healthy image with a container.
    let healthy_tar = layer_tar("healthy", 14, 120_000);
    let healthy = cs.import(&healthy_tar, &[]);
    let healthy_image = common::first_line_of(&cs.ok(&["create-image", &healthy]));
    let healthy_container = common::first_line_of(&cs.ok(&["create-container", &healthy_image]));
    assert!(check_lines(&cs, &[], 0).is_empty());

    let len = std::fs::metadata(&packs[0]).unwrap().len() as usize;
    flip_byte(&packs[0], len / 2);

    // diff fails rather than emit wrong bytes.
    let out = cs.run(&["diff", "-u", &damaged], None);
    assert!(!out.status.success());
    assert!(out.stdout != damaged_tar);
    assert!(common::stderr(&out).contains("chunk "), "{:?}", out);

    // -q reads no content and sees nothing.
    assert!(check_lines(&cs, &["-q"], 0).is_empty());
    let lines = check_lines(&cs, &[], 1);
    let of = |layer: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.starts_with(&format!("layer {layer}: ")))
            .cloned()
            .collect()
    };
    let named = of(&damaged);
    assert!(!named.is_empty(), "{lines:?}");
    for line in &named {
        assert!(
            line.starts_with(&format!(
                "layer {damaged}: layer content incorrect digest: chunk "
            )) && line.contains(" is damaged"),
            "{line}"
        );
    }
    let chunks = chunk_ids(&named);
    assert!(!chunks.is_empty());
    assert_eq!(chunk_ids(&of(&sharing)), chunks, "{lines:?}");
    assert_eq!(
        of(&damaged).len() + of(&sharing).len(),
        lines.len(),
        "only the layers using the chunk: {lines:?}"
    );

    // Without --force: the container stays, so its image and layers do;
    // the sharing layer and its image go. The damaged chunks leave the
    // pool, so the kept layer now misses them.
    let (code, _, err) = check(&cs, &["-r"]);
    assert_eq!(code, 1, "{err}");
    assert!(!ids(&cs, "layers").contains(&sharing));
    assert!(!ids(&cs, "images").contains(&sharing_image));
    assert_eq!(
        ids(&cs, "images"),
        sorted(vec![image.clone(), healthy_image.clone()])
    );
    assert!(
        err.contains(&format!(
            "repaired: layer {damaged}: damaged chunks dropped from the pool"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "remaining: layer {damaged}: layer content is missing: chunk "
        )),
        "{err}"
    );

    // With it: the container, the image, the child and the layer go;
    // nothing healthy does.
    let (code, _, err) = check(&cs, &["-r", "-f"]);
    assert_eq!(code, 0, "{err}");
    for removed in [
        format!("container {container}"),
        format!("image {image}"),
        format!("layer {child}"),
        format!("layer {damaged}"),
    ] {
        assert!(
            err.contains(&format!("repaired: {removed}: removed")),
            "{err}"
        );
    }
    assert_eq!(ids(&cs, "images"), vec![healthy_image]);
    assert_eq!(ids(&cs, "containers"), vec![healthy_container.clone()]);
    let layers = ids(&cs, "layers");
    assert_eq!(layers.len(), 2, "{layers:?}");
    assert!(layers.contains(&healthy));
    let out = cs.ok_bytes(&["diff", "-u", &healthy]);
    assert!(out == healthy_tar);
    assert!(check_lines(&cs, &[], 0).is_empty());
    // The content imports whole again: no damaged copy is reused.
    let again = cs.import(&damaged_tar, &[]);
    assert!(cs.ok_bytes(&["diff", "-u", &again]) == damaged_tar);
    assert!(check_lines(&cs, &[], 0).is_empty());
}

#[test]
fn importing_the_content_again_restores_a_layer_whose_damaged_chunks_were_dropped() {
    let cs = Cs::new();
    let (blob, tar) = blob_tar(21);
    let layer = cs.import(&tar, &[]);
    let image = common::first_line_of(&cs.ok(&["create-image", &layer]));
    let container = common::first_line_of(&cs.ok(&["create-container", &image]));
    let pack = packs_of(&cs).remove(0);
    flip_byte(&pack, std::fs::metadata(&pack).unwrap().len() as usize / 2);

    // Before the repair, an import of the same content reuses the damaged
    // chunks and is just as damaged.
    let reused = cs.import(&tar, &[]);
    assert!(!cs.run(&["diff", "-u", &reused], None).status.success());
    cs.ok(&["delete-layer", &reused]);

    // The repair keeps the layer (a container uses it) and drops the
    // chunks; importing the content again restores it, and the container.
    let (code, _, err) = check(&cs, &["-r"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "repaired: layer {layer}: damaged chunks dropped from the pool"
        )),
        "{err}"
    );
    let restorer = cs.import(&tar, &[]);
    cs.ok(&["delete-layer", &restorer]);
    assert!(check_lines(&cs, &[], 0).is_empty());
    assert!(cs.ok_bytes(&["diff", "-u", &layer]) == tar);
    let mnt = PathBuf::from(cs.ok(&["mount", &container]).trim());
    assert!(std::fs::read(mnt.join("blob")).unwrap() == blob);
    cs.ok(&["unmount", &container]);
}

#[test]
fn damaged_vfs_trees_are_reported_and_rebuilt_unless_mounted() {
    let f = Fixture::new();
    let cs = &f.cs;
    let tree = PathBuf::from(cs.ok(&["mount", "-r", &f.image]).trim());
    assert_eq!(tree, f.path(&format!("vfs/dir/{}", f.top)));
    cs.ok(&["unmount", &f.image]);
    let file = tree.join("data/top");
    let lower = tree.join("data/base");
    let original = std::fs::read(&file).unwrap();
    let shown = |p: &Path| p.display().to_string();

    flip_byte(&file, 10);
    assert!(check_lines(cs, &["-q"], 0).is_empty());
    let modified = format!("layer {}: layer content has been modified", f.top);
    assert_eq!(
        check_lines(cs, &[], 1),
        vec![format!(
            "{modified}: {}: content differs from the layer's",
            shown(&file)
        )]
    );
    // Shape changes show even without reading contents.
    std::fs::write(tree.join("data/extra"), b"x").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&lower)
        .unwrap()
        .set_len(5)
        .unwrap();
    std::fs::set_permissions(
        tree.join("data"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    assert_eq!(
        sorted(check_lines(cs, &["-q"], 1)),
        sorted(vec![
            format!(
                "{modified}: {}: mode 700, the layer has 755",
                shown(&tree.join("data"))
            ),
            format!(
                "{modified}: {}: size 5, the layer has {}",
                shown(&lower),
                200 << 10
            ),
            format!(
                "{modified}: {}: not in the layer",
                shown(&tree.join("data/extra"))
            ),
        ])
    );

    // Mounted: reported, left alone.
    cs.ok(&["mount", "-r", &f.image]);
    let (code, _, err) = check(cs, &["-r"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("remaining: {modified}")), "{err}");
    assert!(tree.join("data/extra").exists());
    cs.ok(&["unmount", &f.image]);

    // Unmounted: evicted and rebuilt from the pool.
    let (code, _, err) = check(cs, &["-r"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "repaired: layer {}: materialized directory rebuilt",
            f.top
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), original);
    assert_eq!(
        std::fs::metadata(&lower).unwrap().len(),
        200 << 10,
        "the lower layer's file is back too"
    );
    assert!(!tree.join("data/extra").exists());
    assert!(check_lines(cs, &[], 0).is_empty());
    assert_eq!(ids(cs, "layers").len(), 4);
}

#[test]
fn stray_driver_directories_are_reported_and_removed_and_json_has_the_report() {
    let f = Fixture::new();
    let cs = &f.cs;
    let stray = "ab".repeat(32);
    let dir = f.path(&format!("vfs/dir/{stray}"));
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/passwd"), b"root").unwrap();
    let message = "layer in lower level storage driver not accounted for";
    assert_eq!(
        check_lines(cs, &["-q"], 1),
        vec![format!("layer {stray}: {message}")]
    );

    let out = cs.run(&["check", "--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problem = serde_json::json!({"kind": "layer", "id": stray, "message": message});
    // Ours, and upstream's keys beside it: the ID, a `{}` per problem.
    let none = serde_json::json!({});
    assert_eq!(
        v,
        serde_json::json!({"problems": [problem], "repaired": [], "remaining": [problem],
            "Layers": {stray.clone(): [{}]}, "ROLayers": none, "Images": none,
            "ROImages": none, "Containers": none})
    );
    // Upstream's count on standard error.
    let out = cs.run(&["check"], None);
    assert_eq!(
        common::stderr(&out),
        "1 layer errors, 0 read-only layer errors, 0 image errors, 0 read-only image errors, 0 container errors\n"
    );

    let out = cs.run(&["check", "-r", "--json"], None);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["problems"], serde_json::json!([problem]));
    assert_eq!(
        v["repaired"],
        serde_json::json!([{"kind": "layer", "id": stray, "message": "directory removed"}])
    );
    assert_eq!(v["remaining"], serde_json::json!([]));
    assert!(!dir.exists());
    assert_eq!(ids(cs, "layers").len(), 4);
    assert!(check_lines(cs, &[], 0).is_empty());
}

/// The pack files (with their index) written by the imports in `f`.
fn new_packs(cs: &Cs, f: impl FnOnce()) -> Vec<PathBuf> {
    let list = || -> Vec<PathBuf> {
        let dir = cs.graph().join("chunks/packs");
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let before = list();
    f();
    list().into_iter().filter(|p| !before.contains(p)).collect()
}

#[test]
fn chunks_missing_from_the_pool_are_named_even_by_a_quick_check() {
    let f = Fixture::new();
    let cs = &f.cs;
    let mut gone = String::new();
    let packs = new_packs(cs, || gone = cs.import(&layer_tar("gone", 41, 30_000), &[]));
    assert_eq!(packs.len(), 2, "{packs:?}");
    let mut unreadable = String::new();
    let pack_only = new_packs(cs, || {
        unreadable = cs.import(&layer_tar("unreadable", 42, 30_000), &[])
    });
    // Index and pack gone: the chunks are not in the pool at all.
    for p in &packs {
        std::fs::remove_file(p).unwrap();
    }
    // Only the pack gone: the index still lists its chunks.
    for p in pack_only
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
    {
        std::fs::remove_file(p).unwrap();
    }
    let quick = check_lines(cs, &["-q"], 1);
    assert!(!quick.is_empty());
    for line in &quick {
        assert!(
            line.starts_with(&format!("layer {gone}: layer content is missing: chunk "))
                && line.ends_with(" is not in the pool"),
            "{quick:?}"
        );
    }
    assert!(!chunk_ids(&quick).is_empty());
    let full = check_lines(cs, &[], 1);
    let unreadable_lines: Vec<&String> = full
        .iter()
        .filter(|l| l.starts_with(&format!("layer {unreadable}: ")))
        .collect();
    assert!(!unreadable_lines.is_empty(), "{full:?}");
    for line in &unreadable_lines {
        assert!(
            line.contains("layer content incorrect digest: chunk ")
                && line.contains("is damaged: its pack cannot be read"),
            "{line}"
        );
    }
    assert_eq!(full.len(), quick.len() + unreadable_lines.len(), "{full:?}");
    // Both layers go; the fixture's items stay and still export.
    let (code, _, err) = check(cs, &["-r"]);
    assert_eq!(code, 0, "{err}");
    let layers = ids(cs, "layers");
    assert!(!layers.contains(&gone) && !layers.contains(&unreadable));
    assert_eq!(layers.len(), 4, "{layers:?}");
    f.exports(&f.base, &f.base_tar);
    f.exports(&f.top, &f.top_tar);
    f.exports(&f.other, &f.other_tar);
}

/// A layer of every entry kind (as `common::tar::every_kind`, less its
/// `security.capability`, which not every kernel takes), and one on it
/// with whiteouts, an opaque directory and new entries.
fn every_kind_chain(cs: &Cs, global: &[&str]) -> (String, String) {
    let m = Meta::default();
    let mode = |mode: u32| Meta {
        mode,
        ..Meta::default()
    };
    let mut t = TarBuilder::new();
    t.dir("./", &mode(0o755));
    t.dir("etc/", &mode(0o755));
    t.file("etc/hostname", &m, b"box\n");
    t.file("etc/empty", &m, b"");
    t.file(
        "bin-tool",
        &Meta {
            mode: 0o4755,
            uid: 1000,
            gid: 100,
            ..Meta::default()
        },
        &[0x5a; 70_000],
    );
    t.symlink("etc/link", "../bin-tool", &m);
    t.hardlink("etc/hard", "etc/hostname", &m);
    t.char_dev("dev-null", 1, 3, &mode(0o666));
    t.block_dev("dev-sda", 8, 0, &mode(0o660));
    t.fifo("pipe", &m);
    t.pax_xattr_file(
        "noted",
        &[("user.note", b"hi")],
        "1700000000.123456789",
        &m,
        b"with xattrs",
    );
    t.pax_long_file(&format!("{}/file", "d".repeat(150)), &m, b"long via pax");
    t.gnu_long_symlink("longlink", &"t".repeat(130), &m);
    t.whiteout("etc", "removed");
    t.opaque("etc");
    let mut args: Vec<&str> = global.to_vec();
    args.push("import-layer");
    let lower =
        common::first_line_of(&String::from_utf8(cs.ok_with_input(&args, &t.finish())).unwrap());
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.whiteout("", "pipe");
    t.whiteout("etc", "hostname");
    t.opaque("etc");
    t.file("etc/new", &m, b"new");
    t.dir(
        "opt/",
        &Meta {
            mode: 0o750,
            ..Meta::default()
        },
    );
    t.file("opt/x", &m, &random_bytes(50, 90_000));
    t.symlink("opt/up", "../etc/new", &m);
    let mut args: Vec<&str> = global.to_vec();
    args.extend(["import-layer", lower.as_str()]);
    let upper =
        common::first_line_of(&String::from_utf8(cs.ok_with_input(&args, &t.finish())).unwrap());
    (lower, upper)
}

#[test]
#[allow(unsafe_code)] // lremovexattr: nix has no xattr calls
fn every_kind_of_entry_materializes_without_false_alarms() {
    let cs = Cs::new();
    let (lower, upper) = every_kind_chain(&cs, &[]);
    let image = common::first_line_of(&cs.ok(&["create-image", &upper]));
    cs.ok(&["mount", "-r", &image]);
    let lower_image = common::first_line_of(&cs.ok(&["create-image", &lower]));
    cs.ok(&["mount", "-r", &lower_image]);
    assert!(cs.graph().join(format!("vfs/dir/{upper}/opt/x")).exists());
    assert!(check_lines(&cs, &["-m", "0"], 0).is_empty());
    // A whiteout's target showing up again is noticed.
    std::fs::write(cs.graph().join(format!("vfs/dir/{upper}/pipe")), b"").unwrap();
    assert_eq!(
        check_lines(&cs, &["-q"], 1),
        vec![format!(
            "layer {upper}: layer content has been modified: {}: not in the layer",
            cs.graph().join(format!("vfs/dir/{upper}/pipe")).display()
        )]
    );

    if !common::need_root("overlay mounts") {
        return;
    }
    let (lower, upper) = every_kind_chain(&cs, &OVERLAY);
    let image = common::first_line_of(&cs.ok(&ov(&["create-image", &upper])));
    let container = common::first_line_of(&cs.ok(&ov(&["create-container", &image])));
    cs.ok(&ov(&["mount", "-r", &image]));
    cs.ok(&ov(&["mount", &container]));
    assert!(check_lines(&cs, &ov(&["-m", "0"]), 0).is_empty());
    // The opaque marker and a whiteout are part of what is checked.
    let etc = cs.graph().join(format!("overlay/{upper}/diff/etc"));
    let marker = std::ffi::CString::new(etc.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: NUL-terminated path and attribute name.
    let r = unsafe { libc::lremovexattr(marker.as_ptr(), c"trusted.overlay.opaque".as_ptr()) };
    assert_eq!(r, 0);
    std::fs::remove_file(cs.graph().join(format!("overlay/{upper}/diff/pipe"))).unwrap();
    assert_eq!(
        sorted(check_lines(&cs, &ov(&["-q"]), 1)),
        sorted(vec![
            format!(
                "layer {upper}: layer content has been modified: {}: not marked opaque",
                etc.display()
            ),
            format!(
                "layer {upper}: layer content has been modified: {}: missing",
                cs.graph()
                    .join(format!("overlay/{upper}/diff/pipe"))
                    .display()
            ),
        ])
    );
    cs.ok(&ov(&["unmount", &image]));
    cs.ok(&ov(&["unmount", &container]));
    let (code, _, err) = check(&cs, &ov(&["-r"]));
    assert_eq!(code, 0, "{err}");
    assert!(check_lines(&cs, &ov(&["-m", "0"]), 0).is_empty());
    let _ = lower;
}

/// A directory outside the store with one file; `untouched` checks it
/// still holds exactly that.
struct Outside {
    dir: PathBuf,
}

impl Outside {
    fn new(cs: &Cs, name: &str) -> Outside {
        let dir = cs.dir.path().join(name);
        std::fs::create_dir_all(dir.join("diff")).unwrap();
        std::fs::write(dir.join("secret"), b"not the layer's").unwrap();
        std::fs::write(dir.join("diff/secret"), b"not the layer's").unwrap();
        Outside { dir }
    }

    fn untouched(&self) {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["diff", "secret"], "{}", self.dir.display());
        assert_eq!(
            std::fs::read(self.dir.join("secret")).unwrap(),
            b"not the layer's"
        );
        assert_eq!(
            std::fs::read_dir(self.dir.join("diff")).unwrap().count(),
            1,
            "{}/diff",
            self.dir.display()
        );
    }
}

/// Replaces `path` (a directory or file) by a symlink to `target`.
fn swap_for_symlink(path: &Path, target: &Path) {
    if std::fs::symlink_metadata(path).unwrap().is_dir() {
        std::fs::remove_dir_all(path).unwrap();
    } else {
        std::fs::remove_file(path).unwrap();
    }
    std::os::unix::fs::symlink(target, path).unwrap();
}

/// Requires `path` to be a directory of its own holding the layer's file.
fn holds_the_layer(path: &Path, file: &str) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert!(meta.is_dir(), "{} is not a directory", path.display());
    assert!(path.join(file).is_file(), "{} lacks {file}", path.display());
    assert!(
        !path.join("secret").exists(),
        "{} shows outside content",
        path.display()
    );
}

#[test]
fn a_vfs_tree_swapped_for_a_symlink_is_reported_rebuilt_and_never_served() {
    let f = Fixture::new();
    let cs = &f.cs;
    let outside = Outside::new(cs, "outside");
    let tree = PathBuf::from(cs.ok(&["mount", "-r", &f.image]).trim());
    cs.ok(&["unmount", &f.image]);
    let symlink = format!("is a symlink to {}", outside.dir.display());

    // Sealed: reported; a mount builds it again instead of using it.
    swap_for_symlink(&tree, &outside.dir);
    let lines = check_lines(cs, &["-q"], 1);
    assert_eq!(
        lines,
        vec![format!(
            "layer {}: {} {symlink}, not the layer's",
            f.top,
            tree.display()
        )]
    );
    assert_eq!(
        PathBuf::from(cs.ok(&["mount", "-r", &f.image]).trim()),
        tree
    );
    holds_the_layer(&tree, "data/top");
    cs.ok(&["unmount", &f.image]);
    outside.untouched();

    // `check -r` removes the symlink and rebuilds the tree.
    swap_for_symlink(&tree, &outside.dir);
    let (code, _, err) = check(cs, &["-r"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("misplaced driver entries removed, materialized directory rebuilt"),
        "{err}"
    );
    holds_the_layer(&tree, "data/top");
    outside.untouched();
    assert!(check_lines(cs, &[], 0).is_empty());

    // Live: the content is gone; nothing reads or writes through it, and
    // `check -r` removes the layer as a damaged one.
    let live = common::first_line_of(&cs.ok(&["create-layer", &f.top]));
    let dir = PathBuf::from(cs.ok(&["mount", &live]).trim());
    std::fs::write(dir.join("written"), b"live").unwrap();
    cs.ok(&["unmount", &live]);
    swap_for_symlink(&dir, &outside.dir);
    let lines = check_lines(cs, &["-q"], 1);
    assert_eq!(
        lines,
        vec![format!(
            "layer {live}: layer content has been modified: {} {symlink}: the layer's content is gone",
            dir.display()
        )]
    );
    for args in [&["mount", &live][..], &["diff", &live], &["changes", &live]] {
        let err = cs.fails(args, None);
        assert!(err.contains("its content is gone"), "{args:?}: {err}");
    }
    let (code, _, err) = check(cs, &["-r"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("repaired: layer {live}: removed")),
        "{err}"
    );
    assert!(!ids(cs, "layers").contains(&live));
    assert!(
        std::fs::symlink_metadata(&dir).is_err(),
        "the symlink stayed"
    );
    outside.untouched();
    f.exports(&f.top, &f.top_tar);
}

fn ov_ok(cs: &Cs, args: &[&str]) -> String {
    cs.ok(&ov(args))
}

#[test]
fn overlay_directories_and_short_links_swapped_for_symlinks_are_reported_rebuilt_and_never_mounted()
{
    if !common::need_root("overlay mounts") {
        return;
    }
    let f = Fixture::with(Cs::new(), &["--storage-driver", "overlay"]);
    let cs = &f.cs;
    let outside = Outside::new(cs, "outside");
    let merged = PathBuf::from(ov_ok(cs, &["mount", "-r", &f.image]).trim());
    ov_ok(cs, &["unmount", &f.image]);
    let layer_dir = f.path(&format!("overlay/{}", f.top));
    let diff = layer_dir.join("diff");
    let mounted_right = |cs: &Cs| {
        let m = PathBuf::from(ov_ok(cs, &["mount", "-r", &f.image]).trim());
        assert_eq!(m, merged);
        assert!(m.join("data/top").is_file() && m.join("data/base").is_file());
        assert!(
            !m.join("secret").exists(),
            "the mount shows outside content"
        );
        outside.untouched();
        ov_ok(cs, &["unmount", &f.image]);
    };

    // `diff`, the layer's directory, `merged`, and the short link, one
    // at a time: reported, never mounted, rebuilt by `check -r`.
    let short = std::fs::read_to_string(layer_dir.join("link")).unwrap();
    let link = f.path(&format!("overlay/l/{short}"));
    // (The layer's own directory last: its rebuild makes a new link.)
    let swaps: [(&Path, &Path); 4] = [
        (&link, &outside.dir.join("diff")),
        (&diff, &outside.dir),
        (&layer_dir.join("merged"), &outside.dir),
        (&layer_dir, &outside.dir),
    ];
    for (path, target) in swaps {
        for repair in [false, true] {
            swap_for_symlink(path, target);
            let (code, out, err) = check(cs, &ov(&[]));
            assert_eq!(code, 1, "{}: {out}{err}", path.display());
            let expected = format!(
                "layer {}: {} is a symlink to {}, not the layer's",
                f.top,
                path.display(),
                target.display()
            );
            assert!(out.lines().any(|l| l == expected), "{expected}\n{out}");
            if repair {
                let (code, _, err) = check(cs, &ov(&["-r"]));
                assert_eq!(code, 0, "{err}");
                holds_the_layer(&diff, "data/top");
                assert!(check_lines(cs, &ov(&[]), 0).is_empty());
            }
            // Mounting fixes what it finds, whether or not `check -r` ran.
            mounted_right(cs);
        }
    }

    // The driver's own directories: replaced, not written through.
    let mut tar = TarBuilder::new();
    tar.file("lone", &Meta::default(), b"shares nothing");
    let lone = cs.ok_with_input(&ov(&["import-layer"]), &tar.finish());
    let lone = common::first_line_of(&String::from_utf8(lone).unwrap());
    let lone = common::first_line_of(&ov_ok(cs, &["create-image", &lone]));
    for own in ["overlay/l", "overlay-layers/.used", "overlay-layers/.empty"] {
        let path = f.path(own);
        if std::fs::symlink_metadata(&path).is_ok() {
            swap_for_symlink(&path, &outside.dir);
        } else {
            std::os::unix::fs::symlink(&outside.dir, &path).unwrap();
        }
        mounted_right(cs);
        // One layer read-only: overlayfs gets `.empty` as a second lower.
        let m = PathBuf::from(ov_ok(cs, &["mount", "-r", &lone]).trim());
        assert!(m.join("lone").is_file() && !m.join("secret").exists());
        ov_ok(cs, &["unmount", &lone]);
        outside.untouched();
        assert!(std::fs::symlink_metadata(&path).unwrap().is_dir(), "{own}");
    }
    // Replacing `overlay/l` lost the short links of the layers no mount
    // made again, which Go's clients need: reported, made by `check -r`.
    let (_, out, _) = check(cs, &ov(&[]));
    assert!(
        out.lines()
            .all(|l| l.contains(": driver entries missing: ") && l.contains("/overlay/l/")),
        "{out}"
    );
    let (code, _, err) = check(cs, &ov(&["-r"]));
    assert_eq!(code, 0, "{err}");
    assert!(check_lines(cs, &ov(&[]), 0).is_empty());

    // A short link of no layer that leads out of the driver directory.
    let stray = f.path("overlay/l/STRAYLINK");
    std::os::unix::fs::symlink(&outside.dir, &stray).unwrap();
    let (code, out, _) = check(cs, &ov(&[]));
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!(
            "layer STRAYLINK: short link {} is a symlink to {}",
            stray.display(),
            outside.dir.display()
        )),
        "{out}"
    );
    let (code, _, err) = check(cs, &ov(&["-r"]));
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::symlink_metadata(&stray).is_err());

    // A live layer whose upper directory was replaced: its content is
    // gone, it is never mounted, and `check -r` removes it.
    let live = common::first_line_of(&ov_ok(cs, &["create-layer", &f.top]));
    let m = PathBuf::from(ov_ok(cs, &["mount", &live]).trim());
    std::fs::write(m.join("written"), b"live").unwrap();
    ov_ok(cs, &["unmount", &live]);
    let upper = f.path(&format!("overlay/{live}/diff"));
    swap_for_symlink(&upper, &outside.dir);
    let out = cs.run(&ov(&["mount", &live]), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr(&out).contains("its content is gone"));
    let (code, _, err) = check(cs, &ov(&["-r"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("repaired: layer {live}: removed")),
        "{err}"
    );
    outside.untouched();
    for (layer, tar) in [(&f.base, &f.base_tar), (&f.top, &f.top_tar)] {
        let out = cs.ok_bytes(&ov(&["diff", "-u", layer]));
        assert!(&out == tar, "layer {layer} no longer exports its tar");
    }
}

/// Regression: a layer that whites out paths it also adds (before or
/// after the whiteout) and gives a path twice mounts as its entries leave
/// it; `check` of its materialized directory judges what the extraction
/// leaves, not every entry (it expected a whiteout device where the
/// layer's own file stays, and reported the layer modified).
#[test]
fn a_layer_that_whites_out_and_adds_a_path_again_checks_clean_on_overlay() {
    if !common::need_root("overlay mounts") {
        return;
    }
    let cs = Cs::new();
    let m = Meta::default();
    let mut base = TarBuilder::new();
    base.file("etc/conf", &m, b"lower");
    base.file("etc/gone", &m, b"lower");
    base.file("etc/kept", &m, b"lower");
    let base = cs.ok_with_input(&ov(&["import-layer"]), &base.finish());
    let base = common::first_line_of(&String::from_utf8(base).unwrap());
    let mut top = TarBuilder::new();
    top.whiteout("etc", "conf");
    top.file("etc/conf", &m, b"upper");
    top.whiteout("etc", "gone");
    // A whiteout hides lower layers only: the layer's own file stays.
    top.file("etc/kept", &m, b"upper");
    top.whiteout("etc", "kept");
    top.file("twice", &m, b"first");
    top.file("twice", &m, b"second");
    let top = cs.ok_with_input(&ov(&["import-layer", &base]), &top.finish());
    let top = common::first_line_of(&String::from_utf8(top).unwrap());
    let image = common::first_line_of(&ov_ok(&cs, &["create-image", &top]));
    let merged = PathBuf::from(ov_ok(&cs, &["mount", "-r", &image]).trim());
    assert_eq!(std::fs::read(merged.join("etc/conf")).unwrap(), b"upper");
    assert!(!merged.join("etc/gone").exists());
    assert_eq!(std::fs::read(merged.join("etc/kept")).unwrap(), b"upper");
    assert_eq!(std::fs::read(merged.join("twice")).unwrap(), b"second");
    ov_ok(&cs, &["unmount", &image]);
    assert!(check_lines(&cs, &ov(&[]), 0).is_empty());
}

/// vfs, and overlay where this runs as root.
fn drivers() -> Vec<&'static str> {
    let mut drivers = vec!["vfs"];
    if common::need_root("overlay mounts") {
        drivers.push("overlay");
    }
    drivers
}

/// Runs `args` on `driver` (exit 0); the first line printed.
fn first_line_on(cs: &Cs, driver: &str, args: &[&str]) -> String {
    let mut all = vec!["--storage-driver", driver];
    all.extend_from_slice(args);
    common::first_line_of(&cs.ok(&all))
}

/// A directory-backed layer's directory on `driver`.
fn content_dir(cs: &Cs, driver: &str, layer: &str) -> PathBuf {
    match driver {
        "vfs" => cs.graph().join("vfs/dir").join(layer),
        _ => cs.graph().join("overlay").join(layer).join("diff"),
    }
}

#[test]
fn a_directory_backed_layer_whose_directory_is_gone_is_reported_and_removed() {
    // Content written through a mount lives only in the layer's
    // directory: without it the layer has lost its content.
    for driver in drivers() {
        let cs = Cs::new();
        let run = |args: &[&str]| first_line_on(&cs, driver, args);
        let layer = run(&["create-layer"]);
        let tree = PathBuf::from(run(&["mount", &layer]));
        std::fs::write(tree.join("f"), b"written\n").unwrap();
        run(&["unmount", &layer]);
        let child = run(&["create-layer", &layer]);
        let content = content_dir(&cs, driver, &layer);
        std::fs::remove_dir_all(&content).unwrap();
        let (code, out, err) = check(&cs, &["--storage-driver", driver]);
        assert_eq!(code, 1, "{driver}: {out}{err}");
        let want = format!("layer {layer}: layer is missing: {}", content.display());
        assert!(
            format!("{out}{err}").lines().any(|l| l.starts_with(&want)),
            "{driver}: {out}{err}"
        );
        check_lines(&cs, &["--storage-driver", driver, "-r"], 0);
        let layers = run(&["layers", "-q"]);
        assert!(
            !layers.contains(&layer) && !layers.contains(&child),
            "{driver}: {layers}"
        );
        check_lines(&cs, &["--storage-driver", driver], 0);
    }
}

#[test]
fn an_empty_layer_an_applydiff_cut_short_left_without_its_directory_is_not_reported() {
    for driver in drivers() {
        let cs = Cs::new();
        let run = |args: &[&str]| first_line_on(&cs, driver, args);
        let layer = run(&["create-layer"]);
        let content = content_dir(&cs, driver, &layer);
        // What an applydiff killed while importing into the pool leaves:
        // no directory, and the marker that says the layer is empty.
        std::fs::remove_dir_all(&content).unwrap();
        let marker = cs
            .graph()
            .join(format!("{driver}-layers/.emptied"))
            .join(&layer);
        std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
        std::fs::write(&marker, b"").unwrap();
        let (code, out, err) = check(&cs, &["--storage-driver", driver]);
        assert_eq!(code, 0, "{driver}: {out}{err}");
        // A mount makes its directory again, and the marker goes: content
        // written then lost is reported.
        let tree = PathBuf::from(run(&["mount", &layer]));
        assert!(!marker.exists(), "{driver}: the marker stayed");
        std::fs::write(tree.join("f"), b"written\n").unwrap();
        run(&["unmount", &layer]);
        std::fs::remove_dir_all(&content).unwrap();
        let (code, out, err) = check(&cs, &["--storage-driver", driver]);
        assert_eq!(code, 1, "{driver}: {out}{err}");
        assert!(
            format!("{out}{err}").contains("layer is missing"),
            "{driver}: {out}{err}"
        );
    }
}
