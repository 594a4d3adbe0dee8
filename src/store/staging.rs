//! `applydiff-using-staging-dir`: a staged directory (as upstream's
//! partial pulls leave one, in overlay's format: whiteouts as 0:0
//! character devices, opaque directories marked by the `overlay.opaque`
//! attribute) applied as a layer's content.
//!
//! As upstream's, it needs `enable_partial_images = "true"` in
//! `[storage.options.pull_options]` and the overlay driver, and a layer
//! ID no layer has makes a new layer with that ID (removed again should
//! the directory not apply).
//!
//! The directory is read, never changed or moved: it is streamed as the
//! tar of its content (the tar a diff of it would be) into the same path
//! `applydiff` takes, so the layer ends the same as if that tar had been
//! applied, with the same refusals and the same durable order.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Layer, LayerOptions, Store};
use crate::durable;
use crate::error::{Error, IoContext, Op, Result};
use crate::materialize;

impl Store {
    /// Applies the directory `dir` as the content of layer `arg` (as
    /// `applydiff` applies a tar).
    pub fn apply_diff_from_staging_dir(&self, arg: &str, dir: &Path) -> Result<Layer> {
        self.check_writable()?;
        if !self.options.partial_images {
            return Err(Error::NoPartialPull(
                "partial images are disabled (enable_partial_images in [storage.options.pull_options])"
                    .into(),
            ));
        }
        if self.options.driver != "overlay" {
            return Err(Error::NoPartialPull(format!(
                "graph driver {} does not support partial pull",
                self.options.driver
            )));
        }
        let meta = std::fs::metadata(dir).at(Op::Stat, dir)?;
        if !meta.is_dir() {
            return Err(Error::io(
                Op::Open,
                dir,
                std::io::Error::from_raw_os_error(libc::ENOTDIR),
            ));
        }
        let created = match self.layer(arg) {
            Ok(_) => None,
            Err(e) if e.is_not_known() => {
                let options = LayerOptions {
                    id: Some(arg.to_string()),
                    ..LayerOptions::default()
                };
                Some(self.create_layer(None, &options)?.id)
            }
            Err(e) => return Err(e),
        };
        let applied = self.apply_staged(arg, dir);
        if let (Err(_), Some(id)) = (&applied, &created) {
            let _ = self.delete_layer(id);
        }
        applied
    }

    /// Streams `dir` as a tar into `applydiff` of layer `arg`.
    fn apply_staged(&self, arg: &str, dir: &Path) -> Result<Layer> {
        // Everything in it is new: an empty lower view.
        let changes = materialize::changes(dir, &BTreeMap::new(), true)?;
        let (reader, writer) = durable::pipe()?;
        std::thread::scope(|s| {
            let writing = s.spawn(move || {
                let mut writer = writer;
                materialize::write_diff(dir, &changes, &mut writer)
            });
            let applied = self.apply_diff(arg, reader, &());
            let written = writing
                .join()
                .unwrap_or(Err(Error::Panicked("staging directory reader")));
            match (applied, written) {
                (Ok(layer), _) => Ok(layer),
                // A directory that could not be read explains the stream
                // that ended early.
                (Err(_), Err(e)) if !is_broken_pipe(&e) => Err(e),
                (Err(e), _) => Err(e),
            }
        })
    }
}

/// Whether `e` is the writer's broken pipe (the reader stopped first).
fn is_broken_pipe(e: &Error) -> bool {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        source = inner.source();
    }
    false
}
