//! The request-parameter parser (`Params::from_request`, §3.4): query, content type and body as the HTTP layer hands them over.
//!
//! Input: a flag byte (bit 0: a query string is present; bits 1–2: no content type, form,
//! form with charset, `text/plain`), then the query, a NUL, the body.

use x2gobroker::http::request::{ParamLimits, Params, KNOWN_NAMES};

const CONTENT_TYPES: [Option<&str>; 4] = [
    None,
    Some("application/x-www-form-urlencoded"),
    Some("application/x-www-form-urlencoded; charset=UTF-8"),
    Some("text/plain"),
];

fn blanked(c: char) -> char {
    match c {
        '\u{00}'..='\u{08}' | '\u{0e}'..='\u{1f}' => ' ',
        other => other,
    }
}

/// Parses, reads every known name both ways, and checks a percent-encoding round trip.
pub fn http_params(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let parts = crate::pieces(rest, 2);
    let query_text = String::from_utf8_lossy(parts[0]);
    let query = (flags & 1 != 0).then_some(query_text.as_ref());
    let content_type = CONTENT_TYPES[usize::from((flags >> 1) & 3)];
    let body = parts[1];
    let limits = ParamLimits::broker(64);
    let few = Params::from_request(query, content_type, body, &ParamLimits::broker(2));
    let Ok(params) = Params::from_request(query, content_type, body, &limits) else {
        assert!(
            few.is_err(),
            "a lower limit accepted what a higher one refused"
        );
        return;
    };
    if let Ok(few) = few {
        assert_eq!(few, params, "the limit changed what was kept");
    }
    for name in KNOWN_NAMES {
        let raw = params.get(name, false);
        let stripped = params.get(name, true);
        match (raw, stripped) {
            (Ok(raw), Ok(stripped)) => {
                assert_eq!(raw.as_deref().map(str::trim), stripped.as_deref());
                if let Some(value) = &raw {
                    assert!(
                        value.chars().all(|c| blanked(c) == c),
                        "control character left in {name}: {value:?}"
                    );
                }
            }
            (Err(raw), Err(stripped)) => {
                assert_eq!(raw.0, *name);
                assert_eq!(stripped.0, *name);
            }
            (raw, stripped) => panic!("strip changed validity of {name}: {raw:?} {stripped:?}"),
        }
        assert_eq!(
            params.get_or_empty(name, true).ok(),
            params
                .get(name, true)
                .ok()
                .map(|value| value.unwrap_or_default())
        );
    }
    // Any text, form-encoded as the value of `user`, reads back (control characters blanked).
    let value = String::from_utf8_lossy(body);
    let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let query = format!("task=listsessions&user={encoded}");
    let read_back = Params::from_request(Some(&query), None, b"", &limits)
        .expect("two pairs are within the limit");
    let expected: String = value.chars().map(blanked).collect();
    assert_eq!(read_back.get("user", false), Ok(Some(expected)));
}
