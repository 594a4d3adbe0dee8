//! The record files' lock files (`layers.lock`, `images.lock`,
//! `containers.lock`, `mountpoints.lock`), with upstream's protocol, so
//! that Go clients sharing the store and this crate exclude each other.
//!
//! Upstream (`pkg/lockfile`) takes `fcntl` record locks on the whole file
//! (`F_SETLKW`, start 0, length 0): shared to read, exclusive to write.
//! `flock(2)` locks never conflict with those, so a [`LockFile`] takes
//! open file description locks (`F_OFD_SETLKW`) on the whole file: they
//! conflict with Go's POSIX locks both ways, and, unlike POSIX locks,
//! belong to the open file, so closing another descriptor of the same
//! file in this process never drops them. An in-process mutex keeps the
//! threads of this process, which share the one open file, apart.
//!
//! Writers leave a fresh last-writer token in the file before releasing
//! the exclusive lock (see [`crate::last_writer`]); readers compare it
//! with the token they last saw to know whether to reload. Go writes and
//! reads the same 64 bytes, so each side notices the other's writes.
//!
//! The store's own coordination locks (`gc.lock`, `chunks/sweep.lock`,
//! `objects/.lock`, the import and settle markers, `PendingFile`s) are
//! `flock`s ([`crate::flock`], [`ProcessMarker`]): no Go client takes
//! them, and a marker must be testable without blocking.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use nix::fcntl::{fcntl, FcntlArg};

use crate::durable::{self, Open};
use crate::error::{IoContext, Op, Result};
use crate::last_writer::{self, Token};
use crate::poison::Unpoisoned;
use crate::sys::{flock, FlockOp};

/// How [`ofd_lock`] locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecordLock {
    /// Shared (`F_RDLCK`), waiting for an exclusive holder.
    Shared,
    /// Exclusive (`F_WRLCK`), waiting for every other holder.
    Exclusive,
    /// Release (`F_UNLCK`).
    Unlock,
}

/// An open file description lock on the whole of `file`, waiting while
/// another holder's conflicts (and retrying when a signal interrupts the
/// wait).
fn ofd_lock(file: &File, how: RecordLock) -> io::Result<()> {
    let (l_type, wait) = match how {
        RecordLock::Shared => (libc::F_RDLCK, true),
        RecordLock::Exclusive => (libc::F_WRLCK, true),
        RecordLock::Unlock => (libc::F_UNLCK, false),
    };
    // The whole file, as upstream locks it; `l_pid` must be 0 for an
    // open file description lock.
    let whole = libc::flock {
        l_type: l_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    let arg = || {
        if wait {
            FcntlArg::F_OFD_SETLKW(&whole)
        } else {
            FcntlArg::F_OFD_SETLK(&whole)
        }
    };
    loop {
        match fcntl(file.as_raw_fd(), arg()) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A lock file.
pub(crate) struct LockFile {
    path: PathBuf,
    file: File,
    local: Mutex<()>,
}

/// A held lock; released on drop.
pub(crate) struct LockGuard<'a> {
    lock: &'a LockFile,
    _local: MutexGuard<'a, ()>,
}

impl LockFile {
    /// Opens (creating when possible) the lock file at `path`, never
    /// through a symbolic link.
    pub fn open(path: &Path) -> Result<LockFile> {
        let file = durable::open_store_file(path, Open::Lock)?;
        Ok(LockFile {
            path: path.to_path_buf(),
            file,
            local: Mutex::new(()),
        })
    }

    /// Opens the existing lock file at `path` only to read (a read-only
    /// store's: never created nor written; shared locks only).
    pub fn open_read_only(path: &Path) -> Result<LockFile> {
        let file = durable::open_store_file(path, Open::Read)?;
        Ok(LockFile {
            path: path.to_path_buf(),
            file,
            local: Mutex::new(()),
        })
    }

    /// Takes the lock exclusively (for writing).
    pub fn exclusive(&self) -> Result<LockGuard<'_>> {
        self.take(RecordLock::Exclusive)
    }

    /// Takes the lock shared (for reading).
    pub fn shared(&self) -> Result<LockGuard<'_>> {
        self.take(RecordLock::Shared)
    }

    fn take(&self, how: RecordLock) -> Result<LockGuard<'_>> {
        let local = self.local.lock_unpoisoned();
        ofd_lock(&self.file, how).at(Op::Lock, &self.path)?;
        Ok(LockGuard {
            lock: self,
            _local: local,
        })
    }

    /// The token the last writer left (ours or a Go client's).
    pub fn token(&self) -> Result<Token> {
        last_writer::read(&self.file, &self.path)
    }

    /// Writes a fresh token (call with the exclusive lock held).
    pub fn touch(&self) -> Result<Token> {
        last_writer::write(&self.file, &self.path)
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = ofd_lock(&self.lock.file, RecordLock::Unlock);
    }
}

/// Files that mark work in progress by an exclusive `flock` their
/// process holds, which vanishes with it: a [`PendingFile`]'s temporary
/// file, and the `.incomplete/<id>.lock` markers that imports of earlier
/// versions made (imports no longer write a record before they finish,
/// so they need none; the markers left behind are still cleaned up).
///
/// [`PendingFile`]: crate::durable::PendingFile
pub(crate) struct ProcessMarker;

impl ProcessMarker {
    /// Removes the marker at `path` when no process holds it and
    /// `orphaned` (asked while this process holds it) agrees.
    pub fn remove_if_dead(path: &Path, orphaned: impl FnOnce() -> bool) -> bool {
        let Ok(file) = durable::open_store_file(path, Open::Write) else {
            return false;
        };
        if flock(&file, FlockOp::TryExclusive).is_err() || !orphaned() {
            return false;
        }
        std::fs::remove_file(path).is_ok()
    }

    /// Whether the work marked at `path` is still running in some process.
    pub fn is_held(path: &Path) -> bool {
        let Ok(file) = durable::open_store_file(path, Open::Write) else {
            return false;
        };
        flock(&file, FlockOp::TryExclusive).is_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_changes_on_every_touch() {
        let dir = tempfile::tempdir().unwrap();
        let lock = LockFile::open(&dir.path().join("x.lock")).unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let _g = lock.exclusive().unwrap();
            let t = lock.touch().unwrap();
            assert_eq!(lock.token().unwrap(), t);
            assert!(seen.insert(t));
        }
    }

    #[test]
    fn a_posix_lock_of_another_process_excludes_ours_and_ours_excludes_it() {
        // The lock Go takes is a POSIX record lock on the whole file,
        // which a `flock` would neither see nor block. `F_GETLK` asks the
        // kernel whether a POSIX lock of that type could be taken now
        // (open file description locks conflict with POSIX locks even
        // within one process); the Go CLI's side is in the client tests.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layers.lock");
        let lock = LockFile::open(&path).unwrap();
        let posix_conflict = |l_type: i32| {
            let probe = File::options().read(true).write(true).open(&path).unwrap();
            let mut query = libc::flock {
                l_type: l_type as libc::c_short,
                l_whence: libc::SEEK_SET as libc::c_short,
                l_start: 0,
                l_len: 0,
                l_pid: 0,
            };
            fcntl(probe.as_raw_fd(), FcntlArg::F_GETLK(&mut query)).unwrap();
            query.l_type != libc::F_UNLCK as libc::c_short
        };
        {
            let _shared = lock.shared().unwrap();
            assert!(posix_conflict(libc::F_WRLCK), "a POSIX writer must wait");
            assert!(!posix_conflict(libc::F_RDLCK), "a POSIX reader may share");
        }
        {
            let _exclusive = lock.exclusive().unwrap();
            assert!(posix_conflict(libc::F_RDLCK), "a POSIX reader must wait");
        }
        assert!(!posix_conflict(libc::F_WRLCK), "released");
    }

    #[test]
    fn a_marker_is_held_while_its_flock_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.lock");
        let marker = durable::open_store_file(&path, Open::Create).unwrap();
        flock(&marker, FlockOp::Exclusive).unwrap();
        assert!(ProcessMarker::is_held(&path));
        assert!(!ProcessMarker::remove_if_dead(&path, || true));
        drop(marker);
        assert!(!ProcessMarker::is_held(&path));
        assert!(ProcessMarker::remove_if_dead(&path, || true));
        assert!(!path.exists());
    }
}
