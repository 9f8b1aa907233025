//! The extraction result types, shared by every app.

use serde::{Deserialize, Serialize};

use crate::identify::catalog::Reason;

pub use crate::Direction;

/// One named piece of text of a message, e.g. `("blocks[0].text.text", "hi")`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextField {
    /// Where the text was found, in the app's own field syntax.
    pub field: String,
    /// The text, HTML already stripped where the app sends HTML.
    pub text: String,
}

/// A message a user sent or received, as far as the payload shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Catalog app id (`slack`, `discord`, `xmpp`, ...).
    pub app: String,
    /// Which way the message went.
    pub direction: Direction,
    /// Conversation, channel or room id, as the app names it.
    pub conversation: Option<String>,
    /// Sender id or name, when the payload carries one (outbound requests
    /// usually do not: the sender is the authenticated user).
    pub sender: Option<String>,
    /// The text fields: the main text first, then nested ones (members of
    /// one JSON object in name order). Never empty for a returned message
    /// unless `attachments` is non-empty.
    pub texts: Vec<TextField>,
    /// Names of attached files.
    pub attachments: Vec<String>,
}

impl Message {
    /// An empty message of `app` going `direction`.
    pub fn new(app: &str, direction: Direction) -> Self {
        Self {
            app: app.to_owned(),
            direction,
            conversation: None,
            sender: None,
            texts: Vec::new(),
            attachments: Vec::new(),
        }
    }

    /// Adds a text field unless the text is empty.
    pub fn push_text(&mut self, field: impl Into<String>, text: impl Into<String>) {
        let text = text.into();
        if !text.is_empty() {
            self.texts.push(TextField {
                field: field.into(),
                text,
            });
        }
    }

    /// True when there is nothing worth reporting.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty() && self.attachments.is_empty()
    }

    /// The text of the first field called `field`.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.texts
            .iter()
            .find(|t| t.field == field)
            .map(|t| t.text.as_str())
    }
}

/// Why a payload of a readable flow could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpaqueEvidence {
    /// Catalog app id.
    pub app: String,
    /// Why: for extraction this is nearly always [`Reason::E2ee`].
    pub reason: Reason,
    /// What was seen, for the `opaque_tunnel` event (never message content).
    pub evidence: String,
}

/// One end-to-end encrypted message the payload carried: what can be
/// seen of it without its key (never its content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedMessage {
    /// Catalog app id.
    pub app: String,
    /// Which way the message went.
    pub direction: Direction,
    /// Conversation, room or peer, as the app names it.
    pub conversation: Option<String>,
    /// Sender, when the payload names one.
    pub sender: Option<String>,
    /// The encryption as the payload names it (`m.megolm.v1.aes-sha2`,
    /// `OMEMO 2`, `OTR`, `jwe dir/A256GCM`, ...).
    pub algorithm: String,
    /// Size of the ciphertext as sent, in bytes.
    pub size: u64,
}

/// A file carried by an upload request: a multipart file part, or a raw
/// request body. Its content is judged like a message's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The file name, or the part name when the part has none.
    pub name: String,
    /// The part's (or the request's) Content-Type.
    pub content_type: Option<String>,
    /// The file's bytes, as sent (Content-Encoding already undone).
    pub data: Vec<u8>,
}

impl Upload {
    /// Whether the whole-body fallback already reads this part as text: it
    /// reads multipart parts declared textual (or undeclared) and skips the
    /// rest, so only the others need a scan of their own there.
    pub fn declared_textual(&self) -> bool {
        self.content_type.as_deref().is_none_or(|c| {
            let m = c
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            m.starts_with("text/")
                || m.ends_with("json")
                || m.ends_with("xml")
                || m.contains("urlencoded")
        })
    }
}

/// What one payload yielded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    /// Readable messages.
    pub messages: Vec<Message>,
    /// Set when the payload was recognised as end-to-end encrypted.
    pub opaque: Option<OpaqueEvidence>,
    /// End-to-end encrypted messages, one entry each (with `opaque` set
    /// too); whole-tunnel encryption (Signal, WhatsApp) has none.
    #[serde(default)]
    pub encrypted: Vec<EncryptedMessage>,
    /// Files the request uploads (every multipart file part, or a raw
    /// upload body), to be scanned whatever the messages say.
    #[serde(default)]
    pub uploads: Vec<Upload>,
}

impl Extracted {
    /// Nothing found.
    pub fn none() -> Self {
        Self::default()
    }

    /// One message, dropped if empty.
    pub fn message(msg: Message) -> Self {
        let mut out = Self::default();
        out.push(msg);
        out
    }

    /// An E2EE payload of `app`.
    pub fn e2ee(app: &str, evidence: impl Into<String>) -> Self {
        Self {
            messages: Vec::new(),
            opaque: Some(OpaqueEvidence {
                app: app.to_owned(),
                reason: Reason::E2ee,
                evidence: evidence.into(),
            }),
            ..Self::default()
        }
    }

    /// One end-to-end encrypted message, with `evidence` for the flow.
    pub fn encrypted(msg: EncryptedMessage, evidence: impl Into<String>) -> Self {
        let mut out = Self::e2ee(&msg.app.clone(), evidence);
        out.encrypted.push(msg);
        out
    }

    /// Adds a message unless it is empty.
    pub fn push(&mut self, msg: Message) {
        if !msg.is_empty() {
            self.messages.push(msg);
        }
    }

    /// Appends everything `other` found; the first opaque evidence wins.
    pub fn merge(&mut self, other: Extracted) {
        self.messages.extend(other.messages);
        self.encrypted.extend(other.encrypted);
        self.uploads.extend(other.uploads);
        if self.opaque.is_none() {
            self.opaque = other.opaque;
        }
    }

    /// True when neither messages nor evidence were found (uploads alone
    /// do not count: a body with only files is still read whole).
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.opaque.is_none() && self.encrypted.is_empty()
    }
}
