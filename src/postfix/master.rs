//! The process side of Postfix's master(8) interface: what a delivery agent started from
//! master.cf must do to behave like a program built on Postfix's single-threaded server
//! skeleton (single_server).
//!
//! master starts the agent as root, with its working directory in queue_directory, with
//! argv `NAME -n SERVICE -t unix -u [-o name=value ...]` and with these descriptors:
//! 3 and 4 the flow-control pipe (left alone here), 5 the status channel shared by all
//! processes of the service, 6 (and up, with `-s N`) the listening sockets. The agent:
//!
//! - parses the generic options ([`DaemonArgs::parse`]);
//! - loads the configuration with the `-o` settings on top and `service_name` set to the
//!   `-n` name, and logs as `syslog_name/process_name` ([`log_tag`]);
//! - makes the start-up checks every Postfix daemon makes (accounts, syslog facility);
//! - takes the select lock `pid/TRANSPORT.SERVICE`, changes to queue_directory, runs the
//!   pre-jail hook, optionally chroots to queue_directory (`-c`), drops to mail_owner
//!   (`-u`), runs the post-jail hook;
//! - then accepts one connection at a time, telling master "taken" before and "available"
//!   after each, and serves it on a worker thread while the main thread keeps the watchdog;
//! - exits after max_use connections, after max_idle seconds without one, when master
//!   closes the status channel, or (with status 1) when the watchdog (daemon_timeout) trips.
//!
//! With `-S` the agent serves standard input/output as one connection and exits; no master
//! descriptors are needed then.
//!
//! Signals keep their default actions (master stops its children with SIGTERM), except
//! SIGPIPE and SIGXFSZ, which are ignored.

use crate::config::{Config, Mode};
use crate::log;
use nix::errno::Errno;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Read end of the flow-control pipe (left alone by delivery agents).
pub const MASTER_FLOW_READ: RawFd = 3;
/// Write end of the flow-control pipe.
pub const MASTER_FLOW_WRITE: RawFd = 4;
/// The status channel to master, shared by all processes of one service.
pub const MASTER_STATUS_FD: RawFd = 5;
/// The first listening socket; `-s N` means descriptors 6 .. 6+N-1.
pub const MASTER_LISTEN_FD: RawFd = 6;
/// Status value: this process is busy with a connection.
pub const MASTER_STAT_TAKEN: i32 = 0;
/// Status value: this process is idle and waiting for a connection.
pub const MASTER_STAT_AVAIL: i32 = 1;
/// The environment variable in which master passes its generation number (octal).
pub const MASTER_GEN_NAME: &str = "GENERATION";
/// The environment variable with master's syslog_name, used until main.cf is read.
pub const CONF_ENV_LOGTAG: &str = "MAIL_LOGTAG";
/// Environment: verbose logging from the start (as one `-v`).
pub const CONF_ENV_VERB: &str = "MAIL_VERBOSE";
/// Environment: run the debugger command (as `-D`).
pub const CONF_ENV_DEBUG: &str = "MAIL_DEBUG";
/// The size of one status message: `{int pid; unsigned gen; int avail;}`.
pub const MASTER_STATUS_SIZE: usize = 12;
/// The directory (relative to queue_directory) that holds the select lock files.
const PID_DIR: &str = "pid";
/// Postfix terminates a process after this many logged errors.
const ERROR_BOUND: u32 = 13;
/// The watchdog interval is split into this many steps (util/watchdog.c).
const WATCHDOG_STEPS: u32 = 3;

/// The generic daemon options, as master passes them (single_server.c getopt string
/// `cdDi:lm:n:o:r:s:St:uvVz`, parsed with glibc's `+`: stop at the first non-option).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonArgs {
    /// argv[0] as given.
    pub argv0: String,
    /// The last pathname component of argv[0]: "smtp" or "lmtp" (the `process_name`).
    pub process_name: String,
    /// SMTP or LMTP, from `process_name`.
    pub mode: Mode,
    /// `-n NAME`: the master.cf service name; defaults to `process_name`.
    pub service_name: String,
    /// `-t TYPE`: the master.cf service type ("unix", "inet", ...).
    pub transport: Option<String>,
    /// `-u`: drop privileges to mail_owner.
    pub unprivileged: bool,
    /// `-c`: chroot to queue_directory.
    pub chroot: bool,
    /// False with `-d`: then a terminal on standard input is tolerated.
    pub daemon_mode: bool,
    /// `-D` (or MAIL_DEBUG in the environment): run `debugger_command` at start-up.
    pub debugger: bool,
    /// `-v` count (plus one for MAIL_VERBOSE).
    pub verbose: u32,
    /// `-V` count: Postfix then also logs to standard error.
    pub stderr_log: u32,
    /// Parameter settings from `-o name=value`, `-i TIME` (max_idle) and `-m N` (max_use),
    /// as `name=value`, in command-line order (a later one wins).
    pub overrides: Vec<String>,
    /// `-S`: serve standard input/output as one connection, then exit.
    pub stdin_mode: bool,
    /// `-s N`: the number of listening sockets (default 1).
    pub socket_count: u32,
    /// `-l`: the only process of its service; no select lock.
    pub alone: bool,
    /// `-z`: the service has no process limit (only checked by services that need it).
    pub zero_limit: bool,
    /// `-r N`: retirement time in seconds (only used by services that ask for it).
    pub retire: Option<u32>,
    /// Arguments after the options.
    pub free: Vec<String>,
}

/// The last pathname component, as Postfix's sane_basename(): trailing slashes are
/// ignored, "" gives "." and all-slashes gives "/".
pub fn process_name(argv0: &str) -> String {
    if argv0.is_empty() {
        return ".".to_string();
    }
    let trimmed = argv0.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".to_string();
    }
    match trimmed.rfind('/') {
        Some(i) => trimmed[i + 1..].to_string(),
        None => trimmed.to_string(),
    }
}

/// The personality for a process name: "smtp" or "lmtp", anything else is refused
/// (smtp/smtp.c main()).
pub fn mode_for(process_name: &str) -> Result<Mode, String> {
    match process_name {
        "smtp" => Ok(Mode::Smtp),
        "lmtp" => Ok(Mode::Lmtp),
        other => Err(format!(
            "unexpected process name \"{other}\" - specify \"smtp\" or \"lmtp\""
        )),
    }
}

/// C atoi(): optional white space and sign, then digits up to the first non-digit.
fn atoi(text: &str) -> i64 {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg { -n } else { n }
}

impl DaemonArgs {
    /// Parses argv (argv[0] included). Errors are the text Postfix logs as fatal.
    pub fn parse(argv: &[String]) -> Result<DaemonArgs, String> {
        let argv0 = argv.first().cloned().unwrap_or_default();
        let pname = process_name(&argv0);
        let mode = mode_for(&pname)?;
        let mut opts = getopts::Options::new();
        opts.parsing_style(getopts::ParsingStyle::StopAtFirstFree);
        for flag in ["c", "d", "D", "l", "S", "u", "v", "V", "z"] {
            opts.optflagmulti(flag, "", "");
        }
        for opt in ["i", "m", "n", "o", "r", "s", "t"] {
            opts.optmulti(opt, "", "", "");
        }
        let m = opts.parse(argv.iter().skip(1)).map_err(|f| {
            use getopts::Fail;
            let name = match f {
                Fail::ArgumentMissing(n)
                | Fail::UnrecognizedOption(n)
                | Fail::OptionMissing(n)
                | Fail::OptionDuplicated(n)
                | Fail::UnexpectedArgument(n) => n,
            };
            // getopt(3) reports one option character; "--name" fails on the '-'.
            let c = match name.chars().count() {
                1 => name,
                _ => "-".to_string(),
            };
            format!("invalid option: {c}")
        })?;
        let last = |name: &str| m.opt_strs(name).pop();
        let mut settings: Vec<(usize, String)> = Vec::new();
        for (pos, v) in m.opt_strs_pos("o") {
            settings.push((pos, v));
        }
        for (pos, v) in m.opt_strs_pos("i") {
            settings.push((pos, format!("max_idle={v}")));
        }
        for (pos, v) in m.opt_strs_pos("m") {
            settings.push((pos, format!("max_use={v}")));
        }
        settings.sort_by_key(|(pos, _)| *pos);
        let mut retire = None;
        if let Some(r) = last("r") {
            let n = atoi(&r);
            if n <= 0 {
                return Err(format!("invalid retirement time: {r}"));
            }
            retire = Some(u32::try_from(n).unwrap_or(u32::MAX));
        }
        let mut socket_count = 1;
        if let Some(s) = last("s") {
            let n = atoi(&s);
            if n <= 0 {
                return Err(format!("invalid socket_count: {s}"));
            }
            socket_count = u32::try_from(n).unwrap_or(u32::MAX);
        }
        let count = |name: &str| u32::try_from(m.opt_count(name)).unwrap_or(u32::MAX);
        Ok(DaemonArgs {
            service_name: last("n").unwrap_or_else(|| pname.clone()),
            transport: last("t"),
            unprivileged: m.opt_present("u"),
            chroot: m.opt_present("c"),
            daemon_mode: !m.opt_present("d"),
            debugger: m.opt_present("D"),
            verbose: count("v"),
            stderr_log: count("V"),
            overrides: settings.into_iter().map(|(_, v)| v).collect(),
            stdin_mode: m.opt_present("S"),
            socket_count,
            alone: m.opt_present("l"),
            zero_limit: m.opt_present("z"),
            retire,
            free: m.free.clone(),
            argv0,
            process_name: pname,
            mode,
        })
    }

    /// Applies MAIL_VERBOSE (one more `-v`) and MAIL_DEBUG (`-D`) from the environment.
    pub fn apply_env(&mut self) {
        if std::env::var_os(CONF_ENV_VERB).is_some() {
            self.verbose = self.verbose.saturating_add(1);
        }
        if std::env::var_os(CONF_ENV_DEBUG).is_some() {
            self.debugger = true;
        }
    }

    /// The settings to load the configuration with: the command-line settings in order,
    /// then `service_name` (Postfix sets it after the options, so `-o` cannot change it).
    pub fn config_overrides(&self) -> Vec<String> {
        let mut v = self.overrides.clone();
        v.push(format!("service_name={}", self.service_name));
        v
    }
}

/// The server limits single_server works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// max_use: connections served before exiting (0 = no limit).
    pub max_use: u64,
    /// max_idle: exit after this long without a connection (0 = never).
    pub max_idle: Duration,
    /// daemon_timeout: the watchdog limit for one event loop round (one request).
    pub daemon_timeout: Duration,
    /// ipc_timeout: read/write time limit on the accepted connection.
    pub ipc_timeout: Duration,
}

impl Limits {
    pub fn from_config(cfg: &Config) -> Limits {
        Limits {
            max_use: u64::try_from(cfg.int("max_use")).unwrap_or(0),
            max_idle: cfg.time("max_idle"),
            daemon_timeout: cfg.time("daemon_timeout"),
            ipc_timeout: cfg.time("ipc_timeout"),
        }
    }
}

/// The log tag before main.cf is read: MAIL_LOGTAG (master's syslog_name) or "postfix",
/// then "/" and the process name (global/mail_task.c).
pub fn early_log_tag(process_name: &str) -> String {
    let tag = std::env::var(CONF_ENV_LOGTAG).unwrap_or_else(|_| "postfix".to_string());
    format!("{tag}/{process_name}")
}

/// The log tag once the configuration is loaded: `syslog_name/process_name`. The service
/// name only appears through syslog_name, as with master.cf's
/// `-o syslog_name=postfix/$service_name` (giving "postfix/relay/smtp").
pub fn log_tag(cfg: &Config, args: &DaemonArgs) -> String {
    format!("{}/{}", cfg.get("syslog_name"), args.process_name)
}

/// The 12-byte status message master reads from descriptor 5: pid, generation and
/// availability as native-endian C int / unsigned / int (master/master_proto.h).
pub fn status_bytes(pid: i32, generation: u32, avail: i32) -> [u8; MASTER_STATUS_SIZE] {
    let mut b = [0u8; MASTER_STATUS_SIZE];
    b[0..4].copy_from_slice(&pid.to_ne_bytes());
    b[4..8].copy_from_slice(&generation.to_ne_bytes());
    b[8..12].copy_from_slice(&avail.to_ne_bytes());
    b
}

/// Decodes a status message (for tests and tools).
pub fn parse_status(b: &[u8; MASTER_STATUS_SIZE]) -> (i32, u32, i32) {
    let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
    (
        i32::from_ne_bytes(word(0)),
        u32::from_ne_bytes(word(4)),
        i32::from_ne_bytes(word(8)),
    )
}

/// The generation number from the GENERATION value: all digits, read as octal the way
/// strtoul(…, 8) does (stopping at an 8 or 9), truncated to unsigned int.
pub fn parse_generation(text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad generation: {text}"));
    }
    let mut n: u64 = 0;
    for b in text.bytes().take_while(|b| (b'0'..=b'7').contains(b)) {
        match n
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
        {
            Some(v) => n = v,
            None => {
                n = u64::MAX;
                break;
            }
        }
    }
    Ok(n as u32)
}

/// Loads the configuration for these arguments: main.cf from MAIL_CONFIG, the command-line
/// settings and service_name on top.
pub fn load_config(args: &DaemonArgs) -> Result<Config, String> {
    Config::load(
        None,
        &args.config_overrides(),
        args.mode,
        &args.process_name,
    )
    .map_err(|e| e.to_string())
}

/// What the agent plugs into the server loop. `serve` runs on a worker thread, one
/// thread per connection; the other methods run on the main thread.
pub trait Service: Send {
    /// (Re)initialises logging under `tag`: first with no configuration (tag from
    /// MAIL_LOGTAG), then once the configuration is loaded. The default logs to syslog
    /// with syslog_facility.
    fn init_logging(&mut self, tag: &str, cfg: Option<&Config>) {
        let fac = cfg
            .and_then(|c| log::facility(&c.get("syslog_facility")))
            .unwrap_or(libc::LOG_MAIL);
        log::init(log::Target::Syslog(fac), tag);
    }
    /// Runs in queue_directory with full privileges, before chroot and setuid: open what
    /// the jail would hide (the postlog socket, tables). An error is fatal.
    fn pre_jail(&mut self, _cfg: &Config) -> Result<(), String> {
        Ok(())
    }
    /// Runs after chroot and setuid, before the first connection. An error is fatal.
    fn post_jail(&mut self, _cfg: &Config) -> Result<(), String> {
        Ok(())
    }
    /// Runs before each accept(); return false to exit quietly (e.g. a table changed).
    fn pre_accept(&mut self, _cfg: &Config) -> bool {
        true
    }
    /// Serves one connection (a delivery request from qmgr). Runs on a worker thread.
    fn serve(&mut self, cfg: &Config, stream: UnixStream);
    /// Runs on a normal exit (not after a fatal error).
    fn on_exit(&mut self) {}
}

/// A [`Service`] made of one closure that serves a connection; the other hooks keep
/// their defaults.
pub struct FnService<F>(pub F);

impl<F> Service for FnService<F>
where
    F: FnMut(&Config, UnixStream) + Send,
{
    fn serve(&mut self, cfg: &Config, stream: UnixStream) {
        (self.0)(cfg, stream)
    }
}

fn fatal(text: &str) -> i32 {
    log::fatal(text);
    1
}

/// The whole program for a master-started agent: argv from the process, then [`run`].
pub fn main<S: Service>(
    load: impl FnOnce(&DaemonArgs) -> Result<Config, String>,
    mut service: S,
) -> i32 {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match DaemonArgs::parse(&argv) {
        Ok(mut args) => {
            args.apply_env();
            run(args, load, service)
        }
        Err(why) => {
            let pname = process_name(argv.first().map_or("", String::as_str));
            service.init_logging(&early_log_tag(&pname), None);
            // Logging may not reach anyone this early: say it on stderr too.
            let _ = writeln!(std::io::stderr(), "{pname}: fatal: {why}");
            fatal(&why)
        }
    }
}

/// Runs the server skeleton; returns the exit status (0 on a normal exit, 1 after a
/// fatal error). The watchdog exits the process itself with status 1.
pub fn run<S: Service>(
    args: DaemonArgs,
    load: impl FnOnce(&DaemonArgs) -> Result<Config, String>,
    mut service: S,
) -> i32 {
    ignore_signals();
    service.init_logging(&early_log_tag(&args.process_name), None);
    let verbose = args.verbose > 0;
    log::set_verbose(args.verbose);
    if verbose {
        log::info("daemon started");
    }
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(why) => return fatal(&why),
    };
    if let Err(why) = startup_checks(&cfg) {
        return fatal(&why);
    }
    service.init_logging(&log_tag(&cfg, &args), Some(&cfg));
    if args.daemon_mode
        && !args.stdin_mode
        && nix::unistd::isatty(std::io::stdin()).unwrap_or(false)
    {
        let _ = writeln!(
            std::io::stderr(),
            "{}: fatal: do not run this command by hand",
            args.process_name
        );
        return fatal("do not run this command by hand");
    }
    if !args.stdin_mode {
        match args.transport.as_deref() {
            None => return fatal("no transport type specified"),
            Some(t) if t.eq_ignore_ascii_case("unix") || t.eq_ignore_ascii_case("inet") => {}
            // "pass" hands over descriptors with attributes; delivery agents never use it.
            Some(t) => return fatal(&format!("unsupported transport type: {t}")),
        }
    }
    let mut generation = 0;
    if let Ok(text) = std::env::var(MASTER_GEN_NAME) {
        match parse_generation(&text) {
            Ok(g) => generation = g,
            Err(why) => return fatal(&why),
        }
        if verbose {
            log::info(&format!("process generation: {text} ({generation:o})"));
        }
    }
    if args.debugger
        && let Err(why) = run_debugger(&cfg)
    {
        return fatal(&why);
    }
    let mut lock = None;
    if !args.stdin_mode && !args.alone {
        let path = format!(
            "{PID_DIR}/{}.{}",
            args.transport.as_deref().unwrap_or(""),
            args.service_name
        );
        match open_lock(&path) {
            Ok(f) => lock = Some(f),
            Err(why) => return fatal(&format!("open lock file {path}: {why}")),
        }
    }
    let queue_dir = cfg.get("queue_directory");
    if let Err(e) = std::env::set_current_dir(&queue_dir) {
        return fatal(&format!("chdir(\"{queue_dir}\"): {}", log::strerror(&e)));
    }
    if let Err(why) = service.pre_jail(&cfg) {
        return fatal(&why);
    }
    load_timezone();
    let root = args.chroot.then_some(queue_dir.as_str());
    let owner = args.unprivileged.then(|| cfg.get("mail_owner"));
    if let Err(why) = chroot_uid(root, owner.as_deref()) {
        return fatal(&why);
    }
    if args.verbose > 1 {
        log::info(&format!(
            "chroot {} user {}",
            root.unwrap_or("(none)"),
            owner.as_deref().unwrap_or("(none)")
        ));
    }
    if let Err(why) = service.post_jail(&cfg) {
        return fatal(&why);
    }
    if args.stdin_mode {
        return match serve_stdio(&mut service, &cfg) {
            Ok(()) => {
                service.on_exit();
                0
            }
            Err(why) => fatal(&why),
        };
    }
    let server = Server {
        limits: Limits::from_config(&cfg),
        cfg: &cfg,
        listen: (0..args.socket_count)
            .map(|i| MASTER_LISTEN_FD.saturating_add(i32::try_from(i).unwrap_or(i32::MAX)))
            .collect(),
        pid: i32::try_from(std::process::id()).unwrap_or(0),
        generation,
        verbose,
        lock,
        errors: 0,
    };
    server.run(&mut service)
}

/// The start-up checks of mail_params_init(): a known syslog facility, and sane
/// mail_owner, default_privs and setgid_group accounts.
pub fn startup_checks(cfg: &Config) -> Result<(), String> {
    let main_cf = format!("{}/main.cf", cfg.get("config_directory"));
    let facility = cfg.get("syslog_facility");
    if log::facility(&facility).is_none() {
        return Err(format!(
            "file {main_cf}: parameter syslog_facility: unrecognized value: {facility}"
        ));
    }
    check_accounts(cfg, &main_cf)
}

fn user_ids(main_cf: &str, param: &str, name: &str) -> Result<(u32, u32), String> {
    let pw = match nix::unistd::User::from_name(name) {
        Ok(Some(pw)) => pw,
        _ => {
            return Err(format!(
                "file {main_cf}: parameter {param}: unknown user name value: {name}"
            ));
        }
    };
    let (uid, gid) = (pw.uid.as_raw(), pw.gid.as_raw());
    if uid == 0 {
        return Err(format!(
            "file {main_cf}: parameter {param}: user {name} has privileged user ID"
        ));
    }
    if gid == 0 {
        return Err(format!(
            "file {main_cf}: parameter {param}: user {name} has privileged group ID"
        ));
    }
    Ok((uid, gid))
}

fn check_accounts(cfg: &Config, main_cf: &str) -> Result<(), String> {
    let privs = cfg.get("default_privs");
    let owner = cfg.get("mail_owner");
    let sgid = cfg.get("setgid_group");
    let (default_uid, default_gid) = user_ids(main_cf, "default_privs", &privs)?;
    let (owner_uid, owner_gid) = user_ids(main_cf, "mail_owner", &owner)?;
    if let Ok(Some(pw)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(owner_uid))
        && pw.name != owner
    {
        return Err(format!(
            "file {main_cf}: parameter mail_owner: user {owner} has same user ID as {}",
            pw.name
        ));
    }
    let sgid_gid = match nix::unistd::Group::from_name(&sgid) {
        Ok(Some(g)) => g.gid.as_raw(),
        _ => {
            return Err(format!(
                "file {main_cf}: parameter setgid_group: unknown group name: {sgid}"
            ));
        }
    };
    if sgid_gid == 0 {
        return Err(format!(
            "file {main_cf}: parameter setgid_group: group {sgid} has privileged group ID"
        ));
    }
    if let Ok(Some(g)) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(sgid_gid))
        && g.name != sgid
    {
        return Err(format!(
            "file {main_cf}: parameter setgid_group: group {sgid} has same group ID as {}",
            g.name
        ));
    }
    if privs == owner {
        return Err(format!(
            "file {main_cf}: parameters default_privs and mail_owner specify the same user {privs}"
        ));
    }
    if default_uid == owner_uid {
        return Err(format!(
            "file {main_cf}: parameters default_privs and mail_owner: users {privs} and {owner} have the same user ID: {owner_uid}"
        ));
    }
    if default_gid == owner_gid {
        return Err(format!(
            "file {main_cf}: parameters default_privs and mail_owner: users {privs} and {owner} have the same group ID: {owner_gid}"
        ));
    }
    if default_gid == sgid_gid {
        return Err(format!(
            "file {main_cf}: parameters default_privs and setgid_group: user {privs} and group {sgid} have the same group ID: {sgid_gid}"
        ));
    }
    if owner_gid == sgid_gid {
        return Err(format!(
            "file {main_cf}: parameters mail_owner and setgid_group: user {owner} and group {sgid} have the same group ID: {sgid_gid}"
        ));
    }
    Ok(())
}

fn ignore_signals() {
    // SAFETY: setting the disposition of SIGPIPE/SIGXFSZ to SIG_IGN installs no handler
    // code; it only makes write/ftruncate report errors instead of killing the process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Reads the time zone data while /etc/localtime is still reachable (before chroot).
fn load_timezone() {
    unsafe extern "C" {
        fn tzset();
    }
    // SAFETY: tzset() takes no arguments; it runs before any thread that could call
    // localtime concurrently is started by this module.
    unsafe { tzset() };
}

/// `-D`: run debugger_command (expanded), as Postfix's debug_process() does.
fn run_debugger(cfg: &Config) -> Result<(), String> {
    let raw = cfg.raw("debugger_command").unwrap_or("").to_string();
    let command = cfg.expand(&raw).unwrap_or(raw);
    if command.is_empty() {
        return Err("no debugger_command variable set up".to_string());
    }
    log::info(&format!("running: {command}"));
    let _ = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&command)
        .status();
    Ok(())
}

/// Opens (or creates, mode 0600) the select lock file the way safe_open() does: no
/// symbolic links, no hard links.
fn open_lock(path: &str) -> Result<File, String> {
    let existing = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    let file = match existing {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err("file is a symbolic link".to_string());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot create file exclusively: {}", log::strerror(&e)))?,
        Err(e) => return Err(format!("cannot open file: {}", log::strerror(&e))),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("file status changed unexpectedly: {}", log::strerror(&e)))?;
    if meta.nlink() > 1 {
        return Err(format!("file has {} hard links", meta.nlink()));
    }
    if meta.is_dir() {
        return Err("file is a directory".to_string());
    }
    Ok(file)
}

/// flock() with Postfix's retry on EINTR.
fn flock(file: &File, op: libc::c_int) -> Result<(), Errno> {
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        match Errno::last() {
            Errno::EINTR => std::thread::sleep(Duration::from_secs(1)),
            e => return Err(e),
        }
    }
}

/// chroot_uid(): look up the user and set the group IDs, enter the jail, then give up
/// the user ID; finally make sure no root privilege is left.
pub fn chroot_uid(root: Option<&str>, user: Option<&str>) -> Result<(), String> {
    use nix::unistd;
    let mut uid = None;
    if let Some(name) = user {
        let pw = match unistd::User::from_name(name) {
            Ok(Some(pw)) => pw,
            _ => return Err(format!("unknown user: {name}")),
        };
        unistd::setgid(pw.gid).map_err(|e| format!("setgid({}): {}", pw.gid.as_raw(), e.desc()))?;
        let cname = CString::new(name).map_err(|_| format!("unknown user: {name}"))?;
        unistd::initgroups(&cname, pw.gid).map_err(|e| format!("initgroups: {}", e.desc()))?;
        uid = Some(pw.uid);
    }
    if let Some(dir) = root {
        unistd::chroot(dir).map_err(|e| format!("chroot({dir}): {}", e.desc()))?;
        unistd::chdir("/").map_err(|e| format!("chdir(/): {}", e.desc()))?;
    }
    if let Some(uid) = uid {
        unistd::setuid(uid).map_err(|e| format!("setuid({}): {}", uid.as_raw(), e.desc()))?;
        if unistd::getuid().is_root()
            || unistd::geteuid().is_root()
            || unistd::getgid().as_raw() == 0
            || unistd::getegid().as_raw() == 0
        {
            return Err("privileges were not dropped: still running as root".to_string());
        }
    }
    Ok(())
}

/// Runs `service.serve` on a new thread and waits for it; a panic there is an error.
fn on_worker<S: Service>(service: &mut S, cfg: &Config, stream: UnixStream) -> Result<(), String> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("delivery".to_string())
            .spawn_scoped(scope, move || service.serve(cfg, stream))
            .map_err(|e| format!("cannot start delivery thread: {}", log::strerror(&e)))?;
        handle.join().map_err(|payload| {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".to_string());
            format!("delivery thread panicked: {text}")
        })
    })
}

/// `-S`: the connection is standard input (requests) and standard output (replies),
/// bridged to a socket pair so the service sees one bidirectional stream.
fn serve_stdio<S: Service>(service: &mut S, cfg: &Config) -> Result<(), String> {
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| format!("socketpair: {}", log::strerror(&e)))?;
    let mut inbound = ours
        .try_clone()
        .map_err(|e| format!("dup: {}", log::strerror(&e)))?;
    // The input pump may block on standard input forever; it dies with the process.
    std::thread::Builder::new()
        .name("stdin".to_string())
        .spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut inbound);
            let _ = inbound.shutdown(std::net::Shutdown::Write);
        })
        .map_err(|e| format!("cannot start thread: {}", log::strerror(&e)))?;
    let mut outbound = ours;
    let output = std::thread::Builder::new()
        .name("stdout".to_string())
        .spawn(move || {
            let mut out = std::io::stdout().lock();
            let mut buf = [0u8; 8192];
            loop {
                match outbound.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = out.flush();
        })
        .map_err(|e| format!("cannot start thread: {}", log::strerror(&e)))?;
    on_worker(service, cfg, theirs)?;
    let _ = output.join();
    Ok(())
}

/// The watchdog: a thread that ends the process when the main loop does not restart it
/// within 3 × (daemon_timeout / 3) seconds.
struct Watchdog {
    deadline: Arc<(Mutex<Option<Instant>>, Condvar)>,
    step: Duration,
}

impl Watchdog {
    fn create(timeout: Duration) -> Result<Watchdog, String> {
        let secs = timeout.as_secs();
        let step = secs / u64::from(WATCHDOG_STEPS);
        if step == 0 {
            return Err(format!("watchdog_create: timeout {secs} is too small"));
        }
        let deadline: Arc<(Mutex<Option<Instant>>, Condvar)> =
            Arc::new((Mutex::new(None), Condvar::new()));
        let shared = Arc::clone(&deadline);
        std::thread::Builder::new()
            .name("watchdog".to_string())
            .spawn(move || watchdog_thread(&shared))
            .map_err(|e| {
                format!(
                    "watchdog_create: cannot start thread: {}",
                    log::strerror(&e)
                )
            })?;
        Ok(Watchdog {
            deadline,
            step: Duration::from_secs(step),
        })
    }

    fn set(&self, when: Option<Instant>) {
        let (lock, cv) = &*self.deadline;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = when;
        cv.notify_all();
    }

    fn start(&self) {
        // A deadline beyond what Instant can hold is no deadline at all.
        let limit = self.step.saturating_mul(WATCHDOG_STEPS);
        self.set(Instant::now().checked_add(limit));
    }

    fn stop(&self) {
        self.set(None);
    }
}

fn watchdog_thread(shared: &(Mutex<Option<Instant>>, Condvar)) {
    let (lock, cv) = shared;
    let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        match *guard {
            None => guard = cv.wait(guard).unwrap_or_else(|e| e.into_inner()),
            Some(when) => {
                let now = Instant::now();
                if now >= when {
                    drop(guard);
                    watchdog_expired();
                }
                guard = cv
                    .wait_timeout(guard, when - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
    }
}

fn watchdog_expired() -> ! {
    // As killme_after(5): should logging or exit hang, SIGALRM's default action ends
    // the process.
    // SAFETY: restoring the default disposition and arming alarm(2) install no code.
    unsafe {
        libc::signal(libc::SIGALRM, libc::SIG_DFL);
        libc::alarm(5);
    }
    log::fatal("watchdog timeout");
    std::process::exit(1)
}

/// Writes one status message to master.
fn master_notify(pid: i32, generation: u32, avail: i32) -> Result<(), Errno> {
    let buf = status_bytes(pid, generation, avail);
    // SAFETY: writes from a live buffer of exactly buf.len() bytes.
    let n = unsafe { libc::write(MASTER_STATUS_FD, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(Errno::last())
    } else if usize::try_from(n) == Ok(buf.len()) {
        Ok(())
    } else {
        Err(Errno::EIO)
    }
}

fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

fn set_cloexec(fd: RawFd) {
    // SAFETY: F_SETFD on a descriptor number; failure (not open) is harmless.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: F_GETFL/F_SETFL on an open descriptor.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

enum Exit {
    /// single_server_exit(): run the exit hook, status 0.
    Normal,
    /// A fatal error (already logged), status 1.
    Fatal,
}

struct Server<'c> {
    limits: Limits,
    cfg: &'c Config,
    listen: Vec<RawFd>,
    pid: i32,
    generation: u32,
    verbose: bool,
    lock: Option<File>,
    errors: u32,
}

impl Server<'_> {
    fn run<S: Service>(mut self, service: &mut S) -> i32 {
        match self.event_loop(service) {
            Exit::Normal => {
                service.on_exit();
                0
            }
            Exit::Fatal => 1,
        }
    }

    fn fatal(&self, text: &str) -> Exit {
        log::fatal(text);
        Exit::Fatal
    }

    fn event_loop<S: Service>(&mut self, service: &mut S) -> Exit {
        for &fd in std::iter::once(&MASTER_STATUS_FD).chain(&self.listen) {
            if !fd_is_open(fd) {
                return self.fatal(&format!(
                    "descriptor {fd} is not open: start this program from master(8), or use -S"
                ));
            }
        }
        for &fd in &self.listen {
            set_cloexec(fd);
            // The listening socket is shared with other processes of the service: accept
            // must not block when one of them took the connection first.
            set_nonblocking(fd);
        }
        for fd in [MASTER_STATUS_FD, MASTER_FLOW_READ, MASTER_FLOW_WRITE] {
            set_cloexec(fd);
        }
        let watchdog = match Watchdog::create(self.limits.daemon_timeout) {
            Ok(w) => w,
            Err(why) => return self.fatal(&why),
        };
        let idle = self.limits.max_idle;
        let idle_deadline = |now: Instant| {
            if idle.is_zero() {
                None
            } else {
                now.checked_add(idle)
            }
        };
        let mut idle_at = idle_deadline(Instant::now());
        let mut use_count: u64 = 0;
        let mut fds: Vec<libc::pollfd> = std::iter::once(MASTER_STATUS_FD)
            .chain(self.listen.iter().copied())
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        while self.limits.max_use == 0 || use_count < self.limits.max_use {
            if let Some(lock) = &self.lock {
                // Only one process of the service waits for a connection at a time.
                watchdog.stop();
                if let Err(e) = flock(lock, libc::LOCK_EX) {
                    return self.fatal(&format!("select lock: {}", e.desc()));
                }
            }
            // Restarted every round; waits are cut to one watchdog step, so only a
            // request that runs too long trips it.
            watchdog.start();
            let mut wait = watchdog.step;
            if let Some(at) = idle_at {
                wait = wait.min(at.saturating_duration_since(Instant::now()));
            }
            for p in fds.iter_mut() {
                p.revents = 0;
            }
            match poll(&mut fds, wait) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return self.fatal(&format!("event_loop: poll: {}", e.desc())),
            }
            // Timers before descriptors, as in Postfix's event loop.
            if idle_at.is_some_and(|at| Instant::now() >= at) {
                if self.verbose {
                    log::info("idle timeout -- exiting");
                }
                return Exit::Normal;
            }
            if fds.first().is_some_and(|p| p.revents != 0) {
                if self.verbose {
                    log::info("master disconnect -- exiting");
                }
                return Exit::Normal;
            }
            let ready: Vec<RawFd> = fds
                .iter()
                .skip(1)
                .filter(|p| p.revents != 0)
                .map(|p| p.fd)
                .collect();
            for fd in ready {
                if !service.pre_accept(self.cfg) {
                    return Exit::Normal;
                }
                let accepted = accept(fd);
                if let Some(lock) = &self.lock
                    && let Err(e) = flock(lock, libc::LOCK_UN)
                {
                    return self.fatal(&format!("select unlock: {}", e.desc()));
                }
                match accepted {
                    Ok(conn) => {
                        if let Some(exit) = self.serve_connection(service, conn) {
                            return exit;
                        }
                        use_count = use_count.saturating_add(1);
                        idle_at = idle_deadline(Instant::now());
                        break;
                    }
                    Err(Errno::EAGAIN) => {}
                    Err(e) => {
                        log::error(&format!("accept connection: {}", e.desc()));
                        self.errors += 1;
                        if self.errors >= ERROR_BOUND {
                            return self.fatal("too many errors - program terminated");
                        }
                    }
                }
            }
        }
        Exit::Normal
    }

    /// Reports TAKEN, serves on a worker thread, reports AVAIL. Returns how to exit,
    /// if the process must.
    fn serve_connection<S: Service>(&self, service: &mut S, conn: UnixStream) -> Option<Exit> {
        if self.verbose {
            log::info("connection established");
        }
        let ipc = self.limits.ipc_timeout;
        if !ipc.is_zero() {
            let _ = conn.set_read_timeout(Some(ipc));
            let _ = conn.set_write_timeout(Some(ipc));
        }
        let notify = |avail: i32| {
            let r = master_notify(self.pid, self.generation, avail);
            if self.verbose {
                match &r {
                    Ok(()) => log::info(&format!("master_notify: status {avail}")),
                    Err(e) => log::info(&format!("master_notify: status {avail}: {}", e.desc())),
                }
            }
            r
        };
        let _ = notify(MASTER_STAT_TAKEN);
        if let Err(why) = on_worker(service, self.cfg, conn) {
            return Some(self.fatal(&why));
        }
        if notify(MASTER_STAT_AVAIL).is_err() {
            if self.verbose {
                log::info("master disconnect -- exiting");
            }
            return Some(Exit::Normal);
        }
        if self.verbose {
            log::info("connection closed");
        }
        None
    }
}

fn poll(fds: &mut [libc::pollfd], wait: Duration) -> Result<usize, Errno> {
    let ms = wait.as_nanos().div_ceil(1_000_000);
    let ms = libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX);
    let n_fds = libc::nfds_t::try_from(fds.len()).unwrap_or(0);
    // SAFETY: the pointer and length describe a live, exclusively borrowed slice.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), n_fds, ms) };
    usize::try_from(n).map_err(|_| Errno::last())
}

/// accept() with close-on-exec; the new connection is blocking (accept4 without
/// SOCK_NONBLOCK does not inherit the listener's O_NONBLOCK on Linux). For "inet"
/// services the descriptor is a TCP socket; plain reads and writes work the same.
fn accept(listen: RawFd) -> Result<UnixStream, Errno> {
    loop {
        // SAFETY: null address arguments are allowed; the returned descriptor is new.
        let fd = unsafe {
            libc::accept4(
                listen,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
            return Ok(unsafe { UnixStream::from_raw_fd(fd) });
        }
        match Errno::last() {
            Errno::EINTR => continue,
            Errno::EWOULDBLOCK => return Err(Errno::EAGAIN),
            e => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::net::UnixListener;
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn parse(words: &[&str]) -> Result<DaemonArgs, String> {
        DaemonArgs::parse(&argv(words))
    }

    #[test]
    fn parses_plain_smtp_service() {
        let a = parse(&["smtp", "-n", "smtp", "-t", "unix", "-u"]).unwrap();
        assert_eq!(a.process_name, "smtp");
        assert_eq!(a.mode, Mode::Smtp);
        assert_eq!(a.service_name, "smtp");
        assert_eq!(a.transport.as_deref(), Some("unix"));
        assert!(a.unprivileged && !a.chroot && a.daemon_mode && !a.stdin_mode);
        assert_eq!(a.socket_count, 1);
        assert!(a.overrides.is_empty());
        assert_eq!(a.config_overrides(), vec!["service_name=smtp".to_string()]);
    }

    #[test]
    fn parses_relay_with_overrides_in_order() {
        let a = parse(&[
            "smtp",
            "-n",
            "relay",
            "-t",
            "unix",
            "-u",
            "-o",
            "smtp_fallback_relay=",
            "-o",
            "smtp_helo_timeout=5s",
        ])
        .unwrap();
        assert_eq!(a.service_name, "relay");
        assert_eq!(
            a.overrides,
            vec!["smtp_fallback_relay=", "smtp_helo_timeout=5s"]
        );
        // -m/-i are settings too, kept in command-line order with -o.
        let b = parse(&[
            "smtp",
            "-o",
            "max_use=5",
            "-m",
            "3",
            "-i5",
            "-o",
            "max_idle=9",
        ])
        .unwrap();
        assert_eq!(
            b.overrides,
            vec!["max_use=5", "max_use=3", "max_idle=5", "max_idle=9"]
        );
    }

    #[test]
    fn parses_lmtp_with_chroot_and_path() {
        let a = parse(&["outpost/lmtp", "-n", "lmtp", "-t", "unix", "-u", "-c"]).unwrap();
        assert_eq!(a.process_name, "lmtp");
        assert_eq!(a.mode, Mode::Lmtp);
        assert!(a.chroot && a.unprivileged);
        let b = parse(&[
            "/usr/lib/postfix/sbin/smtp",
            "-dDlSvvVz",
            "-s",
            "2",
            "-r",
            "60",
            "rest",
            "-v",
        ])
        .unwrap();
        assert_eq!(b.mode, Mode::Smtp);
        assert!(!b.daemon_mode && b.debugger && b.alone && b.stdin_mode && b.zero_limit);
        assert_eq!((b.verbose, b.stderr_log, b.socket_count), (2, 1, 2));
        assert_eq!(b.retire, Some(60));
        // Option parsing stops at the first non-option, as with glibc's "+".
        assert_eq!(b.free, vec!["rest", "-v"]);
        assert_eq!(b.service_name, "smtp");
    }

    #[test]
    fn rejects_bad_options_like_postfix() {
        assert_eq!(parse(&["smtp", "-x"]).unwrap_err(), "invalid option: x");
        assert_eq!(parse(&["smtp", "-n"]).unwrap_err(), "invalid option: n");
        assert_eq!(parse(&["smtp", "--foo"]).unwrap_err(), "invalid option: -");
        assert_eq!(
            parse(&["smtp", "-s", "0"]).unwrap_err(),
            "invalid socket_count: 0"
        );
        assert_eq!(parse(&["smtp", "-s", "3x"]).unwrap().socket_count, 3);
        assert_eq!(
            parse(&["smtp", "-r", "x"]).unwrap_err(),
            "invalid retirement time: x"
        );
        assert_eq!(
            parse(&["outpost/relay", "-n", "relay"]).unwrap_err(),
            "unexpected process name \"relay\" - specify \"smtp\" or \"lmtp\""
        );
        assert!(parse(&[]).is_err());
        assert!(parse(&["smtp", "-"]).is_ok());
    }

    #[test]
    fn process_names() {
        assert_eq!(process_name("outpost/smtp"), "smtp");
        assert_eq!(process_name("/a/b/lmtp/"), "lmtp");
        assert_eq!(process_name(""), ".");
        assert_eq!(process_name("//"), "/");
        assert_eq!(process_name("smtp"), "smtp");
    }

    #[test]
    fn status_message_layout() {
        let b = status_bytes(0x0102_0304, 0o17, MASTER_STAT_AVAIL);
        let mut want = Vec::new();
        want.extend_from_slice(&0x0102_0304i32.to_ne_bytes());
        want.extend_from_slice(&15u32.to_ne_bytes());
        want.extend_from_slice(&1i32.to_ne_bytes());
        assert_eq!(b.to_vec(), want);
        assert_eq!(parse_status(&b), (0x0102_0304, 15, 1));
        assert_eq!(
            parse_status(&status_bytes(-1, u32::MAX, 0)),
            (-1, u32::MAX, 0)
        );
    }

    #[test]
    fn generation_is_octal() {
        assert_eq!(parse_generation("17"), Ok(15));
        assert_eq!(parse_generation("0"), Ok(0));
        assert_eq!(parse_generation("18"), Ok(1));
        assert_eq!(parse_generation("37777777777"), Ok(u32::MAX));
        assert_eq!(parse_generation("99999999999999999999999999"), Ok(0));
        assert_eq!(parse_generation("777777777777777777777777"), Ok(u32::MAX));
        assert_eq!(parse_generation(""), Err("bad generation: ".to_string()));
        assert_eq!(
            parse_generation("1a"),
            Err("bad generation: 1a".to_string())
        );
    }

    #[test]
    fn log_tag_follows_syslog_name() {
        let a = parse(&[
            "smtp",
            "-n",
            "relay",
            "-o",
            "syslog_name=postfix/$service_name",
        ])
        .unwrap();
        let cfg = Config::load(None, &a.config_overrides(), a.mode, &a.process_name).unwrap();
        assert_eq!(log_tag(&cfg, &a), "postfix/relay/smtp");
        let b = parse(&["smtp", "-n", "relay"]).unwrap();
        let cfg = Config::load(None, &b.config_overrides(), b.mode, &b.process_name).unwrap();
        assert_eq!(log_tag(&cfg, &b), "postfix/smtp");
        let c = parse(&["lmtp", "-o", "multi_instance_name=pf-b"]).unwrap();
        let cfg = Config::load(None, &c.config_overrides(), c.mode, &c.process_name).unwrap();
        assert_eq!(log_tag(&cfg, &c), "pf-b/lmtp");
    }

    #[test]
    fn limits_from_config() {
        let a = parse(&[
            "smtp",
            "-o",
            "max_use=2",
            "-i",
            "7",
            "-o",
            "daemon_timeout=1h",
        ])
        .unwrap();
        let cfg = Config::load(None, &a.config_overrides(), a.mode, &a.process_name).unwrap();
        let l = Limits::from_config(&cfg);
        assert_eq!(l.max_use, 2);
        assert_eq!(l.max_idle, Duration::from_secs(7));
        assert_eq!(l.daemon_timeout, Duration::from_secs(3600));
        assert_eq!(l.ipc_timeout, Duration::from_secs(3600));
    }

    #[test]
    fn lock_file_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("unix.smtp");
        let ps = p.to_str().unwrap();
        let f = open_lock(ps).unwrap();
        assert_eq!(f.metadata().unwrap().mode() & 0o777, 0o600);
        assert!(open_lock(ps).is_ok());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert_eq!(
            open_lock(link.to_str().unwrap()).unwrap_err(),
            "file is a symbolic link"
        );
        std::fs::hard_link(&p, dir.path().join("hard")).unwrap();
        assert_eq!(open_lock(ps).unwrap_err(), "file has 2 hard links");
    }

    // ---- End-to-end: this test binary re-run as the daemon under a fake master. ----

    const CHILD_ENV: &str = "OUTPOST_MASTER_TEST_ARGV";
    const BEHAVIOR_ENV: &str = "OUTPOST_MASTER_TEST_BEHAVIOR";

    struct TestService {
        behavior: String,
    }

    impl Service for TestService {
        fn init_logging(&mut self, tag: &str, _cfg: Option<&Config>) {
            log::init(log::Target::Stderr, tag);
        }
        fn serve(&mut self, _cfg: &Config, stream: UnixStream) {
            let mut reader = std::io::BufReader::new(&stream);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            if self.behavior == "sleep" {
                std::thread::sleep(Duration::from_secs(30));
            }
            if self.behavior == "whoami" {
                let cwd = std::env::current_dir().map(|d| d.display().to_string());
                line = format!(
                    "uid={} euid={} gid={} groups={} cwd={}\n",
                    nix::unistd::getuid(),
                    nix::unistd::geteuid(),
                    nix::unistd::getgid(),
                    nix::unistd::getgroups().map_or(0, |g| g.len()),
                    cwd.unwrap_or_default()
                );
            }
            let on_worker = std::thread::current().name() == Some("delivery");
            let _ = (&stream).write_all(format!("ok {on_worker} {line}").as_bytes());
        }
    }

    /// The daemon side; does nothing unless started by `spawn_daemon`.
    #[test]
    fn daemon_child() {
        let Ok(spec) = std::env::var(CHILD_ENV) else {
            return;
        };
        let argv: Vec<String> = spec.split('\n').map(String::from).collect();
        let service = TestService {
            behavior: std::env::var(BEHAVIOR_ENV).unwrap_or_default(),
        };
        let code = match DaemonArgs::parse(&argv) {
            Ok(args) => run(args, load_config, service),
            Err(why) => {
                eprintln!("parse: {why}");
                2
            }
        };
        std::process::exit(code);
    }

    /// Whether this machine has accounts that pass Postfix's start-up checks.
    fn accounts_ok() -> bool {
        let cfg = Config::builtin(Mode::Smtp, "smtp");
        match startup_checks(&cfg) {
            Ok(()) => true,
            Err(why) => {
                eprintln!("skipping daemon test: {why}");
                false
            }
        }
    }

    struct Fake {
        child: Child,
        master: UnixStream,
        socket: PathBuf,
        _dir: tempfile::TempDir,
    }

    fn spawn_daemon(extra: &[&str], behavior: &str, fds: bool, stdin: Stdio) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let qdir = dir.path().to_str().unwrap().to_string();
        std::fs::create_dir(dir.path().join("pid")).unwrap();
        let mut words = vec!["smtp".to_string()];
        words.extend(extra.iter().map(|s| s.to_string()));
        words.push("-o".to_string());
        words.push(format!("queue_directory={qdir}"));
        let (master, child_end) = UnixStream::pair().unwrap();
        let socket = dir.path().join("listen");
        let listener = UnixListener::bind(&socket).unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "postfix::master::tests::daemon_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, words.join("\n"))
        .env(BEHAVIOR_ENV, behavior)
        .env("GENERATION", "17")
        .env_remove("MAIL_CONFIG")
        .env_remove(CONF_ENV_VERB)
        .env_remove(CONF_ENV_DEBUG)
        .current_dir(dir.path())
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if fds {
            let (s, l) = (child_end.as_raw_fd(), listener.as_raw_fd());
            // SAFETY: only async-signal-safe fcntl/dup2 calls run between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    // Move both out of the way first so neither is clobbered.
                    let s2 = libc::fcntl(s, libc::F_DUPFD_CLOEXEC, 10);
                    let l2 = libc::fcntl(l, libc::F_DUPFD_CLOEXEC, 10);
                    if s2 < 0
                        || l2 < 0
                        || libc::dup2(s2, MASTER_STATUS_FD) < 0
                        || libc::dup2(l2, MASTER_LISTEN_FD) < 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().unwrap();
        master
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Fake {
            child,
            master,
            socket,
            _dir: dir,
        }
    }

    fn wait_exit(child: &mut Child, limit: Duration) -> (i32, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return (status.code().unwrap_or(-1), err);
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("daemon did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn read_status(master: &mut UnixStream) -> (i32, u32, i32) {
        let mut b = [0u8; MASTER_STATUS_SIZE];
        master.read_exact(&mut b).unwrap();
        parse_status(&b)
    }

    fn request(socket: &Path, text: &str) -> String {
        let mut c = UnixStream::connect(socket).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(text.as_bytes()).unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        reply
    }

    #[test]
    fn serves_max_use_requests_and_reports_status() {
        if !accounts_ok() {
            return;
        }
        let mut f = spawn_daemon(
            &["-n", "smtp", "-t", "unix", "-o", "max_use=2"],
            "echo",
            true,
            Stdio::null(),
        );
        let pid = i32::try_from(f.child.id()).unwrap();
        for n in 0..2 {
            let reply = request(&f.socket, &format!("hello {n}\n"));
            assert_eq!(reply, format!("ok true hello {n}\n"));
            assert_eq!(read_status(&mut f.master), (pid, 0o17, MASTER_STAT_TAKEN));
            assert_eq!(read_status(&mut f.master), (pid, 0o17, MASTER_STAT_AVAIL));
        }
        let (code, err) = wait_exit(&mut f.child, Duration::from_secs(10));
        assert_eq!(code, 0, "stderr: {err}");
        assert!(!err.contains("fatal"), "{err}");
        assert!(f._dir.path().join("pid/unix.smtp").exists());
    }

    #[test]
    fn exits_when_master_goes_away() {
        if !accounts_ok() {
            return;
        }
        let mut f = spawn_daemon(
            &["-n", "smtp", "-t", "unix", "-v"],
            "echo",
            true,
            Stdio::null(),
        );
        assert_eq!(request(&f.socket, "x\n"), "ok true x\n");
        drop(f.master);
        let (code, err) = wait_exit(&mut f.child, Duration::from_secs(10));
        assert_eq!(code, 0, "stderr: {err}");
        assert!(
            err.contains("smtp[") && err.contains("master disconnect -- exiting"),
            "{err}"
        );
        assert!(err.contains("process generation: 17 (17)"), "{err}");
    }

    #[test]
    fn exits_when_idle() {
        if !accounts_ok() {
            return;
        }
        let start = Instant::now();
        let mut f = spawn_daemon(
            &[
                "-n",
                "relay",
                "-t",
                "unix",
                "-o",
                "max_idle=1s",
                "-v",
                "-o",
                "syslog_name=pf/$service_name",
            ],
            "echo",
            true,
            Stdio::null(),
        );
        let (code, err) = wait_exit(&mut f.child, Duration::from_secs(10));
        assert_eq!(code, 0, "stderr: {err}");
        assert!(start.elapsed() >= Duration::from_millis(900));
        assert!(
            err.contains("pf/relay/smtp[") && err.contains("idle timeout -- exiting"),
            "{err}"
        );
        assert!(f._dir.path().join("pid/unix.relay").exists());
    }

    #[test]
    fn watchdog_ends_a_stuck_request() {
        if !accounts_ok() {
            return;
        }
        let mut f = spawn_daemon(
            &["-n", "smtp", "-t", "unix", "-o", "daemon_timeout=3s"],
            "sleep",
            true,
            Stdio::null(),
        );
        let mut c = UnixStream::connect(&f.socket).unwrap();
        c.write_all(b"x\n").unwrap();
        let start = Instant::now();
        let (code, err) = wait_exit(&mut f.child, Duration::from_secs(15));
        assert_eq!(code, 1, "stderr: {err}");
        assert!(err.contains("fatal: watchdog timeout"), "{err}");
        assert!(start.elapsed() >= Duration::from_secs(1));
    }

    #[test]
    fn stdin_mode_serves_one_connection() {
        if !accounts_ok() {
            return;
        }
        let mut f = spawn_daemon(&["-S"], "echo", false, Stdio::piped());
        f.child
            .stdin
            .take()
            .unwrap()
            .write_all(b"via stdin\n")
            .unwrap();
        let mut out = String::new();
        f.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let (code, err) = wait_exit(&mut f.child, Duration::from_secs(10));
        assert_eq!(code, 0, "stderr: {err}");
        // The harness prints its own lines around the test's output.
        assert!(out.contains("ok true via stdin\n"), "{out}");
    }

    #[test]
    fn refuses_to_run_without_master_descriptors() {
        if !accounts_ok() {
            return;
        }
        let mut f = spawn_daemon(
            &["-n", "smtp", "-t", "unix", "-l"],
            "echo",
            false,
            Stdio::null(),
        );
        let (code, err) = wait_exit(&mut f.child, Duration::from_secs(10));
        assert_eq!(code, 1, "stderr: {err}");
        assert!(err.contains("fatal: descriptor 5 is not open"), "{err}");
    }

    #[test]
    fn drops_privileges_and_chroots_when_root() {
        if !nix::unistd::geteuid().is_root() || !accounts_ok() {
            return;
        }
        let owner = nix::unistd::User::from_name("postfix").unwrap().unwrap();
        let mut f = spawn_daemon(
            &["-n", "smtp", "-t", "unix", "-u", "-c", "-o", "max_use=1"],
            "whoami",
            true,
            Stdio::null(),
        );
        let reply = request(&f.socket, "x\n");
        let (uid, gid) = (owner.uid, owner.gid);
        assert!(
            reply.starts_with(&format!("ok true uid={uid} euid={uid} gid={gid} groups=")),
            "{reply}"
        );
        assert!(reply.ends_with(" cwd=/\n"), "{reply}");
        assert_eq!(read_status(&mut f.master).2, MASTER_STAT_TAKEN);
        assert_eq!(read_status(&mut f.master).2, MASTER_STAT_AVAIL);
        let (code, err) = wait_exit(&mut f.child, Duration::from_secs(10));
        assert_eq!(code, 0, "stderr: {err}");
    }

    #[test]
    fn refuses_unknown_transport() {
        if !accounts_ok() {
            return;
        }
        let mut f = spawn_daemon(&["-n", "smtp", "-t", "fifo"], "echo", true, Stdio::null());
        let (code, err) = wait_exit(&mut f.child, Duration::from_secs(10));
        assert_eq!(code, 1);
        assert!(
            err.contains("fatal: unsupported transport type: fifo"),
            "{err}"
        );
    }
}
