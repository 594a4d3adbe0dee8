//! The command-line front end: one handler per command, output formats,
//! progress bars, and the single place where errors are reported.

mod args;
mod diff;
mod layers;
mod output;
mod progress;
mod status;

use std::ffi::OsString;
use std::io::IsTerminal;

use clap::error::ErrorKind;
use clap::Parser;

use containers_storage::{Store, StoreOptions};

use args::{Cli, Command, Global};

/// What a handler returns: the exit code, or an error to report.
pub type Outcome = Result<i32, containers_storage::Error>;

/// Runs the command line `argv`; returns the exit code.
pub fn main(argv: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => return parse_failure(e, &argv),
    };
    if cli.global.debug == Some(true) {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::DEBUG)
            .init();
    }
    let name = command_name(&cli.command);
    let (min, max) = arg_bounds(&cli.command);
    let count = positional(&cli.command).len();
    if count < min {
        eprintln!("{name}: more arguments required.");
        return 1;
    }
    if max.is_some_and(|max| count > max) {
        eprintln!("{name}: too many arguments.");
        return 1;
    }
    let outcome = options(&cli.global).and_then(|options| {
        if let Command::Version { json, .. } = &cli.command {
            return status::version(json.json);
        }
        let store = Store::open(options)?;
        dispatch(&store, cli.command)
    });
    match outcome {
        Ok(code) => code,
        Err(e) => report(name, &e),
    }
}

/// Reports an error once; a closed output pipe is not an error.
fn report(name: &str, e: &containers_storage::Error) -> i32 {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return 0;
            }
        }
        source = inner.source();
    }
    eprintln!("{name}: {e}");
    1
}

fn parse_failure(e: clap::Error, argv: &[OsString]) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
        }
        ErrorKind::InvalidSubcommand => {
            let name = e
                .get(clap::error::ContextKind::InvalidSubcommand)
                .map(|v| v.to_string())
                .unwrap_or_default();
            eprintln!("{name}: unrecognized command.");
            1
        }
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if argv.len() <= 1 {
                1
            } else {
                125
            }
        }
        _ => {
            let _ = e.print();
            125
        }
    }
}

/// Store options: `storage.conf`, then environment, then flags.
fn options(global: &Global) -> containers_storage::Result<StoreOptions> {
    let conf = StoreOptions::config_path();
    let mut options = StoreOptions::from_config(conf.as_deref())?;
    if let Some(graph) = &global.graph {
        options.graph_root = graph.clone();
    }
    if let Some(run) = &global.run {
        options.run_root = run.clone();
    }
    if let Some(driver) = &global.driver {
        options.driver = driver.clone();
    }
    if let Ok(env) = std::env::var("STORAGE_OPTS") {
        options
            .driver_options
            .extend(env.split(',').filter(|s| !s.is_empty()).map(String::from));
    }
    options
        .driver_options
        .extend(global.storage_opts.iter().cloned());
    if let Some(store) = &global.image_store {
        options.image_store = Some(store.clone());
    }
    if let Some(transient) = global.transient_store {
        options.transient_store = transient;
    }
    options.validate()
}

fn dispatch(store: &Store, command: Command) -> Outcome {
    match command {
        Command::Layers {
            tree, quick, json, ..
        } => layers::list(store, tree, quick, json.json),
        Command::Layer { json, pos } => layers::show(store, &pos.args, json.json),
        Command::CreateLayer { flags, pos } => layers::create(store, &flags, pos.args.first()),
        Command::ImportLayer { flags, file, pos } => {
            layers::import(store, &flags, file.as_deref(), pos.args.first())
        }
        Command::DeleteLayer { json, pos } => layers::delete(store, &pos.args, json.json),
        Command::Diff {
            file,
            uncompressed,
            gzip,
            bzip2,
            xz,
            zstd,
            pos,
        } => {
            use containers_storage::Compression as C;
            let compression = [
                (uncompressed, C::None),
                (gzip, C::Gzip),
                (bzip2, C::Bzip2),
                (xz, C::Xz),
                (zstd, C::Zstd),
            ]
            .into_iter()
            .find(|(on, _)| *on)
            .map(|(_, c)| c);
            diff::diff(store, &pos.args, compression, file.as_deref())
        }
        Command::Status { json, .. } => status::status(store, json.json),
        Command::Version { json, .. } => status::version(json.json),
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Layers { .. } => "layers",
        Command::Layer { .. } => "layer",
        Command::CreateLayer { .. } => "create-layer",
        Command::ImportLayer { .. } => "import-layer",
        Command::DeleteLayer { .. } => "delete-layer",
        Command::Diff { .. } => "diff",
        Command::Status { .. } => "status",
        Command::Version { .. } => "version",
    }
}

/// Minimum and maximum positional arguments, as upstream's table says.
fn arg_bounds(command: &Command) -> (usize, Option<usize>) {
    match command {
        Command::Layers { .. } | Command::Status { .. } | Command::Version { .. } => (0, Some(0)),
        Command::Layer { .. } | Command::DeleteLayer { .. } => (1, None),
        Command::CreateLayer { .. } | Command::ImportLayer { .. } => (0, Some(1)),
        Command::Diff { .. } => (1, Some(2)),
    }
}

fn positional(command: &Command) -> &[String] {
    match command {
        Command::Layers { pos, .. }
        | Command::Layer { pos, .. }
        | Command::CreateLayer { pos, .. }
        | Command::ImportLayer { pos, .. }
        | Command::DeleteLayer { pos, .. }
        | Command::Diff { pos, .. }
        | Command::Status { pos, .. }
        | Command::Version { pos, .. } => &pos.args,
    }
}

/// Whether progress bars may be drawn.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
