//! The names of the files in `chunks/packs/`: pack `<stem>.pack` and its
//! index `<stem>.idx`, the stem random hex; while one is written, a
//! temporary name of `durable`'s. Only this module builds or recognises
//! them.

use crate::durable;

const PACK_SUFFIX: &str = ".pack";
const INDEX_SUFFIX: &str = ".idx";

/// A fresh stem for a new pack and its index.
pub(crate) fn new_stem() -> String {
    durable::random_hex(16)
}

/// `<stem>.pack`.
pub(crate) fn pack(stem: &str) -> String {
    format!("{stem}{PACK_SUFFIX}")
}

/// `<stem>.idx`.
pub(crate) fn index(stem: &str) -> String {
    format!("{stem}{INDEX_SUFFIX}")
}

/// What a name found in `chunks/packs/` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PackFile<'a> {
    /// A pack, by stem.
    Pack(&'a str),
    /// An index, by the stem of its pack.
    Index(&'a str),
    /// A temporary file of a write that has not finished (or died).
    Temporary,
    /// Anything else.
    Other,
}

impl PackFile<'_> {
    /// What `name` is.
    pub fn of(name: &str) -> PackFile<'_> {
        if durable::is_temp_name(name) {
            PackFile::Temporary
        } else if let Some(stem) = name.strip_suffix(PACK_SUFFIX) {
            PackFile::Pack(stem)
        } else if let Some(stem) = name.strip_suffix(INDEX_SUFFIX) {
            PackFile::Index(stem)
        } else {
            PackFile::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_recognised_as_they_are_built() {
        let stem = new_stem();
        assert_eq!(PackFile::of(&pack(&stem)), PackFile::Pack(&stem));
        assert_eq!(PackFile::of(&index(&stem)), PackFile::Index(&stem));
        let tmp = durable::temp_sibling(std::path::Path::new(&index(&stem)));
        let tmp = tmp.file_name().unwrap().to_str().unwrap();
        assert_eq!(PackFile::of(tmp), PackFile::Temporary);
        assert_eq!(PackFile::of("config.json"), PackFile::Other);
    }
}
