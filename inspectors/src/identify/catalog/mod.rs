//! The app catalog: host names, HTTP and WebSocket endpoints and ports of
//! messaging apps, and how much of each Gatehouse can read.
//!
//! The shipped data is `inspectors/catalog/apps.toml`, compiled in; a
//! config-given file extends or overrides it ([`Catalog::with_overrides`]).
//! A catalog is immutable once built: share it behind an `Arc` and build a
//! new one on reload.

mod classify;
mod file;

pub use super::Confidence;
pub use classify::{classify, Classification, FlowContext};
pub use file::AppEntry;

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::InspectError;

/// The shipped catalog.
pub const BUILTIN_TOML: &str = include_str!("../../../catalog/apps.toml");

/// How much of an app's traffic Gatehouse can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Interception yields readable messages.
    Inspectable,
    /// Only connection metadata can be had (interception would break the
    /// client, or shows nothing readable).
    MetadataOnly,
    /// The content is encrypted beyond Gatehouse's reach.
    Opaque,
}

impl Class {
    /// `inspectable`, `metadata-only` or `opaque`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inspectable => "inspectable",
            Self::MetadataOnly => "metadata-only",
            Self::Opaque => "opaque",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an app is not inspectable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The client pins its server certificates: interception breaks it.
    Pinned,
    /// Messages are end-to-end encrypted inside the transport.
    E2ee,
    /// The transport is the app's own encryption, not TLS.
    NonTlsEncryption,
    /// An end-to-end encrypted voice or video call.
    E2eeCall,
    /// Call media (RTP/SRTP, STUN/TURN): not messages.
    Media,
}

/// What an app's calls are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallMedia {
    /// End-to-end encrypted.
    E2ee,
    /// Encrypted to the provider only.
    Media,
}

impl Reason {
    /// `pinned`, `e2ee` or `non-tls-encryption`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pinned => "pinned",
            Self::E2ee => "e2ee",
            Self::NonTlsEncryption => "non-tls-encryption",
            Self::E2eeCall => "e2ee-call",
            Self::Media => "media",
        }
    }
}

/// One app of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Stable lowercase id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What Gatehouse can read of it.
    pub class: Class,
    /// Why, when not inspectable.
    pub reasons: Vec<Reason>,
    /// Ports it is known to use.
    pub ports: Vec<u16>,
    /// What its calls are.
    pub calls: CallMedia,
    /// Lowercase substrings of its clients' STUN SOFTWARE attribute.
    pub stun_software: Vec<String>,
}

/// An endpoint rule: optional host pattern, then a path or path prefix.
#[derive(Debug, Clone)]
struct Endpoint {
    host: Option<String>,
    path: String,
    prefix: bool,
    websocket: bool,
    app: usize,
}

/// The compiled catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    apps: Vec<App>,
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `example.com`: looked up for each parent
    /// of a name, most specific first.
    suffix: HashMap<String, usize>,
    endpoints: Vec<Endpoint>,
    ports: HashMap<u16, Vec<usize>>,
}

impl Catalog {
    /// The shipped catalog, parsed once.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            Catalog::from_toml(BUILTIN_TOML, "catalog/apps.toml")
                .expect("the shipped catalog is validated by its tests")
        })
    }

    /// Builds a catalog from one TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Catalog, InspectError> {
        let entries = file::parse(text, origin)?;
        let mut base = Vec::new();
        file::merge(&mut base, entries, origin)?;
        Ok(Self::compile(base))
    }

    /// The shipped catalog with a config-given file applied on top: same id
    /// overrides class/reasons/name and extends (or, with `replace = true`,
    /// replaces) the lists; new ids are added. A host or endpoint listed in
    /// the overrides wins over the same one in the shipped file.
    pub fn with_overrides(text: &str, origin: &str) -> Result<Catalog, InspectError> {
        let mut base = file::parse(BUILTIN_TOML, "catalog/apps.toml")?;
        file::merge(&mut base, file::parse(text, origin)?, origin)?;
        Ok(Self::compile(base))
    }

    fn compile(entries: Vec<AppEntry>) -> Catalog {
        let mut c = Catalog {
            apps: Vec::with_capacity(entries.len()),
            exact: HashMap::new(),
            suffix: HashMap::new(),
            endpoints: Vec::new(),
            ports: HashMap::new(),
        };
        // Later entries win: merged overrides come after the shipped ones.
        for (idx, e) in entries.into_iter().enumerate() {
            for h in &e.hosts {
                match h.strip_prefix("*.") {
                    Some(parent) => c.suffix.insert(parent.to_owned(), idx),
                    None => c.exact.insert(h.clone(), idx),
                };
            }
            for (list, websocket) in [(&e.paths, false), (&e.websockets, true)] {
                for p in list {
                    c.endpoints.push(endpoint(p, websocket, idx));
                }
            }
            for port in &e.ports {
                c.ports.entry(*port).or_default().push(idx);
            }
            c.apps.push(App {
                name: e.name.unwrap_or_else(|| e.id.clone()),
                id: e.id,
                class: e.class.unwrap_or(Class::Inspectable),
                reasons: e.reasons.unwrap_or_default(),
                ports: e.ports,
                calls: e.calls.unwrap_or(CallMedia::Media),
                stun_software: e
                    .stun_software
                    .iter()
                    .map(|s| s.to_ascii_lowercase())
                    .collect(),
            });
        }
        // Longest (most specific) endpoint first.
        c.endpoints
            .sort_by_key(|e| std::cmp::Reverse((e.host.is_some(), e.path.len(), !e.prefix)));
        c
    }

    /// All apps, in file order.
    pub fn apps(&self) -> &[App] {
        &self.apps
    }

    /// The app with this id.
    pub fn app(&self, id: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.id == id)
    }

    /// The app a host name belongs to: an exact entry, else the nearest
    /// `*.` parent. Case and a trailing dot are ignored.
    pub fn lookup_host(&self, host: &str) -> Option<&App> {
        self.host_index(host).map(|i| &self.apps[i])
    }

    fn host_index(&self, host: &str) -> Option<usize> {
        let host = host.trim_end_matches('.');
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        if let Some(i) = self.exact.get(host) {
            return Some(*i);
        }
        let mut rest = host;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(i) = self.suffix.get(parent) {
                return Some(*i);
            }
            rest = parent;
        }
        None
    }

    /// The app an HTTP request or WebSocket upgrade belongs to, by endpoint
    /// (most specific rule first), else by host.
    pub fn lookup_http(&self, host: Option<&str>, path: &str, websocket: bool) -> Option<&App> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let host_app = host.and_then(|h| self.host_index(h));
        let hit = self.endpoints.iter().find(|e| {
            (!e.websocket || websocket)
                && match &e.host {
                    Some(pattern) => host.is_some_and(|h| host_matches(pattern, h)),
                    None => true,
                }
                && if e.prefix {
                    path.starts_with(&e.path)
                } else {
                    path == e.path
                }
        });
        hit.map(|e| e.app).or(host_app).map(|i| &self.apps[i])
    }

    /// The app whose clients send this STUN SOFTWARE text.
    pub fn lookup_stun_software(&self, software: &str) -> Option<&App> {
        let s = software.to_ascii_lowercase();
        self.apps
            .iter()
            .rev()
            .find(|a| a.stun_software.iter().any(|p| s.contains(p.as_str())))
    }

    /// Apps known to use this port (weak evidence).
    pub fn lookup_port(&self, port: u16) -> impl Iterator<Item = &App> {
        self.ports
            .get(&port)
            .into_iter()
            .flatten()
            .map(|i| &self.apps[*i])
    }
}

fn endpoint(pattern: &str, websocket: bool, app: usize) -> Endpoint {
    let (host, path) = match pattern.find('/') {
        Some(0) | None => (None, pattern),
        Some(i) => (Some(pattern[..i].to_owned()), &pattern[i..]),
    };
    let prefix = path.ends_with('*');
    Endpoint {
        host,
        path: path.trim_end_matches('*').to_owned(),
        prefix,
        websocket,
        app,
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    // Bytes, not str slices: a hostile Host header need not be ASCII.
    let host = host.trim_end_matches('.').as_bytes();
    match pattern.strip_prefix("*.") {
        Some(parent) => {
            let parent = parent.as_bytes();
            host.len() > parent.len() + 1
                && host[host.len() - parent.len()..].eq_ignore_ascii_case(parent)
                && host[host.len() - parent.len() - 1] == b'.'
        }
        None => host.eq_ignore_ascii_case(pattern.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every app id of DESIGN.md.
    pub(crate) const DESIGN_IDS: [&str; 27] = [
        "slack",
        "teams",
        "discord",
        "google-chat",
        "matrix",
        "mattermost",
        "rocketchat",
        "zulip",
        "messenger",
        "instagram",
        "telegram",
        "whatsapp",
        "signal",
        "xmpp",
        "webex",
        "linkedin",
        "x",
        "wire",
        "threema",
        "imessage",
        "viber",
        "wechat",
        "line",
        "kik",
        "zoom",
        "skype",
        "snapchat",
    ];

    #[test]
    fn shipped_catalog_covers_every_design_app_with_hosts() {
        let c = Catalog::builtin();
        for id in DESIGN_IDS {
            let app = c.app(id).unwrap_or_else(|| panic!("{id} missing"));
            let has_host = c
                .exact
                .values()
                .chain(c.suffix.values())
                .any(|i| c.apps[*i].id == id);
            assert!(has_host || !app.ports.is_empty(), "{id} has no hosts");
            assert_eq!(
                app.class == Class::Inspectable,
                app.reasons.is_empty(),
                "{id}: a non-inspectable app needs a reason"
            );
        }
    }

    #[test]
    fn every_shipped_app_says_where_its_hosts_come_from() {
        let entries = file::parse(BUILTIN_TOML, "catalog/apps.toml").unwrap();
        for e in &entries {
            assert!(!e.sources.is_empty(), "{} has no sources", e.id);
        }
        let c = Catalog::builtin();
        // Names shared by several Meta apps name none of them.
        assert_eq!(c.lookup_host("scontent.xx.fbcdn.net"), None);
        assert_eq!(c.lookup_host("abc.lync.com").unwrap().id, "teams");
        assert_eq!(
            c.lookup_host("x.secure.skypeassets.com").unwrap().id,
            "teams"
        );
        assert_eq!(c.lookup_host("login.skype.com").unwrap().id, "skype");
        assert_eq!(c.app("signal").unwrap().calls, CallMedia::E2ee);
        assert_eq!(c.app("zoom").unwrap().calls, CallMedia::Media);
        assert_eq!(c.lookup_stun_software("Zoom 5.17.1").unwrap().id, "zoom");
    }

    /// Names from the vendors' endpoint lists cited in `apps.toml` name
    /// their app; the shared names on the same lists name none (a wrong
    /// app is worse than none).
    #[test]
    fn published_endpoint_names_name_their_app_and_shared_ones_none() {
        let c = Catalog::builtin();
        let table: &[(&str, Option<&str>)] = &[
            // Microsoft 365 endpoints, "Skype for Business Online and
            // Microsoft Teams" (IDs 12, 13, 15, 16, 22, 27).
            ("teams.microsoft.com", Some("teams")),
            ("emea.ng.msg.teams.microsoft.com", Some("teams")),
            ("webdir0a.online.lync.com", Some("teams")),
            ("broadcast.skype.com", Some("teams")),
            ("x.broadcast.skype.com", Some("teams")),
            ("statics.sfbassets.com", Some("teams")),
            ("api.skypeforbusiness.com", Some("teams")),
            ("x.mstea.ms", Some("teams")),
            ("join.secure.skypeassets.com", Some("teams")),
            ("mlccdnprod.azureedge.net", Some("teams")),
            ("mlccdn.blob.core.windows.net", Some("teams")),
            ("teams.cloud.microsoft", Some("teams")),
            ("x.teams.cloud.microsoft", Some("teams")),
            // ID 127 stays Skype's.
            ("api.skype.com", Some("skype")),
            // Shared Microsoft names on the same list.
            ("aka.ms", None),
            ("x.keydelivery.mediaservices.windows.net", None),
            ("x.streaming.mediaservices.windows.net", None),
            ("x.users.storage.live.com", None),
            ("adl.windows.com", None),
            ("x.msedge.net", None),
            ("x.ecdn.microsoft.com", None),
            ("compass-ssl.microsoft.com", None),
            ("outlook.cloud.microsoft", None),
            ("cdn.azureedge.net", None),
            ("other.blob.core.windows.net", None),
            ("login.microsoftonline.com", None),
            ("graph.microsoft.com", None),
            // Zoom: KB0060548 (ja: KB0060561) and KB0058078.
            ("us02web.zoom.us", Some("zoom")),
            ("zoom.com", Some("zoom")),
            ("x.zoom.com", Some("zoom")),
            ("hybrid.zoomonprem.com", Some("zoom")),
            ("ocsp.digicert.com", None),
            ("static.zdassets.com", None),
            // Meta: shared CDN and Facebook names name no messaging app.
            ("scontent.xx.fbcdn.net", None),
            ("x.fbsbx.com", None),
            ("www.facebook.com", None),
            ("graph.facebook.com", None),
            ("edge-chat.facebook.com", Some("messenger")),
            ("g.whatsapp.net", Some("whatsapp")),
            ("i.instagram.com", Some("instagram")),
            // Webex's, Slack's domains, as catalogued.
            ("x.wbx2.com", Some("webex")),
            ("webexapis.com", Some("webex")),
            ("a.slack-edge.com", Some("slack")),
        ];
        let mut wrong = Vec::new();
        for (host, want) in table {
            let got = c.lookup_host(host).map(|a| a.id.as_str());
            if got != *want {
                wrong.push(format!("{host}: {got:?}, want {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn exact_and_suffix_hosts_resolve_most_specific_first() {
        let c = Catalog::builtin();
        assert_eq!(
            c.lookup_host("slack.com").map(|a| a.id.as_str()),
            Some("slack")
        );
        assert_eq!(
            c.lookup_host("Files.Slack.com.").map(|a| a.id.as_str()),
            Some("slack")
        );
        assert_eq!(
            c.lookup_host("web.whatsapp.com").map(|a| a.id.as_str()),
            Some("whatsapp")
        );
        assert_eq!(c.lookup_host("notslack.com"), None);
        assert_eq!(c.lookup_host("com"), None);
    }

    #[test]
    fn endpoints_identify_self_hosted_apps() {
        let c = Catalog::builtin();
        let id = |h: Option<&str>, p: &str, ws: bool| c.lookup_http(h, p, ws).map(|a| a.id.clone());
        assert_eq!(
            id(
                Some("chat.corp.example"),
                "/_matrix/client/v3/sync?since=1",
                false
            )
            .as_deref(),
            Some("matrix")
        );
        assert_eq!(
            id(Some("mm.corp.example"), "/api/v4/websocket", true).as_deref(),
            Some("mattermost")
        );
        assert_eq!(id(Some("example.org"), "/index.html", false), None);
    }

    #[test]
    fn overrides_add_in_house_hosts_and_win() {
        let c = Catalog::with_overrides(
            "[[app]]\nid = \"mattermost\"\nhosts = [\"chat.corp.example\"]\n\
             [[app]]\nid = \"slack\"\nclass = \"metadata-only\"\nreasons = [\"pinned\"]\n",
            "gatehouse.toml",
        )
        .unwrap();
        assert_eq!(c.lookup_host("chat.corp.example").unwrap().id, "mattermost");
        let slack = c.app("slack").unwrap();
        assert_eq!(
            (slack.class, slack.reasons.as_slice()),
            (Class::MetadataOnly, &[Reason::Pinned][..])
        );
        assert_eq!(c.lookup_host("files.slack.com").unwrap().id, "slack");
    }

    #[test]
    fn wildcard_matching_needs_a_label_boundary() {
        assert!(host_matches("*.a.com", "x.a.com"));
        assert!(!host_matches("*.a.com", "a.com"));
        assert!(!host_matches("*.a.com", "xa.com"));
        assert!(host_matches("a.com", "A.com"));
    }
}
