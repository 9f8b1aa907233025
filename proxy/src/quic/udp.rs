//! The socket an intercepted flow's quinn endpoint runs on: not a socket of
//! its own, but the flow's datagrams as the listener already has them —
//! the Initials held while the flow was decided, then what the listener
//! routes to the flow's queue and what arrives on the flow's reply socket
//! (bound to the original destination, connected to the client). Every
//! send goes out of the reply socket, so the client sees answers from the
//! address it wrote to. One endpoint per flow: quinn only ever sees one
//! peer.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::relay::count::Counters;

/// One flow's datagrams, as a quinn socket.
pub struct FlowSocket {
    /// The client's address (every datagram's source, every send's destination).
    client: SocketAddr,
    /// The original destination (what quinn takes for its own address).
    local: SocketAddr,
    held: Mutex<VecDeque<Bytes>>,
    queue: Mutex<mpsc::Receiver<Bytes>>,
    reply: Arc<UdpSocket>,
    /// `read`: bytes from the client; `written`: bytes to it.
    counters: Arc<Counters>,
}

impl fmt::Debug for FlowSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowSocket")
            .field("client", &self.client)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl FlowSocket {
    /// The flow of `client` to `local`: `held` datagrams are read first.
    pub fn new(
        client: SocketAddr,
        local: SocketAddr,
        held: Vec<Bytes>,
        queue: mpsc::Receiver<Bytes>,
        reply: Arc<UdpSocket>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            client,
            local,
            held: Mutex::new(held.into()),
            queue: Mutex::new(queue),
            reply,
            counters,
        }
    }

    /// Copies `d` into the first buffer; `None` when it does not fit.
    fn deliver(&self, d: &[u8], bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> bool {
        let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
            return false;
        };
        if d.len() > buf.len() {
            // Larger than quinn's receive buffer: not a datagram it could
            // read anyway (the listener's own bound is larger).
            return false;
        }
        buf[..d.len()].copy_from_slice(d);
        self.counters.read.fetch_add(d.len() as u64, Relaxed);
        *m = RecvMeta {
            addr: self.client,
            len: d.len(),
            stride: d.len(),
            ecn: None,
            dst_ip: Some(self.local.ip()),
        };
        true
    }
}

impl AsyncUdpSocket for FlowSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Poller {
            reply: self.reply.clone(),
        })
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        if transmit.destination != self.client {
            // quinn answers only the peer that wrote to it; anything else
            // is dropped like a lost datagram.
            return Ok(());
        }
        // One datagram per transmit (`max_transmit_segments` is 1).
        let n = self.reply.try_send(transmit.contents)?;
        self.counters.written.fetch_add(n as u64, Relaxed);
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let next = self.held.lock().expect("held lock").pop_front();
            let Some(d) = next else { break };
            if self.deliver(&d, bufs, meta) {
                return Poll::Ready(Ok(1));
            }
        }
        // A closed queue (the listener let the flow go): the reply socket
        // may still carry it.
        loop {
            let next = self.queue.lock().expect("queue lock").poll_recv(cx);
            let Poll::Ready(Some(d)) = next else { break };
            if self.deliver(&d, bufs, meta) {
                return Poll::Ready(Ok(1));
            }
        }
        loop {
            let Some(buf) = bufs.first_mut() else {
                return Poll::Pending;
            };
            let mut rb = ReadBuf::new(buf);
            match self.reply.poll_recv(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    self.counters.read.fetch_add(n as u64, Relaxed);
                    meta[0] = RecvMeta {
                        addr: self.client,
                        len: n,
                        stride: n,
                        ecn: None,
                        dst_ip: Some(self.local.ip()),
                    };
                    return Poll::Ready(Ok(1));
                }
                // An ICMP error about the client (port unreachable): not a
                // datagram; quinn's idle timeout ends a flow that is gone.
                Poll::Ready(Err(_)) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Write readiness of the reply socket.
struct Poller {
    reply: Arc<UdpSocket>,
}

impl fmt::Debug for Poller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Poller")
    }
}

impl UdpPoller for Poller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.reply.poll_send_ready(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn recv_one(s: &FlowSocket) -> (Vec<u8>, RecvMeta) {
        let mut buf = vec![0u8; 1500];
        let mut meta = [RecvMeta::default()];
        let n = std::future::poll_fn(|cx| {
            let mut bufs = [IoSliceMut::new(&mut buf)];
            s.poll_recv(cx, &mut bufs, &mut meta)
        })
        .await
        .unwrap();
        assert_eq!(n, 1);
        (buf[..meta[0].len].to_vec(), meta[0])
    }

    /// Held Initials first, then the listener's queue, then the reply
    /// socket; every datagram from the client; sends go to the client.
    #[tokio::test]
    async fn reads_held_then_queued_then_reply_datagrams_and_sends_to_the_client() {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let reply = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        reply.connect(client.local_addr().unwrap()).await.unwrap();
        let local = reply.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(4);
        let counters = Arc::new(Counters::default());
        let s = FlowSocket::new(
            client.local_addr().unwrap(),
            local,
            vec![Bytes::from_static(b"held")],
            rx,
            Arc::new(reply),
            counters.clone(),
        );
        tx.send(Bytes::from_static(b"queued")).await.unwrap();
        client.send_to(b"direct", local).await.unwrap();
        for want in [&b"held"[..], b"queued", b"direct"] {
            let (got, meta) = recv_one(&s).await;
            assert_eq!(got, want);
            assert_eq!(meta.addr, client.local_addr().unwrap());
            assert_eq!(meta.dst_ip, Some(local.ip()));
        }
        assert_eq!(counters.read.load(Relaxed), 16);

        let to_client = Transmit {
            destination: client.local_addr().unwrap(),
            ecn: None,
            contents: b"answer",
            segment_size: None,
            src_ip: None,
        };
        s.try_send(&to_client).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"answer"[..], local));
        // Nothing goes anywhere but to the flow's client.
        let elsewhere = Transmit {
            destination: "127.0.0.1:9".parse().unwrap(),
            ..to_client
        };
        s.try_send(&elsewhere).unwrap();
        assert_eq!(counters.written.load(Relaxed), 6);
    }
}
