//! Memory is bounded whatever the layer size: the peak RSS of one
//! `import-layer` of a ~1.5 GB tar (read from a pipe, generated on the fly,
//! never held in memory) stays under 256 MiB, and so does the `diff` that
//! exports it again.

use crate::common;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::{Child, Stdio};

use common::tar::{Meta, TarBuilder};
use common::{Cs, Hashing, Rng};
use containers_storage::manifest::Sha256;

const LIMIT_KIB: i64 = 256 * 1024;
/// The huge files of the generated layer, and their size.
const HUGE_FILES: u64 = 3;
const HUGE_FILE_BYTES: u64 = 440 << 20;
/// Small files between the huge ones.
const SMALL_FILES_PER_BATCH: u64 = 1000;

fn entry(
    out: &mut impl Write,
    rng: &mut Rng,
    buf: &mut [u8],
    name: &str,
    size: u64,
) -> std::io::Result<()> {
    let mut t = TarBuilder::new();
    let meta = Meta {
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
    };
    t.header(name.as_bytes(), b'0', size, b"", &meta, (0, 0));
    out.write_all(&t.out)?;
    let mut left = size;
    while left > 0 {
        let take = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..take]);
        out.write_all(&buf[..take])?;
        left -= take as u64;
    }
    let pad = ((512 - size % 512) % 512) as usize;
    out.write_all(&vec![0u8; pad])
}

/// Streams the big tar to `out`: batches of small files around a few huge
/// ones, all pseudo-random. Returns its size and sha256.
fn generate(out: impl Write) -> std::io::Result<(u64, String)> {
    let mut out = Hashing {
        inner: BufWriter::with_capacity(1 << 20, out),
        hash: Sha256::default(),
    };
    let mut rng = Rng(42);
    let mut buf = vec![0u8; 1 << 20];
    let dir = Meta {
        mode: 0o755,
        ..Meta::default()
    };
    let mut t = TarBuilder::new();
    t.dir("big/", &dir);
    out.write_all(&t.out)?;
    for batch in 0..=HUGE_FILES {
        let mut t = TarBuilder::new();
        t.dir(&format!("big/small{batch}/"), &dir);
        out.write_all(&t.out)?;
        for i in 0..SMALL_FILES_PER_BATCH {
            let size = rng.next() % (48 << 10);
            entry(
                &mut out,
                &mut rng,
                &mut buf,
                &format!("big/small{batch}/f{i:05}"),
                size,
            )?;
        }
        if batch < HUGE_FILES {
            entry(
                &mut out,
                &mut rng,
                &mut buf,
                &format!("big/huge{batch}"),
                HUGE_FILE_BYTES,
            )?;
        }
    }
    out.write_all(&[0u8; 1024])?;
    let pad = ((10240 - out.hash.len() % 10240) % 10240) as usize;
    out.write_all(&vec![0u8; pad])?;
    out.flush()?;
    let len = out.hash.len();
    Ok((len, out.hash.finish()))
}

/// Reaps `child` with `wait4` and returns its exit status and its own peak
/// RSS in KiB (not that of any other child of this test process).
#[allow(unsafe_code)] // wait4 with the child's own rusage: no safe wrapper
fn wait_with_peak_rss(child: Child) -> (i32, i64) {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        // SAFETY: `pid` is our unreaped child; `status` and `usage` are
        // valid for writes for the duration of the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    // The child is reaped: `Child` must not wait for it again (dropping
    // it does not).
    drop(child);
    (status, usage.ru_maxrss)
}

fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status}")
    }
}

#[test]
fn peak_rss_of_one_import_layer_stays_under_256_mib_whatever_the_layer_size() {
    let cs = Cs::new();
    let scratch = tempfile::tempdir().unwrap();
    let out_path = scratch.path().join("import.out");
    let err_path = scratch.path().join("import.err");
    let mut cmd = cs.command();
    cmd.arg("import-layer")
        .stdin(Stdio::piped())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap());
    let mut child = cmd.spawn().expect("spawn import-layer");
    let stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || generate(stdin));
    let (status, peak_kib) = wait_with_peak_rss(child);
    let generated = writer.join().unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "import-layer failed: {}\nstderr: {stderr}",
        describe(status)
    );
    let (size, digest) = generated.expect("the tar was written to import-layer");
    let id = std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();

    eprintln!(
        "import-layer of {size} bytes ({} MiB) from a pipe: peak RSS {peak_kib} KiB ({} MiB)",
        size >> 20,
        peak_kib >> 10
    );
    let record = cs.layer_json(&id);
    assert_eq!(record["diff-size"].as_u64(), Some(size), "{record}");
    assert_eq!(
        record["diff-digest"].as_str(),
        Some(digest.as_str()),
        "{record}"
    );
    assert!(
        peak_kib < LIMIT_KIB,
        "import-layer peaked at {peak_kib} KiB of RSS, over 256 MiB"
    );

    // Exporting it again keeps its own memory bounded too, and gives back
    // the same bytes. The pool's packs are read through mmap, so the
    // export's RSS also counts the clean, reclaimable pack pages it touched:
    // the bound applies to its anonymous memory (sampled), and the total
    // peak is printed.
    let mut cmd = cs.command();
    cmd.args(["diff", "-u", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&err_path).unwrap());
    let mut child = cmd.spawn().expect("spawn diff");
    let sampler = RssSampler::start(child.id());
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (digest, len) = common::sha256_stream(stdout);
        (len, digest)
    });
    let exported = reader.join().unwrap();
    let (anon_kib, file_kib) = sampler.stop();
    let (status, export_kib) = wait_with_peak_rss(child);
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "diff failed: {}\nstderr: {stderr}",
        describe(status)
    );
    eprintln!(
        "diff -u of the same layer: peak RSS {export_kib} KiB ({} MiB); sampled peaks: \
         anonymous {anon_kib} KiB ({} MiB), file-backed (mapped packs) {file_kib} KiB ({} MiB)",
        export_kib >> 10,
        anon_kib >> 10,
        file_kib >> 10
    );
    assert_eq!(exported, (size, digest));
    assert!(anon_kib > 0, "no RSS sample of the diff process was taken");
    assert!(
        anon_kib < LIMIT_KIB,
        "diff held {anon_kib} KiB of anonymous memory, over 256 MiB"
    );
}

/// Polls `/proc/<pid>/status` for `RssAnon` and `RssFile` until stopped;
/// keeps the largest values seen (KiB).
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(i64, i64)>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            let (mut anon, mut file) = (0i64, 0i64);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    for line in text.lines() {
                        let kib = |l: &str| {
                            l.split_whitespace()
                                .nth(1)
                                .and_then(|v| v.parse::<i64>().ok())
                                .unwrap_or(0)
                        };
                        if line.starts_with("RssAnon:") {
                            anon = anon.max(kib(line));
                        } else if line.starts_with("RssFile:") {
                            file = file.max(kib(line));
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            (anon, file)
        });
        RssSampler { stop, thread }
    }

    fn stop(self) -> (i64, i64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}
