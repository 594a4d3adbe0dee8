//! Durable writes: the only code that replaces record, index and manifest
//! files, and the fsync helpers that the publish order relies on.
//!
//! `atomic_write` creates an exclusive temporary file beside the target,
//! writes it, `fsync`s it, renames it over the target and `fsync`s the
//! directory, so a reader sees the old file or the new one, never a mix.
//!
//! Writes that a marker covers until a later `syncfs` (the files of an
//! overlay build, see `store::unsynced`) skip the `fsync`s
//! ([`Flush::Later`]): on a journaling filesystem an `fsync` commits
//! everything else pending too, such as the previous build.
//!
//! It also owns the modes and the symlink rule of everything the store
//! makes for itself, whatever the umask: directories are made by
//! [`create_dir_all`] with mode [`DIR_MODE`] (0700), files are opened by
//! [`open_store_file`] or [`PendingFile`] with mode [`FILE_MODE`] (0600)
//! and never through a symbolic link ([`Error::Symlink`] names the path
//! instead). Other users thus can neither read the store nor make it
//! write somewhere else. Trees of layer content keep the tar's modes:
//! the 0700 directory above each of them is what keeps others out.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Op, Result};
use crate::sys::{self, FlockOp};

/// The mode of every directory the store makes for itself: records,
/// layer content, packs, objects, manifests and run-time state. Only its
/// owner can list or enter it, so nothing in it is within another user's
/// reach, whatever its own mode.
pub(crate) const DIR_MODE: u32 = 0o700;

/// The mode of every file the store makes for itself: records, locks,
/// packs, indexes, manifests, big data, markers.
pub(crate) const FILE_MODE: u32 = 0o600;

/// The mode of the root of a tree of layer content that no tar entry
/// gives one (a live layer's upper directory, a build's root before its
/// entry is applied), as `tar -x` makes a directory.
pub(crate) const TREE_ROOT_MODE: u32 = 0o755;

/// How [`open_store_file`] opens a file of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Open {
    /// To read; the file must exist.
    Read,
    /// To write; the file must exist.
    Write,
    /// To write, created when missing (never truncated).
    Create,
    /// A lock file: to read and write, created when missing; only to
    /// read where the store cannot be written (a read-only filesystem,
    /// another user's store), which still takes shared locks.
    Lock,
}

/// Opens a file the store keeps for itself, never through a symbolic
/// link (`O_NOFOLLOW`: one at `path` is [`Error::Symlink`]); a file it
/// creates gets [`FILE_MODE`].
pub(crate) fn open_store_file(path: &Path, how: Open) -> Result<File> {
    let open = |write: bool, create: bool| {
        OpenOptions::new()
            .read(!write || how == Open::Lock)
            .write(write)
            .create(create)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    let (result, op) = match how {
        Open::Read => (open(false, false), Op::Open),
        Open::Write => (open(true, false), Op::Open),
        Open::Create => (open(true, true), Op::Create),
        Open::Lock => match open(true, true) {
            Err(e) if is_read_only(&e) => (open(false, false), Op::Open),
            r => (r, Op::Open),
        },
    };
    result.map_err(|e| open_error(e, op, path))
}

/// Whether an open for writing failed because the filesystem or the file
/// cannot be written by this process.
fn is_read_only(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)
    )
}

/// The error of an `O_NOFOLLOW` open of `path`: [`Error::Symlink`] when
/// a symbolic link is what stopped it.
fn open_error(e: std::io::Error, op: Op, path: &Path) -> Error {
    if e.raw_os_error() == Some(libc::ELOOP) && is_symlink(path) {
        return Error::Symlink(path.to_path_buf());
    }
    Error::io(op, path, e)
}

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// When a write must be on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Before the call returns.
    Now,
    /// Whenever the kernel writes it back: a marker made before it covers
    /// it until a `syncfs`.
    Later,
}

/// Replaces `path` with `data` atomically and durably.
pub(crate) fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    atomic_write_flushed(path, data, Flush::Now)
}

/// Replaces `path` with `data` atomically, on disk when `flush` says.
pub(crate) fn atomic_write_flushed(path: &Path, data: &[u8], flush: Flush) -> Result<()> {
    PendingFile::create(path, 0)?.commit(data, flush)
}

/// The next version of a file, written under a temporary name beside it
/// and renamed over it by [`PendingFile::commit`]; dropped uncommitted,
/// the temporary file goes.
///
/// Space can be allocated when it is created, so that a commit on a disk
/// filled in the meantime still finds room: an import reserves the record
/// file's next version before its chunks are published, and nothing it
/// must write after that can fail for want of space.
///
/// The temporary file is `flock`ed while it lives, so that a cleaner
/// (`gc`) tells it from one a dead process left behind.
pub(crate) struct PendingFile {
    tmp: PathBuf,
    target: PathBuf,
    file: File,
    reserved: u64,
    renamed: bool,
}

/// A new file named `tmp`, locked (`flock`, exclusive) before it has
/// its name: made unnamed (`O_TMPFILE`) in `tmp`'s directory, locked,
/// then linked as `tmp`. Whoever sweeps temporary files that no one
/// holds locked never sees it unlocked. `None` where the filesystem has
/// no unnamed files (or `/proc` is missing).
fn create_locked_unnamed(tmp: &Path) -> Option<File> {
    let dir = tmp.parent()?;
    let file = OpenOptions::new()
        .write(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
        .ok()?;
    sys::flock(&file, FlockOp::Exclusive).ok()?;
    let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    // AT_SYMLINK_FOLLOW links the open unnamed file the proc link
    // stands for; an existing `tmp` is never replaced.
    nix::unistd::linkat(
        None,
        Path::new(&source),
        None,
        tmp,
        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
    )
    .ok()?;
    Some(file)
}

impl PendingFile {
    /// Creates the temporary file for `target` with `reserve` bytes
    /// allocated (where the filesystem can allocate ahead).
    pub fn create(target: &Path, reserve: u64) -> Result<PendingFile> {
        let tmp = temp_sibling(target);
        let file = match create_locked_unnamed(&tmp) {
            Some(file) => file,
            None => {
                // Visible unlocked for an instant: a sweep of unlocked
                // temporary files in this directory must run under a lock
                // this writer holds.
                // Exclusive creation never follows a symbolic link.
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(FILE_MODE)
                    .open(&tmp)
                    .at(Op::Create, &tmp)?;
                sys::flock(&file, FlockOp::Exclusive).at(Op::Lock, &tmp)?;
                file
            }
        };
        let mut pending = PendingFile {
            tmp,
            target: target.to_path_buf(),
            file,
            reserved: 0,
            renamed: false,
        };
        if reserve > 0 {
            let len = i64::try_from(reserve).unwrap_or(i64::MAX);
            match nix::fcntl::fallocate(
                std::os::fd::AsRawFd::as_raw_fd(&pending.file),
                nix::fcntl::FallocateFlags::empty(),
                0,
                len,
            ) {
                Ok(()) => pending.reserved = reserve,
                Err(nix::errno::Errno::EOPNOTSUPP) => {}
                Err(e) => return Err(std::io::Error::from(e)).at(Op::Allocate, &pending.tmp),
            }
        }
        Ok(pending)
    }

    /// Writes `data` as the file's whole content and renames it over the
    /// target, on disk when `flush` says.
    pub fn commit(mut self, data: &[u8], flush: Flush) -> Result<()> {
        self.write_and_rename(data, flush)
    }

    /// Writes `data` as the file's whole content (on disk when `flush`
    /// says) and keeps it under its temporary name, locked, for a later
    /// [`PendingFile::publish`]: a writer that must publish several files
    /// at once, under a lock, writes them first.
    pub fn write(&mut self, data: &[u8], flush: Flush) -> Result<()> {
        self.file.write_all(data).at(Op::Write, &self.tmp)?;
        if self.reserved > data.len() as u64 {
            // What was reserved beyond the content goes back.
            self.file
                .set_len(data.len() as u64)
                .at(Op::Write, &self.tmp)?;
        }
        if flush == Flush::Now {
            self.file.sync_all().at(Op::Fsync, &self.tmp)?;
        }
        Ok(())
    }

    /// Renames the file written by [`PendingFile::write`] over its target
    /// and, with [`Flush::Now`], `fsync`s the directory.
    pub fn publish(mut self, flush: Flush) -> Result<()> {
        self.rename(flush)
    }

    /// The file it will replace.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// [`PendingFile::commit`], keeping the file open and its `flock`
    /// held until the returned handle is dropped (a marker of work in
    /// progress).
    pub fn commit_held(mut self, data: &[u8], flush: Flush) -> Result<File> {
        self.write_and_rename(data, flush)?;
        // A second descriptor of the same open file holds the same lock.
        self.file.try_clone().at(Op::Open, &self.target)
    }

    fn write_and_rename(&mut self, data: &[u8], flush: Flush) -> Result<()> {
        self.write(data, flush)?;
        self.rename(flush)
    }

    fn rename(&mut self, flush: Flush) -> Result<()> {
        fs::rename(&self.tmp, &self.target).at(Op::Rename, &self.target)?;
        self.renamed = true;
        match flush {
            Flush::Now => fsync_parent(&self.target),
            Flush::Later => Ok(()),
        }
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// The prefix of every temporary name: only [`temp_sibling`] makes such
/// names, only [`is_temp_name`] recognises them.
const TEMP_PREFIX: &str = ".tmp-";

/// A fresh temporary name in the same directory as `path`, so that a rename
/// onto `path` is atomic. Leftovers carry a `.tmp-` prefix for `gc`.
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{TEMP_PREFIX}{}-{}", random_hex(8), name))
}

/// Whether `name` (a file name) is one [`temp_sibling`] made: a write or
/// removal in progress, or the leftover of one that died.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// Renames `dir` to a fresh temporary name beside it ([`temp_sibling`])
/// and returns that name: nothing sees it half removed under its own name
/// while it is removed, and what a crash leaves carries the `.tmp-`
/// prefix that `gc` sweeps.
pub(crate) fn rename_aside(dir: &Path) -> Result<PathBuf> {
    let away = temp_sibling(dir);
    fs::rename(dir, &away).at(Op::Rename, dir)?;
    Ok(away)
}

/// Removes a directory tree so that nothing ever sees it half removed:
/// [renamed aside](rename_aside) first, then deleted.
pub(crate) fn remove_dir_aside(dir: &Path) -> Result<()> {
    let away = rename_aside(dir)?;
    let _ = remove_tree(&away);
    Ok(())
}

/// Removes the directory tree `dir` (a materialized tree, whose modes
/// are a layer's): where a directory inside keeps this user out (its mode
/// lacks the owner's write or search bit, which only root ignores), every
/// directory this user owns is given u+rwx and the removal retried.
pub(crate) fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            open_up_tree(dir);
            fs::remove_dir_all(dir)
        }
        other => other,
    }
}

/// Gives the owner all access (u+rwx) to every directory at or below
/// `dir` that this user owns. Symlinks are not followed.
fn open_up_tree(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    if owned(&meta) && meta.mode() & 0o700 != 0o700 {
        let mode = fs::Permissions::from_mode(meta.mode() & 0o7777 | 0o700);
        let _ = fs::set_permissions(dir, mode);
    }
    let Ok(children) = fs::read_dir(dir) else {
        return;
    };
    for child in children.flatten() {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            open_up_tree(&child.path());
        }
    }
}

/// `fsync`s a directory so that renames and creations in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    let file = File::open(dir).at(Op::Open, dir)?;
    file.sync_all().at(Op::Fsync, dir)
}

/// `fsync`s the directory that holds `path`.
pub(crate) fn fsync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fsync_dir(dir),
        _ => fsync_dir(Path::new(".")),
    }
}

/// Creates a directory of the store and its missing parents with mode
/// [`DIR_MODE`], `fsync`ing each parent it created in. A symbolic link at
/// `dir` is refused ([`Error::Symlink`]); its parents may be links (a
/// graph root on another disk), the store's own fixed directories are
/// checked when it is opened ([`check_store_dir`]).
pub(crate) fn create_dir_all(dir: &Path) -> Result<()> {
    create_dir_all_flushed(dir, Flush::Now)
}

/// [`create_dir_all`], on disk when `flush` says.
pub(crate) fn create_dir_all_flushed(dir: &Path, flush: Flush) -> Result<()> {
    make_dir(dir, DIR_MODE, flush)
}

/// Creates the root of a tree of layer content (a live layer's upper
/// directory, a build's temporary tree) with mode [`TREE_ROOT_MODE`]
/// whatever the umask, and its missing parents with [`DIR_MODE`]. The
/// tree's own entries, if any, set its mode later; the parent's 0700 is
/// what keeps other users out of it.
pub(crate) fn create_tree_root(dir: &Path, flush: Flush) -> Result<()> {
    make_dir(dir, TREE_ROOT_MODE, flush)
}

fn make_dir(dir: &Path, mode: u32, flush: Flush) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(m) if m.file_type().is_symlink() => return Err(Error::Symlink(dir.to_path_buf())),
        _ => {}
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() && !parent.is_dir() {
            make_dir(parent, DIR_MODE, flush)?;
        }
    }
    match DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            // The umask may have taken bits that a tree's root needs.
            if mode != DIR_MODE {
                fs::set_permissions(dir, fs::Permissions::from_mode(mode)).at(Op::Chmod, dir)?;
            }
            match flush {
                Flush::Later => Ok(()),
                Flush::Now => fsync_parent(dir),
            }
        }
        // Made by someone else meanwhile: checked as an existing one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            match fs::symlink_metadata(dir) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(m) if m.file_type().is_symlink() => Err(Error::Symlink(dir.to_path_buf())),
                _ => Err(e).at(Op::Mkdir, dir),
            }
        }
        Err(e) => Err(e).at(Op::Mkdir, dir),
    }
}

/// Checks one of the store's own directories as an older version (or a
/// loose umask) may have left it: a symbolic link there is refused
/// ([`Error::Symlink`]); with `tighten`, one this user owns that others
/// could enter gets [`DIR_MODE`]. A missing one is fine. One `lstat` (and
/// rarely a `chmod`): cheap enough for every open.
pub(crate) fn check_store_dir(dir: &Path, tighten: bool) -> Result<()> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        // Missing, or out of this user's reach (another user's store,
        // opened to read): nothing to be redirected through.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e).at(Op::Stat, dir),
    };
    if meta.file_type().is_symlink() {
        return Err(Error::Symlink(dir.to_path_buf()));
    }
    if tighten && meta.is_dir() && meta.mode() & 0o077 != 0 && owned(&meta) {
        chmod(dir, DIR_MODE)?;
    }
    Ok(())
}

/// Takes the write bits of group and others from a root of the store (the
/// graph root, the run root) that this user owns, where an older version
/// (or a loose umask) left them: anyone could replace the store's
/// directories in it. The rest of its mode is the owner's choice (it may
/// hold other things); a sticky directory is shared on purpose.
pub(crate) fn tighten_root(dir: &Path) -> Result<()> {
    let Ok(meta) = fs::metadata(dir) else {
        return Ok(());
    };
    let mode = meta.mode() & 0o7777;
    if meta.is_dir() && mode & 0o022 != 0 && mode & 0o1000 == 0 && owned(&meta) {
        chmod(dir, mode & !0o022)?;
    }
    Ok(())
}

/// Gives `dir` `mode`; on a read-only filesystem (a run root there while
/// the graph root is writable) it stays as it is, out of reach of writers
/// too.
fn chmod(dir: &Path, mode: u32) -> Result<()> {
    match fs::set_permissions(dir, fs::Permissions::from_mode(mode)) {
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => Ok(()),
        r => r.at(Op::Chmod, dir),
    }
}

fn owned(meta: &fs::Metadata) -> bool {
    meta.uid() == nix::unistd::geteuid().as_raw()
}

/// Whether the filesystem holding `path` journals its metadata in order
/// (ext4, XFS, btrfs): a file created before another change is then on
/// disk whenever that change is, without an `fsync` between them.
pub(crate) fn orders_metadata(path: &Path) -> bool {
    use nix::sys::statfs::{statfs, BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC};
    statfs(path).is_ok_and(|s| {
        [EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, BTRFS_SUPER_MAGIC].contains(&s.filesystem_type())
    })
}

/// Removes a file; one already gone is fine.
pub(crate) fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(Op::Remove, path),
    }
}

/// A pipe: its reading end and its writing end.
pub(crate) fn pipe() -> Result<(File, File)> {
    let (reader, writer) = nix::unistd::pipe().map_err(|e| crate::Error::Stream {
        what: "pipe".into(),
        source: e.into(),
    })?;
    Ok((File::from(reader), File::from(writer)))
}

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes).expect("the kernel's random source is available");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_file_is_never_seen_unlocked() {
        // A sweeper of temporary files nobody holds (as `gc`'s) races
        // writers creating them: it must never win a file's lock.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("manifest");
        let done = std::sync::atomic::AtomicBool::new(false);
        let won = std::thread::scope(|scope| {
            let sweeper = scope.spawn(|| {
                let mut won = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    for entry in fs::read_dir(dir.path()).unwrap().flatten() {
                        let Ok(file) = File::open(entry.path()) else {
                            continue;
                        };
                        // Won on a file still there under its name (not
                        // one a writer removed as it let go of it).
                        let there = |f: &File| {
                            let (Ok(a), Ok(b)) = (f.metadata(), fs::metadata(entry.path())) else {
                                return false;
                            };
                            a.ino() == b.ino()
                        };
                        if sys::flock(&file, FlockOp::TryExclusive).is_ok() && there(&file) {
                            won += 1;
                        }
                    }
                }
                won
            });
            for _ in 0..20_000 {
                drop(PendingFile::create(&target, 0).unwrap());
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            sweeper.join().unwrap()
        });
        assert_eq!(won, 0, "the sweeper locked a writer's temporary file");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.json");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn store_directories_and_files_are_private_and_never_links() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        let deep = dir.path().join("a/b");
        create_dir_all(&deep).unwrap();
        assert_eq!((mode(&deep), mode(deep.parent().unwrap())), (0o700, 0o700));
        let file = deep.join("x.lock");
        open_store_file(&file, Open::Lock).unwrap();
        assert_eq!(mode(&file), 0o600);
        let root = dir.path().join("tree");
        create_tree_root(&root, Flush::Later).unwrap();
        assert_eq!(mode(&root), 0o755);

        let outside = dir.path().join("outside");
        fs::write(&outside, b"kept").unwrap();
        let link = deep.join("y.lock");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        for how in [Open::Lock, Open::Create, Open::Write, Open::Read] {
            match open_store_file(&link, how) {
                Err(Error::Symlink(p)) => assert_eq!(p, link),
                other => panic!("{how:?}: {other:?}"),
            }
        }
        let dir_link = deep.join("sub");
        std::os::unix::fs::symlink(dir.path(), &dir_link).unwrap();
        assert!(matches!(create_dir_all(&dir_link), Err(Error::Symlink(_))));
        assert!(matches!(
            check_store_dir(&dir_link, true),
            Err(Error::Symlink(_))
        ));
        assert_eq!(fs::read(&outside).unwrap(), b"kept");
    }

    #[test]
    fn an_open_store_directory_is_closed_again() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        check_store_dir(&open, false).unwrap();
        assert_eq!(fs::metadata(&open).unwrap().mode() & 0o7777, 0o777);
        check_store_dir(&open, true).unwrap();
        assert_eq!(fs::metadata(&open).unwrap().mode() & 0o7777, 0o700);
        check_store_dir(&dir.path().join("missing"), true).unwrap();

        fs::set_permissions(&open, fs::Permissions::from_mode(0o775)).unwrap();
        tighten_root(&open).unwrap();
        assert_eq!(fs::metadata(&open).unwrap().mode() & 0o7777, 0o755);
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        tighten_root(&open).unwrap();
        assert_eq!(fs::metadata(&open).unwrap().mode() & 0o7777, 0o1777);
    }
}
