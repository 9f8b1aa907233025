//! The `gatehouse` command.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", cli::cause_chain(&e));
            ExitCode::FAILURE
        }
    }
}
