//! Logging set-up: stderr (the journal under systemd), or, as the reference decides it (§2 `X2GOBROKER_LOGCONFIG`, §14), the files its `x2gobroker-loggers.conf` names; the access line; one line per event whatever it contains; reopening on SIGHUP.
//!
//! The decision ([`decide`]): when the loggers file exists and this process runs as root or
//! as the daemon user (its effective user's name, or the login name of the environment, as
//! the reference's `getpass.getuser()`), the file's loggers apply: events of the `access`
//! target go to logger `access`, of the `error` target and every error of ours to `error`,
//! everything else of ours to `broker`, other crates' events to `root` (the reference's
//! file: stderr). Levels are the file's (`WARNING` in the shipped file), `-d` or
//! `X2GOBROKER_DEBUG` lowers `broker`, `access` and `error` to DEBUG; other crates log from
//! INFO (DEBUG with `-d`); `RUST_LOG`, when set, filters first. Lines have the file's format
//! (the shipped one: `2026-12-02 05:57:09,783 - access - WARNING - 401 POST /plain/
//! (127.0.0.1) 2024.62ms`). Otherwise (`-i`, `--check-config`, another user, no file)
//! tracing's own format goes to stderr, as before. A file that cannot be used is one error
//! on stderr and stderr logging.
//!
//! Files are opened by [`Logging::open_files`] once the process has its final user (after
//! `--drop-privileges`; until then their lines go to stderr); a file that does not exist is
//! created `0640`, owned by the daemon user and group `adm` (the reference's logrotate
//! `create 640 x2gobroker adm`: as root by `fchown`, as the daemon user through the
//! set-group-ID log directory or `fchown` of the group where allowed). [`Logging::reopen`]
//! (SIGHUP, after logrotate moved the files) opens them again; a file that cannot be
//! reopened keeps the old one and logs why.
//!
//! **Invariant:** every event is one line: line breaks and other control characters in
//! messages and fields (user names from requests) are written as `\n`, `\x1b`, ….

pub mod fileconfig;

use fileconfig::{Field, FileConfig, Format, Handler, Piece, PyLevel, Target};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::field::{Field as TracingField, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The environment variables holding the login name, in `getpass.getuser()`'s order.
const LOGIN_VARIABLES: [&str; 4] = ["LOGNAME", "USER", "LNAME", "USERNAME"];

/// Installs stderr logging once; `debug` raises the default level to debug (tools, benchmarks).
pub fn init(debug: bool) {
    let _ = stderr_subscriber(debug).try_init();
}

fn stderr_subscriber(debug: bool) -> impl tracing::Subscriber + Send + Sync {
    let default_level = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(OneLineStderr { keep_escape: ansi })
        .with_ansi(ansi)
        .finish()
}

/// What logging uses, decided once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// tracing's format on stderr.
    Stderr,
    /// The loggers file's handlers.
    Files(FileConfig),
    /// The loggers file exists but cannot be used: stderr, and this error once.
    Broken(String),
}

/// Whether a process whose effective user is `effective_user` (and whose environment names
/// `login_name`) uses the loggers file: root or the daemon user (§2).
pub fn may_use_files(
    effective_user: Option<&str>,
    login_name: Option<&str>,
    daemon_user: &str,
) -> bool {
    [effective_user, login_name]
        .into_iter()
        .flatten()
        .any(|name| name == "root" || name == daemon_user)
}

/// The decision from the loggers file's text (`None`: no such file) and whether this user
/// may use it.
pub fn decide(
    path: &Path,
    text: Option<std::io::Result<String>>,
    user_may_use_files: bool,
    force_stderr: bool,
) -> Decision {
    if force_stderr || !user_may_use_files {
        return Decision::Stderr;
    }
    match text {
        None => Decision::Stderr,
        Some(Err(error)) => {
            Decision::Broken(format!("{}: {error}; logging to stderr", path.display()))
        }
        Some(Ok(text)) => match FileConfig::parse(&text) {
            Ok(config) => Decision::Files(config),
            Err(error) => {
                Decision::Broken(format!("{}: {error}; logging to stderr", path.display()))
            }
        },
    }
}

/// The logger an event goes to: `access`, `error`, `broker`, or (other crates) the root
/// logger under the event's target.
pub fn logger_name(target: &str, level: tracing::Level) -> (&str, bool) {
    match target {
        "access" | "error" | "broker" => (target, true),
        ours if ours.starts_with("x2gobroker") => {
            if level == tracing::Level::ERROR {
                ("error", true)
            } else {
                ("broker", true)
            }
        }
        other => (other, false),
    }
}

/// The access line (§14, the reference's `tornado_log_request`): `<status> <METHOD> <path>
/// (<ip>) <ms>ms`. The query string is left out (on GET it carries passwords and cookies).
pub fn access_line(
    status: u16,
    method: &str,
    path: &str,
    client: std::net::IpAddr,
    elapsed: std::time::Duration,
) -> String {
    format!(
        "{status} {method} {path} ({client}) {:.2}ms",
        elapsed.as_secs_f64() * 1000.0
    )
}

/// Logs one answered request: INFO below 400, WARNING for 4xx (target `access`), ERROR for
/// 5xx (target `error`), as the reference.
pub fn log_request(
    status: u16,
    method: &str,
    path: &str,
    client: std::net::IpAddr,
    elapsed: std::time::Duration,
) {
    let line = access_line(status, method, path, client, elapsed);
    if status < 400 {
        tracing::info!(target: "access", "{line}");
    } else if status < 500 {
        tracing::warn!(target: "access", "{line}");
    } else {
        tracing::error!(target: "error", "{line}");
    }
}

/// `text` with line breaks and other control characters (C0, DEL, C1, U+2028/2029) written
/// as escapes, so that it stays on one line; `keep_escape` keeps ESC (colours on a terminal).
pub fn escape_controls(text: &str, keep_escape: bool) -> Cow<'_, str> {
    let needs_escaping = |character: char| {
        (character.is_control() && character != '\t' && !(keep_escape && character == '\x1b'))
            || character == '\u{2028}'
            || character == '\u{2029}'
    };
    if !text.chars().any(needs_escaping) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        match character {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            other if needs_escaping(other) => {
                let _ = write!(escaped, "\\x{{{:x}}}", other as u32);
            }
            other => escaped.push(other),
        }
    }
    Cow::Owned(escaped)
}

/// stderr through [`escape_controls`]: tracing's fmt layer writes each event with one
/// `write_all` of the whole line.
#[derive(Debug, Clone, Copy)]
struct OneLineStderr {
    keep_escape: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OneLineStderr {
    type Writer = OneLineStderr;

    fn make_writer(&'a self) -> OneLineStderr {
        *self
    }
}

impl std::io::Write for OneLineStderr {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buffer);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (text.as_ref(), ""),
        };
        let line = format!("{}{newline}", escape_controls(body, self.keep_escape));
        std::io::stderr().write_all(line.as_bytes())?;
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Who a log file the broker creates belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileOwner {
    pub(crate) user: Option<nix::unistd::Uid>,
    pub(crate) group: Option<nix::unistd::Gid>,
}

impl FileOwner {
    /// The daemon user and group `adm` (else the daemon group).
    pub(crate) fn of(daemon_user: &str, daemon_group: &str) -> FileOwner {
        let user = nix::unistd::User::from_name(daemon_user)
            .ok()
            .flatten()
            .map(|user| user.uid);
        let group = nix::unistd::Group::from_name("adm")
            .ok()
            .flatten()
            .or_else(|| nix::unistd::Group::from_name(daemon_group).ok().flatten())
            .map(|group| group.gid);
        FileOwner { user, group }
    }
}

/// Opens a log file for appending (never through a symbolic link); a new one is made `0640`
/// and given to `owner` as far as this process may.
fn open_log_file(path: &Path, owner: FileOwner) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.append(true).custom_flags(nix::libc::O_NOFOLLOW);
    let created = options.clone().create_new(true).mode(0o640).open(path);
    match created {
        Ok(file) => {
            // the umask may have taken group read away
            let _ = nix::sys::stat::fchmod(&file, nix::sys::stat::Mode::from_bits_truncate(0o640));
            if nix::unistd::geteuid().is_root() {
                let _ = nix::unistd::fchown(&file, owner.user, owner.group);
            } else {
                // allowed when this user is a member of the group; the set-group-ID log
                // directory (the reference's 2755 x2gobroker:adm) did it already otherwise
                let _ = nix::unistd::fchown(&file, None, owner.group);
            }
            Ok(file)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => options.open(path),
        Err(error) => Err(error),
    }
}

/// A file a handler writes; `None` until opened (or when it could not be): its lines go to
/// stderr.
#[derive(Debug)]
struct FileSink {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl FileSink {
    fn write_line(&self, line: &str) {
        let mut guard = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let written = guard
            .as_mut()
            .map(|file| file.write_all(line.as_bytes()).is_ok());
        if written != Some(true) {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// A handler of the loggers file, ready to write.
#[derive(Debug)]
struct Sink {
    handler: Handler,
    /// Index into [`Router::files`] for file handlers.
    file: Option<usize>,
}

/// One logger's effective level and handlers (its own, then its ancestors' while it
/// propagates).
#[derive(Debug, Clone)]
struct Route {
    threshold: PyLevel,
    sinks: Vec<usize>,
}

/// The loggers file turned into routes.
#[derive(Debug)]
struct Router {
    routes: BTreeMap<String, Route>,
    root: Route,
    /// Floor for other crates' events (INFO, DEBUG with debug).
    foreign_floor: PyLevel,
    sinks: Vec<Sink>,
    files: Vec<FileSink>,
    owner: FileOwner,
}

impl Router {
    fn new(config: FileConfig, debug: bool, rust_log: bool, owner: FileOwner) -> Router {
        let paths = config.files();
        let files: Vec<FileSink> = paths
            .iter()
            .map(|path| FileSink {
                path: path.clone(),
                file: Mutex::new(None),
            })
            .collect();
        let mut index_of = BTreeMap::new();
        let mut sinks = Vec::new();
        for (name, handler) in &config.handlers {
            let file = match &handler.target {
                Target::File(path) => paths.iter().position(|known| known == path),
                _ => None,
            };
            index_of.insert(name.clone(), sinks.len());
            sinks.push(Sink {
                handler: handler.clone(),
                file,
            });
        }
        let root_logger = &config.loggers["root"];
        let handler_indices = |names: &[String]| -> Vec<usize> {
            names
                .iter()
                .filter_map(|name| index_of.get(name).copied())
                .collect()
        };
        let level_of = |level: PyLevel| if rust_log { PyLevel::NotSet } else { level };
        let root = Route {
            threshold: level_of(root_logger.level),
            sinks: handler_indices(&root_logger.handlers),
        };
        let mut routes = BTreeMap::new();
        for (name, logger) in &config.loggers {
            if name == "root" {
                continue;
            }
            let mut route_sinks = handler_indices(&logger.handlers);
            if logger.propagate {
                route_sinks.extend(root.sinks.iter().copied());
            }
            let mut threshold = if logger.level == PyLevel::NotSet {
                root.threshold
            } else {
                level_of(logger.level)
            };
            if debug && matches!(name.as_str(), "broker" | "access" | "error") {
                threshold = threshold.min(PyLevel::Debug);
            }
            routes.insert(
                name.clone(),
                Route {
                    threshold,
                    sinks: route_sinks,
                },
            );
        }
        let foreign_floor = if debug || rust_log {
            PyLevel::Debug
        } else {
            PyLevel::Info
        };
        Router {
            routes,
            root,
            foreign_floor,
            sinks,
            files,
            owner,
        }
    }

    /// The route of an event and its logger name, if any handler takes it.
    fn route<'a>(&'a self, metadata: &'a tracing::Metadata<'_>) -> Option<(&'a str, &'a Route)> {
        let level = PyLevel::of(*metadata.level());
        let (name, ours) = logger_name(metadata.target(), *metadata.level());
        if !ours && level < self.foreign_floor {
            return None;
        }
        let route = self.routes.get(name).unwrap_or(&self.root);
        if level < route.threshold {
            return None;
        }
        let any_handler = route
            .sinks
            .iter()
            .any(|&index| self.sinks[index].handler.level <= level);
        any_handler.then_some((name, route))
    }

    fn open_files(&self) {
        for sink in &self.files {
            match open_log_file(&sink.path, self.owner) {
                Ok(file) => {
                    *sink
                        .file
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(file)
                }
                Err(error) => tracing::error!(
                    "cannot open log file {}: {error}; its lines go to stderr",
                    sink.path.display()
                ),
            }
        }
    }

    fn reopen(&self) -> usize {
        let mut reopened = 0;
        for sink in &self.files {
            match open_log_file(&sink.path, self.owner) {
                Ok(file) => {
                    *sink
                        .file
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(file);
                    reopened += 1;
                }
                Err(error) => tracing::error!(
                    "cannot reopen log file {}: {error}; still writing to the file opened before",
                    sink.path.display()
                ),
            }
        }
        reopened
    }
}

/// The message and the fields of an event, as `message key=value …`.
#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &TracingField, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &TracingField, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// What a format line is made of.
pub struct Record<'a> {
    pub name: &'a str,
    pub level: PyLevel,
    pub message: &'a str,
    pub metadata: &'a tracing::Metadata<'a>,
    pub now: chrono::DateTime<chrono::Local>,
}

fn field_value(field: Field, format: &Format, record: &Record<'_>) -> String {
    match field {
        Field::Asctime => match &format.datefmt {
            Some(pattern) => record.now.format(pattern).to_string(),
            None => format!(
                "{},{:03}",
                record.now.format("%Y-%m-%d %H:%M:%S"),
                record.now.timestamp_subsec_millis()
            ),
        },
        Field::Name => record.name.to_string(),
        Field::Levelname => record.level.name().to_string(),
        Field::Levelno => (record.level as u32).to_string(),
        Field::Message => record.message.to_string(),
        Field::Process => std::process::id().to_string(),
        Field::Msecs => record.now.timestamp_subsec_millis().to_string(),
        Field::Created => format!(
            "{}.{:06}",
            record.now.timestamp(),
            record.now.timestamp_subsec_micros()
        ),
        Field::Filename => record
            .metadata
            .file()
            .and_then(|file| Path::new(file).file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Field::Pathname => record.metadata.file().unwrap_or_default().to_string(),
        Field::Module => record
            .metadata
            .module_path()
            .unwrap_or_default()
            .to_string(),
        Field::Lineno => record.metadata.line().unwrap_or(0).to_string(),
        Field::FuncName => String::new(),
        Field::ThreadName => std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string(),
    }
}

/// One line of `format` for `record`, newline included.
pub fn format_line(format: &Format, record: &Record<'_>) -> String {
    let mut line = String::new();
    for piece in &format.pieces {
        match piece {
            Piece::Text(text) => line.push_str(text),
            Piece::Field {
                field,
                left_align,
                width,
            } => {
                let value = field_value(*field, format, record);
                if *left_align {
                    let _ = write!(line, "{value:<width$}");
                } else {
                    let _ = write!(line, "{value:>width$}");
                }
            }
        }
    }
    let mut one_line = escape_controls(&line, false).into_owned();
    one_line.push('\n');
    one_line
}

/// The layer writing events to the loggers file's handlers.
struct RoutingLayer {
    router: Arc<Router>,
}

impl<S: tracing::Subscriber> Layer<S> for RoutingLayer {
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.router.route(metadata).is_some() {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>, _context: Context<'_, S>) -> bool {
        self.router.route(metadata).is_some()
    }

    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        let metadata = event.metadata();
        let Some((name, route)) = self.router.route(metadata) else {
            return;
        };
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let message = format!("{}{}", visitor.message, visitor.fields);
        let level = PyLevel::of(*metadata.level());
        let record = Record {
            name,
            level,
            message: &message,
            metadata,
            now: chrono::Local::now(),
        };
        for &index in &route.sinks {
            let sink = &self.router.sinks[index];
            if sink.handler.level > level {
                continue;
            }
            let line = format_line(&sink.handler.format, &record);
            match (&sink.handler.target, sink.file) {
                (Target::File(_), Some(file)) => self.router.files[file].write_line(&line),
                (Target::Stdout, _) => {
                    let _ = std::io::stdout().write_all(line.as_bytes());
                }
                (Target::Null, _) => {}
                _ => {
                    let _ = std::io::stderr().write_all(line.as_bytes());
                }
            }
        }
    }
}

/// The installed logging: which files it writes, so that they can be opened (once the
/// process has its final user) and reopened (SIGHUP).
#[derive(Debug, Clone, Default)]
pub struct Logging {
    router: Option<Arc<Router>>,
}

impl Logging {
    /// Decides (§2, §14) and installs the global subscriber. `logconfig`: the loggers file
    /// (`X2GOBROKER_LOGCONFIG`); `force_stderr`: `-i` or `--check-config`; `environment`:
    /// whether the environment's login name counts (not for a setuid broker).
    pub fn init(
        logconfig: &Path,
        debug: bool,
        daemon_user: &str,
        daemon_group: &str,
        force_stderr: bool,
        environment: bool,
    ) -> Logging {
        let effective_user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|user| user.name);
        let login_name = environment
            .then(|| {
                LOGIN_VARIABLES
                    .iter()
                    .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
            })
            .flatten();
        let user_may = may_use_files(
            effective_user.as_deref(),
            login_name.as_deref(),
            daemon_user,
        );
        let text = (user_may && !force_stderr && logconfig.exists()).then(|| {
            std::fs::read(logconfig).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        });
        match decide(logconfig, text, user_may, force_stderr) {
            Decision::Stderr => {
                init(debug);
                Logging::default()
            }
            Decision::Broken(message) => {
                init(debug);
                tracing::error!("{message}");
                Logging::default()
            }
            Decision::Files(config) => {
                let rust_log = std::env::var_os("RUST_LOG").is_some();
                let owner = FileOwner::of(daemon_user, daemon_group);
                let router = Arc::new(Router::new(config, debug, rust_log, owner));
                let filter = rust_log.then(tracing_subscriber::EnvFilter::from_default_env);
                let installed = tracing_subscriber::registry()
                    .with(filter)
                    .with(RoutingLayer {
                        router: router.clone(),
                    })
                    .try_init();
                if installed.is_err() {
                    return Logging::default();
                }
                Logging {
                    router: Some(router),
                }
            }
        }
    }

    /// The files the loggers file names (empty when logging to stderr).
    pub fn files(&self) -> Vec<PathBuf> {
        self.router
            .iter()
            .flat_map(|router| router.files.iter().map(|sink| sink.path.clone()))
            .collect()
    }

    /// Opens the log files (call once the process runs as its final user).
    pub fn open_files(&self) {
        if let Some(router) = &self.router {
            router.open_files();
        }
    }

    /// Opens the log files again (SIGHUP, after logrotate); returns how many were reopened.
    pub fn reopen(&self) -> usize {
        self.router
            .as_ref()
            .map(|router| router.reopen())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_uses_the_files() {
        for (effective, login, expected) in [
            (Some("root"), None, true),
            (Some("x2gobroker"), None, true),
            (Some("alice"), Some("x2gobroker"), true),
            (Some("alice"), Some("alice"), false),
            (None, None, false),
        ] {
            assert_eq!(
                may_use_files(effective, login, "x2gobroker"),
                expected,
                "{effective:?} {login:?}"
            );
        }
        assert!(!may_use_files(Some("x2gobroker"), None, "broker"));
    }

    #[test]
    fn decisions() {
        let path = Path::new("/etc/x2go/broker/x2gobroker-loggers.conf");
        let good = "[loggers]\nkeys=root\n[handlers]\nkeys=\n[logger_root]\n".to_string();
        assert!(matches!(
            decide(path, Some(Ok(good.clone())), true, false),
            Decision::Files(_)
        ));
        assert_eq!(
            decide(path, Some(Ok(good.clone())), false, false),
            Decision::Stderr
        );
        assert_eq!(decide(path, Some(Ok(good)), true, true), Decision::Stderr);
        assert_eq!(decide(path, None, true, false), Decision::Stderr);
        let Decision::Broken(message) = decide(path, Some(Ok("[loggers]\n".into())), true, false)
        else {
            panic!("a broken file is reported");
        };
        assert_eq!(
            message,
            "/etc/x2go/broker/x2gobroker-loggers.conf: [loggers] has no keys; logging to stderr"
        );
    }

    #[test]
    fn loggers_by_target() {
        use tracing::Level;
        for (target, level, expected) in [
            ("access", Level::WARN, ("access", true)),
            ("error", Level::ERROR, ("error", true)),
            (
                "x2gobroker::farm::supervisor",
                Level::WARN,
                ("broker", true),
            ),
            ("x2gobroker::service", Level::ERROR, ("error", true)),
            ("x2gobroker_agent_protocol", Level::INFO, ("broker", true)),
            ("h2::codec", Level::INFO, ("h2::codec", false)),
        ] {
            assert_eq!(logger_name(target, level), expected, "{target}");
        }
    }

    #[test]
    fn the_access_line_is_the_references() {
        let line = access_line(
            401,
            "POST",
            "/plain/",
            "127.0.0.1".parse().unwrap(),
            std::time::Duration::from_micros(2_024_620),
        );
        assert_eq!(line, "401 POST /plain/ (127.0.0.1) 2024.62ms");
    }

    #[test]
    fn control_characters_never_start_a_line() {
        for (text, keep_escape, expected) in [
            ("plain", false, "plain"),
            (
                "jdoe\nFORGED - access - INFO - 200",
                false,
                "jdoe\\nFORGED - access - INFO - 200",
            ),
            ("a\r\nb", false, "a\\r\\nb"),
            ("tab\tstays", false, "tab\tstays"),
            ("\x1b[31mred", false, "\\x{1b}[31mred"),
            ("\x1b[31mred", true, "\x1b[31mred"),
            ("nel\u{85}ls\u{2028}", false, "nel\\x{85}ls\\x{2028}"),
        ] {
            assert_eq!(escape_controls(text, keep_escape), expected, "{text:?}");
        }
    }

    fn router_for(text: &str, debug: bool) -> Router {
        let owner = FileOwner {
            user: None,
            group: None,
        };
        Router::new(FileConfig::parse(text).unwrap(), debug, false, owner)
    }

    const REFERENCE: &str = "[loggers]\nkeys=root,broker,access,error\n[logger_root]\nlevel=NOTSET\nhandlers=stderrHandler\n[handlers]\nkeys=stderrHandler,brokerFileHandler,accessFileHandler,errorFileHandler\n[formatters]\nkeys=f\n[handler_stderrHandler]\nclass=StreamHandler\nargs=(sys.stderr,)\n[logger_broker]\nlevel=WARNING\nhandlers=brokerFileHandler\nqualname=broker\npropagate=0\n[handler_brokerFileHandler]\nclass=FileHandler\nformatter=f\nargs=('/l/broker.log',)\n[logger_access]\nlevel=WARNING\nhandlers=accessFileHandler\nqualname=access\npropagate=0\n[handler_accessFileHandler]\nclass=FileHandler\nformatter=f\nargs=('/l/access.log',)\n[logger_error]\nlevel=WARNING\nhandlers=errorFileHandler\nqualname=error\npropagate=0\n[handler_errorFileHandler]\nclass=FileHandler\nformatter=f\nargs=('/l/error.log',)\n[formatter_f]\nformat=%(asctime)s - %(name)s - %(levelname)s - %(message)s\ndatefmt=\n";

    #[test]
    fn routes_follow_the_files_levels() {
        let router = router_for(REFERENCE, false);
        let access = &router.routes["access"];
        assert_eq!(access.threshold, PyLevel::Warning);
        assert_eq!(access.sinks.len(), 1, "propagate=0: not also to stderr");
        let file = router.sinks[access.sinks[0]].file.unwrap();
        assert_eq!(router.files[file].path, PathBuf::from("/l/access.log"));
        assert_eq!(router.root.threshold, PyLevel::NotSet);
        assert_eq!(router.foreign_floor, PyLevel::Info);
        let debugging = router_for(REFERENCE, true);
        assert_eq!(debugging.routes["broker"].threshold, PyLevel::Debug);
        assert_eq!(debugging.routes["access"].threshold, PyLevel::Debug);
        assert_eq!(debugging.foreign_floor, PyLevel::Debug);
        let propagating = router_for(&REFERENCE.replace("propagate=0", "propagate=1"), false);
        assert_eq!(propagating.routes["access"].sinks.len(), 2);
    }

    #[test]
    fn lines_in_the_references_format() {
        static CALLSITE: tracing::callsite::DefaultCallsite =
            tracing::callsite::DefaultCallsite::new(&META);
        static META: tracing::Metadata<'static> = tracing::Metadata::new(
            "event",
            "access",
            tracing::Level::WARN,
            Some("broker/src/http/routes.rs"),
            Some(135),
            Some("x2gobroker::http::routes"),
            tracing::field::FieldSet::new(&["message"], tracing::callsite::Identifier(&CALLSITE)),
            tracing::metadata::Kind::EVENT,
        );
        use chrono::TimeZone;
        let now = chrono::Local
            .with_ymd_and_hms(2026, 12, 2, 5, 57, 9)
            .unwrap()
            + chrono::Duration::milliseconds(783);
        let record = Record {
            name: "access",
            level: PyLevel::Warning,
            message: "401 POST /plain/ (127.0.0.1) 2024.62ms user=\"a\nb\"",
            metadata: &META,
            now,
        };
        assert_eq!(
            format_line(&Format::reference(), &record),
            "2026-12-02 05:57:09,783 - access - WARNING - 401 POST /plain/ (127.0.0.1) 2024.62ms user=\"a\\nb\"\n"
        );
        let custom = fileconfig::parse_format(
            "[%(levelname)-7s] %(filename)s:%(lineno)d %(levelno)s %(message)s",
            "%H:%M",
        )
        .unwrap();
        assert_eq!(
            format_line(&custom, &record),
            "[WARNING] routes.rs:135 30 401 POST /plain/ (127.0.0.1) 2024.62ms user=\"a\\nb\"\n"
        );
        let dated = fileconfig::parse_format("%(asctime)s %(name)8s|", "%d.%m. %H:%M").unwrap();
        assert_eq!(format_line(&dated, &record), "02.12. 05:57   access|\n");
        let widest = fileconfig::parse_format("%(name)65535s", "").unwrap();
        assert_eq!(format_line(&widest, &record).len(), 65536);
    }

    #[test]
    fn files_are_created_0640_and_reopened() {
        use std::os::unix::fs::MetadataExt;
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("access.log");
        let owner = FileOwner {
            user: None,
            group: None,
        };
        let mut file = open_log_file(&path, owner).unwrap();
        file.write_all(b"one\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        let mut again = open_log_file(&path, owner).unwrap();
        again.write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        let link = directory.path().join("link.log");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(
            open_log_file(&link, owner).is_err(),
            "never through a symlink"
        );
    }
}
