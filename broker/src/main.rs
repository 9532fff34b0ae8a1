//! `x2gobroker`: the SSH broker mode by default, the HTTP daemon with `-M HTTP` (or as `x2gobroker-daemon`).

use clap::{CommandFactory, Parser};

fn main() {
    let invoked_as_daemon = std::env::args()
        .next()
        .map(|argv0| argv0.ends_with("x2gobroker-daemon"))
        .unwrap_or(false);
    std::process::exit(x2gobroker_main(invoked_as_daemon));
}

fn x2gobroker_main(invoked_as_daemon: bool) -> i32 {
    let cli = x2gobroker::cli::Cli::parse();
    x2gobroker::logging::init(x2gobroker::app::debug_enabled(&cli));
    let usage = x2gobroker::cli::Cli::command().render_usage().to_string();
    x2gobroker::app::run(cli, invoked_as_daemon, usage)
}
