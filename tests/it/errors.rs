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
        matches!(&e, Error::HasChildren { layer, refused: Action::Delete } if *layer == parent.id),
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
fn a_mounted_layer_refuses_what_its_mount_stops() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let layer = live(&store);
    let at = store.mount(&layer.id, false).unwrap();
    let mounted = |e: &Error, action: Action, path: Option<&Path>| {
        matches!(e, Error::Mounted { layer: l, at, refused }
            if *l == layer.id && *refused == action && at.as_deref() == path)
    };
    let e = store.delete_layer(&layer.id).unwrap_err();
    assert!(mounted(&e, Action::Delete, Some(&at)), "{e:?}");
    let e = store.wipe().unwrap_err();
    assert!(mounted(&e, Action::Wipe, Some(&at)), "{e:?}");
    let e = store.apply_diff(&layer.id, &a_tar()[..], &()).unwrap_err();
    assert!(mounted(&e, Action::ApplyDiff, None), "{e:?}");
    // A child would seal it, which needs it unmounted.
    let e = store
        .create_layer(Some(&layer.id), &LayerOptions::default())
        .unwrap_err();
    assert!(mounted(&e, Action::Seal, None), "{e:?}");
    assert!(store.unmount(&layer.id, false).unwrap());
    store.delete_layer(&layer.id).unwrap();
}

#[test]
fn applying_a_diff_to_a_layer_with_children_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let parent = import(&store, None);
    import(&store, Some(&parent.id));
    let e = store.apply_diff(&parent.id, &a_tar()[..], &()).unwrap_err();
    assert!(
        matches!(&e, Error::HasChildren { layer, refused: Action::ApplyDiff } if *layer == parent.id),
        "{e:?}"
    );
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
fn copy_refuses_a_bad_destination_a_sealed_layer_and_a_socket() {
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
    let sealed = import(&store, None);
    let e = store
        .copy(&sources, &format!("{}:/x", sealed.id), None)
        .unwrap_err();
    assert!(matches!(&e, Error::Sealed(id) if *id == sealed.id), "{e:?}");
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
