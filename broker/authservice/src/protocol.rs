//! The auth service wire protocol (§6.4): `<user>\r<password>\r<service>\n` lines in, `ok\n`/`fail\n`/`bad\n` out.
//!
//! Passwords are zeroised: the request's password is a [`Zeroizing`] string, and the bytes of
//! a line are overwritten once parsed, in the line buffer too (it never reallocates without
//! zeroing the old allocation, and what a line leaves behind when the rest moves up is zeroed).

use zeroize::{Zeroize, Zeroizing};

/// The longest line we accept (a request is a user name, a password and a service name).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// One complete line from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A well-formed request.
    Request(Request),
    /// A line that does not split into exactly three fields, or is not UTF-8.
    Malformed,
}

/// An authentication request. `Debug` never shows the password; it is zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub user: String,
    pub password: Zeroizing<String>,
    pub service: String,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Request")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("service", &self.service)
            .finish()
    }
}

/// The PAM service used when a request names none.
pub const DEFAULT_SERVICE: &str = "x2gobroker";

fn parse_line(line: &[u8]) -> Line {
    let Ok(text) = std::str::from_utf8(line) else {
        return Line::Malformed;
    };
    let fields: Vec<&str> = text.split('\r').collect();
    let [user, password, service] = fields.as_slice() else {
        return Line::Malformed;
    };
    let service = if service.is_empty() {
        DEFAULT_SERVICE
    } else {
        service
    };
    Line::Request(Request {
        user: user.to_string(),
        password: Zeroizing::new(password.to_string()),
        service: service.to_string(),
    })
}

/// Collects bytes from a connection and hands out complete lines, keeping the rest; every
/// byte it held is zeroed before its memory is given back.
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        self.pending.zeroize();
    }
}

/// Appends `bytes`; a growth copies into a new allocation and zeroes the old one.
fn append_zeroizing(buffer: &mut Vec<u8>, bytes: &[u8]) {
    if buffer.capacity() - buffer.len() < bytes.len() {
        let wanted = (buffer.len() + bytes.len()).next_power_of_two().max(1024);
        let mut grown = Vec::with_capacity(wanted);
        grown.extend_from_slice(buffer);
        buffer.zeroize();
        *buffer = grown;
    }
    buffer.extend_from_slice(bytes);
}

/// Takes the first `n` bytes out (zeroed when dropped); the rest moves up and the bytes it
/// leaves behind are zeroed.
fn take_front_zeroizing(buffer: &mut Vec<u8>, n: usize) -> Zeroizing<Vec<u8>> {
    let front = Zeroizing::new(buffer[..n].to_vec());
    let new_length = shift_out_zeroizing(buffer, n);
    buffer.truncate(new_length);
    front
}

/// Moves `bytes[n..]` to the front and zeroes everything behind it; the new length.
fn shift_out_zeroizing(bytes: &mut [u8], n: usize) -> usize {
    bytes.copy_within(n.., 0);
    let new_length = bytes.len() - n;
    bytes[new_length..].fill(0);
    new_length
}

/// Too many bytes without a line break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line longer than {MAX_LINE_BYTES} bytes")]
pub struct LineTooLong;

impl LineBuffer {
    /// Appends `bytes` and returns the lines completed by them, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Line>, LineTooLong> {
        append_zeroizing(&mut self.pending, bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|byte| *byte == b'\n') {
            let line = take_front_zeroizing(&mut self.pending, end + 1);
            lines.push(parse_line(&line[..line.len() - 1]));
        }
        if self.pending.len() > MAX_LINE_BYTES {
            return Err(LineTooLong);
        }
        Ok(lines)
    }

    /// Whether part of a line is waiting for its end.
    pub fn has_partial_line(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Whether a PAM service name is safe to hand to PAM (it names a file in /etc/pam.d).
pub fn is_valid_service(service: &str) -> bool {
    !service.is_empty()
        && service.len() <= 64
        && !service.starts_with('.')
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(user: &str, password: &str, service: &str) -> Line {
        Line::Request(Request {
            user: user.into(),
            password: Zeroizing::new(password.into()),
            service: service.into(),
        })
    }

    #[test]
    fn framing_table() {
        let mut buffer = LineBuffer::default();
        assert_eq!(buffer.push(b"x2gotest\rGolden-").unwrap(), vec![]);
        assert!(buffer.has_partial_line());
        assert_eq!(
            buffer.push(b"Pw-1\rx2gobroker\n").unwrap(),
            vec![request("x2gotest", "Golden-Pw-1", "x2gobroker")]
        );
        assert!(!buffer.has_partial_line());
        assert_eq!(
            buffer
                .push(b"a\rb\rs\nc\rpass word:\xc3\xa9\r\nonly-one-field\n")
                .unwrap(),
            vec![
                request("a", "b", "s"),
                request("c", "pass word:é", DEFAULT_SERVICE),
                Line::Malformed
            ]
        );
        assert_eq!(
            buffer.push(b"u\rp\rs\rextra\n\xff\r\xfe\rs\n").unwrap(),
            vec![Line::Malformed, Line::Malformed]
        );
        assert_eq!(
            buffer.push(&vec![b'x'; MAX_LINE_BYTES + 1]),
            Err(LineTooLong)
        );
    }

    #[test]
    fn what_a_line_leaves_behind_is_zeroed() {
        let mut bytes = *b"u\rsecret\rs\nrest";
        let new_length = shift_out_zeroizing(&mut bytes, 11);
        assert_eq!(&bytes[..new_length], b"rest");
        assert!(
            bytes[new_length..].iter().all(|byte| *byte == 0),
            "{bytes:?}"
        );

        let mut buffer = LineBuffer::default();
        buffer.push(b"u\rsecret-one\rs\nu\rsec").unwrap();
        assert_eq!(buffer.pending, b"u\rsec");
        let mut growing = Vec::with_capacity(4);
        growing.extend_from_slice(b"abcd");
        append_zeroizing(&mut growing, b"efgh");
        assert_eq!(growing, b"abcdefgh");
        assert!(growing.capacity() >= 1024);
        let mut taken = b"one\nxxxxxx".to_vec();
        let front = take_front_zeroizing(&mut taken, 4);
        assert_eq!((&front[..], &taken[..]), (&b"one\n"[..], &b"xxxxxx"[..]));
    }

    #[test]
    fn debug_hides_the_password() {
        let Line::Request(parsed) = request("u", "secret", "s") else {
            unreachable!()
        };
        assert!(!format!("{parsed:?}").contains("secret"));
    }

    #[test]
    fn service_names() {
        for (name, valid) in [
            ("x2gobroker", true),
            ("common-auth", true),
            ("../../etc/passwd", false),
            ("", false),
            (".hidden", false),
            ("a b", false),
        ] {
            assert_eq!(is_valid_service(name), valid, "{name:?}");
        }
    }
}
