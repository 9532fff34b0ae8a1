//! Reading the reference's INI files with Python-RawConfigParser semantics (§5.1) on top of rust-ini.

use thiserror::Error;

/// Why an INI text could not be used at all (the reference then fails every request, B28).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum IniError {
    /// rust-ini could not parse the text (e.g. a line without `=` or `:`).
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A key stands before the first section header.
    #[error("key {0:?} outside of any section")]
    KeyOutsideSection(String),
    /// The same section header appears twice.
    #[error("duplicate section [{0}]")]
    DuplicateSection(String),
    /// The same key appears twice in one section.
    #[error("duplicate key {key:?} in section [{section}]")]
    DuplicateKey { section: String, key: String },
}

/// One section: its name and its `key = value` entries in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub entries: Vec<(String, String)>,
}

impl Section {
    /// The raw value of `key` in this section only.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// A parsed INI document: `[DEFAULT]` apart, the other sections in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IniDocument {
    pub defaults: Section,
    pub sections: Vec<Section>,
}

impl IniDocument {
    /// Parses `text` like Python's RawConfigParser: `=` or `:` delimiters, `#`/`;` full-line
    /// comments, indented continuation lines, no interpolation, no quote or escape handling,
    /// case-sensitive keys, duplicates rejected.
    pub fn parse(text: &str) -> Result<IniDocument, IniError> {
        let options = ini::ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            enabled_indented_mutiline_value: true,
            enabled_preserve_key_leading_whitespace: false,
        };
        let parsed = ini::Ini::load_from_str_opt(text, options)
            .map_err(|error| IniError::Syntax(error.to_string()))?;
        let mut document = IniDocument {
            defaults: Section {
                name: "DEFAULT".to_string(),
                entries: Vec::new(),
            },
            sections: Vec::new(),
        };
        let mut seen_default = false;
        for (name, properties) in parsed.iter() {
            let Some(name) = name else {
                if let Some((key, _)) = properties.iter().next() {
                    return Err(IniError::KeyOutsideSection(key.to_string()));
                }
                continue;
            };
            let mut entries: Vec<(String, String)> = Vec::new();
            for (key, value) in properties.iter() {
                if entries.iter().any(|(existing, _)| existing == key) {
                    return Err(IniError::DuplicateKey {
                        section: name.to_string(),
                        key: key.to_string(),
                    });
                }
                entries.push((key.to_string(), value.trim().to_string()));
            }
            if name == "DEFAULT" {
                if seen_default {
                    return Err(IniError::DuplicateSection(name.to_string()));
                }
                seen_default = true;
                document.defaults.entries = entries;
                continue;
            }
            if document.sections.iter().any(|section| section.name == name) {
                return Err(IniError::DuplicateSection(name.to_string()));
            }
            document.sections.push(Section {
                name: name.to_string(),
                entries,
            });
        }
        Ok(document)
    }

    /// The section called `name`, if present (never `[DEFAULT]`).
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|section| section.name == name)
    }

    /// `key` in section `name`, falling back to `[DEFAULT]` like ConfigParser. A missing
    /// section yields nothing (not even the defaults).
    pub fn get(&self, section_name: &str, key: &str) -> Option<&str> {
        let section = self.section(section_name)?;
        section.get(key).or_else(|| self.defaults.get(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_raw_config_parser() {
        let text = "# comment\n[DEFAULT]\nuser = BROKER_USER\n\n[a]\nhost: ts01, ts02\nname = x # not a comment\n  continued\n; c\n[b]\nk = a=b\n";
        let document = IniDocument::parse(text).unwrap();
        assert_eq!(document.defaults.get("user"), Some("BROKER_USER"));
        assert_eq!(document.get("a", "host"), Some("ts01, ts02"));
        assert_eq!(
            document.get("a", "name"),
            Some("x # not a comment\ncontinued")
        );
        assert_eq!(document.get("b", "k"), Some("a=b"));
        assert_eq!(document.get("b", "user"), Some("BROKER_USER"));
        assert_eq!(document.get("missing", "user"), None);
        let names: Vec<&str> = document.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn rejects_what_config_parser_rejects() {
        let cases = [
            ("[a]\nx = 1\nnodelimiter\n", "syntax"),
            ("[a]\nx=1\n[a]\ny=2\n", "duplicate section"),
            ("[a]\nx=1\nx=2\n", "duplicate key"),
            ("x=1\n[a]\n", "outside"),
        ];
        for (text, expected) in cases {
            let error = IniDocument::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn keys_are_case_sensitive() {
        let document = IniDocument::parse("[a]\nKey = 1\nkey = 2\n").unwrap();
        assert_eq!(document.get("a", "Key"), Some("1"));
        assert_eq!(document.get("a", "key"), Some("2"));
    }
}
