//! Writing tar streams (PAX) from filesystem entries, for the diffs of live
//! layers: headers with long paths, xattrs and nanosecond times as PAX
//! records, content padded to blocks, and the end-of-archive marker.

use std::io::{self, Read, Write};

use super::tar::BLOCK;

/// The header fields of one entry to write.
#[derive(Clone, Debug, Default)]
pub struct TarEntry {
    /// Path in the archive (relative, no leading `/`).
    pub path: Vec<u8>,
    /// Type flag: `b'0'` file, `b'1'` hard link, `b'2'` symlink, `b'3'`
    /// char device, `b'4'` block device, `b'5'` directory, `b'6'` fifo.
    pub typeflag: u8,
    /// Permission bits.
    pub mode: u32,
    /// Owner user ID.
    pub uid: u32,
    /// Owner group ID.
    pub gid: u32,
    /// Content size (regular files).
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    pub mtime_nsec: u32,
    /// Symlink or hard link target.
    pub link: Vec<u8>,
    /// Device numbers.
    pub dev: (u32, u32),
    /// Extended attributes.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    let text = &text.as_bytes()[text.len().saturating_sub(width)..];
    field[..text.len()].copy_from_slice(text);
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let content = key.len() + value.len() + 3;
    let mut len = content + 1;
    while len.to_string().len() + content != len {
        len = len.to_string().len() + content;
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn header(name: &[u8], typeflag: u8, size: u64, e: &TarEntry, link: &[u8]) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let name = &name[..name.len().min(100)];
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], e.mode as u64 & 0o7777);
    octal(&mut h[108..116], e.uid as u64);
    octal(&mut h[116..124], e.gid as u64);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], e.mtime.max(0) as u64);
    h[156] = typeflag;
    let link = &link[..link.len().min(100)];
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], e.dev.0 as u64);
    octal(&mut h[337..345], e.dev.1 as u64);
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// Writes entries as a PAX tar.
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    /// A writer into `out`.
    pub fn new(out: W) -> TarWriter<W> {
        TarWriter { out }
    }

    /// Writes one entry; `content` must yield exactly `entry.size` bytes.
    pub fn append(&mut self, entry: &TarEntry, content: Option<&mut dyn Read>) -> io::Result<()> {
        let mut pax = Vec::new();
        if entry.path.len() > 100 {
            pax_record(&mut pax, "path", &entry.path);
        }
        if entry.link.len() > 100 {
            pax_record(&mut pax, "linkpath", &entry.link);
        }
        if entry.mtime_nsec != 0 || entry.mtime < 0 {
            let value = format!("{}.{:09}", entry.mtime, entry.mtime_nsec);
            pax_record(&mut pax, "mtime", value.as_bytes());
        }
        for (name, value) in &entry.xattrs {
            pax_record(&mut pax, &format!("SCHILY.xattr.{name}"), value);
        }
        if !pax.is_empty() {
            let mut name = b"PaxHeaders/".to_vec();
            name.extend_from_slice(&entry.path[entry.path.len().saturating_sub(80)..]);
            let h = header(&name, b'x', pax.len() as u64, entry, b"");
            self.out.write_all(&h)?;
            self.write_padded(&pax)?;
        }
        let h = header(&entry.path, entry.typeflag, entry.size, entry, &entry.link);
        self.out.write_all(&h)?;
        if let Some(content) = content {
            let copied = io::copy(&mut content.take(entry.size), &mut self.out)?;
            if copied != entry.size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "a file shrank while it was being written",
                ));
            }
            self.pad(entry.size)?;
        }
        Ok(())
    }

    fn write_padded(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.pad(data.len() as u64)
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let pad = (BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64;
        self.out.write_all(&[0u8; BLOCK][..pad as usize])
    }

    /// Writes the end-of-archive marker and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::ChunkPool;
    use crate::manifest::{import_tar, EntryKind};

    #[test]
    fn what_it_writes_imports_back() {
        let mut w = TarWriter::new(Vec::new());
        let long = "d/".repeat(80) + "file";
        let file = TarEntry {
            path: long.clone().into_bytes(),
            typeflag: b'0',
            mode: 0o640,
            uid: 1000,
            gid: 100,
            size: 5,
            mtime: 1_700_000_000,
            mtime_nsec: 42,
            xattrs: vec![("user.k".into(), b"v".to_vec())],
            ..TarEntry::default()
        };
        w.append(&file, Some(&mut &b"hello"[..])).unwrap();
        let link = TarEntry {
            path: b"l".to_vec(),
            typeflag: b'2',
            mode: 0o777,
            link: b"target".to_vec(),
            ..TarEntry::default()
        };
        w.append(&link, None).unwrap();
        let bytes = w.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pool = ChunkPool::open(dir.path(), true).unwrap();
        let m = import_tar(&bytes[..], &pool, &()).unwrap().manifest;
        assert_eq!(m.entries.len(), 2);
        let f = &m.entries[0];
        assert_eq!(
            (f.kind, f.path.clone(), f.size),
            (EntryKind::File, long.into_bytes(), 5)
        );
        assert_eq!(
            (f.mode, f.uid, f.gid, f.mtime, f.mtime_nsec),
            (0o640, 1000, 100, 1_700_000_000, 42)
        );
        assert_eq!(f.xattrs[0].name, "user.k");
        assert_eq!(
            (m.entries[1].kind, m.entries[1].link.clone()),
            (EntryKind::Symlink, b"target".to_vec())
        );
    }
}
