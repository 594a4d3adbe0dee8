//! Micro benchmarks of the import pipeline's stages on 8 MiB of
//! pseudo-random data: FastCDC, BLAKE3, SHA-256 (ring, which the import
//! uses, against the portable `sha2` crate), zstd level 3 and the
//! CRC-64/ISO the import records for tar-split.

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
    g.bench_function("crc64-iso-slice16", |b| {
        b.iter(|| containers_storage::manifest::tar_split::Crc64::of(&data))
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

/// With `CS_BENCH_TAR=<tar>`: importing that tar into a fresh pool (the
/// import computes every file's CRC-64), and writing its tar-split from
/// the stream, from the manifest with the recorded CRC-64s, and from the
/// manifest reading the pool.
fn tar_split(c: &mut Criterion) {
    use containers_storage::manifest::{import_tar, tar_split};
    let Some(path) = std::env::var_os("CS_BENCH_TAR") else {
        return;
    };
    let tar = std::fs::read(path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pool = containers_storage::ChunkPool::open(dir.path(), true).unwrap();
    let imported = import_tar(&tar[..], &pool, &()).unwrap();
    let mut g = c.benchmark_group("tar-split");
    g.throughput(Throughput::Bytes(tar.len() as u64));
    g.sample_size(10);
    g.bench_function("import (fresh pool)", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap();
            let pool = containers_storage::ChunkPool::open(dir.path(), true).unwrap();
            import_tar(&tar[..], &pool, &())
                .unwrap()
                .manifest
                .entries
                .len()
        })
    });
    g.bench_function("write from the stream", |b| {
        b.iter(|| tar_split::disassemble(&tar[..], std::io::sink()).unwrap())
    });
    g.bench_function("write from the manifest, recorded CRC-64s", |b| {
        b.iter(|| {
            let crcs = tar_split::ContentCrcs::Recorded(&imported.crc64);
            tar_split::write_tar_split(&imported.manifest, crcs, std::io::sink()).unwrap()
        })
    });
    g.bench_function("write from the manifest, CRC-64s from the pool", |b| {
        b.iter(|| {
            let crcs = tar_split::ContentCrcs::FromPool(&pool);
            tar_split::write_tar_split(&imported.manifest, crcs, std::io::sink()).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, stages, tar_split);
criterion_main!(benches);
