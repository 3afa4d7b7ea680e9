//! regexp: (POSIX extended regular expressions through the C library's regcomp, as
//! Postfix's dict_regexp.c) and pcre: (PCRE2 in byte mode, as dict_pcre.c) tables. Both
//! share one rule language: `/pattern/flags result`, `!/pattern/` negation, IF/ENDIF
//! blocks, `$n` substitution; regexp: also takes `/p1/!/p2/`. Bad rules are skipped
//! with a warning, as Postfix does, so a table with a typo still answers.

use super::text::{self, Piece, is_space};
use super::{Dict, TableError};
use std::ffi::CString;

/// Group spans of a match (index 0 = whole match; None = group did not take part).
pub type Spans = Vec<Option<(usize, usize)>>;

/// One compiled expression.
pub trait Engine: Sized + Send {
    const MAP: &'static str;
    /// Compile; `options` is the engine's own flag word. Returns the expression and its
    /// number of capture groups, or Postfix's error text.
    fn compile(pattern: &[u8], options: u32) -> Result<(Self, usize), String>;
    /// Match; on success returns group spans (index 0 = whole match) when `groups` > 0.
    /// Errors are reported as warnings and count as "no match", as in Postfix.
    fn exec(&self, subject: &[u8], groups: usize) -> Result<Option<Spans>, String>;
    /// Default option word and the option letters this engine accepts.
    fn default_options() -> u32;
    fn option(letter: u8) -> Option<u32>;
    /// Option added to an expression whose groups are never used.
    fn nosub() -> u32 {
        0
    }
    /// regexp: stops option letters at `!` (for `/p1/!/p2/`); pcre: does not.
    const SECOND_PATTERN: bool;
}

struct Pattern<E> {
    expr: E,
    nsub: usize,
    positive: bool,
}

enum Op<E> {
    Match {
        first: Pattern<E>,
        second: Option<Pattern<E>>,
        replacement: Vec<Piece>,
        max_sub: usize,
    },
    If {
        pat: Pattern<E>,
        end: Option<usize>,
    },
    Endif,
}

pub struct RegexTable<E: Engine> {
    ops: Vec<Op<E>>,
    name: String,
    lines: Vec<usize>,
    pub warnings: Vec<String>,
    exec_warnings: std::cell::RefCell<Vec<String>>,
}

struct RawPat {
    text: Vec<u8>,
    options: u32,
    positive: bool,
}

/// Extract `[!...]<delim>text<delim>flags` from the front of `s`.
fn get_pat<E: Engine>(s: &[u8]) -> Result<(RawPat, &[u8]), String> {
    let mut i = 0;
    let mut positive = true;
    while i < s.len() && (s[i] == b'!' || is_space(s[i])) {
        if s[i] == b'!' {
            positive = !positive;
        }
        i += 1;
    }
    if i >= s.len() {
        return Err("no regexp: skipping this rule".into());
    }
    let delim = s[i];
    i += 1;
    let start = i;
    while i < s.len() {
        if s[i] == b'\\' {
            if i + 1 < s.len() {
                i += 1;
            } else {
                break;
            }
        } else if s[i] == delim {
            break;
        }
        i += 1;
    }
    if i >= s.len() || s[i] != delim {
        let verb = if E::SECOND_PATTERN {
            "skipping"
        } else {
            "ignoring"
        };
        return Err(format!(
            "no closing regexp delimiter \"{}\": {verb} this rule",
            delim as char
        ));
    }
    let text = s[start..i].to_vec();
    i += 1;
    let mut options = E::default_options();
    while i < s.len() && !is_space(s[i]) && !(E::SECOND_PATTERN && s[i] == b'!') {
        match E::option(s[i]) {
            Some(bit) => options ^= bit,
            None => {
                return Err(format!(
                    "unknown regexp option \"{}\": skipping this rule",
                    s[i] as char
                ));
            }
        }
        i += 1;
    }
    Ok((
        RawPat {
            text,
            options,
            positive,
        },
        &s[i..],
    ))
}

fn keyword<'a>(line: &'a [u8], word: &str) -> Option<&'a [u8]> {
    (line.len() >= word.len()
        && line[..word.len()].eq_ignore_ascii_case(word.as_bytes())
        && !line
            .get(word.len())
            .is_some_and(|c| c.is_ascii_alphanumeric()))
    .then(|| &line[word.len()..])
}

impl<E: Engine> RegexTable<E> {
    pub fn parse(name: &str, data: &[u8]) -> RegexTable<E> {
        let mut t = RegexTable {
            ops: Vec::new(),
            name: name.to_string(),
            lines: Vec::new(),
            warnings: Vec::new(),
            exec_warnings: Default::default(),
        };
        let mut warnings = Vec::new();
        let lines = text::logical_lines(data, &mut warnings, name);
        t.warnings = warnings;
        let mut stack: Vec<usize> = Vec::new();
        for (lineno, raw) in lines {
            let line = text::trim_end(&raw);
            let mut warn = |w: String| {
                t.warnings
                    .push(format!("{} map {name}, line {lineno}: {w}", E::MAP))
            };
            let op = match Self::parse_line(line, !stack.is_empty(), &mut warn) {
                Ok(Some(op)) => op,
                Ok(None) => continue,
                Err(w) => {
                    warn(w);
                    continue;
                }
            };
            match op {
                Op::If { .. } => stack.push(t.ops.len()),
                Op::Endif => {
                    if let Some(i) = stack.pop() {
                        let here = t.ops.len();
                        if let Some(Op::If { end, .. }) = t.ops.get_mut(i) {
                            *end = Some(here);
                        }
                    }
                }
                Op::Match { .. } => {}
            }
            t.ops.push(op);
            t.lines.push(lineno);
        }
        for i in stack.into_iter().rev() {
            let l = t.lines.get(i).copied().unwrap_or(0);
            t.warnings.push(format!(
                "{} map {name}, line {l}: IF has no matching ENDIF",
                E::MAP
            ));
        }
        t
    }

    fn compile(raw: &RawPat, extra: u32) -> Result<Pattern<E>, String> {
        let (expr, nsub) = E::compile(&raw.text, raw.options | extra)?;
        Ok(Pattern {
            expr,
            nsub,
            positive: raw.positive,
        })
    }

    fn parse_line(
        line: &[u8],
        nested: bool,
        warn: &mut dyn FnMut(String),
    ) -> Result<Option<Op<E>>, String> {
        if line.first().is_some_and(|b| !b.is_ascii_alphanumeric()) {
            let (first, rest) = get_pat::<E>(line)?;
            let (second, rest) = if E::SECOND_PATTERN && rest.first() == Some(&b'!') {
                let (p, r) = get_pat::<E>(rest)?;
                (Some(p), r)
            } else {
                (None, rest)
            };
            let repl = text::trim_start(rest);
            if repl.is_empty() {
                warn("no replacement text: using empty string".into());
            }
            let pieces = text::parse_template(repl).map_err(|e| {
                warn(e);
                "bad replacement syntax: skipping this rule".to_string()
            })?;
            let max_sub = text::max_group(&pieces);
            if max_sub > 0 && !first.positive {
                return Err(
                    "$number found in negative match replacement text: skipping this rule".into(),
                );
            }
            let extra = if max_sub == 0 { E::nosub() } else { 0 };
            let first = Self::compile(&first, extra)?;
            if max_sub > first.nsub {
                return Err(format!(
                    "out of range replacement index \"{max_sub}\": skipping this rule"
                ));
            }
            let second = match second {
                Some(p) => Some(Self::compile(&p, E::nosub())?),
                None => None,
            };
            return Ok(Some(Op::Match {
                first,
                second,
                replacement: pieces,
                max_sub,
            }));
        }
        if let Some(rest) = keyword(line, "IF") {
            let (pat, rest) = get_pat::<E>(text::trim_start(rest))?;
            let rest = text::trim_start(rest);
            if !rest.is_empty() {
                warn(format!(
                    "ignoring extra text after IF statement: \"{}\"",
                    String::from_utf8_lossy(rest)
                ));
            }
            let pat = Self::compile(&pat, E::nosub())?;
            return Ok(Some(Op::If { pat, end: None }));
        }
        if let Some(rest) = keyword(line, "ENDIF") {
            if !nested {
                return Err("ignoring ENDIF without matching IF".into());
            }
            if !text::trim_start(rest).is_empty() {
                warn("ignoring extra text after ENDIF".into());
            }
            return Ok(Some(Op::Endif));
        }
        Err("ignoring unrecognized request".into())
    }

    fn test(&self, pat: &Pattern<E>, key: &[u8], groups: usize, at: usize) -> Option<Spans> {
        match pat.expr.exec(key, groups) {
            Ok(Some(g)) => pat.positive.then_some(g),
            Ok(None) => (!pat.positive).then(Vec::new),
            Err(e) => {
                let line = self.lines.get(at).copied().unwrap_or(0);
                self.exec_warnings.borrow_mut().push(format!(
                    "{} map {}, line {line}: {e}",
                    E::MAP,
                    self.name
                ));
                None
            }
        }
    }

    pub fn lookup_bytes(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut i = 0;
        while i < self.ops.len() {
            match &self.ops[i] {
                Op::Match {
                    first,
                    second,
                    replacement,
                    max_sub,
                } => {
                    let groups = if *max_sub > 0 { max_sub + 1 } else { 0 };
                    if let Some(spans) = self.test(first, key, groups, i)
                        && second
                            .as_ref()
                            .is_none_or(|p| self.test(p, key, 0, i).is_some())
                    {
                        let mut out = Vec::new();
                        for piece in replacement {
                            match piece {
                                Piece::Literal(l) => out.extend_from_slice(l),
                                Piece::Group(n) => {
                                    if let Some(Some((s, e))) = spans.get(*n)
                                        && let Some(sub) = key.get(*s..*e)
                                    {
                                        out.extend_from_slice(sub);
                                    }
                                }
                            }
                        }
                        return Some(out);
                    }
                }
                Op::If { pat, end } => {
                    if self.test(pat, key, 0, i).is_none() {
                        match end {
                            Some(e) => i = *e,
                            None => return None,
                        }
                    }
                }
                Op::Endif => {}
            }
            i += 1;
        }
        None
    }
}

impl<E: Engine> Dict for RegexTable<E> {
    fn lookup(&self, key: &str) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self.lookup_bytes(key.as_bytes()))
    }
    fn fixed(&self) -> bool {
        false
    }
    fn warnings(&self) -> Vec<String> {
        // Parse warnings, then matching errors seen since (each counted as no match).
        let mut w = self.warnings.clone();
        w.extend(self.exec_warnings.borrow().iter().cloned());
        w
    }
}

// ---- POSIX regcomp/regexec (glibc) ----

/// glibc's `regex_t`, declared here because the libc crate keeps `re_nsub` private and
/// Postfix needs it to check `$n` against the number of groups.
#[repr(C)]
struct GnuRegex {
    buffer: *mut libc::c_void,
    allocated: libc::size_t,
    used: libc::size_t,
    syntax: libc::c_ulong,
    fastmap: *mut libc::c_char,
    translate: *mut libc::c_uchar,
    re_nsub: libc::size_t,
    bits: u8,
}

unsafe extern "C" {
    fn regcomp(
        preg: *mut GnuRegex,
        pattern: *const libc::c_char,
        cflags: libc::c_int,
    ) -> libc::c_int;
    fn regexec(
        preg: *const GnuRegex,
        s: *const libc::c_char,
        nmatch: libc::size_t,
        pmatch: *mut libc::regmatch_t,
        eflags: libc::c_int,
    ) -> libc::c_int;
    fn regerror(
        code: libc::c_int,
        preg: *const GnuRegex,
        buf: *mut libc::c_char,
        size: libc::size_t,
    ) -> libc::size_t;
    fn regfree(preg: *mut GnuRegex);
}

pub struct Posix {
    re: Box<GnuRegex>,
}

fn posix_error(code: libc::c_int, re: &GnuRegex) -> String {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: buf is writable for its length; regerror NUL-terminates within it.
    unsafe { regerror(code, re, buf.as_mut_ptr(), buf.len()) };
    // SAFETY: NUL-terminated by regerror.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

impl Engine for Posix {
    const MAP: &'static str = "regexp";
    const SECOND_PATTERN: bool = true;

    fn compile(pattern: &[u8], options: u32) -> Result<(Self, usize), String> {
        let c = CString::new(pattern).map_err(|_| "NUL byte in pattern".to_string())?;
        // SAFETY: an all-zero regex_t is a valid argument for regcomp to fill in.
        let mut re: Box<GnuRegex> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: re points to writable storage of glibc's regex_t layout.
        let rc = unsafe { regcomp(&mut *re, c.as_ptr(), options as libc::c_int) };
        if rc != 0 {
            return Err(posix_error(rc, &re));
        }
        let n = re.re_nsub;
        Ok((Posix { re }, n))
    }

    fn exec(&self, subject: &[u8], groups: usize) -> Result<Option<Spans>, String> {
        // A key with a NUL cannot come from Postfix; C would see it truncated.
        let end = subject
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(subject.len());
        let c = CString::new(&subject[..end]).map_err(|_| "NUL byte in key".to_string())?;
        let mut m = vec![
            libc::regmatch_t {
                rm_so: -1,
                rm_eo: -1
            };
            groups
        ];
        // SAFETY: m has `groups` entries; self.re was compiled by regcomp.
        let rc = unsafe { regexec(&*self.re, c.as_ptr(), groups, m.as_mut_ptr(), 0) };
        match rc {
            0 => Ok(Some(
                m.iter()
                    .map(|r| {
                        (r.rm_so >= 0 && r.rm_eo >= r.rm_so)
                            .then_some((r.rm_so as usize, r.rm_eo as usize))
                    })
                    .collect(),
            )),
            libc::REG_NOMATCH => Ok(None),
            code => Err(posix_error(code, &self.re)),
        }
    }

    fn default_options() -> u32 {
        (libc::REG_EXTENDED | libc::REG_ICASE) as u32
    }

    fn option(letter: u8) -> Option<u32> {
        match letter {
            b'i' => Some(libc::REG_ICASE as u32),
            b'm' => Some(libc::REG_NEWLINE as u32),
            b'x' => Some(libc::REG_EXTENDED as u32),
            _ => None,
        }
    }

    fn nosub() -> u32 {
        libc::REG_NOSUB as u32
    }
}

// SAFETY: the compiled expression is owned by this value alone and glibc's regexec has
// no thread affinity.
unsafe impl Send for Posix {}

impl Drop for Posix {
    fn drop(&mut self) {
        // SAFETY: compiled by regcomp and freed once.
        unsafe { regfree(&mut *self.re) };
    }
}

// ---- PCRE2 ----

use pcre2_sys as p2;

pub struct Pcre {
    code: *mut p2::pcre2_code_8,
    data: *mut p2::pcre2_match_data_8,
}

fn pcre_error(code: libc::c_int) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let n = unsafe { p2::pcre2_get_error_message_8(code, buf.as_mut_ptr(), buf.len()) };
    if n > 0 {
        String::from_utf8_lossy(&buf[..n as usize]).into_owned()
    } else {
        format!("unexpected pcre2 error code {code}")
    }
}

impl Engine for Pcre {
    const MAP: &'static str = "pcre";
    const SECOND_PATTERN: bool = false;

    fn compile(pattern: &[u8], options: u32) -> Result<(Self, usize), String> {
        let mut err: libc::c_int = 0;
        let mut off: usize = 0;
        // SAFETY: pattern pointer/length are valid for the call.
        let code = unsafe {
            p2::pcre2_compile_8(
                pattern.as_ptr(),
                pattern.len(),
                options,
                &mut err,
                &mut off,
                std::ptr::null_mut(),
            )
        };
        if code.is_null() {
            return Err(format!(
                "error in regex at offset {off}: {}",
                pcre_error(err)
            ));
        }
        let mut count: u32 = 0;
        // SAFETY: code is a compiled pattern; count is a u32 as CAPTURECOUNT requires.
        unsafe {
            p2::pcre2_pattern_info_8(
                code,
                p2::PCRE2_INFO_CAPTURECOUNT,
                (&mut count as *mut u32).cast(),
            )
        };
        // SAFETY: code is valid.
        let data =
            unsafe { p2::pcre2_match_data_create_from_pattern_8(code, std::ptr::null_mut()) };
        if data.is_null() {
            // SAFETY: code is valid and not used afterwards.
            unsafe { p2::pcre2_code_free_8(code) };
            return Err("out of memory".into());
        }
        Ok((Pcre { code, data }, count as usize))
    }

    fn exec(&self, subject: &[u8], groups: usize) -> Result<Option<Spans>, String> {
        // C strings end at the first NUL; keep that so answers match Postfix.
        let end = subject
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(subject.len());
        // SAFETY: code and data belong together; subject is valid for `end` bytes.
        let rc = unsafe {
            p2::pcre2_match_8(
                self.code,
                subject.as_ptr(),
                end,
                0,
                0,
                self.data,
                std::ptr::null_mut(),
            )
        };
        if rc == p2::PCRE2_ERROR_NOMATCH {
            return Ok(None);
        }
        if rc < 0 {
            return Err(match rc {
                p2::PCRE2_ERROR_MATCHLIMIT => "backtracking limit exceeded".into(),
                p2::PCRE2_ERROR_NOMEMORY => "out of memory".into(),
                other => pcre_error(other),
            });
        }
        if rc == 0 {
            return Err("too many (...)".into());
        }
        // SAFETY: data holds the ovector of the last match.
        let n = unsafe { p2::pcre2_get_ovector_count_8(self.data) } as usize;
        // SAFETY: the ovector has 2*n entries.
        let ov = unsafe {
            std::slice::from_raw_parts(p2::pcre2_get_ovector_pointer_8(self.data), 2 * n)
        };
        let spans = (0..groups)
            .map(|g| {
                let (s, e) = (*ov.get(2 * g)?, *ov.get(2 * g + 1)?);
                (s != usize::MAX && e >= s && e <= end).then_some((s, e))
            })
            .collect();
        Ok(Some(spans))
    }

    fn default_options() -> u32 {
        p2::PCRE2_CASELESS | p2::PCRE2_DOTALL
    }

    fn option(letter: u8) -> Option<u32> {
        match letter {
            b'i' => Some(p2::PCRE2_CASELESS),
            b'm' => Some(p2::PCRE2_MULTILINE),
            b's' => Some(p2::PCRE2_DOTALL),
            b'x' => Some(p2::PCRE2_EXTENDED),
            b'A' => Some(p2::PCRE2_ANCHORED),
            b'E' => Some(p2::PCRE2_DOLLAR_ENDONLY),
            b'U' => Some(p2::PCRE2_UNGREEDY),
            // Postfix with PCRE2 ignores the obsolete X option (with a warning).
            b'X' => Some(0),
            _ => None,
        }
    }
}

// SAFETY: code and match data are owned by this value alone; PCRE2 objects may be used
// from any thread, one at a time.
unsafe impl Send for Pcre {}

impl Drop for Pcre {
    fn drop(&mut self) {
        // SAFETY: both were created in compile() and are freed once.
        unsafe {
            p2::pcre2_match_data_free_8(self.data);
            p2::pcre2_code_free_8(self.code);
        }
    }
}
