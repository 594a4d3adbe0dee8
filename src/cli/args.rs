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
