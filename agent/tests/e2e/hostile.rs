//! Hostile input: shell metacharacters, line breaks and `../` in user names, session ids,
//! keys and key-file paths are refused with a clear error, over gRPC and on the command line
//! (also through SSH_ORIGINAL_COMMAND), and nothing outside the intended file changes.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use x2gobroker_proto::agent::v1 as pb;

use crate::common::*;

const CANARY: &str = "/tmp/x2gobroker-agent-pwned";
const GOOD_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCgolden maja@127.0.0.1";

/// path → (size, mode, uid, content) of every entry below a directory.
type Tree = BTreeMap<PathBuf, (u64, u32, u32, Vec<u8>)>;

fn tree(root: &Path) -> Tree {
    let mut entries = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in read.flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_file() {
                std::fs::read(&path).unwrap_or_default()
            } else {
                Vec::new()
            };
            if meta.is_dir() {
                pending.push(path.clone());
            }
            entries.insert(path, (meta.len(), meta.mode(), meta.uid(), content));
        }
    }
    entries
}

fn homes() -> Vec<PathBuf> {
    [ALICE, BOB, CAROL]
        .iter()
        .map(|u| nix::unistd::User::from_name(u).unwrap().unwrap().dir)
        .collect()
}

fn snapshot() -> (Vec<Tree>, Vec<String>) {
    let trees: Vec<_> = homes().iter().map(|h| tree(h)).collect();
    (trees, masked_lines(&x2golistsessions_root()))
}

#[tokio::test]
async fn hostile_input_is_refused_and_changes_nothing() {
    let _serial = serial().await;
    ensure_farm();
    let _ = std::fs::remove_file(CANARY);
    let carol_keys = nix::unistd::User::from_name(CAROL)
        .unwrap()
        .unwrap()
        .dir
        .join(".x2go");
    let _ = std::fs::remove_dir_all(&carol_keys);
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let before = snapshot();

    let hostile_users = [
        "../x2gocarol",
        "x2gocarol/../x2gobob",
        "x2gocarol;touch /tmp/x2gobroker-agent-pwned",
        "$(touch /tmp/x2gobroker-agent-pwned)",
        "`touch /tmp/x2gobroker-agent-pwned`",
        "x2gocarol\nx2gobob",
        "x2gocarol|id",
        "x2gocarol x2gobob",
    ];
    for user in hostile_users {
        for task in ["listsessions", "ping", "addauthkey"] {
            let output = legacy(&[user, task, GOOD_KEY, "%h/.x2go/authorized_keys"], None);
            assert_eq!(output.status.code(), Some(255), "{user:?} {task}");
            assert!(output.stdout.is_empty(), "{user:?} {task}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("refused: invalid user name"),
                "{user:?}: {stderr}"
            );
        }
        let status = client
            .list_user_sessions(daemon.request(pb::ListUserSessionsRequest { user: user.into() }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{user:?}");
        assert!(status.message().contains("invalid user name"));
    }

    let hostile_sessions = [
        "../../etc/passwd",
        "x;touch /tmp/x2gobroker-agent-pwned",
        "$(touch /tmp/x2gobroker-agent-pwned)",
        "a\nb",
        "-rf",
        "a b",
    ];
    for session_id in hostile_sessions {
        for task in ["suspendsession", "terminatesession"] {
            let output = legacy(&[ALICE, task, session_id], None);
            assert_eq!(output.status.code(), Some(255), "{session_id:?}");
            assert!(output.stdout.is_empty());
            assert!(String::from_utf8_lossy(&output.stderr).contains("refused: invalid session id"));
        }
        let status = client
            .terminate_session(daemon.request(pb::SessionActionRequest {
                user: ALICE.into(),
                session_id: session_id.into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{session_id:?}"
        );
    }

    let hostile_keys = [
        "ssh-rsa AAAAB3Nza $(touch /tmp/x2gobroker-agent-pwned)",
        "ssh-rsa AAAAB3Nza `touch /tmp/x2gobroker-agent-pwned`",
        "ssh-rsa AAAAB3Nza c\nssh-rsa AAAAB3Nza evil@attacker",
        "ssh-rsa AAAAB3Nza c\r\nssh-rsa AAAAB3Nza evil",
        "ssh-rsa AAAAB3Nza!!$!! x",
        "ssh-rsa AAAAB3Nza x;touch /tmp/x2gobroker-agent-pwned",
        "ssh-rsa AAAAB3Nza x' /tmp/x2gobroker-agent-pwned '",
        "no-such-type AAAAB3Nza x",
        "../../etc/passwd",
        // options other than those the broker writes, and a type OpenSSH does not know
        "command=\"touch /tmp/x2gobroker-agent-pwned\" ssh-rsa AAAAB3Nza x",
        "environment=\"LD_PRELOAD=/tmp/x.so\" ssh-rsa AAAAB3Nza x",
        "from=10.0.0.1 ssh-rsa AAAAB3Nza x",
        "no-pty,permitopen=localhost:22 ssh-rsa AAAAB3Nza x",
        "ssh-ed448 AAAAB3Nza x",
    ];
    for key in hostile_keys {
        for task in ["addauthkey", "delauthkey"] {
            let output = legacy(&[CAROL, task, key, "%h/.x2go/authorized_keys"], None);
            assert_eq!(output.status.code(), Some(255), "{key:?}");
            assert!(output.stdout.is_empty());
            assert!(String::from_utf8_lossy(&output.stderr).contains("refused: invalid public key"));
        }
        let status = client
            .add_authorized_key(daemon.request(pb::AuthorizedKeyRequest {
                user: CAROL.into(),
                key: key.into(),
                key_file: String::new(),
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{key:?}");
    }

    let hostile_paths = [
        "%h/../x2gobob/.x2go/authorized_keys",
        "%h/.x2go/../../x2gobob/keys",
        "../x2gobob/keys",
        "/tmp/a\nb",
        "/tmp/a\0b",
    ];
    for path in hostile_paths {
        if !path.contains('\0') {
            let output = legacy(&[CAROL, "addauthkey", GOOD_KEY, path], None);
            assert_eq!(output.status.code(), Some(255), "{path:?}");
            assert!(output.stdout.is_empty());
            assert!(
                String::from_utf8_lossy(&output.stderr).contains("refused: invalid key file path")
            );
        }
        let status = client
            .add_authorized_key(daemon.request(pb::AuthorizedKeyRequest {
                user: CAROL.into(),
                key: GOOD_KEY.into(),
                key_file: path.into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{path:?}");
    }

    let hostile_forced_commands = [
        "sh -c '/usr/lib/x2go/x2gobroker-agent $(touch /tmp/x2gobroker-agent-pwned) ping'",
        "/usr/lib/x2go/x2gobroker-agent x2gocarol ping `touch /tmp/x2gobroker-agent-pwned`",
        "/usr/lib/x2go/x2gobroker-agent x2gocarol ping | touch /tmp/x2gobroker-agent-pwned",
        "/usr/lib/x2go/x2gobroker-agent x2gocarol ping && touch /tmp/x2gobroker-agent-pwned",
        "/usr/lib/x2go/x2gobroker-agent x2gocarol ping > /tmp/x2gobroker-agent-pwned",
        "/usr/lib/x2go/x2gobroker-agent x2gocarol ping\ntouch /tmp/x2gobroker-agent-pwned",
        "sh -c '/usr/lib/x2go/x2gobroker-agent x2gocarol addauthkey \"ssh-rsa AAAA x\" \"%h/$(id)\"'",
    ];
    for command in hostile_forced_commands {
        let output = legacy(&["x2gocarol", "ping"], Some(command));
        assert_ne!(output.status.code(), Some(0), "{command:?}");
        assert!(output.stdout.is_empty(), "{command:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("refused: SSH_ORIGINAL_COMMAND: shell metacharacter"),
            "{command:?}: {stderr}"
        );
    }
    // after the first ";" nothing is run
    let output = legacy(
        &["x"],
        Some("/usr/lib/x2go/x2gobroker-agent x2gocarol ping; touch /tmp/x2gobroker-agent-pwned"),
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "OK\n");

    assert!(!Path::new(CANARY).exists(), "an injected command ran");
    assert_eq!(
        snapshot(),
        before,
        "nothing outside the intended file changed"
    );

    // the intended file: a valid request still edits exactly carol's key file
    let output = legacy(
        &[CAROL, "addauthkey", GOOD_KEY, "%h/.x2go/authorized_keys"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "OK\n");
    let after = snapshot();
    let carol_home = &homes()[2];
    for (index, (tree_before, tree_after)) in before.0.iter().zip(&after.0).enumerate() {
        if index == 2 {
            let added: Vec<&PathBuf> = tree_after
                .keys()
                .filter(|p| !tree_before.contains_key(*p))
                .collect();
            assert_eq!(
                added,
                vec![
                    &carol_home.join(".x2go"),
                    &carol_home.join(".x2go/authorized_keys")
                ],
            );
        } else {
            assert_eq!(tree_before, tree_after, "tree {index}");
        }
    }
    std::fs::remove_dir_all(&carol_keys).unwrap();
}
