//! Facts about the process that change how layers are mounted: whether
//! it runs rootless (so overlay metadata lives in `user.overlay.*`) and
//! whether SELinux is on (so mount labels apply).

use std::sync::OnceLock;

/// Whether this process lacks the host's root: not uid 0, or uid 0 of a
/// user namespace (whose `uid_map` does not map the whole range). Such a
/// process cannot set `trusted.*` attributes; overlayfs then reads
/// `user.overlay.*` ones, with the `userxattr` mount option.
pub(crate) fn is_rootless() -> bool {
    static ROOTLESS: OnceLock<bool> = OnceLock::new();
    *ROOTLESS.get_or_init(|| {
        if !nix::unistd::geteuid().is_root() {
            return true;
        }
        let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        let fields: Vec<&str> = map.split_whitespace().collect();
        fields != ["0", "0", "4294967295"]
    })
}

/// Whether SELinux is enabled; mount labels are ignored otherwise, as
/// upstream ignores them.
pub(crate) fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}
