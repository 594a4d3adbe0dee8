//! Debian images mounted through the real binary on ext4 and on XFS with
//! reflinks (root and the Debian dataset needed; CI has both, elsewhere
//! each test prints why it skips):
//!
//! - every container mount and `mount -r` image mount, with the overlay and
//!   the vfs driver, of the six squashed images and of the layered set (a
//!   base, then a diff on top: curl, python3, and slim with whiteouts)
//!   equals `tar -x` of the same tars in every path's type, mode, owner,
//!   size, content, symlink target, xattrs and mtime; a layered mount also
//!   equals the squashed image of the same packages but for times
//!   (`scripts/make-dataset.sh` checks that one with times when it builds
//!   the dataset; older datasets left files whose content did not change
//!   out of the diffs and gave them sub-second times);
//! - the six squashed images materialized take at most 0.45x (XFS) and
//!   0.5x (ext4) of the space of the six trees `tar -x` gives there;
//! - writes, truncations and chmods through one container reach no other
//!   container, image, layer or object: on XFS the files are reflinks of
//!   objects, on ext4 overlay lower files are hardlinks of objects.
//!
//! Each test builds its own loop-mounted filesystem (a sparse image in a
//! temporary directory), so that its `statvfs` figures are its own and
//! cleaning up is one unmount and one file: removing the same trees from
//! a filesystem mounted with `discard` took longer than the checks. The
//! overlay and the vfs store there share one set of `tar -x` trees.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use common::tree::{differences, extract, snapshot, Node};
use common::Cs;

type Tree = BTreeMap<PathBuf, Node>;

const SUITES: [&str; 2] = ["bookworm", "trixie"];

/// One image: its name and its tars, lowest first.
struct Image {
    name: String,
    tars: Vec<PathBuf>,
    /// For a layered image, the squashed image of the same packages (the
    /// same tree; older datasets differ in the times of unchanged files).
    twin: Option<String>,
}

impl Image {
    fn squashed(&self) -> bool {
        self.tars.len() == 1
    }

    fn container(&self) -> String {
        format!("c-{}", self.name)
    }
}

/// The six squashed images, then the layered ones (base + one diff).
fn images(dir: &Path) -> Vec<Image> {
    let mut out = Vec::new();
    for suite in SUITES {
        out.push(Image {
            name: format!("{suite}-base"),
            tars: vec![dir.join(format!("{suite}-base.tar"))],
            twin: None,
        });
        for variant in ["python3", "curl"] {
            out.push(Image {
                name: format!("{suite}-{variant}"),
                tars: vec![dir.join(format!("{suite}-{variant}.full.tar"))],
                twin: None,
            });
        }
    }
    for suite in SUITES {
        for variant in ["python3", "curl", "slim"] {
            out.push(Image {
                name: format!("{suite}-{variant}-layered"),
                tars: vec![
                    dir.join(format!("{suite}-base.tar")),
                    dir.join(format!("{suite}-{variant}.diff.tar")),
                ],
                twin: (variant != "slim").then(|| format!("{suite}-{variant}")),
            });
        }
    }
    out
}

/// The isolation check writes through the container of `WRITER` and
/// looks at a second container on that image (`SECOND`), the container
/// of another image sharing many files (`NEIGHBOUR`) and the container of
/// the layered image of the same packages (`LAYERED_TWIN`).
const WRITER: &str = "bookworm-python3";
const NEIGHBOUR: &str = "bookworm-curl";
const LAYERED_TWIN: &str = "bookworm-python3-layered";
const SECOND: &str = "c2-bookworm-python3";

/// Maps `f` over `0..n` on as many threads as there are CPUs.
fn par_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |p| p.get())
        .min(n.max(1));
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let value = f(i);
                *results[i].lock().unwrap() = Some(value);
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap().expect("every item was mapped"))
        .collect()
}

/// Snapshots of several trees, in parallel.
fn snapshots(dirs: &[&Path]) -> Vec<Tree> {
    par_map(dirs.len(), |i| snapshot(dirs[i]))
}

/// `tree` with the times of `paths` left out.
fn without_times_of(tree: &Tree, paths: &HashSet<PathBuf>) -> Tree {
    let mut tree = tree.clone();
    for path in paths {
        if let Some(node) = tree.get_mut(path) {
            node.mtime = (0, 0);
        }
    }
    tree
}

fn without_times(tree: &Tree) -> Tree {
    let mut tree = tree.clone();
    for node in tree.values_mut() {
        node.mtime = (0, 0);
    }
    tree
}

fn assert_same(what: &str, want: &Tree, have: &Tree) {
    let diff = differences(want, have);
    assert!(
        diff.is_empty(),
        "{what}: differs (expected first, then found):\n{}",
        diff.join("\n")
    );
}

/// Lazily unmounts every mount strictly below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let Ok(table) = fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let mut below: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .map(|field| PathBuf::from(unescape_mount_path(field)))
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    below.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for path in below {
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `/proc/self/mounts` escapes space, tab, newline and backslash as `\NNN`.
fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let code = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap();
            out.push(u8::from_str_radix(code, 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn run_tool(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FsKind {
    Xfs,
    Ext4,
}

impl FsKind {
    fn name(self) -> &'static str {
        match self {
            FsKind::Xfs => "XFS",
            FsKind::Ext4 => "ext4",
        }
    }

    /// `statfs` magic.
    fn magic(self) -> u64 {
        match self {
            FsKind::Xfs => 0x5846_5342,
            FsKind::Ext4 => 0xEF53,
        }
    }
}

/// A loop-mounted filesystem of its own in a temporary directory, so that
/// `statvfs` figures are this test's alone and removing what it wrote
/// costs one image file; on drop, the overlay mounts below it are lazily
/// unmounted, then the filesystem, and the image is removed.
struct LoopFs {
    dir: tempfile::TempDir,
    kind: FsKind,
    mounted: bool,
}

impl LoopFs {
    /// XFS with reflinks (`mkfs.xfs -m reflink=1`, 6 GiB), or ext4
    /// (10 GiB: the vfs trees there are copies).
    fn mount(kind: FsKind) -> Option<LoopFs> {
        let (mkfs, args, size, options): (&str, &[&str], u64, &str) = match kind {
            FsKind::Xfs => ("mkfs.xfs", &["-q", "-m", "reflink=1"], 6 << 30, "loop"),
            // No background zeroing of inode tables: the image is sparse.
            FsKind::Ext4 => ("mkfs.ext4", &["-q", "-F"], 10 << 30, "loop,noinit_itable"),
        };
        if Command::new(mkfs).arg("-V").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "CI must have {mkfs}");
            eprintln!("skipped: {mkfs} is not installed");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("debian-mounts-{}", kind.name()))
            .tempdir()
            .unwrap();
        let image = dir.path().join("fs.img");
        fs::create_dir(dir.path().join("mnt")).unwrap();
        File::create(&image).unwrap().set_len(size).unwrap();
        run_tool(Command::new(mkfs).args(args).arg(&image));
        let mut loop_fs = LoopFs {
            dir,
            kind,
            mounted: false,
        };
        run_tool(
            Command::new("mount")
                .args(["-o", options])
                .arg(&image)
                .arg(loop_fs.root()),
        );
        loop_fs.mounted = true;
        let magic = nix::sys::statfs::statfs(&loop_fs.root())
            .unwrap()
            .filesystem_type()
            .0 as u64;
        assert_eq!(
            magic,
            kind.magic(),
            "{} is not {:?}",
            loop_fs.root().display(),
            kind
        );
        Some(loop_fs)
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        let root = self.root();
        unmount_below(&root);
        let unmounted = Command::new("umount")
            .arg(&root)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&root).status();
        }
    }
}

/// Where one test runs: a loop filesystem and the ratio bound there.
struct Site {
    name: &'static str,
    root: PathBuf,
    kind: FsKind,
    /// The largest allowed ratio of materialized space to `tar -x` space.
    bound: f64,
}

/// Bytes in use on the site's filesystem after a `syncfs`: the
/// filesystem's own figure, which counts a reflinked extent once (block
/// counts of files would count it per file) and a hardlinked inode once.
fn used_bytes(dir: &Path) -> u64 {
    let f = File::open(dir).unwrap();
    nix::unistd::syncfs(f.as_raw_fd()).unwrap();
    let s = nix::sys::statvfs::statvfs(dir).unwrap();
    (s.blocks() - s.blocks_free()) as u64 * s.fragment_size() as u64
}

/// A store on the site driven through the binary with one driver.
struct Store {
    cs: Cs,
    driver: &'static str,
}

impl Store {
    fn new(site: &Site, driver: &'static str) -> Store {
        let mut dir = tempfile::Builder::new()
            .prefix(driver)
            .tempdir_in(&site.root)
            .unwrap();
        // The loop filesystem goes as a whole.
        dir.disable_cleanup(true);
        Store {
            cs: Cs { dir },
            driver,
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let mut cmd = self.cs.command();
        cmd.args(["--storage-driver", self.driver]).args(args);
        let out = common::run_command(cmd, None);
        common::expect_status(&out, args, 0);
        String::from_utf8(out.stdout).unwrap()
    }

    fn mount(&self, args: &[&str]) -> PathBuf {
        let mut cmd = vec!["mount"];
        cmd.extend_from_slice(args);
        PathBuf::from(self.run(&cmd).trim())
    }

    fn graph(&self) -> PathBuf {
        self.cs.graph()
    }

    /// Imports every image's chain (sharing layers between chains with
    /// the same tars), creates the images, a container on each and a
    /// second container on the writer's image. Returns each chain
    /// prefix's layer ID.
    fn populate(&self, images: &[Image]) -> HashMap<Vec<PathBuf>, String> {
        let mut layers: HashMap<Vec<PathBuf>, String> = HashMap::new();
        for image in images {
            for i in 0..image.tars.len() {
                let key = image.tars[..=i].to_vec();
                if layers.contains_key(&key) {
                    continue;
                }
                let mut args = vec!["import-layer", "-f", image.tars[i].to_str().unwrap()];
                let parent = (i > 0).then(|| layers[&image.tars[..i]].clone());
                args.extend(parent.as_deref());
                let id = common::first_line_of(&self.run(&args));
                layers.insert(key, id);
            }
            let top = &layers[&image.tars];
            self.run(&["create-image", "-n", &image.name, top]);
            self.run(&["create-container", "-n", &image.container(), &image.name]);
        }
        self.run(&["create-container", "-n", SECOND, WRITER]);
        layers
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Never remove a tree through a mount left by a failed check.
        unmount_below(self.cs.dir.path());
    }
}

/// `tar -x` of each of `image`'s tars in turn into `dir`, with a diff's
/// whiteouts applied: what they hide is removed before the diff is
/// extracted, and the `.wh.` files it leaves are removed after. With
/// `base`, a tree `tar -x` already made of the first tar, that tree is
/// copied with `cp -al` instead of extracting the first tar again: its
/// files are the same inodes, which GNU tar never writes through (it
/// replaces a file it extracts over), so `base` stays as it was.
fn extract_image(image: &Image, dir: &Path, base: Option<&Path>) {
    for (i, tar) in image.tars.iter().enumerate() {
        if i == 0 {
            match base {
                Some(base) => run_tool(Command::new("cp").arg("-al").arg(base).arg(dir)),
                None => extract(tar, dir),
            }
            continue;
        }
        let out = Command::new("tar").arg("-tf").arg(tar).output().unwrap();
        assert!(out.status.success(), "tar -t {}", tar.display());
        let names: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
            .collect();
        let mut markers = Vec::new();
        for name in &names {
            let path = Path::new(name);
            let base = path.file_name().unwrap().to_str().unwrap();
            let parent = dir.join(path.parent().unwrap());
            if base == ".wh..wh..opq" {
                if let Ok(entries) = fs::read_dir(&parent) {
                    for e in entries {
                        remove_any(&e.unwrap().path());
                    }
                }
                markers.push(dir.join(path));
            } else if let Some(hidden) = base.strip_prefix(".wh.") {
                remove_any(&parent.join(hidden));
                markers.push(dir.join(path));
            }
        }
        extract(tar, dir);
        for marker in markers {
            fs::remove_file(&marker).unwrap();
        }
    }
}

fn remove_any(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

/// Whether `path`'s data extents are all shared with another file (a
/// reflink), by `FS_IOC_FIEMAP`.
#[allow(unsafe_code)] // FS_IOC_FIEMAP: no safe wrapper
fn extents_shared(path: &Path) -> bool {
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Extent {
        logical: u64,
        physical: u64,
        length: u64,
        reserved64: [u64; 2],
        flags: u32,
        reserved: [u32; 3],
    }
    #[repr(C)]
    struct Fiemap {
        start: u64,
        length: u64,
        flags: u32,
        mapped: u32,
        count: u32,
        reserved: u32,
        extents: [Extent; 64],
    }
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 1;
    const FIEMAP_EXTENT_SHARED: u32 = 0x2000;
    let file = File::open(path).unwrap();
    let mut map = Fiemap {
        start: 0,
        length: u64::MAX,
        flags: FIEMAP_FLAG_SYNC,
        mapped: 0,
        count: 64,
        reserved: 0,
        extents: [Extent::default(); 64],
    };
    // SAFETY: `map` is a fiemap header followed by room for `count`
    // extents, alive for the whole call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP as _, &mut map) };
    assert_eq!(r, 0, "fiemap {}", path.display());
    map.mapped > 0
        && map.extents[..map.mapped as usize]
            .iter()
            .all(|e| e.flags & FIEMAP_EXTENT_SHARED != 0)
}

/// Everything one site's checks share.
struct Fixture<'a> {
    site: &'a Site,
    images: Vec<Image>,
    /// `tar -x` of each image, by name.
    expected: HashMap<String, Tree>,
    /// Per image, the directories whose time is the extraction's own (a
    /// directory a diff changes without listing it, or one a whiteout
    /// took entries from): no tar holds their time.
    untimed: HashMap<String, HashSet<PathBuf>>,
    /// sha256 of each tar the isolation check exports again.
    digests: HashMap<PathBuf, String>,
}

impl Fixture<'_> {
    fn image(&self, name: &str) -> &Image {
        self.images.iter().find(|i| i.name == name).unwrap()
    }

    /// Compares a mount of `image` with `tar -x` of it: everything but
    /// the times of its untimed directories (none in a squashed image).
    fn compare(&self, what: &str, image: &Image, have: &Tree) {
        let untimed = &self.untimed[&image.name];
        assert_same(
            what,
            &without_times_of(&self.expected[&image.name], untimed),
            &without_times_of(have, untimed),
        );
        if let Some(twin) = &image.twin {
            assert_same(
                &format!("{what}, against the squashed {twin} but for times"),
                &without_times(&self.expected[twin]),
                &without_times(have),
            );
        }
    }
}

/// Mounts every container (already mounted ones are kept) and every
/// image read-only, and compares each with `tar -x`. Returns the mounts
/// by container or `image:NAME`.
fn check_mounts(
    f: &Fixture,
    store: &Store,
    mut mounts: HashMap<String, PathBuf>,
) -> HashMap<String, PathBuf> {
    let start = Instant::now();
    for image in &f.images {
        mounts
            .entry(image.container())
            .or_insert_with(|| store.mount(&[&image.container()]));
        let path = store.mount(&["-r", &image.name]);
        mounts.insert(format!("image:{}", image.name), path);
    }
    let second = store.mount(&[SECOND]);
    mounts.insert(SECOND.to_string(), second);
    let mounted = start.elapsed();
    // (what, image, mountpoint)
    let mut jobs: Vec<(String, &Image, PathBuf)> = Vec::new();
    for image in &f.images {
        jobs.push((
            format!(
                "{} on {}: container {}",
                store.driver,
                f.site.name,
                image.container()
            ),
            image,
            mounts[&image.container()].clone(),
        ));
        jobs.push((
            format!(
                "{} on {}: mount -r {}",
                store.driver, f.site.name, image.name
            ),
            image,
            mounts[&format!("image:{}", image.name)].clone(),
        ));
    }
    par_map(jobs.len(), |i| {
        let (what, image, path) = &jobs[i];
        f.compare(what, image, &snapshot(path));
    });
    eprintln!(
        "{} on {}: {} mounts equal tar -x ({:.1}s to mount, {:.1}s in all)",
        store.driver,
        f.site.name,
        jobs.len(),
        mounted.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    mounts
}

/// Regular files, identical in the writer's and the neighbour's tree and
/// not hardlinked within them: the three largest and three smallest.
fn shared_files(f: &Fixture) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let a = &f.expected[WRITER];
    let b = &f.expected[NEIGHBOUR];
    let mut shared: Vec<(&PathBuf, &Node)> = a
        .iter()
        .filter(|(p, n)| n.kind == "file" && n.size > 0 && b.get(*p) == Some(*n))
        .collect();
    shared.sort_by_key(|(p, n)| (std::cmp::Reverse(n.size), (*p).clone()));
    let paths: Vec<PathBuf> = shared.iter().map(|(p, _)| (*p).clone()).collect();
    // A path with another name for the same inode would show a change
    // through both names: leave those out.
    let single = |p: &PathBuf| {
        let probe = f.site.root.join("expected").join(WRITER).join(p);
        fs::metadata(probe).unwrap().nlink() == 1
    };
    let paths: Vec<PathBuf> = paths.into_iter().filter(|p| single(p)).collect();
    assert!(paths.len() >= 6, "too few shared files: {}", paths.len());
    let big = paths[..3].to_vec();
    let small = paths[paths.len() - 3..].to_vec();
    (big, small)
}

/// The file of an overlay layer's lower directory that shows `path`: in
/// `overlay/<id>/diff`, or where the layer was materialized as a delta
/// over another layer's directory (`overlay/<id>/base`), in that one.
fn overlay_lower_file(store: &Store, layer: &str, path: &Path) -> PathBuf {
    let driver = store.graph().join("overlay");
    let mut id = layer.to_string();
    for _ in 0..16 {
        let file = driver.join(&id).join("diff").join(path);
        if fs::symlink_metadata(&file).is_ok() {
            return file;
        }
        match fs::read_to_string(driver.join(&id).join("base")) {
            Ok(base) => id = base.trim().to_string(),
            Err(_) => break,
        }
    }
    panic!(
        "no lower directory of layer {layer} holds {}",
        path.display()
    );
}

/// Writes, truncates and chmods files through the writer's container and
/// checks that no other container, image, layer or object changed.
fn check_isolation(
    f: &Fixture,
    store: &Store,
    layers: &HashMap<Vec<PathBuf>, String>,
    mounts: &HashMap<String, PathBuf>,
) {
    let (big, small) = shared_files(f);
    let writer = f.image(WRITER);
    let writer_mount = &mounts[&writer.container()];
    // How the files are made, before anything is written.
    let writer_layer = &layers[&writer.tars];
    for path in &big {
        let file = match store.driver {
            "overlay" => overlay_lower_file(store, writer_layer, path),
            _ => writer_mount.join(path),
        };
        let meta = fs::metadata(&file).unwrap();
        match (f.site.kind, store.driver) {
            (FsKind::Xfs, _) => assert!(
                meta.nlink() == 1 && extents_shared(&file),
                "{} on {}: {} is not a reflink (links: {})",
                store.driver,
                f.site.name,
                file.display(),
                meta.nlink()
            ),
            (FsKind::Ext4, "overlay") => assert!(
                meta.nlink() >= 2,
                "overlay on {}: lower file {} is not a hardlink of an object",
                f.site.name,
                file.display()
            ),
            // A vfs tree is written by whoever mounts it: never hardlinks.
            (FsKind::Ext4, _) => assert_eq!(
                meta.nlink(),
                1,
                "vfs on {}: {} is a hardlink",
                f.site.name,
                file.display()
            ),
        }
    }
    let objects = store.graph().join("objects");
    let objects_before = snapshot(&objects);

    // Write, truncate and chmod through the writer's container.
    let at = |p: &PathBuf| writer_mount.join(p);
    let new_content = b"overwritten through container A\n";
    fs::write(at(&big[0]), new_content).unwrap();
    let size1 = fs::metadata(at(&big[1])).unwrap().len();
    {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .open(at(&big[1]))
            .unwrap();
        file.seek(SeekFrom::Start(size1 / 2)).unwrap();
        file.write_all(&[0x5a; 8192]).unwrap();
    }
    fs::set_permissions(at(&big[1]), fs::Permissions::from_mode(0o700)).unwrap();
    let size2 = fs::metadata(at(&big[2])).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(at(&big[2]))
        .unwrap()
        .set_len(size2 / 3)
        .unwrap();
    fs::set_permissions(at(&small[0]), fs::Permissions::from_mode(0o777)).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(at(&small[1]))
        .unwrap()
        .write_all(b"appended")
        .unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(at(&small[2]))
        .unwrap()
        .set_len(0)
        .unwrap();
    // The writer sees its changes.
    assert_eq!(fs::read(at(&big[0])).unwrap(), new_content);
    let changed = fs::read(at(&big[1])).unwrap();
    assert_eq!(&changed[size1 as usize / 2..][..8192], &[0x5a; 8192][..]);
    assert_eq!(fs::metadata(at(&big[1])).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(fs::metadata(at(&big[2])).unwrap().len(), size2 / 3);
    assert_eq!(fs::metadata(at(&small[0])).unwrap().mode() & 0o7777, 0o777);
    assert!(fs::read(at(&small[1])).unwrap().ends_with(b"appended"));
    assert_eq!(fs::metadata(at(&small[2])).unwrap().len(), 0);

    // Nothing else changed: the other containers and images...
    let neighbour = f.image(NEIGHBOUR);
    let layered = f.image(LAYERED_TWIN);
    let others: Vec<(String, &Image)> = vec![
        (SECOND.to_string(), writer),
        (neighbour.container(), neighbour),
        (layered.container(), layered),
        (format!("image:{WRITER}"), writer),
        (format!("image:{NEIGHBOUR}"), neighbour),
        (format!("image:{LAYERED_TWIN}"), layered),
    ];
    let dirs: Vec<&Path> = others.iter().map(|(k, _)| mounts[k].as_path()).collect();
    let trees = snapshots(&dirs);
    for ((key, image), tree) in others.iter().zip(&trees) {
        f.compare(
            &format!(
                "{} on {}: {key} after writes through {}",
                store.driver,
                f.site.name,
                writer.container()
            ),
            image,
            tree,
        );
    }
    // ...the objects...
    assert_same(
        &format!("{} on {}: objects/ after writes", store.driver, f.site.name),
        &objects_before,
        &snapshot(&objects),
    );
    // ...and the layers, which still export the tars they came from.
    let scratch = store.cs.dir.path().join("export.tar");
    for tars in [&writer.tars, &neighbour.tars, &layered.tars] {
        for i in 0..tars.len() {
            let layer = &layers[&tars[..=i]];
            store.run(&["diff", "-u", "-f", scratch.to_str().unwrap(), layer]);
            assert_eq!(
                common::sha256_file(&scratch).0,
                f.digests[&tars[i]],
                "{} on {}: layer of {} exports another tar after writes",
                store.driver,
                f.site.name,
                tars[i].display()
            );
        }
    }
    fs::remove_file(&scratch).unwrap();
    eprintln!(
        "{} on {}: writes, truncations and chmods through {} changed nothing else",
        store.driver,
        f.site.name,
        writer.container()
    );
}

/// Mounts the six squashed images' containers; returns the mounts and the
/// bytes that took (materialized directories and objects).
fn mount_squashed(images: &[Image], store: &Store) -> (HashMap<String, PathBuf>, u64) {
    let before = used_bytes(&store.graph());
    let mut mounts = HashMap::new();
    for image in images.iter().filter(|i| i.squashed()) {
        let path = store.mount(&[&image.container()]);
        mounts.insert(image.container(), path);
    }
    let after = used_bytes(&store.graph());
    (mounts, after - before)
}

/// Prints how long each step of a site's run took.
struct Laps {
    site: &'static str,
    started: Instant,
    last: Instant,
}

impl Laps {
    fn new(site: &'static str) -> Laps {
        let now = Instant::now();
        Laps {
            site,
            started: now,
            last: now,
        }
    }

    fn lap(&mut self, what: &str) {
        let now = Instant::now();
        eprintln!(
            "{}: {what}: {:.1}s (at {:.1}s)",
            self.site,
            (now - self.last).as_secs_f64(),
            (now - self.started).as_secs_f64()
        );
        self.last = now;
    }
}

fn run_site(site: &Site, tars: &Path) {
    let mut laps = Laps::new(site.name);
    let images = images(tars);
    let overlay = Store::new(site, "overlay");
    let layers = overlay.populate(&images);
    laps.lap("overlay store populated");
    let (mounts, materialized) = mount_squashed(&images, &overlay);
    laps.lap("six squashed containers mounted");

    // The six squashed trees by tar -x: the space baseline, and with the
    // layered trees, what every mount must equal.
    let expected_root = site.root.join("expected");
    fs::create_dir(&expected_root).unwrap();
    let squashed: Vec<&Image> = images.iter().filter(|i| i.squashed()).collect();
    let layered: Vec<&Image> = images.iter().filter(|i| !i.squashed()).collect();
    // Any directory time from here on is the extraction's, not a tar's.
    let extraction_began = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let before = used_bytes(&expected_root);
    par_map(squashed.len(), |i| {
        extract_image(squashed[i], &expected_root.join(&squashed[i].name), None)
    });
    let baseline = used_bytes(&expected_root) - before;
    laps.lap("six squashed tars extracted");
    let ratio = materialized as f64 / baseline as f64;
    eprintln!(
        "space on {}: six squashed Debian images materialized (overlay) take {materialized} bytes \
         ({:.1} MB) against {baseline} bytes ({:.1} MB) for six tar -x trees: {ratio:.3}x \
         (bound {}x)",
        site.name,
        materialized as f64 / 1e6,
        baseline as f64 / 1e6,
        site.bound
    );
    assert!(
        ratio <= site.bound,
        "{}: materialized images take {ratio:.3}x the space of tar -x, more than {}x",
        site.name,
        site.bound
    );
    par_map(layered.len(), |i| {
        let base = squashed
            .iter()
            .find(|s| s.tars[0] == layered[i].tars[0])
            .map(|s| expected_root.join(&s.name));
        extract_image(
            layered[i],
            &expected_root.join(&layered[i].name),
            base.as_deref(),
        )
    });
    laps.lap("layered trees extracted");
    let dirs: Vec<PathBuf> = images.iter().map(|i| expected_root.join(&i.name)).collect();
    let dir_refs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    let trees = snapshots(&dir_refs);
    let expected: HashMap<String, Tree> =
        images.iter().map(|i| i.name.clone()).zip(trees).collect();
    let mut untimed = HashMap::new();
    let mut counts = Vec::new();
    for image in &images {
        let dirs: HashSet<PathBuf> = expected[&image.name]
            .iter()
            .filter(|(_, n)| n.kind == "dir" && n.mtime.0 >= extraction_began)
            .map(|(p, _)| p.clone())
            .collect();
        counts.push(format!("{} {}", image.name, dirs.len()));
        assert!(
            dirs.is_empty() || !image.squashed(),
            "{}: tar -x left directories without their times: {dirs:?}",
            image.name
        );
        untimed.insert(image.name.clone(), dirs);
    }
    eprintln!(
        "{}: directories whose time no tar holds (compared but for times): {}",
        site.name,
        counts.join(", ")
    );
    let mut digest_tars: Vec<PathBuf> = Vec::new();
    for name in [WRITER, NEIGHBOUR, LAYERED_TWIN] {
        for tar in &images.iter().find(|i| i.name == name).unwrap().tars {
            if !digest_tars.contains(tar) {
                digest_tars.push(tar.clone());
            }
        }
    }
    let digests: HashMap<PathBuf, String> = digest_tars
        .iter()
        .cloned()
        .zip(par_map(digest_tars.len(), |i| {
            common::sha256_file(&digest_tars[i]).0
        }))
        .collect();
    let f = Fixture {
        site,
        images,
        expected,
        untimed,
        digests,
    };
    laps.lap("expected trees snapshotted, tars hashed");

    // overlay
    let mounts = check_mounts(&f, &overlay, mounts);
    laps.lap("overlay mounts compared");
    check_isolation(&f, &overlay, &layers, &mounts);
    laps.lap("overlay isolation checked");
    let mut shutdown = overlay.cs.command();
    shutdown.args(["--storage-driver", "overlay", "shutdown", "-f"]);
    // The mounts are unmounted, and reported as upstream's shutdown does.
    common::expect_status(&common::run_command(shutdown, None), &["shutdown", "-f"], 1);
    let table = fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !table.contains(overlay.cs.dir.path().to_str().unwrap()),
        "shutdown -f left mounts: {table}"
    );
    drop(overlay);
    laps.lap("overlay store removed");

    // vfs, in a store of its own on the same filesystem.
    let vfs = Store::new(site, "vfs");
    let layers = vfs.populate(&f.images);
    laps.lap("vfs store populated");
    let (mounts, vfs_bytes) = mount_squashed(&f.images, &vfs);
    eprintln!(
        "space on {}: the six squashed images' vfs container trees take {vfs_bytes} bytes \
         ({:.1} MB): {:.3}x of tar -x",
        site.name,
        vfs_bytes as f64 / 1e6,
        vfs_bytes as f64 / baseline as f64
    );
    let mounts = check_mounts(&f, &vfs, mounts);
    laps.lap("vfs mounts compared");
    check_isolation(&f, &vfs, &layers, &mounts);
    laps.lap("vfs isolation checked");
    drop(vfs);
    laps.lap("vfs store removed");
}

/// Runs every check on a fresh loop filesystem of `kind`.
fn run_on(kind: FsKind, bound: f64) {
    let Some(tars) = common::debian_tars() else {
        return;
    };
    if !common::need_root("loop filesystems and overlay mounts") {
        return;
    }
    let Some(loop_fs) = LoopFs::mount(kind) else {
        return;
    };
    let site = Site {
        name: kind.name(),
        root: loop_fs.root(),
        kind: loop_fs.kind,
        bound,
    };
    run_site(&site, &tars);
}

#[test]
fn debian_mounts_on_xfs_with_reflinks_equal_tar_x_and_share_space() {
    run_on(FsKind::Xfs, 0.45);
}

#[test]
fn debian_mounts_on_ext4_equal_tar_x_and_share_space() {
    run_on(FsKind::Ext4, 0.5);
}
