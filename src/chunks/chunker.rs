//! Content-defined chunking with FastCDC v2020.
//!
//! The `fastcdc` crate is pinned to an exact version in `Cargo.toml` because
//! its cut points changed between releases; the parameters in force are
//! recorded in the pool config and in every manifest. Chunking restarts at
//! every file, so identical files always produce identical chunks.

use std::io::Read;

use fastcdc::v2020::{cut, logarithm2, MASKS};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The chunking algorithm and the exact crate version that defines its cut
/// points.
pub const CHUNKER_ALGORITHM: &str = "fastcdc-v2020 (fastcdc 3.2.1, normalization 1)";

/// FastCDC normalization level 1, as `fastcdc::v2020::FastCDC::new` uses.
const NORMALIZATION_BITS: u32 = 1;

/// Minimum, average and maximum chunk sizes in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No chunk is smaller, except the last one of a file.
    pub min: u32,
    /// The size cut points aim for.
    pub avg: u32,
    /// No chunk is larger.
    pub max: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Checks the parameters against the ranges FastCDC accepts.
    pub fn validate(&self) -> Result<()> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX};
        let ok = (fastcdc::v2020::MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "chunker parameters {}/{}/{} are out of FastCDC's range",
                self.min, self.avg, self.max
            )))
        }
    }

    /// The end of the first chunk in `data` (which holds at least `max`
    /// bytes, or the rest of the file).
    fn cut(&self, data: &[u8]) -> usize {
        let bits = logarithm2(self.avg);
        let mask_s = MASKS[(bits + NORMALIZATION_BITS) as usize];
        let mask_l = MASKS[(bits - NORMALIZATION_BITS) as usize];
        let (_, end) = cut(
            data,
            self.min as usize,
            self.avg as usize,
            self.max as usize,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
        );
        end
    }
}

/// A streaming chunker whose buffer is reused from one file to the next.
pub(crate) struct Chunker {
    params: ChunkerParams,
    buf: Vec<u8>,
}

impl Chunker {
    /// A chunker with a buffer of a few `max` sizes.
    pub fn new(params: ChunkerParams) -> Chunker {
        let cap = (params.max as usize * 4).max(1 << 20);
        Chunker {
            params,
            buf: vec![0u8; cap],
        }
    }

    /// Splits everything `reader` yields into chunks and hands each to
    /// `emit`, in order. Returns the number of bytes read. A failed read
    /// is the error `read_error` makes of it: the caller knows what the
    /// stream is.
    pub fn chunk_stream<R, F>(
        &mut self,
        mut reader: R,
        read_error: fn(std::io::Error) -> Error,
        mut emit: F,
    ) -> Result<u64>
    where
        R: Read,
        F: FnMut(&[u8]) -> Result<()>,
    {
        let params = self.params;
        let max = params.max as usize;
        let buf = &mut self.buf;
        let cap = buf.len();
        let (mut start, mut end) = (0usize, 0usize);
        let mut eof = false;
        let mut total = 0u64;
        loop {
            if !eof && end - start < max {
                if cap - end < max {
                    buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                }
                while end < cap {
                    let n = read_retrying(&mut reader, &mut buf[end..]).map_err(read_error)?;
                    if n == 0 {
                        eof = true;
                        break;
                    }
                    end += n;
                    total += n as u64;
                    if end - start >= max {
                        break;
                    }
                }
                continue;
            }
            if start == end {
                return Ok(total);
            }
            let len = params.cut(&buf[start..end]);
            emit(&buf[start..start + len])?;
            start += len;
        }
    }
}

fn read_retrying<R: Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 256,
            avg: 1024,
            max: 4096,
        }
    }

    fn chunks_of(params: &ChunkerParams, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        // A reader that returns short reads exercises the refill path.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(777);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        Chunker::new(*params)
            .chunk_stream(
                Trickle(data),
                |e| Error::Stream {
                    what: "test".into(),
                    source: e,
                },
                |c| {
                    out.push(c.to_vec());
                    Ok(())
                },
            )
            .unwrap();
        out
    }

    fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn same_cut_points_as_the_crate() {
        let params = ChunkerParams::default();
        let data = pseudo_random(7, 3 << 20);
        let ours: Vec<usize> = chunks_of(&params, &data).iter().map(|c| c.len()).collect();
        let theirs: Vec<usize> =
            fastcdc::v2020::FastCDC::new(&data, params.min, params.avg, params.max)
                .map(|c| c.length)
                .collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn empty_input_gives_no_chunks() {
        assert!(chunks_of(&small(), &[]).is_empty());
    }

    proptest! {
        #[test]
        fn chunks_concatenate_to_the_input(seed in any::<u64>(), len in 0usize..60_000) {
            let data = pseudo_random(seed, len);
            let chunks = chunks_of(&small(), &data);
            prop_assert_eq!(chunks.concat(), data);
        }

        #[test]
        fn sizes_stay_within_bounds(seed in any::<u64>(), len in 1usize..60_000) {
            let params = small();
            let chunks = chunks_of(&params, &pseudo_random(seed, len));
            let (last, rest) = chunks.split_last().unwrap();
            for c in rest {
                prop_assert!(c.len() >= params.min as usize && c.len() <= params.max as usize);
            }
            prop_assert!(!last.is_empty() && last.len() <= params.max as usize);
        }

        #[test]
        fn boundaries_resynchronise_after_an_insertion(
            seed in any::<u64>(),
            at in 0usize..40_000,
            insert in proptest::collection::vec(any::<u8>(), 1..300),
        ) {
            let params = small();
            let data = pseudo_random(seed, 150_000);
            let mut edited = data[..at].to_vec();
            edited.extend_from_slice(&insert);
            edited.extend_from_slice(&data[at..]);
            let ends = |chunks: &[Vec<u8>]| {
                let mut pos = 0;
                chunks.iter().map(|c| { pos += c.len(); pos }).collect::<Vec<_>>()
            };
            // Far enough past the edit, the cut points are the same ones.
            let horizon = at + 8 * params.max as usize;
            let before: Vec<usize> =
                ends(&chunks_of(&params, &data)).into_iter().filter(|&e| e > horizon).collect();
            let after: Vec<usize> = ends(&chunks_of(&params, &edited))
                .into_iter()
                .map(|e| e - insert.len().min(e))
                .filter(|&e| e > horizon)
                .collect();
            prop_assert!(!before.is_empty());
            prop_assert_eq!(before, after);
        }
    }
}
