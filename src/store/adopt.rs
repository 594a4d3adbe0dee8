//! Adoption (`dedup`'s first step): layers other clients wrote (podman,
//! skopeo, buildah, the Go CLI) enter the chunk pool, and their files
//! become shared objects, without any change a Go client could see.
//!
//! A layer is a candidate when it has upstream's tar-split
//! (`<drv>-layers/<id>.tar-split.gz`), its directory (`overlay/<id>/diff`,
//! `vfs/dir/<id>`), a `diff-digest`, and no `manifests/<id>`. For each:
//!
//! 1. The exact tar is assembled from the tar-split and the directory
//!    (every file's CRC-64 checked) and imported into the pool as any tar
//!    is, raw headers included, so the pool gives the same tar back.
//! 2. Its digest and size must equal the record's `diff-digest` and
//!    `diff-size` (and, for a layer recorded uncompressed, its
//!    `compressed-diff-digest`); otherwise the layer is skipped and named
//!    in the report. No record is ever changed: the manifest takes the
//!    record's compressed digest, size and compression.
//! 3. Where `layer_links` allows it (the layer is read-only by contract,
//!    the driver is overlay, the filesystem has no reflinks, nothing
//!    writes into its directory), its files become hardlinks of the
//!    object cache ([`crate::materialize::Materializer::share_hardlinks`]);
//!    only linked into the cache, never replaced, while an overlay mount
//!    uses the directory as a lower one. Where reflinks work, `dedup`'s
//!    extent sharing that follows shares them instead.
//! 4. The chunks are published, then `manifests/<id>` (durable). The
//!    layer is pool-backed from then on: its manifest's diff digest is its
//!    record's.
//!
//! Never adopted: container layers, layers with a mount count in
//! `mountpoints.json`, layers an overlay mount writes into, layers left
//! incomplete (see `layer_links`).
//!
//! Crash safety: until the manifest is renamed into place the layer stays
//! a candidate, and the next `dedup` adopts it again (unreferenced chunks
//! and temporary files are `gc`'s). Each file replacement is one
//! `rename(2)` of a hardlink made under `objects/tmp/`, so every path
//! names either its old file or an object with the same content and
//! metadata. A crash between a replacement and the end of the layer
//! leaves that directory's mtime at the time of the replacement (a
//! directory's times are put back after its files).

use std::fs::{self, File};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use super::layer_links::{LayerUses, Sharing};
use super::layers::Layer;
use super::layout;
use super::Store;
use crate::durable::{Flush, PendingFile};
use crate::error::Result;
use crate::manifest::tar_split::{stage_tar_split, DirectoryFiles};
use crate::manifest::{self, Compression, LayerManifest};
use crate::materialize::{ShareOptions, ShareStats};

/// A layer `dedup` found to adopt and did not, and why.
#[derive(Clone, Debug, Serialize)]
pub struct SkippedLayer {
    /// The layer's ID.
    #[serde(rename = "Layer")]
    pub layer: String,
    /// Why it was not adopted.
    #[serde(rename = "Reason")]
    pub reason: String,
}

/// What adoption did.
#[derive(Clone, Debug, Default)]
pub(crate) struct Adoption {
    /// Layers adopted.
    pub adopted: Vec<String>,
    /// Candidates left as they were.
    pub skipped: Vec<SkippedLayer>,
    /// Bytes written to the pool (packs) and manifests.
    pub stored: u64,
    /// What sharing files by hardlinks did, over every adopted layer.
    pub shared: ShareStats,
}

impl Store {
    /// Adopts every candidate layer (see the module documentation).
    /// `layers` are the records as read, `uses` what uses their
    /// directories; the store is writable.
    pub(crate) fn adopt_layers(&self, layers: &[Layer], uses: &LayerUses) -> Result<Adoption> {
        let mut report = Adoption::default();
        let candidates = layers.iter().filter(|l| self.is_candidate(l));
        for layer in candidates {
            let dir = self.layer_content_dir(&layer.id);
            let sharing = match uses.sharing(layer, &dir) {
                Ok(sharing) => sharing,
                Err(reason) => {
                    report.skip(layer, reason);
                    continue;
                }
            };
            tracing::debug!(layer = %layer.id, ?sharing, "adopting");
            match self.adopt_layer(layer, &dir, sharing) {
                Ok(Ok((stored, shared))) => {
                    tracing::debug!(layer = %layer.id, stored, ?shared, "adopted");
                    report.adopted.push(layer.id.clone());
                    report.stored += stored;
                    report.shared.add(&shared);
                }
                Ok(Err(reason)) => report.skip(layer, &reason),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Whether `layer` is another client's layer that is not in the pool.
    fn is_candidate(&self, layer: &Layer) -> bool {
        !layer.is_incomplete()
            && !layer.diff_digest.is_empty()
            && layout::owns_paths(&layer.id)
            && !self.manifest_path(&layer.id).exists()
            && fs::symlink_metadata(self.tar_split_path(&layer.id)).is_ok_and(|m| m.is_file())
            && self.is_materialized(&layer.id)
    }

    /// Adopts one layer: the bytes it stored and what sharing did, or why
    /// it was left as it was. Errors are this store's own (a failed write).
    fn adopt_layer(
        &self,
        layer: &Layer,
        dir: &Path,
        sharing: Sharing,
    ) -> Result<std::result::Result<(u64, ShareStats), String>> {
        let since = SystemTime::now();
        // Held until the manifest is published: the sweep must not take
        // the chunks this adoption wrote or reused.
        let guard = self.pool.write_guard()?;
        let path = self.tar_split_path(&layer.id);
        let tar_split = match File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => return Ok(Err(format!("{}: {e}", path.display()))),
        };
        let mut files = match DirectoryFiles::open(dir) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let staged = match stage_tar_split(tar_split, &mut files, &self.pool, &()) {
            Ok(staged) => staged,
            Err(e) if e.latches() => return Err(e),
            Err(e) => return Ok(Err(format!("its tar cannot be adopted: {e}"))),
        };
        let mut m = staged.manifest;
        if let Some(reason) = record_mismatch(layer, &m) {
            return Ok(Err(reason));
        }
        m.parent = (!layer.parent.is_empty()).then(|| layer.parent.clone());
        if !layer.compressed_digest.is_empty() {
            m.compressed_digest = layer.compressed_digest.clone();
            m.compressed_size = layer.compressed_size;
            m.compression = layer.compression;
        }
        if let Err(e) = self.refuse_foreign_manifest(&layer.id, &m.diff_digest) {
            return Ok(Err(e.to_string()));
        }
        // Files are shared before the manifest is published: until it is,
        // the layer stays a candidate, so a run cut short is taken up
        // again by the next one, whose sharing skips what is shared.
        let options = ShareOptions {
            replace: sharing == Sharing::Hardlinks,
            unchanged_since: since,
            verify: false,
        };
        let shared = match sharing {
            Sharing::None => ShareStats::default(),
            _ => self.write(|| self.share_hardlinks(&m, dir, options))?,
        };
        let bytes = manifest::encode(&m);
        let manifest_file =
            PendingFile::create(&self.manifest_path(&layer.id), bytes.len() as u64)?;
        let stats = self.write(|| staged.chunks.publish())?;
        self.write(|| manifest_file.commit(&bytes, Flush::Now))?;
        drop(guard);
        let stored = stats.stored_bytes + bytes.len() as u64;
        Ok(Ok((stored, shared)))
    }
}

impl Adoption {
    fn skip(&mut self, layer: &Layer, reason: &str) {
        tracing::debug!(layer = %layer.id, reason, "not adopted");
        self.skipped.push(SkippedLayer {
            layer: layer.id.clone(),
            reason: reason.to_string(),
        });
    }
}

/// How the tar assembled from a layer's tar-split differs from its
/// record, if it does.
fn record_mismatch(layer: &Layer, m: &LayerManifest) -> Option<String> {
    if m.diff_digest != layer.diff_digest {
        return Some(format!(
            "its tar has digest {}, its record says {}",
            m.diff_digest, layer.diff_digest
        ));
    }
    if layer.diff_size != 0 && m.diff_size != layer.diff_size {
        return Some(format!(
            "its tar has {} bytes, its record says {}",
            m.diff_size, layer.diff_size
        ));
    }
    let uncompressed = layer.compression == Compression::None;
    if uncompressed
        && !layer.compressed_digest.is_empty()
        && layer.compressed_digest != m.diff_digest
    {
        return Some(format!(
            "its tar has digest {}, its record's compressed digest (uncompressed) is {}",
            m.diff_digest, layer.compressed_digest
        ));
    }
    None
}
