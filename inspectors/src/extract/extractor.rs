//! The per-flow entry point: routes HTTP requests and WebSocket messages to
//! the app that owns the flow.

use super::apps::{self, Req};
use super::body::{decode_content_encoding, Body, MAX_DECODED_BODY};
use super::message::{Direction, Extracted, Upload};
use super::xmpp::XmppExtractor;
use crate::identify::catalog::Catalog;

/// Message extraction for one intercepted flow (one TCP/TLS connection).
///
/// Build it when the flow's app is known and keep it for the flow's life:
/// WebSocket state (Discord's zlib context, MQTT reassembly, XMPP over
/// WebSocket) is per connection.
#[derive(Debug)]
pub struct Extractor {
    app: Option<String>,
    discord: apps::discord::Gateway,
    mqtt: apps::meta::MqttWs,
    xmpp: Option<XmppExtractor>,
    /// Whole-connection E2EE transports (Signal, WhatsApp Web) report their
    /// evidence once, not for every frame.
    transport_opaque_reported: bool,
}

impl Extractor {
    /// `catalog_app` is the catalog's app id for the flow, when
    /// identification found one; otherwise the app is looked up from `host`
    /// in the built-in catalog, and, failing that, guessed per request from
    /// the API paths of self-hostable apps (Matrix, Mattermost, Rocket.Chat,
    /// Zulip).
    pub fn new(catalog_app: Option<&str>, host: &str) -> Self {
        let app = catalog_app
            .map(str::to_owned)
            .or_else(|| Catalog::builtin().lookup_host(host).map(|a| a.id.clone()));
        Self {
            app,
            discord: Default::default(),
            mqtt: Default::default(),
            xmpp: None,
            transport_opaque_reported: false,
        }
    }

    /// The app this extractor reads, if known.
    pub fn app(&self) -> Option<&str> {
        self.app.as_deref()
    }

    /// One client request, body complete. `path` may include the query
    /// string; `headers` are the request headers (`Content-Type` and
    /// `Content-Encoding` are read; names are case-insensitive). Bodies are
    /// decoded up to [`MAX_DECODED_BODY`] bytes.
    pub fn on_http_request<N: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(N, V)],
        body: &[u8],
    ) -> Extracted {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let Some(app) = self.app.as_deref().or_else(|| guess_from_path(path)) else {
            return Extracted::none();
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
                .and_then(|(_, v)| std::str::from_utf8(v.as_ref()).ok())
        };
        let body = match header("content-encoding") {
            Some(enc) => match decode_content_encoding(enc, body, MAX_DECODED_BODY) {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(error = %e, app, "request body not decodable");
                    return Extracted::none();
                }
            },
            None => std::borrow::Cow::Borrowed(&body[..body.len().min(MAX_DECODED_BODY)]),
        };
        let method = method.to_ascii_uppercase();
        let content_type = header("content-type");
        let req = Req {
            app,
            method: &method,
            path,
            query,
            body: Body::parse(content_type, &body),
        };
        let mut out = match app {
            "slack" => apps::slack::http(&req),
            "teams" | "skype" => apps::teams::http(&req),
            "discord" => apps::discord::http(&req),
            "matrix" => apps::matrix::http(&req),
            "mattermost" => apps::mattermost::http(&req),
            "rocketchat" => apps::rocketchat::http(&req),
            "zulip" => apps::zulip::http(&req),
            "google-chat" => apps::google_chat::http(&req),
            "messenger" | "instagram" => apps::meta::http(&req),
            "webex" => apps::webex::http(&req),
            "linkedin" => apps::social_dm::linkedin(&req),
            "x" => apps::social_dm::x(&req),
            "signal" => apps::transport_e2ee::signal_http(&req),
            _ => Extracted::none(),
        };
        // Files are content whatever the app's message holds (often only
        // their names): every one goes to DLP.
        out.uploads = uploads(&req.body, content_type, query, &body);
        out
    }

    /// One complete WebSocket message (fragments already joined, unmasked),
    /// in the order relayed. `is_text` is the opcode (text vs binary).
    pub fn on_ws_message(
        &mut self,
        direction: Direction,
        is_text: bool,
        payload: &[u8],
    ) -> Extracted {
        let Some(app) = self.app.as_deref() else {
            // Self-hosted servers: Rocket.Chat DDP and Mattermost events
            // have distinctive shapes.
            if !is_text {
                return Extracted::none();
            }
            let mut out = apps::rocketchat::ws("rocketchat", direction, payload);
            out.merge(apps::mattermost::ws(direction, payload));
            return out;
        };
        match app {
            "slack" if is_text => apps::slack::ws(app, direction, payload),
            "discord" => self.discord.ws(direction, is_text, payload),
            "mattermost" if is_text => apps::mattermost::ws(direction, payload),
            "rocketchat" if is_text => apps::rocketchat::ws(app, direction, payload),
            "messenger" | "instagram" if !is_text => self.mqtt.ws(app, direction, payload),
            "xmpp" => self
                .xmpp
                .get_or_insert_with(XmppExtractor::new)
                .feed(direction, payload),
            "signal" | "whatsapp" if !self.transport_opaque_reported => {
                let out = if app == "signal" {
                    apps::transport_e2ee::signal_ws(direction, is_text, payload)
                } else {
                    apps::transport_e2ee::whatsapp_ws(is_text, payload)
                };
                self.transport_opaque_reported = out.opaque.is_some();
                out
            }
            _ => Extracted::none(),
        }
    }
}

/// The files a request body carries: every multipart part with a file
/// name, or the whole body when it is neither JSON nor a form (a raw
/// upload: Mattermost `/api/v4/files?filename=`, Slack's upload URL).
fn uploads(
    body: &Body,
    content_type: Option<&str>,
    query: Option<&str>,
    raw: &[u8],
) -> Vec<Upload> {
    match body {
        Body::Multipart(parts) => parts
            .iter()
            .filter_map(|p| {
                Some(Upload {
                    name: p.filename.clone()?,
                    content_type: p.content_type.clone(),
                    data: p.data.clone(),
                })
            })
            .collect(),
        Body::Other if !raw.is_empty() => {
            let name = query
                .and_then(|q| {
                    form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "filename" || k == "name")
                        .map(|(_, v)| v.into_owned())
                })
                .unwrap_or_else(|| "body".to_owned());
            vec![Upload {
                name,
                content_type: content_type.map(str::to_owned),
                data: raw.to_vec(),
            }]
        }
        _ => Vec::new(),
    }
}

/// Self-hostable apps are recognised by their API paths.
fn guess_from_path(path: &str) -> Option<&'static str> {
    if path.contains("/_matrix/client/") {
        Some("matrix")
    } else if path.contains("/api/v4/posts") || path.contains("/api/v4/files") {
        Some("mattermost")
    } else if path.contains("/api/v1/chat.") || path.contains("/api/v1/rooms.upload") {
        Some("rocketchat")
    } else if path.contains("/api/v1/messages")
        || path.starts_with("/json/messages")
        || path.contains("/api/v1/user_uploads")
    {
        Some("zulip")
    } else {
        None
    }
}
