//! `gc`: removes what no record references, in an order that is safe
//! while other processes import, mount and delete:
//!
//! 1. layers flagged incomplete (an upstream import, or one of an earlier
//!    version whose marker is not held, that died); when their records
//!    cannot be rewritten (a full disk), this is tried again after the
//!    last step has freed space;
//! 2. (no step: `gc` never seals a directory-backed layer into the pool,
//!    which would make a layer upstream lets you write read-only and
//!    could change its recorded digest);
//! 3. under the record locks: big-data and run directories no record
//!    names, and temporary files of writers that died;
//! 4. driver directories and short links of layers without a record;
//! 5. eviction of cold materialized directories (under the mounts lock);
//! 6. with no build running: builders' leftover trees, then objects no
//!    materialized layer needs;
//! 7. with no import running: manifests without a record, then chunks no
//!    manifest references; then the same in the split image store's
//!    pool, when it has one (a store of ours used as `--image-store`),
//!    for the layers under it.
//!
//! The pool, manifests and objects are shared by every driver: steps 6
//! and 7 count the layers of every driver's records
//! ([`Store::pool_users`]), never only this store's driver's.
//!
//! Whatever a concurrent writer is still working on is guarded by a lock
//! that step holds exclusively, or is found in a listing taken before the
//! records that would name it were read.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::driver::short_link_target;
use super::evict::{unshared_bytes, Evicted};
use super::layers::Layer;
use super::layout;
use super::lock::ProcessMarker;
use super::pool_users::LayerSet;
use super::{Kind, Store};
use crate::chunks::{ChunkId, SweepReport};
use crate::durable;
use crate::error::{Error, IoContext, Op, Result};
use crate::flock::Flock;
use crate::manifest::LayerManifest;
use crate::materialize::{self, ObjectSweep};

/// Which materialized directories `gc` evicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evict {
    /// As `storage.conf` says (`materialized_evict_after`); never if unset.
    Policy,
    /// Every sealed layer's directory that no mount uses.
    All,
    /// None.
    Never,
    /// Those no mount has used for this long.
    After(Duration),
}

impl std::str::FromStr for Evict {
    type Err = Error;

    /// `policy`, `all`, `never`, or a duration (`12h`, `30m`), as
    /// `gc --evict` takes it.
    fn from_str(text: &str) -> Result<Evict> {
        Ok(match text {
            "policy" => Evict::Policy,
            "all" => Evict::All,
            "never" => Evict::Never,
            other => Evict::After(crate::duration::parse_duration(other)?),
        })
    }
}

/// How `gc` runs.
#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// Report, remove nothing.
    pub dry_run: bool,
    /// Which materialized directories to evict.
    pub evict: Evict,
    /// A pack is rewritten when more than this fraction of its chunk
    /// bytes is garbage (0: any garbage); a pack with no live chunk is
    /// always deleted.
    pub pack_garbage: f64,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            evict: Evict::Policy,
            pack_garbage: 0.0,
        }
    }
}

/// What `gc` removed (or, with `dry_run`, would remove).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// Whether nothing was removed (`--dry-run`).
    pub dry_run: bool,
    /// Layers whose import died.
    pub incomplete_layers: u64,
    /// Container layers whose container is gone.
    pub orphan_layers: u64,
    /// Manifests of layers that have no record.
    pub manifests: u64,
    /// The chunk pool's sweep.
    pub chunks: SweepReport,
    /// The object cache's sweep.
    pub objects: ObjectSweep,
    /// Materialized directories evicted.
    pub evicted: Evicted,
    /// Driver directories and short links of layers without a record.
    pub driver_dirs: u64,
    /// Big-data and run directories of items without a record.
    pub data_dirs: u64,
    /// Temporary files and trees of writers and builders that died.
    pub temporary: u64,
    /// Layers whose driver entries a Go client reads were missing (a
    /// creation or import cut short between its record and its layout),
    /// made again.
    pub layouts_restored: u64,
    /// What could not be done, and why (the rest was).
    pub skipped: Vec<String>,
    /// Bytes freed in all (allocated blocks, or file sizes in the pool).
    pub freed_bytes: u64,
}

impl Store {
    /// Removes what no record references (see the module docs for the
    /// order and why it is safe alongside other processes).
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        self.check_writable()?;
        let dry = options.dry_run;
        let _one_at_a_time = Flock::exclusive(&self.graph_root().join(layout::GC_LOCK))?;
        let mut report = GcReport {
            dry_run: dry,
            ..GcReport::default()
        };
        let incomplete = self.gc_incomplete_layers(dry);
        if !dry {
            self.write(|| self.settle_unsynced(true))?;
        }
        self.write(|| self.gc_record_dirs(&mut report))?;
        self.write(|| self.gc_driver_dirs(&mut report))?;
        if !dry {
            self.write(|| self.gc_layouts(&mut report))?;
        } else {
            report.layouts_restored = self.missing_layouts()?.len() as u64;
        }
        let unused_for = match options.evict {
            Evict::Policy => self.options.evict_after,
            Evict::All => Some(Duration::ZERO),
            Evict::Never => None,
            Evict::After(d) => Some(d),
        };
        if let Some(unused_for) = unused_for {
            report.evicted = self.write(|| self.evict(unused_for, dry))?;
            report.freed_bytes += report.evicted.bytes;
        }
        let mut manifests = HashMap::new();
        self.write(|| self.gc_objects(&mut manifests, &mut report))?;
        self.write(|| self.gc_chunks(&mut manifests, options.pack_garbage, &mut report))?;
        self.write(|| self.gc_image_store_chunks(options.pack_garbage, &mut report))?;
        report.incomplete_layers = match incomplete.or_else(|_| self.gc_incomplete_layers(dry)) {
            Ok(count) => count,
            Err(e) => {
                report.skipped.push(format!("incomplete layers: {e}"));
                0
            }
        };
        Ok(report)
    }

    /// The layers (complete ones) that lack driver entries.
    fn missing_layouts(&self) -> Result<Vec<Layer>> {
        Ok(self
            .layers()?
            .into_iter()
            .filter(|l| !l.is_incomplete() && !self.missing_layout(l).is_empty())
            .collect())
    }

    /// Makes the missing driver entries of every layer that lacks some
    /// (after the driver directories of layers without a record went:
    /// these have one).
    fn gc_layouts(&self, report: &mut GcReport) -> Result<()> {
        for layer in self.missing_layouts()? {
            match self.restore_layout(&layer.id) {
                Ok(()) => report.layouts_restored += 1,
                // Deleted meanwhile.
                Err(Error::NotKnown { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn gc_incomplete_layers(&self, dry: bool) -> Result<u64> {
        if dry {
            return Ok(self.stale_incomplete_layers()?.len() as u64);
        }
        Ok(self.remove_incomplete_layers()? as u64)
    }

    /// The layers mounted now.
    fn mounted_ids(&self) -> Result<HashSet<String>> {
        Ok(self
            .mounts()?
            .into_iter()
            .filter(|m| m.count > 0)
            .map(|m| m.id)
            .collect())
    }

    /// Big-data directories and run directories no record names, and
    /// temporary files in the record directories (all under the record
    /// locks, which their writers hold).
    fn gc_record_dirs(&self, report: &mut GcReport) -> Result<()> {
        let mut tx = self.transaction()?;
        // Container layers whose container is gone (a delete or create
        // that died between its two records; both take these locks, so no
        // live one is half done now).
        let mounted = self.mounted_ids()?;
        let orphans: Vec<String> = tx
            .layers
            .records
            .iter()
            .filter(|l| {
                l.flags.contains_key("container")
                    && !tx.containers.records.iter().any(|c| c.layer == l.id)
                    && !tx.layers.records.iter().any(|child| child.parent == l.id)
                    && !mounted.contains(&l.id)
            })
            .map(|l| l.id.clone())
            .collect();
        report.orphan_layers = orphans.len() as u64;
        if !report.dry_run && !orphans.is_empty() {
            self.mark_deleting(&orphans)?;
            tx.layers.records.retain(|l| !orphans.contains(&l.id));
            tx.layers.save()?;
            for id in &orphans {
                self.remove_layer_files(id);
            }
        }
        // The read-only stores' images too: `get-image-dir` of one of them
        // gives a directory here (the graph root's images, under a split
        // image store, are used from here).
        let ro_images: Vec<String> = self.ro_images()?.into_iter().map(|i| i.id).collect();
        let ids: [(Kind, HashSet<&str>); 3] = [
            (
                Kind::Layer,
                tx.layers.records.iter().map(|l| l.id.as_str()).collect(),
            ),
            (
                Kind::Image,
                tx.images
                    .records
                    .iter()
                    .map(|i| i.id.as_str())
                    .chain(ro_images.iter().map(String::as_str))
                    .collect(),
            ),
            (
                Kind::Container,
                tx.containers
                    .records
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect(),
            ),
        ];
        let mut dirs: Vec<(std::path::PathBuf, &HashSet<&str>)> = Vec::new();
        for (kind, known) in &ids {
            dirs.push((self.records_dir(*kind).to_path_buf(), known));
            // Images' run directories stay, as upstream's `gc` leaves them:
            // the run root is shared by the graph root used with and
            // without a split image store, whose images each sees alone.
            if *kind == Kind::Container {
                let run = self.item_run_dir(*kind, "x");
                let run = run.parent().expect("a run directory has a parent");
                if run != self.records_dir(*kind) {
                    dirs.push((run.to_path_buf(), known));
                }
            }
        }
        for (dir, known) in dirs {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if durable::is_temp_name(&name) {
                    // A live writer's room for the next version of a
                    // record file stays (see `RecordFile::reserve`).
                    if !ProcessMarker::is_held(&path) {
                        report.temporary += 1;
                        report.freed_bytes += remove_tree(&path, report.dry_run);
                    }
                } else if is_id(&name) && path.is_dir() {
                    if known.contains(name.as_str()) {
                        // Temporary files of big-data writes that died.
                        for inner in fs::read_dir(&path).into_iter().flatten().flatten() {
                            if durable::is_temp_name(&inner.file_name().to_string_lossy()) {
                                report.temporary += 1;
                                report.freed_bytes += remove_tree(&inner.path(), report.dry_run);
                            }
                        }
                    } else {
                        report.data_dirs += 1;
                        report.freed_bytes += remove_tree(&path, report.dry_run);
                    }
                }
            }
        }
        Ok(())
    }

    /// Driver directories, short links and use stamps of layers without
    /// a record. The directories are listed before the records are read:
    /// a layer's record always exists before its directories do.
    fn gc_driver_dirs(&self, report: &mut GcReport) -> Result<()> {
        let driver = self.driver_dir();
        let content_parent = layout::layer_dirs_parent(self.graph_root(), &self.options.driver);
        let listed: Vec<String> = list(&content_parent)
            .into_iter()
            .filter(|n| is_id(n))
            .collect();
        let stamps_dir = self.used_stamps_dir();
        let stamps = list(&stamps_dir);
        let links_dir = driver.join(layout::SHORT_LINKS);
        let links = list(&links_dir);
        let layers_dir = self.layers_dir();
        let tar_splits = list(layers_dir);
        // A read-only store's layer may have a directory here, built for
        // its mounts.
        let mut known: HashSet<String> = self.all_layers()?.into_iter().map(|l| l.id).collect();
        let mounted: HashSet<String> = self.mounts()?.into_iter().map(|m| m.id).collect();
        // A deleted layer's directory stays while deltas are stacked on it.
        let bases: Vec<String> = known.iter().filter_map(|id| self.stacked_on(id)).collect();
        known.extend(bases);
        for id in listed {
            if !known.contains(&id) && !mounted.contains(&id) {
                report.driver_dirs += 1;
                report.freed_bytes += remove_tree(&content_parent.join(&id), report.dry_run);
            }
        }
        // Tar-splits of layers without a record (an import or delete that
        // died); listed before the records were read, as above.
        for name in &tar_splits {
            if let Some(id) = layout::tar_split_layer(name) {
                if !known.contains(id) {
                    report.driver_dirs += 1;
                    report.freed_bytes += remove_tree(&layers_dir.join(name), report.dry_run);
                }
            }
        }
        for id in stamps.iter().filter(|id| !known.contains(*id)) {
            remove_tree(&stamps_dir.join(id), report.dry_run);
        }
        for short in links {
            let link = links_dir.join(&short);
            // Only `../<id>/diff` of a known layer's own directory stays:
            // anything else leads nowhere or out of the driver directory.
            let target = fs::read_link(&link).ok();
            let owner = target
                .as_ref()
                .and_then(|t| t.parent())
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            // A pool-backed layer's link stays while its directory is not
            // built (upstream's layout has it from the layer's creation).
            let kept = owner.is_some_and(|id| {
                known.contains(&id)
                    && target.as_deref() == Some(Path::new(&short_link_target(&id)))
                    && fs::symlink_metadata(driver.join(&id)).is_ok_and(|m| m.is_dir())
            });
            if !kept {
                report.driver_dirs += 1;
                remove_tree(&link, report.dry_run);
            }
        }
        Ok(())
    }

    /// With no build running: trees builders left, then objects that no
    /// materialized layer needs.
    fn gc_objects(
        &self,
        manifests: &mut HashMap<String, LayerManifest>,
        report: &mut GcReport,
    ) -> Result<()> {
        // What is wanted is read before the builders' lock is taken (a
        // record lock must never be awaited while holding it). A build
        // that finishes in between only loses cached objects it could
        // have reused: its files are hardlinks (kept by their link count)
        // or reflinks and copies (independent of the object). The object
        // cache is shared: every driver's materialized layers count.
        let mut wanted_layers: HashSet<String> = HashSet::new();
        let sets = self.pool_users()?;
        for set in &sets {
            for layer in &set.layers {
                if !set.is_materialized(&layer.id) {
                    continue;
                }
                if set.flattened() {
                    // A vfs tree holds the whole chain's files.
                    let mut next = Some(layer);
                    let mut steps = 0;
                    while let Some(l) = next {
                        steps += 1;
                        if !wanted_layers.insert(l.id.clone()) || steps > set.layers.len() {
                            break;
                        }
                        next = set.layers.iter().find(|p| p.id == l.parent);
                    }
                } else {
                    wanted_layers.insert(layer.id.clone());
                }
            }
        }
        for set in &sets {
            for layer in set
                .layers
                .iter()
                .filter(|l| l.sealed && wanted_layers.contains(&l.id))
            {
                self.load_manifest(manifests, set, layer)?;
            }
        }
        let wanted = materialize::wanted_objects(
            manifests
                .iter()
                .filter(|(id, _)| wanted_layers.contains(*id))
                .map(|(_, m)| m),
        );
        let objects_dir = layout::objects_dir(self.graph_root());
        let guard = materialize::builders_guard(&objects_dir)?;
        // Trees builders left (only directories: `.tmp-` files beside them
        // are atomic writes in progress, such as a layer's `link`).
        let driver = self.driver_dir();
        let mut parents = vec![
            driver.clone(),
            layout::layer_dirs_parent(self.graph_root(), &self.options.driver),
        ];
        parents.extend(
            list(&driver)
                .iter()
                .filter(|n| is_id(n))
                .map(|n| driver.join(n)),
        );
        for parent in parents {
            for name in list(&parent).iter().filter(|n| durable::is_temp_name(n)) {
                let path = parent.join(name);
                if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    report.temporary += 1;
                    report.freed_bytes += remove_tree(&path, report.dry_run);
                }
            }
        }
        report.objects = materialize::sweep_objects(&guard, &objects_dir, &wanted, report.dry_run)?;
        report.freed_bytes += report.objects.bytes;
        Ok(())
    }

    /// With no import running: manifests without a record, then chunks
    /// that no manifest references. Records of every driver count: the
    /// manifests and the pool are shared.
    fn gc_chunks(
        &self,
        manifests: &mut HashMap<String, LayerManifest>,
        pack_garbage: f64,
        report: &mut GcReport,
    ) -> Result<()> {
        let users = || self.pool_users();
        let pool = (self.pool(), self.graph_root());
        self.sweep_unreferenced(pool, users, manifests, pack_garbage, report)
    }

    /// [`Store::gc_chunks`] for the split image store's pool, when it has
    /// one (a store of ours used as `DIR`): the manifests there that no
    /// layer under `DIR` lists (a layer deleted or made directory-backed
    /// through this store), then the chunks no manifest there references,
    /// under that pool's sweep guard, which the imports of a process
    /// using `DIR` as its own graph root hold as this store's do.
    fn gc_image_store_chunks(&self, pack_garbage: f64, report: &mut GcReport) -> Result<()> {
        let Some((_, root)) = self.image_store_layers() else {
            return Ok(());
        };
        let pool_dir = layout::pool_dir(root);
        if !pool_dir.is_dir() {
            return Ok(());
        }
        let pool = crate::chunks::ChunkPool::open(&pool_dir, true)?;
        let users = || self.image_store_pool_users(root);
        let mut manifests = HashMap::new();
        self.sweep_unreferenced((&pool, root), users, &mut manifests, pack_garbage, report)
    }

    /// Under `pool`'s sweep guard: removes the manifests under its store's
    /// `root` that no layer of `users` (read under the guard) lists, then
    /// the chunks of `pool` no remaining manifest references.
    fn sweep_unreferenced(
        &self,
        (pool, root): (&crate::chunks::ChunkPool, &Path),
        users: impl FnOnce() -> Result<Vec<LayerSet>>,
        manifests: &mut HashMap<String, LayerManifest>,
        pack_garbage: f64,
        report: &mut GcReport,
    ) -> Result<()> {
        let guard = pool.sweep_guard()?;
        let dir = layout::manifests_dir(root);
        let files = list(&dir);
        // Read under the sweep guard: no import of any driver is between
        // publishing its manifest and its record.
        let sets = users()?;
        let known: HashSet<&str> = sets
            .iter()
            .flat_map(|s| s.layers.iter().map(|l| l.id.as_str()))
            .collect();
        for name in &files {
            if durable::is_temp_name(name) {
                report.temporary += 1;
                report.freed_bytes += remove_tree(&dir.join(name), report.dry_run);
            } else if !known.contains(name.as_str()) {
                report.manifests += 1;
                report.freed_bytes += remove_tree(&dir.join(name), report.dry_run);
            }
        }
        let mut live: HashSet<ChunkId> = HashSet::new();
        for set in &sets {
            for layer in &set.layers {
                if !dir.join(&layer.id).exists() {
                    continue;
                }
                if let Some(m) = self.load_manifest(manifests, set, layer)? {
                    live.extend(m.entries.iter().flat_map(|e| e.chunks.iter().map(|c| c.id)));
                }
            }
        }
        let swept = pool.sweep(&guard, &live, pack_garbage, report.dry_run)?;
        report.freed_bytes += swept.bytes_freed;
        report.chunks.add(&swept);
        Ok(())
    }

    /// A layer's manifest, decoded once per `gc`; `None` when it is gone
    /// (the layer was deleted since its record was read: nothing can
    /// reference its chunks any more). A manifest that is there but cannot
    /// be read stops the sweep: its chunks cannot be told from garbage.
    fn load_manifest<'m>(
        &self,
        manifests: &'m mut HashMap<String, LayerManifest>,
        set: &LayerSet,
        layer: &Layer,
    ) -> Result<Option<&'m LayerManifest>> {
        if !manifests.contains_key(&layer.id) {
            let path = layout::manifest_path(&set.root, &layer.id);
            let m = match fs::read(&path) {
                Ok(bytes) => crate::manifest::decode(&path, &bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => Err(e).at(Op::Read, &path),
            };
            let m = m.map_err(|e| Error::SweepBlocked {
                layer: layer.id.clone(),
                driver: set.driver.to_string(),
                cause: Box::new(e),
            })?;
            manifests.insert(layer.id.clone(), m);
        }
        Ok(manifests.get(&layer.id))
    }
}

/// Whether a directory entry is named like an item ID (64 hex digits).
fn is_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The names in a directory (none when it cannot be read).
fn list(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Removes a file or tree unless `dry_run`; returns the bytes it frees.
fn remove_tree(path: &Path, dry_run: bool) -> u64 {
    let bytes = unshared_bytes(path);
    if !dry_run {
        let _ = fs::remove_file(path).or_else(|_| fs::remove_dir_all(path));
    }
    bytes
}
