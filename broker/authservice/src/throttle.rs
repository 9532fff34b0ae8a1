//! The auth service's own throttle of failed logins per user, as pure logic over explicit
//! instants (no clock, no I/O): the caller owns the lock and the time.
//!
//! The broker's `auth/throttle.rs` semantics, keyed by user name only (this service never sees
//! a client address): `begin_attempt` before PAM (refused at once while the user is locked out,
//! and counted as in flight so that parallel guesses cannot slip through before the first
//! failures are recorded), then `record_failure` or `record_success`. `max_failures` failures
//! within `window` lock the user out for `lockout`, after which the count starts afresh (in the
//! broker a lockout shorter than the window lasts until the window ends); a success clears the
//! user's counter.
//! Defaults: 10 failures in 300 s lock out for 300 s — twice the broker's per (user, address)
//! limit of 5, so that the broker's own throttle answers first for a single address and this
//! one stops guessing spread over many addresses (or a broker that is not throttling).
//!
//! **Invariant:** memory is bounded: at most `max_entries` counters, user names cut to
//! [`MAX_USER_KEY_BYTES`].

use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// Longest user-name prefix kept as a key.
pub const MAX_USER_KEY_BYTES: usize = 256;
/// An attempt begun and never reported back is forgotten after this long.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// How many failures within `window` lock a user out for `lockout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
    /// Counters kept at most (the least interesting are dropped first).
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> ThrottleConfig {
        ThrottleConfig {
            max_failures: 10,
            window: Duration::from_secs(300),
            lockout: Duration::from_secs(300),
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone)]
struct Counter {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
    in_flight: VecDeque<Instant>,
    last_seen: Instant,
}

impl Counter {
    fn new(now: Instant) -> Counter {
        Counter {
            failures: 0,
            window_start: now,
            locked_until: None,
            in_flight: VecDeque::new(),
            last_seen: now,
        }
    }

    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    fn current_failures(&self, now: Instant, config: &ThrottleConfig) -> u32 {
        if now.saturating_duration_since(self.window_start) > config.window {
            0
        } else {
            self.failures
        }
    }

    fn expire_attempts(&mut self, now: Instant) {
        while let Some(started) = self.in_flight.front() {
            if now.saturating_duration_since(*started) <= ATTEMPT_TIMEOUT {
                break;
            }
            self.in_flight.pop_front();
        }
    }

    fn is_stale(&self, now: Instant, config: &ThrottleConfig) -> bool {
        self.locked(now).is_none()
            && self.in_flight.is_empty()
            && self.current_failures(now, config) == 0
    }
}

/// Why an attempt may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// Locked out for this much longer.
    LockedOut(Duration),
    /// As many attempts are in flight as failures are still allowed.
    TooManyInFlight,
}

/// The failure counters per user.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    by_user: HashMap<String, Counter>,
}

fn user_key(user: &str) -> String {
    let mut end = user.len().min(MAX_USER_KEY_BYTES);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_string()
}

impl LoginThrottle {
    /// A throttle with `config`.
    pub fn new(config: ThrottleConfig) -> LoginThrottle {
        LoginThrottle {
            config,
            by_user: HashMap::new(),
        }
    }

    /// Admits an attempt for `user` (in flight until `record_failure`/`record_success`).
    pub fn begin_attempt(&mut self, user: &str, now: Instant) -> Result<(), Throttled> {
        let config = self.config;
        let key = user_key(user);
        if let Some(counter) = self.by_user.get_mut(&key) {
            counter.expire_attempts(now);
            if let Some(retry_after) = counter.locked(now) {
                return Err(Throttled::LockedOut(retry_after));
            }
            let pending = counter.current_failures(now, &config) as usize + counter.in_flight.len();
            if pending >= config.max_failures as usize {
                return Err(Throttled::TooManyInFlight);
            }
        } else {
            self.make_room(now);
        }
        let counter = self.by_user.entry(key).or_insert_with(|| Counter::new(now));
        counter.in_flight.push_back(now);
        counter.last_seen = now;
        Ok(())
    }

    /// Counts a failed login and ends the admitted attempt.
    pub fn record_failure(&mut self, user: &str, now: Instant) {
        let config = self.config;
        let key = user_key(user);
        if !self.by_user.contains_key(&key) {
            self.make_room(now);
        }
        let counter = self.by_user.entry(key).or_insert_with(|| Counter::new(now));
        counter.in_flight.pop_front();
        counter.last_seen = now;
        if now.saturating_duration_since(counter.window_start) > config.window {
            counter.failures = 0;
            counter.window_start = now;
        }
        counter.failures = counter.failures.saturating_add(1);
        if counter.failures >= config.max_failures {
            // the lockout ends with a fresh count (the broker's lasts until its window ends too)
            counter.locked_until = Some(now + config.lockout);
            counter.failures = 0;
            counter.window_start = now + config.lockout;
        }
    }

    /// A successful login clears the user's counter.
    pub fn record_success(&mut self, user: &str) {
        self.by_user.remove(&user_key(user));
    }

    /// Counters held; for tests and metrics.
    pub fn n_entries(&self) -> usize {
        self.by_user.len()
    }

    /// Drops stale counters when full, then the unlocked ones seen longest ago, then the
    /// locked ones whose lockout ends first, down to 90 %.
    fn make_room(&mut self, now: Instant) {
        let config = self.config;
        let capacity = config.max_entries.max(1);
        if self.by_user.len() < capacity {
            return;
        }
        self.by_user
            .retain(|_, counter| !counter.is_stale(now, &config));
        let target = capacity * 9 / 10;
        if self.by_user.len() <= target {
            return;
        }
        let mut order: Vec<(bool, Instant, String)> = self
            .by_user
            .iter()
            .map(|(key, counter)| match counter.locked_until {
                Some(until) if until > now => (true, until, key.clone()),
                _ => (false, counter.last_seen, key.clone()),
            })
            .collect();
        order.sort_by_key(|(locked, instant, _)| (*locked, *instant));
        let n_drop = self.by_user.len() - target;
        for (_, _, key) in order.into_iter().take(n_drop) {
            self.by_user.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn defaults_are_ten_failures_in_five_minutes_for_five_minutes() {
        let config = ThrottleConfig::default();
        assert_eq!(
            (config.max_failures, config.window, config.lockout),
            (10, seconds(300), seconds(300))
        );
    }

    #[test]
    fn locks_a_user_after_n_failures_and_not_another() {
        let config = ThrottleConfig {
            max_failures: 3,
            ..ThrottleConfig::default()
        };
        let mut throttle = LoginThrottle::new(config);
        let start = Instant::now();
        for attempt in 0..3 {
            let now = start + seconds(attempt);
            assert_eq!(throttle.begin_attempt("alice", now), Ok(()));
            throttle.record_failure("alice", now);
        }
        let later = start + seconds(10);
        // locked at start + 2 s for 300 s
        assert_eq!(
            throttle.begin_attempt("alice", later),
            Err(Throttled::LockedOut(seconds(292)))
        );
        assert_eq!(throttle.begin_attempt("bob", later), Ok(()));
        let after_lockout = start + seconds(2) + config.lockout + seconds(1);
        assert_eq!(throttle.begin_attempt("alice", after_lockout), Ok(()));
        throttle.record_success("alice");
        assert_eq!(throttle.begin_attempt("alice", after_lockout), Ok(()));
    }

    #[test]
    fn a_lockout_shorter_than_the_window_ends_with_a_fresh_count() {
        let config = ThrottleConfig {
            max_failures: 2,
            window: seconds(300),
            lockout: seconds(4),
            ..ThrottleConfig::default()
        };
        let mut throttle = LoginThrottle::new(config);
        let start = Instant::now();
        for _ in 0..2 {
            throttle.begin_attempt("frank", start).unwrap();
            throttle.record_failure("frank", start);
        }
        assert_eq!(
            throttle.begin_attempt("frank", start + seconds(3)),
            Err(Throttled::LockedOut(seconds(1)))
        );
        let after = start + seconds(5);
        assert_eq!(throttle.begin_attempt("frank", after), Ok(()));
        throttle.record_failure("frank", after);
        // one failure of the fresh count: still admitted, the second locks again
        assert_eq!(throttle.begin_attempt("frank", after), Ok(()));
        throttle.record_failure("frank", after);
        assert_eq!(
            throttle.begin_attempt("frank", after),
            Err(Throttled::LockedOut(seconds(4)))
        );
    }

    #[test]
    fn a_success_clears_the_count_and_old_failures_leave_the_window() {
        let config = ThrottleConfig {
            max_failures: 3,
            ..ThrottleConfig::default()
        };
        let mut throttle = LoginThrottle::new(config);
        let start = Instant::now();
        for round in 0..5 {
            let now = start + seconds(round);
            for _ in 0..2 {
                throttle.begin_attempt("carol", now).unwrap();
                throttle.record_failure("carol", now);
            }
            throttle.begin_attempt("carol", now).unwrap();
            throttle.record_success("carol");
        }
        assert_eq!(throttle.n_entries(), 0);
        // two failures, then the window passes: two more do not lock
        for now in [
            start,
            start + seconds(1),
            start + seconds(400),
            start + seconds(401),
        ] {
            throttle.begin_attempt("dave", now).unwrap();
            throttle.record_failure("dave", now);
        }
        assert_eq!(throttle.begin_attempt("dave", start + seconds(402)), Ok(()));
    }

    #[test]
    fn parallel_attempts_are_bounded_by_the_failures_left() {
        let config = ThrottleConfig {
            max_failures: 3,
            ..ThrottleConfig::default()
        };
        let mut throttle = LoginThrottle::new(config);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(throttle.begin_attempt("eve", now), Ok(()));
        }
        assert_eq!(
            throttle.begin_attempt("eve", now),
            Err(Throttled::TooManyInFlight)
        );
        // attempts never reported back are forgotten
        assert_eq!(
            throttle.begin_attempt("eve", now + ATTEMPT_TIMEOUT + seconds(1)),
            Ok(())
        );
    }

    #[test]
    fn memory_is_bounded() {
        let config = ThrottleConfig {
            max_failures: 2,
            max_entries: 100,
            ..ThrottleConfig::default()
        };
        let mut throttle = LoginThrottle::new(config);
        let now = Instant::now();
        for index in 0..1000 {
            let user = format!("user{index}");
            throttle.begin_attempt(&user, now).unwrap();
            throttle.record_failure(&user, now);
        }
        assert!(throttle.n_entries() <= 100);
        let long = "é".repeat(1000);
        throttle.begin_attempt(&long, now).unwrap();
        throttle.record_failure(&long, now);
        assert!(throttle
            .by_user
            .keys()
            .all(|key| key.len() <= MAX_USER_KEY_BYTES));
    }
}
