//! Frames in, flows out: which side opened each flow, the start of what
//! the client sent, and the identification of it.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::link::{self, Decoded, Segment};
use super::tcp::StreamStart;
use crate::identify::dns::{self, DnsMessage};
use crate::identify::quic::{self, InitialParser};
use crate::identify::{self, gquic, Details, Identification, Protocol, Sniff, Transport};

/// DNS responses kept per flow.
const DNS_RESPONSES: usize = 16;
/// Bytes of a datagram kept while a UDP flow waits for more (RTP).
const DATAGRAM_BYTES: usize = 2048;

/// Bounds on what is kept per flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Client bytes of a TCP flow kept for identification (a
    /// post-quantum TLS ClientHello is about 1.8 KiB; 16 KiB leaves room
    /// for large PSK and padding extensions).
    pub tcp_bytes: usize,
    /// Client datagrams of a UDP flow offered to the QUIC Initial parser.
    pub udp_datagrams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            tcp_bytes: 16 * 1024,
            udp_datagrams: 8,
        }
    }
}

/// One flow of the capture.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Flow {
    /// The side that opened the flow: sender of the SYN, else of the first
    /// packet seen.
    pub client: SocketAddr,
    /// The other side.
    pub server: SocketAddr,
    /// TCP or UDP.
    pub transport: Transport,
    /// Timestamp of its first packet, when the capture has one.
    pub first_seen: Option<f64>,
    /// Packets, both directions.
    pub packets: u64,
    /// Transport payload bytes, both directions.
    pub bytes: u64,
    /// Payload bytes the client sent.
    pub client_bytes: u64,
    /// TCP: the client's SYN was captured, so the start is the real start.
    pub syn_seen: bool,
    /// What the client's first bytes are.
    pub identification: Identification,
    /// The server's DNS responses on a DNS flow (at most 16; over TCP,
    /// those whole in one segment), each with its timestamp when the
    /// capture has one.
    pub dns_responses: Vec<(Option<f64>, DnsMessage)>,
}

#[derive(Debug)]
struct State {
    flow: Flow,
    decided: bool,
    syn_seq: Option<u32>,
    start: Start,
}

#[derive(Debug)]
enum Start {
    Tcp(StreamStart),
    Udp {
        quic: Option<InitialParser>,
        datagrams: usize,
        first: Vec<u8>,
        /// Client datagrams of a flow that is not QUIC, kept until RTP
        /// can be told (bounded by `Limits::udp_datagrams`).
        kept: Vec<Vec<u8>>,
    },
}

/// Assembles flows from frames pushed one at a time (sans-IO: the caller
/// reads the capture, or a live source).
#[derive(Debug, Default)]
pub struct Assembler {
    limits: Limits,
    flows: Vec<State>,
    /// Both orders of the endpoint pair map to the flow's index.
    index: HashMap<(Transport, SocketAddr, SocketAddr), usize>,
}

impl Assembler {
    /// An assembler keeping at most `limits` per flow.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Adds one frame. `Ok(false)`: not TCP or UDP (ARP, ICMP, a later IP
    /// fragment), ignored. `Err`: the frame is malformed; it is skipped
    /// and the reason returned.
    pub fn push_frame(
        &mut self,
        linktype: i32,
        timestamp: Option<f64>,
        frame: &[u8],
    ) -> Result<bool, String> {
        match link::decode(linktype, frame)? {
            Decoded::Segment(s) => {
                self.push_segment(&s, timestamp);
                Ok(true)
            }
            Decoded::Other => Ok(false),
        }
    }

    /// Adds one decoded segment.
    pub fn push_segment(&mut self, seg: &Segment<'_>, timestamp: Option<f64>) {
        let key = (seg.transport, seg.src, seg.dst);
        let opening_syn = seg.tcp.filter(|t| t.syn && !t.ack);
        let idx = match self.index.get(&key) {
            // A SYN with a new sequence number from the client reuses the
            // address pair for a new connection.
            Some(&i)
                if !opening_syn.is_some_and(|t| {
                    let st = &self.flows[i];
                    st.flow.client == seg.src && st.syn_seq.is_some_and(|s| s != t.seq)
                }) =>
            {
                i
            }
            _ => self.open(seg, timestamp),
        };
        let limits = self.limits;
        let st = &mut self.flows[idx];
        st.flow.packets += 1;
        st.flow.bytes += seg.payload.len() as u64;
        if seg.src != st.flow.client {
            if st.flow.identification.protocol == Protocol::Dns
                && st.flow.dns_responses.len() < DNS_RESPONSES
            {
                // Over TCP only a response whole in one segment is read
                // (the server side is not reassembled).
                let sniffed = match seg.transport {
                    Transport::Udp => dns::detect_udp(seg.payload),
                    Transport::Tcp => dns::detect_tcp(seg.payload),
                };
                if let Sniff::Yes(m) = sniffed {
                    if m.response {
                        st.flow.dns_responses.push((timestamp, m));
                    }
                }
            }
            return;
        }
        st.flow.client_bytes += seg.payload.len() as u64;
        if st.decided {
            return;
        }
        match &mut st.start {
            Start::Tcp(stream) => {
                let meta = seg.tcp.expect("TCP segments carry TCP metadata");
                let mut seq = meta.seq;
                if meta.syn {
                    stream.syn(meta.seq);
                    st.syn_seq.get_or_insert(meta.seq);
                    st.flow.syn_seen = true;
                    seq = seq.wrapping_add(1);
                }
                if stream.push(seq, seg.payload) {
                    let port = st.flow.server.port();
                    let id = identify::identify(stream.bytes(), Transport::Tcp, port);
                    if !id.need_more {
                        st.decide(id);
                    } else if stream.is_full() {
                        let id = identify::identify_final(stream.bytes(), Transport::Tcp, port);
                        st.decide(id);
                    }
                }
            }
            Start::Udp {
                quic,
                datagrams,
                first,
                kept,
            } => {
                *datagrams += 1;
                if *datagrams == 1 {
                    first.extend_from_slice(seg.payload);
                }
                let port = st.flow.server.port();
                let decided =
                    udp_datagram(quic, kept, *datagrams, first, seg.payload, port, limits);
                if let Some(id) = decided {
                    st.decide(id);
                }
            }
        }
    }

    fn open(&mut self, seg: &Segment<'_>, timestamp: Option<f64>) -> usize {
        // A SYN-ACK seen first was sent by the server.
        let from_server = seg.tcp.is_some_and(|t| t.syn && t.ack);
        let (client, server) = if from_server {
            (seg.dst, seg.src)
        } else {
            (seg.src, seg.dst)
        };
        let idx = self.flows.len();
        let start = match seg.transport {
            Transport::Tcp => Start::Tcp(StreamStart::new(self.limits.tcp_bytes)),
            Transport::Udp => Start::Udp {
                quic: None,
                datagrams: 0,
                first: Vec::new(),
                kept: Vec::new(),
            },
        };
        self.flows.push(State {
            flow: Flow {
                client,
                server,
                transport: seg.transport,
                first_seen: timestamp,
                packets: 0,
                bytes: 0,
                client_bytes: 0,
                syn_seen: false,
                identification: identify::identify_final(&[], seg.transport, server.port()),
                dns_responses: Vec::new(),
            },
            decided: false,
            syn_seq: None,
            start,
        });
        self.index.insert((seg.transport, client, server), idx);
        self.index.insert((seg.transport, server, client), idx);
        idx
    }

    /// The flows in first-seen order, each judged on what it sent.
    pub fn finish(self) -> Vec<Flow> {
        self.flows
            .into_iter()
            .map(|mut st| {
                if !st.decided {
                    let port = st.flow.server.port();
                    let id = match &st.start {
                        Start::Tcp(s) => identify::identify_final(s.bytes(), Transport::Tcp, port),
                        Start::Udp {
                            quic: Some(_),
                            first,
                            ..
                        } => quic_malformed("ClientHello incomplete", first.len()),
                        Start::Udp { kept, .. } if !kept.is_empty() => {
                            let refs: Vec<&[u8]> = kept.iter().map(Vec::as_slice).collect();
                            identify::identify_datagrams(&refs, port)
                        }
                        Start::Udp { first, .. } => {
                            identify::identify_final(first, Transport::Udp, port)
                        }
                    };
                    st.flow.identification = id;
                }
                st.flow
            })
            .collect()
    }

    /// Flows seen so far.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow was seen.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

impl State {
    fn decide(&mut self, id: Identification) {
        self.flow.identification = id;
        self.decided = true;
        match &mut self.start {
            Start::Tcp(s) => s.release(),
            Start::Udp {
                quic, first, kept, ..
            } => {
                *quic = None;
                *first = Vec::new();
                *kept = Vec::new();
            }
        }
    }
}

/// One client datagram of a UDP flow: a QUIC Initial goes to the flow's
/// Initial parser (hellos may span datagrams), anything else is judged as
/// the first datagram. `Some` once decided.
fn udp_datagram(
    quic: &mut Option<InitialParser>,
    kept: &mut Vec<Vec<u8>>,
    count: usize,
    first: &[u8],
    datagram: &[u8],
    port: u16,
    limits: Limits,
) -> Option<Identification> {
    let initial = quic::looks_like_initial(datagram) == Some(true);
    if quic.is_none() {
        if !initial || count > 1 {
            // A gQUIC CHLO may continue in the next packets.
            let gquic_first = gquic::looks_like_gquic(first) == Some(true);
            if count == 1 {
                // Everything but RTP and long CHLOs is decided by the first
                // datagram.
                let id = identify::identify_final(first, Transport::Udp, port);
                let chlo_goes_on = gquic_first && matches!(gquic::parse(first), Ok(None));
                if (id.protocol != Protocol::Unknown && !chlo_goes_on) || limits.udp_datagrams <= 1
                {
                    return Some(id);
                }
            }
            kept.push(datagram[..datagram.len().min(DATAGRAM_BYTES)].to_vec());
            let refs: Vec<&[u8]> = kept.iter().map(Vec::as_slice).collect();
            let chlo_done = gquic_first && !matches!(gquic::parse_flow(&refs), Ok(None));
            if kept.len() < limits.udp_datagrams && !chlo_done {
                return None;
            }
            return Some(identify::identify_datagrams(&refs, port));
        }
        *quic = Some(InitialParser::new());
    }
    if !initial {
        // 0-RTT, Handshake or 1-RTT packets: the hello is not coming.
        return (count >= limits.udp_datagrams)
            .then(|| quic_malformed("ClientHello incomplete", first.len()));
    }
    let parser = quic.as_mut().expect("set above");
    match parser.push_datagram(datagram) {
        Ok(Some(hello)) => Some(Identification::from_parts(
            Protocol::Quic,
            Details::Quic(Box::new(hello)),
            first.len(),
        )),
        Ok(None) if count >= limits.udp_datagrams => {
            Some(quic_malformed("ClientHello incomplete", first.len()))
        }
        Ok(None) => None,
        Err(e) => Some(quic_malformed(&e.to_string(), first.len())),
    }
}

fn quic_malformed(reason: &str, bytes_seen: usize) -> Identification {
    Identification::malformed(Protocol::Quic, reason, bytes_seen)
}
