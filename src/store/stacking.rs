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

use super::layers::Layer;
use super::Store;
use crate::error::Result;
use crate::manifest::LayerManifest;
use crate::materialize;

/// A delta is worth it when the base provides at least this share of the
/// layer's entries.
const MIN_SHARED: f64 = 0.5;

impl Store {
    /// `<drv>/<id>/base`: the layer a delta is stacked on.
    pub(super) fn base_file(&self, id: &str) -> PathBuf {
        self.driver_dir().join(id).join("base")
    }

    /// The layer whose directory `id`'s materialized delta is stacked on
    /// (none for a full directory, or one not materialized).
    pub(crate) fn stacked_on(&self, id: &str) -> Option<String> {
        if self.options.driver != "overlay" {
            return None;
        }
        let base = fs::read_to_string(self.base_file(id)).ok()?;
        let valid = base.len() == 64 && base.bytes().all(|b| b.is_ascii_hexdigit());
        (valid && self.driver_dir().join(id).join("diff").is_dir()).then_some(base)
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

    /// The best base for a parentless layer with manifest `m`: the
    /// materialized, full (not itself stacked), parentless layer that
    /// provides the most of its entries unchanged, if it provides enough.
    pub(super) fn pick_base(
        &self,
        layer: &Layer,
        m: &LayerManifest,
    ) -> Result<Option<(String, LayerManifest)>> {
        if !layer.parent.is_empty() || !materialize::stands_alone(m) {
            return Ok(None);
        }
        let mut best: Option<(usize, String, LayerManifest)> = None;
        for candidate in self.layers()? {
            let materialized = self.driver_dir().join(&candidate.id).join("diff").is_dir();
            if candidate.id == layer.id
                || !candidate.parent.is_empty()
                || !candidate.sealed
                || !materialized
                || self.stacked_on(&candidate.id).is_some()
            {
                continue;
            }
            let Ok(cm) = self.layer_manifest(&candidate) else {
                continue;
            };
            if !materialize::stands_alone(&cm) {
                continue;
            }
            let shared = materialize::shared_entries(m, &cm);
            if best.as_ref().is_none_or(|(n, _, _)| shared > *n) {
                best = Some((shared, candidate.id, cm));
            }
        }
        Ok(best
            .filter(|(shared, _, _)| *shared as f64 >= MIN_SHARED * m.entries.len() as f64)
            .map(|(_, id, cm)| (id, cm)))
    }
}
