//! Repairing the pool's own files: packs whose index is missing or cannot
//! be read are indexed again from the pack (`check --repair`, and `gc` for
//! packs whose chunk tables account for all of them), packs in which
//! nothing can be read are dropped, and a damaged `config.json` is written
//! again. What the layers then lack is for the caller (`check`) to judge.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::PathBuf;

use memmap2::Mmap;

use super::{ChunkPool, ChunkerParams, PoolConfig};
use crate::chunks::index;
use crate::chunks::pack::{self, KnownChunks, PackScan};
use crate::chunks::SweepGuard;
use crate::durable;
use crate::error::{IoContext, Result};

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
        self.config_damage.lock().expect("pool config lock").clone()
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
        *self.config_damage.lock().expect("pool config lock") = None;
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
        for entry in fs::read_dir(&self.packs_dir).at("read directory", &self.packs_dir)? {
            let entry = entry.at("read directory", &self.packs_dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                continue;
            }
            if let Some(stem) = name.strip_suffix(".pack") {
                packs.insert(stem.to_string());
            } else if let Some(stem) = name.strip_suffix(".idx") {
                indexes.insert(stem.to_string());
            }
        }
        let state = self.state.read().expect("pool lock");
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

    /// The path of pack `name`.
    pub(crate) fn pack_path(&self, name: &str) -> PathBuf {
        self.packs_dir.join(format!("{name}.pack"))
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
        let file = File::open(&path).at("open", &path)?;
        // SAFETY: published packs are immutable: nothing truncates or
        // rewrites them in place.
        let map = unsafe { Mmap::map(&file) }.at("mmap", &path)?;
        pack::scan(&path, &map, known)
    }

    /// Writes the index of pack `name` from the entries a scan found,
    /// replacing the damaged one, and loads it.
    pub(crate) fn reindex(&self, _guard: &SweepGuard, name: &str, scan: &PackScan) -> Result<()> {
        let mut entries = scan.entries.clone();
        let bytes = index::encode(&mut entries);
        durable::atomic_write(&self.packs_dir.join(format!("{name}.idx")), &bytes)?;
        self.refresh()
    }

    /// Removes pack `name` and its index, if it has one: nothing in it can
    /// be read. Other processes reload their tables.
    pub(crate) fn drop_pack(&self, guard: &SweepGuard, name: &str) -> Result<()> {
        let index = self.packs_dir.join(format!("{name}.idx"));
        if index.exists() {
            durable::remove_file(&index)?;
        }
        durable::remove_file(&self.pack_path(name))?;
        durable::fsync_dir(&self.packs_dir)?;
        guard.lock.touch()?;
        self.reload()
    }
}
