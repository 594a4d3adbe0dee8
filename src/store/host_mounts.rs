//! The directories the host's overlay mounts use, from the kernel's mount
//! table (`/proc/self/mountinfo`): every `lowerdir`, `upperdir` and
//! `workdir` of every `overlay` mount, whoever made it (our CLI, podman,
//! buildah, CRI-O, the Go CLI). Eviction never removes one of them: a
//! client that mounted a layer without a record of ours (or with one we
//! cannot see) is still reading it.
//!
//! The table escapes space, tab, newline and backslash (and `,` in
//! options) as `\ooo`; overlayfs escapes a `:` inside a lower directory's
//! path as `\:`. A relative directory (upstream's overlay driver mounts
//! `l/<short>` relative to its driver directory when the absolute list
//! would be too long) is resolved against the driver directory. Paths
//! are canonicalized (`l/<short>` leads to `<id>/diff`).
//!
//! Also here: the one way the store unmounts a path, and the private
//! bind of the overlay driver's home on itself that Go's driver keeps.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Op, Result};

/// Where the kernel lists this process's mounts.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The options of an overlay mount that name directories it uses.
const DIR_OPTIONS: &[&str] = &["lowerdir", "lowerdir+", "upperdir", "workdir", "datadir+"];

/// The canonical paths of the directories every overlay mount of the
/// host uses; relative ones resolved against `driver_dir`. Empty when the
/// mount table cannot be read.
pub(crate) fn overlay_dirs(driver_dir: &Path) -> HashSet<PathBuf> {
    match std::fs::read_to_string(MOUNTINFO) {
        Ok(table) => dirs_in(&table, driver_dir),
        Err(e) => {
            tracing::warn!("{MOUNTINFO}: {e}: overlay mounts are not known");
            HashSet::new()
        }
    }
}

/// [`overlay_dirs`] of a mount table's text.
fn dirs_in(table: &str, driver_dir: &Path) -> HashSet<PathBuf> {
    let mut out = HashSet::new();
    for_each_dir(table, driver_dir, |key, dir| {
        if DIR_OPTIONS.contains(&key) {
            out.insert(dir);
        }
    });
    out
}

/// The canonical upper (`upperdir`) and lower (`lowerdir`, `lowerdir+`,
/// `datadir+`) directories of the host's overlay mounts; relative ones
/// resolved against `driver_dir`. Empty when the table cannot be read.
pub(crate) fn overlay_uppers_and_lowers(driver_dir: &Path) -> (HashSet<PathBuf>, HashSet<PathBuf>) {
    let (mut uppers, mut lowers) = (HashSet::new(), HashSet::new());
    if let Ok(table) = std::fs::read_to_string(MOUNTINFO) {
        for_each_dir(&table, driver_dir, |key, dir| {
            match key.trim_end_matches('+') {
                "upperdir" => uppers.insert(dir),
                "lowerdir" | "datadir" => lowers.insert(dir),
                _ => false,
            };
        });
    }
    (uppers, lowers)
}

/// Whether something is mounted at `path` (canonical).
pub(crate) fn is_mount_point(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string(MOUNTINFO) else {
        return false;
    };
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| Path::new(&unescape(point)) == path)
}

/// Mount points at or below `dir` (canonical), from the mount table.
fn mount_points_under(table: &str, dir: &Path) -> Vec<PathBuf> {
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape(point)))
        .filter(|point| point.starts_with(dir))
        .collect()
}

/// Makes the overlay driver's home (`overlay/`) a private mount of
/// itself before a layer is mounted there, as Go's overlay driver does
/// when it starts (`mount.MakePrivate`). Go binds it, without the mounts
/// below, when it finds it unmounted: made after our mounts, that bind
/// would hide them. So the bind comes first, made only while nothing is
/// mounted below (a bind over mounts of an older version would hide
/// them just the same); then Go finds it and only sets it private.
/// Best effort: without the privilege (rootless), mounts work as before.
pub(crate) fn bind_home(home: &Path) {
    let Ok(home) = std::fs::canonicalize(home) else {
        return;
    };
    let Ok(table) = std::fs::read_to_string(MOUNTINFO) else {
        return;
    };
    if !mount_points_under(&table, &home).is_empty() {
        return;
    }
    use nix::mount::{mount, MsFlags};
    let none: Option<&str> = None;
    let bound = mount(Some(&home), &home, none, MsFlags::MS_BIND, none);
    let private = bound.and_then(|()| mount(none, &home, none, MsFlags::MS_PRIVATE, none));
    if let Err(e) = private {
        tracing::debug!("{}: not bound on itself: {e}", home.display());
    }
}

/// Drops the bind of [`bind_home`] once no layer is mounted, as Go's
/// driver does when its store shuts down with nothing mounted
/// (`Cleanup`). Called under the mount records' lock, which every
/// client takes to mount: nothing is mounted below between the look at
/// the table and the unmount. The unmount is lazy, as Go's: a process
/// reading a layer's files through the bind (an import, `gc`) would
/// otherwise make it fail as busy and leave the bind behind.
pub(crate) fn release_home(home: &Path) {
    let Ok(home) = std::fs::canonicalize(home) else {
        return;
    };
    let Ok(table) = std::fs::read_to_string(MOUNTINFO) else {
        return;
    };
    if mount_points_under(&table, &home) == [home.clone()] {
        let _ = unmount_path(&home);
    }
}

/// Calls `f` with the option name and the canonical path of every
/// directory an option of an overlay mount in `table` names.
fn for_each_dir(table: &str, driver_dir: &Path, mut f: impl FnMut(&str, PathBuf)) {
    for line in table.lines() {
        // `... - FSTYPE SOURCE SUPER-OPTIONS`
        let Some((_, tail)) = line.split_once(" - ") else {
            continue;
        };
        let mut fields = tail.split(' ');
        if fields.next() != Some("overlay") {
            continue;
        }
        let Some(options) = fields.nth(1) else {
            continue;
        };
        for option in options.split(',') {
            let Some((key, value)) = option.split_once('=') else {
                continue;
            };
            for dir in split_lowers(value) {
                let dir = PathBuf::from(unescape(&dir));
                let dir = if dir.is_relative() {
                    driver_dir.join(dir)
                } else {
                    dir
                };
                f(key, std::fs::canonicalize(&dir).unwrap_or(dir));
            }
        }
    }
}

/// A `lowerdir` value's directories: split at `:` but not at `\:`
/// (which stays escaped for [`unescape`]).
fn split_lowers(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let last = out.last_mut().expect("never empty");
                last.push(c);
                if let Some(next) = chars.next() {
                    last.push(next);
                }
            }
            ':' => out.push(String::new()),
            c => out.last_mut().expect("never empty").push(c),
        }
    }
    out.retain(|d| !d.is_empty());
    out
}

/// Undoes the mount table's `\ooo` escapes and overlayfs's `\:`.
pub(crate) fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let octal = bytes
                .get(i + 1..i + 4)
                .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
            if let Some(digits) = octal {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(value) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
            if let Some(&next) = bytes.get(i + 1) {
                out.push(next);
                i += 2;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts `path`; a path that is not mounted is fine. A symlink there
/// is not followed (it would lead the unmount to another mount). The
/// unmount is lazy, as upstream's overlay driver makes it: a process with
/// a file open or its working directory in the mount keeps what it holds,
/// and the unmount does not fail with "busy".
pub(crate) fn unmount_path(path: &Path) -> Result<()> {
    use nix::mount::MntFlags;
    match nix::mount::umount2(path, MntFlags::UMOUNT_NOFOLLOW | MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(std::io::Error::from(e)).at(Op::Unmount, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_table_escapes_are_decoded() {
        assert_eq!(unescape(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape(r"/plain"), "/plain");
    }

    #[test]
    fn overlay_mounts_give_their_directories() {
        let table = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 0:50 / /g/overlay/aa/merged rw,relatime - overlay overlay rw,lowerdir=l/ABC:l/DEF,upperdir=/g/overlay/aa/diff,workdir=/g/overlay/aa/work
91 22 0:51 / /m rw - overlay overlay rw,lowerdir=/x\\040y/a\\:b:/z,upperdir=/u\\054v,workdir=/w
92 22 0:52 / /n rw - overlay overlay ro,lowerdir+=/p,lowerdir+=/q,datadir+=/d
93 22 0:53 / /o rw - tmpfs tmpfs rw,lowerdir=/not-overlay
";
        let dirs = dirs_in(table, Path::new("/nonexistent-driver"));
        let want: HashSet<PathBuf> = [
            "/nonexistent-driver/l/ABC",
            "/nonexistent-driver/l/DEF",
            "/g/overlay/aa/diff",
            "/g/overlay/aa/work",
            "/x y/a:b",
            "/z",
            "/u,v",
            "/w",
            "/p",
            "/q",
            "/d",
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs, want);
    }
}
