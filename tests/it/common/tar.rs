//! A byte-level tar writer for tests: ustar headers, PAX extended headers
//! (xattrs, sub-second times, long paths), GNU long names and links, every
//! entry type, whiteouts and opaque markers.

/// Builds a tar archive in memory.
#[derive(Default)]
pub struct TarBuilder {
    pub out: Vec<u8>,
}

/// Header fields for one entry.
#[derive(Clone, Debug)]
pub struct Meta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

/// The default entry metadata with `mode`.
pub fn meta(mode: u32) -> Meta {
    Meta {
        mode,
        ..Meta::default()
    }
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
        }
    }
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    assert!(text.len() <= width, "value {value} does not fit");
    field[..width].copy_from_slice(text.as_bytes());
    field[width] = 0;
}

impl TarBuilder {
    pub fn new() -> TarBuilder {
        TarBuilder::default()
    }

    /// Writes a raw ustar header (name must fit in 100 bytes).
    pub fn header(
        &mut self,
        name: &[u8],
        typeflag: u8,
        size: u64,
        link: &[u8],
        meta: &Meta,
        dev: (u32, u32),
    ) {
        let mut h = [0u8; 512];
        assert!(name.len() <= 100 && link.len() <= 100);
        h[..name.len()].copy_from_slice(name);
        octal(&mut h[100..108], meta.mode as u64);
        octal(&mut h[108..116], meta.uid);
        octal(&mut h[116..124], meta.gid);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], meta.mtime);
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        octal(&mut h[329..337], dev.0 as u64);
        octal(&mut h[337..345], dev.1 as u64);
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| b as u64).sum();
        let text = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(text.as_bytes());
        self.out.extend_from_slice(&h);
    }

    /// Writes data and pads it to a block.
    pub fn data(&mut self, data: &[u8]) {
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    /// A PAX extended header with `records` (key, value).
    pub fn pax(&mut self, records: &[(&str, &[u8])]) {
        let mut body = Vec::new();
        for (key, value) in records {
            let content_len = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = content_len + 1;
            while format!("{len}").len() + content_len != len {
                len = format!("{len}").len() + content_len;
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        self.header(
            b"PaxHeaders/entry",
            b'x',
            body.len() as u64,
            b"",
            &Meta::default(),
            (0, 0),
        );
        self.data(&body);
    }

    /// A GNU long name (`L`) or long link (`K`) record.
    pub fn gnu_long(&mut self, typeflag: u8, value: &[u8]) {
        let mut body = value.to_vec();
        body.push(0);
        self.header(
            b"././@LongLink",
            typeflag,
            body.len() as u64,
            b"",
            &Meta::default(),
            (0, 0),
        );
        self.data(&body);
    }

    pub fn file(&mut self, name: &str, meta: &Meta, content: &[u8]) {
        self.header(
            name.as_bytes(),
            b'0',
            content.len() as u64,
            b"",
            meta,
            (0, 0),
        );
        self.data(content);
    }

    pub fn dir(&mut self, name: &str, meta: &Meta) {
        self.header(name.as_bytes(), b'5', 0, b"", meta, (0, 0));
    }

    pub fn symlink(&mut self, name: &str, target: &str, meta: &Meta) {
        self.header(name.as_bytes(), b'2', 0, target.as_bytes(), meta, (0, 0));
    }

    pub fn hardlink(&mut self, name: &str, target: &str, meta: &Meta) {
        self.header(name.as_bytes(), b'1', 0, target.as_bytes(), meta, (0, 0));
    }

    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32, meta: &Meta) {
        self.header(name.as_bytes(), b'3', 0, b"", meta, (major, minor));
    }

    pub fn block_dev(&mut self, name: &str, major: u32, minor: u32, meta: &Meta) {
        self.header(name.as_bytes(), b'4', 0, b"", meta, (major, minor));
    }

    pub fn fifo(&mut self, name: &str, meta: &Meta) {
        self.header(name.as_bytes(), b'6', 0, b"", meta, (0, 0));
    }

    /// `dir/.wh.name`: deletes `dir/name` from lower layers.
    pub fn whiteout(&mut self, dir: &str, name: &str) {
        let path = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&path, &Meta::default(), b"");
    }

    /// `dir/.wh..wh..opq`: hides the lower layers' content of `dir`.
    pub fn opaque(&mut self, dir: &str) {
        self.file(&format!("{dir}/.wh..wh..opq"), &Meta::default(), b"");
    }

    /// A file with a long path, via PAX `path`.
    pub fn pax_long_file(&mut self, path: &str, meta: &Meta, content: &[u8]) {
        self.pax(&[("path", path.as_bytes())]);
        self.file("placeholder-name", meta, content);
    }

    /// A file with xattrs and a sub-second mtime, via PAX.
    pub fn pax_xattr_file(
        &mut self,
        name: &str,
        xattrs: &[(&str, &[u8])],
        mtime: &str,
        meta: &Meta,
        content: &[u8],
    ) {
        let mut records: Vec<(String, Vec<u8>)> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.to_vec()))
            .collect();
        records.push(("mtime".into(), mtime.as_bytes().to_vec()));
        let refs: Vec<(&str, &[u8])> = records
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        self.pax(&refs);
        self.file(name, meta, content);
    }

    /// A file with a long name, via GNU `L`.
    pub fn gnu_long_file(&mut self, path: &str, meta: &Meta, content: &[u8]) {
        self.gnu_long(b'L', path.as_bytes());
        self.file(&path[..path.len().min(99)], meta, content);
    }

    /// A symlink with a long target, via GNU `K`.
    pub fn gnu_long_symlink(&mut self, name: &str, target: &str, meta: &Meta) {
        self.gnu_long(b'K', target.as_bytes());
        self.symlink(name, &target[..target.len().min(99)], meta);
    }

    /// Ends the archive: two zero blocks, padded to a 10240-byte record.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        let pad = (10240 - self.out.len() % 10240) % 10240;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self.out
    }

    /// Ends the archive with exactly two zero blocks.
    pub fn finish_unpadded(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }
}

/// A `security.capability` value the kernel takes: revision 2, effective,
/// permitting `CAP_NET_BIND_SERVICE`.
pub const VALID_CAPABILITY: [u8; 20] = [
    0x01, 0, 0, 0x02, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// An archive holding one entry of every kind.
pub fn every_kind() -> Vec<u8> {
    let m = Meta::default();
    let exe = Meta {
        mode: 0o4755,
        uid: 1000,
        gid: 100,
        ..Meta::default()
    };
    let mut t = TarBuilder::new();
    t.dir(
        "./",
        &Meta {
            mode: 0o755,
            ..Meta::default()
        },
    );
    t.dir(
        "etc/",
        &Meta {
            mode: 0o755,
            ..Meta::default()
        },
    );
    t.file("etc/hostname", &m, b"box\n");
    t.file("etc/empty", &m, b"");
    t.file("bin-tool", &exe, &vec![0x5a; 70_000]);
    t.symlink("etc/link", "../bin-tool", &m);
    t.hardlink("etc/hard", "etc/hostname", &m);
    t.char_dev(
        "dev-null",
        1,
        3,
        &Meta {
            mode: 0o666,
            ..Meta::default()
        },
    );
    t.block_dev(
        "dev-sda",
        8,
        0,
        &Meta {
            mode: 0o660,
            ..Meta::default()
        },
    );
    t.fifo("pipe", &m);
    t.pax_xattr_file(
        "caps",
        &[
            ("security.capability", &VALID_CAPABILITY[..]),
            ("user.note", b"hi"),
        ],
        "1700000000.123456789",
        &m,
        b"with xattrs",
    );
    let long = format!("{}/file", "d".repeat(150));
    t.pax_long_file(&long, &m, b"long via pax");
    let gnu = format!("{}/gnu", "g".repeat(120));
    t.gnu_long_file(&gnu, &m, b"long via gnu");
    t.gnu_long_symlink("longlink", &"t".repeat(130), &m);
    t.whiteout("etc", "removed");
    t.opaque("etc");
    t.finish()
}
