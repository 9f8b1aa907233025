//! Plain HTTP/1.x requests (and the HTTP/2 prior-knowledge preface).
//!
//! The request head is parsed with `httparse`, hyper's parser; this file only
//! decides when enough bytes are there and what to keep.

use super::sniff::{starts_with, Sniff};

/// Methods a client may open a connection with.
const METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PRI ",
];
/// A request head longer than this is judged on what arrived.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// The request line and the headers that matter for identification.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpRequest {
    /// Request method.
    pub method: String,
    /// Request target as sent (origin-form path, absolute URI, or authority).
    pub target: String,
    /// `HTTP/1.0`, `HTTP/1.1`, or `HTTP/2.0` for the h2c preface.
    pub version: String,
    /// The Host header, lowercased, without port.
    pub host: Option<String>,
    /// An `Upgrade: websocket` request.
    pub websocket: bool,
}

impl HttpRequest {
    /// The path of the target: origin-form as is, absolute-form (explicit
    /// proxy requests) without scheme and authority.
    pub fn path(&self) -> &str {
        match self.absolute() {
            Some((_, path)) => path,
            None => &self.target,
        }
    }

    /// The host to attribute the request to: the Host header, else the
    /// authority of an absolute-form target.
    pub fn effective_host(&self) -> Option<&str> {
        self.host
            .as_deref()
            .or_else(|| self.absolute().map(|(authority, _)| strip_port(authority)))
    }

    fn absolute(&self) -> Option<(&str, &str)> {
        let rest = self
            .target
            .strip_prefix("http://")
            .or_else(|| self.target.strip_prefix("https://"))?;
        let split = rest.find('/').unwrap_or(rest.len());
        let path = if split == rest.len() {
            "/"
        } else {
            &rest[split..]
        };
        Some((&rest[..split], path))
    }
}

/// Recognises an HTTP request head at the start of a stream.
pub fn detect(buf: &[u8]) -> Sniff<HttpRequest> {
    let mut any_prefix = false;
    for m in METHODS {
        match starts_with(buf, m) {
            Some(true) => return parse_head(buf),
            None => any_prefix = true,
            Some(false) => {}
        }
    }
    if any_prefix {
        Sniff::NeedMore
    } else {
        Sniff::No
    }
}

fn parse_head(buf: &[u8]) -> Sniff<HttpRequest> {
    if buf.starts_with(b"PRI ") {
        return match starts_with(buf, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") {
            Some(true) => Sniff::Yes(HttpRequest {
                method: "PRI".into(),
                target: "*".into(),
                version: "HTTP/2.0".into(),
                host: None,
                websocket: false,
            }),
            None => Sniff::NeedMore,
            Some(false) => Sniff::No,
        };
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let window = &buf[..buf.len().min(MAX_HEAD)];
    match req.parse(window) {
        Ok(httparse::Status::Complete(_)) => Sniff::Yes(summarise(&req)),
        Ok(httparse::Status::Partial) if window.len() < MAX_HEAD => Sniff::NeedMore,
        // A head past the cap: the request line alone still identifies it.
        Ok(httparse::Status::Partial) if req.version.is_some() => Sniff::Yes(summarise(&req)),
        Ok(httparse::Status::Partial) => Sniff::No,
        // Too many headers is still HTTP; anything else is not.
        Err(httparse::Error::TooManyHeaders) => request_line_only(window),
        Err(_) => Sniff::No,
    }
}

fn request_line_only(buf: &[u8]) -> Sniff<HttpRequest> {
    let mut none: [httparse::Header<'_>; 0] = [];
    let mut req = httparse::Request::new(&mut none);
    match req.parse(buf) {
        Ok(_) | Err(httparse::Error::TooManyHeaders) if req.version.is_some() => {
            Sniff::Yes(summarise(&req))
        }
        _ => Sniff::No,
    }
}

fn summarise(req: &httparse::Request<'_, '_>) -> HttpRequest {
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let host = header("host").map(|h| strip_port(h).to_ascii_lowercase());
    let websocket = header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    HttpRequest {
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
        version: format!("HTTP/1.{}", req.version.unwrap_or(1)),
        host,
        websocket,
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"GET /api/v4/websocket HTTP/1.1\r\nHost: Chat.Example.com:8065\r\n\
        Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

    #[test]
    fn a_complete_head_is_http_with_host_and_upgrade() {
        let Sniff::Yes(r) = detect(REQ) else {
            panic!("not http")
        };
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/api/v4/websocket");
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.host.as_deref(), Some("chat.example.com"));
        assert!(r.websocket);
    }

    #[test]
    fn prefixes_need_more_and_other_bytes_are_no() {
        for cut in 0..REQ.len() {
            assert_eq!(detect(&REQ[..cut]), Sniff::NeedMore, "{cut}");
        }
        assert_eq!(detect(b"GEX"), Sniff::No);
        assert_eq!(detect(b"\x16\x03\x01"), Sniff::No);
        assert_eq!(detect(b"GET /\x01 HTTP/1.1\r\n\r\n"), Sniff::No);
    }

    #[test]
    fn h2_prior_knowledge_preface_is_http2() {
        let Sniff::Yes(r) = detect(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") else {
            panic!()
        };
        assert_eq!(r.version, "HTTP/2.0");
    }

    #[test]
    fn absolute_form_targets_give_host_and_path() {
        let Sniff::Yes(r) = detect(b"GET http://Example.com:8080/a/b?c HTTP/1.1\r\n\r\n") else {
            panic!()
        };
        assert_eq!(r.path(), "/a/b?c");
        assert_eq!(r.effective_host(), Some("Example.com"));
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
