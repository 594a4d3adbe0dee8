//! Where a layer's content lives, derived from what is on disk and never
//! from a record key only we write (Go clients rewrite `layers.json` and
//! drop keys they do not know):
//!
//! - pool-backed ("sealed"): `manifests/<id>` exists and records the diff
//!   digest the layer record has. The content is the manifest; the
//!   driver's directory is a cache built from it.
//! - directory-backed ("live"): everything else. The driver's directory
//!   (`overlay/<id>/diff`, `vfs/dir/<id>`) is the content.
//! - a container's layer: a container record's `layer` names it.
//!
//! Reading a manifest's digest costs a read of its first bytes; the
//! answer is kept per manifest file while its inode, size and times stay
//! the same.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::layers::Layer;
use super::layout;
use crate::file_stamp::{stamp, FileStamp};
use crate::manifest;
use crate::poison::Unpoisoned;

/// Manifest path -> (its stamp, the diff digest it records).
type Digests = HashMap<PathBuf, (FileStamp, Option<String>)>;
static DIGESTS: Mutex<Option<Digests>> = Mutex::new(None);

/// The diff digest the manifest at `path` records: `None` when there is
/// no manifest, `Some(None)` when one is there but cannot be read.
fn manifest_digest(path: &Path) -> Option<Option<String>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let stamp = stamp(&meta);
    if let Some((s, digest)) = DIGESTS.lock_unpoisoned().as_ref().and_then(|m| m.get(path)) {
        if *s == stamp {
            return Some(digest.clone());
        }
    }
    let digest = manifest::read_diff_digest(path);
    DIGESTS
        .lock_unpoisoned()
        .get_or_insert_with(HashMap::new)
        .insert(path.to_path_buf(), (stamp, digest.clone()));
    Some(digest)
}

/// Whether `layer` (of any driver under `graph`) is pool-backed: its
/// manifest exists and records the layer's diff digest. A manifest that
/// cannot be read counts as the layer's (damaged: reading its content
/// fails, and `check` reports it), never as a directory-backed layer's.
pub(crate) fn pool_backed(graph: &Path, layer: &Layer) -> bool {
    if layer.is_incomplete() || layer.diff_digest.is_empty() {
        return false;
    }
    match manifest_digest(&layout::manifest_path(graph, &layer.id)) {
        None => false,
        Some(None) => true,
        Some(Some(d)) => d == layer.diff_digest,
    }
}

/// Fills in every record's derived state (`sealed`).
pub(crate) fn derive(graph: &Path, layers: &mut [Layer]) {
    for layer in layers {
        layer.sealed = pool_backed(graph, layer);
    }
}
