//! QUIC Initial packets: derive the client's Initial keys from the
//! destination connection id, open the packets, reassemble the CRYPTO stream
//! and parse the ClientHello in it.
//!
//! [`parse_initial`] handles one datagram; [`InitialParser`] keeps state
//! across datagrams for hellos too big for one (Chrome's post-quantum hello
//! takes two).

mod crypto;
mod packet;

pub use packet::QuicVersion;

use rustls::quic::DirectionalKeys;

use crate::identify::tls::{self, ClientHello, HelloTransport};
use crate::InspectError;
pub(crate) use crypto::CryptoStream;
use packet::{client_initial_keys, malformed, open, parse_long};

/// A ClientHello recovered from QUIC Initial packets.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuicHello {
    /// The version of the Initial packets.
    pub version: QuicVersion,
    /// The destination connection id the keys were derived from.
    pub dcid: Vec<u8>,
    /// The client's source connection id.
    pub scid: Vec<u8>,
    /// The hello itself; its JA4 starts with `q`.
    pub hello: ClientHello,
}

/// Whether a datagram starts like a client Initial of a version we can
/// open: `None` until the first five bytes are there.
pub fn looks_like_initial(datagram: &[u8]) -> Option<bool> {
    let first = *datagram.first()?;
    if first & 0x80 == 0 {
        return Some(false);
    }
    let wire = u32::from_be_bytes(datagram.get(1..5)?.try_into().ok()?);
    Some(QuicVersion::from_wire(wire).is_some_and(|v| {
        let typ = (first >> 4) & 0b11;
        typ == if v == QuicVersion::V2 { 0b01 } else { 0b00 }
    }))
}

/// Parses the ClientHello from a single client datagram. `Ok(None)`: the
/// datagram is cut short or the hello continues in a later datagram (use
/// [`InitialParser`] to follow it).
pub fn parse_initial(datagram: &[u8]) -> Result<Option<QuicHello>, InspectError> {
    InitialParser::new().push_datagram(datagram)
}

/// Follows the client's Initial packets of one connection across datagrams.
#[derive(Default)]
pub struct InitialParser {
    keys: Option<Keys>,
    crypto: CryptoStream,
}

struct Keys {
    version: QuicVersion,
    dcid: Vec<u8>,
    scid: Vec<u8>,
    client: DirectionalKeys,
}

impl std::fmt::Debug for InitialParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitialParser")
            .field("version", &self.keys.as_ref().map(|k| k.version))
            .field("crypto_bytes", &self.crypto.contiguous().len())
            .finish()
    }
}

impl InitialParser {
    /// A parser that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one client-to-server datagram. Returns the hello once the
    /// CRYPTO stream holds all of it; `Ok(None)` while more is needed.
    pub fn push_datagram(&mut self, datagram: &[u8]) -> Result<Option<QuicHello>, InspectError> {
        let mut rest = datagram;
        let mut opened_any = false;
        while !rest.is_empty() {
            let packet = match parse_long(rest) {
                Ok(Some(packet)) => packet,
                // Cut short: work with what was opened so far.
                Ok(None) => break,
                // Bytes after an opened Initial may be junk padding.
                Err(_) if opened_any => break,
                Err(e) => return Err(e),
            };
            rest = &rest[packet.bytes.len()..];
            if !packet.is_initial {
                // 0-RTT or Handshake coalesced after the Initial: not ours.
                continue;
            }
            // RFC 9001 §5.2: keys come from the DCID of the client's first
            // Initial, even after the client switches to the server's CID.
            let keys = self.keys.get_or_insert_with(|| Keys {
                version: packet.version,
                dcid: packet.dcid.to_vec(),
                scid: packet.scid.to_vec(),
                client: client_initial_keys(packet.version, packet.dcid),
            });
            if keys.version != packet.version {
                return Err(malformed("Initial packets of different versions"));
            }
            let frames = open(&packet, &keys.client)?;
            self.crypto.add_frames(&frames)?;
            opened_any = true;
            // Anything after an Initial in the same datagram may be padding
            // bytes rather than packets; stop at the first that is not a
            // long-header packet.
            if rest.first().is_some_and(|b| b & 0x80 == 0) {
                break;
            }
        }
        if !opened_any {
            return Ok(None);
        }
        let Some(hello) = tls::parse_handshake(self.crypto.contiguous(), HelloTransport::Quic)?
        else {
            return Ok(None);
        };
        let keys = self
            .keys
            .as_ref()
            .expect("keys are set once a packet was opened");
        Ok(Some(QuicHello {
            version: keys.version,
            dcid: keys.dcid.clone(),
            scid: keys.scid.clone(),
            hello,
        }))
    }
}
