//! `wipe` and `shutdown`.

use containers_storage::Store;

use super::output;
use super::Outcome;

pub fn wipe(store: &Store, json: bool) -> Outcome {
    store.wipe()?;
    if json {
        return output::json(&serde_json::json!({}));
    }
    Ok(0)
}

/// Releases the store. Nothing is mounted by this build yet, so there is
/// nothing to unmount, with or without `--force`.
pub fn shutdown(_store: &Store, _force: bool) -> Outcome {
    Ok(0)
}
