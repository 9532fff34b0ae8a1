//! x2gobroker-bench: the benchmark command line (`all`, `compare`, `farm`, `floods`, `soak`, `sshmode`, `smoke`) and the servers it starts (`hello`, `serve-broker`).

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use x2gobroker_bench::compare::{self, CompareOptions};
use x2gobroker_bench::farm::{self, FarmOptions};
use x2gobroker_bench::floods::{self, FloodOptions};
use x2gobroker_bench::servers::OursBinary;
use x2gobroker_bench::soak::{self, SoakOptions};
use x2gobroker_bench::sshmode::{self, SshModeOptions};

#[derive(Parser, Debug)]
#[command(
    name = "x2gobroker-bench",
    about = "Benchmarks x2gobroker-rs against the reference broker and synthetic farms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The comparison with the reference and the farm benchmarks, one report.
    All(RunArgs),
    /// Only ours vs the reference vs the "hello" ceiling.
    Compare(RunArgs),
    /// Only the synthetic farms.
    Farm(RunArgs),
    /// Normal listings while hostile clients flood our broker (slow bodies, slow heads, idle connections, big bodies).
    Floods(FloodArgs),
    /// Minutes of mixed logins, listings and selections on a farm whose agents flap.
    Soak(SoakArgs),
    /// The reference and ours in SSH agent mode against one sshd, the Perl agent and the session DB (root).
    Sshmode(SshModeArgs),
    /// A few seconds of everything against our broker only (no reference, no apt): checks the harness.
    Smoke(SmokeArgs),
    /// Serve the bare "hello" ceiling server (started by the harness).
    Hello {
        #[arg(long)]
        bind: SocketAddr,
    },
    /// Serve our broker from its library (started by the harness in smoke runs).
    ServeBroker {
        #[arg(short = 'C')]
        config: PathBuf,
        #[arg(short = 'b')]
        bind: SocketAddr,
    },
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Our daemon binary (default: x2gobroker-daemon next to this binary).
    #[arg(long)]
    ours: Option<PathBuf>,
    /// Leave the reference broker out (no apt-get).
    #[arg(long)]
    no_reference: bool,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds per run.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Concurrency levels of the comparison.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// Farm sizes.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    farm_sizes: Vec<usize>,
    /// Concurrency levels of the farm selections.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    farm_concurrency: Vec<usize>,
    /// Sessions per simulated server.
    #[arg(long, default_value_t = 20)]
    sessions_per_server: usize,
    /// Seconds the idle broker's CPU use is sampled per farm size.
    #[arg(long, default_value_t = 10.0)]
    idle_window: f64,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Only the comparison scenarios whose name contains this.
    #[arg(long, default_value = "")]
    only: String,
    /// Also write the report to this file.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct FloodArgs {
    /// Our daemon binary (default: x2gobroker-daemon next to this binary).
    #[arg(long)]
    ours: Option<PathBuf>,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds per phase.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Closed-loop workers sending normal listings.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Slow-body clients.
    #[arg(long, default_value_t = 200)]
    slow_bodies: usize,
    /// Slow-head clients.
    #[arg(long, default_value_t = 200)]
    slow_heads: usize,
    /// Idle connections.
    #[arg(long, default_value_t = 1200)]
    idle_connections: usize,
    /// Clients sending 1 MiB bodies in a loop.
    #[arg(long, default_value_t = 20)]
    big_bodies: usize,
    /// Threads of the load generator and the hostile clients.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Also write the report to this file.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct SoakArgs {
    /// Our daemon binary (default: x2gobroker-daemon next to this binary).
    #[arg(long)]
    ours: Option<PathBuf>,
    /// Seconds of load.
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// Simulated servers.
    #[arg(long, default_value_t = 20)]
    servers: usize,
    /// Servers down at any time.
    #[arg(long, default_value_t = 3)]
    flapping: usize,
    /// Seconds a flapping server stays down (then up as long).
    #[arg(long, default_value_t = 5.0)]
    flap_period: f64,
    /// Closed-loop clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds between a client's password logins (a client restart; its cookie abandoned).
    #[arg(long, default_value_t = 1.0)]
    login_every: f64,
    /// Seconds between samples of the broker.
    #[arg(long, default_value_t = 30.0)]
    sample_every: f64,
    /// Also write the report to this file.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct SshModeArgs {
    /// Our daemon binary (default: x2gobroker-daemon next to this binary).
    #[arg(long)]
    ours: Option<PathBuf>,
    /// Our keygen (default: x2gobroker-keygen next to this binary).
    #[arg(long)]
    keygen: Option<PathBuf>,
    /// The session DB fixture script.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/x2go-farm.sh"))]
    fixture: PathBuf,
    /// Timed requests per operation and broker (1–20).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=20))]
    repetitions: u16,
    /// Milliseconds between two timed requests.
    #[arg(long, default_value_t = 1000)]
    pause_ms: u64,
    /// Milliseconds between X2Go Client's listing and its selection.
    #[arg(long, default_value_t = 2000)]
    client_gap_ms: u64,
    /// Also write the report to this file.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct SmokeArgs {
    /// Our daemon binary (default: our broker from the library, via `serve-broker`).
    #[arg(long)]
    ours: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Hello { bind } => x2gobroker_bench::standalone::serve_hello(bind),
        Command::ServeBroker { config, bind } => {
            x2gobroker_bench::standalone::serve_broker(&config, bind)
        }
        Command::All(args) => run(args, true, true),
        Command::Compare(args) => run(args, true, false),
        Command::Farm(args) => run(args, false, true),
        Command::Floods(args) => floods(args),
        Command::Soak(args) => soak(args),
        Command::Sshmode(args) => ssh_mode(args),
        Command::Smoke(args) => smoke(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("x2gobroker-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn raise_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |count| count.get());
    format!("{cores} cores, {model}")
}

fn work_directory() -> anyhow::Result<PathBuf> {
    let directory = std::env::temp_dir().join(format!("x2gobroker-bench-{}", std::process::id()));
    std::fs::create_dir_all(&directory)?;
    Ok(directory)
}

fn client_runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("load")
        .enable_all()
        .build()?)
}

fn run(args: RunArgs, with_compare: bool, with_farm: bool) -> anyhow::Result<()> {
    raise_file_limit();
    let ours = match &args.ours {
        Some(path) => OursBinary::Daemon(path.clone()),
        None => OursBinary::next_to_current_exe()?,
    };
    let bench_binary = std::env::current_exe()?;
    let work = work_directory()?;
    let runtime = client_runtime(args.client_threads)?;
    let load_before = load_average();
    eprintln!("load average before the run: {load_before} (measure on an otherwise idle machine)");
    let started = chrono::Local::now();
    let mut report = format!(
        "## Run of {}\n\nMachine: {}. Load average before: {load_before}. Load generator: {} threads in the same machine.\n\n",
        started.format("%Y-%m-%d %H:%M %Z"),
        machine(),
        args.client_threads
    );
    let compare_options = CompareOptions {
        ours: ours.clone(),
        reference: !args.no_reference,
        hello: true,
        concurrencies: args.concurrency.clone(),
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        request_timeout: Duration::from_secs(60),
        work_directory: work.clone(),
        only: args.only.clone(),
    };
    let farm_options = FarmOptions {
        ours,
        sizes: args.farm_sizes.clone(),
        sessions_per_server: args.sessions_per_server,
        heartbeat_ms: 2000,
        idle_window: Duration::from_secs_f64(args.idle_window),
        warmup: Duration::from_secs_f64(args.warmup.min(1.0)),
        duration: Duration::from_secs_f64(args.duration / 2.0),
        concurrencies: args.farm_concurrency.clone(),
        storm_users: 1000,
        storm_servers: 100,
        change_probes: 20,
        takeovers: 10,
        work_directory: work.clone(),
    };
    runtime.block_on(async {
        if with_compare {
            let comparison = compare::run(&compare_options, &bench_binary).await?;
            report.push_str(&comparison.render());
            report.push_str(&format!(
                "\nLoad average after the comparison: {}\n\n",
                load_average()
            ));
        }
        if with_farm {
            let results = farm::run(&farm_options).await?;
            report.push_str(&farm::render(&results, &farm_options));
            report.push_str(&format!(
                "\nLoad average after the farms: {}\n",
                load_average()
            ));
        }
        anyhow::Ok(())
    })?;
    println!("{report}");
    if let Some(path) = &args.output {
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The flood phases against our release broker; the report is printed (and written).
fn floods(args: FloodArgs) -> anyhow::Result<()> {
    raise_file_limit();
    let ours = match &args.ours {
        Some(path) => OursBinary::Daemon(path.clone()),
        None => OursBinary::next_to_current_exe()?,
    };
    let work = work_directory()?;
    let runtime = client_runtime(args.client_threads)?;
    let load_before = load_average();
    let options = FloodOptions {
        ours,
        work_directory: work.clone(),
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        concurrency: args.concurrency,
        slow_bodies: args.slow_bodies,
        slow_heads: args.slow_heads,
        idle_connections: args.idle_connections,
        big_bodies: args.big_bodies,
    };
    let phases = runtime.block_on(floods::run(&options))?;
    let report = format!(
        "## Run of {}\n\nMachine: {}. Load average before: {load_before}, after: {}. Load generator and hostile clients: {} threads in the same machine.\n\n{}",
        chrono::Local::now().format("%Y-%m-%d %H:%M %Z"),
        machine(),
        load_average(),
        args.client_threads,
        floods::render(&phases, &options)
    );
    println!("{report}");
    if let Some(path) = &args.output {
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    let _ = std::fs::remove_dir_all(&work);
    let missed: Vec<&str> = phases
        .iter()
        .filter(|phase| !floods::meets_target(phase))
        .map(|phase| phase.name.as_str())
        .collect();
    if missed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "p99 target missed or listings failed in: {}",
            missed.join(", ")
        )
    }
}

/// The soak against our release broker; fails when a request failed or a resource grew.
fn soak(args: SoakArgs) -> anyhow::Result<()> {
    raise_file_limit();
    let ours = match &args.ours {
        Some(path) => OursBinary::Daemon(path.clone()),
        None => OursBinary::next_to_current_exe()?,
    };
    let work = work_directory()?;
    let runtime = client_runtime(2)?;
    let load_before = load_average();
    let options = SoakOptions {
        ours,
        work_directory: work.clone(),
        duration: Duration::from_secs_f64(args.duration),
        servers: args.servers,
        flapping: args.flapping,
        flap_period: Duration::from_secs_f64(args.flap_period),
        clients: args.clients,
        login_every: Duration::from_secs_f64(args.login_every),
        sample_every: Duration::from_secs_f64(args.sample_every),
    };
    let result = runtime.block_on(soak::run(&options))?;
    let report = format!(
        "## Run of {}\n\nMachine: {}. Load average before: {load_before}, after: {}.\n\n{}",
        chrono::Local::now().format("%Y-%m-%d %H:%M %Z"),
        machine(),
        load_average(),
        soak::render(&result, &options)
    );
    println!("{report}");
    if let Some(path) = &args.output {
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    let _ = std::fs::remove_dir_all(&work);
    if result.failed > 0 || result.requests == 0 {
        anyhow::bail!("{} of {} requests failed", result.failed, result.requests);
    }
    Ok(())
}

/// A binary next to this one (cargo builds them into the same `target/<profile>/`).
fn next_to_current_exe(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(|directory| directory.join(name))
        .filter(|path| path.exists())
        .with_context(|| format!("no {name} next to {}", exe.display()))
}

/// The SSH-mode comparison; fails when an operation of ours is slower than the reference's.
fn ssh_mode(args: SshModeArgs) -> anyhow::Result<()> {
    let ours = match args.ours {
        Some(path) => path,
        None => next_to_current_exe("x2gobroker-daemon")?,
    };
    let keygen = match args.keygen {
        Some(path) => path,
        None => next_to_current_exe("x2gobroker-keygen")?,
    };
    let work = work_directory()?;
    let runtime = client_runtime(1)?;
    let load_before = load_average();
    let options = SshModeOptions {
        ours,
        keygen,
        fixture: args.fixture,
        work_directory: work.clone(),
        repetitions: usize::from(args.repetitions),
        pause: Duration::from_millis(args.pause_ms),
        client_gap: Duration::from_millis(args.client_gap_ms),
        request_timeout: Duration::from_secs(60),
    };
    let result = runtime.block_on(sshmode::run(&options))?;
    let report = format!(
        "## Run of {}\n\nMachine: {}. Load average before: {load_before}, after: {}.\n\n{}",
        chrono::Local::now().format("%Y-%m-%d %H:%M %Z"),
        machine(),
        load_average(),
        result.render()
    );
    println!("{report}");
    if let Some(path) = &args.output {
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    let _ = std::fs::remove_dir_all(&work);
    let slower = result.slower();
    if slower.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "ours is slower than the reference in: {}",
            slower
                .iter()
                .map(|operation| operation.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Everything, tiny and against our broker only; fails when the harness or a check is broken.
fn smoke(args: SmokeArgs) -> anyhow::Result<()> {
    raise_file_limit();
    let bench_binary = std::env::current_exe()?;
    let ours = match args.ours {
        Some(path) => OursBinary::Daemon(path),
        None => OursBinary::Library(bench_binary.clone()),
    };
    let work = work_directory()?;
    let runtime = client_runtime(1)?;
    let compare_options = CompareOptions {
        ours: ours.clone(),
        reference: false,
        hello: true,
        concurrencies: vec![1, 8],
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(300),
        request_timeout: Duration::from_secs(5),
        work_directory: work.clone(),
        only: String::new(),
    };
    let farm_options = FarmOptions {
        ours,
        sizes: vec![10],
        sessions_per_server: 4,
        heartbeat_ms: 2000,
        idle_window: Duration::from_millis(300),
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(300),
        concurrencies: vec![8],
        storm_users: 50,
        storm_servers: 10,
        change_probes: 2,
        takeovers: 2,
        work_directory: work.clone(),
    };
    let (comparison, farms) = runtime.block_on(async {
        let comparison = compare::run(&compare_options, &bench_binary).await?;
        let farms = farm::run(&farm_options).await?;
        anyhow::Ok((comparison, farms))
    })?;
    println!(
        "{}\n{}",
        comparison.render(),
        farm::render(&farms, &farm_options)
    );
    let _ = std::fs::remove_dir_all(&work);
    let mut problems = Vec::new();
    let rows = comparison
        .rows
        .iter()
        .chain(farms.iter().flat_map(|result| result.selections.iter()));
    for row in rows {
        if row.requests == 0 || row.errors > 0 || row.usage.peak_rss_kb == 0 {
            problems.push(format!("bad run: {}", row.summary()));
        }
    }
    for result in &farms {
        if result.change.count == 0 || result.change_failures > 0 {
            problems.push(format!(
                "N={}: session changes not seen in the broker",
                result.servers
            ));
        }
        if result.takeover.count == 0 || result.takeover_failures > 0 {
            problems.push(format!("N={}: take-overs failed", result.servers));
        }
        match &result.storm {
            Some(storm)
                if storm.errors == 0
                    && storm.latency.count == storm.requests
                    && storm.min_per_server > 0 => {}
            other => problems.push(format!(
                "N={}: login storm failed: {other:?}",
                result.servers
            )),
        }
    }
    if problems.is_empty() {
        println!("smoke: ok");
        Ok(())
    } else {
        anyhow::bail!("smoke run found problems:\n{}", problems.join("\n"))
    }
}
