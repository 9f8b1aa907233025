//! Capture files held in memory: legacy pcap (either byte order, micro- or
//! nanosecond timestamps, and the "modified" variant) and pcapng (any
//! number of sections and interfaces, either byte order). The container
//! format is `pcap-parser`'s; this file only walks its blocks.

use pcap_parser::pcap::{
    parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified, parse_pcap_header,
    LegacyPcapBlock,
};
use pcap_parser::pcapng::{parse_block_be, parse_block_le, parse_sectionheaderblock, Block};

use crate::InspectError;

/// One captured frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame<'a> {
    /// The link type of its interface (tcpdump.org's LINKTYPE_ numbers).
    pub linktype: i32,
    /// Seconds since the Unix epoch, when the file says.
    pub timestamp: Option<f64>,
    /// The captured bytes, from the link-layer header on.
    pub data: &'a [u8],
}

/// The link type given to a pcapng packet of an interface no Interface
/// Description Block declared: nothing in it can be read, and decoding
/// says so.
pub const UNDECLARED_INTERFACE: i32 = -1;

/// Why reading stopped before the end of the file: the file is cut short
/// or a record is corrupt. Frames before it are still good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the record that could not be read.
    pub offset: usize,
    /// What was wrong with it.
    pub reason: String,
}

/// The frames of a capture file, in file order.
#[derive(Debug)]
pub struct Frames<'a> {
    input: &'a [u8],
    rest: &'a [u8],
    format: Format,
    done: bool,
}

#[derive(Debug)]
enum Format {
    Legacy {
        linktype: i32,
        big_endian: bool,
        modified: bool,
        /// Timestamp fraction units per second.
        units: f64,
    },
    Ng {
        big_endian: bool,
        /// Per interface of the current section: link type, units per
        /// second and offset in seconds.
        interfaces: Vec<(i32, u64, i64)>,
    },
}

const PCAPNG_SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

impl<'a> Frames<'a> {
    /// Opens the bytes of a capture file. Fails when they are not pcap or
    /// pcapng, or the file header itself is cut short.
    pub fn open(input: &'a [u8]) -> Result<Self, InspectError> {
        let (rest, format) = if input.starts_with(&PCAPNG_SHB) {
            // The section header is parsed as the first block below.
            let format = Format::Ng {
                big_endian: false,
                interfaces: Vec::new(),
            };
            if parse_sectionheaderblock(input).is_err() {
                return Err(not_capture("pcapng section header is cut short or corrupt"));
            }
            (input, format)
        } else {
            let (rest, header) = parse_pcap_header(input).map_err(|e| match e {
                pcap_parser::nom::Err::Incomplete(_) => {
                    not_capture("pcap file header is cut short")
                }
                _ => not_capture("not a pcap or pcapng file (unknown magic number)"),
            })?;
            let format = Format::Legacy {
                linktype: header.network.0,
                big_endian: header.is_bigendian(),
                modified: header.is_modified_format(),
                units: if header.is_nanosecond_precision() {
                    1e9
                } else {
                    1e6
                },
            };
            (rest, format)
        };
        Ok(Self {
            input,
            rest,
            format,
            done: false,
        })
    }

    /// Whether the file is pcapng (else legacy pcap).
    pub fn is_pcapng(&self) -> bool {
        matches!(self.format, Format::Ng { .. })
    }

    fn offset(&self) -> usize {
        self.input.len() - self.rest.len()
    }

    fn damaged(&mut self, incomplete: bool, what: &str) -> Option<Result<Frame<'a>, Damage>> {
        self.done = true;
        let reason = if incomplete {
            format!("file cut short in the middle of a {what}")
        } else {
            format!("corrupt {what}")
        };
        Some(Err(Damage {
            offset: self.offset(),
            reason,
        }))
    }

    fn next_legacy(&mut self) -> Option<Result<Frame<'a>, Damage>> {
        let Format::Legacy {
            linktype,
            big_endian,
            modified,
            units,
        } = self.format
        else {
            unreachable!("called for legacy files only")
        };
        if self.rest.is_empty() {
            return None;
        }
        let parsed = match (modified, big_endian) {
            (true, _) => parse_pcap_frame_modified(self.rest),
            (false, true) => parse_pcap_frame_be(self.rest),
            (false, false) => parse_pcap_frame(self.rest),
        };
        match parsed {
            Ok((
                rest,
                LegacyPcapBlock {
                    ts_sec,
                    ts_usec,
                    data,
                    ..
                },
            )) => {
                self.rest = rest;
                Some(Ok(Frame {
                    linktype,
                    timestamp: Some(f64::from(ts_sec) + f64::from(ts_usec) / units),
                    data,
                }))
            }
            Err(e) => {
                let incomplete = matches!(e, pcap_parser::nom::Err::Incomplete(_));
                self.damaged(incomplete, "packet record")
            }
        }
    }

    fn next_ng(&mut self) -> Option<Result<Frame<'a>, Damage>> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let Format::Ng {
                big_endian,
                interfaces,
            } = &mut self.format
            else {
                unreachable!("called for pcapng files only")
            };
            // A section header announces its own byte order.
            let parsed = if self.rest.starts_with(&PCAPNG_SHB) {
                parse_sectionheaderblock(self.rest).map(|(r, b)| (r, Block::SectionHeader(b)))
            } else if *big_endian {
                parse_block_be(self.rest)
            } else {
                parse_block_le(self.rest)
            };
            let (rest, block) = match parsed {
                Ok(ok) => ok,
                Err(e) => {
                    let incomplete = matches!(e, pcap_parser::nom::Err::Incomplete(_));
                    return self.damaged(incomplete, "pcapng block");
                }
            };
            self.rest = rest;
            let (if_id, ts, data) = match block {
                Block::SectionHeader(shb) => {
                    *big_endian = shb.big_endian();
                    interfaces.clear();
                    continue;
                }
                Block::InterfaceDescription(idb) => {
                    // An invalid resolution falls back to the default, µs.
                    let units = idb.ts_resolution().unwrap_or(1_000_000);
                    interfaces.push((idb.linktype.0, units, idb.ts_offset()));
                    continue;
                }
                Block::EnhancedPacket(epb) => {
                    // The block's data is padded to 32 bits; `caplen` says
                    // how much of it is the packet.
                    let len = (epb.caplen as usize).min(epb.data.len());
                    let (if_id, data) = (epb.if_id as usize, &epb.data[..len]);
                    let ts = interfaces
                        .get(if_id)
                        .map(|&(_, units, offset)| epb.decode_ts_f64(0, units) + offset as f64);
                    (if_id, ts, data)
                }
                Block::SimplePacket(spb) => {
                    let len = (spb.origlen as usize).min(spb.data.len());
                    (0, None, &spb.data[..len])
                }
                _ => continue,
            };
            let linktype = interfaces
                .get(if_id)
                .map_or(UNDECLARED_INTERFACE, |&(linktype, _, _)| linktype);
            return Some(Ok(Frame {
                linktype,
                timestamp: ts,
                data,
            }));
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, Damage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.format {
            Format::Legacy { .. } => self.next_legacy(),
            Format::Ng { .. } => self.next_ng(),
        }
    }
}

fn not_capture(reason: &str) -> InspectError {
    InspectError::Malformed {
        protocol: "capture file",
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A legacy pcap of one Ethernet frame, in either byte order.
    fn legacy(big_endian: bool, nanos: bool, frame: &[u8]) -> Vec<u8> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let u32b = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u16b = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut out = Vec::new();
        out.extend(u32b(magic));
        out.extend(u16b(2));
        out.extend(u16b(4));
        out.extend(u32b(0));
        out.extend(u32b(0));
        out.extend(u32b(65535));
        out.extend(u32b(1));
        out.extend(u32b(1_700_000_000));
        out.extend(u32b(if nanos { 250_000_000 } else { 250_000 }));
        out.extend(u32b(frame.len() as u32));
        out.extend(u32b(frame.len() as u32));
        out.extend(frame);
        out
    }

    #[test]
    fn legacy_files_of_either_order_and_precision_read_the_same() {
        for (be, ns) in [(false, false), (true, false), (false, true), (true, true)] {
            let file = legacy(be, ns, b"frame bytes");
            let frames: Vec<_> = Frames::open(&file).unwrap().collect();
            assert_eq!(frames.len(), 1, "be={be} ns={ns}");
            let f = frames[0].clone().unwrap();
            assert_eq!((f.linktype, f.data), (1, &b"frame bytes"[..]));
            assert_eq!(f.timestamp, Some(1_700_000_000.25));
        }
    }

    #[test]
    fn cut_short_record_is_damage_after_the_good_frames() {
        let mut file = legacy(false, false, b"first");
        file.extend(&legacy(false, false, b"second-frame")[24..]);
        file.truncate(file.len() - 3);
        let frames: Vec<_> = Frames::open(&file).unwrap().collect();
        assert_eq!(frames.len(), 2);
        assert!(frames[0].is_ok());
        let damage = frames[1].clone().unwrap_err();
        assert_eq!(damage.offset, 24 + 16 + 5);
        assert!(damage.reason.contains("cut short"), "{damage:?}");
    }

    fn ng_block(kind: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len()) as u32;
        [
            &kind.to_le_bytes()[..],
            &len.to_le_bytes(),
            body,
            &len.to_le_bytes(),
        ]
        .concat()
    }

    #[test]
    fn pcapng_packets_take_their_interface_link_type_and_resolution() {
        let shb = ng_block(
            0x0a0d_0d0a,
            &[
                0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        );
        // Link type 101 (raw IP), snaplen 0, option if_tsresol = 3 (ms).
        let idb = ng_block(
            1,
            &[101, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0],
        );
        let epb = |if_id: u32| {
            let ts: u64 = 1_700_000_000_500;
            let mut body = if_id.to_le_bytes().to_vec();
            body.extend(((ts >> 32) as u32).to_le_bytes());
            body.extend((ts as u32).to_le_bytes());
            body.extend(3u32.to_le_bytes());
            body.extend(3u32.to_le_bytes());
            body.extend(b"abc\0");
            ng_block(6, &body)
        };
        let file = [shb, idb, epb(0), epb(1)].concat();
        let frames: Vec<_> = Frames::open(&file).unwrap().map(Result::unwrap).collect();
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].linktype, frames[0].data), (101, &b"abc"[..]));
        assert_eq!(frames[0].timestamp, Some(1_700_000_000.5));
        assert_eq!(frames[1].linktype, UNDECLARED_INTERFACE);
    }

    #[test]
    fn garbage_and_short_headers_are_not_captures() {
        for bad in [
            &b""[..],
            b"\xd4\xc3\xb2",
            b"GIF89a....................",
            &[0u8; 64],
        ] {
            assert!(Frames::open(bad).is_err(), "{bad:?}");
        }
        assert!(Frames::open(&PCAPNG_SHB).is_err());
    }
}
