//! `gc`: removes what no record references.

use std::time::Duration;

use serde::Serialize;

use super::Store;
use crate::error::Result;

/// Which materialized directories `gc` evicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evict {
    /// As `storage.conf` says (`materialized_evict_after`); never if unset.
    Policy,
    /// Every sealed layer's directory that no mount uses.
    All,
    /// None.
    Never,
    /// Those no mount has used for this long.
    After(Duration),
}

/// How `gc` runs.
#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// Report, remove nothing.
    pub dry_run: bool,
    /// Which materialized directories to evict.
    pub evict: Evict,
}

/// What `gc` removed (or, with `dry_run`, would remove).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// Bytes freed in all (allocated blocks where known).
    pub freed_bytes: u64,
}

impl Store {
    /// Removes what no record references.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        let _ = options;
        Ok(GcReport::default())
    }
}
