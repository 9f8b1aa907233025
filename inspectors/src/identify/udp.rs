//! UDP datagrams that are not IETF QUIC Initials: gQUIC, STUN, DNS, RTP
//! and RTCP, in that order (each test is stricter than the next one's).

use super::{discord_voice, dns, gquic, rtp, stun, Details, Identification, Protocol, Sniff};

/// Judges one datagram.
pub(super) fn other(buf: &[u8], port: u16) -> Identification {
    if gquic::looks_like_gquic(buf) == Some(true) {
        return match gquic::parse(buf) {
            Ok(Some(h)) => Identification::new(Protocol::Quic, Details::Gquic(Box::new(h)), buf),
            Ok(None) => Identification::malformed(
                Protocol::Quic,
                "gQUIC CHLO continues in a later packet",
                buf.len(),
            ),
            Err(e) => Identification::malformed(Protocol::Quic, &e.to_string(), buf.len()),
        };
    }
    if let Sniff::Yes(m) = stun::detect(buf) {
        return Identification::new(Protocol::Stun, Details::Stun(m), buf);
    }
    // Strict parsing makes DNS safe on any port; mDNS and LLMNR too.
    if let Sniff::Yes(m) = dns::detect_udp(buf) {
        if !m.response || matches!(port, 53 | 5353 | 5355) {
            return Identification::new(Protocol::Dns, Details::Dns(m), buf);
        }
    }
    if let Some(d) = discord_voice::detect(buf) {
        return Identification::new(Protocol::DiscordVoice, Details::DiscordVoice(d), buf);
    }
    if let Some(v) = other_quic_version(buf) {
        return Identification::malformed(
            Protocol::Quic,
            &format!("long-header packet of QUIC version {v:#010x} we cannot open"),
            buf.len(),
        );
    }
    if let Some(m) = rtp::media_flow(&[buf]).filter(|m| m.rtcp.is_some()) {
        return Identification::new(Protocol::Rtcp, Details::Media(m), buf);
    }
    Identification::new(Protocol::Unknown, Details::None, buf)
}

/// Judges a flow on its first client datagrams: RTP needs three in
/// sequence on one SSRC, a gQUIC CHLO may span several; everything else
/// is the first datagram's verdict.
pub(super) fn flow(datagrams: &[&[u8]], port: u16) -> Identification {
    let Some(first) = datagrams.first() else {
        return Identification::new(Protocol::Unknown, Details::None, &[]);
    };
    // A CHLO too large for one packet continues in the next ones.
    if datagrams.len() > 1 && gquic::looks_like_gquic(first) == Some(true) {
        return match gquic::parse_flow(datagrams) {
            Ok(Some(h)) => Identification::new(Protocol::Quic, Details::Gquic(Box::new(h)), first),
            Ok(None) => Identification::malformed(
                Protocol::Quic,
                "gQUIC CHLO continues past the packets seen",
                first.len(),
            ),
            Err(e) => Identification::malformed(Protocol::Quic, &e.to_string(), first.len()),
        };
    }
    let id = super::identify_final(first, super::Transport::Udp, port);
    if id.protocol != Protocol::Unknown {
        return id;
    }
    // A keep-alive may overtake Discord's IP discovery on the wire.
    if let Some((d, b)) = datagrams
        .iter()
        .find_map(|b| discord_voice::detect(b).map(|d| (d, b)))
    {
        return Identification::new(Protocol::DiscordVoice, Details::DiscordVoice(d), b);
    }
    match rtp::media_flow(datagrams) {
        Some(m) if m.rtp.is_some() && m.agreeing >= 2 => Identification {
            entropy: None,
            ..Identification::new(Protocol::Rtp, Details::Media(m), first)
        },
        _ => id,
    }
}

/// A QUIC long header (form and fixed bits set, a version, a sane DCID
/// length) of a version we do not open, in a datagram padded as a client's
/// first flight must be (RFC 9000 §14.1: at least 1200 bytes). Two high
/// bits and a small byte are otherwise too common to mean QUIC (a DNS id
/// of 0xf900 has them).
fn other_quic_version(buf: &[u8]) -> Option<u32> {
    if buf.len() < 1200 {
        return None;
    }
    let first = *buf.first()?;
    let version = u32::from_be_bytes(buf.get(1..5)?.try_into().ok()?);
    let dcid_len = *buf.get(5)?;
    (first & 0xc0 == 0xc0 && version != 0 && dcid_len <= 20).then_some(version)
}
