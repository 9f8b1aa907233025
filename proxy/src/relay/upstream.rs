//! The upstream side of one relayed HTTP connection: one HTTP/1.1 or
//! HTTP/2 client connection, reopened when the server closed it.
//!
//! Servers close kept-alive connections (nginx after `keepalive_requests`
//! or its idle timeout; an HTTP/2 GOAWAY). The client's connection to the
//! gateway stays open, so its next request needs a new upstream
//! connection: [`Redial`] opens one with the flow's own verification (the
//! flow supplies it; this module knows nothing of flows). A request the
//! server never saw is resent; an idempotent one whose body is known is
//! retried once when a reused connection closed before answering.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use super::http::{Body, BoxError};

/// A byte stream to the server (a TLS connection, usually).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Opens a new connection to the same server, verified as the first was.
pub type Redial = Arc<dyn Fn() -> Redialing + Send + Sync>;

/// A [`Redial`] in progress.
pub type Redialing = Pin<Box<dyn Future<Output = Result<Box<dyn Io>, String>> + Send>>;

/// A request that can be sent again: its head and whole body.
pub(super) struct Replay {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Replay {
    fn request(&self) -> Request<Body> {
        let mut req = Request::new(super::http::full(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

enum Conn {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
    /// Closed; the next request reopens it (or fails without a redial).
    Closed,
}

struct State {
    conn: Conn,
    /// Bumped on every reopen, so a failure closes only its own connection.
    generation: u64,
    /// Responses received on this connection.
    answered: u64,
}

/// The upstream connection of one relayed client connection.
pub(super) struct Upstream {
    h2: bool,
    state: tokio::sync::Mutex<State>,
    redial: Option<Redial>,
}

impl Upstream {
    /// Handshakes HTTP/2 or HTTP/1.1 over `io`; `redial` reopens it later.
    pub async fn open<U: Io>(io: U, h2: bool, redial: Option<Redial>) -> Result<Self, String> {
        let conn = handshake(io, h2).await?;
        Ok(Self {
            h2,
            state: tokio::sync::Mutex::new(State {
                conn,
                generation: 0,
                answered: 0,
            }),
            redial,
        })
    }

    /// Whether this is an HTTP/2 connection.
    pub fn is_h2(&self) -> bool {
        self.h2
    }

    /// Sends `req`, reopening a closed connection first; resends a request
    /// the server never saw, and retries `replay` once when a reused
    /// connection closed before answering.
    pub async fn send(
        &self,
        req: Request<Body>,
        replay: Option<Replay>,
    ) -> Result<Response<Incoming>, BoxError> {
        let mut req = req;
        let mut retried = false;
        loop {
            let mut st = self.state.lock().await;
            self.make_ready(&mut st).await?;
            let (generation, reused) = (st.generation, st.answered > 0);
            let sent = match &mut st.conn {
                Conn::H1(s) => s.try_send_request(req).await,
                Conn::H2(s) => {
                    // Streams multiplex: do not hold the lock while waiting.
                    let mut s = s.clone();
                    drop(st);
                    let r = s.try_send_request(req).await;
                    st = self.state.lock().await;
                    r
                }
                Conn::Closed => unreachable!("make_ready reopens or fails"),
            };
            let mut err = match sent {
                Ok(resp) => {
                    if st.generation == generation {
                        st.answered += 1;
                    }
                    return Ok(resp);
                }
                Err(e) => e,
            };
            let again = match err.take_message() {
                // Never written: safe to send on a new connection, whatever it is.
                Some(unsent) => Some(unsent),
                None => replay.as_ref().filter(|_| reused).map(|r| r.request()),
            };
            match again {
                Some(next) if !retried => {
                    tracing::debug!(error = %err.error(), "upstream connection closed; retrying on a new one");
                    if st.generation == generation {
                        st.conn = Conn::Closed;
                    }
                    retried = true;
                    req = next;
                }
                _ => return Err(Box::new(err.into_error())),
            }
        }
    }

    /// Makes `st.conn` usable: waits for it, or reopens it when closed.
    async fn make_ready(&self, st: &mut State) -> Result<(), BoxError> {
        let alive = match &mut st.conn {
            Conn::H1(s) => s.ready().await.is_ok(),
            Conn::H2(s) => s.ready().await.is_ok(),
            Conn::Closed => false,
        };
        if alive {
            return Ok(());
        }
        st.conn = Conn::Closed;
        let Some(redial) = &self.redial else {
            return Err("upstream connection closed".into());
        };
        let io = redial()
            .await
            .map_err(|e| format!("reopening the upstream connection: {e}"))?;
        st.conn = handshake(io, self.h2).await?;
        st.generation += 1;
        st.answered = 0;
        tracing::debug!(generation = st.generation, "upstream connection reopened");
        Ok(())
    }
}

/// The client handshake, its connection task spawned (in the flow's span).
///
/// The handshakes are boxed futures: each takes only the memory its own
/// protocol needs, and its state is freed once done.
async fn handshake<U: Io>(io: U, h2: bool) -> Result<Conn, String> {
    if h2 {
        let (send, conn) = Box::pin(
            http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(io)),
        )
        .await
        .map_err(|e| format!("upstream h2 handshake: {e}"))?;
        tokio::spawn(
            async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream h2 connection ended");
                }
            }
            .in_current_span(),
        );
        Ok(Conn::H2(send))
    } else {
        // hyper's read buffers (both legs) keep their default bound of about
        // 400 KiB: they grow for large bodies and never shrink, so an idle
        // connection keeps what its largest body grew them to, but a 64 KiB
        // bound cost a tenth of upload and a sixth of download throughput.
        let (send, conn) = Box::pin(http1::Builder::new().handshake(TokioIo::new(io)))
            .await
            .map_err(|e| format!("upstream http/1.1 handshake: {e}"))?;
        tokio::spawn(
            async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upstream http/1.1 connection ended");
                }
            }
            .in_current_span(),
        );
        Ok(Conn::H1(send))
    }
}
