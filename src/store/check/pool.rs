//! `check`'s part for the pool's own files: pack indexes that are missing
//! or cannot be read, and a damaged `chunks/config.json`.
//!
//! `check` names a pack whose index cannot be read, and a pack without an
//! index (while an import runs, only one whose chunks layers lack: the
//! import may not have written its index yet), with the layers that lack
//! its chunks. A pack without an index that no layer needs and whose
//! chunk tables account for all of it is what a killed import leaves:
//! garbage `gc` sweeps, not a problem.
//! `check --repair`, before it judges any layer and holding the sweep
//! guard (no import runs, so a pack without an index has lost it), indexes
//! every such pack again from the pack itself: its chunk tables (format 2)
//! or, for frames without one (format 1), the chunks the manifests list.
//! Every chunk is checked against its hash. A pack in which nothing can be
//! read goes; the layers that then lack content are removed by the layer
//! repair as any damaged layer. A damaged `config.json` is written again
//! from the pinned defaults with the chunker parameters the manifests
//! record.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::{CheckOptions, Problem, Remedy, ScanReport};
use crate::chunks::{ChunkId, ChunkerParams, KnownChunks, CHUNKER_ALGORITHM};
use crate::error::Result;
use crate::manifest::LayerManifest;
use crate::store::layout;
use crate::store::{Kind, Store};

/// What a problem is about: a layer, an image, a container, a pack of the
/// chunk pool, or the pool itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// A layer.
    Layer,
    /// An image.
    Image,
    /// A container.
    Container,
    /// A pack file (`chunks/packs/<id>.pack`) and its index.
    Pack,
    /// The pool's files (`chunks/config.json`).
    Pool,
}

impl Subject {
    /// `layer`, `image`, `container`, `pack` or `pool`.
    pub fn name(self) -> &'static str {
        match self {
            Subject::Layer => "layer",
            Subject::Image => "image",
            Subject::Container => "container",
            Subject::Pack => "pack",
            Subject::Pool => "pool",
        }
    }
}

impl From<Kind> for Subject {
    fn from(kind: Kind) -> Subject {
        match kind {
            Kind::Layer => Subject::Layer,
            Kind::Image => Subject::Image,
            Kind::Container => Subject::Container,
        }
    }
}

impl PartialEq<Kind> for Subject {
    fn eq(&self, kind: &Kind) -> bool {
        *self == Subject::from(*kind)
    }
}

/// The pool's part of a scan.
#[derive(Default)]
pub(super) struct PoolScan {
    /// Per layer, the chunks its manifest lists that the pool lacks.
    pub missing: BTreeMap<String, BTreeSet<ChunkId>>,
    /// Every chunk the manifests list (ID and length).
    known: Vec<(ChunkId, u32)>,
    /// The chunker parameters the manifests record, with how many record
    /// each.
    chunkers: Vec<(ChunkerParams, usize)>,
}

/// The name `config.json` problems carry.
const CONFIG: &str = "config.json";

/// At most this many layers are named per pack.
const LAYERS_NAMED: usize = 8;

impl Store {
    /// Adds the pool's problems to `scan`, whose layer part is done
    /// (`manifests` are the sealed layers' manifests), before the others:
    /// they are the cause of the layers' missing chunks.
    pub(super) fn scan_pool(
        &self,
        scan: &mut ScanReport,
        manifests: &HashMap<String, Arc<LayerManifest>>,
        options: &CheckOptions,
    ) -> Result<()> {
        let before = scan.found.len();
        self.find_pool_problems(scan, manifests, options)?;
        let added = scan.found.len() - before;
        scan.found.rotate_right(added);
        Ok(())
    }

    fn find_pool_problems(
        &self,
        scan: &mut ScanReport,
        manifests: &HashMap<String, Arc<LayerManifest>>,
        options: &CheckOptions,
    ) -> Result<()> {
        for m in manifests.values() {
            let chunks = m.entries.iter().flat_map(|e| &e.chunks);
            scan.pool.known.extend(chunks.map(|c| (c.id, c.len)));
            if m.chunker_algorithm == CHUNKER_ALGORITHM {
                match scan.pool.chunkers.iter_mut().find(|(p, _)| *p == m.chunker) {
                    Some((_, n)) => *n += 1,
                    None => scan.pool.chunkers.push((m.chunker, 1)),
                }
            }
        }
        if let Some(why) = self.pool.config_damage() {
            let message = format!(
                "{}: {why}: the default parameters are in force until `check --repair` writes it again",
                layout::pool_dir(self.graph_root()).join(CONFIG).display()
            );
            scan.add(Subject::Pool, CONFIG, message, Remedy::Pool);
        }
        // With no import running, a pack without an index has lost it;
        // otherwise it may be one an import has not indexed yet.
        let (unindexed, idle) = match self.pool.unindexed_if_idle()? {
            Some(unindexed) => (unindexed, true),
            None => (self.pool.unindexed()?, false),
        };
        if unindexed.is_empty() {
            return Ok(());
        }
        // Which layers lack the pack's chunks: reading the pack tells.
        let known = (!options.quick).then(|| KnownChunks::new(scan.pool.known.iter().copied()));
        for pack in unindexed {
            let holds: HashSet<ChunkId> = match &known {
                Some(known) => match self.pool.scan_pack(&pack.name, Some(known)) {
                    Ok(Some(found)) => found.entries.iter().map(|e| e.id).collect(),
                    _ => HashSet::new(),
                },
                None => HashSet::new(),
            };
            let users: Vec<&String> = scan
                .pool
                .missing
                .iter()
                .filter(|(_, ids)| ids.iter().any(|id| holds.contains(id)))
                .map(|(layer, _)| layer)
                .collect();
            let mut message = match &pack.damage {
                Some(why) => format!("index cannot be read: {why}"),
                // Maybe an import between publishing the pack and its
                // index.
                None if users.is_empty() && !idle => continue,
                // What a killed import left: no layer needs it and `gc`
                // indexes it from its chunk tables and sweeps it, as any
                // garbage.
                None if users.is_empty() && self.gc_sweeps(&pack.name, scan, options) => continue,
                None => format!(
                    "index {} is missing",
                    self.pool.index_path(&pack.name).display()
                ),
            };
            if !users.is_empty() {
                let mut named: Vec<&str> = users
                    .iter()
                    .take(LAYERS_NAMED)
                    .map(|s| s.as_str())
                    .collect();
                let more = format!("and {} more", users.len().saturating_sub(LAYERS_NAMED));
                if users.len() > LAYERS_NAMED {
                    named.push(&more);
                }
                message.push_str(&format!(
                    "; layers lacking its chunks: {}",
                    named.join(", ")
                ));
            }
            scan.add(Subject::Pack, &pack.name, message, Remedy::Pool);
        }
        Ok(())
    }

    /// Whether `gc` takes care of unindexed pack `name` that no layer
    /// needs: its chunk tables account for all of it (a quick check does
    /// not read it, and leaves it to `gc` while no layer lacks a chunk).
    fn gc_sweeps(&self, name: &str, scan: &ScanReport, options: &CheckOptions) -> bool {
        if options.quick {
            return scan.pool.missing.is_empty();
        }
        matches!(self.pool.scan_pack(name, None), Ok(Some(found)) if found.lost.is_empty())
    }

    /// Repairs the pool's files (see the module documentation); returns
    /// what was repaired and what was left, with why.
    pub(super) fn repair_pool(&self, scan: &ScanReport) -> Result<(Vec<Problem>, Vec<Problem>)> {
        let mut repaired = Vec::new();
        let mut left = Vec::new();
        let problem = |kind: Subject, id: &str, message: String| Problem {
            kind,
            id: id.to_string(),
            message,
        };
        if self.pool.config_damage().is_some() {
            // The parameters most manifests record, so that new imports
            // keep sharing chunks with the old ones.
            let chunker = scan
                .pool
                .chunkers
                .iter()
                .max_by_key(|(_, n)| *n)
                .map_or_else(ChunkerParams::default, |(p, _)| *p);
            self.pool.rewrite_config(chunker)?;
            let message = format!(
                "written again from the defaults, with the chunker parameters {}/{}/{}",
                chunker.min, chunker.avg, chunker.max
            );
            repaired.push(problem(Subject::Pool, CONFIG, message));
        }
        let lacking = !scan.pool.missing.is_empty()
            || scan.found.iter().any(|f| f.problem.kind == Subject::Pack);
        if !lacking {
            return Ok((repaired, left));
        }
        let guard = self.pool.sweep_guard()?;
        // No import runs now: a pack without an index has lost it.
        let unindexed = self.pool.unindexed()?;
        if unindexed.is_empty() {
            return Ok((repaired, left));
        }
        let known = KnownChunks::new(scan.pool.known.iter().copied());
        for pack in unindexed {
            match self.pool.scan_pack(&pack.name, Some(&known)) {
                Ok(Some(found)) if !found.entries.is_empty() => {
                    self.pool.reindex(&guard, &pack.name, &found)?;
                    let mut message = format!(
                        "index rebuilt from the pack: {} chunks",
                        found.entries.len()
                    );
                    if !found.lost.is_empty() {
                        message.push_str(&format!("; not recovered: {}", found.lost.join("; ")));
                    }
                    repaired.push(problem(Subject::Pack, &pack.name, message));
                }
                Ok(_) => {
                    self.pool.drop_pack(&guard, &pack.name)?;
                    let message = "removed: no chunk in it can be read".to_string();
                    repaired.push(problem(Subject::Pack, &pack.name, message));
                }
                Err(e) => left.push(problem(
                    Subject::Pack,
                    &pack.name,
                    format!("not repaired: {e}"),
                )),
            }
        }
        Ok((repaired, left))
    }
}
