//! Output helpers. Everything on standard output goes through `outln!`,
//! so a closed pipe becomes an error (reported as exit 0) instead of a
//! panic; everything on standard error through `errln!`, which never
//! fails (a closed or broken standard error only loses the message);
//! JSON values end with a newline, as upstream prints them.

use std::io::Write;

use containers_storage::Error;
use serde::Serialize;

/// `println!` that returns a write error to the handler (use with `?`
/// semantics: it returns early from the enclosing function).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))?
    };
}
pub(crate) use outln;

/// `eprintln!` that ignores a standard error it cannot write to (closed,
/// a broken pipe) instead of panicking.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::output::err_line(format_args!($($arg)*))
    };
}
pub(crate) use errln;

/// Writes one line to standard error; a failure is ignored (there is
/// nowhere left to report it).
pub fn err_line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Writes one line to standard output.
pub fn line(args: std::fmt::Arguments<'_>) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|source| Error::Stream {
            what: "writing to standard output".into(),
            source,
        })
}

/// Prints `value` as one JSON document and a newline.
pub fn json<T: Serialize>(value: &T) -> super::Outcome {
    let text = serde_json::to_string(value).expect("output serializes");
    line(format_args!("{text}"))?;
    Ok(0)
}
