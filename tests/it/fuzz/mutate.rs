//! Byte mutations for the fuzz targets, as proptest strategies: bit flips,
//! bytes set to interesting values, truncation, insertion and duplication
//! of slices, splicing with another corpus input, numeric (length) fields
//! grown, and JSON strings replaced by hostile ones.
//!
//! Positions and lengths are drawn as plain numbers and reduced modulo the
//! input's length when applied, so one operation list applies to any input
//! and proptest can shrink it operation by operation.

use proptest::prelude::*;

/// Byte values that sit on boundaries of signed, unsigned and ASCII ranges.
pub const INTERESTING: [u8; 8] = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x20, b'0', b'7'];

/// One mutation.
#[derive(Clone, Debug)]
pub enum Op {
    /// Flips bit `bit % 8` of the byte at `at`.
    FlipBit { at: usize, bit: u8 },
    /// Sets the byte at `at` to `INTERESTING[value]`.
    SetByte { at: usize, value: usize },
    /// Keeps only the first `at` bytes.
    Truncate { at: usize },
    /// Inserts a copy of `len` bytes starting at `from` at position `at`
    /// (a duplicated header, a repeated record).
    Duplicate { at: usize, from: usize, len: usize },
    /// Inserts `bytes` at `at`.
    Insert { at: usize, bytes: Vec<u8> },
    /// Removes `len` bytes at `at`.
    Remove { at: usize, len: usize },
    /// Replaces everything from `at` on with input `other`'s bytes from
    /// `from` on.
    Splice {
        other: usize,
        at: usize,
        from: usize,
    },
    /// Grows the number stored at `at`: an ASCII octal field (tar) gets
    /// larger digits, else the 4 bytes there, read little endian (index
    /// counts) or big endian (msgpack lengths), get `1 << shift` added.
    GrowNumber {
        at: usize,
        shift: u8,
        big_endian: bool,
    },
    /// Replaces the contents of JSON string literal number `which` with
    /// `strings[with]` (a path that escapes, an empty ID, ...).
    ReplaceString { which: usize, with: usize },
}

/// A strategy for one operation; `strings` is how many hostile strings the
/// target offers to [`Op::ReplaceString`] (0: none).
pub fn op(strings: usize) -> BoxedStrategy<Op> {
    let bytes = prop_oneof![
        4 => any::<(usize, u8)>().prop_map(|(at, bit)| Op::FlipBit { at, bit }),
        4 => (any::<usize>(), 0..INTERESTING.len())
            .prop_map(|(at, value)| Op::SetByte { at, value }),
        1 => any::<usize>().prop_map(|at| Op::Truncate { at }),
        2 => (any::<usize>(), any::<usize>(), 1usize..1100)
            .prop_map(|(at, from, len)| Op::Duplicate { at, from, len }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Op::Insert { at, bytes }),
        1 => (any::<usize>(), 1usize..600).prop_map(|(at, len)| Op::Remove { at, len }),
        1 => any::<(usize, usize, usize)>()
            .prop_map(|(other, at, from)| Op::Splice { other, at, from }),
        3 => (any::<usize>(), 0u8..32, any::<bool>())
            .prop_map(|(at, shift, big_endian)| Op::GrowNumber { at, shift, big_endian }),
    ];
    if strings == 0 {
        return bytes.boxed();
    }
    prop_oneof![
        3 => bytes,
        2 => (any::<usize>(), 0..strings).prop_map(|(which, with)| Op::ReplaceString { which, with }),
    ]
    .boxed()
}

/// A list of 1 to `max` operations.
pub fn ops(strings: usize, max: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(strings), 1..=max)
}

/// Applies `ops` to `data`; `others` are the inputs [`Op::Splice`] draws
/// from and `strings` the replacements for [`Op::ReplaceString`].
pub fn apply(data: &mut Vec<u8>, ops: &[Op], others: &[Vec<u8>], strings: &[String]) {
    for op in ops {
        apply_one(data, op, others, strings);
    }
}

fn apply_one(data: &mut Vec<u8>, op: &Op, others: &[Vec<u8>], strings: &[String]) {
    let n = data.len();
    match op {
        Op::FlipBit { at, bit } if n > 0 => data[at % n] ^= 1 << (bit % 8),
        Op::SetByte { at, value } if n > 0 => data[at % n] = INTERESTING[*value],
        Op::Truncate { at } => data.truncate(at % (n + 1)),
        Op::Duplicate { at, from, len } if n > 0 => {
            let from = from % n;
            let slice = data[from..n.min(from + len)].to_vec();
            let at = at % (n + 1);
            data.splice(at..at, slice);
        }
        Op::Insert { at, bytes } => {
            let at = at % (n + 1);
            data.splice(at..at, bytes.iter().copied());
        }
        Op::Remove { at, len } if n > 0 => {
            let at = at % n;
            data.drain(at..n.min(at + len));
        }
        Op::Splice { other, at, from } if !others.is_empty() => {
            let other = &others[other % others.len()];
            data.truncate(at % (n + 1));
            data.extend_from_slice(&other[from % (other.len() + 1)..]);
        }
        Op::GrowNumber {
            at,
            shift,
            big_endian,
        } if n > 0 => grow_number(data, at % n, *shift, *big_endian),
        Op::ReplaceString { which, with } if !strings.is_empty() => {
            let spans = json_strings(data);
            if !spans.is_empty() {
                let (start, end) = spans[which % spans.len()];
                let value = serde_json::to_string(&strings[with % strings.len()])
                    .expect("a string serializes");
                let inner = &value.as_bytes()[1..value.len() - 1];
                data.splice(start..end, inner.iter().copied());
            }
        }
        _ => {}
    }
}

fn is_octal(b: u8) -> bool {
    (b'0'..=b'7').contains(&b)
}

fn grow_number(data: &mut [u8], at: usize, shift: u8, big_endian: bool) {
    if is_octal(data[at]) {
        // The whole run of octal digits around `at`, as tar writes them.
        let mut start = at;
        while start > 0 && is_octal(data[start - 1]) {
            start -= 1;
        }
        let mut end = at;
        while end < data.len() && is_octal(data[end]) {
            end += 1;
        }
        let field = &mut data[start..end];
        let value = field
            .iter()
            .fold(0u128, |v, &d| (v << 3) | (d - b'0') as u128);
        let grown = value.saturating_add(1u128 << (shift % 64));
        let text = format!("{grown:0width$o}", width = field.len());
        if text.len() > field.len() {
            field.fill(b'7');
        } else {
            field.copy_from_slice(text.as_bytes());
        }
        return;
    }
    let end = data.len().min(at + 4);
    let mut word = [0u8; 4];
    word[..end - at].copy_from_slice(&data[at..end]);
    let value = if big_endian {
        u32::from_be_bytes(word)
    } else {
        u32::from_le_bytes(word)
    };
    let grown = value.wrapping_add(1u32 << (shift % 32));
    let bytes = if big_endian {
        grown.to_be_bytes()
    } else {
        grown.to_le_bytes()
    };
    data[at..end].copy_from_slice(&bytes[..end - at]);
}

/// The spans (inside the quotes) of the JSON string literals in `data`.
fn json_strings(data: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            while j < data.len() && data[j] != b'"' {
                j += if data[j] == b'\\' { 2 } else { 1 };
            }
            if j >= data.len() {
                break;
            }
            spans.push((start, j));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    spans
}

#[test]
fn mutations_stay_in_bounds_and_change_what_they_say() {
    let others = vec![b"other input".to_vec()];
    let strings = vec!["../../x".to_string()];
    let mut data = b"0000644\0 {\"id\":\"abc\"}".to_vec();
    apply(
        &mut data,
        &[Op::GrowNumber {
            at: 2,
            shift: 3,
            big_endian: false,
        }],
        &others,
        &strings,
    );
    assert_eq!(&data[..8], b"0000654\0");
    apply(
        &mut data,
        &[Op::ReplaceString { which: 1, with: 0 }],
        &others,
        &strings,
    );
    assert_eq!(&data[9..], b"{\"id\":\"../../x\"}");
    let mut empty = Vec::new();
    apply(
        &mut empty,
        &[
            Op::FlipBit { at: 5, bit: 1 },
            Op::Remove { at: 3, len: 9 },
            Op::Duplicate {
                at: 1,
                from: 2,
                len: 3,
            },
        ],
        &others,
        &strings,
    );
    assert!(empty.is_empty());
    apply(
        &mut empty,
        &[Op::Splice {
            other: 0,
            at: 0,
            from: 6,
        }],
        &others,
        &strings,
    );
    assert_eq!(empty, b"input");
}
