//! The library's one error type.
//!
//! Messages say what failed and where, the path or ID first. A source is
//! either `#[source]` or formatted into the message, never both.

use std::io;
use std::path::{Path, PathBuf};

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed on a path.
    #[error("{op} {path}: {source}", path = path.display())]
    Io {
        /// What was being done (`open`, `fsync`, `rename`, ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// An I/O error that has no single path (a pipe, standard input).
    #[error("{what}: {source}")]
    Stream {
        /// What was being read or written.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A layer tar stream is malformed or hostile.
    #[error("layer {layer}: {what}")]
    BadLayer {
        /// The layer ID.
        layer: String,
        /// What is wrong, with the offset where it applies.
        what: String,
    },
    /// A tar stream is malformed (no layer known yet).
    #[error("{0}")]
    BadTar(String),
    /// A tar-split stream (upstream's `<drv>-layers/<id>.tar-split.gz`)
    /// is malformed or hostile: bad JSON or base64, an unknown record,
    /// a path given twice, a name outside the layer's directory.
    #[error("tar-split: {0}")]
    BadTarSplit(String),
    /// A file a tar-split names does not hold the content it recorded
    /// (upstream: `file integrity checksum failed`).
    #[error("{path}: {what}", path = path.display())]
    TarSplitMismatch {
        /// The file.
        path: PathBuf,
        /// How it differs.
        what: String,
    },
    /// A tar that upstream's tar-split cannot describe: Go's tar reader
    /// refuses it, it holds a sparse file or a path given twice, or its
    /// tar-split would not give it back.
    #[error("no tar-split for this tar: {0}")]
    TarSplitUnsupported(String),
    /// A stored file (record, manifest, index, pack) does not parse.
    #[error("{path}: {what}", path = path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// A stored chunk does not match its hash or cannot be found.
    #[error("chunk {id}: {what}")]
    Chunk {
        /// The chunk ID in hex.
        id: String,
        /// What is wrong.
        what: String,
    },
    /// A chunk (that a layer needs) is not in the pool.
    #[error(
        "{}chunk {id} is missing from the pool{}",
        .layer.as_ref().map(|l| format!("layer {l}: ")).unwrap_or_default(),
        .unindexed_pack.as_ref().map(|p| format!(
            " (the index of pack {p} cannot be read: `check --repair` indexes it again)"
        )).unwrap_or_default()
    )]
    MissingChunk {
        /// The layer that needs it, when known.
        layer: Option<String>,
        /// The chunk ID in hex.
        id: String,
        /// A pack whose index cannot be read (it may hold the chunk).
        unindexed_pack: Option<String>,
    },
    /// A layer, image or container was not found.
    #[error("{arg}: {kind} not known")]
    NotKnown {
        /// `layer`, `image` or `container`.
        kind: &'static str,
        /// The argument that was looked up.
        arg: String,
    },
    /// An item has no big data item of that name.
    #[error("{kind} {id}: big data item {key:?} does not exist")]
    NoBigData {
        /// `layer`, `image` or `container`.
        kind: &'static str,
        /// The item's ID.
        id: String,
        /// The key that was asked for.
        key: String,
    },
    /// No layer, image or container has that ID or name.
    #[error("{0}: does not exist")]
    DoesNotExist(String),
    /// A name is held by another item of the same kind.
    #[error("{0}: that name is already in use")]
    NameInUse(String),
    /// An ID is held by another item of the same kind.
    #[error("{0}: that ID is already in use")]
    IdInUse(String),
    /// An ID or name that cannot be used (empty, `/`, ...).
    #[error("{0:?}: {1}")]
    InvalidName(String, &'static str),
    /// The operation is refused by the store's rules.
    #[error("{0}")]
    Refused(String),
    /// A configuration file or option is wrong.
    #[error("{0}")]
    Config(String),
    /// A path where the store keeps one of its own files or directories
    /// is a symbolic link, which the store never follows (someone could
    /// make it write through it).
    #[error("{path}: is a symbolic link; the store does not follow symbolic links where it keeps its own files (remove it)", path = .0.display())]
    Symlink(PathBuf),
    /// A previous write failed; this store handle takes no more writes.
    #[error("store {0}: an earlier write failed, refusing further writes")]
    WriteLatched(PathBuf),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the operation and path to an I/O error.
pub(crate) trait IoContext<T> {
    /// Wraps the error as [`Error::Io`] with `op` and `path`.
    fn at(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| Error::io(op, path, source))
    }
}

/// The same for the `errno` of a system call made through nix.
impl<T> IoContext<T> for nix::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|errno| Error::io(op, path, errno))
    }
}

impl Error {
    /// An I/O error: `op` (`open`, `read`, `write`, ...) on `path` failed
    /// with `source` (an `io::Error` or an `errno`); what [`Error::Io`]
    /// holds, for callers outside the library too.
    pub fn io(op: &'static str, path: &Path, source: impl Into<io::Error>) -> Error {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source: source.into(),
        }
    }

    /// Whether this is a "not known" error for any kind of item.
    pub fn is_not_known(&self) -> bool {
        matches!(self, Error::NotKnown { .. } | Error::DoesNotExist(_))
    }

    /// The same error attributed to a layer, where it came from the tar.
    pub(crate) fn for_layer(self, layer: &str) -> Error {
        match self {
            Error::BadTar(what) => Error::BadLayer {
                layer: layer.to_string(),
                what,
            },
            // Keep the I/O error as the source: callers look for a broken
            // pipe in it.
            Error::Stream { what, source } => Error::Stream {
                what: format!("layer {layer}: {what}"),
                source,
            },
            Error::MissingChunk {
                layer: None,
                id,
                unindexed_pack,
            } => Error::MissingChunk {
                layer: Some(layer.to_string()),
                id,
                unindexed_pack,
            },
            other => other,
        }
    }
}
