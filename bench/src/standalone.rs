//! The servers this binary can itself be: the bare "hello" ceiling and our broker served from the library.

use axum::body::Bytes;
use std::net::SocketAddr;
use std::path::Path;

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // the broker's own runtime: multi-thread, one worker per core
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

/// The ceiling: axum on hyper, the broker's own accept loop (`x2gobroker::http::serve`), one
/// handler that reads the request body and answers a constant.
pub fn serve_hello(address: SocketAddr) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let router = axum::Router::new().fallback(|_body: Bytes| async { "hello" });
        let listener = bind(address).await?;
        let limits = x2gobroker::config::HttpLimits::default();
        x2gobroker::http::serve(
            listener,
            None,
            router,
            &limits,
            x2gobroker::http::TrustedPeers::none(),
            shutdown_signal(),
        )
        .await;
        Ok(())
    })
}

/// Our broker from its library, as `x2gobroker-daemon -C config -b address` runs it (settings
/// from the environment, the live farm when `[farm]` is configured); used by the smoke test,
/// where the daemon binary of another package is not built.
pub fn serve_broker(config_path: &Path, address: SocketAddr) -> anyhow::Result<()> {
    use x2gobroker::service::Broker;
    use x2gobroker::store::ConfigStore;
    x2gobroker::logging::init(false);
    let command_line = x2gobroker::config::startup::CommandLine {
        config_file: Some(config_path.to_path_buf()),
        ..Default::default()
    };
    let startup = x2gobroker::app::startup_settings(command_line, "x2gobroker-daemon");
    let store = ConfigStore::open(
        Some(startup.config_file.clone()),
        Some(startup.session_profiles.clone()),
    );
    let farm = x2gobroker::app::start_farm(&store, &startup, x2gobroker::cli::Mode::Http)
        .map_err(anyhow::Error::msg)?;
    let broker = Broker::with_farm(store, startup, farm);
    runtime()?.block_on(async move {
        let listener = bind(address).await?;
        x2gobroker::app::serve(listener, None, broker, shutdown_signal()).await;
        Ok(())
    })
}
