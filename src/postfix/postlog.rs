//! The postlogd(8) client: logging when Postfix runs with `maillog_file` set.
//!
//! Then master(8) starts every daemon with `POSTLOG_SERVICE` (the path of the
//! `public/postlog` datagram socket) and `POSTLOG_HOSTNAME` in the environment, and each
//! process sends every log line as one datagram:
//!
//! ```text
//! Nov 28 08:27:55 qtest postfix/smtp[14018]: warning: hello world
//! ```
//!
//! that is, the local time as `%b %d %H:%M:%S` (C locale, day zero-padded), the first label
//! of the host name, the tag `syslog_name/process[pid]`, `: `, the severity prefix for
//! anything but info, and at most 2000 bytes of text. There is no `<PRI>` and no trailing
//! newline; postlogd writes the line to the log file as it is.
//!
//! Postfix connects once, before it enters a chroot jail, and keeps the socket; when no
//! connection could be made it tries again for each line, and lines that cannot be sent
//! are dropped (daemons have no fallback). This client does the same.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::log::{Level, Target};

/// Environment variable with the postlog socket path, set by master(8).
pub const SERVICE_ENV: &str = "POSTLOG_SERVICE";
/// Environment variable with the host name to log, set by master(8).
pub const HOSTNAME_ENV: &str = "POSTLOG_HOSTNAME";
/// Longest message text (after the severity prefix) that goes into one datagram.
pub const TEXT_LIMIT: usize = 2000;
/// The host name Postfix logs when it knows none.
const NO_HOSTNAME: &str = "amnesiac";

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A sender of log lines to postlogd.
pub struct PostlogClient {
    path: PathBuf,
    /// First label of the host name.
    host: String,
    tag: String,
    sock: Mutex<Option<UnixDatagram>>,
}

impl PostlogClient {
    /// Connect now and fail if the service cannot be reached.
    pub fn connect(service_path: &Path, hostname: &str, tag: &str) -> io::Result<PostlogClient> {
        let client = PostlogClient::new(service_path, hostname, tag);
        let sock = UnixDatagram::unbound()?;
        sock.connect(service_path)?;
        if let Ok(mut g) = client.sock.lock() {
            *g = Some(sock);
        }
        Ok(client)
    }

    /// Postfix's behaviour: try to connect now, and if that fails, again for each line.
    pub fn open(service_path: &Path, hostname: &str, tag: &str) -> PostlogClient {
        let client = PostlogClient::new(service_path, hostname, tag);
        if let Ok(mut g) = client.sock.lock() {
            *g = dial(&client.path);
        }
        client
    }

    /// From the environment master(8) provides: `None` when `POSTLOG_SERVICE` is unset or
    /// empty (then Postfix logs to syslog). `myhostname` from main.cf wins over
    /// `POSTLOG_HOSTNAME`, as in Postfix once it has read its configuration.
    pub fn from_env(tag: &str, myhostname: Option<&str>) -> Option<PostlogClient> {
        let service = std::env::var_os(SERVICE_ENV).filter(|s| !s.is_empty())?;
        let env_host = std::env::var(HOSTNAME_ENV).ok();
        let host = myhostname
            .filter(|h| !h.is_empty())
            .or(env_host.as_deref().filter(|h| !h.is_empty()))
            .unwrap_or(NO_HOSTNAME);
        Some(PostlogClient::open(Path::new(&service), host, tag))
    }

    fn new(service_path: &Path, hostname: &str, tag: &str) -> PostlogClient {
        // The time zone must be known before any chroot hides /etc/localtime: the C
        // library loads it on the first conversion and keeps it.
        let _ = timestamp_now();
        let host = hostname.split('.').next().unwrap_or("");
        PostlogClient {
            path: service_path.to_path_buf(),
            host: host.to_string(),
            tag: tag.to_string(),
            sock: Mutex::new(None),
        }
    }

    /// Whether a connection is established.
    pub fn is_connected(&self) -> bool {
        self.sock.lock().map(|g| g.is_some()).unwrap_or(false)
    }

    /// Send one line with this client's tag and the current pid. `text` includes the
    /// severity prefix ("warning: ...") when there is one.
    pub fn send(&self, text: &str) {
        let head = format!("{}[{}]: ", self.tag, std::process::id());
        self.send_datagram(&self.datagram(&head, text.as_bytes()));
    }

    /// Send a line that already carries its tag, `tag[pid]: text`, as crate::log produces
    /// it; `level` tells how long the severity prefix of `text` is, so that the text limit
    /// applies to the same bytes as in Postfix.
    pub fn send_tagged(&self, level: Level, line: &str) {
        let bytes = line.as_bytes();
        let split = find(bytes, b"]: ").map(|i| i + 3).unwrap_or(0);
        let (tag_part, rest) = bytes.split_at(split);
        let prefix = severity_prefix(level);
        let prefix_len = if rest.starts_with(prefix.as_bytes()) {
            prefix.len()
        } else {
            0
        };
        let mut head = String::from_utf8_lossy(tag_part).into_owned();
        head.push_str(&String::from_utf8_lossy(&rest[..prefix_len]));
        self.send_datagram(&self.datagram(&head, &rest[prefix_len..]));
    }

    /// A log target for crate::log that sends each line through this client.
    pub fn into_log_target(self) -> Target {
        Target::Custom(Box::new(move |level, line| self.send_tagged(level, line)))
    }

    /// The datagram for `head` (tag, pid and severity) and `text`, stamped now.
    fn datagram(&self, head: &str, text: &[u8]) -> Vec<u8> {
        format_datagram(&timestamp_now(), &self.host, head, text)
    }

    fn send_datagram(&self, data: &[u8]) {
        let Ok(mut guard) = self.sock.lock() else {
            return;
        };
        if guard.is_none() {
            *guard = dial(&self.path);
        }
        if let Some(sock) = guard.as_ref() {
            // Errors are ignored, as in Postfix: the line is lost.
            let _ = sock.send(data);
        }
    }
}

fn dial(path: &Path) -> Option<UnixDatagram> {
    let sock = UnixDatagram::unbound().ok()?;
    sock.connect(path).ok()?;
    Some(sock)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn severity_prefix(level: Level) -> &'static str {
    match level {
        Level::Info => "",
        Level::Warning => "warning: ",
        Level::Error => "error: ",
        Level::Fatal => "fatal: ",
    }
}

/// Assemble a datagram: `STAMP HOST HEAD TEXT` with the text cut at [`TEXT_LIMIT`] bytes.
pub fn format_datagram(stamp: &str, host: &str, head: &str, text: &[u8]) -> Vec<u8> {
    let host = host.split('.').next().unwrap_or("");
    let text = &text[..text.len().min(TEXT_LIMIT)];
    let mut out = Vec::with_capacity(stamp.len() + host.len() + head.len() + text.len() + 2);
    out.extend_from_slice(stamp.as_bytes());
    out.push(b' ');
    out.extend_from_slice(host.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(text);
    out
}

/// `Mon dd hh:mm:ss` in local time.
pub fn timestamp_now() -> String {
    // SAFETY: time() with a null pointer only returns the time.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    // SAFETY: tm is plain data, fully written by localtime_r on success.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live locals.
    let ok = !unsafe { libc::localtime_r(&now, &mut tm) }.is_null();
    if !ok {
        return "Jan 01 00:00:00".to_string();
    }
    format_stamp(tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// The time stamp from broken-down time (month 0-11).
pub fn format_stamp(mon: i32, mday: i32, hour: i32, min: i32, sec: i32) -> String {
    let month = usize::try_from(mon)
        .ok()
        .and_then(|m| MONTHS.get(m))
        .copied()
        .unwrap_or("???");
    format!("{month} {mday:02} {hour:02}:{min:02}:{sec:02}")
}

#[cfg(test)]
#[path = "postlog_tests.rs"]
mod tests;
