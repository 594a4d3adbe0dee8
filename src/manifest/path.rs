//! Normalisation of tar entry paths (the layer root is a jail), the
//! kernel's limits on them, the names whiteouts and opaque markers give,
//! and the few ways the crate takes a normalised path apart (its parent
//! and name, its ancestors, its depth). Paths are relative to the layer
//! root, `/`-separated, and the empty path is the root.

/// The prefix of a whiteout's name: `.wh.NAME` hides `NAME`.
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The name of an opaque marker: `DIR/.wh..wh..opq` hides what the lower
/// layers hold in `DIR`.
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Names starting with this are reserved for the format (`.wh..wh.opq`
/// and the like), never whiteouts.
const META_PREFIX: &[u8] = b".wh..wh.";

/// The longest name of one path component (`NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;
/// The longest path the kernel takes: `PATH_MAX` less its NUL.
pub(crate) const PATH_MAX: usize = 4095;

/// Normalises a tar path or hard link target: drops empty and `.`
/// components and a leading `/`, resolves `..` lexically, and refuses any
/// path that leaves the root or holds a NUL byte.
pub(crate) fn normalize(raw: &[u8]) -> Result<Vec<u8>, String> {
    if raw.contains(&0) {
        return Err(format!("path {:?} contains a NUL byte", lossy(raw)));
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(format!("path {:?} escapes the layer root", lossy(raw)));
                }
            }
            name => parts.push(name),
        }
    }
    Ok(parts.join(&b'/'))
}

/// Whether `path` is what [`normalize`] makes of it, without building
/// the normalised copy: no NUL byte, and no empty, `.` or `..` component
/// (the empty path, the root, is normalised).
pub(crate) fn is_normalized(path: &[u8]) -> bool {
    path.is_empty()
        || (!path.contains(&0)
            && path
                .split(|&b| b == b'/')
                .all(|c| !matches!(c, b"" | b"." | b"..")))
}

/// Refuses a normalised path the kernel would refuse to create: a
/// component longer than [`NAME_MAX`] or a path longer than [`PATH_MAX`].
pub(crate) fn check_lengths(path: &[u8]) -> Result<(), String> {
    if path.len() > PATH_MAX {
        return Err(format!(
            "path {:?}... is {} bytes long, more than the {PATH_MAX} a path may have",
            lossy(&path[..64]),
            path.len()
        ));
    }
    match path.split(|&b| b == b'/').find(|c| c.len() > NAME_MAX) {
        Some(long) => Err(format!(
            "path {:?} has a component of {} bytes, more than the {NAME_MAX} a name may have",
            lossy(path),
            long.len()
        )),
        None => Ok(()),
    }
}

/// `a/b/c` -> (`a/b`, `c`); `c` -> (``, `c`): the directory a path is in
/// (the empty root for a name in the root) and its own name.
pub(crate) fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    }
}

/// The directory `path` is in, `None` for a name in the root (or the
/// root itself).
pub(crate) fn parent(path: &[u8]) -> Option<&[u8]> {
    path.iter().rposition(|&b| b == b'/').map(|i| &path[..i])
}

/// The directories above `path`, shallowest first, the root left out:
/// `a/b/c` -> `a`, `a/b`.
pub(crate) fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter()
        .enumerate()
        .filter(|(_, &b)| b == b'/')
        .map(move |(i, _)| &path[..i])
}

/// How many directories below the root `path` lies: 0 for a name in the
/// root.
pub(crate) fn depth(path: &[u8]) -> usize {
    path.iter().filter(|&&b| b == b'/').count()
}

/// Whether a tar entry's name makes it a whiteout (`.wh.NAME`, but not a
/// name reserved for the format such as the opaque marker).
pub(crate) fn is_whiteout_name(name: &[u8]) -> bool {
    name.starts_with(WHITEOUT_PREFIX) && !name.starts_with(META_PREFIX)
}

/// The name a whiteout hides: `.wh.NAME` -> `NAME` in the same directory.
pub fn whiteout_target(path: &[u8]) -> Vec<u8> {
    let (dir, name) = split_last(path);
    // The decoder only lets through names that start with `.wh.`; the
    // slicing still never goes past the end.
    let hidden = name.get(WHITEOUT_PREFIX.len()..).unwrap_or_default();
    in_dir(dir, hidden)
}

/// The whiteout that hides `path`: `NAME` -> `.wh.NAME` in the same
/// directory.
pub(crate) fn whiteout_for(path: &[u8]) -> Vec<u8> {
    let (dir, name) = split_last(path);
    in_dir(dir, &[WHITEOUT_PREFIX, name].concat())
}

/// The directory an opaque marker (`DIR/.wh..wh..opq`) applies to.
pub fn opaque_dir(path: &[u8]) -> &[u8] {
    split_last(path).0
}

/// The opaque marker of directory `dir`: `DIR/.wh..wh..opq`.
pub(crate) fn opaque_marker(dir: &[u8]) -> Vec<u8> {
    in_dir(dir, OPAQUE_MARKER)
}

/// `name` in directory `dir` (the root when empty).
fn in_dir(dir: &[u8], name: &[u8]) -> Vec<u8> {
    match dir.is_empty() {
        true => name.to_vec(),
        false => [dir, b"/", name].concat(),
    }
}

/// A path for messages.
pub(crate) fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_harmless_paths() {
        assert_eq!(normalize(b"./usr//bin/./ls").unwrap(), b"usr/bin/ls");
        assert_eq!(normalize(b"/etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"a/b/../c").unwrap(), b"a/c");
        assert_eq!(normalize(b"./").unwrap(), b"");
    }

    #[test]
    fn refuses_escapes() {
        for bad in [&b"../x"[..], b"a/../../x", b"/../x", b"a/b/../../../etc"] {
            let err = normalize(bad).unwrap_err();
            assert!(err.contains("escapes the layer root"), "{err}");
        }
    }

    #[test]
    fn is_normalized_agrees_with_normalize() {
        for path in [
            &b""[..],
            b"a",
            b"a/b",
            b"/a",
            b"a/",
            b"a//b",
            b"./a",
            b"a/.",
            b"a/..",
            b"..",
            b"a/../b",
            b".a/..b/...",
            b"a\0b",
            b"a\0",
        ] {
            let same = normalize(path).is_ok_and(|n| n == path);
            assert_eq!(
                is_normalized(path),
                same,
                "{:?}",
                String::from_utf8_lossy(path)
            );
        }
    }

    #[test]
    fn lengths_past_the_kernel_limits_are_refused() {
        let name = vec![b'n'; NAME_MAX];
        assert!(check_lengths(&name).is_ok());
        let long = vec![b'n'; NAME_MAX + 1];
        let err = check_lengths(&[b"a/", long.as_slice(), b"/b"].concat()).unwrap_err();
        assert!(err.contains("component of 256 bytes"), "{err}");
        let mut path = Vec::new();
        while path.len() + 101 <= PATH_MAX {
            path.extend_from_slice(&[b'p'; 100]);
            path.push(b'/');
        }
        path.resize(PATH_MAX, b'q');
        assert!(check_lengths(&path).is_ok());
        path.push(b'q');
        let err = check_lengths(&path).unwrap_err();
        assert!(err.contains("4096 bytes long"), "{err}");
    }

    #[test]
    fn whiteout_and_opaque_names() {
        assert_eq!(whiteout_target(b"a/b/.wh.c"), b"a/b/c");
        assert_eq!(whiteout_target(b".wh.c"), b"c");
        assert_eq!(whiteout_for(b"a/b/c"), b"a/b/.wh.c");
        assert_eq!(whiteout_for(b"c"), b".wh.c");
        assert_eq!(opaque_dir(b"d/.wh..wh..opq"), b"d");
        assert_eq!(opaque_dir(b".wh..wh..opq"), b"");
        assert_eq!(opaque_marker(b"d/e"), b"d/e/.wh..wh..opq");
        assert_eq!(opaque_marker(b""), b".wh..wh..opq");
        assert!(is_whiteout_name(b".wh.x") && is_whiteout_name(b".wh."));
        assert!(!is_whiteout_name(b".wh..wh..opq") && !is_whiteout_name(b"x.wh.y"));
    }

    #[test]
    fn paths_taken_apart() {
        assert_eq!(split_last(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_last(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(parent(b"a/b"), Some(&b"a"[..]));
        assert_eq!(parent(b"a"), None);
        assert_eq!(ancestors(b"a/b/c").collect::<Vec<_>>(), [b"a", &b"a/b"[..]]);
        assert_eq!(ancestors(b"a").count(), 0);
        assert_eq!((depth(b""), depth(b"a"), depth(b"a/b/c")), (0, 0, 2));
    }
}
