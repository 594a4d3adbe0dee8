//! Repairing the pool's own files: packs whose index is missing or cannot
//! be read are indexed again from the pack (`check --repair`, and `gc` for
//! packs whose chunk tables account for all of them), packs in which
//! nothing can be read are dropped, and a damaged `config.json` is written
//! again. What the layers then lack is for the caller (`check`) to judge.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::PathBuf;

use super::{ChunkPool, ChunkerParams, PoolConfig};
use crate::chunks::index;
use crate::chunks::names::{self, PackFile};
use crate::chunks::pack::{self, KnownChunks, PackScan};
use crate::chunks::SweepGuard;
use crate::durable;
use crate::error::{IoContext, Op, Result};
use crate::flock::Flock;
use crate::poison::{Unpoisoned, UnpoisonedRw};
use crate::sys;

/// A pack without a usable index: its chunks are missing from the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unindexed {
    /// The pack's name (`chunks/packs/<name>.pack`).
    pub name: String,
    /// Why its index cannot be read; `None` when it has none.
    pub damage: Option<String>,
}

impl ChunkPool {
    /// Why `config.json` could not be used, when it could not (the pinned
    /// defaults are in force then).
    pub(crate) fn config_damage(&self) -> Option<String> {
        self.config_damage.lock_unpoisoned().clone()
    }

    /// Writes `config.json` again from the pinned defaults, with the
    /// chunker parameters `chunker` (those the manifests record, so that
    /// new imports keep sharing chunks with the old ones). This process
    /// keeps the parameters it opened with.
    pub(crate) fn rewrite_config(&self, chunker: ChunkerParams) -> Result<()> {
        let config = PoolConfig {
            chunker,
            ..PoolConfig::default()
        };
        let json = serde_json::to_vec_pretty(&config).expect("config serializes");
        durable::atomic_write(&self.root.join("config.json"), &json)?;
        *self.config_damage.lock_unpoisoned() = None;
        Ok(())
    }

    /// Packs whose index cannot be read, and packs without an index. The
    /// latter are also what a running import has between publishing a
    /// pack and its index: only under a [`SweepGuard`] (no import runs)
    /// is such a pack known to have lost its index.
    pub(crate) fn unindexed(&self) -> Result<Vec<Unindexed>> {
        self.refresh()?;
        let mut packs = BTreeSet::new();
        let mut indexes = BTreeSet::new();
        for entry in fs::read_dir(&self.packs_dir).at(Op::ReadDir, &self.packs_dir)? {
            let entry = entry.at(Op::ReadDir, &self.packs_dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match PackFile::of(&name) {
                PackFile::Pack(stem) => packs.insert(stem.to_string()),
                PackFile::Index(stem) => indexes.insert(stem.to_string()),
                PackFile::Temporary | PackFile::Other => false,
            };
        }
        let state = self.state.read_unpoisoned();
        Ok(packs
            .into_iter()
            .filter_map(|name| {
                let damage = match state.unreadable.get(&name) {
                    Some((why, _)) => Some(why.clone()),
                    None if indexes.contains(&name) => return None,
                    None => None,
                };
                Some(Unindexed { name, damage })
            })
            .collect())
    }

    /// [`ChunkPool::unindexed`] when no import runs (none holds
    /// `chunks/sweep.lock`): a pack without an index has lost it then.
    /// `None` when an import runs. Waits for nothing.
    pub(crate) fn unindexed_if_idle(&self) -> Result<Option<Vec<Unindexed>>> {
        let Some(_idle) = Flock::try_exclusive(&self.sweep_lock_path())? else {
            return Ok(None);
        };
        self.unindexed().map(Some)
    }

    /// The path of pack `name`.
    pub(crate) fn pack_path(&self, name: &str) -> PathBuf {
        self.packs_dir.join(names::pack(name))
    }

    /// The path of the index of pack `name`.
    pub(crate) fn index_path(&self, name: &str) -> PathBuf {
        self.packs_dir.join(names::index(name))
    }

    /// Reads pack `name` without its index (see `pack::scan`): every
    /// chunk that reads back intact, and what could not be read; `None`
    /// when the file is no pack.
    pub(crate) fn scan_pack(
        &self,
        name: &str,
        known: Option<&KnownChunks>,
    ) -> Result<Option<PackScan>> {
        let path = self.pack_path(name);
        let file = File::open(&path).at(Op::Open, &path)?;
        // Published packs are immutable: nothing truncates or rewrites
        // them in place.
        let map = sys::map_immutable(&file).at(Op::Mmap, &path)?;
        pack::scan(&path, &map, known)
    }

    /// Writes the index of pack `name` from the entries a scan found,
    /// replacing the damaged one, and loads it.
    pub(crate) fn reindex(&self, _guard: &SweepGuard, name: &str, scan: &PackScan) -> Result<()> {
        let mut entries = scan.entries.clone();
        let bytes = index::encode(&mut entries);
        durable::atomic_write(&self.index_path(name), &bytes)?;
        self.refresh()
    }

    /// Removes pack `name` and its index, if it has one: nothing in it can
    /// be read. Other processes reload their tables.
    pub(crate) fn drop_pack(&self, guard: &SweepGuard, name: &str) -> Result<()> {
        let index = self.index_path(name);
        if index.exists() {
            durable::remove_file(&index)?;
        }
        durable::remove_file(&self.pack_path(name))?;
        durable::fsync_dir(&self.packs_dir)?;
        guard.lock.touch()?;
        self.reload()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::chunks::pack::CHUNK_TABLE_MAGIC;
    use crate::chunks::ChunkId;
    use crate::error::Error;

    /// Deterministic bytes for a test.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Half the bytes compressible, so that frames differ in size.
                if x & 0x100 == 0 {
                    0x61
                } else {
                    x as u8
                }
            })
            .collect()
    }

    /// Writes `chunks` through one writer; returns the pool's pack names.
    fn write(pool: &ChunkPool, chunks: &[Vec<u8>]) -> Vec<String> {
        let mut w = pool.writer().unwrap();
        for c in chunks {
            w.add(c).unwrap();
        }
        w.finish().unwrap();
        names(pool.packs_dir.as_path(), "pack")
    }

    fn names(dir: &Path, ext: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|n| match (PackFile::of(&n), ext) {
                (PackFile::Pack(stem), "pack") | (PackFile::Index(stem), "idx") => {
                    Some(stem.to_string())
                }
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    /// The pack as format 1 wrote it (no chunk tables), and where each of
    /// its data frames moved.
    fn as_version_1(pack: &[u8]) -> (Vec<u8>, HashMap<u64, u64>) {
        let mut out = b"CSPACK\0\x01".to_vec();
        let mut moved = HashMap::new();
        let mut pos = 8;
        while pos < pack.len() {
            let len = zstd::zstd_safe::find_frame_compressed_size(&pack[pos..]).unwrap();
            let magic = u32::from_le_bytes(pack[pos..pos + 4].try_into().unwrap());
            if magic != CHUNK_TABLE_MAGIC {
                moved.insert(pos as u64, out.len() as u64);
                out.extend_from_slice(&pack[pos..pos + len]);
            }
            pos += len;
        }
        (out, moved)
    }

    /// Chunks cut from one buffer at a few places, so that many are
    /// prefixes of others (the hard case for cutting a frame by known
    /// chunks), with repeats.
    fn overlapping_chunks(spec: &[(usize, usize)], seed: u64) -> Vec<Vec<u8>> {
        let buf = bytes(seed, 600_000);
        spec.iter()
            .map(|&(start, len)| buf[start % 6 * 1000..][..len].to_vec())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// The index a scan of a format 2 pack rebuilds, from the pack
        /// alone, is the one written when it was published, byte for byte;
        /// for the same pack as format 1 wrote it, the chunks it holds
        /// rebuild it.
        #[test]
        fn a_rebuilt_index_equals_the_original(
            spec in proptest::collection::vec((0usize..300_000, 1usize..120_000), 1..24),
            seed in any::<u64>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let pool = ChunkPool::open(dir.path(), true).unwrap();
            let chunks = overlapping_chunks(&spec, seed);
            let packs = write(&pool, &chunks);
            prop_assert_eq!(packs.len(), 1);
            let name = &packs[0];
            let index_path = pool.packs_dir.join(format!("{name}.idx"));
            let original = fs::read(&index_path).unwrap();

            let found = pool.scan_pack(name, None).unwrap().unwrap();
            prop_assert!(found.lost.is_empty(), "{:?}", found.lost);
            let mut entries = found.entries.clone();
            prop_assert!(index::encode(&mut entries) == original);

            // Format 1: the same frames without their tables.
            let (v1, moved) = as_version_1(&fs::read(pool.pack_path(name)).unwrap());
            let mut expected = index::decode(&index_path, &original).unwrap();
            for e in &mut expected {
                e.frame_offset = moved[&e.frame_offset];
            }
            let known = KnownChunks::new(chunks.iter().map(|c| (ChunkId::of(c), c.len() as u32)));
            let path = Path::new("v1.pack");
            let found = pack::scan(path, &v1, Some(&known)).unwrap().unwrap();
            prop_assert!(found.lost.is_empty(), "{:?}", found.lost);
            let mut entries = found.entries;
            prop_assert!(index::encode(&mut entries) == index::encode(&mut expected));
            // Without the known chunks nothing can be told apart.
            let blind = pack::scan(path, &v1, None).unwrap().unwrap();
            prop_assert!(blind.entries.is_empty() && !blind.lost.is_empty());
        }
    }

    #[test]
    fn a_version_1_pack_is_still_read_through_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ChunkPool::open(dir.path(), true).unwrap();
        let chunks = overlapping_chunks(&[(0, 90_000), (1, 200_000), (2, 5), (3, 300_000)], 9);
        let name = write(&pool, &chunks).remove(0);
        let index_path = pool.packs_dir.join(format!("{name}.idx"));
        let mut entries = index::decode(&index_path, &fs::read(&index_path).unwrap()).unwrap();
        let (v1, moved) = as_version_1(&fs::read(pool.pack_path(&name)).unwrap());
        for e in &mut entries {
            e.frame_offset = moved[&e.frame_offset];
        }
        fs::write(pool.pack_path(&name), v1).unwrap();
        fs::write(&index_path, index::encode(&mut entries)).unwrap();
        let pool = ChunkPool::open(dir.path(), false).unwrap();
        let mut reader = pool.reader();
        for c in &chunks {
            assert_eq!(reader.read(&ChunkId::of(c)).unwrap(), &c[..]);
        }
        assert!(pool.verify_all().unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_index_costs_only_its_packs_chunks_until_the_pack_is_indexed_again() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ChunkPool::open(dir.path(), true).unwrap();
        let first = vec![bytes(1, 100_000), bytes(2, 70_000)];
        let second = vec![bytes(3, 90_000)];
        let damaged = write(&pool, &first)[0].clone();
        let packs = write(&pool, &second);
        let healthy = packs.iter().find(|n| **n != damaged).unwrap().clone();
        let index_path = pool.packs_dir.join(format!("{damaged}.idx"));
        let original = fs::read(&index_path).unwrap();

        for damage in [&original[..20], b"CSIDX\0\0\x01 and garbage".as_slice()] {
            fs::write(&index_path, damage).unwrap();
            let pool = ChunkPool::open(dir.path(), false).unwrap();
            let mut reader = pool.reader();
            assert_eq!(
                reader.read(&ChunkId::of(&second[0])).unwrap(),
                &second[0][..]
            );
            let err = reader.read(&ChunkId::of(&first[0])).unwrap_err();
            assert!(
                matches!(&err, Error::MissingChunk { layer: None, unindexed_pack: Some(p), .. } if *p == damaged),
                "{err}"
            );
            drop(reader);
            let unindexed = pool.unindexed().unwrap();
            assert_eq!(unindexed.len(), 1, "{unindexed:?}");
            assert_eq!(unindexed[0].name, damaged);
            assert!(unindexed[0]
                .damage
                .as_ref()
                .unwrap()
                .contains(&format!("{damaged}.idx")));

            let guard = pool.sweep_guard().unwrap();
            let found = pool.scan_pack(&damaged, None).unwrap().unwrap();
            pool.reindex(&guard, &damaged, &found).unwrap();
            assert_eq!(fs::read(&index_path).unwrap(), original);
            assert!(pool.unindexed().unwrap().is_empty());
            assert_eq!(
                pool.reader().read(&ChunkId::of(&first[1])).unwrap(),
                &first[1][..]
            );
        }

        // A pack without an index is listed as such.
        fs::remove_file(&index_path).unwrap();
        let pool = ChunkPool::open(dir.path(), false).unwrap();
        let unindexed = pool.unindexed().unwrap();
        assert_eq!(
            unindexed,
            vec![Unindexed {
                name: damaged.clone(),
                damage: None
            }]
        );
        assert!(pool.contains(&ChunkId::of(&second[0])));
        assert!(!pool.contains(&ChunkId::of(&first[0])));
        // Only with no writer running is that known to be a lost index.
        let writer = pool.write_guard().unwrap();
        assert_eq!(pool.unindexed_if_idle().unwrap(), None);
        drop(writer);
        assert_eq!(pool.unindexed_if_idle().unwrap(), Some(unindexed));
        let _ = healthy;
    }

    #[test]
    fn a_damaged_config_gives_way_to_the_defaults_until_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ChunkPool::open(dir.path(), true).unwrap();
        let (id, _) = {
            let mut w = pool.writer().unwrap();
            let added = w.add(&bytes(4, 50_000)).unwrap();
            w.finish().unwrap();
            added
        };
        let config_path = dir.path().join("config.json");
        let original = fs::read(&config_path).unwrap();
        let out_of_range = String::from_utf8(original.clone())
            .unwrap()
            .replace("\"zstd_level\": 3", "\"zstd_level\": 99");
        for damage in [&b"{\"version\":1,\"algo"[..], b"", out_of_range.as_bytes()] {
            fs::write(&config_path, damage).unwrap();
            let pool = ChunkPool::open(dir.path(), true).unwrap();
            assert_eq!(pool.config(), &PoolConfig::default());
            assert!(pool.config_damage().is_some());
            assert_eq!(pool.reader().read(&id).unwrap().len(), 50_000);
            pool.rewrite_config(ChunkerParams::default()).unwrap();
            assert!(pool.config_damage().is_none());
            assert_eq!(fs::read(&config_path).unwrap(), original);
            assert!(ChunkPool::open(dir.path(), false)
                .unwrap()
                .config_damage()
                .is_none());
        }
        // A pool of a newer format is refused, not taken for damage.
        let newer = String::from_utf8(original)
            .unwrap()
            .replace("\"version\": 1", "\"version\": 2");
        fs::write(&config_path, newer).unwrap();
        let err = ChunkPool::open(dir.path(), true).err().unwrap().to_string();
        assert!(
            err.contains("pool format version 2 is not supported"),
            "{err}"
        );
    }
}
