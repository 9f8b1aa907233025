//! Reading the first bytes of a flow to decide what it is, keeping them.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// What the first bytes of a flow are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peeked {
    /// A TLS ClientHello.
    Tls(Hello),
    /// Something else (or a ClientHello too malformed to use).
    Other,
    /// The client closed, or sent nothing in time.
    Nothing,
}

/// The parts of a ClientHello the proxy decides on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// Server Name Indication, if sent.
    pub sni: Option<String>,
    /// ALPN protocols offered, in the client's order.
    pub alpn: Vec<Vec<u8>>,
}

/// Largest ClientHello we wait for (several records of post-quantum key shares fit).
const MAX_PEEK: usize = 32 * 1024;

/// Reads until the bytes are a complete ClientHello or clearly not one.
/// Returns the verdict and every byte read, to be replayed.
pub async fn peek<S: AsyncRead + Unpin>(stream: &mut S, timeout: Duration) -> (Peeked, Bytes) {
    let mut buf = BytesMut::with_capacity(4096);
    let read = async {
        loop {
            match classify(&buf) {
                Some(verdict) => return verdict,
                None if buf.len() >= MAX_PEEK => return Peeked::Other,
                None => {}
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) if buf.is_empty() => return Peeked::Nothing,
                Ok(0) | Err(_) => return Peeked::Other,
                Ok(_) => {}
            }
        }
    };
    let verdict = tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(if buf.is_empty() {
            Peeked::Nothing
        } else {
            Peeked::Other
        });
    (verdict, buf.freeze())
}

/// `None` means "need more bytes".
fn classify(buf: &[u8]) -> Option<Peeked> {
    if buf.is_empty() {
        return None;
    }
    if buf[0] != 0x16 {
        return Some(Peeked::Other);
    }
    // Interim: rustls's own ClientHello reader over a copy of the bytes.
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rd: &[u8] = buf;
    while !rd.is_empty() {
        if acceptor.read_tls(&mut rd).is_err() {
            return Some(Peeked::Other);
        }
    }
    match acceptor.accept() {
        Ok(None) => None,
        Ok(Some(accepted)) => {
            let ch = accepted.client_hello();
            Some(Peeked::Tls(Hello {
                sni: ch.server_name().map(str::to_string),
                alpn: ch
                    .alpn()
                    .map(|a| a.map(<[u8]>::to_vec).collect())
                    .unwrap_or_default(),
            }))
        }
        Err(_) => Some(Peeked::Other),
    }
}
