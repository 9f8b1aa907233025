//! The employees' onboarding page, mitm.it style: the CA certificate in
//! each platform's format (`/ca.pem`, `/ca.cer`, `/ca.mobileconfig`), the
//! proxy auto-config (`/proxy.pac`), install-and-trust steps per platform,
//! and a trust check (`/trust-check.svg`, served only over HTTPS with a
//! leaf from the CA, so it loads only on a device that trusts the CA).
//!
//! Served on `onboarding.listen` (plain HTTP), `onboarding.https_listen`,
//! and by the explicit proxy for `onboarding.host` — answered locally,
//! never relayed.
//!
//! May import: `config`, `tls` and the certs crate; never `state`, `flow`
//! or `listener` (the listeners call it).

pub mod pac;
pub mod page;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_certs::{Ca, CertError, ExportFormat};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Config;

/// What the onboarding page serves, prepared once at start.
pub struct Onboarding {
    ca: Arc<Ca>,
    host: Option<String>,
    organization: Option<String>,
    ca_name: String,
    fingerprint: String,
    trust_url: Option<String>,
    pem: Bytes,
    der: Bytes,
    mobileconfig: Bytes,
    pac: Bytes,
}

/// Where `/proxy.pac` sends devices: `onboarding.pac_proxy`, else the
/// explicit proxy's bound address.
fn pac_proxy(config: &Config, proxy: SocketAddr) -> String {
    config
        .onboarding
        .pac_proxy
        .clone()
        .unwrap_or_else(|| proxy.to_string())
}

impl Onboarding {
    /// Prepares the downloads and texts; `None` when onboarding is off.
    /// `proxy` is the explicit proxy's bound address.
    pub fn new(config: &Config, ca: Arc<Ca>, proxy: SocketAddr) -> Result<Option<Self>, CertError> {
        let ob = &config.onboarding;
        if !ob.enabled() {
            return Ok(None);
        }
        let cert = ca.certificate();
        let describe = cert.describe()?;
        let (cert_cn, cert_org) = names(cert.cert_der().as_ref());
        let organization = Some(config.ca.organization.trim())
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .or(cert_org);
        let ca_name = cert_cn.unwrap_or_else(|| config.ca.name.clone());
        let host = ob
            .host
            .as_ref()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase());
        let trust_url = host.as_ref().map(|h| match ob.https_listen {
            Some(a) if a.port() != 443 => format!("https://{h}:{}/trust-check.svg", a.port()),
            _ => format!("https://{h}/trust-check.svg"),
        });
        Ok(Some(Self {
            pem: cert.export(ExportFormat::Pem, None)?.into(),
            der: cert.export(ExportFormat::Der, None)?.into(),
            mobileconfig: cert
                .export(ExportFormat::MobileConfig, Some(&config.ca.organization))?
                .into(),
            pac: pac::render(&ob.direct, &pac_proxy(config, proxy)).into(),
            ca,
            host,
            organization,
            ca_name,
            fingerprint: describe.sha256_fingerprint,
            trust_url,
        }))
    }

    /// Whether `host` (from a request line, CONNECT or Host header) is the
    /// onboarding host the explicit proxy answers for.
    pub fn is_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.host
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(host))
    }

    /// Answers one request; `tls` says whether it came over HTTPS (only
    /// then does the trust check succeed).
    pub fn respond<B>(&self, req: &Request<B>, tls: bool) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        match req.uri().path() {
            "/" | "/index.html" => {
                let ua = req
                    .headers()
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let facts = page::PageFacts {
                    organization: self.organization.as_deref(),
                    ca_name: &self.ca_name,
                    fingerprint: &self.fingerprint,
                    trust_url: self.trust_url.clone(),
                };
                let mut r = ok(
                    "text/html; charset=utf-8",
                    page::render(&facts, page::detect(ua)).into(),
                );
                r.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    header::HeaderValue::from_static(
                        "default-src 'none'; img-src https:; style-src 'unsafe-inline'; \
                         script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
                    ),
                );
                r
            }
            "/ca.pem" => download("application/x-pem-file", "gatehouse-ca.pem", &self.pem),
            "/ca.cer" => download("application/x-x509-ca-cert", "gatehouse-ca.cer", &self.der),
            "/ca.mobileconfig" => download(
                "application/x-apple-aspen-config",
                "gatehouse-ca.mobileconfig",
                &self.mobileconfig,
            ),
            "/proxy.pac" => ok("application/x-ns-proxy-autoconfig", self.pac.clone()),
            "/trust-check.svg" if tls => ok("image/svg+xml", Bytes::from_static(TRUST_SVG)),
            "/trust-check.svg" => plain(
                StatusCode::NOT_FOUND,
                "the trust check is served over HTTPS only\n",
            ),
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// Serves the page over TLS on `io` with a leaf from the CA for the
    /// onboarding host (the trust check), until the client is done.
    pub async fn serve_tls<S>(self: Arc<Self>, io: S, head_timeout: Duration)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(host) = self.host.clone() else {
            return;
        };
        let leaf = match self.leaf(&host) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%host, error = %e, "onboarding: no leaf for the trust check");
                return;
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls::client::server_config(
            leaf,
            Some(b"http/1.1"),
        ));
        let tls = match tokio::time::timeout(head_timeout, acceptor.accept(io)).await {
            Ok(Ok(s)) => s,
            // A device that does not trust the CA ends here: that is the
            // trust check's red.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "onboarding: TLS handshake failed (CA not trusted?)");
                return;
            }
            Err(_) => return,
        };
        self.serve(tls, true, head_timeout).await;
    }

    /// Serves plain or (already decrypted) TLS HTTP/1.1 on `io`.
    pub async fn serve<S>(self: Arc<Self>, io: S, tls: bool, head_timeout: Duration)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let me = self.clone();
        let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
            let r = me.respond(&req, tls);
            async move { Ok::<_, Infallible>(r) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(head_timeout)
            .serve_connection(TokioIo::new(io), svc)
            .await;
    }

    fn leaf(&self, host: &str) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
        let leaf = self
            .ca
            .mint_own_page(host, std::time::SystemTime::now())
            .map_err(|e| e.to_string())?;
        let (chain, key) = leaf.into_parts();
        let signing = crate::tls::upstream::provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, signing)))
    }
}

/// A green tick: what the trust check loads.
const TRUST_SVG: &[u8] = b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"16\" height=\"16\" viewBox=\"0 0 16 16\"><path d=\"M2 8l4 4 8-8\" stroke=\"#2ec27e\" stroke-width=\"2\" fill=\"none\"/></svg>\n";

/// The CA certificate's common name, and its organisation unless that is
/// the product's own (`O=Gatehouse` on a created CA names no one).
fn names(der: &[u8]) -> (Option<String>, Option<String>) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return (None, None);
    };
    let first = |a: Option<&x509_parser::x509::AttributeTypeAndValue<'_>>| {
        a.and_then(|a| a.as_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let cn = first(cert.subject().iter_common_name().next());
    let org = first(cert.subject().iter_organization().next()).filter(|o| o != "Gatehouse");
    (cn, org)
}

fn ok(content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Full::new(body))
        .expect("static response")
}

fn download(content_type: &'static str, file: &'static str, body: &Bytes) -> Response<Full<Bytes>> {
    let mut r = ok(content_type, body.clone());
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        header::HeaderValue::from_str(&format!("attachment; filename=\"{file}\""))
            .expect("static file name"),
    );
    r
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response")
}
