//! The command-line front end: the definitions (`args`) and how a command
//! line is read against them (`parse`), one handler per command, output
//! formats, progress bars, and the single place where errors are
//! reported ([`report`]).

mod admin;
mod args;
mod check;
mod containers;
mod data;
mod dedup;
mod diff;
mod gc;
mod images;
mod input;
mod items;
mod layers;
mod mounts;
mod output;
mod parse;
mod progress;
mod status;
mod storage;
mod unshare;

use std::ffi::OsString;
use std::io::IsTerminal;

use containers_storage::{Error, Kind, NamesOp, Store, StoreOptions};

use args::{Command, Global};
use output::errln;
use parse::{Parsed, Stop};

/// What a handler returns: the exit code, or why it failed.
pub type Outcome = Result<i32, Failure>;

/// Why a command failed, reported once by [`report`]: `COMMAND: ERROR`,
/// then `hint: ...` when there is something to suggest.
#[derive(Debug)]
pub struct Failure {
    cause: Cause,
    hint: Option<String>,
}

#[derive(Debug)]
enum Cause {
    /// The library's error.
    Store(Error),
    /// The command line asks for something that cannot be done as given.
    Usage(String),
}

impl Failure {
    /// A command line that cannot be done as given.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            cause: Cause::Usage(message.into()),
            hint: None,
        }
    }

    /// The same failure, with a suggestion printed after it.
    pub fn with_hint(self, hint: impl Into<String>) -> Failure {
        Failure {
            hint: Some(hint.into()),
            ..self
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure {
            cause: Cause::Store(e),
            hint: None,
        }
    }
}

/// Runs the command line `argv`; returns the exit code.
pub fn main(argv: Vec<OsString>) -> i32 {
    let Parsed {
        cli,
        name,
        store_flags,
    } = match parse::parse(&argv) {
        Ok(parsed) => parsed,
        Err(Stop::Clap(e, code)) => {
            let _ = e.print();
            return code;
        }
        Err(Stop::Message(lines, code)) => {
            for line in lines {
                errln!("{line}");
            }
            return code;
        }
    };
    init_tracing(cli.global.debug == Some(true));
    let conf = match &cli.command {
        Command::Config(a) if a.file.is_some() => Ok(a.file.clone()),
        _ => StoreOptions::config_path(!store_flags),
    };
    let outcome = conf
        .and_then(|conf| Ok((options(&cli.global, conf.as_deref())?, conf)))
        .map_err(Failure::from)
        .and_then(|(options, conf)| {
            if let Command::Version(a) = &cli.command {
                return status::version(a.json.json);
            }
            if let Command::Config(_) = &cli.command {
                return storage::config(&options, conf.as_deref());
            }
            let store = Store::open(options)?;
            dispatch(&store, cli.command)
        });
    match outcome {
        Ok(code) => code,
        Err(failure) => report(&name, &failure),
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

/// Reports a failure once; a closed output pipe is not an error.
fn report(name: &str, failure: &Failure) -> i32 {
    match &failure.cause {
        Cause::Store(e) => {
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
        }
        Cause::Usage(message) => errln!("{name}: {message}"),
    }
    if let Some(hint) = &failure.hint {
        errln!("hint: {hint}");
    }
    1
}

/// Store options: `storage.conf` (the file at `conf`), then environment,
/// then flags.
fn options(
    global: &Global,
    conf: Option<&std::path::Path>,
) -> containers_storage::Result<StoreOptions> {
    let mut options = StoreOptions::from_config(conf)?;
    if let Some(graph) = &global.graph {
        options.graph_root = graph.clone();
    }
    if let Some(run) = &global.run {
        options.run_root = run.clone();
    }
    // An empty one (`STORAGE_DRIVER=`, `-s ''`) is none, as upstream has it.
    if let Some(driver) = global.driver.as_ref().filter(|d| !d.is_empty()) {
        options.driver = driver.clone();
    }
    // Set, even empty, it replaces the file's, as upstream's does.
    if let Ok(env) = std::env::var("STORAGE_OPTS") {
        options.driver_options = env
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
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
    use Command as C;
    match command {
        C::Layers(a) => layers::list(store, &a),
        C::Layer(a) => layers::show(store, &a),
        C::CreateLayer(a) => layers::create(store, &a),
        C::ImportLayer(a) => layers::import(store, &a),
        C::DeleteLayer(a) => layers::delete(store, &a),
        C::Diff(a) => diff::diff(store, &a),
        C::Images(a) => images::list(store, &a, None),
        C::ImagesByDigest(a) => images::list(store, &a.listing, Some(&a.digest)),
        C::Image(a) => images::show(store, &a),
        C::CreateImage(a) => images::create(store, &a),
        C::DeleteImage(a) => images::delete(store, &a),
        C::Containers(a) => containers::list(store, a.json.json),
        C::Container(a) => containers::show(store, &a),
        C::CreateContainer(a) => containers::create(store, &a),
        C::DeleteContainer(a) => items::delete_each(
            &a.containers,
            a.json.json,
            "identifier is not a container",
            |arg| store.delete_container(arg),
        ),
        C::Delete(a) => items::delete_each(&a.items, a.json.json, "layer not known", |arg| {
            store.delete(arg)
        }),
        C::GetNames(a) => items::get_names(store, &a),
        C::AddNames(a) => items::update_names(store, &a, NamesOp::Add),
        C::RemoveNames(a) => items::update_names(store, &a, NamesOp::Remove),
        C::SetNames(a) => items::update_names(store, &a, NamesOp::Set),
        C::Metadata(a) => items::metadata(store, &a),
        C::SetMetadata(a) => items::set_metadata(store, &a),
        C::Exists(a) => items::exists(store, &a),
        C::GetImageDir(a) => items::print_dir(store.image_dir(&a.image)),
        C::GetImageRunDir(a) => items::print_dir(store.image_run_dir(&a.image)),
        C::GetContainerDir(a) => items::print_dir(store.container_dir(&a.container)),
        C::GetContainerRunDir(a) => items::print_dir(store.container_run_dir(&a.container)),
        C::LayerParentOwners(a) => items::parent_owners(store, Kind::Layer, &a.layers, a.json.json),
        C::StorageLayers(a) => storage::storage_layers(store, a.json.json),
        C::CreateStorageLayer(a) => storage::create_storage_layer(store, &a),
        C::ApplyDiffUsingStagingDir(a) => storage::apply_diff_using_staging_dir(store, &a),
        C::ContainerParentOwners(a) => {
            items::parent_owners(store, Kind::Container, &a.containers, a.json.json)
        }
        C::ListLayerData(a) => data::list(store, Kind::Layer, &a),
        C::ListImageData(a) => data::list(store, Kind::Image, &a),
        C::ListContainerData(a) => data::list(store, Kind::Container, &a),
        C::GetLayerData(a) => data::get(store, Kind::Layer, &a),
        C::GetImageData(a) => data::get(store, Kind::Image, &a),
        C::GetContainerData(a) => data::get(store, Kind::Container, &a),
        C::SetLayerData(a) => data::set(store, Kind::Layer, &a),
        C::SetImageData(a) => data::set(store, Kind::Image, &a),
        C::SetContainerData(a) => data::set(store, Kind::Container, &a),
        C::GetImageDataSize(a) => data::size(store, Kind::Image, &a),
        C::GetContainerDataSize(a) => data::size(store, Kind::Container, &a),
        C::GetImageDataDigest(a) => data::digest(store, Kind::Image, &a),
        C::GetContainerDataDigest(a) => data::digest(store, Kind::Container, &a),
        C::Changes(a) => layers::changes(store, &a),
        C::DiffSize(a) => layers::diff_size(store, &a),
        C::Copy(a) => layers::copy(store, &a),
        C::ApplyDiff(a) => layers::apply_diff(store, &a),
        C::Mount(a) => mounts::mount(store, &a),
        C::Unmount(a) => mounts::unmount(store, &a),
        C::Mounted(a) => mounts::mounted(store, &a),
        C::Check(a) => check::check(store, &a),
        C::Gc(a) => gc::gc(store, &a),
        C::Dedup(a) => dedup::dedup(store, &a),
        C::Wipe(a) => admin::wipe(store, a.json.json),
        C::Shutdown(a) => admin::shutdown(store, a.force, a.json.json),
        C::Unshare(a) => unshare::unshare(&a.command),
        C::Status(a) => status::status(store, a.json.json),
        C::Version(a) => status::version(a.json.json),
        C::Config(_) => Err(Failure::usage("config is answered before the store opens")),
    }
}

/// Whether progress bars may be drawn.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
