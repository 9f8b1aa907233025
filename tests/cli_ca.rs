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
