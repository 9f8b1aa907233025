//! Certificates made at test time: upstream leaves as a public CA would
//! issue them, and a corporate PKI (root + intermediate) to import.

use std::net::IpAddr;
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::{Ca, CaInit, Leaf};

pub fn now() -> SystemTime {
    // Whole seconds, as certificates carry them.
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

pub fn odt(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

pub fn test_ca() -> Ca {
    Ca::generate(&CaInit::default()).unwrap()
}

fn names(names: &[&str]) -> Vec<SanType> {
    names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*n).try_into().unwrap()),
        })
        .collect()
}

/// An upstream end-entity certificate for `sans`, valid 30 days back and
/// 60 days ahead of `now`.
pub fn upstream(sans: &[&str], now: SystemTime) -> CertificateDer<'static> {
    let now = odt(now);
    upstream_with(
        sans,
        now - Duration::days(30),
        now + Duration::days(60),
        false,
    )
}

pub fn upstream_with(
    sans: &[&str],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    is_ca: bool,
) -> CertificateDer<'static> {
    upstream_full(
        sans,
        not_before,
        not_after,
        is_ca,
        &[ExtendedKeyUsagePurpose::ServerAuth],
    )
}

/// An upstream certificate with the given extendedKeyUsage (none: absent).
pub fn upstream_eku(
    sans: &[&str],
    now: SystemTime,
    eku: &[ExtendedKeyUsagePurpose],
) -> CertificateDer<'static> {
    let now = odt(now);
    upstream_full(
        sans,
        now - Duration::days(30),
        now + Duration::days(60),
        false,
        eku,
    )
}

fn upstream_full(
    sans: &[&str],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    is_ca: bool,
    eku: &[ExtendedKeyUsagePurpose],
) -> CertificateDer<'static> {
    let issuer_key = KeyPair::generate().unwrap();
    let mut issuer_params = CertificateParams::default();
    issuer_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    issuer_params
        .distinguished_name
        .push(DnType::CommonName, "Public Test Root");
    let issuer = Issuer::new(issuer_params, issuer_key);

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = names(sans);
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = if is_ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    params.extended_key_usages = eku.to_vec();
    params.signed_by(&key, &issuer).unwrap().der().clone()
}

/// A corporate root and an intermediate under it, as PEM, for import.
pub struct Pki {
    pub root_der: CertificateDer<'static>,
    pub root_pem: String,
    pub inter_pem: String,
    pub inter_key_pem: String,
}

pub struct InterSpec {
    pub is_ca: bool,
    pub key_cert_sign: bool,
    pub permit_dns: Vec<String>,
    pub not_after: Option<OffsetDateTime>,
}

impl Default for InterSpec {
    fn default() -> Self {
        Self {
            is_ca: true,
            key_cert_sign: true,
            permit_dns: Vec::new(),
            not_after: None,
        }
    }
}

pub fn corporate_pki(spec: InterSpec) -> Pki {
    let root_key = KeyPair::generate().unwrap();
    let mut root_params = CertificateParams::default();
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Example Corp Root CA");
    dn.push(DnType::OrganizationName, "Example Corp");
    root_params.distinguished_name = dn;
    let root_cert = root_params.self_signed(&root_key).unwrap();
    let root = Issuer::new(root_params, root_key);

    let inter_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Example Corp Interception CA");
    dn.push(DnType::OrganizationName, "Example Corp");
    p.distinguished_name = dn;
    p.is_ca = if spec.is_ca {
        IsCa::Ca(BasicConstraints::Constrained(0))
    } else {
        IsCa::ExplicitNoCa
    };
    p.key_usages = if spec.key_cert_sign {
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    if !spec.permit_dns.is_empty() {
        p.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: spec
                .permit_dns
                .into_iter()
                .map(rcgen::GeneralSubtree::DnsName)
                .collect(),
            excluded_subtrees: Vec::new(),
        });
    }
    if let Some(not_after) = spec.not_after {
        p.not_before = not_after - Duration::days(30);
        p.not_after = not_after;
    }
    p.use_authority_key_identifier_extension = true;
    let inter = p.signed_by(&inter_key, &root).unwrap();
    Pki {
        root_der: root_cert.der().clone(),
        root_pem: root_cert.pem(),
        inter_pem: inter.pem(),
        inter_key_pem: inter_key.serialize_pem(),
    }
}

pub fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

/// The leaf's SANs as strings (IPs in their usual text form).
pub fn leaf_sans(der: &[u8]) -> Vec<String> {
    let cert = parse(der);
    cert.subject_alternative_name()
        .unwrap()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|gn| match gn {
                    GeneralName::DNSName(d) => d.to_string(),
                    GeneralName::IPAddress(b) if b.len() == 4 => {
                        IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
                    }
                    GeneralName::IPAddress(b) => {
                        IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()
                    }
                    other => panic!("unexpected SAN {other:?}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Verifies the leaf's chain as a TLS client would: webpki, anchored at
/// `anchor`, for `host`, at `at`.
pub fn webpki_verify(
    leaf: &Leaf,
    anchor: &CertificateDer<'_>,
    host: &str,
    at: SystemTime,
) -> Result<(), webpki::Error> {
    let anchors = [webpki::anchor_from_trusted_cert(anchor)?];
    let ee = webpki::EndEntityCert::try_from(leaf.end_entity())?;
    let at = UnixTime::since_unix_epoch(at.duration_since(SystemTime::UNIX_EPOCH).unwrap());
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &leaf.chain()[1..],
        at,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )?;
    let name = ServerName::try_from(host).unwrap();
    ee.verify_is_valid_for_subject_name(&name)
}
