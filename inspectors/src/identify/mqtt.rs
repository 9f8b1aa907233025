//! MQTT CONNECT packets (MQTT 3.1 `MQIsdp`, 3.1.1 and 5 `MQTT`, and
//! Facebook's `MQTToT` used by Messenger and Instagram).

use super::reader::Reader;
use super::sniff::Sniff;

/// Remaining length past which we judge on the variable header alone.
const MAX_CONNECT: usize = 64 * 1024;

/// What a CONNECT packet says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MqttConnect {
    /// `MQTT`, `MQIsdp` or `MQTToT`.
    pub protocol_name: String,
    /// Protocol level: 3 (3.1), 4 (3.1.1), 5 (5.0).
    pub level: u8,
    /// Keep-alive in seconds.
    pub keep_alive: u16,
    /// The client identifier, when the payload is standard MQTT (MQTToT
    /// payloads are Thrift-encoded and left alone).
    pub client_id: Option<String>,
}

/// Recognises an MQTT CONNECT at the start of a stream.
pub fn detect(buf: &[u8]) -> Sniff<MqttConnect> {
    let Some(&first) = buf.first() else {
        return Sniff::NeedMore;
    };
    if first != 0x10 {
        return Sniff::No;
    }
    // Remaining length: 1 to 4 bytes, 7 bits each (MQTT 3.1.1 §2.2.3).
    let mut remaining = 0usize;
    let mut header_len = 1;
    loop {
        let Some(&b) = buf.get(header_len) else {
            return Sniff::NeedMore;
        };
        remaining |= usize::from(b & 0x7f) << (7 * (header_len - 1));
        header_len += 1;
        if b & 0x80 == 0 {
            break;
        }
        if header_len > 4 {
            return Sniff::No;
        }
    }
    let end = header_len + remaining;
    let body = match buf.get(header_len..end) {
        Some(body) => body,
        None if remaining > MAX_CONNECT => &buf[header_len..],
        None => return variable_header_sniff(&buf[header_len..]),
    };
    match parse(body) {
        Some(c) => Sniff::Yes(c),
        None if remaining > MAX_CONNECT => Sniff::NeedMore,
        None => Sniff::No,
    }
}

/// While the packet is incomplete, rule it out as soon as the protocol name
/// cannot match.
fn variable_header_sniff(partial: &[u8]) -> Sniff<MqttConnect> {
    const NAMES: [&[u8]; 3] = [b"\x00\x04MQTT", b"\x00\x06MQIsdp", b"\x00\x06MQTToT"];
    let n = partial.len();
    if NAMES
        .iter()
        .any(|name| partial[..n.min(name.len())] == name[..n.min(name.len())])
    {
        Sniff::NeedMore
    } else {
        Sniff::No
    }
}

fn parse(body: &[u8]) -> Option<MqttConnect> {
    let mut r = Reader::new(body);
    let name = r.vec16()?;
    let protocol_name = match name {
        b"MQTT" | b"MQIsdp" | b"MQTToT" => std::str::from_utf8(name).ok()?.to_owned(),
        _ => return None,
    };
    let level = r.u8()?;
    let flags = r.u8()?;
    // The reserved flag bit must be zero (MQTT 3.1.1 §3.1.2.3).
    if flags & 0x01 != 0 {
        return None;
    }
    let keep_alive = r.u16()?;
    let client_id = if protocol_name == "MQTToT" {
        None
    } else {
        if level == 5 {
            // MQTT 5 properties: a variable-byte length, then the properties.
            let len = variable_byte_int(&mut r)?;
            r.bytes(len)?;
        }
        r.vec16()
            .and_then(|id| std::str::from_utf8(id).ok())
            .map(str::to_owned)
    };
    Some(MqttConnect {
        protocol_name,
        level,
        keep_alive,
        client_id,
    })
}

fn variable_byte_int(r: &mut Reader<'_>) -> Option<usize> {
    let mut v = 0usize;
    for i in 0..4 {
        let b = r.u8()?;
        v |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(name: &[u8], level: u8, id: &[u8]) -> Vec<u8> {
        let mut body = (name.len() as u16).to_be_bytes().to_vec();
        body.extend(name);
        body.extend([level, 0x02, 0x00, 0x3c]);
        if level == 5 {
            body.push(0);
        }
        body.extend((id.len() as u16).to_be_bytes());
        body.extend(id);
        let mut p = vec![0x10, body.len() as u8];
        p.extend(body);
        p
    }

    #[test]
    fn all_three_protocol_names_are_recognised() {
        for (name, level) in [
            (&b"MQTT"[..], 4),
            (b"MQTT", 5),
            (b"MQIsdp", 3),
            (b"MQTToT", 3),
        ] {
            let pkt = connect(name, level, b"dev-1");
            let Sniff::Yes(c) = detect(&pkt) else {
                panic!("{name:?}")
            };
            assert_eq!(c.protocol_name.as_bytes(), name);
            assert_eq!(c.level, level);
            assert_eq!(c.keep_alive, 60);
            let want = (name != b"MQTToT").then(|| "dev-1".to_owned());
            assert_eq!(c.client_id, want);
            for cut in 0..pkt.len() {
                assert_eq!(detect(&pkt[..cut]), Sniff::NeedMore, "{name:?} {cut}");
            }
        }
    }

    #[test]
    fn other_packets_are_no() {
        assert_eq!(detect(b"\x30\x02ab"), Sniff::No);
        assert_eq!(detect(b"\x10\x0a\x00\x04MQTX"), Sniff::No);
        assert_eq!(detect(b"\x10\xff\xff\xff\xff\x01"), Sniff::No);
    }
}
