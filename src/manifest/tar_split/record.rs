//! tar-split records: the JSON lines, written byte for byte as Go's
//! `encoding/json` (Go 1.19, the toolchain of the Go clients we share
//! stores with) writes vbatts/tar-split's `storage.Entry`, and read back
//! with a bound on every record.
//!
//! A record is `{"type":T,"name":S,"name_raw":B,"size":N,"payload":P,"position":I}`
//! in that field order, followed by a newline: `name`, `name_raw` and
//! `size` are left out when empty or 0 (`omitempty`), `payload` is `null`
//! when absent and base64 (standard alphabet, padded) otherwise. Strings
//! are escaped as Go escapes them: `"` and `\` with a backslash, `\n`,
//! `\r`, `\t` as such, other control bytes and `<`, `>`, `&` as `\u00xx`,
//! U+2028 and U+2029 as `\u2028` and `\u2029` (Go 1.22 and later write
//! `\b` and `\f` for 0x08 and 0x0c; both decode the same).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use crate::error::{Error, Result};

/// `storage.FileType`: a tar entry whose content is a file.
const FILE_TYPE: i64 = 1;
/// `storage.SegmentType`: raw tar bytes.
const SEGMENT_TYPE: i64 = 2;
/// The longest record the reader takes, newline included. Go writes
/// segments of at most 1 MiB (trailing bytes) or one entry's headers; our
/// importer refuses extended headers over 1 MiB.
pub(crate) const RECORD_LIMIT: usize = 64 << 20;

/// One record of a tar-split stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TarSplitRecord {
    /// Raw tar bytes, copied to the tar as they are.
    Segment(Vec<u8>),
    /// A tar entry: unless `size` is 0, its content is the whole file at
    /// `name` (relative to the layer's directory).
    File {
        /// The entry's name as Go's tar reader gave it (not normalised).
        name: Vec<u8>,
        /// The entry's size as its header says (Go's `int64`).
        size: i64,
        /// CRC-64/ISO of the content; `None` when the record has no
        /// payload (entries of size 0).
        crc64: Option<u64>,
    },
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::BadTarSplit(what.to_string())
}

/// Go's `path.Clean` (which `filepath.Clean` is on Unix), on bytes: the
/// key under which tar-split refuses a path given twice.
pub(crate) fn go_clean(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let rooted = path[0] == b'/';
    let n = path.len();
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let (mut r, mut dotdot) = (0, 0);
    if rooted {
        out.push(b'/');
        r = 1;
        dotdot = 1;
    }
    while r < n {
        if path[r] == b'/' || (path[r] == b'.' && (r + 1 == n || path[r + 1] == b'/')) {
            // An empty or `.` element.
            r += 1;
        } else if path[r] == b'.' && path[r + 1] == b'.' && (r + 2 == n || path[r + 2] == b'/') {
            r += 2;
            if out.len() > dotdot {
                // Back to the last `/` (Go's lazybuf: `w--`, then down
                // while the byte at `w` is not a separator).
                let mut w = out.len() - 1;
                while w > dotdot && out[w] != b'/' {
                    w -= 1;
                }
                out.truncate(w);
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                out.push(b'/');
            }
            while r < n && path[r] != b'/' {
                out.push(path[r]);
                r += 1;
            }
        }
    }
    if out.is_empty() {
        return b".".to_vec();
    }
    out
}

/// The names already given, as tar-split's packer and unpacker keep them
/// (after `Clean`), to refuse a path given twice. Kept as 128-bit hashes:
/// 16 bytes an entry whatever the names' lengths.
#[derive(Default)]
pub(crate) struct SeenNames(HashSet<[u8; 16]>);

impl SeenNames {
    /// Records `name`; false when its cleaned form was seen before.
    pub(crate) fn insert(&mut self, name: &[u8]) -> bool {
        let hash = blake3::hash(&go_clean(name));
        let mut key = [0u8; 16];
        key.copy_from_slice(&hash.as_bytes()[..16]);
        self.0.insert(key)
    }
}

/// Writes records as JSON lines, numbering them from 0 and refusing a
/// file name given twice (tar-split's `jsonPacker`).
pub(crate) struct RecordWriter<W: Write> {
    out: W,
    position: u64,
    seen: SeenNames,
    line: Vec<u8>,
}

impl<W: Write> RecordWriter<W> {
    pub(crate) fn new(out: W) -> RecordWriter<W> {
        RecordWriter {
            out,
            position: 0,
            seen: SeenNames::default(),
            line: Vec::with_capacity(1024),
        }
    }

    /// Records written so far.
    pub(crate) fn count(&self) -> u64 {
        self.position
    }

    pub(crate) fn into_inner(self) -> W {
        self.out
    }

    /// Writes one record. A file name seen before is refused with
    /// [`Error::TarSplitUnsupported`], as Go's packer refuses it.
    pub(crate) fn write(&mut self, record: &TarSplitRecord) -> Result<()> {
        if let TarSplitRecord::File { name, .. } = record {
            if !self.seen.insert(name) {
                return Err(Error::TarSplitUnsupported(format!(
                    "path {:?} is given twice (tar-split refuses duplicate paths)",
                    String::from_utf8_lossy(name)
                )));
            }
        }
        self.line.clear();
        encode(record, self.position, &mut self.line);
        self.out.write_all(&self.line).map_err(|e| Error::Stream {
            what: "writing the tar-split stream".into(),
            source: e,
        })?;
        self.position += 1;
        Ok(())
    }
}

/// Appends the JSON line of `record` at `position` to `out`.
pub(crate) fn encode(record: &TarSplitRecord, position: u64, out: &mut Vec<u8>) {
    match record {
        TarSplitRecord::Segment(payload) => {
            out.extend_from_slice(b"{\"type\":2,\"payload\":\"");
            let encoded = STANDARD.encode(payload);
            out.extend_from_slice(encoded.as_bytes());
            out.extend_from_slice(b"\"");
        }
        TarSplitRecord::File { name, size, crc64 } => {
            out.extend_from_slice(b"{\"type\":1");
            match std::str::from_utf8(name) {
                Ok("") => {}
                Ok(text) => {
                    out.extend_from_slice(b",\"name\":");
                    go_string(text, out);
                }
                Err(_) => {
                    out.extend_from_slice(b",\"name_raw\":\"");
                    out.extend_from_slice(STANDARD.encode(name).as_bytes());
                    out.push(b'"');
                }
            }
            if *size != 0 {
                out.extend_from_slice(format!(",\"size\":{size}").as_bytes());
            }
            match crc64 {
                Some(crc) => {
                    out.extend_from_slice(b",\"payload\":\"");
                    out.extend_from_slice(STANDARD.encode(crc.to_be_bytes()).as_bytes());
                    out.push(b'"');
                }
                None => out.extend_from_slice(b",\"payload\":null"),
            }
        }
    }
    out.extend_from_slice(format!(",\"position\":{position}}}\n").as_bytes());
}

/// A JSON string as Go 1.19's `encoding/json` writes it (HTML escaping on,
/// as `json.NewEncoder` has it).
fn go_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// A record as JSON has it; unknown fields are ignored, as Go does.
#[derive(Deserialize)]
struct Json {
    #[serde(rename = "type")]
    kind: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    name_raw: Option<String>,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    payload: Option<String>,
}

/// Reads the records of a tar-split stream (uncompressed JSON lines; see
/// [`TarSplitReader::gzip`] for the file as stored).
///
/// Each line holds one record (Go writes one per line; Go's decoder would
/// also take a record broken over lines, which no writer produces). A
/// line longer than 64 MiB, bad JSON or base64, an unknown record type, a
/// file record with a payload that is not 8 bytes, and a file name given
/// twice are errors ([`Error::BadTarSplit`]). Positions are not checked
/// (Go ignores them too).
pub struct TarSplitReader<R: Read> {
    input: BufReader<R>,
    line: Vec<u8>,
    line_no: u64,
    queue: std::collections::VecDeque<TarSplitRecord>,
    seen: SeenNames,
    failed: bool,
}

impl<R: Read> TarSplitReader<R> {
    /// Reads uncompressed records from `input`.
    pub fn new(input: R) -> TarSplitReader<R> {
        TarSplitReader {
            input: BufReader::with_capacity(256 * 1024, input),
            line: Vec::new(),
            line_no: 0,
            queue: Default::default(),
            seen: SeenNames::default(),
            failed: false,
        }
    }

    fn next_record(&mut self) -> Result<Option<TarSplitRecord>> {
        loop {
            if let Some(record) = self.queue.pop_front() {
                return Ok(Some(record));
            }
            self.line.clear();
            let read = (&mut self.input)
                .take(RECORD_LIMIT as u64 + 1)
                .read_until(b'\n', &mut self.line)
                .map_err(|e| bad(format!("reading the stream: {e}")))?;
            if read == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            if self.line.len() > RECORD_LIMIT {
                return Err(bad(format!(
                    "line {}: a record longer than {RECORD_LIMIT} bytes",
                    self.line_no
                )));
            }
            let line_no = self.line_no;
            let values = serde_json::Deserializer::from_slice(&self.line).into_iter::<Json>();
            for value in values {
                let json = value.map_err(|e| bad(format!("line {line_no}: {e}")))?;
                let record = decode(json).map_err(|what| bad(format!("line {line_no}: {what}")))?;
                if let TarSplitRecord::File { name, .. } = &record {
                    if !self.seen.insert(name) {
                        return Err(bad(format!(
                            "line {line_no}: path {:?} is given twice",
                            String::from_utf8_lossy(name)
                        )));
                    }
                }
                self.queue.push_back(record);
            }
        }
    }
}

impl<R: Read> TarSplitReader<flate2::read::MultiGzDecoder<R>> {
    /// Reads a tar-split file as stored: gzip (any number of members, as
    /// Go's `pgzip` reader takes) of the JSON lines.
    pub fn gzip(input: R) -> Self {
        TarSplitReader::new(flate2::read::MultiGzDecoder::new(input))
    }
}

impl<R: Read> Iterator for TarSplitReader<R> {
    type Item = Result<TarSplitRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_record();
        if next.is_err() {
            self.failed = true;
        }
        next.transpose()
    }
}

fn base64(field: &str, text: &str) -> std::result::Result<Vec<u8>, String> {
    STANDARD
        .decode(text)
        .map_err(|e| format!("{field} is not base64: {e}"))
}

fn decode(json: Json) -> std::result::Result<TarSplitRecord, String> {
    match json.kind {
        SEGMENT_TYPE => Ok(TarSplitRecord::Segment(match &json.payload {
            Some(p) => base64("payload", p)?,
            None => Vec::new(),
        })),
        FILE_TYPE => {
            // Go's GetName: name_raw when it is not empty, else name.
            let raw = match &json.name_raw {
                Some(r) => base64("name_raw", r)?,
                None => Vec::new(),
            };
            let name = if raw.is_empty() {
                json.name.unwrap_or_default().into_bytes()
            } else {
                raw
            };
            let payload = match &json.payload {
                Some(p) => Some(base64("payload", p)?),
                None => None,
            };
            if json.size < 0 {
                return Err(format!(
                    "{:?} has a negative size {}",
                    String::from_utf8_lossy(&name),
                    json.size
                ));
            }
            let crc64 = match payload {
                Some(p) if p.len() == 8 => Some(u64::from_be_bytes(p.try_into().expect("8"))),
                // Go never reads the payload of an empty entry.
                _ if json.size == 0 => None,
                Some(p) => {
                    return Err(format!(
                        "the payload of {:?} is {} bytes, not an 8-byte CRC-64",
                        String::from_utf8_lossy(&name),
                        p.len()
                    ))
                }
                None => {
                    return Err(format!(
                        "{:?} has {} bytes of content but no CRC-64",
                        String::from_utf8_lossy(&name),
                        json.size
                    ))
                }
            };
            Ok(TarSplitRecord::File {
                name,
                size: json.size,
                crc64,
            })
        }
        other => Err(format!("unknown record type {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(record: &TarSplitRecord, position: u64) -> String {
        let mut out = Vec::new();
        encode(record, position, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Lines as the Go CLI wrote them (see the tar-split in
    /// `tests/it/tar_split.rs` for the full comparison).
    #[test]
    fn encodes_as_go_does() {
        assert_eq!(
            line(&TarSplitRecord::Segment(b"ab".to_vec()), 0),
            "{\"type\":2,\"payload\":\"YWI=\",\"position\":0}\n"
        );
        assert_eq!(
            line(&TarSplitRecord::Segment(Vec::new()), 14),
            "{\"type\":2,\"payload\":\"\",\"position\":14}\n"
        );
        assert_eq!(
            line(
                &TarSplitRecord::File {
                    name: b"./".to_vec(),
                    size: 0,
                    crc64: None
                },
                1
            ),
            "{\"type\":1,\"name\":\"./\",\"payload\":null,\"position\":1}\n"
        );
        assert_eq!(
            line(
                &TarSplitRecord::File {
                    name: b"./hard".to_vec(),
                    size: 6,
                    crc64: Some(0x614c3eeee2d81000)
                },
                9
            ),
            "{\"type\":1,\"name\":\"./hard\",\"size\":6,\"payload\":\"YUw+7uLYEAA=\",\"position\":9}\n"
        );
        assert_eq!(
            line(
                &TarSplitRecord::File {
                    name: b"a\xffb".to_vec(),
                    size: 0,
                    crc64: None
                },
                3
            ),
            "{\"type\":1,\"name_raw\":\"Yf9i\",\"payload\":null,\"position\":3}\n"
        );
        assert_eq!(
            line(
                &TarSplitRecord::File {
                    name: Vec::new(),
                    size: -5,
                    crc64: Some(0)
                },
                3
            ),
            "{\"type\":1,\"size\":-5,\"payload\":\"AAAAAAAAAAA=\",\"position\":3}\n"
        );
    }

    #[test]
    fn escapes_strings_as_go_1_19() {
        let mut out = Vec::new();
        go_string(
            "a\"b\\c\nd\re\tf\u{1}\u{8}\u{c}<>&\u{7f}é\u{2028}\u{2029}€",
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001\\u0008\\u000c\\u003c\\u003e\\u0026\u{7f}é\\u2028\\u2029€\""
        );
    }

    #[test]
    fn cleans_as_go() {
        for (path, clean) in [
            ("", "."),
            (".", "."),
            ("./", "."),
            ("a/", "a"),
            ("./a//b/./c/", "a/b/c"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("a/../../b", "../b"),
            ("/../a", "/a"),
            ("/", "/"),
            ("//a", "/a"),
            ("a/b/..", "a"),
            ("..", ".."),
            ("../..", "../.."),
            ("a/...", "a/..."),
        ] {
            assert_eq!(go_clean(path.as_bytes()), clean.as_bytes(), "{path}");
        }
    }

    #[test]
    fn reads_what_it_writes() {
        let records = vec![
            TarSplitRecord::Segment(vec![0; 1024]),
            TarSplitRecord::File {
                name: b"./a\n\"<b>".to_vec(),
                size: 6,
                crc64: Some(u64::MAX),
            },
            TarSplitRecord::File {
                name: b"\xff\xfe".to_vec(),
                size: 0,
                crc64: None,
            },
            TarSplitRecord::Segment(Vec::new()),
        ];
        let mut w = RecordWriter::new(Vec::new());
        for r in &records {
            w.write(r).unwrap();
        }
        assert_eq!(w.count(), 4);
        let bytes = w.into_inner();
        let back: Vec<_> = TarSplitReader::new(&bytes[..])
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(back, records);
    }

    #[test]
    fn refuses_a_path_given_twice() {
        let mut w = RecordWriter::new(Vec::new());
        let file = |name: &[u8]| TarSplitRecord::File {
            name: name.to_vec(),
            size: 0,
            crc64: None,
        };
        w.write(&file(b"./etc/")).unwrap();
        let err = w.write(&file(b"etc")).unwrap_err();
        assert!(matches!(err, Error::TarSplitUnsupported(_)), "{err}");
        let text = "{\"type\":1,\"name\":\"a\",\"payload\":null,\"position\":0}\n\
                    {\"type\":1,\"name\":\"./a/\",\"payload\":null,\"position\":1}\n";
        let err = TarSplitReader::new(text.as_bytes())
            .collect::<Result<Vec<_>>>()
            .unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
    }

    #[test]
    fn reads_go_variations_and_refuses_bad_records() {
        // Any field order, unknown fields, several records on a line,
        // name_raw before name, a missing position.
        let text = "{\"position\":0,\"payload\":\"YQ==\",\"type\":2,\"extra\":[1]} {\"type\":2}\n\
                    \n{\"type\":1,\"name\":\"x\",\"name_raw\":\"eQ==\",\"size\":1,\"payload\":\"AAAAAAAAAAE=\"}\n";
        let back: Vec<_> = TarSplitReader::new(text.as_bytes())
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            back,
            vec![
                TarSplitRecord::Segment(b"a".to_vec()),
                TarSplitRecord::Segment(Vec::new()),
                TarSplitRecord::File {
                    name: b"y".to_vec(),
                    size: 1,
                    crc64: Some(1)
                }
            ]
        );
        for (text, what) in [
            ("{\"type\":3,\"payload\":null}\n", "unknown record type 3"),
            ("{\"type\":2,\"payload\":\"@@\"}\n", "payload is not base64"),
            ("{\"type\":2,\"payload\":\"YQ==\"", "EOF while parsing"),
            ("{\"payload\":\"YQ==\"}\n", "missing field `type`"),
            (
                "{\"type\":1,\"name\":\"f\",\"size\":3,\"payload\":\"YQ==\"}\n",
                "not an 8-byte",
            ),
            (
                "{\"type\":1,\"name\":\"f\",\"size\":3,\"payload\":null}\n",
                "no CRC-64",
            ),
            (
                "{\"type\":1,\"name_raw\":\"!\",\"payload\":null}\n",
                "name_raw is not base64",
            ),
            ("[1,2]\n", "line 1"),
        ] {
            let err = TarSplitReader::new(text.as_bytes())
                .collect::<Result<Vec<_>>>()
                .unwrap_err();
            assert!(matches!(err, Error::BadTarSplit(_)));
            assert!(err.to_string().contains(what), "{text}: {err}");
        }
    }

    #[test]
    fn refuses_an_endless_line() {
        let mut text = b"{\"type\":2,\"payload\":\"".to_vec();
        text.resize(RECORD_LIMIT + 10, b'A');
        let err = TarSplitReader::new(&text[..]).next().unwrap().unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
    }
}
