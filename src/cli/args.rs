//! Command-line definitions (clap). Handlers never see raw flags: they get
//! these parsed structures. Boolean flags accept `-x`, `--x` and
//! `--x=false`, as upstream's flag package does.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

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
    /// Storage driver option (repeatable).
    #[arg(long = "storage-opt", global = true, value_name = "OPT", action = ArgAction::Append)]
    pub storage_opts: Vec<String>,
    /// Split image store directory.
    #[arg(long = "image-store", global = true, value_name = "DIR")]
    pub image_store: Option<PathBuf>,
    /// Keep container records in the run root.
    #[arg(long = "transient-store", global = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub transient_store: Option<bool>,
    /// Print debug logging on stderr.
    #[arg(short = 'D', long = "debug", global = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub debug: Option<bool>,
}

/// `--json`/`-j`, shared by most commands.
#[derive(Args, Debug, Default)]
pub struct Json {
    /// Print the result as JSON.
    #[arg(short = 'j', long = "json", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    pub json: bool,
}

/// `-q/--quiet` (or `--quick`).
#[derive(Args, Debug, Default)]
pub struct Quiet {
    /// Print only IDs or values.
    #[arg(short = 'q', long = "quiet", alias = "quick", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
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
    #[arg(short = 'n', long = "name", action = ArgAction::Append)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub json: Json,
}

/// The flags of `create-image` and `create-container`.
#[derive(Args, Debug, Default)]
pub struct CreateFlags {
    /// Name (repeatable).
    #[arg(short = 'n', long = "name", action = ArgAction::Append)]
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
    #[arg(short = 'n', long = "name", action = ArgAction::Append)]
    pub names: Vec<String>,
    /// ID for the layer (default: random).
    #[arg(short = 'i', long = "id")]
    pub id: Option<String>,
    /// Mount label.
    #[arg(short = 'l', long = "label", default_value = "")]
    pub label: String,
    /// Create the layer read-only.
    #[arg(short = 'r', long = "readonly", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    pub read_only: bool,
    /// UID map (refused: this store does not remap IDs).
    #[arg(long = "uidmap")]
    pub uidmap: Option<String>,
    /// GID map (refused: this store does not remap IDs).
    #[arg(long = "gidmap")]
    pub gidmap: Option<String>,
    #[command(flatten)]
    pub json: Json,
}

/// Positional arguments, checked for count by the dispatcher.
#[derive(Args, Debug, Default)]
pub struct Positional {
    #[arg(num_args = 0.., value_name = "ARG")]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List layers.
    Layers {
        /// Show the layers as a tree.
        #[arg(short = 't', long = "tree", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        tree: bool,
        /// Print only IDs.
        #[arg(short = 'q', long = "quick", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        quick: bool,
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Show layers.
    Layer {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Create an empty layer.
    #[command(name = "create-layer", alias = "createlayer")]
    CreateLayer {
        #[command(flatten)]
        flags: LayerFlags,
        #[command(flatten)]
        pos: Positional,
    },
    /// Import a layer from a tar stream (plain, gzip, zstd, xz or bzip2).
    #[command(name = "import-layer", alias = "importlayer")]
    ImportLayer {
        #[command(flatten)]
        flags: LayerFlags,
        /// Read the tar from this file (default: standard input).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        #[command(flatten)]
        pos: Positional,
    },
    /// Delete layers.
    #[command(name = "delete-layer", alias = "deletelayer")]
    DeleteLayer {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Write a layer's tar stream.
    Diff {
        /// Write to this file (default: standard output).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Uncompressed.
        #[arg(short = 'u', long = "uncompressed", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        uncompressed: bool,
        /// gzip.
        #[arg(short = 'c', long = "gzip", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        gzip: bool,
        /// bzip2.
        #[arg(short = 'b', long = "bzip2", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        bzip2: bool,
        /// xz.
        #[arg(short = 'x', long = "xz", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        xz: bool,
        /// zstd.
        #[arg(long = "zstd", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        zstd: bool,
        #[command(flatten)]
        pos: Positional,
    },
    /// List images.
    Images {
        #[command(flatten)]
        quiet: Quiet,
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// List images that have a digest.
    #[command(name = "images-by-digest")]
    ImagesByDigest {
        #[command(flatten)]
        quiet: Quiet,
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Show images.
    Image {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Create an image.
    #[command(name = "create-image", alias = "createimage")]
    CreateImage {
        #[command(flatten)]
        flags: CreateFlags,
        /// The image's digest.
        #[arg(short = 'd', long = "digest")]
        digest: Option<String>,
        #[command(flatten)]
        pos: Positional,
    },
    /// Delete images and the layers only they used.
    #[command(name = "delete-image", alias = "deleteimage")]
    DeleteImage {
        /// Report what would be deleted, delete nothing.
        #[arg(short = 't', long = "test", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        test: bool,
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// List containers.
    Containers {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Show containers.
    Container {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Create a container on an image ("" for none).
    #[command(name = "create-container", alias = "createcontainer")]
    CreateContainer {
        #[command(flatten)]
        flags: CreateFlags,
        /// Mark the container volatile.
        #[arg(long = "volatile", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        volatile: bool,
        #[command(flatten)]
        pos: Positional,
    },
    /// Delete containers and their layers.
    #[command(name = "delete-container", alias = "deletecontainer")]
    DeleteContainer {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Print an item's names.
    #[command(name = "get-names", alias = "getnames")]
    GetNames {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Add names to an item.
    #[command(name = "add-names", alias = "addnames")]
    AddNames {
        #[command(flatten)]
        flags: NamesFlags,
        #[command(flatten)]
        pos: Positional,
    },
    /// Remove names from an item.
    #[command(name = "remove-names", alias = "removenames")]
    RemoveNames {
        #[command(flatten)]
        flags: NamesFlags,
        #[command(flatten)]
        pos: Positional,
    },
    /// Replace an item's names.
    #[command(name = "set-names", alias = "setnames")]
    SetNames {
        #[command(flatten)]
        flags: NamesFlags,
        #[command(flatten)]
        pos: Positional,
    },
    /// Print items' metadata.
    Metadata {
        #[command(flatten)]
        quiet: Quiet,
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Set an item's metadata.
    #[command(name = "set-metadata", alias = "setmetadata")]
    SetMetadata {
        /// The metadata.
        #[arg(short = 'm', long = "metadata")]
        metadata: Option<String>,
        /// Read the metadata from this file.
        #[arg(short = 'f', long = "metadata-file")]
        file: Option<PathBuf>,
        #[command(flatten)]
        pos: Positional,
    },
    /// Tell whether items exist.
    Exists {
        #[command(flatten)]
        quiet: Quiet,
        /// Only layers.
        #[arg(short = 'l', long = "layer", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        layer: bool,
        /// Only images.
        #[arg(short = 'i', long = "image", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        image: bool,
        /// Only containers.
        #[arg(short = 'c', long = "container", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        container: bool,
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Delete items without the usual checks.
    Delete {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Print the userdata directory of an image.
    #[command(name = "get-image-dir", alias = "getimagedir")]
    GetImageDir {
        #[command(flatten)]
        pos: Positional,
    },
    /// Print the run-time userdata directory of an image.
    #[command(name = "get-image-run-dir", alias = "getimagerundir")]
    GetImageRunDir {
        #[command(flatten)]
        pos: Positional,
    },
    /// Print the userdata directory of a container.
    #[command(name = "get-container-dir", alias = "getcontainerdir")]
    GetContainerDir {
        #[command(flatten)]
        pos: Positional,
    },
    /// Print the run-time userdata directory of a container.
    #[command(name = "get-container-run-dir", alias = "getcontainerrundir")]
    GetContainerRunDir {
        #[command(flatten)]
        pos: Positional,
    },
    /// UIDs and GIDs owning the parent directories of a layer (none
    /// without ID mapping).
    #[command(name = "layer-parent-owners")]
    LayerParentOwners {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// UIDs and GIDs owning the parent directories of a container's layer.
    #[command(name = "container-parent-owners")]
    ContainerParentOwners {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// List a layer's big data keys.
    #[command(name = "list-layer-data", alias = "listlayerdata")]
    ListLayerData {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Write a layer's big data item.
    #[command(name = "get-layer-data", alias = "getlayerdata")]
    GetLayerData {
        #[command(flatten)]
        file: FileFlag,
        #[command(flatten)]
        pos: Positional,
    },
    /// Set a layer's big data item.
    #[command(name = "set-layer-data", alias = "setlayerdata")]
    SetLayerData {
        #[command(flatten)]
        file: FileFlag,
        #[command(flatten)]
        pos: Positional,
    },
    /// List an image's big data keys.
    #[command(name = "list-image-data", alias = "listimagedata")]
    ListImageData {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Write an image's big data item.
    #[command(name = "get-image-data", alias = "getimagedata")]
    GetImageData {
        #[command(flatten)]
        file: FileFlag,
        #[command(flatten)]
        pos: Positional,
    },
    /// Print the size of an image's big data item.
    #[command(name = "get-image-data-size", alias = "getimagedatasize")]
    GetImageDataSize {
        #[command(flatten)]
        pos: Positional,
    },
    /// Print the digest of an image's big data item.
    #[command(name = "get-image-data-digest", alias = "getimagedatadigest")]
    GetImageDataDigest {
        #[command(flatten)]
        pos: Positional,
    },
    /// Set an image's big data item.
    #[command(name = "set-image-data", alias = "setimagedata")]
    SetImageData {
        #[command(flatten)]
        file: FileFlag,
        #[command(flatten)]
        pos: Positional,
    },
    /// List a container's big data keys.
    #[command(name = "list-container-data", alias = "listcontainerdata")]
    ListContainerData {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Write a container's big data item.
    #[command(name = "get-container-data", alias = "getcontainerdata")]
    GetContainerData {
        #[command(flatten)]
        file: FileFlag,
        #[command(flatten)]
        pos: Positional,
    },
    /// Print the size of a container's big data item.
    #[command(name = "get-container-data-size", alias = "getcontainerdatasize")]
    GetContainerDataSize {
        #[command(flatten)]
        pos: Positional,
    },
    /// Print the digest of a container's big data item.
    #[command(name = "get-container-data-digest", alias = "getcontainerdatadigest")]
    GetContainerDataDigest {
        #[command(flatten)]
        pos: Positional,
    },
    /// Set a container's big data item.
    #[command(name = "set-container-data", alias = "setcontainerdata")]
    SetContainerData {
        #[command(flatten)]
        file: FileFlag,
        #[command(flatten)]
        pos: Positional,
    },
    /// List a layer's changes relative to its parent.
    Changes {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Print the size of a layer's changes.
    #[command(name = "diffsize", alias = "diff-size")]
    DiffSize {
        #[command(flatten)]
        pos: Positional,
    },
    /// Copy files into a live layer: `copy [LAYER:]/SRC... LAYER:/DEST`.
    Copy {
        /// Owner of the copies: UID[:GID].
        #[arg(long = "chown")]
        chown: Option<String>,
        #[command(flatten)]
        pos: Positional,
    },
    /// Apply a tar stream (plain or compressed) to a layer with no content.
    #[command(name = "applydiff", alias = "apply-diff")]
    ApplyDiff {
        #[command(flatten)]
        file: FileFlag,
        #[command(flatten)]
        pos: Positional,
    },
    /// Mount layers or containers (with -r, images read-only).
    Mount {
        /// The arguments are images, mounted read-only.
        #[arg(short = 'r', long = "read-only", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        read_only: bool,
        /// Mount label.
        #[arg(short = 'l', long = "label")]
        label: Option<String>,
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Drop a mount reference; unmount when none is left.
    #[command(alias = "umount")]
    Unmount {
        /// Unmount whatever the reference count.
        #[arg(short = 'f', long = "force", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        force: bool,
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Tell whether layers or containers are mounted.
    Mounted {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Check the store for damage (and with -r, repair it).
    Check {
        /// Skip reading content: no chunk or digest verification.
        #[arg(short = 'q', long = "quick", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        quick: bool,
        /// Remove what is damaged (images, then layers; containers with -f).
        #[arg(short = 'r', long = "repair", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        repair: bool,
        /// With --repair, remove damaged containers too.
        #[arg(short = 'f', long = "force", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        force: bool,
        /// Report layers no image or container uses once older than this.
        #[arg(short = 'm', long = "max", default_value = "24h")]
        max: String,
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Remove what no record references; evict cold materialized layers.
    Gc {
        /// Report what would be removed, remove nothing.
        #[arg(short = 'n', long = "dry-run", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        dry_run: bool,
        /// Evict materialized directories: `policy` (storage.conf), `all`
        /// (every unmounted sealed layer), `never`, or a duration (those
        /// unused for that long).
        #[arg(long = "evict", default_value = "policy")]
        evict: String,
        /// Rewrite a pack once more than this percentage of it is garbage
        /// (0: any garbage); packs with nothing live are always deleted.
        #[arg(long = "pack-garbage", default_value = "0",
              value_parser = clap::value_parser!(u8).range(0..=100))]
        pack_garbage: u8,
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Report bytes shared across layers; share identical materialized files.
    Dedup {
        /// How files are compared: crc, size or sha256.
        #[arg(long = "hash-method", default_value = "sha256")]
        hash_method: String,
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Remove every container, image and layer.
    Wipe {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Release the store (with -f, unmount everything first).
    Shutdown {
        /// Unmount everything first.
        #[arg(short = 'f', long = "force", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false")]
        force: bool,
        #[command(flatten)]
        pos: Positional,
    },
    /// Show the store's status and pool figures.
    Status {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
    /// Show the version.
    Version {
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        pos: Positional,
    },
}
