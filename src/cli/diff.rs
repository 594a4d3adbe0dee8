//! `diff`: a layer's tar stream, to stdout or a file.

use std::io::Write;
use std::path::Path;

use containers_storage::{Error, Op, Store};

use super::args;
use super::progress::{CountingWriter, Progress};
use super::Outcome;

pub fn diff(store: &Store, args: &args::Diff) -> Outcome {
    let compression = args.compression();
    let layer = store.layer(&store.mount_layer_id(&args.layer)?)?;
    let from = args.from.as_deref().filter(|f| !f.is_empty());
    // Against any layer but the parent, the two whole trees' changes.
    let export = |out: &mut dyn Write| match from {
        Some(from) => store.diff_from(&layer.id, from, compression, out),
        None => store.diff(&layer.id, compression, out),
    };
    let progress = Progress::start("diff", None);
    let result = match args.file.as_deref() {
        Some(path) => write_file(&export, path, &progress),
        None => {
            let stdout = std::io::stdout();
            let mut out = CountingWriter {
                inner: stdout.lock(),
                progress: &progress,
            };
            export(&mut out).and_then(|()| out.flush().map_err(Error::writing_stream))
        }
    };
    progress.finish();
    result?;
    Ok(0)
}

/// Writes the diff to `path`. A regular file (or a new one) is written
/// under a unique temporary name beside it and renamed into place, so a
/// failed diff leaves no partial file; anything else (a FIFO, a device,
/// `/dev/stdout`) is written directly.
fn write_file(
    export: &dyn Fn(&mut dyn Write) -> Result<(), Error>,
    path: &Path,
    progress: &Progress,
) -> Result<(), Error> {
    let io = |op: Op, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::io(op, &path, source)
    };
    let special = path.starts_with("/dev")
        || path.starts_with("/proc")
        || std::fs::metadata(path).is_ok_and(|m| !m.is_file());
    if special {
        let out = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io(Op::Open, path))?;
        let mut out = CountingWriter {
            inner: std::io::BufWriter::new(out),
            progress,
        };
        export(&mut out)?;
        return out.flush().map_err(io(Op::Write, path));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = path.with_file_name(format!(".{name}.partial-{}-{nanos}", std::process::id()));
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io(Op::Create, &tmp))?;
    let mut out = CountingWriter {
        inner: std::io::BufWriter::new(out),
        progress,
    };
    let written = export(&mut out)
        .and_then(|()| out.flush().map_err(io(Op::Write, &tmp)))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io(Op::Rename, path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
