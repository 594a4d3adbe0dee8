//! Read-only additional image stores (`--storage-opt <drv>.imagestore=DIR`,
//! `STORAGE_OPTS`, `additionalimagestores` in `storage.conf`) and the
//! split image store (`--image-store DIR`), driven as a script would, on
//! both drivers (overlay needs root):
//!
//! - a store our CLI wrote serves as another's read-only store: its
//!   layers and images are listed with `Read Only: true`, found by ID,
//!   name, prefix and digest, mounted (`mount -r` of its image, a
//!   container on it) with the tree the imported tars give, exported
//!   byte for byte, and used as parents and top layers of the writable
//!   store's layers, images and containers;
//! - writes to its items refuse with upstream's `ErrStoreIsReadOnly`
//!   words, and nothing we run (mounts, `check`, `check -r`, `gc`) changes
//!   one byte, time or attribute under its root;
//! - a store the Go CLI 1.43 wrote serves the same way, and where Go 1.43
//!   reads read-only stores too (listings, `layer`, `image`, names on a
//!   read-only image) our output is Go's;
//! - `--image-store`: new images go under DIR; layers, their content and
//!   container records stay in the graph root, whose images stay visible
//!   read-only and whose containers stay usable.

use crate::common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::tar::{meta, Meta, TarBuilder};
use common::tree;

const RO_WORDS: &str = "called a write method on a read-only store";
const GO: &str = "/usr/bin/containers-storage";
const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// The base layer's tar: directories, files, a symlink, a hardlink.
fn base_tar() -> Vec<u8> {
    let mut t = TarBuilder::new();
    let dir = Meta {
        mode: 0o755,
        ..Meta::default()
    };
    t.dir("etc/", &dir);
    t.file("etc/hello", &Meta::default(), b"hello from the base\n");
    t.symlink("etc/link", "hello", &Meta::default());
    t.dir("bin/", &dir);
    t.file("bin/tool", &meta(0o755), &[7u8; 70_000]);
    t.hardlink("bin/tool-again", "bin/tool", &meta(0o755));
    t.finish()
}

/// The top layer's tar: a new directory and a file in one of the base's.
fn top_tar() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("etc/", &meta(0o755));
    t.dir("opt/", &meta(0o750));
    t.file("opt/top", &Meta::default(), b"on top\n");
    t.file("etc/extra", &Meta::default(), b"extra\n");
    t.finish()
}

/// One scratch directory with the tars, and the stores made in it.
pub(crate) struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        let s = Scratch {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(s.path("base.tar"), base_tar()).unwrap();
        std::fs::write(s.path("top.tar"), top_tar()).unwrap();
        s
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `tar -x` of the base and then the top: what a mount of the image
    /// shows.
    fn expected_tree(&self) -> PathBuf {
        let dir = self.path("expected");
        if !dir.exists() {
            tree::extract(&self.path("base.tar"), &dir);
            tree::extract(&self.path("top.tar"), &dir);
        }
        dir
    }
}

impl Drop for Scratch {
    /// What a test left mounted (a failed assertion between a mount and
    /// its unmount, the Go overlay driver's bind mount of its home) goes
    /// before the directory does.
    fn drop(&mut self) {
        for mount in crate::harness::mounts_under(self.dir.path()) {
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A CLI (ours or Go's) on one store: graph root, run root, driver, and
/// extra global options.
pub(crate) struct Cli {
    bin: PathBuf,
    graph: PathBuf,
    run: PathBuf,
    driver: &'static str,
    pub(crate) extra: Vec<String>,
}

impl Cli {
    pub(crate) fn ours(graph: PathBuf, run: PathBuf, driver: &'static str) -> Cli {
        Cli {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_containers-storage")),
            graph,
            run,
            driver,
            extra: Vec::new(),
        }
    }

    pub(crate) fn go(graph: PathBuf, run: PathBuf, driver: &'static str) -> Cli {
        Cli {
            bin: PathBuf::from(GO),
            ..Cli::ours(graph, run, driver)
        }
    }

    /// The same CLI with `store` as a read-only additional store.
    fn with_ro(mut self, store: &Path) -> Cli {
        self.extra.push("--storage-opt".into());
        self.extra
            .push(format!("{}.imagestore={}", self.driver, store.display()));
        self
    }

    pub(crate) fn command(&self) -> Command {
        // An empty `storage.conf` of the test's own (the Go CLI refuses
        // one that is missing): nothing of the host's applies.
        let conf = self.graph.with_file_name("storage.conf");
        if !conf.exists() {
            std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
            std::fs::write(&conf, "[storage]\n").unwrap();
        }
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--graph")
            .arg(&self.graph)
            .arg("--run")
            .arg(&self.run)
            .arg("--storage-driver")
            .arg(self.driver)
            .args(&self.extra)
            .env_remove("STORAGE_DRIVER")
            .env_remove("STORAGE_OPTS")
            .env("CONTAINERS_STORAGE_CONF", conf);
        cmd
    }

    pub(crate) fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        let mut cmd = self.command();
        cmd.args(args);
        common::run_command(cmd, stdin)
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(
            out.status.success(),
            "{} {args:?} failed\nstdout: {}\nstderr: {}",
            self.bin.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub(crate) fn ok_bytes(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args, None);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Requires a failure whose message holds upstream's words for an
    /// item its writable store does not have (`layer not known`, `image
    /// not known`) and for a write to a read-only store.
    fn refused(&self, args: &[&str], stdin: Option<&[u8]>) {
        let out = self.run(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was not refused");
        assert!(err.contains(RO_WORDS), "{args:?}: {err}");
        assert!(
            err.contains("layer not known") || err.contains("image not known"),
            "{args:?}: {err}"
        );
    }

    pub(crate) fn first_line(&self, args: &[&str]) -> String {
        self.ok(args).lines().next().unwrap_or_default().to_string()
    }
}

/// The read-only store's content: a base and a top layer (named), and an
/// image on the top (named, with a digest and a big data item), written
/// by `cli`. Returns (base, top, image) IDs.
fn fill(cli: &Cli, s: &Scratch) -> (String, String, String) {
    let base = cli.first_line(&[
        "import-layer",
        "-n",
        "base",
        "-f",
        s.path("base.tar").to_str().unwrap(),
    ]);
    let top = cli.first_line(&[
        "import-layer",
        "-n",
        "top",
        "-f",
        s.path("top.tar").to_str().unwrap(),
        &base,
    ]);
    let image = cli.first_line(&["create-image", "-n", "myimg", "--digest", DIGEST, &top]);
    std::fs::write(s.path("config"), b"{\"config\":1}").unwrap();
    cli.ok(&[
        "set-image-data",
        "-f",
        s.path("config").to_str().unwrap(),
        &image,
        "config",
    ]);
    (base, top, image)
}

/// Every entry under `root`: its path, type, mode, owner, size, times
/// (but access times), xattrs, and a file's content or a link's target.
pub(crate) fn fingerprint(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mut what = format!(
            "{:o} {}:{} {} m{}.{} c{}.{} {:?}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
            tree::xattrs(&path)
        );
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else if meta.file_type().is_symlink() {
            what.push_str(&format!(" -> {:?}", std::fs::read_link(&path).unwrap()));
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            what.push_str(&format!(" {}", common::sha256(&bytes)));
        }
        out.insert(path.strip_prefix(root).unwrap().to_path_buf(), what);
    }
    out
}

pub(crate) fn assert_unchanged(before: &BTreeMap<PathBuf, String>, root: &Path, when: &str) {
    let changes = tree::differences(before, &fingerprint(root));
    assert!(
        changes.is_empty(),
        "{when}: the read-only store changed:\n{}",
        changes.join("\n")
    );
}

pub(crate) fn assert_tree(s: &Scratch, mounted: &Path, what: &str) {
    let want = tree::snapshot(&s.expected_tree());
    let got = tree::snapshot(mounted);
    let diff = tree::differences(&want, &got);
    assert!(diff.is_empty(), "{what}: {}", diff.join("\n"));
}

pub(crate) fn driver_usable(driver: &str) -> bool {
    match driver {
        // The trees are compared with `tar -x` as root (owners kept).
        "vfs" => common::need_root("trees compared with tar -x as root"),
        _ => common::need_root("overlay mounts"),
    }
}

/// Everything the brief asks of a read-only store, against `ro` (filled
/// by `writer`), from a fresh writable store on `driver`.
fn use_as_read_only_store(
    driver: &'static str,
    s: &Scratch,
    ro: &Path,
    ids: (String, String, String),
) {
    let (base, top, image) = ids;
    let before = fingerprint(ro);
    let rw = Cli::ours(s.path("rw/graph"), s.path("rw/run"), driver).with_ro(ro);

    // Listed, with Read Only: true.
    let layers = rw.ok(&["layers"]);
    assert!(layers.contains(&base) && layers.contains(&top), "{layers}");
    assert!(layers.contains("\tname: top"), "{layers}");
    let shown = rw.ok(&["layer", "top"]);
    assert!(shown.contains(&format!("ID: {top}")), "{shown}");
    assert!(shown.contains(&format!("Parent: {base}")), "{shown}");
    assert!(shown.ends_with("Read Only: true\n"), "{shown}");
    let images = rw.ok(&["images"]);
    assert!(
        images.contains(&image) && images.contains("\tname: myimg"),
        "{images}"
    );
    let shown = rw.ok(&["image", "myimg"]);
    assert!(shown.contains(&format!("Top Layer: {top}")), "{shown}");
    assert!(shown.contains("Data: config"), "{shown}");
    assert!(shown.ends_with("Read Only: true\n"), "{shown}");

    // Found by ID, name, prefix and digest.
    for arg in [image.as_str(), "myimg", &image[..12]] {
        assert!(rw.ok(&["image", arg]).contains(&image), "{arg}");
    }
    for arg in [top.as_str(), "top", &top[..12]] {
        assert!(rw.ok(&["layer", arg]).contains(&top), "{arg}");
    }
    assert!(rw.ok(&["images-by-digest", DIGEST]).contains(&image));
    rw.ok(&["exists", "-l", "base"]);
    rw.ok(&["exists", "-i", "myimg"]);
    assert_eq!(
        rw.ok(&["get-image-data", "myimg", "config"]),
        "{\"config\":1}"
    );
    assert_eq!(rw.ok(&["get-names", "top"]).trim(), "top");

    // Exported byte for byte.
    assert_eq!(rw.ok_bytes(&["diff", "top"]), top_tar(), "diff of the top");
    assert_eq!(
        rw.ok_bytes(&["diff", "base"]),
        base_tar(),
        "diff of the base"
    );

    // Mounted: the image read-only, and a container on it.
    let mounted = PathBuf::from(rw.ok(&["mount", "-r", "myimg"]).trim());
    assert_tree(s, &mounted, "mount -r of the read-only image");
    rw.ok(&["unmount", "myimg"]);
    let container = rw.first_line(&["create-container", "-n", "c1", "myimg"]);
    let mounted = PathBuf::from(rw.ok(&["mount", "c1"]).trim());
    assert_tree(s, &mounted, "mount of a container on the read-only image");
    std::fs::write(mounted.join("written"), b"mine").unwrap();
    rw.ok(&["unmount", "c1"]);
    let mounted = PathBuf::from(rw.ok(&["mount", &container]).trim());
    assert_eq!(std::fs::read(mounted.join("written")).unwrap(), b"mine");
    rw.ok(&["unmount", &container]);

    // Parents and image tops in the writable store.
    let child = rw.first_line(&["create-layer", "-n", "child", "top"]);
    let mounted = PathBuf::from(rw.ok(&["mount", &child]).trim());
    assert_tree(s, &mounted, "a new layer on a read-only parent");
    rw.ok(&["unmount", &child]);
    let mut t = TarBuilder::new();
    t.file("opt/more", &Meta::default(), b"more\n");
    let more = t.finish();
    let out = rw.run(&["import-layer", "-n", "imported", "top"], Some(&more));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let own = rw.first_line(&["create-image", "-n", "own", "imported"]);
    let mounted = PathBuf::from(rw.ok(&["mount", "-r", "own"]).trim());
    assert_eq!(std::fs::read(mounted.join("opt/more")).unwrap(), b"more\n");
    assert_eq!(std::fs::read(mounted.join("opt/top")).unwrap(), b"on top\n");
    rw.ok(&["unmount", "own"]);
    let on_ro_top = rw.first_line(&["create-image", "-n", "second", "top"]);
    let shown = rw.ok(&["image", &on_ro_top]);
    assert!(shown.contains(&format!("Top Layer: {top}")), "{shown}");
    assert!(!shown.contains("Read Only"), "{shown}");
    assert!(!rw.ok(&["image", &own]).contains("Read Only"));

    // Writes to its items refuse.
    rw.refused(&["delete-layer", "top"], None);
    rw.refused(&["delete-image", "myimg"], None);
    rw.refused(&["delete", "base"], None);
    rw.refused(&["set-metadata", "-m", "x", "top"], None);
    rw.refused(&["mount", "top"], None);
    rw.refused(&["applydiff", "top"], Some(&more));
    rw.refused(
        &["copy", s.path("config").to_str().unwrap(), "top:/x"],
        None,
    );
    rw.refused(&["add-names", "-n", "again", "base"], None);
    let config = s.path("config");
    rw.refused(
        &[
            "set-image-data",
            "-f",
            config.to_str().unwrap(),
            "myimg",
            "k",
        ],
        None,
    );

    // `check` and `gc` of the writable store: nothing of the read-only
    // store is reported or removed; a layer on a read-only parent is fine.
    assert_eq!(rw.ok(&["check"]), "", "check of the writable store");
    rw.ok(&["check", "-r"]);
    rw.ok(&["gc"]);
    assert_eq!(rw.ok(&["check"]), "", "check after gc");
    rw.ok(&["layer", &child]);
    let mounted = PathBuf::from(rw.ok(&["mount", "c1"]).trim());
    assert_eq!(
        std::fs::read(mounted.join("etc/hello")).unwrap(),
        b"hello from the base\n"
    );
    rw.ok(&["unmount", "c1"]);
    rw.ok(&["delete-container", "c1"]);
    rw.ok(&["delete-image", "own"]);
    rw.ok(&["gc"]);
    assert_unchanged(&before, ro, "after mounts, writes, check, check -r and gc");
    // What was built here for its layers is kept by `gc` (and not
    // reported by `check`, above) while the read-only store has them.
    let content = |root: &Path| match driver {
        "vfs" => root.join("vfs/dir").join(&top),
        _ => root.join("overlay").join(&top).join("diff"),
    };
    if !content(ro).exists() {
        let built = content(&s.path("rw/graph"));
        assert!(built.is_dir(), "{} was not kept", built.display());
    }
    let mounted = PathBuf::from(rw.ok(&["mount", "-r", "myimg"]).trim());
    assert_tree(s, &mounted, "mount -r after gc");
    rw.ok(&["unmount", "myimg"]);
    assert_unchanged(&before, ro, "at the end");
}

fn a_store_we_wrote_serves_as_a_read_only_store(driver: &'static str) {
    if !driver_usable(driver) {
        return;
    }
    let s = Scratch::new();
    let ro = s.path("ro/graph");
    let writer = Cli::ours(ro.clone(), s.path("ro/run"), driver);
    let ids = fill(&writer, &s);
    use_as_read_only_store(driver, &s, &ro, ids);
}

#[test]
fn a_store_we_wrote_serves_as_a_read_only_store_vfs() {
    a_store_we_wrote_serves_as_a_read_only_store("vfs");
}

#[test]
fn a_store_we_wrote_serves_as_a_read_only_store_overlay() {
    a_store_we_wrote_serves_as_a_read_only_store("overlay");
}

/// Our store's layers were mounted there before, so its directories are
/// built: they are used in place, and still nothing changes.
#[test]
fn a_store_we_wrote_with_built_directories_serves_in_place() {
    if !driver_usable("overlay") {
        return;
    }
    let s = Scratch::new();
    let ro = s.path("ro/graph");
    let writer = Cli::ours(ro.clone(), s.path("ro/run"), "overlay");
    let ids = fill(&writer, &s);
    writer.ok(&["mount", "-r", "myimg"]);
    writer.ok(&["unmount", "myimg"]);
    let top = ids.1.clone();
    use_as_read_only_store("overlay", &s, &ro, ids);
    // Nothing of the image was built again in the writable store.
    let rw_diff = s.path("rw/graph/overlay").join(&top).join("diff");
    assert!(!rw_diff.exists(), "{} was built", rw_diff.display());
}

fn gc_evicts_what_mounts_built_for_read_only_layers(driver: &'static str) {
    if !driver_usable(driver) {
        return;
    }
    let s = Scratch::new();
    let ro = s.path("ro/graph");
    let ids = fill(&Cli::ours(ro.clone(), s.path("ro/run"), driver), &s);
    let before = fingerprint(&ro);
    let rw = Cli::ours(s.path("rw/graph"), s.path("rw/run"), driver).with_ro(&ro);
    let built = match driver {
        "vfs" => s.path("rw/graph/vfs/dir").join(&ids.1),
        _ => s.path("rw/graph/overlay").join(&ids.1).join("diff"),
    };
    let evict = || -> serde_json::Value {
        serde_json::from_str(&rw.ok(&["gc", "-v", "--evict", "all", "--json"])).unwrap()
    };
    let mounted = PathBuf::from(rw.first_line(&["mount", "-r", "myimg"]));
    assert!(built.is_dir(), "{} was not built", built.display());
    // Mounted: kept.
    assert_eq!(evict()["evicted"]["layers"], 0);
    assert!(built.is_dir());
    assert_tree(&s, &mounted, "mounted");
    rw.ok(&["unmount", "myimg"]);
    // Unmounted: evicted, and built again by the next mount.
    let report = evict();
    assert!(
        report["evicted"]["layers"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(!built.exists(), "{} was not evicted", built.display());
    let mounted = PathBuf::from(rw.first_line(&["mount", "-r", "myimg"]));
    assert_tree(&s, &mounted, "mounted again");
    rw.ok(&["unmount", "myimg"]);
    rw.ok(&["check"]);
    assert_unchanged(&before, &ro, "after the evictions");
}

#[test]
fn gc_keeps_what_a_mounted_mapped_chain_uses_through_a_directory_backed_read_only_layer() {
    if !driver_usable("overlay") {
        return;
    }
    let s = Scratch::new();
    let ro = s.path("ro/graph");
    let writer = Cli::ours(ro.clone(), s.path("ro/run"), "overlay");
    // A pool-backed base, a directory-backed layer on it, an image.
    let (base, _, _) = fill(&writer, &s);
    let mid = writer.first_line(&["create-layer", &base]);
    let tree = PathBuf::from(writer.first_line(&["mount", &mid]));
    std::fs::write(tree.join("mid-file"), b"mid\n").unwrap();
    writer.ok(&["unmount", &mid]);
    writer.ok(&["create-image", "-n", "on-mid", &mid]);
    // The base's directory its writer built goes: a mount here builds one.
    writer.ok(&["gc", "--evict", "all"]);
    let rw = Cli::ours(s.path("rw/graph"), s.path("rw/run"), "overlay").with_ro(&ro);
    // ID-mapped: where the kernel shifts, the mount's lower directories
    // are idmapped clones, which the host's mount table does not name
    // (only the mount records protect them).
    let map = "0:100000:65536";
    let container = rw.first_line(&[
        "create-container",
        "--uidmap",
        map,
        "--gidmap",
        map,
        "on-mid",
    ]);
    let mounted = PathBuf::from(rw.first_line(&["mount", &container]));
    let built = s.path("rw/graph/overlay").join(&base).join("diff");
    assert!(built.is_dir(), "{} was not built", built.display());
    let before = tree::snapshot(&mounted);
    rw.ok(&["gc", "--evict", "all"]);
    assert!(
        built.is_dir(),
        "{} was evicted under a mount",
        built.display()
    );
    assert!(tree::differences(&before, &tree::snapshot(&mounted)).is_empty());
    rw.ok(&["unmount", &container]);
}

#[test]
fn gc_evicts_what_mounts_built_for_read_only_layers_vfs() {
    gc_evicts_what_mounts_built_for_read_only_layers("vfs");
}

#[test]
fn gc_evicts_what_mounts_built_for_read_only_layers_overlay() {
    gc_evicts_what_mounts_built_for_read_only_layers("overlay");
}

pub(crate) fn go_present() -> bool {
    if !common::need_root("the Go CLI (it chowns its store)") {
        return false;
    }
    if Path::new(GO).exists() {
        return true;
    }
    eprintln!("skipped: {GO} is missing");
    false
}

fn a_store_the_go_cli_wrote_serves_as_a_read_only_store(driver: &'static str) {
    if !driver_usable(driver) || !go_present() {
        return;
    }
    let s = Scratch::new();
    let ro = s.path("ro/graph");
    let writer = Cli::go(ro.clone(), s.path("ro/run"), driver);
    let ids = fill(&writer, &s);
    // Go 1.43 reads read-only stores too: its listings are ours.
    let before = fingerprint(&ro);
    let go = Cli::go(s.path("go/graph"), s.path("go/run"), driver).with_ro(&ro);
    let ours = Cli::ours(s.path("rw/graph"), s.path("rw/run"), driver).with_ro(&ro);
    for args in [
        &["layers"][..],
        &["images"],
        &["layer", "top"],
        &["layer", "base"],
        &["image", "myimg"],
        &["images-by-digest", DIGEST],
        &["get-names", "top"],
        &["diffsize", "top"],
        &["diffsize", "base"],
        &["changes", "base"],
        &["changes", "top"],
    ] {
        // (vfs `changes` of a Go-written directory differ from Go's in a
        // writable store too: Go lists a directory whose time differs
        // from its parent's copy as modified, and in another order.)
        if driver == "vfs" && args[0] == "changes" {
            continue;
        }
        assert_eq!(ours.ok(args), go.ok(args), "{args:?}: ours, then Go's");
    }
    assert_unchanged(&before, &ro, "after Go's and our listings");
    // One writable store both CLIs use, on the same read-only store: each
    // mounts the container the other made on its image.
    let go = Cli::go(s.path("both/graph"), s.path("both/run"), driver).with_ro(&ro);
    let ours = Cli::ours(s.path("both/graph"), s.path("both/run"), driver).with_ro(&ro);
    ours.ok(&["create-container", "-n", "ours", "myimg"]);
    // After our read-only mount of the image, Go still finds its layers:
    // the mountpoint made for it in the graph root goes with the unmount
    // (Go looks for a layer's directory there first).
    ours.ok(&["mount", "-r", "myimg"]);
    ours.ok(&["unmount", "myimg"]);
    go.ok(&["create-container", "-n", "go", "myimg"]);
    for (mounter, container) in [(&go, "ours"), (&ours, "go")] {
        let mounted = PathBuf::from(mounter.ok(&["mount", container]).trim());
        assert_tree(
            &s,
            &mounted,
            &format!("{} mounting {container}", mounter.bin.display()),
        );
        mounter.ok(&["unmount", container]);
    }
    assert_unchanged(&before, &ro, "after both CLIs' containers");
    use_as_read_only_store(driver, &s, &ro, ids);
}

#[test]
fn a_store_the_go_cli_wrote_serves_as_a_read_only_store_vfs() {
    a_store_the_go_cli_wrote_serves_as_a_read_only_store("vfs");
}

#[test]
fn a_store_the_go_cli_wrote_serves_as_a_read_only_store_overlay() {
    a_store_the_go_cli_wrote_serves_as_a_read_only_store("overlay");
}

/// Names given to a read-only store's image copy its record into the
/// writable store with its own names, and the change is made to the copy,
/// as upstream 1.64's `updateNames` does: both are listed, the copy
/// (without `Read Only`) is found first, and a name the copy lost is not
/// found in the read-only store's record either (upstream's `Image`
/// skips a read-only record whose ID the writable store holds). Go 1.43
/// copied with the given names only; what else it shows is compared.
#[test]
fn names_on_a_read_only_image_copy_its_record() {
    let s = Scratch::new();
    let ro = s.path("ro/graph");
    let (_, _, image) = fill(&Cli::ours(ro.clone(), s.path("ro/run"), "vfs"), &s);
    let before = fingerprint(&ro);
    let ours = Cli::ours(s.path("rw/graph"), s.path("rw/run"), "vfs").with_ro(&ro);
    ours.ok(&["add-names", "-n", "renamed", "-n", "again", "myimg"]);
    let shown = ours.ok(&["image", &image]);
    for name in ["myimg", "renamed", "again"] {
        assert!(shown.contains(&format!("Name: {name}\n")), "{shown}");
    }
    assert!(!shown.contains("Read Only"), "{shown}");
    assert!(shown.contains("Data: config"), "{shown}");
    assert_eq!(
        ours.ok(&["get-image-data", "renamed", "config"]),
        "{\"config\":1}"
    );
    let listed = ours.ok(&["images"]);
    assert_eq!(listed.matches(&image).count(), 2, "{listed}");
    // The copy is this store's: it can be changed and deleted. The name
    // it lost finds nothing, though the read-only record still has it.
    ours.ok(&["remove-names", "-n", "myimg", "renamed"]);
    let out = ours.run(&["image", "myimg"], None);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    ours.ok(&["set-names", "-n", "third", "renamed"]);
    assert_eq!(ours.ok(&["image", "third"]).matches("Name: ").count(), 1);
    ours.ok(&["delete-image", "third"]);
    assert!(ours.ok(&["image", "myimg"]).ends_with("Read Only: true\n"));
    assert_unchanged(&before, &ro, "after names on its image");
    if !go_present() {
        return;
    }
    let go = Cli::go(s.path("go/graph"), s.path("go/run"), "vfs").with_ro(&ro);
    let ours = Cli::ours(s.path("rw2/graph"), s.path("rw2/run"), "vfs").with_ro(&ro);
    for cli in [&go, &ours] {
        cli.ok(&["add-names", "-n", "renamed", "myimg"]);
    }
    for args in [&["images"][..], &["image", "renamed"]] {
        let (o, g) = (ours.ok(args), go.ok(args));
        // Go 1.43 copies no big data and only the given names; newer
        // upstream (and ours) copies both.
        let comparable = |text: String| -> String {
            text.lines()
                .filter(|l| {
                    !["\tdata: ", "Data: ", "Size", "\tname: ", "Name: "]
                        .iter()
                        .any(|p| l.starts_with(p))
                })
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let (o, g) = (comparable(o), comparable(g));
        assert_eq!(o, g, "{args:?}: ours, then Go's");
    }
    assert_unchanged(&before, &ro, "after Go's names too");
}

/// `STORAGE_OPTS` and `additionalimagestores` in `storage.conf` name
/// read-only stores as `--storage-opt` does; a relative path is refused.
#[test]
fn read_only_stores_come_from_the_environment_and_storage_conf() {
    let s = Scratch::new();
    let ro = s.path("ro/graph");
    let (_, top, _) = fill(&Cli::ours(ro.clone(), s.path("ro/run"), "vfs"), &s);
    let rw = Cli::ours(s.path("rw/graph"), s.path("rw/run"), "vfs");
    let mut cmd = rw.command();
    cmd.env("STORAGE_OPTS", format!("vfs.imagestore={}", ro.display()))
        .args(["layer", "top"]);
    let out = common::run_command(cmd, None);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&top));
    let conf = s.path("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"vfs\"\n[storage.options]\nadditionalimagestores = [\"{}\"]\n",
            ro.display()
        ),
    )
    .unwrap();
    let mut cmd = rw.command();
    cmd.env("CONTAINERS_STORAGE_CONF", &conf)
        .args(["layer", "top"]);
    let out = common::run_command(cmd, None);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&top) && shown.contains("Read Only: true"),
        "{shown}"
    );
    let mut cmd = rw.command();
    cmd.args(["--storage-opt", "vfs.imagestore=relative/dir", "layers"]);
    let out = common::run_command(cmd, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not absolute"),
        "{err}"
    );
    // One that is not there (a mount not made yet) holds nothing, as
    // upstream has it, and says nothing; one that is no directory fails.
    let missing = s.path("not-mounted");
    let mut cmd = rw.command();
    cmd.arg("--storage-opt")
        .arg(format!(
            "vfs.imagestore={},{}",
            missing.display(),
            ro.display()
        ))
        .args(["layer", "top"]);
    let out = common::run_command(cmd, None);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&top));
    assert_eq!(common::stderr(&out), "");
    let file = s.path("a-file");
    std::fs::write(&file, "").unwrap();
    let mut cmd = rw.command();
    cmd.arg("--storage-opt")
        .arg(format!("vfs.imagestore={}", file.display()))
        .arg("layers");
    let out = common::run_command(cmd, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("must be a directory"),
        "{err}"
    );
}

/// `--image-store DIR`, as upstream places things: images under DIR;
/// layers (a container's, and those `import-layer` makes writable), their
/// content and the container records under the graph root, whose images
/// stay visible read-only and unchanged; its containers and layers stay
/// usable. A store written before serves as DIR: its images are this
/// store's, its layers read in place.
fn split_image_store(driver: &'static str) {
    if !driver_usable(driver) {
        return;
    }
    let s = Scratch::new();
    let graph = s.path("graph");
    let plain = Cli::ours(graph.clone(), s.path("run"), driver);
    let base = plain.first_line(&[
        "import-layer",
        "-n",
        "base",
        "-f",
        s.path("base.tar").to_str().unwrap(),
    ]);
    plain.ok(&["create-image", "-n", "old", &base]);
    plain.ok(&["create-container", "-n", "oldc", "old"]);
    let images_before = fingerprint(&graph.join(format!("{driver}-images")));
    let split_dir = s.path("images");
    let mut split = Cli::ours(graph.clone(), s.path("run"), driver);
    split.extra = vec!["--image-store".into(), split_dir.display().to_string()];
    // Listed, not `Read Only` (upstream opens the graph root's images as
    // a writable image store).
    let shown = split.ok(&["image", "old"]);
    assert!(
        shown.contains("Name: old") && !shown.contains("Read Only"),
        "{shown}"
    );
    // A container from before the split is this store's, layer and all.
    let mounted = PathBuf::from(split.ok(&["mount", "oldc"]).trim());
    assert!(mounted.starts_with(&graph), "{}", mounted.display());
    std::fs::write(mounted.join("written"), "by oldc").unwrap();
    split.ok(&["unmount", "oldc"]);
    // `status` names the graph root.
    let mut cmd = split.command();
    cmd.arg("status");
    let out = common::run_command(cmd, None);
    let status = common::stderr(&out);
    assert!(
        status.starts_with(&format!("Root: {}\n", graph.display())),
        "{status}"
    );
    let top = split.first_line(&[
        "import-layer",
        "-n",
        "top",
        "-f",
        s.path("top.tar").to_str().unwrap(),
        "base",
    ]);
    let image = split.first_line(&["create-image", "-n", "new", &top]);
    let container = split.first_line(&["create-container", "-n", "c", "new"]);
    let read = |path: PathBuf| std::fs::read_to_string(path).unwrap_or_default();
    let layers = read(graph.join(format!("{driver}-layers/layers.json")));
    assert!(layers.contains(&top) && layers.contains(&base), "{layers}");
    let images = read(split_dir.join(format!("{driver}-images/images.json")));
    assert!(images.contains(&image), "{images}");
    assert!(!read(graph.join(format!("{driver}-images/images.json"))).contains(&image));
    assert!(read(graph.join(format!("{driver}-containers/containers.json"))).contains(&container));
    for kind in ["layers", "containers"] {
        let path = split_dir.join(format!("{driver}-{kind}/{kind}.json"));
        assert!(read(path).is_empty(), "{kind} under the image store");
    }
    let listed = split.ok(&["images"]);
    assert!(
        listed.contains("name: old") && listed.contains("name: new"),
        "{listed}"
    );
    let mounted = PathBuf::from(split.ok(&["mount", "c"]).trim());
    assert!(mounted.starts_with(&graph), "{}", mounted.display());
    assert_tree(&s, &mounted, "a container in the split store");
    split.ok(&["unmount", "c"]);
    assert_eq!(split.ok(&["check"]), "");
    // `gc` keeps the run directory of the graph root's image, and the
    // graph root's `gc` without the image store that of the image
    // store's (upstream's `gc` leaves images' run directories alone).
    let run_dir = PathBuf::from(split.ok(&["get-image-run-dir", "old"]).trim());
    let new_run_dir = PathBuf::from(split.ok(&["get-image-run-dir", "new"]).trim());
    split.ok(&["gc"]);
    plain.ok(&["gc"]);
    for dir in [&run_dir, &new_run_dir] {
        assert!(dir.is_dir(), "{} removed", dir.display());
    }
    assert_unchanged(
        &images_before,
        &graph.join(format!("{driver}-images")),
        "the graph root's images after the split store's work",
    );
    // `get-image-dir` gives the graph root's directory, for DIR's images
    // too, as upstream's `ImageDirectory` does; `gc` keeps both, and the
    // graph root's `gc` without the image store that of its own image.
    let data_dir = PathBuf::from(split.ok(&["get-image-dir", "old"]).trim());
    let new_data_dir = PathBuf::from(split.ok(&["get-image-dir", "new"]).trim());
    assert_eq!(
        new_data_dir,
        graph.join(format!("{driver}-images/{image}/userdata"))
    );
    assert!(data_dir.starts_with(graph.join(format!("{driver}-images"))));
    split.ok(&["gc"]);
    for dir in [&data_dir, &new_data_dir] {
        assert!(dir.is_dir(), "{} removed", dir.display());
    }
    plain.ok(&["gc"]);
    assert!(data_dir.is_dir(), "{} removed", data_dir.display());
    // `imagestore` in `storage.conf` is `--image-store`.
    let conf = s.path("split.conf");
    std::fs::write(
        &conf,
        format!("[storage]\nimagestore = \"{}\"\n", split_dir.display()),
    )
    .unwrap();
    let mut cmd = plain.command();
    cmd.env("CONTAINERS_STORAGE_CONF", &conf)
        .args(["image", "new"]);
    let out = common::run_command(cmd, None);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&image) && !shown.contains("Read Only"),
        "{shown}"
    );
    // Without the image store, the graph root sees its own image only,
    // and the layers and containers it holds.
    let listed = plain.ok(&["images"]);
    assert!(
        listed.contains("name: old") && !listed.contains("name: new"),
        "{listed}"
    );
    assert!(plain.ok(&["layers"]).contains(&top));
    let mounted = PathBuf::from(plain.ok(&["mount", "oldc"]).trim());
    assert_eq!(
        std::fs::read_to_string(mounted.join("written")).unwrap(),
        "by oldc"
    );
    plain.ok(&["unmount", "oldc"]);
    // The Go CLI on the graph root alone mounts the container made in the
    // split store: its layers are all there (built by our mount above).
    if go_present() {
        let go = Cli::go(graph.clone(), s.path("run"), driver);
        let mounted = PathBuf::from(go.ok(&["mount", "c"]).trim());
        assert_tree(
            &s,
            &mounted,
            "the Go CLI's mount of the split store's container",
        );
        go.ok(&["unmount", "c"]);
    }
    split.ok(&["delete-container", "oldc"]);
    split.ok(&["delete-container", "c"]);
    split.ok(&["delete-image", "new"]);
    assert!(!split.ok(&["layers"]).contains(&top));
    // The graph root's image: names given to it copy it under DIR; a
    // delete removes it from both, and its layers, as upstream deletes
    // from every writable image store.
    split.ok(&["add-names", "-n", "older", "old"]);
    assert!(read(split_dir.join(format!("{driver}-images/images.json"))).contains("older"));
    split.ok(&["delete-image", "older"]);
    assert!(!split.ok(&["images"]).contains("name: old"));
    assert!(!plain.ok(&["images"]).contains("name: old"));
    assert!(!split.ok(&["layers"]).contains(&base));

    // A store written before, used as the image store: its images are
    // this store's, its layers read in place.
    let other = s.path("other");
    let writer = Cli::ours(other.clone(), s.path("run-other"), driver);
    let other_base =
        writer.first_line(&["import-layer", "-f", s.path("base.tar").to_str().unwrap()]);
    let other_top = writer.first_line(&[
        "import-layer",
        "-f",
        s.path("top.tar").to_str().unwrap(),
        &other_base,
    ]);
    writer.ok(&["create-image", "-n", "theirs", &other_top]);
    let other_layers = fingerprint(&other.join(format!("{driver}-layers")));
    let mut split = Cli::ours(graph.clone(), s.path("run"), driver);
    split.extra = vec!["--image-store".into(), other.display().to_string()];
    let shown = split.ok(&["image", "theirs"]);
    assert!(!shown.contains("Read Only"), "{shown}");
    // Its layers are this store's too, as in upstream's one layer store
    // (see `image_store.rs` for their writes).
    let shown = split.ok(&["layer", &other_top]);
    assert!(!shown.contains("Read Only"), "{shown}");
    split.ok(&["create-container", "-n", "c2", "theirs"]);
    let mounted = PathBuf::from(split.ok(&["mount", "c2"]).trim());
    assert!(mounted.starts_with(&graph), "{}", mounted.display());
    assert_tree(&s, &mounted, "a container of the image store's image");
    split.ok(&["unmount", "c2"]);
    split.ok(&["add-names", "-n", "renamed", "theirs"]);
    assert_eq!(split.ok(&["check"]), "");
    split.ok(&["delete-container", "c2"]);
    assert_unchanged(
        &other_layers,
        &other.join(format!("{driver}-layers")),
        "the image store's layers",
    );

    // A layer the image store holds on a parent of the graph root's (as
    // upstream 1.64 puts a pulled layer on one the graph root has): that
    // parent is not deleted under it, by `delete-layer` or `delete-image`.
    let parent = split.first_line(&["create-layer"]);
    let records = other.join(format!("{driver}-layers/layers.json"));
    let mut layers: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&records).unwrap()).unwrap();
    let child = layers[0]["id"].as_str().unwrap().to_string();
    layers[0]["parent"] = parent.clone().into();
    std::fs::write(&records, serde_json::to_vec(&layers).unwrap()).unwrap();
    let out = split.run(&["delete-layer", &parent], None);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains(&format!("used by layer {child}")) && err.contains("layer has children"),
        "{err}"
    );
    split.ok(&["create-image", "-n", "on-parent", &parent]);
    split.ok(&["delete-image", "on-parent"]);
    assert!(split.ok(&["layers"]).contains(&parent));
    // Nor is the top layer of the graph root's image (ours protects it
    // as `delete-image` does; upstream's `delete-layer` looks at DIR's
    // images only).
    let lone = split.first_line(&["create-layer"]);
    plain.ok(&["create-image", "-n", "lone", &lone]);
    let out = split.run(&["delete-layer", &lone], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr(&out).contains("layer is in use by an image"));
}

#[test]
fn split_image_store_vfs() {
    split_image_store("vfs");
}

#[test]
fn split_image_store_overlay() {
    split_image_store("overlay");
}
