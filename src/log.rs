//! Logging in Postfix's formats: the tag `syslog_name/process[pid]`, its `warning:` style
//! prefixes, and the per-recipient delivery line that pflogsumm and log scrapers parse.
//!
//! Lines go to syslog (glibc's, as Postfix uses), or to standard error for the command line.
//! The postlogd client for `maillog_file` belongs to the daemon front and plugs in here as a
//! sink. This module never decides what to log, only how.

use std::ffi::CString;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A caller-supplied receiver of complete log lines.
pub type LineSink = Box<dyn FnMut(Level, &str) + Send>;

/// Where log lines go.
pub enum Target {
    /// Standard error, as `tag[pid]: text`.
    Stderr,
    /// glibc syslog with the given facility (LOG_MAIL etc.).
    Syslog(libc::c_int),
    /// A caller-supplied sink (postlogd client, tests); receives the full tagged line.
    Custom(LineSink),
    /// Nowhere.
    Discard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
    Fatal,
}

impl Level {
    fn prefix(self) -> &'static str {
        match self {
            Level::Info => "",
            Level::Warning => "warning: ",
            Level::Error => "error: ",
            Level::Fatal => "fatal: ",
        }
    }
    fn priority(self) -> libc::c_int {
        match self {
            Level::Info => libc::LOG_INFO,
            Level::Warning => libc::LOG_WARNING,
            Level::Error => libc::LOG_ERR,
            Level::Fatal => libc::LOG_CRIT,
        }
    }
}

struct Logger {
    target: Target,
    tag: String,
    /// openlog() keeps the ident pointer, so it must live as long as the process logs.
    _ident: Option<CString>,
}

static LOGGER: Mutex<Option<Logger>> = Mutex::new(None);

/// The syslog facility for a Postfix `syslog_facility` name.
pub fn facility(name: &str) -> Option<libc::c_int> {
    Some(match name.to_ascii_lowercase().as_str() {
        "mail" => libc::LOG_MAIL,
        "user" => libc::LOG_USER,
        "daemon" => libc::LOG_DAEMON,
        "auth" => libc::LOG_AUTH,
        "local0" => libc::LOG_LOCAL0,
        "local1" => libc::LOG_LOCAL1,
        "local2" => libc::LOG_LOCAL2,
        "local3" => libc::LOG_LOCAL3,
        "local4" => libc::LOG_LOCAL4,
        "local5" => libc::LOG_LOCAL5,
        "local6" => libc::LOG_LOCAL6,
        "local7" => libc::LOG_LOCAL7,
        _ => return None,
    })
}

/// Set up logging. `tag` is `syslog_name/process_name`, e.g. `postfix/smtp`.
pub fn init(target: Target, tag: &str) {
    let mut ident = None;
    if let Target::Syslog(fac) = target {
        let c = CString::new(tag.replace('\0', "")).unwrap_or_default();
        // SAFETY: the CString is stored in the logger for the life of the process, so the
        // pointer openlog() retains stays valid.
        unsafe { libc::openlog(c.as_ptr(), libc::LOG_PID | libc::LOG_NDELAY, fac) };
        ident = Some(c);
    }
    let logger = Logger {
        target,
        tag: tag.to_string(),
        _ident: ident,
    };
    if let Ok(mut g) = LOGGER.lock() {
        *g = Some(logger);
    }
}

/// Log one message at the given level.
pub fn log(level: Level, text: &str) {
    let Ok(mut guard) = LOGGER.lock() else {
        return;
    };
    let Some(logger) = guard.as_mut() else {
        return;
    };
    let body = format!("{}{}", level.prefix(), text);
    match &mut logger.target {
        Target::Stderr => {
            let line = format!("{}[{}]: {}\n", logger.tag, std::process::id(), body);
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        Target::Syslog(_) => {
            if let Ok(c) = CString::new(body.replace('\0', "")) {
                // SAFETY: a constant "%s" format with one valid C string argument.
                unsafe { libc::syslog(level.priority(), c"%s".as_ptr(), c.as_ptr()) };
            }
        }
        Target::Custom(f) => {
            let line = format!("{}[{}]: {}", logger.tag, std::process::id(), body);
            f(level, &line)
        }
        Target::Discard => {}
    }
}

pub fn info(text: &str) {
    log(Level::Info, text)
}

/// Postfix's msg_verbose: how many `-v` a daemon was started with.
static VERBOSE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

pub fn set_verbose(level: u32) {
    VERBOSE.store(level, std::sync::atomic::Ordering::Relaxed);
}

pub fn verbose() -> u32 {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed)
}
pub fn warn(text: &str) {
    log(Level::Warning, text)
}
pub fn error(text: &str) {
    log(Level::Error, text)
}
pub fn fatal(text: &str) {
    log(Level::Fatal, text)
}

/// The C library's text for an error number (what Postfix's `%m` prints).
pub fn strerror(e: &std::io::Error) -> String {
    let Some(code) = e.raw_os_error() else {
        return e.to_string();
    };
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: the buffer is valid for its length; the XSI strerror_r writes a NUL-terminated
    // string into it and returns 0 on success.
    let rc = unsafe { libc::strerror_r(code, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return format!("Unknown error {code}");
    }
    // SAFETY: strerror_r succeeded, so the buffer holds a NUL-terminated string.
    let text = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    text.to_string_lossy().into_owned()
}

/// Time stamps of one message's life, from which the `delay=` and `delays=` fields derive.
/// Missing stamps are treated as Postfix's log_adhoc treats them.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgStats {
    pub incoming_arrival: Option<SystemTime>,
    pub active_arrival: Option<SystemTime>,
    pub agent_handoff: Option<SystemTime>,
    pub conn_setup_done: Option<SystemTime>,
    pub deliver_done: Option<SystemTime>,
    /// How many times the connection was used before this delivery (0 = fresh).
    pub reuse_count: u32,
}

fn delta(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

/// Format a delay as Postfix does: two significant digits for small values, no more
/// decimals than `max_dig` (delay_logging_resolution_limit), whole seconds once large.
pub fn format_delay(d: Duration, max_dig: u32) -> String {
    const MILLION: i64 = 1_000_000;
    let max_dig = max_dig.min(6);
    let sig_dig: u32 = 2;
    let mut sec = d.as_secs() as i64;
    let mut usec = d.subsec_micros() as i64;
    let mut ures = MILLION / 10i64.pow(max_dig);
    let wid = 10i64.pow(sig_dig);
    if ures < MILLION {
        if sec > 0 {
            let mut n = 1;
            while sec >= n && n <= wid / 10 {
                n *= 10;
            }
            ures = (MILLION / wid) * n;
        } else {
            while usec >= wid * ures {
                ures *= 10;
            }
        }
    }
    if ures > 1 {
        usec += ures / 2;
        if usec >= MILLION {
            sec += 1;
            usec -= MILLION;
        }
    }
    let mut out = sec.to_string();
    if usec >= ures {
        out.push('.');
        let mut rem = usec;
        let mut n = MILLION / 10;
        while rem >= ures && n > 0 {
            out.push(char::from(b'0' + (rem / n) as u8));
            rem %= n;
            n /= 10;
        }
    }
    out
}

/// What the delivery log line needs to know about one recipient.
pub struct DeliveryLine<'a> {
    pub queue_id: &'a str,
    pub recipient: &'a str,
    pub orig_recipient: &'a str,
    pub relay: &'a str,
    pub stats: &'a MsgStats,
    pub dsn_status: &'a str,
    pub status: &'a str,
    pub reason: &'a str,
    pub resolution: u32,
}

impl DeliveryLine<'_> {
    /// The line exactly as Postfix's log_adhoc() writes it.
    pub fn format(&self, now: SystemTime) -> String {
        let s = self.stats;
        let now = s.deliver_done.unwrap_or(now);
        let incoming = s.incoming_arrival.unwrap_or(now);
        let delay = delta(now, incoming);
        let pdelay;
        let (mut adelay, mut sdelay, mut xdelay) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        match s.active_arrival {
            Some(active) => {
                pdelay = delta(active, incoming);
                match s.agent_handoff {
                    Some(handoff) => {
                        adelay = delta(handoff, active);
                        match s.conn_setup_done {
                            Some(setup) => {
                                sdelay = delta(setup, handoff);
                                xdelay = delta(now, setup);
                            }
                            None => xdelay = delta(now, handoff),
                        }
                    }
                    None => adelay = delta(now, active),
                }
            }
            None => pdelay = delta(now, incoming),
        }
        let mut line = format!("{}: to=<{}>", self.queue_id, self.recipient);
        if !self.orig_recipient.is_empty()
            && !self.orig_recipient.eq_ignore_ascii_case(self.recipient)
        {
            line.push_str(&format!(", orig_to=<{}>", self.orig_recipient));
        }
        line.push_str(&format!(", relay={}", self.relay));
        if s.reuse_count > 0 {
            line.push_str(&format!(", conn_use={}", s.reuse_count + 1));
        }
        let r = self.resolution;
        line.push_str(&format!(
            ", delay={}, delays={}/{}/{}/{}, dsn={}, status={} ({})",
            format_delay(delay, r),
            format_delay(pdelay, r),
            format_delay(adelay, r),
            format_delay(sdelay, r),
            format_delay(xdelay, r),
            self.dsn_status,
            self.status,
            self.reason
        ));
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(sec: u64, usec: u32) -> Duration {
        Duration::new(sec, usec * 1000)
    }

    #[test]
    fn delay_formats_like_postfix() {
        // Values checked against Postfix's format_tv rules with 2 significant digits.
        assert_eq!(format_delay(us(0, 0), 2), "0");
        assert_eq!(format_delay(us(0, 4000), 2), "0");
        assert_eq!(format_delay(us(0, 5000), 2), "0.01");
        assert_eq!(format_delay(us(0, 123_456), 2), "0.12");
        assert_eq!(format_delay(us(0, 126_000), 2), "0.13");
        assert_eq!(format_delay(us(1, 234_000), 2), "1.2");
        assert_eq!(format_delay(us(12, 600_000), 2), "13");
        assert_eq!(format_delay(us(123, 0), 2), "123");
        assert_eq!(format_delay(us(0, 999_000), 2), "1");
        assert_eq!(format_delay(us(0, 1234), 6), "0.0012");
        assert_eq!(format_delay(us(0, 123_456), 0), "0");
    }

    #[test]
    fn delivery_line_fields() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let stats = MsgStats {
            incoming_arrival: Some(t0),
            active_arrival: Some(t0 + us(0, 100_000)),
            agent_handoff: Some(t0 + us(0, 200_000)),
            conn_setup_done: Some(t0 + us(0, 300_000)),
            deliver_done: None,
            reuse_count: 1,
        };
        let line = DeliveryLine {
            queue_id: "4ABC",
            recipient: "a@example.com",
            orig_recipient: "b@example.com",
            relay: "mx[127.0.0.1]:25",
            stats: &stats,
            dsn_status: "2.0.0",
            status: "sent",
            reason: "250 2.0.0 Ok",
            resolution: 2,
        }
        .format(t0 + us(1, 0));
        assert_eq!(
            line,
            "4ABC: to=<a@example.com>, orig_to=<b@example.com>, relay=mx[127.0.0.1]:25, \
             conn_use=2, delay=1, delays=0.1/0.1/0.1/0.7, dsn=2.0.0, status=sent (250 2.0.0 Ok)"
        );
        let same = DeliveryLine {
            orig_recipient: "A@example.com",
            ..DeliveryLine {
                queue_id: "Q",
                recipient: "a@example.com",
                orig_recipient: "",
                relay: "none",
                stats: &MsgStats::default(),
                dsn_status: "4.4.1",
                status: "deferred",
                reason: "x",
                resolution: 2,
            }
        }
        .format(t0);
        assert!(!same.contains("orig_to"), "{same}");
    }
}
