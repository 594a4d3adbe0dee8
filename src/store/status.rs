//! `status`: the store's roots, driver and pool figures.

use std::path::Path;

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
        let o = self.options();
        let mut pairs = vec![
            ("Root".into(), o.graph_root.display().to_string()),
            ("Run Root".into(), o.run_root.display().to_string()),
            ("Driver Name".into(), o.driver.clone()),
            (
                "Driver Options".into(),
                format!("[{}]", o.driver_options.join(" ")),
            ),
        ];
        if o.driver == "overlay" {
            // Upstream's overlay driver's own facts, in its order.
            let facts = [
                ("Backing Filesystem", backing_filesystem(self.graph_root())),
                (
                    "Supports d_type",
                    supports_d_type(self.graph_root()).to_string(),
                ),
                ("Native Overlay Diff", "true".to_string()),
                ("Using metacopy", "false".to_string()),
                ("Supports shifting", self.supports_shifting().to_string()),
                ("Supports volatile", self.supports_volatile().to_string()),
            ];
            pairs.extend(facts.map(|(k, v)| (k.to_string(), v)));
        }
        pairs.extend([
            ("Layers".into(), layers.len().to_string()),
            ("Pool Logical Bytes".into(), logical_bytes.to_string()),
            ("Pool Stored Bytes".into(), stored_bytes.to_string()),
            ("Pool Dedup Ratio".into(), format!("{ratio:.2}")),
            ("Pool Chunks".into(), pool.chunks.to_string()),
            ("Pool Unique Bytes".into(), pool.unique_bytes.to_string()),
            ("Pool Packs".into(), pool.packs.to_string()),
            ("Pool Manifest Bytes".into(), manifests_bytes.to_string()),
        ]);
        Ok(Status {
            pairs,
            logical_bytes,
            stored_bytes,
            chunks: pool.chunks,
        })
    }
}

/// The name upstream's drivers give the filesystem holding `graph`
/// (`graphdriver.FsNames`), `<unknown>` for one they do not name.
fn backing_filesystem(graph: &Path) -> String {
    const NAMES: &[(i64, &str)] = &[
        (0x6175_6673, "aufs"),
        (0x9123_683E, "btrfs"),
        (0x28cd_3d45, "cramfs"),
        (0xf15f, "ecryptfs"),
        (0xEF53, "extfs"),
        (0xF2F5_2010, "f2fs"),
        (0x4750_4653, "gpfs"),
        (0x72b6, "jffs2"),
        (0x3153_464a, "jfs"),
        (0x6969, "nfs"),
        (0x794C_7630, "overlayfs"),
        (0x8584_58f6, "ramfs"),
        (0x5265_4973, "reiserfs"),
        (0x517B, "smb"),
        (0x7371_7368, "squashfs"),
        (0x0102_1994, "tmpfs"),
        (0xa501_fcf5, "vxfs"),
        (0x5846_5342, "xfs"),
        (0x2fc1_2fc1, "zfs"),
    ];
    let magic = nix::sys::statfs::statfs(graph).map(|s| s.filesystem_type().0);
    magic
        .ok()
        .and_then(|m| NAMES.iter().find(|(n, _)| *n == m))
        .map_or("<unknown>", |(_, name)| name)
        .to_string()
}

/// Whether directory entries under `graph` carry their type (`d_type`),
/// as upstream's overlay driver requires of its home.
fn supports_d_type(graph: &Path) -> bool {
    use nix::dir::Dir;
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let Ok(mut dir) = Dir::open(graph, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()) else {
        return false;
    };
    let typed = dir
        .iter()
        .flatten()
        .filter(|e| ![&b"."[..], b".."].contains(&e.file_name().to_bytes()))
        .all(|e| e.file_type().is_some());
    typed
}
