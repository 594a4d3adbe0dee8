//! containers-storage: container layers, images and containers with the
//! record model and files of the Go `containers/storage` library, on a
//! content-addressed, deduplicating chunk pool.
//!
//! - [`chunks`]: the chunk pool (FastCDC chunks, BLAKE3 IDs, zstd packs).
//! - [`manifest`]: tar stream <-> layer manifest, byte-identical export.
//! - [`store`]: layer records, locks and the durable write order.
//!
//! The library never prints and never exits; the `containers-storage`
//! binary reports its errors.

#![deny(missing_docs)]

pub mod chunks;
mod durable;
mod duration;
mod error;
mod file_stamp;
mod flock;
mod last_writer;
pub mod manifest;
pub mod materialize;
mod poison;
pub mod store;
#[allow(unsafe_code)]
mod sys;
pub mod userns;

pub use chunks::{ChunkId, ChunkPool, ChunkerParams, PoolStats};
pub use duration::parse_duration;
pub use error::{Action, Error, Op, PathProblem, Result};
pub use manifest::{Compression, ImportObserver, ImportProgress, LayerManifest};
pub use store::{
    subid_map, Container, ContainerOptions, IdMap, IdMappingOptions, Image, ImageOptions, Kind,
    Layer, LayerOptions, Materialize, NamesOp, Status, Store, StoreOptions,
};

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
