//! Uploaded files come out of extraction as content of their own, whatever
//! the app's message holds: every multipart file part, or a raw body.

use gatehouse_inspectors::extract::Extractor;

const CSV: &str = "name,card\nAda,4556737586899855\n";

fn multipart(parts: &[(&str, Option<&str>, &str, &str)]) -> (String, String) {
    let boundary = "gh-test-boundary";
    let mut body = String::new();
    for (name, filename, ct, data) in parts {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        ));
        if let Some(f) = filename {
            body.push_str(&format!("; filename=\"{f}\""));
        }
        body.push_str(&format!("\r\nContent-Type: {ct}\r\n\r\n{data}\r\n"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn discord_files_part_is_an_upload_beside_its_message() {
    let (ct, body) = multipart(&[
        (
            "payload_json",
            None,
            "application/json",
            r#"{"content":"the list"}"#,
        ),
        (
            "files[0]",
            Some("cards.csv"),
            "application/octet-stream",
            CSV,
        ),
    ]);
    let out = Extractor::new(Some("discord"), "discord.corp.test").on_http_request(
        "POST",
        "/api/v10/channels/42/messages",
        &[("content-type", ct.as_bytes())],
        body.as_bytes(),
    );
    assert_eq!(out.messages.len(), 1);
    assert_eq!(out.messages[0].text("content"), Some("the list"));
    assert_eq!(out.uploads.len(), 1, "{out:?}");
    let u = &out.uploads[0];
    assert_eq!(u.name, "cards.csv");
    assert_eq!(u.data, CSV.as_bytes());
    assert!(!u.declared_textual());
}

#[test]
fn slack_files_upload_every_file_part_and_content_argument() {
    let (ct, body) = multipart(&[
        ("channels", None, "text/plain", "C044"),
        ("initial_comment", None, "text/plain", "see attached"),
        ("file", Some("a.csv"), "text/csv", CSV),
        ("file", Some("b.txt"), "text/plain", "second"),
    ]);
    let out = Extractor::new(Some("slack"), "chat.corp.test").on_http_request(
        "POST",
        "/api/files.upload",
        &[("content-type", ct.as_bytes())],
        body.as_bytes(),
    );
    assert_eq!(out.messages[0].conversation.as_deref(), Some("C044"));
    let names: Vec<&str> = out.uploads.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["a.csv", "b.txt"]);
    assert!(out.uploads[0].declared_textual());
    // files.upload's `content` argument is the file as text.
    let form = format!("channels=C1&content={CSV}");
    let out = Extractor::new(Some("slack"), "chat.corp.test").on_http_request(
        "POST",
        "/api/files.upload",
        &[("content-type", &b"application/x-www-form-urlencoded"[..])],
        form.as_bytes(),
    );
    assert!(out.messages[0]
        .text("content")
        .unwrap()
        .contains("4556737586899855"));
    assert!(
        out.uploads.is_empty(),
        "a form is read as fields, not a file"
    );
}

#[test]
fn raw_upload_body_is_named_by_its_query() {
    let out = Extractor::new(Some("mattermost"), "mm.corp.test").on_http_request(
        "POST",
        "/api/v4/files?channel_id=abc&filename=cards.csv",
        &[("content-type", &b"application/octet-stream"[..])],
        CSV.as_bytes(),
    );
    assert_eq!(out.uploads.len(), 1, "{out:?}");
    assert_eq!(out.uploads[0].name, "cards.csv");
    assert_eq!(out.uploads[0].data, CSV.as_bytes());
    // JSON bodies carry messages, not files.
    let out = Extractor::new(Some("slack"), "chat.corp.test").on_http_request(
        "POST",
        "/api/chat.postMessage",
        &[("content-type", &b"application/json"[..])],
        br#"{"channel":"C1","text":"hi"}"#,
    );
    assert!(out.uploads.is_empty());
}
