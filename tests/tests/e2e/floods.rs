//! Floods of hostile clients against the real broker: slow bodies, slow heads, more connections than the cap, big bodies, too many parameters — others keep being answered within 1 s and the hostile ones are answered or closed within their deadline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tokio::time::Instant;
use x2gobroker_e2e::{broker_with_config, golden_dir};

const HEADER_TIMEOUT: Duration = Duration::from_millis(2000);
const BODY_TIMEOUT: Duration = Duration::from_millis(2000);
const MAX_CONNECTIONS: usize = 300;
/// Scheduling and loopback slack on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(1500);
/// What a normal request may take while a flood runs.
const NORMAL_BOUND: Duration = Duration::from_secs(1);

fn config() -> String {
    format!(
        "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\n\
         default-portscan-x2goservers = false\n\n[http]\nheader-timeout-ms = {}\n\
         body-timeout-ms = {}\nmax-connections = {MAX_CONNECTIONS}\n",
        HEADER_TIMEOUT.as_millis(),
        BODY_TIMEOUT.as_millis()
    )
}

/// Raises this test's own open-file limit (it holds more than a thousand sockets).
fn room_for_sockets() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// The status of `request`'s answer and how long it took (`None`: no answer).
fn exchange(port: u16, request: &[u8]) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let status = (|| {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        stream.write_all(request).ok()?;
        read_status(&mut stream)
    })();
    (status, started.elapsed())
}

fn read_status(stream: &mut TcpStream) -> Option<u16> {
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                response.extend_from_slice(&buffer[..n]);
                if response.windows(4).any(|window| window == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&response);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn form_post(body: &str) -> Vec<u8> {
    format!(
        "POST /plain/inifile/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A normal listing, answered 200 within [`NORMAL_BOUND`]; its time.
fn normal_listing(port: u16, during: &str) -> Duration {
    let (status, took) = exchange(port, &form_post("task=listsessions&user=maja"));
    assert_eq!(status, Some(200), "a normal listing during {during}");
    assert!(
        took < NORMAL_BOUND,
        "a normal listing during {during} took {took:?}"
    );
    took
}

/// Waits until every stream is answered or closed; the status each got (`None`: closed) and
/// when the last one ended, from `opened`.
fn ends_of(
    streams: Vec<TcpStream>,
    opened: Instant,
    bound: Duration,
) -> (Vec<Option<u16>>, Duration) {
    let mut statuses = Vec::new();
    for mut stream in streams {
        let left = bound
            .saturating_sub(opened.elapsed())
            .max(Duration::from_millis(10));
        stream.set_read_timeout(Some(left)).unwrap();
        let status = read_status(&mut stream);
        // a read that timed out is a stream still open: tell it apart from a close
        let mut probe = [0u8; 1];
        let still_open = status.is_none()
            && matches!(stream.read(&mut probe), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock || error.kind() == std::io::ErrorKind::TimedOut);
        assert!(
            !still_open,
            "a hostile connection is still open {:?} after it was opened",
            opened.elapsed()
        );
        statuses.push(status);
    }
    (statuses, opened.elapsed())
}

/// `count` connections that each sent `start` and then nothing.
fn hostile_clients(port: u16, count: usize, start: &[u8]) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.write_all(start).unwrap();
            stream
        })
        .collect()
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn floods_do_not_stall_the_broker_and_hostile_clients_are_closed_in_time() {
    room_for_sockets();
    let profiles = golden_dir().join("configs/profiles_basic.ini");
    let (_work, mut broker) = broker_with_config(&config(), Some(&profiles), &[]);
    let port = broker.address.port();
    let pid = broker.child.id();
    let before = normal_listing(port, "nothing");
    println!("floods: a normal listing alone {before:?}");

    // 1. slow bodies: complete heads announcing a body that never comes
    let opened = Instant::now();
    let slow_bodies = hostile_clients(
        port,
        200,
        b"POST /plain/inifile/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\n\r\ntask=list",
    );
    let during = normal_listing(port, "200 slow bodies");
    let (statuses, ended) = ends_of(slow_bodies, opened, BODY_TIMEOUT + MARGIN);
    let timed_out = statuses
        .iter()
        .filter(|status| **status == Some(408))
        .count();
    println!(
        "floods: 200 slow bodies: listing {during:?}, all ended after {ended:?} ({timed_out} answered 408, the rest closed)"
    );
    assert!(
        ended >= BODY_TIMEOUT.saturating_sub(Duration::from_millis(100)),
        "{ended:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|status| matches!(status, None | Some(408))),
        "{statuses:?}"
    );

    // 2. slow heads: a request line and one header, then nothing
    let opened = Instant::now();
    let slow_heads = hostile_clients(port, 200, b"POST /plain/inifile/ HTTP/1.1\r\nHost: x\r\n");
    let during = normal_listing(port, "200 slow heads");
    let (_, ended) = ends_of(slow_heads, opened, HEADER_TIMEOUT + MARGIN);
    println!("floods: 200 slow heads: listing {during:?}, all closed after {ended:?}");

    // 3. more connections than the cap, all idle: the oldest idle ones make room
    let connecting = Instant::now();
    let flood = hostile_clients(port, MAX_CONNECTIONS * 4, b"");
    // the last ones may wait in the listen backlog: deadlines count from the last connect
    let opened = Instant::now();
    println!(
        "floods: {} connections made in {:?}",
        flood.len(),
        opened.duration_since(connecting)
    );
    std::thread::sleep(Duration::from_millis(200));
    let during = normal_listing(port, "a connection flood of 4x the cap");
    let descriptors = open_descriptors(pid);
    println!(
        "floods: {} idle connections (cap {MAX_CONNECTIONS}): listing {during:?}, broker holds {descriptors} descriptors",
        flood.len()
    );
    assert!(
        descriptors < MAX_CONNECTIONS + 64,
        "the broker holds {descriptors} descriptors with a cap of {MAX_CONNECTIONS}"
    );
    let (_, ended) = ends_of(flood, opened, HEADER_TIMEOUT + MARGIN);
    println!("floods: the connection flood ended after {ended:?}");

    // 4. twenty 1 MiB bodies of `a&a&…` at once: answered, others unaffected, memory bounded
    let big = "a&".repeat(512 * 1024);
    let senders: Vec<_> = (0..20)
        .map(|_| {
            let request = form_post(&big);
            std::thread::spawn(move || exchange(port, &request))
        })
        .collect();
    let during = normal_listing(port, "twenty 1 MiB bodies");
    let mut slowest = Duration::ZERO;
    for sender in senders {
        let (status, took) = sender.join().unwrap();
        assert!(status.is_some(), "a big body was not answered");
        slowest = slowest.max(took);
    }
    let peak = peak_rss_kib(pid);
    println!(
        "floods: twenty 1 MiB bodies: listing {during:?}, slowest big body answered in {slowest:?}, broker peak RSS {} MiB",
        peak / 1024
    );
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB");

    // 5. too many parameters the broker reads: 400; a larger body than allowed: 413
    let many = "user=x&".repeat(65);
    assert_eq!(exchange(port, &form_post(&many)).0, Some(400));
    let huge = "a".repeat(1024 * 1024 + 1);
    assert_eq!(exchange(port, &form_post(&huge)).0, Some(413));

    normal_listing(port, "after the floods");
    assert!(broker.is_running(), "the broker survived the floods");
}
