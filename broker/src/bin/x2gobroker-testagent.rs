//! `x2gobroker-testagent`: run one task on a local or remote broker agent, as the broker would (the reference's tool).

use clap::{CommandFactory, Parser};
use x2gobroker::cli::testagent::Cli;
use x2gobroker::config::BrokerConfig;
use x2gobroker::testagent::{self, AgentPlace, TestAgentRequest, UsageError};

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
