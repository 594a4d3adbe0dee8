//! `dedup`.

use containers_storage::store::HashMethod;
use containers_storage::{Error, Store};

use super::output::{self, outln};
use super::Outcome;

pub fn dedup(store: &Store, method: &str, json: bool) -> Outcome {
    let method = match method {
        "crc" => HashMethod::Crc,
        "size" => HashMethod::Size,
        "sha256" => HashMethod::Sha256,
        other => {
            return Err(Error::Config(format!(
                "--hash-method {other:?}: use crc, size or sha256"
            )))
        }
    };
    let report = store.dedup(method)?;
    if json {
        return output::json(&report);
    }
    outln!("Deduplicated {} bytes", report.deduped);
    Ok(0)
}
