//! The chunk pool: content-defined chunks stored once, compressed, in
//! append-only pack files with an index.
//!
//! This module knows nothing of tar, layers or records. It owns the chunker
//! parameters, chunk IDs (BLAKE3), the pack and index file formats, the
//! in-memory lookup table and the publish order of new packs.

mod chunker;
mod id;
mod index;
mod names;
mod pack;
mod pool;
mod sweep;

pub use chunker::{ChunkerParams, CHUNKER_ALGORITHM};
pub use id::ChunkId;
pub use pool::{
    ChunkPool, ChunkReader, PoolStats, PoolWriter, StagedChunks, WriteGuard, WriteStats,
};
pub use sweep::{SweepGuard, SweepReport};

pub(crate) use chunker::Chunker;
pub(crate) use pack::KnownChunks;
