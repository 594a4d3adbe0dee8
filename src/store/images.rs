//! Image records (`<drv>-images/images.json`): a top layer plus metadata
//! and big data; digests, sizes, and deletion that walks down the image's
//! layers removing those nothing else uses.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ids::{new_id, validate_new_id};
use super::item::{claim, dedup_names, find, BigDataIndex, Item};
use super::kind::Kind;
use super::layers::now;
use super::layout;
use super::Store;
use crate::durable;
use crate::error::{Error, Result};

/// An image record, with upstream's JSON field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// The image ID.
    pub id: String,
    /// The image's digest: given at creation (`--digest`), else that of
    /// the first manifest stored as its big data (as upstream keeps it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Names, unique among images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Every name the image had, newest first.
    #[serde(
        default,
        rename = "names-history",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub names_history: Vec<String>,
    /// The top layer's ID; empty for a layerless image.
    #[serde(default, rename = "layer", skip_serializing_if = "String::is_empty")]
    pub top_layer: String,
    /// Copies of the top layer with other ID mappings, made for
    /// containers that map IDs otherwise (upstream's `mapped-layers`);
    /// they go with the image.
    #[serde(
        default,
        rename = "mapped-layers",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mapped_layers: Vec<String>,
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
    /// Derived, never written: the root of the read-only image store the
    /// image was read from (`None`: the writable store's). Upstream's
    /// `ReadOnly` (`Read Only: true`), which is not in its JSON either.
    #[serde(skip)]
    pub read_only_store: Option<PathBuf>,
}

impl Item for Image {
    const KIND: Kind = Kind::Image;
    fn id(&self) -> &str {
        &self.id
    }
    fn names(&self) -> &[String] {
        &self.names
    }
    fn names_mut(&mut self) -> &mut Vec<String> {
        &mut self.names
    }
    fn names_history_mut(&mut self) -> Option<&mut Vec<String>> {
        Some(&mut self.names_history)
    }
    fn metadata_mut(&mut self) -> &mut String {
        &mut self.metadata
    }
    fn big_data_mut(&mut self) -> &mut BigDataIndex {
        &mut self.big_data
    }
    /// An image without a digest takes that of the first manifest set
    /// (a key that starts with `manifest`), as upstream's
    /// `recomputeDigests` does, and keeps it in its record's `digest`.
    fn big_data_set(&mut self, key: &str, digest: &str) {
        if self.digest.is_empty() && key.starts_with(MANIFEST_KEY_PREFIX) {
            self.digest = digest.to_string();
        }
    }
}

/// Big data whose key starts so is a manifest of the image: its digest is
/// one of the image's (upstream's `ImageDigestManifestBigDataNamePrefix`).
const MANIFEST_KEY_PREFIX: &str = "manifest";

impl Image {
    /// The image's digests: `--digest`, then the digest of every big data
    /// item whose key starts with `manifest`, without repeats.
    pub fn digests(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.digest.is_empty() {
            out.push(self.digest.clone());
        }
        for key in &self.big_data.names {
            if key.starts_with(MANIFEST_KEY_PREFIX) {
                if let Some(d) = self.big_data.digests.get(key) {
                    if !out.contains(d) {
                        out.push(d.clone());
                    }
                }
            }
        }
        out
    }
}

/// Choices when creating an image.
#[derive(Clone, Debug, Default)]
pub struct ImageOptions {
    /// The ID to use instead of a random one.
    pub id: Option<String>,
    /// Names to give the image.
    pub names: Vec<String>,
    /// The image's digest.
    pub digest: Option<String>,
    /// Metadata.
    pub metadata: String,
}

/// Checks `algorithm:hex` digests (sha256, sha384, sha512), refused in
/// the words of upstream's digest package.
pub(crate) fn validate_digest(digest: &str) -> Result<()> {
    let bad = |why| Error::InvalidName(digest.to_string(), why);
    let format = "invalid checksum digest format";
    let (algorithm, hex) = digest.split_once(':').ok_or_else(|| bad(format))?;
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(bad("unsupported digest algorithm")),
    };
    if hex.is_empty() {
        return Err(bad(format));
    }
    if hex.len() != len {
        return Err(bad("invalid checksum digest length"));
    }
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad(format));
    }
    Ok(())
}

impl Store {
    /// Every image.
    pub fn images(&self) -> Result<Vec<Image>> {
        self.image_records.read()
    }

    /// The image named by `arg`.
    pub fn image(&self, arg: &str) -> Result<Image> {
        let main = self.images()?;
        if let Some(image) = find(&main, arg) {
            return Ok(image.clone());
        }
        self.ro_image(arg, &main)?
            .ok_or_else(|| Kind::Image.not_known(arg))
    }

    /// Images that have `digest` among their digests.
    pub fn images_by_digest(&self, digest: &str) -> Result<Vec<Image>> {
        validate_digest(digest)?;
        Ok(self
            .all_images()?
            .into_iter()
            .filter(|i| i.digests().iter().any(|d| d == digest))
            .collect())
    }

    /// Creates an image whose top layer is `top_layer` (or none).
    pub fn create_image(&self, top_layer: Option<&str>, options: &ImageOptions) -> Result<Image> {
        self.check_writable()?;
        let id = options.id.clone().unwrap_or_else(new_id);
        validate_new_id(&id)?;
        if let Some(d) = &options.digest {
            validate_digest(d)?;
        }
        let names = dedup_names(&options.names);
        let tx = self.transaction()?;
        let top_layer = match top_layer.filter(|t| !t.is_empty()) {
            Some(arg) => match find(&tx.layers.records, arg) {
                Some(layer) => layer.id.clone(),
                // A read-only store's layer may be an image's top.
                None => {
                    self.ro_layer(arg)?
                        .ok_or_else(|| Kind::Layer.not_known(arg))?
                        .id
                }
            },
            None => String::new(),
        };
        let mut images = tx.images;
        claim(&images.records, &id, &names)?;
        let image = Image {
            id,
            digest: options.digest.clone().unwrap_or_default(),
            names_history: names.iter().rev().cloned().collect(),
            names,
            top_layer,
            mapped_layers: Vec::new(),
            metadata: options.metadata.clone(),
            big_data: BigDataIndex::default(),
            created: now(),
            flags: BTreeMap::new(),
            read_only_store: None,
        };
        images.records.push(image.clone());
        self.write(|| images.save())?;
        Ok(image)
    }

    /// The image's size: its layers' uncompressed sizes plus its big data.
    pub fn image_size(&self, image: &Image) -> Result<u64> {
        let layers = self.all_layers()?;
        // Sizes come from the record files: any numbers, so never overflow.
        let mut size = image
            .big_data
            .sizes
            .values()
            .fold(0u64, |sum, n| sum.saturating_add(*n));
        let mut next = image.top_layer.clone();
        let mut seen = std::collections::HashSet::new();
        while !next.is_empty() && seen.insert(next.clone()) {
            let layer = layers
                .iter()
                .find(|l| l.id == next)
                .ok_or_else(|| Kind::Layer.not_known(&next))?;
            size = size.saturating_add(layer.diff_size);
            next = layer.parent.clone();
        }
        Ok(size)
    }

    /// Deletes an image no container uses, then every layer below it that
    /// no other image, container or child layer still uses (children
    /// first). With `test`, only reports which layers would go. Returns the
    /// deleted (or deletable) layer IDs, top first.
    pub fn delete_image(&self, arg: &str, test: bool) -> Result<Vec<String>> {
        if !test {
            self.check_writable()?;
        }
        let mut tx = self.transaction()?;
        let image = match find(&tx.images.records, arg) {
            Some(image) => image.clone(),
            None => match self.ro_image(arg, &tx.images.records)? {
                Some(ro) if self.deletable_image_store(&ro).is_some() => ro,
                Some(ro) => {
                    let root = ro.read_only_store.unwrap_or_default();
                    return Err(Self::refuse_read_only(Kind::Image, &ro.id, &root));
                }
                None => return Err(Kind::Image.not_known(arg)),
            },
        };
        // The graph root's images under a split image store, locked after
        // the transaction's: upstream deletes the image from every
        // writable image store that holds it, and counts their images as
        // users of its layers.
        let mut graph = match self.ro_image(&image.id, &[])?.filter(|i| i.id == image.id) {
            Some(ro) => match self.deletable_image_store(&ro) {
                Some((file, root)) => Some((file.lock()?, root)),
                None => None,
            },
            None => None,
        };
        let graph_images = match &graph {
            Some((locked, _)) => locked.records.clone(),
            None => self.deletable_ro_images()?,
        };
        let users: Vec<&Image> = tx.images.records.iter().chain(&graph_images).collect();
        // A read-only store's layer may be a child of this store's. The
        // split image store's layers are this store's too: their records
        // are locked last, and their layers deleted as the graph root's.
        let ro_layers = self.ro_layers_beside_image_store()?;
        let mut dir = self.lock_image_store_layers()?;
        let dir_layers = dir.as_ref().map_or(&[][..], |(d, _)| &d.records[..]);
        if let Some(c) = tx.containers.records.iter().find(|c| c.image == image.id) {
            return Err(Error::InUse {
                kind: Kind::Image,
                id: image.id,
                by: Kind::Container,
                by_id: c.id.clone(),
            });
        }
        // Its ID-mapped copies of the top layer go first, as upstream's.
        let mut doomed: Vec<String> = image
            .mapped_layers
            .iter()
            .filter(|m| tx.layers.records.iter().any(|l| &l.id == *m))
            .cloned()
            .collect();
        let mut next = image.top_layer.clone();
        while !next.is_empty() {
            let mut own = tx.layers.records.iter().chain(dir_layers);
            let Some(layer) = own.find(|l| l.id == next) else {
                break;
            };
            let used = users.iter().any(|i| {
                i.id != image.id && (i.top_layer == layer.id || i.mapped_layers.contains(&layer.id))
            }) || tx.containers.records.iter().any(|c| c.layer == layer.id)
                || tx
                    .layers
                    .records
                    .iter()
                    .chain(dir_layers)
                    .chain(&ro_layers)
                    .any(|l| l.parent == layer.id && !doomed.contains(&l.id));
            if used {
                break;
            }
            doomed.push(layer.id.clone());
            next = layer.parent.clone();
        }
        if test {
            return Ok(doomed);
        }
        let _mounts = self.lock_unmounted(&doomed)?;
        if tx.images.records.iter().any(|i| i.id == image.id) {
            tx.images.records.retain(|i| i.id != image.id);
            self.write(|| tx.images.save())?;
        }
        if let Some((locked, root)) = &mut graph {
            locked.records.retain(|i| i.id != image.id);
            self.write(|| locked.save())?;
            if super::layout::owns_paths(&image.id) {
                let dir = self.item_dir_in(Kind::Image, &image.id, Some(root));
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        // Each doomed layer goes from where it is kept, the graph root's
        // records first when both hold its ID.
        let graph_held: Vec<bool> = doomed
            .iter()
            .map(|id| tx.layers.records.iter().any(|l| &l.id == id))
            .collect();
        if !doomed.is_empty() {
            self.mark_deleting(&doomed)?;
            if graph_held.contains(&true) {
                tx.layers.records.retain(|l| !doomed.contains(&l.id));
                self.write(|| tx.layers.save())?;
            }
            let from_dir: Vec<&String> = doomed
                .iter()
                .zip(&graph_held)
                .filter_map(|(id, graph)| (!graph).then_some(id))
                .collect();
            if let (Some((locked, _)), false) = (&mut dir, from_dir.is_empty()) {
                locked.records.retain(|l| !from_dir.contains(&&l.id));
                self.write(|| locked.save())?;
            }
        }
        let root = dir.map(|(_, root)| root);
        drop(tx);
        self.remove_item_dirs(Kind::Image, &image.id);
        for (id, graph) in doomed.iter().zip(graph_held) {
            let image_store = if graph { None } else { root.as_deref() };
            self.remove_deleted_layer_files(id, image_store, false);
        }
        Ok(doomed)
    }

    /// `<graphroot>/<drv>-images/<id>/userdata`, created if missing: the
    /// graph root's, under a split image store too, as upstream's
    /// `ImageDirectory` gives it.
    pub fn image_dir(&self, arg: &str) -> Result<PathBuf> {
        let id = self.image(arg)?.id;
        let images = layout::images_dir(self.graph_root(), &self.options.driver);
        let dir = images.join(&id).join(layout::USERDATA);
        durable::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// `<runroot>/<drv>-images/<id>/userdata`, created if missing.
    pub fn image_run_dir(&self, arg: &str) -> Result<PathBuf> {
        let id = self.image(arg)?.id;
        let dir = self.item_run_dir(Kind::Image, &id).join(layout::USERDATA);
        durable::create_dir_all(&dir)?;
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_validate() {
        assert!(validate_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        for bad in [
            "",
            "sha256:",
            "sha256:xyz",
            "md5:abcd",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(validate_digest(bad).is_err(), "{bad}");
        }
    }
}
