//! Layer stream compression: detection by magic bytes, decoders that
//! accept concatenated members, and encoders for `diff`.

use std::fmt;
use std::io::{self, Read, Write};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a layer stream is compressed. Serialized as upstream's integer
/// codes: 0 none, 1 bzip2, 2 gzip, 3 xz, 4 zstd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    #[default]
    None,
    /// bzip2.
    Bzip2,
    /// gzip (one or more members).
    Gzip,
    /// xz.
    Xz,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    /// The upstream integer code.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Bzip2 => 1,
            Compression::Gzip => 2,
            Compression::Xz => 3,
            Compression::Zstd => 4,
        }
    }

    /// The compression with upstream integer code `code`.
    pub fn from_code(code: u8) -> Option<Compression> {
        Some(match code {
            0 => Compression::None,
            1 => Compression::Bzip2,
            2 => Compression::Gzip,
            3 => Compression::Xz,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    /// Detects the compression from the first bytes of a stream.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    /// A reader that decompresses `input` to the end of its last member.
    pub(crate) fn decoder<'a, R: Read + 'a>(self, input: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(input),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
            Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(input)),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        })
    }

    /// A writer that compresses into `out`; call `finish` on the result.
    pub(crate) fn encoder<'a, W: Write + 'a>(self, out: W) -> io::Result<Encoder<'a, W>> {
        Ok(match self {
            Compression::None => Encoder::Plain(out),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(out, 3)?),
            Compression::Xz => Encoder::Xz(xz2::write::XzEncoder::new(out, 6)),
            Compression::Bzip2 => Encoder::Bzip2(bzip2::write::BzEncoder::new(
                out,
                bzip2::Compression::best(),
            )),
        })
    }
}

/// A compressing writer of any supported kind.
pub(crate) enum Encoder<'a, W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'a, W>),
    Xz(xz2::write::XzEncoder<W>),
    Bzip2(bzip2::write::BzEncoder<W>),
}

impl<W: Write> Encoder<'_, W> {
    /// Writes the compressed stream's end and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Bzip2(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Bzip2(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Bzip2(e) => e.flush(),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Bzip2 => "bzip2",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        })
    }
}

impl Serialize for Compression {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = u8::deserialize(d)?;
        Compression::from_code(code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown compression code {code}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_encoder_and_decoder() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 97) as u8).collect();
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Zstd,
            Compression::Xz,
            Compression::Bzip2,
        ] {
            let mut enc = c.encoder(Vec::new()).unwrap();
            enc.write_all(&data).unwrap();
            let packed = enc.finish().unwrap();
            assert_eq!(Compression::sniff(&packed), c, "{c}");
            let mut back = Vec::new();
            c.decoder(&packed[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{c}");
        }
    }

    #[test]
    fn concatenated_gzip_members_decode_whole() {
        let mut packed = Vec::new();
        for part in [&b"first "[..], b"second"] {
            let mut enc = Compression::Gzip.encoder(Vec::new()).unwrap();
            enc.write_all(part).unwrap();
            packed.extend(enc.finish().unwrap());
        }
        let mut back = Vec::new();
        Compression::Gzip
            .decoder(&packed[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b"first second");
    }
}
