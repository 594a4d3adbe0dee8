//! The graph root without the mounts on top of it.
//!
//! Go's overlay driver bind-mounts its home (`overlay/`) on itself and
//! leaves it mounted. A link or rename between `overlay/` and `objects/`
//! then crosses mounts (`EXDEV`), though both are one filesystem, and a
//! layer directory could not share its files with the object cache.
//! Writes that link into layer directories therefore go through a
//! detached copy of the graph root's mount without that bind mount
//! ([`crate::sys::clone_mount`]): under `/proc/self/fd/<fd>/` the same
//! directories sit on one mount, for every thread of the process.
//!
//! The copy is used only when the driver's home is a mount point whose
//! directory is the one it covers (a bind mount of itself, checked by
//! device and inode); anything else mounted there is not the store's
//! directory, and paths are left as they are. Without the privilege to
//! copy a mount, they are left as they are too: files are then copied,
//! not linked.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::host_mounts;
use super::Store;
use crate::sys;

/// Paths under the graph root, seen without the driver's bind mount when
/// it has one.
pub(crate) struct RootView {
    graph: PathBuf,
    clone: Option<OwnedFd>,
}

impl RootView {
    /// Where `path` (under the graph root) is reached on the graph root's
    /// own mount; `path` itself when there is no copy or it lies
    /// elsewhere.
    pub fn path(&self, path: &Path) -> PathBuf {
        match (&self.clone, path.strip_prefix(&self.graph)) {
            (Some(fd), Ok(rel)) => {
                PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(rel)
            }
            _ => path.to_path_buf(),
        }
    }
}

impl Store {
    /// The graph root as [`RootView`] sees it: a copy of its mount when
    /// the driver's home is bind-mounted on itself.
    pub(crate) fn root_view(&self) -> RootView {
        let graph = self.graph_root().to_path_buf();
        let home = self.driver_dir();
        let clone = fs::canonicalize(&home)
            .ok()
            .filter(|home| host_mounts::is_mount_point(home))
            .and_then(|_| sys::clone_mount(&graph).ok())
            .filter(|fd| {
                let name = self.options.driver.as_str();
                let seen = Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())).join(name);
                let same =
                    |a: &fs::Metadata, b: &fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
                matches!((fs::metadata(&seen), fs::metadata(&home)), (Ok(a), Ok(b)) if same(&a, &b))
            });
        RootView { graph, clone }
    }
}
