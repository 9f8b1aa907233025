//! MQTT PUBLISH packets as Messenger and Instagram web send them inside
//! WebSocket binary frames (MQTT 3.1.1 framing, §2.2 and §3.3).
//!
//! `identify::mqtt` recognises the CONNECT that opens such a session; this
//! reads the PUBLISH packets that follow.

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
    Some(MqttPublish {
        topic,
        qos,
        packet_id,
        payload: body[pos..].to_vec(),
    })
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
}
