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
