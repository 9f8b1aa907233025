//! Redacting bodies as sent: JSON with escapes, forms with percent-escapes,
//! compressed bodies. Table cases plus properties: the output is valid JSON
//! (a valid form) whenever the input was, keeps its shape, and no decoded
//! string still holds the secret.

use std::io::{Read, Write};

use gatehouse_inspectors::dlp::{
    redact_body, redact_texts, BodyInput, DecodeLimits, Direction, RuleSet,
};
use proptest::prelude::*;

const RULES: &str = r#"
[[rule]]
id = "api-key"
name = "API key"
severity = "critical"
action = "redact"
pattern = 'sk_live_[a-z0-9]{16}'
"#;

const SECRET: &str = "sk_live_4eC39HqLyjWDarjt";

fn set() -> RuleSet {
    RuleSet::from_sources(&[("r.toml", RULES)]).unwrap()
}

fn json(body: &[u8]) -> BodyInput<'_> {
    BodyInput {
        content_type: Some("application/json; charset=utf-8"),
        content_encoding: None,
        body,
    }
}

/// Scans and redacts `input`; the rewritten body.
fn redacted(input: &BodyInput<'_>) -> Vec<u8> {
    let limits = DecodeLimits::default();
    let result = set().scan_body(input, None, Direction::Outbound, "body", &limits);
    assert!(
        !result.findings.is_empty(),
        "the secret must be found first"
    );
    redact_body(input, &result, &limits).expect("redactable")
}

/// Every string of a JSON value, keys included.
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings(x, out)
        }),
        _ => {}
    }
}

/// The value with every string replaced, to compare shapes.
fn shape(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::String(_) => serde_json::Value::String(String::new()),
        serde_json::Value::Array(a) => a.iter().map(shape).collect(),
        serde_json::Value::Object(o) => o.values().map(shape).collect(),
        other => other.clone(),
    }
}

fn assert_clean_json(input: &[u8], output: &[u8]) {
    let before: serde_json::Value = serde_json::from_slice(input).unwrap();
    let after: serde_json::Value = serde_json::from_slice(output).unwrap_or_else(|e| {
        panic!(
            "invalid JSON out ({e}): {}",
            String::from_utf8_lossy(output)
        )
    });
    assert_eq!(shape(&before), shape(&after));
    let mut s = Vec::new();
    strings(&after, &mut s);
    for x in &s {
        assert!(!x.contains(SECRET), "secret survived in {x:?}");
    }
    assert!(!String::from_utf8_lossy(output).contains(SECRET));
}

#[test]
fn escaped_json_secrets_are_masked_and_the_json_stays_valid() {
    for raw in [
        // \u escapes inside the secret
        r#"{"text":"key sk_live_4eC39Hq\u004cyjWDarjt ok"}"#.to_string(),
        // escaped quotes and a solidus around it, and an escaped slash inside a neighbour
        r#"{"a":"\"sk_live_4eC39HqLyjWDarjt\" at http:\/\/x","n":[1,2.5,true,null]}"#.to_string(),
        // every character escaped
        format!(
            r#"{{"t":"{}"}}"#,
            SECRET
                .chars()
                .map(|c| format!("\\u{:04X}", c as u32))
                .collect::<String>()
        ),
        // in a key, and twice, once plain
        format!(r#"{{"{SECRET}":"x","b":"{SECRET} and sk_live_4eC39HqLyjWDarj\u0074"}}"#),
        // newlines and tabs escaped next to it
        r#"{"t":"line\nsk_live_4eC39HqLyjWDarjt\tend"}"#.to_string(),
    ] {
        let out = redacted(&json(raw.as_bytes()));
        assert_clean_json(raw.as_bytes(), &out);
    }
}

#[test]
fn masked_text_keeps_the_neighbours() {
    let raw = br#"{"text":"please use sk_live_4eC39Hq\u004cyjWDarjt \u00e9t\u00e9","id":7}"#;
    let out = redacted(&json(raw));
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(text.starts_with("please use **_****_"), "{text}");
    assert!(text.ends_with(" été"), "{text}");
    assert_eq!(v["id"], 7);
}

#[test]
fn form_fields_are_masked_and_reencoded() {
    let raw = b"user=jo&note=my+key+sk_live_4eC39Hq%4Cyj%57Darjt+thanks&x=%E2%9C%93";
    let input = BodyInput {
        content_type: Some("application/x-www-form-urlencoded"),
        content_encoding: None,
        body: raw,
    };
    let out = redacted(&input);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&out)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(pairs.len(), 3);
    assert_eq!(pairs[0], ("user".into(), "jo".into()));
    assert!(pairs[1].1.starts_with("my key **_****_") && pairs[1].1.ends_with(" thanks"));
    assert!(!pairs[1].1.contains(SECRET));
    assert_eq!(pairs[2].1, "✓");
}

#[test]
fn plain_text_keeps_its_length() {
    let raw = format!("hello {SECRET} bye");
    let input = BodyInput {
        content_type: Some("text/plain"),
        content_encoding: None,
        body: raw.as_bytes(),
    };
    let out = redacted(&input);
    assert_eq!(out.len(), raw.len());
    assert!(!String::from_utf8_lossy(&out).contains(SECRET));
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn compressed_bodies_are_recompressed_in_their_coding() {
    let raw = br#"{"text":"key sk_live_4eC39Hq\u004cyjWDarjt"}"#;
    for coding in ["gzip", "deflate", "br", "zstd"] {
        let data = match coding {
            "gzip" => gzip(raw),
            "deflate" => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(raw).unwrap();
                e.finish().unwrap()
            }
            "br" => {
                let mut out = Vec::new();
                {
                    let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    e.write_all(raw).unwrap();
                }
                out
            }
            _ => zstd::stream::encode_all(&raw[..], 3).unwrap(),
        };
        let input = BodyInput {
            content_type: Some("application/json"),
            content_encoding: Some(coding),
            body: &data,
        };
        let out = redacted(&input);
        let mut plain = Vec::new();
        match coding {
            "gzip" => flate2::read::GzDecoder::new(&out[..])
                .read_to_end(&mut plain)
                .unwrap(),
            "deflate" => flate2::read::ZlibDecoder::new(&out[..])
                .read_to_end(&mut plain)
                .unwrap(),
            "br" => brotli::Decompressor::new(&out[..], 4096)
                .read_to_end(&mut plain)
                .unwrap(),
            _ => zstd::stream::read::Decoder::new(&out[..])
                .unwrap()
                .read_to_end(&mut plain)
                .unwrap(),
        };
        assert_clean_json(raw, &plain);
    }
}

#[test]
fn capped_or_undecodable_bodies_are_not_rewritten() {
    let raw = format!(r#"{{"t":"{SECRET}"}}"#);
    let data = gzip(raw.as_bytes());
    let input = BodyInput {
        content_type: Some("application/json"),
        content_encoding: Some("gzip"),
        body: &data[..data.len() - 4],
    };
    let limits = DecodeLimits::default();
    let result = set().scan_body(&input, None, Direction::Outbound, "body", &limits);
    assert_eq!(redact_body(&input, &result, &limits), None);
    // Not UTF-8: offsets would not be bytes.
    let mut bytes = format!("x {SECRET} ").into_bytes();
    bytes.push(0xff);
    let input = BodyInput {
        content_type: Some("text/plain"),
        content_encoding: None,
        body: &bytes,
    };
    let result = set().scan_body(&input, None, Direction::Outbound, "body", &limits);
    assert_eq!(redact_body(&input, &result, &limits), None);
}

#[test]
fn texts_found_elsewhere_are_masked_in_json_strings_only() {
    // The number 4556737586899855 outside a string must stay a number.
    let raw = br#"{"n":4556737586899855,"text":"card 4556\u0037375868998\u0035\u0035"}"#;
    let out = redact_texts(
        &json(raw),
        &[("4556737586899855", 4)],
        &DecodeLimits::default(),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["n"], serde_json::json!(4556737586899855u64));
    assert_eq!(v["text"], "card ************9855");
}

/// JSON string content for `s`, each character escaped one of the ways
/// JSON allows, as `how` says.
fn escape_variously(s: &str, how: &[u8]) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        let h = how.get(i % how.len().max(1)).copied().unwrap_or(0) % 4;
        match c {
            '"' => out.push_str(if h == 0 { "\\\"" } else { "\\u0022" }),
            '\\' => out.push_str("\\\\"),
            '/' if h == 1 => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if h == 2 && (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if h == 3 && (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if h >= 2 => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn json_redaction_keeps_valid_json_and_removes_the_secret(
        before in "[ a-zA-Z0-9\"\\\\/\n\té😀.,:]{0,24}",
        after in "[ a-zA-Z0-9\"\\\\/\n\té😀.,:]{0,24}",
        key in "[a-z\"/]{1,8}",
        how in prop::collection::vec(any::<u8>(), 1..16),
        twice in any::<bool>(),
        nested in any::<bool>(),
    ) {
        let text = if twice {
            format!("{before} {SECRET} {after} {SECRET}")
        } else {
            format!("{before} {SECRET} {after}")
        };
        let value = format!(
            "\"{}\"",
            escape_variously(&text, &how)
        );
        let key = escape_variously(&key, &how);
        let raw = if nested {
            format!("{{\"{key}\":[1,{{\"deep\":{value}}},null],\"z\":\"{}\"}}", escape_variously(&before, &how))
        } else {
            format!("{{\"{key}\":{value},\"n\":-1.5e3}}")
        };
        prop_assume!(serde_json::from_str::<serde_json::Value>(&raw).is_ok());
        let out = redacted(&json(raw.as_bytes()));
        assert_clean_json(raw.as_bytes(), &out);
    }

    #[test]
    fn form_redaction_keeps_names_and_removes_the_secret(
        before in "[ a-zA-Z0-9&=+%é.,:]{0,24}",
        name in "[a-z]{1,6}",
        encode_all in any::<bool>(),
    ) {
        let value = format!("{before} {SECRET} end");
        let enc: String = if encode_all {
            value.bytes().map(|b| format!("%{b:02X}")).collect()
        } else {
            form_urlencoded::byte_serialize(value.as_bytes()).collect()
        };
        let raw = format!("a=1&{name}={enc}&z=2");
        let input = BodyInput {
            content_type: Some("application/x-www-form-urlencoded"),
            content_encoding: None,
            body: raw.as_bytes(),
        };
        let out = redacted(&input);
        let pairs: Vec<(String, String)> = form_urlencoded::parse(&out)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        prop_assert_eq!(names, vec!["a", name.as_str(), "z"]);
        prop_assert!(!pairs[1].1.contains(SECRET));
        prop_assert!(pairs[1].1.ends_with(" end"));
    }
}
