//! Copying files into a mounted layer (`copy`): directories, files,
//! symlinks and fifos from a source path, written through the jail so that
//! a symlink inside the layer never leads a write outside it.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;

use super::jail::Jail;
use crate::error::{Error, IoContext, Result};

/// Owner to give copied entries instead of the source's.
pub type Chown = Option<(u32, Option<u32>)>;

fn errno(op: &'static str, path: &Path, e: Errno) -> Error {
    Error::Io {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Sets owner (where allowed), mode and times on an open file or directory.
fn set_metadata(
    fd: i32,
    (uid, gid): (u32, u32),
    mode: u32,
    times: &[libc::timespec; 2],
    shown: &Path,
) -> Result<()> {
    // SAFETY: plain syscalls on a descriptor the caller holds open; `times`
    // lives across the calls.
    unsafe {
        if libc::fchown(fd, uid, gid) != 0 && nix::unistd::geteuid().is_root() {
            return Err(errno("chown", shown, Errno::last()));
        }
        if libc::fchmod(fd, mode & 0o7777) != 0 {
            return Err(errno("chmod", shown, Errno::last()));
        }
        libc::futimens(fd, times.as_ptr());
    }
    Ok(())
}

/// Copies `src` (not following a symlink at `src` itself or below it) to
/// `rel` inside the tree at `root`. A directory's contents are merged into
/// `rel`. Returns the number of entries copied.
pub fn copy_into(src: &Path, root: &Path, rel: &[u8], chown: Chown) -> Result<u64> {
    let jail = Jail::open(root)?;
    copy_entry(&jail, src, rel, chown)
}

fn copy_entry(jail: &Jail, src: &Path, rel: &[u8], chown: Chown) -> Result<u64> {
    let meta = std::fs::symlink_metadata(src).at("stat", src)?;
    let shown = jail.display(rel);
    let (uid, gid) = match chown {
        Some((u, g)) => (u, g.unwrap_or(meta.gid())),
        None => (meta.uid(), meta.gid()),
    };
    let times = [
        libc::timespec {
            tv_sec: meta.atime() as libc::time_t,
            tv_nsec: meta.atime_nsec() as libc::c_long,
        },
        libc::timespec {
            tv_sec: meta.mtime() as libc::time_t,
            tv_nsec: meta.mtime_nsec() as libc::c_long,
        },
    ];
    let ft = meta.file_type();
    if ft.is_dir() {
        let dir = if rel.is_empty() {
            jail.open_dir(rel)?
        } else {
            let slot = jail.slot(rel)?;
            // SAFETY: NUL-terminated name, open directory descriptor.
            if unsafe { libc::mkdirat(slot.dir.as_raw_fd(), slot.name.as_ptr(), 0o700) } != 0 {
                let e = Errno::last();
                if e != Errno::EEXIST {
                    return Err(errno("mkdir", &shown, e));
                }
            }
            jail.open_dir(rel)?
        };
        let mut names: Vec<_> = std::fs::read_dir(src)
            .at("read directory", src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .at("read directory", src)?;
        names.sort();
        let mut count = 1;
        for name in names {
            let child = if rel.is_empty() {
                name.as_bytes().to_vec()
            } else {
                [rel, b"/", name.as_bytes()].concat()
            };
            count += copy_entry(jail, &src.join(&name), &child, chown)?;
        }
        set_metadata(dir.as_raw_fd(), (uid, gid), meta.mode(), &times, &shown)?;
        return Ok(count);
    }
    let slot = jail.slot(rel)?;
    if ft.is_file() {
        let mut out: File = slot
            .open(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC, 0o600)
            .map_err(|e| errno("create", &shown, e))?;
        let mut input = File::open(src).at("open", src)?;
        std::io::copy(&mut input, &mut out).at("copy", src)?;
        set_metadata(out.as_raw_fd(), (uid, gid), meta.mode(), &times, &shown)?;
        return Ok(1);
    }
    // Replace whatever is there (never following it) for the other kinds.
    // SAFETY: NUL-terminated name, open directory descriptor.
    unsafe { libc::unlinkat(slot.dir.as_raw_fd(), slot.name.as_ptr(), 0) };
    let r = if ft.is_symlink() {
        let target = std::fs::read_link(src).at("readlink", src)?;
        let target = CString::new(target.as_os_str().as_bytes()).expect("no NUL in a link target");
        // SAFETY: NUL-terminated strings, open directory descriptor.
        unsafe { libc::symlinkat(target.as_ptr(), slot.dir.as_raw_fd(), slot.name.as_ptr()) }
    } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
        // SAFETY: as above.
        unsafe {
            libc::mknodat(
                slot.dir.as_raw_fd(),
                slot.name.as_ptr(),
                meta.mode(),
                meta.rdev(),
            )
        }
    } else {
        return Err(Error::Refused(format!(
            "{}: cannot copy a socket",
            src.display()
        )));
    };
    if r != 0 {
        return Err(errno("create", &shown, Errno::last()));
    }
    // SAFETY: as above.
    unsafe {
        libc::fchownat(
            slot.dir.as_raw_fd(),
            slot.name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        );
        libc::utimensat(
            slot.dir.as_raw_fd(),
            slot.name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        );
    }
    Ok(1)
}
