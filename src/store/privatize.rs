//! Making a pool-backed layer directory-backed before it is written
//! (`mount` without `-r`, `copy`, `applydiff`), as upstream lets every
//! layer that is not `--readonly` be written.
//!
//! The layer's driver directory is built if missing, without hardlinks;
//! where it is there, every regular file that shares its inode with
//! something outside the layer (`objects/`, through the materializer's
//! hardlinks) is replaced by its own copy (a reflink where the filesystem
//! can), hard link groups inside the layer staying grouped; an overlay
//! delta (built over another layer's directory) is built again whole.
//! The layer's tar-split is written from the manifest when it has none
//! (so `diff` stays exact while the files are unchanged). Once that is on
//! disk (`syncfs`), `manifests/<id>` is removed and its
//! directory `fsync`ed: from then on the directory is the content. The
//! record's digests stay as they are (as upstream's do when a layer is
//! written through a mount; `check` then reports the content no longer
//! matches its digest).
//!
//! A crash before the manifest is gone leaves a pool-backed layer whose
//! cache directory holds private copies of the same content: harmless.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::layers::Layer;
use super::layout;
use super::Store;
use crate::durable;
use crate::error::{Action, Error, IoContext, Op, Result};
use crate::flock::Flock;
use crate::manifest::tar_split;
use crate::materialize::BuildOptions;
use crate::sys;

impl Store {
    /// Makes `layer` directory-backed (see the module docs); a layer
    /// that already is stays as it is. Returns its record as it is now.
    pub(crate) fn privatize(&self, layer: &Layer) -> Result<Layer> {
        if !layer.sealed {
            return Ok(layer.clone());
        }
        self.check_writable()?;
        // The split image store's layer's manifest is under its root.
        let root = layer.read_only_store.as_deref();
        let store = root.unwrap_or(self.graph_root());
        if let Some((driver, other)) = self.other_driver_layer_in(store, &layer.id)? {
            if other.sealed {
                // The manifest is that layer's content too.
                return Err(Error::ManifestShared {
                    layer: layer.id.clone(),
                    driver,
                    diff_digest: other.diff_digest,
                });
            }
        }
        if let Some(root) = root {
            return self.privatize_in_image_store(layer, root);
        }
        let chain = self.chain(&layer.id)?;
        // Eviction (under the mounts lock) may take the directory while
        // it is made private: the manifest goes under that lock, and only
        // while the directory is there; else it is made again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            if self.options.driver == "overlay" {
                self.privatize_overlay(&chain)?;
            } else {
                // vfs trees are built without hardlinks: already private.
                let dir = self.prepare_vfs(&chain)?;
                if let Err(e) = sync_fs(&dir) {
                    // Evicted since it was built: made again.
                    if fs::symlink_metadata(&dir).is_err() && attempts < 3 {
                        continue;
                    }
                    return Err(e);
                }
            }
            self.keep_tar_split(layer)?;
            let _mounts = self.mount_records.lock()?;
            if fs::symlink_metadata(self.layer_content_dir(&layer.id)).is_err() {
                if attempts < 3 {
                    continue;
                }
                return Err(Error::io(
                    Op::Open,
                    &self.layer_content_dir(&layer.id),
                    std::io::Error::from_raw_os_error(libc::ENOENT),
                ));
            }
            let manifest = self.manifest_path(&layer.id);
            match fs::remove_file(&manifest) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(Op::Remove, &manifest, e)),
            }
            self.write(|| durable::fsync_dir(&layout::manifests_dir(self.graph_root())))?;
            break;
        }
        tracing::debug!(layer = %layer.id, "pool-backed layer made directory-backed");
        self.layer(&layer.id)
    }

    /// Writes the layer's `<drv>-layers/<id>.tar-split.gz` from its
    /// manifest when it has none, so that `diff` of the directory gives
    /// the exact tar while its files are unchanged (as upstream's does).
    fn keep_tar_split(&self, layer: &Layer) -> Result<()> {
        let path = self.tar_split_path_of(layer);
        if fs::symlink_metadata(&path).is_ok() {
            return Ok(());
        }
        match self.tar_split_from_manifest(layer)? {
            Some(bytes) => self.write(|| durable::atomic_write(&path, &bytes)),
            None => Ok(()),
        }
    }

    /// The tar-split of a pool-backed layer, written from its manifest
    /// (the CRC-64s from its pool); `None` when it cannot be written
    /// (`diff` then falls back to the change scan).
    fn tar_split_from_manifest(&self, layer: &Layer) -> Result<Option<Vec<u8>>> {
        let m = self.layer_manifest(layer)?;
        let mut bytes = Vec::new();
        let crcs = tar_split::ContentCrcs::FromPool(self.pool_of(layer)?);
        match tar_split::write_tar_split(&m, crcs, &mut bytes) {
            Ok(_) => Ok(Some(bytes)),
            Err(e) => {
                tracing::warn!(layer = %layer.id, error = %e, "no tar-split kept");
                Ok(None)
            }
        }
    }

    /// [`Store::privatize`] for a pool-backed layer of the split image
    /// store at `root` (a store of ours used as one), whose content is a
    /// manifest in that store's pool: it becomes a directory there, as
    /// that store's directory-backed layers are, written in place from
    /// then on (see `store/image_store.rs`).
    ///
    /// The directory is built beside its place (a cache that store built
    /// there, which may share inodes with its `objects/`, is made private
    /// in place instead), and the tar-split written from the manifest,
    /// holding `DIR/objects/.lock` shared throughout, as that store's
    /// builders do: its `gc` removes no tree being built. Under the image
    /// store's layers lock (the layer is still its; a process using `DIR`
    /// as its graph root evicts under that lock, so a directory made
    /// private in place that is gone by then is built again), then the
    /// mounts lock, the directory is renamed into place with its short
    /// link, what this store built for the layer from that pool goes, and
    /// `DIR/manifests/<id>` is removed: from then on the directory is the
    /// content. A layer mounted, or whose directory built here an overlay
    /// mount uses, is refused: the directory that mount shows would no
    /// longer be the layer's.
    fn privatize_in_image_store(&self, layer: &Layer, root: &Path) -> Result<Layer> {
        let id = &layer.id;
        super::driver::refuse_reserved(id)?;
        self.refuse_mounted_cache(id, &self.mounts()?)?;
        let chain = self.chain(id)?;
        let objects = layout::objects_dir(root);
        durable::create_dir_all(&objects)?;
        let _builders = Flock::shared(&crate::materialize::builders_lock_path(&objects))?;
        let tar_split = self.tar_split_from_manifest(layer)?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let in_place = self.ro_in_place(layer).is_some() && attempts < 3;
            match self.privatize_there(&chain, root, in_place, tar_split.as_deref()) {
                // Evicted by that store since it was made private: built.
                Ok(false) => continue,
                Ok(true) => break,
                Err(e) => return Err(e),
            }
        }
        tracing::debug!(layer = %id, "the image store's pool-backed layer made directory-backed there");
        self.layer(id)
    }

    /// One attempt of [`Store::privatize_in_image_store`] for `chain[0]`:
    /// its directory there made private in place (`in_place`) or built
    /// anew, then put in place; `false` when the directory made private
    /// in place was gone by the time the layers lock was held.
    fn privatize_there(
        &self,
        chain: &[Layer],
        root: &Path,
        in_place: bool,
        tar_split: Option<&[u8]>,
    ) -> Result<bool> {
        let layer = &chain[0];
        let id = &layer.id;
        let drv = self.options.driver.as_str();
        let place = layout::layer_dirs_parent(root, drv).join(id);
        let built = match in_place {
            true => {
                let dir = layout::content_dir(root, drv, id);
                if let Err(e) = unshare(&dir).and_then(|()| sync_fs(&dir)) {
                    // Evicted meanwhile: built next time.
                    return match fs::symlink_metadata(&dir) {
                        Err(_) => Ok(false),
                        Ok(_) => Err(e),
                    };
                }
                None
            }
            false => Some(self.build_in_image_store(chain, root)?),
        };
        let result = (|| {
            let Some((file, _)) = self.image_store_layers() else {
                return Err(super::Kind::Layer.not_known(id));
            };
            let records = file.lock()?;
            if !records.records.iter().any(|l| l.id == *id) {
                return Err(super::Kind::Layer.not_known(id));
            }
            if in_place && self.ro_in_place(layer).is_none() {
                return Ok(false);
            }
            if let Some(built) = &built {
                // What that store left there (a delta, or entries without
                // `diff`) goes; its short name stays the layer's.
                let link = place.join(layout::LINK);
                if let (true, Ok(short)) = (drv == "overlay", fs::read_to_string(&link)) {
                    if super::driver::is_short_name(short.trim()) {
                        durable::atomic_write(&built.join(layout::LINK), short.trim().as_bytes())?;
                    }
                }
                replace_dir(built, &place)?;
            }
            if drv == "overlay" {
                self.link_in_image_store(id, root)?;
            }
            let path = self.tar_split_path_of(layer);
            if let (Some(bytes), Err(_)) = (tar_split, fs::symlink_metadata(&path)) {
                durable::atomic_write(&path, bytes)?;
            }
            let mounts = self.mount_records.lock()?;
            self.refuse_mounted_cache(id, &mounts.records)?;
            // Built here from that pool: not the layer's content now.
            self.remove_driver_dirs(id);
            let manifest = layout::manifest_path(root, id);
            durable::remove_file(&manifest)?;
            durable::fsync_dir(&layout::manifests_dir(root))?;
            Ok(true)
        })();
        if let Some(built) = built.filter(|b| b.exists()) {
            let _ = durable::remove_tree(&built);
        }
        self.write(|| result)
    }

    /// Refuses to make layer `id` (a read-only store's) directory-backed
    /// while it is mounted (`mounts`), or while an overlay mount of the
    /// host uses the directory this store built for it.
    fn refuse_mounted_cache(&self, id: &str, mounts: &[super::MountPoint]) -> Result<()> {
        let dir = self.layer_content_dir(id);
        let dir = fs::canonicalize(&dir).unwrap_or(dir);
        let used = match self.options.driver.as_str() {
            "overlay" => super::host_mounts::overlay_dirs(&self.driver_dir()).contains(&dir),
            _ => false,
        };
        if used || mounts.iter().any(|m| m.id == id && m.count > 0) {
            return Err(Error::Mounted {
                layer: id.to_string(),
                at: None,
                refused: Action::Write,
            });
        }
        Ok(())
    }

    /// Builds the directory of `chain[0]`, a pool-backed layer of the
    /// split image store at `root`, whole and without hardlinks, beside
    /// its place there: overlay's `diff` (with `work`, and `empty` for a
    /// parentless layer), or vfs's tree of the whole chain. Returns it.
    fn build_in_image_store(&self, chain: &[Layer], root: &Path) -> Result<std::path::PathBuf> {
        let layer = &chain[0];
        let drv = self.options.driver.as_str();
        let place = layout::layer_dirs_parent(root, drv).join(&layer.id);
        let tmp = durable::temp_sibling(&place);
        let result = (|| {
            durable::create_dir_all(place.parent().expect("in the driver's directory"))?;
            if drv != "overlay" {
                // This store's tree of the chain, copied there.
                let tree = self.prepare_vfs(chain)?;
                crate::materialize::copy_tree(&tree, &tmp)?;
                return sync_fs(&tmp);
            }
            durable::create_dir_all(&tmp)?;
            self.build_private_diff(chain, &tmp.join(layout::DIFF))?;
            durable::create_dir_all(&tmp.join(layout::WORK))?;
            if layer.parent.is_empty() {
                durable::create_dir_all(&tmp.join(layout::EMPTY_LOWER))?;
            } else {
                // What Go clients mount below it.
                let lower = self.ro_link_entries(&chain[1..])?.join(":");
                durable::atomic_write(&tmp.join(layout::LOWER), lower.as_bytes())?;
            }
            sync_fs(&tmp)
        })();
        match result {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = durable::remove_tree(&tmp);
                Err(e)
            }
        }
    }

    fn privatize_overlay(&self, chain: &[Layer]) -> Result<()> {
        let layer = &chain[0];
        // Deltas built over this directory would see its writes.
        let mounted: Vec<String> = self
            .mounts()?
            .into_iter()
            .filter(|m| m.count > 0)
            .map(|m| m.id)
            .collect();
        for delta in self.stacked_above(&layer.id) {
            if mounted.contains(&delta) {
                return Err(Error::Mounted {
                    layer: delta,
                    at: None,
                    refused: Action::Unshare,
                });
            }
            durable::remove_dir_aside(&self.layer_content_dir(&delta))?;
        }
        let diff = self.layer_content_dir(&layer.id);
        let base = self.base_file(&layer.id);
        if diff.is_dir() && fs::symlink_metadata(&base).is_err() {
            unshare(&diff)?;
            return sync_fs(&diff);
        }
        // Missing, or a delta over another layer's directory: built whole.
        if diff.is_dir() {
            durable::remove_dir_aside(&diff)?;
        }
        durable::remove_file(&base)?;
        self.build_private_diff(chain, &diff)?;
        // `link`, `work`, `merged` and the short link.
        self.prepare_overlay_with(&chain[..1], false)
    }

    /// Builds `diff`, the overlay directory of `chain[0]` (a pool-backed
    /// layer, `chain` top first), whole from its manifest and its own
    /// pool, without hardlinks, with the layer's host IDs (see
    /// `store/id_maps.rs`).
    fn build_private_diff(&self, chain: &[Layer], diff: &Path) -> Result<()> {
        let layer = &chain[0];
        let mapping = layer.id_mapping();
        let m = mapping.shift_manifest(&self.layer_manifest(layer)?, &layer.id)?;
        let lowers = self
            .chain_views(&chain[1..])?
            .iter()
            .map(|l| mapping.shift_manifest(l, &layer.id))
            .collect::<Result<Vec<_>>>()?;
        let lowers: Vec<_> = lowers.iter().collect();
        let options = BuildOptions {
            format: self.overlay_format(),
            hardlinks: false,
            durable: true,
        };
        self.materializer_for(layer)?
            .build_overlay(&m, &lowers, diff, options)
            .map_err(|e| e.for_layer(&layer.id))?;
        super::id_maps::own_root(diff, mapping)
    }
}

/// Puts the directory `built` at `place`, whatever stands there going
/// aside first. A process that uses `place`'s store as its graph root
/// may lay out entries there again meanwhile (its mounts build the
/// directory of a layer it still takes for pool-backed, under no lock
/// this store can take): they go aside too, a few times over.
fn replace_dir(built: &Path, place: &Path) -> Result<()> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match fs::symlink_metadata(place) {
            Ok(m) if m.is_dir() => durable::remove_dir_aside(place)?,
            Ok(_) => durable::remove_file(place)?,
            Err(_) => {}
        }
        match fs::rename(built, place) {
            Ok(()) => break,
            Err(e)
                if attempts < 5
                    && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {}
            Err(e) => return Err(Error::io(Op::Rename, place, e)),
        }
    }
    durable::fsync_dir(place.parent().expect("in the driver's directory"))
}

/// `syncfs` of the filesystem holding `dir`.
fn sync_fs(dir: &Path) -> Result<()> {
    let f = File::open(dir).at(Op::Open, dir)?;
    nix::unistd::syncfs(f.as_raw_fd()).at(Op::Syncfs, dir)
}

/// Replaces every regular file under `root` that shares its inode with a
/// file outside `root` by a copy of its own; files of `root` that share
/// an inode keep sharing one (the copy).
pub(crate) fn unshare(root: &Path) -> Result<()> {
    // (device, inode) -> (its link count, its paths in the layer).
    type Group = (u64, Vec<Vec<u8>>);
    let mut groups: HashMap<(u64, u64), Group> = HashMap::new();
    for (rel, meta) in crate::materialize::walk_tree(root)? {
        if meta.is_file() && meta.nlink() > 1 {
            groups
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| (meta.nlink(), Vec::new()))
                .1
                .push(rel);
        }
    }
    for (_, (nlink, paths)) in groups {
        if nlink <= paths.len() as u64 {
            continue;
        }
        let first = root.join(OsStr::from_bytes(&paths[0]));
        let copy = durable::temp_sibling(&first);
        copy_file(&first, &copy)?;
        fs::rename(&copy, &first).at(Op::Rename, &first)?;
        for rel in &paths[1..] {
            let path = root.join(OsStr::from_bytes(rel));
            let tmp = durable::temp_sibling(&path);
            fs::hard_link(&first, &tmp).at(Op::Link, &tmp)?;
            fs::rename(&tmp, &path).at(Op::Rename, &path)?;
        }
    }
    Ok(())
}

/// Copies regular file `src` to the new file `dst` with its owner, mode,
/// xattrs and times (content reflinked where the filesystem can).
fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(src).at(Op::Stat, src)?;
    let from = File::open(src).at(Op::Open, src)?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .at(Op::Create, dst)?;
    let result = (|| {
        if sys::ficlone(&to, &from).is_err() {
            std::io::copy(&mut &from, &mut to).at(Op::Write, dst)?;
        }
        std::os::unix::fs::fchown(&to, Some(meta.uid()), Some(meta.gid())).at(Op::Chown, dst)?;
        to.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
            .at(Op::Chmod, dst)?;
        let dst_c = std::ffi::CString::new(dst.as_os_str().as_bytes()).expect("no NUL in a path");
        for name in sys::llistxattr(src).at(Op::Read, src)? {
            if let Ok(Some(value)) = sys::lgetxattr(src, &String::from_utf8_lossy(&name)) {
                let name = std::ffi::CString::new(name).expect("xattr names hold no NUL");
                sys::lsetxattr(&dst_c, &name, &value).at(Op::Write, dst)?;
            }
        }
        let times = [
            nix::sys::time::TimeSpec::new(meta.atime(), meta.atime_nsec()),
            nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec()),
        ];
        nix::sys::stat::futimens(to.as_raw_fd(), &times[0], &times[1]).at(Op::Write, dst)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(dst);
    }
    result
}
