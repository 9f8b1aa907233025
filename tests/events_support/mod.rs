//! Helpers of the event tests: CONNECT through a gateway, ClickHouse over
//! HTTP, the `gatehouse events` CLI, and a private ClickHouse instance that
//! can be stopped and restarted.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common;

/// Sends `CONNECT target` through the proxy; returns the status line ("" if
/// the connection was closed without one).
pub fn connect_status(proxy: SocketAddr, target: &str) -> String {
    let Ok(mut s) = TcpStream::connect(proxy) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").is_err() {
        return String::new();
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).trim().to_string()
}

/// Runs `sql` on ClickHouse at `url`; the body of the answer.
pub fn ch(url: &str, sql: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--data-binary", sql, url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A number ClickHouse answered.
pub fn ch_count(url: &str, sql: &str) -> u64 {
    let s = ch(url, sql);
    s.parse()
        .unwrap_or_else(|_| panic!("`{sql}` answered `{s}`"))
}

/// A number ClickHouse answered, or `None` (e.g. the table is not there yet).
pub fn try_count(url: &str, sql: &str) -> Option<u64> {
    ch(url, sql).parse().ok()
}

/// Polls `f` until true or `timeout`; returns whether it became true.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `gatehouse --config CONFIG events ARGS --json` in `dir`: one JSON value per line.
pub fn events_json(dir: &Path, config: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--config", config.to_str().unwrap(), "events"];
    all.extend_from_slice(args);
    all.push("--json");
    let (code, out, err) = common::gatehouse(dir, &all);
    assert_eq!(code, 0, "gatehouse {all:?} failed: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The `id`s of JSON events.
pub fn ids(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// A private ClickHouse server (scripts/clickhouse.sh on its own port),
/// stopped and deleted on drop.
pub struct OwnClickHouse {
    pub port: u16,
    pub url: String,
}

impl OwnClickHouse {
    pub fn start() -> Self {
        // Both the HTTP port and the next (native) one must be free.
        let port = (0..50)
            .map(|_| 18200 + (rand_u16() % 700))
            .find(|p| free(*p) && free(p + 1))
            .expect("a free port pair");
        let url = Self::script(port, "start");
        assert!(url.starts_with("http://"), "{url}");
        Self { port, url }
    }

    fn script(port: u16, cmd: &str) -> String {
        let out = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/clickhouse.sh"
        ))
        .arg(cmd)
        .env("GATEHOUSE_CH_PORT", port.to_string())
        .output()
        .expect("scripts/clickhouse.sh");
        assert!(
            out.status.success(),
            "clickhouse.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops the server, keeping its data.
    pub fn pause(&self) {
        Self::script(self.port, "pause");
    }

    /// Starts it again on its data.
    pub fn resume(&self) {
        Self::script(self.port, "resume");
    }
}

impl Drop for OwnClickHouse {
    fn drop(&mut self) {
        Self::script(self.port, "stop");
    }
}

fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn rand_u16() -> u16 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (n ^ std::process::id().rotate_left(7)) as u16
}
