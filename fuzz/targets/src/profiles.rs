//! The session-profiles reader (`x2gobroker-sessionprofiles.conf`, §7): problems, built profiles with their ACLs and settings, listings, ACL checks and the Python-JSON rendering of a listing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use x2gobroker::acl::check_profile_acls;
use x2gobroker::config::{BrokerConfig, IniDocument};
use x2gobroker::frontend::{pyjson, value_to_json};
use x2gobroker::nss::Testsuite;
use x2gobroker::profiles::{self, HostStatus, ListingFlavour, ProfileSet};

/// How many built profiles of one input are listed and checked in depth.
const MAX_PROFILES_CHECKED: usize = 8;

/// Builds every profile of the text and lists each for a user, both flavours.
pub fn profiles(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(document) = IniDocument::parse(&text) else {
        return;
    };
    crate::config::check_document(&document);
    let _ = profiles::problems(&document);
    let set = ProfileSet::build(&document, &BrokerConfig::default());
    for id in profiles::profile_ids(&document) {
        match (profiles::build_profile(&document, &id), set.get(&id)) {
            (Ok(Some(profile)), Some(Ok(built))) => assert_eq!(profile.id, built.profile.id),
            (Err(error), Some(Err(kept))) => assert_eq!(error.to_string(), kept.to_string()),
            (built, kept) => panic!("profile {id:?} built as {built:?}, kept as {kept:?}"),
        }
    }
    // The first profiles only: more of the same costs time, not coverage.
    for built in set.iter().flatten().take(MAX_PROFILES_CHECKED) {
        let profile = &built.profile;
        assert!(profile.ssh_port() == 22 || profile.get("sshport").is_some());
        for host in profile.host_names() {
            let _ = (profile.host_address(host), profile.host_port(host));
        }
        for (user, address) in [
            ("maja", IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ("flip", IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ("nobody-here", IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
        ] {
            for ignore_primary in [false, true] {
                let _ = check_profile_acls(user, address, &built.acls, &Testsuite, ignore_primary);
            }
        }
        let narrowed = HostStatus::Narrowed {
            host: profile.host_names().first().cloned().unwrap_or_default(),
            status: Some('S'),
        };
        for flavour in [ListingFlavour::Broker, ListingFlavour::Uccs] {
            let listed =
                profiles::listing_profile(built, "maja", flavour, false, &HostStatus::Unknown);
            assert_eq!(listed.id(), profile.id);
            let _ = (listed.keys().count(), listed.hosts());
        }
        let listed =
            profiles::listing_profile(built, "maja", ListingFlavour::Uccs, true, &narrowed);
        let object: serde_json::Map<String, serde_json::Value> = listed
            .keys()
            .map(|(key, value)| (key.to_string(), value_to_json(value)))
            .collect();
        let object = serde_json::Value::Object(object);
        let text = pyjson::dumps(&object, 4);
        assert!(text.is_ascii(), "Python's json.dumps escapes non-ASCII");
        let read_back: serde_json::Value = serde_json::from_str(&text).expect("pyjson writes JSON");
        assert_eq!(read_back, object);
    }
}
