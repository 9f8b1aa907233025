//! The catalog's TOML format, its validation, and merging a config-given
//! file over the shipped one.

use serde::Deserialize;

use super::{CallMedia, Class, Reason};
use crate::InspectError;

/// One `[[app]]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppEntry {
    /// Stable lowercase app id (DESIGN.md's list, or an in-house id).
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// How much Gatehouse can see of this app's traffic. Required for a new
    /// id; when merging, overrides the shipped class.
    pub class: Option<Class>,
    /// Why the app is not inspectable; overrides when merging.
    pub reasons: Option<Vec<Reason>>,
    /// Host patterns: `example.com` (exact) or `*.example.com` (any name
    /// below it).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// HTTP endpoints: `/path`, `host/path`, or with a trailing `*` for a
    /// prefix. A pattern without a host matches on any host: use those for
    /// self-hostable apps (Matrix, Mattermost, ...).
    #[serde(default)]
    pub paths: Vec<String>,
    /// WebSocket endpoints, in the same form as `paths`.
    #[serde(default)]
    pub websockets: Vec<String>,
    /// Ports the app is known to use: weak evidence, used only when nothing
    /// better matched.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// What the app's calls are: `e2ee` (end-to-end encrypted media) or
    /// `media` (media the provider can read). Default `media`.
    pub calls: Option<CallMedia>,
    /// Lowercase substrings of the STUN SOFTWARE attribute the app's
    /// clients send.
    #[serde(default)]
    pub stun_software: Vec<String>,
    /// Where the host list comes from (the app's own documentation of the
    /// endpoints it needs), for readers.
    #[serde(default)]
    pub sources: Vec<String>,
    /// When merging: replace the shipped lists instead of extending them.
    #[serde(default)]
    pub replace: bool,
    /// Free-form note for readers of the file.
    pub note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default, rename = "app")]
    apps: Vec<AppEntry>,
}

fn catalog_error(origin: &str, problems: Vec<String>) -> InspectError {
    InspectError::Malformed {
        protocol: "app catalog",
        reason: format!("{origin}: {}", problems.join("; ")),
    }
}

/// Parses and validates a catalog file, reporting every problem at once.
/// `origin` names the file in messages.
pub(crate) fn parse(text: &str, origin: &str) -> Result<Vec<AppEntry>, InspectError> {
    let file: CatalogFile =
        toml::from_str(text).map_err(|e| catalog_error(origin, vec![e.to_string()]))?;
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, app) in file.apps.iter().enumerate() {
        let at = format!("app[{i}] ({})", app.id);
        if app.id.is_empty()
            || !app
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            problems.push(format!("{at}.id: use lowercase letters, digits and '-'"));
        }
        if !seen.insert(app.id.as_str()) {
            problems.push(format!("{at}.id: listed twice in one file"));
        }
        for h in &app.hosts {
            if let Err(e) = check_host_pattern(h) {
                problems.push(format!("{at}.hosts: {h:?}: {e}"));
            }
        }
        for (field, list) in [("paths", &app.paths), ("websockets", &app.websockets)] {
            for p in list {
                if let Err(e) = check_endpoint(p) {
                    problems.push(format!("{at}.{field}: {p:?}: {e}"));
                }
            }
        }
        if app.class == Some(Class::Inspectable)
            && app.reasons.as_ref().is_some_and(|r| !r.is_empty())
        {
            problems.push(format!("{at}.reasons: an inspectable app has no reasons"));
        }
    }
    if problems.is_empty() {
        Ok(file.apps)
    } else {
        Err(catalog_error(origin, problems))
    }
}

fn check_host_pattern(h: &str) -> Result<(), &'static str> {
    let name = h.strip_prefix("*.").unwrap_or(h);
    if name.is_empty() || name.contains('*') {
        return Err("only a leading '*.' wildcard is allowed");
    }
    if name
        .split('.')
        .any(|l| l.is_empty() || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        return Err("not a host name");
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("write host names in lowercase");
    }
    Ok(())
}

fn check_endpoint(p: &str) -> Result<(), &'static str> {
    let path = match p.find('/') {
        Some(0) => p,
        Some(i) => {
            check_host_pattern(&p[..i])?;
            &p[i..]
        }
        None => return Err("needs a path starting with '/'"),
    };
    if path.trim_end_matches('*').contains('*') {
        return Err("only a trailing '*' is allowed in a path");
    }
    Ok(())
}

/// Applies `overrides` on top of `base`: same id → fields given override,
/// lists extend (or replace with `replace = true`); new ids are added.
/// Every new id must carry a class.
pub(crate) fn merge(
    base: &mut Vec<AppEntry>,
    overrides: Vec<AppEntry>,
    origin: &str,
) -> Result<(), InspectError> {
    let mut problems = Vec::new();
    for o in overrides {
        match base.iter_mut().find(|b| b.id == o.id) {
            Some(b) => {
                if o.name.is_some() {
                    b.name = o.name;
                }
                if o.class.is_some() {
                    b.class = o.class;
                }
                if o.reasons.is_some() {
                    b.reasons = o.reasons;
                }
                if o.note.is_some() {
                    b.note = o.note;
                }
                if o.calls.is_some() {
                    b.calls = o.calls;
                }
                b.sources.extend(o.sources);
                if o.replace {
                    b.hosts = o.hosts;
                    b.paths = o.paths;
                    b.websockets = o.websockets;
                    b.ports = o.ports;
                    b.stun_software = o.stun_software;
                } else {
                    b.stun_software.extend(o.stun_software);
                    b.hosts.extend(o.hosts);
                    b.paths.extend(o.paths);
                    b.websockets.extend(o.websockets);
                    b.ports.extend(o.ports);
                }
            }
            None if o.class.is_none() => {
                problems.push(format!("app {:?}: a new app needs a class", o.id));
            }
            None => base.push(o),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(catalog_error(origin, problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
            [[app]]
            id = "Bad Id"
            hosts = ["a.*.com", "UPPER.com"]
            paths = ["no-slash", "/a*b"]
            class = "inspectable"
            reasons = ["e2ee"]
        "#;
        let Err(InspectError::Malformed { reason, .. }) = parse(text, "test.toml") else {
            panic!("accepted")
        };
        for needle in ["id:", "a.*.com", "UPPER.com", "no-slash", "/a*b", "reasons"] {
            assert!(reason.contains(needle), "{needle} missing in {reason}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(parse("[[app]]\nid = \"x\"\nhostz = []\n", "t").is_err());
    }

    #[test]
    fn merge_extends_overrides_and_adds() {
        let mut base = parse(
            "[[app]]\nid = \"matrix\"\nclass = \"inspectable\"\nhosts = [\"matrix.org\"]\n",
            "base",
        )
        .unwrap();
        let over = parse(
            "[[app]]\nid = \"matrix\"\nhosts = [\"matrix.corp.example\"]\n\
             [[app]]\nid = \"corp-chat\"\nclass = \"opaque\"\nreasons = [\"pinned\"]\n",
            "over",
        )
        .unwrap();
        merge(&mut base, over, "over").unwrap();
        assert_eq!(base[0].hosts, vec!["matrix.org", "matrix.corp.example"]);
        assert_eq!(base[1].id, "corp-chat");
        let no_class = parse("[[app]]\nid = \"new\"\n", "x").unwrap();
        assert!(merge(&mut base, no_class, "x").is_err());
    }
}
