//! tar-split (upstream's `<drv>-layers/<id>.tar-split.gz`) against the
//! real Go `containers-storage` CLI: for a variety of tars, the Go CLI
//! imports the tar (writing its tar-split), and
//!
//! - ours, written from the tar stream and from the imported manifest,
//!   equals Go's line for line after gunzip;
//! - our assembler gives back the exact tar from Go's tar-split and Go's
//!   layer directory;
//! - Go's `diff` gives back the exact tar from our tar-split put in place
//!   of its own.
//!
//! The tests skip, saying why, where `/usr/bin/containers-storage` is not
//! installed (Debian package `containers-storage`). The reader is also
//! fed mutated tar-splits and hostile names (never a panic, never a read
//! outside the directory).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;

use crate::common;
use common::tar::{every_kind, Meta, TarBuilder};
use containers_storage::manifest::tar_split::{
    self, assemble, disassemble, write_tar_split, ContentCrcs, DirectoryFiles, TarSplitReader,
    TarSplitRecord,
};
use containers_storage::manifest::{import_tar, LayerManifest};
use containers_storage::{ChunkPool, Error};

const GO_CLI: &str = "/usr/bin/containers-storage";

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A vfs store the Go CLI owns.
struct GoStore {
    dir: tempfile::TempDir,
}

impl GoStore {
    /// `None` (saying why) where the Go CLI is not installed.
    fn new() -> Option<GoStore> {
        if !common::need_tool(
            "comparing with the Go CLI",
            Path::new(GO_CLI).exists(),
            "the Debian package containers-storage",
        ) {
            return None;
        }
        if !common::need_root("importing layers with the Go CLI") {
            return None;
        }
        Some(GoStore {
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(GO_CLI);
        cmd.arg("--graph")
            .arg(self.dir.path().join("graph"))
            .arg("--run")
            .arg(self.dir.path().join("run"))
            .arg("--storage-driver")
            .arg("vfs")
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }

    /// Imports `tar` with Go; its layer ID, or Go's error.
    fn import(&self, tar: &[u8]) -> Result<String, String> {
        let path = self.dir.path().join("layer.tar");
        std::fs::write(&path, tar).unwrap();
        let out = self.run(&["import-layer", "-f", path.to_str().unwrap()]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }

    fn tar_split_path(&self, id: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("graph/vfs-layers/{id}.tar-split.gz"))
    }

    fn layer_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("graph/vfs/dir/{id}"))
    }

    /// Go's `diff` of the layer: the tar it gives back.
    fn diff(&self, id: &str) -> Vec<u8> {
        let out = self.run(&["diff", "-u", id]);
        assert!(
            out.status.success(),
            "Go diff failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// Imports `tar` into a fresh pool: the manifest and its CRC-64s.
fn import(tar: &[u8]) -> (tempfile::TempDir, ChunkPool, LayerManifest, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let pool = ChunkPool::open(dir.path(), true).unwrap();
    let imported = import_tar(tar, &pool, &()).unwrap();
    (dir, pool, imported.manifest, imported.crc64)
}

/// The JSON lines of our tar-split written from the stream.
fn ours_from_stream(tar: &[u8]) -> Vec<u8> {
    let mut gz = Vec::new();
    let summary = disassemble(tar, &mut gz).unwrap();
    assert_eq!(summary.tar_size, tar.len() as u64);
    gunzip(&gz)
}

/// The JSON lines of our tar-split written from the manifest, with the
/// recorded CRC-64s and with CRC-64s read from the pool (both the same).
fn ours_from_manifest(tar: &[u8]) -> Vec<u8> {
    let (_dir, pool, manifest, crc64) = import(tar);
    let mut recorded = Vec::new();
    write_tar_split(&manifest, ContentCrcs::Recorded(&crc64), &mut recorded).unwrap();
    let mut from_pool = Vec::new();
    write_tar_split(&manifest, ContentCrcs::FromPool(&pool), &mut from_pool).unwrap();
    let recorded = gunzip(&recorded);
    assert_eq!(
        recorded,
        gunzip(&from_pool),
        "recorded and pool CRC-64s differ"
    );
    recorded
}

fn show(lines: &[u8]) -> String {
    String::from_utf8_lossy(lines)
        .lines()
        .map(|l| {
            if l.len() > 160 {
                format!("{}...{}", &l[..80], &l[l.len() - 60..])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_same_lines(what: &str, ours: &[u8], go: &[u8]) {
    if ours != go {
        panic!(
            "{what}: our tar-split differs from Go's\n--- ours\n{}\n--- Go\n{}",
            show(ours),
            show(go)
        );
    }
}

/// The whole comparison for one tar that both Go and our importer take.
fn compare_with_go(what: &str, tar: &[u8]) {
    let from_stream = ours_from_stream(tar);
    assert_same_lines(what, &ours_from_manifest(tar), &from_stream);
    let Some(go) = GoStore::new() else { return };
    let id = go
        .import(tar)
        .unwrap_or_else(|e| panic!("{what}: Go refused: {e}"));
    let go_gz = std::fs::read(go.tar_split_path(&id)).unwrap();
    assert_same_lines(what, &from_stream, &gunzip(&go_gz));

    // Our assembler on Go's tar-split and Go's directory.
    let mut files = DirectoryFiles::open(&go.layer_dir(&id)).unwrap();
    let mut out = Vec::new();
    let assembled = assemble(&go_gz[..], &mut files, &mut out).unwrap();
    assert!(out == tar, "{what}: assembled from Go's tar-split differs");
    assert_eq!(assembled.size, tar.len() as u64);
    assert_eq!(assembled.digest, common::sha256(tar));

    // Go's diff on our tar-split (written from the manifest).
    let (_dir, _pool, manifest, crc64) = import(tar);
    let mut ours = Vec::new();
    write_tar_split(&manifest, ContentCrcs::Recorded(&crc64), &mut ours).unwrap();
    std::fs::write(go.tar_split_path(&id), &ours).unwrap();
    assert!(
        go.diff(&id) == tar,
        "{what}: Go's diff from our tar-split differs"
    );
}

/// Only the stream side, for tars our importer refuses but Go takes.
fn compare_stream_with_go(what: &str, tar: &[u8]) {
    let Some(go) = GoStore::new() else { return };
    let id = go
        .import(tar)
        .unwrap_or_else(|e| panic!("{what}: Go refused: {e}"));
    let go_gz = std::fs::read(go.tar_split_path(&id)).unwrap();
    assert_same_lines(what, &ours_from_stream(tar), &gunzip(&go_gz));
    let mut files = DirectoryFiles::open(&go.layer_dir(&id)).unwrap();
    let mut out = Vec::new();
    assemble(&go_gz[..], &mut files, &mut out).unwrap();
    assert!(out == tar, "{what}: assembled from Go's tar-split differs");
}

/// A tar made by GNU tar from a tree, in `format`.
fn gnu_tar(tree: &Path, format: &str, extra: &[&str]) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-c")
        .arg(format!("--format={format}"))
        .args(extra)
        .arg("-C")
        .arg(tree)
        .arg(".")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A tree with long names, hardlinks, symlinks, odd characters in names
/// and a file spanning several chunks.
fn odd_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let deep = root.join("d".repeat(90)).join("e".repeat(90));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f".repeat(100)), b"deep").unwrap();
    std::fs::write(root.join("big"), common::random_bytes(7, 3 << 20)).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::hard_link(root.join("big"), root.join("big-again")).unwrap();
    std::os::unix::fs::symlink("x".repeat(120), root.join("long-link")).unwrap();
    for name in [
        "quote\"back\\slash",
        "html<a>&b",
        "tab\there",
        "ctl\u{1}\u{8}\u{c}",
        "line\u{2028}sep",
        "é€😀",
    ] {
        std::fs::write(root.join(name), name.as_bytes()).unwrap();
    }
    use std::os::unix::ffi::OsStrExt;
    let raw = std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9");
    std::fs::write(root.join(raw), b"not utf-8").unwrap();
    dir
}

#[test]
fn every_kind_matches_go() {
    compare_with_go("every kind", &every_kind());
}

#[test]
fn gnu_tar_formats_match_go() {
    let tree = odd_tree();
    for format in ["gnu", "posix", "ustar", "v7", "oldgnu"] {
        // ustar and v7 cannot hold the long names.
        let extra: &[&str] = match format {
            "ustar" | "v7" => &["--exclude=./ddd*", "--exclude=./long-link"],
            _ => &[],
        };
        let tar = gnu_tar(tree.path(), format, extra);
        compare_with_go(&format!("GNU tar --format={format}"), &tar);
    }
}

/// PAX records of every kind Go's reader looks at, on several entries.
#[test]
fn pax_records_match_go() {
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.pax(&[
        ("path", b"pax/renamed"),
        ("size", b"5"),
        ("uid", b"123456789"),
        ("gid", b"42"),
        ("uname", b"someone"),
        ("mtime", b"1700000000.5"),
        ("atime", b"-12.25"),
        ("ctime", b"1"),
        ("SCHILY.xattr.user.a", b"1"),
        ("SCHILY.xattr.user.b", b"\x00\xff"),
        ("comment", b"<&>"),
    ]);
    t.header(b"short", b'0', 0, b"", &m, (0, 0));
    t.data(b"12345");
    t.pax(&[("linkpath", b"pax/renamed")]);
    t.hardlink("link-to-renamed", "ignored", &m);
    t.file("after", &m, b"x");
    compare_with_go("PAX records", &t.finish());
}

#[test]
fn global_pax_header_and_absolute_names_match_go() {
    let m = Meta::default();
    let mut t = TarBuilder::new();
    let body = b"18 comment=global\n";
    t.header(
        b"pax_global_header",
        b'g',
        body.len() as u64,
        b"",
        &m,
        (0, 0),
    );
    t.data(body);
    t.dir("/abs/", &m);
    t.file("/abs/file", &m, b"absolute");
    t.file("./rel/../plain", &m, b"dots");
    compare_with_go("global PAX header", &t.finish_unpadded());
}

#[test]
fn trailing_bytes_match_go() {
    let mut tar = every_kind();
    tar.extend_from_slice(&b"garbage!".repeat(100));
    compare_with_go("trailing garbage", &tar);
    // One zero block, then the end of the stream.
    let mut t = TarBuilder::new();
    t.file("a", &Meta::default(), b"abc");
    let mut tar = t.finish_unpadded();
    tar.truncate(tar.len() - 512);
    compare_with_go("one zero block", &tar);
}

/// No end-of-archive marker: Go takes it, our importer refuses it; our
/// writer from the stream still matches Go.
#[test]
fn missing_end_of_archive_matches_go() {
    let mut t = TarBuilder::new();
    t.file("a", &Meta::default(), b"abc");
    t.dir("d/", &Meta::default());
    let mut tar = t.finish_unpadded();
    tar.truncate(tar.len() - 1024);
    compare_stream_with_go("no end-of-archive", &tar);
}

/// Where Go's reader or packer refuses the tar, so do we.
#[test]
fn refuses_what_go_refuses() {
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.dir("etc/", &m);
    t.file("etc/a", &m, b"1");
    t.dir("./etc", &m);
    let twice = t.finish_unpadded();
    let err = disassemble(&twice[..], Vec::new()).unwrap_err();
    assert!(matches!(err, Error::TarSplitUnsupported(_)), "{err}");
    assert!(err.to_string().contains("given twice"), "{err}");
    // Our importer takes it; the writer from the manifest refuses too.
    let (_dir, _pool, manifest, crc64) = import(&twice);
    let err = write_tar_split(&manifest, ContentCrcs::Recorded(&crc64), Vec::new()).unwrap_err();
    assert!(matches!(err, Error::TarSplitUnsupported(_)), "{err}");

    // A sparse file (GNU tar --sparse): Go's tar-split would not give it
    // back (it records the expanded content).
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(dir.path().join("holes")).unwrap();
    f.set_len(1 << 20).unwrap();
    let sparse = gnu_tar(dir.path(), "gnu", &["--sparse"]);
    let err = disassemble(&sparse[..], Vec::new()).unwrap_err();
    assert!(err.to_string().contains("sparse"), "{err}");

    if let Some(go) = GoStore::new() {
        let err = go.import(&twice).unwrap_err();
        assert!(err.contains("duplicates of file paths"), "{err}");
    }
}

// ---------------------------------------------------------------------
// The reader on hostile input.

fn tar_split_of(records: &[TarSplitRecord]) -> Vec<u8> {
    let mut lines = String::new();
    for (i, r) in records.iter().enumerate() {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        lines += &match r {
            TarSplitRecord::Segment(p) => {
                format!("{{\"type\":2,\"payload\":\"{}\",\"position\":{i}}}\n", b64(p))
            }
            TarSplitRecord::File { name, size, crc64 } => format!(
                "{{\"type\":1,\"name_raw\":\"{}\",\"size\":{size},\"payload\":{},\"position\":{i}}}\n",
                b64(name),
                crc64.map_or("null".into(), |c| format!("\"{}\"", b64(&c.to_be_bytes())))
            ),
        };
    }
    gzip(lines.as_bytes())
}

/// A directory with a file, a symlink out of it, a FIFO, and a secret
/// beside it.
fn hostile_dir() -> (tempfile::TempDir, PathBuf) {
    let top = tempfile::tempdir().unwrap();
    std::fs::write(top.path().join("secret"), b"secret").unwrap();
    let layer = top.path().join("layer");
    std::fs::create_dir(&layer).unwrap();
    std::fs::write(layer.join("file"), b"content").unwrap();
    std::fs::create_dir(layer.join("sub")).unwrap();
    std::os::unix::fs::symlink("../secret", layer.join("out")).unwrap();
    std::os::unix::fs::symlink("/", layer.join("root")).unwrap();
    std::os::unix::fs::symlink("file", layer.join("inside")).unwrap();
    nix::unistd::mkfifo(&layer.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    (top, layer)
}

fn crc_of(data: &[u8]) -> Option<u64> {
    Some(tar_split::Crc64::of(data))
}

#[test]
fn names_never_leave_the_directory() {
    let (_top, layer) = hostile_dir();
    let secret = crc_of(b"secret");
    for (name, what) in [
        (&b"../secret"[..], "escapes"),
        (b"sub/../../secret", "escapes"),
        (b"out", "outside"),
        (b"root/etc/passwd", "outside"),
        (b"fifo", "not a regular file"),
        (b"sub", "not a regular file"),
        (b"/", "directory itself"),
        (b"missing", "No such file"),
    ] {
        let ts = tar_split_of(&[TarSplitRecord::File {
            name: name.to_vec(),
            size: 6,
            crc64: secret,
        }]);
        let mut files = DirectoryFiles::open(&layer).unwrap();
        let err = assemble(&ts[..], &mut files, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains(what),
            "{}: {err}",
            String::from_utf8_lossy(name)
        );
    }
    // Inside the directory, leading `/` and `..` that stay inside, and a
    // symlink that stays inside, resolve as Go resolves them.
    for name in [&b"/file"[..], b"sub/../file", b"./file", b"inside"] {
        let ts = tar_split_of(&[
            TarSplitRecord::Segment(b"head".to_vec()),
            TarSplitRecord::File {
                name: name.to_vec(),
                size: 7,
                crc64: crc_of(b"content"),
            },
        ]);
        let mut files = DirectoryFiles::open(&layer).unwrap();
        let mut out = Vec::new();
        assemble(&ts[..], &mut files, &mut out).unwrap();
        assert_eq!(out, b"headcontent");
    }
}

#[test]
fn a_changed_file_is_named() {
    let (_top, layer) = hostile_dir();
    for (size, crc, what) in [
        (7, crc_of(b"CONTENT"), "file integrity checksum failed"),
        (5, crc_of(b"conte"), "more than the 5 bytes"),
        (9, crc_of(b"content\n\n"), "holds 7 bytes"),
        (-1, None, "negative size -1"),
    ] {
        let ts = tar_split_of(&[TarSplitRecord::File {
            name: b"file".to_vec(),
            size,
            crc64: crc,
        }]);
        let mut files = DirectoryFiles::open(&layer).unwrap();
        let err = assemble(&ts[..], &mut files, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
        if size > 0 {
            assert!(matches!(err, Error::TarSplitMismatch { .. }), "{err}");
            assert!(err.to_string().contains("layer/file"), "{err}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Mutated tar-splits (bytes of the JSON flipped, cut or repeated)
    /// never panic: the reader and assembler give records, an error, or
    /// the tar.
    #[test]
    fn mutated_tar_splits_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<Option<usize>>(),
    ) {
        let (_top, layer) = hostile_dir();
        let mut gz = Vec::new();
        disassemble(&every_kind()[..], &mut gz).unwrap();
        let mut lines = gunzip(&gz);
        for (at, v) in flips {
            let n = lines.len();
            lines[at % n] ^= v | 1;
        }
        if let Some(cut) = cut {
            let n = lines.len();
            lines.truncate(cut % n);
        }
        let _ = TarSplitReader::new(&lines[..]).count();
        let mut files = DirectoryFiles::open(&layer).unwrap();
        let _ = assemble(&gzip(&lines)[..], &mut files, &mut Vec::new());
        // Mutated gzip bytes too.
        let mut gz2 = gz.clone();
        let n = gz2.len();
        gz2[n / 2] ^= 0x55;
        let _ = assemble(&gz2[..], &mut files, &mut Vec::new());
    }

    /// Mutated tars never panic the disassembler, and what it accepts
    /// describes the tar's size.
    #[test]
    fn mutated_tars_never_panic_the_disassembler(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut tar = every_kind();
        for (at, v) in flips {
            let n = tar.len();
            tar[at % n] ^= v | 1;
        }
        if let Ok(summary) = disassemble(&tar[..], Vec::new()) {
            prop_assert_eq!(summary.tar_size, tar.len() as u64);
        }
    }
}

// ---------------------------------------------------------------------
// Differential: vbatts/tar-split's own disassembler on mutated tars.

const GO_SOURCES: &str = "/usr/share/gocode/src/github.com/vbatts/tar-split/tar/asm";

/// Builds `tar_split/go_disassemble.go` once; `None` (saying why) where
/// Go or the tar-split sources are not installed.
fn go_disassembler() -> Option<&'static Path> {
    static BUILT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let present = Path::new(GO_SOURCES).exists()
                && Command::new("go").arg("version").output().is_ok();
            if !common::need_tool(
                "comparing with upstream's tar-split disassembler",
                present,
                "the Debian packages golang-go and golang-github-vbatts-tar-split-dev",
            ) {
                return None;
            }
            let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-disassemble");
            std::fs::create_dir_all(&out_dir).unwrap();
            let binary = out_dir.join("disassemble");
            let source =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/tar_split/go_disassemble.go");
            let out = Command::new("go")
                .arg("build")
                .arg("-o")
                .arg(&binary)
                .arg(&source)
                .env("GO111MODULE", "off")
                .env("GOPATH", "/usr/share/gocode")
                .env("GOPROXY", "off")
                .env("GOCACHE", out_dir.join("cache"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "go build: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(binary)
        })
        .as_deref()
}

/// Go's tar-split lines of `tar`, or Go's error. The tar is given as a
/// file, so Go reads trailing bytes in whole pieces as our writer does.
fn go_disassemble(binary: &Path, tar: &[u8]) -> Result<Vec<u8>, String> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), tar).unwrap();
    let out = Command::new(binary)
        .stdin(std::fs::File::open(file.path()).unwrap())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Refusals of ours that Go does not share, on purpose: Go's tar-split of
/// such a tar would not give it back.
fn deliberate(err: &Error) -> bool {
    let text = err.to_string();
    [
        "sparse file",
        "inside an entry's padding",
        "this build reads",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// Header blocks of `tar` (offsets of blocks whose checksum holds).
fn header_offsets(tar: &[u8]) -> Vec<usize> {
    (0..tar.len() / 512)
        .map(|i| i * 512)
        .filter(|&at| {
            let block = &tar[at..at + 512];
            let sum: u64 = block
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        b as u64
                    }
                })
                .sum();
            block.iter().any(|&b| b != 0)
                && std::str::from_utf8(&block[148..154]).ok().and_then(|s| {
                    u64::from_str_radix(s.trim_matches(|c| c == ' ' || c == '\0'), 8).ok()
                }) == Some(sum)
        })
        .collect()
}

/// Rewrites the checksum of the header at `at`.
fn fix_checksum(tar: &mut [u8], at: usize) {
    let block = &mut tar[at..at + 512];
    block[148..156].copy_from_slice(b"        ");
    let sum: u64 = block.iter().map(|&b| b as u64).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// A field of a header block to mutate, as (offset, length).
fn field_strategy() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        Just((0, 100)),   // name
        Just((124, 12)),  // size
        Just((156, 1)),   // typeflag
        Just((257, 8)),   // magic and version
        Just((329, 16)),  // device numbers
        Just((345, 155)), // prefix, GNU times
        Just((500, 12)),  // STAR trailer
        Just((512, 512)), // the block after (PAX data, content)
    ]
}

/// The base tars mutations start from.
fn base_tars() -> Vec<Vec<u8>> {
    let tree = odd_tree();
    let m = Meta::default();
    let mut pax = TarBuilder::new();
    pax.pax(&[("path", b"p/q"), ("size", b"3"), ("mtime", b"1.5")]);
    pax.header(b"short", b'0', 0, b"", &m, (0, 0));
    pax.data(b"abc");
    pax.file("z", &m, b"");
    vec![
        every_kind(),
        gnu_tar(tree.path(), "gnu", &["--exclude=./big*"]),
        gnu_tar(tree.path(), "posix", &["--exclude=./big*"]),
        pax.finish_unpadded(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// For tars mutated in their headers (checksums kept valid, so Go
    /// reads on), our disassembler agrees with vbatts/tar-split's: the
    /// same lines where Go takes the tar, a refusal where Go refuses
    /// (and only the deliberate refusals where Go takes it).
    #[test]
    fn disassembler_agrees_with_go_on_mutated_tars(
        base in 0usize..4,
        mutations in proptest::collection::vec(
            (any::<prop::sample::Index>(), field_strategy(), any::<usize>(), any::<u8>(), any::<bool>()),
            1..4,
        ),
        cut in proptest::option::weighted(0.15, any::<prop::sample::Index>()),
    ) {
        let Some(binary) = go_disassembler() else { return Ok(()) };
        static BASES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        let mut tar = BASES.get_or_init(base_tars)[base].clone();
        let headers = header_offsets(&tar);
        for (which, (offset, len), at, value, digit) in mutations {
            let header = headers[which.index(headers.len())];
            let pos = header + offset + at % len;
            if pos >= tar.len() {
                continue;
            }
            // Octal digits and NULs keep numeric fields parsing more often.
            tar[pos] = if digit { b"01234567\0 "[value as usize % 10] } else { value };
            fix_checksum(&mut tar, header);
        }
        if let Some(cut) = cut {
            tar.truncate(cut.index(tar.len()));
        }
        let go = go_disassemble(binary, &tar);
        let ours = disassemble(&tar[..], Vec::new()).map(|_| ());
        match (go, ours) {
            (Ok(go_lines), Ok(())) => {
                let ours = ours_from_stream(&tar);
                prop_assert!(ours == go_lines, "lines differ\n--- ours\n{}\n--- Go\n{}", show(&ours), show(&go_lines));
            }
            (Err(_), Err(_)) => {}
            (Ok(_), Err(e)) => prop_assert!(deliberate(&e), "Go takes the tar, we refuse: {e}"),
            (Err(e), Ok(())) => prop_assert!(false, "Go refuses the tar ({e}), we take it"),
        }
    }
}

/// Adoption: a layer Go imported, taken into our pool from its tar-split
/// and its directory, exports the exact tar; a file changed in the
/// directory is named, and nothing is published.
#[test]
fn adopts_a_go_layer_exactly() {
    let Some(go) = GoStore::new() else { return };
    let tree = odd_tree();
    for tar in [every_kind(), gnu_tar(tree.path(), "posix", &[])] {
        let id = go.import(&tar).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pool = ChunkPool::open(dir.path(), true).unwrap();
        let ts = std::fs::File::open(go.tar_split_path(&id)).unwrap();
        let mut files = DirectoryFiles::open(&go.layer_dir(&id)).unwrap();
        let staged = tar_split::stage_tar_split(ts, &mut files, &pool, &()).unwrap();
        assert_eq!(staged.manifest.diff_digest, common::sha256(&tar));
        let manifest = staged.manifest.clone();
        staged.chunks.publish().unwrap();
        let mut out = Vec::new();
        containers_storage::manifest::write_tar(&manifest, &pool, &mut out).unwrap();
        assert!(out == tar, "the adopted layer's export differs");
    }

    let id = go.import(&every_kind()).unwrap();
    std::fs::write(go.layer_dir(&id).join("etc/hostname"), b"BOX\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pool = ChunkPool::open(dir.path(), true).unwrap();
    let ts = std::fs::File::open(go.tar_split_path(&id)).unwrap();
    let mut files = DirectoryFiles::open(&go.layer_dir(&id)).unwrap();
    let err = tar_split::stage_tar_split(ts, &mut files, &pool, &())
        .err()
        .unwrap();
    assert!(matches!(err, Error::TarSplitMismatch { .. }), "{err}");
    assert!(err.to_string().contains("etc/hostname"), "{err}");
    assert_eq!(pool.stats().unwrap().chunks, 0, "nothing is published");
}

/// The Debian dataset's tars (real layers, a few hundred MB): our
/// tar-split, from the stream and from the imported manifest, equals what
/// vbatts/tar-split's disassembler writes, line for line.
#[test]
fn debian_layers_match_go() {
    let Some(binary) = go_disassembler() else {
        return;
    };
    let Some(dir) = common::debian_tars() else {
        return;
    };
    let mut tars: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .collect();
    tars.sort();
    for path in tars {
        let tar = std::fs::read(&path).unwrap();
        let go = go_disassemble(binary, &tar).unwrap();
        let what = path.display().to_string();
        assert_same_lines(&what, &ours_from_stream(&tar), &go);
        assert_same_lines(&what, &ours_from_manifest(&tar), &go);
    }
}
