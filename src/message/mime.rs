//! MIME output conversion: 8-bit content to quoted-printable for servers without 8BITMIME.
//!
//! When a message is not known to be 7-bit (its body type is 8BITMIME or undeclared), the
//! server does not announce 8BITMIME and disable_mime_output_conversion is off, Postfix's
//! smtp(8) runs the content through its one-pass MIME parser and rewrites every leaf
//! entity whose Content-Transfer-Encoding names an 8-bit domain (8bit, binary) as
//! quoted-printable; multipart/* and message/* entities with such a domain only get their
//! header changed to "7bit", since their parts are converted one by one. `Downgrade` does
//! the same as a `Content` that wraps the message's own content, so that the `BodyWriter`
//! (CRLF, dot-stuffing, line folding) sees exactly the records Postfix's smtp_text_out()
//! sees.
//!
//! What the output must match, byte for byte (checked against Postfix by tests/mime.rs):
//! - Only entities with an explicit 8-bit Content-Transfer-Encoding are converted. Mail
//!   without MIME headers stays as it is (the default entity is 7-bit text/plain) and no
//!   MIME-Version or Content-Type header is ever added; 8-bit header text is left alone.
//! - The 8-bit Content-Transfer-Encoding header is dropped where it stands and a new one is
//!   emitted at the end of that header block.
//! - Header lines are re-assembled from their records (a long header becomes one output
//!   line) and "Name  :" loses the space before the colon; text beyond header_size_limit
//!   is dropped, as is anything after a NUL byte in a header.
//! - Non-header text where the top-level headers should be gets a blank line before it.
//! - Quoted-printable lines are at most 76 bytes: a soft break ("=") is inserted once a
//!   line has more than 72 bytes, trailing space or tab is encoded.
//!
//! Memory stays bounded: one header (header_size_limit plus one record), one stack entry
//! per open multipart (at most mime_nesting_limit + 2, each boundary cut to
//! mime_boundary_length_limit bytes) and the output of one input record. Malformed MIME is
//! never an error; the parser just resynchronises at the next boundary it knows. The one
//! error is nesting beyond mime_nesting_limit, which Postfix reports as a permanent
//! failure of the message (5.6.0) and which `next_record` returns as an `Error`.

use crate::outcome::Error;
use crate::request::{Content, Encoding, Record};
use std::collections::VecDeque;

/// The DSN text of the one MIME error the converter reports (Postfix's wording).
const NESTING_TEXT: &str = "MIME nesting exceeds safety limit";
const NESTING_STATUS: &str = "5.6.0";

/// Whether the converter applies, by Postfix's rule: conversion is enabled, the server
/// lacks 8BITMIME, and the body is not declared 7-bit (undeclared counts as possibly
/// 8-bit). Mail that needs SMTPUTF8 never gets here with a server lacking 8BITMIME: it
/// either fails for want of SMTPUTF8, or the server offers SMTPUTF8, which the session
/// takes to imply 8BITMIME.
pub fn downgrading(disabled: bool, server_8bitmime: bool, encoding: Encoding) -> bool {
    !disabled && !server_8bitmime && encoding != Encoding::SevenBit
}

/// Whether a content error is the converter's MIME failure (which, unlike a damaged
/// queue file, Postfix bounces without a warning).
pub fn is_mime_error(e: &Error) -> bool {
    e.class == crate::outcome::Class::Permanent
        && e.dsn.status == NESTING_STATUS
        && e.dsn.reason == NESTING_TEXT
}

/// The safety limits of the parser (mime_boundary_length_limit, mime_nesting_limit,
/// header_size_limit).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub boundary_len: usize,
    pub nesting: i64,
    pub header_size: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            boundary_len: 2048,
            nesting: 100,
            header_size: 102400,
        }
    }
}

/// Where the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The message's own headers.
    Primary,
    /// Headers after a --boundary line.
    Multipart,
    /// Headers at the start of a message/rfc822 body.
    Nested,
    Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctype {
    Other,
    Text,
    Message,
    Multipart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stype {
    Other,
    Plain,
    Rfc822,
    Partial,
    ExternalBody,
    Global,
}

/// Content-Transfer-Encoding values; the "domain" of a transformation (base64,
/// quoted-printable) is 7bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cte {
    SevenBit,
    EightBit,
    Binary,
    Base64,
    QuotedPrintable,
}

impl Cte {
    fn parse(word: &[u8]) -> Option<(Cte, Cte)> {
        let map = [
            ("7bit", Cte::SevenBit, Cte::SevenBit),
            ("8bit", Cte::EightBit, Cte::EightBit),
            ("binary", Cte::Binary, Cte::Binary),
            ("base64", Cte::Base64, Cte::SevenBit),
            ("quoted-printable", Cte::QuotedPrintable, Cte::SevenBit),
        ];
        map.iter()
            .find(|(name, _, _)| word.eq_ignore_ascii_case(name.as_bytes()))
            .map(|&(_, enc, dom)| (enc, dom))
    }
}

/// An open multipart entity.
struct Frame {
    /// The type of parts that have no Content-Type (message/rfc822 in a digest).
    def_ctype: Ctype,
    def_stype: Stype,
    boundary: Vec<u8>,
}

/// What the previous input was; a record continuing a long line is not a line start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prev {
    None,
    Line,
    Partial,
}

/// One input event: a record, or the end of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Rec(Record),
    End,
}

/// The parser and converter, fed one record at a time; output records are queued.
struct Machine {
    limits: Limits,
    part: Part,
    ctype: Ctype,
    stype: Stype,
    domain: Cte,
    /// The header being collected (several records, continuation lines joined by LF).
    header: Vec<u8>,
    /// Length of the collected header's name (it is followed by ':').
    name_len: usize,
    /// The quoted-printable line under construction.
    qp: Vec<u8>,
    prev: Prev,
    /// Open multipart entities, innermost last.
    stack: Vec<Frame>,
    nesting_error: bool,
    out: VecDeque<(Record, Vec<u8>)>,
}

const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";
const RFC822_SPECIALS: &[u8] = b"()<>@,;:\\\".[]";

impl Machine {
    fn new(limits: Limits) -> Machine {
        Machine {
            limits,
            part: Part::Primary,
            ctype: Ctype::Text,
            stype: Stype::Plain,
            domain: Cte::SevenBit,
            header: Vec::new(),
            name_len: 0,
            qp: Vec::new(),
            prev: Prev::None,
            stack: Vec::new(),
            nesting_error: false,
            out: VecDeque::new(),
        }
    }

    fn set(&mut self, part: Part, ctype: Ctype, stype: Stype) {
        self.part = part;
        self.ctype = ctype;
        self.stype = stype;
        self.domain = Cte::SevenBit;
    }

    fn emit(&mut self, kind: Record, data: &[u8]) {
        self.out.push_back((kind, data.to_vec()));
    }

    /// Header text is handled as a C string upstream: a NUL ends what is kept.
    fn append_header(&mut self, text: &[u8]) {
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        self.header.extend_from_slice(&text[..end]);
    }

    fn update(&mut self, input: Input, text: &[u8]) {
        let rec = match input {
            Input::Rec(r) => Some(r),
            Input::End => None,
        };
        // A long line cut short by the end of the message still has to be finished.
        if rec.is_none() && self.prev == Prev::Partial {
            self.update(Input::Rec(Record::Line), b"");
        }
        let prev_of = |r: Option<Record>| match r {
            Some(Record::Line) => Prev::Line,
            Some(Record::Partial) => Prev::Partial,
            None => Prev::None,
        };
        if self.part != Part::Body {
            if !self.header.is_empty() {
                if rec.is_some() {
                    let continues = self.prev == Prev::Partial
                        || matches!(text.first(), Some(b' ') | Some(b'\t'));
                    if continues {
                        // Beyond the limit the text is dropped, not the header.
                        if self.header.len() < self.limits.header_size {
                            if self.prev != Prev::Partial {
                                self.header.push(b'\n');
                            }
                            self.append_header(text);
                        }
                        self.prev = prev_of(rec);
                        return;
                    }
                }
                self.flush_header();
            }
            if rec.is_some() {
                let name_len = header_name_len(text);
                if name_len > 0 {
                    // "Name  : value" is kept as "Name: value".
                    self.header.clear();
                    self.append_header(&text[..name_len]);
                    let rest = &text[name_len..];
                    let skip = rest
                        .iter()
                        .take_while(|&&b| b == b' ' || b == b'\t')
                        .count();
                    self.append_header(&rest[skip..]);
                    self.name_len = name_len;
                    self.prev = prev_of(rec);
                    return;
                }
            }
            // The header block ends here: announce what its body is going to be.
            if self.domain != Cte::SevenBit {
                let composite = (self.ctype == Ctype::Message && self.stype != Stype::Global)
                    || self.ctype == Ctype::Multipart;
                let cte: &[u8] = if composite {
                    b"Content-Transfer-Encoding: 7bit"
                } else {
                    b"Content-Transfer-Encoding: quoted-printable"
                };
                self.emit(Record::Line, cte);
            }
            match rec {
                Some(_) if text.is_empty() => match self.ctype {
                    Ctype::Message => {
                        let nested = self.stype == Stype::Rfc822
                            || (self.stype == Stype::Global && self.domain == Cte::SevenBit);
                        if nested {
                            self.set(Part::Nested, Ctype::Text, Stype::Plain);
                        } else {
                            self.part = Part::Body;
                        }
                    }
                    Ctype::Multipart => self.set(Part::Body, Ctype::Other, Stype::Other),
                    _ => self.part = Part::Body,
                },
                Some(_) => {
                    // Text where the message headers should be: Postfix separates it
                    // from the headers with a blank line (not so inside attachments).
                    if self.part == Part::Primary {
                        self.emit(Record::Line, b"");
                    }
                    self.part = Part::Body;
                }
                None => self.part = Part::Body,
            }
        }
        if let Some(kind) = rec {
            self.body(kind, text);
        }
        self.prev = prev_of(rec);
    }

    fn body(&mut self, kind: Record, text: &[u8]) {
        if !self.stack.is_empty()
            && self.prev != Prev::Partial
            && text.len() > 2
            && text.starts_with(b"--")
        {
            let hit = self.stack.iter().rposition(|f| {
                text.len() >= 2 + f.boundary.len() && text[2..].starts_with(&f.boundary)
            });
            if let Some(i) = hit {
                self.stack.truncate(i + 1);
                let blen = self.stack[i].boundary.len();
                if text.len() >= 4 + blen && text[2 + blen..].starts_with(b"--") {
                    self.stack.truncate(i);
                    self.set(Part::Body, Ctype::Other, Stype::Other);
                } else {
                    let (c, s) = (self.stack[i].def_ctype, self.stack[i].def_stype);
                    self.set(Part::Multipart, c, s);
                }
            }
        }
        if self.domain != Cte::SevenBit {
            self.quoted_printable(kind, text);
        } else {
            self.emit(kind, text);
        }
    }

    fn quoted_printable(&mut self, kind: Record, text: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &c in text {
            if self.qp.len() > 72 {
                self.qp.push(b'=');
                let line = std::mem::take(&mut self.qp);
                self.emit(Record::Line, &line);
            }
            if (c < 32 && c != b'\t') || c == b'=' || c > 126 {
                self.qp.extend_from_slice(&[
                    b'=',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 15)],
                ]);
            } else {
                self.qp.push(c);
            }
        }
        if kind == Record::Line {
            if let Some(&c @ (b' ' | b'\t')) = self.qp.last() {
                self.qp.pop();
                self.qp.extend_from_slice(&[
                    b'=',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 15)],
                ]);
            }
            let line = std::mem::take(&mut self.qp);
            self.emit(Record::Line, &line);
        }
    }

    /// The collected header is complete: learn from it, then pass it on (except an 8-bit
    /// Content-Transfer-Encoding, replaced at the end of the header block).
    fn flush_header(&mut self) {
        let header = std::mem::take(&mut self.header);
        let name = &header[..self.name_len.min(header.len())];
        let value = header.get(self.name_len + 1..).unwrap_or(&[]);
        let mut is_cte = false;
        if name.eq_ignore_ascii_case(b"content-type") {
            self.content_type(value);
        } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            is_cte = true;
            let mut pos = 0;
            let toks = tokenize(value, &mut pos, 1, RFC822_SPECIALS, None).unwrap_or_default();
            if let Some((_, dom)) = match toks.first() {
                Some(Tok::Word(w)) => Cte::parse(w),
                _ => None,
            } {
                self.domain = dom;
            }
        }
        if !is_cte || self.domain == Cte::SevenBit {
            for line in header.split(|&b| b == b'\n') {
                self.emit(Record::Line, line);
            }
        }
        self.prev = Prev::None;
    }

    fn content_type(&mut self, value: &[u8]) {
        let mut pos = 0;
        let toks = tokenize(value, &mut pos, 3, TSPECIALS, Some(b';')).unwrap_or_default();
        let word = |i: usize, w: &str| matches!(toks.get(i), Some(Tok::Word(v)) if v.eq_ignore_ascii_case(w.as_bytes()));
        let slash = matches!(toks.get(1), Some(Tok::Special(b'/')));
        if toks.is_empty() {
            self.ctype = Ctype::Other;
            return;
        }
        if word(0, "text") {
            self.ctype = Ctype::Text;
            self.stype = if toks.len() >= 3 && slash && word(2, "plain") {
                Stype::Plain
            } else {
                Stype::Other
            };
        } else if word(0, "message") {
            self.ctype = Ctype::Message;
            self.stype = Stype::Other;
            if toks.len() >= 3 && slash {
                for (name, st) in [
                    ("rfc822", Stype::Rfc822),
                    ("partial", Stype::Partial),
                    ("external-body", Stype::ExternalBody),
                    ("global", Stype::Global),
                ] {
                    if word(2, name) {
                        self.stype = st;
                    }
                }
            }
        } else if word(0, "multipart") {
            self.ctype = Ctype::Multipart;
            let (def_ctype, def_stype) = if toks.len() >= 3 && slash && word(2, "digest") {
                (Ctype::Message, Stype::Rfc822)
            } else {
                (Ctype::Text, Stype::Plain)
            };
            // Every boundary parameter counts (repeats are illegal, but a part hidden
            // behind either must still be found), whatever the value's syntax.
            while let Some(p) = tokenize(value, &mut pos, 3, TSPECIALS, Some(b';')) {
                let is_boundary = matches!(p.first(), Some(Tok::Word(v)) if v.eq_ignore_ascii_case(b"boundary"))
                    && matches!(p.get(1), Some(Tok::Special(b'=')));
                if p.len() >= 3 && is_boundary {
                    // Postfix counts depth from -1, so limit + 2 multiparts can be open.
                    let depth = self.stack.len() as i64 - 1;
                    if depth > self.limits.nesting {
                        self.nesting_error = true;
                    } else {
                        let mut b = p[2].bytes().to_vec();
                        b.truncate(self.limits.boundary_len);
                        self.stack.push(Frame {
                            def_ctype,
                            def_stype,
                            boundary: b,
                        });
                    }
                }
            }
        }
        // Any other type leaves what was known before (Postfix does not look further).
    }
}

/// A token of a structured header value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(Vec<u8>),
    Quoted(Vec<u8>),
    Special(u8),
}

impl Tok {
    fn bytes(&self) -> &[u8] {
        match self {
            Tok::Word(v) | Tok::Quoted(v) => v,
            Tok::Special(c) => std::slice::from_ref(c),
        }
    }
}

fn is_lwsp(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_ctl(c: u8) -> bool {
    c < 32 || c == 127
}

/// RFC 822 tokens from `value[*pos..]`: white space and (nested) comments are skipped,
/// quoted strings unquoted. At most `max` tokens are kept; with a terminator the scan
/// goes on to the terminator (or the end) regardless, and `*pos` ends up after it. A NUL
/// ends the value. `None` when the end was reached without a single token.
fn tokenize(
    value: &[u8],
    pos: &mut usize,
    max: usize,
    specials: &[u8],
    terminator: Option<u8>,
) -> Option<Vec<Tok>> {
    let mut toks = Vec::new();
    let at = |p: usize| value.get(p).copied().unwrap_or(0);
    while at(*pos) != 0 && (terminator.is_some() || toks.len() < max) {
        let c = at(*pos);
        *pos += 1;
        if is_lwsp(c) {
            continue;
        }
        if Some(c) == terminator {
            return Some(toks);
        }
        let keep = toks.len() < max;
        if c == b'(' {
            let mut level = 1;
            while at(*pos) != 0 {
                let c = at(*pos);
                *pos += 1;
                if c == b'(' {
                    level += 1;
                } else if c == b')' {
                    level -= 1;
                    if level == 0 {
                        break;
                    }
                } else if c == b'\\' {
                    if at(*pos) == 0 {
                        break;
                    }
                    *pos += 1;
                }
            }
        } else if c == b'"' {
            let mut v = Vec::new();
            while at(*pos) != 0 {
                let mut c = at(*pos);
                *pos += 1;
                if c == b'"' {
                    break;
                }
                if c == b'\n' {
                    // A folded quoted string: drop the white space before the fold.
                    while v.last().is_some_and(|&b| is_lwsp(b)) {
                        v.pop();
                    }
                    continue;
                }
                if c == b'\\' {
                    if at(*pos) == 0 {
                        break;
                    }
                    c = at(*pos);
                    *pos += 1;
                }
                v.push(c);
            }
            if keep {
                toks.push(Tok::Quoted(v));
            }
        } else if specials.contains(&c) || is_ctl(c) {
            if keep {
                toks.push(Tok::Special(c));
            }
        } else {
            let mut v = vec![c];
            while at(*pos) != 0
                && !is_lwsp(at(*pos))
                && !is_ctl(at(*pos))
                && !specials.contains(&at(*pos))
            {
                v.push(at(*pos));
                *pos += 1;
            }
            if keep {
                toks.push(Tok::Word(v));
            }
        }
    }
    if toks.is_empty() && at(*pos) == 0 {
        None
    } else {
        Some(toks)
    }
}

/// The length of the header name if `line` starts a header ("name:" or the obsolete
/// "name :"), else 0. Names are printable ASCII other than ':' and white space.
fn header_name_len(line: &[u8]) -> usize {
    let mut len = 0;
    let mut spaced = false;
    for &c in line {
        match c {
            b':' => return len,
            b' ' | b'\t' => {
                if len == 0 {
                    return 0;
                }
                spaced = true;
            }
            _ => {
                if c == 0 || !c.is_ascii() || is_ctl(c) || spaced {
                    return 0;
                }
                len += 1;
            }
        }
    }
    0
}

/// A `Content` that yields the message converted for a server without 8BITMIME.
pub struct Downgrade<'a> {
    inner: &'a mut dyn Content,
    limits: Limits,
    machine: Machine,
    ended: bool,
}

impl<'a> Downgrade<'a> {
    pub fn new(inner: &'a mut dyn Content, limits: Limits) -> Downgrade<'a> {
        Downgrade {
            inner,
            limits,
            machine: Machine::new(limits),
            ended: false,
        }
    }
}

impl Content for Downgrade<'_> {
    fn rewind(&mut self) -> Result<(), Error> {
        self.machine = Machine::new(self.limits);
        self.ended = false;
        self.inner.rewind()
    }

    fn next_record(&mut self, buf: &mut Vec<u8>) -> Result<Option<Record>, Error> {
        let mut rec = Vec::new();
        loop {
            if let Some((kind, data)) = self.machine.out.pop_front() {
                buf.clear();
                buf.extend_from_slice(&data);
                return Ok(Some(kind));
            }
            if self.ended {
                buf.clear();
                return Ok(None);
            }
            match self.inner.next_record(&mut rec)? {
                Some(kind) => self.machine.update(Input::Rec(kind), &rec),
                None => {
                    self.machine.update(Input::End, b"");
                    self.ended = true;
                }
            }
            if self.machine.nesting_error {
                // Postfix stops sending at once and bounces the message.
                self.machine.out.clear();
                self.ended = true;
                return Err(Error::perm(NESTING_STATUS, NESTING_TEXT));
            }
        }
    }
}

#[cfg(test)]
#[path = "tests_mime.rs"]
mod tests;
