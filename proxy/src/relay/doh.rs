//! DNS-over-HTTPS answers (`application/dns-message`, RFC 8484, to GET or
//! POST `/dns-query`) in intercepted responses get the rewrite the DNS
//! listener gives UDP answers: HTTPS records lose `h3` where QUIC is
//! blocked for the name, and `ech` when asked (the inspectors'
//! `identify::svcb`). An answer that cannot be read or rewritten is not
//! relayed: the client gets a 502 and the flow a `policy` event.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use gatehouse_inspectors::identify::dns;
use gatehouse_inspectors::identify::svcb::{self, Rewritten, Strip};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;

use super::http::{full, Body};

/// What the flow says about its DoH answers: whether QUIC is blocked for a
/// name (so its HTTPS records lose `h3`), and where a refused answer is
/// recorded. A trait rather than closures: a higher-ranked closure type
/// held across an await makes rustc unable to prove the relay's future
/// `Send`.
pub trait DohPolicy: Send + Sync {
    /// Whether QUIC is blocked for `name`.
    fn h3_blocked(&self, name: &str) -> bool;
    /// Records that an answer was not relayed, and why.
    fn refused(&self, why: &str);
}

/// What DoH answers lose on a flow.
#[derive(Clone)]
pub struct Doh {
    /// Asked with the queried name (without a `_port._https.` prefix).
    pub policy: Arc<dyn DohPolicy>,
    /// Remove the `ech` parameter.
    pub strip_ech: bool,
}

/// A DNS message is at most this long.
const MAX_MESSAGE: usize = 65_535;

/// What becomes of one DoH answer body.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Relay it as it is.
    Unchanged,
    /// Relay this instead.
    Replaced(Bytes),
    /// Do not relay it: why.
    Unreadable(String),
}

/// Whether a response carries a DNS message.
pub fn is_dns_message(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/dns-message"))
}

/// Rewrites one DoH answer body.
pub fn rewrite_body(body: &[u8], doh: &Doh) -> Outcome {
    let Some(m) = dns::parse(body).filter(|m| m.response) else {
        return Outcome::Unreadable("not a DNS answer".into());
    };
    let strip = Strip {
        h3: doh.policy.h3_blocked(svcb::https_name(&m.qname)),
        ech: doh.strip_ech,
    };
    match svcb::rewrite(body, strip) {
        Ok(Rewritten::Unchanged) => Outcome::Unchanged,
        Ok(Rewritten::Changed { message, .. }) => Outcome::Replaced(Bytes::from(message)),
        Err(e) => Outcome::Unreadable(e.to_string()),
    }
}

/// The response to relay: a DoH answer rewritten (read whole: a DNS
/// message is small), anything else as it is. Boxed: the relay's
/// per-request future stays provably `Send`.
pub fn response(
    resp: Response<Body>,
    doh: Option<Doh>,
) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
    Box::pin(async move {
        let Some(doh) = doh else { return resp };
        if !is_dns_message(resp.headers()) {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        let encoded = parts
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes() != b"identity");
        if encoded {
            return refused(&doh, "a content-encoded DNS answer");
        }
        let mut body = body;
        let mut read = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return refused(&doh, "the DNS answer could not be read");
            };
            if let Ok(data) = frame.into_data() {
                if read.len() + data.len() > MAX_MESSAGE {
                    return refused(&doh, "a DNS answer longer than a DNS message can be");
                }
                read.extend_from_slice(&data);
            }
        }
        let bytes = read.freeze();
        let bytes = match rewrite_body(&bytes, &doh) {
            Outcome::Unchanged => bytes,
            Outcome::Replaced(b) => b,
            Outcome::Unreadable(why) => return refused(&doh, &why),
        };
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        Response::from_parts(parts, full(bytes))
    })
}

fn refused(doh: &Doh, why: &str) -> Response<Body> {
    tracing::warn!(reason = why, "DoH answer not relayed");
    doh.policy.refused(why);
    let mut r = Response::new(full(Bytes::from(format!(
        "Gatehouse: DNS-over-HTTPS answer not relayed: {why}\n"
    ))));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_inspectors::identify::dns::build_response;

    /// An answer for `name` type HTTPS: priority 1, target ".", alpn h3,h2, ech.
    fn https_answer(name: &str) -> Vec<u8> {
        let mut m = build_response(3, name, svcb::TYPE_HTTPS, &[], 0);
        m[7] = 1;
        let rdata = [
            0, 1, 0, 0, 1, 0, 6, 2, b'h', b'3', 2, b'h', b'2', 0, 5, 0, 2, 0xab, 0xcd,
        ];
        m.extend([0xc0, 12]);
        m.extend(svcb::TYPE_HTTPS.to_be_bytes());
        m.extend(1u16.to_be_bytes());
        m.extend(300u32.to_be_bytes());
        m.extend((rdata.len() as u16).to_be_bytes());
        m.extend(rdata);
        m
    }

    struct Blocks(&'static str, std::sync::Mutex<Vec<String>>);

    impl DohPolicy for Blocks {
        fn h3_blocked(&self, name: &str) -> bool {
            name == self.0
        }
        fn refused(&self, why: &str) {
            self.1.lock().unwrap().push(why.to_string());
        }
    }

    fn blocks(blocked: &'static str) -> Arc<Blocks> {
        Arc::new(Blocks(blocked, Default::default()))
    }

    fn doh(blocked: &'static str, strip_ech: bool) -> Doh {
        Doh {
            policy: blocks(blocked),
            strip_ech,
        }
    }

    #[test]
    fn h3_goes_only_where_quic_is_blocked() {
        let m = https_answer("blocked.test");
        let Outcome::Replaced(b) = rewrite_body(&m, &doh("blocked.test", false)) else {
            panic!()
        };
        assert!(!b.windows(3).any(|w| w == [2, b'h', b'3']));
        assert!(b.windows(3).any(|w| w == [2, b'h', b'2']));
        assert!(dns::parse(&b).is_some());
        assert_eq!(
            rewrite_body(&https_answer("other.test"), &doh("blocked.test", false)),
            Outcome::Unchanged
        );
        let Outcome::Replaced(b) = rewrite_body(&https_answer("other.test"), &doh("x", true))
        else {
            panic!()
        };
        assert!(!b.windows(2).any(|w| w == [0xab, 0xcd]), "ech gone");
        assert!(matches!(
            rewrite_body(b"<html>not dns</html>", &doh("x", true)),
            Outcome::Unreadable(_)
        ));
    }

    #[tokio::test]
    async fn responses_are_rewritten_whole_or_refused() {
        let ok = |body: Vec<u8>, ct: &str| {
            let mut r = Response::new(full(Bytes::from(body)));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            r
        };
        let policy = blocks("blocked.test");
        let d = Doh {
            policy: policy.clone(),
            strip_ech: true,
        };
        let r = response(
            ok(https_answer("blocked.test"), "application/dns-message"),
            Some(d.clone()),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let len: usize = r.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), len);
        assert!(!body.windows(3).any(|w| w == [2, b'h', b'3']));
        // Not DNS: untouched. Claimed DNS but unreadable: refused.
        let r = response(ok(b"hello".to_vec(), "text/plain"), Some(d.clone())).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(policy.1.lock().unwrap().is_empty());
        let r = response(ok(b"hello".to_vec(), "application/dns-message"), Some(d)).await;
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            *policy.1.lock().unwrap(),
            vec!["not a DNS answer".to_string()],
            "the refusal is recorded"
        );
        // Off: untouched even when it is DNS.
        let r = response(
            ok(https_answer("blocked.test"), "application/dns-message"),
            None,
        )
        .await;
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert!(body.windows(3).any(|w| w == [2, b'h', b'3']));
    }
}
