//! Session profiles of the inifile backend (§7): building (once per loaded version, `ProfileSet`, with each profile's broker settings), key order, the listing transform, zeroconf's profile.

use crate::acl::ProfileAcls;
use crate::config::{settings, typing, Backend, BrokerConfig, IniDocument, ProfileSettings};
use crate::config::{Value, ValueError};
use crate::hosts;
use std::sync::Arc;

/// The placeholder value of `user` that is replaced by the broker user.
pub const BROKER_USER: &str = "BROKER_USER";
/// The `key` value announced for autologin profiles in listings.
pub const AUTOLOGIN_KEY_PLACEHOLDER: &str = "<will-be-exchanged-during-session-selection>";
/// Commands that X2Go Client treats as desktops (§7.4 step 5).
pub const DESKTOP_COMMANDS: [&str; 11] = [
    "KDE", "GNOME", "XFCE", "CINNAMON", "MATE", "LXDE", "TRINITY", "UNITY", "ICEWM", "OPENBOX",
    "XDMCP",
];

fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

fn list(items: &[&str]) -> Value {
    Value::List(items.iter().map(|item| item.to_string()).collect())
}

/// Built-in profile defaults in the reference's order (§7.1), ACL keys last.
pub fn builtin_defaults() -> Vec<(&'static str, Value)> {
    let mut defaults = builtin_defaults_without_acls();
    defaults.extend(acl_defaults());
    defaults
}

/// Built-in profile defaults without the ACL keys.
pub fn builtin_defaults_without_acls() -> Vec<(&'static str, Value)> {
    vec![
        ("command", s("TERMINAL")),
        ("kdrive", Value::Bool(false)),
        ("defsndport", Value::Bool(true)),
        ("useiconv", Value::Bool(false)),
        ("iconvfrom", s("UTF-8")),
        ("height", Value::Int(600)),
        ("export", s("")),
        ("quality", Value::Int(9)),
        ("fullscreen", Value::Bool(false)),
        ("layout", s("")),
        ("useexports", Value::Bool(true)),
        ("width", Value::Int(800)),
        ("speed", Value::Int(2)),
        ("soundsystem", s("pulse")),
        ("print", Value::Bool(true)),
        ("type", s("auto")),
        ("sndport", Value::Int(4713)),
        ("xinerama", Value::Bool(true)),
        ("variant", s("")),
        ("usekbd", Value::Bool(true)),
        ("fstunnel", Value::Bool(true)),
        (
            "applications",
            list(&["TERMINAL", "WWWBROWSER", "MAILCLIENT", "OFFICE"]),
        ),
        ("multidisp", Value::Bool(false)),
        ("sshproxyport", Value::Int(22)),
        ("sound", Value::Bool(true)),
        ("rootless", Value::Bool(true)),
        ("iconvto", s("UTF-8")),
        ("soundtunnel", Value::Bool(true)),
        ("dpi", Value::Int(96)),
        ("sshport", Value::Int(22)),
        ("setdpi", Value::Int(0)),
        ("pack", s("16m-jpeg")),
        ("user", s(BROKER_USER)),
        ("host", list(&["localhost"])),
        ("directrdp", Value::Bool(false)),
    ]
}

/// The ACL defaults (§7.1); `acl-any-order` has no effect (B6).
pub fn acl_defaults() -> Vec<(&'static str, Value)> {
    vec![
        ("acl-users-allow", Value::List(vec![])),
        ("acl-users-deny", Value::List(vec![])),
        ("acl-users-order", s("")),
        ("acl-groups-allow", Value::List(vec![])),
        ("acl-groups-deny", Value::List(vec![])),
        ("acl-groups-order", s("")),
        ("acl-clients-allow", Value::List(vec![])),
        ("acl-clients-deny", Value::List(vec![])),
        ("acl-clients-order", s("")),
        ("acl-any-order", s("deny-allow")),
    ]
}

/// Why a profile cannot be built; requests that need it answer 500.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    #[error("profile [{profile}]: {source}")]
    BadValue {
        profile: String,
        #[source]
        source: ValueError,
    },
    #[error("profile [{profile}]: sshport {value:?} is not a port number")]
    BadSshPort { profile: String, value: String },
}

/// A built profile (§7.2): client-visible keys in order, plus its broker and ACL keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub id: String,
    /// Client-visible keys in the order of §7.3, `host=<name>`/`sshport=<name>` mappings last.
    pub keys: Vec<(String, Value)>,
    /// Non-empty `broker-*` keys, raw.
    pub broker: Vec<(String, String)>,
    /// `acl-*` keys with non-empty values, typed, merged over the ACL defaults.
    pub acls: Vec<(String, Value)>,
}

impl Profile {
    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.keys
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// A non-empty broker key (`broker-session-autologin`, …).
    pub fn broker_key(&self, key: &str) -> Option<&str> {
        self.broker
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// The host list (names only).
    pub fn hosts(&self) -> Vec<String> {
        self.host_names().to_vec()
    }

    /// The host list (names only), borrowed.
    pub fn host_names(&self) -> &[String] {
        host_list(self.get("host"))
    }

    /// The profile's `sshport` as a number (22 when it is not one).
    pub fn ssh_port(&self) -> i64 {
        match self.get("sshport") {
            Some(Value::Int(port)) => *port,
            _ => 22,
        }
    }

    /// The physical address of a host name (`host=<name>` mapping), if configured.
    pub fn host_address(&self, name: &str) -> Option<String> {
        mapped_address(self.get(&format!("host={name}")))
    }

    /// The SSH port of a host name (`sshport=<name>` mapping), if configured.
    pub fn host_port(&self, name: &str) -> Option<i64> {
        mapped_port(self.get(&format!("sshport={name}")))
    }

    /// A shadow profile has `command` exactly `SHADOW` (case-sensitive).
    pub fn is_shadow(&self) -> bool {
        self.get("command").and_then(Value::as_str) == Some("SHADOW")
    }

    fn set(&mut self, key: &str, value: Value) {
        match self.keys.iter_mut().find(|(name, _)| name == key) {
            Some(entry) => entry.1 = value,
            None => self.keys.push((key.to_string(), value)),
        }
    }
}

/// The names of a `host` value.
fn host_list(value: Option<&Value>) -> &[String] {
    match value {
        Some(Value::List(items)) => items,
        Some(Value::Str(text)) if !text.is_empty() => std::slice::from_ref(text),
        _ => &[],
    }
}

/// The address of a `host=<name>` value.
fn mapped_address(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::Str(address)) => Some(address.clone()),
        _ => None,
    }
}

/// The port of a `sshport=<name>` value.
fn mapped_port(value: Option<&Value>) -> Option<i64> {
    match value {
        Some(Value::Int(port)) => Some(*port),
        _ => None,
    }
}

/// The profile ids of a document in file order.
pub fn profile_ids(document: &IniDocument) -> Vec<String> {
    document
        .sections
        .iter()
        .map(|section| section.name.clone())
        .collect()
}

/// Whether a profile id survives X2Go Client unchanged (`[A-Za-z0-9._-]+`).
pub fn is_client_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Warnings for profile ids that X2Go Client would mangle.
pub fn id_warnings(document: &IniDocument) -> Vec<String> {
    profile_ids(document)
        .into_iter()
        .filter(|id| !is_client_safe_id(id))
        .map(|id| {
            format!("profile id {id:?} has characters outside [A-Za-z0-9._-]: X2Go Client may not select it")
        })
        .collect()
}

/// Every problem of a profiles document at once (for `--check-config`), `broker-*` keys
/// checked against the key table.
pub fn problems(document: &IniDocument) -> Vec<String> {
    let mut problems = id_warnings(document);
    for id in profile_ids(document) {
        match build_profile(document, &id) {
            Ok(Some(profile)) => problems.extend(settings::profile_problems(&profile)),
            Ok(None) => {}
            Err(error) => problems.push(error.to_string()),
        }
    }
    problems
}

/// A profile built once per loaded version of the files, with what every request derives
/// from it.
#[derive(Debug)]
pub struct BuiltProfile {
    pub profile: Profile,
    /// Its ACLs, parsed.
    pub acls: ProfileAcls,
    /// Its host names, shared with the live farm's messages.
    pub hosts: Arc<[String]>,
    /// Its broker settings (agent mode, switches, key file) under the loaded x2gobroker.conf.
    pub settings: ProfileSettings,
}

impl BuiltProfile {
    /// Wraps a built profile and its broker settings.
    pub fn new(profile: Profile, settings: ProfileSettings) -> BuiltProfile {
        let acls = ProfileAcls::from_keys(
            profile
                .acls
                .iter()
                .map(|(key, value)| (key.as_str(), value)),
        );
        let hosts = profile.host_names().into();
        BuiltProfile {
            profile,
            acls,
            hosts,
            settings,
        }
    }
}

/// Every profile of a profiles document, built once (requests only look them up).
#[derive(Debug, Default)]
pub struct ProfileSet {
    /// Sorted by id; a profile that cannot be built keeps its error (requests needing it fail).
    sorted: Vec<(String, Result<Arc<BuiltProfile>, ProfileError>)>,
}

impl ProfileSet {
    /// Builds every profile of `document`, with its broker settings under `config`.
    pub fn build(document: &IniDocument, config: &BrokerConfig) -> ProfileSet {
        let mut ids = profile_ids(document);
        ids.sort();
        ids.dedup();
        let sorted = ids
            .into_iter()
            .filter_map(|id| {
                let built = build_profile(document, &id).transpose()?;
                Some((
                    id,
                    built.map(|profile| {
                        let settings = ProfileSettings::resolve(config, Backend::Inifile, &profile);
                        Arc::new(BuiltProfile::new(profile, settings))
                    }),
                ))
            })
            .collect();
        ProfileSet { sorted }
    }

    /// The profiles in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Result<Arc<BuiltProfile>, ProfileError>> {
        self.sorted.iter().map(|(_, built)| built)
    }

    /// Profile `id`, if the document has it.
    pub fn get(&self, id: &str) -> Option<&Result<Arc<BuiltProfile>, ProfileError>> {
        self.sorted
            .binary_search_by(|(known, _)| known.as_str().cmp(id))
            .ok()
            .map(|index| &self.sorted[index].1)
    }
}

/// Builds profile `id` (§7.2, §7.3); `Ok(None)` when there is no such profile.
pub fn build_profile(document: &IniDocument, id: &str) -> Result<Option<Profile>, ProfileError> {
    let Some(section) = document.section(id) else {
        return Ok(None);
    };
    let defaults = builtin_defaults();
    let bad_value = |source| ProfileError::BadValue {
        profile: id.to_string(),
        source,
    };
    // §7.3: own keys, then [DEFAULT] keys, then built-in defaults.
    let mut raw_keys: Vec<(String, Option<&str>)> = Vec::new();
    for (key, value) in section
        .entries
        .iter()
        .chain(document.defaults.entries.iter())
    {
        if !raw_keys.iter().any(|(name, _)| name == key) {
            raw_keys.push((key.clone(), Some(value.as_str())));
        }
    }
    for (key, _) in &defaults {
        if !raw_keys.iter().any(|(name, _)| name == key) {
            raw_keys.push((key.to_string(), None));
        }
    }
    let mut profile = Profile {
        id: id.to_string(),
        keys: Vec::new(),
        broker: Vec::new(),
        acls: Vec::new(),
    };
    for (key, raw) in raw_keys {
        let default = defaults
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value);
        let mut value = match (raw, default) {
            (Some(raw), Some(default)) => {
                typing::type_value(&key, raw, default).map_err(bad_value)?
            }
            (Some(raw), None) => Value::Str(raw.to_string()),
            (None, Some(default)) => default.clone(),
            (None, None) => continue,
        };
        if let (Value::List(items), Some(Value::List(_))) = (&mut value, default) {
            items.retain(|item| !item.is_empty());
        }
        if key.starts_with("broker-") {
            let text = value.render_plain();
            if !text.is_empty() {
                profile.broker.push((key, text));
            }
            continue;
        }
        if key.starts_with("acl-") {
            let empty = match &value {
                Value::List(items) => items.is_empty(),
                Value::Str(text) => text.is_empty(),
                _ => false,
            };
            if !empty {
                profile.acls.push((key, value));
            }
            continue;
        }
        if key == "default" {
            continue;
        }
        profile.keys.push((key, value));
    }
    expand_hosts(&mut profile)?;
    Ok(Some(profile))
}

/// §7.2 step 4: `name (addr[:port])` entries become names plus `host=`/`sshport=` mappings.
fn expand_hosts(profile: &mut Profile) -> Result<(), ProfileError> {
    let default_port = match profile.get("sshport") {
        Some(Value::Int(port)) => *port,
        Some(Value::Str(text)) if text == "not-set" => {
            return Err(ProfileError::BadSshPort {
                profile: profile.id.clone(),
                value: text.clone(),
            })
        }
        _ => 22,
    };
    let entries = profile.hosts();
    let mut names = Vec::new();
    let mut mappings: Vec<(String, Value)> = Vec::new();
    for entry in entries {
        let Some((name, address_text)) = split_host_entry(&entry) else {
            names.push(entry);
            continue;
        };
        let port_default = u16::try_from(default_port).unwrap_or(22);
        let (address, port) = hosts::split_host_address(&address_text, None, port_default);
        let name_valid = hosts::is_valid_host_label(&name) || hosts::is_valid_dns_name(&name);
        let address_valid = hosts::is_valid_dns_name(&address) || hosts::is_ip_literal(&address);
        if name_valid && address_valid {
            mappings.push((format!("host={name}"), Value::Str(address)));
            if i64::from(port) != default_port {
                mappings.push((format!("sshport={name}"), Value::Int(i64::from(port))));
            }
        }
        names.push(name);
    }
    if profile.get("host").is_some() {
        profile.set("host", Value::List(names));
    }
    for (key, value) in mappings {
        profile.set(&key, value);
    }
    Ok(())
}

/// Splits `name (address)` as the reference does: the name is the text before the first
/// space, the address the second space-separated token without its first and last character.
fn split_host_entry(entry: &str) -> Option<(String, String)> {
    if !entry.ends_with(')') || !entry.contains(" (") {
        return None;
    }
    let mut tokens = entry.split(' ');
    let name = tokens.next()?.to_string();
    let second = tokens.next()?;
    let mut characters = second.chars();
    characters.next();
    characters.next_back();
    Some((name, characters.as_str().to_string()))
}

/// Which frontend a listing is for: UCCS keeps the `host=`/`sshport=` mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingFlavour {
    Broker,
    Uccs,
}

/// What the live farm knows about a user's sessions on a profile's hosts (§7.4 step 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostStatus {
    /// No agent: the host list is left as it is.
    Unknown,
    /// An agent answered: narrow to this host and report the status (`S`, `R`), if any.
    Narrowed { host: String, status: Option<char> },
    /// The agent could not be asked (transport failure): leave the profile untouched.
    Unreachable,
}

/// A profile as a listing shows it (§7.4): the built profile's keys without the hidden ones,
/// with the per-request values (user, autologin, desktop command, host narrowing, status) laid
/// over them. Nothing of the built profile is copied: a listing request allocates only its
/// overrides.
#[derive(Debug, Clone)]
pub struct ListedProfile {
    built: Arc<BuiltProfile>,
    flavour: ListingFlavour,
    /// Values that replace a shown key in place, or follow the shown keys (in this order)
    /// when the profile shows no such key.
    overrides: Vec<(&'static str, Value)>,
}

impl PartialEq for ListedProfile {
    fn eq(&self, other: &ListedProfile) -> bool {
        self.id() == other.id() && self.keys().eq(other.keys())
    }
}

impl Eq for ListedProfile {}

impl ListedProfile {
    /// The profile id.
    pub fn id(&self) -> &str {
        &self.built.profile.id
    }

    /// Whether the listing shows this key of the built profile.
    fn shows(&self, key: &str, value: &Value) -> bool {
        !matches!(value, Value::Str(text) if text == "not-set")
            && (self.flavour != ListingFlavour::Broker
                || !(key.starts_with("host=") || key.starts_with("sshport=")))
    }

    fn shown(&self) -> impl Iterator<Item = &(String, Value)> {
        self.built
            .profile
            .keys
            .iter()
            .filter(|(key, value)| self.shows(key, value))
    }

    fn override_of(&self, key: &str) -> Option<&Value> {
        self.overrides
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
    }

    /// The keys and values in listing order.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &Value)> {
        let shown = self
            .shown()
            .map(|(key, value)| (key.as_str(), self.override_of(key).unwrap_or(value)));
        let added = self
            .overrides
            .iter()
            .filter(|(key, _)| !self.shown().any(|(name, _)| name == key))
            .map(|(key, value)| (*key, value));
        shown.chain(added)
    }

    /// The value of a key as listed.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.override_of(key).or_else(|| {
            self.shown()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value)
        })
    }

    /// The listed host names.
    pub fn hosts(&self) -> Vec<String> {
        host_list(self.get("host")).to_vec()
    }

    /// The physical address of a host name (`host=<name>`), when the listing shows one.
    pub fn host_address(&self, name: &str) -> Option<String> {
        mapped_address(self.get(&format!("host={name}")))
    }

    /// The SSH port of a host name (`sshport=<name>`), when the listing shows one.
    pub fn host_port(&self, name: &str) -> Option<i64> {
        mapped_port(self.get(&format!("sshport={name}")))
    }

    /// Sets a listed value (in place, or after the shown keys).
    pub fn set(&mut self, key: &'static str, value: Value) {
        match self.overrides.iter_mut().find(|(name, _)| *name == key) {
            Some(entry) => entry.1 = value,
            None => self.overrides.push((key, value)),
        }
    }
}

/// The listing transform (§7.4) applied to a built profile, for broker user `user`.
pub fn listing_profile(
    built: &Arc<BuiltProfile>,
    user: &str,
    flavour: ListingFlavour,
    autologin: bool,
    host_status: &HostStatus,
) -> ListedProfile {
    let profile = &built.profile;
    let mut listed = ListedProfile {
        built: built.clone(),
        flavour,
        overrides: Vec::new(),
    };
    if listed.get("user").and_then(Value::as_str) == Some(BROKER_USER) {
        listed.set("user", Value::Str(user.to_string()));
    }
    if autologin {
        listed.set("autologin", Value::Bool(true));
        listed.set("key", Value::Str(AUTOLOGIN_KEY_PLACEHOLDER.to_string()));
    }
    if let Some(command) = listed.get("command").map(Value::render_plain) {
        let upper = command.to_uppercase();
        if DESKTOP_COMMANDS.contains(&upper.as_str()) {
            listed.set("rootless", Value::Bool(false));
            listed.set("command", Value::Str(upper));
        }
    }
    if profile.is_shadow() {
        if let Some(first) = host_list(listed.get("host")).first().cloned() {
            listed.set("host", Value::List(vec![first]));
        }
    } else if let HostStatus::Narrowed { host, status } = host_status {
        listed.set("host", Value::List(vec![host.clone()]));
        if let Some(status) = status {
            listed.set("status", Value::Str(status.to_string()));
        }
    }
    listed
}

/// The zeroconf backend's single profile (§3.9), under a fresh id.
pub fn zeroconf_profile(id: &str, desktop_shell: &str) -> Profile {
    let mut keys: Vec<(String, Value)> = builtin_defaults_without_acls()
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
    let mut profile = Profile {
        id: id.to_string(),
        keys: Vec::new(),
        broker: Vec::new(),
        acls: Vec::new(),
    };
    profile.keys.append(&mut keys);
    profile.set("user", Value::Str(String::new()));
    profile.set("host", Value::Str("localhost".to_string()));
    profile.set("rootless", Value::Bool(false));
    profile.set("useexports", Value::Bool(true));
    profile.set("multidisp", Value::Bool(false));
    profile.set("name", Value::Str("LOCALHOST".to_string()));
    profile.set("command", Value::Str(desktop_shell.to_uppercase()));
    profile
}

impl crate::config::settings::ProfileKeys for Profile {
    fn broker_key(&self, key: &str) -> Option<&str> {
        Profile::broker_key(self, key)
    }

    fn broker_keys(&self) -> &[(String, String)] {
        &self.broker
    }

    fn host_count(&self) -> usize {
        self.host_names().len()
    }

    fn is_shadow(&self) -> bool {
        Profile::is_shadow(self)
    }

    fn profile_id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests;
