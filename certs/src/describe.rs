//! What `gatehouse ca show` prints about the CA certificate.

use std::fmt;
use std::time::SystemTime;

use x509_parser::public_key::PublicKey;

use crate::mint::system_time;
use crate::names::describe_general_name;
use crate::validate::parse_cert;
use crate::{Ca, CaCert, CertError};

/// A description of the CA certificate. It holds nothing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaDescription {
    /// Subject distinguished name, RFC 4514 style.
    pub subject: String,
    /// Issuer distinguished name (equal to the subject for a root).
    pub issuer: String,
    /// Serial number, colon-separated hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// SHA-256 fingerprint of the DER certificate, colon-separated upper hex.
    pub sha256_fingerprint: String,
    /// SHA-1 fingerprint, as some device-management consoles still show it.
    pub sha1_fingerprint: String,
    /// Key algorithm and size, e.g. `ECDSA P-256` or `RSA 3072`.
    pub key_algorithm: String,
    /// basicConstraints pathLenConstraint, if any.
    pub path_len: Option<u32>,
    /// Permitted name-constraint subtrees, e.g. `DNS:corp.example`.
    pub permitted: Vec<String>,
    /// Excluded name-constraint subtrees.
    pub excluded: Vec<String>,
    /// Whether the CA is self-signed (a root) rather than an intermediate.
    pub self_signed: bool,
    /// How many certificates are sent after each leaf.
    pub chain_len: usize,
}

impl Ca {
    /// Describes the CA certificate for `gatehouse ca show`.
    pub fn describe(&self) -> Result<CaDescription, CertError> {
        self.certificate().describe()
    }
}

impl CaCert {
    /// Describes the CA certificate for `gatehouse ca show`.
    pub fn describe(&self) -> Result<CaDescription, CertError> {
        let der = self.cert_der().as_ref();
        let cert = parse_cert(der)?;
        let key_algorithm = match cert.public_key().parsed() {
            Ok(PublicKey::EC(point)) => format!("ECDSA P-{}", point.key_size()),
            Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
            Ok(other) => format!("{other:?}")
                .split('(')
                .next()
                .unwrap_or("unknown")
                .to_string(),
            Err(_) => format!("unknown ({})", cert.public_key().algorithm.algorithm),
        };
        let path_len = cert
            .basic_constraints()
            .ok()
            .flatten()
            .and_then(|bc| bc.value.path_len_constraint);
        let (mut permitted, mut excluded) = (Vec::new(), Vec::new());
        if let Ok(Some(nc)) = cert.name_constraints() {
            for s in nc.value.permitted_subtrees.iter().flatten() {
                permitted.push(describe_general_name(&s.base));
            }
            for s in nc.value.excluded_subtrees.iter().flatten() {
                excluded.push(describe_general_name(&s.base));
            }
        }
        Ok(CaDescription {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: hex(cert.raw_serial(), ":"),
            not_before: system_time(cert.validity().not_before.timestamp()),
            not_after: system_time(cert.validity().not_after.timestamp()),
            sha256_fingerprint: hex(
                ring::digest::digest(&ring::digest::SHA256, der).as_ref(),
                ":",
            ),
            sha1_fingerprint: hex(
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref(),
                ":",
            ),
            key_algorithm,
            path_len,
            permitted,
            excluded,
            self_signed: self.self_signed,
            chain_len: self.chain_len,
        })
    }
}

impl fmt::Display for CaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let none = || "none".to_string();
        let list = |v: &[String]| if v.is_empty() { none() } else { v.join(", ") };
        writeln!(f, "Subject:        {}", self.subject)?;
        writeln!(f, "Issuer:         {}", self.issuer)?;
        writeln!(
            f,
            "Kind:           {}",
            if self.self_signed {
                "root (self-signed)"
            } else {
                "intermediate"
            }
        )?;
        writeln!(f, "Serial:         {}", self.serial)?;
        writeln!(f, "Not before:     {}", rfc3339(self.not_before))?;
        writeln!(f, "Not after:      {}", rfc3339(self.not_after))?;
        writeln!(f, "Key:            {}", self.key_algorithm)?;
        writeln!(
            f,
            "Path length:    {}",
            self.path_len
                .map_or_else(|| "unlimited".into(), |n| n.to_string())
        )?;
        writeln!(f, "Permitted:      {}", list(&self.permitted))?;
        writeln!(f, "Excluded:       {}", list(&self.excluded))?;
        writeln!(
            f,
            "Chain sent:     {} certificate(s) after each leaf",
            self.chain_len
        )?;
        writeln!(f, "SHA-256:        {}", self.sha256_fingerprint)?;
        write!(f, "SHA-1:          {}", self.sha1_fingerprint)
    }
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

/// Upper-case hex with `sep` between bytes.
pub(crate) fn hex(bytes: &[u8], sep: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * (2 + sep.len()));
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        let _ = write!(out, "{b:02X}");
    }
    out
}
