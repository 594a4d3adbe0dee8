//! Verifying the whole pool: every chunk the lookup table can serve is
//! decompressed from its pack and checked against its BLAKE3 (`check`).
//! Each frame is decompressed once; frames are checked in parallel.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::{ChunkId, ChunkPool, Location};
use crate::error::Result;

impl ChunkPool {
    /// Checks every chunk of the pool; returns those that cannot be read
    /// back intact, with why, sorted by ID. A pack that cannot be opened
    /// damages all its chunks.
    pub(crate) fn verify_all(&self) -> Result<Vec<(ChunkId, String)>> {
        self.refresh()?;
        let mut frames: BTreeMap<(u32, u64), Vec<(ChunkId, Location)>> = BTreeMap::new();
        {
            let state = self.state.read().expect("pool lock");
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
