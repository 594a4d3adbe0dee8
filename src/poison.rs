//! The one policy for poisoned locks: the next holder takes the data over
//! and goes on.
//!
//! A `Mutex` or `RwLock` is poisoned when a thread panicked while holding
//! it. A panic is a bug, reported where it happened (a rayon pool or a
//! joined thread passes it on); the threads beside it must not turn it
//! into more panics. Taking the data over is safe here because every lock
//! of the crate guards a state that is usable whatever step an update
//! stopped at:
//!
//! - the pool's chunk table (`chunks/pool.rs`): an index loaded in part
//!   leaves chunks missing, which reads report as missing, and every
//!   chunk read is checked against its BLAKE3, so no wrong byte gets out;
//!   its maps, spare frames and config damage are caches and a note;
//! - the object cache's shard listings (`materialize/objects.rs`): hints,
//!   checked against the directory when used;
//! - the jail's open directories (`materialize/jail.rs`): a cache of
//!   descriptors, each valid on its own;
//! - the records cache (`store/records.rs`), replaced whole, and the
//!   in-process lock beside each lock file (`store/lock.rs`), which holds
//!   no data.
//!
//! A new lock guards such a state too, or says why not and picks another
//! way; every lock is taken through [`Unpoisoned`].

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Takes a `Mutex` whatever a panicking holder left (see the module
/// documentation).
pub(crate) trait Unpoisoned<T> {
    /// Locks, taking over a poisoned lock.
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T> Unpoisoned<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// [`Unpoisoned`] for the two sides of a `RwLock`.
pub(crate) trait UnpoisonedRw<T> {
    /// Shared access, taking over a poisoned lock.
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T>;
    /// Exclusive access, taking over a poisoned lock.
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> UnpoisonedRw<T> for RwLock<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_taken_over() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let rw = std::sync::Arc::new(RwLock::new(2));
        let (m2, rw2) = (m.clone(), rw.clone());
        let _ = std::thread::spawn(move || {
            let _a = m2.lock().unwrap();
            let _b = rw2.write().unwrap();
            panic!("poisons both");
        })
        .join();
        assert!(m.is_poisoned() && rw.is_poisoned());
        *m.lock_unpoisoned() += 1;
        *rw.write_unpoisoned() += 1;
        assert_eq!((*m.lock_unpoisoned(), *rw.read_unpoisoned()), (2, 3));
    }
}
