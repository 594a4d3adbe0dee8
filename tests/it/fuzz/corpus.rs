//! The fuzz corpus and run settings: seed and regression inputs under
//! `tests/it/fuzz/corpus/<target>/`, how many cases to run (`CS_FUZZ_CASES`),
//! the proptest seed (`CS_FUZZ_SEED`), and where a failing input is saved
//! so that it can be added to the corpus.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use proptest::test_runner::{Config, RngSeed, TestRunner};

/// `tests/it/fuzz/corpus/<target>`.
pub fn dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fuzz/corpus")
        .join(target)
}

/// Every file of a target's corpus, sorted by name: (name, bytes).
pub fn load(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = dir(target);
    let mut files: Vec<(String, Vec<u8>)> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| {
                let e = e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
                let name = e.file_name().to_string_lossy().into_owned();
                let bytes = std::fs::read(e.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
                (name, bytes)
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    files.sort();
    files
}

/// A runner doing `default_cases` cases (or `CS_FUZZ_CASES`) from a fixed
/// seed (or `CS_FUZZ_SEED`), so that CI runs the same inputs every time
/// while a long local run can explore others. Failures are not persisted
/// by proptest: minimized crashers go to the corpus by hand.
pub fn runner(default_cases: u32) -> TestRunner {
    let number = |var: &str| {
        std::env::var(var).ok().map(|v| {
            v.trim()
                .parse::<u64>()
                .unwrap_or_else(|e| panic!("{var}={v:?}: {e}"))
        })
    };
    let cases = number("CS_FUZZ_CASES").map_or(default_cases, |n| n as u32);
    let seed = number("CS_FUZZ_SEED").unwrap_or(0x0c5_f022);
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        // Shrinking replays whole store operations; a few hundred steps
        // find a small input without running for minutes.
        max_shrink_iters: 400,
        ..Config::default()
    })
}

/// Runs one case; if it panics (in the library or in a failed check),
/// saves `input` under the build's temporary directory first, so that a
/// crasher found by a long run can be added to the corpus.
pub fn guard<T>(target: &str, input: &[u8], case: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(case)) {
        Ok(value) => value,
        Err(panic) => {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("fuzz-crashers")
                .join(target);
            let name = blake3::hash(input).to_hex()[..16].to_string();
            let saved =
                std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(&name), input));
            match saved {
                Ok(()) => eprintln!("failing input saved as {}", dir.join(&name).display()),
                Err(e) => eprintln!("could not save the failing input: {e}"),
            }
            resume_unwind(panic)
        }
    }
}
