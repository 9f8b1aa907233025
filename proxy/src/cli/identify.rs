//! `gatehouse identify CAPTURE [--json]`: offline classification of the
//! flows of a pcap or pcapng file, one line per flow.
//!
//! The flows come from `gatehouse_inspectors::capture` (sans-IO); this file
//! reads the file, classifies with the app catalog and prints.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use gatehouse_inspectors::capture::{self, Capture, Flow, Limits};
use gatehouse_inspectors::identify::catalog::{Catalog, Classification};
use gatehouse_inspectors::identify::ranges::Ranges;
use gatehouse_inspectors::identify::Protocol;
use serde::Serialize;

/// Arguments of `gatehouse identify`.
#[derive(Debug, Args)]
pub struct IdentifyArgs {
    /// A pcap or pcapng capture file.
    #[arg(value_name = "CAPTURE")]
    capture: PathBuf,
    /// One JSON object per flow and line.
    #[arg(long)]
    json: bool,
}

/// One output line; the first seven fields are DESIGN.md's.
#[derive(Debug, Serialize)]
struct Line {
    client: String,
    server: String,
    transport: &'static str,
    protocol: &'static str,
    /// TLS/QUIC SNI, else the HTTP Host or the XMPP stream's `to`.
    sni: Option<String>,
    app: Option<String>,
    class: &'static str,
    reasons: Vec<&'static str>,
    /// How sure the app attribution is.
    confidence: &'static str,
    /// How sure the protocol verdict is.
    protocol_confidence: &'static str,
    /// The facts behind the verdict (handshake fields, catalog matches,
    /// DNS answers, address ranges, signalling seen before the flow).
    evidence: Vec<String>,
    alpn: Vec<String>,
    ja4: Option<String>,
    /// The handshake was recognised but malformed (or incomplete).
    error: Option<String>,
    packets: u64,
    bytes: u64,
    client_bytes: u64,
    first_seen: Option<f64>,
}

/// Reads, classifies, prints. Exit 1 when the file cannot be read, is not
/// a capture, or is cut short (the flows before the cut are still printed).
pub fn main(args: IdentifyArgs) -> ExitCode {
    let name = args.capture.display();
    let bytes = match std::fs::read(&args.capture) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let capture = match capture::read(&bytes, Limits::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // No config key names an extra catalog yet: the shipped one is used.
    // Flows are classified together: DNS answers and signalling earlier in
    // the capture name the addresses of later flows.
    let classes = capture::classify(&capture.flows, Catalog::builtin(), Ranges::builtin());
    let lines: Vec<Line> = capture
        .flows
        .iter()
        .zip(classes)
        .map(|(f, c)| line(f, c))
        .collect();
    let printed = if args.json {
        print_json(&lines)
    } else {
        print_table(&lines)
    };
    if let Err(e) = printed {
        // A closed pipe (`| head`) is not worth a message.
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("error: writing output: {e}");
            return ExitCode::FAILURE;
        }
    }
    report_problems(&args.capture, &capture)
}

fn line(flow: &Flow, c: Classification) -> Line {
    let id = &flow.identification;
    let hello = id.client_hello();
    Line {
        client: flow.client.to_string(),
        server: flow.server.to_string(),
        transport: flow.transport.as_str(),
        protocol: protocol_name(id.protocol),
        sni: id.server_name().map(str::to_owned),
        app: c.app,
        class: c.class.as_str(),
        reasons: c.reasons.iter().map(|r| r.as_str()).collect(),
        confidence: c.confidence.as_str(),
        protocol_confidence: id.confidence.as_str(),
        evidence: c.evidence,
        alpn: id
            .alpn()
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
        ja4: hello.map(|h| h.ja4.clone()),
        error: id.error.clone(),
        packets: flow.packets,
        bytes: flow.bytes,
        client_bytes: flow.client_bytes,
        first_seen: flow.first_seen,
    }
}

/// DESIGN.md's protocol names. Threema is recognised only by the shape of
/// random bytes, not by anything its protocol says, so the protocol stays
/// `unknown` and the guess shows in `app` (with its confidence).
fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Threema => Protocol::Unknown.as_str(),
        other => other.as_str(),
    }
}

fn print_json(lines: &[Line]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    for l in lines {
        serde_json::to_writer(&mut out, l)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

fn print_table(lines: &[Line]) -> io::Result<()> {
    const HEAD: [&str; 8] = [
        "CLIENT",
        "SERVER",
        "TRANSPORT",
        "PROTOCOL",
        "SNI",
        "APP",
        "CLASS",
        "JA4",
    ];
    let rows: Vec<[String; 8]> = lines
        .iter()
        .map(|l| {
            [
                l.client.clone(),
                l.server.clone(),
                l.transport.to_owned(),
                match &l.error {
                    Some(_) => format!("{} (malformed)", l.protocol),
                    None => l.protocol.to_owned(),
                },
                l.sni.clone().unwrap_or_else(|| "-".into()),
                l.app.clone().unwrap_or_else(|| "-".into()),
                l.class.to_owned(),
                l.ja4.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = HEAD.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = io::stdout().lock();
    let head = HEAD.map(str::to_owned);
    for r in std::iter::once(&head).chain(&rows) {
        let mut text = String::new();
        for (i, (cell, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())?;
    }
    out.flush()
}

/// Skipped frames go to stderr; a file cut short is an error.
fn report_problems(path: &Path, capture: &Capture) -> ExitCode {
    let name = path.display();
    if capture.malformed > 0 {
        eprintln!(
            "warning: {name}: skipped {} malformed packet(s) of {}",
            capture.malformed, capture.frames
        );
        for (n, reason) in &capture.malformed_examples {
            eprintln!("  packet {n}: {reason}");
        }
    }
    match &capture.damage {
        Some(d) => {
            eprintln!(
                "error: {name}: {} at byte {}; flows up to there are shown",
                d.reason, d.offset
            );
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}
