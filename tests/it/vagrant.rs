//! The VM set-up in `vagrant/`: the Vagrantfile validates, and the
//! provisioning script (plain shell, also run for real by CI) knows its
//! steps. CI installs vagrant, so there this test runs; elsewhere it says
//! why it skips.

use std::path::Path;
use std::process::Command;

fn vagrant_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/vagrant"))
}

#[test]
fn vagrantfile_validates_with_the_default_provider() {
    if Command::new("vagrant").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "vagrant must be installed in CI (.ci/run installs it)"
        );
        eprintln!("skipped: vagrant is not installed (apt-get install vagrant vagrant-libvirt)");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let out = Command::new("vagrant")
        .arg("validate")
        .current_dir(vagrant_dir())
        .env("VAGRANT_CWD", vagrant_dir())
        .env("VAGRANT_HOME", home.path())
        .env_remove("VAGRANT_PROVIDER")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "vagrant validate failed:\n{text}");
    assert!(text.contains("validated successfully"), "{text}");
}

#[test]
fn a_broken_vagrantfile_does_not_validate() {
    if Command::new("vagrant").arg("--version").output().is_err() {
        eprintln!("skipped: vagrant is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(vagrant_dir().join("Vagrantfile")).unwrap();
    std::fs::write(
        dir.path().join("Vagrantfile"),
        original.replace("config.vm.box = ", "config.vm.no_such_setting = "),
    )
    .unwrap();
    std::fs::copy(
        vagrant_dir().join("provision.sh"),
        dir.path().join("provision.sh"),
    )
    .unwrap();
    let out = Command::new("vagrant")
        .arg("validate")
        .current_dir(dir.path())
        .env("VAGRANT_CWD", dir.path())
        .env("VAGRANT_HOME", dir.path().join("home"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a Vagrantfile with an unknown setting validated"
    );
}

#[test]
fn provisioning_dry_run_lists_the_suite() {
    let out = Command::new("bash")
        .arg(vagrant_dir().join("provision.sh"))
        .arg("--dry-run")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("+ make -C {} test", env!("CARGO_MANIFEST_DIR"))),
        "{text}"
    );
    assert!(text.trim_end().ends_with("provision: done"), "{text}");
}
