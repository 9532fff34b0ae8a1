//! `x2gobroker-testagent`: run one task on a local or remote broker agent, as the broker would (the reference's tool).

use clap::{CommandFactory, Parser};
use std::path::PathBuf;
use x2gobroker::config::BrokerConfig;
use x2gobroker::testagent::{self, AgentPlace, TestAgentRequest, UsageError};

/// X2Go Session Broker (Agent Test Utility)
#[derive(Debug, Parser)]
#[command(name = "x2gobroker-testagent", version)]
struct Cli {
    /// List available broker agent tasks
    #[arg(long = "list-tasks", help_heading = "agent parameters")]
    list_tasks: bool,
    /// When testing the broker agent, test on behalf of this user (default: none)
    #[arg(
        short = 'u',
        long = "username",
        visible_alias = "user",
        value_name = "USERNAME",
        help_heading = "agent parameters"
    )]
    username: Option<String>,
    /// Perform this task on the (remote) broker agent
    #[arg(
        short = 't',
        long = "task",
        value_name = "AGENT_TASK",
        default_value = "ping",
        help_heading = "agent parameters"
    )]
    task: String,
    /// Test X2Go Session Broker Agent on this (remote) host [default: LOCAL]
    #[arg(
        short = 'H',
        long = "host",
        value_name = "HOSTNAME",
        help_heading = "agent parameters"
    )]
    host: Option<String>,
    /// For remote agent calls (via SSH) use this port as SSH port
    #[arg(
        short = 'p',
        long = "port",
        value_name = "PORT",
        default_value_t = 22,
        help_heading = "agent parameters"
    )]
    port: u16,
    /// For SSH connections to a remote broker agent: permanently add the remote system's host key to the list of known hosts
    #[arg(
        short = 'A',
        long = "add-to-known-hosts",
        help_heading = "supplementary parameters"
    )]
    add_to_known_hosts: bool,
    /// When testing the 'suspendsession' or the 'terminatesession' task, you have to additionally give a session ID to test those tasks on
    #[arg(
        long = "session-id",
        value_name = "SESSION_ID",
        help_heading = "supplementary parameters"
    )]
    session_id: Option<String>,
    /// Use this public key when testing the 'addauthkey' and the 'delauthkey' tasks
    #[arg(
        long = "pubkey",
        value_name = "PUBKEY_AS_STRING",
        help_heading = "supplementary parameters"
    )]
    pubkey: Option<String>,
    /// Specify a special configuration file name, default is: /etc/x2go/x2gobroker.conf (its default-agent-hostkey-policy applies without -A)
    #[arg(
        short = 'C',
        long = "config-file",
        visible_alias = "config",
        value_name = "CONFIG_FILE",
        help_heading = "miscellaneous parameters"
    )]
    config_file: Option<PathBuf>,
    /// Enable debugging code
    #[arg(short = 'd', long = "debug", help_heading = "miscellaneous parameters")]
    debug: bool,
}

/// `[global] default-agent-hostkey-policy` of the broker's config (RejectPolicy without one).
fn host_key_policy(config_file: &std::path::Path) -> String {
    std::fs::read_to_string(config_file)
        .ok()
        .and_then(|text| BrokerConfig::parse(&text).ok())
        .map(|config| config.global.default_agent_hostkey_policy.clone())
        .filter(|policy| !policy.is_empty())
        .unwrap_or_else(|| "RejectPolicy".to_string())
}

fn main() {
    let cli = Cli::parse();
    let level = if cli.debug { "debug" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(std::io::stderr)
        .try_init();
    // the broker's start-up settings: -C, the environment, defaults.conf, as the daemon
    let settings = x2gobroker::app::startup_settings(
        x2gobroker::config::startup::CommandLine {
            config_file: cli.config_file.clone(),
            debug: cli.debug,
            ..Default::default()
        },
        "x2gobroker-testagent",
    );
    let request = TestAgentRequest {
        task_name: cli.task.clone(),
        user: cli.username.clone(),
        place: AgentPlace::from_host(cli.host.as_deref(), cli.port),
        add_to_known_hosts: cli.add_to_known_hosts,
        session_id: cli.session_id.clone(),
        pubkey: cli.pubkey.clone(),
        list_tasks: cli.list_tasks,
        host_key_policy: host_key_policy(&settings.config_file),
        agent_command: settings.agent_command.clone(),
        agent_user: settings.agent_user.clone(),
    };
    let key_user = cli.username.clone().unwrap_or_default();
    let fresh_key = move || {
        x2gobroker::farm::autologin::generate(&key_user, "localhost")
            .ok()
            .map(|pair| pair.authorized_line)
    };
    let (task, user) = match testagent::plan(&request, fresh_key) {
        Ok(planned) => planned,
        Err(error) => {
            if matches!(error, UsageError::NoUser | UsageError::NoSessionId) {
                eprintln!("{}", Cli::command().render_usage());
            }
            eprintln!("{error}");
            std::process::exit(testagent::EXIT_USAGE);
        }
    };
    if nix::unistd::geteuid().is_root() {
        let (daemon_user, daemon_group) = (&settings.daemon_user, &settings.daemon_group);
        if let Err(message) = x2gobroker::app::drop_privileges(daemon_user, daemon_group) {
            eprintln!(
                "x2gobroker-testagent: cannot become {daemon_user}:{daemon_group}: {message}"
            );
            std::process::exit(1);
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("x2gobroker-testagent: {error}");
            std::process::exit(1);
        }
    };
    let (text, status) = runtime.block_on(testagent::run(&request, &task, &user));
    // the runtime (and with it any SSH master connection) ends before the exit
    drop(runtime);
    print!("{text}");
    std::process::exit(status);
}
