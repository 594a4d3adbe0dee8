//! Bad and hostile input: every rejected import names the layer and what is
//! wrong, exits non-zero and leaves no trace (no record, no manifest, no
//! temporary pack, no new published pack). Damaged store files (a manifest
//! of an unknown version, a `layers.json` that does not parse) are reported
//! with their path and never overwritten.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::tar::{every_kind, Meta, TarBuilder};
use common::{expect_status, random_bytes, Cs};

fn file_names(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("read {}: {e}", dir.display()),
    }
}

/// The layer ID an error message names: `layer <64 hex>`.
fn named_layer_id(stderr: &str) -> Option<String> {
    stderr.match_indices("layer ").find_map(|(at, _)| {
        let rest = &stderr[at + 6..];
        let id: String = rest.chars().take(64).collect();
        (id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(id)
    })
}

/// The store's state that a rejected import must not change.
struct Snapshot {
    ids: Vec<String>,
    manifests: BTreeSet<String>,
    packs: BTreeSet<String>,
}

fn snapshot(cs: &Cs) -> Snapshot {
    Snapshot {
        ids: cs.layer_ids(),
        manifests: file_names(&cs.graph().join("manifests")),
        packs: file_names(&cs.graph().join("chunks/packs")),
    }
}

/// Checks that layer `id` left nothing behind.
fn assert_no_trace(cs: &Cs, id: &str, before: &Snapshot, case: &str) {
    assert_eq!(cs.layer_ids(), before.ids, "{case}: layers -q changed");
    let graph = cs.graph();
    assert!(
        !graph.join("manifests").join(id).exists(),
        "{case}: manifest left for {id}"
    );
    assert_eq!(
        file_names(&graph.join("manifests")),
        before.manifests,
        "{case}: manifests/"
    );
    let records = std::fs::read(graph.join("vfs-layers/layers.json")).unwrap();
    let records: serde_json::Value = serde_json::from_slice(&records).unwrap();
    let records = records.as_array().expect("layers.json is an array");
    assert!(
        records.iter().all(|r| r["id"] != id),
        "{case}: layers.json still records {id}"
    );
    assert_eq!(records.len(), before.ids.len(), "{case}: layers.json");
    let tmp = file_names(&graph.join("chunks/tmp"));
    assert!(tmp.is_empty(), "{case}: chunks/tmp holds {tmp:?}");
    assert_eq!(
        file_names(&graph.join("chunks/packs")),
        before.packs,
        "{case}: packs published"
    );
    assert!(
        !graph
            .join("vfs-layers/.incomplete")
            .join(format!("{id}.lock"))
            .exists(),
        "{case}: import marker left"
    );
}

/// A store holding one good layer, so that "no new layer" means something.
fn store_with_a_layer() -> Cs {
    let cs = Cs::new();
    cs.import(&every_kind(), &["-n", "good"]);
    cs
}

/// Imports `input` from stdin, with a random ID and with `-i`, and requires
/// a refusal naming the layer and holding each of `what`, with no trace.
fn assert_rejected(cs: &Cs, case: &str, input: &[u8], what: &[&str]) {
    let before = snapshot(cs);
    let stderr = cs.fails(&["import-layer", "-n", "bad"], Some(input));
    let id = named_layer_id(&stderr)
        .unwrap_or_else(|| panic!("{case}: no `layer <id>` in the error: {stderr}"));
    for w in what {
        assert!(
            stderr.contains(w),
            "{case}: {w:?} not in the error: {stderr}"
        );
    }
    assert_no_trace(cs, &id, &before, case);

    let chosen = format!("bad-{}", case.replace(' ', "-"));
    let stderr = cs.fails(&["import-layer", "-i", &chosen], Some(input));
    assert!(
        stderr.contains(&format!("layer {chosen}: ")),
        "{case}: {stderr}"
    );
    for w in what {
        assert!(
            stderr.contains(w),
            "{case}: {w:?} not in the error: {stderr}"
        );
    }
    assert_no_trace(cs, &chosen, &before, case);

    // Neither the ID nor the name stayed taken.
    let mut ok = TarBuilder::new();
    ok.file("fine", &Meta::default(), b"fine");
    let id = cs.import(&ok.finish(), &["-i", &chosen, "-n", "bad"]);
    assert_eq!(id, chosen);
    cs.ok(&["delete-layer", &chosen]);
    assert_eq!(cs.layer_ids(), before.ids);
}

/// A tar with a few small files around a 3 MiB one (big enough that the
/// import writes pack frames before it fails).
fn tar_with_big_file() -> (Vec<u8>, usize) {
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.dir("data/", &m);
    t.file("data/small", &m, b"small file\n");
    let content_at = t.out.len() + 512;
    t.file("data/big", &m, &random_bytes(7, 3 << 20));
    t.file("data/after", &m, b"after\n");
    (t.finish(), content_at)
}

/// Replaces the size field of the header block at `at` and fixes its
/// checksum.
fn patch_size(tar: &mut [u8], at: usize, field: [u8; 12]) {
    let block = &mut tar[at..at + 512];
    block[124..136].copy_from_slice(&field);
    block[148..156].copy_from_slice(b"        ");
    let sum: u64 = block.iter().map(|&b| b as u64).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[test]
fn truncated_tars_are_refused() {
    let cs = store_with_a_layer();
    let (tar, content_at) = tar_with_big_file();
    assert_rejected(
        &cs,
        "cut mid content",
        &tar[..content_at + 2_500_000],
        &["truncated", "data/big"],
    );
    let small = every_kind();
    assert_rejected(
        &cs,
        "cut mid header",
        &small[..5 * 512 + 100],
        &["truncated"],
    );
    // Extended headers whose entry never comes.
    let mut pax = TarBuilder::new();
    pax.pax(&[("path", b"dangling")]);
    let pax = pax.finish();
    assert_rejected(&cs, "cut after a pax header", &pax[..1024], &["truncated"]);
}

/// Upstream's tar reader ends the archive where the stream ends at an
/// entry boundary: an empty stream is an empty layer, and a tar without
/// its end-of-archive marker imports whole. `diff` gives back the bytes
/// as they came, as the Go CLI's does, on both drivers.
#[test]
fn an_empty_stream_or_a_tar_without_its_end_marker_imports_as_upstreams_does() {
    let mut t = TarBuilder::new();
    t.dir("etc/", &Meta::default());
    t.file("etc/hostname", &Meta::default(), b"box\n");
    let whole = t.finish_unpadded();
    let unterminated = &whole[..whole.len() - 1024];
    for driver in ["vfs", "overlay"] {
        let cs = Cs::new();
        for (case, input) in [("empty", &[][..]), ("unterminated", unterminated)] {
            let id = common::first_line_of(&String::from_utf8_lossy(
                &cs.ok_with_input(&["-s", driver, "import-layer", "-n", case], input),
            ));
            assert_eq!(
                cs.ok_bytes(&["-s", driver, "diff", &id]),
                input,
                "{driver} {case}"
            );
            let applied = cs.ok(&["-s", driver, "create-layer"]);
            cs.ok_with_input(&["-s", driver, "applydiff", applied.trim()], input);
        }
        assert_eq!(cs.ok(&["-s", driver, "check"]), "", "{driver}");
    }
}

#[test]
fn garbage_is_refused() {
    let cs = store_with_a_layer();
    let garbage = random_bytes(42, 5000);
    assert!(
        ![0x1f, 0x28, 0xfd, b'B'].contains(&garbage[0]),
        "no compression magic"
    );
    assert_rejected(
        &cs,
        "garbage",
        &garbage,
        &[
            "invalid tar header: tar offset 0",
            "checksum does not match",
        ],
    );
}

#[test]
fn a_gzip_stream_with_a_bad_trailer_is_refused() {
    let cs = store_with_a_layer();
    let (tar, _) = tar_with_big_file();
    let gz = common::compress_with("gzip", &tar);
    let n = gz.len();
    let mut bad_crc = gz.clone();
    bad_crc[n - 8] ^= 0x01;
    assert_rejected(
        &cs,
        "gzip crc",
        &bad_crc,
        &["gzip stream does not decompress"],
    );
    let mut bad_size = gz;
    bad_size[n - 1] ^= 0x40;
    assert_rejected(
        &cs,
        "gzip isize",
        &bad_size,
        &["gzip stream does not decompress"],
    );
}

#[test]
fn truncated_xz_and_zstd_streams_are_refused() {
    let cs = store_with_a_layer();
    let (tar, _) = tar_with_big_file();
    for (tool, what) in [
        ("xz", "xz stream does not decompress"),
        ("zstd", "zstd stream does not decompress"),
    ] {
        let packed = common::compress_with(tool, &tar);
        let half = packed.len() / 2;
        assert_rejected(&cs, &format!("{tool} half"), &packed[..half], &[what]);
        // Only the end of the stream (its check) missing: the tar inside
        // is complete, but the stream is not.
        assert_rejected(
            &cs,
            &format!("{tool} end"),
            &packed[..packed.len() - 1],
            &[what],
        );
    }
}

#[test]
fn paths_that_escape_the_root_are_refused() {
    let cs = store_with_a_layer();
    let m = Meta::default();
    for (case, path) in [
        ("dotdot", "../x"),
        ("inner dotdot", "a/../../x"),
        ("rooted dotdot", "/../x"),
    ] {
        let mut t = TarBuilder::new();
        t.file("ok", &m, b"fine");
        t.file(path, &m, b"escapes");
        assert_rejected(&cs, case, &t.finish(), &["escapes the layer root", path]);
    }
    let mut t = TarBuilder::new();
    t.pax_long_file("../../etc/passwd", &m, b"root::0:0::/:/bin/sh\n");
    assert_rejected(&cs, "pax path", &t.finish(), &["escapes the layer root"]);

    // The GNU long name escapes, its first 99 bytes (the header name) not.
    let long = format!("d/{}/../../../x", "x".repeat(110));
    let mut t = TarBuilder::new();
    t.gnu_long_file(&long, &m, b"escapes");
    assert_rejected(
        &cs,
        "gnu long name",
        &t.finish(),
        &["escapes the layer root"],
    );

    let mut t = TarBuilder::new();
    t.dir("../up/", &m);
    assert_rejected(&cs, "directory", &t.finish(), &["escapes the layer root"]);
}

#[test]
fn a_hard_link_to_outside_the_root_is_refused() {
    let cs = store_with_a_layer();
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.file("ok", &m, b"fine");
    t.hardlink("link", "../x", &m);
    assert_rejected(
        &cs,
        "hardlink",
        &t.finish(),
        &["hard link target", "escapes the layer root"],
    );
    let mut t = TarBuilder::new();
    t.hardlink("link", "a/../../etc/shadow", &m);
    assert_rejected(
        &cs,
        "hardlink inner",
        &t.finish(),
        &["hard link target", "escapes"],
    );
}

#[test]
fn absurd_size_fields_are_refused() {
    let cs = store_with_a_layer();
    let m = Meta::default();
    let tar_with_size = |field: [u8; 12]| {
        let mut t = TarBuilder::new();
        t.file("before", &m, b"before");
        let at = t.out.len();
        t.file("victim", &m, b"");
        t.file("after", &m, b"after");
        let mut tar = t.finish();
        patch_size(&mut tar, at, field);
        tar
    };
    // Base-256: 2^56 bytes.
    let mut huge = [0u8; 12];
    huge[0] = 0x80;
    huge[4] = 0x01;
    assert_rejected(
        &cs,
        "base-256 huge",
        &tar_with_size(huge),
        &["absurd size", "victim"],
    );
    // Base-256 negative.
    assert_rejected(
        &cs,
        "base-256 negative",
        &tar_with_size([0xff; 12]),
        &["size"],
    );
    // Base-256 beyond 64 bits.
    let mut overflow = [0xffu8; 12];
    overflow[0] = 0xbf;
    assert_rejected(
        &cs,
        "base-256 overflow",
        &tar_with_size(overflow),
        &["size field"],
    );
    // Octal: 8 GiB - 1 of content promised, a few blocks present.
    assert_rejected(
        &cs,
        "octal too large",
        &tar_with_size(*b"77777777777\0"),
        &["truncated", "victim"],
    );
    // Not a number.
    assert_rejected(
        &cs,
        "octal garbage",
        &tar_with_size(*b"0000009x000\0"),
        &["size field"],
    );
}

#[test]
fn a_manifest_of_an_unknown_version_is_refused_by_diff() {
    let cs = Cs::new();
    let id = cs.import(&every_kind(), &[]);
    let path = cs.graph().join("manifests").join(&id);
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"CSMANIF\0");
    assert_eq!(&bytes[8..12], &2u32.to_le_bytes());
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();

    for args in [
        &["diff", "-u", &id][..],
        &["diff", &id],
        &["diff", "-c", &id],
    ] {
        let out = cs.run(args, None);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("manifest format version 99 is not supported"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(path.to_str().unwrap()),
            "{args:?}: path not named: {err}"
        );
        if args[1] == "-u" {
            assert!(out.stdout.is_empty(), "no partial stream on stdout");
        }
    }
    // The record is untouched and the file was not rewritten.
    assert_eq!(cs.layer_ids(), vec![id]);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

fn layers_json(cs: &Cs) -> PathBuf {
    cs.graph().join("vfs-layers/layers.json")
}

#[test]
fn a_corrupt_layers_json_is_reported_and_never_overwritten() {
    let (good, _) = tar_with_big_file();
    for (case, damage) in [
        ("truncated", None),
        ("not json", Some(&b"this is not JSON at all\n"[..])),
        ("not an array", Some(&b"{\"id\": \"x\"}"[..])),
    ] {
        let cs = Cs::new();
        let id = cs.import(&every_kind(), &["-n", "good"]);
        let path = layers_json(&cs);
        let original = std::fs::read(&path).unwrap();
        let damaged = match damage {
            Some(bytes) => bytes.to_vec(),
            None => original[..original.len() / 2].to_vec(),
        };
        std::fs::write(&path, &damaged).unwrap();
        let before = (
            file_names(&cs.graph().join("manifests")),
            file_names(&cs.graph().join("chunks/packs")),
        );
        let commands: Vec<(Vec<&str>, Option<&[u8]>)> = vec![
            (vec!["layers"], None),
            (vec!["layer", &id], None),
            (vec!["status"], None),
            (vec!["diff", "-u", &id], None),
            (vec!["import-layer", "-n", "new"], Some(&good[..])),
            (vec!["create-layer", "-n", "new"], None),
            (vec!["delete-layer", &id], None),
        ];
        for (args, stdin) in commands {
            let out = cs.run(&args, stdin);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_ne!(
                out.status.code(),
                Some(0),
                "{case}: {args:?} succeeded: {err}"
            );
            assert!(
                err.contains(path.to_str().unwrap()),
                "{case}: {args:?}: the error does not name {}: {err}",
                path.display()
            );
            assert_eq!(
                std::fs::read(&path).unwrap(),
                damaged,
                "{case}: {args:?} rewrote the file"
            );
        }
        assert_eq!(
            file_names(&cs.graph().join("manifests")),
            before.0,
            "{case}"
        );
        assert_eq!(
            file_names(&cs.graph().join("chunks/packs")),
            before.1,
            "{case}"
        );
        assert!(
            file_names(&cs.graph().join("chunks/tmp")).is_empty(),
            "{case}"
        );

        // Repaired by hand, the store works again.
        std::fs::write(&path, &original).unwrap();
        assert_eq!(cs.layer_ids(), vec![id]);
    }
}

/// Regression: with more than ~9 MiB of stream left when the parser
/// failed, the reader thread's "import stopped" hid the parser's reason.
#[test]
fn a_bad_entry_early_in_a_large_layer_is_reported_for_what_it_is() {
    let cs = store_with_a_layer();
    let garbage = random_bytes(42, 12 << 20);
    assert_rejected(
        &cs,
        "large garbage",
        &garbage,
        &[
            "invalid tar header: tar offset 0",
            "checksum does not match",
        ],
    );

    let mut t = TarBuilder::new();
    t.file("../escape", &Meta::default(), &random_bytes(3, 12 << 20));
    assert_rejected(
        &cs,
        "large escape",
        &t.finish(),
        &["escapes the layer root"],
    );
}

#[test]
fn an_import_that_fails_does_not_disturb_the_existing_layer() {
    let cs = store_with_a_layer();
    let id = cs.layer_ids()[0].clone();
    let mut t = TarBuilder::new();
    t.file("../x", &Meta::default(), b"x");
    cs.fails(&["import-layer"], Some(&t.finish()));
    assert_eq!(cs.ok_bytes(&["diff", "-u", &id]), every_kind());
    let out = cs.run(&["layer", "good"], None);
    expect_status(&out, &["layer", "good"], 0);
}

/// A lone zero block followed by more entries: Go's archive/tar (and so
/// upstream) refuses it with ErrHeader; taking the first zero block as the
/// end hides the later entries from the manifest (and from what a mount
/// shows) while they stay in the stream that `diff` exports and the DiffID
/// covers.
#[test]
fn a_lone_zero_block_before_more_entries_is_refused() {
    let cs = store_with_a_layer();
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.file("visible", &m, b"hello");
    t.out.extend_from_slice(&[0u8; 512]);
    t.file("hidden", &m, b"not in the manifest");
    assert_rejected(&cs, "lone zero block", &t.finish(), &["zero block"]);
}

/// [`assert_rejected`] of an import onto `parent`.
fn assert_rejected_onto(cs: &Cs, parent: &str, case: &str, input: &[u8], what: &[&str]) {
    let before = snapshot(cs);
    let stderr = cs.fails(&["import-layer", "-n", "bad", parent], Some(input));
    let id = named_layer_id(&stderr)
        .unwrap_or_else(|| panic!("{case}: no `layer <id>` in the error: {stderr}"));
    for w in what {
        assert!(
            stderr.contains(w),
            "{case}: {w:?} not in the error: {stderr}"
        );
    }
    assert_no_trace(cs, &id, &before, case);
}

/// Layers the kernel or the tree's own shape would refuse when they are
/// mounted are refused when they are imported, naming the entry and its
/// offset, with no trace: before, they imported and only a mount failed.
#[test]
fn layers_that_could_never_be_mounted_are_refused_at_import() {
    let cs = store_with_a_layer();
    let m = Meta::default();
    // Each case: a name, the entries after `ok` (a file whose header and
    // content take the first 1024 bytes), and what the error must say.
    type Build = Box<dyn Fn(&mut TarBuilder)>;
    let cases: Vec<(&str, Build, Vec<&str>)> = vec![
        (
            "hard link to a missing target",
            Box::new(|t| t.hardlink("link", "missing", &Meta::default())),
            vec![
                "tar offset 1024",
                "hard link \"link\"",
                "\"missing\" is not an entry",
            ],
        ),
        (
            "absolute hard link to a path the tar lacks",
            Box::new(|t| t.hardlink("shadow", "/etc/shadow", &Meta::default())),
            vec![
                "tar offset 1024",
                "hard link \"shadow\"",
                "\"etc/shadow\" is not an entry",
            ],
        ),
        (
            "hard link to a later entry",
            Box::new(|t| {
                t.hardlink("link", "later", &Meta::default());
                t.file("later", &Meta::default(), b"later");
            }),
            vec!["tar offset 1024", "hard link \"link\""],
        ),
        (
            "hard link to a directory",
            Box::new(|t| {
                t.dir("d/", &Meta::default());
                t.hardlink("link", "d", &Meta::default());
            }),
            vec!["tar offset 1536", "\"d\" is a directory"],
        ),
        (
            "hard link to itself",
            Box::new(|t| t.hardlink("ok", "ok", &Meta::default())),
            vec!["tar offset 1024", "the link itself"],
        ),
        (
            "hard link through a symlink",
            Box::new(|t| {
                t.symlink("etc", "/etc", &Meta::default());
                t.hardlink("shadow", "etc/shadow", &Meta::default());
            }),
            vec![
                "tar offset 1536",
                "goes through \"etc\", which an earlier entry made a symlink",
            ],
        ),
        (
            "entry below a symlink",
            Box::new(|t| {
                t.symlink("etc", "/etc", &Meta::default());
                t.file("etc/cron.d/job", &Meta::default(), b"* * * * * root sh");
            }),
            vec![
                "tar offset 1536",
                "\"etc/cron.d/job\" lies below \"etc\", which an earlier entry made a symlink",
            ],
        ),
        (
            "entry below a file",
            Box::new(|t| t.file("ok/inside", &Meta::default(), b"x")),
            vec![
                "tar offset 1024",
                "lies below \"ok\", which an earlier entry made a file",
            ],
        ),
        (
            "whiteout of dot",
            Box::new(|t| t.file("d/.wh..", &Meta::default(), b"")),
            vec!["tar offset 1024", "\"d/.wh..\"", "whiteout"],
        ),
        (
            "whiteout of dotdot",
            Box::new(|t| t.file(".wh...", &Meta::default(), b"")),
            vec!["tar offset 1024", "\".wh...\"", "whiteout"],
        ),
        (
            "whiteout of nothing",
            Box::new(|t| t.file("d/.wh.", &Meta::default(), b"")),
            vec!["tar offset 1024", "\"d/.wh.\"", "whiteout"],
        ),
        (
            "capability of 8 bytes",
            Box::new(|t| {
                let value: &[u8] = &[1, 0, 0, 2, 0, 32, 0, 0];
                t.pax_xattr_file(
                    "caps",
                    &[("security.capability", value)],
                    "1",
                    &Meta::default(),
                    b"x",
                )
            }),
            vec![
                "tar offset 2048",
                "\"caps\"",
                "security.capability",
                "not 8",
            ],
        ),
        (
            "capability of revision 1",
            Box::new(|t| {
                let value: &[u8] = &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
                t.pax_xattr_file(
                    "caps",
                    &[("security.capability", value)],
                    "1",
                    &Meta::default(),
                    b"x",
                )
            }),
            vec!["\"caps\"", "security.capability", "not 12"],
        ),
        (
            "capability header of the wrong revision",
            Box::new(|t| {
                let mut value = common::tar::VALID_CAPABILITY;
                value[3] = 3;
                t.pax_xattr_file(
                    "caps",
                    &[("security.capability", &value[..])],
                    "1",
                    &Meta::default(),
                    b"x",
                )
            }),
            vec!["\"caps\"", "security.capability", "not revision 2"],
        ),
        (
            "ACL out of order",
            Box::new(|t| {
                // group, then owner, then others
                let value: &[u8] = &[
                    2, 0, 0, 0, 4, 0, 4, 0, 0, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 32, 0, 4, 0, 0, 0,
                    0, 0,
                ];
                t.pax_xattr_file(
                    "acl",
                    &[("system.posix_acl_access", value)],
                    "1",
                    &Meta::default(),
                    b"x",
                )
            }),
            vec!["\"acl\"", "system.posix_acl_access"],
        ),
        (
            "default ACL on a file",
            Box::new(|t| {
                let value: &[u8] = &[
                    2, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 0, 0, 32, 0, 4, 0, 0, 0,
                    0, 0,
                ];
                t.pax_xattr_file(
                    "acl",
                    &[("system.posix_acl_default", value)],
                    "1",
                    &Meta::default(),
                    b"x",
                )
            }),
            vec!["\"acl\"", "only for directories"],
        ),
        (
            "xattr name too long",
            Box::new(|t| {
                let name = format!("user.{}", "n".repeat(251));
                t.pax_xattr_file("long-xattr", &[(&name, b"v")], "1", &Meta::default(), b"x")
            }),
            vec!["\"long-xattr\"", "1 to 255 bytes, not 256"],
        ),
        (
            "xattr value too large",
            Box::new(|t| {
                let value = vec![b'v'; 65537];
                t.pax_xattr_file(
                    "big-xattr",
                    &[("user.big", &value)],
                    "1",
                    &Meta::default(),
                    b"x",
                )
            }),
            vec!["\"big-xattr\"", "65537 bytes"],
        ),
        (
            "xattr name that is a namespace",
            Box::new(|t| t.pax_xattr_file("bare", &[("user.", b"v")], "1", &Meta::default(), b"x")),
            vec!["\"bare\"", "only a namespace"],
        ),
        (
            "component longer than NAME_MAX",
            Box::new(|t| {
                t.pax_long_file(&format!("d/{}", "n".repeat(256)), &Meta::default(), b"x")
            }),
            vec!["tar offset 2048", "component of 256 bytes"],
        ),
        (
            "path longer than PATH_MAX",
            Box::new(|t| {
                // 4096 bytes, in names of at most 255.
                let path = format!(
                    "{}/{}/x",
                    vec!["p".repeat(255); 15].join("/"),
                    "q".repeat(254)
                );
                assert_eq!(path.len(), 4096);
                t.pax_long_file(&path, &Meta::default(), b"x")
            }),
            vec!["tar offset 6144", "4096 bytes long"],
        ),
        (
            "device major too large",
            Box::new(|t| t.char_dev("dev", 4096, 0, &Meta::default())),
            vec!["tar offset 1024", "\"dev\"", "device number 4096:0"],
        ),
        (
            "device minor too large",
            Box::new(|t| t.block_dev("dev", 8, 1 << 20, &Meta::default())),
            vec!["tar offset 1024", "\"dev\"", "device number 8:1048576"],
        ),
        (
            "symlink to nothing",
            Box::new(|t| t.symlink("empty", "", &Meta::default())),
            vec!["tar offset 1024", "\"empty\"", "symlink target is empty"],
        ),
        (
            "symlink target too long",
            Box::new(|t| {
                let target = "t/".repeat(2048);
                t.pax(&[("linkpath", target.as_bytes())]);
                t.symlink("long", "placeholder", &Meta::default());
            }),
            vec!["tar offset 6144", "\"long\"", "4096 bytes"],
        ),
    ];
    for (case, build, what) in cases {
        let mut t = TarBuilder::new();
        t.file("ok", &m, b"fine");
        assert_eq!(t.out.len(), 1024);
        build(&mut t);
        assert_rejected(&cs, case, &t.finish(), &what);
    }
}

/// A hard link's target must be in the same tar, as upstream's overlay
/// driver extracts a layer into an empty directory: one to a lower
/// layer's file is refused too; the chunks the import wrote before it
/// saw the link are dropped.
#[test]
fn a_hard_link_to_a_lower_layers_file_is_refused() {
    let cs = store_with_a_layer();
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.file("big", &m, &random_bytes(5, 3 << 20));
    let at = t.out.len();
    t.hardlink("hostname", "etc/hostname", &m);
    assert_rejected_onto(
        &cs,
        "good",
        "hard link to a lower layer",
        &t.finish(),
        &[
            &format!("tar offset {at}"),
            "hard link \"hostname\"",
            "\"etc/hostname\"",
        ],
    );
}

/// Hard link targets are paths from the layer's root: a leading `/` is
/// dropped, not refused.
#[test]
fn an_absolute_hard_link_to_an_earlier_entry_is_taken() {
    let cs = store_with_a_layer();
    let m = Meta::default();
    let mut t = TarBuilder::new();
    t.file("etc/passwd", &m, b"root:x:0:0::/root:/bin/sh\n");
    t.hardlink("passwd-", "/etc/passwd", &m);
    let tar = t.finish();
    let id = cs.import(&tar, &["-n", "abs"]);
    let tree = std::path::PathBuf::from(cs.ok(&["mount", &id]).trim());
    assert_eq!(
        std::fs::read(tree.join("passwd-")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    cs.ok(&["unmount", &id]);
    assert_eq!(cs.ok_bytes(&["diff", "-u", &id]), tar);
}

/// The name limit applies to what is made: a whiteout of a 255-byte name
/// (as sealing a layer that deleted such a file writes) is 259 bytes long
/// and is taken.
#[test]
fn a_whiteout_of_a_255_byte_name_is_taken() {
    let cs = Cs::new();
    let long = "n".repeat(255);
    let mut base = TarBuilder::new();
    base.pax_long_file(&format!("d/{long}"), &Meta::default(), b"long name");
    base.file("d/short", &Meta::default(), b"short name");
    cs.import(&base.finish(), &["-n", "base"]);
    let mut upper = TarBuilder::new();
    upper.pax(&[("path", format!("d/.wh.{long}").as_bytes())]);
    upper.file("placeholder", &Meta::default(), b"");
    let id = cs.import(&upper.finish(), &["-n", "upper", "base"]);
    let tree = PathBuf::from(cs.ok(&["mount", &id]).trim());
    let names: BTreeSet<String> = file_names(&tree.join("d"));
    assert_eq!(names, BTreeSet::from(["short".to_string()]));
    cs.ok(&["unmount", &id]);
}
