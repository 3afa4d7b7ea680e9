//! Outcomes: what happened to each recipient, and the classes of error that decide it.
//!
//! The session layer reports facts (a reply, a timeout, a lost connection); this module is
//! where those facts become "sent", "deferred" or "bounced" with a DSN status and the reason
//! text Postfix users know. Nothing here does I/O.

use std::fmt;

/// How an error must be treated by whoever delivers the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Try again later (4xx, network trouble, timeouts, local resource problems).
    Temporary,
    /// Will never work (5xx and the like): bounce.
    Permanent,
    /// The queue file or request is damaged: mark it corrupt, defer.
    Corrupt,
    /// Our own configuration is wrong: defer, and tell the administrator.
    Config,
}

/// The final state of one recipient after a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Sent,
    Deferred,
    Bounced,
}

impl Status {
    /// The word used in `status=` of the delivery log line.
    pub fn word(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Deferred => "deferred",
            Status::Bounced => "bounced",
        }
    }

    /// The DSN action Postfix reports for this status.
    pub fn action(self) -> &'static str {
        match self {
            Status::Sent => "relayed",
            Status::Deferred => "delayed",
            Status::Bounced => "failed",
        }
    }
}

/// Delivery status notification details for one recipient, as Postfix carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// Enhanced status code, e.g. "5.1.1".
    pub status: String,
    /// Human-readable reason (what appears in parentheses of the log line).
    pub reason: String,
    /// The remote MTA name ("mtype dns"), when a server was involved.
    pub mta: Option<String>,
    /// The server's reply ("dtype smtp"), when the outcome came from one.
    pub reply: Option<String>,
}

impl Dsn {
    pub fn new(status: impl Into<String>, reason: impl Into<String>) -> Dsn {
        Dsn {
            status: status.into(),
            reason: reason.into(),
            mta: None,
            reply: None,
        }
    }

    /// The class implied by the first digit of the status ("4.x.x" temporary, else permanent).
    pub fn class(&self) -> Class {
        if self.status.starts_with('4') {
            Class::Temporary
        } else if self.status.starts_with('5') {
            Class::Permanent
        } else {
            Class::Temporary
        }
    }
}

/// One recipient's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub dsn: Dsn,
    /// `relay=` value of the log line: `host[addr]:port`, `none`, or a socket path.
    pub relay: String,
    /// Success was final delivery (LMTP without DSN, lmtp_assume_final): DSN "delivered".
    pub delivered: bool,
    /// The server announced DSN (NOTIFY=SUCCESS is then its business, not ours).
    pub dsn_offered: bool,
}

impl Outcome {
    /// An outcome whose status follows from the DSN code: 2.x.x sent, 4.x.x deferred,
    /// 5.x.x bounced. Anything else is treated as temporary so that mail is never lost.
    pub fn from_dsn(dsn: Dsn, relay: impl Into<String>) -> Outcome {
        let status = match dsn.status.as_bytes().first() {
            Some(b'2') => Status::Sent,
            Some(b'5') => Status::Bounced,
            _ => Status::Deferred,
        };
        Outcome {
            status,
            dsn,
            relay: relay.into(),
            delivered: false,
            dsn_offered: false,
        }
    }
}

/// An error value with a class; the layer that catches it turns it into outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub class: Class,
    pub dsn: Dsn,
}

impl Error {
    pub fn temp(status: &str, reason: impl Into<String>) -> Error {
        Error {
            class: Class::Temporary,
            dsn: Dsn::new(status, reason),
        }
    }
    pub fn perm(status: &str, reason: impl Into<String>) -> Error {
        Error {
            class: Class::Permanent,
            dsn: Dsn::new(status, reason),
        }
    }
    pub fn config(reason: impl Into<String>) -> Error {
        Error {
            class: Class::Config,
            dsn: Dsn::new("4.3.5", reason),
        }
    }
    pub fn corrupt(reason: impl Into<String>) -> Error {
        Error {
            class: Class::Corrupt,
            dsn: Dsn::new("4.3.0", reason),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dsn.reason)
    }
}

impl std::error::Error for Error {}

/// Parse an RFC 3463 enhanced status code at the start of `text`, returning the code and
/// the rest of the text (leading blanks removed). The class digit must be 2, 4 or 5 and
/// each number within RFC 3463's bounds; anything else is not a code.
pub fn parse_enhanced(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let class = *bytes.first()?;
    if !matches!(class, b'2' | b'4' | b'5') || bytes.get(1) != Some(&b'.') {
        return None;
    }
    let mut i = 2;
    let digits = |i: &mut usize, max: usize| -> bool {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start && *i - start <= max
    };
    if !digits(&mut i, 3) || bytes.get(i) != Some(&b'.') {
        return None;
    }
    i += 1;
    if !digits(&mut i, 3) {
        return None;
    }
    if i < bytes.len() && !bytes[i].is_ascii_whitespace() {
        return None;
    }
    let (code, rest) = text.split_at(i);
    Some((code, rest.trim_start()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes() {
        assert_eq!(
            parse_enhanced("5.1.1 no such user"),
            Some(("5.1.1", "no such user"))
        );
        assert_eq!(parse_enhanced("4.7.0"), Some(("4.7.0", "")));
        assert_eq!(parse_enhanced("2.0.0 Ok"), Some(("2.0.0", "Ok")));
        assert_eq!(parse_enhanced("3.0.0 x"), None);
        assert_eq!(parse_enhanced("5.1 x"), None);
        assert_eq!(parse_enhanced("5.1.1x"), None);
        assert_eq!(parse_enhanced("5.1234.1 x"), None);
        assert_eq!(parse_enhanced(""), None);
    }

    #[test]
    fn status_from_dsn() {
        assert_eq!(
            Outcome::from_dsn(Dsn::new("2.0.0", "ok"), "x").status,
            Status::Sent
        );
        assert_eq!(
            Outcome::from_dsn(Dsn::new("4.4.1", "x"), "x").status,
            Status::Deferred
        );
        assert_eq!(
            Outcome::from_dsn(Dsn::new("5.1.1", "x"), "x").status,
            Status::Bounced
        );
        assert_eq!(
            Outcome::from_dsn(Dsn::new("", "x"), "x").status,
            Status::Deferred
        );
    }
}
