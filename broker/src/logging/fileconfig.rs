//! The reference's `x2gobroker-loggers.conf` (Python `logging.config.fileConfig` format) read into loggers, handlers and formats: only what the broker needs, every problem one clear error.
//!
//! Read: `[loggers] keys`, `[logger_<key>] level handlers qualname propagate`, `[handlers]
//! keys`, `[handler_<key>] class level formatter args`, `[formatters] keys`,
//! `[formatter_<key>] format datefmt`. Handler classes: `FileHandler`, `WatchedFileHandler`,
//! `RotatingFileHandler`, `TimedRotatingFileHandler` (also with a `handlers.` or
//! `logging.handlers.` prefix; all of them a plain file that is reopened on SIGHUP: rotation
//! is logrotate's job) with the file name as the first element of `args`, `StreamHandler`
//! with `sys.stderr`/`sys.stdout` (or no argument: stderr), `NullHandler`. Anything else, or
//! a section the file names but does not hold, makes the whole file unusable: the broker
//! then logs to stderr and says why once.

use crate::config::IniDocument;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Why a loggers file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileConfigError {
    #[error("{0}")]
    Syntax(String),
    #[error("no [{0}] section")]
    MissingSection(String),
    #[error("[{section}] has no {key}")]
    MissingKey { section: String, key: String },
    #[error("[{section}] {key} = {value:?}: {reason}")]
    BadValue {
        section: String,
        key: String,
        value: String,
        reason: String,
    },
    #[error("no root logger ([loggers] keys must name root)")]
    NoRoot,
}

/// Python's logging levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PyLevel {
    NotSet = 0,
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
    Critical = 50,
}

impl PyLevel {
    /// `DEBUG`, `INFO`, `WARNING` (also `WARN`), `ERROR`, `CRITICAL` (also `FATAL`),
    /// `NOTSET`, or a number, as fileConfig accepts them.
    pub fn parse(text: &str) -> Option<PyLevel> {
        let trimmed = text.trim();
        if let Ok(number) = trimmed.parse::<u32>() {
            return Some(match number {
                0 => PyLevel::NotSet,
                1..=10 => PyLevel::Debug,
                11..=20 => PyLevel::Info,
                21..=30 => PyLevel::Warning,
                31..=40 => PyLevel::Error,
                _ => PyLevel::Critical,
            });
        }
        match trimmed.to_ascii_uppercase().as_str() {
            "NOTSET" => Some(PyLevel::NotSet),
            "DEBUG" => Some(PyLevel::Debug),
            "INFO" => Some(PyLevel::Info),
            "WARNING" | "WARN" => Some(PyLevel::Warning),
            "ERROR" => Some(PyLevel::Error),
            "CRITICAL" | "FATAL" => Some(PyLevel::Critical),
            _ => None,
        }
    }

    /// The level's name as `%(levelname)s` prints it.
    pub fn name(self) -> &'static str {
        match self {
            PyLevel::NotSet => "NOTSET",
            PyLevel::Debug => "DEBUG",
            PyLevel::Info => "INFO",
            PyLevel::Warning => "WARNING",
            PyLevel::Error => "ERROR",
            PyLevel::Critical => "CRITICAL",
        }
    }

    /// The tracing level an event of this level has, and back.
    pub fn of(level: tracing::Level) -> PyLevel {
        match level {
            tracing::Level::ERROR => PyLevel::Error,
            tracing::Level::WARN => PyLevel::Warning,
            tracing::Level::INFO => PyLevel::Info,
            tracing::Level::DEBUG | tracing::Level::TRACE => PyLevel::Debug,
        }
    }
}

/// Where a handler writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    File(PathBuf),
    Stderr,
    Stdout,
    Null,
}

/// The widest field a format may ask for (`%(message)65535s`): Rust's formatting machinery
/// pads to at most `u16::MAX` characters and panics beyond, and no log line needs more.
pub const MAX_FIELD_WIDTH: usize = u16::MAX as usize;

/// One piece of a `%`-format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Field {
        field: Field,
        left_align: bool,
        width: usize,
    },
}

/// The record attributes a format may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Asctime,
    Name,
    Levelname,
    Levelno,
    Message,
    Process,
    Msecs,
    Created,
    Filename,
    Pathname,
    Module,
    Lineno,
    FuncName,
    ThreadName,
}

impl Field {
    fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "asctime" => Field::Asctime,
            "name" => Field::Name,
            "levelname" => Field::Levelname,
            "levelno" => Field::Levelno,
            "message" => Field::Message,
            "process" => Field::Process,
            "msecs" => Field::Msecs,
            "created" => Field::Created,
            "filename" => Field::Filename,
            "pathname" => Field::Pathname,
            "module" => Field::Module,
            "lineno" => Field::Lineno,
            "funcName" => Field::FuncName,
            "threadName" => Field::ThreadName,
            _ => return None,
        })
    }
}

/// A formatter: its `format` split into pieces and its `datefmt` (`None`: Python's
/// `%Y-%m-%d %H:%M:%S,mmm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub pieces: Vec<Piece>,
    pub datefmt: Option<String>,
}

impl Default for Format {
    /// Python's default formatter: `%(message)s`.
    fn default() -> Format {
        Format {
            pieces: vec![Piece::Field {
                field: Field::Message,
                left_align: false,
                width: 0,
            }],
            datefmt: None,
        }
    }
}

impl Format {
    /// The reference's format: `%(asctime)s - %(name)s - %(levelname)s - %(message)s`.
    pub fn reference() -> Format {
        parse_format("%(asctime)s - %(name)s - %(levelname)s - %(message)s", "")
            .expect("the reference's format parses")
    }
}

/// A handler: where, from which level, in which format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    pub name: String,
    pub target: Target,
    pub level: PyLevel,
    pub format: Format,
}

/// A logger: its name (`root` or its qualname), level and handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logger {
    pub name: String,
    pub level: PyLevel,
    pub handlers: Vec<String>,
    pub propagate: bool,
}

/// A whole loggers file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// By name; `root` is always there.
    pub loggers: BTreeMap<String, Logger>,
    pub handlers: BTreeMap<String, Handler>,
}

impl fmt::Display for Target {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::File(path) => write!(formatter, "{}", path.display()),
            Target::Stderr => formatter.write_str("stderr"),
            Target::Stdout => formatter.write_str("stdout"),
            Target::Null => formatter.write_str("nowhere"),
        }
    }
}

/// `keys=a, b` of a list section.
fn keys(document: &IniDocument, section: &str) -> Result<Vec<String>, FileConfigError> {
    let list = document
        .section(section)
        .ok_or_else(|| FileConfigError::MissingSection(section.to_string()))?;
    let value = lookup(list, "keys").ok_or_else(|| FileConfigError::MissingKey {
        section: section.to_string(),
        key: "keys".to_string(),
    })?;
    Ok(split_list(value))
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// A key, ignoring case (ConfigParser lower-cases option names).
fn lookup<'a>(section: &'a crate::config::ini::Section, key: &str) -> Option<&'a str> {
    section
        .entries
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
        .map(|(_, value)| value.as_str())
}

fn section<'a>(
    document: &'a IniDocument,
    name: &str,
) -> Result<&'a crate::config::ini::Section, FileConfigError> {
    document
        .section(name)
        .ok_or_else(|| FileConfigError::MissingSection(name.to_string()))
}

fn bad_value(section: &str, key: &str, value: &str, reason: &str) -> FileConfigError {
    FileConfigError::BadValue {
        section: section.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// A `%`-format string (`%(name)s`, `%(name)-8s`, `%(lineno)d`, `%%`).
pub fn parse_format(format: &str, datefmt: &str) -> Result<Format, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(position) = rest.find('%') {
        text.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        if let Some(stripped) = after.strip_prefix('%') {
            text.push('%');
            rest = stripped;
            continue;
        }
        let Some(inner) = after.strip_prefix('(') else {
            return Err(format!("a % at byte {position} is neither %% nor %(name)s"));
        };
        let Some(close) = inner.find(')') else {
            return Err("an unclosed %(".to_string());
        };
        let name = &inner[..close];
        let field = Field::from_name(name).ok_or_else(|| format!("unknown field %({name})"))?;
        let mut spec = &inner[close + 1..];
        let left_align = spec.starts_with('-');
        spec = spec.trim_start_matches(['-', '0', ' ', '+', '#']);
        let digits = spec.len() - spec.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let width = match &spec[..digits] {
            "" => 0,
            written => written
                .parse::<usize>()
                .ok()
                .filter(|width| *width <= MAX_FIELD_WIDTH)
                .ok_or_else(|| {
                    format!("%({name}) width {written} is more than {MAX_FIELD_WIDTH}")
                })?,
        };
        spec = &spec[digits..];
        if let Some(precision) = spec.strip_prefix('.') {
            spec = precision.trim_start_matches(|c: char| c.is_ascii_digit());
        }
        let Some(conversion) = spec.chars().next() else {
            return Err(format!("%({name}) has no conversion character"));
        };
        if !matches!(conversion, 's' | 'd' | 'i' | 'f' | 'r') {
            return Err(format!(
                "%({name}){conversion} is not a supported conversion"
            ));
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Field {
            field,
            left_align,
            width,
        });
        rest = &spec[conversion.len_utf8()..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    let datefmt = Some(datefmt.trim().to_string()).filter(|datefmt| !datefmt.is_empty());
    if let Some(pattern) = &datefmt {
        let invalid = chrono::format::StrftimeItems::new(pattern)
            .any(|item| matches!(item, chrono::format::Item::Error));
        if invalid {
            return Err(format!("datefmt {pattern:?} is not a strftime pattern"));
        }
    }
    Ok(Format { pieces, datefmt })
}

/// The target of `class` with `args` (a Python tuple literal).
fn handler_target(class: &str, args: &str) -> Result<Target, String> {
    let class_name = class
        .trim()
        .trim_start_matches("logging.")
        .trim_start_matches("handlers.");
    let arguments = tuple_items(args)?;
    match class_name {
        "FileHandler"
        | "WatchedFileHandler"
        | "RotatingFileHandler"
        | "TimedRotatingFileHandler" => {
            let first = arguments
                .first()
                .ok_or_else(|| "a file handler needs the file name in args".to_string())?;
            let path = string_literal(first)
                .ok_or_else(|| format!("{first} is not a quoted file name"))?;
            if path.is_empty() {
                return Err("the file name is empty".to_string());
            }
            Ok(Target::File(PathBuf::from(path)))
        }
        "StreamHandler" => match arguments.first().map(String::as_str) {
            None | Some("sys.stderr") => Ok(Target::Stderr),
            Some("sys.stdout") => Ok(Target::Stdout),
            Some(other) => Err(format!("stream {other} is not sys.stderr or sys.stdout")),
        },
        "NullHandler" => Ok(Target::Null),
        other => Err(format!("handler class {other} is not supported")),
    }
}

/// The items of `(a, 'b', )`, unquoted strings kept with their quotes.
fn tuple_items(text: &str) -> Result<Vec<String>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let inner = trimmed
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| format!("{trimmed} is not a tuple"))?;
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for character in inner.chars() {
        match quote {
            Some(open) => {
                current.push(character);
                if character == open {
                    quote = None;
                }
            }
            None if character == '\'' || character == '"' => {
                quote = Some(character);
                current.push(character);
            }
            None if character == ',' => {
                items.push(current.trim().to_string());
                current.clear();
            }
            None => current.push(character),
        }
    }
    if quote.is_some() {
        return Err("an unclosed quote".to_string());
    }
    if !current.trim().is_empty() {
        items.push(current.trim().to_string());
    }
    Ok(items)
}

/// `'text'` or `"text"` without escapes.
fn string_literal(item: &str) -> Option<String> {
    let mut characters = item.chars();
    let open = characters.next()?;
    if open != '\'' && open != '"' {
        return None;
    }
    let inner = item[1..].strip_suffix(open)?;
    (!inner.contains(open) && !inner.contains('\\')).then(|| inner.to_string())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

impl FileConfig {
    /// Parses a loggers file; any problem makes the whole file unusable.
    pub fn parse(text: &str) -> Result<FileConfig, FileConfigError> {
        let document =
            IniDocument::parse(text).map_err(|error| FileConfigError::Syntax(error.to_string()))?;
        let logger_keys = keys(&document, "loggers")?;
        let mut formats = BTreeMap::new();
        if document.section("formatters").is_some() {
            for key in keys(&document, "formatters")? {
                let name = format!("formatter_{key}");
                let formatter = section(&document, &name)?;
                let format = lookup(formatter, "format").unwrap_or("%(message)s");
                let datefmt = lookup(formatter, "datefmt").unwrap_or("");
                let parsed = parse_format(format, datefmt)
                    .map_err(|reason| bad_value(&name, "format", format, &reason))?;
                formats.insert(key, parsed);
            }
        }
        let mut handlers = BTreeMap::new();
        for key in keys(&document, "handlers")? {
            let name = format!("handler_{key}");
            let handler = section(&document, &name)?;
            let class = lookup(handler, "class").ok_or_else(|| FileConfigError::MissingKey {
                section: name.clone(),
                key: "class".to_string(),
            })?;
            let args = lookup(handler, "args").unwrap_or("()");
            let target = handler_target(class, args)
                .map_err(|reason| bad_value(&name, "args", args, &reason))?;
            let level = match lookup(handler, "level") {
                Some(value) => PyLevel::parse(value)
                    .ok_or_else(|| bad_value(&name, "level", value, "not a logging level"))?,
                None => PyLevel::NotSet,
            };
            let format = match lookup(handler, "formatter").map(str::trim) {
                Some(formatter) if !formatter.is_empty() => formats
                    .get(formatter)
                    .cloned()
                    .ok_or_else(|| bad_value(&name, "formatter", formatter, "no such formatter"))?,
                _ => Format::default(),
            };
            handlers.insert(
                key.clone(),
                Handler {
                    name: key,
                    target,
                    level,
                    format,
                },
            );
        }
        let mut loggers = BTreeMap::new();
        for key in logger_keys {
            let name = format!("logger_{key}");
            let logger = section(&document, &name)?;
            let level = match lookup(logger, "level") {
                Some(value) => PyLevel::parse(value)
                    .ok_or_else(|| bad_value(&name, "level", value, "not a logging level"))?,
                None => PyLevel::NotSet,
            };
            let handler_names = split_list(lookup(logger, "handlers").unwrap_or(""));
            if let Some(unknown) = handler_names
                .iter()
                .find(|handler| !handlers.contains_key(*handler))
            {
                return Err(bad_value(&name, "handlers", unknown, "no such handler"));
            }
            let is_root = key == "root";
            let qualname = if is_root {
                "root".to_string()
            } else {
                lookup(logger, "qualname")
                    .map(str::trim)
                    .filter(|qualname| !qualname.is_empty())
                    .ok_or_else(|| FileConfigError::MissingKey {
                        section: name.clone(),
                        key: "qualname".to_string(),
                    })?
                    .to_string()
            };
            let propagate = match lookup(logger, "propagate") {
                Some(value) => parse_bool(value)
                    .ok_or_else(|| bad_value(&name, "propagate", value, "not 0 or 1"))?,
                None => true,
            };
            loggers.insert(
                qualname.clone(),
                Logger {
                    name: qualname,
                    level,
                    handlers: handler_names,
                    propagate,
                },
            );
        }
        if !loggers.contains_key("root") {
            return Err(FileConfigError::NoRoot);
        }
        Ok(FileConfig { loggers, handlers })
    }

    /// Every file a handler names, once each.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .handlers
            .values()
            .filter_map(|handler| match &handler.target {
                Target::File(path) => Some(path.clone()),
                _ => None,
            })
            .collect();
        files.sort();
        files.dedup();
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file Debian's x2gobroker-common 0.0.4.3 installs, comments left out.
    pub const REFERENCE_FILE: &str = "[loggers]\nkeys=root,broker,access,error\n\n[logger_root]\nlevel=NOTSET\nhandlers=stderrHandler\n\n[handlers]\nkeys=stderrHandler,brokerFileHandler,accessFileHandler,errorFileHandler\n\n[formatters]\nkeys=brokerFormatter,accessFormatter,errorFormatter\n\n[handler_stderrHandler]\nclass=StreamHandler\nargs=(sys.stderr,)\n\n[logger_broker]\nlevel=WARNING\nhandlers=brokerFileHandler\nqualname=broker\npropagate=0\n\n[handler_brokerFileHandler]\nclass=FileHandler\nformatter=brokerFormatter\nargs=('/var/log/x2gobroker/broker.log',)\n\n[formatter_brokerFormatter]\nformat=%(asctime)s - %(name)s - %(levelname)s - %(message)s\ndatefmt=\n\n[logger_access]\nlevel=WARNING\nhandlers=accessFileHandler\nqualname=access\npropagate=0\n\n[handler_accessFileHandler]\nclass=FileHandler\nformatter=accessFormatter\nargs=('/var/log/x2gobroker/access.log',)\n\n[formatter_accessFormatter]\nformat=%(asctime)s - %(name)s - %(levelname)s - %(message)s\ndatefmt=\n\n[logger_error]\nlevel=WARNING\nhandlers=errorFileHandler\nqualname=error\npropagate=0\n\n[handler_errorFileHandler]\nclass=FileHandler\nformatter=accessFormatter\nargs=('/var/log/x2gobroker/error.log',)\n\n[formatter_errorFormatter]\nformat=%(asctime)s - %(name)s - %(levelname)s - %(message)s\ndatefmt=\n";

    #[test]
    fn the_reference_file() {
        let config = FileConfig::parse(REFERENCE_FILE).unwrap();
        assert_eq!(
            config.files(),
            [
                PathBuf::from("/var/log/x2gobroker/access.log"),
                PathBuf::from("/var/log/x2gobroker/broker.log"),
                PathBuf::from("/var/log/x2gobroker/error.log"),
            ]
        );
        let access = &config.loggers["access"];
        assert_eq!(access.level, PyLevel::Warning);
        assert_eq!(access.handlers, ["accessFileHandler"]);
        assert!(!access.propagate);
        assert_eq!(config.loggers["root"].level, PyLevel::NotSet);
        assert_eq!(
            config.handlers["stderrHandler"].target,
            Target::Stderr,
            "the root logger writes to stderr"
        );
        assert_eq!(
            config.handlers["errorFileHandler"].format,
            Format::reference()
        );
        assert_eq!(config.handlers["stderrHandler"].format, Format::default());
    }

    #[test]
    fn the_shipped_example_is_the_references_file() {
        let shipped = FileConfig::parse(include_str!("../../../etc/x2gobroker-loggers.conf"))
            .expect("etc/x2gobroker-loggers.conf parses");
        assert_eq!(shipped, FileConfig::parse(REFERENCE_FILE).unwrap());
    }

    #[test]
    fn formats() {
        let format = parse_format("%(levelname)-8s|%(lineno)d %%%(message)s.", "").unwrap();
        assert_eq!(
            format.pieces,
            [
                Piece::Field {
                    field: Field::Levelname,
                    left_align: true,
                    width: 8
                },
                Piece::Text("|".to_string()),
                Piece::Field {
                    field: Field::Lineno,
                    left_align: false,
                    width: 0
                },
                Piece::Text(" %".to_string()),
                Piece::Field {
                    field: Field::Message,
                    left_align: false,
                    width: 0
                },
                Piece::Text(".".to_string()),
            ]
        );
        assert_eq!(
            parse_format("%(asctime)s", "%d.%m.%Y").unwrap().datefmt,
            Some("%d.%m.%Y".to_string())
        );
        for (bad, expected) in [
            ("%(user)s", "unknown field"),
            ("%(message", "unclosed"),
            ("%(message)", "no conversion"),
            ("%(message)x", "not a supported conversion"),
            ("100% sure", "neither"),
        ] {
            let error = parse_format(bad, "").unwrap_err();
            assert!(error.contains(expected), "{bad}: {error}");
        }
        assert!(parse_format("%(asctime)s", "%Q")
            .unwrap_err()
            .contains("strftime"));
    }

    #[test]
    fn field_widths_beyond_what_rust_can_pad_are_refused() {
        let widest = parse_format(&format!("%(message)-{MAX_FIELD_WIDTH}s"), "").unwrap();
        assert_eq!(
            widest.pieces,
            [Piece::Field {
                field: Field::Message,
                left_align: true,
                width: MAX_FIELD_WIDTH
            }]
        );
        for bad in [
            "%(message)65536s",
            "%(message)99999s",
            "%(name)-99999999999999999999999999s",
        ] {
            let error = parse_format(bad, "").unwrap_err();
            assert!(error.contains("is more than 65535"), "{bad}: {error}");
        }
        let file = REFERENCE_FILE.replace(
            "format=%(asctime)s - %(name)s",
            "format=%(asctime)99999s - %(name)s",
        );
        assert!(
            matches!(
                FileConfig::parse(&file),
                Err(FileConfigError::BadValue { ref key, .. }) if key == "format"
            ),
            "{:?}",
            FileConfig::parse(&file)
        );
    }

    #[test]
    fn handler_arguments() {
        for (class, args, expected) in [
            (
                "FileHandler",
                "('/var/log/a.log',)",
                Ok(Target::File("/var/log/a.log".into())),
            ),
            (
                "FileHandler",
                "(\"/var/log/a.log\", 'a')",
                Ok(Target::File("/var/log/a.log".into())),
            ),
            (
                "handlers.WatchedFileHandler",
                "('/l, with comma.log',)",
                Ok(Target::File("/l, with comma.log".into())),
            ),
            ("StreamHandler", "(sys.stdout,)", Ok(Target::Stdout)),
            ("StreamHandler", "()", Ok(Target::Stderr)),
            ("logging.NullHandler", "", Ok(Target::Null)),
        ] {
            assert_eq!(
                handler_target(class, args),
                expected.map_err(|_: ()| String::new()),
                "{class} {args}"
            );
        }
        for (class, args) in [
            ("FileHandler", "()"),
            ("FileHandler", "(LOGFILE,)"),
            ("FileHandler", "('',)"),
            ("FileHandler", "('/unclosed,)"),
            ("FileHandler", "'/no/tuple'"),
            ("handlers.SysLogHandler", "('/dev/log',)"),
            ("StreamHandler", "(open('/x'),)"),
        ] {
            assert!(handler_target(class, args).is_err(), "{class} {args}");
        }
    }

    #[test]
    fn broken_files_are_one_error_each() {
        let cases = [
            ("[loggers]\nkeys=root\n", "no [handlers] section"),
            (
                "[loggers]\nkeys=root\n[handlers]\nkeys=h\n[logger_root]\nhandlers=h\n",
                "no [handler_h] section",
            ),
            (
                "[loggers]\nkeys=root\n[handlers]\nkeys=h\n[handler_h]\nclass=FileHandler\nargs=('/x',)\n[logger_root]\nhandlers=other\n",
                "no such handler",
            ),
            (
                "[loggers]\nkeys=broker\n[handlers]\nkeys=\n[logger_broker]\nqualname=broker\n",
                "no root logger",
            ),
            (
                "[loggers]\nkeys=root,a\n[handlers]\nkeys=\n[logger_root]\n[logger_a]\nlevel=LOUD\nqualname=a\n",
                "not a logging level",
            ),
            (
                "[loggers]\nkeys=root,a\n[handlers]\nkeys=\n[logger_root]\n[logger_a]\nlevel=INFO\n",
                "has no qualname",
            ),
            ("no sections at all\n", "syntax"),
        ];
        for (text, expected) in cases {
            let error = FileConfig::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn levels() {
        for (text, level) in [
            ("WARNING", Some(PyLevel::Warning)),
            ("warn", Some(PyLevel::Warning)),
            (" DEBUG ", Some(PyLevel::Debug)),
            ("0", Some(PyLevel::NotSet)),
            ("25", Some(PyLevel::Warning)),
            ("FATAL", Some(PyLevel::Critical)),
            ("loud", None),
        ] {
            assert_eq!(PyLevel::parse(text), level, "{text}");
        }
    }
}
