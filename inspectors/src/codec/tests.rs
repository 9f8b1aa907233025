use super::*;
use flate2::{Compress, Compression, FlushCompress};
use proptest::prelude::*;

const TEXT: &[u8] = b"{\"text\":\"the meeting moved to 3pm, card 4111 1111 1111 1111, thanks\"}";

fn caps() -> Caps {
    Caps {
        max_output: 16 << 20,
        max_ratio: 100,
    }
}

/// `data` with `chain` applied in order (zlib-wrapped deflate).
fn enc(chain: &[Coding], data: &[u8]) -> Vec<u8> {
    chain
        .iter()
        .fold(data.to_vec(), |d, &c| encode(c, false, &d).unwrap())
}

fn stream(chain: &[Coding], chunks: &[&[u8]], caps: Caps) -> (Vec<u8>, Option<CodecError>) {
    let mut out = Vec::new();
    let mut d = StreamDecoder::new(chain, caps, &mut out).unwrap();
    let mut err = None;
    for c in chunks {
        if let Err(e) = d.push(c) {
            err.get_or_insert(e);
        }
    }
    if let Err(e) = d.finish() {
        err.get_or_insert(e);
    }
    drop(d);
    (out, err)
}

const CODINGS: [Coding; 4] = [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd];

#[test]
fn chains_parse_in_applied_order_and_unknown_codings_fail() {
    use Coding::*;
    assert_eq!(parse_chain("zstd, gzip").unwrap(), vec![Zstd, Gzip]);
    assert_eq!(
        parse_chain("X-GZIP,identity, ,Deflate,br").unwrap(),
        vec![Gzip, Deflate, Brotli]
    );
    assert_eq!(parse_chain("").unwrap(), vec![]);
    assert_eq!(
        parse_chain("gzip, compress"),
        Err(CodecError::Unsupported("compress".into()))
    );
    let d = decode_header("gzip, compress", b"x", caps());
    assert!(d.data.is_empty());
    assert_eq!(d.error.unwrap().to_string(), "compress: unsupported coding");
}

#[test]
fn every_coding_and_raw_deflate_round_trip() {
    for c in CODINGS {
        let data = enc(&[c], TEXT);
        let d = decode(&[c], &data, caps());
        assert_eq!((&*d.data, d.error), (TEXT, None), "{c}");
    }
    let raw = encode(Coding::Deflate, true, TEXT).unwrap();
    assert!(!is_zlib(&raw));
    let d = decode_header("deflate", &raw, caps());
    assert_eq!((&*d.data, d.error), (TEXT, None));
    let d = decode_header("identity", TEXT, caps());
    assert!(matches!(d.data, std::borrow::Cow::Borrowed(_)));
}

#[test]
fn chains_are_undone_last_first() {
    use Coding::*;
    for chain in [&[Zstd, Gzip][..], &[Gzip, Brotli], &[Deflate, Zstd, Gzip]] {
        let data = enc(chain, TEXT);
        let d = decode(chain, &data, caps());
        assert_eq!((&*d.data, d.error), (TEXT, None), "{chain:?}");
    }
    let data = enc(&[Zstd, Gzip], TEXT);
    let d = decode_header("zstd, gzip", &data, caps());
    assert_eq!(&*d.data, TEXT);
}

#[test]
fn ratio_and_size_caps_keep_a_prefix() {
    let bomb = vec![b'a'; 8 << 20];
    for c in CODINGS {
        let data = enc(&[c], &bomb);
        let d = decode(&[c], &data, caps());
        let allowed = caps().allowed(data.len() as u64) as usize;
        assert!(
            d.error.as_ref().is_some_and(CodecError::is_cap),
            "{c}: {:?}",
            d.error
        );
        assert_eq!(d.data.len(), allowed, "{c}");
        let d = decode(&[c], &data, Caps::size(1000));
        assert_eq!(d.data.len(), 1000, "{c}");
        assert!(d.error.unwrap().to_string().contains("over cap"));
    }
    // A chain caps each layer against its own input.
    let chain = [Coding::Zstd, Coding::Gzip];
    let data = enc(&chain, &bomb);
    let d = decode(&chain, &data, caps());
    assert!(d.error.is_some_and(|e| e.is_cap()));
    assert!(d.data.len() <= 16 << 20);
}

#[test]
fn truncated_and_corrupt_input_is_an_error_with_the_prefix_kept() {
    let long: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{i} ").into_bytes())
        .collect();
    for c in CODINGS {
        let data = enc(&[c], &long);
        let d = decode(&[c], b"", caps());
        assert_eq!((&*d.data, d.error), (&b""[..], None), "{c}: empty body");
        for cut in [1, 2, data.len() / 2, data.len() - 1] {
            let d = decode(&[c], &data[..cut], caps());
            assert!(
                d.error.is_some() && !d.error.as_ref().unwrap().is_cap(),
                "{c} cut at {cut}: {:?}",
                d.error
            );
            assert!(long.starts_with(&d.data), "{c} cut at {cut}");
        }
        let d = decode(
            &[c],
            b"this is not compressed at all, not in any coding",
            caps(),
        );
        assert!(d.error.is_some(), "{c}");
    }
    let raw = encode(Coding::Deflate, true, &long).unwrap();
    let d = decode(&[Coding::Deflate], &raw[..raw.len() - 3], caps());
    assert!(matches!(d.error, Some(CodecError::Truncated { .. })));
}

#[test]
fn streaming_on_every_split_point_equals_one_shot() {
    use Coding::*;
    let chains: [&[Coding]; 7] = [
        &[],
        &[Gzip],
        &[Deflate],
        &[Brotli],
        &[Zstd],
        &[Zstd, Gzip],
        &[Deflate, Brotli],
    ];
    for chain in chains {
        let data = enc(chain, TEXT);
        let raw = encode(Deflate, true, TEXT).unwrap();
        let inputs: Vec<(&[Coding], &[u8])> = if chain == [Deflate] {
            vec![
                (chain, &data[..]),
                (chain, &raw[..]),
                (chain, &data[..data.len() - 2]),
            ]
        } else {
            vec![(chain, &data[..]), (chain, &data[..data.len() / 2])]
        };
        for (chain, input) in inputs {
            let one = decode(chain, input, caps());
            for at in 0..=input.len() {
                let (a, b) = input.split_at(at);
                let (out, err) = stream(chain, &[a, b], caps());
                assert_eq!(out, &*one.data, "{chain:?} split at {at}");
                assert_eq!(err, one.error, "{chain:?} split at {at}");
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(
                stream(chain, &bytes, caps()).0,
                &*one.data,
                "{chain:?} bytewise"
            );
        }
    }
}

#[test]
fn a_stream_stops_at_the_first_problem_and_reports_it_once() {
    let mut out = Vec::new();
    let mut d = StreamDecoder::new(&[Coding::Brotli], caps(), &mut out).unwrap();
    assert!(d.push(b"not brotli, not at all").is_err());
    assert!(d.stopped().is_some());
    assert_eq!(d.push(b"more"), Ok(()));
    assert_eq!(d.finish(), Ok(()));
    assert!(d.decodes());
}

fn pmd(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

#[test]
fn permessage_deflate_with_and_without_context_takeover() {
    let texts = ["hello hello hello", "hello again, hello", "third"];
    let mut c = Compress::new(Compression::default(), false);
    let mut inf = MessageInflater::permessage_deflate(false, 1 << 20);
    for t in texts {
        assert_eq!(
            inf.inflate(&pmd(&mut c, t.as_bytes())).unwrap(),
            t.as_bytes()
        );
    }
    let mut inf = MessageInflater::permessage_deflate(true, 1 << 20);
    for t in texts {
        let mut c = Compress::new(Compression::default(), false);
        assert_eq!(
            inf.inflate(&pmd(&mut c, t.as_bytes())).unwrap(),
            t.as_bytes()
        );
    }
}

#[test]
fn message_inflater_caps_and_loses_context_after_an_error() {
    let mut c = Compress::new(Compression::default(), false);
    let bomb = pmd(&mut c, &vec![b'a'; 100_000]);
    let mut inf = MessageInflater::permessage_deflate(false, 10_000);
    assert!(inf.inflate(&bomb).unwrap_err().is_cap());
    assert_eq!(
        inf.inflate(b"\x02\x00"),
        Err(CodecError::ContextLost {
            coding: Coding::Deflate
        })
    );
    // Without takeover each message starts afresh.
    let mut inf = MessageInflater::permessage_deflate(true, 10_000);
    assert!(inf.inflate(&[0xff; 8]).is_err());
    let mut c = Compress::new(Compression::default(), false);
    assert_eq!(inf.inflate(&pmd(&mut c, b"fine")).unwrap(), b"fine");
}

#[test]
fn streamed_messages_inflate_like_whole_ones_and_share_the_context() {
    let big: Vec<u8> = (0..300_000u32)
        .flat_map(|i| format!("w{} ", i % 977).into_bytes())
        .collect();
    let mut c = Compress::new(Compression::default(), false);
    let first = pmd(&mut c, &big);
    let second = pmd(&mut c, b"then a small one");
    let mut inf = MessageInflater::permessage_deflate(false, 16 << 20);
    for piece_len in [1, 7_000] {
        if piece_len == 7_000 {
            // A fresh context for the second pass.
            c = Compress::new(Compression::default(), false);
            inf = MessageInflater::permessage_deflate(false, 16 << 20);
            let again = pmd(&mut c, &big);
            assert_eq!(again, first);
        }
        inf.begin().unwrap();
        let mut out = Vec::new();
        for p in first.chunks(piece_len) {
            out.extend(inf.push(p).unwrap());
        }
        out.extend(inf.end().unwrap());
        assert_eq!(out, big, "pieces of {piece_len}");
        // The next message, held whole, uses the same context.
        let second = if piece_len == 7_000 {
            pmd(&mut c, b"then a small one")
        } else {
            second.clone()
        };
        assert_eq!(inf.inflate(&second).unwrap(), b"then a small one");
    }
    // The cap counts the whole streamed message, and breaks the context.
    let mut c = Compress::new(Compression::default(), false);
    let bomb = pmd(&mut c, &vec![b'a'; 100_000]);
    let mut inf = MessageInflater::permessage_deflate(false, 10_000);
    inf.begin().unwrap();
    let err = bomb
        .chunks(16)
        .map(|p| inf.push(p))
        .find_map(Result::err)
        .expect("over the cap");
    assert!(err.is_cap(), "{err:?}");
    assert!(inf.begin().is_err());
}

fn sync_compress(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    out
}

#[test]
fn zlib_stream_shares_context_across_payloads_and_split_frames() {
    let mut c = Compress::new(Compression::default(), true);
    let a = sync_compress(&mut c, br#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
    let b = sync_compress(
        &mut c,
        br#"{"op":0,"t":"MESSAGE_CREATE","d":{"content":"x"}}"#,
    );
    let mut z = ZlibStream::new(1 << 20);
    assert!(z.push(&a).unwrap().unwrap().starts_with(b"{\"op\":10"));
    let (b1, b2) = b.split_at(3);
    assert_eq!(z.push(b1).unwrap(), None);
    let out = z.push(b2).unwrap().unwrap();
    assert!(out.ends_with(b"\"x\"}}"));
}

#[test]
fn zlib_stream_cap_is_enforced() {
    let mut c = Compress::new(Compression::default(), true);
    let bomb = sync_compress(&mut c, &vec![b'a'; 100_000]);
    let mut z = ZlibStream::new(10_000);
    assert!(z.push(&bomb).is_err());
    assert!(z.push(&bomb).is_err());
}

fn coding() -> impl Strategy<Value = Coding> {
    prop::sample::select(vec![
        Coding::Gzip,
        Coding::Deflate,
        Coding::Brotli,
        Coding::Zstd,
    ])
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_streaming_agrees(
        data in prop::collection::vec(any::<u8>(), 0..600),
        chain in prop::collection::vec(coding(), 0..3),
        at in any::<prop::sample::Index>(),
        takeover in any::<bool>(),
    ) {
        let small = Caps { max_output: 1 << 16, max_ratio: 10 };
        let one = decode(&chain, &data, small);
        let (a, b) = data.split_at(at.index(data.len() + 1));
        let (out, err) = stream(&chain, &[a, b], small);
        prop_assert_eq!(out, one.data.to_vec());
        prop_assert_eq!(err.is_some(), one.error.is_some());
        let mut inf = MessageInflater::permessage_deflate(takeover, 1 << 16);
        let _ = inf.inflate(&data);
        let _ = inf.inflate(&data);
        let _ = ZlibStream::new(1 << 16).push(&data);
    }

    #[test]
    fn valid_bodies_cut_anywhere_decode_to_a_prefix(
        text in prop::collection::vec(any::<u8>(), 0..2000),
        chain in prop::collection::vec(coding(), 1..3),
        cut in any::<prop::sample::Index>(),
    ) {
        let data = enc(&chain, &text);
        let whole = decode(&chain, &data, caps());
        prop_assert_eq!(&*whole.data, &text[..]);
        prop_assert_eq!(whole.error, None);
        // Cut off at least one byte, but keep one (an empty body is no error).
        let cut = 1 + cut.index(data.len() - 1);
        let part = decode(&chain, &data[..cut], caps());
        prop_assert!(text.starts_with(&part.data));
        prop_assert!(part.error.is_some());
    }
}
