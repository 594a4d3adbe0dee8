//! The last-writer token in a lock file, in upstream's format: what lets
//! a process that takes a lock know whether what the lock guards changed
//! since it last looked.
//!
//! Every writer leaves a fresh token in the lock file's first
//! [`TOKEN_LEN`] bytes before it releases the lock; a reader compares
//! them with the token it saw when it last loaded the guarded files and
//! reloads when they differ. Go clients (upstream's `pkg/lockfile`) write
//! 64 bytes at offset 0 and compare the first 64 bytes they read, taking
//! a short read for a change; so the token here is opaque bytes (Go's is
//! binary), read and written the same way, and a file that holds fewer
//! bytes (empty: no writer yet; or an older version's 32 hex digits) is
//! simply a different token. The file is never truncated: Go never does
//! either.
//!
//! This module owns the token's bytes and nothing else: which lock a file
//! takes, and when, is its caller's.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{IoContext, Op, Result};

/// The token's length: upstream's `lastWriterIDSize`.
pub(crate) const TOKEN_LEN: usize = 64;

/// What a lock file's first [`TOKEN_LEN`] bytes held when read (fewer
/// when the file is shorter).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Token(Vec<u8>);

impl Token {
    /// Whether no writer has left a token yet (an empty file): such a
    /// token tells nothing, and a cache must not trust it.
    pub fn is_unset(&self) -> bool {
        self.0.is_empty()
    }
}

/// The token in lock file `file` (at `path`).
pub(crate) fn read(file: &File, path: &Path) -> Result<Token> {
    let mut bytes = [0u8; TOKEN_LEN];
    let mut len = 0;
    while len < TOKEN_LEN {
        match file.read_at(&mut bytes[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).at(Op::Read, path),
        }
    }
    Ok(Token(bytes[..len].to_vec()))
}

/// Writes a fresh token at the start of lock file `file` (at `path`) and
/// returns it (call with the exclusive lock held).
pub(crate) fn write(file: &File, path: &Path) -> Result<Token> {
    let token = fresh();
    file.write_all_at(&token, 0).at(Op::Write, path)?;
    Ok(Token(token.to_vec()))
}

/// A token no other call, here or in another process, makes: upstream's
/// layout (nanoseconds since the epoch and a per-process counter, both
/// little-endian `u64`, the process ID as a little-endian `u32`) padded
/// with random bytes, which also tell apart processes of different PID
/// namespaces.
fn fresh() -> [u8; TOKEN_LEN] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let mut token = [0u8; TOKEN_LEN];
    token[0..8].copy_from_slice(&nanos.to_le_bytes());
    token[8..16].copy_from_slice(&counter.to_le_bytes());
    token[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    getrandom::getrandom(&mut token[20..]).expect("the kernel's random source is available");
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_64_bytes_at_the_start_and_differs_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        assert!(read(&file, &path).unwrap().is_unset());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let t = write(&file, &path).unwrap();
            assert_eq!(read(&file, &path).unwrap(), t);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), TOKEN_LEN as u64);
            assert!(seen.insert(t.0));
        }
    }

    #[test]
    fn any_bytes_are_a_token_and_only_the_first_64_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        // Go's binary token, then bytes beyond it that Go ignores.
        let mut go: Vec<u8> = (0..=255u8).rev().take(TOKEN_LEN).collect();
        std::fs::write(&path, &go).unwrap();
        let file = File::open(&path).unwrap();
        let token = read(&file, &path).unwrap();
        assert_eq!(token.0, go);
        go.extend_from_slice(b"\xff\xfe trailing");
        std::fs::write(&path, &go).unwrap();
        assert_eq!(read(&file, &path).unwrap(), token);
        // An older version's 32 hex digits are a token too.
        std::fs::write(&path, "0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(read(&file, &path).unwrap().0.len(), 32);
    }
}
