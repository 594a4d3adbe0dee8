//! The Debian image dataset (`scripts/make-dataset.sh`, `make dataset`):
//! where it is, and the one decision every dataset test makes, "the
//! dataset, or a skip with the reason".
//!
//! A test skips (printing why) when the directory does not hold every tar,
//! whatever `CS_DEBIAN_TARS` says. It fails only in CI (`CI` set) as root:
//! CI runs `make test` as root with Debian's mirrors reachable, so there
//! `make dataset` builds it and its absence is a fault of the set-up.

use std::path::{Path, PathBuf};

/// Every tar `scripts/make-dataset.sh` writes.
pub const TARS: [&str; 12] = [
    "bookworm-base.tar",
    "bookworm-python3.diff.tar",
    "bookworm-python3.full.tar",
    "bookworm-curl.diff.tar",
    "bookworm-curl.full.tar",
    "bookworm-slim.diff.tar",
    "trixie-base.tar",
    "trixie-python3.diff.tar",
    "trixie-python3.full.tar",
    "trixie-curl.diff.tar",
    "trixie-curl.full.tar",
    "trixie-slim.diff.tar",
];

/// How to get the dataset, for skip and failure messages.
pub const HOW_TO_BUILD: &str =
    "`make dataset` builds it (needs root and Debian's mirrors), or set CS_DEBIAN_TARS to a directory of its tars";

/// The directory the dataset is looked for in: `$CS_DEBIAN_TARS`, else
/// `target/dataset/tars` in the repository (where `make dataset` puts it).
pub fn location() -> PathBuf {
    std::env::var_os("CS_DEBIAN_TARS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dataset/tars"))
}

/// Why `dir` is not a usable dataset, or `None` if it holds every tar.
pub fn missing(dir: &Path) -> Option<String> {
    if !dir.is_dir() {
        return Some(format!("{} is not a directory", dir.display()));
    }
    let absent: Vec<&str> = TARS
        .iter()
        .copied()
        .filter(|name| !dir.join(name).is_file())
        .collect();
    match absent.len() {
        0 => None,
        n if n == TARS.len() => Some(format!("{} holds none of its tars", dir.display())),
        _ => Some(format!("{} lacks {}", dir.display(), absent.join(", "))),
    }
}

/// The dataset's directory, or `None` with the reason printed; in CI as
/// root, a failure saying how to build it.
pub fn tars() -> Option<PathBuf> {
    let dir = location();
    let Some(reason) = missing(&dir) else {
        return Some(dir);
    };
    let in_ci = std::env::var_os("CI").is_some();
    assert!(
        !(in_ci && nix::unistd::geteuid().is_root()),
        "the Debian dataset: {reason}; CI runs as root and must have it: {HOW_TO_BUILD}"
    );
    eprintln!("skipped: the Debian dataset: {reason}; {HOW_TO_BUILD}");
    None
}
