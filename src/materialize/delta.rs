//! Deltas between parentless layers: a squashed image that shares most of
//! its files with another one already materialized (a sibling on the same
//! base, a rebuild) is materialized as only what differs, stacked on the
//! other's directory: changed and new entries, plus whiteouts for what it
//! lacks. The merged view is the same tree; building it costs a fraction.

// Seeded per process: paths come from untrusted layers.
use foldhash::{HashMap, HashSet};
use rayon::prelude::*;

use crate::manifest::{split_last, whiteout_for, Entry, EntryKind, LayerManifest};

/// Whether two entries make the same object: everything but their place
/// in the tar stream.
fn same(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind
        && a.path == b.path
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.mtime == b.mtime
        && a.mtime_nsec == b.mtime_nsec
        && a.link == b.link
        && a.dev_major == b.dev_major
        && a.dev_minor == b.dev_minor
        && a.xattrs == b.xattrs
        && a.size == b.size
        && a.chunks == b.chunks
}

/// Whether a delta can be taken against (or for) `m`: a layer on its own
/// (no whiteouts or opaque markers, which only mean something above a
/// parent) that gives every path once (so that its entries are its tree).
pub fn stands_alone(m: &LayerManifest) -> bool {
    if m.parent.is_some()
        || m.entries
            .iter()
            .any(|e| matches!(e.kind, EntryKind::Whiteout | EntryKind::Opaque))
    {
        return false;
    }
    let mut paths: HashSet<&[u8]> =
        HashSet::with_capacity_and_hasher(m.entries.len(), Default::default());
    m.entries.iter().all(|e| paths.insert(e.path.as_slice()))
}

/// The layer that, mounted over `base`, shows exactly `full`: `full`'s
/// entries that `base` does not provide unchanged (in tar order), then
/// whiteouts for the topmost paths of `base` that `full` lacks. Both must
/// [`stand_alone`](stands_alone).
pub fn delta(full: &LayerManifest, base: &LayerManifest) -> LayerManifest {
    fn by_path(m: &LayerManifest) -> HashMap<&[u8], &Entry> {
        m.entries.iter().map(|e| (e.path.as_slice(), e)).collect()
    }
    let (base_by_path, full_by_path) = rayon::join(|| by_path(base), || by_path(full));
    let differs: Vec<bool> = full
        .entries
        .par_iter()
        .map(|e| {
            !base_by_path
                .get(e.path.as_slice())
                .is_some_and(|b| same(e, b))
        })
        .collect();
    let mut changed: HashSet<&[u8]> = full
        .entries
        .iter()
        .zip(&differs)
        .filter(|(_, differs)| **differs)
        .map(|(e, _)| e.path.as_slice())
        .collect();
    // A hard link and its target come from the same layer, or their
    // content and inode would not be shared: when either differs, both
    // (and every other link to the target) go into the delta.
    loop {
        let mut grew = false;
        for e in full
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Hardlink)
        {
            let (link, target) = (e.path.as_slice(), e.link.as_slice());
            if changed.contains(link) != changed.contains(target) {
                changed.insert(link);
                changed.insert(target);
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    let mut entries: Vec<Entry> = full
        .entries
        .par_iter()
        .filter(|e| changed.contains(e.path.as_slice()))
        .cloned()
        .collect();
    for b in &base.entries {
        if b.path.is_empty() || full_by_path.contains_key(b.path.as_slice()) {
            continue;
        }
        let (parent, _) = split_last(&b.path);
        // Below a removed directory, or below a path that is no longer
        // a directory, the path is hidden already.
        let parent_is_dir = parent.is_empty()
            || full_by_path
                .get(parent)
                .is_some_and(|p| p.kind == EntryKind::Dir);
        if !parent_is_dir {
            continue;
        }
        entries.push(Entry::new(EntryKind::Whiteout, whiteout_for(&b.path)));
    }
    LayerManifest {
        chunker_algorithm: full.chunker_algorithm.clone(),
        chunker: full.chunker,
        parent: None,
        compression: full.compression,
        compressed_digest: full.compressed_digest.clone(),
        compressed_size: full.compressed_size,
        diff_digest: full.diff_digest.clone(),
        diff_size: full.diff_size,
        uids: full.uids.clone(),
        gids: full.gids.clone(),
        entries,
        // Deltas are built, never exported: no raw stream.
        raw_len: 0,
        raw: Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An entry of `kind` at `path` for tests.
    pub(crate) fn entry(kind: EntryKind, path: &str, mtime: i64) -> Entry {
        Entry {
            mode: 0o755,
            mtime,
            raw_len: mtime as u64,
            ..Entry::new(kind, path.as_bytes().to_vec())
        }
    }

    /// A manifest of `entries` for tests.
    pub(crate) fn manifest(entries: Vec<Entry>) -> LayerManifest {
        LayerManifest::of_entries(entries)
    }

    fn paths(m: &LayerManifest) -> Vec<String> {
        m.entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect()
    }

    #[test]
    fn a_layer_that_gives_a_path_twice_does_not_stand_alone() {
        use EntryKind::*;
        let once = manifest(vec![entry(Dir, "d", 1), entry(File, "d/x", 1)]);
        assert!(stands_alone(&once));
        let twice = manifest(vec![
            entry(Dir, "d", 1),
            entry(File, "d/x", 1),
            entry(File, "d", 2),
        ]);
        assert!(!stands_alone(&twice));
    }

    #[test]
    fn keeps_what_differs_and_whites_out_the_topmost_missing_paths() {
        use EntryKind::*;
        let base = manifest(vec![
            entry(Dir, "", 1),
            entry(Dir, "etc", 1),
            entry(File, "etc/same", 1),
            entry(File, "etc/old", 1),
            entry(Dir, "gone", 1),
            entry(File, "gone/inside", 1),
            entry(Dir, "was-dir", 1),
            entry(File, "was-dir/child", 1),
            entry(File, "target", 1),
            entry(Hardlink, "link", 1),
        ]);
        let mut full = manifest(vec![
            entry(Dir, "", 1),
            entry(Dir, "etc", 2),
            entry(File, "etc/same", 1),
            entry(File, "etc/new", 2),
            entry(File, "was-dir", 2),
            entry(File, "target", 2),
            entry(Hardlink, "link", 1),
        ]);
        full.entries[6].link = b"target".to_vec();
        let mut base = base;
        base.entries[9].link = b"target".to_vec();
        let d = delta(&full, &base);
        assert_eq!(
            paths(&d),
            [
                "etc",
                "etc/new",
                "was-dir",
                "target",
                "link",
                "etc/.wh.old",
                ".wh.gone"
            ]
        );
    }
}
