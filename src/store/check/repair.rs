//! `check -r`: the scan's plan executed. Containers first (only when
//! forced), then images, then layers deepest first, each through the
//! store's own deletion paths; then damaged materialized directories
//! rebuilt, misplaced driver entries removed, directories without a
//! record removed, and damaged chunks dropped from the pool. The pool's
//! own files are repaired before all of this, in `pool.rs`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{CheckOptions, Inode, Problem, Records, Remedy, ScanReport, Subject};
use crate::durable;
use crate::error::{Error, IoContext, Op, Result};
use crate::store::{layout, Container, Kind, Layer, Store};

/// What a repair did, and what it left with why.
#[derive(Default)]
struct Outcome {
    repaired: Vec<Problem>,
    left: Vec<Problem>,
}

impl Outcome {
    fn done(&mut self, kind: Kind, id: &str, what: &str) {
        self.repaired.push(Problem::new(kind, id, what.to_string()));
    }

    fn left(&mut self, kind: Kind, id: &str, why: String) {
        self.left.push(Problem::new(kind, id, why));
    }
}

/// The records as the repair finds them, and which of them the scan's
/// problems doom.
struct Plan<'r> {
    records: &'r Records,
    by_id: HashMap<&'r str, &'r Layer>,
    children: HashMap<&'r str, Vec<&'r str>>,
    /// Damaged layers and everything above them.
    doomed: BTreeSet<String>,
    /// Damaged images and images on doomed layers.
    bad_images: BTreeSet<String>,
    /// Damaged containers and containers on doomed layers or bad images.
    bad_containers: BTreeSet<String>,
}

impl<'r> Plan<'r> {
    fn new(records: &'r Records, scan: &ScanReport) -> Plan<'r> {
        let by_id = records.by_id();
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for l in records.layers.iter().chain(&records.image_store_layers) {
            children.entry(l.parent.as_str()).or_default().push(&l.id);
        }
        let mut plan = Plan {
            records,
            by_id,
            children,
            doomed: BTreeSet::new(),
            bad_images: BTreeSet::new(),
            bad_containers: BTreeSet::new(),
        };
        let mut stack: Vec<String> = scan
            .ids(Kind::Layer, Remedy::Remove)
            .into_iter()
            .filter(|id| plan.by_id.contains_key(id.as_str()))
            .collect();
        while let Some(id) = stack.pop() {
            if plan.doomed.insert(id.clone()) {
                for child in plan.children.get(id.as_str()).into_iter().flatten() {
                    stack.push(child.to_string());
                }
            }
        }
        plan.bad_images = records
            .images
            .iter()
            .chain(&records.graph_images)
            .filter(|i| {
                scan.has(Kind::Image, &i.id, Remedy::Remove)
                    || plan.chain_hits(&i.top_layer, &plan.doomed)
            })
            .map(|i| i.id.clone())
            .collect();
        plan.bad_containers = records
            .containers
            .iter()
            .filter(|c| {
                scan.has(Kind::Container, &c.id, Remedy::Remove)
                    || plan.chain_hits(&c.layer, &plan.doomed)
                    || plan.bad_images.contains(&c.image)
            })
            .map(|c| c.id.clone())
            .collect();
        plan
    }

    /// `top` and the layers below it.
    fn chain(&self, top: &str) -> Vec<String> {
        self.records.chain(&self.by_id, top)
    }

    /// Whether a layer of the chain of `top` is in `set`.
    fn chain_hits(&self, top: &str, set: &BTreeSet<String>) -> bool {
        self.chain(top).iter().any(|id| set.contains(id))
    }

    /// Whether layer `id` is sealed.
    fn sealed(&self, id: &str) -> bool {
        self.by_id.get(id).is_some_and(|l| l.sealed)
    }

    /// The layers to remove: the doomed ones and old ones nothing uses,
    /// unless something kept (an image, a container, a mount) still
    /// needs them or a child of theirs stays; and not those that went
    /// with their containers.
    fn removable_layers(
        &self,
        scan: &ScanReport,
        removed_images: &BTreeSet<String>,
        removed_containers: &BTreeSet<String>,
    ) -> BTreeSet<String> {
        let records = self.records;
        let mut pinned: HashSet<String> = HashSet::new();
        let kept_tops = records
            .images
            .iter()
            .filter(|i| !removed_images.contains(&i.id))
            .map(|i| i.top_layer.as_str())
            .chain(
                records
                    .containers
                    .iter()
                    .filter(|c| !removed_containers.contains(&c.id))
                    .map(|c| c.layer.as_str()),
            )
            .chain(records.mounted.iter().map(|m| m.as_str()));
        for top in kept_tops {
            pinned.extend(self.chain(top));
        }
        let gone_with_containers: HashSet<&str> = records
            .containers
            .iter()
            .filter(|c| removed_containers.contains(&c.id))
            .map(|c| c.layer.as_str())
            .collect();
        let mut removable: BTreeSet<String> = self
            .doomed
            .iter()
            .cloned()
            .chain(scan.ids(Kind::Layer, Remedy::Unreferenced))
            .filter(|id| self.by_id.contains_key(id.as_str()))
            .filter(|id| !pinned.contains(id) && !gone_with_containers.contains(id.as_str()))
            .collect();
        // A layer goes only with every child it has.
        loop {
            let blocked: Vec<String> = removable
                .iter()
                .filter(|id| {
                    self.children
                        .get(id.as_str())
                        .into_iter()
                        .flatten()
                        .any(|c| !removable.contains(*c) && !gone_with_containers.contains(c))
                })
                .cloned()
                .collect();
            if blocked.is_empty() {
                return removable;
            }
            for id in blocked {
                removable.remove(&id);
            }
        }
    }

    /// The layers a mount uses: the mounted ones and, on overlay, the
    /// layers below them.
    fn in_use(&self, overlay: bool) -> HashSet<String> {
        match overlay {
            true => self
                .records
                .mounted
                .iter()
                .flat_map(|m| self.chain(m))
                .collect(),
            false => self.records.mounted.clone(),
        }
    }
}

impl Store {
    /// Repairs what `scan` found (the pool's own files aside); returns
    /// what was repaired and, for what was left, why.
    pub(super) fn repair(
        &self,
        scan: &ScanReport,
        options: &CheckOptions,
    ) -> Result<(Vec<Problem>, Vec<Problem>)> {
        let records = self.records()?;
        let plan = Plan::new(&records, scan);
        let mut out = Outcome::default();
        let removed_containers = self.remove_bad_containers(&plan, options, &mut out);
        let removed_images = self.remove_bad_images(&plan, &removed_containers, &mut out)?;
        let removable = plan.removable_layers(scan, &removed_images, &removed_containers);
        let depth = |id: &str| plan.chain(id).len();
        let mut order: Vec<&String> = removable.iter().collect();
        order.sort_by_key(|id| std::cmp::Reverse(depth(id)));
        for id in order {
            match self.delete_layer(id) {
                Ok(()) => out.done(Kind::Layer, id, "removed"),
                Err(e) => out.left(Kind::Layer, id, format!("not removed: {e}")),
            }
        }
        // What is removed, or goes with what is, needs no other repair.
        let gone = |id: &str| removable.contains(id) || plan.doomed.contains(id);
        let in_use = plan.in_use(self.options.driver == "overlay");
        self.rebuild_damaged_dirs(scan, &plan, &gone, &in_use, &mut out)?;
        self.remove_misplaced(scan, &plan, &gone, &in_use, &mut out);
        self.restore_layouts(scan, &gone, &mut out);
        self.remove_strays(scan, &mut out)?;
        Ok((out.repaired, out.left))
    }

    /// Removes the damaged containers (only when forced, and not while
    /// their layer is mounted); returns those removed.
    fn remove_bad_containers(
        &self,
        plan: &Plan<'_>,
        options: &CheckOptions,
        out: &mut Outcome,
    ) -> BTreeSet<String> {
        let mut removed = BTreeSet::new();
        let bad = plan.records.containers.iter();
        for c in bad.filter(|c| plan.bad_containers.contains(&c.id)) {
            if !options.force {
                let why =
                    "not removed: it is damaged or uses damaged items (remove it with --force)";
                out.left(Kind::Container, &c.id, why.into());
                continue;
            }
            if plan.records.mounted.contains(&c.layer) {
                let why = format!("not removed: its layer {} is mounted", c.layer);
                out.left(Kind::Container, &c.id, why);
                continue;
            }
            match self.delete_container(&c.id) {
                Ok(()) => {
                    removed.insert(c.id.clone());
                    out.done(Kind::Container, &c.id, "removed");
                }
                Err(e) => out.left(Kind::Container, &c.id, format!("not removed: {e}")),
            }
        }
        removed
    }

    /// Removes the records of the damaged images no kept container uses;
    /// returns those removed.
    fn remove_bad_images(
        &self,
        plan: &Plan<'_>,
        removed_containers: &BTreeSet<String>,
        out: &mut Outcome,
    ) -> Result<BTreeSet<String>> {
        let kept_containers: Vec<&Container> = plan
            .records
            .containers
            .iter()
            .filter(|c| !removed_containers.contains(&c.id))
            .collect();
        let mut removed = BTreeSet::new();
        let bad = plan.records.images.iter().chain(&plan.records.graph_images);
        for image in bad.filter(|i| plan.bad_images.contains(&i.id)) {
            if let Some(c) = kept_containers.iter().find(|c| c.image == image.id) {
                let why = format!("not removed: container {} uses it", c.id);
                out.left(Kind::Image, &image.id, why);
                continue;
            }
            if self.remove_image_record(&image.id)? {
                removed.insert(image.id.clone());
                out.done(Kind::Image, &image.id, "removed");
            }
        }
        Ok(removed)
    }

    /// Damaged materialized directories of sealed layers: evicted and
    /// rebuilt, unless a mount uses them.
    fn rebuild_damaged_dirs(
        &self,
        scan: &ScanReport,
        plan: &Plan<'_>,
        gone: &dyn Fn(&str) -> bool,
        in_use: &HashSet<String>,
        out: &mut Outcome,
    ) -> Result<()> {
        for id in scan.ids(Kind::Layer, Remedy::Rebuild) {
            if gone(&id) || in_use.contains(&id) || !plan.sealed(&id) {
                continue;
            }
            let inodes = scan.shared_inodes.get(&id).map(Vec::as_slice);
            match self.rebuild_materialized(&id, inodes.unwrap_or_default())? {
                Some(true) => out.done(Kind::Layer, &id, "materialized directory rebuilt"),
                Some(false) => out.done(Kind::Layer, &id, "materialized directory removed"),
                None => out.left(
                    Kind::Layer,
                    &id,
                    "materialized directory not rebuilt: a mount uses it".into(),
                ),
            }
        }
        Ok(())
    }

    /// Driver entries that are not the layout's: removed (never what they
    /// lead to); a sealed layer's directory is built again now, unless a
    /// mount uses it (then the next mount builds it).
    fn remove_misplaced(
        &self,
        scan: &ScanReport,
        plan: &Plan<'_>,
        gone: &dyn Fn(&str) -> bool,
        in_use: &HashSet<String>,
        out: &mut Outcome,
    ) {
        for id in scan.ids(Kind::Layer, Remedy::Unlink) {
            if gone(&id) {
                continue;
            }
            let mut removed = true;
            for path in scan.misplaced.get(&id).into_iter().flatten() {
                if let Err(e) = self.write(|| remove_entry(path)) {
                    out.left(Kind::Layer, &id, format!("not repaired: {e}"));
                    removed = false;
                }
            }
            if !removed {
                continue;
            }
            let sealed = plan.sealed(&id);
            let rebuilt = sealed && !in_use.contains(&id) && self.build_again(&id);
            // A short link or `lower` removed is made again for Go's
            // clients (a rebuild lays the chain out itself).
            if !rebuilt {
                if let Err(e) = self.write(|| self.restore_layout(&id)) {
                    if !matches!(e, Error::NotKnown { .. }) {
                        out.left(Kind::Layer, &id, format!("not repaired: {e}"));
                        continue;
                    }
                }
            }
            let what = match (sealed, rebuilt) {
                (true, true) => "misplaced driver entries removed, materialized directory rebuilt",
                (true, false) => {
                    "misplaced driver entries removed; the next mount builds the directory"
                }
                (false, _) => "misplaced driver entries removed",
            };
            out.done(Kind::Layer, &id, what);
        }
    }

    /// Driver directories without a record (unless one has appeared
    /// since the scan).
    fn remove_strays(&self, scan: &ScanReport, out: &mut Outcome) -> Result<()> {
        let stray = scan.ids(Kind::Layer, Remedy::Stray);
        if stray.is_empty() {
            return Ok(());
        }
        let now_known: HashSet<String> = self.all_layers()?.into_iter().map(|l| l.id).collect();
        for name in stray {
            if now_known.contains(&name) {
                continue;
            }
            self.remove_driver_dirs(&name);
            out.done(Kind::Layer, &name, "directory removed");
        }
        Ok(())
    }

    /// Makes the missing driver entries of the layers that lack some.
    fn restore_layouts(&self, scan: &ScanReport, gone: &dyn Fn(&str) -> bool, out: &mut Outcome) {
        for id in scan.ids(Kind::Layer, Remedy::LayOut) {
            if gone(&id) {
                continue;
            }
            match self.write(|| self.restore_layout(&id)) {
                Ok(()) => out.done(Kind::Layer, &id, "missing driver entries made"),
                Err(e) => out.left(Kind::Layer, &id, format!("not repaired: {e}")),
            }
        }
    }

    /// Builds the directories of layer `id`'s chain that are missing, as
    /// a mount would; whether that worked.
    fn build_again(&self, id: &str) -> bool {
        self.chain(id).is_ok_and(|chain| {
            if self.options.driver == "overlay" {
                self.prepare_overlay(&chain).is_ok()
            } else {
                self.prepare_vfs(&chain).is_ok()
            }
        })
    }

    /// Drops the damaged chunks from the pool, so that importing the
    /// content again stores it anew (see `ChunkPool::drop_damaged`).
    /// Layers that used them and are still there are reported: an import
    /// of their content restores them.
    pub(super) fn drop_damaged_chunks(&self, scan: &ScanReport) -> Result<Vec<Problem>> {
        if scan.damaged_chunks.is_empty() {
            return Ok(Vec::new());
        }
        let guard = self.pool.sweep_guard()?;
        let dropped = self.pool.drop_damaged(&guard, &scan.damaged_chunks)?;
        drop(guard);
        if dropped.chunks_removed == 0 {
            return Ok(Vec::new());
        }
        let layers = self.layers()?;
        Ok(layers
            .iter()
            .filter(|l| scan.damaged_chunk_users.contains(&l.id))
            .map(|l| Problem {
                kind: Subject::Layer,
                id: l.id.clone(),
                message: "damaged chunks dropped from the pool: importing the layer's content again restores them".into(),
            })
            .collect())
    }

    /// Removes an image's record (and its directories) but none of its
    /// layers: those that are healthy stay. Refuses (returns false) when a
    /// container uses it.
    fn remove_image_record(&self, id: &str) -> Result<bool> {
        let mut tx = self.transaction()?;
        if tx.containers.records.iter().any(|c| c.image == id) {
            return Ok(false);
        }
        if !tx.images.records.iter().any(|i| i.id == id) {
            // One of the graph root's images under a split image store:
            // removed there, its records locked after the transaction's.
            let graph = self.deletable_ro_images()?.into_iter().find(|i| i.id == id);
            let Some((file, root)) = graph.and_then(|i| self.deletable_image_store(&i)) else {
                return Ok(false);
            };
            let mut locked = file.lock()?;
            if !locked.records.iter().any(|i| i.id == id) {
                return Ok(false);
            }
            locked.records.retain(|i| i.id != id);
            self.write(|| locked.save())?;
            drop((locked, tx));
            if layout::owns_paths(id) {
                let _ = fs::remove_dir_all(self.item_dir_in(Kind::Image, id, Some(&root)));
            }
            return Ok(true);
        }
        tx.images.records.retain(|i| i.id != id);
        self.write(|| tx.images.save())?;
        drop(tx);
        self.remove_item_dirs(Kind::Image, id);
        Ok(true)
    }

    /// Evicts a sealed layer's materialized directory (renamed aside under
    /// the layers and mounts locks, as `gc` evicts, then removed) and
    /// builds it again from the pool. `None` when a mount uses it (it is
    /// left alone); otherwise whether the rebuild worked: a directory that
    /// cannot be rebuilt stays evicted.
    fn rebuild_materialized(&self, id: &str, shared: &[Inode]) -> Result<Option<bool>> {
        let dir = self.layer_content_dir(id);
        if !self.is_materialized(id) {
            // Replaced since the scan: never renamed through a symlink.
            return Ok(Some(false));
        }
        let aside = {
            let layers = self.layer_records.lock()?;
            let mounts = self.mount_records.lock()?;
            let mounted = mounts.records.iter().filter(|m| m.count > 0);
            if mounted
                .map(|m| m.id.as_str())
                .any(|m| self.mount_uses(&layers.records, m, id))
            {
                return Ok(None);
            }
            self.write(|| durable::rename_aside(&dir))?
        };
        let _ = fs::remove_dir_all(&aside);
        if !shared.is_empty() {
            let shared: HashSet<Inode> = shared.iter().copied().collect();
            remove_inodes(&layout::objects_dir(self.graph_root()), &shared);
        }
        Ok(Some(self.build_again(id)))
    }

    /// Whether a mount of layer `mounted` uses the directory of layer
    /// `id`: it is `id`, a delta stacked on `id`'s directory, or (on
    /// overlay) a layer above either.
    fn mount_uses(&self, layers: &[Layer], mounted: &str, id: &str) -> bool {
        let overlay = self.options.driver == "overlay";
        let mut next = layers.iter().find(|l| l.id == mounted);
        let mut steps = 0;
        while let Some(l) = next {
            if l.id == id || self.stacked_on(&l.id).as_deref() == Some(id) {
                return true;
            }
            steps += 1;
            if !overlay || steps > layers.len() {
                break;
            }
            next = layers.iter().find(|p| p.id == l.parent);
        }
        false
    }
}

/// Removes a misplaced driver entry itself (a symlink, a file): never
/// what it leads to.
fn remove_entry(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(Op::Remove, path),
        _ => Ok(()),
    }
}

/// Removes the files below `dir` that are one of `inodes` (damaged
/// objects a damaged materialized file was a hardlink of).
fn remove_inodes(dir: &Path, inodes: &HashSet<Inode>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() {
            remove_inodes(&entry.path(), inodes);
        } else if inodes.contains(&(meta.dev(), meta.ino())) {
            let _ = fs::remove_file(entry.path());
        }
    }
}
