//! The command line itself through the real binary: argument counts in
//! upstream's words for every command `--help` lists, where flags end,
//! aliases, option values parsed before anything runs (exit 125), help
//! that names and describes every argument, and the hints for a mistyped
//! command or a tar given without `-f`.

use crate::common;

use common::tar::{Meta, TarBuilder};
use common::{expect_status, stderr, stdout, Cs};

/// Upstream's argument counts (`minArgs`, `maxArgs`; `None`: any number),
/// as the compatibility contract lists them. Every command the binary
/// has must be here: a new one cannot slip through with no count.
const COUNTS: &[(&str, usize, Option<usize>)] = &[
    ("layers", 0, Some(0)),
    ("layer", 1, None),
    ("create-layer", 0, Some(1)),
    ("import-layer", 0, Some(1)),
    ("delete-layer", 1, None),
    ("diff", 1, Some(2)),
    ("images", 0, Some(0)),
    ("images-by-digest", 1, Some(1)),
    ("image", 1, None),
    ("create-image", 0, Some(1)),
    ("delete-image", 1, None),
    ("containers", 0, Some(0)),
    ("container", 1, None),
    ("create-container", 1, Some(1)),
    ("delete-container", 1, None),
    ("get-names", 1, Some(1)),
    ("add-names", 1, None),
    ("remove-names", 1, None),
    ("set-names", 1, None),
    ("metadata", 1, None),
    ("set-metadata", 1, Some(1)),
    ("exists", 1, None),
    ("delete", 1, None),
    ("get-image-dir", 1, Some(1)),
    ("get-image-run-dir", 1, Some(1)),
    ("get-container-dir", 1, Some(1)),
    ("get-container-run-dir", 1, Some(1)),
    ("layer-parent-owners", 1, None),
    ("container-parent-owners", 1, None),
    ("storage-layers", 0, Some(0)),
    ("create-storage-layer", 0, Some(1)),
    ("applydiff-using-staging-dir", 2, Some(2)),
    ("config", 0, Some(1)),
    ("list-layer-data", 1, Some(1)),
    ("get-layer-data", 2, Some(2)),
    ("set-layer-data", 2, Some(2)),
    ("list-image-data", 1, Some(1)),
    ("get-image-data", 2, Some(2)),
    ("get-image-data-size", 2, Some(2)),
    ("get-image-data-digest", 2, Some(2)),
    ("set-image-data", 2, Some(2)),
    ("list-container-data", 1, Some(1)),
    ("get-container-data", 2, Some(2)),
    ("get-container-data-size", 2, Some(2)),
    ("get-container-data-digest", 2, Some(2)),
    ("set-container-data", 2, Some(2)),
    ("changes", 1, Some(2)),
    ("diffsize", 1, Some(2)),
    ("copy", 2, None),
    ("applydiff", 1, Some(1)),
    ("mount", 1, None),
    ("unmount", 1, None),
    ("mounted", 1, None),
    ("check", 0, Some(0)),
    ("gc", 0, Some(0)),
    ("dedup", 0, Some(0)),
    ("wipe", 0, Some(0)),
    ("shutdown", 0, Some(0)),
    ("unshare", 0, None),
    ("status", 0, Some(0)),
    ("version", 0, Some(0)),
];

/// Upstream's aliases (and ours for `remove-names`).
const ALIASES: &[(&str, &str)] = &[
    ("createlayer", "create-layer"),
    ("importlayer", "import-layer"),
    ("deletelayer", "delete-layer"),
    ("createimage", "create-image"),
    ("deleteimage", "delete-image"),
    ("createcontainer", "create-container"),
    ("deletecontainer", "delete-container"),
    ("getnames", "get-names"),
    ("addnames", "add-names"),
    ("removenames", "remove-names"),
    ("setnames", "set-names"),
    ("setmetadata", "set-metadata"),
    ("getimagedir", "get-image-dir"),
    ("getimagerundir", "get-image-run-dir"),
    ("getcontainerdir", "get-container-dir"),
    ("getcontainerrundir", "get-container-run-dir"),
    ("listlayerdata", "list-layer-data"),
    ("getlayerdata", "get-layer-data"),
    ("setlayerdata", "set-layer-data"),
    ("listimagedata", "list-image-data"),
    ("getimagedata", "get-image-data"),
    ("getimagedatasize", "get-image-data-size"),
    ("getimagedatadigest", "get-image-data-digest"),
    ("setimagedata", "set-image-data"),
    ("listcontainerdata", "list-container-data"),
    ("getcontainerdata", "get-container-data"),
    ("getcontainerdatasize", "get-container-data-size"),
    ("getcontainerdatadigest", "get-container-data-digest"),
    ("setcontainerdata", "set-container-data"),
    ("diff-size", "diffsize"),
    ("apply-diff", "applydiff"),
    ("umount", "unmount"),
];

/// The commands `--help` lists (from the binary's own definitions).
fn listed_commands(cs: &Cs) -> Vec<String> {
    let help = cs.ok(&["--help"]);
    let list = help
        .split("Commands:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_else(|| panic!("no command list in --help:\n{help}"));
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect()
}

fn counts(name: &str) -> (usize, Option<usize>) {
    COUNTS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, min, max)| (*min, *max))
        .unwrap_or_else(|| panic!("{name}: not in the table of upstream's argument counts"))
}

/// Requires `args` to exit 1 with exactly `message` on stderr.
fn says(cs: &Cs, args: &[&str], message: &str) {
    let out = cs.run(args, None);
    expect_status(&out, args, 1);
    assert_eq!(stderr(&out), format!("{message}\n"), "{args:?}");
    assert_eq!(stdout(&out), "", "{args:?}");
}

#[test]
fn every_command_counts_its_arguments_in_upstreams_words() {
    let cs = Cs::new();
    let listed = listed_commands(&cs);
    let mut table: Vec<&str> = COUNTS.iter().map(|(n, _, _)| *n).collect();
    let mut have: Vec<&str> = listed.iter().map(String::as_str).collect();
    table.sort_unstable();
    have.sort_unstable();
    assert_eq!(
        have, table,
        "the commands --help lists and the table differ"
    );

    let words = ["a", "b", "c", "d"];
    for name in &listed {
        let (min, max) = counts(name);
        if min > 0 {
            let mut args = vec![name.as_str()];
            args.extend(&words[..min - 1]);
            says(&cs, &args, &format!("{name}: more arguments required."));
        }
        if let Some(max) = max {
            let mut args = vec![name.as_str()];
            args.extend(&words[..max + 1]);
            says(&cs, &args, &format!("{name}: too many arguments."));
        }
    }
    assert!(
        !cs.graph().exists(),
        "a wrong count is refused before the store is opened"
    );
}

#[test]
fn aliases_run_their_command() {
    let cs = Cs::new();
    for (alias, name) in ALIASES {
        let (min, max) = counts(name);
        let words = ["a", "b", "c", "d"];
        let (args, message) = match max {
            Some(max) => (&words[..max + 1], "too many arguments."),
            None => (&words[..min - 1], "more arguments required."),
        };
        let mut line = vec![*alias];
        line.extend(args);
        says(&cs, &line, &format!("{name}: {message}"));
    }
    let id = common::first_line_of(&cs.ok(&["createlayer", "-n", "by-alias"]));
    assert_eq!(cs.ok(&["getnames", &id]), "by-alias\n");
}

#[test]
fn flags_end_at_the_first_positional_argument_or_a_double_dash() {
    let cs = Cs::new();
    let id = common::first_line_of(&cs.ok(&["create-layer", "-n", "lay"]));
    // After the first positional argument, `-j` is an argument: a layer
    // that is not known, so no JSON and exit 1.
    let out = cs.run(&["layer", &id, "-j"], None);
    expect_status(&out, &["layer", &id, "-j"], 1);
    assert!(
        stdout(&out).starts_with(&format!("ID: {id}\n")),
        "{}",
        stdout(&out)
    );
    // Before it, a flag.
    let json: serde_json::Value = serde_json::from_str(&cs.ok(&["layer", "-j", &id])).unwrap();
    assert_eq!(json[0]["id"], id.as_str());
    // After `--`, arguments whatever they look like.
    let out = cs.run(&["exists", "-q", "--", "-l", "lay"], None);
    expect_status(&out, &["exists", "--", "-l"], 1);
    let out = cs.run(&["exists", "--", "-l", "lay"], None);
    assert_eq!(stdout(&out), "-l: false\nlay: true\n");
    // A flag's value may look like a command.
    let id2 = common::first_line_of(&cs.ok(&["create-layer", "-n", "layers"]));
    assert_eq!(cs.ok(&["get-names", &id2]), "layers\n");
    // Global flags after the command, before its arguments.
    cs.ok(&["layer", "--debug=false", "-D=false", &id]);
}

#[test]
fn bad_option_values_are_refused_before_anything_runs() {
    let cs = Cs::new();
    for (args, flag, says) in [
        (&["check", "-m", "soon"][..], "--max", "is not a duration"),
        (
            &["gc", "--evict", "sometimes"],
            "--evict",
            "is not a duration",
        ),
        (&["gc", "--pack-garbage", "101"], "--pack-garbage", "101"),
        (
            &["dedup", "--hash-method", "md5"],
            "--hash-method",
            "crc, size or sha256",
        ),
    ] {
        let out = cs.run(args, None);
        expect_status(&out, args, 125);
        let err = stderr(&out);
        assert!(err.contains(flag) && err.contains(says), "{args:?}: {err}");
        assert!(!cs.graph().exists(), "{args:?} opened the store");
    }
    cs.ok(&["gc", "--evict", "1h30m", "--pack-garbage", "50"]);
    cs.ok(&["check", "-m", "0"]);
    // `--chown` is read by `copy`, as upstream's: a bad value fails it
    // (exit 1) with upstream's words.
    let layer = cs.ok(&["create-layer"]);
    let dest = format!("{}:/x", layer.trim());
    for (chown, says) in [
        ("root", "bad UID: parsing \"root\": invalid syntax"),
        ("0:wheel", "bad GID: parsing \"wheel\": invalid syntax"),
        (
            "99999999999",
            "bad UID: parsing \"99999999999\": value out of range",
        ),
    ] {
        let args = ["copy", "--chown", chown, "/etc/hostname", &dest];
        let out = cs.run(&args, None);
        expect_status(&out, &args, 1);
        assert!(stderr(&out).contains(says), "{chown}: {}", stderr(&out));
    }
}

#[test]
fn help_names_and_describes_every_argument_and_what_is_printed() {
    let cs = Cs::new();
    for name in listed_commands(&cs) {
        let help = cs.ok(&[&name, "--help"]);
        assert!(
            help.contains("Prints"),
            "{name} --help says nothing of what it prints:\n{help}"
        );
        assert!(
            !help.contains("[ARG]") && !help.contains("<ARG>"),
            "{name} --help:\n{help}"
        );
        let usage = help
            .lines()
            .find(|l| l.starts_with("Usage: "))
            .unwrap_or_else(|| panic!("{name} --help has no usage line:\n{help}"));
        let positionals: Vec<&str> = usage
            .split_whitespace()
            .skip(3)
            .filter(|w| *w != "[OPTIONS]" && *w != "--")
            .collect();
        let (_, max) = counts(&name);
        assert_eq!(positionals.is_empty(), max == Some(0), "{name}: {usage}");
        for p in positionals {
            let p = p.trim_end_matches("...");
            let described = help
                .split_once(&format!("\n  {p}"))
                .map(|(_, rest)| rest.trim_start_matches("...").trim_start())
                .is_some_and(|rest| rest.len() > 20 && !rest.starts_with("Options:"));
            assert!(described, "{name}: {p} has no description:\n{help}");
        }
    }
    let help = cs.ok(&["import-layer", "--help"]);
    assert!(
        help.contains("[PARENT]") && help.contains("parent"),
        "{help}"
    );
    assert!(help.contains("-f FILE"), "{help}");
}

#[test]
fn a_mistyped_command_gets_the_nearest_ones_after_upstreams_line() {
    let cs = Cs::new();
    for (typed, hint) in [
        ("layrs", "`layers`, `layer`"),
        ("imprt", "`import-layer`"),
        ("umonut", "`unmount`"),
    ] {
        let out = cs.run(&[typed], None);
        expect_status(&out, &[typed], 1);
        let err = stderr(&out);
        let mut lines = err.lines();
        assert_eq!(
            lines.next(),
            Some(format!("{typed}: unrecognized command.").as_str())
        );
        let second = lines.next().unwrap_or_default();
        assert!(
            second.starts_with("hint: did you mean ") && second.contains(hint),
            "{typed}: {err}"
        );
    }
}

/// A small one-file tar.
fn small_tar() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.file("hello", &Meta::default(), b"hello\n");
    t.finish()
}

#[test]
fn a_tar_given_as_the_parent_gets_did_you_mean_dash_f() {
    let cs = Cs::new();
    let tar = cs.dir.path().join("doc.tar");
    std::fs::write(&tar, small_tar()).unwrap();
    let path = tar.to_str().unwrap();

    let out = cs.run(&["import-layer", path], None);
    expect_status(&out, &["import-layer", path], 1);
    assert_eq!(
        stderr(&out),
        format!(
            "import-layer: {path}: layer not known\n\
             hint: {path} is a file: did you mean `-f {path}`?\n"
        )
    );
    let out = cs.run(&["applydiff", path], None);
    expect_status(&out, &["applydiff", path], 1);
    assert_eq!(
        stderr(&out),
        format!(
            "applydiff: {path}: layer not known\n\
             hint: {path} is a file: did you mean `-f {path} LAYER`?\n"
        )
    );
    assert!(cs.layer_ids().is_empty());

    // With -f given, or where the name is a layer's, no hint: the file
    // is the parent as asked.
    let out = cs.run(&["import-layer", "-f", path, path], None);
    expect_status(&out, &["import-layer", "-f", path, path], 1);
    assert_eq!(
        stderr(&out),
        format!("import-layer: {path}: layer not known\n")
    );
    let parent = common::first_line_of(&cs.ok(&["create-layer", "-n", path]));
    let child = cs.import(&small_tar(), &[path]);
    assert_eq!(cs.layer_json(&child)["parent"], parent.as_str());
}

/// Runs the binary with `args` under `script(1)`, which gives it a
/// pseudo-terminal as standard input, output and error; returns its exit
/// code and the screen, or `None` (with the reason printed) when `script`
/// is missing. `timeout` ends a command that waits on the terminal.
fn on_terminal(cs: &Cs, args: &str) -> Option<(Option<i32>, String)> {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: script(1) is not installed");
        return None;
    }
    let shell = format!(
        "{} --graph {} --run {} --storage-driver vfs {args}",
        env!("CARGO_BIN_EXE_containers-storage"),
        cs.graph().display(),
        cs.run_root().display()
    );
    let out = std::process::Command::new("timeout")
        .args(["60", "script", "-qec", &shell, "/dev/null"])
        .env("CONTAINERS_STORAGE_CONF", "/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    Some((out.status.code(), screen))
}

#[test]
fn a_tar_is_not_read_from_a_terminal() {
    let cs = Cs::new();
    let layer = common::first_line_of(&cs.ok(&["create-layer"]));
    for args in ["import-layer", &format!("applydiff {layer}")] {
        let Some((code, screen)) = on_terminal(&cs, args) else {
            return;
        };
        let tail = &screen[screen.len().saturating_sub(400)..];
        assert_eq!(
            code,
            Some(1),
            "{args} on a terminal (124: it waited for input):\n...{tail}"
        );
        let name = args.split(' ').next().unwrap();
        assert_eq!(
            screen,
            format!(
                "{name}: standard input is a terminal, not a tar stream\n\
                 hint: give the tar as `-f FILE`, or on standard input from a pipe or a \
                 file (`< layer.tar`)\n"
            )
        );
    }
    assert_eq!(cs.layer_ids(), vec![layer.clone()], "nothing was imported");
    // From a pipe or a file, standard input is read, as upstream reads it.
    let tar = cs.dir.path().join("t.tar");
    std::fs::write(&tar, small_tar()).unwrap();
    let Some((code, screen)) = on_terminal(&cs, &format!("import-layer < {}", tar.display()))
    else {
        return;
    };
    assert_eq!(code, Some(0), "{screen}");
    let Some((code, screen)) = on_terminal(&cs, &format!("applydiff {layer} < {}", tar.display()))
    else {
        return;
    };
    assert_eq!(code, Some(0), "{screen}");
    assert_eq!(cs.layer_ids().len(), 2);
    assert_eq!(cs.import(&small_tar(), &[]).len(), 64);
}

/// The spellings upstream's newer CLI takes: `copy -o` (`--chown`) and
/// `copy -j`, `mount --ro` and `mount -o OPTIONS`, `diff --bz2`, and
/// extra arguments to the names commands, which it ignores.
#[test]
fn upstreams_newer_spellings_are_taken() {
    let cs = Cs::new();
    let layer = cs.import(&small_tar(), &[]);
    let image = common::first_line_of(&cs.ok(&["create-image", "-n", "img", &layer]));
    let top = common::first_line_of(&cs.ok(&["create-layer", "-n", "top", &layer]));
    let src = cs.dir.path().join("copied");
    std::fs::write(&src, b"copied\n").unwrap();
    cs.ok(&[
        "copy",
        "-j",
        "-o",
        "7:8",
        src.to_str().unwrap(),
        "top:/copied",
    ]);
    let mnt = common::first_line_of(&cs.ok(&["mount", "-o", "ro", "top"]));
    let meta = std::fs::metadata(std::path::Path::new(&mnt).join("copied")).unwrap();
    use std::os::unix::fs::MetadataExt;
    if nix::unistd::geteuid().is_root() {
        assert_eq!((meta.uid(), meta.gid()), (7, 8));
    }
    cs.ok(&["unmount", "top"]);
    let mnt = common::first_line_of(&cs.ok(&["mount", "--ro", &image]));
    assert_eq!(
        std::fs::read(std::path::Path::new(&mnt).join("hello")).unwrap(),
        b"hello\n"
    );
    cs.ok(&["unmount", &image]);
    assert_eq!(
        cs.ok_bytes(&["diff", "--bz2", &layer]),
        cs.ok_bytes(&["diff", "-b", &layer])
    );
    cs.ok(&["add-names", "-n", "more", "top", "ignored", "also-ignored"]);
    cs.ok(&["remove-names", "-n", "top", &top, "ignored"]);
    cs.ok(&["set-names", "-n", "last", "more", "ignored"]);
    assert_eq!(cs.ok(&["get-names", &top]), "last\n");
    assert!(!cs.run(&["exists", "ignored"], None).status.success());
}
