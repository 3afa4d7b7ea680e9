//! `$name` expansion with Postfix 3.x semantics: `$name`, `${name}`, `$(name)`,
//! `$$`, the conditionals `${name?text}`, `${name:text}`, `${name?{t}:{f}}`,
//! relational tests `${{a} == {b} ? {t} : {f}}` (also `!= < <= > >=`, and the
//! `<level` family that compares compatibility levels), recursive expansion of
//! looked-up values, and a nesting limit so that `a = $a` is an error rather
//! than a hang. Undefined names expand to nothing.
//!
//! The lookup callback returns a parameter's *raw* value; this module never
//! knows where values come from.

use super::value::compat_level;
use std::cmp::Ordering;

/// Postfix gives up after this many nested expansion steps.
const MAX_NESTING: usize = 100;

/// Whitespace allowed around `{text}` operands (Postfix's CHARS_SPACE).
const WS: &[char] = &[' ', '\t', '\r', '\n'];

/// Returns the raw value of a parameter, or `None` when it is undefined.
pub(crate) type Lookup<'a> = dyn Fn(&str) -> Option<&'a str> + 'a;

/// Expands `pattern` completely. The error text names the problem and the
/// offending text, like Postfix's warnings before its "macro processing error".
pub(crate) fn expand<'a>(pattern: &str, lookup: &Lookup<'a>) -> Result<String, String> {
    let mut out = String::new();
    Expander { lookup }.parse(pattern, 0, &mut out)?;
    Ok(out)
}

struct Expander<'l, 'a> {
    lookup: &'l Lookup<'a>,
}

/// Relational operators.
#[derive(Clone, Copy)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Ge,
    Gt,
}

/// At most 20 characters of `s`, for error messages.
fn head(s: &str) -> &str {
    match s.char_indices().nth(20) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

/// If `s` is optional whitespace then '{', the text from that '{' on.
fn find_left_curly(s: &str) -> Option<&str> {
    let t = s.trim_start_matches(WS);
    t.starts_with('{').then_some(t)
}

/// Splits "{payload} rest" (with balanced braces) into payload and the rest
/// after any whitespace following the closing brace.
fn extract_curly(s: &str) -> Result<(&str, &str), String> {
    let mut depth = 0usize;
    for (i, c) in s.bytes().enumerate() {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    let payload = s.get(1..i).unwrap_or("");
                    let rest = s.get(i + 1..).unwrap_or("").trim_start_matches(WS);
                    return Ok((payload, rest));
                }
            }
            _ => {}
        }
    }
    Err(format!("unbalanced {{}} in attribute expression: \"{s}\""))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Postfix compares numerically when both sides are all digits, else as bytes.
fn compare_plain(l: &str, r: &str) -> Ordering {
    if all_digits(l) && all_digits(r) {
        let l = l.trim_start_matches('0');
        let r = r.trim_start_matches('0');
        l.len().cmp(&r.len()).then_with(|| l.cmp(r))
    } else {
        l.as_bytes().cmp(r.as_bytes())
    }
}

impl<'a> Expander<'_, 'a> {
    /// Splits `value` into literal text and `$` references (Postfix's
    /// mac_parse) and expands each piece at nesting depth `level`.
    fn parse(&self, value: &str, level: usize, out: &mut String) -> Result<(), String> {
        let b = value.as_bytes();
        let mut literal = String::new();
        let mut i = 0;
        while i < b.len() {
            if b.get(i) != Some(&b'$') {
                let next = value
                    .get(i..)
                    .and_then(|rest| rest.find('$'))
                    .map_or(b.len(), |k| i + k);
                literal.push_str(value.get(i..next).unwrap_or(""));
                i = next;
                continue;
            }
            if b.get(i + 1) == Some(&b'$') {
                literal.push('$');
                i += 2;
                continue;
            }
            if !literal.is_empty() {
                self.literal(&literal, level, out)?;
                literal.clear();
            }
            i += 1;
            let name = match b.get(i) {
                Some(&open @ (b'{' | b'(')) => {
                    let close = if open == b'{' { b'}' } else { b')' };
                    let start = i + 1;
                    let mut depth = 1usize;
                    let mut j = start;
                    while depth > 0 {
                        match b.get(j) {
                            None => return Err(format!("truncated macro reference: \"{value}\"")),
                            Some(&c) if c == open => depth += 1,
                            Some(&c) if c == close => depth -= 1,
                            Some(_) => {}
                        }
                        j += 1;
                    }
                    i = j;
                    value.get(start..j - 1).unwrap_or("")
                }
                _ => {
                    let start = i;
                    while b
                        .get(i)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    {
                        i += 1;
                    }
                    value.get(start..i).unwrap_or("")
                }
            };
            if name.is_empty() {
                return Err(format!("empty macro name: \"{value}\""));
            }
            self.reference(name, level, out)?;
        }
        if !literal.is_empty() {
            self.literal(&literal, level, out)?;
        }
        Ok(())
    }

    fn check_depth(level: usize, text: &str) -> Result<(), String> {
        if level > MAX_NESTING {
            return Err(format!("unreasonable macro call nesting: \"{text}\""));
        }
        Ok(())
    }

    fn literal(&self, text: &str, level: usize, out: &mut String) -> Result<(), String> {
        Self::check_depth(level, text)?;
        out.push_str(text);
        Ok(())
    }

    /// One `$...` reference; `text` is what was between the braces (or the bare name).
    fn reference(&self, text: &str, level: usize, out: &mut String) -> Result<(), String> {
        Self::check_depth(level, text)?;
        let value: Option<&str>;
        let op: Option<u8>;
        let mut rest: &str;
        if let Some(curly) = find_left_curly(text) {
            let (truth, after) = self.relational(curly, level)?;
            value = Some(if truth { "true" } else { "" });
            match after.as_bytes().first() {
                None => {
                    op = None;
                    rest = "";
                }
                Some(&c @ (b'?' | b':')) => {
                    op = Some(c);
                    rest = after.get(1..).unwrap_or("");
                }
                Some(_) => {
                    return Err(format!(
                        "\"?\" or \":\" expected at: \"...}}>>>{}\"",
                        head(after)
                    ));
                }
            }
        } else {
            let s = text.trim_start_matches(WS);
            let sb = s.as_bytes();
            let mut k = 0;
            loop {
                // Whitespace may separate the name from '?' or ':' or the end.
                let ws = s
                    .get(k..)
                    .map_or(0, |t| t.len() - t.trim_start_matches(WS).len());
                match sb.get(k + ws) {
                    None => {
                        op = None;
                        rest = "";
                        break;
                    }
                    Some(&c @ (b'?' | b':')) => {
                        op = Some(c);
                        rest = s.get(k + ws + 1..).unwrap_or("");
                        break;
                    }
                    Some(_) => {}
                }
                // Only name characters precede k, so k is a char boundary.
                let c = sb.get(k).copied().unwrap_or(b' ');
                if !(c.is_ascii_alphanumeric() || c == b'_') {
                    return Err(format!(
                        "attribute name syntax error at: \"...{}>>>{}\"",
                        s.get(..k).unwrap_or(""),
                        head(s.get(k..).unwrap_or(""))
                    ));
                }
                k += 1;
            }
            value = (self.lookup)(s.get(..k).unwrap_or(""));
        }
        let non_empty = value.is_some_and(|v| !v.is_empty());
        match op {
            Some(b'?') => {
                let (if_true, after) = match find_left_curly(rest) {
                    Some(curly) => extract_curly(curly)?,
                    None => (rest, ""),
                };
                if non_empty {
                    self.parse(if_true, level + 1, out)?;
                }
                if after.is_empty() {
                    return Ok(());
                }
                let Some(else_part) = after.strip_prefix(':') else {
                    return Err(format!(
                        "\":\" expected at: \"...{if_true}}}>>>{}\"",
                        head(after)
                    ));
                };
                rest = else_part;
                self.otherwise(rest, non_empty, level, out)
            }
            Some(_) => self.otherwise(rest, non_empty, level, out),
            None => match value {
                Some(v) if !v.is_empty() => self.parse(v, level + 1, out),
                _ => Ok(()),
            },
        }
    }

    /// The text after ':' — used when the tested value is empty or undefined.
    fn otherwise(
        &self,
        rest: &str,
        non_empty: bool,
        level: usize,
        out: &mut String,
    ) -> Result<(), String> {
        let (if_false, after) = match find_left_curly(rest) {
            Some(curly) => extract_curly(curly)?,
            None => (rest, ""),
        };
        if !non_empty {
            self.parse(if_false, level + 1, out)?;
        }
        if !after.is_empty() {
            return Err(format!(
                "unexpected input at: \"...{if_false}}}>>>{}\"",
                head(after)
            ));
        }
        Ok(())
    }

    /// `{left} op {right}` at the start of `s`; returns the truth value and
    /// the text after the right operand.
    fn relational<'s>(&self, s: &'s str, level: usize) -> Result<(bool, &'s str), String> {
        let (left, after_left) = extract_curly(s)?;
        let op_len = after_left
            .bytes()
            .take_while(|c| b"<>!=?+-*/~&|%".contains(c))
            .count();
        let op_text = after_left.get(..op_len).unwrap_or("");
        let op = match op_text {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">=" => Op::Ge,
            ">" => Op::Gt,
            _ => {
                return Err(format!(
                    "\"==\", \"!=\", \"<\", \"<=\", \">=\" or \">\" expected at: \"...{{{left}}}>>>{}\"",
                    head(after_left)
                ));
            }
        };
        let mut rest = after_left.get(op_len..).unwrap_or("");
        // An operator suffix selects a custom comparison; Postfix registers
        // only "level" (compatibility levels such as 3.6).
        let suffix_len = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
        let by_level = suffix_len > 0;
        if by_level {
            let suffix = rest.get(..suffix_len).unwrap_or("");
            if suffix != "level" {
                return Err(format!(
                    "bad operator suffix at: \"...{op_text}>>>{suffix}\""
                ));
            }
            rest = rest.get(suffix_len..).unwrap_or("");
        }
        let Some(curly) = find_left_curly(rest) else {
            return Err(format!(
                "\"{{expression}}\" expected at: \"...{{{left}}} {op_text}>>>{}\"",
                head(rest)
            ));
        };
        let (right, after) = extract_curly(curly)?;
        // Postfix expands the operands in a fresh context; keeping the depth
        // count here bounds self-referencing tests instead of overflowing.
        let mut lv = String::new();
        self.parse(left, level + 1, &mut lv)?;
        let mut rv = String::new();
        self.parse(right, level + 1, &mut rv)?;
        let ord = if by_level {
            compat_level(&lv)?.cmp(&compat_level(&rv)?)
        } else {
            compare_plain(&lv, &rv)
        };
        let truth = match op {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Gt => ord == Ordering::Greater,
        };
        Ok((truth, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(pattern: &str, vars: &[(&str, &str)]) -> Result<String, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let lookup = |n: &str| map.get(n).map(String::as_str);
        expand(pattern, &lookup)
    }

    fn ok(pattern: &str, vars: &[(&str, &str)]) -> String {
        match run(pattern, vars) {
            Ok(s) => s,
            Err(e) => panic!("{pattern:?}: {e}"),
        }
    }

    #[test]
    fn plain_forms() {
        let v = [("a", "A"), ("b_1", "B")];
        assert_eq!(ok("x $a y", &v), "x A y");
        assert_eq!(ok("${a}${b_1}", &v), "AB");
        assert_eq!(ok("$(a)-$(b_1)", &v), "A-B");
        assert_eq!(ok("$a.$b_1", &v), "A.B");
        assert_eq!(ok("$undefined|", &v), "|");
        assert_eq!(ok("${ a }", &v), "A");
        assert_eq!(ok("no refs", &v), "no refs");
    }

    #[test]
    fn dollar_dollar_is_literal() {
        assert_eq!(ok("$$a costs $$5", &[("a", "A")]), "$a costs $5");
        // A "$$" inside a referenced value also ends up as one '$'.
        assert_eq!(ok("$p", &[("p", "x$$y")]), "x$y");
    }

    #[test]
    fn recursion() {
        let v = [("a", "<$b>"), ("b", "[$c]"), ("c", "C")];
        assert_eq!(ok("$a", &v), "<[C]>");
    }

    #[test]
    fn conditionals() {
        let v = [("set", "x"), ("empty", "")];
        assert_eq!(ok("${set?yes}", &v), "yes");
        assert_eq!(ok("${empty?yes}", &v), "");
        assert_eq!(ok("${nope?yes}", &v), "");
        assert_eq!(ok("${set:no}", &v), "");
        assert_eq!(ok("${empty:no}", &v), "no");
        assert_eq!(ok("${nope:no}", &v), "no");
        // Old-style text keeps leading blanks and any '?' or ':' in it.
        assert_eq!(ok("${set? a:b}", &v), " a:b");
        assert_eq!(ok("${set?$set}", &v), "x");
        // Braced forms, alone and as a ternary.
        assert_eq!(ok("${set?{yes}}", &v), "yes");
        assert_eq!(ok("${nope:{no}}", &v), "no");
        assert_eq!(ok("${set?{T}:{F}}", &v), "T");
        assert_eq!(ok("${empty?{T}:{F}}", &v), "F");
        assert_eq!(ok("${empty ? {T} : {F}}", &v), "F");
        assert_eq!(ok("${set?{T}:F}", &v), "T");
        assert_eq!(ok("${empty?{T}:F}", &v), "F");
        assert_eq!(ok("${set?{${set}!}}", &v), "x!");
        // Postfix 3.7's own defaults.
        let d = [("smtp_per_record_deadline", "yes")];
        let pat = "${smtp_per_record_deadline?{$smtp_per_record_deadline}:{no}}";
        assert_eq!(ok(pat, &d), "yes");
        assert_eq!(ok(pat, &[]), "no");
        assert_eq!(ok("${stress?{10}:{300}}s", &[]), "300s");
        assert_eq!(ok("${stress?{10}:{300}}s", &[("stress", "yes")]), "10s");
    }

    #[test]
    fn relational_tests() {
        let v = [("lvl", "dane"), ("n", "10")];
        let p = "${{$lvl} == {dane} ? {dane} : {may}}";
        assert_eq!(ok(p, &v), "dane");
        assert_eq!(ok(p, &[("lvl", "may")]), "may");
        assert_eq!(ok("${{$n} > {9}?{big}:{small}}", &v), "big");
        assert_eq!(ok("${{$n} < {9}?{small}:{big}}", &v), "big");
        assert_eq!(ok("${{abc} < {abd}?{lt}}", &v), "lt");
        assert_eq!(ok("${{a} != {b}}", &v), "true");
        assert_eq!(ok("${{a} == {b}}", &v), "");
        let p = "${{$compatibility_level} <level {3.6} ? {md5} : {sha256}}";
        assert_eq!(ok(p, &[("compatibility_level", "0")]), "md5");
        assert_eq!(ok(p, &[("compatibility_level", "3.6")]), "sha256");
        assert_eq!(ok(p, &[("compatibility_level", "3.10")]), "sha256");
        assert!(run(p, &[("compatibility_level", "x")]).is_err());
        assert!(run("${{a} =~ {b}?{x}}", &[]).is_err());
        assert!(run("${{a} <foo {b}?{x}}", &[]).is_err());
        assert!(run("${{a} == b}", &[]).is_err());
        assert!(run("${{a} == {b} x}", &[]).is_err());
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "${a",
            "$(a",
            "$",
            "x$",
            "$-",
            "${}",
            "${a b}",
            "${a-b}",
            "${x?{a}",
            "${x?{a} junk}",
            "${x:{a} junk}",
        ] {
            assert!(run(bad, &[("x", "1")]).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn nesting_limit() {
        let e = run("$a", &[("a", "$a")]);
        assert!(e.is_err_and(|e| e.contains("unreasonable macro call nesting")));
        let e = run("$a", &[("a", "x$b"), ("b", "y$a")]);
        assert!(e.is_err_and(|e| e.contains("unreasonable macro call nesting")));
        let e = run("$a", &[("a", "${{$a} == {x}?{y}}")]);
        assert!(e.is_err_and(|e| e.contains("unreasonable macro call nesting")));
        // Deep but finite chains are fine.
        let names: Vec<String> = (0..50).map(|i| format!("v{i}")).collect();
        let mut vars: Vec<(String, String)> = names
            .windows(2)
            .filter_map(|w| match w {
                [a, b] => Some((a.clone(), format!("${b}"))),
                _ => None,
            })
            .collect();
        vars.push(("v49".into(), "end".into()));
        let refs: Vec<(&str, &str)> = vars.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(ok("$v0", &refs), "end");
    }

    #[test]
    fn non_ascii_text_is_kept() {
        assert_eq!(ok("héllo $a ü", &[("a", "ß")]), "héllo ß ü");
        assert!(run("${aé}", &[]).is_err());
    }
}
