//! `gatehouse check`: every problem at once, each with its key and file.

mod common;

use std::os::unix::fs::PermissionsExt;

#[test]
fn check_reports_unknown_key_bad_cidr_and_missing_ca_file_together() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[proxy]\nallowed_clients = [\"10.0.0.0/33\"]\nlisten_port = 8080\n\n[ca]\ncert = \"missing/ca.pem\"\nkey = \"missing/ca.key\"\n",
    )
    .unwrap();
    let (code, out, _) = common::gatehouse(dir.path(), &["check", "--config", "bad.toml"]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("error:")).collect();
    let has = |key: &str, text: &str| {
        lines
            .iter()
            .any(|l| l.contains("bad.toml") && l.contains(key) && l.contains(text))
    };
    assert!(has("proxy.listen_port", "unknown field"), "{out}");
    assert!(has("proxy.allowed_clients[0]", "10.0.0.0/33"), "{out}");
    assert!(has("ca.cert", "no such file"), "{out}");
    assert!(has("ca.key", "no such file"), "{out}");
    assert_eq!(lines.len(), 4, "{out}");
}

#[test]
fn check_passes_on_the_example_config() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, out, err) =
        common::gatehouse(root, &["check", "--config", "gatehouse.example.toml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: gatehouse.example.toml"), "{out}");
}

#[test]
fn check_passes_on_built_in_defaults_in_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = common::gatehouse(dir.path(), &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: built-in defaults"), "{out}");
}

#[test]
fn check_refuses_a_group_readable_ca_key_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::write(certs.join("ca.pem"), "x").unwrap();
    std::fs::write(certs.join("ca.key"), "x").unwrap();
    std::fs::set_permissions(certs.join("ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(dir.path().join("gatehouse.toml"), "").unwrap();
    let (code, out, _) = common::gatehouse(dir.path(), &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("ca.dir") && out.contains("readable by group or others"),
        "{out}"
    );
}

#[test]
fn a_missing_config_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = common::gatehouse(dir.path(), &["check", "--config", "nope.toml"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("nope.toml") && out.contains("cannot read config file"),
        "{out}"
    );
}

#[test]
fn run_refuses_to_start_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        "[admin]\nlisten = \"nowhere\"\n",
    )
    .unwrap();
    let (code, _, err) = common::gatehouse(dir.path(), &["run"]);
    assert_eq!(code, 1);
    assert!(err.contains("admin.listen"), "{err}");
}

#[test]
fn check_compiles_the_rules_as_run_does_and_names_the_place_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("bad.toml"),
        "[[rule]]\nid = \"bad-regex\"\nname = \"Bad\"\ndescription = \"d\"\nseverity = \"high\"\naction = \"block\"\npattern = \"(unclosed\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        "[rules]\ndir = \"rules\"\n",
    )
    .unwrap();
    let (code, out, _) = common::gatehouse(dir.path(), &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("error: rules.dir:") && l.contains("bad.toml:")),
        "{out}"
    );
    // `run` refuses the same directory.
    let (code, _, err) = common::gatehouse(dir.path(), &["run", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 1, "{err}");

    // A good pack passes, with its rule count.
    std::fs::remove_file(rules.join("bad.toml")).unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules/payment-cards.toml"),
        rules.join("payment-cards.toml"),
    )
    .unwrap();
    let (code, out, _) = common::gatehouse(dir.path(), &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("DLP rule(s) in rules"), "{out}");
}

#[test]
fn check_json_is_one_document_with_each_problem_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[proxy]\nallowed_clients = [\"10.0.0.0/33\"]\nlisten_port = 8080\n",
    )
    .unwrap();
    let (code, out, err) =
        common::gatehouse(dir.path(), &["check", "--config", "bad.toml", "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "one document: {out}");
    let doc: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(doc["ok"], false, "{out}");
    let problems = doc["problems"].as_array().unwrap();
    let has = |key: &str, text: &str| {
        problems.iter().any(|p| {
            p["severity"] == "error"
                && p["area"] == "config"
                && p["key"] == key
                && p["file"].as_str().is_some_and(|f| f.ends_with("bad.toml"))
                && p["message"].as_str().unwrap().contains(text)
        })
    };
    assert!(has("proxy.listen_port", "unknown field"), "{out}");
    assert!(has("proxy.allowed_clients[0]", "10.0.0.0/33"), "{out}");
}

#[test]
fn check_json_on_the_example_config_says_ok_with_the_rule_count() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, out, err) = common::gatehouse(
        root,
        &["check", "--config", "gatehouse.example.toml", "--json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(doc["ok"], true, "{out}");
    assert_eq!(doc["config"], "gatehouse.example.toml", "{out}");
    assert!(
        doc["problems"].is_array() && doc["notes"].is_array(),
        "{out}"
    );
    assert!(doc["rules"]["count"].as_u64().unwrap() > 0, "{out}");
    assert!(doc["rules"]["dir"].as_str().is_some(), "{out}");
}

#[test]
fn check_json_reports_rule_errors_under_rules_dir() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("bad.toml"),
        "[[rule]]\nid = \"bad-regex\"\nname = \"Bad\"\ndescription = \"d\"\nseverity = \"high\"\naction = \"block\"\npattern = \"(unclosed\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        "[rules]\ndir = \"rules\"\n",
    )
    .unwrap();
    let (code, out, err) = common::gatehouse(dir.path(), &["check", "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(doc["ok"], false, "{out}");
    assert!(
        doc["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["area"] == "rules"
                && p["key"] == "rules.dir"
                && p["message"].as_str().unwrap().contains("bad.toml:")),
        "{out}"
    );
}

#[test]
fn check_loads_the_ca_files_run_loads_and_no_others() {
    // An imported CA (`ca.cert`/`ca.key`) sends a chain only when `ca.chain`
    // names one: a stray `chain.pem` in `ca.dir` is not read by `run`, so
    // `check` must not judge it either.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = common::gatehouse(dir.path(), &["ca", "init", "--dir", "certs"]);
    assert_eq!(code, 0, "{err}");
    // A root has no chain: a chain file next to it would be refused.
    std::fs::copy(
        dir.path().join("certs/ca.pem"),
        dir.path().join("certs/chain.pem"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        "[ca]\ncert = \"certs/ca.pem\"\nkey = \"certs/ca.key\"\n",
    )
    .unwrap();
    let (code, out, err) = common::gatehouse(dir.path(), &["check"]);
    assert_eq!(code, 0, "a file run never reads: {out}{err}");

    // Named in `ca.chain`, the same file is read by both, and refused.
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        "[ca]\ncert = \"certs/ca.pem\"\nkey = \"certs/ca.key\"\nchain = \"certs/chain.pem\"\n",
    )
    .unwrap();
    let (code, out, _) = common::gatehouse(dir.path(), &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("ca.cert") && out.contains("self-signed"),
        "{out}"
    );
    let (code, _, err) = common::gatehouse(dir.path(), &["run"]);
    assert_eq!(code, 1, "run refuses the same chain: {err}");
}
