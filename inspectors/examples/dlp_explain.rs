//! Print what the shipped rules find in a text: `cargo run --example dlp_explain -- TEXT`.
fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../dlp-rules");
    let set = gatehouse_inspectors::dlp::load_dir(dir).expect("rules load");
    let text = std::env::args().nth(1).unwrap_or_default();
    let r = set.explain(&text);
    for f in &r.findings {
        println!(
            "{} {}..{} score {:.2} {:?} {:?}",
            f.rule, f.start, f.end, f.score, f.excerpt, f.contributions
        );
    }
    for x in &r.rejected {
        println!("rejected {} {}..{}: {}", x.rule, x.start, x.end, x.reason);
    }
    for l in set.lint() {
        println!("{l}");
    }
}
