//! Pack index files: for every chunk of one pack, where its compressed
//! frame lies and where the chunk lies inside the decompressed frame.
//!
//! Layout (little endian; see `docs/format.md`):
//! `magic[8] count:u32 reserved:u32`, then `count` records of 56 bytes
//! sorted by chunk ID: `id[32] frame_offset:u64 frame_len:u32 raw_len:u32
//! offset:u32 len:u32`, then the BLAKE3 of everything before it (32 bytes).

use std::path::Path;

use super::id::ChunkId;
use crate::error::{Error, Result};

/// The first bytes of every index file; the last byte is the format version.
pub(crate) const INDEX_MAGIC: &[u8; 8] = b"CSIDX\0\0\x01";
const HEADER_LEN: usize = 16;
const RECORD_LEN: usize = 56;
const TRAILER_LEN: usize = 32;

/// Where one chunk lives inside its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub id: ChunkId,
    /// Offset of the zstd frame in the pack file.
    pub frame_offset: u64,
    /// Compressed length of the frame.
    pub frame_len: u32,
    /// Decompressed length of the frame.
    pub raw_len: u32,
    /// Offset of the chunk inside the decompressed frame.
    pub offset: u32,
    /// Length of the chunk.
    pub len: u32,
}

/// Encodes entries (sorted here by ID) as an index file.
pub(crate) fn encode(entries: &mut [IndexEntry]) -> Vec<u8> {
    entries.sort_by_key(|e| e.id);
    let mut out = Vec::with_capacity(HEADER_LEN + entries.len() * RECORD_LEN + TRAILER_LEN);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for e in entries.iter() {
        out.extend_from_slice(&e.id.0);
        out.extend_from_slice(&e.frame_offset.to_le_bytes());
        out.extend_from_slice(&e.frame_len.to_le_bytes());
        out.extend_from_slice(&e.raw_len.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// The `N` bytes of `bytes` at `at` (which the caller has checked are
/// there).
fn bytes_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes_at(bytes, at))
}

/// Decodes and checks an index file read from `path`.
pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<Vec<IndexEntry>> {
    let corrupt = |what: String| Error::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    if bytes.len() < HEADER_LEN + TRAILER_LEN || &bytes[..5] != b"CSIDX" {
        return Err(corrupt("not a pack index file".into()));
    }
    if &bytes[..8] != INDEX_MAGIC {
        return Err(corrupt(format!(
            "pack index format version {} is not supported (this build reads version {})",
            bytes[7], INDEX_MAGIC[7]
        )));
    }
    let count = u32_at(bytes, 8) as usize;
    let expected = count
        .checked_mul(RECORD_LEN)
        .and_then(|n| n.checked_add(HEADER_LEN + TRAILER_LEN));
    if expected != Some(bytes.len()) {
        return Err(corrupt(format!(
            "index claims {count} entries but holds {} bytes",
            bytes.len()
        )));
    }
    let body = &bytes[..bytes.len() - TRAILER_LEN];
    if blake3::hash(body).as_bytes() != &bytes[bytes.len() - TRAILER_LEN..] {
        return Err(corrupt("index checksum does not match".into()));
    }
    let mut entries = Vec::with_capacity(count);
    for record in body[HEADER_LEN..].chunks_exact(RECORD_LEN) {
        let entry = IndexEntry {
            id: ChunkId(bytes_at(record, 0)),
            frame_offset: u64::from_le_bytes(bytes_at(record, 32)),
            frame_len: u32_at(record, 40),
            raw_len: u32_at(record, 44),
            offset: u32_at(record, 48),
            len: u32_at(record, 52),
        };
        if entry.offset as u64 + entry.len as u64 > entry.raw_len as u64 {
            return Err(corrupt(format!(
                "chunk {} lies outside its frame",
                entry.id
            )));
        }
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<IndexEntry> {
        (0..5u32)
            .map(|i| IndexEntry {
                id: ChunkId::of(&i.to_le_bytes()),
                frame_offset: 8 + i as u64 * 100,
                frame_len: 100,
                raw_len: 1000,
                offset: i * 10,
                len: 10,
            })
            .collect()
    }

    #[test]
    fn round_trips_sorted() {
        let mut entries = sample();
        let bytes = encode(&mut entries);
        let back = decode(Path::new("x.idx"), &bytes).unwrap();
        assert_eq!(back, entries);
        assert!(back.windows(2).all(|w| w[0].id < w[1].id));
    }

    #[test]
    fn refuses_unknown_version() {
        let mut bytes = encode(&mut sample());
        bytes[7] = 9;
        let err = decode(Path::new("x.idx"), &bytes).unwrap_err().to_string();
        assert!(err.contains("version 9 is not supported"), "{err}");
    }

    proptest! {
        #[test]
        fn mutated_bytes_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
            let mut bytes = encode(&mut sample());
            for (at, value) in flips {
                let n = bytes.len();
                bytes[at % n] ^= value | 1;
            }
            let _ = decode(Path::new("x.idx"), &bytes);
            let n = bytes.len();
            let _ = decode(Path::new("x.idx"), &bytes[..cut % n]);
        }
    }
}
