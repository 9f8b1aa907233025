//! `gatehouse identify`: the flows of real loopback captures (see
//! tests/fixtures/pcap/README.md), every container and link-type variant,
//! and the failures that must exit 1.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pcap")
        .join(name)
}

/// (exit status, stdout, stderr)
fn identify(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("identify")
        .args(args)
        .output()
        .expect("run gatehouse");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_flows(path: &Path) -> Vec<Value> {
    let (code, out, err) = identify(&["--json", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{}: {err}", path.display());
    assert!(err.is_empty(), "{}: {err}", path.display());
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The DESIGN.md fields of a flow, client port left out (ephemeral).
fn design_fields(v: &Value) -> (String, String, String, String, Value, Value, String) {
    let s = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {v}"))
            .to_owned()
    };
    let client = s("client");
    let client_ip = client.rsplit_once(':').unwrap().0.to_owned();
    (
        client_ip,
        s("server"),
        s("transport"),
        s("protocol"),
        v["sni"].clone(),
        v["app"].clone(),
        s("class"),
    )
}

type Expected<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
);

fn assert_flows(flows: &[Value], want: &[Expected<'_>]) {
    let got: Vec<_> = flows.iter().map(design_fields).collect();
    let want: Vec<_> = want
        .iter()
        .map(|(c, s, t, p, sni, app, class)| {
            (
                c.to_string(),
                s.to_string(),
                t.to_string(),
                p.to_string(),
                sni.map_or(Value::Null, Value::from),
                app.map_or(Value::Null, Value::from),
                class.to_string(),
            )
        })
        .collect();
    assert_eq!(got, want);
}

const LOOPBACK: [Expected<'static>; 8] = [
    (
        "127.0.0.1",
        "127.0.0.1:47443",
        "tcp",
        "tls",
        Some("slack.com"),
        Some("slack"),
        "inspectable",
    ),
    (
        "127.0.0.1",
        "127.0.0.1:47444",
        "tcp",
        "tls",
        Some("chat.signal.org"),
        Some("signal"),
        "opaque",
    ),
    (
        "127.0.0.1",
        "127.0.0.1:47883",
        "tcp",
        "mqtt",
        None,
        None,
        "inspectable",
    ),
    (
        "127.0.0.1",
        "127.0.0.1:47222",
        "tcp",
        "xmpp",
        Some("chat.example.org"),
        Some("xmpp"),
        "inspectable",
    ),
    (
        "[::1]",
        "[::1]:47080",
        "tcp",
        "http",
        Some("matrix.corp.example"),
        Some("matrix"),
        "inspectable",
    ),
    (
        "127.0.0.1",
        "127.0.0.1:47556",
        "tcp",
        "mtproto",
        None,
        Some("telegram"),
        "opaque",
    ),
    (
        "127.0.0.1",
        "127.0.0.1:47443",
        "udp",
        "quic",
        Some("teams.microsoft.com"),
        Some("teams"),
        "inspectable",
    ),
    (
        "127.0.0.1",
        "127.0.0.1:47053",
        "udp",
        "dns",
        None,
        None,
        "metadata-only",
    ),
];

#[test]
fn loopback_capture_of_real_clients_gives_each_flow() {
    let flows = json_flows(&fixture("loopback.pcap"));
    assert_flows(&flows, &LOOPBACK);
    // Fingerprints as computed independently (inspectors/tests/fixtures/README.md).
    assert_eq!(flows[0]["ja4"], "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6");
    assert_eq!(flows[1]["ja4"], "t13d1812h2_85036bcba153_d41ae481755e");
    assert_eq!(flows[6]["ja4"], "q13d0307h3_55b375c5d22e_1cecd519fee8");
    assert_eq!(flows[0]["alpn"], serde_json::json!(["h2", "http/1.1"]));
    // The Python hello came in six segments and was reassembled whole.
    assert_eq!(flows[1]["client_bytes"], 517);
    assert_eq!(flows[1]["packets"], 18);
    // The QUIC hello spans two datagrams (plus the client's close).
    assert_eq!(flows[6]["packets"], 3);
    assert_eq!(flows[6]["error"], Value::Null);
    assert_eq!(
        flows[5]["reasons"],
        serde_json::json!(["non-tls-encryption"])
    );
    for f in &flows {
        let client = f["client"].as_str().unwrap();
        assert_ne!(client, f["server"].as_str().unwrap());
        assert!(f["first_seen"].as_f64().unwrap() > 1.6e9);
    }
}

#[test]
fn calls_dns_and_gquic_carry_their_app_confidence_and_evidence() {
    // inspectors/tests/fixtures/captures/README.md says how it was made.
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("inspectors/tests/fixtures/captures/calls_dns_quic.pcap");
    let flows = json_flows(&path);
    let by_server = |server: &str| {
        flows
            .iter()
            .find(|f| f["server"] == server)
            .unwrap_or_else(|| panic!("no flow to {server}"))
    };
    let stun = flows.iter().find(|f| f["protocol"] == "stun").unwrap();
    assert_eq!(stun["app"], "whatsapp");
    assert_eq!(stun["class"], "opaque");
    assert_eq!(stun["reasons"], serde_json::json!(["e2ee-call"]));
    assert_eq!(stun["confidence"], "medium");
    assert_eq!(stun["protocol_confidence"], "high");
    assert!(stun["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().contains("resolved from g.whatsapp.net")));
    let rtp = by_server("127.0.10.3:5004");
    assert_eq!(
        (&rtp["protocol"], &rtp["app"]),
        (&"rtp".into(), &"zoom".into())
    );
    let quic = by_server("127.0.10.7:4433");
    assert_eq!(quic["sni"], "discord.com");
    let gquic: Vec<&Value> = flows
        .iter()
        .filter(|f| f["server"] == "127.0.10.6:443")
        .collect();
    assert_eq!(gquic.len(), 4);
    assert!(gquic
        .iter()
        .all(|f| f["protocol"] == "quic" && f["sni"].is_string()));
    for f in &flows {
        assert!(
            f["evidence"].is_array() && f["protocol_confidence"].is_string(),
            "{f}"
        );
    }
}

#[test]
fn every_container_and_link_type_variant_reads_the_same() {
    let reference: Vec<Value> = json_flows(&fixture("loopback.pcap"))
        .into_iter()
        .filter(|f| f["protocol"] != "quic")
        .collect();
    assert_eq!(reference.len(), 7);
    let keep = |f: &Value| {
        let mut f = f.clone();
        f.as_object_mut().unwrap().retain(|k, _| k != "first_seen");
        f
    };
    for name in [
        "loopback.pcapng",
        "loopback-be.pcap",
        "loopback-nsec.pcap",
        "loopback-sll.pcap",
        "loopback-sll2-be.pcapng",
        "loopback-vlan.pcap",
        "loopback-null.pcap",
        "loopback-raw.pcap",
    ] {
        let flows: Vec<Value> = json_flows(&fixture(name))
            .into_iter()
            .filter(|f| f["protocol"] != "quic")
            .collect();
        assert_eq!(
            flows.iter().map(keep).collect::<Vec<_>>(),
            reference.iter().map(keep).collect::<Vec<_>>(),
            "{name}"
        );
        // Micro- and nanosecond timestamps agree (to float precision).
        for (a, b) in flows.iter().zip(&reference) {
            let (a, b) = (
                a["first_seen"].as_f64().unwrap(),
                b["first_seen"].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 1e-6, "{name}: {a} vs {b}");
        }
    }
    // The pcapng holds the QUIC flow too.
    assert_flows(&json_flows(&fixture("loopback.pcapng")), &LOOPBACK);
}

#[test]
fn recorded_first_bytes_out_of_order_are_reassembled() {
    let flows = json_flows(&fixture("fixtures.pcap"));
    let mtproto = (
        "192.0.2.10",
        "198.51.100.7:443",
        "tcp",
        "mtproto",
        None,
        Some("telegram"),
        "opaque",
    );
    assert_flows(
        &flows,
        &[
            mtproto,
            mtproto,
            mtproto,
            mtproto,
            (
                "192.0.2.10",
                "198.51.100.7:443",
                "tcp",
                "tls",
                Some("chat.example.com"),
                None,
                "inspectable",
            ),
            (
                "192.0.2.10",
                "198.51.100.8:443",
                "udp",
                "quic",
                Some("chat.example.com"),
                None,
                "inspectable",
            ),
        ],
    );
    let ports: Vec<_> = flows
        .iter()
        .map(|f| f["client"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ports[0], "192.0.2.10:50000");
    assert_eq!(ports[4], "192.0.2.10:50004");
    assert_eq!(flows[4]["ja4"], "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6");
    assert_eq!(flows[4]["client_bytes"], 517 + 64); // plus one retransmission
}

#[test]
fn table_output_is_aligned_with_one_row_per_flow() {
    let (code, out, err) = identify(&[fixture("loopback.pcap").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1 + LOOPBACK.len(), "{out}");
    assert!(lines[0].starts_with("CLIENT"));
    let col = lines[0].find("PROTOCOL").unwrap();
    for l in &lines[1..] {
        let rest = &l[col..];
        assert!(
            ["tls ", "mqtt ", "xmpp ", "http ", "mtproto ", "quic ", "dns ", "unknown "]
                .iter()
                .any(|p| rest.starts_with(p)),
            "misaligned: {l}"
        );
    }
    assert!(
        out.contains("slack.com") && out.contains("[::1]:47080"),
        "{out}"
    );
}

#[test]
fn missing_garbage_and_short_files_exit_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("notes.txt");
    std::fs::write(&garbage, "these are not packets\n".repeat(10)).unwrap();
    let short = dir.path().join("short.pcap");
    std::fs::write(
        &short,
        &std::fs::read(fixture("loopback.pcap")).unwrap()[..10],
    )
    .unwrap();
    let missing = dir.path().join("missing.pcap");
    for (path, says) in [
        (&garbage, "not a pcap or pcapng"),
        (&short, "cut short"),
        (&missing, "cannot read"),
    ] {
        let (code, out, err) = identify(&[path.to_str().unwrap()]);
        assert_eq!(code, 1, "{}: {out}{err}", path.display());
        assert!(err.contains(path.to_str().unwrap()), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(out.is_empty(), "{out}");
    }
}

#[test]
fn file_cut_mid_packet_prints_flows_before_the_cut_then_exits_1() {
    let bytes = std::fs::read(fixture("loopback.pcap")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (code, out, err) = identify(&["--json", cut.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cut short") && err.contains("cut.pcap"),
        "{err}"
    );
    let flows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!flows.is_empty() && flows.len() < LOOPBACK.len(), "{out}");
    assert_eq!(flows[0]["sni"], "slack.com");
}

#[test]
fn malformed_packet_is_skipped_counted_and_reported() {
    let mut bytes = std::fs::read(fixture("loopback-raw.pcap")).unwrap();
    // A raw-IP record claiming IPv4 with a header longer than the frame.
    let frame = [0x4f, 0, 0, 60, 0, 0];
    for v in [1_700_000_000u32, 0, frame.len() as u32, frame.len() as u32] {
        bytes.extend(v.to_le_bytes());
    }
    bytes.extend(frame);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-packet.pcap");
    std::fs::write(&path, &bytes).unwrap();
    let (code, out, err) = identify(&["--json", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 7, "{out}");
    assert!(err.contains("skipped 1 malformed packet"), "{err}");
    assert!(err.contains("bad-packet.pcap"), "{err}");
}

/// Style rule 3: every prefix of a real capture parses without panic; a
/// cut inside a record is reported, and flows only accumulate.
#[test]
fn every_prefix_of_a_capture_reads_or_reports_the_cut() {
    use gatehouse_inspectors::capture::{self, Limits};
    for name in ["loopback.pcapng", "loopback-be.pcap"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let mut flows = 0;
        for len in (0..bytes.len()).step_by(3).chain([bytes.len()]) {
            match capture::read(&bytes[..len], Limits::default()) {
                Err(_) => assert!(len < 28, "{name}: header of {len} bytes refused"),
                Ok(cap) => {
                    assert!(cap.flows.len() >= flows, "{name} at {len}");
                    flows = cap.flows.len();
                    if len == bytes.len() {
                        assert_eq!(cap.damage, None);
                        assert_eq!(cap.malformed, 0);
                    }
                }
            }
        }
        assert_eq!(flows, if name.ends_with("pcapng") { 8 } else { 7 });
    }
}
