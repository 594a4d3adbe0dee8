//! Support for the crash harness, the stress test and the fault tests: a
//! store driven through the real binary with a chosen driver, processes
//! killed with SIGKILL after a delay, raw reads of the record files (what
//! a killed process left, before anything reopens the store), kernel
//! mounts under a store, and layer tars with shared and fresh content.
//!
//! Declared beside `common` in `main.rs` (`crate::harness`).

#![allow(dead_code)]

use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::tar::{Meta, TarBuilder};
use crate::common::{self, Cs, Rng};

/// A seed from `var`, else from the clock; printed so a run reproduces.
pub fn seed_from_env(var: &str, what: &str) -> u64 {
    let seed = match std::env::var(var) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{var}={text:?}: {e}")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("{what}: seed {seed} (rerun with {var}={seed})");
    seed
}

/// A number from `var`, else `default`.
pub fn number_from_env(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{var}={text:?}: {e}")),
        Err(_) => default,
    }
}

/// A temporary store with a chosen driver (`vfs` or `overlay`), driven
/// through the real binary. Dropping it detaches every kernel mount left
/// under its directory, so that a failed test leaves no mounts behind.
pub struct Store {
    pub cs: Cs,
    pub driver: &'static str,
}

impl Store {
    pub fn new(driver: &'static str) -> Store {
        Store {
            cs: Cs::new(),
            driver,
        }
    }

    /// A store whose graph root is `graph` (e.g. on a loop filesystem).
    pub fn with_graph(driver: &'static str, graph: &Path) -> Store {
        let st = Store::new(driver);
        std::os::unix::fs::symlink(graph, st.cs.graph()).unwrap();
        st
    }

    pub fn graph(&self) -> PathBuf {
        self.cs.graph()
    }

    pub fn run_root(&self) -> PathBuf {
        self.cs.run_root()
    }

    /// A command with the store's roots and driver.
    pub fn command(&self) -> Command {
        let mut cmd = self.cs.command();
        cmd.args(["--storage-driver", self.driver]);
        cmd
    }

    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        common::run_command(cmd, stdin)
    }

    /// Runs and requires exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        common::expect_status(&out, &self.describe(args), 0);
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs with stdin and requires exit 0; returns stdout.
    pub fn ok_with_input(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.run(args, Some(stdin));
        common::expect_status(&out, &self.describe(args), 0);
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    fn describe<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["--storage-driver", self.driver];
        all.extend_from_slice(args);
        all
    }

    /// `import-layer -f FILE [parent]` after writing `tar` to a scratch
    /// file; returns the new ID.
    pub fn import(&self, tar: &[u8], parent: Option<&str>) -> String {
        let path = self.scratch_file("import.tar");
        fs::write(&path, tar).unwrap();
        let mut args = vec!["import-layer", "-f", path.to_str().unwrap()];
        args.extend(parent);
        common::first_line_of(&self.ok(&args))
    }

    /// A path in the store's temporary directory, beside the roots.
    pub fn scratch_file(&self, name: &str) -> PathBuf {
        let dir = self.cs.dir.path().join("scratch");
        fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// The records of `kind` (`layers`, `images`, `containers`) as the
    /// record file holds them, read without opening the store.
    pub fn raw_records(&self, kind: &str) -> Vec<Value> {
        let path = self
            .graph()
            .join(format!("{}-{kind}/{kind}.json", self.driver));
        read_json_array(&path)
    }

    /// The mount records (`mountpoints.json`), read without opening the store.
    pub fn raw_mounts(&self) -> Vec<Value> {
        let path = self
            .run_root()
            .join(format!("{}-layers/mountpoints.json", self.driver));
        read_json_array(&path)
    }

    /// The mount count the records hold for layer `id` (0 if none).
    pub fn raw_mount_count(&self, id: &str) -> u64 {
        self.raw_mounts()
            .iter()
            .find(|m| m["id"].as_str() == Some(id))
            .map(|m| m["count"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    }

    /// `layers --json` (this opens the store for writing, which removes
    /// layers whose import died).
    pub fn layers(&self) -> Vec<Value> {
        let out = self.ok(&["layers", "--json"]);
        serde_json::from_str(&out).expect("layers --json parses")
    }

    /// `sha256:<hex>` of `diff -u ID`, streamed.
    pub fn export_digest(&self, id: &str) -> String {
        match self.try_export_digest(id) {
            Ok(d) => d,
            Err(e) => panic!("diff -u {id}: {e}"),
        }
    }

    /// `sha256:<hex>` of `diff -u ID`, or the failure with its stderr.
    pub fn try_export_digest(&self, id: &str) -> Result<String, String> {
        let mut cmd = self.command();
        cmd.args(["diff", "-u", id]);
        common::streamed_digest(cmd)
    }

    /// `check` must report nothing: exit 0 and no output.
    pub fn check_clean(&self, context: &str) {
        let out = self.run(&["check"], None);
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "{context}: check is not clean ({})\nstdout: {}\nstderr: {}",
            out.status,
            common::stdout(&out),
            common::stderr(&out)
        );
    }

    /// Kernel mounts at or below this store's directory, deepest first.
    pub fn kernel_mounts(&self) -> Vec<PathBuf> {
        mounts_under(self.cs.dir.path())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        for m in self.kernel_mounts() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn read_json_array(path: &Path) -> Vec<Value> {
    match fs::read(path) {
        Ok(bytes) if bytes.is_empty() => Vec::new(),
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            v.as_array()
                .unwrap_or_else(|| panic!("{} is not an array", path.display()))
                .clone()
        }
        Err(_) => Vec::new(),
    }
}

/// Decodes the octal escapes (`\040`) of a `/proc/self/mountinfo` field.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `dir` (canonicalized), deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|f| PathBuf::from(unescape_mount_field(f)))
        .filter(|p| p.starts_with(&dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Whether something is mounted exactly at `path`.
pub fn is_mount_point(path: &Path) -> bool {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|f| Path::new(&unescape_mount_field(f)) == path)
}

/// How a process that was to be killed ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited by itself before the kill.
    Exited {
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    /// SIGKILL ended it.
    Killed,
}

impl Ended {
    /// The stdout of a successful exit; panics on a failed one.
    pub fn success_stdout(&self, what: &str) -> Option<&str> {
        match self {
            Ended::Killed => None,
            Ended::Exited {
                status,
                stdout,
                stderr,
            } => {
                assert!(
                    status.success(),
                    "{what} failed on its own: {status}\nstdout: {stdout}\nstderr: {stderr}"
                );
                Some(stdout)
            }
        }
    }
}

/// Spawns `cmd` (stdin null, output to scratch files), SIGKILLs it after
/// `delay` and reports how it ended.
pub fn run_and_kill(mut cmd: Command, delay: Duration, scratch: &Path) -> Ended {
    fs::create_dir_all(scratch).unwrap();
    let stdout_path = scratch.join("killed.out");
    let stderr_path = scratch.join("killed.err");
    cmd.stdin(Stdio::null())
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(File::create(&stderr_path).unwrap());
    let mut child = cmd.spawn().expect("spawn containers-storage");
    let start = Instant::now();
    // Sleep in small steps so that an early exit is noticed (and counted
    // as one) without waiting out the whole delay.
    loop {
        let left = delay.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(2)));
    }
    // SIGKILL; harmless when the child already exited (it is a zombie
    // until waited for, so the PID cannot have been reused).
    let _ = child.kill();
    let status = child.wait().unwrap();
    if status.signal() == Some(libc::SIGKILL) {
        return Ended::Killed;
    }
    Ended::Exited {
        status,
        stdout: fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// How long a command takes end to end (spawn to exit), requiring success.
pub fn time_command(mut cmd: Command, what: &str) -> (Duration, String) {
    let start = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        common::stdout(&out),
        common::stderr(&out)
    );
    (took, common::stdout(&out))
}

/// A kill delay for a command that takes about `typical` uninterrupted:
/// some right after the spawn, most within its run, some after its end.
/// The last reach four times `typical`: on a loaded machine (the whole
/// suite running) a command can take twice as long as when it was timed,
/// and then no trial would see it finish.
pub fn pick_delay(rng: &mut Rng, typical: Duration) -> Duration {
    let us = typical.as_micros().max(200) as u64;
    match rng.range(0, 100) {
        0..=9 => Duration::from_micros(rng.range(0, 2_000)),
        10..=84 => Duration::from_micros(rng.range(0, us)),
        _ => Duration::from_micros(rng.range(us, us * 4 + 1)),
    }
}

/// Blobs that several layers share, so that imports hit the dedup paths.
pub fn shared_blobs(seed: u64, count: usize, len: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| common::random_bytes(seed ^ (0x5eed_0000 + i as u64), len))
        .collect()
}

/// A layer tar under `top/`: a fresh random file of `fresh` bytes, a
/// repetitive text file, one of the shared blobs, a few small files and a
/// symlink. Returns the tar and its sha256.
pub fn layer_tar(rng: &mut Rng, top: &str, fresh: usize, shared: &[Vec<u8>]) -> (Vec<u8>, String) {
    let d = Meta {
        mode: 0o755,
        ..Meta::default()
    };
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.dir(&format!("{top}/"), &d);
    let mut data = vec![0u8; fresh];
    rng.fill(&mut data);
    t.file(&format!("{top}/fresh.bin"), &m, &data);
    let line = format!("{top}: a line that repeats {}\n", rng.next() % 1000);
    let reps = (fresh / line.len()).max(1);
    t.file(
        &format!("{top}/repeated.txt"),
        &m,
        line.repeat(reps).as_bytes(),
    );
    if !shared.is_empty() {
        let blob = &shared[rng.range(0, shared.len() as u64) as usize];
        t.file(&format!("{top}/shared.bin"), &m, blob);
    }
    for i in 0..rng.range(1, 6) {
        let mut small = vec![0u8; rng.range(0, 3000) as usize];
        rng.fill(&mut small);
        t.file(&format!("{top}/small{i}"), &m, &small);
    }
    t.symlink(&format!("{top}/link"), "fresh.bin", &m);
    let tar = t.finish();
    let digest = common::sha256(&tar);
    (tar, digest)
}

/// Whether a layer record is flagged incomplete.
pub fn is_incomplete(layer: &Value) -> bool {
    layer["flags"]["incomplete"].as_bool() == Some(true)
}

/// Whether a layer record belongs to a container.
pub fn is_container_layer(layer: &Value) -> bool {
    layer["flags"].get("container").is_some()
}

/// The `id` of a record.
pub fn id_of(record: &Value) -> String {
    record["id"].as_str().expect("record has an id").to_string()
}

/// Whether an error message is one of the clean refusals that
/// concurrent work may cause (an item deleted or mounted meanwhile).
pub fn is_expected_refusal(stderr: &str) -> bool {
    const EXPECTED: &[&str] = &[
        "not known",
        "does not exist",
        "is mounted",
        "it is mounted",
        "in use by",
        "has children",
        "is the top layer of",
        "deleted while it was imported",
    ];
    EXPECTED.iter().any(|e| stderr.contains(e))
}

/// Entries of a directory (empty if it does not exist).
pub fn names_in(dir: &Path) -> std::collections::BTreeSet<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Default::default(),
    }
}

/// Number of files and directories below `dir` (0 if missing).
pub fn count_entries(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            n += 1;
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
    }
    n
}
