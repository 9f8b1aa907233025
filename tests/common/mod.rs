//! Helpers shared by the end-to-end tests: the real ClickHouse started by
//! `scripts/test.sh`, and a real `gatehouse` process.

#![allow(dead_code)]

pub mod inproc;
pub mod netns;
pub mod nginx;
pub mod pki;
pub mod upstream;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The ClickHouse HTTP URL the test command started. Panics with a clear
/// message when none is reachable: these tests never skip silently.
pub fn clickhouse_url() -> String {
    let url = std::env::var("GATEHOUSE_TEST_CLICKHOUSE")
        .unwrap_or_else(|_| "http://127.0.0.1:18123".into());
    let ping = format!("{url}/ping");
    let ok = Command::new("curl")
        .args(["-fsS", "--max-time", "3", &ping])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "no ClickHouse reachable at {url} (GATEHOUSE_TEST_CLICKHOUSE): run the tests with \
         ./scripts/test.sh, or start one with ./scripts/clickhouse.sh start"
    );
    url
}

/// A unique name for a throw-away database or file.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A `gatehouse run` process in its own working directory; killed on drop.
pub struct Gatehouse {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub ca_cert: PathBuf,
    pub stderr_log: PathBuf,
}

impl Gatehouse {
    /// Starts the gateway with `config` (TOML appended to ephemeral listeners)
    /// and waits until it reports its addresses.
    pub fn start(extra_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"3s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra_config}"
        );
        Self::start_in(dir, &config)
    }

    /// Starts the gateway with exactly `config` as `gatehouse.toml` in `dir`.
    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Self {
        Self::start_with_args(dir, config, &[])
    }

    /// As [`start_in`](Self::start_in), with global flags before `run`.
    pub fn start_with_args(dir: tempfile::TempDir, config: &str, args: &[&str]) -> Self {
        Self::start_wrapped(dir, config, &[], args)
    }

    /// Starts the gateway under a wrapper command (e.g. `ip netns exec NS`).
    pub fn start_wrapped(
        dir: tempfile::TempDir,
        config: &str,
        wrapper: &[String],
        args: &[&str],
    ) -> Self {
        Self::start_logging(dir, config, wrapper, args, "info")
    }

    /// As [`start_wrapped`](Self::start_wrapped), with `RUST_LOG` set to `rust_log`.
    pub fn start_logging(
        dir: tempfile::TempDir,
        config: &str,
        wrapper: &[String],
        args: &[&str],
        rust_log: &str,
    ) -> Self {
        std::fs::write(dir.path().join("gatehouse.toml"), config).unwrap();
        let stderr_log = dir.path().join("stderr.log");
        let bin = env!("CARGO_BIN_EXE_gatehouse");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .args(args)
            .arg("run")
            .current_dir(dir.path())
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).unwrap())
            .spawn()
            .expect("spawn gatehouse");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut proxy, mut admin, mut ca) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while proxy.is_none() || ca.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!(
                    "gatehouse did not start; stderr:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            };
            if let Some(rest) = line.strip_prefix("gatehouse: explicit proxy on ") {
                let (p, a) = rest.split_once(", admin on ").unwrap();
                proxy = Some(p.parse().unwrap());
                admin = Some(a.parse().unwrap());
            }
            if let Some(rest) = line.strip_prefix("gatehouse: interception CA certificate: ") {
                ca = Some(PathBuf::from(rest));
            }
        }
        let ca_cert = ca.unwrap();
        let ca_cert = if ca_cert.is_relative() {
            dir.path().join(ca_cert)
        } else {
            ca_cert
        };
        Self {
            child,
            proxy: proxy.unwrap(),
            admin: admin.unwrap(),
            ca_cert,
            stderr_log,
            dir,
        }
    }

    /// Sends a signal and waits for the exit status (bounded).
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gatehouse did not exit after {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `gatehouse` with `args` in `dir`, returning (status, stdout, stderr).
pub fn gatehouse(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .current_dir(dir)
        // The command's own `log.*` decides, not the runner's environment.
        .env_remove("RUST_LOG")
        .output()
        .expect("run gatehouse");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TCP echo server on loopback (a thread per connection); returns its address.
pub fn echo_server() -> SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// The Python `websockets` echo server (`tests/py/ws_echo_server.py`) with
/// a certificate for `name` from `root`; killed when dropped.
pub struct WsEcho {
    pub child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a [`WsEcho`] and waits for its port.
pub fn ws_echo_server(root: &pki::TestCa, name: &str) -> WsEcho {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = root
        .leaf(&pki::LeafSpec::new(&[name]))
        .write_pem(dir.path(), "ws");
    let mut child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/ws_echo_server.py"))
        .args([&cert, &key])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with websockets (installed by scripts/test.sh)");
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port = port.trim().parse().expect("server port");
    WsEcho {
        child,
        port,
        _dir: dir,
    }
}
