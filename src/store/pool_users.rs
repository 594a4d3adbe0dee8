//! Who references the shared content: the chunk pool (`chunks/`), the
//! manifests (`manifests/<layer-id>`) and the object cache (`objects/`)
//! are shared by every driver under the graph root, so a manifest, chunk
//! or object is garbage only when no layer of any driver's records uses
//! it. Whatever removes one as unreferenced asks [`Store::pool_users`],
//! never only its own driver's records.
//!
//! Read-only additional image stores (`store/ro_stores.rs`) are not
//! among them: their layers reference their own pool and manifests, which
//! are never ours to remove, and what is built here for their mounts
//! (driver directories, cached objects) is kept by `gc` while their
//! records name the layer, whatever this set says.
//!
//! This module reads record files; it writes and removes nothing but a
//! manifest no record names any more ([`Store::remove_manifest`]).

use std::fs;
use std::path::PathBuf;

use super::layers::Layer;
use super::layout;
use super::records::RecordFile;
use super::Store;
use crate::error::{Error, Result};

/// The layers of one driver's records that reference the pool.
pub(crate) struct LayerSet {
    /// The graph root whose driver directories hold their materialized
    /// content.
    pub root: PathBuf,
    /// Their driver.
    pub driver: String,
    /// The layers, as their record file held them when read (incomplete
    /// ones included: an import in flight is one).
    pub layers: Vec<Layer>,
}

impl LayerSet {
    /// Whether the layer's content directory for this set's driver is
    /// there (its tree then holds files of the layer's objects).
    pub fn is_materialized(&self, id: &str) -> bool {
        layout::content_dir(&self.root, &self.driver, id).is_dir()
    }

    /// Whether a layer's materialized directory holds its whole chain's
    /// files (a vfs tree) rather than its own (an overlay `diff`).
    pub fn flattened(&self) -> bool {
        self.driver == "vfs"
    }
}

impl Store {
    /// Every layer that references the pool, manifests or objects: this
    /// store's driver's first, then those of every other `<drv>-layers/`
    /// under the graph root. Each record file is read under its shared
    /// lock, so it is one consistent snapshot; a caller that must not
    /// race an import holds the pool's sweep guard first (imports of every
    /// driver hold its shared side until their record is final). A
    /// record file that cannot be read is an error: what it references
    /// cannot be told from garbage.
    pub(crate) fn pool_users(&self) -> Result<Vec<LayerSet>> {
        let root = self.graph_root().to_path_buf();
        let mut sets = vec![LayerSet {
            root: root.clone(),
            driver: self.options.driver.clone(),
            layers: self.layers()?,
        }];
        for driver in layout::drivers_with_layers(&root) {
            if driver == self.options.driver {
                continue;
            }
            let layers = other_driver_records(&root, &driver)?.read()?;
            sets.push(LayerSet {
                root: root.clone(),
                driver,
                layers,
            });
        }
        Ok(sets)
    }

    /// The pool users of the split image store at `root` (a store of
    /// ours used as `DIR`, whose pool and manifests its layers
    /// reference): every driver's layers under it, this store's driver's
    /// included, each record file read under its shared lock.
    pub(crate) fn image_store_pool_users(&self, root: &std::path::Path) -> Result<Vec<LayerSet>> {
        layout::drivers_with_layers(root)
            .into_iter()
            .map(|driver| {
                Ok(LayerSet {
                    root: root.to_path_buf(),
                    layers: other_driver_records(root, &driver)?.read()?,
                    driver,
                })
            })
            .collect()
    }

    /// A layer of another driver's records with this ID, if any: its
    /// manifest is the same file as this driver's layer's. The record
    /// files are read as they are (each is only ever replaced whole),
    /// without their locks: callers may hold their own driver's record
    /// locks, and another driver's process may hold its own while it asks
    /// about ours.
    pub(crate) fn other_driver_layer(&self, id: &str) -> Result<Option<(String, Layer)>> {
        self.other_driver_layer_in(self.graph_root(), id)
    }

    /// [`Store::other_driver_layer`] in the store at `root` (the graph
    /// root, or the split image store's directory).
    pub(crate) fn other_driver_layer_in(
        &self,
        root: &std::path::Path,
        id: &str,
    ) -> Result<Option<(String, Layer)>> {
        for driver in layout::drivers_with_layers(root) {
            if driver == self.options.driver {
                continue;
            }
            let layers = other_driver_records(root, &driver)?.peek()?;
            if let Some(layer) = layers.into_iter().find(|l| l.id == id) {
                return Ok(Some((driver, layer)));
            }
        }
        Ok(None)
    }

    /// Refuses to publish `diff_digest` as layer `id`'s manifest when
    /// another driver's sealed layer of the same ID has other content:
    /// the manifest file is shared, and replacing it would change that
    /// layer. (Same content, as two drivers pulling one image get, is
    /// fine: the manifests are equivalent.)
    pub(crate) fn refuse_foreign_manifest(&self, id: &str, diff_digest: &str) -> Result<()> {
        match self.other_driver_layer(id)? {
            Some((driver, other)) if other.sealed && other.diff_digest != diff_digest => {
                Err(Error::ManifestShared {
                    layer: id.to_string(),
                    driver: driver.to_string(),
                    diff_digest: other.diff_digest,
                })
            }
            _ => Ok(()),
        }
    }

    /// Removes `manifests/<id>` of a layer this driver no longer has,
    /// unless another driver's record names a layer with the same ID
    /// (whose manifest it is too) or that cannot be told (a record file
    /// that cannot be read: `gc` removes it once it can).
    pub(crate) fn remove_manifest(&self, id: &str) {
        self.remove_manifest_in(self.graph_root(), id);
    }

    /// [`Store::remove_manifest`] in the store at `root` (the graph root,
    /// or the split image store's directory).
    pub(crate) fn remove_manifest_in(&self, root: &std::path::Path, id: &str) {
        match self.other_driver_layer_in(root, id) {
            Ok(None) => {
                let _ = fs::remove_file(layout::manifest_path(root, id));
            }
            Ok(Some(_)) => {}
            Err(e) => tracing::warn!(layer = %id, error = %e, "manifest kept"),
        }
    }
}

/// The layer records of `driver` under `root`.
fn other_driver_records(root: &std::path::Path, driver: &str) -> Result<RecordFile<Layer>> {
    RecordFile::open(
        &layout::layers_dir(root, driver),
        layout::LAYERS_JSON,
        layout::LAYERS_LOCK,
    )
}
