//! MQTT relay: whole packets only. Each direction's bytes are framed into
//! MQTT packets (fixed header, §2.2), each packet is shown to the hooks
//! whole and forwarded only when they allow it, so a blocked PUBLISH never
//! reaches the broker, not even in part. A packet is held up to `window`
//! bytes; a larger one, or a malformed length, ends the flow through
//! `on_undecodable` (fail closed, with an event).
//!
//! A block answers in MQTT where the client understands it: MQTT 5 gets a
//! PUBACK / PUBREC with reason 0x87 (Not authorized) for a QoS 1 / 2
//! PUBLISH, then DISCONNECT with reason 0x98 (Administrative action);
//! MQTT 3.1 and 3.1.1 have no such packets and the connection just closes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_inspectors::extract::{frame, Frame};
use gatehouse_inspectors::identify::{mqtt, Sniff};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::hooks::{Direction, FlowContext, FlowHooks, Verdict};

/// What an MQTT relay needs of its flow.
pub struct MqttRelay {
    /// The flow, for the hooks.
    pub flow: Arc<FlowContext>,
    /// The flow's inspection.
    pub hooks: Arc<Mutex<Box<dyn FlowHooks>>>,
    /// Bytes of one packet held at most (`intercept.inspect_window`).
    pub window: usize,
    /// No byte either way for this long ends the flow.
    pub idle: Duration,
    /// The gateway's shutdown.
    pub abort: CancellationToken,
}

/// How an MQTT relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client closed.
    ClientClosed,
    /// The broker closed.
    ServerClosed,
    /// A read or write failed.
    Error,
    /// Nothing moved for the idle timeout.
    Idle,
    /// A hook blocked a packet (or the stream could not be read).
    Blocked,
    /// The gateway is shutting down.
    Shutdown,
}

/// One direction's unframed bytes.
struct Side {
    buf: Vec<u8>,
    dir: Direction,
}

/// Relays packets both ways until one side closes, a packet is blocked,
/// the flow idles out or the gateway shuts down.
pub async fn relay<C, U>(client: C, upstream: U, r: &MqttRelay) -> Ended
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let mut up = Side {
        buf: Vec::new(),
        dir: Direction::Outbound,
    };
    let mut down = Side {
        buf: Vec::new(),
        dir: Direction::Inbound,
    };
    let (mut cread, mut uread) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let mut level: Option<u8> = None;
    loop {
        let step = tokio::select! {
            r = cr.read(&mut cread) => Some((true, r)),
            r = ur.read(&mut uread) => Some((false, r)),
            _ = tokio::time::sleep(r.idle) => None,
            _ = r.abort.cancelled() => return Ended::Shutdown,
        };
        let Some((from_client, read)) = step else {
            return Ended::Idle;
        };
        let n = match read {
            Ok(0) if from_client => {
                let _ = uw.shutdown().await;
                return Ended::ClientClosed;
            }
            Ok(0) => {
                let _ = cw.shutdown().await;
                return Ended::ServerClosed;
            }
            Ok(n) => n,
            Err(_) => return Ended::Error,
        };
        let (side, chunk) = if from_client {
            (&mut up, &cread[..n])
        } else {
            (&mut down, &uread[..n])
        };
        side.buf.extend_from_slice(chunk);
        let (packets, verdict) = judge(r, side, &mut level);
        let sent = if from_client {
            write_all(&mut uw, &packets).await
        } else {
            write_all(&mut cw, &packets).await
        };
        if !sent {
            return Ended::Error;
        }
        if let Some((blocked, why)) = verdict {
            let reply = reply(level, blocked.as_deref(), &why);
            if !reply.is_empty() {
                let _ = cw.write_all(&reply).await;
            }
            let _ = cw.shutdown().await;
            let _ = uw.shutdown().await;
            return Ended::Blocked;
        }
    }
}

async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, packets: &[u8]) -> bool {
    packets.is_empty() || (w.write_all(packets).await.is_ok() && w.flush().await.is_ok())
}

/// A block: the client's packet that was blocked (None for a broker's
/// packet or a stream that could not be framed), and what to tell.
type Blocked = (Option<Vec<u8>>, String);

/// Frames and judges the complete packets in `side`: the bytes allowed
/// (to forward, in order) and the block, if one was. Nothing after a
/// blocked packet is forwarded.
fn judge(r: &MqttRelay, side: &mut Side, level: &mut Option<u8>) -> (Vec<u8>, Option<Blocked>) {
    let mut allowed = Vec::new();
    let mut pos = 0;
    let mut hooks = match r.hooks.lock() {
        Ok(h) => h,
        // A hook that panicked cannot judge: fail closed.
        Err(_) => return (Vec::new(), Some((None, "inspection failed".into()))),
    };
    let blocked = loop {
        let len = match frame(&side.buf[pos..]) {
            Frame::Packet(n) if n <= r.window => n,
            Frame::NeedMore { total: None } => break None,
            Frame::NeedMore { total: Some(n) } if n <= r.window => break None,
            Frame::Packet(n) | Frame::NeedMore { total: Some(n) } => {
                let what = format!(
                    "MQTT packet of {n} bytes over the {}-byte inspection window",
                    r.window
                );
                break Some((None, policy(hooks.on_undecodable(&r.flow, side.dir, &what))));
            }
            Frame::Invalid => {
                let v = hooks.on_undecodable(&r.flow, side.dir, "malformed MQTT packet length");
                break Some((None, policy(v)));
            }
        };
        let packet = &side.buf[pos..pos + len];
        if side.dir == Direction::Outbound && level.is_none() {
            if let Sniff::Yes(c) = mqtt::detect(packet) {
                *level = Some(c.level);
            }
        }
        match hooks.on_bytes(&r.flow, side.dir, packet) {
            Verdict::Allow => allowed.extend_from_slice(packet),
            v => {
                let mut why = policy(v);
                if let Some(id) = hooks.block_event() {
                    why = format!("{why} (event {id})");
                }
                let client = (side.dir == Direction::Outbound).then(|| packet.to_vec());
                break Some((client, why));
            }
        }
        pos += len;
    };
    side.buf.drain(..pos);
    (allowed, blocked)
}

/// What the client is told of a block: MQTT 5 only (earlier versions have
/// no way to say it). `packet` is the client's blocked packet, if any;
/// `why` the policy and event, as a block page names them.
fn reply(level: Option<u8>, packet: Option<&[u8]>, why: &str) -> Vec<u8> {
    if level != Some(5) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Some(p) = packet.filter(|p| p[0] >> 4 == 3) {
        let qos = (p[0] >> 1) & 0b11;
        let body_at = p.len() - body_len(p);
        let tlen = p
            .get(body_at..body_at + 2)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        if let Some(id) = p.get(body_at + 2 + tlen..body_at + 4 + tlen) {
            // PUBACK (QoS 1) or PUBREC (QoS 2), reason 0x87 Not authorized.
            match qos {
                1 => out.extend([0x40, 0x03, id[0], id[1], 0x87]),
                2 => out.extend([0x50, 0x03, id[0], id[1], 0x87]),
                _ => {}
            }
        }
    }
    // DISCONNECT, reason 0x98 Administrative action, with a Reason String
    // naming the policy and the event (never the matched data). paho reads
    // a DISCONNECT's reason code only when properties follow it.
    let mut reason = why.as_bytes();
    reason = &reason[..reason.len().min(1024)];
    while std::str::from_utf8(reason).is_err() {
        reason = &reason[..reason.len() - 1];
    }
    let mut props = vec![0x1f];
    props.extend((reason.len() as u16).to_be_bytes());
    props.extend(reason);
    let mut body = vec![0x98];
    var_int(props.len(), &mut body);
    body.extend(props);
    out.push(0xe0);
    var_int(body.len(), &mut out);
    out.extend(body);
    out
}

/// Appends `n` as a variable byte integer (§1.5.5).
fn var_int(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n & 0x7f) as u8;
        n >>= 7;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

/// What a block is called: the policy it names.
fn policy(v: Verdict) -> String {
    match v {
        Verdict::Block { policy } => format!("blocked by {policy}"),
        _ => "blocked by policy".into(),
    }
}

/// The remaining length of a complete packet.
fn body_len(p: &[u8]) -> usize {
    let mut remaining = 0usize;
    for (i, &b) in p.iter().skip(1).take(4).enumerate() {
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

    #[test]
    fn mqtt5_blocks_are_answered_and_earlier_versions_just_close() {
        // QoS 1 PUBLISH, topic "t", packet id 0x0102, no properties.
        let p = [0x32, 0x07, 0x00, 0x01, b't', 0x01, 0x02, 0x00, b'x'];
        assert_eq!(
            reply(Some(5), Some(&p), "x"),
            [0x40, 0x03, 0x01, 0x02, 0x87, 0xe0, 0x06, 0x98, 0x04, 0x1f, 0x00, 0x01, b'x']
        );
        let q2 = [0x34, 0x07, 0x00, 0x01, b't', 0x01, 0x02, 0x00, b'x'];
        assert_eq!(
            reply(Some(5), Some(&q2), "x")[..5],
            [0x50, 0x03, 0x01, 0x02, 0x87]
        );
        // A long reason: multi-byte lengths, capped, still UTF-8.
        let long = "é".repeat(600);
        let d = reply(Some(5), None, &long);
        assert_eq!((d[0], d[3]), (0xe0, 0x98));
        assert!(d.len() < 1100);
        assert!(reply(Some(4), Some(&p), "x").is_empty());
        assert!(reply(Some(3), None, "x").is_empty());
    }
}
