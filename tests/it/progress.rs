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
        .env("CONTAINERS_STORAGE_CONF", "/nonexistent")
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
