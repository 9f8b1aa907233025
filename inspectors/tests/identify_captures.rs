//! `identify` on committed captures of real clients (see
//! `tests/fixtures/captures/README.md`): the right app for every flow a
//! careful human would label, and no wrong app anywhere.

use gatehouse_inspectors::capture::{self, Flow, Limits};
use gatehouse_inspectors::identify::catalog::{Catalog, Class, Classification, Reason};
use gatehouse_inspectors::identify::ranges::Ranges;
use gatehouse_inspectors::identify::{Confidence, Protocol};

const CALLS: &[u8] = include_bytes!("fixtures/captures/calls_dns_quic.pcap");

fn classified(bytes: &[u8]) -> Vec<(Flow, Classification)> {
    let cap = capture::read(bytes, Limits::default()).unwrap();
    assert!(cap.damage.is_none());
    let cls = capture::classify(&cap.flows, Catalog::builtin(), Ranges::builtin());
    let out: Vec<_> = cap.flows.into_iter().zip(cls).collect();
    for (f, c) in &out {
        eprintln!(
            "{} -> {} {:?} {} sni={:?} app={:?} {:?} {:?} {:?}",
            f.client,
            f.server,
            f.transport,
            f.identification.protocol,
            f.identification.server_name(),
            c.app,
            c.class,
            c.confidence,
            c.evidence
        );
    }
    out
}

/// The one flow to `server` (ip:port).
fn flow<'a>(all: &'a [(Flow, Classification)], server: &str) -> &'a (Flow, Classification) {
    let hits: Vec<_> = all
        .iter()
        .filter(|(f, _)| f.server.to_string() == server)
        .collect();
    assert_eq!(hits.len(), 1, "flows to {server}");
    hits[0]
}

#[test]
fn calls_dns_and_quic_get_the_right_app_per_flow() {
    let all = classified(CALLS);
    let dns: Vec<_> = all
        .iter()
        .filter(|(f, _)| f.identification.protocol == Protocol::Dns)
        .collect();
    let dns_apps: Vec<(&str, Option<&str>)> = dns
        .iter()
        .map(|(f, c)| {
            let q = match &f.identification.details {
                gatehouse_inspectors::identify::Details::Dns(m) => m.qname.as_str(),
                _ => "",
            };
            (q, c.app.as_deref())
        })
        .collect();
    assert_eq!(
        dns_apps,
        vec![
            ("g.whatsapp.net", Some("whatsapp")),
            ("zoom.us", Some("zoom")),
            ("chat.signal.org", Some("signal")),
        ]
    );
    for (f, c) in &dns {
        assert_eq!(c.class, Class::MetadataOnly, "{}", f.server);
        assert_eq!(f.server.port(), 53);
        // Each answer was read from the server's side of the flow (UDP and
        // TCP alike) for the resolved-name map.
        assert_eq!(f.dns_responses.len(), 1, "{}", f.client);
        assert_eq!(f.dns_responses[0].1.answers.len(), 1);
    }

    let (f, c) = flow(&all, "127.0.10.4:443");
    assert_eq!(f.identification.protocol, Protocol::Tls);
    assert_eq!(c.app.as_deref(), Some("whatsapp"));

    // aioice's ICE checks to the address g.whatsapp.net resolved to.
    let stun: Vec<_> = all
        .iter()
        .filter(|(f, _)| f.identification.protocol == Protocol::Stun)
        .collect();
    assert_eq!(stun.len(), 1);
    let (f, c) = stun[0];
    assert_eq!(f.server.ip().to_string(), "127.0.10.2");
    assert_eq!(c.app.as_deref(), Some("whatsapp"));
    assert_eq!(
        (c.class, c.reasons.as_slice()),
        (Class::Opaque, &[Reason::E2eeCall][..])
    );
    assert_eq!(c.confidence, Confidence::Medium);
    assert!(c
        .evidence
        .iter()
        .any(|e| e.contains("resolved from g.whatsapp.net")));

    // ffmpeg's RTP and RTCP to the address zoom.us resolved to.
    let (f, c) = flow(&all, "127.0.10.3:5004");
    assert_eq!(f.identification.protocol, Protocol::Rtp);
    assert_eq!(c.app.as_deref(), Some("zoom"));
    assert_eq!(c.reasons, vec![Reason::Media]);
    let (f, c) = flow(&all, "127.0.10.3:5005");
    assert_eq!(f.identification.protocol, Protocol::Rtcp);
    assert_eq!(c.app.as_deref(), Some("zoom"));

    // gQUIC: every QUIC-looking flow reports its SNI.
    let mut gquic: Vec<(Option<&str>, Option<&str>)> = all
        .iter()
        .filter(|(f, _)| f.server.to_string() == "127.0.10.6:443")
        .map(|(f, c)| {
            assert_eq!(f.identification.protocol, Protocol::Quic);
            assert_eq!(f.identification.error, None);
            (f.identification.server_name(), c.app.as_deref())
        })
        .collect();
    gquic.sort();
    assert_eq!(
        gquic,
        vec![
            (Some("chat.google.com"), Some("google-chat")),
            (Some("example.com"), None),
            (Some("mail.google.com"), None),
            (Some("www.google.com"), None),
        ]
    );

    let (f, c) = flow(&all, "127.0.10.7:4433");
    assert_eq!(f.identification.protocol, Protocol::Quic);
    assert_eq!(f.identification.server_name(), Some("discord.com"));
    assert_eq!(c.app.as_deref(), Some("discord"));

    // @discordjs/voice's IP discovery: Discord's own call protocol.
    let (f, c) = flow(&all, "127.0.10.9:50001");
    assert_eq!(f.identification.protocol, Protocol::DiscordVoice);
    assert_eq!(c.app.as_deref(), Some("discord"));
    assert_eq!((c.class, c.confidence), (Class::Opaque, Confidence::High));
    assert_eq!(c.reasons, vec![Reason::E2eeCall]);

    // Nothing else in the capture carries an app it should not.
    let labelled: Vec<(String, Option<&str>)> = all
        .iter()
        .map(|(f, c)| (f.server.ip().to_string(), c.app.as_deref()))
        .collect();
    for (ip, app) in labelled {
        let allowed: &[Option<&str>] = match ip.as_str() {
            "127.0.10.53" => &[Some("whatsapp"), Some("zoom"), Some("signal")],
            "127.0.10.2" | "127.0.10.4" => &[Some("whatsapp")],
            "127.0.10.3" => &[Some("zoom")],
            "127.0.10.6" => &[Some("google-chat"), None],
            "127.0.10.7" | "127.0.10.9" => &[Some("discord")],
            other => panic!("unexpected server {other}"),
        };
        assert!(allowed.contains(&app), "{ip}: {app:?}");
    }
}

const PRECISION: &[u8] = include_bytes!("fixtures/captures/precision.pcap");

#[test]
fn flows_that_name_no_app_get_none_and_mtproto_claims_only_telegram() {
    let all = classified(PRECISION);
    for (f, c) in &all {
        let server = f.server.to_string();
        let (protocol, app) = (f.identification.protocol, c.app.as_deref());
        match server.as_str() {
            // Telethon's obfuscated2 transport.
            "127.0.11.40:443" => assert_eq!((protocol, app), (Protocol::Mtproto, Some("telegram"))),
            // slixmpp's stream header.
            "127.0.11.50:5222" => assert_eq!((protocol, app), (Protocol::Xmpp, Some("xmpp"))),
            // Seen mid-stream on 5222: an XMPP stanza and Noise-like
            // ciphertext frames. Port 5222 is shared by four apps; no app.
            "127.0.11.51:5222" | "127.0.11.52:5222" => {
                assert_eq!(protocol, Protocol::Unknown, "{server}");
                assert_eq!(app, None, "{server}: {:?}", c.evidence);
                assert!(c
                    .evidence
                    .iter()
                    .any(|e| e.contains("port 5222 is used by")));
            }
            // coturn's clients and pystun3 against coturn: STUN of no app
            // (SOFTWARE and REALM name none in the catalog).
            "127.0.11.30:3478" => {
                assert_eq!(protocol, Protocol::Stun, "{server}");
                assert_eq!(app, None, "{server}: {:?}", c.evidence);
                assert_eq!(c.reasons, vec![Reason::Media]);
            }
            // Random datagrams to the STUN port.
            "127.0.11.60:3478" => assert_eq!((protocol, app), (Protocol::Unknown, None)),
            // The TURN relay's own packet to the peer.
            "127.0.11.31:3480" => assert_eq!(app, None),
            other => panic!("unexpected flow to {other}"),
        }
    }
    let classic = all.iter().filter(|(f, _)| {
        matches!(&f.identification.details,
            gatehouse_inspectors::identify::Details::Stun(m) if m.classic)
    });
    assert_eq!(classic.count(), 1, "pystun3's RFC 3489 request");
}

const GQUIC_MORE: &[u8] = include_bytes!("fixtures/captures/gquic_more.pcap");

#[test]
fn gquic_q047_to_q049_and_chlos_over_several_packets_report_their_sni() {
    let all = classified(GQUIC_MORE);
    let mut seen: Vec<(String, Option<&str>, bool)> = all
        .iter()
        .filter(|(f, _)| f.server.to_string() == "127.0.12.2:443")
        .map(|(f, _)| {
            let id = &f.identification;
            assert_eq!(id.protocol, Protocol::Quic);
            assert_eq!(id.error, None, "{:?}", id.server_name());
            let gatehouse_inspectors::identify::Details::Gquic(h) = &id.details else {
                panic!("not gQUIC: {:?}", id.details);
            };
            (h.version.to_string(), id.server_name(), h.uaid.is_some())
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("Q046".to_string(), Some("mail.google.com"), true),
            ("Q047".to_string(), Some("www.youtube.com"), true),
            ("Q048".to_string(), Some("chat.google.com"), true),
            ("Q049".to_string(), Some("meet.google.com"), true),
            ("Q049".to_string(), Some("www.google.com"), true),
            ("Q050".to_string(), Some("hangouts.google.com"), true),
        ]
    );
}
