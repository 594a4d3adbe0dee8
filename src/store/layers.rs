//! Layer records (`<drv>-layers/layers.json`) and the layer operations:
//! create, import, look up, export, delete, and the removal of layers left
//! incomplete by a crashed import (upstream's, or one of an earlier
//! version: imports here add their record only once complete, see
//! [`Store::import_layer`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::go_layout::Content;
use super::id_maps::{IdMap, IdMapping, IdMappingOptions};
use super::ids::{new_id, validate_name, validate_new_id};
use super::item::{claim, dedup_names, find, BigDataIndex, Item};
use super::kind::Kind;
use super::layout;
use super::lock::ProcessMarker;
use super::Store;
use crate::chunks::WriteGuard;
use crate::durable::{self, Flush, PendingFile};
use crate::error::{Action, Error, IoContext, Op, Result};
use crate::manifest::tar_split::ContentCrcs;
use crate::manifest::{self, Compression, ImportObserver, LayerManifest};
use crate::materialize::{BuildOptions, Format};

/// The `flags` key upstream uses for a layer whose content is not durable.
/// This crate no longer writes it (see [`Store::import_layer`]); records
/// that carry it are removed, as upstream removes them.
pub const INCOMPLETE_FLAG: &str = "incomplete";

/// What [`Store::publish_layer`] does with the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Publish {
    /// Adds it: a new layer.
    Add,
    /// Updates the one there: new content for an existing layer.
    Update,
}

/// A layer record, with upstream's JSON field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// The layer ID.
    pub id: String,
    /// Names, unique among layers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// The parent layer's ID; empty for a base layer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
    /// Caller's metadata.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
    /// SELinux mount label.
    #[serde(
        default,
        rename = "mountlabel",
        skip_serializing_if = "String::is_empty"
    )]
    pub mount_label: String,
    /// Creation time (RFC 3339, nanoseconds).
    #[serde(default)]
    pub created: String,
    /// `sha256:` digest of the stream the layer was imported from.
    #[serde(
        default,
        rename = "compressed-diff-digest",
        skip_serializing_if = "String::is_empty"
    )]
    pub compressed_digest: String,
    /// Size of that stream.
    #[serde(default, rename = "compressed-size", skip_serializing_if = "is_zero")]
    pub compressed_size: u64,
    /// `sha256:` digest of the uncompressed tar (the DiffID).
    #[serde(
        default,
        rename = "diff-digest",
        skip_serializing_if = "String::is_empty"
    )]
    pub diff_digest: String,
    /// Size of the uncompressed tar.
    #[serde(default, rename = "diff-size", skip_serializing_if = "is_zero")]
    pub diff_size: u64,
    /// Compression of the imported stream (0 none, 1 bzip2, 2 gzip, 3 xz, 4 zstd).
    #[serde(default, skip_serializing_if = "is_none_compression")]
    pub compression: Compression,
    /// Owner user IDs found in the layer.
    #[serde(default, rename = "uidset", skip_serializing_if = "Vec::is_empty")]
    pub uids: Vec<u32>,
    /// Owner group IDs found in the layer.
    #[serde(default, rename = "gidset", skip_serializing_if = "Vec::is_empty")]
    pub gids: Vec<u32>,
    /// Upstream's flags (`incomplete`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flags: BTreeMap<String, serde_json::Value>,
    /// The layer's big data items.
    #[serde(flatten)]
    pub big_data: BigDataIndex,
    /// Upstream's mapping of the layer's file owners (`uidmap`): its
    /// directories hold host IDs, its manifest and tar the container's
    /// (see `store/id_maps.rs`).
    #[serde(default, rename = "uidmap", skip_serializing_if = "Vec::is_empty")]
    pub uid_map: Vec<IdMap>,
    /// Upstream's mapping of the layer's file groups (`gidmap`).
    #[serde(default, rename = "gidmap", skip_serializing_if = "Vec::is_empty")]
    pub gid_map: Vec<IdMap>,
    /// Read-only layer (created with `--readonly`).
    #[serde(
        default,
        rename = "read-only",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub read_only: bool,
    /// Derived, never read from `layers.json` (written there only as a
    /// hint for people): the content is a manifest in the chunk pool
    /// (`manifests/<id>` records the layer's diff digest; see
    /// `store/state.rs`). Filled in by [`Store::layers`] and the lookups
    /// built on it.
    #[serde(skip_deserializing, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
    /// Derived, never written: the root of the read-only image store the
    /// layer was read from (`None`: the writable store's). Upstream's
    /// `ReadOnly` (`Read Only: true`), which is not in its JSON either.
    #[serde(skip)]
    pub read_only_store: Option<PathBuf>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_none_compression(c: &Compression) -> bool {
    *c == Compression::None
}

impl Layer {
    /// A new record with no content.
    pub(crate) fn new_record(id: String, parent: String, names: Vec<String>) -> Layer {
        Layer {
            id,
            names,
            parent,
            metadata: String::new(),
            mount_label: String::new(),
            created: now(),
            compressed_digest: String::new(),
            compressed_size: 0,
            diff_digest: String::new(),
            diff_size: 0,
            compression: Compression::None,
            uids: Vec::new(),
            gids: Vec::new(),
            flags: BTreeMap::new(),
            big_data: BigDataIndex::default(),
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            read_only: false,
            sealed: false,
            read_only_store: None,
        }
    }

    /// The layer's ID mapping (container IDs to the host IDs its
    /// directories hold).
    pub(crate) fn id_mapping(&self) -> IdMapping<'_> {
        IdMapping::new(&self.uid_map, &self.gid_map)
    }

    /// Whether the layer maps IDs as `other` does.
    pub(crate) fn maps_as(&self, other: &Layer) -> bool {
        self.uid_map == other.uid_map && self.gid_map == other.gid_map
    }

    /// Records what the stream `m` was imported from: its digests, sizes,
    /// compression and owners.
    pub(crate) fn record_stream(&mut self, m: &LayerManifest) {
        self.compressed_digest = m.compressed_digest.clone();
        self.compressed_size = m.compressed_size;
        self.diff_digest = m.diff_digest.clone();
        self.diff_size = m.diff_size;
        self.compression = m.compression;
        self.uids = m.uids.clone();
        self.gids = m.gids.clone();
    }

    /// Whether a crashed or running import left this layer unfinished.
    pub fn is_incomplete(&self) -> bool {
        self.flags
            .get(INCOMPLETE_FLAG)
            .is_some_and(|v| v.as_bool() == Some(true))
    }
}

/// Choices when creating or importing a layer.
#[derive(Clone, Debug, Default)]
pub struct LayerOptions {
    /// The ID to use instead of a random one.
    pub id: Option<String>,
    /// Names to give the layer.
    pub names: Vec<String>,
    /// SELinux mount label.
    pub mount_label: String,
    /// Mark the layer read-only.
    pub read_only: bool,
    /// How the layer maps IDs (none given: its parent's maps). A mapped
    /// layer's directories hold its files with host IDs; its manifest,
    /// `diff` and digests keep the tar's.
    pub id_mappings: IdMappingOptions,
}

impl Item for Layer {
    const KIND: Kind = Kind::Layer;
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
    fn derive_all(records: &mut [Self], records_dir: &std::path::Path) {
        // `<graph root>/<drv>-layers`: manifests are under the graph root.
        if let Some(graph) = records_dir.parent() {
            super::state::derive(graph, records);
        }
    }
}

pub(crate) fn now() -> String {
    go_rfc3339_nano(chrono::Utc::now())
}

/// A time as Go's `time.RFC3339Nano` writes it (what upstream's records
/// and JSON hold): nanoseconds without their trailing zeros.
pub(crate) fn go_rfc3339_nano(time: chrono::DateTime<chrono::Utc>) -> String {
    let full = time.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    let trimmed = full.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}Z")
}

impl Store {
    pub(super) fn manifest_path(&self, id: &str) -> PathBuf {
        super::layout::manifest_path(self.graph_root(), id)
    }

    /// `<drv>-layers/.emptied/<id>` (see `layout::EMPTIED`).
    pub(crate) fn emptied_marker(&self, id: &str) -> PathBuf {
        self.layers_dir().join(layout::EMPTIED).join(id)
    }

    /// Drops the marker of an emptied layer whose directory is there
    /// again (best effort: a marker left only keeps `check` quiet about
    /// that layer's directory).
    pub(crate) fn forget_emptied(&self, id: &str) {
        let _ = fs::remove_file(self.emptied_marker(id));
    }

    fn marker_path(&self, id: &str) -> PathBuf {
        self.layers_dir()
            .join(layout::INCOMPLETE)
            .join(format!("{id}.lock"))
    }

    /// Every layer, in creation order.
    pub fn layers(&self) -> Result<Vec<Layer>> {
        self.layer_records.read()
    }

    /// The layer named by `arg` (ID, name or unique ID prefix): the
    /// writable store's first, then the read-only stores'.
    pub fn layer(&self, arg: &str) -> Result<Layer> {
        if let Some(layer) = find(&self.layers()?, arg) {
            return Ok(layer.clone());
        }
        self.ro_layer(arg)?
            .ok_or_else(|| Kind::Layer.not_known(arg))
    }

    /// Creates an empty layer record on `parent`.
    pub fn create_layer(&self, parent: Option<&str>, options: &LayerOptions) -> Result<Layer> {
        self.check_writable()?;
        let layer = self.new_layer_record(parent, options)?;
        self.add_layer_record(&layer)?;
        // Its directory, as upstream's driver makes it at creation (after
        // the record: `gc` removes directories of layers without one).
        let laid_out = self
            .chain(&layer.id)
            .and_then(|chain| self.lay_out(&chain, Content::Directory));
        if let Err(e) = laid_out {
            self.discard_layer(&layer.id);
            return Err(e);
        }
        self.place_read_only(layer)
    }

    /// Puts a `--readonly` layer just made under a split image store
    /// there, as upstream makes its layers that are not writable (see
    /// `store/image_store.rs`); any other layer stays as it is.
    fn place_read_only(&self, layer: Layer) -> Result<Layer> {
        if !layer.read_only || self.image_store_layers().is_none() {
            return Ok(layer);
        }
        let moved = self
            .privatize(&layer)
            .and_then(|_| self.move_to_image_store(&layer.id));
        if moved.is_err() && self.layers()?.iter().any(|l| l.id == layer.id) {
            // Still the graph root's: it goes, as a failed import's does.
            let _ = self.delete_layer(&layer.id);
        }
        moved
    }

    /// Removes a layer whose creation failed after its record was added:
    /// the record, then its driver entries. Errors are ignored: `gc`
    /// removes the entries of a layer without a record.
    fn discard_layer(&self, id: &str) {
        let removed = self.layer_records.modify(|layers| {
            let before = layers.len();
            layers.retain(|l| l.id != id);
            Ok(((), layers.len() != before))
        });
        if removed.is_ok() {
            self.remove_driver_dirs(id);
        }
    }

    /// Adds `layer` to the records unless its ID or a name is taken, or
    /// its parent was deleted since it was looked up.
    fn add_layer_record(&self, layer: &Layer) -> Result<()> {
        self.write(|| {
            self.layer_records.modify(|layers| {
                // Deletes check for children under this same lock.
                self.parent_still_there(layers, &layer.parent)?;
                self.claim_layer(layers, layer)?;
                layers.push(layer.clone());
                Ok(((), true))
            })
        })
    }

    /// Fails when `layer`'s ID or one of its names is taken among
    /// `layers` (the graph root's) or, as upstream's one layer store has
    /// both, among the split image store's layers.
    fn claim_layer(&self, layers: &[Layer], layer: &Layer) -> Result<()> {
        claim(layers, &layer.id, &layer.names)?;
        if let Some((file, _)) = self.image_store_layers() {
            claim(&file.read()?, &layer.id, &layer.names)?;
        }
        Ok(())
    }

    /// Fails when `parent` (an ID; none when empty) is neither among
    /// `layers` (this store's, read under its lock, under which deletes
    /// check for children) nor a read-only store's layer (which never
    /// goes away), or is a container's layer (containers are made under
    /// this lock too).
    fn parent_still_there(&self, layers: &[Layer], parent: &str) -> Result<()> {
        if parent.is_empty() {
            return Ok(());
        }
        if layers.iter().any(|l| l.id == parent) {
            if self.containers()?.iter().any(|c| c.layer == parent) {
                return Err(Error::ParentIsContainer(parent.to_string()));
            }
            return Ok(());
        }
        match self.ro_layer(parent)? {
            Some(p) if p.id == parent => Ok(()),
            _ => Err(Kind::Layer.not_known(parent)),
        }
    }

    fn new_layer_record(&self, parent: Option<&str>, options: &LayerOptions) -> Result<Layer> {
        let id = options.id.clone().unwrap_or_else(new_id);
        validate_new_id(&id)?;
        for name in &options.names {
            validate_name(name)?;
        }
        let parent = match parent.filter(|p| !p.is_empty()) {
            // The parent may be directory-backed, and even mounted: it
            // stays as it is, as upstream's does. A container's layer is
            // no parent, as upstream has it.
            Some(p) => {
                let parent = self.layer(p)?;
                if self.containers()?.iter().any(|c| c.layer == parent.id) {
                    return Err(Error::ParentIsContainer(parent.id));
                }
                Some(parent)
            }
            None => None,
        };
        // Without maps of its own, a layer maps as its parent does.
        let (uid_map, gid_map) = match &parent {
            Some(p) => options.id_mappings.resolve((&p.uid_map, &p.gid_map)),
            None => options.id_mappings.resolve((&[], &[])),
        };
        let parent = parent.map(|p| p.id).unwrap_or_default();
        let mut layer = Layer::new_record(id, parent, dedup_names(&options.names));
        layer.uid_map = uid_map;
        layer.gid_map = gid_map;
        layer.mount_label = options.mount_label.clone();
        layer.read_only = options.read_only;
        Ok(layer)
    }

    /// Imports a tar stream (plain, gzip, zstd, xz or bzip2) as a new
    /// sealed layer on `parent`.
    ///
    /// The record is only added once the layer is complete: the content
    /// goes to the pool and the manifest is written under a temporary name
    /// without holding the layer lock, then, under it, the manifest is
    /// renamed into place and the complete record added. A Go client
    /// removes every record flagged `incomplete` whenever it loads the
    /// records for writing, so a record written before the content would
    /// be lost to any Go command running meanwhile. On error nothing is
    /// published; what a killed import leaves (temporary files, chunks, a
    /// manifest without a record) is `gc`'s.
    pub fn import_layer<R: Read + Send>(
        &self,
        parent: Option<&str>,
        options: &LayerOptions,
        input: R,
        observer: &dyn ImportObserver,
    ) -> Result<Layer> {
        self.check_writable()?;
        let layer = self.new_layer_record(parent, options)?;
        // Taken IDs and names fail now rather than after the import; the
        // claim that counts is made again under the lock.
        self.claim_layer(&self.layers()?, &layer)?;
        tracing::debug!(layer = %layer.id, "importing");
        let guard = self.pool.write_guard()?;
        let layer = self.import_into(&layer, Publish::Add, input, observer, &guard)?;
        drop(guard);
        self.place_read_only(layer)
    }

    pub(crate) fn import_content<R: Read + Send>(
        &self,
        layer: &Layer,
        input: R,
        observer: &dyn ImportObserver,
    ) -> Result<Layer> {
        // Held until the record is final: the sweep must not take a chunk
        // this import wrote or reused before its manifest is published.
        let guard = self.pool.write_guard()?;
        self.import_content_guarded(layer, input, observer, &guard)
    }

    /// [`Store::import_content`] for a caller that holds the write guard:
    /// the content of `layer`, whose record exists, is replaced.
    pub(super) fn import_content_guarded<R: Read + Send>(
        &self,
        layer: &Layer,
        input: R,
        observer: &dyn ImportObserver,
        guard: &WriteGuard,
    ) -> Result<Layer> {
        self.import_into(layer, Publish::Update, input, observer, guard)
    }

    /// Imports `input` as `layer`'s content: chunks staged and published,
    /// the manifest written under a temporary name, then, under the layer
    /// lock, the manifest renamed into place and the record added or
    /// updated as `publish` says.
    fn import_into<R: Read + Send>(
        &self,
        layer: &Layer,
        publish: Publish,
        input: R,
        observer: &dyn ImportObserver,
        _guard: &WriteGuard,
    ) -> Result<Layer> {
        let staged =
            manifest::stage_tar(input, &self.pool, observer).map_err(|e| e.for_layer(&layer.id))?;
        let mut m = staged.manifest;
        // A mapped layer's owners must all have host IDs, as upstream's
        // untar wants them (nothing is published yet).
        layer.id_mapping().check_manifest(&m, &layer.id)?;
        m.parent = (!layer.parent.is_empty()).then(|| layer.parent.clone());
        self.refuse_foreign_manifest(&layer.id, &m.diff_digest)?;
        let tar_split = tar_split_of(&layer.id, &m, &staged.crc64)?;
        // What the import writes after its chunks are published takes its
        // space before: a full disk fails it here, and dropping `staged`
        // returns every block it took.
        let manifest_bytes = manifest::encode(&m);
        let mut manifest_file =
            PendingFile::create(&self.manifest_path(&layer.id), manifest_bytes.len() as u64)?;
        let tar_split_path = self.tar_split_path(&layer.id);
        let tar_split_file = match &tar_split {
            Some(bytes) => Some(
                self.layer_records
                    .reserve_beside(&tar_split_path, bytes.len() as u64)?,
            ),
            None => None,
        };
        let record_room = self.layer_records.reserve()?;
        let stats = self.write(|| staged.chunks.publish())?;
        tracing::debug!(
            layer = %layer.id,
            new_chunks = stats.new_chunks,
            reused_chunks = stats.reused_chunks,
            stored_bytes = stats.stored_bytes,
            "content stored"
        );
        // Written and on disk under its temporary name (locked, so `gc`
        // leaves it); renamed into place under the layer lock.
        self.write(|| manifest_file.write(&manifest_bytes, Flush::Now))?;
        let mut files = vec![manifest_file];
        // Go clients rebuild the layer's exact tar from its directory with
        // this; none is better than one for other content.
        match (tar_split_file, &tar_split) {
            (Some(mut file), Some(bytes)) => {
                self.write(|| file.write(bytes, Flush::Now))?;
                files.push(file);
            }
            _ => self.write(|| durable::remove_file(&tar_split_path))?,
        }
        let record = self.write(|| self.publish_layer(layer, publish, &m, files, record_room))?;
        // The driver's entries Go clients look for (and, under
        // `materialize = "always"`, the layer's directory). A crash before
        // this leaves them to the next mount of the chain.
        let mut chain = vec![record.clone()];
        if !layer.parent.is_empty() {
            chain.extend(self.chain(&layer.parent)?);
        }
        self.write(|| self.lay_out(&chain, Content::Pool))?;
        Ok(record)
    }

    /// Under the layer lock: checks that `layer` may still be added (its
    /// ID and names free, its parent there) or updated (its record still
    /// there), renames `files` (written, on disk, under their temporary
    /// names) into place, and saves the record with the manifest's
    /// digests into `room`. Should the save fail, the files of a layer
    /// being added are removed again before the lock is released.
    fn publish_layer(
        &self,
        layer: &Layer,
        publish: Publish,
        m: &LayerManifest,
        files: Vec<PendingFile>,
        room: PendingFile,
    ) -> Result<Layer> {
        let mut locked = self.layer_records.lock()?;
        let layers = &mut locked.records;
        let index = match publish {
            Publish::Add => {
                // Deletes check for children under this same lock.
                self.parent_still_there(layers, &layer.parent)?;
                self.claim_layer(layers, layer)?;
                layers.push(layer.clone());
                layers.len() - 1
            }
            Publish::Update => layers
                .iter()
                .position(|l| l.id == layer.id)
                .ok_or_else(|| Error::DeletedDuringImport(layer.id.clone()))?,
        };
        let record = &mut layers[index];
        record.record_stream(m);
        record.sealed = true;
        record.flags.remove(INCOMPLETE_FLAG);
        let record = record.clone();
        let targets: Vec<PathBuf> = files.iter().map(|f| f.target().to_path_buf()).collect();
        let mut published = Vec::new();
        let result = (|| {
            for (file, target) in files.into_iter().zip(&targets) {
                file.publish(Flush::Now)?;
                published.push(target);
            }
            locked.save_reserved(room)
        })();
        if let Err(e) = result {
            if publish == Publish::Add {
                for target in published {
                    let _ = fs::remove_file(target);
                }
            }
            return Err(e);
        }
        Ok(record)
    }

    /// Applies a tar stream to a layer, as upstream's `ApplyDiff` does.
    ///
    /// - A layer with no content yet (made by `create-layer`, never
    ///   mounted, not a container's) takes the stream as its content and
    ///   becomes pool-backed, exactly as if it had been imported.
    /// - Any other layer gets the stream applied to its directory: a
    ///   pool-backed layer becomes directory-backed first (see
    ///   `store/privatize.rs`). As upstream's, its recorded digests,
    ///   sizes, compression and ID sets and its tar-split become the
    ///   stream's, so that `diff` gives this stream back.
    ///
    /// The whole stream is read and checked before anything changes, so
    /// bad input leaves the layer as it was. A `--readonly` layer, and a
    /// pool-backed one while mounted, are refused.
    pub fn apply_diff<R: Read + Send>(
        &self,
        arg: &str,
        input: R,
        observer: &dyn ImportObserver,
    ) -> Result<Layer> {
        self.check_writable()?;
        let layer = self.layer(arg)?;
        if layer.read_only {
            return Err(Error::ReadOnlyLayer(layer.id));
        }
        self.refuse_ro_layer(&layer)?;
        // A layer that is not the graph root's is then the split image
        // store's: it takes the diff in its directory there (made
        // directory-backed first), as the graph root's take it in theirs.
        let in_place = layer.read_only_store.is_some();
        let container = self.containers()?.iter().any(|c| c.layer == layer.id);
        if !layer.sealed
            && !in_place
            && !container
            && layer.diff_digest.is_empty()
            && self.has_no_content(&layer)?
        {
            // Its (empty) directory goes: the layer's content is the
            // pool's from now on, built from it where needed. Until the
            // import ends, a marker says the layer without a directory
            // is empty (not one that lost its content, for `check`).
            let emptied = self.emptied_marker(&layer.id);
            durable::create_dir_all(emptied.parent().expect("a marker has a directory"))?;
            durable::open_store_file(&emptied, durable::Open::Create)?;
            durable::fsync_dir(emptied.parent().expect("a marker has a directory"))?;
            self.drop_content_dir(&layer.id)?;
            let result = self.import_content(&layer, input, observer);
            if result.is_err() {
                self.remove_manifest(&layer.id);
                self.remove_tar_split(&layer.id);
                // Back as it was: a layer with an empty directory.
                self.drop_content_dir(&layer.id)?;
                let chain = self.chain(&layer.id)?;
                self.lay_out(&chain, Content::Directory)?;
            }
            durable::remove_file(&emptied)?;
            return result;
        }
        // A mounted layer's directory takes the diff, as upstream's does
        // (a writable mount gave it one); a pool-backed one, mounted
        // read-only from what the pool built, would be given a new
        // directory behind its mount.
        let mounted = self
            .mounts()?
            .iter()
            .any(|m| m.id == layer.id && m.count > 0);
        if mounted && layer.sealed {
            return Err(Error::Mounted {
                layer: layer.id,
                at: None,
                refused: Action::ApplyDiff,
            });
        }
        // Held until the diff is applied: the sweep must not take its
        // chunks before.
        let _guard = self.pool.write_guard()?;
        let imported = manifest::import_tar(input, &self.pool, observer)
            .map_err(|e| e.for_layer(&layer.id))?;
        let diff = imported.manifest;
        let tar_split = tar_split_of(&layer.id, &diff, &imported.crc64)?;
        let layer = self.privatize(&layer)?;
        // Its tar-split describes the content before the diff.
        let tar_split_path = self.tar_split_path_of(&layer);
        durable::remove_file(&tar_split_path)?;
        self.apply_onto_live(&layer, &diff)?;
        // As upstream's: the layer's tar-split and recorded digests are
        // this diff's from now on, so that `diff` gives this tar back.
        if let Some(bytes) = &tar_split {
            self.write(|| durable::atomic_write(&tar_split_path, bytes))?;
        }
        if in_place {
            self.change_layer(&layer.id, |layers, i| {
                layers[i].record_stream(&diff);
                Ok(())
            })?;
            return self.layer(&layer.id);
        }
        self.write(|| {
            self.layer_records.modify(|layers| {
                let Some(record) = layers.iter_mut().find(|l| l.id == layer.id) else {
                    return Err(Error::DeletedDuringImport(layer.id.clone()));
                };
                record.record_stream(&diff);
                Ok(((), true))
            })
        })?;
        self.layer(&layer.id)
    }

    /// Applies `diff` to a live layer's directory (created if missing).
    fn apply_onto_live(&self, layer: &Layer, diff: &LayerManifest) -> Result<()> {
        let chain = self.chain(&layer.id)?;
        let (dir, format) = if self.options.driver == "overlay" {
            let dir = self.live_dir_of(layer)?;
            durable::create_tree_root(&dir, durable::Flush::Now)?;
            (dir, self.overlay_format())
        } else {
            (self.prepare_vfs(&chain)?, Format::Flattened)
        };
        let options = BuildOptions {
            format,
            hardlinks: false,
            durable: true,
        };
        // The layer's directory holds host IDs (see `store/id_maps.rs`).
        let diff = layer.id_mapping().shift_manifest(diff, &layer.id)?;
        self.write(|| self.materializer()?.apply_onto(&diff, &dir, options))?;
        if layer.parent.is_empty() && self.options.driver == "overlay" {
            // Nothing is below a parentless layer: its whiteouts are moot,
            // and overlayfs lists one in the lowest layer of a read-only
            // mount without letting it be looked up.
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            for (rel, meta) in crate::materialize::walk_tree(&dir)? {
                if meta.file_type().is_char_device() && meta.rdev() == 0 {
                    let path = dir.join(std::ffi::OsStr::from_bytes(&rel));
                    fs::remove_file(&path).at(Op::Remove, &path)?;
                }
            }
        }
        Ok(())
    }

    /// Whether a layer that is not sealed has no content yet: no
    /// directory, an empty overlay `diff`, or a vfs tree that changes
    /// nothing of its parent's.
    fn has_no_content(&self, layer: &Layer) -> Result<bool> {
        let dir = self.layer_content_dir(&layer.id);
        if fs::symlink_metadata(&dir).is_err() {
            return Ok(true);
        }
        let dir = self.live_content_dir(&layer.id)?;
        if self
            .mounts()?
            .iter()
            .any(|m| m.id == layer.id && m.count > 0)
        {
            return Ok(false);
        }
        if self.options.driver == "overlay" {
            let mut entries = fs::read_dir(&dir).at(Op::Read, &dir)?;
            return Ok(entries.next().is_none());
        }
        Ok(self.changes(&layer.id)?.is_empty())
    }

    /// Layers whose import died: incomplete, and their marker not held.
    pub(crate) fn stale_incomplete_layers(&self) -> Result<Vec<String>> {
        Ok(self
            .layers()?
            .into_iter()
            .filter(|l| l.is_incomplete() && !ProcessMarker::is_held(&self.marker_path(&l.id)))
            .map(|l| l.id)
            .collect())
    }

    /// Removes layers whose import died (their marker is not held), and
    /// markers of imports that died before their record was written.
    /// Returns how many layers it removed.
    pub(crate) fn remove_incomplete_layers(&self) -> Result<usize> {
        self.remove_orphan_markers()?;
        let stale = self.stale_incomplete_layers()?;
        if stale.is_empty() {
            return Ok(0);
        }
        // The record goes first: `stale` may be out of date (an import
        // that just finished), and only the check under the lock tells.
        // Not latched by `write`: a failed rewrite leaves the record file
        // as it was, and a full disk must still let `gc` and
        // `delete-layer` free space.
        let removed = self.layer_records.modify(|layers| {
            let mut removed = Vec::new();
            layers.retain(|l| {
                let dead = stale.contains(&l.id)
                    && l.is_incomplete()
                    && !ProcessMarker::is_held(&self.marker_path(&l.id));
                if dead {
                    removed.push(l.id.clone());
                }
                !dead
            });
            let changed = !removed.is_empty();
            Ok((removed, changed))
        })?;
        for id in &removed {
            tracing::debug!(layer = %id, "removing incomplete layer");
            self.remove_layer_files(id);
        }
        Ok(removed.len())
    }

    fn remove_orphan_markers(&self) -> Result<()> {
        let dir = self.layers_dir().join(layout::INCOMPLETE);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".lock") else {
                continue;
            };
            // A dead marker of an incomplete layer goes with its record;
            // any other dead marker (no record, or the import finished but
            // died before removing it) goes now.
            let orphaned = || {
                self.layers()
                    .map(|layers| !layers.iter().any(|l| l.id == id && l.is_incomplete()))
                    .unwrap_or(false)
            };
            if ProcessMarker::remove_if_dead(&entry.path(), orphaned) {
                tracing::debug!(layer = %id, "removed the marker of a dead import");
            }
        }
        Ok(())
    }

    /// The manifest of a sealed layer.
    pub fn layer_manifest(&self, layer: &Layer) -> Result<LayerManifest> {
        // A read-only store's layer's manifest is under its own root.
        let root = layer
            .read_only_store
            .as_deref()
            .unwrap_or(self.graph_root());
        let path = layout::manifest_path(root, &layer.id);
        let bytes = fs::read(&path).at(Op::Read, &path)?;
        manifest::decode(&path, &bytes)
    }

    /// Writes the layer's tar to `out`, compressed as asked (default: as
    /// it was imported).
    pub fn diff(
        &self,
        arg: &str,
        compression: Option<Compression>,
        out: &mut dyn Write,
    ) -> Result<()> {
        let layer = self.layer(&self.mount_layer_id(arg)?)?;
        let compression = compression.unwrap_or(layer.compression);
        if !layer.sealed && self.content_dir_of(&layer).exists() {
            return self.live_diff(&layer, compression, out);
        }
        if !layer.sealed && !layer.diff_digest.is_empty() {
            // Its record says it has content, and neither a manifest for
            // it nor its directory is there (`check` reports it).
            return Err(Error::ContentGone {
                layer: layer.id.clone(),
                path: self.layer_content_dir(&layer.id),
                what: "missing",
            });
        }
        if !layer.sealed {
            // A layer with no content yet: an empty archive.
            let mut enc = compression.encoder(out).map_err(Error::writing_stream)?;
            enc.write_all(&[0u8; 1024]).map_err(Error::writing_stream)?;
            enc.finish().map_err(Error::writing_stream)?;
            return Ok(());
        }
        let m = self.layer_manifest(&layer)?;
        manifest::write_tar_compressed(&m, self.pool_of(&layer)?, compression, out)
            .map_err(|e| e.for_layer(&layer.id))
    }

    /// Deletes a layer that has no child layers and is neither an image's
    /// top layer nor a container's layer. Under a split image store, one
    /// the image store holds is deleted there (see `store/image_store.rs`).
    pub fn delete_layer(&self, arg: &str) -> Result<()> {
        self.check_writable()?;
        // Read before the image store's lock is taken: it holds those of
        // the other read-only stores only.
        let others = self.ro_layers_beside_image_store()?;
        let mut tx = self.transaction()?;
        let mut dir = self.lock_image_store_layers()?;
        let dir_layers = dir.as_ref().map_or(&[][..], |(d, _)| &d.records[..]);
        let (id, in_dir) = match find(&tx.layers.records, arg) {
            Some(found) => (found.id.clone(), false),
            None => match find(dir_layers, arg) {
                Some(found) => (found.id.clone(), true),
                None => {
                    if let Some(ro) = find(&others, arg) {
                        self.refuse_ro_layer(ro)?;
                    }
                    return Err(Kind::Layer.not_known(arg));
                }
            },
        };
        // A read-only store's layer may be a child (one a split image
        // store's directory holds), and the graph root's image a user
        // (under a split image store): upstream's one layer store sees
        // the first; the second we protect as our `delete-image` does.
        let mut layers = tx.layers.records.iter().chain(dir_layers).chain(&others);
        if let Some(child) = layers.find(|l| l.parent == id) {
            return Err(Error::HasChildren {
                layer: id,
                child: child.id.clone(),
                refused: Action::Delete,
            });
        }
        let graph_images = self.deletable_ro_images()?;
        let mut images = tx.images.records.iter().chain(&graph_images);
        if let Some(image) = images.find(|i| i.top_layer == id) {
            return Err(Error::InUse {
                kind: Kind::Layer,
                id,
                by: Kind::Image,
                by_id: image.id.clone(),
            });
        }
        if let Some(c) = tx.containers.records.iter().find(|c| c.layer == id) {
            return Err(Error::InUse {
                kind: Kind::Layer,
                id,
                by: Kind::Container,
                by_id: c.id.clone(),
            });
        }
        let _mounts = self.lock_unmounted(std::slice::from_ref(&id))?;
        self.mark_deleting(std::slice::from_ref(&id))?;
        let image_store = match (in_dir, &mut dir) {
            (true, Some((locked, root))) => {
                locked.records.retain(|l| l.id != id);
                self.write(|| locked.save())?;
                Some(root.clone())
            }
            _ => {
                tx.layers.records.retain(|l| l.id != id);
                self.write(|| tx.layers.save())?;
                None
            }
        };
        // An image's ID-mapped copy of its top layer: no longer listed.
        if Store::forget_mapped_layer(&mut tx.images.records, &id) {
            self.write(|| tx.images.save())?;
        }
        let graph_holds = tx.layers.records.iter().any(|l| l.id == id);
        drop((dir, tx));
        self.remove_deleted_layer_files(&id, image_store.as_deref(), graph_holds);
        Ok(())
    }

    /// Removes the files of the deleted layer `id`: the graph root's, and
    /// those under the split image store's `root` for one it held. The
    /// graph root's stay when it still holds a layer of that ID
    /// (`graph_holds`: two places may hold one ID, as two stores may).
    pub(crate) fn remove_deleted_layer_files(
        &self,
        id: &str,
        root: Option<&std::path::Path>,
        graph_holds: bool,
    ) {
        if let Some(root) = root {
            self.remove_image_store_files(id, root);
        }
        if graph_holds {
            let _ = fs::remove_file(self.deleting_marker(id));
        } else {
            self.remove_layer_files(id);
        }
    }

    fn deleting_marker(&self, id: &str) -> PathBuf {
        self.layers_dir().join(layout::DELETING).join(id)
    }

    /// Notes, durably, that the layers `ids` are about to lose their
    /// records: should this process die before their files are gone, the
    /// next process that opens the store for writing removes them (as it
    /// removes incomplete imports), so no stray directory outlives a
    /// killed delete.
    pub(crate) fn mark_deleting(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let dir = self.layers_dir().join(layout::DELETING);
        durable::create_dir_all(&dir)?;
        for id in ids {
            let path = self.deleting_marker(id);
            durable::open_store_file(&path, durable::Open::Create)?;
        }
        durable::fsync_dir(&dir)
    }

    /// Finishes deletes that a killed process left: files of layers whose
    /// record is gone are removed; a marker whose layer still has its
    /// record (the delete never happened) is dropped.
    pub(crate) fn finish_deletes(&self) -> Result<()> {
        let dir = self.layers_dir().join(layout::DELETING);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        let ids: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut layers = self.layers()?;
        let image_store = self.image_store_layers();
        if let Some((file, _)) = image_store {
            layers.extend(file.read()?);
        }
        for id in ids {
            if layers.iter().any(|l| l.id == id) {
                let _ = fs::remove_file(self.deleting_marker(&id));
            } else {
                let root = image_store.map(|(_, root)| root);
                self.remove_deleted_layer_files(&id, root, false);
            }
        }
        Ok(())
    }

    /// Removes a deleted layer's manifest and directories. Errors are
    /// ignored: `gc` removes what is left.
    pub(crate) fn remove_layer_files(&self, id: &str) {
        self.remove_manifest(id);
        self.remove_tar_split(id);
        let _ = fs::remove_file(self.marker_path(id));
        self.forget_emptied(id);
        self.remove_item_dirs(Kind::Layer, id);
        self.remove_driver_dirs(id);
        self.forget_used(id);
        let _ = fs::remove_file(self.deleting_marker(id));
    }
}

/// The gzipped tar-split of the tar `m` describes (with its entries'
/// content CRC-64s, recorded at import): what Go clients rebuild the
/// layer's tar with. `None`, with a warning, for a tar upstream's
/// tar-split cannot describe (which Go clients cannot import either).
fn tar_split_of(id: &str, m: &LayerManifest, crc64: &[u64]) -> Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    match manifest::tar_split::write_tar_split(m, ContentCrcs::Recorded(crc64), &mut bytes) {
        Ok(_) => Ok(Some(bytes)),
        Err(Error::TarSplitUnsupported(why)) => {
            tracing::warn!(layer = %id, "no tar-split for Go clients: {why}");
            Ok(None)
        }
        Err(e) => Err(e.for_layer(id)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_written_as_gos_rfc3339_nano() {
        use chrono::TimeZone;
        let at = |nanos| {
            let t = chrono::Utc
                .with_ymd_and_hms(2026, 12, 5, 10, 27, 13)
                .unwrap();
            super::go_rfc3339_nano(t + chrono::Duration::nanoseconds(nanos))
        };
        assert_eq!(at(335_654_030), "2026-12-05T10:27:13.33565403Z");
        assert_eq!(at(500_000_000), "2026-12-05T10:27:13.5Z");
        assert_eq!(at(1), "2026-12-05T10:27:13.000000001Z");
        assert_eq!(at(0), "2026-12-05T10:27:13Z");
    }

    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn a_layer_whose_parent_was_deleted_since_it_was_looked_up_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreOptions {
            graph_root: dir.path().join("graph"),
            run_root: dir.path().join("run"),
            driver: "vfs".into(),
            ..StoreOptions::defaults()
        })
        .unwrap();
        let options = LayerOptions::default();
        let parent = store.create_layer(None, &options).unwrap();
        // A create or import looked the parent up, then a delete ran.
        let child = store.new_layer_record(Some(&parent.id), &options).unwrap();
        store.delete_layer(&parent.id).unwrap();
        let e = store.add_layer_record(&child).unwrap_err();
        assert!(matches!(e, Error::NotKnown { .. }), "{e}");
        assert!(store.layers().unwrap().is_empty());
    }
}
