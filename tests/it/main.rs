//! The integration tests, as one test binary (one link instead of one
//! per file): each module is the tests of one area, driving the real
//! `containers-storage` binary or the library. `common` holds what they
//! share; `harness` the crash, stress and fault tests' process driver.
//!
//! `cargo nextest run` runs every test in its own process;
//! `cargo nextest run -E 'test(/^gc::/)'` runs one module.

// Tests may unwrap (the crate's lints are for library code).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/harness.rs"]
mod harness;

mod adopt;
mod applydiff;
mod bad_input;
mod check;
mod cli_containers;
mod cli_images;
mod cli_layers;
mod cli_names;
mod cli_usage;
mod clients;
mod concurrent;
mod config_cmd;
mod corrupt_records;
mod crash;
mod crash_harness;
mod damaged_pool;
mod dataset_builder;
mod debian;
mod debian_mounts;
mod dedup;
mod dedup_cmd;
mod errors;
mod faults;
mod fuzz;
mod gc;
mod go_layout;
mod hostile_user;
mod idmaps;
mod image_store;
mod layer_states;
mod live;
mod materialize;
mod memory;
mod mounts;
mod parent_owners;
mod progress;
mod reserved_ids;
mod ro_stores;
mod rootless;
mod roundtrip;
mod stacking;
mod staging_dir;
mod storage_layers;
mod stress;
mod tar_split;
mod unsynced;
mod upstream_texts;
mod vagrant;
