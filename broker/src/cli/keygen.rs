//! The command line of `x2gobroker-keygen` (clap), in the library so that the man page generator renders it.

use clap::Parser;

/// X2Go Session Broker (Key Generator)
#[derive(Debug, Parser)]
#[command(name = "x2gobroker-keygen", version)]
pub struct Cli {
    /// Choose a key type for the X2Go Session Broker pub/priv SSH key pair (available: RSA, DSA).
    #[arg(
        short = 't',
        long = "key-type",
        help_heading = "common parameters",
        visible_alias = "key_type",
        value_name = "KEY_TYPE",
        default_value = "RSA"
    )]
    pub key_type: String,
    /// Enforce the creation of a public/private key pair. WARNING: This will overwrite earlier created keys.
    #[arg(short = 'f', long = "force", help_heading = "common parameters")]
    pub force: bool,
}
