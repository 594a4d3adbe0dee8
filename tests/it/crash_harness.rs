//! Crash harness (DESIGN.md section 7): `import-layer`, `applydiff`,
//! `delete-image`, `delete-container`, `gc`, `mount` and `unmount` are
//! killed with SIGKILL at random moments (seeded: `CS_CRASH_SEED`; trial
//! count: `CS_CRASH_TRIALS`, 210 by default, spread over the seven
//! commands), each in a store of its own that grows and shrinks as the
//! trials go. After every kill the store must open, `check` must report
//! nothing, every layer committed before the kill must still export
//! byte-identically (the ones the command touched after every trial, all
//! of them every few trials), a killed delete must have happened wholly or
//! not at all, and after a killed mount or unmount, `unmount -f` or
//! `shutdown -f` must leave no mount behind while mounts show the right
//! tree. Overlay mounts need root; elsewhere the mount trials use vfs only.
//!
//! Every kill is classified by what the killed process left (read from
//! the record files before anything reopens the store): `before` (no
//! durable effect), `during` (a partial effect: an incomplete record, new
//! pool data, a half-built directory, an image record gone while its
//! layers remain), `committed` (the effect is durable, the process had not
//! exited yet) or `exited` (the process had finished).

use crate::common;
use crate::harness;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::tar::{Meta, TarBuilder};
use common::tree::{differences, extract, snapshot};
use common::{first_line_of, Rng};
use harness::{
    count_entries, id_of, is_container_layer, is_incomplete, is_mount_point, layer_tar, names_in,
    number_from_env, pick_delay, run_and_kill, seed_from_env, shared_blobs, time_command, Store,
};
use serde_json::Value;

/// Default trials over all seven commands, and each command's share.
const DEFAULT_TRIALS: u64 = 210;
const WEIGHTS: [(&str, u64); 7] = [
    ("import-layer", 40),
    ("applydiff", 30),
    ("delete-image", 30),
    ("delete-container", 30),
    ("gc", 30),
    ("mount", 25),
    ("unmount", 25),
];
/// Every this many trials, every committed layer is exported and
/// compared, and an uninterrupted `gc` must leave no leftovers.
const FULL_CHECK_EVERY: u64 = 10;

fn trials(command: &str) -> u64 {
    let total = number_from_env("CS_CRASH_TRIALS", DEFAULT_TRIALS);
    let sum: u64 = WEIGHTS.iter().map(|(_, w)| w).sum();
    let weight = WEIGHTS.iter().find(|(c, _)| *c == command).unwrap().1;
    ((total * weight + sum / 2) / sum).max(1)
}

/// The seed of one command's trials: `CS_CRASH_SEED` (or the clock),
/// mixed with the command's name.
fn seed(command: &str) -> u64 {
    let base = seed_from_env("CS_CRASH_SEED", &format!("crash harness, {command}"));
    command
        .bytes()
        .fold(base, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Where a kill landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Landed {
    Before,
    During,
    Committed,
    Exited,
}

#[derive(Default)]
struct Tally {
    counts: [usize; 4],
}

impl Tally {
    fn add(&mut self, landed: Landed) {
        self.counts[landed as usize] += 1;
    }

    fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Prints the distribution and requires that kills both interrupted
    /// the command and came after its effect (else the delays are off and
    /// the trials prove little).
    fn report(&self, what: &str, started: Instant) {
        let [before, during, committed, exited] = self.counts;
        eprintln!(
            "{what}: {} trials in {:?}: {before} killed before any effect, {during} during, \
             {committed} after the commit (before exit), {exited} after the exit",
            self.total(),
            started.elapsed()
        );
        if self.total() >= 8 {
            assert!(
                before + during + committed > 0,
                "{what}: no kill interrupted the command; the delays are too long"
            );
            assert!(
                before + during < self.total(),
                "{what}: no command ever took effect; the delays are too short"
            );
        }
    }
}

/// Follows the command's real duration, which drifts from the first
/// measurement as a store grows: a kill late in the range that still found
/// it running stretches the range; an early exit shrinks it.
fn adapt(typical: &mut Duration, delay: Duration, exited: bool) {
    if !exited && delay > typical.mul_f64(0.8) {
        *typical = delay.mul_f64(1.25);
    } else if exited && delay < typical.mul_f64(0.5) {
        *typical = typical.mul_f64(0.8).max(delay);
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The committed layers of a store and their expected `diff -u` digests.
type Model = BTreeMap<String, String>;

/// After a kill: the store opens (`layers`, which removes incomplete
/// layers), lists no incomplete layer, lists every committed layer and no
/// other (container layers and `untracked` aside), `check` reports
/// nothing, and `affected` (or, with `full`, all) committed layers export
/// byte-identically.
fn verify(
    st: &Store,
    model: &Model,
    untracked: &BTreeSet<String>,
    affected: &[String],
    full: bool,
    ctx: &str,
) {
    let listed = st.layers();
    let mut ids = BTreeSet::new();
    for l in &listed {
        assert!(
            !is_incomplete(l),
            "{ctx}: incomplete layer still listed: {l}"
        );
        let id = id_of(l);
        assert!(
            model.contains_key(&id) || untracked.contains(&id) || is_container_layer(l),
            "{ctx}: layer {id} is listed but was never committed: {l}"
        );
        ids.insert(id);
    }
    for id in model.keys() {
        assert!(ids.contains(id), "{ctx}: committed layer {id} is gone");
    }
    st.check_clean(ctx);
    let check: Vec<&String> = if full {
        model.keys().collect()
    } else {
        affected
            .iter()
            .filter(|id| model.contains_key(*id))
            .collect()
    };
    for id in check {
        assert_eq!(
            &st.export_digest(id),
            &model[id],
            "{ctx}: layer {id} no longer exports byte-identically"
        );
    }
}

/// Runs an uninterrupted `gc`; afterwards `manifests/` holds exactly one
/// manifest per sealed layer and no temporary file, and no import marker
/// or unpublished pack remains (what killed commands leave is gc's to
/// remove). Depends on the real `gc`.
fn gc_leaves_no_leftovers(st: &Store, ctx: &str) {
    st.ok(&["gc"]);
    let listed = st.layers();
    let sealed: BTreeSet<String> = listed
        .iter()
        .filter(|l| l["sealed"].as_bool() == Some(true))
        .map(id_of)
        .collect();
    let manifests = names_in(&st.graph().join("manifests"));
    assert_eq!(
        manifests, sealed,
        "{ctx}: after gc, manifests/ does not hold exactly one manifest per sealed layer"
    );
    let markers = names_in(&st.graph().join(format!("{}-layers/.incomplete", st.driver)));
    let listed_ids: BTreeSet<String> = listed.iter().map(id_of).collect();
    let of_listed: Vec<&String> = markers
        .iter()
        .filter(|m| listed_ids.contains(m.trim_end_matches(".lock")))
        .collect();
    assert!(
        markers.is_empty(),
        "{ctx}: after gc, import markers remain: {markers:?} (of listed layers: {of_listed:?})"
    );
    let packs = names_in(&st.graph().join("chunks/tmp"));
    assert!(
        packs.is_empty(),
        "{ctx}: after gc, unpublished packs remain: {packs:?}"
    );
}

/// Picks a random key.
fn pick<'a, T>(rng: &mut Rng, items: impl IntoIterator<Item = &'a T>) -> Option<&'a T>
where
    T: 'a,
{
    let v: Vec<&T> = items.into_iter().collect();
    if v.is_empty() {
        None
    } else {
        Some(v[rng.range(0, v.len() as u64) as usize])
    }
}

/// Size of the fresh random part of a crash-trial layer (the tar is about
/// twice this: a repetitive file of the same size rides along).
fn fresh_size(rng: &mut Rng) -> usize {
    rng.range(1 << 20, 3 << 20) as usize
}

/// A crash-trial layer tar (see `fresh_size`) and its sha256.
fn fresh_layer(rng: &mut Rng, top: &str, shared: &[Vec<u8>]) -> (Vec<u8>, String) {
    let size = fresh_size(rng);
    layer_tar(rng, top, size, shared)
}

// ---------------------------------------------------------------------
// import-layer
// ---------------------------------------------------------------------

#[test]
fn killed_import_layer_leaves_no_trace_or_a_whole_layer() {
    let started = Instant::now();
    let mut rng = Rng(seed("import-layer"));
    let n = trials("import-layer");
    let st = Store::new("vfs");
    let scratch = st.scratch_file("kill");
    let shared = shared_blobs(rng.next(), 4, 512 << 10);
    let mut model = Model::new();
    let mut parents: BTreeMap<String, Option<String>> = BTreeMap::new();
    let tar_path = st.scratch_file("layer.tar");

    let mut times = Vec::new();
    for i in 0..3 {
        let (tar, digest) = fresh_layer(&mut rng, &format!("base{i}"), &shared);
        fs::write(&tar_path, &tar).unwrap();
        let mut cmd = st.command();
        cmd.args(["import-layer", "-f", tar_path.to_str().unwrap()]);
        let (took, out) = time_command(cmd, "import-layer");
        times.push(took);
        let id = first_line_of(&out);
        assert_eq!(st.export_digest(&id), digest);
        model.insert(id.clone(), digest);
        parents.insert(id, None);
    }
    let mut typical = median(times);
    eprintln!("import-layer: an uninterrupted import of 2-6 MiB takes {typical:?}");

    let mut tally = Tally::default();
    for trial in 0..n {
        let ctx = format!("import-layer trial {trial}");
        let (tar, digest) = fresh_layer(&mut rng, &format!("t{trial}"), &shared);
        fs::write(&tar_path, &tar).unwrap();
        let parent = if rng.range(0, 3) == 0 {
            pick(&mut rng, model.keys()).cloned()
        } else {
            None
        };
        let known: BTreeSet<String> = st.raw_records("layers").iter().map(id_of).collect();
        let mut cmd = st.command();
        cmd.args(["import-layer", "-f", tar_path.to_str().unwrap()]);
        cmd.args(parent.iter());
        let delay = pick_delay(&mut rng, typical);
        let ended = run_and_kill(cmd, delay, &scratch);
        let printed = ended.success_stdout(&ctx).map(first_line_of);
        adapt(&mut typical, delay, printed.is_some());

        let new: Vec<Value> = st
            .raw_records("layers")
            .into_iter()
            .filter(|l| !known.contains(&id_of(l)))
            .collect();
        assert!(new.len() <= 1, "{ctx}: more than one new record: {new:?}");
        let landed = match (&printed, new.first()) {
            (Some(id), record) => {
                let record = record.unwrap_or_else(|| panic!("{ctx}: exited 0, no record"));
                assert_eq!(&id_of(record), id, "{ctx}");
                assert!(!is_incomplete(record), "{ctx}: exited 0, record {record}");
                Landed::Exited
            }
            (None, None) => Landed::Before,
            (None, Some(l)) if is_incomplete(l) => Landed::During,
            (None, Some(_)) => Landed::Committed,
        };
        tally.add(landed);
        let mut affected: Vec<String> = parent.iter().cloned().collect();
        if matches!(landed, Landed::Committed | Landed::Exited) {
            let record = new[0].clone();
            let id = id_of(&record);
            assert_eq!(record["sealed"].as_bool(), Some(true), "{ctx}: {record}");
            assert_eq!(
                record["diff-digest"].as_str(),
                Some(digest.as_str()),
                "{ctx}"
            );
            let recorded_parent = record["parent"].as_str().filter(|p| !p.is_empty());
            assert_eq!(recorded_parent, parent.as_deref(), "{ctx}: parent");
            model.insert(id.clone(), digest);
            parents.insert(id.clone(), parent.clone());
            affected.push(id);
        }
        let full = trial % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1;
        verify(&st, &model, &BTreeSet::new(), &affected, full, &ctx);
        if full {
            gc_leaves_no_leftovers(&st, &ctx);
        }
        eprintln!("{ctx}: kill after {delay:?} landed {landed:?}");

        // Shrink: delete leaf layers once the store holds more than ten.
        while model.len() > 10 {
            let leaves: Vec<String> = model
                .keys()
                .filter(|id| !parents.values().any(|p| p.as_ref() == Some(*id)))
                .cloned()
                .collect();
            let victim = pick(&mut rng, &leaves).unwrap().clone();
            st.ok(&["delete-layer", &victim]);
            model.remove(&victim);
            parents.remove(&victim);
        }
    }
    verify(
        &st,
        &model,
        &BTreeSet::new(),
        &[],
        true,
        "import-layer: end",
    );
    tally.report("import-layer", started);
}

// ---------------------------------------------------------------------
// applydiff
// ---------------------------------------------------------------------

/// Whether a `diff -u` output is an archive with no entries.
fn is_empty_tar(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| b == 0)
}

#[test]
fn killed_applydiff_leaves_the_layer_empty_or_whole() {
    // An empty layer on a parent starts as the parent's tree, owners
    // included (root's): without root it shows every file changed.
    if !common::need_root("a vfs tree copied with its owners") {
        return;
    }
    let started = Instant::now();
    let mut rng = Rng(seed("applydiff"));
    let n = trials("applydiff");
    let st = Store::new("vfs");
    let scratch = st.scratch_file("kill");
    let shared = shared_blobs(rng.next(), 4, 512 << 10);
    let tar_path = st.scratch_file("layer.tar");
    let mut model = Model::new();
    let mut parents: BTreeMap<String, Option<String>> = BTreeMap::new();

    let mut times = Vec::new();
    for i in 0..3 {
        let (tar, digest) = fresh_layer(&mut rng, &format!("base{i}"), &shared);
        fs::write(&tar_path, &tar).unwrap();
        let id = first_line_of(&st.ok(&["create-layer"]));
        let mut cmd = st.command();
        cmd.args(["applydiff", "-f", tar_path.to_str().unwrap(), &id]);
        times.push(time_command(cmd, "applydiff").0);
        assert_eq!(st.export_digest(&id), digest);
        model.insert(id.clone(), digest);
        parents.insert(id, None);
    }
    let mut typical = median(times);
    eprintln!("applydiff: an uninterrupted applydiff of 2-6 MiB takes {typical:?}");

    let mut tally = Tally::default();
    let mut retried = 0;
    for trial in 0..n {
        let ctx = format!("applydiff trial {trial}");
        let (tar, digest) = fresh_layer(&mut rng, &format!("t{trial}"), &shared);
        fs::write(&tar_path, &tar).unwrap();
        let parent = if rng.range(0, 3) == 0 {
            pick(&mut rng, model.keys()).cloned()
        } else {
            None
        };
        let mut args = vec!["create-layer"];
        args.extend(parent.as_deref());
        let id = first_line_of(&st.ok(&args));
        let pool_before = count_entries(&st.graph().join("chunks"));
        let mut cmd = st.command();
        cmd.args(["applydiff", "-f", tar_path.to_str().unwrap(), &id]);
        let delay = pick_delay(&mut rng, typical);
        let ended = run_and_kill(cmd, delay, &scratch);
        let exited = ended.success_stdout(&ctx).is_some();
        adapt(&mut typical, delay, exited);

        let record = st
            .raw_records("layers")
            .into_iter()
            .find(|l| id_of(l) == id)
            .unwrap_or_else(|| panic!("{ctx}: the layer's record is gone"));
        let sealed = record["sealed"].as_bool() == Some(true);
        let landed = if exited {
            Landed::Exited
        } else if sealed {
            Landed::Committed
        } else if st.graph().join("manifests").join(&id).exists()
            || count_entries(&st.graph().join("chunks")) != pool_before
        {
            Landed::During
        } else {
            Landed::Before
        };
        tally.add(landed);
        assert_eq!(
            sealed,
            landed >= Landed::Committed || exited,
            "{ctx}: {record}"
        );
        if sealed {
            assert_eq!(
                record["diff-digest"].as_str(),
                Some(digest.as_str()),
                "{ctx}"
            );
            model.insert(id.clone(), digest.clone());
            parents.insert(id.clone(), parent.clone());
            let affected = [id.clone()];
            verify(&st, &model, &BTreeSet::new(), &affected, false, &ctx);
        } else {
            // Not applied: the layer is still an empty live layer, and
            // applying the diff again works.
            let untracked = BTreeSet::from([id.clone()]);
            verify(&st, &model, &untracked, &[], false, &ctx);
            let out = st.run(&["diff", "-u", &id], None);
            common::expect_status(&out, &["diff", "-u", &id], 0);
            assert!(
                is_empty_tar(&out.stdout),
                "{ctx}: a killed applydiff left content in layer {id}"
            );
            st.ok(&["applydiff", "-f", tar_path.to_str().unwrap(), &id]);
            retried += 1;
            model.insert(id.clone(), digest.clone());
            parents.insert(id.clone(), parent.clone());
            verify(
                &st,
                &model,
                &BTreeSet::new(),
                std::slice::from_ref(&id),
                false,
                &ctx,
            );
        }
        let full = trial % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1;
        if full {
            verify(&st, &model, &BTreeSet::new(), &[], true, &ctx);
            gc_leaves_no_leftovers(&st, &ctx);
        }
        eprintln!("{ctx}: kill after {delay:?} landed {landed:?}");
        while model.len() > 10 {
            let leaves: Vec<String> = model
                .keys()
                .filter(|id| !parents.values().any(|p| p.as_ref() == Some(*id)))
                .cloned()
                .collect();
            let victim = pick(&mut rng, &leaves).unwrap().clone();
            st.ok(&["delete-layer", &victim]);
            model.remove(&victim);
            parents.remove(&victim);
        }
    }
    verify(&st, &model, &BTreeSet::new(), &[], true, "applydiff: end");
    eprintln!("applydiff: {retried} layers left empty by a kill were applied again");
    tally.report("applydiff", started);
}

// ---------------------------------------------------------------------
// delete-image
// ---------------------------------------------------------------------

struct Image {
    name: String,
    id: String,
    /// The image's own layers, top first (not the shared base).
    layers: Vec<String>,
    data: Vec<u8>,
}

/// Creates an image of 1-3 new layers on `base`; sometimes mounts and
/// unmounts it so that it has materialized directories to remove.
fn make_image(
    st: &Store,
    rng: &mut Rng,
    base: &str,
    shared: &[Vec<u8>],
    model: &mut Model,
    name: &str,
) -> Image {
    let mut parent = base.to_string();
    let mut layers = Vec::new();
    for i in 0..rng.range(1, 4) {
        let size = rng.range(256 << 10, 1 << 20) as usize;
        let (tar, digest) = layer_tar(rng, &format!("{name}-{i}"), size, shared);
        let id = st.import(&tar, Some(&parent));
        model.insert(id.clone(), digest);
        layers.insert(0, id.clone());
        parent = id;
    }
    let id = first_line_of(&st.ok(&["create-image", "-n", name, &parent]));
    let data = format!("{{\"manifest\":\"{name}\",\"n\":{}}}", rng.next()).into_bytes();
    st.ok_with_input(&["set-image-data", name, "manifest"], &data);
    if rng.range(0, 2) == 0 {
        st.ok(&["mount", "-r", name]);
        st.ok(&["unmount", name]);
    }
    Image {
        name: name.to_string(),
        id,
        layers,
        data,
    }
}

/// The layers `delete-image -t` says deleting `name` would remove.
fn doomed_layers(st: &Store, name: &str) -> Vec<String> {
    let out = st.ok(&["delete-image", "-t", "--json", name]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
    let entry = &v[name];
    assert_eq!(entry["error"].as_str().unwrap_or(""), "", "{out}");
    entry["deleted-layers"]
        .as_array()
        .map(|a| a.iter().map(|l| l.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn killed_delete_image_deletes_wholly_or_not_at_all() {
    let started = Instant::now();
    let mut rng = Rng(seed("delete-image"));
    let n = trials("delete-image");
    let st = Store::new("vfs");
    let scratch = st.scratch_file("kill");
    let shared = shared_blobs(rng.next(), 4, 256 << 10);
    let mut model = Model::new();
    // A base layer every image builds on, kept by an image never deleted.
    let (tar, digest) = layer_tar(&mut rng, "base", 2 << 20, &shared);
    let base = st.import(&tar, None);
    model.insert(base.clone(), digest);
    st.ok(&["create-image", "-n", "keep", &base]);

    let mut images: Vec<Image> = Vec::new();
    let mut times = Vec::new();
    for i in 0..3 {
        let name = format!("calib{i}");
        let img = make_image(&st, &mut rng, &base, &shared, &mut model, &name);
        let mut cmd = st.command();
        cmd.args(["delete-image", &name]);
        times.push(time_command(cmd, "delete-image").0);
        for l in &img.layers {
            model.remove(l);
        }
    }
    let mut typical = median(times);
    eprintln!("delete-image: an uninterrupted delete-image takes {typical:?}");

    let mut tally = Tally::default();
    let mut orphans_seen = 0;
    for trial in 0..n {
        let ctx = format!("delete-image trial {trial}");
        // Usually a new image; sometimes a twin sharing another's top
        // layer (its delete removes no layer), or an older image.
        match rng.range(0, 6) {
            0 if !images.is_empty() => {
                let other = &images[rng.range(0, images.len() as u64) as usize];
                let name = format!("twin{trial}");
                let top = other.layers[0].clone();
                let id = first_line_of(&st.ok(&["create-image", "-n", &name, &top]));
                let data = format!("twin {trial}").into_bytes();
                st.ok_with_input(&["set-image-data", &name, "manifest"], &data);
                images.push(Image {
                    name,
                    id,
                    layers: other.layers.clone(),
                    data,
                });
            }
            1 if !images.is_empty() => {}
            _ => {
                let name = format!("img{trial}");
                let img = make_image(&st, &mut rng, &base, &shared, &mut model, &name);
                images.push(img);
            }
        }
        let target = if rng.range(0, 4) == 0 {
            rng.range(0, images.len() as u64) as usize
        } else {
            images.len() - 1
        };
        let name = images[target].name.clone();
        let doomed = doomed_layers(&st, &name);
        for l in &doomed {
            assert!(
                images[target].layers.contains(l),
                "{ctx}: {l} is not {name}'s own"
            );
        }

        let mut cmd = st.command();
        cmd.args(["delete-image", &name]);
        let delay = pick_delay(&mut rng, typical);
        let ended = run_and_kill(cmd, delay, &scratch);
        let exited = ended.success_stdout(&ctx).is_some();
        adapt(&mut typical, delay, exited);

        let image_ids: BTreeSet<String> = st.raw_records("images").iter().map(id_of).collect();
        let layer_ids: BTreeSet<String> = st.raw_records("layers").iter().map(id_of).collect();
        let image_present = image_ids.contains(&images[target].id);
        let doomed_present = doomed.iter().filter(|l| layer_ids.contains(*l)).count();
        if image_present {
            assert_eq!(
                doomed_present,
                doomed.len(),
                "{ctx}: image {name} is still there but some of its layers are gone"
            );
            assert!(
                !exited,
                "{ctx}: delete-image exited 0 but the image remains"
            );
        } else {
            assert!(
                doomed_present == 0 || doomed_present == doomed.len(),
                "{ctx}: {doomed_present} of the {} layers of deleted image {name} remain",
                doomed.len()
            );
        }
        let landed = match (image_present, doomed_present > 0, exited) {
            (_, _, true) => Landed::Exited,
            (true, _, false) => Landed::Before,
            (false, true, false) => Landed::During,
            (false, false, false) => Landed::Committed,
        };
        tally.add(landed);
        if exited {
            assert_eq!(doomed_present, 0, "{ctx}: exited 0 but layers remain");
        }

        let img = &images[target];
        let mut affected: Vec<String> = img.layers.clone();
        affected.push(base.clone());
        if image_present {
            verify(&st, &model, &BTreeSet::new(), &affected, false, &ctx);
            // The image still works: its record, data and layers.
            let v: Value = serde_json::from_str(&st.ok(&["image", "--json", &name])).unwrap();
            assert_eq!(v[0]["id"].as_str(), Some(img.id.as_str()), "{ctx}");
            let out = st.run(&["get-image-data", &name, "manifest"], None);
            common::expect_status(&out, &["get-image-data", &name, "manifest"], 0);
            assert_eq!(out.stdout, img.data, "{ctx}: image data changed");
        } else {
            let out = st.run(&["image", &name], None);
            assert!(
                !out.status.success(),
                "{ctx}: image {name} is listed after its delete"
            );
            // Layers the delete did not get to are ordinary layers still.
            if doomed_present == 0 {
                for l in &doomed {
                    model.remove(l);
                }
            } else {
                orphans_seen += 1;
            }
            verify(&st, &model, &BTreeSet::new(), &affected, false, &ctx);
            // Tidy up: remove the orphans (top first) and the image.
            if doomed_present > 0 {
                for l in &doomed {
                    st.ok(&["delete-layer", l]);
                    model.remove(l);
                }
            }
            images.remove(target);
        }
        let full = trial % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1;
        if full {
            verify(&st, &model, &BTreeSet::new(), &[], true, &ctx);
            gc_leaves_no_leftovers(&st, &ctx);
        }
        eprintln!("{ctx}: kill after {delay:?} landed {landed:?}");
        while images.len() > 6 {
            let img = images.remove(0);
            let doomed = doomed_layers(&st, &img.name);
            st.ok(&["delete-image", &img.name]);
            for l in doomed {
                model.remove(&l);
            }
        }
    }
    verify(
        &st,
        &model,
        &BTreeSet::new(),
        &[],
        true,
        "delete-image: end",
    );
    eprintln!("delete-image: {orphans_seen} kills left a deleted image's layers behind");
    tally.report("delete-image", started);
}

// ---------------------------------------------------------------------
// Trees for the container and mount trials
// ---------------------------------------------------------------------

/// A base layer and a diff over it (with a whiteout), the image `img` on
/// them, and the expected tree of a container or mount of `img`.
struct Fixture {
    expected: PathBuf,
    base: String,
    top: String,
}

fn fixture(st: &Store, rng: &mut Rng) -> Fixture {
    let m = Meta::default();
    let d = Meta {
        mode: 0o755,
        ..Meta::default()
    };
    let mut base = TarBuilder::new();
    base.dir("etc/", &d);
    base.file("etc/os-release", &m, b"base\n");
    base.file("etc/gone", &m, b"to be deleted");
    base.dir("usr/", &d);
    let mut big = vec![0u8; 2 << 20];
    rng.fill(&mut big);
    base.file("usr/big", &d, &big);
    base.file(
        "usr/text",
        &m,
        "text that repeats\n".repeat(60_000).as_bytes(),
    );
    for i in 0..40 {
        base.file(
            &format!("usr/f{i}"),
            &m,
            &common::random_bytes(rng.next(), 2000 + i * 100),
        );
    }
    base.symlink("bin", "usr", &m);
    let mut diff = TarBuilder::new();
    diff.file("etc/os-release", &m, b"changed\n");
    diff.whiteout("etc", "gone");
    diff.file("usr/new", &m, &common::random_bytes(rng.next(), 300_000));
    let (base, diff) = (base.finish(), diff.finish());
    let dir = st.cs.dir.path();
    fs::write(dir.join("base.tar"), &base).unwrap();
    fs::write(dir.join("diff.tar"), &diff).unwrap();
    let b = st.import(&base, None);
    let t = st.import(&diff, Some(&b));
    st.ok(&["create-image", "-n", "img", &t]);
    let expected = dir.join("expected");
    extract_tree(&dir.join("base.tar"), &expected);
    extract_tree(&dir.join("diff.tar"), &expected);
    fs::remove_file(expected.join("etc/.wh.gone")).unwrap();
    fs::remove_file(expected.join("etc/gone")).unwrap();
    Fixture {
        expected,
        base: b,
        top: t,
    }
}

/// `tar -x` of a fixture tar: keeping owners as root, else as the user
/// (a rootless store cannot keep them either).
fn extract_tree(tar: &Path, dir: &Path) {
    if nix::unistd::geteuid().is_root() {
        return extract(tar, dir);
    }
    fs::create_dir_all(dir).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-xpf")
        .arg(tar)
        .arg("-C")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar -x: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compares a mounted tree with the expected one (directory times aside:
/// they change as entries come and go), plus `extra` files written later.
fn compare_tree(expected: &Path, got: &Path, extra: &[(&str, &[u8])], ctx: &str) {
    let mut want = snapshot(expected);
    let mut have = snapshot(got);
    for (name, content) in extra {
        let path = PathBuf::from(name);
        let node = have
            .remove(&path)
            .unwrap_or_else(|| panic!("{ctx}: {name} is missing from {}", got.display()));
        assert_eq!(node.size, content.len() as u64, "{ctx}: {name}");
        assert_eq!(fs::read(got.join(name)).unwrap(), *content, "{ctx}: {name}");
    }
    let rootless = !nix::unistd::geteuid().is_root();
    for map in [&mut want, &mut have] {
        for node in map.values_mut() {
            if node.kind == "dir" {
                node.mtime = (0, 0);
            }
            if rootless {
                (node.uid, node.gid) = (0, 0);
            }
        }
    }
    let diff = differences(&want, &have);
    assert!(
        diff.is_empty(),
        "{ctx}: {} differs:\n{}",
        got.display(),
        diff.join("\n")
    );
}

// ---------------------------------------------------------------------
// delete-container
// ---------------------------------------------------------------------

struct Container {
    name: String,
    id: String,
    layer: String,
    /// A file written into the container through a mount, if any.
    marker: Option<(String, Vec<u8>)>,
}

#[test]
fn killed_delete_container_deletes_wholly_or_not_at_all() {
    let started = Instant::now();
    let mut rng = Rng(seed("delete-container"));
    let n = trials("delete-container");
    let st = Store::new("vfs");
    let scratch = st.scratch_file("kill");
    let fx = fixture(&st, &mut rng);
    let mut model = Model::new();
    for id in [&fx.base, &fx.top] {
        let digest = st.export_digest(id);
        model.insert(id.clone(), digest);
    }
    let image_layers = vec![fx.base.clone(), fx.top.clone()];

    let create = |st: &Store, rng: &mut Rng, name: &str| -> Container {
        let id = first_line_of(&st.ok(&["create-container", "-n", name, "img"]));
        let record = st
            .raw_records("containers")
            .into_iter()
            .find(|c| id_of(c) == id)
            .unwrap();
        let layer = record["layer"].as_str().unwrap().to_string();
        // Mostly mount it and write into it, so the delete has a tree to
        // remove (a wider window between its record writes).
        let marker = if rng.range(0, 4) != 0 {
            let path = PathBuf::from(st.ok(&["mount", name]).trim());
            let content = common::random_bytes(rng.next(), rng.range(0, 100_000) as usize);
            let file = format!("marker-{name}");
            fs::write(path.join(&file), &content).unwrap();
            st.ok(&["unmount", name]);
            Some((file, content))
        } else {
            None
        };
        Container {
            name: name.to_string(),
            id,
            layer,
            marker,
        }
    };

    let mut times = Vec::new();
    for i in 0..3 {
        let c = create(&st, &mut rng, &format!("calib{i}"));
        let mut cmd = st.command();
        cmd.args(["delete-container", &c.name]);
        times.push(time_command(cmd, "delete-container").0);
    }
    let mut typical = median(times);
    eprintln!("delete-container: an uninterrupted delete-container takes {typical:?}");

    let mut containers: Vec<Container> = Vec::new();
    let mut tally = Tally::default();
    for trial in 0..n {
        let ctx = format!("delete-container trial {trial}");
        if containers.is_empty() || rng.range(0, 4) != 0 {
            // Not a hex prefix: once deleted, the name must not resolve
            // to another container whose ID happens to start with it.
            let c = create(&st, &mut rng, &format!("ctr{trial}"));
            containers.push(c);
        }
        let target = rng.range(0, containers.len() as u64) as usize;
        let name = containers[target].name.clone();
        let mut cmd = st.command();
        cmd.args(["delete-container", &name]);
        let delay = pick_delay(&mut rng, typical);
        let ended = run_and_kill(cmd, delay, &scratch);
        let exited = ended.success_stdout(&ctx).is_some();
        adapt(&mut typical, delay, exited);

        let c = &containers[target];
        let container_present = st
            .raw_records("containers")
            .iter()
            .any(|r| id_of(r) == c.id);
        let layer_present = st.raw_records("layers").iter().any(|r| id_of(r) == c.layer);
        assert!(
            !container_present || layer_present,
            "{ctx}: container {name} is still listed but its layer {} is gone \
             (a killed delete-container left it half deleted)",
            c.layer
        );
        let landed = match (container_present, layer_present, exited) {
            (_, _, true) => Landed::Exited,
            (true, _, false) => Landed::Before,
            (false, true, false) => Landed::During,
            (false, false, false) => Landed::Committed,
        };
        tally.add(landed);
        if exited {
            assert!(
                !container_present && !layer_present,
                "{ctx}: exited 0, still there"
            );
        }
        verify(&st, &model, &BTreeSet::new(), &image_layers, false, &ctx);
        if container_present {
            // It still works: it mounts and shows the image and its file.
            let path = PathBuf::from(st.ok(&["mount", &name]).trim());
            let extra: Vec<(&str, &[u8])> = c
                .marker
                .iter()
                .map(|(f, data)| (f.as_str(), data.as_slice()))
                .collect();
            compare_tree(&fx.expected, &path, &extra, &ctx);
            st.ok(&["unmount", &name]);
        } else {
            let out = st.run(&["container", &name], None);
            assert!(!out.status.success(), "{ctx}: container {name} still shows");
            let out = st.run(&["exists", "-c", &name], None);
            assert_eq!(common::stdout(&out), format!("{name}: false\n"), "{ctx}");
            containers.remove(target);
        }
        let full = trial % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1;
        if full {
            verify(&st, &model, &BTreeSet::new(), &[], true, &ctx);
            gc_leaves_no_leftovers(&st, &ctx);
        }
        eprintln!("{ctx}: kill after {delay:?} landed {landed:?}");
        while containers.len() > 5 {
            let c = containers.remove(0);
            st.ok(&["delete-container", &c.name]);
        }
    }
    verify(
        &st,
        &model,
        &BTreeSet::new(),
        &[],
        true,
        "delete-container: end",
    );
    tally.report("delete-container", started);
}

// ---------------------------------------------------------------------
// gc
// ---------------------------------------------------------------------

/// A rough picture of what gc may remove: entries under the pool, the
/// object cache, the manifests and the driver directory.
fn gc_fingerprint(st: &Store) -> [usize; 4] {
    let g = st.graph();
    [
        count_entries(&g.join("chunks")),
        count_entries(&g.join("objects")),
        count_entries(&g.join("manifests")),
        count_entries(&g.join(st.driver)),
    ]
}

#[test]
fn killed_gc_loses_nothing_referenced() {
    let started = Instant::now();
    let mut rng = Rng(seed("gc"));
    let n = trials("gc");
    let st = Store::new("vfs");
    let scratch = st.scratch_file("kill");
    let shared = shared_blobs(rng.next(), 4, 256 << 10);
    let fx = fixture(&st, &mut rng);
    let mut model = Model::new();
    for id in [&fx.base, &fx.top] {
        let digest = st.export_digest(id);
        model.insert(id.clone(), digest);
    }
    // A mount that must survive every gc.
    let kept = PathBuf::from(st.ok(&["mount", "-r", "img"]).trim());
    compare_tree(&fx.expected, &kept, &[], "gc setup");
    let mut parents: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut images: BTreeMap<String, String> = BTreeMap::new(); // name -> top layer
    let evicts = ["all", "never", "policy", "0s", "1h"];

    // Makes garbage: new layers (some on kept ones), images mounted and
    // unmounted (materialized directories), then deletes some.
    let churn = |st: &Store,
                 rng: &mut Rng,
                 model: &mut Model,
                 parents: &mut BTreeMap<String, Option<String>>,
                 images: &mut BTreeMap<String, String>,
                 round: u64| {
        for i in 0..rng.range(1, 4) {
            let parent = if rng.range(0, 3) == 0 {
                pick(rng, model.keys()).cloned()
            } else {
                None
            };
            let size = rng.range(256 << 10, 1 << 20) as usize;
            let (tar, digest) = layer_tar(rng, &format!("g{round}-{i}"), size, &shared);
            let id = st.import(&tar, parent.as_deref());
            model.insert(id.clone(), digest);
            parents.insert(id.clone(), parent);
            if rng.range(0, 2) == 0 {
                let name = format!("gi{round}-{i}");
                st.ok(&["create-image", "-n", &name, &id]);
                st.ok(&["mount", "-r", &name]);
                st.ok(&["unmount", &name]);
                images.insert(name, id);
            }
        }
        // Delete images (and the layers only they use) and leaf layers.
        while images.len() > 3 {
            let name = pick(rng, images.keys()).unwrap().clone();
            let doomed = doomed_layers(st, &name);
            st.ok(&["delete-image", &name]);
            images.remove(&name);
            for l in doomed {
                model.remove(&l);
                parents.remove(&l);
            }
        }
        while parents.len() > 6 {
            let leaves: Vec<String> = parents
                .keys()
                .filter(|id| !parents.values().any(|p| p.as_ref() == Some(*id)))
                .filter(|id| !images.values().any(|t| t == *id))
                .cloned()
                .collect();
            let Some(victim) = pick(rng, &leaves).cloned() else {
                break;
            };
            st.ok(&["delete-layer", &victim]);
            model.remove(&victim);
            parents.remove(&victim);
        }
    };

    let mut times = Vec::new();
    for round in 0..3 {
        churn(
            &st,
            &mut rng,
            &mut model,
            &mut parents,
            &mut images,
            1000 + round,
        );
        let mut cmd = st.command();
        cmd.args(["gc", "--evict", "all"]);
        times.push(time_command(cmd, "gc").0);
    }
    let mut typical = median(times);
    eprintln!("gc: an uninterrupted gc takes {typical:?}");

    let mut tally = Tally::default();
    for trial in 0..n {
        let ctx = format!("gc trial {trial}");
        churn(&st, &mut rng, &mut model, &mut parents, &mut images, trial);
        let before = gc_fingerprint(&st);
        let evict = evicts[rng.range(0, evicts.len() as u64) as usize];
        let mut cmd = st.command();
        cmd.args(["gc", "--evict", evict]);
        let delay = pick_delay(&mut rng, typical);
        let ended = run_and_kill(cmd, delay, &scratch);
        let exited = ended.success_stdout(&ctx).is_some();
        adapt(&mut typical, delay, exited);
        let landed = if exited {
            Landed::Exited
        } else if gc_fingerprint(&st) != before {
            Landed::During
        } else {
            Landed::Before
        };
        tally.add(landed);
        // gc touches every layer: compare all of them, every trial.
        verify(&st, &model, &BTreeSet::new(), &[], true, &ctx);
        compare_tree(&fx.expected, &kept, &[], &format!("{ctx}: the kept mount"));
        if rng.range(0, 3) == 0 {
            // Materializing from the pool still works after the killed gc.
            let name = format!("gc-c{trial}");
            st.ok(&["create-container", "-n", &name, "img"]);
            let path = PathBuf::from(st.ok(&["mount", &name]).trim());
            compare_tree(&fx.expected, &path, &[], &ctx);
            st.ok(&["unmount", &name]);
            st.ok(&["delete-container", &name]);
            if let Some(image) = pick(&mut rng, images.keys()) {
                let image = image.clone();
                st.ok(&["mount", "-r", &image]);
                st.ok(&["unmount", &image]);
            }
        }
        if trial % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1 {
            gc_leaves_no_leftovers(&st, &ctx);
            compare_tree(&fx.expected, &kept, &[], &format!("{ctx}: the kept mount"));
        }
        eprintln!("{ctx}: gc --evict {evict} killed after {delay:?} landed {landed:?}");
    }
    st.ok(&["unmount", "img"]);
    verify(&st, &model, &BTreeSet::new(), &[], true, "gc: end");
    gc_leaves_no_leftovers(&st, "gc: end");
    tally.report("gc", started);
}

// ---------------------------------------------------------------------
// mount and unmount
// ---------------------------------------------------------------------

/// What one mount trial targets.
#[derive(Clone)]
struct Target {
    /// The argument to `mount`/`unmount`.
    arg: String,
    /// The layer that gets mounted.
    layer: String,
    /// `mount -r` (an image).
    image: bool,
    /// A container made for this trial, deleted after it.
    fresh: bool,
}

/// The stores for mount trials: overlay as root (plus vfs), else vfs only.
fn mount_drivers(what: &str) -> Vec<&'static str> {
    if nix::unistd::geteuid().is_root() {
        vec!["overlay", "vfs"]
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} with overlay must run in CI, which is root"
        );
        eprintln!("{what}: overlay trials skipped (they need root); vfs trials only");
        vec!["vfs"]
    }
}

fn container_layer(st: &Store, name: &str) -> String {
    let v: Value = serde_json::from_str(&st.ok(&["container", "--json", name])).unwrap();
    v[0]["layer"].as_str().unwrap().to_string()
}

/// Where the driver mounts (overlay) or builds (vfs) layer `id`.
fn mount_path(st: &Store, id: &str) -> PathBuf {
    if st.driver == "overlay" {
        st.graph().join("overlay").join(id).join("merged")
    } else {
        st.graph().join("vfs/dir").join(id)
    }
}

/// Whether the mount records and the kernel agree about `t` (overlay
/// only; vfs has no kernel mount). Returns a description of a mismatch.
fn mount_mismatch(st: &Store, t: &Target) -> Option<String> {
    if st.driver != "overlay" {
        return None;
    }
    let count = st.raw_mount_count(&t.layer);
    let mounted = is_mount_point(&mount_path(st, &t.layer));
    match (count > 0, mounted) {
        (true, false) => Some(format!(
            "{}: the records say mounted ({count}) but nothing is mounted",
            t.arg
        )),
        (false, true) => Some(format!(
            "{}: an overlay is mounted that no record counts",
            t.arg
        )),
        _ => None,
    }
}

/// `unmount -f` (or `shutdown -f`) must leave `t` unmounted, records and
/// kernel alike.
fn recover(st: &Store, rng: &mut Rng, t: &Target, ctx: &str) {
    if rng.range(0, 5) == 0 {
        common::expect_forced_shutdown(&st.run(&["shutdown", "-f"], None));
        assert!(
            st.raw_mounts().is_empty(),
            "{ctx}: shutdown -f left records: {:?}",
            st.raw_mounts()
        );
    } else {
        st.ok(&["unmount", "-f", &t.arg]);
    }
    assert_eq!(
        st.raw_mount_count(&t.layer),
        0,
        "{ctx}: unmount -f left a mount record"
    );
    assert_eq!(st.ok(&["mounted", &t.layer]), "", "{ctx}: still mounted");
    let left = st.kernel_mounts();
    assert!(
        left.is_empty(),
        "{ctx}: kernel mounts remain after recovery: {left:?}"
    );
}

fn mount_args(t: &Target) -> Vec<&str> {
    let mut args = vec!["mount"];
    if t.image {
        args.push("-r");
    }
    args.push(&t.arg);
    args
}

/// Mounts `t` uninterrupted, compares the tree, unmounts.
fn mount_and_compare(st: &Store, fx: &Fixture, t: &Target, ctx: &str) {
    let path = PathBuf::from(st.ok(&mount_args(t)).trim());
    compare_tree(&fx.expected, &path, &[], ctx);
    st.ok(&["unmount", &t.arg]);
}

/// Sets up a mount store: the fixture image and two containers.
fn mount_store(driver: &'static str, rng: &mut Rng) -> (Store, Fixture, Model, Vec<Target>) {
    let st = Store::new(driver);
    let fx = fixture(&st, rng);
    let mut model = Model::new();
    for id in [&fx.base, &fx.top] {
        let digest = st.export_digest(id);
        model.insert(id.clone(), digest);
    }
    let mut targets = vec![Target {
        arg: "img".into(),
        layer: fx.top.clone(),
        image: true,
        fresh: false,
    }];
    // Names that no ID prefix can take.
    for c in ["ctr0", "ctr1"] {
        st.ok(&["create-container", "-n", c, "img"]);
        targets.push(Target {
            arg: c.into(),
            layer: container_layer(&st, c),
            image: false,
            fresh: false,
        });
    }
    (st, fx, model, targets)
}

fn pick_target(st: &Store, rng: &mut Rng, targets: &[Target], name: &str) -> Target {
    if rng.range(0, 2) == 0 {
        st.ok(&["create-container", "-n", name, "img"]);
        Target {
            arg: name.into(),
            layer: container_layer(st, name),
            image: false,
            fresh: true,
        }
    } else {
        targets[rng.range(0, targets.len() as u64) as usize].clone()
    }
}

#[test]
fn killed_mount_recovers_with_unmount_force() {
    let started = Instant::now();
    let mut rng = Rng(seed("mount"));
    let drivers = mount_drivers("mount kills");
    let n = trials("mount");
    let mut half_states = Vec::new();
    for (k, driver) in drivers.iter().enumerate() {
        let share = n / drivers.len() as u64 + u64::from((k as u64) < n % drivers.len() as u64);
        let (st, fx, model, targets) = mount_store(driver, &mut rng);
        let scratch = st.scratch_file("kill");
        let mut times = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let mut cmd = st.command();
            cmd.args(mount_args(t));
            times.push(time_command(cmd, "mount").0);
            mount_and_compare(&st, &fx, t, &format!("{driver} mount setup {i}"));
            st.ok(&["unmount", &t.arg]);
        }
        let mut typical = median(times);
        eprintln!("mount ({driver}): an uninterrupted first mount takes {typical:?}");
        let mut tally = Tally::default();
        for trial in 0..share {
            let ctx = format!("mount ({driver}) trial {trial}");
            let t = pick_target(&st, &mut rng, &targets, &format!("m{trial}"));
            if rng.range(0, 4) == 0 {
                st.ok(&["gc", "--evict", "all"]);
            }
            let pre = u64::from(rng.range(0, 4) == 0);
            if pre == 1 {
                st.ok(&mount_args(&t));
            }
            let driver_before = count_entries(&st.graph().join(st.driver));
            let mut cmd = st.command();
            cmd.args(mount_args(&t));
            let delay = pick_delay(&mut rng, typical);
            let ended = run_and_kill(cmd, delay, &scratch);
            let exited = ended.success_stdout(&ctx).is_some();
            adapt(&mut typical, delay, exited);
            let count = st.raw_mount_count(&t.layer);
            assert!(
                count == pre || count == pre + 1,
                "{ctx}: mount count went from {pre} to {count}"
            );
            let landed = if exited {
                assert_eq!(count, pre + 1, "{ctx}: exited 0 without counting the mount");
                Landed::Exited
            } else if count == pre + 1 {
                Landed::Committed
            } else if count_entries(&st.graph().join(st.driver)) != driver_before {
                Landed::During
            } else {
                Landed::Before
            };
            tally.add(landed);
            // The records and the kernel are two places: a kill between
            // the two writes leaves them apart (reported here), and the
            // next unmount or `shutdown -f` must bring them together.
            if let Some(m) = mount_mismatch(&st, &t) {
                eprintln!("{ctx}: half state after the kill: {m}");
            }
            if count > 0 && (st.driver == "vfs" || is_mount_point(&mount_path(&st, &t.layer))) {
                // Mounted: it shows the image.
                compare_tree(&fx.expected, &mount_path(&st, &t.layer), &[], &ctx);
            }
            verify(&st, &model, &BTreeSet::new(), &[], false, &ctx);
            recover(&st, &mut rng, &t, &ctx);
            if let Some(m) = mount_mismatch(&st, &t) {
                half_states.push(format!("{ctx}, after recovery: {m}"));
            }
            st.check_clean(&format!("{ctx}, after recovery"));
            if rng.range(0, 3) == 0 || t.fresh {
                mount_and_compare(&st, &fx, &t, &format!("{ctx}, mounted again"));
            }
            if t.fresh {
                st.ok(&["delete-container", &t.arg]);
            }
            eprintln!(
                "{ctx}: mount {} killed after {delay:?} landed {landed:?}",
                t.arg
            );
        }
        common::expect_forced_shutdown(&st.run(&["shutdown", "-f"], None));
        assert!(st.kernel_mounts().is_empty());
        verify(
            &st,
            &model,
            &BTreeSet::new(),
            &[],
            true,
            &format!("mount ({driver}): end"),
        );
        tally.report(&format!("mount ({driver})"), started);
    }
    assert!(
        half_states.is_empty(),
        "killed mounts left records and kernel mounts disagreeing after recovery:\n{}",
        half_states.join("\n")
    );
}

#[test]
fn killed_unmount_recovers_with_unmount_force() {
    let started = Instant::now();
    let mut rng = Rng(seed("unmount"));
    let drivers = mount_drivers("unmount kills");
    let n = trials("unmount");
    let mut half_states = Vec::new();
    for (k, driver) in drivers.iter().enumerate() {
        let share = n / drivers.len() as u64 + u64::from((k as u64) < n % drivers.len() as u64);
        let (st, fx, model, targets) = mount_store(driver, &mut rng);
        let scratch = st.scratch_file("kill");
        let mut times = Vec::new();
        for t in &targets {
            st.ok(&mount_args(t));
            let mut cmd = st.command();
            cmd.args(["unmount", &t.arg]);
            times.push(time_command(cmd, "unmount").0);
        }
        let mut typical = median(times);
        eprintln!("unmount ({driver}): an uninterrupted unmount takes {typical:?}");
        let mut tally = Tally::default();
        for trial in 0..share {
            let ctx = format!("unmount ({driver}) trial {trial}");
            let t = pick_target(&st, &mut rng, &targets, &format!("u{trial}"));
            let refs = rng.range(1, 3);
            for _ in 0..refs {
                st.ok(&mount_args(&t));
            }
            let force = rng.range(0, 4) == 0;
            let mut cmd = st.command();
            cmd.arg("unmount");
            if force {
                cmd.arg("-f");
            }
            cmd.arg(&t.arg);
            let delay = pick_delay(&mut rng, typical);
            let ended = run_and_kill(cmd, delay, &scratch);
            let exited = ended.success_stdout(&ctx).is_some();
            adapt(&mut typical, delay, exited);
            let count = st.raw_mount_count(&t.layer);
            let after = if force { 0 } else { refs - 1 };
            assert!(
                count == refs || count == after,
                "{ctx}: mount count went from {refs} to {count} (expected {refs} or {after})"
            );
            let landed = if exited {
                assert_eq!(
                    count, after,
                    "{ctx}: exited 0 without dropping the reference"
                );
                Landed::Exited
            } else if count == after {
                Landed::Committed
            } else {
                Landed::Before
            };
            tally.add(landed);
            // The records and the kernel are two places: a kill between
            // the two writes leaves them apart (reported here), and the
            // next unmount or `shutdown -f` must bring them together.
            if let Some(m) = mount_mismatch(&st, &t) {
                eprintln!("{ctx}: half state after the kill: {m}");
            }
            if count > 0 && (st.driver == "vfs" || is_mount_point(&mount_path(&st, &t.layer))) {
                compare_tree(&fx.expected, &mount_path(&st, &t.layer), &[], &ctx);
            }
            verify(&st, &model, &BTreeSet::new(), &[], false, &ctx);
            recover(&st, &mut rng, &t, &ctx);
            if let Some(m) = mount_mismatch(&st, &t) {
                half_states.push(format!("{ctx}, after recovery: {m}"));
            }
            st.check_clean(&format!("{ctx}, after recovery"));
            if rng.range(0, 3) == 0 {
                mount_and_compare(&st, &fx, &t, &format!("{ctx}, mounted again"));
            }
            if t.fresh {
                st.ok(&["delete-container", &t.arg]);
            }
            eprintln!(
                "{ctx}: unmount{} {} ({refs} refs) killed after {delay:?} landed {landed:?}",
                if force { " -f" } else { "" },
                t.arg
            );
        }
        common::expect_forced_shutdown(&st.run(&["shutdown", "-f"], None));
        assert!(st.kernel_mounts().is_empty());
        verify(
            &st,
            &model,
            &BTreeSet::new(),
            &[],
            true,
            &format!("unmount ({driver}): end"),
        );
        tally.report(&format!("unmount ({driver})"), started);
    }
    assert!(
        half_states.is_empty(),
        "killed unmounts left records and kernel mounts disagreeing after recovery:\n{}",
        half_states.join("\n")
    );
}
