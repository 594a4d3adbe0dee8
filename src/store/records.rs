//! A JSON record file (`layers.json`, `images.json`, ...) with its lock.
//!
//! Reads take the shared lock and reuse the cached records while the lock
//! token is unchanged (a Go client's write leaves a new token too, see
//! [`crate::last_writer`]); writes take the exclusive lock, reload, apply
//! the change, replace the file atomically and leave a fresh token. A file that
//! does not parse, or holds a record whose ID is not a valid ID, is an
//! error naming it, and is never overwritten.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ids::validate_id;
use super::item::Item;
use super::lock::{LockFile, LockGuard};
use super::mounts::MountPoint;
use crate::durable::{self, Flush, Open, PendingFile};
use crate::error::{Error, IoContext, Op, Result};
use crate::last_writer::Token;
use crate::poison::Unpoisoned;

/// A record kept in a record file. Its ID names files and directories
/// under the store (`<records dir>/<id>`, `manifests/<id>`, ...), so an ID
/// read from disk is checked as one given by a caller is: a hostile
/// `../..` or absolute path must not make a delete remove what it points
/// at.
pub(crate) trait Record: Sized {
    fn record_id(&self) -> &str;
    /// See [`Item::derive_all`].
    fn derive(_records: &mut [Self], _records_dir: &Path) {}
}

impl<T: Item> Record for T {
    fn record_id(&self) -> &str {
        self.id()
    }
    fn derive(records: &mut [Self], records_dir: &Path) {
        T::derive_all(records, records_dir)
    }
}

impl Record for MountPoint {
    fn record_id(&self) -> &str {
        &self.id
    }
}

/// What [`RecordFile::reserve`] allocates beyond the file's current size:
/// a change adds a record of a few hundred bytes, and other processes may
/// add some before the reserved write.
const RESERVE_SLACK: u64 = 16 << 10;

/// One record file and its lock.
pub(crate) struct RecordFile<T> {
    path: PathBuf,
    lock: LockFile,
    /// The records as last loaded, with the lock's token then: reused
    /// while the token is the same (no writer, ours or a Go client's,
    /// came in between).
    cache: Mutex<Option<(Token, Vec<T>)>>,
}

impl<T: Serialize + DeserializeOwned + Clone + Record> RecordFile<T> {
    /// Opens `dir/<name>.json` with `dir/<lock_name>`.
    pub fn open(dir: &Path, name: &str, lock_name: &str) -> Result<RecordFile<T>> {
        Ok(RecordFile {
            path: dir.join(name),
            lock: LockFile::open(&dir.join(lock_name))?,
            cache: Mutex::new(None),
        })
    }

    /// `dir/<name>` with a lock opened by the caller (a read-only
    /// store's, see `store/ro_stores.rs`).
    pub fn with_lock(dir: &Path, name: &str, lock: LockFile) -> RecordFile<T> {
        RecordFile {
            path: dir.join(name),
            lock,
            cache: Mutex::new(None),
        }
    }

    /// The current records.
    pub fn read(&self) -> Result<Vec<T>> {
        let _guard = self.lock.shared()?;
        self.load()
    }

    /// The records as the file holds them now, without taking the lock
    /// (the file is only ever replaced whole, so this is a consistent
    /// snapshot); for a caller that holds another lock under which the
    /// change it cares about is made.
    pub fn peek(&self) -> Result<Vec<T>> {
        let mut records = self.parse()?;
        T::derive(&mut records, self.records_dir());
        Ok(records)
    }

    fn load(&self) -> Result<Vec<T>> {
        let token = self.lock.token()?;
        let mut cache = self.cache.lock_unpoisoned();
        if let Some((seen, records)) = cache.as_ref() {
            if *seen == token && !token.is_unset() {
                let mut records = records.clone();
                T::derive(&mut records, self.records_dir());
                return Ok(records);
            }
        }
        let mut records = self.parse()?;
        *cache = Some((token, records.clone()));
        T::derive(&mut records, self.records_dir());
        Ok(records)
    }

    fn records_dir(&self) -> &Path {
        self.path.parent().expect("a record file has a directory")
    }

    fn parse(&self) -> Result<Vec<T>> {
        let corrupt = |what: String| Error::Corrupt {
            path: self.path.clone(),
            what,
        };
        // Never through a symbolic link: records are what the store
        // trusts, and the next save would not go there either.
        let mut file = match durable::open_store_file(&self.path, Open::Read) {
            Ok(file) => file,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).at(Op::Read, &self.path)?;
        let records: Vec<T> = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("records do not parse: {e}")))?;
        for (n, record) in records.iter().enumerate() {
            validate_id(record.record_id())
                .map_err(|e| corrupt(format!("record {n} has an unusable ID: {e}")))?;
        }
        Ok(records)
    }

    /// Applies `change` to the current records under the exclusive lock and
    /// writes them back when it succeeds (and returned `changed = true`).
    pub fn modify<R>(&self, change: impl FnOnce(&mut Vec<T>) -> Result<(R, bool)>) -> Result<R> {
        let mut locked = self.lock()?;
        let (result, changed) = change(&mut locked.records)?;
        if changed {
            locked.save()?;
        }
        Ok(result)
    }

    /// Room for the record file's next version, allocated now: the
    /// current size and [`RESERVE_SLACK`] more. For a change that must not
    /// fail for want of space once earlier steps are done; see
    /// [`Locked::save_reserved`].
    pub fn reserve(&self) -> Result<PendingFile> {
        // Made under the lock, which `gc` holds while it removes the
        // temporary files of dead writers: it finds this one locked.
        let _guard = self.lock.exclusive()?;
        let len = fs::metadata(&self.path).map_or(0, |m| m.len());
        PendingFile::create(&self.path, len + RESERVE_SLACK)
    }

    /// Room for `len` bytes of another file beside the records (`target`,
    /// such as a layer's tar-split), made under the lock as [`reserve`]'s
    /// is, so that `gc` finds it locked.
    ///
    /// [`reserve`]: Self::reserve
    pub fn reserve_beside(&self, target: &Path, len: u64) -> Result<PendingFile> {
        let _guard = self.lock.exclusive()?;
        PendingFile::create(target, len)
    }

    /// Takes the exclusive lock and loads the records, for changes that
    /// span several record files.
    pub fn lock(&self) -> Result<Locked<'_, T>> {
        let guard = self.lock.exclusive()?;
        let records = self.load()?;
        Ok(Locked {
            file: self,
            _guard: guard,
            records,
        })
    }
}

/// Records loaded under the exclusive lock; released on drop.
pub(crate) struct Locked<'a, T> {
    file: &'a RecordFile<T>,
    _guard: LockGuard<'a>,
    /// The records; change them, then [`Locked::save`].
    pub records: Vec<T>,
}

impl<T: Serialize + DeserializeOwned + Clone + Record> Locked<'_, T> {
    /// Replaces the record file atomically and leaves a fresh token.
    pub fn save(&mut self) -> Result<()> {
        self.save_into(None)
    }

    /// [`Locked::save`] into room taken by [`RecordFile::reserve`].
    pub fn save_reserved(&mut self, room: PendingFile) -> Result<()> {
        self.save_into(Some(room))
    }

    /// [`Locked::save`] into room reserved earlier, if any.
    fn save_into(&mut self, room: Option<PendingFile>) -> Result<()> {
        let file = self.file;
        let json = serde_json::to_vec(&self.records).expect("records serialize");
        let room = match room {
            Some(room) => room,
            None => PendingFile::create(&file.path, 0)?,
        };
        room.commit(&json, Flush::Now)?;
        let token = file.lock.touch()?;
        *file.cache.lock_unpoisoned() = Some((token, self.records.clone()));
        Ok(())
    }
}
