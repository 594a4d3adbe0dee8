//! End-to-end benchmark on the Debian dataset: import speed against what
//! upstream's overlay driver does per layer (`tar -x` into a fresh
//! directory plus `sha256sum` of the tar), peak RSS of one import, and the
//! pool's size on disk. Every figure that is compared is measured in the
//! same run, rounds interleaved, and reported as a ratio (this machine is
//! shared and noisy; absolute times vary).
//!
//! Run with `make bench` (or `cargo bench --bench e2e -- [--rounds N]
//! [--write FILE]` after `make binary`); the dataset directory comes from
//! `$CS_DEBIAN_TARS` (default `target/dataset/tars`).

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SQUASHED: [&str; 6] = [
    "bookworm-base.tar",
    "bookworm-python3.full.tar",
    "bookworm-curl.full.tar",
    "trixie-base.tar",
    "trixie-python3.full.tar",
    "trixie-curl.full.tar",
];

/// Where the hand-written part of `docs/benchmarks.md` starts.
const HAND_NOTES: &str = "## Notes (by hand)";

fn main() {
    let mut rounds = 3usize;
    let mut write: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--rounds N")
            }
            "--write" => write = args.next().map(PathBuf::from),
            _ => {} // cargo bench passes --bench
        }
    }
    let tars = PathBuf::from(
        std::env::var("CS_DEBIAN_TARS").unwrap_or_else(|_| "target/dataset/tars".into()),
    );
    let binary =
        PathBuf::from(std::env::var("CS_BINARY").unwrap_or_else(|_| "./containers-storage".into()));
    let inputs: Vec<PathBuf> = SQUASHED.iter().map(|t| tars.join(t)).collect();
    if let Some(missing) = inputs.iter().find(|p| !p.exists()) {
        eprintln!(
            "e2e bench: {} is missing; run `make dataset` (needs root) or set CS_DEBIAN_TARS",
            missing.display()
        );
        std::process::exit(2);
    }
    if !binary.exists() {
        eprintln!(
            "e2e bench: {} is missing; run `make binary` first",
            binary.display()
        );
        std::process::exit(2);
    }
    let input_bytes: u64 = inputs.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    let work = tempdir_under(&std::env::temp_dir());

    let mut baseline = Vec::new();
    let mut ours = Vec::new();
    let mut peak_rss = 0u64;
    let mut stored = (0u64, 0u64, 0u64);
    for round in 0..rounds {
        // Warm the page cache equally for both sides, in a child process:
        // reading in this process would raise the high-water RSS that
        // spawned children inherit until they exec.
        run(Command::new("cat").args(&inputs).stdout(Stdio::null()));
        // Start each side with no dirty pages from the other's writes.
        run(&mut Command::new("sync"));
        let dir = work.join(format!("extract-{round}"));
        let start = Instant::now();
        for (i, p) in inputs.iter().enumerate() {
            let target = dir.join(i.to_string());
            fs::create_dir_all(&target).unwrap();
            run(Command::new("tar").arg("-xf").arg(p).arg("-C").arg(&target));
            run(Command::new("sha256sum").arg(p).stdout(Stdio::null()));
        }
        baseline.push(start.elapsed());
        fs::remove_dir_all(&dir).unwrap();
        run(&mut Command::new("sync"));

        let store = work.join(format!("store-{round}"));
        let start = Instant::now();
        for p in &inputs {
            let rss = run(Command::new(&binary)
                .arg("--graph")
                .arg(store.join("graph"))
                .arg("--run")
                .arg(store.join("run"))
                .arg("--storage-driver")
                .arg("vfs")
                .arg("import-layer")
                .arg("-f")
                .arg(p)
                .stdout(Stdio::null()));
            peak_rss = peak_rss.max(rss);
        }
        ours.push(start.elapsed());
        stored = pool_size(&store.join("graph"));
        fs::remove_dir_all(&store).unwrap();
        run(&mut Command::new("sync"));
        eprintln!(
            "round {}: baseline {:.2}s, import {:.2}s",
            round + 1,
            baseline[round].as_secs_f64(),
            ours[round].as_secs_f64()
        );
    }
    // Materializing takes a fraction of a second per image: more rounds
    // for a steadier median on a noisy machine.
    let materialize_rounds = rounds.max(5);
    let materialized = match LoopExt4::mount(&work) {
        // A filesystem of its own: no other process's dirty data in its
        // syncs, and none of the host's mount options (`/` here has
        // `discard`, which makes every delete pay for a TRIM later).
        Some(fs) => {
            let text = materialize_section(&binary, &inputs, &fs.dir, materialize_rounds);
            format!(
                "On a fresh loop-mounted ext4 (8 GiB, sparse; loop device with direct I/O).\n\n{text}"
            )
        }
        None => materialize_section(&binary, &inputs, &work, materialize_rounds),
    };
    let _ = fs::remove_dir_all(&work);
    let baseline_rounds = baseline.clone();
    let ours_rounds = ours.clone();
    let b = median(&mut baseline);
    let o = median(&mut ours);
    let fastest = *baseline.iter().min().expect("at least one round");
    let slowest = *ours.iter().max().expect("at least one round");
    let mb = |n: u64| n as f64 / 1e6;
    let (packs, manifests, total) = stored;
    let table = format!(
        "| measure | value |\n|---|---|\n\
         | input: six squashed Debian tars | {:.1} MB |\n\
         | baseline: `tar -x` each into a fresh dir + `sha256sum` each (median of {rounds}) | {:.2} s |\n\
         | ours: `import-layer` of the six into an empty store (median of {rounds}) | {:.2} s |\n\
         | import time ratio (median / median) | {:.2}x |\n\
         | **import time ratio, conservative (slowest import / fastest baseline)** (target <= 0.5) | **{:.2}x** |\n\
         | import throughput | {:.0} MB/s |\n\
         | peak RSS of one `import-layer` (target < 256 MiB) | {:.1} MiB |\n\
         | pool on disk: packs + indexes | {:.1} MB |\n\
         | pool on disk: manifests | {:.1} MB |\n\
         | **pool on disk, total** (target <= 150 MB) | **{:.1} MB** |\n\
         | dedup + compression ratio (input / pool) | {:.2}x |\n",
        mb(input_bytes),
        b.as_secs_f64(),
        o.as_secs_f64(),
        o.as_secs_f64() / b.as_secs_f64(),
        slowest.as_secs_f64() / fastest.as_secs_f64(),
        mb(input_bytes) / o.as_secs_f64(),
        peak_rss as f64 / 1024.0,
        mb(packs),
        mb(manifests),
        mb(total),
        input_bytes as f64 / total as f64,
    );
    let mut rounds_table =
        String::from("| round | baseline | import | ratio |\n|---|---|---|---|\n");
    for (i, (b, o)) in baseline_rounds.iter().zip(&ours_rounds).enumerate() {
        rounds_table.push_str(&format!(
            "| {} | {:.2} s | {:.2} s | {:.2}x |\n",
            i + 1,
            b.as_secs_f64(),
            o.as_secs_f64(),
            o.as_secs_f64() / b.as_secs_f64()
        ));
    }
    let table = format!("{table}\nEvery round:\n\n{rounds_table}");
    println!("{table}");
    println!("{materialized}");
    if let Some(path) = write {
        let machine = format!(
            "{} cores, {}",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(
                    |s| s.lines().find(|l| l.starts_with("model name")).map(|l| l
                        .split(':')
                        .nth(1)
                        .unwrap_or("")
                        .trim()
                        .to_string())
                )
                .unwrap_or_default()
        );
        let doc = format!(
            "# Benchmarks\n\nProduced by `make bench` (`benches/e2e.rs`); every ratio compares figures \
             measured in the same run, rounds interleaved. Machine: {machine}.\n\n\
             ## Import of the six squashed Debian images\n\n\
             The dataset is built by `make dataset` (bookworm and trixie: base, python3 and curl, \
             squashed). The baseline is what upstream's overlay driver does per layer: extract the \
             tar into a fresh directory and compute its sha256. The baseline creates ~2.5 GB of \
             files per round and its time varies a lot on a shared VM (it grew round over round \
             here, in kernel time); the conservative ratio compares our slowest round with the \
             baseline's fastest.\n\n{table}\n## Materialization\n\n{materialized}"
        );
        // Notes written by hand below the marker survive a new run.
        let kept = fs::read_to_string(&path)
            .ok()
            .and_then(|old| old.find(HAND_NOTES).map(|at| old[at..].to_string()))
            .unwrap_or_default();
        fs::write(&path, format!("{doc}\n{kept}")).expect("write the benchmark table");
        eprintln!("wrote {}", path.display());
    }
}

/// Bytes in use on the filesystem that holds `path`.
fn disk_used(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `st` is plain data that statvfs fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a live struct.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0, "statvfs");
    (st.f_blocks - st.f_bfree) as u64 * st.f_frsize as u64
}

/// Materializes the six images (`mount -r`, overlay as root, else vfs)
/// and extracts them with `tar -x`, `rounds` times (everything evicted and
/// the object cache emptied by `gc --evict all` between rounds): disk used
/// by each side, and the time of cold images (nothing in the object
/// cache) and of siblings whose base is materialized, against `tar -x` of
/// the same image in the same round. Then the four squashed non-base
/// images once more, after their layered twins (base + diff layer) were
/// mounted and the squashed directories evicted: every file's content is
/// then in the object cache.
fn materialize_section(binary: &Path, inputs: &[PathBuf], work: &Path, rounds: usize) -> String {
    let driver = if nix_is_root() { "overlay" } else { "vfs" };
    let store = work.join("materialize");
    // The run root on a tmpfs, where hosts keep it (podman's default is
    // /run/containers/storage): saving `mountpoints.json` there does not
    // flush the graph root's journal.
    let run_root = tmpfs_dir().unwrap_or_else(|| store.join("run"));
    let cs = |args: &[&str]| -> String {
        let out = Command::new(binary)
            .arg("--graph")
            .arg(store.join("graph"))
            .arg("--run")
            .arg(&run_root)
            .args(["--storage-driver", driver])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut layer_ids = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let out = cs(&["import-layer", "-f", input.to_str().unwrap()]);
        let id = out.lines().next().unwrap().to_string();
        cs(&["create-image", "-n", &format!("img{i}"), &id]);
        layer_ids.push(id);
    }
    // The layered twins of the four non-base images: the base layer of
    // the same suite with the image's diff layer on it.
    let twins = [(1, 0), (2, 0), (4, 3), (5, 3)];
    for (i, base) in twins {
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
    let mut cached = vec![Vec::new(); inputs.len()];
    let mut ours = vec![Vec::new(); inputs.len()];
    let mut tar = vec![Vec::new(); inputs.len()];
    let mut tar_synced = vec![Vec::new(); inputs.len()];
    let (mut ours_bytes, mut tar_bytes) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        cs(&["shutdown", "-f"]);
        cs(&["gc", "--evict", "all"]);
        for i in 0..inputs.len() {
            let _ = fs::remove_dir_all(work.join(format!("tar-x-{i}")));
        }
        run(&mut Command::new("sync"));
        let before = disk_used(work);
        // Every timed mount, like every timed `tar -x` below, starts with
        // nothing left to write back from the one before.
        for (i, times) in ours.iter_mut().enumerate() {
            run(&mut Command::new("sync"));
            let start = Instant::now();
            cs(&["mount", "-r", &format!("img{i}")]);
            times.push(start.elapsed());
        }
        run(&mut Command::new("sync"));
        ours_bytes.push(disk_used(work).saturating_sub(before));
        let before = disk_used(work);
        for (i, input) in inputs.iter().enumerate() {
            let dir = work.join(format!("tar-x-{i}"));
            fs::create_dir_all(&dir).unwrap();
            let start = Instant::now();
            run(Command::new("tar")
                .arg("-xf")
                .arg(input)
                .arg("-C")
                .arg(&dir));
            tar[i].push(start.elapsed());
            // Tar's figure with its files on disk when it returns: a vfs
            // tree is on disk when `mount` returns, an overlay directory
            // once its marker is settled (see docs/format.md).
            run(&mut Command::new("sync"));
            tar_synced[i].push(start.elapsed());
        }
        run(&mut Command::new("sync"));
        tar_bytes.push(disk_used(work).saturating_sub(before));
        // Every file cached: the twins mounted (which keeps their
        // directories and objects), everything else evicted.
        cs(&["shutdown", "-f"]);
        for (i, _) in twins {
            cs(&["mount", "-r", &format!("twin{i}")]);
        }
        cs(&["gc", "--evict", "all"]);
        run(&mut Command::new("sync"));
        for (i, _) in twins {
            run(&mut Command::new("sync"));
            let start = Instant::now();
            cs(&["mount", "-r", &format!("img{i}")]);
            cached[i].push(start.elapsed());
        }
    }
    cs(&["shutdown", "-f"]);
    let _ = fs::remove_dir_all(&run_root);
    let run_where = if run_root.starts_with("/dev/shm") {
        "on a tmpfs"
    } else {
        "beside the graph root"
    };
    let mb = |n: u64| n as f64 / 1e6;
    let s = |d: Duration| d.as_secs_f64();
    // Per round, ours over tar -x of the same image; the median round.
    let median_ratio = |ours: &[Duration], theirs: &[Duration]| -> f64 {
        let mut ratios: Vec<f64> = ours
            .iter()
            .zip(theirs)
            .map(|(o, t)| s(*o) / s(*t))
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    let row = |ours: &[Vec<Duration>], what: &str, i: usize| {
        let o = s(median(&mut ours[i].clone()));
        let t = s(median(&mut tar[i].clone()));
        let ts = s(median(&mut tar_synced[i].clone()));
        let each: Vec<String> = ours[i]
            .iter()
            .zip(&tar[i])
            .map(|(o, t)| format!("{:.2}", s(*o) / s(*t)))
            .collect();
        format!(
            "| {what} | {o:.2} s / {t:.2} s = **{:.2}x** | {o:.2} s / {ts:.2} s = {:.2}x | {} |\n",
            median_ratio(&ours[i], &tar[i]),
            median_ratio(&ours[i], &tar_synced[i]),
            each.join(" "),
        )
    };
    ours_bytes.sort();
    tar_bytes.sort();
    let (ob, tb) = (
        ours_bytes[ours_bytes.len() / 2],
        tar_bytes[tar_bytes.len() / 2],
    );
    format!(
        "Driver: {driver}; ext4 (no reflinks: overlay lowers are hardlinks of objects); \
         the run root {run_where}. \
         {rounds} rounds; times are medians, ratios the median round's; every timed \
         mount and `tar -x` starts after a `sync`.\n\n\
         | measure | value | | |\n|---|---|---|---|\n\
         | disk used by the six images materialized (objects + directories) | {:.1} MB | | |\n\
         | disk used by the six trees extracted separately with `tar -x` | {:.1} MB | | |\n\
         | **space ratio** (target <= 0.5 on ext4, <= 0.45 on XFS) | **{:.2}x** | | |\n\
         | time: ours | over `tar -x` | over `tar -x; sync` | over `tar -x`, each round |\n{}{}{}{}{}{}",
        mb(ob),
        mb(tb),
        ob as f64 / tb as f64,
        row(
            &ours,
            "cold: bookworm-base materialized / `tar -x` (target <= 1.0)",
            0
        ),
        row(
            &ours,
            "cold: trixie-base materialized / `tar -x` (target <= 1.0)",
            3
        ),
        row(
            &ours,
            "base cached: bookworm-python3.full materialized / `tar -x`",
            1
        ),
        row(
            &ours,
            "base cached: bookworm-curl.full materialized / `tar -x`",
            2
        ),
        row(
            &ours,
            "base cached: trixie-python3.full materialized / `tar -x`",
            4
        ),
        row(
            &ours,
            "base cached: trixie-curl.full materialized / `tar -x`",
            5
        ),
    ) + &format!(
        "{}{}{}{}",
        row(
            &cached,
            "every file cached: bookworm-python3.full materialized / `tar -x` (target <= 0.2)",
            1
        ),
        row(
            &cached,
            "every file cached: bookworm-curl.full materialized / `tar -x` (target <= 0.2)",
            2
        ),
        row(
            &cached,
            "every file cached: trixie-python3.full materialized / `tar -x` (target <= 0.2)",
            4
        ),
        row(
            &cached,
            "every file cached: trixie-curl.full materialized / `tar -x` (target <= 0.2)",
            5
        ),
    )
}

/// A fresh directory on the tmpfs at `/dev/shm`, if there is one.
fn tmpfs_dir() -> Option<PathBuf> {
    let shm = Path::new("/dev/shm");
    let fs = nix::sys::statfs::statfs(shm).ok()?;
    if fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
        return None;
    }
    let dir = shm.join(format!("cs-bench-run-{}", std::process::id()));
    fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// A sparse ext4 image loop-mounted under `work` (root only), through a
/// loop device with direct I/O: what a `sync` writes is then on the disk
/// when it returns, rather than dirty in the host's page cache, written
/// back later while a timed command runs.
struct LoopExt4 {
    dir: PathBuf,
    image: PathBuf,
    device: String,
}

impl LoopExt4 {
    fn mount(work: &Path) -> Option<LoopExt4> {
        if !nix_is_root() {
            return None;
        }
        let image = work.join("materialize.img");
        let dir = work.join("materialize-fs");
        fs::create_dir_all(&dir).ok()?;
        let ok = |cmd: &mut Command| cmd.status().is_ok_and(|s| s.success());
        let made = ok(Command::new("truncate").arg("-s").arg("8G").arg(&image))
            && ok(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-E", "nodiscard"])
                .arg(&image));
        let device = made
            .then(|| {
                Command::new("losetup")
                    .args(["--find", "--show", "--direct-io=on"])
                    .arg(&image)
                    .output()
                    .ok()
                    .filter(|out| out.status.success())
            })
            .flatten()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
        let mounted = device
            .as_ref()
            .is_some_and(|dev| ok(Command::new("mount").arg(dev).arg(&dir)));
        if !mounted {
            eprintln!("e2e bench: no loop ext4 (materialization measured in the work directory)");
            if let Some(dev) = &device {
                let _ = Command::new("losetup").arg("-d").arg(dev).status();
            }
            let _ = fs::remove_file(&image);
            return None;
        }
        Some(LoopExt4 {
            dir,
            image,
            device: device.expect("mounted from a device"),
        })
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        // Overlay mounts below it first.
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for line in mounts.lines() {
            if let Some(target) = line.split(' ').nth(1) {
                if target.starts_with(self.dir.to_str().unwrap_or("\0"))
                    && Path::new(target) != self.dir
                {
                    let _ = Command::new("umount").arg("-l").arg(target).status();
                }
            }
        }
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
        let _ = fs::remove_file(&self.image);
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command to completion; returns its peak RSS in KiB.
fn run(cmd: &mut Command) -> u64 {
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, whose pid we hold; Child is not used after.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 {cmd:?}");
    let status = std::process::ExitStatus::from_raw(status);
    assert!(status.success(), "{cmd:?} failed: {status}");
    std::mem::forget(child);
    usage.ru_maxrss as u64
}

/// (packs + indexes, manifests, total) bytes of the pool.
fn pool_size(graph: &Path) -> (u64, u64, u64) {
    let packs = dir_bytes(&graph.join("chunks"));
    let manifests = dir_bytes(&graph.join("manifests"));
    (packs, manifests, packs + manifests)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let meta = e.metadata().unwrap();
            total += if meta.is_dir() {
                dir_bytes(&e.path())
            } else {
                meta.len()
            };
        }
    }
    total
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn tempdir_under(base: &Path) -> PathBuf {
    let dir = base.join(format!("cs-e2e-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}
