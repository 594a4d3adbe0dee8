//! ID-mapped copies of images' top layers (upstream's `mapped-layers`):
//! a container that maps IDs otherwise than its image's top layer goes on
//! a copy of that layer with the container's mapping, as upstream's
//! `imageTopLayerForMapping` makes it.
//!
//! The copy is a layer of its own on the top layer's parent, with the top
//! layer's digests, sizes and ID sets, listed in the image's
//! `mapped-layers` (so a Go client finds and reuses it, and deleting the
//! image deletes it). A pool-backed top layer's copy is pool-backed too:
//! its manifest is a copy of the top layer's (the same chunks, nothing
//! stored again), and its directories are built from it with the copy's
//! owners, as caches (`gc` evicts them). A directory-backed top layer's
//! copy starts as a copy of its directory, every owner remapped.
//!
//! Where containers' IDs are shifted at mount time (`shifting.rs`), a top
//! layer that maps no IDs serves every container as it is; only one that
//! maps IDs gets a copy, which maps none.

use std::fs;

use super::id_maps::{remap_tree, IdMap, IdMappingOptions};
use super::images::Image;
use super::layers::Layer;
use super::{Store, Transaction};
use crate::durable;
use crate::error::{IoContext, Op, Result};

impl Store {
    /// The layer a container mapping IDs as `wanted` says goes on, for
    /// `image` (whose top layer is `top`): the top layer or one of its
    /// mapped copies when one maps IDs that way, else a new copy (listed
    /// in the image's record, both saved under `tx`).
    pub(super) fn top_for_mapping(
        &self,
        tx: &mut Transaction<'_>,
        image: &Image,
        top: Layer,
        wanted: &IdMappingOptions,
    ) -> Result<Layer> {
        let shifting = self.can_use_shifting(&wanted.uid_map, &wanted.gid_map);
        let records = &tx.layers.records;
        let candidates = std::iter::once(&top.id).chain(&image.mapped_layers);
        for id in candidates {
            let Some(layer) = records.iter().find(|l| &l.id == id) else {
                continue;
            };
            // Its parent must be there too (upstream skips it otherwise).
            let parent_there =
                layer.parent.is_empty() || records.iter().any(|p| p.id == layer.parent);
            if parent_there && maps_fit(layer, wanted, shifting) {
                return Ok(layer.clone());
            }
        }
        // Shifted at mount time, the copy maps no IDs (upstream's
        // `HostUIDMapping` copy).
        let (uid_map, gid_map) = match shifting {
            true => Default::default(),
            false => wanted_maps(wanted),
        };
        let copy = self.mapped_copy(tx, &top, uid_map, gid_map)?;
        let index = tx
            .images
            .records
            .iter()
            .position(|i| i.id == image.id)
            .expect("the image was found under the same lock");
        tx.images.records[index].mapped_layers.push(copy.id.clone());
        if let Err(e) = self.write(|| tx.images.save()) {
            tx.layers.records.retain(|l| l.id != copy.id);
            let _ = tx.layers.save();
            self.remove_layer_files(&copy.id);
            return Err(e);
        }
        Ok(copy)
    }

    /// Makes a copy of `top` mapping IDs with `uid_map`/`gid_map` (see the
    /// module docs) and saves its record under `tx`.
    fn mapped_copy(
        &self,
        tx: &mut Transaction<'_>,
        top: &Layer,
        uid_map: Vec<super::IdMap>,
        gid_map: Vec<super::IdMap>,
    ) -> Result<Layer> {
        let id = super::ids::new_id();
        let mut copy = Layer::new_record(id.clone(), top.parent.clone(), Vec::new());
        copy.metadata = top.metadata.clone();
        copy.mount_label = top.mount_label.clone();
        copy.compressed_digest = top.compressed_digest.clone();
        copy.compressed_size = top.compressed_size;
        copy.diff_digest = top.diff_digest.clone();
        copy.diff_size = top.diff_size;
        copy.compression = top.compression;
        copy.uids = top.uids.clone();
        copy.gids = top.gids.clone();
        copy.uid_map = uid_map;
        copy.gid_map = gid_map;
        // What Go clients rebuild the tar with, as upstream copies it.
        let tar_split = fs::read(self.tar_split_path(&top.id)).ok();
        let result = (|| {
            if let Some(bytes) = &tar_split {
                self.write(|| durable::atomic_write(&self.tar_split_path(&id), bytes))?;
            }
            if top.sealed {
                // The same content: the manifest (which names the same
                // parent) before the record that makes it the layer's.
                let from = self.manifest_path(&top.id);
                let bytes = fs::read(&from).at(Op::Read, &from)?;
                self.write(|| durable::atomic_write(&self.manifest_path(&id), &bytes))?;
                copy.sealed = true;
            }
            tx.layers.records.push(copy.clone());
            self.write(|| tx.layers.save())?;
            if !top.sealed {
                // The chain from the records held (reading them again
                // would wait for the locks this process holds).
                let records = &tx.layers.records;
                let mut chain = vec![copy.clone()];
                while let Some(parent) = chain
                    .last()
                    .filter(|l| !l.parent.is_empty() && chain.len() <= records.len())
                    .and_then(|l| records.iter().find(|p| p.id == l.parent))
                {
                    chain.push(parent.clone());
                }
                self.copy_live_content(top, &chain)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            if tx.layers.records.iter().any(|l| l.id == id) {
                tx.layers.records.retain(|l| l.id != id);
                let _ = tx.layers.save();
            }
            self.remove_layer_files(&id);
            return Err(e);
        }
        Ok(copy)
    }

    /// Gives `chain[0]`, the copy (recorded; its chain top first), the
    /// content of directory-backed `top`,
    /// every owner moved from `top`'s host IDs to the copy's: the vfs tree,
    /// or the overlay `diff` (with, when the copy maps IDs otherwise than
    /// its parent, the tree below it with its owners).
    fn copy_live_content(&self, top: &Layer, chain: &[Layer]) -> Result<()> {
        let copy = &chain[0];
        let from = self.live_content_dir(&top.id)?;
        let to = self.layer_content_dir(&copy.id);
        if self.options.driver == "overlay" {
            self.lay_out(chain, super::go_layout::Content::Directory)?;
        }
        let tmp = durable::temp_sibling(&to);
        let result = (|| {
            crate::materialize::copy_tree(&from, &tmp)?;
            remap_tree(&tmp, top.id_mapping(), copy.id_mapping())?;
            if to.exists() {
                durable::remove_tree(&to).at(Op::Remove, &to)?;
            }
            fs::rename(&tmp, &to).at(Op::Rename, &to)?;
            durable::fsync_dir(to.parent().expect("a layer directory has a parent"))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Drops deleted layer `id` from the `mapped-layers` of the images
    /// listing it (upstream's `removeMappedTopLayer`).
    pub(super) fn forget_mapped_layer(images: &mut [Image], id: &str) -> bool {
        let mut changed = false;
        for image in images.iter_mut() {
            let before = image.mapped_layers.len();
            image.mapped_layers.retain(|m| m != id);
            changed |= image.mapped_layers.len() != before;
        }
        changed
    }
}

/// The maps a container's layer wants from its image's top layer.
fn wanted_maps(wanted: &IdMappingOptions) -> (Vec<IdMap>, Vec<IdMap>) {
    let uid_map = match wanted.host_uid_mapping {
        true => Vec::new(),
        false => wanted.uid_map.clone(),
    };
    let gid_map = match wanted.host_gid_mapping {
        true => Vec::new(),
        false => wanted.gid_map.clone(),
    };
    (uid_map, gid_map)
}

/// Whether a container mapping IDs as `wanted` can go on `top` (no
/// mapped copy is needed): `top` maps IDs that way, or, when containers
/// are `shifting` at mount time, maps none (upstream's
/// `layerMatchesMappingOptions`).
pub(super) fn maps_fit(top: &Layer, wanted: &IdMappingOptions, shifting: bool) -> bool {
    if shifting && top.uid_map.is_empty() && top.gid_map.is_empty() {
        return true;
    }
    let (uid_map, gid_map) = wanted_maps(wanted);
    top.uid_map == uid_map && top.gid_map == gid_map
}
