//! What layers, images and containers have in common: an ID, names unique
//! per kind (with the rules for moving them), metadata, and the index of
//! their big data items.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::ids::validate_name;
use crate::error::{Error, Result};

use super::kind::Kind;

impl Kind {
    /// The "not known" error for `arg`.
    pub(crate) fn not_known(self, arg: &str) -> Error {
        Error::NotKnown {
            kind: self,
            arg: arg.to_string(),
        }
    }
}

/// The big data an item has: key names in order, sizes and digests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BigDataIndex {
    /// Keys, in the order they were first set.
    #[serde(
        default,
        rename = "big-data-names",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub names: Vec<String>,
    /// Size of each item.
    #[serde(
        default,
        rename = "big-data-sizes",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub sizes: BTreeMap<String, u64>,
    /// `sha256:` digest of each item.
    #[serde(
        default,
        rename = "big-data-digests",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub digests: BTreeMap<String, String>,
}

/// A record kind held in a record file.
pub(crate) trait Item: Clone + Serialize + DeserializeOwned {
    const KIND: Kind;
    fn id(&self) -> &str;
    fn names(&self) -> &[String];
    fn names_mut(&mut self) -> &mut Vec<String>;
    /// Fills in what records of this kind derive from the store's files
    /// (`records_dir` is the directory of their record file), each time
    /// they are read: nothing, but for layers (`store/state.rs`).
    fn derive_all(_records: &mut [Self], _records_dir: &std::path::Path) {}
    /// Names the item ever had, newest first (images only).
    fn names_history_mut(&mut self) -> Option<&mut Vec<String>> {
        None
    }
    fn metadata_mut(&mut self) -> &mut String;
    fn big_data_mut(&mut self) -> &mut BigDataIndex;
    /// Called once big data item `key` was set to data of `digest`
    /// (images keep their digest from it).
    fn big_data_set(&mut self, _key: &str, _digest: &str) {}
}

/// Finds `arg` by exact ID, then exact name, then unique ID prefix (an
/// ambiguous prefix finds nothing).
pub(crate) fn find<'a, T: Item>(items: &'a [T], arg: &str) -> Option<&'a T> {
    if arg.is_empty() {
        return None;
    }
    if let Some(found) = items.iter().find(|i| i.id() == arg) {
        return Some(found);
    }
    if let Some(found) = items.iter().find(|i| i.names().iter().any(|n| n == arg)) {
        return Some(found);
    }
    let mut prefixed = items.iter().filter(|i| i.id().starts_with(arg));
    match (prefixed.next(), prefixed.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// Fails when `id` or one of `names` is taken by another item of the kind.
pub(crate) fn claim<T: Item>(items: &[T], id: &str, names: &[String]) -> Result<()> {
    if items.iter().any(|i| i.id() == id) {
        return Err(Error::IdInUse(id.to_string()));
    }
    for name in names {
        validate_name(name)?;
        if let Some(holder) = items.iter().find(|i| i.names().contains(name)) {
            return Err(Error::NameInUse {
                kind: T::KIND,
                name: name.clone(),
                holder: holder.id().to_string(),
            });
        }
    }
    Ok(())
}

/// Names without repeats, in first-seen order.
pub(crate) fn dedup_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// How `add-names`, `set-names` and `remove-names` change names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamesOp {
    /// Add names, moving them from items that hold them.
    Add,
    /// Replace all names, moving them from items that hold them.
    Set,
    /// Remove names.
    Remove,
}

/// Applies a names change to the item at `index`.
pub(crate) fn change_names<T: Item>(
    items: &mut [T],
    index: usize,
    op: NamesOp,
    names: &[String],
) -> Result<()> {
    for name in names {
        validate_name(name)?;
    }
    let names = dedup_names(names);
    if op != NamesOp::Remove {
        // A name held by another item of this kind moves to this one.
        for (i, other) in items.iter_mut().enumerate() {
            if i != index {
                other.names_mut().retain(|n| !names.contains(n));
            }
        }
    }
    let item = &mut items[index];
    match op {
        NamesOp::Add => {
            for name in &names {
                if !item.names().contains(name) {
                    item.names_mut().push(name.clone());
                }
            }
        }
        NamesOp::Set => *item.names_mut() = names.clone(),
        NamesOp::Remove => item.names_mut().retain(|n| !names.contains(n)),
    }
    if op != NamesOp::Remove {
        if let Some(history) = item.names_history_mut() {
            for name in &names {
                history.retain(|n| n != name);
                history.insert(0, name.clone());
            }
        }
    }
    Ok(())
}
