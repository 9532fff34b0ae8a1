//! `[farm]`, the live farm's section (x2gobroker-rs): typed through the key table (a value that does not fit is one problem, and its default is used), and the [`FarmConfig`] the farm starts with.

use super::keys::{self, farm as key, Typed};
use super::settings::{GlobalSettings, Reader, StrictReader};
use super::IniDocument;
use crate::farm::model::{SharedSessionDb, SshSettings};
use std::path::PathBuf;
use std::time::Duration;

/// The `[farm]` section of x2gobroker.conf, as the farm runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmConfig {
    /// TCP port of `x2gobroker-agentd` on every server's address (none: SSH agents only).
    pub agent_port: Option<u16>,
    /// File holding the agents' bearer token.
    pub token_file: Option<PathBuf>,
    /// TLS towards the agents: CA file, and the broker's client certificate and key.
    pub tls_files: Option<(PathBuf, Option<(PathBuf, PathBuf)>)>,
    /// Heartbeat asked of the agents' watch streams.
    pub heartbeat: Duration,
    /// Timeout of one agent call (and lateness allowed beyond the heartbeat).
    pub call_timeout: Duration,
    /// How long a take-over waits for the agent to confirm the suspension.
    pub takeover_wait: Duration,
    /// Lifetime of one-time autologin keys.
    pub key_lifetime: Duration,
    /// How long an unconfirmed placement counts as load.
    pub pending_ttl: Duration,
    /// The legacy agent over SSH (agent-query-mode SSH, and the fallback of GRPC).
    pub ssh: Option<SshSettings>,
    /// Whether GRPC profiles fall back to SSH for servers without a gRPC agent.
    pub ssh_fallback: bool,
    /// How long the SSH fallback is used before gRPC is tried again.
    pub grpc_retry: Duration,
    /// How often the legacy agent (SSH, LOCAL) is pinged (`[farm] legacy-poll-ms`).
    pub legacy_poll: Duration,
    /// How often the legacy agent's `checkload` runs (`[global] load-checker-intervals`).
    pub load_interval: Duration,
    /// The agent's path (on the servers for SSH, on the broker host for LOCAL).
    pub agent_command: String,
    /// Whether the legacy agents' servers share one session DB (how many a request asks).
    pub shared_session_db: SharedSessionDb,
    /// How long a listing's legacy-agent answer serves the user's next selection.
    pub legacy_reuse: Duration,
    /// Whether `[farm] ssh-key-file` names the key (then SSH is the default mode of profiles
    /// that set none); a key only found in `~/.ssh` serves profiles that say SSH.
    pub ssh_key_configured: bool,
    /// Where the one-time keys waiting for their removal are kept across restarts (one file
    /// per config file, in `[farm] state-directory`); none for the one-shot SSH broker mode,
    /// which hands out no keys and must never write the daemon's file.
    pub pending_keys_file: Option<PathBuf>,
}

/// Defaults of `[farm]` that come from the start-up settings (`X2GOBROKER_AGENT_USER`,
/// `X2GOBROKER_AGENT_CMD`, with `[farm]`'s own keys already applied) and the machine: the
/// broker's SSH key as the reference finds it (§5.3: `~/.ssh/id_rsa`, `id_dsa`, `id_ecdsa` of
/// the effective user, and ours `id_ed25519`), when `[farm] ssh-key-file` names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmDefaults {
    pub agent_user: String,
    pub agent_command: String,
    pub ssh_key_file: Option<PathBuf>,
    /// The x2gobroker.conf these settings come from (names the pending-keys file).
    pub config_file: PathBuf,
}

/// The file in `state_directory` holding the pending key removals of the broker that runs on
/// `config_file`: several brokers on one host (one config each) never share one.
pub fn pending_keys_file(
    state_directory: &std::path::Path,
    config_file: &std::path::Path,
) -> PathBuf {
    state_directory.join(format!("pending-keys.{}.json", file_stem_of(config_file)))
}

/// A config file's path as one file-name part (`/etc/x2go/x2gobroker.conf` →
/// `etc_x2go_x2gobroker.conf`): the state files of brokers on one host, one config each.
pub fn file_stem_of(config_file: &std::path::Path) -> String {
    config_file
        .to_string_lossy()
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The broker's private keys as §5.3 names them (`id_rsa`, `id_dsa`, `id_ecdsa`), plus
/// `id_ed25519`, in the order they are looked for.
pub const BROKER_KEY_NAMES: [&str; 4] = ["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"];

/// The first of [`BROKER_KEY_NAMES`] that exists in `home/.ssh`.
pub fn broker_key_file(home: &std::path::Path) -> Option<PathBuf> {
    BROKER_KEY_NAMES
        .iter()
        .map(|name| home.join(".ssh").join(name))
        .find(|path| path.is_file())
}

/// `[farm]` of one loaded x2gobroker.conf, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmSettings {
    /// Whether the file has a `[farm]` section (the farm runs without one too).
    pub present: bool,
    pub agent_port: Option<u16>,
    pub agent_token_file: Option<PathBuf>,
    pub heartbeat: Duration,
    pub call_timeout: Duration,
    pub takeover_wait: Duration,
    pub autologin_key_lifetime: Duration,
    pub pending_placement_ttl: Duration,
    pub agent_ca_file: Option<PathBuf>,
    pub agent_client_cert: Option<PathBuf>,
    pub agent_client_key: Option<PathBuf>,
    pub legacy_poll: Duration,
    pub ssh_key_file: Option<PathBuf>,
    /// `ssh-user` as the file sets it (the start-up settings merge it with the environment).
    pub ssh_user: Option<String>,
    pub ssh_known_hosts_file: Option<PathBuf>,
    pub ssh_config_file: Option<PathBuf>,
    pub ssh_control_directory: Option<PathBuf>,
    /// `agent-command` as the file sets it (merged like `ssh_user`).
    pub agent_command: Option<String>,
    pub ssh_fallback: bool,
    pub grpc_retry: Duration,
    pub legacy_shared_session_db: SharedSessionDb,
    pub legacy_answer_reuse: Duration,
    pub state_directory: PathBuf,
    /// `[global] load-checker-intervals`, as the farm uses it.
    pub load_interval: Duration,
    /// The values that did not fit (their defaults are used), each with the default named:
    /// logged once when the farm starts.
    pub problems: Vec<String>,
}

impl FarmSettings {
    /// Types `[farm]` of `document` (and `[global] load-checker-intervals`).
    pub fn resolve(document: &IniDocument, global: &GlobalSettings) -> FarmSettings {
        let read = Reader::new(document, &keys::FARM);
        let mut settings = FarmSettings::read(&read, global);
        settings.present = document.section(key::SECTION).is_some();
        settings
    }

    pub(super) fn read(read: &Reader<'_>, global: &GlobalSettings) -> FarmSettings {
        let mut farm = StrictReader::new(read);
        let load_interval = match global.load_checker_intervals.get() {
            Ok(seconds) if (1..=86_400).contains(&seconds) => {
                Duration::from_secs(seconds.unsigned_abs())
            }
            Ok(seconds) => {
                farm.problems.push(format!(
                    "[{}] {} = {seconds} is out of range (1-86400 seconds); the farm uses 300",
                    keys::global::SECTION,
                    keys::global::LOAD_CHECKER_INTERVALS
                ));
                Duration::from_secs(300)
            }
            Err(error) => {
                farm.problems.push(format!("{error}; the farm uses 300"));
                Duration::from_secs(300)
            }
        };
        FarmSettings {
            present: false,
            agent_port: match farm.typed(key::AGENT_PORT) {
                Some(Typed::Port(port)) => Some(port),
                _ => None,
            },
            agent_token_file: farm.path(key::AGENT_TOKEN_FILE),
            heartbeat: farm.duration(key::HEARTBEAT_MS),
            call_timeout: farm.duration(key::CALL_TIMEOUT_MS),
            takeover_wait: farm.duration(key::TAKEOVER_WAIT_MS),
            autologin_key_lifetime: farm.duration(key::AUTOLOGIN_KEY_LIFETIME),
            pending_placement_ttl: farm.duration(key::PENDING_PLACEMENT_TTL),
            agent_ca_file: farm.path(key::AGENT_CA_FILE),
            agent_client_cert: farm.path(key::AGENT_CLIENT_CERT),
            agent_client_key: farm.path(key::AGENT_CLIENT_KEY),
            legacy_poll: farm.duration(key::LEGACY_POLL_MS),
            ssh_key_file: farm.path(key::SSH_KEY_FILE),
            ssh_user: farm.text(key::SSH_USER),
            ssh_known_hosts_file: farm.path(key::SSH_KNOWN_HOSTS_FILE),
            ssh_config_file: farm.path(key::SSH_CONFIG_FILE),
            ssh_control_directory: farm.path(key::SSH_CONTROL_DIRECTORY),
            agent_command: farm.text(key::AGENT_COMMAND),
            ssh_fallback: farm.bool(key::SSH_FALLBACK),
            grpc_retry: farm.duration(key::GRPC_RETRY_MS),
            legacy_shared_session_db: match farm
                .text(key::LEGACY_SHARED_SESSION_DB)
                .map(|name| name.to_lowercase())
                .as_deref()
            {
                Some("yes") => SharedSessionDb::Yes,
                Some("no") => SharedSessionDb::No,
                _ => SharedSessionDb::Auto,
            },
            legacy_answer_reuse: farm.duration(key::LEGACY_ANSWER_REUSE_MS),
            state_directory: farm.path_or_default(key::STATE_DIRECTORY),
            load_interval,
            problems: farm.problems,
        }
    }

    /// The farm's configuration, with or without a `[farm]` section: the live farm drives
    /// the reference's LOCAL and SSH profiles as they are (SSH with the key `[farm]
    /// ssh-key-file` names, else the one found in the broker's `~/.ssh`), and GRPC ones when
    /// `agent-port` is set. Which profiles it drives: [`super::effective_agent_mode`].
    pub fn farm_config(&self, defaults: &FarmDefaults) -> FarmConfig {
        let key_file = self
            .ssh_key_file
            .clone()
            .or_else(|| defaults.ssh_key_file.clone());
        let ssh = key_file.map(|key_file| SshSettings {
            user: defaults.agent_user.clone(),
            key_file,
            known_hosts: self.ssh_known_hosts_file.clone(),
            config_file: self.ssh_config_file.clone(),
            control_directory: self
                .ssh_control_directory
                .clone()
                .unwrap_or_else(std::env::temp_dir),
            agent_command: defaults.agent_command.clone(),
        });
        let tls_files = self.agent_ca_file.clone().map(|ca| {
            let identity = self
                .agent_client_cert
                .clone()
                .zip(self.agent_client_key.clone());
            (ca, identity)
        });
        FarmConfig {
            agent_port: self.agent_port,
            token_file: self.agent_token_file.clone(),
            tls_files,
            heartbeat: self.heartbeat,
            call_timeout: self.call_timeout,
            takeover_wait: self.takeover_wait,
            key_lifetime: self.autologin_key_lifetime,
            pending_ttl: self.pending_placement_ttl,
            ssh,
            ssh_fallback: self.ssh_fallback,
            grpc_retry: self.grpc_retry,
            legacy_poll: self.legacy_poll,
            load_interval: self.load_interval,
            agent_command: defaults.agent_command.clone(),
            shared_session_db: self.legacy_shared_session_db,
            legacy_reuse: self.legacy_answer_reuse,
            ssh_key_configured: self.ssh_key_file.is_some(),
            pending_keys_file: Some(pending_keys_file(
                &self.state_directory,
                &defaults.config_file,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> FarmSettings {
        let document = IniDocument::parse(text).unwrap();
        FarmSettings::resolve(&document, &GlobalSettings::resolve(&document))
    }

    fn defaults() -> FarmDefaults {
        FarmDefaults {
            agent_user: "agent".to_string(),
            agent_command: "/agent".to_string(),
            ssh_key_file: None,
            config_file: "/etc/x2go/x2gobroker.conf".into(),
        }
    }

    #[test]
    fn a_full_section_is_typed() {
        let farm = settings(
            "[global]\nload-checker-intervals = 60\n[farm]\nagent-port = 50051\nagent-token-file = /t\nheartbeat-ms = 1500\ncall-timeout-ms = 700\ntakeover-wait-ms = 900\nautologin-key-lifetime = 5\npending-placement-ttl = 6\nagent-ca-file = /ca\nagent-client-cert = /c\nagent-client-key = /k\nlegacy-poll-ms = 100\nssh-key-file = /id\nssh-known-hosts-file = /kh\nssh-config-file = /dev/null\nssh-control-directory = /run/s\nssh-fallback = off\ngrpc-retry-ms = 200\nlegacy-shared-session-db = YES\nlegacy-answer-reuse-ms = 2500\nstate-directory = /srv/state\n",
        );
        assert!(farm.problems.is_empty(), "{:?}", farm.problems);
        let config = farm.farm_config(&defaults());
        assert_eq!(
            config,
            FarmConfig {
                agent_port: Some(50051),
                token_file: Some("/t".into()),
                tls_files: Some(("/ca".into(), Some(("/c".into(), "/k".into())))),
                heartbeat: Duration::from_millis(1500),
                call_timeout: Duration::from_millis(700),
                takeover_wait: Duration::from_millis(900),
                key_lifetime: Duration::from_secs(5),
                pending_ttl: Duration::from_secs(6),
                ssh: Some(SshSettings {
                    user: "agent".into(),
                    key_file: "/id".into(),
                    known_hosts: Some("/kh".into()),
                    config_file: Some("/dev/null".into()),
                    control_directory: "/run/s".into(),
                    agent_command: "/agent".into(),
                }),
                ssh_fallback: false,
                grpc_retry: Duration::from_millis(200),
                legacy_poll: Duration::from_millis(100),
                load_interval: Duration::from_secs(60),
                agent_command: "/agent".into(),
                shared_session_db: SharedSessionDb::Yes,
                legacy_reuse: Duration::from_millis(2500),
                ssh_key_configured: true,
                pending_keys_file: Some(
                    "/srv/state/pending-keys.etc_x2go_x2gobroker.conf.json".into()
                ),
            }
        );
    }

    #[test]
    fn defaults_apply_and_bad_values_are_problems() {
        let bare = settings("[farm]\n");
        assert!(bare.problems.is_empty());
        let config = bare.farm_config(&defaults());
        assert_eq!(config.agent_port, None);
        assert_eq!(config.ssh, None);
        assert_eq!(config.heartbeat, Duration::from_millis(2000));
        assert_eq!(config.call_timeout, Duration::from_millis(2000));
        assert_eq!(config.takeover_wait, Duration::from_millis(3000));
        assert_eq!(config.key_lifetime, Duration::from_secs(20));
        assert_eq!(config.pending_ttl, Duration::from_secs(30));
        assert_eq!(config.grpc_retry, Duration::from_millis(30000));
        assert_eq!(config.legacy_poll, Duration::from_millis(10000));
        assert_eq!(config.load_interval, Duration::from_secs(300));
        assert!(config.ssh_fallback);
        // no [farm] at all: the same defaults, SSH only with a key found in ~/.ssh
        let none = settings("").farm_config(&defaults());
        assert_eq!((none.agent_port, none.ssh.as_ref()), (None, None));
        assert_eq!(none.heartbeat, Duration::from_millis(2000));
        let found = FarmDefaults {
            ssh_key_file: Some("/var/lib/x2gobroker/.ssh/id_rsa".into()),
            ..defaults()
        };
        let discovered = settings("").farm_config(&found);
        assert_eq!(
            discovered.ssh.map(|ssh| ssh.key_file),
            Some("/var/lib/x2gobroker/.ssh/id_rsa".into())
        );
        let named = settings("[farm]\nssh-key-file = /etc/x2go/broker.key\n").farm_config(&found);
        assert_eq!(
            named.ssh.map(|ssh| ssh.key_file),
            Some("/etc/x2go/broker.key".into()),
            "[farm] ssh-key-file wins over the key found"
        );

        let bad = settings(
            "[global]\nload-checker-intervals = 0\n[farm]\nheartbeat-ms = banana\nagent-port = 70000\nssh-fallback = nope\nautologin-key-lifetime = -1\nssh-user =\n",
        );
        assert_eq!(
            bad.problems,
            [
                "[global] load-checker-intervals = 0 is out of range (1-86400 seconds); the farm uses 300",
                "[farm] agent-port = \"70000\": not a port number (1-65535); the key is ignored",
                "[farm] heartbeat-ms = \"banana\": not a whole number of milliseconds; the default 2000 is used",
                "[farm] autologin-key-lifetime = \"-1\": out of range (1-86400 seconds); the default 20 is used",
                "[farm] ssh-fallback = \"nope\": not a boolean (1 yes true on / 0 no false off); the default true is used",
            ]
        );
        let config = bad.farm_config(&defaults());
        assert_eq!(config.heartbeat, Duration::from_millis(2000));
        assert_eq!(config.agent_port, None);
        assert!(config.ssh_fallback);
        assert_eq!(config.key_lifetime, Duration::from_secs(20));
        assert_eq!(bad.ssh_user, None, "empty is unset");
    }

    #[test]
    fn the_broker_key_is_found_as_the_reference_looks_for_it() {
        let home = tempfile::tempdir().unwrap();
        assert_eq!(broker_key_file(home.path()), None);
        std::fs::create_dir(home.path().join(".ssh")).unwrap();
        std::fs::write(home.path().join(".ssh/id_ed25519"), "key").unwrap();
        assert_eq!(
            broker_key_file(home.path()),
            Some(home.path().join(".ssh/id_ed25519"))
        );
        // the reference's order: id_rsa before id_dsa, id_ecdsa, then ours
        std::fs::write(home.path().join(".ssh/id_ecdsa"), "key").unwrap();
        std::fs::write(home.path().join(".ssh/id_rsa"), "key").unwrap();
        assert_eq!(
            broker_key_file(home.path()),
            Some(home.path().join(".ssh/id_rsa"))
        );
    }
}
