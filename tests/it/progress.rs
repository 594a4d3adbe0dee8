//! The progress bar: drawn on stderr when it is a terminal, absent when it
//! is not. `script(1)` gives the command a pseudo-terminal.

use crate::common;

use std::process::Command;

fn big_tar() -> Vec<u8> {
    let mut t = common::tar::TarBuilder::new();
    let mut x = 0x1234_5678_9abc_def0u64;
    for i in 0..24 {
        let content: Vec<u8> = (0..(2 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        t.file(&format!("f{i}"), &common::tar::Meta::default(), &content);
    }
    t.finish()
}

#[test]
fn import_shows_progress_on_a_terminal_only() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: script(1) is not installed");
        return;
    }
    let cs = common::Cs::new();
    let tar = cs.dir.path().join("big.tar");
    std::fs::write(&tar, big_tar()).unwrap();

    // Not a terminal: nothing on stderr.
    let out = cs.run(&["import-layer", "-f", tar.to_str().unwrap()], None);
    common::expect_status(&out, &["import-layer"], 0);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A terminal: the bar reports chunks.
    let cmd = format!(
        "{} --graph {} --run {} --storage-driver vfs import-layer -f {} >/dev/null",
        env!("CARGO_BIN_EXE_containers-storage"),
        cs.graph().display(),
        cs.run_root().display(),
        tar.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("CONTAINERS_STORAGE_CONF", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("chunks:") && screen.contains("reused"),
        "{screen}"
    );
}

/// Runs `shell` (a shell command line) under `script(1)`, which gives it
/// a pseudo-terminal; returns its exit code and the screen, or `None`
/// (with the reason printed) when `script` is missing.
fn on_terminal(cs: &common::Cs, shell: &str) -> Option<(Option<i32>, String)> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: script(1) is not installed");
        return None;
    }
    let out = Command::new("script")
        .args(["-qec", shell, "/dev/null"])
        .current_dir(cs.dir.path())
        .env("CONTAINERS_STORAGE_CONF", "/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    Some((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// The command line of the binary on `cs`'s store, for a shell.
fn binary(cs: &common::Cs) -> String {
    format!(
        "{} --graph {} --run {} --storage-driver vfs",
        env!("CARGO_BIN_EXE_containers-storage"),
        cs.graph().display(),
        cs.run_root().display()
    )
}

/// What indicatif prints for `bytes` between 1 MiB and 1 GiB.
fn mebibytes(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / 1048576.0)
}

#[test]
fn a_file_shows_percentage_total_and_time_left_and_a_pipe_bytes_and_rate() {
    let cs = common::Cs::new();
    // Half random, half zeros: the gzip file is about half the tar, so
    // the total shown tells which one the bar counts.
    let mut t = common::tar::TarBuilder::new();
    for i in 0..12 {
        let random = common::random_bytes(i, 2 << 20);
        t.file(&format!("r{i}"), &common::tar::Meta::default(), &random);
        t.file(
            &format!("z{i}"),
            &common::tar::Meta::default(),
            &vec![0; 2 << 20],
        );
    }
    let tar = t.finish();
    let gz = common::compress_with("gzip", &tar);
    assert!(gz.len() < tar.len() * 2 / 3);
    std::fs::write(cs.dir.path().join("big.tar.gz"), &gz).unwrap();
    let total = format!("% of {} (", mebibytes(gz.len()));

    for how in ["-f big.tar.gz", "< big.tar.gz"] {
        let shell = format!("{} import-layer {how} >/dev/null", binary(&cs));
        let Some((code, screen)) = on_terminal(&cs, &shell) else {
            return;
        };
        assert_eq!(code, Some(0), "{how}: {screen}");
        assert!(
            screen.contains(&total) && screen.contains(" left)") && screen.contains("chunks:"),
            "{how}: no percentage of {total:?} and time left:\n{screen}"
        );
    }

    let shell = format!("cat big.tar.gz | {} import-layer >/dev/null", binary(&cs));
    let Some((code, screen)) = on_terminal(&cs, &shell) else {
        return;
    };
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("B/s)"), "no rate:\n{screen}");
    assert!(
        !screen.contains("% of") && !screen.contains(" left"),
        "a pipe's size is not known:\n{screen}"
    );
}
