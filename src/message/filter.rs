//! The header/body pass that smtp(8) runs over a message when smtp_generic_maps or
//! header/body checks are configured: a content adapter between the queue file records
//! and the wire encoder.
//!
//! It follows Postfix's mime_state parser as smtp(8) sets it up: with only generic maps,
//! MIME is not looked at (every header section is the primary one); with checks, headers
//! are classed as primary, MIME part (after a multipart boundary) or nested
//! (message/rfc822), and a Content-* or MIME-Version header always counts as a MIME
//! header. Observable details kept from Postfix: continuation lines are joined before a
//! header is inspected; blanks before a header's colon are removed; headers longer than
//! header_size_limit lose their extra lines; a header section that ends without an empty
//! line gets one; rewritten address headers are refolded.

use crate::outcome::Error;
use crate::request::{Content, Record};
use crate::rewrite::{self, HeaderClass, Rewrite, Verdict};
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header(HeaderClass),
    Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctype {
    Text,
    Message(Stype),
    Multipart,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stype {
    Rfc822,
    Global,
    Other,
}

/// Why the pass stopped: Postfix drops the connection (checks) or exits (generic maps);
/// either way the mail is deferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// "smtp header checks lookup error" / "smtp body checks lookup error".
    Checks(&'static str),
    /// A generic maps lookup problem (the text names the address).
    Generic(String),
}

pub struct Filter<'c, 'r> {
    inner: &'c mut dyn Content,
    rw: &'r Rewrite,
    queue_id: String,
    /// MIME structure is parsed only when checks are configured.
    mime: bool,
    state: State,
    ctype: Ctype,
    /// Open multipart boundaries, innermost last, with the default type of their parts.
    stack: Vec<(Ctype, Vec<u8>)>,
    nesting: i64,
    buf: Vec<u8>,
    prev_cont: bool,
    out: VecDeque<(Vec<u8>, Record)>,
    rec: Vec<u8>,
    eof: bool,
    /// Set when the pass failed; the delivery is then deferred.
    pub trouble: Option<Trouble>,
}

impl<'c, 'r> Filter<'c, 'r> {
    pub fn new(inner: &'c mut dyn Content, rw: &'r Rewrite, queue_id: &str) -> Filter<'c, 'r> {
        Filter {
            inner,
            rw,
            queue_id: queue_id.to_string(),
            mime: rw.any_checks(),
            state: State::Header(HeaderClass::Primary),
            ctype: Ctype::Text,
            stack: Vec::new(),
            nesting: -1,
            buf: Vec::new(),
            prev_cont: false,
            out: VecDeque::new(),
            rec: Vec::new(),
            eof: false,
            trouble: None,
        }
    }

    fn reset(&mut self) {
        self.state = State::Header(HeaderClass::Primary);
        self.ctype = Ctype::Text;
        self.stack.clear();
        self.nesting = -1;
        self.buf.clear();
        self.prev_cont = false;
        self.out.clear();
        self.eof = false;
        self.trouble = None;
    }

    fn fail(&mut self, t: Trouble) -> Error {
        self.trouble = Some(t);
        Error::temp("4.3.0", "local data error")
    }

    fn emit(&mut self, text: &[u8], kind: Record) {
        self.out.push_back((text.to_vec(), kind));
    }

    /// One input record (mime_state_update).
    fn update(&mut self, kind: Record, text: &[u8]) -> Result<(), Error> {
        let cont = kind == Record::Partial;
        if let State::Header(class) = self.state {
            if !self.buf.is_empty() {
                if self.prev_cont {
                    if self.buf.len() < self.rw.header_limit {
                        self.buf.extend_from_slice(text);
                    }
                    self.prev_cont = cont;
                    return Ok(());
                }
                if matches!(text.first(), Some(b' ' | b'\t')) {
                    if self.buf.len() < self.rw.header_limit {
                        self.buf.push(b'\n');
                        self.buf.extend_from_slice(text);
                    }
                    self.prev_cont = cont;
                    return Ok(());
                }
                self.flush_header(class)?;
            }
            let name = rewrite::header_name_len(text);
            if name > 0 {
                // The name, then the value without the blanks before the colon.
                self.buf.extend_from_slice(&text[..name]);
                let rest = &text[name..];
                let skip = rest
                    .iter()
                    .take_while(|&&c| c == b' ' || c == b'\t')
                    .count();
                self.buf.extend_from_slice(&rest[skip..]);
                self.prev_cont = cont;
                return Ok(());
            }
            if text.is_empty() && !cont {
                self.state = State::Body;
                match self.ctype {
                    Ctype::Message(Stype::Rfc822 | Stype::Global) => {
                        self.state = State::Header(HeaderClass::Nested);
                        self.ctype = Ctype::Text;
                    }
                    Ctype::Multipart => self.ctype = Ctype::Other,
                    _ => {}
                }
            } else {
                // Not a header: the header section ends here. After the primary headers
                // Postfix supplies the missing empty line.
                if class == HeaderClass::Primary {
                    self.body_out(Record::Line, b"")?;
                }
                self.state = State::Body;
            }
        }
        // Body (also the line that ended a header section).
        if self.mime
            && !self.stack.is_empty()
            && !self.prev_cont
            && text.len() > 2
            && text.starts_with(b"--")
        {
            let hit = self
                .stack
                .iter()
                .rposition(|(_, b)| text.len() >= 2 + b.len() && text[2..].starts_with(b));
            if let Some(k) = hit {
                let nest = self.nesting - (self.stack.len() - 1 - k) as i64;
                self.stack.truncate(k + 1);
                self.nesting = nest;
                let blen = self.stack[k].1.len();
                if text.len() >= 4 + blen && &text[2 + blen..4 + blen] == b"--" {
                    self.stack.pop();
                    self.nesting -= 1;
                    self.state = State::Body;
                    self.ctype = Ctype::Other;
                } else {
                    self.state = State::Header(HeaderClass::Multipart);
                    self.ctype = self.stack[k].0;
                }
            }
        }
        self.body_out(kind, text)?;
        self.prev_cont = cont;
        Ok(())
    }

    /// End of input: a pending header goes out.
    fn finish(&mut self) -> Result<(), Error> {
        if let State::Header(class) = self.state
            && !self.buf.is_empty()
        {
            self.flush_header(class)?;
        }
        Ok(())
    }

    fn flush_header(&mut self, state_class: HeaderClass) -> Result<(), Error> {
        let buf = std::mem::take(&mut self.buf);
        self.prev_cont = false;
        let known = rewrite::known_header(&buf);
        if self.mime && known.as_deref() == Some("content-type") {
            self.content_type(&buf);
        }
        self.header_out(state_class, known.as_deref(), buf)
    }

    /// smtp_header_rewrite(): header checks, then generic maps for primary address
    /// headers, then out line by line.
    fn header_out(
        &mut self,
        state_class: HeaderClass,
        known: Option<&str>,
        mut buf: Vec<u8>,
    ) -> Result<(), Error> {
        // A MIME header is checked by the MIME header checks wherever it appears.
        let class = if known.is_some_and(rewrite::is_mime_header) {
            HeaderClass::Multipart
        } else {
            state_class
        };
        if let Some(checks) = self.rw.header_checks(class) {
            let key = String::from_utf8_lossy(&buf).into_owned();
            match checks.find(&key) {
                Err(e) => {
                    crate::log::warn(&e.to_string());
                    return Err(self.fail(Trouble::Checks("header")));
                }
                Ok(None) => {}
                Ok(Some(cmd)) => {
                    let mut pre = Vec::new();
                    let v = rewrite::action(
                        &self.queue_id,
                        &checks.title,
                        true,
                        &buf,
                        &cmd,
                        &mut |t| pre.push(t.to_string()),
                    );
                    for p in pre {
                        self.emit(p.as_bytes(), Record::Line);
                    }
                    match v {
                        Verdict::Drop => return Ok(()),
                        Verdict::Keep(Some(new)) => buf = new.into_bytes(),
                        Verdict::Keep(None) => {}
                    }
                }
            }
        }
        if self.rw.has_generic()
            && state_class == HeaderClass::Primary
            && let Some(name) = known
            && rewrite::ADDRESS_HEADERS.contains(&name)
        {
            match self.rw.header_addresses(&buf, name.len()) {
                Err(t) => return Err(self.fail(Trouble::Generic(t))),
                Ok(Some(new)) => buf = new,
                Ok(None) => {}
            }
        }
        for line in buf.split(|&c| c == b'\n') {
            self.emit(line, Record::Line);
        }
        Ok(())
    }

    /// smtp_body_rewrite(): body checks per record.
    fn body_out(&mut self, kind: Record, text: &[u8]) -> Result<(), Error> {
        let Some(checks) = self.rw.body_checks() else {
            self.emit(text, kind);
            return Ok(());
        };
        let key = String::from_utf8_lossy(text).into_owned();
        match checks.find(&key) {
            Err(e) => {
                crate::log::warn(&e.to_string());
                Err(self.fail(Trouble::Checks("body")))
            }
            Ok(None) => {
                self.emit(text, kind);
                Ok(())
            }
            Ok(Some(cmd)) => {
                let mut pre = Vec::new();
                let v =
                    rewrite::action(&self.queue_id, &checks.title, false, text, &cmd, &mut |t| {
                        pre.push(t.to_string())
                    });
                for p in pre {
                    self.emit(p.as_bytes(), Record::Line);
                }
                match v {
                    Verdict::Drop => {}
                    Verdict::Keep(Some(new)) => self.emit(new.as_bytes(), kind),
                    Verdict::Keep(None) => self.emit(text, kind),
                }
                Ok(())
            }
        }
    }

    /// mime_state_content_type(): the type, and for multipart the boundary.
    fn content_type(&mut self, header: &[u8]) {
        let value = &header[header
            .iter()
            .position(|&c| c == b':')
            .map_or(header.len(), |p| p + 1)..];
        let mut params = split_params(value).into_iter();
        let Some(first) = params.next() else {
            self.ctype = Ctype::Other;
            return;
        };
        let kind = match first.first() {
            Some(Tok::Token(s)) => s.to_ascii_lowercase(),
            _ => {
                self.ctype = Ctype::Other;
                return;
            }
        };
        let subtype = match (first.get(1), first.get(2)) {
            (Some(Tok::Special(b'/')), Some(Tok::Token(s))) => Some(s.to_ascii_lowercase()),
            _ => None,
        };
        match kind.as_slice() {
            b"text" => self.ctype = Ctype::Text,
            b"message" => {
                self.ctype = Ctype::Message(match subtype.as_deref() {
                    Some(b"rfc822") => Stype::Rfc822,
                    Some(b"global") => Stype::Global,
                    _ => Stype::Other,
                })
            }
            b"multipart" => {
                self.ctype = Ctype::Multipart;
                let def = if subtype.as_deref() == Some(b"digest") {
                    Ctype::Message(Stype::Rfc822)
                } else {
                    Ctype::Text
                };
                for p in params {
                    if p.len() >= 3
                        && matches!(&p[0], Tok::Token(n) if n.eq_ignore_ascii_case(b"boundary"))
                        && p[1] == Tok::Special(b'=')
                        && self.nesting <= self.rw.nesting_limit
                    {
                        let mut b = match &p[2] {
                            Tok::Token(v) | Tok::Quoted(v) => v.clone(),
                            Tok::Special(c) => vec![*c],
                        };
                        b.truncate(self.rw.boundary_limit);
                        self.nesting += 1;
                        self.stack.push((def, b));
                    }
                }
            }
            _ => self.ctype = Ctype::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Token(Vec<u8>),
    Quoted(Vec<u8>),
    Special(u8),
}

/// header_token() over a Content-Type value: ';'-separated groups of RFC 2045 tokens,
/// comments and white space skipped, quoted strings unquoted.
fn split_params(v: &[u8]) -> Vec<Vec<Tok>> {
    const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";
    let mut groups = vec![Vec::new()];
    let mut i = 0;
    while i < v.len() {
        let c = v[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'(' {
            let mut level = 0;
            while i < v.len() {
                match v[i] {
                    b'(' => level += 1,
                    b')' => {
                        level -= 1;
                        if level == 0 {
                            i += 1;
                            break;
                        }
                    }
                    b'\\' => i += 1,
                    _ => {}
                }
                i += 1;
            }
        } else if c == b';' {
            groups.push(Vec::new());
            i += 1;
        } else if c == b'"' {
            let mut s = Vec::new();
            i += 1;
            while i < v.len() && v[i] != b'"' {
                if v[i] == b'\\' && i + 1 < v.len() {
                    i += 1;
                }
                s.push(v[i]);
                i += 1;
            }
            i += 1;
            if let Some(g) = groups.last_mut() {
                g.push(Tok::Quoted(s));
            }
        } else if TSPECIALS.contains(&c) {
            if let Some(g) = groups.last_mut() {
                g.push(Tok::Special(c));
            }
            i += 1;
        } else {
            let start = i;
            while i < v.len()
                && !v[i].is_ascii_whitespace()
                && !v[i].is_ascii_control()
                && !TSPECIALS.contains(&v[i])
            {
                i += 1;
            }
            if i == start {
                i += 1;
                continue;
            }
            if let Some(g) = groups.last_mut() {
                g.push(Tok::Token(v[start..i].to_vec()));
            }
        }
    }
    groups
}

impl Content for Filter<'_, '_> {
    fn rewind(&mut self) -> Result<(), Error> {
        self.reset();
        self.inner.rewind()
    }

    fn next_record(&mut self, buf: &mut Vec<u8>) -> Result<Option<Record>, Error> {
        loop {
            if let Some((text, kind)) = self.out.pop_front() {
                buf.clear();
                buf.extend_from_slice(&text);
                return Ok(Some(kind));
            }
            if self.eof {
                return Ok(None);
            }
            let mut rec = std::mem::take(&mut self.rec);
            match self.inner.next_record(&mut rec)? {
                Some(kind) => {
                    let r = self.update(kind, &rec);
                    self.rec = rec;
                    r?;
                }
                None => {
                    self.rec = rec;
                    self.eof = true;
                    self.finish()?;
                }
            }
        }
    }
}
