//! Extraction cost per message: a Slack `chat.postMessage` JSON request
//! (recorded from slack_sdk), a Discord zlib-stream gateway MESSAGE_CREATE
//! on a long-lived inflater, and an XMPP `<message>` stanza on an open stream.
//!
//! `cargo bench --bench extract -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flate2::{Compress, Compression, FlushCompress};
use gatehouse_inspectors::extract::{Direction, Extractor, XmppExtractor};

const SLACK: &[u8] =
    include_bytes!("../inspectors/tests/fixtures/extract/slack_sdk_chat_postMessage_json.http");

fn slack(c: &mut Criterion) {
    let split = SLACK.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = &SLACK[split..];
    let headers = [("Content-Type", "application/json;charset=utf-8")];
    let mut g = c.benchmark_group("extract");
    g.throughput(Throughput::Elements(1));
    g.bench_function("slack chat.postMessage json (306 B)", |b| {
        let mut x = Extractor::new(Some("slack"), "slack.com");
        b.iter(|| {
            let out = x.on_http_request("POST", "/api/chat.postMessage", &headers, black_box(body));
            assert_eq!(out.messages.len(), 1);
            out
        })
    });
    g.finish();
}

fn discord(c: &mut Criterion) {
    // One compressor for a whole connection, like the real gateway.
    const N: usize = 1000;
    let mut z = Compress::new(Compression::default(), true);
    let frames: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let json = format!(
                r#"{{"op":0,"s":{i},"t":"MESSAGE_CREATE","d":{{"id":"12000000000000{i:05}","channel_id":"1100000000000000001","guild_id":"1000000000000000001","author":{{"id":"80351110224678912","username":"nelly","avatar":null}},"content":"message number {i}: the quarterly numbers are in the shared drive","embeds":[],"attachments":[],"mentions":[],"type":0,"tts":false,"timestamp":"2026-11-22T12:00:00.000000+00:00"}}}}"#
            );
            let mut out = Vec::with_capacity(json.len() + 64);
            z.compress_vec(json.as_bytes(), &mut out, FlushCompress::Sync).unwrap();
            out
        })
        .collect();
    let mut g = c.benchmark_group("extract");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("discord zlib-stream MESSAGE_CREATE x1000", |b| {
        b.iter(|| {
            let mut x = Extractor::new(Some("discord"), "gateway.discord.gg");
            let mut n = 0;
            for f in &frames {
                n += x
                    .on_ws_message(Direction::Inbound, false, black_box(f))
                    .messages
                    .len();
            }
            assert_eq!(n, N);
        })
    });
    g.finish();
}

fn xmpp(c: &mut Criterion) {
    let stanza = b"<message xml:lang='en' to='bob@localhost' type='chat' id='a1b2c3' from='alice@localhost/laptop'>\
<body>meet at 5, bring the &lt;contract&gt; &amp; notes</body><active xmlns='http://jabber.org/protocol/chatstates'/>\
<markable xmlns='urn:xmpp:chat-markers:0'/><origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>";
    let mut x = XmppExtractor::new();
    x.feed(
        Direction::Inbound,
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
    );
    let mut g = c.benchmark_group("extract");
    g.throughput(Throughput::Elements(1));
    g.bench_function("xmpp message stanza", |b| {
        b.iter(|| {
            let out = x.feed(Direction::Inbound, black_box(stanza));
            assert_eq!(out.messages.len(), 1);
            out
        })
    });
    g.finish();
}

criterion_group!(benches, slack, discord, xmpp);
criterion_main!(benches);
