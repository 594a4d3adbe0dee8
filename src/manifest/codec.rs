//! The manifest file format: `CSMANIF\0`, a little-endian `u32` format
//! version, then (version 2) the manifest's [`Sketch`] behind its `u32`
//! length, then the zstd-compressed msgpack of [`LayerManifest`]: its
//! structs as arrays of their fields in order (version 2), or as maps by
//! field name (version 1, still read; no sketch). Unknown versions are
//! refused before decoding.

use std::io::Read;
use std::path::Path;

use super::model::{Entry, EntryKind, LayerManifest};
use super::path::{is_normalized, split_last, OPAQUE_MARKER, WHITEOUT_PREFIX};
use super::sketch::{self, Sketch};
use crate::error::{Error, Result};

/// The format version this build writes.
pub const MANIFEST_VERSION: u32 = 2;
/// Versions this build reads: 1 spelled every field's name in every
/// entry, which made decoding about twice as slow.
const READABLE: [u32; 2] = [1, 2];
const MAGIC: &[u8; 8] = b"CSMANIF\0";

/// Encodes a manifest as file bytes.
pub fn encode(manifest: &LayerManifest) -> Vec<u8> {
    let packed = rmp_serde::to_vec(manifest).expect("manifests always serialize");
    let compressed = zstd::bulk::compress(&packed, 9).expect("zstd compresses in memory");
    let sketch = Sketch::of(manifest).encode();
    let mut out = Vec::with_capacity(16 + sketch.len() + compressed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
    out.extend_from_slice(&(sketch.len() as u32).to_le_bytes());
    out.extend_from_slice(&sketch);
    out.extend_from_slice(&compressed);
    out
}

/// Decodes manifest file bytes read from `path`.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<LayerManifest> {
    let corrupt = |what: String| Error::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(corrupt("not a layer manifest".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if !READABLE.contains(&version) {
        return Err(corrupt(format!(
            "manifest format version {version} is not supported (this build reads versions 1 and 2)"
        )));
    }
    let body = match version {
        1 => &bytes[12..],
        _ => sketched(&bytes[12..])
            .map(|(_, body)| body)
            .ok_or_else(|| corrupt("manifest sketch is damaged".into()))?,
    };
    let packed = match decompress_whole(body) {
        Some(packed) => packed,
        None => {
            // Bound the decompressed size: a manifest is far smaller than
            // 4 GiB.
            let mut packed = Vec::new();
            let decoder = zstd::stream::read::Decoder::new(body)
                .map_err(|e| corrupt(format!("manifest does not decompress: {e}")))?;
            decoder
                .take(4 << 30)
                .read_to_end(&mut packed)
                .map_err(|e| corrupt(format!("manifest does not decompress: {e}")))?;
            packed
        }
    };
    // The derived decoders take a struct as an array or a map alike.
    let manifest: LayerManifest = rmp_serde::from_slice(&packed)
        .map_err(|e| corrupt(format!("manifest does not decode: {e}")))?;
    let content_raw: u64 = manifest
        .entries
        .iter()
        .try_fold(0u64, |sum, e| sum.checked_add(e.raw_len))
        .ok_or_else(|| corrupt("manifest raw lengths overflow".into()))?;
    if content_raw > manifest.raw_len {
        return Err(corrupt("manifest raw lengths exceed its raw stream".into()));
    }
    for entry in &manifest.entries {
        let sum: u64 = entry.chunks.iter().map(|c| c.len as u64).sum();
        if !entry.chunks.is_empty() && sum != entry.size {
            return Err(corrupt(format!(
                "entry {:?}: chunks hold {sum} bytes, the entry {}",
                String::from_utf8_lossy(&entry.path),
                entry.size
            )));
        }
        check_names(entry).map_err(|what| {
            corrupt(format!(
                "entry {:?}: {what}",
                String::from_utf8_lossy(&entry.path)
            ))
        })?;
    }
    Ok(manifest)
}

/// Splits what follows a version 2 header into the sketch and the rest.
fn sketched(after_version: &[u8]) -> Option<(Sketch, &[u8])> {
    let len = u32::from_le_bytes(after_version.get(..4)?.try_into().ok()?) as usize;
    let encoded = after_version.get(4..4 + len.min(sketch::MAX_ENCODED + 1))?;
    Some((Sketch::decode(encoded)?, &after_version[4 + len..]))
}

/// The sketch of the manifest at `path`, read from its header alone;
/// `None` for a version 1 manifest, or one that cannot be read.
pub fn read_sketch(path: &Path) -> Option<Sketch> {
    // The magic, version and sketch length, then the longest sketch.
    let limit = 16 + sketch::MAX_ENCODED;
    let mut head = Vec::with_capacity(limit);
    let file = std::fs::File::open(path).ok()?;
    file.take(limit as u64).read_to_end(&mut head).ok()?;
    if head.len() < 12 || &head[..8] != MAGIC || head[8..12] != MANIFEST_VERSION.to_le_bytes() {
        return None;
    }
    sketched(&head[12..]).map(|(sketch, _)| sketch)
}

/// The diff digest (DiffID) the manifest at `path` records, read from
/// its first fields only (version 2: the sketch is skipped and only the
/// start of the compressed body is decompressed); a version 1 manifest is
/// decoded whole. `None` when the file is missing or cannot be read.
pub fn read_diff_digest(path: &Path) -> Option<String> {
    use serde::de::{Deserialize, IgnoredAny};
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return None;
    }
    if bytes[8..12] != MANIFEST_VERSION.to_le_bytes() {
        return decode(path, &bytes).ok().map(|m| m.diff_digest);
    }
    let (_, body) = sketched(&bytes[12..])?;
    // The fields before `entries` take well under 4 KiB.
    let mut head = Vec::with_capacity(4096);
    zstd::stream::read::Decoder::new(body)
        .ok()?
        .take(4096)
        .read_to_end(&mut head)
        .ok()?;
    // The msgpack array marker of the struct: fixarray, array16, array32.
    let (fields, rest) = match *head.first()? {
        m @ 0x90..=0x9f => (u32::from(m & 0x0f), &head[1..]),
        0xdc => (
            u32::from(u16::from_be_bytes(head.get(1..3)?.try_into().ok()?)),
            &head[3..],
        ),
        0xdd => (
            u32::from_be_bytes(head.get(1..5)?.try_into().ok()?),
            &head[5..],
        ),
        _ => return None,
    };
    if fields < 7 {
        return None;
    }
    let mut de = rmp_serde::Deserializer::new(rest);
    // chunker_algorithm, chunker, parent, compression, compressed_digest,
    // compressed_size, then diff_digest.
    for _ in 0..6 {
        IgnoredAny::deserialize(&mut de).ok()?;
    }
    String::deserialize(&mut de).ok()
}

/// Decompresses a manifest in one call where its frame states a plausible
/// size (one buffer, no copies); `None` sends the caller to the streaming
/// decoder, which also reports what is wrong.
fn decompress_whole(compressed: &[u8]) -> Option<Vec<u8>> {
    /// Larger claims are streamed rather than trusted with an allocation.
    const WHOLE_LIMIT: u64 = 64 << 20;
    let size = zstd::zstd_safe::get_frame_content_size(compressed).ok()??;
    if size > WHOLE_LIMIT {
        return None;
    }
    let packed = zstd::bulk::decompress(compressed, size as usize).ok()?;
    (packed.len() as u64 == size).then_some(packed)
}

/// What the importer guarantees of an entry's names, and the materializer
/// relies on: the path (and a hard link's target) is normalised, a
/// whiteout is named `.wh.NAME` and an opaque marker `.wh..wh..opq`.
fn check_names(entry: &Entry) -> std::result::Result<(), String> {
    if !is_normalized(&entry.path) {
        return Err("path is not normalised".into());
    }
    let (_, base) = split_last(&entry.path);
    match entry.kind {
        EntryKind::Whiteout if !base.starts_with(WHITEOUT_PREFIX) => {
            Err("a whiteout's name does not start with .wh.".into())
        }
        EntryKind::Opaque if base != OPAQUE_MARKER => {
            Err("an opaque marker is not named .wh..wh..opq".into())
        }
        EntryKind::Hardlink if entry.link.is_empty() || !is_normalized(&entry.link) => {
            Err("hard link target is not a normalised path".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::{ChunkId, ChunkerParams};
    use crate::manifest::{ChunkRef, Compression, Entry, EntryKind, Xattr};
    use proptest::prelude::*;

    fn entry_strategy() -> impl Strategy<Value = Entry> {
        (
            prop_oneof![
                Just(EntryKind::File),
                Just(EntryKind::Dir),
                Just(EntryKind::Symlink),
                Just(EntryKind::Whiteout),
                Just(EntryKind::CharDevice)
            ],
            // Normalised paths: the decoder refuses others.
            "[a-z0-9_-]{1,8}(/[a-z0-9_-]{1,8}){0,3}",
            any::<u32>(),
            any::<i64>(),
            proptest::collection::vec((any::<[u8; 32]>(), 1u32..1000), 0..4),
            proptest::collection::vec(
                (
                    "[a-z.]{1,12}",
                    proptest::collection::vec(any::<u8>(), 0..20),
                ),
                0..3,
            ),
        )
            .prop_map(|(kind, path, n, mtime, chunks, xattrs)| Entry {
                kind,
                path: match (kind, path.rsplit_once('/')) {
                    (EntryKind::Whiteout, Some((dir, name))) => format!("{dir}/.wh.{name}"),
                    (EntryKind::Whiteout, None) => format!(".wh.{path}"),
                    _ => path,
                }
                .into_bytes(),
                mode: n & 0o7777,
                uid: n,
                gid: n / 3,
                mtime,
                mtime_nsec: n % 1_000_000_000,
                link: b"target".to_vec(),
                dev_major: n % 7,
                dev_minor: n % 5,
                xattrs: xattrs
                    .into_iter()
                    .map(|(name, value)| Xattr { name, value })
                    .collect(),
                size: chunks.iter().map(|c| c.1 as u64).sum(),
                chunks: chunks
                    .into_iter()
                    .map(|(id, len)| ChunkRef {
                        id: ChunkId(id),
                        len,
                    })
                    .collect(),
                raw_len: 512,
            })
    }

    fn entry(kind: EntryKind, path: &[u8], link: &[u8]) -> Entry {
        Entry {
            mode: 0o644,
            link: link.to_vec(),
            raw_len: 512,
            ..Entry::new(kind, path.to_vec())
        }
    }

    fn manifest_with(entries: Vec<Entry>) -> LayerManifest {
        LayerManifest {
            chunker_algorithm: crate::chunks::CHUNKER_ALGORITHM.into(),
            chunker: ChunkerParams::default(),
            parent: Some("parent".into()),
            compression: Compression::Gzip,
            compressed_digest: "sha256:aa".into(),
            compressed_size: 10,
            diff_digest: "sha256:bb".into(),
            diff_size: 20,
            uids: vec![0, 1000],
            gids: vec![0],
            raw_len: entries.len() as u64 * 512 + 1024,
            entries,
            raw: vec![1, 2, 3],
        }
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(entries in proptest::collection::vec(entry_strategy(), 0..20)) {
            let manifest = manifest_with(entries);
            let bytes = encode(&manifest);
            prop_assert_eq!(decode(Path::new("m"), &bytes).unwrap(), manifest);
        }

        #[test]
        fn mutated_bytes_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
            let mut bytes = encode(&manifest_with(vec![]));
            for (at, v) in flips {
                let n = bytes.len();
                bytes[at % n] ^= v | 1;
            }
            let _ = decode(Path::new("m"), &bytes);
        }
    }

    #[test]
    fn the_diff_digest_is_read_from_the_head_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let entries = (0..200)
            .map(|i| entry(EntryKind::File, format!("f{i}").as_bytes(), b""))
            .collect();
        std::fs::write(&path, encode(&manifest_with(entries))).unwrap();
        assert_eq!(read_diff_digest(&path).as_deref(), Some("sha256:bb"));
        std::fs::write(&path, b"CSMANIF\0junk").unwrap();
        assert_eq!(read_diff_digest(&path), None);
        assert_eq!(read_diff_digest(&dir.path().join("none")), None);
    }

    /// Regression (found by the fuzz tests, `tests/it/fuzz.rs`): a whiteout entry named `/`
    /// made the materializer slice past the end of its name.
    #[test]
    fn refuses_names_the_importer_never_writes() {
        for (bad, what) in [
            (
                entry(EntryKind::Whiteout, b"/", b""),
                "path is not normalised",
            ),
            (
                entry(EntryKind::File, b"../x", b""),
                "path is not normalised",
            ),
            (
                entry(EntryKind::Whiteout, b"etc/gone", b""),
                "does not start with .wh.",
            ),
            (entry(EntryKind::Opaque, b"etc/.wh.x", b""), "opaque marker"),
            (
                entry(EntryKind::Hardlink, b"l", b"/etc/passwd"),
                "hard link target",
            ),
        ] {
            let bytes = encode(&manifest_with(vec![bad]));
            let err = decode(Path::new("m"), &bytes).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
    }

    #[test]
    fn refuses_unknown_version() {
        let mut bytes = encode(&manifest_with(vec![]));
        bytes[8] = 7;
        let err = decode(Path::new("/s/manifests/abc"), &bytes)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/s/manifests/abc: manifest format version 7 is not supported (this build reads versions 1 and 2)"
        );
    }

    #[test]
    fn reads_version_1_with_named_fields() {
        let entry = Entry {
            xattrs: vec![Xattr {
                name: "user.a".into(),
                value: b"v".to_vec(),
            }],
            chunks: vec![ChunkRef {
                id: ChunkId::of(b"c"),
                len: 1,
            }],
            size: 1,
            ..entry(EntryKind::File, b"a/b", b"")
        };
        let manifest = manifest_with(vec![entry]);
        let named = rmp_serde::to_vec_named(&manifest).unwrap();
        let mut bytes = b"CSMANIF\0".to_vec();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&zstd::bulk::compress(&named, 3).unwrap());
        assert_eq!(decode(Path::new("m"), &bytes).unwrap(), manifest);
        // What this build writes is version 2, and smaller.
        let written = encode(&manifest);
        assert_eq!(&written[8..12], &2u32.to_le_bytes());
        assert!(rmp_serde::to_vec(&manifest).unwrap().len() < named.len());
        assert_eq!(decode(Path::new("m"), &written).unwrap(), manifest);
    }
}
