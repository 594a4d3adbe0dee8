//! The layout's own names in the directories where item IDs live too, and
//! the paths a layer's content takes under a graph root for each driver.
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
/// `overlay/empty/`: the empty lower directory of a mount with too few
/// lower layers.
pub(crate) const EMPTY_LOWER: &str = "empty";
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

/// Names of the driver's own entries beside layer directories.
const DRIVER_ENTRIES: &[&str] = &[SHORT_LINKS, EMPTY_LOWER];

/// Endings of the layout's file names in record directories: record
/// files (ours and upstream's `volatile-*.json`), lock files, and
/// upstream's `<id>.tar-split.gz` beside the layers' big-data directories.
const FILE_SUFFIXES: &[&str] = &[".json", ".lock", ".tar-split.gz"];

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

/// `<graph>/<driver>`.
pub(crate) fn driver_dir(graph: &Path, driver: &str) -> PathBuf {
    graph.join(driver)
}

/// The directory that holds a layer's content for `driver` under `graph`:
/// `overlay/<id>/diff`, or the vfs tree `vfs/dir/<id>`.
pub(crate) fn content_dir(graph: &Path, driver: &str, id: &str) -> PathBuf {
    match driver {
        "vfs" => driver_dir(graph, driver).join(VFS_TREES).join(id),
        _ => driver_dir(graph, driver).join(id).join("diff"),
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
    graph.join("manifests").join(id)
}

/// `<graph>/<driver>-layers`.
pub(crate) fn layers_dir(graph: &Path, driver: &str) -> PathBuf {
    graph.join(format!("{driver}-layers"))
}

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
            let driver = name.strip_suffix("-layers")?.to_string();
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
            ".incomplete",
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
