//! The interception hooks: how inspection (DLP, message extraction) plugs
//! into relayed traffic without knowing about sockets.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::events::FlowStamp;

/// Who and what a flow is; shared by every hook call on it.
#[derive(Debug, Clone)]
pub struct FlowContext {
    /// Unique id of the flow (UUID v7), carried by all its events.
    pub id: uuid::Uuid,
    /// The client's address.
    pub client: SocketAddr,
    /// User name, if known (identity pool or proxy login).
    pub user: Option<String>,
    /// Device name, if known.
    pub device: Option<String>,
    /// The server name (SNI, or the CONNECT host).
    pub host: String,
    /// The app the flow was identified as, if any.
    pub app: Option<String>,
    /// ALPN protocol in use, if any.
    pub alpn: Option<String>,
}

impl FlowContext {
    /// What every event of this flow carries.
    pub fn stamp(&self) -> FlowStamp {
        FlowStamp {
            flow_id: self.id,
            client: self.client,
            user: self.user.clone().unwrap_or_default(),
            device: self.device.clone().unwrap_or_default(),
            app: self.app.clone(),
            host: self.host.clone(),
        }
    }
}

/// Which way data flows (outbound: client to server, what leaves the company).
pub use gatehouse_inspectors::Direction;

/// What a hook decides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Let it through unchanged.
    #[default]
    Allow,
    /// Stop it: HTTP 403 page naming `policy`, WebSocket close, or reset.
    Block {
        /// Policy name shown to the user (never the matched data).
        policy: String,
    },
    /// Replace the body with this (redaction).
    Rewrite(Bytes),
}

/// One HTTP message as hooks see it.
#[derive(Debug)]
pub struct HttpMessage<'a> {
    /// Method and path of the request (also given for responses).
    pub method: &'a http::Method,
    /// Request URI.
    pub uri: &'a http::Uri,
    /// Headers of this message (request or response).
    pub headers: &'a http::HeaderMap,
    /// Response status, for responses.
    pub status: Option<http::StatusCode>,
    /// The body bytes inspected: whole if `complete`, else the first window
    /// (`intercept.inspect_window` bytes; of a held response, what arrived
    /// before it paused). Empty for the head of a response that is not held.
    pub body: &'a [u8],
    /// Whether `body` is the whole body.
    pub complete: bool,
}

/// Per-flow hooks, created by [`Interceptor::open`]; state lives here.
/// Every method has a default body that allows.
pub trait FlowHooks: Send {
    /// A request (outbound) head and body window.
    fn on_request(&mut self, _flow: &FlowContext, _msg: &HttpMessage<'_>) -> Verdict {
        Verdict::Allow
    }
    /// Whether to hold the first window of this response's body (as request
    /// bodies always are) so that `on_response` sees it, and can block it
    /// with a 403 page or rewrite it, before anything reaches the client.
    /// `head` has an empty body. Default: no, the response streams from its
    /// first byte and `on_response` sees only the head (long-poll and
    /// server-sent events keep their latency).
    fn hold_response(&mut self, _flow: &FlowContext, _head: &HttpMessage<'_>) -> bool {
        false
    }
    /// A response (inbound) head, with its body window when held.
    fn on_response(&mut self, _flow: &FlowContext, _msg: &HttpMessage<'_>) -> Verdict {
        Verdict::Allow
    }
    /// A body goes on past what `on_request`/`on_response` saw in `msg`:
    /// hooks for the rest of it, or None to relay the rest uninspected.
    /// Called right after that hook, under the same lock, unless it blocked.
    fn stream_body(
        &mut self,
        _flow: &FlowContext,
        _dir: Direction,
        _msg: &HttpMessage<'_>,
    ) -> Option<Box<dyn BodyHooks>> {
        None
    }
    /// A complete WebSocket message (decompressed if permessage-deflate).
    fn on_ws_message(
        &mut self,
        _flow: &FlowContext,
        _dir: Direction,
        _text: bool,
        _payload: &[u8],
    ) -> Verdict {
        Verdict::Allow
    }
    /// A WebSocket message larger than the held window goes on: hooks that
    /// see its payload (decompressed if permessage-deflate) as it streams —
    /// what was held first, then each piece before it is passed on — or
    /// None to relay it uninspected. `Block` from them closes the client
    /// with 1008 before the message's last piece is forwarded; `Rewrite`
    /// cannot change a frame already framed and is taken as `Allow`.
    fn ws_stream(
        &mut self,
        _flow: &FlowContext,
        _dir: Direction,
        _text: bool,
    ) -> Option<Box<dyn BodyHooks>> {
        None
    }
    /// Bytes of a non-HTTP protocol inside TLS, before they are passed on.
    /// `Block` cuts the connection: these bytes (and the rest of a message
    /// they end) never reach the other side. `Rewrite` is not possible on a
    /// byte stream and is treated as `Block`.
    fn on_bytes(&mut self, _flow: &FlowContext, _dir: Direction, _bytes: &[u8]) -> Verdict {
        Verdict::Allow
    }
    /// Content that cannot be decoded for inspection (a WebSocket message
    /// that does not inflate, or inflates past its cap). Default: block —
    /// what cannot be read is not relayed unread.
    fn on_undecodable(&mut self, _flow: &FlowContext, _dir: Direction, _what: &str) -> Verdict {
        Verdict::Block {
            policy: "undecodable content".into(),
        }
    }
    /// The event that recorded the last block (a message or the flow's
    /// connection), named in block pages so the employee or help desk can
    /// quote it.
    fn block_event(&self) -> Option<uuid::Uuid> {
        None
    }
    /// The flow ended.
    fn on_close(&mut self, _flow: &FlowContext) {}
}

/// Inspection of the rest of one body, past its window. Owned by the
/// relay's body stream (no flow lock per chunk; HTTP/2 streams of one flow
/// are inspected independently). What is forwarded is gone: a verdict can
/// only change bytes it has not let through yet.
pub trait BodyHooks: Send {
    /// The next chunk. `Allow` forwards it; `Rewrite(b)` forwards `b`
    /// instead (possibly empty, holding bytes back; possibly with bytes held
    /// before); `Block` cuts the body: the peer sees it end in an error
    /// (reset), never a clean end.
    fn on_chunk(&mut self, flow: &FlowContext, chunk: &Bytes) -> Verdict;
    /// The body is complete; called before its last bytes are forwarded
    /// when its length is known. `Rewrite(b)` sends `b` (bytes held back)
    /// before the end; `Block` cuts the body instead of ending it.
    fn on_end(&mut self, flow: &FlowContext) -> Verdict;
}

/// Creates the hooks of each intercepted flow.
pub trait Interceptor: Send + Sync + 'static {
    /// Hooks for a new flow.
    fn open(&self, flow: &FlowContext) -> Box<dyn FlowHooks>;

    /// The DLP rules behind these hooks, for `/readyz` and `/metrics`;
    /// `None` when they scan nothing (no rules loaded).
    fn rules_status(&self) -> Option<RulesStatus> {
        None
    }
}

/// The DLP rules in force and how their reloads went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RulesStatus {
    /// Rules in the set in force.
    pub rules: usize,
    /// Reloads that put a new set in force.
    pub reloads: u64,
    /// Reloads rejected (the previous set stayed in force).
    pub reload_failures: u64,
}

/// Hooks that allow everything.
#[derive(Debug, Default)]
pub struct AllowAll;

impl FlowHooks for AllowAll {}

impl Interceptor for AllowAll {
    fn open(&self, _flow: &FlowContext) -> Box<dyn FlowHooks> {
        Box::new(AllowAll)
    }
}
