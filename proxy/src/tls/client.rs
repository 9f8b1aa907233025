//! The client leg: a per-flow rustls server with the minted leaf, offering
//! exactly the ALPN protocol the real server chose.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::upstream::provider;

/// A server config presenting `leaf` and only `alpn` (if any).
pub fn server_config(leaf: Arc<CertifiedKey>, alpn: Option<&[u8]>) -> Arc<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(leaf)));
    cfg.alpn_protocols = alpn.map(|a| vec![a.to_vec()]).unwrap_or_default();
    // Resumption would let a client skip seeing a fresh leaf; keep it simple and safe.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Arc::new(cfg)
}

/// A server config with no certificate at all: the handshake fails with an
/// alert, which is what a client must get when the upstream failed verification.
pub fn refusing_config() -> Arc<ServerConfig> {
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Refuse));
    Arc::new(cfg)
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[derive(Debug)]
struct Refuse;

impl ResolvesServerCert for Refuse {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}
