//! Big data commands for layers, images and containers.

use std::io::{Read, Write};
use std::path::Path;

use containers_storage::{Error, Kind, Store};

use super::output::{self, outln};
use super::Outcome;

pub fn list(store: &Store, kind: Kind, arg: &str, json: bool) -> Outcome {
    let names = store.big_data_names(kind, arg)?;
    if json {
        return output::json(&names);
    }
    for name in names {
        outln!("{name}");
    }
    Ok(0)
}

pub fn get(store: &Store, kind: Kind, args: &[String], file: Option<&Path>) -> Outcome {
    let data = store.big_data(kind, &args[0], &args[1])?;
    match file {
        Some(path) => std::fs::write(path, &data).map_err(|source| Error::Io {
            op: "write",
            path: path.to_path_buf(),
            source,
        })?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&data)
                .and_then(|()| out.flush())
                .map_err(|source| Error::Stream {
                    what: "writing to standard output".into(),
                    source,
                })?
        }
    }
    Ok(0)
}

pub fn set(store: &Store, kind: Kind, args: &[String], file: Option<&Path>) -> Outcome {
    let data = match file {
        Some(path) => std::fs::read(path).map_err(|source| Error::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        })?,
        None => {
            let mut data = Vec::new();
            std::io::stdin()
                .read_to_end(&mut data)
                .map_err(|source| Error::Stream {
                    what: "reading standard input".into(),
                    source,
                })?;
            data
        }
    };
    store.set_big_data(kind, &args[0], &args[1], &data)?;
    Ok(0)
}

pub fn size(store: &Store, kind: Kind, args: &[String]) -> Outcome {
    outln!("{}", store.big_data_size(kind, &args[0], &args[1])?);
    Ok(0)
}

pub fn digest(store: &Store, kind: Kind, args: &[String]) -> Outcome {
    outln!("{}", store.big_data_digest(kind, &args[0], &args[1])?);
    Ok(0)
}
