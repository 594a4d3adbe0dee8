//! `dedup`.

use containers_storage::Store;

use super::args;
use super::output::{self, outln};
use super::Outcome;

pub fn dedup(store: &Store, args: &args::Dedup) -> Outcome {
    let report = store.dedup(args.hash_method)?;
    if args.json.json {
        return output::json(&report);
    }
    outln!("Deduplicated {} bytes", report.deduped);
    Ok(0)
}
