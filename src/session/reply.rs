//! Server replies: reading a (multi-line) reply defensively and splitting it into the
//! numeric code, the enhanced status and the text.
//!
//! Rules follow Postfix's reply reader: lines longer than the line limit are truncated,
//! non-printable bytes become '?', lines without a three-digit code are skipped as garbage
//! (with a warning when pipelining, since that is when garbage can shift replies), the
//! stored text is bounded, and a reply without a usable enhanced code gets "X.0.0" from its
//! class digit, or "5.5.0" (protocol error) when it has no valid code at all.

use super::conn::{Conn, IoFailure};

/// Postfix's line_length_limit: the longest reply line we store.
pub const LINE_LIMIT: usize = 2048;

/// Malformed lines tolerated within one reply.
const MAX_GARBAGE: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit code of the last line; 0 when the reply had none.
    pub code: u16,
    /// Enhanced status: the server's, or derived from the code.
    pub dsn: String,
    /// All lines, joined with '\n', each as received (code included).
    pub text: String,
    /// Lines skipped because they had no reply code.
    pub garbage: usize,
    /// True when a line was over the limit or the text was cut.
    pub truncated: bool,
}

impl Reply {
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// The reply as one line, as Postfix puts it in reasons and log lines.
    pub fn one_line(&self) -> String {
        self.text.replace('\n', " ")
    }

    /// The text lines without the "NNN-"/"NNN " prefixes (EHLO keywords).
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.split('\n').map(|l| {
            let b = l.as_bytes();
            if b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit) {
                l.get(4..).unwrap_or("")
            } else {
                l
            }
        })
    }

    /// Build a reply from literal text (tests and internally generated replies).
    pub fn parse_text(text: &str) -> Reply {
        let mut r = Reply {
            code: 0,
            dsn: String::new(),
            text: text.to_string(),
            garbage: 0,
            truncated: false,
        };
        let last = text.rsplit('\n').next().unwrap_or("");
        finish(&mut r, last.as_bytes());
        r
    }
}

/// What kind of line we got: part of a reply, its end, or garbage.
fn classify(line: &[u8]) -> Option<bool> {
    if line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit) {
        match line.get(3) {
            Some(b'-') => Some(false),
            Some(b' ') | None => Some(true),
            _ => None,
        }
    } else {
        None
    }
}

fn printable(line: &[u8]) -> String {
    line.iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

fn finish(r: &mut Reply, last: &[u8]) {
    r.dsn = "5.5.0".to_string();
    if classify(last) == Some(true) {
        let code = last[..3]
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        r.code = code;
        if matches!(last[0], b'2' | b'4' | b'5') {
            let rest = String::from_utf8_lossy(last.get(4..).unwrap_or(b""));
            let rest = rest.trim_start_matches(' ');
            match crate::outcome::parse_enhanced(rest) {
                Some((dsn, _)) if dsn.as_bytes()[0] == last[0] => r.dsn = dsn.to_string(),
                _ => r.dsn = format!("{}.0.0", last[0] as char),
            }
        }
    } else {
        r.code = 0;
    }
}

/// Warnings the reader wants logged; the caller knows the peer name and queue id.
pub enum ReplyWarning {
    LongLine(String),
    LongReply(String),
    Garbage(String),
}

/// Read one complete reply. `warn` receives conditions worth a log line.
pub fn read_reply(conn: &mut Conn, mut warn: impl FnMut(ReplyWarning)) -> Result<Reply, IoFailure> {
    let mut r = Reply {
        code: 0,
        dsn: String::new(),
        text: String::new(),
        garbage: 0,
        truncated: false,
    };
    let mut text_full = false;
    loop {
        let line = conn.read_line(LINE_LIMIT)?;
        let shown = printable(&line.text);
        if !line.complete {
            r.truncated = true;
            warn(ReplyWarning::LongLine(shown.chars().take(30).collect()));
        }
        if r.text.len() < LINE_LIMIT {
            if !r.text.is_empty() {
                r.text.push('\n');
            }
            r.text.push_str(&shown);
        } else if !text_full {
            text_full = true;
            r.truncated = true;
            warn(ReplyWarning::LongReply(r.text.chars().take(30).collect()));
        }
        match classify(&line.text) {
            Some(true) => {
                finish(&mut r, shown.as_bytes());
                return Ok(r);
            }
            Some(false) => continue,
            None => {
                r.garbage += 1;
                warn(ReplyWarning::Garbage(shown.chars().take(100).collect()));
                // Postfix keeps reading until a real reply line arrives; a peer that sends
                // nothing but garbage would keep us forever, so give up (a deferral).
                if r.garbage > MAX_GARBAGE {
                    return Err(IoFailure::Other(std::io::Error::other(
                        "too many malformed reply lines",
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_dsn() {
        assert_eq!(Reply::parse_text("250 ok").dsn, "2.0.0");
        assert_eq!(Reply::parse_text("550 5.1.1 no").dsn, "5.1.1");
        assert_eq!(Reply::parse_text("550 4.1.1 mismatch").dsn, "5.0.0");
        assert_eq!(Reply::parse_text("450-a\n450 4.7.1 b").dsn, "4.7.1");
        assert_eq!(Reply::parse_text("354 go").dsn, "5.5.0");
        assert_eq!(Reply::parse_text("354 go").code, 354);
        assert_eq!(Reply::parse_text("garbage").code, 0);
        assert_eq!(Reply::parse_text("250").code, 250);
    }

    #[test]
    fn lines_and_one_line() {
        let r = Reply::parse_text("250-mx.example\n250-PIPELINING\n250 SIZE 100");
        let v: Vec<&str> = r.lines().collect();
        assert_eq!(v, ["mx.example", "PIPELINING", "SIZE 100"]);
        assert_eq!(r.one_line(), "250-mx.example 250-PIPELINING 250 SIZE 100");
    }

    #[test]
    fn printable_censors() {
        assert_eq!(printable(b"a\x01b\xffc"), "a?b?c");
    }
}
