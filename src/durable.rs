//! Durable writes: the only code that replaces record, index and manifest
//! files, and the fsync helpers that the publish order relies on.
//!
//! `atomic_write` creates an exclusive temporary file beside the target,
//! writes it, `fsync`s it, renames it over the target and `fsync`s the
//! directory, so a reader sees the old file or the new one, never a mix.
//!
//! Writes that a marker covers until a later `syncfs` (the files of an
//! overlay build, see `store::unsynced`) skip the `fsync`s
//! ([`Flush::Later`]): on a journaling filesystem an `fsync` commits
//! everything else pending too, such as the previous build.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// When a write must be on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Before the call returns.
    Now,
    /// Whenever the kernel writes it back: a marker made before it covers
    /// it until a `syncfs`.
    Later,
}

/// Replaces `path` with `data` atomically and durably.
pub(crate) fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    atomic_write_flushed(path, data, Flush::Now)
}

/// Replaces `path` with `data` atomically, on disk when `flush` says.
pub(crate) fn atomic_write_flushed(path: &Path, data: &[u8], flush: Flush) -> Result<()> {
    PendingFile::create(path, 0)?.commit(data, flush)
}

/// The next version of a file, written under a temporary name beside it
/// and renamed over it by [`PendingFile::commit`]; dropped uncommitted,
/// the temporary file goes.
///
/// Space can be allocated when it is created, so that a commit on a disk
/// filled in the meantime still finds room: an import reserves the record
/// file's next version before its chunks are published, and nothing it
/// must write after that can fail for want of space.
///
/// The temporary file is `flock`ed while it lives, so that a cleaner
/// (`gc`) tells it from one a dead process left behind.
pub(crate) struct PendingFile {
    tmp: PathBuf,
    target: PathBuf,
    file: File,
    reserved: u64,
    renamed: bool,
}

impl PendingFile {
    /// Creates the temporary file for `target` with `reserve` bytes
    /// allocated (where the filesystem can allocate ahead).
    pub fn create(target: &Path, reserve: u64) -> Result<PendingFile> {
        let tmp = temp_sibling(target);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .at("create", &tmp)?;
        crate::flock::flock(&file, libc::LOCK_EX).at("lock", &tmp)?;
        let mut pending = PendingFile {
            tmp,
            target: target.to_path_buf(),
            file,
            reserved: 0,
            renamed: false,
        };
        if reserve > 0 {
            let len = i64::try_from(reserve).unwrap_or(i64::MAX);
            match nix::fcntl::fallocate(
                std::os::fd::AsRawFd::as_raw_fd(&pending.file),
                nix::fcntl::FallocateFlags::empty(),
                0,
                len,
            ) {
                Ok(()) => pending.reserved = reserve,
                Err(nix::errno::Errno::EOPNOTSUPP) => {}
                Err(e) => return Err(std::io::Error::from(e)).at("allocate", &pending.tmp),
            }
        }
        Ok(pending)
    }

    /// Writes `data` as the file's whole content and renames it over the
    /// target, on disk when `flush` says.
    pub fn commit(mut self, data: &[u8], flush: Flush) -> Result<()> {
        self.write_and_rename(data, flush)
    }

    /// [`PendingFile::commit`], keeping the file open and its `flock`
    /// held until the returned handle is dropped (a marker of work in
    /// progress).
    pub fn commit_held(mut self, data: &[u8], flush: Flush) -> Result<File> {
        self.write_and_rename(data, flush)?;
        // A second descriptor of the same open file holds the same lock.
        self.file.try_clone().at("open", &self.target)
    }

    fn write_and_rename(&mut self, data: &[u8], flush: Flush) -> Result<()> {
        self.file.write_all(data).at("write", &self.tmp)?;
        if self.reserved > data.len() as u64 {
            // What was reserved beyond the content goes back.
            self.file
                .set_len(data.len() as u64)
                .at("write", &self.tmp)?;
        }
        if flush == Flush::Now {
            self.file.sync_all().at("fsync", &self.tmp)?;
        }
        fs::rename(&self.tmp, &self.target).at("rename", &self.target)?;
        self.renamed = true;
        match flush {
            Flush::Now => fsync_parent(&self.target),
            Flush::Later => Ok(()),
        }
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A fresh temporary name in the same directory as `path`, so that a rename
/// onto `path` is atomic. Leftovers carry a `.tmp-` prefix for `gc`.
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".tmp-{}-{}", random_hex(8), name))
}

/// `fsync`s a directory so that renames and creations in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    let file = File::open(dir).at("open", dir)?;
    file.sync_all().at("fsync", dir)
}

/// `fsync`s the directory that holds `path`.
pub(crate) fn fsync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fsync_dir(dir),
        _ => fsync_dir(Path::new(".")),
    }
}

/// Creates a directory and its parents, `fsync`ing each parent it created.
pub(crate) fn create_dir_all(dir: &Path) -> Result<()> {
    create_dir_all_flushed(dir, Flush::Now)
}

/// Creates a directory and its parents, on disk when `flush` says.
pub(crate) fn create_dir_all_flushed(dir: &Path, flush: Flush) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all_flushed(parent, flush)?;
    }
    match fs::create_dir(dir) {
        Ok(()) if flush == Flush::Later => Ok(()),
        Ok(()) => fsync_parent(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).at("mkdir", dir),
    }
}

/// Whether the filesystem holding `path` journals its metadata in order
/// (ext4, XFS, btrfs): a file created before another change is then on
/// disk whenever that change is, without an `fsync` between them.
pub(crate) fn orders_metadata(path: &Path) -> bool {
    use nix::sys::statfs::{statfs, BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC};
    statfs(path).is_ok_and(|s| {
        [EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, BTRFS_SUPER_MAGIC].contains(&s.filesystem_type())
    })
}

/// Removes a file; one already gone is fine.
pub(crate) fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at("remove", path),
    }
}

/// A pipe: what is written to the second end is read from the first.
pub(crate) fn pipe() -> Result<(File, File)> {
    let (reader, writer) = nix::unistd::pipe().map_err(|e| crate::Error::Stream {
        what: "pipe".into(),
        source: e.into(),
    })?;
    Ok((File::from(reader), File::from(writer)))
}

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes).expect("the kernel's random source is available");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.json");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
