//! Event pipeline benchmarks: journal appends with group commit (one fsync
//! per group), the sink end to end (emit → durable), and the shipper's CPU
//! side (journal record → ClickHouse row).
//!
//! `cargo bench --bench events -- --warm-up-time 1 --measurement-time 3`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gatehouse::config::EventsConfig;
use gatehouse::events::journal::JournalWriter;
use gatehouse::events::schema::EventRow;
use gatehouse::events::{ConnectionEvent, Event, EventSink, Pipeline, Record};

fn event(i: u64) -> Event {
    Event::Connection(ConnectionEvent {
        client: "10.8.0.5:40000".parse().unwrap(),
        destination: Some(format!("host-{i}.example.com:443")),
        decision: "passthrough".into(),
        reason: "client closed".into(),
        bytes_up: 1234,
        bytes_down: 56789,
        user: "alice".into(),
        device: "alice-phone".into(),
        host: format!("host-{i}.example.com"),
        app: Some("slack".into()),
        protocol: Some("tls".into()),
        duration_ms: 1500,
        ..Default::default()
    })
}

fn record_bytes(i: u64) -> Vec<u8> {
    serde_json::to_vec(&Record::stamp(event(i), "node-1")).unwrap()
}

fn journal_appends(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal");
    let payload = record_bytes(1);
    for group in [1usize, 64, 1024] {
        g.throughput(Throughput::Elements(group as u64));
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = JournalWriter::open(dir.path(), 64 << 20).unwrap();
        g.bench_function(format!("append_then_fsync/group_{group}"), |b| {
            b.iter(|| {
                for _ in 0..group {
                    w.append(&payload).unwrap();
                }
                w.sync().unwrap();
            })
        });
    }
    g.finish();
}

fn sink_to_durable(c: &mut Criterion) {
    let mut g = c.benchmark_group("sink");
    let n = 10_000u64;
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = rt.block_on(async {
        Pipeline::start(
            &EventsConfig {
                journal_dir: dir.path().to_path_buf(),
                node: "bench".into(),
                ..EventsConfig::default()
            },
            None,
        )
        .unwrap()
    });
    let sink = p.sink();
    g.bench_function("emit_10k_then_flush", |b| {
        b.iter(|| {
            for i in 0..n {
                sink.emit(event(i));
            }
            sink.flush();
        })
    });
    g.finish();
    rt.block_on(p.shutdown(Duration::from_secs(1)));
}

fn shipper_rows(c: &mut Criterion) {
    let mut g = c.benchmark_group("shipper");
    let records: Vec<Vec<u8>> = (0..10_000).map(record_bytes).collect();
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("decode_to_rows_10k", |b| {
        b.iter_batched(
            || records.clone(),
            |records| {
                records
                    .into_iter()
                    .map(|bytes| {
                        let r: Record = serde_json::from_slice(&bytes).unwrap();
                        EventRow::new(&r, String::from_utf8(bytes).unwrap())
                    })
                    .count()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, journal_appends, sink_to_durable, shipper_rows);
criterion_main!(benches);
