//! `unshare`: a command (by default the user's shell) in a user namespace.

use std::ffi::OsString;

use super::{Failure, Outcome};

pub fn unshare(command: &[OsString]) -> Outcome {
    let argv = match command {
        [] => vec![std::env::var_os("SHELL")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".into())],
        given => given.to_vec(),
    };
    let status = containers_storage::userns::run_in_user_namespace(&argv)?;
    if status.success() {
        return Ok(0);
    }
    // Upstream's words for a command that failed.
    Err(Failure::usage(match status.code() {
        Some(code) => format!("exit status {code}"),
        None => status.to_string(),
    }))
}
