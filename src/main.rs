//! The `outpost` binary: dispatch on the subcommand (or, under Postfix's master, on the
//! program name) and nothing else.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let code = outpost::cli::main(&args);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
