//! XMPP on 5222: relay the plaintext stream negotiation, and when the
//! client asks for STARTTLS and the server says `<proceed/>`, hand the flow
//! to the same upstream-first TLS interception as any other TLS flow.
//!
//! Every byte either way is shown to the flow's hooks before it is passed
//! on — the plaintext phase (a stream that never starts TLS is read whole
//! this way) and XMPP inside TLS alike — so message stanzas are judged. A
//! block drops the bytes that completed the stanza and ends the stream
//! with a `policy-violation` stream error (RFC 6120 §4.9.3.14) naming the
//! policy and the event.

use std::sync::Mutex;
use std::time::Duration;

use gatehouse_inspectors::identify::xmpp::{is_proceed, is_starttls_request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::hooks::{Direction, FlowContext, FlowHooks, Verdict};

/// The hooks that judge an XMPP stream.
pub struct Inspected<'a> {
    /// The flow.
    pub flow: &'a FlowContext,
    /// Its inspection.
    pub hooks: &'a Mutex<Box<dyn FlowHooks>>,
}

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
    /// A stanza was blocked: the client got a `policy-violation` stream
    /// error and both legs were closed.
    Blocked {
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

/// Relays both ways until STARTTLS is agreed (when `starttls`: on a
/// stream already inside TLS it is not followed), the stream ends, or a
/// hook blocks.
pub async fn negotiate<C, U>(
    client: &mut C,
    upstream: &mut U,
    idle: Duration,
    abort: &CancellationToken,
    inspected: Option<Inspected<'_>>,
    starttls: bool,
) -> Negotiation
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut up, mut down) = (0u64, 0u64);
    let (mut cbuf, mut ubuf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut ctail, mut utail) = (Vec::new(), Vec::new());
    let mut asked = false;
    loop {
        let step = tokio::time::timeout(idle, async {
            tokio::select! {
                r = client.read(&mut cbuf) => Some((true, r)),
                r = upstream.read(&mut ubuf) => Some((false, r)),
                _ = abort.cancelled() => None,
            }
        })
        .await;
        let (from_client, n) = match step {
            Ok(None) => {
                return Negotiation::Ended {
                    up,
                    down,
                    reason: "shutdown",
                }
            }
            Err(_) => {
                return Negotiation::Ended {
                    up,
                    down,
                    reason: "idle_timeout",
                }
            }
            Ok(Some((c, Ok(0)))) | Ok(Some((c, Err(_)))) => {
                let reason = if c { "client_closed" } else { "server_closed" };
                return Negotiation::Ended { up, down, reason };
            }
            Ok(Some((c, Ok(n)))) => (c, n),
        };
        if let Some(i) = &inspected {
            let (dir, bytes) = if from_client {
                (Direction::Outbound, &cbuf[..n])
            } else {
                (Direction::Inbound, &ubuf[..n])
            };
            if let Some(why) = judge(i, dir, bytes) {
                let _ = client.write_all(stream_error(&why).as_bytes()).await;
                let _ = client.shutdown().await;
                let _ = upstream.shutdown().await;
                return Negotiation::Blocked { up, down };
            }
        }
        if from_client {
            if upstream.write_all(&cbuf[..n]).await.is_err() {
                return Negotiation::Ended {
                    up,
                    down,
                    reason: "server_closed",
                };
            }
            up += n as u64;
            asked |= starttls && seen(&mut ctail, &cbuf[..n], is_starttls_request);
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

/// Shows `bytes` to the hooks: None to pass them on, else what to tell
/// the client (the policy and the event that recorded the block).
fn judge(i: &Inspected<'_>, dir: Direction, bytes: &[u8]) -> Option<String> {
    let mut hooks = match i.hooks.lock() {
        Ok(h) => h,
        // A hook that panicked cannot judge: fail closed.
        Err(_) => return Some("inspection failed".into()),
    };
    match hooks.on_bytes(i.flow, dir, bytes) {
        Verdict::Allow => None,
        Verdict::Block { policy } => Some(match hooks.block_event() {
            Some(id) => format!("blocked by {policy} (event {id})"),
            None => format!("blocked by {policy}"),
        }),
        // A byte stream cannot be rewritten: carried out as a block.
        Verdict::Rewrite(_) => Some("blocked by policy".into()),
    }
}

/// The stream error that ends a blocked stream (RFC 6120 §4.9.3.14),
/// closing the stream too; `why` is escaped.
pub fn stream_error(why: &str) -> String {
    let text = why
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;");
    format!(
        "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{text}</text></stream:error></stream:stream>"
    )
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
    fn stream_errors_are_escaped() {
        let e = stream_error("blocked by <rule> & 'x'");
        assert!(e.starts_with("<stream:error><policy-violation "));
        assert!(e.contains("blocked by &lt;rule&gt; &amp; &apos;x&apos;"));
        assert!(e.ends_with("</stream:error></stream:stream>"));
    }

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
