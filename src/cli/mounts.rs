//! `mount`, `unmount`/`umount`, `mounted`.

use std::collections::BTreeMap;

use containers_storage::Store;

use super::args;
use super::output::{self, errln, outln};
use super::Outcome;

pub fn mount(store: &Store, args: &args::Mount) -> Outcome {
    let json = args.json.json;
    let mut results = Vec::new();
    for arg in &args.items {
        let path = store.mount_labelled(arg, args.read_only, args.label.as_deref())?;
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

pub fn unmount(store: &Store, args: &args::Unmount) -> Outcome {
    let json = args.json.json;
    let mut results = Vec::new();
    let mut failed = false;
    for arg in &args.items {
        match store.unmount(arg, args.force) {
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

pub fn mounted(store: &Store, args: &args::Mounted) -> Outcome {
    let json = args.json.json;
    let mut results = BTreeMap::new();
    for arg in &args.items {
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
