//! Golden tests of profile building and the listing transform (`api_profiles.jsonl`).

use super::*;
use serde_json::{json, Map, Value as Json};

fn golden(name: &str) -> String {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn to_json(value: &Value) -> Json {
    match value {
        Value::Str(text) => json!(text),
        Value::Bool(flag) => json!(flag),
        Value::Int(number) => json!(number),
        Value::List(items) => json!(items),
    }
}

fn keys_to_json(keys: &[(String, Value)]) -> Json {
    let mut map = Map::new();
    for (key, value) in keys {
        map.insert(key.clone(), to_json(value));
    }
    Json::Object(map)
}

#[test]
fn api_profiles_golden_records() {
    let mut checked = 0;
    let mut total = 0;
    for line in golden("api_profiles.jsonl").lines() {
        let record: Json = serde_json::from_str(line).unwrap();
        let Some(id) = record.get("profile_id").and_then(Json::as_str) else {
            continue;
        };
        total += 1;
        let file = record["profiles_file"].as_str().unwrap();
        let document = IniDocument::parse(&golden(&format!("configs/{file}"))).unwrap();
        let profile = build_profile(&document, id).unwrap().unwrap();
        assert_eq!(
            keys_to_json(&profile.keys),
            record["get_profile"],
            "get_profile {id}"
        );
        let broker: Map<String, Json> = profile
            .broker
            .iter()
            .map(|(key, value)| (key.clone(), json!(value)))
            .collect();
        assert_eq!(
            Json::Object(broker),
            record["get_profile_broker"],
            "broker keys {id}"
        );
        assert_eq!(
            keys_to_json(&profile.acls),
            record["get_profile_acls"],
            "acls {id}"
        );
        let autologin = profile
            .broker_key("broker-session-autologin")
            .map(|value| matches!(value.to_lowercase().as_str(), "1" | "true"))
            .unwrap_or(false);
        for (flavour, field) in [
            (ListingFlavour::Broker, "get_profile_for_user(maja)"),
            (ListingFlavour::Uccs, "get_profile_for_user(maja, uccs)"),
        ] {
            let settings = crate::config::ProfileSettings::resolve(
                &crate::config::BrokerConfig::default(),
                crate::config::Backend::Inifile,
                &profile,
            );
            let built = Arc::new(BuiltProfile::new(profile.clone(), settings));
            let listed = listing_profile(&built, "maja", flavour, autologin, &HostStatus::Unknown);
            let keys: Vec<(String, Value)> = listed
                .keys()
                .map(|(key, value)| (key.to_string(), value.clone()))
                .collect();
            assert_eq!(keys_to_json(&keys), record[field], "{field} {id}");
        }
        checked += 1;
    }
    println!("api_profiles: {checked} of {total} profile records match");
    assert_eq!(checked, total);
    assert!(total >= 9);
}

#[test]
fn builtin_defaults_match_the_reference() {
    for line in golden("api_profiles.jsonl").lines() {
        let record: Json = serde_json::from_str(line).unwrap();
        match record.get("function").and_then(Json::as_str) {
            Some("base get_profile_defaults (built-in)") => {
                let keys: Vec<(String, Value)> = builtin_defaults_without_acls()
                    .into_iter()
                    .map(|(key, value)| (key.to_string(), value))
                    .collect();
                assert_eq!(keys_to_json(&keys), record["result"]);
            }
            Some("get_profile_defaults") => {
                // the built-ins overlaid with the file's [DEFAULT] section, typed
                let file = record["profiles_file"].as_str().unwrap();
                let document = IniDocument::parse(&golden(&format!("configs/{file}"))).unwrap();
                let keys: Vec<(String, Value)> = builtin_defaults_without_acls()
                    .into_iter()
                    .map(|(key, default)| {
                        let value = match document.defaults.get(key) {
                            Some(raw) => {
                                crate::config::typing::type_value(key, raw, &default).unwrap()
                            }
                            None => default,
                        };
                        (key.to_string(), value)
                    })
                    .collect();
                assert_eq!(keys_to_json(&keys), record["result"]);
            }
            Some("get_acl_defaults") => {
                let keys: Vec<(String, Value)> = acl_defaults()
                    .into_iter()
                    .map(|(key, value)| (key.to_string(), value))
                    .collect();
                assert_eq!(keys_to_json(&keys), record["result"]);
            }
            _ => {}
        }
    }
}

#[test]
fn plain_key_order_follows_section_then_default_then_builtins() {
    let document = IniDocument::parse(&golden("configs/profiles_basic.ini")).unwrap();
    let profile = build_profile(&document, "a-single").unwrap().unwrap();
    let order: Vec<&str> = profile.keys.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        &order[..6],
        ["name", "host", "command", "user", "usebrokerpass", "kdrive"]
    );
    assert_eq!(order.last(), Some(&"directrdp"));
}

#[test]
fn broken_values_fail_only_their_profile() {
    let document = IniDocument::parse(
        "[ok]\nhost = a\n[broken]\nfullscreen = not-set\n[port]\nsshport = not-set\n",
    )
    .unwrap();
    assert!(build_profile(&document, "ok").unwrap().is_some());
    assert!(build_profile(&document, "broken").is_err());
    assert!(build_profile(&document, "port").is_err());
    assert!(build_profile(&document, "missing").unwrap().is_none());
    assert_eq!(problems(&document).len(), 2);
}

#[test]
fn client_safe_ids() {
    for (id, safe) in [
        ("a-single", true),
        ("x.y_z-1", true),
        ("probe ümlaut", false),
        ("a&b", false),
        ("", false),
    ] {
        assert_eq!(is_client_safe_id(id), safe, "{id:?}");
    }
}
