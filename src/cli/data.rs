//! Big data commands for layers, images and containers.

use std::io::{Read, Write};

use containers_storage::{Error, Kind, Op, Store};

use super::args;
use super::output::{self, outln};
use super::Outcome;

pub fn list(store: &Store, kind: Kind, args: &args::ListData) -> Outcome {
    let names = store.big_data_names(kind, &args.item)?;
    if args.json.json {
        return output::json(&names);
    }
    for name in names {
        outln!("{name}");
    }
    Ok(0)
}

pub fn get(store: &Store, kind: Kind, args: &args::GetData) -> Outcome {
    let data = store.big_data(kind, &args.item, &args.key)?;
    match &args.file.file {
        Some(path) => {
            std::fs::write(path, &data).map_err(|source| Error::io(Op::Write, path, source))?
        }
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

pub fn set(store: &Store, kind: Kind, args: &args::SetData) -> Outcome {
    let data = match &args.file.file {
        Some(path) => std::fs::read(path).map_err(|source| Error::io(Op::Read, path, source))?,
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
    store.set_big_data(kind, &args.item, &args.key, &data)?;
    Ok(0)
}

pub fn size(store: &Store, kind: Kind, args: &args::DataKey) -> Outcome {
    outln!("{}", store.big_data_size(kind, &args.item, &args.key)?);
    Ok(0)
}

pub fn digest(store: &Store, kind: Kind, args: &args::DataKey) -> Outcome {
    outln!("{}", store.big_data_digest(kind, &args.item, &args.key)?);
    Ok(0)
}
