//! The `dexlab` command line: subcommands grouped by noun (`dexlab chain …`, `dexlab data …`).

mod backup;
mod cli;
mod config_ref;
mod demo;
mod deploy;
mod live;
mod ml;
mod research;
mod rl;
mod serve;
mod users;
mod worker;

use std::process::ExitCode;

/// Polars allocates and frees large buffers at a high rate; mimalloc keeps freed pages for reuse
/// where glibc's allocator hands them back to the kernel and faults them in again (the feature
/// pipeline's benchmark in BENCHMARKS.md uses the same allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    quiet_on_closed_output();
    if research::in_job() {
        end_with_the_runner();
    }
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Launched by the dashboard's job runner (`DEXLAB_JOB=1`), which holds our stdin open while it
/// lives: when stdin closes (the server stopped, however it died), end as on SIGTERM, so that
/// an evolve run marks its experiment interrupted and no orphan keeps writing to the store; the
/// runner that takes the job over resumes it. Exit outright if the signal did not end us.
fn end_with_the_runner() {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM);
        std::thread::sleep(std::time::Duration::from_secs(10));
        std::process::exit(143);
    });
}

/// A listing piped into `head` stops quietly when `head` exits, as `ls` and `grep` do. Rust ignores
/// SIGPIPE, so a print to the closed pipe fails, and `println!` panics on that failure; restoring
/// the signal's default action would need unsafe code (forbidden here), so the panic hook turns
/// that one panic into a quiet exit. Every other panic keeps the default report.
fn quiet_on_closed_output() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        // std's message: "failed printing to stdout: Broken pipe (os error 32)".
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
