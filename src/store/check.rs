//! `check`: the store's records, pool, manifests and materialized
//! directories checked against each other; `check -r` repairs.
//!
//! A check is a scan that produces a plain report ([`ScanReport`]): the
//! problems found, each with the remedy a repair would apply, and what
//! the remedies need (the damaged chunks, the driver entries to remove,
//! ...). A repair executes that plan; the scan itself changes nothing.
//! One file per concern:
//!
//! - `records.rs`: layer, image and container records, their big data
//!   and the layers' manifests against the records; layers nothing uses;
//! - `pool.rs`: the pool's own files (pack indexes, `config.json`);
//! - `content.rs`: the layers' content: chunks present and intact, the
//!   exact tar of every sealed layer;
//! - `materialized.rs`: the driver's directories: materialized
//!   directories against their manifests (the comparison itself is the
//!   materializer's, `materialize/compare.rs`), driver entries that are
//!   not the layout's, directories without a record;
//! - `repair.rs`: the plan executed.
//!
//! Problems carry upstream's wording (`layer not referenced by any images
//! or containers`, `image layer is missing`, `image data item has
//! incorrect size`, ...). A repair removes damaged containers (only when
//! forced), then damaged images, then damaged layers deepest first, each
//! through the store's own deletion paths so that records and files go in
//! their durable order; a damaged layer takes its descendants and the
//! images and containers on them along, since they can no longer be
//! exported. A damaged materialized directory of a sealed layer is only a
//! cache: it is evicted and rebuilt from the pool (left alone while a
//! mount uses it). A driver entry that is not the layout's (a directory
//! or short link swapped for a symlink) is removed itself, never what it
//! leads to, and a sealed layer's directory is rebuilt; a live layer whose
//! content directory was replaced is damaged. Nothing is removed for a
//! problem it does not have.
//! Damaged chunks are dropped from the pool, whether or not the layers
//! using them could be removed: an import of the same content then stores
//! it anew (instead of reusing the damaged copy) and so restores every
//! layer that uses it. The pool's own files are checked and repaired
//! first, so that a layer is only judged once its pool is whole again.
//! This module reads the records and the pool; it never prints.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::{Container, Image, Kind, Layer, Store};
use crate::chunks::ChunkId;
use crate::error::Result;

mod content;
mod materialized;
mod pool;
mod records;
mod repair;

pub use pool::Subject;

/// What `check` looks at and whether it repairs.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Skip reading content (chunk hashes, layer digests, file contents).
    pub quick: bool,
    /// Remove damaged images and layers (and containers with `force`).
    pub repair: bool,
    /// With `repair`, remove damaged containers too.
    pub force: bool,
    /// Layers that no image or container uses are reported once older.
    pub max_unreferenced_age: Duration,
}

/// One problem: printed as `<kind> <id>: <message>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The kind of item, or the part of the pool.
    pub kind: Subject,
    /// The item's ID.
    pub id: String,
    /// What is wrong, in upstream's words where upstream has them.
    pub message: String,
}

impl Problem {
    fn new(kind: impl Into<Subject>, id: &str, message: String) -> Problem {
        Problem {
            kind: kind.into(),
            id: id.to_string(),
            message,
        }
    }
}

/// What `check` found and, with `repair`, what it removed or rebuilt.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    /// Problems found.
    pub problems: Vec<Problem>,
    /// Items removed or rebuilt by the repair, as `<kind> <id>: <what>`.
    pub repaired: Vec<Problem>,
    /// Problems still there after the repair (without a repair: all of
    /// them), followed by why the repair left them (`not removed: ...`).
    pub remaining: Vec<Problem>,
}

/// Upstream's words for the problems it knows.
const LAYER_UNACCOUNTED: &str = "layer in lower level storage driver not accounted for";
const LAYER_UNREFERENCED: &str = "layer not referenced by any images or containers";
const LAYER_INCORRECT_DIGEST: &str = "layer content incorrect digest";
const LAYER_INCORRECT_SIZE: &str = "layer content incorrect size";
const LAYER_MODIFIED: &str = "layer content has been modified";
const LAYER_MISSING: &str = "layer is missing";
const IMAGE_LAYER_MISSING: &str = "image layer is missing";
const CONTAINER_IMAGE_MISSING: &str = "image missing";

/// At most this many problems of one sort are listed per layer (damaged
/// chunks, differences of a materialized directory); the rest are counted.
const PER_LAYER: usize = 16;

/// What a repair does about a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Remedy {
    /// The item is damaged: remove it and what depends on it.
    Remove,
    /// A sealed layer's materialized directory differs from its manifest:
    /// evict and rebuild it.
    Rebuild,
    /// An old layer nothing uses: remove it unless something newer sits
    /// on it.
    Unreferenced,
    /// A driver directory without a record: remove the directory.
    Stray,
    /// A driver entry that is not the layout's (a directory replaced by
    /// a symlink): remove the entry itself, then rebuild a sealed layer's
    /// directory.
    Unlink,
    /// A file of the pool: index the pack again, or write the config
    /// again (`check/pool.rs`).
    Pool,
    /// Driver entries a Go client reads are missing (a creation or
    /// import cut short between its record and its layout): make them.
    LayOut,
}

/// A problem and what a repair does about it.
struct Found {
    problem: Problem,
    remedy: Remedy,
}

/// The records as one consistent-enough snapshot.
struct Records {
    layers: Vec<Layer>,
    /// The read-only stores' layers: never checked, never repaired, but
    /// known as parents and top layers of this store's items (and as the
    /// owners of directories built here for their mounts).
    ro_layers: Vec<Layer>,
    /// The split image store's layers (also among `ro_layers`): this
    /// store's, checked for their records and the presence of their
    /// content, and removed by a repair.
    image_store_layers: Vec<Layer>,
    images: Vec<Image>,
    /// The graph root's images under a split image store: this store's
    /// too (upstream's check looks at every writable image store).
    graph_images: Vec<Image>,
    /// The read-only stores' images' IDs: containers may use them.
    ro_images: HashSet<String>,
    containers: Vec<Container>,
    /// Layers with a mount reference.
    mounted: HashSet<String>,
}

impl Records {
    fn layer(&self, id: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.id == id)
    }

    /// The layers by ID.
    fn by_id(&self) -> HashMap<&str, &Layer> {
        // This store's record wins over a read-only store's of the same ID.
        self.ro_layers
            .iter()
            .chain(&self.layers)
            .map(|l| (l.id.as_str(), l))
            .collect()
    }

    /// `top` and its ancestors that exist (stops at a missing parent or a
    /// cycle), top first.
    fn chain(&self, by_id: &HashMap<&str, &Layer>, top: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut next = top;
        while let Some(layer) = by_id.get(next) {
            if out.iter().any(|id| id == next) {
                break;
            }
            out.push(layer.id.clone());
            next = &layer.parent;
        }
        out
    }
}

/// A file's device and inode numbers.
type Inode = (u64, u64);

/// What a scan found: the problems, each with its remedy, and what the
/// remedies need. The plan a repair executes.
#[derive(Default)]
struct ScanReport {
    found: Vec<Found>,
    /// Per layer, the inodes of its damaged materialized files that have
    /// other names: hardlinks into the object cache, which a rebuild must
    /// not link again.
    shared_inodes: HashMap<String, Vec<Inode>>,
    /// Chunks of the pool that do not read back intact.
    damaged_chunks: Vec<ChunkId>,
    /// Layers that use one of them.
    damaged_chunk_users: BTreeSet<String>,
    /// Per problem ID, the driver entries a repair removes
    /// ([`Remedy::Unlink`], and a live layer's replaced content directory).
    misplaced: BTreeMap<String, Vec<PathBuf>>,
    /// The pool's part (`check/pool.rs`).
    pool: pool::PoolScan,
}

impl ScanReport {
    fn add(&mut self, kind: impl Into<Subject>, id: &str, message: String, remedy: Remedy) {
        self.found.push(Found {
            problem: Problem::new(kind, id, message),
            remedy,
        });
    }

    /// The IDs of the items of `kind` with a problem that `remedy` takes
    /// care of.
    fn ids(&self, kind: Kind, remedy: Remedy) -> BTreeSet<String> {
        self.found
            .iter()
            .filter(|f| f.problem.kind == kind && f.remedy == remedy)
            .map(|f| f.problem.id.clone())
            .collect()
    }

    /// Whether item `id` of `kind` has a problem that `remedy` takes care
    /// of.
    fn has(&self, kind: Kind, id: &str, remedy: Remedy) -> bool {
        self.found
            .iter()
            .any(|f| f.problem.kind == kind && f.problem.id == id && f.remedy == remedy)
    }

    /// Whether layer `id` has a problem reported already.
    fn reports(&self, id: &str) -> bool {
        self.found
            .iter()
            .any(|f| f.problem.kind == Kind::Layer && f.problem.id == id)
    }

    fn problems(&self) -> Vec<Problem> {
        self.found.iter().map(|f| f.problem.clone()).collect()
    }

    /// Lists `items` for one layer, at most [`PER_LAYER`] of them, then a
    /// count of the rest.
    fn add_capped(&mut self, id: &str, items: Vec<String>, remedy: Remedy, what: &str) {
        let total = items.len();
        for message in items.iter().take(PER_LAYER) {
            self.add(Kind::Layer, id, message.clone(), remedy);
        }
        if total > PER_LAYER {
            let first = items[PER_LAYER].split(':').next().unwrap_or_default();
            let message = format!("{first}: and {} more {what}", total - PER_LAYER);
            self.add(Kind::Layer, id, message, remedy);
        }
    }
}

impl Store {
    /// Checks the store; with `options.repair`, repairs it.
    pub fn check(&self, options: &CheckOptions) -> Result<CheckReport> {
        let mut scan = self.scan(options)?;
        let problems = scan.problems();
        if !options.repair || problems.is_empty() {
            return Ok(CheckReport {
                remaining: problems.clone(),
                problems,
                repaired: Vec::new(),
            });
        }
        self.check_writable()?;
        // The pool first: layers whose chunks come back are healthy.
        let (mut repaired, mut not_repaired) = self.repair_pool(&scan)?;
        if !repaired.is_empty() {
            scan = self.scan(options)?;
        }
        let (layers_repaired, layers_not_repaired) = self.repair(&scan, options)?;
        repaired.extend(layers_repaired);
        not_repaired.extend(layers_not_repaired);
        repaired.extend(self.drop_damaged_chunks(&scan)?);
        let mut remaining = self.scan(options)?.problems();
        // Why what remains was left, next to it.
        if !remaining.is_empty() {
            remaining.extend(not_repaired);
        }
        Ok(CheckReport {
            problems,
            repaired,
            remaining,
        })
    }

    fn records(&self) -> Result<Records> {
        let ro_layers = self.ro_layers()?;
        let image_store_layers = ro_layers
            .iter()
            .filter(|l| l.read_only_store.is_some() && !self.layer_is_read_only(l))
            .cloned()
            .collect();
        Ok(Records {
            layers: self.layers()?,
            ro_layers,
            image_store_layers,
            images: self.images()?,
            graph_images: self.deletable_ro_images()?,
            ro_images: self.all_images()?.into_iter().map(|i| i.id).collect(),
            containers: self.containers()?,
            mounted: self
                .mounts()?
                .into_iter()
                .filter(|m| m.count > 0)
                .map(|m| m.id)
                .collect(),
        })
    }

    /// Looks at everything, in the order the problems are listed (those
    /// of the pool first: they are the cause of the layers' missing
    /// chunks); changes nothing.
    fn scan(&self, options: &CheckOptions) -> Result<ScanReport> {
        // Directories before records: a layer's record always exists
        // before its directories do, so a new layer is never taken for a
        // stray directory.
        let driver_dirs = self.driver_layer_dirs();
        let records = self.records()?;
        let mut scan = ScanReport::default();
        // Layers an import is still writing are none of check's business.
        let layers: Vec<&Layer> = records
            .layers
            .iter()
            .filter(|l| !l.is_incomplete())
            .collect();
        let by_id = records.by_id();
        self.pool.refresh()?;
        let manifests = self.scan_layer_records(&mut scan, &layers, &by_id);
        self.scan_image_store_layers(&mut scan, &records, &by_id);
        self.scan_driver_entries(&mut scan, &layers);
        let unreadable = self.scan_chunks(&mut scan, &layers, &manifests, options)?;
        self.scan_pool(&mut scan, &manifests, options)?;
        if !options.quick {
            let both = (&layers[..], &records.image_store_layers[..]);
            self.scan_exports(&mut scan, both, &manifests, &unreadable);
        }
        self.scan_materialized(&mut scan, &layers, &by_id, &manifests, options);
        self.scan_unreferenced(&mut scan, &records, &layers, &by_id, options);
        self.scan_strays(&mut scan, driver_dirs, &records, &by_id);
        self.scan_images(&mut scan, &records, &by_id, options);
        self.scan_containers(&mut scan, &records, options);
        Ok(scan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_capped_with_a_count() {
        let mut scan = ScanReport::default();
        let items: Vec<String> = (0..PER_LAYER + 3)
            .map(|i| format!("layer content incorrect digest: chunk {i} is damaged"))
            .collect();
        scan.add_capped("l", items, Remedy::Remove, "chunks");
        assert_eq!(scan.found.len(), PER_LAYER + 1);
        assert_eq!(
            scan.found.last().unwrap().problem.message,
            "layer content incorrect digest: and 3 more chunks"
        );
    }
}
