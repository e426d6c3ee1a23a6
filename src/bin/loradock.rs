//! The `loradock` command line: `generate`, `logits`, `inspect`, `bench`.
//!
//! Errors exit with status 1 and one line naming the file and the problem.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // One line for any internal failure, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        eprintln!("loradock: internal error: {msg}");
    }));
    let cli = loradock::cli::Cli::parse();
    match std::panic::catch_unwind(|| loradock::cli::run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("loradock: error: {e}");
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(2),
    }
}
