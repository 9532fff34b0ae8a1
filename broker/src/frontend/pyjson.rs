//! JSON text exactly as Python's `json.dumps(obj, sort_keys=True, indent=N)` writes it (ASCII-escaped).

use serde_json::Value;
use std::fmt::Write;

/// Serialises `value` with keys sorted by code point, `indent` spaces per level, `,`/`: `
/// separators, non-ASCII as `\uXXXX` (surrogate pairs), `/` unescaped, no trailing newline.
pub fn dumps(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    write_value(&mut out, value, indent, 0);
    out
}

fn write_value(out: &mut String, value: &Value, indent: usize, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => out.push_str(&number.to_string()),
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                newline(out, indent, level + 1);
                write_value(out, item, indent, level + 1);
            }
            newline(out, indent, level);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut keys: Vec<&String> = map.keys().collect();
            // Python sorts str keys by code point; Rust's str order is byte order, which agrees.
            keys.sort();
            out.push('{');
            for (position, key) in keys.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                newline(out, indent, level + 1);
                write_string(out, key);
                out.push_str(": ");
                write_value(out, &map[*key], indent, level + 1);
            }
            newline(out, indent, level);
            out.push('}');
        }
    }
}

fn newline(out: &mut String, indent: usize, level: usize) {
    out.push('\n');
    for _ in 0..indent * level {
        out.push(' ');
    }
}

fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(character),
            _ => {
                let mut units = [0u16; 2];
                for unit in character.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps() {
        let cases = [
            (json!({}), 4, "{}"),
            (json!([]), 4, "[]"),
            (
                json!({"task": "", "auth-status": "Access granted"}),
                4,
                "{\n    \"auth-status\": \"Access granted\",\n    \"task\": \"\"\n}",
            ),
            (
                json!({"a": [1, true, null]}),
                2,
                "{\n  \"a\": [\n    1,\n    true,\n    null\n  ]\n}",
            ),
            (
                json!("jörg/𝄞\u{7f}\"\\\n"),
                4,
                "\"j\\u00f6rg/\\ud834\\udd1e\\u007f\\\"\\\\\\n\"",
            ),
            (
                json!({"selected_session": {}}),
                4,
                "{\n    \"selected_session\": {}\n}",
            ),
        ];
        for (value, indent, expected) in cases {
            assert_eq!(dumps(&value, indent), expected);
        }
    }
}
