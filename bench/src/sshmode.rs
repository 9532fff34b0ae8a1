//! The SSH-mode comparison: the reference broker and ours, side by side, against the same sshd, setuid Perl agent and X2Go session DB (issue #11, acceptance 2).
//!
//! Both brokers run with the same `x2gobroker.conf` (`default-agent-query-mode = SSH`, no
//! `[farm]` section) and profiles file (`farm5`: x2go-node1..5 on 127.0.0.11–15 at one sshd
//! port), both with `--drop-privileges` as one bench daemon account whose `~/.ssh/id_rsa` is
//! the broker key. After a warm-up, each operation is timed `repetitions` times, each time
//! the reference's request, then ours (alternating, so that the machine's load drifts fall on
//! both alike):
//!
//! - *resume*: `selectsession` of x2goalice (suspended on x2go-node2): `SESSION_INFO` with `S`;
//! - *take-over*: `selectsession` of x2gobob (only running sessions): `SESSION_INFO` with `S`,
//!   and the DB shows that session suspended; the DB is rebuilt after each (not timed);
//! - *new session*: `selectsession` of x2gocarol (no sessions): a farm server, no session line;
//! - *listing*: `listsessions` of x2goalice: `[farm5]` with `status=S` and `host=x2go-node2`;
//! - *X2Go Client*: `listsessions` of x2goalice, then `client_gap` later her `selectsession`
//!   (timed: the selection).
//!
//! Resume runs first and at least [`REUSE_GAP`] after any listing of the same user, so that it
//! is a cold selection in ours too (ours may reuse a listing's answer for the next selection).
//! Every request is a fresh HTTP connection on 127.0.0.1; every loop is bounded. The agent
//! calls and SSH logins each request caused are counted in sshd's log.

pub mod setup;

use crate::servers::{self, ServerProcess};
use anyhow::{bail, Context as _};
use setup::{Account, Sshd, SshdCounts};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;

/// The bench's daemon account (both brokers run as it; never the real `x2gobroker`).
pub const DAEMON_ACCOUNT: &str = "x2gobenchd";
/// The servers' agent account (`X2GOBROKER_AGENT_USER`), in group x2gobroker.
pub const AGENT_ACCOUNT: &str = "x2gobenchsrv";
/// The profile of the five servers.
pub const PROFILE: &str = "farm5";

/// Longer than ours' `legacy-answer-reuse-ms` default (10 s): a selection this long after a
/// listing asks the agents.
pub const REUSE_GAP: Duration = Duration::from_secs(11);

/// What to run.
#[derive(Debug, Clone)]
pub struct SshModeOptions {
    /// Our `x2gobroker-daemon` (release build).
    pub ours: PathBuf,
    /// Our `x2gobroker-keygen` (makes the daemon account's key).
    pub keygen: PathBuf,
    /// `tests/fixtures/x2go-farm.sh`.
    pub fixture: PathBuf,
    pub work_directory: PathBuf,
    /// Timed requests per operation and broker.
    pub repetitions: usize,
    /// Pause between two timed requests.
    pub pause: Duration,
    /// X2Go Client's pause between its listing and its selection.
    pub client_gap: Duration,
    pub request_timeout: Duration,
}

/// The measured operations, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Resume,
    TakeOver,
    NewSession,
    Listing,
    ClientSelect,
}

impl Operation {
    pub const ALL: [Operation; 5] = [
        Operation::Resume,
        Operation::TakeOver,
        Operation::NewSession,
        Operation::Listing,
        Operation::ClientSelect,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::Listing => "listing (`listsessions`, suspended session)",
            Operation::Resume => "resume of a suspended session (`selectsession`)",
            Operation::TakeOver => "take-over of a running session (`selectsession`)",
            Operation::NewSession => "new-session placement (`selectsession`, no session)",
            Operation::ClientSelect => "X2Go Client: `selectsession` 2 s after `listsessions`",
        }
    }

    /// The four operations of the acceptance (the client pattern is reported besides).
    pub fn in_acceptance(self) -> bool {
        self != Operation::ClientSelect
    }
}

/// One timed request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub elapsed: Duration,
    /// What sshd served meanwhile (ours' background pings included).
    pub sshd: SshdCounts,
}

/// Median, minimum and maximum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl Spread {
    pub fn of(values: &[Duration]) -> Option<Spread> {
        let mut sorted = values.to_vec();
        sorted.sort();
        let count = sorted.len();
        if count == 0 {
            return None;
        }
        let median = if count % 2 == 1 {
            sorted[count / 2]
        } else {
            (sorted[count / 2 - 1] + sorted[count / 2]) / 2
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[count - 1],
        })
    }
}

/// The median of counts (lower middle for an even number).
fn median_count(values: &[usize]) -> usize {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

/// One broker's samples.
#[derive(Debug, Clone, Default)]
pub struct BrokerRun {
    pub label: String,
    pub samples: Vec<(Operation, Sample)>,
    /// From start to the first listing with alice's suspended session.
    pub first_good_listing: Duration,
}

impl BrokerRun {
    fn of(&self, operation: Operation) -> Vec<Sample> {
        self.samples
            .iter()
            .filter(|(which, _)| *which == operation)
            .map(|(_, sample)| *sample)
            .collect()
    }

    pub fn spread(&self, operation: Operation) -> Option<Spread> {
        let times: Vec<Duration> = self
            .of(operation)
            .iter()
            .map(|sample| sample.elapsed)
            .collect();
        Spread::of(&times)
    }

    /// Median agent calls and SSH logins per request.
    pub fn calls(&self, operation: Operation) -> (usize, usize) {
        let samples = self.of(operation);
        let commands: Vec<usize> = samples.iter().map(|sample| sample.sshd.commands).collect();
        let logins: Vec<usize> = samples.iter().map(|sample| sample.sshd.logins).collect();
        (median_count(&commands), median_count(&logins))
    }
}

/// Everything the run measured.
#[derive(Debug, Clone)]
pub struct SshModeResult {
    pub reference: BrokerRun,
    pub ours: BrokerRun,
    pub repetitions: usize,
    pub notes: Vec<String>,
}

impl SshModeResult {
    /// ours / reference of the medians.
    pub fn ratio(&self, operation: Operation) -> Option<f64> {
        let reference = self.reference.spread(operation)?.median.as_secs_f64();
        let ours = self.ours.spread(operation)?.median.as_secs_f64();
        (reference > 0.0).then(|| ours / reference)
    }

    /// The acceptance operations whose ratio is above 1.
    pub fn slower(&self) -> Vec<Operation> {
        Operation::ALL
            .into_iter()
            .filter(|operation| operation.in_acceptance())
            .filter(|operation| self.ratio(*operation).is_none_or(|ratio| ratio > 1.0))
            .collect()
    }

    /// The Markdown table and notes.
    pub fn render(&self) -> String {
        let mut text = String::new();
        text.push_str(
            "| operation | reference median ms (min–max) | ours median ms (min–max) | ratio ours/ref | agent calls ref / ours | SSH logins ref / ours |\n\
             |---|---:|---:|---:|---:|---:|\n",
        );
        for operation in Operation::ALL {
            let cell = |run: &BrokerRun| match run.spread(operation) {
                Some(spread) => format!(
                    "{:.0} ({:.0}–{:.0})",
                    ms(spread.median),
                    ms(spread.min),
                    ms(spread.max)
                ),
                None => "–".to_string(),
            };
            let ratio = self
                .ratio(operation)
                .map_or("–".to_string(), |ratio| format!("{ratio:.2}"));
            let (reference_calls, reference_logins) = self.reference.calls(operation);
            let (our_calls, our_logins) = self.ours.calls(operation);
            let _ = writeln!(
                text,
                "| {} | {} | {} | {ratio} | {reference_calls} / {our_calls} | {reference_logins} / {our_logins} |",
                operation.name(),
                cell(&self.reference),
                cell(&self.ours),
            );
        }
        let _ = writeln!(
            text,
            "\n{} timed requests per operation and broker; agent calls and SSH logins are the medians per request as sshd logged them (remote commands, `Accepted publickey`).",
            self.repetitions
        );
        let _ = writeln!(
            text,
            "First listing with alice's suspended session after the start: reference {:.1} s, ours {:.1} s.",
            self.reference.first_good_listing.as_secs_f64(),
            self.ours.first_good_listing.as_secs_f64()
        );
        for note in &self.notes {
            let _ = writeln!(text, "- {note}");
        }
        text
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `[global]` of both brokers: the reference's SSH agent mode, no `[farm]`.
pub fn broker_conf() -> String {
    "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\n\
     default-portscan-x2goservers = false\ndefault-agent-query-mode = SSH\n"
        .to_string()
}

/// The five servers `x2go-nodeN (127.0.0.1N)`, X2Go's SSH on `ssh_port`.
pub fn profiles(ssh_port: u16) -> String {
    format!(
        "[DEFAULT]\nuser = BROKER_USER\n\n[{PROFILE}]\nname = Farm of five\nsshport = {ssh_port}\n\
         host = x2go-node1 (127.0.0.11), x2go-node2 (127.0.0.12), x2go-node3 (127.0.0.13), \
         x2go-node4 (127.0.0.14), x2go-node5 (127.0.0.15)\ncommand = XFCE\n"
    )
}

/// The `[profile]` section of a plain listing.
pub fn listing_section<'a>(listing: &'a str, profile: &str) -> Option<&'a str> {
    let header = format!("[{profile}]\n");
    let start = listing.find(&header)? + header.len();
    let rest = &listing[start..];
    let end = rest
        .find("\n[")
        .or_else(|| rest.find("END_USER_SESSIONS"))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Alice's listing: her suspended session's status and the host narrowed to x2go-node2.
pub fn check_listing(listing: &str) -> Result<(), String> {
    let section = listing_section(listing, PROFILE).ok_or("no [farm5] section")?;
    let has = |line: &str| section.lines().any(|found| found == line);
    if has("status=S") && has("host=x2go-node2") {
        Ok(())
    } else {
        Err("no status=S and host=x2go-node2 in [farm5]".to_string())
    }
}

fn server_of(answer: &str) -> Option<&str> {
    answer.lines().find_map(|line| line.strip_prefix("SERVER:"))
}

fn session_info(answer: &str) -> Option<Vec<&str>> {
    answer
        .lines()
        .find_map(|line| line.strip_prefix("SESSION_INFO:"))
        .map(|line| line.split('|').collect())
}

/// Alice's resume: her suspended session on x2go-node2, at 127.0.0.12.
pub fn check_resume(answer: &str, ssh_port: u16) -> Result<(), String> {
    let expected = format!("127.0.0.12:{ssh_port}");
    if server_of(answer) != Some(expected.as_str()) {
        return Err(format!("not SERVER:{expected}"));
    }
    let fields = session_info(answer).ok_or("no SESSION_INFO")?;
    match (fields.get(3), fields.get(4), fields.get(11)) {
        (Some(&"x2go-node2"), Some(&"S"), Some(&"x2goalice")) => Ok(()),
        _ => Err("SESSION_INFO is not alice's suspended session on x2go-node2".to_string()),
    }
}

/// Bob's take-over: one of his sessions, now `S`, on the server the answer names; its id.
pub fn check_takeover(answer: &str, ssh_port: u16) -> Result<String, String> {
    let fields = session_info(answer).ok_or("no SESSION_INFO")?;
    let (Some(session_id), Some(host), Some(status), Some(user)) =
        (fields.get(1), fields.get(3), fields.get(4), fields.get(11))
    else {
        return Err("a short SESSION_INFO".to_string());
    };
    if (*status, *user) != ("S", "x2gobob") {
        return Err("SESSION_INFO is not bob's session, suspended".to_string());
    }
    let node: u8 = host
        .strip_prefix("x2go-node")
        .and_then(|number| number.parse().ok())
        .filter(|node| (1..=5).contains(node))
        .ok_or("SESSION_INFO names no server of the farm")?;
    let expected = format!("127.0.0.{}:{ssh_port}", 10 + node);
    if server_of(answer) != Some(expected.as_str()) {
        return Err(format!("not SERVER:{expected}"));
    }
    Ok((*session_id).to_string())
}

/// Carol's placement: a server of the farm, no session line.
pub fn check_new_session(answer: &str, ssh_port: u16) -> Result<(), String> {
    let server = server_of(answer).ok_or("no SERVER")?;
    if !(11..=15).any(|last| server == format!("127.0.0.{last}:{ssh_port}")) {
        return Err("SERVER is not a server of the farm".to_string());
    }
    if session_info(answer).is_some() {
        return Err("a SESSION_INFO for a user without sessions".to_string());
    }
    Ok(())
}

fn select_form(user: &str) -> String {
    format!("task=selectsession&sid={PROFILE}&user={user}&login={user}")
}

fn listing_form(user: &str) -> String {
    format!("task=listsessions&user={user}")
}

/// One POST to `/plain/inifile/` on a fresh connection, bounded by `limit`.
async fn post(address: SocketAddr, body: &str, limit: Duration) -> anyhow::Result<String> {
    let request = async {
        let mut connection = crate::load::Connection::open(address).await?;
        connection.post_form("/plain/inifile/", body).await
    };
    tokio::time::timeout(limit, request)
        .await
        .with_context(|| format!("no answer to {body} within {limit:?}"))?
}

/// One broker under test and what it needs to be measured.
struct Bench<'a> {
    options: &'a SshModeOptions,
    sshd: &'a Sshd,
    broker: &'a ServerProcess,
}

impl Bench<'_> {
    /// One timed request; its answer is checked by the caller.
    async fn timed(&self, body: &str) -> anyhow::Result<(String, Sample)> {
        let before = self.sshd.counts();
        let started = Instant::now();
        let answer = post(self.broker.address, body, self.options.request_timeout).await?;
        let elapsed = started.elapsed();
        // sshd writes its log lines while the agent runs; the last ones may follow the answer
        tokio::time::sleep(Duration::from_millis(50)).await;
        let sshd = self.sshd.counts().since(before);
        Ok((answer, Sample { elapsed, sshd }))
    }

    fn failed(&self, what: &str, problem: &str, answer: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: {what}: {problem}:\n{answer}\nits log:\n{}",
            self.broker.label,
            self.broker.log_tail()
        )
    }

    /// Waits (at most a minute) for a listing with alice's suspended session.
    async fn first_good_listing(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let answer = post(
                self.broker.address,
                &listing_form("x2goalice"),
                self.options.request_timeout,
            )
            .await
            .unwrap_or_default();
            if check_listing(&answer).is_ok() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(self.failed("no good listing within 60 s", "", &answer));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One timed request of `operation`, its answer checked.
    async fn sample(&self, operation: Operation) -> anyhow::Result<Sample> {
        let options = self.options;
        let ssh_port = self.sshd.port;
        let sample = match operation {
            Operation::Resume => {
                let (answer, sample) = self.timed(&select_form("x2goalice")).await?;
                check_resume(&answer, ssh_port)
                    .map_err(|problem| self.failed("resume", &problem, &answer))?;
                sample
            }
            Operation::TakeOver => {
                let (answer, sample) = self.timed(&select_form("x2gobob")).await?;
                let session_id = check_takeover(&answer, ssh_port)
                    .map_err(|problem| self.failed("take-over", &problem, &answer))?;
                let in_db = setup::database_sessions()?
                    .into_iter()
                    .find(|session| session.session_id == session_id);
                if in_db.as_ref().map(|session| session.status.as_str()) != Some("S") {
                    return Err(self.failed(
                        "take-over",
                        &format!("the DB does not show it suspended: {in_db:?}"),
                        &answer,
                    ));
                }
                // the next take-over finds bob's sessions running again
                setup::rebuild_session_db(&options.fixture)?;
                sample
            }
            Operation::NewSession => {
                let (answer, sample) = self.timed(&select_form("x2gocarol")).await?;
                check_new_session(&answer, ssh_port)
                    .map_err(|problem| self.failed("new session", &problem, &answer))?;
                sample
            }
            Operation::Listing => {
                let (answer, sample) = self.timed(&listing_form("x2goalice")).await?;
                check_listing(&answer)
                    .map_err(|problem| self.failed("listing", &problem, &answer))?;
                sample
            }
            Operation::ClientSelect => {
                let listing = post(
                    self.broker.address,
                    &listing_form("x2goalice"),
                    options.request_timeout,
                )
                .await?;
                check_listing(&listing)
                    .map_err(|problem| self.failed("client listing", &problem, &listing))?;
                tokio::time::sleep(options.client_gap).await;
                let (answer, sample) = self.timed(&select_form("x2goalice")).await?;
                check_resume(&answer, ssh_port)
                    .map_err(|problem| self.failed("client select", &problem, &answer))?;
                sample
            }
        };
        Ok(sample)
    }
}

/// Both brokers side by side: warm-up, then every operation `repetitions` times, each
/// repetition the reference's request, then ours (so that load drifts of the machine fall on
/// both alike).
async fn measure_side_by_side(benches: [&Bench<'_>; 2]) -> anyhow::Result<[BrokerRun; 2]> {
    let mut runs = benches.map(|bench| BrokerRun {
        label: bench.broker.label.clone(),
        ..BrokerRun::default()
    });
    for (bench, run) in benches.iter().zip(runs.iter_mut()) {
        run.first_good_listing = bench.first_good_listing().await?;
        eprintln!(
            "{}: first good listing after {:?}",
            run.label, run.first_good_listing
        );
    }
    eprintln!("waiting {REUSE_GAP:?} so that the first resume is cold");
    tokio::time::sleep(REUSE_GAP).await;
    let options = benches[0].options;
    for operation in Operation::ALL {
        for repetition in 0..options.repetitions {
            for (bench, run) in benches.iter().zip(runs.iter_mut()) {
                tokio::time::sleep(options.pause).await;
                let sample = bench.sample(operation).await?;
                eprintln!(
                    "{:<9} {:<52} #{:<2} {:>7.0} ms  agent calls {}  ssh logins {}",
                    run.label,
                    operation.name(),
                    repetition + 1,
                    ms(sample.elapsed),
                    sample.sshd.commands,
                    sample.sshd.logins
                );
                run.samples.push((operation, sample));
            }
        }
    }
    Ok(runs)
}

/// How a broker process is started: the environment both get, plus each one's own.
fn broker_command(program: &Path, label: &str, files: &BrokerFiles, port: u16) -> Command {
    let mut command = Command::new(program);
    command
        .arg("-b")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-C")
        .arg(&files.conf)
        .arg("--drop-privileges")
        .current_dir(&files.directory)
        .env_clear()
        // "#!/usr/bin/env python3": keep pyenv/venv pythons out of PATH
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .env("X2GOBROKER_SESSIONPROFILES", &files.profiles)
        .env("X2GOBROKER_DAEMON_USER", DAEMON_ACCOUNT)
        .env("X2GOBROKER_DAEMON_GROUP", setup::AGENT_GROUP)
        .env("X2GOBROKER_AGENT_USER", AGENT_ACCOUNT)
        // no such file: both log to stderr (not /var/log/x2gobroker)
        .env(
            "X2GOBROKER_LOGCONFIG",
            "/nonexistent/x2gobroker-loggers.conf",
        );
    if label == "reference" {
        // lowers the reference's always-on DEBUG logging to CRITICAL
        command.env("X2GOBROKER_TESTSUITE", "1");
    } else {
        command
            .env(
                "X2GOBROKER_COOKIE_DIRECTORY",
                files.directory.join("cookies"),
            )
            .env("RUST_LOG", "warn");
    }
    command
}

/// The two brokers' shared files.
struct BrokerFiles {
    directory: PathBuf,
    conf: PathBuf,
    profiles: PathBuf,
}

impl BrokerFiles {
    fn write(directory: &Path, ssh_port: u16, daemon: &Account) -> anyhow::Result<BrokerFiles> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(directory)?;
        std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o755))?;
        let conf = directory.join("x2gobroker.conf");
        let profiles_path = directory.join("x2gobroker-sessionprofiles.conf");
        std::fs::write(&conf, broker_conf())?;
        std::fs::write(&profiles_path, profiles(ssh_port))?;
        for path in [&conf, &profiles_path] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
        }
        let cookies = directory.join("cookies");
        std::fs::create_dir_all(&cookies)?;
        nix::unistd::chown(&cookies, Some(nix::unistd::Uid::from_raw(daemon.uid)), None)?;
        Ok(BrokerFiles {
            directory: directory.to_path_buf(),
            conf,
            profiles: profiles_path,
        })
    }
}

async fn start_broker(
    files: &BrokerFiles,
    label: &str,
    program: &Path,
) -> anyhow::Result<ServerProcess> {
    let port = servers::free_port()?;
    let command = broker_command(program, label, files, port);
    let mut broker = ServerProcess::spawn(
        label,
        command,
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        files.directory.join(format!("{label}.log")),
    )?;
    broker.wait_ready(Duration::from_secs(30)).await?;
    Ok(broker)
}

/// Removes the bench accounts when dropped (after the brokers and sshd stopped).
struct AccountsCleanup(Vec<Account>);

impl Drop for AccountsCleanup {
    fn drop(&mut self) {
        for account in &self.0 {
            account.remove();
        }
    }
}

/// The whole run, under the farm lock: fixture, accounts, key, sshd, the reference, ours.
pub async fn run(options: &SshModeOptions) -> anyhow::Result<SshModeResult> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the SSH-mode bench needs root (accounts, sshd, the session DB)");
    }
    if !Path::new(servers::REFERENCE_DAEMON).exists() {
        bail!(
            "{} is missing (apt-get install {})",
            servers::REFERENCE_DAEMON,
            servers::REFERENCE_PACKAGE
        );
    }
    eprintln!("taking {}", setup::FARM_LOCK_FILE);
    let _lock = setup::FarmLock::take()?;
    setup::rebuild_session_db(&options.fixture)?;
    let daemon = Account::fresh(DAEMON_ACCOUNT, &[])?;
    let agent = Account::fresh(AGENT_ACCOUNT, &[setup::AGENT_GROUP])?;
    let cleanup = AccountsCleanup(vec![daemon.clone(), agent.clone()]);
    agent.unlock_for_ssh()?;
    let public_key = setup::make_daemon_key(&options.keygen, &daemon)?;
    agent.write_ssh_file("authorized_keys", &format!("{public_key}\n"))?;
    let addresses: Vec<String> = (11..=15).map(|last| format!("127.0.0.{last}")).collect();
    let sshd_directory = options.work_directory.join("sshd");
    std::fs::create_dir_all(&sshd_directory)?;
    let sshd = Sshd::start(&sshd_directory, AGENT_ACCOUNT, &addresses)?;
    // the reference connects to the host's name when it resolves (/etc/hosts), else to its
    // address: both are known
    let known_hosts: String = addresses
        .iter()
        .enumerate()
        .map(|(node, address)| {
            format!(
                "[x2go-node{}]:{port},[{address}]:{port} {}\n",
                node + 1,
                sshd.host_key,
                port = sshd.port
            )
        })
        .collect();
    daemon.write_ssh_file("known_hosts", &known_hosts)?;
    let files = BrokerFiles::write(&options.work_directory.join("brokers"), sshd.port, &daemon)?;

    let outcome = async {
        let mut reference =
            start_broker(&files, "reference", Path::new(servers::REFERENCE_DAEMON)).await?;
        let mut ours = start_broker(&files, "ours", &options.ours).await?;
        let bench = |broker| Bench {
            options,
            sshd: &sshd,
            broker,
        };
        let measured = measure_side_by_side([&bench(&reference), &bench(&ours)]).await;
        reference.stop();
        ours.stop();
        let [reference_run, our_run] = measured?;
        anyhow::Ok((reference_run, our_run))
    }
    .await;
    // the brokers' SSH masters, then the sessions of the stopped sshd
    daemon.end_processes(Duration::from_secs(10));
    drop(sshd);
    agent.end_processes(Duration::from_secs(5));
    // the tests find the fixture's session DB as they left it
    let restored = setup::rebuild_session_db(&options.fixture);
    drop(cleanup);
    let (reference, ours) = outcome?;
    restored?;
    Ok(SshModeResult {
        reference,
        ours,
        repetitions: options.repetitions,
        notes: vec![
            format!(
                "one sshd on 127.0.0.11–15 forcing nothing: both brokers run `sh -c '/usr/lib/x2go/x2gobroker-agent …'` as {AGENT_ACCOUNT} (group x2gobroker), the real setuid Perl agent, on the real X2Go session DB (tests/fixtures/x2go-farm.sh)"
            ),
            format!(
                "both: `--drop-privileges` to {DAEMON_ACCOUNT} (key ~/.ssh/id_rsa by x2gobroker-keygen, known_hosts with the sshd's host key), the same x2gobroker.conf (`default-agent-query-mode = SSH`, no `[farm]`, portscan off) and profile `{PROFILE}` (five hosts); both running side by side, each repetition the reference's request, then ours (ours' supervisors ping every server every 10 s meanwhile)"
            ),
            format!(
                "each request on a fresh HTTP connection; {} ms between requests; the take-over's session DB is rebuilt after each (not timed); the resume runs {} s after any listing of the same user",
                options.pause.as_millis(),
                REUSE_GAP.as_secs()
            ),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str =
        "AUTHID:x\nAccess granted\nSTART_USER_SESSIONS\n\n[farm5]\nname=Farm of five\n\
        host=x2go-node2\nstatus=S\nuser=x2goalice\n\nEND_USER_SESSIONS\n";

    fn line(id: &str, host: &str, status: &str, user: &str) -> String {
        format!(
            "SESSION_INFO:4711|{id}|50|{host}|{status}|2026-01-01T00:00:00|cookie|10.0.0.1|30001|30002|2026-01-01T00:00:00|{user}|34|30003|-1|-1\n"
        )
    }

    #[test]
    fn answers_are_checked_as_the_operations_require() {
        assert_eq!(check_listing(LISTING), Ok(()));
        assert!(check_listing(&LISTING.replace("status=S", "status=R")).is_err());
        assert!(check_listing(&LISTING.replace("[farm5]", "[other]")).is_err());
        let resume = format!(
            "SERVER:127.0.0.12:2222\n{}",
            line("a-1", "x2go-node2", "S", "x2goalice")
        );
        assert_eq!(check_resume(&resume, 2222), Ok(()));
        assert!(check_resume(&resume, 22).is_err());
        assert!(check_resume("SERVER:127.0.0.12:2222\n", 2222).is_err());
        let takeover = format!(
            "SERVER:127.0.0.13:2222\n{}",
            line("b-7", "x2go-node3", "S", "x2gobob")
        );
        assert_eq!(check_takeover(&takeover, 2222), Ok("b-7".to_string()));
        assert!(check_takeover(&takeover.replace("127.0.0.13", "127.0.0.11"), 2222).is_err());
        assert!(check_takeover(&takeover.replace("|S|", "|R|"), 2222).is_err());
        assert_eq!(check_new_session("SERVER:127.0.0.15:2222\n", 2222), Ok(()));
        assert!(check_new_session("SERVER:127.0.0.16:2222\n", 2222).is_err());
        assert!(check_new_session(&takeover, 2222).is_err());
    }

    #[test]
    fn spreads_and_ratios() {
        let ms = Duration::from_millis;
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(
            Spread::of(&[ms(30), ms(10), ms(20)]),
            Some(Spread {
                median: ms(20),
                min: ms(10),
                max: ms(30)
            })
        );
        assert_eq!(Spread::of(&[ms(10), ms(40)]).unwrap().median, ms(25));
        let sample = |millis, commands| Sample {
            elapsed: ms(millis),
            sshd: SshdCounts {
                commands,
                logins: 0,
            },
        };
        let run = |label: &str, samples: Vec<(Operation, Sample)>| BrokerRun {
            label: label.to_string(),
            samples,
            first_good_listing: ms(0),
        };
        let result = SshModeResult {
            reference: run(
                "reference",
                Operation::ALL
                    .into_iter()
                    .map(|operation| (operation, sample(400, 3)))
                    .collect(),
            ),
            ours: run(
                "ours",
                Operation::ALL
                    .into_iter()
                    .map(|operation| {
                        let millis = if operation == Operation::Listing {
                            500
                        } else {
                            100
                        };
                        (operation, sample(millis, 1))
                    })
                    .collect(),
            ),
            repetitions: 1,
            notes: Vec::new(),
        };
        assert_eq!(result.ratio(Operation::Resume), Some(0.25));
        assert_eq!(result.slower(), vec![Operation::Listing]);
        let table = result.render();
        assert!(
            table.contains("| resume of a suspended session (`selectsession`) | 400 (400–400) | 100 (100–100) | 0.25 | 3 / 1 | 0 / 0 |"),
            "{table}"
        );
    }
}
