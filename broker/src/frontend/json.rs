//! The JSON protocol of Python X2Go (§3.7): sorted keys, 4-space indent, `port` as a string, `text/json`.

use super::super::reply::{BrokerReply, TaskOutcome};
use super::{pyjson, value_to_json};
use serde_json::{Map, Value};

/// Renders a reply for the HTTP json frontend; `testcon` gives an empty body.
pub fn render(reply: &BrokerReply) -> String {
    if matches!(reply.outcome, TaskOutcome::Testcon) {
        return String::new();
    }
    let mut object = Map::new();
    object.insert("task".into(), Value::String(reply.task.clone()));
    object.insert("auth-status".into(), Value::String("Access granted".into()));
    if let Some(cookie) = &reply.next_cookie {
        object.insert("next-authid".into(), Value::String(cookie.clone()));
    }
    match &reply.outcome {
        TaskOutcome::Listing(profiles) => {
            let mut listed = Map::new();
            for profile in profiles {
                let keys: Map<String, Value> = profile
                    .keys()
                    .map(|(key, value)| (key.to_string(), value_to_json(value)))
                    .collect();
                listed.insert(profile.id().to_string(), Value::Object(keys));
            }
            object.insert("profiles".into(), Value::Object(listed));
        }
        TaskOutcome::Selection(selection) => {
            let mut selected = Map::new();
            if let Some(selection) = selection {
                selected.insert("server".into(), Value::String(selection.server.clone()));
                selected.insert("port".into(), Value::String(selection.port.to_string()));
                if let Some(key) = &selection.private_key {
                    selected.insert("key".into(), Value::String(key.clone()));
                }
                if selection.pubkey_accepted {
                    selected.insert(
                        "authentication_pubkey".into(),
                        Value::String("ACCEPTED".into()),
                    );
                }
                if let Some(info) = &selection.session_info {
                    selected.insert("session_info".into(), Value::String(info.clone()));
                }
            }
            object.insert("selected_session".into(), Value::Object(selected));
        }
        TaskOutcome::None | TaskOutcome::Testcon => {}
    }
    pyjson::dumps(&Value::Object(object), 4)
}
