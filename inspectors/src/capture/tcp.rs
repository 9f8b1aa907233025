//! The start of one direction of a TCP stream, in order: out-of-order
//! segments wait for the gap to fill, retransmitted and overlapping bytes
//! count once, and nothing past the first `limit` bytes is kept.

use std::collections::BTreeMap;

/// The first bytes of one direction of a TCP stream.
#[derive(Debug, Clone)]
pub struct StreamStart {
    /// Sequence number of byte 0, once known.
    base: Option<u32>,
    data: Vec<u8>,
    /// Segments past a gap, by offset from `base`.
    pending: BTreeMap<usize, Vec<u8>>,
    pending_bytes: usize,
    limit: usize,
}

impl StreamStart {
    /// Keeps at most `limit` bytes (and as many waiting past gaps).
    pub fn new(limit: usize) -> Self {
        Self {
            base: None,
            data: Vec::new(),
            pending: BTreeMap::new(),
            pending_bytes: 0,
            limit,
        }
    }

    /// The SYN's sequence number: the stream starts just after it. Ignored
    /// once bytes arrived (a late SYN retransmission).
    pub fn syn(&mut self, seq: u32) {
        if self.data.is_empty() && self.pending.is_empty() {
            self.base = Some(seq.wrapping_add(1));
        }
    }

    /// Adds a segment's payload; returns whether the in-order bytes grew.
    /// Without a SYN, the first segment seen starts the stream.
    pub fn push(&mut self, seq: u32, mut payload: &[u8]) -> bool {
        if payload.is_empty() {
            return false;
        }
        let base = *self.base.get_or_insert(seq);
        // Sequence arithmetic is modulo 2³²: a "negative" offset is a
        // retransmission of bytes before the start we kept.
        let signed = seq.wrapping_sub(base) as i32;
        let offset = if signed < 0 {
            let skip = signed.unsigned_abs() as usize;
            if skip >= payload.len() {
                return false;
            }
            payload = &payload[skip..];
            0
        } else {
            signed as usize
        };
        if offset >= self.limit {
            return false;
        }
        let payload = &payload[..payload.len().min(self.limit - offset)];
        let have = self.data.len();
        if offset > have {
            if self.pending_bytes + payload.len() <= self.limit {
                let slot = self.pending.entry(offset).or_default();
                if payload.len() > slot.len() {
                    self.pending_bytes += payload.len() - slot.len();
                    *slot = payload.to_vec();
                }
            }
            return false;
        }
        if offset + payload.len() <= have {
            return false;
        }
        self.data.extend_from_slice(&payload[have - offset..]);
        self.drain_pending();
        true
    }

    fn drain_pending(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            let offset = *entry.key();
            if offset > self.data.len() {
                break;
            }
            let bytes = entry.remove();
            self.pending_bytes -= bytes.len();
            let have = self.data.len();
            if offset + bytes.len() > have {
                self.data.extend_from_slice(&bytes[have - offset..]);
            }
        }
    }

    /// The in-order bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Whether the limit is reached: nothing more will be kept.
    pub fn is_full(&self) -> bool {
        self.data.len() >= self.limit
    }

    /// Frees the buffers once the start was judged.
    pub fn release(&mut self) {
        self.data = Vec::new();
        self.pending = BTreeMap::new();
        self.pending_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_after_syn() {
        let mut s = StreamStart::new(100);
        s.syn(999);
        assert!(s.push(1000, b"hello "));
        assert!(s.push(1006, b"world"));
        assert_eq!(s.bytes(), b"hello world");
    }

    #[test]
    fn out_of_order_waits_for_the_gap() {
        let mut s = StreamStart::new(100);
        s.syn(0);
        assert!(!s.push(7, b"world"));
        assert!(!s.push(12, b"!"));
        assert_eq!(s.bytes(), b"");
        assert!(s.push(1, b"hello "));
        assert_eq!(s.bytes(), b"hello world!");
    }

    #[test]
    fn retransmissions_and_overlaps_count_once() {
        let mut s = StreamStart::new(100);
        s.syn(u32::MAX - 2); // wraps around zero
        assert!(s.push(u32::MAX - 1, b"abcd"));
        assert!(!s.push(u32::MAX - 1, b"abcd"));
        assert!(s.push(u32::MAX, b"bcdef"));
        assert!(!s.push(u32::MAX - 5, b"xxxx")); // before the start
        assert_eq!(s.bytes(), b"abcdef");
    }

    #[test]
    fn limit_bounds_data_and_pending() {
        let mut s = StreamStart::new(4);
        s.syn(0);
        assert!(!s.push(3, b"xyz"));
        assert!(!s.push(50, b"far"));
        assert!(s.push(1, b"ab"));
        assert_eq!(s.bytes(), b"abxy");
        assert!(s.is_full());
        assert!(!s.push(5, b"more"));
    }

    #[test]
    fn without_syn_the_first_segment_starts_the_stream() {
        let mut s = StreamStart::new(100);
        assert!(s.push(5000, b"GET /"));
        assert!(s.push(5005, b" HTTP/1.1"));
        assert_eq!(s.bytes(), b"GET / HTTP/1.1");
    }

    proptest! {
        /// Any order and any duplication of the segments of a stream gives
        /// back the stream's start.
        #[test]
        fn any_delivery_order_reassembles(
            data in proptest::collection::vec(any::<u8>(), 1..300),
            cuts in proptest::collection::vec(1usize..300, 0..12),
            order in proptest::collection::vec(any::<u16>(), 0..40),
            isn in any::<u32>(),
        ) {
            let mut bounds: Vec<usize> = cuts.into_iter().filter(|c| *c < data.len()).collect();
            bounds.extend([0, data.len()]);
            bounds.sort_unstable();
            bounds.dedup();
            let segs: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
            let mut deliveries: Vec<usize> = (0..segs.len()).collect();
            // Extra deliveries are retransmissions.
            deliveries.extend(order.iter().map(|o| *o as usize % segs.len()));
            let n = deliveries.len();
            for (i, o) in order.iter().enumerate() {
                deliveries.swap(i % n, *o as usize % n);
            }
            let mut s = StreamStart::new(200);
            s.syn(isn);
            for d in deliveries {
                let (a, b) = segs[d];
                s.push(isn.wrapping_add(1).wrapping_add(a as u32), &data[a..b]);
            }
            prop_assert_eq!(s.bytes(), &data[..data.len().min(200)]);
        }
    }
}
