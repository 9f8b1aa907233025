//! Sealed evidence: the unmasked match of a DLP finding and its context,
//! encrypted at capture time to the console's public key, so that the
//! journal and ClickHouse hold only ciphertext.
//!
//! HPKE (RFC 9180) single-shot base mode, DHKEM(X25519, HKDF-SHA256) +
//! HKDF-SHA256 + ChaCha20-Poly1305, from the `hpke` crate. Chosen over a
//! NaCl sealed box (`crypto_box`, whose current release is a pre-release)
//! because HPKE is a standard with test vectors, and its AAD binds each
//! ciphertext to the id of the finding that carries it: a ciphertext moved
//! to another finding does not open.

use std::fmt;
use std::path::Path;

use base64::Engine;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

type Kem = X25519HkdfSha256;

/// HPKE `info`: names the format, so a ciphertext of anything else never opens as evidence.
const INFO: &[u8] = b"gatehouse sealed evidence v1";
/// Length of the encapsulated key in front of the ciphertext.
const ENC_LEN: usize = 32;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What a finding seals: the unmasked match and the text around it.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// The matched text.
    #[serde(rename = "match")]
    pub matched: String,
    /// The text around it (up to [`CONTEXT_CHARS`] characters each side).
    #[serde(default)]
    pub context: String,
}

/// Characters of context kept each side of a match.
pub const CONTEXT_CHARS: usize = 60;

impl fmt::Debug for Evidence {
    // Never in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Evidence(<unmasked, not shown>)")
    }
}

impl Evidence {
    /// The match at byte offsets `start..end` of `text`, with its context.
    pub fn in_text(matched: &str, text: &str, start: usize, end: usize) -> Self {
        let context = match (text.get(..start), text.get(end..)) {
            (Some(before), Some(after)) if text.get(start..end) == Some(matched) => {
                let skip = before.chars().count().saturating_sub(CONTEXT_CHARS);
                let before: String = before.chars().skip(skip).collect();
                let after: String = after.chars().take(CONTEXT_CHARS).collect();
                format!("{before}{matched}{after}")
            }
            _ => matched.to_string(),
        };
        Self {
            matched: matched.to_string(),
            context,
        }
    }
}

/// Why sealed evidence could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// A key is not 32 bytes of base64.
    #[error("not an X25519 key (32 bytes, base64): {0}")]
    BadKey(String),
    /// The ciphertext is damaged, for another key, or for another finding.
    #[error(
        "sealed evidence does not open with this key (damaged, another key, or another finding)"
    )]
    Open,
    /// Encryption failed.
    #[error("sealing failed: {0}")]
    Seal(String),
}

/// The console's public key: what gateways seal findings to.
#[derive(Clone)]
pub struct SealKey(<Kem as hpke::Kem>::PublicKey);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealKey({})", self.to_base64())
    }
}

impl SealKey {
    /// Parses `public_key` from the config (base64 of 32 bytes).
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| SealError::BadKey(e.to_string()))?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey(format!("{} bytes", bytes.len())));
        }
        <Kem as hpke::Kem>::PublicKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|e| SealError::BadKey(e.to_string()))
    }

    /// The key as the config writes it.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.to_bytes())
    }

    /// Seals `evidence` for the finding recorded under `id`: base64 of the
    /// encapsulated key followed by the ciphertext.
    pub fn seal(&self, id: Uuid, evidence: &Evidence) -> Result<String, SealError> {
        let plain = serde_json::to_vec(evidence).map_err(|e| SealError::Seal(e.to_string()))?;
        let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeS::Base,
            &self.0,
            INFO,
            &plain,
            id.as_bytes(),
        )
        .map_err(|e| SealError::Seal(e.to_string()))?;
        let mut out = enc.to_bytes().to_vec();
        out.extend_from_slice(&ct);
        Ok(B64.encode(out))
    }
}

/// The console's private key: opens sealed evidence. Lives only where the
/// console runs, in a file of mode 0600.
pub struct OpenKey(<Kem as hpke::Kem>::PrivateKey);

impl fmt::Debug for OpenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpenKey(<private>)")
    }
}

impl OpenKey {
    /// A fresh key pair.
    pub fn generate() -> Self {
        Self(Kem::gen_keypair().0)
    }

    /// Parses the key file's text (base64 of 32 bytes).
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| SealError::BadKey(e.to_string()))?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey(format!("{} bytes", bytes.len())));
        }
        <Kem as hpke::Kem>::PrivateKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|e| SealError::BadKey(e.to_string()))
    }

    /// Loads the key file at `path`, refusing it unless only its owner can
    /// read it (mode 0600 or stricter). The error names the file and mode.
    pub fn load(path: &Path) -> Result<Self, String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{}: mode {mode:04o} lets others read the console private key; chmod 600 it",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_base64(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The key file's text.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.to_bytes())
    }

    /// The matching public key.
    pub fn public(&self) -> SealKey {
        SealKey(Kem::sk_to_pk(&self.0))
    }

    /// Opens evidence sealed for the finding `id`.
    pub fn open(&self, id: Uuid, sealed: &str) -> Result<Evidence, SealError> {
        let raw = B64.decode(sealed.trim()).map_err(|_| SealError::Open)?;
        if raw.len() <= ENC_LEN {
            return Err(SealError::Open);
        }
        let (enc, ct) = raw.split_at(ENC_LEN);
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| SealError::Open)?;
        let plain = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.0,
            &enc,
            INFO,
            ct,
            id.as_bytes(),
        )
        .map_err(|_| SealError::Open)?;
        serde_json::from_slice(&plain).map_err(|_| SealError::Open)
    }
}

/// The unmasked evidence a finding carries from capture to the journal
/// sink, which seals it. Never serialised and never shown by `Debug`: an
/// event written anywhere without sealing simply has none.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Unsealed(pub Option<Evidence>);

impl fmt::Debug for Unsealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Unsealed(<held>)"
        } else {
            "Unsealed(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Evidence {
        Evidence::in_text("4111111111111111", "card 4111111111111111 ok", 5, 21)
    }

    #[test]
    fn sealed_evidence_opens_only_with_the_key_and_for_its_finding() {
        let key = OpenKey::generate();
        let id = Uuid::now_v7();
        let sealed = key.public().seal(id, &ev()).unwrap();
        assert!(!sealed.contains("4111"));
        let opened = key.open(id, &sealed).unwrap();
        assert_eq!(opened.matched, "4111111111111111");
        assert_eq!(opened.context, "card 4111111111111111 ok");
        assert_eq!(key.open(Uuid::now_v7(), &sealed), Err(SealError::Open));
        assert_eq!(OpenKey::generate().open(id, &sealed), Err(SealError::Open));
        let mut bad = B64.decode(&sealed).unwrap();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(id, &B64.encode(bad)), Err(SealError::Open));
    }

    #[test]
    fn keys_round_trip_through_base64() {
        let key = OpenKey::generate();
        let again = OpenKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(again.public().to_base64(), key.public().to_base64());
        let public = SealKey::from_base64(&key.public().to_base64()).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(
            key.open(id, &public.seal(id, &ev()).unwrap()).unwrap(),
            ev()
        );
        assert!(SealKey::from_base64("c2hvcnQ=").is_err());
        assert!(format!("{key:?}").contains("private"));
        assert!(!format!("{:?}", ev()).contains("4111"));
    }

    #[test]
    fn context_is_cut_at_character_boundaries() {
        let text = format!("{}SECRET{}", "é".repeat(100), "ü".repeat(100));
        let start = text.find("SECRET").unwrap();
        let e = Evidence::in_text("SECRET", &text, start, start + 6);
        assert_eq!(e.context.chars().count(), 6 + 2 * CONTEXT_CHARS);
        // Offsets that do not point at the match keep only the match.
        assert_eq!(Evidence::in_text("SECRET", &text, 0, 6).context, "SECRET");
    }

    #[test]
    fn private_key_files_others_can_read_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.key");
        std::fs::write(&path, OpenKey::generate().to_base64()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = OpenKey::load(&path).unwrap_err();
        assert!(err.contains("console.key") && err.contains("0644"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(OpenKey::load(&path).is_ok());
    }
}
