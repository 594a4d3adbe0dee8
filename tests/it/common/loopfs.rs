//! Loop-mounted filesystems for tests that need a particular one.

use std::path::PathBuf;
use std::process::Command;

/// A loop-mounted XFS with reflinks, unmounted on drop.
pub struct Xfs {
    dir: tempfile::TempDir,
}

impl Xfs {
    /// A fresh XFS of `size` bytes (sparse); `None`, with the reason
    /// printed, where `mkfs.xfs` is missing (CI must have it).
    pub fn mount(size: u64) -> Option<Xfs> {
        if Command::new("mkfs.xfs").arg("-V").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "CI must have xfsprogs");
            eprintln!("skipped: mkfs.xfs is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("xfs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(size)
            .unwrap();
        let ok = |c: &mut Command| {
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ok(Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&image));
        ok(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt));
        Some(Xfs { dir })
    }

    /// Where it is mounted.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.root()).status();
    }
}
