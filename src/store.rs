//! The store: layer records on top of the chunk pool, with upstream's
//! on-disk layout (`<graphroot>/<drv>-layers/layers.json` + `layers.lock`),
//! locks, and the order of durable writes.
//!
//! Data flows one way: the store calls `manifest` and `chunks`, never the
//! reverse. The store owns records, names, locks and when things become
//! durable; it never prints.

mod bigdata;
mod check;
mod containers;
mod dedup;
mod driver;
mod evict;
mod gc;
mod generic;
mod ids;
mod images;
mod item;
mod layers;
mod live;
mod lock;
mod mounts;
mod options;
mod records;
mod rootless;
mod stacking;
mod status;
mod unsynced;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub use check::{CheckOptions, CheckReport, Problem, Subject};
pub use containers::{Container, ContainerOptions};
pub use dedup::{DedupReport, HashMethod};
pub use evict::Evicted;
pub use gc::{Evict, GcOptions, GcReport};
pub use images::{Image, ImageOptions};
pub use item::{BigDataIndex, Kind, NamesOp};
pub use layers::{Layer, LayerOptions, INCOMPLETE_FLAG};
pub use mounts::MountPoint;
pub use options::{StoreOptions, DRIVERS};
pub use status::Status;

use crate::chunks::ChunkPool;
use crate::durable;
use crate::error::{Error, Result};
use records::{Locked, RecordFile};

/// An open store.
pub struct Store {
    options: StoreOptions,
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
    pub fn open(options: StoreOptions) -> Result<Store> {
        let graph = options.graph_root.clone();
        let drv = &options.driver;
        let layers_dir = graph.join(format!("{drv}-layers"));
        let images_dir = graph.join(format!("{drv}-images"));
        let containers_root = if options.transient_store {
            &options.run_root
        } else {
            &graph
        };
        let containers_dir = containers_root.join(format!("{drv}-containers"));
        let dirs = [&layers_dir, &images_dir, &containers_dir];
        let writable = Self::prepare(&graph, &dirs).is_ok() && !read_only_fs(&graph);
        if !writable && !layers_dir.is_dir() {
            // Neither creatable nor there: report why.
            Self::prepare(&graph, &dirs)?;
        }
        let layer_records = RecordFile::open(&layers_dir, "layers.json", "layers.lock")?;
        let image_records = RecordFile::open(&images_dir, "images.json", "images.lock")?;
        let container_records =
            RecordFile::open(&containers_dir, "containers.json", "containers.lock")?;
        let run_layers = options.run_root.join(format!("{drv}-layers"));
        // The run root may live elsewhere (a tmpfs) and be writable even
        // when the graph root is not; without it there are no mounts.
        let _ = durable::create_dir_all(&run_layers);
        let mount_records = RecordFile::open(&run_layers, "mountpoints.json", "mountpoints.lock")?;
        let pool = ChunkPool::open(&graph.join("chunks"), writable)?;
        let store = Store {
            options,
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
        }
        Ok(store)
    }

    fn prepare(graph: &Path, dirs: &[&PathBuf]) -> Result<()> {
        for dir in dirs {
            durable::create_dir_all(dir)?;
        }
        durable::create_dir_all(&graph.join("manifests"))?;
        let lock = graph.join("storage.lock");
        if !lock.exists() {
            std::fs::File::create(&lock).map_err(|e| Error::Io {
                op: "create",
                path: lock,
                source: e,
            })?;
        }
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
            return Err(Error::Refused(format!(
                "{}: the store is read-only",
                self.options.graph_root.display()
            )));
        }
        Ok(())
    }

    /// Runs a write; a failed write or fsync latches the handle so that no
    /// further write is attempted (fsync is never retried).
    fn write<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.check_writable()?;
        let result = f();
        if let Err(Error::Io { op, .. }) = &result {
            if matches!(*op, "write" | "fsync" | "rename") {
                self.write_failed.store(true, Ordering::SeqCst);
            }
        }
        result
    }
}

/// Whether `path` lies on a filesystem mounted read-only (creating the
/// store's directories succeeds there when they all exist already).
fn read_only_fs(path: &Path) -> bool {
    nix::sys::statvfs::statvfs(path)
        .map(|st| st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false)
}
