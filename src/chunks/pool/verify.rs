//! Verifying the whole pool: every chunk the lookup table can serve is
//! decompressed from its pack and checked against its BLAKE3 (`check`).
//! Each frame is decompressed once; frames are checked in parallel.
//! Damaged chunks can then be dropped (`check --repair`).

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;

use super::{ChunkId, ChunkPool, Location};
use crate::chunks::{SweepGuard, SweepReport};
use crate::error::{Error, Result};
use crate::poison::UnpoisonedRw;

impl ChunkPool {
    /// Checks every chunk of the pool; returns those that cannot be read
    /// back intact, with why, sorted by ID. A pack that cannot be opened
    /// damages all its chunks.
    pub(crate) fn verify_all(&self) -> Result<Vec<(ChunkId, String)>> {
        self.refresh()?;
        let mut frames: BTreeMap<(u32, u64), Vec<(ChunkId, Location)>> = BTreeMap::new();
        {
            let state = self.state.read_unpoisoned();
            for (id, loc) in state.map.iter() {
                frames
                    .entry((loc.pack, loc.frame_offset))
                    .or_default()
                    .push((*id, *loc));
            }
        }
        let frames: Vec<_> = frames.into_values().collect();
        let mut bad: Vec<(ChunkId, String)> = frames
            .par_iter()
            .map(|chunks| self.verify_frame(chunks))
            .flatten()
            .collect();
        bad.sort_by_key(|(id, _)| *id);
        Ok(bad)
    }

    /// Drops the chunks of `damaged` that still do not read back intact
    /// (checked again under `guard`: another process may have repaired
    /// them since): the packs holding them are rewritten without them.
    /// While the pool has a damaged chunk, an import of the same content
    /// reuses it instead of storing it anew; once dropped, an import
    /// restores it for every layer that uses it.
    pub(crate) fn drop_damaged(
        &self,
        guard: &SweepGuard,
        damaged: &[ChunkId],
    ) -> Result<SweepReport> {
        self.reload()?;
        let mut reader = self.reader();
        let still: HashSet<ChunkId> = damaged
            .iter()
            .filter(|id| matches!(reader.read(id), Err(Error::Chunk { .. })))
            .copied()
            .collect();
        drop(reader);
        if still.is_empty() {
            return Ok(SweepReport::default());
        }
        let mut live: HashSet<ChunkId> = {
            let state = self.state.read_unpoisoned();
            state
                .map
                .keys()
                .filter(|id| !still.contains(id))
                .copied()
                .collect()
        };
        // The sweep indexes again the packs without a readable index that
        // it can: their chunks are not in the table, but they are not
        // garbage.
        for pack in self.unindexed()? {
            if let Ok(Some(found)) = self.scan_pack(&pack.name, None) {
                live.extend(found.entries.iter().map(|e| e.id));
            }
        }
        live.retain(|id| !still.contains(id));
        self.sweep(guard, &live, 0.0, false)
    }

    fn verify_frame(&self, chunks: &[(ChunkId, Location)]) -> Vec<(ChunkId, String)> {
        let all = |what: String| chunks.iter().map(|(id, _)| (*id, what.clone())).collect();
        let loc = chunks[0].1;
        let map = match self.mapped(loc.pack) {
            Ok(map) => map,
            Err(e) => return all(format!("its pack cannot be read: {e}")),
        };
        let start = loc.frame_offset as usize;
        let Some(compressed) = start
            .checked_add(loc.frame_len as usize)
            .and_then(|end| map.get(start..end))
        else {
            return all("its frame lies outside its pack".into());
        };
        let mut frame = Vec::with_capacity(loc.raw_len as usize);
        if let Err(e) = zstd::stream::copy_decode(compressed, &mut frame) {
            return all(format!("its frame does not decompress: {e}"));
        }
        if frame.len() != loc.raw_len as usize {
            return all("its frame has the wrong length".into());
        }
        chunks
            .iter()
            .filter_map(|(id, loc)| {
                let data = frame.get(loc.offset as usize..(loc.offset as usize + loc.len as usize));
                match data {
                    Some(data) if ChunkId::of(data) == *id => None,
                    Some(_) => Some((*id, "stored data does not match its hash".into())),
                    None => Some((*id, "it lies outside its frame".into())),
                }
            })
            .collect()
    }
}
