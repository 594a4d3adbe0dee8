//! `check`: problems on standard output (`layer ID: MSG`, `image ID:
//! MSG`, `container ID: MSG`), then, without `--repair`, upstream's count
//! of them on standard error (`N layer errors, N read-only layer errors,
//! ...`); with `--repair`, what was removed or rebuilt and what remains
//! on standard error. Exit 1 while problems remain. `--json` gives our
//! report with upstream's keys beside it (`Layers`, `ROLayers`, `Images`,
//! `ROImages`, `Containers`: each problem's ID with one `{}` per problem,
//! as Go encodes its errors).

use std::collections::BTreeMap;

use containers_storage::store::{CheckReport, Problem, Subject};
use containers_storage::Store;

use super::args;
use super::output::{self, errln, outln};
use super::Outcome;

pub fn check(store: &Store, args: &args::Check) -> Outcome {
    let report = store.check(&args.options())?;
    if args.json.json {
        output::json(&with_upstreams_keys(&report))?;
    } else {
        for p in &report.problems {
            outln!("{}", shown(p));
        }
        if !args.repair && !report.problems.is_empty() {
            let n = |kind| by_id(&report.problems, kind).len();
            errln!(
                "{} layer errors, 0 read-only layer errors, {} image errors, 0 read-only image errors, {} container errors",
                n(Subject::Layer),
                n(Subject::Image),
                n(Subject::Container)
            );
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

/// The problems of `kind`, by ID: a `{}` for each (Go's encoding of an
/// error value).
fn by_id(problems: &[Problem], kind: Subject) -> BTreeMap<&str, Vec<serde_json::Value>> {
    let mut map: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    for p in problems.iter().filter(|p| p.kind == kind) {
        map.entry(&p.id).or_default().push(serde_json::json!({}));
    }
    map
}

/// Our report, and upstream's `CheckReport` keys beside it (read-only
/// stores are not checked: theirs are empty).
fn with_upstreams_keys(report: &CheckReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).expect("the report serializes");
    let empty = serde_json::json!({});
    if let Some(object) = value.as_object_mut() {
        for (key, kind) in [
            ("Layers", Subject::Layer),
            ("Images", Subject::Image),
            ("Containers", Subject::Container),
        ] {
            let map = serde_json::to_value(by_id(&report.problems, kind)).expect("serializes");
            object.insert(key.into(), map);
        }
        object.insert("ROLayers".into(), empty.clone());
        object.insert("ROImages".into(), empty);
    }
    value
}

fn shown(p: &Problem) -> String {
    format!("{} {}: {}", p.kind.name(), p.id, p.message)
}
