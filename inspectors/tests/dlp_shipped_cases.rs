//! Table-driven cases for the shipped packs beyond each rule's examples:
//! phone numbers of many countries and what is not one, SSNs with and
//! without separators, AWS secret keys in the places they show up, e-mail
//! addresses and URL userinfo, published test values of every type.

use gatehouse_inspectors::dlp::{load_dir, RuleSet};
use std::sync::OnceLock;

fn shipped() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| {
        load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../dlp-rules")).expect("shipped rules")
    })
}

fn fires(rule: &str, text: &str) -> bool {
    shipped()
        .scan_text(text)
        .findings
        .iter()
        .any(|f| &*f.rule == rule)
}

fn check(rule: &str, yes: &[&str], no: &[&str]) {
    for t in yes {
        assert!(fires(rule, t), "{rule} should fire on {t:?}");
    }
    for t in no {
        assert!(!fires(rule, t), "{rule} should not fire on {t:?}");
    }
}

#[test]
fn phone_numbers_of_twenty_countries_and_what_is_not_one() {
    check(
        "phone-number",
        &[
            "call me at (415) 555-2671",     // US
            "mobile +1 604 555 0199",        // CA
            "ring me on 07700 900461",       // UK
            "Tel.: 030 1234 5678",           // DE
            "mon portable : 06 12 34 56 78", // FR
            "llámame al 612 345 678",        // ES
            "chiamami al 347 123 4567",      // IT
            "bel me: 06-12345678",           // NL
            "tel +32 470 12 34 56",          // BE
            "Telefon 079 123 45 67",         // CH
            "Handy 0664 1234567",            // AT
            "telefone 912 345 678",          // PT
            "meu celular: (11) 91234-5678",  // BR
            "whatsapp +52 55 1234 5678",     // MX
            "電話番号は090-1234-5678です",   // JP
            "call +91 98765 43210",          // IN
            "mobile 0412 345 678",           // AU
            "ring 070-123 45 67",            // SE
            "tel. +48 512 345 678",          // PL
            "phone: 087 123 4567",           // IE
            "연락처 010-1234-5678",          // KR
            "+65 9123 4567",                 // SG
            "tel 082 123 4567",              // ZA
            "+45 20 12 34 56",               // DK
            "+47 412 34 567",                // NO
        ],
        &[
            "epoch 1733529600",
            "created_at=1765094400 updated",
            "ts=1765101234567 took 1827 ms",
            "upgraded to 10.0.22631.4460",
            "kernel 6.8.0-49-generic",
            "order 4155550134 shipped",
            "order #114-8823310-4471902 arrived",
            "invoice no. 0412345678",
            "card expires 09/28, cvv 417",
            "between 07.12.2026 and 2026-12-09 16:32:26",
            "meeting id 845 2931 0457 passcode 118833",
            "call me about card 4526 0181 5908 3012",
            "isbn 978-0-13-468599-1",
            "10.20.4.17:5432",
        ],
    );
}

#[test]
fn ssns_with_and_without_separators() {
    check(
        "us-ssn",
        &[
            "my SSN is 536-22-1234",
            "ssn 536 22 1234",
            "SSN: 536221234",
            "social security no. 536221234",
        ],
        &[
            "ref 536221234",
            "claim 536221234",
            "zip 94103-1234",
            "SSN 123-45-6789 (the sample)",
            "ITIN 912-70-1234",
        ],
    );
}

#[test]
fn aws_secret_keys_where_they_show_up() {
    let s = "0kisEzZ/nkw7aKQwfrkPuPHcpM7G18czgVw0cwG+";
    let yes = [
        format!("[default]\naws_access_key_id = AKIAP8IX4EA4Q9OM4894\naws_secret_access_key = {s}"),
        format!("AWS_SECRET_ACCESS_KEY=\"{s}\""),
        format!("{{\"AccessKeyId\": \"AKIAP8IX4EA4Q9OM4894\", \"SecretAccessKey\": \"{s}\"}}"),
        format!("Access key ID,Secret access key\nAKIAP8IX4EA4Q9OM4894,{s}"),
        format!("const secretAccessKey = '{s}';"),
        format!("key id AKIAP8IX4EA4Q9OM4894 secret {s}"),
        format!("the AWS secret access key is {s}"),
    ];
    let yes: Vec<&str> = yes.iter().map(String::as_str).collect();
    check(
        "aws-secret-access-key",
        &yes,
        &[
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws lambda fixed in 3f2b8c1e9a4d4e7bb1c27d8e9f0a1b2c3d4e5f60",
            "AWS_SECRET_ACCESS_KEY=${{ secrets.AWS_SECRET_ACCESS_KEY }}",
        ],
    );
}

#[test]
fn email_addresses_but_not_url_userinfo() {
    check(
        "email-address",
        &[
            "mail olivia.walker@brightpath.io",
            "From: sato@sakura-denki.co.jp",
            "escreve para joao_silva7@uol.com.br",
        ],
        &[
            "git clone https://ghp_MQSkS3u9I5KKgTPnO1KrsheE2OEfwZeA5jbs@github.com/acme/infra.git",
            "https://ito:x-oauth-basic@brightpath.io/path",
            "git@gitlab.com:acme/web.git",
            "use logo@2x.png",
            "jane.doe@example.com",
            "deployer@acme-prod.iam.gserviceaccount.com",
        ],
    );
    // The token in the userinfo is still a GitHub token.
    assert!(fires(
        "github-token",
        "git clone https://ghp_MQSkS3u9I5KKgTPnO1KrsheE2OEfwZeA5jbs@github.com/acme/infra.git"
    ));
}

#[test]
fn routing_numbers_need_banking_words() {
    check(
        "us-bank-routing",
        &[
            "routing number 021000021",
            "{\"routing_number\":\"021000021\"}",
            "ABAルーティング番号 021000021",
        ],
        &["reference 021000021", "routing 021000022"],
    );
}

#[test]
fn published_test_values_are_never_findings() {
    for (rule, text) in [
        ("payment-card", "card 4111 1111 1111 1111"),
        ("payment-card", "card 5555 5555 5555 4444"),
        ("payment-card", "amex 3782 822463 10005"),
        ("payment-card", "discover 6011 1111 1111 1117"),
        ("payment-card", "jcb 3530 1113 3330 0000"),
        ("payment-card", "diners 3056 930902 5904"),
        ("payment-card", "unionpay 6200 0000 0000 0005"),
        ("payment-card", "maestro 6771 7980 2100 0008"),
        ("iban", "IBAN DE89 3704 0044 0532 0130 00"),
        ("iban", "IBAN GB29 NWBK 6016 1331 9268 19"),
        ("aws-access-key-id", "AKIAIOSFODNN7EXAMPLE"),
        ("aws-secret-access-key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("jwt", "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"),
        ("us-ssn", "SSN 078-05-1120"),
    ] {
        assert!(!fires(rule, text), "{rule} fired on {text:?}");
    }
}

#[test]
fn every_card_of_a_list_is_found_however_it_is_separated() {
    let cards = ["4556526018159081", "4556301661318602", "4556913909960308"];
    for sep in ["\n", " ", ", ", "; ", "\r\n", "\t"] {
        let text = cards.join(sep);
        let found: Vec<String> = shipped()
            .scan_text(&text)
            .findings
            .iter()
            .filter(|f| &*f.rule == "payment-card")
            .map(|f| text[f.start..f.end].to_string())
            .collect();
        assert_eq!(found, cards, "separated by {sep:?}");
    }
    // Grouped digits in a run stay one IBAN-like run, not cards.
    assert!(!fires("payment-card", "DE89 3704 0044 0532 0130 00"));
    // Inside a token, a Luhn-valid stretch between dashes is not a card.
    assert!(!fires(
        "payment-card",
        "xoxb-256172928762-4904805206116-mTwjA7MKfs9lMUo094ydgXY7"
    ));
}
