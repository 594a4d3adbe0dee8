//! `check`.

use containers_storage::store::CheckOptions;
use containers_storage::{parse_duration, Store};

use super::output::{self, outln};
use super::Outcome;

pub fn check(
    store: &Store,
    quick: bool,
    repair: bool,
    force: bool,
    max: &str,
    json: bool,
) -> Outcome {
    let options = CheckOptions {
        quick,
        repair,
        force,
        max_unreferenced_age: parse_duration(max)?,
    };
    let report = store.check(&options)?;
    if json {
        output::json(&report)?;
    } else {
        for p in &report.problems {
            outln!("{} {}: {}", p.kind.name(), p.id, p.message);
        }
    }
    let remaining = if repair {
        &report.remaining
    } else {
        &report.problems
    };
    Ok(if remaining.is_empty() { 0 } else { 1 })
}
