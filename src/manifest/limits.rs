//! What the kernel refuses when an entry is made, checked at import so
//! that a layer that could never be materialized is refused there, naming
//! the entry: device numbers that do not fit a `dev_t`, symlink targets
//! `symlink(2)` rejects, and xattrs `setxattr(2)` rejects (name and value
//! sizes, the formats of `security.capability` and POSIX ACLs). Also the
//! xattrs a layer may never set on what is materialized: overlayfs's own
//! and the host's SELinux label.
//!
//! Path lengths are checked by `path::check_lengths`.

use super::model::{EntryKind, Xattr};
use super::path::PATH_MAX;

/// Whether the materializer never writes xattr `name` from a layer:
/// overlayfs's own (`trusted.overlay.*`, and `user.overlay.*` that
/// rootless overlay mounts read), which would make a lower directory
/// opaque or redirect it elsewhere, and the host's SELinux label (which
/// upstream ignores in layers too). The raw tar keeps them.
pub(crate) fn never_written(name: &str) -> bool {
    name.starts_with("trusted.overlay.")
        || name.starts_with("user.overlay.")
        || name == "security.selinux"
}

/// The largest device major number `mknod(2)` takes (12 bits).
const MAJOR_MAX: u32 = (1 << 12) - 1;
/// The largest device minor number `mknod(2)` takes (20 bits).
const MINOR_MAX: u32 = (1 << 20) - 1;
/// The longest xattr name (`XATTR_NAME_MAX`).
const XATTR_NAME_MAX: usize = 255;
/// The largest xattr value (`XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 65536;

/// Refuses device numbers that do not fit the kernel's `dev_t`.
pub(crate) fn check_device(major: u32, minor: u32) -> Result<(), String> {
    if major > MAJOR_MAX || minor > MINOR_MAX {
        return Err(format!(
            "device number {major}:{minor} does not fit (at most {MAJOR_MAX}:{MINOR_MAX})"
        ));
    }
    Ok(())
}

/// Refuses a symlink target `symlink(2)` rejects: empty, longer than a
/// path may be, or holding a NUL byte.
pub(crate) fn check_symlink_target(target: &[u8]) -> Result<(), String> {
    if target.is_empty() {
        return Err("symlink target is empty".into());
    }
    if target.contains(&0) {
        return Err("symlink target holds a NUL byte".into());
    }
    if target.len() > PATH_MAX {
        return Err(format!(
            "symlink target of {} bytes is longer than the {PATH_MAX} a path may have",
            target.len()
        ));
    }
    Ok(())
}

/// Refuses an xattr `setxattr(2)` rejects on an entry of `kind`. Names
/// in namespaces the kernel does not know are let through: setting them
/// fails with `EOPNOTSUPP`, which the materializer skips.
pub(crate) fn check_xattr(kind: EntryKind, x: &Xattr) -> Result<(), String> {
    let name = x.name.as_str();
    let bad = |why: String| Err(format!("xattr {name:?}: {why}"));
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return bad(format!(
            "a name must have 1 to {XATTR_NAME_MAX} bytes, not {}",
            name.len()
        ));
    }
    if name.contains('\0') {
        return bad("the name holds a NUL byte".into());
    }
    if x.value.len() > XATTR_SIZE_MAX {
        return bad(format!(
            "value of {} bytes is larger than the {XATTR_SIZE_MAX} an xattr may hold",
            x.value.len()
        ));
    }
    if ["user.", "trusted.", "security."].contains(&name) {
        return bad("the name is only a namespace".into());
    }
    match name {
        "security.capability" => check_capability(&x.value).or_else(bad),
        "system.posix_acl_access" => check_acl(&x.value).or_else(bad),
        "system.posix_acl_default" if kind != EntryKind::Dir => {
            bad("a default ACL is only for directories".into())
        }
        "system.posix_acl_default" => check_acl(&x.value).or_else(bad),
        _ => Ok(()),
    }
}

const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;
/// Sizes of `struct vfs_cap_data` (revision 2) and `vfs_ns_cap_data` (3).
const XATTR_CAPS_SZ_2: usize = 20;
const XATTR_CAPS_SZ_3: usize = 24;

/// A `security.capability` value as the kernel takes it
/// (`cap_convert_nscap`): revision 2 in 20 bytes or revision 3 in 24,
/// with no flag but "effective"; revision 3's root ID must be a valid
/// user ID. Revision 1 (12 bytes) is refused since Linux 4.14.
fn check_capability(value: &[u8]) -> Result<(), String> {
    let word =
        |i: usize| -> u32 { u32::from_le_bytes(value[i..i + 4].try_into().expect("4 bytes")) };
    let revision = match value.len() {
        XATTR_CAPS_SZ_2 | XATTR_CAPS_SZ_3 => word(0) & !VFS_CAP_FLAGS_EFFECTIVE,
        n => {
            return Err(format!(
                "a capability set has {XATTR_CAPS_SZ_2} or {XATTR_CAPS_SZ_3} bytes, not {n}"
            ))
        }
    };
    let wanted = match value.len() {
        XATTR_CAPS_SZ_2 => VFS_CAP_REVISION_2,
        _ => VFS_CAP_REVISION_3,
    };
    if revision != wanted {
        return Err(format!(
            "capability header {:#010x} is not revision {} as its size says",
            word(0),
            wanted >> 24
        ));
    }
    if value.len() == XATTR_CAPS_SZ_3 && word(20) == u32::MAX {
        return Err("capability root ID -1 is not a user ID".into());
    }
    Ok(())
}

const POSIX_ACL_XATTR_VERSION: u32 = 2;
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;

/// A POSIX ACL xattr as the kernel takes it (`posix_acl_from_xattr`,
/// `posix_acl_valid`): a header, then 8-byte entries (tag, permissions,
/// ID) in the order owner, named users, owning group, named groups,
/// mask (required with named entries), others. A version other than 2
/// is "not supported", which the materializer skips.
fn check_acl(value: &[u8]) -> Result<(), String> {
    if value.len() < 4 {
        return Err(format!(
            "an ACL has a 4-byte header, not {} bytes",
            value.len()
        ));
    }
    let version = u32::from_le_bytes(value[..4].try_into().expect("4 bytes"));
    if version != POSIX_ACL_XATTR_VERSION {
        return Ok(());
    }
    if (value.len() - 4) % 8 != 0 {
        return Err(format!(
            "an ACL has a 4-byte header and 8-byte entries, not {} bytes",
            value.len()
        ));
    }
    if value.len() == 4 {
        // No entries: the kernel takes it as removing the ACL.
        return Ok(());
    }
    let invalid = || Err("the ACL's entries are not what the kernel takes".to_string());
    #[derive(PartialEq)]
    enum State {
        UserObj,
        User,
        Group,
        Other,
        Done,
    }
    let mut state = State::UserObj;
    let mut needs_mask = false;
    for entry in value[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([entry[0], entry[1]]);
        let perm = u16::from_le_bytes([entry[2], entry[3]]);
        let id = u32::from_le_bytes(entry[4..8].try_into().expect("4 bytes"));
        if perm & !0o7 != 0 {
            return invalid();
        }
        state = match (tag, state) {
            (ACL_USER_OBJ, State::UserObj) => State::User,
            (ACL_USER, State::User) if id != u32::MAX => {
                needs_mask = true;
                State::User
            }
            (ACL_GROUP_OBJ, State::User) => State::Group,
            (ACL_GROUP, State::Group) if id != u32::MAX => {
                needs_mask = true;
                State::Group
            }
            (ACL_MASK, State::Group) => State::Other,
            (ACL_OTHER, State::Other) => State::Done,
            (ACL_OTHER, State::Group) if !needs_mask => State::Done,
            _ => return invalid(),
        };
    }
    match state {
        State::Done => Ok(()),
        _ => invalid(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut out = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&perm.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    /// Capability and ACL values, each with whether the materializer can
    /// set it (the kernel takes it, or says it does not support it).
    fn samples() -> Vec<(&'static str, Vec<u8>, bool)> {
        let c = "security.capability";
        let a = "system.posix_acl_access";
        let (uo, u, go, g, m, o) = (
            ACL_USER_OBJ,
            ACL_USER,
            ACL_GROUP_OBJ,
            ACL_GROUP,
            ACL_MASK,
            ACL_OTHER,
        );
        vec![
            (c, cap(&[0x0200_0000, 0, 0, 0, 0]), true),
            (c, cap(&[0x0200_0001, 0x20, 0, 0, 0]), true),
            (c, cap(&[0x0300_0000, 0, 0, 0, 0, 0]), true),
            (c, cap(&[0x0300_0001, 1, 0, 0, 0, 1000]), true),
            (c, cap(&[0x0300_0000, 0, 0, 0, 0, u32::MAX]), false),
            (c, cap(&[0x0100_0000, 0, 0]), false),
            (c, vec![1, 0, 0, 2, 0, 32, 0, 0], false),
            (c, cap(&[0x0200_0002, 0, 0, 0, 0]), false),
            (c, cap(&[0x0300_0000, 0, 0, 0, 0]), false),
            (c, cap(&[0x0200_0000, 0, 0, 0, 0, 0]), false),
            (c, Vec::new(), false),
            (a, acl(&[(uo, 6, 0), (go, 4, 0), (o, 4, 0)]), true),
            (
                a,
                acl(&[
                    (uo, 7, 0),
                    (u, 5, 1000),
                    (go, 4, 0),
                    (g, 4, 50),
                    (m, 7, 0),
                    (o, 0, 0),
                ]),
                true,
            ),
            (a, acl(&[]), true),
            (
                a,
                acl(&[(uo, 6, 0), (u, 5, 1000), (go, 4, 0), (o, 4, 0)]),
                false,
            ),
            (a, acl(&[(go, 4, 0), (uo, 6, 0), (o, 4, 0)]), false),
            (a, acl(&[(uo, 6, 0), (go, 4, 0)]), false),
            (a, acl(&[(uo, 8, 0), (go, 4, 0), (o, 4, 0)]), false),
            (
                a,
                acl(&[(uo, 6, 0), (go, 4, 0), (0x40, 4, 0), (o, 4, 0)]),
                false,
            ),
            (
                a,
                acl(&[
                    (uo, 6, 0),
                    (u, 4, u32::MAX),
                    (go, 4, 0),
                    (m, 7, 0),
                    (o, 4, 0),
                ]),
                false,
            ),
            (a, vec![2, 0, 0, 0, 1], false),
            (a, [&acl(&[(uo, 6, 0)])[..], &[3, 0, 0, 0]].concat(), false),
            (a, vec![1, 0, 0, 0, 9], true),
        ]
    }

    #[test]
    fn capabilities_and_acls_are_judged_as_the_kernel_judges_them() {
        for (name, value, takes) in samples() {
            let x = Xattr {
                name: name.into(),
                value: value.clone(),
            };
            assert_eq!(
                check_xattr(EntryKind::File, &x).is_ok(),
                takes,
                "{name} {value:02x?}"
            );
        }
    }

    /// The same samples against the running kernel, where it can tell
    /// (root, and a filesystem with ACLs).
    #[test]
    fn the_kernel_agrees() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: setting security.capability needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let c = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).unwrap();
        let set = |name: &str, value: &[u8]| {
            let n = std::ffi::CString::new(name).unwrap();
            crate::sys::lsetxattr(&c, &n, value).map_err(std::io::Error::from)
        };
        let plain_acl = acl(&[
            (ACL_USER_OBJ, 6, 0),
            (ACL_GROUP_OBJ, 4, 0),
            (ACL_OTHER, 4, 0),
        ]);
        let acls = set("system.posix_acl_access", &plain_acl).is_ok();
        if !acls {
            eprintln!("skipped the ACL samples: the filesystem has no ACLs");
        }
        for (name, value, takes) in samples() {
            if name.starts_with("system.") && !acls {
                continue;
            }
            let result = set(name, &value);
            let set_or_skipped = match &result {
                Ok(()) => true,
                Err(e) => e.raw_os_error() == Some(libc::EOPNOTSUPP),
            };
            assert_eq!(set_or_skipped, takes, "{name} {value:02x?}: {result:?}");
        }
    }

    #[test]
    fn names_sizes_devices_and_symlinks() {
        let x = |name: &str, len: usize| Xattr {
            name: name.into(),
            value: vec![0; len],
        };
        let file = EntryKind::File;
        assert!(check_xattr(file, &x("user.a", 65536)).is_ok());
        assert!(check_xattr(file, &x("user.a", 65537)).is_err());
        assert!(check_xattr(file, &x(&format!("user.{}", "n".repeat(250)), 1)).is_ok());
        assert!(check_xattr(file, &x(&format!("user.{}", "n".repeat(251)), 1)).is_err());
        assert!(check_xattr(file, &x("user.", 1)).is_err());
        assert!(check_xattr(file, &x("", 1)).is_err());
        assert!(check_xattr(file, &x("other.namespace", 1)).is_ok());
        let default_acl = Xattr {
            name: "system.posix_acl_default".into(),
            value: acl(&[
                (ACL_USER_OBJ, 6, 0),
                (ACL_GROUP_OBJ, 4, 0),
                (ACL_OTHER, 4, 0),
            ]),
        };
        assert!(check_xattr(EntryKind::Dir, &default_acl).is_ok());
        assert!(check_xattr(file, &default_acl).is_err());
        assert!(check_device(4095, 1_048_575).is_ok());
        assert!(check_device(4096, 0).is_err());
        assert!(check_device(0, 1_048_576).is_err());
        assert!(check_symlink_target(b"x").is_ok());
        assert!(check_symlink_target(b"").is_err());
        assert!(check_symlink_target(&[b'a'; 4095]).is_ok());
        assert!(check_symlink_target(&[b'a'; 4096]).is_err());
        assert!(check_symlink_target(b"a\0b").is_err());
    }

    #[test]
    fn overlay_and_selinux_xattrs_are_never_written() {
        for name in [
            "trusted.overlay.opaque",
            "trusted.overlay.redirect",
            "user.overlay.metacopy",
            "security.selinux",
        ] {
            assert!(never_written(name), "{name}");
        }
        for name in ["trusted.overlayx", "user.note", "security.capability"] {
            assert!(!never_written(name), "{name}");
        }
    }
}
