//! End to end on real Debian images (built by `make dataset`, that is
//! `scripts/make-dataset.sh`; `CS_DEBIAN_TARS` names its `tars/` directory,
//! by default `target/dataset/tars`). Every layer must round-trip byte for
//! byte, in one store where layers share content, and through every
//! compression; the squashed images must deduplicate.
//!
//! Without the dataset each test prints why and passes, except in CI as
//! root, where `make test` builds the dataset and its absence fails
//! (`common::dataset`).

use crate::common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::Cs;

/// The tars named `names` in the dataset, or `None` (with the reason
/// printed) where there is no dataset.
fn dataset_files(names: &[&str]) -> Option<Vec<PathBuf>> {
    let dir = common::debian_tars()?;
    Some(names.iter().map(|name| dir.join(name)).collect())
}

fn file_name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

/// `diff -u -f OUT` of `id`, then the sha256 of OUT (removed afterwards).
fn exported_digest(cs: &Cs, id: &str, scratch: &Path) -> String {
    let out = scratch.join(format!("{id}.export.tar"));
    cs.ok(&["diff", "-u", "-f", out.to_str().unwrap(), id]);
    let (digest, _) = common::sha256_file(&out);
    fs::remove_file(&out).unwrap();
    digest
}

/// Imports `path` (on `parent`, if any) and checks the record and a
/// `diff -u` against the uncompressed tar's digest and size and the
/// input's digest. Returns the layer ID.
fn import_and_check(
    cs: &Cs,
    path: &Path,
    parent: Option<&str>,
    uncompressed: &(String, u64),
    compression: u64,
    scratch: &Path,
) -> String {
    let extra: Vec<&str> = parent.into_iter().collect();
    let id = cs.import_file(path, &extra);
    let (input_digest, input_size) = common::sha256_file(path);
    let record = cs.layer_json(&id);
    let name = file_name(path);
    assert_eq!(
        record["diff-digest"].as_str(),
        Some(uncompressed.0.as_str()),
        "{name}: {record}"
    );
    assert_eq!(
        record["diff-size"].as_u64(),
        Some(uncompressed.1),
        "{name}: {record}"
    );
    assert_eq!(
        record["compressed-diff-digest"].as_str(),
        Some(input_digest.as_str()),
        "{name}: {record}"
    );
    assert_eq!(
        record["compressed-size"].as_u64(),
        Some(input_size),
        "{name}: {record}"
    );
    assert_eq!(
        record["compression"].as_u64().unwrap_or(0),
        compression,
        "{name}: {record}"
    );
    assert_eq!(
        record["parent"].as_str().unwrap_or(""),
        parent.unwrap_or(""),
        "{name}: {record}"
    );
    assert_eq!(
        exported_digest(cs, &id, scratch),
        uncompressed.0,
        "{name}: diff -u is not the imported tar"
    );
    id
}

#[test]
fn every_debian_tar_round_trips_byte_for_byte_in_one_store() {
    let Some(dir) = common::debian_tars() else {
        return;
    };
    let mut tars: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    // Bases first, then the diffs on their suite's base, then the rest
    // (squashed images) standalone: later imports find most chunks stored.
    let rank = |p: &PathBuf| {
        let name = file_name(p);
        if name.ends_with("-base.tar") {
            0
        } else if name.ends_with(".diff.tar") {
            1
        } else {
            2
        }
    };
    tars.sort_by_key(|p| (rank(p), p.clone()));

    let cs = Cs::new();
    let scratch = tempfile::tempdir().unwrap();
    let mut bases: Vec<(String, String)> = Vec::new();
    let mut imported: Vec<(String, String, String)> = Vec::new();
    for tar in &tars {
        let name = file_name(tar).to_string();
        let parent = if name.ends_with(".diff.tar") {
            let suite = name.split('-').next().unwrap();
            bases
                .iter()
                .find(|(s, _)| s == suite)
                .map(|(_, id)| id.clone())
        } else {
            None
        };
        let digest = common::sha256_file(tar);
        let id = import_and_check(&cs, tar, parent.as_deref(), &digest, 0, scratch.path());
        if let Some(suite) = name.strip_suffix("-base.tar") {
            bases.push((suite.to_string(), id.clone()));
        }
        eprintln!(
            "{name}: {} bytes round-trip (parent: {})",
            digest.1,
            parent.as_deref().unwrap_or("none")
        );
        imported.push((name, id, digest.0));
    }
    // Later imports sharing chunks did not disturb the earlier layers.
    for (name, id, digest) in &imported {
        assert_eq!(
            &exported_digest(&cs, id, scratch.path()),
            digest,
            "{name} changed after later imports"
        );
    }
    eprintln!(
        "{} tars imported into one store: {}",
        imported.len(),
        pool_figures(&cs)
    );
}

fn compress(tool: &str, args: &[&str], input: &Path, output: &Path) -> Child {
    Command::new(tool)
        .args(args)
        .arg("-c")
        .stdin(File::open(input).unwrap())
        .stdout(File::create(output).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {tool}: {e}"))
}

#[test]
fn bookworm_base_round_trips_through_every_compression() {
    let Some(paths) = dataset_files(&["bookworm-base.tar"]) else {
        return;
    };
    let tar = &paths[0];
    let scratch = tempfile::tempdir().unwrap();
    // (tool, flags, suffix, the layer record's compression code)
    let kinds: [(&str, &[&str], &str, u64); 4] = [
        ("gzip", &["-1"], "gz", 2),
        ("zstd", &["-1", "-T0", "-q"], "zst", 4),
        ("xz", &["-0", "-T0"], "xz", 3),
        ("bzip2", &["-1"], "bz2", 1),
    ];
    let mut jobs = Vec::new();
    for (tool, flags, suffix, code) in kinds {
        let out = scratch.path().join(format!("bookworm-base.tar.{suffix}"));
        jobs.push((compress(tool, flags, tar, &out), tool, out, code));
    }
    let uncompressed = common::sha256_file(tar);
    let cs = Cs::new();
    for (mut child, tool, out, code) in jobs {
        let status = child.wait().unwrap();
        assert!(status.success(), "{tool} failed: {status}");
        let id = import_and_check(&cs, &out, None, &uncompressed, code, scratch.path());
        eprintln!(
            "{}: {} bytes -> layer {id} round-trips",
            file_name(&out),
            fs::metadata(&out).unwrap().len()
        );
    }
}

/// Sum of the file sizes under `dir`, recursively.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            total += du(&entry.path());
        } else {
            total += meta.len();
        }
    }
    total
}

/// `status --json` as label -> value.
fn status_value(cs: &Cs, label: &str) -> String {
    let out = cs.ok(&["status", "--json"]);
    let pairs: Vec<(String, String)> = serde_json::from_str(&out).expect("status --json parses");
    pairs
        .into_iter()
        .find(|(l, _)| l == label)
        .unwrap_or_else(|| panic!("status has no {label:?}: {out}"))
        .1
}

fn pool_figures(cs: &Cs) -> String {
    format!(
        "pool stored {} bytes, logical {} bytes, dedup ratio {}",
        status_value(cs, "Pool Stored Bytes"),
        status_value(cs, "Pool Logical Bytes"),
        status_value(cs, "Pool Dedup Ratio")
    )
}

#[test]
fn six_squashed_images_fit_in_150_mb_of_pool() {
    let names = [
        "bookworm-base.tar",
        "bookworm-python3.full.tar",
        "bookworm-curl.full.tar",
        "trixie-base.tar",
        "trixie-python3.full.tar",
        "trixie-curl.full.tar",
    ];
    let Some(paths) = dataset_files(&names) else {
        return;
    };
    let cs = Cs::new();
    let mut logical = 0;
    for path in &paths {
        cs.import_file(path, &[]);
        logical += fs::metadata(path).unwrap().len();
    }
    let on_disk = du(&cs.graph().join("chunks")) + du(&cs.graph().join("manifests"));
    let stored: u64 = status_value(&cs, "Pool Stored Bytes").parse().unwrap();
    eprintln!(
        "six squashed images, {logical} bytes of tar: {on_disk} bytes under chunks/ + manifests/ \
         ({:.1} MB), status reports {stored} stored bytes ({:.1} MB)",
        on_disk as f64 / 1e6,
        stored as f64 / 1e6
    );
    assert!(
        on_disk <= 150_000_000,
        "the pool takes {on_disk} bytes, more than 150 MB"
    );
    assert!(
        stored <= 150_000_000,
        "status reports {stored} stored bytes, more than 150 MB"
    );
}
