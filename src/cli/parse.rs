//! From the command line to a [`Cli`], read as upstream's flag package
//! reads it: global flags before or after the command's name, the
//! command's flags up to its first positional argument or `--` (what
//! follows is positional, even `-x`), then upstream's words for a wrong
//! count (`CMD: more arguments required.`, `CMD: too many arguments.`,
//! exit 1) and for an unknown command (`NAME: unrecognized command.`,
//! exit 1, then the nearest commands). Anything else wrong with the flags
//! is clap's error, exit 125.
//!
//! The counts come from each command's positional fields in `args.rs`;
//! the flags that take a value, from their definitions there.

use std::ffi::OsString;

use clap::error::{ContextKind, ErrorKind};
use clap::{ArgAction, CommandFactory, FromArgMatches, Subcommand};

use super::args::{Cli, Command};

/// Why no command runs: what to print, and the exit code.
#[derive(Debug)]
pub enum Stop {
    /// clap's own text: help (exit 0), or a flag it cannot take (exit 125).
    Clap(clap::Error, i32),
    /// Upstream's words, one line each, on standard error.
    Message(Vec<String>, i32),
}

/// The command line parsed, and the command's name as reports use it.
#[derive(Debug)]
pub struct Parsed {
    pub cli: Cli,
    pub name: String,
    /// Whether a flag that places the store (`--graph`, `--run`,
    /// `--storage-driver`, `--storage-opt`) comes before the command: as
    /// upstream's CLI then reads no `storage.conf` of the system's.
    pub store_flags: bool,
}

/// Parses `argv` (the program's name first).
pub fn parse(argv: &[OsString]) -> Result<Parsed, Stop> {
    let mut definition = Cli::command();
    definition.build();
    let mut store_flags = false;
    let argv = match split(&definition, argv) {
        Some(split) => {
            check_count(split.command, split.positionals.len())?;
            store_flags = split.store_flags;
            split.rejoined(argv)
        }
        None => argv.to_vec(),
    };
    let matches = definition
        .try_get_matches_from(&argv)
        .map_err(|e| failure(e, &argv))?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| failure(e, &argv))?;
    let name = matches.subcommand_name().unwrap_or_default().to_string();
    Ok(Parsed {
        cli,
        name,
        store_flags,
    })
}

/// Minimum and maximum (`None`: any number) positional arguments of a
/// command, from its definition.
pub fn bounds(command: &clap::Command) -> (usize, Option<usize>) {
    let mut min = 0;
    let mut max = Some(0usize);
    for arg in command.get_positionals() {
        // Set on every argument when the command is built; a positional
        // argument left as it is takes one value.
        let range = arg
            .get_num_args()
            .unwrap_or(clap::builder::ValueRange::SINGLE);
        if arg.is_required_set() {
            min += range.min_values();
        }
        max = match range.max_values() {
            usize::MAX => None,
            n => max.map(|m| m + n),
        };
    }
    (min, max)
}

fn check_count(command: &clap::Command, count: usize) -> Result<(), Stop> {
    let (min, max) = bounds(command);
    let name = command.get_name();
    if count < min {
        return Err(Stop::Message(
            vec![format!("{name}: more arguments required.")],
            1,
        ));
    }
    if max.is_some_and(|max| count > max) {
        return Err(Stop::Message(
            vec![format!("{name}: too many arguments.")],
            1,
        ));
    }
    Ok(())
}

/// Where a command line's positional arguments are.
struct Split<'a> {
    /// The command's definition.
    command: &'a clap::Command,
    /// Where its flags end (at the first positional or at `--`).
    flags_end: usize,
    /// The positional arguments' indexes in `argv` (after a `--`).
    positionals: std::ops::Range<usize>,
    /// Whether a flag before the command places the store.
    store_flags: bool,
}

impl Split<'_> {
    /// `argv` with a `--` where the flags end, so that clap takes what
    /// follows as positional arguments whatever they look like.
    fn rejoined(&self, argv: &[OsString]) -> Vec<OsString> {
        let mut out = argv[..self.flags_end].to_vec();
        if !self.positionals.is_empty() {
            out.push("--".into());
            out.extend_from_slice(&argv[self.positionals.clone()]);
        }
        out
    }
}

/// Finds the command and its positional arguments, walking the flags as
/// their definitions say (which take a value, and how). `None` leaves
/// the whole line to clap: no command, one that is not ours (`help`), a
/// flag it does not know or help asked for.
fn split<'a>(definition: &'a clap::Command, argv: &[OsString]) -> Option<Split<'a>> {
    let mut i = 1;
    let mut store_flags = false;
    let name = loop {
        let token = argv.get(i)?.to_str()?;
        if token == "--" {
            return None;
        }
        if is_flag(token) {
            store_flags |= places_store(token);
            i += 1 + flag_operands(definition, token, argv.get(i + 1).is_some())?;
            continue;
        }
        break token;
    };
    let command = definition
        .get_subcommands()
        .find(|c| c.get_name() == name || c.get_all_aliases().any(|a| a == name))?;
    if !<Command as Subcommand>::has_subcommand(command.get_name()) {
        return None;
    }
    i += 1;
    while let Some(token) = argv.get(i) {
        let token = token.to_str()?;
        if token == "--" {
            return Some(Split {
                command,
                flags_end: i,
                positionals: i + 1..argv.len(),
                store_flags,
            });
        }
        if !is_flag(token) {
            break;
        }
        i += 1 + flag_operands(command, token, argv.get(i + 1).is_some())?;
    }
    Some(Split {
        command,
        flags_end: i,
        positionals: i..argv.len(),
        store_flags,
    })
}

/// Whether the flag `token` places the store: `--graph`, `--run`,
/// `--storage-driver`, `--storage-opt` (`=VALUE` or not), `-g`, `-R`,
/// `-s` (a value joined or not).
fn places_store(token: &str) -> bool {
    match token.strip_prefix("--") {
        Some(long) => {
            let name = long.split_once('=').map_or(long, |(name, _)| name);
            matches!(name, "graph" | "run" | "storage-driver" | "storage-opt")
        }
        None => matches!(token[1..].chars().next(), Some('g' | 'R' | 's')),
    }
}

fn is_flag(token: &str) -> bool {
    token.len() > 1 && token.starts_with('-')
}

/// How many of the following tokens the flag `token` (`--name`,
/// `--name=VALUE`, `-x`, `-xVALUE`, `-qj`) takes as its value: 0 or 1.
/// `None` for a flag `command` does not define, or help.
fn flag_operands(command: &clap::Command, token: &str, next: bool) -> Option<usize> {
    let takes_next = |arg: &clap::Arg| {
        arg.get_action().takes_values()
            && !arg.is_require_equals_set()
            && arg.get_num_args().is_some_and(|n| n.min_values() > 0)
            && next
    };
    let is_help = |arg: &clap::Arg| {
        matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
    };
    if let Some(long) = token.strip_prefix("--") {
        let (name, value) = match long.split_once('=') {
            Some((name, _)) => (name, true),
            None => (long, false),
        };
        let arg = command.get_arguments().find(|a| {
            a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|v| v.contains(&name))
        })?;
        if is_help(arg) {
            return None;
        }
        return Some(usize::from(!value && takes_next(arg)));
    }
    let shorts = &token[1..];
    for (at, c) in shorts.char_indices() {
        let arg = command.get_arguments().find(|a| {
            a.get_short() == Some(c) || a.get_all_short_aliases().is_some_and(|v| v.contains(&c))
        })?;
        if is_help(arg) {
            return None;
        }
        if !arg.get_action().takes_values() {
            continue;
        }
        let rest = &shorts[at + c.len_utf8()..];
        if arg.is_require_equals_set() {
            if rest.starts_with('=') {
                return Some(0);
            }
            continue;
        }
        return Some(usize::from(rest.is_empty() && takes_next(arg)));
    }
    Some(0)
}

/// clap's error as the exit it makes: help and version exit 0, an unknown
/// command 1 (upstream's words), anything else 125.
fn failure(e: clap::Error, argv: &[OsString]) -> Stop {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Stop::Clap(e, 0),
        ErrorKind::InvalidSubcommand => {
            let name = e
                .get(ContextKind::InvalidSubcommand)
                .map(|v| v.to_string())
                .unwrap_or_default();
            let mut lines = vec![format!("{name}: unrecognized command.")];
            lines.extend(did_you_mean(&nearest_commands(&name)).map(|h| format!("hint: {h}")));
            Stop::Message(lines, 1)
        }
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            Stop::Clap(e, if argv.len() <= 1 { 1 } else { 125 })
        }
        _ => Stop::Clap(e, 125),
    }
}

/// `did you mean `a`, `b` or `c`?`, or nothing for no names.
pub fn did_you_mean(names: &[String]) -> Option<String> {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    let list = match quoted.as_slice() {
        [] => return None,
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    };
    Some(format!("did you mean {list}?"))
}

/// The commands nearest to `typed` (at most three, nearest first): those
/// whose name, an alias or a word of the name (`import` of
/// `import-layer`) is within a few edits of it, and those whose name
/// contains it (three letters or more).
pub fn nearest_commands(typed: &str) -> Vec<String> {
    let most = 1 + typed.chars().count() / 4;
    let mut near: Vec<(usize, String)> = Vec::new();
    for command in Cli::command().get_subcommands() {
        let name = command.get_name();
        if !<Command as Subcommand>::has_subcommand(name) {
            continue;
        }
        let whole = std::iter::once(name)
            .chain(command.get_all_aliases())
            .map(|candidate| strsim::damerau_levenshtein(typed, candidate));
        // A word, or the name containing what was typed, ranks after a
        // whole name as near.
        let words = name
            .split('-')
            .map(|word| strsim::damerau_levenshtein(typed, word) + 1);
        let contained =
            (typed.len() >= 3 && name.contains(typed)).then(|| most + name.len() - typed.len());
        let distance = whole.chain(words).chain(contained).min();
        if let Some(d) = distance.filter(|d| *d <= most || contained.is_some()) {
            near.push((d, name.to_string()));
        }
    }
    near.sort();
    near.into_iter().take(3).map(|(_, name)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("containers-storage")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn message(args: &[&str]) -> (Vec<String>, i32) {
        match parse(&argv(args)) {
            Err(Stop::Message(lines, code)) => (lines, code),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn parsed(args: &[&str]) -> Command {
        match parse(&argv(args)) {
            Ok(parsed) => parsed.cli.command,
            Err(e) => panic!("{args:?}: {e:?}"),
        }
    }

    #[test]
    fn flags_end_at_the_first_positional_or_a_double_dash() {
        let Command::Layer(layer) = parsed(&["layer", "x", "-j"]) else {
            panic!()
        };
        assert_eq!(layer.layers, ["x", "-j"]);
        assert!(!layer.json.json);
        let Command::Layer(layer) = parsed(&["layer", "-j", "--", "-q"]) else {
            panic!()
        };
        assert_eq!(layer.layers, ["-q"]);
        assert!(layer.json.json);
        let Command::Diff(diff) = parsed(&["diff", "-f", "out", "-u", "l", "-c"]) else {
            panic!()
        };
        assert_eq!(
            (diff.layer.as_str(), diff.from.as_deref()),
            ("l", Some("-c"))
        );
        assert!(diff.uncompressed && !diff.gzip);
        assert_eq!(
            message(&["layers", "-q", "x", "-j"]),
            (vec!["layers: too many arguments.".to_string()], 1)
        );
    }

    #[test]
    fn flag_values_are_walked_as_defined() {
        // -f takes the next token; -fVALUE and --file=VALUE take none.
        for args in [
            &["import-layer", "-f", "t.tar", "p"][..],
            &["import-layer", "-ft.tar", "p"],
            &["import-layer", "--file=t.tar", "p"],
            &["import-layer", "--file", "t.tar", "p"],
            &["-g", "/g", "import-layer", "-r", "-f", "t.tar", "p"],
            &["import-layer", "-rj=false", "-D", "-f", "t.tar", "p"],
        ] {
            let Command::ImportLayer(import) = parsed(args) else {
                panic!()
            };
            assert_eq!(import.parent.as_deref(), Some("p"), "{args:?}");
            assert_eq!(import.file.as_deref(), Some("t.tar".as_ref()), "{args:?}");
        }
        // A boolean flag takes no following token: `-r p` leaves p.
        let Command::ImportLayer(import) = parsed(&["import-layer", "-r", "p"]) else {
            panic!()
        };
        assert!(import.flags.layer.read_only);
        assert_eq!(import.parent.as_deref(), Some("p"));
    }

    #[test]
    fn positional_fields_are_filled_in_order() {
        let Command::GetLayerData(get) = parsed(&["get-layer-data", "l", "k"]) else {
            panic!()
        };
        assert_eq!((get.item.as_str(), get.key.as_str()), ("l", "k"));
        let Command::SetImageData(set) = parsed(&["set-image-data", "i", "k"]) else {
            panic!()
        };
        assert_eq!((set.item.as_str(), set.key.as_str()), ("i", "k"));
        let Command::GetContainerDataDigest(get) = parsed(&["get-container-data-digest", "c", "k"])
        else {
            panic!()
        };
        assert_eq!((get.item.as_str(), get.key.as_str()), ("c", "k"));
        let Command::Copy(copy) = parsed(&["copy", "/a", "l:/b", "l:/c"]) else {
            panic!()
        };
        assert_eq!(
            (copy.sources, copy.dest.as_str()),
            (vec!["/a".into(), "l:/b".into()], "l:/c")
        );
    }

    #[test]
    fn option_values_are_parsed_by_clap() {
        let Command::Check(check) = parsed(&["check", "-m", "1h30m"]) else {
            panic!()
        };
        assert_eq!(check.max, std::time::Duration::from_secs(5400));
        let Command::Gc(gc) = parsed(&["gc", "--evict", "2h"]) else {
            panic!()
        };
        assert_eq!(
            gc.evict,
            containers_storage::store::Evict::After(std::time::Duration::from_secs(7200))
        );
        for args in [
            &["check", "-m", "soon"][..],
            &["gc", "--evict", "sometimes"],
            &["dedup", "--hash-method", "md5"],
            &["gc", "--pack-garbage", "101"],
        ] {
            match parse(&argv(args)) {
                Err(Stop::Clap(e, 125)) => assert_eq!(e.kind(), ErrorKind::ValueValidation),
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn help_is_left_to_clap() {
        for args in [
            &["layer", "--help"][..],
            &["layer", "-h"],
            &["help", "layer"],
        ] {
            match parse(&argv(args)) {
                Err(Stop::Clap(e, 0)) => assert_eq!(e.kind(), ErrorKind::DisplayHelp),
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_positional_has_a_name_and_a_description() {
        let mut definition = Cli::command();
        definition.build();
        for command in definition.get_subcommands() {
            let name = command.get_name();
            if !<Command as Subcommand>::has_subcommand(name) {
                continue;
            }
            for arg in command.get_positionals() {
                let id = arg.get_id();
                let value = arg.get_value_names().unwrap_or_default();
                assert!(
                    value.len() == 1 && value[0].as_str() != "ARG",
                    "{name}: positional {id:?} is named {value:?}"
                );
                if name.ends_with("-data") || name.contains("-data-") {
                    assert_ne!(value[0].as_str(), "ITEM", "{name}: which kind of item?");
                }
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(
                    help.len() > 10 && help != "The item.",
                    "{name}: positional {id:?} has no description"
                );
            }
            let about = command.get_long_about().map(|h| h.to_string());
            assert!(
                about.as_deref().is_some_and(|a| a.contains("Prints")),
                "{name}: its help does not say what it prints"
            );
        }
    }

    #[test]
    fn near_commands_are_suggested() {
        assert_eq!(nearest_commands("layrs")[0], "layers");
        assert!(nearest_commands("imags").contains(&"images".to_string()));
        assert!(nearest_commands("importlayr").contains(&"import-layer".to_string()));
        assert_eq!(nearest_commands("imprt")[0], "import-layer");
        assert_eq!(nearest_commands("import")[0], "import-layer");
        assert!(nearest_commands("frobnicate").is_empty());
        assert!(nearest_commands("x").is_empty());
        assert_eq!(
            did_you_mean(&["a".into(), "b".into(), "c".into()]).unwrap(),
            "did you mean `a`, `b` or `c`?"
        );
    }
}
