//! agentd's resource caps against the real daemon: connections over the cap are refused while
//! calls on open connections answer, silent peers and peers that stop answering HTTP/2 PINGs
//! are closed, streams per connection are capped, and the health Watch stream needs the token
//! (the unary health Check stays open).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use x2gobroker_proto::agent::v1 as pb;
use x2gobroker_proto::agent::v1::agent_client::AgentClient;

use crate::common::*;

/// The HTTP/2 client preface and an empty SETTINGS frame.
const HTTP2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
const FRAME_TYPE_PING: u8 = 0x6;

/// A raw HTTP/2 connection that said its preface and got the server's first frame (so the
/// daemon admitted it), and that will never answer anything.
async fn raw_http2(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(HTTP2_PREFACE).await.unwrap();
    let mut header = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header))
        .await
        .expect("the daemon answers an admitted connection")
        .unwrap();
    assert_eq!(header[3], 0x4, "the server's SETTINGS first");
    let mut payload = vec![0u8; frame_length(&header)];
    stream.read_exact(&mut payload).await.unwrap();
    stream
}

fn frame_length(header: &[u8; 9]) -> usize {
    usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2])
}

/// Reads frames until the server closes; the frame types seen, or `None` if still open after
/// `limit`.
async fn frames_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut types = Vec::new();
    let deadline = Instant::now() + limit;
    loop {
        let mut header = [0u8; 9];
        match tokio::time::timeout_at(deadline, stream.read_exact(&mut header)).await {
            Err(_) => return None,
            Ok(Err(_)) => return Some(types),
            Ok(Ok(_)) => {}
        }
        types.push(header[3]);
        let mut payload = vec![0u8; frame_length(&header)];
        match tokio::time::timeout_at(deadline, stream.read_exact(&mut payload)).await {
            Err(_) => return None,
            Ok(Err(_)) => return Some(types),
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether the daemon closes `stream` within `limit` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buffer = [0u8; 64];
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn channel(daemon: &Daemon) -> Channel {
    Channel::from_shared(format!("http://{}", daemon.address))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_while_calls_answer() {
    let _serial = serial().await;
    let daemon = Daemon::start(&["--max-connections", "3"]);
    let mut client = daemon.client().await;
    client
        .ping(daemon.request(pb::PingRequest {}))
        .await
        .unwrap();
    let mut holders = vec![
        raw_http2(&daemon.address).await,
        raw_http2(&daemon.address).await,
    ];

    let started = Instant::now();
    for attempt in 0..10 {
        let mut extra = TcpStream::connect(&daemon.address).await.unwrap();
        let _ = extra.write_all(HTTP2_PREFACE).await;
        assert!(
            closed_within(&mut extra, Duration::from_secs(2)).await,
            "connection {attempt} over the cap is refused"
        );
    }
    let refusals = started.elapsed();
    let started = Instant::now();
    client
        .ping(daemon.request(pb::PingRequest {}))
        .await
        .expect("an open connection keeps being served");
    let answered = started.elapsed();
    assert!(answered < Duration::from_secs(1), "{answered:?}");
    println!(
        "10 connections over the cap refused in {} ms; a call on an open connection answered in {} ms",
        refusals.as_millis(),
        answered.as_millis()
    );

    // a slot given back serves a new client
    drop(holders.pop());
    let mut served = false;
    for _ in 0..30 {
        if let Ok(channel) = Channel::from_shared(format!("http://{}", daemon.address))
            .unwrap()
            .connect()
            .await
        {
            if AgentClient::new(channel)
                .ping(daemon.request(pb::PingRequest {}))
                .await
                .is_ok()
            {
                served = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "a freed slot serves a new connection");
    assert!(daemon
        .log()
        .contains("connection refused: the connection cap"));
    drop(holders);
}

#[tokio::test]
async fn silent_peers_and_peers_that_ignore_pings_are_closed() {
    let _serial = serial().await;
    let daemon = Daemon::start(&[
        "--handshake-timeout-ms",
        "300",
        "--keepalive-interval-ms",
        "300",
        "--keepalive-timeout-ms",
        "300",
    ]);
    let mut client = daemon.client().await;

    let started = Instant::now();
    let mut silent = TcpStream::connect(&daemon.address).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    let silent_closed = started.elapsed();
    assert!(silent_closed < Duration::from_secs(2), "{silent_closed:?}");

    let started = Instant::now();
    let mut deaf = raw_http2(&daemon.address).await;
    let frames = frames_until_closed(&mut deaf, Duration::from_secs(5))
        .await
        .expect("a peer that never answers a PING is disconnected");
    let deaf_closed = started.elapsed();
    assert!(frames.contains(&FRAME_TYPE_PING), "{frames:?}");
    assert!(deaf_closed < Duration::from_secs(3), "{deaf_closed:?}");

    // a real client answers the PINGs and keeps being served
    tokio::time::sleep(Duration::from_millis(1200)).await;
    client
        .ping(daemon.request(pb::PingRequest {}))
        .await
        .unwrap();
    println!(
        "silent connection closed after {} ms, PING-deaf one after {} ms (frames {frames:?})",
        silent_closed.as_millis(),
        deaf_closed.as_millis()
    );
}

#[tokio::test]
async fn streams_per_connection_are_capped() {
    let _serial = serial().await;
    ensure_farm();
    let daemon = Daemon::start(&["--max-streams-per-connection", "2"]);
    let _wait = daemon.client().await;
    let shared = AgentClient::new(channel(&daemon).await);
    let mut watches = Vec::new();
    for _ in 0..2 {
        let mut watcher = shared.clone();
        let stream = watcher
            .watch(daemon.request(pb::WatchRequest { heartbeat_ms: 0 }))
            .await
            .unwrap()
            .into_inner();
        watches.push(stream);
    }
    // a third call on that connection waits for a free stream
    let mut third = shared.clone();
    let request = daemon.request(pb::PingRequest {});
    let mut waiting = tokio::spawn(async move { third.ping(request).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut waiting)
            .await
            .is_err(),
        "a third stream on a connection capped at 2 must wait"
    );
    // another connection is not affected
    let mut other = AgentClient::new(channel(&daemon).await);
    let started = Instant::now();
    other
        .ping(daemon.request(pb::PingRequest {}))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    // a stream ends: the waiting call goes through
    drop(watches.pop());
    let answered = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("the waiting call runs once a stream is free")
        .unwrap();
    assert!(answered.is_ok(), "{answered:?}");
}

#[tokio::test]
async fn health_check_is_open_but_the_watch_stream_needs_the_token() {
    let _serial = serial().await;
    let daemon = Daemon::start(&[]);
    let _wait = daemon.client().await;
    let mut health = HealthClient::new(channel(&daemon).await);
    let check = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the unary health check needs no token")
        .into_inner();
    assert_eq!(check.status(), ServingStatus::Serving);

    let refused = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect_err("an unauthenticated health watch is refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");

    let mut stream = health
        .watch(daemon.request(HealthCheckRequest {
            service: String::new(),
        }))
        .await
        .expect("with the token the health watch is served")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(3), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    assert!(daemon.log().contains("/grpc.health.v1.Health/Watch"));
}
