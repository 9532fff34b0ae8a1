//! The real X2Go Client (headless, Xvfb + xdotool) against our broker, our agents, the real session DB and sshd.

use super::farm::{rebuild_farm, Agents, SESSION_DB};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;
use x2gobroker_e2e::{broker_with_config, ensure_user, unlock_for_ssh, workspace_root, Sshd};

/// An X server for the client, killed on drop.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Xvfb {
        let number = (90..200)
            .find(|n| {
                !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                    && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
            })
            .expect("a free display");
        let display = format!(":{number}");
        let child = Command::new("Xvfb")
            .args([
                display.as_str(),
                "-screen",
                "0",
                "1280x1024x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb (tests/install-deps.sh installs xvfb)");
        let socket = format!("/tmp/.X11-unix/X{number}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&socket).exists() {
            assert!(Instant::now() < deadline, "Xvfb did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Xvfb { child, display }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One X2Go Client process with a fresh HOME and its `--debug` log.
struct Client {
    child: Child,
    log: PathBuf,
    display: String,
}

impl Client {
    fn start(
        xvfb: &Xvfb,
        directory: &Path,
        tag: &str,
        broker_url: &str,
        known_hosts: &str,
    ) -> Client {
        let home = directory.join(format!("home-{tag}"));
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(home.join(".ssh/known_hosts"), known_hosts).unwrap();
        let runtime = directory.join(format!("xdg-{tag}"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&runtime).unwrap();
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let log = directory.join(format!("{tag}.log"));
        let child = Command::new("x2goclient")
            .args(["--debug", "--bypass-cleanup-helper", "--broker-noauth"])
            .arg(format!("--broker-url={broker_url}"))
            .env("DISPLAY", &xvfb.display)
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &runtime)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("x2goclient (tests/install-deps.sh installs it)");
        Client {
            child,
            log,
            display: xvfb.display.clone(),
        }
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits until the log contains `needle`.
    fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn xdotool(&self, arguments: &[&str]) -> String {
        let output = Command::new("xdotool")
            .args(arguments)
            .env("DISPLAY", &self.display)
            .output()
            .expect("xdotool");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn screenshot(&self, path: &Path) {
        let _ = Command::new("import")
            .args(["-window", "root"])
            .arg(path)
            .env("DISPLAY", &self.display)
            .status();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn artifacts() -> PathBuf {
    let directory = workspace_root().join("target/x2goclient");
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

/// X2Go Client connects to the server name of SESSION_INFO (field 4) when it resumes, so the
/// fixture's server names must resolve: x2go-nodeN -> 127.0.0.1N in /etc/hosts (idempotent).
fn ensure_node_names_resolve() {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut missing = String::new();
    for node in 1..=5 {
        let name = format!("x2go-node{node}");
        if !hosts
            .lines()
            .any(|line| line.split_whitespace().skip(1).any(|word| word == name))
        {
            missing.push_str(&format!("127.0.0.{} {name}\n", 10 + node));
        }
    }
    if !missing.is_empty() {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open("/etc/hosts")
            .unwrap();
        file.write_all(missing.as_bytes()).unwrap();
    }
}

fn authorized_keys(user: &str) -> String {
    std::fs::read_to_string(format!("/home/{user}/.x2go/authorized_keys")).unwrap_or_default()
}

#[test]
fn x2go_client_resumes_the_suspended_session_through_our_broker() {
    let _db = SESSION_DB.blocking_lock();
    let started = Instant::now();
    rebuild_farm();
    ensure_node_names_resolve();
    let suspended = super::farm::database_sessions()
        .into_iter()
        .find(|(_, server, status, user)| {
            user == "x2goalice" && server == "x2go-node2" && status == "S"
        })
        .map(|(id, ..)| id)
        .expect("alice's suspended session");
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for user in ["x2goalice", "x2gocarol"] {
        ensure_user(user, None);
        unlock_for_ssh(user);
        let _ = std::fs::remove_file(format!("/home/{user}/.x2go/authorized_keys"));
    }
    let agents = Agents::start(work.path());
    let addresses: Vec<String> = (11..=15).map(|n| format!("127.0.0.{n}")).collect();
    let address_refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let sshd = Sshd::start_on(work.path(), &["x2goalice", "x2gocarol"], &address_refs);
    let hosts: Vec<String> = (1..=5)
        .map(|n| format!("x2go-node{n} (127.0.0.{}:{})", 10 + n, sshd.port))
        .collect();
    let profiles = format!(
        "[DEFAULT]\nuser = BROKER_USER\n\n[farm-desktop]\nname = Farm desktop\nhost = {}\ncommand = MATE\nbroker-session-autologin = true\n\n\
         [farm-terminal]\nname = Farm terminal\nhost = {}\ncommand = TERMINAL\nbroker-session-autologin = true\n",
        hosts.join(", "),
        hosts.join(", ")
    );
    let profiles_file = work.path().join("profiles.ini");
    std::fs::write(&profiles_file, profiles).unwrap();
    let config = format!(
        "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\ndefault-portscan-x2goservers = false\n\n\
         [farm]\nagent-port = {}\nagent-token-file = {}\nheartbeat-ms = 500\ncall-timeout-ms = 1000\nautologin-key-lifetime = 10\n",
        agents.port,
        agents.token_file.display()
    );
    let (_broker_directory, broker) = broker_with_config(&config, Some(&profiles_file), &[]);
    let broker_port = broker.address.port();
    let xvfb = Xvfb::start();
    let out = artifacts();

    // 1. the listing: exactly the user's profiles, in the client's own words
    // the client trusts the servers' host key, as a managed desktop would
    let key = sshd
        .host_public_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let known_hosts: String = (1..=5)
        .map(|n| {
            format!(
                "[x2go-node{n}]:{} {key}\n[127.0.0.{}]:{} {key}\n",
                sshd.port,
                10 + n,
                sshd.port
            )
        })
        .collect();
    let client = Client::start(
        &xvfb,
        work.path(),
        "alice",
        &format!("http://x2goalice@127.0.0.1:{broker_port}/plain/inifile/"),
        &known_hosts,
    );
    assert!(
        client.wait_log(
            "Reading 2 sessions from config file",
            Duration::from_secs(30)
        ),
        "{}",
        client.log_text()
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !client
            .xdotool(&["search", "--name", "^X2Go Client$"])
            .is_empty(),
        "the X2Go Client window"
    );
    assert!(
        client.xdotool(&["search", "--name", "^Error$"]).is_empty(),
        "no Error dialog"
    );
    client.screenshot(&out.join("list.png"));

    // 2. select the profile: SERVER, the one-time key and SESSION_INFO; key login; resume
    let window = client.xdotool(&["search", "--name", "^X2Go Client$"]);
    let window = window.lines().next().unwrap_or("").to_string();
    client.xdotool(&["mousemove", "--window", &window, "200", "300"]);
    client.xdotool(&["windowfocus", "--sync", &window]);
    client.xdotool(&["type", "--delay", "30", "Farm desktop"]);
    client.xdotool(&["key", "Return"]);
    let selected = client.wait_log(
        "task=selectsession&sid=farm-desktop&",
        Duration::from_secs(15),
    );
    // the client shows the suspended session from SESSION_INFO in its "Select session" dialog
    let decoded = client.wait_log("Decoding session string:", Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(1500));
    client.screenshot(&out.join("select.png"));
    // "Resume" in the dialog (the main window sits at 20,20 without a window manager)
    client.xdotool(&["mousemove", "304", "435", "click", "1"]);
    // first contact with the server: the client asks whether to trust its host key: "Yes"
    if client.wait_log("cserverAuth", Duration::from_secs(10)) {
        std::thread::sleep(Duration::from_millis(1500));
        client.screenshot(&out.join("hostkey.png"));
        client.xdotool(&["mousemove", "630", "310", "click", "1"]);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !sshd.log_text().contains("Accepted publickey for x2goalice")
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    client.screenshot(&out.join("resume.png"));
    let log = client.log_text();
    std::fs::write(out.join("alice-client.log"), &log).unwrap();
    std::fs::write(out.join("sshd.log"), sshd.log_text()).unwrap();
    assert!(selected, "no selectsession request");
    assert!(decoded, "SESSION_INFO was not decoded");

    assert!(
        log.contains("-----BEGIN RSA PRIVATE KEY-----"),
        "the one-time key reached the client"
    );
    assert!(
        log.contains("SESSION_INFO:"),
        "SESSION_INFO reached the client"
    );
    let sshd_log = sshd.log_text();
    assert!(
        sshd_log.contains("Accepted publickey for x2goalice")
            && sshd_log.contains("found at /home/x2goalice/.x2go/authorized_keys"),
        "key login without a password: {sshd_log}"
    );
    let resume = format!(
        "Executing remote command via SshProcess object 0: \"x2goresume-session {suspended} "
    );
    assert!(
        log.contains(&resume),
        "the client asked the server to resume {suspended}"
    );
    // on the server, x2goresume-session really ran for that session: it left state S
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status_after = String::from("S");
    while Instant::now() < deadline {
        status_after = super::farm::database_sessions()
            .into_iter()
            .find(|(id, ..)| *id == suspended)
            .map(|(_, _, status, _)| status)
            .unwrap_or_else(|| "gone".to_string());
        if status_after != "S" {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_ne!(
        status_after, "S",
        "the server never acted on the resume of {suspended}"
    );
    println!(
        "x2goclient: server-side status of {suspended} after the resume attempt: {status_after}"
    );
    println!(
        "x2goclient: key login and `x2goresume-session {suspended}` seen after {:?}",
        started.elapsed()
    );
    drop(client);

    // 3. the one-time key is gone after its lifetime (10 s after the selection)
    let installed_key = authorized_keys("x2goalice");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && authorized_keys("x2goalice").contains("ssh-rsa ") {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        !authorized_keys("x2goalice").contains("ssh-rsa "),
        "the one-time key was not removed: {installed_key}"
    );

    // 4. a user without a session gets a new session on a least loaded server: node4 and node5
    //    hold no session (node4 wins the tie unless its agent's stream was late under load and it
    //    is still half-open); replies use LF line ends only
    let reply = reqwest::blocking_post_plain(
        broker_port,
        "task=selectsession&sid=farm-terminal&user=x2gocarol&login=x2gocarol",
    );
    assert!(
        reply.contains(&format!("SERVER:127.0.0.14:{}\n", sshd.port))
            || reply.contains(&format!("SERVER:127.0.0.15:{}\n", sshd.port)),
        "not an idle server: {reply}"
    );
    assert!(!reply.contains("SESSION_INFO"), "{reply}");
    let listing = reqwest::blocking_post_plain(broker_port, "task=listsessions&user=x2goalice");
    assert!(
        !listing.contains('\r') && !reply.contains('\r'),
        "CRLF in a reply"
    );
    drop(broker);
    drop(agents);
    rebuild_farm();
    println!("x2goclient: whole test {:?}", started.elapsed());
}

mod reqwest {
    //! A tiny blocking HTTP client for plain requests (no runtime in this test).
    pub fn blocking_post_plain(port: u16, body: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "POST /plain/inifile/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    }
}
