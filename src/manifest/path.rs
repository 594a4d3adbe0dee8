//! Normalisation of tar entry paths: the layer root is a jail.

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

/// A path for messages.
pub(crate) fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{is_normalized, normalize};

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
}
