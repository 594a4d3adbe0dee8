//! The layout's own names in the directories where item IDs live too, the
//! store's fixed directories and files (`manifests/`, `chunks/`,
//! `objects/`, the record directories, `storage.lock`, ...), a layer's
//! entries in the driver's directory (`diff`, `link`, `work`, ...), and
//! the paths a layer's content takes under a graph root for each driver.
//! What is inside `chunks/` and `objects/` is the pool's and the
//! materializer's to name.
//!
//! IDs name directories and files beside the layout's own entries:
//! `<drv>-layers/<id>` beside `layers.json` and `layers.lock` (and, as
//! upstream keeps them, `<id>.tar-split.gz`), `<drv>-images/<id>` beside
//! `images.json`, `overlay/<id>` beside `l/` (the short links) and
//! `empty/` (the empty lower directory), `manifests/<id>` beside the
//! `.tmp-` files of writers, and so on. This module alone decides which
//! names are the layout's ([`is_reserved`]): new items may not take them
//! as IDs, and a record read from disk that has one (written before they
//! were reserved, or by hand) never gets files made or removed under its
//! ID where the layout's entries live (see [`owns_paths`]). Other modules
//! use the constants here to build those paths and never spell the names
//! to recognise them.

use std::fs;
use std::path::{Path, PathBuf};

/// `overlay/l/`: the short links (`l/<short>` -> `../<id>/diff`).
pub(crate) const SHORT_LINKS: &str = "l";
/// `overlay/<id>/empty/`: the empty lower directory of a parentless
/// layer (upstream's).
pub(crate) const EMPTY_LOWER: &str = "empty";
/// `<drv>-layers/.empty/`: ours, the empty lower directory of a mount
/// with too few lower layers.
pub(crate) const SHARED_EMPTY: &str = ".empty";
/// `vfs/dir/`: the vfs trees.
pub(crate) const VFS_TREES: &str = "dir";
/// The layer records in `<drv>-layers/`, and their lock.
pub(crate) const LAYERS_JSON: &str = "layers.json";
pub(crate) const LAYERS_LOCK: &str = "layers.lock";
/// The image records in `<drv>-images/`, and their lock.
pub(crate) const IMAGES_JSON: &str = "images.json";
pub(crate) const IMAGES_LOCK: &str = "images.lock";
/// The container records in `<drv>-containers/`, and their lock.
pub(crate) const CONTAINERS_JSON: &str = "containers.json";
pub(crate) const CONTAINERS_LOCK: &str = "containers.lock";
/// The mount records in the run root's `<drv>-layers/`, and their lock.
pub(crate) const MOUNTS_JSON: &str = "mountpoints.json";
pub(crate) const MOUNTS_LOCK: &str = "mountpoints.lock";
/// `<drv>-layers/.incomplete/<id>.lock`: imports in progress.
pub(crate) const INCOMPLETE: &str = ".incomplete";
/// `<drv>-layers/.deleting/<id>`: deletes in progress.
pub(crate) const DELETING: &str = ".deleting";
/// `<drv>-layers/.moving/<id>`: a layer being moved to the split image
/// store (`store/image_store.rs`).
pub(crate) const MOVING: &str = ".moving";
/// `<drv>-layers/.emptied/<id>`: a directory-backed layer whose empty
/// directory an `applydiff` removed to import into the pool; while the
/// marker is there, a missing directory means an empty layer.
pub(crate) const EMPTIED: &str = ".emptied";
/// `<drv>-layers/.used/<id>`: when a mount last used a layer's
/// directory.
pub(crate) const USED_STAMPS: &str = ".used";
/// `<drv>-layers/.unsynced/`: markers of builds not yet on disk.
pub(crate) const UNSYNCED: &str = ".unsynced";
/// A layer's entries in `overlay/<id>/`, upstream's names: its content,
/// its short name, the overlay work and mount directories, the lower
/// layers' short links (`lower`, for a layer with a parent; a parentless
/// one has an `empty/` directory, [`EMPTY_LOWER`]); ours: the layer a
/// delta is stacked on.
pub(crate) const DIFF: &str = "diff";
/// Below `diff` of a layer that maps IDs otherwise than its parent: the
/// tree of the layers below with the layer's owners (Go's overlay mounts
/// `diff1`, `diff2`, ... right below `diff`).
pub(crate) const MAPPED_BELOW: &str = "diff1";
pub(crate) const LINK: &str = "link";
pub(crate) const WORK: &str = "work";
pub(crate) const MERGED: &str = "merged";
pub(crate) const LOWER: &str = "lower";
pub(crate) const BASE: &str = "base";
/// `<drv>-layers/<id>.tar-split.gz`: upstream's tar-split of a layer.
pub(crate) const TAR_SPLIT_SUFFIX: &str = ".tar-split.gz";
/// `<id>/userdata/` of an image or a container, in the graph and the run
/// root.
pub(crate) const USERDATA: &str = "userdata";
/// `<graph>/storage.lock` (upstream's) and `<graph>/gc.lock` (one `gc`
/// at a time).
pub(crate) const STORAGE_LOCK: &str = "storage.lock";
pub(crate) const GC_LOCK: &str = "gc.lock";

/// Names of the driver's own entries beside layer directories.
const DRIVER_ENTRIES: &[&str] = &[SHORT_LINKS, EMPTY_LOWER];

/// Endings of the layout's file names in record directories: record
/// files (ours and upstream's `volatile-*.json`), lock files, and
/// upstream's `<id>.tar-split.gz` beside the layers' big-data directories.
const FILE_SUFFIXES: &[&str] = &[".json", ".lock", TAR_SPLIT_SUFFIX];

/// Whether `name` is, or could be, one of the layout's own entries in a
/// directory where item IDs live: names starting with `.` (temporary
/// files, `.incomplete/`, `.used/`, ...), the driver's `l` and `empty`,
/// and names ending like record, lock and tar-split files. Such a name is
/// refused as the ID of a new item.
pub(crate) fn is_reserved(name: &str) -> bool {
    name.starts_with('.')
        || DRIVER_ENTRIES.contains(&name)
        || FILE_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Whether files may be made or removed under `id`'s name in the
/// directories where IDs live: not for a reserved name, which a record
/// read from disk may still carry (the layout's entry of that name is not
/// the item's).
pub(crate) fn owns_paths(id: &str) -> bool {
    !is_reserved(id)
}

/// `<graph>/manifests/`: one manifest per sealed layer, of every driver.
pub(crate) fn manifests_dir(graph: &Path) -> PathBuf {
    graph.join("manifests")
}

/// `<graph>/chunks/`: the chunk pool, shared by both drivers.
pub(crate) fn pool_dir(graph: &Path) -> PathBuf {
    graph.join("chunks")
}

/// `<graph>/objects/`: the materializer's file objects.
pub(crate) fn objects_dir(graph: &Path) -> PathBuf {
    graph.join("objects")
}

/// `<graph>/<driver>`.
pub(crate) fn driver_dir(graph: &Path, driver: &str) -> PathBuf {
    graph.join(driver)
}

/// The directory that holds a layer's content for `driver` under `graph`:
/// `overlay/<id>/diff`, or the vfs tree `vfs/dir/<id>`.
pub(crate) fn content_dir(graph: &Path, driver: &str, id: &str) -> PathBuf {
    match driver {
        "vfs" => driver_dir(graph, driver).join(VFS_TREES).join(id),
        _ => driver_dir(graph, driver).join(id).join(DIFF),
    }
}

/// The directory under `graph` whose entries are `driver`'s layer
/// directories: `overlay/` or `vfs/dir/`.
pub(crate) fn layer_dirs_parent(graph: &Path, driver: &str) -> PathBuf {
    match driver {
        "vfs" => driver_dir(graph, driver).join(VFS_TREES),
        _ => driver_dir(graph, driver),
    }
}

/// `<graph>/manifests/<id>`: a sealed layer's manifest, whichever
/// driver's records hold the layer.
pub(crate) fn manifest_path(graph: &Path, id: &str) -> PathBuf {
    manifests_dir(graph).join(id)
}

/// `<layers dir>/<id>.tar-split.gz`: the tar-split of layer `id`, beside
/// the layer records (in the graph root's `<drv>-layers/`).
pub(crate) fn tar_split_path(layers_dir: &Path, id: &str) -> PathBuf {
    layers_dir.join(format!("{id}{TAR_SPLIT_SUFFIX}"))
}

/// The directories of ours that are no layer's ([`USED_STAMPS`],
/// [`UNSYNCED`], [`SHARED_EMPTY`]), in `<drv>-layers/` beside the
/// records. Not in the driver's directory: upstream's overlay driver
/// takes every directory there for a layer's when it makes its short
/// links again (`recreateSymlinks`), and fails on one without a `link`.
pub(crate) fn side_dir(graph: &Path, driver: &str, name: &str) -> PathBuf {
    layers_dir(graph, driver).join(name)
}

/// Where earlier versions kept [`side_dir`]'s directories: in the
/// driver's directory (`overlay/.used`, `overlay/empty`, ...).
pub(crate) fn former_side_dirs(graph: &Path, driver: &str) -> [(PathBuf, &'static str); 3] {
    let drv = driver_dir(graph, driver);
    [
        (drv.join(USED_STAMPS), USED_STAMPS),
        (drv.join(UNSYNCED), UNSYNCED),
        (drv.join(EMPTY_LOWER), SHARED_EMPTY),
    ]
}

/// The layer ID of a tar-split's file name in `<drv>-layers/`.
pub(crate) fn tar_split_layer(name: &str) -> Option<&str> {
    // `.`-names are no IDs: a writer's temporary file (`.tmp-`) is not
    // a tar-split of its own.
    name.strip_suffix(TAR_SPLIT_SUFFIX)
        .filter(|id| !id.is_empty() && !id.starts_with('.') && owns_paths(id))
}

/// `<root>/<driver>-layers`: the layer records under the graph root, the
/// mount records under the run root.
pub(crate) fn layers_dir(root: &Path, driver: &str) -> PathBuf {
    root.join(format!("{driver}{LAYERS_SUFFIX}"))
}

/// `<root>/<driver>-images`.
pub(crate) fn images_dir(root: &Path, driver: &str) -> PathBuf {
    root.join(format!("{driver}-images"))
}

/// `<root>/<driver>-containers`.
pub(crate) fn containers_dir(root: &Path, driver: &str) -> PathBuf {
    root.join(format!("{driver}-containers"))
}

const LAYERS_SUFFIX: &str = "-layers";

/// The drivers that have layer records under `graph`: every
/// `<drv>-layers/` directory holding a `layers.json`, in name order.
pub(crate) fn drivers_with_layers(graph: &Path) -> Vec<String> {
    let mut drivers: Vec<String> = fs::read_dir(graph)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let driver = name.strip_suffix(LAYERS_SUFFIX)?.to_string();
            let records = e.path().join(LAYERS_JSON);
            (!driver.is_empty() && records.is_file()).then_some(driver)
        })
        .collect();
    drivers.sort();
    drivers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layouts_own_names_are_reserved() {
        for name in [
            LAYERS_JSON,
            LAYERS_LOCK,
            IMAGES_JSON,
            IMAGES_LOCK,
            CONTAINERS_JSON,
            CONTAINERS_LOCK,
            MOUNTS_JSON,
            MOUNTS_LOCK,
        ] {
            assert!(is_reserved(name), "{name}");
        }
        for name in [
            SHORT_LINKS,
            EMPTY_LOWER,
            INCOMPLETE,
            DELETING,
            MOVING,
            EMPTIED,
            USED_STAMPS,
            UNSYNCED,
            crate::durable::temp_sibling(Path::new("x"))
                .to_str()
                .unwrap(),
            "volatile-layers.json",
            "3f2a.tar-split.gz",
        ] {
            assert!(is_reserved(name), "{name}");
            assert!(!owns_paths(name), "{name}");
        }
        for name in ["ll", "lower", "my-layer.1", "dir", "json", "a.tar"] {
            assert!(!is_reserved(name), "{name}");
        }
    }
}
