//! Layer directories whose files `dedup` may turn into hardlinks of the
//! object cache, and the sharing of those of our own layers.
//!
//! A layer's directory may share inodes with `objects/` only where it is
//! never written: the layer is read-only by contract (it has a child, is
//! an image's top layer, or was made `--readonly`), and the driver is
//! overlay on a filesystem without reflinks (with reflinks, `dedup`'s
//! extent sharing shares files instead, and vfs trees are written in
//! place by whoever mounts them). Never touched: container layers,
//! layers with a mount count in `mountpoints.json`, layers an overlay
//! mount in the kernel's mount table writes into (its `upperdir`). A
//! layer an overlay mount uses as a lower directory only has its files
//! linked into the cache, never replaced, while it is mounted.
//!
//! Adoption (`adopt.rs`) shares the files of the layers it adopts. Our
//! own pool-backed layers' directories are built with hardlinks when
//! they are read-only by contract at the time; one built earlier, while
//! it could still be written (at import under `materialize = "always"`,
//! before it had an image or a child), holds copies. `dedup` shares
//! those too, after comparing every file with its content in the pool.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::layers::Layer;
use super::layout;
use super::Store;
use crate::error::Result;
use crate::manifest::LayerManifest;
use crate::materialize::{Materializer, ShareOptions, ShareStats};

/// How a layer's files may be shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sharing {
    /// By hardlinks, replacing files.
    Hardlinks,
    /// By hardlinks, only linking files into the cache (a mounted lower).
    LinkInOnly,
    /// Not here (reflinks share them later, or nothing may).
    None,
}

/// What uses the layers' directories now, as far as sharing is
/// concerned.
pub(crate) struct LayerUses {
    containers: HashSet<String>,
    read_only: HashSet<String>,
    mounted: HashSet<String>,
    uppers: HashSet<PathBuf>,
    lowers: HashSet<PathBuf>,
    hardlinks: bool,
}

impl LayerUses {
    /// How the files of `layer`'s directory `dir` may be shared, or why
    /// the directory may not be touched at all.
    pub fn sharing(&self, layer: &Layer, dir: &Path) -> std::result::Result<Sharing, &'static str> {
        let canonical = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if self.containers.contains(&layer.id) {
            return Err("a container's layer");
        }
        if self.mounted.contains(&layer.id) {
            return Err("mounted");
        }
        if self.uppers.contains(&canonical) {
            return Err("an overlay mount writes into its directory");
        }
        let read_only = layer.read_only || self.read_only.contains(&layer.id);
        Ok(
            match (
                self.hardlinks && read_only,
                self.lowers.contains(&canonical),
            ) {
                (false, _) => Sharing::None,
                (true, false) => Sharing::Hardlinks,
                (true, true) => Sharing::LinkInOnly,
            },
        )
    }
}

impl Store {
    /// What uses the directories of `layers` (the records as read).
    pub(crate) fn layer_uses(&self, layers: &[Layer]) -> Result<LayerUses> {
        let containers = self.containers()?.into_iter().map(|c| c.layer).collect();
        let mut read_only: HashSet<String> = self
            .images()?
            .into_iter()
            .map(|i| i.top_layer)
            .filter(|t| !t.is_empty())
            .collect();
        read_only.extend(layers.iter().map(|l| l.parent.clone()));
        let mounted = self
            .mounts()?
            .into_iter()
            .filter(|m| m.count > 0)
            .map(|m| m.id)
            .collect();
        let (uppers, lowers) = super::host_mounts::overlay_uppers_and_lowers(&self.driver_dir());
        let hardlinks = self.options.driver == "overlay" && !self.materializer()?.can_reflink();
        Ok(LayerUses {
            containers,
            read_only,
            mounted,
            uppers,
            lowers,
            hardlinks,
        })
    }

    /// Shares the files of our own pool-backed layers' directories that
    /// may be shared (see the module docs), each file compared with the
    /// pool first; `except` (layers just adopted, already shared) are
    /// left out.
    pub(crate) fn link_own_layers(
        &self,
        layers: &[Layer],
        uses: &LayerUses,
        except: &HashSet<&str>,
    ) -> Result<ShareStats> {
        let mut total = ShareStats::default();
        for layer in layers {
            if !layer.sealed || layer.is_incomplete() || except.contains(layer.id.as_str()) {
                continue;
            }
            let dir = self.layer_content_dir(&layer.id);
            if !self.is_materialized(&layer.id) {
                continue;
            }
            let replace = match uses.sharing(layer, &dir) {
                Ok(Sharing::Hardlinks) => true,
                Ok(Sharing::LinkInOnly) => false,
                Ok(Sharing::None) | Err(_) => continue,
            };
            let Ok(m) = self.layer_manifest(layer) else {
                // `check` reports it.
                continue;
            };
            let options = ShareOptions {
                replace,
                unchanged_since: SystemTime::now(),
                verify: true,
            };
            let shared = self.write(|| self.share_hardlinks(&m, &dir, options))?;
            tracing::debug!(layer = %layer.id, ?shared, "own layer shared");
            total.add(&shared);
        }
        Ok(total)
    }

    /// [`Materializer::share_hardlinks`] of `dir`, a layer directory,
    /// reached where it and `objects/` are on one mount
    /// ([`Store::root_view`]).
    pub(crate) fn share_hardlinks(
        &self,
        m: &LayerManifest,
        dir: &Path,
        options: ShareOptions,
    ) -> Result<ShareStats> {
        let view = self.root_view();
        let objects = view.path(&layout::objects_dir(self.graph_root()));
        Materializer::new(&self.pool, &objects)?.share_hardlinks(m, &view.path(dir), options)
    }
}
