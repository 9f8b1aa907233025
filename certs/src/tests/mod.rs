//! Tests across the crate: CA lifecycle, minting, cache, export. Each
//! file makes its certificates at run time with `fixtures`.

mod ca_tests;
mod cache_tests;
mod export_tests;
mod fixtures;
mod mint_tests;
