//! The upstream leg: connect to the real server first and verify it.
//!
//! Never weaker than a modern client: TLS 1.2/1.3 only, AEAD and
//! forward-secret suites only, chain and hostname verified against the
//! system roots plus `upstream.extra_roots`. There is no switch that turns
//! verification off; the only exception is a per-host certificate pin,
//! logged on every use.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::{UpstreamConfig, VerifyException};

/// The crypto provider both legs use: ring, restricted to AEAD +
/// forward-secret suites (rustls offers nothing else, but say so explicitly).
pub fn provider() -> Arc<CryptoProvider> {
    // Built once: every flow's client and server configs share it.
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER.get_or_init(build_provider).clone()
}

fn build_provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.retain(|s| {
        use rustls::CipherSuite::*;
        matches!(
            s.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS13_AES_256_GCM_SHA384
                | TLS13_CHACHA20_POLY1305_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                | TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
                | TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        )
    });
    Arc::new(p)
}

/// Why the upstream could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The TLS handshake failed, certificate verification included.
    #[error("upstream TLS: {reason}")]
    Tls {
        /// Stable short reason for events (`expired`, `wrong_host`, …).
        reason: &'static str,
        /// The full error.
        detail: String,
    },
    /// The SNI is not a valid server name.
    #[error("invalid server name `{0}`")]
    BadName(String),
    /// The handshake did not finish in time.
    #[error("upstream TLS handshake timed out")]
    Timeout,
}

impl UpstreamError {
    /// Stable short reason for events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Tls { reason, .. } => reason,
            Self::BadName(_) => "bad_server_name",
            Self::Timeout => "handshake_timeout",
        }
    }
}

/// What the verified upstream handshake produced.
pub struct Verified {
    /// The TLS stream to the real server.
    pub stream: TlsStream<TcpStream>,
    /// The server's end-entity certificate.
    pub leaf: CertificateDer<'static>,
    /// SHA-256 of the end-entity certificate, hex.
    pub fingerprint: String,
    /// ALPN protocol the server chose.
    pub alpn: Option<Vec<u8>>,
    /// `TLSv1_3` etc.
    pub version: String,
    /// Negotiated cipher suite.
    pub suite: String,
    /// Set when a configured exception accepted an otherwise failing certificate.
    pub exception: Option<String>,
}

/// Builds verified upstream connections.
#[derive(Clone)]
pub struct Upstream {
    base: Arc<ClientConfig>,
    /// `base` with each ALPN list clients offered: every rustls connection
    /// holds its config for its whole life, so flows share them.
    by_alpn: Arc<std::sync::Mutex<Vec<AlpnConfig>>>,
    verifier: Arc<PinExceptions>,
    timeout: std::time::Duration,
}

/// An ALPN list offered upstream, and the config offering it.
type AlpnConfig = (Vec<Vec<u8>>, Arc<ClientConfig>);

/// How many distinct ALPN lists keep a shared config; clients choose the
/// lists, so the cache is bounded and the rest get a config of their own.
const ALPN_CONFIGS: usize = 16;

impl Upstream {
    /// Builds the upstream TLS client from `[upstream]`.
    pub fn new(config: &UpstreamConfig) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        for path in &config.extra_roots {
            use rustls::pki_types::pem::PemObject;
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("upstream.extra_roots: {}: {e}", path.display()))?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("upstream.extra_roots: {}: {e}", path.display()))?;
            }
        }
        let provider = provider();
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("upstream roots: {e}"))?;
        let verifier = Arc::new(PinExceptions {
            inner: webpki,
            exceptions: config.verify_exceptions.clone(),
        });
        let cfg = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .dangerous() // only to install PinExceptions, which verifies fully first
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        Ok(Self {
            base: Arc::new(cfg),
            by_alpn: Arc::default(),
            verifier,
            timeout: config.connect_timeout,
        })
    }

    /// TLS handshake over `tcp` as `sni`, offering `alpn`; verified.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        sni: &str,
        alpn: &[Vec<u8>],
    ) -> Result<Verified, UpstreamError> {
        let name = ServerName::try_from(sni.to_string())
            .map_err(|_| UpstreamError::BadName(sni.into()))?;
        let connector = TlsConnector::from(self.config_for(alpn));
        let stream = match tokio::time::timeout(self.timeout, connector.connect(name, tcp)).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(e)) => return Err(classify(&e)),
            Ok(Ok(s)) => s,
        };
        let (_, conn) = stream.get_ref();
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned()
            .ok_or(UpstreamError::Tls {
                reason: "no_certificate",
                detail: "server sent no certificate".into(),
            })?;
        let fingerprint = hex(&Sha256::digest(leaf.as_ref()));
        let chain = conn.peer_certificates().unwrap_or_default();
        let exception = self.exception_used(&name_owned(sni), chain, &fingerprint);
        Ok(Verified {
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            version: conn
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            suite: conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            stream,
            leaf,
            fingerprint,
            exception,
        })
    }

    /// The client config offering `alpn`, shared with earlier flows when possible.
    fn config_for(&self, alpn: &[Vec<u8>]) -> Arc<ClientConfig> {
        let mut cache = self.by_alpn.lock().expect("alpn config cache");
        if let Some((_, cfg)) = cache.iter().find(|(a, _)| a == alpn) {
            return cfg.clone();
        }
        let mut cfg = (*self.base).clone();
        cfg.alpn_protocols = alpn.to_vec();
        let cfg = Arc::new(cfg);
        if cache.len() < ALPN_CONFIGS {
            cache.push((alpn.to_vec(), cfg.clone()));
        }
        cfg
    }

    /// Whether the handshake passed only because of a pin exception.
    fn exception_used(
        &self,
        name: &ServerName<'static>,
        chain: &[CertificateDer<'_>],
        fp: &str,
    ) -> Option<String> {
        let host = name.to_str();
        let pinned = self
            .verifier
            .exceptions
            .iter()
            .any(|e| e.host.eq_ignore_ascii_case(&host) && e.sha256.eq_ignore_ascii_case(fp));
        if !pinned {
            return None;
        }
        let (ee, rest) = chain.split_first()?;
        self.verifier
            .inner
            .verify_server_cert(ee, rest, name, &[], UnixTime::now())
            .err()
            .map(|e| e.to_string())
    }
}

/// Full verification first; only when that fails, a configured per-host
/// pin (host + SHA-256 of the exact certificate) may accept, loudly.
#[derive(Debug)]
struct PinExceptions {
    inner: Arc<WebPkiServerVerifier>,
    exceptions: Vec<VerifyException>,
}

impl ServerCertVerifier for PinExceptions {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match weak_key(end_entity) {
            Some(err) => Err(err),
            None => {
                self.inner
                    .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            }
        };
        match verdict {
            Ok(v) => Ok(v),
            Err(err) => {
                let host = server_name.to_str();
                let fp = hex(&Sha256::digest(end_entity.as_ref()));
                let pinned = self.exceptions.iter().find(|e| {
                    e.host.eq_ignore_ascii_case(&host) && e.sha256.eq_ignore_ascii_case(&fp)
                });
                match pinned {
                    Some(e) => {
                        tracing::warn!(
                            host = %host,
                            sha256 = %fp,
                            failed = %err,
                            reason = %e.reason,
                            "UPSTREAM VERIFICATION EXCEPTION USED: certificate accepted only because upstream.verify_exceptions pins it"
                        );
                        Ok(ServerCertVerified::assertion())
                    }
                    None => Err(err),
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn name_owned(sni: &str) -> ServerName<'static> {
    ServerName::try_from(sni.to_string())
        .unwrap_or_else(|_| ServerName::try_from("invalid.invalid").expect("static"))
}

/// RSA keys shorter than this are refused on the upstream leg.
const MIN_RSA_BITS: usize = 2048;

/// An upstream key too weak to trust.
#[derive(Debug, thiserror::Error)]
#[error("weak upstream key: RSA-{0} (at least RSA-{MIN_RSA_BITS} required)")]
pub struct WeakKey(usize);

/// Refuses end-entity certificates with RSA keys under [`MIN_RSA_BITS`];
/// said explicitly rather than left to a signature failure later.
fn weak_key(end_entity: &CertificateDer<'_>) -> Option<rustls::Error> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::public_key::PublicKey;
    let (_, cert) = X509Certificate::from_der(end_entity.as_ref()).ok()?;
    match cert.public_key().parsed().ok()? {
        PublicKey::RSA(rsa) if rsa.key_size() < MIN_RSA_BITS => Some(
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(WeakKey(rsa.key_size())),
            ))),
        ),
        _ => None,
    }
}

/// Maps a handshake error to a stable reason.
fn classify(e: &std::io::Error) -> UpstreamError {
    use rustls::{CertificateError as C, Error as R};
    let detail = e.to_string();
    let reason = match e.get_ref().and_then(|inner| inner.downcast_ref::<R>()) {
        Some(R::InvalidCertificate(c)) => match c {
            C::Expired | C::ExpiredContext { .. } => "expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "not_yet_valid",
            C::NotValidForName | C::NotValidForNameContext { .. } => "wrong_host",
            C::UnknownIssuer => "unknown_issuer",
            C::BadSignature => "bad_signature",
            C::UnsupportedSignatureAlgorithmContext { .. } => "weak_or_unsupported_signature",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "invalid_purpose",
            C::BadEncoding => "bad_encoding",
            C::Revoked => "revoked",
            C::Other(o) if o.0.downcast_ref::<WeakKey>().is_some() => "weak_key",
            _ if detail.contains("EndEntityUsedAsCa") || detail.contains("CaUsedAsEndEntity") => {
                "issuer_not_ca"
            }
            _ => "invalid_certificate",
        },
        // What a server that cannot meet the upstream floor (TLS 1.2+, AEAD,
        // forward secrecy) answers: say which floor it missed.
        Some(R::PeerIncompatible(p)) => match p {
            rustls::PeerIncompatible::ServerDoesNotSupportTls12Or13
            | rustls::PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig => "protocol_version",
            rustls::PeerIncompatible::NoCipherSuitesInCommon => "no_common_cipher_suite",
            _ => "incompatible",
        },
        Some(R::AlertReceived(a)) => match a {
            rustls::AlertDescription::ProtocolVersion => "protocol_version",
            rustls::AlertDescription::HandshakeFailure
            | rustls::AlertDescription::InsufficientSecurity => "no_common_cipher_suite",
            _ => "alert_received",
        },
        Some(_) => "tls_error",
        None => "io_error",
    };
    UpstreamError::Tls { reason, detail }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
