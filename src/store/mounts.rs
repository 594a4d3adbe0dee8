//! Mounts: reference counts in `<runroot>/<drv>-layers/mountpoints.json`,
//! the directories materialized on demand, and the overlay mount itself.
//! A read-only image store's layers mount read-only only (as an image),
//! recorded here and mounted under this store's driver directory; their
//! directories are lower directories by their absolute paths.
//!
//! Overlay mounts use the kernel's new mount API (`fsopen`/`fsconfig`),
//! which takes lower directories one at a time (`lowerdir+`), so a chain of
//! any depth mounts; where that API is missing, the classic `mount(2)`
//! with short links (`l/<short>`) relative to the driver directory, as
//! upstream does when the option string would exceed a page.
//!
//! A mount builds what it needs before it takes the mounts lock; one that
//! then finds its layer deleted meanwhile removes what it built.
//!
//! Mounting a container that maps IDs shows the layers below its own
//! through idmapped mounts with its maps, where the kernel can
//! (`shifting.rs`), as upstream's overlay driver does.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::containers::find_container;
use super::host_mounts::unmount_path;
use super::id_maps::IdMap;
use super::item::find;
use super::kind::Kind;
use super::layers::Layer;
use super::layout;
use super::shifting::ShiftedLowers;
use super::Store;
use crate::error::{Error, IoContext, Op, Result};
use crate::sys::FsContext;

/// What a mount of a container takes from its record (upstream's
/// `Mount` passes them to its driver); a layer's mount has none.
#[derive(Debug, Default)]
pub(crate) struct ContainerMount {
    /// The UID and GID maps the layers below its own are shifted by.
    shift: Option<(Vec<IdMap>, Vec<IdMap>)>,
    /// Mounted with overlayfs's `volatile` option (`--volatile`).
    volatile: bool,
}

/// One mounted layer, with upstream's field names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    /// The layer ID.
    pub id: String,
    /// Where it is mounted.
    pub path: String,
    /// How many `mount` calls are not yet matched by `unmount`.
    pub count: u32,
}

impl Store {
    /// The layer a `mount`/`unmount` argument names: a layer, else a
    /// container's layer; with `image`, an image's top layer.
    pub(crate) fn mount_layer(&self, arg: &str, image: bool) -> Result<String> {
        if image {
            let image = self.image(arg)?;
            if image.top_layer.is_empty() {
                return Err(Error::NoLayersToMount(image.id));
            }
            return Ok(image.top_layer);
        }
        // Exact matches of either kind come before ID prefixes, so that a
        // container's name is never taken for the prefix of a layer's ID.
        let layers = self.layers()?;
        let containers = self.containers()?;
        if let Some(c) = containers
            .iter()
            .find(|c| c.id == arg || c.names.iter().any(|n| n == arg) || c.layer == arg)
        {
            return Ok(c.layer.clone());
        }
        if let Some(l) = layers
            .iter()
            .find(|l| l.id == arg || l.names.iter().any(|n| n == arg))
        {
            return Ok(l.id.clone());
        }
        if let Some(c) = find_container(&containers, arg) {
            return Ok(c.layer.clone());
        }
        if let Some(l) = find(&layers, arg) {
            return Ok(l.id.clone());
        }
        self.ro_layer(arg)?
            .map(|l| l.id)
            .ok_or_else(|| Kind::Layer.not_known(arg))
    }

    /// The layer ID an argument names: a layer, else a container's layer.
    pub fn mount_layer_id(&self, arg: &str) -> Result<String> {
        self.mount_layer(arg, false)
    }

    /// Mounts a layer, a container's layer or (with `image`) an image
    /// read-only, materializing what is missing first; returns the
    /// mountpoint. Mounts are reference counted.
    pub fn mount(&self, arg: &str, image: bool) -> Result<PathBuf> {
        self.mount_labelled(arg, image, None)
    }

    /// [`Store::mount`] with an SELinux mount label (else the layer's own
    /// label, if any). Labels apply to overlay mounts on hosts where
    /// SELinux is enabled and are ignored elsewhere, as upstream does.
    pub fn mount_labelled(&self, arg: &str, image: bool, label: Option<&str>) -> Result<PathBuf> {
        self.check_writable()?;
        let id = self.mount_layer(arg, image)?;
        if !image {
            // A read-only store's layer mounts read-only only (`-r`, as
            // an image), as upstream's. The split image store's layers
            // are this store's (`refuse_ro_layer` lets them through): a
            // `--readonly` one mounts read-only as one of the graph
            // root's, any other is written there.
            if let Some(ro) = self.ro_layer(&id)?.filter(|l| l.id == id) {
                if !self.layers()?.iter().any(|l| l.id == id) {
                    self.refuse_ro_layer(&ro)?;
                }
            }
        }
        let how = match image {
            true => ContainerMount::default(),
            false => self.container_mount(arg, &id)?,
        };
        self.mount_id(&id, image, label, &how).map_err(|e| match e {
            // Its files went because the layer was deleted meanwhile.
            Error::Io { .. } if self.layer(&id).is_err() => Kind::Layer.not_known(arg),
            e => e,
        })
    }

    /// What a mount of what `arg` names (whose layer is `layer`) takes
    /// from a container's record, when `arg` names a container: its maps,
    /// when it maps both user and group IDs and the kernel shifts, and
    /// its `Volatile` flag.
    fn container_mount(&self, arg: &str, layer: &str) -> Result<ContainerMount> {
        let containers = self.containers()?;
        let Some(c) = find_container(&containers, arg).filter(|c| c.layer == layer) else {
            return Ok(ContainerMount::default());
        };
        let maps = !c.uid_map.is_empty() && !c.gid_map.is_empty();
        Ok(ContainerMount {
            shift: (maps && self.supports_shifting())
                .then(|| (c.uid_map.clone(), c.gid_map.clone())),
            volatile: c.flags.get(super::containers::VOLATILE_FLAG)
                == Some(&serde_json::Value::Bool(true)),
        })
    }

    pub(super) fn mount_id(
        &self,
        id: &str,
        image: bool,
        label: Option<&str>,
        how: &ContainerMount,
    ) -> Result<PathBuf> {
        let chain = self.chain(id)?;
        let result = (|| {
            let mut chain = chain.clone();
            if !image && !chain[0].read_only && chain[0].sealed {
                // Written through the mount: its directory becomes the
                // content.
                chain[0] = self.privatize(&chain[0])?;
            }
            self.mount_chain(&chain, image, label, how)
        })();
        if result.is_err() {
            self.remove_dirs_of_deleted(&chain);
        }
        result
    }

    /// Removes what a mount that lost a race with a delete built: the
    /// driver directories of the layers of `chain` that have no record
    /// any more. Their delete removed their files before this mount
    /// built them, so nobody else will (but `gc`). Looked up under the
    /// mounts lock, under which deletes save their records and mounts
    /// check theirs: a mount of a layer that is still there is never
    /// robbed.
    fn remove_dirs_of_deleted(&self, chain: &[Layer]) {
        let Ok(_mounts) = self.mount_records.lock() else {
            return;
        };
        let Ok(deleted) = self.deleted_of(chain) else {
            return;
        };
        for layer in deleted {
            tracing::debug!(layer = %layer.id, "deleted while mounted: removing what the mount built");
            self.remove_driver_dirs(&layer.id);
            self.forget_used(&layer.id);
        }
    }

    fn mount_chain(
        &self,
        chain: &[Layer],
        image: bool,
        label: Option<&str>,
        how: &ContainerMount,
    ) -> Result<PathBuf> {
        let id = chain[0].id.clone();
        let overlay = self.options.driver == "overlay";
        // Long work first, without the mount lock: building directories is
        // idempotent (build in a temporary directory, rename into place).
        let path = if overlay {
            if chain[0].read_only_store.is_some() {
                // Mounted here, whatever its content directory.
                super::driver::refuse_reserved(&id)?;
                crate::durable::create_dir_all(&self.driver_dir().join(&id).join(layout::MERGED))?;
            }
            self.settle_unsynced(false)?;
            self.prepare_overlay(chain)?;
            self.driver_dir().join(&id).join(layout::MERGED)
        } else {
            self.prepare_vfs(chain)?
        };
        let writable = !image && !chain[0].read_only && !chain[0].sealed;
        self.write(|| {
            self.mount_records.modify(|mounts| {
                // Deletes save under this lock: a layer deleted since the
                // chain was read is not mounted.
                // (A read-only store's layers are never deleted.)
                if let Some(gone) = self.deleted_of(chain)?.first() {
                    return Err(Kind::Layer.not_known(&gone.id));
                }
                self.mark_used(chain);
                let mut count = 1u32;
                if let Some(i) = mounts.iter().position(|m| m.id == id) {
                    // The count comes from `mountpoints.json`: any number.
                    count = mounts[i]
                        .count
                        .checked_add(1)
                        .ok_or_else(|| Error::TooManyMounts(id.clone()))?;
                    if !overlay || is_mountpoint(&path) {
                        mounts[i].count = count;
                        return Ok(((), true));
                    }
                    // An unmount died between unmounting and saving the
                    // record: mount again below.
                    mounts.remove(i);
                } else if overlay && is_mountpoint(&path) {
                    // A mount died between mounting and saving the record.
                    unmount_path(&path)?;
                }
                // `gc` evicts under this lock: what it took between the
                // preparation above and now is built again.
                if overlay {
                    self.prepare_overlay_with(chain, false)?;
                    let label = label
                        .filter(|l| !l.is_empty())
                        .unwrap_or(&chain[0].mount_label);
                    if chain[0].read_only_store.is_some() {
                        // An unmount removes this bare mountpoint (see
                        // `remove_bare_mountpoint`) under this lock.
                        crate::durable::create_dir_all(&path)?;
                    }
                    super::host_mounts::bind_home(&self.driver_dir());
                    self.mount_overlay(chain, &path, writable, label, how)?;
                } else {
                    self.prepare_vfs(chain)?;
                }
                mounts.push(MountPoint {
                    id: id.clone(),
                    path: path.display().to_string(),
                    count,
                });
                Ok(((), true))
            })
        })?;
        Ok(path)
    }

    /// Drops one reference (all with `force`); unmounts when none is left.
    /// Returns whether the layer is now unmounted.
    pub fn unmount(&self, arg: &str, force: bool) -> Result<bool> {
        self.check_writable()?;
        // An image's top layer otherwise; the layer's error when neither
        // is known, as upstream reports it.
        let id = match self.mount_layer(arg, false) {
            Ok(id) => id,
            Err(e) => self.mount_layer(arg, true).map_err(|_| e)?,
        };
        let overlay = self.options.driver == "overlay";
        let path = self.driver_dir().join(&id).join(layout::MERGED);
        self.write(|| {
            let mut locked = self.mount_records.lock()?;
            let mounts = &mut locked.records;
            let Some(i) = mounts.iter().position(|m| m.id == id) else {
                // A mount that died before saving its record.
                if overlay && is_mountpoint(&path) {
                    unmount_path(&path)?;
                }
                if mounts.is_empty() {
                    self.release_locked();
                }
                return Ok(true);
            };
            mounts[i].count = if force {
                0
            } else {
                mounts[i].count.saturating_sub(1)
            };
            let last = mounts[i].count == 0;
            if last {
                mounts.remove(i);
            }
            let none_left = mounts.is_empty();
            // The record first: should this process die before the
            // unmount, the next mount, unmount or `shutdown -f` finds a
            // mount without a record and unmounts it (a record without a
            // mount would claim a mount that is not there).
            locked.save()?;
            if last && overlay {
                unmount_path(&path)?;
                self.remove_bare_mountpoint(&id);
                if none_left {
                    self.release_locked();
                }
            }
            Ok(last)
        })
    }

    /// Removes `overlay/<id>/` when it holds only an empty `merged/`: the
    /// mountpoint made here for a layer whose content another store holds
    /// in place. Go clients look for a layer's directory in the graph root
    /// before the other stores, and would take that one for the layer's.
    fn remove_bare_mountpoint(&self, id: &str) {
        let dir = self.driver_dir().join(id);
        let only_merged = fs::read_dir(&dir).is_ok_and(|entries| {
            let names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
            names.len() == 1 && names[0] == layout::MERGED
        });
        if only_merged && fs::remove_dir(dir.join(layout::MERGED)).is_ok() {
            let _ = fs::remove_dir(&dir);
        }
    }

    /// Whether the layer (or container's layer) `arg` is mounted.
    pub fn mounted(&self, arg: &str) -> Result<bool> {
        let id = self.mount_layer(arg, false)?;
        let recorded = self
            .mount_records
            .read()?
            .iter()
            .any(|m| m.id == id && m.count > 0);
        // A record whose unmount died half way is not a mount.
        let path = self.driver_dir().join(&id).join(layout::MERGED);
        Ok(recorded && (self.options.driver != "overlay" || is_mountpoint(&path)))
    }

    /// Every current mount.
    pub fn mounts(&self) -> Result<Vec<MountPoint>> {
        self.mount_records.read()
    }

    /// Unmounts everything (`shutdown -f`).
    pub fn unmount_all(&self) -> Result<()> {
        self.write(|| {
            self.mount_records.modify(|mounts| {
                for m in mounts.iter() {
                    // Where we mount it, not the record's path (the record
                    // file is input like any other).
                    if self.options.driver == "overlay" {
                        unmount_path(&self.driver_dir().join(&m.id).join(layout::MERGED))?;
                        self.remove_bare_mountpoint(&m.id);
                    }
                }
                // Mounts whose process died before saving their record.
                if self.options.driver == "overlay" {
                    for entry in fs::read_dir(self.driver_dir())
                        .into_iter()
                        .flatten()
                        .flatten()
                    {
                        let merged = entry.path().join(layout::MERGED);
                        if is_mountpoint(&merged) {
                            unmount_path(&merged)?;
                        }
                    }
                }
                let changed = !mounts.is_empty();
                mounts.clear();
                self.release_locked();
                Ok(((), changed))
            })
        })
    }

    /// What `shutdown` does once nothing is mounted: drops the overlay
    /// driver's bind of its home (see `host_mounts::bind_home`), as Go's
    /// driver does.
    pub fn release(&self) -> Result<()> {
        if self.options.driver == "overlay" {
            let locked = self.mount_records.lock()?;
            if locked.records.is_empty() {
                self.release_locked();
            }
        }
        Ok(())
    }

    /// [`Store::release`], with the mount records' lock held.
    fn release_locked(&self) {
        if self.options.driver == "overlay" {
            super::host_mounts::release_home(&self.driver_dir());
        }
    }

    fn mount_overlay(
        &self,
        chain: &[Layer],
        target: &Path,
        writable: bool,
        label: &str,
        how: &ContainerMount,
    ) -> Result<()> {
        let driver = self.driver_dir();
        let (upper, lowers) = if writable {
            (Some(&chain[0]), &chain[1..])
        } else {
            (None, chain)
        };
        let mut lower_links = Vec::new();
        let links = layout::SHORT_LINKS;
        // A layer's `diff1` (the layers below it with its owners, see
        // `build_mapped_below`) lies right below its `diff`, as Go's
        // overlay mounts it.
        let mapped_below = |id: &str| -> Result<Option<String>> {
            match driver.join(id).join(layout::MAPPED_BELOW).is_dir() {
                true => Ok(Some(format!(
                    "{links}/{}/../{}",
                    self.short_link(id)?,
                    layout::MAPPED_BELOW
                ))),
                false => Ok(None),
            }
        };
        if let Some(upper) = upper {
            lower_links.extend(mapped_below(&upper.id)?);
        }
        for layer in lowers {
            if layer.read_only_store.is_some() {
                // Its directory as it is (`driver.join` keeps an absolute
                // path).
                lower_links.push(self.content_dir_of(layer).display().to_string());
                continue;
            }
            lower_links.push(format!("{links}/{}", self.short_link(&layer.id)?));
            lower_links.extend(mapped_below(&layer.id)?);
            // A delta shows its layer only over the directory it is
            // stacked on.
            if let Some(base) = self.stacked_on(&layer.id) {
                lower_links.push(format!("{links}/{}", self.short_link(&base)?));
            }
        }
        // overlayfs needs a lower directory, and two without an upper.
        let needed = if writable { 1 } else { 2 };
        if lower_links.len() < needed {
            let empty = layout::side_dir(
                self.graph_root(),
                &self.options.driver,
                layout::SHARED_EMPTY,
            );
            super::driver::own_dir(&empty)?;
            while lower_links.len() < needed {
                lower_links.push(empty.display().to_string());
            }
        }
        let mut shifted = None;
        if let Some((uid_map, gid_map)) = &how.shift {
            // The layers below show with the container's owners; its
            // own directory keeps host IDs.
            let lowers = shifted.insert(ShiftedLowers::new(&driver, uid_map, gid_map)?);
            for lower in &mut lower_links {
                *lower = lowers.path(lower)?;
            }
        }
        let volatile = how.volatile && upper.is_some();
        // (`shifted` holds the idmapped clones until overlayfs has them.)
        self.mount_lowers(&driver, &lower_links, upper, target, label, volatile)
    }

    /// Mounts overlayfs with `lowers`, `upper`'s directories, and the
    /// options this host needs; with `volatile`, overlayfs's `volatile`
    /// option where the kernel has it (as upstream, without it where it
    /// does not).
    fn mount_lowers(
        &self,
        driver: &Path,
        lowers: &[String],
        upper: Option<&Layer>,
        target: &Path,
        label: &str,
        volatile: bool,
    ) -> Result<()> {
        // A layer of the split image store is written in place there.
        let upper_dirs = upper.map(|l| {
            let home = match &l.read_only_store {
                Some(root) => layout::driver_dir(root, &self.options.driver),
                None => driver.to_path_buf(),
            };
            (
                home.join(&l.id).join(layout::DIFF),
                home.join(&l.id).join(layout::WORK),
            )
        });
        if let Some((_, work)) = &upper_dirs {
            super::driver::own_dir(work)?;
        }
        // `overlay.mountopt`, as upstream's driver applies it: mount
        // flags (`nodev`, `nosuid`, ...) and overlayfs options.
        let (flags, mut options) = match self.options.driver_option("mountopt") {
            Some(opts) => mount_options(opts),
            None => (MountFlags::default(), Vec::new()),
        };
        if super::rootless::is_rootless() {
            options.push(("userxattr".to_string(), None));
        }
        if !label.is_empty() && super::rootless::selinux_enabled() {
            options.push(("context".to_string(), Some(label.to_string())));
        }
        let mut with_volatile = options.clone();
        with_volatile.push(("volatile".to_string(), None));
        let dirs = |options| Dirs {
            driver,
            lowers,
            upper: upper_dirs.as_ref(),
            options,
            flags,
        };
        if volatile {
            match mount_dirs(&dirs(&with_volatile), target) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!("overlayfs has no volatile option here: mounted without it");
                }
                other => return other.at(Op::MountOverlay, target),
            }
        }
        mount_dirs(&dirs(&options), target).at(Op::MountOverlay, target)
    }
}

/// What an overlay mount is made of.
pub(super) struct Dirs<'a> {
    /// The driver directory, which lower paths are relative to.
    pub driver: &'a Path,
    /// Lower directories, top first (`l/<short>` links, or absolute).
    pub lowers: &'a [String],
    /// The upper and work directories of a writable mount.
    pub upper: Option<&'a (PathBuf, PathBuf)>,
    /// Further options: flags (`userxattr`) and `key=value` ones.
    pub options: &'a [(String, Option<String>)],
    /// The mount's own flags.
    pub flags: MountFlags,
}

/// The mount flags `overlay.mountopt` may name: each as `mount(2)`
/// takes it and as `fsmount(2)` takes it (`MOUNT_ATTR_*`).
const MOUNT_FLAGS: &[(&str, nix::mount::MsFlags, u32)] = {
    use nix::mount::MsFlags as F;
    &[
        ("nosuid", F::MS_NOSUID, 0x02),
        ("nodev", F::MS_NODEV, 0x04),
        ("noexec", F::MS_NOEXEC, 0x08),
        ("noatime", F::MS_NOATIME, 0x10),
        ("strictatime", F::MS_STRICTATIME, 0x20),
        ("nodiratime", F::MS_NODIRATIME, 0x80),
    ]
};

/// Flags of the mount itself (not overlayfs options), from
/// `overlay.mountopt`: those of [`MOUNT_FLAGS`] it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MountFlags(nix::mount::MsFlags);

impl Default for MountFlags {
    fn default() -> MountFlags {
        MountFlags(nix::mount::MsFlags::empty())
    }
}

impl MountFlags {
    /// As `mount(2)` flags.
    fn ms_flags(self) -> nix::mount::MsFlags {
        self.0
    }

    /// As `fsmount(2)` attributes (`MOUNT_ATTR_*`).
    fn attributes(self) -> u32 {
        MOUNT_FLAGS
            .iter()
            .filter(|(_, flag, _)| self.0.contains(*flag))
            .fold(0, |all, (_, _, attr)| all | attr)
    }
}

/// `overlay.mountopt` (comma-separated), split as upstream's
/// `mount.ParseOptions` splits it: the mount flags it names, and the rest
/// for overlayfs (`key=value` or a bare word). Flags that only undo a
/// default (`dev`, `suid`, `exec`, `atime`, `rw`, `defaults`, ...) are
/// dropped.
pub(crate) fn mount_options(list: &str) -> (MountFlags, Vec<(String, Option<String>)>) {
    let mut flags = MountFlags::default();
    let mut options = Vec::new();
    for option in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if let Some((_, flag, _)) = MOUNT_FLAGS.iter().find(|(name, _, _)| *name == option) {
            flags.0 |= *flag;
            continue;
        }
        match option {
            "dev" | "suid" | "exec" | "atime" | "diratime" | "relatime" | "nostrictatime"
            | "rw" | "defaults" | "async" | "auto" | "noauto" => {}
            _ => match option.split_once('=') {
                Some((key, value)) => options.push((key.to_string(), Some(value.to_string()))),
                None => options.push((option.to_string(), None)),
            },
        }
    }
    (flags, options)
}

/// Mounts overlayfs made of `dirs` at `target`, with the new mount API
/// where the kernel has it.
pub(super) fn mount_dirs(dirs: &Dirs<'_>, target: &Path) -> std::io::Result<()> {
    match mount_with_fsconfig(dirs, target) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => mount_classic(dirs, target),
        other => other,
    }
}

/// Mounts overlayfs with the new mount API, one `lowerdir+` per layer.
fn mount_with_fsconfig(dirs: &Dirs<'_>, target: &Path) -> std::io::Result<()> {
    let Dirs {
        driver,
        lowers,
        upper,
        options,
        flags,
    } = *dirs;
    let fs = FsContext::open("overlay")?;
    for lower in lowers {
        fs.set_string("lowerdir+", driver.join(lower).as_os_str())?;
    }
    if let Some((diff, work)) = upper {
        fs.set_string("upperdir", diff.as_os_str())?;
        fs.set_string("workdir", work.as_os_str())?;
    }
    for (key, value) in options {
        match value {
            Some(value) => fs.set_string(key, value.as_ref())?,
            None => fs.set_flag(key)?,
        }
    }
    fs.mount_at(target, flags.attributes())
}

/// Mounts overlayfs with `mount(2)`; lower directories are short links
/// relative to the driver directory, which becomes the working directory
/// for the call (as upstream does for long chains).
fn mount_classic(dirs: &Dirs<'_>, target: &Path) -> std::io::Result<()> {
    let driver = dirs.driver;
    let mut data = format!("lowerdir={}", dirs.lowers.join(":"));
    if let Some((diff, work)) = dirs.upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            diff.display(),
            work.display()
        ));
    }
    for (key, value) in dirs.options {
        match value {
            // Quoted: an SELinux label holds commas.
            Some(value) => data.push_str(&format!(",{key}=\"{value}\"")),
            None => data.push_str(&format!(",{key}")),
        }
    }
    let previous = std::env::current_dir()?;
    std::env::set_current_dir(driver)?;
    let result = nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        dirs.flags.ms_flags(),
        Some(data.as_str()),
    )
    .map_err(std::io::Error::from);
    std::env::set_current_dir(previous)?;
    result
}

/// Whether a filesystem is mounted at `path` (it lies on another device
/// than its parent directory); a symlink there is never our mount.
fn is_mountpoint(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::symlink_metadata(path),
        std::fs::metadata(path.join("..")),
    ) {
        (Ok(here), Ok(parent)) => here.is_dir() && here.dev() != parent.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountopt_splits_into_mount_flags_and_overlayfs_options() {
        let (flags, options) = mount_options("nodev, nosuid,rw,metacopy=on,volatile,,noatime");
        use nix::mount::MsFlags as F;
        assert_eq!(
            flags,
            MountFlags(F::MS_NODEV | F::MS_NOSUID | F::MS_NOATIME)
        );
        assert_eq!(
            options,
            vec![
                ("metacopy".to_string(), Some("on".to_string())),
                ("volatile".to_string(), None)
            ]
        );
        assert_eq!(flags.attributes(), 0x02 | 0x04 | 0x10);
        assert_eq!(flags.ms_flags(), F::MS_NODEV | F::MS_NOSUID | F::MS_NOATIME);
    }
}
