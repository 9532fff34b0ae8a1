//! The daemon itself: HTTPS with a self-signed certificate, config reloads, graceful shutdown, `--check-config`.

use std::process::Command;
use std::time::Duration;
use x2gobroker_e2e::certs::{self_signed, CertificateFiles, KeyKind, Usage};
use x2gobroker_e2e::{binary, broker_with_config, start_broker};

const CONFIG: &str = "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\ndefault-portscan-x2goservers = false\n";

#[tokio::test]
async fn https_with_a_self_signed_certificate() {
    let certificates = tempfile::tempdir().unwrap();
    let CertificateFiles { certificate, key } = self_signed(
        certificates.path(),
        "broker",
        &["127.0.0.1"],
        Usage::Server,
        KeyKind::Rsa2048,
    );
    let (_work, daemon) = broker_with_config(
        CONFIG,
        None,
        &[
            ("X2GOBROKER_SSL_CERTFILE", certificate.to_str().unwrap()),
            ("X2GOBROKER_SSL_KEYFILE", key.to_str().unwrap()),
        ],
    );
    let port = daemon.address.port();
    let pem = std::fs::read(&certificate).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let response = trusting
        .post(format!("https://127.0.0.1:{port}/plain/inifile/"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("task=selectsession&sid=a-single&user=maja")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "Access granted\nSERVER:ts01:22\n"
    );
    let untrusting = reqwest::Client::builder().build().unwrap();
    assert!(
        untrusting
            .get(format!("https://127.0.0.1:{port}/"))
            .send()
            .await
            .is_err(),
        "unknown CA refused"
    );
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.unwrap().status() != 200,
        "no plain HTTP on the TLS port"
    );
}

#[tokio::test]
async fn config_changes_apply_without_restart_and_bad_files_keep_the_last_good_one() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("x2gobroker.conf");
    std::fs::write(&config, CONFIG).unwrap();
    let profiles = work.path().join("profiles.ini");
    std::fs::write(&profiles, "[one]\nhost = h1\n").unwrap();
    let daemon = start_broker(
        &config,
        &profiles,
        work.path(),
        &work.path().join("cookies"),
        &[],
    );
    let url = format!("http://127.0.0.1:{}/plain/", daemon.address.port());
    let select = |sid: &'static str| {
        let url = url.clone();
        async move {
            let response = reqwest::Client::new()
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("task=selectsession&sid={sid}&user=u"))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(
        select("two").await.1,
        "Access granted\nSERVER:no-server-available:22\n"
    );
    std::fs::write(&profiles, "[one]\nhost = h1\n[two]\nhost = h2\n").unwrap();
    assert_eq!(
        select("two").await.1,
        "Access granted\nSERVER:h2:22\n",
        "new profile seen without restart"
    );
    std::fs::write(&profiles, "[one]\nhost = h1\nbroken line\n").unwrap();
    assert_eq!(
        select("two").await,
        (200, "Access granted\nSERVER:h2:22\n".to_string()),
        "last good version serves"
    );
    std::fs::write(&profiles, "[two]\nhost = h3\nfullscreen = not-set\n").unwrap();
    assert_eq!(
        select("two").await.0,
        500,
        "a bad value fails the requests that need it"
    );
    assert_eq!(
        select("one").await.1,
        "Access granted\nSERVER:no-server-available:22\n"
    );
}

#[test]
fn sigterm_finishes_in_flight_requests() {
    use std::io::{Read, Write};
    let (_work, mut daemon) = broker_with_config(CONFIG, None, &[]);
    // A request whose body is still arriving when the shutdown is asked for.
    let body = "task=selectsession&sid=a-single&user=maja";
    let mut stream = std::net::TcpStream::connect(daemon.address).unwrap();
    write!(
        stream,
        "POST /plain/inifile/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = nix::unistd::Pid::from_raw(daemon.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::net::TcpStream::connect_timeout(&daemon.address, Duration::from_millis(500)).is_err(),
        "no new connections after SIGTERM"
    );
    stream.write_all(&body.as_bytes()[10..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with("Access granted\nSERVER:ts01:22\n"),
        "{response}"
    );
    let status = daemon.terminate();
    assert!(
        status.is_some_and(|status| status.success()),
        "clean exit: {status:?}"
    );
}

#[test]
fn check_config_reports_every_problem() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("x2gobroker.conf");
    std::fs::write(
        &config,
        "[global]\nrequire-password = maybe\nauth-timeout = soon\n",
    )
    .unwrap();
    let profiles = work.path().join("profiles.ini");
    std::fs::write(
        &profiles,
        "[ok]\nhost = a\n[bad id!]\nhost = b\n[broken]\nfullscreen = not-set\n",
    )
    .unwrap();
    let output = Command::new(binary("x2gobroker"))
        .arg("--check-config")
        .arg("-C")
        .arg(&config)
        .env("X2GOBROKER_SESSIONPROFILES", &profiles)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(64), "{stdout}");
    for expected in [
        "require-password",
        "auth-timeout",
        "bad id!",
        "fullscreen",
        "4 problem(s) found",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing in {stdout}"
        );
    }
    std::fs::write(&config, "[global]\nrequire-password = yes\n").unwrap();
    std::fs::write(&profiles, "[ok]\nhost = a\n").unwrap();
    let clean = Command::new(binary("x2gobroker"))
        .args(["--check-config", "-C"])
        .arg(&config)
        .env("X2GOBROKER_SESSIONPROFILES", &profiles)
        .output()
        .unwrap();
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
}

async fn post(port: u16, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/plain/inifile/"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn cookies_survive_a_restart_and_get_can_be_switched_off() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("x2gobroker.conf");
    let text = "[global]\nrequire-password = true\ndefault-auth-mech = testsuite\nallow-get-requests = false\n";
    std::fs::write(&config, text).unwrap();
    let profiles = x2gobroker_e2e::golden_dir().join("configs/profiles_basic.ini");
    let cookies = work.path().join("cookies");
    let first = start_broker(&config, &profiles, work.path(), &cookies, &[]);
    let (status, body) = post(first.address.port(), "user=test&password=sweet").await;
    assert_eq!(status, 200);
    let cookie = body
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("AUTHID:")
        .to_string();
    let get = reqwest::get(format!(
        "http://127.0.0.1:{}/plain/inifile/?user=test&password=sweet",
        first.address.port()
    ))
    .await
    .unwrap();
    assert_eq!(
        get.status().as_u16(),
        405,
        "GET refused when allow-get-requests = false"
    );
    drop(first);
    let second = start_broker(&config, &profiles, work.path(), &cookies, &[]);
    let (status, body) = post(second.address.port(), &format!("user=test&authid={cookie}")).await;
    assert_eq!(
        status, 200,
        "the cookie issued before the restart is still valid"
    );
    assert!(
        body.ends_with("Access granted\n") && !body.contains(&cookie),
        "a new cookie was issued: {body}"
    );
}
