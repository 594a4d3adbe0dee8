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

/// A path for messages.
pub(crate) fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

#[cfg(test)]
mod tests {
    use super::normalize;

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
}
