//! Wire formats at the edge: plain text (X2Go Client), JSON (Python X2Go), UCCS (Arctica), Python-style JSON.

pub mod json;
pub mod plain;
pub mod pyjson;
pub mod uccs;

use crate::config::Value;

/// A typed profile value as JSON.
pub fn value_to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Str(text) => serde_json::Value::String(text.clone()),
        Value::Bool(flag) => serde_json::Value::Bool(*flag),
        Value::Int(number) => serde_json::Value::from(*number),
        Value::List(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|item| serde_json::Value::String(item.clone()))
                .collect(),
        ),
    }
}
