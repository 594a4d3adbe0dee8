//! Eviction of materialized directories: a sealed layer's directory is a
//! cache of its manifest, so one that no mount uses can be removed and is
//! built again by the next mount that needs it.
//!
//! Every mount stamps the layers of its chain (`<drv>/.used/<id>`, whose
//! mtime is the last use); the policy evicts directories unused for a
//! given time.
//!
//! The directories built here for read-only stores' pool-backed layers
//! are caches the same way.
//!
//! Never evicted: anything under `materialize = "always"` (a store shared
//! with Go clients, which read the directories directly); a directory of
//! a layer with a mount count in `mountpoints.json` (with, for overlay,
//! the layers below it); and a directory any overlay mount of the host
//! uses as a lower, upper or work directory (see `host_mounts`), whoever
//! mounted it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::layers::Layer;
use super::layout;
use super::mounts::MountPoint;
use super::options::Materialize;
use super::Store;
use crate::durable;
use crate::error::Result;

/// What eviction removed (or, dry, would remove).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Evicted {
    /// Layers whose directory was evicted.
    pub layers: u64,
    /// Allocated bytes freed by it (blocks no other name shares).
    pub bytes: u64,
}

impl Store {
    /// `<drv>-layers/.used/`.
    pub(crate) fn used_stamps_dir(&self) -> PathBuf {
        layout::side_dir(self.graph_root(), &self.options.driver, layout::USED_STAMPS)
    }

    fn used_stamp(&self, id: &str) -> PathBuf {
        self.used_stamps_dir().join(id)
    }

    /// Records that `chain` was just used by a mount. Best effort: a
    /// missing stamp only makes the directory look cold.
    pub(crate) fn mark_used(&self, chain: &[Layer]) {
        if super::driver::own_dir(&self.used_stamps_dir()).is_err() {
            return;
        }
        for layer in chain {
            let path = self.used_stamp(&layer.id);
            if let Ok(file) = durable::open_store_file(&path, durable::Open::Create) {
                let _ = file.set_modified(SystemTime::now());
            }
        }
    }

    /// Forgets the stamp of a deleted layer.
    pub(crate) fn forget_used(&self, id: &str) {
        let _ = fs::remove_file(self.used_stamp(id));
    }

    /// Evicts the directories of sealed layers that no mount uses and no
    /// mount has used for `unused_for`.
    pub(crate) fn evict(&self, unused_for: Duration, dry_run: bool) -> Result<Evicted> {
        let overlay = self.options.driver == "overlay";
        let mut evicted = Evicted::default();
        if self.options.materialize == Materialize::Always {
            return Ok(evicted);
        }
        let mut doomed = Vec::new();
        // Read before this store's locks (they are not this store's): the
        // read-only stores' layers. Their pool-backed ones have
        // directories mounts built here from their pools
        // (`driver::prepare_ro_overlay`).
        let ro_layers = self.ro_layers()?;
        {
            // The layers lock first, as deletes take them: no layer
            // appears or goes while the mounts are looked at. Mounts check
            // and rebuild their chain under the mounts lock.
            let layers_locked = self.layer_records.lock()?;
            let layers = &layers_locked.records;
            // An ID the writable store holds too is its layer's.
            let ro_layers: Vec<&Layer> = ro_layers
                .iter()
                .filter(|l| !layers.iter().any(|w| w.id == l.id))
                .collect();
            let ro_built = ro_layers.iter().copied().filter(|l| {
                l.read_only_store
                    .as_deref()
                    .is_some_and(|r| super::state::pool_backed(r, l))
            });
            let mounts = self.mount_records.lock()?;
            let stacking = self.stacking();
            // Mounted chains run through every layer, read-only ones too.
            let chains: Vec<Layer> = layers
                .iter()
                .chain(ro_layers.iter().copied())
                .cloned()
                .collect();
            let in_use = in_use(&chains, &mounts.records, overlay, &stacking);
            // What the host's overlay mounts use (podman's, buildah's, ...),
            // read under the mounts lock: a mount of ours that starts now
            // rebuilds what it finds gone.
            let host = super::host_mounts::overlay_dirs(&self.driver_dir());
            let used_by_host = |id: &str| {
                let dir = self.layer_content_dir(id);
                let dir = fs::canonicalize(&dir).unwrap_or(dir);
                host.contains(&dir)
            };
            // How many deltas stand on each base directory.
            let mut above: HashMap<&str, usize> = HashMap::new();
            for base in stacking.values() {
                *above.entry(base.as_str()).or_default() += 1;
            }
            let now = SystemTime::now();
            let mut candidates: Vec<&Layer> = layers
                .iter()
                // Pool-backed as the disk says now, under the mounts lock
                // (the records were read before it: a layer made
                // directory-backed meanwhile keeps its directory).
                .filter(|l| super::state::pool_backed(self.graph_root(), l))
                .chain(ro_built)
                .filter(|l| !in_use.contains(&l.id) && !used_by_host(&l.id))
                // Only directories of their own: what a symlink leads to
                // is none of the store's (`check -r` removes the link).
                .filter(|l| self.is_materialized(&l.id))
                .filter(|l| {
                    let last_used = fs::metadata(self.used_stamp(&l.id))
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    now.duration_since(last_used).unwrap_or_default() >= unused_for
                })
                .collect();
            // Deltas before the directories they are stacked on, which go
            // only once nothing is stacked on them any more.
            candidates.sort_by_key(|l| !stacking.contains_key(&l.id));
            for layer in candidates {
                let dir = self.layer_content_dir(&layer.id);
                if above.get(layer.id.as_str()).is_some_and(|n| *n > 0) {
                    continue;
                }
                evicted.layers += 1;
                evicted.bytes += unshared_bytes(&dir);
                // The tree below a mapped layer goes with its `diff`.
                let below = self
                    .driver_dir()
                    .join(&layer.id)
                    .join(super::layout::MAPPED_BELOW);
                if overlay && below.is_dir() {
                    evicted.bytes += unshared_bytes(&below);
                    if !dry_run {
                        if let Ok(away) = durable::rename_aside(&below) {
                            doomed.push(away);
                        }
                    }
                }
                if !dry_run {
                    if let Ok(away) = durable::rename_aside(&dir) {
                        doomed.push(away);
                        let _ = fs::remove_file(self.base_file(&layer.id));
                        if let Some(base) = stacking.get(&layer.id) {
                            if let Some(n) = above.get_mut(base.as_str()) {
                                *n -= 1;
                            }
                        }
                    }
                }
            }
            drop(mounts);
            drop(layers_locked);
        }
        for dir in doomed {
            let _ = fs::remove_dir_all(dir);
        }
        Ok(evicted)
    }
}

/// The allocated bytes of a file or tree that no other name shares
/// (a hardlinked file is counted where its last name goes).
pub(super) fn unshared_bytes(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    let own = if meta.is_dir() || meta.nlink() == 1 {
        meta.blocks() * 512
    } else {
        0
    };
    if !meta.is_dir() {
        return own;
    }
    own + fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| unshared_bytes(&e.path()))
        .sum::<u64>()
}

/// The layers whose directories mounts use: every mounted layer, on
/// overlay its whole chain, and the directories deltas among them are
/// stacked on (`stacking`: delta -> base).
fn in_use(
    layers: &[Layer],
    mounts: &[MountPoint],
    overlay: bool,
    stacking: &HashMap<String, String>,
) -> HashSet<String> {
    let mut in_use = HashSet::new();
    for m in mounts.iter().filter(|m| m.count > 0) {
        in_use.insert(m.id.clone());
        if overlay {
            let mut next = layers.iter().find(|l| l.id == m.id);
            while let Some(l) = next {
                if !in_use.insert(l.id.clone()) && l.id != m.id {
                    break;
                }
                next = layers.iter().find(|p| p.id == l.parent);
            }
        }
    }
    let bases: Vec<String> = in_use
        .iter()
        .filter_map(|id| stacking.get(id).cloned())
        .collect();
    in_use.extend(bases);
    in_use
}
