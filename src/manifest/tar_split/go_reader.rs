//! The reader of vbatts/tar-split's fork of Go's `archive/tar`, with
//! `RawAccounting` on, as its disassembler drives it: which bytes form
//! each segment, the name and size every entry gets, and which tars it
//! refuses. Ported from `archive/tar/reader.go` (`Next`, `readHeader`,
//! `parsePAX`, `mergePAX`, `handleRegularFile`), `strconv.go` (numbers,
//! PAX records and times) and `format.go` (checksum and format guess).
//!
//! Only what changes the tar-split is kept: uname, gname, times and link
//! names are parsed only where a bad one makes Go refuse the header.
//! Where Go would lose bytes (a tar that ends inside an entry's padding)
//! or cannot describe the tar (sparse files), this reader refuses.

use crate::error::{Error, Result};

const BLOCK: usize = 512;
/// Extended headers (PAX, GNU long names) larger than this are refused,
/// as our importer refuses them (Go reads them whole into memory).
const META_LIMIT: u64 = 1 << 20;

/// Where the reader's bytes come from: the tar stream, or a layer's
/// manifest (raw stream plus recorded content).
pub(crate) trait Source {
    /// Reads raw tar bytes (headers, padding, extended header data) into
    /// `buf`; 0 at the end of the stream.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize>;

    /// Consumes the next `n` bytes, an entry's content, which Go reads
    /// whole, and returns their CRC-64/ISO. Fewer bytes is an error.
    fn content(&mut self, n: u64, name: &[u8]) -> Result<u64>;
}

/// What one call of Go's `Next` read.
#[derive(Debug)]
pub(crate) enum Step {
    /// An entry: the raw bytes read for it (the padding of the previous
    /// entry, extended headers, its header), its name and size as Go's
    /// reader gives them, and how many bytes of content follow (0 for the
    /// types Go reads no content of, whatever their size).
    Entry {
        raw: Vec<u8>,
        name: Vec<u8>,
        size: i64,
        content: u64,
    },
    /// The end of the archive (two zero blocks, one zero block at the end
    /// of the stream, or the end of the stream where a header would
    /// start): the raw bytes read for it.
    End { raw: Vec<u8> },
}

/// Go refuses the tar (`archive/tar: invalid tar header` and the like).
fn refused(what: impl std::fmt::Display) -> Error {
    Error::TarSplitUnsupported(format!("Go's tar reader refuses this tar: {what}"))
}

pub(crate) struct GoTarReader<S: Source> {
    src: S,
    /// Padding after the current entry's content.
    pad: u64,
    raw: Vec<u8>,
    done: bool,
}

impl<S: Source> GoTarReader<S> {
    pub(crate) fn new(src: S) -> GoTarReader<S> {
        GoTarReader {
            src,
            pad: 0,
            raw: Vec::new(),
            done: false,
        }
    }

    pub(crate) fn source(&mut self) -> &mut S {
        &mut self.src
    }

    /// Reads until `buf` is full or the stream ends; the count read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            let k = self.src.read(&mut buf[n..])?;
            if k == 0 {
                break;
            }
            n += k;
        }
        Ok(n)
    }

    /// Reads `len` bytes of extended header data (raw, accounted).
    fn read_meta(&mut self, len: u64, what: &str) -> Result<Vec<u8>> {
        if len > META_LIMIT {
            return Err(Error::TarSplitUnsupported(format!(
                "{what} of {len} bytes is larger than the {META_LIMIT} bytes this build reads"
            )));
        }
        let mut data = vec![0u8; len as usize];
        let n = self.fill(&mut data)?;
        if n < data.len() {
            return Err(refused(format!("the tar ends inside {what}")));
        }
        self.raw.extend_from_slice(&data);
        Ok(data)
    }

    /// Go's `Next`, from the padding of the previous entry on.
    pub(crate) fn next(&mut self) -> Result<Step> {
        if self.done {
            return Err(refused("read past the end of the archive"));
        }
        self.raw.clear();
        let mut pax: Option<Pax> = None;
        let mut long_name: Option<Vec<u8>> = None;
        loop {
            let Some(block) = self.next_block()? else {
                return Ok(self.end());
            };
            let mut header = read_header(&block)?;
            // handleRegularFile, before extended headers apply.
            let data = data_size(header.typeflag, header.size)?;
            self.pad = padding(data);
            match header.typeflag {
                b'x' | b'g' => {
                    let bytes = self.read_meta(data, "a PAX extended header")?;
                    let records = parse_pax(&bytes)?;
                    if header.typeflag == b'g' {
                        // Go returns the global header as an entry of its
                        // own, named by its `path` record if it has one,
                        // with no size (mergePAX's errors are ignored).
                        let name = match records.get(b"path") {
                            Some(v) if !v.is_empty() => v.to_vec(),
                            _ => header.name,
                        };
                        return Ok(Step::Entry {
                            raw: std::mem::take(&mut self.raw),
                            name,
                            size: 0,
                            content: 0,
                        });
                    }
                    pax = Some(records);
                }
                b'L' | b'K' => {
                    let bytes = self.read_meta(data, "a GNU long name")?;
                    if header.typeflag == b'L' {
                        long_name = Some(cstr(&bytes).to_vec());
                    }
                }
                _ => {
                    if let Some(records) = &pax {
                        merge_pax(&mut header, records)?;
                    }
                    if let Some(name) = long_name.take().filter(|n| !n.is_empty()) {
                        header.name = name;
                    }
                    if header.typeflag == 0 {
                        header.typeflag = if header.name.ends_with(b"/") {
                            b'5'
                        } else {
                            b'0'
                        };
                    }
                    let content = data_size(header.typeflag, header.size)?;
                    self.pad = padding(content);
                    if header.typeflag == b'S' || pax.as_ref().is_some_and(Pax::is_sparse) {
                        return Err(Error::TarSplitUnsupported(format!(
                            "{:?} is a sparse file (tar-split does not give back sparse files)",
                            String::from_utf8_lossy(&header.name)
                        )));
                    }
                    return Ok(Step::Entry {
                        raw: std::mem::take(&mut self.raw),
                        name: header.name,
                        size: header.size,
                        content,
                    });
                }
            }
        }
    }

    /// Reads the padding after the previous entry and the next header
    /// block; `None` at the end of the archive.
    fn next_block(&mut self) -> Result<Option<[u8; BLOCK]>> {
        let mut pad = [0u8; BLOCK];
        let want = std::mem::take(&mut self.pad) as usize;
        let n = self.fill(&mut pad[..want])?;
        if n < want {
            if n > 0 {
                // Go stops here as at a normal end, and the bytes read
                // are in no segment: its tar-split would not give back
                // this tar.
                return Err(Error::TarSplitUnsupported(
                    "the tar ends inside an entry's padding".into(),
                ));
            }
            return Ok(None);
        }
        self.raw.extend_from_slice(&pad[..n]);

        let mut block = [0u8; BLOCK];
        let n = self.fill(&mut block)?;
        self.raw.extend_from_slice(&block[..n]);
        if n == 0 {
            return Ok(None);
        }
        if n < BLOCK {
            return Err(refused("the tar ends inside a header"));
        }
        if !block.iter().all(|&b| b == 0) {
            return Ok(Some(block));
        }
        let n = self.fill(&mut block)?;
        self.raw.extend_from_slice(&block[..n]);
        if n == 0 {
            return Ok(None);
        }
        if n < BLOCK {
            return Err(refused("the tar ends inside the end-of-archive marker"));
        }
        if block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        Err(refused("a zero block is followed by a header"))
    }

    fn end(&mut self) -> Step {
        self.done = true;
        Step::End {
            raw: std::mem::take(&mut self.raw),
        }
    }
}

/// The bytes of content Go reads for an entry (`handleRegularFile`).
fn data_size(typeflag: u8, size: i64) -> Result<u64> {
    if matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
        return Ok(0);
    }
    u64::try_from(size).map_err(|_| refused(format!("negative size {size}")))
}

fn padding(size: u64) -> u64 {
    size.wrapping_neg() & (BLOCK as u64 - 1)
}

/// The header fields that shape a tar-split.
struct Header {
    name: Vec<u8>,
    size: i64,
    typeflag: u8,
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    V7,
    Ustar,
    Gnu,
    Star,
}

/// Go's parser: the first error sticks.
#[derive(Default)]
struct Parser {
    failed: bool,
}

impl Parser {
    fn numeric(&mut self, b: &[u8]) -> i64 {
        if b.first().is_some_and(|&c| c & 0x80 != 0) {
            let inv: u8 = if b[0] & 0x40 != 0 { 0xff } else { 0 };
            let mut x: u64 = 0;
            for (i, &c) in b.iter().enumerate() {
                let mut c = c ^ inv;
                if i == 0 {
                    c &= 0x7f;
                }
                if x >> 56 > 0 {
                    self.failed = true;
                    return 0;
                }
                x = (x << 8) | c as u64;
            }
            if x >> 63 > 0 {
                self.failed = true;
                return 0;
            }
            return if inv == 0xff { !(x as i64) } else { x as i64 };
        }
        self.octal(b)
    }

    fn octal(&mut self, b: &[u8]) -> i64 {
        let is_pad = |c: &u8| *c == b' ' || *c == 0;
        let start = b.iter().position(|c| !is_pad(c)).unwrap_or(b.len());
        let end = b.iter().rposition(|c| !is_pad(c)).map_or(start, |i| i + 1);
        let b = &b[start..end];
        if b.is_empty() {
            return 0;
        }
        let digits = cstr(b);
        if digits.is_empty() || !digits.iter().all(|c| (b'0'..=b'7').contains(c)) {
            self.failed = true;
            return 0;
        }
        let mut x: u64 = 0;
        for &c in digits {
            match x.checked_mul(8).map(|v| v + (c - b'0') as u64) {
                Some(v) => x = v,
                None => {
                    self.failed = true;
                    return u64::MAX as i64;
                }
            }
        }
        x as i64
    }
}

/// The bytes before the first NUL (Go's `parseString`).
fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// Go's `GetFormat`: the checksum must match (unsigned or signed sum).
fn format_of(block: &[u8; BLOCK]) -> Option<Format> {
    let mut p = Parser::default();
    let stored = p.octal(&block[148..156]);
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &c) in block.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += c as i64;
        signed += c as i8 as i64;
    }
    if p.failed || (stored != unsigned && stored != signed) {
        return None;
    }
    let magic = &block[257..263];
    Some(if magic == b"ustar\0" && &block[508..512] == b"tar\0" {
        Format::Star
    } else if magic == b"ustar\0" {
        Format::Ustar
    } else if magic == b"ustar " && &block[263..265] == b" \0" {
        Format::Gnu
    } else {
        Format::V7
    })
}

/// Go's `readHeader` after the end-of-archive check.
fn read_header(block: &[u8; BLOCK]) -> Result<Header> {
    let format = format_of(block).ok_or_else(|| refused("a header's checksum does not match"))?;
    let mut p = Parser::default();
    let typeflag = block[156];
    let mut name = cstr(&block[0..100]).to_vec();
    let size = p.numeric(&block[124..136]);
    p.numeric(&block[100..108]);
    p.numeric(&block[108..116]);
    p.numeric(&block[116..124]);
    p.numeric(&block[136..148]);
    if format != Format::V7 {
        p.numeric(&block[329..337]);
        p.numeric(&block[337..345]);
        let prefix: Vec<u8> = match format {
            Format::Ustar => cstr(&block[345..500]).to_vec(),
            Format::Star => {
                p.numeric(&block[476..488]);
                p.numeric(&block[488..500]);
                cstr(&block[345..476]).to_vec()
            }
            _ => {
                // GNU: atime and ctime, parsed skeptically; where they do
                // not parse, pre-Go 1.8 writers put a prefix there.
                let mut p2 = Parser::default();
                if block[345] != 0 {
                    p2.numeric(&block[345..357]);
                }
                if block[357] != 0 {
                    p2.numeric(&block[357..369]);
                }
                let prefix = cstr(&block[345..500]);
                if p2.failed && prefix.is_ascii() {
                    prefix.to_vec()
                } else {
                    Vec::new()
                }
            }
        };
        if !prefix.is_empty() {
            let mut full = prefix;
            full.push(b'/');
            full.extend_from_slice(&name);
            name = full;
        }
    }
    if p.failed {
        return Err(refused(format!(
            "a numeric field of the header of {:?} does not parse",
            String::from_utf8_lossy(&name)
        )));
    }
    Ok(Header {
        name,
        size,
        typeflag,
    })
}

/// PAX records as Go keeps them: a map (the last of a key wins), with
/// GNU sparse 0.0 offsets and sizes joined into `GNU.sparse.map`.
#[derive(Default)]
struct Pax(Vec<(Vec<u8>, Vec<u8>)>);

impl Pax {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Whether Go takes the entry for a sparse file
    /// (`readGNUSparsePAXHeaders`).
    fn is_sparse(&self) -> bool {
        let major = self.get(b"GNU.sparse.major").unwrap_or_default();
        let minor = self.get(b"GNU.sparse.minor").unwrap_or_default();
        match (major, minor) {
            (b"0", b"0" | b"1") | (b"1", b"0") => true,
            (b"", b"") => self.get(b"GNU.sparse.map").is_some_and(|m| !m.is_empty()),
            _ => false,
        }
    }
}

/// Go's `parsePAX` over the whole data of an extended header.
fn parse_pax(data: &[u8]) -> Result<Pax> {
    let bad = || refused("a PAX record does not parse");
    let mut pax = Pax::default();
    let mut sparse: Vec<&[u8]> = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let n: i64 = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if n < 5 || n as u64 > rest.len() as u64 {
            return Err(bad());
        }
        let n = n as usize;
        // Go slices rest[sp+1..n-1] here, and panics when the length ends
        // inside its own digits.
        if sp + 1 > n - 1 || rest[n - 1] != b'\n' {
            return Err(bad());
        }
        let record = &rest[sp + 1..n - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let valid = !key.is_empty()
            && match key {
                b"path" | b"linkpath" | b"uname" | b"gname" => !value.contains(&0),
                _ => !key.contains(&0),
            };
        if !valid {
            return Err(bad());
        }
        match key {
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                let expected: &[u8] = if sparse.len() % 2 == 0 {
                    b"GNU.sparse.offset"
                } else {
                    b"GNU.sparse.numbytes"
                };
                if key != expected || value.contains(&b',') {
                    return Err(bad());
                }
                sparse.push(value);
            }
            _ => pax.0.push((key.to_vec(), value.to_vec())),
        }
        rest = &rest[n..];
    }
    if !sparse.is_empty() {
        pax.0
            .push((b"GNU.sparse.map".to_vec(), sparse.join(&b","[..])));
    }
    Ok(pax)
}

/// Go's `mergePAX` for what shapes the tar-split: the name and size, and
/// the records whose bad values make Go refuse the header.
fn merge_pax(header: &mut Header, pax: &Pax) -> Result<()> {
    let bad = |key: &[u8]| {
        refused(format!(
            "PAX record {:?} does not parse",
            String::from_utf8_lossy(key)
        ))
    };
    let int = |v: &[u8]| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
    };
    // The last record of a key is the one Go keeps.
    let mut keys: Vec<&[u8]> = Vec::new();
    for (key, _) in pax.0.iter().rev() {
        if !keys.contains(&key.as_slice()) {
            keys.push(key);
        }
    }
    for key in keys {
        let value = pax.get(key).unwrap_or_default();
        if value.is_empty() {
            continue;
        }
        match key {
            b"path" => header.name = value.to_vec(),
            b"size" => header.size = int(value).ok_or_else(|| bad(key))?,
            b"uid" | b"gid" => {
                int(value).ok_or_else(|| bad(key))?;
            }
            b"atime" | b"mtime" | b"ctime" if !pax_time_parses(value) => return Err(bad(key)),
            _ => {}
        }
    }
    Ok(())
}

/// Whether Go's `parsePAXTime` takes `value`.
fn pax_time_parses(value: &[u8]) -> bool {
    let (secs, frac) = match value.iter().position(|&b| b == b'.') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &b""[..]),
    };
    std::str::from_utf8(secs)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .is_some()
        && frac.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_go_parses_them() {
        let mut p = Parser::default();
        assert_eq!(p.numeric(b"0000644\0"), 0o644);
        assert_eq!(p.numeric(b"  755 \0\0"), 0o755);
        assert_eq!(p.numeric(b"\0\0\0\0"), 0);
        assert_eq!(p.numeric(b"12\x0099"), 0o12);
        assert!(!p.failed);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[10] = 1;
        big[11] = 5;
        assert_eq!(p.numeric(&big), 261);
        // Negative base-256: -1.
        assert_eq!(p.numeric(&[0xff; 8]), -1);
        assert!(!p.failed);
        for bad in [
            &b"+12\0"[..],
            b"1 2\0",
            b"8\0",
            &[0x80, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            let mut p = Parser::default();
            p.numeric(bad);
            assert!(p.failed, "{bad:?}");
        }
    }

    #[test]
    fn pax_records_as_go_parses_them() {
        let pax = parse_pax(b"20 path=a/long/name\n8 size=\n").unwrap();
        assert_eq!(pax.get(b"path"), Some(&b"a/long/name"[..]));
        assert_eq!(pax.get(b"size"), Some(&b""[..]));
        for bad in [
            &b"99 path=x\n"[..],
            b"3 a=\n",
            b"5 abc",
            b"6 path\n",
            b"7 =abc\n",
            b"0000005 x\n",
            b"12 path=a\0b\n",
            b"10 a=b\n\0\0\0",
        ] {
            assert!(
                parse_pax(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let sparse = parse_pax(b"23 GNU.sparse.offset=0\n25 GNU.sparse.numbytes=5\n").unwrap();
        assert!(sparse.is_sparse());
        assert!(parse_pax(b"25 GNU.sparse.numbytes=5\n").is_err());
    }

    #[test]
    fn pax_times() {
        assert!(pax_time_parses(b"1700000000.123"));
        assert!(pax_time_parses(b"-5"));
        assert!(!pax_time_parses(b"1.2x"));
        assert!(!pax_time_parses(b"x"));
    }
}
