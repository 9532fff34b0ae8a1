//! The loggers-file reader (`x2gobroker-loggers.conf`, Python `fileConfig`) and the `%`-format parser, each accepted format rendered into a log line.
//!
//! Input: a loggers file; its first line is also tried as a format, its second as that
//! format's `datefmt`.

use chrono::TimeZone;
use x2gobroker::logging::fileconfig::{
    parse_format, FileConfig, Format, Piece, PyLevel, MAX_FIELD_WIDTH,
};
use x2gobroker::logging::{format_line, Record};

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

/// Padding beyond this many characters in one line is not rendered (only to keep each run
/// fast; every width up to [`MAX_FIELD_WIDTH`] is still checked to be accepted).
const RENDERED_WIDTH_BUDGET: usize = 1 << 20;

/// Renders a line of `format` for a fixed event: one line, newline-terminated, no panic.
fn render(format: &Format) {
    let mut total_width = 0;
    for piece in &format.pieces {
        if let Piece::Field { width, .. } = piece {
            assert!(*width <= MAX_FIELD_WIDTH, "width {width} accepted");
            total_width += width;
        }
    }
    if total_width > RENDERED_WIDTH_BUDGET {
        return;
    }
    let now = chrono::Local
        .timestamp_opt(1_796_000_000, 783_000_000)
        .single()
        .unwrap_or_default();
    let record = Record {
        name: "access",
        level: PyLevel::Warning,
        message: "401 POST /plain/ (127.0.0.1) user=\"a\nb\"",
        metadata: &META,
        now,
    };
    let line = format_line(format, &record);
    let body = line.strip_suffix('\n').expect("a line ends with a newline");
    assert!(!body.contains('\n'), "a record spans lines: {line:?}");
}

/// Parses the text as a loggers file and its first lines as a format.
pub fn loggers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(config) = FileConfig::parse(&text) {
        assert!(config.loggers.contains_key("root"));
        for logger in config.loggers.values() {
            for handler in &logger.handlers {
                assert!(config.handlers.contains_key(handler), "{handler} unknown");
            }
        }
        let _ = config.files();
        for handler in config.handlers.values() {
            render(&handler.format);
        }
    }
    let mut lines = text.splitn(3, '\n');
    let format = lines.next().unwrap_or_default();
    let datefmt = lines.next().unwrap_or_default();
    if let Ok(format) = parse_format(format, datefmt) {
        render(&format);
    }
}
