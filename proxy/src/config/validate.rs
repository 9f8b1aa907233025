//! Checks a parsed configuration for problems serde cannot see: files that
//! are missing or unsafe, conflicting listeners, unusable URLs.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::Config;

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The gateway cannot run with this.
    Error,
    /// Worth knowing; the gateway runs.
    Warning,
}

/// One problem in the configuration, naming the key and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// How serious it is.
    pub severity: Severity,
    /// The config file, or `None` for built-in defaults.
    pub file: Option<PathBuf>,
    /// Dotted key (`proxy.allowed_clients[0]`); empty for the whole file.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// An error about `key` in `file`.
    pub fn error(file: Option<&Path>, key: &str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: file.map(Path::to_path_buf),
            key: key.into(),
            message: message.into(),
        }
    }

    /// A warning about `key` in `file`.
    pub fn warning(file: Option<&Path>, key: &str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(file, key, message)
        }
    }

    /// Whether this stops the gateway.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_deref().map_or_else(
            || "built-in defaults".to_string(),
            |p| p.display().to_string(),
        );
        if self.key.is_empty() {
            write!(f, "{file}: {}", self.message)
        } else {
            write!(f, "{file}: {}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub(crate) fn into_err<T>(self) -> Result<T, Self> {
        Err(self)
    }

    /// The number of errors (not warnings).
    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|p| p.is_error()).count()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            let label = if p.is_error() { "error" } else { "warning" };
            writeln!(f, "{label}: {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Semantic checks of a parsed configuration.
pub fn validate(config: &Config, file: Option<&Path>) -> Vec<Problem> {
    let mut out = Vec::new();
    let err =
        |out: &mut Vec<Problem>, key: &str, msg: String| out.push(Problem::error(file, key, msg));
    let warn =
        |out: &mut Vec<Problem>, key: &str, msg: String| out.push(Problem::warning(file, key, msg));

    // Listeners must not collide.
    let mut listeners = vec![
        ("proxy.listen", config.proxy.listen),
        ("admin.listen", config.admin.listen),
    ];
    if let Some(t) = config.proxy.transparent_listen {
        listeners.push(("proxy.transparent_listen", t));
    }
    if let Some(t) = config.onboarding.listen {
        listeners.push(("onboarding.listen", t));
    }
    if let Some(t) = config.onboarding.https_listen {
        listeners.push(("onboarding.https_listen", t));
    }
    // The QUIC listener is UDP: it may share a port with any TCP listener.
    if let Some(c) = config.console.as_ref().filter(|c| c.serves()) {
        listeners.push(("console.listen", c.listen));
    }
    for (i, (ka, a)) in listeners.iter().enumerate() {
        for (kb, b) in &listeners[i + 1..] {
            // Port 0 asks the OS for a free port; a wildcard address overlaps every address.
            let overlap = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
            if a.port() != 0 && a.port() == b.port() && overlap {
                err(&mut out, kb, format!("{b} is already used by {ka}"));
            }
        }
    }
    if !config.admin.listen.ip().is_loopback() {
        warn(
            &mut out,
            "admin.listen",
            format!(
                "{} is not loopback; the admin endpoint should stay on the gateway host",
                config.admin.listen
            ),
        );
    }
    if config.proxy.allowed_clients.is_empty() {
        warn(
            &mut out,
            "proxy.allowed_clients",
            "empty: every client will be refused".into(),
        );
    }
    if config.proxy.max_connections == 0 {
        err(
            &mut out,
            "proxy.max_connections",
            "must be at least 1".into(),
        );
    }
    if config.admin.max_connections == 0 {
        err(
            &mut out,
            "admin.max_connections",
            "must be at least 1".into(),
        );
    }
    if config.proxy.max_header_bytes < 1024 {
        err(
            &mut out,
            "proxy.max_header_bytes",
            "must be at least 1024".into(),
        );
    }
    for (key, d) in [
        (
            "proxy.header_read_timeout",
            config.proxy.header_read_timeout,
        ),
        ("proxy.idle_timeout", config.proxy.idle_timeout),
        ("upstream.connect_timeout", config.upstream.connect_timeout),
    ] {
        if d.is_zero() {
            err(&mut out, key, "must be longer than zero".into());
        }
    }

    check_ca(config, &mut out, file);
    if let Some(console) = &config.console {
        console.validate(file, &mut out);
    }

    for (i, root) in config.upstream.extra_roots.iter().enumerate() {
        let key = format!("upstream.extra_roots[{i}]");
        match std::fs::read(root) {
            Err(e) => err(&mut out, &key, format!("{}: {e}", root.display())),
            Ok(bytes) => {
                use rustls_pki_types::pem::PemObject;
                let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes)
                    .collect::<Result<Vec<_>, _>>();
                match certs {
                    Ok(c) if !c.is_empty() => {}
                    Ok(_) => err(
                        &mut out,
                        &key,
                        format!("{}: no PEM certificate in file", root.display()),
                    ),
                    Err(e) => err(&mut out, &key, format!("{}: bad PEM: {e}", root.display())),
                }
            }
        }
    }

    if let Some(path) = &config.admin.token_file {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Err(e) => err(
                &mut out,
                "admin.token_file",
                format!("{}: {e}", path.display()),
            ),
            Ok(m) if m.permissions().mode() & 0o077 != 0 => err(
                &mut out,
                "admin.token_file",
                format!(
                    "{}: readable by group or others; run `chmod 600 {}`",
                    path.display(),
                    path.display()
                ),
            ),
            Ok(_) => match std::fs::read_to_string(path) {
                Ok(t) if t.trim().len() >= 16 => {}
                Ok(_) => err(
                    &mut out,
                    "admin.token_file",
                    format!("{}: token shorter than 16 characters", path.display()),
                ),
                Err(e) => err(
                    &mut out,
                    "admin.token_file",
                    format!("{}: {e}", path.display()),
                ),
            },
        }
    }

    check_onboarding(config, &mut out, file);

    if config.intercept.app_catalog.is_some() {
        if let Err(e) = super::load_catalog(config) {
            let e = e.trim_start_matches("intercept.app_catalog: ").to_string();
            err(&mut out, "intercept.app_catalog", e);
        }
    }

    if !config.rules.dir.is_dir() {
        warn(
            &mut out,
            "rules.dir",
            format!(
                "{}: not a directory; no DLP rules will be loaded",
                config.rules.dir.display()
            ),
        );
    }

    let ev = &config.events;
    if ev.queue_size == 0 {
        err(&mut out, "events.queue_size", "must be at least 1".into());
    }
    if ev.segment_bytes < 4096 {
        err(
            &mut out,
            "events.segment_bytes",
            "must be at least 4096".into(),
        );
    }
    if ev.journal_max_bytes < ev.segment_bytes {
        err(
            &mut out,
            "events.journal_max_bytes",
            format!(
                "must be at least events.segment_bytes ({})",
                ev.segment_bytes
            ),
        );
    }
    if ev.fsync_interval.is_zero() {
        err(
            &mut out,
            "events.fsync_interval",
            "must be longer than zero".into(),
        );
    }

    if let Some(ch) = &config.clickhouse {
        match ch.url.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => err(
                &mut out,
                "clickhouse.url",
                format!("`{}` is not an http:// or https:// URL", ch.url),
            ),
        }
        if ch.batch_size == 0 {
            err(
                &mut out,
                "clickhouse.batch_size",
                "must be at least 1".into(),
            );
        }
        for (key, d) in [
            ("clickhouse.batch_interval", ch.batch_interval),
            ("clickhouse.backoff_min", ch.backoff_min),
        ] {
            if d.is_zero() {
                err(&mut out, key, "must be longer than zero".into());
            }
        }
        if ch.backoff_max < ch.backoff_min {
            err(
                &mut out,
                "clickhouse.backoff_max",
                "must not be shorter than clickhouse.backoff_min".into(),
            );
        }
        if ch.database.is_empty()
            || !ch
                .database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            err(
                &mut out,
                "clickhouse.database",
                format!(
                    "`{}` must be a plain identifier (letters, digits, _)",
                    ch.database
                ),
            );
        }
    }

    check_quic(config, &mut out, file);
    super::dns::check(config, &mut out, file);

    if let Err(e) = config.log.filter.parse::<tracing_subscriber::EnvFilter>() {
        err(&mut out, "log.filter", format!("invalid filter: {e}"));
    }
    out
}

/// `[onboarding]`: names and ranges that go into the page and the PAC.
fn check_onboarding(config: &Config, out: &mut Vec<Problem>, file: Option<&Path>) {
    let err =
        |out: &mut Vec<Problem>, key: &str, msg: String| out.push(Problem::error(file, key, msg));
    let ob = &config.onboarding;
    let name_ok = |h: &str| {
        !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !h.starts_with('.')
            && !h.ends_with('.')
    };
    if let Some(host) = &ob.host {
        if !name_ok(host) || host.parse::<std::net::IpAddr>().is_ok() {
            err(
                out,
                "onboarding.host",
                format!("{host:?}: must be a DNS name (letters, digits, '-' and '.')"),
            );
        }
    }
    if ob.https_listen.is_some() && ob.host.is_none() {
        err(
            out,
            "onboarding.https_listen",
            "needs onboarding.host (the name its certificate is for)".into(),
        );
    }
    for (i, d) in ob.direct.iter().enumerate() {
        let key = format!("onboarding.direct[{i}]");
        if d.contains('/') {
            match d.parse::<ipnet::IpNet>() {
                Ok(ipnet::IpNet::V4(_)) => {}
                Ok(ipnet::IpNet::V6(_)) => err(
                    out,
                    &key,
                    format!("{d:?}: PAC files can only test IPv4 ranges (isInNet)"),
                ),
                Err(e) => err(out, &key, format!("{d:?}: not a CIDR: {e}")),
            }
        } else if !name_ok(d.strip_prefix('.').unwrap_or(d)) {
            err(
                out,
                &key,
                format!("{d:?}: expected an IPv4 CIDR, a .domain suffix or a host name"),
            );
        }
    }
    match &ob.pac_proxy {
        Some(p) => {
            let ok = p.parse::<SocketAddr>().is_ok()
                || p.rsplit_once(':')
                    .is_some_and(|(h, port)| port.parse::<u16>().is_ok() && name_ok(h));
            if !ok {
                err(
                    out,
                    "onboarding.pac_proxy",
                    format!("{p:?}: expected host:port"),
                );
            }
        }
        None if ob.enabled() && config.proxy.listen.ip().is_unspecified() => err(
            out,
            "onboarding.pac_proxy",
            format!(
                "needed: proxy.listen ({}) is a wildcard address devices cannot connect to",
                config.proxy.listen
            ),
        ),
        None => {}
    }
}

fn check_quic(config: &Config, out: &mut Vec<Problem>, file: Option<&Path>) {
    use super::{PolicyAction, QuicAction};
    if let Some(q) = &config.quic {
        for (key, zero) in [
            ("quic.max_flows", q.max_flows == 0),
            ("quic.initial_max_bytes", q.initial_max_bytes < 1200),
            ("quic.new_flows_per_second", q.new_flows_per_second == 0),
            ("quic.max_streams", q.max_streams == 0),
        ] {
            if zero {
                let min = if key == "quic.initial_max_bytes" {
                    1200
                } else {
                    1
                };
                out.push(Problem::error(file, key, format!("must be at least {min}")));
            }
        }
        for (key, d) in [
            ("quic.idle_timeout", q.idle_timeout),
            ("quic.initial_timeout", q.initial_timeout),
        ] {
            if d.is_zero() {
                out.push(Problem::error(file, key, "must be longer than zero"));
            }
        }
    }
    for (i, rule) in config.intercept.rules.iter().enumerate() {
        let key = format!("intercept.rules[{i}].quic");
        if rule.quic != QuicAction::Block && rule.action == PolicyAction::Block {
            out.push(Problem::warning(
                file,
                &key,
                format!(
                    "\"{}\" on a rule whose action is block: QUIC is blocked too",
                    rule.quic.as_str()
                ),
            ));
        }
        if rule.quic == QuicAction::Intercept && rule.action != PolicyAction::Intercept {
            out.push(Problem::error(
                file,
                &key,
                "\"intercept\" needs action = \"intercept\" (the real server is verified over TCP first)",
            ));
        }
        if rule.quic != QuicAction::Block && config.quic.is_none() {
            out.push(Problem::warning(
                file,
                &key,
                format!(
                    "\"{}\" has no effect without a [quic] listener",
                    rule.quic.as_str()
                ),
            ));
        }
    }
}

fn check_ca(config: &Config, out: &mut Vec<Problem>, file: Option<&Path>) {
    let ca = &config.ca;
    match (&ca.cert, &ca.key) {
        (Some(_), None) => out.push(Problem::error(
            file,
            "ca.key",
            "missing: an imported `ca.cert` needs its `ca.key`",
        )),
        (None, Some(_)) => out.push(Problem::error(
            file,
            "ca.cert",
            "missing: an imported `ca.key` needs its `ca.cert`",
        )),
        _ => {}
    }
    if ca.chain.is_some() && ca.cert.is_none() {
        out.push(Problem::error(
            file,
            "ca.chain",
            "only makes sense with an imported `ca.cert`",
        ));
    }
    let (cert, key, cert_key, key_key, must_exist) = match (&ca.cert, &ca.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), "ca.cert", "ca.key", true),
        (None, None) => (
            ca.dir.join("ca.pem"),
            ca.dir.join("ca.key"),
            "ca.dir",
            "ca.dir",
            false,
        ),
        _ => return,
    };
    let (cert_there, key_there) = (cert.exists(), key.exists());
    if must_exist || cert_there != key_there {
        if !cert_there {
            out.push(Problem::error(
                file,
                cert_key,
                format!("{}: no such file", cert.display()),
            ));
        }
        if !key_there {
            out.push(Problem::error(
                file,
                key_key,
                format!("{}: no such file", key.display()),
            ));
        }
    }
    if key_there {
        if let Err(e) = gatehouse_certs::check_key_mode(&key) {
            out.push(Problem::error(file, key_key, e.to_string()));
        } else if cert_there {
            // Load it for real: a mismatched key, a non-CA or a bad chain shows here.
            // Exactly the files `run` loads (an imported CA sends a chain
            // only when `ca.chain` names one).
            match gatehouse_certs::Ca::load(&ca.files()) {
                Err(e) => out.push(Problem::error(file, cert_key, e.to_string())),
                Ok(loaded) => {
                    if let Ok(d) = loaded.describe() {
                        if d.not_after < std::time::SystemTime::now() {
                            out.push(Problem::error(
                                file,
                                cert_key,
                                "the CA certificate has expired".to_string(),
                            ));
                        }
                    }
                }
            }
        }
    }
    if let Some(chain) = &ca.chain {
        if !chain.exists() {
            out.push(Problem::error(
                file,
                "ca.chain",
                format!("{}: no such file", chain.display()),
            ));
        }
    }
}
