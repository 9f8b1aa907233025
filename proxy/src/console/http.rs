//! Routing: the pages and the JSON API. Every response is `no-store`;
//! every state change needs the session's CSRF token (`X-CSRF-Token`, or
//! the `csrf` field of a form); forms post to the API endpoints and get a
//! redirect or a page back.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth::{LoginError, Principal, COOKIE};
use super::incidents::{self, Query};
use super::pages;
use super::service::{Console, Refused};
use crate::config::Role;
use crate::events::query::now_ms;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// Fields of a JSON object or a form.
#[derive(Debug, Default)]
pub(super) struct Input {
    fields: HashMap<String, Vec<String>>,
    pub(super) form: bool,
}

impl Input {
    pub(super) fn get(&self, k: &str) -> &str {
        self.fields
            .get(k)
            .and_then(|v| v.first())
            .map_or("", String::as_str)
    }

    fn all(&self, k: &str) -> &[String] {
        self.fields.get(k).map_or(&[], Vec::as_slice)
    }
}

/// Answers one console request.
pub async fn handle(
    req: Request<Incoming>,
    console: Arc<Console>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = route(req, &console, peer).await;
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    Ok(resp)
}

async fn route(
    req: Request<Incoming>,
    console: &Console,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let cookie = session_cookie(&req);
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let csrf_header = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let who = match (&bearer, &cookie) {
        (Some(t), _) => console.auth.bearer(t),
        (None, Some(c)) => console.auth.session(c),
        _ => None,
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let api = segments.first() == Some(&"api");

    if method == Method::GET && path == "/static/console.css" {
        return respond(StatusCode::OK, "text/css; charset=utf-8", pages::CSS.into());
    }
    // Login and logout first: they need no (or end the) session.
    match (&method, path.as_str()) {
        (&Method::GET, "/login") => return html(StatusCode::OK, pages::login(None)),
        (&Method::GET, "/") => {
            return redirect(if who.is_some() {
                "/incidents"
            } else {
                "/login"
            })
        }
        (&Method::POST, "/login") | (&Method::POST, "/api/session") => {
            // Login has no session to hold a CSRF token yet: a browser's
            // own word on where the form came from decides instead, so no
            // other site can log a browser into an account of its choosing.
            if cross_site(&req) {
                console.audit(
                    "",
                    peer,
                    "login_failed",
                    None,
                    "cross-site login request",
                    "",
                );
                return if api {
                    json_error(403, "cross-site login refused")
                } else {
                    html(
                        StatusCode::FORBIDDEN,
                        pages::login(Some("cross-site login refused")),
                    )
                };
            }
            let input = match read_input(req).await {
                Ok(i) => i,
                Err(r) => return r,
            };
            return login(console, peer, &input).await;
        }
        _ => {}
    }
    let Some(who) = who else {
        return if api {
            json_error(
                401,
                "log in first: POST /api/session, or send a bearer token",
            )
        } else {
            redirect("/login")
        };
    };
    let state_change = method != Method::GET && method != Method::HEAD;
    let input = if state_change {
        match read_input(req).await {
            Ok(i) => i,
            Err(r) => return r,
        }
    } else {
        Input::default()
    };
    if state_change {
        let given = csrf_header
            .as_deref()
            .or(Some(input.get("csrf")).filter(|s| !s.is_empty()));
        if !who.csrf_ok(given) {
            console.audit(
                &who.name,
                peer,
                "csrf_refused",
                None,
                "",
                &format!("{method} {path}"),
            );
            return error(input.form, 403, "missing or wrong CSRF token".into());
        }
    }

    match (method.as_str(), segments.as_slice()) {
        ("POST", ["logout"]) | ("DELETE", ["api", "session"]) => {
            if let Some(c) = &cookie {
                console.auth.logout(c);
            }
            console.audit(&who.name, peer, "logout", None, "", "");
            let mut r = if input.form || method == Method::POST {
                redirect("/login")
            } else {
                let mut r = respond(StatusCode::NO_CONTENT, "text/plain", String::new());
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            };
            r.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&format!(
                    "{COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict"
                ))
                .expect("static cookie"),
            );
            r
        }
        ("GET", ["api", "session"]) => json_ok(json!({
            "name": who.name, "roles": who.roles, "csrf": who.csrf,
        })),
        ("GET", ["incidents"]) | ("GET", ["api", "incidents"]) => {
            let q = match Query::parse(&query, now_ms()) {
                Ok(q) => q,
                Err(e) => return error(!api, 400, e),
            };
            match console.incidents(&q).await {
                Ok((list, total)) if api => json_ok(json!({
                    "incidents": list, "total": total, "page": q.page, "per_page": q.per_page,
                })),
                Ok((list, total)) => html(
                    StatusCode::OK,
                    pages::incidents(&who, &query, &q, &list, total),
                ),
                Err(r) => refusal(!api, r),
            }
        }
        ("POST", ["api", "incidents", "status"]) => {
            let status = input.get("status").to_string();
            let reason = input.get("reason").to_string();
            let mut done = 0;
            for id in input.all("ids") {
                let Ok(id) = id.parse::<Uuid>() else {
                    return error(input.form, 400, format!("`{id}` is not an incident id"));
                };
                if let Err(r) = console
                    .triage_step(&who, peer, id, incidents::STATUS, &status, &reason)
                    .await
                {
                    return refusal(input.form, r);
                }
                done += 1;
            }
            if input.form {
                redirect("/incidents")
            } else {
                json_ok(json!({ "updated": done }))
            }
        }
        ("GET", ["incidents", id]) | ("GET", ["api", "incidents", id]) => {
            let Ok(id) = id.parse::<Uuid>() else {
                return error(!api, 404, "no such incident".into());
            };
            match console.incident(id).await {
                Ok(Some(inc)) if api => json_ok(json!(inc)),
                Ok(Some(inc)) => {
                    let flow = match inc.findings.first() {
                        Some(f) => console.flow(f.flow_id).await.ok().flatten(),
                        None => None,
                    };
                    html(
                        StatusCode::OK,
                        pages::incident(&who, &inc, flow.as_ref(), console.can_reveal()),
                    )
                }
                Ok(None) => error(!api, 404, "no such incident".into()),
                Err(r) => refusal(!api, r),
            }
        }
        ("GET", ["incidents", id, "conversation"])
        | ("GET", ["api", "incidents", id, "conversation"]) => {
            let Ok(id) = id.parse::<Uuid>() else {
                return error(!api, 404, "no such incident".into());
            };
            let inc = match console.incident(id).await {
                Ok(Some(i)) => i,
                Ok(None) => return error(!api, 404, "no such incident".into()),
                Err(r) => return refusal(!api, r),
            };
            match console.conversation(&inc).await {
                Ok(msgs) if api => json_ok(json!({
                    "incident": inc.id, "conversation": inc.conversation, "messages": msgs,
                })),
                Ok(msgs) => html(StatusCode::OK, pages::conversation(&who, &inc, &msgs)),
                Err(r) => refusal(!api, r),
            }
        }
        ("POST", ["api", "incidents", id, step]) => {
            let Ok(id) = id.parse::<Uuid>() else {
                return error(input.form, 404, "no such incident".into());
            };
            let (action, field) = match *step {
                "status" => (incidents::STATUS, "status"),
                "assignee" => (incidents::ASSIGN, "assignee"),
                "notes" => (incidents::NOTE, "note"),
                _ => return error(input.form, 404, "not found".into()),
            };
            match console
                .triage_step(
                    &who,
                    peer,
                    id,
                    action,
                    input.get(field),
                    input.get("reason"),
                )
                .await
            {
                Ok(()) if input.form => redirect(&format!("/incidents/{id}")),
                Ok(()) => json_ok(json!({ "ok": true })),
                Err(r) => refusal(input.form, r),
            }
        }
        ("POST", ["api", "findings", id, "reveal"]) => {
            let Ok(id) = id.parse::<Uuid>() else {
                return error(input.form, 404, "no such finding".into());
            };
            match console.reveal(&who, peer, id, input.get("reason")).await {
                Ok(e) if input.form => html(StatusCode::OK, pages::revealed(&who, id, &e)),
                Ok(e) => json_ok(json!({ "text": e.matched, "context": e.context })),
                Err(r) => refusal(input.form, r),
            }
        }
        ("GET", ["api", "export"]) => {
            let q = match Query::parse(&query, now_ms()) {
                Ok(q) => q,
                Err(e) => return json_error(400, &e),
            };
            let format = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "format")
                .map_or_else(|| "jsonl".to_string(), |(_, v)| v.into_owned());
            match console.export(&who, peer, &q, &format, &query).await {
                Ok(body) => {
                    let (ct, ext) = if format == "csv" {
                        ("text/csv; charset=utf-8", "csv")
                    } else {
                        ("application/x-ndjson", "jsonl")
                    };
                    let mut r = respond(StatusCode::OK, ct, body);
                    r.headers_mut().insert(
                        header::CONTENT_DISPOSITION,
                        HeaderValue::from_str(&format!(
                            "attachment; filename=\"gatehouse-incidents.{ext}\""
                        ))
                        .expect("ascii"),
                    );
                    r
                }
                Err(r) => refusal(false, r),
            }
        }
        ("GET", ["inspectability"]) | ("GET", ["api", "inspectability"]) => {
            let now = now_ms();
            let mut since = now.saturating_sub(7 * 24 * 3600 * 1000);
            let mut until = now + 1;
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                if v.trim().is_empty() {
                    continue;
                }
                let t = match crate::events::query::parse_time(&v, now) {
                    Ok(t) => t,
                    Err(e) => return error(!api, 400, format!("`{k}`: {e}")),
                };
                match &*k {
                    "from" | "since" => since = t,
                    "to" | "until" => until = t,
                    _ => {}
                }
            }
            match console.inspectability(since, until).await {
                Ok(rows) if api => json_ok(json!({
                    "from": crate::events::query::format_ms(since),
                    "to": crate::events::query::format_ms(until),
                    "devices": rows,
                })),
                Ok(rows) => html(
                    StatusCode::OK,
                    pages::inspectability(&who, &query, since, until, &rows),
                ),
                Err(r) => refusal(!api, r),
            }
        }
        _ => error(!api, 404, "not found".into()),
    }
}

impl Console {
    pub(super) fn can_reveal(&self) -> bool {
        self.config.private_key_file.is_some()
    }
}

async fn login(console: &Console, peer: SocketAddr, input: &Input) -> Response<Full<Bytes>> {
    let name = input.get("name").to_string();
    let password = input.get("password").to_string();
    let auth = console.auth_handle();
    let ip = peer.ip();
    let who = name.clone();
    let result = tokio::task::spawn_blocking(move || auth.login(&who, &password, ip))
        .await
        .unwrap_or(Err(LoginError::Wrong));
    match result {
        Ok((token, p)) => {
            console.audit(&p.name, peer, "login", None, "", "");
            let mut r = if input.form {
                redirect("/incidents")
            } else {
                json_ok(json!({ "csrf": p.csrf, "name": p.name, "roles": p.roles }))
            };
            let max_age = console.auth.lifetime().as_secs();
            r.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&format!(
                    "{COOKIE}={token}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict"
                ))
                .expect("token is base64url"),
            );
            r
        }
        Err(LoginError::Wrong) => {
            console.audit(
                &name,
                peer,
                "login_failed",
                None,
                "wrong name or password",
                "",
            );
            if input.form {
                html(
                    StatusCode::UNAUTHORIZED,
                    pages::login(Some("Wrong name or password.")),
                )
            } else {
                json_error(401, "wrong name or password")
            }
        }
        Err(LoginError::Throttled(wait)) => {
            console.audit(&name, peer, "login_failed", None, "throttled", "");
            let secs = wait.as_secs().max(1);
            let msg = format!("too many failed logins; try again in {secs} s");
            let mut r = if input.form {
                html(StatusCode::TOO_MANY_REQUESTS, pages::login(Some(&msg)))
            } else {
                json_error(429, &msg)
            };
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
    }
}

/// Whether a browser says the request comes from another site. Its
/// `Sec-Fetch-Site` decides where it sends one (anything but same-origin
/// or none); otherwise an `Origin` naming another site. `Origin: null` alone
/// says nothing: the console's own `Referrer-Policy: no-referrer` makes a
/// browser send it for the console's own forms. Scripts send neither.
fn cross_site<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    if let Some(site) = h.get("sec-fetch-site") {
        return !matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let Some(origin) = h.get(header::ORIGIN) else {
        return false;
    };
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            h.get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
    match (origin.to_str(), host) {
        (Ok("null"), _) => false,
        (Ok(origin), Some(host)) => !origin.eq_ignore_ascii_case(&format!("https://{host}")),
        _ => true,
    }
}

fn session_cookie<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

async fn read_input(req: Request<Incoming>) -> Result<Input, Response<Full<Bytes>>> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let form = ct.starts_with("application/x-www-form-urlencoded");
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(error(form, 413, "request body too large".into())),
    };
    let mut fields: HashMap<String, Vec<String>> = HashMap::new();
    if form {
        for (k, v) in form_urlencoded::parse(&body) {
            fields
                .entry(k.into_owned())
                .or_default()
                .push(v.into_owned());
        }
    } else if !body.is_empty() {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&body) else {
            return Err(json_error(
                400,
                "the body must be a JSON object (or a form)",
            ));
        };
        for (k, v) in map {
            let vals = match v {
                Value::Array(a) => a.into_iter().map(value_text).collect(),
                v => vec![value_text(v)],
            };
            fields.insert(k, vals);
        }
    }
    Ok(Input { fields, form })
}

fn value_text(v: Value) -> String {
    match v {
        Value::String(s) => s,
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

fn html(status: StatusCode, page: maud::Markup) -> Response<Full<Bytes>> {
    respond(status, "text/html; charset=utf-8", page.into_string())
}

fn json_ok(v: Value) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, "application/json", format!("{v}\n"))
}

fn json_error(status: u16, message: &str) -> Response<Full<Bytes>> {
    respond(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        "application/json",
        format!("{}\n", json!({ "error": message })),
    )
}

fn error(page: bool, status: u16, message: String) -> Response<Full<Bytes>> {
    if page {
        html(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            pages::error(status, &message),
        )
    } else {
        json_error(status, &message)
    }
}

fn refusal(page: bool, r: Refused) -> Response<Full<Bytes>> {
    error(page, r.status, r.message)
}

fn redirect(to: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .body(Full::new(Bytes::new()))
        .expect("valid redirect")
}

/// Whether `p` holds `role` (for pages deciding which forms to show).
pub(super) fn has(p: &Principal, role: Role) -> bool {
    p.can(role)
}
