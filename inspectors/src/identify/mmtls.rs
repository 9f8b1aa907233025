//! WeChat's MMTLS, a TLS 1.3 look-alike with its own record versions
//! (Citizen Lab, "wechat-security-report", docs/mmtls-network-format.md).
//!
//! Records are `type, 0xf1 0x04, u16 length`; the client opens with a
//! handshake (0x16) or 0-RTT handshake (0x19) record whose body is a u32
//! section length then the ClientHello constant `01 03 f1`.

use super::reader::Reader;
use super::sniff::Sniff;

/// What an MMTLS ClientHello record says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MmtlsHello {
    /// The record version (0xf104 today).
    pub version: u16,
    /// A 0-RTT (PSK-only) hello, record type 0x19.
    pub zero_rtt: bool,
    /// Offered cipher suites.
    pub cipher_suites: Vec<u16>,
}

/// Recognises an MMTLS ClientHello record.
pub fn detect(buf: &[u8]) -> Sniff<MmtlsHello> {
    let checks: [fn(u8) -> bool; 3] = [
        |b| b == 0x16 || b == 0x19,
        |b| b == 0xf1,
        |b| b == 0x03 || b == 0x04,
    ];
    for (b, ok) in buf.iter().zip(checks) {
        if !ok(*b) {
            return Sniff::No;
        }
    }
    let Some(len) = buf.get(3..5) else {
        return Sniff::NeedMore;
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let Some(body) = buf.get(5..5 + len) else {
        return Sniff::NeedMore;
    };
    let mut r = Reader::new(body);
    let section = r.u32().map(|s| s as usize);
    if section != Some(len.saturating_sub(4)) || r.bytes(3) != Some(&[0x01, 0x03, 0xf1][..]) {
        return Sniff::No;
    }
    let Some(n) = r.u8() else {
        return Sniff::No;
    };
    let mut cipher_suites = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let Some(c) = r.u16() else {
            return Sniff::No;
        };
        cipher_suites.push(c);
    }
    Sniff::Yes(MmtlsHello {
        version: u16::from_be_bytes([buf[1], buf[2]]),
        zero_rtt: buf[0] == 0x19,
        cipher_suites,
    })
}

#[cfg(test)]
pub(crate) fn sample() -> Vec<u8> {
    let mut body = vec![0x01, 0x03, 0xf1, 0x02, 0xc0, 0x2b, 0x00, 0xa8];
    body.extend([0x5a; 36]); // random + timestamp
    body.extend([0, 0, 0, 1, 0]); // empty extension section
    let mut section = ((body.len()) as u32).to_be_bytes().to_vec();
    section.extend(body);
    let mut rec = vec![0x16, 0xf1, 0x04];
    rec.extend((section.len() as u16).to_be_bytes());
    rec.extend(section);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hello_record_is_recognised() {
        let rec = sample();
        assert_eq!(
            detect(&rec),
            Sniff::Yes(MmtlsHello {
                version: 0xf104,
                zero_rtt: false,
                cipher_suites: vec![0xc02b, 0x00a8]
            })
        );
        for cut in 0..rec.len() {
            assert_eq!(detect(&rec[..cut]), Sniff::NeedMore, "{cut}");
        }
    }

    #[test]
    fn tls_is_not_mmtls() {
        assert_eq!(detect(b"\x16\x03\x01\x00\x05"), Sniff::No);
    }
}
