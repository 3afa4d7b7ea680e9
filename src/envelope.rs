//! Envelope encodings: RFC 821/5321 local-part quoting, xtext (RFC 3461) and uxtext
//! (RFC 6533), as Postfix applies them to MAIL FROM, RCPT TO, ENVID and ORCPT.

/// Quote the local part of an address for the envelope when it is not a dot-string.
/// Eight-bit bytes are allowed unquoted (Postfix's 8BITCLEAN default).
pub fn quote_821(addr: &str) -> String {
    if addr.is_empty() {
        return String::new();
    }
    let at = addr.rfind('@').unwrap_or(addr.len());
    let (local, domain) = addr.split_at(at);
    if is_dot_string(local) {
        return addr.to_string();
    }
    let mut out = String::with_capacity(addr.len() + 4);
    out.push('"');
    for c in local.chars() {
        if matches!(c, '\r' | '\n' | '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out.push_str(domain);
    out
}

fn is_dot_string(local: &str) -> bool {
    let b = local.as_bytes();
    if b.is_empty() || b[0] == b'.' || b[b.len() - 1] == b'.' {
        return false;
    }
    for (i, &c) in b.iter().enumerate() {
        if c == b'.' && b.get(i + 1) == Some(&b'.') {
            return false;
        }
        if c == b' ' || c.is_ascii_control() {
            return false;
        }
        if matches!(
            c,
            b'<' | b'>' | b'(' | b')' | b'[' | b']' | b'\\' | b',' | b';' | b':' | b'@' | b'"'
        ) {
            return false;
        }
    }
    true
}

/// RFC 822 local-part quoting for ORCPT values built from the original recipient.
pub fn quote_822(addr: &str) -> String {
    // Same specials as RFC 821 plus '.', handled by the dot-string test; good enough for
    // the ORCPT use, where the result is xtext-encoded anyway.
    quote_821(addr)
}

/// xtext-encode: '+', '=' (when special), and bytes outside 33..126 become "+XX".
pub fn xtext(value: &str, special: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b != b'+' && b > 32 && b < 127 && !special.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// uxtext-encode (RFC 6533) as Postfix does: printable ASCII other than '\\' and the
/// specials stays, every other character becomes "\x{HEX}" with its code point (at least
/// two hex digits).
pub fn uxtext(value: &str, special: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let code = c as u32;
        if c != '\\' && code > 32 && code < 127 && !special.contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{code:02X}}}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_821("user@example.com"), "user@example.com");
        assert_eq!(quote_821("a.b@x"), "a.b@x");
        assert_eq!(quote_821("a b@x"), "\"a b\"@x");
        assert_eq!(quote_821("a..b@x"), "\"a..b\"@x");
        assert_eq!(quote_821(".a@x"), "\".a\"@x");
        assert_eq!(quote_821("a\"b@x"), "\"a\\\"b\"@x");
        assert_eq!(quote_821("a@b@x"), "\"a@b\"@x");
        assert_eq!(quote_821("postmaster"), "postmaster");
        assert_eq!(quote_821("üser@x"), "üser@x");
    }

    #[test]
    fn xtext_encoding() {
        assert_eq!(xtext("rfc822;a+b=c@x", "="), "rfc822;a+2Bb+3Dc@x");
        assert_eq!(xtext("id 1", "+="), "id+201");
        assert_eq!(uxtext("utf-8;ü=x", "+="), "utf-8;\\x{FC}\\x{3D}x");
        assert_eq!(uxtext("a\u{1}b", ""), "a\\x{01}b");
    }
}
