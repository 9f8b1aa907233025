//! Message extraction: what users write, pulled out of decrypted traffic.
//!
//! The proxy builds one [`Extractor`] per intercepted flow and feeds it every
//! HTTP request ([`Extractor::on_http_request`]) and WebSocket message
//! ([`Extractor::on_ws_message`]) it relays; XMPP streams go to an
//! [`XmppExtractor`] instead. Each call returns the readable [`Message`]s and,
//! when the payload is end-to-end encrypted, [`OpaqueEvidence`] saying why it
//! cannot be read. Per-connection state (Discord's zlib-stream inflater, MQTT
//! reassembly) lives in the extractor, so keep one per connection.
//!
//! Everything here is sans-IO: bytes in, messages out.

mod apps;
mod body;
mod extractor;
mod html;
mod jwe;
mod message;
mod mqtt;
mod multipart;
mod xmpp;

pub use crate::codec::ZlibStream;
pub use body::{decode_content_encoding, Body, MAX_DECODED_BODY};
pub use extractor::Extractor;
pub use html::strip_html;
pub use jwe::JweHeader;
pub use message::{
    Direction, EncryptedMessage, Extracted, Message, OpaqueEvidence, TextField, Upload,
};
pub use mqtt::{frame, parse_publish, Frame, MqttError, MqttPublish, MqttSession, MqttStream};
pub use multipart::{parse_multipart, Part};
pub use xmpp::XmppExtractor;
