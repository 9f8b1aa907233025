//! Certificates made at test time: a test root, intermediates and server
//! leaves good and bad, written as PEM where a peer needs files.
#![allow(dead_code)]

use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// A CA that can issue.
pub struct TestCa {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
    params: CertificateParams,
}

impl TestCa {
    /// A self-signed root.
    pub fn root(name: &str) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = ca_params(name, true);
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key, params }
    }

    /// An intermediate issued by `self`; `ca = false` makes a certificate
    /// that is not a CA but is used as one (must be rejected).
    pub fn intermediate(&self, name: &str, ca: bool) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = ca_params(name, ca);
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        Self { cert, key, params }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone().into_owned()
    }

    /// Issues a server leaf.
    pub fn leaf(&self, spec: &LeafSpec) -> ServerCert {
        let key = match &spec.key_pem {
            Some(pem) => KeyPair::from_pem(pem).unwrap(),
            None => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = spec
            .names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.as_str().try_into().unwrap()),
            })
            .collect();
        params.distinguished_name.push(
            DnType::CommonName,
            spec.names.first().cloned().unwrap_or_default(),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = spec.eku.clone();
        let now = OffsetDateTime::now_utc();
        params.not_before = now + spec.not_before;
        params.not_after = now + spec.not_after;
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        ServerCert {
            chain: vec![cert.der().clone().into_owned()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            pem: cert.pem(),
        }
    }
}

fn ca_params(name: &str, ca: bool) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = if ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(30);
    params.not_after = now + Duration::days(365);
    params
}

/// What a server leaf should look like.
#[derive(Clone)]
pub struct LeafSpec {
    pub names: Vec<String>,
    pub not_before: Duration,
    pub not_after: Duration,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    /// A key from elsewhere (e.g. RSA made by openssl), PEM PKCS#8.
    pub key_pem: Option<String>,
}

impl LeafSpec {
    pub fn new(names: &[&str]) -> Self {
        Self {
            names: names.iter().map(|s| s.to_string()).collect(),
            not_before: Duration::days(-1),
            not_after: Duration::days(90),
            eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
            key_pem: None,
        }
    }
}

/// A server's chain and key.
pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub pem: String,
}

impl ServerCert {
    pub fn with_intermediate(mut self, ca: &TestCa) -> Self {
        self.chain.push(ca.der());
        self
    }
}

/// An RSA private key of `bits` made by the openssl CLI, as PKCS#8 PEM.
pub fn openssl_rsa_key(bits: u32) -> String {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            &format!("rsa_keygen_bits:{bits}"),
        ])
        .output()
        .expect("openssl CLI (installed by scripts/test.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A SHA-1-signed RSA server certificate for `name`, issued by a fresh RSA
/// root, made with the openssl CLI (rcgen refuses to sign with SHA-1).
/// Returns (root PEM, leaf PEM, leaf key PEM).
pub fn openssl_sha1_chain(dir: &std::path::Path, name: &str) -> (String, String, String) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "root.key",
        "-out",
        "root.pem",
        "-days",
        "30",
        "-subj",
        "/CN=SHA1 Test Root",
        "-sha256",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        &format!("/CN={name}"),
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
        ),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "root.pem",
        "-CAkey",
        "root.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "10",
        "-sha1",
        "-extfile",
        "ext.cnf",
    ]);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    (read("root.pem"), read("leaf.pem"), read("leaf.key"))
}

impl TestCa {
    /// A server leaf for a public key whose private half lives elsewhere.
    pub fn leaf_for_public_key(
        &self,
        spec: &LeafSpec,
        spki: &rcgen::SubjectPublicKeyInfo,
    ) -> String {
        let mut params = CertificateParams::new(spec.names.clone()).unwrap();
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = spec.eku.clone();
        let now = OffsetDateTime::now_utc();
        params.not_before = now + spec.not_before;
        params.not_after = now + spec.not_after;
        params.signed_by(spki, &self.issuer()).unwrap().pem()
    }
}

impl ServerCert {
    /// Writes the chain and key as PEM files in `dir`; returns their paths.
    pub fn write_pem(
        &self,
        dir: &std::path::Path,
        stem: &str,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        let chain: String = self
            .chain
            .iter()
            .map(|c| pem_block("CERTIFICATE", c))
            .collect();
        std::fs::write(&cert, chain).unwrap();
        let key_der = match &self.key {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            _ => unreachable!("test keys are PKCS#8"),
        };
        std::fs::write(&key, pem_block("PRIVATE KEY", &key_der)).unwrap();
        (cert, key)
    }
}

/// PEM-encodes DER bytes under `label`.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
