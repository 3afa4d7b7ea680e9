//! Protocol lists and cipher grades, turned into what OpenSSL is given.
//!
//! Protocol lists (`smtp_tls_protocols`, the `protocols` policy attribute) accept names to
//! include, `!name` to exclude, and `>=version` / `<=version` bounds, separated by commas,
//! spaces or colons. Exclusions become
//! SSL_OP_NO_* options; the bounds become the minimum and maximum protocol version
//! (0 = no bound). Names, versions and grades match without regard to case (Postfix's
//! name_code tables). Cipher grades select one of the tls_*_cipherlist parameters, to which
//! each exclusion is appended as `:!name`.

use std::fmt::Write as _;

/// Protocol bit for each name Postfix knows (its TLS_PROTOCOL_* values).
pub const SSLV2: u32 = 1 << 0;
pub const SSLV3: u32 = 1 << 1;
pub const TLSV1: u32 = 1 << 2;
pub const TLSV1_1: u32 = 1 << 3;
pub const TLSV1_2: u32 = 1 << 4;
pub const TLSV1_3: u32 = 1 << 5;
pub const KNOWN: u32 = SSLV2 | SSLV3 | TLSV1 | TLSV1_1 | TLSV1_2 | TLSV1_3;

const NAMES: [(&str, u32); 6] = [
    ("SSLv2", SSLV2),
    ("SSLv3", SSLV3),
    ("TLSv1", TLSV1),
    ("TLSv1.1", TLSV1_1),
    ("TLSv1.2", TLSV1_2),
    ("TLSv1.3", TLSV1_3),
];

/// Version numbers accepted after `>=` and `<=` ("None" clears the bound).
const VERSIONS: [(&str, i32); 6] = [
    ("None", 0),
    ("SSLv3", 0x0300),
    ("TLSv1", 0x0301),
    ("TLSv1.1", 0x0302),
    ("TLSv1.2", 0x0303),
    ("TLSv1.3", 0x0304),
];

/// A parsed protocol list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Protocols {
    /// Protocols to disable (bit set of the constants above).
    pub exclude: u32,
    /// Minimum protocol version (0: none).
    pub min: i32,
    /// Maximum protocol version (0: none).
    pub max: i32,
}

fn version(tok: &str) -> Option<i32> {
    if let Some((_, v)) = VERSIONS.iter().find(|(n, _)| n.eq_ignore_ascii_case(tok)) {
        return Some(*v);
    }
    // Postfix also takes a hexadecimal protocol number (e.g. 0x0303 or 303).
    let hex = tok
        .strip_prefix("0x")
        .or_else(|| tok.strip_prefix("0X"))
        .unwrap_or(tok);
    if hex.is_empty() {
        return None;
    }
    u32::from_str_radix(hex, 16)
        .ok()
        .and_then(|v| i32::try_from(v).ok())
}

/// Parses a protocol list; `Err` carries the offending token. When some names are listed
/// without `!`, every known protocol not listed is excluded as well.
pub fn parse_protocols(list: &str) -> Result<Protocols, String> {
    let mut p = Protocols::default();
    let mut include = 0;
    for tok in list
        .split([',', ' ', '\t', '\r', '\n', ':'])
        .filter(|t| !t.is_empty())
    {
        if let Some(v) = tok.strip_prefix(">=") {
            p.min = version(v).ok_or_else(|| tok.to_string())?;
        } else if let Some(v) = tok.strip_prefix("<=") {
            p.max = version(v).ok_or_else(|| tok.to_string())?;
        } else if let Some(n) = tok.strip_prefix('!') {
            p.exclude |= NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(n))
                .ok_or_else(|| tok.to_string())?
                .1;
        } else {
            include |= NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(tok))
                .ok_or_else(|| tok.to_string())?
                .1;
        }
    }
    if include != 0 {
        p.exclude |= KNOWN & !include;
    }
    Ok(p)
}

/// The cipher grades of smtp_tls_ciphers and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grade {
    High,
    Medium,
    Low,
    Export,
    Null,
}

impl Grade {
    /// Any case, like Postfix's table ("invalid" is not a grade either).
    pub fn parse(s: &str) -> Option<Grade> {
        Some(match s.to_ascii_lowercase().as_str() {
            "high" => Grade::High,
            "medium" => Grade::Medium,
            "low" => Grade::Low,
            "export" => Grade::Export,
            "null" => Grade::Null,
            _ => return None,
        })
    }
}

/// The five tls_*_cipherlist parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherLists {
    pub high: String,
    pub medium: String,
    pub low: String,
    pub export: String,
    pub null: String,
}

impl Default for CipherLists {
    /// Postfix 3.7's defaults.
    fn default() -> CipherLists {
        CipherLists {
            high: "aNULL:-aNULL:HIGH:@STRENGTH".into(),
            medium: "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH".into(),
            low: "aNULL:-aNULL:HIGH:MEDIUM:LOW:+RC4:@STRENGTH".into(),
            export: "aNULL:-aNULL:HIGH:MEDIUM:LOW:EXPORT:+RC4:@STRENGTH".into(),
            null: "eNULL:!aNULL".into(),
        }
    }
}

/// Builds the OpenSSL cipher string for `grade` minus `exclusions` (names separated by
/// commas, spaces or colons). Errors carry Postfix's warning text after "namaddr: ".
pub fn cipher_list(lists: &CipherLists, grade: &str, exclusions: &str) -> Result<String, String> {
    let mut buf = match Grade::parse(grade) {
        None => return Err(format!("invalid cipher grade: \"{grade}\"")),
        Some(Grade::High) => lists.high.clone(),
        Some(Grade::Medium) => lists.medium.clone(),
        Some(Grade::Low) => lists.low.clone(),
        Some(Grade::Export) => lists.export.clone(),
        Some(Grade::Null) => lists.null.clone(),
    };
    for tok in exclusions
        .split([',', ' ', '\t', '\r', '\n', ':'])
        .filter(|t| !t.is_empty())
    {
        if tok.starts_with(['!', '+', '-', '@']) {
            return Err(format!("invalid unary '!+-@' in cipher exclusion: {tok}"));
        }
        let _ = write!(buf, ":!{tok}");
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_exclusions_and_bounds() {
        let p = parse_protocols("!SSLv2, !SSLv3").unwrap();
        assert_eq!(
            p,
            Protocols {
                exclude: SSLV2 | SSLV3,
                min: 0,
                max: 0
            }
        );
        let p = parse_protocols(">=TLSv1.2").unwrap();
        assert_eq!(
            p,
            Protocols {
                exclude: 0,
                min: 0x0303,
                max: 0
            }
        );
        let p = parse_protocols(">=TLSv1 <=TLSv1.2").unwrap();
        assert_eq!((p.min, p.max), (0x0301, 0x0303));
        let p = parse_protocols("<=0x0303:>=None").unwrap();
        assert_eq!((p.min, p.max), (0, 0x0303));
        // Listing names excludes everything else.
        let p = parse_protocols("TLSv1.2, TLSv1.3").unwrap();
        assert_eq!(p.exclude, SSLV2 | SSLV3 | TLSV1 | TLSV1_1);
        assert_eq!(parse_protocols("").unwrap(), Protocols::default());
    }

    #[test]
    fn protocol_errors() {
        assert_eq!(parse_protocols("!tlsv1").unwrap().exclude, TLSV1);
        assert_eq!(parse_protocols("!TLSv1.0"), Err("!TLSv1.0".into()));
        assert_eq!(parse_protocols(">=TLSv9"), Err(">=TLSv9".into()));
        assert_eq!(parse_protocols("TLSv1.4"), Err("TLSv1.4".into()));
        assert!(parse_protocols(">=").is_err());
    }

    #[test]
    fn cipher_strings() {
        let l = CipherLists::default();
        assert_eq!(
            cipher_list(&l, "medium", "").unwrap(),
            "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH"
        );
        assert_eq!(
            cipher_list(&l, "high", "RC4, aNULL MD5").unwrap(),
            "aNULL:-aNULL:HIGH:@STRENGTH:!RC4:!aNULL:!MD5"
        );
        assert_eq!(
            cipher_list(&l, "strong", ""),
            Err("invalid cipher grade: \"strong\"".into())
        );
        assert_eq!(
            cipher_list(&l, "high", "!RC4"),
            Err("invalid unary '!+-@' in cipher exclusion: !RC4".into())
        );
    }
}
