//! Snapshots of directory trees for comparing a materialized tree with
//! `tar -x` of the same layer: type, mode, owner, size, content hash,
//! symlink target, device numbers, xattrs and mtime of every path.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What is compared for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: String,
    pub link: String,
    pub rdev: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub mtime: (i64, i64),
}

/// Every path under `root` (relative), with its node.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else {
            "fifo"
        };
        let content = if ft.is_file() {
            let data = std::fs::read(&path).unwrap();
            blake3::hash(&data).to_hex().to_string()
        } else {
            String::new()
        };
        let link = if ft.is_symlink() {
            std::fs::read_link(&path)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        } else {
            String::new()
        };
        let node = Node {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: if ft.is_dir() { 0 } else { meta.size() },
            content,
            link,
            rdev: if ft.is_char_device() || ft.is_block_device() {
                meta.rdev()
            } else {
                0
            },
            xattrs: xattrs(&path),
            mtime: (
                meta.mtime(),
                if ft.is_dir() { 0 } else { meta.mtime_nsec() },
            ),
        };
        out.insert(path.strip_prefix(root).unwrap().to_path_buf(), node);
        if ft.is_dir() {
            walk(root, &path, out);
        }
    }
}

/// The xattrs of a path (not following symlinks), without the overlay
/// and SELinux ones a filesystem may add by itself.
#[allow(unsafe_code)] // nix has no xattr calls
pub fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    // SAFETY: the buffer outlives the call and its length is passed.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let mut out = BTreeMap::new();
    if n <= 0 {
        return out;
    }
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let key = String::from_utf8_lossy(name).into_owned();
        if key.starts_with("security.selinux") {
            continue;
        }
        let cname = CString::new(name).unwrap();
        let mut value = vec![0u8; 65536];
        // SAFETY: as above.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len >= 0 {
            value.truncate(len as usize);
            out.insert(key, value);
        }
    }
    out
}

/// Describes the first few differences between two snapshots.
pub fn differences<V: PartialEq + std::fmt::Debug>(
    a: &BTreeMap<PathBuf, V>,
    b: &BTreeMap<PathBuf, V>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, node) in a {
        match b.get(path) {
            None => out.push(format!("{}: only in the first tree", path.display())),
            Some(other) if other != node => {
                out.push(format!("{}: {node:?} != {other:?}", path.display()))
            }
            _ => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("{}: only in the second tree", path.display()));
    }
    out.truncate(20);
    out
}

/// `tar -x` of `tar` into `dir`, keeping owners, modes and xattrs, and
/// restoring directory times at the end: tars may list a directory's
/// entries apart, and without `--delay-directory-restore` GNU tar sets a
/// directory's time before it is done adding entries to it.
pub fn extract(tar: &Path, dir: &Path) {
    extract_with(tar, dir, &[]);
}

/// [`extract`] where an entry of the tar replaces a directory with a file
/// or symlink, as upstream does and GNU tar only does with
/// `--recursive-unlink`. That also empties every directory the tar lists
/// before extracting into it: only for tars where that makes no
/// difference.
pub fn extract_replacing(tar: &Path, dir: &Path) {
    extract_with(tar, dir, &["--recursive-unlink"]);
}

fn extract_with(tar: &Path, dir: &Path, extra: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let out = std::process::Command::new("tar")
        .args(extra)
        .args([
            "--delay-directory-restore",
            "--xattrs",
            "--xattrs-include=*",
            "--same-owner",
            "-p",
            "--numeric-owner",
            "-xf",
        ])
        .arg(tar)
        .arg("-C")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar -x {}: {}",
        tar.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
