//! Mutual TLS: a client certificate from the configured CA is accepted, one from another CA
//! is refused; the token still works over TLS; with --allowed-client-name only certificates
//! carrying an allowed CN or DNS name authenticate. Certificates come from `x2gobroker_e2e::certs`.

use std::path::Path;
use std::process::Command;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use x2gobroker_e2e::certs::{TestCa, Usage};
use x2gobroker_proto::agent::v1 as pb;
use x2gobroker_proto::agent::v1::agent_client::AgentClient;

use crate::common::*;

async fn tls_client(
    dir: &Path,
    address: &str,
    identity: Option<&str>,
) -> Result<AgentClient<Channel>, tonic::transport::Error> {
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca1.pem")))
        .domain_name("localhost");
    if let Some(name) = identity {
        tls = tls.identity(Identity::from_pem(
            read(&format!("{name}.pem")),
            read(&format!("{name}.key")),
        ));
    }
    let channel = Channel::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(AgentClient::new(channel))
}

#[tokio::test]
async fn client_certificates_from_the_configured_ca_only() {
    let _serial = serial().await;
    ensure_farm();
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    let ca = TestCa::new(dir, "ca1");
    let other_ca = TestCa::new(dir, "ca2");
    let server = ca.leaf("server", &["localhost", "127.0.0.1"], Usage::Server);
    ca.leaf("client-good", &[], Usage::Client);
    other_ca.leaf("client-other", &[], Usage::Client);
    let path = |file: &Path| file.to_str().expect("UTF-8 temporary path").to_string();
    let daemon = Daemon::start(&[
        "--tls-cert",
        &path(&server.certificate),
        "--tls-key",
        &path(&server.key),
        "--client-ca",
        &path(ca.certificate()),
    ]);
    // wait for the listener
    let mut good = None;
    for _ in 0..50 {
        if let Ok(client) = tls_client(dir, &daemon.address, Some("client-good")).await {
            good = Some(client);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut good = good.expect("TLS connection with the good client certificate");
    let sessions = good
        .list_user_sessions(pb::ListUserSessionsRequest { user: ALICE.into() })
        .await
        .expect("certificate from the configured CA is accepted")
        .into_inner();
    assert_eq!(
        sessions.sessions.len(),
        masked_lines(&x2golistsessions(ALICE)).len()
    );

    // certificate from another CA: the handshake or the first call fails
    let refused = match tls_client(dir, &daemon.address, Some("client-other")).await {
        Err(_) => true,
        Ok(mut client) => client.ping(pb::PingRequest {}).await.is_err(),
    };
    assert!(refused, "a certificate from another CA must be refused");

    // no certificate: only with the token
    let mut anonymous = tls_client(dir, &daemon.address, None).await.unwrap();
    let status = anonymous.ping(pb::PingRequest {}).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    anonymous
        .ping(daemon.request(pb::PingRequest {}))
        .await
        .expect("token over TLS");

    // plaintext is not spoken on a TLS port
    let plaintext = Channel::from_shared(format!("http://{}", daemon.address))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        assert!(AgentClient::new(channel)
            .ping(daemon.request(pb::PingRequest {}))
            .await
            .is_err());
    }
}

#[tokio::test]
async fn token_only_mode_refuses_public_addresses_and_bad_token_files() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let token_arg = token.to_string_lossy().into_owned();
    let status = Command::new(AGENTD_BIN)
        .args(["--listen", "0.0.0.0:0", "--token-file", &token_arg])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&status.stderr).contains("without TLS"));

    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let status = Command::new(AGENTD_BIN)
        .args(["--listen", "127.0.0.1:0", "--token-file", &token_arg])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&status.stderr).contains("mode 0644"));

    let status = Command::new(AGENTD_BIN)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&status.stderr).contains("no authentication configured"));
}

#[tokio::test]
async fn client_certificates_outside_the_allowed_names_are_refused() {
    let _serial = serial().await;
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    let ca = TestCa::new(dir, "ca1");
    let server = ca.leaf("server", &["localhost", "127.0.0.1"], Usage::Server);
    // allowed by its CN, allowed by a SAN DNS name, and one of the same CA allowed by neither
    ca.leaf("broker-by-cn", &[], Usage::Client);
    ca.leaf("client-san", &["broker2.example"], Usage::Client);
    ca.leaf("intruder", &["intruder.example"], Usage::Client);
    let path = |file: &Path| file.to_str().expect("UTF-8 temporary path").to_string();
    let daemon = Daemon::start(&[
        "--tls-cert",
        &path(&server.certificate),
        "--tls-key",
        &path(&server.key),
        "--client-ca",
        &path(ca.certificate()),
        "--allowed-client-name",
        "broker-by-cn,BROKER2.example",
    ]);
    let mut allowed_by_cn = None;
    for _ in 0..50 {
        if let Ok(client) = tls_client(dir, &daemon.address, Some("broker-by-cn")).await {
            allowed_by_cn = Some(client);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    allowed_by_cn
        .expect("TLS connection")
        .ping(pb::PingRequest {})
        .await
        .expect("a certificate whose CN is allowed");
    tls_client(dir, &daemon.address, Some("client-san"))
        .await
        .unwrap()
        .ping(pb::PingRequest {})
        .await
        .expect("a certificate with an allowed subjectAltName DNS name");

    let mut intruder = tls_client(dir, &daemon.address, Some("intruder"))
        .await
        .unwrap();
    let status = intruder.ping(pb::PingRequest {}).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    // its certificate is not allowed, whatever else the call carries
    let status = intruder
        .ping(daemon.request(pb::PingRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let status = intruder
        .list_user_sessions(pb::ListUserSessionsRequest { user: ALICE.into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(daemon.log().contains("client certificate name not allowed"));

    // token clients without a certificate are not affected
    tls_client(dir, &daemon.address, None)
        .await
        .unwrap()
        .ping(daemon.request(pb::PingRequest {}))
        .await
        .expect("the token without a certificate");

    // an allowed-name list without mutual TLS is a configuration error
    let token = dir.join("token");
    std::fs::write(&token, "0123456789abcdef0123456789\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let status = Command::new(AGENTD_BIN)
        .args(["--listen", "127.0.0.1:0", "--token-file"])
        .arg(&token)
        .args(["--allowed-client-name", "broker1"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&status.stderr).contains("needs mutual TLS"));
}
