//! The CA certificate alone, for `ca show` and `ca export`: loaded without
//! the key, so operators and scripts need not read (or hold) `ca.key`.

use std::path::Path;

use rustls_pki_types::CertificateDer;

use crate::ca::{pem_certs, pem_of};
use crate::keyfile::read;
use crate::validate::{check_is_ca, parse_cert};
use crate::{Ca, CertError};

/// The CA certificate and how many certificates the gateway sends after
/// each leaf. It holds nothing secret.
#[derive(Debug, Clone)]
pub struct CaCert {
    pub(crate) cert_pem: String,
    pub(crate) cert_der: CertificateDer<'static>,
    pub(crate) self_signed: bool,
    pub(crate) chain_len: usize,
}

impl CaCert {
    /// Reads the CA certificate from `cert` (PEM; certificates after the
    /// first start its chain) and, when the file exists, the chain from
    /// `chain`. The certificate must be a CA certificate. The key is not
    /// read.
    pub fn load(cert: &Path, chain: Option<&Path>) -> Result<Self, CertError> {
        let mut certs = pem_certs(&read(cert)?)?;
        if certs.is_empty() {
            return Err(CertError::CaRejected {
                reason: format!("{}: no PEM CERTIFICATE block", cert.display()),
            });
        }
        let cert_der = certs.remove(0);
        if let Some(chain) = chain.filter(|c| c.exists()) {
            certs.extend(pem_certs(&read(chain)?)?);
        }
        let parsed = parse_cert(&cert_der)?;
        check_is_ca(&parsed, "the CA certificate")?;
        let self_signed = parsed.subject().as_raw() == parsed.issuer().as_raw();
        // As the gateway does: a root is never sent; an intermediate is
        // sent with its chain up to, not including, the root.
        let chain_len = if self_signed {
            0
        } else {
            let mut n = 1;
            for der in &certs {
                let c = parse_cert(der)?;
                if c.subject().as_raw() != c.issuer().as_raw() {
                    n += 1;
                }
            }
            n
        };
        let cert_pem = pem_of(std::slice::from_ref(&cert_der));
        Ok(Self {
            cert_pem,
            cert_der,
            self_signed,
            chain_len,
        })
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate as DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }
}

impl Ca {
    /// The CA's certificate alone.
    pub fn certificate(&self) -> CaCert {
        CaCert {
            cert_pem: self.cert_pem().to_string(),
            cert_der: self.cert_der().clone(),
            self_signed: self.facts.self_issued,
            chain_len: self.chain_der().len(),
        }
    }
}
