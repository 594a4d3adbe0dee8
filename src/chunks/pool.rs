//! `ChunkPool`: the store-wide set of chunks, its config, the in-memory
//! lookup table built from the pack index files, and the writer that adds
//! new chunks in the crash-safe publish order.
//!
//! No single damaged file takes the pool down: an index file that cannot
//! be read is skipped with a warning (its pack's chunks are missing until
//! `check --repair` indexes the pack again, see `pool/repair.rs`), and a
//! damaged `config.json` gives way to the pinned defaults, with a warning,
//! until `check --repair` writes it again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::chunker::{ChunkerParams, CHUNKER_ALGORITHM};
use super::id::ChunkId;
use super::index::{self, IndexEntry};
use super::names::{self, PackFile};
use super::pack::{PackBuilder, SealedPack};
use crate::durable::{self, Flush, PendingFile};
use crate::error::{Error, IoContext, Op, Result};
use crate::file_stamp::{stamp, FileStamp};
use crate::flock::Flock;
use crate::last_writer::{self, Token};
use crate::poison::{Unpoisoned, UnpoisonedRw};
use crate::sys;

mod repair;
mod verify;

const CONFIG_VERSION: u32 = 1;
/// A pack is closed once it reaches this size; an import may write several.
const PACK_TARGET: u64 = 256 << 20;
/// At most this much is reserved up front for a decompressed frame (frames
/// are about `frame_size`), whatever length a damaged index claims.
const FRAME_RESERVE_LIMIT: usize = 16 << 20;

/// The pool's fixed parameters, kept in `chunks/config.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PoolConfig {
    /// Format version of the pool layout.
    pub version: u32,
    /// The chunking algorithm and crate version.
    pub algorithm: String,
    /// Chunk size bounds.
    pub chunker: ChunkerParams,
    /// zstd level for new frames.
    pub zstd_level: i32,
    /// New chunks are grouped into frames of about this many bytes.
    pub frame_size: u32,
}

impl PoolConfig {
    /// Parses `config.json` read from `path`. `Ok(Err(why))` when it is
    /// damaged (does not parse, or holds values no pool was written with);
    /// `Err` when it is a pool of a format this build does not read.
    fn parse(path: &Path, bytes: &[u8]) -> Result<std::result::Result<PoolConfig, String>> {
        let config: PoolConfig = match serde_json::from_slice(bytes) {
            Ok(config) => config,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if config.version != CONFIG_VERSION {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                what: format!(
                    "pool format version {} is not supported (this build reads version {})",
                    config.version, CONFIG_VERSION
                ),
            });
        }
        if let Err(e) = config.chunker.validate() {
            return Ok(Err(e.to_string()));
        }
        if !(1..=22).contains(&config.zstd_level) {
            return Ok(Err(format!(
                "zstd level {} is out of range",
                config.zstd_level
            )));
        }
        if !(4096..=FRAME_RESERVE_LIMIT as u32).contains(&config.frame_size) {
            return Ok(Err(format!(
                "frame size {} is out of range",
                config.frame_size
            )));
        }
        Ok(Ok(config))
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            version: CONFIG_VERSION,
            algorithm: CHUNKER_ALGORITHM.to_string(),
            chunker: ChunkerParams::default(),
            zstd_level: 3,
            frame_size: 256 << 10,
        }
    }
}

/// Where a chunk lives: pack number (in this process's table), frame and
/// position inside the decompressed frame.
#[derive(Clone, Copy, Debug)]
struct Location {
    pack: u32,
    frame_offset: u64,
    frame_len: u32,
    raw_len: u32,
    offset: u32,
    len: u32,
}

/// Chunk IDs are uniform hashes: their first eight bytes are a fine hash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
            self.0 = self.0.rotate_left(5);
        }
    }
}

type IdMap<V> = HashMap<ChunkId, V, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
pub(super) struct IndexState {
    map: IdMap<Location>,
    /// Pack names by number; numbers are never reused within a process,
    /// so a reader's cached frame key stays meaningful across reloads.
    packs: Vec<String>,
    loaded: HashSet<String>,
    unique_bytes: u64,
    /// The sweep token seen when the table was loaded.
    token: Token,
    /// Index files that cannot be read, by pack name: why, and the file
    /// as it was then (it is read again once it changes).
    unreadable: BTreeMap<String, (String, FileStamp)>,
}

/// Figures about the pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    /// Distinct chunks.
    pub chunks: u64,
    /// Uncompressed bytes of the distinct chunks.
    pub unique_bytes: u64,
    /// Bytes of pack and index files on disk.
    pub stored_bytes: u64,
    /// Pack files.
    pub packs: u64,
}

/// What one writer added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Chunks that were not in the pool yet.
    pub new_chunks: u64,
    /// Chunks that were already in the pool (or earlier in this write).
    pub reused_chunks: u64,
    /// Uncompressed bytes of the new chunks.
    pub new_bytes: u64,
    /// Compressed bytes written to packs.
    pub stored_bytes: u64,
}

/// The chunk pool under `<graphroot>/chunks`.
pub struct ChunkPool {
    pub(super) root: PathBuf,
    pub(super) packs_dir: PathBuf,
    pub(super) tmp_dir: PathBuf,
    config: PoolConfig,
    /// Why `config.json` could not be used (the defaults are in force),
    /// until it is written again.
    config_damage: Mutex<Option<String>>,
    state: RwLock<IndexState>,
    maps: Mutex<HashMap<u32, Arc<Mmap>>>,
    /// Frame buffers readers gave back, for the next readers: a fresh
    /// megabyte costs its page faults every time.
    spare_frames: Mutex<Vec<Vec<u8>>>,
}

/// Frame buffers kept for reuse at most.
const SPARE_FRAMES: usize = 32;

/// Held by every writer from its first chunk until the layer that refers
/// to its chunks is published: the sweep waits for it, so it never takes
/// a chunk an unpublished manifest needs (new or reused).
pub struct WriteGuard {
    _lock: Flock,
}

impl ChunkPool {
    /// The pool's own directories under `root`: the packs and their
    /// indexes, and packs being written.
    pub(crate) fn dirs(root: &Path) -> [PathBuf; 2] {
        [root.join("packs"), root.join("tmp")]
    }

    /// Opens the pool at `root`, creating it when `writable` and missing.
    pub fn open(root: &Path, writable: bool) -> Result<ChunkPool> {
        let config_path = root.join("config.json");
        let [packs_dir, tmp_dir] = Self::dirs(root);
        let mut config_damage = None;
        let config = match fs::read(&config_path) {
            Ok(bytes) => match PoolConfig::parse(&config_path, &bytes)? {
                Ok(config) => config,
                Err(why) => {
                    // The parameters only shape new writes (every manifest
                    // records its own chunker): the pinned defaults serve.
                    tracing::warn!(
                        "{}: {why}: using the default pool parameters until `check --repair` writes it again",
                        config_path.display()
                    );
                    config_damage = Some(why);
                    PoolConfig::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let config = PoolConfig::default();
                if writable {
                    durable::create_dir_all(&packs_dir)?;
                    durable::create_dir_all(&tmp_dir)?;
                    let json = serde_json::to_vec_pretty(&config).expect("config serializes");
                    durable::atomic_write(&config_path, &json)?;
                }
                config
            }
            Err(e) => return Err(e).at(Op::Read, &config_path),
        };
        if writable {
            durable::create_dir_all(&packs_dir)?;
            durable::create_dir_all(&tmp_dir)?;
        }
        let pool = ChunkPool {
            root: root.to_path_buf(),
            packs_dir,
            tmp_dir,
            config,
            config_damage: Mutex::new(config_damage),
            state: RwLock::new(IndexState::default()),
            maps: Mutex::new(HashMap::new()),
            spare_frames: Mutex::new(Vec::new()),
        };
        pool.state.write_unpoisoned().token = pool.sweep_token();
        pool.refresh()?;
        Ok(pool)
    }

    /// `chunks/sweep.lock`: writers hold it shared, the sweep exclusive.
    pub(super) fn sweep_lock_path(&self) -> PathBuf {
        self.root.join("sweep.lock")
    }

    /// `chunks/sweep.intent`: a sweep holds it while it waits for the
    /// writers to finish, so that new writers queue behind it.
    pub(super) fn sweep_intent_path(&self) -> PathBuf {
        self.root.join("sweep.intent")
    }

    /// The token the last sweep left (unset when there was none, or the
    /// lock file cannot be read: the next write guard then reloads).
    fn sweep_token(&self) -> Token {
        let path = self.sweep_lock_path();
        fs::File::open(&path)
            .ok()
            .and_then(|file| last_writer::read(&file, &path).ok())
            .unwrap_or_default()
    }

    /// Waits until no sweep runs and keeps sweeps out until the guard is
    /// dropped. When a sweep ran since this process loaded its table, the
    /// table is reloaded, so that no chunk is taken for present that the
    /// sweep removed.
    pub fn write_guard(&self) -> Result<WriteGuard> {
        let intent = Flock::shared(&self.sweep_intent_path())?;
        let lock = Flock::shared(&self.sweep_lock_path())?;
        drop(intent);
        let token = lock.token()?;
        if token != self.state.read_unpoisoned().token {
            self.reload()?;
            self.state.write_unpoisoned().token = token;
        }
        Ok(WriteGuard { _lock: lock })
    }

    /// Forgets the table and loads it again from the index files.
    pub(super) fn reload(&self) -> Result<()> {
        {
            let mut state = self.state.write_unpoisoned();
            state.map.clear();
            state.loaded.clear();
            state.unique_bytes = 0;
        }
        self.refresh()
    }

    /// The pool's parameters.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Loads index files published since the last refresh (by this or
    /// another process). Cost is one directory listing plus the new files.
    pub fn refresh(&self) -> Result<()> {
        let names = match fs::read_dir(&self.packs_dir) {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).at(Op::ReadDir, &self.packs_dir),
        };
        let mut fresh = Vec::new();
        {
            let state = self.state.read_unpoisoned();
            for entry in names {
                let entry = entry.at(Op::ReadDir, &self.packs_dir)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                // Not a temporary one: an index that `atomic_write` never
                // renamed into place.
                if let PackFile::Index(stem) = PackFile::of(&name) {
                    if !state.loaded.contains(stem) {
                        fresh.push(stem.to_string());
                    }
                }
            }
        }
        fresh.sort();
        let mut decoded = Vec::new();
        for stem in fresh {
            let path = self.index_path(&stem);
            let meta = match fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at(Op::Stat, &path),
            };
            let stamp = stamp(&meta);
            let known_bad = {
                let state = self.state.read_unpoisoned();
                state
                    .unreadable
                    .get(&stem)
                    .is_some_and(|(_, s)| *s == stamp)
            };
            if known_bad {
                continue;
            }
            let read = fs::read(&path).at(Op::Read, &path);
            match read.and_then(|bytes| index::decode(&path, &bytes)) {
                Ok(entries) => {
                    self.state.write_unpoisoned().unreadable.remove(&stem);
                    decoded.push((stem, entries));
                }
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(
                        "{e}: the chunks of pack {stem} are missing until `check --repair` indexes it again"
                    );
                    let mut state = self.state.write_unpoisoned();
                    state.unreadable.insert(stem, (e.to_string(), stamp));
                }
            }
        }
        // Room for every new entry at once: growing the table index by
        // index would rehash it over and over.
        let added = decoded.iter().map(|(_, entries)| entries.len()).sum();
        self.state.write_unpoisoned().map.reserve(added);
        for (stem, entries) in decoded {
            self.insert(&stem, &entries);
        }
        Ok(())
    }

    fn insert(&self, stem: &str, entries: &[IndexEntry]) {
        let mut state = self.state.write_unpoisoned();
        if !state.loaded.insert(stem.to_string()) {
            return;
        }
        let pack = state.packs.len() as u32;
        state.packs.push(stem.to_string());
        for e in entries {
            let loc = Location {
                pack,
                frame_offset: e.frame_offset,
                frame_len: e.frame_len,
                raw_len: e.raw_len,
                offset: e.offset,
                len: e.len,
            };
            if let std::collections::hash_map::Entry::Vacant(v) = state.map.entry(e.id) {
                v.insert(loc);
                state.unique_bytes += e.len as u64;
            }
        }
    }

    /// Whether the pool holds `id`.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.state.read_unpoisoned().map.contains_key(id)
    }

    fn locate(&self, id: &ChunkId) -> Result<Location> {
        if let Some(loc) = self.state.read_unpoisoned().map.get(id) {
            return Ok(*loc);
        }
        self.refresh()?;
        let state = self.state.read_unpoisoned();
        if let Some(loc) = state.map.get(id) {
            return Ok(*loc);
        }
        Err(Error::MissingChunk {
            layer: None,
            id: *id,
            unindexed_pack: state.unreadable.keys().next().cloned(),
        })
    }

    fn mapped(&self, pack: u32) -> Result<Arc<Mmap>> {
        let mut maps = self.maps.lock_unpoisoned();
        if let Some(map) = maps.get(&pack) {
            return Ok(map.clone());
        }
        let stem = self.state.read_unpoisoned().packs[pack as usize].clone();
        let path = self.pack_path(&stem);
        let file = File::open(&path).at(Op::Open, &path)?;
        // Published packs are immutable: nothing truncates or rewrites
        // them in place (gc writes new packs and unlinks old ones, which
        // leaves existing maps valid).
        let map = Arc::new(sys::map_immutable(&file).at(Op::Mmap, &path)?);
        maps.insert(pack, map.clone());
        Ok(map)
    }

    /// A reader that keeps the last few decompressed frames.
    pub fn reader(&self) -> ChunkReader<'_> {
        ChunkReader {
            pool: self,
            frames: Vec::new(),
            decompressor: None,
        }
    }

    /// Where chunk `id` is stored (pack and frame), for ordering reads so
    /// that each frame is decompressed once; `None` if it is not known.
    pub fn frame_of(&self, id: &ChunkId) -> Option<(u32, u64)> {
        let state = self.state.read_unpoisoned();
        state.map.get(id).map(|loc| (loc.pack, loc.frame_offset))
    }

    /// A writer for new chunks. Nothing it writes is visible to others
    /// until [`PoolWriter::finish`] publishes it.
    pub fn writer(&self) -> Result<PoolWriter<'_>> {
        PoolWriter::new(self, false)
    }

    /// Figures about the pool.
    pub fn stats(&self) -> Result<PoolStats> {
        let (chunks, unique_bytes) = {
            let state = self.state.read_unpoisoned();
            (state.map.len() as u64, state.unique_bytes)
        };
        let mut stats = PoolStats {
            chunks,
            unique_bytes,
            ..PoolStats::default()
        };
        if let Ok(dir) = fs::read_dir(&self.packs_dir) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let file = PackFile::of(&name);
                if let PackFile::Pack(_) = file {
                    stats.packs += 1;
                }
                if let PackFile::Pack(_) | PackFile::Index(_) = file {
                    stats.stored_bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        Ok(stats)
    }
}

/// Frames a reader keeps decompressed: a file's chunks may sit in a few
/// frames (shared content stays where it was first stored).
const READER_FRAMES: usize = 4;

/// Reads chunks, verifying each against its ID.
pub struct ChunkReader<'p> {
    pool: &'p ChunkPool,
    /// Decompressed frames by (pack, frame offset), most recent last.
    frames: Vec<((u32, u64), Vec<u8>)>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl ChunkReader<'_> {
    /// The content of chunk `id`, checked against its BLAKE3.
    pub fn read(&mut self, id: &ChunkId) -> Result<&[u8]> {
        let mut loc = self.pool.locate(id)?;
        let bad = |what: String| Error::Chunk { id: *id, what };
        let key = (loc.pack, loc.frame_offset);
        match self.frames.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                let hit = self.frames.remove(i);
                self.frames.push(hit);
            }
            None => {
                let map = match self.pool.mapped(loc.pack) {
                    Ok(map) => map,
                    // A sweep rewrote the pack since the table was loaded.
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        self.pool.reload()?;
                        loc = self.pool.locate(id)?;
                        self.pool.mapped(loc.pack)?
                    }
                    Err(e) => return Err(e),
                };
                // A damaged index may hold any offsets and lengths: no
                // arithmetic on them may overflow, and the decompressed
                // length it claims is only a hint (checked below).
                let compressed = usize::try_from(loc.frame_offset)
                    .ok()
                    .and_then(|start| Some(start..start.checked_add(loc.frame_len as usize)?))
                    .and_then(|frame| map.get(frame))
                    .ok_or_else(|| bad("frame lies outside its pack".into()))?;
                let mut frame = if self.frames.len() >= READER_FRAMES {
                    self.frames.remove(0).1
                } else {
                    let spare = self.pool.spare_frames.lock_unpoisoned().pop();
                    spare.unwrap_or_default()
                };
                frame.clear();
                self.decompress(compressed, loc.raw_len as usize, &mut frame)
                    .map_err(|e| bad(format!("stored frame does not decompress: {e}")))?;
                if frame.len() != loc.raw_len as usize {
                    return Err(bad("stored frame has the wrong length".into()));
                }
                self.frames.push(((loc.pack, loc.frame_offset), frame));
            }
        }
        let frame = &self.frames.last().expect("just pushed").1;
        let data = usize::try_from(loc.offset)
            .ok()
            .zip(usize::try_from(loc.offset as u64 + loc.len as u64).ok())
            .and_then(|(start, end)| frame.get(start..end))
            .ok_or_else(|| bad("chunk lies outside its frame".into()))?;
        if ChunkId::of(data) != *id {
            return Err(bad("stored data does not match its hash".into()));
        }
        Ok(data)
    }

    /// Decompresses one frame into `out`: in one call into a buffer of the
    /// claimed size where that is plausible, else streamed (a claim is
    /// only a hint; a wrong one is caught by the caller's length check).
    fn decompress(
        &mut self,
        compressed: &[u8],
        claimed: usize,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        if claimed <= FRAME_RESERVE_LIMIT {
            if self.decompressor.is_none() {
                self.decompressor = Some(zstd::bulk::Decompressor::new()?);
            }
            // Room for the claimed length: a frame that decodes to more
            // fails rather than growing the buffer.
            out.reserve_exact(claimed);
            let decompressor = self.decompressor.as_mut().expect("just made");
            return decompressor.decompress_to_buffer(compressed, out).map(drop);
        }
        zstd::stream::copy_decode(compressed, out)
    }
}

struct Frame {
    raw: Vec<u8>,
    chunks: Vec<(ChunkId, u32, u32)>,
}

impl Drop for ChunkReader<'_> {
    fn drop(&mut self) {
        let mut spare = self.pool.spare_frames.lock_unpoisoned();
        let room = SPARE_FRAMES.saturating_sub(spare.len());
        spare.extend(self.frames.drain(..).map(|(_, f)| f).take(room));
    }
}

/// Adds chunks to the pool: new ones are grouped into frames, compressed on
/// a worker thread and appended to temporary packs; [`finish`] publishes
/// them (pack fsync, rename, directory fsync, then the index file).
///
/// [`finish`]: PoolWriter::finish
pub struct PoolWriter<'p> {
    pool: &'p ChunkPool,
    pending: IdMap<()>,
    /// Writes every chunk given, even those the pool has (a sweep moving
    /// live chunks out of a pack it rewrites).
    rewrite: bool,
    frame: Frame,
    tx: Option<SyncSender<Frame>>,
    worker: Option<JoinHandle<Result<Vec<SealedPack>>>>,
    stats: WriteStats,
}

impl<'p> PoolWriter<'p> {
    pub(super) fn new(pool: &'p ChunkPool, rewrite: bool) -> Result<PoolWriter<'p>> {
        durable::create_dir_all(&pool.tmp_dir)?;
        pool.refresh()?;
        let (tx, rx) = sync_channel::<Frame>(2);
        let tmp_dir = pool.tmp_dir.clone();
        let level = pool.config.zstd_level;
        let worker = std::thread::Builder::new()
            .name("pack-writer".into())
            .spawn(move || write_packs(rx, &tmp_dir, level))
            .map_err(|e| Error::Stream {
                what: "start pack writer thread".into(),
                source: e,
            })?;
        Ok(PoolWriter {
            pool,
            pending: IdMap::default(),
            rewrite,
            frame: Frame {
                raw: Vec::new(),
                chunks: Vec::new(),
            },
            tx: Some(tx),
            worker: Some(worker),
            stats: WriteStats::default(),
        })
    }

    /// Adds one chunk; returns its ID and whether it was new.
    pub fn add(&mut self, data: &[u8]) -> Result<(ChunkId, bool)> {
        let id = ChunkId::of(data);
        if self.pending.contains_key(&id) || (!self.rewrite && self.pool.contains(&id)) {
            self.stats.reused_chunks += 1;
            return Ok((id, false));
        }
        self.pending.insert(id, ());
        self.stats.new_chunks += 1;
        self.stats.new_bytes += data.len() as u64;
        let offset = self.frame.raw.len() as u32;
        self.frame.raw.extend_from_slice(data);
        self.frame.chunks.push((id, offset, data.len() as u32));
        if self.frame.raw.len() >= self.pool.config.frame_size as usize {
            self.flush_frame()?;
        }
        Ok((id, true))
    }

    /// Counts so far.
    pub fn stats(&self) -> WriteStats {
        self.stats
    }

    fn flush_frame(&mut self) -> Result<()> {
        if self.frame.chunks.is_empty() {
            return Ok(());
        }
        let frame = std::mem::replace(
            &mut self.frame,
            Frame {
                raw: Vec::with_capacity(self.pool.config.frame_size as usize * 2),
                chunks: Vec::new(),
            },
        );
        let sent = self.tx.as_ref().map(|tx| tx.send(frame).is_ok());
        if sent != Some(true) {
            // The worker stopped: its error says why.
            return Err(self.join().err().unwrap_or_else(|| Error::Stream {
                what: "pack writer".into(),
                source: std::io::Error::other("stopped early"),
            }));
        }
        Ok(())
    }

    fn join(&mut self) -> Result<Vec<SealedPack>> {
        self.tx = None;
        match self.worker.take() {
            Some(worker) => worker
                .join()
                .unwrap_or(Err(Error::Panicked("pack writer thread"))),
            None => Ok(Vec::new()),
        }
    }

    /// Publishes every new chunk: packs become durable and visible before
    /// their index files, which become visible before this returns.
    pub fn finish(self) -> Result<WriteStats> {
        self.stage()?.publish()
    }

    /// Makes every new chunk durable under temporary names, with the
    /// space its index file needs taken; nothing is visible to others
    /// until [`StagedChunks::publish`].
    pub fn stage(mut self) -> Result<StagedChunks<'p>> {
        self.flush_frame()?;
        let packs = self
            .join()?
            .into_iter()
            .map(|pack| StagedPack::new(&self.pool.packs_dir, pack))
            .collect::<Result<_>>()?;
        Ok(StagedChunks {
            pool: self.pool,
            packs,
            stats: self.stats,
        })
    }
}

/// The packs of a [`PoolWriter`], durable under temporary names, each with
/// room taken for its index file; dropped unpublished, they go.
pub struct StagedChunks<'p> {
    pool: &'p ChunkPool,
    packs: Vec<StagedPack>,
    stats: WriteStats,
}

impl StagedChunks<'_> {
    /// Publishes the packs, one after the other (see
    /// [`StagedPack::publish`]).
    pub fn publish(self) -> Result<WriteStats> {
        let mut stats = self.stats;
        for staged in self.packs {
            stats.stored_bytes += staged.publish(self.pool)?;
        }
        Ok(stats)
    }
}

/// A sealed pack, its name in `packs/`, and room taken there for its
/// index file.
struct StagedPack {
    pack: SealedPack,
    name: String,
    entries: Vec<IndexEntry>,
    index: Vec<u8>,
    index_file: PendingFile,
}

impl StagedPack {
    fn new(packs_dir: &Path, mut pack: SealedPack) -> Result<StagedPack> {
        let name = names::new_stem();
        let mut entries = std::mem::take(&mut pack.entries);
        let index = index::encode(&mut entries);
        let index_file =
            PendingFile::create(&packs_dir.join(names::index(&name)), index.len() as u64)?;
        Ok(StagedPack {
            pack,
            name,
            entries,
            index,
            index_file,
        })
    }

    /// Renames the pack into the pool's `packs/` and `fsync`s the
    /// directory, then gives the index file its name and adds the entries
    /// to the pool's table; returns the pack's size.
    fn publish(mut self, pool: &ChunkPool) -> Result<u64> {
        let packs_dir = &pool.packs_dir;
        let pack_path = self.pack.publish(packs_dir, &self.name)?;
        let index_path = pool.index_path(&self.name);
        if let Err(e) = self.index_file.commit(&self.index, Flush::Now) {
            // No reader knows a pack whose index never got its name;
            // without the pack, its space comes back.
            if !index_path.exists() {
                let _ = fs::remove_file(&pack_path);
            }
            return Err(e);
        }
        pool.insert(&self.name, &self.entries);
        Ok(self.pack.len)
    }
}

impl Drop for PoolWriter<'_> {
    fn drop(&mut self) {
        // Stops the worker; the packs it sealed go with the result.
        if self.worker.is_some() {
            let _ = self.join();
        }
    }
}

/// The worker: compresses frames and appends them to temporary packs.
fn write_packs(rx: Receiver<Frame>, tmp_dir: &Path, level: i32) -> Result<Vec<SealedPack>> {
    let mut sealed = Vec::new();
    let mut current: Option<PackBuilder> = None;
    let mut compressor = zstd::bulk::Compressor::new(level).map_err(|e| Error::Stream {
        what: "zstd".into(),
        source: e,
    })?;
    let result = (|| {
        for frame in rx {
            let compressed = compressor.compress(&frame.raw).map_err(|e| Error::Stream {
                what: "zstd compress".into(),
                source: e,
            })?;
            if current
                .as_ref()
                .is_some_and(|p| p.len() + compressed.len() as u64 > PACK_TARGET)
            {
                sealed.push(current.take().expect("pack is open").seal()?);
            }
            if current.is_none() {
                current = Some(PackBuilder::create(tmp_dir)?);
            }
            let pack = current.as_mut().expect("pack is open");
            pack.append_frame(&compressed, frame.raw.len() as u32, &frame.chunks)?;
        }
        if let Some(pack) = current.take() {
            sealed.push(pack.seal()?);
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(sealed),
        Err(e) => {
            // The sealed packs go when dropped.
            if let Some(pack) = current.take() {
                pack.discard();
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_publishes_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ChunkPool::open(dir.path(), true).unwrap();
        let mut w = pool.writer().unwrap();
        let a = w.add(b"alpha").unwrap();
        let b = w.add(b"beta").unwrap();
        let again = w.add(b"alpha").unwrap();
        assert!(a.1 && b.1 && !again.1);
        let stats = w.finish().unwrap();
        assert_eq!((stats.new_chunks, stats.reused_chunks), (2, 1));

        let reopened = ChunkPool::open(dir.path(), false).unwrap();
        let mut r = reopened.reader();
        assert_eq!(r.read(&a.0).unwrap(), b"alpha");
        assert_eq!(r.read(&b.0).unwrap(), b"beta");
        let s = reopened.stats().unwrap();
        assert_eq!((s.chunks, s.unique_bytes, s.packs), (2, 9, 1));
    }

    #[test]
    fn an_abandoned_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ChunkPool::open(dir.path(), true).unwrap();
        let mut w = pool.writer().unwrap();
        w.add(&[7u8; 5000]).unwrap();
        drop(w);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(dir.path().join("packs")).unwrap().count(), 0);
        assert_eq!(pool.stats().unwrap().chunks, 0);
    }

    #[test]
    fn a_flipped_byte_is_an_error_not_wrong_data() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ChunkPool::open(dir.path(), true).unwrap();
        let mut w = pool.writer().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (id, _) = w.add(&data).unwrap();
        w.finish().unwrap();
        let pack = fs::read_dir(dir.path().join("packs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "pack"))
            .unwrap();
        let mut bytes = fs::read(&pack).unwrap();
        let last = bytes.len() - 20;
        bytes[last] ^= 0x55;
        fs::write(&pack, bytes).unwrap();
        let fresh = ChunkPool::open(dir.path(), false).unwrap();
        let err = fresh.reader().read(&id).unwrap_err().to_string();
        assert!(err.starts_with(&format!("chunk {id}")), "{err}");
    }
}
