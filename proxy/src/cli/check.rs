//! `gatehouse check`: config, CA and rules; every problem at once.

use std::path::Path;
use std::process::ExitCode;

use gatehouse::config;

/// Prints every problem; exit status 1 on any error.
pub fn main(path: Option<&Path>) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                println!("warning: {w}");
            }
            println!("ok: {}", loaded.source);
            ExitCode::SUCCESS
        }
        Err(problems) => {
            print!("{problems}");
            println!("{} problem(s)", problems.error_count());
            ExitCode::FAILURE
        }
    }
}
