//! Lock files with upstream's "last writer" token.
//!
//! Each record file has a lock file beside it. Writers hold an exclusive
//! `flock` and, before releasing it, write a fresh random token into the
//! lock file; readers hold a shared `flock` and compare the token with the
//! one they last saw to know whether to reload. An in-process mutex guards
//! against threads of one process sharing the open file description.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::durable::{self, Open};
use crate::error::{IoContext, Op, Result};
use crate::flock::{read_token, write_token};
use crate::poison::Unpoisoned;
use crate::sys::{flock, FlockOp};

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

    /// Takes the lock exclusively (for writing).
    pub fn exclusive(&self) -> Result<LockGuard<'_>> {
        self.take(FlockOp::Exclusive)
    }

    /// Takes the lock shared (for reading).
    pub fn shared(&self) -> Result<LockGuard<'_>> {
        self.take(FlockOp::Shared)
    }

    fn take(&self, how: FlockOp) -> Result<LockGuard<'_>> {
        let local = self.local.lock_unpoisoned();
        flock(&self.file, how).at(Op::Lock, &self.path)?;
        Ok(LockGuard {
            lock: self,
            _local: local,
        })
    }

    /// The token the last writer left.
    pub fn token(&self) -> Result<String> {
        read_token(&self.file, &self.path)
    }

    /// Writes a fresh token (call with the exclusive lock held).
    pub fn touch(&self) -> Result<String> {
        write_token(&self.file, &self.path)
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = flock(&self.lock.file, FlockOp::Unlock);
    }
}

/// An exclusive, non-blocking lock on a file that marks work in progress
/// (an import); it vanishes with the process that holds it.
pub(crate) struct ProcessMarker {
    path: PathBuf,
    _file: File,
}

impl ProcessMarker {
    /// Creates and locks the marker at `path`. Since a dead marker may be
    /// unlinked by another process at any time, the lock only counts when
    /// the locked file is still the one at `path`.
    pub fn acquire(path: &Path) -> Result<ProcessMarker> {
        use std::os::unix::fs::MetadataExt;
        loop {
            let file = durable::open_store_file(path, Open::Create)?;
            flock(&file, FlockOp::Exclusive).at(Op::Lock, path)?;
            let locked = file.metadata().at(Op::Stat, path)?;
            match std::fs::metadata(path) {
                Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => {
                    return Ok(ProcessMarker {
                        path: path.to_path_buf(),
                        _file: file,
                    })
                }
                _ => continue,
            }
        }
    }

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

    /// Removes the marker (the work is done).
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
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
    fn a_marker_is_held_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.lock");
        let marker = ProcessMarker::acquire(&path).unwrap();
        assert!(ProcessMarker::is_held(&path));
        marker.release();
        assert!(!ProcessMarker::is_held(&path));
    }
}
