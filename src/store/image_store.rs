//! The split image store's layers (`--image-store DIR`): the second
//! place of the writable layer store, as upstream keeps its layer records
//! in the graph root's `<drv>-layers/layers.json` and in `DIR`'s, both
//! under their locks (the graph root's taken first).
//!
//! `DIR`'s layers are read as a read-only store's are (`store/ro_stores.rs`):
//! their content stays where its writer put it (`DIR/<drv>/<id>`, or a
//! manifest in `DIR`'s pool), used in place. Their records are this
//! store's: they are not `Read Only`, and names, metadata, big data and
//! deletes change them in `DIR/<drv>-layers/layers.json`; a delete removes
//! their files under `DIR` too. A directory-backed one is written in place
//! by `mount`, `copy` and `applydiff`, as the graph root's are (only a
//! `--readonly` one refuses them); a pool-backed one (a store of ours used as `DIR`) is first made
//! directory-backed there, its directory built from `DIR`'s pool and its
//! manifest removed (see `store/privatize.rs`).
//!
//! A layer made `--readonly` under a split image store (`create-layer`,
//! `import-layer`) is put there, as upstream puts the layers it makes not
//! writable: it is made in the graph root as any other, made
//! directory-backed (an import's content is built whole from the pool,
//! its tar-split kept, see `store/privatize.rs`), and then moved: its
//! driver directory to `DIR/<drv>/<id>` (overlay: its short link to
//! `DIR/overlay/l/`), its tar-split to `DIR/<drv>-layers/`, its record from
//! the graph root's `layers.json` to `DIR`'s, under both locks. A marker,
//! `<graphroot>/<drv>-layers/.moving/<id>`, is written first and removed
//! last; the next writable open finishes a move that `DIR`'s records
//! hold, and undoes one they do not. A directory appears at its new place
//! whole (renamed, or copied beside it and renamed), so where both places
//! have one, the new place's is complete.
//!
//! Their locks come last: after the graph root's layers, images and
//! containers locks of a transaction, or right after the graph root's
//! layers lock. A record read of `DIR`'s layers (a read-only store's read)
//! takes its lock shared, so none is made while this process holds it
//! exclusively.

use std::fs;
use std::path::{Path, PathBuf};

use super::item::find;
use super::layers::Layer;
use super::layout;
use super::records::{Locked, RecordFile};
use super::Store;
use crate::durable;
use crate::error::{Error, IoContext, Op, Result};

impl Store {
    /// The split image store's layer records and root, when they may be
    /// written (see [`RoStore::image_store`]).
    pub(crate) fn image_store_layers(&self) -> Option<(&RecordFile<Layer>, &Path)> {
        self.ro_stores
            .iter()
            .find_map(|s| Some((s.writable_layers()?, s.root.as_path())))
    }

    /// Whether `layer` is upstream's `ReadOnly`: a read-only store's, but
    /// for the split image store's, which upstream keeps in its writable
    /// layer store.
    pub fn layer_is_read_only(&self, layer: &Layer) -> bool {
        match &layer.read_only_store {
            Some(root) => self.image_store_layers().is_none_or(|(_, dir)| dir != root),
            None => false,
        }
    }

    /// The layer `arg` names (ID, name or unique ID prefix) when the split
    /// image store holds it and the graph root has no layer `arg` names:
    /// one whose record changes are made in the image store's
    /// `layers.json`.
    pub(crate) fn image_store_layer(&self, arg: &str) -> Result<Option<Layer>> {
        if self.image_store_layers().is_none() || find(&self.layers()?, arg).is_some() {
            return Ok(None);
        }
        Ok(self.ro_layer(arg)?.filter(|l| !self.layer_is_read_only(l)))
    }

    /// The split image store's layer records under their exclusive
    /// lock, with its root, when they may be written.
    pub(crate) fn lock_image_store_layers(&self) -> Result<Option<(Locked<'_, Layer>, PathBuf)>> {
        match self.image_store_layers() {
            Some((file, root)) => Ok(Some((file.lock()?, root.to_path_buf()))),
            None => Ok(None),
        }
    }

    /// The read-only stores' layers but the split image store's.
    pub(crate) fn ro_layers_beside_image_store(&self) -> Result<Vec<Layer>> {
        let dir = self
            .image_store_layers()
            .map(|(_, root)| root.to_path_buf());
        self.ro_layers_of(|root| Some(root) != dir.as_deref())
    }

    /// The layers of `chain` whose records are gone: the writable store's
    /// and the split image store's, read without their locks (for a
    /// caller holding the mounts lock, under which deletes save).
    pub(crate) fn deleted_of<'a>(&self, chain: &'a [Layer]) -> Result<Vec<&'a Layer>> {
        let main = self.layer_records.peek()?;
        let dir = match self.image_store_layers() {
            Some((file, root)) => Some((file.peek()?, root)),
            None => None,
        };
        let holds = |records: &[Layer], id: &str| records.iter().any(|r| r.id == id);
        Ok(chain
            .iter()
            .filter(|l| match (&l.read_only_store, &dir) {
                (None, _) => !holds(&main, &l.id),
                (Some(store), Some((records, root))) if store == root => !holds(records, &l.id),
                _ => false,
            })
            .collect())
    }

    /// Removes what the split image store at `root` holds of the deleted
    /// layer `id`: its driver directory (and overlay short link), its
    /// tar-split, its big data and, when no other driver's layer there
    /// has that ID, its manifest. Errors are ignored, as for the graph
    /// root's files of a deleted layer.
    pub(crate) fn remove_image_store_files(&self, id: &str, root: &Path) {
        if !layout::owns_paths(id) {
            return;
        }
        let driver = &self.options.driver;
        let parent = layout::layer_dirs_parent(root, driver);
        if driver == "overlay" {
            if let Ok(short) = fs::read_to_string(parent.join(id).join(layout::LINK)) {
                let link = parent.join(layout::SHORT_LINKS).join(short.trim());
                let ours = super::driver::short_link_target(id);
                if super::driver::is_short_name(short.trim())
                    && fs::read_link(&link).is_ok_and(|t| t == Path::new(&ours))
                {
                    let _ = fs::remove_file(link);
                }
            }
        }
        let _ = durable::remove_tree(&parent.join(id));
        let records = layout::layers_dir(root, driver);
        let _ = fs::remove_file(layout::tar_split_path(&records, id));
        let _ = durable::remove_tree(&records.join(id));
        self.remove_manifest_in(root, id);
    }

    /// Moves the graph root's directory-backed layer `id` to the split
    /// image store at `root` (see the module docs); returns its record as
    /// the image store holds it.
    pub(crate) fn move_to_image_store(&self, id: &str) -> Result<Layer> {
        let Some((file, root)) = self.image_store_layers() else {
            return Err(crate::store::Kind::Layer.not_known(id));
        };
        self.write(|| {
            let mut main = self.layer_records.lock()?;
            let mut dir = file.lock()?;
            let index = main
                .records
                .iter()
                .position(|l| l.id == id)
                .ok_or_else(|| crate::store::Kind::Layer.not_known(id))?;
            // A directory of that ID the image store has without a
            // record is a leftover (the ID was claimed in both places).
            let leftover = layout::layer_dirs_parent(root, &self.options.driver).join(id);
            if !dir.records.iter().any(|l| l.id == id) && layout::owns_paths(id) {
                let _ = durable::remove_tree(&leftover);
            }
            let marker = self.moving_marker(id);
            durable::create_dir_all(marker.parent().expect("in a directory"))?;
            durable::open_store_file(&marker, durable::Open::Create)?;
            durable::fsync_parent(&marker)?;
            self.move_layer_files(id, self.graph_root(), root)?;
            let mut layer = main.records.remove(index);
            dir.records.push(layer.clone());
            dir.save()?;
            main.save()?;
            self.forget_used(id);
            let _ = fs::remove_file(&marker);
            layer.read_only_store = Some(root.to_path_buf());
            layer.sealed = false;
            Ok(layer)
        })
    }

    /// Finishes or undoes the moves to the split image store that a
    /// killed process left (see the module docs).
    pub(crate) fn finish_moves(&self) -> Result<()> {
        let Some((file, root)) = self.image_store_layers() else {
            return Ok(());
        };
        let Ok(entries) = fs::read_dir(self.layers_dir().join(layout::MOVING)) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !layout::owns_paths(&id) {
                continue;
            }
            let mut main = self.layer_records.lock()?;
            let dir = file.lock()?;
            if dir.records.iter().any(|l| l.id == id) {
                if main.records.iter().any(|l| l.id == id) {
                    main.records.retain(|l| l.id != id);
                    main.save()?;
                }
                self.move_layer_files(&id, self.graph_root(), root)?;
            } else {
                let drv = &self.options.driver;
                if layout::layer_dirs_parent(root, drv).join(&id).exists() {
                    let _ = durable::remove_tree(
                        &layout::layer_dirs_parent(self.graph_root(), drv).join(&id),
                    );
                }
                self.move_layer_files(&id, root, self.graph_root())?;
            }
            drop((dir, main));
            let _ = fs::remove_file(entry.path());
        }
        Ok(())
    }

    /// Gives layer `id`'s overlay directory in the split image store at
    /// `root` a short link (`link` and `DIR/overlay/l/<short>` ->
    /// `../<id>/diff`) when it has none: the short name this store gave
    /// the layer, if any (the `lower` files above it list that one),
    /// else a new one.
    pub(crate) fn link_in_image_store(&self, id: &str, root: &Path) -> Result<()> {
        let parent = layout::layer_dirs_parent(root, &self.options.driver);
        let link_file = parent.join(id).join(layout::LINK);
        let short = match fs::read_to_string(&link_file) {
            Ok(short) if super::driver::is_short_name(short.trim()) => short.trim().to_string(),
            _ => {
                let short = self
                    .short_link(id)
                    .unwrap_or_else(|_| super::driver::short_name());
                durable::atomic_write(&link_file, short.as_bytes())?;
                short
            }
        };
        let links = parent.join(layout::SHORT_LINKS);
        let link = links.join(&short);
        let target = PathBuf::from(super::driver::short_link_target(id));
        if fs::read_link(&link).ok() != Some(target.clone()) {
            super::driver::own_dir(&links)?;
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link).at(Op::Symlink, &link)?;
            durable::fsync_dir(&links)?;
        }
        Ok(())
    }

    fn moving_marker(&self, id: &str) -> PathBuf {
        self.layers_dir().join(layout::MOVING).join(id)
    }

    /// Moves layer `id`'s driver directory (with its overlay short link)
    /// and tar-split from the store at `from` to the store at `to`. What
    /// `to` already has is kept (a directory appears there whole), and
    /// `from`'s copy then removed.
    fn move_layer_files(&self, id: &str, from: &Path, to: &Path) -> Result<()> {
        let drv = &self.options.driver;
        let src = layout::layer_dirs_parent(from, drv).join(id);
        let dst = layout::layer_dirs_parent(to, drv).join(id);
        move_whole(&src, &dst)?;
        if drv == "overlay" {
            if let Ok(short) = fs::read_to_string(dst.join(layout::LINK)) {
                let short = short.trim();
                let ours = PathBuf::from(super::driver::short_link_target(id));
                let link = |root: &Path| {
                    layout::layer_dirs_parent(root, drv)
                        .join(layout::SHORT_LINKS)
                        .join(short)
                };
                if super::driver::is_short_name(short) {
                    let to_link = link(to);
                    if fs::read_link(&to_link).ok() != Some(ours.clone()) {
                        durable::create_dir_all(to_link.parent().expect("in l/"))?;
                        let _ = fs::remove_file(&to_link);
                        std::os::unix::fs::symlink(&ours, &to_link).at(Op::Create, &to_link)?;
                    }
                    let from_link = link(from);
                    if fs::read_link(&from_link).ok() == Some(ours) {
                        let _ = fs::remove_file(&from_link);
                    }
                }
            }
        }
        let tar_split = |root: &Path| layout::tar_split_path(&layout::layers_dir(root, drv), id);
        move_whole(&tar_split(from), &tar_split(to))?;
        for dir in [from, to] {
            durable::fsync_dir(&layout::layer_dirs_parent(dir, drv))?;
        }
        Ok(())
    }
}

/// Moves `src` (a tree or a file) to `dst`, renamed or, across
/// filesystems, copied beside `dst` and renamed into place, so that `dst`
/// is only ever there whole; `src` then goes. Where `dst` is already
/// there, `src` only goes; where neither is, nothing happens.
fn move_whole(src: &Path, dst: &Path) -> Result<()> {
    if fs::symlink_metadata(dst).is_ok() {
        if let Ok(meta) = fs::symlink_metadata(src) {
            let _ = match meta.is_dir() {
                true => durable::remove_tree(src),
                false => fs::remove_file(src),
            };
        }
        return Ok(());
    }
    let Ok(meta) = fs::symlink_metadata(src) else {
        return Ok(());
    };
    durable::create_dir_all(dst.parent().expect("a parent"))?;
    match fs::rename(src, dst) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
        Err(e) => return Err(Error::io(Op::Rename, src, e)),
    }
    let temp = durable::temp_sibling(dst);
    if meta.is_dir() {
        crate::materialize::copy_tree(src, &temp)?;
    } else {
        fs::copy(src, &temp).at(Op::Copy, &temp)?;
        fs::File::open(&temp)
            .and_then(|f| f.sync_all())
            .at(Op::Fsync, &temp)?;
    }
    fs::rename(&temp, dst).at(Op::Rename, dst)?;
    let _ = match meta.is_dir() {
        true => durable::remove_tree(src),
        false => fs::remove_file(src),
    };
    Ok(())
}
