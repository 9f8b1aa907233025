//! TLS ClientHello parsing from the first bytes of a TCP stream.
//!
//! In the style of linkerd's `parse_sni`: hand it whatever was peeked, get
//! `Ok(None)` for "need more", the hello when it is complete, or an error
//! when the bytes are not (or no longer) a well-formed hello.

mod hello;
pub mod ja4;

pub use hello::{ext, is_grease, parse_handshake, ClientHello, HelloTransport};

use crate::InspectError;

/// Content type of handshake records.
const HANDSHAKE: u8 = 0x16;
/// A TLS plaintext record carries at most 2^14 bytes (RFC 8446 §5.1).
const MAX_RECORD: usize = 1 << 14;

/// The most CRYPTO-stream bytes worth buffering for one ClientHello.
pub(crate) fn hello_limit() -> usize {
    hello::MAX_HELLO_LEN + 4
}

/// Whether `buf` starts like a TLS handshake record: `Some(true)` or
/// `Some(false)` once the first three bytes tell, `None` before.
///
/// Any 0x03xx record version counts: the record-layer version of a
/// ClientHello is legacy (RFC 8446 §5.1 says to ignore it), servers accept
/// whatever minor version a client writes there, and classing an odd one
/// (0x0305, 0x03ff) as "not TLS" would relay a readable hello unread.
pub fn looks_like_tls(buf: &[u8]) -> Option<bool> {
    let checks: [fn(u8) -> bool; 3] = [|b| b == HANDSHAKE, |b| b == 3, |_| true];
    for (b, ok) in buf.iter().zip(checks) {
        if !ok(*b) {
            return Some(false);
        }
    }
    (buf.len() >= 3).then_some(true)
}

/// Parses the ClientHello at the start of a TLS stream, across as many
/// handshake records as it spans.
///
/// `Ok(None)`: incomplete, peek more bytes. `Err`: not TLS, or a malformed
/// hello; the caller should stop waiting for one.
pub fn parse_client_hello(buf: &[u8]) -> Result<Option<ClientHello>, InspectError> {
    if looks_like_tls(buf) == Some(false) {
        return Err(InspectError::Malformed {
            protocol: "tls",
            reason: "not a TLS handshake record".to_owned(),
        });
    }
    // Fast path: the whole hello sits in the first record, as it nearly
    // always does; borrow it instead of copying.
    let Some((first, _)) = record(buf)? else {
        return Ok(None);
    };
    if let Some(total) = hello::hello_message_len(first)? {
        if first.len() >= total {
            return hello::parse_handshake(first, HelloTransport::Tcp);
        }
    }
    let mut message = Vec::new();
    let mut rest = buf;
    while let Some((fragment, next)) = record(rest)? {
        message.extend_from_slice(fragment);
        if let Some(total) = hello::hello_message_len(&message)? {
            if message.len() >= total {
                return hello::parse_handshake(&message, HelloTransport::Tcp);
            }
        }
        rest = next;
    }
    Ok(None)
}

/// A record's fragment and the bytes after the record.
type Split<'a> = (&'a [u8], &'a [u8]);

/// The next complete handshake record's fragment and what follows it.
fn record(buf: &[u8]) -> Result<Option<Split<'_>>, InspectError> {
    let malformed = |reason: &str| InspectError::Malformed {
        protocol: "tls",
        reason: reason.to_owned(),
    };
    match looks_like_tls(buf) {
        Some(false) => return Err(malformed("non-handshake record inside the ClientHello")),
        None => return Ok(None),
        Some(true) => {}
    }
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if len == 0 || len > MAX_RECORD {
        return Err(malformed("handshake record length out of range"));
    }
    Ok(buf
        .get(5..5 + len)
        .map(|fragment| (fragment, &buf[5 + len..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal hello: TLS 1.2, one suite, SNI and ALPN.
    fn handshake() -> Vec<u8> {
        handshake_with(&[])
    }

    /// The minimal hello with `extra` appended to its extensions.
    fn handshake_with(extra: &[u8]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]);
        body.extend([1, 0]);
        let host = b"Chat.Example.com";
        let mut sni = vec![0, 0];
        let list_len = (host.len() + 3) as u16;
        sni.extend((list_len + 2).to_be_bytes());
        sni.extend(list_len.to_be_bytes());
        sni.push(0);
        sni.extend((host.len() as u16).to_be_bytes());
        sni.extend(host);
        let alpn = [0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02, b'h', b'2'];
        let exts_len = (sni.len() + alpn.len() + extra.len()) as u16;
        body.extend(exts_len.to_be_bytes());
        body.extend(sni);
        body.extend(alpn);
        body.extend(extra);
        let mut msg = vec![1];
        msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        msg
    }

    fn records(msg: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in msg.chunks(size) {
            out.extend([0x16, 0x03, 0x01]);
            out.extend((chunk.len() as u16).to_be_bytes());
            out.extend(chunk);
        }
        out
    }

    #[test]
    fn hello_in_one_record_parses() {
        let buf = records(&handshake(), 1 << 14);
        let h = parse_client_hello(&buf).unwrap().unwrap();
        assert_eq!(h.sni.as_deref(), Some("chat.example.com"));
        assert_eq!(h.alpn, vec![b"h2".to_vec()]);
        assert_eq!(h.cipher_suites, vec![0x1301]);
        assert_eq!(h.extensions, vec![0x0000, 0x0010]);
        assert!(h.ja4.starts_with("t12d0102h2_"), "{}", h.ja4);
    }

    #[test]
    fn hello_split_over_many_records_parses_the_same() {
        let whole = parse_client_hello(&records(&handshake(), 1 << 14)).unwrap();
        for size in [1, 2, 7, 40] {
            let buf = records(&handshake(), size);
            assert_eq!(
                parse_client_hello(&buf).unwrap(),
                whole,
                "records of {size}"
            );
            for cut in 0..buf.len() {
                assert_eq!(parse_client_hello(&buf[..cut]), Ok(None), "{size}/{cut}");
            }
        }
    }

    #[test]
    fn any_0x03xx_record_version_is_tls() {
        for minor in [0x00u8, 0x01, 0x04, 0x05, 0x7f, 0xff] {
            let mut buf = records(&handshake(), 1 << 14);
            buf[2] = minor;
            assert_eq!(looks_like_tls(&buf), Some(true), "0x03{minor:02x}");
            let h = parse_client_hello(&buf).unwrap().unwrap();
            assert_eq!(
                h.sni.as_deref(),
                Some("chat.example.com"),
                "0x03{minor:02x}"
            );
            let id = crate::identify::identify(&buf, crate::identify::Transport::Tcp, 443);
            assert_eq!(
                id.protocol,
                crate::identify::Protocol::Tls,
                "0x03{minor:02x}"
            );
            assert!(id.error.is_none(), "0x03{minor:02x}: {:?}", id.error);
        }
        // A later record of the same hello with an odd version is read too.
        let mut buf = records(&handshake(), 20);
        buf[25 + 2] = 0xff;
        assert!(parse_client_hello(&buf).unwrap().is_some());
    }

    #[test]
    fn not_tls_is_an_error_at_the_first_wrong_byte() {
        assert!(parse_client_hello(b"G").is_err());
        assert!(parse_client_hello(&[0x16, 0x02]).is_err());
        assert_eq!(parse_client_hello(&[0x16, 0x03]), Ok(None));
        assert_eq!(looks_like_tls(&[0x16, 0x03, 0x01]), Some(true));
        assert_eq!(looks_like_tls(&[0x16]), None);
    }

    #[test]
    fn alert_between_hello_records_is_malformed() {
        let mut buf = records(&handshake()[..10], 10);
        buf.extend([0x15, 0x03, 0x03, 0, 2, 2, 40]);
        assert!(parse_client_hello(&buf).is_err());
    }

    #[test]
    fn ech_versions_groups_and_signature_algorithms_are_read() {
        let extra = [
            0xfe, 0x0d, 0x00, 0x04, 0x00, 0x00, 0x01, 0x00, // encrypted_client_hello (outer)
            0x00, 0x2b, 0x00, 0x05, 0x04, 0x7a, 0x7a, 0x03, 0x04, // supported_versions
            0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d, // supported_groups
            0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08,
            0x04, // signature_algorithms
        ];
        let h = parse_client_hello(&records(&handshake_with(&extra), 1 << 14))
            .unwrap()
            .unwrap();
        assert!(h.ech);
        assert_eq!(h.supported_versions, vec![0x7a7a, 0x0304]);
        assert_eq!(h.max_version(), 0x0304);
        assert_eq!(h.supported_groups, vec![0x001d]);
        assert_eq!(h.signature_algorithms, vec![0x0403, 0x0804]);
        assert_eq!(
            h.extensions,
            vec![0x0000, 0x0010, 0xfe0d, 0x002b, 0x000a, 0x000d]
        );
        assert!(h.ja4.starts_with("t13d0106h2_"), "{}", h.ja4);
    }

    #[test]
    fn duplicate_sni_is_malformed() {
        let mut msg = handshake();
        // Turn the ALPN extension type into a second server_name.
        let n = msg.len();
        msg[n - 9] = 0;
        msg[n - 8] = 0;
        assert!(parse_client_hello(&records(&msg, 1 << 14)).is_err());
    }
}
