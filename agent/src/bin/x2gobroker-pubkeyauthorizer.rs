//! `x2gobroker-pubkeyauthorizer`: install a broker's `/pubkeys` forced-command lines in the agent account's authorized_keys (the reference's tool).

use clap::Parser;
use std::path::PathBuf;
use x2gobroker_agent::cli::pubkeyauthorizer::Cli;
use x2gobroker_agent::pubkeyauth::{self, KeyAction};

/// The reference's exit status when not run as root, or for an answer it refuses (`sys.exit(-1)`).
const EXIT_REFUSED: i32 = 255;
/// The reference's exit status without a URL or without the account's home (`sys.exit(-2)`).
const EXIT_SETUP: i32 = 254;

fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn fetch(url: &str) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|error| error.to_string())?;
        let mut response = client
            .get(url)
            .send()
            .await
            .map_err(|error| format!("{error:#}"))?;
        if !response.status().is_success() {
            return Err(format!("HTTP status {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| error.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > pubkeyauth::MAX_BODY_BYTES {
                return Err(format!(
                    "the answer is larger than {} bytes",
                    pubkeyauth::MAX_BODY_BYTES
                ));
            }
        }
        String::from_utf8(body).map_err(|_| "the answer is not UTF-8 text".to_string())
    })
}

fn main() {
    let cli = Cli::parse();
    let user_name = env_value("X2GOBROKER_DAEMON_USER").unwrap_or_else(|| "x2gobroker".into());
    let agent_command = env_value("X2GOBROKER_AGENT_CMD")
        .unwrap_or_else(|| pubkeyauth::DEFAULT_AGENT_COMMAND.to_string());
    eprintln!(
        "X2Go Session Broker (x2gobroker-rs {})",
        env!("CARGO_PKG_VERSION")
    );
    eprintln!("Setting up the \u{bb}PubKey Authorizer\u{ab}'s environment...");
    eprintln!("  X2GOBROKER_DAEMON_USER: {user_name}");
    eprintln!("  X2GOBROKER_AGENT_CMD: {agent_command}");
    if !nix::unistd::geteuid().is_root() {
        eprintln!("X2Go Session Broker's \u{bb}PubKey Authorizer\u{ab} has to run with root privileges. Exiting...");
        std::process::exit(EXIT_REFUSED);
    }
    let Some(given_url) = cli.broker_url else {
        eprintln!("Cannot proceed without having an URL specified. Use --broker-url as cmdline parameter.");
        eprintln!("Exiting...");
        std::process::exit(EXIT_SETUP);
    };
    let account = match x2gobroker_agent::users::lookup_user(&user_name) {
        Ok(Some(account)) if account.home.is_dir() => account,
        Ok(Some(account)) => {
            eprintln!(
                "The home directory {} of user {user_name} does not exist.",
                account.home.display()
            );
            eprintln!("Cannot continue. Exiting...");
            std::process::exit(EXIT_SETUP);
        }
        Ok(None) => {
            eprintln!("No such user {user_name:?} (X2GOBROKER_DAEMON_USER). Exiting...");
            std::process::exit(EXIT_SETUP);
        }
        Err(error) => {
            eprintln!("{error}. Exiting...");
            std::process::exit(EXIT_SETUP);
        }
    };
    let url = pubkeyauth::pubkeys_url(&given_url);
    eprintln!("Authorizing access to this X2Go server for X2Go Session Broker");
    eprintln!("at URL {url}");
    let body = match fetch(&url) {
        Ok(body) => body,
        Err(error) => {
            eprintln!("Cannot retrieve {url}: {error}. Exiting...");
            std::process::exit(1);
        }
    };
    let keys = match pubkeyauth::served_keys(&body, &agent_command) {
        Ok(keys) => keys,
        Err(refused) => {
            eprintln!(
                "The broker returned something that does not look like its SSH key lines ({refused})."
            );
            eprintln!("Check the URL {url}");
            eprintln!("manually from a webbrowser. Nothing was installed.");
            std::process::exit(EXIT_REFUSED);
        }
    };
    match keys.len() {
        0 => {
            eprintln!("  No public keys found at URL {url}");
            std::process::exit(0);
        }
        1 => eprintln!("  Found 1 public key at URL {url}"),
        count => eprintln!("  Found {count} public keys at URL {url}"),
    }
    let authorized_keys: PathBuf = account.home.join(".ssh").join("authorized_keys");
    let shown = authorized_keys.display();
    let existing = match std::fs::read_to_string(&authorized_keys) {
        Ok(content) => content,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            eprintln!("Cannot read {shown}: {error}. Exiting...");
            std::process::exit(1);
        }
    };
    let plan = pubkeyauth::plan(&existing, &keys);
    for (index, action) in plan.actions.iter().enumerate() {
        let counter = index + 1;
        match action {
            KeyAction::Add => {
                eprintln!("  Adding new public key (counter={counter}) to {shown}.")
            }
            KeyAction::AlreadyThere => {
                eprintln!("  Skipping new public key (counter={counter}), already in {shown}.")
            }
        }
    }
    for dropped in &plan.drop {
        let shortened: String = dropped.chars().take(60).collect();
        eprintln!(
            "  Dropping public key with deprecated or no options from {shown}: {shortened}..."
        );
    }
    if let Err(error) =
        x2gobroker_agent::authkeys::update_keys(&account, &authorized_keys, &plan.drop, &plan.add)
    {
        eprintln!("Cannot update {shown}: {error}. Exiting...");
        std::process::exit(1);
    }
    eprintln!("Completed successfully: X2Go Session Broker's PubKey Authorizer.");
}
