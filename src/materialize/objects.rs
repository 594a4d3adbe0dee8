//! The file-object cache (`<graphroot>/objects/`): one decompressed copy
//! of each distinct file content, from which materialized files are
//! reflinked (where the filesystem supports `FICLONE`), hardlinked (into
//! trees that are never written, with the full metadata in the key) or
//! copied.
//!
//! - `objects/<ab>/<content key>`: content only, mode 0444; the source of
//!   reflinks and copies.
//! - `objects/<ab>/<content key>-<metadata key>`: the same content with an
//!   entry's mode, owner, xattrs and mtime; the target of hardlinks.
//!
//! Objects are written as unnamed `O_TMPFILE` files in their directory (or
//! named files under `objects/tmp/` where the filesystem lacks them) and
//! linked into place without replacing an existing one, so a partly written
//! object is never visible and concurrent builders agree on one inode. A
//! hardlink object missing when a tree needs it is written in the tree
//! first and then adopted: the complete file is linked into the cache.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::renameat;
use nix::fcntl::{copy_file_range, AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};
use nix::unistd::linkat;

use super::jail::Slot;
use crate::chunks::ChunkReader;
use crate::durable;
use crate::error::{Error, IoContext, Op, Result};
use crate::flock::Flock;
use crate::manifest::Entry;
use crate::poison::Unpoisoned;
use crate::sys;

const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

/// An object written but not yet linked into place.
struct Pending {
    file: File,
    /// The named temporary file, where `O_TMPFILE` was not available.
    tmp: Option<PathBuf>,
}

/// What linking a hardlink object into a tree did.
pub(crate) enum Linked {
    /// The tree's file is now the object.
    Done,
    /// There is no such object yet.
    Missing,
    /// The object has as many links as the filesystem allows.
    Full,
}

/// The object cache of one store.
pub(crate) struct ObjectCache {
    dir: PathBuf,
    /// `dir`, open: objects are linked relative to it.
    dir_fd: OwnedFd,
    tmp: PathBuf,
    reflinks: AtomicU8,
    /// Object names by shard (`<ab>`), listed when first needed: where a
    /// hardlink object is missing, an object with the same content and
    /// other metadata is a cheaper source than the pool. Only a hint:
    /// what it names may have gone since.
    shards: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Shared `objects/.lock`: `gc` sweeps objects (and builders' leftover
    /// temporary trees) only while no builder holds it.
    _lock: Flock,
}

/// `objects/tmp/`: named files of builders where the filesystem has no
/// `O_TMPFILE`; every other directory of `objects/` is a shard.
pub(crate) const TMP: &str = "tmp";

/// The directory of builders' named temporary files under `dir`.
pub(crate) fn tmp_dir(dir: &Path) -> PathBuf {
    dir.join(TMP)
}

/// The lock builders hold shared and the object sweep exclusively.
pub(crate) fn lock_path(dir: &Path) -> PathBuf {
    dir.join(".lock")
}

/// The identity of a file's content: the BLAKE3 of its chunk list.
pub(crate) fn content_key(entry: &Entry) -> String {
    let mut h = blake3::Hasher::new();
    for c in &entry.chunks {
        h.update(&c.id.0);
        h.update(&c.len.to_le_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// The name of an entry's hardlink object: `<content key>-<meta key>` in
/// shard `<ab>` (the key's first two digits).
pub(crate) struct LinkName {
    name: String,
    /// `<ab>/<name>`, relative to the cache directory.
    relative: CString,
}

impl LinkName {
    /// The hardlink object name for `entry`.
    pub fn of(entry: &Entry) -> LinkName {
        let name = format!("{}-{}", content_key(entry), metadata_key(entry));
        let relative =
            CString::new(format!("{}/{name}", &name[..2])).expect("hex names hold no NUL");
        LinkName { name, relative }
    }

    fn shard(&self) -> &str {
        &self.name[..2]
    }

    /// The content key.
    fn content(&self) -> &str {
        &self.name[..64]
    }
}

/// The identity of a file's metadata, for hardlink sharing.
fn metadata_key(entry: &Entry) -> String {
    let mut h = blake3::Hasher::new();
    for n in [entry.mode, entry.uid, entry.gid, entry.mtime_nsec] {
        h.update(&n.to_le_bytes());
    }
    h.update(&entry.mtime.to_le_bytes());
    let mut xattrs: Vec<_> = entry.xattrs.iter().collect();
    xattrs.sort_by(|a, b| a.name.cmp(&b.name));
    for x in xattrs {
        h.update(&(x.name.len() as u64).to_le_bytes());
        h.update(x.name.as_bytes());
        h.update(&(x.value.len() as u64).to_le_bytes());
        h.update(&x.value);
    }
    h.finalize().to_hex()[..32].to_string()
}

impl ObjectCache {
    /// Opens (creating) the cache under `dir`.
    pub fn open(dir: &Path) -> Result<ObjectCache> {
        let tmp = tmp_dir(dir);
        durable::create_dir_all(&tmp)?;
        let dir_fd = File::open(dir).at(Op::Open, dir)?.into();
        Ok(ObjectCache {
            dir: dir.to_path_buf(),
            dir_fd,
            tmp,
            reflinks: AtomicU8::new(UNKNOWN),
            shards: Mutex::new(HashMap::new()),
            _lock: Flock::shared(&lock_path(dir))?,
        })
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(&name[..2]).join(name)
    }

    /// The content object for `entry`, written from the pool if missing.
    pub fn content(&self, entry: &Entry, reader: &mut ChunkReader<'_>) -> Result<PathBuf> {
        let path = self.path_of(&content_key(entry));
        if path.exists() {
            return Ok(path);
        }
        let pending = self.write(&path, entry, reader)?;
        pending
            .file
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o444))
            .at(Op::Chmod, &path)?;
        self.publish(pending, &path)?;
        Ok(path)
    }

    /// Makes `slot` (which must not exist) a hardlink of `entry`'s hardlink
    /// object, if the cache has one.
    pub fn link_to(&self, link: &LinkName, slot: &Slot) -> Result<Linked> {
        let name = &link.relative;
        let linked = linkat(
            Some(self.dir_fd.as_raw_fd()),
            name.as_c_str(),
            Some(slot.dir.as_raw_fd()),
            slot.name.as_c_str(),
            AtFlags::empty(),
        );
        match linked {
            Ok(()) => Ok(Linked::Done),
            Err(Errno::ENOENT) => Ok(Linked::Missing),
            // EXDEV: the layer's directory is on another mount than the
            // cache (Go's overlay driver bind-mounts `overlay/` on itself).
            Err(Errno::EMLINK | Errno::EXDEV) => Ok(Linked::Full),
            Err(e) => Err(e).at(Op::Link, &self.dir.join(name.to_string_lossy().as_ref())),
        }
    }

    /// The hardlink object `link`'s status (`ENOENT` when there is none).
    pub fn stat_link(&self, link: &LinkName) -> nix::Result<FileStat> {
        fstatat(
            Some(self.dir_fd.as_raw_fd()),
            link.relative.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
    }

    /// Replaces the file at `slot` with a hardlink of the object `link`,
    /// in one step: the object is linked under `objects/tmp/` and renamed
    /// over the file, so the path names either the old file or the object,
    /// whatever happens. `false` when the object is gone or has as many
    /// links as the filesystem allows (the file is left as it was).
    pub fn replace_with(&self, link: &LinkName, slot: &Slot) -> Result<bool> {
        let tmp = self.tmp.join(durable::random_hex(16));
        let tmp_c = CString::new(tmp.as_os_str().as_encoded_bytes()).map_err(|_| {
            Error::io(
                Op::Link,
                &tmp,
                std::io::Error::from_raw_os_error(libc::EINVAL),
            )
        })?;
        let linked = linkat(
            Some(self.dir_fd.as_raw_fd()),
            link.relative.as_c_str(),
            None,
            tmp_c.as_c_str(),
            AtFlags::empty(),
        );
        match linked {
            Ok(()) => {}
            Err(Errno::ENOENT | Errno::EMLINK) => return Ok(false),
            Err(e) => return Err(e).at(Op::Link, &tmp),
        }
        let renamed = renameat(
            None,
            tmp_c.as_c_str(),
            Some(slot.dir.as_raw_fd()),
            slot.name.as_c_str(),
        );
        if let Err(e) = renamed {
            let _ = fs::remove_file(&tmp);
            return Err(e).at(Op::Rename, &tmp);
        }
        Ok(true)
    }

    /// Makes the file at `slot`, complete with an entry's content and
    /// metadata, that entry's hardlink object `link` unless there is one;
    /// whether it did (`false`: there is one).
    pub fn adopt(&self, link: &LinkName, slot: &Slot) -> Result<bool> {
        let name = &link.relative;
        let try_link = || -> std::io::Result<()> {
            Ok(linkat(
                Some(slot.dir.as_raw_fd()),
                slot.name.as_c_str(),
                Some(self.dir_fd.as_raw_fd()),
                name.as_c_str(),
                AtFlags::empty(),
            )?)
        };
        let path = || self.dir.join(name.to_string_lossy().as_ref());
        let linked = match try_link() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                durable::create_dir_all(path().parent().expect("objects live in a directory"))?;
                try_link()
            }
            other => other,
        };
        let adopted = match linked {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e).at(Op::Link, &path()),
        };
        let mut shards = self.shards.lock_unpoisoned();
        if let Some(names) = shards.get_mut(link.shard()) {
            names.insert(link.name.clone());
        }
        Ok(adopted)
    }

    /// An object with `entry`'s content, whatever its metadata, open for
    /// reading, if the cache has one.
    pub fn same_content(&self, link: &LinkName) -> Option<File> {
        let (key, shard) = (link.content(), link.shard());
        let names: Vec<String> = self.with_shard(shard, |names| {
            names
                .range(key.to_string()..)
                .take_while(|n| n.starts_with(key))
                .cloned()
                .collect()
        });
        names.iter().find_map(|name| {
            let fd = sys::openat(
                Some(self.dir_fd.as_fd()),
                format!("{shard}/{name}").as_str(),
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ok()?;
            Some(File::from(fd))
        })
    }

    /// Runs `f` on the names in `shard`, listed when first needed (without
    /// the lock, which the other builder threads need meanwhile).
    fn with_shard<T>(&self, shard: &str, f: impl FnOnce(&mut BTreeSet<String>) -> T) -> T {
        let lock = || self.shards.lock_unpoisoned();
        let listed = lock().contains_key(shard);
        let listing = (!listed).then(|| {
            fs::read_dir(self.dir.join(shard))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<BTreeSet<String>>()
        });
        let mut shards = lock();
        let names = shards.entry(shard.to_string()).or_default();
        if let Some(listing) = listing {
            // Names linked since the listing began are kept.
            names.extend(listing);
        }
        f(names)
    }

    /// Whether the hardlink object for `entry` is known to be missing: its
    /// shard was listed (since something in it was missing) and the name
    /// is neither there nor linked since by this process. Saves a failing
    /// `linkat` per file in a cold build; an object another process links
    /// meanwhile is only not shared.
    pub fn known_missing(&self, link: &LinkName) -> bool {
        let shards = self.shards.lock_unpoisoned();
        shards
            .get(link.shard())
            .is_some_and(|names| !names.contains(&link.name))
    }

    /// Writes `entry`'s content into `file` (just created, empty): copied
    /// from an object with the same content where there is one, else
    /// read from the pool.
    pub fn fill(
        &self,
        entry: &Entry,
        link: &LinkName,
        reader: &mut ChunkReader<'_>,
        file: &mut File,
        shown: &Path,
    ) -> Result<()> {
        if let Some(source) = self.same_content(link) {
            if copy_range(&source, file, entry.size) {
                return Ok(());
            }
            // Not what it should be: start again from the pool.
            file.set_len(0).at(Op::Truncate, shown)?;
            file.seek(SeekFrom::Start(0)).at(Op::Seek, shown)?;
        }
        self.write_content(entry, reader, file, shown)
    }

    /// Writes `entry`'s content from the pool into `file`.
    pub fn write_content(
        &self,
        entry: &Entry,
        reader: &mut ChunkReader<'_>,
        file: &mut File,
        shown: &Path,
    ) -> Result<()> {
        for chunk in &entry.chunks {
            file.write_all(reader.read(&chunk.id)?)
                .at(Op::Write, shown)?;
        }
        Ok(())
    }

    /// The hardlink object for `entry` (content and metadata), written
    /// from the pool if missing.
    pub fn linkable(&self, entry: &Entry, reader: &mut ChunkReader<'_>) -> Result<PathBuf> {
        let path = self
            .dir
            .join(LinkName::of(entry).relative.to_string_lossy().as_ref());
        if path.exists() {
            return Ok(path);
        }
        let pending = self.write(&path, entry, reader)?;
        super::meta::apply_to_file(pending.file.as_fd(), entry)
            .map_err(|(op, e)| Error::io(op, &path, e))?;
        self.publish(pending, &path)?;
        Ok(path)
    }

    /// Writes `entry`'s content into a new, not yet visible file for the
    /// object at `path`: an unnamed `O_TMPFILE` in its directory where the
    /// filesystem has them, else a named file under `objects/tmp/`.
    fn write(&self, path: &Path, entry: &Entry, reader: &mut ChunkReader<'_>) -> Result<Pending> {
        let dir = path.parent().expect("objects live in a directory");
        if !dir.is_dir() {
            durable::create_dir_all(dir)?;
        }
        let unnamed = File::options()
            .write(true)
            .mode(durable::FILE_MODE)
            .custom_flags(libc::O_TMPFILE)
            .open(dir);
        let mut pending = match unnamed {
            Ok(file) => Pending { file, tmp: None },
            Err(_) => {
                let tmp = self.tmp.join(durable::random_hex(16));
                let file = File::options()
                    .write(true)
                    .create_new(true)
                    .mode(durable::FILE_MODE)
                    .open(&tmp)
                    .at(Op::Create, &tmp)?;
                Pending {
                    file,
                    tmp: Some(tmp),
                }
            }
        };
        let result = self.write_content(entry, reader, &mut pending.file, path);
        if result.is_err() {
            if let Some(tmp) = &pending.tmp {
                let _ = fs::remove_file(tmp);
            }
        }
        result.map(|()| pending)
    }

    /// Gives the written file its name unless an object is already there.
    fn publish(&self, pending: Pending, path: &Path) -> Result<()> {
        let linked = match &pending.tmp {
            None => {
                let source = format!("/proc/self/fd/{}", pending.file.as_raw_fd());
                // AT_SYMLINK_FOLLOW links the open unnamed file the proc
                // link stands for.
                linkat(
                    None,
                    Path::new(&source),
                    None,
                    path,
                    AtFlags::AT_SYMLINK_FOLLOW,
                )
                .map_err(std::io::Error::from)
            }
            Some(tmp) => {
                let linked = fs::hard_link(tmp, path);
                let _ = fs::remove_file(tmp);
                linked
            }
        };
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e).at(Op::Link, path),
        }
    }

    /// Makes `dst` (an empty file just created) a copy of `src`: a reflink
    /// where the filesystem can, else a data copy.
    pub fn clone_into(&self, src: &Path, dst: &mut File) -> Result<()> {
        let source = File::open(src).at(Op::Open, src)?;
        if self.reflinks.load(Ordering::Relaxed) != NO {
            match sys::ficlone(dst, &source) {
                Ok(()) => {
                    self.reflinks.store(YES, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EXDEV | libc::EINVAL)
                    ) =>
                {
                    self.reflinks.store(NO, Ordering::Relaxed);
                }
                Err(e) => return Err(e).at(Op::Clone, src),
            }
        }
        let mut source = source;
        std::io::copy(&mut source, dst).at(Op::Copy, src)?;
        Ok(())
    }

    /// Whether files can be reflinked on the cache's filesystem (probed
    /// in `objects/tmp/`, see [`ObjectCache::can_reflink`]).
    pub fn can_reflink_here(&self) -> bool {
        self.can_reflink(&self.tmp)
    }

    /// Whether reflinks worked (`Some(true)`), failed, or were not tried.
    pub fn reflinks(&self) -> Option<bool> {
        match self.reflinks.load(Ordering::Relaxed) {
            YES => Some(true),
            NO => Some(false),
            _ => None,
        }
    }

    /// Whether files can be reflinked into `dir` (a tree being built, on
    /// the objects' filesystem): tried once with two scratch files there,
    /// then remembered.
    pub fn can_reflink(&self, dir: &Path) -> bool {
        match self.reflinks.load(Ordering::Relaxed) {
            YES => return true,
            NO => return false,
            _ => {}
        }
        let (a, b) = (dir.join(".reflink-probe-a"), dir.join(".reflink-probe-b"));
        let cloned = (|| -> std::io::Result<bool> {
            let mut source = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(durable::FILE_MODE)
                .open(&a)?;
            source.write_all(b"probe")?;
            let target = File::options()
                .write(true)
                .create_new(true)
                .mode(durable::FILE_MODE)
                .open(&b)?;
            Ok(sys::ficlone(&target, &source).is_ok())
        })();
        let _ = fs::remove_file(&a);
        let _ = fs::remove_file(&b);
        let yes = cloned.unwrap_or(false);
        self.reflinks
            .store(if yes { YES } else { NO }, Ordering::Relaxed);
        yes
    }
}

/// Copies `len` bytes from the start of `source` to `target` inside the
/// kernel; whether exactly that many were there to copy.
fn copy_range(source: &File, target: &File, len: u64) -> bool {
    let mut left = len;
    while left > 0 {
        let step = usize::try_from(left).unwrap_or(usize::MAX).min(1 << 30);
        // No offsets: the files' own are used and advanced.
        match copy_file_range(source, None, target, None, step) {
            Ok(n) if n > 0 => left = left.saturating_sub(n as u64),
            _ => return false,
        }
    }
    true
}
