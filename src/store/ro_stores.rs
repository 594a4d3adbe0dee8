//! Read-only additional image stores (`--storage-opt <drv>.imagestore=DIR`,
//! `additionalimagestores` in `storage.conf`), and under a split image
//! store (`--image-store DIR`) the graph root's images and `DIR`'s layers:
//! their layer and image records, read and never written (but for
//! `delete-image` of the graph root's images, see `store/images.rs`).
//!
//! A read-only store is another graph root with the same layout (ours or
//! a Go client's): `<root>/<drv>-layers/layers.json`,
//! `<root>/<drv>-images/images.json`, and the layers' content as its
//! writer left it: driver directories (`overlay/<id>/diff`, `vfs/dir/<id>`)
//! used in place, or, for layers of our pool, `manifests/<id>` with the
//! chunks of `chunks/` read in place. Nothing under such a root is ever
//! created, written, locked exclusively or removed: lock files are opened
//! read-only and only when they exist (a kind whose lock file is missing
//! has no records), and the pool is opened without creating anything.
//! What a mount needs built from such a layer's manifest is built in the
//! writable store's driver directories under the layer's ID
//! (`store/driver.rs`), where `gc` and `check` count it as known.
//!
//! Records read from here carry the store's root in `read_only_store`,
//! so that every caller can tell them from the writable store's and find
//! their content. This module owns opening and reading the stores and
//! the lookups that span them; the writes that refuse them live with
//! each operation.

use std::path::{Path, PathBuf};

use super::images::Image;
use super::item::find;
use super::kind::Kind;
use super::layers::Layer;
use super::layout;
use super::lock::LockFile;
use super::records::RecordFile;
use super::Store;
use crate::chunks::ChunkPool;
use crate::error::{Error, Result};

/// One read-only store.
pub(crate) struct RoStore {
    /// Its graph root.
    pub root: PathBuf,
    layers: Option<RecordFile<Layer>>,
    images: Option<RecordFile<Image>>,
    /// Its chunk pool, when it has one (a store we wrote).
    pub pool: Option<ChunkPool>,
    /// Whether its images may be deleted: the graph root's under a split
    /// image store, which upstream keeps among its writable image stores.
    images_deletable: bool,
    /// Whether its layers' records may be written: the split image
    /// store's, which upstream keeps in its one writable layer store.
    layers_writable: bool,
}

impl RoStore {
    /// Opens the store at `root` for `driver`, reading only.
    pub fn open(root: &Path, driver: &str) -> Result<RoStore> {
        let meta = std::fs::metadata(root).map_err(|e| {
            Error::Config(format!(
                "{}: can't stat the image store directory: {e}",
                root.display()
            ))
        })?;
        if !meta.is_dir() {
            return Err(Error::Config(format!(
                "{}: an image store must be a directory",
                root.display()
            )));
        }
        let layers = open_records(
            &layout::layers_dir(root, driver),
            layout::LAYERS_JSON,
            layout::LAYERS_LOCK,
        )?;
        let images = open_records(
            &layout::images_dir(root, driver),
            layout::IMAGES_JSON,
            layout::IMAGES_LOCK,
        )?;
        let pool_dir = layout::pool_dir(root);
        let pool = match pool_dir.is_dir() {
            true => Some(ChunkPool::open(&pool_dir, false)?),
            false => None,
        };
        Ok(RoStore {
            root: root.to_path_buf(),
            layers,
            images,
            pool,
            images_deletable: false,
            layers_writable: false,
        })
    }

    /// The split image store's directory: its layers only (its images
    /// are the writable store's). Upstream keeps these layers (those it
    /// creates read-only, such as pulled ones) in its one writable layer
    /// store, beside the graph root's: when the store is `writable`, their
    /// records are opened for writing (`<drv>-layers/` and its lock made,
    /// as upstream makes them), and names, metadata, big data and deletes
    /// change them there. Their content stays where its writer put it.
    pub fn image_store(root: &Path, driver: &str, writable: bool) -> Result<RoStore> {
        let mut store = RoStore::open(root, driver)?;
        store.images = None;
        if writable {
            let dir = layout::layers_dir(root, driver);
            crate::durable::create_dir_all(&dir)?;
            store.layers = Some(RecordFile::open(
                &dir,
                layout::LAYERS_JSON,
                layout::LAYERS_LOCK,
            )?);
            store.layers_writable = true;
        }
        Ok(store)
    }

    /// The graph root under a split image store: its images only (its
    /// layers are the writable store's), which are found and listed as a
    /// read-only store's but may be deleted, as upstream's `DeleteImage`
    /// deletes from every writable image store.
    pub fn graph_images(root: &Path, driver: &str) -> Result<RoStore> {
        let dir = layout::images_dir(root, driver);
        let images = match dir.is_dir() {
            true => Some(RecordFile::open(
                &dir,
                layout::IMAGES_JSON,
                layout::IMAGES_LOCK,
            )?),
            false => None,
        };
        Ok(RoStore {
            root: root.to_path_buf(),
            layers: None,
            images,
            pool: None,
            images_deletable: true,
            layers_writable: false,
        })
    }

    /// Its image records, when its images may be deleted.
    pub fn deletable_images(&self) -> Option<&RecordFile<Image>> {
        self.images.as_ref().filter(|_| self.images_deletable)
    }

    /// Its layer records, when they may be written.
    pub fn writable_layers(&self) -> Option<&RecordFile<Layer>> {
        self.layers.as_ref().filter(|_| self.layers_writable)
    }

    /// Its layers, marked as its own.
    pub fn layers(&self) -> Result<Vec<Layer>> {
        self.read_marked(&self.layers, |l| &mut l.read_only_store)
    }

    /// Its images, marked as its own.
    pub fn images(&self) -> Result<Vec<Image>> {
        self.read_marked(&self.images, |i| &mut i.read_only_store)
    }

    /// The records of `file` (none without one), each with this store's
    /// root in the field `mark` gives.
    fn read_marked<T>(
        &self,
        file: &Option<RecordFile<T>>,
        mark: fn(&mut T) -> &mut Option<PathBuf>,
    ) -> Result<Vec<T>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Clone + super::records::Record,
    {
        let mut records = match file {
            Some(file) => file.read()?,
            None => Vec::new(),
        };
        for record in &mut records {
            *mark(record) = Some(self.root.clone());
        }
        Ok(records)
    }
}

/// The images of `stores`, in order, each marked as its store's.
fn images_of<'a>(stores: impl Iterator<Item = &'a RoStore>) -> Result<Vec<Image>> {
    let mut images = Vec::new();
    for ro in stores {
        images.extend(ro.images()?);
    }
    Ok(images)
}

/// The record file in `dir`, when its lock file is there (opened
/// read-only: never created here).
fn open_records<T>(dir: &Path, name: &str, lock: &str) -> Result<Option<RecordFile<T>>>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone + super::records::Record,
{
    let lock_path = dir.join(lock);
    if !lock_path.is_file() {
        return Ok(None);
    }
    let lock = LockFile::open_read_only(&lock_path)?;
    Ok(Some(RecordFile::with_lock(dir, name, lock)))
}

impl Store {
    /// Every layer: the writable store's, then those of each read-only
    /// store, in the order they were given (as upstream lists them: an
    /// ID two stores hold is listed twice).
    pub fn all_layers(&self) -> Result<Vec<Layer>> {
        let mut layers = self.layers()?;
        layers.extend(self.ro_layers()?);
        Ok(layers)
    }

    /// Every image: the writable store's, then those of each read-only
    /// store (as upstream lists them: an image whose record was copied
    /// into the writable store, see [`Store::copy_ro_image`], is listed
    /// from both).
    pub fn all_images(&self) -> Result<Vec<Image>> {
        let mut images = self.images()?;
        images.extend(self.ro_images()?);
        Ok(images)
    }

    /// The records and root of the store holding `image` (one read from
    /// a read-only store), when its images may be deleted.
    pub(crate) fn deletable_image_store(
        &self,
        image: &Image,
    ) -> Option<(&RecordFile<Image>, PathBuf)> {
        let root = image.read_only_store.as_ref()?;
        let file = self.ro_store(root)?.deletable_images()?;
        Some((file, root.clone()))
    }

    /// Whether `image` is upstream's `ReadOnly`: a read-only store's, but
    /// for the graph root's under a split image store, which upstream
    /// opens as a writable image store.
    pub fn image_is_read_only(&self, image: &Image) -> bool {
        image.read_only_store.is_some() && self.deletable_image_store(image).is_none()
    }

    /// The images that may be deleted though a read-only store holds
    /// them (the graph root's under a split image store).
    pub(crate) fn deletable_ro_images(&self) -> Result<Vec<Image>> {
        let deletable = self.ro_stores.iter();
        images_of(deletable.filter(|s| s.deletable_images().is_some()))
    }

    /// The images of the read-only stores only.
    pub(crate) fn ro_images(&self) -> Result<Vec<Image>> {
        images_of(self.ro_stores.iter())
    }

    /// The layers of the read-only stores only.
    pub(crate) fn ro_layers(&self) -> Result<Vec<Layer>> {
        self.ro_layers_of(|_| true)
    }

    /// The layers of the read-only stores whose roots `wanted` takes.
    pub(crate) fn ro_layers_of(&self, wanted: impl Fn(&Path) -> bool) -> Result<Vec<Layer>> {
        let mut layers = Vec::new();
        for ro in self.ro_stores.iter().filter(|s| wanted(&s.root)) {
            layers.extend(ro.layers()?);
        }
        Ok(layers)
    }

    /// The read-only stores' roots, in order.
    pub fn read_only_stores(&self) -> Vec<&Path> {
        self.ro_stores.iter().map(|s| s.root.as_path()).collect()
    }

    /// The layer a read-only store holds under `arg` (exact ID, name or
    /// unique ID prefix within that store), the first store first.
    pub(crate) fn ro_layer(&self, arg: &str) -> Result<Option<Layer>> {
        for ro in &self.ro_stores {
            if let Some(layer) = find(&ro.layers()?, arg) {
                return Ok(Some(layer.clone()));
            }
        }
        Ok(None)
    }

    /// The image a read-only store holds under `arg`, the first store
    /// first. One whose ID the writable store's images (`main`) hold is
    /// not found there, as upstream's `Image` ignores it: its names were
    /// given to the writable store's copy (see [`Store::copy_ro_image`]).
    pub(crate) fn ro_image(&self, arg: &str, main: &[Image]) -> Result<Option<Image>> {
        for ro in &self.ro_stores {
            let mut images = ro.images()?;
            images.retain(|i| !main.iter().any(|m| m.id == i.id));
            if let Some(image) = find(&images, arg) {
                return Ok(Some(image.clone()));
            }
        }
        Ok(None)
    }

    /// The read-only store whose root is `root`.
    pub(crate) fn ro_store(&self, root: &Path) -> Option<&RoStore> {
        self.ro_stores.iter().find(|s| s.root == root)
    }

    /// The refusal of a write to `id`, an item of the read-only store at
    /// `root` (upstream's `ErrStoreIsReadOnly`).
    pub(crate) fn refuse_read_only(kind: Kind, id: &str, root: &Path) -> Error {
        Error::InReadOnlyStore {
            kind,
            id: id.to_string(),
            store: root.to_path_buf(),
        }
    }

    /// Refuses a write to the item `id` of `kind` when only a read-only
    /// store holds it.
    pub(crate) fn refuse_ro(&self, kind: Kind, id: &str) -> Result<()> {
        let root = match kind {
            Kind::Layer if !self.layers()?.iter().any(|l| l.id == id) => {
                self.ro_layer(id)?.and_then(|l| l.read_only_store)
            }
            Kind::Image => {
                let main = self.images()?;
                match main.iter().any(|i| i.id == id) {
                    true => None,
                    false => self.ro_image(id, &main)?.and_then(|i| i.read_only_store),
                }
            }
            _ => None,
        };
        match root {
            Some(root) => Err(Self::refuse_read_only(kind, id, &root)),
            None => Ok(()),
        }
    }

    /// Refuses a write to what `arg` names of `kind` when the writable
    /// store has no such item and a read-only store has.
    pub(crate) fn refuse_ro_arg(&self, kind: Kind, arg: &str) -> Result<()> {
        let id = match kind {
            Kind::Layer if find(&self.layers()?, arg).is_none() => {
                self.ro_layer(arg)?.map(|l| l.id)
            }
            Kind::Image => {
                let main = self.images()?;
                match find(&main, arg) {
                    Some(_) => None,
                    None => self.ro_image(arg, &main)?.map(|i| i.id),
                }
            }
            _ => None,
        };
        match id {
            Some(id) => self.refuse_ro(kind, &id),
            None => Ok(()),
        }
    }

    /// The directory of an item's big data: under its read-only store's
    /// root for one of those.
    pub(crate) fn item_dir_in(&self, kind: Kind, id: &str, store: Option<&Path>) -> PathBuf {
        match store {
            Some(root) => {
                let driver = &self.options.driver;
                let records = match kind {
                    Kind::Layer => layout::layers_dir(root, driver),
                    Kind::Image => layout::images_dir(root, driver),
                    Kind::Container => layout::containers_dir(root, driver),
                };
                records.join(id)
            }
            None => self.item_dir(kind, id),
        }
    }

    /// Copies an image only a read-only store holds into the writable
    /// store before its names change, as upstream's `updateNames` "pulls
    /// it up": same ID, names, top layer, metadata, creation time,
    /// digests, names history, flags and big data. The change is then
    /// made to the copy, which shadows the read-only store's record in
    /// lookups. Returns whether it copied one.
    pub(crate) fn copy_ro_image(&self, id: &str) -> Result<bool> {
        let main = self.images()?;
        let Some(ro) = self.ro_image(id, &main)?.filter(|i| i.id == id) else {
            return Ok(false);
        };
        let from = self.item_dir_in(Kind::Image, id, ro.read_only_store.as_deref());
        let mut copy = ro.clone();
        copy.read_only_store = None;
        let to = self.item_dir(Kind::Image, id);
        self.write(|| {
            self.image_records.modify(|images| {
                if images.iter().any(|i| i.id == id) {
                    return Ok(((), false));
                }
                super::item::claim(images, id, &copy.names)?;
                // Big data first: the record that names it comes after.
                for key in &copy.big_data.names {
                    let name = super::bigdata::file_name(key);
                    let path = from.join(&name);
                    let data = std::fs::read(&path)
                        .map_err(|e| Error::io(crate::error::Op::Read, &path, e))?;
                    crate::durable::create_dir_all(&to)?;
                    crate::durable::atomic_write(&to.join(&name), &data)?;
                }
                images.push(copy.clone());
                Ok(((), true))
            })
        })?;
        Ok(true)
    }

    /// Refuses a write to `layer` when it is a read-only store's (not
    /// the split image store's, which are this store's, see
    /// `store/image_store.rs`).
    pub(crate) fn refuse_ro_layer(&self, layer: &Layer) -> Result<()> {
        match &layer.read_only_store {
            Some(root) if self.layer_is_read_only(layer) => {
                Err(Self::refuse_read_only(Kind::Layer, &layer.id, root))
            }
            _ => Ok(()),
        }
    }
}
