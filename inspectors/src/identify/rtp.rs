//! RTP and RTCP headers (RFC 3550; SRTP, RFC 3711, keeps the same
//! headers and encrypts only the payload), the media of calls.
//!
//! One datagram proves little: a version field of 2 is a quarter of all
//! random bytes. A flow is called RTP when several of its datagrams agree
//! on one stream (same SSRC, sequence numbers moving forward by small
//! steps); RTCP has more structure (packet types 200–207, lengths that
//! add up) and stands on one datagram.

use super::Confidence;

const RTP_HEADER: usize = 12;

/// The fixed RTP header of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RtpHeader {
    /// Payload type (codec), 0–127.
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

/// What a media flow's datagrams showed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MediaFlow {
    /// The first datagram's RTP header, for RTP.
    pub rtp: Option<RtpHeader>,
    /// The first RTCP packet type, for RTCP.
    pub rtcp: Option<u8>,
    /// Datagrams seen.
    pub datagrams: usize,
    /// Datagrams that continued the first one's stream.
    pub agreeing: usize,
    /// The RTCP compound did not end where its lengths say: an SRTCP
    /// trailer (index and authentication tag) follows.
    pub srtcp_trailer: bool,
}

impl MediaFlow {
    /// RTCP structure and RTP seen on 3+ agreeing datagrams are good
    /// evidence; a lone RTP-shaped datagram is a guess.
    pub fn confidence(&self) -> Confidence {
        match (self.rtcp, self.agreeing) {
            (Some(_), _) => Confidence::Medium,
            (None, n) if n >= 3 => Confidence::High,
            (None, n) if n >= 1 => Confidence::Medium,
            _ => Confidence::Low,
        }
    }

    /// One line for the evidence list.
    pub fn describe(&self) -> String {
        match (self.rtp, self.rtcp) {
            (_, Some(pt)) => format!(
                "RTCP packet type {pt}{}",
                if self.srtcp_trailer {
                    " with an SRTCP trailer"
                } else {
                    ""
                }
            ),
            (Some(h), None) => format!(
                "RTP payload type {}, SSRC {:#010x}, {} of {} datagrams in sequence",
                h.payload_type,
                h.ssrc,
                self.agreeing + 1,
                self.datagrams
            ),
            (None, None) => "media".to_owned(),
        }
    }
}

/// Reads an RTP header, with the checks a receiver makes: version 2, no
/// RTCP-range payload type (RFC 5761 §4), CSRCs, extension and padding
/// inside the datagram.
pub fn rtp_header(d: &[u8]) -> Option<RtpHeader> {
    if d.len() < RTP_HEADER || d[0] >> 6 != 2 {
        return None;
    }
    let payload_type = d[1] & 0x7f;
    if (64..=95).contains(&payload_type) {
        return None;
    }
    let csrc = usize::from(d[0] & 0x0f);
    let mut header = RTP_HEADER + 4 * csrc;
    if d[0] & 0x10 != 0 {
        let ext = d.get(header..header + 4)?;
        header += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    let mut end = d.len();
    if d[0] & 0x20 != 0 {
        let pad = usize::from(*d.last()?);
        if pad == 0 {
            return None;
        }
        end = end.checked_sub(pad)?;
    }
    if header > end {
        return None;
    }
    Some(RtpHeader {
        payload_type,
        seq: u16::from_be_bytes([d[2], d[3]]),
        timestamp: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
        ssrc: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
    })
}

/// Reads an RTCP compound packet: each packet version 2, type 200–207,
/// lengths within the datagram. Returns the first packet type, and whether
/// bytes are left after the last packet (an SRTCP trailer).
pub fn rtcp(d: &[u8]) -> Option<(u8, bool)> {
    let first = *d.get(1)?;
    let mut pos = 0;
    let mut packets = 0;
    while pos + 4 <= d.len() {
        let (b0, pt) = (d[pos], d[pos + 1]);
        if b0 >> 6 != 2 || !(200..=207).contains(&pt) {
            break;
        }
        let len = (usize::from(u16::from_be_bytes([d[pos + 2], d[pos + 3]])) + 1) * 4;
        if pos + len > d.len() {
            return None;
        }
        pos += len;
        packets += 1;
    }
    if packets == 0 {
        return None;
    }
    let trailer = d.len() - pos;
    // SRTCP adds a 4-byte index and a 4- to 16-byte tag; anything else
    // after the packets is not RTCP.
    if trailer != 0 && !(8..=20).contains(&trailer) {
        return None;
    }
    // RFC 3550 §6.1: a compound starts with a report (SR, RR) unless it
    // is a reduced-size or feedback-only packet (RFC 5506, 4585).
    if packets > 1 && !(first == 200 || first == 201) {
        return None;
    }
    Some((first, trailer != 0))
}

/// Judges a UDP flow's client datagrams as media: `None` when the first is
/// neither RTP- nor RTCP-shaped.
pub fn media_flow(datagrams: &[&[u8]]) -> Option<MediaFlow> {
    let first = datagrams.first()?;
    if let Some((pt, srtcp_trailer)) = rtcp(first) {
        return Some(MediaFlow {
            rtp: None,
            rtcp: Some(pt),
            datagrams: datagrams.len(),
            agreeing: 0,
            srtcp_trailer,
        });
    }
    let head = rtp_header(first)?;
    let mut last = head;
    let mut agreeing = 0;
    for d in &datagrams[1..] {
        // RTCP of the same session may be multiplexed in (RFC 5761).
        if rtcp(d).is_some() {
            continue;
        }
        let Some(h) = rtp_header(d) else { continue };
        let step = h.seq.wrapping_sub(last.seq);
        if h.ssrc == head.ssrc && (1..=64).contains(&step) {
            agreeing += 1;
            last = h;
        }
    }
    Some(MediaFlow {
        rtp: Some(head),
        rtcp: None,
        datagrams: datagrams.len(),
        agreeing,
        srtcp_trailer: false,
    })
}

/// An RTP packet (for tests and fixture generators).
pub fn build_rtp(payload_type: u8, seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0x80, payload_type & 0x7f];
    d.extend(seq.to_be_bytes());
    d.extend(timestamp.to_be_bytes());
    d.extend(ssrc.to_be_bytes());
    d.extend(payload);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_of_rtp_is_confirmed_by_its_sequence() {
        let packets: Vec<Vec<u8>> = (0..5u16)
            .map(|i| build_rtp(111, 1000 + i, 960 * u32::from(i), 0xdead_beef, &[0x55; 40]))
            .collect();
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let m = media_flow(&refs).unwrap();
        assert_eq!(m.agreeing, 4);
        assert_eq!(m.confidence(), Confidence::High);
        assert_eq!(
            media_flow(&refs[..1]).unwrap().confidence(),
            Confidence::Low
        );
        assert!(m.describe().contains("payload type 111"));
    }

    #[test]
    fn rtcp_receiver_report_and_srtcp_trailer() {
        // RR with one report block: length 7 → 32 bytes.
        let mut rr = vec![0x81, 201, 0, 7];
        rr.extend([0u8; 28]);
        assert_eq!(rtcp(&rr), Some((201, false)));
        let mut srtcp = rr.clone();
        srtcp.extend([0x80, 0, 0, 1]);
        srtcp.extend([0xaa; 10]);
        assert_eq!(rtcp(&srtcp), Some((201, true)));
        assert_eq!(rtcp(&rr[..20]), None);
    }

    #[test]
    fn what_is_not_media_is_refused() {
        assert_eq!(rtp_header(b"\x40\x01short"), None);
        assert_eq!(rtp_header(&[0x80, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        // Padding longer than the packet.
        let mut p = build_rtp(0, 1, 1, 1, &[]);
        p[0] |= 0x20;
        p.push(200);
        assert_eq!(rtp_header(&p), None);
        assert!(media_flow(&[b"hello world, this is text".as_slice()]).is_none());
    }
}
