//! Byte relay between two streams, with an idle timeout and byte counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides closed.
    Closed,
    /// No bytes either way for the idle timeout.
    Idle,
    /// A read or write failed.
    Error,
    /// The gateway's grace period ran out.
    Shutdown,
}

impl CloseReason {
    /// Stable name for events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Idle => "idle_timeout",
            Self::Error => "io_error",
            Self::Shutdown => "shutdown",
        }
    }
}

/// What a finished relay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spliced {
    /// Bytes from `a` to `b` (client to server).
    pub up: u64,
    /// Bytes from `b` to `a`.
    pub down: u64,
    /// Why it ended.
    pub reason: CloseReason,
}

/// Copies both ways until both sides close, nothing moves for `idle`, or
/// `abort` fires. Half-closes are passed on.
pub async fn splice<A, B>(a: A, b: B, idle: Duration, abort: &CancellationToken) -> Spliced
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    // Both directions to their end; a failing one (a reset, or a hook's
    // block) ends the relay at once rather than leaving the other open.
    let both = async {
        let up_pump = pump(&mut ar, &mut bw, &up, &last, start);
        let down_pump = pump(&mut br, &mut aw, &down, &last, start);
        tokio::pin!(up_pump, down_pump);
        let (mut up_done, mut down_done) = (false, false);
        while !(up_done && down_done) {
            let ok = tokio::select! {
                ok = &mut up_pump, if !up_done => { up_done = true; ok }
                ok = &mut down_pump, if !down_done => { down_done = true; ok }
            };
            if !ok {
                return CloseReason::Error;
            }
        }
        CloseReason::Closed
    };
    let idle_watch = async {
        loop {
            let seen = Duration::from_millis(last.load(Ordering::Relaxed));
            let deadline = start + seen + idle;
            if Instant::now() >= deadline {
                return CloseReason::Idle;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    let reason = tokio::select! {
        r = both => r,
        r = idle_watch => r,
        _ = abort.cancelled() => CloseReason::Shutdown,
    };
    Spliced {
        up: up.load(Ordering::Relaxed),
        down: down.load(Ordering::Relaxed),
        reason,
    }
}

/// Copies until EOF (then half-closes the writer). Returns whether it ended cleanly.
async fn pump<R, W>(
    r: &mut R,
    w: &mut W,
    count: &AtomicU64,
    last: &AtomicU64,
    start: Instant,
) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => return w.shutdown().await.is_ok(),
            Ok(n) => n,
            Err(_) => return false,
        };
        if w.write_all(&buf[..n]).await.is_err() {
            return false;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn relays_both_ways_and_counts() {
        let (client, a) = duplex(1024);
        let (b, server) = duplex(1024);
        let abort = CancellationToken::new();
        let relay = tokio::spawn(async move { splice(a, b, Duration::from_secs(5), &abort).await });
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut sr, mut sw) = tokio::io::split(server);
        cw.write_all(b"hello").await.unwrap();
        cw.shutdown().await.unwrap();
        let mut got = Vec::new();
        sr.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        sw.write_all(b"world!").await.unwrap();
        sw.shutdown().await.unwrap();
        let mut back = Vec::new();
        cr.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"world!");
        let done = relay.await.unwrap();
        assert_eq!(
            (done.up, done.down, done.reason),
            (5, 6, CloseReason::Closed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed() {
        let (_client, a) = duplex(64);
        let (b, _server) = duplex(64);
        let abort = CancellationToken::new();
        let done = splice(a, b, Duration::from_secs(30), &abort).await;
        assert_eq!(done.reason, CloseReason::Idle);
    }
}
