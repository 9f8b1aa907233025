//! Discord voice's IP discovery (discord.com/developers/docs/topics/
//! voice-connections, "IP Discovery"): the first datagram a Discord client
//! sends to its voice server, before the encrypted RTP. 74 bytes: type
//! (1 request, 2 response), length 70, the SSRC, a 64-byte NUL-padded
//! address (empty in requests) and a port, all big-endian.

/// Size of an IP discovery packet since March 2023 (the older 70-byte
/// form is no longer answered).
pub const PACKET_LEN: usize = 74;

/// An IP discovery packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IpDiscovery {
    /// A request (client to server), else a response.
    pub request: bool,
    /// The SSRC the voice gateway assigned.
    pub ssrc: u32,
}

/// Recognises an IP discovery datagram.
pub fn detect(d: &[u8]) -> Option<IpDiscovery> {
    if d.len() != PACKET_LEN || d[2..4] != [0, 70] || d[0] != 0 || !matches!(d[1], 1 | 2) {
        return None;
    }
    // The address: printable text, then NULs to the end of the field.
    let address = &d[8..72];
    let text = address.iter().position(|b| *b == 0).unwrap_or(64);
    if !address[..text].iter().all(|b| b.is_ascii_graphic())
        || address[text..].iter().any(|b| *b != 0)
    {
        return None;
    }
    Some(IpDiscovery {
        request: d[1] == 1,
        ssrc: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
    })
}

/// A request as clients build it (for tests and fixture generators).
pub fn build_request(ssrc: u32) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0..2].copy_from_slice(&1u16.to_be_bytes());
    p[2..4].copy_from_slice(&70u16.to_be_bytes());
    p[4..8].copy_from_slice(&ssrc.to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_are_recognised_and_prefixes_are_not() {
        let req = build_request(0x1234);
        assert_eq!(
            detect(&req),
            Some(IpDiscovery {
                request: true,
                ssrc: 0x1234
            })
        );
        let mut resp = req;
        resp[1] = 2;
        resp[8..17].copy_from_slice(b"203.0.113");
        resp[72..74].copy_from_slice(&50000u16.to_be_bytes());
        assert!(detect(&resp).is_some_and(|d| !d.request));
        for cut in 0..PACKET_LEN {
            assert_eq!(detect(&req[..cut]), None);
        }
        let mut junk = req;
        junk[40] = 1;
        assert_eq!(detect(&junk), None);
    }
}
