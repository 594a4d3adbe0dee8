//! Upstream's tar-split format: `<drv>-layers/<id>.tar-split.gz`, the
//! file from which Go clients (podman, skopeo, buildah, the Go
//! `containers-storage`) re-create a layer's exact tar out of the layer's
//! directory. It is a gzip of one JSON record per line: the raw tar bytes
//! that are not file content (headers, padding, the end-of-archive marker,
//! trailing bytes) as segments, and one record per tar entry naming the
//! file whose content follows, with its size and CRC-64/ISO.
//!
//! This module writes the format (from a tar stream, or from a layer
//! manifest without reading its content), reads it (bounded, refusing
//! hostile input), and assembles the exact tar from a tar-split and a
//! directory, checking each file's CRC-64 as Go's `asm` package does. It
//! knows nothing of records, stores or drivers: the store decides where
//! the file lives and when it is written.
//!
//! The records are what vbatts/tar-split's disassembler writes (its
//! `tar/asm` and `tar/storage` packages, with the reader of its fork of
//! `archive/tar`): `disassemble` follows that reader step by step (see
//! `tar_split/go_reader.rs`), so the segments split where Go splits them
//! and every name is the name Go's reader gives; the JSON is written as Go
//! 1.19's `encoding/json` writes it (`tar_split/record.rs`). Tars Go's
//! reader refuses (or cannot describe: sparse files, a path given twice)
//! get [`Error::TarSplitUnsupported`] instead of a tar-split.

mod adopt;
mod assemble;
mod go_reader;
mod record;
mod source;

pub use adopt::stage_tar_split;
pub use assemble::{assemble, Assembled, DirectoryFiles, FileGetter};
pub use record::{TarSplitReader, TarSplitRecord};
pub use source::{disassemble, write_tar_split, ContentCrcs, TarSplitSummary};

use crc::{Crc, Digest, Table, CRC_64_GO_ISO};

#[cfg(doc)]
use crate::error::Error;

/// CRC-64 with the ISO polynomial, as Go's `hash/crc64` with
/// `crc64.MakeTable(crc64.ISO)` computes it (slice-by-16 tables).
static CRC64_ISO: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_GO_ISO);

/// An incremental CRC-64/ISO of a file's content, as tar-split records it.
pub struct Crc64 {
    digest: Digest<'static, u64, Table<16>>,
}

impl Default for Crc64 {
    fn default() -> Self {
        Crc64 {
            digest: CRC64_ISO.digest(),
        }
    }
}

impl Crc64 {
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
    }

    /// The checksum (what tar-split stores as 8 big-endian bytes).
    pub fn finish(self) -> u64 {
        self.digest.finalize()
    }

    /// The checksum of `data`.
    pub fn of(data: &[u8]) -> u64 {
        CRC64_ISO.checksum(data)
    }
}

#[cfg(test)]
mod tests {
    use super::Crc64;

    /// The check value of CRC-64/GO-ISO, and Go's `crc64.Checksum` of
    /// "hello\n" (as the Go CLI wrote it into a tar-split: `YUw+7uLYEAA=`).
    #[test]
    fn crc64_iso_known_answers() {
        assert_eq!(Crc64::of(b"123456789"), 0xb90956c775a41001);
        assert_eq!(
            Crc64::of(b"hello\n").to_be_bytes(),
            [0x61, 0x4c, 0x3e, 0xee, 0xe2, 0xd8, 0x10, 0x00]
        );
        assert_eq!(Crc64::of(b""), 0);
        let mut c = Crc64::default();
        c.update(b"hel");
        c.update(b"lo\n");
        assert_eq!(c.finish(), Crc64::of(b"hello\n"));
    }
}
