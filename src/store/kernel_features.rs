//! What the kernel's overlayfs can do, found by a test mount and kept
//! where upstream's overlay driver keeps its answers, so that a Go client
//! sharing the store and we read each other's: `<runroot>/overlay/
//! <feature>-true` (or `-false`). A lost or unwritable record only means
//! the next command asks the kernel again.

use std::fs;
use std::path::Path;

use super::layout;
use super::mounts::{mount_dirs, Dirs};
use super::Store;
use crate::durable;
use crate::error::{IoContext, Op, Result};

impl Store {
    /// The recorded answer for `feature`, or `probe`'s (then recorded).
    pub(crate) fn cached_feature(&self, feature: &str, probe: impl FnOnce() -> bool) -> bool {
        let cache = layout::driver_dir(&self.options.run_root, &self.options.driver);
        let answer = |yes: bool| cache.join(format!("{feature}-{yes}"));
        if answer(true).exists() {
            return true;
        }
        if answer(false).exists() {
            return false;
        }
        let supported = probe();
        let _ = durable::create_dir_all(&cache)
            .and_then(|()| durable::open_store_file(&answer(supported), durable::Open::Create));
        supported
    }

    /// Whether overlay mounts take the `volatile` option (upstream's
    /// `Supports volatile`): as root, on overlay, where a test mount
    /// with it succeeds.
    pub(crate) fn supports_volatile(&self) -> bool {
        if self.options.driver != "overlay" || !nix::unistd::geteuid().is_root() {
            return false;
        }
        let lower = |scratch: &Path| Ok((scratch.join("lower").display().to_string(), ()));
        self.cached_feature("volatile", || {
            test_mount(&self.driver_dir(), &[("volatile".into(), None)], lower)
                .inspect_err(|e| tracing::debug!(error = %e, "overlay volatile: not supported"))
                .is_ok()
        })
    }
}

/// Mounts overlayfs with `options` over scratch directories under
/// `driver` (as upstream's checks do), and takes it down again. `lower`
/// gives the lower directory as the mount names it, from the scratch
/// directory (whose `lower/` is there to use), with what must live as
/// long as the mount.
pub(super) fn test_mount<T>(
    driver: &Path,
    options: &[(String, Option<String>)],
    lower: impl FnOnce(&Path) -> Result<(String, T)>,
) -> Result<()> {
    let scratch = driver.join(format!("compat{}", std::process::id()));
    let result = (|| {
        for dir in ["lower", "upper", "work", "merged"] {
            durable::create_dir_all(&scratch.join(dir))?;
        }
        let (lower, _alive) = lower(&scratch)?;
        let lower = [lower];
        let upper = (scratch.join("upper"), scratch.join("work"));
        let merged = scratch.join("merged");
        let dirs = Dirs {
            driver: &scratch,
            lowers: &lower,
            upper: Some(&upper),
            options,
            flags: Default::default(),
        };
        mount_dirs(&dirs, &merged).at(Op::MountOverlay, &merged)?;
        super::host_mounts::unmount_path(&merged)
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}
