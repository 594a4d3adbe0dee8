//! Big data: named blobs of layers, images and containers, one file per
//! key under `<records dir>/<id>/`, written atomically; their sizes and
//! digests are kept in the record (images and containers).

use std::fs;
use std::path::Path;

use base64::Engine;

use super::containers::find_container;
use super::item::{find, Item};
use super::kind::Kind;
use super::layout;
use super::records::RecordFile;
use super::Store;
use crate::durable;
use crate::error::{Error, IoContext, Op, Result};
use crate::manifest::Sha256;

/// The file name of a big data key: the key itself when it is made of
/// `[.0-9a-z]` only (and is not `.`, `..` or `userdata`), otherwise `=`
/// and the URL-safe base64 of the key.
pub(crate) fn file_name(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b == b'.' || b.is_ascii_digit() || b.is_ascii_lowercase())
        && !matches!(key, "." | "..")
        && key != layout::USERDATA;
    if plain {
        key.to_string()
    } else {
        format!("={}", base64::engine::general_purpose::URL_SAFE.encode(key))
    }
}

type Finder<T> = fn(&[T], &str) -> Option<usize>;

fn by_lookup<T: Item>(items: &[T], arg: &str) -> Option<usize> {
    let id = find(items, arg)?.id().to_string();
    items.iter().position(|i| i.id() == id)
}

fn by_container_lookup(items: &[super::Container], arg: &str) -> Option<usize> {
    let id = find_container(items, arg)?.id.clone();
    items.iter().position(|i| i.id == id)
}

impl Store {
    /// The keys of an item's big data, in the order they were first set.
    pub fn big_data_names(&self, kind: Kind, arg: &str) -> Result<Vec<String>> {
        Ok(match kind {
            Kind::Layer => self.layer(arg)?.big_data.names,
            Kind::Image => self.image(arg)?.big_data.names,
            Kind::Container => self.container(arg)?.big_data.names,
        })
    }

    /// An item's big data item `key`.
    pub fn big_data(&self, kind: Kind, arg: &str, key: &str) -> Result<Vec<u8>> {
        let (id, store) = match kind {
            Kind::Layer => {
                let l = self.layer(arg)?;
                (l.id, l.read_only_store)
            }
            Kind::Image => {
                let i = self.image(arg)?;
                (i.id, i.read_only_store)
            }
            Kind::Container => (self.container(arg)?.id, None),
        };
        let path = self
            .item_dir_in(kind, &id, store.as_deref())
            .join(file_name(key));
        match fs::read(&path) {
            Ok(data) => Ok(data),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NoBigData {
                kind,
                id,
                key: key.to_string(),
            }),
            Err(e) => Err(e).at(Op::Read, &path),
        }
    }

    /// The size of big data item `key`.
    pub fn big_data_size(&self, kind: Kind, arg: &str, key: &str) -> Result<u64> {
        Ok(self.big_data(kind, arg, key)?.len() as u64)
    }

    /// The `sha256:` digest of big data item `key`.
    pub fn big_data_digest(&self, kind: Kind, arg: &str, key: &str) -> Result<String> {
        Ok(Sha256::digest(&self.big_data(kind, arg, key)?))
    }

    /// Sets big data item `key` (replacing it atomically) and records its
    /// size and digest.
    pub fn set_big_data(&self, kind: Kind, arg: &str, key: &str, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        if key.is_empty() {
            return Err(Error::InvalidName(
                key.into(),
                "a big data key cannot be empty",
            ));
        }
        if let (Kind::Layer, Some((file, root))) = (kind, self.image_store_layers()) {
            if let Some(layer) = self.image_store_layer(arg)? {
                return self.set_big_data_in(file, by_lookup, &layer.id, key, data, Some(root));
            }
        }
        self.refuse_ro_arg(kind, arg)?;
        match kind {
            Kind::Layer => {
                self.set_big_data_in(&self.layer_records, by_lookup, arg, key, data, None)
            }
            Kind::Image => {
                self.set_big_data_in(&self.image_records, by_lookup, arg, key, data, None)
            }
            Kind::Container => self.set_big_data_in(
                &self.container_records,
                by_container_lookup,
                arg,
                key,
                data,
                None,
            ),
        }
    }

    fn set_big_data_in<T: Item>(
        &self,
        file: &RecordFile<T>,
        finder: Finder<T>,
        arg: &str,
        key: &str,
        data: &[u8],
        store: Option<&Path>,
    ) -> Result<()> {
        self.write(|| {
            file.modify(|items| {
                let index = finder(items, arg).ok_or_else(|| T::KIND.not_known(arg))?;
                let dir = self.item_dir_in(T::KIND, items[index].id(), store);
                durable::create_dir_all(&dir)?;
                durable::atomic_write(&dir.join(file_name(key)), data)?;
                let index_of = items[index].big_data_mut();
                if !index_of.names.iter().any(|n| n == key) {
                    index_of.names.push(key.to_string());
                }
                if T::KIND != Kind::Layer {
                    let digest = Sha256::digest(data);
                    index_of.sizes.insert(key.to_string(), data.len() as u64);
                    index_of.digests.insert(key.to_string(), digest.clone());
                    items[index].big_data_set(key, &digest);
                }
                Ok(((), true))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn keys_map_to_safe_file_names() {
        assert_eq!(file_name("manifest"), "manifest");
        assert_eq!(file_name("config.json"), "config.json");
        assert!(file_name("Manifest-sha256:ab").starts_with('='));
        for key in [".", "..", "userdata", "a/b", "../../etc/passwd", "?????>>>"] {
            let name = file_name(key);
            assert!(
                name.starts_with('=') && !name.contains('/'),
                "{key} -> {name}"
            );
        }
    }
}
