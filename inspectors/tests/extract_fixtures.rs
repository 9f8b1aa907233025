//! Extraction from traffic recorded from real client libraries (see
//! fixtures/extract/README.md for how each file was made).

use gatehouse_inspectors::extract::{Direction, Extracted, Extractor, XmppExtractor};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/extract/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Replays a recorded HTTP request into a fresh extractor for `host`.
fn replay_http(name: &str, app: Option<&str>, host: &str) -> Extracted {
    let raw = fixture(name);
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(&raw).unwrap() else {
        panic!("{name}: incomplete request");
    };
    let hs: Vec<(&str, &[u8])> = req.headers.iter().map(|h| (h.name, h.value)).collect();
    Extractor::new(app, host).on_http_request(
        req.method.unwrap(),
        req.path.unwrap(),
        &hs,
        &raw[len..],
    )
}

#[test]
fn slack_sdk_chat_post_message_json() {
    let out = replay_http("slack_sdk_chat_postMessage_json.http", None, "slack.com");
    assert_eq!(out.opaque, None);
    let m = &out.messages[0];
    assert_eq!(m.app, "slack");
    assert_eq!(m.direction, Direction::Outbound);
    assert_eq!(m.conversation.as_deref(), Some("C024BE91L"));
    assert_eq!(
        m.text("text"),
        Some("Q3 revenue draft attached, do not forward")
    );
    assert_eq!(m.text("blocks[0].text.text"), Some("*Q3 revenue* is 1.2M"));
    assert_eq!(
        m.text("blocks[1].elements[0].elements[0].text"),
        Some("card 4111 1111 1111 1111")
    );
}

#[test]
fn slack_sdk_chat_update_and_form_post() {
    let out = replay_http(
        "slack_sdk_chat_update_json.http",
        Some("slack"),
        "slack.com",
    );
    assert_eq!(out.messages[0].text("text"), Some("edited: Q3 is 1.3M"));
    let out = replay_http(
        "slack_sdk_chat_postMessage_form.http",
        Some("slack"),
        "slack.com",
    );
    assert_eq!(out.messages[0].text("text"), Some("form post: hello & bye"));
    assert_eq!(out.messages[0].conversation.as_deref(), Some("C024BE91L"));
}

#[test]
fn matrix_nio_room_send_text_on_a_self_hosted_server() {
    // Unknown host: the Matrix API path alone identifies the app.
    let out = replay_http("matrix_nio_room_send_text.http", None, "chat.corp.example");
    let m = &out.messages[0];
    assert_eq!(m.app, "matrix");
    assert_eq!(m.conversation.as_deref(), Some("!abcdef:example.org"));
    assert_eq!(m.text("body"), Some("the launch code is 0000"));
    assert_eq!(m.text("formatted_body"), Some("the launch code is 0000"));
}

#[test]
fn matrix_nio_room_send_encrypted_is_opaque() {
    let out = replay_http(
        "matrix_nio_room_send_encrypted.http",
        Some("matrix"),
        "matrix.org",
    );
    assert!(out.messages.is_empty());
    let o = out.opaque.unwrap();
    assert_eq!(o.reason.as_str(), "e2ee");
    assert!(
        o.evidence.contains("m.megolm.v1.aes-sha2"),
        "{}",
        o.evidence
    );
    assert!(
        !o.evidence.contains("AwgAEnAC"),
        "ciphertext must not leak into evidence"
    );
}

fn discord_frames() -> Vec<Vec<u8>> {
    let raw = fixture("discord_gateway_zlib.frames");
    let mut frames = Vec::new();
    let mut rest = &raw[..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        frames.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    frames
}

fn discord_messages(frames: &[Vec<u8>]) -> Vec<gatehouse_inspectors::extract::Message> {
    let mut x = Extractor::new(None, "gateway.discord.gg");
    frames
        .iter()
        .flat_map(|f| x.on_ws_message(Direction::Inbound, false, f).messages)
        .collect()
}

#[test]
fn discord_zlib_stream_gateway() {
    let frames = discord_frames();
    assert_eq!(
        frames.len(),
        5,
        "HELLO, READY, MESSAGE_CREATE in two frames, ACK"
    );
    let msgs = discord_messages(&frames);
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m.app, "discord");
    assert_eq!(m.direction, Direction::Inbound);
    assert_eq!(m.conversation.as_deref(), Some("1100000000000000001"));
    assert_eq!(m.sender.as_deref(), Some("nelly"));
    assert_eq!(
        m.text("content"),
        Some("customer list: alice@example.com, bob@example.com")
    );
    assert_eq!(m.attachments, ["customers.csv"]);
}

#[test]
fn discord_zlib_stream_on_every_frame_split() {
    let frames = discord_frames();
    let want = discord_messages(&frames);
    for (fi, frame) in frames.iter().enumerate() {
        for cut in 1..frame.len() {
            if frame[..cut].ends_with(&[0, 0, 0xff, 0xff]) {
                continue; // would itself be a complete payload boundary
            }
            let mut split = frames.clone();
            let tail = split[fi].split_off(cut);
            split.insert(fi + 1, tail);
            assert_eq!(discord_messages(&split), want, "frame {fi} cut {cut}");
        }
    }
}

/// Per-direction byte streams of a recorded XMPP connection.
fn xmpp_streams(name: &str) -> (Vec<u8>, Vec<u8>) {
    let raw = fixture(name);
    let (mut up, mut down) = (Vec::new(), Vec::new());
    let mut rest = &raw[..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let data = &rest[5..5 + len];
        if rest[0] == b'C' {
            up.extend_from_slice(data)
        } else {
            down.extend_from_slice(data)
        }
        rest = &rest[5 + len..];
    }
    (up, down)
}

fn feed_split(direction: Direction, bytes: &[u8], cut: usize) -> Extracted {
    let mut x = XmppExtractor::new();
    let mut out = x.feed(direction, &bytes[..cut]);
    let second = x.feed(direction, &bytes[cut..]);
    out.messages.extend(second.messages);
    out
}

fn all_opaque(direction: Direction, bytes: &[u8]) -> Vec<String> {
    // One feed per byte: every stanza reports its own evidence.
    let mut x = XmppExtractor::new();
    bytes
        .iter()
        .filter_map(|b| x.feed(direction, std::slice::from_ref(b)).opaque)
        .map(|o| o.evidence)
        .collect()
}

#[test]
fn slixmpp_outbound_through_prosody() {
    let (up, _) = xmpp_streams("xmpp_alice.chunks");
    let mut x = XmppExtractor::new();
    let out = x.feed(Direction::Outbound, &up);
    assert_eq!(out.messages.len(), 1, "{out:?}");
    let m = &out.messages[0];
    assert_eq!(m.app, "xmpp");
    assert_eq!(m.conversation.as_deref(), Some("bob@localhost"));
    assert_eq!(
        m.text("body"),
        Some("meet at 5, bring the <contract> & notes")
    );
    let evidence = all_opaque(Direction::Outbound, &up);
    assert_eq!(evidence.len(), 3, "{evidence:?}");
    // slixmpp queues raw and built stanzas differently: order varies.
    for marker in [
        "OTR (?OTR body)",
        "OMEMO (legacy axolotl) <encrypted xmlns='eu.siacs.conversations.axolotl'>",
        "<openpgp xmlns='urn:xmpp:openpgp:0'>",
    ] {
        assert_eq!(
            evidence.iter().filter(|e| e.contains(marker)).count(),
            1,
            "{marker}: {evidence:?}"
        );
    }
}

#[test]
fn slixmpp_inbound_through_prosody_has_sender() {
    let (_, down) = xmpp_streams("xmpp_bob.chunks");
    let out = XmppExtractor::new().feed(Direction::Inbound, &down);
    assert_eq!(out.messages.len(), 1);
    let m = &out.messages[0];
    assert_eq!(m.direction, Direction::Inbound);
    assert_eq!(m.sender.as_deref(), Some("alice@localhost/laptop"));
    assert_eq!(
        m.text("body"),
        Some("meet at 5, bring the <contract> & notes")
    );
    assert_eq!(all_opaque(Direction::Inbound, &down).len(), 3);
}

#[test]
fn xmpp_every_chunk_split_gives_the_same_messages() {
    for (name, dir) in [
        ("xmpp_alice.chunks", Direction::Outbound),
        ("xmpp_bob.chunks", Direction::Inbound),
    ] {
        let (up, down) = xmpp_streams(name);
        let bytes = if dir == Direction::Outbound { up } else { down };
        let whole = XmppExtractor::new().feed(dir, &bytes);
        for cut in 0..=bytes.len() {
            assert_eq!(
                feed_split(dir, &bytes, cut).messages,
                whole.messages,
                "{name} cut {cut}"
            );
        }
    }
}

#[test]
fn xmpp_through_the_extractor_as_websocket_frames() {
    // RFC 7395 framing: one stanza per WebSocket text message.
    let mut x = Extractor::new(Some("xmpp"), "chat.example");
    let mut got = Vec::new();
    for frame in [
        "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>",
        "<message to='ops@muc.example.com' type='groupchat'><body>deploy at 9</body></message>",
    ] {
        got.extend(
            x.on_ws_message(Direction::Outbound, true, frame.as_bytes())
                .messages,
        );
    }
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text("body"), Some("deploy at 9"));
}

#[test]
fn matrix_nio_room_send_encrypted_is_one_encrypted_message_of_its_room() {
    let out = replay_http(
        "matrix_nio_room_send_encrypted.http",
        Some("matrix"),
        "matrix.org",
    );
    assert_eq!(out.encrypted.len(), 1, "{out:?}");
    let e = &out.encrypted[0];
    assert_eq!(e.app, "matrix");
    assert_eq!(e.conversation.as_deref(), Some("!abcdef:example.org"));
    assert_eq!(e.algorithm, "m.megolm.v1.aes-sha2");
    assert!(e.size > 0);
}

#[test]
fn slixmpp_encrypted_stanzas_are_one_encrypted_message_each() {
    let (up, _) = xmpp_streams("xmpp_alice.chunks");
    let out = XmppExtractor::new().feed(Direction::Outbound, &up);
    assert_eq!(out.encrypted.len(), 3, "{out:?}");
    let mut algorithms: Vec<&str> = out.encrypted.iter().map(|e| e.algorithm.as_str()).collect();
    algorithms.sort();
    assert_eq!(
        algorithms,
        [
            "OMEMO (legacy axolotl)",
            "OTR",
            "OpenPGP for XMPP (XEP-0373)"
        ]
    );
    for e in &out.encrypted {
        // Sent: the conversation is the peer it goes to.
        assert_eq!(e.conversation.as_deref(), Some("bob@localhost"), "{e:?}");
        assert!(e.size > 40, "{e:?}");
    }
    let (_, down) = xmpp_streams("xmpp_bob.chunks");
    let out = XmppExtractor::new().feed(Direction::Inbound, &down);
    assert_eq!(out.encrypted.len(), 3, "{out:?}");
    for e in &out.encrypted {
        // Received: the conversation and the sender are the peer.
        assert_eq!(e.sender.as_deref(), Some("alice@localhost/laptop"), "{e:?}");
        assert_eq!(e.conversation, e.sender);
    }
}
