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
    for layer in &report.adopted {
        outln!("Adopted layer {layer}");
    }
    for skipped in &report.skipped {
        outln!("Skipped layer {}: {}", skipped.layer, skipped.reason);
    }
    if !report.adopted.is_empty() {
        outln!(
            "Stored {} bytes in the pool, freed {} bytes by hardlinks",
            report.stored,
            report.linked
        );
    }
    outln!("Deduplicated {} bytes", report.deduped);
    if !report.adopted.is_empty() {
        outln!("Saved {} bytes", report.saved);
    }
    Ok(0)
}
