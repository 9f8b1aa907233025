//! HTTP/1.1 and HTTP/2 relay with inspection taps, hyper on both legs.
//!
//! Each intercepted client connection gets one upstream connection of the
//! same protocol (the client was offered only the ALPN the server chose), so
//! keep-alive and HTTP/2 multiplexing carry through. Request bodies are held
//! for inspection up to `intercept.inspect_window` bytes (or until the body
//! pauses), so a block can stop them before anything leaves; the rest, and
//! every response, streams with per-chunk inspection.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::hooks::{Direction, FlowContext, FlowHooks, HttpMessage, Verdict};
use super::websocket;

/// Boxed error of relayed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type on both legs.
pub type Body = BoxBody<Bytes, BoxError>;

/// Shared by every request of one relayed connection.
pub struct HttpRelay {
    /// The flow.
    pub flow: Arc<FlowContext>,
    /// Its hooks.
    pub hooks: Arc<Mutex<Box<dyn FlowHooks>>>,
    /// Bytes of request body held for inspection.
    pub window: usize,
    /// How long a request body may pause before it is forwarded uninspected-so-far.
    pub window_wait: Duration,
    /// Header read timeout for the client leg.
    pub header_timeout: Duration,
    /// Largest request head accepted (`proxy.max_header_bytes`).
    pub max_header_bytes: usize,
    /// Idle timeout for upgraded (WebSocket) connections.
    pub idle: Duration,
    /// Cancelled when the gateway's grace period ends.
    pub abort: tokio_util::sync::CancellationToken,
}

enum Sender {
    H1(tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Body>>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

/// Relays HTTP between `client` and `upstream` until either side closes.
///
/// The handshakes and both connections are boxed futures: each takes only
/// the memory its own protocol needs, and a handshake's state is freed once
/// it is done rather than sizing the relay for its whole life (an idle
/// keep-alive connection should cost little).
pub async fn relay<C, U>(client: C, upstream: U, h2: bool, relay: HttpRelay) -> Result<(), String>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let sender = if h2 {
        let (send, conn) = Box::pin(
            hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(upstream)),
        )
        .await
        .map_err(|e| format!("upstream h2 handshake: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream h2 connection ended");
            }
        });
        Sender::H2(send)
    } else {
        // hyper's read buffers (both legs) keep their default bound of about
        // 400 KiB: they grow for large bodies and never shrink, so an idle
        // connection keeps what its largest body grew them to, but a 64 KiB
        // bound cost a tenth of upload and a sixth of download throughput.
        let (send, conn) =
            Box::pin(hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(upstream)))
                .await
                .map_err(|e| format!("upstream http/1.1 handshake: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream http/1.1 connection ended");
            }
        });
        Sender::H1(tokio::sync::Mutex::new(send))
    };
    let max_header_bytes = relay.max_header_bytes;
    let ctx = Arc::new((relay, sender));
    // Boxed per request: hyper's HTTP/1.1 server keeps a slot the size of
    // the service future for the whole connection.
    let svc = service_fn(move |req| {
        let ctx = ctx.clone();
        Box::pin(async move { Ok::<_, Infallible>(forward(req, &ctx.0, &ctx.1).await) })
    });
    let io = TokioIo::new(client);
    let result = if h2 {
        Box::pin(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .serve_connection(io, svc),
        )
        .await
    } else {
        Box::pin(
            hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
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
    let (send, conn) = match hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(upstream))
        .await
    {
        Ok(pair) => pair,
        Err(e) => return error_page(StatusCode::BAD_GATEWAY, &format!("upstream handshake: {e}")),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream plain-http connection ended");
        }
    });
    forward(req, relay, &Sender::H1(tokio::sync::Mutex::new(send))).await
}

async fn forward(mut req: Request<Incoming>, relay: &HttpRelay, sender: &Sender) -> Response<Body> {
    let client_upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    let (window, rest) = match read_window(body, relay.window, relay.window_wait).await {
        Ok(w) => w,
        Err(e) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("reading request body: {e}"),
            )
        }
    };
    let verdict = {
        let msg = HttpMessage {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            status: None,
            body: &window,
            complete: rest.is_done(),
        };
        relay
            .hooks
            .lock()
            .expect("hooks lock")
            .on_request(&relay.flow, &msg)
    };
    let body = match verdict {
        Verdict::Block { policy } => return blocked_page(&policy),
        Verdict::Rewrite(new) => {
            set_length(&mut parts.headers, new.len());
            full(new)
        }
        Verdict::Allow => chain(window, rest, relay, Direction::Outbound, &parts),
    };

    if client_upgrade.is_none() {
        strip_hop_by_hop(&mut parts.headers);
    }
    parts.uri = match sender {
        Sender::H1(_) => origin_form(&parts.uri),
        Sender::H2(_) => absolute_form(&parts.uri, &parts.headers, &relay.flow.host),
    };
    if matches!(sender, Sender::H2(_)) {
        parts.version = http::Version::HTTP_2;
        parts.headers.remove(header::HOST);
    } else {
        parts.version = http::Version::HTTP_11;
    }
    let method = parts.method.clone();
    let uri = parts.uri.clone();
    let upstream_req = Request::from_parts(parts, body);
    let sent = match sender {
        Sender::H1(s) => {
            let mut s = s.lock().await;
            match s.ready().await {
                Ok(()) => s.send_request(upstream_req).await,
                Err(e) => Err(e),
            }
        }
        Sender::H2(s) => s.clone().send_request(upstream_req).await,
    };
    let mut resp = match sent {
        Ok(r) => r,
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
            let abort = relay.abort.clone();
            tokio::spawn(async move {
                match tokio::join!(client_upgrade, upstream_upgrade) {
                    (Ok(c), Ok(u)) => {
                        websocket::relay(
                            TokioIo::new(c),
                            TokioIo::new(u),
                            deflate,
                            flow,
                            hooks,
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
            });
        }
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, full(Bytes::new()));
    }

    let (mut parts, body) = resp.into_parts();
    // Responses stream: holding them would break long-poll and server-sent events.
    let verdict = {
        let msg = HttpMessage {
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
            .on_response(&relay.flow, &msg)
    };
    if let Verdict::Block { policy } = verdict {
        return blocked_page(&policy);
    }
    strip_hop_by_hop(&mut parts.headers);
    let mut req_like = Request::new(());
    *req_like.method_mut() = method;
    *req_like.uri_mut() = uri;
    let (req_parts, _) = req_like.into_parts();
    let body = chain(
        Bytes::new(),
        Tail::More(body),
        relay,
        Direction::Inbound,
        &req_parts,
    );
    Response::from_parts(parts, body)
}

/// What follows the inspection window of a body.
enum Tail {
    /// The body ended, perhaps with trailers.
    Done(Option<HeaderMap>),
    /// More frames to stream.
    More(Incoming),
}

impl Tail {
    fn is_done(&self) -> bool {
        matches!(self, Self::Done(_))
    }
}

/// Reads up to `window` bytes of body, or until it ends or pauses for `wait`.
async fn read_window(
    mut body: Incoming,
    window: usize,
    wait: Duration,
) -> Result<(Bytes, Tail), hyper::Error> {
    let mut buf = BytesMut::new();
    loop {
        if buf.len() >= window {
            return Ok((buf.freeze(), Tail::More(body)));
        }
        match tokio::time::timeout(wait, body.frame()).await {
            Err(_) => return Ok((buf.freeze(), Tail::More(body))),
            Ok(None) => return Ok((buf.freeze(), Tail::Done(None))),
            Ok(Some(Err(e))) => return Err(e),
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

/// The inspected `first` bytes, then the rest of `body` with each chunk
/// shown to the hooks; a Block verdict aborts the stream.
fn chain(
    first: Bytes,
    rest: Tail,
    relay: &HttpRelay,
    dir: Direction,
    req: &http::request::Parts,
) -> Body {
    let head = (!first.is_empty()).then(|| Ok::<_, BoxError>(Frame::data(first)));
    let rest = match rest {
        Tail::Done(trailers) => {
            let trailers = trailers.map(|t| Ok(Frame::trailers(t)));
            return BodyExt::boxed(StreamBody::new(stream::iter(
                head.into_iter().chain(trailers),
            )));
        }
        Tail::More(body) => body,
    };
    let head = stream::iter(head);
    let hooks = relay.hooks.clone();
    let flow = relay.flow.clone();
    let (method, uri) = (req.method.clone(), req.uri.clone());
    let tail = stream::unfold(Some(rest), move |state| {
        let hooks = hooks.clone();
        let flow = flow.clone();
        let (method, uri) = (method.clone(), uri.clone());
        async move {
            let mut body = state?;
            let frame = body.frame().await?;
            let item = match frame {
                Err(e) => Err(Box::new(e) as BoxError),
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        let empty = HeaderMap::new();
                        let msg = HttpMessage {
                            method: &method,
                            uri: &uri,
                            headers: &empty,
                            status: None,
                            body: data,
                            complete: false,
                        };
                        let mut h = hooks.lock().expect("hooks lock");
                        let v = match dir {
                            Direction::Outbound => h.on_request(&flow, &msg),
                            Direction::Inbound => h.on_response(&flow, &msg),
                        };
                        if let Verdict::Block { policy } = v {
                            return Some((Err(format!("blocked by policy {policy}").into()), None));
                        }
                    }
                    Ok(frame)
                }
            };
            Some((item, Some(body)))
        }
    });
    BodyExt::boxed(StreamBody::new(futures_util::StreamExt::chain(head, tail)))
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn set_length(headers: &mut HeaderMap, len: usize) {
    headers.remove(header::TRANSFER_ENCODING);
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

/// The page a user sees when a policy blocks a request: names the policy,
/// never the matched data.
pub fn blocked_page(policy: &str) -> Response<Body> {
    let policy = html_escape(policy);
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Blocked by Gatehouse</title></head>\
         <body><h1>This message was blocked</h1><p>Your organisation's data-protection policy \
         <strong>{policy}</strong> does not allow sending this content.</p>\
         <p>If you think this is a mistake, contact your security team.</p></body></html>\n"
    );
    Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(
            "x-gatehouse-policy",
            HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("policy")),
        )
        .body(full(Bytes::from(html)))
        .expect("static response")
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
