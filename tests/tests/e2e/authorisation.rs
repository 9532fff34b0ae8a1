//! §16 S3 and S4 end to end on the live gRPC farm: a `login` other than the user never selects or keys another user's session, and a profile the ACLs hide can neither be listed nor selected.

use super::farm::{
    authorized_keys_of, farm_config, plain, rebuild_farm, server_of, Agents, SESSION_DB,
};
use x2gobroker_e2e::broker_with_config;

/// `user`'s authorized_keys as it is now.
fn authorized_keys(user: &str) -> String {
    std::fs::read_to_string(authorized_keys_of(user)).unwrap_or_default()
}

const PROFILES: &str = "[DEFAULT]\nuser = BROKER_USER\n\n\
    [shared]\nname = Everyone's servers\n\
    host = x2go-node1 (127.0.0.11), x2go-node2 (127.0.0.12), x2go-node3 (127.0.0.13)\n\
    broker-session-autologin = true\n\n\
    [bobonly]\nname = Only Bob's\nhost = x2go-node4 (127.0.0.14)\n\
    broker-session-autologin = true\n\
    acl-users-allow = x2gobob\nacl-users-deny = ALL\nacl-users-order = allow-deny\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_never_acts_for_another_user_and_hidden_profiles_cannot_be_selected() {
    let _db = SESSION_DB.lock().await;
    rebuild_farm();
    let work = tempfile::tempdir().unwrap();
    let agents = Agents::start(work.path());
    let profiles = work.path().join("profiles.ini");
    std::fs::write(&profiles, PROFILES).unwrap();
    let (_broker_directory, broker) =
        broker_with_config(&farm_config(&agents), Some(&profiles), &[]);
    let port = broker.address.port();
    // the farm has reported: alice's suspended session is listed for alice
    let alice = plain(port, "task=listsessions&user=x2goalice").await;
    assert!(alice.contains("\nstatus=S\n"), "{alice}");
    let (alice_keys, carol_keys) = (authorized_keys("x2goalice"), authorized_keys("x2gocarol"));

    // S3: carol names alice as `login`: carol's own (new) session, carol's key, alice untouched
    let answer = plain(
        port,
        "task=selectsession&sid=shared&user=x2gocarol&login=x2goalice",
    )
    .await;
    assert!(
        server_of(&answer).starts_with("127.0.0.1"),
        "a server for carol: {answer}"
    );
    assert!(
        !answer.contains("SESSION_INFO"),
        "alice's suspended session was not handed to carol: {answer}"
    );
    assert!(
        answer.contains("-----BEGIN RSA PRIVATE KEY-----"),
        "{answer}"
    );
    assert_eq!(
        authorized_keys("x2goalice"),
        alice_keys,
        "no key was installed for alice"
    );
    let carol_now = authorized_keys("x2gocarol");
    assert!(
        carol_now.len() > carol_keys.len() && carol_now.contains("x2gocarol@"),
        "the key is carol's: {carol_now}"
    );
    // and a listing with login=alice lists carol's (no) sessions
    let listing = plain(port, "task=listsessions&user=x2gocarol&login=x2goalice").await;
    assert!(!listing.contains("status=S"), "{listing}");

    // S4: the profile only bob may see is neither listed nor selectable for carol
    assert!(!listing.contains("[bobonly]"), "{listing}");
    let bob = plain(port, "task=listsessions&user=x2gobob").await;
    assert!(bob.contains("[bobonly]"), "{bob}");
    let carol_keys_before = authorized_keys("x2gocarol");
    let hidden = plain(port, "task=selectsession&sid=bobonly&user=x2gocarol").await;
    assert_eq!(
        server_of(&hidden),
        "no-server-available:22",
        "a hidden profile answers like an unknown one: {hidden}"
    );
    assert!(!hidden.contains("PRIVATE KEY"), "{hidden}");
    let unknown = plain(
        port,
        "task=selectsession&sid=no-such-profile&user=x2gocarol",
    )
    .await;
    assert_eq!(
        hidden, unknown,
        "hidden and unknown profiles are indistinguishable"
    );
    assert_eq!(
        authorized_keys("x2gocarol"),
        carol_keys_before,
        "no key for a hidden profile"
    );
}
