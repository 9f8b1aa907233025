//! Minting a leaf for one name of a verified upstream certificate.
//!
//! Decision: a leaf carries exactly one subjectAltName, the requested name
//! (the SNI, or the IP address without SNI), and only when the upstream
//! certificate covers it. When a wildcard covers the name, the leaf names
//! the concrete host, not the wildcard. The upstream's other names are not
//! copied: the leaf is cached per name anyway, and copying the hundred SANs
//! of a CDN certificate would only widen what one leaf vouches for.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::names::{covered_by, LeafName};
use crate::{Ca, CertError, Refusal};

/// The rules every leaf is minted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafPolicy {
    /// Longest lifetime of a leaf (default 3 days). The upstream
    /// certificate's notAfter and the CA's cap it further.
    pub max_lifetime: Duration,
    /// How far notBefore lies before now, for clients with slow clocks
    /// (default 1 hour); never before the upstream's or the CA's notBefore.
    pub backdate: Duration,
}

impl Default for LeafPolicy {
    fn default() -> Self {
        Self {
            max_lifetime: Duration::from_secs(3 * 24 * 3600),
            backdate: Duration::from_secs(3600),
        }
    }
}

/// A request for a leaf: the name the client asked for and the end-entity
/// certificate of the upstream, already verified by the caller.
#[derive(Clone)]
pub struct LeafRequest {
    name: LeafName,
    upstream: CertificateDer<'static>,
    upstream_sha256: [u8; 32],
}

impl LeafRequest {
    /// `host` is the client's SNI, or the IP address it connected to when it
    /// sent none; `upstream_end_entity` the upstream's verified leaf.
    pub fn new(
        host: &str,
        upstream_end_entity: CertificateDer<'static>,
    ) -> Result<Self, CertError> {
        let name = LeafName::parse(host)?;
        let upstream_sha256 = sha256(&upstream_end_entity);
        Ok(Self {
            name,
            upstream: upstream_end_entity,
            upstream_sha256,
        })
    }

    /// The requested name, normalised.
    pub fn name(&self) -> &LeafName {
        &self.name
    }

    /// The upstream end-entity certificate.
    pub fn upstream(&self) -> &CertificateDer<'static> {
        &self.upstream
    }

    /// SHA-256 of the upstream certificate (reusable for events).
    pub fn upstream_sha256(&self) -> &[u8; 32] {
        &self.upstream_sha256
    }
}

impl fmt::Debug for LeafRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafRequest")
            .field("name", &self.name)
            .field(
                "upstream_sha256",
                &crate::describe::hex(&self.upstream_sha256, ""),
            )
            .finish()
    }
}

/// A minted leaf: the chain to send and its own private key, in the forms
/// rustls takes (`CertifiedKey::new(chain, provider.load_private_key(key))`).
pub struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    name: LeafName,
    serial: Vec<u8>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl Leaf {
    /// The leaf certificate followed by the CA chain to send.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The leaf certificate alone.
    pub fn end_entity(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// A copy of the leaf's private key (PKCS#8, ECDSA P-256).
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The chain and the key, moved out.
    pub fn into_parts(self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.chain, PrivateKeyDer::Pkcs8(self.key))
    }

    /// The name the leaf is for.
    pub fn name(&self) -> &LeafName {
        &self.name
    }

    /// The serial number, big-endian.
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// Start of validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

impl fmt::Debug for Leaf {
    // The key is deliberately absent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf")
            .field("name", &self.name)
            .field("serial", &crate::describe::hex(&self.serial, ""))
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Mints a leaf for `req` at time `now`, or refuses when the upstream
    /// certificate does not cover the name or is itself a CA.
    pub fn mint(&self, req: &LeafRequest, now: SystemTime) -> Result<Leaf, CertError> {
        let refuse = |reason| CertError::Refused {
            name: req.name.to_string(),
            reason,
        };
        let unparsable = |e: String| refuse(Refusal::UpstreamUnparsable(e));
        let (_, up) = x509_parser::parse_x509_certificate(&req.upstream)
            .map_err(|e| unparsable(e.to_string()))?;
        let bc = up
            .basic_constraints()
            .map_err(|e| unparsable(e.to_string()))?;
        if bc.is_some_and(|bc| bc.value.ca) {
            return Err(refuse(Refusal::UpstreamIsCa));
        }
        // Verification upstream already demands serverAuth; refusing here
        // too keeps that invariant should a caller ever skip it.
        let eku = up
            .extended_key_usage()
            .map_err(|e| unparsable(e.to_string()))?;
        if eku.is_some_and(|e| !(e.value.any || e.value.server_auth)) {
            return Err(refuse(Refusal::UpstreamNotServerAuth));
        }
        let san = up
            .subject_alternative_name()
            .map_err(|e| unparsable(e.to_string()))?;
        let sans = san.map(|s| s.value.general_names.as_slice()).unwrap_or(&[]);
        if !covered_by(&req.name, sans) {
            return Err(refuse(Refusal::NotCovered));
        }
        if !self.facts.constraints.allow(&req.name) {
            return Err(refuse(Refusal::OutsideNameConstraints));
        }

        let policy = self.leaf_policy();
        let now_s = unix(now);
        let not_before = (now_s - secs(policy.backdate))
            .max(up.validity().not_before.timestamp())
            .max(self.facts.not_before);
        let not_after = (now_s + secs(policy.max_lifetime))
            .min(up.validity().not_after.timestamp())
            .min(self.facts.not_after);
        if not_before > now_s || not_after <= now_s {
            return Err(refuse(Refusal::NoValidLifetime));
        }
        self.issue(&req.name, not_before, not_after)
    }

    /// Mints a leaf for Gatehouse's own block page: exactly `host` (the
    /// client's SNI, or the address it connected to), no upstream involved —
    /// the only content ever served under it is the gateway's own page. It
    /// lives at most a day (and never beyond the CA or its name constraints).
    pub fn mint_own_page(&self, host: &str, now: SystemTime) -> Result<Leaf, CertError> {
        let name = LeafName::parse(host)?;
        let refuse = |reason| CertError::Refused {
            name: name.to_string(),
            reason,
        };
        if !self.facts.constraints.allow(&name) {
            return Err(refuse(Refusal::OutsideNameConstraints));
        }
        let policy = self.leaf_policy();
        let now_s = unix(now);
        let not_before = (now_s - secs(policy.backdate)).max(self.facts.not_before);
        let not_after =
            (now_s + secs(policy.max_lifetime).min(24 * 3600)).min(self.facts.not_after);
        if not_before > now_s || not_after <= now_s {
            return Err(refuse(Refusal::NoValidLifetime));
        }
        self.issue(&name, not_before, not_after)
    }

    /// Signs a leaf for exactly `name` valid from `not_before` to
    /// `not_after` (Unix seconds), with a key of its own.
    fn issue(&self, name: &LeafName, not_before: i64, not_after: i64) -> Result<Leaf, CertError> {
        // Every leaf gets a key of its own; the CA key only signs.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let cn = name.to_string();
        // X.520 caps a CN at 64 characters; longer names live in the SAN
        // alone (which rcgen then marks critical, as RFC 5280 asks).
        if cn.len() <= 64 {
            dn.push(DnType::CommonName, cn);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = vec![match name {
            LeafName::Dns(d) => SanType::DnsName(d.clone().try_into()?),
            LeafName::Ip(ip) => SanType::IpAddress(*ip),
        }];
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        params.not_before = datetime(not_before);
        params.not_after = datetime(not_after);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, self.issuer())?;

        let mut chain = Vec::with_capacity(1 + self.chain_der().len());
        chain.push(cert.der().clone());
        chain.extend(self.chain_der().iter().cloned());
        Ok(Leaf {
            chain,
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            name: name.clone(),
            serial: serial.to_bytes(),
            not_before: system_time(not_before),
            not_after: system_time(not_after),
        })
    }
}

/// 126 random bits in 16 bytes: the top bit clear keeps the INTEGER
/// positive, the next one set keeps its encoding exactly 16 bytes.
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source failed");
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
}

pub(crate) fn unix(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => secs(d),
        Err(e) => -secs(e.duration()),
    }
}

pub(crate) fn system_time(unix: i64) -> SystemTime {
    if unix >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    }
}

fn datetime(unix: i64) -> OffsetDateTime {
    // Certificate times come from X.509 dates, which are always in range.
    OffsetDateTime::from_unix_timestamp(unix).expect("X.509 time in range")
}
