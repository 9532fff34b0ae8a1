//! The UCCS JSON of Arctica Greeter (§4): server list v4/v5, 2-space indent, `text/plain` content type.

use super::pyjson;
use crate::config::Value;
use crate::profiles::{ListedProfile, DESKTOP_COMMANDS};
use serde_json::{json, Map, Value as Json};

/// Why a UCCS listing cannot be rendered (the reference answers 500).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum UccsError {
    #[error("RDP profile [{0}] has no name")]
    RdpWithoutName(String),
}

/// Renders the UCCS answer for already ACL-filtered, transformed, id-sorted `profiles`.
/// `pick_host` chooses one of a profile's hosts (the reference uses `random.choice`).
pub fn render(
    url_base: &str,
    backend_in_url: &str,
    api_version: u32,
    user: &str,
    profiles: &[ListedProfile],
    pick_host: &mut dyn FnMut(&[String]) -> Option<String>,
) -> Result<String, UccsError> {
    let mut servers = Vec::new();
    let mut default_server = None;
    for profile in profiles {
        let text = |key: &str| profile.get(key).map(Value::render_plain);
        let hosts = profile.hosts();
        let directrdp = matches!(profile.get("directrdp"), Some(Value::Bool(true)));
        let entry = if directrdp {
            let name =
                text("name").ok_or_else(|| UccsError::RdpWithoutName(profile.id().to_string()))?;
            let first_host = hosts.first().cloned().unwrap_or_default();
            json!({
                "DomainRequired": true,
                "Name": name,
                "Password": "",
                "Protocol": "rdp",
                "URL": format!("http://{first_host}/"),
                "Username": user,
                "WindowsDomain": "LOCAL",
            })
        } else {
            let name = text("name").unwrap_or_else(|| profile.id().to_string());
            let host = pick_host(&hosts).unwrap_or_default();
            let port = profile
                .host_port(&host)
                .or_else(|| match profile.get("sshport") {
                    Some(Value::Int(port)) => Some(*port),
                    _ => None,
                })
                .unwrap_or(22);
            let address = profile.host_address(&host).unwrap_or_else(|| host.clone());
            let command = text("command").unwrap_or_default();
            let upper = command.to_uppercase();
            let command = if DESKTOP_COMMANDS.contains(&upper.as_str()) {
                upper
            } else {
                command
            };
            let username = text("user").unwrap_or_default();
            let mut entry = Map::new();
            entry.insert("Name".into(), json!(name));
            entry.insert("Password".into(), json!(""));
            entry.insert("Protocol".into(), json!("x2go"));
            entry.insert("URL".into(), json!(format!("http://{address}:{port}/")));
            entry.insert("Username".into(), json!(username));
            if api_version == 4 {
                entry.insert("SessionType".into(), json!(command));
                entry.insert("SessionTypeRequired".into(), json!(true));
            } else {
                entry.insert("Command".into(), json!(command));
                entry.insert("CommandRequired".into(), json!(true));
            }
            Json::Object(entry)
        };
        default_server = entry.get("Name").cloned();
        servers.push(entry);
    }
    let mut object = Map::new();
    let mut url = format!("{}/uccs/{backend_in_url}", url_base.trim_end_matches('/'));
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
    Ok(pyjson::dumps(&Json::Object(object), 2))
}
