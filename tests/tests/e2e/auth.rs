//! Authentication end to end: failed-login throttling (and, with the auth service, real PAM logins).

use std::net::IpAddr;
use std::time::{Duration, Instant};
use x2gobroker_e2e::{golden_dir, start_broker};

const TESTSUITE_CONFIG: &str = "[global]\nrequire-password = true\ndefault-auth-mech = testsuite\ndefault-portscan-x2goservers = false\nenable-uccs-output = true\n";

async fn login(port: u16, from: &str, user: &str, password: &str) -> u16 {
    let client = reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("user", user)
        .append_pair("password", password)
        .append_pair("task", "listsessions")
        .finish();
    client
        .post(format!("http://127.0.0.1:{port}/plain/inifile/"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn failed_logins_are_throttled_per_user_and_address() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("x2gobroker.conf");
    std::fs::write(&config, TESTSUITE_CONFIG).unwrap();
    let profiles = golden_dir().join("configs/profiles_basic.ini");
    let daemon = start_broker(
        &config,
        &profiles,
        work.path(),
        &work.path().join("cookies"),
        &[],
    );
    let port = daemon.address.port();
    assert_eq!(
        login(port, "127.0.0.2", "test", "sweet").await,
        200,
        "a correct login works"
    );
    for _ in 0..5 {
        assert_eq!(login(port, "127.0.0.2", "test", "sour").await, 401);
    }
    let started = Instant::now();
    assert_eq!(
        login(port, "127.0.0.2", "test", "sweet").await,
        401,
        "locked: even the right password is refused"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused fast"
    );
    assert_eq!(
        login(port, "127.0.0.3", "test", "sweet").await,
        200,
        "another address still works"
    );
    assert_eq!(
        login(port, "127.0.0.2", "jacques", "thérèse").await,
        200,
        "another user from that address still works"
    );

    // Basic auth on the UCCS API is throttled the same way.
    let client = reqwest::Client::builder()
        .local_address("127.0.0.4".parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let uccs = |password: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://127.0.0.1:{port}/uccs/inifile/api/5"))
                .basic_auth("test", Some(password))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(uccs("sweet").await, 200);
    for _ in 0..5 {
        assert_eq!(uccs("sour").await, 401);
    }
    assert_eq!(uccs("sweet").await, 401, "UCCS logins are throttled too");
}

#[tokio::test]
async fn throttling_can_be_switched_off() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("x2gobroker.conf");
    std::fs::write(
        &config,
        format!("{TESTSUITE_CONFIG}login-throttling = false\n"),
    )
    .unwrap();
    let profiles = golden_dir().join("configs/profiles_basic.ini");
    let daemon = start_broker(
        &config,
        &profiles,
        work.path(),
        &work.path().join("cookies"),
        &[],
    );
    let port = daemon.address.port();
    for _ in 0..8 {
        assert_eq!(login(port, "127.0.0.2", "test", "sour").await, 401);
    }
    assert_eq!(login(port, "127.0.0.2", "test", "sweet").await, 200);
}
