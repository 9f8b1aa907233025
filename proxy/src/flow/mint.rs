//! Mint: a leaf for the verified name (from the cache, or freshly signed by
//! the enterprise CA), and the client's handshake with it. Learned pinning
//! is fed from how that handshake ends.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use gatehouse_certs::LeafRequest;

use crate::config::PinningMode;
use crate::error::Side;
use crate::relay::count::{Counted, Counters};
use crate::relay::rewind::Rewind;
use crate::state::Shared;
use crate::tls;
use crate::tls::upstream::Verified;

use super::act;
use super::context::{CloseReason, Decision, Flow};

/// The rustls signing material of a leaf for `name`, covered by the
/// verified upstream certificate `upstream`.
pub fn leaf_for(
    shared: &Shared,
    name: &str,
    upstream: &rustls::pki_types::CertificateDer<'_>,
) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    let req = LeafRequest::new(name, upstream.clone().into_owned()).map_err(|e| e.to_string())?;
    shared
        .leaves
        .get_or_mint(&req, std::time::SystemTime::now())
        .map_err(|e| e.to_string())
}

/// The rustls signing material of a leaf for Gatehouse's own block page:
/// exactly `name` (the SNI, or the address without one), no upstream.
pub fn own_page_leaf(
    shared: &Shared,
    name: &str,
) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    let leaf = shared
        .ca
        .mint_own_page(name, std::time::SystemTime::now())
        .map_err(|e| e.to_string())?;
    let (chain, key) = leaf.into_parts();
    let signing = tls::upstream::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, signing)))
}

/// Completes the client's handshake with a leaf for `name`, offering the
/// ALPN the server chose. `None` when the flow ends here (recorded).
pub async fn client_handshake<S>(
    flow: &mut Flow,
    shared: &Shared,
    client: Rewind<S>,
    name: &str,
    verified: &Verified,
    counters: &Arc<Counters>,
) -> Option<TlsStream<Counted<Rewind<S>>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let leaf = match leaf_for(shared, name, &verified.leaf) {
        Ok(l) => l,
        Err(e) => {
            flow.decide(Decision::Block, format!("no leaf for {name}: {e}"));
            flow.flagged = true;
            flow.fail(Side::Internal, CloseReason::LeafRefused);
            act::alert(client, shared).await;
            return None;
        }
    };
    let acceptor = TlsAcceptor::from(tls::client::server_config(leaf, verified.alpn.as_deref()));
    let counted = Counted::new(client, counters.clone());
    let handshake = tokio::time::timeout(
        shared.config.proxy.header_read_timeout,
        acceptor.accept(counted),
    )
    .await;
    // Learned pinning only where `intercept.pinning = "learn"`, and per
    // user/device (the address only without an identity).
    let learn = shared.config.intercept.pinning == PinningMode::Learn;
    let subject = super::decide::pinning_key(flow);
    let client_tls = match handshake {
        Ok(Ok(s)) => {
            if learn {
                shared.pinning.record_success(&subject, name);
            }
            s
        }
        Ok(Err(e)) => {
            flow.end(CloseReason::ClientTlsError);
            flow.reason = format!("client handshake failed: {e}");
            if learn
                && is_pin_abort(&e)
                && shared.pinning.record_abort(&subject, name, Instant::now())
            {
                tracing::warn!(host = %name, %subject, "client pins its certificates: passthrough learned");
                flow.reason = format!(
                    "client refused our certificate ({e}); pinning learned for {subject}: passthrough for {:?}",
                    shared.config.intercept.pinning_ttl
                );
                flow.flagged = true;
                flow.policy_event(
                    &*shared.events,
                    "pinning_bypass",
                    "passthrough",
                    &flow.reason.clone(),
                );
            }
            return None;
        }
        Err(_) => {
            flow.end(CloseReason::ClientTlsTimeout);
            return None;
        }
    };
    {
        let (_, conn) = client_tls.get_ref();
        flow.tls.client = Some(format!(
            "{} {}",
            conn.protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            conn.negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default()
        ));
    }
    Some(client_tls)
}

/// A client that aborts after seeing our leaf: a certificate alert, or a
/// close before the handshake finished.
fn is_pin_abort(e: &std::io::Error) -> bool {
    use rustls::AlertDescription as A;
    if e.kind() == std::io::ErrorKind::UnexpectedEof
        || e.kind() == std::io::ErrorKind::ConnectionReset
    {
        return true;
    }
    matches!(
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::AlertReceived(
            A::BadCertificate | A::UnknownCA | A::CertificateUnknown
        ))
    )
}
