//! Reading a pack without its index: the frames are walked one after the
//! other, decompressed, and every chunk found is checked against its
//! BLAKE3, so that the entries returned can be trusted as much as an index
//! written when the pack was published (`check --repair` and `gc` write
//! them as the pack's new index).
//!
//! A frame's chunks are those its chunk table lists (format 2). A frame
//! without a usable table (format 1, or a damaged table) is cut where the
//! caller's known chunks (the IDs and lengths the manifests list) fit end
//! to end. Damage costs the frames it touches, not the rest of the pack:
//! after bytes that are no frame, the walk resumes at the next chunk table
//! or zstd frame magic.
//!
//! This module only reads; it never writes or removes a file.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use super::{CHUNK_TABLE_MAGIC, PACK_MAGIC, TABLE_RECORD_LEN};
use crate::chunks::id::ChunkId;
use crate::chunks::index::IndexEntry;
use crate::error::{Error, Result};

/// A frame that decompresses to more than this is not one of ours (frames
/// hold about `frame_size` bytes); the scan gives up on it rather than
/// take the memory.
const MAX_FRAME: usize = 64 << 20;

/// zstd's magic number for a data frame, little endian on disk.
const ZSTD_MAGIC: u32 = 0xFD2F_B528;

/// Skippable frames have magics 0x184D2A50..=0x184D2A5F.
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;

/// Chunks the caller knows (ID and length, in the order the manifests
/// list them), to cut frames that have no chunk table.
#[derive(Default)]
pub(crate) struct KnownChunks {
    ids: HashSet<ChunkId>,
    /// The distinct lengths, ascending.
    lengths: Vec<u32>,
    /// The chunks in the order given.
    order: Vec<(ChunkId, u32)>,
    /// Where each chunk is in `order` (its first few places).
    at: HashMap<ChunkId, Vec<u32>>,
}

/// A chunk's places in [`KnownChunks::order`] kept at most.
const PLACES: usize = 4;
/// The chunks after each place tried first.
const FOLLOWERS: usize = 16;

impl KnownChunks {
    /// The set of `chunks` (ID and length; empty chunks are left out), in
    /// the order the manifests list them: a writer stores a layer's new
    /// chunks in that order, so the chunks that follow a chunk there are
    /// tried first after it.
    pub fn new(chunks: impl IntoIterator<Item = (ChunkId, u32)>) -> KnownChunks {
        let mut known = KnownChunks::default();
        for (id, len) in chunks {
            if len == 0 {
                continue;
            }
            if known.ids.insert(id) {
                known.lengths.push(len);
            }
            let places = known.at.entry(id).or_default();
            if places.len() < PLACES {
                places.push(known.order.len() as u32);
            }
            known.order.push((id, len));
        }
        known.lengths.sort_unstable();
        known.lengths.dedup();
        known
    }

    /// The chunks that follow `id` in the order given.
    fn followers(&self, id: Option<ChunkId>) -> Vec<(ChunkId, u32)> {
        let Some(places) = id.and_then(|id| self.at.get(&id)) else {
            return Vec::new();
        };
        let mut out: Vec<(ChunkId, u32)> = Vec::new();
        for &place in places {
            let next = place as usize + 1;
            for &chunk in self.order.iter().skip(next).take(FOLLOWERS) {
                if !out.contains(&chunk) {
                    out.push(chunk);
                }
            }
        }
        out
    }

    /// Cuts `raw` into known chunks laid end to end from its start (the
    /// way a writer fills a frame); `before` is the chunk stored just
    /// before the frame, when known. Returns the chunks (ID, offset,
    /// length) and whether they reach the end of `raw`; when they do not,
    /// the longest run found from the start.
    ///
    /// At each offset the chunks that follow the previous one in the
    /// manifests are tried first, then every known length, shortest
    /// first, hashing the prefix incrementally. A known chunk that is a
    /// prefix of the one really there leads to a dead end, and the search
    /// backs up. The work is bounded: a pathological set of chunks gives
    /// up early.
    fn split(&self, raw: &[u8], before: Option<ChunkId>) -> (FrameChunks, bool) {
        // The chunks on the current path: offset, candidate number (see
        // `next_match`), ID and length.
        let mut path: Vec<(usize, usize, ChunkId, usize)> = Vec::new();
        let mut best = Vec::new();
        let mut best_end = 0;
        let mut dead: HashSet<usize> = HashSet::new();
        let mut budget = raw.len().saturating_mul(64).saturating_add(64 << 20);
        let (mut offset, mut from) = (0, 0);
        let complete = loop {
            if offset == raw.len() {
                break true;
            }
            let previous = path.last().map_or(before, |p| Some(p.2));
            match self.next_match(raw, offset, previous, from, &dead, &mut budget) {
                Some((candidate, id, len)) => {
                    path.push((offset, candidate, id, len));
                    offset += len;
                    from = 0;
                }
                None => {
                    if offset > best_end {
                        best_end = offset;
                        best.clone_from(&path);
                    }
                    dead.insert(offset);
                    match path.pop() {
                        Some((o, candidate, _, _)) if budget > 0 => {
                            (offset, from) = (o, candidate + 1)
                        }
                        _ => break false,
                    }
                }
            }
        };
        let chosen = if complete { path } else { best };
        let cut = chosen
            .into_iter()
            .map(|(o, _, id, len)| (id, o as u32, len as u32))
            .collect();
        (cut, complete)
    }

    /// The first candidate (number `from` on) that is the bytes at
    /// `offset` and does not end at a dead offset: its number, ID and
    /// length. The candidates are the followers of `previous`, then every
    /// known length.
    fn next_match(
        &self,
        raw: &[u8],
        offset: usize,
        previous: Option<ChunkId>,
        from: usize,
        dead: &HashSet<usize>,
        budget: &mut usize,
    ) -> Option<(usize, ChunkId, usize)> {
        let rest = &raw[offset..];
        let followers = self.followers(previous);
        for (n, &(id, len)) in followers.iter().enumerate().skip(from) {
            let len = len as usize;
            if len > rest.len() || dead.contains(&(offset + len)) || *budget == 0 {
                continue;
            }
            *budget = budget.saturating_sub(len + 64);
            if ChunkId::of(&rest[..len]) == id {
                return Some((n, id, len));
            }
        }
        let mut hasher = blake3::Hasher::new();
        let mut fed = 0;
        let skip = from.saturating_sub(followers.len());
        for (i, &len) in self.lengths.iter().enumerate().skip(skip) {
            let len = len as usize;
            if len > rest.len() || *budget == 0 {
                break;
            }
            if dead.contains(&(offset + len)) {
                continue;
            }
            hasher.update(&rest[fed..len]);
            *budget = budget.saturating_sub(len - fed + 64);
            fed = len;
            let id = ChunkId(*hasher.finalize().as_bytes());
            if self.ids.contains(&id) {
                return Some((followers.len() + i, id, len));
            }
        }
        None
    }
}

/// The chunks of a frame: ID, offset and length in the decompressed frame.
type FrameChunks = Vec<(ChunkId, u32, u32)>;

/// What a scan found in a pack.
#[derive(Debug, Default)]
pub(crate) struct PackScan {
    /// Every chunk that reads back intact, in pack order, as its index
    /// entry.
    pub entries: Vec<IndexEntry>,
    /// What could not be read, each with its offset in the pack.
    pub lost: Vec<String>,
}

/// Scans the pack `bytes` (read from `path`); `known` cuts frames that
/// have no chunk table. `None` when the file does not start with a pack's
/// magic (it holds nothing this build can read); fails when it is a pack
/// of a format version this build does not know.
pub(crate) fn scan(
    path: &Path,
    bytes: &[u8],
    known: Option<&KnownChunks>,
) -> Result<Option<PackScan>> {
    if bytes.len() < PACK_MAGIC.len() || bytes[..7] != PACK_MAGIC[..7] {
        return Ok(None);
    }
    let version = bytes[7];
    if !(1..=PACK_MAGIC[7]).contains(&version) {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            what: format!(
                "pack format version {version} is not supported (this build reads versions 1 to {})",
                PACK_MAGIC[7]
            ),
        });
    }
    let mut out = PackScan::default();
    let mut seen: HashSet<ChunkId> = HashSet::new();
    // The chunk table waiting for its frame, and where it was.
    let mut table: Option<(usize, FrameChunks)> = None;
    let mut pos = PACK_MAGIC.len();
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let magic = u32_at(rest, 0);
        if magic.is_some_and(|m| m & SKIPPABLE_MASK == SKIPPABLE_MAGIC) {
            let end = u32_at(rest, 4)
                .and_then(|size| 8usize.checked_add(size as usize))
                .filter(|&end| end <= rest.len());
            let Some(end) = end else {
                out.lost
                    .push(format!("offset {pos}: a skippable frame runs past the end"));
                table = None;
                pos = resync(bytes, pos + 1);
                continue;
            };
            if magic == Some(CHUNK_TABLE_MAGIC) {
                if let Some((at, _)) = table.take() {
                    out.lost
                        .push(format!("offset {at}: a chunk table without its frame"));
                }
                match parse_table(&rest[8..end]) {
                    Some(t) => table = Some((pos, t)),
                    None => out
                        .lost
                        .push(format!("offset {pos}: the chunk table does not parse")),
                }
            }
            pos += end;
            continue;
        }
        let len = match zstd::zstd_safe::find_frame_compressed_size(rest) {
            Ok(len) if len > 0 && magic == Some(ZSTD_MAGIC) => len,
            _ => {
                out.lost.push(format!("offset {pos}: not a zstd frame"));
                table = None;
                pos = resync(bytes, pos + 1);
                continue;
            }
        };
        let listed = table.take().map(|(_, t)| t);
        read_frame(pos, &rest[..len], listed, known, &mut seen, &mut out);
        pos += len;
    }
    if let Some((at, _)) = table {
        out.lost
            .push(format!("offset {at}: a chunk table without its frame"));
    }
    Ok(Some(out))
}

/// Adds the chunks of the data frame `compressed` (at `pos`) that read
/// back intact: those its table lists, and, where the table is missing or
/// some of its chunks do not match, those `known` finds.
fn read_frame(
    pos: usize,
    compressed: &[u8],
    listed: Option<FrameChunks>,
    known: Option<&KnownChunks>,
    seen: &mut HashSet<ChunkId>,
    out: &mut PackScan,
) {
    let raw = match decompress(compressed) {
        Ok(raw) => raw,
        Err(e) => {
            out.lost
                .push(format!("offset {pos}: the frame does not decompress: {e}"));
            return;
        }
    };
    let mut add = |(id, offset, len): (ChunkId, u32, u32), out: &mut PackScan| -> bool {
        let data = raw.get(offset as usize..offset as usize + len as usize);
        if data.is_none_or(|d| ChunkId::of(d) != id) {
            return false;
        }
        if seen.insert(id) {
            out.entries.push(IndexEntry {
                id,
                frame_offset: pos as u64,
                frame_len: compressed.len() as u32,
                raw_len: raw.len() as u32,
                offset,
                len,
            });
        }
        true
    };
    let bad = match &listed {
        Some(chunks) => chunks.iter().filter(|c| !add(**c, out)).count(),
        None => 0,
    };
    if listed.is_some() && bad == 0 {
        return;
    }
    let what = match listed {
        Some(_) => format!("{bad} of the frame's chunks do not match its chunk table"),
        None => "the frame has no chunk table".to_string(),
    };
    let Some(known) = known else {
        out.lost.push(format!("offset {pos}: {what}"));
        return;
    };
    // The chunk stored before this frame, usually the one before its
    // first chunk in a manifest.
    let before = out.entries.last().map(|e| e.id);
    let (cut, complete) = known.split(&raw, before);
    for chunk in cut {
        add(chunk, out);
    }
    if !complete {
        out.lost.push(format!(
            "offset {pos}: {what}, and the known chunks do not account for all of it"
        ));
    }
}

/// The records of a chunk table, or `None` when it does not parse.
fn parse_table(content: &[u8]) -> Option<FrameChunks> {
    if content.len() % TABLE_RECORD_LEN != 0 {
        return None;
    }
    let records = content
        .chunks_exact(TABLE_RECORD_LEN)
        .map(|r| {
            let id = ChunkId(r[..32].try_into().expect("32 bytes"));
            (
                id,
                u32_at(r, 32).expect("in range"),
                u32_at(r, 36).expect("in range"),
            )
        })
        .collect();
    Some(records)
}

/// Decompresses one frame, refusing one larger than [`MAX_FRAME`].
fn decompress(compressed: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    zstd::stream::read::Decoder::with_buffer(compressed)?
        .single_frame()
        .take(MAX_FRAME as u64 + 1)
        .read_to_end(&mut raw)?;
    if raw.len() > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "it holds more than {MAX_FRAME} bytes"
        )));
    }
    Ok(raw)
}

/// The little-endian `u32` at `at`, if `bytes` holds it.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// The next offset from `from` on where a chunk table or a zstd frame may
/// start (the end of `bytes` when there is none).
fn resync(bytes: &[u8], from: usize) -> usize {
    let table = CHUNK_TABLE_MAGIC.to_le_bytes();
    let frame = ZSTD_MAGIC.to_le_bytes();
    bytes
        .get(from..)
        .and_then(|rest| rest.windows(4).position(|w| w == table || w == frame))
        .map_or(bytes.len(), |i| from + i)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use proptest::prelude::*;

    use super::*;
    use crate::chunks::ChunkPool;

    /// A pack of six incompressible 200 KB chunks, two per frame: its
    /// bytes, the chunks, and the offsets of its three data frames.
    struct Sample {
        pack: Vec<u8>,
        chunks: Vec<Vec<u8>>,
        frames: Vec<u64>,
    }

    fn sample() -> Sample {
        let dir = tempfile::tempdir().unwrap();
        let pool = ChunkPool::open(dir.path(), true).unwrap();
        let chunks: Vec<Vec<u8>> = (0..6u64)
            .map(|i| {
                let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                (0..200_000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect()
            })
            .collect();
        let mut w = pool.writer().unwrap();
        for c in &chunks {
            w.add(c).unwrap();
        }
        w.finish().unwrap();
        let packs = dir.path().join("packs");
        let mut pack = None;
        let mut frames = Vec::new();
        for entry in fs::read_dir(&packs).unwrap() {
            let path = entry.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            match path.extension().and_then(|x| x.to_str()) {
                Some("pack") => pack = Some(bytes),
                Some("idx") => {
                    let entries = crate::chunks::index::decode(&path, &bytes).unwrap();
                    frames = entries.iter().map(|e| e.frame_offset).collect();
                }
                _ => {}
            }
        }
        frames.sort();
        frames.dedup();
        assert_eq!(frames.len(), 3);
        Sample {
            pack: pack.unwrap(),
            chunks,
            frames,
        }
    }

    fn found_ids(scan: &PackScan) -> Vec<ChunkId> {
        let mut ids: Vec<ChunkId> = scan.entries.iter().map(|e| e.id).collect();
        ids.sort();
        ids
    }

    fn ids_of(chunks: &[Vec<u8>]) -> Vec<ChunkId> {
        let mut ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
        ids.sort();
        ids
    }

    fn run(bytes: &[u8], known: Option<&KnownChunks>) -> PackScan {
        scan(Path::new("p.pack"), bytes, known).unwrap().unwrap()
    }

    #[test]
    fn damage_costs_only_the_frames_it_touches() {
        let s = sample();
        let known = KnownChunks::new(s.chunks.iter().map(|c| (ChunkId::of(c), c.len() as u32)));
        let second = s.frames[1] as usize;
        let all = ids_of(&s.chunks);
        let without_second = ids_of(&[&s.chunks[..2], &s.chunks[4..]].concat());
        assert_eq!(found_ids(&run(&s.pack, None)), all);

        // A byte of the second data frame (stored raw: the data is
        // incompressible), in its first chunk: the other one stays.
        let mut bytes = s.pack.clone();
        bytes[second + 50_000] ^= 0x40;
        let found = run(&bytes, Some(&known));
        assert_eq!(
            found_ids(&found),
            ids_of(&[&s.chunks[..2], &s.chunks[3..]].concat())
        );
        assert_eq!(found.lost.len(), 1, "{:?}", found.lost);
        assert!(
            found.lost[0].starts_with(&format!("offset {second}: ")),
            "{:?}",
            found.lost
        );

        // A byte of the second frame's table (in its first chunk's ID):
        // the known chunks make up for it.
        let table = second - 8 - 2 * TABLE_RECORD_LEN;
        let mut bytes = s.pack.clone();
        bytes[table + 8 + 3] ^= 1;
        let found = run(&bytes, None);
        assert_eq!(found_ids(&found).len(), 5);
        assert!(
            found.lost[0].contains("do not match its chunk table"),
            "{:?}",
            found.lost
        );
        let found = run(&bytes, Some(&known));
        assert_eq!(found_ids(&found), all);
        assert!(found.lost.is_empty(), "{:?}", found.lost);

        // The table's magic: the walk resumes at the data frame.
        let mut bytes = s.pack.clone();
        bytes[table] ^= 0xff;
        let found = run(&bytes, None);
        assert_eq!(found_ids(&found), without_second);
        assert!(
            found
                .lost
                .iter()
                .any(|l| l == &format!("offset {second}: the frame has no chunk table")),
            "{:?}",
            found.lost
        );
        assert_eq!(found_ids(&run(&bytes, Some(&known))), all);

        // Cut in the third frame: the first two stay.
        let third = s.frames[2] as usize;
        let found = run(&s.pack[..third + 1000], Some(&known));
        assert_eq!(found_ids(&found), ids_of(&s.chunks[..4]));
        assert!(!found.lost.is_empty());
    }

    #[test]
    fn a_known_chunk_that_is_a_prefix_of_the_one_there_is_backed_out_of() {
        let s = sample();
        let (b, c) = (&s.chunks[0], &s.chunks[1]);
        let a = &b[..100];
        let d = &c[..5000];
        let raw = [&b[..], &c[..]].concat();
        let id = |x: &[u8]| (ChunkId::of(x), x.len() as u32);
        let known = KnownChunks::new([id(a), id(b), id(c), id(d)]);
        let (cut, complete) = known.split(&raw, None);
        assert!(complete);
        assert_eq!(
            cut,
            vec![
                (ChunkId::of(b), 0, b.len() as u32),
                (ChunkId::of(c), b.len() as u32, c.len() as u32)
            ]
        );
        // An unknown tail: the longest run of known chunks.
        let raw = [&b[..], &c[..10_000]].concat();
        let (cut, complete) = known.split(&raw, None);
        assert!(!complete);
        assert_eq!(cut.len(), 2);
        assert_eq!(cut[1], (ChunkId::of(d), b.len() as u32, 5000));
    }

    #[test]
    fn a_file_that_is_no_pack_or_of_a_newer_format_is_told_apart() {
        let path = Path::new("p.pack");
        assert!(scan(path, b"not a pack at all", None).unwrap().is_none());
        assert!(scan(path, b"CSPA", None).unwrap().is_none());
        let err = scan(path, b"CSPACK\0\x07", None).unwrap_err().to_string();
        assert!(
            err.contains("pack format version 7 is not supported"),
            "{err}"
        );
        let empty = scan(path, PACK_MAGIC, None).unwrap().unwrap();
        assert!(empty.entries.is_empty() && empty.lost.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Damage anywhere never panics, and whatever is found is one of
        /// the chunks written.
        #[test]
        fn mutated_packs_never_panic_and_yield_only_real_chunks(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            use std::sync::OnceLock;
            static SAMPLE: OnceLock<Sample> = OnceLock::new();
            let s = SAMPLE.get_or_init(sample);
            let known = KnownChunks::new(s.chunks.iter().map(|c| (ChunkId::of(c), c.len() as u32)));
            let real = ids_of(&s.chunks);
            let mut bytes = s.pack.clone();
            for (at, value) in flips {
                let n = bytes.len();
                bytes[8 + at % (n - 8)] ^= value | 1;
            }
            let n = bytes.len();
            for input in [&bytes[..], &bytes[..cut % n]] {
                if let Ok(Some(found)) = scan(Path::new("p.pack"), input, Some(&known)) {
                    for id in found_ids(&found) {
                        prop_assert!(real.contains(&id));
                    }
                }
            }
        }
    }
}
