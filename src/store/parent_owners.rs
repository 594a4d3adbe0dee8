//! `layer-parent-owners` and `container-parent-owners`: the owners of the
//! directories above a mounted layer that the layer's ID mapping cannot
//! map, as upstream computes them (`layerStore.ParentOwners`).
//!
//! A layer without a mapping (`uidmap`, `gidmap` in its record, as
//! upstream writes them) has none: its owners are the host's. A mapped
//! layer must be mounted: from the directory holding its mount point up
//! to (not including) `/`, each directory's owner and group, both
//! following a symlink and not, are listed when the mapping has no
//! container ID for them. A container's are its layer's.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::id_maps::IdMap;
use super::Store;
use crate::error::{Error, IoContext, Op, Result};

/// The unmapped owners of the directories above a layer's mount point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParentOwners {
    /// The layer (or container) ID.
    pub id: String,
    /// Owners the layer's UID mapping cannot map, ascending.
    pub uids: Vec<u32>,
    /// Groups the layer's GID mapping cannot map, ascending.
    pub gids: Vec<u32>,
}

/// Whether host ID `id` has a container ID under `map` (an empty map is
/// the identity, as upstream's `toContainer` has it).
fn maps(map: &[IdMap], id: u32) -> bool {
    map.is_empty()
        || map
            .iter()
            .any(|m| id >= m.host_id && (id - m.host_id) < m.size)
}

impl Store {
    /// The unmapped owners of the directories above layer `arg`'s mount
    /// point (none without a mapping); refused for a mapped layer that is
    /// not mounted ([`Error::NotMounted`]).
    pub fn layer_parent_owners(&self, arg: &str) -> Result<ParentOwners> {
        let layer = self.layer(arg)?;
        let mut owners = ParentOwners {
            id: layer.id.clone(),
            ..ParentOwners::default()
        };
        if layer.uid_map.is_empty() && layer.gid_map.is_empty() {
            return Ok(owners);
        }
        let mount = self
            .mounts()?
            .into_iter()
            .find(|m| m.id == layer.id && m.count > 0 && !m.path.is_empty())
            .ok_or_else(|| Error::NotMounted(layer.id.clone()))?;
        let (mut uids, mut gids) = (BTreeSet::new(), BTreeSet::new());
        let mut dir = Path::new(&mount.path).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty() && *d != Path::new("/")) {
            let followed = std::fs::metadata(d).at(Op::Stat, d)?;
            let own = std::fs::symlink_metadata(d).at(Op::Stat, d)?;
            for meta in [followed, own] {
                if !maps(&layer.uid_map, meta.uid()) {
                    uids.insert(meta.uid());
                }
                if !maps(&layer.gid_map, meta.gid()) {
                    gids.insert(meta.gid());
                }
            }
            dir = d.parent();
        }
        owners.uids = uids.into_iter().collect();
        owners.gids = gids.into_iter().collect();
        Ok(owners)
    }

    /// [`Store::layer_parent_owners`] of container `arg`'s layer, under
    /// the container's ID.
    pub fn container_parent_owners(&self, arg: &str) -> Result<ParentOwners> {
        let container = self.container(arg)?;
        let owners = self.layer_parent_owners(&container.layer)?;
        Ok(ParentOwners {
            id: container.id,
            ..owners
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_map_maps_everything_and_ranges_end_before_their_size() {
        assert!(maps(&[], 0));
        let m = [IdMap {
            container_id: 0,
            host_id: 100_000,
            size: 65_536,
        }];
        assert!(!maps(&m, 0));
        assert!(maps(&m, 100_000));
        assert!(maps(&m, 165_535));
        assert!(!maps(&m, 165_536));
    }
}
