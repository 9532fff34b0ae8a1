//! The INI reader and `x2gobroker.conf` typing (`IniDocument::parse`, `BrokerConfig`), and the same text as `defaults.conf` at start-up (`StartupSettings::resolve`).

use std::collections::BTreeMap;
use x2gobroker::config::startup::{CommandLine, StartupInputs};
use x2gobroker::config::{Backend, BrokerConfig, IniDocument, StartupSettings};

/// What `IniDocument::parse` promises of a document it accepts.
pub(crate) fn check_document(document: &IniDocument) {
    for (index, section) in document.sections.iter().enumerate() {
        assert_ne!(section.name, "DEFAULT", "[DEFAULT] is kept apart");
        assert!(
            document.sections[..index]
                .iter()
                .all(|other| other.name != section.name),
            "duplicate section [{}] accepted",
            section.name
        );
    }
    for section in document.sections.iter().chain([&document.defaults]) {
        for (index, (key, value)) in section.entries.iter().enumerate() {
            assert_eq!(value.trim(), value, "value of {key} not trimmed");
            assert!(
                section.entries[..index]
                    .iter()
                    .all(|(other, _)| other != key),
                "duplicate key {key} in [{}] accepted",
                section.name
            );
            assert_eq!(
                document.get(&section.name, key).is_some(),
                section.name != "DEFAULT"
            );
        }
    }
}

/// Parses and types the text as x2gobroker.conf, then resolves start-up settings with it as
/// both defaults.conf and x2gobroker.conf.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match IniDocument::parse(&text) {
        Ok(document) => {
            check_document(&document);
            let config = BrokerConfig::parse(&text).expect("the same text parses twice");
            let _ = config.problems();
            let _ = config.reference_global_view();
            for backend in [Backend::Inifile, Backend::Zeroconf, Backend::Base] {
                let _ = format!("{:?}", config.backend(backend));
            }
            let _ = format!("{:?} {:?}", config.global, config.farm);
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
            assert!(BrokerConfig::parse(&text).is_err());
        }
    }
    let inputs = StartupInputs {
        command_line: CommandLine::default(),
        environment: BTreeMap::new(),
        program: "x2gobroker-daemon".to_string(),
    };
    let settings = StartupSettings::resolve(&inputs, &|_| Some(text.to_string()));
    let _ = settings.report_lines();
}
