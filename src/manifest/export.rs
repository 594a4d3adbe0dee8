//! Manifest -> the byte-identical tar stream it was imported from.
//!
//! Every chunk is checked against its BLAKE3 before it is written, and the
//! whole stream against the layer's DiffID at the end, so a damaged pool
//! makes `diff` fail rather than emit wrong bytes silently.

use std::io::{self, BufWriter, Read, Write};

use super::compression::Compression;
use super::digest::Sha256;
use super::model::LayerManifest;
use crate::chunks::ChunkPool;
use crate::error::{Error, Result};

/// Writes the uncompressed tar of `manifest` to `out`; returns its size.
pub fn write_tar(manifest: &LayerManifest, pool: &ChunkPool, out: &mut dyn Write) -> Result<u64> {
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, out),
        hash: Sha256::default(),
    };
    let raw_bad = |what: String| Error::BadTar(format!("manifest raw stream: {what}"));
    let mut raw =
        zstd::stream::read::Decoder::new(&manifest.raw[..]).map_err(|e| raw_bad(e.to_string()))?;
    let mut reader = pool.reader();
    let mut copy_raw = |len: u64, out: &mut HashingWriter<_>| -> Result<()> {
        let copied = io::copy(&mut (&mut raw).take(len), out).map_err(|e| {
            if e.kind() == io::ErrorKind::BrokenPipe {
                Error::writing_stream(e)
            } else {
                raw_bad(e.to_string())
            }
        })?;
        if copied != len {
            return Err(raw_bad("shorter than its entries say".into()));
        }
        Ok(())
    };
    let mut used = 0u64;
    for entry in &manifest.entries {
        copy_raw(entry.raw_len, &mut out)?;
        used += entry.raw_len;
        for chunk in &entry.chunks {
            let data = reader.read(&chunk.id)?;
            out.write_all(data).map_err(Error::writing_stream)?;
        }
    }
    copy_raw(manifest.raw_len - used, &mut out)?;
    out.inner.flush().map_err(Error::writing_stream)?;
    let size = out.hash.len();
    let digest = std::mem::take(&mut out.hash).finish();
    if size != manifest.diff_size || digest != manifest.diff_digest {
        return Err(Error::BadTar(format!(
            "exported tar ({size} bytes, {digest}) does not match the layer's diff-digest {}",
            manifest.diff_digest
        )));
    }
    Ok(size)
}

/// Writes the tar of `manifest` compressed with `compression`.
pub fn write_tar_compressed(
    manifest: &LayerManifest,
    pool: &ChunkPool,
    compression: Compression,
    out: &mut dyn Write,
) -> Result<()> {
    let mut encoder = compression.encoder(out).map_err(Error::writing_stream)?;
    write_tar(manifest, pool, &mut encoder)?;
    encoder
        .finish()
        .map_err(Error::writing_stream)?
        .flush()
        .map_err(Error::writing_stream)
}

struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
