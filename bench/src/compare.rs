//! The comparison run: the same requests against the reference broker, ours and the bare "hello" ceiling.

use crate::config::{self, ConfigDir, Flavour};
use crate::fake_agent::{FakeFarm, FakeFarmConfig};
use crate::load::{self, LoadSpec, Scenario};
use crate::procstat::{self, Window};
use crate::report::{self, Measurement};
use crate::servers::{self, OursBinary, ServerProcess};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to run.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub ours: OursBinary,
    /// Run the reference broker too (installing it if missing).
    pub reference: bool,
    pub hello: bool,
    pub concurrencies: Vec<usize>,
    pub warmup: Duration,
    pub duration: Duration,
    pub request_timeout: Duration,
    pub work_directory: PathBuf,
    /// Only the scenarios whose name contains this (all when empty).
    pub only: String,
}

/// The four scenarios, the same for both brokers.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::get("GET /", "/", Some("X2Go Session Broker")),
        Scenario::post(
            "listsessions",
            "/plain/inifile/",
            vec!["task=listsessions&user=alice".into()],
            Some("[alice-farm]"),
        ),
        Scenario::post(
            "selectsession (no agent)",
            "/plain/inifile/",
            vec!["task=selectsession&sid=alice-farm&user=alice".into()],
            Some("SERVER:x2go-node"),
        ),
        Scenario::post(
            "selectsession (live agents)",
            "/plain/inifile/",
            vec!["task=selectsession&sid=carol-live&user=carol".into()],
            Some("SERVER:"),
        ),
    ]
}

/// The hello server gets the same requests, without content checks.
fn hello_scenario(scenario: &Scenario) -> Scenario {
    Scenario {
        expect: None,
        ..scenario.clone()
    }
}

/// Everything the comparison measured.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub rows: Vec<Measurement>,
    pub scenarios: Vec<String>,
    pub concurrencies: Vec<usize>,
    pub notes: Vec<String>,
}

impl Comparison {
    /// The tables of the report.
    pub fn render(&self) -> String {
        let pairs = vec![
            ("GET /".to_string(), "GET /".to_string()),
            ("listsessions".to_string(), "listsessions".to_string()),
        ];
        let mut text = String::new();
        text.push_str("### Ours vs the reference\n\n");
        text.push_str(&report::comparison_table(
            &self.rows,
            &self.scenarios,
            &self.concurrencies,
        ));
        text.push_str("\n### Ceiling: a bare axum \"hello\" server with the same accept loop\n\n");
        text.push_str(&report::ceiling_table(
            &self.rows,
            &pairs,
            &self.concurrencies,
        ));
        text.push_str("\n### Every run\n\n");
        text.push_str(&report::raw_table(&self.rows));
        for note in &self.notes {
            text.push_str(&format!("\n- {note}"));
        }
        text.push('\n');
        text
    }
}

/// Measures one (server, scenario, concurrency).
pub async fn measure(server: &ServerProcess, scenario: &Scenario, spec: LoadSpec) -> Measurement {
    // a previous run may have left abandoned requests queued (tornado serialises its work)
    load::wait_until_quick(
        server.address,
        Duration::from_millis(200),
        Duration::from_secs(120),
    )
    .await;
    let pid = server.pid();
    let mut window = Window::start(pid);
    let sampling = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            window.sample();
        }
    };
    let result = tokio::select! {
        result = load::run(server.address, scenario, spec) => result,
        () = sampling => unreachable!("sampling never ends"),
    };
    let usage = window.finish();
    Measurement::new(
        &server.label,
        &scenario.name,
        spec.concurrency,
        &result,
        usage,
    )
}

/// A line above the progress bar, or on stderr when there is no bar (not a terminal).
pub fn log(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// A progress bar over `total` runs (hidden when stderr is not a terminal).
pub fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// The comparison, end to end: configs, fake agents for our live profile, the three servers,
/// then every scenario at every concurrency against each server in turn.
pub async fn run(options: &CompareOptions, bench_binary: &Path) -> anyhow::Result<Comparison> {
    let mut notes = Vec::new();
    // five fake agents for the live-agent profile of ours (x2go-node1..5 on 127.0.0.11..15)
    let farm = FakeFarm::start(FakeFarmConfig::five_nodes())?;
    let ours_config = ConfigDir::write(
        &options.work_directory.join("ours"),
        |profiles| {
            config::comparison_broker_conf(
                Flavour::Ours {
                    agent_port: farm.port(),
                },
                profiles,
            )
        },
        &config::comparison_profiles(Flavour::Ours {
            agent_port: farm.port(),
        }),
    )?;
    let mut ours = servers::start_ours(&options.ours, &ours_config, "ours")?;
    ours.wait_ready(Duration::from_secs(20)).await?;

    let mut reference = None;
    if options.reference {
        match servers::ensure_reference_installed() {
            Ok(()) => {
                let reference_config = ConfigDir::write(
                    &options.work_directory.join("reference"),
                    |profiles| config::comparison_broker_conf(Flavour::Reference, profiles),
                    &config::comparison_profiles(Flavour::Reference),
                )?;
                let mut process = servers::start_reference(&reference_config)?;
                process.wait_ready(Duration::from_secs(30)).await?;
                reference = Some(process);
            }
            Err(error) => notes.push(format!("reference broker not run: {error:#}")),
        }
    }
    let mut hello = None;
    if options.hello {
        let mut process = servers::start_hello(bench_binary, &options.work_directory)?;
        process.wait_ready(Duration::from_secs(10)).await?;
        hello = Some(process);
    }

    let scenarios: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|scenario| scenario.name.contains(options.only.as_str()))
        .collect();
    let hello_scenarios = ["GET /", "listsessions"];
    let per_concurrency = 1 + u64::from(reference.is_some());
    let hello_runs = if hello.is_some() {
        hello_scenarios.len() as u64
    } else {
        0
    };
    let total = (scenarios.len() as u64 * per_concurrency + hello_runs)
        * options.concurrencies.len() as u64;
    let bar = progress(total, "compare");
    let mut rows = Vec::new();
    for scenario in &scenarios {
        for &concurrency in &options.concurrencies {
            let spec = LoadSpec {
                concurrency,
                warmup: options.warmup,
                duration: options.duration,
                request_timeout: options.request_timeout,
            };
            let mut targets: Vec<(&ServerProcess, Scenario)> = Vec::new();
            if let (Some(process), true) =
                (&hello, hello_scenarios.contains(&scenario.name.as_str()))
            {
                targets.push((process, hello_scenario(scenario)));
            }
            targets.push((&ours, scenario.clone()));
            if let Some(process) = &reference {
                targets.push((process, scenario.clone()));
            }
            for (server, scenario) in targets {
                bar.set_message(format!(
                    "{} {} c={concurrency}",
                    server.label, scenario.name
                ));
                let row = measure(server, &scenario, spec).await;
                log(&bar, row.summary());
                rows.push(row);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    notes.push(format!(
        "load generator: {} closed-loop keep-alive connections per run, warm-up {:?}, measured {:?}; ours logs at warn, the reference with X2GOBROKER_TESTSUITE=1 (log level critical)",
        options.concurrencies.iter().map(ToString::to_string).collect::<Vec<_>>().join("/"),
        options.warmup,
        options.duration
    ));
    notes.push(format!(
        "live agents: ours watches {} fake agents (20 sessions each, carol has none: every selection places a new session); the reference asks its local Perl agent (agent-query-mode LOCAL)",
        farm.servers().len()
    ));
    if let Some(process) = &reference {
        notes.push(format!(
            "reference peak RSS over its lifetime: {:.1} MB",
            report::mb(procstat::status_kb(process.pid(), "VmHWM").unwrap_or(0))
        ));
    }
    Ok(Comparison {
        rows,
        scenarios: scenarios
            .iter()
            .map(|scenario| scenario.name.clone())
            .collect(),
        concurrencies: options.concurrencies.clone(),
        notes,
    })
}
