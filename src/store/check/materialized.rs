//! `check`'s part for the driver's directories: materialized directories
//! of sealed layers against their manifests (compared by the
//! materializer's rules, `materialize/compare.rs`), driver entries that
//! are not the layout's (a directory or short link swapped for a
//! symlink, never followed), a directory-backed layer's directory that is
//! gone (its content with it), driver entries a Go client reads that are
//! missing, and directories without a record.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use rayon::prelude::*;

use super::{
    CheckOptions, Inode, Records, Remedy, ScanReport, LAYER_MISSING, LAYER_MODIFIED,
    LAYER_UNACCOUNTED,
};
use crate::error::Error;
use crate::manifest::LayerManifest;
use crate::materialize::{self, ExpectedTree, Format};
use crate::store::{layout, Kind, Layer, Store};

impl Store {
    /// Driver entries that are not the layout's (a directory swapped for
    /// a symlink to elsewhere): never followed. A sealed layer's
    /// directory is a cache, rebuilt; a live layer whose directory was
    /// replaced has lost its content, and is damaged. Then short links
    /// that lead nowhere a layer's directory is.
    pub(super) fn scan_driver_entries(&self, scan: &mut ScanReport, layers: &[&Layer]) {
        for layer in layers {
            for m in self.misplaced_entries(&layer.id) {
                let remedy = if m.content && !layer.sealed {
                    Remedy::Remove
                } else {
                    Remedy::Unlink
                };
                let message = match remedy {
                    Remedy::Remove => format!(
                        "{LAYER_MODIFIED}: {} is {}: the layer's content is gone",
                        m.path.display(),
                        m.what
                    ),
                    _ => format!("{} is {}, not the layer's", m.path.display(), m.what),
                };
                scan.misplaced
                    .entry(layer.id.clone())
                    .or_default()
                    .push(m.path);
                scan.add(Kind::Layer, &layer.id, message, remedy);
            }
        }
        for layer in layers {
            if scan.misplaced.contains_key(&layer.id) {
                continue;
            }
            // A directory-backed layer's directory is its content (made
            // when the layer is): gone, so is what was written there;
            // but for an empty layer an applydiff cut short left without
            // one (its marker says so), and a layer already reported (a
            // pool-backed one whose manifest is gone).
            let content = self.layer_content_dir(&layer.id);
            if !layer.sealed
                && fs::symlink_metadata(&content).is_err()
                && fs::symlink_metadata(self.emptied_marker(&layer.id)).is_err()
                && !scan.reports(&layer.id)
            {
                let message = format!(
                    "{LAYER_MISSING}: {} is gone with the layer's content",
                    content.display()
                );
                scan.add(Kind::Layer, &layer.id, message, Remedy::Remove);
                continue;
            }
            let missing = self.missing_layout(layer);
            if !missing.is_empty() {
                let list: Vec<_> = missing.iter().map(|p| p.display().to_string()).collect();
                let message = format!("driver entries missing: {}", list.join(", "));
                scan.add(Kind::Layer, &layer.id, message, Remedy::LayOut);
            }
        }
        let named: HashSet<PathBuf> = scan.misplaced.values().flatten().cloned().collect();
        for m in self.foreign_short_links() {
            if named.contains(&m.path) {
                // A layer's own link, reported with it.
                continue;
            }
            let name = m.path.file_name().unwrap_or_default().to_string_lossy();
            let name = name.into_owned();
            let message = format!(
                "short link {} is {}, not a layer's directory",
                m.path.display(),
                m.what
            );
            scan.misplaced.entry(name.clone()).or_default().push(m.path);
            scan.add(Kind::Layer, &name, message, Remedy::Unlink);
        }
    }

    /// Materialized directories of sealed layers against their manifests.
    pub(super) fn scan_materialized(
        &self,
        scan: &mut ScanReport,
        layers: &[&Layer],
        by_id: &HashMap<&str, &Layer>,
        manifests: &HashMap<String, Arc<LayerManifest>>,
        options: &CheckOptions,
    ) {
        let materialized: Vec<(String, Vec<String>, Vec<Inode>)> = layers
            .par_iter()
            .filter(|l| l.sealed)
            .filter_map(|l| {
                let (differences, inodes) =
                    self.materialized_problems(l, by_id, manifests, options)?;
                Some((l.id.clone(), differences, inodes))
            })
            .collect();
        for (id, differences, inodes) in materialized {
            scan.add_capped(&id, differences, Remedy::Rebuild, "differences");
            if !inodes.is_empty() {
                scan.shared_inodes.insert(id, inodes);
            }
        }
    }

    /// Driver directories without a record. A deleted layer's directory
    /// that deltas are stacked on is kept.
    pub(super) fn scan_strays(
        &self,
        scan: &mut ScanReport,
        driver_dirs: Vec<String>,
        records: &Records,
        by_id: &HashMap<&str, &Layer>,
    ) {
        let bases: HashSet<String> = driver_dirs
            .iter()
            .filter_map(|n| self.stacked_on(n))
            .collect();
        for name in driver_dirs {
            if !by_id.contains_key(name.as_str())
                && !records.mounted.contains(&name)
                && !bases.contains(&name)
            {
                let message = LAYER_UNACCOUNTED.to_string();
                scan.add(Kind::Layer, &name, message, Remedy::Stray);
            }
        }
    }

    /// Names of the layer directories the driver holds (`<drv>/<id>` for
    /// overlay, `<drv>/dir/<id>` for vfs), without the driver's own
    /// entries and temporary names.
    pub(crate) fn driver_layer_dirs(&self) -> Vec<String> {
        let dir = layout::layer_dirs_parent(self.graph_root(), &self.options.driver);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        // Symlinks too: one in place of a layer's directory is stray.
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir() || t.is_symlink()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !layout::is_reserved(n))
            .collect();
        names.sort();
        names
    }

    /// How the materialized directory of sealed `layer` differs from its
    /// manifest(s), and the inodes of its differing files that have other
    /// names; `None` when it has no such directory (or it cannot be
    /// judged because a manifest is missing, which is reported already).
    fn materialized_problems(
        &self,
        layer: &Layer,
        by_id: &HashMap<&str, &Layer>,
        manifests: &HashMap<String, Arc<LayerManifest>>,
        options: &CheckOptions,
    ) -> Option<(Vec<String>, Vec<Inode>)> {
        let root = self.layer_content_dir(&layer.id);
        // Only a directory of its own: what a symlink leads to is not
        // walked (reported as misplaced instead).
        if !self.is_materialized(&layer.id) {
            return None;
        }
        let (view, stacked);
        let expected = if self.options.driver == "overlay" {
            let mut m = manifests.get(&layer.id)?.as_ref();
            if let Some(base) = self.stacked_on(&layer.id) {
                // A delta over another layer's directory holds what
                // differs from it; without the base's manifest (a deleted
                // layer's) it cannot be judged.
                stacked = materialize::delta(m, manifests.get(&base)?);
                m = &stacked;
            }
            ExpectedTree::overlay(m)
        } else {
            let mut chain: Vec<Arc<LayerManifest>> = Vec::new();
            let mut next = layer.id.as_str();
            while let Some(l) = by_id.get(next) {
                if chain.len() > by_id.len() {
                    return None;
                }
                // Above a directory-backed layer the tree started as a
                // copy of that layer's, which no manifest describes: not
                // judged.
                chain.push(manifests.get(&l.id).filter(|_| l.sealed)?.clone());
                next = &l.parent;
            }
            if !next.is_empty() {
                return None;
            }
            chain.reverse();
            let refs: Vec<&LayerManifest> = chain.iter().map(|m| m.as_ref()).collect();
            view = materialize::lower_view(&refs);
            ExpectedTree::flattened(&view)
        };
        let found =
            materialize::compare(&root, &expected, options.quick, self.overlay_xattr_prefix());
        let differences = match found {
            Ok(differences) => differences,
            Err(e) => {
                let why = match e {
                    Error::Io { source, .. } => source.to_string(),
                    e => e.to_string(),
                };
                let message = format!(
                    "{LAYER_MODIFIED}: {}: cannot be read: {why}",
                    root.display()
                );
                return Some((vec![message], Vec::new()));
            }
        };
        let inodes = differences.iter().filter_map(|d| d.shared_inode).collect();
        let messages = differences
            .into_iter()
            .map(|d| format!("{LAYER_MODIFIED}: {}: {}", d.path.display(), d.what))
            .collect();
        Some((messages, inodes))
    }

    /// The prefix of the overlay attributes this process's builds set
    /// (`trusted.overlay.` as root, `user.overlay.` rootless).
    fn overlay_xattr_prefix(&self) -> Option<&'static str> {
        match self.overlay_format() {
            Format::Overlay { xattr_prefix } if self.options.driver == "overlay" => {
                Some(xattr_prefix)
            }
            _ => None,
        }
    }
}
