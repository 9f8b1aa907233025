//! `ca show` and `ca export`: fingerprints, formats, the profile, no key.

use std::fs;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::Digest;

use super::fixtures::*;
use crate::{Ca, CaFiles, CaInit, ExportFormat};

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn describe_reports_fingerprints_validity_and_constraints() {
    let ca = Ca::generate(&CaInit {
        name: "Acme Interception".into(),
        permit_dns: vec!["acme.example".into(), "acme.test".into()],
        ..CaInit::default()
    })
    .unwrap();
    let d = ca.describe().unwrap();
    let der = ca.cert_der().as_ref();
    // An implementation other than the one the crate uses.
    assert_eq!(d.sha256_fingerprint, colon_hex(&sha2::Sha256::digest(der)));
    assert_eq!(d.sha1_fingerprint.len(), 20 * 3 - 1);
    assert!(d.subject.contains("CN=Acme Interception"), "{}", d.subject);
    assert_eq!(d.subject, d.issuer);
    assert_eq!(d.path_len, Some(0));
    assert_eq!(d.permitted, vec!["DNS:acme.example", "DNS:acme.test"]);
    assert!(d.excluded.is_empty());
    assert_eq!(d.serial.len(), 16 * 3 - 1);
    let life = d.not_after.duration_since(d.not_before).unwrap().as_secs();
    assert_eq!(life, 3650 * 86400 + 3600);
    let text = d.to_string();
    for needle in [
        "Subject:",
        "SHA-256:",
        "Not after:",
        "DNS:acme.example",
        "Path length:    0",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

#[test]
fn pem_and_der_exports_are_the_certificate_only() {
    let dir = tempfile::tempdir().unwrap();
    let files = CaFiles::in_dir(dir.path());
    let ca = Ca::create(&files, &CaInit::default()).unwrap();
    let key_pem = fs::read_to_string(&files.key).unwrap();
    let key_der = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();

    let pem = ca.export(ExportFormat::Pem).unwrap();
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(certs, vec![ca.cert_der().clone()]);
    let der = ca.export(ExportFormat::Der).unwrap();
    assert_eq!(der, ca.cert_der().to_vec());
    let profile = ca.export(ExportFormat::MobileConfig).unwrap();
    for out in [&pem, &der, &profile] {
        assert!(!contains(out, key_der.secret_der()));
        assert!(!contains(out, b"PRIVATE KEY"));
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn mobileconfig_is_a_root_certificate_profile() {
    let ca = test_ca();
    let bytes = ca.export(ExportFormat::MobileConfig).unwrap();
    assert!(bytes.starts_with(b"<?xml"));
    let value = plist::Value::from_reader_xml(&bytes[..]).unwrap();
    let root = value.as_dictionary().unwrap();
    let s =
        |d: &plist::Dictionary, k: &str| d.get(k).and_then(|v| v.as_string()).map(str::to_owned);
    assert_eq!(s(root, "PayloadType").as_deref(), Some("Configuration"));
    assert_eq!(
        root.get("PayloadVersion")
            .and_then(|v| v.as_signed_integer()),
        Some(1)
    );
    assert_eq!(
        s(root, "PayloadDisplayName").as_deref(),
        Some("Gatehouse Interception CA")
    );
    let content = root.get("PayloadContent").unwrap().as_array().unwrap();
    assert_eq!(content.len(), 1);
    let cert = content[0].as_dictionary().unwrap();
    assert_eq!(
        s(cert, "PayloadType").as_deref(),
        Some("com.apple.security.root")
    );
    assert_eq!(
        cert.get("PayloadContent").unwrap().as_data().unwrap(),
        ca.cert_der().as_ref()
    );
    let fp = hex::lower(&sha2::Sha256::digest(ca.cert_der().as_ref()));
    let id = s(root, "PayloadIdentifier").unwrap();
    assert_eq!(id, format!("com.gatehouse.ca.{}", &fp[..16]));
    assert_eq!(s(cert, "PayloadIdentifier").unwrap(), format!("{id}.cert"));

    // UUIDs: well-formed, distinct, stable for this certificate, and
    // different for another one.
    let uuids = |d: &plist::Dictionary, c: &plist::Dictionary| {
        (s(d, "PayloadUUID").unwrap(), s(c, "PayloadUUID").unwrap())
    };
    let (pu, cu) = uuids(root, cert);
    assert_ne!(pu, cu);
    for u in [&pu, &cu] {
        let parsed = uuid::Uuid::parse_str(u).unwrap();
        assert_eq!(u, &parsed.hyphenated().to_string().to_uppercase());
    }
    let again =
        plist::Value::from_reader_xml(&ca.export(ExportFormat::MobileConfig).unwrap()[..]).unwrap();
    let again_root = again.as_dictionary().unwrap();
    let again_cert = again_root
        .get("PayloadContent")
        .unwrap()
        .as_array()
        .unwrap()[0]
        .as_dictionary()
        .unwrap();
    assert_eq!(uuids(again_root, again_cert), (pu.clone(), cu));
    let other =
        plist::Value::from_reader_xml(&test_ca().export(ExportFormat::MobileConfig).unwrap()[..])
            .unwrap();
    assert_ne!(
        s(other.as_dictionary().unwrap(), "PayloadUUID").unwrap(),
        pu
    );
}

#[test]
fn export_format_names() {
    assert_eq!("pem".parse(), Ok(ExportFormat::Pem));
    assert_eq!("DER".parse(), Ok(ExportFormat::Der));
    assert_eq!("mobileconfig".parse(), Ok(ExportFormat::MobileConfig));
    assert_eq!("cer".parse(), Ok(ExportFormat::Der));
    assert_eq!("p12".parse(), Ok(ExportFormat::P12));
    assert!("jks".parse::<ExportFormat>().is_err());
    assert_eq!(ExportFormat::MobileConfig.to_string(), "mobileconfig");
    assert_eq!(ExportFormat::Der.extension(), "cer");
}

mod hex {
    pub fn lower(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
