//! Command-line front: `outpost send`, `outpost sink`, and (under Postfix's master, by
//! program name) the daemon, which arrives with the master.cf integration.

pub mod headers;
pub mod send;

use crate::sysexits::*;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn usage() -> String {
    "usage: outpost send [options] [recipient ...]\n       outpost sink [options] LISTEN\n       outpost --version\n\nRun `outpost send --help` or `outpost sink --help` for details.\n".to_string()
}

/// Entry point for the binary; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    let prog = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    if prog == "smtp" || prog == "lmtp" {
        return crate::postfix::daemon::main();
    }
    match args.get(1).map(String::as_str) {
        Some("send") => send::main(&args[2..]),
        Some("sink") => crate::sink::main(&args[2..]),
        Some("--version") | Some("-V") => {
            println!("outpost {VERSION}");
            EX_OK
        }
        Some("--help") | Some("-h") | Some("help") => {
            print!("{}", usage());
            EX_OK
        }
        _ => {
            eprint!("{}", usage());
            EX_USAGE
        }
    }
}
