//! The broker's Prometheus metrics: counters and histograms the request path and the farm's supervisors feed, the farm's gauges read from the balancer at scrape time, rendered in the Prometheus text format.
//!
//! Every label is one of our enums or a name from the config (server names): a label never
//! takes raw user input, so no client can grow the series count.

use crate::farm::balancer::ServerOverview;
use crate::farm::model::{AgentObserver, Health, SessionStatus, Via};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// An enum whose values are Prometheus label values: each variant with its fixed name.
macro_rules! label_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$variant_meta:meta])* $variant:ident = $label:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$variant_meta])* $variant,)* }

        impl $name {
            /// The label value.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $label,)* }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                use std::fmt::Write;
                encoder.write_str(self.name())
            }
        }
    };
}

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

label_enum! {
    /// Where a request came in.
    pub enum FrontendLabel {
        Plain = "plain",
        Json = "json",
        Uccs = "uccs",
        Ssh = "ssh",
        Pubkeys = "pubkeys",
        Root = "root",
        Health = "health",
        Other = "other",
    }
}

label_enum! {
    /// The task a request asked for: the known task names, else `other`.
    pub enum TaskLabel {
        Listsessions = "listsessions",
        Listprofiles = "listprofiles",
        Selectsession = "selectsession",
        Testcon = "testcon",
        None = "none",
        Other = "other",
    }
}

impl TaskLabel {
    /// The label of a task parameter as a client sent it.
    pub fn of(task: &str) -> TaskLabel {
        match task {
            "listsessions" => TaskLabel::Listsessions,
            "listprofiles" => TaskLabel::Listprofiles,
            "selectsession" => TaskLabel::Selectsession,
            "testcon" => TaskLabel::Testcon,
            "" => TaskLabel::None,
            _ => TaskLabel::Other,
        }
    }
}

label_enum! {
    /// An authentication mechanism that refused a password.
    pub enum MechLabel {
        None = "none",
        Testsuite = "testsuite",
        Pam = "pam",
        HttpsGet = "https_get",
        Unknown = "unknown",
        /// A login refused by the throttle, without asking a mechanism.
        Throttled = "throttled",
    }
}

label_enum! {
    /// How a selection ended.
    pub enum OutcomeLabel {
        Resumed = "resumed",
        TakenOver = "taken_over",
        New = "new",
        None = "none",
    }
}

label_enum! {
    /// An agent transport.
    pub enum TransportLabel {
        Grpc = "grpc",
        Ssh = "ssh",
        Local = "local",
    }
}

impl From<Via> for TransportLabel {
    fn from(via: Via) -> TransportLabel {
        match via {
            Via::Grpc => TransportLabel::Grpc,
            Via::Ssh => TransportLabel::Ssh,
            Via::Local => TransportLabel::Local,
        }
    }
}

label_enum! {
    enum StateLabel {
        Running = "running",
        Suspended = "suspended",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    frontend: FrontendLabel,
    task: TaskLabel,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MechLabels {
    mech: MechLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: OutcomeLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransportLabels {
    transport: TransportLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServerTransportLabels {
    server: String,
    transport: TransportLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServerStateLabels {
    server: String,
    state: StateLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// The broker's counters and histograms (one per broker; cheap to clone into the farm).
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    auth_failures: Family<MechLabels, Counter>,
    selections: Family<OutcomeLabels, Counter>,
    selection_duration: Histogram,
    agent_call_duration: Family<TransportLabels, Histogram>,
    agent_errors: Family<ServerTransportLabels, Counter>,
    /// In a cluster (`[cluster]`): 1 while the shared database is unreachable; `None`
    /// without a cluster (the gauge is not rendered).
    cluster_degraded: std::sync::OnceLock<Gauge>,
}

fn latency_buckets() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: Family::default(),
            auth_failures: Family::default(),
            selections: Family::default(),
            selection_duration: latency_buckets(),
            agent_call_duration: Family::new_with_constructor(latency_buckets),
            agent_errors: Family::default(),
            cluster_degraded: std::sync::OnceLock::new(),
        }
    }
}

impl Metrics {
    /// The gauge the cluster sets to 1 while its database is unreachable (rendered from the
    /// first call on).
    pub fn cluster_degraded(&self) -> Gauge {
        self.cluster_degraded.get_or_init(Gauge::default).clone()
    }

    /// A request answered with `status`.
    pub fn request(&self, frontend: FrontendLabel, task: TaskLabel, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                frontend,
                task,
                status,
            })
            .inc();
    }

    /// A password refused.
    pub fn auth_failure(&self, mech: MechLabel) {
        self.auth_failures.get_or_create(&MechLabels { mech }).inc();
    }

    /// A selection answered after `took`.
    pub fn selection(&self, outcome: OutcomeLabel, took: Duration) {
        self.selections
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.selection_duration.observe(took.as_secs_f64());
    }

    /// Everything, with the farm's gauges from `servers` (the balancer's state now) and
    /// `drained` (the admin's drain state), in the Prometheus text format.
    pub fn render(&self, servers: &[ServerOverview], drained: &dyn Fn(&str) -> bool) -> String {
        let mut registry = Registry::with_prefix("x2gobroker");
        registry.register(
            "requests",
            "Requests answered, by frontend, task and HTTP status",
            self.requests.clone(),
        );
        registry.register(
            "auth_failures",
            "Logins refused, by authentication mechanism",
            self.auth_failures.clone(),
        );
        registry.register(
            "selections",
            "Session selections, by outcome",
            self.selections.clone(),
        );
        registry.register(
            "selection_duration_seconds",
            "Time to answer a selectsession",
            self.selection_duration.clone(),
        );
        registry.register(
            "agent_call_duration_seconds",
            "Agent calls made for requests, by transport",
            self.agent_call_duration.clone(),
        );
        registry.register(
            "agent_errors",
            "Agent calls without an answer and agents lost, by server and transport",
            self.agent_errors.clone(),
        );
        let build_info: Family<VersionLabels, Gauge> = Family::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The broker's version", build_info);
        let up: Family<ServerLabels, Gauge> = Family::default();
        let drained_gauge: Family<ServerLabels, Gauge> = Family::default();
        let sessions: Family<ServerStateLabels, Gauge> = Family::default();
        let load: Family<ServerLabels, Gauge> = Family::default();
        let pending: Family<ServerLabels, Gauge> = Family::default();
        for server in servers {
            let labels = ServerLabels {
                server: server.name.clone(),
            };
            let view = server.view.as_ref();
            let is_up = view.is_some_and(|view| view.health != Health::Down);
            up.get_or_create(&labels).set(i64::from(is_up));
            drained_gauge
                .get_or_create(&labels)
                .set(i64::from(drained(&server.name)));
            let Some(view) = view else {
                continue;
            };
            pending.get_or_create(&labels).set(i64::from(view.pending));
            if let Some(factor) = view.load_factor {
                load.get_or_create(&labels).set(factor);
            }
            // legacy agents report no session lists: no session gauges for them
            if view.via.is_some_and(|via| !via.is_legacy()) {
                let count = |status| {
                    view.sessions
                        .iter()
                        .filter(|session| session.status == status)
                        .count() as i64
                };
                for (state, status) in [
                    (StateLabel::Running, SessionStatus::Running),
                    (StateLabel::Suspended, SessionStatus::Suspended),
                ] {
                    sessions
                        .get_or_create(&ServerStateLabels {
                            server: server.name.clone(),
                            state,
                        })
                        .set(count(status));
                }
            }
        }
        if let Some(degraded) = self.cluster_degraded.get() {
            registry.register(
                "cluster_degraded",
                "1 while the cluster's database is unreachable (placements count only this broker's)",
                degraded.clone(),
            );
        }
        registry.register(
            "server_up",
            "1 while the server's agent answers (up or degraded), else 0",
            up,
        );
        registry.register(
            "server_drained",
            "1 while an admin has the server drained",
            drained_gauge,
        );
        registry.register(
            "server_sessions",
            "Sessions on the server as its agent reported them, by state (gRPC agents)",
            sessions,
        );
        registry.register(
            "server_load_factor",
            "The server's load factor (higher is better), as its agent last measured it",
            load,
        );
        registry.register(
            "server_pending_placements",
            "New sessions placed on the server that no report has confirmed yet",
            pending,
        );
        let mut text = String::new();
        // writing into a String cannot fail
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}

impl AgentObserver for Metrics {
    fn call_finished(&self, server: &str, via: Via, took: Duration, ok: bool) {
        self.agent_call_duration
            .get_or_create(&TransportLabels {
                transport: via.into(),
            })
            .observe(took.as_secs_f64());
        if !ok {
            self.agent_failed(server, via);
        }
    }

    fn agent_failed(&self, server: &str, via: Via) {
        self.agent_errors
            .get_or_create(&ServerTransportLabels {
                server: server.to_string(),
                transport: via.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::policy::{test_session, ServerView};

    fn line_value(text: &str, line_start: &str) -> Option<String> {
        text.lines()
            .find(|line| line.starts_with(line_start))
            .map(|line| line.rsplit(' ').next().unwrap_or_default().to_string())
    }

    #[test]
    fn renders_counters_and_the_farm_gauges() {
        let metrics = Metrics::default();
        metrics.request(FrontendLabel::Plain, TaskLabel::of("listsessions"), 200);
        metrics.request(FrontendLabel::Plain, TaskLabel::of("listsessions"), 200);
        metrics.request(FrontendLabel::Plain, TaskLabel::of("evil\n{x=\"1\"}"), 200);
        metrics.auth_failure(MechLabel::Pam);
        metrics.selection(OutcomeLabel::Resumed, Duration::from_millis(3));
        metrics.call_finished("ts02", Via::Ssh, Duration::from_millis(250), false);
        let servers = vec![
            ServerOverview {
                name: "ts01".into(),
                view: Some(ServerView {
                    health: Health::Up,
                    sessions: vec![
                        test_session("a", "alice", "ts01", 'R'),
                        test_session("b", "bob", "ts01", 'S'),
                        test_session("c", "carol", "ts01", 'S'),
                    ],
                    load_factor: Some(1200),
                    pending: 1,
                    via: Some(Via::Grpc),
                    drained: false,
                }),
                last_heard: Some(Duration::from_secs(1)),
            },
            ServerOverview {
                name: "ts02".into(),
                view: Some(ServerView {
                    health: Health::Down,
                    ..ServerView::unknown()
                }),
                last_heard: None,
            },
        ];
        let text = metrics.render(&servers, &|name| name == "ts02");
        let value = |start: &str| line_value(&text, start);
        assert_eq!(
            value("x2gobroker_requests_total{frontend=\"plain\",task=\"listsessions\",status=\"200\"}"),
            Some("2".into())
        );
        // a task name no client can choose: only `other`
        assert_eq!(
            value("x2gobroker_requests_total{frontend=\"plain\",task=\"other\",status=\"200\"}"),
            Some("1".into())
        );
        assert!(!text.contains("evil"));
        assert_eq!(
            value("x2gobroker_auth_failures_total{mech=\"pam\"}"),
            Some("1".into())
        );
        assert_eq!(
            value("x2gobroker_selections_total{outcome=\"resumed\"}"),
            Some("1".into())
        );
        assert_eq!(
            value("x2gobroker_selection_duration_seconds_count"),
            Some("1".into())
        );
        assert_eq!(
            value("x2gobroker_agent_errors_total{server=\"ts02\",transport=\"ssh\"}"),
            Some("1".into())
        );
        assert_eq!(
            value("x2gobroker_agent_call_duration_seconds_count{transport=\"ssh\"}"),
            Some("1".into())
        );
        assert_eq!(
            value("x2gobroker_server_up{server=\"ts01\"}"),
            Some("1".into())
        );
        assert_eq!(
            value("x2gobroker_server_up{server=\"ts02\"}"),
            Some("0".into())
        );
        assert_eq!(
            value("x2gobroker_server_drained{server=\"ts02\"}"),
            Some("1".into())
        );
        assert_eq!(
            value("x2gobroker_server_drained{server=\"ts01\"}"),
            Some("0".into())
        );
        assert_eq!(
            value("x2gobroker_server_sessions{server=\"ts01\",state=\"running\"}"),
            Some("1".into())
        );
        assert_eq!(
            value("x2gobroker_server_sessions{server=\"ts01\",state=\"suspended\"}"),
            Some("2".into())
        );
        assert_eq!(
            value("x2gobroker_server_load_factor{server=\"ts01\"}"),
            Some("1200".into())
        );
        assert_eq!(
            value("x2gobroker_build_info{version=\""),
            Some("1".into()),
            "{text}"
        );
        assert!(text.contains("# TYPE x2gobroker_server_up gauge"));
        assert!(
            !text.contains("# EOF"),
            "Prometheus text format, not OpenMetrics"
        );
    }

    #[test]
    fn the_cluster_gauge_only_in_a_cluster() {
        let metrics = Metrics::default();
        let no_drain = |_: &str| false;
        assert!(!metrics.render(&[], &no_drain).contains("cluster_degraded"));
        let gauge = metrics.cluster_degraded();
        assert_eq!(
            line_value(
                &metrics.render(&[], &no_drain),
                "x2gobroker_cluster_degraded "
            ),
            Some("0".into())
        );
        gauge.set(1);
        assert_eq!(
            line_value(
                &metrics.render(&[], &no_drain),
                "x2gobroker_cluster_degraded "
            ),
            Some("1".into())
        );
    }
}
