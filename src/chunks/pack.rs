//! Pack files: append-only sequences of zstd frames, each holding one or
//! more chunks. A pack is written under `chunks/tmp/`, `fsync`ed, renamed
//! into `chunks/packs/` and the directory `fsync`ed before any index entry
//! or manifest refers to it. Published packs are never modified.
//!
//! Since format version 2, every data frame is preceded by a zstd
//! skippable frame holding its chunk table (each chunk's ID, offset and
//! length in the decompressed frame), so that a pack whose index is lost
//! can be indexed again from the pack alone ([`scan`]). Readers locate
//! chunks through the index and never look at the tables; zstd tools skip
//! them. Version 1 packs (no tables) are still read.

mod scan;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::id::ChunkId;
use super::index::IndexEntry;
use super::names;
use crate::durable;
use crate::error::{IoContext, Op, Result};

pub(crate) use scan::{scan, KnownChunks, PackScan};

/// The first bytes of every pack written now; the last byte is the format
/// version.
pub(crate) const PACK_MAGIC: &[u8; 8] = b"CSPACK\0\x02";
/// The magic of the zstd skippable frame holding a chunk table (zstd
/// reserves 0x184D2A50..=0x184D2A5F for skippable frames).
pub(crate) const CHUNK_TABLE_MAGIC: u32 = 0x184D_2A5C;
/// One chunk in a table: ID, offset and length in the decompressed frame.
pub(crate) const TABLE_RECORD_LEN: usize = 40;

/// The skippable frame holding the table of `chunks` (ID, offset and
/// length in the decompressed frame), little endian: magic, content
/// length, then one record per chunk.
fn chunk_table(chunks: &[(ChunkId, u32, u32)]) -> Vec<u8> {
    let len = chunks.len() * TABLE_RECORD_LEN;
    let mut out = Vec::with_capacity(8 + len);
    out.extend_from_slice(&CHUNK_TABLE_MAGIC.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    for (id, offset, len) in chunks {
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
    }
    out
}

/// A pack being written to a temporary file.
pub(crate) struct PackBuilder {
    tmp_path: PathBuf,
    file: BufWriter<File>,
    len: u64,
    entries: Vec<IndexEntry>,
}

/// A pack whose data is durable under its temporary name; dropped
/// unpublished, the temporary file goes.
pub(crate) struct SealedPack {
    tmp_path: PathBuf,
    pub entries: Vec<IndexEntry>,
    pub len: u64,
    published: bool,
}

impl PackBuilder {
    /// Starts a pack in `tmp_dir`.
    pub fn create(tmp_dir: &Path) -> Result<PackBuilder> {
        let tmp_path = tmp_dir.join(names::pack(&names::new_stem()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(durable::FILE_MODE)
            .open(&tmp_path)
            .at(Op::Create, &tmp_path)?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.write_all(PACK_MAGIC).at(Op::Write, &tmp_path)?;
        Ok(PackBuilder {
            tmp_path,
            file,
            len: PACK_MAGIC.len() as u64,
            entries: Vec::new(),
        })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends one compressed frame holding `chunks` (ID, offset, length in
    /// the decompressed frame of `raw_len` bytes), behind its chunk table.
    pub fn append_frame(
        &mut self,
        frame: &[u8],
        raw_len: u32,
        chunks: &[(ChunkId, u32, u32)],
    ) -> Result<()> {
        let table = chunk_table(chunks);
        self.file.write_all(&table).at(Op::Write, &self.tmp_path)?;
        self.file.write_all(frame).at(Op::Write, &self.tmp_path)?;
        let frame_offset = self.len + table.len() as u64;
        for &(id, offset, len) in chunks {
            self.entries.push(IndexEntry {
                id,
                frame_offset,
                frame_len: frame.len() as u32,
                raw_len,
                offset,
                len,
            });
        }
        self.len = frame_offset + frame.len() as u64;
        Ok(())
    }

    /// Flushes and `fsync`s the data; the pack is not yet published. On
    /// error the temporary file is removed.
    pub fn seal(self) -> Result<SealedPack> {
        let flushed = self
            .file
            .into_inner()
            .map_err(|e| e.into_error())
            .at(Op::Write, &self.tmp_path)
            .and_then(|file| file.sync_all().at(Op::Fsync, &self.tmp_path));
        if let Err(e) = flushed {
            let _ = fs::remove_file(&self.tmp_path);
            return Err(e);
        }
        Ok(SealedPack {
            tmp_path: self.tmp_path,
            entries: self.entries,
            len: self.len,
            published: false,
        })
    }

    /// Removes the temporary file.
    pub fn discard(self) {
        let _ = fs::remove_file(&self.tmp_path);
    }
}

impl SealedPack {
    /// Renames the pack to `packs_dir/<name>.pack` and `fsync`s the
    /// directory. The caller publishes the index afterwards.
    pub fn publish(&mut self, packs_dir: &Path, name: &str) -> Result<PathBuf> {
        let target = packs_dir.join(names::pack(name));
        fs::rename(&self.tmp_path, &target).at(Op::Rename, &target)?;
        self.published = true;
        durable::fsync_dir(packs_dir)?;
        Ok(target)
    }
}

impl Drop for SealedPack {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}
