//! What the real-client tests share: a real `gatehouse` process that
//! resolves in-house host names to loopback (its own mount namespace with
//! its own `/etc/hosts`, so the gateway's ordinary resolver is used and the
//! machine's file is untouched), the in-house hosts mapped to apps through
//! `intercept.app_catalog`, the shipped rule packs, and the event journal
//! read back with `gatehouse events search --json`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::pki::{LeafSpec, TestCa};
use crate::common::Gatehouse;

/// The tests' Python scripts.
pub fn py(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        } else if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        }
    }
}

/// Starts the gateway trusting `root` upstream, with `hosts` (name, app)
/// resolving to 127.0.0.1 and mapped to their app through
/// `intercept.app_catalog`, and the shipped rules.
pub fn gateway(root: &TestCa, hosts: &[(&str, &str)], extra_config: &str) -> Gatehouse {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules"),
        &dir.path().join("rules"),
    );
    let mut catalog = String::new();
    let mut etc_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    etc_hosts.push('\n');
    for (name, app) in hosts {
        catalog.push_str(&format!("[[app]]\nid = \"{app}\"\nhosts = [\"{name}\"]\n"));
        etc_hosts.push_str(&format!("127.0.0.1 {name}\n"));
    }
    std::fs::write(dir.path().join("apps.toml"), catalog).unwrap();
    let hosts_file = dir.path().join("hosts");
    std::fs::write(&hosts_file, etc_hosts).unwrap();
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\nshutdown_grace = \"2s\"\n\
         [upstream]\nextra_roots = [\"root.pem\"]\n\
         [intercept]\napp_catalog = \"apps.toml\"\n\
         [rules]\ndir = \"rules\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra_config}"
    );
    let wrapper: Vec<String> = [
        "unshare",
        "--mount",
        "sh",
        "-c",
        &format!(
            "mount --bind '{}' /etc/hosts && exec \"$0\" \"$@\"",
            hosts_file.display()
        ),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Gatehouse::start_wrapped(dir, &config, &wrapper, &[])
}

/// Every recorded event, oldest first, as `events search --json` prints it.
pub fn events(gw: &Gatehouse) -> Vec<Value> {
    let (code, out, err) = crate::common::gatehouse(
        gw.dir.path(),
        &["events", "search", "--json", "--limit", "10000"],
    );
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Events, polled until `done` holds for them (the journal is written
/// asynchronously) or 10 s pass.
pub fn events_until(gw: &Gatehouse, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut evs = Vec::new();
    for _ in 0..100 {
        evs = events(gw);
        if done(&evs) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    evs
}

/// Events of one `type`.
pub fn of_type<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["type"] == kind).collect()
}

/// Runs a Python client script to its end; returns its JSON lines.
pub fn run_client(script: &str, args: &[&str]) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(py(script))
        .args(args)
        .output()
        .expect("python3 (scripts/test.sh installs the client libraries)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The stand-in API server (`tests/py/chat_standin.py`) for `name`, with a
/// certificate from `root`; killed when dropped.
pub struct Standin {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Standin {
    pub fn start(root: &TestCa, name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = root
            .leaf(&LeafSpec::new(&[name]))
            .write_pem(dir.path(), "standin");
        let log = dir.path().join("requests.jsonl");
        let mut child = Command::new("python3")
            .arg(py("chat_standin.py"))
            .arg(&cert)
            .arg(&key)
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let port = line.trim().parse().expect("stand-in port");
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// Every request that reached the stand-in (method, path, body).
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
