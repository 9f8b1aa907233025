//! Load harness (ignored by default; bounded in count and time): events
//! emitted at a target rate through the real pipeline into the real
//! ClickHouse; reports the sustained rate and the end-to-end lag.
//!
//! ```sh
//! cargo test --release --test events_load -- --ignored --nocapture
//! # GATEHOUSE_LOAD_EVENTS (default 1000000), GATEHOUSE_LOAD_RATE (default 100000/s)
//! ```

mod common;

use std::time::{Duration, Instant};

use gatehouse::config::{ClickHouseConfig, EventsConfig};
use gatehouse::events::{ConnectionEvent, Event, EventSink, Pipeline};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "load harness: run explicitly, in release"]
fn sustained_events_per_second_into_clickhouse_and_lag() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let url = common::clickhouse_url();
    let db = common::unique("gh_ev_load");
    let total = env("GATEHOUSE_LOAD_EVENTS", 1_000_000);
    let rate = env("GATEHOUSE_LOAD_RATE", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let p = rt.block_on(async {
        Pipeline::start(
            &EventsConfig {
                journal_dir: dir.path().to_path_buf(),
                node: "load".into(),
                ..EventsConfig::default()
            },
            Some(&ClickHouseConfig {
                url: url.clone(),
                database: db.clone(),
                validation: false,
                batch_size: 100_000,
                batch_interval: Duration::from_millis(500),
                ..ClickHouseConfig::default()
            }),
        )
        .unwrap()
    });
    let sink = p.sink();
    // Let migrations finish so the schema is not part of the measurement.
    std::thread::sleep(Duration::from_secs(1));

    let start = Instant::now();
    let deadline = start + Duration::from_secs(120);
    let mut lag_samples = Vec::new();
    let mut last_sample = Instant::now();
    for i in 0..total {
        // Pace to the target rate in slices of 1 ms.
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        sink.emit(Event::Connection(ConnectionEvent {
            client: "10.8.0.5:40000".parse().unwrap(),
            destination: Some(format!("host-{}.example.com:443", i % 1000)),
            decision: "passthrough".into(),
            reason: "client closed".into(),
            bytes_up: i,
            bytes_down: 2 * i,
            user: format!("user{}", i % 500),
            device: "phone".into(),
            host: format!("host-{}.example.com", i % 1000),
            app: Some("slack".into()),
            protocol: Some("tls".into()),
            ..Default::default()
        }));
        if last_sample.elapsed() >= Duration::from_millis(500) {
            lag_samples.push(sink.metrics().ship_lag_ms);
            last_sample = Instant::now();
        }
        assert!(Instant::now() < deadline, "emitting took too long");
    }
    let emitted_in = start.elapsed();
    while sink.metrics().shipped_events < total {
        assert!(
            Instant::now() < deadline,
            "not shipped in time: {:?}",
            sink.metrics()
        );
        std::thread::sleep(Duration::from_millis(20));
        if last_sample.elapsed() >= Duration::from_millis(500) {
            lag_samples.push(sink.metrics().ship_lag_ms);
            last_sample = Instant::now();
        }
    }
    let shipped_in = start.elapsed();
    let m = sink.metrics();
    rt.block_on(p.shutdown(Duration::from_secs(5)));
    let rows = {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--data-binary",
                &format!("SELECT count() FROM {db}.events_connection"),
                &url,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    lag_samples.sort_unstable();
    let p50 = lag_samples.get(lag_samples.len() / 2).copied().unwrap_or(0);
    let max = lag_samples.last().copied().unwrap_or(0);
    println!(
        "load: {total} events at target {rate}/s: emitted in {:.2}s ({:.0}/s), all in ClickHouse after {:.2}s => sustained {:.0} events/s; \
         lag (newest event of each shipped batch) p50 {p50} ms, max {max} ms, final {} ms; {} batches, {} failed, {} syncs; rows {rows}",
        emitted_in.as_secs_f64(),
        total as f64 / emitted_in.as_secs_f64(),
        shipped_in.as_secs_f64(),
        total as f64 / shipped_in.as_secs_f64(),
        m.ship_lag_ms,
        m.shipped_batches,
        m.failed_batches,
        m.syncs,
    );
    assert_eq!(rows, total.to_string());
    let _ = std::process::Command::new("curl")
        .args(["-sS", "--data-binary", &format!("DROP DATABASE {db}"), &url])
        .output();
}

/// How fast a backlog drains: events journaled while ClickHouse was not
/// configured, then shipped by a pipeline started with it.
#[test]
#[ignore = "load harness: run explicitly, in release"]
fn backlog_drain_rate_into_clickhouse() {
    let url = common::clickhouse_url();
    let db = common::unique("gh_ev_drain");
    let total = env("GATEHOUSE_LOAD_EVENTS", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let events = EventsConfig {
        journal_dir: dir.path().to_path_buf(),
        node: "load".into(),
        ..EventsConfig::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = Pipeline::start(&events, None).unwrap();
        let sink = p.sink();
        for i in 0..total {
            sink.emit(Event::Connection(ConnectionEvent {
                client: "10.8.0.5:40000".parse().unwrap(),
                destination: Some(format!("host-{}.example.com:443", i % 1000)),
                decision: "passthrough".into(),
                reason: "client closed".into(),
                user: format!("user{}", i % 500),
                host: format!("host-{}.example.com", i % 1000),
                app: Some("slack".into()),
                ..Default::default()
            }));
        }
        p.shutdown(Duration::from_secs(5)).await;
    });
    let ch = ClickHouseConfig {
        url: url.clone(),
        database: db.clone(),
        validation: false,
        batch_size: 100_000,
        batch_interval: Duration::from_millis(500),
        ..ClickHouseConfig::default()
    };
    let start = Instant::now();
    let shipped = rt.block_on(async {
        let p = Pipeline::start(&events, Some(&ch)).unwrap();
        while p.metrics().shipped_events < total {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{:?}",
                p.metrics()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let m = p.metrics();
        p.shutdown(Duration::from_secs(5)).await;
        m
    });
    let took = start.elapsed();
    println!(
        "drain: {total} journaled events shipped in {:.2}s => {:.0} events/s ({} batches, {} failed)",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        shipped.shipped_batches,
        shipped.failed_batches
    );
    let _ = std::process::Command::new("curl")
        .args(["-sS", "--data-binary", &format!("DROP DATABASE {db}"), &url])
        .output();
}
