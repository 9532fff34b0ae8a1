//! `x2gobroker-agentd`: the gRPC agent daemon. Parses the command line, sets up logging,
//! handles SIGHUP (reload) and SIGTERM (shutdown), binds the listener and hands over to
//! [`x2gobroker_agent::daemon::run`].

use std::process::ExitCode;

use clap::Parser;
use x2gobroker_agent::cli::agentd::Args;
use x2gobroker_agent::daemon::{prepare, run, DaemonError};

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot watch SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("X2GOBROKER_AGENTD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Args::parse().into_config();
    // Refuse an unusable configuration before binding anything.
    if let Err(error) = prepare(&config, config.listen) {
        tracing::error!(%error, "unusable configuration");
        return ExitCode::from(64);
    }
    // SIGHUP reloads (token, certificate, key), never kills: handled before anything listens
    let hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => futures::stream::unfold(hangups, |mut hangups| async move {
            hangups.recv().await.map(|()| ((), hangups))
        }),
        Err(error) => {
            tracing::error!(%error, "cannot handle SIGHUP");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(listen = %config.listen, %error, "cannot listen");
            return ExitCode::from(64);
        }
    };
    if let Ok(address) = listener.local_addr() {
        // Machine-readable start-up line (tests listen on port 0 and read it).
        println!("x2gobroker-agentd listening on {address}");
    }
    match run(config, listener, shutdown_signal(), hangups).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(DaemonError::Config(error)) => {
            tracing::error!(%error, "unusable configuration");
            ExitCode::from(64)
        }
        Err(error) => {
            tracing::error!(%error, "agent failed");
            ExitCode::FAILURE
        }
    }
}
