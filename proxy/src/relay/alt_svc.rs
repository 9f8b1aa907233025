//! `Alt-Svc` without HTTP/3: where the gateway refuses QUIC, a server's
//! `h3` advertisement only makes clients try QUIC, wait for the refusal and
//! fall back; removing it from intercepted responses keeps them on TCP.

use http::header::ALT_SVC;
use http::{HeaderMap, HeaderValue};

/// Whether an Alt-Svc protocol id is HTTP/3 or gQUIC (`h3`, `h3-29`, `quic`).
fn is_quic(protocol_id: &str) -> bool {
    let p = protocol_id.trim().to_ascii_lowercase();
    p == "h3" || p.starts_with("h3-") || p == "quic"
}

/// Splits an Alt-Svc value on the commas outside quoted strings.
fn alternatives(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

/// Removes the HTTP/3 and gQUIC alternatives from every `Alt-Svc` header,
/// and the header itself when nothing else is left. `clear` and the other
/// alternatives stay as sent.
pub fn strip_h3(headers: &mut HeaderMap) {
    if !headers.contains_key(ALT_SVC) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(ALT_SVC)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(alternatives)
        .filter(|alt| {
            let id = alt.split('=').next().unwrap_or_default();
            !alt.trim().is_empty() && !is_quic(id)
        })
        .map(|alt| alt.trim().to_string())
        .collect();
    headers.remove(ALT_SVC);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join(", ")) {
            headers.insert(ALT_SVC, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(values: &[&str]) -> Option<String> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ALT_SVC, HeaderValue::from_str(v).unwrap());
        }
        strip_h3(&mut h);
        h.get(ALT_SVC).map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn h3_alternatives_go_and_the_rest_stays() {
        assert_eq!(
            strip(&[r#"h3=":443"; ma=86400, h3-29=":443"; ma=86400"#]),
            None
        );
        assert_eq!(
            strip(&[r#"h3=":443"; ma=2592000,h2="alt.example:443"; ma=60"#]),
            Some(r#"h2="alt.example:443"; ma=60"#.into())
        );
        assert_eq!(
            strip(&[r#"quic=":443"; ma=2592000; v="46,43""#, r#"H3=":8443""#]),
            None,
            "gQUIC (a quoted comma in its versions) and any case"
        );
        assert_eq!(strip(&["clear"]), Some("clear".into()));
        assert_eq!(strip(&[]), None);
    }
}
