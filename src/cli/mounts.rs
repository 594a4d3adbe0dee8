//! `mount`, `unmount`/`umount`, `mounted`.
//!
//! Each reports every argument, as upstream's: a failure on one is
//! printed (`ERR while mounting ARG`, ...) and the others go on; the
//! exit code is 1 when any failed. With `--json`, an array with an object
//! per argument: its `id`, what the command found, and `error` (empty
//! when none).

use containers_storage::{Error, Store};

use super::args;
use super::output::{self, errln, outln};
use super::Outcome;

/// One argument's outcome: its value and no error, or the default value
/// and the error's text (`failed` is then set).
fn per_arg<T: Default>(result: Result<T, Error>, failed: &mut bool) -> (T, String) {
    match result {
        Ok(value) => (value, String::new()),
        Err(e) => {
            *failed = true;
            (T::default(), e.to_string())
        }
    }
}

/// One argument of `mount --json`, upstream's fields in its order.
#[derive(serde::Serialize)]
struct MountJson {
    id: String,
    mountpoint: String,
    error: String,
}

/// One argument of `unmount --json`: upstream's `id` and `error`, then
/// ours, whether the last reference is gone.
#[derive(serde::Serialize)]
struct UnmountJson {
    id: String,
    error: String,
    unmounted: bool,
}

/// One argument of `mounted --json`: upstream's `id` and `error`, then
/// ours, whether it is mounted.
#[derive(serde::Serialize)]
struct MountedJson {
    id: String,
    error: String,
    mounted: bool,
}

pub fn mount(store: &Store, args: &args::Mount) -> Outcome {
    let json = args.json.json;
    let mut results = Vec::new();
    let mut failed = false;
    for arg in &args.items {
        let mounted = store.mount_labelled(arg, args.read_only, args.label.as_deref());
        let (path, error) = per_arg(mounted.map(|p| p.display().to_string()), &mut failed);
        if !json {
            if !error.is_empty() {
                errln!("{error} while mounting {arg}");
            }
            outln!("{path}");
        }
        results.push(MountJson {
            id: arg.clone(),
            mountpoint: path,
            error,
        });
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
        // An image's top layer is unmounted without a word, as upstream's.
        let image = store.mount_layer_id(arg).is_err();
        let (gone, error) = per_arg(store.unmount(arg, args.force), &mut failed);
        if !json {
            match error.is_empty() {
                true if gone && !image => outln!("{arg} mountpoint unmounted"),
                true => {}
                false => errln!("{error} while unmounting {arg}"),
            }
        }
        results.push(UnmountJson {
            id: arg.clone(),
            error,
            unmounted: gone,
        });
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
        let (mounted, error) = per_arg(store.mounted(arg), &mut failed);
        if !json {
            match error.is_empty() {
                true if mounted => outln!("{arg} mounted"),
                true => {}
                false => errln!("{error} checking if {arg} is mounted"),
            }
        }
        results.push(MountedJson {
            id: arg.clone(),
            error,
            mounted,
        });
    }
    if json {
        output::json(&results)?;
    }
    Ok(i32::from(failed))
}
