//! `x2gobroker-daemon`: the broker in HTTP mode (the same program as `x2gobroker -M HTTP`).

use clap::{CommandFactory, Parser};

fn main() {
    let cli = x2gobroker::cli::Cli::parse();
    if let Some(code) = x2gobroker::app::refuse_setuid_misuse(&cli, true) {
        std::process::exit(code);
    }
    let startup =
        x2gobroker::app::startup_settings(x2gobroker::app::command_line(&cli), "x2gobroker-daemon");
    let logging = x2gobroker::app::init_logging(&cli, &startup);
    let usage = x2gobroker::cli::Cli::command().render_usage().to_string();
    std::process::exit(x2gobroker::app::run(cli, startup, logging, true, usage));
}
