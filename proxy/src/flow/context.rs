//! The per-flow context: what is known about one flow as it passes the
//! steps, typed, and the one span its log lines run in. It becomes the
//! flow's `connection` event once, in [`record`](super::record).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::error::Side;
use crate::events::{now_ms, FlowStamp};
use crate::policy::Identity;

/// How a flow reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A CONNECT tunnel through the explicit proxy.
    Explicit,
    /// One absolute-form plain-HTTP request through the explicit proxy.
    ExplicitHttp,
    /// Redirected to the transparent listener.
    Transparent,
}

impl Mode {
    /// The name in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Explicit => "explicit",
            Self::ExplicitHttp => "explicit-http",
            Self::Transparent => "transparent",
        }
    }
}

/// What the gateway decided for a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decision {
    /// Nothing decided yet (a flow that ended before its decision).
    #[default]
    Undecided,
    /// Nothing to decide on: the client sent nothing.
    None,
    /// Decrypted and inspected.
    Intercept,
    /// Relayed unread (metadata only).
    Passthrough,
    /// Refused.
    Block,
    /// Could not be carried out: the destination did not resolve or did
    /// not answer (not a policy decision).
    Error,
}

impl Decision {
    /// The name in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Undecided => "",
            Self::None => "none",
            Self::Intercept => "intercept",
            Self::Passthrough => "passthrough",
            Self::Block => "block",
            Self::Error => "error",
        }
    }
}

/// Why a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloseReason {
    /// Not recorded (the flow ended without a step saying why).
    #[default]
    Unknown,
    /// Both sides closed.
    Closed,
    /// The client closed (or sent nothing).
    ClientClosed,
    /// The server closed.
    ServerClosed,
    /// Nothing moved for the idle timeout.
    IdleTimeout,
    /// A read or write failed.
    IoError,
    /// The gateway's grace period ran out.
    Shutdown,
    /// Policy blocked the flow.
    Blocked,
    /// Refused before any byte was relayed (destination, dial).
    Refused,
    /// The client's ClientHello could not be parsed.
    MalformedClientHello,
    /// The real server failed verification.
    UpstreamUnverified,
    /// No leaf could be minted for the name.
    LeafRefused,
    /// The client's TLS handshake with our leaf failed.
    ClientTlsError,
    /// The client did not finish its TLS handshake in time.
    ClientTlsTimeout,
    /// The HTTP relay ended with an error.
    HttpError,
}

impl CloseReason {
    /// The name in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "",
            Self::Closed => "closed",
            Self::ClientClosed => "client_closed",
            Self::ServerClosed => "server_closed",
            Self::IdleTimeout => "idle_timeout",
            Self::IoError => "io_error",
            Self::Shutdown => "shutdown",
            Self::Blocked => "blocked",
            Self::Refused => "refused",
            Self::MalformedClientHello => "malformed_client_hello",
            Self::UpstreamUnverified => "upstream_unverified",
            Self::LeafRefused => "leaf_refused",
            Self::ClientTlsError => "client_tls_error",
            Self::ClientTlsTimeout => "client_tls_timeout",
            Self::HttpError => "http_error",
        }
    }

    /// The side a close reason blames, when it blames one.
    pub fn side(self) -> Option<Side> {
        match self {
            Self::ClientClosed
            | Self::MalformedClientHello
            | Self::ClientTlsError
            | Self::ClientTlsTimeout => Some(Side::Client),
            Self::ServerClosed | Self::UpstreamUnverified => Some(Side::Upstream),
            Self::LeafRefused => Some(Side::Internal),
            _ => None,
        }
    }
}

impl From<crate::relay::CloseReason> for CloseReason {
    fn from(r: crate::relay::CloseReason) -> Self {
        use crate::relay::CloseReason as R;
        match r {
            R::Closed => Self::Closed,
            R::Idle => Self::IdleTimeout,
            R::Error => Self::IoError,
            R::Shutdown => Self::Shutdown,
        }
    }
}

/// Where the client wants to go: the CONNECT target, the absolute URI's
/// host, or the original destination of a redirected flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A name or an address (IPv6 without brackets).
    pub host: String,
    /// Destination port.
    pub port: u16,
}

impl Target {
    /// `host:port`, IPv6 in brackets.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A connection slot, held for the whole life of every flow it carries
/// (a CONNECT tunnel keeps the slot of the connection that opened it).
pub type Slot = Arc<OwnedSemaphorePermit>;

/// What a listener hands to the flow: how the client came, who it is,
/// where it goes. Not tied to a transport: a UDP (QUIC) flow starts the
/// same way.
#[derive(Debug)]
pub struct FlowStart {
    /// How the flow reached the gateway.
    pub mode: Mode,
    /// The client's address.
    pub client: SocketAddr,
    /// Who the client is.
    pub identity: Identity,
    /// Where it goes; `None` when a redirected flow's destination is unknown.
    pub target: Option<Target>,
    /// The admission slot.
    pub slot: Option<Slot>,
}

/// What the identifier and the catalog said about the flow.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Protocol of the first bytes.
    pub protocol: Option<String>,
    /// The app, when recognised.
    pub app: Option<String>,
    /// inspectable, metadata-only or opaque.
    pub class: Option<String>,
    /// Why not inspectable.
    pub class_reasons: Vec<String>,
    /// How app and class were concluded.
    pub evidence: Vec<String>,
    /// TLS server name.
    pub sni: Option<String>,
    /// JA4 fingerprint.
    pub ja4: Option<String>,
    /// Encrypted Client Hello offered.
    pub ech: bool,
    /// The catalog says the app's clients pin their certificates.
    pub pinned: bool,
    /// The app named for this flow by what an earlier flow taught about its
    /// server address (see `peek::attribute_by_address`): recorded when the
    /// flow recognised no app itself, never decided on.
    pub attributed_app: Option<String>,
}

/// Both TLS legs as negotiated.
#[derive(Debug, Clone, Default)]
pub struct TlsSeen {
    /// ALPN protocol in use.
    pub alpn: Option<String>,
    /// Client leg version and suite.
    pub client: Option<String>,
    /// Upstream leg version and suite.
    pub upstream: Option<String>,
    /// SHA-256 of the upstream end-entity certificate.
    pub upstream_cert_sha256: Option<String>,
    /// `ok`, `exception: …`, or why verification failed.
    pub verification: Option<String>,
}

/// One flow, from admission to its record.
#[derive(Debug)]
pub struct Flow {
    /// Unique id (UUID v7), carried by every event and log line of the flow.
    pub id: Uuid,
    /// How it reached the gateway.
    pub mode: Mode,
    /// The client's address.
    pub client: SocketAddr,
    /// Who the client is.
    pub identity: Identity,
    /// Where it goes.
    pub target: Option<Target>,
    /// The server address connected to.
    pub server_addr: Option<SocketAddr>,
    /// Identification.
    pub seen: Seen,
    /// The TLS legs.
    pub tls: TlsSeen,
    /// The host name the flow is about, when a step settled it (else SNI,
    /// else the target).
    pub host: Option<String>,
    /// The decision.
    pub decision: Decision,
    /// Why, in words.
    pub reason: String,
    /// Worth a look by the security team.
    pub flagged: bool,
    /// Why it ended.
    pub close: CloseReason,
    /// The side that failed, when one did and the close reason does not say.
    pub side: Option<Side>,
    /// Bytes client → server.
    pub bytes_up: u64,
    /// Bytes server → client.
    pub bytes_down: u64,
    /// Start, epoch milliseconds.
    pub started_ms: u64,
    /// The span every log line of the flow runs in.
    pub span: tracing::Span,
    /// `tcp`, or `udp` for a QUIC flow.
    pub transport: &'static str,
    /// Held until the flow is recorded.
    _slot: Option<Slot>,
}

impl Flow {
    /// A new flow with its id and span.
    pub fn new(start: FlowStart) -> Self {
        let id = Uuid::now_v7();
        let dst = start
            .target
            .as_ref()
            .map(Target::host_port)
            .unwrap_or_default();
        let span = tracing::info_span!(
            "flow",
            flow_id = %id,
            client = %start.client,
            dst = %dst,
            mode = start.mode.as_str(),
        );
        Self {
            id,
            mode: start.mode,
            client: start.client,
            identity: start.identity,
            target: start.target,
            server_addr: None,
            seen: Seen::default(),
            tls: TlsSeen::default(),
            host: None,
            decision: Decision::Undecided,
            reason: String::new(),
            flagged: false,
            close: CloseReason::Unknown,
            side: None,
            bytes_up: 0,
            bytes_down: 0,
            started_ms: now_ms(),
            span,
            transport: "tcp",
            _slot: start.slot,
        }
    }

    /// The name the flow is about: the settled host, else SNI, else the target.
    pub fn host_name(&self) -> String {
        self.host
            .clone()
            .or_else(|| self.seen.sni.clone())
            .or_else(|| self.target.as_ref().map(|t| t.host.clone()))
            .unwrap_or_default()
    }

    /// The target port (0 when unknown).
    pub fn port(&self) -> u16 {
        self.target.as_ref().map_or(0, |t| t.port)
    }

    /// What every other event of this flow carries.
    pub fn stamp(&self) -> FlowStamp {
        FlowStamp {
            flow_id: self.id,
            client: self.client,
            user: self.identity.user.clone().unwrap_or_default(),
            device: self.identity.device.clone().unwrap_or_default(),
            app: self.seen.app.clone(),
            host: self.host_name(),
        }
    }

    /// Sets the decision and its reason.
    pub fn decide(&mut self, decision: Decision, reason: impl Into<String>) {
        self.decision = decision;
        self.reason = reason.into();
    }

    /// Records why the flow ended.
    pub fn end(&mut self, close: CloseReason) {
        self.close = close;
    }

    /// Records that the flow ended because `side` failed.
    pub fn fail(&mut self, side: Side, close: CloseReason) {
        self.side = Some(side);
        self.close = close;
    }
}
