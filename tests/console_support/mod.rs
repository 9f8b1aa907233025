//! A gateway with its console, a real ClickHouse, a Slack-shaped upstream
//! and a finding made by real traffic (curl through the gateway): what the
//! console tests start from.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::common::pki::{LeafSpec, TestCa};
use crate::common::upstream::https_server;
use crate::common::{self, Gatehouse};

/// The card number the traffic carries: the plaintext that must stay sealed.
pub const CARD: &str = "4556737586899855";
/// Every account's password.
pub const PASSWORD: &str = "correct horse battery staple";
/// The API token of `soar` (roles: investigator).
pub const TOKEN: &str = "test-token-0123456789abcdef0123456789";

pub struct Console {
    pub gw: Gatehouse,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    pub ch: String,
    pub db: String,
    pub upstream: SocketAddr,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        } else if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        }
    }
}

impl Console {
    /// Starts everything; no traffic yet.
    pub async fn start(lockout_attempts: u32) -> Self {
        let ch = common::clickhouse_url();
        let db = common::unique("gh_console");
        let root = TestCa::root("Upstream Test Root");
        let upstream = https_server("slack.com", root.leaf(&LeafSpec::new(&["slack.com"]))).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
        copy_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules"),
            &dir.path().join("rules"),
        );
        let (code, out, err) =
            common::gatehouse(dir.path(), &["console", "keygen", "--out", "console.key"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("public_key = \""), "{out}");
        let hash = gatehouse::console::hash_password(PASSWORD).unwrap();
        let token_sha = {
            use sha2::Digest;
            gatehouse::console::hex(&sha2::Sha256::digest(TOKEN.as_bytes()))
        };
        let port = free_port();
        let config = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\nshutdown_grace = \"2s\"\n\
             [upstream]\nextra_roots = [\"root.pem\"]\n[rules]\ndir = \"rules\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [clickhouse]\nurl = \"{ch}\"\ndatabase = \"{db}\"\nvalidation = false\nbatch_interval = \"100ms\"\n\
             [console]\nlisten = \"127.0.0.1:{port}\"\nprivate_key_file = \"console.key\"\nlogin_attempts = {lockout_attempts}\n\
             [[console.users]]\nname = \"ana\"\npassword_hash = \"{hash}\"\nroles = [\"admin\"]\n\
             [[console.users]]\nname = \"vic\"\npassword_hash = \"{hash}\"\nroles = [\"viewer\"]\n\
             [[console.users]]\nname = \"ivan\"\npassword_hash = \"{hash}\"\nroles = [\"investigator\"]\n\
             [[console.tokens]]\nname = \"soar\"\ntoken_sha256 = \"{token_sha}\"\nroles = [\"investigator\"]\n"
        );
        let gw = Gatehouse::start_in(dir, &config);
        Self {
            url: format!("https://127.0.0.1:{port}"),
            gw,
            ch,
            db,
            upstream,
        }
    }

    /// Posts a Slack message holding the card through the gateway (curl),
    /// then waits until its finding is in ClickHouse.
    pub async fn make_finding(&self) {
        let out = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "--proxy",
                &format!("http://{}", self.gw.proxy),
            ])
            .args(["--cacert", self.gw.ca_cert.to_str().unwrap()])
            .args(["--connect-to", &format!("slack.com:443:{}", self.upstream)])
            .args([
                "-H",
                "content-type: application/json",
                "-w",
                "\nstatus=%{http_code}",
            ])
            .args([
                "--data",
                &format!("{{\"channel\":\"C042\",\"text\":\"before it: card {CARD} after it\"}}"),
            ])
            .arg("https://slack.com/api/chat.postMessage")
            .output()
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            body.contains("status=403"),
            "the card is blocked: {body}\n{}",
            self.gw.log()
        );
        for _ in 0..200 {
            if self.ch_count("events_dlp_finding") > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no finding reached ClickHouse\n{}", self.gw.log());
    }

    /// Rows of `table` in the test database.
    pub fn ch_count(&self, table: &str) -> u64 {
        self.ch_query(&format!("SELECT count() FROM {}.{table}", self.db))
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Runs `sql` on ClickHouse over HTTP (curl), returning its text output.
    pub fn ch_query(&self, sql: &str) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--data-binary", sql, &self.ch])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until ClickHouse holds an audit event with `action` (and `needle` in it).
    pub async fn wait_audit_in_clickhouse(&self, action: &str, needle: &str) -> String {
        let sql = format!(
            "SELECT event FROM {}.events_audit WHERE action = '{action}' FORMAT TSVRaw",
            self.db
        );
        for _ in 0..100 {
            let rows = self.ch_query(&sql);
            if let Some(line) = rows.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no `{action}` audit event with {needle} in ClickHouse");
    }

    /// The audit events in the gateway's journal (`gatehouse events search --journal`).
    pub fn journal_audits(&self) -> Vec<serde_json::Value> {
        let (code, out, err) = common::gatehouse(
            self.gw.dir.path(),
            &[
                "events",
                "search",
                "--journal",
                "--type",
                "audit",
                "--json",
                "--limit",
                "1000",
            ],
        );
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `curl` against the console with the gateway's CA; returns (status, headers, body).
    pub fn curl(&self, args: &[&str]) -> (u16, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let headers = dir.path().join("headers");
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "--cacert",
                self.gw.ca_cert.to_str().unwrap(),
            ])
            .args(["-D", headers.to_str().unwrap(), "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            std::fs::read_to_string(&headers).unwrap_or_default(),
            body.to_string(),
        )
    }

    /// Logs `name` in over the API with a cookie jar at `jar`; returns the CSRF token.
    pub fn login(&self, name: &str, jar: &std::path::Path) -> String {
        let (code, _, body) = self.curl(&[
            "-c",
            jar.to_str().unwrap(),
            "-H",
            "content-type: application/json",
            "--data",
            &format!("{{\"name\":\"{name}\",\"password\":\"{PASSWORD}\"}}"),
            &format!("{}/api/session", self.url),
        ]);
        assert_eq!(code, 200, "{body}\n{}", self.gw.log());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["csrf"].as_str().unwrap().to_string()
    }
}
