//! Failed-login throttling per user and client address, as pure logic over explicit instants.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Limits: how many failures within `window` lock a (user, address) pair or an address out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub max_failures_per_user_and_address: u32,
    pub max_failures_per_address: u32,
    pub window: Duration,
    pub lockout: Duration,
    /// Entries kept at most (oldest dropped first).
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
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

/// The failure counters.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    by_pair: HashMap<(String, IpAddr), Failures>,
    by_address: HashMap<IpAddr, Failures>,
}

fn check_entry(entry: Option<&Failures>, now: Instant) -> Result<(), Duration> {
    match entry.and_then(|failures| failures.locked_until) {
        Some(until) if until > now => Err(until - now),
        _ => Ok(()),
    }
}

fn bump(entry: &mut Failures, now: Instant, limit: u32, config: &ThrottleConfig) {
    if now.duration_since(entry.first) > config.window {
        *entry = Failures {
            count: 0,
            first: now,
            locked_until: None,
        };
    }
    entry.count += 1;
    if entry.count >= limit {
        entry.locked_until = Some(now + config.lockout);
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

    /// `Err(retry_after)` while the user or the address is locked out.
    pub fn check(&self, user: &str, address: IpAddr, now: Instant) -> Result<(), Duration> {
        check_entry(self.by_pair.get(&(user.to_string(), address)), now)?;
        check_entry(self.by_address.get(&address), now)
    }

    /// Counts a failed login.
    pub fn record_failure(&mut self, user: &str, address: IpAddr, now: Instant) {
        self.prune(now);
        let fresh = || Failures {
            count: 0,
            first: now,
            locked_until: None,
        };
        let config = self.config;
        bump(
            self.by_pair
                .entry((user.to_string(), address))
                .or_insert_with(fresh),
            now,
            config.max_failures_per_user_and_address,
            &config,
        );
        bump(
            self.by_address.entry(address).or_insert_with(fresh),
            now,
            config.max_failures_per_address,
            &config,
        );
    }

    /// A successful login clears the pair's counter.
    pub fn record_success(&mut self, user: &str, address: IpAddr) {
        self.by_pair.remove(&(user.to_string(), address));
    }

    fn prune(&mut self, now: Instant) {
        let horizon = self.config.window.max(self.config.lockout);
        let stale = |failures: &Failures| {
            now.duration_since(failures.first) > horizon
                && failures.locked_until.is_none_or(|until| until <= now)
        };
        if self.by_pair.len() + self.by_address.len() > self.config.max_entries / 2 {
            self.by_pair.retain(|_, failures| !stale(failures));
            self.by_address.retain(|_, failures| !stale(failures));
        }
        if self.by_pair.len() > self.config.max_entries {
            self.by_pair.clear();
        }
        if self.by_address.len() > self.config.max_entries {
            self.by_address.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_a_pair_after_n_failures_but_not_other_addresses() {
        let config = ThrottleConfig {
            max_failures_per_user_and_address: 3,
            ..ThrottleConfig::default()
        };
        let mut throttle = LoginThrottle::new(config);
        let start = Instant::now();
        let here: IpAddr = "127.0.0.2".parse().unwrap();
        let there: IpAddr = "127.0.0.3".parse().unwrap();
        for attempt in 0..3 {
            assert!(
                throttle.check("alice", here, start).is_ok(),
                "attempt {attempt}"
            );
            throttle.record_failure("alice", here, start);
        }
        assert!(throttle
            .check("alice", here, start + Duration::from_secs(1))
            .is_err());
        assert!(
            throttle.check("alice", there, start).is_ok(),
            "another address still works"
        );
        assert!(
            throttle.check("bob", here, start).is_ok(),
            "another user from here still works"
        );
        assert!(throttle
            .check(
                "alice",
                here,
                start + config.lockout + Duration::from_secs(1)
            )
            .is_ok());
    }

    #[test]
    fn an_address_spraying_users_is_locked_out() {
        let config = ThrottleConfig {
            max_failures_per_address: 4,
            ..ThrottleConfig::default()
        };
        let mut throttle = LoginThrottle::new(config);
        let now = Instant::now();
        let attacker: IpAddr = "127.0.0.9".parse().unwrap();
        for index in 0..4 {
            throttle.record_failure(&format!("user{index}"), attacker, now);
        }
        assert!(throttle.check("someone", attacker, now).is_err());
        assert!(throttle
            .check("someone", "127.0.0.1".parse().unwrap(), now)
            .is_ok());
    }

    #[test]
    fn failures_outside_the_window_start_over_and_success_clears() {
        let config = ThrottleConfig {
            max_failures_per_user_and_address: 2,
            ..ThrottleConfig::default()
        };
        let mut throttle = LoginThrottle::new(config);
        let start = Instant::now();
        let here: IpAddr = "127.0.0.2".parse().unwrap();
        throttle.record_failure("alice", here, start);
        throttle.record_failure(
            "alice",
            here,
            start + config.window + Duration::from_secs(1),
        );
        assert!(throttle
            .check(
                "alice",
                here,
                start + config.window + Duration::from_secs(2)
            )
            .is_ok());
        throttle.record_failure(
            "alice",
            here,
            start + config.window + Duration::from_secs(3),
        );
        throttle.record_success("alice", here);
        throttle.record_failure(
            "alice",
            here,
            start + config.window + Duration::from_secs(4),
        );
        assert!(throttle
            .check(
                "alice",
                here,
                start + config.window + Duration::from_secs(5)
            )
            .is_ok());
    }
}
