//! The watch stream: first state at once, a suspend in the session DB within 2 s (real
//! clock), heartbeats, and the end of the stream on SIGTERM.

use std::time::Duration;
use tokio::time::Instant;

use tokio_stream::StreamExt;
use x2gobroker_proto::agent::v1 as pb;

use crate::common::*;

fn status_in(state: &pb::ServerState, session_id: &str) -> Option<pb::SessionStatus> {
    state
        .sessions
        .iter()
        .find(|s| s.session_id == session_id)
        .map(|s| s.status())
}

#[tokio::test]
async fn watch_pushes_a_suspend_within_two_seconds() {
    let _serial = serial().await;
    reset_farm();
    let daemon = Daemon::start(&["--poll-interval-ms", "500", "--heartbeat-ms", "60000"]);
    let mut client = daemon.client().await;
    let mut stream = client
        .watch(daemon.request(pb::WatchRequest { heartbeat_ms: 0 }))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("first state within 10 s")
        .unwrap()
        .unwrap();
    assert!(!first.heartbeat);
    assert_eq!(first.sessions.len(), 5);
    assert!(first.load.is_some());
    let running = find_session(&x2golistsessions(ALICE), |f| f[4] == "R").unwrap();
    assert_eq!(
        status_in(&first, &running),
        Some(pb::SessionStatus::Running)
    );

    // suspend it in the real DB with the X2Go tool itself
    let output = run(
        "sudo",
        &[
            "-u",
            ALICE,
            "--",
            "/usr/lib/x2go/x2gochangestatus",
            "S",
            &running,
        ],
    );
    assert!(output.status.success());
    let changed_at = Instant::now();
    let update = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let state = stream.next().await.unwrap().unwrap();
            if status_in(&state, &running) == Some(pb::SessionStatus::Suspended) {
                return state;
            }
        }
    })
    .await
    .expect("the suspend must arrive within 2 s");
    let latency = changed_at.elapsed();
    assert!(latency < Duration::from_secs(2), "{latency:?}");
    assert!(update.generation > first.generation);
    assert!(!update.heartbeat);
    drop(stream);
    reset_farm();
}

#[tokio::test]
async fn watch_heartbeats_and_ends_on_sigterm() {
    let _serial = serial().await;
    ensure_farm();
    let mut daemon = Daemon::start(&["--poll-interval-ms", "500"]);
    let mut client = daemon.client().await;
    let mut stream = client
        .watch(daemon.request(pb::WatchRequest { heartbeat_ms: 300 }))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let beat = tokio::time::timeout(Duration::from_secs(3), stream.next())
        .await
        .expect("a heartbeat within 3 s")
        .unwrap()
        .unwrap();
    assert!(beat.heartbeat);
    assert_eq!(beat.generation, first.generation, "nothing changed");

    // unauthenticated watch is refused
    let status = client
        .watch(pb::WatchRequest { heartbeat_ms: 0 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    // SIGTERM while the stream is open: the stream ends and the daemon exits 0
    let pid = nix::unistd::Pid::from_raw(daemon.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the watch stream must end on shutdown");
    let started = Instant::now();
    let exit = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "daemon did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let log = daemon.log();
    assert!(log.contains("health NOT_SERVING"), "{log}");
}
