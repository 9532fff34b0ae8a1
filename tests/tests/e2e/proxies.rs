//! Behind a reverse proxy and as several instances: the client a trusted proxy names (X-Forwarded-For, PROXY protocol v2) for the throttle, the client ACLs and the access log, ignored from anyone else; nginx from Debian with the shipped examples (TLS, URL prefix) gives X2Go Client the broker's own bodies; two instances of the template unit on their own ports, profiles and directories.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x2gobroker_e2e::certs::{TestCa, Usage};
use x2gobroker_e2e::{binary, free_port, normalise, workspace_root, Daemon, NO_LOGCONFIG};

/// The trusted proxy (nginx, haproxy on the broker host) and two clients behind it.
const PROXY: &str = "127.0.0.1";
const CLIENT_A: &str = "198.51.100.1";
const CLIENT_B: &str = "198.51.100.2";
/// A peer that is no trusted proxy.
const UNTRUSTED: &str = "127.0.0.2";

const CONFIG: &str = "[global]
require-password = true
default-auth-mech = testsuite
default-portscan-x2goservers = false
trusted-proxies = 127.0.0.1, ::1
[broker_inifile]
user-db = testsuite
group-db = testsuite
";

/// `only-b` is shown to client B only.
const PROFILES: &str = "[everyone]
name = Everyone
host = ts01
command = TERMINAL

[only-b]
name = Only B
host = ts02
command = TERMINAL
acl-clients-allow = 198.51.100.2
";

/// A broker on `config` and `profiles` (files in `work`), its log in `work/broker.log`.
fn start_broker(work: &Path, config: &str, profiles: &str) -> Daemon {
    let config_path = work.join("x2gobroker.conf");
    let profiles_path = work.join("profiles.conf");
    // the admin listener's default port may be taken by another test's broker: off
    let config = format!(
        "{config}\n[admin]\nbind =\nstate-directory = {0}\naudit-log = {0}/audit.log\n",
        work.display()
    );
    std::fs::write(&config_path, config).unwrap();
    std::fs::write(&profiles_path, profiles).unwrap();
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = Command::new(binary("x2gobroker-daemon"));
    command
        .arg("-C")
        .arg(&config_path)
        .arg("-b")
        .arg(address.to_string())
        .current_dir(work)
        .env("X2GOBROKER_SESSIONPROFILES", &profiles_path)
        .env("X2GOBROKER_COOKIE_DIRECTORY", work.join("cookies"))
        .env("X2GOBROKER_LOGCONFIG", NO_LOGCONFIG)
        .env("X2GOBROKER_DEFAULTS", "/nonexistent/defaults.conf")
        .env("RUST_LOG", "info")
        .env_remove("X2GOBROKER_DEFAULT_BACKEND")
        .env_remove("X2GOBROKER_CONFIG")
        .env_remove("X2GOBROKER_SSL_CERTFILE")
        .env_remove("X2GOBROKER_SSL_KEYFILE");
    Daemon::start_logged(command, address, &work.join("broker.log"))
}

/// How a request reaches the broker.
#[derive(Debug, Clone, Copy)]
enum Via<'a> {
    /// From `peer`, naming `client` in X-Forwarded-For.
    ForwardedFor { peer: &'a str, client: &'a str },
    /// From `peer`, naming `client` in a PROXY protocol v2 header.
    ProxyHeader { peer: &'a str, client: &'a str },
    /// From `peer`, nothing added.
    Direct { peer: &'a str },
}

/// A form as X2Go Client sends it (`user`, `password`, `authid`, in its order).
fn client_form(task: &str, profile: Option<&str>, user: &str, password: &str) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("task", task);
    if let Some(profile) = profile {
        form.append_pair("sid", profile);
    }
    form.append_pair("user", user)
        .append_pair("password", password)
        .append_pair("authid", "")
        .finish()
}

/// One POST to `/plain/` over a fresh connection; `None` when the broker closed it unanswered.
async fn post(broker: SocketAddr, via: Via<'_>, form: &str) -> Option<(u16, String)> {
    let (peer, header_client, proxy_client) = match via {
        Via::ForwardedFor { peer, client } => (peer, Some(client), None),
        Via::ProxyHeader { peer, client } => (peer, None, Some(client)),
        Via::Direct { peer } => (peer, None, None),
    };
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(peer.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(broker).await.unwrap();
    let mut bytes = Vec::new();
    if let Some(client) = proxy_client {
        let source = SocketAddr::new(client.parse().unwrap(), 40_000);
        let header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (source, broker),
        )
        .build()
        .unwrap();
        bytes.extend_from_slice(&header);
    }
    let forwarded = header_client
        .map(|client| format!("X-Forwarded-For: {client}\r\n"))
        .unwrap_or_default();
    bytes.extend_from_slice(
        format!(
            "POST /plain/inifile/ HTTP/1.1\r\nHost: broker\r\nContent-Type: application/x-www-form-urlencoded\r\n{forwarded}Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        )
        .as_bytes(),
    );
    // a refused connection may be reset while we write
    let _ = stream.write_all(&bytes).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the broker answers or closes within 10 s");
    if read.is_err() || answer.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Some((status, body))
}

async fn list(broker: SocketAddr, via: Via<'_>, password: &str) -> (u16, String) {
    post(
        broker,
        via,
        &client_form("listsessions", None, "test", password),
    )
    .await
    .expect("an answer")
}

/// Acceptance 3 for one way of naming the client (`through(client)` from the trusted proxy).
async fn trusted_proxy_scenario(through: impl Fn(&'static str) -> Via<'static>) {
    let work = tempfile::tempdir().unwrap();
    let daemon = start_broker(work.path(), CONFIG, PROFILES);
    let broker = daemon.address;

    // the client ACL: B's address only
    let (status, as_a) = list(broker, through(CLIENT_A), "sweet").await;
    assert_eq!(status, 200, "{as_a}");
    assert!(
        as_a.contains("[everyone]") && !as_a.contains("[only-b]"),
        "{as_a}"
    );
    let (status, as_b) = list(broker, through(CLIENT_B), "sweet").await;
    assert_eq!(status, 200, "{as_b}");
    assert!(
        as_b.contains("[everyone]") && as_b.contains("[only-b]"),
        "{as_b}"
    );

    // verify-ip: a cookie issued to A is refused from B (and consumed), accepted from A
    let authid = |body: &str| {
        body.lines()
            .find_map(|line| line.strip_prefix("AUTHID:"))
            .expect("an AUTHID line")
            .to_string()
    };
    let with_cookie = |cookie: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("task", "listsessions")
            .append_pair("user", "test")
            .append_pair("password", "")
            .append_pair("authid", cookie)
            .finish()
    };
    let (status, _) = post(broker, through(CLIENT_B), &with_cookie(&authid(&as_a)))
        .await
        .unwrap();
    assert_eq!(status, 401, "A's cookie from B");
    let (_, as_a_again) = list(broker, through(CLIENT_A), "sweet").await;
    let (status, body) = post(
        broker,
        through(CLIENT_A),
        &with_cookie(&authid(&as_a_again)),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "A's cookie from A: {body}");

    // 20 failed logins from A (20 users: the per-address limit, not the per-user one)
    for attempt in 0..20 {
        let form = client_form("listsessions", None, &format!("guess{attempt}"), "wrong");
        let (status, _) = post(broker, through(CLIENT_A), &form).await.unwrap();
        assert_eq!(status, 401, "attempt {attempt}");
    }
    let (status, _) = list(broker, through(CLIENT_A), "sweet").await;
    assert_eq!(status, 401, "A is locked out");
    let (status, body) = list(broker, through(CLIENT_B), "sweet").await;
    assert_eq!(
        status, 200,
        "B still logs in through the same proxy: {body}"
    );
    assert!(body.contains("[only-b]"), "{body}");

    // the access log names the clients, not the proxy
    let log = std::fs::read_to_string(work.path().join("broker.log")).unwrap();
    assert!(
        log.contains(&format!("200 POST /plain/inifile/ ({CLIENT_B})")),
        "{log}"
    );
    assert!(
        log.contains(&format!("401 POST /plain/inifile/ ({CLIENT_A})")),
        "{log}"
    );
    assert!(
        !log.contains(&format!("POST /plain/inifile/ ({PROXY})")),
        "{log}"
    );
}

#[tokio::test]
async fn x_forwarded_for_from_a_trusted_proxy_names_the_client_and_is_ignored_from_others() {
    trusted_proxy_scenario(|client| Via::ForwardedFor {
        peer: PROXY,
        client,
    })
    .await;

    // the same headers from a peer that is no trusted proxy: ACL and throttle see the peer
    let work = tempfile::tempdir().unwrap();
    let daemon = start_broker(work.path(), CONFIG, PROFILES);
    let broker = daemon.address;
    let spoofing = |client| Via::ForwardedFor {
        peer: UNTRUSTED,
        client,
    };
    let (status, body) = list(broker, spoofing(CLIENT_B), "sweet").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("[only-b]"),
        "B's profile for a forged header: {body}"
    );
    for attempt in 0..20 {
        // a different forged client every time: the throttle counts the peer all the same
        let forged = format!("203.0.113.{attempt}");
        let forged: &'static str = Box::leak(forged.into_boxed_str());
        let form = client_form("listsessions", None, &format!("guess{attempt}"), "wrong");
        let (status, _) = post(broker, spoofing(forged), &form).await.unwrap();
        assert_eq!(status, 401);
    }
    let (status, _) = list(broker, spoofing(CLIENT_B), "sweet").await;
    assert_eq!(status, 401, "the untrusted peer itself is locked out");
    let (status, body) = list(
        broker,
        Via::ForwardedFor {
            peer: PROXY,
            client: CLIENT_B,
        },
        "sweet",
    )
    .await;
    assert_eq!(status, 200, "B through the trusted proxy is not: {body}");
    let log = std::fs::read_to_string(work.path().join("broker.log")).unwrap();
    assert!(
        log.contains(&format!("401 POST /plain/inifile/ ({UNTRUSTED})")),
        "{log}"
    );
    assert!(!log.contains("(203.0.113."), "{log}");
}

#[tokio::test]
async fn a_proxy_protocol_v2_header_from_a_trusted_proxy_names_the_client_and_closes_others() {
    trusted_proxy_scenario(|client| Via::ProxyHeader {
        peer: PROXY,
        client,
    })
    .await;

    let work = tempfile::tempdir().unwrap();
    let daemon = start_broker(work.path(), CONFIG, PROFILES);
    let broker = daemon.address;
    // from a peer that is no trusted proxy the header is refused: closed, nothing answered
    let form = client_form("listsessions", None, "test", "sweet");
    let refused = post(
        broker,
        Via::ProxyHeader {
            peer: UNTRUSTED,
            client: CLIENT_B,
        },
        &form,
    )
    .await;
    assert_eq!(refused, None, "a PROXY header from an untrusted peer");
    // that peer's plain requests are served as its own
    let (status, body) = list(broker, Via::Direct { peer: UNTRUSTED }, "sweet").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("[only-b]"), "{body}");
    // the trusted proxy's own requests without a header: itself
    let (status, body) = list(broker, Via::Direct { peer: PROXY }, "sweet").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("[only-b]"), "{body}");
    let log = std::fs::read_to_string(work.path().join("broker.log")).unwrap();
    assert!(log.contains("connection closed before HTTP"), "{log}");
    assert!(
        log.contains(&format!("200 POST /plain/inifile/ ({UNTRUSTED})")),
        "{log}"
    );
}

/// nginx started from a config file in `directory` (its pid, logs and temporary files there).
struct Nginx {
    child: std::process::Child,
    directory: PathBuf,
}

impl Nginx {
    fn start(directory: &Path, server_blocks: &str, port: u16) -> Nginx {
        std::fs::create_dir_all(directory).unwrap();
        // nginx's workers (nobody) reach their temporary directories through this one
        std::fs::set_permissions(
            directory,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let path = |name: &str| directory.join(name).display().to_string();
        let config = format!(
            "daemon off;\nworker_processes 1;\npid {pid};\nerror_log {error_log} info;\nevents {{ worker_connections 64; }}\nhttp {{\n    access_log {access_log};\n    client_body_temp_path {temp}/body;\n    proxy_temp_path {temp}/proxy;\n    fastcgi_temp_path {temp}/fastcgi;\n    uwsgi_temp_path {temp}/uwsgi;\n    scgi_temp_path {temp}/scgi;\n{server_blocks}\n}}\n",
            pid = path("nginx.pid"),
            error_log = path("error.log"),
            access_log = path("access.log"),
            temp = path("temp"),
        );
        std::fs::create_dir_all(directory.join("temp")).unwrap();
        let config_path = directory.join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(directory)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (tests/install-deps.sh installs nginx-light)");
        let mut nginx = Nginx {
            child,
            directory: directory.to_path_buf(),
        };
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        if !x2gobroker_e2e::wait_for_port(address, Duration::from_secs(10)) {
            let status = nginx.child.try_wait();
            panic!("nginx did not listen ({status:?}): {}", nginx.error_log());
        }
        nginx
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.directory.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// SIGTERM: the master stops its workers and waits for them (SIGKILL would leave them
    /// running, still listening); SIGKILL only when it does not exit within 5 s.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` with `from` replaced by `to`, which must occur (the shipped example changed?).
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "{from:?} is not in the shipped example"
    );
    text.replace(from, to)
}

/// The shipped nginx example with only its ports and paths changed.
fn nginx_example(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("deploy/nginx").join(name)).unwrap()
}

/// X2Go Client's two requests (listsessions, then selectsession with the profile) from
/// `from` through `client` to `url`: status and normalised body of each.
async fn x2go_client_session(client: &reqwest::Client, url: &str) -> Vec<(u16, String)> {
    let mut answers = Vec::new();
    for form in [
        client_form("listsessions", None, "test", "sweet"),
        client_form("selectsession", Some("everyone"), "test", "sweet"),
        client_form("selectsession", Some("only-b"), "test", "sweet"),
        client_form("listsessions", None, "test", "wrong"),
    ] {
        let response = client
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap_or_else(|error| panic!("{url}: {error}"));
        let status = response.status().as_u16();
        answers.push((status, normalise(&response.text().await.unwrap())));
    }
    answers
}

#[tokio::test]
async fn nginx_in_front_gives_x2go_client_the_brokers_own_bodies_also_under_a_url_prefix() {
    let work = tempfile::tempdir().unwrap();
    // the client, on the proxy's host: 127.0.0.3, which a profile's ACL allows; through nginx
    // the broker sees it only if it believes nginx's X-Forwarded-For
    let client_address = "127.0.0.3";
    let profiles = PROFILES.replace(CLIENT_B, client_address);
    let direct_work = work.path().join("broker");
    let prefixed_work = work.path().join("broker-prefixed");
    std::fs::create_dir_all(&direct_work).unwrap();
    std::fs::create_dir_all(&prefixed_work).unwrap();
    let broker = start_broker(&direct_work, CONFIG, &profiles);
    let prefixed_config = CONFIG.replace(
        "[broker_inifile]",
        "url-prefix = /x2gobroker\n[broker_inifile]",
    );
    let prefixed = start_broker(&prefixed_work, &prefixed_config, &profiles);

    let ca = TestCa::new(work.path(), "test-ca");
    let leaf = ca.leaf(
        "broker.example.org",
        &["localhost", "127.0.0.1"],
        Usage::Server,
    );
    let (site_port, location_port) = (free_port(), free_port());
    // the site example: TLS at nginx, the broker on loopback
    let mut site = nginx_example("x2gobroker.conf");
    site = substitute(
        &site,
        "listen 443 ssl;",
        &format!("listen 127.0.0.1:{site_port} ssl;"),
    );
    site = substitute(
        &site,
        "server 127.0.0.1:8080;",
        &format!("server {};", broker.address),
    );
    site = substitute(
        &site,
        "/etc/letsencrypt/live/broker.example.org/fullchain.pem",
        &leaf.certificate.display().to_string(),
    );
    site = substitute(
        &site,
        "/etc/letsencrypt/live/broker.example.org/privkey.pem",
        &leaf.key.display().to_string(),
    );
    // the location example inside an HTTPS site of the test's
    let location = substitute(
        &nginx_example("x2gobroker-location.conf"),
        "proxy_pass http://127.0.0.1:8080;",
        &format!("proxy_pass http://{};", prefixed.address),
    );
    let location_site = format!(
        "server {{\n    listen 127.0.0.1:{location_port} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n{location}\n}}\n",
        leaf.certificate.display(),
        leaf.key.display()
    );
    let nginx_directory = work.path().join("nginx");
    let nginx = Nginx::start(
        &nginx_directory,
        &format!("{site}\n{location_site}"),
        site_port,
    );
    assert!(x2gobroker_e2e::wait_for_port(
        format!("127.0.0.1:{location_port}").parse().unwrap(),
        Duration::from_secs(10)
    ));

    let local: IpAddr = client_address.parse().unwrap();
    let ca_pem = std::fs::read(ca.certificate()).unwrap();
    let client = reqwest::Client::builder()
        .local_address(local)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let direct = x2go_client_session(
        &client,
        &format!("http://{}/plain/inifile/", broker.address),
    )
    .await;
    assert_eq!(direct[0].0, 200);
    assert!(direct[0].1.contains("[only-b]"), "{:?}", direct[0]);
    assert!(direct[1].1.contains("SERVER:ts01:22"), "{:?}", direct[1]);
    assert_eq!(direct[3].0, 401);
    let through_nginx = x2go_client_session(
        &client,
        &format!("https://127.0.0.1:{site_port}/plain/inifile/"),
    )
    .await;
    assert_eq!(through_nginx, direct, "nginx: {}", nginx.error_log());
    let prefixed_direct = x2go_client_session(
        &client,
        &format!("http://{}/x2gobroker/plain/inifile/", prefixed.address),
    )
    .await;
    assert_eq!(prefixed_direct, direct);
    let through_location = x2go_client_session(
        &client,
        &format!("https://localhost:{location_port}/x2gobroker/plain/inifile/"),
    )
    .await;
    assert_eq!(through_location, direct, "nginx: {}", nginx.error_log());
    // outside the prefix: 404 (nginx passes nothing else; the broker itself refuses it too)
    let outside = client
        .post(format!("http://{}/plain/inifile/", prefixed.address))
        .body(client_form("listsessions", None, "test", "sweet"))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status().as_u16(), 404);
    // the broker logged the client, not nginx
    for directory in [&direct_work, &prefixed_work] {
        let log = std::fs::read_to_string(directory.join("broker.log")).unwrap();
        assert!(
            !log.contains(&format!("POST /plain/inifile/ ({PROXY})"))
                && !log.contains(&format!("/x2gobroker/plain/inifile/ ({PROXY})")),
            "{log}"
        );
        assert!(log.contains(&format!("({client_address})")), "{log}");
    }
}

/// The template unit's ExecStart, EnvironmentFile and Environment lines for `instance`, its
/// paths moved under `root` (no systemd here).
struct TemplateUnit {
    exec_start: Vec<String>,
    environment_files: Vec<PathBuf>,
    environment: Vec<(String, String)>,
}

fn template_unit(instance: &str, root: &Path) -> TemplateUnit {
    let text = std::fs::read_to_string(workspace_root().join("deploy/x2gobroker-daemon@.service"))
        .unwrap();
    let moved = |value: &str| {
        let value = value.replace("%i", instance);
        if value == "/usr/bin/x2gobroker-daemon" {
            return binary("x2gobroker-daemon").display().to_string();
        }
        match value.strip_prefix('/') {
            Some(relative) if value.starts_with("/etc/") || value.starts_with("/var/") => {
                root.join(relative).display().to_string()
            }
            _ => value,
        }
    };
    let mut unit = TemplateUnit {
        exec_start: Vec::new(),
        environment_files: Vec::new(),
        environment: Vec::new(),
    };
    for line in text.lines() {
        if let Some(command) = line.strip_prefix("ExecStart=") {
            unit.exec_start = command.split_whitespace().map(moved).collect();
        } else if let Some(file) = line.strip_prefix("EnvironmentFile=") {
            unit.environment_files
                .push(PathBuf::from(moved(file.trim_start_matches('-'))));
        } else if let Some(assignment) = line.strip_prefix("Environment=") {
            let (name, value) = assignment.split_once('=').expect("NAME=value");
            unit.environment.push((name.to_string(), moved(value)));
        }
    }
    assert!(!unit.exec_start.is_empty(), "the template has an ExecStart");
    unit
}

/// An instance's config as deploy/INSTANCES.md shows it, under `root`.
fn instance_config(root: &Path, instance: &str, admin_port: u16) -> String {
    let var = root.join("var");
    format!(
        "[global]
require-password = true
default-auth-mech = testsuite
default-portscan-x2goservers = false
cookie-directory = {var}/lib/x2gobroker/{instance}/cookies

[broker_inifile]
session-profiles = {etc}/x2go/broker/x2gobroker-sessionprofiles-{instance}.conf
user-db = testsuite
group-db = testsuite

[farm]
state-directory = {var}/lib/x2gobroker/{instance}

[admin]
bind = 127.0.0.1:{admin_port}
state-directory = {var}/lib/x2gobroker/{instance}
audit-log = {var}/log/x2gobroker/audit-{instance}.log
",
        var = var.display(),
        etc = root.join("etc").display(),
    )
}

#[tokio::test]
async fn two_template_instances_answer_on_their_own_ports_with_their_own_profiles() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let mut running = Vec::new();
    for instance in ["staff", "students"] {
        let (port, admin_port) = (free_port(), free_port());
        let unit = template_unit(instance, root);
        for directory in ["etc/x2go/broker", "etc/default", "var/log/x2gobroker"] {
            std::fs::create_dir_all(root.join(directory)).unwrap();
        }
        // what systemd's StateDirectory= creates
        std::fs::create_dir_all(root.join(format!("var/lib/x2gobroker/{instance}/cookies")))
            .unwrap();
        std::fs::write(
            root.join(format!("etc/x2go/x2gobroker-{instance}.conf")),
            instance_config(root, instance, admin_port),
        )
        .unwrap();
        std::fs::write(
            root.join(format!(
                "etc/x2go/broker/x2gobroker-sessionprofiles-{instance}.conf"
            )),
            format!(
                "[desktop-{instance}]\nname = {instance}\nhost = ts-{instance}\ncommand = KDE\n"
            ),
        )
        .unwrap();
        std::fs::write(
            root.join(format!("etc/default/x2gobroker-daemon-{instance}")),
            format!("# the instance's client port\nDAEMON_BIND_ADDRESS=127.0.0.1:{port}\n"),
        )
        .unwrap();
        let mut command = Command::new(&unit.exec_start[0]);
        command
            .args(&unit.exec_start[1..])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("X2GOBROKER_DEFAULTS", "/nonexistent/defaults.conf")
            .env("RUST_LOG", "info");
        for (name, value) in &unit.environment {
            command.env(name, value);
        }
        for file in &unit.environment_files {
            let text = std::fs::read_to_string(file).unwrap();
            for line in text.lines().filter(|line| !line.starts_with('#')) {
                if let Some((name, value)) = line.split_once('=') {
                    command.env(name.trim(), value.trim());
                }
            }
        }
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = root.join(format!("{instance}.log"));
        let daemon = Daemon::start_logged(command, address, &log);
        assert!(x2gobroker_e2e::wait_for_port(
            format!("127.0.0.1:{admin_port}").parse().unwrap(),
            Duration::from_secs(10)
        ));
        running.push((instance, daemon, admin_port));
    }
    for (instance, daemon, admin_port) in &running {
        let (status, body) = list(daemon.address, Via::Direct { peer: "127.0.0.1" }, "sweet").await;
        assert_eq!(status, 200, "{instance}: {body}");
        assert!(
            body.contains(&format!("[desktop-{instance}]")),
            "{instance}: {body}"
        );
        let other = if *instance == "staff" {
            "students"
        } else {
            "staff"
        };
        assert!(
            !body.contains(&format!("[desktop-{other}]")),
            "{instance}: {body}"
        );
        // its own cookie directory, audit log and admin listener
        let cookies = root.join(format!("var/lib/x2gobroker/{instance}/cookies"));
        assert!(
            std::fs::read_dir(&cookies).unwrap().next().is_some(),
            "{instance}: a cookie in {}",
            cookies.display()
        );
        let audit =
            std::fs::read_to_string(root.join(format!("var/log/x2gobroker/audit-{instance}.log")))
                .unwrap_or_default();
        assert!(audit.contains("\"test\""), "{instance}: audit {audit:?}");
        let health = reqwest::get(format!("http://127.0.0.1:{admin_port}/healthz"))
            .await
            .unwrap();
        assert_eq!(
            health.status().as_u16(),
            200,
            "{instance}: its admin listener"
        );
    }
}

/// The DER bytes of the first certificate of a PEM file.
fn certificate_der(pem: &Path) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(pem)
        .output()
        .expect("openssl");
    assert!(output.status.success(), "openssl x509 {}", pem.display());
    output.stdout
}

/// The certificate the broker at `port` presents to a new connection.
async fn presented_certificate(port: u16, ca: &Path) -> Vec<u8> {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let response = client
        .get(format!("https://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("the peer's certificate")
        .to_vec()
}

#[tokio::test]
async fn tls_from_x2gobroker_conf_renewed_by_the_certbot_hook_and_the_environment_first() {
    assert!(
        x2gobroker_e2e::is_root(),
        "the hook installs files as root:x2gobroker"
    );
    x2gobroker_e2e::ensure_system_user("x2gobroker");
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let ca = TestCa::new(work, "test-ca");
    let first = ca.leaf("first", &["127.0.0.1"], Usage::Server);
    let renewed = ca.leaf("renewed", &["127.0.0.1"], Usage::Server);
    let from_environment = ca.leaf("environment", &["127.0.0.1"], Usage::Server);
    // certbot's live directory of the lineage, and where the hook puts the broker's copies
    let lineage = work.join("live");
    let tls_directory = work.join("tls");
    std::fs::create_dir_all(&lineage).unwrap();
    let issue = |leaf: &x2gobroker_e2e::certs::CertificateFiles| {
        std::fs::copy(&leaf.certificate, lineage.join("fullchain.pem")).unwrap();
        std::fs::copy(&leaf.key, lineage.join("privkey.pem")).unwrap();
    };
    // systemctl as the hook sees it: one running instance once the broker runs, reloaded
    // with SIGHUP
    let shim = work.join("bin");
    std::fs::create_dir_all(&shim).unwrap();
    let pid_file = work.join("broker.pid");
    let reloads = work.join("reloaded");
    std::fs::write(
        shim.join("systemctl"),
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  list-units) [ -f '{pid}' ] && echo 'x2gobroker-daemon@test.service loaded active running X2Go Session Broker' ;;\n  reload) echo \"$2\" >> '{reloads}'; kill -HUP \"$(cat '{pid}')\" ;;\nesac\n",
            reloads = reloads.display(),
            pid = pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        shim.join("systemctl"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let run_hook = || {
        let path = format!(
            "{}:{}",
            shim.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let output = Command::new(workspace_root().join("deploy/certbot/x2gobroker-deploy-hook"))
            .env("RENEWED_LINEAGE", &lineage)
            .env("X2GOBROKER_TLS_DIRECTORY", &tls_directory)
            .env("PATH", path)
            .output()
            .expect("the deploy hook");
        assert!(
            output.status.success(),
            "deploy hook: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    issue(&first);
    run_hook();

    let config = format!(
        "[global]\ntls-cert = {0}/fullchain.pem\ntls-key = {0}/privkey.pem\n[admin]\nbind =\nstate-directory = {1}\naudit-log = {1}/audit.log\n",
        tls_directory.display(),
        work.display()
    );
    std::fs::write(work.join("x2gobroker.conf"), &config).unwrap();
    let profiles = x2gobroker_e2e::golden_dir().join("configs/profiles_basic.ini");
    let start = |environment: &[(&str, &Path)]| {
        let port = free_port();
        let mut command = Command::new(binary("x2gobroker-daemon"));
        command
            .arg("-C")
            .arg(work.join("x2gobroker.conf"))
            .arg("-b")
            .arg(format!("127.0.0.1:{port}"))
            .env("X2GOBROKER_SESSIONPROFILES", &profiles)
            .env("X2GOBROKER_COOKIE_DIRECTORY", work.join("cookies"))
            .env("X2GOBROKER_LOGCONFIG", NO_LOGCONFIG)
            .env("X2GOBROKER_DEFAULTS", "/nonexistent/defaults.conf")
            .env_remove("X2GOBROKER_SSL_CERTFILE")
            .env_remove("X2GOBROKER_SSL_KEYFILE");
        for (name, value) in environment {
            command.env(name, value);
        }
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        Daemon::start_logged(command, address, &work.join(format!("broker-{port}.log")))
    };
    let broker = start(&[]);
    std::fs::write(&pid_file, broker.child.id().to_string()).unwrap();
    let port = broker.address.port();
    assert_eq!(
        presented_certificate(port, ca.certificate()).await,
        certificate_der(&first.certificate),
        "HTTPS with the certificate [global] tls-cert names"
    );

    // renewal: certbot runs the hook, the hook reloads the instance, new connections get it
    issue(&renewed);
    run_hook();
    assert!(std::fs::read_to_string(&reloads)
        .unwrap()
        .contains("x2gobroker-daemon@test.service"));
    let wanted = certificate_der(&renewed.certificate);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let presented = presented_certificate(port, ca.certificate()).await;
        if presented == wanted {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate is served within 5 s of the hook"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // the environment wins over the file
    let overridden = start(&[
        ("X2GOBROKER_SSL_CERTFILE", &from_environment.certificate),
        ("X2GOBROKER_SSL_KEYFILE", &from_environment.key),
    ]);
    assert_eq!(
        presented_certificate(overridden.address.port(), ca.certificate()).await,
        certificate_der(&from_environment.certificate)
    );
}

/// The shipped haproxy example with only its addresses, ports and CA file changed: the
/// frontend on `frontend`, the two brokers at `brokers`.
fn haproxy_config(frontend: u16, brokers: [u16; 2], ca: &Path) -> String {
    let example =
        std::fs::read_to_string(workspace_root().join("deploy/haproxy/x2gobroker.cfg")).unwrap();
    let replaced = example
        .replace("bind 0.0.0.0:443", &format!("bind 127.0.0.1:{frontend}"))
        .replace("192.0.2.11:443", &format!("127.0.0.1:{}", brokers[0]))
        .replace("192.0.2.12:443", &format!("127.0.0.1:{}", brokers[1]))
        .replace(
            "/etc/ssl/certs/x2gobroker-ca.pem",
            &ca.display().to_string(),
        )
        .replace("inter 2s", "inter 300ms");
    assert_ne!(replaced, example);
    replaced
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_in_tcp_mode_hands_on_the_client_address_and_routes_around_a_dead_broker() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new(work.path(), "test-ca");
    let leaf = ca.leaf("broker", &["127.0.0.1"], Usage::Server);
    // the client's own address behind haproxy, which one profile's ACL allows
    let config = format!(
        "[global]\nrequire-password = true\ndefault-auth-mech = testsuite\n\
         default-portscan-x2goservers = false\ntrusted-proxies = 127.0.0.1\n\
         tls-cert = {}\ntls-key = {}\n",
        leaf.certificate.display(),
        leaf.key.display()
    );
    let profiles = "[everyone]\nname = Everyone\nhost = ts01\n\n\
                    [only-five]\nname = Only 127.0.0.5\nhost = ts02\nacl-clients-allow = 127.0.0.5\n";
    let directories = [work.path().join("a"), work.path().join("b")];
    let mut brokers = Vec::new();
    for directory in &directories {
        std::fs::create_dir_all(directory).unwrap();
        brokers.push(Some(start_broker(directory, &config, profiles)));
    }
    let ports = [
        brokers[0].as_ref().unwrap().address.port(),
        brokers[1].as_ref().unwrap().address.port(),
    ];
    let frontend = free_port();
    let haproxy_file = work.path().join("haproxy.cfg");
    std::fs::write(
        &haproxy_file,
        haproxy_config(frontend, ports, ca.certificate()),
    )
    .unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&haproxy_file)
        .output()
        .expect("haproxy (tests/install-deps.sh installs it)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let mut haproxy = Command::new("haproxy");
    haproxy
        .arg("-db")
        .arg("-f")
        .arg(&haproxy_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _haproxy = Daemon::start(haproxy, format!("127.0.0.1:{frontend}").parse().unwrap());
    let root = reqwest::Certificate::from_pem(&std::fs::read(ca.certificate()).unwrap()).unwrap();
    let client_from = |address: &str| {
        reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .local_address(address.parse::<IpAddr>().unwrap())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let listing = |client: reqwest::Client| async move {
        let response = client
            .post(format!("https://127.0.0.1:{frontend}/plain/"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("task=listsessions&user=test&password=sweet")
            .send()
            .await;
        match response {
            Ok(response) => (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            ),
            Err(error) => (0, error.to_string()),
        }
    };
    // both brokers answer through haproxy and see the client's own address
    let started = tokio::time::Instant::now();
    loop {
        let (status, body) = listing(client_from("127.0.0.5")).await;
        if status == 200 {
            assert!(
                body.contains("[only-five]"),
                "the ACL saw 127.0.0.5: {body}"
            );
            // round robin: until both brokers' access logs name the client
            let answered: Vec<bool> = directories
                .iter()
                .map(|directory| {
                    std::fs::read_to_string(directory.join("broker.log"))
                        .unwrap_or_default()
                        .contains("127.0.0.5")
                })
                .collect();
            if answered.iter().all(|answered| *answered) {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "haproxy did not reach both brokers: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = listing(client_from("127.0.0.6")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("[only-five]"),
        "127.0.0.6 must not see it: {body}"
    );
    // one broker dies: its health check fails, and every request after that is answered
    drop(brokers[0].take());
    tokio::time::sleep(Duration::from_millis(300 * 2 + 500)).await;
    for round in 0..10 {
        let (status, body) = listing(client_from("127.0.0.5")).await;
        assert_eq!(status, 200, "round {round} after the kill: {body}");
        assert!(body.contains("[only-five]"), "{body}");
    }
}
