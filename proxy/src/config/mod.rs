//! The configuration file: one serde tree with documented defaults.
//!
//! Loading ([`load`]) reports every problem at once, each naming the key and
//! the file; see `gatehouse.example.toml` for the documented file.
//!
//! May import: nothing of the gateway (validation loads only files and the
//! inspectors' catalog); everything imports it.

mod console;
mod dns;
mod load;
mod net;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gatehouse_inspectors::identify::catalog::Catalog;
use serde::{Deserialize, Serialize};

pub use console::{ConsoleConfig, ConsoleToken, ConsoleUser, Role};
pub use dns::DnsConfig;
pub use load::{load, load_str, load_unvalidated, ConfigSource, Loaded};
pub use net::{canonical as canonical_ip, Cidr};
pub use validate::{Problem, Problems, Severity};

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listeners and who may use them.
    pub proxy: ProxyConfig,
    /// The interception CA.
    pub ca: CaConfig,
    /// What to intercept, pinning, leaves.
    pub intercept: InterceptConfig,
    /// Who the clients are.
    pub identity: IdentityConfig,
    /// How the upstream leg verifies servers.
    pub upstream: UpstreamConfig,
    /// DLP rule packs.
    pub rules: RulesConfig,
    /// The local event journal.
    pub events: EventsConfig,
    /// Where events are shipped; absent means journal only.
    pub clickhouse: Option<ClickHouseConfig>,
    /// The admin endpoint.
    pub admin: AdminConfig,
    /// The employees' onboarding page (CA downloads, PAC, trust check); off by default.
    pub onboarding: OnboardingConfig,
    /// The transparent UDP (QUIC) listener; absent means UDP is not proxied.
    pub quic: Option<QuicConfig>,
    /// The transparent UDP 53 (DNS) listener; absent means DNS over UDP is not proxied.
    pub dns: Option<DnsConfig>,
    /// The investigator's console and the key evidence is sealed to; absent: neither.
    pub console: Option<ConsoleConfig>,
    /// Logging.
    pub log: LogConfig,
}

/// `[proxy]`: listeners, access control and limits.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Explicit proxy listener (CONNECT and absolute-form HTTP).
    pub listen: SocketAddr,
    /// Listener for traffic redirected by nftables/iptables; off when absent.
    pub transparent_listen: Option<SocketAddr>,
    /// Client networks that may use the gateway. Everyone else is refused.
    pub allowed_clients: Vec<Cidr>,
    /// Loopback/private/link-local destinations allowed anyway.
    pub allowed_destinations: Vec<Cidr>,
    /// Connections served at once; more are refused, not queued.
    pub max_connections: usize,
    /// Time a client has to send a complete request head.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no traffic either way for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest request head accepted, in bytes.
    pub max_header_bytes: usize,
    /// On SIGTERM/SIGINT, how long in-flight connections may finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            transparent_listen: None,
            allowed_clients: vec![
                "127.0.0.0/8".parse().expect("valid"),
                "::1/128".parse().expect("valid"),
            ],
            allowed_destinations: Vec::new(),
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// `[ca]`: the interception CA.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    /// Directory holding `ca.pem` and `ca.key`, created on first run.
    pub dir: PathBuf,
    /// Imported CA certificate (instead of `dir`); needs `key`.
    pub cert: Option<PathBuf>,
    /// Imported CA private key (mode 0600); needs `cert`.
    pub key: Option<PathBuf>,
    /// Certificates sent to clients after the leaf (for an imported intermediate).
    pub chain: Option<PathBuf>,
    /// Common name of a CA created on first run.
    pub name: String,
    /// Who runs the gateway, named in the texts of `ca export --format
    /// mobileconfig`; empty → the certificate's organisation, if any.
    pub organization: String,
}

impl CaConfig {
    /// Where the CA lives: the imported files (with `chain` only when
    /// configured), or `ca.pem`, `ca.key` and `chain.pem` in `dir`. The one
    /// answer for `run`, `check` and `gatehouse ca`.
    pub fn files(&self) -> gatehouse_certs::CaFiles {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => gatehouse_certs::CaFiles {
                cert: cert.clone(),
                key: key.clone(),
                chain: self.chain.clone().unwrap_or_default(),
            },
            _ => gatehouse_certs::CaFiles::in_dir(&self.dir),
        }
    }
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("certs"),
            cert: None,
            key: None,
            chain: None,
            name: "Gatehouse Interception CA".into(),
            organization: String::new(),
        }
    }
}

/// `[upstream]`: verification of real servers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// PEM files whose certificates are trusted besides the system roots.
    pub extra_roots: Vec<PathBuf>,
    /// Time allowed to connect to an upstream server and finish its handshake.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The only exception to verification: an exact certificate pinned for
    /// one host, logged loudly every time it is used.
    pub verify_exceptions: Vec<VerifyException>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            extra_roots: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            verify_exceptions: Vec::new(),
        }
    }
}

/// `[[upstream.verify_exceptions]]`: accept one failing certificate for one host.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VerifyException {
    /// The server name (SNI) the exception applies to.
    pub host: String,
    /// SHA-256 of the exact end-entity certificate (hex).
    pub sha256: String,
    /// Why this exception exists; logged with every use.
    pub reason: String,
}

/// `[intercept]`: what to intercept and how.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InterceptConfig {
    /// Decision when no policy rule matches: `intercept`, `passthrough` or `block`.
    pub default_action: PolicyAction,
    /// Policy rules, first match wins.
    pub rules: Vec<PolicyRule>,
    /// What to do with a flow that looks like TLS but cannot be read (a
    /// malformed or incomplete ClientHello, no TLS after XMPP `<proceed/>`):
    /// `block` (default) or `passthrough` (relayed unread, flagged).
    pub unparsed_action: UnparsedAction,
    /// Which pinning passes through: `catalog` (default: only apps the
    /// catalog marks as pinning), `learn` (also hosts a user's client
    /// refused our leaf for, per user/device), `off` (none).
    pub pinning: PinningMode,
    /// Pass through (flagged) the built-in list of apps known to pin
    /// certificates (under `pinning = "catalog"` or `"learn"`).
    pub builtin_pinned_passthrough: bool,
    /// Handshake aborts after our leaf, per user/device (else client address)
    /// and name, before the name is put on passthrough (`pinning = "learn"`).
    pub pinning_threshold: u32,
    /// How long a learned pinning passthrough lasts.
    #[serde(with = "humantime_serde")]
    pub pinning_ttl: Duration,
    /// Longest leaf lifetime, in days (never beyond the upstream certificate's).
    pub leaf_max_days: u32,
    /// Leaves kept in the cache.
    pub leaf_cache_size: usize,
    /// An app catalog file (TOML) extending or overriding the shipped one,
    /// e.g. for a company's own Mattermost or Matrix host.
    pub app_catalog: Option<PathBuf>,
    /// Bytes of each request body (and response body, when a DLP rule
    /// applies inbound) held for inspection before forwarding; the rest of
    /// a larger body streams, scanned as it passes.
    pub inspect_window: usize,
}

impl Default for InterceptConfig {
    fn default() -> Self {
        Self {
            default_action: PolicyAction::Intercept,
            rules: Vec::new(),
            unparsed_action: UnparsedAction::Block,
            pinning: PinningMode::Catalog,
            builtin_pinned_passthrough: true,
            pinning_threshold: 3,
            pinning_ttl: Duration::from_secs(3600),
            leaf_max_days: 3,
            leaf_cache_size: 10_000,
            app_catalog: None,
            inspect_window: 1024 * 1024,
        }
    }
}

/// `intercept.unparsed_action`: what happens to TLS-looking data the
/// gateway cannot read.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnparsedAction {
    /// Refuse the flow (recorded, flagged).
    #[default]
    Block,
    /// Relay it unread (recorded, flagged): only where an admin says so.
    Passthrough,
}

/// `intercept.pinning`: which certificate pinning earns a passthrough.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PinningMode {
    /// Only apps the catalog marks as pinning pass through; aborted
    /// handshakes never make a host pass.
    #[default]
    Catalog,
    /// As `catalog`, plus hosts learned per user/device from aborted
    /// handshakes (never over a block rule).
    Learn,
    /// No pinning passthrough at all: intercept or block per policy.
    Off,
}

/// What to do with a flow.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    /// Terminate TLS with the enterprise CA and inspect.
    Intercept,
    /// Splice bytes unread; metadata only, flagged.
    Passthrough,
    /// Refuse the flow.
    Block,
}

impl PolicyAction {
    /// Stable name for events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intercept => "intercept",
            Self::Passthrough => "passthrough",
            Self::Block => "block",
        }
    }
}

/// `[[intercept.rules]]`: one policy rule; every given condition must match.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// Host patterns: `example.com` exactly, `*.example.com` for subdomains.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// App ids from the catalog (`slack`, `telegram`, `whatsapp`, …).
    #[serde(default)]
    pub apps: Vec<String>,
    /// User names (from identity pools or proxy authentication).
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// What to do.
    pub action: PolicyAction,
    /// Why, recorded in events.
    #[serde(default)]
    pub reason: String,
    /// What a QUIC (UDP 443) flow matching this rule gets: `block`
    /// (default: the client falls back to TCP, where `action` applies),
    /// `pass` (datagrams relayed unread, metadata only) or `intercept`.
    /// A rule whose `action` is `block` blocks QUIC whatever this says.
    #[serde(default)]
    pub quic: QuicAction,
}

/// `intercept.rules[].quic`: what a QUIC flow gets.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QuicAction {
    /// Refuse at once (CONNECTION_CLOSE in a server Initial) so the client
    /// falls back to TCP.
    #[default]
    Block,
    /// Relay the datagrams both ways unread (metadata only).
    Pass,
    /// Terminate QUIC and HTTP/3 and inspect.
    Intercept,
}

impl QuicAction {
    /// Stable name for events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Pass => "pass",
            Self::Intercept => "intercept",
        }
    }
}

/// `[quic]`: the transparent UDP listener for QUIC (UDP 443 redirected
/// with nftables TPROXY). Decisions come from `[[intercept.rules]]`'
/// `quic` key; no rule matching means `block`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QuicConfig {
    /// Where TPROXY delivers the datagrams (needs `CAP_NET_ADMIN` for
    /// `IP_TRANSPARENT`); `[::]` takes IPv4 and IPv6.
    pub listen: SocketAddr,
    /// QUIC flows tracked at once (blocked flows included, for as long as
    /// they are remembered); a new flow beyond it is dropped.
    pub max_flows: usize,
    /// A flow with no datagram either way for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Time the client has to complete its ClientHello in Initial packets.
    #[serde(with = "humantime_serde")]
    pub initial_timeout: Duration,
    /// Bytes of client datagrams held while the ClientHello is reassembled;
    /// a hello that does not fit is refused as malformed.
    pub initial_max_bytes: usize,
    /// New flows one client address may open per second (burst of twice
    /// as many); more are dropped unrecorded.
    pub new_flows_per_second: u32,
    /// Remove `h3` alternatives from `Alt-Svc` in intercepted TCP responses
    /// so clients stop trying QUIC; absent: on unless some rule passes or
    /// intercepts QUIC.
    pub strip_alt_svc: Option<bool>,
    /// HTTP/3 requests an intercepted QUIC connection may have open at
    /// once (QUIC's concurrent bidirectional streams).
    pub max_streams: u32,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            max_flows: 10_000,
            idle_timeout: Duration::from_secs(30),
            initial_timeout: Duration::from_secs(2),
            initial_max_bytes: 16 * 1024,
            new_flows_per_second: 50,
            strip_alt_svc: None,
            max_streams: 100,
        }
    }
}

impl Config {
    /// Whether intercepted TCP responses lose their `h3` Alt-Svc
    /// alternatives: `quic.strip_alt_svc`, else on unless a rule lets QUIC
    /// through (pass or intercept) — with no `[quic]` at all, UDP 443 is
    /// expected to be dropped, so advertising h3 only costs clients a
    /// timeout.
    pub fn strip_alt_svc(&self) -> bool {
        match self.quic.as_ref().and_then(|q| q.strip_alt_svc) {
            Some(v) => v,
            None => {
                self.quic.is_none()
                    || self
                        .intercept
                        .rules
                        .iter()
                        .all(|r| r.quic == QuicAction::Block || r.action == PolicyAction::Block)
            }
        }
    }
}

/// `[identity]`: who is behind a client address or proxy login.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// VPN address pools: address ranges mapped to a user, device and groups.
    pub pools: Vec<IdentityPool>,
    /// Proxy-Authorization (Basic) users for the explicit proxy.
    pub users: Vec<ProxyUser>,
    /// Refuse explicit-proxy requests without valid credentials.
    pub require_proxy_auth: bool,
}

/// `[[identity.pools]]`: clients in `cidr` are this user/device.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentityPool {
    /// Client address range (a WireGuard peer's address is a /32).
    pub cidr: Cidr,
    /// User name.
    #[serde(default)]
    pub user: Option<String>,
    /// Device name.
    #[serde(default)]
    pub device: Option<String>,
    /// Groups for policy.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `[[identity.users]]`: an explicit-proxy login.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProxyUser {
    /// Login name.
    pub name: String,
    /// Argon2 PHC hash of the password (`gatehouse` never stores plain passwords).
    pub password_hash: String,
    /// Groups for policy.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `[rules]`: DLP rule packs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Directory of rule pack TOML files.
    pub dir: PathBuf,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("dlp-rules"),
        }
    }
}

/// `[events]`: the durable local journal.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Directory of journal segments and the shipping cursor.
    pub journal_dir: PathBuf,
    /// Name of this gateway in every event; empty means the host name.
    pub node: String,
    /// Events held in memory between the flows and the journal writer.
    pub queue_size: usize,
    /// A segment file is closed and a new one started past this size (bytes).
    pub segment_bytes: u64,
    /// Largest size of the journal on disk (bytes); beyond it `full_policy` applies.
    pub journal_max_bytes: u64,
    /// When the journal is made durable.
    pub fsync: FsyncPolicy,
    /// With `fsync = "interval"`: how often.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// What happens when the journal is full.
    pub full_policy: FullPolicy,
    /// Store the text of extracted messages in `message` events. Off by
    /// default: events then carry metadata and masked DLP evidence only.
    pub store_message_text: bool,
    /// A flow still open records a `flow_update` event this often while
    /// bytes move, so a crash (`kill -9`, power loss) leaves at most this
    /// much of its activity unrecorded. `0s` turns updates off.
    #[serde(with = "humantime_serde")]
    pub flow_update_interval: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            journal_dir: PathBuf::from("var/journal"),
            node: String::new(),
            queue_size: 65_536,
            segment_bytes: 64 << 20,
            journal_max_bytes: 4 << 30,
            fsync: FsyncPolicy::Batch,
            fsync_interval: Duration::from_secs(1),
            full_policy: FullPolicy::FailClosed,
            store_message_text: false,
            flow_update_interval: Duration::from_secs(30),
        }
    }
}

/// When journal writes are made durable.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// After every group of records written together (group commit).
    Batch,
    /// At most every `fsync_interval`: a crash may lose that much.
    Interval,
    /// Never explicitly; the OS writes back when it likes.
    Never,
}

/// What the journal does when it reaches `journal_max_bytes`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Refuse new flows (the sink stops accepting) and keep every event.
    FailClosed,
    /// Keep serving; drop new events and count them.
    DropNew,
    /// Keep serving; delete the oldest segment, shipped or not, and count it.
    DropOldest,
}

/// `[clickhouse]`: where events are shipped.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP(S) endpoint of the server.
    pub url: String,
    /// Database holding Gatehouse's tables.
    pub database: String,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Check row types against the server's schema (off for ClickHouse 18.x).
    pub validation: bool,
    /// Most events in one INSERT.
    pub batch_size: usize,
    /// Longest an event waits in the journal for its batch to fill.
    #[serde(with = "humantime_serde")]
    pub batch_interval: Duration,
    /// First retry delay after a failed batch; doubles up to `backoff_max`, with jitter.
    #[serde(with = "humantime_serde")]
    pub backoff_min: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Days each table keeps; 0 keeps forever. Older day partitions are dropped daily.
    pub retention_days: RetentionDays,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "gatehouse".into(),
            user: "default".into(),
            password: String::new(),
            validation: true,
            batch_size: 50_000,
            batch_interval: Duration::from_secs(1),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            retention_days: RetentionDays::default(),
        }
    }
}

/// `[clickhouse.retention_days]`: days kept per table; 0 keeps forever.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionDays {
    /// Connections.
    pub connection: u32,
    /// Messages (metadata only).
    pub message: u32,
    /// DLP findings.
    pub dlp_finding: u32,
    /// Opaque tunnels.
    pub opaque_tunnel: u32,
    /// Policy decisions.
    pub policy: u32,
    /// Audit trail.
    pub audit: u32,
    /// Interim progress of long-lived flows (superseded by their `connection` event).
    pub flow_update: u32,
}

impl Default for RetentionDays {
    fn default() -> Self {
        Self {
            connection: 90,
            message: 90,
            dlp_finding: 365,
            opaque_tunnel: 90,
            policy: 180,
            audit: 730,
            flow_update: 30,
        }
    }
}

/// `[admin]`: health and operations endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listener; loopback by default.
    pub listen: SocketAddr,
    /// File holding the bearer token `/metrics` and `/metrics.json` then
    /// require (mode 0600). Without it they answer without authentication
    /// (keep `listen` on loopback or a management network). `/healthz` and
    /// `/readyz` never need it.
    pub token_file: Option<PathBuf>,
    /// Admin connections open at once; more are closed at accept.
    pub max_connections: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token_file: None,
            max_connections: 64,
        }
    }
}

/// `[onboarding]`: where employees fetch the CA and the PAC file. Off
/// unless `listen`, `host` or `https_listen` is set.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OnboardingConfig {
    /// Plain-HTTP listener of the page (the CA is not trusted yet).
    pub listen: Option<SocketAddr>,
    /// A host name the explicit proxy answers for itself, mitm.it style:
    /// `http://HOST/` through the proxy is the page, and a CONNECT to
    /// `HOST` (any port) is the page over HTTPS with a leaf from the CA,
    /// which is what the trust check loads. Never relayed anywhere.
    pub host: Option<String>,
    /// HTTPS listener serving the page and the trust check with a leaf for
    /// `host` (for devices that reach `host` without the explicit proxy,
    /// e.g. by DNS on the VPN). Needs `host`.
    pub https_listen: Option<SocketAddr>,
    /// What `/proxy.pac` sends to `DIRECT`: IPv4 CIDRs (`10.0.0.0/8`),
    /// domain suffixes (`.corp.example`, which also matches `corp.example`)
    /// or exact host names. Everything else goes to the proxy, with no
    /// `DIRECT` fallback (fail closed).
    pub direct: Vec<String>,
    /// `host:port` the PAC file names as the proxy; default `proxy.listen`
    /// (required when that is a wildcard address).
    pub pac_proxy: Option<String>,
}

impl OnboardingConfig {
    /// Whether anything of onboarding is on.
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || self.host.is_some() || self.https_listen.is_some()
    }
}

/// `[log]`: logging.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter directives; `RUST_LOG` overrides it.
    pub filter: String,
    /// Output format; `--log-format` overrides it.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: LogFormat::Human,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line.
    Json,
}

/// The shipped app catalog, extended by `intercept.app_catalog` if set.
pub fn load_catalog(config: &Config) -> Result<Catalog, String> {
    match &config.intercept.app_catalog {
        None => Ok(Catalog::builtin().clone()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("intercept.app_catalog: {}: {e}", path.display()))?;
            Catalog::with_overrides(&text, &path.display().to_string())
                .map_err(|e| format!("intercept.app_catalog: {e}"))
        }
    }
}
