//! Changes, diff sizes and diffs of layers: a sealed layer's come from its
//! manifest; a live layer's from its directory (overlay upper or vfs tree)
//! compared with its sealed parents.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use super::layers::Layer;
use super::Store;
use crate::error::{Action, Error, Result};
use crate::manifest::{whiteout_target, Compression, Entry, EntryKind, Extraction};
use crate::materialize::{self, Change, ChangeKind};

impl Store {
    /// The view the layer's parents give (they must be sealed).
    pub(super) fn parents_view(&self, layer: &Layer) -> Result<BTreeMap<Vec<u8>, Entry>> {
        if layer.parent.is_empty() {
            return Ok(BTreeMap::new());
        }
        let chain = self.chain(&layer.parent)?;
        let manifests = chain
            .iter()
            .rev()
            .map(|l| {
                if l.sealed {
                    self.layer_manifest(l)
                } else {
                    Err(Error::LiveBelow(l.id.clone()))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<_> = manifests.iter().collect();
        Ok(materialize::lower_view(&refs))
    }

    /// What the layer (or container's layer) `arg` changes relative to its
    /// parent: `Add`, `Modify` and `Delete` with paths from `/`.
    pub fn changes(&self, arg: &str) -> Result<Vec<Change>> {
        let layer = self.layer(&self.mount_layer(arg, false)?)?;
        let lower = self.parents_view(&layer)?;
        if !layer.sealed {
            let dir = self.live_content_dir(&layer.id)?;
            return materialize::changes(&dir, &lower, self.options.driver == "overlay");
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
        Ok(out)
    }

    /// The size of the layer's changes: the uncompressed tar size of a
    /// sealed layer, the bytes of added and modified files of a live one.
    pub fn diff_size(&self, arg: &str) -> Result<u64> {
        let layer = self.layer(&self.mount_layer(arg, false)?)?;
        if layer.sealed {
            return Ok(layer.diff_size);
        }
        let dir = self.live_content_dir(&layer.id)?;
        let mut size = 0;
        for change in self.changes(&layer.id)? {
            if change.kind == ChangeKind::Delete {
                continue;
            }
            let path = dir.join(change.path.trim_start_matches('/'));
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                if meta.is_file() {
                    size += meta.len();
                }
            }
        }
        Ok(size)
    }

    /// Seals a live layer: its changes (what its directory holds beyond
    /// its parents) are imported into the pool as its manifest. Done when
    /// the layer gets a child or becomes an image's top layer, since from
    /// then on it is read-only. A mounted layer is refused.
    pub(crate) fn seal(&self, layer: &Layer) -> Result<()> {
        if layer.sealed {
            return Ok(());
        }
        if self
            .mounts()?
            .iter()
            .any(|m| m.id == layer.id && m.count > 0)
        {
            return Err(Error::Mounted {
                layer: layer.id.clone(),
                at: None,
                refused: Action::Seal,
            });
        }
        let (reader, mut writer) = crate::durable::pipe()?;
        std::thread::scope(|scope| {
            let producer = scope.spawn(move || {
                let result = self.live_diff(layer, Compression::None, &mut writer);
                drop(writer);
                result
            });
            let imported = self.import_content(layer, reader, &());
            let produced = producer
                .join()
                .unwrap_or(Err(Error::Panicked("sealing thread")));
            produced.and(imported).map(drop)
        })
    }

    /// Copies host paths or `LAYER:/PATH` sources into `LAYER:/PATH` of a
    /// live layer (mounting what it needs for the copy). A directory's
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
        if dst.sealed {
            return Err(Error::Sealed(dst.id));
        }
        let rel = crate::manifest::normalize(dst_path.as_bytes()).map_err(bad)?;
        let root = self.mount(&dst.id, false)?;
        let mut mounted = vec![dst.id.clone()];
        let result = (|| {
            let mut copied = 0;
            for source in sources {
                let path = match split_layer_path(source) {
                    Some((arg, inside)) => {
                        let id = self.mount_layer_id(arg)?;
                        let mount = self.mount(&id, false)?;
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
                copied += materialize::copy_into(&path, &root, &target, chown)?;
            }
            Ok(copied)
        })();
        for id in &mounted {
            let _ = self.unmount(id, false);
        }
        result
    }

    /// Writes a live layer's diff (its changes as a tar).
    pub(crate) fn live_diff(
        &self,
        layer: &Layer,
        compression: Compression,
        out: &mut dyn Write,
    ) -> Result<()> {
        let written = |e: std::io::Error| Error::Stream {
            what: "writing the layer stream".into(),
            source: e,
        };
        let changes = self.changes(&layer.id)?;
        let mut enc = compression.encoder(out).map_err(written)?;
        materialize::write_diff(&self.live_content_dir(&layer.id)?, &changes, &mut enc)?;
        enc.finish().map_err(written)?;
        Ok(())
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
