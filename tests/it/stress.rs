//! Concurrency stress (DESIGN.md section 7): for `CS_STRESS_SECS` seconds
//! (60 by default; seed `CS_STRESS_SEED`), on one store, four importers
//! loop `import-layer` (small random layers sharing some content, so the
//! dedup paths are hit, sometimes on a parent, sometimes with an image),
//! one loop runs `gc`, one deletes images and layers the importers made,
//! and one mounts and unmounts them (overlay as root, else vfs) and reads
//! their files. Every command must succeed or fail with a clean refusal
//! that the concurrent work explains (an item deleted or mounted
//! meanwhile). Afterwards `check` is clean, nothing is mounted, deleted
//! layers are gone, and every committed, not deleted layer exports
//! byte-identically.

use crate::common;
use crate::harness;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::tar::{Meta, TarBuilder};
use common::{first_line_of, Rng};
use harness::{
    id_of, is_container_layer, is_expected_refusal, is_incomplete, number_from_env, seed_from_env,
    shared_blobs, Store,
};
use serde_json::Value;

const IMPORTERS: usize = 4;
/// A command still running after this long is taken for a deadlock.
const HANG: Duration = Duration::from_secs(60);

/// The commands running now: PID -> (arguments, start).
type Running = Mutex<BTreeMap<u32, (Vec<String>, Instant)>>;

/// Runs the binary with `args` like `Store::run`, registered in `running`
/// while it runs so that the watchdog can report and kill a hang.
fn run(st: &Store, running: &Running, args: &[&str]) -> Output {
    let mut cmd = st.command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn containers-storage");
    let pid = child.id();
    running.lock().unwrap().insert(
        pid,
        (args.iter().map(|a| a.to_string()).collect(), Instant::now()),
    );
    let out = child
        .wait_with_output()
        .expect("wait for containers-storage");
    running.lock().unwrap().remove(&pid);
    out
}

/// What a hung process waits for, and the file locks of the store.
fn describe_hang(st: &Store, running: &Running) -> String {
    let mut text = String::new();
    for (pid, (args, started)) in running.lock().unwrap().iter() {
        let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        text.push_str(&format!(
            "  pid {pid}, running {:?}, waiting in {wchan:?}: {args:?}\n",
            started.elapsed()
        ));
    }
    if let Ok(out) = std::process::Command::new("lslocks")
        .args(["-o", "PID,TYPE,MODE,BLOCKER,PATH"])
        .output()
    {
        let graph = st.cs.dir.path().to_string_lossy().into_owned();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains(&graph) {
                text.push_str(&format!("  lock: {line}\n"));
            }
        }
    }
    text
}

/// A layer an importer committed.
#[derive(Clone, Debug)]
struct Entry {
    id: String,
    digest: String,
    parent: Option<String>,
    /// An image on it, if the importer made one.
    image: Option<String>,
    /// The layer's own files (path in the tree, content).
    files: Vec<(String, Vec<u8>)>,
    deleted: bool,
}

#[derive(Default)]
struct Shared {
    entries: Vec<Entry>,
}

impl Shared {
    fn live(&self) -> Vec<&Entry> {
        self.entries.iter().filter(|e| !e.deleted).collect()
    }
}

/// What every loop shares.
#[derive(Clone, Copy)]
struct Cx<'a> {
    st: &'a Store,
    seed: u64,
    stop: &'a AtomicBool,
    shared: &'a Mutex<Shared>,
    blobs: &'a [Vec<u8>],
    counts: &'a Counts,
    running: &'a Running,
}

/// Counts of what the loops did.
#[derive(Default)]
struct Counts {
    imports: AtomicUsize,
    imports_on_parent: AtomicUsize,
    images: AtomicUsize,
    gcs: AtomicUsize,
    layer_deletes: AtomicUsize,
    image_deletes: AtomicUsize,
    mounts: AtomicUsize,
    container_mounts: AtomicUsize,
    refusals: AtomicUsize,
}

fn bump(c: &AtomicUsize) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Fails the test with the command's output unless it succeeded; returns
/// whether it succeeded (false: a clean refusal, counted).
fn accept(out: &Output, what: &str, refusal_ok: bool, counts: &Counts) -> bool {
    if out.status.success() {
        return true;
    }
    let stderr = common::stderr(out);
    let stdout = common::stdout(out);
    if refusal_ok && (is_expected_refusal(&stderr) || is_expected_refusal(&stdout)) {
        bump(&counts.refusals);
        return false;
    }
    panic!(
        "{what} failed ({}) in a way concurrency does not explain\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
}

/// A small layer under `top/`: fresh random content, a repetitive file,
/// one of the shared blobs, a few tiny files.
fn small_layer(rng: &mut Rng, top: &str, shared: &[Vec<u8>]) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let d = Meta {
        mode: 0o755,
        ..Meta::default()
    };
    let m = Meta::default();
    let mut files = Vec::new();
    let mut fresh = vec![0u8; rng.range(1, 150_000) as usize];
    rng.fill(&mut fresh);
    files.push((format!("{top}/fresh.bin"), fresh));
    let line = format!("{top} repeats\n");
    files.push((
        format!("{top}/repeated.txt"),
        line.repeat(rng.range(1, 5000) as usize).into_bytes(),
    ));
    let blob = shared[rng.range(0, shared.len() as u64) as usize].clone();
    files.push((format!("{top}/shared.bin"), blob));
    for i in 0..rng.range(0, 4) {
        files.push((
            format!("{top}/tiny{i}"),
            format!("{top} {i}\n").into_bytes(),
        ));
    }
    let mut t = TarBuilder::new();
    t.dir(&format!("{top}/"), &d);
    for (path, content) in &files {
        t.file(path, &m, content);
    }
    (t.finish(), files)
}

fn importer(cx: &Cx, k: usize) {
    let Cx {
        st,
        seed,
        stop,
        shared,
        blobs,
        counts,
        running,
    } = *cx;
    let mut rng = Rng(seed ^ (0x1000 + k as u64));
    let tar_path = st.scratch_file(&format!("importer{k}.tar"));
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let top = format!("s{k}-{i}");
        let (tar, files) = small_layer(&mut rng, &top, blobs);
        fs::write(&tar_path, &tar).unwrap();
        let parent = if rng.range(0, 3) == 0 {
            let s = shared.lock().unwrap();
            let live = s.live();
            (!live.is_empty()).then(|| live[rng.range(0, live.len() as u64) as usize].id.clone())
        } else {
            None
        };
        let mut args = vec!["import-layer", "-f", tar_path.to_str().unwrap()];
        args.extend(parent.as_deref());
        let out = run(st, running, &args);
        // Only an import onto a parent that is being deleted may be refused.
        if !accept(
            &out,
            &format!("importer {k}: {args:?}"),
            parent.is_some(),
            counts,
        ) {
            i += 1;
            continue;
        }
        let id = first_line_of(&common::stdout(&out));
        bump(&counts.imports);
        if parent.is_some() {
            bump(&counts.imports_on_parent);
        }
        let mut image = None;
        if rng.range(0, 4) == 0 {
            let name = format!("img-{top}");
            let out = run(st, running, &["create-image", "-n", &name, &id]);
            // The deleter may have taken the layer already.
            if accept(
                &out,
                &format!("importer {k}: create-image {name}"),
                true,
                counts,
            ) {
                bump(&counts.images);
                image = Some(name);
            }
        }
        shared.lock().unwrap().entries.push(Entry {
            id,
            digest: common::sha256(&tar),
            parent,
            image,
            files,
            deleted: false,
        });
        i += 1;
    }
}

fn gc_loop(cx: &Cx) {
    let Cx {
        st,
        seed,
        stop,
        counts,
        running,
        ..
    } = *cx;
    let mut rng = Rng(seed ^ 0x2000);
    let evicts = ["policy", "all", "never", "0s"];
    while !stop.load(Ordering::Relaxed) {
        let evict = evicts[rng.range(0, evicts.len() as u64) as usize];
        let out = run(st, running, &["gc", "--evict", evict]);
        accept(&out, &format!("gc --evict {evict}"), false, counts);
        bump(&counts.gcs);
        std::thread::sleep(Duration::from_millis(rng.range(0, 200)));
    }
}

fn deleter(cx: &Cx) {
    let Cx {
        st,
        seed,
        stop,
        shared,
        counts,
        running,
        ..
    } = *cx;
    let mut rng = Rng(seed ^ 0x3000);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(rng.range(0, 60)));
        let victim = {
            let s = shared.lock().unwrap();
            let live = s.live();
            // Leave a few layers for the others to work with.
            if live.len() < 8 {
                continue;
            }
            live[rng.range(0, live.len() as u64) as usize].clone()
        };
        if let Some(image) = victim.image.as_deref().filter(|_| rng.range(0, 3) != 0) {
            let out = run(st, running, &["delete-image", "--json", image]);
            let v: Value = serde_json::from_str(&common::stdout(&out)).unwrap_or_else(|e| {
                panic!(
                    "delete-image {image}: {e}\nstdout: {}\nstderr: {}",
                    common::stdout(&out),
                    common::stderr(&out)
                )
            });
            let error = v[image]["error"].as_str().unwrap_or("").to_string();
            if !error.is_empty() {
                assert!(
                    is_expected_refusal(&error),
                    "delete-image {image} failed in a way concurrency does not explain: {error}"
                );
                bump(&counts.refusals);
                continue;
            }
            assert!(
                out.status.success(),
                "delete-image {image}: {}",
                common::stderr(&out)
            );
            bump(&counts.image_deletes);
            let removed: BTreeSet<String> = v[image]["deleted-layers"]
                .as_array()
                .map(|a| a.iter().map(|l| l.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            let mut s = shared.lock().unwrap();
            for e in s.entries.iter_mut() {
                if removed.contains(&e.id) {
                    e.deleted = true;
                }
                if e.image.as_deref() == Some(image) {
                    e.image = None;
                }
            }
        } else {
            let out = run(st, running, &["delete-layer", &victim.id]);
            if accept(&out, &format!("delete-layer {}", victim.id), true, counts) {
                bump(&counts.layer_deletes);
                let mut s = shared.lock().unwrap();
                for e in s.entries.iter_mut().filter(|e| e.id == victim.id) {
                    e.deleted = true;
                }
            }
        }
    }
}

/// Mounts layers (and images read-only, and containers on images), reads
/// their own files, unmounts.
fn mounter(cx: &Cx) {
    let Cx {
        st,
        seed,
        stop,
        shared,
        counts,
        running,
        ..
    } = *cx;
    let mut rng = Rng(seed ^ 0x4000);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let entry = {
            let s = shared.lock().unwrap();
            let live = s.live();
            if live.is_empty() {
                drop(s);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            live[rng.range(0, live.len() as u64) as usize].clone()
        };
        n += 1;
        let container = format!("stress-c{n}");
        let (mount_args, unmount_arg, is_container): (Vec<&str>, &str, bool) =
            match (entry.image.as_deref(), rng.range(0, 3)) {
                (Some(image), 0) => (vec!["mount", "-r", image], image, false),
                (Some(image), 1) => {
                    let out = run(st, running, &["create-container", "-n", &container, image]);
                    if !accept(&out, &format!("create-container on {image}"), true, counts) {
                        continue;
                    }
                    (vec!["mount", container.as_str()], container.as_str(), true)
                }
                _ => (vec!["mount", entry.id.as_str()], entry.id.as_str(), false),
            };
        let out = run(st, running, &mount_args);
        let what = if out.status.success() {
            String::new()
        } else {
            // Context for a failure: was the layer deleted meanwhile?
            let deleted = shared
                .lock()
                .unwrap()
                .entries
                .iter()
                .any(|e| e.id == entry.id && e.deleted);
            let exists = run(st, running, &["exists", "-l", &entry.id])
                .status
                .success();
            format!(
                "{mount_args:?} (layer {}: marked deleted {deleted}, exists now {exists})",
                entry.id
            )
        };
        if !accept(&out, &what, true, counts) {
            if is_container {
                let out = run(st, running, &["delete-container", &container]);
                accept(&out, "delete-container", false, counts);
            }
            continue;
        }
        bump(if is_container {
            &counts.container_mounts
        } else {
            &counts.mounts
        });
        let path = PathBuf::from(common::stdout(&out).trim());
        // Deletes unmount what they delete, as upstream's do: a layer
        // deleted while mounted takes its files with it.
        let mut deleted_under_us = false;
        for (file, content) in &entry.files {
            let got = match fs::read(path.join(file)) {
                Ok(got) => got,
                Err(_)
                    if !run(st, running, &["exists", "-l", &entry.id])
                        .status
                        .success() =>
                {
                    deleted_under_us = true;
                    break;
                }
                Err(e) => panic!(
                    "{mount_args:?} at {}: {file}: {e} (layer {}, still there)",
                    path.display(),
                    entry.id,
                ),
            };
            assert!(
                got == *content,
                "{mount_args:?} at {}: {file} has the wrong content (layer {})",
                path.display(),
                entry.id
            );
        }
        if deleted_under_us {
            bump(&counts.refusals);
            if is_container {
                let out = run(st, running, &["delete-container", &container]);
                accept(&out, "delete-container", true, counts);
            }
            continue;
        }
        if is_container {
            fs::write(path.join("written-by-the-container"), b"private\n").unwrap();
        }
        let out = run(st, running, &["unmount", unmount_arg]);
        let image_gone = || {
            !is_container
                && entry.image.as_deref() == Some(unmount_arg)
                && !run(st, running, &["exists", "-i", unmount_arg])
                    .status
                    .success()
        };
        // Deletes unmount what they delete, as upstream's do: the
        // layer may be gone by now, and then its unmount is refused.
        let layer_gone = || {
            !is_container
                && !run(st, running, &["exists", "-l", &entry.id])
                    .status
                    .success()
        };
        if !out.status.success() && image_gone() {
            // The image was deleted while mounted (its top layer stays for
            // the layers above it, or goes with a delete that unmounted
            // it), as upstream allows: its name is gone.
            let out = run(st, running, &["unmount", &entry.id]);
            accept(&out, &format!("unmount {}", entry.id), layer_gone(), counts);
        } else {
            let gone = !out.status.success() && layer_gone();
            accept(&out, &format!("unmount {unmount_arg}"), gone, counts);
        }
        if is_container {
            let out = run(st, running, &["delete-container", &container]);
            accept(
                &out,
                &format!("delete-container {container}"),
                false,
                counts,
            );
        }
    }
}

/// Every entry exports byte-identically (two exports at a time).
fn export_all(st: &Store, entries: &[&Entry], when: &str) {
    std::thread::scope(|s| {
        for half in entries.chunks(entries.len().div_ceil(2).max(1)) {
            s.spawn(move || {
                for e in half {
                    assert_eq!(
                        st.export_digest(&e.id),
                        e.digest,
                        "layer {} changed ({when})",
                        e.id
                    );
                }
            });
        }
    });
}

#[test]
fn importers_gc_deleter_and_mounter_share_one_store() {
    let secs = number_from_env("CS_STRESS_SECS", 60);
    let seed = seed_from_env("CS_STRESS_SEED", "stress");
    let driver = if nix::unistd::geteuid().is_root() {
        "overlay"
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the overlay stress run must happen in CI, which is root"
        );
        eprintln!("stress: not root, so the vfs driver (overlay mounts need root)");
        "vfs"
    };
    let st = Store::new(driver);
    st.ok(&["layers"]);
    let blobs = shared_blobs(seed, 6, 64 << 10);
    let shared = Mutex::new(Shared::default());
    let counts = Counts::default();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let running = Running::default();
    let cx = Cx {
        st: &st,
        seed,
        stop: &stop,
        shared: &shared,
        blobs: &blobs,
        counts: &counts,
        running: &running,
    };
    let mut hang = None;
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for k in 0..IMPORTERS {
            handles.push(s.spawn(move || importer(&cx, k)));
        }
        handles.push(s.spawn(move || gc_loop(&cx)));
        handles.push(s.spawn(move || deleter(&cx)));
        handles.push(s.spawn(move || mounter(&cx)));
        // Stop everyone at the deadline, or as soon as one loop fails;
        // a command that runs for a minute is a deadlock: report what it
        // waits for, then kill it so that the loops end.
        let deadline = started + Duration::from_secs(secs);
        loop {
            let finished = handles.iter().all(|h| h.is_finished());
            if finished {
                break;
            }
            if Instant::now() >= deadline || handles.iter().any(|h| h.is_finished()) {
                stop.store(true, Ordering::Relaxed);
            }
            let hung: Vec<u32> = running
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, (_, t))| t.elapsed() > HANG)
                .map(|(pid, _)| *pid)
                .collect();
            if !hung.is_empty() {
                stop.store(true, Ordering::Relaxed);
                hang.get_or_insert_with(|| describe_hang(&st, &running));
                for pid in running.lock().unwrap().keys() {
                    // Our own children, still registered (not yet reaped).
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(*pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(text) = &hang {
            panic!("commands hung for over {HANG:?} (a deadlock?):\n{text}");
        }
        let mut failure = None;
        for h in handles {
            if let Err(p) = h.join() {
                failure.get_or_insert(p);
            }
        }
        if let Some(p) = failure {
            std::panic::resume_unwind(p);
        }
    });
    let c = |a: &AtomicUsize| a.load(Ordering::Relaxed);
    eprintln!(
        "stress ({driver}, {:?}): {} imports ({} on a parent), {} images, {} gc runs, \
         {} layer and {} image deletes, {} layer/image mounts, {} container mounts, \
         {} clean refusals",
        started.elapsed(),
        c(&counts.imports),
        c(&counts.imports_on_parent),
        c(&counts.images),
        c(&counts.gcs),
        c(&counts.layer_deletes),
        c(&counts.image_deletes),
        c(&counts.mounts),
        c(&counts.container_mounts),
        c(&counts.refusals)
    );

    // Nothing is left mounted (every mount was unmounted by its loop).
    let mounts = st.raw_mounts();
    assert!(mounts.is_empty(), "mount records remain: {mounts:?}");
    assert!(
        st.kernel_mounts().is_empty(),
        "kernel mounts remain: {:?}",
        st.kernel_mounts()
    );

    let entries = shared.into_inner().unwrap().entries;
    let listed = st.layers();
    let mut listed_ids = BTreeMap::new();
    for l in &listed {
        assert!(
            !is_incomplete(l),
            "incomplete layer listed after the run: {l}"
        );
        listed_ids.insert(id_of(l), l.clone());
    }
    st.check_clean("stress: after the run");
    let committed: BTreeSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    for (id, l) in &listed_ids {
        assert!(
            committed.contains(id.as_str()) || is_container_layer(l),
            "layer {id} is listed but no importer committed it: {l}"
        );
    }
    let mut live: Vec<&Entry> = Vec::new();
    for e in &entries {
        if e.deleted {
            assert!(
                !listed_ids.contains_key(&e.id),
                "deleted layer {} is listed",
                e.id
            );
            continue;
        }
        let l = listed_ids
            .get(&e.id)
            .unwrap_or_else(|| panic!("committed layer {} is gone", e.id));
        let parent = l["parent"].as_str().filter(|p| !p.is_empty());
        assert_eq!(parent, e.parent.as_deref(), "layer {}: parent", e.id);
        live.push(e);
    }
    export_all(&st, &live, "after the run");
    eprintln!(
        "stress: {} layers committed, {} deleted, {} exported byte-identically",
        entries.len(),
        entries.iter().filter(|e| e.deleted).count(),
        live.len()
    );
    assert!(c(&counts.imports) >= IMPORTERS, "the importers hardly ran");
    assert!(c(&counts.gcs) > 0, "gc never ran");
    // After everything, gc and check again: still clean, and a sample of
    // the layers still intact.
    st.ok(&["gc", "--evict", "all"]);
    st.check_clean("stress: after a final gc");
    let mut rng = Rng(seed ^ 0x5000);
    let sample: Vec<&Entry> = (0..live.len().min(64))
        .map(|_| live[rng.range(0, live.len() as u64) as usize])
        .collect();
    export_all(&st, &sample, "after a final gc");
}
