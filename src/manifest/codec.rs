//! The manifest file format: `CSMANIF\0`, a little-endian `u32` format
//! version, then the zstd-compressed msgpack (named fields) of
//! [`LayerManifest`]. Unknown versions are refused before decoding.

use std::path::Path;

use super::model::LayerManifest;
use crate::error::{Error, Result};

/// The format version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"CSMANIF\0";

/// Encodes a manifest as file bytes.
pub fn encode(manifest: &LayerManifest) -> Vec<u8> {
    let packed = rmp_serde::to_vec_named(manifest).expect("manifests always serialize");
    let compressed = zstd::bulk::compress(&packed, 9).expect("zstd compresses in memory");
    let mut out = Vec::with_capacity(12 + compressed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
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
    if version != MANIFEST_VERSION {
        return Err(corrupt(format!(
            "manifest format version {version} is not supported (this build reads version {MANIFEST_VERSION})"
        )));
    }
    // Bound the decompressed size: a manifest is far smaller than 4 GiB.
    let mut packed = Vec::new();
    let decoder = zstd::stream::read::Decoder::new(&bytes[12..])
        .map_err(|e| corrupt(format!("manifest does not decompress: {e}")))?;
    std::io::Read::read_to_end(&mut std::io::Read::take(decoder, 4 << 30), &mut packed)
        .map_err(|e| corrupt(format!("manifest does not decompress: {e}")))?;
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
    }
    Ok(manifest)
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
            proptest::collection::vec(any::<u8>(), 0..40),
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
                path,
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
    fn refuses_unknown_version() {
        let mut bytes = encode(&manifest_with(vec![]));
        bytes[8] = 7;
        let err = decode(Path::new("/s/manifests/abc"), &bytes)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/s/manifests/abc: manifest format version 7 is not supported (this build reads version 1)"
        );
    }
}
