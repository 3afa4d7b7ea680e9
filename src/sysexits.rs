//! sysexits(3) codes, and the mapping from a permanent DSN status to the code sendmail
//! programs return for it.

pub const EX_OK: i32 = 0;
pub const EX_USAGE: i32 = 64;
pub const EX_DATAERR: i32 = 65;
pub const EX_NOINPUT: i32 = 66;
pub const EX_NOUSER: i32 = 67;
pub const EX_NOHOST: i32 = 68;
pub const EX_UNAVAILABLE: i32 = 69;
pub const EX_SOFTWARE: i32 = 70;
pub const EX_OSERR: i32 = 71;
pub const EX_TEMPFAIL: i32 = 75;
pub const EX_PROTOCOL: i32 = 76;
pub const EX_NOPERM: i32 = 77;
pub const EX_CONFIG: i32 = 78;

/// The exit code for a bounced recipient with this enhanced status.
pub fn for_permanent(status: &str) -> i32 {
    let mut parts = status.split('.');
    let _class = parts.next();
    let subject = parts.next().unwrap_or("");
    let detail = parts.next().unwrap_or("");
    match (subject, detail) {
        ("1", "1") | ("1", "6") => EX_NOUSER,
        ("1", "2") | ("4", "4") => EX_NOHOST,
        ("5", _) => EX_PROTOCOL,
        ("6", _) => EX_DATAERR,
        ("7", _) => EX_NOPERM,
        ("3", "5") => EX_CONFIG,
        _ => EX_UNAVAILABLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        assert_eq!(for_permanent("5.1.1"), EX_NOUSER);
        assert_eq!(for_permanent("5.1.2"), EX_NOHOST);
        assert_eq!(for_permanent("5.5.0"), EX_PROTOCOL);
        assert_eq!(for_permanent("5.7.1"), EX_NOPERM);
        assert_eq!(for_permanent("5.3.4"), EX_UNAVAILABLE);
        assert_eq!(for_permanent("5.0.0"), EX_UNAVAILABLE);
    }
}
