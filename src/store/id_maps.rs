//! ID mappings of layers and containers (upstream's `uidmap`/`gidmap`):
//! the ranges, the translation of owners between the container's IDs and
//! the host's, the shifting of a manifest's owners for a build, the
//! remapping of a directory tree that is already on disk, and the ranges
//! `/etc/subuid` and `/etc/subgid` give a user.
//!
//! A mapped layer keeps its content as the tar gave it (container IDs) in
//! its manifest; the directories built from it hold host IDs. Nothing here
//! touches records or decides which map applies to what (`store/driver.rs`
//! does).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Op, Result};
use crate::manifest::{EntryKind, LayerManifest};

/// One range of an ID mapping, with upstream's JSON names: container IDs
/// `container_id..container_id+size` are host IDs `host_id..`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// The first ID inside the container.
    pub container_id: u32,
    /// The first ID on the host.
    pub host_id: u32,
    /// How many IDs.
    pub size: u32,
}

/// How a new layer or container maps IDs, as upstream's
/// `IDMappingOptions`: explicit maps, or the host's IDs forced. With
/// neither, a layer takes its parent's maps (a base layer and a container
/// without an image: none), a container its image's top layer's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMappingOptions {
    /// Use the host's user IDs (no UID map), whatever the parent has.
    pub host_uid_mapping: bool,
    /// Use the host's group IDs (no GID map), whatever the parent has.
    pub host_gid_mapping: bool,
    /// The UID map (empty: none given).
    pub uid_map: Vec<IdMap>,
    /// The GID map (empty: none given).
    pub gid_map: Vec<IdMap>,
}

impl IdMappingOptions {
    /// The maps a layer or container gets given its parent's (`inherited`,
    /// UID then GID): an explicit map wins, a forced host mapping gives
    /// none, else the parent's.
    pub(crate) fn resolve(&self, inherited: (&[IdMap], &[IdMap])) -> (Vec<IdMap>, Vec<IdMap>) {
        let pick = |host: bool, own: &[IdMap], parent: &[IdMap]| match (host, own.is_empty()) {
            (true, _) => Vec::new(),
            (false, false) => own.to_vec(),
            (false, true) => parent.to_vec(),
        };
        (
            pick(self.host_uid_mapping, &self.uid_map, inherited.0),
            pick(self.host_gid_mapping, &self.gid_map, inherited.1),
        )
    }
}

/// One direction of an [`IdMapping`]: a (UID, GID) pair to the other
/// side, or the ID that has no counterpart.
type MapOwner<'a> = fn(IdMapping<'a>, u32, u32) -> std::result::Result<(u32, u32), u32>;

/// A pair of maps: owners inside (container IDs) and on disk (host IDs).
/// Empty maps are the identity, as upstream's.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdMapping<'a> {
    pub uids: &'a [IdMap],
    pub gids: &'a [IdMap],
}

impl<'a> IdMapping<'a> {
    pub(crate) fn new(uids: &'a [IdMap], gids: &'a [IdMap]) -> IdMapping<'a> {
        IdMapping { uids, gids }
    }

    pub(crate) fn is_identity(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }

    /// Container `(uid, gid)` -> host, or the ID that has no host ID.
    pub(crate) fn to_host(self, uid: u32, gid: u32) -> std::result::Result<(u32, u32), u32> {
        Ok((to_host(self.uids, uid)?, to_host(self.gids, gid)?))
    }

    /// Host `(uid, gid)` -> container, or the ID that has no container ID.
    pub(crate) fn to_container(self, uid: u32, gid: u32) -> std::result::Result<(u32, u32), u32> {
        Ok((to_container(self.uids, uid)?, to_container(self.gids, gid)?))
    }

    /// The host owner of the root directory (container 0:0), as
    /// upstream's `GetRootUIDGID` (a single range of one ID is the root).
    pub(crate) fn root_pair(&self) -> (u32, u32) {
        let root = |map: &[IdMap]| match map {
            [only] if only.size == 1 => only.host_id,
            _ => to_host(map, 0).unwrap_or(0),
        };
        (root(self.uids), root(self.gids))
    }

    /// `m` with every entry's owner shifted to the host's IDs (a copy; `m`
    /// keeps the container's). An owner the maps do not cover fails, as
    /// upstream's untar does.
    pub(crate) fn shift_manifest(&self, m: &LayerManifest, layer: &str) -> Result<LayerManifest> {
        self.map_manifest(m, layer, Self::to_host)
    }

    /// `m`, a view of a directory that holds host IDs, with every entry's
    /// owner back to the container's IDs (the inverse of
    /// [`IdMapping::shift_manifest`]). An owner the maps do not cover
    /// fails, as upstream's diff does.
    pub(crate) fn unshift_manifest(&self, m: &LayerManifest, layer: &str) -> Result<LayerManifest> {
        self.map_manifest(m, layer, Self::to_container)
    }

    fn map_manifest(
        &self,
        m: &LayerManifest,
        layer: &str,
        map: MapOwner<'a>,
    ) -> Result<LayerManifest> {
        let mut out = m.clone();
        if self.is_identity() {
            return Ok(out);
        }
        for e in out.entries.iter_mut() {
            if matches!(e.kind, EntryKind::Whiteout | EntryKind::Opaque) {
                continue;
            }
            let (uid, gid) = map(*self, e.uid, e.gid).map_err(|id| Error::Unmappable {
                layer: layer.to_string(),
                path: String::from_utf8_lossy(&e.path).into_owned(),
                id,
            })?;
            e.uid = uid;
            e.gid = gid;
        }
        Ok(out)
    }

    /// Checks that the maps cover every owner of `m` (what an import into
    /// a mapped layer needs).
    pub(crate) fn check_manifest(&self, m: &LayerManifest, layer: &str) -> Result<()> {
        self.shift_manifest(m, layer).map(drop)
    }
}

fn to_host(map: &[IdMap], id: u32) -> std::result::Result<u32, u32> {
    if map.is_empty() {
        return Ok(id);
    }
    map.iter()
        .find(|m| id >= m.container_id && (id - m.container_id) < m.size)
        .map(|m| m.host_id + (id - m.container_id))
        .ok_or(id)
}

fn to_container(map: &[IdMap], id: u32) -> std::result::Result<u32, u32> {
    if map.is_empty() {
        return Ok(id);
    }
    map.iter()
        .find(|m| id >= m.host_id && (id - m.host_id) < m.size)
        .map(|m| m.container_id + (id - m.host_id))
        .ok_or(id)
}

/// What an ID without a host ID becomes (the kernel's default overflow
/// ID, as upstream's `ToHostOverflow` falls back to).
const OVERFLOW_ID: u32 = 65534;

/// The file capabilities, which `chown` clears.
const CAPABILITY: &str = "security.capability";

/// Changes the owner of every entry of the tree at `root` (itself
/// included, symlinks not followed) from `from`'s host IDs to `to`'s:
/// host -> container by `from`, container -> host by `to`, as upstream's
/// `ChownPathByMaps`. Owners `from` does not cover fail (but 0:0).
pub(crate) fn remap_tree(root: &Path, from: IdMapping<'_>, to: IdMapping<'_>) -> Result<()> {
    let mut entries = vec![(
        Vec::new(),
        std::fs::symlink_metadata(root).at(Op::Stat, root)?,
    )];
    entries.extend(crate::materialize::walk_tree(root)?);
    for (rel, meta) in entries {
        let path = root.join(std::ffi::OsStr::from_bytes(&rel));
        let unmappable = |id| Error::Unmappable {
            layer: root.display().to_string(),
            path: String::from_utf8_lossy(&rel).into_owned(),
            id,
        };
        // As upstream's: an unmapped 0:0 stays 0:0 (a parent that should
        // have been mapped and was not), and an ID without a host ID
        // becomes the overflow ID.
        let (uid, gid) = match from.to_container(meta.uid(), meta.gid()) {
            Ok(ids) => ids,
            Err(_) if (meta.uid(), meta.gid()) == (0, 0) => (0, 0),
            Err(id) => return Err(unmappable(id)),
        };
        let uid = to_host(to.uids, uid).unwrap_or(OVERFLOW_ID);
        let gid = to_host(to.gids, gid).unwrap_or(OVERFLOW_ID);
        if (uid, gid) == (meta.uid(), meta.gid()) {
            continue;
        }
        // chown clears set-user-ID and set-group-ID bits and file
        // capabilities: put them back.
        let mode = meta.mode();
        let capability = match meta.file_type().is_symlink() {
            true => None,
            false => crate::sys::lgetxattr(&path, CAPABILITY).ok().flatten(),
        };
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).at(Op::Chown, &path)?;
        if let Some(value) = capability {
            let c_path =
                std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in a path");
            let name = std::ffi::CString::new(CAPABILITY).expect("no NUL");
            crate::sys::lsetxattr(&c_path, &name, &value).at(Op::Setxattr, &path)?;
        }
        if !meta.file_type().is_symlink() && mode & 0o6000 != 0 {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                .at(Op::Chown, &path)?;
        }
    }
    Ok(())
}

/// Gives the root of a tree built for a mapped layer the host's root
/// pair when its owner has no container ID (a tree whose tar lists no
/// root directory), as upstream's drivers make a mapped layer's root.
pub(crate) fn own_root(root: &Path, mapping: IdMapping<'_>) -> Result<()> {
    if mapping.is_identity() {
        return Ok(());
    }
    let meta = std::fs::symlink_metadata(root).at(Op::Stat, root)?;
    if mapping.to_container(meta.uid(), meta.gid()).is_ok() {
        return Ok(());
    }
    let (uid, gid) = mapping.root_pair();
    std::os::unix::fs::lchown(root, Some(uid), Some(gid)).at(Op::Chown, root)
}

/// The ranges `/etc/subuid` (`uid`) or `/etc/subgid` gives `name` (a user
/// or group name, or its numeric ID), as upstream's `NewIDMappings`
/// reads them: sorted by start, mapped from container ID 0 on.
pub fn subid_map(name: &str, uid: bool) -> Result<Vec<IdMap>> {
    let file = if uid { "/etc/subuid" } else { "/etc/subgid" };
    subid_map_from(Path::new(file), name, numeric_id(name, uid).as_deref())
}

fn subid_map_from(path: &Path, name: &str, numeric: Option<&str>) -> Result<Vec<IdMap>> {
    let text = std::fs::read_to_string(path).at(Op::Read, path)?;
    let mut ranges = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split(':').collect();
        let bad = || Error::Corrupt {
            path: path.to_path_buf(),
            what: format!("not a subordinate ID range: {line:?}"),
        };
        if parts.len() != 3 {
            return Err(bad());
        }
        if parts[0] == name || name == "ALL" || Some(parts[0]) == numeric {
            let start: u32 = parts[1].parse().map_err(|_| bad())?;
            let size: u32 = parts[2].parse().map_err(|_| bad())?;
            ranges.push((start, size));
        }
    }
    if ranges.is_empty() {
        return Err(Error::NoSubordinateIds {
            name: name.to_string(),
            file: path.to_path_buf(),
        });
    }
    ranges.sort();
    let mut container_id = 0u32;
    let mut out = Vec::new();
    for (host_id, size) in ranges {
        out.push(IdMap {
            container_id,
            host_id,
            size,
        });
        container_id = container_id.saturating_add(size);
    }
    Ok(out)
}

/// The numeric ID of user (or group) `name` from `/etc/passwd`
/// (`/etc/group`), which subordinate ID files may list instead of the
/// name.
fn numeric_id(name: &str, user: bool) -> Option<String> {
    let file = if user { "/etc/passwd" } else { "/etc/group" };
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then(|| fields.nth(1).map(str::to_string))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_translate_both_ways_and_uncovered_ones_are_named() {
        let map = [IdMap {
            container_id: 0,
            host_id: 100_000,
            size: 65_536,
        }];
        let m = IdMapping::new(&map, &[]);
        assert_eq!(m.to_host(0, 5), Ok((100_000, 5)));
        assert_eq!(m.to_host(65_536, 0), Err(65_536));
        assert_eq!(m.to_container(165_535, 7), Ok((65_535, 7)));
        assert_eq!(m.to_container(0, 0), Err(0));
        assert_eq!(m.root_pair(), (100_000, 0));
    }

    #[test]
    fn an_explicit_map_wins_a_forced_host_mapping_gives_none_else_the_parents() {
        let a = vec![IdMap {
            container_id: 0,
            host_id: 1,
            size: 2,
        }];
        let b = vec![IdMap {
            container_id: 0,
            host_id: 9,
            size: 2,
        }];
        let given = IdMappingOptions {
            uid_map: a.clone(),
            host_gid_mapping: true,
            ..IdMappingOptions::default()
        };
        assert_eq!(given.resolve((&b, &b)), (a, Vec::new()));
        assert_eq!(
            IdMappingOptions::default().resolve((&b, &[])),
            (b, Vec::new())
        );
    }

    #[test]
    fn subordinate_ranges_are_sorted_and_numbered_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subuid");
        std::fs::write(
            &path,
            "# c\nbob:300000:10\nalice:100000:65536\nbob:200000:5\n",
        )
        .unwrap();
        let map = subid_map_from(&path, "bob", None).unwrap();
        assert_eq!(
            map,
            vec![
                IdMap {
                    container_id: 0,
                    host_id: 200_000,
                    size: 5
                },
                IdMap {
                    container_id: 5,
                    host_id: 300_000,
                    size: 10
                }
            ]
        );
        assert!(matches!(
            subid_map_from(&path, "carol", None),
            Err(Error::NoSubordinateIds { .. })
        ));
    }
}
