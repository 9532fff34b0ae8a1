//! `x2gobroker-keygen`: make the broker's SSH key pair in the daemon user's `~/.ssh` (the reference's tool).

use clap::Parser;

/// X2Go Session Broker (Key Generator)
#[derive(Debug, Parser)]
#[command(name = "x2gobroker-keygen", version)]
struct Cli {
    /// Choose a key type for the X2Go Session Broker pub/priv SSH key pair (available: RSA, DSA).
    #[arg(
        short = 't',
        long = "key-type",
        help_heading = "common parameters",
        visible_alias = "key_type",
        value_name = "KEY_TYPE",
        default_value = "RSA"
    )]
    key_type: String,
    /// Enforce the creation of a public/private key pair. WARNING: This will overwrite earlier created keys.
    #[arg(short = 'f', long = "force", help_heading = "common parameters")]
    force: bool,
}

fn main() {
    let cli = Cli::parse();
    std::process::exit(x2gobroker::keygen::run_tool(&cli.key_type, cli.force));
}
