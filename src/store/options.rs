//! Store options: graph root, run root, driver and driver options, from
//! `storage.conf` and the caller's overrides, and the read-only image
//! stores the driver options name (`<drv>.imagestore=DIR`).

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where and how a store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Persistent data (`--graph`).
    pub graph_root: PathBuf,
    /// Runtime state (`--run`).
    pub run_root: PathBuf,
    /// `overlay` or `vfs`.
    pub driver: String,
    /// Driver options (`--storage-opt`), as given.
    pub driver_options: Vec<String>,
    /// A split image store (`--image-store`).
    pub image_store: Option<PathBuf>,
    /// Container records in the run root (`--transient-store`).
    pub transient_store: bool,
    /// `gc` evicts materialized directories of sealed layers no mount has
    /// used for this long (`materialized_evict_after` in storage.conf);
    /// `None`: only when asked (`gc --evict`).
    pub evict_after: Option<std::time::Duration>,
    /// When layers' content directories are built (`materialize` in
    /// storage.conf).
    pub materialize: Materialize,
    /// `enable_partial_images = "true"` in `[storage.options.pull_options]`:
    /// `applydiff-using-staging-dir` applies staged directories.
    pub partial_images: bool,
}

/// When the driver's content directories of pool-backed layers are built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Materialize {
    /// When a mount needs them; eviction may remove them again.
    #[default]
    OnDemand,
    /// At import (and for every layer of a mounted chain), and never
    /// evicted: what a store shared with Go clients (podman, buildah,
    /// skopeo, CRI-O) needs, since they read the directories directly.
    Always,
}

impl std::str::FromStr for Materialize {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Materialize, String> {
        match s {
            "always" => Ok(Materialize::Always),
            "on-demand" | "" => Ok(Materialize::OnDemand),
            other => Err(format!(
                "{other:?} is not a materialize policy (\"always\" or \"on-demand\")"
            )),
        }
    }
}

/// The drivers this build provides.
pub const DRIVERS: &[&str] = &["overlay", "vfs"];

/// The system's `storage.conf`, in the order upstream looks for it: the
/// administrator's, then the distribution's.
const SYSTEM_CONFS: &[&str] = &[
    "/etc/containers/storage.conf",
    "/usr/share/containers/storage.conf",
];

#[derive(Deserialize, Default)]
struct ConfFile {
    #[serde(default)]
    storage: ConfStorage,
}

#[derive(Deserialize, Default)]
struct ConfStorage {
    rootless_storage_path: Option<String>,
    driver: Option<String>,
    graphroot: Option<PathBuf>,
    runroot: Option<PathBuf>,
    imagestore: Option<PathBuf>,
    transient_store: Option<bool>,
    #[serde(default)]
    options: ConfOptions,
}

/// `[storage.options]`. Our own keys are read from its
/// `pull_options` table, the one free-form table upstream's Go parser
/// accepts without a warning (it keeps string values and ignores keys it
/// does not know), and, as older versions read them, from
/// `[storage.options]` itself (where Go clients warn "Failed to decode
/// the keys").
#[derive(Deserialize, Default)]
struct ConfOptions {
    #[serde(flatten)]
    ours: OurKeys,
    pull_options: Option<toml::Table>,
    #[serde(default)]
    overlay: toml::Table,
    #[serde(default)]
    vfs: toml::Table,
}

/// The options as upstream's `config` prints them: its `StoreOptions`
/// with their JSON names, in its order (empty ones left out where
/// upstream leaves them out).
#[derive(Clone, Debug, Serialize)]
pub struct UpstreamConfig {
    /// `--run`.
    #[serde(rename = "runroot", skip_serializing_if = "String::is_empty")]
    pub run_root: String,
    /// `--transient-store`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub transient_store: bool,
    /// `--graph`.
    #[serde(rename = "root", skip_serializing_if = "String::is_empty")]
    pub graph_root: String,
    /// `--image-store`.
    #[serde(rename = "imagestore", skip_serializing_if = "String::is_empty")]
    pub image_store: String,
    /// `rootless_storage_path` of `storage.conf`.
    #[serde(rename = "RootlessStoragePath")]
    pub rootless_storage_path: String,
    /// `--storage-driver`.
    #[serde(rename = "driver", skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// `--storage-opt`, and the driver's table of `storage.conf`.
    #[serde(rename = "driver-options", skip_serializing_if = "Vec::is_empty")]
    pub driver_options: Vec<String>,
    /// `[storage.options.pull_options]` of `storage.conf` (`null` when
    /// there is none).
    #[serde(rename = "PullOptions")]
    pub pull_options: Option<BTreeMap<String, String>>,
}

/// Our keys in `storage.conf`, and upstream's that are read from
/// `[storage.options]` itself.
#[derive(Deserialize, Default)]
struct OurKeys {
    /// Upstream's read-only additional image stores.
    #[serde(default)]
    additionalimagestores: Vec<String>,
    materialized_evict_after: Option<String>,
    materialize: Option<String>,
}

impl ConfOptions {
    /// Our key `name` (read from `[storage.options]` by `key`): from
    /// `pull_options` first, else from `[storage.options]`.
    fn ours(&self, name: &str, key: fn(&OurKeys) -> &Option<String>) -> Option<&str> {
        self.pull_options
            .as_ref()
            .and_then(|table| table.get(name))
            .and_then(toml::Value::as_str)
            .or(key(&self.ours).as_deref())
            .filter(|v| !v.is_empty())
    }
}

impl StoreOptions {
    /// These options as upstream's `config` prints them, with what only
    /// `storage.conf` says read from `conf` (the file they came from).
    pub fn upstream_config(&self, conf: Option<&Path>) -> Result<UpstreamConfig> {
        let file = match conf {
            Some(path) => read_conf(path)?.unwrap_or_default(),
            None => ConfFile::default(),
        };
        Ok(UpstreamConfig {
            run_root: self.run_root.display().to_string(),
            transient_store: self.transient_store,
            graph_root: self.graph_root.display().to_string(),
            image_store: self
                .image_store
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            rootless_storage_path: file.storage.rootless_storage_path.unwrap_or_default(),
            driver: self.driver.clone(),
            driver_options: self.driver_options.clone(),
            pull_options: file.storage.options.pull_options.map(|table| {
                table
                    .into_iter()
                    .map(|(key, value)| (key, toml_text(value)))
                    .collect()
            }),
        })
    }

    /// The defaults for this user: root uses `/var/lib/containers/storage`
    /// and `/run/containers/storage`, others `$XDG_DATA_HOME` and
    /// `$XDG_RUNTIME_DIR`.
    pub fn defaults() -> StoreOptions {
        let root = nix::unistd::geteuid().is_root();
        let (graph_root, run_root) = if root {
            (
                PathBuf::from("/var/lib/containers/storage"),
                PathBuf::from("/run/containers/storage"),
            )
        } else {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/".into());
            let data = std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".local/share"));
            let uid = nix::unistd::geteuid().as_raw();
            let runtime = std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(format!("/tmp/containers-user-{uid}")));
            (data.join("containers/storage"), runtime.join("containers"))
        };
        StoreOptions {
            graph_root,
            run_root,
            driver: if root { "overlay" } else { "vfs" }.to_string(),
            driver_options: Vec::new(),
            image_store: None,
            transient_store: false,
            evict_after: None,
            materialize: Materialize::OnDemand,
            partial_images: false,
        }
    }

    /// The `storage.conf` that applies: `$CONTAINERS_STORAGE_CONF`, else
    /// the system file for root, else the user's file (falling back to the
    /// system file). The system file is `/etc/containers/storage.conf`,
    /// else the distribution's `/usr/share/containers/storage.conf`, as
    /// upstream reads them. A file `$CONTAINERS_STORAGE_CONF` names that is
    /// not there is an error, as upstream's: a mistyped path must not put
    /// the system's store in its place. Without `system` (a command line
    /// that places the store itself, as upstream's reads no file then),
    /// no system file applies.
    pub fn config_path(system: bool) -> Result<Option<PathBuf>> {
        if let Some(path) = std::env::var_os("CONTAINERS_STORAGE_CONF") {
            let path = PathBuf::from(path);
            return match std::fs::metadata(&path) {
                Ok(_) => Ok(Some(path)),
                Err(e) => Err(Error::Config(format!(
                    "stat {}: {e} (CONTAINERS_STORAGE_CONF)",
                    path.display()
                ))),
            };
        }
        let system = SYSTEM_CONFS
            .iter()
            .map(PathBuf::from)
            .find(|p| system && p.exists());
        if !nix::unistd::geteuid().is_root() {
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
            if let Some(dir) = config {
                let user = dir.join("containers/storage.conf");
                if user.exists() {
                    return Ok(Some(user));
                }
            }
        }
        Ok(system)
    }

    /// The defaults overlaid with the `storage.conf` at `path`, if any.
    /// A user without root takes from the system's file (one no
    /// `$CONTAINERS_STORAGE_CONF` names) what upstream's rootless
    /// defaults take from it: not its roots, which are root's.
    pub fn from_config(path: Option<&Path>) -> Result<StoreOptions> {
        let rootless_system = path.is_some_and(|p| SYSTEM_CONFS.iter().any(|s| p == Path::new(s)))
            && !nix::unistd::geteuid().is_root()
            && std::env::var_os("CONTAINERS_STORAGE_CONF").is_none();
        Self::from_config_as(path, rootless_system)
    }

    /// [`StoreOptions::from_config`], told whether `path` is the system's
    /// file read for a user without root. Such a user keeps the
    /// defaults' roots (the file's `rootless_storage_path` as the graph
    /// root, where it has one), driver and driver options (its driver is
    /// for root: overlay mounts need a user namespace we do not enter),
    /// and takes its pull options only, as upstream's rootless defaults
    /// keep little more.
    fn from_config_as(path: Option<&Path>, rootless_system: bool) -> Result<StoreOptions> {
        let mut options = StoreOptions::defaults();
        let Some(path) = path else {
            return Ok(options);
        };
        let Some(conf) = read_conf(path)? else {
            return Ok(options);
        };
        let s = conf.storage;
        if rootless_system {
            if let Some(dir) = s.rootless_storage_path.filter(|p| !p.is_empty()) {
                options.graph_root = PathBuf::from(expand_env_path(&dir));
            }
            options.apply_pull_options(&s.options, path)?;
            return Ok(options);
        }
        if let Some(driver) = s.driver.filter(|d| !d.is_empty()) {
            options.driver = driver;
        }
        if let Some(g) = s.graphroot {
            options.graph_root = g;
        }
        if let Some(r) = s.runroot {
            options.run_root = r;
        }
        options.image_store = s.imagestore;
        options.transient_store = s.transient_store.unwrap_or(false);
        options.apply_pull_options(&s.options, path)?;
        // As upstream adds them: driver options of the configured driver.
        for store in &s.options.ours.additionalimagestores {
            options
                .driver_options
                .push(format!("{}.imagestore={store}", options.driver));
        }
        for (driver, table) in [("overlay", &s.options.overlay), ("vfs", &s.options.vfs)] {
            for (key, value) in table {
                let value = toml_text(value.clone());
                options
                    .driver_options
                    .push(format!("{driver}.{key}={value}"));
            }
        }
        Ok(options)
    }

    /// What `[storage.options.pull_options]` (and, for our keys, an
    /// older `[storage.options]`) of the file at `path` says.
    fn apply_pull_options(&mut self, options: &ConfOptions, path: &Path) -> Result<()> {
        // As upstream's partial pulls read it: the string "true", in any
        // case.
        self.partial_images = options
            .pull_options
            .as_ref()
            .and_then(|table| table.get("enable_partial_images"))
            .and_then(toml::Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if let Some(after) =
            options.ours("materialized_evict_after", |k| &k.materialized_evict_after)
        {
            let after = crate::duration::parse_duration(after).map_err(|e| {
                Error::Config(format!("{}: materialized_evict_after: {e}", path.display()))
            })?;
            self.evict_after = Some(after);
        }
        if let Some(policy) = options.ours("materialize", |k| &k.materialize) {
            self.materialize = policy
                .parse()
                .map_err(|e| Error::Config(format!("{}: materialize: {e}", path.display())))?;
        }
        Ok(())
    }

    /// The last value this driver's option `key` has among the driver
    /// options (`<drv>.KEY=`, `.KEY=`, or `overlay2.KEY=` for overlay, as
    /// upstream's drivers take them).
    pub fn driver_option(&self, key: &str) -> Option<&str> {
        self.driver_options.iter().rev().find_map(|option| {
            let (name, value) = option.split_once('=')?;
            let name = name.trim().to_ascii_lowercase();
            let (drv, rest) = name.split_once('.')?;
            let ours = drv.is_empty()
                || drv == self.driver
                || (drv == "overlay2" && self.driver == "overlay");
            (ours && rest == key).then_some(value)
        })
    }

    /// The read-only additional image stores the driver options name for
    /// this driver: `<drv>.imagestore=DIR` (also `.imagestore=`, and
    /// upstream overlay's `additionalimagestore=`), each a comma-separated
    /// list of absolute paths, in the order given. The graph root (and the
    /// split image store) are never one of them.
    pub fn additional_image_stores(&self) -> Result<Vec<PathBuf>> {
        let mut stores: Vec<PathBuf> = Vec::new();
        for option in &self.driver_options {
            let Some((key, value)) = option.split_once('=') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let key = match key.split_once('.') {
                Some((drv, rest)) if drv.is_empty() || drv == self.driver => rest,
                Some(_) => continue,
                None => key.as_str(),
            };
            if key != "imagestore" && key != "additionalimagestore" {
                continue;
            }
            for dir in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                let dir = PathBuf::from(dir);
                if !dir.is_absolute() {
                    return Err(Error::Config(format!(
                        "{}: image path {:?} is not absolute.  Can not be relative",
                        self.driver,
                        dir.display().to_string()
                    )));
                }
                let dir: PathBuf = dir.components().collect();
                let own = dir == self.graph_root || self.image_store.as_ref() == Some(&dir);
                if !own && !stores.contains(&dir) {
                    stores.push(dir);
                }
            }
        }
        Ok(stores)
    }

    /// Checks the driver name and makes the roots absolute.
    pub fn validate(mut self) -> Result<StoreOptions> {
        if self.driver == "overlay2" {
            tracing::warn!("switching the driver from overlay2 to the equivalent overlay driver");
            self.driver = "overlay".into();
        }
        if !DRIVERS.contains(&self.driver.as_str()) {
            return Err(Error::Config(format!(
                "driver {:?} is not supported (supported: {})",
                self.driver,
                DRIVERS.join(", ")
            )));
        }
        let cwd = std::env::current_dir()
            .map_err(|e| Error::Config(format!("current directory: {e}")))?;
        // Absolute and clean, as upstream's `filepath.Abs` makes them.
        let absolute = |path: &Path| clean(&cwd.join(path));
        self.graph_root = absolute(&self.graph_root);
        self.run_root = absolute(&self.run_root);
        if let Some(store) = self.image_store.take() {
            self.image_store = Some(absolute(&store));
        }
        Ok(self)
    }
}

/// `path` without `.` components, and with each `..` taking the
/// component before it away (lexically, as Go's `filepath.Clean`).
fn clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            // Nothing is above the root.
            Component::ParentDir if out.has_root() && out.parent().is_none() => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(component);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// A `storage.conf` value as text: a string as it is, others as TOML
/// writes them (`true`, `3`).
fn toml_text(value: toml::Value) -> String {
    match value {
        toml::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// `path` with `$UID` and then the environment's `$VAR` and `${VAR}`
/// expanded (unset ones empty), as upstream expands
/// `rootless_storage_path`.
fn expand_env_path(path: &str) -> String {
    let uid = nix::unistd::geteuid().as_raw().to_string();
    let path = path.replace("$UID", &uid);
    let mut out = String::new();
    let mut rest = path.as_str();
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(inner) => match inner.find('}') {
                Some(end) => (&inner[..end], &inner[end + 1..]),
                None => ("", after),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(&std::env::var(name).unwrap_or_default());
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// The `storage.conf` at `path`; `None` when there is no such file.
fn read_conf(path: &Path) -> Result<Option<ConfFile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Config(format!("{}: {e}", path.display()))),
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_file_read_without_root_gives_its_pull_options_not_its_roots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("storage.conf");
        std::fs::write(
            &path,
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"/var/lib/x\"\n\
             runroot = \"/run/x\"\nrootless_storage_path = \"/home/u/$UID/s\"\n\
             [storage.options.overlay]\nmountopt = \"nodev\"\n\
             [storage.options.pull_options]\nenable_partial_images = \"true\"\n",
        )
        .unwrap();
        let defaults = StoreOptions::defaults();
        let rootless = StoreOptions::from_config_as(Some(&path), true).unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        assert_eq!(
            rootless.graph_root,
            PathBuf::from(format!("/home/u/{uid}/s"))
        );
        assert_eq!(rootless.run_root, defaults.run_root);
        assert_eq!(rootless.driver, defaults.driver);
        assert!(rootless.driver_options.is_empty());
        assert!(rootless.partial_images);
        let given = StoreOptions::from_config_as(Some(&path), false).unwrap();
        assert_eq!(given.graph_root, PathBuf::from("/var/lib/x"));
        assert_eq!(given.run_root, PathBuf::from("/run/x"));
        assert_eq!(given.driver, "overlay");
        assert_eq!(given.driver_options, ["overlay.mountopt=nodev"]);
    }

    #[test]
    fn paths_expand_the_uid_and_the_environment() {
        let uid = nix::unistd::geteuid().as_raw();
        let path = std::env::var("PATH").unwrap_or_default();
        assert_eq!(
            expand_env_path("/a/$UID/${PATH}/$PATH-x/$/$NO_SUCH_VAR_HERE/b"),
            format!("/a/{uid}/{path}/{path}-x/$//b")
        );
        assert_eq!(expand_env_path("${unclosed"), "${unclosed");
    }

    #[test]
    fn roots_are_made_absolute_and_clean() {
        for (path, want) in [
            ("/a/./b/../c", "/a/c"),
            ("/../a", "/a"),
            ("/a/b/..", "/a"),
            ("/a//b/", "/a/b"),
        ] {
            assert_eq!(clean(Path::new(path)), PathBuf::from(want), "{path}");
        }
        let mut o = StoreOptions::defaults();
        o.driver = "overlay2".into();
        o.graph_root = "./rel/g".into();
        o.run_root = "../x/r".into();
        let o = o.validate().unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(o.driver, "overlay");
        assert_eq!(o.graph_root, cwd.join("rel/g"));
        assert_eq!(o.run_root, cwd.parent().unwrap().join("x/r"));
    }

    #[test]
    fn a_driver_option_is_the_last_one_for_this_driver() {
        let mut o = StoreOptions::defaults();
        o.driver = "overlay".into();
        o.driver_options = vec![
            "overlay.mountopt=nodev".into(),
            "vfs.mountopt=noexec".into(),
            "Overlay2.MountOpt=nosuid".into(),
            "overlay.imagestore=/x".into(),
        ];
        assert_eq!(o.driver_option("mountopt"), Some("nosuid"));
        o.driver_options.push(".mountopt=noatime".into());
        assert_eq!(o.driver_option("mountopt"), Some("noatime"));
        o.driver = "vfs".into();
        assert_eq!(o.driver_option("mountopt"), Some("noatime"));
        o.driver_options.pop();
        assert_eq!(o.driver_option("mountopt"), Some("noexec"));
        assert_eq!(o.driver_option("imagestore"), None);
    }

    #[test]
    fn reads_storage_conf() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("storage.conf");
        std::fs::write(
            &conf,
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"/g\"\nrunroot = \"/r\"\n[storage.options.overlay]\nmountopt = \"nodev\"\n[storage.options]\nmaterialized_evict_after = \"36h\"\n",
        )
        .unwrap();
        let o = StoreOptions::from_config(Some(&conf)).unwrap();
        assert_eq!(
            o.evict_after,
            Some(std::time::Duration::from_secs(36 * 3600))
        );
        assert_eq!(o.driver, "vfs");
        assert_eq!(o.graph_root, PathBuf::from("/g"));
        assert_eq!(o.run_root, PathBuf::from("/r"));
        assert_eq!(o.driver_options, vec!["overlay.mountopt=nodev".to_string()]);
    }

    #[test]
    fn our_keys_are_read_from_pull_options_and_from_storage_options() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("storage.conf");
        std::fs::write(
            &conf,
            "[storage]\ndriver = \"overlay\"\n[storage.options.pull_options]\nmaterialize = \"always\"\nmaterialized_evict_after = \"2h\"\n",
        )
        .unwrap();
        let o = StoreOptions::from_config(Some(&conf)).unwrap();
        assert_eq!(o.materialize, Materialize::Always);
        assert_eq!(o.evict_after, Some(std::time::Duration::from_secs(7200)));
        std::fs::write(&conf, "[storage.options]\nmaterialize = \"always\"\n").unwrap();
        let o = StoreOptions::from_config(Some(&conf)).unwrap();
        assert_eq!(o.materialize, Materialize::Always);
        std::fs::write(&conf, "[storage]\ndriver = \"vfs\"\n").unwrap();
        let o = StoreOptions::from_config(Some(&conf)).unwrap();
        assert_eq!(o.materialize, Materialize::OnDemand);
        std::fs::write(
            &conf,
            "[storage.options.pull_options]\nmaterialize = \"sometimes\"\n",
        )
        .unwrap();
        let err = StoreOptions::from_config(Some(&conf))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("materialize") && err.contains("sometimes"),
            "{err}"
        );
    }

    #[test]
    fn read_only_stores_come_from_driver_options_and_storage_conf() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("storage.conf");
        std::fs::write(
            &conf,
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"/g\"\n[storage.options]\nadditionalimagestores = [\"/a\", \"/b/\"]\n",
        )
        .unwrap();
        let mut o = StoreOptions::from_config(Some(&conf)).unwrap();
        assert_eq!(
            o.driver_options,
            vec![
                "overlay.imagestore=/a".to_string(),
                "overlay.imagestore=/b/".to_string()
            ]
        );
        o.driver_options.extend([
            "vfs.imagestore=/vfs-only".to_string(),
            ".imagestore=/c,/a, /d".to_string(),
            "overlay.additionalimagestore=/e".to_string(),
            "overlay.imagestore=/g".to_string(),
            "overlay.mountopt=nodev".to_string(),
        ]);
        let want: Vec<PathBuf> = ["/a", "/b", "/c", "/d", "/e"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(o.additional_image_stores().unwrap(), want);
        o.driver_options.push("overlay.imagestore=rel".into());
        let err = o.additional_image_stores().unwrap_err().to_string();
        assert!(err.contains("\"rel\" is not absolute"), "{err}");
    }

    #[test]
    fn a_bad_conf_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("storage.conf");
        std::fs::write(&conf, "[storage\n").unwrap();
        let err = StoreOptions::from_config(Some(&conf))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&conf.display().to_string()), "{err}");
    }
}
