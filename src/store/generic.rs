//! Operations on an item of any kind: lookup across kinds (layers, then
//! images, then containers), names, metadata, existence, unchecked delete,
//! and wiping the whole store.

use super::containers::find_container;
use super::item::{change_names, find, Item, NamesOp};
use super::kind::Kind;
use super::layers::Layer;
use super::records::RecordFile;
use super::Store;
use crate::error::{Error, Result};

impl Store {
    /// Finds `arg` among layers, then images, then containers; returns the
    /// kind and ID of the first match.
    pub fn resolve(&self, arg: &str) -> Result<(Kind, String)> {
        if let Some(l) = find(&self.layers()?, arg) {
            return Ok((Kind::Layer, l.id.clone()));
        }
        let images = self.images()?;
        if let Some(i) = find(&images, arg) {
            return Ok((Kind::Image, i.id.clone()));
        }
        if let Some(c) = find_container(&self.containers()?, arg) {
            return Ok((Kind::Container, c.id.clone()));
        }
        // The read-only stores' items, after all of the writable store's.
        if let Some(l) = self.ro_layer(arg)? {
            return Ok((Kind::Layer, l.id));
        }
        if let Some(i) = self.ro_image(arg, &images)? {
            return Ok((Kind::Image, i.id));
        }
        Err(Error::DoesNotExist(arg.to_string()))
    }

    /// Whether `arg` names an item of one of `kinds` (all kinds if empty).
    pub fn exists(&self, arg: &str, kinds: &[Kind]) -> Result<bool> {
        let wanted = |k: Kind| kinds.is_empty() || kinds.contains(&k);
        let image = || -> Result<bool> {
            let main = self.images()?;
            Ok(find(&main, arg).is_some() || self.ro_image(arg, &main)?.is_some())
        };
        // Errors reading records are errors, not "no such item".
        Ok((wanted(Kind::Layer)
            && (find(&self.layers()?, arg).is_some() || self.ro_layer(arg)?.is_some()))
            || (wanted(Kind::Image) && image()?)
            || (wanted(Kind::Container) && find_container(&self.containers()?, arg).is_some()))
    }

    /// The names of the item `arg`.
    pub fn names(&self, arg: &str) -> Result<Vec<String>> {
        Ok(match self.resolve(arg)? {
            (Kind::Layer, id) => self.layer(&id)?.names,
            (Kind::Image, id) => self.image(&id)?.names,
            (Kind::Container, id) => self.container(&id)?.names,
        })
    }

    /// Adds, sets or removes names of the item `arg`. A name that another
    /// item of the same kind holds moves to this one.
    pub fn update_names(&self, arg: &str, op: NamesOp, names: &[String]) -> Result<()> {
        self.check_writable()?;
        let (kind, id) = self.resolve(arg)?;
        if kind == Kind::Image {
            self.copy_ro_image(&id)?;
        }
        self.refuse_ro_record(kind, &id)?;
        match kind {
            Kind::Layer => self.change_layer(&id, |items, i| change_names(items, i, op, names)),
            Kind::Image => self.change_in(&self.image_records, &id, |items, i| {
                change_names(items, i, op, names)
            }),
            Kind::Container => self.change_in(&self.container_records, &id, |items, i| {
                change_names(items, i, op, names)
            }),
        }
    }

    /// The metadata of the item `arg`.
    pub fn metadata(&self, arg: &str) -> Result<String> {
        Ok(match self.resolve(arg)? {
            (Kind::Layer, id) => self.layer(&id)?.metadata,
            (Kind::Image, id) => self.image(&id)?.metadata,
            (Kind::Container, id) => self.container(&id)?.metadata,
        })
    }

    /// Replaces the metadata of the item `arg`.
    pub fn set_metadata(&self, arg: &str, value: &str) -> Result<()> {
        self.check_writable()?;
        let (kind, id) = self.resolve(arg)?;
        self.refuse_ro_record(kind, &id)?;
        let set = |m: &mut String| *m = value.to_string();
        match kind {
            Kind::Layer => self.change_layer(&id, |items, i| {
                set(items[i].metadata_mut());
                Ok(())
            }),
            Kind::Image => self.change_in(&self.image_records, &id, |items, i| {
                set(items[i].metadata_mut());
                Ok(())
            }),
            Kind::Container => self.change_in(&self.container_records, &id, |items, i| {
                set(items[i].metadata_mut());
                Ok(())
            }),
        }
    }

    /// Refuses a change to the record of the item `id` of `kind` when a
    /// read-only store holds it, but for a layer the split image store
    /// holds, whose record is changed there.
    fn refuse_ro_record(&self, kind: Kind, id: &str) -> Result<()> {
        if kind == Kind::Layer && self.image_store_layer(id)?.is_some_and(|l| l.id == id) {
            return Ok(());
        }
        self.refuse_ro(kind, id)
    }

    /// Changes the record of the layer `id` where it is kept: the graph
    /// root's `layers.json` or, under a split image store, the image
    /// store's (see [`Store::image_store_layer`]). Both are then locked,
    /// the graph root's first, as upstream's one layer store locks both,
    /// and a name the layer holds afterwards leaves the other file's
    /// layers, as it leaves the other layers of its own.
    pub(crate) fn change_layer(
        &self,
        id: &str,
        change: impl FnOnce(&mut Vec<Layer>, usize) -> Result<()>,
    ) -> Result<()> {
        self.write(|| {
            let mut main = self.layer_records.lock()?;
            let mut dir = match self.image_store_layers() {
                Some((file, _)) => Some(file.lock()?),
                None => None,
            };
            let (mine, other) = match (main.records.iter().any(|l| l.id == id), dir.as_mut()) {
                (true, other) => (&mut main, other),
                (false, Some(dir)) if dir.records.iter().any(|l| l.id == id) => {
                    (dir, Some(&mut main))
                }
                _ => return Err(Kind::Layer.not_known(id)),
            };
            let index = mine
                .records
                .iter()
                .position(|l| l.id == id)
                .expect("found above");
            change(&mut mine.records, index)?;
            let held = mine.records[index].names.clone();
            mine.save()?;
            if let Some(other) = other {
                let holds = |l: &Layer| l.names.iter().any(|n| held.contains(n));
                if other.records.iter().any(holds) {
                    for layer in &mut other.records {
                        layer.names.retain(|n| !held.contains(n));
                    }
                    other.save()?;
                }
            }
            Ok(())
        })
    }

    fn change_in<T: Item>(
        &self,
        file: &RecordFile<T>,
        id: &str,
        change: impl FnOnce(&mut Vec<T>, usize) -> Result<()>,
    ) -> Result<()> {
        self.write(|| {
            file.modify(|items| {
                let index = items
                    .iter()
                    .position(|i| i.id() == id)
                    .ok_or_else(|| T::KIND.not_known(id))?;
                change(items, index)?;
                Ok(((), true))
            })
        })
    }

    /// Deletes the item `arg` without the usual checks: a container (and
    /// its layer), an image record (its layers stay), or a layer (even one
    /// with children or users).
    pub fn delete(&self, arg: &str) -> Result<()> {
        self.check_writable()?;
        let (kind, id) = self.resolve(arg)?;
        self.refuse_ro_record(kind, &id)?;
        match (kind, id) {
            (Kind::Container, id) => self.delete_container(&id),
            (Kind::Image, id) => {
                self.write(|| {
                    self.image_records.modify(|images| {
                        images.retain(|i| i.id != id);
                        Ok(((), true))
                    })
                })?;
                self.remove_item_dirs(Kind::Image, &id);
                Ok(())
            }
            (Kind::Layer, id) => {
                // The layers locks before the mounts lock, as every delete.
                let mut layers = self.layer_records.lock()?;
                let mut dir = self.lock_image_store_layers()?;
                let mounts = self.lock_unmounted(std::slice::from_ref(&id))?;
                self.mark_deleting(std::slice::from_ref(&id))?;
                let graph_holds = layers.records.iter().any(|l| l.id == id);
                let mut image_store = None;
                match &mut dir {
                    Some((locked, root)) if !graph_holds => {
                        locked.records.retain(|l| l.id != id);
                        self.write(|| locked.save())?;
                        image_store = Some(root.clone());
                    }
                    _ => {
                        layers.records.retain(|l| l.id != id);
                        self.write(|| layers.save())?;
                    }
                }
                drop((mounts, dir, layers));
                self.remove_deleted_layer_files(&id, image_store.as_deref(), false);
                Ok(())
            }
        }
    }

    /// Removes every container, then every image, then every layer.
    pub fn wipe(&self) -> Result<()> {
        self.check_writable()?;
        let mut tx = self.transaction()?;
        // Every layer, the split image store's too, as upstream's one
        // layer store wipes both places.
        let mut dir = self.lock_image_store_layers()?;
        let dir_layers = match &mut dir {
            Some((locked, _)) => std::mem::take(&mut locked.records),
            None => Vec::new(),
        };
        let ids: Vec<String> = tx
            .layers
            .records
            .iter()
            .chain(&dir_layers)
            .map(|l| l.id.clone())
            .collect();
        let _mounts = self.lock_unmounted(&ids)?;
        let containers = std::mem::take(&mut tx.containers.records);
        self.write(|| tx.containers.save())?;
        for c in &containers {
            self.remove_item_dirs(Kind::Container, &c.id);
        }
        let images = std::mem::take(&mut tx.images.records);
        self.write(|| tx.images.save())?;
        for i in &images {
            self.remove_item_dirs(Kind::Image, &i.id);
        }
        let layers = std::mem::take(&mut tx.layers.records);
        self.mark_deleting(&ids)?;
        if let Some((locked, _)) = &mut dir {
            self.write(|| locked.save())?;
        }
        self.write(|| tx.layers.save())?;
        let root = dir.map(|(_, root)| root);
        drop(tx);
        for l in &dir_layers {
            self.remove_deleted_layer_files(&l.id, root.as_deref(), false);
        }
        for l in &layers {
            self.remove_layer_files(&l.id);
        }
        Ok(())
    }
}
