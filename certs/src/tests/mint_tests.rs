//! Leaf properties: own key, random serial, CA:false, serverAuth, names
//! only from the upstream certificate, lifetime within the upstream's.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use rcgen::PublicKeyData;
use x509_parser::extensions::ParsedExtension;

use super::fixtures::*;
use crate::names::dns_matches;
use crate::{CertError, LeafPolicy, LeafRequest, Refusal};

fn refusal(err: CertError) -> Refusal {
    match err {
        CertError::Refused { reason, .. } => reason,
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn leaf_key_is_fresh_and_never_the_ca_key() {
    let ca = test_ca();
    let t = now();
    let up = upstream(&["a.example"], t);
    let one = ca
        .mint(&LeafRequest::new("a.example", up.clone()).unwrap(), t)
        .unwrap();
    let two = ca
        .mint(&LeafRequest::new("a.example", up).unwrap(), t)
        .unwrap();
    let ca_spki = parse(ca.cert_der()).public_key().raw.to_vec();
    let spki = |l: &crate::Leaf| parse(l.end_entity()).public_key().raw.to_vec();
    assert_ne!(spki(&one), ca_spki);
    assert_ne!(spki(&one), spki(&two));
    assert_ne!(
        one.private_key().secret_der(),
        two.private_key().secret_der()
    );
    assert_ne!(
        one.private_key().secret_der(),
        ca.issuer().key().serialized_der()
    );
    assert_eq!(
        ca.issuer().key().der_bytes(),
        parse(ca.cert_der())
            .public_key()
            .subject_public_key
            .data
            .as_ref()
    );
}

#[test]
fn leaf_material_loads_into_rustls_and_keys_match() {
    let ca = test_ca();
    let t = now();
    let leaf = ca
        .mint(
            &LeafRequest::new("a.example", upstream(&["a.example"], t)).unwrap(),
            t,
        )
        .unwrap();
    let (chain, key) = leaf.into_parts();
    let provider = rustls::crypto::ring::default_provider();
    let ck = rustls::sign::CertifiedKey::from_der(chain, key, &provider).unwrap();
    ck.keys_match().unwrap();
}

#[test]
fn serials_are_unique_positive_and_long_over_10000_mints() {
    let ca = test_ca();
    let t = now();
    let req = LeafRequest::new("a.example", upstream(&["a.example"], t)).unwrap();
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let leaf = ca.mint(&req, t).unwrap();
        let serial = parse(leaf.end_entity()).raw_serial().to_vec();
        assert_eq!(serial.len(), 16, "serial must carry >= 64 random bits");
        assert_eq!(serial[0] & 0x80, 0, "serial must be positive");
        assert_eq!(serial, leaf.serial());
        assert!(seen.insert(serial), "duplicate serial");
    }
}

#[test]
fn leaf_is_an_end_entity_for_server_auth_only() {
    let ca = test_ca();
    let t = now();
    let leaf = ca
        .mint(
            &LeafRequest::new("a.example", upstream(&["a.example"], t)).unwrap(),
            t,
        )
        .unwrap();
    let cert = parse(leaf.end_entity());
    let bc = cert
        .basic_constraints()
        .unwrap()
        .expect("basicConstraints present");
    assert!(bc.critical);
    assert!(!bc.value.ca);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth);
    assert!(!eku.any && !eku.client_auth && !eku.code_signing && !eku.email_protection);
    assert!(!eku.time_stamping && !eku.ocsp_signing && eku.other.is_empty());
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical);
    assert_eq!(ku.value.flags, 1, "digitalSignature only");
    // AKI names the CA's subject key id.
    let ski = |c: &x509_parser::certificate::X509Certificate<'_>| {
        c.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
    };
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    assert_eq!(aki, ski(&parse(ca.cert_der())));
    assert!(leaf.chain().len() == 1, "a root we made is not sent");
    webpki_verify(&leaf, ca.cert_der(), "a.example", t).unwrap();
}

/// Every leaf name must be covered by some upstream SAN.
fn assert_names_subset(leaf: &crate::Leaf, upstream_der: &[u8]) {
    let up = leaf_sans(upstream_der);
    for name in leaf_sans(leaf.end_entity()) {
        assert!(
            up.iter().any(|u| u == &name || dns_matches(u, &name)),
            "leaf name {name} not in upstream {up:?}"
        );
    }
}

#[test]
fn leaf_names_are_only_names_the_upstream_covers() {
    let ca = test_ca();
    let t = now();
    let cases: &[(&[&str], &str, Option<&str>)] = &[
        (&["a.example", "b.example"], "a.example", Some("a.example")),
        (&["a.example", "b.example"], "B.Example.", Some("b.example")),
        (
            &["*.example.com"],
            "chat.example.com",
            Some("chat.example.com"),
        ),
        (
            &["*.example.com", "example.com"],
            "example.com",
            Some("example.com"),
        ),
        (&["*.example.com"], "example.com", None),
        (&["*.example.com"], "a.b.example.com", None),
        (&["*.example.com"], "example.org", None),
        (&["f*.example.com"], "foo.example.com", None),
        (&["example.com"], "www.example.com", None),
        (
            &["192.0.2.10", "a.example"],
            "192.0.2.10",
            Some("192.0.2.10"),
        ),
        (&["2001:db8::1"], "2001:db8::1", Some("2001:db8::1")),
        (&["a.example"], "192.0.2.10", None),
        (&["192.0.2.10"], "192.0.2.11", None),
        (&["192.0.2.10"], "a.example", None),
        (&[], "a.example", None),
    ];
    for (sans, host, want) in cases {
        let up = upstream(sans, t);
        let req = LeafRequest::new(host, up.clone()).unwrap();
        match (ca.mint(&req, t), want) {
            (Ok(leaf), Some(want)) => {
                assert_eq!(
                    leaf_sans(leaf.end_entity()),
                    vec![want.to_string()],
                    "{host}"
                );
                assert_names_subset(&leaf, &up);
                webpki_verify(&leaf, ca.cert_der(), want, t)
                    .unwrap_or_else(|e| panic!("{host}: {e:?}"));
            }
            (Err(e), None) => assert_eq!(refusal(e), Refusal::NotCovered, "{host} {sans:?}"),
            (Ok(leaf), None) => panic!(
                "{host} minted for {sans:?}: {:?}",
                leaf_sans(leaf.end_entity())
            ),
            (Err(e), Some(_)) => panic!("{host} refused for {sans:?}: {e}"),
        }
    }
}

#[test]
fn upstream_ca_certificates_and_garbage_are_refused() {
    let ca = test_ca();
    let t = now();
    let tn = odt(t);
    let up = upstream_with(
        &["a.example"],
        tn - time::Duration::days(1),
        tn + time::Duration::days(1),
        true,
    );
    let err = ca
        .mint(&LeafRequest::new("a.example", up).unwrap(), t)
        .unwrap_err();
    assert_eq!(refusal(err), Refusal::UpstreamIsCa);
    let junk = rustls_pki_types::CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    let err = ca
        .mint(&LeafRequest::new("a.example", junk).unwrap(), t)
        .unwrap_err();
    assert!(matches!(refusal(err), Refusal::UpstreamUnparsable(_)));
}

#[test]
fn upstream_eku_must_allow_server_auth() {
    use rcgen::ExtendedKeyUsagePurpose as Eku;
    let ca = test_ca();
    let t = now();
    let mint = |eku: &[Eku]| {
        let up = upstream_eku(&["a.example"], t, eku);
        ca.mint(&LeafRequest::new("a.example", up).unwrap(), t)
    };
    let err = mint(&[Eku::ClientAuth]).unwrap_err();
    assert_eq!(refusal(err), Refusal::UpstreamNotServerAuth);
    mint(&[Eku::ClientAuth, Eku::ServerAuth]).unwrap();
    mint(&[Eku::Any]).unwrap();
    // No EKU at all means any usage (RFC 5280 4.2.1.12).
    mint(&[]).unwrap();
}

#[test]
fn long_names_go_in_the_san_only() {
    let ca = test_ca();
    let t = now();
    let long = format!("{}.{}.example.com", "a".repeat(60), "b".repeat(20));
    let leaf = ca
        .mint(
            &LeafRequest::new(&long, upstream(&[long.as_str()], t)).unwrap(),
            t,
        )
        .unwrap();
    let cert = parse(leaf.end_entity());
    assert_eq!(cert.subject().iter_common_name().count(), 0);
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical, "SAN must be critical with an empty subject");
    webpki_verify(&leaf, ca.cert_der(), &long, t).unwrap();
    let short = ca
        .mint(
            &LeafRequest::new("a.example", upstream(&["a.example"], t)).unwrap(),
            t,
        )
        .unwrap();
    let cn: Vec<_> = parse(short.end_entity())
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(cn, vec!["a.example".to_string()]);
}

fn lifetime(leaf: &crate::Leaf) -> (SystemTime, SystemTime) {
    let v = parse(leaf.end_entity()).validity().clone();
    (
        crate::mint::system_time(v.not_before.timestamp()),
        crate::mint::system_time(v.not_after.timestamp()),
    )
}

#[test]
fn lifetime_is_within_the_upstreams_and_at_most_max_days() {
    let ca = test_ca();
    let t = now();
    let tn = odt(t);
    let hour = Duration::from_secs(3600);
    let day = 24 * hour;
    let mint = |nb: time::Duration, na: time::Duration| {
        let up = upstream_with(&["a.example"], tn + nb, tn + na, false);
        let leaf = ca.mint(&LeafRequest::new("a.example", up).unwrap(), t);
        leaf.map(|l| {
            let (b, a) = lifetime(&l);
            assert_eq!((b, a), (l.not_before(), l.not_after()));
            (b, a)
        })
    };
    // A long-lived upstream: backdated one hour, three days ahead.
    assert_eq!(
        mint(-time::Duration::days(30), time::Duration::days(60)).unwrap(),
        (t - hour, t + 3 * day)
    );
    // Upstream expiring in two hours: the leaf expires with it.
    assert_eq!(
        mint(-time::Duration::days(30), time::Duration::hours(2)).unwrap(),
        (t - hour, t + 2 * hour)
    );
    // Upstream issued ten minutes ago: the leaf starts no earlier.
    assert_eq!(
        mint(-time::Duration::minutes(10), time::Duration::days(60)).unwrap(),
        (t - Duration::from_secs(600), t + 3 * day)
    );
    // Expired or not yet valid upstreams get nothing.
    for (nb, na) in [
        (-time::Duration::days(30), -time::Duration::seconds(1)),
        (time::Duration::minutes(5), time::Duration::days(60)),
    ] {
        assert_eq!(refusal(mint(nb, na).unwrap_err()), Refusal::NoValidLifetime);
    }
}

#[test]
fn leaf_policy_caps_lifetime() {
    let mut ca = test_ca();
    ca.set_leaf_policy(LeafPolicy {
        max_lifetime: Duration::from_secs(6 * 3600),
        backdate: Duration::from_secs(300),
    });
    let t = now();
    let leaf = ca
        .mint(
            &LeafRequest::new("a.example", upstream(&["a.example"], t)).unwrap(),
            t,
        )
        .unwrap();
    assert_eq!(
        lifetime(&leaf),
        (
            t - Duration::from_secs(300),
            t + Duration::from_secs(6 * 3600)
        )
    );
    // The chain verifies now and fails after the leaf's notAfter.
    webpki_verify(&leaf, ca.cert_der(), "a.example", t).unwrap();
    assert!(webpki_verify(
        &leaf,
        ca.cert_der(),
        "a.example",
        t + Duration::from_secs(7 * 3600)
    )
    .is_err());
}

#[test]
fn leaf_never_outlives_an_imported_ca() {
    // An intermediate valid for one more hour caps every leaf.
    let pki = corporate_pki(InterSpec::default());
    let ca = crate::Ca::from_pem(&pki.inter_pem, &pki.inter_key_pem, None).unwrap();
    let ca_na = parse(ca.cert_der()).validity().not_after.timestamp();
    let t = crate::mint::system_time(ca_na) - Duration::from_secs(3600);
    let leaf = ca
        .mint(
            &LeafRequest::new("a.example", upstream(&["a.example"], t)).unwrap(),
            t,
        )
        .unwrap();
    assert_eq!(lifetime(&leaf).1, crate::mint::system_time(ca_na));
}

#[test]
fn wrong_name_fails_webpki_too() {
    // The leaf is for the SNI only: a sibling name covered upstream by the
    // same wildcard is not in the leaf.
    let ca = test_ca();
    let t = now();
    let leaf = ca
        .mint(
            &LeafRequest::new("a.example.com", upstream(&["*.example.com"], t)).unwrap(),
            t,
        )
        .unwrap();
    webpki_verify(&leaf, ca.cert_der(), "a.example.com", t).unwrap();
    assert!(webpki_verify(&leaf, ca.cert_der(), "b.example.com", t).is_err());
}

mod differential {
    //! Our name coverage against webpki's, the matcher clients use: a leaf
    //! is minted for a host exactly when webpki accepts the upstream
    //! certificate for that host.

    use proptest::prelude::*;

    use super::*;

    fn label() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "xn--c", "example", "com"])
    }

    fn presented() -> impl Strategy<Value = String> {
        (
            prop::bool::weighted(0.4),
            prop::collection::vec(label(), 1..4),
        )
            .prop_map(|(wild, labels)| {
                let name = labels.join(".");
                if wild {
                    format!("*.{name}")
                } else {
                    name
                }
            })
    }

    fn random_host() -> impl Strategy<Value = String> {
        prop::collection::vec(label(), 1..5).prop_map(|l| l.join("."))
    }

    /// SANs, and a host that is random or built on the first SAN's base
    /// with zero to two labels in front (near misses and matches alike).
    fn case() -> impl Strategy<Value = (Vec<String>, String)> {
        prop::collection::vec(presented(), 1..4).prop_flat_map(|sans| {
            let base = sans[0].trim_start_matches("*.").to_string();
            let near = prop::collection::vec(label(), 0..3).prop_map(move |front| {
                front
                    .into_iter()
                    .chain(std::iter::once(base.as_str()))
                    .collect::<Vec<_>>()
                    .join(".")
            });
            (Just(sans), prop_oneof![random_host(), near])
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn mint_agrees_with_webpki((sans, host) in case()) {
            let ca = test_ca();
            let t = now();
            let refs: Vec<&str> = sans.iter().map(String::as_str).collect();
            let up = upstream(&refs, t);
            let ee = webpki::EndEntityCert::try_from(&up).unwrap();
            let name = rustls_pki_types::ServerName::try_from(host.as_str()).unwrap();
            let webpki_ok = ee.verify_is_valid_for_subject_name(&name).is_ok();
            let minted = ca.mint(&LeafRequest::new(&host, up.clone()).unwrap(), t);
            prop_assert_eq!(minted.is_ok(), webpki_ok, "sans {:?} host {}", sans, host);
            if let Ok(leaf) = minted {
                prop_assert_eq!(leaf_sans(leaf.end_entity()), vec![host.clone()]);
            }
        }
    }
}

#[test]
fn own_page_leaf_names_exactly_the_host_and_lives_a_day_at_most() {
    let ca = test_ca();
    let t = now();
    for host in ["Blocked.Example.", "192.0.2.7"] {
        let leaf = ca.mint_own_page(host, t).unwrap();
        let cert = parse(leaf.end_entity());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 1, "{host}");
        let shown = format!("{:?}", san.value.general_names[0]);
        let expect = if host.starts_with('1') {
            "192.0.2.7"
        } else {
            "blocked.example"
        };
        assert!(
            shown.contains(expect) || shown.contains("[192, 0, 2, 7]"),
            "{shown}"
        );
        assert!(!cert.is_ca());
        let life = cert.validity().not_after.timestamp() - crate::mint::unix(t);
        assert!(life <= 24 * 3600, "{life}");
        assert_ne!(
            leaf.private_key().secret_der(),
            ca.issuer().key().serialized_der()
        );
    }
    assert!(ca.mint_own_page("*.example", t).is_err());
}
