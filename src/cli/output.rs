//! Output helpers: JSON values end with a newline, as upstream prints them.

use serde::Serialize;

/// Prints `value` as one JSON document and a newline.
pub fn json<T: Serialize>(value: &T) -> super::Outcome {
    let text = serde_json::to_string(value).expect("output serializes");
    println!("{text}");
    Ok(0)
}
