//! Fuzz targets for every decoder that reads untrusted bytes, driven by
//! proptest byte mutation through the public API of a real store:
//!
//! - `tar`: layer tars (plain, gzip, zstd; the corpus adds xz and bzip2)
//!   given to `Store::import_layer`; what is accepted is exported by
//!   `diff` and materialized by a vfs `mount`;
//! - `manifest`: the file under `<graph>/manifests/<id>`, read by `diff`
//!   and by a vfs `mount` (which materializes it);
//! - `index`: a pack index file under `<graph>/chunks/packs/`, read by
//!   `Store::open` and used by `diff`;
//! - `records`: `layers.json`, `images.json`, `containers.json` and
//!   `mountpoints.json`, read by `Store::open`, the listings, lookups,
//!   `mount` and `wipe`.
//!
//! The property for every target: the input is refused with an error (or
//! accepted with a correct result), never a panic or an abort; nothing
//! outside the store changes (sentinel files sit around it, and hostile
//! paths aim at them); a refused import leaves no record and no manifest;
//! the store still opens and lists.
//!
//! Each target first replays its corpus (`tests/it/fuzz/corpus/<target>/`:
//! seeds and crashers found earlier), then runs a fixed number of mutated
//! cases from a fixed seed. `CS_FUZZ_CASES=5000 CS_FUZZ_SEED=7 cargo
//! nextest run -E 'test(/^fuzz::/)'` runs a longer search; a failing input is saved
//! under `target/tmp/fuzz-crashers/<target>/`.

use crate::common;
mod corpus;
mod mutate;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use common::tar::{Meta, TarBuilder};
use common::{random_bytes, sha256};
use containers_storage::manifest::{self, EntryKind, LayerManifest};
use containers_storage::{
    Compression, ContainerOptions, ImageOptions, Kind, LayerOptions, Store, StoreOptions,
};
use mutate::Op;

/// Mutated cases per target in the normal test run (a smoke test of a
/// few seconds); `CS_FUZZ_CASES` overrides it for a longer search.
const CASES: u32 = 128;

// ---------------------------------------------------------------------
// The sandbox: a store with sentinels around it.

/// A temporary directory holding a store (`store/graph`, `store/run`) and
/// sentinel files beside and above it, where paths like `../../outside`
/// from inside the store land.
struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let root = tempfile::tempdir().expect("temp dir");
        for dir in ["outside", "store/outside", "store/graph/outside"] {
            let dir = root.path().join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("sentinel"), b"must not change\n").unwrap();
        }
        Sandbox { root }
    }

    fn store_dir(&self) -> PathBuf {
        self.root.path().join("store")
    }

    fn graph(&self) -> PathBuf {
        self.store_dir().join("graph")
    }

    fn options(&self) -> StoreOptions {
        StoreOptions {
            graph_root: self.graph(),
            run_root: self.store_dir().join("run"),
            driver: "vfs".into(),
            driver_options: Vec::new(),
            image_store: None,
            transient_store: false,
            // Fields added later keep their defaults.
            ..StoreOptions::defaults()
        }
    }

    fn open(&self) -> containers_storage::Result<Store> {
        Store::open(self.options())
    }

    /// Everything outside the store's own directories (`graph/outside`
    /// included, a sentinel inside the graph root that nothing owns):
    /// paths, symlink targets, file contents and link counts.
    fn outside(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, root: &Path, skip: &[PathBuf], out: &mut Vec<(PathBuf, Vec<u8>)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    out.push((rel.clone(), b"dir".to_vec()));
                    if skip.contains(&path) {
                        // Only the sentinel directory inside the graph.
                        walk(&path.join("outside"), root, &[], out);
                    } else {
                        walk(&path, root, skip, out);
                    }
                } else if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&path).unwrap();
                    out.push((rel, target.into_os_string().into_encoded_bytes()));
                } else {
                    // The link count too: a hard link made from inside the
                    // store to a file outside is an escape as well.
                    use std::os::unix::fs::MetadataExt;
                    let mut seen = format!("nlink {}: ", meta.nlink()).into_bytes();
                    seen.extend(std::fs::read(&path).unwrap_or_default());
                    out.push((rel, seen));
                }
            }
        }
        let skip = [self.graph(), self.store_dir().join("run")];
        let mut out = Vec::new();
        walk(self.root.path(), self.root.path(), &skip, &mut out);
        out.sort();
        out
    }

    /// Strings that, used as an ID, a path or a link target, point at the
    /// sentinels.
    fn hostile_strings(&self) -> Vec<String> {
        let abs = self.root.path().join("outside");
        vec![
            "..".into(),
            "../..".into(),
            "../outside".into(),
            "../../outside".into(),
            "../../../outside".into(),
            "../../../../outside".into(),
            "a/../../../outside/sentinel".into(),
            abs.display().to_string(),
            abs.join("sentinel").display().to_string(),
            "/".into(),
            "".into(),
            ".".into(),
            "x".repeat(300),
            "nul\0byte".into(),
        ]
    }
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn layer_ids(store: &Store) -> Vec<String> {
    store
        .layers()
        .expect("the store lists its layers")
        .into_iter()
        .map(|l| l.id)
        .collect()
}

/// The uncompressed `diff` of a layer.
fn export(store: &Store, id: &str) -> containers_storage::Result<Vec<u8>> {
    let mut out = Vec::new();
    store.diff(id, Some(Compression::None), &mut out)?;
    Ok(out)
}

/// Runs `case` on inputs drawn from `strategy` (see [`corpus::runner`]),
/// failing the test with proptest's minimized input when a case fails.
fn run<S: Strategy>(default_cases: u32, strategy: S, case: impl Fn(S::Value))
where
    S::Value: std::fmt::Debug,
{
    let mut runner = corpus::runner(default_cases);
    if let Err(e) = runner.run(&strategy, |value| {
        case(value);
        Ok(())
    }) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------
// Target: tar import.

/// One entry of every kind, all small (the mutations then hit headers).
fn small_every_kind() -> Vec<u8> {
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.dir("./", &m);
    t.dir("etc/", &m);
    t.file("etc/hostname", &m, b"box\n");
    t.file("etc/empty", &m, b"");
    t.file("bin-tool", &m, &random_bytes(1, 1500));
    t.symlink("etc/link", "../bin-tool", &m);
    t.hardlink("etc/hard", "etc/hostname", &m);
    t.char_dev("dev-null", 1, 3, &m);
    t.block_dev("dev-sda", 8, 0, &m);
    t.fifo("pipe", &m);
    t.pax_xattr_file(
        "caps",
        &[("user.note", b"hi")],
        "1700000000.123456789",
        &m,
        b"with xattrs",
    );
    t.pax_long_file(&format!("{}/file", "d".repeat(110)), &m, b"long via pax");
    t.gnu_long_file(&format!("{}/gnu", "g".repeat(110)), &m, b"long via gnu");
    t.gnu_long_symlink("longlink", &"t".repeat(120), &m);
    t.whiteout("etc", "removed");
    t.opaque("etc");
    t.finish_unpadded()
}

/// A file of several chunks between two small ones, padded to a record.
fn tar_with_chunks() -> Vec<u8> {
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.file("small", &m, b"small\n");
    t.file("big", &m, &random_bytes(9, 300_000));
    t.file("after", &m, b"after\n");
    t.finish()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 1).unwrap()
}

/// The tar inside a (possibly compressed) seed, for structure-aware
/// mutation; a seed that does not decompress is used as it is.
fn inner_tar(seed: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let ok = match Compression::sniff(seed) {
        Compression::Gzip => flate2::read::MultiGzDecoder::new(seed)
            .read_to_end(&mut out)
            .is_ok(),
        Compression::Zstd => zstd::stream::read::Decoder::new(seed)
            .and_then(|mut d| d.read_to_end(&mut out))
            .is_ok(),
        _ => false,
    };
    if ok {
        out
    } else {
        seed.to_vec()
    }
}

/// Recomputes the checksum of every header, so that mutations reach the
/// parser past the checksum test.
fn fix_tar_checksums(tar: &mut [u8]) {
    for at in tar_headers(tar) {
        let block = &mut tar[at..at + 512];
        block[148..156].copy_from_slice(b"        ");
        let sum: u64 = block.iter().map(|&b| b as u64).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }
}

/// Header fields as (offset, length).
const TAR_FIELDS: [(usize, usize); 12] = [
    (0, 100),   // name
    (100, 8),   // mode
    (108, 8),   // uid
    (116, 8),   // gid
    (124, 12),  // size
    (136, 12),  // mtime
    (156, 1),   // typeflag
    (157, 100), // linkname
    (257, 8),   // magic and version
    (329, 8),   // devmajor
    (337, 8),   // devminor
    (345, 155), // prefix
];

/// Values a hostile tar puts in header fields: every type flag, escaping
/// and whiteout names, and numbers at the edges of octal and base-256.
const TAR_VALUES: [&[u8]; 26] = [
    b"0",
    b"1",
    b"2",
    b"3",
    b"4",
    b"5",
    b"6",
    b"7",
    b"x",
    b"g",
    b"L",
    b"K",
    b"S",
    b"\0",
    b"../../outside/pwned",
    b"/",
    b"esc/pwned",
    b".wh..wh..opq",
    b"etc/.wh.",
    b"77777777777",
    b"00000000000",
    b"-1",
    b"\x80\0\0\0\0\0\0\x01\0\0\0\0",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    b"ustar\x0000",
    b"ustar  \0",
];

/// Sets header field `field` of header number `header` (in walk order) to
/// `TAR_VALUES[value]`, NUL-padded.
#[derive(Clone, Debug)]
struct TarField {
    header: usize,
    field: usize,
    value: usize,
}

/// The offsets of the header blocks, walking the tar by its size fields.
fn tar_headers(tar: &[u8]) -> Vec<usize> {
    let mut headers = Vec::new();
    let mut at = 0usize;
    while at + 512 <= tar.len() {
        let block = &tar[at..at + 512];
        if block.iter().all(|&b| b == 0) {
            at += 512;
            continue;
        }
        headers.push(at);
        let size = block[124..136]
            .iter()
            .skip_while(|&&b| b == b' ')
            .take_while(|b| (b'0'..=b'7').contains(*b))
            .fold(0u64, |v, &d| {
                v.saturating_mul(8).saturating_add((d - b'0') as u64)
            });
        let Some(next) = size
            .div_ceil(512)
            .checked_mul(512)
            .and_then(|n| n.checked_add(512))
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| at.checked_add(n))
        else {
            break;
        };
        at = next;
    }
    headers
}

fn set_tar_fields(tar: &mut [u8], ops: &[TarField]) {
    for op in ops {
        let headers = tar_headers(tar);
        if headers.is_empty() {
            return;
        }
        let at = headers[op.header % headers.len()];
        let (offset, len) = TAR_FIELDS[op.field % TAR_FIELDS.len()];
        let value = TAR_VALUES[op.value % TAR_VALUES.len()];
        let field = &mut tar[at + offset..at + offset + len];
        field.fill(0);
        let n = value.len().min(len);
        field[..n].copy_from_slice(&value[..n]);
    }
}

#[derive(Clone, Debug)]
struct TarCase {
    seed: usize,
    /// Header fields set, then bytes mutated, in the uncompressed tar.
    fields: Vec<TarField>,
    inner: Vec<Op>,
    fix_checksums: bool,
    /// 0: plain, 1: gzip, 2: zstd.
    compression: u8,
    /// Mutations of the stream as given (after compression).
    outer: Vec<Op>,
}

fn tar_case() -> impl Strategy<Value = TarCase> {
    let field = (any::<usize>(), 0..TAR_FIELDS.len(), 0..TAR_VALUES.len()).prop_map(
        |(header, field, value)| TarField {
            header,
            field,
            value,
        },
    );
    (
        any::<usize>(),
        proptest::collection::vec(field, 0..3),
        proptest::collection::vec(mutate::op(0), 0..6),
        any::<bool>(),
        prop_oneof![3 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        proptest::collection::vec(mutate::op(0), 0..3),
    )
        .prop_map(
            |(seed, fields, inner, fix_checksums, compression, outer)| TarCase {
                seed,
                fields,
                inner,
                fix_checksums,
                compression,
                outer,
            },
        )
}

fn tar_input(seeds: &[Vec<u8>], case: &TarCase) -> Vec<u8> {
    let mut tar = seeds[case.seed % seeds.len()].clone();
    set_tar_fields(&mut tar, &case.fields);
    mutate::apply(&mut tar, &case.inner, seeds, &[]);
    if case.fix_checksums {
        fix_tar_checksums(&mut tar);
    }
    let mut input = match case.compression {
        1 => gzip(&tar),
        2 => zstd(&tar),
        _ => tar,
    };
    mutate::apply(&mut input, &case.outer, seeds, &[]);
    input
}

/// A store holding one good layer, so that "no new layer" means something.
struct ImportFixture {
    sandbox: Sandbox,
    store: Store,
}

const IMPORTED_ID: &str = "fuzzed-import";

impl ImportFixture {
    fn new() -> ImportFixture {
        let sandbox = Sandbox::new();
        let store = sandbox.open().unwrap();
        let options = LayerOptions {
            names: vec!["good".into()],
            ..LayerOptions::default()
        };
        store
            .import_layer(None, &options, &small_every_kind()[..], &())
            .unwrap();
        ImportFixture { sandbox, store }
    }

    /// Imports `input`; checks that it is refused without a trace or
    /// imported so that `diff` gives back the same tar, then removes it.
    fn check(&self, input: &[u8]) {
        let store = &self.store;
        let graph = self.sandbox.graph();
        let ids = layer_ids(store);
        let manifests = file_names(&graph.join("manifests"));
        let packs = file_names(&graph.join("chunks/packs"));
        let outside = self.sandbox.outside();
        let options = LayerOptions {
            id: Some(IMPORTED_ID.into()),
            names: vec!["fuzzed".into()],
            ..LayerOptions::default()
        };
        match store.import_layer(None, &options, input, &()) {
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.starts_with(&format!("layer {IMPORTED_ID}: ")),
                    "the error does not name the layer: {message}"
                );
                assert_eq!(layer_ids(store), ids, "a record is left: {message}");
                assert_eq!(file_names(&graph.join("manifests")), manifests, "{message}");
                assert_eq!(file_names(&graph.join("chunks/packs")), packs, "{message}");
                let tmp = file_names(&graph.join("chunks/tmp"));
                assert!(tmp.is_empty(), "{message}: chunks/tmp holds {tmp:?}");
            }
            Ok(layer) => {
                let tar = export(store, &layer.id).expect("diff of an imported layer");
                assert_eq!(sha256(&tar), layer.diff_digest, "diff-digest");
                assert_eq!(tar.len() as u64, layer.diff_size, "diff-size");
                assert_eq!(sha256(input), layer.compressed_digest);
                if Compression::sniff(input) == Compression::None {
                    assert!(tar == input, "diff is not the imported tar");
                }
                // What a hostile tar aims at: the materializer writing
                // through its symlinks and paths. What the import takes
                // mounts: a layer that cannot is refused at import.
                store
                    .mount(&layer.id, false)
                    .expect("an imported layer mounts");
                store.unmount(&layer.id, true).unwrap();
                store.delete_layer(&layer.id).unwrap();
                assert_eq!(file_names(&graph.join("manifests")), manifests);
            }
        }
        assert!(
            file_names(&self.store.layers_dir().join(".incomplete")).is_empty(),
            "an import marker is left"
        );
        assert_eq!(self.sandbox.outside(), outside, "something outside changed");
        let reopened = self.sandbox.open().expect("the store opens again");
        assert_eq!(layer_ids(&reopened), ids);
    }
}

#[test]
fn fuzz_tar_import() {
    let fixture = ImportFixture::new();
    let corpus = corpus::load("tar");
    for (name, input) in &corpus {
        corpus::guard("tar", input, || fixture.check(input));
        eprintln!("tar corpus {name}: ok");
    }
    let mut seeds = vec![small_every_kind(), tar_with_chunks()];
    seeds.extend(corpus.iter().map(|(_, bytes)| inner_tar(bytes)));
    run(CASES, tar_case(), |case| {
        let input = tar_input(&seeds, &case);
        corpus::guard("tar", &input, || fixture.check(&input));
    });
}

// ---------------------------------------------------------------------
// Target: the manifest decoder (and what reads a manifest: diff, mount).

/// A change to a decoded manifest, for inputs that get past the decoder.
#[derive(Clone, Debug)]
enum ModelOp {
    /// Entry `entry`'s path becomes hostile string `with`.
    Path { entry: usize, with: usize },
    /// Entry `entry`'s link target becomes hostile string `with`.
    Link { entry: usize, with: usize },
    /// Entry `entry` becomes of another kind.
    Kind { entry: usize, kind: usize },
    /// Entry `entry`'s size becomes an interesting number.
    Size { entry: usize, value: usize },
    /// Entry `entry`'s raw length becomes an interesting number.
    RawLen { entry: usize, value: usize },
    /// The manifest's raw length becomes an interesting number.
    TotalRawLen { value: usize },
    /// Entry `entry` loses its last chunk.
    DropChunk { entry: usize },
    /// Entry `entry` is repeated.
    Repeat { entry: usize },
    /// Entry `entry` becomes a symlink `esc` to the sentinel directory
    /// and the next one a file under it: `esc/<name>`.
    EscapeThroughSymlink { entry: usize, with: usize },
}

const KINDS: [EntryKind; 9] = [
    EntryKind::File,
    EntryKind::Dir,
    EntryKind::Symlink,
    EntryKind::Hardlink,
    EntryKind::CharDevice,
    EntryKind::BlockDevice,
    EntryKind::Fifo,
    EntryKind::Whiteout,
    EntryKind::Opaque,
];

const NUMBERS: [u64; 9] = [
    0,
    1,
    511,
    512,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 40,
    i64::MAX as u64,
    u64::MAX,
];

fn model_op(strings: usize) -> impl Strategy<Value = ModelOp> {
    let e = any::<usize>();
    let n = 0..NUMBERS.len();
    prop_oneof![
        (e, 0..strings).prop_map(|(entry, with)| ModelOp::Path { entry, with }),
        (e, 0..strings).prop_map(|(entry, with)| ModelOp::Link { entry, with }),
        (e, 0..KINDS.len()).prop_map(|(entry, kind)| ModelOp::Kind { entry, kind }),
        (e, n.clone()).prop_map(|(entry, value)| ModelOp::Size { entry, value }),
        (e, n.clone()).prop_map(|(entry, value)| ModelOp::RawLen { entry, value }),
        n.prop_map(|value| ModelOp::TotalRawLen { value }),
        e.prop_map(|entry| ModelOp::DropChunk { entry }),
        e.prop_map(|entry| ModelOp::Repeat { entry }),
        (e, 0..strings).prop_map(|(entry, with)| ModelOp::EscapeThroughSymlink { entry, with }),
    ]
}

fn apply_model(m: &mut LayerManifest, ops: &[ModelOp], strings: &[String]) {
    for op in ops {
        let n = m.entries.len();
        if n == 0 {
            if let ModelOp::TotalRawLen { value } = op {
                m.raw_len = NUMBERS[*value];
            }
            continue;
        }
        let s = |with: &usize| strings[with % strings.len()].as_bytes().to_vec();
        match op {
            ModelOp::Path { entry, with } => m.entries[entry % n].path = s(with),
            ModelOp::Link { entry, with } => m.entries[entry % n].link = s(with),
            ModelOp::Kind { entry, kind } => m.entries[entry % n].kind = KINDS[*kind],
            ModelOp::Size { entry, value } => m.entries[entry % n].size = NUMBERS[*value],
            ModelOp::RawLen { entry, value } => m.entries[entry % n].raw_len = NUMBERS[*value],
            ModelOp::TotalRawLen { value } => m.raw_len = NUMBERS[*value],
            ModelOp::DropChunk { entry } => {
                m.entries[entry % n].chunks.pop();
            }
            ModelOp::Repeat { entry } => {
                let copy = m.entries[entry % n].clone();
                m.entries.insert(entry % n, copy);
            }
            ModelOp::EscapeThroughSymlink { entry, with } => {
                let at = entry % n;
                let link = &mut m.entries[at];
                link.kind = EntryKind::Symlink;
                link.path = b"esc".to_vec();
                link.link = s(with);
                if let Some(next) = m.entries.get_mut(at + 1) {
                    next.path = b"esc/pwned".to_vec();
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
struct ManifestCase {
    seed: usize,
    /// 0: mutate the file bytes; 1: mutate the msgpack inside the zstd
    /// frame; 2: change the decoded manifest, then mutate the msgpack.
    layer: u8,
    ops: Vec<Op>,
    model: Vec<ModelOp>,
}

fn manifest_case(strings: usize) -> impl Strategy<Value = ManifestCase> {
    (
        any::<usize>(),
        0u8..3,
        proptest::collection::vec(mutate::op(0), 0..5),
        proptest::collection::vec(model_op(strings), 1..4),
    )
        .prop_map(|(seed, layer, ops, model)| ManifestCase {
            seed,
            layer,
            ops,
            model,
        })
}

const MANIFEST_HEADER: usize = 12;

fn manifest_input(seeds: &[Vec<u8>], case: &ManifestCase, strings: &[String]) -> Vec<u8> {
    let mut bytes = seeds[case.seed % seeds.len()].clone();
    if case.layer == 2 {
        if let Ok(mut m) = manifest::decode(Path::new("seed"), &bytes) {
            apply_model(&mut m, &case.model, strings);
            bytes = manifest::encode(&m);
        }
    }
    let packed = (case.layer > 0 && bytes.len() > MANIFEST_HEADER)
        .then(|| zstd::stream::decode_all(&bytes[MANIFEST_HEADER..]).ok())
        .flatten();
    match packed {
        Some(mut packed) => {
            mutate::apply(&mut packed, &case.ops, &[], &[]);
            bytes.truncate(MANIFEST_HEADER);
            bytes.extend(zstd::bulk::compress(&packed, 1).unwrap());
        }
        None => mutate::apply(&mut bytes, &case.ops, seeds, &[]),
    }
    bytes
}

/// A store with one sealed layer whose manifest each case replaces.
struct ManifestFixture {
    sandbox: Sandbox,
    store: Store,
    id: String,
    tar: Vec<u8>,
    manifest: Vec<u8>,
}

impl ManifestFixture {
    fn new() -> ManifestFixture {
        let sandbox = Sandbox::new();
        let store = sandbox.open().unwrap();
        // Both seeds in one layer: every entry kind and a file of several
        // chunks.
        let mut tar = small_every_kind();
        tar.truncate(tar.len() - 1024);
        let chunks = tar_with_chunks();
        tar.extend_from_slice(&chunks);
        let options = LayerOptions {
            id: Some("fuzz-manifest".into()),
            ..LayerOptions::default()
        };
        let layer = store.import_layer(None, &options, &tar[..], &()).unwrap();
        let manifest = std::fs::read(sandbox.graph().join("manifests").join(&layer.id)).unwrap();
        ManifestFixture {
            sandbox,
            store,
            id: layer.id,
            tar,
            manifest,
        }
    }

    fn path(&self) -> PathBuf {
        self.sandbox.graph().join("manifests").join(&self.id)
    }

    /// Puts `bytes` in place of the layer's manifest; `diff` must fail or
    /// give back the layer's exact tar, and `mount` must not write
    /// outside the store.
    fn check(&self, bytes: &[u8]) {
        let store = &self.store;
        let outside = self.sandbox.outside();
        std::fs::write(self.path(), bytes).unwrap();
        let layer = store.layer(&self.id).unwrap();
        let _ = store.layer_manifest(&layer);
        match export(store, &self.id) {
            Ok(tar) => assert!(tar == self.tar, "diff gave other bytes without an error"),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        if store.mount(&self.id, false).is_ok() {
            store.unmount(&self.id, true).unwrap();
        }
        // Drop the materialized tree so that the next case builds its own.
        let _ = std::fs::remove_dir_all(self.sandbox.graph().join("vfs/dir").join(&self.id));
        assert_eq!(self.sandbox.outside(), outside, "something outside changed");
        std::fs::write(self.path(), &self.manifest).unwrap();
        assert_eq!(
            layer_ids(&self.sandbox.open().unwrap()),
            vec![self.id.clone()]
        );
    }
}

#[test]
fn fuzz_manifest_decoder() {
    let fixture = ManifestFixture::new();
    let corpus = corpus::load("manifest");
    for (name, bytes) in &corpus {
        corpus::guard("manifest", bytes, || fixture.check(bytes));
        eprintln!("manifest corpus {name}: ok");
    }
    let mut seeds = vec![fixture.manifest.clone()];
    seeds.extend(corpus.into_iter().map(|(_, bytes)| bytes));
    let strings = fixture.sandbox.hostile_strings();
    run(CASES, manifest_case(strings.len()), |case| {
        let bytes = manifest_input(&seeds, &case, &strings);
        corpus::guard("manifest", &bytes, || fixture.check(&bytes));
    });
}

// ---------------------------------------------------------------------
// Target: the pack index reader.

#[derive(Clone, Debug)]
struct IndexCase {
    seed: usize,
    ops: Vec<Op>,
    /// 0: as mutated; 1: trailing checksum recomputed; 2: entry count set
    /// from the length, then the checksum recomputed.
    fix: u8,
}

fn index_case() -> impl Strategy<Value = IndexCase> {
    (any::<usize>(), mutate::ops(0, 6), 0u8..3).prop_map(|(seed, ops, fix)| IndexCase {
        seed,
        ops,
        fix,
    })
}

const INDEX_HEADER: usize = 16;
const INDEX_RECORD: usize = 56;
const INDEX_TRAILER: usize = 32;

fn index_input(seeds: &[Vec<u8>], case: &IndexCase) -> Vec<u8> {
    let mut bytes = seeds[case.seed % seeds.len()].clone();
    mutate::apply(&mut bytes, &case.ops, seeds, &[]);
    let n = bytes.len();
    if case.fix == 2 && n >= INDEX_HEADER + INDEX_TRAILER {
        let count = (n - INDEX_HEADER - INDEX_TRAILER) / INDEX_RECORD;
        bytes[8..12].copy_from_slice(&(count as u32).to_le_bytes());
    }
    if case.fix > 0 && n >= INDEX_TRAILER {
        let sum = blake3::hash(&bytes[..n - INDEX_TRAILER]);
        bytes[n - INDEX_TRAILER..].copy_from_slice(sum.as_bytes());
    }
    bytes
}

/// A store with one layer in one pack; each case replaces its index.
struct IndexFixture {
    sandbox: Sandbox,
    id: String,
    tar: Vec<u8>,
    index_path: PathBuf,
    index: Vec<u8>,
}

impl IndexFixture {
    fn new() -> IndexFixture {
        let sandbox = Sandbox::new();
        let store = sandbox.open().unwrap();
        let tar = tar_with_chunks();
        let layer = store
            .import_layer(None, &LayerOptions::default(), &tar[..], &())
            .unwrap();
        let packs = sandbox.graph().join("chunks/packs");
        let idx: Vec<String> = file_names(&packs)
            .into_iter()
            .filter(|n| n.ends_with(".idx"))
            .collect();
        assert_eq!(idx.len(), 1, "one pack index: {idx:?}");
        let index_path = packs.join(&idx[0]);
        let index = std::fs::read(&index_path).unwrap();
        IndexFixture {
            sandbox,
            id: layer.id,
            tar,
            index_path,
            index,
        }
    }

    /// Puts `bytes` in place of the index; opening the store must fail
    /// naming the file, or `diff` must fail or give back the exact tar.
    fn check(&self, bytes: &[u8]) {
        let outside = self.sandbox.outside();
        std::fs::write(&self.index_path, bytes).unwrap();
        match self.sandbox.open() {
            Err(e) => {
                let message = e.to_string();
                let name = self.index_path.file_name().unwrap().to_str().unwrap();
                assert!(
                    message.contains(name),
                    "the error does not name {name}: {message}"
                );
            }
            Ok(store) => {
                assert_eq!(layer_ids(&store), vec![self.id.clone()]);
                store.pool().stats().expect("pool figures");
                if let Ok(tar) = export(&store, &self.id) {
                    assert!(tar == self.tar, "diff gave other bytes without an error");
                }
            }
        }
        assert_eq!(self.sandbox.outside(), outside, "something outside changed");
        std::fs::write(&self.index_path, &self.index).unwrap();
    }
}

#[test]
fn fuzz_pack_index_reader() {
    let fixture = IndexFixture::new();
    let corpus = corpus::load("index");
    for (name, bytes) in &corpus {
        corpus::guard("index", bytes, || fixture.check(bytes));
        eprintln!("index corpus {name}: ok");
    }
    let mut seeds = vec![fixture.index.clone()];
    seeds.extend(corpus.into_iter().map(|(_, bytes)| bytes));
    run(CASES, index_case(), |case| {
        let bytes = index_input(&seeds, &case);
        corpus::guard("index", &bytes, || fixture.check(&bytes));
    });
}

// ---------------------------------------------------------------------
// Target: the record files.

/// The record files, by the corpus file prefix that seeds each.
const RECORD_FILES: [(&str, &str); 4] = [
    ("layers", "graph/vfs-layers/layers.json"),
    ("images", "graph/vfs-images/images.json"),
    ("containers", "graph/vfs-containers/containers.json"),
    ("mountpoints", "run/vfs-layers/mountpoints.json"),
];

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&src, &dst);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A populated store (a layer chain, an image with big data, a container,
/// a mount) that every case copies into a fresh sandbox.
struct RecordsFixture {
    template: Sandbox,
    /// Per record file: the template's bytes, then the corpus seeds.
    seeds: [Vec<Vec<u8>>; 4],
}

impl RecordsFixture {
    fn new(corpus: &[(String, Vec<u8>)]) -> RecordsFixture {
        let template = Sandbox::new();
        let store = template.open().unwrap();
        let m = Meta::default();
        let mut t = TarBuilder::new();
        // Searchable, so that a user without root can copy the template.
        let dir = Meta {
            mode: 0o755,
            ..Meta::default()
        };
        t.dir("etc/", &dir);
        t.file("etc/os-release", &m, b"ID=fuzz\n");
        t.symlink("etc/link", "os-release", &m);
        let base = LayerOptions {
            id: Some("fuzz-base".into()),
            names: vec!["base".into()],
            ..LayerOptions::default()
        };
        store
            .import_layer(None, &base, &t.finish()[..], &())
            .unwrap();
        let mut t = TarBuilder::new();
        t.file("etc/top", &m, b"top\n");
        let top = LayerOptions {
            id: Some("fuzz-top".into()),
            ..LayerOptions::default()
        };
        store
            .import_layer(Some("fuzz-base"), &top, &t.finish()[..], &())
            .unwrap();
        let image = ImageOptions {
            id: Some("fuzz-image".into()),
            names: vec!["img".into()],
            metadata: "meta".into(),
            ..ImageOptions::default()
        };
        store.create_image(Some("fuzz-top"), &image).unwrap();
        store
            .set_big_data(Kind::Image, "fuzz-image", "manifest", b"{}")
            .unwrap();
        let container = ContainerOptions {
            id: Some("fuzz-container".into()),
            names: vec!["ctr".into()],
            ..ContainerOptions::default()
        };
        store
            .create_container(Some("fuzz-image"), &container)
            .unwrap();
        store
            .set_big_data(Kind::Container, "fuzz-container", "state", b"s")
            .unwrap();
        store.mount("fuzz-base", false).unwrap();
        drop(store);
        let seeds = RECORD_FILES.map(|(prefix, path)| {
            let mut seeds = vec![std::fs::read(template.store_dir().join(path)).unwrap()];
            seeds.extend(
                corpus
                    .iter()
                    .filter(|(name, _)| name.starts_with(prefix))
                    .map(|(_, bytes)| bytes.clone()),
            );
            seeds
        });
        RecordsFixture { template, seeds }
    }

    /// A fresh copy of the template store in its own sandbox.
    fn copy(&self) -> Sandbox {
        let sandbox = Sandbox::new();
        for dir in ["graph", "run"] {
            copy_tree(
                &self.template.store_dir().join(dir),
                &sandbox.store_dir().join(dir),
            );
        }
        sandbox
    }

    /// Writes `bytes` as record file `which` of a fresh copy, then opens,
    /// lists, looks up, exports and finally wipes: refusals must leave the
    /// file as it was, and nothing may change outside the store.
    fn check(&self, which: usize, bytes: &[u8]) {
        let sandbox = self.copy();
        // Hostile absolute paths aim at the template's sentinels.
        let outside = (sandbox.outside(), self.template.outside());
        let path = sandbox.store_dir().join(RECORD_FILES[which].1);
        std::fs::write(&path, bytes).unwrap();
        let unchanged = || {
            assert!(
                std::fs::read(&path).unwrap() == bytes,
                "{} was rewritten after a refusal",
                path.display()
            )
        };
        match sandbox.open() {
            Err(e) => {
                assert!(!e.to_string().is_empty());
                unchanged();
            }
            Ok(store) => {
                if exercise(&store).is_err() {
                    unchanged();
                }
                let _ = store.unmount_all();
                let _ = store.wipe();
            }
        }
        assert_eq!(
            (sandbox.outside(), self.template.outside()),
            outside,
            "something outside changed"
        );
    }
}

/// Every read of the records, then what deletes by record IDs (`wipe`).
/// Returns the first error of a listing (lookups of odd records may fail
/// on their own).
fn exercise(store: &Store) -> containers_storage::Result<()> {
    let layers = store.layers()?;
    let images = store.images()?;
    let containers = store.containers()?;
    store.mounts()?;
    let _ = store.status();
    let mut sink = Vec::new();
    for layer in &layers {
        let _ = store.layer(&layer.id);
        let _ = store.names(&layer.id);
        let _ = store.metadata(&layer.id);
        let _ = store.diff_size(&layer.id);
        if layer.sealed {
            sink.clear();
            let _ = store.diff(&layer.id, None, &mut sink);
        }
        // Builds the chain's directories (named by record IDs).
        let _ = store.mount(&layer.id, false);
    }
    for image in &images {
        let _ = store.image(&image.id);
        let _ = store.image_size(image);
        for key in store
            .big_data_names(Kind::Image, &image.id)
            .unwrap_or_default()
        {
            let _ = store.big_data(Kind::Image, &image.id, &key);
        }
    }
    for container in &containers {
        let _ = store.container(&container.id);
        let _ = store.container_size(container);
        for key in store
            .big_data_names(Kind::Container, &container.id)
            .unwrap_or_default()
        {
            let _ = store.big_data(Kind::Container, &container.id, &key);
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
struct RecordsCase {
    which: usize,
    seed: usize,
    ops: Vec<Op>,
}

#[test]
fn fuzz_record_files() {
    let corpus = corpus::load("records");
    let fixture = RecordsFixture::new(&corpus);
    for (name, bytes) in &corpus {
        let which = RECORD_FILES
            .iter()
            .position(|(prefix, _)| name.starts_with(prefix))
            .unwrap_or_else(|| panic!("records corpus {name}: which record file?"));
        corpus::guard("records", bytes, || fixture.check(which, bytes));
        eprintln!("records corpus {name}: ok");
    }
    let strings = fixture.template.hostile_strings();
    let strategy = (
        0..RECORD_FILES.len(),
        any::<usize>(),
        mutate::ops(strings.len(), 5),
    )
        .prop_map(|(which, seed, ops)| RecordsCase { which, seed, ops });
    run(CASES, strategy, |case| {
        let seeds = &fixture.seeds[case.which];
        let mut bytes = seeds[case.seed % seeds.len()].clone();
        mutate::apply(&mut bytes, &case.ops, seeds, &strings);
        corpus::guard("records", &bytes, || fixture.check(case.which, &bytes));
    });
}
