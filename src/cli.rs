//! The command-line front end: one handler per command, output formats,
//! progress bars, and the single place where errors are reported.

mod admin;
mod args;
mod check;
mod containers;
mod data;
mod dedup;
mod diff;
mod gc;
mod images;
mod items;
mod layers;
mod mounts;
mod output;
mod progress;
mod status;

use std::ffi::OsString;
use std::io::IsTerminal;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};

use containers_storage::{Kind, NamesOp, Store, StoreOptions};

use args::{Cli, Command, Global};
use output::errln;

/// What a handler returns: the exit code, or an error to report.
pub type Outcome = Result<i32, containers_storage::Error>;

/// Runs the command line `argv`; returns the exit code.
pub fn main(argv: Vec<OsString>) -> i32 {
    let parsed = Cli::command()
        .try_get_matches_from(&argv)
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return parse_failure(e, &argv),
    };
    init_tracing(cli.global.debug == Some(true));
    let (name, sub) = matches.subcommand().expect("a subcommand is required");
    let count = sub.get_many::<String>("args").map_or(0, |v| v.count());
    let (min, max) = arg_bounds(name);
    if count < min {
        errln!("{name}: more arguments required.");
        return 1;
    }
    if max.is_some_and(|max| count > max) {
        errln!("{name}: too many arguments.");
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

/// Prints the library's warnings (with `--debug`, its debug events too) to
/// standard error, one line each: `warning: MESSAGE`.
fn init_tracing(debug: bool) {
    let level = if debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(stderr_is_terminal())
        .with_max_level(level)
        .event_format(EventLine)
        .init();
}

/// The format of [`init_tracing`]'s lines: the level in words, then the
/// message and its fields (no time, no module path).
struct EventLine;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for EventLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        write!(writer, "{level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
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
    errln!("{name}: {e}");
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
            errln!("{name}: unrecognized command.");
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
        Command::Images { quiet, json, .. } => images::list(store, None, quiet.quiet, json.json),
        Command::ImagesByDigest { quiet, json, pos } => {
            images::list(store, Some(&pos.args[0]), quiet.quiet, json.json)
        }
        Command::Image { json, pos } => images::show(store, &pos.args, json.json),
        Command::CreateImage { flags, digest, pos } => {
            images::create(store, &flags, digest, pos.args.first())
        }
        Command::DeleteImage { test, json, pos } => {
            images::delete(store, &pos.args, test, json.json)
        }
        Command::Containers { json, .. } => containers::list(store, json.json),
        Command::Container { json, pos } => containers::show(store, &pos.args, json.json),
        Command::CreateContainer {
            flags,
            volatile,
            pos,
        } => containers::create(store, &flags, volatile, &pos.args[0]),
        Command::DeleteContainer { json, pos } => {
            items::delete_each(&pos.args, json.json, |arg| store.delete_container(arg))
        }
        Command::Delete { json, pos } => {
            items::delete_each(&pos.args, json.json, |arg| store.delete(arg))
        }
        Command::GetNames { json, pos } => items::get_names(store, &pos.args[0], json.json),
        Command::AddNames { flags, pos } => {
            items::update_names(store, &pos.args[0], NamesOp::Add, &flags)
        }
        Command::RemoveNames { flags, pos } => {
            items::update_names(store, &pos.args[0], NamesOp::Remove, &flags)
        }
        Command::SetNames { flags, pos } => {
            items::update_names(store, &pos.args[0], NamesOp::Set, &flags)
        }
        Command::Metadata { quiet, json, pos } => {
            items::metadata(store, &pos.args, quiet.quiet, json.json)
        }
        Command::SetMetadata {
            metadata,
            file,
            pos,
        } => items::set_metadata(store, &pos.args[0], metadata, file.as_deref()),
        Command::Exists {
            quiet,
            layer,
            image,
            container,
            json,
            pos,
        } => {
            let kinds: Vec<Kind> = [
                (layer, Kind::Layer),
                (image, Kind::Image),
                (container, Kind::Container),
            ]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, k)| k)
            .collect();
            items::exists(store, &pos.args, &kinds, quiet.quiet, json.json)
        }
        Command::GetImageDir { pos } => items::print_dir(store.image_dir(&pos.args[0])),
        Command::GetImageRunDir { pos } => items::print_dir(store.image_run_dir(&pos.args[0])),
        Command::GetContainerDir { pos } => items::print_dir(store.container_dir(&pos.args[0])),
        Command::GetContainerRunDir { pos } => {
            items::print_dir(store.container_run_dir(&pos.args[0]))
        }
        Command::LayerParentOwners { json, pos } => {
            items::parent_owners(store, Kind::Layer, &pos.args, json.json)
        }
        Command::ContainerParentOwners { json, pos } => {
            items::parent_owners(store, Kind::Container, &pos.args, json.json)
        }
        Command::ListLayerData { json, pos } => {
            data::list(store, Kind::Layer, &pos.args[0], json.json)
        }
        Command::ListImageData { json, pos } => {
            data::list(store, Kind::Image, &pos.args[0], json.json)
        }
        Command::ListContainerData { json, pos } => {
            data::list(store, Kind::Container, &pos.args[0], json.json)
        }
        Command::GetLayerData { file, pos } => {
            data::get(store, Kind::Layer, &pos.args, file.file.as_deref())
        }
        Command::GetImageData { file, pos } => {
            data::get(store, Kind::Image, &pos.args, file.file.as_deref())
        }
        Command::GetContainerData { file, pos } => {
            data::get(store, Kind::Container, &pos.args, file.file.as_deref())
        }
        Command::SetLayerData { file, pos } => {
            data::set(store, Kind::Layer, &pos.args, file.file.as_deref())
        }
        Command::SetImageData { file, pos } => {
            data::set(store, Kind::Image, &pos.args, file.file.as_deref())
        }
        Command::SetContainerData { file, pos } => {
            data::set(store, Kind::Container, &pos.args, file.file.as_deref())
        }
        Command::GetImageDataSize { pos } => data::size(store, Kind::Image, &pos.args),
        Command::GetContainerDataSize { pos } => data::size(store, Kind::Container, &pos.args),
        Command::GetImageDataDigest { pos } => data::digest(store, Kind::Image, &pos.args),
        Command::GetContainerDataDigest { pos } => data::digest(store, Kind::Container, &pos.args),
        Command::Changes { json, pos } => layers::changes(store, &pos.args, json.json),
        Command::DiffSize { pos } => layers::diff_size(store, &pos.args),
        Command::Copy { chown, pos } => layers::copy(store, &pos.args, chown.as_deref()),
        Command::ApplyDiff { file, pos } => {
            layers::apply_diff(store, &pos.args[0], file.file.as_deref())
        }
        Command::Mount {
            read_only,
            label,
            json,
            pos,
        } => mounts::mount(store, &pos.args, read_only, label.as_deref(), json.json),
        Command::Unmount { force, json, pos } => {
            mounts::unmount(store, &pos.args, force, json.json)
        }
        Command::Mounted { json, pos } => mounts::mounted(store, &pos.args, json.json),
        Command::Check {
            quick,
            repair,
            force,
            max,
            json,
            ..
        } => check::check(store, quick, repair, force, &max, json.json),
        Command::Gc {
            dry_run,
            evict,
            pack_garbage,
            json,
            ..
        } => gc::gc(store, dry_run, &evict, pack_garbage, json.json),
        Command::Dedup {
            hash_method, json, ..
        } => dedup::dedup(store, &hash_method, json.json),
        Command::Wipe { json, .. } => admin::wipe(store, json.json),
        Command::Shutdown { force, .. } => admin::shutdown(store, force),
    }
}

/// Minimum and maximum positional arguments, as upstream's table says.
fn arg_bounds(name: &str) -> (usize, Option<usize>) {
    match name {
        "layers" | "status" | "version" | "images" | "containers" | "wipe" | "shutdown"
        | "check" | "gc" | "dedup" => (0, Some(0)),
        "create-layer" | "import-layer" | "create-image" => (0, Some(1)),
        "diff" | "changes" | "diffsize" => (1, Some(2)),
        "copy" => (2, None),
        "images-by-digest"
        | "create-container"
        | "get-names"
        | "add-names"
        | "remove-names"
        | "set-names"
        | "set-metadata"
        | "get-image-dir"
        | "get-image-run-dir"
        | "get-container-dir"
        | "get-container-run-dir"
        | "list-layer-data"
        | "list-image-data"
        | "list-container-data" => (1, Some(1)),
        "get-layer-data"
        | "set-layer-data"
        | "get-image-data"
        | "get-image-data-size"
        | "get-image-data-digest"
        | "set-image-data"
        | "get-container-data"
        | "get-container-data-size"
        | "get-container-data-digest"
        | "set-container-data" => (2, Some(2)),
        _ => (1, None),
    }
}

/// Whether progress bars may be drawn.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
