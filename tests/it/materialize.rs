//! The materializer on real filesystems: a built tree equals `tar -x` of
//! the same layer, whiteouts and opaque directories come out right in both
//! formats, hostile symlinks never lead a write outside the tree, files are
//! reflinked on XFS and hardlinked only where asked, and writes through one
//! tree never reach an object or another tree.

use crate::common;

use common::loopfs::Xfs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::tar::{Meta, TarBuilder};
use common::tree::{differences, extract, snapshot};
use containers_storage::manifest::{import_tar, LayerManifest};
use containers_storage::materialize::{BuildOptions, Format, Materializer};
use containers_storage::{ChunkPool, Error};

struct Fixture {
    dir: tempfile::TempDir,
    pool: ChunkPool,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::under(&std::env::temp_dir())
    }

    fn under(base: &Path) -> Fixture {
        let dir = tempfile::tempdir_in(base).unwrap();
        let pool = ChunkPool::open(&dir.path().join("chunks"), true).unwrap();
        Fixture { dir, pool }
    }

    fn import(&self, tar: &[u8]) -> LayerManifest {
        import_tar(tar, &self.pool, &()).unwrap().manifest
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn build(
        &self,
        layers: &[&LayerManifest],
        name: &str,
        format: Format,
        hardlinks: bool,
    ) -> containers_storage::Result<PathBuf> {
        let m = Materializer::new(&self.pool, &self.path("objects")).unwrap();
        let target = self.path(name);
        m.build(
            layers,
            &target,
            BuildOptions {
                format,
                hardlinks,
                durable: true,
            },
        )?;
        Ok(target)
    }
}

const OVERLAY: Format = Format::Overlay {
    xattr_prefix: "trusted.overlay.",
};

/// Every entry kind except whiteouts, so `tar -x` gives the same tree.
fn plain_kinds() -> Vec<u8> {
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.dir(
        "etc/",
        &Meta {
            mode: 0o755,
            ..Meta::default()
        },
    );
    t.file("etc/hostname", &m, b"box\n");
    t.file("etc/empty", &m, b"");
    t.file(
        "etc/same-a",
        &Meta {
            mode: 0o600,
            uid: 7,
            gid: 8,
            ..Meta::default()
        },
        b"shared content",
    );
    t.file(
        "etc/same-b",
        &Meta {
            mode: 0o640,
            ..Meta::default()
        },
        b"shared content",
    );
    t.file(
        "bin-tool",
        &Meta {
            mode: 0o4755,
            uid: 1000,
            gid: 100,
            ..Meta::default()
        },
        &common::random_bytes(1, 300_000),
    );
    t.symlink("link", "bin-tool", &m);
    t.hardlink("hard", "etc/hostname", &m);
    t.char_dev(
        "dev-null",
        1,
        3,
        &Meta {
            mode: 0o666,
            ..Meta::default()
        },
    );
    t.block_dev(
        "dev-sda",
        8,
        0,
        &Meta {
            mode: 0o660,
            ..Meta::default()
        },
    );
    t.fifo("pipe", &m);
    t.pax_xattr_file(
        "caps",
        &[("user.note", b"hi"), ("trusted.x", b"y")],
        "1700000000.123456789",
        &m,
        b"with xattrs",
    );
    t.dir(
        &"d".repeat(99),
        &Meta {
            mode: 0o750,
            ..Meta::default()
        },
    );
    t.pax_long_file(&format!("{}/file", "d".repeat(99)), &m, b"long via pax");
    t.finish()
}

#[test]
fn a_flattened_tree_equals_tar_x_with_and_without_hardlinks() {
    if !common::need_root("comparing owners and device nodes") {
        return;
    }
    let f = Fixture::new();
    let tar = plain_kinds();
    let m = f.import(&tar);
    std::fs::write(f.path("layer.tar"), &tar).unwrap();
    extract(&f.path("layer.tar"), &f.path("expected"));
    let expected = snapshot(&f.path("expected"));
    for (name, hardlinks) in [("copies", false), ("links", true)] {
        let tree = f.build(&[&m], name, Format::Flattened, hardlinks).unwrap();
        let got = snapshot(&tree);
        let diff = differences(&expected, &got);
        assert!(diff.is_empty(), "{name}:\n{}", diff.join("\n"));
    }
    // Hardlinked trees share inodes with objects; copies do not.
    let linked = std::fs::metadata(f.path("links/bin-tool")).unwrap();
    let copied = std::fs::metadata(f.path("copies/bin-tool")).unwrap();
    assert!(
        linked.nlink() >= 2,
        "hardlinked file has {} links",
        linked.nlink()
    );
    assert_eq!(copied.nlink(), 1);
    // Empty files are never hardlinked.
    assert_eq!(
        std::fs::metadata(f.path("links/etc/empty"))
            .unwrap()
            .nlink(),
        1
    );
    // Same content with different metadata: different objects.
    let a = std::fs::metadata(f.path("links/etc/same-a")).unwrap();
    let b = std::fs::metadata(f.path("links/etc/same-b")).unwrap();
    assert_ne!(a.ino(), b.ino());
}

fn layered() -> (Vec<u8>, Vec<u8>) {
    let m = Meta::default();
    let d = Meta {
        mode: 0o755,
        ..Meta::default()
    };
    let mut base = TarBuilder::new();
    base.dir("keep/", &d);
    base.file("keep/a", &m, b"a");
    base.file("gone", &m, b"gone");
    base.dir("opq/", &d);
    base.file("opq/old", &m, b"old");
    let mut upper = TarBuilder::new();
    upper.whiteout("", "gone");
    upper.dir("opq/", &d);
    upper.opaque("opq");
    upper.file("opq/new", &m, b"new");
    upper.file("keep/b", &m, b"b");
    (base.finish(), upper.finish())
}

#[test]
fn a_flattened_chain_applies_whiteouts_and_opaque_directories() {
    let f = Fixture::new();
    let (base, upper) = layered();
    let (b, u) = (f.import(&base), f.import(&upper));
    let tree = f
        .build(&[&b, &u], "tree", Format::Flattened, false)
        .unwrap();
    let got: Vec<String> = snapshot(&tree)
        .keys()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(got, ["keep", "keep/a", "keep/b", "opq", "opq/new"]);
}

#[test]
fn the_overlay_format_keeps_whiteouts_as_devices_and_marks_opaque_directories() {
    if !common::need_root("creating whiteout devices and trusted xattrs") {
        return;
    }
    let f = Fixture::new();
    let (_, upper) = layered();
    let u = f.import(&upper);
    let tree = f.build(&[&u], "diff", OVERLAY, true).unwrap();
    let whiteout = std::fs::symlink_metadata(tree.join("gone")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &whiteout.file_type()
    ));
    assert_eq!(whiteout.rdev(), 0);
    let x = common::tree::xattrs(&tree.join("opq"));
    assert_eq!(
        x.get("trusted.overlay.opaque").map(Vec::as_slice),
        Some(&b"y"[..])
    );
    assert!(tree.join("opq/new").exists() && !tree.join(".wh.gone").exists());
}

#[test]
fn hostile_symlinks_never_lead_writes_outside_the_tree() {
    let f = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    let m = Meta::default();
    let abs = outside.path().to_str().unwrap().to_string();
    let depth = "../".repeat(40);
    // Each case's entries, one tar each, in tar order.
    let part = |build: &dyn Fn(&mut TarBuilder)| {
        let mut t = TarBuilder::new();
        build(&mut t);
        t
    };
    let cases: Vec<(&str, Vec<TarBuilder>)> = vec![
        (
            "absolute symlink to the victim's directory",
            vec![
                part(&|t| t.gnu_long_symlink("a", &abs, &m)),
                part(&|t| t.file("a/victim", &m, b"pwned")),
            ],
        ),
        (
            "symlink to /",
            vec![
                part(&|t| t.symlink("a", "/", &m)),
                part(&|t| t.pax_long_file(&format!("a{}/victim", abs), &m, b"pwned")),
            ],
        ),
        (
            "relative ../../.. symlink",
            vec![
                part(&|t| t.gnu_long_symlink("up", &depth, &m)),
                part(&|t| t.pax_long_file(&format!("up{}/victim", abs), &m, b"pwned")),
            ],
        ),
        (
            "hardlink through a symlink",
            vec![
                part(&|t| t.gnu_long_symlink("l", &abs, &m)),
                part(&|t| t.hardlink("x", "l/victim", &m)),
            ],
        ),
    ];
    // An entry as an import that did not check targets would give it.
    let entries_of = |p: &TarBuilder| {
        let mut t = TarBuilder::new();
        t.out = p.out.clone();
        match import_tar(&t.finish()[..], &f.pool, &()) {
            Ok(imported) => imported.manifest.entries,
            Err(_) => {
                // A hard link alone has no target: import it after one
                // (a file where the case has its symlink), keep the link.
                let mut t = TarBuilder::new();
                t.file("l/victim", &m, b"");
                t.out.extend_from_slice(&p.out);
                vec![f.import(&t.finish()).entries.pop().unwrap()]
            }
        }
    };
    std::fs::write(&victim, b"original").unwrap();
    for (what, parts) in cases {
        // The import refuses such a layer (it could never be mounted),
        // naming the entry ...
        let mut whole = TarBuilder::new();
        for p in &parts {
            whole.out.extend_from_slice(&p.out);
        }
        let err = import_tar(&whole.finish()[..], &f.pool, &())
            .err()
            .unwrap_or_else(|| panic!("{what}: imported"))
            .to_string();
        assert!(err.contains("tar offset"), "{what}: {err}");
        // ... and a manifest that holds it anyway (from an import before
        // that check, or edited) still never leads a write outside.
        let mut layer = f.import(&TarBuilder::new().finish());
        for p in &parts {
            layer.entries.extend(entries_of(p));
        }
        for format in [Format::Flattened, OVERLAY] {
            // The order of its entries is refused before anything is made.
            let err = f.build(&[&layer], "t", format, false).unwrap_err();
            assert!(
                matches!(&err, Error::NotExtractable { what, .. } if what.contains("symlink")),
                "{what}: {err}"
            );
            assert!(
                !f.path("t").exists(),
                "{what}: a failed build left its target"
            );
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"original", "{what}");
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            1,
            "{what}"
        );
    }
    // A lower layer's `etc -> /etc` and an upper layer's `etc/x`.
    let mut lower = TarBuilder::new();
    lower.gnu_long_symlink("etc", &abs, &m);
    let mut upper = TarBuilder::new();
    upper.file("etc/victim", &m, b"pwned");
    let (l, u) = (f.import(&lower.finish()), f.import(&upper.finish()));
    // Each layer alone is fine: the walk into `etc` refuses.
    let err = f
        .build(&[&l, &u], "t", Format::Flattened, false)
        .unwrap_err();
    assert!(
        matches!(&err, Error::OutsideTree { path, .. } if path == "etc"),
        "{err}"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"original");
}

#[test]
fn on_xfs_files_are_reflinks_and_writes_stay_in_their_tree() {
    if !common::need_root("mounting a loop XFS") {
        return;
    }
    let Some(xfs) = Xfs::mount(600 << 20) else {
        return;
    };
    let f = Fixture::under(&xfs.root());
    let tar = plain_kinds();
    let m = f.import(&tar);
    let one = f.build(&[&m], "one", Format::Flattened, false).unwrap();
    let two = f.build(&[&m], "two", Format::Flattened, false).unwrap();
    let stats = Materializer::new(&f.pool, &f.path("objects"))
        .unwrap()
        .build(
            &[&m],
            &f.path("three"),
            BuildOptions {
                format: Format::Flattened,
                hardlinks: false,
                durable: true,
            },
        )
        .unwrap();
    assert!(stats.reflinked > 0 && stats.copied == 0, "{stats:?}");
    let before = std::fs::read(two.join("bin-tool")).unwrap();
    // Write, truncate and chmod through tree one.
    std::fs::write(one.join("bin-tool"), b"changed").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(one.join("etc/hostname"))
        .unwrap()
        .set_len(1)
        .unwrap();
    std::fs::set_permissions(
        one.join("caps"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    assert_eq!(std::fs::read(two.join("bin-tool")).unwrap(), before);
    assert_eq!(std::fs::read(two.join("etc/hostname")).unwrap(), b"box\n");
    assert_eq!(
        std::fs::metadata(two.join("caps")).unwrap().mode() & 0o777,
        0o644
    );
    for object in walk_files(&f.path("objects")) {
        let data = std::fs::read(&object).unwrap();
        assert_ne!(data, b"changed", "{} changed", object.display());
    }
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn debian_images_materialize_like_tar_x() {
    let Some(tars) = common::debian_tars() else {
        return;
    };
    if !common::need_root("comparing owners of a Debian tree") {
        return;
    }
    let f = Fixture::new();
    let full = tars.join("bookworm-curl.full.tar");
    let m = f.import(&std::fs::read(&full).unwrap());
    extract(&full, &f.path("expected"));
    let tree = f.build(&[&m], "tree", Format::Flattened, true).unwrap();
    let diff = differences(&snapshot(&f.path("expected")), &snapshot(&tree));
    assert!(diff.is_empty(), "{}", diff.join("\n"));
    // Base + the slim diff (whiteouts) equals the slim tree the dataset kept.
    let slim_tree = tars.join("../trees/bookworm-slim");
    if slim_tree.is_dir() {
        let base = f.import(&std::fs::read(tars.join("bookworm-base.tar")).unwrap());
        let slim = f.import(&std::fs::read(tars.join("bookworm-slim.diff.tar")).unwrap());
        let tree = f
            .build(&[&base, &slim], "slim", Format::Flattened, true)
            .unwrap();
        let got: Vec<PathBuf> = snapshot(&tree).into_keys().collect();
        let want: Vec<PathBuf> = snapshot(&slim_tree).into_keys().collect();
        assert_eq!(got.len(), want.len());
        assert_eq!(got, want);
    }
}

/// A manifest from before overlay xattrs were dropped at import may hold
/// them: the materializer still never writes them.
#[test]
fn overlay_xattrs_in_an_older_manifest_are_not_written() {
    if !common::need_root("setting trusted xattrs") {
        return;
    }
    let f = Fixture::new();
    let mut t = TarBuilder::new();
    t.dir("d/", &Meta::default());
    t.file("d/f", &Meta::default(), b"content");
    let mut m = f.import(&t.finish());
    for e in &mut m.entries {
        for (name, value) in [
            ("trusted.overlay.opaque", &b"y"[..]),
            ("trusted.overlay.redirect", b"/etc"),
            ("user.overlay.metacopy", b""),
            ("user.note", b"kept"),
        ] {
            e.xattrs.push(containers_storage::manifest::Xattr {
                name: name.into(),
                value: value.to_vec(),
            });
        }
    }
    for (name, format) in [("flat", Format::Flattened), ("over", OVERLAY)] {
        let tree = f.build(&[&m], name, format, false).unwrap();
        for path in [tree.join("d"), tree.join("d/f")] {
            let names: Vec<String> = common::tree::xattrs(&path).into_keys().collect();
            assert_eq!(names, ["user.note"], "{name}: {}", path.display());
        }
    }
}
