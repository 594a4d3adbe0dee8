//! Command-line definitions (clap). Handlers never see raw flags: each
//! gets its command's struct below, with option values already parsed
//! into types (`Duration`, `Evict`, `HashMethod`, [`Owner`]).
//!
//! # Adding a command
//!
//! 1. Write its struct here: flags as fields (a boolean one with
//!    `bool_flag()`, see [`BoolFlag`]; `--json` as `#[command(flatten)]
//!    json: Json`), then its positional arguments as named fields, in
//!    order, each with a `value_name` and a one-line description. Their
//!    types are the argument count: `String` is one, `Option<String>` an
//!    optional one, `Vec<String>` with `required = true` one or more.
//!    Upstream's words for a wrong count (`CMD: more arguments
//!    required.`, `CMD: too many arguments.`, exit 1) come from these
//!    fields (`cli/parse.rs`); there is no other table.
//! 2. Add a variant to [`Command`] holding it, with upstream's name and
//!    aliases, and a doc comment: one line saying what the command does,
//!    then a paragraph starting `Prints` that says what it prints (the
//!    `--help` text; a test requires both).
//! 3. Write the handler in the `cli/` module of its kind (layers, images,
//!    items, ...): `fn NAME(store: &Store, args: &args::NAME) -> Outcome`.
//!    It calls the library and prints with `outln!` (JSON with
//!    `output::json`); it never prints an error, it returns it.
//! 4. Add the variant's arm to `dispatch` in `cli.rs`, its row to the
//!    count table in `tests/it/cli_usage.rs` and to the README's command
//!    table, and a test that runs the real binary.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgAction, Args, Parser, Subcommand};

use containers_storage::store::{CheckOptions, Evict, GcOptions, HashMethod};
use containers_storage::{parse_duration, Compression, Kind};

/// The shape of every boolean flag, as upstream's flag package takes it:
/// `-x`, `--x`, `--x=true`, `--x=false`, and short flags grouped (`-qj`).
/// Used as a clap attribute: `#[arg(short = 'x', long = "x", bool_flag())]`.
pub trait BoolFlag {
    /// False unless given.
    fn bool_flag(self) -> Self;
    /// Unset (`None`) unless given.
    fn optional_bool_flag(self) -> Self;
}

impl BoolFlag for Arg {
    fn bool_flag(self) -> Arg {
        self.optional_bool_flag().default_value("false")
    }

    fn optional_bool_flag(self) -> Arg {
        self.num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
            .value_name("BOOL")
            .hide_possible_values(true)
            .hide_default_value(true)
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "containers-storage",
    about = "Manage container layers, images and containers on a deduplicating chunk pool",
    args_override_self = true,
    disable_version_flag = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options that apply to every command, before or after its name.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Root directory for persistent data.
    #[arg(short = 'g', long = "graph", global = true, value_name = "DIR")]
    pub graph: Option<PathBuf>,
    /// Root directory for runtime state.
    #[arg(short = 'R', long = "run", global = true, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// Storage driver: overlay or vfs.
    #[arg(
        short = 's',
        long = "storage-driver",
        global = true,
        env = "STORAGE_DRIVER",
        value_name = "NAME"
    )]
    pub driver: Option<String>,
    /// Storage driver option (repeatable), e.g. `overlay.imagestore=DIR`
    /// (a read-only additional image store).
    #[arg(long = "storage-opt", global = true, value_name = "OPT", action = ArgAction::Append)]
    pub storage_opts: Vec<String>,
    /// Split image store directory: images and `--readonly` layers live
    /// there; other layers and container records stay under the graph
    /// root (whose images stay visible).
    #[arg(long = "image-store", global = true, value_name = "DIR")]
    pub image_store: Option<PathBuf>,
    /// Keep container records in the run root.
    #[arg(long = "transient-store", global = true, optional_bool_flag())]
    pub transient_store: Option<bool>,
    /// Print debug logging on stderr.
    #[arg(short = 'D', long = "debug", global = true, optional_bool_flag())]
    pub debug: Option<bool>,
}

/// `--json`/`-j`, shared by most commands.
#[derive(Args, Debug, Default)]
pub struct Json {
    /// Print the result as JSON.
    #[arg(short = 'j', long = "json", bool_flag())]
    pub json: bool,
}

/// `-q/--quiet` (or `--quick`).
#[derive(Args, Debug, Default)]
pub struct Quiet {
    /// Print only IDs or values.
    #[arg(short = 'q', long = "quiet", alias = "quick", bool_flag())]
    pub quiet: bool,
}

/// `-f FILE`: where to read or write data.
#[derive(Args, Debug, Default)]
pub struct FileFlag {
    /// The file (default: standard input or output).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
}

/// `-n NAME` (repeatable) for the names commands.
#[derive(Args, Debug, Default)]
pub struct NamesFlags {
    /// A name (repeatable).
    #[arg(short = 'n', long = "name", value_name = "NAME", action = ArgAction::Append)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub json: Json,
}

/// The flags of `create-image` and `create-container`.
#[derive(Args, Debug, Default)]
pub struct CreateFlags {
    /// Name (repeatable).
    #[arg(short = 'n', long = "name", value_name = "NAME", action = ArgAction::Append)]
    pub names: Vec<String>,
    /// ID (default: random).
    #[arg(short = 'i', long = "id")]
    pub id: Option<String>,
    /// Metadata.
    #[arg(short = 'm', long = "metadata")]
    pub metadata: Option<String>,
    /// Read the metadata from this file.
    #[arg(short = 'f', long = "metadata-file")]
    pub metadata_file: Option<PathBuf>,
    #[command(flatten)]
    pub json: Json,
}

/// The flags of `create-layer` and `import-layer`.
#[derive(Args, Debug, Default)]
pub struct LayerFlags {
    /// Name for the layer (repeatable).
    #[arg(short = 'n', long = "name", value_name = "NAME", action = ArgAction::Append)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub layer: NewLayerFlags,
}

/// The flags of a new layer, with or without a record (`create-layer`,
/// `import-layer`, `create-storage-layer`).
#[derive(Args, Debug, Default)]
pub struct NewLayerFlags {
    /// ID for the layer (default: random).
    #[arg(short = 'i', long = "id")]
    pub id: Option<String>,
    /// Mount label.
    #[arg(short = 'l', long = "label", default_value = "")]
    pub label: String,
    /// Create the layer read-only.
    #[arg(short = 'r', long = "readonly", bool_flag())]
    pub read_only: bool,
    #[command(flatten)]
    pub id_maps: IdMapFlags,
    #[command(flatten)]
    pub json: Json,
}

/// The ID mapping flags of `create-layer`, `import-layer` and
/// `create-container` (upstream's).
#[derive(Args, Debug, Default)]
pub struct IdMapFlags {
    /// Force the host's UIDs (no UID map, not even the parent layer's or
    /// the image's).
    #[arg(long = "hostuidmap", bool_flag())]
    pub host_uid_map: bool,
    /// Force the host's GIDs (no GID map, not even the parent layer's or
    /// the image's).
    #[arg(long = "hostgidmap", bool_flag())]
    pub host_gid_map: bool,
    /// UID map: CONTAINER:HOST:SIZE[:CONTAINER:HOST:SIZE...]; the files
    /// are stored with host IDs, `diff` gives the container's.
    #[arg(long = "uidmap", value_name = "MAP")]
    pub uid_map: Option<String>,
    /// GID map: CONTAINER:HOST:SIZE[:CONTAINER:HOST:SIZE...].
    #[arg(long = "gidmap", value_name = "MAP")]
    pub gid_map: Option<String>,
    /// The UID and GID maps of USER's ranges in /etc/subuid and
    /// /etc/subgid (with --subgidmap: the GIDs of that group's).
    #[arg(long = "subuidmap", value_name = "USER")]
    pub sub_uid_map: Option<String>,
    /// The GID and UID maps of GROUP's ranges in /etc/subgid and
    /// /etc/subuid (with --subuidmap: the UIDs of that user's).
    #[arg(long = "subgidmap", value_name = "GROUP")]
    pub sub_gid_map: Option<String>,
}

/// `layers`.
#[derive(Args, Debug)]
pub struct Layers {
    /// Show the layers as a tree.
    #[arg(short = 't', long = "tree", bool_flag())]
    pub tree: bool,
    /// Print only IDs.
    #[arg(short = 'q', long = "quick", bool_flag())]
    pub quick: bool,
    #[command(flatten)]
    pub json: Json,
}

/// `layer`.
#[derive(Args, Debug)]
pub struct Layer {
    #[command(flatten)]
    pub json: Json,
    /// A layer: ID, name or unique ID prefix.
    #[arg(value_name = "LAYER", required = true)]
    pub layers: Vec<String>,
}

/// `create-layer`.
#[derive(Args, Debug)]
pub struct CreateLayer {
    #[command(flatten)]
    pub flags: LayerFlags,
    /// The new layer's parent (default: none).
    #[arg(value_name = "PARENT")]
    pub parent: Option<String>,
}

/// `import-layer`.
#[derive(Args, Debug)]
pub struct ImportLayer {
    #[command(flatten)]
    pub flags: LayerFlags,
    /// Read the tar from this file (default: standard input, which must
    /// not be a terminal).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The new layer's parent (default: none). The tar itself is `-f
    /// FILE`.
    #[arg(value_name = "PARENT")]
    pub parent: Option<String>,
}

/// `delete-layer`.
#[derive(Args, Debug)]
pub struct DeleteLayer {
    #[command(flatten)]
    pub json: Json,
    /// A layer: ID, name or unique ID prefix.
    #[arg(value_name = "LAYER", required = true)]
    pub layers: Vec<String>,
}

/// `diff`.
#[derive(Args, Debug)]
pub struct Diff {
    /// Write to this file (default: standard output).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Uncompressed.
    #[arg(short = 'u', long = "uncompressed", bool_flag())]
    pub uncompressed: bool,
    /// gzip.
    #[arg(short = 'c', long = "gzip", bool_flag())]
    pub gzip: bool,
    /// bzip2.
    #[arg(short = 'b', long = "bzip2", visible_alias = "bz2", bool_flag())]
    pub bzip2: bool,
    /// xz.
    #[arg(short = 'x', long = "xz", bool_flag())]
    pub xz: bool,
    /// zstd.
    #[arg(long = "zstd", bool_flag())]
    pub zstd: bool,
    /// The layer or container whose changes to write.
    #[arg(value_name = "LAYER")]
    pub layer: String,
    /// The layer to compare with: only LAYER's parent (the default) is
    /// supported.
    #[arg(value_name = "FROM")]
    pub from: Option<String>,
}

impl Diff {
    /// The compression asked for (the first of the flags given), or none
    /// to use the one the layer was imported with.
    pub fn compression(&self) -> Option<Compression> {
        [
            (self.uncompressed, Compression::None),
            (self.gzip, Compression::Gzip),
            (self.bzip2, Compression::Bzip2),
            (self.xz, Compression::Xz),
            (self.zstd, Compression::Zstd),
        ]
        .into_iter()
        .find(|(on, _)| *on)
        .map(|(_, c)| c)
    }
}

/// `images`.
#[derive(Args, Debug)]
pub struct Images {
    #[command(flatten)]
    pub quiet: Quiet,
    #[command(flatten)]
    pub json: Json,
}

/// `images-by-digest`.
#[derive(Args, Debug)]
pub struct ImagesByDigest {
    #[command(flatten)]
    pub listing: Images,
    /// The digest: `sha256:` and 64 hex digits.
    #[arg(value_name = "DIGEST")]
    pub digest: String,
}

/// `image`.
#[derive(Args, Debug)]
pub struct Image {
    #[command(flatten)]
    pub json: Json,
    /// An image: ID, name or unique ID prefix.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

/// `create-image`.
#[derive(Args, Debug)]
pub struct CreateImage {
    #[command(flatten)]
    pub flags: CreateFlags,
    /// The image's digest.
    #[arg(short = 'd', long = "digest")]
    pub digest: Option<String>,
    /// The image's top layer (default: none).
    #[arg(value_name = "LAYER")]
    pub layer: Option<String>,
}

/// `delete-image`.
#[derive(Args, Debug)]
pub struct DeleteImage {
    /// Report what would be deleted, delete nothing.
    #[arg(short = 't', long = "test", bool_flag())]
    pub test: bool,
    #[command(flatten)]
    pub json: Json,
    /// An image: ID, name or unique ID prefix.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

/// `containers`, `wipe`, `status` and `version`: `--json` only.
#[derive(Args, Debug)]
pub struct JsonOnly {
    #[command(flatten)]
    pub json: Json,
}

/// `container`.
#[derive(Args, Debug)]
pub struct Container {
    #[command(flatten)]
    pub json: Json,
    /// A container: ID, name, its layer's ID or a unique ID prefix.
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

/// `create-container`.
#[derive(Args, Debug)]
pub struct CreateContainer {
    #[command(flatten)]
    pub flags: CreateFlags,
    /// Mark the container volatile.
    #[arg(long = "volatile", bool_flag())]
    pub volatile: bool,
    #[command(flatten)]
    pub id_maps: IdMapFlags,
    /// The image to create it on ("" for none).
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

/// `delete-container`.
#[derive(Args, Debug)]
pub struct DeleteContainer {
    #[command(flatten)]
    pub json: Json,
    /// A container: ID, name, its layer's ID or a unique ID prefix.
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

/// `get-names`.
#[derive(Args, Debug)]
pub struct GetNames {
    #[command(flatten)]
    pub json: Json,
    /// A layer, image or container: ID, name or unique ID prefix.
    #[arg(value_name = "ITEM")]
    pub item: String,
}

/// `add-names`, `remove-names` and `set-names`.
#[derive(Args, Debug)]
pub struct Names {
    #[command(flatten)]
    pub flags: NamesFlags,
    /// A layer, image or container: ID, name or unique ID prefix.
    #[arg(value_name = "ITEM")]
    pub item: String,
    /// Further arguments, taken and ignored as upstream takes them.
    #[arg(value_name = "IGNORED")]
    pub ignored: Vec<String>,
}

/// `metadata`.
#[derive(Args, Debug)]
pub struct Metadata {
    #[command(flatten)]
    pub quiet: Quiet,
    #[command(flatten)]
    pub json: Json,
    /// A layer, image or container: ID, name or unique ID prefix.
    #[arg(value_name = "ITEM", required = true)]
    pub items: Vec<String>,
}

/// `set-metadata`.
#[derive(Args, Debug)]
pub struct SetMetadata {
    /// The metadata.
    #[arg(short = 'm', long = "metadata")]
    pub metadata: Option<String>,
    /// Read the metadata from this file.
    #[arg(short = 'f', long = "metadata-file")]
    pub file: Option<PathBuf>,
    /// A layer, image or container: ID, name or unique ID prefix.
    #[arg(value_name = "ITEM")]
    pub item: String,
}

/// `exists`.
#[derive(Args, Debug)]
pub struct Exists {
    #[command(flatten)]
    pub quiet: Quiet,
    /// Only layers.
    #[arg(short = 'l', long = "layer", bool_flag())]
    pub layer: bool,
    /// Only images.
    #[arg(short = 'i', long = "image", bool_flag())]
    pub image: bool,
    /// Only containers.
    #[arg(short = 'c', long = "container", bool_flag())]
    pub container: bool,
    #[command(flatten)]
    pub json: Json,
    /// A layer, image or container: ID, name or unique ID prefix.
    #[arg(value_name = "ITEM", required = true)]
    pub items: Vec<String>,
}

impl Exists {
    /// The kinds to look among (none given: all).
    pub fn kinds(&self) -> Vec<Kind> {
        [
            (self.layer, Kind::Layer),
            (self.image, Kind::Image),
            (self.container, Kind::Container),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, k)| k)
        .collect()
    }
}

/// `delete`.
#[derive(Args, Debug)]
pub struct Delete {
    #[command(flatten)]
    pub json: Json,
    /// A layer, image or container: ID, name or unique ID prefix.
    #[arg(value_name = "ITEM", required = true)]
    pub items: Vec<String>,
}

/// `get-image-dir` and `get-image-run-dir`.
#[derive(Args, Debug)]
pub struct ImageDir {
    /// An image: ID, name or unique ID prefix.
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

/// `get-container-dir` and `get-container-run-dir`.
#[derive(Args, Debug)]
pub struct ContainerDir {
    /// A container: ID, name, its layer's ID or a unique ID prefix.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `layer-parent-owners`.
#[derive(Args, Debug)]
pub struct LayerParentOwners {
    #[command(flatten)]
    pub json: Json,
    /// A layer: ID, name or unique ID prefix.
    #[arg(value_name = "LAYER", required = true)]
    pub layers: Vec<String>,
}

/// `create-storage-layer`.
#[derive(Args, Debug)]
pub struct CreateStorageLayer {
    /// The mount label and `-r` are taken, as upstream's drivers take
    /// them, and not kept: a layer without a record has neither.
    #[command(flatten)]
    pub flags: NewLayerFlags,
    /// The new layer's parent: a layer, or a layer directory without a
    /// record (default: none).
    #[arg(value_name = "PARENT")]
    pub parent: Option<String>,
}

/// `applydiff-using-staging-dir`.
#[derive(Args, Debug)]
pub struct ApplyDiffUsingStagingDir {
    /// The layer: ID, name or unique ID prefix.
    #[arg(value_name = "LAYER")]
    pub layer: String,
    /// The staged directory whose content the layer gets.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// `config`.
#[derive(Args, Debug)]
pub struct Config {
    /// The storage.conf to read (default: the one that applies).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// `container-parent-owners`.
#[derive(Args, Debug)]
pub struct ContainerParentOwners {
    #[command(flatten)]
    pub json: Json,
    /// A container: ID, name, its layer's ID or a unique ID prefix.
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

/// `list-{layer,image,container}-data`. The variant names the item's
/// kind ([`item_is`]).
#[derive(Args, Debug)]
pub struct ListData {
    #[command(flatten)]
    pub json: Json,
    /// The item.
    #[arg(value_name = "ITEM")]
    pub item: String,
}

/// `get-{layer,image,container}-data`.
#[derive(Args, Debug)]
pub struct GetData {
    #[command(flatten)]
    pub file: FileFlag,
    /// The item (`index`: [`item_is`] moves it last).
    #[arg(value_name = "ITEM", index = 1)]
    pub item: String,
    /// The big data item's key.
    #[arg(value_name = "KEY", index = 2)]
    pub key: String,
}

/// `set-{layer,image,container}-data`.
#[derive(Args, Debug)]
pub struct SetData {
    #[command(flatten)]
    pub file: FileFlag,
    /// The item (`index`: [`item_is`] moves it last).
    #[arg(value_name = "ITEM", index = 1)]
    pub item: String,
    /// The big data item's key.
    #[arg(value_name = "KEY", index = 2)]
    pub key: String,
}

/// `get-{image,container}-data-{size,digest}`.
#[derive(Args, Debug)]
pub struct DataKey {
    /// The item (`index`: [`item_is`] moves it last).
    #[arg(value_name = "ITEM", index = 1)]
    pub item: String,
    /// The big data item's key.
    #[arg(value_name = "KEY", index = 2)]
    pub key: String,
}

/// Names the `item` argument of a big data command after its kind: used
/// as `#[command(mut_arg("item", item_is(Kind::Image)))]`. (clap's
/// `mut_arg` moves the argument last: positional fields after `item`
/// need an `index`.)
fn item_is(kind: Kind) -> impl FnOnce(Arg) -> Arg {
    let (name, help) = match kind {
        Kind::Layer => ("LAYER", "A layer: ID, name or unique ID prefix."),
        Kind::Image => ("IMAGE", "An image: ID, name or unique ID prefix."),
        Kind::Container => (
            "CONTAINER",
            "A container: ID, name, its layer's ID or a unique ID prefix.",
        ),
    };
    move |arg| arg.value_name(name).help(help)
}

/// `changes` and `diffsize`.
#[derive(Args, Debug)]
pub struct Changes {
    #[command(flatten)]
    pub json: Json,
    /// The layer or container.
    #[arg(value_name = "LAYER")]
    pub layer: String,
    /// The layer to compare with: only LAYER's parent (the default) is
    /// supported.
    #[arg(value_name = "FROM")]
    pub from: Option<String>,
}

/// `diffsize`.
#[derive(Args, Debug)]
pub struct DiffSize {
    /// The layer or container.
    #[arg(value_name = "LAYER")]
    pub layer: String,
    /// The layer to compare with: only LAYER's parent (the default) is
    /// supported.
    #[arg(value_name = "FROM")]
    pub from: Option<String>,
}

/// `copy`.
#[derive(Args, Debug)]
pub struct Copy {
    /// Owner of the copies: UID[:GID] (GID defaults to UID, as
    /// upstream's); container IDs of the destination layer's ID maps.
    /// A value that is no such pair fails the copy (exit 1), as
    /// upstream's does.
    #[arg(short = 'o', long = "chown", value_name = "UID[:GID]")]
    pub chown: Option<String>,
    /// Taken, as upstream takes it: `copy` prints nothing either way.
    #[command(flatten)]
    pub json: Json,
    /// What to copy: a host path, or LAYER:/PATH in a layer or container.
    #[arg(value_name = "SOURCE", required = true)]
    pub sources: Vec<String>,
    /// Where to copy it: LAYER:/PATH in a live layer or container.
    #[arg(value_name = "DEST")]
    pub dest: String,
}

/// The owner `--chown UID[:GID]` gives (a UID alone is UID:UID, as
/// upstream's `copy` reads it), or upstream's words for a bad value
/// (`bad UID: parsing "x": invalid syntax`).
pub fn owner(spec: &str) -> Result<(u32, u32), String> {
    let (uid, gid) = spec.split_once(':').unwrap_or((spec, spec));
    let number = |what: &str, text: &str| {
        text.parse::<u32>().map_err(|e| {
            let why = match e.kind() {
                std::num::IntErrorKind::PosOverflow => "value out of range",
                _ => "invalid syntax",
            };
            format!("bad {what}: parsing {text:?}: {why}")
        })
    };
    Ok((number("UID", uid)?, number("GID", gid)?))
}

/// `applydiff`.
#[derive(Args, Debug)]
pub struct ApplyDiff {
    /// Read the tar from this file (default: standard input, which must
    /// not be a terminal).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The layer (or container) to apply it to.
    #[arg(value_name = "LAYER")]
    pub layer: String,
}

/// `mount`.
#[derive(Args, Debug)]
pub struct Mount {
    /// The arguments are images, mounted read-only.
    #[arg(short = 'r', long = "read-only", visible_alias = "ro", bool_flag())]
    pub read_only: bool,
    /// Mount label.
    #[arg(short = 'l', long = "label")]
    pub label: Option<String>,
    /// Mount options: taken and not used, as upstream's `mount` does.
    #[arg(short = 'o', long = "opt", value_name = "OPTIONS")]
    pub opt: Option<String>,
    #[command(flatten)]
    pub json: Json,
    /// A layer or container (with -r, an image): ID, name or unique ID
    /// prefix.
    #[arg(value_name = "ITEM", required = true)]
    pub items: Vec<String>,
}

/// `unmount`.
#[derive(Args, Debug)]
pub struct Unmount {
    /// Unmount whatever the reference count.
    #[arg(short = 'f', long = "force", bool_flag())]
    pub force: bool,
    #[command(flatten)]
    pub json: Json,
    /// A mounted layer, container or image: ID, name or unique ID prefix.
    #[arg(value_name = "ITEM", required = true)]
    pub items: Vec<String>,
}

/// `mounted`.
#[derive(Args, Debug)]
pub struct Mounted {
    #[command(flatten)]
    pub json: Json,
    /// A layer or container: ID, name or unique ID prefix.
    #[arg(value_name = "ITEM", required = true)]
    pub items: Vec<String>,
}

/// `check`.
#[derive(Args, Debug)]
pub struct Check {
    /// Skip reading content: no chunk or digest verification.
    #[arg(short = 'q', long = "quick", bool_flag())]
    pub quick: bool,
    /// Remove what is damaged (images, then layers; containers with -f).
    #[arg(short = 'r', long = "repair", bool_flag())]
    pub repair: bool,
    /// With --repair, remove damaged containers too.
    #[arg(short = 'f', long = "force", bool_flag())]
    pub force: bool,
    /// Report layers no image or container uses once older than this
    /// (24h, 1h30m, 90s, 0).
    #[arg(short = 'm', long = "max", default_value = "24h", value_name = "DURATION",
          value_parser = parse_duration)]
    pub max: Duration,
    #[command(flatten)]
    pub json: Json,
}

impl Check {
    /// The library's options for this check.
    pub fn options(&self) -> CheckOptions {
        CheckOptions {
            quick: self.quick,
            repair: self.repair,
            force: self.force,
            max_unreferenced_age: self.max,
        }
    }
}

/// `gc`.
#[derive(Args, Debug)]
pub struct Gc {
    /// Report what would be removed, remove nothing.
    #[arg(short = 'n', long = "dry-run", bool_flag())]
    pub dry_run: bool,
    /// Print what was removed (without it, `gc` prints nothing, as
    /// upstream's: with `--json`, `""`).
    #[arg(short = 'v', long = "verbose", bool_flag())]
    pub verbose: bool,
    /// Evict materialized directories: `policy` (storage.conf), `all`
    /// (every unmounted sealed layer), `never`, or a duration (those
    /// unused for that long).
    #[arg(long = "evict", default_value = "policy", value_name = "WHICH")]
    pub evict: Evict,
    /// Rewrite a pack once more than this percentage of it is garbage
    /// (0: any garbage); packs with nothing live are always deleted.
    #[arg(long = "pack-garbage", default_value = "0", value_name = "PCT",
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub pack_garbage: u8,
    #[command(flatten)]
    pub json: Json,
}

impl Gc {
    /// The library's options for this collection.
    pub fn options(&self) -> GcOptions {
        GcOptions {
            dry_run: self.dry_run,
            evict: self.evict,
            pack_garbage: f64::from(self.pack_garbage) / 100.0,
        }
    }
}

/// `dedup`.
#[derive(Args, Debug)]
pub struct Dedup {
    /// How identical files are found: crc, size or sha256 (candidates
    /// are compared byte for byte whichever finds them).
    #[arg(long = "hash-method", default_value = "crc", value_name = "METHOD")]
    pub hash_method: HashMethod,
    #[command(flatten)]
    pub json: Json,
}

/// `shutdown`.
#[derive(Args, Debug)]
pub struct Shutdown {
    /// Unmount everything first.
    #[arg(short = 'f', long = "force", bool_flag())]
    pub force: bool,
    #[command(flatten)]
    pub json: Json,
}

/// `unshare`.
#[derive(Args, Debug)]
pub struct Unshare {
    /// The command and its arguments (default: $SHELL, else /bin/sh).
    #[arg(value_name = "COMMAND", allow_hyphen_values = true)]
    pub command: Vec<std::ffi::OsString>,
}

/// The commands, with upstream's names and aliases. The first line of a
/// doc comment is the summary `--help` lists; the rest, starting with
/// what the command prints, is shown by `COMMAND --help`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List layers.
    ///
    /// Prints each layer's ID, then `\tname: NAME` per name, and the
    /// images (`\timage: ID`) and containers (`\tcontainer: ID`) whose
    /// top layer it is, each followed by `\t\tname: NAME` lines. With -q,
    /// IDs only; with -t, a tree; with --json, an array of layer records.
    Layers(Layers),
    /// Show layers.
    ///
    /// Prints `ID: `, `UID mapping: `/`GID mapping: ` lines, `Parent: `,
    /// a `Name: ` line per name and `Read Only: true` for each layer found; with --json, an array of their
    /// records. Exits 1 when any is not known.
    Layer(Layer),
    /// Create an empty layer.
    ///
    /// With ID maps (--uidmap, --gidmap, --subuidmap, --subgidmap), its
    /// files are stored with host IDs; without, it maps IDs as its parent
    /// does (--hostuidmap/--hostgidmap: not at all). Prints the new layer's ID, then each of its names after a tab;
    /// with --json, its record.
    #[command(name = "create-layer", alias = "createlayer")]
    CreateLayer(CreateLayer),
    /// Import a layer from a tar stream (plain, gzip, zstd, xz or bzip2).
    ///
    /// The tar is read from -f FILE or from standard input (a pipe or a
    /// file, not a terminal). With ID maps, the files are stored with
    /// host IDs (tar UID 0 is the map's host ID for 0) and `diff` gives
    /// the tar back. Prints the new layer's ID, then each of its names
    /// after a tab; with --json, its record. On a terminal, a progress
    /// bar on stderr.
    #[command(name = "import-layer", alias = "importlayer")]
    ImportLayer(ImportLayer),
    /// Delete layers.
    ///
    /// Prints nothing when every layer is deleted; `LAYER: ERROR` on
    /// stderr for each that is not (exit 1). With --json, an object of
    /// each argument's error ("" when deleted).
    #[command(name = "delete-layer", alias = "deletelayer")]
    DeleteLayer(DeleteLayer),
    /// Write a layer's tar stream.
    ///
    /// Prints the tar (of a live layer or container: its changes) on
    /// standard output or into -f FILE, compressed as the layer was
    /// imported unless a compression flag says otherwise.
    Diff(Diff),
    /// List images.
    ///
    /// Prints each image's ID, then `\tname: `, `\tdigest: ` and `\tdata:
    /// ` lines; with -q, IDs only; with --json, an array of image records.
    Images(Images),
    /// List the images that have a digest.
    ///
    /// Prints what `images` prints, for the images with that digest.
    #[command(name = "images-by-digest")]
    ImagesByDigest(ImagesByDigest),
    /// Show images.
    ///
    /// Prints `ID: `, `Name: `, `Top Layer: `, `Digest: `, `Data: ` and
    /// `Size: ` lines for each image found; with --json, an array of their
    /// records. Exits 1 when any is not known.
    Image(Image),
    /// Create an image.
    ///
    /// Prints the new image's ID, then each of its names after a tab; with
    /// --json, its record.
    #[command(name = "create-image", alias = "createimage")]
    CreateImage(CreateImage),
    /// Delete images and the layers only they used.
    ///
    /// Prints on stderr `IMAGE: LAYER` for each layer deleted with it
    /// (with -t, that would be) and `IMAGE: ERROR` for each image that is
    /// not deleted (exit 1); with --json, an object of `deleted-layers`
    /// and `error` per argument.
    #[command(name = "delete-image", alias = "deleteimage")]
    DeleteImage(DeleteImage),
    /// List containers.
    ///
    /// Prints each container's ID, then `\tname: ` and `\tdata: ` lines;
    /// with --json, an array of container records.
    Containers(JsonOnly),
    /// Show containers.
    ///
    /// Prints `ID: `, `Name: `, `Image: `, `Image name: `, `Size: `,
    /// `Layer: ` and `Data: ` lines for each container found; with
    /// --json, an array of their records. Exits 1 when any is not known.
    Container(Container),
    /// Create a container on an image ("" for none).
    ///
    /// With ID maps other than those of the image's top layer, the
    /// container goes on a mapped copy of that layer (listed in the
    /// image's mapped-layers, reused by containers mapping the same way).
    /// Prints the new container's ID, then each of its names after a tab;
    /// with --json, its record.
    #[command(name = "create-container", alias = "createcontainer")]
    CreateContainer(CreateContainer),
    /// Delete containers and their layers.
    ///
    /// Prints nothing when every container is deleted; `CONTAINER: ERROR`
    /// on stderr for each that is not (exit 1). With --json, an object of
    /// each argument's error ("" when deleted).
    #[command(name = "delete-container", alias = "deletecontainer")]
    DeleteContainer(DeleteContainer),
    /// Print an item's names.
    ///
    /// Prints one name per line; with --json, an array.
    #[command(name = "get-names", alias = "getnames")]
    GetNames(GetNames),
    /// Add names to an item (a name another item holds moves).
    ///
    /// Prints nothing; with --json, the item's names after the change.
    #[command(name = "add-names", alias = "addnames")]
    AddNames(Names),
    /// Remove names from an item.
    ///
    /// Prints nothing; with --json, the item's names after the change.
    #[command(name = "remove-names", alias = "removenames")]
    RemoveNames(Names),
    /// Replace an item's names (a name another item holds moves).
    ///
    /// Prints nothing; with --json, the item's names after the change.
    #[command(name = "set-names", alias = "setnames")]
    SetNames(Names),
    /// Print items' metadata.
    ///
    /// Prints `ITEM: VALUE` per item found (with -q, the value only); with
    /// --json, an object of values. Exits 1 when any is not known.
    Metadata(Metadata),
    /// Set an item's metadata (-m VALUE or -f FILE).
    ///
    /// Prints nothing.
    #[command(name = "set-metadata", alias = "setmetadata")]
    SetMetadata(SetMetadata),
    /// Tell whether items exist.
    ///
    /// Prints `ITEM: true` or `ITEM: false` per argument (with -q,
    /// nothing); with --json, an object of booleans. Exits 1 when any is
    /// missing.
    Exists(Exists),
    /// Delete items without the usual checks.
    ///
    /// Prints nothing when every item is deleted; `ITEM: ERROR` on stderr
    /// for each that is not (exit 1). With --json, an object of each
    /// argument's error ("" when deleted).
    Delete(Delete),
    /// Print the userdata directory of an image.
    ///
    /// Prints the directory's path.
    #[command(name = "get-image-dir", alias = "getimagedir")]
    GetImageDir(ImageDir),
    /// Print the run-time userdata directory of an image.
    ///
    /// Prints the directory's path.
    #[command(name = "get-image-run-dir", alias = "getimagerundir")]
    GetImageRunDir(ImageDir),
    /// Print the userdata directory of a container.
    ///
    /// Prints the directory's path.
    #[command(name = "get-container-dir", alias = "getcontainerdir")]
    GetContainerDir(ContainerDir),
    /// Print the run-time userdata directory of a container.
    ///
    /// Prints the directory's path.
    #[command(name = "get-container-run-dir", alias = "getcontainerrundir")]
    GetContainerRunDir(ContainerDir),
    /// UIDs and GIDs owning the parent directories of a layer (none
    /// without ID mapping).
    ///
    /// Prints `ID: `, `UIDs: [...]` and `GIDs: [...]` per layer; with
    /// --json, an array.
    #[command(name = "layer-parent-owners")]
    LayerParentOwners(LayerParentOwners),
    /// UIDs and GIDs owning the parent directories of a container's layer.
    ///
    /// Prints `ID: `, `UIDs: [...]` and `GIDs: [...]` per container; with
    /// --json, an array.
    #[command(name = "container-parent-owners")]
    ContainerParentOwners(ContainerParentOwners),
    /// List the layer directories the driver holds.
    ///
    /// Prints one ID per line: every layer, and every layer directory
    /// no layer record knows (as `create-storage-layer` makes); with
    /// --json, an array.
    #[command(name = "storage-layers")]
    StorageLayers(JsonOnly),
    /// Create a layer directory in the driver without a layer record.
    ///
    /// Prints the new directory's ID; with --json, `{"id": ID}`. `check`
    /// reports it (`layer in lower level storage driver not accounted
    /// for`) and `check -r` removes it.
    #[command(name = "create-storage-layer")]
    CreateStorageLayer(CreateStorageLayer),
    /// Apply a staged directory as a layer's content.
    ///
    /// The directory (as a partial pull stages one, in overlay's format)
    /// is applied as applydiff applies a tar; it is read, not moved.
    /// Prints nothing.
    #[command(name = "applydiff-using-staging-dir")]
    ApplyDiffUsingStagingDir(ApplyDiffUsingStagingDir),
    /// List a layer's big data keys.
    ///
    /// Prints one key per line; with --json, an array.
    #[command(
        name = "list-layer-data",
        alias = "listlayerdata",
        mut_arg("item", item_is(Kind::Layer))
    )]
    ListLayerData(ListData),
    /// Write a layer's big data item.
    ///
    /// Prints the item's bytes on standard output or into -f FILE.
    #[command(
        name = "get-layer-data",
        alias = "getlayerdata",
        mut_arg("item", item_is(Kind::Layer))
    )]
    GetLayerData(GetData),
    /// Set a layer's big data item (from -f FILE or standard input).
    ///
    /// Prints nothing.
    #[command(
        name = "set-layer-data",
        alias = "setlayerdata",
        mut_arg("item", item_is(Kind::Layer))
    )]
    SetLayerData(SetData),
    /// List an image's big data keys.
    ///
    /// Prints one key per line; with --json, an array.
    #[command(
        name = "list-image-data",
        alias = "listimagedata",
        mut_arg("item", item_is(Kind::Image))
    )]
    ListImageData(ListData),
    /// Write an image's big data item.
    ///
    /// Prints the item's bytes on standard output or into -f FILE.
    #[command(
        name = "get-image-data",
        alias = "getimagedata",
        mut_arg("item", item_is(Kind::Image))
    )]
    GetImageData(GetData),
    /// Print the size of an image's big data item.
    ///
    /// Prints the size in bytes.
    #[command(
        name = "get-image-data-size",
        alias = "getimagedatasize",
        mut_arg("item", item_is(Kind::Image))
    )]
    GetImageDataSize(DataKey),
    /// Print the digest of an image's big data item.
    ///
    /// Prints `sha256:` and the item's hex digest.
    #[command(
        name = "get-image-data-digest",
        alias = "getimagedatadigest",
        mut_arg("item", item_is(Kind::Image))
    )]
    GetImageDataDigest(DataKey),
    /// Set an image's big data item (from -f FILE or standard input).
    ///
    /// Prints nothing.
    #[command(
        name = "set-image-data",
        alias = "setimagedata",
        mut_arg("item", item_is(Kind::Image))
    )]
    SetImageData(SetData),
    /// List a container's big data keys.
    ///
    /// Prints one key per line; with --json, an array.
    #[command(
        name = "list-container-data",
        alias = "listcontainerdata",
        mut_arg("item", item_is(Kind::Container))
    )]
    ListContainerData(ListData),
    /// Write a container's big data item.
    ///
    /// Prints the item's bytes on standard output or into -f FILE.
    #[command(
        name = "get-container-data",
        alias = "getcontainerdata",
        mut_arg("item", item_is(Kind::Container))
    )]
    GetContainerData(GetData),
    /// Print the size of a container's big data item.
    ///
    /// Prints the size in bytes.
    #[command(
        name = "get-container-data-size",
        alias = "getcontainerdatasize",
        mut_arg("item", item_is(Kind::Container))
    )]
    GetContainerDataSize(DataKey),
    /// Print the digest of a container's big data item.
    ///
    /// Prints `sha256:` and the item's hex digest.
    #[command(
        name = "get-container-data-digest",
        alias = "getcontainerdatadigest",
        mut_arg("item", item_is(Kind::Container))
    )]
    GetContainerDataDigest(DataKey),
    /// Set a container's big data item (from -f FILE or standard input).
    ///
    /// Prints nothing.
    #[command(
        name = "set-container-data",
        alias = "setcontainerdata",
        mut_arg("item", item_is(Kind::Container))
    )]
    SetContainerData(SetData),
    /// List a layer's changes relative to its parent.
    ///
    /// Prints `Add "/PATH"`, `Modify "/PATH"` or `Delete "/PATH"` per
    /// change; with --json, an array of `{"Path", "Kind"}` (Kind 0 modify,
    /// 1 add, 2 delete).
    Changes(Changes),
    /// Print the size of a layer's changes.
    ///
    /// Prints the size in bytes.
    #[command(name = "diffsize", alias = "diff-size")]
    DiffSize(DiffSize),
    /// Copy files into a live layer or container.
    ///
    /// Prints nothing.
    Copy(Copy),
    /// Apply a tar stream (plain or compressed) to a layer.
    ///
    /// The tar is read from -f FILE or from standard input (a pipe or a
    /// file, not a terminal). A layer with no content yet becomes sealed,
    /// as if imported; a live or container layer gets the tar applied to
    /// its directory. Prints nothing (on a terminal, a progress bar on
    /// stderr).
    #[command(name = "applydiff", alias = "apply-diff")]
    ApplyDiff(ApplyDiff),
    /// Mount layers or containers (with -r, images read-only).
    ///
    /// Prints each mountpoint; with --json, an array of `{"id",
    /// "mountpoint"}`. Mounts are reference counted.
    Mount(Mount),
    /// Drop a mount reference; unmount when none is left.
    ///
    /// Prints `ITEM mountpoint unmounted` when the last reference is gone,
    /// and `ITEM: ERROR` on stderr for each that fails (exit 1); with
    /// --json, an array of `{"id", "unmounted"}` or `{"id", "error"}`.
    #[command(alias = "umount")]
    Unmount(Unmount),
    /// Tell whether layers or containers are mounted.
    ///
    /// Prints `ITEM mounted` for each one mounted; with --json, an object
    /// of booleans.
    Mounted(Mounted),
    /// Check the store for damage (and with -r, repair it).
    ///
    /// Prints each problem as `layer ID: MESSAGE` (or `image`,
    /// `container`, a part of the pool); with -r, `repaired: ...` and
    /// `remaining: ...` lines on stderr; with --json, the report. Exits 1
    /// while problems remain.
    Check(Check),
    /// Remove what no record references; evict cold materialized layers.
    ///
    /// Prints `WHAT: N` for each kind of thing removed, `skipped: ...`
    /// lines, then `Freed N bytes` (with --dry-run, `Would free N
    /// bytes`); with --json, the report.
    Gc(Gc),
    /// Report bytes shared across layers; share identical materialized
    /// files.
    ///
    /// Prints `Deduplicated N bytes`; with --json, `{"Deduped": N,
    /// "Shared": N}`.
    Dedup(Dedup),
    /// Remove every container, image and layer.
    ///
    /// Prints nothing; with --json, `{}`.
    Wipe(JsonOnly),
    /// Release the store (with -f, unmount everything first).
    ///
    /// Prints nothing.
    Shutdown(Shutdown),
    /// Run a command in a user namespace.
    ///
    /// Without the host's root, the namespace maps the caller to root
    /// (and its subordinate IDs from 1 on, where newuidmap and newgidmap
    /// can map them); with it, the command runs as it is. Prints what the
    /// command prints; fails with `exit status N` when the command fails.
    Unshare(Unshare),
    /// Show the store's status and pool figures.
    ///
    /// Prints on stderr `Root: `, `Run Root: `, `Driver Name: `, `Driver
    /// Options: ` and the pool's figures; with --json, an array of
    /// `[label, value]` pairs on standard output.
    Status(JsonOnly),
    /// Show the version.
    ///
    /// Prints `Version: X`; with --json, `[["Version", X]]`.
    Version(JsonOnly),
    /// Print the storage configuration as JSON.
    ///
    /// Prints the options this command line would use (from FILE instead
    /// of the storage.conf that applies, when given), as upstream's
    /// StoreOptions JSON: `runroot`, `root`, `driver`, `driver-options`,
    /// `PullOptions`, ...
    Config(Config),
}
