//! main.cf syntax: logical lines and `name = value` pairs.
//!
//! A line whose first non-blank character is `#` is a comment, and blank lines
//! are ignored; neither ends a logical line. A line that starts with
//! whitespace continues the previous logical line (joined as is, without the
//! newline). Values are kept raw: `$name` expansion happens at lookup time.

use super::value::is_c_space;

/// One `name = value` setting and the physical line where it began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// A main.cf line that is not `name = value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// The settings of a main.cf file, in file order, plus the warnings Postfix
/// would log while reading it (`path` only prefixes those warnings).
pub(crate) fn parse_main_cf(
    text: &str,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Entry>, SyntaxError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut current: Option<(String, usize)> = None;
    // A trailing newline does not start another (empty) line.
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut finish =
        |logical: Option<(String, usize)>, entries: &mut Vec<Entry>| -> Result<(), SyntaxError> {
            let Some((line_text, line)) = logical else {
                return Ok(());
            };
            if line_text.starts_with(is_c_space) {
                // Text continuing nothing; Postfix warns and skips it.
                let shown: String = line_text.chars().take(30).collect();
                let more = if line_text.chars().count() > 30 {
                    "..."
                } else {
                    ""
                };
                warnings.push(format!(
                    "{path}: logical line must not start with whitespace: \"{shown}{more}\""
                ));
                return Ok(());
            }
            let (name, value) = split_nameval(&line_text).map_err(|err| SyntaxError {
                line,
                message: format!("{err}: \"{line_text}\""),
            })?;
            if let Some(old) = entries.iter().rev().find(|e| e.name == name)
                && old.value != value
            {
                warnings.push(format!(
                    "{path}, line {line}: overriding earlier entry: {}={}",
                    old.name, old.value
                ));
            }
            entries.push(Entry {
                name: name.to_string(),
                value: value.to_string(),
                line,
            });
            Ok(())
        };
    if !text.is_empty() {
        for (index, raw) in body.split('\n').enumerate() {
            let lineno = index + 1;
            let trimmed = raw.trim_start_matches(is_c_space);
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            match current.as_mut() {
                Some((logical, _)) if raw.starts_with(is_c_space) => logical.push_str(raw),
                _ => {
                    finish(current.take(), &mut entries)?;
                    current = Some((raw.to_string(), lineno));
                }
            }
        }
    }
    finish(current.take(), &mut entries)?;
    Ok(entries)
}

/// Splits "name = value": the name is the first word, blanks around '=' and
/// at the end are dropped. Errors use Postfix's wording.
pub(crate) fn split_nameval(s: &str) -> Result<(&str, &str), &'static str> {
    let s = s.trim_start_matches(is_c_space);
    if s.is_empty() || s.starts_with('=') {
        return Err("missing attribute name");
    }
    let name_end = s
        .find(|c: char| is_c_space(c) || c == '=')
        .unwrap_or(s.len());
    let (name, rest) = s.split_at(name_end);
    let Some(value) = rest.trim_start_matches(is_c_space).strip_prefix('=') else {
        return Err("missing '=' after attribute name");
    };
    Ok((name, value.trim_matches(is_c_space)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Result<Vec<Entry>, SyntaxError>, Vec<String>) {
        let mut w = Vec::new();
        let r = parse_main_cf(text, "main.cf", &mut w);
        (r, w)
    }

    fn pairs(text: &str) -> Vec<(String, String, usize)> {
        match parse(text).0 {
            Ok(v) => v.into_iter().map(|e| (e.name, e.value, e.line)).collect(),
            Err(e) => panic!("{e:?}"),
        }
    }

    fn p(n: &str, v: &str, l: usize) -> (String, String, usize) {
        (n.to_string(), v.to_string(), l)
    }

    #[test]
    fn names_values_and_whitespace() {
        assert_eq!(
            pairs("a=b\nc   =   d e  \nempty =\n  \n"),
            [p("a", "b", 1), p("c", "d e", 2), p("empty", "", 3)]
        );
        assert_eq!(pairs("a = b\r\n"), [p("a", "b", 1)]);
        assert_eq!(pairs(""), []);
        assert_eq!(pairs("a = b"), [p("a", "b", 1)]);
        assert_eq!(pairs("a = x=y = z"), [p("a", "x=y = z", 1)]);
    }

    #[test]
    fn comments() {
        let text = "# comment\n   # indented comment\na = b # not a comment\n#\n";
        assert_eq!(pairs(text), [p("a", "b # not a comment", 3)]);
    }

    #[test]
    fn continuation_lines() {
        let text = "a = one,\n    two,\n\ttwo-b\nb = x\n";
        assert_eq!(
            pairs(text),
            [p("a", "one,    two,\ttwo-b", 1), p("b", "x", 4)]
        );
        // Comment and blank lines do not end a logical line.
        let text = "a = one\n# note\n\n   two\nb = 2\n";
        assert_eq!(pairs(text), [p("a", "one   two", 1), p("b", "2", 5)]);
        // The name may even be continued onto the next line.
        assert_eq!(pairs("a\n = b\n"), [p("a", "b", 1)]);
    }

    #[test]
    fn leading_whitespace_without_previous_line() {
        let (r, w) = parse("  a = b\nc = d\n");
        assert_eq!(r.map(|v| v.len()), Ok(1));
        assert!(
            w.first()
                .is_some_and(|w| w.contains("must not start with whitespace"))
        );
    }

    #[test]
    fn duplicates_warn_and_last_wins_in_order() {
        let (r, w) = parse("a = 1\na = 2\na = 2\n");
        assert_eq!(r.map(|v| v.len()), Ok(3));
        assert_eq!(w.len(), 1);
        assert!(
            w.first()
                .is_some_and(|w| w.contains("line 2: overriding earlier entry: a=1"))
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let (r, _) = parse("a = b\n\n# c\nbogus line\n");
        let e = r.err();
        assert_eq!(e.as_ref().map(|e| e.line), Some(4));
        assert!(e.is_some_and(|e| e.message.contains("missing '=' after attribute name")));
        let (r, _) = parse("= x\n");
        assert!(r.is_err_and(|e| e.message.contains("missing attribute name")));
    }

    #[test]
    fn split_nameval_cases() {
        assert_eq!(split_nameval("a=b"), Ok(("a", "b")));
        assert_eq!(split_nameval("  a  =  b c  "), Ok(("a", "b c")));
        assert_eq!(split_nameval("a="), Ok(("a", "")));
        assert!(split_nameval("a b = c").is_err());
        assert!(split_nameval("").is_err());
        assert!(split_nameval("a").is_err());
    }
}
