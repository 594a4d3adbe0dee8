//! Tar header decoding: ustar, GNU and PAX, read strictly (the checksum
//! must match, numbers must parse), since layer tars are untrusted.

/// The tar block size.
pub(crate) const BLOCK: usize = 512;

/// The fields of one header block that the importer uses.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub name: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub typeflag: u8,
    pub linkname: Vec<u8>,
    pub dev_major: u64,
    pub dev_minor: u64,
}

/// Whether a block is all zeros (an end-of-archive marker).
pub(crate) fn is_zero_block(block: &[u8; BLOCK]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Decodes a header block.
pub(crate) fn parse_header(block: &[u8; BLOCK]) -> Result<Header, String> {
    let stored = parse_number(&block[148..156], "checksum")?;
    let unsigned: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as i64
            }
        })
        .sum();
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as i8 as i64
            }
        })
        .sum();
    if stored != unsigned && stored != signed {
        return Err("the header checksum does not match".into());
    }
    let magic = &block[257..265];
    let ustar = &magic[..6] == b"ustar\0";
    let mut name = cstr(&block[0..100]).to_vec();
    if ustar {
        let prefix = cstr(&block[345..500]);
        if !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(&name);
            name = full;
        }
    }
    let has_devices = ustar || magic == b"ustar  \0";
    Ok(Header {
        name,
        mode: (parse_number(&block[100..108], "mode")? & 0o7777) as u32,
        uid: parse_number(&block[108..116], "uid")? as u64,
        gid: parse_number(&block[116..124], "gid")? as u64,
        size: parse_size(&block[124..136])?,
        mtime: parse_number(&block[136..148], "mtime")?,
        typeflag: block[156],
        linkname: cstr(&block[157..257]).to_vec(),
        dev_major: if has_devices {
            parse_number(&block[329..337], "devmajor")? as u64
        } else {
            0
        },
        dev_minor: if has_devices {
            parse_number(&block[337..345], "devminor")? as u64
        } else {
            0
        },
    })
}

fn parse_size(field: &[u8]) -> Result<u64, String> {
    let size = parse_number(field, "size")?;
    u64::try_from(size).map_err(|_| format!("invalid size field {size}"))
}

/// The bytes of a NUL-terminated field.
fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// A numeric field: octal (space or NUL padded) or GNU base-256.
fn parse_number(field: &[u8], what: &str) -> Result<i64, String> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        let negative = field[0] & 0x40 != 0;
        let mut value: i128 = (field[0] & 0x3f) as i128;
        if negative {
            value -= 0x40;
        }
        for &b in &field[1..] {
            value = value
                .checked_mul(256)
                .and_then(|v| v.checked_add(b as i128))
                .ok_or_else(|| format!("invalid {what} field (base-256 overflow)"))?;
            if value.abs() > i64::MAX as i128 {
                return Err(format!("invalid {what} field (base-256 overflow)"));
            }
        }
        return Ok(value as i64);
    }
    let text = cstr(field);
    let trimmed: Vec<u8> = text
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != b' ')
        .collect();
    if trimmed.is_empty() {
        return Ok(0);
    }
    let mut value: i64 = 0;
    for b in trimmed {
        if !(b'0'..=b'7').contains(&b) {
            return Err(format!(
                "invalid {what} field {:?}",
                String::from_utf8_lossy(field)
            ));
        }
        value = value
            .checked_mul(8)
            .and_then(|v| v.checked_add((b - b'0') as i64))
            .ok_or_else(|| format!("invalid {what} field (overflow)"))?;
    }
    Ok(value)
}

/// PAX records as (key, value) pairs, in order.
pub(crate) type PaxRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// Decodes PAX extended header records (`"%d %s=%s\n"`).
pub(crate) fn parse_pax(data: &[u8]) -> Result<PaxRecords, String> {
    let mut records = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("malformed PAX record (no length)")?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("malformed PAX record length")?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err("malformed PAX record".into());
        }
        let record = &rest[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("malformed PAX record (no '=')")?;
        records.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(records)
}

/// A PAX time, `SECONDS[.FRACTION]`, as seconds and nanoseconds.
pub(crate) fn parse_pax_time(value: &[u8]) -> Result<(i64, u32), String> {
    let text = std::str::from_utf8(value).map_err(|_| "malformed PAX time")?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let negative = secs.starts_with('-');
    let mut seconds: i64 = secs
        .parse()
        .map_err(|_| format!("malformed PAX time {text:?}"))?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("malformed PAX time {text:?}"));
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let mut nanos: u32 = digits
        .parse()
        .map_err(|_| format!("malformed PAX time {text:?}"))?;
    if negative && nanos > 0 {
        seconds -= 1;
        nanos = 1_000_000_000 - nanos;
    }
    Ok((seconds, nanos))
}

/// A PAX decimal number.
pub(crate) fn parse_pax_number(value: &[u8], what: &str) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("malformed PAX {what} {:?}", String::from_utf8_lossy(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_octal_and_base_256() {
        assert_eq!(parse_number(b"0000644\0", "mode").unwrap(), 0o644);
        assert_eq!(parse_number(b"   755 \0", "mode").unwrap(), 0o755);
        assert_eq!(parse_number(b"\0\0\0\0\0\0\0\0", "uid").unwrap(), 0);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 5;
        big[10] = 1;
        assert_eq!(parse_number(&big, "size").unwrap(), 261);
        assert!(parse_number(b"12x4\0\0\0\0", "mode").is_err());
        let absurd = [0xffu8; 12];
        assert!(parse_size(&absurd).is_err());
    }

    #[test]
    fn pax_records_and_times() {
        let data = b"20 path=a/long/name\n27 mtime=1700000000.123456\n";
        let recs = parse_pax(data).unwrap();
        assert_eq!(recs[0], (b"path".to_vec(), b"a/long/name".to_vec()));
        assert_eq!(
            parse_pax_time(&recs[1].1).unwrap(),
            (1_700_000_000, 123_456_000)
        );
        assert_eq!(parse_pax_time(b"-1.5").unwrap(), (-2, 500_000_000));
        assert!(parse_pax(b"99 path=x\n").is_err());
    }
}
