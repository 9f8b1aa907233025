//! The independent evaluation (inspectors/eval/, POLICY.md there): the
//! shipped rules on a corpus written apart from them, frozen before tuning,
//! with a held-out part. `cargo test -p gatehouse-inspectors --test dlp_eval
//! -- --nocapture` prints the per-type tables.

#[path = "../eval/score.rs"]
mod score;

use gatehouse_inspectors::dlp::load_dir;

fn run(part: &str) -> score::Report {
    let dir = env!("CARGO_MANIFEST_DIR");
    let set = load_dir(format!("{dir}/../dlp-rules")).expect("shipped rules load");
    let records = score::load(&format!("{dir}/eval/{part}.jsonl"));
    assert!(records.len() >= 4000, "{part}: corpus too small");
    let report = score::score(&set, &records);
    println!("{}", report.table(part));
    report
}

fn check(report: &score::Report, part: &str, micro_p: f64, micro_r: f64, per_type: f64) {
    let (p, r) = report.micro();
    // Every type the policy names has labels in both parts.
    for kind in [
        "payment-card",
        "iban",
        "us-ssn",
        "us-bank-routing",
        "private-key-block",
        "phone-number",
    ] {
        assert!(
            report.per_type.get(kind).is_some_and(|t| t.labels >= 200),
            "{part}: too few {kind} labels"
        );
    }
    assert!(p >= micro_p, "{part}: micro precision {p:.4} < {micro_p}");
    assert!(r >= micro_r, "{part}: micro recall {r:.4} < {micro_r}");
    // Every labelled type, the low ones (phone, e-mail) included.
    for (kind, t) in &report.per_type {
        assert!(
            t.precision() >= per_type,
            "{part}: {kind} precision {:.4}",
            t.precision()
        );
        assert!(
            t.recall() >= per_type,
            "{part}: {kind} recall {:.4}",
            t.recall()
        );
    }
}

#[test]
fn dev_part_meets_targets() {
    let report = run("dev");
    for m in report.mistakes.iter().take(30) {
        println!("{m}");
    }
    check(&report, "dev", 0.99, 0.97, 0.95);
}

#[test]
fn heldout_part_meets_targets() {
    // Mistakes stay hidden: nobody tunes on the held-out part.
    let report = run("heldout");
    // The targets: micro precision >= 0.99 and recall >= 0.97 over
    // the high and critical types, and none of them below 0.95.
    check(&report, "heldout", 0.99, 0.97, 0.95);
}

#[test]
fn libphonenumber_example_numbers_are_found() {
    // Coverage of every region's fixed-line and mobile example number, in
    // E.164 (eval/external_phones.py). The validator's country table comes
    // from the same metadata, so this checks coverage, not independence.
    let dir = env!("CARGO_MANIFEST_DIR");
    let set = load_dir(format!("{dir}/../dlp-rules")).expect("shipped rules load");
    let records = score::load(&format!("{dir}/eval/external_phones.jsonl"));
    let report = score::score(&set, &records);
    println!("{}", report.table("external_phones"));
    let t = report.per_type["phone-number"];
    assert!(
        t.labels >= 400 && t.recall() >= 0.99,
        "recall {:.4}",
        t.recall()
    );
    assert!(t.precision() >= 0.99);
}

#[test]
fn faker_made_values_are_found_without_false_positives() {
    // Values and formats from Faker's providers in 23 locales
    // (eval/faker_corpus.py). The targets hold on both parts:
    // micro precision >= 0.99 and recall >= 0.97 over high and critical
    // types, every type >= 0.95. What is still missed (about 1 in 100
    // cards: Luhn-valid numbers outside every network's range next to
    // "charge … order" only; 2-3 in 100 phone numbers: Faker formats no
    // numbering plan allows, such as "+45 0102 4645" or "+67(7)…") is
    // listed by `cargo run --example dlp_eval` for the dev part.
    for part in ["faker", "faker_heldout"] {
        let report = run(part);
        let (p, r) = report.micro();
        assert!(p >= 0.99 && r >= 0.97, "{part}: micro {p:.4} / {r:.4}");
        for (ty, t) in &report.per_type {
            assert!(
                t.precision() >= 0.99,
                "{part}: {ty} precision {:.4}",
                t.precision()
            );
        }
        for (ty, min) in [
            ("iban", 0.99),
            ("us-ssn", 0.99),
            ("us-bank-routing", 0.99),
            ("email-address", 0.99),
            ("payment-card", 0.98),
            ("phone-number", 0.96),
        ] {
            let r = report.per_type[ty].recall();
            assert!(r >= min, "{part}: {ty} recall {r:.4} < {min}");
        }
    }
}
