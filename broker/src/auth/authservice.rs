//! Client of the PAM auth service's unix socket (§6.4): one connection per check, one request
//! `<user>\r<password>\r<service>\n`, one reply `ok\n` or `fail\n` (anything else, e.g. our
//! service's `bad\n`, is an error). There is no fallback to in-process PAM (fix S10).

use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why the auth service could not give an answer. Messages never contain the password.
#[derive(Debug, thiserror::Error)]
pub enum AuthServiceError {
    #[error("cannot reach the auth service: {0}")]
    Unreachable(std::io::Error),
    #[error("the auth service did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the auth service answered {0:?}")]
    BadReply(String),
    #[error("user names, passwords and service names must not contain CR or LF")]
    InvalidInput,
}

/// Asks the auth service whether `password` is right for `user` (PAM service `service`; empty
/// means `x2gobroker`). `Ok(false)` is PAM's no; `Err` means no answer could be had within
/// `timeout` (connecting included).
pub async fn authenticate(
    socket_path: &Path,
    user: &str,
    password: &str,
    service: &str,
    timeout: Duration,
) -> Result<bool, AuthServiceError> {
    let forbidden = |text: &str| text.contains('\r') || text.contains('\n');
    if forbidden(user) || forbidden(password) || forbidden(service) {
        return Err(AuthServiceError::InvalidInput);
    }
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(socket_path)
            .await
            .map_err(AuthServiceError::Unreachable)?;
        stream
            .write_all(format!("{user}\r{password}\r{service}\n").as_bytes())
            .await
            .map_err(AuthServiceError::Unreachable)?;
        let mut reply = Vec::new();
        let mut buffer = [0u8; 64];
        loop {
            let read = stream
                .read(&mut buffer)
                .await
                .map_err(AuthServiceError::Unreachable)?;
            if read == 0 {
                break;
            }
            reply.extend_from_slice(&buffer[..read]);
            if reply.contains(&b'\n') || reply.len() > 1024 {
                break;
            }
        }
        let text = String::from_utf8_lossy(&reply).into_owned();
        match text.as_str() {
            "ok\n" => Ok(true),
            "fail\n" => Ok(false),
            _ => Err(AuthServiceError::BadReply(text)),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| AuthServiceError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    //! Framing only, against an in-test listener; the real service is exercised by the tests of
    //! the `x2gobroker-authservice` package.
    use super::*;
    use tokio::net::UnixListener;

    /// A listener that records the first request and answers `reply` (`None`: never answers).
    fn fake_service(path: &Path, reply: Option<&'static [u8]>) -> tokio::task::JoinHandle<Vec<u8>> {
        let listener = UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 256];
            while !request.contains(&b'\n') {
                let n_read = stream.read(&mut chunk).await.unwrap();
                if n_read == 0 {
                    break;
                }
                request.extend_from_slice(&chunk[..n_read]);
            }
            match reply {
                Some(reply) => stream.write_all(reply).await.unwrap(),
                None => tokio::time::sleep(Duration::from_secs(30)).await,
            }
            request
        })
    }

    #[tokio::test]
    async fn framing_and_replies() {
        let directory = tempfile::tempdir().unwrap();
        let table: [(&[u8], Result<bool, &str>); 5] = [
            (b"ok\n", Ok(true)),
            (b"fail\n", Ok(false)),
            (b"bad\n", Err("bad")),
            (b"", Err("bad")),
            (b"okay\n", Err("bad")),
        ];
        for (index, (reply, expected)) in table.into_iter().enumerate() {
            let path = directory.path().join(format!("s{index}"));
            let service = fake_service(&path, Some(reply));
            let result = authenticate(
                &path,
                "jacques",
                "p a:s s wörd",
                "x2gobroker",
                Duration::from_secs(5),
            )
            .await;
            match (expected, &result) {
                (Ok(granted), Ok(answer)) => assert_eq!(granted, *answer, "{reply:?}"),
                (Err(_), Err(AuthServiceError::BadReply(_))) => {}
                _ => panic!("{reply:?}: {result:?}"),
            }
            assert_eq!(
                service.await.unwrap(),
                "jacques\rp a:s s wörd\rx2gobroker\n".as_bytes()
            );
        }
    }

    #[tokio::test]
    async fn unreachable_timeout_and_invalid_input() {
        let directory = tempfile::tempdir().unwrap();
        let missing = directory.path().join("missing.socket");
        let result = authenticate(&missing, "u", "p", "x2gobroker", Duration::from_secs(5)).await;
        assert!(
            matches!(result, Err(AuthServiceError::Unreachable(_))),
            "{result:?}"
        );

        let silent = directory.path().join("silent.socket");
        let _service = fake_service(&silent, None);
        let result =
            authenticate(&silent, "u", "p", "x2gobroker", Duration::from_millis(200)).await;
        assert!(
            matches!(result, Err(AuthServiceError::Timeout(_))),
            "{result:?}"
        );

        for (user, password, service) in [
            ("u\r", "secret", "x2gobroker"),
            ("u", "secret\nq", "x2gobroker"),
            ("u", "secret\rq", "x2gobroker"),
            ("u", "secret", "x2go\nbroker"),
        ] {
            // refused before connecting: the socket does not even exist
            let result =
                authenticate(&missing, user, password, service, Duration::from_secs(5)).await;
            assert!(
                matches!(result, Err(AuthServiceError::InvalidInput)),
                "{user:?}"
            );
            assert!(!format!("{result:?}").contains("secret"));
        }
    }
}
