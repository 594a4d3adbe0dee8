//! Adoption: a layer that another client wrote (its directory and its
//! tar-split) into the pool, as a manifest whose export is the layer's
//! exact tar.
//!
//! The tar is assembled from the tar-split (checking every CRC-64) and
//! fed to the importer as any layer tar is, in one streaming pass over
//! the files: the importer owns tar parsing and every check it makes on
//! untrusted tars, so no second parser of headers is needed here, and the
//! manifest's raw stream holds exactly the bytes of the tar-split's
//! segments.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::assemble::{assemble, FileGetter};
use crate::chunks::ChunkPool;
use crate::error::{Error, Result};
use crate::manifest::import::{stage_tar, ImportObserver, StagedImport};

/// Blocks in flight between the assembler and the importer.
const DEPTH: usize = 8;
const BLOCK: usize = 1 << 20;

/// Imports the layer that the tar-split `tar_split` (gzip-compressed, as
/// stored) and `files` (its directory) describe into `pool`, up to the
/// publication of its chunks (see [`stage_tar`]). The manifest's
/// `diff_digest` is the assembled tar's; the caller compares it with the
/// layer's record before adopting it.
pub fn stage_tar_split<'p, R: Read + Send>(
    tar_split: R,
    files: &mut (dyn FileGetter + Send),
    pool: &'p ChunkPool,
    observer: &dyn ImportObserver,
) -> Result<StagedImport<'p>> {
    let (tx, rx) = sync_channel::<Vec<u8>>(DEPTH);
    std::thread::scope(|scope| {
        let assembler = scope.spawn(move || {
            let mut out = ChannelWriter {
                tx,
                buf: Vec::with_capacity(BLOCK),
            };
            let assembled = assemble(tar_split, files, &mut out)?;
            out.flush().map_err(Error::writing_stream)?;
            Ok(assembled)
        });
        let staged = stage_tar(
            ChannelReader {
                rx,
                block: Vec::new(),
                pos: 0,
            },
            pool,
            observer,
        );
        let assembled = assembler
            .join()
            .unwrap_or(Err(Error::Panicked("tar-split assembler")));
        match (assembled, staged) {
            // The importer stopped reading: its error says why.
            (Err(Error::Stream { .. }), Err(e)) => Err(e),
            // A bad tar-split or file cuts the tar short: that is the cause.
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(assembled), Ok(staged)) => {
                debug_assert_eq!(assembled.digest, staged.manifest.diff_digest);
                Ok(staged)
            }
        }
    })
}

/// The assembler's output, in blocks.
struct ChannelWriter {
    tx: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BLOCK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        self.tx
            .send(block)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the importer stopped"))
    }
}

/// The importer's input.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    block: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            match self.rx.recv() {
                Ok(block) => {
                    self.block = block;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
