//! `mount`, `unmount`/`umount`, `mounted`.

use std::collections::BTreeMap;

use containers_storage::Store;

use super::output::{self, errln, outln};
use super::Outcome;

pub fn mount(
    store: &Store,
    args: &[String],
    read_only: bool,
    label: Option<&str>,
    json: bool,
) -> Outcome {
    let mut results = Vec::new();
    for arg in args {
        let path = store.mount_labelled(arg, read_only, label)?;
        results.push(serde_json::json!({ "id": arg, "mountpoint": path.display().to_string() }));
        if !json {
            outln!("{}", path.display());
        }
    }
    if json {
        output::json(&results)?;
    }
    Ok(0)
}

pub fn unmount(store: &Store, args: &[String], force: bool, json: bool) -> Outcome {
    let mut results = Vec::new();
    let mut failed = false;
    for arg in args {
        match store.unmount(arg, force) {
            Ok(gone) => {
                if gone && !json {
                    outln!("{arg} mountpoint unmounted");
                }
                results.push(serde_json::json!({ "id": arg, "unmounted": gone }));
            }
            Err(e) => {
                failed = true;
                if !json {
                    errln!("{arg}: {e}");
                }
                results.push(serde_json::json!({ "id": arg, "error": e.to_string() }));
            }
        }
    }
    if json {
        output::json(&results)?;
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn mounted(store: &Store, args: &[String], json: bool) -> Outcome {
    let mut results = BTreeMap::new();
    for arg in args {
        let mounted = store.mounted(arg)?;
        if mounted && !json {
            outln!("{arg} mounted");
        }
        results.insert(arg.clone(), mounted);
    }
    if json {
        output::json(&results)?;
    }
    Ok(0)
}
