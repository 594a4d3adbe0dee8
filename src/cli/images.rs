//! `images`, `images-by-digest`, `image`, `create-image`, `delete-image`.

use std::collections::BTreeMap;

use containers_storage::{ImageOptions, Store};
use serde::Serialize;

use super::args;
use super::items::read_metadata;
use super::output::{self, errln, outln};
use super::Outcome;

/// `images`, or with a digest `images-by-digest`.
pub fn list(store: &Store, args: &args::Images, digest: Option<&str>) -> Outcome {
    let images = match digest {
        Some(d) => store.images_by_digest(d)?,
        None => store.all_images()?,
    };
    if args.json.json {
        return output::json(&images);
    }
    for image in &images {
        outln!("{}", image.id);
        if args.quiet.quiet {
            continue;
        }
        for name in &image.names {
            outln!("\tname: {name}");
        }
        for digest in image.digests() {
            outln!("\tdigest: {digest}");
        }
        for key in &image.big_data.names {
            outln!("\tdata: {key}");
        }
    }
    Ok(0)
}

pub fn show(store: &Store, args: &args::Image) -> Outcome {
    let matched = super::items::known(&args.images, |arg| store.image(arg))?;
    if args.json.json {
        output::json(&matched)?;
    } else {
        for image in &matched {
            outln!("ID: {}", image.id);
            for name in &image.names {
                outln!("Name: {name}");
            }
            outln!("Top Layer: {}", image.top_layer);
            for mapped in &image.mapped_layers {
                outln!("Top Layer: {mapped}");
            }
            for digest in image.digests() {
                outln!("Digest: {digest}");
            }
            for key in &image.big_data.names {
                outln!("Data: {key}");
            }
            match store.image_size(image) {
                Ok(size) => outln!("Size: {size}"),
                Err(e) => outln!("Size unknown: {e}"),
            }
            if store.image_is_read_only(image) {
                outln!("Read Only: true");
            }
        }
    }
    Ok(if matched.len() == args.images.len() {
        0
    } else {
        1
    })
}

pub fn create(store: &Store, args: &args::CreateImage) -> Outcome {
    let flags = &args.flags;
    let options = ImageOptions {
        id: flags.id.clone(),
        names: flags.names.clone(),
        digest: args.digest.clone(),
        metadata: read_metadata(flags.metadata.clone(), flags.metadata_file.as_deref())?
            .unwrap_or_default(),
    };
    let image = store.create_image(args.layer.as_deref(), &options)?;
    if flags.json.json {
        return output::json(&image);
    }
    outln!("{}", image.id);
    for name in &image.names {
        outln!("\t{name}");
    }
    Ok(0)
}

#[derive(Serialize)]
struct Deleted {
    #[serde(rename = "deleted-layers")]
    deleted_layers: Vec<String>,
    error: String,
}

pub fn delete(store: &Store, args: &args::DeleteImage) -> Outcome {
    let json = args.json.json;
    let mut results = BTreeMap::new();
    let mut failed = false;
    for arg in &args.images {
        let result = match store.delete_image(arg, args.test) {
            Ok(layers) => {
                if !json {
                    for layer in &layers {
                        errln!("{arg}: {layer}");
                    }
                }
                Deleted {
                    deleted_layers: layers,
                    error: String::new(),
                }
            }
            Err(e) => {
                failed = true;
                let error = super::items::deletes_words(&e, "identifier is not an image");
                if !json {
                    errln!("{arg}: {error}");
                }
                Deleted {
                    deleted_layers: Vec::new(),
                    error,
                }
            }
        };
        results.insert(arg.clone(), result);
    }
    if json {
        output::json(&results)?;
    }
    Ok(if failed { 1 } else { 0 })
}
