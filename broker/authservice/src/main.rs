//! `x2gobroker-authservice`: the root PAM service the unprivileged broker asks over a unix socket
//! (§6.4). Parses the reference's command line, sets up logging and the socket, serves until
//! SIGTERM/SIGINT; SIGHUP is logged and changes nothing. Exit codes: 0 after a clean shutdown, 64 unusable command line or socket, 1 runtime failure.

#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use x2gobroker_authservice::accounts::{self, AccountPolicy};
use x2gobroker_authservice::cli::Cli;
use x2gobroker_authservice::peer::PeerPolicy;
use x2gobroker_authservice::throttle::ThrottleConfig;
use x2gobroker_authservice::{protocol, server, socket};

fn init_logging(debug: bool) {
    let level = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// SIGHUP: there is nothing to read again (the options are the command line, and PAM reads
/// `/etc/pam.d` on every check); the service logs that and goes on serving.
async fn answer_hangups(mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        tracing::info!(
            "SIGHUP: nothing to reload (options come from the command line, PAM reads /etc/pam.d on every check); still serving"
        );
    }
}

async fn shutdown_signal() {
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.debug || cli.debug_interactively);
    let path = cli
        .socket
        .clone()
        .or_else(|| {
            std::env::var_os("X2GOBROKER_AUTHSERVICE_SOCKET")
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(socket::DEFAULT_SOCKET));
    let mode = match socket::parse_mode(&cli.permissions) {
        Ok(mode) => mode,
        Err(error) => {
            eprintln!("x2gobroker-authservice: {error}");
            std::process::exit(64);
        }
    };
    let allowed_services = if cli.allowed_services.is_empty() {
        server::Options::default().allowed_services
    } else {
        cli.allowed_services.clone()
    };
    if let Some(bad) = allowed_services
        .iter()
        .find(|service| !protocol::is_valid_service(service))
    {
        eprintln!("x2gobroker-authservice: PAM service names are [A-Za-z0-9._-]+, not {bad:?}");
        std::process::exit(64);
    }
    if cli.max_failures_per_user == 0 || cli.failure_window_secs == 0 {
        eprintln!(
            "x2gobroker-authservice: --max-failures-per-user and --failure-window-secs must be greater than zero"
        );
        std::process::exit(64);
    }
    let throttle = ThrottleConfig {
        max_failures: cli.max_failures_per_user,
        window: Duration::from_secs(cli.failure_window_secs),
        lockout: Duration::from_secs(cli.lockout_secs),
        ..ThrottleConfig::default()
    };
    let account_policy = AccountPolicy {
        system_uid_max: accounts::read_system_uid_max(std::path::Path::new(accounts::LOGIN_DEFS)),
        allowed_system_users: cli.allowed_system_users.clone(),
    };
    let options = socket::SocketOptions {
        path,
        owner: cli.owner.clone(),
        group: cli.group.clone(),
        mode,
    };
    if !nix::unistd::geteuid().is_root() {
        tracing::warn!("not running as root: PAM can only check the password of this very user");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("x2gobroker-authservice: {error}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async {
        // SIGHUP never kills the service (logrotate, `systemctl reload`): handled before the
        // socket exists
        let hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                eprintln!("x2gobroker-authservice: cannot handle SIGHUP: {error}");
                return 1;
            }
        };
        tokio::spawn(answer_hangups(hangups));
        let bound = match socket::bind(&options) {
            Ok(bound) => bound,
            Err(error) => {
                eprintln!("x2gobroker-authservice: {error}");
                return 64;
            }
        };
        let peers = PeerPolicy {
            owner_uid: bound.owner_uid,
            group_gid: bound.group_gid,
        };
        tracing::info!(socket = %options.path.display(), services = ?allowed_services,
            owner_uid = peers.owner_uid, group_gid = peers.group_gid,
            system_uid_max = account_policy.system_uid_max,
            allowed_system_users = ?account_policy.allowed_system_users,
            max_failures_per_user = throttle.max_failures,
            "x2gobroker-authservice listening");
        server::serve(
            bound.listener,
            server::System::real(),
            server::Options {
                limits: server::Limits::default(),
                allowed_services,
                peers,
                accounts: account_policy,
                throttle,
            },
            shutdown_signal(),
        )
        .await;
        socket::remove(&options.path);
        tracing::info!("x2gobroker-authservice stopped");
        0
    });
    // Blocking PAM threads still sleeping out a failure delay must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
