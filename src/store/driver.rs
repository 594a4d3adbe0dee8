//! The drivers' directories, built on demand from the pool.
//!
//! - overlay: `<graphroot>/overlay/<id>/diff` (a sealed layer in overlay
//!   format, or a live layer's upper directory), `work`, `merged`, `link`
//!   (the short name) and `<graphroot>/overlay/l/<short>` -> `../<id>/diff`,
//!   as upstream lays them out.
//! - vfs: `<graphroot>/vfs/dir/<id>`, the flattened tree of the layer's
//!   whole chain.
//!
//! Directories of sealed layers are caches: they can be removed and are
//! rebuilt from the manifests on the next mount.

use std::fs;
use std::path::{Path, PathBuf};

use super::layers::Layer;
use super::records::Locked;
use super::MountPoint;
use super::Store;
use crate::durable::{self, Flush};
use crate::error::{Error, IoContext, Result};
use crate::materialize::{BuildOptions, Format, Materializer};

/// The alphabet of upstream's short link names.
const SHORT_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

impl Store {
    /// `<graphroot>/<driver>`.
    pub(crate) fn driver_dir(&self) -> PathBuf {
        self.graph_root().join(&self.options.driver)
    }

    /// The directory that holds a layer's content for the driver.
    pub(crate) fn layer_content_dir(&self, id: &str) -> PathBuf {
        match self.options.driver.as_str() {
            "vfs" => self.driver_dir().join("dir").join(id),
            _ => self.driver_dir().join(id).join("diff"),
        }
    }

    /// The layer's chain, top first, as records.
    pub(crate) fn chain(&self, top: &str) -> Result<Vec<Layer>> {
        let layers = self.layers()?;
        let mut chain = Vec::new();
        let mut next = top.to_string();
        while !next.is_empty() {
            if chain.iter().any(|l: &Layer| l.id == next) {
                return Err(Error::Refused(format!(
                    "layer {top}: its parents form a cycle"
                )));
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
        Materializer::new(&self.pool, &self.graph_root().join("objects"))
    }

    fn sealed_manifest(&self, layer: &Layer) -> Result<crate::manifest::LayerManifest> {
        if !layer.sealed {
            return Err(Error::Refused(format!(
                "layer {}: a live layer below another layer is not supported yet (it must be sealed first)",
                layer.id
            )));
        }
        self.layer_manifest(layer)
    }

    /// The manifests of `layers` (a chain, top first), lowest first.
    pub(super) fn manifests_lowest_first(
        &self,
        layers: &[Layer],
    ) -> Result<Vec<crate::manifest::LayerManifest>> {
        layers
            .iter()
            .rev()
            .map(|l| self.sealed_manifest(l))
            .collect()
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
        durable::create_dir_all(&self.driver_dir().join("l"))?;
        for (i, layer) in chain.iter().enumerate() {
            let dir = self.driver_dir().join(&layer.id);
            let diff = dir.join("diff");
            if let Ok(base) = fs::read_to_string(self.base_file(&layer.id)) {
                // A delta whose base directory went away is rebuilt.
                if diff.is_dir() && !self.driver_dir().join(base).join("diff").is_dir() {
                    drop_dir(&diff)?;
                }
            }
            // A build's marker covers what is written for its layer (the
            // directory, `base`, `link`) until a settle makes it durable.
            let mut unsynced = None;
            if !diff.is_dir() {
                if layer.sealed {
                    // The layer's manifest and those of the layers it could
                    // be stacked on are read at the same time.
                    let (m, candidates) = rayon::join(
                        || self.sealed_manifest(layer),
                        || match stack {
                            true => self.base_candidates(layer),
                            false => Ok(Vec::new()),
                        },
                    );
                    let m = m?;
                    let lowers = self.manifests_lowest_first(&chain[i + 1..])?;
                    let lowers: Vec<_> = lowers.iter().collect();
                    // Not durable when built: the marker covers it.
                    unsynced = self.begin_unsynced(&layer.id)?;
                    let flush = flush_for(&unsynced);
                    let options = BuildOptions {
                        format: self.overlay_format(),
                        hardlinks: true,
                        durable: flush == Flush::Now,
                    };
                    durable::remove_file(&self.base_file(&layer.id))?;
                    if let Some(base) = super::stacking::pick_base(&m, candidates?) {
                        self.ensure_link(&base.id, Flush::Now)?;
                        durable::create_dir_all_flushed(&dir, flush)?;
                        let base_file = self.base_file(&layer.id);
                        durable::atomic_write_flushed(&base_file, base.id.as_bytes(), flush)?;
                        self.materializer()?
                            .build_overlay(&base.delta, &[&base.manifest], &diff, options)
                            .map_err(|e| e.for_layer(&layer.id))?;
                    } else {
                        self.materializer()?
                            .build_overlay(&m, &lowers, &diff, options)
                            .map_err(|e| e.for_layer(&layer.id))?;
                    }
                } else if i == 0 {
                    durable::create_dir_all(&diff)?;
                } else {
                    self.sealed_manifest(layer)?;
                }
            }
            let flush = flush_for(&unsynced);
            durable::create_dir_all_flushed(&dir.join("work"), flush)?;
            durable::create_dir_all_flushed(&dir.join("merged"), flush)?;
            self.ensure_link(&layer.id, flush)?;
            drop(unsynced);
        }
        Ok(())
    }

    /// Gives a layer's overlay directory its short link (`link` and
    /// `l/<short>` -> `../<id>/diff`) if it has none.
    fn ensure_link(&self, id: &str, flush: Flush) -> Result<()> {
        let link_file = self.driver_dir().join(id).join("link");
        if link_file.exists() {
            return Ok(());
        }
        let short = short_name();
        let link = self.driver_dir().join("l").join(&short);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("../{id}/diff"), &link).at("symlink", &link)?;
        durable::atomic_write_flushed(&link_file, short.as_bytes(), flush)
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
        if self.options.driver == "overlay" {
            if !self.stacked_above(id).is_empty() {
                return;
            }
            if let Ok(short) = self.short_link(id) {
                let _ = fs::remove_file(self.driver_dir().join("l").join(short));
            }
            let _ = fs::remove_dir_all(self.driver_dir().join(id));
        } else {
            let _ = fs::remove_dir_all(self.layer_content_dir(id));
        }
    }

    /// Refuses when any of `ids` is mounted: deleting it would pull its
    /// directory from under the mount. On success the mounts lock stays
    /// held (until the guard is dropped), so no mount of them can start
    /// before the caller has saved their removal: `mount` looks for the
    /// layer's record under that lock.
    pub(crate) fn lock_unmounted(&self, ids: &[String]) -> Result<Locked<'_, MountPoint>> {
        let mounts = self.mount_records.lock()?;
        for m in &mounts.records {
            if m.count > 0 && ids.contains(&m.id) {
                return Err(Error::Refused(format!(
                    "layer {}: it is mounted at {}; unmount it first",
                    m.id, m.path
                )));
            }
        }
        Ok(mounts)
    }

    /// The short link name of a layer (`<graphroot>/overlay/<id>/link`).
    pub(crate) fn short_link(&self, id: &str) -> Result<String> {
        let path = self.driver_dir().join(id).join("link");
        let short = fs::read_to_string(&path).at("read", &path)?;
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
    /// the filesystem cannot reflink).
    pub(crate) fn prepare_vfs(&self, chain: &[Layer]) -> Result<PathBuf> {
        let top = &chain[0];
        let dir = self.layer_content_dir(&top.id);
        if dir.is_dir() {
            return Ok(dir);
        }
        let sealed = if top.sealed { chain } else { &chain[1..] };
        let manifests = self.manifests_lowest_first(sealed)?;
        let refs: Vec<_> = manifests.iter().collect();
        self.materializer()?
            .build(
                &refs,
                &dir,
                BuildOptions {
                    format: Format::Flattened,
                    // A vfs tree is an ordinary directory anyone mounting it
                    // may write to: never hardlinks, which would carry
                    // writes into the objects other trees share.
                    hardlinks: false,
                    durable: true,
                },
            )
            .map_err(|e| name_needing_layer(e, sealed, &manifests))?;
        Ok(dir)
    }
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
            .any(|c| c.id.to_hex() == *id)
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

/// Removes a materialized directory so that nothing ever sees it half
/// removed: renamed away first (the next mount builds it again), then
/// deleted.
pub(super) fn drop_dir(dir: &Path) -> Result<()> {
    let away = durable::temp_sibling(dir);
    fs::rename(dir, &away).at("rename", dir)?;
    let _ = fs::remove_dir_all(&away);
    Ok(())
}

/// A random 26-character short name, as upstream's overlay driver uses.
fn short_name() -> String {
    let mut bytes = [0u8; 26];
    getrandom::getrandom(&mut bytes).expect("the kernel's random source is available");
    bytes
        .iter()
        .map(|b| SHORT_ALPHABET[*b as usize % SHORT_ALPHABET.len()] as char)
        .collect()
}
