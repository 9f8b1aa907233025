//! The interception CA: created here, imported from the corporate PKI, or
//! loaded from its directory.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, GeneralSubtree, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, NameConstraints,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::keyfile::{check_key_mode, parse_key_pem, read, write_new, CaKeyAlgorithm};
use crate::mint::{random_serial, LeafPolicy};
use crate::validate::{validate_ca, CaFacts};
use crate::CertError;

/// Where a CA lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// PEM certificate (`ca.pem`).
    pub cert: PathBuf,
    /// PEM private key (`ca.key`), mode 0600.
    pub key: PathBuf,
    /// Optional PEM chain from the CA's issuer towards the root
    /// (`chain.pem`), for a CA that is an intermediate.
    pub chain: PathBuf,
}

impl CaFiles {
    /// The conventional `ca.pem`, `ca.key` and `chain.pem` inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
            chain: dir.join("chain.pem"),
        }
    }

    /// Whether certificate and key both exist.
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
    /// Key algorithm; ECDSA P-256 by default.
    pub key_algorithm: CaKeyAlgorithm,
}

impl Default for CaInit {
    fn default() -> Self {
        Self {
            name: "Gatehouse Interception CA".into(),
            permit_dns: Vec::new(),
            valid_days: 3650,
            key_algorithm: CaKeyAlgorithm::default(),
        }
    }
}

/// An existing CA to import, typically an intermediate issued by the
/// corporate PKI.
#[derive(Debug, Clone)]
pub struct CaImport {
    /// PEM certificate of the CA. Further certificates after the first are
    /// taken as the start of its chain.
    pub cert: PathBuf,
    /// Its PEM PKCS#8 private key.
    pub key: PathBuf,
    /// PEM chain from the CA's issuer towards the root, sent to clients
    /// after the leaf and the CA certificate. A root at its end is dropped.
    pub chain: Option<PathBuf>,
}

/// A loaded interception CA: its certificate, chain and signing key.
pub struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    send_chain: Vec<CertificateDer<'static>>,
    issuer: Issuer<'static, KeyPair>,
    pub(crate) facts: CaFacts,
    leaf_policy: LeafPolicy,
    files: Option<CaFiles>,
}

impl std::fmt::Debug for Ca {
    // The key is deliberately absent.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("files", &self.files)
            .field("leaf_policy", &self.leaf_policy)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A new CA held only in memory (tests, benchmarks, ephemeral setups).
    pub fn generate(init: &CaInit) -> Result<Self, CertError> {
        let key = init.key_algorithm.generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, init.name.as_str());
        dn.push(DnType::OrganizationName, "Gatehouse");
        params.distinguished_name = dn;
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("0 is valid");
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
        Self::from_parts(cert.pem(), cert.der().clone(), key, Vec::new(), None)
    }

    /// Creates a new CA at `files`, refusing to overwrite an existing one.
    pub fn create(files: &CaFiles, init: &CaInit) -> Result<Self, CertError> {
        refuse_existing(files)?;
        let mut ca = Self::generate(init)?;
        create_parent(&files.key)?;
        write_new(
            &files.key,
            ca.issuer.key().serialize_pem().as_bytes(),
            0o600,
        )?;
        write_new(&files.cert, ca.cert_pem.as_bytes(), 0o644)?;
        tracing::info!(cert = %files.cert.display(), "created interception CA");
        ca.files = Some(files.clone());
        Ok(ca)
    }

    /// Validates and copies an existing CA into `files` (key mode 0600),
    /// refusing a certificate that is not a CA, a key that is not its key,
    /// a broken chain, or an expired CA.
    pub fn import(files: &CaFiles, source: &CaImport) -> Result<Self, CertError> {
        refuse_existing(files)?;
        let cert_pem = read(&source.cert)?;
        let key_pem = read(&source.key)?;
        let chain_pem = source.chain.as_deref().map(read).transpose()?;
        let mut ca = Self::from_pem(&cert_pem, &key_pem, chain_pem.as_deref())?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        if ca.facts.not_after <= now {
            return Err(CertError::CaRejected {
                reason: "the CA certificate has expired".into(),
            });
        }
        create_parent(&files.key)?;
        write_new(
            &files.key,
            ca.issuer.key().serialize_pem().as_bytes(),
            0o600,
        )?;
        write_new(
            &files.cert,
            pem_of(std::slice::from_ref(&ca.cert_der)).as_bytes(),
            0o644,
        )?;
        let chain_out = chain_after_ca(&ca.send_chain);
        if !chain_out.is_empty() {
            write_new(&files.chain, pem_of(chain_out).as_bytes(), 0o644)?;
        }
        tracing::info!(cert = %files.cert.display(), "imported interception CA");
        ca.files = Some(files.clone());
        Ok(ca)
    }

    /// Loads an existing CA, refusing a key file that group or others can
    /// read, and validating it as [`Ca::import`] does.
    pub fn load(files: &CaFiles) -> Result<Self, CertError> {
        check_key_mode(&files.key)?;
        let key_pem = read(&files.key)?;
        let cert_pem = read(&files.cert)?;
        let chain_pem = if files.chain.exists() {
            Some(read(&files.chain)?)
        } else {
            None
        };
        let mut ca = Self::from_pem(&cert_pem, &key_pem, chain_pem.as_deref())?;
        ca.files = Some(files.clone());
        Ok(ca)
    }

    /// Loads the CA at `files`, creating it first if neither file exists.
    pub fn load_or_create(files: &CaFiles, init: &CaInit) -> Result<Self, CertError> {
        if !files.cert.exists() && !files.key.exists() {
            Self::create(files, init)
        } else {
            Self::load(files)
        }
    }

    /// A CA from PEM text: the certificate (extra certificates after it
    /// start the chain), its PKCS#8 key, and an optional chain.
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        chain_pem: Option<&str>,
    ) -> Result<Self, CertError> {
        let mut certs = pem_certs(cert_pem)?;
        if certs.is_empty() {
            return Err(CertError::CaRejected {
                reason: "no PEM CERTIFICATE block in the CA certificate file".into(),
            });
        }
        let cert_der = certs.remove(0);
        if let Some(chain_pem) = chain_pem {
            certs.extend(pem_certs(chain_pem)?);
        }
        let key = parse_key_pem(key_pem)?;
        let pem = pem_of(std::slice::from_ref(&cert_der));
        Self::from_parts(pem, cert_der, key, certs, None)
    }

    fn from_parts(
        cert_pem: String,
        cert_der: CertificateDer<'static>,
        key: KeyPair,
        chain: Vec<CertificateDer<'static>>,
        files: Option<CaFiles>,
    ) -> Result<Self, CertError> {
        let (facts, send_chain) = validate_ca(&cert_der, &key, &chain)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Self {
            cert_pem,
            cert_der,
            send_chain,
            issuer,
            facts,
            leaf_policy: LeafPolicy::default(),
            files,
        })
    }

    /// The CA certificate as PEM, for clients to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate as DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// What to send after a leaf: nothing for a root we made; the CA
    /// certificate and its intermediates (without the root) for an
    /// imported intermediate.
    pub fn chain_der(&self) -> &[CertificateDer<'static>] {
        &self.send_chain
    }

    /// Where the CA lives, if it was created, imported or loaded from files.
    pub fn files(&self) -> Option<&CaFiles> {
        self.files.as_ref()
    }

    /// The rules leaves are minted by.
    pub fn leaf_policy(&self) -> &LeafPolicy {
        &self.leaf_policy
    }

    /// Replaces the rules leaves are minted by.
    pub fn set_leaf_policy(&mut self, policy: LeafPolicy) {
        self.leaf_policy = policy;
    }

    /// The signer; crate-private so the key never leaves this crate.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

/// The part of the sent chain after the CA certificate itself.
fn chain_after_ca<'a>(send: &'a [CertificateDer<'static>]) -> &'a [CertificateDer<'static>] {
    send.get(1..).unwrap_or(&[])
}

fn refuse_existing(files: &CaFiles) -> Result<(), CertError> {
    for path in [&files.cert, &files.key, &files.chain] {
        if path.exists() {
            return Err(CertError::Invalid {
                path: path.clone(),
                reason: "already exists; refusing to overwrite a CA".into(),
            });
        }
    }
    Ok(())
}

fn create_parent(path: &Path) -> Result<(), CertError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| CertError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

pub(crate) fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::CaRejected {
            reason: format!("bad PEM certificate: {e}"),
        })
}

pub(crate) fn pem_of(certs: &[CertificateDer<'_>]) -> String {
    let blocks: Vec<pem::Pem> = certs
        .iter()
        .map(|c| pem::Pem::new("CERTIFICATE", c.as_ref()))
        .collect();
    pem::encode_many_config(
        &blocks,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
