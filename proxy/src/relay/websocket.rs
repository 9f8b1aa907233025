//! WebSocket relay, frame by frame, with each message shown to the hooks.
//!
//! Frame headers are read with tungstenite's codec; frames pass through
//! unchanged (so whatever extensions client and server negotiated keep
//! working); a copy of each message is unmasked and, under
//! permessage-deflate, inflated for inspection. A message up to the
//! inspection window (`intercept.inspect_window`) is held until it is
//! complete so a block can stop it: the client then gets a close frame 1008
//! (policy violation). A larger one (in one frame or many) is scanned as it
//! streams, piece by piece, each piece passed on only once scanned, and its
//! last piece only once the whole message is allowed: a block closes the
//! client with 1008 and ends the relay, so the other side never receives
//! the message whole. A message that does not inflate, or inflates past
//! 16 MiB, is blocked the same way, with an event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gatehouse_inspectors::codec::MessageInflater;
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

use super::hooks::{BodyHooks, Direction, FlowContext, FlowHooks, Verdict};

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

/// Largest inflated message inspected (decompression bombs stop here).
const INFLATE_LIMIT: usize = 16 * 1024 * 1024;

/// Relays until either side closes, nothing moves for `idle`, or `abort`.
/// Messages up to `hold` bytes (`intercept.inspect_window`) are held whole
/// for inspection; larger ones are scanned as they stream.
#[allow(clippy::too_many_arguments)]
pub async fn relay<C, U>(
    client: C,
    upstream: U,
    deflate: Option<Deflate>,
    flow: Arc<FlowContext>,
    hooks: Arc<Mutex<Box<dyn FlowHooks>>>,
    hold: usize,
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
        no_context_takeover: deflate.is_some_and(|d| d.client_no_context_takeover),
        deflater: None,
        flow: flow.clone(),
        hooks: hooks.clone(),
        hold,
    };
    let inb = Pump {
        dir: Direction::Inbound,
        inflater: deflate.map(|d| {
            MessageInflater::permessage_deflate(d.server_no_context_takeover, INFLATE_LIMIT)
        }),
        no_context_takeover: deflate.is_some_and(|d| d.server_no_context_takeover),
        deflater: None,
        flow,
        hooks,
        hold,
    };
    // Idle means no bytes either way: a socket the server pushes to while
    // the client only listens is not idle.
    let moved = Activity::default();
    let both = async {
        tokio::select! {
            _ = out.run(cr, &uw, &cw, Idle::new(idle, &moved)) => {}
            _ = inb.run(ur, &cw, &cw, Idle::new(idle, &moved)) => {}
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
    /// The sender resets its compressor after each message.
    no_context_takeover: bool,
    /// Once a compressed message of this direction was rewritten
    /// (redaction), the receiver's inflater no longer shares the sender's
    /// history: from then on every compressed message is re-compressed
    /// here, with a history of only what this relay sent.
    deflater: Option<flate2::Compress>,
    flow: Arc<FlowContext>,
    hooks: Arc<Mutex<Box<dyn FlowHooks>>>,
    /// Largest message held whole for inspection.
    hold: usize,
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
    /// Too large to hold: frames are forwarded as they are scanned.
    streaming: bool,
    /// What scans it as it streams (None: the hooks do not inspect it).
    stream: Option<Box<dyn BodyHooks>>,
    active: bool,
}

/// A data frame of a streamed message, past its header.
struct Streamed {
    /// The frame's header, until it is passed on with the first piece.
    head: Option<BytesMut>,
    mask: Option<[u8; 4]>,
    /// Payload bytes of the frame seen so far.
    at: usize,
    /// Payload bytes still to come.
    left: usize,
    fin: bool,
    /// Part of the current message (false: a stray continuation, passed on).
    inspected: bool,
}

/// When bytes last moved on a socket, either way.
struct Activity {
    since: std::time::Instant,
    /// Milliseconds after `since`.
    last: std::sync::atomic::AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            since: std::time::Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// One direction's view of the socket's idle timeout.
struct Idle<'a> {
    limit: Duration,
    activity: &'a Activity,
}

impl<'a> Idle<'a> {
    fn new(limit: Duration, activity: &'a Activity) -> Self {
        Self { limit, activity }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.activity.since.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn moved(&self) {
        let now = self.now_ms();
        self.activity
            .last
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long to wait for this direction before asking again.
    fn wait(&self) -> Duration {
        let quiet = self.now_ms().saturating_sub(
            self.activity
                .last
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        self.limit
            .saturating_sub(Duration::from_millis(quiet))
            .max(Duration::from_millis(10))
    }

    /// No bytes either way for the whole limit.
    fn over(&self) -> bool {
        let quiet = self.now_ms().saturating_sub(
            self.activity
                .last
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        Duration::from_millis(quiet) >= self.limit
    }
}

/// Unmasks `bytes` that start `at` bytes into a frame's payload.
fn unmask(bytes: &mut [u8], mask: Option<[u8; 4]>, at: usize) {
    if let Some(mask) = mask {
        bytes
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= mask[(at + i) % 4]);
    }
}

impl Pump {
    async fn run<R, W, C>(
        mut self,
        mut reader: R,
        forward: &AsyncMutex<W>,
        client: &AsyncMutex<C>,
        idle: Idle<'_>,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
        C: AsyncWrite + Unpin,
    {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut msg = Pending::default();
        let mut frame: Option<Streamed> = None;
        loop {
            // Handle everything the buffer holds.
            loop {
                if let Some(f) = frame.as_mut() {
                    let n = f.left.min(buf.len());
                    if n == 0 && f.left > 0 {
                        break;
                    }
                    let piece = buf.split_to(n);
                    f.left -= n;
                    let last = f.left == 0;
                    let end = last && f.fin && f.inspected;
                    if !self
                        .stream_piece(f, piece, end, &mut msg, forward, client)
                        .await
                    {
                        return;
                    }
                    if last {
                        frame = None;
                        if end {
                            msg = Pending::default();
                        }
                    }
                    continue;
                }
                let header = match parse_header(&buf) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(reason) => {
                        tracing::debug!(%reason, "malformed WebSocket frame; closing");
                        return;
                    }
                };
                let total = header.header_len + header.payload_len;
                if header.opcode & 0x08 != 0 {
                    if header.payload_len > 125 {
                        tracing::debug!("oversized WebSocket control frame; closing");
                        return;
                    }
                    if buf.len() < total {
                        break;
                    }
                    let frame = buf.split_to(total);
                    if forward_bytes(forward, &frame).await.is_err() {
                        return;
                    }
                    continue;
                }
                if header.opcode != 0 {
                    msg = Pending {
                        text: header.opcode == 1,
                        compressed: header.rsv1,
                        active: true,
                        ..Pending::default()
                    };
                }
                let held = msg.payload.len() + header.payload_len;
                if msg.active && !msg.streaming && held <= self.hold {
                    if buf.len() < total {
                        break;
                    }
                    let frame = buf.split_to(total);
                    if !self
                        .on_frame(&header, frame, &mut msg, forward, client)
                        .await
                    {
                        return;
                    }
                    continue;
                }
                // Too large to hold (or a stray continuation): from here the
                // message streams, each piece scanned before it is passed on.
                if msg.active
                    && !msg.streaming
                    && !self.start_stream(&mut msg, forward, client).await
                {
                    return;
                }
                // The header goes on with the frame's first piece: a last
                // frame, even an empty one, completes the message, so it
                // waits for the verdict too.
                let head = buf.split_to(header.header_len);
                frame = Some(Streamed {
                    head: Some(head),
                    mask: header.mask,
                    at: 0,
                    left: header.payload_len,
                    fin: header.fin,
                    inspected: msg.active,
                });
            }
            buf.reserve(64 * 1024);
            loop {
                match tokio::time::timeout(idle.wait(), reader.read_buf(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(_)) => {
                        idle.moved();
                        break;
                    }
                    // Quiet this way: idle only if the other way was too.
                    Err(_) if idle.over() => return,
                    Err(_) => {}
                }
            }
        }
    }

    /// A held frame of a message that fits the hold; the whole message is
    /// judged at its last frame. Returns false when the relay must end.
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
        let mut payload = frame[h.header_len..].to_vec();
        unmask(&mut payload, h.mask, 0);
        msg.payload.extend_from_slice(&payload);
        msg.raw.extend_from_slice(&frame);
        if !h.fin {
            return true;
        }
        let whole = std::mem::take(msg);
        let (verdict, inflated) = self.inspect_held(&whole);
        match verdict {
            Verdict::Block { policy } => self.refuse(&policy, client).await,
            // Redacted: the message goes on rewritten, in one frame.
            Verdict::Rewrite(new) => {
                let frame = self.reframe(&whole, &new);
                forward_bytes(forward, &frame).await.is_ok()
            }
            Verdict::Allow if whole.compressed && self.deflater.is_some() => {
                let frame = self.reframe(&whole, inflated.as_deref().unwrap_or_default());
                forward_bytes(forward, &frame).await.is_ok()
            }
            Verdict::Allow => {
                whole.raw.is_empty() || forward_bytes(forward, &whole.raw).await.is_ok()
            }
        }
    }

    /// One frame carrying `payload` as the whole message `msg` was: its
    /// opcode and mask (a client's frames stay masked), compressed when it
    /// was — with this relay's own compressor, which the receiver follows
    /// from here on.
    fn reframe(&mut self, msg: &Pending, payload: &[u8]) -> Vec<u8> {
        let (opcode, mask) = match parse_header(&msg.raw) {
            Ok(Some(h)) => (h.opcode, h.mask),
            _ => (if msg.text { 1 } else { 2 }, None),
        };
        let mut body = if msg.compressed {
            let reset = self.no_context_takeover;
            let c = self.deflater.get_or_insert_with(|| {
                flate2::Compress::new(flate2::Compression::default(), false)
            });
            if reset {
                c.reset();
            }
            let mut out = Vec::with_capacity(payload.len() / 2 + 64);
            let _ = c.compress_vec(payload, &mut out, flate2::FlushCompress::None);
            loop {
                out.reserve(out.len().max(1024));
                let before = c.total_out();
                let _ = c.compress_vec(&[], &mut out, flate2::FlushCompress::Sync);
                if c.total_out() == before || out.ends_with(&[0, 0, 0xff, 0xff]) {
                    break;
                }
            }
            if out.ends_with(&[0, 0, 0xff, 0xff]) {
                out.truncate(out.len() - 4);
            }
            out
        } else {
            payload.to_vec()
        };
        let mut frame = Vec::with_capacity(body.len() + 14);
        frame.push(0x80 | if msg.compressed { 0x40 } else { 0 } | opcode);
        let masked = if mask.is_some() { 0x80 } else { 0 };
        match body.len() {
            n if n < 126 => frame.push(masked | n as u8),
            n if n <= 0xffff => {
                frame.push(masked | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(masked | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if let Some(m) = mask {
            frame.extend_from_slice(&m);
            unmask(&mut body, Some(m), 0);
        }
        frame.extend_from_slice(&body);
        frame
    }

    /// Blocks the message: the client gets a close 1008 and the relay ends,
    /// so the message never reaches the other side whole. Returns false.
    async fn refuse<C: AsyncWrite + Unpin>(&self, policy: &str, client: &AsyncMutex<C>) -> bool {
        tracing::info!(flow = %self.flow.id, %policy, "WebSocket message blocked");
        let reason = format!("blocked by policy {policy}");
        let _ = forward_bytes(client, &close_frame(1008, &reason)).await;
        false
    }

    /// A message outgrew the hold: the hooks get what was held, then the
    /// held frames are passed on. Returns false when the relay must end.
    async fn start_stream<W, C>(
        &mut self,
        msg: &mut Pending,
        forward: &AsyncMutex<W>,
        client: &AsyncMutex<C>,
    ) -> bool
    where
        W: AsyncWrite + Unpin,
        C: AsyncWrite + Unpin,
    {
        msg.streaming = true;
        if msg.compressed && self.deflater.is_some() {
            // Its frames would have to be re-compressed as they stream.
            let v = self.undecodable(&"a compressed message too large to hold, after a redaction");
            let policy = match v {
                Verdict::Block { policy } => policy,
                _ => "undecodable".into(),
            };
            return self.refuse(&policy, client).await;
        }
        msg.stream = self
            .hooks
            .lock()
            .expect("hooks lock")
            .ws_stream(&self.flow, self.dir, msg.text);
        if msg.stream.is_some() {
            if let (Some(inf), true) = (self.inflater.as_mut(), msg.compressed) {
                if let Err(e) = inf.begin() {
                    let v = self.undecodable(&e);
                    if !self.verdict_ok(v, client).await {
                        return false;
                    }
                    // The hooks let it through unread.
                    msg.stream = None;
                }
            }
        }
        if msg.stream.is_some() {
            let held = std::mem::take(&mut msg.payload);
            let v = match self.decode(msg.compressed, &held) {
                Ok(data) => msg
                    .stream
                    .as_mut()
                    .map_or(Verdict::Allow, |s| s.on_chunk(&self.flow, &data)),
                Err(v) => v,
            };
            if !self.verdict_ok(v, client).await {
                return false;
            }
        }
        let raw = std::mem::take(&mut msg.raw);
        raw.is_empty() || forward_bytes(forward, &raw).await.is_ok()
    }

    /// One piece of a streamed frame: scanned, then passed on; the last
    /// piece of a message only once the message as a whole is allowed.
    /// Returns false when the relay must end.
    async fn stream_piece<W, C>(
        &mut self,
        f: &mut Streamed,
        piece: BytesMut,
        end: bool,
        msg: &mut Pending,
        forward: &AsyncMutex<W>,
        client: &AsyncMutex<C>,
    ) -> bool
    where
        W: AsyncWrite + Unpin,
        C: AsyncWrite + Unpin,
    {
        if f.inspected && msg.stream.is_some() {
            let mut data = piece.to_vec();
            unmask(&mut data, f.mask, f.at);
            f.at += piece.len();
            let mut v = match self.decode(msg.compressed, &data) {
                Ok(data) => msg
                    .stream
                    .as_mut()
                    .map_or(Verdict::Allow, |s| s.on_chunk(&self.flow, &data)),
                Err(v) => v,
            };
            if end && !matches!(v, Verdict::Block { .. }) {
                v = self.end_stream(msg);
            }
            if !self.verdict_ok(v, client).await {
                return false;
            }
        }
        match f.head.take() {
            Some(mut head) => {
                head.extend_from_slice(&piece);
                forward_bytes(forward, &head).await.is_ok()
            }
            None => piece.is_empty() || forward_bytes(forward, &piece).await.is_ok(),
        }
    }

    /// The end of a streamed message: the inflater's last bytes, then the
    /// hooks' verdict on the whole.
    fn end_stream(&mut self, msg: &mut Pending) -> Verdict {
        let Some(mut stream) = msg.stream.take() else {
            return Verdict::Allow;
        };
        if let (Some(inf), true) = (self.inflater.as_mut(), msg.compressed) {
            match inf.end() {
                Ok(tail) => {
                    if let v @ Verdict::Block { .. } =
                        stream.on_chunk(&self.flow, &Bytes::from(tail))
                    {
                        return v;
                    }
                }
                Err(e) => {
                    drop(stream);
                    return self.undecodable(&e);
                }
            }
        }
        stream.on_end(&self.flow)
    }

    /// A piece of a streamed message, inflated if it is compressed; a
    /// piece that does not inflate gets the hooks' `on_undecodable` verdict.
    fn decode(&mut self, compressed: bool, piece: &[u8]) -> Result<Bytes, Verdict> {
        match (self.inflater.as_mut(), compressed) {
            (Some(inf), true) => match inf.push(piece) {
                Ok(d) => Ok(Bytes::from(d)),
                Err(e) => Err(self.undecodable(&e)),
            },
            _ => Ok(Bytes::copy_from_slice(piece)),
        }
    }

    fn undecodable(&mut self, e: &dyn std::fmt::Display) -> Verdict {
        tracing::info!(error = %e, "WebSocket message not inflated: blocked");
        self.hooks.lock().expect("hooks lock").on_undecodable(
            &self.flow,
            self.dir,
            &format!("WebSocket message: {e}"),
        )
    }

    /// False (after closing the client with 1008) when `v` blocks.
    async fn verdict_ok<C: AsyncWrite + Unpin>(&self, v: Verdict, client: &AsyncMutex<C>) -> bool {
        match v {
            Verdict::Block { policy } => self.refuse(&policy, client).await,
            _ => true,
        }
    }

    /// The hooks' verdict on a held message, and the message inflated
    /// when it was compressed.
    fn inspect_held(&mut self, msg: &Pending) -> (Verdict, Option<Vec<u8>>) {
        let inflated = match (&mut self.inflater, msg.compressed) {
            (Some(inf), true) => match inf.inflate(&msg.payload) {
                Ok(d) => Some(d),
                Err(e) => {
                    // Fail closed: a message that cannot be read is not
                    // relayed unread (and with context takeover, neither
                    // can any later one be).
                    return (self.undecodable(&e), None);
                }
            },
            _ => None,
        };
        let data = inflated.as_deref().unwrap_or(&msg.payload);
        let verdict = self
            .hooks
            .lock()
            .expect("hooks lock")
            .on_ws_message(&self.flow, self.dir, msg.text, data);
        (verdict, inflated)
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
            no_context_takeover: false,
            deflater: None,
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
            hold: 1 << 20,
        };
        let mut c = Compress::new(Compression::default(), false);
        let good = Pending {
            payload: deflate_msg(&mut c, b"hello"),
            text: true,
            compressed: true,
            ..Pending::default()
        };
        assert_eq!(pump.inspect_held(&good).0, Verdict::Allow);
        let corrupt = Pending {
            payload: vec![0xff; 64],
            text: true,
            compressed: true,
            ..Pending::default()
        };
        assert!(matches!(
            pump.inspect_held(&corrupt).0,
            Verdict::Block { .. }
        ));
        // With context takeover the stream is lost: later messages too.
        let later = Pending {
            payload: deflate_msg(&mut c, b"after"),
            text: true,
            compressed: true,
            ..Pending::default()
        };
        assert!(matches!(pump.inspect_held(&later).0, Verdict::Block { .. }));
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
