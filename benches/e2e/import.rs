//! Import of the six squashed images against what upstream's overlay
//! driver does per layer (`tar -x` into a fresh directory plus `sha256sum`
//! of the tar), rounds interleaved; peak RSS of one import; the pool's
//! size on disk. Runs in the work directory with the vfs driver (import
//! does not depend on the driver).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::system::{dir_bytes, median, run, secs, sync};

#[derive(serde::Serialize, serde::Deserialize)]
pub struct ImportFigures {
    /// Bytes of the six tars.
    pub input_bytes: u64,
    /// `tar -x` + `sha256sum` of the six, each round.
    pub baseline: Vec<Duration>,
    /// `import-layer` of the six into an empty store, each round.
    pub ours: Vec<Duration>,
    /// The largest peak RSS of one `import-layer`, KiB.
    pub peak_rss_kib: u64,
    /// Pack files and their indexes, bytes.
    pub packs: u64,
    /// Layer manifests, bytes.
    pub manifests: u64,
}

impl ImportFigures {
    pub fn pool(&self) -> u64 {
        self.packs + self.manifests
    }

    pub fn baseline_median(&self) -> Duration {
        median(&self.baseline)
    }

    pub fn ours_median(&self) -> Duration {
        median(&self.ours)
    }

    /// Our slowest round over the baseline's fastest.
    pub fn conservative_ratio(&self) -> f64 {
        let slowest = self.ours.iter().max().expect("a round");
        let fastest = self.baseline.iter().min().expect("a round");
        secs(*slowest) / secs(*fastest)
    }
}

pub fn measure(binary: &Path, inputs: &[PathBuf], work: &Path, rounds: usize) -> ImportFigures {
    let input_bytes = inputs.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    let mut f = ImportFigures {
        input_bytes,
        baseline: Vec::new(),
        ours: Vec::new(),
        peak_rss_kib: 0,
        packs: 0,
        manifests: 0,
    };
    for round in 0..rounds {
        // Warm the page cache equally for both sides, in a child process:
        // reading in this process would raise the high-water RSS that
        // spawned children inherit until they exec.
        run(Command::new("cat").args(inputs).stdout(Stdio::null()));
        // Start each side with no dirty pages from the other's writes.
        sync();
        let dir = work.join(format!("extract-{round}"));
        let start = Instant::now();
        for (i, p) in inputs.iter().enumerate() {
            let target = dir.join(i.to_string());
            fs::create_dir_all(&target).unwrap();
            run(Command::new("tar").arg("-xf").arg(p).arg("-C").arg(&target));
            run(Command::new("sha256sum").arg(p).stdout(Stdio::null()));
        }
        f.baseline.push(start.elapsed());
        fs::remove_dir_all(&dir).unwrap();
        sync();

        let store = work.join(format!("store-{round}"));
        let start = Instant::now();
        for p in inputs {
            let rss = run(Command::new(binary)
                .arg("--graph")
                .arg(store.join("graph"))
                .arg("--run")
                .arg(store.join("run"))
                .args(["--storage-driver", "vfs", "import-layer", "-f"])
                .arg(p)
                .stdout(Stdio::null()));
            f.peak_rss_kib = f.peak_rss_kib.max(rss);
        }
        f.ours.push(start.elapsed());
        f.packs = dir_bytes(&store.join("graph/chunks"));
        f.manifests = dir_bytes(&store.join("graph/manifests"));
        fs::remove_dir_all(&store).unwrap();
        sync();
        eprintln!(
            "import round {}: tar -x + sha256sum {:.2} s, import-layer {:.2} s",
            round + 1,
            secs(f.baseline[round]),
            secs(f.ours[round])
        );
    }
    f
}
