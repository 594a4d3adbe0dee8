//! `containers`, `container`, `create-container`.

use containers_storage::{ContainerOptions, Store};

use super::args;
use super::items::read_metadata;
use super::output::{self, outln};
use super::Outcome;

pub fn list(store: &Store, json: bool) -> Outcome {
    let containers = store.containers()?;
    if json {
        return output::json(&containers);
    }
    for c in &containers {
        outln!("{}", c.id);
        for name in &c.names {
            outln!("\tname: {name}");
        }
        for key in &c.big_data.names {
            outln!("\tdata: {key}");
        }
    }
    Ok(0)
}

pub fn show(store: &Store, args: &args::Container) -> Outcome {
    let matched = super::items::known(&args.containers, |arg| store.container(arg))?;
    if args.json.json {
        output::json(&matched)?;
    } else {
        for c in &matched {
            outln!("ID: {}", c.id);
            for name in &c.names {
                outln!("Name: {name}");
            }
            outln!("Image: {}", c.image);
            if let Ok(image) = store.image(&c.image) {
                for name in &image.names {
                    outln!("Image name: {name}");
                }
            }
            match store.container_size(c) {
                Ok(size) => outln!("Size: {size}"),
                Err(e) => outln!("Size unknown: {e}"),
            }
            outln!("Layer: {}", c.layer);
            for key in &c.big_data.names {
                outln!("Data: {key}");
            }
        }
    }
    Ok(if matched.len() == args.containers.len() {
        0
    } else {
        1
    })
}

pub fn create(store: &Store, args: &args::CreateContainer) -> Outcome {
    let flags = &args.flags;
    let options = ContainerOptions {
        id: flags.id.clone(),
        names: flags.names.clone(),
        metadata: read_metadata(flags.metadata.clone(), flags.metadata_file.as_deref())?
            .unwrap_or_default(),
        volatile: args.volatile,
        id_mappings: super::layers::id_mappings(&args.id_maps)?,
    };
    let container = store.create_container(Some(&args.image), &options)?;
    if flags.json.json {
        return output::json(&container);
    }
    outln!("{}", container.id);
    for name in &container.names {
        outln!("\t{name}");
    }
    Ok(0)
}
