//! Table-driven extraction tests, one row per app endpoint, with request
//! bodies shaped after each app's public API documentation.

use std::io::Write;

use gatehouse_inspectors::extract::{Direction, Extracted, Extractor};

enum Want {
    /// conversation, texts (field, text), attachments
    Msg(
        Option<&'static str>,
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
    ),
    /// a substring of the opaque evidence
    Opaque(&'static str),
    Nothing,
}
use Want::*;

struct Case {
    name: &'static str,
    app: Option<&'static str>,
    host: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
    want: Want,
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const MP: &str = "multipart/form-data; boundary=----b0und";

/// base64url('{"alg":"dir","enc":"A256GCM"}')
const JWE: &str = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..aXZpdml2aXY.Y2lwaGVydGV4dA.dGFndGFn";

fn cases() -> Vec<Case> {
    vec![
        Case { name: "slack form with blocks as a JSON string", app: None, host: "acme.slack.com", method: "POST",
            path: "/api/chat.postMessage?_x_id=abc", content_type: FORM,
            body: "channel=C1&text=fallback&blocks=%5B%7B%22type%22%3A%22header%22%2C%22text%22%3A%7B%22type%22%3A%22plain_text%22%2C%22text%22%3A%22Salaries%22%7D%7D%5D",
            want: Msg(Some("C1"), &[("text", "fallback"), ("blocks[0].text.text", "Salaries")], &[]) },
        Case { name: "slack web client multipart", app: Some("slack"), host: "acme.slack.com", method: "POST",
            path: "/api/chat.postMessage", content_type: MP,
            body: "------b0und\r\nContent-Disposition: form-data; name=\"channel\"\r\n\r\nD42\r\n------b0und\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nmultipart hi\r\n------b0und--\r\n",
            want: Msg(Some("D42"), &[("text", "multipart hi")], &[]) },
        Case { name: "slack files.upload", app: Some("slack"), host: "slack.com", method: "POST",
            path: "/api/files.upload", content_type: MP,
            body: "------b0und\r\nContent-Disposition: form-data; name=\"channels\"\r\n\r\nC9\r\n------b0und\r\nContent-Disposition: form-data; name=\"initial_comment\"\r\n\r\nsee attached\r\n------b0und\r\nContent-Disposition: form-data; name=\"file\"; filename=\"payroll.xlsx\"\r\nContent-Type: application/octet-stream\r\n\r\nPK\x03\x04\r\n------b0und--\r\n",
            want: Msg(Some("C9"), &[("initial_comment", "see attached")], &["payroll.xlsx"]) },
        Case { name: "slack non-message method", app: Some("slack"), host: "slack.com", method: "POST",
            path: "/api/users.list", content_type: FORM, body: "limit=10", want: Nothing },
        Case { name: "teams chat service html", app: Some("teams"), host: "emea.ng.msg.teams.microsoft.com", method: "POST",
            path: "/v1/users/ME/conversations/19%3Aabc%40thread.v2/messages", content_type: JSON,
            body: r#"{"content":"<p>Budget &amp; <b>plan</b></p>","messagetype":"RichText/Html","contenttype":"text","imdisplayname":"Ann Lee","properties":{"files":"[{\"fileName\":\"plan.docx\"}]"}}"#,
            want: Msg(Some("19:abc@thread.v2"), &[("content", "Budget & plan")], &["plan.docx"]) },
        Case { name: "teams graph channel message", app: Some("teams"), host: "graph.microsoft.com", method: "POST",
            path: "/v1.0/teams/t1/channels/19:c1@thread.tacv2/messages", content_type: JSON,
            body: r#"{"subject":"Q3","body":{"contentType":"html","content":"<div>Numbers&nbsp;attached</div>"},"attachments":[{"id":"a","name":"q3.pdf"}]}"#,
            want: Msg(Some("19:c1@thread.tacv2"), &[("subject", "Q3"), ("body.content", "Numbers attached")], &["q3.pdf"]) },
        Case { name: "discord REST json", app: None, host: "discord.com", method: "POST",
            path: "/api/v9/channels/1100/messages", content_type: JSON,
            body: r#"{"content":"ssn 078-05-1120","nonce":"1","tts":false,"embeds":[{"title":"T","description":"D"}]}"#,
            want: Msg(Some("1100"), &[("content", "ssn 078-05-1120"), ("embeds[0].title", "T"), ("embeds[0].description", "D")], &[]) },
        Case { name: "discord REST multipart payload_json", app: Some("discord"), host: "discord.com", method: "POST",
            path: "/api/v10/channels/1100/messages", content_type: MP,
            body: "------b0und\r\nContent-Disposition: form-data; name=\"payload_json\"\r\nContent-Type: application/json\r\n\r\n{\"content\":\"file!\",\"attachments\":[{\"id\":0,\"filename\":\"a.png\"}]}\r\n------b0und\r\nContent-Disposition: form-data; name=\"files[0]\"; filename=\"a.png\"\r\n\r\nPNG\r\n------b0und--\r\n",
            want: Msg(Some("1100"), &[("content", "file!")], &["a.png"]) },
        Case { name: "discord reaction is not a message", app: Some("discord"), host: "discord.com", method: "PUT",
            path: "/api/v9/channels/1/messages/2/reactions/%F0%9F%91%8D/@me", content_type: JSON, body: "{}", want: Nothing },
        Case { name: "matrix r0 file with caption", app: Some("matrix"), host: "matrix-client.matrix.org", method: "PUT",
            path: "/_matrix/client/r0/rooms/%21room%3Amatrix.org/send/m.room.message/t1", content_type: JSON,
            body: r#"{"msgtype":"m.file","body":"contract draft","filename":"contract.pdf","url":"mxc://x/y"}"#,
            want: Msg(Some("!room:matrix.org"), &[("body", "contract draft")], &["contract.pdf"]) },
        Case { name: "matrix to-device olm", app: Some("matrix"), host: "matrix.org", method: "PUT",
            path: "/_matrix/client/v3/sendToDevice/m.room.encrypted/t2", content_type: JSON, body: r#"{"messages":{}}"#,
            want: Opaque("Olm") },
        Case { name: "mattermost post", app: None, host: "mm.corp.example", method: "POST",
            path: "/api/v4/posts", content_type: JSON,
            body: r#"{"channel_id":"4xp9fdt77pncbef59f4k1qe83o","message":"prod db password is hunter2","file_ids":[]}"#,
            want: Msg(Some("4xp9fdt77pncbef59f4k1qe83o"), &[("message", "prod db password is hunter2")], &[]) },
        Case { name: "mattermost patch", app: Some("mattermost"), host: "mm", method: "PUT",
            path: "/api/v4/posts/abc/patch", content_type: JSON, body: r#"{"message":"edited"}"#,
            want: Msg(None, &[("message", "edited")], &[]) },
        Case { name: "rocket.chat sendMessage", app: None, host: "rc.corp.example", method: "POST",
            path: "/api/v1/chat.sendMessage", content_type: JSON,
            body: r#"{"message":{"rid":"GENERAL","msg":"hello team"}}"#,
            want: Msg(Some("GENERAL"), &[("msg", "hello team")], &[]) },
        Case { name: "rocket.chat postMessage attachments", app: Some("rocketchat"), host: "rc", method: "POST",
            path: "/api/v1/chat.postMessage", content_type: JSON,
            body: r##"{"channel":"#general","text":"see","attachments":[{"title":"Report","text":"body"}]}"##,
            want: Msg(Some("#general"), &[("text", "see"), ("attachments[0].title", "Report"), ("attachments[0].text", "body")], &[]) },
        Case { name: "rocket.chat e2e room", app: Some("rocketchat"), host: "rc", method: "POST",
            path: "/api/v1/chat.sendMessage", content_type: JSON,
            body: r#"{"message":{"rid":"r1","msg":"a7sd8f7as9df87","t":"e2e","e2e":"pending"}}"#,
            want: Opaque("t=e2e") },
        Case { name: "zulip stream message form", app: Some("zulip"), host: "acme.zulipchat.com", method: "POST",
            path: "/api/v1/messages", content_type: FORM,
            body: "type=stream&to=engineering&topic=release&content=ship+it+%F0%9F%9A%80",
            want: Msg(Some("engineering"), &[("topic", "release"), ("content", "ship it \u{1F680}")], &[]) },
        Case { name: "zulip web app direct message", app: None, host: "zulip.corp", method: "POST",
            path: "/json/messages", content_type: FORM, body: "type=private&to=%5B9%5D&content=psst",
            want: Msg(Some("[9]"), &[("content", "psst")], &[]) },
        Case { name: "google chat REST", app: Some("google-chat"), host: "chat.googleapis.com", method: "POST",
            path: "/v1/spaces/AAAA1234/messages?messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD", content_type: JSON,
            body: r#"{"text":"standup moved","thread":{"name":"spaces/AAAA1234/threads/t"},"cardsV2":[{"card":{"sections":[{"widgets":[{"textParagraph":{"text":"card text"}}]}]}}]}"#,
            want: Msg(Some("spaces/AAAA1234"), &[("text", "standup moved"), ("cardsV2[0].card.sections[0].widgets[0].textParagraph.text", "card text")], &[]) },
        Case { name: "instagram direct broadcast text", app: None, host: "i.instagram.com", method: "POST",
            path: "/api/v1/direct_v2/threads/broadcast/text/", content_type: FORM,
            body: "text=hey+there&thread_ids=%5B%22340282366841710300949128%22%5D&action=send_item",
            want: Msg(Some("[\"340282366841710300949128\"]"), &[("text", "hey there")], &[]) },
        Case { name: "messenger e2ee endpoint", app: Some("messenger"), host: "www.messenger.com", method: "POST",
            path: "/e2ee/t/123", content_type: "application/octet-stream", body: "\u{1}\u{2}", want: Opaque("E2EE endpoint") },
        Case { name: "webex bot api markdown", app: Some("webex"), host: "webexapis.com", method: "POST",
            path: "/v1/messages", content_type: JSON,
            body: r#"{"roomId":"Y2lzY29zcGFyazovL3VzL1JPT00vYmJjZWIxYWQ","text":"plain","markdown":"**bold** plan"}"#,
            want: Msg(Some("Y2lzY29zcGFyazovL3VzL1JPT00vYmJjZWIxYWQ"), &[("text", "plain"), ("markdown", "**bold** plan")], &[]) },
        Case { name: "webex client activity with JWE", app: Some("webex"), host: "conv-a.wbx2.com", method: "POST",
            path: "/conversation/api/v1/activities", content_type: JSON,
            body: r#"{"verb":"post","object":{"objectType":"comment","displayName":"eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..aXZpdml2aXY.Y2lwaGVydGV4dA.dGFndGFn"},"target":{"id":"c1","objectType":"conversation"}}"#,
            want: Opaque("alg=dir enc=A256GCM") },
        Case { name: "linkedin conversation event", app: Some("linkedin"), host: "www.linkedin.com", method: "POST",
            path: "/voyager/api/messaging/conversations/2-YWJj/events", content_type: JSON,
            body: r#"{"eventCreate":{"value":{"com.linkedin.voyager.messaging.create.MessageCreate":{"attributedBody":{"text":"are you open to a role?","attributes":[]},"attachments":[{"name":"jd.pdf"}]}}},"dedupeByClientGeneratedToken":false}"#,
            want: Msg(Some("2-YWJj"), &[("eventCreate.value.com.linkedin.voyager.messaging.create.MessageCreate.attributedBody.text", "are you open to a role?")], &["jd.pdf"]) },
        Case { name: "x dm new2", app: None, host: "x.com", method: "POST",
            path: "/i/api/1.1/dm/new2.json", content_type: JSON,
            body: r#"{"conversation_id":"123-456","recipient_ids":false,"request_id":"r","text":"dm text","cards_platform":"Web-12"}"#,
            want: Msg(Some("123-456"), &[("text", "dm text")], &[]) },
        Case { name: "x api v2 dm", app: Some("x"), host: "api.x.com", method: "POST",
            path: "/2/dm_conversations/with/9876/messages", content_type: JSON, body: r#"{"text":"v2 dm"}"#,
            want: Msg(Some("with:9876"), &[("text", "v2 dm")], &[]) },
        Case { name: "signal ciphertext", app: None, host: "chat.signal.org", method: "PUT",
            path: "/v1/messages/8f1e9a4c-2b7d-4a51-9d4c-1f0f6f3d2e11", content_type: JSON,
            body: r#"{"messages":[{"type":1,"destinationDeviceId":1,"destinationRegistrationId":4242,"content":"MwohBUKdqW3v"}],"online":false,"urgent":true,"timestamp":1700000000000}"#,
            want: Opaque("1 ciphertext envelope(s), type [1]") },
    ]
}

fn check(name: &str, want: &Want, direction: Direction, out: &Extracted) {
    match want {
        Nothing => assert!(out.is_empty(), "{name}: {out:?}"),
        Opaque(needle) => {
            assert!(out.messages.is_empty(), "{name}: {out:?}");
            let o = out
                .opaque
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: not opaque"));
            assert_eq!(o.reason.as_str(), "e2ee");
            assert!(o.evidence.contains(needle), "{name}: {}", o.evidence);
        }
        Msg(conv, texts, atts) => {
            assert_eq!(out.opaque, None, "{name}");
            assert_eq!(out.messages.len(), 1, "{name}: {out:?}");
            let m = &out.messages[0];
            assert_eq!(m.direction, direction, "{name}");
            assert_eq!(m.conversation.as_deref(), *conv, "{name}");
            let got: Vec<(&str, &str)> = m
                .texts
                .iter()
                .map(|t| (t.field.as_str(), t.text.as_str()))
                .collect();
            assert_eq!(got, *texts, "{name}");
            assert_eq!(m.attachments, *atts, "{name}");
        }
    }
}

#[test]
fn every_app_endpoint() {
    for c in cases() {
        let mut x = Extractor::new(c.app, c.host);
        let out = x.on_http_request(
            c.method,
            c.path,
            &[("Content-Type", c.content_type)],
            c.body.as_bytes(),
        );
        check(c.name, &c.want, Direction::Outbound, &out);
    }
}

#[test]
fn every_app_endpoint_gzip_encoded() {
    for c in cases() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(c.body.as_bytes()).unwrap();
        let body = gz.finish().unwrap();
        let headers = [
            ("content-type", c.content_type),
            ("Content-Encoding", "gzip"),
        ];
        let out = Extractor::new(c.app, c.host).on_http_request(c.method, c.path, &headers, &body);
        check(c.name, &c.want, Direction::Outbound, &out);
    }
}

#[test]
fn webex_jwe_in_bot_api_text() {
    let body = format!(r#"{{"roomId":"r","text":"{JWE}"}}"#);
    let out = Extractor::new(Some("webex"), "webexapis.com").on_http_request(
        "POST",
        "/v1/messages",
        &[("Content-Type", JSON)],
        body.as_bytes(),
    );
    assert!(out
        .opaque
        .unwrap()
        .evidence
        .starts_with("text: compact JWE"));
}

struct WsCase {
    name: &'static str,
    app: Option<&'static str>,
    host: &'static str,
    direction: Direction,
    text: bool,
    payload: Vec<u8>,
    want: Want,
    sender: Option<&'static str>,
}

fn mqtt_publish(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&1u16.to_be_bytes());
    body.extend_from_slice(payload);
    let mut p = vec![0x32];
    let mut n = body.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        p.push(if n > 0 { b | 0x80 } else { b });
        if n == 0 {
            break;
        }
    }
    p.extend(body);
    p
}

fn ws_cases() -> Vec<WsCase> {
    let ls_task =
        r#"{"thread_id":"7001","otid":"1","source":0,"send_type":1,"text":"see you at 6"}"#;
    let ls_req = serde_json::json!({
        "app_id": "2220391788200892",
        "payload": serde_json::json!({"tasks": [{"label": "46", "payload": ls_task, "queue_name": "7001", "task_id": 0}], "epoch_id": 1, "version_id": "1"}).to_string(),
        "request_id": 3, "type": 3
    }).to_string();
    vec![
        WsCase { name: "slack rtm inbound", app: Some("slack"), host: "wss-primary.slack.com", direction: Direction::Inbound, text: true,
            payload: br#"{"type":"message","channel":"C2147483705","user":"U2147483697","text":"Hello world","ts":"1355517523.000005"}"#.to_vec(),
            want: Msg(Some("C2147483705"), &[("text", "Hello world")], &[]), sender: Some("U2147483697") },
        WsCase { name: "slack socket mode events_api", app: Some("slack"), host: "wss-primary.slack.com", direction: Direction::Inbound, text: true,
            payload: br#"{"envelope_id":"e1","type":"events_api","payload":{"event":{"type":"message","channel":"C1","user":"U1","text":"sm","blocks":[{"type":"rich_text","elements":[{"type":"rich_text_section","elements":[{"type":"text","text":"sm"}]}]}]}}}"#.to_vec(),
            want: Msg(Some("C1"), &[("text", "sm"), ("blocks[0].elements[0].elements[0].text", "sm")], &[]), sender: Some("U1") },
        WsCase { name: "slack message_changed", app: Some("slack"), host: "wss-primary.slack.com", direction: Direction::Inbound, text: true,
            payload: br#"{"type":"message","subtype":"message_changed","channel":"C1","message":{"type":"message","user":"U9","text":"new text"}}"#.to_vec(),
            want: Msg(Some("C1"), &[("text", "new text")], &[]), sender: Some("U9") },
        WsCase { name: "discord plain json gateway", app: Some("discord"), host: "gateway.discord.gg", direction: Direction::Inbound, text: true,
            payload: br#"{"op":0,"s":5,"t":"MESSAGE_CREATE","d":{"channel_id":"42","author":{"id":"1","username":"z"},"content":"plain gw"}}"#.to_vec(),
            want: Msg(Some("42"), &[("content", "plain gw")], &[]), sender: Some("z") },
        WsCase { name: "discord heartbeat", app: Some("discord"), host: "gateway.discord.gg", direction: Direction::Outbound, text: true,
            payload: br#"{"op":1,"d":251}"#.to_vec(), want: Nothing, sender: None },
        WsCase { name: "rocket.chat ddp raw", app: None, host: "rc.corp", direction: Direction::Outbound, text: true,
            payload: br#"{"msg":"method","method":"sendMessage","id":"7","params":[{"_id":"m1","rid":"GENERAL","msg":"ddp hello"}]}"#.to_vec(),
            want: Msg(Some("GENERAL"), &[("msg", "ddp hello")], &[]), sender: None },
        WsCase { name: "rocket.chat ddp sockjs inbound", app: Some("rocketchat"), host: "rc.corp", direction: Direction::Inbound, text: true,
            payload: br#"a["{\"msg\":\"changed\",\"collection\":\"stream-room-messages\",\"id\":\"id\",\"fields\":{\"eventName\":\"GENERAL\",\"args\":[{\"_id\":\"m2\",\"rid\":\"GENERAL\",\"msg\":\"from sockjs\",\"u\":{\"_id\":\"u1\",\"username\":\"rocket.cat\"}}]}}"]"#.to_vec(),
            want: Msg(Some("GENERAL"), &[("msg", "from sockjs")], &[]), sender: Some("rocket.cat") },
        WsCase { name: "rocket.chat ddp e2e", app: Some("rocketchat"), host: "rc.corp", direction: Direction::Outbound, text: true,
            payload: br#"["{\"msg\":\"method\",\"method\":\"sendMessage\",\"id\":\"8\",\"params\":[{\"rid\":\"E2\",\"msg\":\"eyJr...\",\"t\":\"e2e\"}]}"]"#.to_vec(),
            want: Opaque("t=e2e"), sender: None },
        WsCase { name: "mattermost posted event", app: Some("mattermost"), host: "mm", direction: Direction::Inbound, text: true,
            payload: br#"{"event":"posted","data":{"channel_name":"town-square","sender_name":"@sam","post":"{\"id\":\"p\",\"channel_id\":\"ch1\",\"user_id\":\"u\",\"message\":\"ws post\"}"},"seq":3}"#.to_vec(),
            want: Msg(Some("ch1"), &[("message", "ws post")], &[]), sender: Some("@sam") },
        WsCase { name: "messenger lightspeed ls_req over mqtt", app: None, host: "edge-chat.messenger.com", direction: Direction::Outbound, text: false,
            payload: mqtt_publish("/ls_req", ls_req.as_bytes()),
            want: Msg(Some("7001"), &[("payload.tasks[0].payload.text", "see you at 6")], &[]), sender: None },
        WsCase { name: "instagram e2ee mqtt topic", app: Some("instagram"), host: "edge-chat.instagram.com", direction: Direction::Outbound, text: false,
            payload: mqtt_publish("/e2ee_send", b"\x08\x01\x12\x20"), want: Opaque("/e2ee_send"), sender: None },
        WsCase { name: "whatsapp web noise hello", app: None, host: "web.whatsapp.com", direction: Direction::Outbound, text: false,
            payload: [&b"WA\x06\x03\x00\x00\x24\x12\x22\x0a\x20"[..], &[7u8; 32]].concat(),
            want: Opaque("WA header"), sender: None },
        WsCase { name: "signal websocket frame", app: Some("signal"), host: "chat.signal.org", direction: Direction::Outbound, text: false,
            payload: b"\x08\x01\x12\x10\x0a\x03PUT".to_vec(), want: Opaque("signal websocket"), sender: None },
    ]
}

#[test]
fn every_app_websocket() {
    for c in ws_cases() {
        let mut x = Extractor::new(c.app, c.host);
        let out = x.on_ws_message(c.direction, c.text, &c.payload);
        check(c.name, &c.want, c.direction, &out);
        if let Msg(..) = c.want {
            assert_eq!(out.messages[0].sender.as_deref(), c.sender, "{}", c.name);
        }
    }
}

#[test]
fn whole_connection_e2ee_is_reported_once() {
    let mut x = Extractor::new(Some("whatsapp"), "web.whatsapp.com");
    assert!(x
        .on_ws_message(Direction::Outbound, false, b"WA\x06\x03\x00\x00\x01\x00")
        .opaque
        .is_some());
    assert!(x
        .on_ws_message(Direction::Inbound, false, &[0x00, 0x00, 0x10, 0xaa])
        .is_empty());
}

#[test]
fn messages_serialise_to_json() {
    let out = Extractor::new(Some("mattermost"), "mm").on_http_request(
        "POST",
        "/api/v4/posts",
        &[("Content-Type", JSON)],
        br#"{"channel_id":"c","message":"m"}"#,
    );
    let json = serde_json::to_value(&out).unwrap();
    assert_eq!(json["messages"][0]["direction"], "outbound");
    assert_eq!(json["messages"][0]["texts"][0]["field"], "message");
    assert_eq!(json["opaque"], serde_json::Value::Null);
    let back: Extracted = serde_json::from_value(json).unwrap();
    assert_eq!(back, out);
}
