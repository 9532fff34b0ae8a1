//! Request parameters as Tornado reads them (§3.4): query and body merged, last value wins, control characters blanked; only the names the broker reads are kept, and only so many.

/// A parameter value that is not valid UTF-8 (Tornado answers 400).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid unicode in parameter {0:?}")]
pub struct InvalidParameter(pub String);

/// A request with more pairs of known names than the limit (answered 400).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("more than {0} request parameters")]
pub struct TooManyParameters(pub usize);

/// The parameter names the broker reads (`/plain/`, `/json/`); every other pair of a request
/// is skipped without being decoded or stored.
pub const KNOWN_NAMES: &[&str] = &[
    "task",
    "user",
    "login",
    "password",
    "authid",
    "sid",
    "profile-id",
    "pubkey",
];

/// What a request's parameters may cost: which names are kept, and how many pairs of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamLimits {
    pub known: &'static [&'static str],
    pub max_pairs: usize,
}

impl ParamLimits {
    /// The broker's names, at most `max_pairs` pairs of them.
    pub fn broker(max_pairs: usize) -> ParamLimits {
        ParamLimits {
            known: KNOWN_NAMES,
            max_pairs,
        }
    }
}

/// The `name=value` pairs of a request with known names, percent-decoded, in arrival order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Longest raw name that can decode to a known one (every byte percent-encoded).
fn longest_raw_name(known: &[&str]) -> usize {
    known.iter().map(|name| name.len() * 3).max().unwrap_or(0)
}

fn percent_decode_plus(bytes: &[u8]) -> Vec<u8> {
    let with_spaces: Vec<u8> = bytes
        .iter()
        .map(|byte| if *byte == b'+' { b' ' } else { *byte })
        .collect();
    percent_encoding::percent_decode(&with_spaces).collect()
}

impl Params {
    /// Appends the pairs of a query string with a name of `limits.known` (`keep_blank` keeps
    /// `name=` with empty values). One pass, no allocation for pairs that are skipped.
    fn add_query_string(
        &mut self,
        text: &[u8],
        keep_blank: bool,
        limits: &ParamLimits,
    ) -> Result<(), TooManyParameters> {
        let longest = longest_raw_name(limits.known);
        for piece in text.split(|byte| *byte == b'&') {
            if piece.is_empty() {
                continue;
            }
            let (name, value) = match piece.iter().position(|byte| *byte == b'=') {
                Some(at) => (&piece[..at], &piece[at + 1..]),
                None if keep_blank => (piece, &b""[..]),
                None => continue,
            };
            if (value.is_empty() && !keep_blank) || name.len() > longest {
                continue;
            }
            let is_known = |name: &[u8]| limits.known.iter().any(|known| known.as_bytes() == name);
            let name = if name.iter().any(|byte| matches!(byte, b'%' | b'+')) {
                let decoded = percent_decode_plus(name);
                if !is_known(&decoded) {
                    continue;
                }
                decoded
            } else if is_known(name) {
                name.to_vec()
            } else {
                continue;
            };
            if self.pairs.len() == limits.max_pairs {
                return Err(TooManyParameters(limits.max_pairs));
            }
            self.pairs.push((name, percent_decode_plus(value)));
        }
        Ok(())
    }

    /// Builds the parameters of a request (§3.4): query string, then the form body; a body
    /// whose content type is not form-urlencoded is parsed as a query string too (the
    /// x2goclient bug #138 workaround, blank values dropped). Only names of `limits.known`
    /// are kept, at most `limits.max_pairs` of them.
    pub fn from_request(
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
        limits: &ParamLimits,
    ) -> Result<Params, TooManyParameters> {
        let mut params = Params::default();
        if let Some(query) = query {
            params.add_query_string(query.as_bytes(), true, limits)?;
        }
        let is_form = content_type
            .map(|value| value.starts_with("application/x-www-form-urlencoded"))
            .unwrap_or(false);
        if is_form {
            params.add_query_string(body, true, limits)?;
        } else if !body.is_empty() {
            params.add_query_string(body, false, limits)?;
        }
        Ok(params)
    }

    /// The last value of `name`, decoded; control characters 0x00–0x08 and 0x0e–0x1f become
    /// spaces and, when `strip`, surrounding whitespace is removed.
    pub fn get(&self, name: &str, strip: bool) -> Result<Option<String>, InvalidParameter> {
        let Some((_, raw)) = self
            .pairs
            .iter()
            .rev()
            .find(|(key, _)| key.as_slice() == name.as_bytes())
        else {
            return Ok(None);
        };
        let text = std::str::from_utf8(raw).map_err(|_| InvalidParameter(name.to_string()))?;
        let cleaned: String = text
            .chars()
            .map(|c| match c {
                '\u{00}'..='\u{08}' | '\u{0e}'..='\u{1f}' => ' ',
                other => other,
            })
            .collect();
        Ok(Some(if strip {
            cleaned.trim().to_string()
        } else {
            cleaned
        }))
    }

    /// The last value of `name`, or the empty string.
    pub fn get_or_empty(&self, name: &str, strip: bool) -> Result<String, InvalidParameter> {
        Ok(self.get(name, strip)?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ParamLimits = ParamLimits {
        known: KNOWN_NAMES,
        max_pairs: 64,
    };

    fn parse(query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Params {
        Params::from_request(query, content_type, body, &LIMITS).unwrap()
    }

    #[test]
    fn query_and_body_merge_with_the_last_value_winning() {
        let params = parse(
            Some("task=selectsession&sid=a-single&user=willi"),
            Some("application/x-www-form-urlencoded"),
            b"user=maja&password=%20p%26s+w%20",
        );
        assert_eq!(params.get("user", true).unwrap().as_deref(), Some("maja"));
        assert_eq!(
            params.get("task", true).unwrap().as_deref(),
            Some("selectsession")
        );
        assert_eq!(
            params.get("password", false).unwrap().as_deref(),
            Some(" p&s w ")
        );
        assert_eq!(params.get("missing", true).unwrap(), None);
    }

    #[test]
    fn non_form_bodies_are_parsed_as_query_strings() {
        let params = parse(None, Some("text/plain"), b"user=maja&task=&sid=a-single");
        assert_eq!(params.get("user", true).unwrap().as_deref(), Some("maja"));
        assert_eq!(
            params.get("task", true).unwrap(),
            None,
            "blank values are dropped"
        );
        assert_eq!(
            params.get("sid", true).unwrap().as_deref(),
            Some("a-single")
        );
    }

    #[test]
    fn strips_and_blanks_control_characters() {
        let limits = ParamLimits {
            known: &["user", "password", "bad"],
            max_pairs: 8,
        };
        let params = Params::from_request(
            None,
            Some("application/x-www-form-urlencoded"),
            b"user=%20%20maja%01%20&password=%20x%01&bad=%ff",
            &limits,
        )
        .unwrap();
        assert_eq!(params.get("user", true).unwrap().as_deref(), Some("maja"));
        assert_eq!(
            params.get("password", false).unwrap().as_deref(),
            Some(" x ")
        );
        assert!(params.get("bad", true).is_err());
    }

    #[test]
    fn unknown_names_are_skipped_and_known_ones_capped() {
        let params = parse(
            Some("a=1&%75ser=encoded&pass%77ord=x"),
            Some("application/x-www-form-urlencoded"),
            b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=1&task=listsessions",
        );
        assert_eq!(params.pairs.len(), 3, "{params:?}");
        assert_eq!(
            params.get("user", true).unwrap().as_deref(),
            Some("encoded")
        );
        assert_eq!(params.get("a", true).unwrap(), None);
        // a megabyte of unknown pairs: nothing kept
        let flood = "a&".repeat(512 * 1024);
        let params = parse(
            None,
            Some("application/x-www-form-urlencoded"),
            flood.as_bytes(),
        );
        assert!(params.pairs.is_empty());
        // known names beyond the cap: refused
        let many = "user=x&".repeat(65);
        assert_eq!(
            Params::from_request(None, None, many.as_bytes(), &LIMITS),
            Err(TooManyParameters(64))
        );
        let enough = "user=x&".repeat(64);
        assert!(Params::from_request(None, None, enough.as_bytes(), &LIMITS).is_ok());
    }
}
