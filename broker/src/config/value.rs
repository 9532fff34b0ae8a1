//! Typed configuration values (§5.1): string, bool, int, list, and how each renders.

use std::fmt;

/// One typed value of an INI key, typed after the built-in default of that key (spec §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A raw string (also keys without a built-in default).
    Str(String),
    /// A boolean (`1 yes true on` / `0 no false off`).
    Bool(bool),
    /// A decimal integer.
    Int(i64),
    /// A list of strings.
    List(Vec<String>),
}

impl Value {
    /// The value as the plain protocol renders it: lists joined by `,`, booleans `1`/`0`.
    pub fn render_plain(&self) -> String {
        let mut text = String::new();
        self.write_plain(&mut text);
        text
    }

    /// Appends [`Value::render_plain`] to `out` (no allocation of its own).
    pub fn write_plain(&self, out: &mut String) {
        match self {
            Value::Str(text) => out.push_str(text),
            Value::Bool(flag) => out.push(if *flag { '1' } else { '0' }),
            Value::Int(number) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{number}");
            }
            Value::List(items) => {
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(item);
                }
            }
        }
    }

    /// The string inside a `Str`, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The items of a `List`, or a one-element view of a non-empty `Str`.
    pub fn as_list(&self) -> Vec<String> {
        match self {
            Value::List(items) => items.clone(),
            Value::Str(text) if !text.is_empty() => vec![text.clone()],
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.render_plain())
    }
}
