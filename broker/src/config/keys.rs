//! The key table: every key of `x2gobroker.conf` (and every `broker-*` key of a session profile) the broker knows — section, name, type, default, range — the one place their names are spelled.
//!
//! The typed settings (`settings.rs`, `farm.rs`) read keys only through these constants, and
//! `--check-config` checks every key of the table, so a key is known to both the moment it is
//! listed here. A new section (`[admin]`, `[cluster]`) is one more [`SectionSpec`] in
//! [`SECTIONS`]; a new key one more [`KeySpec`] in its section.
//!
//! How a section's raw strings become values is its [`Typing`]: the reference's sections keep
//! §5.1 (typed after the default's type), our own sections are checked strictly by [`Kind`].

use super::typing::{self, ValueError};
use super::Value;
use std::time::Duration;

/// An inclusive range of whole numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: i64,
    pub max: i64,
}

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `1 yes true on` / `0 no false off`, any case.
    Bool,
    /// A whole number (in the reference's sections also `not-set`, which reads as the default).
    Int { range: Option<Range> },
    /// A whole number of seconds.
    Seconds { range: Option<Range> },
    /// A whole number of milliseconds.
    Milliseconds { range: Option<Range> },
    /// A TCP port, 1–65535.
    Port,
    /// An IP address and a port (`127.0.0.1:8081`, `[::1]:8081`); empty means "off".
    SocketAddress,
    /// A list: a `[…]` literal of strings, comma-separated words, or one word.
    List,
    /// A list (as [`Kind::List`]) of IP addresses and networks (`10.0.0.0/8`, `::1`).
    Networks,
    /// Free text.
    Text,
    /// A file-system path (`%h` and the like expanded where the key's user says).
    Path,
    /// One of `names` (compared ignoring case when `ignore_case`); empty means "not set" when
    /// the key's default is empty or absent. In the reference's sections another name is
    /// read as `otherwise` says (the reference's own behaviour), and reported.
    Enum {
        names: &'static [&'static str],
        ignore_case: bool,
        otherwise: &'static str,
    },
    /// A session profile's on/off switch: on for `on`, off for anything else (reported when it
    /// is neither in `on` nor in `off`).
    Switch {
        on: &'static [&'static str],
        off: &'static [&'static str],
        ignore_case: bool,
    },
}

/// How a section's raw strings become values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typing {
    /// §5.1, as the reference: typed after the default's type (bool, int, list, else string);
    /// a value that does not fit is an error value (the requests that need it answer 500).
    /// Ranges and names are advice: `--check-config` reports a value outside them, the broker
    /// reads it as the kind says (the reference's behaviour).
    Reference,
    /// Ours: every kind checked; a value that does not fit is an error value and a problem.
    /// An empty value is the same as an absent one.
    Strict,
    /// Session profile keys: raw strings read as the reference reads them; values outside a
    /// switch's or an enum's names are reported.
    Profile,
}

/// One key of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    pub name: &'static str,
    pub kind: Kind,
    /// The built-in default as it would be written in the file; `None`: no default.
    pub default: Option<&'static str>,
    /// Where the default comes from when it is not a constant (e.g. an environment variable).
    pub default_note: Option<&'static str>,
    /// An x2gobroker-rs addition (left out of the reference's materialised `[global]`).
    pub ours: bool,
    /// Accepted and ignored (the reference's keys we have no use for).
    pub ignored: bool,
}

impl KeySpec {
    const fn new(name: &'static str, kind: Kind, default: Option<&'static str>) -> KeySpec {
        KeySpec {
            name,
            kind,
            default,
            default_note: None,
            ours: false,
            ignored: false,
        }
    }

    const fn ours(self) -> KeySpec {
        KeySpec { ours: true, ..self }
    }

    const fn ignored(self) -> KeySpec {
        KeySpec {
            ignored: true,
            ..self
        }
    }

    const fn default_note(self, note: &'static str) -> KeySpec {
        KeySpec {
            default_note: Some(note),
            ..self
        }
    }

    /// The §5.1 type template: the value whose type the raw string is typed after.
    fn template(&self) -> Value {
        match self.kind {
            Kind::Bool => Value::Bool(false),
            Kind::Int { .. } | Kind::Seconds { .. } | Kind::Milliseconds { .. } | Kind::Port => {
                Value::Int(0)
            }
            Kind::List | Kind::Networks => Value::List(Vec::new()),
            Kind::Text
            | Kind::Path
            | Kind::SocketAddress
            | Kind::Enum { .. }
            | Kind::Switch { .. } => Value::Str(String::new()),
        }
    }

    /// The typed default (§5.1), `None` for keys without one.
    pub fn default_value(&self) -> Option<Value> {
        let text = self.default?;
        typing::type_value(self.name, text, &self.template()).ok()
    }

    /// Whether an empty value means "not set" (the default is empty or absent).
    fn empty_is_unset(&self) -> bool {
        matches!(self.default, None | Some(""))
    }
}

/// One section of `x2gobroker.conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionSpec {
    pub name: &'static str,
    pub typing: Typing,
    pub keys: &'static [KeySpec],
    /// An x2gobroker-rs addition.
    pub ours: bool,
}

impl SectionSpec {
    /// The key called `name`, if this section has it.
    pub fn key(&self, name: &str) -> Option<&'static KeySpec> {
        self.keys.iter().find(|key| key.name == name)
    }
}

/// A raw value read by its key's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typed {
    Bool(bool),
    Int(i64),
    Duration(Duration),
    Port(u16),
    List(Vec<String>),
    /// Text, paths, and enum names (as written).
    Text(String),
}

fn in_range(range: Option<Range>, number: i64) -> bool {
    range.is_none_or(|range| (range.min..=range.max).contains(&number))
}

fn out_of_range(key: &str, raw: &str, range: Range, unit: &'static str) -> ValueError {
    ValueError::OutOfRange {
        key: key.to_string(),
        raw: raw.to_string(),
        min: range.min,
        max: range.max,
        unit,
    }
}

fn names_contain(names: &[&str], ignore_case: bool, raw: &str) -> bool {
    names.iter().any(|name| {
        if ignore_case {
            name.eq_ignore_ascii_case(raw)
        } else {
            *name == raw
        }
    })
}

impl Kind {
    /// Reads `raw` strictly by this kind (our sections; also `--check-config`'s checks).
    pub fn parse(&self, key: &str, raw: &str) -> Result<Typed, ValueError> {
        let trimmed = raw.trim();
        let whole = |unit: &'static str, range: Option<Range>| {
            let number = trimmed
                .parse::<i64>()
                .map_err(|_| ValueError::NotAWholeNumber {
                    key: key.to_string(),
                    raw: raw.to_string(),
                    unit,
                })?;
            match range {
                Some(range) if !in_range(Some(range), number) => {
                    Err(out_of_range(key, raw, range, unit))
                }
                _ => Ok(number),
            }
        };
        match *self {
            Kind::Bool => {
                typing::parse_bool(raw)
                    .map(Typed::Bool)
                    .ok_or_else(|| ValueError::NotABool {
                        key: key.to_string(),
                        raw: raw.to_string(),
                    })
            }
            Kind::Int { range } => whole("", range).map(Typed::Int),
            Kind::Seconds { range } => whole("seconds", range)
                .map(|seconds| Typed::Duration(Duration::from_secs(seconds.unsigned_abs()))),
            Kind::Milliseconds { range } => whole("milliseconds", range)
                .map(|millis| Typed::Duration(Duration::from_millis(millis.unsigned_abs()))),
            Kind::Port => trimmed
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .map(Typed::Port)
                .ok_or_else(|| ValueError::NotAPort {
                    key: key.to_string(),
                    raw: raw.to_string(),
                }),
            Kind::List => match typing::type_value(key, raw, &Value::List(Vec::new()))? {
                Value::List(items) => Ok(Typed::List(items)),
                _ => Ok(Typed::List(Vec::new())),
            },
            Kind::Networks => {
                let items = match Kind::List.parse(key, raw)? {
                    Typed::List(items) => items,
                    _ => Vec::new(),
                };
                super::Networks::parse(items.iter().map(String::as_str)).map_err(|item| {
                    ValueError::NotANetwork {
                        key: key.to_string(),
                        raw: raw.to_string(),
                        item,
                    }
                })?;
                Ok(Typed::List(items))
            }
            Kind::Text | Kind::Path => Ok(Typed::Text(raw.to_string())),
            Kind::SocketAddress => trimmed
                .parse::<std::net::SocketAddr>()
                .map(|_| Typed::Text(trimmed.to_string()))
                .map_err(|_| ValueError::NotASocketAddress {
                    key: key.to_string(),
                    raw: raw.to_string(),
                }),
            Kind::Enum {
                names, ignore_case, ..
            } => {
                if names_contain(names, ignore_case, trimmed) {
                    Ok(Typed::Text(trimmed.to_string()))
                } else {
                    Err(self.not_one_of(key, raw, None))
                }
            }
            Kind::Switch {
                on,
                off,
                ignore_case,
            } => {
                if names_contain(on, ignore_case, raw) {
                    Ok(Typed::Bool(true))
                } else if names_contain(off, ignore_case, raw) {
                    Ok(Typed::Bool(false))
                } else {
                    Err(self.not_one_of(key, raw, Some("read as off")))
                }
            }
        }
    }

    fn not_one_of(&self, key: &str, raw: &str, read_as: Option<&str>) -> ValueError {
        let (names, otherwise): (Vec<&str>, &str) = match *self {
            Kind::Enum {
                names, otherwise, ..
            } => (names.to_vec(), otherwise),
            Kind::Switch { on, off, .. } => (on.iter().chain(off).copied().collect(), ""),
            _ => (Vec::new(), ""),
        };
        ValueError::NotOneOf {
            key: key.to_string(),
            raw: raw.to_string(),
            names: names.join(", "),
            read_as: read_as.unwrap_or(otherwise).to_string(),
        }
    }
}

/// Checks one raw value of `key` in a section typed `typing`: the problem `--check-config`
/// reports, if any.
pub fn check(typing: Typing, key: &KeySpec, raw: &str) -> Result<(), ValueError> {
    let empty = raw.trim().is_empty();
    match typing {
        Typing::Strict if empty => Ok(()),
        Typing::Strict => key.kind.parse(key.name, raw).map(|_| ()),
        Typing::Reference => {
            let typed = typing::type_value(key.name, raw, &key.template())?;
            match (key.kind, typed) {
                (Kind::Int { range: Some(range) }, Value::Int(number))
                    if !in_range(Some(range), number) =>
                {
                    Err(out_of_range(key.name, raw, range, ""))
                }
                (Kind::Seconds { range: Some(range) }, Value::Int(number))
                    if !in_range(Some(range), number) =>
                {
                    Err(out_of_range(key.name, raw, range, "seconds"))
                }
                (Kind::Enum { .. }, _) if empty && key.empty_is_unset() => Ok(()),
                (Kind::Enum { .. }, _) => key.kind.parse(key.name, raw).map(|_| ()),
                (Kind::Networks, _) => key.kind.parse(key.name, raw).map(|_| ()),
                _ => Ok(()),
            }
        }
        Typing::Profile => match key.kind {
            Kind::Enum { .. } | Kind::Switch { .. } if !empty => {
                key.kind.parse(key.name, raw).map(|_| ())
            }
            _ => Ok(()),
        },
    }
}

const fn range(min: i64, max: i64) -> Option<Range> {
    Some(Range { min, max })
}

/// Agent query modes (§5.3, and our GRPC).
pub const AGENT_QUERY_MODES: &[&str] = &["NONE", "LOCAL", "SSH", "GRPC"];
/// Paramiko's host-key policies, as the reference names them.
pub const HOSTKEY_POLICIES: &[&str] = &["AutoAddPolicy", "RejectPolicy", "WarningPolicy"];
/// Authentication mechanisms (§6.1).
pub const AUTH_MECHANISMS: &[&str] = &["pam", "https_get", "none", "testsuite"];
/// Name services for ACLs.
pub const NAME_SERVICES: &[&str] = &["libnss", "testsuite"];

const AGENT_QUERY_MODE: Kind = Kind::Enum {
    names: AGENT_QUERY_MODES,
    ignore_case: true,
    otherwise: "read as NONE",
};
const HOSTKEY_POLICY: Kind = Kind::Enum {
    names: HOSTKEY_POLICIES,
    ignore_case: false,
    otherwise: "read as RejectPolicy",
};
const AUTH_MECH: Kind = Kind::Enum {
    names: AUTH_MECHANISMS,
    ignore_case: true,
    otherwise: "every login fails",
};
const SHARED_SESSION_DB: Kind = Kind::Enum {
    names: &["auto", "yes", "no"],
    ignore_case: true,
    otherwise: "read as auto",
};
const NAME_SERVICE: Kind = Kind::Enum {
    names: NAME_SERVICES,
    ignore_case: true,
    otherwise: "requests that check ACLs fail",
};
/// Where a trusted proxy puts the client's address.
pub const CLIENT_ADDRESS_HEADERS: &[&str] = &["X-Forwarded-For", "Forwarded"];
const CLIENT_ADDRESS_HEADER: Kind = Kind::Enum {
    names: CLIENT_ADDRESS_HEADERS,
    ignore_case: true,
    otherwise: "read as X-Forwarded-For",
};
const SECONDS: Kind = Kind::Seconds { range: None };
/// Timeouts and intervals of `[farm]`: at least 1 ms, at most a day.
const FARM_MILLISECONDS: Kind = Kind::Milliseconds {
    range: range(1, 86_400_000),
};
/// Lifetimes of `[farm]`: at least 1 s, at most a day.
const FARM_SECONDS: Kind = Kind::Seconds {
    range: range(1, 86_400),
};

/// `[global]` key names.
pub mod global {
    pub const SECTION: &str = "global";
    pub const REQUIRE_PASSWORD: &str = "require-password";
    pub const REQUIRE_COOKIE: &str = "require-cookie";
    pub const CHECK_CREDENTIALS: &str = "check-credentials";
    pub const USE_STATIC_COOKIE: &str = "use-static-cookie";
    pub const AUTH_TIMEOUT: &str = "auth-timeout";
    pub const COOKIE_DIRECTORY: &str = "cookie-directory";
    pub const VERIFY_IP: &str = "verify-ip";
    pub const PRE_AUTH_SCRIPTS: &str = "pre_auth_scripts";
    pub const POST_AUTH_SCRIPTS: &str = "post_auth_scripts";
    pub const SELECT_SESSION_SCRIPTS: &str = "select_session_scripts";
    pub const MY_COOKIE_FILE: &str = "my-cookie-file";
    pub const ENABLE_PLAIN_OUTPUT: &str = "enable-plain-output";
    pub const ENABLE_JSON_OUTPUT: &str = "enable-json-output";
    pub const ENABLE_UCCS_OUTPUT: &str = "enable-uccs-output";
    pub const MY_UCCS_URL_BASE: &str = "my-uccs-url-base";
    pub const DEFAULT_AUTH_MECH: &str = "default-auth-mech";
    pub const DEFAULT_USER_DB: &str = "default-user-db";
    pub const DEFAULT_GROUP_DB: &str = "default-group-db";
    pub const IGNORE_PRIMARY_GROUP_MEMBERSHIPS: &str = "ignore-primary-group-memberships";
    pub const DEFAULT_SESSION_AUTOLOGIN: &str = "default-session-autologin";
    pub const DEFAULT_AUTHORIZED_KEYS: &str = "default-authorized-keys";
    pub const DEFAULT_SSHPROXY_AUTHORIZED_KEYS: &str = "default-sshproxy-authorized-keys";
    pub const DEFAULT_AGENT_QUERY_MODE: &str = "default-agent-query-mode";
    pub const DEFAULT_AGENT_HOSTKEY_POLICY: &str = "default-agent-hostkey-policy";
    pub const DEFAULT_PORTSCAN_X2GOSERVERS: &str = "default-portscan-x2goservers";
    pub const DEFAULT_USE_LOAD_CHECKER: &str = "default-use-load-checker";
    pub const LOAD_CHECKER_INTERVALS: &str = "load-checker-intervals";
    pub const MY_COOKIE: &str = "my-cookie";
    pub const ALLOW_GET_REQUESTS: &str = "allow-get-requests";
    pub const LOGIN_THROTTLING: &str = "login-throttling";
    pub const AUTHSERVICE_SOCKET: &str = "authservice-socket";
    pub const PUBKEYS_ALL_TYPES: &str = "pubkeys-all-types";
    pub const MAX_COOKIES_PER_USER: &str = "max-cookies-per-user";
    pub const TRUSTED_PROXIES: &str = "trusted-proxies";
    pub const CLIENT_ADDRESS_HEADER: &str = "client-address-header";
    pub const URL_PREFIX: &str = "url-prefix";
    pub const TLS_CERT: &str = "tls-cert";
    pub const TLS_KEY: &str = "tls-key";
}

/// Key names of the backend sections (`[broker_<backend>]`).
pub mod backend {
    pub const INIFILE_SECTION: &str = "broker_inifile";
    pub const ZEROCONF_SECTION: &str = "broker_zeroconf";
    pub const BASE_SECTION: &str = "broker_base";
    /// The reference's LDAP backend exists only as defaults: the section is known, not read.
    pub const LDAP_SECTION: &str = "broker_ldap";
    pub const ENABLE: &str = "enable";
    pub const SESSION_PROFILES: &str = "session-profiles";
    pub const AUTH_MECH: &str = "auth-mech";
    pub const USER_DB: &str = "user-db";
    pub const GROUP_DB: &str = "group-db";
    pub const USE_LOAD_CHECKER: &str = "use-load-checker";
    pub const AGENT_QUERY_MODE: &str = "agent-query-mode";
    pub const AGENT_HOSTKEY_POLICY: &str = "agent-hostkey-policy";
    pub const DESKTOP_SHELL: &str = "desktop-shell";
    pub const LOAD_CHECKER: &str = "load-checker";
}

/// `[authmech_https_get]` key names.
pub mod https_get {
    pub const SECTION: &str = "authmech_https_get";
    pub const HOST: &str = "host";
    pub const PORT: &str = "port";
    pub const PATH: &str = "path";
    pub const CA_FILE: &str = "ca-file";
}

/// `[farm]` key names (the live farm, x2gobroker-rs).
pub mod farm {
    pub const SECTION: &str = "farm";
    pub const AGENT_PORT: &str = "agent-port";
    pub const AGENT_TOKEN_FILE: &str = "agent-token-file";
    pub const HEARTBEAT_MS: &str = "heartbeat-ms";
    pub const CALL_TIMEOUT_MS: &str = "call-timeout-ms";
    pub const TAKEOVER_WAIT_MS: &str = "takeover-wait-ms";
    pub const AUTOLOGIN_KEY_LIFETIME: &str = "autologin-key-lifetime";
    pub const PENDING_PLACEMENT_TTL: &str = "pending-placement-ttl";
    pub const AGENT_CA_FILE: &str = "agent-ca-file";
    pub const AGENT_CLIENT_CERT: &str = "agent-client-cert";
    pub const AGENT_CLIENT_KEY: &str = "agent-client-key";
    pub const LEGACY_POLL_MS: &str = "legacy-poll-ms";
    pub const SSH_KEY_FILE: &str = "ssh-key-file";
    pub const SSH_USER: &str = "ssh-user";
    pub const SSH_KNOWN_HOSTS_FILE: &str = "ssh-known-hosts-file";
    pub const SSH_CONFIG_FILE: &str = "ssh-config-file";
    pub const SSH_CONTROL_DIRECTORY: &str = "ssh-control-directory";
    pub const AGENT_COMMAND: &str = "agent-command";
    pub const SSH_FALLBACK: &str = "ssh-fallback";
    pub const GRPC_RETRY_MS: &str = "grpc-retry-ms";
    pub const LEGACY_SHARED_SESSION_DB: &str = "legacy-shared-session-db";
    pub const LEGACY_ANSWER_REUSE_MS: &str = "legacy-answer-reuse-ms";
    pub const STATE_DIRECTORY: &str = "state-directory";
}

/// `[http]` key names: limits of the client port (x2gobroker-rs).
pub mod http {
    pub const SECTION: &str = "http";
    pub const MAX_CONNECTIONS: &str = "max-connections";
    pub const HEADER_TIMEOUT_MS: &str = "header-timeout-ms";
    pub const BODY_TIMEOUT_MS: &str = "body-timeout-ms";
    pub const REQUEST_TIMEOUT_MS: &str = "request-timeout-ms";
    pub const MAX_BODY_BYTES: &str = "max-body-bytes";
    pub const MAX_PARAMETERS: &str = "max-parameters";
    pub const KEEP_ALIVE: &str = "keep-alive";
}

/// `[admin]` key names: the admin listener, drain state and audit log (x2gobroker-rs).
pub mod admin {
    pub const SECTION: &str = "admin";
    pub const BIND: &str = "bind";
    pub const TLS_CERT: &str = "tls-cert";
    pub const TLS_KEY: &str = "tls-key";
    pub const CLIENT_CA: &str = "client-ca";
    pub const TOKEN_FILE: &str = "token-file";
    pub const STATE_DIRECTORY: &str = "state-directory";
    pub const AUDIT_LOG: &str = "audit-log";
}

/// `[cluster]`: several brokers on one PostgreSQL (x2gobroker-rs, issue 16).
pub mod cluster {
    pub const SECTION: &str = "cluster";
    pub const DATABASE_URL: &str = "database-url";
    pub const PASSWORD_FILE: &str = "password-file";
    pub const NAME: &str = "name";
    pub const CA_FILE: &str = "ca-file";
    pub const DEGRADED_AFTER_MS: &str = "degraded-after-ms";
    pub const CLEANUP_INTERVAL_MS: &str = "cleanup-interval-ms";
    pub const LEASE_TTL_MS: &str = "lease-ttl-ms";
}

/// The `broker-*` keys of a session profile.
pub mod profile {
    pub const AGENT_QUERY_MODE: &str = "broker-agent-query-mode";
    pub const AGENT_HOSTKEY_POLICY: &str = "broker-agent-hostkey-policy";
    pub const PORTSCAN_X2GOSERVERS: &str = "broker-portscan-x2goservers";
    pub const SESSION_AUTOLOGIN: &str = "broker-session-autologin";
    pub const USE_LOAD_CHECKER: &str = "broker-use-load-checker";
    pub const AUTHORIZED_KEYS: &str = "broker-authorized-keys";
    pub const SSHPROXY_AUTHORIZED_KEYS: &str = "broker-sshproxy-authorized-keys";
}

/// The default agent command (`X2GOBROKER_AGENT_CMD`, §2).
pub const DEFAULT_AGENT_COMMAND: &str = "/usr/lib/x2go/x2gobroker-agent";
/// The default auth-service socket (fix B20: never the doubled path).
pub const DEFAULT_AUTHSERVICE_SOCKET: &str = "/run/x2gobroker/x2gobroker-authservice.socket";

/// `[global]` (§5.2), in the order the reference materialises it (`my-cookie` last of its
/// keys), then ours.
pub static GLOBAL: SectionSpec = SectionSpec {
    name: global::SECTION,
    typing: Typing::Reference,
    ours: false,
    keys: &[
        KeySpec::new(global::REQUIRE_PASSWORD, Kind::Bool, Some("true")),
        KeySpec::new(global::REQUIRE_COOKIE, Kind::Bool, Some("false")),
        KeySpec::new(global::CHECK_CREDENTIALS, Kind::Bool, Some("true")),
        KeySpec::new(global::USE_STATIC_COOKIE, Kind::Bool, Some("false")),
        KeySpec::new(global::AUTH_TIMEOUT, SECONDS, Some("36000")),
        KeySpec::new(
            global::COOKIE_DIRECTORY,
            Kind::Path,
            Some("/var/lib/x2gobroker/cookies"),
        )
        .default_note("X2GOBROKER_COOKIE_DIRECTORY wins"),
        KeySpec::new(global::VERIFY_IP, Kind::Bool, Some("true")),
        KeySpec::new(global::PRE_AUTH_SCRIPTS, Kind::List, Some("[]")).ignored(),
        KeySpec::new(global::POST_AUTH_SCRIPTS, Kind::List, Some("[]")).ignored(),
        KeySpec::new(global::SELECT_SESSION_SCRIPTS, Kind::List, Some("[]")).ignored(),
        KeySpec::new(
            global::MY_COOKIE_FILE,
            Kind::Path,
            Some("/etc/x2go/broker/x2gobroker.authid"),
        ),
        KeySpec::new(global::ENABLE_PLAIN_OUTPUT, Kind::Bool, Some("true")),
        KeySpec::new(global::ENABLE_JSON_OUTPUT, Kind::Bool, Some("true")),
        KeySpec::new(global::ENABLE_UCCS_OUTPUT, Kind::Bool, Some("false")),
        KeySpec::new(
            global::MY_UCCS_URL_BASE,
            Kind::Text,
            Some("http://localhost:8080/"),
        ),
        KeySpec::new(global::DEFAULT_AUTH_MECH, AUTH_MECH, Some("pam")),
        KeySpec::new(global::DEFAULT_USER_DB, NAME_SERVICE, Some("libnss")).ignored(),
        KeySpec::new(global::DEFAULT_GROUP_DB, NAME_SERVICE, Some("libnss")),
        KeySpec::new(
            global::IGNORE_PRIMARY_GROUP_MEMBERSHIPS,
            Kind::Bool,
            Some("true"),
        ),
        KeySpec::new(global::DEFAULT_SESSION_AUTOLOGIN, Kind::Bool, Some("false")),
        KeySpec::new(
            global::DEFAULT_AUTHORIZED_KEYS,
            Kind::Path,
            Some("%h/.x2go/authorized_keys"),
        ),
        KeySpec::new(
            global::DEFAULT_SSHPROXY_AUTHORIZED_KEYS,
            Kind::Path,
            Some("%h/.x2go/authorized_keys"),
        )
        .ignored(),
        KeySpec::new(global::DEFAULT_AGENT_QUERY_MODE, AGENT_QUERY_MODE, Some("NONE")),
        KeySpec::new(
            global::DEFAULT_AGENT_HOSTKEY_POLICY,
            HOSTKEY_POLICY,
            Some("RejectPolicy"),
        ),
        KeySpec::new(global::DEFAULT_PORTSCAN_X2GOSERVERS, Kind::Bool, Some("true")),
        KeySpec::new(global::DEFAULT_USE_LOAD_CHECKER, Kind::Bool, Some("false")),
        KeySpec::new(
            global::LOAD_CHECKER_INTERVALS,
            Kind::Seconds {
                range: range(1, 86_400),
            },
            Some("300"),
        ),
        KeySpec::new(global::MY_COOKIE, Kind::Text, None),
        KeySpec::new(global::ALLOW_GET_REQUESTS, Kind::Bool, Some("true")).ours(),
        KeySpec::new(global::LOGIN_THROTTLING, Kind::Bool, Some("true")).ours(),
        KeySpec::new(global::AUTHSERVICE_SOCKET, Kind::Path, Some(""))
            .ours()
            .default_note(
                "X2GOBROKER_AUTHSERVICE_SOCKET wins; empty: /run/x2gobroker/x2gobroker-authservice.socket",
            ),
        KeySpec::new(global::PUBKEYS_ALL_TYPES, Kind::Bool, Some("false")).ours(),
        KeySpec::new(
            global::MAX_COOKIES_PER_USER,
            Kind::Int {
                range: range(1, 10_000),
            },
            Some("10"),
        )
        .ours(),
        KeySpec::new(global::TRUSTED_PROXIES, Kind::Networks, Some("[]"))
            .ours()
            .default_note("none: forwarding headers and PROXY headers are never read"),
        KeySpec::new(
            global::CLIENT_ADDRESS_HEADER,
            CLIENT_ADDRESS_HEADER,
            Some("X-Forwarded-For"),
        )
        .ours(),
        KeySpec::new(global::URL_PREFIX, Kind::Text, Some(""))
            .ours()
            .default_note("empty: served at /"),
        KeySpec::new(global::TLS_CERT, Kind::Path, Some(""))
            .ours()
            .default_note("X2GOBROKER_SSL_CERTFILE wins; read at start-up and on SIGHUP"),
        KeySpec::new(global::TLS_KEY, Kind::Path, Some(""))
            .ours()
            .default_note("X2GOBROKER_SSL_KEYFILE wins; read at start-up and on SIGHUP"),
    ],
};

/// `[broker_inifile]` (§5.2).
pub static BROKER_INIFILE: SectionSpec = SectionSpec {
    name: backend::INIFILE_SECTION,
    typing: Typing::Reference,
    ours: false,
    keys: &[
        KeySpec::new(backend::ENABLE, Kind::Bool, Some("true")),
        KeySpec::new(
            backend::SESSION_PROFILES,
            Kind::Path,
            Some("/etc/x2go/broker/x2gobroker-sessionprofiles.conf"),
        )
        .default_note("X2GOBROKER_SESSIONPROFILES wins; read at start-up"),
        KeySpec::new(backend::AUTH_MECH, AUTH_MECH, Some("")),
        KeySpec::new(backend::USER_DB, NAME_SERVICE, Some("")).ignored(),
        KeySpec::new(backend::GROUP_DB, NAME_SERVICE, Some("")),
        KeySpec::new(backend::USE_LOAD_CHECKER, Kind::Bool, Some("true")),
        KeySpec::new(backend::AGENT_QUERY_MODE, AGENT_QUERY_MODE, None),
        KeySpec::new(backend::AGENT_HOSTKEY_POLICY, HOSTKEY_POLICY, None),
    ],
};

/// `[broker_zeroconf]` (§5.2).
pub static BROKER_ZEROCONF: SectionSpec = SectionSpec {
    name: backend::ZEROCONF_SECTION,
    typing: Typing::Reference,
    ours: false,
    keys: &[
        KeySpec::new(backend::ENABLE, Kind::Bool, Some("false")),
        KeySpec::new(backend::AUTH_MECH, AUTH_MECH, Some("pam")),
        KeySpec::new(backend::USER_DB, NAME_SERVICE, Some("libnss")).ignored(),
        KeySpec::new(backend::GROUP_DB, NAME_SERVICE, Some("libnss")),
        KeySpec::new(backend::DESKTOP_SHELL, Kind::Text, Some("KDE")),
        KeySpec::new(backend::LOAD_CHECKER, Kind::Bool, Some("false")).ignored(),
    ],
};

/// `[broker_base]`: the abstract backend, used for UCCS authentication (§4).
pub static BROKER_BASE: SectionSpec = SectionSpec {
    name: backend::BASE_SECTION,
    typing: Typing::Reference,
    ours: false,
    keys: &[
        KeySpec::new(backend::ENABLE, Kind::Bool, Some("false")),
        KeySpec::new(backend::AUTH_MECH, AUTH_MECH, None),
        KeySpec::new(backend::USER_DB, NAME_SERVICE, None).ignored(),
        KeySpec::new(backend::GROUP_DB, NAME_SERVICE, None),
    ],
};

/// `[authmech_https_get]` (§6.1, fix B4).
pub static AUTHMECH_HTTPS_GET: SectionSpec = SectionSpec {
    name: https_get::SECTION,
    typing: Typing::Strict,
    ours: false,
    keys: &[
        KeySpec::new(https_get::HOST, Kind::Text, None),
        KeySpec::new(https_get::PORT, Kind::Port, Some("443")),
        KeySpec::new(https_get::PATH, Kind::Text, None),
        KeySpec::new(https_get::CA_FILE, Kind::Path, None).ours(),
    ],
};

/// `[farm]`: the live farm state (x2gobroker-rs). Read at start-up.
pub static FARM: SectionSpec = SectionSpec {
    name: farm::SECTION,
    typing: Typing::Strict,
    ours: true,
    keys: &[
        KeySpec::new(farm::AGENT_PORT, Kind::Port, None),
        KeySpec::new(farm::AGENT_TOKEN_FILE, Kind::Path, None),
        KeySpec::new(farm::HEARTBEAT_MS, FARM_MILLISECONDS, Some("2000")),
        KeySpec::new(farm::CALL_TIMEOUT_MS, FARM_MILLISECONDS, Some("2000")),
        KeySpec::new(farm::TAKEOVER_WAIT_MS, FARM_MILLISECONDS, Some("3000")),
        KeySpec::new(farm::AUTOLOGIN_KEY_LIFETIME, FARM_SECONDS, Some("20")),
        KeySpec::new(farm::PENDING_PLACEMENT_TTL, FARM_SECONDS, Some("30")),
        KeySpec::new(farm::AGENT_CA_FILE, Kind::Path, None),
        KeySpec::new(farm::AGENT_CLIENT_CERT, Kind::Path, None),
        KeySpec::new(farm::AGENT_CLIENT_KEY, Kind::Path, None),
        KeySpec::new(farm::LEGACY_POLL_MS, FARM_MILLISECONDS, Some("10000")),
        KeySpec::new(farm::SSH_KEY_FILE, Kind::Path, None),
        KeySpec::new(farm::SSH_USER, Kind::Text, None)
            .default_note("X2GOBROKER_AGENT_USER, else x2gobroker"),
        KeySpec::new(farm::SSH_KNOWN_HOSTS_FILE, Kind::Path, None),
        KeySpec::new(farm::SSH_CONFIG_FILE, Kind::Path, None),
        KeySpec::new(farm::SSH_CONTROL_DIRECTORY, Kind::Path, None)
            .default_note("the temporary directory ($TMPDIR, else /tmp)"),
        KeySpec::new(farm::AGENT_COMMAND, Kind::Path, None)
            .default_note("X2GOBROKER_AGENT_CMD, else /usr/lib/x2go/x2gobroker-agent"),
        KeySpec::new(farm::SSH_FALLBACK, Kind::Bool, Some("true")),
        KeySpec::new(farm::GRPC_RETRY_MS, FARM_MILLISECONDS, Some("30000")),
        KeySpec::new(
            farm::LEGACY_SHARED_SESSION_DB,
            SHARED_SESSION_DB,
            Some("auto"),
        ),
        KeySpec::new(
            farm::LEGACY_ANSWER_REUSE_MS,
            FARM_MILLISECONDS,
            Some("10000"),
        ),
        KeySpec::new(
            farm::STATE_DIRECTORY,
            Kind::Path,
            Some("/var/lib/x2gobroker"),
        ),
    ],
};

/// `[admin]`: the admin listener, drain state and audit log (x2gobroker-rs). Read at start-up.
pub static ADMIN: SectionSpec = SectionSpec {
    name: admin::SECTION,
    typing: Typing::Strict,
    ours: true,
    keys: &[
        KeySpec::new(admin::BIND, Kind::SocketAddress, Some("127.0.0.1:8081"))
            .default_note("empty: no admin listener"),
        KeySpec::new(admin::TLS_CERT, Kind::Path, None),
        KeySpec::new(admin::TLS_KEY, Kind::Path, None),
        KeySpec::new(admin::CLIENT_CA, Kind::Path, None),
        KeySpec::new(admin::TOKEN_FILE, Kind::Path, None),
        KeySpec::new(
            admin::STATE_DIRECTORY,
            Kind::Path,
            Some("/var/lib/x2gobroker"),
        ),
        KeySpec::new(
            admin::AUDIT_LOG,
            Kind::Path,
            Some("/var/log/x2gobroker/audit.log"),
        )
        .default_note("a file, or journald"),
    ],
};

/// Periods of `[cluster]`: at least 100 ms, at most a day.
const CLUSTER_MILLISECONDS: Kind = Kind::Milliseconds {
    range: range(100, 86_400_000),
};

/// `[cluster]`: the shared PostgreSQL of several active brokers (x2gobroker-rs). Read at
/// start-up; without the section the broker keeps everything in memory and files, as before.
pub static CLUSTER: SectionSpec = SectionSpec {
    name: cluster::SECTION,
    typing: Typing::Strict,
    ours: true,
    keys: &[
        KeySpec::new(cluster::DATABASE_URL, Kind::Text, None)
            .default_note("none: needed when [cluster] is present"),
        KeySpec::new(cluster::PASSWORD_FILE, Kind::Path, None),
        KeySpec::new(cluster::NAME, Kind::Text, None)
            .default_note("the host name and the client port"),
        KeySpec::new(cluster::CA_FILE, Kind::Path, None),
        KeySpec::new(
            cluster::DEGRADED_AFTER_MS,
            CLUSTER_MILLISECONDS,
            Some("5000"),
        ),
        KeySpec::new(
            cluster::CLEANUP_INTERVAL_MS,
            CLUSTER_MILLISECONDS,
            Some("10000"),
        ),
        KeySpec::new(cluster::LEASE_TTL_MS, CLUSTER_MILLISECONDS, Some("10000")),
    ],
};

/// Timeouts of `[http]`: at least 100 ms, at most an hour.
const HTTP_MILLISECONDS: Kind = Kind::Milliseconds {
    range: range(100, 3_600_000),
};

/// `[http]`: limits of the client port (x2gobroker-rs). Read at start-up.
pub static HTTP: SectionSpec = SectionSpec {
    name: http::SECTION,
    typing: Typing::Strict,
    ours: true,
    keys: &[
        KeySpec::new(
            http::MAX_CONNECTIONS,
            Kind::Int {
                range: range(16, 1_000_000),
            },
            Some("4096"),
        ),
        KeySpec::new(http::HEADER_TIMEOUT_MS, HTTP_MILLISECONDS, Some("10000")),
        KeySpec::new(http::BODY_TIMEOUT_MS, HTTP_MILLISECONDS, Some("10000")),
        KeySpec::new(http::REQUEST_TIMEOUT_MS, HTTP_MILLISECONDS, Some("60000")),
        KeySpec::new(
            http::MAX_BODY_BYTES,
            Kind::Int {
                range: range(1024, 64 * 1024 * 1024),
            },
            Some("1048576"),
        ),
        KeySpec::new(
            http::MAX_PARAMETERS,
            Kind::Int {
                range: range(8, 10_000),
            },
            Some("64"),
        ),
        KeySpec::new(http::KEEP_ALIVE, Kind::Bool, Some("true")),
    ],
};

/// Every section of `x2gobroker.conf` with keys (a new section: one more entry here, and its
/// resolver in `settings.rs`, which a test demands).
pub static SECTIONS: &[&SectionSpec] = &[
    &GLOBAL,
    &BROKER_INIFILE,
    &BROKER_ZEROCONF,
    &BROKER_BASE,
    &AUTHMECH_HTTPS_GET,
    &FARM,
    &HTTP,
    &ADMIN,
    &CLUSTER,
];

/// Sections that are known but not read.
pub const UNREAD_SECTIONS: [&str; 1] = [backend::LDAP_SECTION];

/// The section called `name`, if the table has it.
pub fn section(name: &str) -> Option<&'static SectionSpec> {
    SECTIONS
        .iter()
        .copied()
        .find(|section| section.name == name)
}

/// `broker-session-autologin`, `broker-portscan-x2goservers`: on iff `1` or `true` in any case.
const PROFILE_SWITCH: Kind = Kind::Switch {
    on: &["1", "true"],
    off: &["0", "false"],
    ignore_case: true,
};
/// `broker-use-load-checker`: on iff exactly one of `1 true TRUE True` (the reference).
const LOAD_CHECKER_SWITCH: Kind = Kind::Switch {
    on: &["1", "true", "TRUE", "True"],
    off: &["0", "false", "FALSE", "False"],
    ignore_case: false,
};

/// The `broker-*` keys of a session profile (§5.2 resolution rules; raw strings, no defaults
/// of their own: the `[global]` default applies).
pub static PROFILE_BROKER_KEYS: SectionSpec = SectionSpec {
    name: "<session profile>",
    typing: Typing::Profile,
    ours: false,
    keys: &[
        KeySpec::new(profile::AGENT_QUERY_MODE, AGENT_QUERY_MODE, None),
        KeySpec::new(profile::AGENT_HOSTKEY_POLICY, HOSTKEY_POLICY, None),
        KeySpec::new(profile::PORTSCAN_X2GOSERVERS, PROFILE_SWITCH, None),
        KeySpec::new(profile::SESSION_AUTOLOGIN, PROFILE_SWITCH, None),
        KeySpec::new(profile::USE_LOAD_CHECKER, LOAD_CHECKER_SWITCH, None),
        KeySpec::new(profile::AUTHORIZED_KEYS, Kind::Path, None),
        KeySpec::new(profile::SSHPROXY_AUTHORIZED_KEYS, Kind::Path, None).ignored(),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn every_key() -> impl Iterator<Item = (&'static SectionSpec, &'static KeySpec)> {
        SECTIONS
            .iter()
            .copied()
            .chain([&PROFILE_BROKER_KEYS])
            .flat_map(|section| section.keys.iter().map(move |key| (section, key)))
    }

    #[test]
    fn names_are_unique_and_defaults_fit_their_kind() {
        let mut seen = std::collections::BTreeSet::new();
        for (section, key) in every_key() {
            assert!(
                seen.insert((section.name, key.name)),
                "[{}] {} twice",
                section.name,
                key.name
            );
            if let Some(default) = key.default {
                assert_eq!(
                    check(section.typing, key, default),
                    Ok(()),
                    "[{}] {} default {default:?}",
                    section.name,
                    key.name
                );
                assert!(key.default_value().is_some(), "{}", key.name);
            }
        }
        let mut names: Vec<&str> = SECTIONS.iter().map(|section| section.name).collect();
        names.extend(UNREAD_SECTIONS);
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "section names are unique");
    }

    #[test]
    fn kinds_read_their_values() {
        let ms = FARM_MILLISECONDS;
        let cases: Vec<(Kind, &str, Result<Typed, &str>)> = vec![
            (Kind::Bool, "Yes", Ok(Typed::Bool(true))),
            (Kind::Bool, "off", Ok(Typed::Bool(false))),
            (Kind::Bool, "banana", Err("not a boolean")),
            (ms, "1500", Ok(Typed::Duration(Duration::from_millis(1500)))),
            (ms, " 7 ", Ok(Typed::Duration(Duration::from_millis(7)))),
            (ms, "banana", Err("not a whole number of milliseconds")),
            (ms, "1.5", Err("not a whole number of milliseconds")),
            (ms, "0", Err("out of range (1-86400000 milliseconds)")),
            (ms, "-5", Err("out of range")),
            (FARM_SECONDS, "86401", Err("out of range (1-86400 seconds)")),
            (
                FARM_SECONDS,
                "20",
                Ok(Typed::Duration(Duration::from_secs(20))),
            ),
            (Kind::Port, "50051", Ok(Typed::Port(50051))),
            (Kind::Port, "0", Err("not a port number (1-65535)")),
            (Kind::Port, "65536", Err("not a port number")),
            (Kind::Port, "http", Err("not a port number")),
            (
                Kind::SocketAddress,
                "127.0.0.1:8081",
                Ok(Typed::Text("127.0.0.1:8081".to_string())),
            ),
            (
                Kind::SocketAddress,
                " [::1]:9 ",
                Ok(Typed::Text("[::1]:9".to_string())),
            ),
            (
                Kind::SocketAddress,
                "localhost:8081",
                Err("not an IP address and port"),
            ),
            (
                Kind::SocketAddress,
                "8081",
                Err("not an IP address and port"),
            ),
            (Kind::Int { range: None }, "-3", Ok(Typed::Int(-3))),
            (
                Kind::Int { range: range(1, 9) },
                "10",
                Err("out of range (1-9)"),
            ),
            (
                Kind::List,
                "a, b",
                Ok(Typed::List(vec!["a".into(), "b".into()])),
            ),
            (
                Kind::List,
                "[os.system('x')]",
                Err("not a valid list literal"),
            ),
            (AGENT_QUERY_MODE, "grpc", Ok(Typed::Text("grpc".into()))),
            (
                AGENT_QUERY_MODE,
                "SHH",
                Err("not one of NONE, LOCAL, SSH, GRPC (read as NONE)"),
            ),
            (
                HOSTKEY_POLICY,
                "rejectpolicy",
                Err("(read as RejectPolicy)"),
            ),
            (PROFILE_SWITCH, "tRUE", Ok(Typed::Bool(true))),
            (PROFILE_SWITCH, "0", Ok(Typed::Bool(false))),
            (
                PROFILE_SWITCH,
                "yes",
                Err("not one of 1, true, 0, false (read as off)"),
            ),
            (LOAD_CHECKER_SWITCH, "True", Ok(Typed::Bool(true))),
            (LOAD_CHECKER_SWITCH, "tRUE", Err("(read as off)")),
            (Kind::Path, "", Ok(Typed::Text(String::new()))),
        ];
        for (kind, raw, expected) in cases {
            let got = kind.parse("k", raw);
            match (&got, &expected) {
                (Ok(value), Ok(wanted)) => assert_eq!(value, wanted, "{kind:?} {raw:?}"),
                (Err(error), Err(wanted)) => {
                    let text = error.to_string();
                    assert!(
                        text.starts_with(&format!("k = {raw:?}: ")) && text.contains(wanted),
                        "{kind:?} {raw:?}: {text}"
                    );
                }
                _ => panic!("{kind:?} {raw:?}: {got:?}, wanted {expected:?}"),
            }
        }
    }

    #[test]
    fn each_typing_checks_what_it_promises() {
        let global = |name| GLOBAL.key(name).unwrap();
        let farm = |name| FARM.key(name).unwrap();
        let inifile = |name| BROKER_INIFILE.key(name).unwrap();
        let profile = |name| PROFILE_BROKER_KEYS.key(name).unwrap();
        let cases: Vec<(Typing, &KeySpec, &str, bool)> = vec![
            // §5.1: not-set is an integer key's string; bool and list errors are errors
            (
                Typing::Reference,
                global(global::AUTH_TIMEOUT),
                "not-set",
                true,
            ),
            (Typing::Reference, global(global::AUTH_TIMEOUT), "-5", true),
            (
                Typing::Reference,
                global(global::AUTH_TIMEOUT),
                "soon",
                false,
            ),
            (Typing::Reference, global(global::VERIFY_IP), "maybe", false),
            (
                Typing::Reference,
                global(global::LOAD_CHECKER_INTERVALS),
                "0",
                false,
            ),
            (
                Typing::Reference,
                global(global::LOAD_CHECKER_INTERVALS),
                "not-set",
                true,
            ),
            (
                Typing::Reference,
                global(global::DEFAULT_AGENT_QUERY_MODE),
                "ssh",
                true,
            ),
            (
                Typing::Reference,
                global(global::DEFAULT_AGENT_QUERY_MODE),
                "",
                false,
            ),
            (
                Typing::Reference,
                global(global::DEFAULT_AUTH_MECH),
                "PAM",
                true,
            ),
            (
                Typing::Reference,
                global(global::DEFAULT_AUTH_MECH),
                "ldap",
                false,
            ),
            (
                Typing::Reference,
                global(global::MY_UCCS_URL_BASE),
                "anything",
                true,
            ),
            // a backend's empty value means "the global one"
            (Typing::Reference, inifile(backend::AUTH_MECH), "", true),
            (
                Typing::Reference,
                inifile(backend::AGENT_QUERY_MODE),
                "",
                true,
            ),
            (
                Typing::Reference,
                inifile(backend::AGENT_HOSTKEY_POLICY),
                "Reject",
                false,
            ),
            // ours: strict, empty = unset
            (Typing::Strict, farm(farm::HEARTBEAT_MS), "banana", false),
            (Typing::Strict, farm(farm::HEARTBEAT_MS), "", true),
            (Typing::Strict, farm(farm::SSH_FALLBACK), "off", true),
            (Typing::Strict, farm(farm::SSH_FALLBACK), "nope", false),
            (Typing::Strict, farm(farm::AGENT_PORT), "0", false),
            // profiles: the reference's raw strings, switches and names reported
            (
                Typing::Profile,
                profile(profile::SESSION_AUTOLOGIN),
                "yes",
                false,
            ),
            (
                Typing::Profile,
                profile(profile::SESSION_AUTOLOGIN),
                "true",
                true,
            ),
            (
                Typing::Profile,
                profile(profile::AGENT_QUERY_MODE),
                "Local",
                true,
            ),
            (
                Typing::Profile,
                profile(profile::AUTHORIZED_KEYS),
                "%h/keys",
                true,
            ),
        ];
        for (typing, key, raw, valid) in cases {
            assert_eq!(
                check(typing, key, raw).is_ok(),
                valid,
                "{typing:?} {} = {raw:?}: {:?}",
                key.name,
                check(typing, key, raw)
            );
        }
    }
}
