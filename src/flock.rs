//! Whole-file `flock(2)` guards that coordinate work across processes
//! (imports against the pool sweep, builders against the object sweep).
//!
//! Every guard opens the file anew, so each holds its own lock: two
//! threads of one process can share a lock, and a shared holder blocks an
//! exclusive one in the same process as it would in another.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::durable::{self, Open};
use crate::error::{IoContext, Op, Result};
use crate::sys::{self, FlockOp};

/// A held lock; released when dropped.
pub(crate) struct Flock {
    path: PathBuf,
    file: File,
}

impl Flock {
    /// Waits for a shared lock on `path` (created when missing, never
    /// opened through a symbolic link).
    pub fn shared(path: &Path) -> Result<Flock> {
        Flock::take(path, FlockOp::Shared)
    }

    /// Waits for an exclusive lock on `path` (created when missing).
    pub fn exclusive(path: &Path) -> Result<Flock> {
        Flock::take(path, FlockOp::Exclusive)
    }

    /// Takes an exclusive lock on `path` (created when missing) if nobody
    /// holds a lock on it; `None` when somebody does.
    pub fn try_exclusive(path: &Path) -> Result<Option<Flock>> {
        match Flock::take(path, FlockOp::TryExclusive) {
            Ok(lock) => Ok(Some(lock)),
            Err(crate::Error::Io { source, .. })
                if source.raw_os_error() == Some(libc::EWOULDBLOCK) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn take(path: &Path, how: FlockOp) -> Result<Flock> {
        let file = durable::open_store_file(path, Open::Lock)?;
        sys::flock(&file, how).at(Op::Lock, path)?;
        Ok(Flock {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The token the last exclusive holder wrote ("" when none did).
    pub fn token(&self) -> Result<String> {
        read_token(&self.file, &self.path)
    }

    /// Writes a fresh token, telling later holders that something changed
    /// (call with the exclusive lock), and `fsync`s it.
    pub fn touch(&self) -> Result<()> {
        write_token(&self.file, &self.path)?;
        self.file.sync_all().at(Op::Fsync, &self.path)
    }
}

/// The token in lock file `file` (at `path`): what the last writer left
/// ("" when none did).
pub(crate) fn read_token(mut file: &File, path: &Path) -> Result<String> {
    file.seek(SeekFrom::Start(0)).at(Op::Seek, path)?;
    // Go writes 64 binary bytes: the token is opaque, any bytes are taken.
    let mut token = Vec::new();
    file.read_to_end(&mut token).at(Op::Read, path)?;
    Ok(token.iter().map(|b| format!("{b:02x}")).collect())
}

/// Replaces the token in lock file `file` (at `path`) with a fresh one,
/// which it returns (call with the exclusive lock held).
pub(crate) fn write_token(mut file: &File, path: &Path) -> Result<String> {
    let token = durable::random_hex(16);
    file.set_len(0).at(Op::Truncate, path)?;
    file.seek(SeekFrom::Start(0)).at(Op::Seek, path)?;
    file.write_all(token.as_bytes()).at(Op::Write, path)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_coexist_and_exclude_an_exclusive_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let a = Flock::shared(&path).unwrap();
        let b = Flock::shared(&path).unwrap();
        let p = path.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let g = Flock::exclusive(&p).unwrap();
            g.touch().unwrap();
            tx.send(()).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            rx.try_recv().is_err(),
            "exclusive lock taken under shared ones"
        );
        drop((a, b));
        rx.recv().unwrap();
        t.join().unwrap();
        assert_eq!(Flock::shared(&path).unwrap().token().unwrap().len(), 32);
    }
}
