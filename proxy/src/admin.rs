//! The admin endpoint, loopback by default. `/healthz` answers anyone;
//! everything else needs the bearer token from `admin.token_file`.
//!
//! May import: `state` and `events`; never `flow` or `listener`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::state::Shared;

/// Answers one admin request.
pub async fn handle(
    req: Request<Incoming>,
    shared: Shared,
    token: Option<String>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    if req.method() == http::Method::GET && path == "/healthz" {
        return Ok(reply(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok\n".into(),
        ));
    }
    let Some(token) = token else {
        return Ok(reply(
            StatusCode::UNAUTHORIZED,
            "text/plain; charset=utf-8",
            "admin.token_file is not configured: only /healthz is available\n".into(),
        ));
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same(given.as_bytes(), token.as_bytes()) {
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            "text/plain; charset=utf-8",
            "bearer token required\n".into(),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return Ok(r);
    }
    match (req.method().as_str(), path) {
        ("GET", "/metrics") => {
            let body = serde_json::json!({
                "connections_in_flight": shared.tracker.len(),
                "connection_slots_free": shared.slots.available_permits(),
                "leaf_cache": { "entries": shared.leaves.len(), "mints": shared.leaves.mint_count() },
                "events": shared.events.metrics(),
            });
            Ok(reply(
                StatusCode::OK,
                "application/json",
                format!("{body}\n"),
            ))
        }
        _ => Ok(reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".into(),
        )),
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response")
}
