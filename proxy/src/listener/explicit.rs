//! The explicit proxy listener: CONNECT and absolute-form HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use tracing::Instrument;

use crate::flow::admit::admit;
use crate::flow::context::Slot;
use crate::flow::{self, FlowStart, Mode, Target};
use crate::onboarding::Onboarding;
use crate::policy::Identity;
use crate::relay::http::Body;
use crate::state::{Current, Shared};

use super::backoff::AcceptBackoff;
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

/// Accepts explicit-proxy connections until `stop` (the gateway stops
/// accepting, or a reload moved this listener). Each request takes the
/// state in force when it arrives.
pub async fn accept_loop(listener: TcpListener, current: Current, stop: CancellationToken) {
    let own = listener.local_addr().ok();
    let mut backoff = AcceptBackoff::new("proxy.listen");
    loop {
        let (mut stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    backoff.failed(&e).await;
                    continue;
                }
            },
        };
        backoff.succeeded();
        let shared = current.snapshot();
        let slot = match admit(&shared, peer) {
            Ok(slot) => slot,
            Err(refusal) => {
                if refusal.answered() {
                    shared.tracker.spawn(async move {
                        let _ = stream
                            .write_all(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        let _ = stream.shutdown().await;
                    });
                }
                continue; // dropping the stream closes it
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_shared = shared.clone();
        let conn = Conn {
            own,
            slot,
            current: current.clone(),
        };
        shared.tracker.spawn(async move {
            serve(stream, peer, conn, conn_shared).await;
        });
    }
}

/// What every flow of one client connection shares.
#[derive(Clone)]
struct Conn {
    /// The listener's own address: never a destination.
    own: Option<SocketAddr>,
    /// The connection's admission slot, held by each of its flows.
    slot: Slot,
    /// The state in force, snapshotted by each request.
    current: Current,
}

async fn serve(stream: TcpStream, peer: SocketAddr, conn: Conn, shared: Shared) {
    let service = service_fn(move |req| {
        let shared = conn.current.snapshot();
        handle(req, peer, conn.clone(), shared)
    });
    let proxy = &shared.config.proxy;
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(proxy.header_read_timeout)
        .max_buf_size(proxy.max_header_bytes.max(8192))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(client = %peer, error = %e, "client connection ended with error");
            }
        }
        _ = shared.stopping.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = conn => {}
                _ = shared.abort.cancelled() => {}
            }
        }
    }
}

type Reply = Response<Body>;

async fn handle(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    conn: Conn,
    shared: Shared,
) -> Result<Reply, Infallible> {
    // The onboarding host is answered here, before proxy authentication
    // (a device being onboarded may have no credentials yet): never
    // relayed, whatever the port or path.
    if let Some(page) = shared.onboarding.clone() {
        if let Some(reply) = onboarding(&mut req, &page, &shared) {
            return Ok(reply);
        }
    }
    let auth = req
        .headers()
        .get(http::header::PROXY_AUTHORIZATION)
        .map(|v| v.as_bytes());
    let identity = match shared.identities.authenticate(peer.ip(), auth) {
        Ok(i) => i,
        Err(e) => {
            tracing::info!(client = %peer, error = %e, "proxy authentication failed");
            return Ok(Response::builder()
                .status(StatusCode::PROXY_AUTHENTICATION_REQUIRED)
                .header(
                    http::header::PROXY_AUTHENTICATE,
                    "Basic realm=\"gatehouse\"",
                )
                .header(http::header::CONNECTION, "close")
                .body(full(Bytes::from(format!("Gatehouse: {e}\n"))))
                .expect("static response"));
        }
    };
    if req.method() == Method::CONNECT {
        return Ok(connect(req, peer, identity, conn, shared).await);
    }
    Ok(plain_http(req, peer, identity, conn, shared).await)
}

/// The onboarding page when `req` is for `onboarding.host`: absolute-form
/// `http://host/…`, origin-form with that `Host`, or a CONNECT to it (the
/// page over TLS with a leaf from the CA: the trust check).
fn onboarding(
    req: &mut Request<Incoming>,
    page: &Arc<Onboarding>,
    shared: &Shared,
) -> Option<Reply> {
    let uri_host = req.uri().host();
    if req.method() == Method::CONNECT {
        if !uri_host.is_some_and(|h| page.is_host(h)) {
            return None;
        }
        let upgrade = hyper::upgrade::on(&mut *req);
        let page = page.clone();
        let head_timeout = shared.config.proxy.header_read_timeout;
        let stopping = shared.stopping.clone();
        shared.tracker.spawn(async move {
            let Ok(upgraded) = upgrade.await else {
                return;
            };
            tokio::select! {
                _ = page.serve_tls(TokioIo::new(upgraded), head_timeout) => {}
                _ = stopping.cancelled() => {}
            }
        });
        return Some(
            Response::builder()
                .status(StatusCode::OK)
                .body(full(Bytes::new()))
                .expect("static response"),
        );
    }
    let ours = match uri_host {
        Some(h) => page.is_host(h),
        None => req
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.parse::<http::uri::Authority>().ok())
            .is_some_and(|a| page.is_host(a.host())),
    };
    ours.then(|| {
        page.respond(req, false)
            .map(|b| b.map_err(|never| match never {}).boxed())
    })
}

/// Absolute-form plain HTTP (`GET http://host/path`): readable, so a flow
/// of its own per request, inspected like intercepted traffic.
async fn plain_http(
    req: Request<Incoming>,
    peer: SocketAddr,
    identity: Identity,
    conn: Conn,
    shared: Shared,
) -> Reply {
    let uri = req.uri().clone();
    // `ws://` is how some clients ask a proxy for a plain WebSocket.
    if !matches!(uri.scheme_str(), Some("http" | "ws")) {
        return text(
            StatusCode::BAD_REQUEST,
            "Gatehouse: this is a proxy; send CONNECT, or an absolute http:// URI\n",
        );
    }
    let Some(host) = uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
    else {
        return text(StatusCode::BAD_REQUEST, "absolute URI without a host\n");
    };
    let start = FlowStart {
        mode: Mode::ExplicitHttp,
        client: peer,
        identity,
        target: Some(Target {
            host,
            port: uri.port_u16().unwrap_or(80),
        }),
        slot: Some(conn.slot),
    };
    flow::plain_http(start, req, &shared).await
}

async fn connect(
    req: Request<Incoming>,
    peer: SocketAddr,
    identity: Identity,
    conn: Conn,
    shared: Shared,
) -> Reply {
    let Some(authority) = req.uri().authority().cloned() else {
        return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n");
    };
    let Some(port) = authority.port_u16() else {
        return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n");
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let start = FlowStart {
        mode: Mode::Explicit,
        client: peer,
        identity,
        target: Some(Target { host, port }),
        slot: Some(conn.slot),
    };
    let (flow, upstream) = match flow::connect(start, &shared, conn.own).await {
        Ok(c) => c,
        Err(refused) => {
            return text(
                refused.kind.status(),
                &format!("Gatehouse: {}\n", refused.reason),
            )
        }
    };
    let tunnel_shared = shared.clone();
    // Only the upgrade is kept: the request itself would stay in the
    // tunnel task's memory for the life of the flow.
    let upgrade = hyper::upgrade::on(req);
    let span = flow.span.clone();
    shared.tracker.spawn(async move {
        let upgraded = match upgrade.instrument(span).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(client = %peer, error = %e, "CONNECT upgrade failed");
                flow.record(&*tunnel_shared.events);
                return;
            }
        };
        flow::serve(flow, TokioIo::new(upgraded), upstream, tunnel_shared).await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .body(full(Bytes::new()))
        .expect("static response")
}

fn text(status: StatusCode, body: &str) -> Reply {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(http::header::CONNECTION, "close")
        .body(full(Bytes::from(body.to_string())))
        .expect("static response")
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}
