//! Combining protocol evidence with the catalog into an app, a class and
//! the evidence for both.

use std::net::IpAddr;

use super::{App, CallMedia, Catalog, Class, Reason};
use crate::identify::ranges::Ranges;
use crate::identify::{mqtt::MqttConnect, Confidence, Details, Identification, Protocol};

/// What is known about a flow besides its first bytes: the destination,
/// and what the same client did before it. Everything optional: the
/// gateway and the capture reader each fill what they have.
/// Build it with `..FlowContext::default()` so new fields stay optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowContext<'a> {
    /// The server name known to the proxy (CONNECT host or SNI); falls
    /// back to the one in the identification.
    pub sni: Option<&'a str>,
    /// Destination port.
    pub port: u16,
    /// Destination address.
    pub server: Option<IpAddr>,
    /// The name the destination address was resolved from, when a DNS
    /// answer for it was seen (see [`crate::identify::resolved`]).
    pub resolved: Option<&'a str>,
    /// Apps the same client was seen using shortly before, most recent
    /// first: they narrow an address range several apps share.
    pub signalled: &'a [String],
    /// Apps the same client used with this very server address shortly
    /// before (TLS, then the call relayed by the same host).
    pub signalled_same_server: &'a [String],
    /// Published address ranges to consult.
    pub ranges: Option<&'a Ranges>,
}

impl<'a> FlowContext<'a> {
    /// A context with only a port.
    pub fn port(port: u16) -> Self {
        Self {
            port,
            ..Self::default()
        }
    }
}

/// Well-known DNS-over-HTTPS resolvers (their own documentation).
const DOH_HOSTS: [&str; 9] = [
    "dns.google",
    "dns.google.com",
    "cloudflare-dns.com",
    "mozilla.cloudflare-dns.com",
    "one.one.one.one",
    "dns.quad9.net",
    "doh.opendns.com",
    "dns.nextdns.io",
    "dns.adguard-dns.com",
];

/// The verdict on a flow: which app, what Gatehouse can read, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Classification {
    /// The app id, when known.
    pub app: Option<String>,
    /// What Gatehouse can read.
    pub class: Class,
    /// Why, when not inspectable.
    pub reasons: Vec<Reason>,
    /// How sure the app attribution is.
    pub confidence: Confidence,
    /// Human-readable facts behind the verdict, for the connection event.
    pub evidence: Vec<String>,
}

/// [`Catalog::classify`] with the shipped catalog.
pub fn classify(id: &Identification, sni: Option<&str>, port: u16) -> Classification {
    Catalog::builtin().classify(id, sni, port)
}

/// Normalised entropy (share of the maximum the sample length allows) past
/// which unknown bytes count as encrypted.
const RANDOM_SHARE: f64 = 0.85;

impl Catalog {
    /// Classifies a flow from its identification, the server name known to
    /// the proxy (CONNECT host or SNI; falls back to the one in `id`), and
    /// the destination port.
    pub fn classify(&self, id: &Identification, sni: Option<&str>, port: u16) -> Classification {
        let name = sni.or_else(|| id.server_name());
        let mut evidence = vec![format!(
            "protocol {} ({} confidence)",
            id.protocol,
            id.confidence.as_str()
        )];
        if let Some(e) = &id.error {
            evidence.push(format!("malformed handshake: {e}"));
        }
        let proven =
            |app: &str, class, reasons: &[Reason], why: String, mut evidence: Vec<String>| {
                evidence.push(why);
                Classification {
                    app: Some(app.to_owned()),
                    class,
                    reasons: reasons.to_vec(),
                    confidence: Confidence::High,
                    evidence,
                }
            };
        match &id.details {
            Details::Mtproto(t) => {
                return proven(
                    "telegram",
                    Class::Opaque,
                    &[Reason::NonTlsEncryption],
                    format!("MTProto transport {t:?}"),
                    evidence,
                )
            }
            Details::WhatsappNoise(w) => {
                return proven(
                    "whatsapp",
                    Class::Opaque,
                    &[Reason::E2ee],
                    format!("WhatsApp Noise header WA {}.{}", w.magic, w.dict_version),
                    evidence,
                )
            }
            Details::Mmtls(m) => {
                return proven(
                    "wechat",
                    Class::Opaque,
                    &[Reason::NonTlsEncryption],
                    format!("MMTLS ClientHello, record version {:#06x}", m.version),
                    evidence,
                )
            }
            Details::Dns(d) => return self.dns(d, evidence),
            Details::DiscordVoice(d) => {
                let mut c = self.call_of(self.app("discord"), Confidence::High, evidence);
                c.evidence.push(format!(
                    "Discord voice IP discovery {}, SSRC {}",
                    if d.request { "request" } else { "response" },
                    d.ssrc
                ));
                return c;
            }
            _ => {}
        }
        if matches!(id.protocol, Protocol::Stun | Protocol::Rtp | Protocol::Rtcp) {
            return self.call(id, evidence);
        }
        if id.protocol == Protocol::Threema {
            let mut c = self.of_app(self.app("threema"), Confidence::Low, evidence);
            c.evidence
                .push("48-byte random opening, then silence".into());
            if port == crate::identify::threema::PORT {
                c.confidence = Confidence::Medium;
                c.evidence.push("Threema chat port 5222".into());
            }
            return c;
        }

        // Catalog evidence: endpoints and hosts.
        let (app, confidence) = match &id.details {
            Details::Http(r) => {
                let app = self.lookup_http(name, r.path(), r.websocket);
                if app.is_some() {
                    evidence.push(format!(
                        "{} {}{}",
                        r.method,
                        r.target,
                        if r.websocket { " (WebSocket)" } else { "" }
                    ));
                }
                (app, Confidence::Medium)
            }
            _ => (
                name.and_then(|n| self.lookup_host(n)),
                if name.is_some_and(|n| self.exact.contains_key(n)) {
                    Confidence::High
                } else {
                    Confidence::Medium
                },
            ),
        };
        if let (Some(a), Some(n)) = (app, name) {
            evidence.push(format!("host {n} is {} in the catalog", a.id));
        }
        if let Details::Gquic(g) = &id.details {
            evidence.push(format!("gQUIC {} client hello", g.version));
            if let Some(ua) = &g.uaid {
                evidence.push(format!("user agent {ua}"));
            }
        }
        if port == 853 || id.alpn().iter().any(|a| a == b"dot") {
            evidence.push("DNS over TLS (port 853 or ALPN dot)".into());
        }
        if name.is_some_and(|n| DOH_HOSTS.contains(&n.trim_end_matches('.'))) {
            evidence.push("DNS-over-HTTPS resolver".into());
        }
        if let Details::Http(r) = &id.details {
            if r.path().starts_with("/dns-query") {
                evidence.push("DNS over HTTPS request (/dns-query)".into());
            }
        }
        if let Some(h) = id.client_hello() {
            if h.ech {
                evidence.push("encrypted ClientHello: the real server name is hidden".into());
            }
            evidence.push(format!("JA4 {}", h.ja4));
        }
        if let Details::Mqtt(m) = &id.details {
            return self.mqtt(m, app, evidence);
        }
        if let Some(a) = app {
            return self.of_app(Some(a), confidence, evidence);
        }
        if id.protocol == Protocol::Xmpp {
            return self.of_app(self.app("xmpp"), Confidence::High, evidence);
        }
        if matches!(id.protocol, Protocol::Tls | Protocol::Quic | Protocol::Http) {
            return Classification {
                app: None,
                class: Class::Inspectable,
                reasons: Vec::new(),
                confidence: Confidence::Low,
                evidence,
            };
        }
        self.unknown(id, port, evidence)
    }

    fn of_app(
        &self,
        app: Option<&App>,
        confidence: Confidence,
        evidence: Vec<String>,
    ) -> Classification {
        match app {
            Some(a) => Classification {
                app: Some(a.id.clone()),
                class: a.class,
                reasons: a.reasons.clone(),
                confidence,
                evidence,
            },
            None => Classification {
                app: None,
                class: Class::Opaque,
                reasons: vec![Reason::NonTlsEncryption],
                confidence: Confidence::Low,
                evidence,
            },
        }
    }

    fn mqtt(
        &self,
        m: &MqttConnect,
        app: Option<&App>,
        mut evidence: Vec<String>,
    ) -> Classification {
        evidence.push(format!(
            "MQTT CONNECT {} level {}",
            m.protocol_name, m.level
        ));
        if m.protocol_name == "MQTToT" {
            // Facebook's MQTT dialect: Messenger unless the host says Instagram.
            let a = app.or_else(|| self.app("messenger"));
            return self.of_app(a, Confidence::High, evidence);
        }
        match app {
            Some(a) => self.of_app(Some(a), Confidence::Medium, evidence),
            None => Classification {
                app: None,
                class: Class::Inspectable,
                reasons: Vec::new(),
                confidence: Confidence::Low,
                evidence,
            },
        }
    }

    fn unknown(&self, id: &Identification, port: u16, mut evidence: Vec<String>) -> Classification {
        // A port names an app only when no other catalog app uses it, and
        // never 80/443: a wrong app is worse than none.
        let users: Vec<&App> = self.lookup_port(port).collect();
        let guess = match users.as_slice() {
            [only] if !matches!(port, 80 | 443) => Some(*only),
            _ => None,
        };
        if !users.is_empty() {
            let ids: Vec<&str> = users.iter().map(|a| a.id.as_str()).collect();
            evidence.push(format!("port {port} is used by {}", ids.join(", ")));
        }
        let entropy = id.entropy.unwrap_or(0.0);
        evidence.push(format!("entropy {entropy:.2} bits/byte"));
        // Below 32 bytes, text and ciphertext cannot be told apart this way.
        let random = id.bytes_seen >= 32 && entropy >= RANDOM_SHARE * max_entropy(id);
        Classification {
            app: guess.map(|a| a.id.clone()),
            class: if random {
                Class::Opaque
            } else {
                Class::MetadataOnly
            },
            reasons: if random {
                vec![Reason::NonTlsEncryption]
            } else {
                Vec::new()
            },
            confidence: Confidence::Low,
            evidence,
        }
    }
}

impl Catalog {
    /// A DNS query: the app of the queried name. The name is readable
    /// metadata; nothing else is.
    fn dns(
        &self,
        d: &crate::identify::dns::DnsMessage,
        mut evidence: Vec<String>,
    ) -> Classification {
        evidence.push(format!(
            "DNS {} for {} (type {})",
            if d.response { "response" } else { "query" },
            d.qname,
            d.qtype
        ));
        let app = self.lookup_host(&d.qname);
        if let Some(a) = app {
            evidence.push(format!("name {} is {} in the catalog", d.qname, a.id));
        }
        Classification {
            app: app.map(|a| a.id.clone()),
            class: Class::MetadataOnly,
            reasons: Vec::new(),
            confidence: match app {
                Some(_) if self.exact.contains_key(d.qname.as_str()) => Confidence::High,
                Some(_) => Confidence::Medium,
                None => Confidence::Low,
            },
            evidence,
        }
    }

    /// STUN, RTP, RTCP: call media. The app comes from what the STUN
    /// message says, else from the flow's context
    /// ([`Catalog::classify_flow`]).
    fn call(&self, id: &Identification, mut evidence: Vec<String>) -> Classification {
        let mut app = None;
        match &id.details {
            Details::Stun(m) => {
                evidence.push(m.describe());
                if let Some(sw) = &m.software {
                    evidence.push(format!("STUN SOFTWARE {sw:?}"));
                    app = self.lookup_stun_software(sw);
                }
                if let (None, Some(realm)) = (app, &m.realm) {
                    evidence.push(format!("TURN realm {realm}"));
                    app = self.lookup_host(realm);
                }
                if app.is_none() && m.has_microsoft_attributes() {
                    evidence.push("Microsoft MS-TURN/MS-ICE2 attributes".into());
                    app = self.app("teams");
                }
            }
            Details::Media(m) => evidence.push(m.describe()),
            _ => {}
        }
        self.call_of(app, Confidence::Medium, evidence)
    }

    fn call_of(
        &self,
        app: Option<&App>,
        confidence: Confidence,
        evidence: Vec<String>,
    ) -> Classification {
        Classification {
            app: app.map(|a| a.id.clone()),
            class: Class::Opaque,
            reasons: vec![match app.map(|a| a.calls) {
                Some(CallMedia::E2ee) => Reason::E2eeCall,
                _ => Reason::Media,
            }],
            confidence: if app.is_some() {
                confidence
            } else {
                Confidence::Low
            },
            evidence,
        }
    }

    /// [`Catalog::classify`], then what the context adds for flows that
    /// name no app themselves: the name their address was resolved from
    /// (medium), then published ranges narrowed by the client's recent
    /// signalling (low), then that signalling alone for calls (low).
    pub fn classify_flow(&self, id: &Identification, ctx: &FlowContext<'_>) -> Classification {
        let mut c = self.classify(id, ctx.sni, ctx.port);
        let is_call = matches!(
            id.protocol,
            Protocol::Stun | Protocol::Rtp | Protocol::Rtcp | Protocol::DiscordVoice
        );
        let names_itself = id.server_name().is_some() || ctx.sni.is_some();
        let weak = c.app.is_none() || (c.confidence == Confidence::Low && !is_call);
        // A flow that names its server is judged on that name alone: the
        // context must not put an app on www.google.com.
        if !weak || names_itself || id.protocol == Protocol::Dns {
            return c;
        }
        let mut found: Option<(&App, Confidence, String)> = None;
        if let Some(name) = ctx.resolved {
            if let Some(a) = self.lookup_host(name) {
                found = Some((
                    a,
                    Confidence::Medium,
                    format!("address was resolved from {name} ({})", a.id),
                ));
            } else {
                c.evidence.push(format!("address was resolved from {name}"));
            }
        }
        if found.is_none() {
            if let (Some(ranges), Some(addr)) = (ctx.ranges, ctx.server) {
                if let Some(hit) = ranges.lookup(addr).into_iter().next() {
                    let apps = &hit.source.apps;
                    let narrowed: Vec<&String> = if apps.len() == 1 {
                        apps.iter().collect()
                    } else {
                        apps.iter().filter(|a| ctx.signalled.contains(a)).collect()
                    };
                    let why = format!(
                        "address in {} ({}: {})",
                        hit.cidr,
                        apps.join("/"),
                        hit.source.name
                    );
                    match narrowed.as_slice() {
                        [one] => {
                            if let Some(a) = self.app(one) {
                                let why = if apps.len() > 1 {
                                    format!("{why}; the client used {one} just before")
                                } else {
                                    why
                                };
                                found = Some((a, Confidence::Low, why));
                            }
                        }
                        _ => c.evidence.push(why),
                    }
                }
            }
        }
        if found.is_none() {
            // Signalling to the same host names the flow; signalling to
            // other hosts is only evidence (a Zoom call placed right after a
            // WhatsApp message is still Zoom).
            if let [one] = ctx.signalled_same_server {
                if let Some(a) = self.app(one) {
                    found = Some((
                        a,
                        Confidence::Low,
                        format!("the client used {one} with this server just before"),
                    ));
                }
            } else if !ctx.signalled.is_empty() {
                c.evidence.push(format!(
                    "the client used {} shortly before (other servers)",
                    ctx.signalled.join(", ")
                ));
            }
        }
        let Some((app, confidence, why)) = found else {
            return c;
        };
        let mut evidence = std::mem::take(&mut c.evidence);
        evidence.push(why);
        if is_call {
            return self.call_of(Some(app), confidence, evidence);
        }
        // A TLS/QUIC flow without a name keeps its class if inspectable
        // interception is possible; opaque bytes take the app's class.
        let mut out = self.of_app(Some(app), confidence, evidence);
        if matches!(id.protocol, Protocol::Unknown | Protocol::Threema)
            && c.class == Class::MetadataOnly
        {
            out.class = Class::MetadataOnly;
            out.reasons = Vec::new();
        }
        out
    }
}

/// The entropy a sample of this many bytes can reach at most: log2(n),
/// capped at 8 bits.
fn max_entropy(id: &Identification) -> f64 {
    (id.bytes_seen.clamp(1, 256) as f64).log2()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identify::{identify, identify_final, mtproto, Transport};

    #[test]
    fn protocol_evidence_decides_opaque_apps() {
        // An unencrypted first message: auth_key_id 0, message id, length.
        let mut req_pq = vec![0u8; 8];
        req_pq.extend(0x5f00_0000_0000_0004u64.to_le_bytes());
        req_pq.extend(20u32.to_le_bytes());
        req_pq.extend([7u8; 20]);
        let header =
            mtproto::obfuscated2_stream([9; 64], mtproto::ObfuscatedInner::Abridged, 2, &req_pq);
        let c = classify(&identify(&header, Transport::Tcp, 443), None, 443);
        assert_eq!(c.app.as_deref(), Some("telegram"));
        assert_eq!((c.class, c.confidence), (Class::Opaque, Confidence::High));
        assert_eq!(c.reasons, vec![Reason::NonTlsEncryption]);

        let wa = crate::identify::whatsapp::sample(false);
        let c = classify(&identify(&wa, Transport::Tcp, 5222), None, 5222);
        assert_eq!(
            (c.app.as_deref(), c.reasons.as_slice()),
            (Some("whatsapp"), &[Reason::E2ee][..])
        );
    }

    #[test]
    fn http_endpoints_and_hosts_pick_the_app() {
        let req = b"GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: m.corp.example\r\n\r\n";
        let c = classify(&identify(req, Transport::Tcp, 80), None, 80);
        assert_eq!(c.app.as_deref(), Some("matrix"));
        assert_eq!(c.class, Class::Inspectable);
        assert!(c
            .evidence
            .iter()
            .any(|e| e.contains("/_matrix/client/v3/sync")));

        let id = identify(
            b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n",
            Transport::Tcp,
            80,
        );
        let c = classify(&id, Some("signal.org"), 443);
        assert_eq!(c.app.as_deref(), Some("signal"));
        assert_eq!(c.reasons, vec![Reason::E2ee, Reason::Pinned]);
    }

    #[test]
    fn facebook_mqtt_is_messenger_and_xmpp_defaults_to_xmpp() {
        let mut body = b"\x00\x06MQTToT\x03\xc2\x00\x3c".to_vec();
        body.extend([0x18, 0x10]);
        let mut pkt = vec![0x10, body.len() as u8];
        pkt.extend(body);
        let c = classify(&identify(&pkt, Transport::Tcp, 443), None, 443);
        assert_eq!(c.app.as_deref(), Some("messenger"));

        let x = b"<stream:stream to='jabber.example' xmlns='jabber:client'>";
        let c = classify(&identify(x, Transport::Tcp, 5222), None, 5222);
        assert_eq!(
            (c.app.as_deref(), c.class),
            (Some("xmpp"), Class::Inspectable)
        );
    }

    #[test]
    fn unknown_random_bytes_are_opaque_and_text_is_metadata_only() {
        let random: Vec<u8> = (0..200u32).map(|i| (i * 97 + 13) as u8).collect();
        let c = classify(&identify(&random, Transport::Tcp, 4244), None, 4244);
        assert_eq!((c.app.as_deref(), c.class), (Some("viber"), Class::Opaque));
        assert_eq!(c.confidence, Confidence::Low);

        let c = classify(
            &identify_final(b"HELO there\r\n", Transport::Tcp, 25),
            None,
            25,
        );
        assert_eq!((c.app, c.class), (None, Class::MetadataOnly));
    }

    #[test]
    fn classification_serialises_with_design_names() {
        let c = Classification {
            app: Some("signal".into()),
            class: Class::MetadataOnly,
            reasons: vec![Reason::NonTlsEncryption],
            confidence: Confidence::Medium,
            evidence: vec![],
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"app":"signal","class":"metadata-only","reasons":["non-tls-encryption"],"confidence":"medium","evidence":[]}"#
        );
    }

    #[test]
    fn context_names_silent_flows_with_lower_confidence() {
        use crate::identify::{stun, Transport};
        let cat = Catalog::builtin();
        let ranges = Ranges::builtin();
        let random: Vec<u8> = (0..200u32).map(|i| (i * 97 + 13) as u8).collect();
        let unknown = identify(&random, Transport::Tcp, 443);
        let ctx = |server: &str, signalled: &'static [String]| FlowContext {
            port: 443,
            server: Some(server.parse().unwrap()),
            ranges: Some(ranges),
            signalled,
            ..FlowContext::default()
        };
        // Telegram's own range: telegram, low.
        let c = cat.classify_flow(&unknown, &ctx("149.154.167.51", &[]));
        assert_eq!(
            (c.app.as_deref(), c.confidence),
            (Some("telegram"), Confidence::Low)
        );
        assert!(c.evidence.iter().any(|e| e.contains("149.154.160.0/20")));
        // Meta's range names no app by itself...
        let c = cat.classify_flow(&unknown, &ctx("157.240.1.53", &[]));
        assert_eq!(c.app, None);
        assert!(c
            .evidence
            .iter()
            .any(|e| e.contains("whatsapp/messenger/instagram")));
        // ...but the client's WhatsApp signalling picks it out.
        static WA: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let wa = WA.get_or_init(|| vec!["whatsapp".to_owned()]);
        let binding = stun::build(0x0001, [1; 12], &[], true);
        let call = identify(&binding, Transport::Udp, 3478);
        let c = cat.classify_flow(&call, &ctx("157.240.1.53", wa));
        assert_eq!(c.app.as_deref(), Some("whatsapp"));
        assert_eq!(c.reasons, vec![Reason::E2eeCall]);
        // A resolved name beats a range, at medium confidence.
        let c = cat.classify_flow(
            &call,
            &FlowContext {
                resolved: Some("zoom.us"),
                ..ctx("149.154.167.51", &[])
            },
        );
        assert_eq!(
            (c.app.as_deref(), c.confidence),
            (Some("zoom"), Confidence::Medium)
        );
        // A flow that names its server is judged on the name alone.
        let hello = identify(
            b"GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n",
            Transport::Tcp,
            80,
        );
        let c = cat.classify_flow(&hello, &ctx("149.154.167.51", wa));
        assert_eq!(c.app, None);
        // Microsoft's STUN attributes name Teams.
        let ms = stun::build(0x0003, [2; 12], &[(0x8008, &[0, 0, 0, 6])], false);
        let c = classify(&identify(&ms, Transport::Udp, 3478), None, 3478);
        assert_eq!(
            (c.app.as_deref(), c.reasons.as_slice()),
            (Some("teams"), &[Reason::Media][..])
        );
    }

    #[test]
    fn threema_shape_on_its_port_is_a_medium_guess() {
        let hello: Vec<u8> = (0..48u32).map(|i| (i * 97 + 13) as u8).collect();
        let c = classify(&identify(&hello, Transport::Tcp, 5222), None, 5222);
        assert_eq!(c.app.as_deref(), Some("threema"));
        assert_eq!((c.class, c.confidence), (Class::Opaque, Confidence::Medium));
    }
}
