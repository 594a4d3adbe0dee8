//! A directory that writes stay inside: every path is resolved one
//! component at a time with `O_NOFOLLOW`, so a symlink planted by a layer
//! (`a -> /`, `etc -> /etc`, `x -> ../../..`) can never redirect a write
//! outside the tree; such a path is an error instead.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{mkdirat, Mode};

use crate::error::{Error, IoContext, Op, PathProblem, Result};
use crate::manifest::split_last;
use crate::poison::Unpoisoned;
use crate::sys;

/// An open directory that is the root of a tree being written.
pub(crate) struct Jail {
    root: Arc<OwnedFd>,
    path: PathBuf,
    /// Directories opened recently, by path: entries in tar order share
    /// parents, so most lookups cost no system call. Cleared whenever the
    /// tree loses an entry, so a cached descriptor never stands for a path
    /// that now names something else.
    opened: Mutex<HashMap<Vec<u8>, Arc<OwnedFd>>>,
}

/// Directories kept open at most.
const OPENED_LIMIT: usize = 256;

/// The parent directory of an entry, opened inside the jail, and the
/// entry's own name.
pub(crate) struct Slot {
    pub dir: Arc<OwnedFd>,
    pub name: CString,
}

impl Jail {
    /// Opens `path` (which must be a directory) as a jail root.
    pub fn open(path: &Path) -> Result<Jail> {
        let fd = sys::openat(
            None,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .at(Op::Open, path)?;
        let root = Arc::new(fd);
        Ok(Jail {
            root,
            path: path.to_path_buf(),
            opened: Mutex::new(HashMap::new()),
        })
    }

    /// The root directory's descriptor.
    pub fn root_fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Opens the directory `rel` (relative, normalised; empty = the root)
    /// without following any symlink.
    pub fn open_dir(&self, rel: &[u8]) -> Result<Arc<OwnedFd>> {
        let mut opened = self.opened.lock_unpoisoned();
        if let Some(fd) = opened.get(rel) {
            return Ok(fd.clone());
        }
        if opened.len() >= OPENED_LIMIT {
            opened.clear();
        }
        let mut fd = self.root.clone();
        let mut end = 0;
        for component in rel.split(|&b| b == b'/') {
            end += component.len();
            let prefix = &rel[..end];
            end += 1;
            if component.is_empty() {
                continue;
            }
            if let Some(cached) = opened.get(prefix) {
                fd = cached.clone();
                continue;
            }
            let next = sys::openat(
                Some(fd.as_fd()),
                OsStr::from_bytes(component),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| match e {
                Errno::ELOOP | Errno::ENOTDIR => Error::OutsideTree {
                    tree: self.path.clone(),
                    path: String::from_utf8_lossy(rel).into_owned(),
                },
                other => Error::io(Op::Open, &self.path.join(OsStr::from_bytes(rel)), other),
            })?;
            fd = Arc::new(next);
            opened.insert(prefix.to_vec(), fd.clone());
        }
        Ok(fd)
    }

    /// Forgets the open directories (call after removing anything).
    pub fn forget_opened(&self) {
        self.opened.lock_unpoisoned().clear();
    }

    /// Like [`Jail::open_dir`], creating missing directories (mode 0755)
    /// on the way, as `tar -x` does for entries whose parents the archive
    /// does not list.
    pub fn open_dir_creating(&self, rel: &[u8]) -> Result<Arc<OwnedFd>> {
        match self.open_dir(rel) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            other => return other,
        }
        let mut done = 0;
        for (i, _) in rel
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'/')
            .chain([(rel.len(), &b'/')])
        {
            let prefix = &rel[..i];
            if i <= done || prefix.is_empty() {
                continue;
            }
            done = i;
            let (parent, name) = split_last(prefix);
            let dir = self.open_dir(parent)?;
            let cname = self.c_name(name, prefix)?;
            match mkdirat(
                Some(dir.as_raw_fd()),
                cname.as_c_str(),
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(Error::io(Op::Mkdir, &self.display(prefix), e)),
            }
        }
        self.open_dir(rel)
    }

    /// The parent directory and name of `rel` (which must not be empty);
    /// missing parent directories are created.
    pub fn slot(&self, rel: &[u8]) -> Result<Slot> {
        let (parent, name) = self.split(rel)?;
        Ok(Slot {
            dir: self.open_dir_creating(parent)?,
            name,
        })
    }

    /// The parent directory and name of `rel`, which must exist.
    pub fn existing_slot(&self, rel: &[u8]) -> Result<Slot> {
        let (parent, name) = self.split(rel)?;
        Ok(Slot {
            dir: self.open_dir(parent)?,
            name,
        })
    }

    /// The slot of `rel` (which must not be empty) resolved by the kernel
    /// from the root, with no directory opened on the way. Only for trees
    /// whose every directory on the way was made by this build and can be
    /// nothing else: a fresh tree of independent entries, whose
    /// directories all exist before anything else is made and whose other
    /// entries never stand where a directory is (see `build::independent`).
    /// No symlink can then be on the way, so the walk stays inside.
    pub fn beneath(&self, rel: &[u8]) -> Result<Slot> {
        if rel.is_empty() {
            return Err(self.invalid(rel, PathProblem::Root));
        }
        let name = self.c_name(rel, rel)?;
        Ok(Slot {
            dir: self.root.clone(),
            name,
        })
    }

    /// The directory `rel` opened as [`Jail::beneath`] resolves it (the
    /// root for an empty path).
    pub fn open_beneath(&self, rel: &[u8]) -> Result<Arc<OwnedFd>> {
        if rel.is_empty() {
            return Ok(self.root.clone());
        }
        let fd = self
            .beneath(rel)?
            .open(OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)
            .at(Op::Open, &self.display(rel))?;
        Ok(Arc::new(fd.into()))
    }

    /// The full path of `rel`, for messages.
    pub fn display(&self, rel: &[u8]) -> PathBuf {
        self.path.join(OsStr::from_bytes(rel))
    }

    /// `a/b/c` -> (`a/b`, `c`); `c` -> (``, `c`).
    fn split<'a>(&self, rel: &'a [u8]) -> Result<(&'a [u8], CString)> {
        let (parent, name) = split_last(rel);
        Ok((parent, self.c_name(name, rel)?))
    }

    /// `name` (the last component of `rel`) for a system call.
    fn c_name(&self, name: &[u8], rel: &[u8]) -> Result<CString> {
        CString::new(name).map_err(|_| self.invalid(rel, PathProblem::Nul))
    }

    /// The error for `rel`, a path that cannot be made.
    pub fn invalid(&self, rel: &[u8], problem: PathProblem) -> Error {
        Error::InvalidPath {
            path: self.display(rel),
            problem,
        }
    }
}

impl Slot {
    /// Opens the entry itself without following a symlink.
    pub fn open(&self, flags: OFlag, mode: u32) -> nix::Result<File> {
        let fd = sys::openat(
            Some(self.dir.as_fd()),
            self.name.as_c_str(),
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )?;
        Ok(File::from(fd))
    }

    /// `/proc/self/fd/<dir>/<name>`: a path for calls that have no `*at`
    /// form (`lsetxattr`); it resolves through the open directory, never
    /// through the tree's path.
    pub fn proc_path(&self) -> CString {
        let mut bytes = format!("/proc/self/fd/{}/", self.dir.as_raw_fd()).into_bytes();
        bytes.extend_from_slice(self.name.as_bytes());
        CString::new(bytes).expect("no NUL in a proc path")
    }
}
