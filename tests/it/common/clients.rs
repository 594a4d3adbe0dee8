//! The real clients of a shared store, driven beside our CLI in one
//! temporary graph root: podman, skopeo, buildah and the upstream Go
//! `containers-storage` CLI (every one embeds the Go containers/storage
//! library and reads and writes the same files we do).
//!
//! [`Shared`] owns the temporary roots and the clients' configuration and
//! knows how to run each client there. It never lets a client near the
//! host's own stores or configuration:
//!
//! - every client gets explicit roots (podman and buildah `--root`/
//!   `--runroot`, skopeo `containers-storage:[overlay@G+R]`, the Go CLI
//!   `--graph`/`--run`) and `CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF`
//!   and `CONTAINERS_REGISTRIES_CONF` naming files of the fixture, with
//!   `HOME` and `XDG_*` pointing into it too (that is where c/image looks
//!   for `policy.json` before `/etc`);
//! - podman's run-time files (`tmp_dir`, events, network configs) go to
//!   the fixture through its `containers.conf`;
//! - c/image keeps a blob-info cache in `/var/lib/containers/cache` when
//!   run as root, whatever the roots (skopeo has no flag for it, podman
//!   4.3 and buildah 1.28 do the same when they copy): commands that copy
//!   images run in a mount namespace of their own where a tmpfs covers
//!   that directory. Only copies need it, and only copies get it, since a
//!   mount made in that namespace (podman/buildah `mount`) would be
//!   invisible to the test.
//!
//! Also here: the OCI image layouts the tests feed skopeo (written from
//! tars), an image stored with our CLI exactly the way c/image's storage
//! transport stores one, the neutral view of layer records (read from
//! `layers.json` itself), whole-store comparisons of both CLIs' exports,
//! `/proc/locks` probes for lock tests, disk use with hardlinks counted
//! once, and [`Findings`], which lets a test go on after a failed check so
//! that one run lists every way the clients and we disagree.
//!
//! Each test skips with the reason printed when it is not root or a
//! client is missing; in CI (root, clients installed by the set-up) a
//! missing client fails it.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt::Display;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use super::tree::{self, Node};
use super::{run_command, sha256_file, streamed_digest};

/// The storage driver a fixture uses unless told otherwise: the one
/// podman hosts use.
pub const DRIVER: &str = "overlay";

/// What `storage.conf` says on a host where podman and our CLI share the
/// store: keep every layer's directory built, as Go clients expect. Our
/// key lives in `[storage.options.pull_options]`, the one free-form table
/// the Go clients read without warning about keys they do not know.
pub const SHARED_HOST_OPTIONS: &str = "[storage.options.pull_options]\nmaterialize = \"always\"\n";

/// A client binary a test needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    Podman,
    Skopeo,
    Buildah,
    /// The upstream Go `containers-storage` CLI (package
    /// `containers-storage`).
    Go,
}

impl Client {
    fn binary(self) -> &'static str {
        match self {
            Client::Podman => "podman",
            Client::Skopeo => "skopeo",
            Client::Buildah => "buildah",
            Client::Go => "containers-storage",
        }
    }

    /// The binary on `PATH` (for the Go CLI, one that is not ours:
    /// both are called `containers-storage`).
    fn find(self) -> Option<PathBuf> {
        let ours = std::fs::canonicalize(env!("CARGO_BIN_EXE_containers-storage")).ok();
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        std::env::split_paths(&path)
            .map(|dir| dir.join(self.binary()))
            .filter(|p| p.is_file())
            .find(|p| std::fs::canonicalize(p).ok() != ours)
    }
}

/// One of the two CLIs of the same commands: ours or the upstream Go one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cli {
    Ours,
    Go,
}

/// What a client run gave: stdout, or the command line with its exit
/// status and stderr.
pub type Ran = Result<String, String>;

/// A command line for messages.
fn describe(cmd: &Command) -> String {
    let mut out = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}

/// Whether a client command copies an image (and so reads the host's
/// blob-info cache, which is covered for it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Copying {
    Yes,
    No,
}

/// Runs `cmd` with `args`.
fn with_args(mut cmd: Command, args: &[&str], copying: Copying) -> Ran {
    cmd.args(args);
    if copying == Copying::Yes {
        hide_host_cache(&mut cmd);
    }
    run(cmd, None)
}

/// Runs `cmd` (with `stdin`, if any) and returns what it gave.
pub fn run(cmd: Command, stdin: Option<&[u8]>) -> Ran {
    let line = describe(&cmd);
    let out = run_command(cmd, stdin);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`{line}`: {}\nstdout: {}\nstderr: {}",
            out.status,
            stdout.trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// The checks of one test, collected: a failed check is recorded and the
/// test goes on where it can, so that one run shows every disagreement;
/// [`Findings::done`] fails the test with all of them.
pub struct Findings {
    test: &'static str,
    failures: Vec<String>,
}

impl Findings {
    pub fn new(test: &'static str) -> Findings {
        Findings {
            test,
            failures: Vec::new(),
        }
    }

    /// Records `what` as failed with `detail`.
    pub fn fail(&mut self, what: &str, detail: impl Display) {
        self.failures.push(format!("{what}: {detail}"));
    }

    /// The value of `result`, or `None` with the failure recorded.
    pub fn ok<T, E: Display>(&mut self, what: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(what, e);
                None
            }
        }
    }

    /// Records a failure unless `cond`; returns `cond`.
    pub fn check(&mut self, what: &str, cond: bool, detail: impl Display) -> bool {
        if !cond {
            self.fail(what, detail);
        }
        cond
    }

    /// Records a failure unless `got == want`; returns whether equal.
    pub fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: &T, want: &T) -> bool {
        self.check(
            what,
            got == want,
            format_args!("got {got:?}, want {want:?}"),
        )
    }

    /// Whether nothing failed so far.
    pub fn clean(&self) -> bool {
        self.failures.is_empty()
    }

    /// Fails the test if any check failed, listing every failure.
    pub fn done(self) {
        assert!(
            self.failures.is_empty(),
            "{}: {} check(s) failed:\n- {}",
            self.test,
            self.failures.len(),
            self.failures.join("\n- ")
        );
    }
}

/// A temporary graph root and run root shared by our CLI and the real
/// clients, with the clients' configuration files; on drop, everything
/// mounted under it is unmounted (lazily) before it is removed.
pub struct Shared {
    dir: tempfile::TempDir,
    clients: BTreeMap<&'static str, PathBuf>,
    driver: &'static str,
}

impl Shared {
    /// A fresh fixture, or `None` (with the reason printed) when not root
    /// or when one of `needs` is not installed. In CI, which is root and
    /// installs every client, a missing one fails the test.
    pub fn new(what: &str, needs: &[Client]) -> Option<Shared> {
        Shared::on_driver(what, needs, DRIVER)
    }

    /// [`Shared::new`] with `driver` (`overlay` or `vfs`) for every client.
    pub fn on_driver(what: &str, needs: &[Client], driver: &'static str) -> Option<Shared> {
        Shared::on_driver_in(what, needs, driver, &std::env::temp_dir())
    }

    /// [`Shared::on_driver`] with its roots in a new directory under
    /// `parent` (a filesystem a test needs, such as a loop-mounted XFS).
    pub fn on_driver_in(
        what: &str,
        needs: &[Client],
        driver: &'static str,
        parent: &Path,
    ) -> Option<Shared> {
        if !super::need_root(what) {
            return None;
        }
        let mut clients = BTreeMap::new();
        for &client in needs {
            match client.find() {
                Some(path) => {
                    clients.insert(client.binary(), path);
                }
                None => {
                    assert!(
                        std::env::var_os("CI").is_none(),
                        "{what}: `{}` is not installed; CI installs podman, skopeo, buildah and containers-storage (vagrant/provision.sh)",
                        client.binary()
                    );
                    eprintln!("skipped: {what} needs `{}`", client.binary());
                    return None;
                }
            }
        }
        let dir = tempfile::tempdir_in(parent).expect("temp dir");
        let shared = Shared {
            dir,
            clients,
            driver,
        };
        assert!(
            !shared.dir.path().starts_with("/var/lib"),
            "the fixture's temporary directory must not be under /var/lib, which copying clients see covered"
        );
        shared.write_configs();
        Some(shared)
    }

    /// The graph root every client and our CLI use.
    pub fn graph(&self) -> PathBuf {
        self.dir.path().join("graph")
    }

    /// The run root every client and our CLI use.
    pub fn run_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// The storage driver every client uses here.
    pub fn driver(&self) -> &'static str {
        self.driver
    }

    /// `<graph>/<driver>-<kind>s/<kind>s.json`: `layers`, `images` or
    /// `containers`.
    pub fn record_file(&self, kinds: &str) -> PathBuf {
        self.graph()
            .join(format!("{}-{kinds}/{kinds}.json", self.driver))
    }

    /// A scratch path in the fixture (outside both roots).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        path
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    /// Has every client read `storage.conf` with `options` after the
    /// `[storage]` table (the shared-host setting, or `""` for our
    /// default: layer directories built on demand).
    pub fn write_storage_conf(&self, options: &str) {
        std::fs::write(
            self.conf().join("storage.conf"),
            format!(
                "[storage]\ndriver = \"{}\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n\n{options}",
                self.driver,
                self.graph().display(),
                self.run_root().display()
            ),
        )
        .unwrap();
    }

    fn write_configs(&self) {
        let conf = self.conf();
        let home = conf.join("home");
        std::fs::create_dir_all(home.join(".config/containers")).unwrap();
        let c = conf.display();
        std::fs::write(
            conf.join("containers.conf"),
            format!(
                "[containers]\nnetns = \"none\"\n\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\nevents_logfile_path = \"{c}/events/events.log\"\n\
                 tmp_dir = \"{c}/podman-tmp\"\n\n[network]\nnetwork_config_dir = \"{c}/networks\"\n"
            ),
        )
        .unwrap();
        self.write_storage_conf(SHARED_HOST_OPTIONS);
        std::fs::write(
            conf.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        std::fs::write(
            home.join(".config/containers/policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
    }

    /// The environment every process here gets: the fixture's
    /// configuration files and home, nothing of the host's.
    fn environ(&self, cmd: &mut Command) {
        let conf = self.conf();
        let home = conf.join("home");
        cmd.env("CONTAINERS_CONF", conf.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", conf.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", conf.join("registries.conf"))
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("STORAGE_DRIVER")
            .env_remove("STORAGE_OPTS")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("_CONTAINERS_ROOTLESS_UID");
    }

    fn client(&self, client: Client) -> Command {
        let path = self
            .clients
            .get(client.binary())
            .unwrap_or_else(|| panic!("the test did not ask for `{}`", client.binary()));
        let mut cmd = Command::new(path);
        self.environ(&mut cmd);
        cmd
    }

    /// Our CLI on the shared roots.
    pub fn ours_command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_containers-storage"));
        self.environ(&mut cmd);
        cmd.arg("--graph")
            .arg(self.graph())
            .arg("--run")
            .arg(self.run_root())
            .args(["--storage-driver", self.driver]);
        cmd
    }

    /// Runs our CLI.
    pub fn ours(&self, args: &[&str]) -> Ran {
        let mut cmd = self.ours_command();
        cmd.args(args);
        run(cmd, None)
    }

    /// Runs our CLI with `stdin`.
    pub fn ours_input(&self, args: &[&str], stdin: &[u8]) -> Ran {
        let mut cmd = self.ours_command();
        cmd.args(args);
        run(cmd, Some(stdin))
    }

    /// `client` with the shared roots given by its flags `graph` and `run`
    /// and the fixture's driver.
    fn on_roots(&self, client: Client, graph: &str, run: &str) -> Command {
        let mut cmd = self.client(client);
        cmd.arg(graph)
            .arg(self.graph())
            .arg(run)
            .arg(self.run_root())
            .args(["--storage-driver", self.driver]);
        cmd
    }

    /// The Go CLI on the shared roots.
    pub fn go_command(&self) -> Command {
        self.on_roots(Client::Go, "--graph", "--run")
    }

    /// Runs the Go CLI.
    pub fn go(&self, args: &[&str]) -> Ran {
        with_args(self.go_command(), args, Copying::No)
    }

    fn podman_command(&self) -> Command {
        let mut cmd = self.on_roots(Client::Podman, "--root", "--runroot");
        cmd.args(["--cgroup-manager=cgroupfs", "--events-backend=file"])
            .arg("--tmpdir")
            .arg(self.conf().join("podman-tmp"));
        cmd
    }

    /// Runs podman (for commands that copy no image: `images`, `create`,
    /// `mount`, `unmount`, `rm`, ...).
    pub fn podman(&self, args: &[&str]) -> Ran {
        with_args(self.podman_command(), args, Copying::No)
    }

    /// Runs podman for a command that copies an image (`save`, `load`).
    pub fn podman_copying(&self, args: &[&str]) -> Ran {
        with_args(self.podman_command(), args, Copying::Yes)
    }

    /// Runs skopeo (it always copies).
    pub fn skopeo(&self, args: &[&str]) -> Ran {
        with_args(self.client(Client::Skopeo), args, Copying::Yes)
    }

    fn buildah_command(&self) -> Command {
        self.on_roots(Client::Buildah, "--root", "--runroot")
    }

    /// Runs buildah (for commands that copy no image: `from --pull=never`,
    /// `mount`, `umount`, `rm`, `images`).
    pub fn buildah(&self, args: &[&str]) -> Ran {
        with_args(self.buildah_command(), args, Copying::No)
    }

    /// Runs buildah for a command that copies an image (`commit`).
    pub fn buildah_copying(&self, args: &[&str]) -> Ran {
        with_args(self.buildah_command(), args, Copying::Yes)
    }

    /// `containers-storage:[overlay@G+R]name`: the store as c/image names it.
    pub fn storage_ref(&self, name: &str) -> String {
        format!(
            "containers-storage:[{}@{}+{}]{name}",
            self.driver,
            self.graph().display(),
            self.run_root().display()
        )
    }

    /// `skopeo copy oci:LAYOUT <this store>NAME`.
    pub fn skopeo_copy_in(&self, layout: &OciLayout, name: &str) -> Ran {
        let src = format!("oci:{}", layout.dir.display());
        self.skopeo(&["copy", "-q", &src, &self.storage_ref(name)])
    }

    /// `skopeo copy <this store>NAME oci:DIR`.
    pub fn skopeo_copy_out(&self, name: &str, dir: &Path) -> Ran {
        let dest = format!("oci:{}", dir.display());
        self.skopeo(&["copy", "-q", &self.storage_ref(name), &dest])
    }

    /// `layers.json` as the files say (no CLI in between).
    pub fn layer_records(&self) -> Vec<LayerRecord> {
        let path = self.record_file("layers");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Vec::new();
        };
        let values: Vec<Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        values.iter().map(LayerRecord::from_json).collect()
    }

    /// `sha256:` of our `diff -u LAYER`, or why it failed.
    pub fn ours_export(&self, layer: &str) -> Ran {
        let mut cmd = self.ours_command();
        cmd.args(["diff", "-u", layer]);
        streamed_digest(cmd)
    }

    /// `sha256:` of the Go CLI's `diff -u LAYER`, or why it failed. The
    /// Go CLI can exit 0 after a failed read (it prints the error and an
    /// empty stream): the caller compares digests, which catches that.
    pub fn go_export(&self, layer: &str) -> Ran {
        let mut cmd = self.go_command();
        cmd.args(["diff", "-u", layer]);
        streamed_digest(cmd)
    }

    /// Runs `cli`.
    pub fn cli(&self, cli: Cli, args: &[&str]) -> Ran {
        match cli {
            Cli::Ours => self.ours(args),
            Cli::Go => self.go(args),
        }
    }

    /// The IDs `cli`'s `layers --json` lists (the Go CLI 1.43 has no
    /// `layers -q`).
    pub fn layer_ids(&self, cli: Cli) -> Result<Vec<String>, String> {
        let out = self.cli(cli, &["layers", "--json"])?;
        let layers: Vec<Value> = serde_json::from_str(&out)
            .map_err(|e| format!("{cli:?} `layers --json`: {e}: {out:?}"))?;
        Ok(layers
            .iter()
            .filter_map(|l| l["id"].as_str().map(String::from))
            .collect())
    }

    /// `sha256:` of `cli`'s `diff -u LAYER`.
    pub fn export(&self, cli: Cli, layer: &str) -> Ran {
        match cli {
            Cli::Ours => self.ours_export(layer),
            Cli::Go => self.go_export(layer),
        }
    }

    /// Requires every layer with a recorded diff digest to export exactly
    /// that with `cli`.
    pub fn check_exports(&self, findings: &mut Findings, cli: Cli, when: &str) {
        for layer in self.layer_records() {
            let Some(want) = layer.diff_digest.clone() else {
                continue;
            };
            let got = self.export(cli, &layer.id);
            let what = format!(
                "{when}: {cli:?} `diff -u {}` equals its diff digest",
                layer.id
            );
            if let Some(got) = findings.ok(&what, got) {
                findings.eq(&what, &got, &want);
            }
        }
    }

    /// Mounts `container` with podman and compares the tree with `want`;
    /// unmounts it again.
    pub fn check_podman_tree(
        &self,
        findings: &mut Findings,
        what: &str,
        container: &str,
        want: &BTreeMap<PathBuf, Node>,
    ) {
        let Some(mounted) = findings.ok(what, self.podman(&["mount", container])) else {
            return;
        };
        compare_tree(findings, what, Path::new(mounted.trim()), want);
        findings.ok(what, self.podman(&["unmount", container]));
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for mount in crate::harness::mounts_under(self.dir.path()) {
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Runs `cmd` in a mount namespace of its own where a tmpfs covers
/// `/var/lib/containers` (or `/var/lib`, where that does not exist), so
/// that c/image's blob-info cache for root goes there and not to the
/// host. Nothing mounted in there reaches the host (mounts are made
/// private first).
#[allow(unsafe_code)] // pre_exec: the closure runs between fork and exec
fn hide_host_cache(cmd: &mut Command) {
    let target = if Path::new("/var/lib/containers").is_dir() {
        "/var/lib/containers"
    } else {
        "/var/lib"
    };
    let target = CString::new(target).unwrap();
    let root = CString::new("/").unwrap();
    let tmpfs = CString::new("tmpfs").unwrap();
    let source = CString::new("cs-test-blob-cache").unwrap();
    // SAFETY: the closure only makes system calls on C strings made
    // before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let private = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                private,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                tmpfs.as_ptr(),
                0,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// One layer record as `layers.json` has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerRecord {
    pub id: String,
    pub parent: Option<String>,
    pub diff_digest: Option<String>,
    pub compressed_diff_digest: Option<String>,
    pub diff_size: Option<u64>,
    pub raw: Value,
}

impl LayerRecord {
    fn from_json(v: &Value) -> LayerRecord {
        let text = |key: &str| v[key].as_str().filter(|s| !s.is_empty()).map(String::from);
        LayerRecord {
            id: text("id").expect("a layer record has an id"),
            parent: text("parent"),
            diff_digest: text("diff-digest"),
            compressed_diff_digest: text("compressed-diff-digest"),
            diff_size: v["diff-size"].as_u64(),
            raw: v.clone(),
        }
    }

    /// What must never change once a client recorded it: ID, parent and
    /// the digests and size of the content.
    pub fn digests(
        &self,
    ) -> (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<u64>,
    ) {
        (
            self.id.clone(),
            self.parent.clone(),
            self.diff_digest.clone(),
            self.compressed_diff_digest.clone(),
            self.diff_size,
        )
    }
}

/// The tree `tar -x` of `tars` (in order, into one directory) gives:
/// what a mount of an image of these layers must show (for layers
/// without whiteouts, where extracting in order is the overlay view).
pub fn expected_tree(scratch: &Path, tars: &[PathBuf]) -> BTreeMap<PathBuf, Node> {
    let _ = std::fs::remove_dir_all(scratch);
    for tar in tars {
        tree::extract(tar, scratch);
    }
    tree::snapshot(scratch)
}

/// Records a failure unless the tree at `root` equals `want`.
pub fn compare_tree(
    findings: &mut Findings,
    what: &str,
    root: &Path,
    want: &BTreeMap<PathBuf, Node>,
) {
    if !root.is_dir() {
        findings.fail(what, format_args!("{} is not a directory", root.display()));
        return;
    }
    let got = tree::snapshot(root);
    let diff = tree::differences(want, &got);
    findings.check(
        what,
        diff.is_empty(),
        format_args!(
            "the tree at {} differs from tar -x (first: expected, second: mounted):\n  {}",
            root.display(),
            diff.join("\n  ")
        ),
    );
}

/// An OCI image layout (`oci:` directory) written from layer tars:
/// `oci-layout`, `index.json`, and blobs for the image manifest, the
/// config (with `rootfs.diff_ids`) and each layer (the tar as it is,
/// uncompressed; big tars are linked, not copied).
pub struct OciLayout {
    pub dir: PathBuf,
    pub tars: Vec<PathBuf>,
    /// `sha256:` of each layer tar: the blob digest and the diff ID.
    pub diff_ids: Vec<String>,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl OciLayout {
    /// Writes a layout of `tars` (lowest layer first) at `dir`.
    pub fn write(dir: &Path, tars: &[PathBuf]) -> OciLayout {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let mut diff_ids = Vec::new();
        let mut layers = Vec::new();
        for tar in tars {
            let (digest, size) = sha256_file(tar);
            let blob = blobs.join(hex_of(&digest));
            if !blob.exists() {
                let tar = std::fs::canonicalize(tar).unwrap();
                std::os::unix::fs::symlink(&tar, &blob).unwrap();
            }
            layers.push(json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest,
                "size": size,
            }));
            diff_ids.push(digest);
        }
        let history: Vec<Value> = tars
            .iter()
            .map(|t| {
                json!({
                    "created": "2024-01-01T00:00:00Z",
                    "created_by": format!("cs-test: {}", t.file_name().unwrap().to_string_lossy()),
                })
            })
            .collect();
        let config = serde_json::to_vec(&json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }))
        .unwrap();
        let config_digest = write_blob(&blobs, &config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": layers,
        }))
        .unwrap();
        let manifest_digest = write_blob(&blobs, &manifest);
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": manifest.len(),
                }],
            }))
            .unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        OciLayout {
            dir: dir.to_path_buf(),
            tars: tars.to_vec(),
            diff_ids,
            config,
            config_digest,
            manifest,
            manifest_digest,
        }
    }

    /// The image ID c/image gives this image: the config's digest, hex.
    pub fn image_id(&self) -> String {
        hex_of(&self.config_digest).to_string()
    }

    /// The layer IDs c/image gives its layers (see [`c_image_layer_id`]).
    pub fn layer_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for diff_id in &self.diff_ids {
            let id = c_image_layer_id(ids.last().map(String::as_str), diff_id);
            ids.push(id);
        }
        ids
    }
}

fn write_blob(blobs: &Path, data: &[u8]) -> String {
    let digest = super::sha256(data);
    std::fs::write(blobs.join(hex_of(&digest)), data).unwrap();
    digest
}

/// The hex part of `sha256:<hex>`.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// The ID c/image's storage transport gives a layer (`commitLayer` in
/// `storage/storage_dest.go`): the diff ID's hex for a base layer, else
/// the sha256 of `<parent layer ID>+<diff ID hex>` (not the OCI chain ID,
/// which hashes `sha256:<parent chain ID> sha256:<diff ID>`).
pub fn c_image_layer_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => hex_of(diff_id).to_string(),
        Some(parent) => {
            let digest = super::sha256(format!("{parent}+{}", hex_of(diff_id)).as_bytes());
            hex_of(&digest).to_string()
        }
    }
}

/// What an OCI layout that a client wrote holds, every digest checked.
pub struct VerifiedLayout {
    pub manifest_digest: String,
    pub config_digest: String,
    pub diff_ids: Vec<String>,
}

/// Reads the single image of the OCI layout at `dir` (as `skopeo copy
/// ... oci:` or `podman save --format oci-dir` writes it) and checks every
/// digest: each blob hashes to its name and size, and each layer (gunzipped
/// if its media type says gzip) hashes to the config's diff ID.
pub fn verify_oci_layout(dir: &Path) -> Result<VerifiedLayout, String> {
    let read_json = |path: &Path| -> Result<Value, String> {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", path.display()))
    };
    let blob_path = |digest: &str| dir.join("blobs/sha256").join(hex_of(digest));
    let check_blob = |what: &str, descriptor: &Value| -> Result<String, String> {
        let digest = descriptor["digest"]
            .as_str()
            .ok_or_else(|| format!("{what}: no digest in {descriptor}"))?;
        let (got, size) = sha256_file(&blob_path(digest));
        if got != digest {
            return Err(format!("{what}: blob {digest} hashes to {got}"));
        }
        if descriptor["size"].as_u64() != Some(size) {
            return Err(format!(
                "{what}: blob {digest} has {size} bytes, descriptor says {}",
                descriptor["size"]
            ));
        }
        Ok(digest.to_string())
    };
    let index = read_json(&dir.join("index.json"))?;
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let [descriptor] = manifests.as_slice() else {
        return Err(format!(
            "index.json lists {} manifests, not one",
            manifests.len()
        ));
    };
    let manifest_digest = check_blob("manifest", descriptor)?;
    let manifest = read_json(&blob_path(&manifest_digest))?;
    let config_digest = check_blob("config", &manifest["config"])?;
    let config = read_json(&blob_path(&config_digest))?;
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    if layers.len() != diff_ids.len() {
        return Err(format!(
            "the manifest has {} layers, the config {} diff IDs",
            layers.len(),
            diff_ids.len()
        ));
    }
    for (i, (layer, diff_id)) in layers.iter().zip(&diff_ids).enumerate() {
        let digest = check_blob(&format!("layer {i}"), layer)?;
        let file = std::fs::File::open(blob_path(&digest)).map_err(|e| e.to_string())?;
        let media = layer["mediaType"].as_str().unwrap_or_default();
        let (uncompressed, _) = if media.ends_with("gzip") {
            super::sha256_stream(flate2::read::GzDecoder::new(file))
        } else {
            super::sha256_stream(file)
        };
        if &uncompressed != diff_id {
            return Err(format!(
                "layer {i} ({digest}) uncompresses to {uncompressed}, the config's diff ID is {diff_id}"
            ));
        }
    }
    Ok(VerifiedLayout {
        manifest_digest,
        config_digest,
        diff_ids,
    })
}

/// An image stored with our CLI.
pub struct StoredImage {
    pub id: String,
    pub name: String,
    /// Lowest first.
    pub layers: Vec<String>,
}

impl StoredImage {
    pub fn top_layer(&self) -> &str {
        self.layers.last().expect("the image has layers")
    }
}

impl Shared {
    /// Stores `layout`'s image named `name` with our CLI the way c/image's
    /// storage transport does (`storageImageDestination.Commit` in
    /// `storage/storage_dest.go`, and what skopeo 1.9 leaves):
    ///
    /// 1. each layer: `PutLayer(id, parent, ..., {OriginalDigest: blob,
    ///    UncompressedDigest: diff ID}, tar)` with the IDs of
    ///    [`c_image_layer_id`] -> our `import-layer -i ID [PARENT]`;
    /// 2. `CreateImage(<config digest hex>, nil, top, "", ...)` ->
    ///    `create-image -i ID TOP`;
    /// 3. big data: the config under its digest (`sha256:<hex>`), the
    ///    manifest under `manifest-sha256:<hex>` and under `manifest`, and
    ///    skopeo's empty per-instance `signature-<hex>`;
    /// 4. metadata `{"signatures-sizes":{"<manifest digest>":[]}}`;
    /// 5. `AddNames(name)`.
    ///
    /// The Go library then fills the record's `digest` with the manifest
    /// digest (`recomputeDigests`); c/image passes no digest itself.
    pub fn store_like_c_image(
        &self,
        layout: &OciLayout,
        name: &str,
    ) -> Result<StoredImage, String> {
        let ids = layout.layer_ids();
        for (i, (tar, id)) in layout.tars.iter().zip(&ids).enumerate() {
            let tar = tar.to_str().unwrap();
            let mut args = vec!["import-layer", "-i", id.as_str(), "-f", tar];
            if i > 0 {
                args.push(ids[i - 1].as_str());
            }
            self.ours(&args)?;
        }
        let id = layout.image_id();
        let top = ids.last().expect("layers").as_str();
        self.ours(&["create-image", "-i", &id, top])?;
        let manifest_hex = hex_of(&layout.manifest_digest).to_string();
        let items: [(String, &[u8]); 4] = [
            (layout.config_digest.clone(), &layout.config),
            (
                format!("manifest-{}", layout.manifest_digest),
                &layout.manifest,
            ),
            ("manifest".into(), &layout.manifest),
            (format!("signature-{manifest_hex}"), b""),
        ];
        for (key, data) in items {
            self.ours_input(&["set-image-data", &id, &key], data)?;
        }
        let metadata =
            json!({"signatures-sizes": {layout.manifest_digest.clone(): []}}).to_string();
        self.ours(&["set-metadata", "-m", &metadata, &id])?;
        self.ours(&["add-names", "-n", name, &id])?;
        Ok(StoredImage {
            id,
            name: name.to_string(),
            layers: ids,
        })
    }
}

/// The device and inode of a file, as `/proc/locks` names it
/// (`MAJ:MIN:INODE`, the device numbers in hex).
fn lock_key(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let dev = meta.dev();
    Some(format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    ))
}

/// One `/proc/locks` entry on a store's lock file.
#[derive(Debug)]
pub struct LockEntry {
    pub file: PathBuf,
    /// `FLOCK`, `POSIX` or `OFDLCK`.
    pub kind: String,
    /// `READ` or `WRITE`.
    pub mode: String,
    /// A process waiting for the lock (`->`), not holding it.
    pub waiting: bool,
    /// The owner (-1 for an open file description lock).
    pub pid: i64,
}

impl Shared {
    /// The lock files both CLIs share, those that exist: the store's
    /// `storage.lock` and `userns.lock`, the record files' locks and
    /// `mountpoints.lock`. (A Go command takes several: `layers` waits
    /// on `containers.lock` when a Go `create-layer` holds that too.)
    pub fn lock_files(&self) -> Vec<PathBuf> {
        let g = self.graph();
        let r = self.run_root();
        [
            g.join("storage.lock"),
            g.join("userns.lock"),
            g.join(format!("{}-layers/layers.lock", self.driver)),
            g.join(format!("{}-images/images.lock", self.driver)),
            g.join(format!("{}-containers/containers.lock", self.driver)),
            r.join(format!("{}-layers/mountpoints.lock", self.driver)),
            r.join(format!("{}-containers/containers.lock", self.driver)),
        ]
        .into_iter()
        .filter(|p| p.exists())
        .collect()
    }

    /// The locks held on and waited for on the store's lock files, per
    /// `/proc/locks`.
    pub fn locks(&self) -> Vec<LockEntry> {
        locks_on(&self.lock_files())
    }

    /// Waits until `child` is blocked on one of the store's lock files
    /// (one more waiter than `before`) or exits; `Ok(())` when it waits,
    /// else what it printed.
    pub fn wait_until_blocked(&self, child: &mut Child, before: usize) -> Result<(), String> {
        // Not a time limit on the command: a guard against a test that
        // would hang when it waits on a file that is not a store lock.
        let guard = std::time::Instant::now();
        loop {
            if guard.elapsed() > std::time::Duration::from_secs(300) {
                let _ = child.kill();
                return Err(
                    "in 5 minutes it neither waited for a store lock nor exited (killed)".into(),
                );
            }
            if self.locks().iter().filter(|l| l.waiting).count() > before {
                return Ok(());
            }
            if let Some(status) = child.try_wait().unwrap() {
                use std::io::Read;
                let mut out = String::new();
                let mut err = String::new();
                if let Some(mut s) = child.stdout.take() {
                    let _ = s.read_to_string(&mut out);
                }
                if let Some(mut s) = child.stderr.take() {
                    let _ = s.read_to_string(&mut err);
                }
                return Err(format!(
                    "it did not wait: it exited ({status}) while the lock was held\nstdout: {}\nstderr: {}",
                    out.trim_end(),
                    err.trim_end()
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// How many processes wait for a lock of the store now.
    pub fn waiters(&self) -> usize {
        self.locks().iter().filter(|l| l.waiting).count()
    }
}

/// The locks held on and waited for on `files`, per `/proc/locks`.
pub fn locks_on(files: &[PathBuf]) -> Vec<LockEntry> {
    let keys: Vec<(String, &PathBuf)> = files
        .iter()
        .filter_map(|f| lock_key(f).map(|k| (k, f)))
        .collect();
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields: Vec<&str> = line.split_whitespace().skip(1).collect();
        let waiting = fields.first() == Some(&"->");
        if waiting {
            fields.remove(0);
        }
        // KIND ADVISORY|MANDATORY MODE PID MAJ:MIN:INODE START END
        if fields.len() < 5 {
            continue;
        }
        let Some((_, file)) = keys.iter().find(|(k, _)| k == fields[4]) else {
            continue;
        };
        out.push(LockEntry {
            file: (*file).clone(),
            kind: fields[0].to_string(),
            mode: fields[2].to_string(),
            waiting,
            pid: fields[3].parse().unwrap_or(-1),
        });
    }
    out
}

/// Spawns `cmd` with piped stdout and stderr (and stdin if `stdin`).
pub fn spawn(mut cmd: Command, stdin: bool) -> Child {
    cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", describe(&cmd)))
}

/// Waits for a spawned child; its stdout, or its status and stderr.
pub fn finish(child: Child) -> Ran {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{}\nstdout: {}\nstderr: {}",
            out.status,
            stdout.trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// The space the files under `root` take (allocated blocks), each inode
/// once however many links it has; mounts below `root` are not entered.
pub fn disk_use(root: &Path) -> u64 {
    let dev = std::fs::symlink_metadata(root).unwrap().dev();
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        if seen.insert(meta.ino()) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    total
}
