//! The broker's reading of legacy agent answers (§9): the `OK` framing, session lines, `findbusyservers`, `getservers` and `checkload` lines, with the agent's renderers read back.
//!
//! Input: the agent's stdout, a NUL, its stderr; the first 40 bytes also give five `checkload`
//! figures.

use std::collections::BTreeMap;
use x2gobroker::farm::agentcmd::{checkload_factor, session_from_line};
use x2gobroker_agent::servers::parse_getservers;
use x2gobroker_agent_protocol::{
    busy_percentages, load_factor, parse_busy_servers, parse_checkload, parse_server_counts,
    render_busy_servers, render_checkload, Answer, LoadFigures, LoadReading,
};

fn figures(data: &[u8]) -> Option<LoadFigures> {
    let mut numbers = data
        .chunks_exact(8)
        .map(|chunk| i64::from_le_bytes(chunk.try_into().unwrap_or_default()));
    Some(LoadFigures {
        loadavgxx: numbers.next()?,
        mem_avail_mb: numbers.next()?,
        my_mem_avail_mb: numbers.next()?,
        num_cpu: numbers.next()?,
        type_cpu_mhz: numbers.next()?,
    })
}

/// Reads the answer every way the broker does.
pub fn agent_answer(data: &[u8]) {
    let parts = crate::pieces(data, 2);
    let stdout = String::from_utf8_lossy(parts[0]);
    let stderr = String::from_utf8_lossy(parts[1]);
    let answer = Answer::parse(&stdout, &stderr);
    if answer.ok {
        assert!(stderr.is_empty() && stdout.starts_with("OK"));
        assert!(answer
            .lines
            .iter()
            .all(|line| !line.is_empty() && !line.contains('\n')));
    } else {
        assert!(answer.lines.is_empty());
    }
    // The data parsers, on the lines whether or not the answer was OK.
    let lines: Vec<String> = stdout.split('\n').map(str::to_owned).collect();
    for line in &lines {
        if let Some(view) = session_from_line(line) {
            assert_eq!(&view.raw_line, line);
            assert!(!view.session_id.is_empty());
        }
    }
    let _ = parse_busy_servers(&lines);
    let _ = checkload_factor(&lines);
    let _ = parse_getservers(&stdout);
    let counts: Vec<(String, u32)> = parse_server_counts(&lines).into_iter().collect();
    // What the agent renders from those counts reads back as the same percentages.
    let busy = busy_percentages(&counts);
    let total: u64 = counts.iter().map(|(_, count)| u64::from(*count)).sum();
    assert_eq!(busy.is_empty(), total == 0);
    assert!(busy.iter().all(|server| server.percent <= 100));
    let rendered = Answer::parse(&format!("OK\n{}", render_busy_servers(&busy)), "");
    assert!(rendered.ok);
    let expected: BTreeMap<String, u32> = busy
        .iter()
        .map(|server| (server.server.clone(), server.percent))
        .collect();
    assert_eq!(parse_busy_servers(&rendered.lines), expected);
    // The checkload figures read back exactly.
    if let Some(figures) = figures(data) {
        let rendered = Answer::parse(&format!("OK\n{}", render_checkload(&figures)), "");
        let reading = parse_checkload(&rendered.lines).expect("every figure is there");
        assert_eq!(reading, LoadReading::from(&figures));
        assert_eq!(load_factor(&reading), checkload_factor(&rendered.lines));
    }
}
