//! Deduplication through the CLI: a layer imported again costs (almost)
//! nothing, and a layer that shares most files with another stores only
//! what is new. Figures come from `status --json`.

use crate::common;

use common::tar::{Meta, TarBuilder};
use common::{random_bytes, Cs};

/// One file of the generated layers: name, content seed and size.
#[derive(Clone)]
struct File {
    name: String,
    seed: u64,
    size: usize,
}

/// 64 files of 40..140 KiB: about 5.7 MiB, sizes and seeds varied.
fn base_files() -> Vec<File> {
    (0..64u64)
        .map(|i| File {
            name: format!("usr/lib/file-{i:02}.so"),
            seed: 1000 + i,
            size: 40 * 1024 + ((i * 7919) % 100) as usize * 1024 + i as usize,
        })
        .collect()
}

fn build(files: &[File], meta: &Meta) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir(
        "usr/",
        &Meta {
            mode: 0o755,
            ..meta.clone()
        },
    );
    t.dir(
        "usr/lib/",
        &Meta {
            mode: 0o755,
            ..meta.clone()
        },
    );
    for f in files {
        t.file(&f.name, meta, &random_bytes(f.seed, f.size));
    }
    t.finish()
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    logical: u64,
    stored: u64,
    chunks: u64,
    ratio: f64,
}

fn figures(cs: &Cs) -> Figures {
    let v: serde_json::Value = serde_json::from_str(&cs.ok(&["status", "--json"])).unwrap();
    let get = |label: &str| -> String {
        v.as_array()
            .unwrap()
            .iter()
            .find(|pair| pair[0] == label)
            .unwrap_or_else(|| panic!("status has no {label:?}: {v}"))[1]
            .as_str()
            .unwrap()
            .to_string()
    };
    Figures {
        logical: get("Pool Logical Bytes").parse().unwrap(),
        stored: get("Pool Stored Bytes").parse().unwrap(),
        chunks: get("Pool Chunks").parse().unwrap(),
        ratio: get("Pool Dedup Ratio").parse().unwrap(),
    }
}

#[test]
fn the_same_layer_twice_adds_less_than_one_percent() {
    let cs = Cs::new();
    let tar = build(&base_files(), &Meta::default());
    let size = tar.len() as u64;
    assert!(size > 5 << 20, "a layer of several MB: {size}");

    cs.import(&tar, &["-n", "first"]);
    let once = figures(&cs);
    assert_eq!(once.logical, size);
    assert!(
        once.stored > size * 95 / 100,
        "random content does not compress: {once:?}"
    );
    assert!(once.chunks >= 64, "at least a chunk per file: {once:?}");

    cs.import(&tar, &["-n", "second"]);
    let twice = figures(&cs);
    assert_eq!(twice.logical, 2 * size, "{twice:?}");
    assert_eq!(twice.chunks, once.chunks, "no new chunk: {twice:?}");
    let added = twice.stored - once.stored;
    assert!(
        added < size / 100,
        "the second import stored {added} bytes of a {size}-byte layer"
    );
    assert!(twice.ratio > 1.9, "{twice:?}");

    // The same content gzip-compressed: still nothing new but a manifest.
    let gz = common::compress_with("gzip", &tar);
    cs.import(&gz, &["-n", "third"]);
    let thrice = figures(&cs);
    assert_eq!(thrice.logical, 3 * size);
    assert_eq!(thrice.chunks, once.chunks);
    assert!(
        thrice.stored - twice.stored < size / 100,
        "{thrice:?} after {twice:?}"
    );
}

#[test]
fn a_layer_sharing_most_files_stores_only_the_new_content() {
    let base = base_files();
    let new_files: Vec<File> = (0..3u64)
        .map(|i| File {
            name: format!("usr/lib/new-{i}.so"),
            seed: 5000 + i,
            size: 150 * 1024 + i as usize * 3333,
        })
        .collect();
    let new_bytes: u64 = new_files.iter().map(|f| f.size as u64).sum();
    // The shared files, with the new ones in between, different owners
    // and times, and two of the old files dropped.
    let mut mixed: Vec<File> = base[2..].to_vec();
    for (i, f) in new_files.iter().enumerate() {
        mixed.insert(10 + 20 * i, f.clone());
    }
    let other_meta = Meta {
        mode: 0o600,
        uid: 1000,
        gid: 1000,
        mtime: 1_600_000_000,
    };

    let cs = Cs::new();
    cs.import(&build(&base, &Meta::default()), &[]);
    let before = figures(&cs);
    let tar = build(&mixed, &other_meta);
    let id = cs.import(&tar, &[]);
    let after = figures(&cs);
    assert_eq!(cs.ok_bytes(&["diff", "-u", &id]), tar);
    assert_eq!(after.logical - before.logical, tar.len() as u64);

    // The same new files alone, in a store of their own: the chunks and
    // bytes the shared layer added must be just theirs.
    let alone = Cs::new();
    alone.import(&build(&new_files, &Meta::default()), &[]);
    let alone = figures(&alone);
    assert_eq!(
        after.chunks - before.chunks,
        alone.chunks,
        "{before:?} -> {after:?}"
    );

    let added = after.stored - before.stored;
    assert!(
        added >= new_bytes * 95 / 100 && added <= new_bytes * 105 / 100 + 64 * 1024,
        "stored {added} bytes for {new_bytes} new bytes in a {}-byte layer",
        tar.len()
    );
}
