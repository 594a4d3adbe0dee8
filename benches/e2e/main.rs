//! End-to-end benchmark on the Debian dataset (`make dataset`): import
//! speed against what upstream's overlay driver does per layer, the
//! pool's size, materialization against `tar -x`, and the same work done
//! by the Go `containers-storage` beside ours. Every figure that is
//! compared is measured in the same run, rounds interleaved (this machine
//! is shared and noisy; absolute times vary).
//!
//! Run with `make bench`, or after `make binary`:
//! `cargo bench --bench e2e -- [--rounds N] [--out DIR]`. With `--out`, the
//! report goes to `DIR/benchmarks.md` and its charts beside it (`make
//! bench`: `target/bench/`; `make bench-docs` copies them to `docs/`),
//! with the figures in `DIR/figures.json`; the summary is printed either
//! way. `--from DIR/figures.json [--out DIR2]` draws the report and charts
//! again from saved figures, measuring nothing. The dataset comes from
//! `$CS_DEBIAN_TARS` (default `target/dataset/tars`), our binary from
//! `$CS_BINARY` (default `./containers-storage`), the Go one from
//! `$CS_GO_BINARY` (default `/usr/bin/containers-storage`; its columns
//! are left out, with the reason, where it is missing).
//!
//! Modules: `import` (import against `tar -x`), `materialize` (`mount -r`
//! against `tar -x`), `versus_go` (the same work by both tools, image by
//! image), `report` (the markdown), `charts` (the SVGs), `system`
//! (processes, disk figures, the loop filesystem).

// Benchmarks may unwrap (the crate's lints are for library code).
#![allow(clippy::unwrap_used)]

mod charts;
mod import;
mod materialize;
mod report;
mod system;
mod versus_go;

use std::fs;
use std::path::{Path, PathBuf};

use import::ImportFigures;
use materialize::MaterializeFigures;
use versus_go::{Tool, VersusFigures};

/// The six squashed images, in the order they are imported.
const SQUASHED: [&str; 6] = [
    "bookworm-base.tar",
    "bookworm-python3.full.tar",
    "bookworm-curl.full.tar",
    "trixie-base.tar",
    "trixie-python3.full.tar",
    "trixie-curl.full.tar",
];

/// The run's figures, saved beside the report (not copied to `docs/`):
/// `--from` draws the report and charts again from them.
const FIGURES: &str = "figures.json";

/// Everything the report and the charts show.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Figures {
    /// The six images' names (`bookworm-python3`, ...).
    pub images: Vec<String>,
    /// Each image's tar size.
    pub input_sizes: Vec<u64>,
    pub machine: String,
    pub date: String,
    pub rounds: usize,
    /// Whether materialization and the side-by-side ran on the bench's
    /// own loop ext4 (else in the work directory).
    pub on_loop_ext4: bool,
    pub import: ImportFigures,
    pub materialize: MaterializeFigures,
    pub versus: VersusFigures,
}

fn main() {
    let mut rounds = 3usize;
    let mut out: Option<PathBuf> = None;
    let mut from: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .expect("--rounds N (N >= 1)")
            }
            "--out" => out = args.next().map(PathBuf::from),
            "--from" => from = args.next().map(PathBuf::from),
            _ => {} // cargo bench passes --bench
        }
    }
    if let Some(saved) = from {
        // The report and charts again from a run's saved figures.
        let text = fs::read_to_string(&saved).expect("read the saved figures");
        let figures: Figures = serde_json::from_str(&text).expect("parse the saved figures");
        let dir = out.unwrap_or_else(|| saved.parent().unwrap_or(Path::new(".")).to_path_buf());
        write_report(&figures, &report::render(&figures), &dir);
        return;
    }
    let tars = PathBuf::from(
        std::env::var("CS_DEBIAN_TARS").unwrap_or_else(|_| "target/dataset/tars".into()),
    );
    let binary =
        PathBuf::from(std::env::var("CS_BINARY").unwrap_or_else(|_| "./containers-storage".into()));
    let inputs: Vec<PathBuf> = SQUASHED.iter().map(|t| tars.join(t)).collect();
    let needed = inputs.iter().cloned().chain(
        materialize::TWINS
            .iter()
            .map(|(i, _)| tars.join(SQUASHED[*i].replace(".full.tar", ".diff.tar"))),
    );
    for path in needed {
        if !path.is_file() {
            eprintln!(
                "e2e bench: {} is missing: `make dataset` builds the Debian dataset \
                 (needs root and Debian's mirrors), or set CS_DEBIAN_TARS",
                path.display()
            );
            std::process::exit(2);
        }
    }
    if !binary.exists() {
        eprintln!(
            "e2e bench: {} is missing; run `make binary` first",
            binary.display()
        );
        std::process::exit(2);
    }
    let go = versus_go::go_tool();
    if let Err(why) = &go {
        eprintln!("e2e bench: no Go columns: {why}");
    }
    let work = system::tempdir_under(&std::env::temp_dir());

    let import = import::measure(&binary, &inputs, &work, rounds);
    // Materializing takes a fraction of a second per image: more rounds
    // for a steadier median on a noisy machine.
    let fs = system::LoopExt4::mount(&work);
    let place = fs.as_ref().map_or(work.as_path(), |fs| fs.dir.as_path());
    let materialize = materialize::measure(&binary, &inputs, place, rounds.max(5));
    let ours = Tool {
        name: "ours",
        binary: binary.clone(),
    };
    let versus = versus_go::measure(ours, go, &inputs, place, rounds);
    let on_loop_ext4 = fs.is_some();
    drop(fs);
    let _ = fs::remove_dir_all(&work);

    let figures = Figures {
        images: SQUASHED
            .iter()
            .map(|t| {
                t.trim_end_matches(".tar")
                    .trim_end_matches(".full")
                    .to_string()
            })
            .collect(),
        input_sizes: inputs
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .collect(),
        machine: machine(),
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        rounds,
        on_loop_ext4,
        import,
        materialize,
        versus,
    };
    let doc = report::render(&figures);
    let summary_end = doc.find("## Charts").unwrap_or(doc.len());
    println!("{}", &doc[..summary_end]);
    if let Some(dir) = out {
        write_report(&figures, &doc, &dir);
    }
}

fn write_report(figures: &Figures, doc: &str, dir: &Path) {
    fs::create_dir_all(dir).expect("create the report's directory");
    let path = dir.join("benchmarks.md");
    fs::write(&path, doc).expect("write the report");
    let saved = serde_json::to_string_pretty(figures).expect("figures as JSON");
    fs::write(dir.join(FIGURES), saved).expect("write the figures");
    if let Err(e) = charts::draw(figures, dir) {
        eprintln!("e2e bench: drawing the charts: {e}");
        std::process::exit(1);
    }
    eprintln!(
        "wrote {} and its charts ({})",
        path.display(),
        charts::CHARTS.map(|c| c.file).join(", ")
    );
}

/// "2 cores, AMD EPYC ...".
fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    format!("{cores} cores, {cpu}")
}
