//! Start-up: the start-up settings read once (command line > environment > defaults.conf > file > built-in; the setuid rule), logging, `--check-config`, privilege dropping, `-D`, running a mode, SIGHUP.

use crate::cli::{bind_address, Cli, Mode, EXIT_USAGE};
use crate::config::startup::{CommandLine, StartupInputs};
use crate::config::{BrokerConfig, IniDocument, StartupSettings};
use crate::daemonize::{self, PidFile, Readiness};
use crate::logging::Logging;
use crate::service::Broker;
use crate::store::ConfigStore;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::config::startup::{DEFAULT_CONFIG, DEFAULT_PROFILES};

/// What the command line says about the start-up settings (`-C`, `-b`, `-d`/`-i`).
pub fn command_line(cli: &Cli) -> CommandLine {
    CommandLine {
        config_file: cli.config_file.clone(),
        bind: cli.bind.clone(),
        debug: cli.debug || cli.debug_interactively,
    }
}

/// Whether this process runs setuid (its real and effective users differ).
pub fn is_setuid() -> bool {
    nix::unistd::getuid() != nix::unistd::geteuid()
}

/// For a setuid process that was given more than the SSH broker mode's task options: the
/// message (on stderr) and exit code 64. Checked before logging is installed (`RUST_LOG`).
pub fn refuse_setuid_misuse(cli: &Cli, invoked_as_daemon: bool) -> Option<i32> {
    if !is_setuid() {
        return None;
    }
    let refusal = crate::cli::setuid_refusal(
        cli,
        invoked_as_daemon,
        std::env::var_os("RUST_LOG").is_some(),
    )?;
    eprintln!("x2gobroker: {refusal}");
    Some(EXIT_USAGE)
}

fn read_text(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// The start-up settings of this process, read once (`program`: the name it runs as, which
/// picks its defaults.conf section). A setuid broker (the SSH mode installed as
/// x2gobroker-ssh) must not let its caller choose files or settings: it ignores `-C` and the
/// whole environment; the built-in paths, `/etc/x2go/broker/defaults.conf` and
/// x2gobroker.conf apply.
pub fn startup_settings(command_line: CommandLine, program: &str) -> StartupSettings {
    let setuid = is_setuid();
    let process_environment: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect();
    let caller_chose_paths = command_line.config_file.is_some()
        || process_environment
            .keys()
            .any(|name| name.starts_with("X2GOBROKER_"));
    let environment = if setuid {
        BTreeMap::new()
    } else {
        process_environment
    };
    let command_line = if setuid {
        CommandLine {
            config_file: None,
            ..command_line
        }
    } else {
        command_line
    };
    let inputs = StartupInputs {
        command_line,
        environment,
        program: program.to_string(),
    };
    let mut settings = StartupSettings::resolve(&inputs, &read_text);
    if setuid && caller_chose_paths {
        settings.notices.push(
            "running setuid: -C and the caller's environment (X2GOBROKER_*) are ignored"
                .to_string(),
        );
    }
    settings
}

/// `--check-config`: the effective start-up settings with their sources, then every problem
/// of defaults.conf, x2gobroker.conf and the session profiles at once; exit 0 when clean, 64
/// otherwise.
pub fn check_config(startup: &StartupSettings) -> i32 {
    let config_path = &startup.config_file;
    let profiles_path = &startup.session_profiles;
    let section = startup
        .defaults_section
        .as_deref()
        .map(|section| format!("[{section}] and [common]"))
        .unwrap_or_else(|| "[common]".to_string());
    println!(
        "start-up settings (cli > environment > defaults.conf {} {section} > file > built-in):",
        startup.defaults_conf.display()
    );
    for line in startup.report_lines() {
        println!("  {line}");
    }
    let mut problems = startup.problems.clone();
    let read = |path: &Path| read_text(path).unwrap_or_default();
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

/// Runs the chosen mode with the start-up settings and the installed logging; returns the
/// process exit code.
pub fn run(
    cli: Cli,
    startup: StartupSettings,
    logging: Logging,
    invoked_as_daemon: bool,
    usage: String,
) -> i32 {
    let mode = match cli.mode(invoked_as_daemon) {
        Ok(mode) => mode,
        Err(message) => {
            eprintln!("x2gobroker: {message}");
            return EXIT_USAGE;
        }
    };
    for notice in &startup.notices {
        tracing::warn!("{notice}");
    }
    if cli.check_config {
        return check_config(&startup);
    }
    for problem in &startup.problems {
        tracing::error!("{problem}");
    }
    match mode {
        Mode::Ssh => {
            logging.open_files();
            run_ssh(cli, startup, &usage)
        }
        Mode::Http => run_http(cli, startup, logging),
    }
}

/// Installs logging for these settings (§2, §14): the reference's loggers file when it
/// applies, else stderr. `-i` and `--check-config` always log to stderr.
pub fn init_logging(cli: &Cli, startup: &StartupSettings) -> Logging {
    Logging::init(
        &startup.logconfig,
        startup.debug,
        &startup.daemon_user,
        &startup.daemon_group,
        cli.debug_interactively || cli.check_config,
        !is_setuid(),
    )
}

fn open_store(startup: &StartupSettings) -> ConfigStore {
    ConfigStore::open(
        Some(startup.config_file.clone()),
        Some(startup.session_profiles.clone()),
    )
}

fn run_ssh(cli: Cli, startup: StartupSettings, usage: &str) -> i32 {
    let Some(caller) = crate::sshmode::real_user_name() else {
        eprintln!("x2gobroker: the calling user has no passwd entry");
        return 1;
    };
    // the live farm drives SSH, LOCAL and GRPC profiles in this one-shot process too: the
    // request supervises the servers it needs and waits (at most heartbeat + call timeout)
    // for their first reports
    let store = open_store(&startup);
    let farm = match start_farm(&store, &startup, Mode::Ssh) {
        Ok(farm) => farm,
        Err(message) => {
            eprintln!("x2gobroker: {message}");
            return EXIT_USAGE;
        }
    };
    // the daemon's drain state holds here too (read only: this process never writes it)
    let operations = Arc::new(operations_for(&store, &startup, false));
    let farm = farm.map(|farm| farm.observed_by(operations.farm_observer()));
    let broker = Broker::assemble(store, startup, farm, operations);
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
    // the SSH request's client address (a request value, like an HTTP peer address); a
    // setuid caller could set SSH_CLIENT to anything, and nothing here can verify it: the
    // ACLs and verify-ip see 127.0.0.1 then
    let ssh_client = if is_setuid() {
        None
    } else {
        std::env::var("SSH_CLIENT").ok()
    };
    let outcome = runtime.block_on(async {
        let outcome =
            crate::sshmode::run(&broker, &cli, &caller, ssh_client.as_deref(), usage).await;
        if let Some(farm) = &broker.farm {
            farm.shutdown().await;
        }
        outcome
    });
    use std::io::Write;
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(outcome.stdout.as_bytes());
    let _ = stdout.flush();
    outcome.exit_code
}

/// Where a start-up failure of the HTTP daemon is told: stderr; with `-D` the process that
/// waits for the daemon prints it (and the daemon's own stderr file gets it once stdout and
/// stderr are redirected).
#[derive(Default)]
struct StartUp {
    readiness: Option<Readiness>,
    redirected: bool,
}

impl StartUp {
    fn fail(&mut self, code: i32, message: String) -> i32 {
        match self.readiness.take() {
            Some(readiness) => {
                if self.redirected {
                    eprintln!("x2gobroker: {message}");
                }
                readiness.failed(&message);
            }
            None => eprintln!("x2gobroker: {message}"),
        }
        code
    }
}

/// `-D`'s files: the pid file and the directory of `x2gobroker-daemon.std{out,err}`.
struct DaemonFiles {
    pidfile: PathBuf,
    logdir: PathBuf,
}

/// The HTTP daemon. Order: bind (as root when started as root), with `-D` detach (one thread
/// only: before the runtime and the farm exist) and write the pid file, drop privileges,
/// with `-D` redirect stdout/stderr, open the log files, then the store, the farm, the
/// runtime; with `-D` the starting process exits 0 only then.
fn run_http(cli: Cli, startup: StartupSettings, logging: Logging) -> i32 {
    let mut start_up = StartUp::default();
    let address = match bind_address(&startup.bind_address) {
        Ok(address) => address,
        Err(message) => return start_up.fail(EXIT_USAGE, message),
    };
    let tls = match (&startup.ssl_certfile, &startup.ssl_keyfile) {
        (Some(certificate), Some(key)) => {
            match crate::http::tls_config_from_files(certificate, key) {
                Ok(config) => Some(config),
                Err(error) => return start_up.fail(EXIT_USAGE, error.to_string()),
            }
        }
        _ => None,
    };
    let daemon_files = cli.daemonize.then(|| DaemonFiles {
        pidfile: cli
            .pidfile
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::config::startup::DEFAULT_PIDFILE)),
        logdir: cli
            .logdir
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::config::startup::DEFAULT_LOGDIR)),
    });
    if let Some(files) = &daemon_files {
        if let Err(error) =
            daemonize::prepare_pidfile_directory(&files.pidfile, &startup.daemon_group)
        {
            let message = format!(
                "cannot create the directory of {}: {error}",
                files.pidfile.display()
            );
            return start_up.fail(1, message);
        }
        if let Err(error) = daemonize::prepare_log_directory(
            &files.logdir,
            &startup.daemon_user,
            &startup.daemon_group,
        ) {
            let message = format!("cannot create {}: {error}", files.logdir.display());
            return start_up.fail(1, message);
        }
    }
    // the connection cap needs room in the open-file limit (the usual soft limit is 1024)
    let open_files = crate::http::raise_open_file_limit();
    tracing::debug!(open_files, "open-file limit");
    let listener = match crate::http::bind_listener(address) {
        Ok(listener) => listener,
        Err(error) => return start_up.fail(1, format!("cannot bind {address}: {error}")),
    };
    let admin = match AdminListener::bind(&startup) {
        Ok(admin) => admin,
        Err(message) => return start_up.fail(EXIT_USAGE, message),
    };
    let mut pidfile = None;
    if let Some(files) = &daemon_files {
        match daemonize::detach() {
            Ok(readiness) => start_up.readiness = Some(readiness),
            Err(error) => return start_up.fail(1, error.to_string()),
        }
        // the daemon: the pid file while still root (its directory need not be writable
        // for the daemon user; removing it at exit then needs that)
        match PidFile::write(&files.pidfile) {
            Ok(written) => pidfile = Some(written),
            Err(error) => {
                let message = format!("cannot write {}: {error}", files.pidfile.display());
                return start_up.fail(1, message);
            }
        }
    }
    if cli.drop_privileges {
        let (user, group) = (&startup.daemon_user, &startup.daemon_group);
        if let Err(message) = drop_privileges(user, group) {
            let message = format!("cannot drop privileges to {user}:{group}: {message}");
            return start_up.fail(1, message);
        }
    }
    if let Some(files) = &daemon_files {
        // python-daemon's umask
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
        if let Err(error) = daemonize::redirect_stdio(&files.logdir) {
            return start_up.fail(1, format!("cannot redirect stdout/stderr: {error}"));
        }
        start_up.redirected = true;
    } else if let Some(path) = &cli.pidfile {
        match PidFile::write(path) {
            Ok(written) => pidfile = Some(written),
            Err(error) => tracing::error!("cannot write {}: {error}", path.display()),
        }
    }
    logging.open_files();
    let store = open_store(&startup);
    let farm = match start_farm(&store, &startup, Mode::Http) {
        Ok(farm) => farm,
        Err(message) => return start_up.fail(EXIT_USAGE, message),
    };
    // after dropping privileges: the audit file belongs to the daemon user, as the logs do
    let operations = Arc::new(operations_for(&store, &startup, true));
    let farm = farm.map(|farm| farm.observed_by(operations.farm_observer()));
    let broker = Broker::assemble(store, startup, farm, operations);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return start_up.fail(1, error.to_string()),
    };
    let code = runtime.block_on(async move {
        let _ = listener.set_nonblocking(true);
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => return start_up.fail(1, error.to_string()),
        };
        tracing::info!(%address, tls = tls.is_some(), "x2gobroker listening");
        let tls = tls.map(crate::http::ReloadableTls::new);
        // SIGHUP never kills the daemon (`systemctl reload`, logrotate): one handler
        let admin = match admin.map(AdminListener::into_tokio).transpose() {
            Ok(admin) => admin,
            Err(error) => return start_up.fail(1, error.to_string()),
        };
        let admin_reload = admin.as_ref().map(|admin| admin.reload.clone());
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hangups) => {
                tokio::spawn(reload_on_hangup(
                    hangups,
                    logging,
                    broker.clone(),
                    tls.clone(),
                    admin_reload,
                ));
            }
            Err(error) => return start_up.fail(1, format!("cannot handle SIGHUP: {error}")),
        }
        tokio::spawn(collect_expired_cookies(broker.clone()));
        if let Err(message) = start_cluster(&broker, address.port()).await {
            return start_up.fail(EXIT_USAGE, message);
        }
        // the farm is live from start-up: every server of the profiles is supervised now,
        // not at its first request
        let supervised = broker.supervise_all();
        tracing::info!(
            servers = supervised,
            "farm: servers supervised from start-up"
        );
        // keys a previous run left on the servers (it died, or a server was down at its
        // shutdown) are removed when due
        if let Some(farm) = &broker.farm {
            farm.resume_pending_keys().await;
        }
        broker.operations.mark_ready();
        if let Some(readiness) = start_up.readiness.take() {
            readiness.ready();
        }
        // one shutdown signal for both listeners
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let admin_task = admin.map(|admin| {
            let router = crate::admin::router(broker.clone(), admin.access.clone());
            tracing::info!(address = %admin.address, tls = admin.tls.is_some(), "admin listener");
            tokio::spawn(crate::admin::serve(
                admin.listener,
                admin.tls,
                router,
                until_stopped(stopped.clone()),
            ))
        });
        // shutdown in order: stop accepting and drain the requests (serve), then the farm
        // (waiting keys removed, supervisors stopped, actor system stopped)
        serve(listener, tls, broker.clone(), until_stopped(stopped)).await;
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        if let Some(farm) = &broker.farm {
            farm.shutdown().await;
        }
        tracing::info!("x2gobroker stopped");
        0
    });
    drop(pidfile);
    code
}

/// With `[cluster]`: joins the brokers sharing its PostgreSQL (schema applied, placements
/// shared with the farm, drain read from the shared table and kept current). Without it:
/// nothing. A database that is down is not an error (the broker degrades); a section that
/// cannot be used (no URL, an unreadable password file) is.
async fn start_cluster(broker: &Arc<Broker>, client_port: u16) -> Result<(), String> {
    let snapshot = broker.snapshot();
    let Ok(config) = &snapshot.config else {
        return Ok(());
    };
    let Some(settings) = &config.cluster else {
        return Ok(());
    };
    if let Some(problem) = settings.combination_problems().into_iter().next() {
        return Err(problem);
    }
    let name = settings
        .name
        .clone()
        .unwrap_or_else(|| crate::cluster::default_name(client_port));
    let pending_ttl = config.farm.pending_placement_ttl;
    let cluster = crate::cluster::Cluster::start(settings, name, pending_ttl)
        .await
        .map_err(|error| error.to_string())?;
    if let Some(farm) = &broker.farm {
        farm.share_placements(Arc::new(cluster.clone()));
        let weak = Arc::downgrade(broker);
        cluster.remove_keys_with(Arc::new(move |key| {
            let weak = weak.clone();
            Box::pin(async move {
                let broker = weak
                    .upgrade()
                    .ok_or_else(|| "the broker is stopping".to_string())?;
                let farm = broker.farm.as_ref().ok_or_else(|| "no farm".to_string())?;
                farm.remove_key_now(&key).await
            })
        }));
    }
    cluster.report_degraded_to(broker.operations.metrics.cluster_degraded());
    broker.operations.audit.mirror_to(cluster.audit_writer());
    let weak = Arc::downgrade(broker);
    cluster.watch_flags(Arc::new(move |drained| {
        if let Some(broker) = weak.upgrade() {
            broker.apply_shared_drain(drained);
        }
    }));
    let _ = broker.cluster.set(cluster);
    Ok(())
}

/// Starts the live farm, with or without a `[farm]` section (the reference's LOCAL and SSH
/// profiles need none); SIGHUP applies a changed `[farm]`. A `[farm]` value that does not
/// fit is one logged error at start-up, and its default is used.
pub fn start_farm(
    store: &ConfigStore,
    startup: &StartupSettings,
    mode: Mode,
) -> Result<Option<crate::farm::FarmHandle>, String> {
    let snapshot = store.current();
    let Ok(config) = &snapshot.config else {
        return Ok(None);
    };
    let mut farm_config = config.farm.farm_config(&startup.farm_defaults());
    if mode == Mode::Ssh {
        // one-shot, no autologin keys: the daemon's pending-keys file is not ours to write
        farm_config.pending_keys_file = None;
    }
    for problem in &config.farm.problems {
        tracing::error!("{}: {problem}", startup.config_file.display());
    }
    tracing::info!(
        agent_port = farm_config.agent_port,
        "live farm state enabled"
    );
    crate::farm::FarmHandle::start(farm_config)
        .map(Some)
        .map_err(|error| error.to_string())
}

/// SIGHUP reloads, never kills: the log files are opened again (after logrotate moved them),
/// the config files are read again (a file that cannot be parsed keeps the last good
/// version), `[farm]` and the agents' token and TLS files are applied (a `[farm]` with
/// problems keeps the running farm), servers new in the profiles are supervised and servers
/// gone from them stopped, and the listener's TLS certificate and key are read again
/// (unreadable ones keep the old pair). Each outcome is one log line.
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    logging: Logging,
    broker: Arc<Broker>,
    tls: Option<Arc<crate::http::ReloadableTls>>,
    admin: Option<AdminReload>,
) {
    while hangups.recv().await.is_some() {
        let reopened = logging.reopen();
        broker.operations.audit.reopen();
        if let Some(admin) = &admin {
            admin.reload();
        }
        tracing::info!(reopened, "SIGHUP: log files reopened; reloading");
        let reloader = broker.clone();
        let outcome = tokio::task::spawn_blocking(move || reloader.reload()).await;
        if let Err(error) = outcome {
            tracing::error!(%error, "reload failed");
        }
        // the pair as the environment or the config file names it now ([global] tls-cert,
        // tls-key may name new files; HTTPS cannot be switched on or off without a restart)
        let snapshot = broker.snapshot();
        let global = snapshot.config.as_ref().ok().map(|config| &config.global);
        let files = broker.settings.tls_files(global);
        if tls.is_none() && files.0.is_some() {
            tracing::warn!("a TLS certificate is configured now: the client port turns to HTTPS only after a restart");
        }
        if let (Some(tls), (Some(certificate), Some(key))) = (&tls, (&files.0, &files.1)) {
            match crate::http::tls_config_from_files(certificate, key) {
                Ok(config) => {
                    tls.replace(config);
                    tracing::info!(certificate = %certificate.display(), "TLS certificate and key reloaded");
                }
                Err(error) => {
                    tracing::error!(%error, "TLS certificate or key unusable: the old pair keeps serving")
                }
            }
        }
    }
}

/// Serves the broker on `listener` until `shutdown` (the library entry point tests use).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<crate::http::ReloadableTls>>,
    broker: Arc<Broker>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = match &broker.snapshot().config {
        Ok(config) => config.http.clone(),
        Err(_) => crate::config::HttpLimits::default(),
    };
    for problem in &limits.problems {
        tracing::error!("{}: {problem}", broker.settings.config_file.display());
    }
    // PROXY headers from [global] trusted-proxies as the config is when a connection comes
    let config_of = broker.clone();
    let proxy_peers = crate::http::TrustedPeers::new(move |peer| {
        config_of.snapshot().config.as_ref().is_ok_and(|config| {
            config
                .global
                .trusted_proxies
                .as_ref()
                .is_ok_and(|trusted| trusted.contains(peer))
        })
    });
    let router = crate::http::routes::router(broker, limits.clone());
    crate::http::serve(listener, tls, router, &limits, proxy_peers, shutdown).await;
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
        let directory = broker.cookie_directory(config);
        let Ok(timeout) = config.global.auth_timeout.get() else {
            continue;
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

/// The operations side of a broker on `store`'s config: the audit log `[admin] audit-log`
/// names, the drain state of `[admin] state-directory` (`writable`: the daemon; the SSH
/// broker mode only reads it).
fn operations_for(
    store: &ConfigStore,
    startup: &StartupSettings,
    writable: bool,
) -> crate::admin::Operations {
    let snapshot = store.current();
    let admin = match &snapshot.config {
        Ok(config) => config.admin.clone(),
        Err(_) => crate::config::AdminSettings::default(),
    };
    let drain = crate::admin::DrainStore::load(admin.drain_file(&startup.config_file), writable);
    let audit = if writable {
        crate::admin::AuditLog::open(admin.audit.clone())
    } else {
        crate::admin::AuditLog::to_log()
    };
    crate::admin::Operations::new(audit, drain)
}

/// The admin listener as bound at start-up (before privileges are dropped), with what its
/// clients are checked against.
struct AdminListener {
    address: std::net::SocketAddr,
    listener: std::net::TcpListener,
    tls: Option<Arc<crate::http::ReloadableTls>>,
    access: crate::admin::AdminAccess,
    reload: AdminReload,
}

/// The admin listener bound and running on tokio.
struct TokioAdminListener {
    address: std::net::SocketAddr,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<crate::http::ReloadableTls>>,
    access: crate::admin::AdminAccess,
    reload: AdminReload,
}

/// What a SIGHUP reads again for the admin listener: its TLS files and its token file.
#[derive(Clone)]
struct AdminReload {
    settings: crate::config::AdminSettings,
    tls: Option<Arc<crate::http::ReloadableTls>>,
    token: Arc<std::sync::RwLock<Option<Arc<str>>>>,
}

impl AdminReload {
    fn tls_config(
        settings: &crate::config::AdminSettings,
    ) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
        let (Some(certificate), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
            return Ok(None);
        };
        let client_certificates = settings.client_ca.as_deref().map(|ca| {
            if settings.token_file.is_some() {
                crate::http::ClientCertificates::Optional { ca }
            } else {
                crate::http::ClientCertificates::Required { ca }
            }
        });
        crate::http::tls_server_config(certificate, key, client_certificates, &[b"h2", b"http/1.1"])
            .map(Some)
            .map_err(|error| format!("[admin]: {error}"))
    }

    fn read_token(settings: &crate::config::AdminSettings) -> Result<Option<Arc<str>>, String> {
        let Some(path) = &settings.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("[admin] token-file {}: {error}", path.display()))?;
        let token = text.lines().next().unwrap_or_default().trim().to_string();
        if token.is_empty() {
            return Err(format!("[admin] token-file {}: empty", path.display()));
        }
        Ok(Some(Arc::from(token)))
    }

    /// Reads the TLS files and the token file again; files that cannot be used keep the old
    /// ones serving (one log line each).
    fn reload(&self) {
        match (&self.tls, Self::tls_config(&self.settings)) {
            (Some(tls), Ok(Some(config))) => {
                tls.replace(config);
                tracing::info!("admin listener: TLS certificate and key reloaded");
            }
            (Some(_), Err(error)) => {
                tracing::error!(%error, "admin listener: the old TLS certificate keeps serving")
            }
            _ => {}
        }
        match Self::read_token(&self.settings) {
            Ok(token) => {
                if token.is_some() {
                    tracing::info!("admin listener: token file reloaded");
                }
                *self.token.write().unwrap_or_else(|p| p.into_inner()) = token;
            }
            Err(error) => tracing::error!(%error, "admin listener: the old token keeps serving"),
        }
    }
}

impl AdminListener {
    /// Binds `[admin] bind` (none when empty). A listener that would be reachable off
    /// loopback without TLS and a client check, or whose files cannot be used, stops the
    /// start; a default port that is taken is only logged (another broker may have it).
    fn bind(startup: &StartupSettings) -> Result<Option<AdminListener>, String> {
        let Ok(config) = crate::config::BrokerConfig::parse(
            &std::fs::read_to_string(&startup.config_file).unwrap_or_default(),
        ) else {
            return Ok(None);
        };
        let settings = config.admin;
        let Some(address) = settings.bind else {
            return Ok(None);
        };
        if let Some(problem) = settings.combination_problems().into_iter().next() {
            return Err(format!("{}: {problem}", startup.config_file.display()));
        }
        let tls = AdminReload::tls_config(&settings)?.map(crate::http::ReloadableTls::new);
        let token = AdminReload::read_token(&settings)?;
        let listener = match crate::http::bind_listener(address) {
            Ok(listener) => listener,
            Err(error) if !settings.bind_configured => {
                tracing::error!(%address, %error, "admin listener not started: its default address is taken (set [admin] bind, or bind = to switch it off)");
                return Ok(None);
            }
            Err(error) => return Err(format!("cannot bind the admin listener {address}: {error}")),
        };
        let token = Arc::new(std::sync::RwLock::new(token));
        let access = crate::admin::AdminAccess {
            token: token.clone(),
            client_ca: settings.client_ca.is_some(),
        };
        Ok(Some(AdminListener {
            address,
            listener,
            reload: AdminReload {
                settings,
                tls: tls.clone(),
                token,
            },
            tls,
            access,
        }))
    }

    fn into_tokio(self) -> std::io::Result<TokioAdminListener> {
        self.listener.set_nonblocking(true)?;
        Ok(TokioAdminListener {
            address: self.address,
            listener: tokio::net::TcpListener::from_std(self.listener)?,
            tls: self.tls,
            access: self.access,
            reload: self.reload,
        })
    }
}
