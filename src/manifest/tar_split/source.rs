//! Writing a tar-split: Go's disassembler (`asm.NewInputTarStream`) over
//! a tar stream, or over a layer manifest, whose raw stream holds every
//! byte but file content and whose content CRC-64s were recorded at
//! import (or are computed from the pool).
//!
//! Records, in Go's order: for each entry Go's reader returns, the raw
//! bytes read for it (when not empty) as a segment, then the entry's file
//! record (a payload, the content's CRC-64, when its size is above 0);
//! at the end, the raw bytes of the end-of-archive marker (when not
//! empty), then whatever follows it in segments of at most 1 MiB, and an
//! empty segment (Go's last read, which returns nothing). Go splits
//! trailing bytes where its buffered reads end, which depends on how the
//! tar reached it; the bytes are the same.

use std::io::{self, Read, Write};

use super::go_reader::{GoTarReader, Source, Step};
use super::record::{RecordWriter, TarSplitRecord};
use super::Crc64;
use crate::chunks::{ChunkPool, ChunkReader};
use crate::error::{Error, Result};
use crate::manifest::model::{EntryKind, LayerManifest};

/// Go reads what follows the end-of-archive marker in pieces of this size.
const TRAILER_PIECE: usize = 1 << 20;

/// What a tar-split describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TarSplitSummary {
    /// Records written.
    pub records: u64,
    /// Size of the tar it gives back.
    pub tar_size: u64,
}

/// Where the CRC-64 of a manifest's file content comes from.
#[derive(Clone, Copy)]
pub enum ContentCrcs<'a> {
    /// Recorded at import: one per manifest entry, in entry order
    /// ([`crate::manifest::Imported::crc64`]); nothing is read.
    Recorded(&'a [u64]),
    /// Computed from the chunks in the pool (reads the layer's content,
    /// checking every chunk's hash).
    FromPool(&'a ChunkPool),
}

/// Writes the tar-split of the tar read from `tar` (uncompressed) to
/// `out`, gzip-compressed as Go stores it: what Go's disassembler writes
/// for the same tar. A tar Go refuses, or whose tar-split would not give
/// it back, is [`Error::TarSplitUnsupported`].
pub fn disassemble<R: Read>(tar: R, out: impl Write) -> Result<TarSplitSummary> {
    let source = StreamSource {
        input: tar,
        offset: 0,
    };
    gzipped(out, |records| run(source, records))
}

/// Writes the tar-split of the tar `manifest` exports, gzip-compressed as
/// Go stores it (`<drv>-layers/<id>.tar-split.gz`). With
/// [`ContentCrcs::Recorded`] no content is read: the raw stream is
/// decompressed and re-framed. The tar described is checked against the
/// manifest's `diff_size`.
pub fn write_tar_split(
    manifest: &LayerManifest,
    crcs: ContentCrcs<'_>,
    out: impl Write,
) -> Result<TarSplitSummary> {
    let raw = zstd::stream::read::Decoder::new(&manifest.raw[..])
        .map_err(|e| Error::BadTar(format!("manifest raw stream: {e}")))?;
    let tail = manifest
        .entries
        .iter()
        .try_fold(0u64, |sum, e| sum.checked_add(e.raw_len))
        .and_then(|used| manifest.raw_len.checked_sub(used))
        .ok_or_else(|| Error::BadTar("manifest raw lengths exceed its raw stream".into()))?;
    let source = ManifestSource {
        manifest,
        raw: Box::new(raw),
        next_entry: 0,
        raw_ahead: 0,
        content_at: None,
        tail: Some(tail),
        crcs: match crcs {
            ContentCrcs::Recorded(list) => Crcs::Recorded(list),
            ContentCrcs::FromPool(pool) => Crcs::Pool(pool.reader()),
        },
    };
    let summary = gzipped(out, |records| run(source, records))?;
    if summary.tar_size != manifest.diff_size {
        return Err(Error::BadTar(format!(
            "the tar-split describes {} bytes, the layer's tar is {} bytes",
            summary.tar_size, manifest.diff_size
        )));
    }
    Ok(summary)
}

fn written(e: io::Error) -> Error {
    Error::Stream {
        what: "writing the tar-split stream".into(),
        source: e,
    }
}

fn gzipped<W: Write>(
    out: W,
    body: impl FnOnce(&mut RecordWriter<flate2::write::GzEncoder<W>>) -> Result<u64>,
) -> Result<TarSplitSummary> {
    // Go writes it with pgzip at BestSpeed.
    let encoder = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut records = RecordWriter::new(encoder);
    let tar_size = body(&mut records)?;
    let count = records.count();
    records
        .into_inner()
        .finish()
        .and_then(|mut w| w.flush())
        .map_err(written)?;
    Ok(TarSplitSummary {
        records: count,
        tar_size,
    })
}

/// Go's `NewInputTarStream` loop; returns the size of the tar described.
pub(crate) fn run<S: Source, W: Write>(source: S, out: &mut RecordWriter<W>) -> Result<u64> {
    let mut reader = GoTarReader::new(source);
    let mut size = 0u64;
    loop {
        match reader.next()? {
            Step::Entry {
                raw,
                name,
                size: entry_size,
                content,
            } => {
                if !raw.is_empty() {
                    size += raw.len() as u64;
                    out.write(&TarSplitRecord::Segment(raw))?;
                }
                let crc64 = if entry_size > 0 {
                    size += content;
                    Some(reader.source().content(content, &name)?)
                } else {
                    None
                };
                out.write(&TarSplitRecord::File {
                    name,
                    size: entry_size,
                    crc64,
                })?;
            }
            Step::End { raw } => {
                if !raw.is_empty() {
                    size += raw.len() as u64;
                    out.write(&TarSplitRecord::Segment(raw))?;
                }
                break;
            }
        }
    }
    let mut piece = vec![0u8; TRAILER_PIECE];
    let source = reader.source();
    loop {
        let mut n = 0;
        while n < piece.len() {
            match source.read(&mut piece[n..])? {
                0 => break,
                k => n += k,
            }
        }
        size += n as u64;
        out.write(&TarSplitRecord::Segment(piece[..n].to_vec()))?;
        if n == 0 {
            return Ok(size);
        }
    }
}

/// A tar stream: content is read and checksummed.
struct StreamSource<R> {
    input: R,
    offset: u64,
}

impl<R: Read> StreamSource<R> {
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            match self.input.read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(crate::manifest::stream_error(e)),
            }
        }
    }
}

impl<R: Read> Source for StreamSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.read_some(buf)
    }

    fn content(&mut self, n: u64, name: &[u8]) -> Result<u64> {
        let mut crc = Crc64::default();
        let mut buf = vec![0u8; (n as usize).min(256 * 1024)];
        let mut left = n;
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let got = self.read_some(&mut buf[..want])?;
            if got == 0 {
                return Err(Error::TarSplitUnsupported(format!(
                    "Go's tar reader refuses this tar: it ends inside the content of {:?} (offset {})",
                    String::from_utf8_lossy(name),
                    self.offset
                )));
            }
            crc.update(&buf[..got]);
            left -= got as u64;
        }
        Ok(crc.finish())
    }
}

enum Crcs<'a> {
    Recorded(&'a [u64]),
    Pool(ChunkReader<'a>),
}

/// A layer manifest seen as its tar: the raw stream, with each file's
/// content (known by its CRC-64) between the raw bytes before it and
/// after it.
struct ManifestSource<'a> {
    manifest: &'a LayerManifest,
    raw: Box<dyn Read + 'a>,
    /// The entry whose raw bytes come next.
    next_entry: usize,
    /// Raw bytes that can be read before `content_at`.
    raw_ahead: u64,
    /// The entry whose content follows the raw bytes ahead.
    content_at: Option<usize>,
    /// The raw bytes after the last entry, until they are queued.
    tail: Option<u64>,
    crcs: Crcs<'a>,
}

impl ManifestSource<'_> {
    fn corrupt(what: impl std::fmt::Display) -> Error {
        Error::BadTar(format!("manifest raw stream: {what}"))
    }

    /// Queues raw pieces until `min` bytes are ahead, content stands in
    /// the way, or the stream ends.
    fn look_ahead(&mut self, min: u64) {
        while self.raw_ahead < min && self.content_at.is_none() {
            if let Some(entry) = self.manifest.entries.get(self.next_entry) {
                self.raw_ahead += entry.raw_len;
                if entry.kind == EntryKind::File && entry.size > 0 {
                    self.content_at = Some(self.next_entry);
                }
                self.next_entry += 1;
            } else if let Some(tail) = self.tail.take() {
                self.raw_ahead += tail;
            } else {
                break;
            }
        }
    }

    fn misaligned(&self, index: usize) -> Error {
        Error::TarSplitUnsupported(format!(
            "Go's tar reader does not read {:?} as the layer's manifest has it",
            String::from_utf8_lossy(&self.manifest.entries[index].path)
        ))
    }

    fn read_raw(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut n = 0;
        while n < buf.len() {
            match self.raw.read(&mut buf[n..]) {
                Ok(0) => return Err(Self::corrupt("shorter than its entries say")),
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Self::corrupt(e)),
            }
        }
        self.raw_ahead -= buf.len() as u64;
        Ok(())
    }

    fn crc_of(&mut self, index: usize) -> Result<u64> {
        let entry = &self.manifest.entries[index];
        match &mut self.crcs {
            Crcs::Recorded(list) => list.get(index).copied().ok_or_else(|| {
                Error::BadTar(format!(
                    "no CRC-64 recorded for entry {index} ({:?})",
                    String::from_utf8_lossy(&entry.path)
                ))
            }),
            Crcs::Pool(reader) => {
                let mut crc = Crc64::default();
                let mut len = 0u64;
                for chunk in &entry.chunks {
                    let data = reader.read(&chunk.id)?;
                    len += data.len() as u64;
                    crc.update(data);
                }
                if len != entry.size {
                    return Err(Error::BadTar(format!(
                        "{:?}: the chunks hold {len} bytes, the entry {}",
                        String::from_utf8_lossy(&entry.path),
                        entry.size
                    )));
                }
                Ok(crc.finish())
            }
        }
    }
}

impl Source for ManifestSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.look_ahead(1);
        if self.raw_ahead == 0 {
            return match self.content_at {
                Some(index) => Err(self.misaligned(index)),
                None => Ok(0),
            };
        }
        let n = (buf.len() as u64).min(self.raw_ahead) as usize;
        self.read_raw(&mut buf[..n])?;
        Ok(n)
    }

    fn content(&mut self, n: u64, name: &[u8]) -> Result<u64> {
        if n == 0 {
            return Ok(Crc64::of(b""));
        }
        self.look_ahead(n);
        if self.raw_ahead == 0 {
            return match self.content_at.take() {
                Some(index) if self.manifest.entries[index].size == n => self.crc_of(index),
                Some(index) => Err(self.misaligned(index)),
                None => Err(Self::corrupt(format!(
                    "it ends before the content of {:?}",
                    String::from_utf8_lossy(name)
                ))),
            };
        }
        // Content our importer kept raw (data of a non-file entry that Go
        // reads as a file's).
        if self.raw_ahead < n {
            return Err(match self.content_at {
                Some(index) => self.misaligned(index),
                None => Self::corrupt("shorter than its entries say"),
            });
        }
        let mut crc = Crc64::default();
        let mut buf = vec![0u8; (n as usize).min(64 * 1024)];
        let mut left = n;
        while left > 0 {
            let k = (left as usize).min(buf.len());
            self.read_raw(&mut buf[..k])?;
            crc.update(&buf[..k]);
            left -= k as u64;
        }
        Ok(crc.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tar_split::TarSplitReader;
    use crate::manifest::{import_tar, TarEntry, TarWriter};

    fn tar() -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new());
        let dir = TarEntry {
            path: b"d".to_vec(),
            typeflag: b'5',
            mode: 0o755,
            ..TarEntry::default()
        };
        w.append(&dir, None).unwrap();
        let big = vec![7u8; 300_000];
        for (name, content) in [(&b"d/a"[..], &b"hello"[..]), (b"d/big", &big), (b"e", b"")] {
            let file = TarEntry {
                path: name.to_vec(),
                typeflag: b'0',
                mode: 0o644,
                size: content.len() as u64,
                ..TarEntry::default()
            };
            w.append(&file, Some(&mut &content[..])).unwrap();
        }
        w.finish().unwrap()
    }

    fn records(gz: &[u8]) -> Vec<TarSplitRecord> {
        TarSplitReader::gzip(gz).collect::<Result<_>>().unwrap()
    }

    #[test]
    fn the_import_records_each_files_crc64() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ChunkPool::open(dir.path(), true).unwrap();
        let imported = import_tar(&tar()[..], &pool, &()).unwrap();
        let m = &imported.manifest;
        assert_eq!(imported.crc64.len(), m.entries.len());
        assert_eq!(imported.crc64[0], 0, "a directory has no content");
        assert_eq!(imported.crc64[1], Crc64::of(b"hello"));
        assert_eq!(imported.crc64[2], Crc64::of(&vec![7u8; 300_000]));
        assert_eq!(imported.crc64[3], 0);

        let mut recorded = Vec::new();
        let summary =
            write_tar_split(m, ContentCrcs::Recorded(&imported.crc64), &mut recorded).unwrap();
        assert_eq!(summary.tar_size, m.diff_size);
        let mut from_pool = Vec::new();
        write_tar_split(m, ContentCrcs::FromPool(&pool), &mut from_pool).unwrap();
        let mut from_stream = Vec::new();
        disassemble(&tar()[..], &mut from_stream).unwrap();
        let records = records(&recorded);
        assert_eq!(records, self::records(&from_pool));
        assert_eq!(records, self::records(&from_stream));
        assert_eq!(summary.records, records.len() as u64);
        assert_eq!(
            records[3],
            TarSplitRecord::File {
                name: b"d/a".to_vec(),
                size: 5,
                crc64: Some(Crc64::of(b"hello"))
            }
        );
        assert_eq!(records.last(), Some(&TarSplitRecord::Segment(Vec::new())));
    }

    #[test]
    fn a_manifest_that_does_not_fit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pool = ChunkPool::open(dir.path(), true).unwrap();
        let imported = import_tar(&tar()[..], &pool, &()).unwrap();
        let short = &imported.crc64[..2];
        let err = write_tar_split(&imported.manifest, ContentCrcs::Recorded(short), Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("no CRC-64 recorded"), "{err}");

        // Content where Go reads a header.
        let mut m = imported.manifest.clone();
        m.entries[1].raw_len -= 512;
        m.raw_len -= 512;
        let crcs = ContentCrcs::Recorded(&imported.crc64);
        let err = write_tar_split(&m, crcs, Vec::new()).unwrap_err();
        assert!(matches!(err, Error::TarSplitUnsupported(_)), "{err}");

        // A raw stream shorter than the entries say.
        let mut m = imported.manifest.clone();
        m.raw_len += 4096;
        m.entries.last_mut().unwrap().raw_len += 4096;
        let err = write_tar_split(&m, crcs, Vec::new()).unwrap_err();
        assert!(err.to_string().contains("shorter than"), "{err}");
    }
}
