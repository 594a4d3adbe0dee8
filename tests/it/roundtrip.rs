//! Import -> export is byte-identical: a property test over random tars
//! with every entry kind through the library API, and `every_kind()` through
//! the CLI in every compression, with the record's digests, sizes,
//! compression code and owner sets.

use crate::common;

use std::io::{Read, Write};
use std::path::Path;

use common::tar::{every_kind, Meta, TarBuilder};
use common::{expect_status, random_bytes, run_command, sha256, Cs};
use containers_storage::manifest::{self, Compression, EntryKind};
use containers_storage::materialize::{BuildOptions, Format, Materializer};
use containers_storage::ChunkPool;
use proptest::prelude::*;

/// The largest chunk the default chunker cuts.
const MAX_CHUNK: u64 = 256 * 1024;

// ---------------------------------------------------------------------------
// Random tars for the property test.

#[derive(Clone, Copy, Debug)]
enum Fill {
    /// Pseudo-random bytes; few seeds, so that files repeat each other.
    Random(u64),
    /// One byte repeated.
    Byte(u8),
    /// Text-like lines.
    Lines(u32),
}

impl Fill {
    fn bytes(self, len: usize) -> Vec<u8> {
        match self {
            Fill::Random(seed) => random_bytes(seed, len),
            Fill::Byte(b) => vec![b; len],
            Fill::Lines(n) => {
                let mut out = Vec::with_capacity(len + 32);
                let mut i = n;
                while out.len() < len {
                    out.extend_from_slice(format!("line {i} of the file\n").as_bytes());
                    i = i.wrapping_add(1);
                }
                out.truncate(len);
                out
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Spec {
    File(usize, Fill),
    Dir,
    Symlink(String),
    /// A hard link to the `n`-th earlier entry (or a fresh name if none).
    Hardlink(usize),
    CharDev(u32, u32),
    BlockDev(u32, u32),
    Fifo,
    PaxXattrFile(Vec<(String, Vec<u8>)>, u32, usize, usize, Fill),
    PaxLongFile(usize, usize, Fill),
    GnuLongFile(usize, usize, Fill),
    GnuLongSymlink(usize),
    Whiteout,
    Opaque,
}

#[derive(Clone, Debug)]
struct Item {
    spec: Spec,
    meta: Meta,
}

#[derive(Clone, Copy, Debug)]
enum Ending {
    Padded,
    Unpadded,
    /// Extra bytes after the end-of-archive marker.
    Trailing(usize, u64),
}

#[derive(Clone, Debug)]
struct TarSpec {
    global_header: bool,
    items: Vec<Item>,
    ending: Ending,
}

/// What the manifest must say about one entry.
#[derive(Debug)]
struct Expected {
    kind: EntryKind,
    path: String,
    meta: Meta,
    size: u64,
    link: Option<String>,
    dev: (u32, u32),
    xattrs: Vec<(String, Vec<u8>)>,
    mtime_nsec: u32,
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..2048,
        3 => (1usize..48, -2i64..=2).prop_map(|(k, d)| (k as i64 * 512 + d).max(0) as usize),
        2 => (prop_oneof![Just(16_384usize), Just(65_536), Just(262_144)], -2i64..=2)
            .prop_map(|(base, d)| (base as i64 + d) as usize),
        1 => 262_145usize..300_000,
        1 => 0usize..300_000,
    ]
}

fn fill_strategy() -> impl Strategy<Value = Fill> {
    prop_oneof![
        3 => (0u64..6).prop_map(Fill::Random),
        1 => any::<u8>().prop_map(Fill::Byte),
        1 => any::<u32>().prop_map(Fill::Lines),
    ]
}

fn meta_strategy() -> impl Strategy<Value = Meta> {
    (
        0u32..=0o7777,
        prop_oneof![Just(0u64), Just(1000), 0u64..=0o7777777],
        prop_oneof![Just(0u64), Just(100), 0u64..=0o7777777],
        0u64..=0o77777777777,
    )
        .prop_map(|(mode, uid, gid, mtime)| Meta {
            mode,
            uid,
            gid,
            mtime,
        })
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    let value = || proptest::collection::vec(any::<u8>(), 0..24);
    let xattrs = proptest::collection::vec(
        prop_oneof![
            capability_strategy().prop_map(|v| ("security.capability".to_string(), v)),
            ("user\\.[a-z]{1,10}", value()),
            ("trusted\\.[a-z.]{1,10}", value()),
        ],
        0..4,
    );
    prop_oneof![
        6 => (size_strategy(), fill_strategy()).prop_map(|(s, f)| Spec::File(s, f)),
        2 => Just(Spec::Dir),
        2 => "(\\.\\./)?[a-z/]{1,40}".prop_map(Spec::Symlink),
        2 => (0usize..8).prop_map(Spec::Hardlink),
        // Device numbers up to what mknod(2) takes: 12 bits, 20 bits.
        1 => (0u32..4096, 0u32..1 << 20).prop_map(|(a, b)| Spec::CharDev(a, b)),
        1 => (0u32..4096, 0u32..1 << 20).prop_map(|(a, b)| Spec::BlockDev(a, b)),
        1 => Just(Spec::Fifo),
        2 => (xattrs, 0u32..1_000_000_000, 1usize..=9, size_strategy(), fill_strategy())
            .prop_map(|(x, n, d, s, f)| Spec::PaxXattrFile(x, n, d, s, f)),
        1 => (90usize..250, size_strategy(), fill_strategy())
            .prop_map(|(l, s, f)| Spec::PaxLongFile(l, s, f)),
        1 => (90usize..250, size_strategy(), fill_strategy())
            .prop_map(|(l, s, f)| Spec::GnuLongFile(l, s, f)),
        1 => (100usize..300).prop_map(Spec::GnuLongSymlink),
        1 => Just(Spec::Whiteout),
        1 => Just(Spec::Opaque),
    ]
}

/// `security.capability` values the kernel takes: revision 2 in 20 bytes
/// or revision 3 (with a root ID that is not -1) in 24, either with or
/// without the effective flag.
fn capability_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<[u32; 4]>(),
        0u32..u32::MAX,
    )
        .prop_map(|(v3, effective, sets, root)| {
            let magic = if v3 { 0x0300_0000u32 } else { 0x0200_0000 } | effective as u32;
            let mut words = vec![magic];
            words.extend_from_slice(&sets);
            if v3 {
                words.push(root);
            }
            words.iter().flat_map(|w| w.to_le_bytes()).collect()
        })
}

fn tar_strategy() -> impl Strategy<Value = TarSpec> {
    (
        any::<bool>(),
        proptest::collection::vec(
            (spec_strategy(), meta_strategy()).prop_map(|(spec, meta)| Item { spec, meta }),
            1..16,
        ),
        prop_oneof![
            Just(Ending::Padded),
            Just(Ending::Unpadded),
            (1usize..3000, any::<u64>()).prop_map(|(n, s)| Ending::Trailing(n, s)),
        ],
    )
        .prop_map(|(global_header, items, ending)| TarSpec {
            global_header,
            items,
            ending,
        })
}

/// A PAX record body, as `TarBuilder::pax` writes it.
fn pax_body(key: &str, value: &[u8]) -> Vec<u8> {
    let content_len = key.len() + value.len() + 3;
    let mut len = content_len + 1;
    while format!("{len}").len() + content_len != len {
        len = format!("{len}").len() + content_len;
    }
    let mut body = format!("{len} {key}=").into_bytes();
    body.extend_from_slice(value);
    body.push(b'\n');
    body
}

/// Builds the tar and the entries its manifest must list.
fn build(spec: &TarSpec) -> (Vec<u8>, Vec<Expected>) {
    let mut t = TarBuilder::new();
    let mut expected: Vec<Expected> = Vec::new();
    if spec.global_header {
        let body = pax_body("comment", b"generated by the roundtrip property test");
        t.header(
            b"pax_global_header",
            b'g',
            body.len() as u64,
            b"",
            &Meta::default(),
            (0, 0),
        );
        t.data(&body);
    }
    let plain = |kind, path: String, meta: &Meta| Expected {
        kind,
        path,
        meta: meta.clone(),
        size: 0,
        link: None,
        dev: (0, 0),
        xattrs: Vec::new(),
        mtime_nsec: 0,
    };
    for (i, item) in spec.items.iter().enumerate() {
        let m = &item.meta;
        match &item.spec {
            Spec::File(size, fill) => {
                let path = format!("file{i}");
                t.file(&path, m, &fill.bytes(*size));
                expected.push(Expected {
                    size: *size as u64,
                    ..plain(EntryKind::File, path, m)
                });
            }
            Spec::Dir => {
                t.dir(&format!("dir{i}/"), m);
                expected.push(plain(EntryKind::Dir, format!("dir{i}"), m));
            }
            Spec::Symlink(target) => {
                let path = format!("sym{i}");
                t.symlink(&path, target, m);
                expected.push(Expected {
                    link: Some(target.clone()),
                    ..plain(EntryKind::Symlink, path, m)
                });
            }
            Spec::Hardlink(back) => {
                // A hard link's target is an earlier entry that is not a
                // directory (or the import refuses the layer).
                let linkable: Vec<&Expected> = expected
                    .iter()
                    .filter(|e| {
                        !matches!(
                            e.kind,
                            EntryKind::Dir | EntryKind::Whiteout | EntryKind::Opaque
                        )
                    })
                    .collect();
                let target = if linkable.is_empty() {
                    let path = format!("target{i}");
                    t.file(&path, m, b"");
                    expected.push(plain(EntryKind::File, path.clone(), m));
                    path
                } else {
                    linkable[linkable.len() - 1 - back % linkable.len()]
                        .path
                        .clone()
                };
                let path = format!("hard{i}");
                if target.len() > 100 {
                    t.gnu_long(b'K', target.as_bytes());
                    t.hardlink(&path, &target[..99], m);
                } else {
                    t.hardlink(&path, &target, m);
                }
                expected.push(Expected {
                    link: Some(target),
                    ..plain(EntryKind::Hardlink, path, m)
                });
            }
            Spec::CharDev(major, minor) | Spec::BlockDev(major, minor) => {
                let (path, kind) = if matches!(item.spec, Spec::CharDev(..)) {
                    t.char_dev(&format!("chr{i}"), *major, *minor, m);
                    (format!("chr{i}"), EntryKind::CharDevice)
                } else {
                    t.block_dev(&format!("blk{i}"), *major, *minor, m);
                    (format!("blk{i}"), EntryKind::BlockDevice)
                };
                expected.push(Expected {
                    dev: (*major, *minor),
                    ..plain(kind, path, m)
                });
            }
            Spec::Fifo => {
                t.fifo(&format!("fifo{i}"), m);
                expected.push(plain(EntryKind::Fifo, format!("fifo{i}"), m));
            }
            Spec::PaxXattrFile(xattrs, nsec, digits, size, fill) => {
                let path = format!("xattr{i}");
                let frac = format!("{nsec:09}");
                let mtime = format!("{}.{}", m.mtime, &frac[..*digits]);
                let refs: Vec<(&str, &[u8])> = xattrs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_slice()))
                    .collect();
                t.pax_xattr_file(&path, &refs, &mtime, m, &fill.bytes(*size));
                // Later records for the same name win; overlayfs's own
                // xattrs stay in the raw tar only.
                let mut unique: Vec<(String, Vec<u8>)> = Vec::new();
                for (k, v) in xattrs {
                    unique.retain(|(n, _)| n != k);
                    if !k.starts_with("trusted.overlay.") {
                        unique.push((k.clone(), v.clone()));
                    }
                }
                let truncated: u32 =
                    frac[..*digits].parse::<u32>().unwrap() * 10u32.pow(9 - *digits as u32);
                expected.push(Expected {
                    size: *size as u64,
                    xattrs: unique,
                    mtime_nsec: truncated,
                    ..plain(EntryKind::File, path, m)
                });
            }
            Spec::PaxLongFile(len, size, fill) => {
                let path = format!("paxlong{i}/{}", "p".repeat(*len));
                t.pax_long_file(&path, m, &fill.bytes(*size));
                expected.push(Expected {
                    size: *size as u64,
                    ..plain(EntryKind::File, path, m)
                });
            }
            Spec::GnuLongFile(len, size, fill) => {
                let path = format!("gnulong{i}/{}", "g".repeat(*len));
                t.gnu_long_file(&path, m, &fill.bytes(*size));
                expected.push(Expected {
                    size: *size as u64,
                    ..plain(EntryKind::File, path, m)
                });
            }
            Spec::GnuLongSymlink(len) => {
                let path = format!("longsym{i}");
                let target = format!("../{}", "t".repeat(*len));
                t.gnu_long_symlink(&path, &target, m);
                expected.push(Expected {
                    link: Some(target),
                    ..plain(EntryKind::Symlink, path, m)
                });
            }
            Spec::Whiteout => {
                t.whiteout(&format!("dir{i}"), "gone");
                expected.push(plain(
                    EntryKind::Whiteout,
                    format!("dir{i}/.wh.gone"),
                    &Meta::default(),
                ));
            }
            Spec::Opaque => {
                t.opaque(&format!("dir{i}"));
                expected.push(plain(
                    EntryKind::Opaque,
                    format!("dir{i}/.wh..wh..opq"),
                    &Meta::default(),
                ));
            }
        }
    }
    let tar = match spec.ending {
        Ending::Padded => t.finish(),
        Ending::Unpadded => t.finish_unpadded(),
        Ending::Trailing(n, seed) => {
            let mut tar = t.finish_unpadded();
            tar.extend_from_slice(&random_bytes(seed, n));
            tar
        }
    };
    (tar, expected)
}

fn compress_in_process(c: Compression, data: &[u8]) -> Vec<u8> {
    match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(data, 1).unwrap(),
        Compression::Xz => {
            let mut e = xz2::write::XzEncoder::new(Vec::new(), 0);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
    }
}

fn compression_strategy() -> impl Strategy<Value = Compression> {
    prop_oneof![
        6 => Just(Compression::None),
        1 => Just(Compression::Gzip),
        1 => Just(Compression::Zstd),
        1 => Just(Compression::Xz),
        1 => Just(Compression::Bzip2),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// import_tar -> write_tar gives back the very bytes, the manifest
    /// describes every entry, and the manifest codec round-trips it.
    #[test]
    fn random_tars_export_byte_identical(spec in tar_strategy(), compression in compression_strategy()) {
        let (tar, expected) = build(&spec);
        let input = compress_in_process(compression, &tar);
        let dir = tempfile::tempdir().unwrap();
        let pool = ChunkPool::open(&dir.path().join("chunks"), true).unwrap();
        let imported = manifest::import_tar(&input[..], &pool, &()).unwrap();
        let m = &imported.manifest;

        let mut out = Vec::new();
        let written = manifest::write_tar(m, &pool, &mut out).unwrap();
        prop_assert!(out == tar, "exported {} bytes differ from the {} imported", out.len(), tar.len());
        prop_assert_eq!(written, tar.len() as u64);

        prop_assert_eq!(m.compression, compression);
        prop_assert_eq!(&m.diff_digest, &sha256(&tar));
        prop_assert_eq!(m.diff_size, tar.len() as u64);
        prop_assert_eq!(&m.compressed_digest, &sha256(&input));
        prop_assert_eq!(m.compressed_size, input.len() as u64);
        prop_assert_eq!(m.parent.clone(), None);

        prop_assert_eq!(m.entries.len(), expected.len());
        for (entry, want) in m.entries.iter().zip(&expected) {
            let path = String::from_utf8_lossy(&entry.path).into_owned();
            prop_assert_eq!(entry.kind, want.kind, "{}", path);
            prop_assert_eq!(&path, &want.path);
            prop_assert_eq!(entry.mode, want.meta.mode, "{}", path);
            prop_assert_eq!(entry.uid as u64, want.meta.uid, "{}", path);
            prop_assert_eq!(entry.gid as u64, want.meta.gid, "{}", path);
            prop_assert_eq!(entry.mtime, want.meta.mtime as i64, "{}", path);
            prop_assert_eq!(entry.mtime_nsec, want.mtime_nsec, "{}", path);
            prop_assert_eq!(entry.size, want.size, "{}", path);
            prop_assert_eq!((entry.dev_major, entry.dev_minor), want.dev, "{}", path);
            if let Some(link) = &want.link {
                prop_assert_eq!(String::from_utf8_lossy(&entry.link), link.as_str(), "{}", path);
            }
            let xattrs: Vec<(String, Vec<u8>)> =
                entry.xattrs.iter().map(|x| (x.name.clone(), x.value.clone())).collect();
            prop_assert_eq!(&xattrs, &want.xattrs, "{}", path);
            let in_chunks: u64 = entry.chunks.iter().map(|c| c.len as u64).sum();
            prop_assert_eq!(in_chunks, entry.size, "{}", path);
            prop_assert!(entry.chunks.iter().all(|c| c.len as u64 <= MAX_CHUNK && c.len > 0));
            if entry.size > MAX_CHUNK {
                prop_assert!(entry.chunks.len() >= 2, "{} of {} bytes in one chunk", path, entry.size);
            }
        }
        let mut uids: Vec<u32> = expected.iter().map(|e| e.meta.uid as u32).collect();
        let mut gids: Vec<u32> = expected.iter().map(|e| e.meta.gid as u32).collect();
        uids.sort_unstable();
        uids.dedup();
        gids.sort_unstable();
        gids.dedup();
        prop_assert_eq!(&m.uids, &uids);
        prop_assert_eq!(&m.gids, &gids);

        let decoded = manifest::decode(Path::new("manifest"), &manifest::encode(m)).unwrap();
        prop_assert_eq!(&decoded, m);

        // What the import accepts materializes: it fails at import or
        // not at all.
        let materializer = Materializer::new(&pool, &dir.path().join("objects")).unwrap();
        let options = BuildOptions { format: Format::Flattened, hardlinks: false, durable: false };
        let built = materializer.build(&[m], &dir.path().join("tree"), options);
        prop_assert!(built.is_ok(), "{:?}", built.err());

        // The same tar again, into the same pool: nothing new is stored,
        // and the second manifest exports the same bytes.
        let again = manifest::import_tar(&tar[..], &pool, &()).unwrap();
        prop_assert_eq!(again.stats.new_chunks, 0);
        let refs: usize = m.entries.iter().map(|e| e.chunks.len()).sum();
        prop_assert_eq!(again.stats.reused_chunks, refs as u64);
        prop_assert_eq!(&again.manifest.entries, &m.entries);
        let mut out = Vec::new();
        manifest::write_tar(&again.manifest, &pool, &mut out).unwrap();
        prop_assert!(out == tar);
    }
}

// ---------------------------------------------------------------------------
// The CLI, with every_kind() in each compression.

fn tool_available(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn decompress_with(tool: &str, data: &[u8]) -> Vec<u8> {
    let mut cmd = std::process::Command::new(tool);
    cmd.arg("-dc");
    let out = run_command(cmd, Some(data));
    assert!(
        out.status.success(),
        "{tool} -dc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Imports every_kind() compressed with `tool` (None: plain) from a file
/// and from stdin, and checks `diff` and the layer record.
fn every_kind_through_the_cli(tool: Option<&str>, code: u64, magic: &[u8]) {
    if let Some(tool) = tool {
        if !tool_available(tool) {
            eprintln!("skipping the {tool} case: `{tool}` is not installed");
            return;
        }
    }
    let cs = Cs::new();
    let tar = every_kind();
    let input = match tool {
        Some(tool) => common::compress_with(tool, &tar),
        None => tar.clone(),
    };
    assert!(input.starts_with(magic), "{tool:?} input has its magic");
    let file = cs.dir.path().join("layer-input");
    std::fs::write(&file, &input).unwrap();
    let from_file = cs.import_file(&file, &["-n", "from-file"]);
    let from_stdin = cs.import(&input, &["-n", "from-stdin"]);

    for id in [&from_file, &from_stdin] {
        assert_eq!(cs.ok_bytes(&["diff", "-u", id]), tar, "{tool:?}: diff -u");
        let v = cs.layer_json(id);
        assert_eq!(v["diff-digest"], sha256(&tar), "{v}");
        assert_eq!(v["diff-size"], tar.len() as u64, "{v}");
        assert_eq!(v["compressed-diff-digest"], sha256(&input), "{v}");
        assert_eq!(v["compressed-size"], input.len() as u64, "{v}");
        if code == 0 {
            assert!(v.get("compression").is_none(), "plain: key omitted: {v}");
        } else {
            assert_eq!(v["compression"], code, "{v}");
        }
        assert_eq!(v["uidset"], serde_json::json!([0, 1000]), "{v}");
        assert_eq!(v["gidset"], serde_json::json!([0, 100]), "{v}");

        // No flag: the layer's own compression.
        let own = cs.ok_bytes(&["diff", id]);
        assert!(
            own.starts_with(magic),
            "{tool:?}: default diff keeps the compression"
        );
        match tool {
            Some(tool) => assert_eq!(decompress_with(tool, &own), tar, "{tool}: default diff"),
            None => assert_eq!(own, tar),
        }
        let gz = cs.ok_bytes(&["diff", "-c", id]);
        assert!(gz.starts_with(&[0x1f, 0x8b]), "-c gives gzip");
        assert_eq!(gunzip(&gz), tar);
        let zst = cs.ok_bytes(&["diff", "--zstd", id]);
        assert!(
            zst.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
            "--zstd gives zstd"
        );
        assert_eq!(zstd::decode_all(&zst[..]).unwrap(), tar);
        assert_eq!(cs.ok_bytes(&["diff", "--uncompressed", id]), tar);
    }
}

#[test]
fn every_kind_plain_through_the_cli() {
    every_kind_through_the_cli(None, 0, b"./");
}

#[test]
fn every_kind_gzip_through_the_cli() {
    every_kind_through_the_cli(Some("gzip"), 2, &[0x1f, 0x8b]);
}

#[test]
fn every_kind_zstd_through_the_cli() {
    every_kind_through_the_cli(Some("zstd"), 4, &[0x28, 0xb5, 0x2f, 0xfd]);
}

#[test]
fn every_kind_xz_through_the_cli() {
    every_kind_through_the_cli(Some("xz"), 3, &[0xfd, b'7', b'z', b'X', b'Z', 0]);
}

#[test]
fn every_kind_bzip2_through_the_cli() {
    every_kind_through_the_cli(Some("bzip2"), 1, b"BZh");
}

#[test]
fn concatenated_gzip_members_import_whole() {
    let cs = Cs::new();
    let tar = every_kind();
    // Split inside a header block, so neither half is a tar by itself.
    let (first, second) = tar.split_at(3 * 512 + 100);
    let mut input = compress_in_process(Compression::Gzip, first);
    input.extend(compress_in_process(Compression::Gzip, second));
    let id = cs.import(&input, &[]);
    assert_eq!(cs.ok_bytes(&["diff", "-u", &id]), tar);
    let v = cs.layer_json(&id);
    assert_eq!(v["compression"], 2);
    assert_eq!(
        v["compressed-diff-digest"],
        sha256(&input),
        "digest covers both members"
    );
    assert_eq!(v["compressed-size"], input.len() as u64);
    assert_eq!(v["diff-digest"], sha256(&tar));
    assert_eq!(v["diff-size"], tar.len() as u64);
}

#[test]
fn concatenated_zstd_frames_import_whole() {
    let cs = Cs::new();
    let tar = every_kind();
    let (first, second) = tar.split_at(70_001);
    let mut input = zstd::encode_all(first, 3).unwrap();
    input.extend(zstd::encode_all(second, 3).unwrap());
    let id = cs.import(&input, &[]);
    assert_eq!(cs.ok_bytes(&["diff", "-u", &id]), tar);
    let v = cs.layer_json(&id);
    assert_eq!(v["compression"], 4);
    assert_eq!(v["compressed-diff-digest"], sha256(&input));
    assert_eq!(v["compressed-size"], input.len() as u64);
}

#[test]
fn diff_to_a_file() {
    let cs = Cs::new();
    let tar = every_kind();
    let gz = compress_in_process(Compression::Gzip, &tar);
    let id = cs.import(&gz, &[]);
    let out_dir = tempfile::tempdir().unwrap();

    let plain = out_dir.path().join("layer.tar");
    let stdout = cs.ok_bytes(&["diff", "-u", "-f", plain.to_str().unwrap(), &id]);
    assert!(stdout.is_empty(), "diff -f prints nothing on stdout");
    assert_eq!(std::fs::read(&plain).unwrap(), tar);

    let own = out_dir.path().join("layer.tar.gz");
    cs.ok_bytes(&["diff", "--file", own.to_str().unwrap(), &id]);
    let bytes = std::fs::read(&own).unwrap();
    assert!(
        bytes.starts_with(&[0x1f, 0x8b]),
        "the layer's own compression"
    );
    assert_eq!(gunzip(&bytes), tar);

    // An existing file is replaced.
    std::fs::write(&plain, b"old content that is longer than nothing").unwrap();
    let created = cs.ok(&["create-layer"]).trim().to_string();
    cs.ok_bytes(&["diff", "-f", plain.to_str().unwrap(), &created]);
    assert_eq!(std::fs::read(&plain).unwrap(), vec![0u8; 1024]);

    let names: Vec<String> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
}

#[test]
fn manifests_and_records_keep_the_parent() {
    let cs = Cs::new();
    let base = cs.import(&every_kind(), &["-n", "base"]);
    let mut t = TarBuilder::new();
    t.file("etc/hostname", &Meta::default(), b"child\n");
    t.whiteout("etc", "hard");
    let child_tar = t.finish();
    let child = cs.import(&child_tar, &["-n", "child", "base"]);
    let empty = cs.ok(&["create-layer", &child]).trim().to_string();

    assert_eq!(
        cs.ok(&["layer", &child]),
        format!("ID: {child}\nParent: {base}\nName: child\n")
    );
    assert_eq!(
        cs.ok(&["layer", &empty]),
        format!("ID: {empty}\nParent: {child}\n")
    );
    assert_eq!(cs.layer_json(&child)["parent"], base.as_str());

    let path = cs.graph().join("manifests").join(&child);
    let m = manifest::decode(&path, &std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(m.parent.as_deref(), Some(base.as_str()));
    let path = cs.graph().join("manifests").join(&base);
    let m = manifest::decode(&path, &std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(m.parent, None);

    // The child's diff is its own tar, not a merge with the parent's.
    assert_eq!(cs.ok_bytes(&["diff", "-u", &child]), child_tar);
    assert_eq!(cs.ok_bytes(&["diff", "-u", &child, &base]), child_tar);
    // Against its own (empty) child: the two trees are the same. (Not
    // without root: a vfs tree built then cannot hold other owners or
    // devices, so its files differ from the manifest's.)
    let none = cs.ok_bytes(&["diff", "-u", &child, &empty]);
    if nix::unistd::geteuid().is_root() {
        assert!(!none.is_empty() && none.iter().all(|&b| b == 0), "{none:?}");
    }
}

/// Upstream writes `diff -f` output to the path as given, so scripts pass
/// FIFOs, `/dev/stdout` and process substitutions (`>(...)`, which is a
/// `/dev/fd/N` path).
#[test]
fn diff_to_a_fifo_writes_into_the_fifo() {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let cs = Cs::new();
    let id = cs.ok(&["create-layer"]).trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stream");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    // A non-blocking reader is open before the writer, so neither blocks.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let out = cs.run(&["diff", "-u", "-f", fifo.to_str().unwrap(), &id], None);
    expect_status(&out, &["diff", "-f", "FIFO"], 0);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("reading the fifo: {e}"),
        }
    }
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "the FIFO was replaced by another file");
    assert_eq!(got, vec![0u8; 1024]);
}

/// `diff -f out.tar` must not touch `out.partial`, a file of the user's
/// (and two diffs to `out.tar` and `out.tgz` must not share a temp file).
#[test]
fn diff_to_a_file_leaves_unrelated_siblings_alone() {
    let cs = Cs::new();
    let id = cs.import(&every_kind(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let sibling = dir.path().join("out.partial");
    std::fs::write(&sibling, b"the user's own file").unwrap();
    let target = dir.path().join("out.tar");
    cs.ok_bytes(&["diff", "-u", "-f", target.to_str().unwrap(), &id]);
    assert_eq!(std::fs::read(&target).unwrap(), every_kind());
    assert_eq!(
        std::fs::read(&sibling).ok().as_deref(),
        Some(&b"the user's own file"[..]),
        "out.partial was clobbered"
    );
}

// ---------------------------------------------------------------------------
// Odd but valid tars, through the library API.

/// Rewrites the header block at `at` with `change`, then fixes its
/// checksum (`signed`: the historic signed-byte sum).
fn rewrite_header(tar: &mut [u8], at: usize, signed: bool, change: impl FnOnce(&mut [u8])) {
    let block = &mut tar[at..at + 512];
    change(block);
    block[148..156].copy_from_slice(b"        ");
    let sum: i64 = block
        .iter()
        .map(|&b| if signed { b as i8 as i64 } else { b as i64 })
        .sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// Imports `tar` into a fresh pool, requires a byte-identical export and
/// returns the manifest.
fn round_trip(case: &str, tar: &[u8]) -> manifest::LayerManifest {
    let dir = tempfile::tempdir().unwrap();
    let pool = ChunkPool::open(dir.path(), true).unwrap();
    let imported = manifest::import_tar(tar, &pool, &())
        .unwrap_or_else(|e| panic!("{case}: import failed: {e}"));
    let mut out = Vec::new();
    manifest::write_tar(&imported.manifest, &pool, &mut out).unwrap();
    assert!(out == tar, "{case}: export differs");
    imported.manifest
}

fn paths(m: &manifest::LayerManifest) -> Vec<String> {
    m.entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect()
}

#[test]
fn odd_but_valid_headers_round_trip() {
    let m = Meta::default();

    // A ustar prefix field holds the leading directories.
    let mut t = TarBuilder::new();
    t.file("file", &m, b"in a prefix");
    let mut tar = t.finish();
    rewrite_header(&mut tar, 0, false, |b| {
        b[345..361].copy_from_slice(b"some/long/prefix")
    });
    assert_eq!(
        paths(&round_trip("ustar prefix", &tar)),
        ["some/long/prefix/file"]
    );

    // A v7 header (no magic), an old-style regular file (typeflag NUL)
    // and a contiguous file ('7').
    let mut t = TarBuilder::new();
    t.file("v7", &m, b"old");
    let second = t.out.len();
    t.file("nul-type", &m, &random_bytes(1, 700));
    let third = t.out.len();
    t.file("contiguous", &m, &random_bytes(2, 70_000));
    let mut tar = t.finish();
    rewrite_header(&mut tar, 0, false, |b| b[257..345].fill(0));
    rewrite_header(&mut tar, second, false, |b| b[156] = 0);
    rewrite_header(&mut tar, third, false, |b| b[156] = b'7');
    let manifest = round_trip("v7 and old types", &tar);
    assert_eq!(paths(&manifest), ["v7", "nul-type", "contiguous"]);
    assert!(manifest.entries.iter().all(|e| e.kind == EntryKind::File));
    assert_eq!(manifest.entries[2].size, 70_000);

    // A non-ASCII name with a signed-byte checksum (old tars).
    let mut t = TarBuilder::new();
    t.file("caf\u{e9}-\u{fc}ber", &m, b"accents");
    let mut tar = t.finish();
    rewrite_header(&mut tar, 0, true, |_| {});
    assert_eq!(
        paths(&round_trip("signed checksum", &tar)),
        ["caf\u{e9}-\u{fc}ber"]
    );

    // PAX records for uid, gid, size and linkpath.
    let mut t = TarBuilder::new();
    t.pax(&[
        ("uid", b"3000000000"),
        ("gid", b"2500000"),
        ("size", b"1000"),
    ]);
    let content = random_bytes(3, 1000);
    let at = t.out.len();
    t.file("big-ids", &m, &content);
    t.pax(&[("linkpath", "x/".repeat(80).as_bytes())]);
    t.symlink("pax-link", "short", &m);
    let mut tar = t.finish();
    // The header's own size is 0: the PAX record says how much follows.
    rewrite_header(&mut tar, at, false, |b| {
        b[124..136].copy_from_slice(b"00000000000\0")
    });
    let manifest = round_trip("pax records", &tar);
    let e = &manifest.entries[0];
    assert_eq!((e.uid, e.gid, e.size), (3_000_000_000, 2_500_000, 1000));
    assert_eq!(manifest.uids, [0, 3_000_000_000]);
    assert_eq!(manifest.entries[1].link, "x/".repeat(80).as_bytes());

    // Data on entries that usually have none, and a directory written as
    // a regular file with a trailing slash.
    let mut t = TarBuilder::new();
    t.header(b"dir-as-file/", b'0', 0, b"", &m, (0, 0));
    t.header(b"link-with-data", b'2', 5, b"target", &m, (0, 0));
    t.data(b"extra");
    let manifest = round_trip("odd data", &t.finish());
    assert_eq!(manifest.entries[0].kind, EntryKind::Dir);
    assert_eq!(manifest.entries[1].kind, EntryKind::Symlink);

    // A base-256 negative mtime.
    let mut t = TarBuilder::new();
    t.file("before-1970", &m, b"old");
    let mut tar = t.finish();
    rewrite_header(&mut tar, 0, false, |b| b[136..148].fill(0xff));
    assert_eq!(round_trip("negative mtime", &tar).entries[0].mtime, -1);

    // A one-block end marker at the very end (exactly one zero block),
    // and an archive with no entries at all.
    let mut t = TarBuilder::new();
    t.file("short-end", &m, b"x");
    let mut tar = t.out.clone();
    tar.extend_from_slice(&[0u8; 512]);
    assert_eq!(paths(&round_trip("one zero block", &tar)), ["short-end"]);
    assert!(round_trip("empty archive", &[0u8; 1024]).entries.is_empty());
}

/// `diff ID | head -c 100`: the reader goes away; the house style says a
/// broken pipe is not an error (exit 0, nothing on stderr).
#[test]
fn diff_into_a_closed_pipe_exits_0() {
    let cs = Cs::new();
    let mut t = TarBuilder::new();
    t.file("big", &Meta::default(), &random_bytes(9, 4 << 20));
    let id = cs.import(&t.finish(), &[]);
    for flag in ["-u", "-c"] {
        let mut cmd = cs.command();
        cmd.args(["diff", flag, &id])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut head = [0u8; 100];
        stdout.read_exact(&mut head).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "diff {flag} into a closed pipe: {err}"
        );
        assert!(!err.contains("Broken pipe"), "{err}");
    }
}
