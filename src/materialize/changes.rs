//! The changes of a live layer: its directory (an overlay upper directory,
//! or a vfs tree) compared with the view its sealed parents give, and the
//! diff tar that carries them (whiteouts become `.wh.` entries).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, IoContext, Op, Result};
use crate::manifest::{
    opaque_dir, opaque_marker, whiteout_for, whiteout_target, Entry, EntryKind, Extraction,
    LayerManifest, TarEntry, TarWriter,
};
use crate::sys;

/// What happened to a path, with upstream's numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Changed content or metadata.
    Modify = 0,
    /// New.
    Add = 1,
    /// Removed.
    Delete = 2,
}

impl Serialize for ChangeKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

/// One change, as upstream's `changes` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The path, with a leading `/`.
    #[serde(rename = "Path")]
    pub path: String,
    /// What happened.
    #[serde(rename = "Kind")]
    pub kind: ChangeKind,
}

/// The tree the sealed layers give, lowest first: path -> entry.
pub fn lower_view(manifests: &[&LayerManifest]) -> BTreeMap<Vec<u8>, Entry> {
    let mut view: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
    let remove_under = |view: &mut BTreeMap<Vec<u8>, Entry>, dir: &[u8]| {
        let mut prefix = dir.to_vec();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        let doomed: Vec<Vec<u8>> = view
            .range(prefix.clone()..)
            .map(|(k, _)| k.clone())
            .take_while(|k| k.starts_with(&prefix))
            .collect();
        for k in doomed {
            view.remove(&k);
        }
    };
    for m in manifests {
        let outcome = Extraction::of(&m.entries);
        // A layer's whiteouts and opaque markers hide what the layers
        // below it hold, never its own entries (wherever they stand in
        // the tar), as the materializer applies them; so do its entries
        // that are not directories, and directories it made again.
        for (i, e) in m.entries.iter().enumerate() {
            match e.kind {
                EntryKind::Whiteout => {
                    let target = whiteout_target(&e.path);
                    view.remove(&target);
                    remove_under(&mut view, &target);
                }
                EntryKind::Opaque => remove_under(&mut view, opaque_dir(&e.path)),
                EntryKind::Dir => {}
                _ if outcome.kept(i) => remove_under(&mut view, &e.path),
                _ => {}
            }
        }
        for dir in outcome.hiding() {
            remove_under(&mut view, dir);
        }
        // What extracting the layer leaves: the last entry for a path.
        for (i, e) in m.entries.iter().enumerate() {
            if outcome.kept(i) && !e.path.is_empty() {
                view.insert(e.path.clone(), e.clone());
            }
        }
    }
    view
}

/// What a directory-backed layer's directory holds, as a manifest
/// without content (entries carry kind, path, metadata, link target,
/// device numbers and size, no chunks), for [`lower_view`] and for the
/// directories a layer built above it needs: an overlay upper directory
/// (`overlay`: a 0/0 character device is a whiteout, a directory marked
/// opaque hides what is below it) or a whole vfs tree.
pub fn directory_view(root: &Path, overlay: bool) -> Result<LayerManifest> {
    let found = match root.is_dir() {
        true => walk(root, overlay)?,
        false => Vec::new(),
    };
    let mut entries = Vec::with_capacity(found.len());
    for f in found {
        let path = root.join(OsStr::from_bytes(&f.rel));
        if f.whiteout {
            entries.push(Entry::new(EntryKind::Whiteout, whiteout_for(&f.rel)));
            continue;
        }
        let m = &f.meta;
        let kind = kind_of(m);
        let mut entry = Entry::new(kind, f.rel.clone());
        entry.mode = m.mode() & 0o7777;
        entry.uid = m.uid();
        entry.gid = m.gid();
        entry.mtime = m.mtime();
        entry.mtime_nsec = m.mtime_nsec() as u32;
        entry.xattrs = xattrs(&path)
            .into_iter()
            .map(|(name, value)| crate::manifest::Xattr { name, value })
            .collect();
        match kind {
            EntryKind::Symlink => {
                entry.link = link_target(&path)?;
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                entry.dev_major = libc::major(m.rdev());
                entry.dev_minor = libc::minor(m.rdev());
            }
            // A directory's size too, which upstream's overlay `Changes`
            // compares (a manifest's directories have none).
            EntryKind::File | EntryKind::Dir => entry.size = m.size(),
            _ => {}
        }
        let opaque = overlay && kind == EntryKind::Dir && marked_opaque(&path);
        entries.push(entry);
        if opaque {
            entries.push(Entry::new(EntryKind::Opaque, opaque_marker(&f.rel)));
        }
    }
    Ok(LayerManifest::of_entries(entries))
}

/// A path found in the layer's directory.
struct Found {
    rel: Vec<u8>,
    meta: std::fs::Metadata,
    whiteout: bool,
}

/// Every path of the layer's directory; in an overlay upper directory, a
/// 0/0 character device is a whiteout.
fn walk(root: &Path, overlay: bool) -> Result<Vec<Found>> {
    Ok(super::compare::walk(root)?
        .into_iter()
        .map(|(rel, meta)| Found {
            whiteout: overlay && meta.file_type().is_char_device() && meta.rdev() == 0,
            rel,
            meta,
        })
        .collect())
}

/// The value of xattr `name` of `path`; `None` where it has none (or it
/// cannot be read).
/// Whether the directory at `path` is marked opaque for overlayfs (as
/// root or rootless: `trusted.` or `user.overlay.opaque=y`).
pub(crate) fn marked_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| xattr(path, name).as_deref() == Some(b"y".as_slice()))
}

/// The target of the symlink at `path`, as bytes.
fn link_target(path: &Path) -> Result<Vec<u8>> {
    Ok(std::fs::read_link(path)
        .at(Op::Readlink, path)?
        .as_os_str()
        .as_bytes()
        .to_vec())
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    sys::lgetxattr(path, name).ok().flatten()
}

/// The xattrs of `path` that a diff carries: not overlay's own, nor the
/// SELinux label.
fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for name in sys::llistxattr(path).unwrap_or_default() {
        let key = String::from_utf8_lossy(&name).into_owned();
        if key.starts_with("trusted.overlay.")
            || key.starts_with("user.overlay.")
            || key == "security.selinux"
        {
            continue;
        }
        if let Some(value) = xattr(path, &key) {
            out.push((key, value));
        }
    }
    out.sort();
    out
}

fn kind_of(meta: &std::fs::Metadata) -> EntryKind {
    let ft = meta.file_type();
    if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_char_device() {
        EntryKind::CharDevice
    } else if ft.is_block_device() {
        EntryKind::BlockDevice
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else {
        EntryKind::File
    }
}

/// Whether the path differs from the lower entry (metadata only, as
/// upstream compares: kind, mode, owner, size, times, link, device).
fn differs(root: &Path, f: &Found, lower: &Entry) -> bool {
    let m = &f.meta;
    let lower_kind = if lower.kind == EntryKind::Hardlink {
        EntryKind::File
    } else {
        lower.kind
    };
    if kind_of(m) != lower_kind {
        return true;
    }
    let same_meta = m.mode() & 0o7777 == lower.mode && m.uid() == lower.uid && m.gid() == lower.gid;
    let same_time = m.mtime() == lower.mtime && m.mtime_nsec() as u32 == lower.mtime_nsec;
    match lower_kind {
        EntryKind::Dir => !same_meta || !same_time || (lower.size != 0 && m.size() != lower.size),
        EntryKind::Symlink => {
            let target =
                std::fs::read_link(root.join(OsStr::from_bytes(&f.rel))).unwrap_or_default();
            target.as_os_str().as_bytes() != lower.link.as_slice()
        }
        EntryKind::File => {
            !same_meta || !same_time || (lower.kind == EntryKind::File && m.size() != lower.size)
        }
        _ => !same_meta || !same_time,
    }
}

/// The layer's changes: `root` is its directory; `overlay` says whether it
/// is an overlay upper directory (whiteouts and opaque markers) or a full
/// vfs tree (deletions are what the tree lacks).
pub fn changes(
    root: &Path,
    lower: &BTreeMap<Vec<u8>, Entry>,
    overlay: bool,
) -> Result<Vec<Change>> {
    let found = match root.is_dir() {
        true => walk(root, overlay)?,
        false => Vec::new(),
    };
    let mut out = Vec::new();
    let mut seen: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    // Directories with a change of their own (upstream's `changedDirs`).
    let mut recorded_dirs: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    for f in &found {
        seen.insert(&f.rel);
        let kind = if f.whiteout {
            Some(ChangeKind::Delete)
        } else {
            match lower.get(&f.rel) {
                None => Some(ChangeKind::Add),
                // In an upper directory everything is a change but a
                // directory that is only there for what it holds (its
                // mode and times as below, as upstream's overlay
                // `Changes` compares them).
                Some(l) if overlay && !(f.meta.is_dir() && l.kind == EntryKind::Dir) => {
                    Some(ChangeKind::Modify)
                }
                Some(l) if differs(root, f, l) => Some(ChangeKind::Modify),
                Some(_) => None,
            }
        };
        let Some(kind) = kind else { continue };
        if overlay && kind != ChangeKind::Modify {
            // As upstream's overlay `Changes`: the directory of an added
            // or deleted path is a change too, even when it looks as it
            // does below (only the immediate parent, once).
            if let Some(cut) = f.rel.iter().rposition(|&b| b == b'/') {
                let parent = &f.rel[..cut];
                if recorded_dirs.insert(parent) {
                    out.push(Change {
                        path: format!("/{}", String::from_utf8_lossy(parent)),
                        kind: ChangeKind::Modify,
                    });
                }
            }
        }
        if f.meta.is_dir() {
            recorded_dirs.insert(&f.rel);
        }
        out.push(Change {
            path: format!("/{}", String::from_utf8_lossy(&f.rel)),
            kind,
        });
    }
    if !overlay {
        // Deleted: in the lower view, gone from the tree (top-most only).
        let mut deleted: Vec<&[u8]> = Vec::new();
        for path in lower.keys() {
            if seen.contains(path.as_slice())
                || deleted
                    .iter()
                    .any(|d| path.starts_with(d) && path.get(d.len()) == Some(&b'/'))
            {
                continue;
            }
            deleted.push(path);
            out.push(Change {
                path: format!("/{}", String::from_utf8_lossy(path)),
                kind: ChangeKind::Delete,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok(out)
}

/// `view` with the directories its paths imply (a tar may leave a file's
/// directories out; extracting it makes them, mode 0755, owned by root).
pub fn with_implied_dirs(mut view: BTreeMap<Vec<u8>, Entry>) -> BTreeMap<Vec<u8>, Entry> {
    let mut implied = Vec::new();
    for path in view.keys() {
        for (i, _) in path.iter().enumerate().filter(|(_, &b)| b == b'/') {
            let dir = &path[..i];
            if !view.contains_key(dir) {
                implied.push(dir.to_vec());
            }
        }
    }
    for dir in implied {
        let mut entry = Entry::new(EntryKind::Dir, dir.clone());
        entry.mode = 0o755;
        view.entry(dir).or_insert(entry);
    }
    view
}

/// Whether `view` has `path`, as an entry or as a directory its other
/// paths imply.
pub fn view_has(view: &BTreeMap<Vec<u8>, Entry>, path: &[u8]) -> bool {
    let mut prefix = path.to_vec();
    prefix.push(b'/');
    view.contains_key(path)
        || view
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
}

/// The changes that turn the tree `from` into the tree `to` (two layers'
/// whole views, path -> entry), as upstream's tree comparison
/// (`ChangesDirs`) reports them: added paths, modified ones (kind, mode,
/// owner, device, `security.capability`, and for what is not a
/// directory its time and size), deleted ones (the top-most only), and
/// the directories holding changes; in path order.
pub fn compare_views(
    to: &BTreeMap<Vec<u8>, Entry>,
    from: &BTreeMap<Vec<u8>, Entry>,
) -> Vec<Change> {
    let change = |path: &[u8], kind| Change {
        path: format!("/{}", String::from_utf8_lossy(path)),
        kind,
    };
    let mut out = Vec::new();
    for (path, entry) in to.iter().filter(|(p, _)| !p.is_empty()) {
        match from.get(path) {
            None => out.push(change(path, ChangeKind::Add)),
            Some(old) if entries_differ(entry, old) => out.push(change(path, ChangeKind::Modify)),
            Some(_) => {}
        }
    }
    let mut deleted: Vec<&[u8]> = Vec::new();
    for path in from
        .keys()
        .filter(|p| !p.is_empty() && !to.contains_key(*p))
    {
        let below = deleted
            .iter()
            .any(|d| path.starts_with(d) && path.get(d.len()) == Some(&b'/'));
        if !below {
            deleted.push(path);
            out.push(change(path, ChangeKind::Delete));
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    with_changed_parents(out, |p| from.contains_key(p), true)
}

/// Whether two entries of one path differ as upstream's `statDifferent`
/// has it.
fn entries_differ(new: &Entry, old: &Entry) -> bool {
    let kind = |e: &Entry| match e.kind {
        EntryKind::Hardlink => EntryKind::File,
        k => k,
    };
    let capability = |e: &Entry| {
        e.xattrs
            .iter()
            .find(|x| x.name == "security.capability")
            .map(|x| x.value.clone())
    };
    let size = |e: &Entry| match e.kind {
        EntryKind::Symlink => Some(e.link.len() as u64),
        EntryKind::File => Some(e.size),
        _ => None,
    };
    if kind(new) != kind(old) {
        return true;
    }
    // A hard link entry carries its own header, not its file's metadata
    // (which a tree built here shows): only its kind counts.
    if new.kind == EntryKind::Hardlink || old.kind == EntryKind::Hardlink {
        return false;
    }
    // A symlink by its target and owner (as [`changes`] compares one): a
    // tree built here keeps neither its mode nor its time.
    let link = kind(new) == EntryKind::Symlink;
    let timed = !link && kind(new) != EntryKind::Dir;
    (!link && new.mode != old.mode)
        || (new.uid, new.gid) != (old.uid, old.gid)
        || (new.dev_major, new.dev_minor) != (old.dev_major, old.dev_minor)
        || capability(new) != capability(old)
        || (kind(new) == EntryKind::Symlink && new.link != old.link)
        || (timed && (new.mtime, new.mtime_nsec) != (old.mtime, old.mtime_nsec))
        || matches!((size(new), size(old)), (Some(a), Some(b)) if a != b)
}

/// `changes` with the directories that hold changes and are not listed
/// (not `/`), each right before the first change inside it: an `Add` of
/// one that did not exist below (`existed` says; an extraction made it
/// for what it holds), and with `modified_too`, a `Modify` of one that
/// did, as upstream's tree comparison (`ChangesDirs`, what its vfs driver
/// uses) reports them.
pub fn with_changed_parents(
    changes: Vec<Change>,
    existed: impl Fn(&[u8]) -> bool,
    modified_too: bool,
) -> Vec<Change> {
    let listed: std::collections::HashSet<String> =
        changes.iter().map(|c| c.path.clone()).collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        let parents = change
            .path
            .match_indices('/')
            .skip(1)
            .map(|(i, _)| &change.path[..i]);
        for parent in parents {
            if listed.contains(parent) || !seen.insert(parent.to_string()) {
                continue;
            }
            let kind = match existed(&parent.as_bytes()[1..]) {
                false => ChangeKind::Add,
                true if modified_too => ChangeKind::Modify,
                true => continue,
            };
            out.push(Change {
                path: parent.to_string(),
                kind,
            });
        }
        out.push(change);
    }
    out
}

/// Writes the diff tar of `changes` (as [`changes`] returned them) from
/// the layer's directory `root`. Returns the bytes written.
pub fn write_diff(root: &Path, changes: &[Change], out: &mut dyn Write) -> Result<u64> {
    write_diff_owned(root, changes, out, &|uid, gid| Ok((uid, gid)))
}

/// [`write_diff`] with each entry's owner given by `owner` from the one on
/// disk (a mapped layer's host IDs back to the container's); an owner it
/// refuses fails the diff.
pub fn write_diff_owned(
    root: &Path,
    changes: &[Change],
    out: &mut dyn Write,
    owner: &dyn Fn(u32, u32) -> Result<(u32, u32)>,
) -> Result<u64> {
    let source = |rel: &[u8]| Ok(root.join(OsStr::from_bytes(rel)));
    write_entries(&source, true, changes, out, owner)
}

/// The diff tar of `changes` between two whole trees, each path's file
/// taken from the first of `dirs` (top first: a chain's directories, as
/// overlayfs stacks them) that has it, with no opaque markers (a whole
/// tree has none). A path none of them has fails the diff.
pub fn write_tree_diff(
    dirs: &[std::path::PathBuf],
    changes: &[Change],
    out: &mut dyn Write,
    owner: &dyn Fn(u32, u32) -> Result<(u32, u32)>,
) -> Result<u64> {
    let source = |rel: &[u8]| match find_in(dirs, rel) {
        Some(path) => Ok(path),
        None => {
            let path = dirs.first().map(|d| d.join(OsStr::from_bytes(rel)));
            let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
            Err(Error::io(Op::Stat, &path.unwrap_or_default(), gone))
        }
    };
    write_entries(&source, false, changes, out, owner)
}

/// The path `rel` has in the first of `dirs` (top first, as overlayfs
/// stacks them) that has it.
pub fn find_in(dirs: &[std::path::PathBuf], rel: &[u8]) -> Option<std::path::PathBuf> {
    let rel = OsStr::from_bytes(rel);
    dirs.iter()
        .map(|d| d.join(rel))
        .find(|p| std::fs::symlink_metadata(p).is_ok())
}

fn write_entries(
    source: &dyn Fn(&[u8]) -> Result<std::path::PathBuf>,
    opaque_markers: bool,
    changes: &[Change],
    out: &mut dyn Write,
    owner: &dyn Fn(u32, u32) -> Result<(u32, u32)>,
) -> Result<u64> {
    let mut counting = Counting {
        inner: out,
        count: 0,
    };
    let mut tar = TarWriter::new(&mut counting);
    let mut inodes: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for change in changes {
        let rel = change.path.trim_start_matches('/').as_bytes().to_vec();
        if change.kind == ChangeKind::Delete {
            // Mode 0, as upstream writes a deletion.
            let entry = TarEntry {
                path: whiteout_for(&rel),
                typeflag: b'0',
                ..TarEntry::default()
            };
            tar.append(&entry, None).map_err(Error::writing_stream)?;
            continue;
        }
        let path = source(&rel)?;
        let meta = std::fs::symlink_metadata(&path).at(Op::Stat, &path)?;
        let (uid, gid) = owner(meta.uid(), meta.gid())?;
        let mut entry = TarEntry {
            path: rel.clone(),
            mode: meta.mode() & 0o7777,
            uid,
            gid,
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec() as u32,
            xattrs: xattrs(&path),
            ..TarEntry::default()
        };
        let kind = kind_of(&meta);
        match kind {
            EntryKind::Dir => {
                entry.typeflag = b'5';
                entry.path.push(b'/');
            }
            EntryKind::Symlink => {
                entry.typeflag = b'2';
                entry.link = link_target(&path)?;
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                entry.typeflag = if kind == EntryKind::CharDevice {
                    b'3'
                } else {
                    b'4'
                };
                entry.dev = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
            }
            EntryKind::Fifo => entry.typeflag = b'6',
            _ => {
                if meta.nlink() > 1 {
                    if let Some(first) = inodes.get(&(meta.dev(), meta.ino())) {
                        entry.typeflag = b'1';
                        entry.link = first.clone();
                        tar.append(&entry, None).map_err(Error::writing_stream)?;
                        continue;
                    }
                    inodes.insert((meta.dev(), meta.ino()), rel.clone());
                }
                entry.typeflag = b'0';
                entry.size = meta.size();
                let mut file = File::open(&path).at(Op::Open, &path)?;
                tar.append(&entry, Some(&mut file))
                    .map_err(Error::writing_stream)?;
                continue;
            }
        }
        tar.append(&entry, None).map_err(Error::writing_stream)?;
        if opaque_markers && kind == EntryKind::Dir && marked_opaque(&path) {
            let marker = TarEntry {
                path: opaque_marker(&rel),
                typeflag: b'0',
                mode: 0o644,
                ..TarEntry::default()
            };
            tar.append(&marker, None).map_err(Error::writing_stream)?;
        }
    }
    tar.finish().map_err(Error::writing_stream)?;
    Ok(counting.count)
}

struct Counting<'a> {
    inner: &'a mut dyn Write,
    count: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_with_changes_inside_are_modified_as_upstreams_tree_comparison_has_it() {
        let c = |path: &str, kind| Change {
            path: path.into(),
            kind,
        };
        let changes = vec![
            c("/a/b/c", ChangeKind::Add),
            c("/a/b/d", ChangeKind::Delete),
            c("/e", ChangeKind::Add),
            c("/e/f", ChangeKind::Add),
            c("/g/h", ChangeKind::Modify),
            c("/g", ChangeKind::Modify),
            c("/n/m", ChangeKind::Add),
        ];
        let existed = |p: &[u8]| p != b"n";
        assert_eq!(
            with_changed_parents(changes.clone(), existed, true),
            vec![
                c("/a", ChangeKind::Modify),
                c("/a/b", ChangeKind::Modify),
                c("/a/b/c", ChangeKind::Add),
                c("/a/b/d", ChangeKind::Delete),
                c("/e", ChangeKind::Add),
                c("/e/f", ChangeKind::Add),
                c("/g/h", ChangeKind::Modify),
                c("/g", ChangeKind::Modify),
                c("/n", ChangeKind::Add),
                c("/n/m", ChangeKind::Add),
            ]
        );
        let mut only_new = changes;
        only_new.insert(6, c("/n", ChangeKind::Add));
        assert_eq!(
            with_changed_parents(only_new.clone(), existed, false),
            only_new
        );
    }
}
