//! The unix-socket server: one task per connection, one blocking thread per PAM check, replies in
//! request order, bounded connections and checks, drained on shutdown.
//!
//! Before PAM is asked: the peer must be root, the socket's owner or of its group
//! ([`crate::peer`]; others are disconnected unread), the PAM service allowed, user and password
//! not empty, the user neither root nor a system account ([`crate::accounts`]), and the user not
//! throttled after failed logins ([`crate::throttle`]). Each of these refusals answers `fail`
//! at once, without PAM's failure delay.

use crate::accounts::{AccountPolicy, AccountVerdict};
use crate::peer::{Peer, PeerPolicy};
use crate::protocol::{self, Line, LineBuffer};
use crate::throttle::{LoginThrottle, ThrottleConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Decides one request: `(user, password, service) -> granted`. Blocking; the real one is
/// [`crate::pam_check::check`], unit tests pass a stand-in.
pub type Checker = fn(&str, &str, &str) -> bool;

/// What the server asks the system, all blocking (run on blocking threads): PAM, the passwd
/// database, the group database. The real ones are [`System::real`]; unit tests pass stand-ins.
#[derive(Clone, Copy)]
pub struct System {
    pub check_password: Checker,
    /// The uid of a login user (`None`: unknown).
    pub uid_of: fn(&str) -> Option<u32>,
    /// Whether the user with this uid is a member of this group.
    pub user_is_member: fn(u32, u32) -> bool,
}

impl System {
    /// PAM, NSS.
    pub fn real() -> System {
        System {
            check_password: crate::pam_check::check,
            uid_of: crate::accounts::uid_of,
            user_is_member: crate::peer::user_is_member,
        }
    }
}

/// The server's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// PAM conversations running at once (each one holds a blocking thread).
    pub max_concurrent_checks: usize,
    /// How long a started line may wait for its end before the connection is closed.
    pub partial_line_timeout: Duration,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
    /// How long in-flight checks may take after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            max_concurrent_checks: 64,
            partial_line_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What the server accepts and how much of it at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub limits: Limits,
    /// PAM services a request may name (an empty name means [`protocol::DEFAULT_SERVICE`]).
    /// Others are answered `fail` without asking PAM: PAM would fall back to `/etc/pam.d/other`
    /// for a missing file, and another service's stack may be weaker (e.g. `pam_rootok`, which
    /// says yes to any password when its caller is root, as this service is).
    pub allowed_services: Vec<String>,
    /// Who may connect.
    pub peers: PeerPolicy,
    /// Which login users PAM is asked about.
    pub accounts: AccountPolicy,
    /// Failed logins per user.
    pub throttle: ThrottleConfig,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            limits: Limits::default(),
            allowed_services: vec![protocol::DEFAULT_SERVICE.to_string()],
            peers: PeerPolicy {
                owner_uid: 0,
                group_gid: 0,
            },
            accounts: AccountPolicy::default(),
            throttle: ThrottleConfig::default(),
        }
    }
}

/// What every connection shares.
struct Shared {
    system: System,
    check_permits: Semaphore,
    allowed_services: Vec<String>,
    peers: PeerPolicy,
    accounts: AccountPolicy,
    throttle: Mutex<LoginThrottle>,
}

/// Serves `listener` until `shutdown` resolves: then stops accepting, lets each connection finish
/// the request it is answering (up to `limits.shutdown_grace`) and returns.
pub async fn serve(
    listener: UnixListener,
    system: System,
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = options.limits;
    let shared = Arc::new(Shared {
        system,
        check_permits: Semaphore::new(limits.max_concurrent_checks),
        allowed_services: options.allowed_services,
        peers: options.peers,
        accounts: options.accounts,
        throttle: Mutex::new(LoginThrottle::new(options.throttle)),
    });
    let connection_permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_sender, stop_receiver) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connection_permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let connection = Connection {
                    stream,
                    shared: shared.clone(),
                    limits,
                    stop: stop_receiver.clone(),
                };
                connections.spawn(async move {
                    let _permit = permit;
                    connection.serve().await;
                });
            }
            Err(error) => {
                // EMFILE and friends: do not spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let _ = stop_sender.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            n_connections = connections.len(),
            "shutdown grace period over: closing connections"
        );
        connections.shutdown().await;
    }
}

struct Connection {
    stream: UnixStream,
    shared: Arc<Shared>,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

/// Whether the peer of `stream` may ask (see [`crate::peer`]); logs a refusal.
async fn peer_allowed(stream: &UnixStream, shared: &Shared) -> bool {
    let peer = match crate::peer::peer_of(stream) {
        Ok(peer) => peer,
        Err(error) => {
            tracing::warn!(%error, "refused a connection: no peer credentials");
            return false;
        }
    };
    if shared.peers.allowed_by_ids(&peer) {
        return true;
    }
    let user_is_member = shared.system.user_is_member;
    let Peer { uid, gid, pid } = peer;
    let group_gid = shared.peers.group_gid;
    let member = tokio::task::spawn_blocking(move || user_is_member(uid, group_gid))
        .await
        .unwrap_or(false);
    if !member {
        tracing::warn!(
            peer_uid = uid,
            peer_gid = gid,
            peer_pid = pid,
            allowed_gid = group_gid,
            "refused a connection: the peer is neither root, the socket's owner nor of its group"
        );
    }
    member
}

impl Connection {
    async fn serve(mut self) {
        if !peer_allowed(&self.stream, &self.shared).await {
            return;
        }
        let mut buffer = LineBuffer::default();
        let mut chunk = zeroize::Zeroizing::new([0u8; 1024]);
        loop {
            let timeout = if buffer.has_partial_line() {
                self.limits.partial_line_timeout
            } else {
                self.limits.idle_timeout
            };
            let read = tokio::select! {
                read = tokio::time::timeout(timeout, self.stream.read(&mut chunk[..])) => read,
                _ = self.stop.wait_for(|stop| *stop) => return,
            };
            let n_read = match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(n_read)) => n_read,
            };
            let pushed = buffer.push(&chunk[..n_read]);
            zeroize::Zeroize::zeroize(&mut chunk[..n_read]);
            let lines = match pushed {
                Ok(lines) => lines,
                Err(error) => {
                    tracing::warn!(%error, "closing a connection");
                    return;
                }
            };
            for line in lines {
                let reply: &[u8] = match line {
                    Line::Request(request) => answer(request, &self.shared).await,
                    Line::Malformed => {
                        // B17: the reference's handler crashes here; we say so and close.
                        tracing::warn!("malformed request (not user\\rpassword\\rservice): bad");
                        let _ = self.stream.write_all(b"bad\n").await;
                        return;
                    }
                };
                if self.stream.write_all(reply).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn answer(request: protocol::Request, shared: &Shared) -> &'static [u8] {
    if !protocol::is_valid_service(&request.service)
        || !shared.allowed_services.contains(&request.service)
    {
        tracing::warn!(user = ?request.user, service = ?request.service,
            "refused: PAM service not allowed (see --allow-service)");
        return b"fail\n";
    }
    if request.user.is_empty() || request.password.is_empty() {
        // pam_unix's nullok would accept an account without a password.
        tracing::info!(user = ?request.user, "refused: empty user name or password");
        return b"fail\n";
    }
    let uid_of = shared.system.uid_of;
    let looked_up = request.user.clone();
    let uid = tokio::task::spawn_blocking(move || uid_of(&looked_up))
        .await
        .unwrap_or(None);
    match shared.accounts.verdict(&request.user, uid) {
        AccountVerdict::Check => {}
        AccountVerdict::Root => {
            tracing::warn!(user = ?request.user, "refused: root's password is never checked");
            return b"fail\n";
        }
        AccountVerdict::SystemAccount { uid } => {
            tracing::warn!(user = ?request.user, uid,
                "refused: a system account (see --allow-system-user)");
            return b"fail\n";
        }
    }
    let Ok(_permit) = shared.check_permits.acquire().await else {
        return b"fail\n";
    };
    let admitted = shared
        .throttle
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .begin_attempt(&request.user, tokio::time::Instant::now());
    if let Err(throttled) = admitted {
        tracing::warn!(user = ?request.user, ?throttled,
            "refused: too many failed logins for this user");
        return b"fail\n";
    }
    let user = request.user.clone();
    let service = request.service.clone();
    let check_password = shared.system.check_password;
    let granted = tokio::task::spawn_blocking(move || {
        check_password(&request.user, &request.password, &request.service)
    })
    .await
    .unwrap_or(false);
    {
        let mut throttle = shared
            .throttle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if granted {
            throttle.record_success(&user);
        } else {
            throttle.record_failure(&user, tokio::time::Instant::now());
        }
    }
    tracing::info!(user = ?user, service = %service, granted, "authentication");
    if granted {
        b"ok\n"
    } else {
        b"fail\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// `right` is the password of every user; a wrong one costs 300 ms, like PAM's failure delay.
    fn stand_in(_user: &str, password: &str, _service: &str) -> bool {
        if password == "right" {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
        false
    }

    struct Running {
        _directory: tempfile::TempDir,
        path: std::path::PathBuf,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        server: tokio::task::JoinHandle<()>,
    }

    /// Every user is a regular one (uid 1000), except `root`; nobody is a member of anything.
    fn stand_in_uid(user: &str) -> Option<u32> {
        Some(if user == "root" { 0 } else { 1000 })
    }

    fn no_member(_uid: u32, _gid: u32) -> bool {
        false
    }

    const STAND_IN: System = System {
        check_password: stand_in,
        uid_of: stand_in_uid,
        user_is_member: no_member,
    };

    fn start(limits: Limits) -> Running {
        start_with(Options {
            limits,
            allowed_services: vec!["x2gobroker".to_string(), "s".to_string()],
            ..Options::default()
        })
    }

    fn start_with(options: Options) -> Running {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("auth.socket");
        let listener = UnixListener::bind(&path).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, STAND_IN, options, async {
            let _ = stopped.await;
        }));
        Running {
            _directory: directory,
            path,
            stop: Some(stop),
            server,
        }
    }

    /// Writes `writes`, then reads until the server closes or `quiet` passes without data.
    async fn exchange(
        path: &std::path::Path,
        writes: &[&[u8]],
        quiet: Duration,
    ) -> (Vec<u8>, bool) {
        let mut stream = UnixStream::connect(path).await.unwrap();
        for write in writes {
            stream.write_all(write).await.unwrap();
        }
        let mut reply = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            match tokio::time::timeout(quiet, stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (reply, true),
                Ok(Ok(n_read)) => reply.extend_from_slice(&chunk[..n_read]),
                Err(_) => return (reply, false),
            }
        }
    }

    /// Writes, the expected reply, whether the server closes.
    type Case = (&'static [&'static [u8]], &'static [u8], bool);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replies_in_request_order_and_bad_closes() {
        let running = start(Limits::default());
        let quiet = Duration::from_millis(600);
        let table: [Case; 6] = [
            (&[b"u\rright\rx2gobroker\n"], b"ok\n", false),
            (&[b"u\rwrong\r\n"], b"fail\n", false),
            (&[b"u\rwrong\rs\nu\rright\rs\n"], b"fail\nok\n", false),
            (&[b"u\rri", b"ght\rs\n"], b"ok\n", false),
            (&[b"one-field\nu\rright\rs\n"], b"bad\n", true),
            (
                &[
                    b"u\rright\r../../etc/shadow\n",
                    b"\rright\rs\nu\rright\rsu\n",
                ],
                b"fail\nfail\nfail\n",
                false,
            ),
        ];
        for (writes, expected, closed) in table {
            let (reply, was_closed) = exchange(&running.path, writes, quiet).await;
            assert_eq!(
                String::from_utf8_lossy(&reply),
                String::from_utf8_lossy(expected),
                "{writes:?}"
            );
            assert_eq!(was_closed, closed, "{writes:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partial_and_overlong_lines_close_the_connection() {
        let limits = Limits {
            partial_line_timeout: Duration::from_millis(100),
            ..Limits::default()
        };
        let running = start(limits);
        let started = Instant::now();
        let (reply, closed) =
            exchange(&running.path, &[b"u\rright\rs"], Duration::from_secs(3)).await;
        assert!(reply.is_empty() && closed);
        assert!(started.elapsed() < Duration::from_secs(2));
        let overlong = vec![b'x'; protocol::MAX_LINE_BYTES + 2048];
        let mut stream = UnixStream::connect(&running.path).await.unwrap();
        let _ = stream.write_all(&overlong).await;
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed: {read:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_delay_does_not_hold_up_other_connections() {
        let running = start(Limits::default());
        let mut failures = JoinSet::new();
        // other users' failures (one user's would be throttled after 10)
        for index in 0..20 {
            let path = running.path.clone();
            let request = format!("wrong{index}\rwrong\rs\n").into_bytes();
            failures.spawn(async move {
                exchange(&path, &[request.as_slice()], Duration::from_secs(2)).await
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        let (reply, _) = exchange(
            &running.path,
            &[b"u\rright\rs\n"],
            Duration::from_millis(50),
        )
        .await;
        let elapsed = started.elapsed();
        assert_eq!(reply, b"ok\n");
        assert!(elapsed < Duration::from_millis(250), "{elapsed:?}");
        while let Some(result) = failures.join_next().await {
            assert!(result.unwrap().0.starts_with(b"fail\n"));
        }
    }

    /// One request on its own connection: the reply line and how long it took.
    async fn ask(path: &std::path::Path, request: &[u8]) -> (Vec<u8>, Duration) {
        let started = Instant::now();
        let mut stream = UnixStream::connect(path).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\n") {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => break,
                Ok(_) => reply.push(byte[0]),
            }
        }
        (reply, started.elapsed())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn root_and_throttled_users_are_refused_without_the_checker() {
        let running = start_with(Options {
            allowed_services: vec!["s".to_string()],
            throttle: ThrottleConfig {
                max_failures: 2,
                ..ThrottleConfig::default()
            },
            ..Options::default()
        });
        let (reply, elapsed) = ask(&running.path, b"root\rright\rs\n").await;
        assert_eq!(
            reply, b"fail\n",
            "root is refused even with the right password"
        );
        assert!(elapsed < Duration::from_millis(200), "{elapsed:?}");
        for _ in 0..2 {
            let (reply, elapsed) = ask(&running.path, b"u\rwrong\rs\n").await;
            assert_eq!(reply, b"fail\n");
            assert!(elapsed >= Duration::from_millis(300), "the checker ran");
        }
        let (reply, elapsed) = ask(&running.path, b"u\rright\rs\n").await;
        assert_eq!(reply, b"fail\n", "throttled: the right password is refused");
        assert!(elapsed < Duration::from_millis(200), "{elapsed:?}");
        let (reply, _) = ask(&running.path, b"other\rright\rs\n").await;
        assert_eq!(reply, b"ok\n", "another user is not throttled");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_finishes_the_request_in_flight() {
        let mut running = start(Limits::default());
        let mut stream = UnixStream::connect(&running.path).await.unwrap();
        stream.write_all(b"u\rwrong\rs\n").await.unwrap();
        let idle = UnixStream::connect(&running.path).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        running.stop.take().unwrap().send(()).unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"fail\n");
        tokio::time::timeout(Duration::from_secs(2), &mut running.server)
            .await
            .expect("the server stops although a connection is idle")
            .unwrap();
        drop(idle);
        assert!(UnixStream::connect(&running.path).await.is_err());
    }
}
