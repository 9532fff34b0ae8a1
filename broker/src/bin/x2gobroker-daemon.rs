//! `x2gobroker-daemon`: the broker in HTTP mode (the same program as `x2gobroker -M HTTP`).

use clap::{CommandFactory, Parser};

fn main() {
    let cli = x2gobroker::cli::Cli::parse();
    x2gobroker::logging::init(x2gobroker::app::debug_enabled(&cli));
    let usage = x2gobroker::cli::Cli::command().render_usage().to_string();
    std::process::exit(x2gobroker::app::run(cli, true, usage));
}
