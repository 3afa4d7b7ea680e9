//! Just enough RFC 5322 header parsing for `send -t`: collect To/Cc/Bcc addresses and
//! drop Bcc lines from the message, as sendmail does.

/// Split the message into its header block (unfolded fields) and return the recipients
/// found in To, Cc and Bcc, plus the message with Bcc fields removed.
pub fn recipients_from_headers(msg: &[u8]) -> (Vec<String>, Vec<u8>) {
    let mut out = Vec::with_capacity(msg.len());
    let mut rcpts = Vec::new();
    let mut pos = 0;
    let mut field: Vec<u8> = Vec::new();
    let mut field_raw: Vec<u8> = Vec::new();
    let mut in_headers = true;

    let flush =
        |field: &mut Vec<u8>, raw: &mut Vec<u8>, out: &mut Vec<u8>, rcpts: &mut Vec<String>| {
            if field.is_empty() {
                return;
            }
            let text = String::from_utf8_lossy(field).to_string();
            let (name, value) = text.split_once(':').unwrap_or((&text, ""));
            let lname = name.trim().to_ascii_lowercase();
            if matches!(lname.as_str(), "to" | "cc" | "bcc") {
                rcpts.extend(parse_address_list(value));
            }
            if lname != "bcc" {
                out.extend_from_slice(raw);
            }
            field.clear();
            raw.clear();
        };

    while pos < msg.len() {
        let end = msg[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| pos + i + 1)
            .unwrap_or(msg.len());
        let line = &msg[pos..end];
        pos = end;
        if !in_headers {
            out.extend_from_slice(line);
            continue;
        }
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            flush(&mut field, &mut field_raw, &mut out, &mut rcpts);
            in_headers = false;
            out.extend_from_slice(line);
            continue;
        }
        if (content[0] == b' ' || content[0] == b'\t') && !field.is_empty() {
            field.extend_from_slice(content);
            field_raw.extend_from_slice(line);
            continue;
        }
        flush(&mut field, &mut field_raw, &mut out, &mut rcpts);
        if !content.contains(&b':') {
            // Not a header: the body starts here (no separator line).
            in_headers = false;
            out.extend_from_slice(line);
            continue;
        }
        field.extend_from_slice(content);
        field_raw.extend_from_slice(line);
    }
    flush(&mut field, &mut field_raw, &mut out, &mut rcpts);
    (rcpts, out)
}

/// Addresses in an address list: `a@b, "Name, X" <c@d>, group: e@f;`.
pub fn parse_address_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut depth = 0u32; // comment nesting
    let mut angle: Option<String> = None;
    let mut chars = value.chars().peekable();
    let push = |cur: &mut String, angle: &mut Option<String>, out: &mut Vec<String>| {
        let addr = match angle.take() {
            Some(a) => a,
            None => cur.trim().to_string(),
        };
        let addr = addr.trim().to_string();
        if !addr.is_empty() {
            out.push(addr);
        }
        cur.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quote => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' if depth == 0 => in_quote = !in_quote,
            '(' if !in_quote => depth += 1,
            ')' if !in_quote && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            '<' if !in_quote => {
                let mut a = String::new();
                for n in chars.by_ref() {
                    if n == '>' {
                        break;
                    }
                    a.push(n);
                }
                angle = Some(a);
            }
            ':' if !in_quote => cur.clear(), // group name
            ',' | ';' if !in_quote => push(&mut cur, &mut angle, &mut out),
            _ if in_quote => {}
            _ => cur.push(c),
        }
    }
    push(&mut cur, &mut angle, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_address_list("a@b"), ["a@b"]);
        assert_eq!(
            parse_address_list("\"Doe, J\" <j@x>, k@y (Kay), <l@z>"),
            ["j@x", "k@y", "l@z"]
        );
        assert_eq!(parse_address_list("team: a@b, c@d;"), ["a@b", "c@d"]);
        assert!(parse_address_list("").is_empty());
    }

    #[test]
    fn bcc_removed() {
        let msg = b"To: a@x\r\nBcc: hidden@y,\r\n  other@z\r\nSubject: s\r\n\r\nTo: not@header\r\n";
        let (r, out) = recipients_from_headers(msg);
        assert_eq!(r, ["a@x", "hidden@y", "other@z"]);
        assert_eq!(out, b"To: a@x\r\nSubject: s\r\n\r\nTo: not@header\r\n");
    }
}
