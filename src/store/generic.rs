//! Operations on an item of any kind: lookup across kinds (layers, then
//! images, then containers), names, metadata, existence, unchecked delete,
//! and wiping the whole store.

use super::containers::find_container;
use super::item::{change_names, find, Item, NamesOp};
use super::kind::Kind;
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
        self.refuse_ro(kind, &id)?;
        match kind {
            Kind::Layer => self.change_in(&self.layer_records, &id, |items, i| {
                change_names(items, i, op, names)
            }),
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
        self.refuse_ro(kind, &id)?;
        let set = |m: &mut String| *m = value.to_string();
        match kind {
            Kind::Layer => self.change_in(&self.layer_records, &id, |items, i| {
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
        self.refuse_ro(kind, &id)?;
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
                // The layers lock before the mounts lock, as every delete.
                let mut layers = self.layer_records.lock()?;
                let mounts = self.lock_unmounted(std::slice::from_ref(&id))?;
                self.mark_deleting(std::slice::from_ref(&id))?;
                layers.records.retain(|l| l.id != id);
                self.write(|| layers.save())?;
                drop((mounts, layers));
                self.remove_layer_files(&id);
                Ok(())
            }
        }
    }

    /// Removes every container, then every image, then every layer.
    pub fn wipe(&self) -> Result<()> {
        self.check_writable()?;
        let mut tx = self.transaction()?;
        let ids: Vec<String> = tx.layers.records.iter().map(|l| l.id.clone()).collect();
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
        self.mark_deleting(&layers.iter().map(|l| l.id.clone()).collect::<Vec<_>>())?;
        self.write(|| tx.layers.save())?;
        for l in &layers {
            self.remove_layer_files(&l.id);
        }
        Ok(())
    }
}
