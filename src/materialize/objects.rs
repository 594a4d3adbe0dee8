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
//! object is never visible and concurrent builders agree on one inode.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::chunks::ChunkReader;
use crate::durable;
use crate::error::{Error, IoContext, Result};
use crate::flock::Flock;
use crate::manifest::Entry;

/// `FICLONE` from linux/fs.h: `_IOW(0x94, 9, int)`.
const FICLONE: libc::c_ulong = 0x4004_9409;

const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

/// An object written but not yet linked into place.
struct Pending {
    file: File,
    /// The named temporary file, where `O_TMPFILE` was not available.
    tmp: Option<PathBuf>,
}

/// The object cache of one store.
pub(crate) struct ObjectCache {
    dir: PathBuf,
    tmp: PathBuf,
    reflinks: AtomicU8,
    /// Shared `objects/.lock`: `gc` sweeps objects (and builders' leftover
    /// temporary trees) only while no builder holds it.
    _lock: Flock,
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
        let tmp = dir.join("tmp");
        durable::create_dir_all(&tmp)?;
        Ok(ObjectCache {
            dir: dir.to_path_buf(),
            tmp,
            reflinks: AtomicU8::new(UNKNOWN),
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
            .at("chmod", &path)?;
        self.publish(pending, &path)?;
        Ok(path)
    }

    /// The hardlink object for `entry` (content and metadata), written
    /// from the pool if missing.
    pub fn linkable(&self, entry: &Entry, reader: &mut ChunkReader<'_>) -> Result<PathBuf> {
        let name = format!("{}-{}", content_key(entry), metadata_key(entry));
        let path = self.path_of(&name);
        if path.exists() {
            return Ok(path);
        }
        let pending = self.write(&path, entry, reader)?;
        super::meta::apply_to_file(&pending.file, entry).map_err(|(op, e)| Error::Io {
            op,
            path: path.clone(),
            source: e.into(),
        })?;
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
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir);
        let mut pending = match unnamed {
            Ok(file) => Pending { file, tmp: None },
            Err(_) => {
                let tmp = self.tmp.join(durable::random_hex(16));
                let file = File::options()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .at("create", &tmp)?;
                Pending {
                    file,
                    tmp: Some(tmp),
                }
            }
        };
        let result = (|| {
            for chunk in &entry.chunks {
                pending
                    .file
                    .write_all(reader.read(&chunk.id)?)
                    .at("write", path)?;
            }
            Ok(())
        })();
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
                let source = CString::new(source).expect("no NUL");
                let target =
                    CString::new(path.as_os_str().as_bytes()).expect("no NUL in object paths");
                // SAFETY: NUL-terminated paths; AT_SYMLINK_FOLLOW links the
                // open unnamed file the proc link stands for.
                let r = unsafe {
                    libc::linkat(
                        libc::AT_FDCWD,
                        source.as_ptr(),
                        libc::AT_FDCWD,
                        target.as_ptr(),
                        libc::AT_SYMLINK_FOLLOW,
                    )
                };
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
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
            Err(e) => Err(e).at("link", path),
        }
    }

    /// Makes `dst` (an empty file just created) a copy of `src`: a reflink
    /// where the filesystem can, else a data copy.
    pub fn clone_into(&self, src: &Path, dst: &mut File) -> Result<()> {
        let source = File::open(src).at("open", src)?;
        if self.reflinks.load(Ordering::Relaxed) != NO {
            // SAFETY: both descriptors are open for the whole call.
            let r = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, source.as_raw_fd()) };
            if r == 0 {
                self.reflinks.store(YES, Ordering::Relaxed);
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EOPNOTSUPP)
                | Some(libc::ENOTTY)
                | Some(libc::EXDEV)
                | Some(libc::EINVAL) => {
                    self.reflinks.store(NO, Ordering::Relaxed);
                }
                _ => return Err(e).at("clone", src),
            }
        }
        let mut source = source;
        std::io::copy(&mut source, dst).at("copy", src)?;
        Ok(())
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
                .open(&a)?;
            source.write_all(b"probe")?;
            let target = File::options().write(true).create_new(true).open(&b)?;
            // SAFETY: both descriptors are open for the whole call.
            let r = unsafe { libc::ioctl(target.as_raw_fd(), FICLONE as _, source.as_raw_fd()) };
            Ok(r == 0)
        })();
        let _ = fs::remove_file(&a);
        let _ = fs::remove_file(&b);
        let yes = cloned.unwrap_or(false);
        self.reflinks
            .store(if yes { YES } else { NO }, Ordering::Relaxed);
        yes
    }
}
