//! ID shifting at mount time, as upstream's overlay driver does it where
//! the kernel mounts overlayfs over idmapped lower layers (as root):
//! a container that maps IDs goes on its image's top layer as it is, its
//! layer's record has no maps, and mounting the container shows every
//! layer below its own through an idmapped mount with the container's
//! maps (upstream's `SupportsShifting`, `canUseShifting`). The upper
//! directory is not shifted: what the container writes is stored with
//! host IDs. Where the kernel cannot shift, a container that maps IDs
//! otherwise than its image's top layer gets a mapped copy of it
//! (`mapped_layers.rs`).
//!
//! Whether the kernel can is found once, by mounting overlayfs over an
//! idmapped directory, and kept where upstream keeps it
//! (`kernel_features.rs`): `<runroot>/overlay/idmapped-lower-dir-true`
//! (or `-false`).

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::id_maps::IdMap;
use super::Store;
use crate::error::{IoContext, Op, Result};
use crate::sys;

/// The feature's name in upstream's cache of what the kernel supports.
const FEATURE: &str = "idmapped-lower-dir";

/// Upstream's environment switch that turns shifting off.
const DISABLE: &str = "_CONTAINERS_OVERLAY_DISABLE_IDMAP";

impl Store {
    /// Whether containers' IDs are shifted at mount time: on overlay, as
    /// root, where the kernel mounts overlayfs over idmapped layers, and
    /// unless `_CONTAINERS_OVERLAY_DISABLE_IDMAP=yes` is in the
    /// environment (upstream's switch, which its tests set: containers
    /// then get mapped copies of their layers, as on vfs).
    pub(crate) fn supports_shifting(&self) -> bool {
        if self.options.driver != "overlay" || !nix::unistd::geteuid().is_root() {
            return false;
        }
        if std::env::var_os(DISABLE).is_some_and(|v| v == "yes") {
            return false;
        }
        self.cached_feature(FEATURE, || match probe(&self.driver_dir()) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "overlay over idmapped layers: not supported");
                false
            }
        })
    }

    /// Whether a container mapping IDs with `uid_map` and `gid_map` is
    /// shifted at mount time (upstream's `canUseShifting`): the kernel
    /// can, and each map is one contiguous range on both sides.
    pub(crate) fn can_use_shifting(&self, uid_map: &[IdMap], gid_map: &[IdMap]) -> bool {
        contiguous(uid_map) && contiguous(gid_map) && self.supports_shifting()
    }
}

/// Whether the ranges of `map` follow each other without gaps, both
/// inside and outside (upstream's `IsContiguous`).
fn contiguous(map: &[IdMap]) -> bool {
    let follow = |mut pairs: Vec<(u64, u64)>| {
        pairs.sort_unstable();
        pairs.windows(2).all(|w| w[1].0 == w[0].0 + w[0].1)
    };
    let size = |m: &IdMap| u64::from(m.size);
    follow(
        map.iter()
            .map(|m| (u64::from(m.host_id), size(m)))
            .collect(),
    ) && follow(
        map.iter()
            .map(|m| (u64::from(m.container_id), size(m)))
            .collect(),
    )
}

/// The lower directories of one mount, seen through idmapped mounts with
/// one pair of maps: each directory that holds lowers (the driver
/// directory for its `l/` links, a read-only store's layer directory for
/// its content) is cloned once, detached, with the maps applied. The
/// clones live as long as this value; the overlay mount made from them
/// keeps what it needs after.
pub(crate) struct ShiftedLowers {
    userns: OwnedFd,
    driver: PathBuf,
    clones: Vec<(PathBuf, OwnedFd)>,
}

impl ShiftedLowers {
    /// Shifts the lowers of a mount under `driver` by `uid_map` and
    /// `gid_map` (container IDs to host IDs).
    pub(crate) fn new(
        driver: &Path,
        uid_map: &[IdMap],
        gid_map: &[IdMap],
    ) -> Result<ShiftedLowers> {
        Ok(ShiftedLowers {
            userns: user_namespace(uid_map, gid_map)?,
            driver: driver.to_path_buf(),
            clones: Vec::new(),
        })
    }

    /// The path that shows `lower` (relative to the driver directory, or
    /// absolute) shifted.
    pub(crate) fn path(&mut self, lower: &str) -> Result<String> {
        let path = Path::new(lower);
        let (root, rel) = match (path.is_absolute(), path.parent(), path.file_name()) {
            (true, Some(parent), Some(name)) => (parent.to_path_buf(), PathBuf::from(name)),
            _ => (self.driver.clone(), path.to_path_buf()),
        };
        let fd = match self.clones.iter().find(|(r, _)| *r == root) {
            Some((_, fd)) => fd.as_raw_fd(),
            None => {
                let fd =
                    sys::idmapped_clone(&root, self.userns.as_fd()).at(Op::IdmapMount, &root)?;
                let raw = fd.as_raw_fd();
                self.clones.push((root, fd));
                raw
            }
        };
        Ok(format!("/proc/self/fd/{fd}/{}", rel.display()))
    }
}

/// A user namespace whose maps are `uid_map` and `gid_map` (container
/// IDs inside, host IDs outside), held by a descriptor: made by a process
/// started in it, which is killed once its maps are written.
fn user_namespace(uid_map: &[IdMap], gid_map: &[IdMap]) -> Result<OwnedFd> {
    let lines = |map: &[IdMap]| {
        map.iter()
            .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
            .collect::<String>()
    };
    crate::userns::new_user_namespace(|_, dir| {
        for (file, map) in [("uid_map", uid_map), ("gid_map", gid_map)] {
            let path = dir.join(file);
            fs::write(&path, lines(map)).at(Op::Write, &path)?;
        }
        Ok(())
    })
}

/// Mounts overlayfs over an idmapped directory in a scratch directory
/// under `driver` (as upstream's check does), and takes it down again.
fn probe(driver: &Path) -> Result<()> {
    super::kernel_features::test_mount(driver, &[], |scratch| {
        let identity = [IdMap {
            container_id: 0,
            host_id: 0,
            size: 1,
        }];
        let mut lowers = ShiftedLowers::new(scratch, &identity, &identity)?;
        let lower = lowers.path(&scratch.join("lower").display().to_string())?;
        Ok((lower, lowers))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(container_id: u32, host_id: u32, size: u32) -> IdMap {
        IdMap {
            container_id,
            host_id,
            size,
        }
    }

    #[test]
    fn maps_are_contiguous_when_their_ranges_follow_each_other_on_both_sides() {
        assert!(contiguous(&[]));
        assert!(contiguous(&[map(0, 1000, 65536)]));
        assert!(contiguous(&[map(1, 1001, 9), map(0, 1000, 1)]));
        assert!(!contiguous(&[map(0, 1000, 1), map(1, 2000, 9)]));
        assert!(!contiguous(&[map(0, 1000, 1), map(5, 1001, 9)]));
    }
}
