//! `x2gobroker-testauth`: try one authentication through the configured mechanism and say why it failed.

use clap::Parser;
use std::io::BufRead;
use x2gobroker::auth::{self, Mechanism};
use x2gobroker::cli::testauth::Cli;
use x2gobroker::config::{Backend, BrokerConfig};

fn main() {
    let cli = Cli::parse();
    x2gobroker::logging::init(cli.debug);
    let command_line = x2gobroker::config::startup::CommandLine {
        config_file: cli.config_file.clone(),
        ..Default::default()
    };
    let mut settings = x2gobroker::app::startup_settings(command_line, "x2gobroker-testauth");
    let config_path = settings.config_file.clone();
    let text = std::fs::read_to_string(&config_path).unwrap_or_default();
    let config = match BrokerConfig::parse(&text) {
        Ok(config) => config,
        Err(error) => {
            println!("FAIL: {} cannot be parsed: {error}", config_path.display());
            std::process::exit(64);
        }
    };
    let Some(backend) = Backend::from_name(&cli.backend) else {
        println!("FAIL: unknown backend {:?}", cli.backend);
        std::process::exit(64);
    };
    let mechanism_name = config.backend(backend).auth_mech.clone();
    if cli.authservice_socket.is_some() {
        settings.authservice_socket = cli.authservice_socket.clone();
    }
    let socket = settings.authservice_socket(&config.global);
    let password = match &cli.password {
        Some(password) => password.clone(),
        None => {
            eprintln!("password for {} (read from standard input):", cli.user);
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            line.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    let mechanism =
        match Mechanism::from_settings(&mechanism_name, &config.https_get, settings.auth_timeout) {
            Ok(mechanism) => mechanism,
            Err(error) => {
                println!("FAIL: {error}");
                std::process::exit(64);
            }
        };
    println!("mechanism: {mechanism_name} (backend {})", backend.name());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let verdict: Result<bool, String> = runtime.block_on(async {
        match &mechanism {
            Mechanism::Pam => {
                println!("auth service socket: {}", socket.display());
                if cli.user.is_empty() || password.is_empty() {
                    return Err("PAM needs a user name and a password".to_string());
                }
                auth::authservice::authenticate(
                    &socket,
                    &cli.user,
                    &password,
                    auth::PAM_SERVICE,
                    settings.auth_timeout,
                )
                .await
                .map_err(|error| error.to_string())
            }
            Mechanism::HttpsGet(https) => {
                auth::https_get::authenticate(https, &cli.user, &password)
                    .await
                    .map_err(|error| error.to_string())
            }
            Mechanism::Unknown(name) => Err(format!("unknown mechanism {name:?}")),
            other => {
                let environment = auth::AuthEnvironment {
                    authservice_socket: socket.clone(),
                    timeout: settings.auth_timeout,
                };
                Ok(
                    auth::authenticate(other, &environment, &cli.user, &password)
                        .await
                        .granted(),
                )
            }
        }
    });
    match verdict {
        Ok(true) => println!("OK: {} authenticated", cli.user),
        Ok(false) => {
            println!(
                "FAIL: the mechanism refused {} (wrong password, unknown or locked user)",
                cli.user
            );
            std::process::exit(1);
        }
        Err(reason) => {
            println!("FAIL: {reason}");
            std::process::exit(1);
        }
    }
}
