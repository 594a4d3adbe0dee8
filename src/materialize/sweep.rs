//! The object sweep: removes file objects no materialized directory
//! needs, and what builders that died left behind.
//!
//! A content object is kept while a materialized layer has a file with
//! that content (it is the source the next build reflinks or copies from,
//! which is what makes building a sibling image cheap). A hardlink object
//! is kept while a materialized file links to it.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use super::objects::{self, content_key, lock_path};
use crate::error::{IoContext, Op, Result};
use crate::flock::Flock;
use crate::manifest::{EntryKind, LayerManifest};

/// Held by the sweep: no build runs while it is held.
pub struct BuildersGuard {
    _lock: Flock,
}

/// Waits for running builds to finish and keeps new ones out until the
/// guard is dropped.
pub fn builders_guard(objects_dir: &Path) -> Result<BuildersGuard> {
    crate::durable::create_dir_all(objects_dir)?;
    Ok(BuildersGuard {
        _lock: Flock::exclusive(&lock_path(objects_dir))?,
    })
}

/// The content keys of the regular files of `manifests`.
pub fn wanted_objects<'a>(
    manifests: impl IntoIterator<Item = &'a LayerManifest>,
) -> HashSet<String> {
    let mut keys = HashSet::new();
    for m in manifests {
        for e in &m.entries {
            if e.kind == EntryKind::File && !e.chunks.is_empty() {
                keys.insert(content_key(e));
            }
        }
    }
    keys
}

/// What the object sweep removed (or, dry, would remove).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ObjectSweep {
    /// Objects removed.
    pub objects: u64,
    /// Their allocated bytes (for hardlink objects, only those no other
    /// name kept).
    pub bytes: u64,
}

/// Removes objects under `objects_dir` whose content key is not in
/// `wanted` (content objects) or that nothing links to (hardlink objects),
/// and the named temporary files of builders that died. Call it with the
/// [`BuildersGuard`] held.
pub fn sweep_objects(
    _guard: &BuildersGuard,
    objects_dir: &Path,
    wanted: &HashSet<String>,
    dry_run: bool,
) -> Result<ObjectSweep> {
    let mut swept = ObjectSweep::default();
    for_each_object(objects_dir, |shard, entry, meta| {
        let object = entry.file_name().to_string_lossy().into_owned();
        let keep = shard != objects::TMP
            && match object.split_once('-') {
                Some(_) => meta.nlink() > 1,
                None => wanted.contains(&object),
            };
        if keep {
            return Ok(());
        }
        swept.objects += 1;
        if meta.nlink() == 1 {
            swept.bytes += meta.blocks() * 512;
        }
        if !dry_run {
            let p = entry.path();
            fs::remove_file(&p).at(Op::Remove, &p)?;
        }
        Ok(())
    })?;
    Ok(swept)
}

/// Removes every object whose inode changed at or after `since` (seconds
/// since the epoch): objects a build may have written before the machine
/// went down. Named files of builders at work (`objects/tmp/`) are left.
pub fn purge_objects_since(objects_dir: &Path, since: i64) -> Result<()> {
    for_each_object(objects_dir, |shard, entry, meta| {
        if shard != objects::TMP && meta.ctime() >= since {
            crate::durable::remove_file(&entry.path())?;
        }
        Ok(())
    })
}

/// Calls `f` with the shard name, entry and metadata of every file under
/// the shard directories of `objects_dir` (`<ab>/` and `tmp/`).
fn for_each_object(
    objects_dir: &Path,
    mut f: impl FnMut(&str, &fs::DirEntry, &fs::Metadata) -> Result<()>,
) -> Result<()> {
    let Ok(dir) = fs::read_dir(objects_dir) else {
        return Ok(());
    };
    for shard in dir.flatten() {
        if !shard.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = shard.file_name().to_string_lossy().into_owned();
        let path = shard.path();
        for entry in fs::read_dir(&path).at(Op::ReadDir, &path)?.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            f(&name, &entry, &meta)?;
        }
    }
    Ok(())
}
