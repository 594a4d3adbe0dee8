//! Item IDs and names: generation and validation.

use super::layout;
use crate::durable;
use crate::error::{Error, Result};

/// A new random ID: 64 lowercase hex digits.
pub(crate) fn new_id() -> String {
    durable::random_hex(32)
}

/// Checks a caller-chosen ID: it names files under the store, so it must be
/// one path component of printable characters.
pub(crate) fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidName(id.into(), "an ID cannot be empty"));
    }
    if id.len() > 255 || id == "." || id == ".." || id.starts_with('.') {
        return Err(Error::InvalidName(id.into(), "not a valid ID"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+' | b'@' | b':'))
    {
        return Err(Error::InvalidName(
            id.into(),
            "an ID may hold only letters, digits and _ - . + @ :",
        ));
    }
    Ok(())
}

/// Checks the ID of a new item: [`validate_id`], and not one of the names
/// the store's layout uses for its own entries where IDs live (see
/// [`layout::is_reserved`]). Records read from disk are only held to
/// [`validate_id`], so that a store whose records predate a reserved name
/// still opens.
pub(crate) fn validate_new_id(id: &str) -> Result<()> {
    validate_id(id)?;
    if layout::is_reserved(id) {
        return Err(Error::InvalidName(
            id.into(),
            "the store's layout uses this name for its own files",
        ));
    }
    Ok(())
}

/// Checks a name: any non-empty string without control characters.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(Error::InvalidName(name.into(), "not a valid name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(new_id().len(), 64);
        assert!(validate_id(&new_id()).is_ok());
        assert!(validate_id("my-layer.1").is_ok());
        for bad in ["", "..", "a/b", ".hidden", "x\0y"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        for reserved in ["l", "empty", "layers.json", "images.lock", "x.tar-split.gz"] {
            assert!(validate_id(reserved).is_ok(), "{reserved:?}");
            assert!(validate_new_id(reserved).is_err(), "{reserved:?}");
        }
    }
}
