//! HTTP/3 requests of an intercepted QUIC connection, bridged into the
//! HTTP relay ([`Forwarder`]): each request stream becomes a request whose
//! body reads the stream, judged and relayed upstream (HTTP/2 or 1.1) by
//! the same code as a TCP flow's requests; the response goes back on the
//! stream. CONNECT (tunnels, and WebSocket over HTTP/3 should h3 ever
//! parse its `:protocol`) is refused with a 403, and a request h3 cannot
//! parse (among them extended CONNECT with `:protocol websocket`, RFC 9220:
//! the gateway never offers SETTINGS_ENABLE_CONNECT_PROTOCOL) is reset
//! with H3_MESSAGE_ERROR; both with a `policy` event, so the client falls
//! back to TCP, where WebSocket is inspected.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h3::error::Code;
use h3::server::{RequestResolver, RequestStream};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;

use crate::events::{Event, EventSink};
use crate::relay::http::{refusal_page, Body, BoxError, Forwarder};

/// The QUIC connection type h3 runs over.
pub type H3Conn = h3_quinn::Connection;
type Recv = RequestStream<h3_quinn::RecvStream, Bytes>;
type SendHalf = RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;

/// A request not relayed: the `policy` event's kind and reason.
pub type Refusal = (&'static str, String);

/// Serves one request stream to its end; says so when it refused it.
pub async fn serve(resolver: RequestResolver<H3Conn, Bytes>, fwd: &Forwarder) -> Option<Refusal> {
    let (req, stream) = match resolver.resolve_request().await {
        Ok(r) => r,
        // Malformed: h3 has reset the stream (or closed the connection)
        // already; nothing of it was relayed.
        Err(e) => {
            tracing::info!(error = %e, "h3 request refused");
            return Some((
                "quic_request_malformed",
                format!("HTTP/3 request not relayed (stream reset): {e}"),
            ));
        }
    };
    let (mut send, recv) = stream.split();
    let mut refusal = None;
    let resp = if let Some(why) = refused(&req) {
        tracing::info!(reason = why, "h3 request refused");
        refusal = Some(("quic_connect_refused", why.to_string()));
        refusal_page(StatusCode::FORBIDDEN, why)
    } else {
        let (mut parts, ()) = req.into_parts();
        // HTTP/3 carries the host in `:authority` only; an HTTP/1.1
        // upstream needs it as `Host` (HTTP/2 drops it again).
        if !parts.headers.contains_key(header::HOST) {
            if let Some(v) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(header::HOST, v);
            }
        }
        let body = H3Body {
            recv: Mutex::new(recv),
            data_done: false,
            done: false,
        };
        fwd.forward(Request::from_parts(parts, body.boxed())).await
    };
    respond(&mut send, resp).await;
    refusal
}

/// Refusal events one connection records at most (a client can open
/// streams faster than they are worth recording).
pub const MAX_REFUSAL_EVENTS: u32 = 16;

/// Records a refused request as a `policy` event of the flow.
pub fn record_refusal(fwd: &Forwarder, events: &dyn EventSink, (kind, reason): &Refusal) {
    let flow = &fwd.relay().flow;
    events.emit(Event::Policy(flow.stamp().policy(kind, "block", reason)));
}

/// Why a request is not relayed over HTTP/3, if it is not.
fn refused(req: &Request<()>) -> Option<&'static str> {
    if req.method() == http::Method::CONNECT {
        return Some(
            "CONNECT over HTTP/3 (WebSocket or a tunnel) is not relayed: refused so the client uses TCP, where it is inspected",
        );
    }
    if req.headers().contains_key(header::UPGRADE) {
        return Some("Upgrade over HTTP/3 is not relayed");
    }
    None
}

/// Sends `resp` on the stream; a body that fails (cut by policy, upstream
/// gone) resets the stream so the client never takes it for complete.
async fn respond(send: &mut SendHalf, resp: Response<Body>) {
    let (mut parts, mut body) = resp.into_parts();
    strip_connection_headers(&mut parts.headers);
    let head = Response::from_parts(parts, ());
    if let Err(e) = send.send_response(head).await {
        tracing::debug!(error = %e, "h3 response head not sent");
        return;
    }
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "h3 response body cut");
                send.stop_stream(Code::H3_REQUEST_CANCELLED);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if data.is_empty() {
                        continue;
                    }
                    if let Err(e) = send.send_data(data).await {
                        tracing::debug!(error = %e, "h3 response body not sent");
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        if let Err(e) = send.send_trailers(trailers).await {
                            tracing::debug!(error = %e, "h3 trailers not sent");
                            return;
                        }
                    }
                }
            },
        }
    }
    if let Err(e) = send.finish().await {
        tracing::debug!(error = %e, "h3 response not finished");
    }
}

/// HTTP/3 has no connection-specific header fields (RFC 9114 §4.2): a
/// response carrying one is malformed for the client.
fn strip_connection_headers(headers: &mut HeaderMap) {
    for h in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(h);
    }
}

/// An HTTP/3 request body as the relay reads bodies.
struct H3Body {
    /// In a mutex only so the body is `Sync`; never contended (`get_mut`).
    recv: Mutex<Recv>,
    data_done: bool,
    done: bool,
}

impl hyper::body::Body for H3Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let recv = this.recv.get_mut().unwrap_or_else(|e| e.into_inner());
        if !this.data_done {
            match ready!(recv.poll_recv_data(cx)) {
                Ok(Some(mut b)) => {
                    let bytes = b.copy_to_bytes(b.remaining());
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Ok(None) => this.data_done = true,
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
        let trailers = ready!(recv.poll_recv_trailers(cx));
        this.done = true;
        match trailers {
            Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
