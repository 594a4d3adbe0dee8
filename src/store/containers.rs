//! Container records (`<drv>-containers/containers.json`, or in the run
//! root with `--transient-store`): a read-write layer on an image's top
//! layer, plus metadata, big data and userdata directories.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::go_layout::Content;
use super::id_maps::{IdMap, IdMappingOptions};
use super::ids::{new_id, validate_new_id};
use super::item::{claim, dedup_names, find, BigDataIndex, Item};
use super::kind::Kind;
use super::layers::{now, Layer};
use super::layout;
use super::Store;
use crate::durable;
use crate::error::Result;

/// The flag of a container made with `--volatile` (upstream's
/// `volatileFlag`): its mounts use overlayfs's `volatile` option.
pub(crate) const VOLATILE_FLAG: &str = "Volatile";

/// The flags upstream gives every container, its SELinux labels.
const MOUNT_LABEL_FLAG: &str = "MountLabel";
const PROCESS_LABEL_FLAG: &str = "ProcessLabel";

/// A container record, with upstream's JSON field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// The container ID.
    pub id: String,
    /// Names, unique among containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// The image's ID; empty when created without an image.
    #[serde(default)]
    pub image: String,
    /// The container's read-write layer.
    #[serde(default)]
    pub layer: String,
    /// Caller's metadata.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
    /// Big data items.
    #[serde(flatten)]
    pub big_data: BigDataIndex,
    /// Creation time.
    #[serde(default)]
    pub created: String,
    /// Upstream's flags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flags: BTreeMap<String, serde_json::Value>,
    /// The UID map the container was created with (upstream's `uidmap`;
    /// its layer's record has the one in effect).
    #[serde(default, rename = "uidmap", skip_serializing_if = "Vec::is_empty")]
    pub uid_map: Vec<IdMap>,
    /// The GID map the container was created with (`gidmap`).
    #[serde(default, rename = "gidmap", skip_serializing_if = "Vec::is_empty")]
    pub gid_map: Vec<IdMap>,
}

impl Item for Container {
    const KIND: Kind = Kind::Container;
    fn id(&self) -> &str {
        &self.id
    }
    fn names(&self) -> &[String] {
        &self.names
    }
    fn names_mut(&mut self) -> &mut Vec<String> {
        &mut self.names
    }
    fn metadata_mut(&mut self) -> &mut String {
        &mut self.metadata
    }
    fn big_data_mut(&mut self) -> &mut BigDataIndex {
        &mut self.big_data
    }
}

/// Choices when creating a container.
#[derive(Clone, Debug, Default)]
pub struct ContainerOptions {
    /// The ID to use instead of a random one.
    pub id: Option<String>,
    /// Names to give the container.
    pub names: Vec<String>,
    /// Metadata.
    pub metadata: String,
    /// Mark the container volatile (upstream's `--volatile`).
    pub volatile: bool,
    /// How the container maps IDs (none given: as its image's top layer
    /// does). An image whose layers map otherwise gets a mapped copy of
    /// its top layer (see [`Store::create_container`]).
    pub id_mappings: IdMappingOptions,
}

/// Finds a container by ID, name, its layer's ID, then unique ID prefix.
pub(crate) fn find_container<'a>(containers: &'a [Container], arg: &str) -> Option<&'a Container> {
    if arg.is_empty() {
        return None;
    }
    containers
        .iter()
        .find(|c| c.id == arg)
        .or_else(|| containers.iter().find(|c| c.names.iter().any(|n| n == arg)))
        .or_else(|| containers.iter().find(|c| c.layer == arg))
        .or_else(|| find(containers, arg))
}

impl Store {
    /// Every container.
    pub fn containers(&self) -> Result<Vec<Container>> {
        self.container_records.read()
    }

    /// The container named by `arg` (ID, name, layer ID or unique prefix).
    pub fn container(&self, arg: &str) -> Result<Container> {
        find_container(&self.containers()?, arg)
            .cloned()
            .ok_or_else(|| Kind::Container.not_known(arg))
    }

    /// Creates a container on `image` (none when empty): its read-write
    /// layer on the image's top layer first, then its record.
    ///
    /// A container whose ID mapping is not that of the image's top layer
    /// goes on a copy of the top layer with its mapping (upstream's
    /// `imageTopLayerForMapping`): the copy, on the top layer's parent,
    /// is listed in the image's `mapped-layers` and reused by the next
    /// container that maps IDs the same way. Where the kernel shifts IDs
    /// at mount time (`shifting.rs`), the container goes on a top layer
    /// that maps none as it is, and its layer maps none either: its
    /// record keeps the maps, and its mounts apply them.
    pub fn create_container(
        &self,
        image: Option<&str>,
        options: &ContainerOptions,
    ) -> Result<Container> {
        self.check_writable()?;
        let id = options.id.clone().unwrap_or_else(new_id);
        validate_new_id(&id)?;
        let names = dedup_names(&options.names);
        // Read before the record locks are taken (they are not this
        // store's: nothing here waits on them under ours).
        let ro_layers = self.ro_layers()?;
        let mut tx = self.transaction()?;
        claim(&tx.containers.records, &id, &names)?;
        let wanted = &options.id_mappings;
        let (image_id, parent) = match image.filter(|i| !i.is_empty()) {
            Some(arg) => self.container_parent(&mut tx, arg, wanted, &ro_layers)?,
            None => (String::new(), None),
        };
        let (uid_map, gid_map) = match &parent {
            Some(p) => wanted.resolve((&p.uid_map, &p.gid_map)),
            None => wanted.resolve((&[], &[])),
        };
        let parent = parent.map(|p| p.id).unwrap_or_default();
        let layer_id = new_id();
        let mut layer = Layer::new_record(layer_id.clone(), parent, Vec::new());
        if !self.can_use_shifting(&uid_map, &gid_map) {
            // Else its mounts shift the layers below, and its own files
            // keep host IDs (upstream's `HostUIDMapping` layer).
            layer.uid_map = uid_map;
            layer.gid_map = gid_map;
        }
        layer
            .flags
            .insert("container".into(), serde_json::Value::Bool(true));
        tx.layers.records.push(layer.clone());
        self.write(|| tx.layers.save())?;
        // Its directory, as upstream's driver makes it at creation (after
        // the record: `gc` removes directories of layers without one).
        let mut chain = vec![layer];
        let known = tx.layers.records.len() + ro_layers.len();
        while let Some(parent) = chain
            .last()
            .filter(|l| !l.parent.is_empty() && chain.len() <= known)
            .and_then(|l| {
                tx.layers
                    .records
                    .iter()
                    .chain(&ro_layers)
                    .find(|p| p.id == l.parent)
            })
        {
            chain.push(parent.clone());
        }
        if let Err(e) = self.lay_out(&chain, Content::Directory) {
            tx.layers.records.retain(|l| l.id != layer_id);
            let _ = tx.layers.save();
            self.remove_driver_dirs(&layer_id);
            return Err(e);
        }
        // Upstream's labels, empty where SELinux is off (as its
        // `InitLabels` gives them there).
        let mut flags = BTreeMap::from([
            (MOUNT_LABEL_FLAG.to_string(), serde_json::Value::from("")),
            (PROCESS_LABEL_FLAG.to_string(), serde_json::Value::from("")),
        ]);
        if options.volatile {
            flags.insert(VOLATILE_FLAG.to_string(), serde_json::Value::Bool(true));
        }
        let container = Container {
            id,
            names,
            image: image_id,
            layer: layer_id,
            metadata: options.metadata.clone(),
            big_data: BigDataIndex::default(),
            created: now(),
            flags,
            uid_map: match wanted.host_uid_mapping {
                true => Vec::new(),
                false => wanted.uid_map.clone(),
            },
            gid_map: match wanted.host_gid_mapping {
                true => Vec::new(),
                false => wanted.gid_map.clone(),
            },
        };
        tx.containers.records.push(container.clone());
        self.write(|| tx.containers.save())?;
        Ok(container)
    }

    /// The image `arg` names and the layer a new container's layer goes
    /// on: its top layer, or the mapped copy of it `wanted` asks for
    /// (made now if there is none). A read-only store's image or top
    /// layer is used as it is, as upstream uses it: no mapped copy of it
    /// is made, and the container's own layer maps IDs over it (its vfs
    /// tree, or its overlay `diff1`, is built with the container's
    /// owners).
    fn container_parent(
        &self,
        tx: &mut super::Transaction<'_>,
        arg: &str,
        wanted: &IdMappingOptions,
        ro_layers: &[Layer],
    ) -> Result<(String, Option<Layer>)> {
        let image = match find(&tx.images.records, arg) {
            Some(image) => image.clone(),
            None => self
                .ro_image(arg, &tx.images.records)?
                .ok_or_else(|| Kind::Image.not_known(arg))?,
        };
        let top_id = image.top_layer.clone();
        if top_id.is_empty() {
            return Ok((image.id, None));
        }
        let here = tx.layers.records.iter().find(|l| l.id == top_id).cloned();
        if let (Some(top), None) = (&here, &image.read_only_store) {
            let top = self.top_for_mapping(tx, &image, top.clone(), wanted)?;
            return Ok((image.id, Some(top)));
        }
        let top = match here {
            Some(top) => top,
            None => ro_layers
                .iter()
                .find(|l| l.id == top_id)
                .cloned()
                .ok_or_else(|| Kind::Layer.not_known(&top_id))?,
        };
        Ok((image.id, Some(top)))
    }

    /// Deletes a container: its layer first, then its directories, then
    /// its record.
    pub fn delete_container(&self, arg: &str) -> Result<()> {
        self.check_writable()?;
        let mut tx = self.transaction()?;
        let container = find_container(&tx.containers.records, arg)
            .ok_or_else(|| Kind::Container.not_known(arg))?
            .clone();
        // Its layer may be the split image store's (upstream's one layer
        // store has both places): it goes from there. Another read-only
        // store's would be left behind: refused. (Read before the image
        // store's lock is taken: it holds the others only.)
        let others = self.ro_layers_beside_image_store()?;
        let mut dir = self.lock_image_store_layers()?;
        let in_graph = tx.layers.records.iter().any(|l| l.id == container.layer);
        let in_dir = !in_graph
            && dir
                .as_ref()
                .is_some_and(|(d, _)| d.records.iter().any(|l| l.id == container.layer));
        if !in_graph && !in_dir {
            if let Some(ro) = others.iter().find(|l| l.id == container.layer) {
                self.refuse_ro_layer(ro)?;
            }
        }
        let _mounts = self.lock_unmounted(std::slice::from_ref(&container.layer))?;
        // The container's record goes first: a crash after it leaves a
        // container layer nothing uses, which `gc` removes, never a
        // container without its layer.
        tx.containers.records.retain(|c| c.id != container.id);
        self.write(|| tx.containers.save())?;
        let layer = std::slice::from_ref(&container.layer);
        let mut image_store = None;
        if in_graph {
            self.mark_deleting(layer)?;
            tx.layers.records.retain(|l| l.id != container.layer);
            self.write(|| tx.layers.save())?;
        } else if let (true, Some((locked, root))) = (in_dir, &mut dir) {
            self.mark_deleting(layer)?;
            locked.records.retain(|l| l.id != container.layer);
            self.write(|| locked.save())?;
            image_store = Some(root.clone());
        }
        drop((dir, tx));
        // Files last (a leftover layer directory is finished by the next
        // writer, see `mark_deleting`).
        self.remove_deleted_layer_files(&container.layer, image_store.as_deref(), false);
        self.remove_item_dirs(Kind::Container, &container.id);
        Ok(())
    }

    /// `<graphroot>/<drv>-containers/<id>/userdata`, created if missing.
    pub fn container_dir(&self, arg: &str) -> Result<PathBuf> {
        let id = self.container(arg)?.id;
        let dir = self.item_dir(Kind::Container, &id).join(layout::USERDATA);
        durable::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// `<runroot>/<drv>-containers/<id>/userdata`, created if missing.
    pub fn container_run_dir(&self, arg: &str) -> Result<PathBuf> {
        let id = self.container(arg)?.id;
        let dir = self
            .item_run_dir(Kind::Container, &id)
            .join(layout::USERDATA);
        durable::create_dir_all(&dir)?;
        Ok(dir)
    }
}

impl Store {
    /// A container's size: its layer's content plus its big data.
    pub fn container_size(&self, container: &Container) -> Result<u64> {
        let layer = self.layer(&container.layer)?;
        // Sizes come from the record files: any numbers, so never overflow.
        let data = container
            .big_data
            .sizes
            .values()
            .fold(0u64, |sum, n| sum.saturating_add(*n));
        Ok(layer.diff_size.saturating_add(data))
    }
}
