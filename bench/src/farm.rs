//! Farm benchmarks: our broker keeping N fake servers live (N = 10, 100, 1000): CPU, memory, selection under load, change latency, take-over, login storm.

use crate::compare::{log, measure, progress};
use crate::config::{self, ConfigDir};
use crate::fake_agent::{session_user, FakeFarm, FakeFarmConfig};
use crate::load::{self, Connection, LoadSpec, Scenario};
use crate::procstat::Window;
use crate::report::{self, format_ms, Measurement};
use crate::servers::{self, OursBinary};
use anyhow::{bail, Context as _};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;
use x2gobroker_proto::agent::v1::SessionStatus;

const PATH: &str = "/plain/inifile/";
/// The probe's session: the running session number 3 of the middle server (an existing one,
/// so every server keeps the same number of sessions and the storm's even share is exact).
const PROBE_SESSION: usize = 3;

/// What to run.
#[derive(Debug, Clone)]
pub struct FarmOptions {
    pub ours: OursBinary,
    pub sizes: Vec<usize>,
    pub sessions_per_server: usize,
    pub heartbeat_ms: u64,
    /// How long the idle broker's CPU time is sampled.
    pub idle_window: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    pub concurrencies: Vec<usize>,
    /// The login storm: this many simultaneous new-session selections …
    pub storm_users: usize,
    /// … on the farm of this size (no storm on other sizes).
    pub storm_servers: usize,
    pub change_probes: usize,
    pub takeovers: usize,
    pub work_directory: PathBuf,
}

/// A distribution's summary in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    /// Summarises durations (nearest-rank quantiles).
    pub fn of(durations: &[Duration]) -> Spread {
        if durations.is_empty() {
            return Spread::default();
        }
        let mut millis: Vec<f64> = durations
            .iter()
            .map(|duration| duration.as_secs_f64() * 1000.0)
            .collect();
        millis.sort_by(f64::total_cmp);
        let at = |quantile: f64| {
            let rank = ((quantile * millis.len() as f64).ceil() as usize).clamp(1, millis.len());
            millis[rank - 1]
        };
        Spread {
            count: millis.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// The login storm's outcome.
#[derive(Debug, Clone, Default)]
pub struct Storm {
    pub requests: usize,
    pub servers: usize,
    pub latency: Spread,
    pub errors: u64,
    pub first_error: Option<String>,
    pub min_per_server: usize,
    pub max_per_server: usize,
    pub even_share: f64,
    /// Largest distance of a server's count from the even share, in percent of it.
    pub max_deviation_pct: f64,
    /// The same storm sent straight to a balancer actor (no HTTP): each decision's time from
    /// its message being sent (all at once) to its answer.
    pub balancer: Spread,
    /// How the balancer-only storm spread: fewest and most per server.
    pub balancer_per_server: (usize, usize),
}

/// Everything measured on one farm size.
#[derive(Debug, Clone, Default)]
pub struct FarmResult {
    pub servers: usize,
    pub sessions: usize,
    /// From the first request to every probed server being live in the broker.
    pub ready_after: Duration,
    /// CPU of the idle broker keeping the farm live, in cores (1.0 = one core).
    pub idle_cpu: f64,
    pub idle_rss_kb: u64,
    pub peak_rss_kb: u64,
    pub selections: Vec<Measurement>,
    pub change: Spread,
    pub change_failures: usize,
    pub takeover: Spread,
    pub takeover_failures: usize,
    pub storm: Option<Storm>,
}

fn selection_body(user: &str) -> String {
    format!("task=selectsession&sid=farm&user={user}")
}

fn server_of(answer: &str) -> Option<&str> {
    answer.lines().find_map(|line| line.strip_prefix("SERVER:"))
}

/// The login storm against the balancer actor alone, on its own actix System: `servers` Up
/// servers with `sessions` sessions each, then `users` new-session selections sent at once.
/// Returns each decision's latency and the fewest/most decisions per server.
pub fn balancer_storm(
    servers: usize,
    sessions: usize,
    users: usize,
) -> anyhow::Result<(Spread, (usize, usize))> {
    use x2gobroker::farm::balancer::{AgentReported, Balancer, SelectServer};
    use x2gobroker::farm::model::{Health, SessionStatus, SessionView, Via};
    use x2gobroker::farm::policy::{Decision, Ranking};
    let thread = std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            use actix::Actor as _;
            let balancer = Balancer::new(Duration::from_secs(30)).start();
            let hosts: Vec<String> = (0..servers).map(|index| format!("s{index:04}")).collect();
            for host in &hosts {
                let sessions = (0..sessions)
                    .map(|index| SessionView {
                        session_id: format!("{host}-{index}"),
                        user: format!("{host}-user{index}"),
                        server: host.clone(),
                        status: if index % 2 == 0 {
                            SessionStatus::Suspended
                        } else {
                            SessionStatus::Running
                        },
                        raw_line: format!("{index}|{host}-{index}|50|{host}|S|x"),
                    })
                    .collect();
                balancer.do_send(AgentReported {
                    server: host.clone(),
                    sessions: Some(sessions),
                    load_factor: None,
                    health: Health::Up,
                    via: Via::Grpc,
                });
            }
            let hosts: std::sync::Arc<[String]> = hosts.into();
            let asks = (0..users).map(|index| {
                let request = SelectServer {
                    hosts: hosts.clone(),
                    user: format!("storm{index}"),
                    asked: Vec::new(),
                    excluded: Vec::new(),
                    ranking: Ranking::Sessions,
                    record: true,
                    shared: None,
                };
                let sent = Instant::now();
                let answer = balancer.send(request);
                async move { (answer.await, sent.elapsed()) }
            });
            futures::future::join_all(asks).await
        })
    });
    let answers = thread
        .join()
        .map_err(|_| anyhow::anyhow!("the balancer storm panicked"))?;
    let mut latencies = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (answer, latency) in answers {
        let Ok(selected) = answer else {
            bail!("the balancer did not answer");
        };
        let Decision::New { host } = selected.decision else {
            bail!(
                "storm decision {:?} is not a new session",
                selected.decision
            );
        };
        *counts.entry(host).or_default() += 1;
        latencies.push(latency);
    }
    let fewest = if counts.len() < servers {
        0
    } else {
        counts.values().copied().min().unwrap_or(0)
    };
    let most = counts.values().copied().max().unwrap_or(0);
    Ok((Spread::of(&latencies), (fewest, most)))
}

/// Counts per server and how far they are from the even share.
pub fn storm_spread(answers: &[String], servers: usize) -> (usize, usize, f64, f64) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for answer in answers {
        *counts
            .entry(server_of(answer).unwrap_or("none"))
            .or_default() += 1;
    }
    let even = answers.len() as f64 / servers.max(1) as f64;
    let mut all: Vec<usize> = counts.values().copied().collect();
    all.resize(servers.max(all.len()), 0);
    let min = all.iter().copied().min().unwrap_or(0);
    let max = all.iter().copied().max().unwrap_or(0);
    let deviation = all
        .iter()
        .map(|count| (*count as f64 - even).abs() / even.max(1e-9) * 100.0)
        .fold(0.0, f64::max);
    (min, max, even, deviation)
}

/// Waits until `check` holds for the broker's answer to `body`, polling; returns the time it took.
async fn poll_until(
    connection: &mut Connection,
    body: &str,
    limit: Duration,
    interval: Duration,
    check: impl Fn(&str) -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let answer = connection.post_form(PATH, body).await?;
        if check(&answer) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!(
                "not seen within {limit:?}; last answer: {}",
                answer.chars().take(300).collect::<String>()
            );
        }
        tokio::time::sleep(interval).await;
    }
}

/// One farm size, end to end.
pub async fn run_one(
    options: &FarmOptions,
    size: usize,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<FarmResult> {
    let per_server = options.sessions_per_server.max(PROBE_SESSION + 1);
    let farm = FakeFarm::start(FakeFarmConfig {
        servers: size,
        sessions_per_server: per_server,
        ..FakeFarmConfig::default()
    })?;
    let servers = farm.servers().to_vec();
    let probe_index = size / 2;
    let probe_user = session_user(probe_index, per_server, PROBE_SESSION);
    let hosts: Vec<String> = servers.iter().map(|server| server.profile_host()).collect();
    let config_dir = ConfigDir::write(
        &options.work_directory.join(format!("farm-{size}")),
        |profiles| config::farm_broker_conf(profiles, farm.port(), options.heartbeat_ms),
        &config::farm_profiles(&hosts),
    )?;
    let mut broker = servers::start_ours(&options.ours, &config_dir, &format!("ours-farm-{size}"))?;
    broker.wait_ready(Duration::from_secs(20)).await?;
    let pid = broker.pid();
    let mut result = FarmResult {
        servers: size,
        sessions: farm.total_sessions(),
        ..FarmResult::default()
    };
    let mut peak_rss = 0;

    // 1. the first request starts the supervisors; wait until first, middle and last are live
    bar.set_message(format!("N={size}: supervisors starting"));
    let started = Instant::now();
    let mut connection = Connection::open(broker.address).await?;
    let listing = format!("task=listsessions&user={probe_user}");
    let probe_host = format!("\nhost={}\n", servers[probe_index].name);
    poll_until(
        &mut connection,
        &listing,
        Duration::from_secs(60),
        Duration::from_millis(20),
        |answer| answer.contains(&probe_host) && answer.contains("\nstatus=R\n"),
    )
    .await
    .context("the probe user's running session never showed in the listing")?;
    for index in [0, size / 3, size - 1] {
        let user = session_user(index, per_server, 0);
        let expected = format!("{}:22", servers[index].address);
        poll_until(
            &mut connection,
            &selection_body(&user),
            Duration::from_secs(30),
            Duration::from_millis(20),
            |answer| {
                server_of(answer) == Some(expected.as_str()) && answer.contains("SESSION_INFO:")
            },
        )
        .await
        .with_context(|| format!("server {} never became live", servers[index].name))?;
    }
    result.ready_after = started.elapsed();

    // 2. keeping the farm live, idle: CPU and memory
    bar.set_message(format!("N={size}: idle CPU over {:?}", options.idle_window));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut window = Window::start(pid);
    let idle_end = Instant::now() + options.idle_window;
    while Instant::now() < idle_end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        window.sample();
    }
    let idle = window.finish();
    result.idle_cpu = idle.cpu_cores;
    result.idle_rss_kb = idle.peak_rss_kb;
    peak_rss = peak_rss.max(idle.peak_rss_kb);

    // 3. the login storm, on a fresh state (no placements pending yet)
    if size == options.storm_servers && options.storm_users > 0 {
        bar.set_message(format!("N={size}: login storm of {}", options.storm_users));
        let bodies: Vec<String> = (0..options.storm_users)
            .map(|index| selection_body(&format!("storm{index}")))
            .collect();
        let window = Window::start(pid);
        let burst = load::burst(broker.address, PATH, &bodies, Duration::from_secs(60)).await;
        let usage = window.finish();
        peak_rss = peak_rss.max(usage.peak_rss_kb);
        let latencies: Vec<Duration> = burst.answers.iter().map(|(latency, _)| *latency).collect();
        let texts: Vec<String> = burst.answers.iter().map(|(_, text)| text.clone()).collect();
        let (min, max, even, deviation) = storm_spread(&texts, size);
        let (balancer, balancer_per_server) =
            balancer_storm(size, options.sessions_per_server, bodies.len())?;
        result.storm = Some(Storm {
            balancer,
            balancer_per_server,
            requests: bodies.len(),
            servers: size,
            latency: Spread::of(&latencies),
            errors: burst.errors,
            first_error: burst.first_error,
            min_per_server: min,
            max_per_server: max,
            even_share: even,
            max_deviation_pct: deviation,
        });
    }

    // 4. a session change on an agent until the broker's listing shows it
    bar.set_message(format!("N={size}: change latency"));
    let mut changes = Vec::new();
    for flip in 0..options.change_probes {
        let (status, letter) = if flip % 2 == 0 {
            (SessionStatus::Suspended, "S")
        } else {
            (SessionStatus::Running, "R")
        };
        let expected = format!("\nstatus={letter}\n");
        let changed_at = farm.set_status(&servers[probe_index].name, &probe_user, status)?;
        let seen = poll_until(
            &mut connection,
            &listing,
            Duration::from_secs(5),
            Duration::from_millis(1),
            |answer| answer.contains(&expected),
        )
        .await;
        match seen {
            Ok(_) => changes.push(changed_at.elapsed()),
            Err(_) => result.change_failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    result.change = Spread::of(&changes);

    // 5. take-overs: a user's running session is suspended through the agent and handed out
    bar.set_message(format!("N={size}: take-overs"));
    let mut takeovers = Vec::new();
    for number in 0..options.takeovers {
        let index = (number * 7919 + 1) % size;
        let user = session_user(index, per_server, 1);
        let started = Instant::now();
        let answer = connection.post_form(PATH, &selection_body(&user)).await?;
        let elapsed = started.elapsed();
        let suspended = answer
            .lines()
            .any(|line| line.starts_with("SESSION_INFO:") && line.contains("|S|"));
        if suspended {
            takeovers.push(elapsed);
        } else {
            result.takeover_failures += 1;
        }
    }
    result.takeover = Spread::of(&takeovers);

    // 6. selections under load: resuming suspended sessions, and placing new ones
    let resume_bodies: Vec<String> = (0..size)
        .flat_map(|index| {
            (0..per_server)
                .step_by(2)
                .map(move |number| (index, number))
        })
        .take(4000)
        .map(|(index, number)| selection_body(&session_user(index, per_server, number)))
        .collect();
    let new_bodies: Vec<String> = (0..5000)
        .map(|index| selection_body(&format!("new{index}")))
        .collect();
    let scenarios = [
        Scenario::post("select: resume", PATH, resume_bodies, Some("SESSION_INFO:")),
        Scenario::post(
            "select: new session",
            PATH,
            new_bodies,
            Some("SERVER:127.10."),
        ),
    ];
    for scenario in &scenarios {
        for &concurrency in &options.concurrencies {
            bar.set_message(format!("N={size}: {} c={concurrency}", scenario.name));
            let spec = LoadSpec {
                concurrency,
                warmup: options.warmup,
                duration: options.duration,
                request_timeout: Duration::from_secs(10),
            };
            let mut row = measure(&broker, scenario, spec).await;
            row.target = format!("ours N={size}");
            peak_rss = peak_rss.max(row.usage.peak_rss_kb);
            log(bar, row.summary());
            result.selections.push(row);
        }
    }
    result.peak_rss_kb = peak_rss;
    broker.stop();
    Ok(result)
}

/// Every farm size in turn.
pub async fn run(options: &FarmOptions) -> anyhow::Result<Vec<FarmResult>> {
    let bar = progress(options.sizes.len() as u64, "farm");
    let mut results = Vec::new();
    for &size in &options.sizes {
        let result = run_one(options, size, &bar)
            .await
            .with_context(|| format!("farm of {size} servers"))?;
        log(&bar, format!(
            "farm N={size}: ready after {:?}, idle CPU {:.1} % of a core, idle RSS {:.1} MB, change visible p50 {} ms max {} ms",
            result.ready_after,
            result.idle_cpu * 100.0,
            report::mb(result.idle_rss_kb),
            format_ms(result.change.p50_ms),
            format_ms(result.change.max_ms)
        ));
        results.push(result);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(results)
}

fn find<'a>(result: &'a FarmResult, scenario: &str, concurrency: usize) -> Option<&'a Measurement> {
    result
        .selections
        .iter()
        .find(|row| row.scenario == scenario && row.concurrency == concurrency)
}

/// The farm tables.
pub fn render(results: &[FarmResult], options: &FarmOptions) -> String {
    let mut text = String::from("### Synthetic farm (fake agents, watch streams)\n\n");
    let top = options.concurrencies.iter().copied().max().unwrap_or(1);
    let low = options.concurrencies.iter().copied().min().unwrap_or(1);
    let _ = writeln!(
        text,
        "| servers | sessions | live after | idle CPU (% of one core) | idle RSS MB | peak RSS MB | resume c={top} req/s | resume c={top} p99 ms | resume c={low} p50 ms | new c={top} req/s | new c={top} p99 ms | change visible p50 / max ms | take-over p50 / max ms |"
    );
    text.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for result in results {
        let rps = |row: Option<&Measurement>| {
            row.map_or("–".to_string(), |row| format!("{:.0}", row.rps))
        };
        let ms = |row: Option<&Measurement>, pick: fn(&Measurement) -> f64| {
            row.map_or("–".to_string(), |row| format_ms(pick(row)))
        };
        let resume_top = find(result, "select: resume", top);
        let resume_low = find(result, "select: resume", low);
        let new_top = find(result, "select: new session", top);
        let failures = |count: usize| {
            if count > 0 {
                format!(" ({count} not seen)")
            } else {
                String::new()
            }
        };
        let _ = writeln!(
            text,
            "| {} | {} | {:.1} s | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} / {}{} | {} / {}{} |",
            result.servers,
            result.sessions,
            result.ready_after.as_secs_f64(),
            result.idle_cpu * 100.0,
            report::mb(result.idle_rss_kb),
            report::mb(result.peak_rss_kb),
            rps(resume_top),
            ms(resume_top, |row| row.p99_ms),
            ms(resume_low, |row| row.p50_ms),
            rps(new_top),
            ms(new_top, |row| row.p99_ms),
            format_ms(result.change.p50_ms),
            format_ms(result.change.max_ms),
            failures(result.change_failures),
            format_ms(result.takeover.p50_ms),
            format_ms(result.takeover.max_ms),
            failures(result.takeover_failures),
        );
    }
    for result in results {
        if let Some(storm) = &result.storm {
            let _ = writeln!(
                text,
                "\n**Login storm**: {} simultaneous new-session selections over {} servers: end to end (HTTP, all sent at once on the same 2 cores) p50 {} ms, p99 {} ms, max {} ms; per server {}–{} (even share {:.1}, largest deviation {:.0} %); {} errors{}. The balancer's decisions alone (the same storm as {} messages sent at once to the actor): p50 {} ms, p99 {} ms, max {} ms, per server {}–{}.",
                storm.requests,
                storm.servers,
                format_ms(storm.latency.p50_ms),
                format_ms(storm.latency.p99_ms),
                format_ms(storm.latency.max_ms),
                storm.min_per_server,
                storm.max_per_server,
                storm.even_share,
                storm.max_deviation_pct,
                storm.errors,
                storm.first_error.as_deref().map(|error| format!(" (first: {error})")).unwrap_or_default(),
                storm.requests,
                format_ms(storm.balancer.p50_ms),
                format_ms(storm.balancer.p99_ms),
                format_ms(storm.balancer.max_ms),
                storm.balancer_per_server.0,
                storm.balancer_per_server.1,
            );
        }
    }
    let rows: Vec<Measurement> = results
        .iter()
        .flat_map(|result| result.selections.clone())
        .collect();
    text.push_str("\n#### Every farm selection run\n\n");
    text.push_str(&report::raw_table(&rows));
    let _ = writeln!(
        text,
        "\n- {} sessions per server (even ones suspended, odd ones running, one user each); watch heartbeat {} ms; idle CPU sampled over {:?} from /proc/PID/stat; \"change visible\" = from the fake agent changing a session to the broker's listing showing the new S/R status (polled every 1 ms)",
        options.sessions_per_server, options.heartbeat_ms, options.idle_window
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_use_nearest_rank() {
        let durations: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let spread = Spread::of(&durations);
        assert_eq!(
            (spread.p50_ms, spread.p99_ms, spread.max_ms),
            (50.0, 99.0, 100.0)
        );
        assert_eq!(Spread::of(&[]).count, 0);
    }

    #[test]
    fn the_balancer_storm_spreads_evenly() {
        let (latency, (fewest, most)) = balancer_storm(10, 4, 100).unwrap();
        assert_eq!((fewest, most), (10, 10));
        assert!(latency.max_ms > 0.0 && latency.p50_ms <= latency.max_ms);
    }

    #[test]
    fn storm_spread_counts_servers_that_got_nothing() {
        let answers: Vec<String> = ["SERVER:a:22", "SERVER:a:22", "SERVER:b:22", "SERVER:b:22"]
            .iter()
            .map(|text| text.to_string())
            .collect();
        let (min, max, even, deviation) = storm_spread(&answers, 4);
        assert_eq!((min, max, even), (0, 2, 1.0));
        assert_eq!(deviation, 100.0);
    }
}
