//! Crash safety of `import-layer` (DESIGN.md section 7): the import is
//! killed with SIGKILL at many points, the store is reopened, and it must
//! list no incomplete layer while every earlier layer still exports
//! byte-identically. An import never writes its record before its content
//! is complete (a Go client deletes records flagged incomplete), so a
//! kill leaves either no record or the complete one. Also simulated crash states of the pool's publish
//! order (a pack index left behind as a temporary file).

use crate::common;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::tar::{Meta, TarBuilder};
use common::{Cs, Hashing, Rng};
use containers_storage::manifest::Sha256;

/// Size of the big layer each kill trial imports.
const BIG_TAR_BYTES: u64 = 200 << 20;

fn header(out: &mut impl Write, name: &str, typeflag: u8, size: u64, link: &str, meta: &Meta) {
    let mut t = TarBuilder::new();
    t.header(
        name.as_bytes(),
        typeflag,
        size,
        link.as_bytes(),
        meta,
        (0, 0),
    );
    out.write_all(&t.out).unwrap();
}

/// Writes a tar of at least `target` bytes of pseudo-random files (many
/// small ones, some medium, a few of several MiB, plus directories and
/// symlinks) to `path` without holding it in memory; returns its sha256.
fn write_big_tar(path: &Path, seed: u64, target: u64) -> String {
    let mut rng = Rng(seed);
    let file = File::create(path).unwrap();
    let mut out = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::default(),
    };
    let dir_meta = Meta {
        mode: 0o755,
        ..Meta::default()
    };
    header(&mut out, "data/", b'5', 0, "", &dir_meta);
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    while out.hash.len() < target {
        if n % 64 == 0 {
            header(
                &mut out,
                &format!("data/d{:04}/", n / 64),
                b'5',
                0,
                "",
                &dir_meta,
            );
        }
        let dir = format!("data/d{:04}", n / 64);
        let size = match rng.range(0, 100) {
            0..=54 => rng.range(0, 8 << 10),
            55..=84 => rng.range(8 << 10, 256 << 10),
            85..=96 => rng.range(256 << 10, 4 << 20),
            _ => rng.range(4 << 20, 24 << 20),
        };
        let meta = Meta {
            mode: if n % 7 == 0 { 0o755 } else { 0o644 },
            uid: n % 3,
            gid: n % 5,
            mtime: 1_700_000_000 + n,
        };
        let name = format!("{dir}/f{n:06}");
        header(&mut out, &name, b'0', size, "", &meta);
        let mut left = size;
        while left > 0 {
            let take = left.min(buf.len() as u64) as usize;
            rng.fill(&mut buf[..take]);
            out.write_all(&buf[..take]).unwrap();
            left -= take as u64;
        }
        let pad = ((512 - size % 512) % 512) as usize;
        out.write_all(&vec![0u8; pad]).unwrap();
        if n % 50 == 0 {
            header(
                &mut out,
                &format!("{dir}/link{n:06}"),
                b'2',
                0,
                &format!("f{n:06}"),
                &Meta::default(),
            );
        }
        n += 1;
    }
    out.write_all(&[0u8; 1024]).unwrap();
    let pad = ((10240 - out.hash.len() % 10240) % 10240) as usize;
    out.write_all(&vec![0u8; pad]).unwrap();
    out.flush().unwrap();
    let Hashing { inner, hash } = out;
    inner.into_inner().unwrap().sync_all().ok();
    hash.finish()
}

/// `sha256:<hex>` of what `diff -u` of `id` writes to stdout, streamed.
fn export_digest(cs: &Cs, id: &str) -> String {
    let mut cmd = cs.command();
    cmd.args(["diff", "-u", id]);
    common::streamed_digest(cmd).unwrap_or_else(|e| panic!("diff -u {id} failed: {e}"))
}

/// The layer records as `layers --json` lists them (this opens the store
/// for writing, which removes layers whose import died).
fn list_layers(cs: &Cs) -> Vec<serde_json::Value> {
    let out = cs.ok(&["layers", "--json"]);
    serde_json::from_str(&out).expect("layers --json parses")
}

fn is_incomplete(layer: &serde_json::Value) -> bool {
    layer["flags"]["incomplete"].as_bool() == Some(true)
}

/// The records in `layers.json`, read without opening the store.
fn raw_records(cs: &Cs) -> Vec<serde_json::Value> {
    match fs::read(cs.graph().join("vfs-layers/layers.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("layers.json parses"),
        Err(_) => Vec::new(),
    }
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// A layer imported before the kills, and what it must export.
struct Committed {
    id: String,
    digest: String,
}

/// Where a kill landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Landed {
    /// Before the import wrote anything.
    Before,
    /// After the import wrote files (packs, a manifest under a temporary
    /// name or without its record yet) but before its record.
    During,
    /// After the layer was committed.
    After,
}

/// Files killed imports left for gc, counted for the printout.
#[derive(Default)]
struct Leftovers {
    manifest_temps: usize,
    orphan_manifests: usize,
    markers: usize,
    pack_temps: usize,
}

/// What an import writes before its record, by name: the pool's packs and
/// their temporary files, manifests and their temporary files, and the
/// room reserved for the next `layers.json`.
fn import_files(cs: &Cs) -> BTreeSet<String> {
    let g = cs.graph();
    let mut out = BTreeSet::new();
    for dir in ["chunks/tmp", "chunks/packs", "manifests", "vfs-layers"] {
        for name in names_in(&g.join(dir)) {
            if dir != "vfs-layers" || name.starts_with(".tmp-") {
                out.insert(format!("{dir}/{name}"));
            }
        }
    }
    out
}

/// Checks the store after a kill: no incomplete layer, exactly the
/// committed layers plus (when it was committed) the big one, which then
/// exports as `big_digest`; earlier layers still export identically; one
/// manifest per sealed layer, and beside them only manifests of no layer
/// (a kill between the manifest's rename and its record: gc's). Deletes
/// the big layer when it is listed. `files_before` are
/// [`import_files`] before the import. Returns where the kill landed.
fn check_after_kill(
    cs: &Cs,
    committed: &[Committed],
    big_digest: &str,
    completed_id: Option<&str>,
    files_before: &BTreeSet<String>,
    leftovers: &mut Leftovers,
) -> Landed {
    let known: BTreeSet<&str> = committed.iter().map(|c| c.id.as_str()).collect();
    // What the killed process left, before anything reopens the store.
    let raw: Vec<serde_json::Value> = raw_records(cs)
        .into_iter()
        .filter(|l| !known.contains(l["id"].as_str().unwrap()))
        .collect();
    assert!(raw.len() <= 1, "more than one new record: {raw:?}");
    let wrote = import_files(cs).difference(files_before).count() > 0;
    let landed = match raw.first() {
        None if wrote => Landed::During,
        None => Landed::Before,
        Some(l) => {
            assert!(
                !is_incomplete(l),
                "the import wrote a record before its content was complete: {l}"
            );
            Landed::After
        }
    };
    if completed_id.is_some() {
        assert_eq!(
            landed,
            Landed::After,
            "the import exited 0 but its record is {raw:?}"
        );
    }

    let listed = list_layers(cs);
    for layer in &listed {
        assert!(
            !is_incomplete(layer),
            "incomplete layer still listed after reopening: {layer}"
        );
    }
    let listed_ids: BTreeSet<String> = listed
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    for c in committed {
        assert!(
            listed_ids.contains(&c.id),
            "committed layer {} is gone",
            c.id
        );
    }
    let extra: Vec<&serde_json::Value> = listed
        .iter()
        .filter(|l| !known.contains(l["id"].as_str().unwrap()))
        .collect();
    match landed {
        Landed::Before | Landed::During => {
            assert!(extra.is_empty(), "a killed import left a layer: {extra:?}");
        }
        Landed::After => {
            assert_eq!(
                extra.len(),
                1,
                "the committed big layer is not listed: {listed:?}"
            );
            let big = extra[0];
            let id = big["id"].as_str().unwrap();
            if let Some(printed) = completed_id {
                assert_eq!(id, printed);
            }
            assert_eq!(big["sealed"].as_bool(), Some(true), "{big}");
            assert_eq!(big["diff-digest"].as_str(), Some(big_digest), "{big}");
            assert_eq!(
                export_digest(cs, id),
                big_digest,
                "big layer {id} does not export identically"
            );
        }
    }
    for c in committed {
        assert_eq!(
            export_digest(cs, &c.id),
            c.digest,
            "earlier layer {} changed",
            c.id
        );
    }

    // One manifest per listed sealed layer (temporary files of a manifest
    // write that was cut short carry a `.tmp-` prefix and are gc's to remove).
    let sealed: BTreeSet<String> = listed
        .iter()
        .filter(|l| l["sealed"].as_bool() == Some(true))
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    let manifests = names_in(&cs.graph().join("manifests"));
    let (temps, real): (BTreeSet<String>, BTreeSet<String>) =
        manifests.into_iter().partition(|n| n.starts_with(".tmp-"));
    assert!(
        sealed.is_subset(&real),
        "a sealed layer has no manifest: {:?}",
        sealed.difference(&real).collect::<Vec<_>>()
    );
    let orphans: Vec<&String> = real.difference(&sealed).collect();
    assert!(
        orphans.iter().all(|id| !listed_ids.contains(*id)),
        "a listed layer that is not sealed has a manifest: {orphans:?}"
    );
    assert!(
        orphans.len() <= usize::from(landed == Landed::During) + leftovers.orphan_manifests,
        "more manifests without a layer than kills between a manifest and its record: {orphans:?}"
    );
    leftovers.orphan_manifests = orphans.len();
    leftovers.manifest_temps = temps.len();
    leftovers.markers = names_in(&cs.graph().join("vfs-layers/.incomplete")).len();
    leftovers.pack_temps = names_in(&cs.graph().join("chunks/tmp")).len();

    if let Some(big) = extra.first() {
        let id = big["id"].as_str().unwrap();
        cs.ok(&["delete-layer", id]);
        assert!(!cs.graph().join("manifests").join(id).exists());
    }
    landed
}

/// Runs `import-layer -f tar` as a child process, SIGKILLs it after
/// `delay`, and reports the ID it printed if it finished first.
fn import_and_kill(cs: &Cs, tar: &Path, delay: Duration, scratch: &Path) -> Option<String> {
    let stdout_path = scratch.join("import.out");
    let stderr_path = scratch.join("import.err");
    let mut cmd = cs.command();
    cmd.arg("import-layer")
        .arg("-f")
        .arg(tar)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(File::create(&stderr_path).unwrap());
    let mut child = cmd.spawn().expect("spawn import-layer");
    std::thread::sleep(delay);
    // SIGKILL; harmless when the child already exited.
    let _ = child.kill();
    let status = child.wait().unwrap();
    let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    if status.success() {
        let id = stdout.lines().next().unwrap_or_default().to_string();
        assert!(
            !id.is_empty(),
            "import-layer exited 0 without printing an ID"
        );
        return Some(id);
    }
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "import-layer failed on its own: {status}\nstderr: {stderr}"
    );
    None
}

/// Imports `tar` without interruption; returns its ID and how long it took.
fn timed_import(cs: &Cs, tar: &Path) -> (String, Duration) {
    let start = Instant::now();
    let id = cs.import_file(tar, &[]);
    (id, start.elapsed())
}

fn small_layers() -> Vec<Vec<u8>> {
    let mut rng = Rng(7);
    let mut second = TarBuilder::new();
    second.dir(
        "etc/",
        &Meta {
            mode: 0o755,
            ..Meta::default()
        },
    );
    let mut content = vec![0u8; 300_000];
    rng.fill(&mut content);
    second.file("etc/blob", &Meta::default(), &content);
    second.file("etc/hostname", &Meta::default(), b"second\n");
    second.whiteout("etc", "removed");
    let mut third = TarBuilder::new();
    third.dir(
        "opt/",
        &Meta {
            mode: 0o755,
            ..Meta::default()
        },
    );
    for i in 0..20 {
        let mut data = vec![0u8; 1000 * i + 17];
        rng.fill(&mut data);
        third.file(&format!("opt/file{i}"), &Meta::default(), &data);
    }
    vec![common::tar::every_kind(), second.finish(), third.finish()]
}

#[test]
fn killing_import_layer_leaves_no_incomplete_layer_and_earlier_layers_intact() {
    let cs = Cs::new();
    let scratch = tempfile::tempdir().unwrap();
    let big = scratch.path().join("big.tar");

    // Small committed layers: a base, a child of it, and a standalone one.
    let mut committed = Vec::new();
    let mut parent: Option<String> = None;
    for (i, tar) in small_layers().into_iter().enumerate() {
        let extra: Vec<&str> = match (&parent, i) {
            (Some(p), 1) => vec![p.as_str()],
            _ => vec![],
        };
        let id = cs.import(&tar, &extra);
        let digest = export_digest(&cs, &id);
        assert_eq!(
            digest,
            common::sha256(&tar),
            "small layer {i} does not round-trip"
        );
        parent.get_or_insert(id.clone());
        committed.push(Committed { id, digest });
    }

    // One uninterrupted import, only to scale the kill delays.
    let digest = write_big_tar(&big, 1000, BIG_TAR_BYTES);
    let (id, full) = timed_import(&cs, &big);
    assert_eq!(export_digest(&cs, &id), digest);
    cs.ok(&["delete-layer", &id]);
    eprintln!(
        "big tar: {} MiB; one uninterrupted import took {:?}",
        fs::metadata(&big).unwrap().len() >> 20,
        full
    );

    // Each trial imports fresh content, so that every kill hits an import
    // that writes new chunks and packs (not one that only finds them).
    let ms = |n: u64| Duration::from_millis(n);
    let mut delays = vec![ms(1), ms(4), ms(15)];
    for f in [0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 0.95, 1.1, 1.4, 2.0, 3.0] {
        delays.push(full.mul_f64(f));
    }
    let mut leftovers = Leftovers::default();
    let mut tally = [0usize; 3];
    for (trial, delay) in delays.iter().enumerate() {
        let digest = write_big_tar(&big, trial as u64, BIG_TAR_BYTES);
        let files_before = import_files(&cs);
        let completed = import_and_kill(&cs, &big, *delay, scratch.path());
        let landed = check_after_kill(
            &cs,
            &committed,
            &digest,
            completed.as_deref(),
            &files_before,
            &mut leftovers,
        );
        eprintln!("trial {trial}: kill after {delay:?} landed {landed:?}");
        tally[landed as usize] += 1;
    }

    // Dedup path: the same content imported twice; the second import is
    // killed while the first copy stays committed.
    let digest = write_big_tar(&big, 5000, BIG_TAR_BYTES);
    let first = cs.import_file(&big, &[]);
    assert_eq!(export_digest(&cs, &first), digest);
    let (second, again) = timed_import(&cs, &big);
    cs.ok(&["delete-layer", &second]);
    eprintln!("a second import of the same content took {again:?}");
    committed.push(Committed {
        id: first.clone(),
        digest: digest.clone(),
    });
    let mut dedup_tally = [0usize; 3];
    for f in [0.05, 0.3, 0.6, 0.9, 2.0] {
        let delay = again.mul_f64(f);
        let files_before = import_files(&cs);
        let completed = import_and_kill(&cs, &big, delay, scratch.path());
        let landed = check_after_kill(
            &cs,
            &committed,
            &digest,
            completed.as_deref(),
            &files_before,
            &mut leftovers,
        );
        eprintln!("dedup trial: kill after {delay:?} landed {landed:?}");
        dedup_tally[landed as usize] += 1;
    }
    committed.pop();
    cs.ok(&["delete-layer", &first]);

    // The store is still usable: new imports succeed and export identically.
    let mut t = TarBuilder::new();
    t.dir(
        "after/",
        &Meta {
            mode: 0o755,
            ..Meta::default()
        },
    );
    t.file("after/kills", &Meta::default(), b"the store still works\n");
    let small = t.finish();
    let id = cs.import(&small, &[committed[0].id.as_str()]);
    assert_eq!(export_digest(&cs, &id), common::sha256(&small));
    let digest = write_big_tar(&big, 1000, BIG_TAR_BYTES);
    let id = cs.import_file(&big, &[]);
    assert_eq!(export_digest(&cs, &id), digest);
    for c in &committed {
        assert_eq!(export_digest(&cs, &c.id), c.digest);
    }

    eprintln!(
        "kills: {} before the import wrote anything, {} during the import, {} after the commit; \
         dedup kills: {} before, {} during, {} after; files left for gc at the end: \
         {} manifest temp files, {} manifests without a layer, {} import markers, \
         {} unpublished pack files",
        tally[0],
        tally[1],
        tally[2],
        dedup_tally[0],
        dedup_tally[1],
        dedup_tally[2],
        leftovers.manifest_temps,
        leftovers.orphan_manifests,
        leftovers.markers,
        leftovers.pack_temps
    );
    assert!(
        tally[1] > 0,
        "no kill landed during an import; the trials prove nothing"
    );
}

/// The one pack and index file a store holds after one import.
fn only_pack(cs: &Cs) -> (PathBuf, String) {
    let packs = cs.graph().join("chunks/packs");
    let stems: Vec<String> = names_in(&packs)
        .into_iter()
        .filter_map(|n| n.strip_suffix(".idx").map(String::from))
        .collect();
    assert_eq!(stems.len(), 1, "expected one pack index: {stems:?}");
    (packs, stems[0].clone())
}

fn random_tar(seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut data = vec![0u8; 3 << 20];
    rng.fill(&mut data);
    let mut t = TarBuilder::new();
    t.file("random", &Meta::default(), &data);
    t.finish()
}

/// The state a kill leaves between the pack's rename into `packs/` and the
/// rename of its index: the pack is published, its index is still the
/// temporary file `atomic_write` writes beside the target, and no manifest
/// refers to the chunks. Importing the same content again must work.
#[test]
fn a_pack_index_left_as_a_temp_file_by_a_crash_is_not_used() {
    let cs = Cs::new();
    let tar = random_tar(1);
    let id = cs.import(&tar, &[]);
    cs.ok(&["delete-layer", &id]);
    let (packs, stem) = only_pack(&cs);
    fs::rename(
        packs.join(format!("{stem}.idx")),
        packs.join(format!(".tmp-0123456789abcdef-{stem}.idx")),
    )
    .unwrap();

    let id = cs.import(&tar, &[]);
    let out = cs.run(&["diff", "-u", &id], None);
    common::expect_status(&out, &["diff", "-u", &id], 0);
    assert_eq!(common::sha256(&out.stdout), common::sha256(&tar));
}

/// The state a kill leaves right after `atomic_write` created the index's
/// temporary file and before it wrote to it: an empty `.tmp-…idx`. The
/// store must still open.
#[test]
fn an_empty_pack_index_temp_file_left_by_a_crash_does_not_break_the_store() {
    let cs = Cs::new();
    let tar = random_tar(2);
    let id = cs.import(&tar, &[]);
    let (packs, stem) = only_pack(&cs);
    File::create(packs.join(format!(".tmp-fedcba9876543210-{stem}x.idx"))).unwrap();

    assert_eq!(cs.layer_ids(), vec![id.clone()]);
    let out = cs.run(&["diff", "-u", &id], None);
    common::expect_status(&out, &["diff", "-u", &id], 0);
    assert_eq!(common::sha256(&out.stdout), common::sha256(&tar));
    let second = random_tar(3);
    let id2 = cs.import(&second, &[]);
    assert_eq!(
        common::sha256(&cs.ok_bytes(&["diff", "-u", &id2])),
        common::sha256(&second)
    );
}

/// The bytes written to a pipe that its reader has not read yet.
#[allow(unsafe_code)] // FIONREAD: no safe wrapper
fn unread(pipe: &std::process::ChildStdin) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int; on a pipe it counts the bytes in
    // it from either end.
    let rc = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as usize
}

/// An import in progress (reading its input from a pipe that never ends)
/// has no record, flagged incomplete or not: a Go client would delete an
/// incomplete one whenever it loads the records for writing. Writers work
/// meanwhile; once the import is killed, nothing of it is listed and
/// `gc` leaves nothing of it either.
#[test]
fn a_running_import_has_no_record_and_a_killed_one_leaves_nothing() {
    let cs = Cs::new();
    let base = cs.import(&common::tar::every_kind(), &[]);
    let base_digest = export_digest(&cs, &base);

    let mut cmd = cs.command();
    cmd.arg("import-layer")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn import-layer");
    let mut stdin = child.stdin.take().unwrap();
    // Half a tar: a header and some of its content; the importer waits for more.
    let mut t = TarBuilder::new();
    t.header(b"partial", b'0', 10 << 20, b"", &Meta::default(), (0, 0));
    stdin.write_all(&t.out).unwrap();
    stdin.write_all(&vec![0x42u8; 1 << 20]).unwrap();
    stdin.flush().unwrap();
    // Wait until the importer has read it all: the import is under way.
    while unread(&stdin) > 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "import-layer ended before it read its input"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    let ids = |records: Vec<serde_json::Value>| -> Vec<String> {
        records
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(raw_records(&cs)),
        vec![base.clone()],
        "a running import wrote a record"
    );
    // Writers go on meanwhile, and their records never show the import.
    let created = cs.ok(&["create-layer"]);
    let created = created.trim().to_string();
    assert_eq!(ids(raw_records(&cs)), vec![base.clone(), created.clone()]);
    cs.ok(&["delete-layer", &created]);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    assert_eq!(ids(list_layers(&cs)), vec![base.clone()]);
    cs.ok(&["gc"]);
    assert_eq!(
        names_in(&cs.graph().join("manifests")),
        BTreeSet::from([base.clone()]),
        "gc left manifests of no layer"
    );
    assert!(names_in(&cs.graph().join("chunks/tmp")).is_empty());
    assert!(names_in(&cs.graph().join("vfs-layers"))
        .iter()
        .all(|n| !n.starts_with(".tmp-")));
    assert_eq!(export_digest(&cs, &base), base_digest);
    cs.ok(&["check"]);
}
