//! Key material on disk and key generation: modes, exclusive creation,
//! and the algorithms a CA may use.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rcgen::KeyPair;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::CertError;

/// The key algorithm of a new CA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaKeyAlgorithm {
    /// ECDSA on P-256 with SHA-256: small, fast, universally accepted.
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// RSA 3072 with PKCS#1 v1.5 SHA-256, for clients without ECDSA.
    Rsa3072,
}

impl std::str::FromStr for CaKeyAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "p256" | "p-256" => Ok(Self::EcdsaP256),
            "ecdsa-p384" | "p384" | "p-384" => Ok(Self::EcdsaP384),
            "rsa-3072" | "rsa3072" | "rsa" => Ok(Self::Rsa3072),
            _ => Err(format!(
                "unknown CA key algorithm {s:?}; expected ecdsa-p256, ecdsa-p384 or rsa-3072"
            )),
        }
    }
}

impl CaKeyAlgorithm {
    pub(crate) fn generate(self) -> Result<KeyPair, CertError> {
        match self {
            Self::EcdsaP256 => Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?),
            Self::EcdsaP384 => Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?),
            Self::Rsa3072 => generate_rsa(3072),
        }
    }
}

/// ring (rcgen's backend here) cannot generate RSA keys, so the RustCrypto
/// `rsa` crate generates this one; every signature is still made by ring.
/// (The `rsa` crate's timing advisory concerns its private-key operations,
/// which are never used.)
fn generate_rsa(bits: usize) -> Result<KeyPair, CertError> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).map_err(|e| {
        CertError::CaRejected {
            reason: format!("RSA key generation failed: {e}"),
        }
    })?;
    let der = key.to_pkcs8_der().map_err(|e| CertError::CaRejected {
        reason: format!("RSA key encoding failed: {e}"),
    })?;
    let pkcs8 = PrivatePkcs8KeyDer::from(der.as_bytes());
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(
        &pkcs8,
        &rcgen::PKCS_RSA_SHA256,
    )?)
}

/// Parses a PEM private key. ring only reads PKCS#8, so PKCS#1 and SEC1
/// keys are refused with the command that converts them.
pub(crate) fn parse_key_pem(pem: &str) -> Result<KeyPair, CertError> {
    use rustls_pki_types::pem::PemObject;
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
        let reason = if pem.contains("ENCRYPTED PRIVATE KEY") {
            "the private key is encrypted; decrypt it to an unencrypted PKCS#8 key \
             (`openssl pkcs8 -topk8 -nocrypt -in KEY -out ca.key`)"
        } else {
            "no PEM private key found"
        };
        CertError::CaRejected {
            reason: reason.into(),
        }
    })?;
    match key {
        PrivateKeyDer::Pkcs8(pkcs8) => {
            KeyPair::try_from(&pkcs8).map_err(|e| CertError::CaRejected {
                reason: format!("unsupported private key: {e}"),
            })
        }
        _ => Err(CertError::CaRejected {
            reason: "the private key is PKCS#1 or SEC1; convert it to PKCS#8 with \
                     `openssl pkcs8 -topk8 -nocrypt -in KEY -out ca.key`"
                .into(),
        }),
    }
}

/// Refuses a key file whose mode lets group or others read it.
pub fn check_key_mode(path: &Path) -> Result<(), CertError> {
    let meta = fs::metadata(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CertError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

pub(crate) fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates `path` exclusively with exactly `mode`.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    // The umask may have narrowed the mode; never widened it. Set it exactly
    // before any secret is written.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_check_accepts_owner_only_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_new(&path, b"x", 0o600).unwrap();
        check_key_mode(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        check_key_mode(&path).unwrap();
        for mode in [0o640, 0o604, 0o644, 0o660, 0o606] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = check_key_mode(&path).unwrap_err();
            assert!(
                matches!(err, CertError::KeyPermissions { mode: m, .. } if m == mode),
                "{mode:o}: {err}"
            );
            assert!(err.to_string().contains("chmod 600"));
        }
    }

    #[test]
    fn write_new_sets_mode_despite_umask_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_new(&path, b"secret", 0o600).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(write_new(&path, b"other", 0o600).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"secret");
    }

    #[test]
    fn key_pem_formats() {
        let ec = KeyPair::generate().unwrap();
        assert!(parse_key_pem(&ec.serialize_pem()).is_ok());
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIGZ3\n-----END EC PRIVATE KEY-----\n";
        let err = parse_key_pem(sec1).unwrap_err().to_string();
        assert!(err.contains("PKCS#8") || err.contains("no PEM"), "{err}");
        let err = parse_key_pem("not a key").unwrap_err().to_string();
        assert!(err.contains("no PEM private key"), "{err}");
    }

    #[test]
    fn algorithm_names_parse() {
        assert_eq!("ecdsa-p256".parse(), Ok(CaKeyAlgorithm::EcdsaP256));
        assert_eq!("P-384".parse(), Ok(CaKeyAlgorithm::EcdsaP384));
        assert_eq!("rsa-3072".parse(), Ok(CaKeyAlgorithm::Rsa3072));
        assert!("dsa".parse::<CaKeyAlgorithm>().is_err());
    }
}
