//! Materialization: the six images mounted read-only (`mount -r`; overlay
//! as root, else vfs) against `tar -x` of the same tars, `rounds` times
//! (everything evicted and the object cache emptied by `gc --evict all`
//! between rounds): disk used by each side, and the time of cold images
//! (nothing in the object cache) and of siblings whose base is
//! materialized, against `tar -x` of the same image in the same round.
//! Then the four squashed non-base images once more, after their layered
//! twins (base + diff layer) were mounted and the squashed directories
//! evicted: every file's content is then in the object cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::system::{disk_used, is_root, median_u64, output, secs, sync, tmpfs_dir};

/// The layered twins of the four non-base images: (image, its base).
pub const TWINS: [(usize, usize); 4] = [(1, 0), (2, 0), (4, 3), (5, 3)];

#[derive(serde::Serialize, serde::Deserialize)]
pub struct MaterializeFigures {
    pub driver: String,
    /// Whether the run root was on a tmpfs.
    pub run_on_tmpfs: bool,
    pub rounds: usize,
    /// Disk used by the six materialized (objects + directories), median round.
    pub ours_bytes: u64,
    /// Disk used by the six trees `tar -x` gives, median round.
    pub tar_bytes: u64,
    /// Per image, per round: the first `mount -r` after everything was evicted.
    pub ours: Vec<Vec<Duration>>,
    /// Per image, per round: `tar -x` into a fresh directory.
    pub tar: Vec<Vec<Duration>>,
    /// The same, until the `sync` after it returned.
    pub tar_synced: Vec<Vec<Duration>>,
    /// Per twin image, per round: `mount -r` with every file cached (empty
    /// for the bases).
    pub cached: Vec<Vec<Duration>>,
}

impl MaterializeFigures {
    pub fn space_ratio(&self) -> f64 {
        self.ours_bytes as f64 / self.tar_bytes as f64
    }

    /// The median round's ratio of `ours[i]` over `theirs[i]`.
    pub fn ratio(ours: &[Duration], theirs: &[Duration]) -> f64 {
        let mut ratios: Vec<f64> = ours
            .iter()
            .zip(theirs)
            .map(|(o, t)| secs(*o) / secs(*t))
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    }

    pub fn cold_ratio(&self, i: usize) -> f64 {
        Self::ratio(&self.ours[i], &self.tar[i])
    }

    pub fn cached_ratio(&self, i: usize) -> f64 {
        Self::ratio(&self.cached[i], &self.tar[i])
    }
}

pub fn measure(
    binary: &Path,
    inputs: &[PathBuf],
    work: &Path,
    rounds: usize,
) -> MaterializeFigures {
    let driver = if is_root() { "overlay" } else { "vfs" };
    let store = work.join("materialize");
    // The run root on a tmpfs, where hosts keep it (podman's default is
    // /run/containers/storage): saving `mountpoints.json` there does not
    // flush the graph root's journal.
    let tmpfs = tmpfs_dir("materialize-run");
    let run_on_tmpfs = tmpfs.is_some();
    let run_root = tmpfs.unwrap_or_else(|| store.join("run"));
    let cs = |args: &[&str]| -> String {
        output(
            Command::new(binary)
                .arg("--graph")
                .arg(store.join("graph"))
                .arg("--run")
                .arg(&run_root)
                .args(["--storage-driver", driver])
                .args(args),
        )
    };
    let mut layer_ids = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let out = cs(&["import-layer", "-f", input.to_str().unwrap()]);
        let id = out.lines().next().unwrap().to_string();
        cs(&["create-image", "-n", &format!("img{i}"), &id]);
        layer_ids.push(id);
    }
    for (i, base) in TWINS {
        let diff = inputs[i]
            .to_str()
            .unwrap()
            .replace(".full.tar", ".diff.tar");
        let out = cs(&["import-layer", "-f", &diff, &layer_ids[base]]);
        cs(&[
            "create-image",
            "-n",
            &format!("twin{i}"),
            out.lines().next().unwrap(),
        ]);
    }
    let n = inputs.len();
    let mut f = MaterializeFigures {
        driver: driver.into(),
        run_on_tmpfs,
        rounds,
        ours_bytes: 0,
        tar_bytes: 0,
        ours: vec![Vec::new(); n],
        tar: vec![Vec::new(); n],
        tar_synced: vec![Vec::new(); n],
        cached: vec![Vec::new(); n],
    };
    let (mut ours_bytes, mut tar_bytes) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        cs(&["shutdown", "-f"]);
        cs(&["gc", "--evict", "all"]);
        for i in 0..n {
            let _ = fs::remove_dir_all(work.join(format!("tar-x-{i}")));
        }
        sync();
        let before = disk_used(work);
        // Every timed mount, like every timed `tar -x` below, starts with
        // nothing left to write back from the one before.
        for (i, times) in f.ours.iter_mut().enumerate() {
            sync();
            let start = Instant::now();
            cs(&["mount", "-r", &format!("img{i}")]);
            times.push(start.elapsed());
        }
        sync();
        ours_bytes.push(disk_used(work).saturating_sub(before));
        let before = disk_used(work);
        for (i, input) in inputs.iter().enumerate() {
            let dir = work.join(format!("tar-x-{i}"));
            fs::create_dir_all(&dir).unwrap();
            let start = Instant::now();
            crate::system::run(
                Command::new("tar")
                    .arg("-xf")
                    .arg(input)
                    .arg("-C")
                    .arg(&dir),
            );
            f.tar[i].push(start.elapsed());
            // Tar's figure with its files on disk when it returns: a vfs
            // tree is on disk when `mount` returns, an overlay directory
            // once its marker is settled (see docs/format.md).
            sync();
            f.tar_synced[i].push(start.elapsed());
        }
        sync();
        tar_bytes.push(disk_used(work).saturating_sub(before));
        // Every file cached: the twins mounted (which keeps their
        // directories and objects), everything else evicted.
        cs(&["shutdown", "-f"]);
        for (i, _) in TWINS {
            cs(&["mount", "-r", &format!("twin{i}")]);
        }
        cs(&["gc", "--evict", "all"]);
        sync();
        for (i, _) in TWINS {
            sync();
            let start = Instant::now();
            cs(&["mount", "-r", &format!("img{i}")]);
            f.cached[i].push(start.elapsed());
        }
        eprintln!("materialize round {}/{rounds} done", round + 1);
    }
    cs(&["shutdown", "-f"]);
    let _ = fs::remove_dir_all(&run_root);
    let _ = fs::remove_dir_all(&store);
    for i in 0..n {
        let _ = fs::remove_dir_all(work.join(format!("tar-x-{i}")));
    }
    f.ours_bytes = median_u64(&ours_bytes);
    f.tar_bytes = median_u64(&tar_bytes);
    f
}
