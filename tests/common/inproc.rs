//! The gateway in-process (library API) with its events collected, and a
//! Rust TLS client that goes through it and records what it was shown.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use gatehouse::config::Config;
use gatehouse::events::{ConnectionEvent, Event, EventSink};
use gatehouse::Gateway;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Keeps every event for assertions; events emitted under an id (a
/// message that findings name) are also kept with it.
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<Event>>, pub Mutex<Vec<(uuid::Uuid, Event)>>);

impl EventSink for Collect {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }

    fn emit_as(&self, id: uuid::Uuid, event: Event) {
        self.1.lock().unwrap().push((id, event.clone()));
        self.0.lock().unwrap().push(event);
    }
}

impl Collect {
    pub fn connections(&self) -> Vec<ConnectionEvent> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Connection(c) => Some(c.clone()),
                #[allow(unreachable_patterns)]
                _ => None,
            })
            .collect()
    }

    /// Every `policy` event so far.
    pub fn policies(&self) -> Vec<gatehouse::events::PolicyEvent> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Policy(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// Waits (bounded) until a connection event for `sni` arrives.
    pub async fn wait_connection(&self, sni: &str) -> ConnectionEvent {
        for _ in 0..200 {
            if let Some(c) = self
                .connections()
                .into_iter()
                .find(|c| c.sni.as_deref() == Some(sni))
            {
                return c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!(
            "no connection event for {sni}; have: {:#?}",
            self.connections()
        );
    }
}

pub struct TestGateway {
    pub proxy: SocketAddr,
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    pub events: Arc<Collect>,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    /// A gateway trusting `roots` (PEM) upstream, allowing loopback destinations.
    pub async fn start(roots: &[&str], tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_with(roots, Arc::new(gatehouse::relay::hooks::AllowAll), tweak).await
    }

    /// As [`start`](Self::start), running `interceptor` on intercepted flows.
    pub async fn start_with(
        roots: &[&str],
        interceptor: Arc<dyn gatehouse::relay::hooks::Interceptor>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.proxy.listen = "127.0.0.1:0".parse().unwrap();
        config.admin.listen = "127.0.0.1:0".parse().unwrap();
        config.proxy.allowed_destinations =
            vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        config.proxy.shutdown_grace = std::time::Duration::from_secs(2);
        config.ca.dir = dir.path().join("ca");
        for (i, pem) in roots.iter().enumerate() {
            let p = dir.path().join(format!("root{i}.pem"));
            std::fs::write(&p, pem).unwrap();
            config.upstream.extra_roots.push(p);
        }
        tweak(&mut config);
        let events = Arc::new(Collect::default());
        let gw = Gateway::bind_with(config, events.clone(), interceptor)
            .await
            .expect("gateway binds");
        let proxy = gw.proxy_addr();
        let ca_pem = gw.ca().cert_pem().to_string();
        let ca_der = CertificateDer::from(gw.ca().cert_der().to_vec());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            gw.run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            proxy,
            ca_pem,
            ca_der,
            events,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn ca_file(&self) -> std::path::PathBuf {
        let p = self.dir.path().join("gatehouse-ca.pem");
        std::fs::write(&p, &self.ca_pem).unwrap();
        p
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Opens a CONNECT tunnel to `target` through `proxy`; returns the stream
/// and the status line.
pub async fn tunnel(proxy: SocketAddr, target: SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    (s, text.lines().next().unwrap_or("").to_string())
}

/// What a client was shown during its handshake.
#[derive(Debug, Default)]
pub struct Seen(pub Mutex<Vec<Vec<CertificateDer<'static>>>>);

impl Seen {
    pub fn chains(&self) -> Vec<Vec<CertificateDer<'static>>> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Debug)]
struct Recording {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: Arc<Seen>,
    reject: bool,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        ee: &CertificateDer<'_>,
        im: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![ee.clone().into_owned()];
        chain.extend(im.iter().map(|c| c.clone().into_owned()));
        self.seen.0.lock().unwrap().push(chain);
        if self.reject {
            // Behave like a pinning app: refuse whatever was shown.
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        }
        self.inner.verify_server_cert(ee, im, name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A TLS client trusting only `roots`, recording every chain it is shown.
/// `reject` makes it refuse any certificate, as a pinning app does.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
    reject: bool,
) -> (Arc<rustls::ClientConfig>, Arc<Seen>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(store),
        provider.clone(),
    )
    .build()
    .unwrap();
    let seen = Arc::new(Seen::default());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recording {
            inner,
            seen: seen.clone(),
            reject,
        }))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    (Arc::new(cfg), seen)
}

/// CONNECT through `proxy` to `target`, then TLS as `sni`.
pub async fn tls_through(
    proxy: SocketAddr,
    target: SocketAddr,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let (tcp, status) = tunnel(proxy, target).await;
    assert!(status.contains(" 200"), "CONNECT refused: {status}");
    tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
}

/// Sends a minimal HTTP/1.1 GET over `s` and returns the whole response.
pub async fn http_get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    host: &str,
    path: &str,
) -> String {
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// What a [`ByteTap`] saw: each chunk of a byte relay with its direction.
pub type TapLog = Arc<Mutex<Vec<(gatehouse::relay::hooks::Direction, Vec<u8>)>>>;

/// Hooks that record the bytes of non-HTTP relays inside TLS.
pub struct ByteTap(pub TapLog);

struct ByteTapHooks(TapLog);

impl gatehouse::relay::hooks::Interceptor for ByteTap {
    fn open(
        &self,
        _f: &gatehouse::relay::hooks::FlowContext,
    ) -> Box<dyn gatehouse::relay::hooks::FlowHooks> {
        Box::new(ByteTapHooks(self.0.clone()))
    }
}

impl gatehouse::relay::hooks::FlowHooks for ByteTapHooks {
    fn on_bytes(
        &mut self,
        _f: &gatehouse::relay::hooks::FlowContext,
        dir: gatehouse::relay::hooks::Direction,
        bytes: &[u8],
    ) -> gatehouse::relay::hooks::Verdict {
        self.0.lock().unwrap().push((dir, bytes.to_vec()));
        gatehouse::relay::hooks::Verdict::Allow
    }
}
