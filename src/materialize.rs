//! The materializer: manifest -> directory (an overlay lower directory or
//! a vfs tree), through a file-object cache with reflinks, hardlinks or
//! copies. It reads manifests and the chunk pool and writes directories;
//! it knows nothing of records or locks.
//!
//! Layers are exported and imported today; building their directories on
//! demand for mounts is the next piece of work (see the CHANGELOG).
