//! `check`: the store's records, pool, manifests and materialized
//! directories checked against each other; `check -r` repairs.
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
//! layer that uses it. The pool's own files (pack indexes, `config.json`)
//! are checked and repaired first, in `check/pool.rs`, so that a layer is
//! only judged once its pool is whole again.
//! This module reads the records and the pool; it never prints.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rayon::prelude::*;
use serde::Serialize;

use super::bigdata::file_name;
use super::item::BigDataIndex;
use super::layout;
use super::{Container, Image, Kind, Layer, Store};
use crate::chunks::ChunkId;
use crate::durable;
use crate::error::{IoContext, Result};
use crate::manifest::{self, Entry, EntryKind, Extraction, LayerManifest, Sha256};
use crate::materialize::{self, Format};
use crate::sys;

mod pool;

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
}

struct Found {
    problem: Problem,
    remedy: Remedy,
}

/// The records as one consistent-enough snapshot.
struct Records {
    layers: Vec<Layer>,
    images: Vec<Image>,
    containers: Vec<Container>,
    /// Layers with a mount reference.
    mounted: HashSet<String>,
}

impl Records {
    fn layer(&self, id: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.id == id)
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

#[derive(Default)]
struct Scan {
    found: Vec<Found>,
    /// Per layer, the inodes of its damaged materialized files that have
    /// other names: hardlinks into the object cache, which a rebuild must
    /// not link again.
    shared_inodes: HashMap<String, Vec<(u64, u64)>>,
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

impl Scan {
    fn add(&mut self, kind: impl Into<Subject>, id: &str, message: String, remedy: Remedy) {
        self.found.push(Found {
            problem: Problem {
                kind: kind.into(),
                id: id.to_string(),
                message,
            },
            remedy,
        });
    }

    fn ids(&self, kind: Kind, remedy: Remedy) -> BTreeSet<String> {
        self.found
            .iter()
            .filter(|f| f.problem.kind == kind && f.remedy == remedy)
            .map(|f| f.problem.id.clone())
            .collect()
    }
}

impl Store {
    /// Checks the store; with `options.repair`, repairs it.
    pub fn check(&self, options: &CheckOptions) -> Result<CheckReport> {
        let mut scan = self.scan(options)?;
        let problems: Vec<Problem> = scan.found.iter().map(|f| f.problem.clone()).collect();
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
        let mut remaining: Vec<Problem> = self
            .scan(options)?
            .found
            .into_iter()
            .map(|f| f.problem)
            .collect();
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

    /// Drops the damaged chunks from the pool, so that importing the
    /// content again stores it anew (see `ChunkPool::drop_damaged`).
    /// Layers that used them and are still there are reported: an import
    /// of their content restores them.
    fn drop_damaged_chunks(&self, scan: &Scan) -> Result<Vec<Problem>> {
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

    fn records(&self) -> Result<Records> {
        Ok(Records {
            layers: self.layers()?,
            images: self.images()?,
            containers: self.containers()?,
            mounted: self
                .mounts()?
                .into_iter()
                .filter(|m| m.count > 0)
                .map(|m| m.id)
                .collect(),
        })
    }

    fn scan(&self, options: &CheckOptions) -> Result<Scan> {
        // Directories before records: a layer's record always exists
        // before its directories do, so a new layer is never taken for a
        // stray directory.
        let driver_dirs = self.driver_layer_dirs();
        let records = self.records()?;
        let mut scan = Scan::default();
        // Layers an import is still writing are none of check's business.
        let layers: Vec<&Layer> = records
            .layers
            .iter()
            .filter(|l| !l.is_incomplete())
            .collect();
        let by_id: HashMap<&str, &Layer> =
            records.layers.iter().map(|l| (l.id.as_str(), l)).collect();
        self.pool.refresh()?;

        // Records, big data and manifests (cheap: no content is read).
        let mut manifests: HashMap<String, Arc<LayerManifest>> = HashMap::new();
        for layer in &layers {
            if !layer.parent.is_empty() && !by_id.contains_key(layer.parent.as_str()) {
                let message = format!("parent layer {}: {LAYER_MISSING}", layer.parent);
                scan.add(Kind::Layer, &layer.id, message, Remedy::Remove);
            }
            for message in self.big_data_problems(Kind::Layer, &layer.id, &layer.big_data, true) {
                scan.add(Kind::Layer, &layer.id, message, Remedy::Remove);
            }
            if !layer.sealed {
                continue;
            }
            let path = layout::manifest_path(self.graph_root(), &layer.id);
            let m = match fs::read(&path) {
                Ok(bytes) => manifest::decode(&path, &bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let message = format!("layer manifest {} is missing", path.display());
                    scan.add(Kind::Layer, &layer.id, message, Remedy::Remove);
                    continue;
                }
                Err(e) => Err(e).at("read", &path),
            };
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    let message = format!("layer manifest cannot be read: {e}");
                    scan.add(Kind::Layer, &layer.id, message, Remedy::Remove);
                    continue;
                }
            };
            if m.diff_digest != layer.diff_digest {
                let message = format!(
                    "{LAYER_INCORRECT_DIGEST}: the record says {}, its manifest {}",
                    layer.diff_digest, m.diff_digest
                );
                scan.add(Kind::Layer, &layer.id, message, Remedy::Remove);
            } else if m.diff_size != layer.diff_size {
                let message = format!(
                    "{LAYER_INCORRECT_SIZE}: the record says {}, its manifest {}",
                    layer.diff_size, m.diff_size
                );
                scan.add(Kind::Layer, &layer.id, message, Remedy::Remove);
            }
            manifests.insert(layer.id.clone(), Arc::new(m));
        }

        // Driver entries that are not the layout's (a directory swapped
        // for a symlink to elsewhere): never followed. A sealed layer's
        // directory is a cache, rebuilt; a live layer whose directory was
        // replaced has lost its content, and is damaged.
        for layer in &layers {
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

        // Chunks: present in the pool and, unless quick, intact.
        let damaged: BTreeMap<ChunkId, String> = if options.quick {
            BTreeMap::new()
        } else {
            self.pool.verify_all()?.into_iter().collect()
        };
        let mut unreadable: HashSet<String> = HashSet::new();
        for layer in &layers {
            let Some(m) = manifests.get(&layer.id) else {
                continue;
            };
            let mut missing = BTreeSet::new();
            let mut broken = BTreeSet::new();
            for chunk in m.entries.iter().flat_map(|e| &e.chunks) {
                if !self.pool.contains(&chunk.id) {
                    missing.insert(chunk.id);
                } else if damaged.contains_key(&chunk.id) {
                    broken.insert(chunk.id);
                }
            }
            if !missing.is_empty() {
                // An import may have published packs since the refresh.
                self.pool.refresh()?;
                missing.retain(|id| !self.pool.contains(id));
                scan.pool.missing.insert(layer.id.clone(), missing.clone());
            }
            let mut listed = Vec::new();
            for id in &missing {
                listed.push(format!(
                    "layer content is missing: chunk {id} is not in the pool"
                ));
            }
            for id in &broken {
                listed.push(format!(
                    "{LAYER_INCORRECT_DIGEST}: chunk {id} is damaged: {}",
                    damaged[id]
                ));
            }
            if !broken.is_empty() {
                scan.damaged_chunk_users.insert(layer.id.clone());
            }
            if !listed.is_empty() {
                unreadable.insert(layer.id.clone());
            }
            push_capped(&mut scan, &layer.id, listed, Remedy::Remove, "chunks");
        }

        scan.damaged_chunks = damaged.keys().copied().collect();
        self.scan_pool(&mut scan, &manifests, options)?;

        // The exact tar of every sealed layer, unless quick.
        if !options.quick {
            let exported: Vec<(String, String)> = layers
                .par_iter()
                .filter(|l| !unreadable.contains(&l.id))
                .filter_map(|l| manifests.get(&l.id).map(|m| (l, m)))
                .filter_map(|(l, m)| {
                    manifest::write_tar(m, &self.pool, &mut std::io::sink())
                        .err()
                        .map(|e| (l.id.clone(), format!("{LAYER_INCORRECT_DIGEST}: {e}")))
                })
                .collect();
            for (id, message) in exported {
                scan.add(Kind::Layer, &id, message, Remedy::Remove);
            }
        }

        // Materialized directories of sealed layers against their manifests.
        let materialized: Vec<(String, Vec<String>, Vec<Inode>)> = layers
            .par_iter()
            .filter(|l| l.sealed)
            .filter_map(|l| {
                let (differences, inodes) =
                    self.materialized_problems(l, &by_id, &manifests, options)?;
                Some((l.id.clone(), differences, inodes))
            })
            .collect();
        for (id, differences, inodes) in materialized {
            push_capped(&mut scan, &id, differences, Remedy::Rebuild, "differences");
            if !inodes.is_empty() {
                scan.shared_inodes.insert(id, inodes);
            }
        }

        // Layers nothing uses.
        let mut referenced: HashSet<String> = HashSet::new();
        let tops = records
            .images
            .iter()
            .map(|i| i.top_layer.as_str())
            .chain(records.containers.iter().map(|c| c.layer.as_str()))
            .chain(records.mounted.iter().map(|m| m.as_str()));
        for top in tops {
            referenced.extend(records.chain(&by_id, top));
        }
        let now = chrono::Utc::now();
        for layer in &layers {
            if referenced.contains(&layer.id) {
                continue;
            }
            let old = match chrono::DateTime::parse_from_rfc3339(&layer.created) {
                Ok(created) => (now - created.with_timezone(&chrono::Utc))
                    .to_std()
                    .is_ok_and(|age| age >= options.max_unreferenced_age),
                // No usable creation time: old enough.
                Err(_) => true,
            };
            if old {
                let message = LAYER_UNREFERENCED.to_string();
                scan.add(Kind::Layer, &layer.id, message, Remedy::Unreferenced);
            }
        }

        // Driver directories without a record.
        // A deleted layer's directory that deltas are stacked on is kept.
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

        // Images: their layers and big data.
        for image in &records.images {
            let mut next = image.top_layer.as_str();
            let mut seen = HashSet::new();
            while !next.is_empty() && seen.insert(next) {
                match by_id.get(next) {
                    Some(layer) => next = &layer.parent,
                    None => {
                        let message = format!("layer {next}: {IMAGE_LAYER_MISSING}");
                        scan.add(Kind::Image, &image.id, message, Remedy::Remove);
                        break;
                    }
                }
            }
            for message in
                self.big_data_problems(Kind::Image, &image.id, &image.big_data, options.quick)
            {
                scan.add(Kind::Image, &image.id, message, Remedy::Remove);
            }
        }

        // Containers: their image, layer and big data.
        for c in &records.containers {
            if !c.image.is_empty() && !records.images.iter().any(|i| i.id == c.image) {
                let message = format!("image {}: {CONTAINER_IMAGE_MISSING}", c.image);
                scan.add(Kind::Container, &c.id, message, Remedy::Remove);
            }
            if records.layer(&c.layer).is_none() {
                let message = format!("layer {}: {LAYER_MISSING}", c.layer);
                scan.add(Kind::Container, &c.id, message, Remedy::Remove);
            }
            for message in
                self.big_data_problems(Kind::Container, &c.id, &c.big_data, options.quick)
            {
                scan.add(Kind::Container, &c.id, message, Remedy::Remove);
            }
        }
        Ok(scan)
    }

    /// Missing big data files, and files whose size (or, unless `quick`,
    /// digest) differs from the record's.
    fn big_data_problems(
        &self,
        kind: Kind,
        id: &str,
        index: &BigDataIndex,
        quick: bool,
    ) -> Vec<String> {
        let what = kind.name();
        let mut out = Vec::new();
        for key in &index.names {
            let path = self.item_dir(kind, id).join(file_name(key));
            let size = match fs::metadata(&path) {
                Ok(meta) if meta.is_file() => meta.len(),
                _ => {
                    out.push(format!("data item {key:?}: {what} data item is missing"));
                    continue;
                }
            };
            if index.sizes.get(key).is_some_and(|&want| want != size) {
                out.push(format!(
                    "data item {key:?}: {what} data item has incorrect size"
                ));
                continue;
            }
            if quick {
                continue;
            }
            if let Some(want) = index.digests.get(key) {
                let digest = fs::read(&path).map(|data| Sha256::digest(&data));
                if digest.as_ref().ok() != Some(want) {
                    out.push(format!(
                        "data item {key:?}: {what} data item has incorrect digest"
                    ));
                }
            }
        }
        out
    }

    /// Names of the layer directories the driver holds (`<drv>/<id>` for
    /// overlay, `<drv>/dir/<id>` for vfs), without the driver's own
    /// entries and temporary names.
    fn driver_layer_dirs(&self) -> Vec<String> {
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
    /// manifest(s); `None` when it has no such directory (or it cannot be
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
        let view;
        let mut expected: BTreeMap<Vec<u8>, Expect<'_>> = BTreeMap::new();
        let mut opaque: Vec<Vec<u8>> = Vec::new();
        let stacked;
        if self.options.driver == "overlay" {
            let mut m = manifests.get(&layer.id)?.as_ref();
            if let Some(base) = self.stacked_on(&layer.id) {
                // A delta over another layer's directory holds what
                // differs from it; without the base's manifest (a deleted
                // layer's) it cannot be judged.
                stacked = materialize::delta(m, manifests.get(&base)?);
                m = &stacked;
            }
            // What applying the entries in order leaves (a path given
            // twice, a whiteout of a path the layer adds again), as the
            // materializer builds it.
            let extraction = Extraction::of(&m.entries);
            for &i in extraction.whiteouts() {
                let e = &m.entries[i];
                expected.insert(materialize::whiteout_path(&e.path), Expect::Whiteout);
            }
            opaque.extend(extraction.hiding().iter().map(|p| p.to_vec()));
            for (i, e) in m.entries.iter().enumerate() {
                if extraction.kept(i) && !e.path.is_empty() {
                    expected.insert(e.path.clone(), Expect::Entry(e));
                }
            }
        } else {
            let mut chain = Vec::new();
            let mut next = layer.id.as_str();
            while let Some(l) = by_id.get(next) {
                if chain.len() > by_id.len() {
                    return None;
                }
                chain.push(manifests.get(&l.id)?.as_ref());
                next = &l.parent;
            }
            if !next.is_empty() {
                return None;
            }
            chain.reverse();
            view = materialize::lower_view(&chain);
            for (path, e) in &view {
                expected.insert(path.clone(), Expect::Entry(e));
            }
        }
        let implied: Vec<Vec<u8>> = expected
            .keys()
            .chain(opaque.iter())
            .flat_map(|p| manifest::ancestors(p))
            .filter(|p| !expected.contains_key(*p))
            .map(<[u8]>::to_vec)
            .collect();
        for p in implied {
            expected.insert(p, Expect::Dir);
        }
        for p in &opaque {
            if !p.is_empty() {
                expected.entry(p.clone()).or_insert(Expect::Dir);
            }
        }

        let shown = |rel: &[u8]| root.join(OsStr::from_bytes(rel)).display().to_string();
        let mut actual = BTreeMap::new();
        if let Err(e) = walk(&root, b"", &mut actual) {
            let message = format!("{LAYER_MODIFIED}: {}: cannot be read: {e}", root.display());
            return Some((vec![message], Vec::new()));
        }
        let root_user = nix::unistd::geteuid().is_root();
        let mut out = Vec::new();
        let mut inodes = Vec::new();
        for (path, want) in &expected {
            let parent_ok = match manifest::parent(path) {
                None => true,
                Some(p) => actual.get(p).is_some_and(|m: &fs::Metadata| m.is_dir()),
            };
            if !parent_ok {
                continue;
            }
            let Some(meta) = actual.get(path) else {
                let device = matches!(want, Expect::Entry(e) if matches!(e.kind, EntryKind::CharDevice | EntryKind::BlockDevice));
                if !device || root_user {
                    out.push(format!("{LAYER_MODIFIED}: {}: missing", shown(path)));
                }
                continue;
            };
            if let Some(what) = difference(&root, path, want, meta, options.quick) {
                out.push(format!("{LAYER_MODIFIED}: {}: {what}", shown(path)));
                if meta.is_file() && meta.nlink() > 1 {
                    inodes.push((meta.dev(), meta.ino()));
                }
            }
        }
        if let Some(prefix) = self.overlay_xattr_prefix() {
            for p in &opaque {
                let path = root.join(OsStr::from_bytes(p));
                if actual.get(p.as_slice()).is_some_and(|m| m.is_dir()) || p.is_empty() {
                    let marked = sys::lgetxattr(&path, &format!("{prefix}opaque"));
                    if marked.ok().flatten().as_deref() != Some(b"y") {
                        out.push(format!(
                            "{LAYER_MODIFIED}: {}: not marked opaque",
                            path.display()
                        ));
                    }
                }
            }
        }
        for path in actual.keys() {
            if expected.contains_key(path) {
                continue;
            }
            // Only the topmost of an unexpected subtree.
            if manifest::parent(path).is_some_and(|p| !expected.contains_key(p)) {
                continue;
            }
            out.push(format!(
                "{LAYER_MODIFIED}: {}: not in the layer",
                shown(path)
            ));
        }
        Some((out, inodes))
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

    /// Repairs what `scan` found; returns what was repaired and, for what
    /// was left, why.
    fn repair(&self, scan: &Scan, options: &CheckOptions) -> Result<(Vec<Problem>, Vec<Problem>)> {
        let records = self.records()?;
        let by_id: HashMap<&str, &Layer> =
            records.layers.iter().map(|l| (l.id.as_str(), l)).collect();
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for l in &records.layers {
            children.entry(l.parent.as_str()).or_default().push(&l.id);
        }
        // Damaged layers and everything above them.
        let mut doomed: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<String> = scan
            .ids(Kind::Layer, Remedy::Remove)
            .into_iter()
            .filter(|id| by_id.contains_key(id.as_str()))
            .collect();
        while let Some(id) = stack.pop() {
            if doomed.insert(id.clone()) {
                for child in children.get(id.as_str()).into_iter().flatten() {
                    stack.push(child.to_string());
                }
            }
        }
        let chain_hits = |top: &str, set: &BTreeSet<String>| {
            records.chain(&by_id, top).iter().any(|id| set.contains(id))
        };
        let bad_images: BTreeSet<String> = records
            .images
            .iter()
            .filter(|i| {
                scan.found.iter().any(|f| {
                    f.problem.kind == Kind::Image
                        && f.problem.id == i.id
                        && f.remedy == Remedy::Remove
                }) || chain_hits(&i.top_layer, &doomed)
            })
            .map(|i| i.id.clone())
            .collect();
        let bad_containers: BTreeSet<String> = records
            .containers
            .iter()
            .filter(|c| {
                scan.found.iter().any(|f| {
                    f.problem.kind == Kind::Container
                        && f.problem.id == c.id
                        && f.remedy == Remedy::Remove
                }) || chain_hits(&c.layer, &doomed)
                    || bad_images.contains(&c.image)
            })
            .map(|c| c.id.clone())
            .collect();
        let mut repaired = Vec::new();
        let mut done = |kind: Kind, id: &str, what: &str| {
            repaired.push(Problem {
                kind: kind.into(),
                id: id.to_string(),
                message: what.to_string(),
            })
        };
        let mut not_repaired = Vec::new();
        let mut left = |kind: Kind, id: &str, why: String| {
            not_repaired.push(Problem {
                kind: kind.into(),
                id: id.to_string(),
                message: why,
            })
        };

        // Containers first (only when forced), then images, then layers.
        let mut removed_containers = BTreeSet::new();
        for c in records
            .containers
            .iter()
            .filter(|c| bad_containers.contains(&c.id))
        {
            if !options.force {
                let why =
                    "not removed: it is damaged or uses damaged items (remove it with --force)";
                left(Kind::Container, &c.id, why.into());
                continue;
            }
            if records.mounted.contains(&c.layer) {
                let why = format!("not removed: its layer {} is mounted", c.layer);
                left(Kind::Container, &c.id, why);
                continue;
            }
            match self.delete_container(&c.id) {
                Ok(()) => {
                    removed_containers.insert(c.id.clone());
                    done(Kind::Container, &c.id, "removed");
                }
                Err(e) => left(Kind::Container, &c.id, format!("not removed: {e}")),
            }
        }
        let kept_containers: Vec<&Container> = records
            .containers
            .iter()
            .filter(|c| !removed_containers.contains(&c.id))
            .collect();
        let mut removed_images = BTreeSet::new();
        for image in records.images.iter().filter(|i| bad_images.contains(&i.id)) {
            if let Some(c) = kept_containers.iter().find(|c| c.image == image.id) {
                let why = format!("not removed: container {} uses it", c.id);
                left(Kind::Image, &image.id, why);
                continue;
            }
            if self.remove_image_record(&image.id)? {
                removed_images.insert(image.id.clone());
                done(Kind::Image, &image.id, "removed");
            }
        }

        // Layers: damaged ones (with what sits on them) and old unused
        // ones, unless something kept still needs them.
        let mut pinned: HashSet<String> = HashSet::new();
        let kept_tops = records
            .images
            .iter()
            .filter(|i| !removed_images.contains(&i.id))
            .map(|i| i.top_layer.as_str())
            .chain(kept_containers.iter().map(|c| c.layer.as_str()))
            .chain(records.mounted.iter().map(|m| m.as_str()));
        for top in kept_tops {
            pinned.extend(records.chain(&by_id, top));
        }
        let gone_with_containers: HashSet<&str> = records
            .containers
            .iter()
            .filter(|c| removed_containers.contains(&c.id))
            .map(|c| c.layer.as_str())
            .collect();
        let mut removable: BTreeSet<String> = doomed
            .iter()
            .cloned()
            .chain(scan.ids(Kind::Layer, Remedy::Unreferenced))
            .filter(|id| by_id.contains_key(id.as_str()))
            .filter(|id| !pinned.contains(id) && !gone_with_containers.contains(id.as_str()))
            .collect();
        // A layer goes only with every child it has.
        loop {
            let blocked: Vec<String> = removable
                .iter()
                .filter(|id| {
                    children
                        .get(id.as_str())
                        .into_iter()
                        .flatten()
                        .any(|c| !removable.contains(*c) && !gone_with_containers.contains(c))
                })
                .cloned()
                .collect();
            if blocked.is_empty() {
                break;
            }
            for id in blocked {
                removable.remove(&id);
            }
        }
        let depth = |id: &str| records.chain(&by_id, id).len();
        let mut order: Vec<String> = removable.iter().cloned().collect();
        order.sort_by_key(|id| std::cmp::Reverse(depth(id)));
        for id in &order {
            match self.delete_layer(id) {
                Ok(()) => done(Kind::Layer, id, "removed"),
                Err(e) => left(Kind::Layer, id, format!("not removed: {e}")),
            }
        }

        // Damaged materialized directories: evict and rebuild.
        let in_use: HashSet<String> = if self.options.driver == "overlay" {
            records
                .mounted
                .iter()
                .flat_map(|m| records.chain(&by_id, m))
                .collect()
        } else {
            records.mounted.clone()
        };
        for id in scan.ids(Kind::Layer, Remedy::Rebuild) {
            if removable.contains(&id) || doomed.contains(&id) || in_use.contains(&id) {
                continue;
            }
            if !by_id.get(id.as_str()).is_some_and(|l| l.sealed) {
                continue;
            }
            let inodes = scan.shared_inodes.get(&id).map(Vec::as_slice);
            match self.rebuild_materialized(&id, inodes.unwrap_or_default())? {
                Some(true) => done(Kind::Layer, &id, "materialized directory rebuilt"),
                Some(false) => done(Kind::Layer, &id, "materialized directory removed"),
                None => left(
                    Kind::Layer,
                    &id,
                    "materialized directory not rebuilt: a mount uses it".into(),
                ),
            }
        }

        // Driver entries that are not the layout's: removed (never what
        // they lead to); a sealed layer's directory is built again now,
        // unless a mount uses it (then the next mount builds it).
        for id in scan.ids(Kind::Layer, Remedy::Unlink) {
            if removable.contains(&id) || doomed.contains(&id) {
                continue;
            }
            let mut removed = true;
            for path in scan.misplaced.get(&id).into_iter().flatten() {
                if let Err(e) = self.write(|| remove_entry(path)) {
                    left(Kind::Layer, &id, format!("not repaired: {e}"));
                    removed = false;
                }
            }
            if !removed {
                continue;
            }
            let sealed = by_id.get(id.as_str()).is_some_and(|l| l.sealed);
            let rebuilt = sealed
                && !in_use.contains(&id)
                && self.chain(&id).is_ok_and(|chain| {
                    if self.options.driver == "overlay" {
                        self.prepare_overlay(&chain).is_ok()
                    } else {
                        self.prepare_vfs(&chain).is_ok()
                    }
                });
            let what = match (sealed, rebuilt) {
                (true, true) => "misplaced driver entries removed, materialized directory rebuilt",
                (true, false) => {
                    "misplaced driver entries removed; the next mount builds the directory"
                }
                (false, _) => "misplaced driver entries removed",
            };
            done(Kind::Layer, &id, what);
        }

        // Driver directories without a record.
        let stray = scan.ids(Kind::Layer, Remedy::Stray);
        if !stray.is_empty() {
            let now_known: HashSet<String> = self.layers()?.into_iter().map(|l| l.id).collect();
            for name in stray {
                if now_known.contains(&name) {
                    continue;
                }
                self.remove_driver_dirs(&name);
                done(Kind::Layer, &name, "directory removed");
            }
        }
        Ok((repaired, not_repaired))
    }

    /// Removes an image's record (and its directories) but none of its
    /// layers: those that are healthy stay. Refuses (returns false) when a
    /// container uses it.
    fn remove_image_record(&self, id: &str) -> Result<bool> {
        let mut tx = self.transaction()?;
        if tx.containers.records.iter().any(|c| c.image == id)
            || !tx.images.records.iter().any(|i| i.id == id)
        {
            return Ok(false);
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
    fn rebuild_materialized(&self, id: &str, shared: &[(u64, u64)]) -> Result<Option<bool>> {
        let overlay = self.options.driver == "overlay";
        let dir = self.layer_content_dir(id);
        if !self.is_materialized(id) {
            // Replaced since the scan: never renamed through a symlink.
            return Ok(Some(false));
        }
        let aside = {
            let layers = self.layer_records.lock()?;
            let mounts = self.mount_records.lock()?;
            let mut in_use = false;
            for m in mounts.records.iter().filter(|m| m.count > 0) {
                let mut next = layers.records.iter().find(|l| l.id == m.id);
                let mut steps = 0;
                while let Some(l) = next {
                    // A mounted delta uses the directory it is stacked on.
                    in_use |= l.id == id || self.stacked_on(&l.id).as_deref() == Some(id);
                    steps += 1;
                    if !overlay || steps > layers.records.len() {
                        break;
                    }
                    next = layers.records.iter().find(|p| p.id == l.parent);
                }
            }
            if in_use {
                return Ok(None);
            }
            self.write(|| durable::rename_aside(&dir))?
        };
        let _ = fs::remove_dir_all(&aside);
        if !shared.is_empty() {
            let shared: HashSet<(u64, u64)> = shared.iter().copied().collect();
            remove_inodes(&layout::objects_dir(self.graph_root()), &shared);
        }
        let rebuilt = self.chain(id).and_then(|chain| {
            if overlay {
                self.prepare_overlay(&chain)
            } else {
                self.prepare_vfs(&chain).map(drop)
            }
        });
        Ok(Some(rebuilt.is_ok()))
    }
}

/// Removes a misplaced driver entry itself (a symlink, a file): never
/// what it leads to.
fn remove_entry(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at("remove", path),
        _ => Ok(()),
    }
}

/// Removes the files below `dir` that are one of `inodes` (damaged
/// objects a damaged materialized file was a hardlink of).
fn remove_inodes(dir: &Path, inodes: &HashSet<(u64, u64)>) {
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

/// Lists `items` for one layer, at most [`PER_LAYER`] of them, then a
/// count of the rest.
fn push_capped(scan: &mut Scan, id: &str, items: Vec<String>, remedy: Remedy, what: &str) {
    let total = items.len();
    for message in items.iter().take(PER_LAYER) {
        scan.add(Kind::Layer, id, message.clone(), remedy);
    }
    if total > PER_LAYER {
        let first = items[PER_LAYER].split(':').next().unwrap_or_default();
        let message = format!("{first}: and {} more {what}", total - PER_LAYER);
        scan.add(Kind::Layer, id, message, remedy);
    }
}

/// What a path of a materialized directory should be.
enum Expect<'a> {
    /// A manifest entry.
    Entry(&'a Entry),
    /// An overlay whiteout: a 0/0 character device.
    Whiteout,
    /// A directory the layer needs but does not list.
    Dir,
}

/// Every path below `root` (relative, without the root), not following
/// symlinks.
fn walk(root: &Path, rel: &[u8], out: &mut BTreeMap<Vec<u8>, fs::Metadata>) -> std::io::Result<()> {
    for entry in fs::read_dir(root.join(OsStr::from_bytes(rel)))? {
        let entry = entry?;
        let name = entry.file_name();
        let child = if rel.is_empty() {
            name.as_bytes().to_vec()
        } else {
            [rel, b"/", name.as_bytes()].concat()
        };
        let meta = entry.metadata()?;
        let is_dir = meta.is_dir();
        out.insert(child.clone(), meta);
        if is_dir {
            walk(root, &child, out)?;
        }
    }
    Ok(())
}

fn kind_name(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_symlink() {
        "a symlink"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a fifo"
    } else {
        "a socket"
    }
}

/// How `meta` (the path `rel` below `root`) differs from what is expected.
fn difference(
    root: &Path,
    rel: &[u8],
    want: &Expect<'_>,
    meta: &fs::Metadata,
    quick: bool,
) -> Option<String> {
    let t = meta.file_type();
    let e = match want {
        Expect::Dir => {
            return (!t.is_dir()).then(|| format!("is {}, not a directory", kind_name(meta)))
        }
        Expect::Whiteout => {
            return (!(t.is_char_device() && meta.rdev() == 0))
                .then(|| format!("is {}, not a whiteout", kind_name(meta)))
        }
        Expect::Entry(e) => e,
    };
    let (fits, wanted) = match e.kind {
        EntryKind::Dir => (t.is_dir(), "a directory"),
        EntryKind::File => (t.is_file(), "a regular file"),
        EntryKind::Symlink => (t.is_symlink(), "a symlink"),
        EntryKind::Hardlink => (!t.is_dir(), "a hard link"),
        EntryKind::CharDevice => (t.is_char_device(), "a character device"),
        EntryKind::BlockDevice => (t.is_block_device(), "a block device"),
        EntryKind::Fifo => (t.is_fifo(), "a fifo"),
        EntryKind::Whiteout | EntryKind::Opaque => return None,
    };
    if !fits {
        return Some(format!("is {}, the layer has {wanted}", kind_name(meta)));
    }
    let mode = meta.mode() & 0o7777;
    let mode_matters = !matches!(e.kind, EntryKind::Symlink | EntryKind::Hardlink);
    if mode_matters && mode != e.mode & 0o7777 {
        return Some(format!(
            "mode {mode:o}, the layer has {:o}",
            e.mode & 0o7777
        ));
    }
    match e.kind {
        EntryKind::File => {
            if meta.len() != e.size {
                return Some(format!("size {}, the layer has {}", meta.len(), e.size));
            }
            if !quick {
                let path = root.join(OsStr::from_bytes(rel));
                match content_matches(&path, e) {
                    Ok(true) => {}
                    Ok(false) => return Some("content differs from the layer's".into()),
                    Err(err) => return Some(format!("cannot be read: {err}")),
                }
            }
        }
        EntryKind::Symlink => {
            let path = root.join(OsStr::from_bytes(rel));
            match fs::read_link(&path) {
                Ok(target) if target.as_os_str().as_bytes() == e.link.as_slice() => {}
                Ok(target) => {
                    return Some(format!(
                        "points to {:?}, the layer's to {:?}",
                        target,
                        String::from_utf8_lossy(&e.link)
                    ))
                }
                Err(err) => return Some(format!("cannot be read: {err}")),
            }
        }
        EntryKind::CharDevice | EntryKind::BlockDevice => {
            let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
            if (major, minor) != (e.dev_major, e.dev_minor) {
                return Some(format!(
                    "device {major}:{minor}, the layer has {}:{}",
                    e.dev_major, e.dev_minor
                ));
            }
        }
        _ => {}
    }
    None
}

/// Whether the file holds exactly the entry's chunks.
fn content_matches(path: &Path, e: &Entry) -> std::io::Result<bool> {
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut buf = Vec::new();
    for chunk in &e.chunks {
        buf.resize(chunk.len as usize, 0);
        match file.read_exact(&mut buf) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(err) => return Err(err),
        }
        if ChunkId::of(&buf) != chunk.id {
            return Ok(false);
        }
    }
    Ok(file.read(&mut [0u8; 1])? == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_capped_with_a_count() {
        let mut scan = Scan::default();
        let items: Vec<String> = (0..PER_LAYER + 3)
            .map(|i| format!("layer content incorrect digest: chunk {i} is damaged"))
            .collect();
        push_capped(&mut scan, "l", items, Remedy::Remove, "chunks");
        assert_eq!(scan.found.len(), PER_LAYER + 1);
        assert_eq!(
            scan.found.last().unwrap().problem.message,
            "layer content incorrect digest: and 3 more chunks"
        );
    }
}
