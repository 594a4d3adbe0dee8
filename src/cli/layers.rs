//! `layers`, `layer`, `create-layer`, `import-layer`, `delete-layer`.

use containers_storage::{subid_map, Error, IdMap, IdMappingOptions, Layer, LayerOptions, Store};

use super::args::{self, IdMapFlags, LayerFlags};
use super::input;
use super::output::{self, outln};
use super::progress::Progress;
use super::{Failure, Outcome};

pub fn list(store: &Store, args: &args::Layers) -> Outcome {
    let layers = store.all_layers()?;
    if args.json.json {
        return output::json(&layers);
    }
    let images = store.all_images()?;
    let containers = store.containers()?;
    // What is said of each layer: its names, then the images it is the
    // top of and the container it is the layer of, with their names.
    let notes = |layer: &Layer, tree: bool| {
        let mut notes: Vec<String> = layer.names.iter().map(|n| format!("name: {n}")).collect();
        let (image_name, container_name) = match tree {
            true => ("image name", "container name"),
            false => ("\tname", "\tname"),
        };
        let tops = |i: &&containers_storage::Image| {
            i.top_layer == layer.id || i.mapped_layers.contains(&layer.id)
        };
        for image in images.iter().filter(tops) {
            notes.push(format!("image: {}", image.id));
            notes.extend(image.names.iter().map(|n| format!("{image_name}: {n}")));
        }
        if let Some(c) = containers.iter().find(|c| c.layer == layer.id) {
            notes.push(format!("container: {}", c.id));
            notes.extend(c.names.iter().map(|n| format!("{container_name}: {n}")));
        }
        notes
    };
    if args.tree {
        let mounts = store.mounts()?;
        let nodes = layers
            .iter()
            .map(|layer| {
                let mut notes = notes(layer, true);
                if let Some(m) = mounts.iter().find(|m| m.id == layer.id && m.count > 0) {
                    notes.insert(layer.names.len(), format!("mount: {}", m.path));
                }
                let parent = match layer.parent.as_str() {
                    "" => "(base)",
                    parent => parent,
                };
                TreeNode {
                    parent,
                    id: &layer.id,
                    notes,
                }
            })
            .collect();
        print_tree(nodes)?;
        return Ok(0);
    }
    for layer in &layers {
        outln!("{}", layer.id);
        if args.quick {
            continue;
        }
        for note in notes(layer, false) {
            outln!("\t{note}");
        }
    }
    Ok(0)
}

/// A layer in `layers --tree`: under its parent (`(base)` for none).
struct TreeNode<'a> {
    parent: &'a str,
    id: &'a str,
    notes: Vec<String>,
}

/// Draws the layers as upstream's `layers --tree` does: from each root
/// (a parent that is no layer here, the one with the fewest children
/// first), every child after `├─` or `└─`, its notes below it, two
/// columns deeper per generation.
fn print_tree(mut nodes: Vec<TreeNode<'_>>) -> Result<(), Error> {
    while !nodes.is_empty() {
        let mut roots: Vec<(&str, usize)> = Vec::new();
        for node in &nodes {
            if nodes.iter().any(|n| n.id == node.parent) {
                continue;
            }
            match roots.iter_mut().find(|(r, _)| *r == node.parent) {
                Some((_, n)) => *n += 1,
                None => roots.push((node.parent, 1)),
            }
        }
        let Some(&(root, _)) = roots.iter().min_by_key(|(_, n)| *n) else {
            break;
        };
        let root = root.to_string();
        outln!("{root}");
        let before = nodes.len();
        nodes = print_subtree(&root, nodes, 0, &[])?;
        if nodes.len() == before {
            break;
        }
    }
    Ok(())
}

/// Prints the children of `root` among `nodes` (and theirs), indented
/// by `indent` with a vertical bar in each column of `continued`;
/// returns the nodes not printed.
fn print_subtree<'a>(
    root: &str,
    nodes: Vec<TreeNode<'a>>,
    indent: usize,
    continued: &[usize],
) -> Result<Vec<TreeNode<'a>>, Error> {
    let (children, mut rest): (Vec<_>, Vec<_>) = nodes.into_iter().partition(|n| n.parent == root);
    let count = children.len();
    for (i, child) in children.into_iter().enumerate() {
        let mut margin: Vec<char> = vec![' '; indent];
        for &column in continued {
            margin[column] = '│';
        }
        let margin: String = margin.into_iter().collect();
        let more = i + 1 < count;
        let (header, note_header) = if more { ('├', '│') } else { ('└', ' ') };
        outln!("{margin}{header}─{}", child.id);
        for note in &child.notes {
            outln!("{margin}{note_header} {note}");
        }
        let mut deeper = continued.to_vec();
        if more {
            deeper.push(indent);
        }
        rest = print_subtree(child.id, rest, indent + 2, &deeper)?;
    }
    Ok(rest)
}

pub fn show(store: &Store, args: &args::Layer) -> Outcome {
    let matched = super::items::known(&args.layers, |arg| store.layer(arg))?;
    if args.json.json {
        output::json(&matched)?;
    } else {
        for layer in &matched {
            outln!("ID: {}", layer.id);
            for (kind, map) in [("UID", &layer.uid_map), ("GID", &layer.gid_map)] {
                for m in map.iter() {
                    outln!(
                        "{kind} mapping: (container={}, host={}, size={})",
                        m.container_id,
                        m.host_id,
                        m.size
                    );
                }
            }
            if !layer.parent.is_empty() {
                outln!("Parent: {}", layer.parent);
            }
            for name in &layer.names {
                outln!("Name: {name}");
            }
            // Upstream's `ReadOnly`: the layer is a read-only store's (a
            // `--readonly` layer of this store is not, nor one the split
            // image store holds).
            if store.layer_is_read_only(layer) {
                outln!("Read Only: true");
            }
        }
    }
    Ok(if matched.len() == args.layers.len() {
        0
    } else {
        1
    })
}

/// The ID mappings the flags ask for, as upstream's `paramIDMapping`
/// builds them: a forced host mapping excludes a map of that kind; a
/// `--subuidmap` or `--subgidmap` alone names both the user and the
/// group; explicit maps follow the subordinate ranges.
pub(super) fn id_mappings(flags: &IdMapFlags) -> Result<IdMappingOptions, Failure> {
    let uid_map = flags
        .uid_map
        .as_deref()
        .map(|m| parse_id_map(m, "uid"))
        .transpose()?;
    let gid_map = flags
        .gid_map
        .as_deref()
        .map(|m| parse_id_map(m, "gid"))
        .transpose()?;
    let given = |m: &Option<Vec<IdMap>>| m.as_ref().is_some_and(|m| !m.is_empty());
    if flags.host_uid_map && (given(&uid_map) || flags.sub_uid_map.is_some()) {
        return Err(Failure::usage(
            "host uid map specified along with UID mapping",
        ));
    }
    if flags.host_gid_map && (given(&gid_map) || flags.sub_gid_map.is_some()) {
        return Err(Failure::usage(
            "host gid map specified along with GID mapping",
        ));
    }
    let mut options = IdMappingOptions {
        host_uid_mapping: flags.host_uid_map,
        host_gid_mapping: flags.host_gid_map,
        ..IdMappingOptions::default()
    };
    let user = flags.sub_uid_map.as_ref().or(flags.sub_gid_map.as_ref());
    let group = flags.sub_gid_map.as_ref().or(flags.sub_uid_map.as_ref());
    if let (Some(user), Some(group)) = (user, group) {
        options.uid_map = subid_map(user, true)?;
        options.gid_map = subid_map(group, false)?;
    }
    options.uid_map.extend(uid_map.unwrap_or_default());
    options.gid_map.extend(gid_map.unwrap_or_default());
    Ok(options)
}

/// `--uidmap`/`--gidmap`: CONTAINER:HOST:SIZE triples, colon-separated
/// (upstream's `ParseIDMap`; empty is no map), refused in upstream's
/// words.
fn parse_id_map(spec: &str, what: &str) -> Result<Vec<IdMap>, Failure> {
    if spec.is_empty() {
        return Ok(Vec::new());
    }
    let bad = || {
        Failure::usage(format!(
            "initializing ID mappings: {what} setting is malformed expected [\"uint32:uint32:uint32\"]: [{spec:?}]"
        ))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() % 3 != 0 {
        return Err(bad());
    }
    parts
        .chunks(3)
        .map(|t| {
            let n = |s: &str| s.parse::<u32>().map_err(|_| bad());
            Ok(IdMap {
                container_id: n(t[0])?,
                host_id: n(t[1])?,
                size: n(t[2])?,
            })
        })
        .collect()
}

fn layer_options(flags: &LayerFlags) -> Result<LayerOptions, Failure> {
    Ok(LayerOptions {
        id: flags.layer.id.clone(),
        names: flags.names.clone(),
        mount_label: flags.layer.label.clone(),
        read_only: flags.layer.read_only,
        id_mappings: id_mappings(&flags.layer.id_maps)?,
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

pub fn create(store: &Store, args: &args::CreateLayer) -> Outcome {
    let layer = store.create_layer(args.parent.as_deref(), &layer_options(&args.flags)?)?;
    print_created(&layer, args.flags.layer.json.json)
}

pub fn import(store: &Store, args: &args::ImportLayer) -> Outcome {
    let options = layer_options(&args.flags)?;
    let parent = args.parent.as_deref();
    if let (None, Some(parent)) = (&args.file, parent) {
        if let Some(forgot_f) = input::file_not_item(store, parent, "") {
            return Err(forgot_f);
        }
    }
    let input = input::open(args.file.as_deref())?;
    let progress = Progress::start("import", input.size);
    let layer = store.import_layer(parent, &options, progress.reading(input.reader), &progress);
    progress.finish();
    print_created(&layer?, args.flags.layer.json.json)
}

pub fn delete(store: &Store, args: &args::DeleteLayer) -> Outcome {
    super::items::delete_each(
        &args.layers,
        args.json.json,
        "identifier is not a layer",
        |arg| store.delete_layer(arg),
    )
}

pub fn apply_diff(store: &Store, args: &args::ApplyDiff) -> Outcome {
    if args.file.is_none() {
        if let Some(forgot_f) = input::file_not_item(store, &args.layer, " LAYER") {
            return Err(forgot_f);
        }
    }
    let input = input::open(args.file.as_deref())?;
    let progress = Progress::start("applydiff", input.size);
    let result = store.apply_diff(&args.layer, progress.reading(input.reader), &progress);
    progress.finish();
    result?;
    Ok(0)
}

pub fn changes(store: &Store, args: &args::Changes) -> Outcome {
    let changes = match args.from.as_deref().filter(|f| !f.is_empty()) {
        Some(from) => store.changes_from(&args.layer, from)?,
        None => store.changes(&args.layer)?,
    };
    if args.json.json {
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

pub fn diff_size(store: &Store, args: &args::DiffSize) -> Outcome {
    let size = match args.from.as_deref().filter(|f| !f.is_empty()) {
        Some(from) => store.diff_size_from(&args.layer, from)?,
        None => store.diff_size(&args.layer)?,
    };
    outln!("{size}");
    Ok(0)
}

pub fn copy(store: &Store, args: &args::Copy) -> Outcome {
    let chown = match &args.chown {
        Some(spec) => {
            let (uid, gid) = args::owner(spec).map_err(Failure::usage)?;
            Some((uid, Some(gid)))
        }
        None => None,
    };
    store.copy(&args.sources, &args.dest, chown)?;
    Ok(0)
}
