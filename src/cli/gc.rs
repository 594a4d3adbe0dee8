//! `gc`.

use containers_storage::Store;

use super::args;
use super::output::{self, outln};
use super::Outcome;

pub fn gc(store: &Store, args: &args::Gc) -> Outcome {
    let report = store.gc(&args.options())?;
    // Upstream's `gc` prints nothing (`""` as JSON); the report is ours.
    let report_asked = args.dry_run || args.verbose;
    if args.json.json {
        return match report_asked {
            true => output::json(&report),
            false => output::json(&""),
        };
    }
    if !report_asked {
        return Ok(0);
    }
    let c = &report.chunks;
    let lines = [
        (report.incomplete_layers, "incomplete layers"),
        (report.orphan_layers, "container layers without a container"),
        (report.manifests, "manifests without a layer"),
        (c.chunks_removed, "unreferenced chunks"),
        (c.packs_removed, "packs deleted"),
        (c.packs_rewritten, "packs rewritten"),
        (c.leftovers_removed, "unpublished pack files"),
        (
            c.packs_unindexed,
            "packs left alone, their index unreadable (check -r indexes them again)",
        ),
        (report.objects.objects, "file objects"),
        (report.evicted.layers, "materialized layers evicted"),
        (report.driver_dirs, "driver directories and links"),
        (report.data_dirs, "data directories"),
        (report.temporary, "temporary files"),
        (
            report.layouts_restored,
            "layers given their missing driver entries",
        ),
    ];
    for (n, what) in lines.into_iter().filter(|(n, _)| *n > 0) {
        outln!("{what}: {n}");
    }
    for skipped in &report.skipped {
        outln!("skipped: {skipped}");
    }
    let verb = if args.dry_run { "Would free" } else { "Freed" };
    outln!("{verb} {} bytes", report.freed_bytes);
    Ok(0)
}
