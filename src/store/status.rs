//! `status`: the store's roots, driver and pool figures.

use serde::Serialize;

use super::layout;
use super::Store;
use crate::error::Result;

/// Figures about a store.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// Label/value pairs in upstream's order, then ours.
    pub pairs: Vec<(String, String)>,
    /// Bytes of layer content the layers hold (sum of their tar sizes).
    pub logical_bytes: u64,
    /// Bytes the pool occupies (packs, indexes and manifests).
    pub stored_bytes: u64,
    /// Distinct chunks.
    pub chunks: u64,
}

impl Store {
    /// The store's status.
    pub fn status(&self) -> Result<Status> {
        let layers = self.layers()?;
        // Sizes come from `layers.json`: any numbers, so never overflow.
        let logical_bytes = layers
            .iter()
            .filter(|l| l.sealed)
            .fold(0u64, |sum, l| sum.saturating_add(l.diff_size));
        let pool = self.pool.stats()?;
        let manifests_bytes: u64 = std::fs::read_dir(layout::manifests_dir(self.graph_root()))
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let stored_bytes = pool.stored_bytes + manifests_bytes;
        let ratio = if stored_bytes == 0 {
            0.0
        } else {
            logical_bytes as f64 / stored_bytes as f64
        };
        let o = &self.options;
        let pairs = vec![
            ("Root".into(), o.graph_root.display().to_string()),
            ("Run Root".into(), o.run_root.display().to_string()),
            ("Driver Name".into(), o.driver.clone()),
            (
                "Driver Options".into(),
                format!("[{}]", o.driver_options.join(" ")),
            ),
            ("Layers".into(), layers.len().to_string()),
            ("Pool Logical Bytes".into(), logical_bytes.to_string()),
            ("Pool Stored Bytes".into(), stored_bytes.to_string()),
            ("Pool Dedup Ratio".into(), format!("{ratio:.2}")),
            ("Pool Chunks".into(), pool.chunks.to_string()),
            ("Pool Unique Bytes".into(), pool.unique_bytes.to_string()),
            ("Pool Packs".into(), pool.packs.to_string()),
            ("Pool Manifest Bytes".into(), manifests_bytes.to_string()),
        ];
        Ok(Status {
            pairs,
            logical_bytes,
            stored_bytes,
            chunks: pool.chunks,
        })
    }
}
