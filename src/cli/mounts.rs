//! `mount`, `unmount`/`umount`, `mounted`.
//!
//! Each reports every argument, as upstream's: a failure on one is
//! printed (`ERR while mounting ARG`, ...) and the others go on; the
//! exit code is 1 when any failed. With `--json`, an array with an object
//! per argument: its `id`, what the command found, and `error` (empty
//! when none).

use containers_storage::Store;

use super::args;
use super::output::{self, errln, outln};
use super::Outcome;

pub fn mount(store: &Store, args: &args::Mount) -> Outcome {
    let json = args.json.json;
    let mut results = Vec::new();
    let mut failed = false;
    for arg in &args.items {
        let (path, error) = match store.mount_labelled(arg, args.read_only, args.label.as_deref()) {
            Ok(path) => (path.display().to_string(), String::new()),
            Err(e) => {
                failed = true;
                (String::new(), e.to_string())
            }
        };
        if !json {
            if !error.is_empty() {
                errln!("{error} while mounting {arg}");
            }
            outln!("{path}");
        }
        results.push(serde_json::json!({ "id": arg, "mountpoint": path, "error": error }));
    }
    if json {
        output::json(&results)?;
    }
    Ok(i32::from(failed))
}

pub fn unmount(store: &Store, args: &args::Unmount) -> Outcome {
    let json = args.json.json;
    let mut results = Vec::new();
    let mut failed = false;
    for arg in &args.items {
        let (gone, error) = match store.unmount(arg, args.force) {
            Ok(gone) => (gone, String::new()),
            Err(e) => {
                failed = true;
                (false, e.to_string())
            }
        };
        if !json {
            match error.is_empty() {
                true if gone => outln!("{arg} mountpoint unmounted"),
                true => {}
                false => errln!("{error} while unmounting {arg}"),
            }
        }
        results.push(serde_json::json!({ "id": arg, "unmounted": gone, "error": error }));
    }
    if json {
        output::json(&results)?;
    }
    Ok(i32::from(failed))
}

pub fn mounted(store: &Store, args: &args::Mounted) -> Outcome {
    let json = args.json.json;
    let mut results = Vec::new();
    let mut failed = false;
    for arg in &args.items {
        let (mounted, error) = match store.mounted(arg) {
            Ok(mounted) => (mounted, String::new()),
            Err(e) => {
                failed = true;
                (false, e.to_string())
            }
        };
        if !json {
            match error.is_empty() {
                true if mounted => outln!("{arg} mounted"),
                true => {}
                false => errln!("{error} checking if {arg} is mounted"),
            }
        }
        results.push(serde_json::json!({ "id": arg, "mounted": mounted, "error": error }));
    }
    if json {
        output::json(&results)?;
    }
    Ok(i32::from(failed))
}
