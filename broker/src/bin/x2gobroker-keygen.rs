//! `x2gobroker-keygen`: make the broker's SSH key pair in the daemon user's `~/.ssh` (the reference's tool).

use clap::Parser;
use x2gobroker::cli::keygen::Cli;

fn main() {
    let cli = Cli::parse();
    std::process::exit(x2gobroker::keygen::run_tool(&cli.key_type, cli.force));
}
