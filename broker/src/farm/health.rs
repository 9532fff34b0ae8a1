//! A server's health machine, pure: Down → (report) Degraded → (report) Up, failures, back-off, the port probes during a back-off, and the next step.
//!
//! The supervisor owns one [`HealthMachine`] per server and only applies what it answers:
//! which health to announce, and when to connect or poll next. No clock is read here; the
//! caller passes elapsed times and the jitter draw.
//!
//! While a server is in a back-off longer than [`PROBE_INTERVAL`], its agent's TCP port is
//! probed with a plain connect ([`ProbeSchedule`]): at once after the failure, then once per
//! [`PROBE_INTERVAL`] until the back-off ends. A probe that finds the port open after one
//! found it closed means the agent was restarted: the retry starts at once and its failures
//! start over, so it is back within about a second instead of after the back-off (up to
//! 15 s). A port that stays open (a hung agent, one that answers garbage or refuses the
//! broker) never brings the retry forward: its back-off alone paces the real attempts. So a
//! server that stays down sees about one connection a second, however long it stays down.

use super::model::{Health, Via};
use std::time::Duration;

/// The first retry after a failure; each further failure doubles it, up to the cap.
pub const BASE_BACKOFF: Duration = Duration::from_millis(200);

/// How often the port of a server in back-off is probed (while it is closed).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long one probe (a plain TCP connect) may take; a probe that times out found the
/// port closed.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

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

    /// A probe found the agent's port open again after it had been closed: a new agent
    /// process, so its failures start over (if its first attempt fails, say its first report
    /// comes late, the next one follows after 200 ms rather than the capped back-off).
    pub fn on_agent_back(&mut self) {
        self.failures = 0;
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

/// Whether a failure whose retry is `backoff` away starts probing the port: only when there
/// is a port to probe (gRPC, SSH; not LOCAL) and a probe can bring the retry forward.
pub fn probe_after_failure(has_port: bool, backoff: Duration) -> bool {
    has_port && backoff > PROBE_INTERVAL
}

/// What a probe of the port means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterProbe {
    /// The port was closed and accepts now: the agent is back, retry at once.
    RetryNow,
    /// Probe again after this delay.
    ProbeAgain(Duration),
    /// The retry comes before the next probe would: wait for it.
    Wait,
}

/// The probes of one back-off: whether the port was seen closed since the failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeSchedule {
    seen_closed: bool,
}

impl ProbeSchedule {
    /// A probe found the port open (`accepted`) or not, with the retry still `until_retry`
    /// away. Open after closed: the agent is back. Open all along (the agent itself failed:
    /// hung, garbage, refused us): nothing is brought forward.
    pub fn on_probe(&mut self, accepted: bool, until_retry: Duration) -> AfterProbe {
        if accepted && self.seen_closed {
            return AfterProbe::RetryNow;
        }
        self.seen_closed |= !accepted;
        if until_retry > PROBE_INTERVAL {
            AfterProbe::ProbeAgain(PROBE_INTERVAL)
        } else {
            AfterProbe::Wait
        }
    }
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
    fn a_restarted_agent_starts_its_backoff_over() {
        let cap = Duration::from_secs(10);
        let mut machine = HealthMachine::default();
        machine.on_report();
        for _ in 0..8 {
            machine.on_failure(0);
        }
        assert_eq!(machine.backoff(cap, 0.0), cap);
        machine.on_agent_back();
        assert_eq!(machine.health(), Health::Down, "down until it reports");
        machine.on_failure(0);
        assert_eq!(machine.backoff(cap, 0.0), BASE_BACKOFF);
        assert_eq!(machine.on_report(), Health::Degraded, "still half-open");
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

    #[test]
    fn probes_table() {
        let ms = Duration::from_millis;
        // failures in a row, the first back-offs (no jitter): probing starts with the fourth
        let cap = Duration::from_secs(10);
        let starts: Vec<bool> = (1..=8)
            .map(|failures| {
                let mut machine = HealthMachine::default();
                for _ in 0..failures {
                    machine.on_failure(0);
                }
                probe_after_failure(true, machine.backoff(cap, 0.0))
            })
            .collect();
        assert_eq!(
            starts,
            [false, false, false, true, true, true, true, true],
            "200, 400, 800 ms: the retry comes before a probe would"
        );
        assert!(!probe_after_failure(false, ms(10_000)), "LOCAL: no port");
        let again = AfterProbe::ProbeAgain(PROBE_INTERVAL);
        // probes in one back-off as (accepted, until the retry, expected)
        let cases: &[&[(bool, Duration, AfterProbe)]] = &[
            // killed, then restarted: closed, closed, open
            &[
                (false, ms(9_000), again),
                (false, ms(8_000), again),
                (true, ms(7_000), AfterProbe::RetryNow),
            ],
            // restarted just before the retry: still brought forward
            &[
                (false, ms(1_500), again),
                (true, ms(100), AfterProbe::RetryNow),
            ],
            // hung or garbage: open all along, never brought forward
            &[
                (true, ms(9_000), again),
                (true, ms(8_000), again),
                (true, ms(1_000), AfterProbe::Wait),
            ],
            // a hung agent killed and restarted: open, closed, open
            &[
                (true, ms(9_000), again),
                (false, ms(8_000), again),
                (true, ms(7_000), AfterProbe::RetryNow),
            ],
            // still closed when the retry is due within a probe interval
            &[
                (false, ms(1_001), again),
                (false, ms(1_000), AfterProbe::Wait),
            ],
        ];
        for probes in cases {
            let mut schedule = ProbeSchedule::default();
            for (accepted, until_retry, expected) in probes.iter() {
                assert_eq!(
                    schedule.on_probe(*accepted, *until_retry),
                    *expected,
                    "{probes:?}"
                );
            }
        }
    }

    /// The probes and attempts a server sees in its first minute down (no jitter): about one
    /// probe a second whether its port stays closed or open, and the back-off's attempts.
    #[test]
    fn connections_to_a_server_that_stays_down() {
        let cap = Duration::from_secs(10);
        let minute = Duration::from_secs(60);
        for port_open in [false, true] {
            let mut machine = HealthMachine::default();
            let (mut now, mut attempts, mut probes) = (Duration::ZERO, 0u32, 0u32);
            while now < minute {
                attempts += 1;
                machine.on_failure(0);
                let backoff = machine.backoff(cap, 0.0);
                let retry_at = now + backoff;
                if probe_after_failure(true, backoff) {
                    let mut schedule = ProbeSchedule::default();
                    loop {
                        probes += 1;
                        match schedule.on_probe(port_open, retry_at - now) {
                            AfterProbe::ProbeAgain(after) => now += after,
                            AfterProbe::RetryNow => unreachable!("the port never changes"),
                            AfterProbe::Wait => break,
                        }
                    }
                }
                now = retry_at;
            }
            assert!(
                (9..=12).contains(&attempts) && (40..=66).contains(&probes),
                "port open {port_open}: {attempts} attempts, {probes} probes in a minute"
            );
            let per_second = f64::from(attempts + probes) / minute.as_secs_f64();
            assert!(per_second <= 1.3, "{per_second} connections a second");
        }
    }
}
