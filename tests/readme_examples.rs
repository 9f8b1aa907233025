//! The README's command examples, run: every `gatehouse …` line of its
//! code blocks is executed by the real binary in a throw-away directory
//! (with the files the examples name), and must be a command line the
//! binary accepts — no usage error, no unknown flag. Rule ids the examples
//! name (`--rule ID`) must exist in the shipped packs.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const README: &str = include_str!("../README.md");

/// The `gatehouse` command lines of the README's code blocks, as argument
/// lists: prompts, comments, pipes and redirections cut off; `cargo run
/// … --` read as `gatehouse`.
fn examples() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in README.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let line = line.trim().trim_start_matches("$ ");
        let rest = if let Some(r) = line.strip_prefix("gatehouse ") {
            r
        } else if line.starts_with("cargo run") {
            match line.split_once(" -- ") {
                Some((_, r)) => r,
                None => continue,
            }
        } else {
            continue;
        };
        let args = split(rest);
        out.push((line.to_string(), args));
    }
    out
}

/// Shell words up to a comment, pipe or redirection; `[PLACEHOLDER]`s dropped.
fn split(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, '#' | '|' | '>') if !started => break,
            (None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words.retain(|w| !(w.starts_with('[') && w.ends_with(']')));
    words
}

fn sh(dir: &Path, cmd: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_splitter_reads_shell_words() {
    assert_eq!(
        split(r#"rules explain "text…"    # which rules fire (or --file F)"#),
        ["rules", "explain", "text…"]
    );
    assert_eq!(
        split("check --json | jq -r '.problems[]'"),
        ["check", "--json"]
    );
    assert_eq!(
        split("rules check [DIR]        # compile"),
        ["rules", "check"]
    );
    assert_eq!(
        split("rules scan outgoing.jsonl --json > findings.jsonl"),
        ["rules", "scan", "outgoing.jsonl", "--json"]
    );
}

#[test]
fn every_command_example_in_the_readme_is_accepted_by_the_binary() {
    let examples = examples();
    assert!(examples.len() >= 20, "found only {examples:?}");

    // A directory holding what the examples name.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    sh(
        d,
        &format!(
            "cp -r {}/dlp-rules {}/gatehouse.example.toml .",
            repo.display(),
            repo.display()
        ),
    );
    std::os::unix::fs::symlink(repo.join("tests"), d.join("tests")).unwrap();
    std::fs::copy(
        repo.join("tests/fixtures/pcap/loopback-sll2-be.pcapng"),
        d.join("capture.pcapng"),
    )
    .unwrap();
    for f in ["samples.jsonl", "outgoing.jsonl"] {
        std::fs::write(
            d.join(f),
            "{\"id\":\"1\",\"text\":\"lunch at noon?\"}\n{\"id\":\"2\",\"text\":\"card 4929 1234 5678 9012\"}\n",
        )
        .unwrap();
    }
    sh(d, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout corp-root.key -out corp-root.pem -days 30 -subj '/CN=Corp Root' -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null");
    sh(d, "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout int.key -out int.csr -subj '/CN=Corp Intermediate' 2>/dev/null");
    std::fs::write(
        d.join("ext.cnf"),
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    sh(d, "openssl x509 -req -in int.csr -CA corp-root.pem -CAkey corp-root.key -CAcreateserial -out int.pem -days 20 -extfile ext.cnf 2>/dev/null");

    let rule_ids: Vec<String> = std::fs::read_dir(repo.join("dlp-rules"))
        .unwrap()
        .flat_map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
            text.lines()
                .filter_map(|l| {
                    l.trim()
                        .strip_prefix("id = \"")?
                        .strip_suffix('"')
                        .map(String::from)
                })
                .collect::<Vec<_>>()
        })
        .collect();

    let mut ran = 0;
    for (line, mut args) in examples {
        if let Some(i) = args.iter().position(|a| a == "--rule") {
            let id = &args[i + 1];
            assert!(
                rule_ids.contains(id),
                "`{line}` names rule `{id}`, which no pack defines"
            );
        }
        // Serving forever is every other test's business.
        if args.first().map(String::as_str) == Some("run") {
            continue;
        }
        // Absolute paths of a real install go into the directory instead.
        for a in &mut args {
            if let Some(rel) = a.strip_prefix("/etc/gatehouse/") {
                *a = d.join("etc/gatehouse").join(rel).display().to_string();
            }
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(&args)
            .current_dir(d)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `events tail -f` follows until stopped: two seconds to object.
        let follows = args.iter().any(|a| a == "-f");
        let deadline = Instant::now() + Duration::from_secs(if follows { 2 } else { 20 });
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        let usage = [
            "Usage:",
            "unexpected argument",
            "invalid value",
            "unrecognized subcommand",
        ];
        assert!(
            !usage.iter().any(|u| err.contains(u)),
            "`{line}` is not a command line gatehouse accepts:\n{err}"
        );
        match status {
            None => assert!(follows, "`{line}` did not finish in 20 s"),
            Some(s) => assert_ne!(
                s.code(),
                Some(2),
                "`{line}` failed as a usage or I/O error:\n{err}"
            ),
        }
        ran += 1;
    }
    assert!(ran >= 20, "ran {ran}");
}
