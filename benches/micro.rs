//! Micro benchmarks of the import pipeline's stages on 8 MiB of
//! pseudo-random data: FastCDC, BLAKE3, SHA-256 (ring, which the import
//! uses, against the portable `sha2` crate) and zstd level 3.

// Benchmarks may unwrap (the crate's lints are for library code).
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn data() -> Vec<u8> {
    let mut x = 0x9e3779b97f4a7c15u64;
    (0..8 << 20)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half random, half text-like, so zstd has something to do.
            if (i / 4096) % 2 == 0 {
                x as u8
            } else {
                b"abcdefgh"[(x % 8) as usize]
            }
        })
        .collect()
}

fn stages(c: &mut Criterion) {
    let data = data();
    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("fastcdc-v2020-16-64-256k", |b| {
        b.iter(|| fastcdc::v2020::FastCDC::new(&data, 16 << 10, 64 << 10, 256 << 10).count())
    });
    g.bench_function("blake3", |b| b.iter(|| blake3::hash(&data)));
    g.bench_function("sha256-ring", |b| {
        b.iter(|| containers_storage::manifest::Sha256::digest(&data))
    });
    g.bench_function("sha256-sha2-crate", |b| {
        use sha2::Digest;
        b.iter(|| sha2::Sha256::digest(&data))
    });
    g.bench_function("zstd-3-1MiB-frames", |b| {
        b.iter(|| {
            data.chunks(1 << 20)
                .map(|f| zstd::bulk::compress(f, 3).unwrap().len())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
