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

/// What one payload yielded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    /// Readable messages.
    pub messages: Vec<Message>,
    /// Set when the payload was recognised as end-to-end encrypted.
    pub opaque: Option<OpaqueEvidence>,
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
        }
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
        if self.opaque.is_none() {
            self.opaque = other.opaque;
        }
    }

    /// True when neither messages nor evidence were found.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.opaque.is_none()
    }
}
