//! `gc`.

use containers_storage::store::{Evict, GcOptions};
use containers_storage::{parse_duration, Store};

use super::output::{self, outln};
use super::Outcome;

pub fn gc(store: &Store, dry_run: bool, evict: &str, json: bool) -> Outcome {
    let evict = match evict {
        "policy" => Evict::Policy,
        "all" => Evict::All,
        "never" => Evict::Never,
        other => Evict::After(parse_duration(other)?),
    };
    let report = store.gc(&GcOptions { dry_run, evict })?;
    if json {
        return output::json(&report);
    }
    outln!("Freed {} bytes", report.freed_bytes);
    Ok(0)
}
