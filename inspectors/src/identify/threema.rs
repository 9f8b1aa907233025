//! Threema's chat-server handshake.
//!
//! The client opens with exactly 48 bytes, its ephemeral Curve25519 public
//! key and a 16-byte nonce prefix, then waits for the server's 80-byte
//! answer. Nothing in those bytes is fixed, so recognition rests on the
//! length, the randomness, and (for a verdict before the flow stalls) the
//! chat port 5222; the catalog's hosts confirm it when DNS or SNI is known.

use super::entropy::shannon;

/// Length of the client's opening message.
pub const CLIENT_HELLO_LEN: usize = 48;
/// Threema's chat-server port.
pub const PORT: u16 = 5222;

/// Whether the client sent exactly a Threema-sized random opening.
pub fn looks_like_client_hello(buf: &[u8]) -> bool {
    // 48 random bytes have at most log2(48) ≈ 5.58 bits/byte of sample
    // entropy; 4.8 admits nearly all and rejects text and zero padding.
    buf.len() == CLIENT_HELLO_LEN && shannon(buf) > 4.8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_48_random_bytes_qualify() {
        let random: Vec<u8> = (0..48u32).map(|i| (i * 97 + 13) as u8).collect();
        assert!(looks_like_client_hello(&random));
        assert!(!looks_like_client_hello(&random[..47]));
        assert!(!looks_like_client_hello(&[b'a'; 48]));
    }
}
