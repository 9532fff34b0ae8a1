//! The status page: one self-contained HTML page (no external assets) with every server's health, transport, sessions, load, pending placements, drain state and last report age; it refreshes itself.

use crate::farm::balancer::ServerOverview;
use crate::farm::model::{Health, SessionStatus, Via};
use std::fmt::Write;

/// Seconds between the page's own refreshes.
pub const REFRESH_SECONDS: u32 = 5;

/// HTML-escapes text for element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn health_word(server: &ServerOverview) -> &'static str {
    match server.view.as_ref().map(|view| view.health) {
        Some(Health::Up) => "up",
        Some(Health::Degraded) => "degraded",
        Some(Health::Down) if server.last_heard.is_some() => "down",
        _ => "unknown",
    }
}

fn transport_word(via: Option<Via>) -> &'static str {
    match via {
        Some(Via::Grpc) => "gRPC",
        Some(Via::Ssh) => "SSH",
        Some(Via::Local) => "LOCAL",
        None => "–",
    }
}

fn age(server: &ServerOverview) -> String {
    match server.last_heard {
        None => "never".to_string(),
        Some(age) if age.as_secs() < 120 => format!("{:.1} s ago", age.as_secs_f64()),
        Some(age) => format!("{} min ago", age.as_secs() / 60),
    }
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;padding:1rem;background:#f6f7f9;color:#1c1e21}\
h1{font-size:1.3rem;margin:0 0 .25rem}p.meta{margin:0 0 1rem;color:#555;font-size:.9rem}\
.summary{display:flex;flex-wrap:wrap;gap:.5rem;margin-bottom:1rem}\
.summary span{background:#fff;border:1px solid #d8dbe0;border-radius:6px;padding:.3rem .6rem;font-size:.9rem}\
.wrap{overflow-x:auto}table{border-collapse:collapse;width:100%;background:#fff;font-size:.95rem}\
th,td{padding:.45rem .6rem;border-bottom:1px solid #e4e6ea;text-align:left;white-space:nowrap}\
th{background:#eceef1;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.badge{display:inline-block;border-radius:4px;padding:.05rem .45rem;font-weight:600;font-size:.85rem}\
.up{background:#d3f3dc;color:#11632b}.degraded{background:#fff1c2;color:#7a5a00}\
.down{background:#fbd5d5;color:#8a1414}.unknown{background:#e4e6ea;color:#444}\
tr.drained td{background:#fff6e0}.drain{background:#b35900;color:#fff}\
@media (max-width:600px){body{padding:.5rem}th,td{padding:.35rem .4rem;font-size:.85rem}}";

/// The page for `servers` (sorted by name) with `drained` telling each one's drain state.
pub fn render(servers: &[ServerOverview], drained: &dyn Fn(&str) -> bool, broker: &str) -> String {
    let mut rows = String::new();
    let (mut up, mut down, mut drained_count, mut running, mut suspended) = (0, 0, 0, 0, 0);
    for server in servers {
        let view = server.view.as_ref();
        let health = health_word(server);
        match health {
            "up" | "degraded" => up += 1,
            _ => down += 1,
        }
        let is_drained = drained(&server.name);
        if is_drained {
            drained_count += 1;
        }
        let legacy = view.and_then(|view| view.via).is_none_or(Via::is_legacy);
        let count = |status| {
            view.map_or(0, |view| {
                view.sessions
                    .iter()
                    .filter(|session| session.status == status)
                    .count()
            })
        };
        let (r, s) = (
            count(SessionStatus::Running),
            count(SessionStatus::Suspended),
        );
        running += r;
        suspended += s;
        let sessions = |n: usize| {
            if legacy {
                "–".to_string()
            } else {
                n.to_string()
            }
        };
        let name = escape(&server.name);
        let _ = write!(
            rows,
            "<tr class=\"server{drained_class}\" data-server=\"{name}\" data-health=\"{health}\" data-drained=\"{is_drained}\">\
             <td class=\"name\">{name}</td>\
             <td><span class=\"badge {health}\">{health}</span>{drain_badge}</td>\
             <td>{transport}</td><td class=\"num\">{running}</td><td class=\"num\">{suspended}</td>\
             <td class=\"num\">{load}</td><td class=\"num\">{pending}</td><td>{age}</td></tr>",
            drained_class = if is_drained { " drained" } else { "" },
            drain_badge = if is_drained {
                " <span class=\"badge drain\">DRAINED</span>"
            } else {
                ""
            },
            transport = transport_word(view.and_then(|view| view.via)),
            running = sessions(r),
            suspended = sessions(s),
            load = view
                .and_then(|view| view.load_factor)
                .map_or("–".to_string(), |factor| factor.to_string()),
            pending = view.map_or(0, |view| view.pending),
            age = age(server),
        );
    }
    if servers.is_empty() {
        rows.push_str("<tr><td colspan=\"8\">No server is supervised (no profile is driven by agents).</td></tr>");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>X2Go broker farm status</title><style>{STYLE}</style></head><body>\
         <h1>X2Go broker farm status</h1>\
         <p class=\"meta\">{broker} · {time} · refreshes every {REFRESH_SECONDS} s</p>\
         <div class=\"summary\"><span>{total} servers</span><span>{up} answering</span>\
         <span>{down} down or unknown</span><span>{drained_count} drained</span>\
         <span>{running} running, {suspended} suspended sessions</span></div>\
         <div class=\"wrap\"><table id=\"servers\"><thead><tr><th>Server</th><th>Health</th>\
         <th>Transport</th><th>Running</th><th>Suspended</th><th>Load factor</th>\
         <th>Pending</th><th>Last heard</th></tr></thead><tbody>{rows}</tbody></table></div>\
         </body></html>\n",
        broker = escape(broker),
        time = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
        total = servers.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::policy::{test_session, ServerView};
    use std::time::Duration;

    #[test]
    fn every_server_with_health_and_drain_state_names_escaped() {
        let servers = vec![
            ServerOverview {
                name: "ts01".into(),
                view: Some(ServerView {
                    health: Health::Up,
                    sessions: vec![test_session("a", "alice", "ts01", 'S')],
                    load_factor: Some(900),
                    pending: 2,
                    via: Some(Via::Grpc),
                    drained: false,
                }),
                last_heard: Some(Duration::from_millis(1500)),
            },
            ServerOverview {
                name: "<b>ts02".into(),
                view: Some(ServerView {
                    health: Health::Down,
                    ..ServerView::unknown()
                }),
                last_heard: Some(Duration::from_secs(600)),
            },
        ];
        let page = render(&servers, &|name| name == "<b>ts02", "broker1");
        assert!(page.contains("data-server=\"ts01\" data-health=\"up\" data-drained=\"false\""));
        assert!(page
            .contains("data-server=\"&lt;b&gt;ts02\" data-health=\"down\" data-drained=\"true\""));
        assert!(page.contains("class=\"server drained\""));
        assert!(page.contains("DRAINED"));
        assert!(!page.contains("<b>ts02"));
        assert!(page.contains("1.5 s ago") && page.contains("10 min ago"));
        assert!(page.contains("http-equiv=\"refresh\""));
        assert!(
            !page.contains("src=") && !page.contains("href="),
            "no external assets"
        );
    }
}
