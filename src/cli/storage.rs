//! `storage-layers`, `create-storage-layer` (the driver's layer
//! directories, with or without a record), `applydiff-using-staging-dir`
//! and `config`.

use std::path::Path;

use containers_storage::{Store, StoreOptions};

use super::args;
use super::output::{self, outln};
use super::Outcome;

pub fn storage_layers(store: &Store, json: bool) -> Outcome {
    let ids = store.storage_layers()?;
    if json {
        return output::json(&ids);
    }
    for id in &ids {
        outln!("{id}");
    }
    Ok(0)
}

pub fn create_storage_layer(store: &Store, args: &args::CreateStorageLayer) -> Outcome {
    let flags = &args.flags;
    let mappings = super::layers::id_mappings(&flags.id_maps)?;
    let id = store.create_storage_layer(args.parent.as_deref(), flags.id.as_deref(), &mappings)?;
    if flags.json.json {
        return output::json(&id);
    }
    outln!("{id}");
    Ok(0)
}

pub fn apply_diff_using_staging_dir(
    store: &Store,
    args: &args::ApplyDiffUsingStagingDir,
) -> Outcome {
    store.apply_diff_from_staging_dir(&args.layer, &args.dir)?;
    Ok(0)
}

/// Prints `options` (read from `conf`) as upstream's `config` does.
pub fn config(options: &StoreOptions, conf: Option<&Path>) -> Outcome {
    output::json(&options.upstream_config(conf)?)
}
