//! Reading a tar-split back into the exact tar (Go's
//! `asm.WriteOutputTarStream`): segments are copied, and each file record
//! of a size above 0 is replaced by the whole content of the file it
//! names, whose CRC-64 must be the recorded one (Go's `file integrity
//! checksum failed`). Streaming: memory does not grow with the layer.
//!
//! Stricter than Go where Go would read outside the directory or hang:
//! a name is resolved below the directory only (Go joins it to the
//! directory lexically, so `../x` escapes), never through a symlink that
//! leaves it, and must be a regular file (opened `O_PATH` and checked
//! before it is read, so a FIFO or device named by a hostile tar-split is
//! never opened for reading); the file must hold exactly the recorded
//! size (Go copies the whole file and lets the CRC decide).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

use super::record::{TarSplitReader, TarSplitRecord};
use super::Crc64;
use crate::error::{Error, Op, Result};
use crate::manifest::digest::Sha256;
use crate::manifest::path::{lossy, normalize};

/// Opens the files a tar-split's records name.
pub trait FileGetter {
    /// Opens `name` (a file record's name, as Go's tar reader gave it) for
    /// reading its content.
    fn open(&mut self, name: &[u8]) -> Result<Box<dyn Read + '_>>;

    /// The path `name` stands for, for messages.
    fn display(&self, name: &[u8]) -> PathBuf;
}

/// The files of a layer's directory (upstream's `diff` or `vfs/dir/<id>`
/// tree), opened below it only.
pub struct DirectoryFiles {
    root: OwnedFd,
    path: PathBuf,
}

impl DirectoryFiles {
    /// Opens the directory `path`.
    pub fn open(path: &Path) -> Result<DirectoryFiles> {
        let root = crate::sys::openat(
            None,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(Op::Open, path, e))?;
        Ok(DirectoryFiles {
            root,
            path: path.to_path_buf(),
        })
    }
}

impl FileGetter for DirectoryFiles {
    fn open(&mut self, name: &[u8]) -> Result<Box<dyn Read + '_>> {
        let bad = |what: &str| Error::BadTarSplit(format!("file {:?}: {what}", lossy(name)));
        // Go joins the name to the directory and cleans the result, so a
        // leading `/` stays inside and `..` may leave it: refused here.
        let rel = normalize(name).map_err(|_| bad("escapes the layer's directory"))?;
        if rel.is_empty() {
            return Err(bad("names the layer's directory itself"));
        }
        let shown = self.display(&rel);
        let c_rel = CString::new(rel).map_err(|_| bad("holds a NUL byte"))?;
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = match crate::sys::openat2(self.root.as_fd(), c_rel.as_c_str(), how) {
            Ok(fd) => fd,
            Err(Errno::EXDEV) | Err(Errno::ELOOP) => {
                return Err(bad("resolves outside the layer's directory"))
            }
            Err(Errno::ENOSYS) => {
                walk_without_symlinks(self.root.as_fd(), c_rel.as_bytes(), &shown)?
            }
            Err(e) => return Err(Error::io(Op::Open, &shown, e)),
        };
        let stat = fstat(fd.as_raw_fd()).map_err(|e| Error::io(Op::Stat, &shown, e))?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(bad("is not a regular file in the layer's directory"));
        }
        // Reopen the checked file itself for reading.
        let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let file = File::open(&proc).map_err(|e| Error::Io {
            op: Op::Reopen,
            path: shown,
            source: e,
        })?;
        Ok(Box::new(file))
    }

    fn display(&self, name: &[u8]) -> PathBuf {
        let rel = normalize(name).unwrap_or_else(|_| name.to_vec());
        self.path.join(std::ffi::OsStr::from_bytes(&rel))
    }
}

/// Resolves `rel` (normalised) below `root` one component at a time,
/// following no symlink: for kernels without `openat2`.
fn walk_without_symlinks(root: BorrowedFd<'_>, rel: &[u8], shown: &Path) -> Result<OwnedFd> {
    let mut dir: Option<OwnedFd> = None;
    let parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let at = dir.as_ref().map_or(root, |d| d.as_fd());
        let name = CString::new(*part).expect("no NUL in a normalised path");
        let flags = OFlag::O_PATH
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | if last {
                OFlag::empty()
            } else {
                OFlag::O_DIRECTORY
            };
        let fd = crate::sys::openat(Some(at), name.as_c_str(), flags, Mode::empty())
            .map_err(|e| Error::io(Op::Open, shown, e))?;
        if last {
            return Ok(fd);
        }
        dir = Some(fd);
    }
    unreachable!("a normalised non-empty path has a last component")
}

/// The tar given back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assembled {
    /// Its size.
    pub size: u64,
    /// Its `sha256:` digest (the layer's DiffID when the directory holds
    /// what the tar-split was written for).
    pub digest: String,
}

/// Writes the tar the tar-split `tar_split` (gzip-compressed, as stored)
/// describes to `out`, taking file content from `files`. A file whose
/// content does not match its record is [`Error::TarSplitMismatch`]
/// naming it; a malformed or hostile tar-split is
/// [`Error::BadTarSplit`]. Bytes before the failing record have been
/// written.
pub fn assemble(
    tar_split: impl Read,
    files: &mut dyn FileGetter,
    out: &mut dyn Write,
) -> Result<Assembled> {
    assemble_records(TarSplitReader::gzip(tar_split), files, out)
}

pub(crate) fn assemble_records(
    records: impl Iterator<Item = Result<TarSplitRecord>>,
    files: &mut dyn FileGetter,
    out: &mut dyn Write,
) -> Result<Assembled> {
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let mut hash = Sha256::default();
    let mut buf = vec![0u8; 256 * 1024];
    for record in records {
        match record? {
            TarSplitRecord::Segment(bytes) => {
                out.write_all(&bytes).map_err(Error::writing_stream)?;
                hash.update(&bytes);
            }
            TarSplitRecord::File { size: 0, .. } => {}
            TarSplitRecord::File { name, size, crc64 } => {
                let shown = files.display(&name);
                let mismatch = |what: String| Error::TarSplitMismatch {
                    path: shown.clone(),
                    what,
                };
                let size = u64::try_from(size).map_err(|_| {
                    Error::BadTarSplit(format!("file {:?}: negative size {size}", lossy(&name)))
                })?;
                let mut file = files.open(&name)?;
                let mut crc = Crc64::default();
                let mut copied = 0u64;
                loop {
                    // One byte past the recorded size tells a longer file.
                    let want = (size - copied.min(size) + 1).min(buf.len() as u64) as usize;
                    let n = match file.read(&mut buf[..want]) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(Error::Io {
                                op: Op::Read,
                                path: shown.clone(),
                                source: e,
                            })
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    copied += n as u64;
                    if copied > size {
                        return Err(mismatch(format!(
                            "holds more than the {size} bytes the tar-split records"
                        )));
                    }
                    crc.update(&buf[..n]);
                    hash.update(&buf[..n]);
                    out.write_all(&buf[..n]).map_err(Error::writing_stream)?;
                }
                if copied < size {
                    return Err(mismatch(format!(
                        "holds {copied} bytes, the tar-split records {size}"
                    )));
                }
                let crc = crc.finish();
                if Some(crc) != crc64 {
                    return Err(mismatch(format!(
                        "file integrity checksum failed (CRC-64 {crc:016x}, the tar-split records {})",
                        crc64.map_or("none".into(), |c| format!("{c:016x}"))
                    )));
                }
            }
        }
    }
    out.flush().map_err(Error::writing_stream)?;
    let size = hash.len();
    Ok(Assembled {
        size,
        digest: hash.finish(),
    })
}
