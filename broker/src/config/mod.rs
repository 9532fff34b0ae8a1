//! Broker configuration: `x2gobroker.conf` typed after its built-in defaults (§5) and the resolution rules.

pub mod ini;
pub mod store;
pub mod typing;
pub mod value;

pub use ini::{IniDocument, IniError};
pub use typing::ValueError;
pub use value::Value;

/// Backends the broker knows, from a fixed whitelist (fix §16 S1: never derived from the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Inifile,
    Zeroconf,
    /// The abstract backend: only used for UCCS authentication (§4).
    Base,
}

impl Backend {
    /// The backend for a name taken from a URL or command line; unknown names give `None`.
    pub fn from_name(name: &str) -> Option<Backend> {
        match name {
            "inifile" => Some(Backend::Inifile),
            "zeroconf" => Some(Backend::Zeroconf),
            "base" => Some(Backend::Base),
            _ => None,
        }
    }

    /// The backend's name, as in `[broker_<name>]`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Inifile => "inifile",
            Backend::Zeroconf => "zeroconf",
            Backend::Base => "base",
        }
    }

    fn section(self) -> &'static str {
        match self {
            Backend::Inifile => "broker_inifile",
            Backend::Zeroconf => "broker_zeroconf",
            Backend::Base => "broker_base",
        }
    }
}

fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

/// Built-in defaults of `[global]` (§5.2), typed; order as the reference materialises them.
pub fn global_defaults() -> &'static [(&'static str, Value)] {
    static DEFAULTS: std::sync::LazyLock<Vec<(&'static str, Value)>> =
        std::sync::LazyLock::new(build_global_defaults);
    &DEFAULTS
}

fn build_global_defaults() -> Vec<(&'static str, Value)> {
    vec![
        ("require-password", Value::Bool(true)),
        ("require-cookie", Value::Bool(false)),
        ("check-credentials", Value::Bool(true)),
        ("use-static-cookie", Value::Bool(false)),
        ("auth-timeout", Value::Int(36000)),
        ("cookie-directory", s("/var/lib/x2gobroker/cookies")),
        ("verify-ip", Value::Bool(true)),
        ("pre_auth_scripts", Value::List(vec![])),
        ("post_auth_scripts", Value::List(vec![])),
        ("select_session_scripts", Value::List(vec![])),
        ("my-cookie-file", s("/etc/x2go/broker/x2gobroker.authid")),
        ("enable-plain-output", Value::Bool(true)),
        ("enable-json-output", Value::Bool(true)),
        ("enable-uccs-output", Value::Bool(false)),
        ("my-uccs-url-base", s("http://localhost:8080/")),
        ("default-auth-mech", s("pam")),
        ("default-user-db", s("libnss")),
        ("default-group-db", s("libnss")),
        ("ignore-primary-group-memberships", Value::Bool(true)),
        ("default-session-autologin", Value::Bool(false)),
        ("default-authorized-keys", s("%h/.x2go/authorized_keys")),
        (
            "default-sshproxy-authorized-keys",
            s("%h/.x2go/authorized_keys"),
        ),
        ("default-agent-query-mode", s("NONE")),
        ("default-agent-hostkey-policy", s("RejectPolicy")),
        ("default-portscan-x2goservers", Value::Bool(true)),
        ("default-use-load-checker", Value::Bool(false)),
        ("load-checker-intervals", Value::Int(300)),
        // Our additions (not in the reference): see etc/x2gobroker.conf.
        ("allow-get-requests", Value::Bool(true)),
        ("login-throttling", Value::Bool(true)),
        ("authservice-socket", s("")),
        ("pubkeys-all-types", Value::Bool(false)),
    ]
}

/// Keys of `[global]` that x2gobroker-rs adds to the reference's.
pub const OUR_GLOBAL_KEYS: [&str; 4] = [
    "allow-get-requests",
    "login-throttling",
    "authservice-socket",
    "pubkeys-all-types",
];

/// Built-in defaults of a backend section (§5.2).
pub fn backend_defaults(backend: Backend) -> &'static [(&'static str, Value)] {
    type Defaults = std::sync::LazyLock<Vec<(&'static str, Value)>>;
    static BASE: Defaults = Defaults::new(|| build_backend_defaults(Backend::Base));
    static ZEROCONF: Defaults = Defaults::new(|| build_backend_defaults(Backend::Zeroconf));
    static INIFILE: Defaults = Defaults::new(|| build_backend_defaults(Backend::Inifile));
    match backend {
        Backend::Base => &BASE,
        Backend::Zeroconf => &ZEROCONF,
        Backend::Inifile => &INIFILE,
    }
}

fn build_backend_defaults(backend: Backend) -> Vec<(&'static str, Value)> {
    match backend {
        Backend::Base => vec![("enable", Value::Bool(false))],
        Backend::Zeroconf => vec![
            ("enable", Value::Bool(false)),
            ("auth-mech", s("pam")),
            ("user-db", s("libnss")),
            ("group-db", s("libnss")),
            ("desktop-shell", s("KDE")),
            ("load-checker", Value::Bool(false)),
        ],
        Backend::Inifile => vec![
            ("enable", Value::Bool(true)),
            (
                "session-profiles",
                s("/etc/x2go/broker/x2gobroker-sessionprofiles.conf"),
            ),
            ("auth-mech", s("")),
            ("user-db", s("")),
            ("group-db", s("")),
            ("use-load-checker", Value::Bool(true)),
        ],
    }
}

/// A configuration value that cannot be used; the requests that need it answer 500.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("[{section}] {source}")]
    BadValue {
        section: String,
        #[source]
        source: ValueError,
    },
    #[error("the configuration file could not be loaded: {0}")]
    Unloadable(String),
}

/// The typed view of one `x2gobroker.conf` text.
#[derive(Debug, Clone, Default)]
pub struct BrokerConfig {
    document: IniDocument,
}

impl BrokerConfig {
    /// Wraps a parsed document.
    pub fn new(document: IniDocument) -> BrokerConfig {
        BrokerConfig { document }
    }

    /// Parses the text of an `x2gobroker.conf`.
    pub fn parse(text: &str) -> Result<BrokerConfig, IniError> {
        IniDocument::parse(text).map(BrokerConfig::new)
    }

    /// The underlying document.
    pub fn document(&self) -> &IniDocument {
        &self.document
    }

    fn typed(
        &self,
        section: &str,
        key: &str,
        defaults: &[(&'static str, Value)],
    ) -> Result<Value, ConfigError> {
        let default = defaults
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.clone());
        match (self.document.get(section, key), default) {
            (Some(raw), Some(default)) => {
                typing::type_value(key, raw, &default).map_err(|source| ConfigError::BadValue {
                    section: section.to_string(),
                    source,
                })
            }
            (Some(raw), None) => Ok(Value::Str(raw.to_string())),
            (None, Some(default)) => Ok(default),
            (None, None) => Ok(Value::Str(String::new())),
        }
    }

    /// A `[global]` value typed after its default.
    pub fn global(&self, key: &str) -> Result<Value, ConfigError> {
        self.typed("global", key, global_defaults())
    }

    /// A `[global]` boolean.
    pub fn global_bool(&self, key: &str) -> Result<bool, ConfigError> {
        Ok(matches!(self.global(key)?, Value::Bool(true)))
    }

    /// A `[global]` string (rendered like the plain output for other types).
    pub fn global_str(&self, key: &str) -> Result<String, ConfigError> {
        Ok(self.global(key)?.render_plain())
    }

    /// A raw `[global]` value, if the file sets it.
    pub fn global_raw(&self, key: &str) -> Option<&str> {
        self.document.get("global", key)
    }

    /// A backend-section value typed after its default.
    pub fn backend(&self, backend: Backend, key: &str) -> Result<Value, ConfigError> {
        self.typed(backend.section(), key, backend_defaults(backend))
    }

    /// Whether the backend's `enable` is true.
    pub fn backend_enabled(&self, backend: Backend) -> Result<bool, ConfigError> {
        Ok(matches!(
            self.backend(backend, "enable")?,
            Value::Bool(true)
        ))
    }

    fn backend_or_global(
        &self,
        backend: Backend,
        backend_key: &str,
        global_key: &str,
    ) -> Result<String, ConfigError> {
        let from_backend = self.backend(backend, backend_key)?.render_plain();
        if !from_backend.is_empty() {
            return Ok(from_backend.to_lowercase());
        }
        Ok(self.global_str(global_key)?.to_lowercase())
    }

    /// The authentication mechanism of a backend, lower-cased (§5.2).
    pub fn auth_mech(&self, backend: Backend) -> Result<String, ConfigError> {
        self.backend_or_global(backend, "auth-mech", "default-auth-mech")
    }

    /// The user name service of a backend (`libnss`, `testsuite`).
    pub fn user_db(&self, backend: Backend) -> Result<String, ConfigError> {
        self.backend_or_global(backend, "user-db", "default-user-db")
    }

    /// The group name service of a backend.
    pub fn group_db(&self, backend: Backend) -> Result<String, ConfigError> {
        self.backend_or_global(backend, "group-db", "default-group-db")
    }

    /// The agent query mode for a profile, upper-cased (§5.2): profile key, backend key, global.
    pub fn agent_query_mode(
        &self,
        backend: Backend,
        profile_mode: Option<&str>,
    ) -> Result<String, ConfigError> {
        if let Some(mode) = profile_mode.filter(|mode| !mode.is_empty()) {
            return Ok(mode.to_uppercase());
        }
        let from_backend = self
            .document
            .get(backend.section(), "agent-query-mode")
            .unwrap_or("");
        if !from_backend.is_empty() {
            return Ok(from_backend.to_uppercase());
        }
        Ok(self.global_str("default-agent-query-mode")?.to_uppercase())
    }

    /// The SSH host-key policy for a profile; invalid values give `RejectPolicy`.
    pub fn agent_hostkey_policy(
        &self,
        backend: Backend,
        profile_policy: Option<&str>,
    ) -> Result<String, ConfigError> {
        let from_backend = self
            .document
            .get(backend.section(), "agent-hostkey-policy")
            .unwrap_or("");
        let chosen = match profile_policy.filter(|policy| !policy.is_empty()) {
            Some(policy) => policy.to_string(),
            None if !from_backend.is_empty() => from_backend.to_string(),
            None => self.global_str("default-agent-hostkey-policy")?,
        };
        Ok(match chosen.as_str() {
            "AutoAddPolicy" | "RejectPolicy" | "WarningPolicy" => chosen,
            _ => "RejectPolicy".to_string(),
        })
    }

    /// `require-password` and `require-cookie`, both false when legacy `check-credentials` is false.
    pub fn credential_requirements(&self) -> Result<(bool, bool), ConfigError> {
        if !self.global_bool("check-credentials")? {
            return Ok((false, false));
        }
        Ok((
            self.global_bool("require-password")?,
            self.global_bool("require-cookie")?,
        ))
    }

    /// The global default OR-ed with a profile's `broker-*` switch (B7: a profile can switch
    /// these on but never off).
    pub fn profile_switch(
        &self,
        global_key: &str,
        profile_value: Option<&str>,
    ) -> Result<bool, ConfigError> {
        let from_profile = profile_value
            .map(|value| matches!(value.to_lowercase().as_str(), "1" | "true"))
            .unwrap_or(false);
        Ok(from_profile || self.global_bool(global_key)?)
    }

    /// Whether a profile spreads new sessions by load factor (§11.3, the reference's
    /// `use_load_checker`): two hosts or more; at least one non-empty `broker-*` key (B8, kept:
    /// a profile without any is never load-checked); `broker-use-load-checker`, when set, one of
    /// `1 true TRUE True`; and the global, backend or profile switch on.
    pub fn uses_load_checker(
        &self,
        backend: Backend,
        profile: &crate::profiles::Profile,
    ) -> Result<bool, ConfigError> {
        let profile_switch = profile.broker_key("broker-use-load-checker");
        if profile.host_names().len() < 2
            || profile.broker.is_empty()
            || profile_switch.is_some_and(|value| !matches!(value, "1" | "true" | "TRUE" | "True"))
        {
            return Ok(false);
        }
        Ok(profile_switch.is_some()
            || self.global_bool("default-use-load-checker")?
            || matches!(
                self.backend(backend, "use-load-checker")?,
                Value::Bool(true)
            ))
    }

    /// `[global]` as the reference materialises it (`get_global_config`): every reference key,
    /// typed, with absent defaults rendered and re-typed (so empty lists become `[""]`) and
    /// `my-cookie` absent as `None`.
    pub fn reference_global_view(&self) -> Result<Vec<(String, Option<Value>)>, ConfigError> {
        let mut view = Vec::new();
        for &(key, ref default) in global_defaults() {
            if OUR_GLOBAL_KEYS.contains(&key) {
                continue;
            }
            let value = match self.global_raw(key) {
                Some(_) => self.global(key)?,
                None => {
                    let rendered = match default {
                        Value::List(items) => items.join(", "),
                        other => other.render_plain(),
                    };
                    typing::type_value(key, &rendered, default).unwrap_or_else(|_| default.clone())
                }
            };
            view.push((key.to_string(), Some(value)));
        }
        view.push((
            "my-cookie".to_string(),
            self.global_raw("my-cookie")
                .map(|raw| Value::Str(raw.to_string())),
        ));
        Ok(view)
    }

    /// Every problem of this configuration at once (for `--check-config`).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for &(key, _) in global_defaults() {
            if let Err(error) = self.global(key) {
                problems.push(error.to_string());
            }
        }
        for backend in [Backend::Inifile, Backend::Zeroconf, Backend::Base] {
            for &(key, _) in backend_defaults(backend) {
                if let Err(error) = self.backend(backend, key) {
                    problems.push(error.to_string());
                }
            }
        }
        let known_sections = [
            "global",
            "broker_inifile",
            "broker_zeroconf",
            "broker_base",
            "broker_ldap",
            "authmech_https_get",
        ];
        for section in &self.document.sections {
            if !known_sections.contains(&section.name.as_str()) {
                problems.push(format!("unknown section [{}] is ignored", section.name));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str) -> String {
        let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    #[test]
    fn resolves_auth_mech_like_the_reference() {
        // api_profiles.jsonl "get_authentication_mechanism"
        let cases = [
            ("[global]\n", "pam", "pam"),
            ("[global]\ndefault-auth-mech = NONE\n", "none", "pam"),
            (
                "[global]\ndefault-auth-mech = none\n[broker_inifile]\nauth-mech = Testsuite\n",
                "testsuite",
                "pam",
            ),
            (
                "[global]\ndefault-auth-mech = none\n[broker_zeroconf]\nenable=true\n",
                "none",
                "pam",
            ),
        ];
        for (text, inifile, zeroconf) in cases {
            let config = BrokerConfig::parse(text).unwrap();
            assert_eq!(
                config.auth_mech(Backend::Inifile).unwrap(),
                inifile,
                "{text}"
            );
            assert_eq!(
                config.auth_mech(Backend::Zeroconf).unwrap(),
                zeroconf,
                "{text}"
            );
            assert_eq!(config.user_db(Backend::Inifile).unwrap(), "libnss");
        }
    }

    #[test]
    fn global_config_matches_the_reference() {
        let mut checked = 0;
        for line in golden("api_profiles.jsonl").lines() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = match record["function"].as_str() {
                Some("get_global_config") => golden("configs/api_global_types.conf"),
                Some("get_global_config (no config file at all)") => String::new(),
                _ => continue,
            };
            let config = BrokerConfig::parse(&text).unwrap();
            let view: serde_json::Map<String, serde_json::Value> = config
                .reference_global_view()
                .unwrap()
                .into_iter()
                .map(|(key, value)| {
                    let json = value
                        .map(|value| crate::frontend::value_to_json(&value))
                        .unwrap_or(serde_json::Value::Null);
                    (key, json)
                })
                .collect();
            assert_eq!(serde_json::Value::Object(view), record["result"]);
            checked += 1;
        }
        assert_eq!(checked, 2);
    }

    #[test]
    fn load_checker_profiles_match_the_reference() {
        // loadchecker_socket.jsonl: a profile query gives a lone newline for profiles the
        // reference's load checker never polls
        let profiles_of =
            |file: &str| IniDocument::parse(&golden(&format!("configs/{file}"))).unwrap();
        let mut checked = Vec::new();
        for line in golden("loadchecker_socket.jsonl").lines() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let writes = record["socket_writes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let [write] = writes.as_slice() else { continue };
            let fields: Vec<&str> = write.as_str().unwrap().split('\r').collect();
            // whole-profile queries of the inifile backend (zeroconf has no such profiles)
            let ["inifile", id, "\n"] = fields.as_slice() else {
                continue;
            };
            let config = BrokerConfig::parse(&golden(&format!(
                "configs/{}",
                record["config"].as_str().unwrap()
            )))
            .unwrap();
            let document = profiles_of(record["profiles"].as_str().unwrap());
            let profile = crate::profiles::build_profile(&document, id)
                .unwrap()
                .unwrap();
            let polled = record["reply"].as_str().unwrap() != "\n";
            assert_eq!(
                config
                    .uses_load_checker(Backend::Inifile, &profile)
                    .unwrap(),
                polled,
                "{}",
                record["id"]
            );
            checked.push(id.to_string());
        }
        assert_eq!(
            checked,
            [
                "lc-multi",
                "lc-single",
                "lc-multi-optout",
                "lc-multi-anybrokerkey",
                "lc-multi-nobrokerkey"
            ]
        );
        // the switches: the backend's default (true) off, the global default on
        let document = profiles_of("profiles_loadchecker.ini");
        let profile = |id| {
            crate::profiles::build_profile(&document, id)
                .unwrap()
                .unwrap()
        };
        let backend_off =
            BrokerConfig::parse("[broker_inifile]\nuse-load-checker = false\n").unwrap();
        assert!(!backend_off
            .uses_load_checker(Backend::Inifile, &profile("lc-multi-anybrokerkey"))
            .unwrap());
        assert!(backend_off
            .uses_load_checker(Backend::Inifile, &profile("lc-multi"))
            .unwrap());
        let global_on = BrokerConfig::parse(
            "[global]\ndefault-use-load-checker = true\n[broker_inifile]\nuse-load-checker = false\n",
        )
        .unwrap();
        assert!(global_on
            .uses_load_checker(Backend::Inifile, &profile("lc-multi-anybrokerkey"))
            .unwrap());
        assert!(!global_on
            .uses_load_checker(Backend::Inifile, &profile("lc-multi-nobrokerkey"))
            .unwrap());
    }

    #[test]
    fn bad_values_fail_only_their_key() {
        let config =
            BrokerConfig::parse("[global]\nrequire-password = maybe\nauth-timeout = 60\n").unwrap();
        assert!(config.global_bool("require-password").is_err());
        assert_eq!(config.global("auth-timeout").unwrap(), Value::Int(60));
        assert_eq!(config.problems().len(), 1);
    }

    #[test]
    fn profile_switches_cannot_turn_off_the_global_default() {
        let config =
            BrokerConfig::parse("[global]\ndefault-portscan-x2goservers = true\n").unwrap();
        assert!(config
            .profile_switch("default-portscan-x2goservers", Some("false"))
            .unwrap());
        let off = BrokerConfig::parse("[global]\ndefault-portscan-x2goservers = false\n").unwrap();
        assert!(off
            .profile_switch("default-portscan-x2goservers", Some("TRUE"))
            .unwrap());
        assert!(!off
            .profile_switch("default-portscan-x2goservers", None)
            .unwrap());
    }
}
