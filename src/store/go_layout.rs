//! The Go drivers' layout, kept for every layer and container layer we
//! create, import, materialize or delete, so that the Go clients sharing
//! the store (podman, buildah, skopeo, CRI-O, the Go `containers-storage`)
//! find what upstream's drivers read (`drivers/overlay` `create`,
//! `getLower` and `get`, `drivers/vfs` `Create`):
//!
//! - overlay: `overlay/<id>/` with `link` (the 26-character short name),
//!   `overlay/l/<short>` -> `../<id>/diff`, `work/`, `merged/`, and
//!   `empty/` for a parentless layer or a `lower` file for one with a
//!   parent: `l/<short-of-parent>:l/<short-of-grandparent>:...`, parent
//!   first (what Go mounts below the layer's `diff`). A delta (see
//!   `stacking`) is shown over the directory it is stacked on, so that
//!   directory's short link follows the delta's own in every `lower` that
//!   lists the delta, and leads the delta's own `lower`.
//! - `diff/` (overlay) or `vfs/dir/<id>` is made at creation for a
//!   directory-backed layer (`create-layer`, a container's layer; a vfs
//!   one starts as its parent's tree, as upstream's vfs `Create` copies
//!   it). A pool-backed layer's is built from the pool on demand, or at
//!   import under `materialize = "always"` (see [`Materialize`]).
//! - `<drv>-layers/<id>.tar-split.gz` for every layer whose tar we keep:
//!   written by the import (see `layers`), removed with the layer.
//!
//! A layer's record exists before any of its entries are made (`gc`
//! removes entries of layers without a record, and lists them before it
//! reads the records); deleting a layer removes them all
//! (`driver::remove_driver_dirs`). What this module writes is rewritten
//! whenever it no longer says what is on disk (a short link made again,
//! a delta rebuilt in full), for the chain at hand and for every layer
//! whose `lower` lists one that changed.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use super::driver::{own_dir, refuse_reserved};
use super::layers::Layer;
use super::layout;
use super::options::Materialize;
use super::Store;
use crate::durable::{self, Flush};
use crate::error::{Error, Result};

/// What a layer's content directory starts as when it is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Content {
    /// A directory-backed layer: its directory is its content, made now
    /// (empty, or its parent's tree for vfs).
    Directory,
    /// A pool-backed layer: its directory is built from the pool when a
    /// mount needs it, or now under `materialize = "always"`.
    Pool,
}

impl Store {
    /// Lays out the driver entries of `chain`'s top layer (`chain` top
    /// first, as records, the top as it is about to be recorded), and
    /// those of the layers below it that lack them.
    pub(crate) fn lay_out(&self, chain: &[Layer], content: Content) -> Result<()> {
        let always = self.options.materialize == Materialize::Always;
        let built = if self.options.driver == "vfs" {
            match content {
                Content::Directory => return self.prepare_vfs(chain).map(drop),
                Content::Pool if always => self.prepare_vfs(chain).map(drop),
                Content::Pool => Ok(()),
            }
        } else {
            self.lay_out_overlay(chain, HashSet::new())?;
            match content {
                Content::Directory => {
                    let diff = self.driver_dir().join(&chain[0].id).join(layout::DIFF);
                    return durable::create_tree_root(&diff, Flush::Now);
                }
                Content::Pool if always => self.prepare_overlay(chain),
                Content::Pool => Ok(()),
            }
        };
        match built {
            // A chain this build cannot make yet (a layer below whose
            // content is its directory): the layer stays pool-backed and
            // is built by the first mount that can.
            Err(Error::LiveBelow(below)) => {
                tracing::warn!(layer = %chain[0].id, below = %below, "not materialized at import: a layer below is not sealed");
                Ok(())
            }
            other => other,
        }
    }

    /// Makes sure every layer of `chain` (top first) has its overlay
    /// entries but `diff`: its directory, `work`, `merged`, its short link,
    /// and `empty` or a `lower` that lists what is below it now. Layers
    /// elsewhere whose `lower` lists one of these whose short name or
    /// `lower` changed (or one of `changed`, layers given a new short name
    /// by the caller) get theirs rewritten too.
    pub(crate) fn lay_out_overlay(
        &self,
        chain: &[Layer],
        mut changed: HashSet<String>,
    ) -> Result<()> {
        own_dir(&self.driver_dir().join(layout::SHORT_LINKS))?;
        for (i, layer) in chain.iter().enumerate().rev() {
            refuse_reserved(&layer.id)?;
            let dir = self.driver_dir().join(&layer.id);
            durable::create_dir_all(&dir)?;
            for scratch in [layout::WORK, layout::MERGED] {
                own_dir(&dir.join(scratch))?;
            }
            if self.ensure_link(&layer.id, Flush::Now)? {
                changed.insert(layer.id.clone());
            }
            if self.write_lower(layer, &chain[i + 1..])? {
                changed.insert(layer.id.clone());
            }
        }
        if !changed.is_empty() {
            self.refresh_lowers_above(&changed, chain)?;
        }
        Ok(())
    }

    /// The `lower` entries of `layer` over `below` (its chain under it,
    /// parent first): the short links of the directories Go mounts under
    /// the layer's `diff`, topmost first.
    fn lowers(&self, layer: &Layer, below: &[Layer]) -> Result<Vec<String>> {
        let link = |id: &str| -> Result<String> {
            Ok(format!("{}/{}", layout::SHORT_LINKS, self.short_link(id)?))
        };
        let mut out = Vec::new();
        if let Some(base) = self.stacked_on(&layer.id) {
            out.push(link(&base)?);
        }
        for l in below {
            out.push(link(&l.id)?);
            if let Some(base) = self.stacked_on(&l.id) {
                out.push(link(&base)?);
            }
        }
        Ok(out)
    }

    /// Writes `layer`'s `lower` (or, with nothing below it, its `empty`
    /// directory); returns whether `lower` changed.
    fn write_lower(&self, layer: &Layer, below: &[Layer]) -> Result<bool> {
        let dir = self.driver_dir().join(&layer.id);
        if layer.parent.is_empty() {
            own_dir(&dir.join(layout::EMPTY_LOWER))?;
        }
        let lowers = self.lowers(layer, below)?.join(":");
        let path = dir.join(layout::LOWER);
        let now = read_small(&path);
        if lowers.is_empty() {
            if now.is_none() {
                return Ok(false);
            }
            durable::remove_file(&path)?;
            return Ok(true);
        }
        if now.as_deref() == Some(lowers.as_str()) {
            return Ok(false);
        }
        if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
            // Not ours to write through (a directory, a symlink).
            let _ = fs::remove_dir_all(&path);
            let _ = fs::remove_file(&path);
        }
        durable::atomic_write(&path, lowers.as_bytes())?;
        Ok(true)
    }

    /// Rewrites the `lower` of every laid-out layer not in `chain` whose
    /// chain holds one of `changed`. The records are read without their
    /// lock (a caller may hold the mounts lock): a layer recorded since
    /// computes its `lower` from the links as they are now.
    fn refresh_lowers_above(&self, changed: &HashSet<String>, chain: &[Layer]) -> Result<()> {
        let records = self.layer_records.peek()?;
        let done: HashSet<&str> = chain.iter().map(|l| l.id.as_str()).collect();
        for layer in &records {
            if done.contains(layer.id.as_str())
                || !layout::owns_paths(&layer.id)
                || !self.driver_dir().join(&layer.id).is_dir()
            {
                continue;
            }
            let mut below = Vec::new();
            let mut next = layer.parent.as_str();
            while !next.is_empty() {
                let Some(parent) = records.iter().find(|l| l.id == next) else {
                    break;
                };
                if below.len() > records.len() {
                    break;
                }
                below.push(parent.clone());
                next = &parent.parent;
            }
            if !next.is_empty() {
                continue;
            }
            // Only a parentless layer is ever stacked on another's
            // directory: the chain's root.
            let root = below.last().unwrap_or(layer);
            let affected = below.iter().any(|l| changed.contains(&l.id))
                || self
                    .stacked_on(&root.id)
                    .is_some_and(|base| changed.contains(&base));
            if !affected {
                continue;
            }
            // A layer below without its entries is laid out when that
            // chain is next used.
            if below
                .iter()
                .all(|l| self.driver_dir().join(&l.id).is_dir() && self.short_link(&l.id).is_ok())
            {
                self.write_lower(layer, &below)?;
            }
        }
        Ok(())
    }

    /// Removes a layer's content directory (overlay `diff`, with what
    /// says it is a delta, or the vfs tree) and keeps its other entries:
    /// a pool-backed layer's content changed, the next mount (or, under
    /// `materialize = "always"`, the caller) builds it again. A directory
    /// deltas are stacked on stays until `gc` finds none.
    pub(crate) fn drop_content_dir(&self, id: &str) -> Result<()> {
        if !layout::owns_paths(id) || !self.stacked_above(id).is_empty() {
            return Ok(());
        }
        let dir = self.layer_content_dir(id);
        if fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            durable::remove_dir_aside(&dir)?;
        } else if fs::symlink_metadata(&dir).is_ok() {
            durable::remove_file(&dir)?;
        }
        if self.options.driver == "overlay" {
            durable::remove_file(&self.base_file(id))?;
        }
        Ok(())
    }

    /// `<drv>-layers/<id>.tar-split.gz`.
    pub(crate) fn tar_split_path(&self, id: &str) -> std::path::PathBuf {
        layout::tar_split_path(self.layers_dir(), id)
    }

    /// Removes a layer's tar-split, if any (best effort: `gc` removes
    /// what is left).
    pub(crate) fn remove_tar_split(&self, id: &str) {
        if layout::owns_paths(id) {
            let _ = fs::remove_file(self.tar_split_path(id));
        }
    }
}

/// A small file's content (`link`, `lower`), not following a symlink;
/// `None` when it is missing or not a regular file.
fn read_small(path: &Path) -> Option<String> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        return None;
    }
    fs::read_to_string(path).ok()
}
