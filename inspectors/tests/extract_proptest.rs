//! Arbitrary input never panics any extractor, and streaming extractors do
//! not depend on where chunks are cut.

use gatehouse_inspectors::extract::{
    decode_content_encoding, parse_multipart, Body, Direction, Extractor, MqttStream,
    XmppExtractor, ZlibStream,
};
use proptest::prelude::*;

const APPS: &[Option<&str>] = &[
    None,
    Some("slack"),
    Some("teams"),
    Some("discord"),
    Some("matrix"),
    Some("mattermost"),
    Some("rocketchat"),
    Some("zulip"),
    Some("google-chat"),
    Some("messenger"),
    Some("instagram"),
    Some("webex"),
    Some("linkedin"),
    Some("x"),
    Some("signal"),
    Some("whatsapp"),
    Some("xmpp"),
];

const PATHS: &[&str] = &[
    "/api/chat.postMessage",
    "/v1/users/ME/conversations/x/messages",
    "/api/v9/channels/1/messages",
    "/_matrix/client/v3/rooms/!r/send/m.room.message/1",
    "/_matrix/client/v3/rooms/!r/send/m.room.encrypted/1",
    "/api/v4/posts",
    "/api/v1/chat.sendMessage",
    "/api/v1/messages",
    "/v1/spaces/s/messages",
    "/api/v1/direct_v2/threads/broadcast/text/",
    "/v1/messages",
    "/conversation/api/v1/activities",
    "/voyager/api/messaging/conversations",
    "/i/api/1.1/dm/new2.json",
    "/v1/messages/abc",
];

const CTYPES: &[&str] = &[
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=b",
    "",
];

/// JSON-ish bytes reach deeper code than uniform random bytes.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        "[\\{\\}\\[\\]\":,a-z0-9 \\\\]{0,300}".prop_map(String::into_bytes),
        ("[a-z]{1,8}", "[ -~]{0,40}").prop_map(|(k, v)| format!("{{\"{k}\":\"{v}\",\"text\":{{\"text\":\"{v}\"}},\"message\":{{\"rid\":\"r\",\"msg\":\"{v}\",\"t\":\"{k}\"}}}}").into_bytes()),
    ]
}

proptest! {
    #[test]
    fn http_requests_never_panic(
        app in proptest::sample::select(APPS),
        path in proptest::sample::select(PATHS),
        ct in proptest::sample::select(CTYPES),
        enc in proptest::sample::select(&["", "gzip", "deflate", "br", "zstd"][..]),
        method in proptest::sample::select(&["POST", "PUT", "PATCH", "get"][..]),
        body in jsonish(),
    ) {
        let headers = [("Content-Type", ct), ("Content-Encoding", enc)];
        let _ = Extractor::new(app, "example.com").on_http_request(method, path, &headers, &body);
    }

    #[test]
    fn websocket_messages_never_panic(
        app in proptest::sample::select(APPS),
        frames in proptest::collection::vec((any::<bool>(), any::<bool>(), jsonish()), 0..6),
    ) {
        let mut x = Extractor::new(app, "example.com");
        for (outbound, text, payload) in frames {
            let dir = if outbound { Direction::Outbound } else { Direction::Inbound };
            let _ = x.on_ws_message(dir, text, &payload);
        }
    }

    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = parse_multipart(&data, "b");
        let _ = Body::parse(None, &data);
        let _ = Body::parse(Some("multipart/form-data; boundary=b"), &data);
        for enc in ["gzip", "deflate", "br", "zstd"] {
            let _ = decode_content_encoding(enc, &data, 1 << 16);
        }
        let _ = MqttStream::default().push(&data);
        let _ = ZlibStream::new(1 << 16).push(&data);
        let mut with_suffix = data.clone();
        with_suffix.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let _ = ZlibStream::new(1 << 16).push(&with_suffix);
    }

    #[test]
    fn xmpp_never_panics_and_chunking_does_not_matter(
        body in "[ -~&&[^<&]]{0,40}",
        junk in proptest::collection::vec(any::<u8>(), 0..200),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let stream = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>\
             <message to='a@b' from='c@d/e'><body>{body} &amp; &#x263A;</body></message><presence/>"
        );
        let bytes = stream.as_bytes();
        let whole = XmppExtractor::new().feed(Direction::Inbound, bytes);
        prop_assert_eq!(whole.messages.len(), 1);
        let want = format!("{body} & \u{263A}");
        prop_assert_eq!(whole.messages[0].text("body"), Some(want.as_str()));
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut x = XmppExtractor::new();
        let mut got = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            got.extend(x.feed(Direction::Inbound, &bytes[last..p]).messages);
            last = p;
        }
        prop_assert_eq!(&got, &whole.messages);
        // Garbage afterwards must not panic either.
        let _ = x.feed(Direction::Inbound, &junk);
        let _ = XmppExtractor::new().feed(Direction::Outbound, &junk);
    }
}
