//! The library's refusals as a caller sees them: each is an
//! `Error` variant with the IDs and kinds involved, matched here on the
//! variant and its fields, never on message text (as upstream's callers
//! test its sentinel errors, `ErrLayerHasChildren`, `ErrLayerUsedByImage`,
//! ..., with `errors.Is`). Real store on disk, vfs driver (mounting a vfs
//! layer builds its directory; no kernel mount).

use std::os::unix::net::UnixListener;
use std::path::Path;

use crate::common::tar::{Meta, TarBuilder};
use containers_storage::{
    Action, ContainerOptions, Error, ImageOptions, Kind, Layer, LayerOptions, Store, StoreOptions,
};

fn open(dir: &Path) -> Store {
    Store::open(StoreOptions {
        graph_root: dir.join("graph"),
        run_root: dir.join("run"),
        driver: "vfs".into(),
        ..StoreOptions::defaults()
    })
    .unwrap()
}

fn a_tar() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.file("f", &Meta::default(), b"content\n");
    t.finish()
}

/// A sealed layer (imported from a tar) on `parent`.
fn import(store: &Store, parent: Option<&str>) -> Layer {
    store
        .import_layer(parent, &LayerOptions::default(), &a_tar()[..], &())
        .unwrap()
}

/// A live layer (created empty) on nothing.
fn live(store: &Store) -> Layer {
    store.create_layer(None, &LayerOptions::default()).unwrap()
}

#[test]
fn deleting_a_layer_in_use_is_refused_with_what_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let parent = import(&store, None);
    let child = import(&store, Some(&parent.id));
    let e = store.delete_layer(&parent.id).unwrap_err();
    assert!(
        matches!(&e, Error::HasChildren { layer, refused: Action::Delete, .. } if *layer == parent.id),
        "{e:?}"
    );
    let image = store
        .create_image(Some(&child.id), &ImageOptions::default())
        .unwrap();
    let e = store.delete_layer(&child.id).unwrap_err();
    assert!(
        matches!(&e, Error::InUse { kind: Kind::Layer, id, by: Kind::Image, by_id }
            if *id == child.id && *by_id == image.id),
        "{e:?}"
    );
    let container = store
        .create_container(Some(&image.id), &ContainerOptions::default())
        .unwrap();
    let e = store.delete_image(&image.id, false).unwrap_err();
    assert!(
        matches!(&e, Error::InUse { kind: Kind::Image, id, by: Kind::Container, by_id }
            if *id == image.id && *by_id == container.id),
        "{e:?}"
    );
    let e = store.delete_layer(&container.layer).unwrap_err();
    assert!(
        matches!(&e, Error::InUse { kind: Kind::Layer, id, by: Kind::Container, by_id }
            if *id == container.layer && *by_id == container.id),
        "{e:?}"
    );
    // Nothing was deleted.
    assert_eq!(store.layers().unwrap().len(), 3);
}

#[test]
fn a_mounted_layer_takes_a_diff_unless_pool_backed_and_deletes_unmount_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let layer = live(&store);
    store.mount(&layer.id, false).unwrap();
    // Its (writable) directory takes it, as upstream's does.
    store.apply_diff(&layer.id, &a_tar()[..], &()).unwrap();
    // A pool-backed layer mounted read-only would get a new directory
    // behind its mount: refused.
    let sealed = import(&store, None);
    let image = store
        .create_image(Some(&sealed.id), &Default::default())
        .unwrap();
    store.mount(&image.id, true).unwrap();
    let e = store.apply_diff(&sealed.id, &a_tar()[..], &()).unwrap_err();
    assert!(
        matches!(&e, Error::Mounted { layer: l, at: None, refused: Action::ApplyDiff }
            if *l == sealed.id),
        "{e:?}"
    );
    // Upstream gives a mounted layer a child, and its deletes unmount.
    let child = store
        .create_layer(Some(&layer.id), &LayerOptions::default())
        .unwrap();
    store.mount(&child.id, false).unwrap();
    store.delete_layer(&child.id).unwrap();
    store.wipe().unwrap();
    assert!(store.mounts().unwrap().is_empty());
    assert!(store.layers().unwrap().is_empty());
}

#[test]
fn a_diff_applied_to_a_layer_with_children_makes_it_directory_backed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let parent = import(&store, None);
    assert!(parent.sealed);
    import(&store, Some(&parent.id));
    let mut other = TarBuilder::new();
    other.file("g", &Meta::default(), b"other\n");
    let other = other.finish();
    let after = store.apply_diff(&parent.id, &other[..], &()).unwrap();
    assert!(!after.sealed);
    // Its recorded digests are the applied stream's, as upstream's.
    assert_eq!(after.diff_digest, crate::common::sha256(&other));
    assert_ne!(after.diff_digest, parent.diff_digest);
}

#[test]
fn unknown_items_and_big_data_carry_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for (kind, e) in [
        (Kind::Layer, store.layer("nope").unwrap_err()),
        (Kind::Image, store.image("nope").unwrap_err()),
        (Kind::Container, store.container("nope").unwrap_err()),
    ] {
        assert!(
            matches!(&e, Error::NotKnown { kind: k, arg } if *k == kind && arg == "nope"),
            "{e:?}"
        );
        assert!(e.is_not_known());
    }
    let image = store.create_image(None, &ImageOptions::default()).unwrap();
    let e = store.big_data(Kind::Image, &image.id, "k").unwrap_err();
    assert!(
        matches!(&e, Error::NoBigData { kind: Kind::Image, id, key } if *id == image.id && key == "k"),
        "{e:?}"
    );
    // An image without layers has nothing to mount.
    let e = store.mount(&image.id, true).unwrap_err();
    assert!(
        matches!(&e, Error::NoLayersToMount(id) if *id == image.id),
        "{e:?}"
    );
}

#[test]
fn copy_refuses_a_bad_destination_a_read_only_layer_and_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let source = dir.path().join("source");
    std::fs::write(&source, b"x").unwrap();
    let sources = [source.to_str().unwrap().to_string()];
    let e = store.copy(&sources, "no-layer-path", None).unwrap_err();
    assert!(
        matches!(&e, Error::BadArgument { arg, .. } if arg == "no-layer-path"),
        "{e:?}"
    );
    let target = live(&store);
    let dest = format!("{}:/../x", target.id);
    let e = store.copy(&sources, &dest, None).unwrap_err();
    assert!(
        matches!(&e, Error::BadArgument { arg, .. } if *arg == dest),
        "{e:?}"
    );
    let read_only = store
        .create_layer(
            None,
            &LayerOptions {
                read_only: true,
                ..LayerOptions::default()
            },
        )
        .unwrap();
    let e = store
        .copy(&sources, &format!("{}:/x", read_only.id), None)
        .unwrap_err();
    assert!(
        matches!(&e, Error::ReadOnlyLayer(id) if *id == read_only.id),
        "{e:?}"
    );
    let socket = dir.path().join("socket");
    let _listener = UnixListener::bind(&socket).unwrap();
    let sockets = [socket.to_str().unwrap().to_string()];
    let e = store
        .copy(&sockets, &format!("{}:/", target.id), None)
        .unwrap_err();
    assert!(
        matches!(&e, Error::CannotCopy(path) if *path == socket),
        "{e:?}"
    );
}
