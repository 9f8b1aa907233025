//! Checks that a certificate, key and chain make a usable interception CA,
//! whether we made it or the corporate PKI issued it.

use rcgen::{KeyPair, PublicKeyData};
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;

use crate::names::Constraints;
use crate::CertError;

/// What minting needs to know about the CA certificate, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct CaFacts {
    /// Validity as Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub constraints: Constraints,
    /// Subject equals issuer: a root, which clients hold and we never send.
    pub self_issued: bool,
}

fn rejected(reason: impl Into<String>) -> CertError {
    CertError::CaRejected {
        reason: reason.into(),
    }
}

pub(crate) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| rejected(format!("not a parseable X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(rejected("trailing bytes after the certificate"));
    }
    Ok(cert)
}

/// Validates the CA certificate, that `key` is its key, and the chain that
/// links it towards a root. Returns the facts and what to send after a leaf.
pub(crate) fn validate_ca(
    cert_der: &CertificateDer<'static>,
    key: &KeyPair,
    chain: &[CertificateDer<'static>],
) -> Result<(CaFacts, Vec<CertificateDer<'static>>), CertError> {
    let cert = parse_cert(cert_der)?;
    check_is_ca(&cert, "the CA certificate")?;
    if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
        return Err(CertError::KeyMismatch);
    }
    if let Some(eku) = cert
        .extended_key_usage()
        .map_err(|e| rejected(format!("bad extendedKeyUsage: {e}")))?
    {
        let eku = eku.value;
        if !(eku.any || eku.server_auth) {
            return Err(rejected(
                "the CA certificate's extendedKeyUsage excludes serverAuth; clients would reject its leaves",
            ));
        }
    }
    let constraints = cert
        .name_constraints()
        .map_err(|e| rejected(format!("bad nameConstraints: {e}")))?
        .map(|nc| Constraints::from_x509(nc.value))
        .unwrap_or_default();
    let self_issued = cert.subject().as_raw() == cert.issuer().as_raw();
    let facts = CaFacts {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        constraints,
        self_issued,
    };

    if self_issued {
        if !chain.is_empty() {
            return Err(rejected(
                "a chain file was given but the CA certificate is self-signed (a root has no chain)",
            ));
        }
        return Ok((facts, Vec::new()));
    }

    let mut send = vec![cert_der.clone()];
    let mut child_issuer = cert.issuer().as_raw().to_vec();
    for (i, der) in chain.iter().enumerate() {
        let what = format!("chain certificate {}", i + 1);
        let link = parse_cert(der)?;
        check_is_ca(&link, &what)?;
        if link.subject().as_raw() != child_issuer.as_slice() {
            return Err(rejected(format!(
                "{what} ({}) is not the issuer of the certificate before it (issued by {}); \
                 list the chain from the CA's issuer up to the root",
                link.subject(),
                name_string(&child_issuer)
            )));
        }
        let is_root = link.subject().as_raw() == link.issuer().as_raw();
        if is_root {
            if i + 1 != chain.len() {
                return Err(rejected(format!(
                    "{what} is a root but is not the last one"
                )));
            }
            // Clients hold the root; sending it only wastes bytes.
            break;
        }
        child_issuer = link.issuer().as_raw().to_vec();
        send.push(der.clone());
    }
    Ok((facts, send))
}

pub(crate) fn check_is_ca(cert: &X509Certificate<'_>, what: &str) -> Result<(), CertError> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| rejected(format!("{what}: bad basicConstraints: {e}")))?;
    if !bc.is_some_and(|bc| bc.value.ca) {
        return Err(rejected(format!(
            "{what} ({}) is not a CA certificate: basicConstraints CA:true is missing",
            cert.subject()
        )));
    }
    let ku = cert
        .key_usage()
        .map_err(|e| rejected(format!("{what}: bad keyUsage: {e}")))?;
    if !ku.is_some_and(|ku| ku.value.key_cert_sign()) {
        return Err(rejected(format!(
            "{what} ({}) may not sign certificates: keyUsage keyCertSign is missing",
            cert.subject()
        )));
    }
    Ok(())
}

/// A DER-encoded X.509 Name in readable form, for error messages.
fn name_string(raw: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    match x509_parser::x509::X509Name::from_der(raw) {
        Ok((_, name)) => name.to_string(),
        Err(_) => "an unparseable name".into(),
    }
}
