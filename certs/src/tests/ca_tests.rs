//! CA creation, loading, key protection and import validation.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::ParsedExtension;

use super::fixtures::*;
use crate::{Ca, CaFiles, CaImport, CaInit, CaKeyAlgorithm, CertError, LeafRequest};

#[test]
fn create_writes_key_0600_and_load_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let files = CaFiles::in_dir(&dir.path().join("nested"));
    let ca = Ca::create(&files, &CaInit::default()).unwrap();
    let mode = fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = Ca::load(&files).unwrap();
    assert_eq!(ca.cert_der(), again.cert_der());
    assert!(again.chain_der().is_empty(), "a root we made is never sent");
    // The reloaded key signs leaves that chain to the same certificate.
    let t = now();
    let leaf = again
        .mint(
            &LeafRequest::new("a.example", upstream(&["a.example"], t)).unwrap(),
            t,
        )
        .unwrap();
    webpki_verify(&leaf, ca.cert_der(), "a.example", t).unwrap();
}

#[test]
fn load_refuses_group_or_world_readable_key() {
    let dir = tempfile::tempdir().unwrap();
    let files = CaFiles::in_dir(dir.path());
    Ca::create(&files, &CaInit::default()).unwrap();
    for mode in [0o640, 0o644, 0o604] {
        fs::set_permissions(&files.key, fs::Permissions::from_mode(mode)).unwrap();
        let err = Ca::load(&files).unwrap_err();
        assert!(
            matches!(err, CertError::KeyPermissions { mode: m, .. } if m == mode),
            "{err}"
        );
    }
    fs::set_permissions(&files.key, fs::Permissions::from_mode(0o400)).unwrap();
    Ca::load(&files).unwrap();
}

#[test]
fn create_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let files = CaFiles::in_dir(dir.path());
    let first = Ca::create(&files, &CaInit::default()).unwrap();
    assert!(Ca::create(&files, &CaInit::default()).is_err());
    assert_eq!(Ca::load(&files).unwrap().cert_der(), first.cert_der());
}

#[test]
fn new_ca_has_the_required_extensions() {
    let ca = test_ca();
    let cert = parse(ca.cert_der());
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical);
    assert!(bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical);
    assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
    assert!(!ku.value.digital_signature());
    let ski = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        });
    assert!(ski.is_some_and(|k| !k.is_empty()), "subject key id missing");
    assert!(cert.name_constraints().unwrap().is_none());
    let d = ca.describe().unwrap();
    assert_eq!(d.key_algorithm, "ECDSA P-256");
    assert!(
        d.subject.contains("Gatehouse Interception CA"),
        "{}",
        d.subject
    );
    assert!(d.self_signed);
}

#[test]
fn other_key_algorithms_make_working_cas() {
    for (alg, name) in [
        (CaKeyAlgorithm::EcdsaP384, "ECDSA P-384"),
        (CaKeyAlgorithm::Rsa3072, "RSA 3072"),
    ] {
        let ca = Ca::generate(&CaInit {
            key_algorithm: alg,
            ..CaInit::default()
        })
        .unwrap();
        assert_eq!(ca.describe().unwrap().key_algorithm, name);
        let t = now();
        let leaf = ca
            .mint(
                &LeafRequest::new("x.example", upstream(&["x.example"], t)).unwrap(),
                t,
            )
            .unwrap();
        webpki_verify(&leaf, ca.cert_der(), "x.example", t).unwrap();
    }
}

#[test]
fn permit_dns_constrains_the_ca_and_minting() {
    let ca = Ca::generate(&CaInit {
        permit_dns: vec!["corp.example".into()],
        ..CaInit::default()
    })
    .unwrap();
    let d = ca.describe().unwrap();
    assert_eq!(d.permitted, vec!["DNS:corp.example".to_string()]);
    let cert = parse(ca.cert_der());
    assert!(cert.name_constraints().unwrap().unwrap().critical);
    let t = now();
    let inside = LeafRequest::new("mail.corp.example", upstream(&["*.corp.example"], t)).unwrap();
    let leaf = ca.mint(&inside, t).unwrap();
    webpki_verify(&leaf, ca.cert_der(), "mail.corp.example", t).unwrap();
    let outside = LeafRequest::new("www.example.org", upstream(&["www.example.org"], t)).unwrap();
    let err = ca.mint(&outside, t).unwrap_err();
    assert!(
        matches!(
            err,
            CertError::Refused {
                reason: crate::Refusal::OutsideNameConstraints,
                ..
            }
        ),
        "{err}"
    );
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn import_intermediate_sends_it_and_chains_to_the_corporate_root() {
    let pki = corporate_pki(InterSpec::default());
    let src = tempfile::tempdir().unwrap();
    let source = CaImport {
        cert: write(src.path(), "inter.pem", &pki.inter_pem),
        key: write(src.path(), "inter.key", &pki.inter_key_pem),
        // The root at the end of the chain is accepted and not sent.
        chain: Some(write(src.path(), "chain.pem", &pki.root_pem)),
    };
    let dir = tempfile::tempdir().unwrap();
    let files = CaFiles::in_dir(dir.path());
    let ca = Ca::import(&files, &source).unwrap();
    let mode = fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(ca.chain_der(), std::slice::from_ref(ca.cert_der()));
    let d = ca.describe().unwrap();
    assert!(!d.self_signed);
    assert!(d.issuer.contains("Example Corp Root CA"), "{}", d.issuer);
    assert_eq!(d.chain_len, 1);

    let t = now();
    let req = LeafRequest::new("chat.example.net", upstream(&["chat.example.net"], t)).unwrap();
    let leaf = ca.mint(&req, t).unwrap();
    assert_eq!(leaf.chain().len(), 2);
    assert_eq!(&leaf.chain()[1], ca.cert_der());
    webpki_verify(&leaf, &pki.root_der, "chat.example.net", t).unwrap();

    let loaded = Ca::load(&files).unwrap();
    assert_eq!(loaded.chain_der(), ca.chain_der());
    // Importing over an existing CA is refused.
    assert!(Ca::import(&files, &source).is_err());
}

#[test]
fn import_refuses_a_non_ca_certificate() {
    let pki = corporate_pki(InterSpec {
        is_ca: false,
        ..InterSpec::default()
    });
    let err = Ca::from_pem(&pki.inter_pem, &pki.inter_key_pem, None).unwrap_err();
    assert!(matches!(err, CertError::CaRejected { .. }), "{err}");
    assert!(err.to_string().contains("not a CA certificate"), "{err}");

    let pki = corporate_pki(InterSpec {
        key_cert_sign: false,
        ..InterSpec::default()
    });
    let err = Ca::from_pem(&pki.inter_pem, &pki.inter_key_pem, None).unwrap_err();
    assert!(err.to_string().contains("keyCertSign"), "{err}");
}

#[test]
fn import_refuses_an_expired_ca() {
    let pki = corporate_pki(InterSpec {
        not_after: Some(odt(now()) - time::Duration::days(1)),
        ..InterSpec::default()
    });
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = CaImport {
        cert: write(src.path(), "c.pem", &pki.inter_pem),
        key: write(src.path(), "k.pem", &pki.inter_key_pem),
        chain: None,
    };
    let err = Ca::import(&CaFiles::in_dir(dir.path()), &source).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn import_refuses_a_key_that_is_not_the_certificates() {
    let pki = corporate_pki(InterSpec::default());
    let other = corporate_pki(InterSpec::default());
    let err = Ca::from_pem(&pki.inter_pem, &other.inter_key_pem, None).unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch), "{err}");
    // Nothing is written when validation fails.
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = CaFiles::in_dir(&dir.path().join("ca"));
    let source = CaImport {
        cert: write(src.path(), "c.pem", &pki.inter_pem),
        key: write(src.path(), "k.pem", &other.inter_key_pem),
        chain: None,
    };
    assert!(matches!(
        Ca::import(&files, &source),
        Err(CertError::KeyMismatch)
    ));
    assert!(!files.key.exists() && !files.cert.exists());
}

#[test]
fn import_refuses_a_chain_that_does_not_link() {
    let pki = corporate_pki(InterSpec::default());
    // A CA that did not issue the intermediate.
    let stranger = test_ca();
    let err = Ca::from_pem(
        &pki.inter_pem,
        &pki.inter_key_pem,
        Some(stranger.cert_pem()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("is not the issuer"), "{err}");
    // A chain certificate that is not a CA.
    let leaf_pem = crate::ca::pem_of(&[upstream(&["x.example"], now())]);
    let err = Ca::from_pem(&pki.inter_pem, &pki.inter_key_pem, Some(&leaf_pem)).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
}

#[test]
fn self_signed_root_with_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = CaFiles::in_dir(dir.path());
    Ca::create(&files, &CaInit::default()).unwrap();
    let key_pem = fs::read_to_string(&files.key).unwrap();
    let cert_pem = fs::read_to_string(&files.cert).unwrap();
    let other = test_ca();
    let err = Ca::from_pem(&cert_pem, &key_pem, Some(other.cert_pem())).unwrap_err();
    assert!(err.to_string().contains("self-signed"), "{err}");
    Ca::from_pem(&cert_pem, &key_pem, None).unwrap();
}

#[test]
fn cert_file_with_appended_chain_is_read_as_ca_plus_chain() {
    let pki = corporate_pki(InterSpec::default());
    let bundle = format!("{}{}", pki.inter_pem, pki.root_pem);
    let ca = Ca::from_pem(&bundle, &pki.inter_key_pem, None).unwrap();
    assert_eq!(ca.chain_der().len(), 1);
    let first: CertificateDer<'_> = ca.chain_der()[0].clone();
    assert_eq!(&first, ca.cert_der());
}

#[test]
fn debug_output_never_shows_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let files = CaFiles::in_dir(dir.path());
    let ca = Ca::create(&files, &CaInit::default()).unwrap();
    let key_pem = fs::read_to_string(&files.key).unwrap();
    let key_b64_line = key_pem.lines().nth(1).unwrap();
    let t = now();
    let leaf = ca
        .mint(
            &LeafRequest::new("a.example", upstream(&["a.example"], t)).unwrap(),
            t,
        )
        .unwrap();
    for text in [
        format!("{ca:?}"),
        format!("{leaf:?}"),
        format!("{:?}", ca.describe()),
    ] {
        assert!(!text.contains(key_b64_line), "{text}");
        assert!(!text.to_ascii_uppercase().contains("PRIVATE"), "{text}");
    }
    let leaf_key = leaf.private_key();
    let leaf_key_hex = crate::describe::hex(leaf_key.secret_der(), "");
    assert!(!format!("{leaf:?}").contains(&leaf_key_hex[..32]));
}
