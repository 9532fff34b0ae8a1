//! `x2gobroker-authservice`: the root PAM service the unprivileged broker asks over a unix socket
//! (§6.4). Parses the reference's command line, sets up logging and the socket, serves until
//! SIGTERM/SIGINT; SIGHUP is logged and changes nothing. Exit codes: 0 after a clean shutdown, 64 unusable command line or socket, 1 runtime failure.

#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use tokio::signal::unix::{signal, SignalKind};
use x2gobroker_authservice::{pam_check, protocol, server, socket};

/// PAM authentication service for the X2Go session broker.
#[derive(Debug, Parser)]
#[command(name = "x2gobroker-authservice", version)]
struct Cli {
    /// The unix socket [default: $X2GOBROKER_AUTHSERVICE_SOCKET, else /run/x2gobroker/x2gobroker-authservice.socket].
    #[arg(short = 's', long = "socket-file", value_name = "AUTHSOCKET")]
    socket: Option<PathBuf>,
    /// Owner of the socket.
    #[arg(short = 'o', long = "owner", default_value = "root")]
    owner: String,
    /// Group of the socket (the broker's group); if it does not exist, the owner's group is kept.
    #[arg(short = 'g', long = "group", default_value = "x2gobroker")]
    group: String,
    /// Permissions of the socket, octal (0660, 660 or 0o660).
    #[arg(short = 'p', long = "permissions", default_value = "0660")]
    permissions: String,
    /// A PAM service requests may name (repeat for more; replaces the default `x2gobroker`).
    /// Others are answered `fail`.
    #[arg(short = 'a', long = "allow-service", value_name = "SERVICE")]
    allowed_services: Vec<String>,
    /// Debug logging.
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Accepted for compatibility with the reference (logs always go to stderr).
    #[arg(short = 'i', long = "debug-interactively")]
    debug_interactively: bool,
}

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
        let listener = match socket::bind(&options) {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("x2gobroker-authservice: {error}");
                return 64;
            }
        };
        tracing::info!(socket = %options.path.display(), services = ?allowed_services,
            "x2gobroker-authservice listening");
        server::serve(
            listener,
            pam_check::check,
            server::Options {
                limits: server::Limits::default(),
                allowed_services,
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
