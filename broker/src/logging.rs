//! Logging set-up: tracing to stderr (the journal under systemd), `RUST_LOG` or debug switching the level.

/// Installs the global subscriber once; `debug` raises the default level to debug.
pub fn init(debug: bool) {
    let default_level = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
