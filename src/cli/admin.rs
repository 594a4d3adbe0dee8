//! `wipe` and `shutdown`.

use containers_storage::Store;

use super::output;
use super::{Failure, Outcome};

pub fn wipe(store: &Store, json: bool) -> Outcome {
    store.wipe()?;
    if json {
        return output::json(&serde_json::json!({}));
    }
    Ok(0)
}

/// Releases the store; with `--force`, unmounts every mount first.
/// Without it, a store with mounts refuses, as upstream does.
pub fn shutdown(store: &Store, force: bool) -> Outcome {
    if force {
        store.unmount_all()?;
    } else if !store.mounts()?.is_empty() {
        return Err(Failure::usage("layers are still mounted (use shutdown -f)"));
    }
    Ok(0)
}
