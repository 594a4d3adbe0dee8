//! `dedup`: layers other clients wrote adopted into the pool (see
//! `adopt.rs`), bytes shared across layers, and identical materialized
//! files shared on the filesystem (FIDEDUPERANGE) where it can.
//!
//! Sharing in the pool is a fact of the manifests: every distinct file
//! content is stored once however many layers hold it. Materialized trees
//! are another matter: a copy (where reflinks are missing) or a file a
//! container wrote takes its own blocks. On filesystems that can share
//! extents (XFS with reflink, btrfs), identical regular files of the
//! layers' directories and the object cache are handed to the kernel,
//! which compares them byte for byte and shares what is identical; files
//! already sharing their extents are skipped, so the figure is what is
//! newly shared. Elsewhere (ext4) the kernel refuses and nothing happens.
//! Nothing here changes what any file reads as.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::adopt::{Adoption, SkippedLayer};
use super::layout;
use super::Store;
use crate::durable;
use crate::error::Result;
use crate::manifest::{EntryKind, Sha256};
use crate::materialize;
use crate::sys::{self, Deduped};

/// How `dedup` finds identical files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashMethod {
    /// CRC32 of the content (then compared byte for byte).
    Crc,
    /// Size only (then compared byte for byte).
    Size,
    /// SHA-256 of the content.
    Sha256,
}

impl std::str::FromStr for HashMethod {
    type Err = crate::error::Error;

    /// `crc`, `size` or `sha256`, as `dedup --hash-method` takes it.
    fn from_str(text: &str) -> Result<HashMethod> {
        match text {
            "crc" => Ok(HashMethod::Crc),
            "size" => Ok(HashMethod::Size),
            "sha256" => Ok(HashMethod::Sha256),
            other => Err(crate::error::Error::Config(format!(
                "invalid hash method: {other} (use crc, size or sha256)"
            ))),
        }
    }
}

/// What `dedup` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DedupReport {
    /// Bytes the filesystem now shares that it did not before.
    #[serde(rename = "Deduped")]
    pub deduped: u64,
    /// Bytes of layer content stored once in the pool but used by more
    /// than one layer.
    #[serde(rename = "Shared")]
    pub shared: u64,
    /// Layers other clients wrote that entered the pool.
    #[serde(rename = "Adopted")]
    pub adopted: Vec<String>,
    /// Layers other clients wrote that were left as they were, and why.
    #[serde(rename = "Skipped")]
    pub skipped: Vec<SkippedLayer>,
    /// Bytes the adopted layers added to the pool (packs, manifests).
    #[serde(rename = "Stored")]
    pub stored: u64,
    /// Bytes freed by making files of layer directories (adopted layers,
    /// and ours built as copies) hardlinks of shared objects.
    #[serde(rename = "Linked")]
    pub linked: u64,
    /// Bytes saved on the whole: `Linked` plus `Deduped` less `Stored`
    /// (negative when the pool took more than sharing freed).
    #[serde(rename = "Saved")]
    pub saved: i64,
}

/// The kernel dedupes at most this much per call.
const DEDUPE_STEP: u64 = 16 << 20;
/// Distinct contents tried per group of candidates (a size group may hold
/// many different files).
const MAX_REPRESENTATIVES: usize = 8;
/// `EINVAL`s on a filesystem that never deduped anything before it is
/// taken as unable to.
const INVALID_LIMIT: u32 = 4;

/// A regular file that may share its content.
#[derive(Clone, Debug)]
struct Candidate {
    path: PathBuf,
    dev: u64,
    size: u64,
}

/// What one attempt on a pair of files gave.
enum Outcome {
    /// Identical: this many bytes are now shared.
    Same(u64),
    /// Already sharing their extents.
    AlreadyShared,
    /// Different content (after `u64` identical bytes were shared).
    Differs(u64),
    /// The filesystem cannot dedupe.
    Unsupported,
    /// This pair cannot be deduped (an error on one of them).
    Skip,
}

#[derive(Default)]
struct Device {
    unsupported: bool,
    worked: bool,
    invalid: u32,
}

impl Store {
    /// Reports sharing across layers and shares identical materialized
    /// files where the filesystem allows.
    pub fn dedup(&self, method: HashMethod) -> Result<DedupReport> {
        let mut adoption = Adoption::default();
        let mut linked = 0;
        if self.writable {
            // One reading of the records and of what uses the layers'
            // directories serves both: adoption changes no record.
            let layers = self.layers()?;
            let uses = self.layer_uses(&layers)?;
            adoption = self.adopt_layers(&layers, &uses)?;
            let adopted = adoption.adopted.iter().map(String::as_str).collect();
            linked = adoption.shared.freed_bytes
                + self.link_own_layers(&layers, &uses, &adopted)?.freed_bytes;
        }
        let shared = self.shared_bytes()?;
        let deduped = self.dedupe_files(method)?;
        let gained = i128::from(linked) + i128::from(deduped) - i128::from(adoption.stored);
        Ok(DedupReport {
            deduped,
            shared,
            adopted: adoption.adopted,
            skipped: adoption.skipped,
            stored: adoption.stored,
            linked,
            saved: i64::try_from(gained).unwrap_or(i64::MAX),
        })
    }

    /// Bytes of distinct file contents that more than one sealed layer
    /// holds (each content counted once). Layers whose manifest cannot be
    /// read are left out (`check` reports them).
    fn shared_bytes(&self) -> Result<u64> {
        // content -> (size, layers holding it, the last layer counted)
        let mut uses: HashMap<blake3::Hash, (u64, u32, usize)> = HashMap::new();
        let layers = self.layers()?;
        for (n, layer) in layers
            .iter()
            .filter(|l| l.sealed && !l.is_incomplete())
            .enumerate()
        {
            let Ok(m) = self.layer_manifest(layer) else {
                continue;
            };
            for e in m
                .entries
                .iter()
                .filter(|e| e.kind == EntryKind::File && e.size > 0)
            {
                let mut h = blake3::Hasher::new();
                for c in &e.chunks {
                    h.update(&c.id.0);
                    h.update(&c.len.to_le_bytes());
                }
                let slot = uses.entry(h.finalize()).or_insert((e.size, 0, usize::MAX));
                if slot.2 != n {
                    slot.1 += 1;
                    slot.2 = n;
                }
            }
        }
        Ok(uses
            .values()
            .filter(|(_, count, _)| *count > 1)
            .map(|(size, _, _)| size)
            .sum())
    }

    /// Shares identical regular files of the layers' directories and the
    /// object cache; returns the bytes the kernel reported deduped.
    fn dedupe_files(&self, method: HashMethod) -> Result<u64> {
        let mut roots: Vec<PathBuf> = self
            .layers()?
            .iter()
            .filter(|l| self.is_materialized(&l.id))
            .map(|l| self.layer_content_dir(&l.id))
            .collect();
        let objects = layout::objects_dir(self.graph_root());
        let objects_tmp = materialize::objects_tmp_dir(&objects);
        if objects.is_dir() {
            roots.push(objects.clone());
        }
        let mut seen = HashSet::new();
        let mut files = Vec::new();
        for root in &roots {
            collect_files(root, &objects_tmp, &mut seen, &mut files);
        }
        let mut devices: HashMap<u64, Device> = HashMap::new();
        // One probe on the graph root's filesystem spares hashing every
        // file of a filesystem that cannot dedupe at all.
        // Scratch files go where `gc` clears leftovers when it can.
        let scratch = if objects_tmp.is_dir() {
            objects_tmp.clone()
        } else {
            self.graph_root().to_path_buf()
        };
        if let Ok(meta) = fs::metadata(&scratch) {
            if self.writable {
                if let Some(works) = probe(&scratch) {
                    let device = devices.entry(meta.dev()).or_default();
                    device.unsupported = !works;
                    device.worked = works;
                }
            }
        }
        files.retain(|f| !devices.get(&f.dev).is_some_and(|d| d.unsupported));
        let total = candidate_groups(files, method)
            .into_iter()
            .map(|group| dedupe_group(group, &mut devices))
            .sum();
        Ok(total)
    }
}

/// The groups of files that may be identical: same filesystem and size,
/// then (by method) same hash.
fn candidate_groups(files: Vec<Candidate>, method: HashMethod) -> Vec<Vec<Candidate>> {
    let mut by_size: HashMap<(u64, u64), Vec<Candidate>> = HashMap::new();
    for f in files {
        by_size.entry((f.dev, f.size)).or_default().push(f);
    }
    let groups = by_size.into_values().filter(|g| g.len() > 1);
    if method == HashMethod::Size {
        return groups.collect();
    }
    let hashed: Vec<(Vec<u8>, Candidate)> = groups
        .collect::<Vec<_>>()
        .into_par_iter()
        .flatten()
        .filter_map(|f| {
            let key = content_hash(&f.path, method)?;
            let key = [&f.dev.to_le_bytes()[..], &f.size.to_le_bytes(), &key].concat();
            Some((key, f))
        })
        .collect();
    let mut by_hash: HashMap<Vec<u8>, Vec<Candidate>> = HashMap::new();
    for (key, f) in hashed {
        by_hash.entry(key).or_default().push(f);
    }
    by_hash.into_values().filter(|g| g.len() > 1).collect()
}

/// Shares the files of one group with the first of their contents (a
/// few representatives are tried, the group may hold different files);
/// returns the bytes the kernel deduped. What the kernel says of the
/// group's filesystem is noted in `devices`.
fn dedupe_group(mut group: Vec<Candidate>, devices: &mut HashMap<u64, Device>) -> u64 {
    group.sort_by(|a, b| a.path.cmp(&b.path));
    let dev = group[0].dev;
    let mut total = 0;
    let mut reps: Vec<&Candidate> = Vec::new();
    for f in &group {
        if devices.get(&dev).is_some_and(|d| d.unsupported) {
            break;
        }
        let mut placed = false;
        for rep in &reps {
            let outcome = dedupe_pair(rep, f);
            let device = devices.entry(dev).or_default();
            match outcome {
                Outcome::Same(n) => {
                    total += n;
                    device.worked = true;
                    placed = true;
                }
                Outcome::AlreadyShared => placed = true,
                Outcome::Differs(n) => {
                    total += n;
                    continue;
                }
                Outcome::Unsupported => {
                    if device.worked {
                        placed = true;
                    } else {
                        device.invalid += 1;
                        if device.invalid >= INVALID_LIMIT {
                            device.unsupported = true;
                        }
                    }
                }
                Outcome::Skip => placed = true,
            }
            break;
        }
        if !placed && reps.len() < MAX_REPRESENTATIVES {
            reps.push(f);
        }
    }
    total
}

/// Regular, non-empty files below `root`, one path per inode, not
/// following symlinks and leaving out `skip`.
fn collect_files(
    root: &Path,
    skip: &Path,
    seen: &mut HashSet<(u64, u64)>,
    out: &mut Vec<Candidate>,
) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() {
            if path != skip {
                collect_files(&path, skip, seen, out);
            }
        } else if meta.is_file() && meta.len() > 0 && seen.insert((meta.dev(), meta.ino())) {
            out.push(Candidate {
                path,
                dev: meta.dev(),
                size: meta.len(),
            });
        }
    }
}

/// The CRC32 or SHA-256 of a file's content; `None` if it cannot be read.
fn content_hash(path: &Path, method: HashMethod) -> Option<Vec<u8>> {
    let mut file = open_nofollow(path).ok()?;
    let mut buf = vec![0u8; 1 << 20];
    let mut crc = Crc32::default();
    let mut sha = Sha256::default();
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        match method {
            HashMethod::Crc => crc.update(&buf[..n]),
            _ => sha.update(&buf[..n]),
        }
    }
    Some(match method {
        HashMethod::Crc => crc.finish().to_le_bytes().to_vec(),
        _ => sha.finish().into_bytes(),
    })
}

fn open_nofollow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Whether the filesystem of `dir` can dedupe: two identical scratch files
/// are handed to the kernel. `None` when the files cannot be written.
fn probe(dir: &Path) -> Option<bool> {
    let data = vec![0x5a_u8; 64 << 10];
    let base = format!(".dedup-probe-{}", durable::random_hex(8));
    let paths = [dir.join(format!("{base}-a")), dir.join(format!("{base}-b"))];
    let written = paths.iter().all(|p| {
        use std::os::unix::fs::OpenOptionsExt;
        File::options()
            .write(true)
            .create_new(true)
            .mode(durable::FILE_MODE)
            .open(p)
            .and_then(|mut f| f.write_all(&data))
            .is_ok()
    });
    let result = written.then(|| {
        let size = data.len() as u64;
        let a = Candidate {
            path: paths[0].clone(),
            dev: 0,
            size,
        };
        let b = Candidate {
            path: paths[1].clone(),
            dev: 0,
            size,
        };
        matches!(dedupe_pair(&a, &b), Outcome::Same(n) if n > 0)
    });
    for p in &paths {
        let _ = fs::remove_file(p);
    }
    result
}

/// Hands `dst` to the kernel to share `src`'s extents where identical.
fn dedupe_pair(src: &Candidate, dst: &Candidate) -> Outcome {
    let Ok(source) = open_nofollow(&src.path) else {
        return Outcome::Skip;
    };
    let Ok(dest) = open_nofollow(&dst.path) else {
        return Outcome::Skip;
    };
    if let (Some(a), Some(b)) = (extents(&source), extents(&dest)) {
        if !a.is_empty() && a == b {
            return Outcome::AlreadyShared;
        }
    }
    let mut offset = 0u64;
    let mut deduped = 0u64;
    while offset < src.size {
        let length = DEDUPE_STEP.min(src.size - offset);
        match sys::dedupe_range(&source, &dest, offset, length) {
            Ok(Deduped::Same(n)) => {
                deduped += n;
                offset += length;
            }
            Ok(Deduped::Differs) => return Outcome::Differs(deduped),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL)
                ) =>
            {
                return if deduped > 0 {
                    Outcome::Same(deduped)
                } else {
                    Outcome::Unsupported
                };
            }
            Err(_) => {
                return if deduped > 0 {
                    Outcome::Same(deduped)
                } else {
                    Outcome::Skip
                }
            }
        }
    }
    Outcome::Same(deduped)
}

/// The file's extents as (logical, physical, length), or `None` when the
/// filesystem does not say (or there are too many to compare cheaply).
fn extents(file: &File) -> Option<Vec<(u64, u64, u64)>> {
    sys::extents(file, 64)
}

/// CRC-32 (IEEE, as zlib and Go's `hash/crc32` compute it).
struct Crc32 {
    table: [u32; 256],
    value: u32,
}

impl Default for Crc32 {
    fn default() -> Self {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        Crc32 {
            table,
            value: 0xFFFF_FFFF,
        }
    }
}

impl Crc32 {
    fn update(&mut self, data: &[u8]) {
        let mut c = self.value;
        for &b in data {
            c = self.table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
        }
        self.value = c;
    }

    fn finish(&self) -> u32 {
        self.value ^ 0xFFFF_FFFF
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_answer() {
        let mut c = Crc32::default();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }

    #[test]
    fn on_a_filesystem_without_dedupe_pairs_are_refused_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        // Whatever the filesystem, a probe answers and leaves nothing.
        let _ = probe(dir.path());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
