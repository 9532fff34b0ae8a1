//! `x2gobroker-authservice`: the root PAM service the unprivileged broker asks over a unix socket (§6.4).

mod pam_check;
mod protocol;
mod server;

use clap::Parser;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// PAM authentication service for the X2Go session broker.
#[derive(Debug, Parser)]
#[command(name = "x2gobroker-authservice", version)]
struct Cli {
    /// The unix socket (default: $X2GOBROKER_AUTHSERVICE_SOCKET or /run/x2gobroker/x2gobroker-authservice.socket).
    #[arg(short = 's', long = "socket-file")]
    socket: Option<PathBuf>,
    /// Owner of the socket.
    #[arg(short = 'o', long = "owner", default_value = "root")]
    owner: String,
    /// Group of the socket (the broker's group).
    #[arg(short = 'g', long = "group", default_value = "x2gobroker")]
    group: String,
    /// Permissions of the socket, octal.
    #[arg(short = 'p', long = "permissions", default_value = "0660")]
    permissions: String,
    /// Debug logging.
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Accepted for compatibility (logs go to stderr).
    #[arg(short = 'i', long = "debug-interactively")]
    debug_interactively: bool,
}

const DEFAULT_SOCKET: &str = "/run/x2gobroker/x2gobroker-authservice.socket";

fn prepare_socket(cli: &Cli, path: &Path) -> Result<tokio::net::UnixListener, String> {
    let mode = u32::from_str_radix(cli.permissions.trim_start_matches("0o"), 8)
        .map_err(|_| format!("permissions {:?} are not octal", cli.permissions))?;
    let owner = nix::unistd::User::from_name(&cli.owner)
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("no such user {:?}", cli.owner))?;
    let group = match nix::unistd::Group::from_name(&cli.group)
        .map_err(|error| error.to_string())?
    {
        Some(group) => group.gid,
        None => {
            tracing::warn!(group = %cli.group, "no such group: the socket keeps the owner's group");
            owner.gid
        }
    };
    if let Some(directory) = path.parent() {
        if !directory.exists() {
            std::fs::create_dir_all(directory)
                .map_err(|error| format!("{}: {error}", directory.display()))?;
            // the directory gets the socket's mode with x added where r is set
            let directory_mode = mode | ((mode & 0o444) >> 2);
            std::fs::set_permissions(directory, std::fs::Permissions::from_mode(directory_mode))
                .map_err(|error| error.to_string())?;
            let _ = nix::unistd::chown(directory, Some(owner.uid), Some(group));
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed a stale socket"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("{}: {error}", path.display())),
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    nix::unistd::chown(path, Some(owner.uid), Some(group))
        .map_err(|error| format!("chown {}: {error}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|error| error.to_string())?;
    Ok(listener)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

fn main() {
    let cli = Cli::parse();
    let level = if cli.debug || cli.debug_interactively {
        "debug"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let socket = cli
        .socket
        .clone()
        .or_else(|| {
            std::env::var_os("X2GOBROKER_AUTHSERVICE_SOCKET")
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
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
        let listener = match prepare_socket(&cli, &socket) {
            Ok(listener) => listener,
            Err(message) => {
                eprintln!("x2gobroker-authservice: {message}");
                return 64;
            }
        };
        tracing::info!(socket = %socket.display(), "x2gobroker-authservice listening");
        server::serve(listener, pam_check::check, shutdown_signal()).await;
        let _ = std::fs::remove_file(&socket);
        0
    });
    std::process::exit(code);
}
