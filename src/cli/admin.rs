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
/// a killed mount left without a record too). A store that had mounts
/// fails all the same, in upstream's words, forced or not (upstream's
/// `Shutdown` reports them after unmounting); with `--json` that failure
/// is upstream's encoding of an error, `{}`. Otherwise `--json` prints
/// upstream's `""`.
pub fn shutdown(store: &Store, force: bool, json: bool) -> Outcome {
    let mounted = store.mounts()?.iter().any(|m| m.count > 0);
    if force {
        store.unmount_all()?;
    }
    if mounted {
        if json {
            output::json(&serde_json::json!({}))?;
            return Ok(1);
        }
        let failure = Failure::usage("a layer is mounted: layer is in use by a container");
        return Err(if force {
            failure
        } else {
            failure.with_hint("unmount them, or use shutdown -f")
        });
    }
    store.release()?;
    if json {
        return output::json(&"");
    }
    Ok(0)
}
