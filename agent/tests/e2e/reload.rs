//! SIGHUP reloads `x2gobroker-agentd`, never kills it: a replaced token file (the old token refused, the new one accepted, a broken file keeps the last good token) and a replaced certificate (served to new connections; connections and watch streams in progress go on).

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use x2gobroker_e2e::certs::{TestCa, Usage};
use x2gobroker_proto::agent::v1 as pb;
use x2gobroker_proto::agent::v1::agent_client::AgentClient;

use crate::common::*;

const NEW_TOKEN: &str = "reloaded-token-0123456789abcdef";

async fn ping(client: &mut AgentClient<Channel>, token: &str) -> Result<(), tonic::Code> {
    client
        .ping(with_token(token, pb::PingRequest {}))
        .await
        .map(|_| ())
        .map_err(|status| status.code())
}

#[tokio::test]
async fn sighup_replaces_the_token_and_a_broken_file_keeps_the_last_good_one() {
    let _serial = serial().await;
    // the watch stream reads the session DB
    x2gobroker_e2e::hold_farm_lock();
    let mut daemon = Daemon::start(&["--heartbeat-ms", "200"]);
    let old_token = daemon.token.clone();
    let mut client = daemon.client().await;
    assert_eq!(ping(&mut client, &old_token).await, Ok(()));
    let mut watch = client
        .watch(daemon.request(pb::WatchRequest { heartbeat_ms: 200 }))
        .await
        .expect("watch with the old token")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
    assert!(matches!(first, Ok(Some(Ok(_)))), "{first:?}");

    replace_file(
        &daemon.token_file,
        format!("{NEW_TOKEN}\n").as_bytes(),
        0o600,
    );
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log("reload: token file", 1).await;
    assert!(daemon.is_running(), "SIGHUP must not kill the agent");
    // the connection opened before the reload is still served, with the new token only
    assert_eq!(
        ping(&mut client, &old_token).await,
        Err(tonic::Code::Unauthenticated),
        "the old token is refused after the reload"
    );
    assert_eq!(ping(&mut client, NEW_TOKEN).await, Ok(()));
    let mut fresh = daemon.client().await;
    assert_eq!(ping(&mut fresh, NEW_TOKEN).await, Ok(()));
    // the watch stream opened before the reload goes on
    let heartbeat = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
    assert!(
        matches!(heartbeat, Ok(Some(Ok(_)))),
        "the watch stream survives the reload: {heartbeat:?}"
    );

    // a token file that cannot be used: the last good token stays, one clear line
    replace_file(
        &daemon.token_file,
        format!("{NEW_TOKEN}x\n").as_bytes(),
        0o644,
    );
    daemon.signal(Signal::SIGHUP);
    let log = daemon
        .wait_for_log("the previous token stays in use", 1)
        .await;
    assert!(log.contains("mode 0644"), "{log}");
    assert_eq!(ping(&mut client, NEW_TOKEN).await, Ok(()));
    assert_eq!(
        ping(&mut client, &format!("{NEW_TOKEN}x")).await,
        Err(tonic::Code::Unauthenticated)
    );
    replace_file(&daemon.token_file, b"short\n", 0o600);
    daemon.signal(Signal::SIGHUP);
    daemon
        .wait_for_log("the previous token stays in use", 2)
        .await;
    assert_eq!(ping(&mut client, NEW_TOKEN).await, Ok(()));
    assert!(daemon.is_running());
}

async fn tls_client(ca: &Path, address: &str) -> Result<AgentClient<Channel>, String> {
    let pem = std::fs::read(ca).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|error| error.to_string())?
        .connect()
        .await
        .map_err(|error| format!("{error:?}"))?;
    Ok(AgentClient::new(channel))
}

#[tokio::test]
async fn sighup_serves_a_replaced_certificate_to_new_connections() {
    let _serial = serial().await;
    let certificates = tempfile::tempdir().unwrap();
    let directory = certificates.path();
    let first_ca = TestCa::new(directory, "first-ca");
    let second_ca = TestCa::new(directory, "second-ca");
    let first = first_ca.leaf("first", &["localhost"], Usage::Server);
    let second = second_ca.leaf("second", &["localhost"], Usage::Server);
    // the files the agent is configured with: the first certificate for now
    let certificate = directory.join("agent.pem");
    let key = directory.join("agent.key");
    std::fs::copy(&first.certificate, &certificate).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let path = |file: &Path| file.to_str().expect("UTF-8 temporary path").to_string();
    let mut daemon = Daemon::start(&["--tls-cert", &path(&certificate), "--tls-key", &path(&key)]);
    let mut before = None;
    for _ in 0..50 {
        if let Ok(client) = tls_client(first_ca.certificate(), &daemon.address).await {
            before = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut before = before.expect("a TLS connection with the first certificate");
    assert_eq!(ping(&mut before, &daemon.token).await, Ok(()));
    assert!(
        tls_client(second_ca.certificate(), &daemon.address)
            .await
            .is_err(),
        "the second certificate is not served yet"
    );

    replace_file(
        &certificate,
        &std::fs::read(&second.certificate).unwrap(),
        0o644,
    );
    replace_file(&key, &std::fs::read(&second.key).unwrap(), 0o600);
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log("reload: TLS certificate", 1).await;
    assert!(daemon.is_running(), "SIGHUP must not kill the agent");
    let mut after = tls_client(second_ca.certificate(), &daemon.address)
        .await
        .expect("new connections get the second certificate");
    assert_eq!(ping(&mut after, &daemon.token).await, Ok(()));
    assert!(
        tls_client(first_ca.certificate(), &daemon.address)
            .await
            .is_err(),
        "the first certificate is no longer served"
    );
    // the connection made before the reload is not dropped
    assert_eq!(ping(&mut before, &daemon.token).await, Ok(()));

    // a broken certificate file: the second certificate keeps being served
    replace_file(
        &certificate,
        b"-----BEGIN CERTIFICATE-----\nbroken\n",
        0o644,
    );
    daemon.signal(Signal::SIGHUP);
    let log = daemon
        .wait_for_log("the previous certificate and key stay in use", 1)
        .await;
    assert!(log.contains("agent.pem"), "{log}");
    let mut still = tls_client(second_ca.certificate(), &daemon.address)
        .await
        .expect("the last good certificate is still served");
    assert_eq!(ping(&mut still, &daemon.token).await, Ok(()));
    // a key that does not belong to the certificate is refused too
    replace_file(
        &certificate,
        &std::fs::read(&first.certificate).unwrap(),
        0o644,
    );
    daemon.signal(Signal::SIGHUP);
    daemon
        .wait_for_log("the previous certificate and key stay in use", 2)
        .await;
    let mut unchanged = tls_client(second_ca.certificate(), &daemon.address)
        .await
        .expect("still the second certificate");
    assert_eq!(ping(&mut unchanged, &daemon.token).await, Ok(()));
    assert!(daemon.is_running());
}
