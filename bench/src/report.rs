//! Results and their tables (Markdown, so they go into bench/README.md as printed).

use crate::load::LoadResult;
use crate::procstat::Usage;
use std::fmt::Write as _;

/// One measured (server, scenario, concurrency).
#[derive(Debug, Clone)]
pub struct Measurement {
    pub target: String,
    pub scenario: String,
    pub concurrency: usize,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub usage: Usage,
}

impl Measurement {
    pub fn new(
        target: &str,
        scenario: &str,
        concurrency: usize,
        result: &LoadResult,
        usage: Usage,
    ) -> Measurement {
        Measurement {
            target: target.to_string(),
            scenario: scenario.to_string(),
            concurrency,
            rps: result.rps(),
            p50_ms: result.quantile_ms(0.50),
            p99_ms: result.quantile_ms(0.99),
            max_ms: result.quantile_ms(1.0),
            requests: result.requests,
            errors: result.errors,
            first_error: result.first_error.clone(),
            usage,
        }
    }

    /// One line for the progress log.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{:<9} {:<28} c={:<3} {:>9.1} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  rss {:>6.1} MB  cpu {:>4.0}%  ({} ok, {} errors)",
            self.target,
            self.scenario,
            self.concurrency,
            self.rps,
            self.p50_ms,
            self.p99_ms,
            mb(self.usage.peak_rss_kb),
            self.usage.cpu_cores * 100.0,
            self.requests,
            self.errors
        );
        if let Some(error) = &self.first_error {
            let _ = write!(line, "  first error: {error}");
        }
        line
    }
}

/// kB to MB.
pub fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn ratio(ours: f64, reference: f64) -> String {
    if reference <= 0.0 || ours <= 0.0 {
        return "–".to_string();
    }
    let value = ours / reference;
    if value >= 100.0 {
        format!("{value:.0}×")
    } else if value >= 10.0 {
        format!("{value:.1}×")
    } else {
        format!("{value:.2}×")
    }
}

fn find<'a>(
    rows: &'a [Measurement],
    target: &str,
    scenario: &str,
    concurrency: usize,
) -> Option<&'a Measurement> {
    rows.iter().find(|row| {
        row.target == target && row.scenario == scenario && row.concurrency == concurrency
    })
}

fn cell_rps(row: Option<&Measurement>) -> String {
    match row {
        Some(row) if row.errors > 0 && row.requests == 0 => "failed".to_string(),
        Some(row) => format!("{:.0}", row.rps),
        None => "–".to_string(),
    }
}

fn cell_ms(row: Option<&Measurement>, pick: fn(&Measurement) -> f64) -> String {
    match row {
        Some(row) if row.requests > 0 => format_ms(pick(row)),
        _ => "–".to_string(),
    }
}

/// Milliseconds with a precision that suits their size.
pub fn format_ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn cell_rss(row: Option<&Measurement>) -> String {
    match row {
        Some(row) => format!("{:.1}", mb(row.usage.peak_rss_kb)),
        None => "–".to_string(),
    }
}

/// The ours-vs-reference table: one line per (scenario, concurrency).
pub fn comparison_table(
    rows: &[Measurement],
    scenarios: &[String],
    concurrencies: &[usize],
) -> String {
    let mut table = String::from(
        "| scenario | c | ours req/s | ref req/s | ratio req/s | ours p50 ms | ref p50 ms | ours p99 ms | ref p99 ms | ratio p99 (ref/ours) | ours RSS MB | ref RSS MB | ratio RSS (ours/ref) | ours errors | ref errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for scenario in scenarios {
        for &concurrency in concurrencies {
            let ours = find(rows, "ours", scenario, concurrency);
            let reference = find(rows, "reference", scenario, concurrency);
            if ours.is_none() && reference.is_none() {
                continue;
            }
            let p99_ratio = match (ours, reference) {
                (Some(ours), Some(reference)) if ours.requests > 0 && reference.requests > 0 => {
                    ratio(reference.p99_ms, ours.p99_ms)
                }
                _ => "–".to_string(),
            };
            let rps_ratio = match (ours, reference) {
                (Some(ours), Some(reference)) => ratio(ours.rps, reference.rps),
                _ => "–".to_string(),
            };
            let rss_ratio = match (ours, reference) {
                (Some(ours), Some(reference)) => ratio(
                    ours.usage.peak_rss_kb as f64,
                    reference.usage.peak_rss_kb as f64,
                ),
                _ => "–".to_string(),
            };
            let errors = |row: Option<&Measurement>| {
                row.map_or("–".to_string(), |row| row.errors.to_string())
            };
            let _ = writeln!(
                table,
                "| {scenario} | {concurrency} | {} | {} | {rps_ratio} | {} | {} | {} | {} | {p99_ratio} | {} | {} | {rss_ratio} | {} | {} |",
                cell_rps(ours),
                cell_rps(reference),
                cell_ms(ours, |row| row.p50_ms),
                cell_ms(reference, |row| row.p50_ms),
                cell_ms(ours, |row| row.p99_ms),
                cell_ms(reference, |row| row.p99_ms),
                cell_rss(ours),
                cell_rss(reference),
                errors(ours),
                errors(reference),
            );
        }
    }
    table
}

/// Our throughput as a fraction of the bare "hello" server's, for the same request.
pub fn ceiling_table(
    rows: &[Measurement],
    pairs: &[(String, String)],
    concurrencies: &[usize],
) -> String {
    let mut table = String::from(
        "| request | c | hello req/s | hello p99 ms | hello RSS MB | ours scenario | ours req/s | fraction of ceiling |\n|---|---:|---:|---:|---:|---|---:|---:|\n",
    );
    for (hello_scenario, ours_scenario) in pairs {
        for &concurrency in concurrencies {
            let hello = find(rows, "hello", hello_scenario, concurrency);
            let ours = find(rows, "ours", ours_scenario, concurrency);
            if hello.is_none() {
                continue;
            }
            let fraction = match (hello, ours) {
                (Some(hello), Some(ours)) if hello.rps > 0.0 => {
                    format!("{:.0} %", 100.0 * ours.rps / hello.rps)
                }
                _ => "–".to_string(),
            };
            let _ = writeln!(
                table,
                "| {hello_scenario} | {concurrency} | {} | {} | {} | {ours_scenario} | {} | {fraction} |",
                cell_rps(hello),
                cell_ms(hello, |row| row.p99_ms),
                cell_rss(hello),
                cell_rps(ours),
            );
        }
    }
    table
}

/// Every measurement, with CPU use, for the record.
pub fn raw_table(rows: &[Measurement]) -> String {
    let mut table = String::from(
        "| server | scenario | c | req/s | p50 ms | p99 ms | max ms | ok | errors | peak RSS MB | CPU (cores) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {:.1} | {:.2} |",
            row.target,
            row.scenario,
            row.concurrency,
            row.rps,
            format_ms(row.p50_ms),
            format_ms(row.p99_ms),
            format_ms(row.max_ms),
            row.requests,
            row.errors,
            mb(row.usage.peak_rss_kb),
            row.usage.cpu_cores
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, rps: f64, p99: f64, rss_kb: u64) -> Measurement {
        Measurement {
            target: target.into(),
            scenario: "listsessions".into(),
            concurrency: 64,
            rps,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            max_ms: p99,
            requests: 100,
            errors: 0,
            first_error: None,
            usage: Usage {
                peak_rss_kb: rss_kb,
                cpu_cores: 1.0,
            },
        }
    }

    #[test]
    fn ratios_are_ours_over_the_reference() {
        let rows = vec![
            row("ours", 12_000.0, 4.0, 10_240),
            row("reference", 60.0, 800.0, 56_320),
            row("hello", 40_000.0, 2.0, 5_120),
        ];
        let table = comparison_table(&rows, &["listsessions".into()], &[64]);
        assert!(table.contains("| listsessions | 64 | 12000 | 60 | 200× | 2.0 | 400 | 4.0 | 800 | 200× | 10.0 | 55.0 | 0.18× | 0 | 0 |"), "{table}");
        let ceiling = ceiling_table(
            &rows,
            &[("listsessions".into(), "listsessions".into())],
            &[64],
        );
        assert!(ceiling.contains("| 30 % |"), "{ceiling}");
    }
}
