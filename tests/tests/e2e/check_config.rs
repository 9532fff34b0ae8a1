//! `x2gobroker --check-config` against the key table: every key set validly passes, bad values are reported all at once by section, key and value, the shipped `etc/x2gobroker.conf` with `[farm]` uncommented passes, start-up settings are printed with their source, and a bad `[farm]` value at run time is one logged error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use x2gobroker::config::keys::{self, backend, farm, global, KeySpec, Kind};
use x2gobroker_e2e::{binary, free_port, wait_for_port, workspace_root, Daemon};

/// A valid value for `key`, different from its default where the kind allows.
fn valid_value(key: &KeySpec) -> String {
    match key.kind {
        Kind::Bool if key.default == Some("true") => "off".to_string(),
        Kind::Bool => "Yes".to_string(),
        Kind::Int { range } | Kind::Seconds { range } | Kind::Milliseconds { range } => range
            .map(|range| (range.min + 41).min(range.max))
            .unwrap_or(42)
            .to_string(),
        Kind::Port => "50051".to_string(),
        Kind::SocketAddress => "127.0.0.1:18081".to_string(),
        Kind::List => "['first', \"second\"]".to_string(),
        Kind::Networks => "['10.0.0.0/8', \"::1\"]".to_string(),
        // a database URL must be one (and carry no password: `password-file` holds it)
        Kind::Text if key.name == keys::cluster::DATABASE_URL => {
            "postgresql://x2gobroker@db1.example:5432,db2.example:5432/x2gobroker".to_string()
        }
        Kind::Text => format!("text-of-{}", key.name),
        Kind::Path => format!("/srv/x2go/{}", key.name),
        Kind::Enum {
            names, ignore_case, ..
        } => {
            let name = names.last().expect("an enum has names");
            if ignore_case {
                name.to_lowercase()
            } else {
                name.to_string()
            }
        }
        Kind::Switch { on, .. } => on[0].to_string(),
    }
}

/// `x2gobroker --check-config` (or `program`) on `config` and `profiles`, isolated from the
/// host's defaults.conf unless `environment` names one.
fn check_config(
    program: &str,
    config: &Path,
    profiles: &Path,
    environment: &[(&str, &str)],
) -> (Output, String) {
    let mut command = Command::new(binary(program));
    command
        .arg("--check-config")
        .arg("-C")
        .arg(config)
        .env_clear()
        .env("X2GOBROKER_SESSIONPROFILES", profiles)
        .env("X2GOBROKER_DEFAULTS", "/nonexistent/defaults.conf");
    for (name, value) in environment {
        command.env(name, value);
    }
    let output = command.output().expect("x2gobroker --check-config");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

fn write(directory: &Path, name: &str, text: &str) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn every_key_of_the_table_set_validly_passes() {
    let work = tempfile::tempdir().unwrap();
    let mut config = String::new();
    let mut keys_written = 0;
    for section in keys::SECTIONS {
        config.push_str(&format!("[{}]\n", section.name));
        for key in section.keys {
            config.push_str(&format!("{} = {}\n", key.name, valid_value(key)));
            keys_written += 1;
        }
    }
    let mut profiles = "[every-broker-key]\nhost = ts01, ts02\n".to_string();
    for key in keys::PROFILE_BROKER_KEYS.keys {
        profiles.push_str(&format!("{} = {}\n", key.name, valid_value(key)));
    }
    assert!(keys_written >= 60, "{keys_written} keys: {config}");
    let config_path = write(work.path(), "x2gobroker.conf", &config);
    let profiles_path = write(work.path(), "profiles.conf", &profiles);
    let (output, stdout) = check_config("x2gobroker", &config_path, &profiles_path, &[]);
    assert_eq!(output.status.code(), Some(0), "{config}\n{stdout}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
    // the start-up settings, each with its source
    for line in [
        format!("X2GOBROKER_CONFIG = {} (cli)", config_path.display()),
        format!(
            "X2GOBROKER_SESSIONPROFILES = {} (environment)",
            profiles_path.display()
        ),
        "X2GOBROKER_AGENT_USER = text-of-ssh-user (file: [farm] ssh-user)".to_string(),
        "X2GOBROKER_AGENT_CMD = /srv/x2go/agent-command (file: [farm] agent-command)"
            .to_string(),
        "X2GOBROKER_AUTHSERVICE_SOCKET = /srv/x2go/authservice-socket (file: [global] authservice-socket)"
            .to_string(),
        "DAEMON_BIND_ADDRESS = 127.0.0.1:8080 (built-in)".to_string(),
    ] {
        assert!(stdout.contains(&line), "{line:?} missing in {stdout}");
    }
}

#[test]
fn ten_bad_values_are_reported_at_once_by_key_and_value() {
    // (section, key, value, what the problem says)
    let bad: [(&str, &str, &str, &str); 10] = [
        (
            global::SECTION,
            global::REQUIRE_PASSWORD,
            "maybe",
            "not a boolean",
        ),
        (
            global::SECTION,
            global::AUTH_TIMEOUT,
            "soon",
            "not an integer",
        ),
        (
            global::SECTION,
            global::PRE_AUTH_SCRIPTS,
            "[__import__('os')]",
            "not a valid list literal",
        ),
        (
            global::SECTION,
            global::DEFAULT_AGENT_QUERY_MODE,
            "SHH",
            "not one of NONE, LOCAL, SSH, GRPC (read as NONE)",
        ),
        (
            backend::INIFILE_SECTION,
            backend::ENABLE,
            "perhaps",
            "not a boolean",
        ),
        (
            backend::INIFILE_SECTION,
            backend::AGENT_HOSTKEY_POLICY,
            "Reject",
            "not one of AutoAddPolicy, RejectPolicy, WarningPolicy",
        ),
        (
            farm::SECTION,
            farm::HEARTBEAT_MS,
            "banana",
            "not a whole number of milliseconds",
        ),
        (
            farm::SECTION,
            farm::AGENT_PORT,
            "70000",
            "not a port number (1-65535)",
        ),
        (farm::SECTION, farm::SSH_FALLBACK, "nope", "not a boolean"),
        (
            farm::SECTION,
            farm::PENDING_PLACEMENT_TTL,
            "0",
            "out of range (1-86400 seconds)",
        ),
    ];
    let mut config = String::new();
    let mut section_written = "";
    for (section, key, value, _) in bad {
        if section != section_written {
            config.push_str(&format!("[{section}]\n"));
            section_written = section;
        }
        config.push_str(&format!("{key} = {value}\n"));
    }
    let work = tempfile::tempdir().unwrap();
    let config_path = write(work.path(), "x2gobroker.conf", &config);
    let profiles_path = write(work.path(), "profiles.conf", "[ok]\nhost = ts01\n");
    let (output, stdout) = check_config("x2gobroker", &config_path, &profiles_path, &[]);
    assert_eq!(output.status.code(), Some(64), "{stdout}");
    for (section, key, value, says) in bad {
        let expected = format!(
            "{}: [{section}] {key} = {value:?}: {says}",
            config_path.display()
        );
        assert!(
            stdout.lines().any(|line| line.starts_with(&expected)),
            "{expected:?} missing in {stdout}"
        );
    }
    assert!(stdout.contains("\n10 problem(s) found"), "{stdout}");
}

/// `etc/x2gobroker.conf` with the lines of its `[farm]` section uncommented.
fn shipped_config_with_farm() -> String {
    let shipped = std::fs::read_to_string(workspace_root().join("etc/x2gobroker.conf")).unwrap();
    let mut in_farm = false;
    let mut uncommented = 0;
    let mut text = String::new();
    for line in shipped.lines() {
        in_farm = in_farm || line == "#[farm]";
        let is_commented_setting = line.len() > 1
            && line.starts_with('#')
            && !line[1..].starts_with(|first: char| first.is_whitespace() || first == '#');
        if in_farm && is_commented_setting {
            text.push_str(&line[1..]);
            uncommented += 1;
        } else {
            text.push_str(line);
        }
        text.push('\n');
    }
    assert!(text.contains("\n[farm]\nagent-port = "), "{text}");
    assert!(uncommented > keys::FARM.keys.len(), "{uncommented} lines");
    text
}

#[test]
fn the_shipped_config_with_farm_passes_and_three_bad_farm_values_are_reported() {
    let work = tempfile::tempdir().unwrap();
    let profiles = workspace_root().join("etc/x2gobroker-sessionprofiles.conf");
    let text = shipped_config_with_farm();
    // [http] follows [farm] in the file: uncommented with it
    assert!(text.contains("\n[http]\n"), "{text}");
    for (section, key) in keys::FARM
        .keys
        .iter()
        .map(|key| ("farm", key))
        .chain(keys::HTTP.keys.iter().map(|key| ("http", key)))
    {
        assert!(
            text.lines()
                .any(|line| line.starts_with(&format!("{} =", key.name))),
            "etc/x2gobroker.conf shows no [{section}] {}",
            key.name
        );
    }
    let config_path = write(work.path(), "x2gobroker.conf", &text);
    let (output, stdout) = check_config("x2gobroker", &config_path, &profiles, &[]);
    assert_eq!(output.status.code(), Some(0), "{stdout}");

    let replace = |text: &str, key: &str, value: &str| -> String {
        text.lines()
            .map(|line| {
                if line.starts_with(&format!("{key} =")) {
                    format!("{key} = {value}")
                } else {
                    line.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let broken = replace(&text, farm::HEARTBEAT_MS, "banana");
    let broken = replace(&broken, farm::AGENT_PORT, "0");
    let broken = replace(&broken, farm::SSH_FALLBACK, "maybe");
    let config_path = write(work.path(), "x2gobroker.conf", &broken);
    let (output, stdout) = check_config("x2gobroker", &config_path, &profiles, &[]);
    assert_eq!(output.status.code(), Some(64), "{stdout}");
    for expected in [
        "[farm] heartbeat-ms = \"banana\": not a whole number of milliseconds",
        "[farm] agent-port = \"0\": not a port number (1-65535)",
        "[farm] ssh-fallback = \"maybe\": not a boolean",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing in {stdout}"
        );
    }
    assert!(stdout.contains("\n3 problem(s) found"), "{stdout}");
}

#[test]
fn start_up_settings_come_from_defaults_conf_below_the_environment_and_the_command_line() {
    let work = tempfile::tempdir().unwrap();
    let config_path = write(work.path(), "x2gobroker.conf", "[global]\n");
    let profiles_path = write(work.path(), "profiles.conf", "[ok]\nhost = ts01\n");
    let defaults = write(
        work.path(),
        "defaults.conf",
        "[common]\nX2GOBROKER_DAEMON_USER = from-common\nX2GOBROKER_DEFAULT_BACKEND = zeroconf\n[daemon]\nDAEMON_BIND_ADDRESS = 127.0.0.9:8081\nx2gobroker_daemon_user = from-daemon\n",
    );
    let defaults_variable = ("X2GOBROKER_DEFAULTS", defaults.to_str().unwrap());
    let (output, stdout) = check_config(
        "x2gobroker-daemon",
        &config_path,
        &profiles_path,
        &[defaults_variable, ("X2GOBROKER_DEFAULT_BACKEND", "inifile")],
    );
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    for line in [
        "DAEMON_BIND_ADDRESS = 127.0.0.9:8081 (defaults.conf)",
        "X2GOBROKER_DAEMON_USER = from-daemon (defaults.conf)",
        "X2GOBROKER_DEFAULT_BACKEND = inifile (environment)",
        "X2GOBROKER_DEBUG = false (built-in)",
    ] {
        assert!(stdout.contains(line), "{line:?} missing in {stdout}");
    }
    // plain x2gobroker has no section of its own: [common] only; -b and -d win
    let output = Command::new(binary("x2gobroker"))
        .args(["--check-config", "-d", "-b", "127.0.0.3:7"])
        .arg("-C")
        .arg(&config_path)
        .env_clear()
        .env("X2GOBROKER_SESSIONPROFILES", &profiles_path)
        .env(defaults_variable.0, defaults_variable.1)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in [
        "DAEMON_BIND_ADDRESS = 127.0.0.3:7 (cli)",
        "X2GOBROKER_DAEMON_USER = from-common (defaults.conf)",
        "X2GOBROKER_DEFAULT_BACKEND = zeroconf (defaults.conf)",
        "X2GOBROKER_DEBUG = true (cli)",
    ] {
        assert!(stdout.contains(line), "{line:?} missing in {stdout}");
    }
    // a broken defaults.conf is a problem of its own
    std::fs::write(&defaults, "[common]\nX2GOBROKER_DAEMN_USER = typo\n").unwrap();
    let (output, stdout) = check_config(
        "x2gobroker-daemon",
        &config_path,
        &profiles_path,
        &[defaults_variable],
    );
    assert_eq!(output.status.code(), Some(64), "{stdout}");
    assert!(
        stdout.contains("[common] unknown key \"X2GOBROKER_DAEMN_USER\" is ignored"),
        "{stdout}"
    );
}

#[test]
fn a_bad_farm_value_at_start_up_is_one_logged_error_and_the_default_serves() {
    use std::io::{Read, Write};
    let work = tempfile::tempdir().unwrap();
    let config_path = write(
        work.path(),
        "x2gobroker.conf",
        "[global]\nrequire-password = false\n[farm]\nheartbeat-ms = banana\n",
    );
    let profiles_path = write(work.path(), "profiles.conf", "[ok]\nhost = ts01\n");
    let log_path = work.path().join("stderr.log");
    let port = free_port();
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut command = Command::new(binary("x2gobroker-daemon"));
    command
        .arg("-C")
        .arg(&config_path)
        .args(["-b", &address.to_string()])
        .env("X2GOBROKER_SESSIONPROFILES", &profiles_path)
        .env("X2GOBROKER_COOKIE_DIRECTORY", work.path().join("cookies"))
        .env("X2GOBROKER_DEFAULTS", "/nonexistent/defaults.conf")
        .env("X2GOBROKER_LOGCONFIG", x2gobroker_e2e::NO_LOGCONFIG)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let child = command.spawn().unwrap();
    let mut daemon = Daemon { child, address };
    assert!(wait_for_port(address, Duration::from_secs(20)));
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let body = "task=testcon";
    write!(
        stream,
        "POST /plain/inifile/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(daemon.is_running());
    daemon.terminate();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let expected = "[farm] heartbeat-ms = \"banana\": not a whole number of milliseconds; the default 2000 is used";
    assert_eq!(log.matches(expected).count(), 1, "{log}");
    assert!(
        log.lines()
            .any(|line| line.contains("ERROR") && line.contains(expected)),
        "{log}"
    );
}
