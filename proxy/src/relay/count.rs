//! Byte counting around a stream, for events.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from and written to a stream.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes read (from the client: outbound).
    pub read: AtomicU64,
    /// Bytes written (to the client: inbound).
    pub written: AtomicU64,
}

/// A stream that counts what passes.
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    counters: Arc<Counters>,
}

impl<S> Counted<S> {
    /// Wraps `inner`, adding to `counters`.
    pub fn new(inner: S, counters: Arc<Counters>) -> Self {
        Self { inner, counters }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.counters.read.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.counters.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A stream whose traffic is shown to the flow's hooks before it is passed
/// on: reads are what the client sent (outbound), writes what it receives
/// (inbound). A hook's block fails the read or write, which ends the relay
/// with the blocked bytes undelivered.
pub struct Tapped<S> {
    inner: S,
    flow: Arc<super::hooks::FlowContext>,
    hooks: Arc<std::sync::Mutex<Box<dyn super::hooks::FlowHooks>>>,
    /// Bytes at the start of the caller's write buffer already shown to
    /// the hooks but not yet written (a write that was pending or partial
    /// is retried with the same bytes first).
    ahead: usize,
    blocked: bool,
}

impl<S> Tapped<S> {
    /// Wraps the client side of a byte relay.
    pub fn new(
        inner: S,
        flow: Arc<super::hooks::FlowContext>,
        hooks: Arc<std::sync::Mutex<Box<dyn super::hooks::FlowHooks>>>,
    ) -> Self {
        Self {
            inner,
            flow,
            hooks,
            ahead: 0,
            blocked: false,
        }
    }

    /// Shows `bytes` to the hooks; an error when they block.
    fn tap(&mut self, dir: super::hooks::Direction, bytes: &[u8]) -> io::Result<()> {
        if self.blocked {
            return Err(blocked());
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let verdict = match self.hooks.lock() {
            Ok(mut h) => h.on_bytes(&self.flow, dir, bytes),
            // A hook that panicked cannot judge: fail closed.
            Err(_) => super::hooks::Verdict::Block {
                policy: "inspection failed".into(),
            },
        };
        match verdict {
            super::hooks::Verdict::Allow => Ok(()),
            _ => {
                self.blocked = true;
                Err(blocked())
            }
        }
    }
}

fn blocked() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "blocked by policy")
}

impl<S: AsyncRead + Unpin> AsyncRead for Tapped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let new = &buf.filled()[before..];
            if let Err(e) = self.tap(super::hooks::Direction::Outbound, new) {
                buf.set_filled(before);
                return Poll::Ready(Err(e));
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tapped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.len() > self.ahead {
            let ahead = self.ahead;
            if let Err(e) = self.tap(super::hooks::Direction::Inbound, &buf[ahead..]) {
                return Poll::Ready(Err(e));
            }
            self.ahead = buf.len();
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.ahead = self.ahead.saturating_sub(n);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
