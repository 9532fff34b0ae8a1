//! The unix-socket server: one task per connection, one blocking thread per PAM check.

use crate::protocol::{self, Line, LineBuffer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

/// How long a started line may wait for its end before the connection is closed.
pub const PARTIAL_LINE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an idle connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// PAM conversations running at once.
pub const MAX_CONCURRENT_CHECKS: usize = 64;

/// What checks a password; the real one is PAM, tests may substitute nothing else.
pub type Checker = fn(&str, &str, &str) -> bool;

/// Serves `listener` until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    checker: Checker,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_CHECKS));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(handle_connection(stream, checker, permits.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
}

async fn answer(
    request: protocol::Request,
    checker: Checker,
    permits: &Semaphore,
) -> &'static [u8] {
    if !protocol::is_valid_service(&request.service) {
        tracing::warn!(user = %request.user, service = %request.service, "refused: invalid PAM service name");
        return b"fail\n";
    }
    let Ok(_permit) = permits.acquire().await else {
        return b"fail\n";
    };
    let user = request.user.clone();
    let service = request.service.clone();
    let granted = tokio::task::spawn_blocking(move || {
        checker(&request.user, &request.password, &request.service)
    })
    .await
    .unwrap_or(false);
    tracing::info!(user = %user, service = %service, granted, "authentication");
    if granted {
        b"ok\n"
    } else {
        b"fail\n"
    }
}

async fn handle_connection(mut stream: UnixStream, checker: Checker, permits: Arc<Semaphore>) {
    let mut buffer = LineBuffer::default();
    let mut chunk = [0u8; 1024];
    loop {
        let timeout = if buffer.has_partial_line() {
            PARTIAL_LINE_TIMEOUT
        } else {
            IDLE_TIMEOUT
        };
        let read = match tokio::time::timeout(timeout, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(read)) => read,
        };
        let lines = match buffer.push(&chunk[..read]) {
            Ok(lines) => lines,
            Err(error) => {
                tracing::warn!(%error, "closing a connection");
                return;
            }
        };
        for line in lines {
            let reply: &[u8] = match line {
                Line::Request(request) => answer(request, checker, &permits).await,
                Line::Malformed => {
                    tracing::warn!("malformed request (not user\\rpassword\\rservice)");
                    let _ = stream.write_all(b"bad\n").await;
                    return;
                }
            };
            if stream.write_all(reply).await.is_err() {
                return;
            }
        }
    }
}
