//! Request parameters as Tornado reads them (§3.4): query and body merged, last value wins, control characters blanked.

/// A parameter value that is not valid UTF-8 (Tornado answers 400).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid unicode in parameter {0:?}")]
pub struct InvalidParameter(pub String);

/// All `name=value` pairs of a request, percent-decoded, in arrival order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn percent_decode_plus(bytes: &[u8]) -> Vec<u8> {
    let with_spaces: Vec<u8> = bytes
        .iter()
        .map(|byte| if *byte == b'+' { b' ' } else { *byte })
        .collect();
    percent_encoding::percent_decode(&with_spaces).collect()
}

impl Params {
    /// Appends the pairs of a query string (`keep_blank` keeps `name=` with empty values).
    pub fn add_query_string(&mut self, text: &[u8], keep_blank: bool) {
        for piece in text.split(|byte| *byte == b'&') {
            if piece.is_empty() {
                continue;
            }
            let (name, value) = match piece.iter().position(|byte| *byte == b'=') {
                Some(at) => (&piece[..at], &piece[at + 1..]),
                None if keep_blank => (piece, &b""[..]),
                None => continue,
            };
            if value.is_empty() && !keep_blank {
                continue;
            }
            self.pairs
                .push((percent_decode_plus(name), percent_decode_plus(value)));
        }
    }

    /// Builds the parameters of a request (§3.4): query string, then the form body; a body
    /// whose content type is not form-urlencoded is parsed as a query string too (the
    /// x2goclient bug #138 workaround, blank values dropped).
    pub fn from_request(query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Params {
        let mut params = Params::default();
        if let Some(query) = query {
            params.add_query_string(query.as_bytes(), true);
        }
        let is_form = content_type
            .map(|value| value.starts_with("application/x-www-form-urlencoded"))
            .unwrap_or(false);
        if is_form {
            params.add_query_string(body, true);
        } else if !body.is_empty() {
            params.add_query_string(body, false);
        }
        params
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

    #[test]
    fn query_and_body_merge_with_the_last_value_winning() {
        let params = Params::from_request(
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
        let params =
            Params::from_request(None, Some("text/plain"), b"user=maja&task=&sid=a-single");
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
        let params = Params::from_request(
            None,
            Some("application/x-www-form-urlencoded"),
            b"user=%20%20maja%01%20&password=%20x%01&bad=%ff",
        );
        assert_eq!(params.get("user", true).unwrap().as_deref(), Some("maja"));
        assert_eq!(
            params.get("password", false).unwrap().as_deref(),
            Some(" x ")
        );
        assert!(params.get("bad", true).is_err());
    }
}
