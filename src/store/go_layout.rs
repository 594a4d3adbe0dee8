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
//!   first (what Go mounts below the layer's `diff`, and below it the
//!   `diff1` of a layer that maps IDs otherwise than its parent, see
//!   `driver::build_mapped_below`). A delta (see
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::path::Path;

use super::driver::{own_dir, refuse_reserved};
use super::layers::Layer;
use super::layout;
use super::options::Materialize;
use super::Store;
use crate::durable::{self, Flush};
use crate::error::Result;

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
    /// those of the layers below it that lack them. A new layer's `lower`
    /// is its parent's short link and its parent's `lower`, as upstream's
    /// `getLower` makes it; when the parent's entries are not all there,
    /// the whole chain is laid out.
    pub(crate) fn lay_out(&self, chain: &[Layer], content: Content) -> Result<()> {
        let always = self.options.materialize == Materialize::Always;
        let built = if self.options.driver == "vfs" {
            match content {
                Content::Directory => return self.prepare_vfs(chain).map(drop),
                Content::Pool if always => self.prepare_vfs(chain).map(drop),
                Content::Pool => Ok(()),
            }
        } else {
            own_dir(&self.driver_dir().join(layout::SHORT_LINKS))?;
            let mut changed = HashSet::new();
            match chain.get(1).and_then(|parent| self.listed_below(parent)) {
                Some(below) => self.lay_out_from(&chain[..1], below, &mut changed)?,
                None => self.lay_out_from(chain, Vec::new(), &mut changed)?,
            }
            // The top is new: nothing lists it yet. Layers below it that
            // were laid out again may be listed elsewhere.
            changed.remove(&chain[0].id);
            if !changed.is_empty() {
                self.refresh_lowers_above(&changed)?;
            }
            match content {
                Content::Directory => {
                    let diff = self.driver_dir().join(&chain[0].id).join(layout::DIFF);
                    durable::create_tree_root(&diff, Flush::Now)?;
                    super::id_maps::own_root(&diff, chain[0].id_mapping())?;
                    if chain.get(1).is_some_and(|p| !chain[0].maps_as(p)) {
                        self.build_mapped_below(chain, Flush::Now)?;
                    }
                    return Ok(());
                }
                Content::Pool if always => self.prepare_overlay(chain),
                Content::Pool => Ok(()),
            }
        };
        built
    }

    /// The driver entries of `layer` a Go client reads that are missing
    /// (an import or creation cut short between its record and its
    /// layout): overlay's `<id>/`, `link`, `l/<short>`, `work/`, and
    /// `empty/` or `lower`; and, under `materialize =
    /// "always"`, a pool-backed layer's content directory. A
    /// directory-backed layer without its directory has lost its content:
    /// that is not a missing layout.
    pub(crate) fn missing_layout(&self, layer: &Layer) -> Vec<std::path::PathBuf> {
        let always = self.options.materialize == Materialize::Always;
        let content = self.layer_content_dir(&layer.id);
        let missing = |p: &Path| fs::symlink_metadata(p).is_err();
        if self.options.driver != "overlay" {
            return match always && layer.sealed && missing(&content) {
                true => vec![content],
                false => Vec::new(),
            };
        }
        let dir = self.driver_dir().join(&layer.id);
        match (missing(&dir), layer.sealed) {
            (true, true) => return vec![dir],
            // Its content went with it.
            (true, false) => return Vec::new(),
            (false, _) => {}
        }
        // `merged/` is not among them: Go's driver removes it when it
        // unmounts and makes it when it mounts.
        let mut out: Vec<_> = [layout::LINK, layout::WORK]
            .iter()
            .map(|name| dir.join(name))
            .filter(|p| missing(p))
            .collect();
        if let Ok(short) = self.short_link(&layer.id) {
            let link = self.driver_dir().join(layout::SHORT_LINKS).join(short);
            if missing(&link) {
                out.push(link);
            }
        }
        let below = match layer.parent.is_empty() {
            true => layout::EMPTY_LOWER,
            false => layout::LOWER,
        };
        if missing(&dir.join(below)) {
            out.push(dir.join(below));
        }
        if always && layer.sealed && missing(&content) {
            out.push(content);
        }
        out
    }

    /// Makes the entries [`Store::missing_layout`] finds missing for the
    /// layer `id` (and those of the layers below it).
    pub(crate) fn restore_layout(&self, id: &str) -> Result<()> {
        let chain = self.chain(id)?;
        let Some(layer) = chain.first() else {
            return Ok(());
        };
        match (self.options.driver.as_str(), layer.sealed) {
            (_, true) => self.lay_out(&chain, Content::Pool),
            ("overlay", false) => self.lay_out_overlay(&chain, HashSet::new()),
            _ => Ok(()),
        }
    }

    /// Makes sure every layer of `chain` (top first, down to a parentless
    /// layer) has its overlay entries but `diff`: its directory, `work`,
    /// `merged`, its short link, and `empty` or a `lower` that lists what
    /// is below it now. Layers elsewhere whose `lower` lists one of these
    /// whose short name or `lower` changed (or one of `changed`, layers
    /// given a new short name by the caller) get theirs rewritten too.
    pub(crate) fn lay_out_overlay(
        &self,
        chain: &[Layer],
        mut changed: HashSet<String>,
    ) -> Result<()> {
        own_dir(&self.driver_dir().join(layout::SHORT_LINKS))?;
        self.lay_out_from(chain, Vec::new(), &mut changed)?;
        if !changed.is_empty() {
            self.refresh_lowers_above(&changed)?;
        }
        Ok(())
    }

    /// Lays out `layers` (top first), lowest first; `below` is what the
    /// lowest one's `lower` lists under it (its parent's short link and
    /// the parent's own `lower`; nothing for a parentless layer). Adds
    /// to `changed` the layers whose short name or `lower` changed.
    fn lay_out_from(
        &self,
        layers: &[Layer],
        below: Vec<String>,
        changed: &mut HashSet<String>,
    ) -> Result<()> {
        // A read-only store's layers get no entries here but their short
        // links: what is above them lists those.
        let (layers, mut below) = match layers.iter().position(|l| l.read_only_store.is_some()) {
            Some(k) => (&layers[..k], self.ro_link_entries(&layers[k..])?),
            None => (layers, below),
        };
        for layer in layers.iter().rev() {
            refuse_reserved(&layer.id)?;
            let dir = self.driver_dir().join(&layer.id);
            durable::create_dir_all(&dir)?;
            for scratch in [layout::WORK, layout::MERGED] {
                own_dir(&dir.join(scratch))?;
            }
            if self.ensure_link(&layer.id, Flush::Now)? {
                changed.insert(layer.id.clone());
            }
            let mut lowers = Vec::new();
            if let Some(base) = self.stacked_on(&layer.id) {
                lowers.push(self.link_entry(&base)?);
            }
            lowers.extend(below);
            if self.write_lower(layer, &lowers)? {
                changed.insert(layer.id.clone());
            }
            below = lowers;
            below.insert(0, self.link_entry(&layer.id)?);
        }
        Ok(())
    }

    /// `l/<short>` of layer `id`.
    fn link_entry(&self, id: &str) -> Result<String> {
        Ok(format!("{}/{}", layout::SHORT_LINKS, self.short_link(id)?))
    }

    /// What a child of `parent` lists below it, from the parent's entries
    /// as they are (its short link, then its `lower`); `None` when they
    /// are not all there.
    fn listed_below(&self, parent: &Layer) -> Option<Vec<String>> {
        if parent.read_only_store.is_some() {
            return None;
        }
        let dir = self.driver_dir().join(&parent.id);
        if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return None;
        }
        let mut below = vec![self.link_entry(&parent.id).ok()?];
        match read_small(&dir.join(layout::LOWER)) {
            Some(lower) if !lower.is_empty() => below.extend(lower.split(':').map(String::from)),
            // A parentless parent that is no delta has no `lower`.
            None if parent.parent.is_empty() && self.stacked_on(&parent.id).is_none() => {}
            _ => return None,
        }
        Some(below)
    }

    /// Writes `layer`'s `lower` with `lowers` (none: no `lower`), and its
    /// `empty` directory when it is parentless; returns whether `lower`
    /// changed.
    fn write_lower(&self, layer: &Layer, lowers: &[String]) -> Result<bool> {
        let dir = self.driver_dir().join(&layer.id);
        if layer.parent.is_empty() {
            own_dir(&dir.join(layout::EMPTY_LOWER))?;
        }
        let lowers = lowers.join(":");
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

    /// Rewrites the `lower` of every laid-out layer that lists one of
    /// `changed`: their descendants, and the deltas stacked on them (and
    /// theirs), parents before children. The records are read without
    /// their lock (a caller may hold the mounts lock): a layer recorded
    /// since computes its `lower` from the entries as they are now.
    fn refresh_lowers_above(&self, changed: &HashSet<String>) -> Result<()> {
        let records = self.layer_records.peek()?;
        let mut children: HashMap<&str, Vec<&Layer>> = HashMap::new();
        for layer in &records {
            if !layer.parent.is_empty() {
                children
                    .entry(layer.parent.as_str())
                    .or_default()
                    .push(layer);
            }
        }
        let by_id: HashMap<&str, &Layer> = records.iter().map(|l| (l.id.as_str(), l)).collect();
        let mut queue: VecDeque<&Layer> = VecDeque::new();
        for (delta, base) in self.stacking() {
            if changed.contains(&base) {
                if let Some(layer) = by_id.get(delta.as_str()) {
                    queue.push_back(layer);
                }
            }
        }
        for id in changed {
            queue.extend(children.get(id.as_str()).into_iter().flatten());
        }
        let mut seen = HashSet::new();
        while let Some(layer) = queue.pop_front() {
            if !seen.insert(layer.id.as_str()) || seen.len() > records.len() {
                continue;
            }
            queue.extend(children.get(layer.id.as_str()).into_iter().flatten());
            let dir = self.driver_dir().join(&layer.id);
            if !layout::owns_paths(&layer.id) || !dir.is_dir() {
                continue;
            }
            let mut lowers = Vec::new();
            if let Some(base) = self.stacked_on(&layer.id) {
                let Ok(entry) = self.link_entry(&base) else {
                    continue;
                };
                lowers.push(entry);
            }
            if let Some(parent) = by_id.get(layer.parent.as_str()) {
                // A layer below without its entries is laid out when that
                // chain is next used.
                let Some(below) = self.listed_below(parent) else {
                    continue;
                };
                lowers.extend(below);
            }
            self.write_lower(layer, &lowers)?;
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

    /// The tar-split of `layer` where its store keeps it: a read-only
    /// store's layer's (the split image store's too) in that store's
    /// `<drv>-layers/`, else [`Store::tar_split_path`].
    pub(crate) fn tar_split_path_of(&self, layer: &Layer) -> std::path::PathBuf {
        match &layer.read_only_store {
            Some(root) => {
                layout::tar_split_path(&layout::layers_dir(root, &self.options.driver), &layer.id)
            }
            None => self.tar_split_path(&layer.id),
        }
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
