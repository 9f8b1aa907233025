//! Interim leaf minting used while the full minting module is built; to be
//! replaced by it.

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::{Ca, CertError};

/// A minted leaf: chain to send (leaf first) and its private key.
pub struct InterimLeaf {
    /// Leaf certificate followed by any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's own private key.
    pub key: PrivateKeyDer<'static>,
}

impl Ca {
    /// Mints a short-lived leaf for `name` with a fresh key.
    pub fn mint_interim(&self, name: &str) -> Result<InterimLeaf, CertError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![match name.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.try_into()?),
        }];
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3);
        params.use_authority_key_identifier_extension = true;
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(self.cert_der().to_vec()), self.key())?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(InterimLeaf {
            chain: vec![cert.der().clone().into_owned()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}
