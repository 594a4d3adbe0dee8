//! `check`: problems on standard output as upstream prints them
//! (`layer ID: MSG`, `image ID: MSG`, `container ID: MSG`); with
//! `--repair`, what was removed or rebuilt and what remains on standard
//! error. Exit 1 while problems remain.

use containers_storage::store::Problem;
use containers_storage::Store;

use super::args;
use super::output::{self, errln, outln};
use super::Outcome;

pub fn check(store: &Store, args: &args::Check) -> Outcome {
    let report = store.check(&args.options())?;
    if args.json.json {
        output::json(&report)?;
    } else {
        for p in &report.problems {
            outln!("{}", shown(p));
        }
        if args.repair {
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
