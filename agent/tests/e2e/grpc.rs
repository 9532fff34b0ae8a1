//! gRPC calls compared with what the X2Go tools print; suspend/terminate and key edits
//! checked in the real DB and file system.

use std::os::unix::fs::MetadataExt;

use tonic::Code;
use x2gobroker_proto::agent::v1 as pb;

use crate::common::*;

fn raw_lines(list: &pb::SessionList) -> String {
    list.sessions
        .iter()
        .map(|s| format!("{}\n", s.raw_line))
        .collect()
}

#[tokio::test]
async fn sessions_match_x2golistsessions() {
    let _serial = serial().await;
    reset_farm();
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;

    for user in [ALICE, BOB, CAROL] {
        let reply = client
            .list_user_sessions(daemon.request(pb::ListUserSessionsRequest { user: user.into() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            masked_lines(&raw_lines(&reply)),
            masked_lines(&x2golistsessions(user)),
            "{user}"
        );
        for session in &reply.sessions {
            assert_eq!(session.user, user);
            let fields: Vec<&str> = session.raw_line.split('|').collect();
            assert_eq!(session.session_id, fields[1]);
            assert_eq!(session.server, fields[3]);
            let letter = match session.status() {
                pb::SessionStatus::Running => "R",
                pb::SessionStatus::Suspended => "S",
                other => panic!("unexpected status {other:?}"),
            };
            assert_eq!(letter, fields[4]);
        }
    }
    let alice = client
        .list_user_sessions(daemon.request(pb::ListUserSessionsRequest { user: ALICE.into() }))
        .await
        .unwrap()
        .into_inner();
    let statuses: Vec<_> = alice.sessions.iter().map(|s| s.status()).collect();
    assert!(
        statuses.contains(&pb::SessionStatus::Running)
            && statuses.contains(&pb::SessionStatus::Suspended)
    );

    let all = client
        .list_all_sessions(daemon.request(pb::ListAllSessionsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        masked_lines(&raw_lines(&all)),
        masked_lines(&x2golistsessions_root())
    );
    assert_eq!(all.sessions.len(), 5);

    let servers = client
        .get_servers(daemon.request(pb::GetServersRequest {}))
        .await
        .unwrap()
        .into_inner();
    let counts: Vec<(String, u32, u32, u32)> = servers
        .servers
        .iter()
        .map(|s| (s.server.clone(), s.sessions, s.running, s.suspended))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("x2go-node1".into(), 2, 2, 0),
            ("x2go-node2".into(), 2, 1, 1),
            ("x2go-node3".into(), 1, 1, 0)
        ]
    );
    let busy = client
        .find_busy_servers(daemon.request(pb::FindBusyServersRequest {}))
        .await
        .unwrap()
        .into_inner();
    let busy: Vec<(String, u32)> = busy
        .servers
        .iter()
        .map(|b| (b.server.clone(), b.percent))
        .collect();
    assert_eq!(
        busy,
        vec![
            ("x2go-node3".into(), 20),
            ("x2go-node1".into(), 40),
            ("x2go-node2".into(), 40)
        ]
    );

    let load = client
        .check_load(daemon.request(pb::CheckLoadRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(load.loadavgxx >= 1 && load.num_cpu >= 1 && load.type_cpu_mhz > 0);
    assert!(load.load_factor.is_some());

    let tasks = client
        .available_tasks(daemon.request(pb::AvailableTasksRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tasks.tasks.len(), 10);
    let ping = client
        .ping(daemon.request(pb::PingRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(!ping.agent_version.is_empty());

    let refusals = [
        ("nosuchuser-xyz", Code::NotFound),
        ("root", Code::PermissionDenied),
        ("../x2goalice", Code::InvalidArgument),
        ("x2goalice;id", Code::InvalidArgument),
    ];
    for (user, code) in refusals {
        let status = client
            .list_user_sessions(daemon.request(pb::ListUserSessionsRequest { user: user.into() }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{user}: {status:?}");
    }

    let unauthenticated = client
        .list_user_sessions(pb::ListUserSessionsRequest { user: ALICE.into() })
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    let mut wrong = tonic::Request::new(pb::PingRequest {});
    wrong.metadata_mut().insert(
        "authorization",
        "Bearer wrong-token-0123456789".parse().unwrap(),
    );
    assert_eq!(
        client.ping(wrong).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert!(
        daemon.log().contains("unauthenticated call refused"),
        "refusals are logged"
    );
}

#[tokio::test]
async fn server_name_limits_the_view() {
    let _serial = serial().await;
    ensure_farm();
    let daemon = Daemon::start(&["--server-name", "x2go-node1", "--server-name", "x2go-node3"]);
    let mut client = daemon.client().await;
    let all = client
        .list_all_sessions(daemon.request(pb::ListAllSessionsRequest {}))
        .await
        .unwrap()
        .into_inner();
    let expected: String = x2golistsessions_root()
        .lines()
        .filter(|l| matches!(l.split('|').nth(3), Some("x2go-node1" | "x2go-node3")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(masked_lines(&raw_lines(&all)), masked_lines(&expected));
    assert!(!all.sessions.is_empty());
    let alice = client
        .list_user_sessions(daemon.request(pb::ListUserSessionsRequest { user: ALICE.into() }))
        .await
        .unwrap()
        .into_inner();
    assert!(alice.sessions.iter().all(|s| s.server == "x2go-node1"));
    assert_eq!(alice.sessions.len(), 1);
    // alice's suspended session lives on x2go-node2: not this agent's business
    let on_node2 = find_session(&x2golistsessions(ALICE), |f| f[3] == "x2go-node2").unwrap();
    let status = client
        .terminate_session(daemon.request(pb::SessionActionRequest {
            user: ALICE.into(),
            session_id: on_node2.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status_of(&on_node2).as_deref(), Some("S"));
    let ping = client
        .ping(daemon.request(pb::PingRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ping.server_names, vec!["x2go-node1", "x2go-node3"]);
}

#[tokio::test]
async fn suspend_and_terminate_change_the_db() {
    let _serial = serial().await;
    reset_farm();
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;

    let running = find_session(&x2golistsessions(ALICE), |f| f[4] == "R").unwrap();
    let reply = client
        .suspend_session(daemon.request(pb::SessionActionRequest {
            user: ALICE.into(),
            session_id: running.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.session.unwrap().session_id, running);
    assert_eq!(status_of(&running).as_deref(), Some("S"));
    let listed = x2golistsessions(ALICE);
    assert!(listed
        .lines()
        .any(|l| l.contains(&running) && l.split('|').nth(4) == Some("S")));

    // terminate a session of its own (bob's node1 one) so the others stay as they are
    let victim = find_session(&x2golistsessions(BOB), |f| f[3] == "x2go-node1").unwrap();
    client
        .terminate_session(daemon.request(pb::SessionActionRequest {
            user: BOB.into(),
            session_id: victim.clone(),
        }))
        .await
        .unwrap();
    assert_eq!(status_of(&victim).as_deref(), Some("T"));
    let bob_others = x2golistsessions(BOB);
    assert_eq!(
        bob_others
            .lines()
            .filter(|l| l.split('|').nth(4) == Some("R"))
            .count(),
        2
    );

    // someone else's session, unknown ids, hostile ids
    let bobs = find_session(&x2golistsessions(BOB), |f| f[4] == "R").unwrap();
    let cases = [
        (ALICE, bobs.as_str(), Code::NotFound),
        (ALICE, "x2goalice-99-1700000000_stDKDE_dp24", Code::NotFound),
        (ALICE, "../../etc/passwd", Code::InvalidArgument),
        (
            ALICE,
            "a;touch /tmp/x2gobroker-pwned",
            Code::InvalidArgument,
        ),
        (ALICE, "-rf", Code::InvalidArgument),
        ("root", bobs.as_str(), Code::PermissionDenied),
    ];
    for (user, session_id, code) in cases {
        let status = client
            .suspend_session(daemon.request(pb::SessionActionRequest {
                user: user.into(),
                session_id: session_id.into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{user} {session_id}: {status:?}");
    }
    assert_eq!(status_of(&bobs).as_deref(), Some("R"));
    drop(daemon);
    reset_farm();
}

#[tokio::test]
async fn authorized_keys_are_edited_as_the_user() {
    let _serial = serial().await;
    ensure_farm();
    // the daemon holds a group carol is not in (x2gobroker): see the last case
    let daemon = Daemon::start_with_groups(&[], &["x2gobroker"]);
    let mut client = daemon.client().await;
    let carol = nix::unistd::User::from_name(CAROL).unwrap().unwrap();
    let dir = carol.dir.join(".x2go");
    let _ = std::fs::remove_dir_all(&dir);
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGrpcTestKeyForCarol0123456789 broker@test";
    let other = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCsecond carol@test";

    let add = |key: &str, file: &str| {
        daemon.request(pb::AuthorizedKeyRequest {
            user: CAROL.into(),
            key: key.into(),
            key_file: file.into(),
        })
    };
    let reply = client
        .add_authorized_key(add(key, ""))
        .await
        .unwrap()
        .into_inner();
    let path = dir.join("authorized_keys");
    assert_eq!(reply.path, path.to_string_lossy());
    assert!(reply.changed);
    assert!(
        !client
            .add_authorized_key(add(key, "%h/.x2go/authorized_keys"))
            .await
            .unwrap()
            .into_inner()
            .changed
    );
    assert!(
        client
            .add_authorized_key(add(other, ""))
            .await
            .unwrap()
            .into_inner()
            .changed
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{key}\n{other}\n")
    );
    let file_meta = std::fs::metadata(&path).unwrap();
    let dir_meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(
        (file_meta.uid(), file_meta.gid()),
        (carol.uid.as_raw(), carol.gid.as_raw())
    );
    assert_eq!(
        (dir_meta.uid(), dir_meta.gid()),
        (carol.uid.as_raw(), carol.gid.as_raw())
    );
    assert_eq!(file_meta.mode() & 0o777, 0o600);
    assert_eq!(dir_meta.mode() & 0o777, 0o700);

    let reply = client
        .remove_authorized_key(add(key, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(reply.changed);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{other}\n")
    );
    let file_meta = std::fs::metadata(&path).unwrap();
    assert_eq!(file_meta.uid(), carol.uid.as_raw());
    assert_eq!(file_meta.mode() & 0o777, 0o600);
    assert!(
        !client
            .remove_authorized_key(add(key, ""))
            .await
            .unwrap()
            .into_inner()
            .changed
    );

    // a symlink planted by the user is not followed (and the agent's own groups — root's —
    // are not used: the directory variant below)
    let victim = std::path::Path::new("/etc/x2gobroker-agent-test-victim");
    std::fs::write(victim, "untouched\n").unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(victim, &path).unwrap();
    let status = client.add_authorized_key(add(key, "")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("is a symbolic link"),
        "{status:?}"
    );
    assert_eq!(std::fs::read_to_string(victim).unwrap(), "untouched\n");
    std::fs::remove_file(victim).unwrap();
    std::fs::remove_file(&path).unwrap();

    // ~/.x2go -> a directory writable by the daemon's group (x2gobroker) only: the file
    // operations run with the user's groups, so nothing is created there
    let root_group_directory = tempfile::tempdir_in("/var/tmp").unwrap();
    let daemon_gid = nix::unistd::Group::from_name("x2gobroker")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    std::os::unix::fs::chown(root_group_directory.path(), Some(0), Some(daemon_gid)).unwrap();
    std::fs::set_permissions(
        root_group_directory.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o775),
    )
    .unwrap();
    std::fs::remove_dir(&dir).unwrap();
    std::os::unix::fs::symlink(root_group_directory.path(), &dir).unwrap();
    let status = client.add_authorized_key(add(key, "")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        std::fs::read_dir(root_group_directory.path())
            .unwrap()
            .count(),
        0
    );
    std::fs::remove_file(&dir).unwrap();
}
