//! Stacked overlay layers: a parentless sealed layer whose files mostly
//! match those of another parentless layer already materialized (a
//! sibling squashed image, a rebuild of the same image) is materialized
//! as a delta over that layer's directory: `<drv>/<id>/diff` holds only
//! what differs and `<drv>/<id>/base` names the layer below it. Mounts
//! then list the base's directory right under the delta's, so the merged
//! view is the layer's full tree.
//!
//! A base's directory stays while a delta stacked on it exists, even when
//! its layer is deleted or its directory would be evicted; `gc` removes it
//! once nothing stacks on it.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

use rayon::prelude::*;

use super::layers::Layer;
use super::layout;
use super::Store;
use crate::error::Result;
use crate::manifest::{self, EntryKind, LayerManifest, Sketch};
use crate::materialize;

/// A delta is worth it when the base provides at least this share of the
/// layer's entries.
const MIN_SHARED: f64 = 0.5;
/// A candidate whose sketch promises less than this share is not even
/// decoded (below [`MIN_SHARED`], for the sketches' error).
const MIN_PROMISED: f64 = 0.35;

impl Store {
    /// `<drv>/<id>/base`: the layer a delta is stacked on.
    pub(super) fn base_file(&self, id: &str) -> PathBuf {
        self.driver_dir().join(id).join(layout::BASE)
    }

    /// The layer whose directory `id`'s materialized delta is stacked on
    /// (none for a full directory, or one not materialized).
    pub(crate) fn stacked_on(&self, id: &str) -> Option<String> {
        if self.options.driver != "overlay" {
            return None;
        }
        let base = fs::read_to_string(self.base_file(id)).ok()?;
        let valid = base.len() == 64 && base.bytes().all(|b| b.is_ascii_hexdigit());
        (valid && self.is_materialized(id)).then_some(base)
    }

    /// Every materialized delta and the layer it is stacked on, from one
    /// look at the driver directory.
    pub(crate) fn stacking(&self) -> HashMap<String, String> {
        if self.options.driver != "overlay" {
            return HashMap::new();
        }
        fs::read_dir(self.driver_dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter_map(|id| self.stacked_on(&id).map(|base| (id, base)))
            .filter(|(id, base)| id != base)
            .collect()
    }

    /// The layers whose materialized deltas are stacked on `id`.
    pub(crate) fn stacked_above(&self, id: &str) -> Vec<String> {
        self.stacking()
            .into_iter()
            .filter(|(_, base)| base == id)
            .map(|(delta, _)| delta)
            .collect()
    }

    /// The layers a parentless `layer` could be stacked on, with their
    /// manifests (read in parallel): among the materialized, full (not
    /// themselves stacked), parentless layers that stand alone, the one
    /// whose manifest's sketch promises the most shared entries, if that
    /// is enough, and those without a sketch (written by older versions).
    pub(super) fn base_candidates(&self, layer: &Layer) -> Result<Vec<(String, LayerManifest)>> {
        if !layer.parent.is_empty() {
            return Ok(Vec::new());
        }
        let candidates: Vec<Layer> = self
            .layers()?
            .into_iter()
            .filter(|c| {
                c.id != layer.id
                    && c.parent.is_empty()
                    && c.uid_map.is_empty()
                    && c.gid_map.is_empty()
                    && c.sealed
                    && self.is_materialized(&c.id)
                    && self.stacked_on(&c.id).is_none()
            })
            .collect();
        let candidates = match manifest::read_sketch(&self.manifest_path(&layer.id)) {
            Some(target) => self.promising(&target, candidates),
            None => candidates,
        };
        Ok(candidates
            .into_par_iter()
            .filter_map(|c| {
                let cm = self.layer_manifest(&c).ok()?;
                materialize::stands_alone(&cm).then_some((c.id, cm))
            })
            .collect())
    }

    /// Of `candidates`, those worth decoding for a layer sketched by
    /// `target`: the one with the best sketch if it promises enough, and
    /// every one without a sketch.
    fn promising(&self, target: &Sketch, candidates: Vec<Layer>) -> Vec<Layer> {
        let mut chosen = Vec::new();
        let mut best: Option<(f64, Layer)> = None;
        for c in candidates {
            match manifest::read_sketch(&self.manifest_path(&c.id)) {
                Some(sketch) => {
                    let promised = target.shared_estimate(&sketch);
                    if best.as_ref().is_none_or(|(p, _)| promised > *p) {
                        best = Some((promised, c));
                    }
                }
                None => chosen.push(c),
            }
        }
        let enough = MIN_PROMISED * target.entries() as f64;
        chosen.extend(best.filter(|(p, _)| *p >= enough).map(|(_, c)| c));
        chosen
    }
}

/// A layer to stack on: its ID, its manifest and the delta over it.
pub(super) struct Base {
    pub id: String,
    pub manifest: LayerManifest,
    pub delta: LayerManifest,
}

/// The best base for a layer with manifest `m` among `candidates`: the one
/// whose delta leaves the most of its entries to the base (the first
/// listed among equals), if that is enough.
pub(super) fn pick_base(
    m: &LayerManifest,
    candidates: Vec<(String, LayerManifest)>,
) -> Option<Base> {
    if !materialize::stands_alone(m) {
        return None;
    }
    // Each candidate's delta on its own core.
    let scored: Vec<(usize, Base)> = candidates
        .into_par_iter()
        .map(|(id, manifest)| {
            let delta = materialize::delta(m, &manifest);
            let kept = delta
                .entries
                .iter()
                .filter(|e| e.kind != EntryKind::Whiteout)
                .count();
            let shared = m.entries.len().saturating_sub(kept);
            (
                shared,
                Base {
                    id,
                    manifest,
                    delta,
                },
            )
        })
        .collect();
    let mut best: Option<(usize, Base)> = None;
    for (shared, base) in scored {
        if best.as_ref().is_none_or(|(n, _)| shared > *n) {
            best = Some((shared, base));
        }
    }
    best.filter(|(shared, _)| *shared as f64 >= MIN_SHARED * m.entries.len() as f64)
        .map(|(_, base)| base)
}
