//! A Google QUIC (gQUIC) client's hello, put back together from as many
//! datagrams as it takes (Chromium's larger CHLOs span two or three): the
//! inspectors' [`ChloAssembler`] does the reading, this feeds it the
//! flow's datagrams within the same bounds as IETF Initials
//! (`quic.initial_max_bytes`, `quic.initial_timeout`).

use bytes::Bytes;
use gatehouse_inspectors::identify::gquic::ChloAssembler;
use gatehouse_inspectors::identify::{Details, Identification, Protocol};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::config::QuicConfig;

/// How a gQUIC hello ended.
pub(super) enum Chlo {
    /// The whole hello: its SNI and UAID (or a T05x ClientHello).
    Done(Box<Identification>),
    /// Packets that cannot be read, or a hello that did not complete
    /// within the bounds.
    Unreadable(String),
    /// The client went away.
    Gone,
}

/// Reads the hello starting in `first` (a datagram that looks like a
/// gQUIC client packet), taking more datagrams of the flow from `rx`.
/// Every datagram read is kept in `held` for a relay that follows.
pub(super) async fn collect(
    first: Bytes,
    rx: &mut mpsc::Receiver<Bytes>,
    cfg: &QuicConfig,
    held: &mut Vec<Bytes>,
) -> Chlo {
    let deadline = Instant::now() + cfg.initial_timeout;
    let mut assembler = ChloAssembler::new();
    let mut bytes = 0;
    let mut datagram = first;
    loop {
        bytes += datagram.len();
        let pushed = assembler.push(&datagram);
        held.push(datagram);
        match pushed {
            Ok(Some(hello)) => {
                return Chlo::Done(Box::new(Identification::from_parts(
                    Protocol::Quic,
                    Details::Gquic(Box::new(hello)),
                    bytes,
                )))
            }
            Ok(None) => {}
            Err(e) => return Chlo::Unreadable(format!("gQUIC hello: {e}")),
        }
        if bytes >= cfg.initial_max_bytes {
            return Chlo::Unreadable(format!(
                "no complete gQUIC CHLO in quic.initial_max_bytes ({})",
                cfg.initial_max_bytes
            ));
        }
        datagram = tokio::select! {
            d = rx.recv() => match d {
                Some(d) => d,
                None => return Chlo::Gone,
            },
            _ = sleep_until(deadline) => return Chlo::Unreadable(format!(
                "gQUIC CHLO incomplete after quic.initial_timeout ({:?})",
                cfg.initial_timeout
            )),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_inspectors::identify::gquic::{build_chlo, build_client_packets, GquicVersion};
    use std::time::Duration;

    fn packets(sni: &[u8]) -> Vec<Bytes> {
        let v = GquicVersion::from_wire(u32::from_be_bytes(*b"Q046")).unwrap();
        let pad = vec![b'x'; 2500];
        let chlo = build_chlo(&[(b"SNI\0", sni), (b"PAD\0", &pad), (b"VER\0", b"Q046")]);
        build_client_packets(v, &[7; 8], &chlo, 1350)
            .into_iter()
            .map(Bytes::from)
            .collect()
    }

    #[tokio::test]
    async fn a_hello_over_several_datagrams_is_read_whole() {
        let mut p = packets(b"multi.gquic.test");
        assert!(p.len() >= 2, "the CHLO spans packets");
        let first = p.remove(0);
        let (tx, mut rx) = mpsc::channel(8);
        for d in p {
            tx.send(d).await.unwrap();
        }
        let mut held = Vec::new();
        let Chlo::Done(id) = collect(first, &mut rx, &QuicConfig::default(), &mut held).await
        else {
            panic!("hello not read")
        };
        assert_eq!(id.server_name(), Some("multi.gquic.test"));
        assert!(held.len() >= 2);
    }

    #[tokio::test]
    async fn an_unfinished_hello_is_bounded_in_time_and_bytes() {
        let mut p = packets(b"slow.gquic.test");
        let first = p.remove(0);
        let (_tx, mut rx) = mpsc::channel(8);
        let cfg = QuicConfig {
            initial_timeout: Duration::from_millis(50),
            ..QuicConfig::default()
        };
        let mut held = Vec::new();
        assert!(matches!(
            collect(first.clone(), &mut rx, &cfg, &mut held).await,
            Chlo::Unreadable(why) if why.contains("initial_timeout")
        ));
        let cfg = QuicConfig {
            initial_max_bytes: 1200,
            ..QuicConfig::default()
        };
        assert!(matches!(
            collect(first, &mut rx, &cfg, &mut Vec::new()).await,
            Chlo::Unreadable(why) if why.contains("initial_max_bytes")
        ));
    }
}
