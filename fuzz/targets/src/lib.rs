//! The fuzz targets of x2gobroker-rs: one plain function per parser, each feeding the real code its bytes and asserting what must hold for any input.
//!
//! cargo-fuzz (`fuzz/fuzz_targets/*.rs`) calls them under libFuzzer; `tests/corpus.rs` replays
//! the saved corpus and every regression input through them in the ordinary test suite. A
//! panic (a failed assertion included) is a finding. Inputs are bytes; where a parser takes
//! text, invalid UTF-8 is replaced (the daemon's readers do the same or refuse earlier), and
//! where a target needs several inputs, NUL bytes separate them.

mod agent_answer;
mod authservice;
mod config;
mod http_params;
mod legacy_command;
mod loggers;
mod profiles;
mod session_lines;

pub use agent_answer::agent_answer;
pub use authservice::authservice;
pub use config::config;
pub use http_params::http_params;
pub use legacy_command::legacy_command;
pub use loggers::loggers;
pub use profiles::profiles;
pub use session_lines::session_lines;

/// A fuzz target: any bytes, a panic on a finding.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/run.sh` and the corpus directories name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("http_params", http_params),
    ("config", config),
    ("profiles", profiles),
    ("loggers", loggers),
    ("session_lines", session_lines),
    ("agent_answer", agent_answer),
    ("legacy_command", legacy_command),
    ("authservice", authservice),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, run)| *run)
}

/// The first `count - 1` NUL-separated pieces of `data` and the rest (missing ones empty).
fn pieces(data: &[u8], count: usize) -> Vec<&[u8]> {
    let mut pieces: Vec<&[u8]> = data.splitn(count, |byte| *byte == 0).collect();
    pieces.resize(count, &[]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_on_nul_and_pad() {
        assert_eq!(pieces(b"a\0b\0c", 2), [&b"a"[..], &b"b\0c"[..]]);
        assert_eq!(pieces(b"a", 3), [&b"a"[..], &b""[..], &b""[..]]);
    }

    #[test]
    fn every_target_is_named_once() {
        for (name, _) in TARGETS {
            assert!(target(name).is_some());
            assert_eq!(TARGETS.iter().filter(|(other, _)| other == name).count(), 1);
        }
    }
}
