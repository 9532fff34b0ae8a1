//! The `checkload` answer (§9.3): the five figures the agent prints, how the broker reads
//! them, and the one load-factor formula both the broker (from the lines) and the agent (for
//! its gRPC `Load` message) use.

use thiserror::Error;

/// The five `checkload` figures as the agent prints them (already truncated like Perl's `%d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadFigures {
    /// (load1 + load5 + load15) × 100 / 3 + 1
    pub loadavgxx: i64,
    /// MemAvailable in MB (kB / 1000)
    pub mem_avail_mb: i64,
    /// Kernel-style estimate of available memory in MB
    pub my_mem_avail_mb: i64,
    pub num_cpu: i64,
    /// CPU clock in MHz
    pub type_cpu_mhz: i64,
}

/// The `checkload` output after the `OK` line.
pub fn render_checkload(figures: &LoadFigures) -> String {
    format!(
        "loadavgXX:{}\nmemAvail:{}\nmyMemAvail:{}\nnumCPU:{}\ntypeCPU:{}\n",
        figures.loadavgxx,
        figures.mem_avail_mb,
        figures.my_mem_avail_mb,
        figures.num_cpu,
        figures.type_cpu_mhz
    )
}

/// The figures as the reference broker reads them: floats, `myMemAvail` only needed when
/// `memAvail` is 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadReading {
    pub loadavgxx: f64,
    pub mem_avail: f64,
    pub my_mem_avail: Option<f64>,
    pub num_cpu: f64,
    pub type_cpu: f64,
}

impl From<&LoadFigures> for LoadReading {
    fn from(figures: &LoadFigures) -> LoadReading {
        LoadReading {
            loadavgxx: figures.loadavgxx as f64,
            mem_avail: figures.mem_avail_mb as f64,
            my_mem_avail: Some(figures.my_mem_avail_mb as f64),
            num_cpu: figures.num_cpu as f64,
            type_cpu: figures.type_cpu_mhz as f64,
        }
    }
}

/// Why `checkload` gave no load factor (the reference's `LOAD-DATA-BOGUS`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoadError {
    #[error("load data bogus: no numeric {0}")]
    Missing(&'static str),
    #[error("load data bogus: loadavgXX is 0")]
    ZeroLoad,
}

/// Reads the `key:value` data lines of a `checkload` answer (values as floats; lines that
/// are not `key:number` are ignored; a later line wins).
pub fn parse_checkload(lines: &[String]) -> Result<LoadReading, LoadError> {
    let value = |key: &'static str| -> Option<f64> {
        lines
            .iter()
            .filter_map(|line| line.split_once(':'))
            .filter(|(name, _)| *name == key)
            .filter_map(|(_, number)| number.trim().parse().ok())
            .next_back()
    };
    let required = |key: &'static str| value(key).ok_or(LoadError::Missing(key));
    Ok(LoadReading {
        loadavgxx: required("loadavgXX")?,
        mem_avail: required("memAvail")?,
        my_mem_avail: value("myMemAvail"),
        num_cpu: required("numCPU")?,
        type_cpu: required("typeCPU")?,
    })
}

/// §9.3: `int((memAvail/1000) × numCPU × typeCPU × 100 / loadavgXX)` in float arithmetic,
/// truncated toward zero; `myMemAvail` stands in when `memAvail` is 0.
pub fn load_factor(reading: &LoadReading) -> Result<i64, LoadError> {
    let memory = if reading.mem_avail == 0.0 {
        reading
            .my_mem_avail
            .ok_or(LoadError::Missing("myMemAvail"))?
    } else {
        reading.mem_avail
    };
    if reading.loadavgxx == 0.0 {
        return Err(LoadError::ZeroLoad);
    }
    let factor = (memory / 1000.0) * reading.num_cpu * reading.type_cpu * 100.0 / reading.loadavgxx;
    Ok(factor.trunc() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn load_factor_of_figures_matches_reference_vectors() {
        let table = [
            // (memAvail, myMemAvail, numCPU, typeCPU, loadavgXX) => factor
            ((7800, 0, 4, 2400, 51), Ok(146823)),
            ((0, 3000, 2, 1800, 201), Ok(5373)),
            ((0, 0, 2, 1800, 201), Ok(0)),
            ((7800, 0, 4, 2400, 0), Err(LoadError::ZeroLoad)),
        ];
        for ((mem, my_mem, cpus, mhz, average), expected) in table {
            let figures = LoadFigures {
                loadavgxx: average,
                mem_avail_mb: mem,
                my_mem_avail_mb: my_mem,
                num_cpu: cpus,
                type_cpu_mhz: mhz,
            };
            assert_eq!(
                load_factor(&LoadReading::from(&figures)),
                expected,
                "{figures:?}"
            );
            // the agent prints, the broker reads: the same factor
            let read = parse_checkload(&lines(&render_checkload(&figures))).unwrap();
            assert_eq!(load_factor(&read), expected, "{figures:?} read back");
        }
    }

    #[test]
    fn checkload_lines() {
        let table = [
            (
                "loadavgXX:51\nmemAvail:7800\nmyMemAvail:7900\nnumCPU:4\ntypeCPU:2400",
                Ok(146823),
            ),
            (
                "loadavgXX:201\nmemAvail:0\nmyMemAvail:3000\nnumCPU:2\ntypeCPU:1800",
                Ok(5373),
            ),
            (
                "loadavgXX:201\nnumCPU:2",
                Err(LoadError::Missing("memAvail")),
            ),
            (
                "loadavgXX:201\nmemAvail:0\nnumCPU:2\ntypeCPU:1800",
                Err(LoadError::Missing("myMemAvail")),
            ),
            (
                "loadavgXX:1.5\nmemAvail: 1000\nnumCPU:1\ntypeCPU:3\nnoise",
                Ok(200),
            ),
            (
                "loadavgXX:x\nmemAvail:1\nnumCPU:1\ntypeCPU:1",
                Err(LoadError::Missing("loadavgXX")),
            ),
        ];
        for (text, expected) in table {
            let factor = parse_checkload(&lines(text)).and_then(|reading| load_factor(&reading));
            assert_eq!(factor, expected, "{text:?}");
        }
    }

    #[test]
    fn rendering() {
        let figures = LoadFigures {
            loadavgxx: 166,
            mem_avail_mb: 24046,
            my_mem_avail_mb: 24150,
            num_cpu: 2,
            type_cpu_mhz: 2597,
        };
        assert_eq!(
            render_checkload(&figures),
            "loadavgXX:166\nmemAvail:24046\nmyMemAvail:24150\nnumCPU:2\ntypeCPU:2597\n"
        );
    }
}
