//! The auth service's wire protocol (`LineBuffer`, §6.4): `<user>\r<password>\r<service>\n` lines however the bytes arrive.
//!
//! Input: a byte choosing the read sizes (1, 2, … up to its value mod 16 + 1, cycling), then
//! the bytes a client sends.

use x2gobroker_authservice::protocol::{
    is_valid_service, Line, LineBuffer, DEFAULT_SERVICE, MAX_LINE_BYTES,
};

/// What one complete line (without its `\n`) must parse to.
fn check_line(raw: &[u8], line: &Line) {
    let fields: Option<Vec<&str>> = std::str::from_utf8(raw)
        .ok()
        .map(|text| text.split('\r').collect());
    match (fields.as_deref(), line) {
        (Some([user, password, service]), Line::Request(request)) => {
            assert_eq!(request.user, *user);
            assert_eq!(request.password.as_str(), *password);
            let service = if service.is_empty() {
                DEFAULT_SERVICE
            } else {
                service
            };
            assert_eq!(request.service, service);
            let shown = format!("{request:?}");
            let elsewhere = format!(
                "Request {{ user: {user:?}, password: \"<hidden>\", service: {service:?} }}"
            );
            assert_eq!(shown, elsewhere, "Debug shows more than user and service");
            if is_valid_service(&request.service) {
                assert!(!request.service.contains('/') && request.service.len() <= 64);
            }
        }
        (Some(fields), Line::Malformed) => assert_ne!(fields.len(), 3),
        (None, Line::Malformed) => {}
        (fields, line) => panic!("{raw:?} split as {fields:?} parsed as {line:?}"),
    }
}

/// Feeds the bytes in one piece and in chunks; both must give the lines the bytes hold.
pub fn authservice(data: &[u8]) {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let mut whole = LineBuffer::default();
    let whole_lines = whole.push(bytes);
    let tail = bytes.len()
        - bytes
            .iter()
            .rposition(|byte| *byte == b'\n')
            .map_or(0, |at| at + 1);
    assert_eq!(whole_lines.is_err(), tail > MAX_LINE_BYTES);
    let Ok(whole_lines) = whole_lines else {
        return;
    };
    assert_eq!(whole.has_partial_line(), tail > 0);
    let complete = &bytes[..bytes.len() - tail];
    let raw_lines: Vec<&[u8]> = complete
        .split(|byte| *byte == b'\n')
        .take(whole_lines.len())
        .collect();
    assert_eq!(raw_lines.len(), whole_lines.len());
    assert_eq!(
        whole_lines.len(),
        complete.iter().filter(|byte| **byte == b'\n').count()
    );
    for (raw, line) in raw_lines.iter().zip(&whole_lines) {
        check_line(raw, line);
    }
    let cycle = usize::from(seed % 16) + 1;
    let mut chunked = LineBuffer::default();
    let mut chunked_lines = Vec::new();
    let mut at = 0;
    for size in (1..=cycle).cycle() {
        if at >= bytes.len() {
            break;
        }
        let end = (at + size).min(bytes.len());
        match chunked.push(&bytes[at..end]) {
            Ok(lines) => chunked_lines.extend(lines),
            Err(_) => return, // a longer partial line than one piece had: refused earlier
        }
        at = end;
    }
    assert_eq!(chunked_lines, whole_lines);
    assert_eq!(chunked.has_partial_line(), whole.has_partial_line());
}
