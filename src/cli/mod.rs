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
        // Diagnostic, like `postmap -q`; not in the usage text.
        Some("table") => table_main(&args[2..]),
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

/// `outpost table [--ascii] [--no-fold] -q KEY|- MAPLIST`: look KEY up in a Postfix map
/// list as smtp(8) would and print `key<TAB>value` as `postmap -q` does; with `-` keys
/// come one per line from stdin. Exit 0 when something was found, 1 when not, 75 on a
/// table error.
fn table_main(args: &[String]) -> i32 {
    use std::io::BufRead;
    let mut opts = crate::table::MapsOptions::default();
    let mut key: Option<&str> = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ascii" => opts.utf8 = false,
            "--no-fold" => opts.fold = false,
            "-q" => key = it.next().map(String::as_str),
            other => rest.push(other),
        }
    }
    let (Some(key), false) = (key, rest.is_empty()) else {
        eprintln!("usage: outpost table [--ascii] [--no-fold] -q KEY|- MAPLIST");
        return EX_USAGE;
    };
    let maps = match crate::table::Maps::open("table", &rest.join(" "), &opts) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("outpost: fatal: {e}");
            return EX_CONFIG;
        }
    };
    for e in maps.open_errors() {
        eprintln!("outpost: error: {e}");
    }
    for w in maps.warnings() {
        eprintln!("outpost: warning: {w}");
    }
    let keys: Vec<String> = if key == "-" {
        std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .collect()
    } else {
        vec![key.to_string()]
    };
    let mut found = false;
    for k in keys {
        match maps.find(&k) {
            Ok(Some(v)) => {
                println!("{k}\t{v}");
                found = true;
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("outpost: fatal: {e}");
                return EX_TEMPFAIL;
            }
        }
    }
    if found { EX_OK } else { 1 }
}
