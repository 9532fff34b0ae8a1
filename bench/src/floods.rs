//! Latency of normal listings while hostile clients flood our broker (slow bodies, slow heads, idle connections, big bodies, all at once), with the broker's memory and open files.

use crate::compare;
use crate::config::{self, ConfigDir, Flavour};
use crate::fake_agent::{FakeFarm, FakeFarmConfig};
use crate::load::{self, LoadResult, LoadSpec};
use crate::procstat;
use crate::report::{format_ms, mb};
use crate::servers::{self, OursBinary};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The target of issue #14: normal requests stay this quick under every flood.
pub const TARGET_P99: Duration = Duration::from_millis(50);

/// What to run.
#[derive(Debug, Clone)]
pub struct FloodOptions {
    pub ours: OursBinary,
    pub work_directory: PathBuf,
    pub warmup: Duration,
    pub duration: Duration,
    /// Closed-loop workers sending normal listings.
    pub concurrency: usize,
    pub slow_bodies: usize,
    pub slow_heads: usize,
    pub idle_connections: usize,
    pub big_bodies: usize,
}

/// The hostile clients of one phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attack {
    pub slow_bodies: usize,
    pub slow_heads: usize,
    pub idle_connections: usize,
    pub big_bodies: usize,
}

/// One phase: normal listings measured while `attack` runs.
#[derive(Debug)]
pub struct Phase {
    pub name: String,
    pub attack: Attack,
    pub load: LoadResult,
    /// Connections the broker ended (answered 408/503, or closed) while the phase ran.
    pub ended_by_broker: u64,
    /// Big-body requests answered.
    pub big_answered: u64,
    pub peak_rss_kb: u64,
    pub open_files: usize,
}

/// Counters the attackers share.
#[derive(Debug, Default)]
struct Tally {
    ended_by_broker: AtomicU64,
    big_answered: AtomicU64,
}

/// Runs every phase against one broker and returns them in order.
pub async fn run(options: &FloodOptions) -> anyhow::Result<Vec<Phase>> {
    let farm = FakeFarm::start(FakeFarmConfig::five_nodes())?;
    let flavour = Flavour::Ours {
        agent_port: farm.port(),
    };
    let broker_config = ConfigDir::write(
        &options.work_directory.join("floods"),
        |profiles| config::comparison_broker_conf(flavour, profiles),
        &config::comparison_profiles(flavour),
    )?;
    let mut broker = servers::start_ours(&options.ours, &broker_config, "ours")?;
    broker.wait_ready(Duration::from_secs(20)).await?;
    let listing = compare::scenarios()
        .into_iter()
        .find(|scenario| scenario.name == "listsessions")
        .ok_or_else(|| anyhow::anyhow!("no listsessions scenario"))?;
    let each = |name: &str, attack: Attack| (name.to_string(), attack);
    let phases = [
        each("no flood", Attack::default()),
        each(
            "slow bodies",
            Attack {
                slow_bodies: options.slow_bodies,
                ..Attack::default()
            },
        ),
        each(
            "slow heads",
            Attack {
                slow_heads: options.slow_heads,
                ..Attack::default()
            },
        ),
        each(
            "idle connections",
            Attack {
                idle_connections: options.idle_connections,
                ..Attack::default()
            },
        ),
        each(
            "big bodies",
            Attack {
                big_bodies: options.big_bodies,
                ..Attack::default()
            },
        ),
        each(
            "all at once",
            Attack {
                slow_bodies: options.slow_bodies,
                slow_heads: options.slow_heads,
                idle_connections: options.idle_connections,
                big_bodies: options.big_bodies,
            },
        ),
    ];
    let mut results = Vec::new();
    for (name, attack) in phases {
        eprintln!("floods: {name}");
        procstat::reset_peak(broker.pid());
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let attackers = start_attack(broker.address, attack, &stop, &tally);
        // the hostile clients are connected and holding before the measurement starts
        tokio::time::sleep(Duration::from_secs(1)).await;
        let load = load::run(
            broker.address,
            &listing,
            LoadSpec {
                concurrency: options.concurrency,
                warmup: options.warmup,
                duration: options.duration,
                request_timeout: Duration::from_secs(5),
            },
        )
        .await;
        let open_files = procstat::open_files(broker.pid());
        let peak_rss_kb = procstat::status_kb(broker.pid(), "VmHWM").unwrap_or(0);
        stop.store(true, Ordering::Relaxed);
        for attacker in attackers {
            attacker.abort();
            let _ = attacker.await;
        }
        results.push(Phase {
            name,
            attack,
            load,
            ended_by_broker: tally.ended_by_broker.load(Ordering::Relaxed),
            big_answered: tally.big_answered.load(Ordering::Relaxed),
            peak_rss_kb,
            open_files,
        });
        // the broker lets go of the aborted connections before the next phase
        load::wait_until_quick(
            broker.address,
            Duration::from_millis(50),
            Duration::from_secs(10),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    broker.stop();
    drop(farm);
    Ok(results)
}

/// Starts the attackers of `attack`; each loops (reconnecting when the broker ends its
/// connection) until `stop` or until it is aborted.
fn start_attack(
    address: SocketAddr,
    attack: Attack,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let mut spawn = |kind: Kind, count: usize| {
        for _ in 0..count {
            let (stop, tally) = (stop.clone(), tally.clone());
            tasks.push(tokio::spawn(attacker(address, kind, stop, tally)));
        }
    };
    spawn(Kind::SlowBody, attack.slow_bodies);
    spawn(Kind::SlowHead, attack.slow_heads);
    spawn(Kind::Idle, attack.idle_connections);
    spawn(Kind::BigBody, attack.big_bodies);
    tasks
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Complete headers announcing a big body, then one byte every half second.
    SlowBody,
    /// A request head one byte every half second, never finished.
    SlowHead,
    /// Connects and sends nothing.
    Idle,
    /// A complete 1 MiB form body of `a&a&…`, again and again.
    BigBody,
}

/// The 1 MiB body of the big-body attacker.
fn big_request() -> Arc<Vec<u8>> {
    static REQUEST: std::sync::OnceLock<Arc<Vec<u8>>> = std::sync::OnceLock::new();
    REQUEST
        .get_or_init(|| {
            let body = "a&".repeat(512 * 1024);
            Arc::new(
                format!(
                    "POST /plain/inifile/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
            )
        })
        .clone()
}

async fn attacker(address: SocketAddr, kind: Kind, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let pause = Duration::from_millis(500);
    // bounded: a phase lasts seconds, the broker's deadlines are 10 s
    for _ in 0..10_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut stream) = TcpStream::connect(address).await else {
            tokio::time::sleep(pause).await;
            continue;
        };
        let ended = match kind {
            Kind::SlowBody => {
                let head = "POST /plain/inifile/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n";
                trickle(&mut stream, head.as_bytes(), b"a", &stop, pause).await
            }
            Kind::SlowHead => {
                trickle(
                    &mut stream,
                    b"POST /plain/inifile/ HTTP/1.1\r\n",
                    b"X",
                    &stop,
                    pause,
                )
                .await
            }
            Kind::Idle => {
                let mut buffer = [0u8; 512];
                loop {
                    tokio::select! {
                        read = stream.read(&mut buffer) => match read {
                            Ok(0) | Err(_) => break true,
                            Ok(_) => {}
                        },
                        () = tokio::time::sleep(pause) => if stop.load(Ordering::Relaxed) { break false },
                    }
                }
            }
            Kind::BigBody => {
                let request = big_request();
                if stream.write_all(&request).await.is_ok() {
                    let mut answer = [0u8; 256];
                    if matches!(stream.read(&mut answer).await, Ok(n) if n > 0) {
                        tally.big_answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                false
            }
        };
        if ended {
            tally.ended_by_broker.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes `head`, then `drip` every `pause` until the broker answers or closes (true) or
/// `stop` (false).
async fn trickle(
    stream: &mut TcpStream,
    head: &[u8],
    drip: &[u8],
    stop: &AtomicBool,
    pause: Duration,
) -> bool {
    if stream.write_all(head).await.is_err() {
        return true;
    }
    let mut buffer = [0u8; 512];
    loop {
        tokio::select! {
            // an answer (408), the end of the stream or an error: the broker ended it
            _ = stream.read(&mut buffer) => return true,
            () = tokio::time::sleep(pause) => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                if stream.write_all(drip).await.is_err() {
                    return true;
                }
            }
        }
    }
}

/// The report: one row per phase, the target, and what the hostile clients got.
pub fn render(phases: &[Phase], options: &FloodOptions) -> String {
    let mut out = String::from("## Floods: normal listings while hostile clients run\n\n");
    out.push_str(&format!(
        "Our broker (release, `[http]` defaults: header and body deadlines 10 s, request 60 s, cap 4096 connections, 1 MiB bodies, 64 parameters) with 50 ACL'd profiles; {} closed-loop keep-alive workers send `task=listsessions&user=alice` for {:?} after {:?} warm-up, while the phase's hostile clients hold their connections (each reconnects when the broker ends it). Target: p99 < {} ms.\n\n",
        options.concurrency,
        options.duration,
        options.warmup,
        TARGET_P99.as_millis()
    ));
    out.push_str("| phase | hostile clients | listings/s | p50 ms | p99 ms | max ms | failed | p99 target | ended by the broker | big bodies answered | peak RSS MB | open files |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n");
    for phase in phases {
        let attack = phase.attack;
        let hostile = format!(
            "{} slow bodies, {} slow heads, {} idle, {} big bodies",
            attack.slow_bodies, attack.slow_heads, attack.idle_connections, attack.big_bodies
        );
        let p99 = phase.load.quantile_ms(0.99);
        let max = phase.load.quantile_ms(1.0);
        out.push_str(&format!(
            "| {} | {hostile} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |\n",
            phase.name,
            phase.load.rps(),
            format_ms(phase.load.quantile_ms(0.5)),
            format_ms(p99),
            format_ms(max),
            phase.load.errors,
            if meets_target(phase) {
                "met"
            } else {
                "**missed**"
            },
            phase.ended_by_broker,
            phase.big_answered,
            mb(phase.peak_rss_kb),
            phase.open_files,
        ));
    }
    if let Some(error) = phases
        .iter()
        .find_map(|phase| phase.load.first_error.clone())
    {
        out.push_str(&format!("\nFirst failed listing: {error}\n"));
    }
    out
}

/// Whether the phase's normal requests all succeeded with p99 under [`TARGET_P99`].
pub fn meets_target(phase: &Phase) -> bool {
    phase.load.errors == 0
        && phase.load.requests > 0
        && phase.load.quantile_ms(0.99) < TARGET_P99.as_secs_f64() * 1000.0
}
