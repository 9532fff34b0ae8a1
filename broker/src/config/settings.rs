//! The typed settings of one loaded `x2gobroker.conf` — `[global]`, the backends, `[authmech_https_get]` — and each session profile's broker settings, resolved once per file version through the key table.
//!
//! A value that cannot be used is an error value ([`Setting`]): only the requests that read
//! that field fail (500), as in the reference.

use super::agent_mode::{configured_agent_query_mode, AgentQueryMode};
use super::keys::{self, backend, global, https_get, profile, KeySpec, SectionSpec, Typed, Typing};
use super::{typing, Backend, ConfigError, IniDocument, Value, ValueError};
use std::path::PathBuf;
use std::time::Duration;

/// A resolved value, or why the file's value for it cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T>(Result<T, ConfigError>);

impl<T> Setting<T> {
    /// Wraps a resolution result.
    pub fn new(result: Result<T, ConfigError>) -> Setting<T> {
        Setting(result)
    }

    /// The value (a copy), or the error that fails the request.
    pub fn get(&self) -> Result<T, ConfigError>
    where
        T: Clone,
    {
        self.0.clone()
    }

    /// The value by reference, or (a copy of) the error.
    pub fn as_ref(&self) -> Result<&T, ConfigError> {
        self.0.as_ref().map_err(ConfigError::clone)
    }
}

/// Reads the keys of one section through the table: a key the section does not list reads as
/// absent.
pub(super) struct Reader<'a> {
    document: &'a IniDocument,
    section: &'static SectionSpec,
    #[cfg(test)]
    asked: std::cell::RefCell<Vec<&'static str>>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(document: &'a IniDocument, section: &'static SectionSpec) -> Reader<'a> {
        Reader {
            document,
            section,
            #[cfg(test)]
            asked: std::cell::RefCell::new(Vec::new()),
        }
    }

    fn spec(&self, key: &'static str) -> Option<&'static KeySpec> {
        #[cfg(test)]
        self.asked.borrow_mut().push(key);
        self.section.key(key)
    }

    /// The raw value, `[DEFAULT]` included, of a key this section lists.
    pub(super) fn raw(&self, key: &'static str) -> Option<&'a str> {
        self.spec(key)?;
        self.document.get(self.section.name, key)
    }

    pub(super) fn bad_value(&self, source: ValueError) -> ConfigError {
        ConfigError::BadValue {
            section: self.section.name.to_string(),
            source,
        }
    }

    /// §5.1: the raw value typed after the default's type, else the default.
    pub(super) fn value(&self, key: &'static str) -> Result<Value, ConfigError> {
        let Some(spec) = self.spec(key) else {
            return Ok(Value::Str(String::new()));
        };
        match (self.raw(key), spec.default_value()) {
            (Some(raw), Some(default)) => {
                typing::type_value(key, raw, &default).map_err(|error| self.bad_value(error))
            }
            (Some(raw), None) => Ok(Value::Str(raw.to_string())),
            (None, Some(default)) => Ok(default),
            (None, None) => Ok(Value::Str(String::new())),
        }
    }

    /// A §5.1 boolean (a key the section does not list is false).
    fn bool(&self, key: &'static str) -> Setting<bool> {
        Setting::new(
            self.value(key)
                .map(|value| matches!(value, Value::Bool(true))),
        )
    }

    /// A §5.1 integer; `not-set` reads as the default.
    fn int(&self, key: &'static str) -> Setting<i64> {
        let default = || match self.spec(key).and_then(KeySpec::default_value) {
            Some(Value::Int(number)) => number,
            _ => 0,
        };
        Setting::new(self.value(key).map(|value| match value {
            Value::Int(number) => number,
            _ => default(),
        }))
    }

    /// A string key (strings never fail §5.1 typing).
    fn text(&self, key: &'static str) -> String {
        match self.value(key) {
            Ok(value) => value.render_plain(),
            Err(_) => String::new(),
        }
    }

    /// A string key, `None` when absent or empty.
    fn non_empty(&self, key: &'static str) -> Option<String> {
        self.raw(key)
            .filter(|raw| !raw.is_empty())
            .map(str::to_string)
    }

    /// A key of a strictly typed section read by its kind; `None` when absent or empty.
    pub(super) fn typed(&self, key: &'static str) -> Option<Result<Typed, ConfigError>> {
        let spec = self.spec(key)?;
        let raw = self.raw(key).filter(|raw| !raw.trim().is_empty())?;
        Some(
            spec.kind
                .parse(key, raw)
                .map_err(|error| self.bad_value(error)),
        )
    }

    /// The table's default of a key read by its kind.
    pub(super) fn default_typed(&self, key: &'static str) -> Option<Typed> {
        let spec = self.spec(key)?;
        spec.kind.parse(key, spec.default?).ok()
    }
}

/// Reads the keys of one of our strict sections (`[farm]`, `[http]`), collecting the values
/// that do not fit (each then reads as its default, and the problem names that default).
pub(super) struct StrictReader<'a> {
    read: &'a Reader<'a>,
    pub(super) problems: Vec<String>,
}

impl<'a> StrictReader<'a> {
    pub(super) fn new(read: &'a Reader<'a>) -> StrictReader<'a> {
        StrictReader {
            read,
            problems: Vec::new(),
        }
    }

    pub(super) fn typed(&mut self, name: &'static str) -> Option<Typed> {
        match self.read.typed(name)? {
            Ok(typed) => Some(typed),
            Err(error) => {
                let default = self
                    .read
                    .section
                    .key(name)
                    .and_then(|spec| spec.default.or(spec.default_note))
                    .map(|default| format!("the default {default} is used"))
                    .unwrap_or_else(|| "the key is ignored".to_string());
                self.problems.push(format!("{error}; {default}"));
                None
            }
        }
    }

    fn typed_or_default(&mut self, name: &'static str) -> Option<Typed> {
        self.typed(name).or_else(|| self.read.default_typed(name))
    }

    pub(super) fn duration(&mut self, name: &'static str) -> Duration {
        match self.typed_or_default(name) {
            Some(Typed::Duration(duration)) => duration,
            _ => Duration::ZERO,
        }
    }

    pub(super) fn bool(&mut self, name: &'static str) -> bool {
        matches!(self.typed_or_default(name), Some(Typed::Bool(true)))
    }

    pub(super) fn int(&mut self, name: &'static str) -> i64 {
        match self.typed_or_default(name) {
            Some(Typed::Int(number)) => number,
            _ => 0,
        }
    }

    pub(super) fn text(&mut self, name: &'static str) -> Option<String> {
        match self.typed(name) {
            Some(Typed::Text(text)) => Some(text),
            _ => None,
        }
    }

    pub(super) fn path(&mut self, name: &'static str) -> Option<PathBuf> {
        self.text(name).map(PathBuf::from)
    }

    /// A path key, else the table's default (empty when it has none).
    pub(super) fn path_or_default(&mut self, name: &'static str) -> PathBuf {
        match self.typed_or_default(name) {
            Some(Typed::Text(text)) => PathBuf::from(text),
            _ => PathBuf::new(),
        }
    }
}

/// `[global]` (§5.2), typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalSettings {
    pub require_password: Setting<bool>,
    pub require_cookie: Setting<bool>,
    /// Legacy: false switches off both of the above.
    pub check_credentials: Setting<bool>,
    pub use_static_cookie: Setting<bool>,
    /// Seconds a login stays valid (`not-set` reads as the default).
    pub auth_timeout: Setting<i64>,
    pub cookie_directory: PathBuf,
    pub verify_ip: Setting<bool>,
    /// The deprecated pre-shared cookie, as written.
    pub my_cookie: Option<String>,
    pub my_cookie_file: PathBuf,
    pub enable_plain_output: Setting<bool>,
    pub enable_json_output: Setting<bool>,
    pub enable_uccs_output: Setting<bool>,
    pub my_uccs_url_base: String,
    /// As written (backends lower-case it after their own key).
    pub default_auth_mech: String,
    pub default_group_db: String,
    pub ignore_primary_group_memberships: Setting<bool>,
    pub default_session_autologin: Setting<bool>,
    pub default_authorized_keys: String,
    /// `default-agent-query-mode` when the file sets it (even empty), else `None`.
    pub default_agent_query_mode: Option<String>,
    pub default_agent_hostkey_policy: String,
    pub default_portscan_x2goservers: Setting<bool>,
    pub default_use_load_checker: Setting<bool>,
    /// Seconds between the legacy agents' `checkload` (`not-set` reads as the default).
    pub load_checker_intervals: Setting<i64>,
    pub allow_get_requests: Setting<bool>,
    pub login_throttling: Setting<bool>,
    /// `/pubkeys` serves ecdsa/ed25519 keys too (after ssh-rsa/ssh-dss; ours).
    pub pubkeys_all_types: Setting<bool>,
    /// Live dynamic cookies one user may hold; a new login beyond it drops the oldest (ours).
    pub max_cookies_per_user: Setting<i64>,
    /// The auth service socket the file names, `None` when it names none.
    pub authservice_socket: Option<PathBuf>,
    /// The peers whose forwarding headers and PROXY headers name the client (ours).
    pub trusted_proxies: Setting<super::Networks>,
    /// Which header a trusted proxy names the client in (ours).
    pub client_address_header: ClientAddressHeader,
    /// The path the broker is mounted under (`/x2gobroker`), `None` for `/` (ours).
    pub url_prefix: Option<String>,
    /// The client port's TLS certificate and key the file names (ours; the environment wins).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// Where a trusted proxy names the client: `X-Forwarded-For` (nginx, Apache, haproxy) or RFC
/// 7239 `Forwarded`. Only the one configured is read: a proxy passes the other through as the
/// client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAddressHeader {
    #[default]
    XForwardedFor,
    Forwarded,
}

/// `url-prefix` as a path prefix: one leading `/`, no trailing `/`; empty or `/` is none.
pub fn url_prefix(raw: &str) -> Option<String> {
    let trimmed = raw.trim().trim_matches('/');
    if trimmed.is_empty() {
        return None;
    }
    Some(format!("/{trimmed}"))
}

impl GlobalSettings {
    /// Types `[global]` of `document`.
    pub fn resolve(document: &IniDocument) -> GlobalSettings {
        let read = Reader::new(document, &keys::GLOBAL);
        GlobalSettings::read(&read)
    }

    fn read(read: &Reader<'_>) -> GlobalSettings {
        GlobalSettings {
            require_password: read.bool(global::REQUIRE_PASSWORD),
            require_cookie: read.bool(global::REQUIRE_COOKIE),
            check_credentials: read.bool(global::CHECK_CREDENTIALS),
            use_static_cookie: read.bool(global::USE_STATIC_COOKIE),
            auth_timeout: read.int(global::AUTH_TIMEOUT),
            cookie_directory: PathBuf::from(read.text(global::COOKIE_DIRECTORY)),
            verify_ip: read.bool(global::VERIFY_IP),
            my_cookie: read.raw(global::MY_COOKIE).map(str::to_string),
            my_cookie_file: PathBuf::from(read.text(global::MY_COOKIE_FILE)),
            enable_plain_output: read.bool(global::ENABLE_PLAIN_OUTPUT),
            enable_json_output: read.bool(global::ENABLE_JSON_OUTPUT),
            enable_uccs_output: read.bool(global::ENABLE_UCCS_OUTPUT),
            my_uccs_url_base: read.text(global::MY_UCCS_URL_BASE),
            default_auth_mech: read.text(global::DEFAULT_AUTH_MECH),
            default_group_db: read.text(global::DEFAULT_GROUP_DB),
            ignore_primary_group_memberships: read.bool(global::IGNORE_PRIMARY_GROUP_MEMBERSHIPS),
            default_session_autologin: read.bool(global::DEFAULT_SESSION_AUTOLOGIN),
            default_authorized_keys: read.text(global::DEFAULT_AUTHORIZED_KEYS),
            default_agent_query_mode: read
                .raw(global::DEFAULT_AGENT_QUERY_MODE)
                .map(str::to_string),
            default_agent_hostkey_policy: read.text(global::DEFAULT_AGENT_HOSTKEY_POLICY),
            default_portscan_x2goservers: read.bool(global::DEFAULT_PORTSCAN_X2GOSERVERS),
            default_use_load_checker: read.bool(global::DEFAULT_USE_LOAD_CHECKER),
            load_checker_intervals: read.int(global::LOAD_CHECKER_INTERVALS),
            allow_get_requests: read.bool(global::ALLOW_GET_REQUESTS),
            login_throttling: read.bool(global::LOGIN_THROTTLING),
            pubkeys_all_types: read.bool(global::PUBKEYS_ALL_TYPES),
            max_cookies_per_user: read.int(global::MAX_COOKIES_PER_USER),
            authservice_socket: read
                .non_empty(global::AUTHSERVICE_SOCKET)
                .map(PathBuf::from),
            trusted_proxies: Setting::new(read.value(global::TRUSTED_PROXIES).and_then(|value| {
                let items = match value {
                    Value::List(items) => items,
                    other => vec![other.render_plain()],
                };
                super::Networks::parse(items.iter().map(String::as_str)).map_err(|item| {
                    read.bad_value(ValueError::NotANetwork {
                        key: global::TRUSTED_PROXIES.to_string(),
                        raw: read.raw(global::TRUSTED_PROXIES).unwrap_or("").to_string(),
                        item,
                    })
                })
            })),
            client_address_header: if read
                .text(global::CLIENT_ADDRESS_HEADER)
                .trim()
                .eq_ignore_ascii_case("forwarded")
            {
                ClientAddressHeader::Forwarded
            } else {
                ClientAddressHeader::XForwardedFor
            },
            url_prefix: url_prefix(&read.text(global::URL_PREFIX)),
            tls_cert: read.non_empty(global::TLS_CERT).map(PathBuf::from),
            tls_key: read.non_empty(global::TLS_KEY).map(PathBuf::from),
        }
    }

    /// `require-password` and `require-cookie`, both false when legacy `check-credentials` is false.
    pub fn credential_requirements(&self) -> Result<(bool, bool), ConfigError> {
        if !self.check_credentials.get()? {
            return Ok((false, false));
        }
        Ok((self.require_password.get()?, self.require_cookie.get()?))
    }
}

/// One backend section (`[broker_<backend>]`, §5.2), typed, with the `[global]` fallbacks
/// applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSettings {
    pub enable: Setting<bool>,
    /// `auth-mech` if non-empty, else `[global] default-auth-mech`; lower-cased.
    pub auth_mech: String,
    /// `group-db` if non-empty, else `[global] default-group-db`; lower-cased.
    pub group_db: String,
    /// The backend's `use-load-checker` (inifile).
    pub use_load_checker: Setting<bool>,
    /// `agent-query-mode`, when non-empty (inifile).
    pub agent_query_mode: Option<String>,
    /// `agent-hostkey-policy`, when non-empty (inifile).
    pub agent_hostkey_policy: Option<String>,
    /// The zeroconf desktop.
    pub desktop_shell: String,
    /// `session-profiles` (inifile; read at start-up), when non-empty.
    pub session_profiles: Option<String>,
}

fn backend_or_global(from_backend: String, from_global: &str) -> String {
    if from_backend.is_empty() {
        from_global.to_lowercase()
    } else {
        from_backend.to_lowercase()
    }
}

/// The key table's section of a backend.
pub fn backend_section(backend: Backend) -> &'static SectionSpec {
    match backend {
        Backend::Inifile => &keys::BROKER_INIFILE,
        Backend::Zeroconf => &keys::BROKER_ZEROCONF,
        Backend::Base => &keys::BROKER_BASE,
    }
}

impl BackendSettings {
    /// Types the section of `backend` in `document`.
    pub fn resolve(document: &IniDocument, backend: Backend, global: &GlobalSettings) -> Self {
        let read = Reader::new(document, backend_section(backend));
        BackendSettings::read(&read, global)
    }

    fn read(read: &Reader<'_>, global: &GlobalSettings) -> BackendSettings {
        BackendSettings {
            enable: read.bool(backend::ENABLE),
            auth_mech: backend_or_global(read.text(backend::AUTH_MECH), &global.default_auth_mech),
            group_db: backend_or_global(read.text(backend::GROUP_DB), &global.default_group_db),
            use_load_checker: read.bool(backend::USE_LOAD_CHECKER),
            agent_query_mode: read.non_empty(backend::AGENT_QUERY_MODE),
            agent_hostkey_policy: read.non_empty(backend::AGENT_HOSTKEY_POLICY),
            desktop_shell: read.text(backend::DESKTOP_SHELL),
            session_profiles: read.non_empty(backend::SESSION_PROFILES),
        }
    }
}

/// `[authmech_https_get]` (§6.1), typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsGetSettings {
    pub host: String,
    pub port: Setting<u16>,
    pub path: String,
    /// Ours: a PEM CA file trusted in addition to the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl HttpsGetSettings {
    /// Types `[authmech_https_get]` of `document`.
    pub fn resolve(document: &IniDocument) -> HttpsGetSettings {
        let read = Reader::new(document, &keys::AUTHMECH_HTTPS_GET);
        HttpsGetSettings::read(&read)
    }

    fn read(read: &Reader<'_>) -> HttpsGetSettings {
        let port = match read.typed(https_get::PORT) {
            Some(Ok(Typed::Port(port))) => Ok(port),
            Some(Err(error)) => Err(error),
            _ => match read.default_typed(https_get::PORT) {
                Some(Typed::Port(port)) => Ok(port),
                _ => Ok(443),
            },
        };
        HttpsGetSettings {
            host: read.non_empty(https_get::HOST).unwrap_or_default(),
            port: Setting::new(port),
            path: read.non_empty(https_get::PATH).unwrap_or_default(),
            ca_file: read.non_empty(https_get::CA_FILE).map(PathBuf::from),
        }
    }
}

/// A profile's broker settings (§5.2 resolution rules), resolved once per built profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSettings {
    /// `broker-agent-query-mode`, else the backend's, else `[global]`; `None` when set nowhere.
    pub agent_query_mode: Option<AgentQueryMode>,
    /// `broker-agent-hostkey-policy`, else the backend's, else `[global]`; invalid: `RejectPolicy`.
    pub agent_hostkey_policy: String,
    /// The profile's `broker-portscan-x2goservers` OR `[global] default-portscan-x2goservers`.
    pub portscan_x2goservers: Setting<bool>,
    /// The profile's `broker-session-autologin` OR `[global] default-session-autologin`.
    pub session_autologin: Setting<bool>,
    /// `broker-authorized-keys`, else `[global] default-authorized-keys`.
    pub authorized_keys: String,
    /// Whether new sessions are spread by load factor (§11.3).
    pub use_load_checker: Setting<bool>,
    /// A shadow profile (`command` exactly `SHADOW`): never driven by the farm.
    pub shadow: bool,
}

/// A profile switch's value read as the table's switch reads it (anything unknown is off).
fn switch_is_on(key: &'static str, raw: Option<&str>) -> bool {
    let Some(spec) = keys::PROFILE_BROKER_KEYS.key(key) else {
        return false;
    };
    raw.is_some_and(|raw| matches!(spec.kind.parse(key, raw), Ok(Typed::Bool(true))))
}

/// The global default OR-ed with a profile's switch (B7: a profile can switch it on, never off).
fn profile_switch(
    profile_value: Option<&str>,
    key: &'static str,
    global: &Setting<bool>,
) -> Setting<bool> {
    if switch_is_on(key, profile_value) {
        return Setting::new(Ok(true));
    }
    global.clone()
}

/// What a profile's broker settings are read from: its `broker-*` keys, its host count,
/// whether it is a shadow profile. `profiles::Profile` implements it, so config knows
/// nothing of profiles.
pub trait ProfileKeys {
    /// A `broker-*` key's value, if the profile sets it.
    fn broker_key(&self, key: &str) -> Option<&str>;
    /// Every `broker-*` key with its value, in the profile's order.
    fn broker_keys(&self) -> &[(String, String)];
    /// How many hosts the profile lists.
    fn host_count(&self) -> usize;
    /// Whether the profile is a shadow profile (`command = SHADOW`).
    fn is_shadow(&self) -> bool;
    /// The profile's id (for messages).
    fn profile_id(&self) -> &str;
}

impl ProfileSettings {
    /// The broker settings of `profile` of `backend`'s profiles under `config`.
    pub fn resolve<P: ProfileKeys + ?Sized>(
        config: &super::BrokerConfig,
        backend: Backend,
        profile: &P,
    ) -> Self {
        let global = &config.global;
        let backend_settings = config.backend(backend);
        let hostkey_policy = profile
            .broker_key(profile::AGENT_HOSTKEY_POLICY)
            .map(str::to_string)
            .or_else(|| backend_settings.agent_hostkey_policy.clone())
            .unwrap_or_else(|| global.default_agent_hostkey_policy.clone());
        let agent_hostkey_policy = if keys::HOSTKEY_POLICIES.contains(&hostkey_policy.as_str()) {
            hostkey_policy
        } else {
            "RejectPolicy".to_string()
        };
        ProfileSettings {
            agent_query_mode: configured_agent_query_mode(
                profile.broker_key(profile::AGENT_QUERY_MODE),
                backend_settings.agent_query_mode.as_deref(),
                global.default_agent_query_mode.as_deref(),
            ),
            agent_hostkey_policy,
            portscan_x2goservers: profile_switch(
                profile.broker_key(profile::PORTSCAN_X2GOSERVERS),
                profile::PORTSCAN_X2GOSERVERS,
                &global.default_portscan_x2goservers,
            ),
            session_autologin: profile_switch(
                profile.broker_key(profile::SESSION_AUTOLOGIN),
                profile::SESSION_AUTOLOGIN,
                &global.default_session_autologin,
            ),
            authorized_keys: profile
                .broker_key(profile::AUTHORIZED_KEYS)
                .map(str::to_string)
                .unwrap_or_else(|| global.default_authorized_keys.clone()),
            use_load_checker: Setting::new(uses_load_checker(global, backend_settings, profile)),
            shadow: profile.is_shadow(),
        }
    }
}

/// Whether a profile spreads new sessions by load factor (§11.3, the reference's
/// `use_load_checker`): two hosts or more; at least one non-empty `broker-*` key (B8, kept:
/// a profile without any is never load-checked); `broker-use-load-checker`, when set, on
/// (one of `1 true TRUE True`); and the global, backend or profile switch on.
fn uses_load_checker<P: ProfileKeys + ?Sized>(
    global: &GlobalSettings,
    backend: &BackendSettings,
    profile: &P,
) -> Result<bool, ConfigError> {
    let profile_value = profile.broker_key(profile::USE_LOAD_CHECKER);
    if profile.host_count() < 2
        || profile.broker_keys().is_empty()
        || (profile_value.is_some() && !switch_is_on(profile::USE_LOAD_CHECKER, profile_value))
    {
        return Ok(false);
    }
    Ok(profile_value.is_some()
        || global.default_use_load_checker.get()?
        || backend.use_load_checker.get()?)
}

/// The problems of a profile's `broker-*` keys (for `--check-config`): unknown keys, and
/// switches or names the broker reads differently from what was probably meant.
pub fn profile_problems<P: ProfileKeys + ?Sized>(profile: &P) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, raw) in profile.broker_keys() {
        let outcome = match keys::PROFILE_BROKER_KEYS.key(key) {
            Some(spec) => {
                keys::check(Typing::Profile, spec, raw).map_err(|error| error.to_string())
            }
            None => Err(format!("unknown key {key:?} is ignored")),
        };
        if let Err(message) = outcome {
            problems.push(format!("profile [{}]: {message}", profile.profile_id()));
        }
    }
    problems
}

/// Every problem of the key table's sections in `document` at once: values that do not fit
/// their key, unknown keys, unknown sections (for `--check-config`).
pub fn problems(document: &IniDocument) -> Vec<String> {
    let mut problems = Vec::new();
    for section in keys::SECTIONS {
        for key in section.keys {
            if let Some(raw) = document.get(section.name, key.name) {
                if let Err(error) = keys::check(section.typing, key, raw) {
                    problems.push(format!("[{}] {error}", section.name));
                }
            }
        }
        if let Some(present) = document.section(section.name) {
            for (name, _) in &present.entries {
                if section.key(name).is_none() {
                    problems.push(format!(
                        "[{}] unknown key {name:?} is ignored",
                        section.name
                    ));
                }
            }
        }
    }
    for present in &document.sections {
        if keys::section(&present.name).is_none()
            && !keys::UNREAD_SECTIONS.contains(&present.name.as_str())
        {
            problems.push(format!("unknown section [{}] is ignored", present.name));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;

    /// Every key of a section the table says is read is read by its resolver, and no key the
    /// table says is ignored is.
    #[test]
    fn resolvers_read_exactly_the_table() {
        let document = IniDocument::default();
        let global = GlobalSettings::resolve(&document);
        let mut checked = Vec::new();
        let mut expect = |section: &'static SectionSpec, asked: Vec<&'static str>| {
            for key in section.keys {
                assert_eq!(
                    asked.contains(&key.name),
                    !key.ignored,
                    "[{}] {}: read by its resolver iff not ignored",
                    section.name,
                    key.name
                );
            }
            checked.push(section.name);
        };
        let read = Reader::new(&document, &keys::GLOBAL);
        GlobalSettings::read(&read);
        expect(&keys::GLOBAL, read.asked.take());
        for backend in [Backend::Inifile, Backend::Zeroconf, Backend::Base] {
            let read = Reader::new(&document, backend_section(backend));
            BackendSettings::read(&read, &global);
            expect(backend_section(backend), read.asked.take());
        }
        let read = Reader::new(&document, &keys::AUTHMECH_HTTPS_GET);
        HttpsGetSettings::read(&read);
        expect(&keys::AUTHMECH_HTTPS_GET, read.asked.take());
        let read = Reader::new(&document, &keys::FARM);
        crate::config::farm::FarmSettings::read(&read, &global);
        expect(&keys::FARM, read.asked.take());
        let read = Reader::new(&document, &keys::HTTP);
        crate::config::http::HttpLimits::read(&read);
        expect(&keys::HTTP, read.asked.take());
        let read = Reader::new(&document, &keys::ADMIN);
        crate::config::admin::AdminSettings::read(&read);
        expect(&keys::ADMIN, read.asked.take());
        let read = Reader::new(&document, &keys::CLUSTER);
        crate::config::cluster::ClusterSettings::read(&read);
        expect(&keys::CLUSTER, read.asked.take());
        let mut all: Vec<&str> = keys::SECTIONS.iter().map(|section| section.name).collect();
        all.sort();
        checked.sort();
        assert_eq!(checked, all, "every section of the table has a resolver");
    }

    #[test]
    fn proxy_and_tls_keys_are_typed() {
        let config = BrokerConfig::parse(
            "[global]\ntrusted-proxies = ['127.0.0.1', '10.0.0.0/8']\nclient-address-header = forwarded\nurl-prefix = x2gobroker/\ntls-cert = tls/cert.pem\ntls-key = /k.pem\n",
        )
        .unwrap();
        let trusted = config.global.trusted_proxies.get().unwrap();
        assert!(trusted.contains("10.9.8.7".parse().unwrap()));
        assert!(!trusted.contains("192.0.2.1".parse().unwrap()));
        assert_eq!(
            config.global.client_address_header,
            ClientAddressHeader::Forwarded
        );
        assert_eq!(config.global.url_prefix.as_deref(), Some("/x2gobroker"));
        assert_eq!(config.global.tls_cert, Some(PathBuf::from("tls/cert.pem")));
        assert_eq!(config.global.tls_key, Some(PathBuf::from("/k.pem")));
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        // defaults: nobody trusted, X-Forwarded-For, no prefix, no TLS
        let defaults = BrokerConfig::parse("").unwrap();
        assert!(defaults.global.trusted_proxies.get().unwrap().is_empty());
        assert_eq!(
            defaults.global.client_address_header,
            ClientAddressHeader::XForwardedFor
        );
        assert_eq!(defaults.global.url_prefix, None);
        assert_eq!(defaults.global.tls_cert, None);
        // a name is an error value (the broker then trusts nobody) and a problem
        let bad =
            BrokerConfig::parse("[global]\ntrusted-proxies = 127.0.0.1, proxy.example\n").unwrap();
        assert_eq!(
            bad.global.trusted_proxies.get().unwrap_err().to_string(),
            "[global] trusted-proxies = \"127.0.0.1, proxy.example\": \"proxy.example\" is not an IP address or network (such as 10.0.0.0/8)"
        );
        assert_eq!(bad.problems().len(), 1);
    }

    #[test]
    fn bad_values_fail_only_their_field() {
        let config = BrokerConfig::parse(
            "[global]\nrequire-password = maybe\nauth-timeout = 60\nload-checker-intervals = not-set\n[authmech_https_get]\nport = https\n",
        )
        .unwrap();
        let error = config.global.require_password.get().unwrap_err();
        assert_eq!(
            error.to_string(),
            "[global] require-password = \"maybe\": not a boolean (1 yes true on / 0 no false off)"
        );
        assert_eq!(config.global.auth_timeout.get(), Ok(60));
        assert_eq!(config.global.load_checker_intervals.get(), Ok(300));
        assert!(config.global.require_cookie.get().is_ok());
        assert_eq!(
            config.https_get.port.get().unwrap_err().to_string(),
            "[authmech_https_get] port = \"https\": not a port number (1-65535)"
        );
        assert_eq!(config.problems().len(), 2);
    }

    #[test]
    fn typed_settings_follow_the_file() {
        // (config text, what the typed view must say)
        type Check = fn(&BrokerConfig) -> bool;
        let cases: Vec<(&str, Check)> = vec![
            ("", |config| {
                config.global.credential_requirements() == Ok((true, false))
            }),
            (
                "[global]\ncheck-credentials = false\nrequire-cookie = yes\n",
                |config| config.global.credential_requirements() == Ok((false, false)),
            ),
            ("[global]\nmy-cookie = abc\n", |config| {
                config.global.my_cookie.as_deref() == Some("abc")
            }),
            ("", |config| {
                config.global.my_cookie.is_none() && config.global.authservice_socket.is_none()
            }),
            ("[global]\nauthservice-socket = /s\n", |config| {
                config.global.authservice_socket == Some(PathBuf::from("/s"))
            }),
            ("[global]\nauth-timeout = not-set\n", |config| {
                config.global.auth_timeout.get() == Ok(36000)
            }),
            ("[DEFAULT]\nenable = true\n[broker_zeroconf]\n", |config| {
                config.zeroconf.enable.get() == Ok(true)
            }),
            ("[broker_zeroconf]\nuse-load-checker = true\n", |config| {
                // not a zeroconf key: reads as absent
                config.zeroconf.use_load_checker.get() == Ok(false)
            }),
            ("[broker_inifile]\nagent-query-mode = \n", |config| {
                config.inifile.agent_query_mode.is_none()
            }),
            ("[global]\ndefault-agent-query-mode =\n", |config| {
                config.global.default_agent_query_mode.as_deref() == Some("")
            }),
            ("[broker_zeroconf]\ndesktop-shell = GNOME\n", |config| {
                config.zeroconf.desktop_shell == "GNOME"
            }),
            (
                "[global]\ndefault-group-db = TestSuite\n[broker_base]\ngroup-db = LibNSS\n",
                |config| config.inifile.group_db == "testsuite" && config.base.group_db == "libnss",
            ),
            (
                "[authmech_https_get]\nhost = h\nport = 8443\nca-file =\n",
                |config| {
                    config.https_get.host == "h"
                        && config.https_get.port.get() == Ok(8443)
                        && config.https_get.ca_file.is_none()
                },
            ),
            ("", |config| config.https_get.port.get() == Ok(443)),
        ];
        for (text, check) in cases {
            let config = BrokerConfig::parse(text).unwrap();
            assert!(check(&config), "{text:?}: {config:#?}");
        }
    }

    fn profile_settings(config: &str, profile: &str) -> ProfileSettings {
        let config = BrokerConfig::parse(config).unwrap();
        let document = IniDocument::parse(profile).unwrap();
        let built = crate::profiles::build_profile(&document, "p")
            .unwrap()
            .unwrap();
        ProfileSettings::resolve(&config, Backend::Inifile, &built)
    }

    #[test]
    fn profile_settings_resolve_like_the_reference() {
        let host = "[p]\nhost = ts01\n";
        // agent query mode: profile, backend, global; set nowhere = None
        let mode = |config: &str, profile: &str| profile_settings(config, profile).agent_query_mode;
        assert_eq!(mode("", host), None);
        assert_eq!(
            mode("[global]\ndefault-agent-query-mode = NONE\n", host),
            Some(AgentQueryMode::None)
        );
        assert_eq!(
            mode("[global]\ndefault-agent-query-mode = ssh\n[broker_inifile]\nagent-query-mode = local\n", host),
            Some(AgentQueryMode::Local)
        );
        assert_eq!(
            mode(
                "[broker_inifile]\nagent-query-mode = LOCAL\n",
                "[p]\nhost = a\nbroker-agent-query-mode = grpc\n"
            ),
            Some(AgentQueryMode::Grpc)
        );
        // host key policy: profile, backend, global; invalid is RejectPolicy
        let policy =
            |config: &str, profile: &str| profile_settings(config, profile).agent_hostkey_policy;
        assert_eq!(policy("", host), "RejectPolicy");
        assert_eq!(
            policy(
                "[global]\ndefault-agent-hostkey-policy = AutoAddPolicy\n",
                host
            ),
            "AutoAddPolicy"
        );
        assert_eq!(
            policy(
                "[broker_inifile]\nagent-hostkey-policy = WarningPolicy\n",
                "[p]\nhost = a\nbroker-agent-hostkey-policy = autoaddpolicy\n"
            ),
            "RejectPolicy"
        );
        // B7: switches OR-ed with the global default
        let autologin =
            |config: &str, profile: &str| profile_settings(config, profile).session_autologin.get();
        assert_eq!(autologin("", host), Ok(false));
        assert_eq!(
            autologin("", "[p]\nhost = a\nbroker-session-autologin = TRUE\n"),
            Ok(true)
        );
        assert_eq!(
            autologin("", "[p]\nhost = a\nbroker-session-autologin = yes\n"),
            Ok(false),
            "only 1 and true switch it on"
        );
        assert_eq!(
            autologin(
                "[global]\ndefault-session-autologin = true\n",
                "[p]\nhost = a\nbroker-session-autologin = false\n"
            ),
            Ok(true)
        );
        assert!(autologin("[global]\ndefault-session-autologin = maybe\n", host).is_err());
        assert_eq!(
            autologin(
                "[global]\ndefault-session-autologin = maybe\n",
                "[p]\nhost = a\nbroker-session-autologin = 1\n"
            ),
            Ok(true),
            "the profile's switch decides before the broken default is read"
        );
        let portscan = |config: &str, profile: &str| {
            profile_settings(config, profile).portscan_x2goservers.get()
        };
        assert_eq!(
            portscan("", "[p]\nhost = a\nbroker-portscan-x2goservers = false\n"),
            Ok(true)
        );
        assert_eq!(
            portscan("[global]\ndefault-portscan-x2goservers = off\n", host),
            Ok(false)
        );
        // authorized keys
        assert_eq!(
            profile_settings("", host).authorized_keys,
            "%h/.x2go/authorized_keys"
        );
        assert_eq!(
            profile_settings("", "[p]\nhost = a\nbroker-authorized-keys = /k/%u\n").authorized_keys,
            "/k/%u"
        );
        assert!(profile_settings("", "[p]\nhost = a\ncommand = SHADOW\n").shadow);
        assert!(!profile_settings("", "[p]\nhost = a\ncommand = shadow\n").shadow);
    }

    #[test]
    fn profile_broker_keys_are_checked() {
        let document = IniDocument::parse(
            "[p]\nhost = a\nbroker-session-autologin = yes\nbroker-agent-query-mode = ssh\nbroker-sesion-autologin = 1\nbroker-agent-hostkey-policy = Auto\n",
        )
        .unwrap();
        let profile = crate::profiles::build_profile(&document, "p")
            .unwrap()
            .unwrap();
        let problems = profile_problems(&profile);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(
            problems[0].starts_with("profile [p]: broker-session-autologin = \"yes\": not one of"),
            "{}",
            problems[0]
        );
        assert!(problems
            .iter()
            .any(|problem| problem.contains("unknown key \"broker-sesion-autologin\"")));
        assert!(problems
            .iter()
            .any(|problem| problem.contains("(read as RejectPolicy)")));
    }

    #[test]
    fn problems_name_section_key_and_value() {
        let document = IniDocument::parse(
            "[global]\nverify-ip = sometimes\nrequre-password = true\n[farm]\nheartbeat-ms = banana\n[broker_ldap]\nx = 1\n[nonsense]\n",
        )
        .unwrap();
        assert_eq!(
            problems(&document),
            [
                "[global] verify-ip = \"sometimes\": not a boolean (1 yes true on / 0 no false off)",
                "[global] unknown key \"requre-password\" is ignored",
                "[farm] heartbeat-ms = \"banana\": not a whole number of milliseconds",
                "unknown section [nonsense] is ignored",
            ]
        );
    }
}
