//! `outpost sink`: a scriptable SMTP/LMTP test server in the spirit of
//! Postfix's smtp-sink, used by integration tests, benchmarks and users
//! testing a configuration.  This module holds the configuration, command
//! line parsing, the `main` entry point and the library API (`spawn`).
//!
//! Submodules: `script` (reply/delay spec parser), `server` (listener and
//! accept loop), `session` (protocol engine), `record` (message files and
//! wire logs), `tls` (STARTTLS and implicit TLS).

mod auth;
mod record;
mod script;
mod server;
mod session;
#[cfg(test)]
mod tests;
mod tls;

pub use auth::AuthConfig;
pub use script::{Lines, Matcher, Phase, Reply, Script, Selector, parse_duration};
pub use tls::{SinkTls, TlsRecord};

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Exit status for command line errors.
pub const EX_USAGE: i32 = 64;
/// Exit status for operating system errors.
pub const EX_OSERR: i32 = 71;

/// Default EHLO/LHLO capability list.
pub const DEFAULT_CAPS: &str = "PIPELINING,SIZE 10240000,8BITMIME,DSN,ENHANCEDSTATUSCODES,SMTPUTF8";

const USAGE: &str = "\
usage: outpost sink [options] LISTEN
  LISTEN                HOST:PORT, [IPV6]:PORT, :PORT (127.0.0.1) or unix:PATH;
                        port 0 picks a free port.  The first stdout line is
                        \"listening on ADDR\".
  --lmtp                speak LMTP (LHLO; one end-of-data reply per recipient)
  --hostname NAME       greeting/EHLO name (default sink.test)
  --caps LIST           comma-separated EHLO keywords (default
                        PIPELINING,SIZE 10240000,8BITMIME,DSN,ENHANCEDSTATUSCODES,SMTPUTF8)
  --no-esmtp            reject EHLO with 502
  --dir DIR             record each accepted message as DIR/<seq>-<pid>.eml
  --raw-dir DIR         record each session's wire log as DIR/<conn>-<pid>.log
  --reply SPEC          scripted reply, repeatable: SELECTOR=REPLY
                        SELECTOR: PHASE | PHASE:ADDR (mail, rcpt, dot) | PHASE#N
                        PHASE: greeting ehlo helo lhlo mail rcpt data dot rset
                               quit noop vrfy starttls auth xforward
                        REPLY: \"CODE text\" (lines separated by \\n), or one of
                               disconnect hang garbage longline badcode bare-lf
  --delay SPEC          SELECTOR=DURATION (e.g. rcpt=500ms), repeatable
  --line-delay SPEC     SELECTOR=DURATION: pause before each line after the
                        first of a multi-line reply (a trickling server)
  --auth-user USER      accept SMTP AUTH for this user (offers AUTH)
  --auth-pass PASS      the password for --auth-user (default empty)
  --auth-mechs LIST     mechanisms to offer (default
                        PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256);
                        the verdict reply can be scripted with --reply auth=...
  --max-messages N      exit after N messages
  --once                exit after the first connection
  --quiet               no per-event log on stderr
  --max-line N          reject command lines longer than N with 500
  --timeout DURATION    idle timeout per read/write (default 300s; 0 = none)
  --tls-cert FILE       offer STARTTLS with this PEM certificate (chain)
  --tls-key FILE        its private key (default: the --tls-cert file)
  --tls-wrapper         implicit TLS: handshake before the greeting
  --tls-anon            anonymous ciphers only (TLS 1.2, no certificate sent)
  --tls-early LINE      after EHLO over TLS, send LINE too, unasked (an early
                        MAIL reply, as injected by a TLS renegotiation attack)
  --tls-inject LINE     send LINE right after the 220 to STARTTLS, in the same
                        packet, before the handshake (response injection test)
  -h, --help            show this help
";

/// Everything that configures a sink server.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Listen address in LISTEN syntax.
    pub listen: String,
    /// Speak LMTP instead of SMTP.
    pub lmtp: bool,
    /// Name used in the greeting and EHLO reply.
    pub hostname: String,
    /// EHLO keywords (each may carry parameters, e.g. "SIZE 1000").
    pub caps: Vec<String>,
    /// False: reject EHLO with 502 (`--no-esmtp`).
    pub esmtp: bool,
    /// Where to record accepted messages.
    pub dir: Option<PathBuf>,
    /// Where to record per-session wire logs.
    pub raw_dir: Option<PathBuf>,
    /// Scripted replies and delays.
    pub script: Script,
    /// Stop after this many messages.
    pub max_messages: Option<u64>,
    /// Stop after the first connection.
    pub once: bool,
    /// No per-event log on stderr.
    pub quiet: bool,
    /// Reject command lines longer than this (without line terminator).
    pub max_line: Option<usize>,
    /// Read/write timeout per I/O operation (zero: none).
    pub timeout: Duration,
    /// Verified SMTP AUTH (`--auth-user` etc.); None keeps the permissive AUTH of a
    /// plain `--caps AUTH ...` entry, which accepts anything.
    pub auth: Option<AuthConfig>,
    /// STARTTLS / implicit TLS (`--tls-*`).
    pub tls: Option<SinkTls>,
}

impl Default for SinkConfig {
    fn default() -> SinkConfig {
        SinkConfig {
            listen: "127.0.0.1:0".into(),
            lmtp: false,
            hostname: "sink.test".into(),
            caps: split_caps(DEFAULT_CAPS),
            esmtp: true,
            dir: None,
            raw_dir: None,
            script: Script::default(),
            max_messages: None,
            once: false,
            quiet: false,
            max_line: None,
            timeout: Duration::from_secs(300),
            auth: None,
            tls: None,
        }
    }
}

fn split_caps(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optflag("", "lmtp", "speak LMTP");
    o.optopt("", "hostname", "greeting/EHLO name", "NAME");
    o.optopt("", "caps", "EHLO keywords", "LIST");
    o.optflag("", "no-esmtp", "reject EHLO");
    o.optopt("", "dir", "message directory", "DIR");
    o.optopt("", "raw-dir", "wire log directory", "DIR");
    o.optmulti("", "reply", "scripted reply", "SPEC");
    o.optmulti("", "delay", "scripted delay", "SPEC");
    o.optmulti("", "line-delay", "pause between reply lines", "SPEC");
    o.optopt("", "auth-user", "AUTH user", "USER");
    o.optopt("", "auth-pass", "AUTH password", "PASS");
    o.optopt("", "auth-mechs", "AUTH mechanisms", "LIST");
    o.optflag(
        "",
        "auth-bad-server-signature",
        "send a wrong SCRAM server signature",
    );
    o.optopt("", "max-messages", "exit after N messages", "N");
    o.optflag("", "once", "exit after the first connection");
    o.optflag("", "quiet", "no event log");
    o.optopt("", "max-line", "maximal command line length", "N");
    o.optopt("", "timeout", "idle timeout", "DURATION");
    o.optopt("", "tls-cert", "PEM certificate", "FILE");
    o.optopt("", "tls-key", "PEM private key", "FILE");
    o.optflag("", "tls-wrapper", "implicit TLS");
    o.optflag("", "tls-anon", "anonymous ciphers only");
    o.optopt("", "tls-early", "unasked line after EHLO over TLS", "LINE");
    o.optopt(
        "",
        "tls-inject",
        "line injected after the 220 to STARTTLS",
        "LINE",
    );
    o.optflag("h", "help", "show help");
    o
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    m: &getopts::Matches,
    name: &str,
) -> Result<Option<T>, String> {
    match m.opt_str(name) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<T>() {
            Ok(n) if n > T::default() => Ok(Some(n)),
            _ => Err(format!("--{name} needs a positive number, not \"{v}\"")),
        },
    }
}

fn no_controls(what: &str, s: &str) -> Result<(), String> {
    if s.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(())
}

impl SinkConfig {
    /// Parses command line arguments (without the leading "outpost sink").
    /// `--help` yields `Err` with the usage text.
    pub fn from_args(args: &[String]) -> Result<SinkConfig, String> {
        SinkConfig::parse(args)?.ok_or_else(|| USAGE.to_string())
    }

    /// Like `from_args`, but `Ok(None)` for `--help`.
    fn parse(args: &[String]) -> Result<Option<SinkConfig>, String> {
        let m = options().parse(args).map_err(|e| e.to_string())?;
        if m.opt_present("help") {
            return Ok(None);
        }
        let listen = match m.free.as_slice() {
            [one] => one.clone(),
            [] => return Err("missing LISTEN address".into()),
            _ => return Err(format!("too many arguments: {}", m.free.join(" "))),
        };
        server::parse_listen(&listen)?;
        let mut cfg = SinkConfig {
            listen,
            lmtp: m.opt_present("lmtp"),
            esmtp: !m.opt_present("no-esmtp"),
            once: m.opt_present("once"),
            quiet: m.opt_present("quiet"),
            dir: m.opt_str("dir").map(PathBuf::from),
            raw_dir: m.opt_str("raw-dir").map(PathBuf::from),
            max_messages: positive(&m, "max-messages")?,
            max_line: positive(&m, "max-line")?,
            ..SinkConfig::default()
        };
        if let Some(h) = m.opt_str("hostname") {
            if h.is_empty() || h.contains(char::is_whitespace) {
                return Err(format!("bad --hostname \"{h}\""));
            }
            no_controls("--hostname", &h)?;
            cfg.hostname = h;
        }
        if let Some(c) = m.opt_str("caps") {
            no_controls("--caps", &c)?;
            cfg.caps = split_caps(&c);
        }
        if let Some(t) = m.opt_str("timeout") {
            cfg.timeout = parse_duration(&t).map_err(|e| format!("--timeout: {e}"))?;
        }
        if let Some(user) = m.opt_str("auth-user") {
            let pass = m.opt_str("auth-pass").unwrap_or_default();
            let mut a = AuthConfig::new(&user, &pass, m.opt_str("auth-mechs").as_deref())
                .map_err(|e| format!("--auth-mechs: {e}"))?;
            a.bad_server_signature = m.opt_present("auth-bad-server-signature");
            cfg.auth = Some(a);
        } else if m.opt_present("auth-pass") || m.opt_present("auth-mechs") {
            return Err("--auth-pass and --auth-mechs need --auth-user".into());
        }
        match m.opt_str("tls-cert") {
            Some(c) => {
                let inject = m.opt_str("tls-inject");
                if let Some(i) = &inject {
                    no_controls("--tls-inject", i)?;
                }
                if let Some(e) = m.opt_str("tls-early") {
                    no_controls("--tls-early", &e)?;
                }
                cfg.tls = Some(SinkTls {
                    cert: PathBuf::from(c),
                    key: m.opt_str("tls-key").map(PathBuf::from),
                    wrapper: m.opt_present("tls-wrapper"),
                    anon: m.opt_present("tls-anon"),
                    early: m.opt_str("tls-early"),
                    inject,
                });
            }
            None => {
                for o in [
                    "tls-key",
                    "tls-wrapper",
                    "tls-inject",
                    "tls-anon",
                    "tls-early",
                ] {
                    if m.opt_present(o) {
                        return Err(format!("--{o} needs --tls-cert"));
                    }
                }
            }
        }
        for spec in m.opt_strs("reply") {
            cfg.script
                .add_reply(&spec)
                .map_err(|e| format!("--reply: {e}"))?;
        }
        for spec in m.opt_strs("delay") {
            cfg.script
                .add_delay(&spec)
                .map_err(|e| format!("--delay: {e}"))?;
        }
        for spec in m.opt_strs("line-delay") {
            cfg.script
                .add_line_delay(&spec)
                .map_err(|e| format!("--line-delay: {e}"))?;
        }
        Ok(Some(cfg))
    }
}

/// A running sink server; stopped by `stop()` or when dropped.
pub struct SinkHandle {
    addr: String,
    shared: Arc<server::Shared>,
    thread: Option<JoinHandle<()>>,
}

impl SinkHandle {
    /// The actual listen address in LISTEN syntax (`127.0.0.1:PORT`,
    /// `[::1]:PORT` or `unix:PATH`).
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Number of completed DATA transfers so far.
    pub fn messages(&self) -> u64 {
        self.shared.messages.load(Ordering::SeqCst)
    }

    /// The TLS handshakes so far, in order.
    pub fn tls_records(&self) -> Vec<TlsRecord> {
        match &self.shared.tls {
            Some(t) => t.records.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            None => Vec::new(),
        }
    }

    /// Stops accepting, closes all open sessions and waits for the server.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Waits until the server ends by itself (`once` / `max_messages`).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds the listener and runs the server on a background thread.
pub fn spawn(cfg: SinkConfig) -> io::Result<SinkHandle> {
    let spec = server::parse_listen(&cfg.listen)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    for d in [&cfg.dir, &cfg.raw_dir].into_iter().flatten() {
        std::fs::create_dir_all(d)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", d.display())))?;
    }
    let (listener, addr) = server::bind(&spec)?;
    let (waker_tx, waker_rx) = UnixStream::pair()?;
    waker_tx.set_nonblocking(true)?;
    waker_rx.set_nonblocking(true)?;
    let tls = match &cfg.tls {
        Some(t) => {
            Some(tls::Server::new(t).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?)
        }
        None => None,
    };
    let mut shared = server::Shared::new(cfg, waker_tx);
    shared.tls = tls;
    let shared = Arc::new(shared);
    let sh = Arc::clone(&shared);
    let thread = thread::Builder::new()
        .name("outpost-sink".into())
        .spawn(move || server::run(listener, &sh, waker_rx))?;
    Ok(SinkHandle {
        addr,
        shared,
        thread: Some(thread),
    })
}

/// `outpost sink ARGS...`; returns the process exit status.
pub fn main(args: &[String]) -> i32 {
    let cfg = match SinkConfig::parse(args) {
        Ok(Some(c)) => c,
        Ok(None) => {
            print!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("outpost sink: {e}");
            eprintln!("usage: outpost sink [options] LISTEN (--help for details)");
            return EX_USAGE;
        }
    };
    let listen = cfg.listen.clone();
    let handle = match spawn(cfg) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("outpost sink: {listen}: {e}");
            return EX_OSERR;
        }
    };
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "listening on {}", handle.addr());
    let _ = out.flush();
    drop(out);
    handle.wait();
    0
}
