//! `x2gobroker-ctl`: thin main of the admin API's command-line client (`ctl.rs`).

use clap::Parser;
use x2gobroker::ctl::{self, Cli};

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("x2gobroker-ctl: {error}");
            std::process::exit(ctl::EXIT_UNREACHABLE);
        }
    };
    match runtime.block_on(ctl::run(&cli)) {
        Ok(text) => {
            println!("{text}");
            std::process::exit(ctl::EXIT_OK);
        }
        Err(failure) => {
            eprintln!("x2gobroker-ctl: {}", failure.message);
            std::process::exit(failure.code);
        }
    }
}
