//! Commands on an item of any kind: names, metadata, existence, delete,
//! userdata directories and parent owners.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use containers_storage::{Error, Kind, NamesOp, Op, Store};
use serde::Serialize;

use super::args;
use super::output::{self, errln, outln};
use super::{Failure, Outcome};

/// The metadata given as `-m VALUE` or `-f FILE` (the file wins).
pub fn read_metadata(value: Option<String>, file: Option<&Path>) -> Result<Option<String>, Error> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(Some)
            .map_err(|source| Error::io(Op::Read, path, source)),
        None => Ok(value),
    }
}

/// The items `get` finds among `args`, skipping the unknown ones (the
/// caller exits 1 when fewer than `args` were found).
pub fn known<T>(args: &[String], get: impl Fn(&str) -> Result<T, Error>) -> Result<Vec<T>, Error> {
    let mut found = Vec::new();
    for arg in args {
        match get(arg) {
            Ok(item) => found.push(item),
            Err(e) if e.is_not_known() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

/// Runs `delete` for each argument: errors as `ARG: ERR` on stderr, or a
/// JSON map of argument to error text (empty on success). An argument
/// that names nothing is reported in upstream's words, `missing`
/// (`identifier is not a layer`, ...).
pub fn delete_each(
    args: &[String],
    json: bool,
    missing: &str,
    delete: impl Fn(&str) -> Result<(), Error>,
) -> Outcome {
    let mut results = BTreeMap::new();
    let mut failed = false;
    for arg in args {
        let message = match delete(arg) {
            Ok(()) => String::new(),
            Err(e) => {
                failed = true;
                deletes_words(&e, missing)
            }
        };
        if !json && !message.is_empty() {
            errln!("{arg}: {message}");
        }
        results.insert(arg.clone(), message);
    }
    if json {
        output::json(&results)?;
    }
    Ok(if failed { 1 } else { 0 })
}

/// A delete's error text: upstream's `missing` for an argument that
/// names nothing, else ours.
pub fn deletes_words(e: &Error, missing: &str) -> String {
    match e.is_not_known() {
        true => missing.to_string(),
        false => e.to_string(),
    }
}

pub fn get_names(store: &Store, args: &args::GetNames) -> Outcome {
    let names = store.names(&args.item)?;
    if args.json.json {
        return output::json(&names);
    }
    for name in names {
        outln!("{name}");
    }
    Ok(0)
}

pub fn update_names(store: &Store, args: &args::Names, op: NamesOp) -> Outcome {
    // By ID afterwards: the name given may be one the change removed.
    let (_, id) = store.resolve(&args.item)?;
    store.update_names(&id, op, &args.flags.names)?;
    if args.flags.json.json {
        return output::json(&store.names(&id)?);
    }
    Ok(0)
}

pub fn metadata(store: &Store, args: &args::Metadata) -> Outcome {
    let (quiet, json) = (args.quiet.quiet, args.json.json);
    let mut found = BTreeMap::new();
    let mut missing = false;
    // As upstream: the value without its final newline, and an item
    // that is not known printed with an empty one.
    for arg in &args.items {
        let value = match store.metadata(arg) {
            Ok(value) => {
                let value = value.strip_suffix('\n').unwrap_or(&value).to_string();
                found.insert(arg.clone(), value.clone());
                value
            }
            Err(e) if e.is_not_known() => {
                missing = true;
                String::new()
            }
            Err(e) => return Err(e.into()),
        };
        match (json, quiet) {
            (true, _) => {}
            (false, true) => outln!("{value}"),
            (false, false) => outln!("{arg}: {value}"),
        }
    }
    if json {
        output::json(&found)?;
    }
    Ok(if missing { 1 } else { 0 })
}

pub fn set_metadata(store: &Store, args: &args::SetMetadata) -> Outcome {
    // `-m ""` is no value, as upstream has it (an empty file is one).
    let given = args.metadata.clone().filter(|m| !m.is_empty());
    let value = read_metadata(given, args.file.as_deref())?
        .ok_or_else(|| Failure::usage("no new metadata provided (use -m VALUE or -f FILE)"))?;
    match store.set_metadata(&args.item, &value) {
        Err(e) if e.is_not_known() => Err(Failure::usage(format!(
            "{}: identifier is not a layer, image, or container",
            args.item
        ))),
        result => Ok(result.map(|()| 0)?),
    }
}

pub fn exists(store: &Store, args: &args::Exists) -> Outcome {
    let (kinds, quiet, json) = (args.kinds(), args.quiet.quiet, args.json.json);
    let mut results = BTreeMap::new();
    let mut missing = false;
    // As upstream: what is printed is whether the item exists at all;
    // `-l`, `-i` and `-c` decide the exit code only.
    for arg in &args.items {
        let exists = store.exists(arg, &[])?;
        missing |= !(exists && (kinds.is_empty() || store.exists(arg, &kinds)?));
        if !json && !quiet {
            outln!("{arg}: {exists}");
        }
        results.insert(arg.clone(), exists);
    }
    if json {
        output::json(&results)?;
    }
    Ok(if missing { 1 } else { 0 })
}

pub fn print_dir(dir: Result<PathBuf, Error>) -> Outcome {
    outln!("{}", dir?.display());
    Ok(0)
}

#[derive(Serialize)]
struct Owners {
    #[serde(rename = "ID")]
    id: String,
    /// `null` when empty, as upstream's nil slice.
    #[serde(rename = "UIDs")]
    uids: Option<Vec<u32>>,
    #[serde(rename = "GIDs")]
    gids: Option<Vec<u32>>,
}

/// IDs that own parent directories of the layer's mount point and that
/// its ID mapping cannot map (none without one), as upstream prints
/// them: `ID: `, then `UIDs: [0 1]` and `GIDs: [...]` (for a layer only
/// when not empty); with --json, one object per item and line. An
/// argument that is not known is reported on stderr and makes the exit 1.
pub fn parent_owners(store: &Store, kind: Kind, args: &[String], json: bool) -> Outcome {
    let mut code = 0;
    for arg in args {
        let found = match kind {
            Kind::Container => store.container_parent_owners(arg),
            _ => store.layer_parent_owners(arg),
        };
        let owners = match found {
            Ok(owners) => owners,
            Err(e) if e.is_not_known() => {
                errln!("{e}");
                code = 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if json {
            let some = |ids: Vec<u32>| (!ids.is_empty()).then_some(ids);
            output::json(&Owners {
                id: owners.id,
                uids: some(owners.uids),
                gids: some(owners.gids),
            })?;
            continue;
        }
        let list = |ids: &[u32]| {
            let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
            format!("[{}]", ids.join(" "))
        };
        outln!("ID: {}", owners.id);
        if kind == Kind::Container || !owners.uids.is_empty() {
            outln!("UIDs: {}", list(&owners.uids));
        }
        if kind == Kind::Container || !owners.gids.is_empty() {
            outln!("GIDs: {}", list(&owners.gids));
        }
    }
    Ok(code)
}
