//! The admin endpoint, loopback by default: `/healthz` (alive) and
//! `/readyz` (ready to serve) answer anyone; `/metrics` (OpenMetrics text
//! when the scraper asks for it, as Prometheus does, else the classic
//! Prometheus text format)
//! and `/metrics.json` (the same counters and the pipeline's details as one
//! JSON object) answer anyone when `admin.token_file` is not set, as
//! Prometheus exporters do, and need its bearer token when it is.
//!
//! May import: `state` and `events`; never `flow` or `listener`.

use std::convert::Infallible;
use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::state::Shared;

/// The media type of what [`prometheus_client`] writes (OpenMetrics text,
/// which Prometheus asks for first).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The classic Prometheus text format (version 0.0.4).
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text as the classic format: the two differ, for what this
/// endpoint exposes (counters and gauges, no units or exemplars), only in
/// that OpenMetrics names a counter family without its `_total` suffix in
/// `# HELP`/`# TYPE` and ends with `# EOF`. `prometheus-client` writes
/// only OpenMetrics.
fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Answers one admin request.
pub async fn handle(
    req: Request<Incoming>,
    shared: Shared,
    token: Option<String>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let get = req.method() == http::Method::GET;
    match (get, path) {
        (true, "/healthz") => {
            return Ok(reply(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ok\n".into(),
            ))
        }
        (true, "/readyz") => return Ok(readyz(&shared)),
        _ => {}
    }
    if let Some(token) = token {
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
    }
    match (get, path) {
        (true, "/metrics") => {
            let text = prometheus(&shared);
            // Prometheus asks for OpenMetrics; anything else (promtool,
            // curl, older scrapers) gets the classic text format.
            let openmetrics = req
                .headers()
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("application/openmetrics-text"));
            Ok(if openmetrics {
                reply(StatusCode::OK, OPENMETRICS, text)
            } else {
                reply(StatusCode::OK, CLASSIC, classic(&text))
            })
        }
        (true, "/metrics.json") => {
            let leaves = &shared.leaves;
            let body = serde_json::json!({
                "connections_in_flight": in_flight(&shared),
                "connection_slots_free": shared.slots.available_permits(),
                "leaf_cache": {
                    "entries": leaves.len(),
                    "mints": leaves.mint_count(),
                    "hits": leaves.hit_count(),
                },
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

/// Client connections holding a slot: every admitted proxy connection, and
/// never an admin request (those do not take proxy slots).
fn in_flight(shared: &Shared) -> u64 {
    shared
        .config
        .proxy
        .max_connections
        .saturating_sub(shared.slots.available_permits()) as u64
}

/// The Prometheus exposition: traffic counters kept as events are
/// accepted, and the gateway's and pipeline's counters read now.
fn prometheus(shared: &Shared) -> String {
    let mut r = Registry::with_prefix("gatehouse");
    if let Some(traffic) = shared.events.traffic() {
        traffic.register(&mut r);
    }
    let gauge = |r: &mut Registry, name: &str, help: &str, v: i64| {
        r.register(name, help, ConstGauge::new(v));
    };
    let counter = |r: &mut Registry, name: &str, help: &str, v: u64| {
        r.register(name, help, ConstCounter::new(v));
    };
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    gauge(
        &mut r,
        "connections_in_flight",
        "Client connections open now (admin requests excluded)",
        i(in_flight(shared)),
    );
    gauge(
        &mut r,
        "connection_slots_free",
        "Connections that may still open before proxy.max_connections",
        i(shared.slots.available_permits() as u64),
    );
    counter(
        &mut r,
        "leaf_mints",
        "Leaf certificates minted",
        shared.leaves.mint_count(),
    );
    counter(
        &mut r,
        "leaf_cache_hits",
        "Leaf certificates served from the cache",
        shared.leaves.hit_count(),
    );
    gauge(
        &mut r,
        "leaf_cache_entries",
        "Leaf certificates in the cache",
        i(shared.leaves.len() as u64),
    );
    if let Some(rules) = shared.interceptor.rules_status() {
        gauge(
            &mut r,
            "dlp_rules_loaded",
            "DLP rules in force",
            i(rules.rules as u64),
        );
        counter(
            &mut r,
            "rule_reloads",
            "DLP rule reloads that put a new set in force",
            rules.reloads,
        );
        counter(
            &mut r,
            "rule_reload_failures",
            "DLP rule reloads rejected (the previous set stayed in force)",
            rules.reload_failures,
        );
    }
    if let Some(m) = shared.events.metrics() {
        gauge(
            &mut r,
            "event_queue_depth",
            "Events waiting in memory for the journal writer",
            i(m.queue_depth),
        );
        gauge(
            &mut r,
            "journal_bytes",
            "Bytes of event journal segments on disk",
            i(m.journal_bytes),
        );
        gauge(
            &mut r,
            "journal_unshipped_bytes",
            "Journal bytes not yet acknowledged by ClickHouse",
            i(m.unshipped_bytes),
        );
        gauge(
            &mut r,
            "journal_full",
            "1 when the journal is full (fail-closed: new flows refused)",
            i64::from(m.journal_full),
        );
        r.register(
            "shipping_lag_seconds",
            "Age of the newest event of the last batch ClickHouse acknowledged",
            ConstGauge::new(m.ship_lag_ms as f64 / 1000.0),
        );
        counter(&mut r, "events", "Events handed to the journal", m.emitted);
        counter(
            &mut r,
            "events_dropped",
            "Events dropped (full_policy drop_new, or after the pipeline stopped)",
            m.dropped,
        );
        counter(
            &mut r,
            "shipped_events",
            "Events acknowledged by ClickHouse",
            m.shipped_events,
        );
        counter(
            &mut r,
            "shipped_batches",
            "Batches acknowledged by ClickHouse",
            m.shipped_batches,
        );
        counter(
            &mut r,
            "failed_batches",
            "Batch attempts that failed (and were retried)",
            m.failed_batches,
        );
        counter(
            &mut r,
            "refused_flows",
            "Flows refused because the journal was not accepting",
            m.refused_flows,
        );
    }
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &r) {
        tracing::error!(error = %e, "encoding /metrics failed");
    }
    out
}

/// `/readyz`: 200 when the listeners are serving, the journal directory
/// takes a write and the journal is not full, and DLP rules are loaded;
/// else 503. The body names every check, `ok` or what is wrong.
fn readyz(shared: &Shared) -> Response<Full<Bytes>> {
    let mut checks: Vec<(&str, Result<String, String>)> = Vec::new();
    checks.push((
        "listeners",
        if shared.stopping.is_cancelled() {
            Err("stopping: no new connections are accepted".into())
        } else {
            Ok("accepting".into())
        },
    ));
    let journal = &shared.config.events.journal_dir;
    let full = shared.events.metrics().is_some_and(|m| m.journal_full);
    checks.push((
        "journal",
        match probe_write(journal) {
            Err(e) => Err(format!("{} is not writable: {e}", journal.display())),
            Ok(()) if full => Err("full (events.journal_max_bytes): new flows are refused".into()),
            Ok(()) => Ok("writable".into()),
        },
    ));
    checks.push((
        "rules",
        match shared.interceptor.rules_status() {
            Some(s) => Ok(format!("{} loaded", s.rules)),
            None => Err("no DLP rules loaded".into()),
        },
    ));
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    let mut body = String::new();
    for (name, r) in &checks {
        match r {
            Ok(v) => body.push_str(&format!("{name}: ok ({v})\n")),
            Err(e) => body.push_str(&format!("{name}: NOT READY: {e}\n")),
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    reply(status, "text/plain; charset=utf-8", body)
}

/// Writes, syncs and removes a small file in `dir`: what the journal
/// writer needs to be able to do.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(".readyz-probe");
    let mut f = std::fs::File::create(&path)?;
    f.write_all(b"ready?\n")?;
    f.sync_all()?;
    drop(f);
    std::fs::remove_file(&path)
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static response")
}

#[cfg(test)]
mod tests {
    use super::classic;

    #[test]
    fn counter_metadata_takes_the_total_suffix_and_eof_goes() {
        let om = "# HELP g_a A.\n# TYPE g_a counter\ng_a_total 1\n\
                  # HELP g_b B.\n# TYPE g_b gauge\ng_b 2\n# EOF\n";
        assert_eq!(
            classic(om),
            "# HELP g_a_total A.\n# TYPE g_a_total counter\ng_a_total 1\n\
             # HELP g_b B.\n# TYPE g_b gauge\ng_b 2\n"
        );
    }
}
