//! `diff`: a layer's tar stream, to stdout or a file.

use std::io::Write;
use std::path::Path;

use containers_storage::{Compression, Error, Store};

use super::progress::{CountingWriter, Progress};
use super::Outcome;

pub fn diff(
    store: &Store,
    args: &[String],
    compression: Option<Compression>,
    file: Option<&Path>,
) -> Outcome {
    let layer = store.layer(&args[0])?;
    if let Some(from) = args.get(1).filter(|f| !f.is_empty()) {
        let from = store.layer(from)?;
        if from.id != layer.parent {
            return Err(Error::Refused(format!(
                "layer {}: a diff against {} (not its parent) is not supported",
                layer.id, from.id
            )));
        }
    }
    let progress = Progress::start("diff");
    let result = match file {
        Some(path) => {
            let tmp = path.with_extension("partial");
            let out = std::fs::File::create(&tmp).map_err(|source| Error::Io {
                op: "create",
                path: tmp.clone(),
                source,
            })?;
            let mut out = CountingWriter {
                inner: std::io::BufWriter::new(out),
                progress: &progress,
            };
            let written = store.diff(&layer.id, compression, &mut out).and_then(|()| {
                out.flush().map_err(|source| Error::Io {
                    op: "write",
                    path: tmp.clone(),
                    source,
                })
            });
            match written {
                Ok(()) => std::fs::rename(&tmp, path).map_err(|source| Error::Io {
                    op: "rename",
                    path: path.to_path_buf(),
                    source,
                }),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(e)
                }
            }
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = CountingWriter {
                inner: stdout.lock(),
                progress: &progress,
            };
            store.diff(&layer.id, compression, &mut out).and_then(|()| {
                out.flush().map_err(|source| Error::Stream {
                    what: "writing the layer stream".into(),
                    source,
                })
            })
        }
    };
    progress.finish();
    result.map(|()| 0)
}
