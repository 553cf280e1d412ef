//! The `dexlab` command line: subcommands grouped by noun (`dexlab chain …`, `dexlab data …`).

mod cli;
mod ml;
mod report_input;
mod research;
mod rl;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
