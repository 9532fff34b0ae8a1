//! `[http]`, the limits of the client port (x2gobroker-rs): connection cap, header, body and request deadlines, body and parameter caps, keep-alive; typed through the key table.

use super::keys::{self, http as key};
use super::settings::{Reader, StrictReader};
use super::IniDocument;
use std::time::Duration;

/// What one client may cost the broker; read at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; at the cap the oldest idle one is closed for a new one.
    pub max_connections: usize,
    /// How long a connection may take to send a complete request head: a new one before its
    /// first request, and a kept-alive one between requests (the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// How long the whole request body may take once the head is in (else 408).
    pub body_timeout: Duration,
    /// How long a request may take from its head to its answer (else 503).
    pub request_timeout: Duration,
    /// Largest request body (else 413).
    pub max_body_bytes: usize,
    /// Most parameter pairs with names the broker reads (else 400).
    pub max_parameters: usize,
    /// Whether connections are kept alive between requests.
    pub keep_alive: bool,
    /// The values that did not fit (their defaults are used): logged at start-up.
    pub problems: Vec<String>,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits::resolve(&IniDocument::default())
    }
}

impl HttpLimits {
    /// Types `[http]` of `document`.
    pub fn resolve(document: &IniDocument) -> HttpLimits {
        let read = Reader::new(document, &keys::HTTP);
        HttpLimits::read(&read)
    }

    pub(super) fn read(read: &Reader<'_>) -> HttpLimits {
        let mut http = StrictReader::new(read);
        let count = |number: i64| usize::try_from(number).unwrap_or(usize::MAX);
        HttpLimits {
            max_connections: count(http.int(key::MAX_CONNECTIONS)),
            header_timeout: http.duration(key::HEADER_TIMEOUT_MS),
            body_timeout: http.duration(key::BODY_TIMEOUT_MS),
            request_timeout: http.duration(key::REQUEST_TIMEOUT_MS),
            max_body_bytes: count(http.int(key::MAX_BODY_BYTES)),
            max_parameters: count(http.int(key::MAX_PARAMETERS)),
            keep_alive: http.bool(key::KEEP_ALIVE),
            problems: http.problems,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(text: &str) -> HttpLimits {
        HttpLimits::resolve(&IniDocument::parse(text).unwrap())
    }

    #[test]
    fn defaults_are_safe_and_values_typed() {
        let defaults = limits("");
        assert_eq!(defaults.max_connections, 4096);
        assert_eq!(defaults.header_timeout, Duration::from_secs(10));
        assert_eq!(defaults.body_timeout, Duration::from_secs(10));
        assert_eq!(defaults.request_timeout, Duration::from_secs(60));
        assert_eq!(defaults.max_body_bytes, 1024 * 1024);
        assert_eq!(defaults.max_parameters, 64);
        assert!(defaults.keep_alive);
        assert!(defaults.problems.is_empty());
        let set = limits(
            "[http]\nmax-connections = 100\nheader-timeout-ms = 2000\nbody-timeout-ms = 1500\nrequest-timeout-ms = 5000\nmax-body-bytes = 4096\nmax-parameters = 16\nkeep-alive = no\n",
        );
        assert_eq!(
            (set.max_connections, set.header_timeout, set.body_timeout),
            (100, Duration::from_secs(2), Duration::from_millis(1500))
        );
        assert_eq!(
            (set.request_timeout, set.max_body_bytes, set.max_parameters),
            (Duration::from_secs(5), 4096, 16)
        );
        assert!(!set.keep_alive);
    }

    #[test]
    fn bad_values_are_reported_by_key_and_the_default_serves() {
        let bad = limits("[http]\nmax-connections = 3\nbody-timeout-ms = soon\n");
        assert_eq!(bad.max_connections, 4096);
        assert_eq!(bad.body_timeout, Duration::from_secs(10));
        assert_eq!(bad.problems.len(), 2, "{:?}", bad.problems);
        assert!(
            bad.problems[0].contains("[http] max-connections"),
            "{:?}",
            bad.problems
        );
        assert!(
            bad.problems[1].contains("[http] body-timeout-ms"),
            "{:?}",
            bad.problems
        );
    }
}
