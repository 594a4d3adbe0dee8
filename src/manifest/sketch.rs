//! Sketches: a few bytes per manifest from which the share of entries two
//! layers have in common is estimated without decoding either manifest.
//! Stacking a layer on another (`store::stacking`) decodes only the
//! candidate the sketches point to, whatever the number of images.
//!
//! A sketch is a bottom-k sample: the `K` smallest 64-bit hashes of the
//! manifest's entries, each hashed over what makes two entries the same
//! object (everything but its place in the tar stream). The share of the
//! smallest hashes of both sketches that both hold estimates the Jaccard
//! index of the two entry sets.

use super::model::{Entry, EntryKind, LayerManifest};

/// Hashes kept per sketch.
const K: usize = 64;

/// Longest encoded sketch a reader accepts.
pub(crate) const MAX_ENCODED: usize = 4 + 8 * K;

/// The bottom-k sample of a manifest's entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sketch {
    /// Entries in the manifest.
    entries: u32,
    /// The smallest entry hashes, ascending, without repeats.
    mins: Vec<u64>,
}

impl Sketch {
    /// The sketch of `m`'s entries.
    pub fn of(m: &LayerManifest) -> Sketch {
        let mut hashes: Vec<u64> = m.entries.iter().map(entry_hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        hashes.truncate(K);
        Sketch {
            entries: u32::try_from(m.entries.len()).unwrap_or(u32::MAX),
            mins: hashes,
        }
    }

    /// Entries in the sketched manifest.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// About how many entries the two sketched manifests have in common.
    pub fn shared_estimate(&self, other: &Sketch) -> f64 {
        let k = self.mins.len().min(other.mins.len());
        if k == 0 {
            return 0.0;
        }
        // The k smallest hashes of the union, and how many both hold.
        let (mut a, mut b) = (self.mins.iter().peekable(), other.mins.iter().peekable());
        let (mut taken, mut both) = (0, 0);
        while taken < k {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x == y => {
                    both += 1;
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x < y => {
                    a.next();
                }
                (Some(_), Some(_)) => {
                    b.next();
                }
                _ => break,
            }
            taken += 1;
        }
        let jaccard = both as f64 / k as f64;
        jaccard * (self.entries as f64 + other.entries as f64) / (1.0 + jaccard)
    }

    /// The sketch as stored: entries (`u32`), then the hashes (`u64`),
    /// little endian.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 * self.mins.len());
        out.extend_from_slice(&self.entries.to_le_bytes());
        for h in &self.mins {
            out.extend_from_slice(&h.to_le_bytes());
        }
        out
    }

    /// Reads a stored sketch; `None` if it is not one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Sketch> {
        if bytes.len() < 4 || bytes.len() > MAX_ENCODED || (bytes.len() - 4) % 8 != 0 {
            return None;
        }
        let entries = u32::from_le_bytes(bytes[..4].try_into().ok()?);
        let mins: Vec<u64> = bytes[4..]
            .chunks_exact(8)
            .map(|h| u64::from_le_bytes(h.try_into().expect("8 bytes")))
            .collect();
        mins.windows(2)
            .all(|w| w[0] < w[1])
            .then_some(Sketch { entries, mins })
    }
}

/// A stable 64-bit hash of what makes `e` the same object as another
/// entry (the fields `materialize::delta` compares).
fn entry_hash(e: &Entry) -> u64 {
    let mut h = blake3::Hasher::new();
    let kind: u8 = match e.kind {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
        EntryKind::Symlink => 2,
        EntryKind::Hardlink => 3,
        EntryKind::CharDevice => 4,
        EntryKind::BlockDevice => 5,
        EntryKind::Fifo => 6,
        EntryKind::Whiteout => 7,
        EntryKind::Opaque => 8,
    };
    h.update(&[kind]);
    for bytes in [&e.path, &e.link] {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    for n in [e.mode, e.uid, e.gid, e.mtime_nsec, e.dev_major, e.dev_minor] {
        h.update(&n.to_le_bytes());
    }
    h.update(&e.mtime.to_le_bytes());
    h.update(&e.size.to_le_bytes());
    h.update(&(e.xattrs.len() as u64).to_le_bytes());
    for x in &e.xattrs {
        h.update(&(x.name.len() as u64).to_le_bytes());
        h.update(x.name.as_bytes());
        h.update(&(x.value.len() as u64).to_le_bytes());
        h.update(&x.value);
    }
    for c in &e.chunks {
        h.update(&c.id.0);
        h.update(&c.len.to_le_bytes());
    }
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::ChunkId;
    use crate::manifest::ChunkRef;

    fn file(path: &str, content: &str) -> Entry {
        Entry {
            mode: 0o644,
            mtime: 1_700_000_000,
            size: content.len() as u64,
            chunks: vec![ChunkRef {
                id: ChunkId::of(content.as_bytes()),
                len: content.len() as u32,
            }],
            raw_len: 512,
            ..Entry::new(EntryKind::File, path.as_bytes().to_vec())
        }
    }

    /// `n` files, those from `changed_from` on with other content.
    fn image(n: usize, changed_from: usize) -> LayerManifest {
        LayerManifest::of_entries(
            (0..n)
                .map(|i| {
                    let content = if i < changed_from { "old" } else { "new" };
                    file(&format!("f{i}"), &format!("{content} {i}"))
                })
                .collect(),
        )
    }

    #[test]
    fn estimates_the_entries_two_manifests_share() {
        let a = Sketch::of(&image(4000, 4000));
        for (changed_from, shared) in [(4000, 4000.0), (3000, 3000.0), (1000, 1000.0), (0, 0.0)] {
            let b = Sketch::of(&image(4000, changed_from));
            let estimate = a.shared_estimate(&b);
            assert!(
                (estimate - shared).abs() <= 600.0,
                "{shared} shared, estimated {estimate}"
            );
            assert_eq!(estimate, b.shared_estimate(&a));
        }
    }

    #[test]
    fn the_place_in_the_tar_does_not_count_but_metadata_does() {
        let e = file("a", "x");
        let moved = Entry {
            raw_len: 9999,
            ..e.clone()
        };
        assert_eq!(entry_hash(&e), entry_hash(&moved));
        let touched = Entry {
            mtime_nsec: 1,
            ..e.clone()
        };
        assert_ne!(entry_hash(&e), entry_hash(&touched));
    }

    #[test]
    fn round_trips_and_refuses_what_is_not_a_sketch() {
        let s = Sketch::of(&image(100, 50));
        assert_eq!(s.mins.len(), K);
        assert_eq!(Sketch::decode(&s.encode()), Some(s.clone()));
        let small = Sketch::of(&image(3, 3));
        assert_eq!(Sketch::decode(&small.encode()), Some(small));
        let mut unsorted = s.encode();
        unsorted[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(Sketch::decode(&unsorted), None);
        assert_eq!(Sketch::decode(&[1, 2, 3]), None);
        assert_eq!(Sketch::decode(&s.encode()[..11]), None);
    }
}
