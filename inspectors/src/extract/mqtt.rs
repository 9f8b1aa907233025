//! MQTT PUBLISH packets: MQTT 3.1 and 3.1.1 (§2.2, §3.3) and MQTT 5
//! (§3.3.2.3: properties after the packet identifier, topic aliases), as
//! brokers receive them over TLS, WebSocket binary frames or plain TCP, and
//! as Messenger and Instagram web send them inside WebSocket frames.
//!
//! `identify::mqtt` recognises the CONNECT that opens such a session;
//! [`MqttStream`] reads the PUBLISH packets that follow, and
//! [`MqttSession`] reads a whole session strictly (CONNECT first, every
//! packet well-formed, a size cap) for a gateway that must fail closed.

/// Buffered bytes beyond which a stream is considered garbage and reset.
const MAX_PACKET: usize = 4 << 20;

/// One PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttPublish {
    /// Topic name (Messenger: `/ls_req`, `/t_ms`, `/send_message2`, ...).
    pub topic: String,
    /// QoS 0–2.
    pub qos: u8,
    /// Packet identifier (QoS 1 and 2 only).
    pub packet_id: Option<u16>,
    /// Application payload.
    pub payload: Vec<u8>,
}

/// How the fixed header at the front of `buf` frames the next packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes for the fixed header or the packet.
    NeedMore {
        /// The whole packet's length, once the fixed header is complete.
        total: Option<usize>,
    },
    /// A complete packet of this many bytes (fixed header included).
    Packet(usize),
    /// The remaining length is not a valid variable byte integer.
    Invalid,
}

/// Frames the packet at the front of `buf` by its fixed header (§2.2.3)
/// without judging its body: a relay forwards whole packets only.
pub fn frame(buf: &[u8]) -> Frame {
    if buf.is_empty() {
        return Frame::NeedMore { total: None };
    }
    let mut remaining = 0usize;
    let mut header = 1usize;
    loop {
        let Some(&b) = buf.get(header) else {
            return Frame::NeedMore { total: None };
        };
        remaining |= usize::from(b & 0x7f) << (7 * (header - 1));
        header += 1;
        if b & 0x80 == 0 {
            break;
        }
        if header > 4 {
            return Frame::Invalid;
        }
    }
    let total = header + remaining;
    if buf.len() < total {
        Frame::NeedMore { total: Some(total) }
    } else {
        Frame::Packet(total)
    }
}

/// Result of reading one packet from the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
enum Packet {
    NeedMore,
    /// A packet of `len` bytes that is not a (valid) PUBLISH.
    Skip(usize),
    Publish(usize, MqttPublish),
    Invalid,
}

fn read_packet(buf: &[u8]) -> Packet {
    let Some(&first) = buf.first() else {
        return Packet::NeedMore;
    };
    let mut remaining = 0usize;
    let mut header = 1usize;
    loop {
        let Some(&b) = buf.get(header) else {
            return Packet::NeedMore;
        };
        remaining |= usize::from(b & 0x7f) << (7 * (header - 1));
        header += 1;
        if b & 0x80 == 0 {
            break;
        }
        if header > 4 {
            return Packet::Invalid;
        }
    }
    let total = header + remaining;
    if total > MAX_PACKET {
        return Packet::Invalid;
    }
    if buf.len() < total {
        return Packet::NeedMore;
    }
    if first >> 4 != 3 {
        return Packet::Skip(total);
    }
    match parse_publish_body(first, &buf[header..total]) {
        Some(p) => Packet::Publish(total, p),
        None => Packet::Skip(total),
    }
}

fn parse_publish_body(first: u8, body: &[u8]) -> Option<MqttPublish> {
    parse_publish_v(first, body, false).map(|(p, _)| p)
}

/// A PUBLISH body; with `v5`, the properties after the packet identifier
/// are read too and the Topic Alias (0x23) returned when present.
fn parse_publish_v(first: u8, body: &[u8], v5: bool) -> Option<(MqttPublish, Option<u16>)> {
    let qos = (first >> 1) & 0b11;
    if qos == 3 {
        return None;
    }
    let tlen = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let topic = std::str::from_utf8(body.get(2..2 + tlen)?).ok()?.to_owned();
    let mut pos = 2 + tlen;
    let packet_id = if qos > 0 {
        let id = u16::from_be_bytes([*body.get(pos)?, *body.get(pos + 1)?]);
        pos += 2;
        Some(id)
    } else {
        None
    };
    let mut alias = None;
    if v5 {
        let (len, n) = var_int(body.get(pos..)?)?;
        pos += n;
        let props = body.get(pos..pos.checked_add(len)?)?;
        alias = topic_alias(props)?;
        pos += len;
    }
    Some((
        MqttPublish {
            topic,
            qos,
            packet_id,
            payload: body.get(pos..)?.to_vec(),
        },
        alias,
    ))
}

/// A variable byte integer (§1.5.5) and its length in bytes.
fn var_int(b: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for i in 0..4 {
        let byte = *b.get(i)?;
        v |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Walks MQTT 5 PUBLISH properties (§3.3.2.3); the Topic Alias if any.
/// `None` when a property is unknown or truncated: the packet is malformed.
fn topic_alias(mut props: &[u8]) -> Option<Option<u16>> {
    let mut alias = None;
    while let Some((&id, rest)) = props.split_first() {
        let len = match id {
            0x01 => 1, // payload format indicator
            0x02 => 4, // message expiry interval
            0x23 => 2, // topic alias
            0x08 | 0x09 => 2 + usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])), // response topic, correlation data
            0x03 => 2 + usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])), // content type
            0x26 => {
                // user property: two strings
                let a = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
                let b_at = 2 + a;
                let b = usize::from(u16::from_be_bytes([*rest.get(b_at)?, *rest.get(b_at + 1)?]));
                b_at + 2 + b
            }
            0x0b => var_int(rest)?.1, // subscription identifier
            _ => return None,
        };
        let value = rest.get(..len)?;
        if id == 0x23 {
            alias = Some(u16::from_be_bytes([value[0], value[1]]));
        }
        props = &rest[len..];
    }
    Some(alias)
}

/// Parses one complete PUBLISH packet (fixed header included).
pub fn parse_publish(packet: &[u8]) -> Option<MqttPublish> {
    match read_packet(packet) {
        Packet::Publish(len, p) if len == packet.len() => Some(p),
        _ => None,
    }
}

/// Reassembles packets of one direction from WebSocket frames (a packet may
/// span frames, a frame may hold several packets).
#[derive(Debug, Default)]
pub struct MqttStream {
    buf: Vec<u8>,
}

impl MqttStream {
    /// Adds bytes; returns the PUBLISH packets completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<MqttPublish> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            match read_packet(&self.buf[pos..]) {
                Packet::NeedMore => break,
                Packet::Skip(n) => pos += n,
                Packet::Publish(n, p) => {
                    pos += n;
                    out.push(p);
                }
                Packet::Invalid => {
                    pos = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..pos);
        out
    }
}

/// Why a session cannot be read (the gateway ends such a flow).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MqttError {
    /// The remaining length is not a valid variable byte integer.
    BadLength,
    /// A packet is larger than the session holds for inspection.
    TooLarge {
        /// The packet's length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The first client packet is not a CONNECT.
    NoConnect,
    /// A PUBLISH whose topic, properties or QoS do not parse, or that uses
    /// a topic alias never set.
    BadPublish,
}

impl std::fmt::Display for MqttError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadLength => f.write_str("malformed MQTT packet length"),
            Self::TooLarge { len, max } => {
                write!(
                    f,
                    "MQTT packet of {len} bytes over the {max}-byte inspection window"
                )
            }
            Self::NoConnect => f.write_str("MQTT session without CONNECT"),
            Self::BadPublish => f.write_str("malformed MQTT PUBLISH"),
        }
    }
}

impl std::error::Error for MqttError {}

/// One MQTT session read strictly, one direction per instance: every
/// packet framed, every PUBLISH parsed with the session's protocol level
/// (known from the CONNECT), topic aliases resolved, packets bounded by
/// `max` bytes. Any error is final: the caller ends the flow.
#[derive(Debug)]
pub struct MqttSession {
    buf: Vec<u8>,
    max: usize,
    /// Protocol level from CONNECT: 3 (3.1), 4 (3.1.1), 5.
    level: Option<u8>,
    /// Client identifier from CONNECT.
    client_id: Option<String>,
    /// Whether this instance reads the client's packets (CONNECT first).
    client: bool,
    aliases: std::collections::HashMap<u16, String>,
    failed: Option<MqttError>,
}

impl MqttSession {
    /// Reads the client's packets (`client`) or the server's; no packet
    /// over `max` bytes is held.
    pub fn new(client: bool, max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
            level: None,
            client_id: None,
            client,
            aliases: Default::default(),
            failed: None,
        }
    }

    /// Sets the protocol level (for the server side, from the client's CONNECT).
    pub fn set_level(&mut self, level: u8) {
        self.level = Some(level);
    }

    /// The protocol level, once known.
    pub fn level(&self) -> Option<u8> {
        self.level
    }

    /// The client identifier from CONNECT, when not empty.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref().filter(|s| !s.is_empty())
    }

    /// Bytes held for an incomplete packet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Adds bytes; returns the PUBLISH packets they complete, or the error
    /// that ends the session (and every later call returns it too).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<MqttPublish>, MqttError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(bytes);
        let r = self.drain();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
            self.buf = Vec::new();
        }
        r
    }

    fn drain(&mut self) -> Result<Vec<MqttPublish>, MqttError> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let len = match frame(&self.buf[pos..]) {
                Frame::Invalid => return Err(MqttError::BadLength),
                Frame::NeedMore { total: Some(t) } if t > self.max => {
                    return Err(MqttError::TooLarge {
                        len: t,
                        max: self.max,
                    })
                }
                Frame::NeedMore { .. } => break,
                Frame::Packet(t) if t > self.max => {
                    return Err(MqttError::TooLarge {
                        len: t,
                        max: self.max,
                    })
                }
                Frame::Packet(t) => t,
            };
            let packet = &self.buf[pos..pos + len];
            pos += len;
            let kind = packet[0] >> 4;
            if self.client && self.level.is_none() {
                match crate::identify::mqtt::detect(packet) {
                    crate::identify::Sniff::Yes(c) => {
                        self.level = Some(c.level);
                        self.client_id = c.client_id;
                        continue;
                    }
                    _ => return Err(MqttError::NoConnect),
                }
            }
            if kind != 3 {
                continue;
            }
            let header = packet.len() - frame_body_len(packet);
            let v5 = self.level == Some(5);
            let Some((mut p, alias)) = parse_publish_v(packet[0], &packet[header..], v5) else {
                return Err(MqttError::BadPublish);
            };
            if let Some(a) = alias {
                if p.topic.is_empty() {
                    p.topic = self.aliases.get(&a).cloned().ok_or(MqttError::BadPublish)?;
                } else {
                    self.aliases.insert(a, p.topic.clone());
                }
            } else if p.topic.is_empty() {
                return Err(MqttError::BadPublish);
            }
            out.push(p);
        }
        self.buf.drain(..pos);
        Ok(out)
    }
}

/// The remaining length of a complete packet (its body's length).
fn frame_body_len(packet: &[u8]) -> usize {
    let mut remaining = 0usize;
    for (i, &b) in packet.iter().skip(1).take(4).enumerate() {
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
    }
    remaining
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &str, qos: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = (topic.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(topic.as_bytes());
        if qos > 0 {
            body.extend_from_slice(&7u16.to_be_bytes());
        }
        body.extend_from_slice(payload);
        let mut p = vec![0x30 | (qos << 1)];
        let mut n = body.len();
        loop {
            let mut b = (n & 0x7f) as u8;
            n >>= 7;
            if n > 0 {
                b |= 0x80;
            }
            p.push(b);
            if n == 0 {
                break;
            }
        }
        p.extend(body);
        p
    }

    #[test]
    fn parses_publish_qos0_and_qos1() {
        let p = parse_publish(&publish("/ls_req", 0, b"{}")).unwrap();
        assert_eq!((p.topic.as_str(), p.qos, p.packet_id), ("/ls_req", 0, None));
        let big = vec![b'x'; 300];
        let p = parse_publish(&publish("/t_ms", 1, &big)).unwrap();
        assert_eq!((p.packet_id, p.payload.len()), (Some(7), 300));
        assert!(parse_publish(&[0xc0, 0x00]).is_none()); // PINGREQ
    }

    #[test]
    fn stream_on_every_split() {
        let mut bytes = vec![0xc0, 0x00];
        bytes.extend(publish("/a", 0, b"one"));
        bytes.extend(publish("/b", 1, &[b'y'; 200]));
        for cut in 0..=bytes.len() {
            let mut s = MqttStream::default();
            let mut got = s.push(&bytes[..cut]);
            got.extend(s.push(&bytes[cut..]));
            let topics: Vec<_> = got.iter().map(|p| p.topic.as_str()).collect();
            assert_eq!(topics, ["/a", "/b"], "cut {cut}");
        }
    }

    fn connect(level: u8, id: &str) -> Vec<u8> {
        let name: &[u8] = if level == 3 { b"MQIsdp" } else { b"MQTT" };
        let mut body = (name.len() as u16).to_be_bytes().to_vec();
        body.extend(name);
        body.extend([level, 0x02, 0x00, 0x3c]);
        if level == 5 {
            body.push(0);
        }
        body.extend((id.len() as u16).to_be_bytes());
        body.extend(id.as_bytes());
        let mut p = vec![0x10, body.len() as u8];
        p.extend(body);
        p
    }

    /// An MQTT 5 PUBLISH with `props` after the packet identifier.
    fn publish5(topic: &str, qos: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut body = (topic.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(topic.as_bytes());
        if qos > 0 {
            body.extend_from_slice(&9u16.to_be_bytes());
        }
        body.push(props.len() as u8);
        body.extend_from_slice(props);
        body.extend_from_slice(payload);
        let mut p = vec![0x30 | (qos << 1), body.len() as u8];
        p.extend(body);
        p
    }

    #[test]
    fn session_reads_every_level_on_every_split() {
        for level in [3u8, 4, 5] {
            let mut bytes = connect(level, "sensor-7");
            if level == 5 {
                // Content type + topic alias 1 on the first, alias only after.
                let props = [&[0x03, 0, 4][..], b"text", &[0x23, 0, 1]].concat();
                bytes.extend(publish5("plant/a", 1, &props, b"one"));
                bytes.extend(publish5("", 0, &[0x23, 0, 1], b"two"));
            } else {
                bytes.extend(publish("plant/a", 1, b"one"));
                bytes.extend(publish("plant/a", 0, b"two"));
            }
            bytes.extend([0xc0, 0x00]);
            for cut in 0..=bytes.len() {
                let mut s = MqttSession::new(true, 1024);
                let mut got = s.push(&bytes[..cut]).unwrap();
                got.extend(s.push(&bytes[cut..]).unwrap());
                let seen: Vec<_> = got
                    .iter()
                    .map(|p| (p.topic.as_str(), p.payload.as_slice()))
                    .collect();
                assert_eq!(
                    seen,
                    [("plant/a", &b"one"[..]), ("plant/a", &b"two"[..])],
                    "level {level} cut {cut}"
                );
                assert_eq!((s.level(), s.client_id()), (Some(level), Some("sensor-7")));
            }
        }
    }

    #[test]
    fn session_fails_closed() {
        // No CONNECT first.
        let mut s = MqttSession::new(true, 1024);
        assert_eq!(s.push(&publish("/a", 0, b"x")), Err(MqttError::NoConnect));
        assert!(s.push(&connect(4, "c")).is_err(), "errors are final");
        // Over the cap: refused as soon as the fixed header says so.
        let mut s = MqttSession::new(true, 64);
        s.push(&connect(4, "c")).unwrap();
        let big = publish("/a", 0, &[b'x'; 200]);
        assert!(matches!(s.push(&big[..4]), Err(MqttError::TooLarge { .. })));
        // A bad remaining length, a PUBLISH whose topic overruns it, an
        // unknown v5 property, an alias never set.
        let cases: [(u8, Vec<u8>, MqttError); 4] = [
            (
                4,
                vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
                MqttError::BadLength,
            ),
            (4, vec![0x30, 0x03, 0x00, 0x09, b'a'], MqttError::BadPublish),
            (
                5,
                publish5("/a", 0, &[0x7f, 0], b"x"),
                MqttError::BadPublish,
            ),
            (
                5,
                publish5("", 0, &[0x23, 0, 2], b"x"),
                MqttError::BadPublish,
            ),
        ];
        for (level, bytes, want) in cases {
            let mut s = MqttSession::new(true, 1024);
            s.push(&connect(level, "c")).unwrap();
            assert_eq!(s.push(&bytes), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn frame_says_need_more_on_every_prefix() {
        let p = publish("/topic", 1, &[b'y'; 300]);
        for cut in 0..p.len() {
            assert!(matches!(frame(&p[..cut]), Frame::NeedMore { .. }), "{cut}");
        }
        assert_eq!(frame(&p), Frame::Packet(p.len()));
    }

    proptest::proptest! {
        /// Arbitrary bytes after a CONNECT, split anywhere: never a panic,
        /// and the same answer whole or in two pieces.
        #[test]
        fn session_never_panics_and_splits_agree(
            level in proptest::sample::select(vec![3u8, 4, 5]),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            cut in 0usize..400,
        ) {
            let mut bytes = connect(level, "p");
            bytes.extend(tail);
            let cut = cut.min(bytes.len());
            let mut whole = MqttSession::new(true, 256);
            let a = whole.push(&bytes);
            let mut split = MqttSession::new(true, 256);
            let b = split.push(&bytes[..cut]).and_then(|mut first| {
                first.extend(split.push(&bytes[cut..])?);
                Ok(first)
            });
            proptest::prop_assert_eq!(a, b);
        }
    }
}
