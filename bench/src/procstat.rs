//! Resource figures of a process from /proc: resident memory (VmRSS, VmHWM), CPU time (utime + stime) and open files.

use std::time::Duration;
use tokio::time::Instant;

/// Kernel clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on every Linux we run on).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kb(&text, field)
}

fn parse_status_kb(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// CPU time the process used so far: user + system of all its threads, plus that of its
/// children it has waited for (the reference runs its local agent as a child process).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&text)
        .map(|ticks| Duration::from_secs_f64(ticks as f64 / CLOCK_TICKS_PER_SECOND))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // the command name may contain spaces and parentheses: fields start after the last ')'
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after the name: state(0) ppid(1) … utime is field 14 of the line, index 11 here;
    // then stime, cutime, cstime
    let ticks = |index: usize| -> Option<u64> { fields.get(index)?.parse().ok() };
    Some(ticks(11)? + ticks(12)? + ticks(13)? + ticks(14)?)
}

/// How many files (sockets included) the process has open (0 when /proc cannot tell).
pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Resets the process's peak resident size (VmHWM) to its current size, where the kernel
/// allows it (`echo 5 > /proc/PID/clear_refs`, needs the right to write there).
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// What a process used during one measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Peak resident memory in kB (VmHWM after a reset, else the sampled VmRSS maximum).
    pub peak_rss_kb: u64,
    /// CPU time used during the window as a share of one core (1.0 = one core busy).
    pub cpu_cores: f64,
}

/// Measures one process over a window: call [`Window::finish`] at its end.
#[derive(Debug)]
pub struct Window {
    pid: u32,
    started: Instant,
    cpu_at_start: Option<Duration>,
    peak_reset: bool,
    sampled_peak_kb: u64,
}

impl Window {
    /// Starts a window on `pid` (resetting its peak RSS if possible).
    pub fn start(pid: u32) -> Window {
        let peak_reset = reset_peak(pid);
        Window {
            pid,
            started: Instant::now(),
            cpu_at_start: cpu_time(pid),
            peak_reset,
            sampled_peak_kb: status_kb(pid, "VmRSS").unwrap_or(0),
        }
    }

    /// Takes one VmRSS sample (call every ~100 ms during the window as a fallback).
    pub fn sample(&mut self) {
        if let Some(rss) = status_kb(self.pid, "VmRSS") {
            self.sampled_peak_kb = self.sampled_peak_kb.max(rss);
        }
    }

    /// The usage over the window.
    pub fn finish(mut self) -> Usage {
        self.sample();
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        let cpu_cores = match (self.cpu_at_start, cpu_time(self.pid)) {
            (Some(start), Some(end)) => end.saturating_sub(start).as_secs_f64() / elapsed,
            _ => 0.0,
        };
        let hwm = if self.peak_reset {
            status_kb(self.pid, "VmHWM").unwrap_or(0)
        } else {
            0
        };
        Usage {
            peak_rss_kb: hwm.max(self.sampled_peak_kb),
            cpu_cores,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_kb() {
        let text = "Name:\tx\nVmHWM:\t   56288 kB\nVmRSS:\t   51200 kB\n";
        assert_eq!(parse_status_kb(text, "VmHWM"), Some(56288));
        assert_eq!(parse_status_kb(text, "VmRSS"), Some(51200));
        assert_eq!(parse_status_kb(text, "VmSwap"), None);
    }

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 3 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(310));
    }

    #[test]
    fn our_own_process_has_figures() {
        let pid = std::process::id();
        assert!(status_kb(pid, "VmRSS").unwrap() > 0);
        assert!(cpu_time(pid).is_some());
    }
}
