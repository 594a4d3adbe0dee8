//! The materializer: manifests -> directories (an overlay lower directory
//! or a flattened vfs tree), through a file-object cache with reflinks,
//! hardlinks or copies. It reads manifests and the chunk pool and writes
//! directories; it knows nothing of records or locks.
//!
//! Writes stay inside the directory being built: paths are resolved one
//! component at a time without following symlinks (`jail`).

mod build;
mod changes;
mod compare;
mod copy;
mod delta;
mod jail;
mod meta;
mod objects;
mod share;
mod sweep;

use std::path::Path;

pub use build::{BuildOptions, BuildStats, Format};
pub(crate) use changes::marked_opaque;
pub use changes::{
    changes, compare_views, directory_view, find_in, lower_view, view_has, with_changed_parents,
    with_implied_dirs, write_diff, write_diff_owned, write_tree_diff, Change, ChangeKind,
};
pub(crate) use compare::{compare, walk as walk_tree, ExpectedTree};
pub use copy::{copy_into, copy_over, copy_tree, Chown, Owners};
pub use delta::{delta, stands_alone};
pub(crate) use objects::lock_path as builders_lock_path;
pub(crate) use objects::tmp_dir as objects_tmp_dir;
pub use share::{ShareOptions, ShareStats};
pub use sweep::{
    builders_guard, purge_objects_since, sweep_objects, wanted_objects, BuildersGuard, ObjectSweep,
};

use crate::chunks::ChunkPool;
use crate::error::Result;
use crate::manifest::LayerManifest;
use objects::ObjectCache;

/// Builds directories from manifests.
pub struct Materializer<'p> {
    pool: &'p ChunkPool,
    objects: ObjectCache,
}

impl<'p> Materializer<'p> {
    /// A materializer reading `pool` and keeping file objects in
    /// `objects_dir` (on the same filesystem as the trees it builds).
    pub fn new(pool: &'p ChunkPool, objects_dir: &Path) -> Result<Materializer<'p>> {
        Ok(Materializer {
            pool,
            objects: ObjectCache::open(objects_dir)?,
        })
    }

    /// Builds `target` (which must not exist) from `manifests`: one layer
    /// for [`Format::Overlay`], the chain lowest first for
    /// [`Format::Flattened`]. Either the whole tree appears under `target`
    /// or nothing does.
    pub fn build(
        &self,
        manifests: &[&LayerManifest],
        target: &Path,
        options: BuildOptions,
    ) -> Result<BuildStats> {
        build::build(self.pool, &self.objects, manifests, &[], target, options)
    }

    /// Applies `manifest` in place onto `target`, a directory that already
    /// has content (a live layer): entries replace what is at their paths,
    /// whiteouts and opaque markers take effect in the format asked for.
    pub fn apply_onto(
        &self,
        manifest: &LayerManifest,
        target: &Path,
        options: BuildOptions,
    ) -> Result<()> {
        build::apply_onto(self.pool, &self.objects, manifest, target, options)
    }

    /// Builds one overlay layer whose `lowers` (lowest first) give the
    /// directories it needs but does not list their metadata, so that the
    /// merged view shows the lower directory unchanged.
    pub fn build_overlay(
        &self,
        manifest: &LayerManifest,
        lowers: &[&LayerManifest],
        target: &Path,
        options: BuildOptions,
    ) -> Result<BuildStats> {
        build::build(
            self.pool,
            &self.objects,
            &[manifest],
            lowers,
            target,
            options,
        )
    }
}
