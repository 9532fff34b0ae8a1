//! Server load, as the legacy `checkload` task reports it (spec §9.3): the five figures
//! computed from /proc. The computations are pure functions of the /proc texts; [`read_load`]
//! does the I/O. The figures' text form and the load factor are the protocol crate's.

use std::io;

pub use x2gobroker_agent_protocol::LoadFigures;

/// The /proc files the figures come from.
pub const LOADAVG_PATH: &str = "/proc/loadavg";
pub const MEMINFO_PATH: &str = "/proc/meminfo";
pub const MIN_FREE_KBYTES_PATH: &str = "/proc/sys/vm/min_free_kbytes";
pub const CPUINFO_PATH: &str = "/proc/cpuinfo";

/// Reads /proc and computes the figures.
pub fn read_load() -> io::Result<LoadFigures> {
    let loadavg = std::fs::read_to_string(LOADAVG_PATH)?;
    let meminfo = std::fs::read_to_string(MEMINFO_PATH)?;
    let min_free_kbytes = std::fs::read_to_string(MIN_FREE_KBYTES_PATH)?;
    let cpuinfo = std::fs::read_to_string(CPUINFO_PATH)?;
    Ok(compute_load(&loadavg, &meminfo, &min_free_kbytes, &cpuinfo))
}

/// The reference agent's arithmetic (Perl floats, `%d` truncation toward zero).
pub fn compute_load(
    loadavg: &str,
    meminfo: &str,
    min_free_kbytes: &str,
    cpuinfo: &str,
) -> LoadFigures {
    let averages: Vec<f64> = loadavg.split(' ').take(3).map(perl_number).collect();
    let sum: f64 = averages.iter().sum();
    let mut loadavgxx = sum * 100.0 / 3.0 + 1.0;
    if loadavgxx < 1.0 {
        loadavgxx = 1.0;
    }

    let meminfo_value = |key: &str| -> f64 {
        meminfo
            .lines()
            .filter_map(|line| line.strip_prefix(key))
            .filter_map(|rest| rest.strip_prefix(':'))
            .filter(|rest| rest.starts_with(char::is_whitespace))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(perl_number)
            .next_back()
            .unwrap_or(0.0)
    };
    let mem_free = meminfo_value("MemFree");
    let mem_avail = meminfo_value("MemAvailable") / 1000.0;
    let active_file = meminfo_value("Active(file)");
    let inactive_file = meminfo_value("Inactive(file)");
    let slab_reclaimable = meminfo_value("SReclaimable");

    let watermark = perl_number(min_free_kbytes.trim_end_matches('\n'));
    let mut my_mem_avail = mem_free - watermark;
    let pagecache = active_file + inactive_file;
    my_mem_avail += pagecache - (pagecache / 2.0).min(watermark);
    my_mem_avail += slab_reclaimable - (slab_reclaimable / 2.0).min(watermark);
    if my_mem_avail < 0.0 {
        my_mem_avail = 0.0;
    }
    my_mem_avail /= 1000.0;

    let mut num_cpu = 0_i64;
    let mut type_cpu = 0.0_f64;
    for line in cpuinfo.lines() {
        if let Some(ghz) = model_name_ghz(line) {
            type_cpu = perl_number(ghz) * 1000.0;
            num_cpu += 1;
        }
    }
    if type_cpu == 0.0 {
        for line in cpuinfo.lines() {
            if let Some(mhz) = cpu_mhz(line) {
                type_cpu = perl_number(mhz).ceil();
                num_cpu += 1;
            }
        }
    }

    LoadFigures {
        loadavgxx: loadavgxx.trunc() as i64,
        mem_avail_mb: mem_avail.trunc() as i64,
        my_mem_avail_mb: my_mem_avail.trunc() as i64,
        num_cpu,
        type_cpu_mhz: type_cpu.trunc() as i64,
    }
}

/// `m/model name.*CPU.*@\ ([\d\.]+)/`: the last `@ <digits>` that follows a `CPU`.
fn model_name_ghz(line: &str) -> Option<&str> {
    let start = line.find("model name")? + "model name".len();
    let rest = &line[start..];
    let mut search_end = rest.len();
    while let Some(at) = rest[..search_end].rfind("@ ") {
        let digits_start = at + 2;
        let digits_len = rest[digits_start..]
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len() - digits_start);
        if digits_len > 0 && rest[..at].contains("CPU") {
            return Some(&rest[digits_start..digits_start + digits_len]);
        }
        search_end = at;
    }
    None
}

/// `m/^cpu\ MHz\s+:\s+(\S+)/`
fn cpu_mhz(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("cpu MHz")?;
    let after_blanks = rest.trim_start();
    if after_blanks.len() == rest.len() {
        return None;
    }
    let after_colon = after_blanks.strip_prefix(':')?;
    let value = after_colon.trim_start();
    if value.len() == after_colon.len() {
        return None;
    }
    value.split_whitespace().next()
}

/// Perl's numeric value of a string: the longest leading decimal number, else 0.
fn perl_number(text: &str) -> f64 {
    let text = text.trim_start();
    let mut end = 0;
    let mut seen_dot = false;
    let mut seen_digit = false;
    for (index, c) in text.char_indices() {
        match c {
            '-' | '+' if index == 0 => {}
            '0'..='9' => seen_digit = true,
            '.' if !seen_dot => seen_dot = true,
            _ => break,
        }
        end = index + c.len_utf8();
    }
    if !seen_digit {
        return 0.0;
    }
    text[..end].trim_end_matches('.').parse().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24578000 kB\nMemFree:        20000000 kB\nMemAvailable:   24046999 kB\nBuffers:          100000 kB\nActive(file):    2000000 kB\nInactive(file):  1000000 kB\nSReclaimable:     300000 kB\n";

    #[test]
    fn loadavg_formula() {
        let table = [
            ("0.00 0.00 0.00 1/100 1234\n", 1),
            ("1.00 1.00 1.00 1/100 1234\n", 101),
            ("0.50 0.40 0.30 2/300 99\n", 41),
            ("2.10 1.67 1.22 3/400 7\n", 167),
        ];
        for (loadavg, expected) in table {
            let figures = compute_load(loadavg, MEMINFO, "67584\n", "");
            assert_eq!(figures.loadavgxx, expected, "{loadavg:?}");
        }
    }

    #[test]
    fn memory_figures() {
        let figures = compute_load("0 0 0", MEMINFO, "67584\n", "");
        assert_eq!(figures.mem_avail_mb, 24046);
        // 20000000 - 67584 + (3000000 - 67584) + (300000 - 67584) = 23097248 kB
        assert_eq!(figures.my_mem_avail_mb, 23097);
        let small = compute_load("0 0 0", "MemFree: 1000 kB\n", "67584\n", "");
        assert_eq!(small.my_mem_avail_mb, 0, "negative estimate clamps to 0");
        assert_eq!(small.mem_avail_mb, 0, "missing MemAvailable counts as 0");
        // halves below the watermark are subtracted instead of the watermark
        let halves = compute_load(
            "0 0 0",
            "MemFree: 100000 kB\nActive(file): 1000 kB\nInactive(file): 1000 kB\nSReclaimable: 400 kB\n",
            "10000",
            "",
        );
        assert_eq!(halves.my_mem_avail_mb, (100000 - 10000 + 1000 + 200) / 1000);
    }

    #[test]
    fn cpu_figures() {
        let intel = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\ncpu MHz\t\t: 1200.000\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\ncpu MHz\t\t: 1200.000\n";
        let figures = compute_load("0 0 0", MEMINFO, "1", intel);
        assert_eq!((figures.num_cpu, figures.type_cpu_mhz), (2, 2400));
        let amd = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2596.142\nprocessor\t: 1\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2596.142\n";
        let figures = compute_load("0 0 0", MEMINFO, "1", amd);
        assert_eq!((figures.num_cpu, figures.type_cpu_mhz), (2, 2597));
        let nothing = compute_load("0 0 0", MEMINFO, "1", "");
        assert_eq!((nothing.num_cpu, nothing.type_cpu_mhz), (0, 0));
    }

    #[test]
    fn model_name_pattern() {
        let table = [
            ("model name : Intel CPU @ 2.40GHz", Some("2.40")),
            (
                "model name : Intel(R) Core(TM) i7 CPU 920 @ 2.67GHz",
                Some("2.67"),
            ),
            ("model name : AMD EPYC", None),
            ("model name : Foo @ 2.0GHz", None),
            ("cpu model : CPU @ 2.0GHz", None),
        ];
        for (line, expected) in table {
            assert_eq!(model_name_ghz(line), expected, "{line:?}");
        }
        assert_eq!(cpu_mhz("cpu MHz\t\t: 2596.142"), Some("2596.142"));
        assert_eq!(cpu_mhz("cpu MHz: 1"), None);
    }

    #[test]
    fn real_proc() {
        let real = read_load().expect("/proc is readable");
        assert!(real.loadavgxx >= 1);
        assert!(real.num_cpu >= 1);
    }

    #[test]
    fn perl_numbers() {
        let table = [
            ("2.40", 2.4),
            ("1.", 1.0),
            ("x", 0.0),
            ("", 0.0),
            (" 12ab", 12.0),
            ("-3.5", -3.5),
        ];
        for (text, expected) in table {
            assert_eq!(perl_number(text), expected, "{text:?}");
        }
    }
}
