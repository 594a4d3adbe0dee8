//! `status` and `version`.

use containers_storage::Store;

use super::output::{self, errln};
use super::Outcome;

pub fn status(store: &Store, json: bool) -> Outcome {
    let status = store.status()?;
    if json {
        let pairs: Vec<[&str; 2]> = status
            .pairs
            .iter()
            .map(|(k, v)| [k.as_str(), v.as_str()])
            .collect();
        return output::json(&pairs);
    }
    for (label, value) in &status.pairs {
        errln!("{label}: {value}");
    }
    Ok(0)
}

pub fn version(json: bool) -> Outcome {
    if json {
        // Pairs, as upstream encodes its `[][2]string`.
        return output::json(&[["Version", containers_storage::VERSION]]);
    }
    // On standard error, as upstream prints it (and `status`).
    errln!("Version: {}", containers_storage::VERSION);
    Ok(0)
}
