//! Small text helpers shared by the table parsers: Postfix's logical-line reader, the
//! brace-aware tokenizer used for map lists and inline tables, `$number` template
//! parsing, and key case folding.

/// ASCII whitespace as C's isspace() in the "C" locale.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Split a file's bytes into logical lines as Postfix's readllines(): blank lines and
/// lines whose first non-blank is `#` are dropped, a line starting with whitespace
/// continues the previous one (joined without the newline), and a logical line that
/// would start with whitespace is dropped with a warning. Returns (line number of the
/// first physical line, text).
pub fn logical_lines(data: &[u8], warnings: &mut Vec<String>, path: &str) -> Vec<(usize, Vec<u8>)> {
    let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut cur: Option<(usize, Vec<u8>)> = None;
    let mut lineno = 0usize;
    let mut rest = data;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        lineno += 1;
        let first = line.iter().position(|&b| !is_space(b));
        let Some(first) = first else { continue };
        if line[first] == b'#' {
            continue;
        }
        let continues = is_space(line[0]);
        match (&mut cur, continues) {
            (Some((_, text)), true) => text.extend_from_slice(line),
            (_, true) => warnings.push(format!(
                "{path}: logical line must not start with whitespace: \"{}\"",
                String::from_utf8_lossy(&line[..line.len().min(30)])
            )),
            (_, false) => {
                if let Some(done) = cur.take() {
                    out.push(done);
                }
                cur = Some((lineno, line.to_vec()));
            }
        }
    }
    if let Some(done) = cur {
        out.push(done);
    }
    out
}

/// Trim trailing ASCII whitespace.
pub fn trim_end(s: &[u8]) -> &[u8] {
    let mut end = s.len();
    while end > 0 && is_space(s[end - 1]) {
        end -= 1;
    }
    &s[..end]
}

/// Skip leading ASCII whitespace.
pub fn trim_start(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    &s[start..]
}

/// Length of a balanced `{...}` group at the start of `s` (0 when unbalanced or when
/// `s` does not start with `{`), as Postfix's balpar().
pub fn balanced_len(s: &[u8]) -> usize {
    if s.first() != Some(&b'{') {
        return 0;
    }
    let mut level = 0usize;
    for (i, &b) in s.iter().enumerate() {
        if b == b'{' {
            level += 1;
        } else if b == b'}' {
            level -= 1;
            if level == 0 {
                return i + 1;
            }
        }
    }
    0
}

/// Split on separators, keeping `{...}` groups intact (Postfix's mystrtokq with
/// CHARS_BRACE). An unbalanced `{` swallows the rest of the input into one token.
pub fn tokens_with_braces<'a>(s: &'a str, seps: &[u8]) -> Vec<&'a str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && seps.contains(&b[i]) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        let mut level = 0usize;
        while i < b.len() {
            let c = b[i];
            if c == b'{' {
                level += 1;
            } else if c == b'}' && level > 0 {
                level -= 1;
            } else if level == 0 && seps.contains(&c) {
                break;
            }
            i += 1;
        }
        // Separators are ASCII, so these are char boundaries.
        out.push(&s[start..i]);
    }
    out
}

/// Strip one enclosing `{ ... }` pair and surrounding whitespace, as Postfix's extpar()
/// with EXTPAR_FLAG_STRIP. Errors name the problem as Postfix does.
pub fn strip_braces(s: &str) -> Result<&str, String> {
    let b = s.as_bytes();
    let len = balanced_len(b);
    if len == 0 {
        return Err(format!("missing '}}' in \"{s}\""));
    }
    if len != b.len() {
        return Err(format!("syntax error after '}}' in \"{s}\""));
    }
    let inner = &s[1..len - 1];
    Ok(inner.trim_matches(|c: char| c.is_ascii() && is_space(c as u8)))
}

/// One piece of a `$number` replacement template.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Literal(Vec<u8>),
    Group(usize),
}

/// Parse a replacement text as Postfix's mac_parse() plus the regexp/pcre pre-scan:
/// `$$` is a dollar, `$n`, `${n}` and `$(n)` name a group 1..; anything else is an error.
pub fn parse_template(text: &[u8]) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'$' {
            lit.push(text[i]);
            i += 1;
            continue;
        }
        if text.get(i + 1) == Some(&b'$') {
            lit.push(b'$');
            i += 2;
            continue;
        }
        i += 1;
        let name: &[u8];
        match text.get(i) {
            Some(&open) if open == b'{' || open == b'(' => {
                let close = if open == b'{' { b'}' } else { b')' };
                let mut level = 1;
                let mut j = i + 1;
                loop {
                    let Some(&c) = text.get(j) else {
                        return Err("truncated macro reference".into());
                    };
                    if c == open {
                        level += 1;
                    } else if c == close {
                        level -= 1;
                        if level == 0 {
                            break;
                        }
                    }
                    j += 1;
                }
                name = &text[i + 1..j];
                i = j + 1;
            }
            _ => {
                let mut j = i;
                while j < text.len() && (text[j].is_ascii_alphanumeric() || text[j] == b'_') {
                    j += 1;
                }
                name = &text[i..j];
                i = j;
            }
        }
        if name.is_empty() {
            return Err("empty macro name".into());
        }
        if !name.iter().all(u8::is_ascii_digit) {
            return Err(format!(
                "non-numeric replacement index \"{}\"",
                String::from_utf8_lossy(name)
            ));
        }
        // Digits only, so parsing can fail only on overflow: treat that as out of range.
        let n: usize = std::str::from_utf8(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX);
        if n < 1 {
            return Err(format!(
                "out of range replacement index \"{}\"",
                String::from_utf8_lossy(name)
            ));
        }
        if !lit.is_empty() {
            out.push(Piece::Literal(std::mem::take(&mut lit)));
        }
        out.push(Piece::Group(n));
    }
    if !lit.is_empty() {
        out.push(Piece::Literal(lit));
    }
    Ok(out)
}

/// Largest group number a template uses (0 for none).
pub fn max_group(pieces: &[Piece]) -> usize {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Group(n) => *n,
            Piece::Literal(_) => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Fold a lookup key the way Postfix does for fixed-string tables: Unicode full case
/// folding when SMTPUTF8 is on (casefold() with ICU), ASCII lowercase otherwise.
pub fn fold_key(key: &str, utf8: bool) -> String {
    if utf8 && !key.is_ascii() {
        caseless::default_case_fold_str(key)
    } else {
        key.to_ascii_lowercase()
    }
}
