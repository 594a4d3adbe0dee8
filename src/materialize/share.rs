//! Sharing the files of a tree that is already there (a layer directory
//! another client wrote, whose content was checked against `manifest`)
//! with the object cache, by hardlinks: the first file with a given
//! content and metadata becomes that hardlink object (it is linked into
//! the cache), every later one is replaced by a hardlink of it.
//!
//! Only for trees that are never written (read-only by contract): a
//! write into one of their files would be a write into every tree sharing
//! it. A file is shared only when nothing tells it from its entry: a
//! regular file of the entry's size, mode, owner, mtime and exactly the
//! entry's xattrs, not changed (`ctime`) since `unchanged_since` (before
//! its content was checked). A replacement is one `rename(2)` over the
//! file (see [`ObjectCache::replace_with`]); the directory keeps its
//! times. Files that do not qualify are left as they are.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, futimens, FileStat, SFlag};
use nix::sys::time::TimeSpec;

use super::jail::{Jail, Slot};
use super::objects::{LinkName, ObjectCache};
use super::Materializer;
use crate::chunks::ChunkReader;
use crate::error::{Error, Op, Result};
use crate::manifest::{split_last, Entry, EntryKind, LayerManifest};
use crate::sys;

/// What [`Materializer::share_hardlinks`] may do.
#[derive(Clone, Copy, Debug)]
pub struct ShareOptions {
    /// Replace files by hardlinks of existing objects (else only link
    /// files into the cache as new objects, which leaves the tree as it
    /// is: a tree that an overlay mount uses as a lower directory).
    pub replace: bool,
    /// Files changed (`ctime`) at or after this time are left alone.
    pub unchanged_since: SystemTime,
    /// Compare each file's bytes with its entry's content in the pool
    /// first (for a tree whose content nobody checked since it was
    /// written: a layer directory of ours, built as copies); a file
    /// that differs is left alone.
    pub verify: bool,
}

/// What sharing a tree did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShareStats {
    /// Files linked into the cache as new objects.
    pub linked_in: u64,
    /// Files replaced by hardlinks of objects.
    pub replaced: u64,
    /// Bytes the replaced files took on disk (freed).
    pub freed_bytes: u64,
    /// Files left as they are (not as their entry says, changed, or an
    /// object at its link limit).
    pub left: u64,
}

impl ShareStats {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &ShareStats) {
        self.linked_in += other.linked_in;
        self.replaced += other.replaced;
        self.freed_bytes += other.freed_bytes;
        self.left += other.left;
    }
}

/// A directory whose times are put back after its files were replaced.
struct Touched {
    dir: Arc<OwnedFd>,
    atime: TimeSpec,
    mtime: TimeSpec,
}

impl Materializer<'_> {
    /// Whether the object cache's filesystem can reflink (files are then
    /// shared by extents, not hardlinks).
    pub fn can_reflink(&self) -> bool {
        self.objects.can_reflink_here()
    }

    /// Shares the regular files of `dir`, whose content is `manifest`'s
    /// (checked by the caller), with the object cache by hardlinks.
    pub fn share_hardlinks(
        &self,
        manifest: &LayerManifest,
        dir: &Path,
        options: ShareOptions,
    ) -> Result<ShareStats> {
        let jail = Jail::open(dir)?;
        let mut stats = ShareStats::default();
        let mut touched: HashMap<Vec<u8>, Touched> = HashMap::new();
        let since = options
            .unchanged_since
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let since = (since.as_secs() as i64, i64::from(since.subsec_nanos()));
        let files = manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::File && e.size > 0 && !e.path.is_empty());
        let mut result = Ok(());
        let mut reader = self.pool.reader();
        for e in files {
            let Ok(slot) = jail.existing_slot(&e.path) else {
                stats.left += 1;
                continue;
            };
            // (Files that are their object already need no reading.)
            if options.verify
                && !is_object(&self.objects, e, &slot)
                && !same_content(e, &slot, &mut reader)
            {
                stats.left += 1;
                continue;
            }
            let shown = || jail.display(&e.path);
            match share_file(&self.objects, e, &slot, since, options.replace) {
                Ok(Shared::LinkedIn) => stats.linked_in += 1,
                Ok(Shared::Already) => {}
                Ok(Shared::Left) => stats.left += 1,
                Ok(Shared::Replace(blocks)) => {
                    let parent = split_last(&e.path).0.to_vec();
                    if !touched.contains_key(&parent) {
                        match fstat(slot.dir.as_raw_fd()) {
                            Ok(st) => {
                                touched.insert(
                                    parent.clone(),
                                    Touched {
                                        dir: slot.dir.clone(),
                                        atime: TimeSpec::new(st.st_atime, st.st_atime_nsec),
                                        mtime: TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
                                    },
                                );
                            }
                            Err(_) => {
                                stats.left += 1;
                                continue;
                            }
                        }
                    }
                    match self.objects.replace_with(&LinkName::of(e), &slot) {
                        Ok(true) => {
                            stats.replaced += 1;
                            stats.freed_bytes += blocks;
                        }
                        Ok(false) => stats.left += 1,
                        Err(err) => {
                            result = Err(err);
                            break;
                        }
                    }
                }
                Err(Errno::EXDEV) => break,
                Err(err) => {
                    result = Err(Error::io(Op::Link, &shown(), err));
                    break;
                }
            }
        }
        for (parent, t) in touched {
            if let Err(err) = futimens(t.dir.as_raw_fd(), &t.atime, &t.mtime) {
                if result.is_ok() {
                    result = Err(Error::io(Op::Utimens, &jail.display(&parent), err));
                }
            }
        }
        result.map(|()| stats)
    }
}

/// What to do with one file.
enum Shared {
    /// It became the object.
    LinkedIn,
    /// It is the object already.
    Already,
    /// It stays as it is.
    Left,
    /// Replace it by the object; it takes this many bytes.
    Replace(u64),
}

/// Links the file at `slot` into the cache when `entry`'s object is
/// missing, or says whether to replace it by the object.
fn share_file(
    objects: &ObjectCache,
    entry: &Entry,
    slot: &Slot,
    since: (i64, i64),
    replace: bool,
) -> nix::Result<Shared> {
    let st = fstatat(
        Some(slot.dir.as_raw_fd()),
        slot.name.as_c_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    let changed = (st.st_ctime, st.st_ctime_nsec) >= since;
    if changed || !is_regular(&st) || !same_meta(entry, &st) || !same_xattrs(entry, slot) {
        return Ok(Shared::Left);
    }
    let link = LinkName::of(entry);
    match objects.stat_link(&link) {
        Ok(object) if object.st_dev == st.st_dev && object.st_ino == st.st_ino => {
            Ok(Shared::Already)
        }
        Ok(object) => {
            let fits = is_regular(&object) && same_meta(entry, &object);
            // A file with other names in the tree keeps them: replacing
            // one name would split them.
            if replace && fits && st.st_nlink == 1 && object.st_dev == st.st_dev {
                Ok(Shared::Replace(st.st_blocks as u64 * 512))
            } else {
                Ok(Shared::Left)
            }
        }
        Err(Errno::ENOENT) => match objects.adopt(&link, slot) {
            Ok(true) => Ok(Shared::LinkedIn),
            Ok(false) => Ok(Shared::Left),
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EXDEV) => {
                Err(Errno::EXDEV)
            }
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EMLINK) => {
                Ok(Shared::Left)
            }
            Err(_) => Ok(Shared::Left),
        },
        Err(e) => Err(e),
    }
}

/// Whether the file at `slot` is `entry`'s hardlink object itself.
fn is_object(objects: &ObjectCache, entry: &Entry, slot: &Slot) -> bool {
    let Ok(st) = fstatat(
        Some(slot.dir.as_raw_fd()),
        slot.name.as_c_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) else {
        return false;
    };
    objects
        .stat_link(&LinkName::of(entry))
        .is_ok_and(|object| object.st_dev == st.st_dev && object.st_ino == st.st_ino)
}

/// Whether the file at `slot` (not followed if a symlink) holds exactly
/// `entry`'s content as the pool has it. Any error reads as no.
fn same_content(entry: &Entry, slot: &Slot, reader: &mut ChunkReader<'_>) -> bool {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let Ok(file) = slot.open(flags, 0) else {
        return false;
    };
    let mut file = std::io::BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    for chunk in &entry.chunks {
        let Ok(want) = reader.read(&chunk.id) else {
            return false;
        };
        buf.resize(want.len(), 0);
        if file.read_exact(&mut buf).is_err() || buf != want {
            return false;
        }
    }
    // Nothing after the content.
    file.read(&mut [0u8; 1]).is_ok_and(|n| n == 0)
}

fn is_regular(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
}

/// Whether the file has the entry's size, mode, owner and mtime.
fn same_meta(entry: &Entry, st: &FileStat) -> bool {
    st.st_size as u64 == entry.size
        && st.st_mode & 0o7777 == entry.mode & 0o7777
        && st.st_uid == entry.uid
        && st.st_gid == entry.gid
        && st.st_mtime == entry.mtime
        && st.st_mtime_nsec == i64::from(entry.mtime_nsec)
}

/// Whether the file has exactly the entry's xattrs (a hardlink object
/// carries those and no other).
fn same_xattrs(entry: &Entry, slot: &Slot) -> bool {
    let proc_path = slot.proc_path();
    let path = Path::new(OsStr::from_bytes(proc_path.as_bytes()));
    let Ok(mut names) = sys::llistxattr(path) else {
        return false;
    };
    if names.len() != entry.xattrs.len() {
        return false;
    }
    names.sort();
    let mut wanted: Vec<_> = entry.xattrs.iter().collect();
    wanted.sort_by(|a, b| a.name.cmp(&b.name));
    names.iter().zip(wanted).all(|(name, x)| {
        name.as_slice() == x.name.as_bytes()
            && sys::lgetxattr(path, &x.name).is_ok_and(|v| v.as_deref() == Some(&x.value[..]))
    })
}
