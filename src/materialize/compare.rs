//! A materialized directory compared with what the materializer builds
//! from its manifests: the rules of `build.rs` read backwards, for
//! `check`. An overlay directory holds what extracting its layer's
//! entries in order leaves, whiteouts as 0/0 character devices and
//! opaque directories marked with an xattr; a flattened (vfs) tree holds
//! the view of the whole chain ([`lower_view`](super::lower_view)).
//! Directories that entries need but the layer does not list are
//! directories.
//!
//! Also the walk of a tree that `changes` shares: every path below a
//! root, never following a symlink.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::chunks::ChunkId;
use crate::error::{IoContext, Op, Result};
use crate::manifest::{self, whiteout_target, Entry, EntryKind, Extraction, LayerManifest};
use crate::sys;

/// Every path below `root` (relative, without the root itself) with its
/// own metadata (a symlink is not followed), depth first, each
/// directory's names in byte order.
pub(crate) fn walk(root: &Path) -> Result<Vec<(Vec<u8>, fs::Metadata)>> {
    let mut out = Vec::new();
    walk_into(root, b"", &mut out)?;
    Ok(out)
}

fn walk_into(root: &Path, rel: &[u8], out: &mut Vec<(Vec<u8>, fs::Metadata)>) -> Result<()> {
    let dir = root.join(OsStr::from_bytes(rel));
    let mut names: Vec<Vec<u8>> = fs::read_dir(&dir)
        .at(Op::ReadDir, &dir)?
        .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
        .collect::<std::io::Result<_>>()
        .at(Op::ReadDir, &dir)?;
    names.sort();
    for name in names {
        let child = match rel.is_empty() {
            true => name,
            false => [rel, b"/", &name].concat(),
        };
        let path = root.join(OsStr::from_bytes(&child));
        let meta = fs::symlink_metadata(&path).at(Op::Stat, &path)?;
        let is_dir = meta.is_dir();
        out.push((child.clone(), meta));
        if is_dir {
            walk_into(root, &child, out)?;
        }
    }
    Ok(())
}

/// What a path of a materialized directory should be.
enum Expect<'m> {
    /// A manifest entry.
    Entry(&'m Entry),
    /// An overlay whiteout: a 0/0 character device.
    Whiteout,
    /// A directory the layer needs but does not list.
    Dir,
}

/// What a materialized directory should hold, path by path.
pub(crate) struct ExpectedTree<'m> {
    paths: BTreeMap<Vec<u8>, Expect<'m>>,
    /// Directories that hide the layers below (overlay format).
    opaque: Vec<Vec<u8>>,
}

impl<'m> ExpectedTree<'m> {
    /// The overlay directory of layer `m` (a delta's manifest for a layer
    /// stacked on another's directory): what applying its entries in
    /// order leaves (a path given twice, a whiteout of a path the layer
    /// adds again), as the materializer builds it.
    pub fn overlay(m: &'m LayerManifest) -> ExpectedTree<'m> {
        let mut paths = BTreeMap::new();
        let extraction = Extraction::of(&m.entries);
        for &i in extraction.whiteouts() {
            paths.insert(whiteout_target(&m.entries[i].path), Expect::Whiteout);
        }
        let opaque = extraction.hiding().iter().map(|p| p.to_vec()).collect();
        for (i, e) in m.entries.iter().enumerate() {
            if extraction.kept(i) && !e.path.is_empty() {
                paths.insert(e.path.clone(), Expect::Entry(e));
            }
        }
        ExpectedTree { paths, opaque }.with_implied_dirs()
    }

    /// The flattened tree whose view (path -> entry) the chain gives.
    pub fn flattened(view: &'m BTreeMap<Vec<u8>, Entry>) -> ExpectedTree<'m> {
        let paths = view
            .iter()
            .map(|(path, e)| (path.clone(), Expect::Entry(e)))
            .collect();
        ExpectedTree {
            paths,
            opaque: Vec::new(),
        }
        .with_implied_dirs()
    }

    /// Adds the directories that paths lie in but nothing lists, and the
    /// opaque directories.
    fn with_implied_dirs(mut self) -> ExpectedTree<'m> {
        let implied: Vec<Vec<u8>> = self
            .paths
            .keys()
            .chain(self.opaque.iter())
            .flat_map(|p| manifest::ancestors(p))
            .filter(|p| !self.paths.contains_key(*p))
            .map(<[u8]>::to_vec)
            .collect();
        for p in implied {
            self.paths.insert(p, Expect::Dir);
        }
        for p in &self.opaque {
            if !p.is_empty() {
                self.paths.entry(p.clone()).or_insert(Expect::Dir);
            }
        }
        self
    }
}

/// One way a materialized directory differs from its manifests.
pub(crate) struct Difference {
    /// The path in the directory.
    pub path: PathBuf,
    /// How it differs (`missing`, `mode 600, the layer has 644`, ...).
    pub what: String,
    /// A regular file that differs and has other names: its device and
    /// inode (a hardlink into the object cache, which a rebuild must not
    /// link again).
    pub shared_inode: Option<(u64, u64)>,
}

/// How the directory at `root` differs from `expected`. `quick` skips
/// reading file contents; `opaque_xattr` is the overlay prefix whose
/// `opaque` xattr marks an opaque directory (`None`: not checked). An
/// error where the directory cannot be walked.
pub(crate) fn compare(
    root: &Path,
    expected: &ExpectedTree<'_>,
    quick: bool,
    opaque_xattr: Option<&str>,
) -> Result<Vec<Difference>> {
    let actual: BTreeMap<Vec<u8>, fs::Metadata> = walk(root)?.into_iter().collect();
    let shown = |rel: &[u8]| root.join(OsStr::from_bytes(rel));
    let differs = |rel: &[u8], what: String| Difference {
        path: shown(rel),
        what,
        shared_inode: None,
    };
    let is_dir = |rel: &[u8]| actual.get(rel).is_some_and(|m| m.is_dir());
    // Device nodes are made only by root.
    let makes_devices = nix::unistd::geteuid().is_root();
    let mut out = Vec::new();
    for (path, want) in &expected.paths {
        if manifest::parent(path).is_some_and(|p| !is_dir(p)) {
            continue;
        }
        let Some(meta) = actual.get(path) else {
            let device = matches!(want, Expect::Entry(e) if matches!(e.kind, EntryKind::CharDevice | EntryKind::BlockDevice));
            if !device || makes_devices {
                out.push(differs(path, "missing".into()));
            }
            continue;
        };
        if let Some(what) = difference(root, path, want, meta, quick) {
            let shared = meta.is_file() && meta.nlink() > 1;
            out.push(Difference {
                shared_inode: shared.then(|| (meta.dev(), meta.ino())),
                ..differs(path, what)
            });
        }
    }
    if let Some(prefix) = opaque_xattr {
        let name = format!("{prefix}opaque");
        for p in expected.opaque.iter().filter(|p| p.is_empty() || is_dir(p)) {
            let marked = sys::lgetxattr(&shown(p), &name).ok().flatten();
            if marked.as_deref() != Some(b"y") {
                out.push(differs(p, "not marked opaque".into()));
            }
        }
    }
    for path in actual.keys() {
        // Only the topmost of an unexpected subtree.
        let below_unexpected =
            manifest::parent(path).is_some_and(|p| !expected.paths.contains_key(p));
        if !expected.paths.contains_key(path) && !below_unexpected {
            out.push(differs(path, "not in the layer".into()));
        }
    }
    Ok(out)
}

fn kind_name(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_symlink() {
        "a symlink"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a fifo"
    } else {
        "a socket"
    }
}

/// How `meta` (the path `rel` below `root`) differs from what is expected.
fn difference(
    root: &Path,
    rel: &[u8],
    want: &Expect<'_>,
    meta: &fs::Metadata,
    quick: bool,
) -> Option<String> {
    let t = meta.file_type();
    let e = match want {
        Expect::Dir => {
            return (!t.is_dir()).then(|| format!("is {}, not a directory", kind_name(meta)))
        }
        Expect::Whiteout => {
            return (!(t.is_char_device() && meta.rdev() == 0))
                .then(|| format!("is {}, not a whiteout", kind_name(meta)))
        }
        Expect::Entry(e) => e,
    };
    let (fits, wanted) = match e.kind {
        EntryKind::Dir => (t.is_dir(), "a directory"),
        EntryKind::File => (t.is_file(), "a regular file"),
        EntryKind::Symlink => (t.is_symlink(), "a symlink"),
        EntryKind::Hardlink => (!t.is_dir(), "a hard link"),
        EntryKind::CharDevice => (t.is_char_device(), "a character device"),
        EntryKind::BlockDevice => (t.is_block_device(), "a block device"),
        EntryKind::Fifo => (t.is_fifo(), "a fifo"),
        EntryKind::Whiteout | EntryKind::Opaque => return None,
    };
    if !fits {
        return Some(format!("is {}, the layer has {wanted}", kind_name(meta)));
    }
    let mode = meta.mode() & 0o7777;
    let mode_matters = !matches!(e.kind, EntryKind::Symlink | EntryKind::Hardlink);
    if mode_matters && mode != e.mode & 0o7777 {
        return Some(format!(
            "mode {mode:o}, the layer has {:o}",
            e.mode & 0o7777
        ));
    }
    let path = || root.join(OsStr::from_bytes(rel));
    match e.kind {
        EntryKind::File => {
            if meta.len() != e.size {
                return Some(format!("size {}, the layer has {}", meta.len(), e.size));
            }
            if !quick {
                match content_matches(&path(), e) {
                    Ok(true) => {}
                    Ok(false) => return Some("content differs from the layer's".into()),
                    Err(err) => return Some(format!("cannot be read: {err}")),
                }
            }
        }
        EntryKind::Symlink => match fs::read_link(path()) {
            Ok(target) if target.as_os_str().as_bytes() == e.link.as_slice() => {}
            Ok(target) => {
                return Some(format!(
                    "points to {:?}, the layer's to {:?}",
                    target,
                    String::from_utf8_lossy(&e.link)
                ))
            }
            Err(err) => return Some(format!("cannot be read: {err}")),
        },
        EntryKind::CharDevice | EntryKind::BlockDevice => {
            let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
            if (major, minor) != (e.dev_major, e.dev_minor) {
                return Some(format!(
                    "device {major}:{minor}, the layer has {}:{}",
                    e.dev_major, e.dev_minor
                ));
            }
        }
        _ => {}
    }
    None
}

/// Whether the file holds exactly the entry's chunks.
fn content_matches(path: &Path, e: &Entry) -> std::io::Result<bool> {
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut buf = Vec::new();
    for chunk in &e.chunks {
        buf.resize(chunk.len as usize, 0);
        match file.read_exact(&mut buf) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(err) => return Err(err),
        }
        if ChunkId::of(&buf) != chunk.id {
            return Ok(false);
        }
    }
    Ok(file.read(&mut [0u8; 1])? == 0)
}
