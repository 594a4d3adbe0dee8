//! `wipe` and `shutdown`.

use containers_storage::Store;

use super::output;
use super::{Failure, Outcome};

/// Removes everything; with `--json`, upstream's `""` once done.
pub fn wipe(store: &Store, json: bool) -> Outcome {
    store.wipe()?;
    if json {
        return output::json(&"");
    }
    Ok(0)
}

/// Releases the store; with `--force`, unmounts every mount first (what
/// a killed mount left without a record too). Without it, a store with
/// mounts fails, in upstream's words. With `--json`, upstream's `""` once
/// done.
pub fn shutdown(store: &Store, force: bool, json: bool) -> Outcome {
    if force {
        store.unmount_all()?;
    } else if store.mounts()?.iter().any(|m| m.count > 0) {
        return Err(
            Failure::usage("a layer is mounted: layer is in use by a container")
                .with_hint("unmount them, or use shutdown -f"),
        );
    }
    store.release();
    if json {
        return output::json(&"");
    }
    Ok(0)
}
