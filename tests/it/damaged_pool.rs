//! No single damaged file of the chunk pool takes the store down: a pack
//! index truncated, with a flipped bit, or gone (also beside a pack of
//! format 1, which has no chunk tables), and a damaged `config.json`. In
//! each case the records, and the layers whose chunks lie in other packs,
//! keep working; `check` names the damage and exits 1; `check --repair`
//! repairs it without removing any layer; `check` is clean afterwards and
//! every layer exports byte for byte. `gc` never sweeps chunks it cannot
//! account for.

use crate::common;

use std::path::{Path, PathBuf};

use common::tar::{Meta, TarBuilder};
use common::{random_bytes, Cs};

/// A tar holding `name` (random, so incompressible) and a small file.
fn layer_tar(name: &str, seed: u64) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.file(name, &Meta::default(), &random_bytes(seed, 300_000));
    t.file(
        &format!("{name}.txt"),
        &Meta::default(),
        format!("the {name} layer\n").repeat(500).as_bytes(),
    );
    t.finish()
}

/// A store of four layers, each imported alone and so in packs of its
/// own: `base` and `top` on it under an image with a container, `lone`,
/// and `spare`. `base`'s pack is the one damaged.
struct Fixture {
    cs: Cs,
    layers: Vec<(String, Vec<u8>)>,
    base: String,
    top: String,
    lone: String,
    image: String,
    container: String,
    /// The name of `base`'s pack.
    pack: String,
    /// The name of `spare`'s pack.
    spare_pack: String,
}

impl Fixture {
    fn new() -> Fixture {
        let cs = Cs::new();
        let mut layers = Vec::new();
        let mut import = |name: &str, seed: u64, parent: &[&str]| -> (String, Vec<String>) {
            let tar = layer_tar(name, seed);
            let before = pack_names(&cs);
            let id = cs.import(&tar, parent);
            layers.push((id.clone(), tar));
            let new: Vec<String> = pack_names(&cs)
                .into_iter()
                .filter(|p| !before.contains(p))
                .collect();
            (id, new)
        };
        let (base, base_packs) = import("base", 1, &[]);
        let (top, _) = import("top", 2, &[&base]);
        let (lone, _) = import("lone", 3, &[]);
        let (_spare, spare_packs) = import("spare", 4, &[]);
        assert_eq!(base_packs.len(), 1, "{base_packs:?}");
        assert_eq!(pack_names(&cs).len(), 4, "each import wrote its own pack");
        let image = common::first_line_of(&cs.ok(&["create-image", &top]));
        let container = common::first_line_of(&cs.ok(&["create-container", &image]));
        Fixture {
            cs,
            layers,
            base,
            top,
            lone,
            image,
            container,
            pack: base_packs[0].clone(),
            spare_pack: spare_packs[0].clone(),
        }
    }

    fn path(&self, ext: &str) -> PathBuf {
        packs_dir(&self.cs).join(format!("{}.{ext}", self.pack))
    }

    /// Every layer exports the tar it was imported from.
    fn all_export_exactly(&self) {
        for (id, tar) in &self.layers {
            let out = self.cs.ok_bytes(&["diff", "-u", id]);
            assert!(out == *tar, "layer {id} no longer exports its tar");
        }
    }

    /// Deletes the `spare` layer: garbage for `gc` to sweep.
    fn delete_spare(&mut self) -> String {
        let (spare, _) = self.layers.remove(3);
        self.cs.ok(&["delete-layer", &spare]);
        spare
    }

    fn tar_of(&self, id: &str) -> &[u8] {
        &self.layers.iter().find(|(l, _)| l == id).unwrap().1
    }
}

fn packs_dir(cs: &Cs) -> PathBuf {
    cs.graph().join("chunks/packs")
}

/// The names of the pool's packs.
fn pack_names(cs: &Cs) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(packs_dir(cs)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".pack").map(String::from))
        .collect();
    names.sort();
    names
}

/// Runs `args`; returns exit code, stdout and stderr.
fn run(cs: &Cs, args: &[&str]) -> (i32, String, String) {
    let out = cs.run(args, None);
    (
        out.status.code().unwrap_or(-1),
        common::stdout(&out),
        common::stderr(&out),
    )
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

/// What the records commands and the healthy layers must still do with
/// the pool damaged, and how a layer of the damaged pack fails.
fn everything_else_works(f: &Fixture) {
    let cs = &f.cs;
    for what in ["layers", "images", "containers"] {
        cs.ok(&[what]);
    }
    assert_eq!(ids(cs, "layers").len(), 5);
    assert_eq!(ids(cs, "images"), vec![f.image.clone()]);
    assert_eq!(ids(cs, "containers"), vec![f.container.clone()]);
    // A layer whose chunks are in another pack exports and mounts.
    assert!(cs.ok_bytes(&["diff", "-u", &f.lone]) == f.tar_of(&f.lone));
    let tree = PathBuf::from(cs.ok(&["mount", &f.lone]).trim());
    assert!(std::fs::read(tree.join("lone")).unwrap() == random_bytes(3, 300_000));
    cs.ok(&["unmount", &f.lone]);
    // One whose chunks are in the damaged pack names itself and the chunk.
    let err = cs.fails(&["diff", "-u", &f.base], None);
    assert!(
        err.contains(&format!("layer {}: chunk ", f.base))
            && err.contains("is missing from the pool"),
        "{err}"
    );
}

/// `check` names the pack and the layer lacking its chunks (exit 1);
/// `check -r` indexes the pack again and removes nothing; then `check` is
/// clean and every layer exports exactly.
fn check_finds_and_repairs(f: &Fixture, index_problem: &str) {
    let cs = &f.cs;
    let (code, out, err) = run(cs, &["check"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("pack {}: ", f.pack)))
        .unwrap_or_else(|| panic!("the pack is not named:\n{out}"));
    assert!(line.contains(index_problem), "{line}");
    assert!(
        line.ends_with(&format!("; layers lacking its chunks: {}", f.base)),
        "{line}"
    );
    assert!(
        out.contains(&format!(
            "layer {}: layer content is missing: chunk ",
            f.base
        )),
        "{out}"
    );

    let (code, out, err) = run(cs, &["check", "-r"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "repaired: pack {}: index rebuilt from the pack: ",
            f.pack
        )),
        "{err}"
    );
    assert!(!err.contains("removed"), "{err}");
    let (code, out, err) = run(cs, &["check"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(!err.contains("warning"), "{err}");
    // The imported layers and the container's.
    assert_eq!(ids(cs, "layers").len(), f.layers.len() + 1);
    assert_eq!(ids(cs, "containers"), vec![f.container.clone()]);
    f.all_export_exactly();
    let tree = PathBuf::from(cs.ok(&["mount", &f.container]).trim());
    assert!(std::fs::read(tree.join("base")).unwrap() == random_bytes(1, 300_000));
    assert!(std::fs::read(tree.join("top")).unwrap() == random_bytes(2, 300_000));
    cs.ok(&["unmount", &f.container]);
}

fn flip_bit(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x08;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn an_index_truncated_to_20_bytes_costs_only_its_packs_chunks_and_check_r_rebuilds_it() {
    let f = Fixture::new();
    let index = f.path("idx");
    let original = std::fs::read(&index).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(20)
        .unwrap();
    let (code, _, err) = run(&f.cs, &["layers"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.starts_with(&format!(
            "warning: {}: not a pack index file: ",
            index.display()
        )),
        "{err}"
    );
    everything_else_works(&f);
    check_finds_and_repairs(&f, "index cannot be read: ");
    assert_eq!(std::fs::read(&index).unwrap(), original);
}

#[test]
fn an_index_with_a_flipped_bit_costs_only_its_packs_chunks_and_check_r_rebuilds_it() {
    let f = Fixture::new();
    let index = f.path("idx");
    let original = std::fs::read(&index).unwrap();
    flip_bit(&index, original.len() / 2);
    let (code, _, err) = run(&f.cs, &["images"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("index checksum does not match"), "{err}");
    everything_else_works(&f);
    check_finds_and_repairs(&f, "index checksum does not match");
    assert_eq!(std::fs::read(&index).unwrap(), original);
}

#[test]
fn a_deleted_index_costs_only_its_packs_chunks_and_check_r_rebuilds_it() {
    let f = Fixture::new();
    let index = f.path("idx");
    let original = std::fs::read(&index).unwrap();
    std::fs::remove_file(&index).unwrap();
    everything_else_works(&f);
    check_finds_and_repairs(&f, &format!("index {} is missing", index.display()));
    assert_eq!(std::fs::read(&index).unwrap(), original);
}

/// Rewrites a pack as format 1 wrote it: the same zstd frames back to
/// back, without the chunk tables.
fn as_version_1(pack: &Path) {
    let bytes = std::fs::read(pack).unwrap();
    let mut out = b"CSPACK\0\x01".to_vec();
    let mut pos = 8;
    while pos < bytes.len() {
        let len = zstd::zstd_safe::find_frame_compressed_size(&bytes[pos..]).unwrap();
        let magic = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
        if magic & 0xFFFF_FFF0 != 0x184D_2A50 {
            out.extend_from_slice(&bytes[pos..pos + len]);
        }
        pos += len;
    }
    assert!(out.len() < bytes.len());
    std::fs::write(pack, out).unwrap();
}

#[test]
fn a_format_1_pack_that_lost_its_index_is_indexed_again_from_the_manifests() {
    let f = Fixture::new();
    as_version_1(&f.path("pack"));
    std::fs::remove_file(f.path("idx")).unwrap();
    everything_else_works(&f);
    // gc cannot account for the pack's chunks: it leaves it alone.
    let (code, out, err) = run(&f.cs, &["gc", "-v"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(&format!("pack {} has no index", f.pack)) && err.contains("left as it is"),
        "{err}"
    );
    assert!(
        out.contains("packs left alone, their index unreadable (check -r indexes them again): 1"),
        "{out}"
    );
    assert!(f.path("pack").exists());
    check_finds_and_repairs(&f, "is missing");
}

#[test]
fn a_format_1_pack_a_killed_import_left_without_an_index_is_reported_and_removed() {
    let mut f = Fixture::new();
    // What an import of an older build killed between publishing its pack
    // and its index leaves: a format 1 pack no manifest refers to.
    let spare = f.delete_spare();
    let pack = packs_dir(&f.cs).join(format!("{}.pack", f.spare_pack));
    let index = pack.with_extension("idx");
    // Keep the pack: the sweep of `delete-layer` does not run.
    assert!(pack.exists(), "{spare}");
    as_version_1(&pack);
    std::fs::remove_file(&index).unwrap();
    let (code, _, err) = run(&f.cs, &["gc"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("left as it is"), "{err}");
    assert!(pack.exists());

    // No import runs: check knows the index is lost, not yet written.
    let (code, out, err) = run(&f.cs, &["check"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(
        out,
        format!(
            "pack {}: index {} is missing\n",
            f.spare_pack,
            index.display()
        )
    );
    let (code, out, err) = run(&f.cs, &["check", "-r"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "repaired: pack {}: removed: no chunk in it can be read",
            f.spare_pack
        )),
        "{err}"
    );
    assert!(!pack.exists());
    let (code, out, err) = run(&f.cs, &["gc"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    let (code, out, err) = run(&f.cs, &["check"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    f.all_export_exactly();
}

#[test]
fn gc_indexes_again_a_pack_its_chunk_tables_account_for_and_sweeps_it() {
    type Damage = (&'static str, fn(&Path));
    let damages: [Damage; 3] = [
        ("has an index that cannot be read", |index| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(index)
                .unwrap()
                .set_len(20)
                .unwrap()
        }),
        ("has an index that cannot be read", |index| {
            flip_bit(index, 60)
        }),
        ("has no index", |index| std::fs::remove_file(index).unwrap()),
    ];
    for (what, damage) in damages {
        let mut f = Fixture::new();
        let index = f.path("idx");
        let original = std::fs::read(&index).unwrap();
        damage(&index);
        // Garbage in another pack, for gc to sweep.
        f.delete_spare();
        let (code, out, err) = run(&f.cs, &["gc", "--debug", "-v"]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(
            err.contains(&format!("pack {} {what}", f.pack))
                && err.contains("indexed again from its chunk tables"),
            "{err}"
        );
        assert!(out.contains("packs deleted: 1"), "{out}");
        assert_eq!(std::fs::read(&index).unwrap(), original);
        let (code, out, err) = run(&f.cs, &["check"]);
        assert_eq!((code, out.as_str()), (0, ""), "{err}");
        f.all_export_exactly();
    }
}

#[test]
fn gc_leaves_alone_a_pack_whose_index_and_a_chunk_table_are_damaged() {
    let mut f = Fixture::new();
    let index = f.path("idx");
    flip_bit(&index, 100);
    // The first chunk table: right after the pack's magic and its own
    // 8-byte header, the first chunk's ID.
    flip_bit(&f.path("pack"), 8 + 8 + 5);
    f.delete_spare();
    let (code, out, err) = run(&f.cs, &["gc", "-v"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(&format!("pack {} has an index that cannot be read", f.pack))
            && err.contains("its chunk tables do not account for all of it: left as it is"),
        "{err}"
    );
    assert!(
        out.contains("packs deleted: 1"),
        "the other garbage goes: {out}"
    );
    assert!(f.path("pack").exists() && index.exists());
    // check -r gets every chunk back with the manifests' help.
    check_finds_and_repairs(&f, "index checksum does not match");
}

#[test]
fn a_damaged_config_gives_way_to_the_defaults_and_check_r_writes_it_again() {
    let f = Fixture::new();
    let config = f.cs.graph().join("chunks/config.json");
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    std::fs::write(&config, b"{\"version\":1,\"algorithm\":\"fastc").unwrap();
    let (code, _, err) = run(&f.cs, &["containers"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.starts_with(&format!("warning: {}: ", config.display()))
            && err.contains("using the default pool parameters"),
        "{err}"
    );
    for what in ["layers", "images"] {
        f.cs.ok(&[what]);
    }
    f.all_export_exactly();
    // New imports work, and share chunks with the old ones.
    let again = f.cs.import(f.tar_of(&f.lone), &[]);
    assert!(f.cs.ok_bytes(&["diff", "-u", &again]) == f.tar_of(&f.lone));
    f.cs.ok(&["delete-layer", &again]);

    let (code, out, err) = run(&f.cs, &["check"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.starts_with(&format!("pool config.json: {}: ", config.display()))
            && out.contains(
                "the default parameters are in force until `check --repair` writes it again"
            ),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, out, err) = run(&f.cs, &["check", "-r"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(
            "repaired: pool config.json: written again from the defaults, with the chunker parameters 16384/65536/262144"
        ),
        "{err}"
    );
    let rewritten: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(rewritten, original);
    let (code, out, err) = run(&f.cs, &["check"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    let (code, out, err) = run(&f.cs, &["gc", "-v"]);
    assert_eq!(code, 0, "{out}\n{err}");
    f.all_export_exactly();
    let _ = (&f.top, &f.base);
}

/// Regression (the crash harness): what an import killed between
/// publishing its pack and its index leaves, a format 2 pack no manifest
/// refers to, is garbage like any unreferenced chunk: `check` is clean
/// (it reported `index … is missing`) and `gc` indexes it from its chunk
/// tables and sweeps it.
#[test]
fn a_format_2_pack_a_killed_import_left_without_an_index_is_garbage_for_gc() {
    let mut f = Fixture::new();
    let spare = f.delete_spare();
    let pack = packs_dir(&f.cs).join(format!("{}.pack", f.spare_pack));
    let index = pack.with_extension("idx");
    assert!(pack.exists(), "{spare}");
    std::fs::remove_file(&index).unwrap();
    for args in [&["check"][..], &["check", "-q"]] {
        let (code, out, err) = run(&f.cs, args);
        assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""), "{args:?}");
    }
    let (code, out, err) = run(&f.cs, &["gc"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!pack.exists() && !index.exists(), "{out}\n{err}");
    let (code, out, err) = run(&f.cs, &["check"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    f.all_export_exactly();
}
