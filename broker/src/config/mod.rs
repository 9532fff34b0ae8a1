//! Broker configuration: the key table, `x2gobroker.conf` typed once per loaded version (§5), the resolution rules, the start-up settings.

pub mod admin;
pub mod agent_mode;
pub mod cluster;
pub mod farm;
pub mod http;
pub mod ini;
pub mod keys;
pub mod networks;
pub mod settings;
pub mod startup;
pub mod typing;
pub mod value;

pub use admin::{AdminSettings, AuditTarget};
pub use agent_mode::{configured_agent_query_mode, effective_agent_mode, AgentQueryMode};
pub use cluster::ClusterSettings;
pub use farm::{FarmConfig, FarmDefaults, FarmSettings};
pub use http::HttpLimits;
pub use ini::{IniDocument, IniError};
pub use networks::Networks;
pub use settings::{BackendSettings, GlobalSettings, HttpsGetSettings, ProfileSettings, Setting};
pub use startup::{Source, StartupSettings};
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

/// One `x2gobroker.conf` text, typed once: every section of the key table resolved into its
/// settings (requests only read fields).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// The parsed text; read only inside `config/`.
    document: IniDocument,
    pub global: GlobalSettings,
    pub inifile: BackendSettings,
    pub zeroconf: BackendSettings,
    pub base: BackendSettings,
    pub https_get: HttpsGetSettings,
    pub farm: FarmSettings,
    pub http: HttpLimits,
    pub admin: AdminSettings,
    /// `[cluster]`; `None` without the section (one broker, no database).
    pub cluster: Option<ClusterSettings>,
}

impl Default for BrokerConfig {
    fn default() -> BrokerConfig {
        BrokerConfig::new(IniDocument::default())
    }
}

impl BrokerConfig {
    /// Types a parsed document.
    pub fn new(document: IniDocument) -> BrokerConfig {
        let global = GlobalSettings::resolve(&document);
        BrokerConfig {
            inifile: BackendSettings::resolve(&document, Backend::Inifile, &global),
            zeroconf: BackendSettings::resolve(&document, Backend::Zeroconf, &global),
            base: BackendSettings::resolve(&document, Backend::Base, &global),
            https_get: HttpsGetSettings::resolve(&document),
            farm: FarmSettings::resolve(&document, &global),
            http: HttpLimits::resolve(&document),
            admin: AdminSettings::resolve(&document),
            cluster: ClusterSettings::resolve(&document),
            global,
            document,
        }
    }

    /// Parses and types the text of an `x2gobroker.conf`.
    pub fn parse(text: &str) -> Result<BrokerConfig, IniError> {
        IniDocument::parse(text).map(BrokerConfig::new)
    }

    /// The settings of `backend`'s section.
    pub fn backend(&self, backend: Backend) -> &BackendSettings {
        match backend {
            Backend::Inifile => &self.inifile,
            Backend::Zeroconf => &self.zeroconf,
            Backend::Base => &self.base,
        }
    }

    /// Whether the file sets `key` of `section` (`[DEFAULT]` included).
    fn is_set(&self, section: &str, key: &str) -> bool {
        self.document.get(section, key).is_some()
    }

    /// `[global]` as the reference materialises it (`get_global_config`): every reference key,
    /// typed, with absent defaults rendered and re-typed (so empty lists become `[""]`) and
    /// keys without a default (`my-cookie`) absent as `None`.
    pub fn reference_global_view(&self) -> Result<Vec<(String, Option<Value>)>, ConfigError> {
        let read = settings::Reader::new(&self.document, &keys::GLOBAL);
        let mut view = Vec::new();
        for key in keys::GLOBAL.keys.iter().filter(|key| !key.ours) {
            let value = match (read.raw(key.name), key.default_value()) {
                (Some(_), _) => Some(read.value(key.name)?),
                (None, Some(default)) => {
                    let rendered = match &default {
                        Value::List(items) => items.join(", "),
                        other => other.render_plain(),
                    };
                    Some(typing::type_value(key.name, &rendered, &default).unwrap_or(default))
                }
                (None, None) => None,
            };
            view.push((key.name.to_string(), value));
        }
        Ok(view)
    }

    /// Every problem of this configuration at once (for `--check-config`): each names the
    /// section, the key and the value.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = settings::problems(&self.document);
        problems.extend(self.admin.combination_problems());
        if let Some(cluster) = &self.cluster {
            problems.extend(cluster.combination_problems());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uses_load_checker(config: &BrokerConfig, profile: &crate::profiles::Profile) -> bool {
        ProfileSettings::resolve(config, Backend::Inifile, profile)
            .use_load_checker
            .get()
            .unwrap()
    }

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
            assert_eq!(config.inifile.auth_mech, inifile, "{text}");
            assert_eq!(config.zeroconf.auth_mech, zeroconf, "{text}");
            assert_eq!(config.inifile.group_db, "libnss");
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
                uses_load_checker(&config, &profile),
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
        assert!(!uses_load_checker(
            &backend_off,
            &profile("lc-multi-anybrokerkey")
        ));
        assert!(uses_load_checker(&backend_off, &profile("lc-multi")));
        let global_on = BrokerConfig::parse(
            "[global]\ndefault-use-load-checker = true\n[broker_inifile]\nuse-load-checker = false\n",
        )
        .unwrap();
        assert!(uses_load_checker(
            &global_on,
            &profile("lc-multi-anybrokerkey")
        ));
        assert!(!uses_load_checker(
            &global_on,
            &profile("lc-multi-nobrokerkey")
        ));
    }

    #[test]
    fn profile_switches_cannot_turn_off_the_global_default() {
        let document =
            IniDocument::parse("[on]\nhost = a\nbroker-portscan-x2goservers = false\n[off]\nhost = a\nbroker-portscan-x2goservers = TRUE\n[unset]\nhost = a\n")
                .unwrap();
        let portscan = |config: &str, id: &str| {
            let config = BrokerConfig::parse(config).unwrap();
            let profile = crate::profiles::build_profile(&document, id)
                .unwrap()
                .unwrap();
            ProfileSettings::resolve(&config, Backend::Inifile, &profile)
                .portscan_x2goservers
                .get()
                .unwrap()
        };
        assert!(portscan(
            "[global]\ndefault-portscan-x2goservers = true\n",
            "on"
        ));
        assert!(portscan(
            "[global]\ndefault-portscan-x2goservers = false\n",
            "off"
        ));
        assert!(!portscan(
            "[global]\ndefault-portscan-x2goservers = false\n",
            "unset"
        ));
    }
}
