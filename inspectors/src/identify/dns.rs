//! DNS messages (RFC 1035) over UDP and TCP: the question a client asks
//! names the app it is about to use; a response's address records say
//! which addresses that name stands for (see [`super::resolved`]).
//!
//! Parsing is strict, so that random bytes do not pass for DNS: one
//! question, sane counts, labels of 1–63 bytes, compression pointers that
//! only point backwards, and the records ending where the message does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::reader::Reader;
use super::sniff::Sniff;

const HEADER: usize = 12;
/// Record types worth keeping from answers.
pub const TYPE_A: u16 = 1;
/// CNAME.
pub const TYPE_CNAME: u16 = 5;
/// AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Answers kept per message.
const MAX_ANSWERS: usize = 32;

/// One DNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsMessage {
    /// Transaction id.
    pub id: u16,
    /// A response (QR set).
    pub response: bool,
    /// Response code (0 = no error, 3 = no such name).
    pub rcode: u8,
    /// The queried name, lowercase, without the trailing dot.
    pub qname: String,
    /// The queried type (1 A, 28 AAAA, 65 HTTPS, ...).
    pub qtype: u16,
    /// Address and alias records of a response (at most 32).
    pub answers: Vec<DnsAnswer>,
}

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsAnswer {
    /// The owner name, lowercase.
    pub name: String,
    /// Time to live, seconds.
    pub ttl: u32,
    /// What it says.
    pub data: AnswerData,
}

/// The data of an answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnswerData {
    /// An A or AAAA record.
    Address(IpAddr),
    /// A CNAME's target.
    Alias(String),
}

/// Recognises a DNS message that is a whole UDP datagram.
pub fn detect_udp(datagram: &[u8]) -> Sniff<DnsMessage> {
    if datagram.len() < HEADER {
        return Sniff::NeedMore;
    }
    match parse(datagram) {
        Some(m) => Sniff::Yes(m),
        None => Sniff::No,
    }
}

/// Recognises a DNS message at the start of a TCP stream (two-byte length
/// prefix, RFC 1035 §4.2.2).
pub fn detect_tcp(buf: &[u8]) -> Sniff<DnsMessage> {
    let Some(len) = buf.get(..2) else {
        // A query is short: its length's high byte is small.
        return if buf.first().is_some_and(|b| *b > 1) {
            Sniff::No
        } else {
            Sniff::NeedMore
        };
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if !(HEADER + 5..=512).contains(&len) {
        return Sniff::No;
    }
    // The header's counts already tell a query from other bytes.
    if let Some(head) = buf.get(2..2 + HEADER.min(buf.len() - 2)) {
        if head.len() >= 6 && !plausible_header(head) {
            return Sniff::No;
        }
    }
    let Some(message) = buf.get(2..2 + len) else {
        return Sniff::NeedMore;
    };
    match parse(message) {
        Some(m) => Sniff::Yes(m),
        None => Sniff::No,
    }
}

/// The flags and question count of a message a client sends: a standard
/// query (or notify/update), one question.
fn plausible_header(h: &[u8]) -> bool {
    let opcode = (h[2] >> 3) & 0x0f;
    let qdcount = u16::from_be_bytes([h[4], h[5]]);
    matches!(opcode, 0 | 4 | 5) && qdcount == 1
}

/// Parses one whole DNS message; `None` when it is not one.
pub fn parse(msg: &[u8]) -> Option<DnsMessage> {
    if msg.len() < HEADER || !plausible_header(msg) {
        return None;
    }
    let response = msg[2] & 0x80 != 0;
    let z = msg[3] & 0x40;
    let count = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    let (an, ns, ar) = (count(6), count(8), count(10));
    if z != 0 || (!response && (an != 0 || ns != 0 || ar > 2)) || an > 256 || ns > 64 || ar > 64 {
        return None;
    }
    let mut r = Reader::new(msg);
    r.bytes(HEADER)?;
    let qname = name(msg, &mut r)?;
    let qtype = r.u16()?;
    let qclass = r.u16()?;
    // IN, CH, HS, ANY; mDNS sets the top bit (unicast-response).
    if !matches!(qclass & 0x7fff, 1 | 3 | 4 | 255) || qtype == 0 {
        return None;
    }
    let mut answers = Vec::new();
    for i in 0..usize::from(an) + usize::from(ns) + usize::from(ar) {
        let owner = name(msg, &mut r)?;
        let rtype = r.u16()?;
        let _class = r.u16()?;
        let ttl = r.u32()?;
        let rdata = r.vec16()?;
        if i >= usize::from(an) || answers.len() >= MAX_ANSWERS {
            continue;
        }
        let data = match (rtype, rdata.len()) {
            (TYPE_A, 4) => {
                AnswerData::Address(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(rdata).ok()?)))
            }
            (TYPE_AAAA, 16) => AnswerData::Address(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(rdata).ok()?,
            ))),
            (TYPE_CNAME, _) => {
                // The target may point back into the message.
                let start = r.position() - rdata.len();
                let mut rr = Reader::new(msg);
                rr.bytes(start)?;
                AnswerData::Alias(name(msg, &mut rr)?)
            }
            (TYPE_A | TYPE_AAAA, _) => return None,
            _ => continue,
        };
        answers.push(DnsAnswer {
            name: owner,
            ttl,
            data,
        });
    }
    if !r.is_empty() {
        return None;
    }
    Some(DnsMessage {
        id: count(0),
        response,
        rcode: msg[3] & 0x0f,
        qname,
        qtype,
        answers,
    })
}

/// Reads a (possibly compressed) name at the reader's position.
fn name(msg: &[u8], r: &mut Reader<'_>) -> Option<String> {
    let mut out = String::new();
    let mut pos = r.position();
    let mut jumped = false;
    let mut hops = 0;
    loop {
        let len = *msg.get(pos)?;
        match len >> 6 {
            0 if len == 0 => {
                pos += 1;
                break;
            }
            0 => {
                let label = msg.get(pos + 1..pos + 1 + usize::from(len))?;
                if !label
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*'))
                {
                    return None;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
                if out.len() > 253 {
                    return None;
                }
                pos += 1 + usize::from(len);
            }
            3 => {
                let target = usize::from(u16::from_be_bytes([len, *msg.get(pos + 1)?]) & 0x3fff);
                // Pointers go backwards, so a loop cannot form.
                if target >= pos || hops > 16 {
                    return None;
                }
                if !jumped {
                    r.bytes(pos + 2 - r.position())?;
                    jumped = true;
                }
                hops += 1;
                pos = target;
            }
            _ => return None,
        }
    }
    if !jumped {
        r.bytes(pos - r.position())?;
    }
    Some(out)
}

/// Builds a query (for tests and fixture generators).
pub fn build_query(id: u16, qname: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in qname.split('.') {
        m.push(label.len() as u8);
        m.extend(label.as_bytes());
    }
    m.push(0);
    m.extend(qtype.to_be_bytes());
    m.extend(1u16.to_be_bytes());
    m
}

/// Builds the response to [`build_query`] with address answers, each
/// pointing back at the question's name.
pub fn build_response(id: u16, qname: &str, qtype: u16, addrs: &[IpAddr], ttl: u32) -> Vec<u8> {
    let mut m = build_query(id, qname, qtype);
    m[2] = 0x81;
    m[3] = 0x80;
    m[6..8].copy_from_slice(&(addrs.len() as u16).to_be_bytes());
    for a in addrs {
        m.extend([0xc0, 12]);
        let (t, data) = match a {
            IpAddr::V4(v) => (TYPE_A, v.octets().to_vec()),
            IpAddr::V6(v) => (TYPE_AAAA, v.octets().to_vec()),
        };
        m.extend(t.to_be_bytes());
        m.extend(1u16.to_be_bytes());
        m.extend(ttl.to_be_bytes());
        m.extend((data.len() as u16).to_be_bytes());
        m.extend(data);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_response_round_trip() {
        let q = build_query(0x1234, "g.whatsapp.net", TYPE_A);
        let Sniff::Yes(m) = detect_udp(&q) else {
            panic!()
        };
        assert_eq!(
            (m.qname.as_str(), m.qtype, m.response),
            ("g.whatsapp.net", 1, false)
        );
        let addr: IpAddr = "157.240.1.53".parse().unwrap();
        let r = build_response(0x1234, "G.WhatsApp.net", TYPE_A, &[addr], 60);
        let m = parse(&r).unwrap();
        assert!(m.response);
        assert_eq!(m.qname, "g.whatsapp.net");
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].data, AnswerData::Address(addr));
        assert_eq!(m.answers[0].ttl, 60);
    }

    #[test]
    fn tcp_prefixes_need_more() {
        let q = build_query(7, "chat.signal.org", TYPE_AAAA);
        let mut tcp = (q.len() as u16).to_be_bytes().to_vec();
        tcp.extend(&q);
        assert!(matches!(detect_tcp(&tcp), Sniff::Yes(_)));
        for cut in 0..tcp.len() {
            assert_eq!(detect_tcp(&tcp[..cut]), Sniff::NeedMore, "cut {cut}");
        }
    }

    #[test]
    fn pointer_loops_and_junk_are_refused() {
        let mut q = build_query(1, "a.b", TYPE_A);
        q.push(0);
        assert!(parse(&q).is_none(), "trailing byte");
        let mut looped = build_query(1, "a", TYPE_A);
        looped.truncate(HEADER);
        looped.extend([0xc0, 12, 0, 1, 0, 1]);
        assert!(parse(&looped).is_none());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_none());
        assert!(parse(&[0u8; 40]).is_none());
    }
}
