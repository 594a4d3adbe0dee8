//! Layer manifests: a layer's entries, the chunks of every regular file and
//! the raw tar bytes needed to re-create the layer's tar byte for byte.
//!
//! This module turns a tar stream into a manifest (`import`) and a manifest
//! back into the identical tar stream (`export`). It knows the chunk pool
//! but nothing of layer records, names or locks.

mod codec;
mod compression;
mod digest;
mod export;
mod extract;
mod import;
mod limits;
mod model;
mod path;
mod sketch;
mod tar;
pub mod tar_split;
mod tar_write;

pub use codec::{decode, encode, read_diff_digest, read_sketch, MANIFEST_VERSION};
pub use compression::Compression;
pub use digest::Sha256;
pub use export::{write_tar, write_tar_compressed};
pub use import::{import_tar, stage_tar, ImportObserver, ImportProgress, Imported, StagedImport};
pub use model::{ChunkRef, Entry, EntryKind, LayerManifest, Xattr};
pub use sketch::Sketch;
pub use tar_write::{TarEntry, TarWriter};

pub(crate) use extract::Extraction;
pub(crate) use limits::never_written;
pub(crate) use path::{
    ancestors, depth, normalize, opaque_dir, opaque_marker, parent, split_last, whiteout_for,
    whiteout_target,
};

/// Wraps an I/O error from the layer stream.
pub(crate) fn stream_error(e: std::io::Error) -> crate::error::Error {
    crate::error::Error::Stream {
        what: "reading the layer stream".into(),
        source: e,
    }
}
