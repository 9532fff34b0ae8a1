//! The soak: minutes of mixed logins, listings and selections against a synthetic farm whose agents flap, sampling the broker's memory, open files, threads and cookie files.

use crate::config::ConfigDir;
use crate::fake_agent::{FakeFarm, FakeFarmConfig};
use crate::load::{self, Connection};
use crate::procstat;
use crate::report::{format_ms, mb};
use crate::servers::{self, OursBinary};
use hdrhistogram::Histogram;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use x2gobroker_proto::agent::v1 as pb;

/// The testsuite mechanism's accounts (`auth/mod.rs`): the only logins that need no PAM.
const ACCOUNTS: [(&str, &str); 2] = [("test", "sweet"), ("jacques", "th%C3%A9r%C3%A8se")];

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub ours: OursBinary,
    pub work_directory: PathBuf,
    pub duration: Duration,
    /// Simulated servers, and how many of them are down at any time.
    pub servers: usize,
    pub flapping: usize,
    /// How long a flapping server stays down (then up as long, the next ones go down).
    pub flap_period: Duration,
    /// Closed-loop clients, each running rounds of listing → listing → selection → listing,
    /// every request with the cookie the previous answer handed on.
    pub clients: usize,
    /// A client's round starts with a password login when this long has passed since its last
    /// one (a client restarted: its last cookie is abandoned), and after a failure.
    pub login_every: Duration,
    pub sample_every: Duration,
}

/// One sample of the broker process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub at: Duration,
    pub rss_kb: u64,
    pub open_files: usize,
    pub threads: u64,
    pub cookie_files: usize,
    pub requests: u64,
    pub failed: u64,
}

/// The whole run.
#[derive(Debug)]
pub struct SoakResult {
    pub samples: Vec<Sample>,
    pub peak_rss_kb: u64,
    pub requests: u64,
    pub failed: u64,
    pub first_failures: Vec<String>,
    pub latency: Histogram<u64>,
    pub selections: u64,
    /// Password logins (each a new cookie; the client's previous one abandoned).
    pub logins: u64,
    pub outages: u64,
}

/// Counters the clients share.
#[derive(Debug)]
struct Tally {
    requests: u64,
    failed: u64,
    selections: u64,
    logins: u64,
    first_failures: Vec<String>,
    latency: Histogram<u64>,
}

impl Tally {
    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.first_failures.len() < 5 {
            self.first_failures.push(what);
        }
    }
}

/// `x2gobroker.conf` of the soak: passwords (testsuite mechanism) and dynamic cookies, the
/// farm's agents over gRPC.
pub fn soak_broker_conf(profiles: &Path, agent_port: u16) -> String {
    format!(
        "[global]\nrequire-password = true\nrequire-cookie = false\ndefault-auth-mech = testsuite\n\
         use-static-authid = false\ndefault-portscan-x2goservers = false\nenable-plain-output = true\n\n\
         [broker_inifile]\nenable = true\nsession-profiles = {}\n\n\
         [farm]\nagent-port = {agent_port}\nheartbeat-ms = 1000\ncall-timeout-ms = 2000\n",
        profiles.display()
    )
}

/// The run: farm, broker, clients, the flapping, the samples.
pub async fn run(options: &SoakOptions) -> anyhow::Result<SoakResult> {
    let farm = Arc::new(FakeFarm::start(FakeFarmConfig {
        servers: options.servers,
        sessions_per_server: 10,
        first_address: Ipv4Addr::new(127, 20, 0, 1),
        ..FakeFarmConfig::default()
    })?);
    let names: Vec<String> = farm
        .servers()
        .iter()
        .map(|server| server.name.clone())
        .collect();
    // the accounts have sessions to resume and take over: test a suspended one, jacques a
    // running one (after its take-over it is suspended, then resumed)
    farm.set_status(&names[0], "test", pb::SessionStatus::Suspended)?;
    farm.set_status(&names[1], "jacques", pb::SessionStatus::Running)?;
    let hosts: Vec<String> = farm
        .servers()
        .iter()
        .map(|server| server.profile_host())
        .collect();
    let config = ConfigDir::write(
        &options.work_directory.join("soak"),
        |profiles| soak_broker_conf(profiles, farm.port()),
        &crate::config::farm_profiles(&hosts),
    )?;
    let cookies = config.directory.join("cookies");
    let mut broker = servers::start_ours(&options.ours, &config, "ours")?;
    broker.wait_ready(Duration::from_secs(20)).await?;
    let address = broker.address;
    // the farm reported before the clients start
    tokio::time::sleep(Duration::from_secs(2)).await;

    let started = Instant::now();
    let end = started + options.duration;
    let tally = Arc::new(Mutex::new(Tally {
        requests: 0,
        failed: 0,
        selections: 0,
        logins: 0,
        first_failures: Vec::new(),
        latency: load::new_histogram(),
    }));
    let clients: Vec<_> = (0..options.clients)
        .map(|index| {
            tokio::spawn(client(
                address,
                ACCOUNTS[index % ACCOUNTS.len()],
                options.login_every,
                end,
                tally.clone(),
            ))
        })
        .collect();
    // the first `flapping` servers beyond the two with the accounts' sessions take turns
    // going down; the accounts' servers stay healthy so that every request has one
    let flapper = {
        let (farm, names) = (farm.clone(), names.clone());
        let (flapping, period) = (options.flapping, options.flap_period);
        tokio::spawn(async move {
            let candidates: Vec<String> = names.into_iter().skip(2).collect();
            let mut outages = 0u64;
            let mut round = 0usize;
            while Instant::now() < end && !candidates.is_empty() {
                let down: Vec<&String> = (0..flapping)
                    .map(|offset| &candidates[(round * flapping + offset) % candidates.len()])
                    .collect();
                for name in &down {
                    let _ = farm.set_down(name, true);
                    outages += 1;
                }
                tokio::time::sleep(period).await;
                for name in &down {
                    let _ = farm.set_down(name, false);
                }
                tokio::time::sleep(period).await;
                round += 1;
            }
            outages
        })
    };
    let mut samples = Vec::new();
    let mut peak_rss_kb = 0;
    loop {
        let now = Instant::now();
        let pid = broker.pid();
        let (requests, failed) = {
            let tally = tally
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            (tally.requests, tally.failed)
        };
        let sample = Sample {
            at: now - started,
            rss_kb: procstat::status_kb(pid, "VmRSS").unwrap_or(0),
            open_files: procstat::open_files(pid),
            threads: procstat::status_kb(pid, "Threads").unwrap_or(0),
            cookie_files: std::fs::read_dir(&cookies).map_or(0, Iterator::count),
            requests,
            failed,
        };
        peak_rss_kb = procstat::status_kb(pid, "VmHWM").unwrap_or(peak_rss_kb);
        samples.push(sample);
        if now >= end {
            break;
        }
        tokio::time::sleep(options.sample_every.min(end - now)).await;
    }
    for client in clients {
        let _ = client.await;
    }
    let outages = flapper.await.unwrap_or(0);
    // once the load is gone: what stays
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = broker.pid();
    let last = samples.last().copied().unwrap_or_default();
    samples.push(Sample {
        at: started.elapsed(),
        rss_kb: procstat::status_kb(pid, "VmRSS").unwrap_or(0),
        open_files: procstat::open_files(pid),
        threads: procstat::status_kb(pid, "Threads").unwrap_or(0),
        cookie_files: std::fs::read_dir(&cookies).map_or(0, Iterator::count),
        ..last
    });
    broker.stop();
    let tally = Arc::try_unwrap(tally)
        .map_err(|_| anyhow::anyhow!("clients still running"))?
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(SoakResult {
        samples,
        peak_rss_kb,
        requests: tally.requests,
        failed: tally.failed,
        first_failures: tally.first_failures,
        latency: tally.latency,
        selections: tally.selections,
        logins: tally.logins,
        outages,
    })
}

/// The cookie of an answer (`AUTHID:…` line).
fn authid(answer: &str) -> Option<String> {
    answer
        .lines()
        .find_map(|line| line.strip_prefix("AUTHID:"))
        .map(|cookie| cookie.trim().to_string())
}

/// One client: lists, lists, selects and lists again with the cookie each answer hands on,
/// until `end`, as X2Go Client does while it runs; a round's first listing logs in with the
/// password once `login_every` has passed since the last login (the client restarted) and after
/// a failure, when it also reconnects.
async fn client(
    address: SocketAddr,
    (user, password): (&'static str, &'static str),
    login_every: Duration,
    end: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let mut connection: Option<Connection> = None;
    let mut cookie = None;
    let mut last_login = Instant::now();
    // bounded by `end`; each round is four requests
    while Instant::now() < end {
        if last_login.elapsed() >= login_every {
            cookie = None;
        }
        if cookie.is_none() {
            last_login = Instant::now();
        }
        let steps = ["listing", "listing", "selection", "listing"];
        for step in steps {
            if Instant::now() >= end {
                return;
            }
            let (credentials, label) = match &cookie {
                None => (format!("user={user}&password={password}"), "login"),
                Some(cookie) => (format!("user={user}&authid={cookie}"), step),
            };
            let body = match step {
                "selection" => format!("task=selectsession&sid=farm&{credentials}"),
                _ => format!("task=listsessions&{credentials}"),
            };
            let started = Instant::now();
            let answer = match connection.as_mut() {
                Some(open) => open.post_form("/plain/inifile/", &body).await,
                None => match Connection::open(address).await {
                    Ok(mut open) => {
                        let answer = open.post_form("/plain/inifile/", &body).await;
                        connection = Some(open);
                        answer
                    }
                    Err(error) => Err(error),
                },
            };
            let elapsed = started.elapsed();
            let mut tally = tally
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            tally.requests += 1;
            let good = match &answer {
                Ok(text) if step == "selection" => text.contains("SERVER:"),
                Ok(text) => text.contains("[farm]"),
                Err(_) => false,
            };
            if good {
                load::record(&mut tally.latency, elapsed);
                if step == "selection" {
                    tally.selections += 1;
                }
                if label == "login" {
                    tally.logins += 1;
                }
                cookie = answer.as_ref().ok().and_then(|text| authid(text));
            } else {
                let what = match &answer {
                    Ok(text) => format!(
                        "{label} of {user}: {}",
                        text.chars().take(160).collect::<String>()
                    ),
                    Err(error) => format!("{label} of {user}: {error:#}"),
                };
                tally.fail(what);
                connection = None;
                cookie = None;
                break;
            }
        }
    }
}

/// The report: the samples over time and the totals.
pub fn render(result: &SoakResult, options: &SoakOptions) -> String {
    let mut out =
        String::from("## Soak: mixed logins, listings and selections on a flapping farm\n\n");
    out.push_str(&format!(
        "Our broker (release) with {} fake agents (gRPC watch, heartbeat 1 s) and one profile over all of them; {} closed-loop clients (testsuite accounts `test` and `jacques`; rounds of listing → listing → selection → listing, each request with the dynamic cookie the previous answer handed on, a password login every {:?} per client and after a failure) for {:?}; {} servers at a time down for {:?} then up as long (every call UNAVAILABLE, watch streams ended), {} outages in all; the accounts' own servers never flap.\n\n",
        options.servers,
        options.clients,
        options.login_every,
        options.duration,
        options.flapping,
        options.flap_period,
        result.outages
    ));
    out.push_str("| at s | RSS MB | open files | threads | cookie files | requests | failed |\n|---:|---:|---:|---:|---:|---:|---:|\n");
    for sample in &result.samples {
        out.push_str(&format!(
            "| {:.0} | {:.1} | {} | {} | {} | {} | {} |\n",
            sample.at.as_secs_f64(),
            mb(sample.rss_kb),
            sample.open_files,
            sample.threads,
            sample.cookie_files,
            sample.requests,
            sample.failed
        ));
    }
    let quantile = |q: f64| load::quantile_ms(&result.latency, q);
    out.push_str(&format!(
        "\nPeak RSS {:.1} MB. Requests {} ({} selections, {} password logins), failed {}. Latency p50 {} ms, p99 {} ms, max {} ms.\n",
        mb(result.peak_rss_kb),
        result.requests,
        result.selections,
        result.logins,
        result.failed,
        format_ms(quantile(0.5)),
        format_ms(quantile(0.99)),
        format_ms(quantile(1.0)),
    ));
    for failure in &result.first_failures {
        out.push_str(&format!("- failure: {failure}\n"));
    }
    out
}
