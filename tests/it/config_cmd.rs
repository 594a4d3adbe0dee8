//! `config [FILE]` through the CLI: the options the command line would
//! use, as upstream's StoreOptions JSON (`runroot`, `root`, `driver`,
//! `driver-options`, `PullOptions`, ...), from FILE when given; it needs
//! no store.

use crate::common;

use common::Cs;

#[test]
fn config_prints_the_effective_options_as_upstreams_json() {
    let cs = Cs::new();
    let out = cs.ok(&["config"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["root"], cs.graph().to_str().unwrap());
    assert_eq!(v["runroot"], cs.run_root().to_str().unwrap());
    assert_eq!(v["driver"], "vfs");
    assert_eq!(v["PullOptions"], serde_json::Value::Null);
    assert!(v.get("driver-options").is_none(), "{v}");
    assert!(!cs.graph().exists(), "config opened the store");

    let conf = cs.dir.path().join("storage.conf");
    std::fs::write(
        &conf,
        "[storage]\ndriver = \"overlay\"\ngraphroot = \"/conf/graph\"\n\
         rootless_storage_path = \"/conf/rootless\"\n\
         [storage.options]\nmaterialized_evict_after = \"1h\"\n\
         [storage.options.overlay]\nmountopt = \"nodev\"\n\
         [storage.options.pull_options]\nenable_partial_images = \"true\"\nuse_hard_links = false\n",
    )
    .unwrap();
    // FILE instead of the storage.conf that applies; flags still win.
    let v = cs.json(&["config", conf.to_str().unwrap()]);
    assert_eq!(v["root"], cs.graph().to_str().unwrap(), "{v}");
    assert_eq!(v["driver"], "vfs", "{v}");
    assert_eq!(v["RootlessStoragePath"], "/conf/rootless", "{v}");
    assert_eq!(
        v["driver-options"],
        serde_json::json!(["overlay.mountopt=nodev"])
    );
    assert_eq!(
        v["PullOptions"],
        serde_json::json!({"enable_partial_images": "true", "use_hard_links": "false"})
    );

    // Without root flags, the file's roots.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_containers-storage"));
    cmd.env("CONTAINERS_STORAGE_CONF", &conf)
        .env_remove("STORAGE_DRIVER")
        .env_remove("STORAGE_OPTS")
        .arg("config");
    let out = common::run_command(cmd, None);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["root"], "/conf/graph");
    assert_eq!(v["driver"], "overlay");
    // `STORAGE_OPTS`, when set (even empty), replaces the file's driver
    // options, as upstream's does.
    for (env, want) in [
        ("overlay.size=1G", serde_json::json!(["overlay.size=1G"])),
        ("", serde_json::json!([])),
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_containers-storage"));
        cmd.env("CONTAINERS_STORAGE_CONF", &conf)
            .env_remove("STORAGE_DRIVER")
            .env("STORAGE_OPTS", env)
            .arg("config");
        let out = common::run_command(cmd, None);
        assert!(out.status.success(), "{}", common::stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let options = v
            .get("driver-options")
            .cloned()
            .unwrap_or(serde_json::json!([]));
        assert_eq!(options, want, "STORAGE_OPTS={env:?}: {v}");
    }

    let err = cs.fails(&["config", "/nonexistent/dir/storage.conf", "extra"], None);
    assert!(err.contains("config: too many arguments."), "{err}");
}

/// A `storage.conf` that `CONTAINERS_STORAGE_CONF` names and that is not
/// there fails every command, as upstream's: a mistyped path must not put
/// the system's store (or its defaults) in its place, root flags or not.
#[test]
fn a_missing_file_that_containers_storage_conf_names_is_an_error() {
    let cs = Cs::new();
    let missing = cs.dir.path().join("no-such.conf");
    for (conf, flags) in [
        (missing.as_os_str(), true),
        (missing.as_os_str(), false),
        (std::ffi::OsStr::new(""), false),
    ] {
        let mut cmd = match flags {
            true => cs.command(),
            false => std::process::Command::new(env!("CARGO_BIN_EXE_containers-storage")),
        };
        cmd.env("CONTAINERS_STORAGE_CONF", conf).arg("status");
        let out = common::run_command(cmd, None);
        assert_eq!(out.status.code(), Some(1), "{conf:?}");
        let err = common::stderr(&out);
        assert!(
            err.contains(&format!(
                "stat {}: No such file or directory",
                conf.to_string_lossy()
            )),
            "{err}"
        );
        assert!(!cs.graph().exists(), "{conf:?}: a store was opened");
    }
}

/// An empty driver (`STORAGE_DRIVER=`, `-s ''`) is none, as upstream has
/// it: the configured one applies.
#[test]
fn an_empty_driver_is_none() {
    let cs = Cs::new();
    let conf = cs.dir.path().join("storage.conf");
    std::fs::write(&conf, "[storage]\ndriver = \"vfs\"\n").unwrap();
    for (env, flags) in [(Some(""), &[][..]), (None, &["-s", ""][..])] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_containers-storage"));
        cmd.env("CONTAINERS_STORAGE_CONF", &conf)
            .env_remove("STORAGE_DRIVER")
            .env_remove("STORAGE_OPTS");
        if let Some(value) = env {
            cmd.env("STORAGE_DRIVER", value);
        }
        cmd.args(flags).arg("config");
        let out = common::run_command(cmd, None);
        assert!(out.status.success(), "{}", common::stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["driver"], "vfs", "{env:?} {flags:?}");
    }
}

/// Without `CONTAINERS_STORAGE_CONF` and a user's own file, the system's
/// `storage.conf` applies: `/etc/containers/storage.conf`, else the
/// distribution's `/usr/share/containers/storage.conf`, as upstream
/// reads them. A user without root takes its pull options but keeps his
/// own roots (root's would be refused him). A command line that places
/// the store itself (`--graph` before the command) reads no system file,
/// as upstream's.
#[test]
fn the_system_storage_conf_applies_but_not_its_roots_to_a_user_without_root() {
    use std::os::unix::process::CommandExt;
    let system = [
        "/etc/containers/storage.conf",
        "/usr/share/containers/storage.conf",
    ]
    .into_iter()
    .map(std::path::Path::new)
    .find(|p| p.exists());
    let Some(system) = system else {
        eprintln!("skipping: this host has no system storage.conf");
        return;
    };
    let conf: toml::Value = toml::from_str(&std::fs::read_to_string(system).unwrap()).unwrap();
    let graphroot = conf["storage"].get("graphroot").and_then(|g| g.as_str());
    // The file's pull options, as upstream's `config` prints them.
    let pull_options = conf["storage"]
        .get("options")
        .and_then(|o| o.get("pull_options"))
        .and_then(|p| p.as_table())
        .map(|table| {
            let strings = table.iter().map(|(k, v)| {
                let text = v
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string());
                (k.clone(), serde_json::Value::from(text))
            });
            serde_json::Value::Object(strings.collect())
        })
        .unwrap_or(serde_json::Value::Null);
    let cs = Cs::new();
    let home = cs.dir.path().join("home");
    let config = |user: Option<u32>, flags: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_containers-storage"));
        cmd.args(flags);
        for var in [
            "CONTAINERS_STORAGE_CONF",
            "STORAGE_DRIVER",
            "STORAGE_OPTS",
            "XDG_DATA_HOME",
            "XDG_RUNTIME_DIR",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .current_dir(cs.dir.path())
            .arg("config");
        if let Some(uid) = user {
            cmd.uid(uid).gid(uid);
        }
        let out = common::run_command(cmd, None);
        common::expect_status(&out, &["config"], 0);
        serde_json::from_str::<serde_json::Value>(&common::stdout(&out)).unwrap()
    };
    let user = if nix::unistd::geteuid().is_root() {
        let v = config(None, &[]);
        if let Some(g) = graphroot {
            assert_eq!(v["root"], g, "{v}");
        }
        assert_eq!(v["PullOptions"], pull_options, "{v}");
        Some(
            nix::unistd::User::from_name("nobody")
                .unwrap()
                .expect("a nobody user")
                .uid
                .as_raw(),
        )
    } else {
        None
    };
    let v = config(user, &[]);
    let own = home.join(".local/share/containers/storage");
    assert_eq!(v["root"], own.to_str().unwrap(), "{v}");
    assert_eq!(v["driver"], "vfs", "{v}");
    assert_eq!(v["PullOptions"], pull_options, "{v}");
    let graph = cs.graph();
    let v = config(None, &["--graph", graph.to_str().unwrap(), "-s", "vfs"]);
    assert_eq!(v["root"], graph.to_str().unwrap(), "{v}");
    assert_eq!(v["PullOptions"], serde_json::Value::Null, "{v}");
    assert!(v.get("driver-options").is_none(), "{v}");
}
