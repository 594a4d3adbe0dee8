//! `check`'s part for the records: a layer's parent, the manifest of a
//! sealed layer against its record, big data items against their
//! records' sizes and digests, layers nothing uses, and the layers and
//! images that images and containers name. Reads no layer content.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::sync::Arc;

use super::{
    CheckOptions, Records, Remedy, ScanReport, CONTAINER_IMAGE_MISSING, IMAGE_LAYER_MISSING,
    LAYER_INCORRECT_DIGEST, LAYER_INCORRECT_SIZE, LAYER_MISSING, LAYER_UNREFERENCED,
};
use crate::error::{IoContext, Op};
use crate::manifest::{self, LayerManifest, Sha256};
use crate::store::bigdata::file_name;
use crate::store::item::BigDataIndex;
use crate::store::{layout, Kind, Layer, Store};

impl Store {
    /// Each layer's parent and big data, and a sealed layer's manifest
    /// against its record; returns the manifests that could be read.
    pub(super) fn scan_layer_records(
        &self,
        scan: &mut ScanReport,
        layers: &[&Layer],
        by_id: &HashMap<&str, &Layer>,
    ) -> HashMap<String, Arc<LayerManifest>> {
        let mut manifests = HashMap::new();
        for layer in layers {
            self.scan_parent_and_data(scan, layer, by_id);
            // A directory-backed layer's content is its directory; one
            // whose record says it has content (a diff digest) while
            // neither a manifest for it nor its directory is there lost
            // its content.
            if !layer.sealed
                && (layer.diff_digest.is_empty()
                    || layer.is_incomplete()
                    || self.layer_content_dir(&layer.id).is_dir())
            {
                continue;
            }
            match self.read_manifest(layer) {
                Ok(m) => {
                    if let Some(message) = record_mismatch(layer, &m) {
                        scan.add(Kind::Layer, &layer.id, message, Remedy::Remove);
                    }
                    manifests.insert(layer.id.clone(), Arc::new(m));
                }
                Err(message) => scan.add(Kind::Layer, &layer.id, message, Remedy::Remove),
            }
        }
        manifests
    }

    /// The split image store's layers: each one's parent and big data,
    /// and that its content is where its writer put it (its directory
    /// there, or its manifest in that store's pool).
    pub(super) fn scan_image_store_layers(
        &self,
        scan: &mut ScanReport,
        records: &Records,
        by_id: &HashMap<&str, &Layer>,
    ) {
        for layer in records
            .image_store_layers
            .iter()
            .filter(|l| !l.is_incomplete())
        {
            self.scan_parent_and_data(scan, layer, by_id);
            let has_content = layer.sealed || self.ro_in_place(layer).is_some();
            if !layer.diff_digest.is_empty() && !has_content {
                let root = layer
                    .read_only_store
                    .as_deref()
                    .unwrap_or(self.graph_root());
                let dir = layout::content_dir(root, &self.options.driver, &layer.id);
                let message = format!("layer directory {} is missing", dir.display());
                scan.add(Kind::Layer, &layer.id, message, Remedy::Remove);
            }
        }
    }

    /// A layer's parent, and its big data (in its own store's records
    /// directory: the split image store's for one of its layers).
    fn scan_parent_and_data(
        &self,
        scan: &mut ScanReport,
        layer: &Layer,
        by_id: &HashMap<&str, &Layer>,
    ) {
        if !layer.parent.is_empty() && !by_id.contains_key(layer.parent.as_str()) {
            let message = format!("parent layer {}: {LAYER_MISSING}", layer.parent);
            scan.add(Kind::Layer, &layer.id, message, Remedy::Remove);
        }
        let store = layer.read_only_store.as_deref();
        for message in self.big_data_problems(Kind::Layer, &layer.id, &layer.big_data, true, store)
        {
            scan.add(Kind::Layer, &layer.id, message, Remedy::Remove);
        }
    }

    /// The manifest of sealed `layer`, or what is wrong with it.
    fn read_manifest(&self, layer: &Layer) -> std::result::Result<LayerManifest, String> {
        let path = layout::manifest_path(self.graph_root(), &layer.id);
        let m = match fs::read(&path) {
            Ok(bytes) => manifest::decode(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("layer manifest {} is missing", path.display()));
            }
            Err(e) => Err(e).at(Op::Read, &path),
        };
        m.map_err(|e| format!("layer manifest cannot be read: {e}"))
    }

    /// Layers that no image, container or mount uses, once older than
    /// the options allow.
    pub(super) fn scan_unreferenced(
        &self,
        scan: &mut ScanReport,
        records: &Records,
        layers: &[&Layer],
        by_id: &HashMap<&str, &Layer>,
        options: &CheckOptions,
    ) {
        let mut referenced: HashSet<String> = HashSet::new();
        let tops = records
            .images
            .iter()
            .chain(&records.graph_images)
            .map(|i| i.top_layer.as_str())
            .chain(records.containers.iter().map(|c| c.layer.as_str()))
            .chain(records.mounted.iter().map(|m| m.as_str()));
        for top in tops {
            referenced.extend(records.chain(by_id, top));
        }
        let now = chrono::Utc::now();
        let image_store = records
            .image_store_layers
            .iter()
            .filter(|l| !l.is_incomplete());
        for layer in layers.iter().copied().chain(image_store) {
            if referenced.contains(&layer.id) {
                continue;
            }
            let old = match chrono::DateTime::parse_from_rfc3339(&layer.created) {
                Ok(created) => (now - created.with_timezone(&chrono::Utc))
                    .to_std()
                    .is_ok_and(|age| age >= options.max_unreferenced_age),
                // No usable creation time: old enough.
                Err(_) => true,
            };
            if old {
                let message = LAYER_UNREFERENCED.to_string();
                scan.add(Kind::Layer, &layer.id, message, Remedy::Unreferenced);
            }
        }
    }

    /// Images: their layers and big data.
    pub(super) fn scan_images(
        &self,
        scan: &mut ScanReport,
        records: &Records,
        by_id: &HashMap<&str, &Layer>,
        options: &CheckOptions,
    ) {
        for image in records.images.iter().chain(&records.graph_images) {
            let mut next = image.top_layer.as_str();
            let mut seen = HashSet::new();
            while !next.is_empty() && seen.insert(next) {
                match by_id.get(next) {
                    Some(layer) => next = &layer.parent,
                    None => {
                        let message = format!("layer {next}: {IMAGE_LAYER_MISSING}");
                        scan.add(Kind::Image, &image.id, message, Remedy::Remove);
                        break;
                    }
                }
            }
            let index = &image.big_data;
            let store = image.read_only_store.as_deref();
            let quick = options.quick;
            for message in self.big_data_problems(Kind::Image, &image.id, index, quick, store) {
                scan.add(Kind::Image, &image.id, message, Remedy::Remove);
            }
        }
    }

    /// Containers: their image, layer and big data.
    pub(super) fn scan_containers(
        &self,
        scan: &mut ScanReport,
        records: &Records,
        options: &CheckOptions,
    ) {
        for c in &records.containers {
            if !c.image.is_empty()
                && !records.images.iter().any(|i| i.id == c.image)
                && !records.ro_images.contains(&c.image)
            {
                let message = format!("image {}: {CONTAINER_IMAGE_MISSING}", c.image);
                scan.add(Kind::Container, &c.id, message, Remedy::Remove);
            }
            // A read-only store's layer (one a split image store's
            // directory holds) is not missing.
            let ro_layer = || records.ro_layers.iter().any(|l| l.id == c.layer);
            if records.layer(&c.layer).is_none() && !ro_layer() {
                let message = format!("layer {}: {LAYER_MISSING}", c.layer);
                scan.add(Kind::Container, &c.id, message, Remedy::Remove);
            }
            for message in
                self.big_data_problems(Kind::Container, &c.id, &c.big_data, options.quick, None)
            {
                scan.add(Kind::Container, &c.id, message, Remedy::Remove);
            }
        }
    }

    /// Missing big data files, and files whose size (or, unless `quick`,
    /// digest) differs from the record's.
    fn big_data_problems(
        &self,
        kind: Kind,
        id: &str,
        index: &BigDataIndex,
        quick: bool,
        store: Option<&std::path::Path>,
    ) -> Vec<String> {
        let what = kind.name();
        let mut out = Vec::new();
        for key in &index.names {
            let path = self.item_dir_in(kind, id, store).join(file_name(key));
            let size = match fs::metadata(&path) {
                Ok(meta) if meta.is_file() => meta.len(),
                _ => {
                    out.push(format!("data item {key:?}: {what} data item is missing"));
                    continue;
                }
            };
            if index.sizes.get(key).is_some_and(|&want| want != size) {
                out.push(format!(
                    "data item {key:?}: {what} data item has incorrect size"
                ));
                continue;
            }
            if quick {
                continue;
            }
            if let Some(want) = index.digests.get(key) {
                let digest = fs::read(&path).map(|data| Sha256::digest(&data));
                if digest.as_ref().ok() != Some(want) {
                    out.push(format!(
                        "data item {key:?}: {what} data item has incorrect digest"
                    ));
                }
            }
        }
        out
    }
}

/// How a layer's record and its manifest disagree on the layer's digest
/// or size.
fn record_mismatch(layer: &Layer, m: &LayerManifest) -> Option<String> {
    if m.diff_digest != layer.diff_digest {
        Some(format!(
            "{LAYER_INCORRECT_DIGEST}: the record says {}, its manifest {}",
            layer.diff_digest, m.diff_digest
        ))
    } else if m.diff_size != layer.diff_size {
        Some(format!(
            "{LAYER_INCORRECT_SIZE}: the record says {}, its manifest {}",
            layer.diff_size, m.diff_size
        ))
    } else {
        None
    }
}
