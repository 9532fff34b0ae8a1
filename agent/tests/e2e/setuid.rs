//! The legacy agent installed setuid root, attacked as the users who can reach it: a COPY of
//! `target/…/x2gobroker-agent` is installed 4750 root:x2gobroker (and a wrongly installed 4755
//! one) in a temporary directory on a filesystem without `nosuid`, never over
//! `/usr/lib/x2go/x2gobroker-agent` (the Perl agent other tests use). The callers are real
//! local users started through `setpriv` with their own groups: an outsider (not in the
//! group), a member of `x2gobroker` who is also in a group of its own (`x2gosuidcallers`), and
//! the victim whose files are edited. Users and groups are removed again at the end.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

const OUTSIDER: &str = "x2gosuidoutsider";
const MEMBER: &str = "x2gosuidmember";
const VICTIM: &str = "x2gosuidvictim";
/// A group of the caller's that the victim is not in.
const CALLERS_GROUP: &str = "x2gosuidcallers";
/// The group of the reference's install (and of our binary's check).
const AGENT_GROUP: &str = "x2gobroker";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGsetuidtestkey x2go@setuid";
const OTHER_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGsomeoneselse x2go@other";
const KEY_FILE: &str = "%h/.x2go/authorized_keys";

/// Runs an account tool, retrying while another test process holds the passwd/group lock.
fn account_tool(program: &str, arguments: &[&str]) -> bool {
    for _ in 0..50 {
        let output = run(program, arguments);
        if output.status.success() {
            return true;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.contains("lock") {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

fn user(name: &str) -> nix::unistd::User {
    nix::unistd::User::from_name(name).unwrap().unwrap()
}

fn group_id(name: &str) -> u32 {
    nix::unistd::Group::from_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("group {name}"))
        .gid
        .as_raw()
}

/// A directory on a filesystem that honours setuid bits: below the target directory or
/// `/var/tmp`, whichever `findmnt` shows without `nosuid` (`/tmp` is often `nosuid`).
fn setuid_capable_directory() -> PathBuf {
    for candidate in [env!("CARGO_TARGET_TMPDIR"), "/var/tmp"] {
        let _ = std::fs::create_dir_all(candidate);
        let options = run("findmnt", &["-n", "-o", "OPTIONS", "-T", candidate]);
        let text = String::from_utf8_lossy(&options.stdout);
        if options.status.success() && !text.split(',').any(|option| option.trim() == "nosuid") {
            return PathBuf::from(candidate);
        }
    }
    panic!("no filesystem without nosuid for the setuid copy (tried the target dir and /var/tmp)");
}

/// The users and groups and the installed copies; users and groups removed on drop (the
/// temporary directory with the copies and planted files goes with it).
struct SetuidInstall {
    directory: tempfile::TempDir,
    /// mode 4750 root:x2gobroker, as the reference's package installs its wrapper
    agent: PathBuf,
    /// mode 4755: installed wrongly, so only the binary's own check stands in the way
    agent_world_executable: PathBuf,
}

impl SetuidInstall {
    fn new() -> SetuidInstall {
        let no_new_privileges = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|line| line.replace(char::is_whitespace, "") == "NoNewPrivs:1");
        assert!(
            !no_new_privileges,
            "this test process runs with no_new_privs: setuid bits would be ignored"
        );
        let agent_gid = group_id(AGENT_GROUP);
        if nix::unistd::Group::from_name(CALLERS_GROUP)
            .unwrap()
            .is_none()
        {
            assert!(account_tool("groupadd", &[CALLERS_GROUP]), "groupadd");
        }
        for name in [OUTSIDER, MEMBER, VICTIM] {
            x2gobroker_e2e::ensure_user(name, None);
        }
        assert!(account_tool(
            "usermod",
            &["-aG", &format!("{AGENT_GROUP},{CALLERS_GROUP}"), MEMBER]
        ));
        let directory = tempfile::Builder::new()
            .prefix("x2gobroker-setuid-")
            .tempdir_in(setuid_capable_directory())
            .unwrap();
        std::fs::set_permissions(directory.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let install = |name: &str, mode: u32| {
            let path = directory.path().join(name);
            std::fs::copy(AGENT_BIN, &path).unwrap();
            std::os::unix::fs::chown(&path, Some(0), Some(agent_gid)).unwrap();
            std::fs::set_permissions(&path, PermissionsExt::from_mode(mode)).unwrap();
            assert_eq!(
                std::fs::metadata(&path).unwrap().mode() & 0o7777,
                mode,
                "{name}"
            );
            path
        };
        let agent = install("x2gobroker-agent", 0o4750);
        let agent_world_executable = install("x2gobroker-agent-4755", 0o4755);
        let _ = std::fs::remove_dir_all(user(VICTIM).dir.join(".x2go"));
        SetuidInstall {
            directory,
            agent,
            agent_world_executable,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }
}

impl Drop for SetuidInstall {
    fn drop(&mut self) {
        for name in [OUTSIDER, MEMBER, VICTIM] {
            account_tool("userdel", &["-r", name]);
        }
        account_tool("groupdel", &[CALLERS_GROUP]);
    }
}

/// `program args…` as `name`: that user's uid, primary gid and groups (`setpriv
/// --init-groups`), then `env -i` with exactly `environment`.
fn run_as(name: &str, program: &Path, args: &[&str], environment: &[(&str, &str)]) -> Output {
    let account = user(name);
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={}", account.uid))
        .arg(format!("--regid={}", account.gid))
        .arg("--init-groups")
        .arg("--")
        .arg("/usr/bin/env")
        .arg("-i");
    for (variable, value) in environment {
        command.arg(format!("{variable}={value}"));
    }
    command
        .arg(program)
        .args(args)
        .current_dir("/")
        .output()
        .expect("setpriv")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn victim_key_file() -> PathBuf {
    user(VICTIM).dir.join(".x2go/authorized_keys")
}

/// (stdout, exit status) of a run, for compact assertions.
fn outcome(output: &Output) -> (String, Option<i32>) {
    (text(&output.stdout), output.status.code())
}

fn ok() -> (String, Option<i32>) {
    ("OK\n".to_owned(), Some(0))
}

#[tokio::test]
async fn setuid_agent_refuses_callers_outside_its_group() {
    let _serial = serial().await;
    let install = SetuidInstall::new();

    // 4750: the file mode stops the outsider at exec, as with the reference
    let output = run_as(OUTSIDER, &install.agent, &[VICTIM, "ping"], &[]);
    assert_ne!(output.status.code(), Some(0));
    assert!(output.stdout.is_empty());
    assert!(
        text(&output.stderr).contains("Permission denied"),
        "{}",
        text(&output.stderr)
    );

    // 4755 (installed wrongly): the binary itself refuses, before anything else
    let outsider_uid = user(OUTSIDER).uid;
    for args in [
        &[VICTIM, "ping"][..],
        &[VICTIM, "listsessions"],
        &[VICTIM, "addauthkey", KEY, KEY_FILE],
    ] {
        let output = run_as(OUTSIDER, &install.agent_world_executable, args, &[]);
        assert_eq!(output.status.code(), Some(255), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert_eq!(
            text(&output.stderr),
            format!(
                "You cannot execute x2gobroker-agent unless you are root or a member of group x2gobroker (uid {outsider_uid})!\n"
            ),
            "{args:?}"
        );
    }
    assert!(!victim_key_file().exists(), "no key was written");

    // the member passes the same wrongly installed copy: the refusal above was the check's
    let output = run_as(
        MEMBER,
        &install.agent_world_executable,
        &[VICTIM, "ping"],
        &[],
    );
    assert_eq!(outcome(&output), ok());
}

#[tokio::test]
async fn setuid_agent_serves_its_group_as_the_target_user() {
    let _serial = serial().await;
    ensure_farm();
    let install = SetuidInstall::new();
    let victim = user(VICTIM);

    let output = run_as(MEMBER, &install.agent, &[VICTIM, "ping"], &[]);
    assert_eq!(outcome(&output), ok());

    // only root can runuser: the listing proves the setuid start made the agent root
    let output = run_as(MEMBER, &install.agent, &[ALICE, "listsessions"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert_eq!(
        masked_lines(stdout.strip_prefix("OK\n").expect("OK first")),
        masked_lines(&x2golistsessions(ALICE))
    );

    // a key for the victim: written as the victim (owner, group, modes)
    let key_file = victim_key_file();
    let output = run_as(
        MEMBER,
        &install.agent,
        &[VICTIM, "addauthkey", KEY, KEY_FILE],
        &[],
    );
    assert_eq!(outcome(&output), ok(), "{}", text(&output.stderr));
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        format!("{KEY}\n")
    );
    let file = std::fs::metadata(&key_file).unwrap();
    let directory = std::fs::metadata(key_file.parent().unwrap()).unwrap();
    assert_eq!(
        (file.uid(), file.gid(), file.mode() & 0o777),
        (victim.uid.as_raw(), victim.gid.as_raw(), 0o600)
    );
    assert_eq!(
        (directory.uid(), directory.gid(), directory.mode() & 0o777),
        (victim.uid.as_raw(), victim.gid.as_raw(), 0o700)
    );
    let output = run_as(
        MEMBER,
        &install.agent,
        &[VICTIM, "delauthkey", KEY, KEY_FILE],
        &[],
    );
    assert_eq!(outcome(&output), ok());
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), "");

    // through SSH_ORIGINAL_COMMAND, as the broker's SSH transport calls it
    let forced = format!("sh -c '/usr/lib/x2go/x2gobroker-agent {VICTIM} availabletasks'");
    let output = run_as(
        MEMBER,
        &install.agent,
        &[],
        &[("SSH_ORIGINAL_COMMAND", &forced)],
    );
    assert!(text(&output.stdout).starts_with("OK\navailabletasks\n"));
    assert_eq!(output.status.code(), Some(0));
}

#[tokio::test]
async fn setuid_agent_never_writes_with_the_callers_groups() {
    let _serial = serial().await;
    let install = SetuidInstall::new();
    let victim = user(VICTIM);
    let callers_gid = group_id(CALLERS_GROUP);
    // a file and a directory writable only by the caller's group
    let callers_file = install.path("callers-only-file");
    std::fs::write(&callers_file, format!("{OTHER_KEY}\n")).unwrap();
    std::os::unix::fs::chown(&callers_file, Some(0), Some(callers_gid)).unwrap();
    std::fs::set_permissions(&callers_file, PermissionsExt::from_mode(0o660)).unwrap();
    let callers_directory = install.path("callers-only-dir");
    std::fs::create_dir(&callers_directory).unwrap();
    std::os::unix::fs::chown(&callers_directory, Some(0), Some(callers_gid)).unwrap();
    std::fs::set_permissions(&callers_directory, PermissionsExt::from_mode(0o770)).unwrap();
    // what makes the attack meaningful: the caller could write them, the victim could not
    let may_write = |name: &str, path: &Path| {
        run_as(
            name,
            Path::new("/usr/bin/test"),
            &["-w", path.to_str().unwrap()],
            &[],
        )
        .status
        .success()
    };
    assert!(may_write(MEMBER, &callers_file) && may_write(MEMBER, &callers_directory));
    assert!(!may_write(VICTIM, &callers_file) && !may_write(VICTIM, &callers_directory));

    let (victim_uid, victim_gid) = (victim.uid.as_raw(), victim.gid.as_raw());
    let plant = |link: &Path, target: &Path| {
        std::os::unix::fs::symlink(target, link).unwrap();
        std::os::unix::fs::lchown(link, Some(victim_uid), Some(victim_gid)).unwrap();
    };
    let dot_x2go = victim.dir.join(".x2go");
    std::fs::create_dir_all(&dot_x2go).unwrap();
    std::os::unix::fs::chown(&dot_x2go, Some(victim_uid), Some(victim_gid)).unwrap();
    let key_file = victim_key_file();

    // 1. ~victim/.x2go/authorized_keys -> the caller's group's file
    plant(&key_file, &callers_file);
    for (task, key) in [("addauthkey", KEY), ("delauthkey", OTHER_KEY)] {
        let output = run_as(MEMBER, &install.agent, &[VICTIM, task, key, KEY_FILE], &[]);
        assert_eq!(
            outcome(&output),
            ("OK\n".to_owned(), Some(1)),
            "{task}: fails after OK"
        );
        assert!(
            text(&output.stderr).contains("is a symbolic link"),
            "{task}: {}",
            text(&output.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(&callers_file).unwrap(),
            format!("{OTHER_KEY}\n"),
            "{task}: the caller's group's file is unchanged"
        );
        assert!(std::fs::symlink_metadata(&key_file)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    // 2. ~victim/.x2go -> the caller's group's directory: the victim may not create in it
    std::fs::remove_file(&key_file).unwrap();
    std::fs::remove_dir(&dot_x2go).unwrap();
    plant(&dot_x2go, &callers_directory);
    let output = run_as(
        MEMBER,
        &install.agent,
        &[VICTIM, "addauthkey", KEY, KEY_FILE],
        &[],
    );
    assert_eq!(outcome(&output), ("OK\n".to_owned(), Some(1)));
    assert!(
        text(&output.stderr).contains("Permission denied"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(std::fs::read_dir(&callers_directory).unwrap().count(), 0);
    std::fs::remove_file(&dot_x2go).unwrap();
}

#[tokio::test]
async fn setuid_agent_refuses_hostile_arguments() {
    let _serial = serial().await;
    let install = SetuidInstall::new();
    let key_file = victim_key_file();
    let hostile_keys = [
        format!("command=\"/bin/sh\" {KEY}"),
        format!("environment=\"LD_PRELOAD=/tmp/x.so\" {KEY}"),
        format!("from=\"*\" {KEY}"),
        format!("permitopen=\"127.0.0.1:22\" {KEY}"),
        format!("tunnel=\"0\" {KEY}"),
        format!("no-pty,command=\"id\" {KEY}"),
        format!("restrict,command=id {KEY}"),
        format!("{KEY}\n{OTHER_KEY}"),
    ];
    for key in &hostile_keys {
        let output = run_as(
            MEMBER,
            &install.agent,
            &[VICTIM, "addauthkey", key, KEY_FILE],
            &[],
        );
        assert_eq!(output.status.code(), Some(255), "{key:?}");
        assert!(output.stdout.is_empty(), "{key:?}: refused before OK");
        assert!(
            text(&output.stderr).starts_with("x2gobroker-agent: refused: invalid public key"),
            "{key:?}: {}",
            text(&output.stderr)
        );
    }
    assert!(!key_file.exists(), "no hostile key reached the file");
    // the options the broker itself writes pass
    let restricted = format!("no-X11-forwarding,no-user-rc,no-pty {KEY}");
    let output = run_as(
        MEMBER,
        &install.agent,
        &[VICTIM, "addauthkey", &restricted, KEY_FILE],
        &[],
    );
    assert_eq!(outcome(&output), ok());
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        format!("{restricted}\n")
    );

    for name in ["../etc", "a;id", "$(id)", "a b", "x\ny", "-r"] {
        let output = run_as(MEMBER, &install.agent, &[name, "listsessions"], &[]);
        assert_eq!(output.status.code(), Some(255), "{name:?}");
        assert!(output.stdout.is_empty());
        assert!(
            text(&output.stderr).starts_with("x2gobroker-agent: refused: invalid user name"),
            "{name:?}: {}",
            text(&output.stderr)
        );
    }
    let output = run_as(MEMBER, &install.agent, &["root", "listsessions"], &[]);
    assert_eq!(output.status.code(), Some(255));
    assert!(text(&output.stderr).starts_with("operation on system user: root"));
    for session_id in ["$(id)", "../../etc/passwd", "-rf", "a;b", "a b"] {
        let output = run_as(
            MEMBER,
            &install.agent,
            &[VICTIM, "suspendsession", session_id],
            &[],
        );
        assert_eq!(output.status.code(), Some(255), "{session_id:?}");
        assert!(output.stdout.is_empty());
        assert!(
            text(&output.stderr).starts_with("x2gobroker-agent: refused: invalid session id"),
            "{session_id:?}: {}",
            text(&output.stderr)
        );
    }
    for path in ["%h/../../etc/cron.d/x", "/etc/../root/.ssh/authorized_keys"] {
        let output = run_as(
            MEMBER,
            &install.agent,
            &[VICTIM, "addauthkey", KEY, path],
            &[],
        );
        assert_eq!(output.status.code(), Some(255), "{path}");
        assert!(output.stdout.is_empty());
    }
    let canary = install.path("injected");
    let forced = format!(
        "sh -c '/usr/lib/x2go/x2gobroker-agent {VICTIM} ping $(touch {})'",
        canary.display()
    );
    let output = run_as(
        MEMBER,
        &install.agent,
        &[],
        &[("SSH_ORIGINAL_COMMAND", &forced)],
    );
    assert_eq!(output.status.code(), Some(255));
    assert!(!canary.exists());
}

#[tokio::test]
async fn setuid_agent_ignores_the_callers_environment_and_limits() {
    let _serial = serial().await;
    ensure_farm();
    let install = SetuidInstall::new();
    let evil = install.path("evil");
    std::fs::create_dir(&evil).unwrap();
    std::fs::set_permissions(&evil, PermissionsExt::from_mode(0o1777)).unwrap();
    let markers = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&evil)
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("ran-"))
            .collect();
        names.sort();
        names
    };
    // fake tools in the caller's PATH, each leaving a marker
    for tool in [
        "runuser",
        "sudo",
        "x2golistsessions",
        "x2golistsessions_root",
        "x2gogetservers",
        "x2gopath",
        "x2goversion",
        "sh",
        "perl",
    ] {
        let script = evil.join(tool);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n/usr/bin/touch {}/ran-{tool}-$(/usr/bin/id -u)\n",
                evil.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, PermissionsExt::from_mode(0o755)).unwrap();
    }
    // a preload library leaving a marker from every process that loads it
    let source = evil.join("preload.c");
    std::fs::write(
        &source,
        format!(
            "#include <fcntl.h>\n#include <stdio.h>\n#include <unistd.h>\n\
             __attribute__((constructor)) static void hit(void) {{\n\
             char path[512];\n\
             snprintf(path, sizeof path, \"{}/ran-preload-%d-%d\", (int)getuid(), (int)getpid());\n\
             int fd = open(path, O_CREAT | O_WRONLY, 0666);\n\
             if (fd >= 0) close(fd);\n}}\n",
            evil.display()
        ),
    )
    .unwrap();
    let library = evil.join("preload.so");
    let compiled = run(
        "cc",
        &[
            "-shared",
            "-fPIC",
            "-o",
            library.to_str().unwrap(),
            source.to_str().unwrap(),
        ],
    );
    assert!(compiled.status.success(), "{}", text(&compiled.stderr));
    let evil_path = evil.to_str().unwrap().to_owned();
    let library_path = library.to_str().unwrap().to_owned();
    let bash_env = evil.join("x2goversion").to_str().unwrap().to_owned();
    let hostile_environment = [
        ("PATH", evil_path.as_str()),
        ("LD_PRELOAD", library_path.as_str()),
        ("LD_LIBRARY_PATH", evil_path.as_str()),
        ("BASH_ENV", bash_env.as_str()),
        ("ENV", bash_env.as_str()),
        ("PERL5OPT", "-Mstrict"),
        ("PERL5LIB", evil_path.as_str()),
        ("IFS", "/"),
        ("HOME", evil_path.as_str()),
    ];
    // the bait works: without the agent in between, both hit
    let bait = run_as(
        MEMBER,
        Path::new("/usr/bin/env"),
        &["x2goversion"],
        &hostile_environment,
    );
    assert!(bait.status.success(), "{}", text(&bait.stderr));
    assert!(markers().iter().any(|m| m.starts_with("ran-x2goversion-")));
    assert!(markers().iter().any(|m| m.starts_with("ran-preload-")));
    for marker in markers() {
        std::fs::remove_file(evil.join(marker)).unwrap();
    }

    let output = run_as(
        MEMBER,
        &install.agent,
        &[ALICE, "listsessions"],
        &hostile_environment,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        masked_lines(text(&output.stdout).strip_prefix("OK\n").unwrap()),
        masked_lines(&x2golistsessions(ALICE))
    );
    let output = run_as(
        MEMBER,
        &install.agent,
        &[VICTIM, "availabletasks"],
        &hostile_environment,
    );
    assert!(
        text(&output.stdout).contains("\nsuspendsession\n"),
        "the real x2goversion answered: {}",
        text(&output.stdout)
    );
    let output = run_as(
        MEMBER,
        &install.agent,
        &[
            VICTIM,
            "suspendsession",
            "x2gosuidvictim-50-1700000000_stDKDE_dp24",
        ],
        &hostile_environment,
    );
    assert_eq!(text(&output.stdout).lines().next(), Some("OK"));
    let output = run_as(
        MEMBER,
        &install.agent,
        &[VICTIM, "addauthkey", KEY, KEY_FILE],
        &hostile_environment,
    );
    assert_eq!(outcome(&output), ok(), "{}", text(&output.stderr));
    assert_eq!(
        markers(),
        Vec::<String>::new(),
        "nothing of the caller's ran"
    );
    assert!(
        !evil.join(".x2go").exists(),
        "the caller's HOME is not the user's"
    );

    // a closed stdout cannot make the key file our stdout
    let key_file = victim_key_file();
    std::fs::remove_file(&key_file).unwrap();
    let agent = install.agent.to_str().unwrap();
    let closed = run_as(
        MEMBER,
        Path::new("/bin/sh"),
        &[
            "-c",
            "exec \"$0\" \"$@\" >&-",
            agent,
            VICTIM,
            "addauthkey",
            KEY,
            KEY_FILE,
        ],
        &[],
    );
    assert!(closed.status.success(), "{}", text(&closed.stderr));
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        format!("{KEY}\n")
    );

    // a file-size limit of the caller's cannot cut the key line: lifted where root may
    // (CAP_SYS_RESOURCE), refused before anything runs where it may not (some containers)
    std::fs::remove_file(&key_file).unwrap();
    let limited = run_as(
        MEMBER,
        Path::new("/usr/bin/prlimit"),
        &["--fsize=8", agent, VICTIM, "addauthkey", KEY, KEY_FILE],
        &[],
    );
    if limited.status.code() == Some(255) {
        assert_eq!(
            text(&limited.stderr),
            "x2gobroker-agent: refused: the caller's file size limit (RLIMIT_FSIZE 8 bytes) \
             cannot be lifted and would cut files; run it with ulimit -f unlimited\n"
        );
        assert!(limited.stdout.is_empty());
        assert!(!key_file.exists(), "nothing was written");
    } else {
        assert_eq!(outcome(&limited), ok(), "{}", text(&limited.stderr));
        assert_eq!(
            std::fs::read_to_string(&key_file).unwrap(),
            format!("{KEY}\n")
        );
    }
}
