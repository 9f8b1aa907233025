//! Transparent UDP sockets: the listener that nftables TPROXY delivers
//! redirected datagrams to (each with its original destination, read from
//! `IP_ORIGDSTADDR` / `IPV6_ORIGDSTADDR`), and the per-flow socket that
//! answers the client from that original address.

use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::config::canonical_ip;

/// One datagram as the client sent it.
#[derive(Debug)]
pub struct Received {
    /// Its length (the bytes are at the start of the buffer passed in).
    pub len: usize,
    /// The client's address.
    pub from: SocketAddr,
    /// The address the client sent it to, before the redirect.
    pub to: SocketAddr,
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(a.ip()), a.port())
}

/// Binds the TPROXY listener at `addr` (`[::]` takes both families).
/// `IP_TRANSPARENT` needs `CAP_NET_ADMIN`.
pub fn bind_listener(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = Domain::for_address(addr);
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    setsockopt(&s, sockopt::IpTransparent, &true)?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
        setsockopt(&s, sockopt::Ipv6OrigDstAddr, &true)?;
    }
    // Also on an IPv6 socket: IPv4 datagrams to a dual-stack socket carry
    // their original destination in the IPv4 message.
    setsockopt(&s, sockopt::Ipv4OrigDstAddr, &true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// Receives one datagram into `buf` with its original destination.
pub async fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    socket
        .async_io(Interest::READABLE, || recv_now(socket, buf))
        .await
}

fn recv_now(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    let mut cmsg = nix::cmsg_space!(nix::libc::sockaddr_in6);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )?;
    let from = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::from((v4.ip(), v4.port())))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
                })
        })
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    let mut to = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4OrigDstAddr(sin) => {
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                to = Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)));
            }
            ControlMessageOwned::Ipv6OrigDstAddr(sin6) => {
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                to = Some(SocketAddr::new(
                    IpAddr::V6(ip),
                    u16::from_be(sin6.sin6_port),
                ));
            }
            _ => {}
        }
    }
    let to = to.ok_or_else(|| {
        io::Error::other("datagram without an original destination (not redirected by TPROXY?)")
    })?;
    let len = msg.bytes;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::other("datagram larger than the receive buffer"));
    }
    Ok(Received {
        len,
        from: canonical(from),
        to: canonical(to),
    })
}

/// A socket bound to the client's original destination (an address that
/// is not ours: `IP_TRANSPARENT`) and connected to the client, so answers
/// leave from the address the client wrote to. TPROXY also delivers the
/// client's later datagrams of the flow to it.
pub fn reply_socket(original: SocketAddr, client: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(
        Domain::for_address(original),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    s.set_reuse_address(true)?;
    setsockopt(&s, sockopt::IpTransparent, &true)?;
    s.set_nonblocking(true)?;
    s.bind(&original.into())?;
    s.connect(&client.into())?;
    UdpSocket::from_std(s.into())
}

/// An ordinary socket towards the server, connected to it.
pub async fn upstream_socket(server: SocketAddr) -> io::Result<UdpSocket> {
    let any: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(any).await?;
    s.connect(server).await?;
    Ok(s)
}
