//! The load generator: closed-loop HTTP/1.1 keep-alive clients (hyper) at fixed concurrency, with warm-up and an hdrhistogram of latencies.
//!
//! Every worker owns one connection and sends its next request when the previous answer has
//! been read completely. Answers arriving within the measured window count (also those of
//! requests sent during the warm-up); requests still in flight at its end are abandoned and
//! not counted (as wrk does); answers with another status than 200 or without the expected
//! text count as errors, so a broker that answers fast but wrongly does not score.

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Upper bound of the latency histograms: 120 s in microseconds.
const HISTOGRAM_MAX_US: u64 = 120_000_000;

/// A new, empty latency histogram (microseconds, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("valid histogram bounds")
}

/// Records `elapsed` into `histogram`, clamped to its range.
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = (elapsed.as_micros() as u64).clamp(1, HISTOGRAM_MAX_US);
    histogram.saturating_record(micros);
}

/// One kind of request, sent over and over.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub method: Method,
    pub path: String,
    /// Form bodies (POST); workers go through them in turn, so requests can vary by user.
    pub bodies: Arc<Vec<String>>,
    /// Text every good answer contains.
    pub expect: Option<String>,
}

impl Scenario {
    /// `GET path`.
    pub fn get(name: &str, path: &str, expect: Option<&str>) -> Scenario {
        Scenario {
            name: name.to_string(),
            method: Method::GET,
            path: path.to_string(),
            bodies: Arc::new(Vec::new()),
            expect: expect.map(str::to_string),
        }
    }

    /// `POST path` with form bodies.
    pub fn post(name: &str, path: &str, bodies: Vec<String>, expect: Option<&str>) -> Scenario {
        Scenario {
            name: name.to_string(),
            method: Method::POST,
            path: path.to_string(),
            bodies: Arc::new(bodies),
            expect: expect.map(str::to_string),
        }
    }

    fn body(&self, number: usize) -> Option<&str> {
        match self.bodies.len() {
            0 => None,
            count => Some(&self.bodies[number % count]),
        }
    }
}

/// How hard and how long.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// A request taking longer than this counts as an error.
    pub request_timeout: Duration,
}

/// The outcome of one load run.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Good answers within the measured window.
    pub requests: u64,
    /// Failed requests (connection errors, timeouts, wrong status or content).
    pub errors: u64,
    /// Length of the measured window.
    pub elapsed: Duration,
    /// Latency of the good answers, microseconds.
    pub latency: Histogram<u64>,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
}

impl LoadResult {
    /// Good answers per second.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency quantile in milliseconds (0 when nothing was measured).
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        quantile_ms(&self.latency, quantile)
    }
}

/// A quantile of a microsecond histogram, in milliseconds (0 when it is empty).
pub fn quantile_ms(latency: &Histogram<u64>, quantile: f64) -> f64 {
    if latency.is_empty() {
        return 0.0;
    }
    latency.value_at_quantile(quantile) as f64 / 1000.0
}

/// One keep-alive HTTP/1.1 connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    address: SocketAddr,
}

impl Connection {
    /// Connects to `address` (TCP_NODELAY, as the brokers set on their side).
    pub async fn open(address: SocketAddr) -> anyhow::Result<Connection> {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to {address}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender, address })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: &Method,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        use http_body_util::BodyExt;
        let mut builder = hyper::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, self.address.to_string());
        if body.is_some() {
            builder = builder.header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        }
        let request = builder.body(Full::new(Bytes::from(body.unwrap_or("").to_string())))?;
        self.sender.ready().await.context("connection not ready")?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// POSTs a form to `path` and returns the answer's text (status 200 required).
    pub async fn post_form(&mut self, path: &str, body: &str) -> anyhow::Result<String> {
        let (status, bytes) = self.send(&Method::POST, path, Some(body)).await?;
        if status != StatusCode::OK {
            bail!("{path}: status {status}");
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Checks an answer against the scenario's expectations.
fn check(scenario: &Scenario, status: StatusCode, body: &[u8]) -> Result<(), String> {
    if status != StatusCode::OK {
        return Err(format!("status {status}"));
    }
    if let Some(expected) = &scenario.expect {
        let text = String::from_utf8_lossy(body);
        if !text.contains(expected.as_str()) {
            let start: String = text.chars().take(120).collect();
            return Err(format!("answer without {expected:?}: {start:?}"));
        }
    }
    Ok(())
}

struct WorkerOutcome {
    requests: u64,
    errors: u64,
    latency: Histogram<u64>,
    first_error: Option<String>,
}

async fn worker(
    index: usize,
    address: SocketAddr,
    scenario: Arc<Scenario>,
    spec: LoadSpec,
    warmup_end: Instant,
    end: Instant,
) -> WorkerOutcome {
    let mut outcome = WorkerOutcome {
        requests: 0,
        errors: 0,
        latency: new_histogram(),
        first_error: None,
    };
    let mut connection: Option<Connection> = None;
    let mut number = index;
    // Requests in flight at the end of the warm-up run on; every answer that arrives within
    // the measured window counts (so abandoned warm-up requests cannot queue up in front of
    // the measured ones on a slow server). Requests in flight at the end are abandoned.
    while Instant::now() < end {
        let measuring = || Instant::now() >= warmup_end;
        if connection.is_none() {
            match tokio::time::timeout_at(end, Connection::open(address)).await {
                Ok(Ok(opened)) => connection = Some(opened),
                Ok(Err(error)) => {
                    if measuring() {
                        outcome.errors += 1;
                        outcome.first_error.get_or_insert(error.to_string());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(_) => continue,
            }
        }
        let Some(open) = connection.as_mut() else {
            continue;
        };
        let body = scenario.body(number);
        number += spec.concurrency;
        let started = Instant::now();
        let limit = (started + spec.request_timeout).min(end);
        let answer =
            tokio::time::timeout_at(limit, open.send(&scenario.method, &scenario.path, body)).await;
        let elapsed = started.elapsed();
        let result = match answer {
            Ok(Ok((status, bytes))) => check(&scenario, status, &bytes),
            Ok(Err(error)) => {
                connection = None;
                Err(error.to_string())
            }
            Err(_) => {
                // abandoned: the connection is mid-request, open a new one
                connection = None;
                if Instant::now() >= end {
                    continue;
                }
                Err(format!("no answer within {:?}", spec.request_timeout))
            }
        };
        if !measuring() {
            continue;
        }
        match result {
            Ok(()) => {
                outcome.requests += 1;
                record(&mut outcome.latency, elapsed);
            }
            Err(error) => {
                outcome.errors += 1;
                outcome.first_error.get_or_insert(error);
            }
        }
    }
    outcome
}

/// Runs `scenario` against `address`: `spec.concurrency` workers, warm-up, then the measured window.
pub async fn run(address: SocketAddr, scenario: &Scenario, spec: LoadSpec) -> LoadResult {
    let scenario = Arc::new(scenario.clone());
    let warmup_end = Instant::now() + spec.warmup;
    let end = warmup_end + spec.duration;
    let workers: Vec<_> = (0..spec.concurrency.max(1))
        .map(|index| {
            tokio::spawn(worker(
                index,
                address,
                scenario.clone(),
                spec,
                warmup_end,
                end,
            ))
        })
        .collect();
    let mut result = LoadResult {
        requests: 0,
        errors: 0,
        elapsed: spec.duration,
        latency: new_histogram(),
        first_error: None,
    };
    for handle in workers {
        let Ok(outcome) = handle.await else {
            result.errors += 1;
            continue;
        };
        result.requests += outcome.requests;
        result.errors += outcome.errors;
        let _ = result.latency.add(&outcome.latency);
        if result.first_error.is_none() {
            result.first_error = outcome.first_error;
        }
    }
    result
}

/// Waits until `GET /` answers within `quick` (a server draining a backlog of abandoned
/// requests answers late); gives up after `limit`. Returns whether it became quick.
pub async fn wait_until_quick(address: SocketAddr, quick: Duration, limit: Duration) -> bool {
    let give_up = Instant::now() + limit;
    while Instant::now() < give_up {
        let started = Instant::now();
        let attempt = tokio::time::timeout(Duration::from_secs(2), async {
            let mut connection = Connection::open(address).await?;
            connection.send(&Method::GET, "/", None).await
        })
        .await;
        if matches!(attempt, Ok(Ok((StatusCode::OK, _)))) && started.elapsed() <= quick {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Answers of a burst of simultaneous requests.
#[derive(Debug)]
pub struct Burst {
    /// (latency, answer text) of every request that was answered.
    pub answers: Vec<(Duration, String)>,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// Opens one connection per body, then sends every request at the same moment (a login
/// storm); bounded by `limit` overall.
pub async fn burst(address: SocketAddr, path: &str, bodies: &[String], limit: Duration) -> Burst {
    let give_up = Instant::now() + limit;
    let mut connections = Vec::with_capacity(bodies.len());
    for _ in bodies {
        connections.push(tokio::spawn(Connection::open(address)));
    }
    let (start_sender, start_receiver) = tokio::sync::watch::channel(false);
    let mut requests = Vec::with_capacity(bodies.len());
    for (opening, body) in connections.into_iter().zip(bodies) {
        let mut start = start_receiver.clone();
        let body = body.clone();
        let path = path.to_string();
        requests.push(tokio::spawn(async move {
            let mut connection = opening.await??;
            while !*start.borrow_and_update() {
                start.changed().await?;
            }
            let started = Instant::now();
            let text = tokio::time::timeout_at(give_up, connection.post_form(&path, &body))
                .await
                .context("no answer within the storm's limit")??;
            anyhow::Ok((started.elapsed(), text))
        }));
    }
    // let every connection settle before the storm
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = start_sender.send(true);
    let mut result = Burst {
        answers: Vec::with_capacity(bodies.len()),
        errors: 0,
        first_error: None,
    };
    for request in requests {
        match request.await {
            Ok(Ok(answer)) => result.answers.push(answer),
            Ok(Err(error)) => {
                result.errors += 1;
                result.first_error.get_or_insert(format!("{error:#}"));
            }
            Err(error) => {
                result.errors += 1;
                result.first_error.get_or_insert(error.to_string());
            }
        }
    }
    result
}
