//! Output helpers. Everything on standard output goes through `outln!`,
//! so a closed pipe becomes an error (reported as exit 0) instead of a
//! panic; JSON values end with a newline, as upstream prints them.

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
