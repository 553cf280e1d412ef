//! The `dexlab` command line: subcommands grouped by noun (`dexlab chain …`, `dexlab data …`).

mod cli;
mod ml;
mod report_input;
mod research;
mod rl;

use std::process::ExitCode;

/// Polars allocates and frees large buffers at a high rate; mimalloc keeps freed pages for reuse
/// where glibc's allocator hands them back to the kernel and faults them in again (the feature
/// pipeline's benchmark in BENCHMARKS.md uses the same allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
