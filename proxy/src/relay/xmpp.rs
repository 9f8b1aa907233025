//! XMPP on 5222: relay the plaintext stream negotiation, and when the
//! client asks for STARTTLS and the server says `<proceed/>`, hand the flow
//! to the same upstream-first TLS interception as any other TLS flow.

use std::time::Duration;

use gatehouse_inspectors::identify::xmpp::{is_proceed, is_starttls_request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How the plaintext phase ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Negotiation {
    /// The server said `<proceed/>`: TLS starts now on both legs.
    StartTls {
        /// Plaintext bytes client → server.
        up: u64,
        /// Plaintext bytes server → client.
        down: u64,
    },
    /// The stream ended (or idled out) without STARTTLS.
    Ended {
        /// Plaintext bytes client → server.
        up: u64,
        /// Plaintext bytes server → client.
        down: u64,
        /// Why.
        reason: &'static str,
    },
}

/// Bytes of each direction kept to find a marker split across reads.
const TAIL: usize = 512;

/// Relays both ways until STARTTLS is agreed or the stream ends.
pub async fn negotiate<C>(client: &mut C, upstream: &mut TcpStream, idle: Duration) -> Negotiation
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut up, mut down) = (0u64, 0u64);
    let (mut cbuf, mut ubuf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut ctail, mut utail) = (Vec::new(), Vec::new());
    let mut asked = false;
    loop {
        let step = tokio::time::timeout(idle, async {
            tokio::select! {
                r = client.read(&mut cbuf) => (true, r),
                r = upstream.read(&mut ubuf) => (false, r),
            }
        })
        .await;
        let (from_client, n) = match step {
            Err(_) => {
                return Negotiation::Ended {
                    up,
                    down,
                    reason: "idle_timeout",
                }
            }
            Ok((c, Ok(0))) | Ok((c, Err(_))) => {
                let reason = if c { "client_closed" } else { "server_closed" };
                return Negotiation::Ended { up, down, reason };
            }
            Ok((c, Ok(n))) => (c, n),
        };
        if from_client {
            if upstream.write_all(&cbuf[..n]).await.is_err() {
                return Negotiation::Ended {
                    up,
                    down,
                    reason: "server_closed",
                };
            }
            up += n as u64;
            asked |= seen(&mut ctail, &cbuf[..n], is_starttls_request);
        } else {
            if client.write_all(&ubuf[..n]).await.is_err() || client.flush().await.is_err() {
                return Negotiation::Ended {
                    up,
                    down,
                    reason: "client_closed",
                };
            }
            down += n as u64;
            if asked && seen(&mut utail, &ubuf[..n], is_proceed) {
                return Negotiation::StartTls { up, down };
            }
        }
    }
}

/// Appends `chunk` to the rolling `tail` and tests the window.
fn seen(tail: &mut Vec<u8>, chunk: &[u8], test: fn(&[u8]) -> bool) -> bool {
    tail.extend_from_slice(chunk);
    let hit = test(tail);
    if tail.len() > TAIL {
        tail.drain(..tail.len() - TAIL);
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_split_across_reads_are_found() {
        let mut tail = Vec::new();
        assert!(!seen(
            &mut tail,
            b"<starttls xmlns='urn:ietf:params:",
            is_starttls_request
        ));
        assert!(seen(&mut tail, b"xml:ns:xmpp-tls'/>", is_starttls_request));
    }
}
