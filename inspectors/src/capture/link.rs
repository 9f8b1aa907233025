//! From a captured frame to a TCP or UDP segment: link-layer header by link
//! type, then IP and transport headers with `etherparse`.

use std::net::{IpAddr, SocketAddr};

use etherparse::{EtherType, NetSlice, SlicedPacket, TransportSlice};

use crate::identify::Transport;

/// Link types read (tcpdump.org LINKTYPE_ numbers).
pub mod linktype {
    /// BSD loopback: a 4-byte address family in the capturing host's order.
    pub const NULL: i32 = 0;
    /// Ethernet II, with any 802.1Q / QinQ tags.
    pub const ETHERNET: i32 = 1;
    /// Raw IP, as OpenBSD numbers it.
    pub const RAW_OPENBSD: i32 = 14;
    /// Raw IP, as most systems number it in files.
    pub const RAW_DLT: i32 = 12;
    /// Raw IP.
    pub const RAW: i32 = 101;
    /// OpenBSD loopback: the address family in network order.
    pub const LOOP: i32 = 108;
    /// Linux "cooked" capture, version 1 (`tcpdump -i any`).
    pub const LINUX_SLL: i32 = 113;
    /// Raw IPv4.
    pub const IPV4: i32 = 228;
    /// Raw IPv6.
    pub const IPV6: i32 = 229;
    /// Linux "cooked" capture, version 2.
    pub const LINUX_SLL2: i32 = 276;
}

/// The EtherType and payload of a Linux cooked header of `len` bytes
/// whose EtherType is at `proto`.
fn cooked<'a>(
    frame: &'a [u8],
    len: usize,
    proto: usize,
    name: &str,
) -> Result<(EtherType, &'a [u8]), String> {
    match (frame.get(proto..proto + 2), frame.get(len..)) {
        (Some(p), Some(payload)) => Ok((EtherType(u16::from_be_bytes([p[0], p[1]])), payload)),
        _ => Err(format!("{name} header cut short")),
    }
}

/// A TCP or UDP segment, as far as flow assembly needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// TCP or UDP.
    pub transport: Transport,
    /// TCP only: sequence number, SYN, ACK, RST.
    pub tcp: Option<TcpMeta>,
    /// The transport payload.
    pub payload: &'a [u8],
}

/// The TCP header fields reassembly uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpMeta {
    /// Sequence number of the first payload byte (of the SYN itself when
    /// `syn` is set).
    pub seq: u32,
    /// SYN flag.
    pub syn: bool,
    /// ACK flag.
    pub ack: bool,
}

/// What a frame held.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A TCP or UDP segment.
    Segment(Segment<'a>),
    /// Something else (ARP, ICMP, a non-first IP fragment, an unknown
    /// EtherType): not a flow's bytes, and not an error.
    Other,
}

/// Decodes one frame of the given link type. `Err` says why the frame is
/// malformed (or of a link type not read).
pub fn decode(linktype: i32, frame: &[u8]) -> Result<Decoded<'_>, String> {
    use linktype::*;
    let sliced = match linktype {
        ETHERNET => SlicedPacket::from_ethernet(frame),
        // etherparse's SLL reader refuses hardware types other than
        // Ethernet's, yet `tcpdump -i any` records loopback (772) and
        // tun/WireGuard (65534) interfaces that way; both SLL versions name
        // the payload's EtherType, which is all that is needed here.
        LINUX_SLL | LINUX_SLL2 => {
            let (ether_type, payload) = if linktype == LINUX_SLL {
                cooked(frame, 16, 14, "SLL")?
            } else {
                cooked(frame, 20, 0, "SLL2")?
            };
            SlicedPacket::from_ether_type(ether_type, payload)
        }
        // The family field's byte order depends on the capturing host; the
        // IP version nibble says the same more reliably.
        NULL | LOOP => SlicedPacket::from_ip(frame.get(4..).ok_or("loopback header cut short")?),
        RAW | RAW_DLT | RAW_OPENBSD | IPV4 | IPV6 => SlicedPacket::from_ip(frame),
        super::file::UNDECLARED_INTERFACE => {
            return Err("packet of an undeclared pcapng interface".into())
        }
        other => return Err(format!("link type {other} is not read")),
    }
    .map_err(|e| e.to_string())?;
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return Ok(Decoded::Other),
    };
    let segment = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => Segment {
            src: SocketAddr::new(src_ip, tcp.source_port()),
            dst: SocketAddr::new(dst_ip, tcp.destination_port()),
            transport: Transport::Tcp,
            tcp: Some(TcpMeta {
                seq: tcp.sequence_number(),
                syn: tcp.syn(),
                ack: tcp.ack(),
            }),
            payload: tcp.payload(),
        },
        Some(TransportSlice::Udp(udp)) => Segment {
            src: SocketAddr::new(src_ip, udp.source_port()),
            dst: SocketAddr::new(dst_ip, udp.destination_port()),
            transport: Transport::Udp,
            tcp: None,
            payload: udp.payload(),
        },
        _ => return Ok(Decoded::Other),
    };
    Ok(Decoded::Segment(segment))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp_v4(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5000, 443)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn expect_segment(linktype: i32, frame: &[u8]) -> Segment<'_> {
        match decode(linktype, frame) {
            Ok(Decoded::Segment(s)) => s,
            other => panic!("link type {linktype}: {other:?}"),
        }
    }

    #[test]
    fn every_link_type_reaches_the_same_segment() {
        let ip = udp_v4(b"hi");
        let mut eth = vec![0u8; 12];
        eth.extend([0x81, 0x00, 0x00, 0x07, 0x08, 0x00]); // VLAN 7, then IPv4
        eth.extend(&ip);
        // Hardware type 772: loopback, as `tcpdump -i any` writes it.
        let mut sll = vec![0, 0, 3, 4, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend(&ip);
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.extend(&ip);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend(&ip);
        for (lt, frame) in [
            (linktype::ETHERNET, &eth),
            (linktype::LINUX_SLL, &sll),
            (linktype::LINUX_SLL2, &sll2),
            (linktype::NULL, &null),
            (linktype::RAW, &ip),
            (linktype::IPV4, &ip),
        ] {
            let s = expect_segment(lt, frame);
            assert_eq!(s.src, "10.0.0.1:5000".parse().unwrap());
            assert_eq!(s.dst, "10.0.0.2:443".parse().unwrap());
            assert_eq!((s.transport, s.payload), (Transport::Udp, &b"hi"[..]));
        }
    }

    #[test]
    fn tcp_over_ipv6_keeps_sequence_and_flags() {
        let mut out = Vec::new();
        PacketBuilder::ipv6([0; 16], [1; 16], 64)
            .tcp(40000, 443, 1000, 1024)
            .syn()
            .write(&mut out, &[])
            .unwrap();
        let s = expect_segment(linktype::RAW, &out);
        assert_eq!(s.transport, Transport::Tcp);
        assert_eq!(
            s.tcp,
            Some(TcpMeta {
                seq: 1000,
                syn: true,
                ack: false
            })
        );
        assert!(s.src.is_ipv6());
    }

    #[test]
    fn malformed_and_foreign_frames_say_why() {
        assert!(decode(linktype::ETHERNET, &[0u8; 5]).is_err());
        assert!(decode(linktype::RAW, &[0x45, 0, 0]).is_err());
        assert!(decode(147, b"whatever").unwrap_err().contains("147"));
        let arp_eth = [vec![0u8; 12], vec![0x08, 0x06], vec![0u8; 28]].concat();
        assert!(matches!(
            decode(linktype::ETHERNET, &arp_eth),
            Ok(Decoded::Other) | Err(_)
        ));
    }
}
