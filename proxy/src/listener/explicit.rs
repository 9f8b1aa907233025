//! The explicit proxy listener: CONNECT and absolute-form HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::config::PolicyAction;
use crate::events::{now_ms, ConnectionEvent, Event};
use crate::gateway::Shared;
use crate::intercept::hooks::{AllowAll, FlowContext, FlowHooks};
use crate::intercept::http::{blocked_page, forward_plain, Body, HttpRelay};
use crate::intercept::{self, FlowStart};
use crate::policy::Identity;
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Accepts explicit-proxy connections until the gateway stops accepting.
pub async fn accept_loop(listener: TcpListener, shared: Shared) {
    loop {
        let (mut stream, peer) = tokio::select! {
            _ = shared.stopping.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !shared.access.client_allowed(peer.ip()) {
            tracing::warn!(client = %peer, "refused: client not in proxy.allowed_clients");
            continue; // dropping the stream closes it
        }
        // Fail-closed: a flow whose events could not be recorded is not served.
        let recording = shared.events.accepting();
        if !recording {
            tracing::warn!(client = %peer, "refused: event journal full (events.full_policy = fail_closed)");
        }
        let slot = shared.slots.clone().try_acquire_owned().ok();
        let Some(slot) = slot.filter(|_| recording) else {
            if recording {
                tracing::warn!(client = %peer, "refused: proxy.max_connections reached");
            }
            shared.tracker.spawn(async move {
                let _ = stream
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    .await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn_shared = shared.clone();
        shared.tracker.spawn(async move {
            serve(stream, peer, conn_shared).await;
            drop(slot);
        });
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, shared: Shared) {
    let svc_shared = shared.clone();
    let service = service_fn(move |req| handle(req, peer, svc_shared.clone()));
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
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: Shared,
) -> Result<Reply, Infallible> {
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
        return Ok(connect(req, peer, identity, shared).await);
    }
    Ok(plain_http(req, peer, identity, shared).await)
}

/// Absolute-form plain HTTP (`GET http://host/path`): readable, so inspected
/// like intercepted traffic; one upstream connection per request.
async fn plain_http(
    req: Request<Incoming>,
    peer: SocketAddr,
    identity: Identity,
    shared: Shared,
) -> Reply {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("http") {
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
    let port = uri.port_u16().unwrap_or(80);
    let mut ev = ConnectionEvent {
        flow_id: uuid::Uuid::now_v7(),
        mode: "explicit-http".into(),
        client: peer,
        user: identity.user.clone().unwrap_or_default(),
        device: identity.device.clone().unwrap_or_default(),
        destination: Some(format!("{host}:{port}")),
        started_ms: now_ms(),
        ..ConnectionEvent::default()
    };
    let app = shared.catalog.lookup_host(&host).map(|a| a.id.clone());
    let decision = shared
        .policy
        .decide(Some(&host), app.as_deref(), false, &identity);
    ev.reason = decision.reason.clone();
    ev.flagged = decision.flagged;
    ev.decision = decision.action.as_str().into();
    let reply = if decision.action == PolicyAction::Block {
        ev.close_reason = "blocked".into();
        blocked_page(&decision.reason)
    } else {
        match dial(&host, port, &shared).await {
            Err((status, reason)) => {
                ev.decision = "block".into();
                ev.reason = reason.clone();
                ev.close_reason = "refused".into();
                text(status, &format!("Gatehouse: {reason}\n"))
            }
            Ok(upstream) => {
                ev.server_addr = upstream.peer_addr().ok();
                let flow = Arc::new(FlowContext {
                    id: ev.flow_id,
                    client: peer,
                    user: identity.user.clone(),
                    device: identity.device.clone(),
                    host: host.clone(),
                    alpn: None,
                });
                let hooks: Box<dyn FlowHooks> = if decision.action == PolicyAction::Intercept {
                    shared.interceptor.open(&flow)
                } else {
                    Box::new(AllowAll)
                };
                let relay = HttpRelay {
                    flow: flow.clone(),
                    hooks: Arc::new(Mutex::new(hooks)),
                    window: shared.config.intercept.inspect_window,
                    window_wait: Duration::from_millis(500),
                    header_timeout: shared.config.proxy.header_read_timeout,
                    max_header_bytes: shared.config.proxy.max_header_bytes,
                    idle: shared.config.proxy.idle_timeout,
                    abort: shared.abort.clone(),
                };
                let resp = forward_plain(req, upstream, &relay).await;
                relay.hooks.lock().expect("hooks lock").on_close(&flow);
                ev.close_reason = "closed".into();
                resp
            }
        }
    };
    ev.ended_ms = now_ms();
    shared.events.emit(Event::Connection(ev));
    reply
}

async fn connect(
    req: Request<Incoming>,
    peer: SocketAddr,
    identity: Identity,
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
    let destination = format!("{host}:{port}");
    let upstream = match dial(&host, port, &shared).await {
        Ok(s) => s,
        Err((status, reason)) => {
            tracing::info!(client = %peer, %destination, %reason, "CONNECT refused");
            shared.events.emit(Event::Connection(ConnectionEvent {
                flow_id: uuid::Uuid::now_v7(),
                mode: "explicit".into(),
                client: peer,
                user: identity.user.clone().unwrap_or_default(),
                device: identity.device.clone().unwrap_or_default(),
                destination: Some(destination),
                decision: "block".into(),
                reason: reason.clone(),
                flagged: status == StatusCode::FORBIDDEN,
                started_ms: now_ms(),
                ended_ms: now_ms(),
                close_reason: "refused".into(),
                host: host.clone(),
                ..ConnectionEvent::default()
            }));
            return text(status, &format!("Gatehouse: {reason}\n"));
        }
    };
    let tunnel_shared = shared.clone();
    // Only the upgrade is kept: the request itself would stay in the
    // tunnel task's memory for the life of the flow.
    let upgrade = hyper::upgrade::on(req);
    shared.tracker.spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(client = %peer, error = %e, "CONNECT upgrade failed");
                return;
            }
        };
        let start = FlowStart {
            mode: "explicit",
            client: peer,
            identity,
            host,
            port,
            upstream,
        };
        intercept::serve(TokioIo::new(upgraded), start, tunnel_shared).await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .body(full(Bytes::new()))
        .expect("static response")
}

/// Resolves and connects, refusing destinations the policy forbids.
async fn dial(host: &str, port: u16, shared: &Shared) -> Result<TcpStream, (StatusCode, String)> {
    let timeout = shared.config.upstream.connect_timeout;
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                return Err((
                    StatusCode::BAD_GATEWAY,
                    format!("cannot resolve {host}: {e}"),
                ))
            }
            Err(_) => {
                return Err((
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("resolving {host} timed out"),
                ))
            }
        };
    let allowed: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| shared.access.destination_allowed(a.ip()))
        .collect();
    if allowed.is_empty() {
        return Err((
            StatusCode::FORBIDDEN,
            format!("destination {host}:{port} is in a private, loopback or link-local range"),
        ));
    }
    let mut last = String::new();
    for addr in allowed {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = format!("cannot connect to {addr}: {e}"),
            Err(_) => last = format!("connecting to {addr} timed out"),
        }
    }
    Err((StatusCode::BAD_GATEWAY, last))
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
