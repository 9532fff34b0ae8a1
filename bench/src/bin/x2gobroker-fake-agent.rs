//! x2gobroker-fake-agent: N simulated X2Go servers behind the real agent gRPC service, on 127.0.0.0/8.

use clap::Parser;
use std::net::Ipv4Addr;
use std::time::Duration;
use x2gobroker_bench::fake_agent::{FakeFarm, FakeFarmConfig};

#[derive(Parser, Debug)]
#[command(
    name = "x2gobroker-fake-agent",
    about = "Serves N simulated X2Go servers (agent gRPC service) on loopback addresses"
)]
struct Cli {
    /// Number of simulated servers.
    #[arg(long, default_value_t = 10)]
    servers: usize,
    /// Sessions per server (even ones suspended, odd ones running).
    #[arg(long, default_value_t = 20)]
    sessions: usize,
    /// Delay of every answer, milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of calls that fail with UNAVAILABLE (0..1).
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Port of every server (0: a free one, printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address of the first server; the others count up (must stay in 127.0.0.0/8).
    #[arg(long, default_value = "127.10.0.1")]
    first_address: Ipv4Addr,
    /// Server names: prefix + number.
    #[arg(long, default_value = "s")]
    name_prefix: String,
    /// Seconds to serve (bounded: the fake stops by itself).
    #[arg(long, default_value_t = 600)]
    seconds: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let farm = FakeFarm::start(FakeFarmConfig {
        servers: cli.servers,
        sessions_per_server: cli.sessions,
        latency: Duration::from_millis(cli.latency_ms),
        failure_rate: cli.failure_rate,
        port: cli.port,
        first_address: cli.first_address,
        name_prefix: cli.name_prefix,
        ..FakeFarmConfig::default()
    })?;
    println!("agent-port = {}", farm.port());
    for server in farm.servers() {
        println!("{}", server.profile_host());
    }
    std::thread::sleep(Duration::from_secs(cli.seconds));
    Ok(())
}
