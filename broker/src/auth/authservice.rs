//! Client of the PAM auth service's unix socket (§6.4): `<user>\r<password>\r<service>\n` → `ok\n` / `fail\n`.

use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why the auth service could not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum AuthServiceError {
    #[error("cannot reach the auth service: {0}")]
    Unreachable(std::io::Error),
    #[error("the auth service did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the auth service answered {0:?}")]
    BadReply(String),
    #[error("user names and passwords must not contain CR or LF")]
    InvalidInput,
}

/// Asks the auth service whether `password` is right for `user` (PAM service `service`).
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
