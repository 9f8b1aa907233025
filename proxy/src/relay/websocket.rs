//! WebSocket relay, frame by frame, with each message shown to the hooks.
//!
//! Frame headers are read with tungstenite's codec; frames pass through
//! unchanged (so whatever extensions client and server negotiated keep
//! working); a copy of each message is unmasked and, under
//! permessage-deflate, inflated for inspection. A message is held until it
//! is complete (up to the inspection window) so a block can stop it: the
//! client then gets a close frame 1008 (policy violation).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use gatehouse_inspectors::codec::MessageInflater;
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

use super::hooks::{Direction, FlowContext, FlowHooks, Verdict};

/// permessage-deflate parameters from the server's handshake response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deflate {
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
}

/// Reads the negotiated permessage-deflate parameters, if any.
pub fn negotiated_deflate(headers: &HeaderMap) -> Option<Deflate> {
    let ext = headers
        .get_all("sec-websocket-extensions")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|e| e.split(';').next().map(str::trim) == Some("permessage-deflate"))?;
    let params: Vec<&str> = ext.split(';').map(str::trim).collect();
    Some(Deflate {
        client_no_context_takeover: params.contains(&"client_no_context_takeover"),
        server_no_context_takeover: params.contains(&"server_no_context_takeover"),
    })
}

/// Largest message held for inspection; larger ones stream through.
const HOLD_LIMIT: usize = 1024 * 1024;
/// Largest inflated message inspected (decompression bombs stop here).
const INFLATE_LIMIT: usize = 16 * 1024 * 1024;

/// Relays until either side closes, nothing moves for `idle`, or `abort`.
pub async fn relay<C, U>(
    client: C,
    upstream: U,
    deflate: Option<Deflate>,
    flow: Arc<FlowContext>,
    hooks: Arc<Mutex<Box<dyn FlowHooks>>>,
    idle: Duration,
    abort: CancellationToken,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send,
    U: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (cr, cw) = tokio::io::split(client);
    let (ur, uw) = tokio::io::split(upstream);
    let cw = AsyncMutex::new(cw);
    let uw = AsyncMutex::new(uw);
    let out = Pump {
        dir: Direction::Outbound,
        inflater: deflate.map(|d| {
            MessageInflater::permessage_deflate(d.client_no_context_takeover, INFLATE_LIMIT)
        }),
        flow: flow.clone(),
        hooks: hooks.clone(),
    };
    let inb = Pump {
        dir: Direction::Inbound,
        inflater: deflate.map(|d| {
            MessageInflater::permessage_deflate(d.server_no_context_takeover, INFLATE_LIMIT)
        }),
        flow,
        hooks,
    };
    let both = async {
        tokio::select! {
            _ = out.run(cr, &uw, &cw, idle) => {}
            _ = inb.run(ur, &cw, &cw, idle) => {}
        }
    };
    tokio::select! {
        _ = both => {}
        _ = abort.cancelled() => {}
    }
    let _ = cw.lock().await.shutdown().await;
    let _ = uw.lock().await.shutdown().await;
}

struct Pump {
    dir: Direction,
    inflater: Option<MessageInflater>,
    flow: Arc<FlowContext>,
    hooks: Arc<Mutex<Box<dyn FlowHooks>>>,
}

/// One parsed frame header.
struct Header {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

/// Parses a frame header with tungstenite's codec; `None` means need more bytes.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, &'static str> {
    let mut cursor = std::io::Cursor::new(buf);
    match tungstenite::protocol::frame::FrameHeader::parse(&mut cursor) {
        Ok(None) => Ok(None),
        Err(_) => Err("malformed frame header"),
        Ok(Some((h, len))) => {
            let payload_len = usize::try_from(len).map_err(|_| "frame too large")?;
            if payload_len > (1 << 40) {
                return Err("frame too large");
            }
            Ok(Some(Header {
                fin: h.is_final,
                rsv1: h.rsv1,
                opcode: u8::from(h.opcode),
                mask: h.mask,
                header_len: cursor.position() as usize,
                payload_len,
            }))
        }
    }
}

/// A message being assembled.
#[derive(Default)]
struct Pending {
    /// Raw frames held back, to forward after inspection.
    raw: BytesMut,
    /// Unmasked payload for inspection.
    payload: Vec<u8>,
    text: bool,
    compressed: bool,
    /// Too large to hold: frames are being forwarded as they come.
    streaming: bool,
    active: bool,
}

impl Pump {
    async fn run<R, W, C>(
        mut self,
        mut reader: R,
        forward: &AsyncMutex<W>,
        client: &AsyncMutex<C>,
        idle: Duration,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
        C: AsyncWrite + Unpin,
    {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut msg = Pending::default();
        loop {
            // Handle every complete frame in the buffer.
            loop {
                let header = match parse_header(&buf) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(reason) => {
                        tracing::debug!(%reason, "malformed WebSocket frame; closing");
                        return;
                    }
                };
                let total = header.header_len + header.payload_len;
                if buf.len() < total && !(msg.streaming || header.payload_len > HOLD_LIMIT) {
                    break;
                }
                if buf.len() < total {
                    // A huge frame: pass what we have through and keep streaming it.
                    if forward_bytes(forward, &buf).await.is_err() {
                        return;
                    }
                    let mut left = total - buf.len();
                    buf.clear();
                    while left > 0 {
                        let mut chunk = vec![0u8; left.min(64 * 1024)];
                        let n = match tokio::time::timeout(idle, reader.read(&mut chunk)).await {
                            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                            Ok(Ok(n)) => n,
                        };
                        if forward_bytes(forward, &chunk[..n]).await.is_err() {
                            return;
                        }
                        left -= n;
                    }
                    msg = Pending::default();
                    continue;
                }
                let frame = buf.split_to(total);
                if !self
                    .on_frame(&header, frame, &mut msg, forward, client)
                    .await
                {
                    return;
                }
            }
            let n = match tokio::time::timeout(idle, reader.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(n)) => n,
            };
            let _ = n;
        }
    }

    /// Returns false when the relay must end.
    async fn on_frame<W, C>(
        &mut self,
        h: &Header,
        frame: BytesMut,
        msg: &mut Pending,
        forward: &AsyncMutex<W>,
        client: &AsyncMutex<C>,
    ) -> bool
    where
        W: AsyncWrite + Unpin,
        C: AsyncWrite + Unpin,
    {
        let is_control = h.opcode & 0x08 != 0;
        if is_control {
            return forward_bytes(forward, &frame).await.is_ok();
        }
        let mut payload = frame[h.header_len..].to_vec();
        if let Some(mask) = h.mask {
            payload
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b ^= mask[i % 4]);
        }
        if h.opcode != 0 {
            *msg = Pending {
                text: h.opcode == 1,
                compressed: h.rsv1,
                active: true,
                ..Pending::default()
            };
        } else if !msg.active {
            return forward_bytes(forward, &frame).await.is_ok();
        }
        if msg.payload.len() + payload.len() <= HOLD_LIMIT {
            msg.payload.extend_from_slice(&payload);
        } else {
            msg.streaming = true;
        }
        if msg.streaming {
            let held = std::mem::take(&mut msg.raw);
            if !held.is_empty() && forward_bytes(forward, &held).await.is_err() {
                return false;
            }
            if forward_bytes(forward, &frame).await.is_err() {
                return false;
            }
        } else {
            msg.raw.extend_from_slice(&frame);
        }
        if !h.fin {
            return true;
        }
        let whole = std::mem::take(msg);
        let verdict = if whole.streaming {
            Verdict::Allow
        } else {
            self.inspect(&whole)
        };
        match verdict {
            Verdict::Block { policy } => {
                tracing::info!(flow = %self.flow.id, %policy, "WebSocket message blocked");
                // Close the client side with 1008; the message never reaches the server.
                let reason = format!("blocked by policy {policy}");
                let _ = forward_bytes(client, &close_frame(1008, &reason)).await;
                false
            }
            _ => whole.raw.is_empty() || forward_bytes(forward, &whole.raw).await.is_ok(),
        }
    }

    fn inspect(&mut self, msg: &Pending) -> Verdict {
        let inflated;
        let data: &[u8] = match (&mut self.inflater, msg.compressed) {
            (Some(inf), true) => match inf.inflate(&msg.payload) {
                Ok(d) => {
                    inflated = d;
                    &inflated
                }
                Err(e) => {
                    // Fail closed: a message that cannot be read is not
                    // relayed unread (and with context takeover, neither
                    // can any later one be).
                    tracing::info!(error = %e, "WebSocket message not inflated: blocked");
                    return self.hooks.lock().expect("hooks lock").on_undecodable(
                        &self.flow,
                        self.dir,
                        &format!("WebSocket message: {e}"),
                    );
                }
            },
            _ => &msg.payload,
        };
        self.hooks
            .lock()
            .expect("hooks lock")
            .on_ws_message(&self.flow, self.dir, msg.text, data)
    }
}

async fn forward_bytes<W: AsyncWrite + Unpin>(
    w: &AsyncMutex<W>,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut w = w.lock().await;
    w.write_all(bytes).await?;
    w.flush().await
}

/// An unmasked close frame (server to client).
fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(120)];
    let mut f = vec![0x88, (2 + reason.len()) as u8];
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(reason);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn deflate_msg(c: &mut Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn inflates_messages_with_context_takeover() {
        let mut c = Compress::new(Compression::default(), false);
        let mut inf = MessageInflater::permessage_deflate(false, INFLATE_LIMIT);
        for text in ["hello hello hello", "hello again, hello", "third"] {
            let m = deflate_msg(&mut c, text.as_bytes());
            assert_eq!(inf.inflate(&m).unwrap(), text.as_bytes());
        }
    }

    /// Records what the hooks were shown; blocks nothing by itself.
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl FlowHooks for Seen {
        fn on_ws_message(
            &mut self,
            _f: &FlowContext,
            _d: Direction,
            _t: bool,
            p: &[u8],
        ) -> Verdict {
            self.0
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(p).into_owned());
            Verdict::Allow
        }
        fn on_undecodable(&mut self, _f: &FlowContext, _d: Direction, what: &str) -> Verdict {
            self.0.lock().unwrap().push(format!("undecodable: {what}"));
            Verdict::Block {
                policy: "undecodable content".into(),
            }
        }
    }

    #[test]
    fn a_message_that_does_not_inflate_is_blocked_not_relayed_unread() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut pump = Pump {
            dir: Direction::Outbound,
            inflater: Some(MessageInflater::permessage_deflate(false, INFLATE_LIMIT)),
            flow: Arc::new(FlowContext {
                id: uuid::Uuid::nil(),
                client: "127.0.0.1:1".parse().unwrap(),
                user: None,
                device: None,
                host: "chat.test".into(),
                app: None,
                alpn: None,
            }),
            hooks: Arc::new(Mutex::new(Box::new(Seen(seen.clone())))),
        };
        let mut c = Compress::new(Compression::default(), false);
        let good = Pending {
            payload: deflate_msg(&mut c, b"hello"),
            text: true,
            compressed: true,
            ..Pending::default()
        };
        assert_eq!(pump.inspect(&good), Verdict::Allow);
        let corrupt = Pending {
            payload: vec![0xff; 64],
            text: true,
            compressed: true,
            ..Pending::default()
        };
        assert!(matches!(pump.inspect(&corrupt), Verdict::Block { .. }));
        // With context takeover the stream is lost: later messages too.
        let later = Pending {
            payload: deflate_msg(&mut c, b"after"),
            text: true,
            compressed: true,
            ..Pending::default()
        };
        assert!(matches!(pump.inspect(&later), Verdict::Block { .. }));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0], "hello");
        assert!(
            seen[1..].iter().all(|s| s.starts_with("undecodable")),
            "{seen:?}"
        );
    }

    #[test]
    fn parses_masked_and_extended_headers() {
        let h = parse_header(&[0x81, 0x85, 1, 2, 3, 4]).unwrap().unwrap();
        assert!(h.fin && h.mask == Some([1, 2, 3, 4]) && h.payload_len == 5 && h.header_len == 6);
        let h = parse_header(&[0x42, 126, 0x01, 0x00]).unwrap().unwrap();
        assert!(!h.fin && h.rsv1 && h.opcode == 2 && h.payload_len == 256 && h.header_len == 4);
        assert!(parse_header(&[0x81]).unwrap().is_none());
        assert!(parse_header(&[0x81, 127, 0, 0]).unwrap().is_none());
    }

    #[test]
    fn reads_negotiated_extension() {
        let mut h = HeaderMap::new();
        h.insert(
            "sec-websocket-extensions",
            "permessage-deflate; server_no_context_takeover"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            negotiated_deflate(&h),
            Some(Deflate {
                client_no_context_takeover: false,
                server_no_context_takeover: true
            })
        );
        assert_eq!(negotiated_deflate(&HeaderMap::new()), None);
    }
}
