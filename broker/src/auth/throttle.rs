//! Failed-login throttling per (user, client address) and per client address, as pure logic over
//! explicit instants (no clock, no I/O): the caller owns the lock and the time.
//!
//! Use: `begin_attempt` before asking the mechanism (refuses at once while locked out, and counts
//! the attempt as in flight, so that many parallel guesses cannot slip through before the first
//! failures are recorded), then `record_failure` or `record_success` with the outcome, or
//! `end_attempt` when there was none (the mechanism could not be asked: an outage is no failed
//! login). `check` is the read-only form of the lockout test.
//!
//! **Invariant:** memory is bounded: at most `max_entries` counters per table, user names cut to
//! [`MAX_USER_KEY_BYTES`]; IPv6 clients are counted per /64 (one host usually owns a whole /64).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;
use tokio::time::Instant;

/// Longest user-name prefix kept as a key.
pub const MAX_USER_KEY_BYTES: usize = 256;
/// An attempt begun and never reported back is forgotten after this long.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// The retry hint while too many attempts of a key are still in flight.
pub const IN_FLIGHT_RETRY: Duration = Duration::from_secs(2);

/// Limits: how many failures within `window` lock a (user, address) pair or an address out for
/// `lockout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub max_failures_per_user_and_address: u32,
    pub max_failures_per_address: u32,
    pub window: Duration,
    pub lockout: Duration,
    /// Counters kept at most per table (the least interesting are dropped first).
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> ThrottleConfig {
        ThrottleConfig {
            max_failures_per_user_and_address: 5,
            max_failures_per_address: 20,
            window: Duration::from_secs(300),
            lockout: Duration::from_secs(300),
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone)]
struct Counter {
    /// Failures since `window_start`.
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
    /// Start instants of attempts not reported back yet, oldest first.
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

    /// Whether another attempt may start now.
    fn admit(&self, now: Instant, limit: u32, config: &ThrottleConfig) -> Result<(), Duration> {
        if let Some(retry_after) = self.locked(now) {
            return Err(retry_after);
        }
        let pending = self.current_failures(now, config) as usize + self.in_flight.len();
        if pending >= limit as usize {
            return Err(IN_FLIGHT_RETRY);
        }
        Ok(())
    }

    fn fail(&mut self, now: Instant, limit: u32, config: &ThrottleConfig) {
        self.in_flight.pop_front();
        self.last_seen = now;
        if now.saturating_duration_since(self.window_start) > config.window {
            self.failures = 0;
            self.window_start = now;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= limit {
            self.locked_until = Some(now + config.lockout);
        }
    }

    /// Nothing left worth remembering.
    fn is_stale(&self, now: Instant, config: &ThrottleConfig) -> bool {
        self.locked(now).is_none()
            && self.in_flight.is_empty()
            && self.current_failures(now, config) == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PairKey {
    user: String,
    address: IpAddr,
}

/// The failure counters.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    by_pair: HashMap<PairKey, Counter>,
    by_address: HashMap<IpAddr, Counter>,
}

/// The address a client is counted under: IPv4 (also IPv4-mapped IPv6) as is, IPv6 by its /64.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

fn pair_key(user: &str, address: IpAddr) -> PairKey {
    let mut end = user.len().min(MAX_USER_KEY_BYTES);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    PairKey {
        user: user[..end].to_string(),
        address: address_key(address),
    }
}

/// Makes room for one more counter: drops stale counters, then (if still full) the unlocked
/// ones seen longest ago, then the locked ones whose lockout ends first, down to 90 %.
fn make_room<K: Eq + Hash + Clone>(
    table: &mut HashMap<K, Counter>,
    now: Instant,
    config: &ThrottleConfig,
) {
    if table.len() < config.max_entries.max(1) {
        return;
    }
    table.retain(|_, counter| !counter.is_stale(now, config));
    let target = config.max_entries.max(1) * 9 / 10;
    if table.len() <= target {
        return;
    }
    let mut order: Vec<(bool, Instant, K)> = table
        .iter()
        .map(|(key, counter)| match counter.locked_until {
            Some(until) if until > now => (true, until, key.clone()),
            _ => (false, counter.last_seen, key.clone()),
        })
        .collect();
    order.sort_by_key(|(locked, instant, _)| (*locked, *instant));
    let n_drop = table.len() - target;
    for (_, _, key) in order.into_iter().take(n_drop) {
        table.remove(&key);
    }
}

impl LoginThrottle {
    /// A throttle with `config`.
    pub fn new(config: ThrottleConfig) -> LoginThrottle {
        LoginThrottle {
            config,
            by_pair: HashMap::new(),
            by_address: HashMap::new(),
        }
    }

    /// `Err(retry_after)` while the (user, address) pair or the address is locked out.
    pub fn check(&self, user: &str, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let locked = |counter: Option<&Counter>| match counter.and_then(|c| c.locked(now)) {
            Some(retry_after) => Err(retry_after),
            None => Ok(()),
        };
        locked(self.by_pair.get(&pair_key(user, address)))?;
        locked(self.by_address.get(&address_key(address)))
    }

    /// Admits an attempt (counted as in flight until `record_failure`/`record_success`), or
    /// `Err(retry_after)` while locked out or while as many attempts are in flight as failures
    /// are still allowed.
    pub fn begin_attempt(
        &mut self,
        user: &str,
        address: IpAddr,
        now: Instant,
    ) -> Result<(), Duration> {
        let config = self.config;
        let pair = pair_key(user, address);
        let address = address_key(address);
        if let Some(counter) = self.by_pair.get_mut(&pair) {
            counter.expire_attempts(now);
            counter.admit(now, config.max_failures_per_user_and_address, &config)?;
        }
        if let Some(counter) = self.by_address.get_mut(&address) {
            counter.expire_attempts(now);
            counter.admit(now, config.max_failures_per_address, &config)?;
        }
        if !self.by_pair.contains_key(&pair) {
            make_room(&mut self.by_pair, now, &config);
        }
        if !self.by_address.contains_key(&address) {
            make_room(&mut self.by_address, now, &config);
        }
        for counter in [
            self.by_pair
                .entry(pair)
                .or_insert_with(|| Counter::new(now)),
            self.by_address
                .entry(address)
                .or_insert_with(|| Counter::new(now)),
        ] {
            counter.in_flight.push_back(now);
            counter.last_seen = now;
        }
        Ok(())
    }

    /// Counts a failed login (and ends the attempt `begin_attempt` admitted, if any).
    pub fn record_failure(&mut self, user: &str, address: IpAddr, now: Instant) {
        let config = self.config;
        let pair = pair_key(user, address);
        let address = address_key(address);
        if !self.by_pair.contains_key(&pair) {
            make_room(&mut self.by_pair, now, &config);
        }
        if !self.by_address.contains_key(&address) {
            make_room(&mut self.by_address, now, &config);
        }
        self.by_pair
            .entry(pair)
            .or_insert_with(|| Counter::new(now))
            .fail(now, config.max_failures_per_user_and_address, &config);
        self.by_address
            .entry(address)
            .or_insert_with(|| Counter::new(now))
            .fail(now, config.max_failures_per_address, &config);
    }

    /// A successful login clears the pair's counter (the address keeps its count, so that one
    /// valid account cannot launder an address's failures) and ends the admitted attempt.
    pub fn record_success(&mut self, user: &str, address: IpAddr) {
        self.by_pair.remove(&pair_key(user, address));
        if let Some(counter) = self.by_address.get_mut(&address_key(address)) {
            counter.in_flight.pop_front();
        }
    }

    /// Ends the attempt `begin_attempt` admitted without an outcome (the mechanism could not
    /// be asked): nothing is counted.
    pub fn end_attempt(&mut self, user: &str, address: IpAddr) {
        if let Some(counter) = self.by_pair.get_mut(&pair_key(user, address)) {
            counter.in_flight.pop_front();
        }
        if let Some(counter) = self.by_address.get_mut(&address_key(address)) {
            counter.in_flight.pop_front();
        }
    }

    /// Counters held (pairs, addresses); for tests and metrics.
    pub fn n_entries(&self) -> (usize, usize) {
        (self.by_pair.len(), self.by_address.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn seconds(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn locks_a_pair_after_n_failures_but_not_other_addresses_or_users() {
        let config = ThrottleConfig {
            max_failures_per_user_and_address: 3,
            ..ThrottleConfig::default()
        };
        let mut throttle = LoginThrottle::new(config);
        let start = Instant::now();
        let here = ip("127.0.0.2");
        for attempt in 0..3 {
            let now = start + seconds(attempt);
            assert_eq!(throttle.begin_attempt("alice", here, now), Ok(()));
            throttle.record_failure("alice", here, now);
        }
        let later = start + seconds(10);
        // locked at start + 2 s for 300 s
        assert_eq!(throttle.check("alice", here, later), Err(seconds(292)));
        assert_eq!(
            throttle.begin_attempt("alice", here, later),
            Err(seconds(292))
        );
        assert_eq!(
            throttle.begin_attempt("alice", ip("127.0.0.3"), later),
            Ok(())
        );
        throttle.record_success("alice", ip("127.0.0.3"));
        assert_eq!(throttle.begin_attempt("bob", here, later), Ok(()));
        let after_lockout = start + seconds(2) + config.lockout + seconds(1);
        assert_eq!(throttle.check("alice", here, after_lockout), Ok(()));
        assert_eq!(throttle.begin_attempt("alice", here, after_lockout), Ok(()));
    }

    #[test]
    fn an_address_spraying_users_is_locked_out() {
        let config = ThrottleConfig {
            max_failures_per_address: 4,
            ..ThrottleConfig::default()
        };
        let mut throttle = LoginThrottle::new(config);
        let now = Instant::now();
        let attacker = ip("127.0.0.9");
        for index in 0..4 {
            let user = format!("user{index}");
            assert_eq!(throttle.begin_attempt(&user, attacker, now), Ok(()));
            throttle.record_failure(&user, attacker, now);
        }
        assert_eq!(
            throttle.check("someone", attacker, now),
            Err(config.lockout)
        );
        assert_eq!(throttle.check("someone", ip("127.0.0.1"), now), Ok(()));
    }

    #[test]
    fn parallel_attempts_count_before_their_outcome_is_known() {
        let mut throttle = LoginThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        let here = ip("127.0.0.2");
        let admitted = (0..50)
            .filter(|_| throttle.begin_attempt("alice", here, now).is_ok())
            .count();
        assert_eq!(
            admitted, 5,
            "no more guesses in flight than failures allowed"
        );
        assert_eq!(
            throttle.begin_attempt("alice", here, now),
            Err(IN_FLIGHT_RETRY)
        );
        // a guess that is never reported back stops counting after ATTEMPT_TIMEOUT
        let later = now + ATTEMPT_TIMEOUT + seconds(1);
        assert_eq!(throttle.begin_attempt("alice", here, later), Ok(()));
        // a success frees its slot and clears the pair
        throttle.record_success("alice", here);
        assert_eq!(throttle.begin_attempt("alice", here, later), Ok(()));
    }

    #[test]
    fn attempts_without_an_outcome_are_not_counted() {
        let mut throttle = LoginThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        let here = ip("127.0.0.2");
        // the auth service is down: many more attempts than failures allowed, none counted
        for attempt in 0..50 {
            assert_eq!(
                throttle.begin_attempt("alice", here, now + seconds(attempt)),
                Ok(()),
                "attempt {attempt}"
            );
            throttle.end_attempt("alice", here);
        }
        assert_eq!(throttle.check("alice", here, now + seconds(50)), Ok(()));
        // real failures still lock the pair
        for _ in 0..5 {
            assert_eq!(throttle.begin_attempt("alice", here, now), Ok(()));
            throttle.record_failure("alice", here, now);
        }
        assert!(throttle.check("alice", here, now).is_err());
    }

    #[test]
    fn failures_outside_the_window_start_over_and_success_clears_the_pair() {
        let config = ThrottleConfig {
            max_failures_per_user_and_address: 2,
            ..ThrottleConfig::default()
        };
        let mut throttle = LoginThrottle::new(config);
        let start = Instant::now();
        let here = ip("127.0.0.2");
        let after_window = start + config.window + seconds(1);
        throttle.record_failure("alice", here, start);
        throttle.record_failure("alice", here, after_window);
        assert_eq!(
            throttle.check("alice", here, after_window + seconds(1)),
            Ok(())
        );
        throttle.record_success("alice", here);
        throttle.record_failure("alice", here, after_window + seconds(2));
        assert_eq!(
            throttle.check("alice", here, after_window + seconds(3)),
            Ok(())
        );
        throttle.record_failure("alice", here, after_window + seconds(4));
        assert!(throttle
            .check("alice", here, after_window + seconds(5))
            .is_err());
    }

    #[test]
    fn address_keys() {
        for (client, key) in [
            ("127.0.0.2", "127.0.0.2"),
            ("::ffff:10.1.2.3", "10.1.2.3"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
            ("2001:db8:1:2::1", "2001:db8:1:2::"),
            ("::1", "::"),
        ] {
            assert_eq!(address_key(ip(client)), ip(key), "{client}");
        }
        let mut throttle = LoginThrottle::new(ThrottleConfig {
            max_failures_per_address: 2,
            ..ThrottleConfig::default()
        });
        let now = Instant::now();
        throttle.record_failure("a", ip("2001:db8::1"), now);
        throttle.record_failure("b", ip("2001:db8::2"), now);
        assert!(
            throttle.check("c", ip("2001:db8::3"), now).is_err(),
            "same /64"
        );
        assert_eq!(throttle.check("c", ip("2001:db8:0:1::3"), now), Ok(()));
    }

    #[test]
    fn memory_is_bounded() {
        let config = ThrottleConfig {
            max_failures_per_user_and_address: 1,
            max_failures_per_address: 1_000,
            max_entries: 100,
            ..ThrottleConfig::default()
        };
        let mut throttle = LoginThrottle::new(config);
        let start = Instant::now();
        let victim = ip("127.0.0.2");
        throttle.record_failure("victim", victim, start);
        // failures under 1 000 other names from another address, spread over a minute
        for index in 0..1_000u64 {
            let now = start + Duration::from_millis(index * 60);
            throttle.record_failure(&format!("noise{index}"), ip("127.0.0.3"), now);
            let (n_pairs, n_addresses) = throttle.n_entries();
            assert!(
                n_pairs <= 100 && n_addresses <= 100,
                "{n_pairs} {n_addresses}"
            );
        }
        let long_name = "x".repeat(10_000);
        throttle.record_failure(&long_name, victim, start);
        assert!(throttle.check(&long_name, victim, start).is_err());
        assert!(throttle
            .by_pair
            .keys()
            .all(|key| key.user.len() <= MAX_USER_KEY_BYTES));
    }

    #[test]
    fn stale_counters_are_dropped_before_live_ones() {
        let config = ThrottleConfig {
            max_failures_per_user_and_address: 3,
            max_entries: 10,
            lockout: Duration::from_secs(600),
            ..ThrottleConfig::default()
        };
        let mut throttle = LoginThrottle::new(config);
        let start = Instant::now();
        let locked_user = ip("127.0.0.2");
        for _ in 0..3 {
            throttle.record_failure("target", locked_user, start);
        }
        for index in 0..9 {
            throttle.record_failure(&format!("old{index}"), ip("127.0.0.3"), start);
        }
        let later = start + config.window + seconds(1);
        for index in 0..9 {
            throttle.record_failure(&format!("new{index}"), ip("127.0.0.4"), later);
        }
        assert!(throttle.check("target", locked_user, later).is_err());
        assert!(throttle.n_entries().0 <= 10);
    }
}
