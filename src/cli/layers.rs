//! `layers`, `layer`, `create-layer`, `import-layer`, `delete-layer`.

use std::collections::BTreeMap;
use std::path::Path;

use containers_storage::{Error, Layer, LayerOptions, Store};

use super::args::LayerFlags;
use super::output::{self, outln};
use super::progress::Progress;
use super::Outcome;

pub fn list(store: &Store, tree: bool, quick: bool, json: bool) -> Outcome {
    let layers = store.layers()?;
    if json {
        return output::json(&layers);
    }
    if tree {
        print_tree(&layers)?;
        return Ok(0);
    }
    let images = store.images()?;
    let containers = store.containers()?;
    for layer in &layers {
        outln!("{}", layer.id);
        if quick {
            continue;
        }
        for name in &layer.names {
            outln!("\tname: {name}");
        }
        for image in images.iter().filter(|i| i.top_layer == layer.id) {
            outln!("\timage: {}", image.id);
            for name in &image.names {
                outln!("\t\tname: {name}");
            }
        }
        for c in containers.iter().filter(|c| c.layer == layer.id) {
            outln!("\tcontainer: {}", c.id);
            for name in &c.names {
                outln!("\t\tname: {name}");
            }
        }
    }
    Ok(0)
}

fn print_tree(layers: &[Layer]) -> Result<(), Error> {
    let mut children: BTreeMap<&str, Vec<&Layer>> = BTreeMap::new();
    let known: std::collections::HashSet<&str> = layers.iter().map(|l| l.id.as_str()).collect();
    for layer in layers {
        let parent = if known.contains(layer.parent.as_str()) {
            layer.parent.as_str()
        } else {
            ""
        };
        children.entry(parent).or_default().push(layer);
    }
    fn walk(children: &BTreeMap<&str, Vec<&Layer>>, id: &str, prefix: &str) -> Result<(), Error> {
        let Some(kids) = children.get(id) else {
            return Ok(());
        };
        for (i, layer) in kids.iter().enumerate() {
            let last = i + 1 == kids.len();
            let names = if layer.names.is_empty() {
                String::new()
            } else {
                format!(" ({})", layer.names.join(", "))
            };
            outln!(
                "{prefix}{}{}{names}",
                if last { "└── " } else { "├── " },
                layer.id
            );
            let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
            walk(children, &layer.id, &deeper)?;
        }
        Ok(())
    }
    walk(&children, "", "")
}

pub fn show(store: &Store, args: &[String], json: bool) -> Outcome {
    let matched = super::items::known(args, |arg| store.layer(arg))?;
    if json {
        output::json(&matched)?;
    } else {
        for layer in &matched {
            outln!("ID: {}", layer.id);
            if !layer.parent.is_empty() {
                outln!("Parent: {}", layer.parent);
            }
            for name in &layer.names {
                outln!("Name: {name}");
            }
            if layer.read_only {
                outln!("Read Only: true");
            }
        }
    }
    Ok(if matched.len() == args.len() { 0 } else { 1 })
}

fn layer_options(flags: &LayerFlags) -> Result<LayerOptions, Error> {
    if flags.uidmap.is_some() || flags.gidmap.is_some() {
        return Err(Error::Refused(
            "ID mapping (--uidmap, --gidmap) is not supported by this store".into(),
        ));
    }
    Ok(LayerOptions {
        id: flags.id.clone(),
        names: flags.names.clone(),
        mount_label: flags.label.clone(),
        read_only: flags.read_only,
    })
}

fn print_created(layer: &Layer, json: bool) -> Outcome {
    if json {
        return output::json(layer);
    }
    outln!("{}", layer.id);
    for name in &layer.names {
        outln!("\t{name}");
    }
    Ok(0)
}

pub fn create(store: &Store, flags: &LayerFlags, parent: Option<&String>) -> Outcome {
    let layer = store.create_layer(parent.map(String::as_str), &layer_options(flags)?)?;
    print_created(&layer, flags.json.json)
}

pub fn import(
    store: &Store,
    flags: &LayerFlags,
    file: Option<&Path>,
    parent: Option<&String>,
) -> Outcome {
    let options = layer_options(flags)?;
    let progress = Progress::start("import");
    let parent = parent.map(String::as_str);
    let layer =
        open_input(file).and_then(|input| store.import_layer(parent, &options, input, &progress));
    progress.finish();
    print_created(&layer?, flags.json.json)
}

/// The tar stream to read: `-f FILE`, else standard input.
fn open_input(file: Option<&Path>) -> Result<Box<dyn std::io::Read + Send>, Error> {
    Ok(match file {
        Some(path) => Box::new(std::fs::File::open(path).map_err(|source| Error::Io {
            op: "open",
            path: path.to_path_buf(),
            source,
        })?),
        None => Box::new(std::io::stdin()),
    })
}

pub fn delete(store: &Store, args: &[String], json: bool) -> Outcome {
    super::items::delete_each(args, json, |arg| store.delete_layer(arg))
}

pub fn apply_diff(store: &Store, arg: &str, file: Option<&Path>) -> Outcome {
    let progress = Progress::start("applydiff");
    let result = open_input(file).and_then(|input| store.apply_diff(arg, input, &progress));
    progress.finish();
    result.map(|_| 0)
}

/// Refuses a `from` layer other than the layer's parent.
fn check_from(store: &Store, args: &[String]) -> Result<(), Error> {
    if let Some(from) = args.get(1).filter(|f| !f.is_empty()) {
        let layer = store.layer(&store.mount_layer_id(&args[0])?)?;
        let from = store.layer(from)?;
        if from.id != layer.parent {
            return Err(Error::Refused(format!(
                "layer {}: changes against {} (not its parent) are not supported",
                layer.id, from.id
            )));
        }
    }
    Ok(())
}

pub fn changes(store: &Store, args: &[String], json: bool) -> Outcome {
    check_from(store, args)?;
    let changes = store.changes(&args[0])?;
    if json {
        return output::json(&changes);
    }
    for c in &changes {
        let kind = match c.kind {
            containers_storage::materialize::ChangeKind::Add => "Add",
            containers_storage::materialize::ChangeKind::Modify => "Modify",
            containers_storage::materialize::ChangeKind::Delete => "Delete",
        };
        outln!("{kind} {:?}", c.path);
    }
    Ok(0)
}

pub fn diff_size(store: &Store, args: &[String]) -> Outcome {
    check_from(store, args)?;
    outln!("{}", store.diff_size(&args[0])?);
    Ok(0)
}

pub fn copy(store: &Store, args: &[String], chown: Option<&str>) -> Outcome {
    let chown = match chown {
        None => None,
        Some(spec) => {
            let bad = || Error::Refused(format!("--chown {spec:?}: expected UID[:GID]"));
            let (uid, gid) = spec
                .split_once(':')
                .map_or((spec, None), |(u, g)| (u, Some(g)));
            let uid: u32 = uid.parse().map_err(|_| bad())?;
            let gid = gid
                .map(|g| g.parse::<u32>().map_err(|_| bad()))
                .transpose()?;
            Some((uid, gid))
        }
    };
    let (dest, sources) = args.split_last().expect("at least two arguments");
    store.copy(sources, dest, chown)?;
    Ok(0)
}
