//! Tar stream -> manifest, in one streaming pass with bounded memory.
//!
//! Three threads share the work: a reader decompresses the input (hashing
//! the compressed bytes), a hasher computes the DiffID over the
//! uncompressed stream, and the calling thread parses the tar, chunks each
//! regular file and hands new chunks to the pool writer (whose own worker
//! compresses them). Blocks travel in bounded channels, so memory does not
//! grow with the layer's size.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use super::compression::Compression;
use super::digest::Sha256;
use super::extract::Extraction;
use super::limits;
use super::model::{ChunkRef, Entry, EntryKind, LayerManifest, Xattr};
use super::path::{
    check_lengths, is_whiteout_name, lossy, normalize, opaque_dir, split_last, whiteout_target,
    OPAQUE_MARKER, WHITEOUT_PREFIX,
};
use super::stream_error;
use super::tar::{self, Header, PaxRecords, BLOCK};
use super::tar_split::Crc64;
use crate::chunks::{ChunkPool, Chunker, ChunkerParams, PoolWriter, StagedChunks, WriteStats};
use crate::error::{Error, Result};

const READ_BLOCK: usize = 1 << 20;
const CHANNEL_DEPTH: usize = 8;
/// Extended headers and long names larger than this are refused.
const META_LIMIT: u64 = 1 << 20;
/// Content of non-regular entries is kept raw; more than this is refused.
const RAW_DATA_LIMIT: u64 = 64 << 20;
/// Bytes after the end-of-archive marker are kept raw, up to this much.
const TRAILER_LIMIT: u64 = 16 << 20;
/// No layer holds a file this large; a bigger size field is hostile.
const SIZE_LIMIT: u64 = 1 << 40;
/// Go's `archive/tar.ErrHeader` text, which begins the message of a header
/// that does not parse (scripts written for upstream match on it).
const INVALID_HEADER: &str = "invalid tar header";
/// Go's `io.ErrUnexpectedEOF` text, which begins the message of a stream
/// cut short (scripts written for upstream match on it).
const UNEXPECTED_EOF: &str = "unexpected EOF";

/// Whether a decompressor's error says its input ended too soon.
fn is_cut_short(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return true;
    }
    let text = e.to_string().to_ascii_lowercase();
    [
        "incomplete",
        "truncated",
        "unexpected end",
        "unexpected eof",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// Progress of an import, for progress bars.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportProgress {
    /// Uncompressed bytes processed.
    pub bytes: u64,
    /// Chunks stored new.
    pub new_chunks: u64,
    /// Chunks found in the pool already.
    pub reused_chunks: u64,
}

/// Receives progress reports during an import or export.
pub trait ImportObserver: Sync {
    /// Called now and then with the figures so far.
    fn progress(&self, _progress: &ImportProgress) {}
}

impl ImportObserver for () {}

/// The result of an import: the manifest (its `parent` unset) and what was
/// written to the pool (already published).
pub struct Imported {
    /// The layer's manifest.
    pub manifest: LayerManifest,
    /// CRC-64/ISO of each entry's content, parallel to the manifest's
    /// entries (0 for entries without content): what a tar-split records
    /// (see [`super::tar_split::write_tar_split`]).
    pub crc64: Vec<u64>,
    /// New and reused chunk counts.
    pub stats: WriteStats,
}

/// An import whose chunks are durable but not yet published: the caller
/// takes the space for what it will write with the manifest, then
/// publishes the chunks. Dropped, it leaves nothing in the pool.
pub struct StagedImport<'p> {
    /// The layer's manifest (its `parent` unset).
    pub manifest: LayerManifest,
    /// CRC-64/ISO of each entry's content, as [`Imported::crc64`].
    pub crc64: Vec<u64>,
    /// The new chunks.
    pub chunks: StagedChunks<'p>,
}

/// Reads a tar stream (plain or compressed), stores its file content in
/// the pool and returns its manifest. On error nothing is published.
pub fn import_tar<R: Read + Send>(
    input: R,
    pool: &ChunkPool,
    observer: &dyn ImportObserver,
) -> Result<Imported> {
    let staged = stage_tar(input, pool, observer)?;
    let stats = staged.chunks.publish()?;
    Ok(Imported {
        manifest: staged.manifest,
        crc64: staged.crc64,
        stats,
    })
}

/// [`import_tar`] up to the publication of the chunks.
pub fn stage_tar<'p, R: Read + Send>(
    input: R,
    pool: &'p ChunkPool,
    observer: &dyn ImportObserver,
) -> Result<StagedImport<'p>> {
    let (parse_tx, parse_rx) = sync_channel::<Arc<Vec<u8>>>(CHANNEL_DEPTH);
    let (hash_tx, hash_rx) = sync_channel::<Arc<Vec<u8>>>(CHANNEL_DEPTH);
    // Spent blocks go back to the reader, so that it does not allocate
    // (and the kernel zero) a fresh megabyte for every block.
    let (spent_tx, spent_rx) = sync_channel::<Vec<u8>>(2 * CHANNEL_DEPTH + 2);
    let recycle = Recycler(spent_tx);
    let mut writer = pool.writer()?;
    let params = pool.config().chunker;
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_stream(input, parse_tx, hash_tx, spent_rx));
        let hasher_recycle = recycle.clone();
        let hasher = scope.spawn(move || {
            let mut h = Sha256::default();
            for block in hash_rx {
                h.update(&block);
                hasher_recycle.give_back(block);
            }
            (h.len(), h.finish())
        });
        let mut parser = Parser::new(
            BlockReader::new(parse_rx, recycle),
            &mut writer,
            params,
            observer,
        );
        let parsed = parser.run().and_then(|()| parser.check_extraction());
        let parsed = parsed.map(|()| (parser.finish(), std::mem::take(&mut parser.crc64)));
        drop(parser);
        let stream = reader
            .join()
            .unwrap_or(Err(Error::Panicked("layer stream reader")));
        let (diff_size, diff_digest) = hasher.join().unwrap_or((0, String::new()));
        // A decompression error explains a truncated tar better than the
        // parser's "unexpected end"; a reader stopped by the parser has
        // nothing to add to the parser's error.
        let (stream, (mut manifest, crc64)) = match (stream?, parsed) {
            (Some(stream), Ok(parsed)) => (stream, parsed),
            (_, Err(e)) => return Err(e),
            (None, Ok(_)) => return Err(Error::BadTar("layer stream ended early".into())),
        };
        manifest.compression = stream.compression;
        manifest.diff_size = diff_size;
        manifest.compressed_size = stream.size;
        manifest.compressed_digest = stream.digest.unwrap_or_else(|| diff_digest.clone());
        manifest.diff_digest = diff_digest;
        Ok((manifest, crc64))
    })
    .and_then(|(manifest, crc64)| {
        let chunks = writer.stage()?;
        Ok(StagedImport {
            manifest,
            crc64,
            chunks,
        })
    })
}

struct StreamInfo {
    compression: Compression,
    digest: Option<String>,
    size: u64,
}

/// Counts and (for compressed input) hashes the bytes as given.
struct Tap<R> {
    inner: R,
    hash: Option<Sha256>,
    count: u64,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hash {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// The reader thread: sniff, decompress, broadcast uncompressed blocks.
/// Returns `None` when the parser stopped reading (it reports why).
fn read_stream<R: Read>(
    mut input: R,
    parse_tx: SyncSender<Arc<Vec<u8>>>,
    hash_tx: SyncSender<Arc<Vec<u8>>>,
    spent: Receiver<Vec<u8>>,
) -> Result<Option<StreamInfo>> {
    let mut head = [0u8; 6];
    let head_len = fill(&mut input, &mut head).map_err(|e| Error::Stream {
        what: "reading the layer stream".into(),
        source: e,
    })?;
    let compression = Compression::sniff(&head[..head_len]);
    let mut tap = Tap {
        inner: io::Cursor::new(head[..head_len].to_vec()).chain(input),
        hash: (compression != Compression::None).then(Sha256::default),
        count: 0,
    };
    let failed = |e: io::Error| match compression {
        Compression::None => Error::Stream {
            what: "reading the layer stream".into(),
            source: e,
        },
        // Go's readers say `unexpected EOF` for a compressed stream cut
        // short; scripts match on those words.
        c if is_cut_short(&e) => Error::BadTar(format!(
            "{UNEXPECTED_EOF}: {c} stream does not decompress: {e}"
        )),
        c => Error::BadTar(format!("{c} stream does not decompress: {e}")),
    };
    {
        let mut decoder = compression.decoder(&mut tap).map_err(failed)?;
        loop {
            let mut block = spent.try_recv().unwrap_or_default();
            block.resize(READ_BLOCK, 0);
            let n = fill(&mut decoder, &mut block).map_err(failed)?;
            if n == 0 {
                break;
            }
            block.truncate(n);
            let block = Arc::new(block);
            if hash_tx.send(block.clone()).is_err() || parse_tx.send(block).is_err() {
                // The parser stopped on an error of its own.
                return Ok(None);
            }
        }
    }
    // Drain whatever follows the last compressed member so the digest
    // covers the whole blob.
    io::copy(&mut tap, &mut io::sink()).map_err(failed)?;
    Ok(Some(StreamInfo {
        compression,
        digest: tap.hash.take().map(Sha256::finish),
        size: tap.count,
    }))
}

/// Reads until `buf` is full or the stream ends.
fn fill<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Returns blocks to the reader once their last user is done with them.
#[derive(Clone)]
struct Recycler(SyncSender<Vec<u8>>);

impl Recycler {
    fn give_back(&self, block: Arc<Vec<u8>>) {
        if let Ok(buf) = Arc::try_unwrap(block) {
            let _ = self.0.try_send(buf);
        }
    }
}

/// `Read` over the blocks the reader thread sends.
struct BlockReader {
    rx: Receiver<Arc<Vec<u8>>>,
    block: Arc<Vec<u8>>,
    pos: usize,
    offset: u64,
    recycle: Recycler,
}

impl BlockReader {
    fn new(rx: Receiver<Arc<Vec<u8>>>, recycle: Recycler) -> BlockReader {
        BlockReader {
            rx,
            block: Arc::new(Vec::new()),
            pos: 0,
            offset: 0,
            recycle,
        }
    }
}

impl Read for BlockReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            match self.rx.recv() {
                Ok(block) => {
                    let spent = std::mem::replace(&mut self.block, block);
                    self.recycle.give_back(spent);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Extended-header state that applies to the next real entry.
#[derive(Default)]
struct Pending {
    pax: PaxRecords,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.pax.is_empty() && self.long_name.is_none() && self.long_link.is_none()
    }
}

struct Parser<'a, 'p> {
    input: BlockReader,
    raw: zstd::stream::write::Encoder<'static, Vec<u8>>,
    raw_len: u64,
    raw_since_entry: u64,
    writer: &'a mut PoolWriter<'p>,
    params: ChunkerParams,
    chunker: Chunker,
    observer: &'a dyn ImportObserver,
    reported_at: u64,
    entries: Vec<Entry>,
    /// CRC-64/ISO of each entry's content (0 without content).
    crc64: Vec<u64>,
    /// Where each entry's header starts in the tar, for messages.
    offsets: Vec<u64>,
    uids: BTreeSet<u32>,
    gids: BTreeSet<u32>,
    global_pax: PaxRecords,
}

impl<'a, 'p> Parser<'a, 'p> {
    fn new(
        input: BlockReader,
        writer: &'a mut PoolWriter<'p>,
        params: ChunkerParams,
        observer: &'a dyn ImportObserver,
    ) -> Self {
        let mut raw = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd encoder");
        raw.include_checksum(true).expect("zstd checksum flag");
        Parser {
            input,
            raw,
            raw_len: 0,
            raw_since_entry: 0,
            writer,
            params,
            chunker: Chunker::new(params),
            observer,
            reported_at: 0,
            entries: Vec::new(),
            crc64: Vec::new(),
            offsets: Vec::new(),
            uids: BTreeSet::new(),
            gids: BTreeSet::new(),
            global_pax: Vec::new(),
        }
    }

    fn bad(offset: u64, what: impl std::fmt::Display) -> Error {
        Error::BadTar(format!("tar offset {offset}: {what}"))
    }

    /// A header that does not parse, in the words of Go's `archive/tar`
    /// (`invalid tar header`, which scripts match on), then where and why.
    fn bad_header(offset: u64, what: impl std::fmt::Display) -> Error {
        Error::BadTar(format!("{INVALID_HEADER}: tar offset {offset}: {what}"))
    }

    /// A stream cut short, in Go's words (`unexpected EOF`, which scripts
    /// match on), then where and what was cut.
    fn truncated(offset: u64, what: impl std::fmt::Display) -> Error {
        Error::BadTar(format!("{UNEXPECTED_EOF}: tar offset {offset}: {what}"))
    }

    fn keep_raw(&mut self, data: &[u8]) -> Result<()> {
        self.raw.write_all(data).expect("writing to memory");
        self.raw_len += data.len() as u64;
        self.raw_since_entry += data.len() as u64;
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes or fails naming what was cut short.
    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let at = self.input.offset;
        let n = fill(&mut self.input, buf).map_err(stream_error)?;
        if n < buf.len() {
            return Err(Self::truncated(
                at + n as u64,
                format!("the stream ends in {what} (the tar is truncated)"),
            ));
        }
        Ok(())
    }

    /// Reads `len` bytes plus padding into the raw stream, returning the
    /// unpadded bytes when `keep` (for extended headers).
    fn read_raw_data(&mut self, len: u64, what: &str) -> Result<Vec<u8>> {
        let padded = len.div_ceil(BLOCK as u64) * BLOCK as u64;
        let mut kept = Vec::new();
        let mut remaining = padded;
        let mut buf = vec![0u8; 64 * 1024];
        while remaining > 0 {
            let n = remaining.min(buf.len() as u64) as usize;
            self.read_exact(&mut buf[..n], what)?;
            let consumed = padded - remaining;
            if consumed < len && len <= META_LIMIT {
                let take = ((len - consumed) as usize).min(n);
                kept.extend_from_slice(&buf[..take]);
            }
            self.keep_raw(&buf[..n])?;
            remaining -= n as u64;
        }
        Ok(kept)
    }

    fn run(&mut self) -> Result<()> {
        let mut pending = Pending::default();
        loop {
            let at = self.input.offset;
            let mut block = [0u8; BLOCK];
            let n = fill(&mut self.input, &mut block).map_err(stream_error)?;
            if n == 0 {
                // Where an entry could start, the end of the stream ends
                // the archive, as upstream's tar reader has it: an empty
                // stream is an empty layer, and the end-of-archive
                // marker may be missing. The stream is kept as it came.
                // Extended headers with no entry after them are cut short.
                if pending.is_empty() {
                    return Ok(());
                }
                return Err(Self::truncated(
                    at,
                    "the stream ends after extended headers, before their entry (the tar is truncated)",
                ));
            }
            if n < BLOCK {
                return Err(Self::truncated(
                    at + n as u64,
                    "the stream ends before the end-of-archive marker (the tar is truncated)",
                ));
            }
            self.keep_raw(&block)?;
            if tar::is_zero_block(&block) {
                return self.end_of_archive(at);
            }
            let header = tar::parse_header(&block).map_err(|e| Self::bad_header(at, e))?;
            match header.typeflag {
                b'x' | b'g' | b'L' | b'K' => {
                    if header.size > META_LIMIT {
                        return Err(Self::bad(
                            at,
                            format!("extended header of {} bytes is too large", header.size),
                        ));
                    }
                    let data = self.read_raw_data(header.size, "an extended header")?;
                    match header.typeflag {
                        b'x' => {
                            pending.pax =
                                tar::parse_pax(&data).map_err(|e| Self::bad_header(at, e))?
                        }
                        b'g' => {
                            let records =
                                tar::parse_pax(&data).map_err(|e| Self::bad_header(at, e))?;
                            self.global_pax.extend(records);
                        }
                        b'L' => pending.long_name = Some(trim_nul(data)),
                        _ => pending.long_link = Some(trim_nul(data)),
                    }
                }
                _ => {
                    let meta = std::mem::take(&mut pending);
                    self.entry(at, header, meta)?;
                }
            }
        }
    }

    /// After a zero block: the end, unless a header follows (as Go's
    /// archive/tar, a lone zero block before more entries is refused, or
    /// the manifest and the exported bytes would disagree).
    fn end_of_archive(&mut self, at: u64) -> Result<()> {
        let mut block = [0u8; BLOCK];
        let n = fill(&mut self.input, &mut block).map_err(stream_error)?;
        if n == 0 {
            return Ok(());
        }
        if n < BLOCK {
            return Err(Self::truncated(
                at + BLOCK as u64 + n as u64,
                "the stream ends in the end-of-archive marker (the tar is truncated)",
            ));
        }
        if !tar::is_zero_block(&block) {
            return Err(Self::bad(
                at,
                "a lone zero block is followed by more entries (not an end-of-archive marker)",
            ));
        }
        self.keep_raw(&block)?;
        self.read_trailer()
    }

    fn read_trailer(&mut self) -> Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = fill(&mut self.input, &mut buf).map_err(stream_error)?;
            if n == 0 {
                return Ok(());
            }
            total += n as u64;
            if total > TRAILER_LIMIT {
                return Err(Self::bad(
                    self.input.offset,
                    "more than 16 MiB of data after the end-of-archive marker",
                ));
            }
            self.keep_raw(&buf[..n])?;
        }
    }

    fn entry(&mut self, at: u64, header: Header, meta: Pending) -> Result<()> {
        let bad = |what: String| Self::bad(at, what);
        let f = Fields::of(&header, meta, &self.global_pax)
            .map_err(|what| Self::bad_header(at, what))?;
        if f.size > SIZE_LIMIT {
            return Err(bad(format!(
                "absurd size field {} for {:?}",
                f.size,
                lossy(&f.raw_path)
            )));
        }
        let (uid, gid, size) = (f.uid, f.gid, f.size);
        let uid = u32::try_from(uid).map_err(|_| bad(format!("uid {uid} out of range")))?;
        let gid = u32::try_from(gid).map_err(|_| bad(format!("gid {gid} out of range")))?;
        let path = normalize(&f.raw_path).map_err(bad)?;
        let kind = kind_of(header.typeflag, &f.raw_path, &path).map_err(bad)?;
        let link = checked_names(kind, &path, f.link, &f.xattrs).map_err(bad)?;
        let dev =
            |n: u64| u32::try_from(n).map_err(|_| bad(format!("device number {n} out of range")));
        let (dev_major, dev_minor) = (dev(header.dev_major)?, dev(header.dev_minor)?);
        if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            limits::check_device(dev_major, dev_minor)
                .map_err(|what| bad(format!("{:?}: {what}", lossy(&path))))?;
        }
        let mut entry = Entry {
            kind,
            path,
            mode: header.mode,
            uid,
            gid,
            mtime: f.mtime,
            mtime_nsec: f.mtime_nsec,
            link,
            dev_major,
            dev_minor,
            xattrs: f.xattrs,
            size,
            chunks: Vec::new(),
            raw_len: 0,
        };
        self.uids.insert(uid);
        self.gids.insert(gid);
        if kind == EntryKind::File && matches!(header.typeflag, b'0' | 0 | b'7') {
            entry.raw_len = std::mem::take(&mut self.raw_since_entry);
            let crc64 = self.file_content(&mut entry)?;
            self.crc64.push(crc64);
        } else {
            self.crc64.push(0);
            if size > RAW_DATA_LIMIT {
                return Err(bad(format!(
                    "{} bytes of data on a non-file entry {:?}",
                    size,
                    lossy(&entry.path)
                )));
            }
            self.read_raw_data(size, "entry data")?;
            entry.size = 0;
            entry.raw_len = std::mem::take(&mut self.raw_since_entry);
        }
        self.entries.push(entry);
        self.offsets.push(at);
        Ok(())
    }

    /// Refuses a layer whose entries cannot be extracted in tar order
    /// (a link to a missing target, an entry below a symlink): it could
    /// never be materialized.
    fn check_extraction(&self) -> Result<()> {
        match Extraction::of(&self.entries).refusal() {
            Some(r) => Err(Self::bad(self.offsets[r.entry], &r.what)),
            None => Ok(()),
        }
    }

    /// Chunks a file's content into the pool; returns its CRC-64/ISO.
    fn file_content(&mut self, entry: &mut Entry) -> Result<u64> {
        let at = self.input.offset;
        let size = entry.size;
        let writer = &mut *self.writer;
        let chunks = &mut entry.chunks;
        let mut crc = Crc64::default();
        let read =
            self.chunker
                .chunk_stream((&mut self.input).take(size), stream_error, |data| {
                    crc.update(data);
                    let (id, _) = writer.add(data)?;
                    chunks.push(ChunkRef {
                        id,
                        len: data.len() as u32,
                    });
                    Ok(())
                })?;
        if read < size {
            return Err(Self::truncated(
                at + read,
                format!(
                    "the stream ends in the content of {:?} (the tar is truncated)",
                    lossy(&entry.path)
                ),
            ));
        }
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        let mut pad = [0u8; BLOCK];
        self.read_exact(&mut pad[..padding as usize], "padding")?;
        self.keep_raw(&pad[..padding as usize])?;
        if self.input.offset - self.reported_at >= 1 << 20 {
            self.reported_at = self.input.offset;
            let stats = self.writer.stats();
            self.observer.progress(&ImportProgress {
                bytes: self.input.offset,
                new_chunks: stats.new_chunks,
                reused_chunks: stats.reused_chunks,
            });
        }
        Ok(crc.finish())
    }

    fn finish(&mut self) -> LayerManifest {
        let encoder = std::mem::replace(
            &mut self.raw,
            zstd::stream::write::Encoder::new(Vec::new(), 1).expect("zstd encoder"),
        );
        let raw = encoder.finish().expect("finishing a zstd stream in memory");
        LayerManifest {
            chunker_algorithm: crate::chunks::CHUNKER_ALGORITHM.to_string(),
            chunker: self.params,
            parent: None,
            compression: Compression::None,
            compressed_digest: String::new(),
            compressed_size: 0,
            diff_digest: String::new(),
            diff_size: 0,
            uids: self.uids.iter().copied().collect(),
            gids: self.gids.iter().copied().collect(),
            entries: std::mem::take(&mut self.entries),
            raw_len: self.raw_len,
            raw,
        }
    }
}

fn trim_nul(mut data: Vec<u8>) -> Vec<u8> {
    if let Some(end) = data.iter().position(|&b| b == 0) {
        data.truncate(end);
    }
    data
}

/// An entry's fields as its header gives them, overridden by the PAX
/// records (the global ones first).
struct Fields {
    raw_path: Vec<u8>,
    link: Vec<u8>,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: u32,
    xattrs: Vec<Xattr>,
}

impl Fields {
    fn of(header: &Header, meta: Pending, global_pax: &PaxRecords) -> Result<Fields, String> {
        let mut f = Fields {
            raw_path: meta.long_name.unwrap_or_else(|| header.name.clone()),
            link: meta.long_link.unwrap_or_else(|| header.linkname.clone()),
            uid: header.uid,
            gid: header.gid,
            size: header.size,
            mtime: header.mtime,
            mtime_nsec: 0,
            xattrs: Vec::new(),
        };
        for (key, value) in global_pax.iter().chain(meta.pax.iter()) {
            match key.as_slice() {
                b"path" => f.raw_path = value.clone(),
                b"linkpath" => f.link = value.clone(),
                b"uid" => f.uid = tar::parse_pax_number(value, "uid")?,
                b"gid" => f.gid = tar::parse_pax_number(value, "gid")?,
                b"size" => f.size = tar::parse_pax_number(value, "size")?,
                b"mtime" => (f.mtime, f.mtime_nsec) = tar::parse_pax_time(value)?,
                k if k.starts_with(b"SCHILY.xattr.") => {
                    let name = String::from_utf8(k[13..].to_vec())
                        .map_err(|_| "xattr name is not UTF-8".to_string())?;
                    f.xattrs.retain(|x: &Xattr| x.name != name);
                    // Kept in the raw stream only (for the exact tar),
                    // never written onto what is materialized.
                    if limits::never_written(&name) {
                        continue;
                    }
                    f.xattrs.push(Xattr {
                        name,
                        value: value.clone(),
                    });
                }
                k if k.starts_with(b"GNU.sparse.") => {
                    return Err("sparse files are not supported".into())
                }
                _ => {}
            }
        }
        Ok(f)
    }
}

/// The kind of the entry at normalised `path` (`raw_path` in the tar)
/// with `typeflag`: whiteouts and opaque markers by their names.
fn kind_of(typeflag: u8, raw_path: &[u8], path: &[u8]) -> Result<EntryKind, String> {
    let kind = match typeflag {
        b'0' | 0 | b'7' if raw_path.ends_with(b"/") => EntryKind::Dir,
        b'0' | 0 | b'7' => EntryKind::File,
        b'1' => EntryKind::Hardlink,
        b'2' => EntryKind::Symlink,
        b'3' => EntryKind::CharDevice,
        b'4' => EntryKind::BlockDevice,
        b'5' => EntryKind::Dir,
        b'6' => EntryKind::Fifo,
        b'S' => return Err("sparse files are not supported".into()),
        other => {
            return Err(format!(
                "unsupported entry type {:?} for {:?}",
                other as char,
                lossy(raw_path)
            ))
        }
    };
    if path.is_empty() && kind != EntryKind::Dir {
        return Err(format!("entry {:?} has no name", lossy(raw_path)));
    }
    let (_, base) = split_last(path);
    Ok(if base == OPAQUE_MARKER {
        EntryKind::Opaque
    } else if is_whiteout_name(base) {
        EntryKind::Whiteout
    } else {
        kind
    })
}

/// Refuses names the kernel or the materializer could not take: a path
/// too long, an empty or escaping hard link target, a symlink target the
/// kernel refuses, a whiteout that names nothing, an xattr the kernel
/// refuses. Returns the link (a hard link's normalised).
fn checked_names(
    kind: EntryKind,
    path: &[u8],
    mut link: Vec<u8>,
    xattrs: &[Xattr],
) -> Result<Vec<u8>, String> {
    // Whiteouts and opaque markers are never made under their own
    // names (a `.wh.` name may be 4 bytes too long): only the paths
    // they name must fit.
    match kind {
        EntryKind::Whiteout => check_lengths(&whiteout_target(path)),
        EntryKind::Opaque => check_lengths(opaque_dir(path)),
        _ => check_lengths(path),
    }?;
    let named = |what: String| format!("{:?}: {what}", lossy(path));
    match kind {
        EntryKind::Hardlink => {
            link = normalize(&link).map_err(|e| format!("hard link target: {e}"))?;
            if link.is_empty() {
                return Err(format!("hard link {:?} has no target", lossy(path)));
            }
        }
        EntryKind::Symlink => limits::check_symlink_target(&link).map_err(named)?,
        EntryKind::Whiteout => {
            let (_, base) = split_last(path);
            let hidden = &base[WHITEOUT_PREFIX.len()..];
            if matches!(hidden, b"" | b"." | b"..") {
                return Err(named(format!(
                    "a whiteout of {:?} hides nothing it could name",
                    lossy(hidden)
                )));
            }
        }
        _ => {}
    }
    if kind != EntryKind::Whiteout && kind != EntryKind::Opaque {
        for x in xattrs {
            limits::check_xattr(kind, x).map_err(named)?;
        }
    }
    Ok(link)
}
