//! The UCCS JSON of Arctica Greeter (§4): server list v4/v5, 2-space indent, `text/plain` content type.
//!
//! Exact format: Python's `json.dumps(…, sort_keys=True, indent=2)` (see `pyjson.rs`) of an
//! object with `URL` = `<url base without trailing '/'>/uccs/<backend as in the URL>/` (one
//! trailing `/`), `Name` = `X2Go Session Broker`, `AdditionalManagementServers` = `[]`,
//! `RemoteDesktopServers` = the entries, and `DefaultServer` = the `Name` of the last entry
//! (absent without entries). An RDP entry is `DomainRequired: true`, `Name`, `Password: ""`,
//! `Protocol: "rdp"`, `URL: "http://<first host>/"`, `Username`, `WindowsDomain: "LOCAL"`; an
//! X2Go entry is `Name`, `Password: ""`, `Protocol: "x2go"`, `URL: "http://<address>:<port>/"`,
//! `Username`, and `SessionType` + `SessionTypeRequired: true` (API 4) or `Command` +
//! `CommandRequired: true` (any other API digit). The ping route's body is
//! `str(datetime.utcnow())`: `YYYY-MM-DD HH:MM:SS.ffffff`, without the fraction when it is zero.

use super::pyjson;
use crate::reply::{RemoteDesktop, UccsReply};
use serde_json::{json, Map, Value as Json};

/// Renders the UCCS API answer.
pub fn render(reply: &UccsReply) -> String {
    let mut servers = Vec::new();
    let mut default_server = None;
    for server in &reply.servers {
        let entry = match server {
            RemoteDesktop::Rdp {
                name,
                first_host,
                username,
            } => json!({
                "DomainRequired": true,
                "Name": name,
                "Password": "",
                "Protocol": "rdp",
                "URL": format!("http://{first_host}/"),
                "Username": username,
                "WindowsDomain": "LOCAL",
            }),
            RemoteDesktop::X2go {
                name,
                address,
                port,
                username,
                command,
            } => {
                let mut entry = Map::new();
                entry.insert("Name".into(), json!(name));
                entry.insert("Password".into(), json!(""));
                entry.insert("Protocol".into(), json!("x2go"));
                entry.insert("URL".into(), json!(format!("http://{address}:{port}/")));
                entry.insert("Username".into(), json!(username));
                if reply.api_version == 4 {
                    entry.insert("SessionType".into(), json!(command));
                    entry.insert("SessionTypeRequired".into(), json!(true));
                } else {
                    entry.insert("Command".into(), json!(command));
                    entry.insert("CommandRequired".into(), json!(true));
                }
                Json::Object(entry)
            }
        };
        default_server = entry.get("Name").cloned();
        servers.push(entry);
    }
    let mut object = Map::new();
    let mut url = format!(
        "{}/uccs/{}",
        reply.url_base.trim_end_matches('/'),
        reply.backend_in_url
    );
    if !url.ends_with('/') {
        url.push('/');
    }
    object.insert("URL".into(), json!(url));
    object.insert("Name".into(), json!("X2Go Session Broker"));
    object.insert("AdditionalManagementServers".into(), json!([]));
    object.insert("RemoteDesktopServers".into(), Json::Array(servers));
    if let Some(name) = default_server {
        object.insert("DefaultServer".into(), name);
    }
    pyjson::dumps(&Json::Object(object), 2)
}

/// The ping route's body at `now`: Python's `str(datetime.utcnow())`.
pub fn render_ping(now: chrono::DateTime<chrono::Utc>) -> String {
    if now.timestamp_subsec_micros() == 0 {
        now.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        now.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn x2go(name: &str, command: &str) -> RemoteDesktop {
        RemoteDesktop::X2go {
            name: name.to_string(),
            address: "10.0.0.1".to_string(),
            port: 2222,
            username: "".to_string(),
            command: command.to_string(),
        }
    }

    #[test]
    fn api_4_and_5_name_the_command_field_differently() {
        let mut reply = UccsReply {
            url_base: "https://broker.example/".to_string(),
            backend_in_url: "inifile".to_string(),
            api_version: 4,
            servers: vec![x2go("One", "KDE")],
        };
        assert_eq!(
            render(&reply),
            "{\n  \"AdditionalManagementServers\": [],\n  \"DefaultServer\": \"One\",\n  \
             \"Name\": \"X2Go Session Broker\",\n  \"RemoteDesktopServers\": [\n    {\n      \
             \"Name\": \"One\",\n      \"Password\": \"\",\n      \"Protocol\": \"x2go\",\n      \
             \"SessionType\": \"KDE\",\n      \"SessionTypeRequired\": true,\n      \
             \"URL\": \"http://10.0.0.1:2222/\",\n      \"Username\": \"\"\n    }\n  ],\n  \
             \"URL\": \"https://broker.example/uccs/inifile/\"\n}"
        );
        reply.api_version = 7;
        let v5 = render(&reply);
        assert!(v5.contains("\"Command\": \"KDE\",\n      \"CommandRequired\": true,"));
        assert!(!v5.contains("SessionType"));
    }

    #[test]
    fn rdp_entries_and_the_last_entry_as_default() {
        let reply = UccsReply {
            url_base: "http://b".to_string(),
            backend_in_url: "".to_string(),
            api_version: 5,
            servers: vec![
                x2go("First", "xterm"),
                RemoteDesktop::Rdp {
                    name: "Windows".to_string(),
                    first_host: "win.example".to_string(),
                    username: "jörg".to_string(),
                },
            ],
        };
        let text = render(&reply);
        assert!(text.contains(
            "    {\n      \"DomainRequired\": true,\n      \"Name\": \"Windows\",\n      \
             \"Password\": \"\",\n      \"Protocol\": \"rdp\",\n      \
             \"URL\": \"http://win.example/\",\n      \"Username\": \"j\\u00f6rg\",\n      \
             \"WindowsDomain\": \"LOCAL\"\n    }\n"
        ));
        assert!(text.contains("\"DefaultServer\": \"Windows\",\n"));
        assert!(text.ends_with("\"URL\": \"http://b/uccs/\"\n}"));
    }

    #[test]
    fn no_servers_no_default_server() {
        let reply = UccsReply {
            url_base: "".to_string(),
            backend_in_url: "zeroconf".to_string(),
            api_version: 5,
            servers: Vec::new(),
        };
        assert_eq!(
            render(&reply),
            "{\n  \"AdditionalManagementServers\": [],\n  \"Name\": \"X2Go Session Broker\",\n  \
             \"RemoteDesktopServers\": [],\n  \"URL\": \"/uccs/zeroconf/\"\n}"
        );
    }

    #[test]
    fn ping_prints_like_python_datetime() {
        let whole = chrono::Utc.with_ymd_and_hms(2024, 2, 29, 7, 5, 9).unwrap();
        assert_eq!(render_ping(whole), "2024-02-29 07:05:09");
        let fraction = whole + chrono::Duration::microseconds(1200);
        assert_eq!(render_ping(fraction), "2024-02-29 07:05:09.001200");
    }
}
