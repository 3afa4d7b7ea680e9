//! Conversions of expanded parameter text into typed values, each accepting
//! exactly what Postfix's own converters accept (strtol-based numbers, the
//! time units of conv_time, yes/no booleans, brace-grouped lists), plus the
//! host name and compatibility level syntax checks done at start-up.

use super::params::{Kind, ParamDef};

/// A converted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Str(String),
    Bool(bool),
    Int(i64),
    /// Seconds.
    Time(i64),
}

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;
const INT_MAX: i64 = i32::MAX as i64;

/// C's isspace() in the "C" locale.
pub(crate) fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// strtol(3) in base 10. Returns the number and the text after it; with no
/// digits at all the number is 0 and the "rest" is the whole input, as with
/// strtol's end pointer. `None` stands for ERANGE.
pub(crate) fn strtol(s: &str) -> Option<(i64, &str)> {
    let t = s.trim_start_matches(is_c_space);
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..).unwrap_or("")),
        Some(b'+') => (false, t.get(1..).unwrap_or("")),
        _ => (false, t),
    };
    let ndigits = body.bytes().take_while(u8::is_ascii_digit).count();
    if ndigits == 0 {
        return Some((0, s));
    }
    let (digits, rest) = body.split_at(ndigits);
    let mut v: i64 = 0;
    for d in digits.bytes() {
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some((if negative { -v } else { v }, rest))
}

/// Postfix's conv_time(): a non-negative int, then an optional unit letter
/// (only the first character after the digits counts, so "5min" is 5m).
pub(crate) fn conv_time(s: &str, default_unit: u8) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let (n, rest) = strtol(s)?;
    if !(0..=INT_MAX).contains(&n) {
        return None;
    }
    let unit = rest.bytes().next().unwrap_or(default_unit);
    let scale = match unit {
        b'w' => WEEK,
        b'd' => DAY,
        b'h' => HOUR,
        b'm' => MINUTE,
        b's' => return Some(n),
        _ => return None,
    };
    // Postfix refuses anything that would not fit in a C int.
    (n < INT_MAX / scale).then_some(n * scale)
}

/// A whole-string decimal number (Postfix's int and long parameters).
fn conv_number(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    match strtol(s)? {
        (n, "") => Some(n),
        _ => None,
    }
}

/// Postfix's yes/no, case-insensitive.
pub(crate) fn conv_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("yes") {
        Some(true)
    } else if s.eq_ignore_ascii_case("no") {
        Some(false)
    } else {
        None
    }
}

/// Converts an expanded value by kind and checks the table's bounds. The
/// error is the message part of a ConfigError.
pub(crate) fn convert(kind: Kind, def: Option<&ParamDef>, v: &str) -> Result<Value, String> {
    let (min, max) = def.map_or((0, 0), |d| (d.min, d.max));
    match kind {
        Kind::Str => {
            let len = i64::try_from(v.len()).unwrap_or(i64::MAX);
            if min != 0 && len < min {
                return Err(format!("bad string length {len} < {min}: \"{v}\""));
            }
            if max != 0 && len > max {
                return Err(format!("bad string length {len} > {max}: \"{v}\""));
            }
            Ok(Value::Str(v.to_string()))
        }
        Kind::Bool => conv_bool(v)
            .map(Value::Bool)
            .ok_or_else(|| format!("bad boolean configuration: \"{v}\"")),
        Kind::Int | Kind::Long => {
            let n = conv_number(v)
                .filter(|n| kind == Kind::Long || i32::try_from(*n).is_ok())
                .ok_or_else(|| format!("bad numerical configuration: \"{v}\""))?;
            if min != 0 && n < min {
                return Err(format!("invalid parameter value {n} < {min}"));
            }
            if max != 0 && n > max {
                return Err(format!("invalid parameter value {n} > {max}"));
            }
            Ok(Value::Int(n))
        }
        Kind::Time(unit) => {
            let n = conv_time(v, unit).ok_or_else(|| format!("bad time value or unit: \"{v}\""))?;
            if min != 0 && n < min {
                return Err(format!("invalid time value {n}s (min {min}s)"));
            }
            if max != 0 && n > max {
                return Err(format!("invalid time value {n}s (max {max}s)"));
            }
            Ok(Value::Time(n))
        }
    }
}

/// List separators (Postfix's CHARS_COMMA_SP).
fn is_list_sep(b: u8) -> bool {
    matches!(b, b',' | b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits a list the way Postfix 3.x's mail_parm_split() does: elements are
/// separated by commas and whitespace, and "{ a b }" is one element "a b"
/// (outer braces and the blanks inside them removed; inner braces kept).
/// Returns the elements and, if a group was malformed, the first problem; the
/// elements are still Postfix's best effort in that case.
pub(crate) fn split_list(s: &str) -> (Vec<String>, Option<String>) {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut problem = None;
    let mut i = 0;
    loop {
        while b.get(i).is_some_and(|&c| is_list_sep(c)) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        let mut depth = 0usize;
        while let Some(&c) = b.get(i) {
            if c == b'{' {
                depth += 1;
            } else if depth > 0 && c == b'}' {
                depth -= 1;
            } else if depth == 0 && is_list_sep(c) {
                break;
            }
            i += 1;
        }
        // Token boundaries sit next to ASCII bytes, so slicing cannot fail.
        let token = s.get(start..i).unwrap_or("");
        if token.starts_with('{') {
            let (inner, err) = strip_group(token);
            if problem.is_none() {
                problem = err;
            }
            out.push(inner.to_string());
        } else {
            out.push(token.to_string());
        }
    }
    (out, problem)
}

/// "{ text }" -> "text", reporting a missing '}' or text after it.
fn strip_group(token: &str) -> (&str, Option<String>) {
    let mut depth = 0usize;
    let mut close = None;
    for (i, c) in token.bytes().enumerate() {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let (inner, err) = match close {
        None => (
            token.get(1..).unwrap_or(""),
            Some(format!("missing '}}' in \"{token}\"")),
        ),
        Some(i) => {
            let err =
                (i + 1 != token.len()).then(|| format!("syntax error after '}}' in \"{token}\""));
            (token.get(1..i).unwrap_or(""), err)
        }
    };
    (inner.trim_matches(is_c_space), err)
}

/// Postfix's valid_hostname(): labels of letters, digits, '-' and '_', each at
/// most 63 bytes, hyphens not at a label's edge, not all-numeric, 255 bytes max.
pub(crate) fn valid_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty hostname".into());
    }
    let b = name.as_bytes();
    let mut label_len = 0usize;
    let mut non_numeric = false;
    for (i, &c) in b.iter().enumerate() {
        let next = b.get(i + 1).copied();
        if c.is_ascii_alphanumeric() || c == b'_' {
            label_len += 1;
            if label_len > 63 {
                return Err(format!("hostname label too long: {name}"));
            }
            if !c.is_ascii_digit() {
                non_numeric = true;
            }
        } else if c == b'.' {
            if label_len == 0 || next.is_none() {
                return Err(format!("misplaced delimiter: {name}"));
            }
            label_len = 0;
        } else if c == b'-' {
            non_numeric = true;
            label_len += 1;
            if label_len == 1 || next.is_none() || next == Some(b'.') {
                return Err(format!("misplaced hyphen: {name}"));
            }
        } else {
            return Err(format!("invalid character {c}(decimal): {name}"));
        }
    }
    if !non_numeric {
        return Err(format!("numeric hostname: {name}"));
    }
    if b.len() > 255 {
        return Err(format!("bad length {} for {name}", b.len()));
    }
    Ok(())
}

/// One dot-separated field of a compatibility level: digits that strtol
/// accepts, then the end of the text or (unless `last`) a '.' and more.
fn level_field(text: &str, last: bool) -> Option<(i64, Option<&str>)> {
    let (n, rest) = strtol(text)?;
    if rest.len() == text.len() || n < 0 {
        return None;
    }
    if rest.is_empty() {
        return Some((n, None));
    }
    match rest.strip_prefix('.') {
        Some(more) if !last => Some((n, Some(more))),
        _ => None,
    }
}

/// Parses a compatibility level "major[.minor[.patch]]" into a comparable
/// triple; minor and patch are limited to 0..=1023 as in Postfix.
pub(crate) fn compat_level(s: &str) -> Result<(i64, i64, i64), String> {
    let bad = || format!("malformed compatibility level syntax: \"{s}\"");
    let (major, rest) = level_field(s, false).ok_or_else(bad)?;
    let Some(rest) = rest else {
        return Ok((major, 0, 0));
    };
    let (minor, rest) = level_field(rest, false)
        .filter(|f| f.0 <= 1023)
        .ok_or_else(bad)?;
    let Some(rest) = rest else {
        return Ok((major, minor, 0));
    };
    let (patch, _) = level_field(rest, true)
        .filter(|f| f.0 <= 1023)
        .ok_or_else(bad)?;
    Ok((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_units_and_default_unit() {
        assert_eq!(conv_time("300s", b's'), Some(300));
        assert_eq!(conv_time("300", b's'), Some(300));
        assert_eq!(conv_time("5m", b's'), Some(300));
        assert_eq!(conv_time("2h", b's'), Some(7200));
        assert_eq!(conv_time("1d", b's'), Some(86400));
        assert_eq!(conv_time("1w", b's'), Some(604_800));
        assert_eq!(conv_time("90", b'd'), Some(90 * 86400));
        assert_eq!(conv_time("0", b's'), Some(0));
        // Only the first letter after the number counts, as in conv_time.
        assert_eq!(conv_time("5min", b's'), Some(300));
        // Bad values.
        assert_eq!(conv_time("10x", b's'), None);
        assert_eq!(conv_time("", b's'), None);
        assert_eq!(conv_time("-1s", b's'), None);
        assert_eq!(conv_time("99999999999", b's'), None);
        assert_eq!(conv_time("9999999w", b's'), None);
        assert_eq!(conv_time("5 s", b's'), None);
    }

    #[test]
    fn numbers_and_bounds() {
        let def = ParamDef {
            name: "x",
            default: Some("1"),
            kind: Kind::Int,
            min: 1,
            max: 10,
        };
        assert_eq!(convert(Kind::Int, Some(&def), "5"), Ok(Value::Int(5)));
        assert_eq!(convert(Kind::Int, Some(&def), "+5"), Ok(Value::Int(5)));
        assert!(convert(Kind::Int, Some(&def), "0").is_err());
        assert!(convert(Kind::Int, Some(&def), "11").is_err());
        assert!(convert(Kind::Int, None, "5x").is_err());
        assert!(convert(Kind::Int, None, "").is_err());
        assert!(convert(Kind::Int, None, "3000000000").is_err());
        assert_eq!(
            convert(Kind::Long, None, "3000000000"),
            Ok(Value::Int(3_000_000_000))
        );
        // min 0 means "no check", so negative numbers pass like in Postfix.
        assert_eq!(convert(Kind::Int, None, "-1"), Ok(Value::Int(-1)));
    }

    #[test]
    fn booleans() {
        for (s, v) in [("yes", true), ("YES", true), ("No", false), ("no", false)] {
            assert_eq!(conv_bool(s), Some(v));
        }
        for s in ["true", "1", "y", "", " yes"] {
            assert_eq!(conv_bool(s), None, "{s:?}");
        }
    }

    #[test]
    fn strings_with_min_length() {
        let def = ParamDef {
            name: "x",
            default: Some("a"),
            kind: Kind::Str,
            min: 1,
            max: 0,
        };
        assert!(convert(Kind::Str, Some(&def), "").is_err());
        assert_eq!(
            convert(Kind::Str, Some(&def), "a"),
            Ok(Value::Str("a".into()))
        );
    }

    #[test]
    fn lists_split_like_mail_parm_split() {
        let v = |s: &str| split_list(s).0;
        assert_eq!(v("a, b\tc\n d,,e"), ["a", "b", "c", "d", "e"]);
        assert_eq!(v(""), Vec::<String>::new());
        assert_eq!(v(" , "), Vec::<String>::new());
        assert_eq!(
            v("TZ { LESS=-m -C -s -f -e } XAUTHORITY"),
            ["TZ", "LESS=-m -C -s -f -e", "XAUTHORITY"]
        );
        assert_eq!(v("{a {b c}} d"), ["a {b c}", "d"]);
        assert_eq!(v("x{ a b }y z"), ["x{ a b }y", "z"]);
        let (items, err) = split_list("TZ { LESS=-m -e  XAUTHORITY");
        assert_eq!(items, ["TZ", "LESS=-m -e  XAUTHORITY"]);
        assert!(err.is_some_and(|e| e.contains("missing '}'")));
        let (items, err) = split_list("TZ { LESS }x XAUTHORITY");
        assert_eq!(items, ["TZ", "LESS", "XAUTHORITY"]);
        assert!(err.is_some_and(|e| e.contains("syntax error after '}'")));
    }

    #[test]
    fn hostnames() {
        assert!(valid_hostname("mail.example.com").is_ok());
        assert!(valid_hostname("a_b.example").is_ok());
        for bad in [
            "", "a..b", ".a", "a.", "-a", "a-", "a-.b", "123", "1.2.3.4", "a b",
        ] {
            assert!(valid_hostname(bad).is_err(), "{bad:?}");
        }
        assert!(valid_hostname(&"a".repeat(64)).is_err());
    }

    #[test]
    fn compatibility_levels() {
        assert_eq!(compat_level("0"), Ok((0, 0, 0)));
        assert_eq!(compat_level("3.6"), Ok((3, 6, 0)));
        assert_eq!(compat_level("3.6.1"), Ok((3, 6, 1)));
        assert!(compat_level("3.6.1.1").is_err());
        assert!(compat_level("3.").is_err());
        assert!(compat_level("x").is_err());
        assert!(compat_level("-1").is_err());
        assert!(compat_level("3.1024").is_err());
        assert!(compat_level("").is_err());
        assert!(compat_level("3.6") > compat_level("2"));
    }
}
