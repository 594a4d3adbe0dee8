//! Changes, diff sizes and diffs of layers: a sealed layer's come from its
//! manifest; a live layer's from its directory (overlay upper or vfs tree)
//! compared with its sealed parents.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use super::layers::Layer;
use super::Store;
use crate::error::{Error, Result};
use crate::manifest::{
    tar_split, whiteout_target, Compression, Entry, EntryKind, Extraction, LayerManifest,
};
use crate::materialize::{self, Change, ChangeKind};

impl Store {
    /// The view the layer's parents give, whatever kind they are.
    pub(super) fn parents_view(&self, layer: &Layer) -> Result<BTreeMap<Vec<u8>, Entry>> {
        if layer.parent.is_empty() {
            return Ok(BTreeMap::new());
        }
        let views = self.chain_views(&self.chain(&layer.parent)?)?;
        let refs: Vec<_> = views.iter().collect();
        Ok(materialize::lower_view(&refs))
    }

    /// What each layer of `chain` (top first) holds, lowest first: a
    /// pool-backed layer's manifest, a directory-backed layer's directory
    /// as a manifest without content (overlay: its upper directory; vfs:
    /// its whole tree, below which nothing counts). A directory-backed
    /// layer whose directory is missing holds nothing yet.
    pub(super) fn chain_views(&self, chain: &[Layer]) -> Result<Vec<LayerManifest>> {
        let overlay = self.options.driver == "overlay";
        let mut out = Vec::new();
        for l in chain {
            if l.sealed {
                out.push(self.layer_manifest(l)?);
                continue;
            }
            let dir = self.live_dir_of(l)?;
            if !dir.is_dir() {
                continue;
            }
            // Its directory holds host IDs; views hold the container's,
            // as manifests do.
            let view = materialize::directory_view(&dir, overlay)?;
            out.push(l.id_mapping().unshift_manifest(&view, &l.id)?);
            if !overlay {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }

    /// A directory-backed layer's content directory, to read: a read-only
    /// store's layer's in its own store (or what was built here for it),
    /// else [`Store::live_content_dir`].
    pub(crate) fn live_dir_of(&self, layer: &Layer) -> Result<std::path::PathBuf> {
        match layer.read_only_store {
            Some(_) => Ok(self.content_dir_of(layer)),
            None => self.live_content_dir(&layer.id),
        }
    }

    /// What the layer (or container's layer) `arg` changes relative to its
    /// parent: `Add`, `Modify` and `Delete` with paths from `/`. On vfs,
    /// as upstream's vfs compares the two trees, a directory with changes
    /// inside is a `Modify` of its own.
    pub fn changes(&self, arg: &str) -> Result<Vec<Change>> {
        let layer = self.layer(&self.mount_layer(arg, false)?)?;
        let lower = self.parents_view(&layer)?;
        if !layer.sealed {
            let dir = self.live_dir_of(&layer)?;
            // The directory holds the layer's host IDs: so must the view
            // it is compared with.
            let mapping = layer.id_mapping();
            let mut lower = lower;
            if !mapping.is_identity() {
                for e in lower.values_mut() {
                    if let Ok((uid, gid)) = mapping.to_host(e.uid, e.gid) {
                        (e.uid, e.gid) = (uid, gid);
                    }
                }
            }
            let overlay = self.options.driver == "overlay";
            let changes = materialize::changes(&dir, &lower, overlay)?;
            // A tree holds every directory: those not listed were below.
            return Ok(match overlay {
                true => changes,
                false => materialize::with_changed_parents(changes, |_| true, true),
            });
        }
        let m = self.layer_manifest(&layer)?;
        // What extracting the layer leaves: each path once, as its last
        // entry made it; whiteouts of paths the layer fills again are not
        // deletions.
        let outcome = Extraction::of(&m.entries);
        let mut out = Vec::new();
        for (i, e) in m.entries.iter().enumerate() {
            let (path, kind) = match e.kind {
                EntryKind::Whiteout if outcome.whiteouts().binary_search(&i).is_ok() => {
                    (whiteout_target(&e.path), ChangeKind::Delete)
                }
                EntryKind::Whiteout | EntryKind::Opaque => continue,
                _ if e.path.is_empty() || !outcome.kept(i) => continue,
                _ if lower.contains_key(&e.path) => (e.path.clone(), ChangeKind::Modify),
                _ => (e.path.clone(), ChangeKind::Add),
            };
            out.push(Change {
                path: format!("/{}", String::from_utf8_lossy(&path)),
                kind,
            });
        }
        // The directories the tar leaves out but its extraction makes.
        let existed = |path: &[u8]| materialize::view_has(&lower, path);
        let vfs = self.options.driver == "vfs";
        Ok(materialize::with_changed_parents(out, existed, vfs))
    }

    /// What the layer (or container's layer) `arg` changes relative to
    /// the layer `from`, any layer: with its parent, [`Store::changes`];
    /// else the two layers' whole trees compared, as upstream's drivers
    /// do then (`NaiveDiffDriver`).
    pub fn changes_from(&self, arg: &str, from: &str) -> Result<Vec<Change>> {
        match self.against(arg, from)? {
            Against::Parent(layer) => self.changes(&layer.id),
            Against::Other { changes, .. } => Ok(changes),
        }
    }

    /// [`Store::diff_size`] relative to the layer `from`, any layer: with
    /// another than its parent, what upstream's tree comparison counts,
    /// the sizes of the added and modified paths that are no directories
    /// (a symlink its target's length, hard links of one file once).
    pub fn diff_size_from(&self, arg: &str, from: &str) -> Result<u64> {
        let (view, changes) = match self.against(arg, from)? {
            Against::Parent(layer) => return self.diff_size(&layer.id),
            Against::Other { view, changes, .. } => (view, changes),
        };
        Ok(changes
            .iter()
            .filter(|c| c.kind != ChangeKind::Delete)
            .filter_map(|c| view.get(&c.path.as_bytes()[1..]))
            .map(|e| match e.kind {
                EntryKind::File => e.size,
                EntryKind::Symlink => e.link.len() as u64,
                _ => 0,
            })
            .sum())
    }

    /// [`Store::diff`] relative to the layer `from`, any layer: with
    /// another than its parent, the tar of [`Store::changes_from`] with
    /// the files as the layer's mount shows them, as upstream's
    /// `NaiveDiffDriver` writes it.
    pub fn diff_from(
        &self,
        arg: &str,
        from: &str,
        compression: Option<Compression>,
        out: &mut dyn Write,
    ) -> Result<()> {
        let (layer, view, changes) = match self.against(arg, from)? {
            Against::Parent(layer) => return self.diff(&layer.id, compression, out),
            Against::Other {
                layer,
                view,
                changes,
            } => (layer, view, changes),
        };
        let chain = self.chain(&layer.id)?;
        // The files hold host IDs: one mapping must take them all back.
        if let Some(other) = chain.iter().find(|l| !l.maps_as(&layer)) {
            return Err(Error::MixedMapsDiff {
                layer: layer.id.clone(),
                other: other.id.clone(),
            });
        }
        let dirs = match self.options.driver == "overlay" {
            true => {
                self.prepare_overlay(&chain)?;
                let mut dirs = Vec::new();
                for l in &chain {
                    dirs.push(self.content_dir_of(l));
                    // A delta shows its layer only over its base.
                    if let Some(base) = self.stacked_on(&l.id) {
                        dirs.push(self.layer_content_dir(&base));
                    }
                }
                dirs
            }
            false => vec![self.prepare_vfs(&chain)?],
        };
        // A device that a tree built without the privilege to make one
        // lacks is in no tree, as in upstream's (its untar skips devices
        // in a user namespace): not in the diff either.
        let in_a_tree = |c: &Change| materialize::find_in(&dirs, &c.path.as_bytes()[1..]).is_some();
        let device = |c: &Change| {
            let entry = view.get(&c.path.as_bytes()[1..]);
            entry.is_some_and(|e| matches!(e.kind, EntryKind::CharDevice | EntryKind::BlockDevice))
        };
        let changes: Vec<Change> = changes
            .into_iter()
            .filter(|c| c.kind == ChangeKind::Delete || !device(c) || in_a_tree(c))
            .collect();
        let owner = tar_owner(&layer, &dirs[0]);
        // As the layer's own diff: the compression it came in, unless asked.
        let mut enc = compression
            .unwrap_or(layer.compression)
            .encoder(out)
            .map_err(Error::writing_stream)?;
        materialize::write_tree_diff(&dirs, &changes, &mut enc, &owner)?;
        enc.finish().map_err(Error::writing_stream)?;
        Ok(())
    }

    /// The layer `arg` against the layer `from`: its parent, or another
    /// layer, with the layer's whole tree and the changes that turn
    /// `from`'s whole tree into it.
    fn against(&self, arg: &str, from: &str) -> Result<Against> {
        let layer = self.layer(&self.mount_layer(arg, false)?)?;
        let from = self.layer(&self.mount_layer(from, false)?)?;
        if from.id == layer.parent {
            return Ok(Against::Parent(layer));
        }
        let view = self.whole_view(&layer)?;
        let changes = materialize::compare_views(&view, &self.whole_view(&from)?);
        Ok(Against::Other {
            layer,
            view,
            changes,
        })
    }

    /// The whole tree the layer and those below it give.
    fn whole_view(&self, layer: &Layer) -> Result<BTreeMap<Vec<u8>, Entry>> {
        let views = self.chain_views(&self.chain(&layer.id)?)?;
        let refs: Vec<_> = views.iter().collect();
        Ok(materialize::with_implied_dirs(materialize::lower_view(
            &refs,
        )))
    }

    /// The size of the layer's changes, as upstream's drivers count it:
    /// every entry that is not a directory (a symlink counts its target's
    /// length), each inode once. overlay counts its whole upper directory
    /// (a pool-backed layer: what its manifest leaves); vfs the added and
    /// modified paths of its tree.
    pub fn diff_size(&self, arg: &str) -> Result<u64> {
        let layer = self.layer(&self.mount_layer(arg, false)?)?;
        if layer.sealed {
            let m = self.layer_manifest(&layer)?;
            let outcome = Extraction::of(&m.entries);
            return Ok(m
                .entries
                .iter()
                .enumerate()
                .filter(|(i, e)| outcome.kept(*i) && !e.path.is_empty())
                .map(|(_, e)| match e.kind {
                    EntryKind::File => e.size,
                    EntryKind::Symlink => e.link.len() as u64,
                    _ => 0,
                })
                .sum());
        }
        let dir = self.live_dir_of(&layer)?;
        let paths: Vec<std::path::PathBuf> = if self.options.driver == "overlay" {
            match dir.is_dir() {
                true => materialize::walk_tree(&dir)?
                    .into_iter()
                    .map(|(rel, _)| dir.join(OsStr::from_bytes(&rel)))
                    .collect(),
                false => Vec::new(),
            }
        } else {
            self.changes(&layer.id)?
                .into_iter()
                .filter(|c| c.kind != ChangeKind::Delete)
                .map(|c| dir.join(c.path.trim_start_matches('/')))
                .collect()
        };
        let mut seen = std::collections::HashSet::new();
        let mut size = 0;
        for path in paths {
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                if !meta.is_dir() && seen.insert((meta.dev(), meta.ino())) {
                    size += meta.len();
                }
            }
        }
        Ok(size)
    }

    /// Copies host paths or `LAYER:/PATH` sources into `LAYER:/PATH` of a
    /// layer (mounting what it needs for the copy; a pool-backed layer
    /// becomes directory-backed first, see `store/privatize.rs`). A directory's
    /// contents are merged into the destination; a file copied onto an
    /// existing directory lands inside it. Returns the entries copied.
    pub fn copy(&self, sources: &[String], dest: &str, chown: materialize::Chown) -> Result<u64> {
        let bad = |what: String| Error::BadArgument {
            arg: dest.to_string(),
            what,
        };
        let (dst_arg, dst_path) = split_layer_path(dest)
            .ok_or_else(|| bad("the destination must be LAYER:/PATH".into()))?;
        let dst = self.layer(&self.mount_layer_id(dst_arg)?)?;
        if dst.read_only {
            return Err(Error::ReadOnlyLayer(dst.id));
        }
        // (The split image store's layers are written there.)
        self.refuse_ro_layer(&dst)?;
        let rel = crate::manifest::normalize(dst_path.as_bytes()).map_err(bad)?;
        // As upstream's: a source's owners back to its layer's container
        // IDs, `--chown` (container IDs) over them, then to the
        // destination layer's host IDs.
        let to_dst = dst.id_mapping();
        let owners = |from: super::id_maps::IdMapping<'_>, shown: &str, uid, gid| {
            let unmappable = |id| Error::Unmappable {
                layer: dst.id.clone(),
                path: shown.to_string(),
                id,
            };
            let (uid, gid) = from.to_container(uid, gid).map_err(unmappable)?;
            let (uid, gid) = match chown {
                Some((u, g)) => (u, g.unwrap_or(gid)),
                None => (uid, gid),
            };
            to_dst.to_host(uid, gid).map_err(unmappable)
        };
        let root = self.mount(&dst.id, false)?;
        let mut mounted = vec![dst.id.clone()];
        let result = (|| {
            let mut copied = 0;
            for source in sources {
                let mut source_layer = None;
                let path = match split_layer_path(source) {
                    Some((arg, inside)) => {
                        let id = self.mount_layer_id(arg)?;
                        source_layer = Some(self.layer(&id)?);
                        // Read only: a source is not written.
                        let mount = self.mount_id(&id, true, None, &Default::default())?;
                        mounted.push(id);
                        let inside =
                            crate::manifest::normalize(inside.as_bytes()).map_err(|what| {
                                Error::BadArgument {
                                    arg: source.clone(),
                                    what,
                                }
                            })?;
                        no_symlink_on_the_way(&mount, &inside)?
                    }
                    None => std::path::PathBuf::from(source),
                };
                let target_is_dir = std::fs::symlink_metadata(root.join(OsStr::from_bytes(&rel)))
                    .is_ok_and(|m| m.is_dir());
                let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                let target = match path.file_name() {
                    Some(name) if target_is_dir && !is_dir => {
                        let mut t = rel.clone();
                        if !t.is_empty() {
                            t.push(b'/');
                        }
                        t.extend_from_slice(name.as_bytes());
                        t
                    }
                    _ => rel.clone(),
                };
                let from = source_layer
                    .as_ref()
                    .map(Layer::id_mapping)
                    .unwrap_or_default();
                let owners = |uid, gid| owners(from, source, uid, gid);
                copied += materialize::copy_into(&path, &root, &target, &owners)?;
            }
            Ok(copied)
        })();
        for id in &mounted {
            let _ = self.unmount(id, false);
        }
        result
    }

    /// Writes a live layer's diff: the tar its tar-split
    /// (`<drv>-layers/<id>.tar-split.gz`) describes, else its changes.
    pub(crate) fn live_diff(
        &self,
        layer: &Layer,
        compression: Compression,
        out: &mut dyn Write,
    ) -> Result<()> {
        let (dir, tar_split) = (self.live_dir_of(layer)?, self.tar_split_path_of(layer));
        let mut enc = compression.encoder(out).map_err(Error::writing_stream)?;
        match std::fs::File::open(&tar_split) {
            // The exact tar the layer was written from (its files'
            // CRC-64s checked), as upstream's `Diff` gives it.
            Ok(file) if dir.is_dir() => {
                let mut files = tar_split::DirectoryFiles::open(&dir)?;
                tar_split::assemble(std::io::BufReader::new(file), &mut files, &mut enc)
                    .map_err(|e| e.for_layer(&layer.id))?;
            }
            _ => {
                let changes = self.changes(&layer.id)?;
                let owner = tar_owner(layer, &dir);
                materialize::write_diff_owned(&dir, &changes, &mut enc, &owner)?;
            }
        }
        enc.finish().map_err(Error::writing_stream)?;
        Ok(())
    }
}

/// A layer against a reference layer (see [`Store::against`]).
enum Against {
    /// The reference is its parent: its own changes apply.
    Parent(Layer),
    /// Another layer: the layer, its whole tree and the changes.
    Other {
        layer: Layer,
        view: BTreeMap<Vec<u8>, Entry>,
        changes: Vec<Change>,
    },
}

/// The owner a tar gets for a file of `layer`'s directory `dir`: its
/// host IDs taken back to the container's, as upstream's `Diff` has them.
fn tar_owner<'a>(
    layer: &'a Layer,
    dir: &'a std::path::Path,
) -> impl Fn(u32, u32) -> Result<(u32, u32)> + 'a {
    let mapping = layer.id_mapping();
    move |uid, gid| {
        mapping
            .to_container(uid, gid)
            .map_err(|id| Error::Unmappable {
                layer: layer.id.clone(),
                path: dir.display().to_string(),
                id,
            })
    }
}

/// `LAYER:/PATH` -> (`LAYER`, `/PATH`); a host path has no `LAYER:` part.
fn split_layer_path(s: &str) -> Option<(&str, &str)> {
    let (layer, path) = s.split_once(':')?;
    (!layer.is_empty() && !layer.contains('/')).then_some((layer, path))
}

/// `root/rel`, refusing a symlink among its components (a layer's symlink
/// must not lead a copy to host files).
fn no_symlink_on_the_way(root: &std::path::Path, rel: &[u8]) -> Result<std::path::PathBuf> {
    let mut path = root.to_path_buf();
    for component in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        path.push(OsStr::from_bytes(component));
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::SourceThroughSymlink(path));
        }
    }
    Ok(path)
}
