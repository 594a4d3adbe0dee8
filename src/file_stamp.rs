//! What tells one version of a file from another without reading it:
//! device, inode, size, mtime and ctime (with nanoseconds). A file
//! rewritten in place or replaced by a rename gets another stamp.

use std::fs;
use std::os::unix::fs::MetadataExt;

/// Device, inode, size, mtime (s, ns), ctime (s, ns).
pub(crate) type FileStamp = (u64, u64, u64, i64, i64, i64, i64);

/// The stamp of the file `meta` describes.
pub(crate) fn stamp(meta: &fs::Metadata) -> FileStamp {
    (
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    )
}
