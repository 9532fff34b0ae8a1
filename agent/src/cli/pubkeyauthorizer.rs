//! The command line of `x2gobroker-pubkeyauthorizer` (clap), in the library so that the man page generator
//! renders it.

use clap::Parser;

/// X2Go Session Broker (PubKey Installer)
#[derive(Debug, Parser)]
#[command(name = "x2gobroker-pubkeyauthorizer", version)]
pub struct Cli {
    /// The URL of the X2Go Session Broker that we want to retrieve public keys from. The common pattern for this URL is http(s)://<broker_hostname>:<port>/pubkeys/ (a URL without a path gets /pubkeys/).
    #[arg(
        short = 't',
        long = "broker-url",
        visible_short_alias = 'b',
        value_name = "BROKER_URL",
        help_heading = "common parameters"
    )]
    pub broker_url: Option<String>,
}
