//! Driver-level layers, as upstream's `storage-layers` and
//! `create-storage-layer` see them: layer directories the driver holds,
//! whether or not a layer record knows them.
//!
//! Upstream's drivers hold one directory per layer; ours build a layer's
//! directories on demand from the pool, so the layers the driver holds
//! are the layers with a record (their directories are there, or are
//! built by the next mount) and the directories no record knows.
//! `create-storage-layer` makes such a directory as upstream's drivers
//! do (overlay: `diff`, `work`, `merged`, `link`, its short link and, on a
//! parent, `lower`; vfs: a copy of the parent's tree). `check` reports
//! them (`layer in lower level storage driver not accounted for`) and
//! `check -r` removes them (`check/materialized.rs`). This module never
//! touches a directory a record knows.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::driver::own_dir;
use super::id_maps::{IdMapping, IdMappingOptions};
use super::{ids, layout, Kind, Store};
use crate::durable;
use crate::error::{Error, IoContext, Op, Result};

impl Store {
    /// The IDs of the layers the driver holds: every complete layer with
    /// a record, and every layer directory no record knows, sorted.
    pub fn storage_layers(&self) -> Result<Vec<String>> {
        let mut ids: BTreeSet<String> = self.driver_layer_dirs().into_iter().collect();
        // Directories built here for a read-only store's layers' mounts
        // are that store's layers, not this driver's.
        for layer in self.ro_layers()? {
            ids.remove(&layer.id);
        }
        ids.extend(
            self.layers()?
                .into_iter()
                .filter(|l| !l.is_incomplete())
                .map(|l| l.id),
        );
        Ok(ids.into_iter().collect())
    }

    /// Makes a layer directory without a record, on `parent` (a layer,
    /// by ID, name or unique prefix, or a directory an earlier call
    /// made), as upstream's `create-storage-layer` does. Returns its ID.
    pub fn create_storage_layer(
        &self,
        parent: Option<&str>,
        id: Option<&str>,
        id_mappings: &IdMappingOptions,
    ) -> Result<String> {
        self.check_writable()?;
        let parent = match parent {
            None => None,
            Some(arg) => Some(self.storage_parent(arg)?),
        };
        let id = match id {
            Some(id) => {
                ids::validate_new_id(id)?;
                let taken = self
                    .layer_dirs(id)
                    .iter()
                    .any(|d| d.symlink_metadata().is_ok());
                if taken || self.layers()?.iter().any(|l| l.id == id) {
                    return Err(Error::IdInUse(id.to_string()));
                }
                id.to_string()
            }
            None => ids::new_id(),
        };
        let made = if self.options.driver == "overlay" {
            self.create_overlay_storage_layer(&id, parent.as_ref())
        } else {
            let tree = self.layer_content_dir(&id);
            match &parent {
                Some(StorageParent::Layer(chain)) => {
                    copy_tree(&self.content_dir_of(&chain[0]), &tree)
                }
                Some(StorageParent::Driver(p)) => copy_tree(&self.layer_content_dir(p), &tree),
                None => durable::create_tree_root(&tree, durable::Flush::Now),
            }
            .and_then(|()| durable::fsync_parent(&tree))
        };
        // With ID maps, the tree's root belongs to the container's root,
        // as upstream's drivers make it.
        let (uids, gids) = id_mappings.resolve((&[], &[]));
        let made = made.and_then(|()| {
            let (uid, gid) = IdMapping::new(&uids, &gids).root_pair();
            let root = self.layer_content_dir(&id);
            match (uid, gid) {
                (0, 0) => Ok(()),
                _ => std::os::unix::fs::lchown(&root, Some(uid), Some(gid)).at(Op::Chown, &root),
            }
        });
        if let Err(e) = made {
            // Nothing half made stays behind.
            self.remove_driver_dirs(&id);
            return Err(e);
        }
        Ok(id)
    }

    /// `create-storage-layer`'s parent: a layer (its chain, whose
    /// directories are built if missing; a read-only store's too) or a
    /// directory no record knows.
    fn storage_parent(&self, arg: &str) -> Result<StorageParent> {
        match self.layer(arg) {
            Ok(layer) => {
                let chain = self.chain(&layer.id)?;
                if self.options.driver == "overlay" {
                    self.prepare_overlay(&chain)?;
                } else {
                    self.prepare_vfs(&chain)?;
                }
                Ok(StorageParent::Layer(chain))
            }
            Err(e) if e.is_not_known() => {
                let known = self.driver_layer_dirs().into_iter().any(|d| d == arg);
                if known && layout::owns_paths(arg) {
                    Ok(StorageParent::Driver(arg.to_string()))
                } else {
                    Err(Kind::Layer.not_known(arg))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `overlay/<id>/{diff,work,merged,link}`, `l/<short>` and, on a
    /// parent, `lower`: the parent's short link, then its own lowers.
    fn create_overlay_storage_layer(&self, id: &str, parent: Option<&StorageParent>) -> Result<()> {
        let dir = self.driver_dir().join(id);
        let lower = match parent {
            None => None,
            // A read-only store's layer (and so its whole chain): the
            // short links by which `lower` files list those.
            Some(StorageParent::Layer(chain)) if chain[0].read_only_store.is_some() => {
                Some(self.ro_link_entries(chain)?.join(":"))
            }
            Some(StorageParent::Layer(chain)) => Some(self.storage_lower(&chain[0].id)?),
            Some(StorageParent::Driver(p)) => Some(self.storage_lower(p)?),
        };
        own_dir(&self.driver_dir().join(layout::SHORT_LINKS))?;
        durable::create_tree_root(&dir.join(layout::DIFF), durable::Flush::Now)?;
        durable::create_dir_all(&dir.join(layout::WORK))?;
        durable::create_dir_all(&dir.join(layout::MERGED))?;
        if let Some(lower) = lower {
            durable::atomic_write(&dir.join(layout::LOWER), lower.as_bytes())?;
        }
        self.ensure_link(id, durable::Flush::Now)?;
        durable::fsync_parent(&dir)
    }

    /// The `lower` file of a layer on `p`, a layer directory of this
    /// store: `p`'s short link, then its own lowers.
    fn storage_lower(&self, p: &str) -> Result<String> {
        let short = self.short_link(p)?;
        let below = self.driver_dir().join(p).join(layout::LOWER);
        let mut lower = format!("{}/{short}", layout::SHORT_LINKS);
        match fs::read_to_string(&below) {
            Ok(rest) if !rest.trim().is_empty() => {
                lower.push(':');
                lower.push_str(rest.trim());
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(Op::Read, &below),
        }
        Ok(lower)
    }
}

/// What `create-storage-layer` puts a layer on.
enum StorageParent {
    /// A layer's chain, top first.
    Layer(Vec<super::Layer>),
    /// A layer directory no record knows.
    Driver(String),
}

/// Copies the tree at `from` to `to` (which must not exist): directories,
/// regular files, symlinks, devices and FIFOs, with their modes and
/// owners. Symlinks are copied, never followed.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(from).at(Op::Stat, from)?;
    let t = meta.file_type();
    if t.is_dir() {
        fs::create_dir(to).at(Op::Mkdir, to)?;
        for entry in fs::read_dir(from).at(Op::ReadDir, from)? {
            let entry = entry.at(Op::ReadDir, from)?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if t.is_symlink() {
        let target = fs::read_link(from).at(Op::Readlink, from)?;
        std::os::unix::fs::symlink(&target, to).at(Op::Symlink, to)?;
    } else if t.is_file() {
        fs::copy(from, to).at(Op::Copy, to)?;
    } else {
        let kind = nix::sys::stat::SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
        let mode = nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777);
        nix::sys::stat::mknod(to, kind, mode, meta.rdev())
            .map_err(|e| Error::io(Op::Mknod, to, std::io::Error::from(e)))?;
    }
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid())).at(Op::Chown, to)?;
    if !t.is_symlink() {
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .at(Op::Chmod, to)?;
    }
    Ok(())
}
