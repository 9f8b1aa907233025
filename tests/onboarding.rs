//! The onboarding page of the real binary, fetched with curl: every
//! download in its format (the profile parsed with `plist`, the `.cer` with
//! x509-parser), the PAC file run by node, the page per User-Agent, and the
//! explicit proxy answering for the onboarding host itself — over HTTPS
//! with a leaf from the CA — and relaying nothing.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::Gatehouse;

/// A free loopback port (bound and released: the gateway binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// curl `args`: (exit code, headers, body bytes).
fn curl(args: &[&str]) -> (i32, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("h");
    let body = dir.path().join("b");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D"])
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        std::fs::read_to_string(&headers).unwrap_or_default()
            + &String::from_utf8_lossy(&out.stderr),
        std::fs::read(&body).unwrap_or_default(),
    )
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const ORG: &str = "Example <Corp> & Co";

fn start(extra: &str) -> (Gatehouse, SocketAddr) {
    let port = free_port();
    let gw = Gatehouse::start(&format!(
        "[ca]\norganization = \"{ORG}\"\n[onboarding]\nlisten = \"127.0.0.1:{port}\"\n{extra}"
    ));
    let page: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    (gw, page)
}

#[test]
fn every_download_is_served_in_its_format() {
    let (gw, page) = start(
        "host = \"gatehouse.onboarding\"\ndirect = [\"10.0.0.0/8\", \".corp.example\", \"intranet\"]\n\
         pac_proxy = \"gw.corp.example:3128\"\n",
    );
    let base = format!("http://{page}");
    let pem = std::fs::read_to_string(&gw.ca_cert).unwrap();
    let der = der_of(&pem);

    let (code, h, body) = curl(&[&format!("{base}/ca.pem")]);
    assert_eq!(code, 0, "{h}");
    assert_eq!(
        header(&h, "content-type"),
        Some("application/x-pem-file"),
        "{h}"
    );
    assert_eq!(der_of(&String::from_utf8(body).unwrap()), der);

    let (code, h, body) = curl(&[&format!("{base}/ca.cer")]);
    assert_eq!(code, 0, "{h}");
    assert_eq!(
        header(&h, "content-type"),
        Some("application/x-x509-ca-cert"),
        "{h}"
    );
    assert!(header(&h, "content-disposition")
        .unwrap()
        .contains("gatehouse-ca.cer"));
    let (rest, cert) = x509_parser::parse_x509_certificate(&body).expect(".cer is DER");
    assert!(rest.is_empty());
    assert!(cert.is_ca(), "the .cer is the CA certificate");
    assert_eq!(body, der);

    let (code, h, body) = curl(&[&format!("{base}/ca.mobileconfig")]);
    assert_eq!(code, 0, "{h}");
    assert_eq!(
        header(&h, "content-type"),
        Some("application/x-apple-aspen-config"),
        "{h}"
    );
    let profile = plist::Value::from_reader(std::io::Cursor::new(&body)).expect("a plist");
    let profile = profile.as_dictionary().unwrap();
    assert_eq!(
        profile.get("PayloadType").and_then(|v| v.as_string()),
        Some("Configuration")
    );
    assert_eq!(
        profile
            .get("PayloadOrganization")
            .and_then(|v| v.as_string()),
        Some(ORG)
    );
    let payload = profile
        .get("PayloadContent")
        .and_then(|v| v.as_array())
        .and_then(|a| a.first())
        .and_then(|v| v.as_dictionary())
        .expect("one payload");
    assert_eq!(
        payload.get("PayloadType").and_then(|v| v.as_string()),
        Some("com.apple.security.root")
    );
    assert_eq!(
        payload.get("PayloadContent").and_then(|v| v.as_data()),
        Some(der.as_slice())
    );
    assert!(payload
        .get("PayloadDescription")
        .and_then(|v| v.as_string())
        .unwrap()
        .contains(ORG));

    let (code, h, body) = curl(&[&format!("{base}/proxy.pac")]);
    assert_eq!(code, 0, "{h}");
    assert_eq!(
        header(&h, "content-type"),
        Some("application/x-ns-proxy-autoconfig"),
        "{h}"
    );
    let pac = String::from_utf8(body).unwrap();
    // Run it, as a browser would, with the PAC helper functions.
    let script = format!(
        "{pac}\n\
         function dnsDomainIs(h, d) {{ return h.length >= d.length && h.substring(h.length - d.length) == d; }}\n\
         function isInNet(h, net, mask) {{\n\
           if (!/^[0-9.]+$/.test(h)) return false;\n\
           var a = h.split('.'), n = net.split('.'), m = mask.split('.');\n\
           for (var i = 0; i < 4; i++) if ((a[i] & m[i]) != (n[i] & m[i])) return false;\n\
           return true;\n\
         }}\n\
         for (const h of ['10.1.2.3', 'wiki.corp.example', 'corp.example', 'intranet', 'slack.com', '11.0.0.1', 'notcorp.example'])\n\
           console.log(h + ' ' + FindProxyForURL('https://' + h + '/', h));\n"
    );
    let out = Command::new("node")
        .args(["-e", &script])
        .output()
        .expect("node (Debian package nodejs) must be installed: scripts/test.sh installs it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        got,
        "10.1.2.3 DIRECT\nwiki.corp.example DIRECT\ncorp.example DIRECT\nintranet DIRECT\n\
         slack.com PROXY gw.corp.example:3128\n11.0.0.1 PROXY gw.corp.example:3128\n\
         notcorp.example PROXY gw.corp.example:3128\n",
        "{pac}"
    );

    // The trust check is HTTPS-only: over plain HTTP it cannot turn green.
    let (_, h, _) = curl(&[&format!("{base}/trust-check.svg")]);
    assert!(h.starts_with("HTTP/1.1 404"), "{h}");
    let (_, h, _) = curl(&[&format!("{base}/nothing-here")]);
    assert!(h.starts_with("HTTP/1.1 404"), "{h}");
    let (_, h, _) = curl(&["-X", "POST", &format!("{base}/ca.pem")]);
    assert!(h.starts_with("HTTP/1.1 405"), "{h}");
}

#[test]
fn the_page_leads_with_the_visitors_platform_and_lists_them_all() {
    let (gw, page) = start("host = \"gatehouse.onboarding\"\n");
    let cases = [
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Version/17.5 Mobile/15E148 Safari/604.1", "ios"),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15", "macos"),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36", "android"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36", "windows"),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36", "linux"),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "firefox"),
    ];
    let fp = {
        let (_, out, _) = common::gatehouse(gw.dir.path(), &["ca", "show", "--json"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["fingerprints"]["sha256"].as_str().unwrap().to_string()
    };
    for (ua, want) in cases {
        let (code, h, body) = curl(&["-A", ua, &format!("http://{page}/")]);
        assert_eq!(code, 0, "{h}");
        assert!(header(&h, "content-type").unwrap().starts_with("text/html"));
        let html = String::from_utf8(body).unwrap();
        let first = html.find("<section id=\"").expect("sections");
        assert!(
            html[first..].starts_with(&format!(
                "<section id=\"{want}\" data-platform=\"{want}\" class=\"yours\""
            )),
            "{ua} should lead with {want}: {}",
            &html[first..first + 80]
        );
        for p in ["ios", "macos", "android", "windows", "linux", "firefox"] {
            assert!(
                html.contains(&format!("<section id=\"{p}\"")),
                "{p} missing for {ua}"
            );
        }
        for href in ["/ca.mobileconfig", "/ca.cer", "/ca.pem", "/proxy.pac"] {
            assert!(html.contains(&format!("href=\"{href}\"")), "{href}");
        }
        assert!(html.contains("API level 24"), "the Android caveat");
        assert!(html.contains(&fp), "the CA fingerprint, to compare");
        assert!(
            html.contains("src=\"https://gatehouse.onboarding/trust-check.svg\""),
            "the trust check probe"
        );
        // The organisation is named, escaped.
        assert!(html.contains("Example &lt;Corp&gt; &amp; Co"), "{html}");
        assert!(!html.contains("<Corp>"));
    }
    // Unknown agents get every platform, none singled out.
    let (_, _, body) = curl(&["-A", "curl/8", &format!("http://{page}/")]);
    let html = String::from_utf8(body).unwrap();
    assert!(!html.contains("class=\"yours\""));
    assert!(html.contains("<section id=\"ios\""));
}

/// A loopback TCP server that counts the connections it gets.
fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, n)
}

#[test]
fn the_explicit_proxy_answers_for_the_onboarding_host_and_relays_nothing() {
    // `localhost` resolves, and loopback destinations are allowed: were
    // the proxy to relay a request for the onboarding host, the counting
    // server would see it.
    let (server, hits) = counting_server();
    let port = server.port();
    let gw = Gatehouse::start("[onboarding]\nhost = \"localhost\"\n");
    let proxy = format!("http://{}", gw.proxy);
    let ca = gw.ca_cert.to_str().unwrap().to_string();

    // Absolute-form: the page, whatever the port asked for.
    let (code, h, body) = curl(&["-x", &proxy, &format!("http://localhost:{port}/ca.pem")]);
    assert_eq!(code, 0, "{h}");
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert_eq!(body, std::fs::read(&gw.ca_cert).unwrap());
    let (_, h, _) = curl(&["-x", &proxy, &format!("http://LOCALHOST.:{port}/anything")]);
    assert!(h.starts_with("HTTP/1.1 404"), "{h}");
    let (_, h, body) = curl(&["-x", &proxy, "http://localhost/proxy.pac"]);
    assert!(h.contains("application/x-ns-proxy-autoconfig"), "{h}");
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains(&format!("PROXY {}", gw.proxy)),
        "the PAC names the bound proxy"
    );

    // CONNECT: the page over TLS with a leaf from the CA for the host.
    let (code, h, body) = curl(&[
        "-x",
        &proxy,
        "--cacert",
        &ca,
        &format!("https://localhost:{port}/trust-check.svg"),
    ]);
    assert_eq!(code, 0, "{h}");
    assert!(h.contains("content-type: image/svg+xml"), "{h}");
    assert!(String::from_utf8_lossy(&body).contains("<svg"));
    // A client that does not trust the CA fails the handshake: the red.
    let (code, h, _) = curl(&[
        "-x",
        &proxy,
        &format!("https://localhost:{port}/trust-check.svg"),
    ]);
    assert_eq!(code, 60, "certificate problem expected: {h}");

    // The leaf is for exactly the onboarding host, issued by the CA.
    let mut s_client = Command::new("openssl")
        .args(["s_client", "-proxy", &gw.proxy.to_string(), "-connect"])
        .arg(format!("localhost:{port}"))
        .args([
            "-servername",
            "localhost",
            "-verify_hostname",
            "localhost",
            "-CAfile",
            &ca,
            "-verify_return_error",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    s_client
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = s_client.wait();
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");

    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a request for the onboarding host was relayed"
    );
}

#[test]
fn onboarding_config_mistakes_name_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        "[proxy]\nlisten = \"0.0.0.0:3128\"\n[onboarding]\nhttps_listen = \"127.0.0.1:8444\"\n\
         direct = [\"fd00::/8\", \"bad name!\", \"10.0.0.0/8\"]\n",
    )
    .unwrap();
    let (code, out, err) = common::gatehouse(dir.path(), &["check"]);
    let all = format!("{out}{err}");
    assert_eq!(code, 1, "{all}");
    for key in [
        "onboarding.https_listen",
        "onboarding.direct[0]",
        "onboarding.direct[1]",
        "onboarding.pac_proxy",
    ] {
        assert!(all.contains(key), "{key} not named: {all}");
    }
    assert!(!all.contains("onboarding.direct[2]"), "{all}");
}

/// The DER of the first certificate in `pem`.
fn der_of(pem: &str) -> Vec<u8> {
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn https_listen_serves_the_trust_check_with_a_leaf_for_the_host() {
    let tls_port = free_port();
    let (gw, page) = start(&format!(
        "host = \"gatehouse.onboarding\"\nhttps_listen = \"127.0.0.1:{tls_port}\"\n"
    ));
    // The page points its probe at that listener's port.
    let (_, _, body) = curl(&[&format!("http://{page}/")]);
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains(&format!(
            "src=\"https://gatehouse.onboarding:{tls_port}/trust-check.svg\""
        )),
        "{html}"
    );
    let url = format!("https://gatehouse.onboarding:{tls_port}/trust-check.svg");
    let resolve = format!("gatehouse.onboarding:{tls_port}:127.0.0.1");
    let ca = gw.ca_cert.to_str().unwrap().to_string();
    let (code, h, body) = curl(&["--resolve", &resolve, "--cacert", &ca, &url]);
    assert_eq!(code, 0, "{h}");
    assert!(h.contains("content-type: image/svg+xml"), "{h}");
    assert!(String::from_utf8_lossy(&body).contains("<svg"));
    // Untrusted: the handshake fails, which is the check's red.
    let (code, h, _) = curl(&["--resolve", &resolve, &url]);
    assert_eq!(code, 60, "{h}");
    // The downloads are there over HTTPS too.
    let (code, h, _) = curl(&[
        "--resolve",
        &resolve,
        "--cacert",
        &ca,
        &format!("https://gatehouse.onboarding:{tls_port}/ca.cer"),
    ]);
    assert_eq!(code, 0, "{h}");
    assert!(h.contains("application/x-x509-ca-cert"), "{h}");
}

#[test]
fn the_page_needs_no_proxy_login_but_everything_else_still_does() {
    let gw = Gatehouse::start(
        "[identity]\nrequire_proxy_auth = true\n[onboarding]\nhost = \"gatehouse.onboarding\"\n",
    );
    let proxy = format!("http://{}", gw.proxy);
    let (code, h, _) = curl(&["-x", &proxy, "http://gatehouse.onboarding/ca.cer"]);
    assert_eq!(code, 0, "{h}");
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    let (_, h, _) = curl(&["-x", &proxy, "http://example.com/"]);
    assert!(h.starts_with("HTTP/1.1 407"), "{h}");
}

#[test]
fn clients_outside_allowed_clients_get_no_page() {
    let port = free_port();
    let _gw = Gatehouse::start_in(
        tempfile::tempdir().unwrap(),
        &format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_clients = [\"10.0.0.0/8\"]\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n[onboarding]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    let (code, h, body) = curl(&[&format!("http://127.0.0.1:{port}/ca.pem")]);
    assert_ne!(code, 0, "{h}");
    assert!(body.is_empty());
}
