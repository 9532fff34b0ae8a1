//! Typing raw INI strings after the type of the key's built-in default (§5.1).

use super::Value;
use thiserror::Error;

/// A raw value that does not fit its key; the message names the key and the value
/// (`heartbeat-ms = "banana": not a whole number of milliseconds`).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("{key} = {raw:?}: not a boolean (1 yes true on / 0 no false off)")]
    NotABool { key: String, raw: String },
    #[error("{key} = {raw:?}: not an integer")]
    NotAnInteger { key: String, raw: String },
    #[error("{key} = {raw:?}: not a valid list literal")]
    BadListLiteral { key: String, raw: String },
    #[error("{key} = {raw:?}: not a whole number{}{unit}", if unit.is_empty() { "" } else { " of " })]
    NotAWholeNumber {
        key: String,
        raw: String,
        unit: &'static str,
    },
    #[error("{key} = {raw:?}: out of range ({min}-{max}{}{unit})", if unit.is_empty() { "" } else { " " })]
    OutOfRange {
        key: String,
        raw: String,
        min: i64,
        max: i64,
        unit: &'static str,
    },
    #[error("{key} = {raw:?}: not a port number (1-65535)")]
    NotAPort { key: String, raw: String },
    #[error("{key} = {raw:?}: not an IP address and port (such as 127.0.0.1:8081)")]
    NotASocketAddress { key: String, raw: String },
    #[error("{key} = {raw:?}: {item:?} is not an IP address or network (such as 10.0.0.0/8)")]
    NotANetwork {
        key: String,
        raw: String,
        item: String,
    },
    #[error("{key} = {raw:?}: not one of {names} ({read_as})")]
    NotOneOf {
        key: String,
        raw: String,
        names: String,
        read_as: String,
    },
}

/// Parses a boolean the way ConfigParser does.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Parses an integer like Python's `int()` (surrounding blanks, sign, `_` between digits).
pub fn parse_int(raw: &str) -> Option<i64> {
    let trimmed = raw.trim();
    if trimmed.contains("__") || trimmed.starts_with('_') || trimmed.ends_with('_') {
        return None;
    }
    let digits = trimmed.replace('_', "");
    if digits.starts_with("+-") || digits.starts_with("-+") {
        return None;
    }
    digits.parse::<i64>().ok()
}

/// Parses a Python list literal of strings such as `['x1', "x2"]` (the reference `eval`s it;
/// we accept only quoted strings and bare words, never code).
pub fn parse_list_literal(raw: &str) -> Option<Vec<String>> {
    let inner = raw.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    if inner.is_empty() {
        return Some(Vec::new());
    }
    let mut items = Vec::new();
    for element in inner.split(',') {
        let element = element.trim();
        if element.is_empty() {
            // a trailing comma, as Python allows: `['a', ]`
            continue;
        }
        let unquoted = ['\'', '"'].iter().find_map(|quote| {
            element
                .strip_prefix(*quote)
                .and_then(|rest| rest.strip_suffix(*quote))
        });
        match unquoted {
            Some(text) => items.push(text.to_string()),
            None if element
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') =>
            {
                items.push(element.to_string())
            }
            None => return None,
        }
    }
    Some(items)
}

/// Types `raw` after `default` (§5.1). `not-set` is kept as a string for integer keys.
pub fn type_value(key: &str, raw: &str, default: &Value) -> Result<Value, ValueError> {
    match default {
        Value::Str(_) => Ok(Value::Str(raw.to_string())),
        Value::Bool(_) => parse_bool(raw)
            .map(Value::Bool)
            .ok_or(ValueError::NotABool {
                key: key.to_string(),
                raw: raw.to_string(),
            }),
        Value::Int(_) => {
            if raw == "not-set" {
                return Ok(Value::Str(raw.to_string()));
            }
            parse_int(raw)
                .map(Value::Int)
                .ok_or(ValueError::NotAnInteger {
                    key: key.to_string(),
                    raw: raw.to_string(),
                })
        }
        Value::List(_) => {
            let trimmed = raw.trim();
            if trimmed.starts_with('[') && trimmed.ends_with(']') {
                return parse_list_literal(trimmed).map(Value::List).ok_or(
                    ValueError::BadListLiteral {
                        key: key.to_string(),
                        raw: raw.to_string(),
                    },
                );
            }
            if raw.contains(',') {
                return Ok(Value::List(
                    raw.split(',').map(|item| item.trim().to_string()).collect(),
                ));
            }
            Ok(Value::List(vec![raw.to_string()]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_after_the_default() {
        let list = Value::List(vec![]);
        let cases: Vec<(&str, Value, Result<Value, ()>)> = vec![
            ("yes", Value::Bool(false), Ok(Value::Bool(true))),
            ("TRUE", Value::Bool(false), Ok(Value::Bool(true))),
            ("off", Value::Bool(true), Ok(Value::Bool(false))),
            ("not-set", Value::Bool(true), Err(())),
            ("maybe", Value::Bool(true), Err(())),
            ("1024", Value::Int(0), Ok(Value::Int(1024))),
            (" -3 ", Value::Int(0), Ok(Value::Int(-3))),
            ("not-set", Value::Int(0), Ok(Value::Str("not-set".into()))),
            ("12abc", Value::Int(0), Err(())),
            (
                "a, b ,c",
                list.clone(),
                Ok(Value::List(vec!["a".into(), "b".into(), "c".into()])),
            ),
            (
                "['x1', 'x2']",
                list.clone(),
                Ok(Value::List(vec!["x1".into(), "x2".into()])),
            ),
            (
                "[ 'TERMINAL' ]",
                list.clone(),
                Ok(Value::List(vec!["TERMINAL".into()])),
            ),
            ("[__import__('os')]", list.clone(), Err(())),
            ("", list.clone(), Ok(Value::List(vec!["".into()]))),
            ("single", list, Ok(Value::List(vec!["single".into()]))),
            (
                " raw ",
                Value::Str(String::new()),
                Ok(Value::Str(" raw ".into())),
            ),
        ];
        for (raw, default, expected) in cases {
            let got = type_value("k", raw, &default).map_err(|_| ());
            assert_eq!(got, expected, "{raw:?} typed as {default:?}");
        }
    }
}
