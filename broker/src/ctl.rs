//! `x2gobroker-ctl`: the admin API's command-line client (state, server, drain, undrain, explain), readable tables or `--json`, documented exit codes.

use clap::{Parser, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use x2gobroker_proto::admin::v1 as pb;
use x2gobroker_proto::admin::v1::admin_client::AdminClient;

/// Exit code: done.
pub const EXIT_OK: i32 = 0;
/// Exit code: the broker refused (unknown server or profile, bad argument, not authorised).
pub const EXIT_REFUSED: i32 = 1;
/// Exit code: the command line is wrong (clap's own code).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the broker's admin listener cannot be reached.
pub const EXIT_UNREACHABLE: i32 = 3;

/// Admin client of the X2Go session broker (x2gobroker-rs): see and drain the farm, explain
/// selections.
///
/// Exit codes: 0 done, 1 refused or not found, 2 usage, 3 cannot reach the broker.
#[derive(Debug, Parser)]
#[command(name = "x2gobroker-ctl", version)]
pub struct Cli {
    /// The broker's admin listener (`[admin] bind`)
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8081",
        env = "X2GOBROKER_ADMIN_URL"
    )]
    pub admin: String,
    /// Print JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// A file whose first line is the admin token (`[admin] token-file`)
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The CA that signed the admin listener's certificate (https URLs)
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// This client's certificate, for a listener with `[admin] client-ca`
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// This client's key
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Seconds to wait for the broker
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every server with health, transport, sessions, load, pending placements, drain state
    State,
    /// One server
    Server { name: String },
    /// Take a server out of rotation: no new sessions, its sessions are still resumed
    Drain { name: String },
    /// Put a drained server back into rotation
    Undrain { name: String },
    /// Which server the next selectsession of USER on PROFILE gets, and why
    Explain {
        user: String,
        profile: String,
        /// The client address the ACLs see
        #[arg(long, default_value = "127.0.0.1")]
        client: String,
    },
}

/// What went wrong, with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    fn unreachable(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_UNREACHABLE,
            message: message.into(),
        }
    }

    fn from_status(status: tonic::Status) -> Failure {
        use tonic::Code;
        let code = match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
                EXIT_UNREACHABLE
            }
            _ => EXIT_REFUSED,
        };
        Failure {
            code,
            message: match status.code() {
                Code::Unauthenticated => format!("refused: {}", status.message()),
                Code::NotFound => format!("not found: {}", status.message()),
                _ => status.message().to_string(),
            },
        }
    }
}

async fn connect(cli: &Cli) -> Result<Channel, Failure> {
    let timeout = Duration::from_secs(cli.timeout.max(1));
    let mut endpoint = Endpoint::from_shared(cli.admin.clone())
        .map_err(|error| Failure {
            code: EXIT_USAGE,
            message: format!("--admin {}: {error}", cli.admin),
        })?
        .connect_timeout(timeout)
        .timeout(timeout);
    if cli.admin.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        let Some(ca) = &cli.ca_file else {
            return Err(Failure {
                code: EXIT_USAGE,
                message: "an https admin URL needs --ca-file".to_string(),
            });
        };
        let pem = std::fs::read(ca).map_err(|error| Failure {
            code: EXIT_USAGE,
            message: format!("{}: {error}", ca.display()),
        })?;
        tls = tls.ca_certificate(Certificate::from_pem(pem));
        if let (Some(certificate), Some(key)) = (&cli.cert, &cli.key) {
            let read = |path: &PathBuf| {
                std::fs::read(path).map_err(|error| Failure {
                    code: EXIT_USAGE,
                    message: format!("{}: {error}", path.display()),
                })
            };
            tls = tls.identity(Identity::from_pem(read(certificate)?, read(key)?));
        }
        endpoint = endpoint.tls_config(tls).map_err(|error| Failure {
            code: EXIT_USAGE,
            message: error.to_string(),
        })?;
    }
    endpoint
        .connect()
        .await
        .map_err(|error| Failure::unreachable(format!("cannot reach {}: {error}", cli.admin)))
}

fn token(cli: &Cli) -> Result<Option<String>, Failure> {
    let Some(path) = &cli.token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|error| Failure {
        code: EXIT_USAGE,
        message: format!("{}: {error}", path.display()),
    })?;
    Ok(Some(
        text.lines().next().unwrap_or_default().trim().to_string(),
    ))
}

fn request<T>(message: T, token: &Option<String>) -> Result<tonic::Request<T>, Failure> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().map_err(|_| Failure {
            code: EXIT_USAGE,
            message: "the token is not a valid header value".to_string(),
        })?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// Runs the command; the text to print, or the failure.
pub async fn run(cli: &Cli) -> Result<String, Failure> {
    let token = token(cli)?;
    let mut client = AdminClient::new(connect(cli).await?);
    let json = cli.json;
    match &cli.command {
        Command::State => {
            let reply = client
                .farm_state(request(pb::FarmStateRequest {}, &token)?)
                .await
                .map_err(Failure::from_status)?
                .into_inner();
            Ok(if json {
                json!({
                    "servers": reply.servers.iter().map(server_json).collect::<Vec<_>>(),
                    "drained_unknown": reply.drained_unknown,
                })
                .to_string()
            } else {
                state_table(&reply)
            })
        }
        Command::Server { name } => {
            let reply = client
                .server_state(request(
                    pb::ServerStateRequest { name: name.clone() },
                    &token,
                )?)
                .await
                .map_err(Failure::from_status)?
                .into_inner();
            Ok(if json {
                server_json(&reply).to_string()
            } else {
                server_text(&reply)
            })
        }
        Command::Drain { name } | Command::Undrain { name } => {
            let drain = matches!(cli.command, Command::Drain { .. });
            let message = pb::DrainRequest { name: name.clone() };
            let reply = if drain {
                client.drain(request(message, &token)?).await
            } else {
                client.undrain(request(message, &token)?).await
            }
            .map_err(Failure::from_status)?
            .into_inner();
            Ok(if json {
                json!({"name": reply.name, "drained": reply.drained, "changed": reply.changed})
                    .to_string()
            } else {
                let state = if reply.drained {
                    "drained"
                } else {
                    "in rotation"
                };
                let change = if reply.changed { "" } else { " (already)" };
                format!("{}: {state}{change}", reply.name)
            })
        }
        Command::Explain {
            user,
            profile,
            client: address,
        } => {
            let message = pb::ExplainRequest {
                user: user.clone(),
                profile: profile.clone(),
                client_address: address.clone(),
            };
            let reply = client
                .explain(request(message, &token)?)
                .await
                .map_err(Failure::from_status)?
                .into_inner();
            Ok(if json {
                explain_json(&reply).to_string()
            } else {
                explain_text(&reply)
            })
        }
    }
}

fn health_word(health: i32) -> &'static str {
    match pb::Health::try_from(health) {
        Ok(pb::Health::Up) => "up",
        Ok(pb::Health::Degraded) => "degraded",
        Ok(pb::Health::Down) => "down",
        _ => "unknown",
    }
}

fn outcome_word(outcome: i32) -> &'static str {
    match pb::Outcome::try_from(outcome) {
        Ok(pb::Outcome::Resume) => "resume",
        Ok(pb::Outcome::TakeOver) => "take-over",
        Ok(pb::Outcome::New) => "new",
        _ => "none",
    }
}

fn age(server: &pb::ServerInfo) -> String {
    server.last_report_age_ms.map_or("never".to_string(), |ms| {
        format!("{:.1}s", ms as f64 / 1000.0)
    })
}

fn server_json(server: &pb::ServerInfo) -> serde_json::Value {
    json!({
        "name": server.name,
        "health": health_word(server.health),
        "transport": server.transport,
        "running_sessions": server.sessions_known.then_some(server.running_sessions),
        "suspended_sessions": server.sessions_known.then_some(server.suspended_sessions),
        "load_factor": server.load_factor,
        "pending_placements": server.pending_placements,
        "drained": server.drained,
        "last_report_age_ms": server.last_report_age_ms,
    })
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.len()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            widths[index] = widths[index].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[index] - cell.chars().count() + 2;
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            }
        }
        text.trim_end().to_string()
    };
    let mut out = vec![line(header.iter().map(|cell| cell.to_string()).collect())];
    out.extend(rows.iter().map(|row| line(row.clone())));
    out.join("\n")
}

fn state_table(reply: &pb::FarmStateReply) -> String {
    let sessions = |server: &pb::ServerInfo, count: u32| {
        if server.sessions_known {
            count.to_string()
        } else {
            "-".to_string()
        }
    };
    let rows: Vec<Vec<String>> = reply
        .servers
        .iter()
        .map(|server| {
            vec![
                server.name.clone(),
                health_word(server.health).to_string(),
                if server.transport.is_empty() {
                    "-".to_string()
                } else {
                    server.transport.clone()
                },
                sessions(server, server.running_sessions),
                sessions(server, server.suspended_sessions),
                server
                    .load_factor
                    .map_or("-".to_string(), |factor| factor.to_string()),
                server.pending_placements.to_string(),
                if server.drained { "DRAINED" } else { "no" }.to_string(),
                age(server),
            ]
        })
        .collect();
    let mut text = table(
        &[
            "SERVER",
            "HEALTH",
            "TRANSPORT",
            "RUNNING",
            "SUSPENDED",
            "LOAD",
            "PENDING",
            "DRAINED",
            "LAST REPORT",
        ],
        &rows,
    );
    if !reply.drained_unknown.is_empty() {
        text.push_str(&format!(
            "\ndrained, named by no profile: {}",
            reply.drained_unknown.join(", ")
        ));
    }
    text
}

fn server_text(server: &pb::ServerInfo) -> String {
    let sessions = |count: u32| {
        if server.sessions_known {
            count.to_string()
        } else {
            "- (legacy agent: not reported)".to_string()
        }
    };
    [
        format!("server:      {}", server.name),
        format!("health:      {}", health_word(server.health)),
        format!(
            "transport:   {}",
            if server.transport.is_empty() {
                "-"
            } else {
                &server.transport
            }
        ),
        format!("running:     {}", sessions(server.running_sessions)),
        format!("suspended:   {}", sessions(server.suspended_sessions)),
        format!(
            "load factor: {}",
            server
                .load_factor
                .map_or("-".to_string(), |factor| factor.to_string())
        ),
        format!("pending:     {}", server.pending_placements),
        format!("drained:     {}", if server.drained { "yes" } else { "no" }),
        format!("last report: {}", age(server)),
    ]
    .join("\n")
}

fn explain_json(reply: &pb::ExplainReply) -> serde_json::Value {
    json!({
        "outcome": outcome_word(reply.outcome),
        "server": reply.server,
        "address": reply.address,
        "port": reply.port,
        "session_id": reply.session_id,
        "summary": reply.summary,
        "path": reply.path,
        "servers": reply.servers.iter().map(|server| json!({
            "name": server.name,
            "chosen": server.chosen,
            "reason": server.reason,
            "health": health_word(server.health),
            "running_sessions": server.running_sessions,
            "suspended_sessions": server.suspended_sessions,
            "pending_placements": server.pending_placements,
            "load_factor": server.load_factor,
            "drained": server.drained,
            "rank": server.rank,
        })).collect::<Vec<_>>(),
    })
}

fn explain_text(reply: &pb::ExplainReply) -> String {
    let mut text = format!(
        "{}: {} ({})\nanswer: {}:{}",
        outcome_word(reply.outcome),
        reply.summary,
        reply.path,
        reply.address,
        reply.port
    );
    if !reply.server.is_empty() {
        text = format!("server: {}\n{text}", reply.server);
    }
    if !reply.servers.is_empty() {
        let rows: Vec<Vec<String>> = reply
            .servers
            .iter()
            .map(|server| {
                vec![
                    if server.chosen { "*" } else { "" }.to_string(),
                    server.name.clone(),
                    server.reason.clone(),
                ]
            })
            .collect();
        text.push_str("\n\n");
        text.push_str(&table(&["", "SERVER", "REASON"], &rows));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up_and_explanations_name_the_chosen_server() {
        let reply = pb::FarmStateReply {
            servers: vec![
                pb::ServerInfo {
                    name: "ts01".into(),
                    health: pb::Health::Up as i32,
                    transport: "grpc".into(),
                    running_sessions: 2,
                    suspended_sessions: 1,
                    load_factor: Some(800),
                    pending_placements: 0,
                    drained: false,
                    last_report_age_ms: Some(1200),
                    sessions_known: true,
                },
                pb::ServerInfo {
                    name: "terminal-server-02".into(),
                    health: pb::Health::Down as i32,
                    drained: true,
                    ..Default::default()
                },
            ],
            drained_unknown: vec![],
        };
        let text = state_table(&reply);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let column = lines[0].find("HEALTH").unwrap();
        assert_eq!(&lines[1][column..column + 2], "up");
        assert_eq!(&lines[2][column..column + 4], "down");
        assert!(lines[2].contains("DRAINED") && lines[2].contains("never"));
        let explained = explain_text(&pb::ExplainReply {
            outcome: pb::Outcome::New as i32,
            server: "ts01".into(),
            address: "10.0.0.1".into(),
            port: 22,
            summary: "a new session on ts01".into(),
            path: "live farm".into(),
            servers: vec![pb::ServerReason {
                name: "ts01".into(),
                chosen: true,
                reason: "chosen: lowest rank".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert!(explained.starts_with("server: ts01\nnew: a new session on ts01"));
        assert!(
            explained.contains("*  ts01    chosen: lowest rank"),
            "{explained}"
        );
    }
}
