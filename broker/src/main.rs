//! `x2gobroker`: the SSH broker mode by default, the HTTP daemon with `-M HTTP` (or as `x2gobroker-daemon`).

use clap::{CommandFactory, Parser};

fn main() {
    let program = std::env::args()
        .next()
        .unwrap_or_else(|| "x2gobroker".to_string());
    std::process::exit(x2gobroker_main(&program));
}

fn x2gobroker_main(program: &str) -> i32 {
    let cli = x2gobroker::cli::Cli::parse();
    let invoked_as_daemon = program.ends_with("x2gobroker-daemon");
    if let Some(code) = x2gobroker::app::refuse_setuid_misuse(&cli, invoked_as_daemon) {
        return code;
    }
    let startup = x2gobroker::app::startup_settings(x2gobroker::app::command_line(&cli), program);
    let logging = x2gobroker::app::init_logging(&cli, &startup);
    let usage = x2gobroker::cli::Cli::command().render_usage().to_string();
    x2gobroker::app::run(cli, startup, logging, invoked_as_daemon, usage)
}
