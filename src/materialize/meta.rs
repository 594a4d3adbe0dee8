//! Applying an entry's metadata (owner, mode, xattrs, mtime) to a file,
//! directory or symlink that was just created.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::jail::Slot;
use crate::manifest::{never_written, Entry, EntryKind, Xattr};

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
    pub fn probe(dir: RawFd) -> Option<Creator> {
        let fd = nix::fcntl::openat(
            Some(dir),
            ".",
            OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o777),
        )
        .ok()?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let probe = unsafe { File::from_raw_fd(fd) };
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
pub(crate) fn apply_to_file(file: &File, entry: &Entry) -> Result<(), (&'static str, Errno)> {
    apply(file, entry, None)
}

/// [`apply_to_file`] for a file just created by `creator` with
/// [`Creator::create_mode`], in a directory without the set-group-ID bit.
pub(crate) fn apply_to_created(
    file: &File,
    entry: &Entry,
    creator: &Creator,
) -> Result<(), (&'static str, Errno)> {
    apply(file, entry, Some(creator))
}

fn apply(
    file: &File,
    entry: &Entry,
    creator: Option<&Creator>,
) -> Result<(), (&'static str, Errno)> {
    let fd = file.as_raw_fd();
    let owned = creator.is_some_and(|c| c.owns(entry));
    if !owned {
        // SAFETY: plain syscalls on a descriptor we hold open.
        let r = unsafe { libc::fchown(fd, entry.uid, entry.gid) };
        if r != 0 {
            let e = Errno::last();
            if !may_skip_chown(e) {
                return Err(("chown", e));
            }
        }
    }
    // A chown clears the set-user-ID and set-group-ID bits, so the mode
    // comes after it; without a chown the created mode may already be it.
    if !owned || !creator.is_some_and(|c| c.gives_mode(entry)) {
        // SAFETY: as above.
        if unsafe { libc::fchmod(fd, entry.mode as libc::mode_t) } != 0 {
            return Err(("chmod", Errno::last()));
        }
    }
    // Manifests imported before such xattrs were dropped may hold them.
    for Xattr { name, value } in entry.xattrs.iter().filter(|x| !never_written(&x.name)) {
        let cname =
            std::ffi::CString::new(name.as_str()).map_err(|_| ("setxattr", Errno::EINVAL))?;
        // SAFETY: the name is NUL-terminated, the value pointer and length
        // describe a live slice.
        let r =
            unsafe { libc::fsetxattr(fd, cname.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if r != 0 {
            let e = Errno::last();
            if !may_skip_xattr(name, e) {
                return Err(("setxattr", e));
            }
        }
    }
    set_mtime_fd(fd, entry)
}

fn times(entry: &Entry) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: entry.mtime as libc::time_t,
        tv_nsec: entry.mtime_nsec as libc::c_long,
    };
    [t, t]
}

/// Sets only the times of `slot` (a directory that has everything else).
pub(crate) fn set_times_at(slot: &Slot, entry: &Entry) -> Result<(), (&'static str, Errno)> {
    let t = times(entry);
    // SAFETY: `t` lives across the call; NUL-terminated name, open fd.
    let r = unsafe {
        libc::utimensat(
            slot.dir.as_raw_fd(),
            slot.name.as_ptr(),
            t.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(("utimens", Errno::last()));
    }
    Ok(())
}

fn set_mtime_fd(fd: i32, entry: &Entry) -> Result<(), (&'static str, Errno)> {
    let t = times(entry);
    // SAFETY: `t` lives across the call.
    if unsafe { libc::futimens(fd, t.as_ptr()) } != 0 {
        return Err(("utimens", Errno::last()));
    }
    Ok(())
}

/// Sets owner, xattrs and mtime on a symlink or device node, through its
/// parent directory (no symlink is followed).
/// A `creator` that made it (in a directory without the set-group-ID bit)
/// gave it its owner already where the entry names the same one.
pub(crate) fn apply_to_slot(
    slot: &Slot,
    entry: &Entry,
    creator: Option<&Creator>,
) -> Result<(), (&'static str, Errno)> {
    let dir = slot.dir.as_raw_fd();
    let name = slot.name.as_ptr();
    if !creator.is_some_and(|c| c.owns(entry)) {
        // SAFETY: `name` is a live NUL-terminated string, `dir` an open fd.
        let r =
            unsafe { libc::fchownat(dir, name, entry.uid, entry.gid, libc::AT_SYMLINK_NOFOLLOW) };
        if r != 0 {
            let e = Errno::last();
            if !may_skip_chown(e) {
                return Err(("chown", e));
            }
        }
    }
    if entry.kind != EntryKind::Symlink {
        // SAFETY: as above; device nodes and fifos are not symlinks.
        if unsafe { libc::fchmodat(dir, name, entry.mode as libc::mode_t, 0) } != 0 {
            return Err(("chmod", Errno::last()));
        }
    }
    let path = slot.proc_path();
    for Xattr { name: key, value } in entry.xattrs.iter().filter(|x| !never_written(&x.name)) {
        let ckey = std::ffi::CString::new(key.as_str()).map_err(|_| ("setxattr", Errno::EINVAL))?;
        // SAFETY: NUL-terminated strings and a live value slice.
        let r = unsafe {
            libc::lsetxattr(
                path.as_ptr(),
                ckey.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if r != 0 {
            let e = Errno::last();
            if !may_skip_xattr(key, e) {
                return Err(("setxattr", e));
            }
        }
    }
    let t = times(entry);
    // SAFETY: as above.
    if unsafe { libc::utimensat(dir, name, t.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(("utimens", Errno::last()));
    }
    Ok(())
}
