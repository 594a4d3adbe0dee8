//! `check`'s part for the layers' content: every chunk a sealed layer's
//! manifest lists is in the pool and (unless quick) reads back intact,
//! and the layer's exact tar can be written again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;

use super::{CheckOptions, Remedy, ScanReport, LAYER_INCORRECT_DIGEST};
use crate::chunks::ChunkId;
use crate::error::Result;
use crate::manifest::{self, LayerManifest};
use crate::store::{Kind, Layer, Store};

impl Store {
    /// The chunks of every sealed layer: present in the pool and, unless
    /// quick, intact (the whole pool is verified once). Notes in `scan`
    /// the damaged chunks, the layers using them and, per layer, the
    /// chunks the pool lacks; returns the layers whose content cannot be
    /// read.
    pub(super) fn scan_chunks(
        &self,
        scan: &mut ScanReport,
        layers: &[&Layer],
        manifests: &HashMap<String, Arc<LayerManifest>>,
        options: &CheckOptions,
    ) -> Result<HashSet<String>> {
        let damaged: BTreeMap<ChunkId, String> = if options.quick {
            BTreeMap::new()
        } else {
            self.pool.verify_all()?.into_iter().collect()
        };
        let mut unreadable: HashSet<String> = HashSet::new();
        for layer in layers {
            let Some(m) = manifests.get(&layer.id) else {
                continue;
            };
            let mut missing = BTreeSet::new();
            let mut broken = BTreeSet::new();
            for chunk in m.entries.iter().flat_map(|e| &e.chunks) {
                if !self.pool.contains(&chunk.id) {
                    missing.insert(chunk.id);
                } else if damaged.contains_key(&chunk.id) {
                    broken.insert(chunk.id);
                }
            }
            if !missing.is_empty() {
                // An import may have published packs since the refresh.
                self.pool.refresh()?;
                missing.retain(|id| !self.pool.contains(id));
                scan.pool.missing.insert(layer.id.clone(), missing.clone());
            }
            let mut listed = Vec::new();
            for id in &missing {
                listed.push(format!(
                    "layer content is missing: chunk {id} is not in the pool"
                ));
            }
            for id in &broken {
                listed.push(format!(
                    "{LAYER_INCORRECT_DIGEST}: chunk {id} is damaged: {}",
                    damaged[id]
                ));
            }
            if !broken.is_empty() {
                scan.damaged_chunk_users.insert(layer.id.clone());
            }
            if !listed.is_empty() {
                unreadable.insert(layer.id.clone());
            }
            scan.add_capped(&layer.id, listed, Remedy::Remove, "chunks");
        }
        scan.damaged_chunks = damaged.keys().copied().collect();
        Ok(unreadable)
    }

    /// The exact tar of every sealed layer whose chunks can all be read.
    pub(super) fn scan_exports(
        &self,
        scan: &mut ScanReport,
        (layers, image_store_layers): (&[&Layer], &[Layer]),
        manifests: &HashMap<String, Arc<LayerManifest>>,
        unreadable: &HashSet<String>,
    ) {
        let exported: Vec<(String, String)> = layers
            .par_iter()
            .filter(|l| !unreadable.contains(&l.id))
            .filter_map(|l| manifests.get(&l.id).map(|m| (l, m)))
            .filter_map(|(l, m)| {
                manifest::write_tar(m, &self.pool, &mut std::io::sink())
                    .err()
                    .map(|e| (l.id.clone(), format!("{LAYER_INCORRECT_DIGEST}: {e}")))
            })
            .collect();
        for (id, message) in exported {
            scan.add(Kind::Layer, &id, message, Remedy::Remove);
        }
        // Directory-backed layers with a recorded digest and the
        // tar-split that gives their exact tar (the graph root's, and
        // the split image store's, which upstream's one layer store
        // checks too): as upstream's `check`, what the directory holds is
        // exported and its digest compared (a layer written since,
        // through a mount, `copy` or `applydiff`, no longer matches).
        let in_place = image_store_layers
            .iter()
            .filter(|l| !l.is_incomplete() && self.ro_in_place(l).is_some());
        let candidates: Vec<&Layer> = layers.iter().copied().chain(in_place).collect();
        let written: Vec<(String, String)> = candidates
            .par_iter()
            .filter(|l| !l.sealed && !l.diff_digest.is_empty())
            .filter(|l| self.live_dir_of(l).is_ok_and(|d| d.is_dir()))
            .filter(|l| self.tar_split_path_of(l).is_file())
            .filter_map(|l| {
                let mut hash = HashingSink(manifest::Sha256::default());
                let what = match self.live_diff(l, crate::manifest::Compression::None, &mut hash) {
                    Ok(()) => {
                        let digest = hash.0.finish();
                        (digest != l.diff_digest).then(|| {
                            format!(
                                "{LAYER_INCORRECT_DIGEST}: the record says {}, its content {digest}",
                                l.diff_digest
                            )
                        })
                    }
                    Err(e) => Some(format!("{LAYER_INCORRECT_DIGEST}: {e}")),
                };
                what.map(|w| (l.id.clone(), w))
            })
            .collect();
        for (id, message) in written {
            scan.add(Kind::Layer, &id, message, Remedy::Remove);
        }
        // The split image store's pool-backed layers (a store of ours
        // used as `DIR`): their exact tar written from `DIR`'s pool, whose
        // chunks are checked as they are read.
        let from_their_pool: Vec<(String, String)> = image_store_layers
            .par_iter()
            .filter(|l| l.sealed && !l.is_incomplete())
            .filter_map(|l| {
                let exported = self
                    .layer_manifest(l)
                    .and_then(|m| manifest::write_tar(&m, self.pool_of(l)?, &mut std::io::sink()));
                let e = exported.err()?;
                Some((l.id.clone(), format!("{LAYER_INCORRECT_DIGEST}: {e}")))
            })
            .collect();
        for (id, message) in from_their_pool {
            scan.add(Kind::Layer, &id, message, Remedy::Remove);
        }
    }
}

/// A writer that only hashes what it is given.
struct HashingSink(manifest::Sha256);

impl std::io::Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
