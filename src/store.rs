//! The store: layer records on top of the chunk pool, with upstream's
//! on-disk layout (`<graphroot>/<drv>-layers/layers.json` + `layers.lock`),
//! locks, and the order of durable writes.
//!
//! Data flows one way: the store calls `manifest` and `chunks`, never the
//! reverse. The store owns records, names, locks and when things become
//! durable; it never prints.

mod adopt;
mod bigdata;
mod check;
mod containers;
mod dedup;
mod driver;
mod evict;
mod gc;
mod generic;
mod go_layout;
mod host_mounts;
mod id_maps;
mod ids;
mod image_store;
mod images;
mod item;
mod kernel_features;
pub(crate) mod kind;
mod layer_links;
mod layers;
mod layout;
mod live;
mod lock;
mod mapped_layers;
mod mounts;
mod options;
mod parent_owners;
mod pool_users;
mod privatize;
mod records;
mod ro_stores;
mod root_view;
pub(crate) mod rootless;
mod shifting;
mod stacking;
mod staging;
mod state;
mod status;
mod storage_layers;
mod unsynced;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub use adopt::SkippedLayer;
pub use check::{CheckOptions, CheckReport, Problem, Subject};
pub use containers::{Container, ContainerOptions};
pub use dedup::{DedupReport, HashMethod};
pub use evict::Evicted;
pub use gc::{Evict, GcOptions, GcReport};
pub use id_maps::{subid_map, IdMap, IdMappingOptions};
pub use images::{Image, ImageOptions};
pub use item::{BigDataIndex, NamesOp};
pub use kind::Kind;
pub use layers::{Layer, LayerOptions, INCOMPLETE_FLAG};
pub use mounts::MountPoint;
pub use options::{Materialize, StoreOptions, UpstreamConfig, DRIVERS};
pub use parent_owners::ParentOwners;
pub use status::Status;

use crate::chunks::ChunkPool;
use crate::durable;
use crate::error::{Error, Result};
use crate::materialize;
use records::{Locked, RecordFile};

/// An open store.
pub struct Store {
    /// The options it was opened with.
    options: StoreOptions,
    /// Read-only additional image stores, in lookup order.
    ro_stores: Vec<ro_stores::RoStore>,
    layers_dir: PathBuf,
    images_dir: PathBuf,
    containers_dir: PathBuf,
    layer_records: RecordFile<Layer>,
    image_records: RecordFile<Image>,
    container_records: RecordFile<Container>,
    mount_records: RecordFile<MountPoint>,
    pool: ChunkPool,
    writable: bool,
    write_failed: AtomicBool,
}

/// The three record files held under their exclusive locks; each is
/// saved separately, in the order the change needs for crash safety.
pub(crate) struct Transaction<'a> {
    pub layers: Locked<'a, Layer>,
    pub images: Locked<'a, Image>,
    pub containers: Locked<'a, Container>,
}

impl Store {
    /// Opens (creating when needed) the store described by `options`.
    /// When the graph root is writable, layers left incomplete by a
    /// crashed import are removed.
    ///
    /// With a split image store (`image_store`, `DIR`), the graph root
    /// keeps the layers (a container's, and those `create-layer` and
    /// `import-layer` make), their content, the pool and the container
    /// records, as upstream keeps its writable layers there; the images
    /// are `DIR`'s. The graph root's own images are then the first
    /// read-only store, and the layers `DIR` holds (read-only layers a Go
    /// client put there) the next, before those the driver options name
    /// (`<drv>.imagestore=DIR`).
    pub fn open(options: StoreOptions) -> Result<Store> {
        let images_root = match &options.image_store {
            Some(dir) if *dir == options.graph_root => {
                return Err(Error::Config(format!(
                    "{}: the image store and the graph root cannot be the same",
                    dir.display()
                )));
            }
            Some(dir) => {
                // As upstream's driver makes it when it starts.
                durable::create_dir_all(&layout::layer_dirs_parent(dir, &options.driver))?;
                dir.clone()
            }
            None => options.graph_root.clone(),
        };
        let graph = options.graph_root.clone();
        let drv = &options.driver;
        let layers_dir = layout::layers_dir(&graph, drv);
        let images_dir = layout::images_dir(&images_root, drv);
        let containers_root = if options.transient_store {
            &options.run_root
        } else {
            &graph
        };
        let containers_dir = layout::containers_dir(containers_root, drv);
        // The driver's directory too, as upstream's driver makes it when
        // it starts (`overlay/`, `vfs/dir/`).
        let driver_layers = layout::layer_dirs_parent(&graph, drv);
        let dirs = [&layers_dir, &images_dir, &containers_dir, &driver_layers];
        let prepared = Self::prepare(&graph, &dirs);
        if let Err(e @ Error::Symlink(_)) = prepared {
            return Err(e);
        }
        let writable = prepared.is_ok() && !read_only_fs(&graph);
        if !writable && !layers_dir.is_dir() {
            // Neither creatable nor there: report why.
            Self::prepare(&graph, &dirs)?;
        }
        if writable {
            durable::tighten_root(&graph)?;
            durable::tighten_root(&options.run_root)?;
            move_side_dirs(&graph, drv);
        }
        for dir in private_dirs(&options) {
            match durable::check_store_dir(&dir, writable) {
                // A mount replaces what stands in the place of these
                // (`driver::own_dir`); `check` reports it.
                Err(Error::Symlink(_)) if driver_repairs(&dir) => {}
                r => r?,
            }
        }
        let layer_records =
            RecordFile::open(&layers_dir, layout::LAYERS_JSON, layout::LAYERS_LOCK)?;
        let image_records =
            RecordFile::open(&images_dir, layout::IMAGES_JSON, layout::IMAGES_LOCK)?;
        let container_records = RecordFile::open(
            &containers_dir,
            layout::CONTAINERS_JSON,
            layout::CONTAINERS_LOCK,
        )?;
        let run_layers = layout::layers_dir(&options.run_root, drv);
        // The run root may live elsewhere (a tmpfs) and be writable even
        // when the graph root is not; without it there are no mounts.
        let _ = durable::create_dir_all(&run_layers);
        let mount_records =
            RecordFile::open(&run_layers, layout::MOUNTS_JSON, layout::MOUNTS_LOCK)?;
        let pool = ChunkPool::open(&layout::pool_dir(&graph), writable)?;
        let mut ro_stores = Vec::new();
        if let Some(dir) = &options.image_store {
            ro_stores.push(ro_stores::RoStore::graph_images(&graph, drv)?);
            ro_stores.push(ro_stores::RoStore::image_store(dir, drv, writable)?);
        }
        // A read-only store that is not there (a mount not made yet)
        // holds nothing, as upstream has it; anything else wrong with one
        // is an error.
        for root in options.additional_image_stores()? {
            match std::fs::symlink_metadata(&root) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::debug!("{}: the read-only image store is not there", root.display());
                }
                _ => ro_stores.push(ro_stores::RoStore::open(&root, drv)?),
            }
        }
        let store = Store {
            options,
            ro_stores,
            layers_dir,
            images_dir,
            containers_dir,
            layer_records,
            image_records,
            container_records,
            mount_records,
            pool,
            writable,
            write_failed: AtomicBool::new(false),
        };
        if writable {
            // Left for the next open or `gc` when it fails (a full disk):
            // the store must still open to free space.
            if let Err(e) = store.remove_incomplete_layers() {
                tracing::warn!(error = %e, "incomplete layers not removed");
            }
            store.finish_deletes()?;
            store.finish_moves()?;
        }
        Ok(store)
    }

    fn prepare(graph: &Path, dirs: &[&PathBuf]) -> Result<()> {
        for dir in dirs {
            durable::create_dir_all(dir)?;
        }
        durable::create_dir_all(&layout::manifests_dir(graph))?;
        durable::open_store_file(&graph.join(layout::STORAGE_LOCK), durable::Open::Create)?;
        Ok(())
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The graph root.
    pub fn graph_root(&self) -> &Path {
        &self.options.graph_root
    }

    /// The run root.
    pub fn run_root(&self) -> &Path {
        &self.options.run_root
    }

    /// `<graphroot>/<drv>-layers`.
    pub fn layers_dir(&self) -> &Path {
        &self.layers_dir
    }

    /// The directory of a kind's record file: `<drv>-layers`,
    /// `<drv>-images` or `<drv>-containers`.
    pub fn records_dir(&self, kind: Kind) -> &Path {
        match kind {
            Kind::Layer => &self.layers_dir,
            Kind::Image => &self.images_dir,
            Kind::Container => &self.containers_dir,
        }
    }

    /// `<records dir>/<id>`: big data and (images, containers) `userdata`.
    pub(crate) fn item_dir(&self, kind: Kind, id: &str) -> PathBuf {
        self.records_dir(kind).join(id)
    }

    /// Removes an item's big-data and run directories (errors are
    /// ignored: `gc` removes what is left). Nothing for an ID that is one
    /// of the layout's names (a record from before it was reserved): the
    /// entry of that name is the layout's.
    pub(crate) fn remove_item_dirs(&self, kind: Kind, id: &str) {
        if !layout::owns_paths(id) {
            return;
        }
        let _ = std::fs::remove_dir_all(self.item_dir(kind, id));
        if kind != Kind::Layer {
            let _ = std::fs::remove_dir_all(self.item_run_dir(kind, id));
        }
    }

    /// `<runroot>/<drv>-<kind>s/<id>`.
    pub(crate) fn item_run_dir(&self, kind: Kind, id: &str) -> PathBuf {
        self.options
            .run_root
            .join(format!("{}-{}s", self.options.driver, kind.name()))
            .join(id)
    }

    /// Takes the layers, images and containers locks exclusively, in that
    /// order (every multi-record change does, so none can deadlock), and
    /// loads the three record files.
    pub(crate) fn transaction(&self) -> Result<Transaction<'_>> {
        Ok(Transaction {
            layers: self.layer_records.lock()?,
            images: self.image_records.lock()?,
            containers: self.container_records.lock()?,
        })
    }

    /// The chunk pool.
    pub fn pool(&self) -> &ChunkPool {
        &self.pool
    }

    fn check_writable(&self) -> Result<()> {
        if self.write_failed.load(Ordering::SeqCst) {
            return Err(Error::WriteLatched(self.options.graph_root.clone()));
        }
        if !self.writable {
            return Err(Error::ReadOnly(self.options.graph_root.clone()));
        }
        Ok(())
    }

    /// Runs a write; a failed write or fsync latches the handle so that no
    /// further write is attempted (fsync is never retried).
    fn write<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.check_writable()?;
        let result = f();
        if result.as_ref().is_err_and(Error::latches) {
            self.write_failed.store(true, Ordering::SeqCst);
        }
        result
    }
}

/// The store's fixed directories, of both drivers, in the graph root and
/// the run root: each is made with mode 0700 (`durable::DIR_MODE`), and
/// [`Store::open`] checks them all (one `lstat` each): a symbolic link
/// among them is refused, and when the store is opened for writing, one
/// this user owns that an older version or a loose umask left open to
/// others is given 0700 again. Directories below them are not walked: the
/// fixed ones keep other users out of everything in them.
fn private_dirs(options: &StoreOptions) -> Vec<PathBuf> {
    let graph = &options.graph_root;
    let run = &options.run_root;
    let (pool, objects) = (layout::pool_dir(graph), layout::objects_dir(graph));
    let mut below: Vec<PathBuf> = ChunkPool::dirs(&pool).into();
    below.push(materialize::objects_tmp_dir(&objects));
    let mut dirs = vec![layout::manifests_dir(graph), pool, objects];
    for drv in options::DRIVERS {
        let driver = layout::driver_dir(graph, drv);
        let layers = layout::layers_dir(graph, drv);
        below.extend([
            layers.join(layout::INCOMPLETE),
            layers.join(layout::DELETING),
            driver.join(layout::SHORT_LINKS),
            driver.join(layout::VFS_TREES),
            layers.join(layout::USED_STAMPS),
            layers.join(layout::UNSYNCED),
            layers.join(layout::SHARED_EMPTY),
        ]);
        dirs.extend([
            layers,
            layout::images_dir(graph, drv),
            layout::containers_dir(graph, drv),
            driver,
            layout::layers_dir(run, drv),
            layout::images_dir(run, drv),
            layout::containers_dir(run, drv),
        ]);
    }
    // Parents before their children: no child is looked at through a
    // parent that is a link.
    dirs.append(&mut below);
    dirs
}

/// Whether `dir` is one of the driver's own directories that a mount
/// makes again when something else stands in its place (`l/`, `.used/`).
fn driver_repairs(dir: &Path) -> bool {
    dir.file_name().is_some_and(|n| {
        n == layout::SHORT_LINKS || n == layout::USED_STAMPS || n == layout::SHARED_EMPTY
    })
}

/// Moves the directories of ours an earlier version kept in the driver's
/// directory to `<drv>-layers/` (see [`layout::side_dir`]): renamed when
/// the new one is not there yet, else their entries are (a build's
/// marker must not be lost) and the old one removed. Best effort: what
/// is left is reported and tried again at the next open.
fn move_side_dirs(graph: &Path, driver: &str) {
    for (old, name) in layout::former_side_dirs(graph, driver) {
        let is_dir = std::fs::symlink_metadata(&old).is_ok_and(|m| m.is_dir());
        if !is_dir {
            continue;
        }
        let new = layout::side_dir(graph, driver, name);
        let moved = match std::fs::symlink_metadata(&new) {
            Err(_) => std::fs::rename(&old, &new),
            Ok(_) => std::fs::read_dir(&old)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name() != ".lock")
                .try_for_each(|e| std::fs::rename(e.path(), new.join(e.file_name())))
                .and_then(|()| durable::remove_tree(&old)),
        };
        if let Err(e) = moved {
            tracing::warn!("{}: not moved to {}: {e}", old.display(), new.display());
        }
    }
}

/// Whether `path` lies on a filesystem mounted read-only (creating the
/// store's directories succeeds there when they all exist already).
fn read_only_fs(path: &Path) -> bool {
    nix::sys::statvfs::statvfs(path)
        .map(|st| st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Op;

    fn open_at(dir: &Path) -> Store {
        Store::open(StoreOptions {
            graph_root: dir.join("graph"),
            run_root: dir.join("run"),
            driver: "vfs".into(),
            ..StoreOptions::defaults()
        })
        .unwrap()
    }

    fn failed(op: Op) -> Result<()> {
        Err(Error::io(op, Path::new("/x"), std::io::Error::other("EIO")))
    }

    /// A failed fsync inside `Store::write` stops the handle; a failed
    /// open does not: the operation's type decides.
    #[test]
    fn a_failed_fsync_latches_the_handle_and_a_failed_open_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_at(dir.path());
        assert!(matches!(
            store.write(|| failed(Op::Open)),
            Err(Error::Io { op: Op::Open, .. })
        ));
        store.write(|| Ok(())).unwrap();
        assert!(matches!(
            store.write(|| failed(Op::Fsync)),
            Err(Error::Io { op: Op::Fsync, .. })
        ));
        assert!(matches!(
            store.write(|| Ok(())),
            Err(Error::WriteLatched(_))
        ));
        assert!(matches!(
            store.create_layer(None, &LayerOptions::default()),
            Err(Error::WriteLatched(_))
        ));
        // Another handle on the same store writes.
        open_at(dir.path())
            .create_layer(None, &LayerOptions::default())
            .unwrap();
    }
}
