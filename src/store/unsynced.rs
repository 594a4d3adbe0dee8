//! Overlay directories of sealed layers are caches of the pool, and they
//! are built without waiting for the disk: a `syncfs` at the end of a build
//! writes back every file the build made and costs more than the build.
//! What keeps them safe is a marker, `<drv>/.unsynced/<id>-<random>`,
//! holding the boot ID. It is durable before the build writes anything,
//! and its builder holds it locked until the build ends. On a filesystem
//! that journals metadata in order (ext4, XFS, btrfs) the marker is made
//! without an `fsync`: an `fsync` there commits everything pending (the
//! previous build too), and anything the build writes after the marker is
//! on disk only once the marker is. A marker whose content did not reach
//! the disk reads as another boot's.
//!
//! Before a mount uses or builds directories, and in `gc`, the markers are
//! settled, under `<drv>/.unsynced/.lock`:
//!
//! - A marker from another boot means the build may not have reached the
//!   disk before the machine went down. Its directory is removed (the next
//!   mount builds it again). So is every object whose inode changed since
//!   the marker was made (its ctime is not older), since the build may
//!   have written it.
//! - A marker of this boot that no builder holds is removed after one
//!   `syncfs` has made its build durable. A mount does this once its
//!   markers are older than the kernel's writeback delay (the `syncfs`
//!   then finds little left to write); `gc` does it for all of them.

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::layout;
use super::Store;
use crate::durable::{self, Flush, PendingFile};
use crate::error::{IoContext, Op, Result};
use crate::flock::Flock;
use crate::materialize;
use crate::sys::{self, FlockOp};

/// How old a marker must be before a mount settles it: the kernel writes
/// dirty data back after 30 s by default, checking every 5 s.
const WRITEBACK_DELAY: Duration = Duration::from_secs(35);

/// A marker held by a build in progress; the build's directory may be
/// used once it returns, and is known durable once the marker is settled.
pub(crate) struct Unsynced {
    _file: File,
}

/// This boot's ID, if the kernel tells it.
fn boot_id() -> Option<String> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// `<id>-<random>` -> `<id>`, for names a builder made.
fn marker_layer(name: &str) -> Option<&str> {
    let (id, random) = name.split_once('-')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 64) && hex(random, 16)).then_some(id)
}

impl Store {
    fn unsynced_dir(&self) -> PathBuf {
        layout::side_dir(self.graph_root(), &self.options.driver, layout::UNSYNCED)
    }

    /// Starts a build of layer `id`'s directory that need not be durable
    /// when it returns: the marker is on disk and locked before this
    /// returns. `None` where the boot ID is unknown (build durably then).
    pub(crate) fn begin_unsynced(&self, id: &str) -> Result<Option<Unsynced>> {
        let Some(boot) = boot_id() else {
            return Ok(None);
        };
        let dir = self.unsynced_dir();
        durable::create_dir_all(&dir)?;
        let path = dir.join(format!("{id}-{}", durable::random_hex(8)));
        // Locked before it has its name, so that no settle can take it
        // for a finished build.
        let flush = match durable::orders_metadata(&dir) {
            true => Flush::Later,
            false => Flush::Now,
        };
        let file = PendingFile::create(&path, 0)?.commit_held(boot.as_bytes(), flush)?;
        Ok(Some(Unsynced { _file: file }))
    }

    /// Settles the markers (see the module documentation): all of them
    /// with `all`, else those older than the writeback delay.
    pub(crate) fn settle_unsynced(&self, all: bool) -> Result<()> {
        let dir = self.unsynced_dir();
        let listed = |dir: &Path| -> Vec<String> {
            fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| marker_layer(n).is_some())
                .collect()
        };
        if listed(&dir).is_empty() {
            return Ok(());
        }
        let _settling = Flock::exclusive(&dir.join(".lock"))?;
        let boot = boot_id().unwrap_or_default();
        let now = SystemTime::now();
        // (marker, its lock, layer, when it was made)
        let mut lost = Vec::new();
        let mut settled = Vec::new();
        for name in listed(&dir) {
            let path = dir.join(&name);
            let Ok(mut file) = File::open(&path) else {
                continue;
            };
            if sys::flock(&file, FlockOp::TryExclusive).is_err() {
                continue; // its build is running
            }
            let mut written = String::new();
            let _ = file.read_to_string(&mut written);
            let made = file.metadata().at(Op::Stat, &path)?;
            let id = marker_layer(&name).expect("listed names parse").to_string();
            if written.trim() != boot {
                lost.push((path, file, id, made.ctime()));
            } else {
                let age = made
                    .modified()
                    .ok()
                    .and_then(|t| now.duration_since(t).ok());
                if all || age.is_some_and(|age| age >= WRITEBACK_DELAY) {
                    settled.push(path);
                }
            }
        }
        if lost.is_empty() && settled.is_empty() {
            return Ok(());
        }
        for (_, _, id, _) in &lost {
            for built in [layout::DIFF, layout::MAPPED_BELOW] {
                let diff = self.driver_dir().join(id).join(built);
                if diff.is_dir() {
                    durable::remove_dir_aside(&diff)?;
                }
            }
            // Written after the build, it may have lost its content; the
            // next mount gives the layer a new short link.
            if let Ok(short) = self.short_link(id) {
                durable::remove_file(&self.driver_dir().join(layout::SHORT_LINKS).join(short))?;
            }
            durable::remove_file(&self.driver_dir().join(id).join(layout::LINK))?;
        }
        if let Some(since) = lost.iter().map(|(_, _, _, ctime)| *ctime).min() {
            materialize::purge_objects_since(&layout::objects_dir(self.graph_root()), since)?;
        }
        let dir_file = File::open(&dir).at(Op::Open, &dir)?;
        nix::unistd::syncfs(dir_file.as_raw_fd()).at(Op::Syncfs, &dir)?;
        for path in lost.iter().map(|(path, ..)| path).chain(&settled) {
            durable::remove_file(path)?;
        }
        durable::fsync_dir(&dir)
    }
}
