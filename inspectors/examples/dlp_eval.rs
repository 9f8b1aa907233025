//! The independent DLP evaluation, for humans: per-type tables of both
//! parts, and the dev part's mistakes.
//!
//! `cargo run --release -p gatehouse-inspectors --example dlp_eval [-- --mistakes N]`
//! Held-out mistakes are shown only with `DLP_EVAL_SHOW_HELDOUT=1` (do not
//! look at them while tuning; see inspectors/eval/POLICY.md).

#[path = "../eval/score.rs"]
mod score;

use gatehouse_inspectors::dlp::load_dir;

fn main() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let set = load_dir(format!("{dir}/../dlp-rules")).expect("shipped rules load");
    let args: Vec<String> = std::env::args().collect();
    let show = args
        .iter()
        .position(|a| a == "--mistakes")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(40usize);
    let heldout_mistakes = std::env::var_os("DLP_EVAL_SHOW_HELDOUT").is_some();
    for part in [
        "dev",
        "heldout",
        "external_phones",
        "faker",
        "faker_heldout",
    ] {
        let records = score::load(&format!("{dir}/eval/{part}.jsonl"));
        let report = score::score(&set, &records);
        println!("{}", report.table(part));
        if !part.ends_with("heldout") || heldout_mistakes {
            for m in report.mistakes.iter().take(show) {
                println!("{m}");
            }
            println!();
        }
    }
}
