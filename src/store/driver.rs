//! The drivers' directories, built on demand from the pool.
//!
//! - overlay: `<graphroot>/overlay/<id>/diff` (a sealed layer in overlay
//!   format, or a live layer's upper directory), `work`, `merged`, `link`
//!   (the short name) and `<graphroot>/overlay/l/<short>` -> `../<id>/diff`,
//!   as upstream lays them out; `diff1` below `diff` for a layer that maps
//!   IDs otherwise than its parent (the layers below with its owners).
//! - vfs: `<graphroot>/vfs/dir/<id>`, the flattened tree of the layer's
//!   whole chain.
//!
//! A mapped layer's directories hold host IDs: the manifests are shifted
//! by its map before they are built (`id_maps`).
//!
//! Directories of sealed layers are caches: they can be removed and are
//! rebuilt from the manifests on the next mount.
//!
//! A read-only image store's layer (`store/ro_stores.rs`) is used where
//! its store has its directory ([`Store::ro_in_place`]); else, pool-backed,
//! it is built from that store's manifest and pool into this store's
//! driver directory under its ID, as a cache. Nothing is ever made in a
//! read-only store.
//!
//! Every entry here is ours, and none is followed when it is not what the
//! layout puts there (a directory swapped for a symlink to elsewhere): a
//! sealed layer's is removed and built again, a live layer whose content
//! directory was replaced is refused (its content is gone), and
//! [`Store::misplaced_entries`] lists them for `check`. A layer whose ID
//! is one of the layout's own names (see `layout`) gets no directory.

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::layers::Layer;
use super::layout;
use super::records::Locked;
use super::root_view::RootView;
use super::MountPoint;
use super::Store;
use crate::durable::{self, Flush};
use crate::error::{Error, IoContext, Op, Result};
use crate::materialize::{BuildOptions, Format, Materializer};

/// The alphabet of upstream's short link names.
const SHORT_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

impl Store {
    /// `<graphroot>/<driver>`.
    pub(crate) fn driver_dir(&self) -> PathBuf {
        layout::driver_dir(self.graph_root(), &self.options.driver)
    }

    /// The directory that holds a layer's content for the driver.
    pub(crate) fn layer_content_dir(&self, id: &str) -> PathBuf {
        layout::content_dir(self.graph_root(), &self.options.driver, id)
    }

    /// A live layer's content directory, for reading or writing its
    /// content: refused when the layer's ID is one of the layout's names,
    /// or when the directory (or, for overlay, `overlay/<id>`) has been
    /// replaced by a symlink or something else that is not a directory:
    /// what it leads to is not the layer's content (`check` reports it).
    pub(crate) fn live_content_dir(&self, id: &str) -> Result<PathBuf> {
        refuse_reserved(id)?;
        for path in self.layer_dirs(id) {
            if let Some(what) = not_a_directory(&path) {
                return Err(content_gone(id, &path, what));
            }
        }
        Ok(self.layer_content_dir(id))
    }

    /// Whether the layer's directories are there and are directories of
    /// their own: never a symlink, whose target is none of the store's.
    pub(crate) fn is_materialized(&self, id: &str) -> bool {
        self.layer_dirs(id)
            .iter()
            .all(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
    }

    /// The layer's driver entries that are not what the layout puts
    /// there: a directory replaced by a symlink (or a file), a `link`
    /// file that is a symlink, a short link that points anywhere but to
    /// the layer's `diff`. Nothing is followed.
    pub(crate) fn misplaced_entries(&self, id: &str) -> Vec<Misplaced> {
        let mut out = Vec::new();
        let dirs = self.layer_dirs(id);
        for path in &dirs {
            if let Some(what) = not_a_directory(path) {
                out.push(Misplaced::new(path, what, true));
                // Nothing below it is the layer's.
                return out;
            }
        }
        if self.options.driver != "overlay" {
            return out;
        }
        let dir = &dirs[0];
        for scratch in [layout::WORK, layout::MERGED] {
            let path = dir.join(scratch);
            if let Some(what) = not_a_directory(&path) {
                out.push(Misplaced::new(&path, what, false));
            }
        }
        let link_file = dir.join(layout::LINK);
        if fs::symlink_metadata(&link_file).is_ok_and(|m| !m.is_file()) {
            out.push(Misplaced::new(&link_file, "not a regular file", false));
        } else if let Ok(short) = self.short_link(id) {
            let link = self.driver_dir().join(layout::SHORT_LINKS).join(short);
            let target = short_link_target(id);
            match fs::read_link(&link) {
                Ok(t) if t == Path::new(&target) => {}
                Ok(_) => out.push(Misplaced::new(&link, "a symlink", false)),
                Err(_) if fs::symlink_metadata(&link).is_ok() => {
                    out.push(Misplaced::new(&link, "not a symlink", false))
                }
                // Missing: the next mount makes it again.
                Err(_) => {}
            }
        }
        out
    }

    /// Entries of `overlay/l/` that are not a short link to a layer's
    /// `diff` in the driver directory (`../<id>/diff`): a mount reaches
    /// lower directories through them.
    pub(crate) fn foreign_short_links(&self) -> Vec<Misplaced> {
        if self.options.driver != "overlay" {
            return Vec::new();
        }
        let dir = self.driver_dir().join(layout::SHORT_LINKS);
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match fs::read_link(&path) {
                Ok(target) => {
                    let parts: Vec<_> = target.components().collect();
                    let inside = matches!(
                        parts.as_slice(),
                        [std::path::Component::ParentDir, std::path::Component::Normal(_), std::path::Component::Normal(d)]
                            if *d == layout::DIFF
                    );
                    if !inside {
                        out.push(Misplaced::new(&path, "a symlink", false));
                    }
                }
                Err(_) => out.push(Misplaced::new(&path, "not a symlink", false)),
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// The directories that lead to a layer's content, outermost first:
    /// `overlay/<id>` and `overlay/<id>/diff`, or `vfs/dir/<id>`.
    pub(crate) fn layer_dirs(&self, id: &str) -> Vec<PathBuf> {
        let content = self.layer_content_dir(id);
        match self.options.driver.as_str() {
            "vfs" => vec![content],
            _ => vec![self.driver_dir().join(id), content],
        }
    }

    /// Where a read-only store's layer is used in place: its driver
    /// directory in its own store (`overlay/<id>/diff`, `vfs/dir/<id>`),
    /// when that is there and a directory of its own (and, for overlay,
    /// not a delta, which shows its layer only over its base). `None` for
    /// the writable store's layers, and for a pool-backed layer of a
    /// read-only store whose directory was never built there: that one is
    /// built from its manifest in this store's driver directory
    /// ([`Store::layer_content_dir`]), never in the read-only store.
    pub(crate) fn ro_in_place(&self, layer: &Layer) -> Option<PathBuf> {
        let root = layer.read_only_store.as_ref()?;
        if !layout::owns_paths(&layer.id) {
            return None;
        }
        let driver = &self.options.driver;
        let dir = layout::content_dir(root, driver, &layer.id);
        if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return None;
        }
        if driver == "overlay" {
            let layer_dir = layout::driver_dir(root, driver).join(&layer.id);
            if !fs::symlink_metadata(&layer_dir).is_ok_and(|m| m.is_dir())
                || fs::symlink_metadata(layer_dir.join(layout::BASE)).is_ok()
            {
                return None;
            }
        }
        Some(dir)
    }

    /// The directory that holds a layer's content as mounts and diffs
    /// read it: a read-only store's layer's in place when it is there,
    /// else this store's driver directory for the layer.
    pub(crate) fn content_dir_of(&self, layer: &Layer) -> PathBuf {
        self.ro_in_place(layer)
            .unwrap_or_else(|| self.layer_content_dir(&layer.id))
    }

    /// The pool that holds a layer's chunks: its read-only store's for
    /// one of those (read in place), else this store's.
    pub(crate) fn pool_of(&self, layer: &Layer) -> Result<&crate::chunks::ChunkPool> {
        let Some(root) = &layer.read_only_store else {
            return Ok(&self.pool);
        };
        self.ro_store(root)
            .and_then(|ro| ro.pool.as_ref())
            .ok_or_else(|| Error::ContentGone {
                layer: layer.id.clone(),
                path: layout::pool_dir(root),
                what: "missing",
            })
    }

    /// The materializer for a layer's manifest: over the pool that holds
    /// its chunks, with this store's object cache (a read-only store's is
    /// never written).
    pub(crate) fn materializer_for(&self, layer: &Layer) -> Result<Materializer<'_>> {
        Materializer::new(
            self.pool_of(layer)?,
            &layout::objects_dir(self.graph_root()),
        )
    }

    /// Makes sure a read-only store's layer has a directory to mount:
    /// its own in place, else one built in this store's driver directory
    /// from its manifest (and read-only store's pool), with the short
    /// link `lower` files of this store's layers list it by. `lowers` is
    /// the chain below it, top first.
    fn prepare_ro_overlay(&self, layer: &Layer, lowers: &[Layer]) -> Result<()> {
        if self.ro_in_place(layer).is_some() {
            return Ok(());
        }
        refuse_reserved(&layer.id)?;
        let dir = self.driver_dir().join(&layer.id);
        let diff = dir.join(layout::DIFF);
        for path in [&dir, &diff] {
            if not_a_directory(path).is_some() {
                fs::remove_file(path).at(Op::Remove, path)?;
            }
        }
        if !diff.is_dir() {
            if !layer.sealed {
                let root = layer
                    .read_only_store
                    .as_deref()
                    .unwrap_or(self.graph_root());
                let path = layout::content_dir(root, &self.options.driver, &layer.id);
                return Err(content_gone(&layer.id, &path, "missing"));
            }
            let m = self.layer_manifest(layer)?;
            let views = self.chain_views(lowers)?;
            let views: Vec<_> = views.iter().collect();
            durable::create_dir_all(&dir)?;
            let options = BuildOptions {
                format: self.overlay_format(),
                hardlinks: false,
                durable: true,
            };
            self.materializer_for(layer)?
                .build_overlay(&m, &views, &diff, options)
                .map_err(|e| e.for_layer(&layer.id))?;
        }
        self.ensure_link(&layer.id, Flush::Now)?;
        Ok(())
    }

    /// The `l/<short>` entries by which `lower` files list the read-only
    /// stores' layers of `chain` (top first): a layer used in place by its
    /// own store's short link (which Go clients find through the
    /// additional store), one built here by this store's.
    pub(crate) fn ro_link_entries(&self, chain: &[Layer]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for layer in chain {
            let short = match (&layer.read_only_store, self.ro_in_place(layer)) {
                (Some(root), Some(_)) => {
                    let path = layout::driver_dir(root, &self.options.driver)
                        .join(&layer.id)
                        .join(layout::LINK);
                    match fs::read_to_string(&path) {
                        Ok(short) if is_short_name(short.trim()) => short.trim().to_string(),
                        _ => continue,
                    }
                }
                _ => {
                    refuse_reserved(&layer.id)?;
                    durable::create_dir_all(&self.driver_dir().join(&layer.id))?;
                    self.ensure_link(&layer.id, Flush::Now)?;
                    self.short_link(&layer.id)?
                }
            };
            out.push(format!("{}/{short}", layout::SHORT_LINKS));
        }
        Ok(out)
    }

    /// The layer's chain, top first, as records (a read-only store's
    /// layers among them, below this store's).
    pub(crate) fn chain(&self, top: &str) -> Result<Vec<Layer>> {
        let layers = self.all_layers()?;
        let mut chain = Vec::new();
        let mut next = top.to_string();
        while !next.is_empty() {
            if chain.iter().any(|l: &Layer| l.id == next) {
                return Err(Error::Cycle(top.to_string()));
            }
            let layer = layers
                .iter()
                .find(|l| l.id == next)
                .ok_or_else(|| super::Kind::Layer.not_known(&next))?
                .clone();
            next = layer.parent.clone();
            chain.push(layer);
        }
        Ok(chain)
    }

    pub(super) fn materializer(&self) -> Result<Materializer<'_>> {
        Materializer::new(&self.pool, &layout::objects_dir(self.graph_root()))
    }

    /// The manifests of `layers` (pool-backed ones, a chain top first),
    /// lowest first.
    pub(super) fn manifests_lowest_first(
        &self,
        layers: &[Layer],
    ) -> Result<Vec<crate::manifest::LayerManifest>> {
        layers
            .iter()
            .rev()
            .map(|l| self.layer_manifest(l))
            .collect()
    }

    /// Whether writes into `layer` are refused by contract, so its
    /// directory may share inodes with `objects/` (hardlinks): it has
    /// children, is an image's top layer, was made `--readonly`, or the
    /// store is read-only. Any other layer may be mounted writable.
    pub(crate) fn read_only_by_contract(&self, layer: &Layer) -> Result<bool> {
        Ok(layer.read_only
            || !self.writable
            || self.layers()?.iter().any(|l| l.parent == layer.id)
            || self
                .images()?
                .iter()
                .any(|i| i.top_layer == layer.id || i.mapped_layers.contains(&layer.id)))
    }

    /// Makes sure the overlay directories of every layer in `chain` (top
    /// first) exist; a sealed layer's `diff` is materialized if missing,
    /// a live top layer gets empty `diff` and `work` directories.
    pub(crate) fn prepare_overlay(&self, chain: &[Layer]) -> Result<()> {
        self.prepare_overlay_with(chain, true)
    }

    /// [`Store::prepare_overlay`]; with `stack` false no layer is built as
    /// a delta, which needs no record lock (for callers that hold the
    /// mounts lock: records may only be read before it).
    pub(crate) fn prepare_overlay_with(&self, chain: &[Layer], stack: bool) -> Result<()> {
        own_dir(&self.driver_dir().join(layout::SHORT_LINKS))?;
        // Lower layers are read-only by contract (they have a child); the
        // top only when the records say so (not looked at under the
        // mounts lock: without hardlinks is always safe).
        let top_read_only = match (chain.first(), stack) {
            (Some(top), true) => self.read_only_by_contract(top)?,
            _ => false,
        };
        // Layers given a new short name: `lower` files list the old one.
        let mut renamed = std::collections::HashSet::new();
        for (i, layer) in chain.iter().enumerate() {
            if layer.read_only_store.is_some() {
                self.prepare_ro_overlay(layer, &chain[i + 1..])?;
                continue;
            }
            refuse_reserved(&layer.id)?;
            let dir = self.driver_dir().join(&layer.id);
            let diff = dir.join(layout::DIFF);
            // Never mount or build through what is not our directory: a
            // sealed layer's is a cache, removed here and built again; a
            // live layer's content is gone.
            let live = !layer.sealed;
            for path in [&dir, &diff] {
                if let Some(what) = not_a_directory(path) {
                    if live {
                        return Err(content_gone(&layer.id, path, what));
                    }
                    fs::remove_file(path).at(Op::Remove, path)?;
                }
            }
            for scratch in [layout::WORK, layout::MERGED] {
                let path = dir.join(scratch);
                if not_a_directory(&path).is_some() {
                    fs::remove_file(&path).at(Op::Remove, &path)?;
                }
            }
            if fs::symlink_metadata(self.base_file(&layer.id)).is_ok() && diff.is_dir() {
                // A delta whose base directory went away (or is not a
                // directory of its own, or is not named right) is rebuilt.
                let base = self.stacked_on(&layer.id);
                if !base.is_some_and(|b| self.is_materialized(&b)) {
                    // The next mount builds it again.
                    durable::remove_dir_aside(&diff)?;
                }
            }
            // A build's marker covers what is written for its layer (the
            // directory, `base`, `link`) until a settle makes it durable.
            let mut unsynced = None;
            // A mapped layer's files have host IDs: built whole, never as
            // a delta over another's (unshifted) directory.
            let mapping = layer.id_mapping();
            let stack_this = stack && mapping.is_identity();
            if !diff.is_dir() {
                if layer.sealed {
                    let hardlinks = i > 0 || top_read_only;
                    unsynced =
                        self.build_sealed_diff(&chain[i..], hardlinks, stack_this, &mut renamed)?;
                } else {
                    // A directory-backed layer never written: empty.
                    durable::create_tree_root(&diff, Flush::Now)?;
                    super::id_maps::own_root(&diff, mapping)?;
                    self.forget_emptied(&layer.id);
                }
            }
            if let Some(parent) = chain.get(i + 1) {
                if !layer.maps_as(parent) {
                    self.build_mapped_below(&chain[i..], flush_for(&unsynced))?;
                }
            }
            let flush = flush_for(&unsynced);
            durable::create_dir_all_flushed(&dir.join(layout::WORK), flush)?;
            durable::create_dir_all_flushed(&dir.join(layout::MERGED), flush)?;
            if self.ensure_link(&layer.id, flush)? {
                renamed.insert(layer.id.clone());
            }
            if let Some(base) = self.stacked_on(&layer.id) {
                // Mounts reach the base's directory by its short link.
                if self.ensure_link(&base, Flush::Now)? {
                    renamed.insert(base);
                }
            }
            drop(unsynced);
        }
        // What Go clients read to mount the chain: `lower` files (a
        // directory built as a delta, or in full again, changes them).
        self.lay_out_overlay(chain, renamed)
    }

    /// Builds the `diff` of `chain[0]`, a pool-backed layer (`chain` top
    /// first), from its manifest (with hardlinks if `hardlinks`), or as a
    /// delta over a similar layer's directory if `stack` lets it; returns
    /// the build's marker (see `unsynced`). Layers given a new short name
    /// are added to `renamed`.
    fn build_sealed_diff(
        &self,
        chain: &[Layer],
        hardlinks: bool,
        stack_this: bool,
        renamed: &mut std::collections::HashSet<String>,
    ) -> Result<Option<super::unsynced::Unsynced>> {
        let layer = &chain[0];
        let dir = self.driver_dir().join(&layer.id);
        let diff = dir.join(layout::DIFF);
        let mapping = layer.id_mapping();
        // The layer's manifest and those of the layers it could
        // be stacked on are read at the same time.
        let (m, candidates) = rayon::join(
            || self.layer_manifest(layer),
            || match stack_this {
                true => self.base_candidates(layer),
                false => Ok(Vec::new()),
            },
        );
        let m = mapping.shift_manifest(&m?, &layer.id)?;
        let lowers = self.chain_views(&chain[1..])?;
        let lowers = lowers
            .iter()
            .map(|l| mapping.shift_manifest(l, &layer.id))
            .collect::<Result<Vec<_>>>()?;
        let lowers: Vec<_> = lowers.iter().collect();
        // Not durable when built: the marker covers it.
        let unsynced = self.begin_unsynced(&layer.id)?;
        let flush = flush_for(&unsynced);
        let options = BuildOptions {
            format: self.overlay_format(),
            hardlinks,
            durable: flush == Flush::Now,
        };
        durable::remove_file(&self.base_file(&layer.id))?;
        // Hardlinks from `objects/` into `diff` must not cross
        // Go's bind mount of the driver's home.
        let linker = Linker {
            store: self,
            view: self.root_view(),
        };
        if let Some(base) = super::stacking::pick_base(&m, candidates?) {
            if self.ensure_link(&base.id, Flush::Now)? {
                renamed.insert(base.id.clone());
            }
            durable::create_dir_all_flushed(&dir, flush)?;
            let base_file = self.base_file(&layer.id);
            durable::atomic_write_flushed(&base_file, base.id.as_bytes(), flush)?;
            linker
                .materializer()?
                .build_overlay(
                    &base.delta,
                    &[&base.manifest],
                    &linker.view.path(&diff),
                    options,
                )
                .map_err(|e| e.for_layer(&layer.id))?;
        } else {
            linker
                .materializer()?
                .build_overlay(&m, &lowers, &linker.view.path(&diff), options)
                .map_err(|e| e.for_layer(&layer.id))?;
        }
        super::id_maps::own_root(&diff, mapping)?;
        Ok(unsynced)
    }

    /// Builds `overlay/<id>/diff1` of `chain`'s top layer (top first)
    /// when missing: the tree the layers below it show, flattened, with
    /// the top layer's owners. The layer maps IDs otherwise than its
    /// parent, so their directories show the wrong owners; this one,
    /// right below the layer's `diff` (Go's overlay driver mounts
    /// `diff1` there too, as its `UpdateLayerIDMap` leaves it), hides
    /// them. A cache of the pool, as `diff` is: the layers below must be
    /// pool-backed.
    pub(crate) fn build_mapped_below(&self, chain: &[Layer], flush: Flush) -> Result<()> {
        let top = &chain[0];
        let target = self.driver_dir().join(&top.id).join(layout::MAPPED_BELOW);
        if target.is_dir() {
            return Ok(());
        }
        if not_a_directory(&target).is_some() {
            fs::remove_file(&target).at(Op::Remove, &target)?;
        }
        let below = &chain[1..];
        let mapping = top.id_mapping();
        // (Layers of read-only stores come from their own pools.)
        if below
            .iter()
            .any(|l| !l.sealed || l.read_only_store.is_some())
        {
            return self.build_mapped_below_live(top, below, &target);
        }
        let manifests = self
            .manifests_lowest_first(below)?
            .iter()
            .map(|m| mapping.shift_manifest(m, &top.id))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<_> = manifests.iter().collect();
        // Below the layer's `diff`: never written, hardlinks allowed
        // (their objects carry the shifted owners: never the unshifted
        // objects other trees share).
        let options = BuildOptions {
            format: Format::Flattened,
            hardlinks: true,
            durable: flush == Flush::Now,
        };
        self.materializer()?
            .build(&refs, &target, options)
            .map_err(|e| name_needing_layer(e, below, &manifests))?;
        super::id_maps::own_root(&target, mapping)
    }

    /// [`Store::build_mapped_below`] over directory-backed layers or a
    /// read-only store's: the tree is made with the container's IDs,
    /// lowest layer first (a pool-backed layer's manifest applied from
    /// its own store's pool, a directory-backed one's
    /// upper directory copied with its whiteouts and opaque directories
    /// taking effect and its owners back to its container IDs), then every
    /// owner goes to `top`'s host IDs. Never hardlinks: owners change
    /// after the files are written.
    fn build_mapped_below_live(&self, top: &Layer, below: &[Layer], target: &Path) -> Result<()> {
        let tmp = durable::temp_sibling(target);
        let options = BuildOptions {
            format: Format::Flattened,
            hardlinks: false,
            durable: true,
        };
        let result = (|| {
            durable::create_tree_root(&tmp, Flush::Later)?;
            for layer in below.iter().rev() {
                if layer.sealed {
                    let m = self.layer_manifest(layer)?;
                    self.materializer_for(layer)?
                        .apply_onto(&m, &tmp, options)
                        .map_err(|e| e.for_layer(&layer.id))?;
                } else {
                    apply_upper_onto(&self.live_dir_of(layer)?, layer, &tmp)?;
                }
            }
            let mapping = top.id_mapping();
            super::id_maps::remap_tree(&tmp, Default::default(), mapping)?;
            super::id_maps::own_root(&tmp, mapping)?;
            let f = fs::File::open(&tmp).at(Op::Open, &tmp)?;
            nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)).at(Op::Syncfs, &tmp)?;
            fs::rename(&tmp, target).at(Op::Rename, target)?;
            durable::fsync_dir(target.parent().expect("a layer directory has a parent"))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Gives a layer's overlay directory its short link (`link` and
    /// `l/<short>` -> `../<id>/diff`) if it has none, and puts back a
    /// short link that is missing or points anywhere else. Returns
    /// whether the layer got a new short name (the `lower` files that
    /// list the old one are out of date).
    pub(crate) fn ensure_link(&self, id: &str, flush: Flush) -> Result<bool> {
        let target = short_link_target(id);
        if let Ok(short) = self.short_link(id) {
            let link = self.driver_dir().join(layout::SHORT_LINKS).join(&short);
            if fs::read_link(&link).is_ok_and(|t| t == Path::new(&target)) {
                return Ok(false);
            }
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link).at(Op::Symlink, &link)?;
            return Ok(false);
        }
        let link_file = self.driver_dir().join(id).join(layout::LINK);
        let short = short_name();
        let link = self.driver_dir().join(layout::SHORT_LINKS).join(&short);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).at(Op::Symlink, &link)?;
        durable::atomic_write_flushed(&link_file, short.as_bytes(), flush)?;
        Ok(true)
    }

    /// The overlay format this process writes: `trusted.overlay.*`
    /// attributes as root, `user.overlay.*` (which the kernel reads with
    /// the `userxattr` mount option) when rootless.
    pub(crate) fn overlay_format(&self) -> Format {
        Format::Overlay {
            xattr_prefix: if super::rootless::is_rootless() {
                "user.overlay."
            } else {
                "trusted.overlay."
            },
        }
    }

    /// Removes a deleted layer's driver directories (and its short link).
    /// A directory that deltas are stacked on stays until `gc` finds
    /// nothing stacked on it.
    pub(crate) fn remove_driver_dirs(&self, id: &str) {
        if !layout::owns_paths(id) {
            // A record from before the name was reserved: the layout's
            // entry of that name is not its directory.
            return;
        }
        if self.options.driver == "overlay" {
            if !self.stacked_above(id).is_empty() {
                return;
            }
            if let Ok(short) = self.short_link(id) {
                let link = self.driver_dir().join(layout::SHORT_LINKS).join(short);
                // Only our own link (one that points elsewhere is another
                // layer's or none of ours).
                if fs::read_link(&link).is_ok_and(|t| t == Path::new(&short_link_target(id))) {
                    let _ = fs::remove_file(link);
                }
            }
            let _ = durable::remove_tree(&self.driver_dir().join(id));
        } else {
            let _ = durable::remove_tree(&self.layer_content_dir(id));
        }
    }

    /// Unmounts whichever of `ids` is mounted, whatever its count, as
    /// upstream's deletes do (their records go first, as `unmount`
    /// saves before it unmounts). On success the mounts lock stays held
    /// (until the guard is dropped), so no mount of them can start
    /// before the caller has saved their removal: `mount` looks for the
    /// layer's record under that lock.
    pub(crate) fn lock_unmounted(&self, ids: &[String]) -> Result<Locked<'_, MountPoint>> {
        let mut mounts = self.mount_records.lock()?;
        let mounted: Vec<String> = mounts
            .records
            .iter()
            .filter(|m| ids.contains(&m.id))
            .map(|m| m.id.clone())
            .collect();
        if mounted.is_empty() {
            return Ok(mounts);
        }
        mounts.records.retain(|m| !ids.contains(&m.id));
        self.write(|| mounts.save())?;
        if self.options.driver == "overlay" {
            for id in &mounted {
                let merged = self.driver_dir().join(id).join(layout::MERGED);
                super::host_mounts::unmount_path(&merged)?;
            }
        }
        Ok(mounts)
    }

    /// The short link name of a layer (`<graphroot>/overlay/<id>/link`,
    /// which must be a regular file).
    pub(crate) fn short_link(&self, id: &str) -> Result<String> {
        let path = self.driver_dir().join(id).join(layout::LINK);
        let mut short = String::new();
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|mut f| f.read_to_string(&mut short))
            .at(Op::Read, &path)?;
        if short.is_empty() || !short.bytes().all(|b| SHORT_ALPHABET.contains(&b)) {
            return Err(Error::Corrupt {
                path,
                what: "not a short link name".into(),
            });
        }
        Ok(short)
    }

    /// Makes sure the vfs tree of the chain's top layer exists: the
    /// flattened chain, its files reflinked from objects (or copied where
    /// the filesystem cannot reflink). Above a directory-backed layer,
    /// the tree starts as a copy of that layer's tree (as upstream's vfs
    /// `Create` copies its parent's), with the pool-backed layers between
    /// applied onto it.
    pub(crate) fn prepare_vfs(&self, chain: &[Layer]) -> Result<PathBuf> {
        let dir = self.prepare_vfs_tree(chain)?;
        if !chain[0].sealed && chain[0].read_only_store.is_none() {
            // Its directory is there (again): not an emptied layer.
            self.forget_emptied(&chain[0].id);
        }
        Ok(dir)
    }

    fn prepare_vfs_tree(&self, chain: &[Layer]) -> Result<PathBuf> {
        let top = &chain[0];
        refuse_reserved(&top.id)?;
        if let Some(dir) = self.ro_in_place(top) {
            return Ok(dir);
        }
        let dir = self.layer_content_dir(&top.id);
        if top.read_only_store.is_some() && !top.sealed && !dir.is_dir() {
            // A read-only store's directory-backed layer whose tree is
            // not there: nothing to build it from.
            let root = top.read_only_store.as_deref().unwrap_or(self.graph_root());
            let path = layout::content_dir(root, &self.options.driver, &top.id);
            return Err(content_gone(&top.id, &path, "missing"));
        }
        match not_a_directory(&dir) {
            None if dir.exists() => return Ok(dir),
            None => {}
            // A sealed layer's tree is a cache, built again; a live
            // layer's content is gone.
            Some(what) if !top.sealed => return Err(content_gone(&top.id, &dir, what)),
            Some(_) => fs::remove_file(&dir).at(Op::Remove, &dir)?,
        }
        // A vfs tree is an ordinary directory anyone mounting it may
        // write to: never hardlinks, which would carry writes into the
        // objects other trees share.
        let options = BuildOptions {
            format: Format::Flattened,
            hardlinks: false,
            durable: true,
        };
        // Below a directory-backed layer, or where the chain goes on in a
        // read-only store, the tree starts as a copy of that part's.
        let live_below = chain
            .iter()
            .skip(1)
            .position(|l| !l.sealed || l.read_only_store != top.read_only_store)
            .map(|j| j + 1);
        let sealed_above: Vec<Layer> = chain[..live_below.unwrap_or(chain.len())]
            .iter()
            .filter(|l| l.sealed)
            .cloned()
            .collect();
        // The whole tree shows the top layer's owners: every layer's
        // entries are shifted by its map (see `store/id_maps.rs`).
        let mapping = top.id_mapping();
        let manifests = self
            .manifests_lowest_first(&sealed_above)?
            .iter()
            .map(|m| mapping.shift_manifest(m, &top.id))
            .collect::<Result<Vec<_>>>()?;
        let Some(j) = live_below else {
            let refs: Vec<_> = manifests.iter().collect();
            self.materializer_for(top)?
                .build(&refs, &dir, options)
                .map_err(|e| name_needing_layer(e, &sealed_above, &manifests))?;
            super::id_maps::own_root(&dir, mapping)?;
            return Ok(dir);
        };
        let base = self.prepare_vfs(&chain[j..])?;
        let materializer = self.materializer_for(top)?;
        let tmp = durable::temp_sibling(&dir);
        let result = (|| {
            // The base may be a read-only store's tree: `vfs/dir/` here
            // may not be there yet.
            durable::create_dir_all(dir.parent().expect("a tree has a parent"))?;
            crate::materialize::copy_tree(&base, &tmp)?;
            if !chain[j].maps_as(top) {
                // Upstream's `UpdateLayerIDMap`: from the parent's host
                // IDs to this layer's.
                super::id_maps::remap_tree(&tmp, chain[j].id_mapping(), mapping)?;
            }
            for m in &manifests {
                materializer
                    .apply_onto(m, &tmp, options)
                    .map_err(|e| name_needing_layer(e, &sealed_above, &manifests))?;
            }
            fs::rename(&tmp, &dir).at(Op::Rename, &dir)?;
            durable::fsync_dir(dir.parent().expect("a tree has a parent"))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result.map(|()| dir)
    }
}

/// A materializer whose object cache is reached through `view`, as the
/// directories it builds must be.
struct Linker<'s> {
    store: &'s Store,
    view: RootView,
}

impl<'s> Linker<'s> {
    fn materializer(&self) -> Result<Materializer<'s>> {
        let objects = layout::objects_dir(self.store.graph_root());
        Materializer::new(&self.store.pool, &self.view.path(&objects))
    }
}

/// Applies the overlay upper directory `upper` of `layer` onto the
/// flattened tree `tree` (container IDs): its whiteouts remove what they
/// name, its opaque directories empty theirs, then its entries are copied
/// over (reflinked where the filesystem can), owned by their container
/// IDs under `layer`'s mapping.
fn apply_upper_onto(upper: &Path, layer: &Layer, tree: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !upper.is_dir() {
        return Ok(());
    }
    let entries = crate::materialize::walk_tree(upper)?;
    let remove = |path: &Path| match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).at(Op::Remove, path),
        Ok(_) => fs::remove_file(path).at(Op::Remove, path),
        Err(_) => Ok(()),
    };
    for (rel, meta) in &entries {
        let src = upper.join(std::ffi::OsStr::from_bytes(rel));
        let dst = tree.join(std::ffi::OsStr::from_bytes(rel));
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            remove(&dst)?;
        } else if meta.is_dir() && crate::materialize::marked_opaque(&src) && dst.is_dir() {
            for child in fs::read_dir(&dst).at(Op::ReadDir, &dst)? {
                remove(&child.at(Op::ReadDir, &dst)?.path())?;
            }
        }
    }
    crate::materialize::copy_over(upper, tree)?;
    let mapping = layer.id_mapping();
    for (rel, meta) in &entries {
        let dst = tree.join(std::ffi::OsStr::from_bytes(rel));
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            remove(&dst)?;
            continue;
        }
        if meta.is_dir() {
            for x in ["trusted.overlay.opaque", "user.overlay.opaque"] {
                let _ = xattr_remove(&dst, x);
            }
        }
        if let Ok((uid, gid)) = mapping.to_container(meta.uid(), meta.gid()) {
            if (uid, gid) != (meta.uid(), meta.gid()) {
                std::os::unix::fs::lchown(&dst, Some(uid), Some(gid)).at(Op::Chown, &dst)?;
            }
        }
    }
    Ok(())
}

fn xattr_remove(path: &Path, name: &str) -> nix::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in a path");
    let name = std::ffi::CString::new(name).expect("no NUL in a name");
    crate::sys::lremovexattr(&path, &name)
}

/// A driver entry that is not what the layout puts there.
pub(crate) struct Misplaced {
    /// The entry.
    pub path: PathBuf,
    /// What it is instead, for messages (`a symlink to /x`, ...).
    pub what: String,
    /// Whether it stands where the layer's content should be (the
    /// layer's directory or its content directory).
    pub content: bool,
}

impl Misplaced {
    fn new(path: &Path, what: &str, content: bool) -> Misplaced {
        let what = match fs::read_link(path) {
            Ok(target) => format!("a symlink to {}", target.display()),
            Err(_) => what.to_string(),
        };
        Misplaced {
            path: path.to_path_buf(),
            what,
            content,
        }
    }
}

/// What `path` is when it exists but is not a directory of its own (not
/// following a symlink): `None` for a directory or nothing.
pub(crate) fn not_a_directory(path: &Path) -> Option<&'static str> {
    let meta = fs::symlink_metadata(path).ok()?;
    let t = meta.file_type();
    if t.is_dir() {
        None
    } else if t.is_symlink() {
        Some("a symlink")
    } else {
        Some("not a directory")
    }
}

/// Makes sure `path` is a directory of the driver's own (`l/`, `empty/`,
/// `.used/`): whatever else stands there (a symlink, which would put what
/// is made in it where it points) is removed first.
pub(crate) fn own_dir(path: &Path) -> Result<()> {
    if not_a_directory(path).is_some() {
        fs::remove_file(path).at(Op::Remove, path)?;
    }
    durable::create_dir_all(path)
}

/// The error for a live layer whose content directory was replaced.
fn content_gone(id: &str, path: &Path, what: &'static str) -> Error {
    Error::ContentGone {
        layer: id.to_string(),
        path: path.to_path_buf(),
        what,
    }
}

/// Refuses a layer whose ID is one of the layout's names (a record
/// from before it was reserved): its directories would be the layout's.
pub(crate) fn refuse_reserved(id: &str) -> Result<()> {
    if layout::owns_paths(id) {
        return Ok(());
    }
    Err(Error::ReservedId(id.to_string()))
}

/// What a layer's short link points to: `../<id>/diff`.
pub(crate) fn short_link_target(id: &str) -> String {
    format!("../{id}/diff")
}

/// A missing-chunk error from a build of `chain` (top first; `manifests`
/// lowest first) names the topmost layer that lists the chunk.
fn name_needing_layer(
    e: crate::Error,
    chain: &[Layer],
    manifests: &[crate::manifest::LayerManifest],
) -> crate::Error {
    let crate::Error::MissingChunk {
        layer: None, id, ..
    } = &e
    else {
        return e;
    };
    let lists = |m: &crate::manifest::LayerManifest| {
        m.entries
            .iter()
            .flat_map(|entry| &entry.chunks)
            .any(|c| c.id == *id)
    };
    match chain
        .iter()
        .zip(manifests.iter().rev())
        .find(|(_, m)| lists(m))
    {
        Some((layer, _)) => {
            let layer = layer.id.clone();
            e.for_layer(&layer)
        }
        None => e,
    }
}

/// How soon what is written for a layer must be on disk: later when a
/// marker covers it.
fn flush_for(unsynced: &Option<super::unsynced::Unsynced>) -> Flush {
    match unsynced {
        Some(_) => Flush::Later,
        None => Flush::Now,
    }
}

/// Whether `s` is a short link name (upstream's alphabet).
pub(crate) fn is_short_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| SHORT_ALPHABET.contains(&b))
}

/// A random 26-character short name, as upstream's overlay driver uses.
pub(crate) fn short_name() -> String {
    let mut bytes = [0u8; 26];
    getrandom::getrandom(&mut bytes).expect("the kernel's random source is available");
    bytes
        .iter()
        .map(|b| SHORT_ALPHABET[*b as usize % SHORT_ALPHABET.len()] as char)
        .collect()
}
