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
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmod, futimens, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::jail::Jail;
use crate::error::{Error, IoContext, Op, Result};

/// Owner to give copied entries instead of the source's.
pub type Chown = Option<(u32, Option<u32>)>;

/// The owner a copied entry gets from its source's (`uid`, `gid`): the
/// caller's ID mappings and `--chown`; an owner it refuses fails the copy.
pub type Owners<'a> = &'a dyn Fn(u32, u32) -> Result<(u32, u32)>;

/// An owner for nix's calls.
fn owner((uid, gid): (u32, u32)) -> (Option<Uid>, Option<Gid>) {
    (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
}

/// Sets owner (where allowed), mode and times on an open file or directory.
fn set_metadata(
    fd: i32,
    ids: (u32, u32),
    mode: u32,
    (atime, mtime): &(TimeSpec, TimeSpec),
    shown: &Path,
) -> Result<()> {
    let (uid, gid) = owner(ids);
    match fchown(fd, uid, gid) {
        Err(e) if nix::unistd::geteuid().is_root() => return Err(Error::io(Op::Chown, shown, e)),
        _ => {}
    }
    fchmod(fd, Mode::from_bits_truncate(mode & 0o7777)).at(Op::Chmod, shown)?;
    let _ = futimens(fd, atime, mtime);
    Ok(())
}

/// Copies `src` (not following a symlink at `src` itself or below it) to
/// `rel` inside the tree at `root`, owned as `owners` says. A directory's
/// contents are merged into `rel`. Returns the number of entries copied.
pub fn copy_into(src: &Path, root: &Path, rel: &[u8], owners: Owners<'_>) -> Result<u64> {
    let jail = Jail::open(root)?;
    copy_entry(&jail, src, rel, owners)
}

fn copy_entry(jail: &Jail, src: &Path, rel: &[u8], owners: Owners<'_>) -> Result<u64> {
    let meta = std::fs::symlink_metadata(src).at(Op::Stat, src)?;
    let shown = jail.display(rel);
    let (uid, gid) = owners(meta.uid(), meta.gid())?;
    let times = (
        TimeSpec::new(
            meta.atime() as libc::time_t,
            meta.atime_nsec() as libc::c_long,
        ),
        TimeSpec::new(
            meta.mtime() as libc::time_t,
            meta.mtime_nsec() as libc::c_long,
        ),
    );
    let ft = meta.file_type();
    if ft.is_dir() {
        let dir = if rel.is_empty() {
            jail.open_dir(rel)?
        } else {
            let slot = jail.slot(rel)?;
            let dir = Some(slot.dir.as_raw_fd());
            match mkdirat(dir, slot.name.as_c_str(), Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(Error::io(Op::Mkdir, &shown, e)),
            }
            jail.open_dir(rel)?
        };
        let mut names: Vec<_> = std::fs::read_dir(src)
            .at(Op::ReadDir, src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .at(Op::ReadDir, src)?;
        names.sort();
        let mut count = 1;
        for name in names {
            let child = if rel.is_empty() {
                name.as_bytes().to_vec()
            } else {
                [rel, b"/", name.as_bytes()].concat()
            };
            count += copy_entry(jail, &src.join(&name), &child, owners)?;
        }
        set_metadata(dir.as_raw_fd(), (uid, gid), meta.mode(), &times, &shown)?;
        return Ok(count);
    }
    let slot = jail.slot(rel)?;
    if ft.is_file() {
        let mut out: File = slot
            .open(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC, 0o600)
            .at(Op::Create, &shown)?;
        let mut input = File::open(src).at(Op::Open, src)?;
        std::io::copy(&mut input, &mut out).at(Op::Copy, src)?;
        set_metadata(out.as_raw_fd(), (uid, gid), meta.mode(), &times, &shown)?;
        return Ok(1);
    }
    // Replace whatever is there (never following it) for the other kinds.
    let (dir, name) = (Some(slot.dir.as_raw_fd()), slot.name.as_c_str());
    let _ = unlinkat(dir, name, UnlinkatFlags::NoRemoveDir);
    let made = if ft.is_symlink() {
        let target = std::fs::read_link(src).at(Op::Readlink, src)?;
        let target = CString::new(target.as_os_str().as_bytes()).expect("no NUL in a link target");
        symlinkat(target.as_c_str(), dir, name)
    } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
        let kind = SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
        let perm = Mode::from_bits_truncate(meta.mode());
        mknodat(dir, name, kind, perm, meta.rdev())
    } else {
        return Err(Error::CannotCopy(src.to_path_buf()));
    };
    made.at(Op::Create, &shown)?;
    let (uid, gid) = owner((uid, gid));
    let _ = fchownat(dir, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW);
    let (atime, mtime) = &times;
    let _ = utimensat(dir, name, atime, mtime, UtimensatFlags::NoFollowSymlink);
    Ok(1)
}

/// Copies the tree `src` onto `dst` (`cp -a`: what `dst` holds stays
/// unless `src` has an entry of its name), owners, modes, times, xattrs,
/// hard links, devices and symlinks kept, nothing followed, files
/// reflinked where the filesystem can. Not made durable.
pub fn copy_over(src: &Path, dst: &Path) -> Result<()> {
    let output = std::process::Command::new("cp")
        .args(["-a", "--reflink=auto", "--no-target-directory", "--"])
        .arg(src)
        .arg(dst)
        .stdin(std::process::Stdio::null())
        .output()
        .at(Op::Copy, dst)?;
    if !output.status.success() {
        let what = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(Error::io(Op::Copy, dst, std::io::Error::other(what)));
    }
    Ok(())
}

/// Copies the tree `src` to `dst` (which must not exist) whole, as
/// upstream's vfs driver copies a parent's tree into a new layer: owners,
/// modes, times, xattrs, hard links, devices and symlinks kept (nothing
/// followed), files reflinked where the filesystem can. Durable
/// (`syncfs`) when it returns.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    copy_over(src, dst)?;
    let dir = File::open(dst).at(Op::Open, dst)?;
    nix::unistd::syncfs(dir.as_raw_fd()).at(Op::Syncfs, dst)
}
