//! Building a directory from manifests: the overlay format of one layer
//! (whiteouts as 0/0 character devices, opaque directories marked with an
//! xattr) or the flattened tree of a chain with whiteouts applied (vfs).
//!
//! The tree is built in a temporary sibling of the target and renamed into
//! place (after a `syncfs`, for a durable build), so a crash leaves no
//! half-built directory under the target's name. Regular files are
//! produced in parallel.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

// Seeded per process: paths come from untrusted layers.
use foldhash::{HashMap, HashSet};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmod, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{linkat, symlinkat, syncfs, unlinkat, UnlinkatFlags};
use rayon::prelude::*;

use super::jail::{Jail, Slot};
use super::meta;
use super::objects::{LinkName, Linked, ObjectCache};
use crate::chunks::ChunkPool;
use crate::durable;
use crate::error::{Error, IoContext, Op, PathProblem, Result};
use crate::manifest::{
    ancestors, depth, opaque_dir, parent, whiteout_target, Entry, EntryKind, Extraction,
    LayerManifest,
};
use crate::poison::Unpoisoned;
use crate::sys;

/// What kind of directory to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One layer as an overlay lower directory. `xattr_prefix` is
    /// `trusted.overlay.` (root) or `user.overlay.` (rootless).
    Overlay {
        /// Prefix of the overlay xattrs.
        xattr_prefix: &'static str,
    },
    /// The whole chain, lowest layer first, with whiteouts applied.
    Flattened,
}

/// How to build.
#[derive(Clone, Copy, Debug)]
pub struct BuildOptions {
    /// The directory format.
    pub format: Format,
    /// Whether files may be hardlinks to objects (only for trees that are
    /// never written); they are only where the filesystem cannot reflink.
    pub hardlinks: bool,
    /// Whether the tree (and every object written for it) is on disk when
    /// the build returns. A caller that builds without waiting must know
    /// which trees may not be, and when they are (see `store::unsynced`).
    pub durable: bool,
}

/// What a build did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Regular files written.
    pub files: u64,
    /// Files that are reflinks of an object.
    pub reflinked: u64,
    /// Files that are hardlinks to an object.
    pub hardlinked: u64,
    /// Files whose data was copied.
    pub copied: u64,
}

#[derive(Default)]
struct Counters {
    files: AtomicU64,
    reflinked: AtomicU64,
    hardlinked: AtomicU64,
    copied: AtomicU64,
}

struct Builder<'a> {
    pool: &'a ChunkPool,
    objects: &'a ObjectCache,
    jail: Jail,
    options: BuildOptions,
    counters: Counters,
    /// Directories of the lower layers (overlay format): a directory this
    /// layer needs but does not list takes their metadata, so that the
    /// merged view keeps the lower directory's mode, owner and times.
    lower_dirs: HashMap<&'a [u8], &'a Entry>,
    /// Applying onto a directory that already has content (a live layer):
    /// every entry replaces what is at its path, and an opaque marker
    /// empties its directory first.
    onto_existing: bool,
    /// Who creates files, where the tree's directories are all new (their
    /// modes, and so any set-group-ID bit, come last).
    creator: Option<meta::Creator>,
    /// Paths are resolved by the kernel from the root ([`Jail::beneath`]):
    /// set while [`Builder::apply_fresh`] builds a fresh tree whose
    /// directories it made first.
    beneath: AtomicBool,
    /// Device nodes not made (an unprivileged user cannot), by path:
    /// hardlinks to them are skipped as well.
    skipped_devices: Mutex<HashSet<Vec<u8>>>,
}

/// Builds `target` from `manifests` (one for the overlay format, the chain
/// lowest first for the flattened format); `lowers` are the layers below
/// an overlay layer, lowest first.
pub(crate) fn build<'a>(
    pool: &'a ChunkPool,
    objects: &'a ObjectCache,
    manifests: &[&LayerManifest],
    lowers: &[&'a LayerManifest],
    target: &Path,
    options: BuildOptions,
) -> Result<BuildStats> {
    let mut lower_dirs = HashMap::default();
    for m in lowers {
        for e in m.entries.iter().filter(|e| e.kind == EntryKind::Dir) {
            lower_dirs.insert(e.path.as_slice(), e);
        }
    }
    let parent = target.parent().expect("a target has a parent");
    let flush = match options.durable {
        true => durable::Flush::Now,
        false => durable::Flush::Later,
    };
    durable::create_dir_all_flushed(parent, flush)?;
    let tmp = durable::temp_sibling(target);
    // Durable, if asked, by the rename and the `fsync` of `parent` below.
    durable::create_tree_root(&tmp, durable::Flush::Later)?;
    // Reflinks come first: a tree that may hold hardlinks gets them only
    // where the filesystem cannot reflink.
    // (Probed first in any case: copies are written straight from the
    // pool where there are no reflinks.)
    let can_reflink = objects.can_reflink(&tmp);
    let options = BuildOptions {
        hardlinks: options.hardlinks && !can_reflink,
        ..options
    };
    let result = (|| {
        let jail = Jail::open(&tmp)?;
        let creator = meta::Creator::probe(jail.root_fd());
        let builder = Builder {
            pool,
            objects,
            jail,
            options,
            counters: Counters::default(),
            lower_dirs,
            onto_existing: false,
            creator,
            beneath: AtomicBool::new(false),
            skipped_devices: Mutex::default(),
        };
        for (i, m) in manifests.iter().enumerate() {
            builder.apply(m, i == 0)?;
        }
        if options.durable {
            syncfs(builder.jail.root_fd().as_raw_fd()).at(Op::Syncfs, &tmp)?;
        }
        let c = &builder.counters;
        Ok(BuildStats {
            files: c.files.load(Ordering::Relaxed),
            reflinked: c.reflinked.load(Ordering::Relaxed),
            hardlinked: c.hardlinked.load(Ordering::Relaxed),
            copied: c.copied.load(Ordering::Relaxed),
        })
    })();
    match result {
        Ok(stats) => match std::fs::rename(&tmp, target) {
            Ok(()) => {
                if options.durable {
                    durable::fsync_dir(parent)?;
                }
                Ok(stats)
            }
            // Another builder got there first with the same content.
            Err(_) if target.is_dir() => {
                let _ = durable::remove_tree(&tmp);
                Ok(stats)
            }
            Err(e) => {
                let _ = durable::remove_tree(&tmp);
                Err(e).at(Op::Rename, target)
            }
        },
        Err(e) => {
            let _ = durable::remove_tree(&tmp);
            Err(e)
        }
    }
}

/// Applies `manifest` in place onto `target`, an existing directory with
/// content (a live layer's upper directory or tree). Not atomic: callers
/// validate the whole input (by importing it) before calling this.
pub(crate) fn apply_onto(
    pool: &ChunkPool,
    objects: &ObjectCache,
    manifest: &LayerManifest,
    target: &Path,
    options: BuildOptions,
) -> Result<()> {
    let builder = Builder {
        pool,
        objects,
        jail: Jail::open(target)?,
        options,
        counters: Counters::default(),
        lower_dirs: HashMap::default(),
        onto_existing: true,
        creator: None,
        beneath: AtomicBool::new(false),
        skipped_devices: Mutex::default(),
    };
    builder.apply(manifest, false)?;
    syncfs(builder.jail.root_fd().as_raw_fd()).at(Op::Syncfs, target)
}

/// The directories that entries of `m` lie in but that `m` does not
/// list (`dirs`).
fn implied<'m>(m: &'m LayerManifest, dirs: &[&Entry]) -> BTreeSet<&'m [u8]> {
    let listed: HashSet<&[u8]> = dirs.iter().map(|e| e.path.as_slice()).collect();
    let mut implied = BTreeSet::new();
    for e in &m.entries {
        for parent in ancestors(&e.path) {
            if !listed.contains(parent) {
                implied.insert(parent);
            }
        }
    }
    implied
}

/// Whether the entries of `m` can be made in any order once the
/// directories exist: no path is given twice, no entry lies below a path
/// that is not a directory, and every hardlink names an earlier entry. A
/// tar that replaces or goes through its own entries is applied in order.
/// (In the overlay format a whiteout stands at the path it hides, and an
/// opaque marker needs its directory.)
fn independent(m: &LayerManifest, format: Format) -> bool {
    let overlay = format != Format::Flattened;
    // Path -> (index, whether it is a directory).
    let mut seen: HashMap<Cow<'_, [u8]>, (usize, bool)> =
        HashMap::with_capacity_and_hasher(m.entries.len(), Default::default());
    for (i, e) in m.entries.iter().enumerate() {
        let path: Cow<'_, [u8]> = match e.kind {
            EntryKind::Whiteout if overlay => whiteout_target(&e.path).into(),
            EntryKind::Whiteout | EntryKind::Opaque if !overlay => continue,
            _ => e.path.as_slice().into(),
        };
        if seen.insert(path, (i, e.kind == EntryKind::Dir)).is_some() {
            return false;
        }
    }
    seen.keys().all(|path| {
        let mut below = parent(path);
        while let Some(dir) = below {
            match seen.get(dir) {
                Some((_, true)) => return true,
                Some((_, false)) => return false,
                None => below = parent(dir),
            }
        }
        !matches!(seen.get(&path[..0]), Some((_, false)))
    }) && m.entries.iter().enumerate().all(|(i, e)| {
        e.kind != EntryKind::Hardlink
            || matches!(seen.get(e.link.as_slice()), Some((j, false)) if *j < i)
    })
}

impl Builder<'_> {
    fn apply(&self, m: &LayerManifest, fresh: bool) -> Result<()> {
        if fresh && independent(m, self.options.format) {
            return self.apply_fresh(m);
        }
        // What extracting the entries in tar order leaves; a layer that
        // cannot be extracted (imported before the import checked) fails
        // before anything is written.
        let outcome = Extraction::of(&m.entries);
        if let Some(r) = outcome.refusal() {
            return Err(Error::NotExtractable {
                tree: self.jail.display(b""),
                what: r.what.clone(),
            });
        }
        // Without root, directories already in the tree whose modes keep
        // their owner out are opened up until this layer is in.
        let opened_up = match fresh || nix::unistd::geteuid().is_root() {
            true => Vec::new(),
            false => self.open_up(m),
        };
        let result = self.apply_entries(m, &outcome);
        let given: HashSet<&[u8]> = m
            .entries
            .iter()
            .enumerate()
            .filter(|(i, e)| e.kind == EntryKind::Dir && outcome.kept(*i))
            .map(|(_, e)| e.path.as_slice())
            .collect();
        let mut restored = Ok(());
        for (path, dir, mode) in opened_up.into_iter().rev() {
            // The layer's own metadata for a directory stands.
            if given.contains(path) {
                continue;
            }
            if let Err(e) = fchmod(dir.as_raw_fd(), Mode::from_bits_truncate(mode)) {
                if restored.is_ok() {
                    restored = Err(Error::io(Op::Chmod, &self.jail.display(path), e));
                }
            }
        }
        result.and(restored)
    }

    /// Gives the owner all access (u+rwx) to every directory of the tree
    /// that the entries of `m` lie in (or link to) and that this user owns
    /// but may not enter or write, shallowest first, as an unprivileged
    /// extraction needs: root ignores modes, an owner does not. Returns
    /// the directories changed with their former modes, to be restored
    /// once the layer is in. Paths that are not directories are left for
    /// the extraction to report.
    fn open_up<'m>(&self, m: &'m LayerManifest) -> Vec<(&'m [u8], Arc<OwnedFd>, u32)> {
        let mut dirs: BTreeSet<(usize, &[u8])> = BTreeSet::new();
        dirs.insert((0, &b""[..]));
        for e in &m.entries {
            let link = match e.kind {
                EntryKind::Hardlink => e.link.as_slice(),
                _ => &[],
            };
            for dir in ancestors(&e.path).chain(ancestors(link)) {
                dirs.insert((depth(dir), dir));
            }
        }
        let me = nix::unistd::geteuid().as_raw();
        let mut opened_up = Vec::new();
        for (_, path) in dirs {
            let Ok(dir) = self.jail.open_dir(path) else {
                continue;
            };
            let Ok(st) = nix::sys::stat::fstat(dir.as_raw_fd()) else {
                continue;
            };
            let mode = st.st_mode & 0o7777;
            if st.st_uid != me || mode & 0o700 == 0o700 {
                continue;
            }
            if fchmod(dir.as_raw_fd(), Mode::from_bits_truncate(mode | 0o700)).is_ok() {
                opened_up.push((path, dir, mode));
            }
        }
        opened_up
    }

    /// Removes what this layer's whiteouts and opaque markers hide, then
    /// makes its entries in tar order, then sets directory metadata.
    fn apply_entries(&self, m: &LayerManifest, outcome: &Extraction) -> Result<()> {
        let flattened = self.options.format == Format::Flattened;
        if flattened || self.onto_existing {
            // Deletions of lower (or earlier) content come before this
            // layer's entries.
            for e in &m.entries {
                match e.kind {
                    EntryKind::Whiteout => self.remove(&whiteout_target(&e.path))?,
                    EntryKind::Opaque => self.empty_dir(opaque_dir(&e.path))?,
                    _ => {}
                }
            }
        }
        // The expensive part first, in parallel: every file's object
        // (chunks read, verified and written once per distinct content).
        let hardlinks = self.options.hardlinks;
        m.entries
            .par_iter()
            .filter(|e| e.kind == EntryKind::File && e.size > 0)
            .try_for_each_init(
                || self.pool.reader(),
                |reader, e| {
                    if hardlinks {
                        self.objects.linkable(e, reader).map(drop)
                    } else {
                        self.objects.content(e, reader).map(drop)
                    }
                },
            )?;
        // Then every entry in tar order, as `tar -x` makes them: each
        // replaces what stands at its path unless both are directories,
        // and paths resolve against the tree as the archive builds it (a
        // symlink made earlier is never followed by a later entry).
        let mut reader = self.pool.reader();
        for e in &m.entries {
            match e.kind {
                EntryKind::Dir => self.make_dir(&e.path, Some(e))?,
                EntryKind::File => self.place_file(e, &mut reader)?,
                EntryKind::Symlink
                | EntryKind::CharDevice
                | EntryKind::BlockDevice
                | EntryKind::Fifo => self.make_special(e)?,
                EntryKind::Hardlink => self.make_hardlink(e)?,
                // Whiteouts and opaque markers hide what the layers below
                // hold, never the layer's own entries.
                EntryKind::Whiteout | EntryKind::Opaque => {}
            }
        }
        if let Format::Overlay { xattr_prefix } = self.options.format {
            for &i in outcome.whiteouts() {
                self.overlay_whiteout(&whiteout_target(&m.entries[i].path))?;
            }
            for dir in outcome.hiding() {
                self.overlay_opaque(dir, xattr_prefix)?;
            }
        }
        let implied: BTreeSet<&[u8]> = outcome.implied().iter().copied().collect();
        self.implied_dirs(&implied)?;
        // Directory times last, deepest first, after their content exists;
        // a directory given twice takes its last entry's metadata.
        let mut dirs: Vec<&Entry> = m
            .entries
            .iter()
            .enumerate()
            .filter(|(i, e)| e.kind == EntryKind::Dir && outcome.kept(*i))
            .map(|(_, e)| e)
            .collect();
        dirs.sort_by_key(|e| std::cmp::Reverse(depth(&e.path)));
        for e in dirs {
            self.dir_metadata(e)?;
        }
        Ok(())
    }

    /// Builds `m` into an empty tree, its entries independent of their
    /// order: directories first, parents before children; then every other
    /// entry but hardlinks in parallel, regular files in the order their
    /// content is stored (so that each stored frame is decompressed about
    /// once); then hardlinks in tar order; directory metadata last,
    /// children before parents.
    fn apply_fresh(&self, m: &LayerManifest) -> Result<()> {
        let result = self.apply_fresh_beneath(m);
        self.beneath.store(false, Ordering::Relaxed);
        result
    }

    fn apply_fresh_beneath(&self, m: &LayerManifest) -> Result<()> {
        let mut dirs: Vec<&Entry> = m
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .collect();
        dirs.sort_by_key(|e| depth(&e.path));
        // Every directory first, parents before children: those listed
        // and those the entries need but the layer does not list. From
        // then on no path can meet anything but a directory on its way.
        let implied = implied(m, &dirs);
        let mut all: Vec<(&[u8], Option<&Entry>)> = dirs
            .iter()
            .map(|e| (e.path.as_slice(), Some(*e)))
            .chain(implied.iter().map(|p| (*p, None)))
            .collect();
        all.sort_by_key(|(path, _)| depth(path));
        self.beneath.store(true, Ordering::Relaxed);
        for level in all.chunk_by(|a, b| depth(a.0) == depth(b.0)) {
            level
                .par_iter()
                .try_for_each(|(path, e)| self.make_dir(path, *e))?;
        }
        let mut others: Vec<(Option<(u32, u64)>, &Entry)> = m
            .entries
            .iter()
            .filter(|e| !matches!(e.kind, EntryKind::Dir | EntryKind::Hardlink))
            .map(|e| (e.chunks.first().and_then(|c| self.pool.frame_of(&c.id)), e))
            .collect();
        others.sort_by_key(|(at, _)| *at);
        // A few runs per thread, each read in order by one reader (whose
        // frame buffers are reused), small enough to balance the threads.
        // A run ends where a frame does, so no two runs decompress it.
        let target = others
            .len()
            .div_ceil(rayon::current_num_threads() * 8)
            .max(16);
        let mut runs = Vec::new();
        let mut start = 0;
        for i in 1..=others.len() {
            let ends = i == others.len()
                || (i - start >= target
                    && (others[i].0.is_none() || others[i].0 != others[i - 1].0));
            if ends {
                runs.push(&others[start..i]);
                start = i;
            }
        }
        runs.par_iter().try_for_each(|run| {
            let mut reader = self.pool.reader();
            run.iter()
                .try_for_each(|(_, e)| self.make_fresh(e, &mut reader))
        })?;
        for e in m.entries.iter().filter(|e| e.kind == EntryKind::Hardlink) {
            self.make_hardlink(e)?;
        }
        self.implied_dirs(&implied)?;
        dirs.reverse();
        for level in dirs.chunk_by(|a, b| depth(&a.path) == depth(&b.path)) {
            level
                .par_iter()
                .try_for_each(|e| self.fresh_dir_metadata(e))?;
        }
        Ok(())
    }

    /// Sets the metadata of directory `e`, made by [`Builder::make_dir`]
    /// in an empty tree: where it has its owner and mode already, only its
    /// times, through its parent (no directory in such a tree is anything
    /// but a directory).
    fn fresh_dir_metadata(&self, e: &Entry) -> Result<()> {
        let given = self.creator.is_some_and(|c| c.gave_dir(e));
        if e.path.is_empty() || !e.xattrs.is_empty() || !given {
            return self.dir_metadata(e);
        }
        let slot = self.existing_slot(&e.path)?;
        meta::set_times_at(&slot, e)
            .map_err(|(op, err)| Error::io(op, &self.jail.display(&e.path), err))
    }

    /// Makes one entry that is neither a directory nor a hardlink in an
    /// empty tree.
    fn make_fresh(&self, e: &Entry, reader: &mut crate::chunks::ChunkReader<'_>) -> Result<()> {
        let overlay = self.options.format != Format::Flattened;
        match e.kind {
            EntryKind::File => self.place_file(e, reader),
            EntryKind::Symlink
            | EntryKind::CharDevice
            | EntryKind::BlockDevice
            | EntryKind::Fifo => self.make_special(e),
            EntryKind::Whiteout if overlay => self.overlay_whiteout(&whiteout_target(&e.path)),
            EntryKind::Opaque => match self.options.format {
                Format::Overlay { xattr_prefix } => {
                    self.overlay_opaque(opaque_dir(&e.path), xattr_prefix)
                }
                Format::Flattened => Ok(()),
            },
            // Nothing to remove in an empty tree; directories and
            // hardlinks are made in their own order.
            EntryKind::Whiteout | EntryKind::Dir | EntryKind::Hardlink => Ok(()),
        }
    }

    /// Sets directory `e`'s metadata.
    fn dir_metadata(&self, e: &Entry) -> Result<()> {
        self.dir_metadata_at(&e.path, e)
    }

    /// Gives the directory at `path` the metadata of `e`.
    fn dir_metadata_at(&self, path: &[u8], e: &Entry) -> Result<()> {
        let dir = self.open_dir(path)?;
        meta::apply_to_file(dir.as_fd(), e)
            .map_err(|(op, err)| Error::io(op, &self.jail.display(path), err))
    }

    /// Gives the `implied` directories (that entries need but the layer
    /// does not list) the metadata of the same directory in a lower
    /// layer, deepest first.
    fn implied_dirs(&self, implied: &BTreeSet<&[u8]>) -> Result<()> {
        if self.lower_dirs.is_empty() {
            return Ok(());
        }
        let mut implied: Vec<&[u8]> = implied.iter().copied().collect();
        implied.sort_by_key(|p| std::cmp::Reverse(depth(p)));
        for path in implied {
            let Some(lower) = self.lower_dirs.get(path) else {
                continue;
            };
            self.dir_metadata_at(path, lower)?;
        }
        Ok(())
    }

    /// The parent directory and name of `rel`; missing parents are made
    /// (none are missing while building [beneath](Builder::beneath)).
    fn slot(&self, rel: &[u8]) -> Result<Slot> {
        match self.beneath.load(Ordering::Relaxed) {
            true => self.jail.beneath(rel),
            false => self.jail.slot(rel),
        }
    }

    /// The parent directory and name of `rel`, which must exist.
    fn existing_slot(&self, rel: &[u8]) -> Result<Slot> {
        match self.beneath.load(Ordering::Relaxed) {
            true => self.jail.beneath(rel),
            false => self.jail.existing_slot(rel),
        }
    }

    /// Opens the directory `rel`.
    fn open_dir(&self, rel: &[u8]) -> Result<Arc<OwnedFd>> {
        match self.beneath.load(Ordering::Relaxed) {
            true => self.jail.open_beneath(rel),
            false => self.jail.open_dir(rel),
        }
    }

    /// Opens the directory `rel`, making missing ones on the way (none
    /// are missing while building [beneath](Builder::beneath)).
    fn open_dir_creating(&self, rel: &[u8]) -> Result<Arc<OwnedFd>> {
        match self.beneath.load(Ordering::Relaxed) {
            true => self.jail.open_beneath(rel),
            false => self.jail.open_dir_creating(rel),
        }
    }

    /// Removes `rel` (any kind, recursively) if it exists.
    fn remove(&self, rel: &[u8]) -> Result<()> {
        if rel.is_empty() {
            return Ok(());
        }
        let slot = match self.jail.existing_slot(rel) {
            Ok(slot) => slot,
            // The parent is gone or is not a directory: nothing to remove.
            Err(Error::Io { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.remove_slot(&slot, rel)
    }

    fn remove_slot(&self, slot: &Slot, rel: &[u8]) -> Result<()> {
        let unlinked = unlinkat(
            Some(slot.dir.as_raw_fd()),
            slot.name.as_c_str(),
            UnlinkatFlags::NoRemoveDir,
        );
        match unlinked {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::EISDIR | Errno::EPERM) => {
                // A directory goes, and with it directories that may have
                // been opened before. std's remove_dir_all does not follow
                // symlinks inside.
                self.jail.forget_opened();
                let proc_path = slot.proc_path();
                let path = Path::new(OsStr::from_bytes(proc_path.as_bytes()));
                durable::remove_tree(path).at(Op::Remove, &self.jail.display(rel))
            }
            Err(e) => Err(Error::io(Op::Unlink, &self.jail.display(rel), e)),
        }
    }

    /// Removes everything inside directory `rel` (an opaque marker).
    fn empty_dir(&self, rel: &[u8]) -> Result<()> {
        let dir = match self.jail.open_dir(rel) {
            Ok(dir) => dir,
            Err(Error::Io { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
        for child in std::fs::read_dir(&path).at(Op::ReadDir, &self.jail.display(rel))? {
            let child = child.at(Op::ReadDir, &self.jail.display(rel))?;
            let mut child_rel = rel.to_vec();
            if !child_rel.is_empty() {
                child_rel.push(b'/');
            }
            child_rel.extend_from_slice(child.file_name().as_bytes());
            self.remove(&child_rel)?;
        }
        Ok(())
    }

    /// Makes the directory at `path`: that of entry `e`, or one that
    /// entries need but the layer does not list (mode 0755, as `tar -x`).
    fn make_dir(&self, path: &[u8], e: Option<&Entry>) -> Result<()> {
        if path.is_empty() {
            return Ok(());
        }
        let slot = self.slot(path)?;
        let mode = match e {
            None => 0o755,
            Some(e) if self.creator.is_some() => meta::Creator::dir_mode(e),
            Some(_) => 0o700,
        };
        let made = mkdirat(
            Some(slot.dir.as_raw_fd()),
            slot.name.as_c_str(),
            Mode::from_bits_truncate(mode),
        );
        match made {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => {
                // A directory stays (its metadata is set later); anything
                // else of that name is replaced.
                if slot.open(OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0).is_ok() {
                    return Ok(());
                }
                self.remove_slot(&slot, path)?;
                mkdirat(
                    Some(slot.dir.as_raw_fd()),
                    slot.name.as_c_str(),
                    Mode::from_bits_truncate(0o700),
                )
                .at(Op::Mkdir, &self.jail.display(path))
            }
            Err(err) => Err(Error::io(Op::Mkdir, &self.jail.display(path), err)),
        }
    }

    /// The slot of `e.path`, emptied of what stands there (a lower
    /// layer's entry, or an earlier one of the same layer): as `tar -x`,
    /// the last entry for a path wins. In a fresh tree of independent
    /// entries nothing stands there.
    fn fresh_slot(&self, e: &Entry) -> Result<Slot> {
        let slot = self.slot(&e.path)?;
        if !self.beneath.load(Ordering::Relaxed) {
            self.remove_slot(&slot, &e.path)?;
        }
        Ok(slot)
    }

    fn place_file(&self, e: &Entry, reader: &mut crate::chunks::ChunkReader<'_>) -> Result<()> {
        let slot = self.fresh_slot(e)?;
        let shown = || self.jail.display(&e.path);
        self.counters.files.fetch_add(1, Ordering::Relaxed);
        // The hardlink object to link, or else to write here and adopt.
        let mut adopt = None;
        if self.options.hardlinks && e.size > 0 {
            let link = LinkName::of(e);
            let linked = match self.objects.known_missing(&link) {
                true => Linked::Missing,
                false => self.objects.link_to(&link, &slot)?,
            };
            match linked {
                Linked::Done => {
                    self.counters.hardlinked.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Linked::Missing => adopt = Some(link),
                Linked::Full => {}
            }
        }
        let mut file = slot
            .open(
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                meta::Creator::create_mode(e),
            )
            .at(Op::Create, &shown())?;
        if let Some(link) = &adopt {
            self.objects.fill(e, link, reader, &mut file, &shown())?;
        } else if e.size > 0 && self.objects.reflinks() == Some(false) {
            // A copy: straight from the pool. A content object to copy
            // from would be one more copy on disk, shared with nothing.
            self.objects.write_content(e, reader, &mut file, &shown())?;
            self.counters.copied.fetch_add(1, Ordering::Relaxed);
        } else if e.size > 0 {
            let object = self.objects.content(e, reader)?;
            self.objects.clone_into(&object, &mut file)?;
            if self.objects.reflinks() == Some(true) {
                self.counters.reflinked.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counters.copied.fetch_add(1, Ordering::Relaxed);
            }
        }
        let applied = match &self.creator {
            Some(creator) => meta::apply_to_created(file.as_fd(), e, creator),
            None => meta::apply_to_file(file.as_fd(), e),
        };
        applied.map_err(|(op, err)| Error::io(op, &shown(), err))?;
        if let Some(link) = &adopt {
            drop(file);
            let counter = match self.objects.adopt(link, &slot) {
                Ok(_) => &self.counters.hardlinked,
                // The tree is on another mount than the cache (Go's
                // overlay driver bind-mounts `overlay/` on itself): the
                // file, complete, stays a file of its own.
                Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EXDEV) => {
                    &self.counters.copied
                }
                Err(e) => return Err(e),
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn make_special(&self, e: &Entry) -> Result<()> {
        let slot = self.fresh_slot(e)?;
        let shown = self.jail.display(&e.path);
        let dir = slot.dir.as_raw_fd();
        let made = match e.kind {
            EntryKind::Symlink => {
                let target = CString::new(e.link.clone())
                    .map_err(|_| self.jail.invalid(&e.path, PathProblem::NulInTarget))?;
                symlinkat(target.as_c_str(), Some(dir), slot.name.as_c_str())
            }
            kind => {
                let (ty, dev) = match kind {
                    EntryKind::CharDevice => {
                        (SFlag::S_IFCHR, libc::makedev(e.dev_major, e.dev_minor))
                    }
                    EntryKind::BlockDevice => {
                        (SFlag::S_IFBLK, libc::makedev(e.dev_major, e.dev_minor))
                    }
                    _ => (SFlag::S_IFIFO, 0),
                };
                let perm = Mode::from_bits_truncate(0o600);
                mknodat(Some(dir), slot.name.as_c_str(), ty, perm, dev)
            }
        };
        if let Err(err) = made {
            let device = matches!(e.kind, EntryKind::CharDevice | EntryKind::BlockDevice);
            if device && err == Errno::EPERM && !nix::unistd::geteuid().is_root() {
                // Unprivileged users cannot create device nodes.
                tracing::debug!(path = %shown.display(), "skipping a device node");
                self.skipped_devices
                    .lock_unpoisoned()
                    .insert(e.path.clone());
                return Ok(());
            }
            return Err(Error::io(
                if e.kind == EntryKind::Symlink {
                    Op::Symlink
                } else {
                    Op::Mknod
                },
                &shown,
                err,
            ));
        }
        meta::apply_to_slot(&slot, e, self.creator.as_ref())
            .map_err(|(op, err)| Error::io(op, &shown, err))
    }

    fn make_hardlink(&self, e: &Entry) -> Result<()> {
        let target = self.existing_slot(&e.link)?;
        let slot = self.fresh_slot(e)?;
        // No flags: a symlink is linked itself, never followed.
        let linked = linkat(
            Some(target.dir.as_raw_fd()),
            target.name.as_c_str(),
            Some(slot.dir.as_raw_fd()),
            slot.name.as_c_str(),
            AtFlags::empty(),
        );
        match linked {
            // A hardlink to a device node that was not made is not made
            // either (nor, in turn, hardlinks to it).
            Err(Errno::ENOENT) if self.skipped_devices.lock_unpoisoned().contains(&e.link) => {
                self.skipped_devices
                    .lock_unpoisoned()
                    .insert(e.path.clone());
                tracing::debug!(path = %self.jail.display(&e.path).display(), "skipping a hardlink to a device node");
                Ok(())
            }
            other => other.at(Op::Link, &self.jail.display(&e.path)),
        }
    }

    /// Makes the whiteout device (0/0) at `rel`, a path the layer hides
    /// in the layers below.
    fn overlay_whiteout(&self, rel: &[u8]) -> Result<()> {
        let slot = self.slot(rel)?;
        if !self.beneath.load(Ordering::Relaxed) {
            self.remove_slot(&slot, rel)?;
        }
        let dir = Some(slot.dir.as_raw_fd());
        mknodat(dir, slot.name.as_c_str(), SFlag::S_IFCHR, Mode::empty(), 0)
            .at(Op::Mknod, &self.jail.display(rel))
    }

    /// Marks directory `rel` opaque: it hides what the layers below hold
    /// there.
    fn overlay_opaque(&self, rel: &[u8], xattr_prefix: &str) -> Result<()> {
        let dir = self.open_dir_creating(rel)?;
        let name = CString::new(format!("{xattr_prefix}opaque")).expect("no NUL");
        sys::fsetxattr(dir.as_fd(), &name, b"y").at(Op::Setxattr, &self.jail.display(rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::materialize::delta::tests::{entry, manifest};
    use EntryKind::*;

    fn link(kind: EntryKind, path: &str, target: &str) -> Entry {
        Entry {
            link: target.as_bytes().to_vec(),
            ..entry(kind, path, 0)
        }
    }

    const OVERLAY: Format = Format::Overlay {
        xattr_prefix: "trusted.overlay.",
    };

    #[test]
    fn a_plain_layer_is_independent_of_order() {
        let m = manifest(vec![
            entry(Dir, "", 0),
            entry(File, "a/b/c", 0),
            entry(Dir, "a", 0),
            link(Symlink, "s", "a"),
            link(Hardlink, "h", "a/b/c"),
            entry(Whiteout, "a/.wh.gone", 0),
            entry(Opaque, "a/.wh..wh..opq", 0),
        ]);
        assert!(independent(&m, OVERLAY));
        assert!(independent(&m, Format::Flattened));
    }

    #[test]
    fn a_layer_that_replaces_or_goes_through_its_own_entries_is_applied_in_order() {
        let cases = [
            vec![entry(File, "a", 0), entry(File, "a", 1)],
            vec![entry(File, "a", 0), entry(Dir, "a", 1)],
            vec![link(Symlink, "a", "/"), entry(File, "a/tmp/x", 0)],
            vec![entry(File, "a", 0), entry(File, "a/b/c", 0)],
            vec![link(Hardlink, "h", "later"), entry(File, "later", 0)],
            vec![entry(Dir, "d", 0), link(Hardlink, "h", "d")],
        ];
        for entries in cases {
            let m = manifest(entries);
            assert!(!independent(&m, OVERLAY), "{:?}", m.entries);
        }
        // In the overlay format a whiteout is a device at the hidden name,
        // and an opaque marker needs its directory.
        let m = manifest(vec![entry(File, "x", 0), entry(Whiteout, ".wh.x", 0)]);
        assert!(!independent(&m, OVERLAY));
        assert!(independent(&m, Format::Flattened));
        let m = manifest(vec![
            entry(File, "d", 0),
            entry(Opaque, "d/.wh..wh..opq", 0),
        ]);
        assert!(!independent(&m, OVERLAY));
        assert!(independent(&m, Format::Flattened));
    }
}
