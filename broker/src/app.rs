//! Start-up: resolving settings (command line > environment > file > default), `--check-config`, running a mode.

use crate::cli::{bind_address, env_flag, env_value, Cli, Mode, EXIT_USAGE};
use crate::config::store::ConfigStore;
use crate::config::{BrokerConfig, IniDocument};
use crate::service::{Broker, Settings};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The reference's default config file.
pub const DEFAULT_CONFIG: &str = "/etc/x2go/x2gobroker.conf";
/// The reference's default session profiles file.
pub const DEFAULT_PROFILES: &str = "/etc/x2go/broker/x2gobroker-sessionprofiles.conf";

/// The config file: `-C`, else `X2GOBROKER_CONFIG`, else the default.
pub fn config_path(cli: &Cli) -> PathBuf {
    cli.config_file
        .clone()
        .or_else(|| env_value("X2GOBROKER_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

/// The session profiles: `X2GOBROKER_SESSIONPROFILES`, else `[broker_inifile] session-profiles`
/// (relative to the config file; the reference never reads that key), else the default.
pub fn profiles_path(config_path: &Path) -> PathBuf {
    match env_value("X2GOBROKER_SESSIONPROFILES") {
        Some(path) => PathBuf::from(path),
        None => profiles_path_from_config(config_path),
    }
}

/// The session profiles named by `[broker_inifile] session-profiles`, else the default.
pub fn profiles_path_from_config(config_path: &Path) -> PathBuf {
    let configured = std::fs::read_to_string(config_path)
        .ok()
        .and_then(|text| BrokerConfig::parse(&text).ok())
        .and_then(|config| {
            config
                .document()
                .get("broker_inifile", "session-profiles")
                .map(str::to_string)
        })
        .filter(|path| !path.is_empty());
    match configured {
        Some(path) => {
            let path = PathBuf::from(path);
            if path.is_relative() {
                config_path.parent().unwrap_or(Path::new(".")).join(path)
            } else {
                path
            }
        }
        None => PathBuf::from(DEFAULT_PROFILES),
    }
}

/// Process settings from the environment (§2).
pub fn settings_from_environment() -> Settings {
    let defaults = Settings::default();
    Settings {
        default_backend: env_value("X2GOBROKER_DEFAULT_BACKEND")
            .unwrap_or(defaults.default_backend),
        authservice_socket: env_value("X2GOBROKER_AUTHSERVICE_SOCKET").map(PathBuf::from),
        daemon_user: env_value("X2GOBROKER_DAEMON_USER").unwrap_or(defaults.daemon_user),
        auth_timeout: defaults.auth_timeout,
        cookie_directory: env_value("X2GOBROKER_COOKIE_DIRECTORY").map(PathBuf::from),
    }
}

/// Whether debug logging is on (`-d`, `-i` or `X2GOBROKER_DEBUG`).
pub fn debug_enabled(cli: &Cli) -> bool {
    cli.debug || cli.debug_interactively || env_flag("X2GOBROKER_DEBUG")
}

/// `--check-config`: every problem of both files, printed; exit 0 when clean, 64 otherwise.
pub fn check_config(config_path: &Path, profiles_path: &Path) -> i32 {
    let mut problems = Vec::new();
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    if !config_path.exists() {
        problems.push(format!(
            "{}: no such file (built-in defaults apply)",
            config_path.display()
        ));
    }
    match BrokerConfig::parse(&read(config_path)) {
        Ok(config) => problems.extend(
            config
                .problems()
                .into_iter()
                .map(|problem| format!("{}: {problem}", config_path.display())),
        ),
        Err(error) => problems.push(format!("{}: {error}", config_path.display())),
    }
    if !profiles_path.exists() {
        problems.push(format!(
            "{}: no such file (no session profiles)",
            profiles_path.display()
        ));
    }
    match IniDocument::parse(&read(profiles_path)) {
        Ok(document) => problems.extend(
            crate::profiles::problems(&document)
                .into_iter()
                .map(|problem| format!("{}: {problem}", profiles_path.display())),
        ),
        Err(error) => problems.push(format!("{}: {error}", profiles_path.display())),
    }
    for problem in &problems {
        println!("{problem}");
    }
    if problems.is_empty() {
        println!(
            "configuration OK: {} and {}",
            config_path.display(),
            profiles_path.display()
        );
        0
    } else {
        println!("{} problem(s) found", problems.len());
        EXIT_USAGE
    }
}

/// Drops root privileges to `user`/`group`: no supplementary groups, umask 077, HOME set.
pub fn drop_privileges(user_name: &str, group_name: &str) -> Result<(), String> {
    use nix::unistd::{setgid, setgroups, setuid, Group, User};
    let user = User::from_name(user_name)
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("no such user {user_name:?}"))?;
    let group = Group::from_name(group_name)
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("no such group {group_name:?}"))?;
    setgroups(&[]).map_err(|error| format!("setgroups: {error}"))?;
    setgid(group.gid).map_err(|error| format!("setgid: {error}"))?;
    setuid(user.uid).map_err(|error| format!("setuid: {error}"))?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    std::env::set_var("HOME", &user.dir);
    Ok(())
}

/// Runs the chosen mode; returns the process exit code.
pub fn run(cli: Cli, invoked_as_daemon: bool, usage: String) -> i32 {
    let mode = match cli.mode(invoked_as_daemon) {
        Ok(mode) => mode,
        Err(message) => {
            eprintln!("x2gobroker: {message}");
            return EXIT_USAGE;
        }
    };
    let setuid = nix::unistd::getuid() != nix::unistd::geteuid();
    let (config_path, profiles_path, settings) = if setuid {
        // A setuid broker (the SSH mode installed as x2gobroker-ssh) must not let its caller
        // choose files: only the built-in paths and settings apply.
        if cli.config_file.is_some() || env_value("X2GOBROKER_CONFIG").is_some() {
            tracing::warn!("running setuid: -C and X2GOBROKER_* paths from the caller are ignored");
        }
        let config_path = PathBuf::from(DEFAULT_CONFIG);
        let profiles_path = profiles_path_from_config(&config_path);
        (config_path, profiles_path, Settings::default())
    } else {
        let config_path = config_path(&cli);
        let profiles_path = profiles_path(&config_path);
        (config_path, profiles_path, settings_from_environment())
    };
    if cli.check_config {
        return check_config(&config_path, &profiles_path);
    }
    match mode {
        Mode::Ssh => run_ssh(cli, config_path, profiles_path, settings, &usage),
        Mode::Http => run_http(cli, config_path, profiles_path, settings),
    }
}

fn run_ssh(
    cli: Cli,
    config_path: PathBuf,
    profiles_path: PathBuf,
    settings: Settings,
    usage: &str,
) -> i32 {
    let Some(caller) = crate::sshmode::real_user_name() else {
        eprintln!("x2gobroker: the calling user has no passwd entry");
        return 1;
    };
    let store = ConfigStore::open(Some(config_path), Some(profiles_path));
    let broker = Broker::new(store, settings);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("x2gobroker: {error}");
            return 1;
        }
    };
    let ssh_client = std::env::var("SSH_CLIENT").ok();
    let outcome = runtime.block_on(crate::sshmode::run(
        &broker,
        &cli,
        &caller,
        ssh_client.as_deref(),
        usage,
    ));
    use std::io::Write;
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(outcome.stdout.as_bytes());
    let _ = stdout.flush();
    outcome.exit_code
}

fn run_http(cli: Cli, config_path: PathBuf, profiles_path: PathBuf, settings: Settings) -> i32 {
    let bind_text = cli
        .bind
        .clone()
        .or_else(|| env_value("DAEMON_BIND_ADDRESS"))
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let address = match bind_address(&bind_text) {
        Ok(address) => address,
        Err(message) => {
            eprintln!("x2gobroker: {message}");
            return EXIT_USAGE;
        }
    };
    let tls = match (
        env_value("X2GOBROKER_SSL_CERTFILE"),
        env_value("X2GOBROKER_SSL_KEYFILE"),
    ) {
        (Some(certificate), Some(key)) => {
            match crate::http::tls_config_from_files(Path::new(&certificate), Path::new(&key)) {
                Ok(config) => Some(config),
                Err(error) => {
                    eprintln!("x2gobroker: {error}");
                    return EXIT_USAGE;
                }
            }
        }
        _ => None,
    };
    let listener = match std::net::TcpListener::bind(address) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("x2gobroker: cannot bind {address}: {error}");
            return 1;
        }
    };
    if cli.drop_privileges {
        let user = env_value("X2GOBROKER_DAEMON_USER").unwrap_or_else(|| "x2gobroker".into());
        let group = env_value("X2GOBROKER_DAEMON_GROUP").unwrap_or_else(|| "x2gobroker".into());
        if let Err(message) = drop_privileges(&user, &group) {
            eprintln!("x2gobroker: cannot drop privileges to {user}:{group}: {message}");
            return 1;
        }
    }
    if let Some(pidfile) = &cli.pidfile {
        if let Err(error) = std::fs::write(pidfile, format!("{}\n", std::process::id())) {
            eprintln!("x2gobroker: cannot write {}: {error}", pidfile.display());
        }
    }
    if cli.daemonize {
        tracing::warn!("-D/--daemonize is not supported: staying in the foreground (use systemd)");
    }
    let store = ConfigStore::open(Some(config_path), Some(profiles_path));
    let farm = match start_farm(&store) {
        Ok(farm) => farm,
        Err(message) => {
            eprintln!("x2gobroker: {message}");
            return EXIT_USAGE;
        }
    };
    let broker = Broker::with_farm(store, settings, farm);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("x2gobroker: {error}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let _ = listener.set_nonblocking(true);
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("x2gobroker: {error}");
                return 1;
            }
        };
        tracing::info!(%address, tls = tls.is_some(), "x2gobroker listening");
        tokio::spawn(collect_expired_cookies(broker.clone()));
        // shutdown in order: stop accepting and drain the requests (serve), then the farm
        // (waiting keys removed, supervisors stopped, actor system stopped)
        serve(listener, tls, broker.clone(), shutdown_signal()).await;
        if let Some(farm) = &broker.farm {
            farm.shutdown().await;
        }
        tracing::info!("x2gobroker stopped");
        0
    })
}

/// Starts the live farm when `[farm] agent-port` is configured (changing `[farm]` needs a
/// restart); supervisors for profile hosts start on first use.
fn start_farm(store: &ConfigStore) -> Result<Option<crate::farm::FarmHandle>, String> {
    let snapshot = store.current();
    let Ok(config) = &snapshot.config else {
        return Ok(None);
    };
    let Some(farm_config) = crate::farm::FarmConfig::from_config(config) else {
        return Ok(None);
    };
    tracing::info!(
        agent_port = farm_config.agent_port,
        "live farm state enabled"
    );
    crate::farm::FarmHandle::start(farm_config)
        .map(Some)
        .map_err(|error| error.to_string())
}

/// Serves the broker on `listener` until `shutdown` (the library entry point tests use).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    broker: Arc<Broker>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    crate::http::serve(listener, tls, crate::http::routes::router(broker), shutdown).await;
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = terminate.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Deletes expired cookie files every minute (the reference never does, §16 S6).
async fn collect_expired_cookies(broker: Arc<Broker>) {
    let mut interval = tokio::time::interval(Duration::from_secs(60));
    loop {
        interval.tick().await;
        let snapshot = broker.snapshot();
        let Ok(config) = &snapshot.config else {
            continue;
        };
        let Ok(directory) = broker.cookie_directory(config) else {
            continue;
        };
        let timeout = match config.global("auth-timeout") {
            Ok(crate::config::Value::Int(seconds)) => seconds,
            _ => continue,
        };
        let store = crate::auth::cookies::CookieStore::new(directory);
        let removed = tokio::task::spawn_blocking(move || {
            store.collect_expired(timeout, std::time::SystemTime::now())
        })
        .await
        .unwrap_or(0);
        if removed > 0 {
            tracing::info!(removed, "expired cookies collected");
        }
    }
}
