//! HTTP/1.1 and HTTP/2 relay with inspection taps, hyper on both legs.
//!
//! Each intercepted client connection gets one upstream connection of the
//! same protocol (the client was offered only the ALPN the server chose), so
//! keep-alive and HTTP/2 multiplexing carry through; when the server closes
//! it, the next request reopens it ([`super::upstream`]). Request bodies are held
//! for inspection up to `intercept.inspect_window` bytes or their end, however
//! long the client pauses (up to the idle timeout, after which the request
//! fails and nothing of it is forwarded), so a block can stop them before
//! anything leaves and the window is always judged whole; responses are
//! held only when the hooks ask (`hold_response`), up to the window or the
//! first pause (a server's pause can be a long poll). The rest of
//! a body streams through the [`BodyHooks`] the hooks give for it, which can
//! rewrite bytes not yet forwarded or cut the body.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use super::hooks::{BodyHooks, Direction, FlowContext, FlowHooks, HttpMessage, Verdict};
pub use super::upstream::{Io, Redial, Redialing};
use super::upstream::{Replay, Upstream};
use super::websocket;

/// Boxed error of relayed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type on both legs.
pub type Body = BoxBody<Bytes, BoxError>;

/// A check of each request's `Host`/`:authority` against the host the flow
/// was decided on (it lives in `flow::decide`); `Some` answer refuses it.
pub type AuthorityCheck =
    Arc<dyn Fn(&FlowContext, &http::request::Parts) -> Option<Response<Body>> + Send + Sync>;

/// Shared by every request of one relayed connection.
pub struct HttpRelay {
    /// Domain-fronting check, run on each request before anything else.
    pub authority: Option<AuthorityCheck>,
    /// The flow.
    pub flow: Arc<FlowContext>,
    /// Its hooks.
    pub hooks: Arc<Mutex<Box<dyn FlowHooks>>>,
    /// Bytes of request body held for inspection.
    pub window: usize,
    /// How long a held response body may pause before its window is judged
    /// as it is (request bodies wait for the window or their end).
    pub window_wait: Duration,
    /// Header read timeout for the client leg.
    pub header_timeout: Duration,
    /// Largest request head accepted (`proxy.max_header_bytes`).
    pub max_header_bytes: usize,
    /// Idle timeout: of upgraded (WebSocket) connections, and the longest a
    /// held request body may pause.
    pub idle: Duration,
    /// Cancelled when the gateway's grace period ends.
    pub abort: tokio_util::sync::CancellationToken,
    /// The flow's upgraded (WebSocket) relays: the flow waits for them
    /// before it is recorded, so its record has their bytes and duration
    /// and shutdown gives them the grace period like any connection.
    pub tracker: tokio_util::task::TaskTracker,
    /// Requests relayed on this flow so far (for `flow_update` events).
    pub requests: Arc<std::sync::atomic::AtomicU64>,
    /// Remove `h3` alternatives from responses' `Alt-Svc` (QUIC is refused).
    pub strip_alt_svc: bool,
    /// Rewrite DNS-over-HTTPS answers' HTTPS records (see [`super::doh`]).
    pub doh: Option<super::doh::Doh>,
}

/// Relays HTTP between `client` and `upstream` until either side closes.
/// When the server closes `upstream`, `redial` opens the next one (see
/// [`super::upstream`]); without it, later requests fail with 502.
pub async fn relay<C, U>(
    client: C,
    upstream: U,
    h2: bool,
    relay: HttpRelay,
    redial: Option<Redial>,
) -> Result<(), String>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let sender = Upstream::open(upstream, h2, redial).await?;
    let max_header_bytes = relay.max_header_bytes;
    let header_timeout = relay.header_timeout;
    let ctx = Arc::new((relay, sender));
    // Boxed per request: hyper's HTTP/1.1 server keeps a slot the size of
    // the service future for the whole connection.
    let svc = service_fn(move |req| {
        let ctx = ctx.clone();
        Box::pin(async move { Ok::<_, Infallible>(forward(boxed(req), &ctx.0, &ctx.1).await) })
    });
    let io = TokioIo::new(client);
    let result = if h2 {
        Box::pin(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                // `proxy.max_header_bytes` bounds an HTTP/2 head as it does
                // an HTTP/1.1 one (hyper's own default is 16 KiB).
                .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX))
                .serve_connection(io, svc),
        )
        .await
    } else {
        Box::pin(
            hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                // The same head timeout as the explicit proxy's (hyper's
                // own default is 30 s); it also bounds an idle keep-alive
                // wait for the next request.
                .header_read_timeout(header_timeout)
                .max_header_size(max_header_bytes)
                .serve_connection(io, svc)
                .with_upgrades(),
        )
        .await
    };
    result.map_err(|e| format!("client connection: {e}"))
}

/// Forwards one absolute-form plain-HTTP request over a fresh upstream
/// connection, with the same inspection as intercepted traffic.
pub async fn forward_plain(
    req: Request<Incoming>,
    upstream: tokio::net::TcpStream,
    relay: &HttpRelay,
) -> Response<Body> {
    let sender = match Upstream::open(upstream, false, None).await {
        Ok(s) => s,
        Err(e) => return error_page(StatusCode::BAD_GATEWAY, &e),
    };
    forward(boxed(req), relay, &sender).await
}

/// A hyper request with its body in the relay's body type (extensions,
/// among them a pending upgrade, kept).
fn boxed(req: Request<Incoming>) -> Request<Body> {
    req.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed())
}

/// One upstream connection for requests that do not arrive on a hyper
/// server connection (HTTP/3 streams): each is judged and relayed by the
/// same code as an HTTP/1.1 or HTTP/2 request ([`Forwarder::forward`]).
pub struct Forwarder {
    relay: HttpRelay,
    upstream: Upstream,
}

impl Forwarder {
    /// Handshakes HTTP/2 (`h2`) or HTTP/1.1 over `upstream`; `redial`
    /// reopens it when the server closes it.
    pub async fn open<U: Io>(
        upstream: U,
        h2: bool,
        relay: HttpRelay,
        redial: Option<Redial>,
    ) -> Result<Self, String> {
        let upstream = Upstream::open(upstream, h2, redial).await?;
        Ok(Self { relay, upstream })
    }

    /// The relay settings (hooks, counters) requests are judged with.
    pub fn relay(&self) -> &HttpRelay {
        &self.relay
    }

    /// Judges and relays one request: extraction, DLP, block page,
    /// response inspection, `Alt-Svc` stripping.
    pub async fn forward(&self, req: Request<Body>) -> Response<Body> {
        forward(req, &self.relay, &self.upstream).await
    }
}

async fn forward(mut req: Request<Body>, relay: &HttpRelay, sender: &Upstream) -> Response<Body> {
    relay
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let client_upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let client_h1 = req.version() < http::Version::HTTP_2;
    let (mut parts, body) = req.into_parts();
    if let Some(refused) = relay
        .authority
        .as_ref()
        .and_then(|c| c(&relay.flow, &parts))
    {
        return refused;
    }
    let json = wants_json(&parts.headers);
    let matrix = parts.uri.path().starts_with("/_matrix/");

    // Held until the window is full or the body ends, whatever the client's
    // pauses: a partial window would skip extraction and structural
    // decoding. Only the idle timeout ends the wait, and then nothing of the
    // body is forwarded. The bound is half as long again: an intercepted
    // connection gone idle is ended first by the flow's idle watch (which
    // records `idle_timeout`); this one ends a stream kept waiting on a
    // connection that other streams keep busy, and plain-HTTP requests.
    let idle = relay.idle.saturating_add(relay.idle / 2);
    let (window, rest) = match read_window(body, relay.window, Hold::Full(idle)).await {
        Ok(w) => w,
        Err(ReadError::Idle) => {
            tracing::info!(
                ?idle,
                "request body idle past the idle timeout; nothing forwarded"
            );
            let mut page = error_page(
                StatusCode::REQUEST_TIMEOUT,
                "the request body stopped before it could be inspected; nothing was forwarded",
            );
            page.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return page;
        }
        Err(e) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("reading request body: {e}"),
            )
        }
    };
    let (verdict, tap) = {
        let msg = HttpMessage {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            status: None,
            body: &window,
            complete: rest.is_done(),
        };
        inspect_window(relay, Direction::Outbound, &msg)
    };
    let cut_by = CutBy::default();
    // The whole body, when known: a retry can send it again.
    let (body, known) = match verdict {
        Verdict::Block { policy } => {
            return blocked_request_page(&policy, block_event(relay), json, matrix);
        }
        Verdict::Rewrite(new) if rest.is_done() => {
            set_length(&mut parts.headers, new.len());
            (full(new.clone()), Some(new))
        }
        Verdict::Rewrite(new) => {
            adjust_length(&mut parts.headers, window.len(), new.len());
            (relayed(new, rest, tap, relay, Some(cut_by.clone())), None)
        }
        Verdict::Allow => {
            let known = matches!(rest, Tail::Done(None)).then(|| window.clone());
            (
                relayed(window, rest, tap, relay, Some(cut_by.clone())),
                known,
            )
        }
    };

    // Hop-by-hop and proxy headers never reach the origin; an upgrade
    // keeps only what names the upgrade.
    let upgrade = client_upgrade
        .as_ref()
        .and_then(|_| parts.headers.get(header::UPGRADE).cloned());
    strip_hop_by_hop(&mut parts.headers);
    if let Some(upgrade) = upgrade {
        parts.headers.insert(header::UPGRADE, upgrade);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if sender.is_h2() {
        parts.uri = absolute_form(&parts.uri, &parts.headers, &relay.flow.host);
        parts.version = http::Version::HTTP_2;
        parts.headers.remove(header::HOST);
    } else {
        parts.uri = origin_form(&parts.uri);
        parts.version = http::Version::HTTP_11;
    }
    let method = parts.method.clone();
    let uri = parts.uri.clone();
    let replay = known.filter(|_| method.is_idempotent()).map(|body| Replay {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        version: parts.version,
        headers: parts.headers.clone(),
        body,
    });
    let upstream_req = Request::from_parts(parts, body);
    let mut resp = match sender.send(upstream_req, replay).await {
        Ok(r) => r,
        // The upstream never saw the end of the body: tell the user why.
        // (HTTP/2 to the upstream reports the cut as a stream error of its
        // own: the body says so too.)
        Err(e) if cut_policy(&*e).or_else(|| cut_by.get().cloned()).is_some() => {
            let policy = cut_policy(&*e)
                .or_else(|| cut_by.get().cloned())
                .unwrap_or_default();
            return blocked_request_page(&policy, block_event(relay), json, matrix);
        }
        Err(e) => {
            return error_page(
                StatusCode::BAD_GATEWAY,
                &format!("upstream request failed: {e}"),
            )
        }
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let deflate = websocket::negotiated_deflate(resp.headers());
            let flow = relay.flow.clone();
            let hooks = relay.hooks.clone();
            let idle = relay.idle;
            let hold = relay.window;
            let abort = relay.abort.clone();
            relay.tracker.spawn(
                async move {
                    match tokio::join!(client_upgrade, upstream_upgrade) {
                        (Ok(c), Ok(u)) => {
                            websocket::relay(
                                TokioIo::new(c),
                                TokioIo::new(u),
                                deflate,
                                flow,
                                hooks,
                                hold,
                                idle,
                                abort,
                            )
                            .await;
                        }
                        (c, u) => tracing::debug!(
                            client_ok = c.is_ok(),
                            upstream_ok = u.is_ok(),
                            "upgrade failed"
                        ),
                    }
                }
                .in_current_span(),
            );
        }
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, full(Bytes::new()));
    }

    let (mut parts, body) = resp.into_parts();
    let body: Body = body.map_err(|e| Box::new(e) as BoxError).boxed();
    let hold = {
        let head = HttpMessage {
            method: &method,
            uri: &uri,
            headers: &parts.headers,
            status: Some(parts.status),
            body: &[],
            complete: false,
        };
        relay
            .hooks
            .lock()
            .expect("hooks lock")
            .hold_response(&relay.flow, &head)
    };
    // Responses stream unless the hooks want to see a window first: holding
    // would break long-poll and server-sent events.
    let (window, rest) = if hold {
        match read_window(body, relay.window, Hold::UntilPause(relay.window_wait)).await {
            Ok(w) => w,
            Err(e) => {
                return error_page(
                    StatusCode::BAD_GATEWAY,
                    &format!("reading response body: {e}"),
                )
            }
        }
    } else {
        (Bytes::new(), Tail::More(body))
    };
    let (verdict, tap) = {
        let msg = HttpMessage {
            method: &method,
            uri: &uri,
            headers: &parts.headers,
            status: Some(parts.status),
            body: &window,
            complete: rest.is_done(),
        };
        inspect_window(relay, Direction::Inbound, &msg)
    };
    strip_hop_by_hop(&mut parts.headers);
    if relay.strip_alt_svc {
        super::alt_svc::strip_h3(&mut parts.headers);
    }
    let body = match verdict {
        Verdict::Block { policy } => {
            let mut page = blocked_response_page(&policy, block_event(relay), json);
            if !rest.is_done() && client_h1 {
                // The upstream connection dies with the unread body; so must
                // this one, or the client's next request would fail.
                page.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return page;
        }
        Verdict::Rewrite(new) if rest.is_done() => {
            set_length(&mut parts.headers, new.len());
            full(new)
        }
        Verdict::Rewrite(new) => {
            adjust_length(&mut parts.headers, window.len(), new.len());
            relayed(new, rest, tap, relay, None)
        }
        Verdict::Allow => relayed(window, rest, tap, relay, None),
    };
    super::doh::response(Response::from_parts(parts, body), relay.doh.clone()).await
}

/// Shows a message's head and window to the hooks; when its body goes on,
/// also asks them for the hooks of the rest (under the same lock).
fn inspect_window(
    relay: &HttpRelay,
    dir: Direction,
    msg: &HttpMessage<'_>,
) -> (Verdict, Option<Box<dyn BodyHooks>>) {
    let mut hooks = relay.hooks.lock().expect("hooks lock");
    let verdict = match dir {
        Direction::Outbound => hooks.on_request(&relay.flow, msg),
        Direction::Inbound => hooks.on_response(&relay.flow, msg),
    };
    let tap = if msg.complete || matches!(verdict, Verdict::Block { .. }) {
        None
    } else {
        hooks.stream_body(&relay.flow, dir, msg)
    };
    (verdict, tap)
}

/// What follows the inspection window of a body.
enum Tail {
    /// The body ended, perhaps with trailers.
    Done(Option<HeaderMap>),
    /// More frames to stream.
    More(Body),
}

impl Tail {
    fn is_done(&self) -> bool {
        matches!(self, Self::Done(_))
    }
}

/// How long [`read_window`] waits for the next frame of a body.
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// Until the window is full or the body ends; a pause longer than this
    /// (the idle timeout) is an error.
    Full(Duration),
    /// Until the first pause this long: the window is what came before it.
    UntilPause(Duration),
}

/// Why a body window could not be read.
#[derive(Debug)]
enum ReadError {
    /// The peer sent nothing for the idle timeout.
    Idle,
    /// The body failed.
    Body(BoxError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Idle => f.write_str("body idle past the idle timeout"),
            Self::Body(e) => e.fmt(f),
        }
    }
}

/// Reads up to `window` bytes of body, or until it ends (or pauses, per
/// `hold`).
async fn read_window(
    mut body: Body,
    window: usize,
    hold: Hold,
) -> Result<(Bytes, Tail), ReadError> {
    let mut buf = BytesMut::new();
    let wait = match hold {
        Hold::Full(d) | Hold::UntilPause(d) => d,
    };
    loop {
        if buf.len() >= window {
            return Ok((buf.freeze(), Tail::More(body)));
        }
        match tokio::time::timeout(wait, body.frame()).await {
            Err(_) if matches!(hold, Hold::Full(_)) => return Err(ReadError::Idle),
            Err(_) => return Ok((buf.freeze(), Tail::More(body))),
            Ok(None) => return Ok((buf.freeze(), Tail::Done(None))),
            Ok(Some(Err(e))) => return Err(ReadError::Body(e)),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => buf.extend_from_slice(&data),
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        return Ok((buf.freeze(), Tail::Done(Some(trailers))));
                    }
                }
            },
        }
    }
}

/// The inspected `first` bytes, then the rest of the body, each chunk
/// shown to `tap` if there is one.
/// `cut_by` learns the policy if the hooks cut the body.
fn relayed(
    first: Bytes,
    rest: Tail,
    tap: Option<Box<dyn BodyHooks>>,
    relay: &HttpRelay,
    cut_by: Option<CutBy>,
) -> Body {
    let (rest, trailers) = match rest {
        Tail::Done(trailers) => (None, trailers),
        Tail::More(body) => (Some(body), None),
    };
    if first.is_empty() && trailers.is_none() && tap.is_none() {
        if let Some(body) = rest {
            return body;
        }
    }
    BodyExt::boxed(Relayed {
        first: (!first.is_empty()).then_some(first),
        rest,
        trailers,
        tap: tap.map(std::sync::Mutex::new),
        flow: relay.flow.clone(),
        cut: None,
        cut_by,
    })
}

/// A body relayed through [`BodyHooks`]: the window first, then each chunk
/// as the hooks let it through; a Block ends it in an error so the peer
/// sees a reset, never a clean end.
struct Relayed {
    first: Option<Bytes>,
    /// None once the source body ended.
    rest: Option<Body>,
    /// Sent last.
    trailers: Option<HeaderMap>,
    /// In a mutex only so the body is `Sync`; never contended (`get_mut`).
    tap: Option<std::sync::Mutex<Box<dyn BodyHooks>>>,
    flow: Arc<FlowContext>,
    /// A cut decided but not yet delivered: the body waits a moment first,
    /// so the connection flushes what it has already accepted (a
    /// response's head and the bytes before the cut; HTTP/2 drops frames
    /// still queued for a stream it resets) and the peer sees the body end
    /// in an error rather than nothing at all. Nothing more is forwarded
    /// meanwhile.
    cut: Option<(BoxError, std::pin::Pin<Box<tokio::time::Sleep>>)>,
    /// Told the policy when the body is cut.
    cut_by: Option<CutBy>,
}

/// Where a request body's cut is told to the request that sent it.
type CutBy = Arc<std::sync::OnceLock<String>>;

/// How long a cut body waits before it ends in an error (see `Relayed::cut`).
const CUT_DELAY: Duration = Duration::from_millis(50);

/// The error a body cut by policy ends with.
#[derive(Debug)]
struct PolicyCut(String);

impl std::fmt::Display for PolicyCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "body cut by policy {}", self.0)
    }
}

impl std::error::Error for PolicyCut {}

fn cut(policy: &str) -> BoxError {
    Box::new(PolicyCut(policy.to_string()))
}

/// The policy that cut a request body, if that is why sending it failed.
fn cut_policy(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut at = Some(e);
    while let Some(e) = at {
        if let Some(c) = e.downcast_ref::<PolicyCut>() {
            return Some(c.0.clone());
        }
        at = e.source();
    }
    None
}

impl Relayed {
    /// The error the body is cut with, told to `cut_by`.
    fn cut_now(&self, policy: &str) -> BoxError {
        if let Some(c) = &self.cut_by {
            let _ = c.set(policy.to_string());
        }
        cut(policy)
    }

    /// The source ended (cleanly): what the hooks say to do about it.
    fn end(&mut self) -> Result<Option<Bytes>, BoxError> {
        self.rest = None;
        let Some(tap) = self.tap.take() else {
            return Ok(None);
        };
        let mut tap = tap.into_inner().unwrap_or_else(|e| e.into_inner());
        match tap.on_end(&self.flow) {
            Verdict::Allow => Ok(None),
            Verdict::Rewrite(b) => Ok((!b.is_empty()).then_some(b)),
            Verdict::Block { policy } => Err(self.cut_now(&policy)),
        }
    }
}

impl hyper::body::Body for Relayed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if let Some((_, wait)) = this.cut.as_mut() {
            std::task::ready!(std::future::Future::poll(wait.as_mut(), cx));
            let (e, _) = this.cut.take().expect("a cut is pending");
            return Poll::Ready(Some(Err(e)));
        }
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        loop {
            let Some(body) = this.rest.as_mut() else {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            let frame = match std::task::ready!(std::pin::Pin::new(body).poll_frame(cx)) {
                None => {
                    return Poll::Ready(match this.end() {
                        Ok(Some(held)) => Some(Ok(Frame::data(held))),
                        Ok(None) => this.trailers.take().map(|t| Ok(Frame::trailers(t))),
                        Err(e) => Some(Err(e)),
                    })
                }
                Some(Err(e)) => {
                    this.rest = None;
                    this.tap = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Ok(frame)) => frame,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    // Trailers end the body.
                    if let Ok(t) = frame.into_trailers() {
                        this.trailers = Some(t);
                    }
                    return Poll::Ready(match this.end() {
                        Ok(Some(held)) => Some(Ok(Frame::data(held))),
                        Ok(None) => this.trailers.take().map(|t| Ok(Frame::trailers(t))),
                        Err(e) => Some(Err(e)),
                    });
                }
            };
            let Some(tap) = this.tap.as_mut() else {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            };
            let tap = tap.get_mut().unwrap_or_else(|e| e.into_inner());
            let last = this.rest.as_ref().is_some_and(|b| b.is_end_stream());
            let mut out = match tap.on_chunk(&this.flow, &data) {
                Verdict::Allow => data,
                Verdict::Rewrite(b) => b,
                Verdict::Block { policy } => {
                    this.rest = None;
                    this.tap = None;
                    let mut wait = Box::pin(tokio::time::sleep(CUT_DELAY));
                    // Registers the waker; the sleep has just begun.
                    let _ = std::future::Future::poll(wait.as_mut(), cx);
                    this.cut = Some((this.cut_now(&policy), wait));
                    return Poll::Pending;
                }
            };
            if last {
                // A sized body's last bytes: judge the whole before the peer
                // has all of it, so a cut still leaves it incomplete.
                match this.end() {
                    Ok(Some(held)) => {
                        let mut joined = BytesMut::with_capacity(out.len() + held.len());
                        joined.extend_from_slice(&out);
                        joined.extend_from_slice(&held);
                        out = joined.freeze();
                    }
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Some(Err(e))),
                }
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_none() && self.trailers.is_none() && self.cut.is_none()
    }
}

pub(super) fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn set_length(headers: &mut HeaderMap, len: usize) {
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

/// A rewritten window changed the body's length by `new - old` bytes.
fn adjust_length(headers: &mut HeaderMap, old: usize, new: usize) {
    let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    else {
        return;
    };
    let len = (len + new as u64).saturating_sub(old as u64);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.to_ascii_lowercase().contains("upgrade"))
        })
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the
/// `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .filter(|t| !t.is_empty())
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for h in [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
    ] {
        headers.remove(h);
    }
}

fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .parse()
        .unwrap_or_else(|_| Uri::from_static("/"))
}

fn absolute_form(uri: &Uri, headers: &HeaderMap, host: &str) -> Uri {
    if uri.scheme().is_some() && uri.authority().is_some() {
        return uri.clone();
    }
    let authority = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or(host)
        .to_string();
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("https://{authority}{pq}")
        .parse()
        .unwrap_or_else(|_| uri.clone())
}

/// What a user sees when a policy blocks a request: names the policy and
/// the event that recorded it, never the matched data. JSON for API
/// clients (`want_json`), an HTML page otherwise.
pub fn blocked_page(policy: &str, event: Option<uuid::Uuid>, want_json: bool) -> Response<Body> {
    policy_page(policy, event, want_json, "sending")
}

/// [`blocked_page`] for a request the relay read. Matrix client-server
/// calls (`/_matrix/…`) get the reference as `gatehouse_event_id`: Matrix
/// clients (matrix-nio) take any JSON body with a string `event_id` for
/// "sent", whatever the status, and would tell the user the message went.
fn blocked_request_page(
    policy: &str,
    event: Option<uuid::Uuid>,
    json: bool,
    matrix: bool,
) -> Response<Body> {
    let page = blocked_page(policy, event, json);
    if !(json && matrix) {
        return page;
    }
    let (mut parts, _) = page.into_parts();
    let body = policy_json(policy, event.map(|e| e.to_string()), "gatehouse_event_id");
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, full(Bytes::from(body)))
}

/// What is shown instead of a response a policy blocked.
pub fn blocked_response_page(
    policy: &str,
    event: Option<uuid::Uuid>,
    want_json: bool,
) -> Response<Body> {
    policy_page(policy, event, want_json, "receiving")
}

/// Whether a request is an API call that should get its block as JSON:
/// `Accept` names JSON before (or without) HTML, or the request sends JSON
/// and does not ask for HTML.
pub fn wants_json(headers: &HeaderMap) -> bool {
    let get = |h| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let accept = get(header::ACCEPT);
    let json_at = accept.find("json");
    let html_at = accept.find("text/html");
    match (json_at, html_at) {
        (Some(j), Some(h)) => j < h,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        // No preference: API clients send JSON, or multipart uploads
        // (Slack, Discord, Mattermost, Zulip and Rocket.Chat file APIs).
        (None, None) => {
            let ct = get(header::CONTENT_TYPE);
            ct.contains("json") || ct.trim_start().starts_with("multipart/form-data")
        }
    }
}

fn block_event(relay: &HttpRelay) -> Option<uuid::Uuid> {
    relay.hooks.lock().ok().and_then(|h| h.block_event())
}

fn policy_page(policy: &str, event: Option<uuid::Uuid>, json: bool, what: &str) -> Response<Body> {
    let event_text = event.map(|e| e.to_string());
    let (content_type, body) = if json {
        (
            "application/json",
            policy_json(policy, event_text.clone(), "event_id"),
        )
    } else {
        let policy = html_escape(policy);
        let reference = event_text
            .as_deref()
            .map(|e| format!("<p>Reference: <code>{}</code></p>", html_escape(e)))
            .unwrap_or_default();
        (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Blocked by Gatehouse</title></head>\
                 <body><h1>This message was blocked</h1><p>Your organisation's data-protection policy \
                 <strong>{policy}</strong> does not allow {what} this content.</p>{reference}\
                 <p>If you think this is a mistake, contact your security team and quote the reference.</p></body></html>\n"
            ),
        )
    };
    let mut b = Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header(header::CONTENT_TYPE, content_type)
        .header(
            "x-gatehouse-policy",
            HeaderValue::from_str(&html_escape(policy))
                .unwrap_or(HeaderValue::from_static("policy")),
        );
    if let Some(e) = &event_text {
        b = b.header("x-gatehouse-event", e.as_str());
    }
    b.body(full(Bytes::from(body))).expect("static response")
}

/// The JSON block: one shape the common chat APIs' clients read as an
/// error — `ok: false` + `error` (Slack), `errcode` + `error` (Matrix),
/// `message` (Discord, Mattermost, Rocket.Chat); the human text carries
/// the reference a help desk needs, and `id_key` names the event.
fn policy_json(policy: &str, event: Option<String>, id_key: &str) -> String {
    let message = match &event {
        Some(e) => format!("blocked by policy {policy} (reference {e})"),
        None => format!("blocked by policy {policy}"),
    };
    let mut v = serde_json::json!({
        "ok": false,
        "errcode": "M_FORBIDDEN",
        "error": message,
        "message": message,
        "policy": policy,
        "rule": policy.strip_prefix("DLP rule "),
    });
    v[id_key] = serde_json::Value::from(event);
    format!("{v}\n")
}

/// The proxy's own refusal of a request it could not carry (destination
/// refused, upstream unreachable): plain text, connection closed.
pub fn refusal_page(status: StatusCode, reason: &str) -> Response<Body> {
    let mut r = error_page(status, reason);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn error_page(status: StatusCode, reason: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(Bytes::from(format!("Gatehouse: {reason}\n"))))
        .expect("static response")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
