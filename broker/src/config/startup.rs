//! Start-up settings (§2), resolved once into one value: command line > environment > `defaults.conf` (the program's section, then `[common]`) > x2gobroker.conf > built-in, each setting with the level it came from.
//!
//! The reading is injected ([`StartupInputs`], a file reader), so the precedence is pure and
//! table-tested; `app::startup_settings` feeds it the process (and applies the setuid rule).

use super::farm::FarmDefaults;
use super::keys;
use super::settings::GlobalSettings;
use super::{BrokerConfig, IniDocument};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The reference's process defaults file (§2).
pub const DEFAULTS_CONF: &str = "/etc/x2go/broker/defaults.conf";
/// Ours: names another defaults.conf (tests, staging). A setuid broker ignores it.
pub const DEFAULTS_CONF_VARIABLE: &str = "X2GOBROKER_DEFAULTS";
/// The reference's default config file.
pub const DEFAULT_CONFIG: &str = "/etc/x2go/x2gobroker.conf";
/// The reference's default session profiles file.
pub const DEFAULT_PROFILES: &str = "/etc/x2go/broker/x2gobroker-sessionprofiles.conf";
/// Our default bind address (the reference's is all interfaces).
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// The reference's logging configuration (`X2GOBROKER_LOGCONFIG`, §2).
pub const DEFAULT_LOGCONFIG: &str = "/etc/x2go/broker/x2gobroker-loggers.conf";
/// `-D`: the pid file when `--pidfile` names none, and the directory of
/// `x2gobroker-daemon.std{out,err}` when `-L` names none (§3.1).
pub const DEFAULT_PIDFILE: &str = "/run/x2gobroker/x2gobroker-daemon.pid";
pub const DEFAULT_LOGDIR: &str = "/var/log/x2gobroker";
/// The default daemon and agent account.
pub const DEFAULT_USER: &str = "x2gobroker";

/// The settings' names (§2): environment variables, and the keys of defaults.conf.
pub mod variable {
    pub const DEBUG: &str = "X2GOBROKER_DEBUG";
    pub const CONFIG: &str = "X2GOBROKER_CONFIG";
    pub const SESSIONPROFILES: &str = "X2GOBROKER_SESSIONPROFILES";
    pub const DEFAULT_BACKEND: &str = "X2GOBROKER_DEFAULT_BACKEND";
    pub const BIND_ADDRESS: &str = "DAEMON_BIND_ADDRESS";
    pub const SSL_CERTFILE: &str = "X2GOBROKER_SSL_CERTFILE";
    pub const SSL_KEYFILE: &str = "X2GOBROKER_SSL_KEYFILE";
    pub const DAEMON_USER: &str = "X2GOBROKER_DAEMON_USER";
    pub const DAEMON_GROUP: &str = "X2GOBROKER_DAEMON_GROUP";
    pub const AGENT_USER: &str = "X2GOBROKER_AGENT_USER";
    pub const AGENT_CMD: &str = "X2GOBROKER_AGENT_CMD";
    pub const AUTHSERVICE_SOCKET: &str = "X2GOBROKER_AUTHSERVICE_SOCKET";
    /// The reference's logging configuration (§2, §14).
    pub const LOGCONFIG: &str = "X2GOBROKER_LOGCONFIG";
    /// Ours: overrides `[global] cookie-directory`.
    pub const COOKIE_DIRECTORY: &str = "X2GOBROKER_COOKIE_DIRECTORY";
    /// Names of §2 the broker reads no value from (accepted in defaults.conf).
    pub const UNUSED: [&str; 4] = [
        "X2GOBROKER_DEBUG_INTERACTIVELY",
        "X2GOBROKER_TESTSUITE",
        "X2GOBROKER_LOADCHECKER_SOCKET",
        "X2GOBROKER_HOSTNAME",
    ];
}

/// The sections of defaults.conf (§2): `[common]` and one per program.
pub const DEFAULTS_CONF_SECTIONS: [&str; 5] =
    ["common", "daemon", "ssh", "authservice", "loadchecker"];

/// Where a start-up setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    CommandLine,
    Environment,
    DefaultsConf,
    File,
    BuiltIn,
}

impl fmt::Display for Source {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Source::CommandLine => "cli",
            Source::Environment => "environment",
            Source::DefaultsConf => "defaults.conf",
            Source::File => "file",
            Source::BuiltIn => "built-in",
        })
    }
}

/// What the command line says about start-up settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// `-C`.
    pub config_file: Option<PathBuf>,
    /// `-b`.
    pub bind: Option<String>,
    /// `-d` or `-i`.
    pub debug: bool,
}

/// Everything start-up settings are resolved from, except the files (read through a reader).
#[derive(Debug, Clone, Default)]
pub struct StartupInputs {
    pub command_line: CommandLine,
    /// The environment (empty for a setuid broker).
    pub environment: BTreeMap<String, String>,
    /// The program's name (`x2gobroker-daemon`: defaults.conf section `[daemon]`).
    pub program: String,
}

/// One effective setting, for `--check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub name: String,
    pub value: String,
    pub source: Source,
    /// For [`Source::File`]: which key of x2gobroker.conf.
    pub file_key: Option<String>,
}

/// The process-wide settings (§2), resolved once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupSettings {
    /// Debug logging.
    pub debug: bool,
    pub config_file: PathBuf,
    pub session_profiles: PathBuf,
    /// Used when the URL names no backend (may name an unknown one: such requests get 404).
    pub default_backend: String,
    /// HTTP mode: `[ADDRESS:]PORT`.
    pub bind_address: String,
    /// Both set: HTTPS.
    pub ssl_certfile: Option<PathBuf>,
    pub ssl_keyfile: Option<PathBuf>,
    /// Whose `~/.ssh` holds the broker's keys (`/pubkeys`), and `--drop-privileges`' target.
    pub daemon_user: String,
    pub daemon_group: String,
    /// The agents' account on the servers (`[farm] ssh-user` first).
    pub agent_user: String,
    /// The agent's path (`[farm] agent-command` first).
    pub agent_command: String,
    /// The auth service socket from the environment or defaults.conf; `None`: the file's
    /// `authservice-socket` (re-read with the file), else the built-in path.
    pub authservice_socket: Option<PathBuf>,
    /// The cookie directory from the environment or defaults.conf; `None`: the file's
    /// `cookie-directory`.
    pub cookie_directory: Option<PathBuf>,
    /// Timeout of one authentication round trip.
    pub auth_timeout: Duration,
    /// The loggers file (used when it exists and the process runs as root or the daemon user).
    pub logconfig: PathBuf,
    /// The defaults.conf read, and its section for this program.
    pub defaults_conf: PathBuf,
    pub defaults_section: Option<String>,
    /// Every setting with its value and source, in a fixed order.
    pub report: Vec<Reported>,
    /// What is wrong with defaults.conf (`--check-config` reports it; at run time it is
    /// logged).
    pub problems: Vec<String>,
    /// What start-up ignored on purpose (logged as warnings).
    pub notices: Vec<String>,
}

impl Default for StartupSettings {
    /// The built-in settings (no environment, no files).
    fn default() -> StartupSettings {
        StartupSettings::resolve(&StartupInputs::default(), &|_| None)
    }
}

/// The defaults.conf section of a program: its name without the first dash-component
/// (`x2gobroker-daemon` → `daemon`; plain `x2gobroker` has none).
pub fn program_section(program: &str) -> Option<String> {
    let name = Path::new(program)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or(program);
    let (_, rest) = name.split_once('-')?;
    Some(rest.to_string()).filter(|rest| !rest.is_empty())
}

/// True for `1 on true yes` (any case), as the reference reads boolean variables (and, fix
/// B21, defaults.conf too).
pub fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_lowercase().as_str(),
        "1" | "on" | "true" | "yes"
    )
}

/// The levels below the command line, looked up by setting name.
struct Levels<'a> {
    environment: &'a BTreeMap<String, String>,
    defaults: Option<&'a IniDocument>,
    section: Option<&'a str>,
}

impl Levels<'_> {
    /// The environment, then defaults.conf's program section, then its `[common]`; empty
    /// values count as unset. defaults.conf keys are matched ignoring case (ConfigParser).
    fn lookup(&self, name: &str) -> Option<(String, Source)> {
        if let Some(value) = self.environment.get(name).filter(|value| !value.is_empty()) {
            return Some((value.clone(), Source::Environment));
        }
        let defaults = self.defaults?;
        let sections = self.section.into_iter().chain(["common"]);
        for section_name in sections {
            let Some(section) = defaults.section(section_name) else {
                continue;
            };
            let found = section
                .entries
                .iter()
                .find(|(key, value)| key.eq_ignore_ascii_case(name) && !value.is_empty());
            if let Some((_, value)) = found {
                return Some((value.clone(), Source::DefaultsConf));
            }
        }
        None
    }
}

/// The first level that has a value, else the built-in one.
fn first(
    candidates: impl IntoIterator<Item = Option<(String, Source)>>,
    built_in: &str,
) -> (String, Source) {
    candidates
        .into_iter()
        .flatten()
        .next()
        .unwrap_or_else(|| (built_in.to_string(), Source::BuiltIn))
}

fn from_file(value: Option<String>) -> Option<(String, Source)> {
    value.map(|value| (value, Source::File))
}

/// A relative path from x2gobroker.conf, relative to that file's directory.
fn beside(config_file: &Path, path: &str) -> String {
    let path = PathBuf::from(path);
    if path.is_relative() {
        config_file
            .parent()
            .unwrap_or(Path::new("."))
            .join(path)
            .display()
            .to_string()
    } else {
        path.display().to_string()
    }
}

fn defaults_conf_problems(document: &IniDocument) -> Vec<String> {
    let mut problems = Vec::new();
    let known = |name: &str| {
        let names = [
            variable::DEBUG,
            variable::CONFIG,
            variable::SESSIONPROFILES,
            variable::DEFAULT_BACKEND,
            variable::BIND_ADDRESS,
            variable::SSL_CERTFILE,
            variable::SSL_KEYFILE,
            variable::DAEMON_USER,
            variable::DAEMON_GROUP,
            variable::AGENT_USER,
            variable::AGENT_CMD,
            variable::AUTHSERVICE_SOCKET,
            variable::COOKIE_DIRECTORY,
            variable::LOGCONFIG,
        ];
        names
            .iter()
            .chain(variable::UNUSED.iter())
            .any(|known| known.eq_ignore_ascii_case(name))
    };
    for section in &document.sections {
        if !DEFAULTS_CONF_SECTIONS.contains(&section.name.as_str()) {
            problems.push(format!("unknown section [{}] is ignored", section.name));
            continue;
        }
        for (key, _) in &section.entries {
            if !known(key) {
                problems.push(format!("[{}] unknown key {key:?} is ignored", section.name));
            }
        }
    }
    problems
}

impl StartupSettings {
    /// Resolves every start-up setting from `inputs` and the files `read_file` gives
    /// (defaults.conf, then x2gobroker.conf; `None`: missing).
    pub fn resolve(
        inputs: &StartupInputs,
        read_file: &dyn Fn(&Path) -> Option<String>,
    ) -> StartupSettings {
        let mut problems = Vec::new();
        let defaults_conf = PathBuf::from(
            inputs
                .environment
                .get(DEFAULTS_CONF_VARIABLE)
                .filter(|path| !path.is_empty())
                .map(String::as_str)
                .unwrap_or(DEFAULTS_CONF),
        );
        let defaults_document =
            read_file(&defaults_conf).and_then(|text| match IniDocument::parse(&text) {
                Ok(document) => {
                    problems.extend(
                        defaults_conf_problems(&document)
                            .into_iter()
                            .map(|problem| format!("{}: {problem}", defaults_conf.display())),
                    );
                    Some(document)
                }
                Err(error) => {
                    problems.push(format!(
                        "{}: {error} (the file is ignored)",
                        defaults_conf.display()
                    ));
                    None
                }
            });
        let defaults_section = program_section(&inputs.program);
        let levels = Levels {
            environment: &inputs.environment,
            defaults: defaults_document.as_ref(),
            section: defaults_section.as_deref(),
        };
        let command_line = &inputs.command_line;
        let mut report = Vec::new();
        let mut record =
            |name: &str, file_key: Option<(&str, &str)>, (value, source): (String, Source)| {
                report.push(Reported {
                    name: name.to_string(),
                    value: value.clone(),
                    source,
                    file_key: file_key
                        .filter(|_| source == Source::File)
                        .map(|(section, key)| format!("[{section}] {key}")),
                });
                (value, source)
            };

        let (debug, _) = record(
            variable::DEBUG,
            None,
            first(
                [
                    command_line
                        .debug
                        .then(|| ("true".to_string(), Source::CommandLine)),
                    levels
                        .lookup(variable::DEBUG)
                        .map(|(value, source)| (is_true(&value).to_string(), source)),
                ],
                "false",
            ),
        );
        let (config_file, _) = record(
            variable::CONFIG,
            None,
            first(
                [
                    command_line
                        .config_file
                        .as_ref()
                        .map(|path| (path.display().to_string(), Source::CommandLine)),
                    levels.lookup(variable::CONFIG),
                ],
                DEFAULT_CONFIG,
            ),
        );
        let config_file = PathBuf::from(config_file);
        let config = read_file(&config_file).and_then(|text| BrokerConfig::parse(&text).ok());
        let config = config.as_ref();
        let (session_profiles, _) = record(
            variable::SESSIONPROFILES,
            Some((
                keys::backend::INIFILE_SECTION,
                keys::backend::SESSION_PROFILES,
            )),
            first(
                [
                    levels.lookup(variable::SESSIONPROFILES),
                    from_file(
                        config
                            .and_then(|config| config.inifile.session_profiles.as_deref())
                            .map(|path| beside(&config_file, path)),
                    ),
                ],
                DEFAULT_PROFILES,
            ),
        );
        let lookup_or = |name: &str, built_in: &str| first([levels.lookup(name)], built_in);
        let (default_backend, _) = record(
            variable::DEFAULT_BACKEND,
            None,
            lookup_or(variable::DEFAULT_BACKEND, "inifile"),
        );
        let (bind_address, _) = record(
            variable::BIND_ADDRESS,
            None,
            first(
                [
                    command_line
                        .bind
                        .clone()
                        .map(|bind| (bind, Source::CommandLine)),
                    levels.lookup(variable::BIND_ADDRESS),
                ],
                DEFAULT_BIND,
            ),
        );
        let optional_path = |(value, _): (String, Source)| {
            Some(PathBuf::from(value)).filter(|path| !path.as_os_str().is_empty())
        };
        // the environment (and defaults.conf) before [global] tls-cert / tls-key
        let file_tls = |path: Option<&PathBuf>| {
            from_file(path.map(|path| beside(&config_file, &path.display().to_string())))
        };
        let ssl_certfile = optional_path(record(
            variable::SSL_CERTFILE,
            Some((keys::global::SECTION, keys::global::TLS_CERT)),
            first(
                [
                    levels.lookup(variable::SSL_CERTFILE),
                    file_tls(config.and_then(|config| config.global.tls_cert.as_ref())),
                ],
                "",
            ),
        ));
        let ssl_keyfile = optional_path(record(
            variable::SSL_KEYFILE,
            Some((keys::global::SECTION, keys::global::TLS_KEY)),
            first(
                [
                    levels.lookup(variable::SSL_KEYFILE),
                    file_tls(config.and_then(|config| config.global.tls_key.as_ref())),
                ],
                "",
            ),
        ));
        let (daemon_user, _) = record(
            variable::DAEMON_USER,
            None,
            lookup_or(variable::DAEMON_USER, DEFAULT_USER),
        );
        let (daemon_group, _) = record(
            variable::DAEMON_GROUP,
            None,
            lookup_or(variable::DAEMON_GROUP, DEFAULT_USER),
        );
        // [farm] first (issue 11: the farm's own keys win over the process settings)
        let (agent_user, _) = record(
            variable::AGENT_USER,
            Some((keys::farm::SECTION, keys::farm::SSH_USER)),
            first(
                [
                    from_file(config.and_then(|config| config.farm.ssh_user.clone())),
                    levels.lookup(variable::AGENT_USER),
                ],
                DEFAULT_USER,
            ),
        );
        let (agent_command, _) = record(
            variable::AGENT_CMD,
            Some((keys::farm::SECTION, keys::farm::AGENT_COMMAND)),
            first(
                [
                    from_file(config.and_then(|config| config.farm.agent_command.clone())),
                    levels.lookup(variable::AGENT_CMD),
                ],
                keys::DEFAULT_AGENT_COMMAND,
            ),
        );
        let (logconfig, _) = record(
            variable::LOGCONFIG,
            None,
            lookup_or(variable::LOGCONFIG, DEFAULT_LOGCONFIG),
        );
        // overrides of keys the file may change at run time: the file's level is resolved
        // per request (`authservice_socket`, `cookie_directory` below), reported as it is now
        let authservice_socket = levels
            .lookup(variable::AUTHSERVICE_SOCKET)
            .map(|(path, _)| PathBuf::from(path));
        let cookie_directory = levels
            .lookup(variable::COOKIE_DIRECTORY)
            .map(|(path, _)| PathBuf::from(path));
        let mut settings = StartupSettings {
            debug: debug == "true",
            config_file,
            session_profiles: PathBuf::from(session_profiles),
            default_backend,
            bind_address,
            ssl_certfile,
            ssl_keyfile,
            daemon_user,
            daemon_group,
            agent_user,
            agent_command,
            authservice_socket,
            cookie_directory,
            auth_timeout: Duration::from_secs(30),
            logconfig: PathBuf::from(logconfig),
            defaults_conf,
            defaults_section: defaults_section.clone(),
            report,
            problems,
            notices: Vec::new(),
        };
        let file_global = config.map(|config| &config.global);
        let file_sets =
            |key: &str| config.is_some_and(|config| config.is_set(keys::global::SECTION, key));
        let built_in_global = GlobalSettings::resolve(&IniDocument::default());
        let global = file_global.unwrap_or(&built_in_global);
        let socket_source = levels
            .lookup(variable::AUTHSERVICE_SOCKET)
            .map(|(_, source)| source)
            .or(global.authservice_socket.as_ref().map(|_| Source::File))
            .unwrap_or(Source::BuiltIn);
        let cookie_source = levels
            .lookup(variable::COOKIE_DIRECTORY)
            .map(|(_, source)| source)
            .unwrap_or(if file_sets(keys::global::COOKIE_DIRECTORY) {
                Source::File
            } else {
                Source::BuiltIn
            });
        let file_key = |source: Source, key: &str| {
            (source == Source::File).then(|| format!("[{}] {key}", keys::global::SECTION))
        };
        settings.report.push(Reported {
            name: variable::AUTHSERVICE_SOCKET.to_string(),
            value: settings.authservice_socket(global).display().to_string(),
            source: socket_source,
            file_key: file_key(socket_source, keys::global::AUTHSERVICE_SOCKET),
        });
        settings.report.push(Reported {
            name: variable::COOKIE_DIRECTORY.to_string(),
            value: settings.cookie_directory(global).display().to_string(),
            source: cookie_source,
            file_key: file_key(cookie_source, keys::global::COOKIE_DIRECTORY),
        });
        settings
    }

    /// The auth service socket: the environment or defaults.conf, else the file's
    /// `authservice-socket`, else the built-in path.
    pub fn authservice_socket(&self, global: &GlobalSettings) -> PathBuf {
        self.authservice_socket
            .clone()
            .or_else(|| global.authservice_socket.clone())
            .unwrap_or_else(|| PathBuf::from(keys::DEFAULT_AUTHSERVICE_SOCKET))
    }

    /// The cookie directory: the environment or defaults.conf, else the file's
    /// `cookie-directory` (its default included).
    pub fn cookie_directory(&self, global: &GlobalSettings) -> PathBuf {
        self.cookie_directory
            .clone()
            .unwrap_or_else(|| global.cookie_directory.clone())
    }

    /// The `[farm]` defaults these settings supply.
    /// The `[farm]` defaults these settings supply, with the broker key found in the
    /// effective user's `~/.ssh` (so: after dropping privileges).
    pub fn farm_defaults(&self) -> FarmDefaults {
        let home = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|user| user.dir);
        FarmDefaults {
            agent_user: self.agent_user.clone(),
            agent_command: self.agent_command.clone(),
            ssh_key_file: home.and_then(|home| super::farm::broker_key_file(&home)),
            config_file: self.config_file.clone(),
        }
    }

    /// The effective settings, one `NAME = value (source)` line each (`(file: [farm]
    /// ssh-user)` names the key; an empty value shows as `(unset)`).
    pub fn report_lines(&self) -> Vec<String> {
        self.report
            .iter()
            .map(|reported| {
                let value = if reported.value.is_empty() {
                    "(unset)"
                } else {
                    reported.value.as_str()
                };
                match &reported.file_key {
                    Some(key) => {
                        format!("{} = {value} ({}: {key})", reported.name, reported.source)
                    }
                    None => format!("{} = {value} ({})", reported.name, reported.source),
                }
            })
            .collect()
    }

    /// The client port's TLS certificate and key as a reload sees them: the environment's
    /// (or defaults.conf's) when they came from there, else `[global] tls-cert` / `tls-key`
    /// of `global` (the config as it is now), relative to the config file's directory.
    pub fn tls_files(&self, global: Option<&GlobalSettings>) -> (Option<PathBuf>, Option<PathBuf>) {
        let pick = |name: &str, started: &Option<PathBuf>, in_file: Option<&PathBuf>| match self
            .source_of(name)
        {
            Some(Source::File | Source::BuiltIn) | None => in_file
                .map(|path| PathBuf::from(beside(&self.config_file, &path.display().to_string()))),
            Some(_) => started.clone(),
        };
        (
            pick(
                variable::SSL_CERTFILE,
                &self.ssl_certfile,
                global.and_then(|global| global.tls_cert.as_ref()),
            ),
            pick(
                variable::SSL_KEYFILE,
                &self.ssl_keyfile,
                global.and_then(|global| global.tls_key.as_ref()),
            ),
        )
    }

    /// The source of the setting called `name`.
    pub fn source_of(&self, name: &str) -> Option<Source> {
        self.report
            .iter()
            .find(|reported| reported.name == name)
            .map(|reported| reported.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(
        command_line: CommandLine,
        environment: &[(&str, &str)],
        program: &str,
        files: &[(&str, &str)],
    ) -> StartupSettings {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(path, text)| (PathBuf::from(path), text.to_string()))
            .collect();
        let inputs = StartupInputs {
            command_line,
            environment: environment
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            program: program.to_string(),
        };
        StartupSettings::resolve(&inputs, &|path| files.get(path).cloned())
    }

    #[test]
    fn tls_files_from_the_environment_before_the_config_file() {
        let config = "[global]\ntls-cert = tls/broker.pem\ntls-key = /etc/ssl/private/broker.key\n";
        let files = [("/etc/x2go/x2gobroker.conf", config)];
        let from_file = resolve(CommandLine::default(), &[], "x2gobroker-daemon", &files);
        assert_eq!(
            from_file.ssl_certfile,
            Some(PathBuf::from("/etc/x2go/tls/broker.pem"))
        );
        assert_eq!(
            from_file.ssl_keyfile,
            Some(PathBuf::from("/etc/ssl/private/broker.key"))
        );
        assert_eq!(
            from_file.source_of("X2GOBROKER_SSL_CERTFILE"),
            Some(Source::File)
        );
        assert!(
            from_file.report_lines().contains(
                &"X2GOBROKER_SSL_CERTFILE = /etc/x2go/tls/broker.pem (file: [global] tls-cert)"
                    .to_string()
            ),
            "{:?}",
            from_file.report_lines()
        );
        let environment = [
            ("X2GOBROKER_SSL_CERTFILE", "/env/cert.pem"),
            ("X2GOBROKER_SSL_KEYFILE", "/env/key.pem"),
        ];
        let from_environment = resolve(
            CommandLine::default(),
            &environment,
            "x2gobroker-daemon",
            &files,
        );
        assert_eq!(
            from_environment.ssl_certfile,
            Some(PathBuf::from("/env/cert.pem"))
        );
        assert_eq!(
            from_environment.ssl_keyfile,
            Some(PathBuf::from("/env/key.pem"))
        );
        // a reload: the file's (new) paths unless the environment named them
        let changed = crate::config::BrokerConfig::parse(
            "[global]\ntls-cert = /new/cert.pem\ntls-key = /new/key.pem\n",
        )
        .unwrap();
        assert_eq!(
            from_file.tls_files(Some(&changed.global)),
            (
                Some(PathBuf::from("/new/cert.pem")),
                Some(PathBuf::from("/new/key.pem"))
            )
        );
        assert_eq!(
            from_environment.tls_files(Some(&changed.global)),
            (
                Some(PathBuf::from("/env/cert.pem")),
                Some(PathBuf::from("/env/key.pem"))
            )
        );
    }

    #[test]
    fn program_sections() {
        for (program, section) in [
            ("x2gobroker-daemon", Some("daemon")),
            ("/usr/bin/x2gobroker-ssh", Some("ssh")),
            ("x2gobroker", None),
            ("x2gobroker-", None),
            ("x2gobroker-auth-service", Some("auth-service")),
        ] {
            assert_eq!(program_section(program).as_deref(), section, "{program}");
        }
    }

    #[test]
    fn built_in_settings() {
        let settings = StartupSettings::default();
        assert!(!settings.debug);
        assert_eq!(settings.config_file, PathBuf::from(DEFAULT_CONFIG));
        assert_eq!(settings.session_profiles, PathBuf::from(DEFAULT_PROFILES));
        assert_eq!(settings.default_backend, "inifile");
        assert_eq!(settings.bind_address, DEFAULT_BIND);
        assert_eq!(settings.ssl_certfile, None);
        assert_eq!(settings.daemon_user, "x2gobroker");
        assert_eq!(settings.agent_command, keys::DEFAULT_AGENT_COMMAND);
        assert_eq!(settings.authservice_socket, None);
        assert!(settings
            .report
            .iter()
            .all(|reported| reported.source == Source::BuiltIn));
        assert!(settings.problems.is_empty());
    }

    /// Each level in turn: cli > environment > defaults.conf ([program], then [common]) >
    /// file > built-in.
    #[test]
    fn precedence_per_setting() {
        let defaults = "[common]\nX2GOBROKER_SESSIONPROFILES = /common/profiles\nx2gobroker_debug = 0\nDAEMON_BIND_ADDRESS = 10.0.0.1:80\nX2GOBROKER_DAEMON_USER = common-user\n[daemon]\nX2GOBROKER_SESSIONPROFILES = /daemon/profiles\nX2GOBROKER_CONFIG = /daemon/x2gobroker.conf\n[ssh]\nX2GOBROKER_DEFAULT_BACKEND = zeroconf\n";
        let config = "[broker_inifile]\nsession-profiles = profiles.conf\n[global]\nauthservice-socket = /file/socket\n[farm]\nssh-user = farm-user\n";
        let files = [
            (DEFAULTS_CONF, defaults),
            ("/daemon/x2gobroker.conf", config),
            ("/cli/x2gobroker.conf", config),
            ("/env/x2gobroker.conf", config),
        ];
        let daemon = resolve(CommandLine::default(), &[], "x2gobroker-daemon", &files);
        assert!(daemon.problems.is_empty(), "{:?}", daemon.problems);
        assert_eq!(daemon.config_file, PathBuf::from("/daemon/x2gobroker.conf"));
        assert_eq!(daemon.session_profiles, PathBuf::from("/daemon/profiles"));
        assert_eq!(daemon.bind_address, "10.0.0.1:80");
        assert_eq!(daemon.daemon_user, "common-user");
        assert_eq!(
            daemon.default_backend, "inifile",
            "[ssh] is not the daemon's"
        );
        assert!(!daemon.debug, "B21 fixed: 0 in defaults.conf is false");
        assert_eq!(daemon.agent_user, "farm-user");
        assert_eq!(daemon.source_of(variable::AGENT_USER), Some(Source::File));
        assert_eq!(
            daemon.source_of(variable::AUTHSERVICE_SOCKET),
            Some(Source::File)
        );
        assert_eq!(
            daemon.authservice_socket, None,
            "the file's level stays live"
        );
        assert_eq!(
            daemon.source_of(variable::SESSIONPROFILES),
            Some(Source::DefaultsConf)
        );

        let ssh = resolve(CommandLine::default(), &[], "x2gobroker-ssh", &files);
        assert_eq!(ssh.default_backend, "zeroconf");
        assert_eq!(ssh.session_profiles, PathBuf::from("/common/profiles"));
        assert_eq!(ssh.config_file, PathBuf::from(DEFAULT_CONFIG));

        let environment = [
            ("X2GOBROKER_SESSIONPROFILES", "/env/profiles"),
            ("X2GOBROKER_CONFIG", "/env/x2gobroker.conf"),
            ("X2GOBROKER_DEBUG", "Yes"),
            ("DAEMON_BIND_ADDRESS", ""),
            ("X2GOBROKER_AUTHSERVICE_SOCKET", "/env/socket"),
            ("X2GOBROKER_AGENT_USER", "env-user"),
        ];
        let with_environment = resolve(
            CommandLine::default(),
            &environment,
            "x2gobroker-daemon",
            &files,
        );
        assert_eq!(
            with_environment.config_file,
            PathBuf::from("/env/x2gobroker.conf")
        );
        assert_eq!(
            with_environment.session_profiles,
            PathBuf::from("/env/profiles")
        );
        assert!(with_environment.debug);
        assert_eq!(
            with_environment.bind_address, "10.0.0.1:80",
            "an empty variable is unset"
        );
        assert_eq!(
            with_environment.authservice_socket,
            Some(PathBuf::from("/env/socket"))
        );
        assert_eq!(with_environment.agent_user, "farm-user", "[farm] wins");

        let cli = CommandLine {
            config_file: Some("/cli/x2gobroker.conf".into()),
            bind: Some("127.0.0.2:9".to_string()),
            debug: true,
        };
        let with_cli = resolve(cli, &environment, "x2gobroker-daemon", &files);
        assert_eq!(with_cli.config_file, PathBuf::from("/cli/x2gobroker.conf"));
        assert_eq!(with_cli.bind_address, "127.0.0.2:9");
        assert_eq!(
            with_cli.source_of(variable::CONFIG),
            Some(Source::CommandLine)
        );

        // the file's session-profiles, relative to the config file
        let file_level = resolve(
            CommandLine {
                config_file: Some("/cli/x2gobroker.conf".into()),
                ..CommandLine::default()
            },
            &[],
            "x2gobroker",
            &[("/cli/x2gobroker.conf", config)],
        );
        assert_eq!(
            file_level.session_profiles,
            PathBuf::from("/cli/profiles.conf")
        );
        assert_eq!(
            file_level.source_of(variable::SESSIONPROFILES),
            Some(Source::File)
        );
        assert_eq!(
            file_level.authservice_socket(&BrokerConfig::parse(config).unwrap().global),
            PathBuf::from("/file/socket")
        );
    }

    #[test]
    fn defaults_conf_problems_are_reported_and_its_path_can_be_moved() {
        let moved = resolve(
            CommandLine::default(),
            &[(DEFAULTS_CONF_VARIABLE, "/elsewhere/defaults.conf")],
            "x2gobroker-daemon",
            &[(
                "/elsewhere/defaults.conf",
                "[common]\nX2GOBROKER_DAEMON_USER = broker\nX2GOBROKER_DAEMN_USER = typo\n[dæmon]\n",
            )],
        );
        assert_eq!(moved.daemon_user, "broker");
        assert_eq!(
            moved.problems,
            [
                "/elsewhere/defaults.conf: [common] unknown key \"X2GOBROKER_DAEMN_USER\" is ignored",
                "/elsewhere/defaults.conf: unknown section [dæmon] is ignored",
            ]
        );
        let broken = resolve(
            CommandLine::default(),
            &[],
            "x2gobroker-daemon",
            &[(DEFAULTS_CONF, "no delimiter here\n")],
        );
        assert_eq!(broken.problems.len(), 1);
        assert!(broken.problems[0].contains("(the file is ignored)"));
    }

    #[test]
    fn the_report_names_every_setting_once() {
        let settings = StartupSettings::default();
        let lines = settings.report_lines();
        assert!(
            lines.contains(&"X2GOBROKER_CONFIG = /etc/x2go/x2gobroker.conf (built-in)".to_string())
        );
        assert!(lines.contains(&format!(
            "X2GOBROKER_AUTHSERVICE_SOCKET = {} (built-in)",
            keys::DEFAULT_AUTHSERVICE_SOCKET
        )));
        let mut names: Vec<&str> = settings
            .report
            .iter()
            .map(|reported| reported.name.as_str())
            .collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
        assert_eq!(count, 14);
    }
}
