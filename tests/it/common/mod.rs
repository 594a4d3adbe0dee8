//! Test support shared by the integration tests: a tar writer that can
//! produce every entry kind byte by byte, and a driver for the real binary
//! in a temporary store.

#![allow(dead_code)]

pub mod clients;
pub mod dataset;
pub mod loopfs;
pub mod tar;
pub mod tree;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary directory for a store some other program writes (the Go
/// CLI): whatever is left mounted under it (Go's bind mount of its
/// `overlay/`) is detached before it is removed.
pub struct TempRoot(pub tempfile::TempDir);

impl TempRoot {
    pub fn new() -> TempRoot {
        TempRoot(tempfile::tempdir().expect("temp dir"))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        for mount in crate::harness::mounts_under(self.0.path()) {
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A temporary store driven through the real `containers-storage` binary.
pub struct Cs {
    pub dir: tempfile::TempDir,
}

impl Drop for Cs {
    /// What a test left mounted under the store (a mount it did not
    /// undo, Go's bind mount of `overlay/`) is detached, so that the
    /// directory can be removed.
    fn drop(&mut self) {
        for mount in crate::harness::mounts_under(self.dir.path()) {
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Cs {
    /// A fresh, empty store (vfs driver, so no mount privileges are needed).
    pub fn new() -> Cs {
        Cs {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn graph(&self) -> PathBuf {
        self.dir.path().join("graph")
    }

    pub fn run_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// A command with `--graph`, `--run` and `--storage-driver vfs` set.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_containers-storage"));
        cmd.arg("--graph")
            .arg(self.graph())
            .arg("--run")
            .arg(self.run_root())
            .arg("--storage-driver")
            .arg("vfs")
            .env_remove("STORAGE_DRIVER")
            .env_remove("STORAGE_OPTS")
            .env("CONTAINERS_STORAGE_CONF", "/dev/null");
        cmd
    }

    /// [`Cs::command`] for a user without root: as root, the store is
    /// handed to `nobody` (all of it, as it stands) and the command runs
    /// as `nobody`; otherwise the command as is.
    pub fn command_without_root(&self) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = self.command();
        if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("nobody")
                .expect("passwd")
                .expect("a nobody user");
            let owner = format!("{}:{}", user.uid, user.gid);
            let chowned = Command::new("chown")
                .args(["-R", &owner])
                .arg(self.dir.path())
                .status()
                .expect("chown runs");
            assert!(chowned.success(), "chown -R {owner}");
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        cmd
    }

    /// Runs with `args` (and `stdin` bytes, if any); returns the output.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        run_command(cmd, stdin)
    }

    /// Runs and requires exit 0; returns stdout as text.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        expect_status(&out, args, 0);
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs with stdin and requires exit 0; returns stdout bytes.
    pub fn ok_with_input(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let out = self.run(args, Some(stdin));
        expect_status(&out, args, 0);
        out.stdout
    }

    /// Runs and requires exit 0; returns stdout bytes.
    pub fn ok_bytes(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args, None);
        expect_status(&out, args, 0);
        out.stdout
    }

    /// Runs and requires a non-zero exit; returns stderr as text.
    pub fn fails(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.run(args, stdin);
        assert!(
            !out.status.success(),
            "expected failure: {args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Imports `tar` from stdin; returns the new layer's ID.
    pub fn import(&self, tar: &[u8], extra: &[&str]) -> String {
        let mut args = vec!["import-layer"];
        args.extend_from_slice(extra);
        let out = self.ok_with_input(&args, tar);
        first_line(&out)
    }

    /// Imports the file at `path`; returns the new layer's ID.
    pub fn import_file(&self, path: &Path, extra: &[&str]) -> String {
        let path = path.to_str().expect("utf-8 path");
        let mut args = vec!["import-layer", "-f", path];
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        first_line(out.as_bytes())
    }

    /// Runs on `driver` and requires exit 0; returns stdout as text.
    pub fn ok_on(&self, driver: &str, args: &[&str]) -> String {
        let mut cmd = self.command();
        cmd.args(["--storage-driver", driver]).args(args);
        let out = run_command(cmd, None);
        expect_status(&out, args, 0);
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Saves `tar` as `<name>.tar` in the store's directory and imports it
    /// on `driver` as a layer named `name`; returns the layer's ID.
    pub fn import_named(&self, driver: &str, name: &str, tar: &[u8]) -> String {
        let path = self.dir.path().join(format!("{name}.tar"));
        std::fs::write(&path, tar).expect("write the tar");
        let path = path.to_str().expect("utf-8 path");
        first_line_of(&self.ok_on(driver, &["import-layer", "-n", name, "-f", path]))
    }

    /// Requires `tree` to equal `tar -x` of `<name>.tar` (saved by
    /// [`Cs::import_named`]) in every attribute.
    pub fn assert_same_as_tar(&self, name: &str, tree: &Path) {
        let want = self.dir.path().join(format!("{name}.x"));
        if !want.exists() {
            tree::extract(&self.dir.path().join(format!("{name}.tar")), &want);
        }
        let diff = tree::differences(&tree::snapshot(&want), &tree::snapshot(tree));
        assert!(diff.is_empty(), "{name}: {}", diff.join("\n"));
    }

    /// Runs and parses stdout as one JSON value.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"))
    }

    /// `layer --json` of one layer, parsed.
    pub fn layer_json(&self, id: &str) -> serde_json::Value {
        let out = self.ok(&["layer", "--json", id]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("layer --json parses");
        v[0].clone()
    }

    /// IDs that `layers -q` lists.
    pub fn layer_ids(&self) -> Vec<String> {
        self.ok(&["layers", "-q"])
            .lines()
            .map(String::from)
            .collect()
    }
}

fn first_line(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Requires what `shutdown -f` may end with: success on a store without
/// mounts, or upstream's failure after unmounting a store's mounts.
pub fn expect_forced_shutdown(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(
        code == Some(0) || (code == Some(1) && stderr.contains("a layer is mounted")),
        "shutdown -f: {:?}\nstderr: {stderr}",
        out.status
    );
}

/// Runs a command, feeding `stdin` if given.
pub fn run_command(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn containers-storage");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    child
        .wait_with_output()
        .expect("wait for containers-storage")
}

/// Requires exit `code`, printing the command and its output otherwise.
pub fn expect_status(out: &Output, args: &[&str], code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "command {args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sha256:<hex>` of bytes.
pub fn sha256(data: &[u8]) -> String {
    containers_storage::manifest::Sha256::digest(data)
}

/// Compresses `data` with an external tool (`gzip`, `zstd`, `xz`, `bzip2`).
pub fn compress_with(tool: &str, data: &[u8]) -> Vec<u8> {
    let mut cmd = Command::new(tool);
    cmd.arg("-c");
    let out = run_command(cmd, Some(data));
    assert!(out.status.success(), "{tool} failed");
    out.stdout
}

/// The first line of a command's output (a new item's ID).
pub fn first_line_of(out: &str) -> String {
    out.lines().next().unwrap_or_default().to_string()
}

/// A command's stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// splitmix64: fast, seedable, and its output does not compress.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
    }
}

/// `len` deterministic, incompressible bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Rng(seed).fill(&mut out);
    out
}

/// `sha256:<hex>` of what `cmd` writes to stdout, streamed (a layer's
/// export can be larger than memory should hold); on failure, the exit
/// status and stderr.
pub fn streamed_digest(mut cmd: Command) -> Result<String, String> {
    use std::io::Read;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (digest, _) = sha256_stream(child.stdout.take().unwrap());
    let status = child.wait().unwrap();
    let errors = errors.join().unwrap();
    if status.success() {
        Ok(digest)
    } else {
        Err(format!("{status}\nstderr: {errors}"))
    }
}

/// `sha256:<hex>` and length of everything `input` yields, streamed.
pub fn sha256_stream(mut input: impl std::io::Read) -> (String, u64) {
    let mut hash = containers_storage::manifest::Sha256::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    let len = hash.len();
    (hash.finish(), len)
}

/// `sha256:<hex>` and size of a file, streamed.
pub fn sha256_file(path: &Path) -> (String, u64) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    sha256_stream(file)
}

/// A writer that hashes what goes through it.
pub struct Hashing<W> {
    pub inner: W,
    pub hash: containers_storage::manifest::Sha256,
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Splits an `images`/`containers`/`layers` listing into blocks keyed by
/// their unindented first line (the ID).
pub fn blocks(listing: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in listing.lines() {
        if line.starts_with('\t') {
            let (_, text) = current.as_mut().expect("detail line after an ID line");
            text.push_str(line);
            text.push('\n');
        } else {
            if let Some((id, text)) = current.take() {
                assert!(out.insert(id, text).is_none(), "ID listed twice");
            }
            current = Some((line.to_string(), format!("{line}\n")));
        }
    }
    if let Some((id, text)) = current {
        assert!(out.insert(id, text).is_none(), "ID listed twice");
    }
    out
}

/// Whether a privileged test can run (as root); elsewhere it prints why
/// it skips. CI is root and must run it.
pub fn need_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} must run in CI, which is root"
    );
    eprintln!("skipped: {what} needs root");
    false
}

/// Whether a tool a test needs is here (`present`); when it is not, the
/// test skips saying what to install, except in CI, which installs it
/// (`vagrant/provision.sh`) and so must run the test.
pub fn need_tool(what: &str, present: bool, install: &str) -> bool {
    if present {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} must run in CI, which installs {install}"
    );
    eprintln!("skipped: {what} needs {install}");
    false
}

/// The Debian dataset's `tars/` directory with every tar in it, or `None`
/// with the reason printed (see [`dataset`]).
pub fn debian_tars() -> Option<PathBuf> {
    dataset::tars()
}
