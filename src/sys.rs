//! The system calls that no safe wrapper (std, nix, memmap2) offers, each
//! behind a safe function: the crate's only `unsafe` code, every block
//! with its `SAFETY:` note.
//!
//! What is here: descriptors returned as raw numbers (`openat` of nix
//! 0.29), memory maps of files nothing rewrites in place, `flock(2)` on a
//! borrowed file (nix's `Flock` takes the file), extended attributes,
//! the ioctls `FICLONE`, `FIDEDUPERANGE` and `FS_IOC_FIEMAP`, and the new
//! mount API (`fsopen`, `fsconfig`, `fsmount`, `move_mount`,
//! `open_tree`, `mount_setattr`), and a process born in a user namespace
//! of its own (`clone(2)` with `CLONE_NEWUSER`). Calls nix
//! wraps safely (`mkdirat`, `unlinkat`, `fchownat`, `utimensat`,
//! `syncfs`, the `fcntl` record locks of `store::lock`, ...) are made
//! through nix where they are needed, never here.
//!
//! This module knows nothing of the store: it takes descriptors, paths
//! and bytes and returns what the kernel said.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use memmap2::Mmap;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::NixPath;

/// `openat(2)` relative to `dir` (the working directory for `None`); the
/// new descriptor is owned by what it returns.
pub(crate) fn openat<P: ?Sized + NixPath>(
    dir: Option<BorrowedFd<'_>>,
    path: &P,
    flags: OFlag,
    mode: Mode,
) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::openat(dir.map(|d| d.as_raw_fd()), path, flags, mode)?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat2(2)` relative to `dir` with the resolve rules of `how`; the
/// new descriptor is owned by what it returns.
pub(crate) fn openat2(
    dir: BorrowedFd<'_>,
    path: &CStr,
    how: nix::fcntl::OpenHow,
) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::openat2(dir.as_raw_fd(), path, how)?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Maps `file` to read it. The file must never be truncated or rewritten
/// in place while a map lives (the pool's packs: immutable once
/// published, replaced only by new files); otherwise a read of the map
/// may fault or see other bytes.
pub(crate) fn map_immutable(file: &File) -> io::Result<Mmap> {
    // SAFETY: the caller's promise above: nothing changes the mapped bytes
    // (unlinking the file leaves an existing map valid).
    unsafe { Mmap::map(file) }
}

/// How [`flock`] locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlockOp {
    /// Shared, waiting for an exclusive holder.
    Shared,
    /// Exclusive, waiting for every other holder.
    Exclusive,
    /// Exclusive if nobody holds a lock, else `EWOULDBLOCK` at once.
    TryExclusive,
}

/// `flock(2)` on an open file, retrying on `EINTR`. The lock belongs to
/// the open file description and goes when it is closed.
pub(crate) fn flock(file: &File, how: FlockOp) -> io::Result<()> {
    let op = match how {
        FlockOp::Shared => libc::LOCK_SH,
        FlockOp::Exclusive => libc::LOCK_EX,
        FlockOp::TryExclusive => libc::LOCK_EX | libc::LOCK_NB,
    };
    loop {
        // SAFETY: the descriptor is owned by `file`, which outlives the call.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn path_cstring(path: &Path) -> io::Result<CString> {
    cstring(path.as_os_str().as_bytes())
}

/// A size or -1 from a call that sets `errno`.
fn length(r: isize) -> io::Result<usize> {
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// The value of extended attribute `name` of `path` itself (a symlink is
/// not followed); `None` where it has none of that name.
pub(crate) fn lgetxattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let (path, name) = (path_cstring(path)?, cstring(name.as_bytes())?);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // SAFETY: NUL-terminated strings and a buffer whose length is
        // passed (a size query where it is empty).
        let r = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        match length(r) {
            Ok(n) if buf.is_empty() && n > 0 => buf.resize(n, 0),
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => return Ok(None),
            // Grown since the size query: ask again.
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => buf.clear(),
            Err(e) => return Err(e),
        }
    }
}

/// The names of the extended attributes of `path` itself (a symlink is
/// not followed).
pub(crate) fn llistxattr(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let path = path_cstring(path)?;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // SAFETY: a NUL-terminated path and a buffer whose length is
        // passed (a size query where it is empty).
        let r = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match length(r) {
            Ok(n) if buf.is_empty() && n > 0 => buf.resize(n, 0),
            Ok(n) => {
                buf.truncate(n);
                let names = buf.split(|&b| b == 0).filter(|n| !n.is_empty());
                return Ok(names.map(<[u8]>::to_vec).collect());
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => buf.clear(),
            Err(e) => return Err(e),
        }
    }
}

/// Sets extended attribute `name` of the open file `fd`.
pub(crate) fn fsetxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: the descriptor is open for the call, the name is
    // NUL-terminated, the value pointer and length describe a live slice.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// Sets extended attribute `name` of `path` itself (a symlink is not
/// followed).
pub(crate) fn lsetxattr(path: &CStr, name: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: NUL-terminated strings; the value pointer and length
    // describe a live slice.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// Removes extended attribute `name` of `path` itself (a symlink is not
/// followed).
pub(crate) fn lremovexattr(path: &CStr, name: &CStr) -> nix::Result<()> {
    // SAFETY: NUL-terminated strings that outlive the call.
    let r = unsafe { libc::lremovexattr(path.as_ptr(), name.as_ptr()) };
    Errno::result(r).map(drop)
}

/// Makes `target` (open for writing) a reflink of all of `source`
/// (`FICLONE`): they share their extents until one is written.
pub(crate) fn ficlone(target: &File, source: &File) -> io::Result<()> {
    // SAFETY: both descriptors are open for the whole call; FICLONE takes
    // the source descriptor as its argument.
    let r = unsafe { libc::ioctl(target.as_raw_fd(), libc::FICLONE, source.as_raw_fd()) };
    match r {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// `OPEN_TREE_CLONE` from linux/mount.h (libc does not export it).
const OPEN_TREE_CLONE: libc::c_uint = 1;

/// A detached copy of the mount that holds `path`, rooted at `path` and
/// without the mounts on top of it (`open_tree(2)` with
/// `OPEN_TREE_CLONE`, not recursive; needs `CAP_SYS_ADMIN`). Paths
/// resolved from it (`/proc/self/fd/<fd>/...`) reach the directories a
/// bind mount covers, all on this one mount, so links and renames between
/// them do not cross mounts.
pub(crate) fn clone_mount(path: &Path) -> io::Result<OwnedFd> {
    let path = cstring(path.as_os_str().as_bytes())?;
    // SAFETY: a directory descriptor (AT_FDCWD), a NUL-terminated path
    // and flags; returns a new descriptor or -1.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    new_fd(r)
}

/// `MOUNT_ATTR_IDMAP` from linux/mount.h.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` from linux/mount.h.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount that holds `path`, rooted at `path`,
/// that shows owners through the ID maps of the user namespace `userns`
/// (an idmapped mount: `open_tree(2)` with `OPEN_TREE_CLONE`, then
/// `mount_setattr(2)` with `MOUNT_ATTR_IDMAP`). An owner stored as ID
/// `n` shows as what `n` inside the namespace is outside it.
pub(crate) fn idmapped_clone(path: &Path, userns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let tree = clone_mount(path)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns.as_raw_fd())
            .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?,
    };
    let empty = cstring(b"")?;
    // SAFETY: an open mount descriptor, an empty NUL-terminated path (the
    // descriptor itself), flags, and a `struct mount_attr` with its size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            std::ptr::from_ref(&attr),
            std::mem::size_of::<MountAttr>(),
        )
    };
    syscall_result(r)?;
    Ok(tree)
}

/// Starts a process in a new user namespace (`clone(2)` with
/// `CLONE_NEWUSER`, like a fork) that only waits to be killed, and dies
/// with its parent; returns its PID. Its namespace has no ID maps until
/// they are written to `/proc/<pid>/uid_map` and `gid_map`.
pub(crate) fn spawn_in_new_user_namespace() -> io::Result<libc::pid_t> {
    let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong;
    // s390x takes the stack before the flags.
    let args: [libc::c_ulong; 2] = if cfg!(target_arch = "s390x") {
        [0, flags]
    } else {
        [flags, 0]
    };
    // SAFETY: a fork-like clone (no new stack: the child runs on a copy of
    // this one). The child makes only async-signal-safe calls (`prctl`,
    // `pause`) and never returns.
    let r = unsafe { libc::syscall(libc::SYS_clone, args[0], args[1], 0, 0, 0) };
    match syscall_result(r)? {
        0 => {
            // SAFETY: async-signal-safe calls with constant arguments.
            unsafe {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                loop {
                    libc::pause();
                }
            }
        }
        pid => libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH)),
    }
}

/// Makes `cmd`'s process join the user namespace `userns` before it
/// runs its program.
pub(crate) fn join_user_namespace(cmd: &mut std::process::Command, userns: OwnedFd) {
    use std::os::unix::process::CommandExt;
    let fd = userns.as_raw_fd();
    // SAFETY: runs in the forked child before exec, which is one thread;
    // `setns` is async-signal-safe. The descriptor stays open in the
    // parent (moved into the closure) until the command is spawned.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &userns;
            if libc::setns(fd, libc::CLONE_NEWUSER) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
}

/// `FIDEDUPERANGE` from linux/fs.h: `_IOWR(0x94, 54, struct
/// file_dedupe_range)` (libc does not export it).
const FIDEDUPERANGE: libc::c_ulong = 0xC018_9436;
/// `FS_IOC_FIEMAP` from linux/fs.h: `_IOWR('f', 11, struct fiemap)`.
const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
const FIEMAP_FLAG_SYNC: u32 = 1;
const FILE_DEDUPE_RANGE_SAME: i32 = 0;
const FILE_DEDUPE_RANGE_DIFFERS: i32 = 1;

/// `struct file_dedupe_range` with room for one destination.
#[repr(C)]
struct DedupeRange {
    src_offset: u64,
    src_length: u64,
    dest_count: u16,
    reserved1: u16,
    reserved2: u32,
    info: [DedupeRangeInfo; 1],
}

/// `struct file_dedupe_range_info`.
#[repr(C)]
struct DedupeRangeInfo {
    dest_fd: i64,
    dest_offset: u64,
    bytes_deduped: u64,
    status: i32,
    reserved: u32,
}

/// What the kernel said of one `FIDEDUPERANGE` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deduped {
    /// The ranges were identical: this many bytes now share extents.
    Same(u64),
    /// The ranges differ.
    Differs,
}

/// Asks the kernel to share `length` bytes of `source` at `offset` with
/// `dest` at the same offset, where they are identical
/// (`FIDEDUPERANGE`). An error is the call's or the range's own
/// (`EOPNOTSUPP`, `EINVAL`, ...).
pub(crate) fn dedupe_range(
    source: &File,
    dest: &File,
    offset: u64,
    length: u64,
) -> io::Result<Deduped> {
    let mut range = DedupeRange {
        src_offset: offset,
        src_length: length,
        dest_count: 1,
        reserved1: 0,
        reserved2: 0,
        info: [DedupeRangeInfo {
            dest_fd: dest.as_raw_fd() as i64,
            dest_offset: offset,
            bytes_deduped: 0,
            status: 0,
            reserved: 0,
        }],
    };
    // SAFETY: both descriptors are open for the whole call; `range` is a
    // `file_dedupe_range` with room for its one `info` record, as
    // `dest_count` tells the kernel.
    let r = unsafe {
        libc::ioctl(
            source.as_raw_fd(),
            FIDEDUPERANGE as _,
            &mut range as *mut DedupeRange,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let info = &range.info[0];
    match info.status {
        FILE_DEDUPE_RANGE_SAME => Ok(Deduped::Same(info.bytes_deduped)),
        FILE_DEDUPE_RANGE_DIFFERS => Ok(Deduped::Differs),
        e if e < 0 => Err(io::Error::from_raw_os_error(-e)),
        _ => Err(io::Error::from_raw_os_error(libc::EIO)),
    }
}

/// The extents of `file` as (logical, physical, length), after its data
/// is written out (`FS_IOC_FIEMAP`); `None` when the filesystem does not
/// say, or the file has `max` extents or more.
pub(crate) fn extents(file: &File, max: usize) -> Option<Vec<(u64, u64, u64)>> {
    const HEADER: usize = 32;
    const EXTENT: usize = 56;
    // u64 words keep the buffer aligned for the kernel's structures.
    let mut buf = vec![0u64; (HEADER + max * EXTENT) / 8];
    buf[0] = 0; // fm_start
    buf[1] = u64::MAX; // fm_length
                       // fm_flags (low half) and fm_mapped_extents (high half).
    buf[2] = FIEMAP_FLAG_SYNC as u64;
    // fm_extent_count (low half) and fm_reserved.
    buf[3] = u32::try_from(max).ok()? as u64;
    // SAFETY: the buffer holds a `struct fiemap` followed by room for
    // `max` extents, as `fm_extent_count` tells the kernel.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP as _, buf.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    let mapped = (buf[2] >> 32) as usize;
    if mapped >= max {
        return None;
    }
    let words_per_extent = EXTENT / 8;
    Some(
        (0..mapped)
            .map(|i| {
                let at = HEADER / 8 + i * words_per_extent;
                (buf[at], buf[at + 1], buf[at + 2])
            })
            .collect(),
    )
}

/// A filesystem context of the new mount API (`fsopen`), configured key
/// by key and then mounted.
pub(crate) struct FsContext {
    fd: OwnedFd,
}

/// A syscall's return: a value, or -1 and `errno`.
fn syscall_result(r: libc::c_long) -> io::Result<libc::c_long> {
    match r {
        r if r < 0 => Err(io::Error::last_os_error()),
        r => Ok(r),
    }
}

/// A descriptor a syscall returned.
fn new_fd(r: libc::c_long) -> io::Result<OwnedFd> {
    let fd =
        i32::try_from(syscall_result(r)?).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl FsContext {
    /// `fsopen(2)` of filesystem type `fstype` (`ENOSYS` on kernels
    /// before 5.2).
    pub fn open(fstype: &str) -> io::Result<FsContext> {
        let fstype = cstring(fstype.as_bytes())?;
        // SAFETY: a NUL-terminated string and flags; returns a new
        // descriptor or -1.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsopen,
                fstype.as_ptr(),
                libc::FSOPEN_CLOEXEC as libc::c_uint,
            )
        };
        Ok(FsContext { fd: new_fd(r)? })
    }

    fn config(
        &self,
        cmd: libc::c_uint,
        key: Option<&CStr>,
        value: Option<&CStr>,
    ) -> io::Result<()> {
        let key = key.map_or(std::ptr::null(), CStr::as_ptr);
        let value = value.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: an open fs context; the key and value are NUL-terminated
        // strings or null, as `cmd` wants them.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                cmd,
                key,
                value.cast::<libc::c_void>(),
                0 as libc::c_int,
            )
        };
        syscall_result(r).map(drop)
    }

    /// Sets option `key` to the string `value` (`FSCONFIG_SET_STRING`).
    pub fn set_string(&self, key: &str, value: &OsStr) -> io::Result<()> {
        let (key, value) = (cstring(key.as_bytes())?, cstring(value.as_bytes())?);
        self.config(libc::FSCONFIG_SET_STRING, Some(&key), Some(&value))
    }

    /// Sets flag option `key` (`FSCONFIG_SET_FLAG`).
    pub fn set_flag(&self, key: &str) -> io::Result<()> {
        let key = cstring(key.as_bytes())?;
        self.config(libc::FSCONFIG_SET_FLAG, Some(&key), None)
    }

    /// Creates the filesystem (`FSCONFIG_CMD_CREATE`), mounts it
    /// (`fsmount`) with the mount attributes `attributes`
    /// (`MOUNT_ATTR_*`) and moves the mount to `target` (`move_mount`).
    pub fn mount_at(self, target: &Path, attributes: u32) -> io::Result<()> {
        self.config(libc::FSCONFIG_CMD_CREATE, None, None)?;
        // SAFETY: an open, created fs context; flags and attributes.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.fd.as_raw_fd(),
                libc::FSMOUNT_CLOEXEC as libc::c_uint,
                attributes as libc::c_uint,
            )
        };
        let mnt = new_fd(r)?;
        let empty = cstring(b"")?;
        let target = path_cstring(target)?;
        // SAFETY: an open mount descriptor and NUL-terminated paths; the
        // empty source path names the descriptor itself.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                mnt.as_fd().as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        syscall_result(r).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattr_values_of_any_length_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        let c = path_cstring(&path).unwrap();
        let long = vec![b'v'; 3000];
        match lsetxattr(&c, c"user.long", &long) {
            // No user xattrs on this filesystem: nothing to read back.
            Err(Errno::ENOTSUP) => return,
            r => r.unwrap(),
        }
        lsetxattr(&c, c"user.short", b"y").unwrap();
        assert_eq!(lgetxattr(&path, "user.long").unwrap(), Some(long));
        assert_eq!(lgetxattr(&path, "user.short").unwrap(), Some(b"y".to_vec()));
        assert_eq!(lgetxattr(&path, "user.none").unwrap(), None);
        let mut names = llistxattr(&path).unwrap();
        names.retain(|n| n.starts_with(b"user."));
        names.sort();
        assert_eq!(names, [b"user.long".to_vec(), b"user.short".to_vec()]);
    }

    #[test]
    fn an_exclusive_try_lock_fails_at_once_while_another_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let a = File::create(&path).unwrap();
        let b = File::open(&path).unwrap();
        flock(&a, FlockOp::Shared).unwrap();
        let e = flock(&b, FlockOp::TryExclusive).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EWOULDBLOCK));
        drop(a);
        flock(&b, FlockOp::TryExclusive).unwrap();
    }
}
