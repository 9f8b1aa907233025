//! Compact JWE recognition (RFC 7516 §7.1): Webex and others encrypt message
//! content client-side and send it as `header.key.iv.ciphertext.tag`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// The protected header of a compact JWE: the evidence that content is
/// encrypted, never the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JweHeader {
    /// Key management algorithm (`dir`, `RSA-OAEP`, ...).
    pub alg: String,
    /// Content encryption algorithm (`A256GCM`, ...).
    pub enc: String,
    /// Key id, when present (Webex: a KMS key URI).
    pub kid: Option<String>,
}

impl JweHeader {
    /// Parses `s` if it is a compact JWE: five base64url parts whose first
    /// decodes to a JSON object with `alg` and `enc`.
    pub fn parse(s: &str) -> Option<JweHeader> {
        let s = s.trim();
        let mut parts = s.split('.');
        let header = parts.next()?;
        if parts.count() != 4 || header.len() > 4096 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
        let v: Value = serde_json::from_slice(&raw).ok()?;
        Some(JweHeader {
            alg: v.get("alg")?.as_str()?.to_owned(),
            enc: v.get("enc")?.as_str()?.to_owned(),
            kid: v.get("kid").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// `jwe alg=dir enc=A256GCM`, for events.
    pub fn evidence(&self, field: &str) -> String {
        format!("{field}: compact JWE alg={} enc={}", self.alg, self.enc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_compact_jwe_only() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"dir","enc":"A256GCM","kid":"kms://k/1"}"#);
        let jwe = format!("{h}..aXY.Y2lwaGVy.dGFn");
        let got = JweHeader::parse(&jwe).unwrap();
        assert_eq!((got.alg.as_str(), got.enc.as_str()), ("dir", "A256GCM"));
        assert_eq!(got.kid.as_deref(), Some("kms://k/1"));
        assert!(JweHeader::parse("hello. this is. a sentence. with. dots").is_none());
        assert!(JweHeader::parse(&format!("{h}.a.b.c")).is_none());
    }
}
