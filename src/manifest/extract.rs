//! What extracting a layer leaves: its entries applied in tar order, as
//! `tar -x` and upstream's `pkg/archive` apply them, over the tree of the
//! layers below.
//!
//! - An entry replaces what stands at its path (with everything below it),
//!   unless both are directories: the directory then stays and takes the
//!   later entry's metadata. The last entry for a path wins.
//! - An entry below a path the layer made a non-directory (a file, a
//!   symlink) cannot be extracted: `tar -x` fails on it, and the
//!   materializer never goes through a symlink.
//! - A hard link needs a target that the layer made earlier and that is
//!   still there, and is not a directory: upstream's overlay driver
//!   extracts a layer into an empty directory, where a link to a lower
//!   layer's file fails.
//! - Whiteouts and opaque markers hide the lower layers' content, never
//!   the layer's own entries, wherever they stand in the tar (OCI).
//!
//! The import refuses a layer whose extraction fails (it could never be
//! mounted); the materializer and the change listings use what is left.
//! No I/O here: entries in, outcome out.

// Seeded per process: paths come from untrusted layers.
use foldhash::HashMap;

use super::model::{Entry, EntryKind};
use super::path::{lossy, opaque_dir, split_last, WHITEOUT_PREFIX};

/// Why an entry cannot be extracted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The entry's index in tar order.
    pub entry: usize,
    /// What is wrong, naming the entry's path.
    pub what: String,
}

/// The outcome of extracting a layer's entries.
pub(crate) struct Extraction<'a> {
    /// Per entry: whether it stands in the tree at the end (a directory
    /// given twice counts once, as its last entry).
    kept: Vec<bool>,
    /// Whiteouts that hide a lower path at which the layer leaves nothing:
    /// in the overlay format, a whiteout device, in tar order.
    whiteouts: Vec<usize>,
    /// Directories that hide the lower layers' content (in the overlay
    /// format, opaque): marked opaque, or made again after the layer
    /// deleted what stood at their path.
    hiding: Vec<&'a [u8]>,
    /// Directories the layer needs but does not list.
    implied: Vec<&'a [u8]>,
    /// The first entry that cannot be extracted (the others are still
    /// taken as far as they can be).
    refusal: Option<Refusal>,
}

const NONE: u32 = u32::MAX;
const ROOT: u32 = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Dir,
    /// Anything else an entry makes: file, symlink, device, fifo, link.
    Other,
    /// A path a whiteout hides and the layer leaves empty.
    Whiteout,
}

struct Node<'a> {
    /// The full path (for a whiteout, the whiteout entry's own path).
    path: &'a [u8],
    /// The last component (for a whiteout, the name it hides).
    name: &'a [u8],
    parent: u32,
    /// The entry that made it (the last one, for a directory), or
    /// [`NONE`] for the root and directories the layer does not list.
    entry: u32,
    shape: Shape,
    /// Whether the lower layers' content at this path is hidden.
    hides: bool,
}

/// How [`Tree::dir`] treats a path that is missing or not a directory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Only find: a missing component is `Missing`.
    Find,
    /// Make missing directories (as `tar -x` does for unlisted parents);
    /// a whiteout on the way becomes a directory that hides the lower
    /// one.
    Make,
    /// Make missing directories, but stop at a whiteout (what lies below
    /// a hidden path is hidden already).
    MakeQuiet,
}

enum Found {
    Dir(u32),
    Missing,
    /// The node on the way that is not a directory.
    NotDir(u32),
}

struct Tree<'a> {
    nodes: Vec<Node<'a>>,
    /// (parent, name) -> the node there now.
    edges: HashMap<(u32, &'a [u8]), u32>,
    /// Directory paths found before; cleared when a directory is replaced.
    dirs: HashMap<&'a [u8], u32>,
}

impl<'a> Tree<'a> {
    fn new(capacity: usize) -> Tree<'a> {
        let mut nodes = Vec::with_capacity(capacity + 1);
        nodes.push(Node {
            path: b"",
            name: b"",
            parent: NONE,
            entry: NONE,
            shape: Shape::Dir,
            hides: false,
        });
        Tree {
            nodes,
            edges: HashMap::with_capacity_and_hasher(capacity, Default::default()),
            dirs: HashMap::default(),
        }
    }

    /// Adds a node at (`parent`, `name`), replacing what was there.
    fn add(&mut self, node: Node<'a>) -> u32 {
        let id = self.nodes.len() as u32;
        if let Some(old) = self.edges.insert((node.parent, node.name), id) {
            if self.nodes[old as usize].shape == Shape::Dir {
                self.dirs.clear();
            }
        }
        self.nodes.push(node);
        id
    }

    fn child(&self, parent: u32, name: &[u8]) -> Option<u32> {
        self.edges.get(&(parent, name)).copied()
    }

    /// The directory at `path` (normalised; empty for the root).
    fn dir(&mut self, path: &'a [u8], how: Walk) -> Found {
        if path.is_empty() {
            return Found::Dir(ROOT);
        }
        if let Some(&id) = self.dirs.get(path) {
            return Found::Dir(id);
        }
        let mut at = ROOT;
        let mut end = 0;
        for name in path.split(|&b| b == b'/') {
            end += name.len();
            let prefix = &path[..end];
            end += 1;
            at = match self.child(at, name) {
                Some(id) => match self.nodes[id as usize].shape {
                    Shape::Dir => id,
                    Shape::Whiteout if how == Walk::Make => self.add(Node {
                        path: prefix,
                        name,
                        parent: at,
                        entry: NONE,
                        shape: Shape::Dir,
                        hides: true,
                    }),
                    _ => return Found::NotDir(id),
                },
                None if how == Walk::Find => return Found::Missing,
                None => self.add(Node {
                    path: prefix,
                    name,
                    parent: at,
                    entry: NONE,
                    shape: Shape::Dir,
                    hides: false,
                }),
            };
            self.dirs.insert(prefix, at);
        }
        Found::Dir(at)
    }
}

/// What a node is, for messages.
fn shape_of(entries: &[Entry], node: &Node<'_>) -> &'static str {
    match node.shape {
        Shape::Whiteout => "a whiteout",
        Shape::Dir => "a directory",
        Shape::Other => match entries.get(node.entry as usize).map(|e| e.kind) {
            Some(EntryKind::Symlink) => "a symlink",
            Some(EntryKind::Hardlink) => "a hard link",
            Some(EntryKind::CharDevice | EntryKind::BlockDevice) => "a device",
            Some(EntryKind::Fifo) => "a fifo",
            _ => "a file",
        },
    }
}

impl<'a> Extraction<'a> {
    /// Extracts `entries` (in tar order).
    pub fn of(entries: &'a [Entry]) -> Extraction<'a> {
        let mut tree = Tree::new(entries.len());
        let mut refusal = None;
        for (i, e) in entries.iter().enumerate() {
            if let Err(what) = take(&mut tree, entries, i, e) {
                refusal.get_or_insert(Refusal { entry: i, what });
            }
        }
        // A node stands when its parent does and still holds it.
        let mut alive = vec![false; tree.nodes.len()];
        alive[ROOT as usize] = true;
        let mut out = Extraction {
            kept: vec![false; entries.len()],
            whiteouts: Vec::new(),
            hiding: Vec::new(),
            implied: Vec::new(),
            refusal,
        };
        for (id, node) in tree.nodes.iter().enumerate() {
            if id != ROOT as usize {
                alive[id] = alive[node.parent as usize]
                    && tree.child(node.parent, node.name) == Some(id as u32);
            }
            if !alive[id] {
                continue;
            }
            match node.shape {
                Shape::Whiteout => out.whiteouts.push(node.entry as usize),
                _ if node.entry != NONE => out.kept[node.entry as usize] = true,
                _ if id != ROOT as usize => out.implied.push(node.path),
                _ => {}
            }
            if node.shape == Shape::Dir && node.hides {
                out.hiding.push(node.path);
            }
        }
        out.whiteouts.sort_unstable();
        out
    }

    /// Whether entry `i` stands in the tree at the end.
    pub fn kept(&self, i: usize) -> bool {
        self.kept[i]
    }

    /// The whiteouts (entry indices, in tar order) that hide a lower path
    /// at which the layer leaves nothing.
    pub fn whiteouts(&self) -> &[usize] {
        &self.whiteouts
    }

    /// Directories that hide the lower layers' content.
    pub fn hiding(&self) -> &[&'a [u8]] {
        &self.hiding
    }

    /// Directories the layer needs but does not list.
    pub fn implied(&self) -> &[&'a [u8]] {
        &self.implied
    }

    /// The first entry that cannot be extracted, if any.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.refusal.as_ref()
    }
}

/// Applies entry `i` to the tree.
fn take<'a>(
    tree: &mut Tree<'a>,
    entries: &'a [Entry],
    i: usize,
    e: &'a Entry,
) -> Result<(), String> {
    let path = e.path.as_slice();
    match e.kind {
        EntryKind::Whiteout => {
            let (dir, name) = split_last(path);
            let hidden = name.strip_prefix(WHITEOUT_PREFIX).unwrap_or_default();
            if matches!(hidden, b"" | b"." | b"..") {
                return Err(format!(
                    "whiteout {:?} names no entry it could hide",
                    lossy(path)
                ));
            }
            // Below a path the layer made something else, or hid, the
            // lower content is hidden already.
            let Found::Dir(parent) = tree.dir(dir, Walk::MakeQuiet) else {
                return Ok(());
            };
            match tree.child(parent, hidden) {
                Some(id) => tree.nodes[id as usize].hides = true,
                None => {
                    tree.add(Node {
                        path,
                        name: hidden,
                        parent,
                        entry: i as u32,
                        shape: Shape::Whiteout,
                        hides: true,
                    });
                }
            }
            Ok(())
        }
        EntryKind::Opaque => {
            if let Found::Dir(id) = tree.dir(opaque_dir(path), Walk::MakeQuiet) {
                tree.nodes[id as usize].hides = true;
            }
            Ok(())
        }
        _ if path.is_empty() => {
            if e.kind != EntryKind::Dir {
                return Err("an entry that is not a directory names the layer's root".into());
            }
            tree.nodes[ROOT as usize].entry = i as u32;
            Ok(())
        }
        kind => {
            let (dir, name) = split_last(path);
            let parent = match tree.dir(dir, Walk::Make) {
                Found::Dir(id) => id,
                Found::NotDir(id) => {
                    let node = &tree.nodes[id as usize];
                    return Err(format!(
                        "{:?} lies below {:?}, which an earlier entry made {}",
                        lossy(path),
                        lossy(node.path),
                        shape_of(entries, node)
                    ));
                }
                // Walk::Make makes what is missing.
                Found::Missing => return Ok(()),
            };
            if kind == EntryKind::Hardlink {
                check_link_target(tree, entries, e)?;
            }
            let dir = kind == EntryKind::Dir;
            let old = tree.child(parent, name);
            match old {
                Some(id) if dir && tree.nodes[id as usize].shape == Shape::Dir => {
                    tree.nodes[id as usize].entry = i as u32;
                }
                _ => {
                    tree.add(Node {
                        path,
                        name,
                        parent,
                        entry: i as u32,
                        shape: if dir { Shape::Dir } else { Shape::Other },
                        // What the layer put there before (or hid) went
                        // with the lower content.
                        hides: old.is_some(),
                    });
                }
            }
            Ok(())
        }
    }
}

/// Requires hard link `e`'s target to be an earlier entry of the layer
/// that is still there and is not a directory.
fn check_link_target<'a>(
    tree: &mut Tree<'a>,
    entries: &[Entry],
    e: &'a Entry,
) -> Result<(), String> {
    let (path, link) = (e.path.as_slice(), e.link.as_slice());
    let refuse = |why: &str| {
        Err(format!(
            "hard link {:?}: its target {:?} {why}",
            lossy(path),
            lossy(link)
        ))
    };
    if link == path {
        return refuse("is the link itself");
    }
    if link.starts_with(path) && link.get(path.len()) == Some(&b'/') {
        return refuse("lies below the link, which replaces it");
    }
    let (dir, name) = split_last(link);
    let target = match tree.dir(dir, Walk::Find) {
        Found::Dir(parent) => tree.child(parent, name),
        Found::NotDir(id) => {
            let node = &tree.nodes[id as usize];
            return refuse(&format!(
                "goes through {:?}, which an earlier entry made {}",
                lossy(node.path),
                shape_of(entries, node)
            ));
        }
        Found::Missing => None,
    };
    match target.map(|id| &tree.nodes[id as usize]) {
        Some(node) if node.shape == Shape::Other => Ok(()),
        Some(node) if node.shape == Shape::Dir => refuse("is a directory"),
        _ => refuse("is not an entry the layer made before it (and left in place)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntryKind::*;

    fn e(kind: EntryKind, path: &str) -> Entry {
        Entry {
            mode: 0o644,
            ..Entry::new(kind, path.as_bytes().to_vec())
        }
    }

    fn link(kind: EntryKind, path: &str, target: &str) -> Entry {
        Entry {
            link: target.as_bytes().to_vec(),
            ..e(kind, path)
        }
    }

    fn kept(entries: &[Entry]) -> Vec<usize> {
        let x = Extraction::of(entries);
        assert_eq!(x.refusal(), None);
        (0..entries.len()).filter(|&i| x.kept(i)).collect()
    }

    fn refusal(entries: &[Entry]) -> Refusal {
        Extraction::of(entries)
            .refusal()
            .cloned()
            .expect("a refusal")
    }

    fn paths<'a>(list: &[&'a [u8]]) -> Vec<&'a str> {
        list.iter()
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect()
    }

    #[test]
    fn the_last_entry_for_a_path_wins() {
        // file then file, file then symlink, symlink then file
        assert_eq!(kept(&[e(File, "a"), e(File, "a")]), [1]);
        assert_eq!(kept(&[e(File, "a"), link(Symlink, "a", "x")]), [1]);
        assert_eq!(kept(&[link(Symlink, "a", "/"), e(File, "a")]), [1]);
        // dir then file: the directory goes with what it held
        assert_eq!(kept(&[e(Dir, "d"), e(File, "d/x"), e(File, "d")]), [2]);
        // file then dir
        assert_eq!(kept(&[e(File, "d"), e(Dir, "d"), e(File, "d/y")]), [1, 2]);
        // dir then dir: one directory, the later entry's metadata
        assert_eq!(kept(&[e(Dir, "d"), e(File, "d/x"), e(Dir, "d")]), [1, 2]);
        // a hard link onto an existing path
        assert_eq!(
            kept(&[e(File, "a"), e(File, "b"), link(Hardlink, "b", "a")]),
            [0, 2]
        );
        // a directory replaced twice loses what it held the first time
        assert_eq!(
            kept(&[
                e(Dir, "d"),
                e(File, "d/old"),
                e(File, "d"),
                e(Dir, "d"),
                e(File, "d/new")
            ]),
            [3, 4]
        );
    }

    #[test]
    fn directories_made_again_hide_the_lower_ones_and_whiteouts_only_hide_lower_paths() {
        let entries = [
            e(File, "d"),
            e(Dir, "d"),
            e(Dir, "keep"),
            e(Dir, "keep"),
            e(Whiteout, ".wh.gone"),
            e(File, "back"),
            e(Whiteout, ".wh.back"),
            e(Whiteout, ".wh.dir"),
            e(File, "dir/x"),
            e(Whiteout, ".wh.top"),
            e(Whiteout, "top/.wh.below"),
            e(Opaque, "o/.wh..wh..opq"),
            e(Whiteout, "w/.wh.x"),
        ];
        let x = Extraction::of(&entries);
        assert_eq!(x.refusal(), None);
        assert_eq!(x.whiteouts(), [4, 9, 12]);
        assert_eq!(paths(x.hiding()), ["d", "dir", "o"]);
        assert_eq!(paths(x.implied()), ["dir", "o", "w"]);
        assert!(x.kept(5) && !x.kept(2) && x.kept(3));
    }

    #[test]
    fn whiteouts_and_markers_below_non_directories_are_moot() {
        let entries = [
            e(File, "f"),
            e(Whiteout, "f/.wh.x"),
            e(Opaque, "f/.wh..wh..opq"),
        ];
        let x = Extraction::of(&entries);
        assert_eq!(x.refusal(), None);
        assert!(x.whiteouts().is_empty() && x.hiding().is_empty());
    }

    #[test]
    fn hard_links_need_an_earlier_non_directory_that_is_still_there() {
        for (entries, what) in [
            (vec![link(Hardlink, "h", "missing")], "is not an entry"),
            (
                vec![link(Hardlink, "h", "later"), e(File, "later")],
                "is not an entry",
            ),
            (
                vec![e(Dir, "d"), link(Hardlink, "h", "d")],
                "is a directory",
            ),
            (
                vec![e(File, "a"), link(Hardlink, "a", "a")],
                "the link itself",
            ),
            (
                vec![e(Dir, "d"), e(File, "d/f"), link(Hardlink, "d", "d/f")],
                "lies below the link",
            ),
            (
                vec![
                    e(Dir, "d"),
                    e(File, "d/f"),
                    e(File, "d"),
                    link(Hardlink, "h", "d/f"),
                ],
                "goes through \"d\", which an earlier entry made a file",
            ),
            (
                vec![e(Whiteout, ".wh.x"), link(Hardlink, "h", "x")],
                "is not an entry",
            ),
            (
                vec![link(Symlink, "l", "/etc"), link(Hardlink, "h", "l/passwd")],
                "goes through \"l\", which an earlier entry made a symlink",
            ),
        ] {
            let r = refusal(&entries);
            assert!(r.what.contains(what), "{entries:?}: {}", r.what);
            assert_eq!(entries[r.entry].kind, Hardlink);
            let name = String::from_utf8_lossy(&entries[r.entry].path);
            assert!(
                r.what.starts_with(&format!("hard link {name:?}")),
                "{}",
                r.what
            );
        }
        assert_eq!(
            kept(&[e(File, "a"), link(Hardlink, "h", "a"), e(File, "a")]),
            [1, 2]
        );
        assert_eq!(
            kept(&[link(Symlink, "s", "x"), link(Hardlink, "h", "s")]),
            [0, 1]
        );
    }

    #[test]
    fn entries_below_non_directories_are_refused() {
        for (entries, below) in [
            (
                vec![link(Symlink, "a", "/"), e(File, "a/tmp/x")],
                "a symlink",
            ),
            (vec![e(File, "a"), e(File, "a/b/c")], "a file"),
            (vec![e(File, "a"), e(Dir, "a/b")], "a file"),
            (vec![e(Fifo, "p"), e(Dir, "p/q")], "a fifo"),
        ] {
            let r = refusal(&entries);
            assert_eq!(r.entry, 1);
            assert!(r.what.contains(below), "{}", r.what);
            assert!(
                r.what.contains("lies below \"a\"") || r.what.contains("lies below \"p\""),
                "{}",
                r.what
            );
        }
        // Made a directory again first, it takes entries.
        assert_eq!(kept(&[e(File, "a"), e(Dir, "a"), e(File, "a/b")]), [1, 2]);
        // A whiteout on the way becomes a directory that hides the lower.
        let entries = [e(Whiteout, ".wh.a"), e(File, "a/b")];
        let x = Extraction::of(&entries);
        assert_eq!(x.refusal(), None);
        assert_eq!(paths(x.hiding()), ["a"]);
        assert!(x.whiteouts().is_empty());
    }

    #[test]
    fn whiteouts_of_dot_names_are_refused() {
        for name in [".wh.", ".wh..", ".wh..."] {
            let r = refusal(&[e(Whiteout, &format!("d/{name}"))]);
            assert!(r.what.contains("names no entry"), "{}", r.what);
        }
    }

    #[test]
    fn a_root_that_is_not_a_directory_is_refused() {
        assert!(refusal(&[e(File, "")]).what.contains("root"));
        assert_eq!(kept(&[e(Dir, ""), e(File, "a")]), [0, 1]);
    }
}
