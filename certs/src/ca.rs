//! Creating and loading the interception CA.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, GeneralSubtree, IsCa, KeyPair,
    KeyUsagePurpose, NameConstraints,
};
use time::{Duration, OffsetDateTime};

use crate::CertError;

/// Where a CA lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// PEM certificate (`ca.pem`).
    pub cert: PathBuf,
    /// PEM private key (`ca.key`), mode 0600.
    pub key: PathBuf,
}

impl CaFiles {
    /// The conventional `ca.pem` + `ca.key` pair inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
        }
    }

    /// Whether both files exist.
    pub fn exist(&self) -> bool {
        self.cert.exists() && self.key.exists()
    }
}

/// How to create a new CA.
#[derive(Debug, Clone)]
pub struct CaInit {
    /// Common name of the CA certificate.
    pub name: String,
    /// DNS name constraints (permitted subtrees); empty means unconstrained.
    pub permit_dns: Vec<String>,
    /// Validity in days.
    pub valid_days: i64,
}

impl Default for CaInit {
    fn default() -> Self {
        Self {
            name: "Gatehouse Interception CA".into(),
            permit_dns: Vec::new(),
            valid_days: 3650,
        }
    }
}

/// A loaded interception CA: its certificate and signing key.
pub struct Ca {
    cert_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
    files: CaFiles,
}

impl std::fmt::Debug for Ca {
    // The key is deliberately absent.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a new CA at `files`, refusing to overwrite an existing one.
    pub fn create(files: &CaFiles, init: &CaInit) -> Result<Self, CertError> {
        for path in [&files.cert, &files.key] {
            if path.exists() {
                return Err(CertError::Invalid {
                    path: path.clone(),
                    reason: "already exists; refusing to overwrite a CA".into(),
                });
            }
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, init.name.as_str());
        dn.push(DnType::OrganizationName, "Gatehouse");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(init.valid_days);
        if !init.permit_dns.is_empty() {
            params.name_constraints = Some(NameConstraints {
                permitted_subtrees: init
                    .permit_dns
                    .iter()
                    .map(|d| GeneralSubtree::DnsName(d.clone()))
                    .collect(),
                excluded_subtrees: Vec::new(),
            });
        }
        let cert = params.self_signed(&key)?;

        if let Some(dir) = files.key.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| CertError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        write_file(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&files.cert, cert.pem().as_bytes(), 0o644)?;
        tracing::info!(cert = %files.cert.display(), "created interception CA");
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
            files: files.clone(),
        })
    }

    /// Loads an existing CA, refusing a key file that group or others can read.
    pub fn load(files: &CaFiles) -> Result<Self, CertError> {
        check_key_mode(&files.key)?;
        let key_pem = read(&files.key)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CertError::Invalid {
            path: files.key.clone(),
            reason: format!("not a usable private key: {e}"),
        })?;
        let cert_pem = read(&files.cert)?;
        let cert_der =
            first_pem_der(&cert_pem, "CERTIFICATE").ok_or_else(|| CertError::Invalid {
                path: files.cert.clone(),
                reason: "no PEM CERTIFICATE block".into(),
            })?;
        Ok(Self {
            cert_pem,
            cert_der,
            key,
            files: files.clone(),
        })
    }

    /// Loads the CA at `files`, creating it first if neither file exists.
    pub fn load_or_create(files: &CaFiles, init: &CaInit) -> Result<Self, CertError> {
        if !files.cert.exists() && !files.key.exists() {
            Self::create(files, init)
        } else {
            Self::load(files)
        }
    }

    /// The CA certificate as PEM, for clients to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate as DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Where the CA lives.
    pub fn files(&self) -> &CaFiles {
        &self.files
    }

    /// The signing key; crate-private so it never leaves this crate.
    #[allow(dead_code)]
    pub(crate) fn key(&self) -> &KeyPair {
        &self.key
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

fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
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
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    // The umask may have narrowed the mode; never widened it. Set it exactly.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io)
}

fn first_pem_der(pem_text: &str, label: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    match label {
        "CERTIFICATE" => rustls_pki_types::CertificateDer::pem_slice_iter(pem_text.as_bytes())
            .next()?
            .ok()
            .map(|c| c.to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_writes_key_0600_and_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let files = CaFiles::in_dir(dir.path());
        let ca = Ca::create(&files, &CaInit::default()).unwrap();
        let mode = fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = Ca::load(&files).unwrap();
        assert_eq!(ca.cert_der(), again.cert_der());
    }

    #[test]
    fn load_refuses_group_readable_key() {
        let dir = tempfile::tempdir().unwrap();
        let files = CaFiles::in_dir(dir.path());
        Ca::create(&files, &CaInit::default()).unwrap();
        fs::set_permissions(&files.key, fs::Permissions::from_mode(0o640)).unwrap();
        let err = Ca::load(&files).unwrap_err();
        assert!(
            matches!(err, CertError::KeyPermissions { mode: 0o640, .. }),
            "{err}"
        );
    }

    #[test]
    fn create_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let files = CaFiles::in_dir(dir.path());
        Ca::create(&files, &CaInit::default()).unwrap();
        assert!(Ca::create(&files, &CaInit::default()).is_err());
    }
}
