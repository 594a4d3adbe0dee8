//! The sweep: removes chunks no manifest references. Packs with no live
//! chunk are deleted; packs holding some garbage (above a threshold) are
//! rewritten, their live chunks moved to a new pack first. Leftovers of
//! writers that died (unpublished packs in `chunks/tmp`, index files
//! without a pack, files in `packs/` that are no pack) go too.
//!
//! A pack whose index is missing or cannot be read holds chunks the sweep
//! cannot account for: unless its chunk tables account for every byte of
//! it (it is then indexed again and swept as any pack), it is left alone,
//! counted and warned about, for `check --repair` to index again with the
//! manifests' help.
//!
//! The caller passes the set of live chunks, computed while it holds the
//! [`SweepGuard`]: no writer runs then, so every chunk a writer will
//! reference is either in a published manifest or not written yet.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use serde::Serialize;

use super::id::ChunkId;
use super::index;
use super::names::PackFile;
use super::pool::{ChunkPool, PoolWriter};
use crate::durable;
use crate::error::{IoContext, Op, Result};
use crate::flock::Flock;

/// Held by a sweep: no writer runs while it is held.
pub struct SweepGuard {
    pub(super) lock: Flock,
}

/// What a sweep removed (or, dry, would remove).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Chunks no manifest referenced (duplicates of a live chunk included).
    pub chunks_removed: u64,
    /// Their uncompressed bytes.
    pub chunk_bytes_removed: u64,
    /// Packs deleted whole.
    pub packs_removed: u64,
    /// Packs rewritten without their garbage.
    pub packs_rewritten: u64,
    /// Packs left as they were because a live chunk in them is damaged
    /// (`check` reports it).
    pub packs_damaged: u64,
    /// Packs left as they were because their index is missing or cannot
    /// be read and their chunk tables do not account for all of them
    /// (`check --repair` indexes them again).
    pub packs_unindexed: u64,
    /// Leftover files of writers that died.
    pub leftovers_removed: u64,
    /// Bytes of pack and index files freed on disk.
    pub bytes_freed: u64,
}

/// One sweep in progress over the packs.
struct PackSweep<'a> {
    guard: &'a SweepGuard,
    /// The chunks a manifest references.
    live: &'a HashSet<ChunkId>,
    /// Live chunks already kept in a pack swept before: a copy in
    /// another pack is garbage.
    kept: HashSet<ChunkId>,
    threshold: f64,
    dry_run: bool,
    report: SweepReport,
    /// Whether a pack or index was written or removed (other processes
    /// reload their tables then).
    changed: bool,
}

impl SweepReport {
    /// Adds `other`'s counts to this one's (one report for two pools).
    pub fn add(&mut self, other: &SweepReport) {
        self.chunks_removed += other.chunks_removed;
        self.chunk_bytes_removed += other.chunk_bytes_removed;
        self.packs_removed += other.packs_removed;
        self.packs_rewritten += other.packs_rewritten;
        self.packs_damaged += other.packs_damaged;
        self.packs_unindexed += other.packs_unindexed;
        self.leftovers_removed += other.leftovers_removed;
        self.bytes_freed += other.bytes_freed;
    }
}

impl ChunkPool {
    /// Waits for running writers to finish and keeps new ones out until
    /// the guard is dropped.
    pub fn sweep_guard(&self) -> Result<SweepGuard> {
        let intent = Flock::exclusive(&self.sweep_intent_path())?;
        let lock = Flock::exclusive(&self.sweep_lock_path())?;
        drop(intent);
        Ok(SweepGuard { lock })
    }

    /// Removes every chunk not in `live`. A pack whose garbage is more
    /// than `threshold` (a fraction of its chunk bytes; 0 means any) is
    /// rewritten; one with no live chunk is deleted.
    pub fn sweep(
        &self,
        guard: &SweepGuard,
        live: &HashSet<ChunkId>,
        threshold: f64,
        dry_run: bool,
    ) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        if !dry_run {
            self.reload()?;
        }
        let stems = self.sweep_leftovers(&mut report, dry_run)?;
        let mut sweep = PackSweep {
            guard,
            live,
            kept: HashSet::new(),
            threshold,
            dry_run,
            report,
            changed: false,
        };
        for stem in stems {
            self.sweep_pack(&mut sweep, &stem)?;
        }
        if !dry_run {
            durable::fsync_dir(&self.packs_dir)?;
            if sweep.changed {
                guard.lock.touch()?;
                self.reload()?;
            }
        }
        Ok(sweep.report)
    }

    /// Removes what writes that died left (temporary files, packs being
    /// written, an index whose pack is gone); returns the stems of the
    /// packs to sweep, with an index or without.
    fn sweep_leftovers(&self, report: &mut SweepReport, dry_run: bool) -> Result<Vec<String>> {
        let mut stems = Vec::new();
        let mut packs = HashSet::new();
        let mut indexes = HashSet::new();
        for entry in fs::read_dir(&self.packs_dir).at(Op::ReadDir, &self.packs_dir)? {
            let entry = entry.at(Op::ReadDir, &self.packs_dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match PackFile::of(&name) {
                PackFile::Temporary => {
                    report.leftovers_removed += 1;
                    report.bytes_freed += remove(&entry.path(), dry_run);
                }
                PackFile::Pack(stem) => {
                    packs.insert(stem.to_string());
                }
                PackFile::Index(stem) => {
                    indexes.insert(stem.to_string());
                    stems.push(stem.to_string());
                }
                PackFile::Other => {}
            }
        }
        // An index whose pack is gone: nothing can use it.
        for stem in indexes.difference(&packs) {
            let path = self.index_path(stem);
            report.leftovers_removed += 1;
            report.bytes_freed += remove(&path, dry_run);
        }
        if let Ok(dir) = fs::read_dir(&self.tmp_dir) {
            for entry in dir.flatten() {
                report.leftovers_removed += 1;
                report.bytes_freed += remove(&entry.path(), dry_run);
            }
        }
        // Packs without an index (an import killed before it wrote it, or
        // a lost index) are swept too once indexed again.
        stems.extend(packs.difference(&indexes).cloned());
        stems.retain(|s| packs.contains(s));
        stems.sort();
        Ok(stems)
    }

    /// Sweeps pack `stem`: its live chunks (each kept in one pack only)
    /// stay, its garbage goes if there is enough of it.
    fn sweep_pack(&self, sweep: &mut PackSweep<'_>, stem: &str) -> Result<()> {
        let (dry_run, report) = (sweep.dry_run, &mut sweep.report);
        let idx_path = self.index_path(stem);
        let pack_path = self.pack_path(stem);
        let decoded = match fs::read(&idx_path) {
            Ok(bytes) => index::decode(&idx_path, &bytes),
            Err(e) => Err(e).at(Op::Read, &idx_path),
        };
        let entries = match decoded {
            Ok(entries) => entries,
            Err(damage) => match self.sweep_unindexed(sweep.guard, stem, &damage, dry_run)? {
                Fate::Indexed(entries) => {
                    sweep.changed = true;
                    entries
                }
                Fate::NoPack => {
                    report.leftovers_removed += 1;
                    report.bytes_freed += remove(&idx_path, dry_run);
                    report.bytes_freed += remove(&pack_path, dry_run);
                    return Ok(());
                }
                Fate::Unaccounted => {
                    report.packs_unindexed += 1;
                    return Ok(());
                }
            },
        };
        let (mut keep, mut garbage) = (Vec::new(), Vec::new());
        for e in entries {
            if sweep.live.contains(&e.id) && sweep.kept.insert(e.id) {
                keep.push(e);
            } else {
                garbage.push(e);
            }
        }
        if garbage.is_empty() {
            return Ok(());
        }
        let garbage_bytes: u64 = garbage.iter().map(|e| e.len as u64).sum();
        let keep_bytes: u64 = keep.iter().map(|e| e.len as u64).sum();
        let share = garbage_bytes as f64 / (garbage_bytes + keep_bytes).max(1) as f64;
        if !keep.is_empty() && share <= sweep.threshold {
            return Ok(());
        }
        let on_disk = file_len(&idx_path) + file_len(&pack_path);
        // The pack's own order: chunks of one file stay together in a
        // frame, which is what makes the frames compress well.
        keep.sort_by_key(|e| (e.frame_offset, e.offset));
        if !keep.is_empty() {
            if dry_run {
                report.bytes_freed += (on_disk as f64 * share) as u64;
            } else {
                match self.rewrite(&keep.iter().map(|e| e.id).collect::<Vec<_>>()) {
                    Ok(written) => {
                        report.bytes_freed += on_disk.saturating_sub(written);
                    }
                    Err(crate::Error::Chunk { .. }) => {
                        // A live chunk does not read back: keep the pack
                        // (and its garbage) for `check` to report.
                        report.packs_damaged += 1;
                        for e in &keep {
                            sweep.kept.remove(&e.id);
                        }
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            }
            report.packs_rewritten += 1;
        } else {
            report.bytes_freed += on_disk;
            report.packs_removed += 1;
        }
        report.chunks_removed += garbage.len() as u64;
        report.chunk_bytes_removed += garbage_bytes;
        if !dry_run {
            // The index first: once it is gone nothing looks in the pack.
            durable::remove_file(&idx_path)?;
            durable::remove_file(&pack_path)?;
            sweep.changed = true;
        }
        Ok(())
    }

    /// What to do with pack `stem`, whose index cannot be read (`damage`
    /// says why): index it again from its chunk tables when they account
    /// for every byte of it (not when `dry_run`: the entries are only
    /// returned then); otherwise leave it alone.
    fn sweep_unindexed(
        &self,
        guard: &SweepGuard,
        stem: &str,
        damage: &crate::Error,
        dry_run: bool,
    ) -> Result<Fate> {
        let scan = match self.scan_pack(stem, None) {
            Ok(Some(scan)) => Ok(scan),
            // Not a pack at all: nothing in it can be read.
            Ok(None) => return Ok(Fate::NoPack),
            Err(e) => Err(e),
        };
        let unaccounted = match &scan {
            Ok(scan) if scan.lost.is_empty() => None,
            Ok(_) => Some("its chunk tables do not account for all of it".to_string()),
            Err(e) => Some(e.to_string()),
        };
        // No index at all: most likely an import killed before it wrote it.
        let missing = matches!(damage, crate::Error::Io { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound);
        let why = if missing {
            "has no index".to_string()
        } else {
            format!("has an index that cannot be read ({damage})")
        };
        if let Some(unaccounted) = unaccounted {
            tracing::warn!(
                "pack {stem} {why}, and {unaccounted}: left as it is (`check --repair` indexes it again)"
            );
            return Ok(Fate::Unaccounted);
        }
        let scan = scan?;
        if !dry_run {
            if missing {
                tracing::debug!("pack {stem} {why}: indexed again from its chunk tables");
            } else {
                tracing::warn!("pack {stem} {why}: indexed again from its chunk tables");
            }
            self.reindex(guard, stem, &scan)?;
        }
        Ok(Fate::Indexed(scan.entries))
    }

    /// Copies chunks `ids` into new packs; returns the bytes written.
    fn rewrite(&self, ids: &[ChunkId]) -> Result<u64> {
        let mut reader = self.reader();
        let mut writer = PoolWriter::new(self, true)?;
        for id in ids {
            let data = reader.read(id)?;
            writer.add(data)?;
        }
        Ok(writer.finish()?.stored_bytes)
    }
}

/// What the sweep does with a pack whose index cannot be read.
enum Fate {
    /// Its chunk tables account for all of it: swept with these entries.
    Indexed(Vec<super::index::IndexEntry>),
    /// It is not a pack: removed.
    NoPack,
    /// Left alone.
    Unaccounted,
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Removes a file or directory (unless `dry_run`); returns its size.
fn remove(path: &Path, dry_run: bool) -> u64 {
    let len = file_len(path);
    if !dry_run {
        let _ = fs::remove_file(path).or_else(|_| fs::remove_dir_all(path));
    }
    len
}
