//! The journal against a model: random appends, writes, syncs, acks, clean
//! reopens and crashes (the unsynced tail cut at a random byte), checking
//! after every step that a reader from the cursor sees exactly the model's
//! unacknowledged records — synced ones never lost, nothing duplicated.

use std::fs::OpenOptions;
use std::path::Path;

use proptest::prelude::*;

use super::{ack, load_cursor, segment_path, JournalWriter, Position, Reader};

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Write,
    Sync,
    Ack(usize),
    Reopen,
    /// Crash: the unsynced part of the active segment keeps only this fraction.
    Crash(f64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..120).prop_map(Op::Append),
        2 => Just(Op::Write),
        2 => Just(Op::Sync),
        2 => (0usize..8).prop_map(Op::Ack),
        1 => Just(Op::Reopen),
        2 => (0.0f64..=1.0).prop_map(Op::Crash),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Buffered,
    Written,
    Synced,
}

struct Model {
    records: Vec<(Vec<u8>, State)>,
    acked: usize,
}

impl Model {
    fn set_all(&mut self, from: State, to: State) {
        for r in &mut self.records {
            if r.1 == from {
                r.1 = to;
            }
        }
    }
    fn visible(&self) -> Vec<Vec<u8>> {
        self.records[self.acked..]
            .iter()
            .filter(|r| r.1 != State::Buffered)
            .map(|r| r.0.clone())
            .collect()
    }
}

fn read_from_cursor(dir: &Path) -> Vec<Vec<u8>> {
    let mut r = Reader::new(dir, load_cursor(dir).unwrap());
    let mut out = Vec::new();
    r.next_batch(None, usize::MAX, &mut out).unwrap();
    assert_eq!(r.damaged_skips(), 0, "a sound journal read as damaged");
    out
}

fn run(ops: Vec<Op>, segment_bytes: u64) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (mut w, _) = JournalWriter::open(dir, segment_bytes).unwrap();
    let mut m = Model {
        records: Vec::new(),
        acked: 0,
    };
    for op in ops {
        match op {
            Op::Append(p) => {
                let before = w.position();
                w.append(&p).unwrap();
                if w.position() != before {
                    // A roll wrote and synced everything before it.
                    m.set_all(State::Buffered, State::Synced);
                    m.set_all(State::Written, State::Synced);
                }
                m.records.push((p, State::Buffered));
            }
            Op::Write => {
                w.write().unwrap();
                m.set_all(State::Buffered, State::Written);
            }
            Op::Sync => {
                w.sync().unwrap();
                m.set_all(State::Buffered, State::Synced);
                m.set_all(State::Written, State::Synced);
            }
            Op::Ack(k) => {
                let synced_unacked = m.records[m.acked..]
                    .iter()
                    .take_while(|r| r.1 == State::Synced)
                    .count();
                let k = k.min(synced_unacked);
                let mut r = Reader::new(dir, load_cursor(dir).unwrap());
                let mut got = Vec::new();
                r.next_batch(Some(w.synced()), k, &mut got).unwrap();
                assert_eq!(got.len(), k);
                assert_eq!(r.damaged_skips(), 0);
                ack(dir, r.position()).unwrap();
                m.acked += k;
            }
            Op::Reopen => {
                w.write().unwrap();
                drop(w);
                m.set_all(State::Buffered, State::Synced);
                m.set_all(State::Written, State::Synced);
                w = JournalWriter::open(dir, segment_bytes).unwrap().0;
            }
            Op::Crash(keep) => {
                let synced = w.synced();
                let written = w.position();
                drop(w); // the process buffer is lost
                assert_eq!(synced.segment, written.segment, "rolls sync");
                let cut =
                    synced.offset + ((written.offset - synced.offset) as f64 * keep).floor() as u64;
                OpenOptions::new()
                    .write(true)
                    .open(segment_path(dir, written.segment))
                    .unwrap()
                    .set_len(cut)
                    .unwrap();
                m.records.retain(|r| r.1 != State::Buffered);
                w = JournalWriter::open(dir, segment_bytes).unwrap().0;
                let got = read_from_cursor(dir);
                let synced_n = m.records[m.acked..]
                    .iter()
                    .filter(|r| r.1 == State::Synced)
                    .count();
                let expected = m.visible();
                assert!(got.len() >= synced_n, "a synced record was lost");
                assert_eq!(got[..], expected[..got.len()], "not a prefix of the model");
                m.records.truncate(m.acked + got.len());
                m.set_all(State::Written, State::Synced);
            }
        }
        assert_eq!(read_from_cursor(dir), m.visible());
    }
    // And what is acknowledged stays acknowledged across a final reopen.
    let cursor = load_cursor(dir).unwrap();
    drop(w);
    JournalWriter::open(dir, segment_bytes).unwrap();
    assert_eq!(load_cursor(dir).unwrap(), cursor);
    assert!(cursor >= Position::default());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn journal_matches_its_model(ops in proptest::collection::vec(op(), 1..80), small in any::<bool>()) {
        run(ops, if small { 256 } else { 1 << 20 });
    }
}
