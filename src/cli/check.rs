//! `check`: problems on standard output as upstream prints them
//! (`layer ID: MSG`, `image ID: MSG`, `container ID: MSG`); with
//! `--repair`, what was removed or rebuilt and what remains on standard
//! error. Exit 1 while problems remain.

use containers_storage::store::{CheckOptions, Problem};
use containers_storage::{parse_duration, Store};

use super::output::{self, errln, outln};
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
            outln!("{}", shown(p));
        }
        if repair {
            for p in &report.repaired {
                errln!("repaired: {}", shown(p));
            }
            for p in &report.remaining {
                errln!("remaining: {}", shown(p));
            }
        }
    }
    Ok(if report.remaining.is_empty() { 0 } else { 1 })
}

fn shown(p: &Problem) -> String {
    format!("{} {}: {}", p.kind.name(), p.id, p.message)
}
