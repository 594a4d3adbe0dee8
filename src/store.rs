//! The store: layer records on top of the chunk pool, with upstream's
//! on-disk layout (`<graphroot>/<drv>-layers/layers.json` + `layers.lock`),
//! locks, and the order of durable writes.
//!
//! Data flows one way: the store calls `manifest` and `chunks`, never the
//! reverse. The store owns records, names, locks and when things become
//! durable; it never prints.

mod ids;
mod layers;
mod lock;
mod options;
mod records;
mod status;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub use layers::{Layer, LayerOptions, INCOMPLETE_FLAG};
pub use options::{StoreOptions, DRIVERS};
pub use status::Status;

use crate::chunks::ChunkPool;
use crate::durable;
use crate::error::{Error, Result};
use records::RecordFile;

/// An open store.
pub struct Store {
    options: StoreOptions,
    layers_dir: PathBuf,
    layer_records: RecordFile<Layer>,
    pool: ChunkPool,
    writable: bool,
    write_failed: AtomicBool,
}

impl Store {
    /// Opens (creating when needed) the store described by `options`.
    /// When the graph root is writable, layers left incomplete by a
    /// crashed import are removed.
    pub fn open(options: StoreOptions) -> Result<Store> {
        let graph = options.graph_root.clone();
        let layers_dir = graph.join(format!("{}-layers", options.driver));
        let writable = Self::prepare(&graph, &layers_dir).is_ok();
        if !writable && !layers_dir.is_dir() {
            // Neither creatable nor there: report why.
            Self::prepare(&graph, &layers_dir)?;
        }
        let layer_records = RecordFile::open(&layers_dir, "layers.json", "layers.lock")?;
        let pool = ChunkPool::open(&graph.join("chunks"), writable)?;
        let store = Store {
            options,
            layers_dir,
            layer_records,
            pool,
            writable,
            write_failed: AtomicBool::new(false),
        };
        if writable {
            store.remove_incomplete_layers()?;
        }
        Ok(store)
    }

    fn prepare(graph: &Path, layers_dir: &Path) -> Result<()> {
        durable::create_dir_all(layers_dir)?;
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
