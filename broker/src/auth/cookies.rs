//! The cookie flow (§6.2, §6.3): pre-shared cookie, one-shot dynamic cookies as files `<user>_<uuid>`, expiry.
//!
//! The checks read no clock: the caller passes `now` (wall-clock time, since cookie files store
//! the login's UNIX time like the reference's), as `auth/throttle.rs` takes its instants.

use std::future::Future;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// The placeholder the shipped `x2gobroker.authid` contains.
pub const COOKIE_PLACEHOLDER: &str = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

/// The `[global]` settings that drive `check_access`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    pub require_password: bool,
    pub require_cookie: bool,
    pub use_static_cookie: bool,
    pub auth_timeout_seconds: i64,
    pub verify_ip: bool,
    /// The pre-shared cookie M (a fresh random one when none is configured).
    pub preshared_cookie: String,
    /// Live dynamic cookies one user may hold (`[global] max-cookies-per-user`): a new login
    /// beyond it removes the user's least recently used cookie files first.
    pub max_cookies_per_user: usize,
}

/// The pre-shared cookie (§6.3): the cookie file's first real line, else `my-cookie`, else random.
pub fn preshared_cookie(cookie_file: &Path, my_cookie: Option<&str>) -> String {
    let from_file = std::fs::metadata(cookie_file)
        .ok()
        .filter(|metadata| metadata.is_file())
        .and_then(|_| std::fs::read_to_string(cookie_file).ok())
        .and_then(|text| {
            text.lines()
                .map(str::trim_end)
                .find(|line| !line.is_empty() && !line.starts_with('#'))
                .map(|line| line.split(' ').next().unwrap_or("").to_string())
        });
    if let Some(cookie) = from_file.filter(|cookie| cookie != COOKIE_PLACEHOLDER) {
        return cookie;
    }
    if let Some(cookie) =
        my_cookie.filter(|cookie| !cookie.is_empty() && *cookie != COOKIE_PLACEHOLDER)
    {
        return cookie.to_string();
    }
    uuid::Uuid::new_v4().to_string()
}

/// Whether `cookie` has the shape of the cookies we issue (a lower-case hyphenated UUID).
pub(crate) fn is_issued_cookie_shape(cookie: &str) -> bool {
    cookie.len() == 36
        && cookie.char_indices().all(|(position, c)| match position {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The file-name form of a user name: safe characters as they are (so the layout matches the
/// reference's), everything else percent-encoded, so no name can leave the directory (fix S6).
fn file_safe_user(user: &str) -> String {
    let mut safe = String::with_capacity(user.len());
    for (position, byte) in user.bytes().enumerate() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'@' | b'+')
            || (byte == b'.' && position > 0)
            || (byte >= 0x80);
        if keep && byte < 0x80 {
            safe.push(byte as char);
        } else {
            safe.push_str(&format!("%{byte:02X}"));
        }
    }
    safe
}

/// `time` as UNIX seconds, the form cookie files store (0 for times before 1970).
pub(crate) fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or(0.0)
}

/// A cookie file that could not be stored: the login it belongs to fails (the reference's
/// `open()` raised, a 500), instead of handing out an AUTHID the next request would refuse.
#[derive(Debug, thiserror::Error)]
#[error("cannot store the cookie file {}: {source}", path.display())]
pub struct CookieError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Cookie files in one directory (`cookie-directory`, default `/var/lib/x2gobroker/cookies`).
#[derive(Debug, Clone)]
pub struct CookieStore {
    directory: PathBuf,
}

/// A stored cookie: the IP of the original login and its time.
#[derive(Debug, Clone, PartialEq)]
pub struct CookieRecord {
    pub ip: String,
    /// The login's UNIX time.
    pub time: f64,
}

/// Where issued cookies are kept: files in the cookie directory ([`CookieStore`], one broker),
/// or the cluster's database (`cluster::cookies`, shared by every broker).
pub trait CookieKeeper: Sync {
    /// Whether cookies can be kept at all (the directory exists or was created).
    fn prepare(&self) -> impl Future<Output = bool> + Send;
    /// Removes `user`'s least recently used cookies until at most `keep` are left; answers
    /// how many were removed.
    fn prune_user(&self, user: &str, keep: usize) -> impl Future<Output = usize> + Send;
    /// Keeps `cookie` of `user`, used at `used`.
    fn write(
        &self,
        user: &str,
        cookie: &str,
        record: &CookieRecord,
        used: SystemTime,
    ) -> impl Future<Output = Result<(), CookieError>> + Send;
    /// Takes `cookie` of `user` away (cookies are single-use): its record, if it was kept.
    fn take(&self, user: &str, cookie: &str) -> impl Future<Output = Option<CookieRecord>> + Send;
}

impl CookieKeeper for CookieStore {
    async fn prepare(&self) -> bool {
        match self.ensure_directory() {
            Ok(()) => true,
            Err(error) => {
                // the reference's answer too: "could not create cookie-directory, failing to
                // authenticate"
                tracing::error!(directory = %self.directory().display(), %error, "cannot create the cookie directory");
                false
            }
        }
    }

    async fn prune_user(&self, user: &str, keep: usize) -> usize {
        CookieStore::prune_user(self, user, keep)
    }

    async fn write(
        &self,
        user: &str,
        cookie: &str,
        record: &CookieRecord,
        used: SystemTime,
    ) -> Result<(), CookieError> {
        CookieStore::write(self, user, cookie, record, used)
    }

    async fn take(&self, user: &str, cookie: &str) -> Option<CookieRecord> {
        CookieStore::take(self, user, cookie)
    }
}

impl CookieStore {
    /// A store in `directory` (created on first use, mode 0700).
    pub fn new(directory: impl Into<PathBuf>) -> CookieStore {
        CookieStore {
            directory: directory.into(),
        }
    }

    /// The directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    fn ensure_directory(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.directory)
        {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn path(&self, user: &str, cookie: &str) -> PathBuf {
        self.directory
            .join(format!("{}_{}", file_safe_user(user), cookie))
    }

    /// Writes a cookie file used at `used`, set as its modification time to the nanosecond
    /// (before Linux 6.13, as in bookworm's 6.1, the kernel's own file times tick only every few
    /// milliseconds, too coarse to tell which of a busy user's cookies was used last); a failure
    /// is logged with the path and the OS error.
    pub fn write(
        &self,
        user: &str,
        cookie: &str,
        record: &CookieRecord,
        used: SystemTime,
    ) -> Result<(), CookieError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(user, cookie);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(format!("{} {}", record.ip, record.time).as_bytes())?;
                file.set_modified(used)
            });
        written.map_err(|source| {
            tracing::error!(path = %path.display(), error = %source, errno = source.raw_os_error(),
                "cannot store a cookie file: the login fails");
            CookieError { path, source }
        })
    }

    /// Reads and deletes a cookie file (cookies are single-use). Malformed files are deleted
    /// and count as absent.
    pub fn take(&self, user: &str, cookie: &str) -> Option<CookieRecord> {
        if !is_issued_cookie_shape(cookie) {
            return None;
        }
        let path = self.path(user, cookie);
        let text = std::fs::read_to_string(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        let mut fields = text.split_whitespace();
        let (Some(ip), Some(time), None) = (fields.next(), fields.next(), fields.next()) else {
            tracing::warn!(path = %path.display(), "malformed cookie file removed");
            return None;
        };
        let time = time.parse::<f64>().ok()?;
        Some(CookieRecord {
            ip: ip.to_string(),
            time,
        })
    }

    /// Removes `user`'s least recently used cookie files until at most `keep` are left;
    /// returns how many were removed. Every use of a cookie writes its successor with the time
    /// of that use as its modification time, so a file's modification time is its last use: cookies of clients that are still working survive
    /// a flood of new logins, abandoned ones go first (ties: the older login first). Names are
    /// percent-encoded (`_` too), so the prefix `<user>_` is this user's alone.
    pub fn prune_user(&self, user: &str, keep: usize) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.directory) else {
            return 0;
        };
        let prefix = format!("{}_", file_safe_user(user));
        let mut files: Vec<(SystemTime, f64, PathBuf)> = entries
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
            .map(|entry| {
                let path = entry.path();
                let used = entry
                    .metadata()
                    .and_then(|metadata| metadata.modified())
                    .unwrap_or(UNIX_EPOCH);
                let login = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| text.split_whitespace().nth(1)?.parse::<f64>().ok())
                    .unwrap_or(0.0);
                (used, login, path)
            })
            .collect();
        if files.len() <= keep {
            return 0;
        }
        files.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let excess = files.len() - keep;
        files
            .iter()
            .take(excess)
            .filter(|(_, _, path)| std::fs::remove_file(path).is_ok())
            .count()
    }

    /// Deletes cookie files whose login is older than `auth_timeout_seconds` at `now`; returns
    /// how many.
    pub fn collect_expired(&self, auth_timeout_seconds: i64, now: SystemTime) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.directory) else {
            return 0;
        };
        let now = unix_seconds(now);
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let expired = match text.split_whitespace().nth(1).map(str::parse::<f64>) {
                Some(Ok(time)) => now - time > auth_timeout_seconds as f64,
                _ => true,
            };
            if expired && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// Outcome of `check_access`: access, and the cookie to hand out.
pub type Access = (bool, Option<String>);

/// The reference's `check_access` (§6.2), with the fixes of B5 and S6, at wall-clock time `now`
/// (a new login's cookie records it; a presented cookie has expired when its login is more than
/// `auth_timeout_seconds` before it). `password_check` is only awaited when the password must be
/// checked. A granted access whose next cookie cannot be stored is an error, not an access.
pub async fn check_access<K, F, Fut>(
    policy: &AccessPolicy,
    store: &K,
    user: &str,
    client_ip: &IpAddr,
    cookie: &str,
    now: SystemTime,
    password_check: F,
) -> Result<Access, CookieError>
where
    K: CookieKeeper,
    F: FnOnce() -> Fut,
    Fut: Future<Output = bool>,
{
    if !policy.require_password && !policy.require_cookie {
        return Ok((true, None));
    }
    if policy.require_cookie && cookie.is_empty() {
        return Ok((false, None));
    }
    let matches_preshared: bool = cookie
        .as_bytes()
        .ct_eq(policy.preshared_cookie.as_bytes())
        .into();
    if !policy.require_password {
        return Ok((matches_preshared, Some(policy.preshared_cookie.clone())));
    }
    if !store.prepare().await {
        return Ok((false, None));
    }
    let ip = client_ip.to_string();
    if matches_preshared || cookie.is_empty() {
        if !password_check().await {
            return Ok((false, Some(policy.preshared_cookie.clone())));
        }
        let next = uuid::Uuid::new_v4().to_string();
        if !user.is_empty() {
            let pruned = store
                .prune_user(user, policy.max_cookies_per_user.saturating_sub(1))
                .await;
            if pruned > 0 {
                tracing::info!(
                    user = ?user,
                    pruned,
                    "cookie cap ([global] max-cookies-per-user): the user's least recently used cookies removed"
                );
            }
            let record = CookieRecord {
                ip,
                time: unix_seconds(now),
            };
            store.write(user, &next, &record, now).await?;
        }
        // B5 fix: the pre-shared cookie has no file to delete; nothing to do.
        return Ok((true, Some(next)));
    }
    let Some(record) = store.take(user, cookie).await else {
        return Ok((false, None));
    };
    if policy.verify_ip && record.ip != ip {
        return Ok((false, None));
    }
    if unix_seconds(now) - record.time > policy.auth_timeout_seconds as f64 {
        return Ok((false, None));
    }
    let next = if policy.use_static_cookie {
        cookie.to_string()
    } else {
        uuid::Uuid::new_v4().to_string()
    };
    store.write(user, &next, &record, now).await?;
    Ok((true, Some(next)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy() -> AccessPolicy {
        AccessPolicy {
            require_password: true,
            require_cookie: false,
            use_static_cookie: false,
            auth_timeout_seconds: 36000,
            verify_ip: true,
            preshared_cookie: "11111111-2222-3333-4444-555555555555".into(),
            max_cookies_per_user: 10,
        }
    }

    /// A fixed wall-clock time for the logins of these tests (2023-11-14 22:13:20 UTC).
    fn login_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// Whether `cookie` of `user` from 127.0.0.1 is let in at `now` (no password offered).
    async fn presents(
        policy: &AccessPolicy,
        store: &CookieStore,
        user: &str,
        cookie: &str,
        now: SystemTime,
    ) -> bool {
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        check_access(policy, store, user, &here, cookie, now, || async { false })
            .await
            .unwrap()
            .0
    }

    fn seconds(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[tokio::test]
    async fn a_cookie_in_use_outlives_newer_logins_that_were_abandoned() {
        let directory = tempfile::tempdir().unwrap();
        let store = CookieStore::new(directory.path().join("cookies"));
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let capped = AccessPolicy {
            max_cookies_per_user: 3,
            ..policy()
        };
        // one millisecond apart: less than an older kernel's file-time tick; the order comes
        // from the use times the store records, not from when this test happens to run
        let at = |millis: u64| login_time() + Duration::from_millis(millis);
        let login = |millis: u64| {
            let store = &store;
            let capped = &capped;
            async move {
                check_access(capped, store, "worker", &here, "", at(millis), || async {
                    true
                })
                .await
                .unwrap()
                .1
                .unwrap()
            }
        };
        let working = login(0).await;
        let abandoned = login(1).await;
        let _other = login(2).await;
        // the first client goes on working: its cookie is used, its successor written now
        let (granted, working) = check_access(
            &capped,
            &store,
            "worker",
            &here,
            &working,
            at(3),
            || async { false },
        )
        .await
        .unwrap();
        assert!(granted);
        let _newest = login(4).await;
        let later = at(5);
        let still_working = presents(&capped, &store, "worker", &working.unwrap(), later).await;
        assert!(still_working, "the cookie in use was kept");
        let dropped = presents(&capped, &store, "worker", &abandoned, later).await;
        assert!(!dropped, "the least recently used cookie went");
    }

    #[tokio::test]
    async fn one_user_holds_at_most_the_cap_and_loses_the_least_recently_used_first() {
        let directory = tempfile::tempdir().unwrap();
        let store = CookieStore::new(directory.path().join("cookies"));
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let capped = AccessPolicy {
            max_cookies_per_user: 3,
            ..policy()
        };
        let mut issued = Vec::new();
        for login in 0..300u64 {
            let now = login_time() + seconds(login);
            let (granted, cookie) =
                check_access(&capped, &store, "flood", &here, "", now, || async { true })
                    .await
                    .unwrap();
            assert!(granted);
            issued.push(cookie.unwrap());
        }
        // another user (whose name starts like this one's) keeps its cookie
        let (_, other) = check_access(
            &capped,
            &store,
            "flood_b",
            &here,
            "",
            login_time(),
            || async { true },
        )
        .await
        .unwrap();
        let names = std::fs::read_dir(store.directory()).unwrap().count();
        assert_eq!(names, 4, "three of the flooding user's, one of the other's");
        let later = login_time() + seconds(300);
        let oldest_kept = presents(&capped, &store, "flood", &issued[296], later).await;
        assert!(!oldest_kept, "the oldest cookies were dropped");
        let newest = presents(&capped, &store, "flood", &issued[299], later).await;
        assert!(newest, "the newest cookies live");
        let others = presents(&capped, &store, "flood_b", &other.unwrap(), later).await;
        assert!(others);
    }

    #[tokio::test]
    async fn a_login_whose_cookie_cannot_be_stored_fails() {
        let directory = tempfile::tempdir().unwrap();
        // a file where the directory should be: root may write anywhere, not into a file
        let not_a_directory = directory.path().join("cookies");
        std::fs::write(&not_a_directory, "").unwrap();
        let store = CookieStore::new(&not_a_directory);
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let outcome = check_access(
            &policy(),
            &store,
            "test",
            &here,
            "",
            login_time(),
            || async { true },
        )
        .await;
        let error = outcome.expect_err("no access without a stored cookie");
        assert!(error.path.starts_with(&not_a_directory), "{error}");
        assert_eq!(error.source.raw_os_error(), Some(20), "ENOTDIR: {error}");
        // a wrong password is still a plain refusal
        let refused = check_access(
            &policy(),
            &store,
            "test",
            &here,
            "",
            login_time(),
            || async { false },
        )
        .await
        .unwrap();
        assert!(!refused.0);
    }

    #[tokio::test]
    async fn dynamic_cookies_are_single_use_and_bound_to_the_ip() {
        let directory = tempfile::tempdir().unwrap();
        let store = CookieStore::new(directory.path().join("cookies"));
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let there: IpAddr = "127.0.0.2".parse().unwrap();
        let now = login_time();
        let check = |user: &'static str, ip: IpAddr, cookie: String, password_ok: bool| {
            let store = store.clone();
            async move {
                check_access(&policy(), &store, user, &ip, &cookie, now, || async {
                    password_ok
                })
                .await
                .unwrap()
            }
        };
        let (granted, first) = check("test", here, String::new(), true).await;
        assert!(granted);
        let first = first.unwrap();
        let (granted, second) = check("test", here, first.clone(), false).await;
        assert!(granted, "a valid cookie needs no password");
        let second = second.unwrap();
        assert_ne!(first, second);
        assert!(!check("test", here, first, true).await.0, "single use");
        assert!(!check("maja", here, second.clone(), true).await.0);
        assert!(!check("test", there, second.clone(), true).await.0);
        assert!(
            !check("test", here, second, true).await.0,
            "consumed by the failed attempt"
        );
    }

    #[tokio::test]
    async fn hostile_names_stay_inside_the_directory() {
        let directory = tempfile::tempdir().unwrap();
        let store = CookieStore::new(directory.path().join("cookies"));
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let (granted, cookie) = check_access(
            &policy(),
            &store,
            "../../evil",
            &here,
            "",
            login_time(),
            || async { true },
        )
        .await
        .unwrap();
        assert!(granted);
        let names: Vec<String> = std::fs::read_dir(directory.path().join("cookies"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [format!("%2E.%2F..%2Fevil_{}", cookie.unwrap())]);
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 1);
        let outcome = check_access(
            &policy(),
            &store,
            "test",
            &here,
            "../../../etc/passwd",
            login_time(),
            || async { true },
        )
        .await
        .unwrap();
        assert_eq!(outcome, (false, None));
    }

    #[tokio::test]
    async fn static_cookies_are_handed_back_unchanged() {
        let directory = tempfile::tempdir().unwrap();
        let store = CookieStore::new(directory.path());
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let static_policy = AccessPolicy {
            use_static_cookie: true,
            ..policy()
        };
        let (_, cookie) = check_access(
            &static_policy,
            &store,
            "test",
            &here,
            "",
            login_time(),
            || async { true },
        )
        .await
        .unwrap();
        let cookie = cookie.unwrap();
        for use_index in 1..=3 {
            let (granted, next) = check_access(
                &static_policy,
                &store,
                "test",
                &here,
                &cookie,
                login_time() + seconds(use_index),
                || async { false },
            )
            .await
            .unwrap();
            assert!(granted);
            assert_eq!(next.as_deref(), Some(cookie.as_str()));
        }
    }

    /// A cookie expires `auth-timeout` seconds after the login that issued it, however often it
    /// was used since: each use hands on the login's time, not the time of the use.
    #[tokio::test]
    async fn cookies_expire_counted_from_the_login() {
        let directory = tempfile::tempdir().unwrap();
        let store = CookieStore::new(directory.path());
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let one_minute = AccessPolicy {
            auth_timeout_seconds: 60,
            ..policy()
        };
        let use_at = |cookie: String, elapsed: Duration| {
            let store = store.clone();
            let policy = one_minute.clone();
            async move {
                check_access(
                    &policy,
                    &store,
                    "test",
                    &here,
                    &cookie,
                    login_time() + elapsed,
                    || async { false },
                )
                .await
                .unwrap()
            }
        };
        let (granted, cookie) = check_access(
            &one_minute,
            &store,
            "test",
            &here,
            "",
            login_time(),
            || async { true },
        )
        .await
        .unwrap();
        assert!(granted);
        let (granted, cookie) = use_at(cookie.unwrap(), seconds(30)).await;
        assert!(granted, "30 s after the login");
        let (granted, cookie) = use_at(cookie.unwrap(), seconds(60)).await;
        assert!(granted, "60 s after the login: not more than the timeout");
        let (granted, cookie) = use_at(cookie.unwrap(), seconds(61)).await;
        assert_eq!((granted, cookie), (false, None), "61 s after the login");
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 0);

        let expiring = AccessPolicy {
            auth_timeout_seconds: 0,
            ..policy()
        };
        let (_, cookie) = check_access(
            &expiring,
            &store,
            "test",
            &here,
            "",
            login_time(),
            || async { true },
        )
        .await
        .unwrap();
        let outcome = check_access(
            &expiring,
            &store,
            "test",
            &here,
            &cookie.unwrap(),
            login_time() + Duration::from_millis(5),
            || async { true },
        )
        .await
        .unwrap();
        assert_eq!(outcome, (false, None), "a zero timeout: one instant only");
    }

    #[tokio::test]
    async fn expired_cookie_files_are_collected() {
        let directory = tempfile::tempdir().unwrap();
        let store = CookieStore::new(directory.path());
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        for (user, login_offset) in [("old", 0), ("new", 50)] {
            let (granted, _) = check_access(
                &policy(),
                &store,
                user,
                &here,
                "",
                login_time() + seconds(login_offset),
                || async { true },
            )
            .await
            .unwrap();
            assert!(granted);
        }
        std::fs::write(directory.path().join("garbage_file"), "no time here").unwrap();
        let names = || -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(directory.path())
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names().len(), 3);
        assert_eq!(
            store.collect_expired(60, login_time() + seconds(60)),
            1,
            "only the malformed file"
        );
        assert_eq!(store.collect_expired(60, login_time() + seconds(61)), 1);
        let left = names();
        assert!(left.len() == 1 && left[0].starts_with("new_"), "{left:?}");
        assert_eq!(store.collect_expired(60, login_time() + seconds(111)), 1);
        assert!(names().is_empty());
        assert_eq!(store.collect_expired(60, login_time() + seconds(1000)), 0);
    }

    #[tokio::test]
    async fn cookie_only_mode_echoes_the_preshared_cookie() {
        let store = CookieStore::new("/nonexistent/never-created");
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let cookie_only = AccessPolicy {
            require_password: false,
            require_cookie: true,
            ..policy()
        };
        let check = |cookie: String| {
            let store = store.clone();
            let policy = cookie_only.clone();
            async move {
                check_access(
                    &policy,
                    &store,
                    "maja",
                    &here,
                    &cookie,
                    login_time(),
                    || async { true },
                )
                .await
                .unwrap()
            }
        };
        assert_eq!(check(String::new()).await, (false, None));
        let preshared = cookie_only.preshared_cookie.clone();
        assert_eq!(
            check("deadbeef".into()).await,
            (false, Some(preshared.clone()))
        );
        assert_eq!(check(preshared.clone()).await, (true, Some(preshared)));
    }

    #[test]
    fn get_my_cookie_golden_records() {
        let path = format!(
            "{}/tests/golden/api_profiles.jsonl",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut checked = 0;
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            if record["function"] != "get_my_cookie" {
                continue;
            }
            let directory = tempfile::tempdir().unwrap();
            let config =
                crate::config::BrokerConfig::parse(record["config"].as_str().unwrap()).unwrap();
            let mut file = config.global.my_cookie_file.clone();
            if let Some(content) = record["authid_file"].as_str() {
                let written = directory.path().join("authid");
                std::fs::write(&written, content).unwrap();
                file = written;
            }
            let my_cookie = config.global.my_cookie.as_deref();
            let cookie = preshared_cookie(&file, my_cookie);
            if record["case"].as_str().unwrap().contains("random") {
                assert!(is_issued_cookie_shape(&cookie));
                assert_ne!(cookie, preshared_cookie(&file, my_cookie));
            } else {
                assert_eq!(
                    cookie,
                    record["result"].as_str().unwrap(),
                    "{}",
                    record["case"]
                );
            }
            checked += 1;
        }
        assert_eq!(checked, 4);
    }

    #[test]
    fn preshared_cookie_resolution() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("x2gobroker.authid");
        std::fs::write(&file, "# c\n\nd1b8043e-b748-48c4-907f-7c798c4dc746 x\n").unwrap();
        assert_eq!(
            preshared_cookie(&file, Some("abc")),
            "d1b8043e-b748-48c4-907f-7c798c4dc746"
        );
        std::fs::write(&file, format!("{COOKIE_PLACEHOLDER}\n")).unwrap();
        assert_eq!(preshared_cookie(&file, Some("abc")), "abc");
        let random = preshared_cookie(Path::new("/nonexistent"), None);
        assert!(is_issued_cookie_shape(&random));
        assert_ne!(random, preshared_cookie(Path::new("/nonexistent"), None));
    }
}
