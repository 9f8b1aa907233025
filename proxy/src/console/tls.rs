//! The console's TLS: a configured certificate and key, or (by default) a
//! leaf minted from the interception CA for `console.name` and the listen
//! address, re-minted well before it expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gatehouse_certs::Ca;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::ConsoleConfig;

/// A minted leaf is replaced after this long (they live a day at most).
const REMINT_AFTER: Duration = Duration::from_secs(6 * 3600);

/// The server config of the console listener.
pub fn server_config(
    config: &ConsoleConfig,
    ca: Arc<Ca>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = crate::tls::upstream::provider();
    let resolver: Arc<dyn ResolvesServerCert> = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => Arc::new(Fixed(load_pair(cert, key)?)),
        _ => {
            let fallback = if config.listen.ip().is_unspecified() {
                config.name.clone()
            } else {
                config.listen.ip().to_string()
            };
            let minted = Minted {
                ca,
                name: config.name.clone(),
                fallback,
                cache: Mutex::default(),
            };
            // Fail at start, not at the first handshake.
            minted.get(&minted.name)?;
            Arc::new(minted)
        }
    };
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(sc))
}

fn load_pair(cert: &std::path::Path, key: &std::path::Path) -> Result<Arc<CertifiedKey>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("console.cert: {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("console.cert: {}: no certificate", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("console.key: {}: {e}", key.display()))?;
    let signing = crate::tls::upstream::provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("console.key: {}: {e}", key.display()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

struct Minted {
    ca: Arc<Ca>,
    /// `console.name`.
    name: String,
    /// For clients sending no SNI (they connected to an address).
    fallback: String,
    cache: Mutex<HashMap<String, (Instant, Arc<CertifiedKey>)>>,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted").field("name", &self.name).finish()
    }
}

impl Minted {
    fn get(&self, name: &str) -> Result<Arc<CertifiedKey>, String> {
        let mut cache = self.cache.lock().expect("console leaf lock");
        if let Some((at, k)) = cache.get(name) {
            if at.elapsed() < REMINT_AFTER {
                return Ok(k.clone());
            }
        }
        let leaf = self
            .ca
            .mint_own_page(name, SystemTime::now())
            .map_err(|e| format!("console certificate for {name}: {e}"))?;
        let (chain, key) = leaf.into_parts();
        let signing = crate::tls::upstream::provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| e.to_string())?;
        let k = Arc::new(CertifiedKey::new(chain, signing));
        cache.insert(name.to_string(), (Instant::now(), k.clone()));
        Ok(k)
    }
}

impl ResolvesServerCert for Minted {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Only the configured name or the address: never a name a client picks.
        let name = match hello.server_name() {
            Some(sni) if sni.eq_ignore_ascii_case(&self.name) => self.name.as_str(),
            Some(_) => self.name.as_str(),
            None => self.fallback.as_str(),
        };
        match self.get(name) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::error!(error = %e, "console: no certificate");
                None
            }
        }
    }
}
