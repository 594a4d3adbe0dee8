//! Applying an entry's metadata (owner, mode, xattrs, mtime) to a file,
//! directory or symlink that was just created.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmod, fchmodat, futimens, utimensat, FchmodatFlags, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, Gid, Uid};

use super::jail::Slot;
use crate::error::Op;
use crate::manifest::{never_written, Entry, EntryKind, Xattr};
use crate::sys;

/// A failed step: the operation and its `errno`.
type Failed = (Op, Errno);

/// Whether ownership changes may be skipped (an unprivileged user cannot
/// give files away; the tree is then owned by that user).
fn may_skip_chown(e: Errno) -> bool {
    e == Errno::EPERM && !nix::unistd::geteuid().is_root()
}

/// Whether an xattr that cannot be set may be skipped: an unprivileged
/// user cannot set `trusted.*` or `security.*`, and some filesystems have
/// no xattrs at all.
fn may_skip_xattr(name: &str, e: Errno) -> bool {
    matches!(e, Errno::ENOTSUP)
        || (matches!(e, Errno::EPERM | Errno::EACCES) && !nix::unistd::geteuid().is_root())
        || (name.starts_with("user.") && e == Errno::EPERM)
}

/// What a file this process creates gets without being told: its owner
/// and group, and what the umask takes from the mode it is created with. Files
/// created in a tree being built (whose directories get their modes, and
/// so any set-group-ID bit, only at the end) need no `chown` when the entry
/// names the same owner, and no `chmod` when the umask takes nothing away.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Creator {
    uid: u32,
    gid: u32,
    umask: u32,
}

impl Creator {
    /// What a file created in directory `dir` gets, from a probe: an
    /// unnamed file created there with mode 0777. The umask (or a default
    /// ACL, which stands in for it) shows in the probe's mode. `None` where
    /// the probe cannot be made: every file is then given everything.
    pub fn probe(dir: BorrowedFd<'_>) -> Option<Creator> {
        let probe = sys::openat(
            Some(dir),
            ".",
            OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o777),
        )
        .ok()?;
        let st = nix::sys::stat::fstat(probe.as_raw_fd()).ok()?;
        Some(Creator {
            uid: st.st_uid,
            gid: st.st_gid,
            umask: !(st.st_mode as u32) & 0o7777,
        })
    }

    /// The mode to create a file for `entry` with.
    pub fn create_mode(entry: &Entry) -> u32 {
        entry.mode & 0o777
    }

    /// The mode to create directory `entry` with: its own where that
    /// leaves the owner free to fill it, else 0700 until its metadata is
    /// set at the end of the build.
    pub fn dir_mode(entry: &Entry) -> u32 {
        if entry.mode & 0o700 == 0o700 {
            entry.mode & 0o777
        } else {
            0o700
        }
    }

    fn owns(&self, entry: &Entry) -> bool {
        (entry.uid, entry.gid) == (self.uid, self.gid)
    }

    fn gives_mode(&self, entry: &Entry) -> bool {
        entry.mode & 0o7777 == Self::create_mode(entry) & !self.umask
    }

    /// Whether directory `entry`, created with [`Creator::dir_mode`],
    /// already has its owner and mode.
    pub fn gave_dir(&self, entry: &Entry) -> bool {
        self.owns(entry) && entry.mode & 0o7777 == Self::dir_mode(entry) & !self.umask
    }
}

/// Sets owner, mode, xattrs and mtime on an open file or directory.
pub(crate) fn apply_to_file(fd: BorrowedFd<'_>, entry: &Entry) -> Result<(), Failed> {
    apply(fd, entry, None)
}

/// [`apply_to_file`] for a file just created by `creator` with
/// [`Creator::create_mode`], in a directory without the set-group-ID bit.
pub(crate) fn apply_to_created(
    fd: BorrowedFd<'_>,
    entry: &Entry,
    creator: &Creator,
) -> Result<(), Failed> {
    apply(fd, entry, Some(creator))
}

/// The owner `entry` names.
fn owner(entry: &Entry) -> (Option<Uid>, Option<Gid>) {
    (
        Some(Uid::from_raw(entry.uid)),
        Some(Gid::from_raw(entry.gid)),
    )
}

/// The mode `entry` names.
fn mode(entry: &Entry) -> Mode {
    Mode::from_bits_truncate(entry.mode as libc::mode_t)
}

/// A chown that failed only because this user may not give files away.
fn chown_result(r: nix::Result<()>) -> Result<(), Failed> {
    match r {
        Err(e) if !may_skip_chown(e) => Err((Op::Chown, e)),
        _ => Ok(()),
    }
}

fn apply(fd: BorrowedFd<'_>, entry: &Entry, creator: Option<&Creator>) -> Result<(), Failed> {
    let raw = fd.as_raw_fd();
    let owned = creator.is_some_and(|c| c.owns(entry));
    if !owned {
        let (uid, gid) = owner(entry);
        chown_result(fchown(raw, uid, gid))?;
    }
    // A chown clears the set-user-ID and set-group-ID bits, so the mode
    // comes after it; without a chown the created mode may already be it.
    if !owned || !creator.is_some_and(|c| c.gives_mode(entry)) {
        fchmod(raw, mode(entry)).map_err(|e| (Op::Chmod, e))?;
    }
    set_xattrs(entry, |name, value| sys::fsetxattr(fd, name, value))?;
    let t = time(entry);
    futimens(raw, &t, &t).map_err(|e| (Op::Utimens, e))
}

/// Sets the entry's xattrs with `set`, skipping those an unprivileged
/// user or the filesystem cannot take.
fn set_xattrs(
    entry: &Entry,
    set: impl Fn(&std::ffi::CStr, &[u8]) -> nix::Result<()>,
) -> Result<(), Failed> {
    // Manifests imported before such xattrs were dropped may hold them.
    for Xattr { name, value } in entry.xattrs.iter().filter(|x| !never_written(&x.name)) {
        let cname =
            std::ffi::CString::new(name.as_str()).map_err(|_| (Op::Setxattr, Errno::EINVAL))?;
        match set(&cname, value) {
            Err(e) if !may_skip_xattr(name, e) => return Err((Op::Setxattr, e)),
            _ => {}
        }
    }
    Ok(())
}

/// The entry's modification time, which its access time takes too.
fn time(entry: &Entry) -> TimeSpec {
    TimeSpec::new(
        entry.mtime as libc::time_t,
        entry.mtime_nsec as libc::c_long,
    )
}

/// Sets only the times of `slot` (a directory that has everything else).
pub(crate) fn set_times_at(slot: &Slot, entry: &Entry) -> Result<(), Failed> {
    let t = time(entry);
    let dir = Some(slot.dir.as_raw_fd());
    utimensat(
        dir,
        slot.name.as_c_str(),
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| (Op::Utimens, e))
}

/// Sets owner, xattrs and mtime on a symlink or device node, through its
/// parent directory (no symlink is followed).
/// A `creator` that made it (in a directory without the set-group-ID bit)
/// gave it its owner already where the entry names the same one.
pub(crate) fn apply_to_slot(
    slot: &Slot,
    entry: &Entry,
    creator: Option<&Creator>,
) -> Result<(), Failed> {
    let dir = Some(slot.dir.as_raw_fd());
    let name = slot.name.as_c_str();
    if !creator.is_some_and(|c| c.owns(entry)) {
        let (uid, gid) = owner(entry);
        chown_result(fchownat(dir, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW))?;
    }
    if entry.kind != EntryKind::Symlink {
        // Device nodes and fifos are not symlinks: following is harmless.
        fchmodat(dir, name, mode(entry), FchmodatFlags::FollowSymlink)
            .map_err(|e| (Op::Chmod, e))?;
    }
    let path = slot.proc_path();
    set_xattrs(entry, |key, value| sys::lsetxattr(&path, key, value))?;
    let t = time(entry);
    utimensat(dir, name, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(|e| (Op::Utimens, e))
}
