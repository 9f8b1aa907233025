//! `gatehouse ca init | import | show | export` as an operator runs them.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::gatehouse;

#[test]
fn init_show_and_export_never_reveal_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = gatehouse(
        dir.path(),
        &[
            "ca",
            "init",
            "--name",
            "Acme Interception CA",
            "--permit-dns",
            "example.com",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let key = dir.path().join("certs/ca.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (code, show, _) = gatehouse(dir.path(), &["ca", "show"]);
    assert_eq!(code, 0);
    assert!(show.contains("Acme Interception CA"), "{show}");
    assert!(show.contains("DNS:example.com"), "{show}");
    assert!(
        show.to_lowercase().contains("sha-256") || show.to_lowercase().contains("sha256"),
        "{show}"
    );

    let (code, pem, _) = gatehouse(dir.path(), &["ca", "export", "--format", "pem"]);
    assert_eq!(code, 0);
    assert_eq!(
        pem,
        std::fs::read_to_string(dir.path().join("certs/ca.pem")).unwrap()
    );
    let (code, _, _) = gatehouse(
        dir.path(),
        &["ca", "export", "--format", "der", "--out", "ca.der"],
    );
    assert_eq!(code, 0);
    let der = std::fs::read(dir.path().join("ca.der")).unwrap();
    assert_eq!(der[0], 0x30, "DER SEQUENCE");
    let (code, profile, _) = gatehouse(dir.path(), &["ca", "export", "--format", "mobileconfig"]);
    assert_eq!(code, 0);
    assert!(
        profile.contains("com.apple.security.root") && profile.contains("<data>"),
        "{profile}"
    );

    let key_pem = std::fs::read_to_string(&key).unwrap();
    let key_body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for output in [&show, &pem, &profile] {
        assert!(!output.contains("PRIVATE KEY") && !output.contains(&key_body[..40]));
    }

    let (code, _, err) = gatehouse(dir.path(), &["ca", "init"]);
    assert_eq!(code, 1, "a second init must not overwrite the CA");
    assert!(err.contains("exists"), "{err}");
}

#[test]
fn a_readable_key_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(gatehouse(dir.path(), &["ca", "init"]).0, 0);
    let key = dir.path().join("certs/ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = gatehouse(dir.path(), &["ca", "show"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("readable by group or others") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn an_intermediate_from_the_corporate_pki_is_imported_with_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    // The corporate PKI: a root and an intermediate made with openssl.
    let sh = |cmd: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key -out root.pem -days 30 -subj '/CN=Corp Root' -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout int.key -out int.csr -subj '/CN=Corp Gatehouse Intermediate'");
    std::fs::write(
        dir.path().join("ext.cnf"),
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    sh("openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial -out int.pem -days 20 -extfile ext.cnf");
    let (code, out, err) = gatehouse(
        dir.path(),
        &[
            "ca", "import", "--cert", "int.pem", "--key", "int.key", "--chain", "root.pem",
            "--dir", "imported",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Corp Gatehouse Intermediate"), "{out}");
    let key = dir.path().join("imported/ca.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A leaf certificate is not a CA: refused.
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.pem -days 5 -subj '/CN=not a ca' -addext basicConstraints=critical,CA:FALSE");
    let (code, _, err) = gatehouse(
        dir.path(),
        &[
            "ca", "import", "--cert", "leaf.pem", "--key", "leaf.key", "--dir", "bad",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.to_lowercase().contains("ca"), "{err}");
}

/// Runs `cmd` with `sh -c` in `dir`; panics with its stderr unless it succeeds.
fn sh(dir: &std::path::Path, cmd: &str) -> String {
    let out = std::process::Command::new("sh")
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
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The top-level dictionary of an Apple profile, as Python's plistlib reads it, as JSON.
fn plist_json(dir: &std::path::Path, file: &str) -> serde_json::Value {
    let out = sh(
        dir,
        &format!(
            "python3 -c 'import plistlib, json, sys; p = plistlib.load(open(sys.argv[1], \"rb\")); \
             p[\"PayloadContent\"] = [dict(c, PayloadContent=c[\"PayloadContent\"].hex()) for c in p[\"PayloadContent\"]]; \
             print(json.dumps(p))' {file}"
        ),
    );
    serde_json::from_str(&out).unwrap()
}

#[test]
fn show_and_export_need_only_the_certificate_and_load_no_rules() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(gatehouse(d, &["ca", "init"]).0, 0);
    std::fs::remove_file(d.join("certs/ca.key")).unwrap();
    // No rules directory exists: a command that loaded the rules would warn.
    assert!(!d.join("dlp-rules").exists());
    std::fs::write(
        d.join("gatehouse.toml"),
        "[ca]\ndir = \"certs\"\norganization = \"Acme Corp\"\n",
    )
    .unwrap();
    let quiet = |args: &[&str]| {
        let (code, out, err) = gatehouse(d, args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert!(
            !err.contains("rules") && !err.contains("warning") && !err.contains("ca.key"),
            "{args:?}: {err}"
        );
        out
    };

    let show = quiet(&["ca", "show"]);
    assert!(show.contains("CN=Gatehouse Interception CA"), "{show}");
    let json: serde_json::Value = serde_json::from_str(&quiet(&["ca", "show", "--json"])).unwrap();
    let subject = sh(d, "openssl x509 -in certs/ca.pem -noout -subject");
    assert!(subject.contains("Gatehouse Interception CA"), "{subject}");
    assert!(json["subject"]
        .as_str()
        .unwrap()
        .contains("CN=Gatehouse Interception CA"));
    assert_eq!(json["subject"], json["issuer"]);
    assert_eq!(json["kind"], "root");
    assert_eq!(json["key_algorithm"], "ECDSA P-256");
    assert_eq!(json["constraints"]["path_len"], 0);
    let openssl_fp = sh(
        d,
        "openssl x509 -in certs/ca.pem -noout -fingerprint -sha256",
    );
    assert_eq!(
        openssl_fp.trim().rsplit('=').next().unwrap(),
        json["fingerprints"]["sha256"].as_str().unwrap()
    );
    let serial = sh(d, "openssl x509 -in certs/ca.pem -noout -serial");
    assert_eq!(
        serial.trim().trim_start_matches("serial="),
        json["serial"].as_str().unwrap().replace(':', "")
    );
    for key in ["not_before", "not_after"] {
        assert!(json[key].as_str().unwrap().ends_with('Z'), "{json}");
    }
    assert!(json["fingerprints"]["sha1"].as_str().unwrap().len() == 59);

    let pem = quiet(&["ca", "export"]);
    assert_eq!(
        pem,
        std::fs::read_to_string(d.join("certs/ca.pem")).unwrap()
    );
    for (format, file) in [
        ("der", "ca.der"),
        ("cer", "ca.cer"),
        ("p12", "ca.p12"),
        ("mobileconfig", "ca.mobileconfig"),
    ] {
        quiet(&["ca", "export", "--format", format, "--out", file]);
    }
    for file in ["ca.der", "ca.cer"] {
        let from_der = sh(
            d,
            &format!("openssl x509 -inform der -in {file} -outform pem"),
        );
        assert_eq!(from_der, pem, "{file}");
    }

    // The PKCS#12: the certificate, no key, readable with the empty
    // password; its MAC is checked (a wrong password fails).
    let p12 = sh(d, "openssl pkcs12 -in ca.p12 -nokeys -passin pass:");
    assert!(p12.contains(pem.trim()), "{p12}");
    let info = sh(
        d,
        "openssl pkcs12 -in ca.p12 -info -noout -passin pass: 2>&1",
    );
    assert!(info.contains("Certificate bag"), "{info}");
    assert!(!info.to_lowercase().contains("key bag"), "{info}");
    let nodes = sh(
        d,
        "openssl pkcs12 -in ca.p12 -nodes -passin pass: 2>/dev/null",
    );
    assert!(!nodes.contains("PRIVATE KEY"), "{nodes}");
    let wrong = std::process::Command::new("openssl")
        .args([
            "pkcs12",
            "-in",
            "ca.p12",
            "-nokeys",
            "-passin",
            "pass:wrong",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        !wrong.status.success(),
        "a wrong password must fail the MAC"
    );

    // The profile names the organisation from the config.
    let profile = plist_json(d, "ca.mobileconfig");
    assert_eq!(profile["PayloadOrganization"], "Acme Corp");
    let text = profile["PayloadDescription"].as_str().unwrap();
    assert!(
        text.starts_with("Lets Acme Corp's Gatehouse gateway"),
        "{text}"
    );
    let cert = &profile["PayloadContent"][0];
    assert_eq!(cert["PayloadType"], "com.apple.security.root");
    assert_eq!(
        cert["PayloadContent"].as_str().unwrap(),
        sh(d, "od -An -v -tx1 ca.der | tr -d ' \\n'")
    );
}

#[test]
fn the_profile_names_the_certificate_organisation_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A created CA says O=Gatehouse, the product: no organisation is named.
    assert_eq!(gatehouse(d, &["ca", "init"]).0, 0);
    let (code, _, err) = gatehouse(
        d,
        &[
            "ca",
            "export",
            "--format",
            "mobileconfig",
            "--out",
            "a.mobileconfig",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let profile = plist_json(d, "a.mobileconfig");
    assert!(profile.get("PayloadOrganization").is_none(), "{profile}");
    let text = profile["PayloadDescription"].as_str().unwrap();
    assert!(text.starts_with("Lets the Gatehouse gateway"), "{text}");
    assert!(!text.contains("Gatehouse's"), "{text}");

    // An imported certificate (`ca.cert`, its key kept elsewhere) with an O:
    // that organisation, with no key file anywhere in reach.
    sh(d, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -out corp.pem -days 30 -subj '/O=Corp Ltd/CN=Corp Inspection CA' -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
    std::fs::write(
        d.join("corp.toml"),
        "[ca]\ncert = \"corp.pem\"\nkey = \"corp.key\"\n",
    )
    .unwrap();
    let (code, _, err) = gatehouse(
        d,
        &[
            "--config",
            "corp.toml",
            "ca",
            "export",
            "--format",
            "mobileconfig",
            "--out",
            "b.mobileconfig",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let profile = plist_json(d, "b.mobileconfig");
    assert_eq!(profile["PayloadOrganization"], "Corp Ltd");
    assert_eq!(profile["PayloadDisplayName"], "Corp Inspection CA");
    let (code, show, err) = gatehouse(d, &["--config", "corp.toml", "ca", "show"]);
    assert_eq!(code, 0, "{err}");
    assert!(show.contains("Corp Inspection CA"), "{show}");

    // A certificate that is not a CA is refused, naming the file.
    sh(d, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -out leaf.pem -days 5 -subj '/CN=not a ca' -addext basicConstraints=critical,CA:FALSE");
    std::fs::write(d.join("leaf.toml"), "[ca]\ncert = \"leaf.pem\"\n").unwrap();
    let (code, _, err) = gatehouse(d, &["--config", "leaf.toml", "ca", "show"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("leaf.pem") && err.contains("not a CA"),
        "{err}"
    );
    // No certificate at all: a clear error, exit 1.
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = gatehouse(empty.path(), &["ca", "export"]);
    assert_eq!(code, 1);
    assert!(err.contains("ca.pem") && err.contains("ca init"), "{err}");
}
