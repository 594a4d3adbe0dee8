//! The same work by our binary and by the Go `containers-storage` (Debian's
//! package), when it is installed: image by image, as a host pulls an
//! image and runs a container on it, import a squashed image, then create
//! an image and a container on it and mount the container (its first
//! mount); at the end, unmount every container and mount it again (a
//! mount after the first). Both
//! use the overlay driver (vfs when not root, and then ours alone: the Go
//! tool's overlay needs root), a store on the bench's own ext4 and a run
//! root on a tmpfs. Rounds are interleaved, the order of the two tools
//! alternating from round to round.
//!
//! Each step is timed until a `sync` after it returns, so writeback that
//! one tool leaves behind is counted against it and not against the next
//! command; disk figures are `statvfs` deltas after that `sync`, image by
//! image, so they also show how each store grows: what the imports took
//! (the growth over each import step) and everything (imports and mounts).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::system::{
    disk_used, is_root, median, median_u64, output, sync, tmpfs_dir, unmount_below,
};

/// One tool: its binary and how the report names it.
pub struct Tool {
    pub name: &'static str,
    pub binary: PathBuf,
}

/// One round of one tool; every vector has one element per image.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Round {
    /// `import-layer -f TAR` + `sync`.
    pub import: Vec<Duration>,
    /// Disk the imports of images 1..=i took (the growth over those steps).
    pub disk_imported: Vec<u64>,
    /// `create-image`, `create-container`, `mount` + `sync`.
    pub first_mount: Vec<Duration>,
    /// Disk used by the store with images 1..=i imported and mounted.
    pub disk_mounted: Vec<u64>,
    /// `mount` again after every container was unmounted.
    pub remount: Vec<Duration>,
}

/// A tool's figures over all rounds.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ToolFigures {
    pub name: String,
    pub rounds: Vec<Round>,
}

impl ToolFigures {
    /// Per image, the median over rounds of `pick(round)[i]`.
    fn per_image_times(&self, pick: impl Fn(&Round) -> &Vec<Duration>) -> Vec<Duration> {
        let n = pick(&self.rounds[0]).len();
        (0..n)
            .map(|i| median(&self.rounds.iter().map(|r| pick(r)[i]).collect::<Vec<_>>()))
            .collect()
    }

    fn per_image_bytes(&self, pick: impl Fn(&Round) -> &Vec<u64>) -> Vec<u64> {
        let n = pick(&self.rounds[0]).len();
        (0..n)
            .map(|i| median_u64(&self.rounds.iter().map(|r| pick(r)[i]).collect::<Vec<_>>()))
            .collect()
    }

    /// The median round's total of `pick`.
    fn total(&self, pick: impl Fn(&Round) -> &Vec<Duration>) -> Duration {
        median(
            &self
                .rounds
                .iter()
                .map(|r| pick(r).iter().sum())
                .collect::<Vec<Duration>>(),
        )
    }

    pub fn import_per_image(&self) -> Vec<Duration> {
        self.per_image_times(|r| &r.import)
    }
    pub fn first_mount_per_image(&self) -> Vec<Duration> {
        self.per_image_times(|r| &r.first_mount)
    }
    pub fn remount_per_image(&self) -> Vec<Duration> {
        self.per_image_times(|r| &r.remount)
    }
    pub fn disk_imported(&self) -> Vec<u64> {
        self.per_image_bytes(|r| &r.disk_imported)
    }
    pub fn disk_mounted(&self) -> Vec<u64> {
        self.per_image_bytes(|r| &r.disk_mounted)
    }
    pub fn import_total(&self) -> Duration {
        self.total(|r| &r.import)
    }
    pub fn first_mount_total(&self) -> Duration {
        self.total(|r| &r.first_mount)
    }
    pub fn remount_total(&self) -> Duration {
        self.total(|r| &r.remount)
    }
    /// The time of importing and then mounting every image once: the
    /// median round's import + first mounts.
    pub fn import_and_first_mount_total(&self) -> Duration {
        median(
            &self
                .rounds
                .iter()
                .map(|r| r.import.iter().chain(&r.first_mount).sum())
                .collect::<Vec<Duration>>(),
        )
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct VersusFigures {
    pub driver: String,
    pub rounds: usize,
    pub ours: ToolFigures,
    /// The Go tool's figures, or why there are none.
    pub go: Result<ToolFigures, String>,
}

/// The Go tool to compare with: `$CS_GO_BINARY`, else Debian's
/// `/usr/bin/containers-storage`; or why there is none.
pub fn go_tool() -> Result<Tool, String> {
    let binary = std::env::var_os("CS_GO_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/containers-storage"));
    if !binary.exists() {
        return Err(format!(
            "the Go containers-storage is not installed ({} is missing; \
             `apt-get install containers-storage` installs it, `make bench` does as root)",
            binary.display()
        ));
    }
    if !is_root() {
        return Err("the Go containers-storage's overlay driver needs root".into());
    }
    Ok(Tool {
        name: "Go containers-storage",
        binary,
    })
}

pub fn measure(
    ours: Tool,
    go: Result<Tool, String>,
    inputs: &[PathBuf],
    work: &Path,
    rounds: usize,
) -> VersusFigures {
    let driver = if is_root() { "overlay" } else { "vfs" };
    let mut ours_figures = ToolFigures {
        name: ours.name.into(),
        rounds: Vec::new(),
    };
    let mut go_figures = go
        .as_ref()
        .map(|t| ToolFigures {
            name: t.name.into(),
            rounds: Vec::new(),
        })
        .map_err(|e| e.clone());
    for round in 0..rounds {
        let go_first = round % 2 == 0;
        let mut order: Vec<bool> = vec![false];
        if go.is_ok() {
            order = if go_first {
                vec![true, false]
            } else {
                vec![false, true]
            };
        }
        for is_go in order {
            if is_go {
                let tool = go.as_ref().expect("checked");
                let figures = go_figures.as_mut().expect("checked");
                figures.rounds.push(one_round(tool, driver, inputs, work));
            } else {
                ours_figures
                    .rounds
                    .push(one_round(&ours, driver, inputs, work));
            }
        }
        eprintln!("side by side round {}/{rounds} done", round + 1);
    }
    VersusFigures {
        driver: driver.into(),
        rounds,
        ours: ours_figures,
        go: go_figures,
    }
}

fn one_round(tool: &Tool, driver: &str, inputs: &[PathBuf], work: &Path) -> Round {
    let store = work.join("side-by-side");
    let tmpfs = tmpfs_dir("side-by-side-run");
    let run_root = tmpfs.clone().unwrap_or_else(|| store.join("run"));
    let cs = |args: &[&str]| -> String {
        output(
            Command::new(&tool.binary)
                .arg("--graph")
                .arg(store.join("graph"))
                .arg("--run")
                .arg(&run_root)
                .args(["--storage-driver", driver])
                .args(args),
        )
    };
    let mut r = Round::default();
    fs::create_dir_all(&store).unwrap();
    sync();
    let before = disk_used(work);
    // Image by image, as a host pulls an image and runs a container on it.
    let (mut imported, mut total) = (0, 0);
    for (i, input) in inputs.iter().enumerate() {
        let start = Instant::now();
        cs(&[
            "import-layer",
            "-n",
            &format!("l{i}"),
            "-f",
            input.to_str().unwrap(),
        ]);
        sync();
        r.import.push(start.elapsed());
        let now = disk_used(work).saturating_sub(before);
        imported += now.saturating_sub(total);
        r.disk_imported.push(imported);
        let start = Instant::now();
        cs(&["create-image", "-n", &format!("i{i}"), &format!("l{i}")]);
        cs(&["create-container", "-n", &format!("c{i}"), &format!("i{i}")]);
        cs(&["mount", &format!("c{i}")]);
        sync();
        r.first_mount.push(start.elapsed());
        total = disk_used(work).saturating_sub(before);
        r.disk_mounted.push(total);
    }
    for i in 0..inputs.len() {
        cs(&["unmount", &format!("c{i}")]);
    }
    for i in 0..inputs.len() {
        let start = Instant::now();
        cs(&["mount", &format!("c{i}")]);
        sync();
        r.remount.push(start.elapsed());
    }
    for i in 0..inputs.len() {
        cs(&["unmount", &format!("c{i}")]);
    }
    let _ = Command::new(&tool.binary)
        .arg("--graph")
        .arg(store.join("graph"))
        .arg("--run")
        .arg(&run_root)
        .args(["--storage-driver", driver, "shutdown", "-f"])
        .output();
    unmount_below(&store);
    if let Some(dir) = &tmpfs {
        unmount_below(dir);
        let _ = fs::remove_dir_all(dir);
    }
    fs::remove_dir_all(&store).unwrap();
    sync();
    eprintln!(
        "  {}: import {:.2} s, first mounts {:.2} s, mounts again {:.2} s, disk {:.0} MB / {:.0} MB",
        tool.name,
        r.import.iter().sum::<Duration>().as_secs_f64(),
        r.first_mount.iter().sum::<Duration>().as_secs_f64(),
        r.remount.iter().sum::<Duration>().as_secs_f64(),
        *r.disk_imported.last().unwrap() as f64 / 1e6,
        *r.disk_mounted.last().unwrap() as f64 / 1e6,
    );
    r
}
