//! Property tests: the engine never panics, spans stay inside the input on
//! character boundaries, the normalisation map round-trips, streaming
//! agrees with whole-message scanning.

use gatehouse_inspectors::dlp::normalize::{normalize, normalize_str};
use gatehouse_inspectors::dlp::{
    load_dir, BodyInput, DecodeLimits, Direction, RuleSet, StreamScanner,
};
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};

fn shipped() -> Arc<RuleSet> {
    static SET: OnceLock<Arc<RuleSet>> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../dlp-rules");
        Arc::new(load_dir(dir).expect("shipped rules load"))
    })
    .clone()
}

/// Text that looks like chat with sensitive-looking pieces and Unicode
/// tricks mixed in, so the interesting paths run often.
fn chatty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("4526 0181 5908 3012".to_string()),
        Just("536-22-1234".to_string()),
        Just("routing 021000021".to_string()),
        Just("ghp_MQSkS3u9I5KKgTPnO1KrsheE2OEfwZeA5jbs".to_string()),
        Just("c0nf1dential".to_string()),
        Just("jane@acme.io".to_string()),
        Just("DE89 3704 0044 0532 0130 00".to_string()),
        Just("password: pWnOna8sEXflmWwdRpdo".to_string()),
        "[a-zA-Z0-9 .,@:=\\-]{0,20}",
        "[\u{200B}\u{00A0}\u{FF21}-\u{FF3A}\u{0301}éß\u{FB01}\n\t ]{0,6}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scan_never_panics_and_spans_are_in_bounds(text in chatty()) {
        let set = shipped();
        let r = set.scan_text(&text);
        for f in &r.findings {
            prop_assert!(f.start <= f.end && f.end <= text.len());
            prop_assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
            prop_assert!(f.start < f.end);
        }
        let _ = r.redact("text", &text);
        let ex = set.explain(&text);
        for x in &ex.rejected {
            prop_assert!(x.end <= text.len() && text.is_char_boundary(x.start) && text.is_char_boundary(x.end));
        }
    }

    #[test]
    fn scan_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        ct in prop_oneof![
            Just("text/plain"), Just("application/json"), Just("text/html"),
            Just("application/x-www-form-urlencoded"), Just("multipart/form-data; boundary=x"),
        ],
        ce in prop_oneof![Just(None), Just(Some("gzip")), Just(Some("br")), Just(Some("zstd")), Just(Some("deflate"))],
    ) {
        let set = shipped();
        let body = BodyInput { content_type: Some(ct), content_encoding: ce, body: &bytes };
        let r = set.scan_body(&body, None, Direction::Outbound, "body", &DecodeLimits::default());
        let text = String::from_utf8_lossy(&bytes);
        let _ = set.scan_text(&text);
        for f in &r.findings {
            prop_assert!(f.start <= f.end);
        }
    }

    #[test]
    fn normalisation_map_round_trips(text in chatty()) {
        let n = normalize(&text);
        let view: &str = &n.text;
        let mut prev = (0, 0);
        for (i, c) in view.char_indices() {
            let (s, e) = (n.map.start(i), n.map.end(i + c.len_utf8()));
            prop_assert!(s <= e && e <= text.len());
            prop_assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
            prop_assert!(s >= prev.0 && e >= prev.1, "monotonic");
            prev = (s, e);
            // The original piece normalises to (something containing) this char.
            let back = normalize_str(&text[s..e]);
            let want: String = c.to_lowercase().collect();
            prop_assert!(back.contains(&want), "{:?} -> {:?} !~ {:?}", &text[s..e], back, c);
        }
        prop_assert!(n.map.end(view.len()) <= text.len());
    }

    #[test]
    fn streaming_agrees_with_whole_scan(text in chatty(), chunk in 1usize..300) {
        let set = shipped();
        let whole: Vec<_> = set.scan_text(&text).findings.into_iter().map(|f| (f.rule, f.start, f.end)).collect();
        let mut sc = StreamScanner::new(set, None, Direction::Outbound, "text");
        for c in text.as_bytes().chunks(chunk) {
            sc.push(c);
        }
        let got: Vec<_> = sc.finish().findings.into_iter().map(|f| (f.rule, f.start, f.end)).collect();
        prop_assert_eq!(got, whole);
    }
}
