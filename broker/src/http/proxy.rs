//! The client's address behind a reverse proxy: `[global] trusted-proxies` peers only may name it, in `X-Forwarded-For` or `Forwarded` (the right-most untrusted hop) or in a PROXY protocol v2 header read before TLS and HTTP; from anyone else those are ignored (headers) or refused (a PROXY header closes the connection).
//!
//! **Invariant:** [`client_address`] is the one place the effective client address of a request
//! is decided; ACLs, `verify-ip`, the login throttle and the access log all get its answer.

use crate::config::settings::ClientAddressHeader;
use crate::config::Networks;
use axum::http::HeaderMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;

pub use crate::config::networks::canonical;

/// The effective client address of a request that came from `peer` (the TCP peer, or the
/// source a trusted PROXY header named): `peer` itself unless it is a trusted proxy; then the
/// hops of the configured header are walked from the right, skipping trusted proxies, and the
/// first untrusted one is the client. A hop that is not an address (`unknown`, an obfuscated
/// name, garbage) ends the walk at the last address known.
pub fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &Networks,
    header: ClientAddressHeader,
) -> IpAddr {
    let mut client = canonical(peer);
    if trusted.is_empty() || !trusted.contains(client) {
        return client;
    }
    let hops = match header {
        ClientAddressHeader::XForwardedFor => forwarded_for_hops(headers),
        ClientAddressHeader::Forwarded => forwarded_hops(headers),
    };
    for hop in hops.iter().rev() {
        let Some(address) = hop_address(hop) else {
            break;
        };
        client = canonical(address);
        if !trusted.contains(client) {
            break;
        }
    }
    client
}

/// Every `X-Forwarded-For` value, in order (several header lines are one comma-separated list).
fn forwarded_for_hops(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| {
            String::from_utf8_lossy(value.as_bytes())
                .split(',')
                .map(|hop| hop.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The `for=` parameter of every element of every `Forwarded` header (RFC 7239), in order; an
/// element without one counts as an unknown hop.
fn forwarded_hops(headers: &HeaderMap) -> Vec<String> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        let text = String::from_utf8_lossy(value.as_bytes());
        for element in text.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"').to_string())
            });
            hops.push(node.unwrap_or_default());
        }
    }
    hops
}

/// A hop's address: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = hop.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    hop.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
}

/// Which TCP peers may send a PROXY header, asked once per connection (the config's
/// trusted-proxies as it is when the connection comes).
#[derive(Clone)]
pub struct TrustedPeers(std::sync::Arc<dyn Fn(IpAddr) -> bool + Send + Sync>);

impl TrustedPeers {
    /// Nobody: a PROXY header closes the connection.
    pub fn none() -> TrustedPeers {
        TrustedPeers(std::sync::Arc::new(|_| false))
    }

    /// The peers `trusted` says yes to.
    pub fn new(trusted: impl Fn(IpAddr) -> bool + Send + Sync + 'static) -> TrustedPeers {
        TrustedPeers(std::sync::Arc::new(trusted))
    }

    /// Whether `peer` may send a PROXY header.
    pub fn contains(&self, peer: IpAddr) -> bool {
        (self.0)(canonical(peer))
    }
}

impl std::fmt::Debug for TrustedPeers {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TrustedPeers")
    }
}

/// The first twelve bytes of every PROXY protocol v2 header.
const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header: signature, version/command, family/protocol, length.
const FIXED_LENGTH: usize = 16;
/// The longest address and TLV part accepted (haproxy sends far less).
const MAX_PAYLOAD: usize = 4096;

/// What the first bytes of a new connection were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preamble {
    /// No PROXY header: HTTP or TLS follows (nothing was consumed).
    None,
    /// A PROXY header from a trusted peer, consumed: the client it names (`None` for `LOCAL`
    /// health checks and address families without an IP address: the peer stands).
    Proxied(Option<SocketAddr>),
}

/// Why a connection is closed before HTTP.
#[derive(Debug, thiserror::Error)]
pub enum PreambleError {
    #[error("a PROXY protocol header from a peer not in trusted-proxies")]
    Untrusted,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("no complete first bytes within the header timeout")]
    TimedOut,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Looks at the first bytes of `stream` (within `deadline`): a PROXY protocol v2 header is
/// read and parsed when `trusted` (the peer is in trusted-proxies), refused otherwise; any
/// other bytes are left for TLS or HTTP.
pub async fn read_preamble(
    stream: &mut TcpStream,
    trusted: bool,
    deadline: Duration,
) -> Result<Preamble, PreambleError> {
    tokio::time::timeout(deadline, read_preamble_now(stream, trusted))
        .await
        .map_err(|_| PreambleError::TimedOut)?
}

async fn read_preamble_now(
    stream: &mut TcpStream,
    trusted: bool,
) -> Result<Preamble, PreambleError> {
    use tokio::io::AsyncReadExt;
    let mut first = [0u8; SIGNATURE.len()];
    // the signature's first byte is CR: HTTP methods and TLS records start otherwise
    let seen = stream.peek(&mut first[..1]).await?;
    if seen == 0 || first[0] != SIGNATURE[0] {
        return Ok(Preamble::None);
    }
    // a signature cut short by the network: wait for the rest (the deadline bounds this; the
    // pause grows, so that connections stalling after a CR cost next to nothing)
    let mut pause = Duration::from_millis(2);
    loop {
        let seen = stream.peek(&mut first).await?;
        if first[..seen] != SIGNATURE[..seen] {
            return Ok(Preamble::None);
        }
        if seen == SIGNATURE.len() {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
    if !trusted {
        return Err(PreambleError::Untrusted);
    }
    let mut header = vec![0u8; FIXED_LENGTH];
    stream.read_exact(&mut header).await?;
    let payload = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if payload > MAX_PAYLOAD {
        return Err(PreambleError::Malformed(format!(
            "{payload} bytes of addresses"
        )));
    }
    header.resize(FIXED_LENGTH + payload, 0);
    stream.read_exact(&mut header[FIXED_LENGTH..]).await?;
    let parsed = ppp::v2::Header::try_from(header.as_slice())
        .map_err(|error| PreambleError::Malformed(error.to_string()))?;
    if parsed.command == ppp::v2::Command::Local {
        return Ok(Preamble::Proxied(None));
    }
    let source = match parsed.addresses {
        ppp::v2::Addresses::IPv4(addresses) => Some(SocketAddr::from((
            addresses.source_address,
            addresses.source_port,
        ))),
        ppp::v2::Addresses::IPv6(addresses) => Some(SocketAddr::from((
            addresses.source_address,
            addresses.source_port,
        ))),
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    };
    Ok(Preamble::Proxied(source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    /// Header lines of one request.
    type Lines<'a> = &'a [(&'static str, &'a str)];

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_right_most_untrusted_hop_from_trusted_peers_only() {
        let trusted = Networks::parse(["127.0.0.1", "10.0.0.0/8"]).unwrap();
        let xff = ClientAddressHeader::XForwardedFor;
        let table: &[(&str, Lines<'_>, &str)] = &[
            // untrusted peer: headers ignored
            (
                "192.0.2.9",
                &[("x-forwarded-for", "198.51.100.1")],
                "192.0.2.9",
            ),
            // trusted peer without a header: the peer
            ("127.0.0.1", &[], "127.0.0.1"),
            (
                "127.0.0.1",
                &[("x-forwarded-for", "198.51.100.1")],
                "198.51.100.1",
            ),
            // a client-supplied hop left of the proxy's own is not believed
            (
                "127.0.0.1",
                &[("x-forwarded-for", "203.0.113.66, 198.51.100.1")],
                "198.51.100.1",
            ),
            // chains of trusted proxies are skipped
            (
                "127.0.0.1",
                &[("x-forwarded-for", "198.51.100.1, 10.1.1.1, 10.2.2.2")],
                "198.51.100.1",
            ),
            // several header lines are one list
            (
                "127.0.0.1",
                &[
                    ("x-forwarded-for", "203.0.113.66"),
                    ("x-forwarded-for", "198.51.100.2"),
                ],
                "198.51.100.2",
            ),
            // ports and brackets, IPv4-mapped IPv6
            (
                "127.0.0.1",
                &[("x-forwarded-for", "198.51.100.3:4711")],
                "198.51.100.3",
            ),
            (
                "127.0.0.1",
                &[("x-forwarded-for", "[2001:db8::7]:4711")],
                "2001:db8::7",
            ),
            (
                "::ffff:127.0.0.1",
                &[("x-forwarded-for", "::ffff:198.51.100.4")],
                "198.51.100.4",
            ),
            // garbage ends the walk at the last address known
            (
                "127.0.0.1",
                &[("x-forwarded-for", "198.51.100.1, unknown")],
                "127.0.0.1",
            ),
            (
                "127.0.0.1",
                &[("x-forwarded-for", "not-an-address, 10.9.9.9")],
                "10.9.9.9",
            ),
            // the other header is not read
            (
                "127.0.0.1",
                &[("forwarded", "for=198.51.100.5")],
                "127.0.0.1",
            ),
        ];
        for (peer, pairs, expected) in table {
            assert_eq!(
                client_address(ip(peer), &headers(pairs), &trusted, xff),
                ip(expected),
                "{peer} {pairs:?}"
            );
        }
        // nothing trusted: always the peer
        assert_eq!(
            client_address(
                ip("127.0.0.1"),
                &headers(&[("x-forwarded-for", "198.51.100.1")]),
                &Networks::default(),
                xff
            ),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn forwarded_for_parameters() {
        let trusted = Networks::parse(["127.0.0.1"]).unwrap();
        let forwarded = ClientAddressHeader::Forwarded;
        let table: &[(Lines<'_>, &str)] = &[
            (
                &[("forwarded", "for=198.51.100.1;proto=https")],
                "198.51.100.1",
            ),
            (
                &[(
                    "forwarded",
                    "for=203.0.113.66, for=\"[2001:db8::1]:4711\";by=127.0.0.1",
                )],
                "2001:db8::1",
            ),
            (&[("forwarded", "For=198.51.100.2:80")], "198.51.100.2"),
            (&[("forwarded", "for=_hidden")], "127.0.0.1"),
            (&[("forwarded", "proto=https")], "127.0.0.1"),
            (&[("x-forwarded-for", "198.51.100.1")], "127.0.0.1"),
        ];
        for (pairs, expected) in table {
            assert_eq!(
                client_address(ip("127.0.0.1"), &headers(pairs), &trusted, forwarded),
                ip(expected),
                "{pairs:?}"
            );
        }
    }

    async fn preamble_of(
        bytes: Vec<u8>,
        trusted: bool,
    ) -> (Result<Preamble, PreambleError>, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(address).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        client.write_all(&bytes).await.unwrap();
        client.shutdown().await.unwrap();
        let outcome = read_preamble(&mut server, trusted, Duration::from_secs(2)).await;
        let mut rest = Vec::new();
        if outcome.is_ok() {
            server.read_to_end(&mut rest).await.unwrap();
        }
        (outcome, rest)
    }

    fn proxy_header(source: &str, command: ppp::v2::Command) -> Vec<u8> {
        let source: SocketAddr = source.parse().unwrap();
        let destination: SocketAddr = if source.is_ipv4() {
            "127.0.0.1:8080".parse().unwrap()
        } else {
            "[::1]:8080".parse().unwrap()
        };
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | command,
            ppp::v2::Protocol::Stream,
            (source, destination),
        )
        .write_tlv(ppp::v2::Type::NoOp, b"padding")
        .unwrap()
        .build()
        .unwrap()
    }

    #[tokio::test]
    async fn proxy_headers_are_read_from_trusted_peers_and_refused_from_others() {
        let request = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        let mut proxied = proxy_header("198.51.100.7:5555", ppp::v2::Command::Proxy);
        proxied.extend_from_slice(&request);
        let (outcome, rest) = preamble_of(proxied.clone(), true).await;
        assert_eq!(
            outcome.unwrap(),
            Preamble::Proxied(Some("198.51.100.7:5555".parse().unwrap()))
        );
        assert_eq!(rest, request, "only the header is consumed");
        let (outcome, _) = preamble_of(proxied, false).await;
        assert!(
            matches!(outcome, Err(PreambleError::Untrusted)),
            "{outcome:?}"
        );
        let mut v6 = proxy_header("[2001:db8::9]:1", ppp::v2::Command::Proxy);
        v6.extend_from_slice(&request);
        assert_eq!(
            preamble_of(v6, true).await.0.unwrap(),
            Preamble::Proxied(Some("[2001:db8::9]:1".parse().unwrap()))
        );
        let local = proxy_header("198.51.100.7:5555", ppp::v2::Command::Local);
        assert_eq!(
            preamble_of(local, true).await.0.unwrap(),
            Preamble::Proxied(None)
        );
        // plain HTTP, a TLS ClientHello and a leading empty line pass untouched
        for bytes in [
            request.clone(),
            vec![0x16, 3, 1, 0, 5],
            b"\r\nGET / HTTP/1.0\r\n\r\n".to_vec(),
        ] {
            let (outcome, rest) = preamble_of(bytes.clone(), false).await;
            assert_eq!(outcome.unwrap(), Preamble::None);
            assert_eq!(rest, bytes);
        }
        // a signature with a bad version, and a cut header
        let mut bad = proxy_header("198.51.100.7:5555", ppp::v2::Command::Proxy);
        bad[12] = 0x31;
        assert!(matches!(
            preamble_of(bad, true).await.0,
            Err(PreambleError::Malformed(_))
        ));
        let cut = proxy_header("198.51.100.7:5555", ppp::v2::Command::Proxy)[..20].to_vec();
        assert!(matches!(
            preamble_of(cut, true).await.0,
            Err(PreambleError::Io(_))
        ));
    }

    #[tokio::test]
    async fn a_header_split_across_segments_is_read_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let mut bytes = proxy_header("198.51.100.8:6000", ppp::v2::Command::Proxy);
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let (head, tail) = bytes.split_at(5);
        let tail = tail.to_vec();
        client.write_all(head).await.unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(&tail).await.unwrap();
            client.shutdown().await.unwrap();
        });
        let outcome = read_preamble(&mut server, true, Duration::from_secs(2)).await;
        assert_eq!(
            outcome.unwrap(),
            Preamble::Proxied(Some("198.51.100.8:6000".parse().unwrap()))
        );
        writer.await.unwrap();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn a_silent_peer_runs_out_of_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let outcome = read_preamble(&mut server, true, Duration::from_millis(100)).await;
        assert!(
            matches!(outcome, Err(PreambleError::TimedOut)),
            "{outcome:?}"
        );
    }
}
