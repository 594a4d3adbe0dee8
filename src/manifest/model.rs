//! The manifest data model: what one sealed layer is made of.

use serde::{Deserialize, Serialize};

use super::compression::Compression;
use crate::chunks::{ChunkId, ChunkerParams};

/// One sealed layer: its entries, their chunks, the raw tar bytes that are
/// not file content, and the digests of the stream it was imported from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerManifest {
    /// The chunking algorithm (with the crate version) the chunks came from.
    pub chunker_algorithm: String,
    /// Chunk size bounds in force when the layer was imported.
    pub chunker: ChunkerParams,
    /// The parent layer's ID, if any.
    #[serde(default)]
    pub parent: Option<String>,
    /// How the imported stream was compressed.
    pub compression: Compression,
    /// `sha256:` digest of the stream as given (compressed or not).
    pub compressed_digest: String,
    /// Size of the stream as given.
    pub compressed_size: u64,
    /// `sha256:` digest of the uncompressed tar (the DiffID).
    pub diff_digest: String,
    /// Size of the uncompressed tar.
    pub diff_size: u64,
    /// The distinct owner user IDs, sorted.
    pub uids: Vec<u32>,
    /// The distinct owner group IDs, sorted.
    pub gids: Vec<u32>,
    /// Entries in tar order.
    pub entries: Vec<Entry>,
    /// Length of the uncompressed raw stream.
    pub raw_len: u64,
    /// zstd-compressed raw stream: every byte of the tar that is not
    /// regular-file content (headers, extended headers, padding, trailer).
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
}

/// What kind of filesystem object an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A regular file; its content is in `chunks`.
    File,
    /// A directory.
    Dir,
    /// A symbolic link to `link`.
    Symlink,
    /// A hard link to the earlier entry at `link`.
    Hardlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// `.wh.NAME`: NAME is deleted from the lower layers.
    Whiteout,
    /// `.wh..wh..opq`: the directory hides the lower layers' content.
    Opaque,
}

/// An extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Attribute name, e.g. `security.capability`.
    pub name: String,
    /// Attribute value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// A reference to one chunk of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The chunk's BLAKE3.
    pub id: ChunkId,
    /// Its length.
    pub len: u32,
}

/// One entry of the layer's tar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The kind of object.
    pub kind: EntryKind,
    /// Path relative to the layer root, normalised (no `.`, `..`, leading
    /// or doubled `/`); empty for the root itself.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// Permission bits (including setuid, setgid and sticky).
    pub mode: u32,
    /// Owner user ID.
    pub uid: u32,
    /// Owner group ID.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    pub mtime_nsec: u32,
    /// Symlink target (verbatim) or hard link target (normalised).
    #[serde(with = "serde_bytes", default)]
    pub link: Vec<u8>,
    /// Device major number.
    #[serde(default)]
    pub dev_major: u32,
    /// Device minor number.
    #[serde(default)]
    pub dev_minor: u32,
    /// Extended attributes from `SCHILY.xattr.*` records.
    #[serde(default)]
    pub xattrs: Vec<Xattr>,
    /// Content size (regular files).
    pub size: u64,
    /// Content chunks (regular files), in order.
    #[serde(default)]
    pub chunks: Vec<ChunkRef>,
    /// Raw-stream bytes that precede this entry's content in the tar.
    pub raw_len: u64,
}

impl Entry {
    /// An entry of `kind` at `path` with nothing else: mode 0, owner 0,
    /// no time, link, xattrs or content.
    pub(crate) fn new(kind: EntryKind, path: Vec<u8>) -> Entry {
        Entry {
            kind,
            path,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            link: Vec::new(),
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
            size: 0,
            chunks: Vec::new(),
            raw_len: 0,
        }
    }
}

impl LayerManifest {
    /// A parentless manifest of `entries` and nothing else (no content
    /// digests, no raw tar bytes).
    pub(crate) fn of_entries(entries: Vec<Entry>) -> LayerManifest {
        LayerManifest {
            chunker_algorithm: String::new(),
            chunker: crate::chunks::ChunkerParams::default(),
            parent: None,
            compression: super::Compression::None,
            compressed_digest: String::new(),
            compressed_size: 0,
            diff_digest: String::new(),
            diff_size: 0,
            uids: Vec::new(),
            gids: Vec::new(),
            entries,
            raw_len: 0,
            raw: Vec::new(),
        }
    }
}
