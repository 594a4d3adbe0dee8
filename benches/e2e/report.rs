//! The report, `benchmarks.md`: a summary first (each figure with its
//! target and whether it was met; ours beside the Go tool's), then the
//! charts, then the tables every figure comes from.

use std::fmt::Write;
use std::time::Duration;

use crate::materialize::{MaterializeFigures, TWINS};
use crate::system::{mb, median, secs};
use crate::versus_go::ToolFigures;
use crate::{charts, Figures};

/// A figure with a target.
pub struct Target {
    pub what: String,
    pub measured: String,
    pub target: String,
    pub met: bool,
}

pub fn targets(f: &Figures) -> Vec<Target> {
    let i = &f.import;
    let m = &f.materialize;
    let mut out = vec![
        Target {
            what:
                "import of the six images: our slowest round / the fastest `tar -x` + `sha256sum`"
                    .into(),
            measured: format!("{:.2}x", i.conservative_ratio()),
            target: "≤ 0.5x".into(),
            met: i.conservative_ratio() <= 0.5,
        },
        Target {
            what: "memory: peak RSS of one `import-layer`".into(),
            measured: format!("{:.1} MiB", i.peak_rss_kib as f64 / 1024.0),
            target: "< 256 MiB".into(),
            met: i.peak_rss_kib < 256 * 1024,
        },
        Target {
            what: format!(
                "pool on disk for the six images ({:.0} MB of tar)",
                mb(i.input_bytes)
            ),
            measured: format!("{:.1} MB", mb(i.pool())),
            target: "≤ 150 MB".into(),
            met: i.pool() <= 150_000_000,
        },
        Target {
            what: "disk used by the six images materialized / the six trees `tar -x` gives".into(),
            measured: format!("{:.2}x", m.space_ratio()),
            target: "≤ 0.5x (ext4)".into(),
            met: m.space_ratio() <= 0.5,
        },
    ];
    for (i, name) in f.images.iter().enumerate() {
        if name.ends_with("-base") {
            out.push(Target {
                what: format!("cold mount (nothing cached): {name} / `tar -x`"),
                measured: format!("{:.2}x", m.cold_ratio(i)),
                target: "≤ 1.0x".into(),
                met: m.cold_ratio(i) <= 1.0,
            });
        }
    }
    for (i, _) in TWINS {
        out.push(Target {
            what: format!("mount with every file cached: {} / `tar -x`", f.images[i]),
            measured: format!("{:.2}x", m.cached_ratio(i)),
            target: "≤ 0.2x".into(),
            met: m.cached_ratio(i) <= 0.2,
        });
    }
    out
}

fn s(d: Duration) -> String {
    let x = secs(d);
    if x < 0.1 {
        format!("{:.0} ms", x * 1000.0)
    } else {
        format!("{x:.2} s")
    }
}

pub fn render(f: &Figures) -> String {
    let mut doc = String::new();
    let w = &mut doc;
    let targets = targets(f);
    let met = targets.iter().filter(|t| t.met).count();
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Produced by `make bench` (`benches/e2e/`) on {}; machine: {}. Every comparison \
         is measured in the same run, rounds interleaved ({}). The machine is shared, \
         so times vary from run to run; ratios measured side by side vary less. \
         How the time is spent: [performance.md](performance.md).\n",
        f.date,
        f.machine,
        if f.rounds == 1 {
            "1 round: a smoke run".to_string()
        } else {
            format!("{} rounds", f.rounds)
        }
    );
    let _ = writeln!(w, "## Summary\n");
    let _ = writeln!(w, "**{met} of {} targets met.**\n", targets.len());
    let _ = writeln!(w, "| figure | measured | target | |\n|---|---|---|---|");
    for t in &targets {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} |",
            t.what,
            t.measured,
            t.target,
            if t.met { "met" } else { "**not met**" }
        );
    }
    let _ = writeln!(w);
    versus_summary(w, f);
    let _ = writeln!(w, "## Charts\n");
    for chart in charts::CHARTS {
        let _ = writeln!(
            w,
            "{}\n\n![{}]({})\n",
            chart.caption, chart.title, chart.file
        );
    }
    let _ = writeln!(w, "## Details\n");
    import_details(w, f);
    materialize_details(w, f);
    versus_details(w, f);
    doc
}

fn versus_summary(w: &mut String, f: &Figures) {
    let v = &f.versus;
    let _ = writeln!(w, "### Against the Go containers-storage\n");
    let go = match &v.go {
        Ok(go) => go,
        Err(why) => {
            let _ = writeln!(w, "Not measured: {why}.\n");
            return;
        }
    };
    let o = &v.ours;
    let _ = writeln!(
        w,
        "The same work by both, {} driver, same run, image by image as a host pulls an \
         image and runs a container on it: import the image, create an image and a \
         container on it, mount the container; at the end, unmount all and mount them \
         again. Go's `containers-storage` extracts every layer into a directory at import; \
         we store the chunks and build an image's directory at its first mount, which later \
         mounts reuse.\n",
        v.driver
    );
    let _ = writeln!(
        w,
        "| six images | ours | Go | ours / Go |\n|---|---|---|---|"
    );
    let time_row = |w: &mut String, what: &str, a: Duration, b: Duration| {
        let _ = writeln!(
            w,
            "| {what} | {} | {} | {:.2}x |",
            s(a),
            s(b),
            secs(a) / secs(b)
        );
    };
    let bytes_row = |w: &mut String, what: &str, a: u64, b: u64| {
        let _ = writeln!(
            w,
            "| {what} | {:.0} MB | {:.0} MB | {:.2}x |",
            mb(a),
            mb(b),
            a as f64 / b as f64
        );
    };
    time_row(
        w,
        "import (until on disk)",
        o.import_total(),
        go.import_total(),
    );
    bytes_row(
        w,
        "disk taken by the imports",
        *o.disk_imported().last().unwrap(),
        *go.disk_imported().last().unwrap(),
    );
    time_row(
        w,
        "first create-image + create-container + mount",
        o.first_mount_total(),
        go.first_mount_total(),
    );
    time_row(
        w,
        "**import and first mount together**",
        o.import_and_first_mount_total(),
        go.import_and_first_mount_total(),
    );
    time_row(
        w,
        "mounts after the first",
        o.remount_total(),
        go.remount_total(),
    );
    bytes_row(
        w,
        "disk with all six mounted",
        *o.disk_mounted().last().unwrap(),
        *go.disk_mounted().last().unwrap(),
    );
    let _ = writeln!(w);
}

fn import_details(w: &mut String, f: &Figures) {
    let i = &f.import;
    let _ = writeln!(
        w,
        "### Import of the six squashed images\n\n\
         The dataset (`make dataset`): Debian bookworm and trixie, each a minbase with \
         python3 or curl installed, squashed into one layer per image. The baseline is what \
         upstream's overlay driver does per layer: extract the tar into a fresh directory and \
         compute its sha256. It creates ~2.5 GB of files per round and its time varies a lot \
         on a shared machine; the conservative ratio compares our slowest round with its \
         fastest. Our store here uses the vfs driver (import does not depend on it).\n"
    );
    let (b, o) = (i.baseline_median(), i.ours_median());
    let _ = writeln!(
        w,
        "| measure | value |\n|---|---|\n\
         | input: six squashed Debian tars | {:.1} MB |\n\
         | baseline: `tar -x` each into a fresh dir + `sha256sum` each (median) | {} |\n\
         | ours: `import-layer` of the six into an empty store (median) | {} |\n\
         | import time ratio (median / median) | {:.2}x |\n\
         | import time ratio, conservative (slowest import / fastest baseline) | {:.2}x |\n\
         | import throughput | {:.0} MB/s |\n\
         | peak RSS of one `import-layer` | {:.1} MiB |\n\
         | pool on disk: packs + indexes | {:.1} MB |\n\
         | pool on disk: manifests | {:.1} MB |\n\
         | pool on disk, total | {:.1} MB |\n\
         | dedup + compression ratio (input / pool) | {:.2}x |\n",
        mb(i.input_bytes),
        s(b),
        s(o),
        secs(o) / secs(b),
        i.conservative_ratio(),
        mb(i.input_bytes) / secs(o),
        i.peak_rss_kib as f64 / 1024.0,
        mb(i.packs),
        mb(i.manifests),
        mb(i.pool()),
        i.input_bytes as f64 / i.pool() as f64,
    );
    let _ = writeln!(
        w,
        "Every round:\n\n| round | baseline | import | ratio |\n|---|---|---|---|"
    );
    for (n, (b, o)) in i.baseline.iter().zip(&i.ours).enumerate() {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {:.2}x |",
            n + 1,
            s(*b),
            s(*o),
            secs(*o) / secs(*b)
        );
    }
    let _ = writeln!(w);
}

fn materialize_details(w: &mut String, f: &Figures) {
    let m = &f.materialize;
    let place = if f.on_loop_ext4 {
        "a fresh loop-mounted ext4 (8 GiB, sparse; loop device with direct I/O; no reflinks: \
         overlay lowers are hardlinks of objects)"
    } else {
        "the work directory's filesystem"
    };
    let run = if m.run_on_tmpfs {
        "on a tmpfs"
    } else {
        "beside the graph root"
    };
    let _ = writeln!(
        w,
        "### Materialization\n\n\
         `mount -r` of each image against `tar -x` of its tar, on {place}; driver: {}; the run \
         root {run}. {} rounds, everything evicted between them (`gc --evict all`); times are \
         medians, ratios the median round's; every timed mount and `tar -x` starts after a \
         `sync`. *Cold*: nothing of the image in the object cache; *base cached*: its suite's \
         base image was just materialized; *every file cached*: its layered twin (base + diff \
         layer) is mounted.\n",
        m.driver, m.rounds
    );
    let _ = writeln!(
        w,
        "| measure | value |\n|---|---|\n\
         | disk used by the six images materialized (objects + directories) | {:.1} MB |\n\
         | disk used by the six trees extracted separately with `tar -x` | {:.1} MB |\n\
         | space ratio | {:.2}x |\n",
        mb(m.ours_bytes),
        mb(m.tar_bytes),
        m.space_ratio()
    );
    let _ = writeln!(
        w,
        "| mount | ours | `tar -x` | ratio | `tar -x; sync` | ratio | ratio, each round |\n\
         |---|---|---|---|---|---|---|"
    );
    let row = |w: &mut String, what: String, ours: &[Duration], i: usize| {
        let each: Vec<String> = ours
            .iter()
            .zip(&m.tar[i])
            .map(|(o, t)| format!("{:.2}", secs(*o) / secs(*t)))
            .collect();
        let _ = writeln!(
            w,
            "| {what} | {} | {} | {:.2}x | {} | {:.2}x | {} |",
            s(median(ours)),
            s(median(&m.tar[i])),
            MaterializeFigures::ratio(ours, &m.tar[i]),
            s(median(&m.tar_synced[i])),
            MaterializeFigures::ratio(ours, &m.tar_synced[i]),
            each.join(" "),
        );
    };
    for (i, name) in f.images.iter().enumerate() {
        let kind = if name.ends_with("-base") {
            "cold"
        } else {
            "base cached"
        };
        row(w, format!("{kind}: {name}"), &m.ours[i], i);
    }
    for (i, _) in TWINS {
        row(
            w,
            format!("every file cached: {}", f.images[i]),
            &m.cached[i],
            i,
        );
    }
    let _ = writeln!(w);
}

fn versus_details(w: &mut String, f: &Figures) {
    let v = &f.versus;
    let _ = writeln!(
        w,
        "### Image by image, side by side\n\n\
         {} driver, {} rounds, medians; each step timed until a `sync` after it returns. \
         Disk: the store's growth since it was empty (`statvfs`), cumulative: what the imports \
         took (the growth over the import steps), and everything once the image is mounted.\n",
        v.driver, v.rounds
    );
    let tools: Vec<&ToolFigures> = std::iter::once(&v.ours).chain(v.go.as_ref().ok()).collect();
    let header = |w: &mut String, first: &str, columns: &[&str]| {
        let _ = write!(w, "| {first} |");
        for c in columns {
            for t in &tools {
                let _ = write!(w, " {}: {c} |", short(&t.name));
            }
        }
        let _ = writeln!(w, "\n|---|{}", "---|".repeat(columns.len() * tools.len()));
    };
    let times: Vec<[Vec<Duration>; 3]> = tools
        .iter()
        .map(|t| {
            [
                t.import_per_image(),
                t.first_mount_per_image(),
                t.remount_per_image(),
            ]
        })
        .collect();
    header(w, "time", &["import", "first mount", "mount again"]);
    for (i, name) in f.images.iter().enumerate() {
        let _ = write!(w, "| {name} |");
        for column in 0..3 {
            for t in &times {
                let _ = write!(w, " {} |", s(t[column][i]));
            }
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(w);
    let disks: Vec<[Vec<u64>; 2]> = tools
        .iter()
        .map(|t| [t.disk_imported(), t.disk_mounted()])
        .collect();
    let _ = write!(w, "| disk, cumulative | tars |");
    for c in ["imports", "all"] {
        for t in &tools {
            let _ = write!(w, " {}: {c} |", short(&t.name));
        }
    }
    let _ = writeln!(w, "\n|---|---|{}", "---|".repeat(2 * tools.len()));
    let mut input = 0;
    for (i, name) in f.images.iter().enumerate() {
        input += f.input_sizes[i];
        let _ = write!(w, "| + {name} | {:.0} MB |", mb(input));
        for column in 0..2 {
            for d in &disks {
                let _ = write!(w, " {:.0} MB |", mb(d[column][i]));
            }
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(w);
    if let Err(why) = &v.go {
        let _ = writeln!(w, "The Go tool's columns are left out: {why}.\n");
    }
}

/// A tool's name in a table header.
pub fn short(name: &str) -> &str {
    if name.starts_with("Go") {
        "Go"
    } else {
        "ours"
    }
}
