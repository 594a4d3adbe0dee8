//! `layer-parent-owners` and `container-parent-owners` through the CLI,
//! as upstream prints them: without an ID mapping nothing is unmapped (a
//! layer prints its ID only, a container `UIDs: []` and `GIDs: []`; JSON
//! has `null`); a layer whose record carries upstream's `uidmap` and
//! `gidmap` must be mounted, and then lists the owners of the directories
//! above its mount point that the mapping cannot map. The Go CLI, where
//! installed, is run on the same steps in a store of its own, and the
//! unmapped layer's lines are compared.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{first_line_of, Cs};

const GO_CLI: &str = "/usr/bin/containers-storage";

fn go(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(GO_CLI)
        .arg("--graph")
        .arg(dir.join("graph"))
        .arg("--run")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .unwrap()
}

/// Gives every layer record upstream's mapping of container IDs
/// 0..65536 to host 100000.. (UIDs) and 200000.. (GIDs), as upstream
/// writes it for `create-layer --uidmap/--gidmap`.
fn map_every_layer(cs: &Cs) {
    let path = cs.graph().join("vfs-layers/layers.json");
    let mut layers: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for layer in &mut layers {
        layer["uidmap"] =
            serde_json::json!([{"container_id": 0, "host_id": 100000, "size": 65536}]);
        layer["gidmap"] =
            serde_json::json!([{"container_id": 0, "host_id": 200000, "size": 65536}]);
    }
    std::fs::write(&path, serde_json::to_vec(&layers).unwrap()).unwrap();
}

#[test]
fn without_a_mapping_nothing_is_unmapped_as_upstream_prints_it() {
    let cs = Cs::new();
    let layer = first_line_of(&cs.ok(&["create-layer"]));
    let image = first_line_of(&cs.ok(&["create-image", &layer]));
    let container = first_line_of(&cs.ok(&["create-container", &image]));
    let ours = (
        cs.ok(&["layer-parent-owners", &layer]),
        cs.ok(&["layer-parent-owners", "-j", &layer]),
        cs.ok(&["container-parent-owners", &container]),
        cs.ok(&["container-parent-owners", "-j", &container]),
    );
    assert_eq!(ours.0, format!("ID: {layer}\n"));
    assert_eq!(
        ours.1,
        format!("{{\"ID\":\"{layer}\",\"UIDs\":null,\"GIDs\":null}}\n")
    );
    assert_eq!(ours.2, format!("ID: {container}\nUIDs: []\nGIDs: []\n"));
    assert_eq!(
        ours.3,
        format!("{{\"ID\":\"{container}\",\"UIDs\":null,\"GIDs\":null}}\n")
    );
    // Two layers: one JSON object per line, as upstream encodes them.
    let two = cs.ok(&["layer-parent-owners", "--json", &layer, &layer]);
    assert_eq!(two.lines().count(), 2, "{two}");
    // One unknown argument: the others are printed, the exit is 1.
    let out = cs.run(&["layer-parent-owners", "no-such-layer", &layer], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(common::stdout(&out), format!("ID: {layer}\n"));
    assert!(common::stderr(&out).contains("layer not known"));
    let out = cs.run(&["container-parent-owners", "no-such-container"], None);
    assert_eq!(out.status.code(), Some(1));

    if Path::new(GO_CLI).exists() && common::need_root("the Go CLI (it chowns its store)") {
        let dir = tempfile::tempdir().unwrap();
        let l = first_line_of(&common::stdout(&go(dir.path(), &["create-layer"])));
        let i = first_line_of(&common::stdout(&go(dir.path(), &["create-image", &l])));
        let c = first_line_of(&common::stdout(&go(dir.path(), &["create-container", &i])));
        let theirs = (
            common::stdout(&go(dir.path(), &["layer-parent-owners", &l])),
            common::stdout(&go(dir.path(), &["layer-parent-owners", "-j", &l])),
            common::stdout(&go(dir.path(), &["container-parent-owners", &c])),
            common::stdout(&go(dir.path(), &["container-parent-owners", "-j", &c])),
        );
        let same = |s: &str, ids: [(&str, &str); 2]| {
            ids.iter()
                .fold(s.to_string(), |s, (from, to)| s.replace(from, to))
        };
        let ids = [(l.as_str(), "LAYER"), (c.as_str(), "CONTAINER")];
        let our_ids = [(layer.as_str(), "LAYER"), (container.as_str(), "CONTAINER")];
        assert_eq!(same(&ours.0, our_ids), same(&theirs.0, ids));
        assert_eq!(same(&ours.1, our_ids), same(&theirs.1, ids));
        assert_eq!(same(&ours.2, our_ids), same(&theirs.2, ids));
        assert_eq!(same(&ours.3, our_ids), same(&theirs.3, ids));
    }
}

#[test]
fn a_mapped_layer_lists_the_owners_above_its_mount_point_it_cannot_map() {
    if !common::need_root("chown") {
        return;
    }
    let cs = Cs::new();
    let layer = first_line_of(&cs.ok(&["create-layer"]));
    map_every_layer(&cs);

    // Unmounted: upstream cannot tell, and says so.
    let err = cs.fails(&["layer-parent-owners", &layer], None);
    assert!(err.contains("layer is not mounted"), "{err}");

    let mnt = first_line_of(&cs.ok(&["mount", &layer]));
    // A directory above the mount point owned by IDs outside the
    // mapping; the rest (the test's temporary directories, /tmp) are
    // root's, which the mapping does not map either.
    let above = Path::new(&mnt).parent().unwrap().parent().unwrap();
    std::os::unix::fs::chown(above, Some(4242), Some(4343)).unwrap();
    let mut uids = std::collections::BTreeSet::new();
    let mut gids = std::collections::BTreeSet::new();
    let mut dir = Path::new(&mnt).parent();
    while let Some(d) = dir.filter(|d| *d != Path::new("/")) {
        use std::os::unix::fs::MetadataExt;
        for m in [
            std::fs::metadata(d).unwrap(),
            std::fs::symlink_metadata(d).unwrap(),
        ] {
            if !(100000..165536).contains(&m.uid()) {
                uids.insert(m.uid());
            }
            if !(200000..265536).contains(&m.gid()) {
                gids.insert(m.gid());
            }
        }
        dir = d.parent();
    }
    assert!(uids.contains(&4242) && gids.contains(&4343));
    let list = |ids: &std::collections::BTreeSet<u32>| {
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        format!("[{}]", ids.join(" "))
    };
    assert_eq!(
        cs.ok(&["layer-parent-owners", &layer]),
        format!(
            "ID: {layer}\nUIDs: {}\nGIDs: {}\n",
            list(&uids),
            list(&gids)
        )
    );
    let json: serde_json::Value =
        serde_json::from_str(&cs.ok(&["layer-parent-owners", "-j", &layer])).unwrap();
    assert_eq!(json["UIDs"], serde_json::json!(uids));
    assert_eq!(json["GIDs"], serde_json::json!(gids));

    // The mapping is upstream's record field: it survives our rewrites.
    cs.ok(&["set-names", "-n", "mapped", &layer]);
    let record = cs.layer_json(&layer);
    assert_eq!(record["uidmap"][0]["host_id"], 100000, "{record}");
    assert_eq!(record["gidmap"][0]["host_id"], 200000, "{record}");
    cs.ok(&["unmount", &layer]);
}
