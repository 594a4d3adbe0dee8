//! The library's one error type.
//!
//! # Error policy
//!
//! - **One enum, a variant per way to fail.** Every failure the library
//!   returns is an [`Error`] variant a caller can match on; no test or
//!   caller needs to read the message to tell one refusal from another.
//!   There is no catch-all for the store's rules: a new refusal gets its
//!   own variant (or joins the variant of the same rule, such as
//!   [`Error::Mounted`] with the [`Action`] refused).
//! - **Variants carry typed data**: the item's [`Kind`] and ID, a
//!   [`ChunkId`], the [`Op`] that failed and its path, the [`Action`]
//!   refused. Free text (`what`) is only for the details of a malformed
//!   file or stream, where the detail is the offset and the rule broken.
//! - **Messages say what failed and where, the path or ID first**:
//!   `layer 3f2a…: layer has children`, `/var/lib/x: the store is
//!   read-only`. They are one line, lower case, without a final period.
//! - **A source is either `#[source]` or formatted into the message,
//!   never both**: an I/O error is the `#[source]` of [`Error::Io`] and
//!   [`Error::Stream`] (the command line prints the chain); an error that
//!   explains another (`cause`) formats it into its own message and does
//!   not report it as its source.
//! - **Upstream's words where scripts match on them**: where the Go
//!   library has a sentinel error (`ErrLayerUnknown` "layer not known",
//!   `ErrLayerHasChildren` "layer has children", `ErrImageUsedByContainer`
//!   "image is in use by a container", ...), our message holds the same
//!   words, after the argument or ID.
//! - **Which errors latch the store handle**: an [`Error::Io`] whose
//!   [`Op`] is a write, an `fsync` or a rename ([`Op::latches`]), returned
//!   from inside `Store::write`. After one, the handle refuses every
//!   further write with [`Error::WriteLatched`] (an `fsync` is never
//!   retried: its failure may have dropped the dirty pages). Nothing else
//!   latches: refusals and malformed input leave the store as it was.
//! - **Input the caller gives** (an argument the library checks itself)
//!   is [`Error::BadArgument`]; what the command line refuses before it
//!   calls the library is the command line's own concern.
//! - **A bug is not the caller's fault**: a thread of the library that
//!   panicked is [`Error::Panicked`], never a refusal or a bad input.
//!
//! The types the variants carry ([`Kind`], [`ChunkId`]) come from files
//! that import nothing of the crate, so the base does not depend on the
//! layers above it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::chunks::ChunkId;
use crate::store::kind::Kind;

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed on a path.
    #[error("{op} {path}: {source}", path = path.display())]
    Io {
        /// What was being done.
        op: Op,
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
    /// A diff against a layer other than the parent, of a chain whose
    /// layers map IDs otherwise than the top one (no one mapping takes
    /// their files' owners back).
    #[error("layer {layer}: a diff against a layer other than its parent is not supported where layer {other} below maps IDs otherwise")]
    MixedMapsDiff {
        /// The layer asked for.
        layer: String,
        /// A layer of its chain that maps IDs otherwise.
        other: String,
    },
    /// A stored file (record, manifest, index, pack) does not parse.
    #[error("{path}: {what}", path = path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// A stored chunk does not match its hash or cannot be read.
    #[error("chunk {id}: {what}")]
    Chunk {
        /// The chunk.
        id: ChunkId,
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
        /// The chunk.
        id: ChunkId,
        /// A pack whose index cannot be read (it may hold the chunk).
        unindexed_pack: Option<String>,
    },
    /// A layer, image or container was not found (upstream's
    /// `ErrLayerUnknown`, `ErrImageUnknown`, `ErrContainerUnknown`: the
    /// words `layer not known` are theirs).
    #[error("{arg}: {kind} not known")]
    NotKnown {
        /// What was looked for.
        kind: Kind,
        /// The argument that was looked up.
        arg: String,
    },
    /// An item has no big data item of that name.
    #[error("locating item named {key:?} for {kind} with ID {id:?}: file does not exist")]
    NoBigData {
        /// The item's kind.
        kind: Kind,
        /// The item's ID.
        id: String,
        /// The key that was asked for.
        key: String,
    },
    /// No layer, image or container has that ID or name.
    #[error("{0}: layer not known (no layer, image or container has that ID or name)")]
    DoesNotExist(String),
    /// A name is held by another item of the same kind (upstream's
    /// `ErrDuplicateName`, in its words for each kind).
    #[error("{}", name_in_use(*.kind, .name, .holder))]
    NameInUse {
        /// The kind of the items.
        kind: Kind,
        /// The name.
        name: String,
        /// The ID of the item that holds it.
        holder: String,
    },
    /// A staged directory cannot be applied: partial images are off, or
    /// the driver takes none (upstream's partial pull refusals).
    #[error("{0}")]
    NoPartialPull(String),
    /// A new layer's parent is a container's layer (upstream's
    /// `ErrParentIsContainer`).
    #[error("layer {0}: would-be parent layer is a container")]
    ParentIsContainer(String),
    /// An ID is held by another item of the same kind.
    #[error("{0}: that ID is already in use")]
    IdInUse(String),
    /// An ID or name that cannot be used (empty, `/`, ...).
    #[error("{0:?}: {1}")]
    InvalidName(String, &'static str),
    /// An argument the caller gave that the library cannot take as it
    /// is (a destination that is not `LAYER:/PATH`, a path that leaves
    /// the layer).
    #[error("{arg}: {what}")]
    BadArgument {
        /// The argument as given.
        arg: String,
        /// What is wrong with it.
        what: String,
    },
    /// The store was opened read-only (upstream's `ErrStoreIsReadOnly`).
    #[error("{}: the store is read-only", .0.display())]
    ReadOnly(PathBuf),
    /// An item of a read-only image store was to be changed: upstream
    /// finds no such item to change in the writable store (its
    /// `ErrLayerUnknown`/`ErrImageUnknown`); we say why, in the words of
    /// its `ErrStoreIsReadOnly`.
    #[error("{kind} {id}: {kind} not known in the writable store (it is in the read-only store at {}: called a write method on a read-only store)", .store.display())]
    InReadOnlyStore {
        /// The kind of the item.
        kind: Kind,
        /// Its ID.
        id: String,
        /// The read-only store's root.
        store: PathBuf,
    },
    /// A layer has child layers (upstream's `ErrLayerHasChildren` for a
    /// delete).
    #[error("layer {layer} used by layer {child}: {}", has_children(*.refused))]
    HasChildren {
        /// The layer.
        layer: String,
        /// One of its children.
        child: String,
        /// What its children stop.
        refused: Action,
    },
    /// An item is used by another (upstream's `ErrLayerUsedByImage`,
    /// `ErrLayerUsedByContainer`, `ErrImageUsedByContainer`).
    #[error("{kind} {id} used by {by} {by_id}: {}", in_use(*.kind, *.by))]
    InUse {
        /// The kind of the item that is used.
        kind: Kind,
        /// Its ID.
        id: String,
        /// The kind of the item that uses it.
        by: Kind,
        /// That item's ID.
        by_id: String,
    },
    /// A layer is mounted, which stops what was asked.
    #[error(
        "layer {layer}: it is mounted{}; {}",
        .at.as_ref().map(|p| format!(" at {}", p.display())).unwrap_or_default(),
        unmount_first(*.refused)
    )]
    Mounted {
        /// The layer.
        layer: String,
        /// Where it is mounted, when that is named.
        at: Option<PathBuf>,
        /// What the mount stops.
        refused: Action,
    },
    /// What is asked needs the layer mounted, and it is not (upstream's
    /// `ErrLayerNotMounted`).
    #[error("layer {0}: layer is not mounted")]
    NotMounted(String),
    /// A layer's mount count cannot grow further.
    #[error("layer {0}: mounted too many times")]
    TooManyMounts(String),
    /// An image has no top layer, so there is nothing to mount.
    #[error("image {0}: it has no layers to mount")]
    NoLayersToMount(String),
    /// A layer's chain of parents comes back to a layer already in it.
    #[error("layer {0}: its parents form a cycle")]
    Cycle(String),
    /// An owner of a layer's entry is outside the layer's ID map (no host
    /// ID for a container ID, or the reverse), as upstream's untar and
    /// `ChownPathByMaps` refuse it.
    #[error("layer {layer}: {path}: ID {id} cannot be mapped: it is not in the ID map")]
    Unmappable {
        /// The layer (or the directory being remapped).
        layer: String,
        /// The entry's path inside the layer.
        path: String,
        /// The ID without a mapping.
        id: u32,
    },
    /// `--subuidmap`/`--subgidmap` named a user or group that
    /// `/etc/subuid` or `/etc/subgid` gives no range.
    #[error("no subordinate ID ranges found for {name:?} in {}", file.display())]
    NoSubordinateIds {
        /// The user or group name.
        name: String,
        /// The file read.
        file: PathBuf,
    },
    /// A layer made `--readonly` (or of a read-only store) was to be
    /// written.
    #[error("layer {0}: it is read-only")]
    ReadOnlyLayer(String),
    /// A layer was deleted while its content was being imported.
    #[error("layer {0}: deleted while it was imported")]
    DeletedDuringImport(String),
    /// A live layer's directory is not a directory any more.
    #[error(
        "layer {layer}: {path} is {what}, not the layer's directory: its content is gone (`check -r` removes the layer)",
        path = path.display()
    )]
    ContentGone {
        /// The layer.
        layer: String,
        /// Its directory.
        path: PathBuf,
        /// What stands there instead (`a symlink`, `not a directory`).
        what: &'static str,
    },
    /// A layer (from before the name was reserved) has an ID that is one
    /// of the names the store's layout uses for its own files.
    #[error(
        "layer {0}: the store's layout uses this name for its own files; the layer can be exported or deleted, not materialized"
    )]
    ReservedId(String),
    /// The other driver has a sealed layer of the same ID with other
    /// content, whose manifest a new one would replace.
    #[error(
        "layer {layer}: the {driver} driver has a layer with this ID and other content ({diff_digest}); both would share its manifest"
    )]
    ManifestShared {
        /// The layer ID.
        layer: String,
        /// The other driver.
        driver: String,
        /// The other layer's diff digest.
        diff_digest: String,
    },
    /// A layer's manifest cannot be read, so the pool cannot know what
    /// it needs; nothing is swept.
    #[error(
        "layer {layer} ({driver} driver): its manifest cannot be read ({cause}); nothing was swept, run `check -r` with that driver first"
    )]
    SweepBlocked {
        /// The layer ID.
        layer: String,
        /// The driver whose record it is.
        driver: String,
        /// Why the manifest cannot be read (in the message, not a source).
        cause: Box<Error>,
    },
    /// A layer's entries cannot be extracted in order (a manifest from
    /// before the import checked it, or edited).
    #[error("{}: the layer cannot be extracted: {what}", .tree.display())]
    NotExtractable {
        /// The tree being built.
        tree: PathBuf,
        /// Which entry and why.
        what: String,
    },
    /// A path inside a tree leads through a symbolic link or a
    /// non-directory, which would lead a write out of the tree.
    #[error(
        "{}: {:?} goes through a symlink or a non-directory; refusing to follow it",
        .tree.display(),
        .path
    )]
    OutsideTree {
        /// The tree.
        tree: PathBuf,
        /// The path inside it (lossy UTF-8).
        path: String,
    },
    /// A `copy` source inside a layer goes through a symbolic link, which
    /// could lead it to host files.
    #[error("{}: the source goes through a symlink; refusing to follow it", .0.display())]
    SourceThroughSymlink(PathBuf),
    /// `copy` met a file it cannot copy (a socket).
    #[error("{}: cannot copy a socket", .0.display())]
    CannotCopy(PathBuf),
    /// A path a manifest holds cannot be made.
    #[error("{path:?}: {problem}")]
    InvalidPath {
        /// The path (inside the tree, as the manifest has it).
        path: PathBuf,
        /// What is wrong with it.
        problem: PathProblem,
    },
    /// A thread of the library panicked (a bug).
    #[error("{0} panicked")]
    Panicked(&'static str),
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

/// An operation that a refusal stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Deleting the item (`delete-layer`, `delete-image`, ...).
    Delete,
    /// Deleting everything (`wipe`).
    Wipe,
    /// Applying a diff to a layer.
    ApplyDiff,
    /// Writing into the layer a mounted delta is built over (the
    /// delta's directory shows that layer's files).
    Unshare,
    /// Making a read-only store's pool-backed layer a directory there to
    /// write into it (the mounts show the directory built from the pool).
    Write,
}

/// What is wrong with a path a manifest holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathProblem {
    /// It holds a NUL byte.
    Nul,
    /// A symbolic link's target holds a NUL byte.
    NulInTarget,
    /// It is empty: it names the root of the tree.
    Root,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathProblem::Nul => "path holds a NUL byte",
            PathProblem::NulInTarget => "symlink target holds a NUL byte",
            PathProblem::Root => "an entry names the tree's root",
        })
    }
}

fn name_in_use(kind: Kind, name: &str, holder: &str) -> String {
    const IN_USE: &str = "that name is already in use";
    match kind {
        Kind::Image => {
            format!("image name {name:?} is already associated with image {holder:?}: {IN_USE}")
        }
        Kind::Container => format!(
            "the container name {name:?} is already in use by {holder}. You have to remove that container to be able to reuse that name: {IN_USE}"
        ),
        Kind::Layer => format!("{name}: {IN_USE}"),
    }
}

fn has_children(refused: Action) -> &'static str {
    match refused {
        Action::ApplyDiff => {
            "it has child layers, whose content depends on it; a diff can only be applied to a layer without children"
        }
        _ => "layer has children",
    }
}

/// Upstream's words (`ErrLayerUsedByImage`, `ErrLayerUsedByContainer`,
/// `ErrImageUsedByContainer`).
fn in_use(kind: Kind, by: Kind) -> String {
    let article = if by == Kind::Image { "an" } else { "a" };
    format!("{kind} is in use by {article} {by}")
}

fn unmount_first(refused: Action) -> &'static str {
    match refused {
        Action::Wipe => "unmount everything first (shutdown -f)",
        Action::ApplyDiff => "unmount it before applying a diff",
        Action::Unshare => "unmount it before the layer it is built over is written",
        Action::Write => "unmount it, and what is mounted over it, before it is written",
        Action::Delete => "unmount it first",
    }
}

/// An I/O operation, as [`Error::Io`] names it: its [`Display`] is the
/// word the message starts with (`fsync /path: ...`).
///
/// [`Display`]: fmt::Display
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `allocate`: reserving space in a file.
    Allocate,
    /// `chmod`.
    Chmod,
    /// `chown`.
    Chown,
    /// `clone`: a reflink of a file.
    Clone,
    /// `copy`: copying a file's content.
    Copy,
    /// `create`: creating a file.
    Create,
    /// `fsync`: writing a file or directory back to disk.
    Fsync,
    /// `link`: a hard link.
    Link,
    /// `lock`: `flock`.
    Lock,
    /// `mkdir`.
    Mkdir,
    /// `idmap mount`: a mount showing owners through ID maps.
    IdmapMount,
    /// `mknod`: a device node or FIFO.
    Mknod,
    /// `mmap`.
    Mmap,
    /// `mount overlay`.
    MountOverlay,
    /// `open`.
    Open,
    /// `read`.
    Read,
    /// `read directory`.
    ReadDir,
    /// `readlink`.
    Readlink,
    /// `reopen`: opening a checked file again through `/proc/self/fd`.
    Reopen,
    /// `remove`.
    Remove,
    /// `rename`.
    Rename,
    /// `run`: running a program (`unshare`).
    Run,
    /// `seek`.
    Seek,
    /// `setxattr`.
    Setxattr,
    /// `stat`.
    Stat,
    /// `symlink`.
    Symlink,
    /// `syncfs`.
    Syncfs,
    /// `truncate`.
    Truncate,
    /// `unlink`.
    Unlink,
    /// `unmount`.
    Unmount,
    /// `user namespace`: making one with ID maps.
    UserNamespace,
    /// `utimens`: setting times.
    Utimens,
    /// `write`.
    Write,
}

impl Op {
    /// The operation's word in messages.
    pub fn name(self) -> &'static str {
        match self {
            Op::Allocate => "allocate",
            Op::Chmod => "chmod",
            Op::Chown => "chown",
            Op::Clone => "clone",
            Op::Copy => "copy",
            Op::Create => "create",
            Op::Fsync => "fsync",
            Op::Link => "link",
            Op::Lock => "lock",
            Op::Mkdir => "mkdir",
            Op::IdmapMount => "idmap mount",
            Op::Mknod => "mknod",
            Op::Mmap => "mmap",
            Op::MountOverlay => "mount overlay",
            Op::Open => "open",
            Op::Read => "read",
            Op::ReadDir => "read directory",
            Op::Readlink => "readlink",
            Op::Reopen => "reopen",
            Op::Remove => "remove",
            Op::Rename => "rename",
            Op::Run => "run",
            Op::Seek => "seek",
            Op::Setxattr => "setxattr",
            Op::Stat => "stat",
            Op::Symlink => "symlink",
            Op::Syncfs => "syncfs",
            Op::Truncate => "truncate",
            Op::Unlink => "unlink",
            Op::Unmount => "unmount",
            Op::UserNamespace => "user namespace",
            Op::Utimens => "utimens",
            Op::Write => "write",
        }
    }

    /// Whether a failure of this operation inside a store write stops the
    /// handle from writing again: a failed write, `fsync` or rename may
    /// have left the kernel's view of the files other than the disk's,
    /// and an `fsync` is never retried.
    pub fn latches(self) -> bool {
        matches!(self, Op::Write | Op::Fsync | Op::Rename)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the operation and path to an I/O error.
pub(crate) trait IoContext<T> {
    /// Wraps the error as [`Error::Io`] with `op` and `path`.
    fn at(self, op: Op, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, op: Op, path: &Path) -> Result<T> {
        self.map_err(|source| Error::io(op, path, source))
    }
}

/// The same for the `errno` of a system call made through nix.
impl<T> IoContext<T> for nix::Result<T> {
    fn at(self, op: Op, path: &Path) -> Result<T> {
        self.map_err(|errno| Error::io(op, path, errno))
    }
}

impl Error {
    /// Writing a layer's tar stream failed (a reader that went away, a
    /// full disk): [`Error::Stream`], for callers outside the library too.
    pub fn writing_stream(source: io::Error) -> Error {
        Error::Stream {
            what: "writing the layer stream".into(),
            source,
        }
    }

    /// An I/O error: `op` on `path` failed with `source` (an `io::Error`
    /// or an `errno`); what [`Error::Io`] holds, for callers outside the
    /// library too.
    pub fn io(op: Op, path: &Path, source: impl Into<io::Error>) -> Error {
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

    /// Whether this error, returned by a store write, stops the handle
    /// from writing again (see [`Op::latches`]).
    pub fn latches(&self) -> bool {
        matches!(self, Error::Io { op, .. } if op.latches())
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

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a";

    /// Each refusal's message is what it was when refusals were strings
    /// (the text before `==` is that old `format!`), except where the old
    /// message did not say where (the NUL-byte and root paths).
    #[test]
    fn refusals_keep_their_messages() {
        let s = |e: Error| e.to_string();
        let layer = || ID.to_string();
        let cases = [
            (
                s(Error::ReadOnly("/g".into())),
                "/g: the store is read-only",
            ),
            (
                s(Error::HasChildren {
                    layer: layer(),
                    child: "c4".into(),
                    refused: Action::Delete,
                }),
                "layer 3f2a used by layer c4: layer has children",
            ),
            (
                s(Error::HasChildren {
                    layer: layer(),
                    child: "c4".into(),
                    refused: Action::ApplyDiff,
                }),
                "layer 3f2a used by layer c4: it has child layers, whose content depends on it; a diff can only be applied to a layer without children",
            ),
            (
                s(Error::InUse {
                    kind: Kind::Layer,
                    id: layer(),
                    by: Kind::Image,
                    by_id: "i1".into(),
                }),
                "layer 3f2a used by image i1: layer is in use by an image",
            ),
            (
                s(Error::InUse {
                    kind: Kind::Layer,
                    id: layer(),
                    by: Kind::Container,
                    by_id: "c1".into(),
                }),
                "layer 3f2a used by container c1: layer is in use by a container",
            ),
            (
                s(Error::InUse {
                    kind: Kind::Image,
                    id: "i1".into(),
                    by: Kind::Container,
                    by_id: "c1".into(),
                }),
                "image i1 used by container c1: image is in use by a container",
            ),
            (
                s(Error::Mounted {
                    layer: layer(),
                    at: Some("/m".into()),
                    refused: Action::Delete,
                }),
                "layer 3f2a: it is mounted at /m; unmount it first",
            ),
            (
                s(Error::Mounted {
                    layer: layer(),
                    at: Some("/m".into()),
                    refused: Action::Wipe,
                }),
                "layer 3f2a: it is mounted at /m; unmount everything first (shutdown -f)",
            ),
            (
                s(Error::Mounted {
                    layer: layer(),
                    at: None,
                    refused: Action::ApplyDiff,
                }),
                "layer 3f2a: it is mounted; unmount it before applying a diff",
            ),
            (
                s(Error::Mounted {
                    layer: layer(),
                    at: None,
                    refused: Action::Unshare,
                }),
                "layer 3f2a: it is mounted; unmount it before the layer it is built over is written",
            ),
            (
                s(Error::Mounted {
                    layer: layer(),
                    at: None,
                    refused: Action::Write,
                }),
                "layer 3f2a: it is mounted; unmount it, and what is mounted over it, before it is written",
            ),
            (
                s(Error::TooManyMounts(layer())),
                "layer 3f2a: mounted too many times",
            ),
            (
                s(Error::NoLayersToMount("i1".into())),
                "image i1: it has no layers to mount",
            ),
            (
                s(Error::Cycle(layer())),
                "layer 3f2a: its parents form a cycle",
            ),
            (
                s(Error::ReadOnlyLayer(layer())),
                "layer 3f2a: it is read-only",
            ),
            (
                s(Error::InReadOnlyStore {
                    kind: Kind::Image,
                    id: layer(),
                    store: "/ro".into(),
                }),
                "image 3f2a: image not known in the writable store (it is in the read-only store at /ro: called a write method on a read-only store)",
            ),
            (
                s(Error::DeletedDuringImport(layer())),
                "layer 3f2a: deleted while it was imported",
            ),
            (
                s(Error::ContentGone {
                    layer: layer(),
                    path: "/g/vfs/dir/3f2a".into(),
                    what: "a symlink",
                }),
                "layer 3f2a: /g/vfs/dir/3f2a is a symlink, not the layer's directory: its content is gone (`check -r` removes the layer)",
            ),
            (
                s(Error::ReservedId("l".into())),
                "layer l: the store's layout uses this name for its own files; the layer can be exported or deleted, not materialized",
            ),
            (
                s(Error::ManifestShared {
                    layer: layer(),
                    driver: "vfs".into(),
                    diff_digest: "sha256:ab".into(),
                }),
                "layer 3f2a: the vfs driver has a layer with this ID and other content (sha256:ab); both would share its manifest",
            ),
            (
                s(Error::SweepBlocked {
                    layer: layer(),
                    driver: "vfs".into(),
                    cause: Box::new(Error::Corrupt {
                        path: "/g/m".into(),
                        what: "bad".into(),
                    }),
                }),
                "layer 3f2a (vfs driver): its manifest cannot be read (/g/m: bad); nothing was swept, run `check -r` with that driver first",
            ),
            (
                s(Error::NotExtractable {
                    tree: "/t".into(),
                    what: "entry 2 lies below \"a\"".into(),
                }),
                "/t: the layer cannot be extracted: entry 2 lies below \"a\"",
            ),
            (
                s(Error::OutsideTree {
                    tree: "/t".into(),
                    path: "etc/x".into(),
                }),
                "/t: \"etc/x\" goes through a symlink or a non-directory; refusing to follow it",
            ),
            (
                s(Error::SourceThroughSymlink("/m/etc".into())),
                "/m/etc: the source goes through a symlink; refusing to follow it",
            ),
            (
                s(Error::CannotCopy("/s".into())),
                "/s: cannot copy a socket",
            ),
            (
                s(Error::BadArgument {
                    arg: "l/x".into(),
                    what: "the destination must be LAYER:/PATH".into(),
                }),
                "l/x: the destination must be LAYER:/PATH",
            ),
            (
                s(Error::Panicked("sealing thread")),
                "sealing thread panicked",
            ),
            (
                s(Error::InvalidPath {
                    path: "/t/a\0b".into(),
                    problem: PathProblem::Nul,
                }),
                "\"/t/a\\0b\": path holds a NUL byte",
            ),
            (
                s(Error::InvalidPath {
                    path: "/t/l".into(),
                    problem: PathProblem::NulInTarget,
                }),
                "\"/t/l\": symlink target holds a NUL byte",
            ),
            (
                s(Error::InvalidPath {
                    path: "/t/".into(),
                    problem: PathProblem::Root,
                }),
                "\"/t/\": an entry names the tree's root",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    /// Kinds and chunk IDs print as the strings they replaced.
    #[test]
    fn typed_fields_print_as_before() {
        let e = Error::NotKnown {
            kind: Kind::Layer,
            arg: "x".into(),
        };
        assert_eq!(e.to_string(), "x: layer not known");
        let e = Error::NoBigData {
            kind: Kind::Container,
            id: "c1".into(),
            key: "k".into(),
        };
        assert_eq!(
            e.to_string(),
            "locating item named \"k\" for container with ID \"c1\": file does not exist"
        );
        let id = ChunkId::of(b"x");
        let e = Error::Chunk {
            id,
            what: "stored data does not match its hash".into(),
        };
        assert_eq!(
            e.to_string(),
            format!("chunk {}: stored data does not match its hash", id.to_hex())
        );
        let e = Error::MissingChunk {
            layer: None,
            id,
            unindexed_pack: None,
        };
        assert_eq!(
            e.for_layer(ID).to_string(),
            format!("layer 3f2a: chunk {} is missing from the pool", id.to_hex())
        );
    }

    /// Only a failed write, fsync or rename latches; the operation's type
    /// decides, whatever the message says.
    #[test]
    fn the_latch_is_decided_by_the_operation() {
        let io = |op| Error::io(op, Path::new("/g/x"), io::Error::other("EIO"));
        for op in [Op::Write, Op::Fsync, Op::Rename] {
            assert!(op.latches(), "{op}");
            assert!(io(op).latches(), "{op}");
        }
        for op in [Op::Open, Op::Read, Op::Create, Op::Remove, Op::Syncfs] {
            assert!(!op.latches(), "{op}");
            assert!(!io(op).latches(), "{op}");
        }
        // A refusal or a stream error never latches, even when it names a
        // write.
        assert!(!Error::ReadOnly("/g".into()).latches());
        let stream = Error::Stream {
            what: "write".into(),
            source: io::Error::other("EIO"),
        };
        assert!(!stream.latches());
        // The operation prints as the word it replaced.
        assert_eq!(io(Op::ReadDir).to_string(), "read directory /g/x: EIO");
        assert_eq!(io(Op::MountOverlay).to_string(), "mount overlay /g/x: EIO");
    }
}
