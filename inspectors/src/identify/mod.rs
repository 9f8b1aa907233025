//! Which protocol a flow speaks, from its first bytes.
//!
//! The proxy peeks the client's first bytes and calls [`identify`]; while
//! the answer says `need_more`, it peeks again with more. When no more bytes
//! will come (the client waits for the server, or the peek limit or a timer
//! ran out), [`identify_final`] gives the best verdict on what there is.
//! The app and the inspection class come from [`catalog::classify`].
//!
//! ```
//! use gatehouse_inspectors::identify::{catalog, identify, Protocol, Transport};
//!
//! let peeked = b"GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: m.corp.example\r\n\r\n";
//! let id = identify(&peeked[..10], Transport::Tcp, 80);
//! assert!(id.need_more); // peek again with more bytes
//! let id = identify(peeked, Transport::Tcp, 80);
//! assert_eq!(id.protocol, Protocol::Http);
//! let verdict = catalog::classify(&id, None, 80);
//! assert_eq!(verdict.app.as_deref(), Some("matrix"));
//! assert_eq!(verdict.class, catalog::Class::Inspectable);
//! ```

pub mod catalog;
pub mod context;
pub mod discord_voice;
pub mod dns;
pub mod entropy;
pub mod gquic;
pub mod http;
pub mod mmtls;
pub mod mqtt;
pub mod mtproto;
pub mod quic;
pub mod ranges;
pub(crate) mod reader;
pub mod resolved;
pub mod rtp;
pub mod sniff;
pub mod stun;
pub mod svcb;
pub mod threema;
pub mod tls;
mod udp;
pub mod whatsapp;
pub mod xmpp;

pub use sniff::Sniff;

use std::fmt;

/// The transport a flow runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A TCP stream.
    Tcp,
    /// UDP datagrams.
    Udp,
}

impl Transport {
    /// `tcp` or `udp`, as in events and `gatehouse identify` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// The protocols Gatehouse tells apart. Serialises as [`Protocol::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Protocol {
    /// TLS over TCP.
    Tls,
    /// QUIC (Initial packets seen).
    Quic,
    /// Plain HTTP/1.x, or HTTP/2 with prior knowledge.
    Http,
    /// An XMPP client stream.
    Xmpp,
    /// MQTT, including Facebook's MQTToT.
    Mqtt,
    /// One of Telegram's MTProto transports.
    Mtproto,
    /// WhatsApp's Noise handshake.
    WhatsappNoise,
    /// WeChat's MMTLS.
    Mmtls,
    /// Threema's chat handshake (recognised by shape, not by content).
    Threema,
    /// DNS queries (UDP or TCP).
    Dns,
    /// STUN or TURN (RFC 5389/8489, and classic RFC 3489).
    Stun,
    /// RTP media (plain or SRTP: the header is the same).
    Rtp,
    /// RTCP (or SRTCP) media control.
    Rtcp,
    /// Discord's voice UDP protocol (its IP discovery, then encrypted RTP).
    DiscordVoice,
    /// Nothing recognised.
    Unknown,
}

/// How sure a verdict is: of the protocol (in [`Identification`]) or of
/// the app (in [`catalog::Classification`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// A guess: a port, the shape of random bytes, a published address
    /// range, or what else the client did around the same time.
    Low,
    /// Consistent structure without proof, or a catalog host suffix or a
    /// name the client itself resolved.
    Medium,
    /// The protocol itself proves it (a parsed handshake, a checksum or a
    /// magic value), or an exact catalog host matched.
    High,
}

impl Confidence {
    /// `low`, `medium` or `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

impl Protocol {
    /// Stable lowercase name used in events and `gatehouse identify`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Quic => "quic",
            Self::Http => "http",
            Self::Xmpp => "xmpp",
            Self::Mqtt => "mqtt",
            Self::Mtproto => "mtproto",
            Self::WhatsappNoise => "whatsapp-noise",
            Self::Mmtls => "mmtls",
            Self::Threema => "threema",
            Self::Dns => "dns",
            Self::Stun => "stun",
            Self::Rtp => "rtp",
            Self::Rtcp => "rtcp",
            Self::DiscordVoice => "discord-voice",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the first message said, per protocol.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Details {
    /// Nothing parsed (need more, unknown, or malformed).
    None,
    /// A TLS ClientHello.
    Tls(Box<tls::ClientHello>),
    /// A ClientHello from QUIC Initials.
    Quic(Box<quic::QuicHello>),
    /// An HTTP request head.
    Http(http::HttpRequest),
    /// An XMPP stream header.
    Xmpp(xmpp::StreamHeader),
    /// An MQTT CONNECT.
    Mqtt(mqtt::MqttConnect),
    /// WhatsApp's connection header and first Noise frame.
    WhatsappNoise(whatsapp::WaHandshake),
    /// The MTProto transport in use.
    Mtproto(mtproto::MtprotoTransport),
    /// An MMTLS ClientHello record.
    Mmtls(mmtls::MmtlsHello),
    /// A Google QUIC (gQUIC) client hello: CHLO tags, or TLS for T05x.
    Gquic(Box<gquic::GquicHello>),
    /// A DNS message.
    Dns(dns::DnsMessage),
    /// A STUN message.
    Stun(stun::StunMessage),
    /// RTP or RTCP headers, and how many datagrams agreed with them.
    Media(rtp::MediaFlow),
    /// Discord voice's IP discovery.
    DiscordVoice(discord_voice::IpDiscovery),
}

/// The verdict on a flow's first bytes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Identification {
    /// The protocol, or the one being waited on when `need_more` is set and
    /// only one candidate remains.
    pub protocol: Protocol,
    /// Peek more bytes and call again before deciding.
    pub need_more: bool,
    /// What the first message said.
    pub details: Details,
    /// Shannon entropy of the bytes seen, in bits per byte: computed only
    /// when no protocol matched (unknown, Threema's random opening), where it
    /// tells encrypted bytes from text.
    pub entropy: Option<f64>,
    /// How many bytes the verdict rests on.
    pub bytes_seen: usize,
    /// The protocol was recognised but its handshake was malformed; the
    /// reason, for the connection event's evidence.
    pub error: Option<String>,
    /// How sure the protocol verdict is.
    pub confidence: Confidence,
}

impl Identification {
    fn new(protocol: Protocol, details: Details, bytes: &[u8]) -> Self {
        let confidence = match (&protocol, &details) {
            (Protocol::Unknown | Protocol::Threema, _) => Confidence::Low,
            (_, Details::None) => Confidence::Medium,
            (_, Details::Mtproto(t)) => mtproto::confidence(*t),
            (_, Details::Stun(s)) => s.confidence(),
            (_, Details::Media(m)) => m.confidence(),
            _ => Confidence::High,
        };
        Self {
            protocol,
            need_more: false,
            details,
            entropy: matches!(protocol, Protocol::Unknown | Protocol::Threema)
                .then(|| entropy::shannon(bytes)),
            bytes_seen: bytes.len(),
            error: None,
            confidence,
        }
    }

    /// A verdict built outside this module (capture reassembly): protocol
    /// and details as given, confidence as [`identify`] would give them.
    pub fn from_parts(protocol: Protocol, details: Details, bytes_seen: usize) -> Self {
        Self {
            bytes_seen,
            entropy: None,
            ..Self::new(protocol, details, &[])
        }
    }

    /// A recognised protocol whose handshake could not be read, with the
    /// reason.
    pub fn malformed(protocol: Protocol, reason: &str, bytes_seen: usize) -> Self {
        Self {
            error: Some(reason.to_owned()),
            ..Self::from_parts(protocol, Details::None, bytes_seen)
        }
    }

    fn need_more(protocol: Protocol, bytes: &[u8]) -> Self {
        Self {
            need_more: true,
            ..Self::new(protocol, Details::None, bytes)
        }
    }

    /// The ClientHello, from TLS or QUIC.
    pub fn client_hello(&self) -> Option<&tls::ClientHello> {
        match &self.details {
            Details::Tls(h) => Some(h),
            Details::Quic(q) => Some(&q.hello),
            Details::Gquic(g) => g.tls.as_ref(),
            _ => None,
        }
    }

    /// The server name the client asked for: SNI, HTTP Host, or the XMPP
    /// stream's `to` domain.
    pub fn server_name(&self) -> Option<&str> {
        match &self.details {
            Details::Http(r) => r.effective_host(),
            Details::Xmpp(x) => x.to.as_deref(),
            Details::Gquic(g) => g.server_name(),
            _ => self.client_hello().and_then(|h| h.sni.as_deref()),
        }
    }

    /// The offered ALPN ids (empty when not TLS or QUIC).
    pub fn alpn(&self) -> &[Vec<u8>] {
        self.client_hello().map_or(&[], |h| &h.alpn)
    }
}

/// Identifies a flow from the client's first bytes (for UDP, the first
/// datagram). `need_more` in the answer asks for a longer peek.
pub fn identify(first_bytes: &[u8], transport: Transport, dst_port: u16) -> Identification {
    run(first_bytes, transport, dst_port, false)
}

/// Like [`identify`], when no more bytes will come: never answers
/// `need_more`, and gives shape-based guesses (Threema) on any port.
pub fn identify_final(first_bytes: &[u8], transport: Transport, dst_port: u16) -> Identification {
    run(first_bytes, transport, dst_port, true)
}

fn run(buf: &[u8], transport: Transport, port: u16, last: bool) -> Identification {
    match transport {
        Transport::Udp => udp(buf, port, last),
        Transport::Tcp => tcp(buf, port, last),
    }
}

fn udp(buf: &[u8], port: u16, last: bool) -> Identification {
    match quic::looks_like_initial(buf) {
        Some(true) => match quic::parse_initial(buf) {
            Ok(Some(q)) => Identification::new(Protocol::Quic, Details::Quic(Box::new(q)), buf),
            Ok(None) if !last => Identification::need_more(Protocol::Quic, buf),
            Ok(None) => malformed(Protocol::Quic, "ClientHello incomplete", buf),
            Err(e) => malformed(Protocol::Quic, &e.to_string(), buf),
        },
        Some(false) => udp::other(buf, port),
        None if !last => Identification::need_more(Protocol::Unknown, buf),
        None => udp::other(buf, port),
    }
}

/// Judges a UDP flow on several of its client datagrams (in order): what
/// one datagram cannot prove (RTP) is confirmed by the next ones agreeing
/// on the stream. The first datagram decides everything else.
pub fn identify_datagrams(datagrams: &[&[u8]], dst_port: u16) -> Identification {
    udp::flow(datagrams, dst_port)
}

fn tcp(buf: &[u8], port: u16, last: bool) -> Identification {
    let mut waiting = Vec::new();
    match tls::looks_like_tls(buf) {
        Some(true) => {
            return match tls::parse_client_hello(buf) {
                Ok(Some(h)) => Identification::new(Protocol::Tls, Details::Tls(Box::new(h)), buf),
                Ok(None) if !last => Identification::need_more(Protocol::Tls, buf),
                Ok(None) => malformed(Protocol::Tls, "ClientHello incomplete", buf),
                Err(e) => malformed(Protocol::Tls, &e.to_string(), buf),
            }
        }
        None => waiting.push(Protocol::Tls),
        Some(false) => {}
    }
    macro_rules! try_detector {
        ($sniff:expr, $protocol:expr, $details:expr) => {
            match $sniff {
                Sniff::Yes(d) => return Identification::new($protocol, $details(d), buf),
                Sniff::NeedMore => waiting.push($protocol),
                Sniff::No => {}
            }
        };
    }
    try_detector!(http::detect(buf), Protocol::Http, Details::Http);
    try_detector!(xmpp::detect(buf), Protocol::Xmpp, Details::Xmpp);
    try_detector!(mqtt::detect(buf), Protocol::Mqtt, Details::Mqtt);
    try_detector!(
        whatsapp::detect(buf),
        Protocol::WhatsappNoise,
        Details::WhatsappNoise
    );
    try_detector!(mmtls::detect(buf), Protocol::Mmtls, Details::Mmtls);
    try_detector!(stun::detect_stream(buf), Protocol::Stun, Details::Stun);
    try_detector!(dns::detect_tcp(buf), Protocol::Dns, Details::Dns);
    // MTProto's tags and lengths are weak evidence next to the markers
    // above: it never claims bytes another parser still waits on.
    let stronger_waiting = !waiting.is_empty();
    macro_rules! try_weak_detector {
        ($sniff:expr) => {
            match $sniff {
                Sniff::Yes(d) if !stronger_waiting || last => {
                    return Identification::new(Protocol::Mtproto, Details::Mtproto(d), buf)
                }
                Sniff::Yes(_) | Sniff::NeedMore => waiting.push(Protocol::Mtproto),
                Sniff::No => {}
            }
        };
    }
    try_weak_detector!(mtproto::detect_plain(buf));
    // Threema's 48 bytes stall the flow before obfuscated2's 64 arrive.
    if threema::looks_like_client_hello(buf) && (last || port == threema::PORT) {
        return Identification::new(Protocol::Threema, Details::None, buf);
    }
    // Random bytes may be an obfuscated2 header until 64 are in; text is not.
    if !looks_like_text(buf) {
        try_weak_detector!(mtproto::detect_obfuscated(buf));
    }
    match waiting.as_slice() {
        _ if last => Identification::new(Protocol::Unknown, Details::None, buf),
        [] => Identification::new(Protocol::Unknown, Details::None, buf),
        [only] => Identification::need_more(*only, buf),
        _ => Identification::need_more(Protocol::Unknown, buf),
    }
}

/// Printable ASCII start: a text protocol we do not know (SSH banner, SMTP
/// command), not a random obfuscation header. Eight random bytes are all
/// printable with probability (95/256)^8 ≈ 4·10⁻⁴.
fn looks_like_text(buf: &[u8]) -> bool {
    buf.len() >= 8
        && buf[..8]
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\r' || *b == b'\n')
}

fn malformed(protocol: Protocol, reason: &str, buf: &[u8]) -> Identification {
    Identification {
        error: Some(reason.to_owned()),
        ..Identification::new(protocol, Details::None, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_protocol_is_routed_to_its_detector() {
        let cases: Vec<(Vec<u8>, Protocol)> = vec![
            (
                b"GET / HTTP/1.1\r\nHost: a.b\r\n\r\n".to_vec(),
                Protocol::Http,
            ),
            (
                b"<stream:stream to='x.org' xmlns='jabber:client'>".to_vec(),
                Protocol::Xmpp,
            ),
            (
                b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00".to_vec(),
                Protocol::Mqtt,
            ),
            (whatsapp::sample(true), Protocol::WhatsappNoise),
            (mmtls::sample(), Protocol::Mmtls),
        ];
        for (bytes, want) in cases {
            let id = identify(&bytes, Transport::Tcp, 443);
            assert_eq!(id.protocol, want, "{:?}", String::from_utf8_lossy(&bytes));
            assert!(!id.need_more);
            for cut in 0..bytes.len() {
                let id = identify(&bytes[..cut], Transport::Tcp, 443);
                assert!(id.need_more, "{want} cut at {cut}: {id:?}");
            }
        }
    }

    #[test]
    fn names_serialise_as_in_design() {
        for p in [
            Protocol::Tls,
            Protocol::Quic,
            Protocol::Http,
            Protocol::Xmpp,
            Protocol::Mqtt,
            Protocol::Mtproto,
            Protocol::WhatsappNoise,
            Protocol::Mmtls,
            Protocol::Threema,
            Protocol::Dns,
            Protocol::Stun,
            Protocol::Rtp,
            Protocol::Rtcp,
            Protocol::DiscordVoice,
            Protocol::Unknown,
        ] {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
        }
        assert_eq!(serde_json::to_string(&Transport::Udp).unwrap(), "\"udp\"");
    }

    #[test]
    fn text_of_no_known_protocol_is_unknown_at_once() {
        let id = identify(b"SSH-2.0-OpenSSH_9.6\r\n", Transport::Tcp, 22);
        assert_eq!(id.protocol, Protocol::Unknown);
        assert!(!id.need_more);
        assert!(id.entropy.is_some_and(|e| e > 3.0 && e < 5.0));
    }

    #[test]
    fn random_bytes_wait_for_64_then_are_unknown() {
        let random: Vec<u8> = (0..64u32).map(|i| (i * 97 + 13) as u8).collect();
        assert!(identify(&random[..40], Transport::Tcp, 443).need_more);
        let id = identify(&random, Transport::Tcp, 443);
        assert_eq!((id.protocol, id.need_more), (Protocol::Unknown, false));
        assert!(id.entropy.is_some_and(|e| e > 5.9));
        let fin = identify_final(&random[..40], Transport::Tcp, 443);
        assert_eq!((fin.protocol, fin.need_more), (Protocol::Unknown, false));
    }

    #[test]
    fn threema_by_shape_on_its_port_or_at_the_end() {
        let hello: Vec<u8> = (0..48u32).map(|i| (i * 97 + 13) as u8).collect();
        assert_eq!(
            identify(&hello, Transport::Tcp, 5222).protocol,
            Protocol::Threema
        );
        assert!(identify(&hello, Transport::Tcp, 443).need_more);
        assert_eq!(
            identify_final(&hello, Transport::Tcp, 443).protocol,
            Protocol::Threema
        );
    }

    #[test]
    fn malformed_tls_is_still_tls_with_the_reason() {
        let id = identify(
            b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",
            Transport::Tcp,
            443,
        );
        assert_eq!(id.protocol, Protocol::Tls);
        assert!(!id.need_more);
        assert!(id.error.unwrap().contains("ClientHello"));
    }

    #[test]
    fn quic_of_a_version_we_cannot_open_is_still_quic() {
        let mut draft17 = b"\xc3\xff\x00\x00\x11\x08".to_vec();
        draft17.resize(1200, 0);
        let id = identify(&draft17, Transport::Udp, 443);
        assert_eq!(id.protocol, Protocol::Quic);
        assert!(id.error.unwrap().contains("0xff000011"));
        // gQUIC that does not open says why, and is still QUIC.
        let mut q050 = b"\xc3Q050\x08".to_vec();
        q050.extend([0u8; 40]);
        let id = identify(&q050, Transport::Udp, 443);
        assert_eq!(id.protocol, Protocol::Quic);
        assert!(id.error.is_some());
    }

    #[test]
    fn udp_that_is_not_quic_is_unknown() {
        let id = identify(b"\x40\x01\x02\x03\x04\x05", Transport::Udp, 443);
        assert_eq!((id.protocol, id.need_more), (Protocol::Unknown, false));
    }
}
