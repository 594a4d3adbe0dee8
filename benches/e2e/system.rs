//! What the bench needs from the system: running a command to completion
//! (with its peak RSS), disk figures (`statvfs`, directory sizes), medians,
//! and the places it measures in: a loop-mounted ext4 of its own and a
//! tmpfs run root. Nothing here measures a figure of the report.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs a command to completion and requires success; returns its peak
/// RSS in KiB.
#[allow(unsafe_code)] // wait4 with the child's own rusage: no safe wrapper
pub fn run(cmd: &mut Command) -> u64 {
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

/// Runs a command and requires success; returns its stdout.
pub fn output(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sync`: nothing left to write back from what ran before.
pub fn sync() {
    run(&mut Command::new("sync"));
}

/// Bytes in use on the filesystem that holds `path`.
pub fn disk_used(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).unwrap();
    (st.blocks() - st.blocks_free()) as u64 * st.fragment_size() as u64
}

/// Apparent size of the files below `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
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

pub fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

pub fn median_u64(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// A fresh, empty directory under `base` named for this process.
pub fn tempdir_under(base: &Path) -> PathBuf {
    let dir = base.join(format!("cs-e2e-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh directory on the tmpfs at `/dev/shm`, if there is one.
pub fn tmpfs_dir(name: &str) -> Option<PathBuf> {
    let shm = Path::new("/dev/shm");
    let fs = nix::sys::statfs::statfs(shm).ok()?;
    if fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
        return None;
    }
    let dir = shm.join(format!("cs-bench-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// Lazily unmounts every mount strictly below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut below: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .filter(|target| Path::new(target).starts_with(dir) && Path::new(target) != dir)
        .collect();
    below.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for target in below {
        let _ = Command::new("umount").arg("-l").arg(target).status();
    }
}

/// A sparse ext4 image loop-mounted under `work` (root only), through a
/// loop device with direct I/O: what a `sync` writes is then on the disk
/// when it returns, rather than dirty in the host's page cache, written
/// back later while a timed command runs. A filesystem of its own also
/// keeps other processes' dirty data out of its syncs and its `statvfs`
/// figures, and none of the host's mount options apply (`discard` on `/`
/// makes every delete pay for a TRIM later).
pub struct LoopExt4 {
    pub dir: PathBuf,
    image: PathBuf,
    device: String,
}

impl LoopExt4 {
    pub fn mount(work: &Path) -> Option<LoopExt4> {
        if !is_root() {
            return None;
        }
        let image = work.join("bench.img");
        let dir = work.join("bench-fs");
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
            eprintln!("e2e bench: no loop ext4 (measuring in the work directory)");
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
        unmount_below(&self.dir);
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
        let _ = fs::remove_file(&self.image);
    }
}
