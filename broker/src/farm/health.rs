//! A server's health machine, pure: Down → (report) Degraded → (report) Up, failures, back-off and the next step.
//!
//! The supervisor owns one [`HealthMachine`] per server and only applies what it answers:
//! which health to announce, and when to connect or poll next. No clock is read here; the
//! caller passes elapsed times and the jitter draw.

use super::model::{Health, Via};
use std::time::Duration;

/// The first retry after a failure; each further failure doubles it, up to the cap.
pub const BASE_BACKOFF: Duration = Duration::from_millis(200);

/// The transports a server has, and their timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Longest back-off between reconnection attempts.
    pub max_backoff: Duration,
    /// How long the legacy fallback is used before gRPC is tried again.
    pub grpc_retry: Duration,
}

/// What the supervisor does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Open the gRPC watch stream after this delay.
    Connect(Duration),
    /// Poll the legacy agent after this delay.
    Poll(Duration),
}

/// One server's health as its supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthMachine {
    health: Health,
    /// Failures in a row (0 after a report).
    failures: u32,
    ever_reported: bool,
}

impl Default for HealthMachine {
    fn default() -> HealthMachine {
        HealthMachine {
            health: Health::Down,
            failures: 0,
            ever_reported: false,
        }
    }
}

impl HealthMachine {
    /// The health now.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The agent reported: the first report after an outage makes the server Degraded
    /// (half-open), any other Up. Answers the new health.
    pub fn on_report(&mut self) -> Health {
        self.health = match self.health {
            Health::Down if self.ever_reported => Health::Degraded,
            _ => Health::Up,
        };
        self.failures = 0;
        self.ever_reported = true;
        self.health
    }

    /// A transport failed after delivering `reports` reports: the server is Down, and the
    /// failure count restarts at one when the stream had worked.
    pub fn on_failure(&mut self, reports: u64) -> Health {
        self.failures = if reports > 0 {
            1
        } else {
            self.failures.saturating_add(1)
        };
        self.ever_reported |= reports > 0;
        self.health = Health::Down;
        self.health
    }

    /// The delay before the next attempt: 200 ms × 2ⁿ⁻¹ (capped), plus up to half of it
    /// as jitter (`jitter` drawn from 0.0..=1.0).
    pub fn backoff(&self, max_backoff: Duration, jitter: f64) -> Duration {
        let exponent = self.failures.saturating_sub(1).min(6);
        let base = BASE_BACKOFF.saturating_mul(1 << exponent).min(max_backoff);
        base + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// After a legacy poll: poll again after `after`, or, when the server also has a gRPC target
/// and the fallback has been in use for `grpc_retry` (or its start is unknown), try gRPC.
pub fn after_legacy_poll(
    has_grpc: bool,
    legacy_for: Option<Duration>,
    timing: Timing,
    after: Duration,
) -> Step {
    let retry_grpc = has_grpc && legacy_for.is_none_or(|elapsed| elapsed >= timing.grpc_retry);
    if retry_grpc {
        Step::Connect(after)
    } else {
        Step::Poll(after)
    }
}

/// What a failure means: `None` when a watch that never delivered anything reveals a server
/// without a gRPC agent and a legacy transport exists (poll it now, the server is not marked
/// down), else the step after the back-off.
pub fn after_failure(
    via: Via,
    reports: u64,
    has_legacy: bool,
    has_grpc: bool,
    legacy_for: Option<Duration>,
    timing: Timing,
    backoff: Duration,
) -> Option<Step> {
    if via == Via::Grpc && reports == 0 && has_legacy {
        return None;
    }
    Some(match via {
        Via::Grpc => Step::Connect(backoff),
        Via::Ssh | Via::Local => after_legacy_poll(has_grpc, legacy_for, timing, backoff),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum Event {
        Report,
        Fail(u64),
    }

    #[test]
    fn health_transitions_table() {
        use Event::*;
        use Health::*;
        // events in order, the health after each, the failure count at the end
        let cases: &[(&[Event], &[Health], u32)] = &[
            (&[Report], &[Up], 0),
            (&[Report, Report], &[Up, Up], 0),
            // a server never heard of that answers is Up at once (nothing to distrust)
            (&[Fail(0), Report], &[Down, Up], 0),
            // half-open: after an outage the first report is Degraded, the second Up
            (
                &[Report, Fail(0), Report, Report],
                &[Up, Down, Degraded, Up],
                0,
            ),
            // a stream that had delivered reports restarts the failure count at one
            (&[Fail(0), Fail(0), Fail(3)], &[Down, Down, Down], 1),
            (&[Fail(0), Fail(0), Fail(0)], &[Down, Down, Down], 3),
            // a stream that delivered and then ended counts as heard: its return is Degraded
            (&[Fail(2), Report], &[Down, Degraded], 0),
        ];
        for (events, expected, failures) in cases {
            let mut machine = HealthMachine::default();
            let seen: Vec<Health> = events
                .iter()
                .map(|event| match event {
                    Report => machine.on_report(),
                    Fail(reports) => machine.on_failure(*reports),
                })
                .collect();
            assert_eq!(&seen, expected, "{events:?}");
            assert_eq!(machine.failures(), *failures, "{events:?}");
            assert_eq!(machine.health(), *expected.last().unwrap());
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_at_most_half_jitter() {
        let cap = Duration::from_secs(10);
        let cases = [
            (1, 0.0, 200),
            (1, 1.0, 300),
            (2, 0.0, 400),
            (3, 0.5, 1000),
            (6, 0.0, 6400),
            (7, 0.0, 10000),
            (40, 1.0, 15000),
        ];
        for (failures, jitter, expected_ms) in cases {
            let mut machine = HealthMachine::default();
            for _ in 0..failures {
                machine.on_failure(0);
            }
            assert_eq!(
                machine.backoff(cap, jitter),
                Duration::from_millis(expected_ms),
                "{failures} failures, jitter {jitter}"
            );
        }
    }

    #[test]
    fn next_steps_table() {
        let timing = Timing {
            max_backoff: Duration::from_secs(10),
            grpc_retry: Duration::from_secs(30),
        };
        let backoff = Duration::from_millis(400);
        let seconds = |s| Some(Duration::from_secs(s));
        // via, reports, has legacy, has grpc, legacy in use for, expected
        let cases = [
            (Via::Grpc, 0, true, true, None, None),
            (
                Via::Grpc,
                0,
                false,
                true,
                None,
                Some(Step::Connect(backoff)),
            ),
            (Via::Grpc, 5, true, true, None, Some(Step::Connect(backoff))),
            (
                Via::Ssh,
                0,
                true,
                true,
                seconds(1),
                Some(Step::Poll(backoff)),
            ),
            (
                Via::Ssh,
                0,
                true,
                true,
                seconds(31),
                Some(Step::Connect(backoff)),
            ),
            (
                Via::Local,
                0,
                true,
                false,
                seconds(99),
                Some(Step::Poll(backoff)),
            ),
        ];
        for (via, reports, has_legacy, has_grpc, legacy_for, expected) in cases {
            assert_eq!(
                after_failure(via, reports, has_legacy, has_grpc, legacy_for, timing, backoff),
                expected,
                "{via:?} {reports} {has_legacy} {has_grpc} {legacy_for:?}"
            );
        }
        assert_eq!(
            after_legacy_poll(true, None, timing, backoff),
            Step::Connect(backoff)
        );
        assert_eq!(
            after_legacy_poll(false, None, timing, backoff),
            Step::Poll(backoff)
        );
    }
}
