//! Placeholder until the identification benchmarks land.
fn main() {}
