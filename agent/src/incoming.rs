//! The daemon's accept loop: a cap on open connections and a deadline for a new connection's
//! first bytes, in front of tonic (which gets only the connections admitted here).
//!
//! Over the cap a connection is accepted and closed at once (refused, with a rate-limited
//! warning), so the listen backlog never fills and existing connections keep being served. A
//! connection that sends nothing within the handshake timeout is closed before it reaches TLS
//! or HTTP/2 (with TLS, tonic's handshake timeout bounds the rest of the handshake), so silent
//! peers cannot hold the slots. An admitted connection holds its slot until hyper drops it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How many connections may be open and how soon a new one must speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
}

/// An admitted connection: the TCP stream and its slot.
#[derive(Debug)]
pub struct AdmittedStream {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for AdmittedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for AdmittedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for AdmittedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(context, bytes)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Least time between two "connection refused" warnings (the count in between is logged).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Accepts on `listener` in a task of its own and yields the admitted connections. The task
/// and the listener end when the returned stream is dropped (tonic drops it on shutdown).
pub fn admitted_connections(
    listener: TcpListener,
    limits: ConnectionLimits,
) -> ReceiverStream<io::Result<AdmittedStream>> {
    let (sender, receiver) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(accept_loop(listener, limits, slots, sender));
    ReceiverStream::new(receiver)
}

async fn accept_loop(
    listener: TcpListener,
    limits: ConnectionLimits,
    slots: Arc<Semaphore>,
    sender: mpsc::Sender<io::Result<AdmittedStream>>,
) {
    let mut n_refused_unlogged: u64 = 0;
    let mut last_refusal_log: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = sender.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(connection) => connection,
            Err(error) => {
                // EMFILE and friends: do not spin
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            n_refused_unlogged += 1;
            let now = tokio::time::Instant::now();
            if last_refusal_log.is_none_or(|at| now - at >= REFUSAL_LOG_INTERVAL) {
                tracing::warn!(
                    %peer,
                    n_refused = n_refused_unlogged,
                    max_connections = limits.max_connections,
                    "connection refused: the connection cap (--max-connections) is reached"
                );
                n_refused_unlogged = 0;
                last_refusal_log = Some(now);
            }
            continue;
        };
        let sender = sender.clone();
        tokio::spawn(async move {
            let mut first_byte = [0u8; 1];
            let first_bytes =
                tokio::time::timeout(limits.handshake_timeout, stream.peek(&mut first_byte));
            match first_bytes.await {
                Ok(Ok(n_peeked)) if n_peeked > 0 => {
                    let admitted = AdmittedStream {
                        stream,
                        _slot: slot,
                    };
                    let _ = sender.send(Ok(admitted)).await;
                }
                Ok(Ok(_)) => tracing::debug!(%peer, "connection closed before it spoke"),
                Ok(Err(error)) => tracing::debug!(%peer, %error, "connection failed"),
                Err(_) => tracing::info!(
                    %peer,
                    timeout = ?limits.handshake_timeout,
                    "closing a connection that sent nothing (--handshake-timeout-ms)"
                ),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;
    use tokio_stream::StreamExt;

    async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(limit, stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    #[tokio::test]
    async fn the_cap_refuses_and_a_closed_connection_frees_its_slot() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            max_connections: 2,
            handshake_timeout: Duration::from_secs(30),
        };
        let mut admitted = admitted_connections(listener, limits);
        let mut client_ends = Vec::new();
        let mut server_ends = Vec::new();
        for _ in 0..2 {
            let mut client = TcpStream::connect(address).await.unwrap();
            client.write_all(b"x").await.unwrap();
            client_ends.push(client);
            server_ends.push(admitted.next().await.unwrap().unwrap());
        }
        let mut extra = TcpStream::connect(address).await.unwrap();
        assert!(closed_within(&mut extra, Duration::from_secs(2)).await);
        // one admitted connection ends: its slot is free again
        drop(server_ends.pop());
        let mut next = TcpStream::connect(address).await.unwrap();
        next.write_all(b"x").await.unwrap();
        let admitted_next = tokio::time::timeout(Duration::from_secs(2), admitted.next()).await;
        assert!(matches!(admitted_next, Ok(Some(Ok(_)))));
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            max_connections: 1,
            handshake_timeout: Duration::from_millis(200),
        };
        let mut admitted = admitted_connections(listener, limits);
        let started = tokio::time::Instant::now();
        let mut silent = TcpStream::connect(address).await.unwrap();
        assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
        assert!(started.elapsed() < Duration::from_secs(2));
        // its slot was given back
        let mut speaking = TcpStream::connect(address).await.unwrap();
        speaking.write_all(b"x").await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(2), admitted.next()).await;
        assert!(matches!(next, Ok(Some(Ok(_)))));
    }
}
