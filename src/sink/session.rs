//! Per-connection protocol engine of `outpost sink`: reads commands, keeps
//! SMTP/LMTP transaction state, applies the reply script and delays, reads
//! and unstuffs message data, and records messages and wire logs.
//!
//! Output is buffered and flushed only when no more client input is already
//! buffered (before a read would block), like a real pipelining server.

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::SinkConfig;
use super::auth::{Exchange, Step, Verdict};
use super::record::{Envelope, MessageFile, RawLog};
use super::script::{Lines, Phase, Reply};
use super::server::{Shared, Stream};
use super::tls::TlsRecord;

/// Command lines longer than this drop the connection (without --max-line).
const HARD_MAX_LINE: usize = 1 << 20;
/// Data is processed in pieces of at most this size.
const DATA_CHUNK: usize = 1 << 20;
/// Filler length of the `longline` reply.
const LONGLINE_LEN: usize = 5000;

static MSG_SEQ: AtomicU64 = AtomicU64::new(1);

/// Result of sending a (possibly scripted) reply.
enum Sent {
    /// A reply went out with this code (0: malformed reply).
    Code(u16),
    /// The script closed the connection instead.
    Closed,
}

/// Whether the session continues after a command.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// One command-phase input line.
enum Cmd {
    Line(Vec<u8>),
    TooLong,
    Overflow,
    Eof,
}

struct Rcpt {
    arg: Vec<u8>,
    addr: String,
}

struct Session<'a> {
    sh: &'a Shared,
    cfg: &'a SinkConfig,
    id: u64,
    rd: BufReader<Stream>,
    wr: BufWriter<Stream>,
    raw: Option<RawLog>,
    size_limit: u64,
    helo: Option<Vec<u8>>,
    proto: &'static str,
    greeting_ok: bool,
    authenticated: bool,
    /// "MECHANISM user" after a verified AUTH, for recordings.
    auth_info: Option<String>,
    mail: Option<Vec<u8>>,
    mail_addr: String,
    rcpts: Vec<Rcpt>,
    counts: [u64; Phase::COUNT],
    messages: u64,
    /// The TLS session in use, once STARTTLS (or the wrapper) succeeded.
    tls: Option<TlsRecord>,
}

/// Runs one session to completion; never panics on client input.
pub(crate) fn run(sh: &Shared, id: u64, stream: Stream) {
    let cfg = &sh.cfg;
    let peer = stream.peer();
    if let Err(e) = stream.set_timeouts(cfg.timeout) {
        sh.log(&format!("#{id}: cannot set timeouts: {e}"));
    }
    let mut tls = None;
    let stream = match (&sh.tls, cfg.tls.as_ref().is_some_and(|t| t.wrapper)) {
        (Some(server), true) => match server.accept(id, stream, cfg.timeout) {
            Ok((s, rec)) => {
                sh.log(&format!("#{id}: TLS established: {}", rec.describe()));
                tls = Some(rec);
                s
            }
            Err(e) => {
                sh.log(&format!("#{id}: TLS handshake failed: {e}"));
                return;
            }
        },
        _ => stream,
    };
    let wstream = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            sh.log(&format!("#{id}: {e}"));
            return;
        }
    };
    let raw = cfg
        .raw_dir
        .as_ref()
        .and_then(|d| match RawLog::create(d, &format!("{id:06}")) {
            Ok(r) => Some(r),
            Err(e) => {
                sh.log(&format!("#{id}: cannot create raw log: {e}"));
                None
            }
        });
    let mut s = Session {
        sh,
        cfg,
        id,
        rd: BufReader::with_capacity(64 * 1024, stream),
        wr: BufWriter::with_capacity(64 * 1024, wstream),
        raw,
        size_limit: size_limit(&cfg.caps),
        helo: None,
        proto: if cfg.lmtp { "LMTP" } else { "ESMTP" },
        greeting_ok: true,
        authenticated: false,
        auth_info: None,
        mail: None,
        mail_addr: String::new(),
        rcpts: Vec::new(),
        counts: [0; Phase::COUNT],
        messages: 0,
        tls,
    };
    s.log(&format!("connect from {peer}"));
    if let Err(e) = s.serve() {
        if is_timeout(&e) {
            let host = &cfg.hostname;
            let _ = s.send(&Lines::one(
                421,
                &format!("4.4.2 {host} Error: timeout exceeded"),
            ));
            s.log("timeout");
        } else if !matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::UnexpectedEof
        ) {
            s.log(&format!("I/O error: {e}"));
        }
    }
    let _ = s.wr.flush();
    if let Some(r) = s.raw.as_mut()
        && let Err(e) = r.commit()
    {
        s.log(&format!("cannot save raw log: {e}"));
    }
    s.wr.get_ref().shutdown();
    s.log(&format!(
        "disconnect from {peer} ({} message{})",
        s.messages,
        if s.messages == 1 { "" } else { "s" }
    ));
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The SIZE limit offered in the capability list (0: none).
fn size_limit(caps: &[String]) -> u64 {
    caps.iter()
        .find_map(|c| {
            let mut w = c.split_whitespace();
            match w.next() {
                Some(k) if k.eq_ignore_ascii_case("SIZE") => {
                    Some(w.next().and_then(|v| v.parse().ok()).unwrap_or(0))
                }
                _ => None,
            }
        })
        .unwrap_or(0)
}

fn is_space(b: &u8) -> bool {
    *b == b' ' || *b == b'\t'
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !is_space(c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !is_space(c))
        .map_or(start, |i| i + 1);
    &b[start..end.max(start)]
}

/// Splits a command line into an upper-case verb and its trimmed argument.
fn split_verb(line: &[u8]) -> (String, &[u8]) {
    let line = trim(line);
    let (verb, arg) = match line.iter().position(is_space) {
        Some(i) => (&line[..i], trim(&line[i..])),
        None => (line, &line[line.len()..]),
    };
    (String::from_utf8_lossy(verb).to_ascii_uppercase(), arg)
}

fn strip_prefix_ci<'b>(s: &'b [u8], prefix: &[u8]) -> Option<&'b [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Parses `<address> params` (or a bare address); returns the address
/// without brackets and the parameter text.
fn parse_path(s: &[u8]) -> Option<(String, &[u8])> {
    if s.first() == Some(&b'<') {
        let mut quoted = false;
        let mut escaped = false;
        for (i, &c) in s.iter().enumerate().skip(1) {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                quoted = !quoted;
            } else if c == b'>' && !quoted {
                let addr = String::from_utf8_lossy(&s[1..i]).into_owned();
                return Some((addr, trim(&s[i + 1..])));
            }
        }
        None
    } else {
        let end = s.iter().position(is_space).unwrap_or(s.len());
        if end == 0 {
            return None;
        }
        Some((
            String::from_utf8_lossy(&s[..end]).into_owned(),
            trim(&s[end..]),
        ))
    }
}

fn is_success(r: Option<&Reply>) -> bool {
    match r {
        None | Some(Reply::BareLf) | Some(Reply::LongLine) => true,
        Some(Reply::Text(l)) => (200..300).contains(&l.code),
        Some(_) => false,
    }
}

impl Session<'_> {
    fn log(&self, msg: &str) {
        self.sh.log(&format!("#{}: {msg}", self.id));
    }

    fn bump(&mut self, phase: Phase) -> u64 {
        let c = &mut self.counts[phase.index()];
        *c = c.saturating_add(1);
        *c
    }

    fn reset(&mut self) {
        self.mail = None;
        self.mail_addr.clear();
        self.rcpts.clear();
    }

    fn offers(&self, keyword: &str) -> bool {
        if keyword == "AUTH" && self.cfg.auth.is_some() {
            return true;
        }
        self.cfg.caps.iter().any(|c| {
            c.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
        })
    }

    // ---- output -------------------------------------------------------

    fn write_raw(&mut self, b: &[u8]) -> io::Result<()> {
        if let Some(r) = self.raw.as_mut() {
            r.server(b);
        }
        self.wr.write_all(b)
    }

    fn send(&mut self, l: &Lines) -> io::Result<()> {
        self.write_raw(&l.to_wire("\r\n"))
    }

    /// Sends a reply line by line, pausing `gap` before each line after the first
    /// (`--line-delay`): each line leaves on its own.
    fn send_trickled(&mut self, l: &Lines, gap: Option<Duration>) -> io::Result<()> {
        let Some(gap) = gap else {
            return self.send(l);
        };
        for (i, line) in l.lines.iter().enumerate() {
            if i > 0 {
                self.wr.flush()?;
                self.sleep(gap);
            }
            self.write_raw(format!("{line}\r\n").as_bytes())?;
        }
        Ok(())
    }

    /// Sends an unscripted reply and continues.
    fn error(&mut self, code: u16, text: &str) -> io::Result<Flow> {
        self.send(&Lines::one(code, text))?;
        Ok(Flow::Continue)
    }

    /// Sleeps, waking early if the server is being stopped.
    fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= end || self.sh.stopping() {
                return;
            }
            thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }

    /// Applies the script for this point of the dialogue, else sends `def`.
    fn respond(
        &mut self,
        phase: Phase,
        addr: Option<&str>,
        nth: u64,
        def: Lines,
    ) -> io::Result<Sent> {
        let script = &self.cfg.script;
        if let Some(d) = script.delay(phase, addr, nth) {
            self.sleep(d);
        }
        let gap = script.line_delay(phase, addr, nth);
        match script.reply(phase, addr, nth) {
            None => {
                self.send_trickled(&def, gap)?;
                Ok(Sent::Code(def.code))
            }
            Some(Reply::Text(l)) => {
                self.send_trickled(l, gap)?;
                Ok(Sent::Code(l.code))
            }
            Some(Reply::BareLf) => {
                self.write_raw(&def.to_wire("\n"))?;
                Ok(Sent::Code(def.code))
            }
            Some(Reply::Garbage) => {
                self.write_raw(b"this is not smtp\r\n")?;
                Ok(Sent::Code(0))
            }
            Some(Reply::BadCode) => {
                self.write_raw(b"2x0 malformed\r\n")?;
                Ok(Sent::Code(0))
            }
            Some(Reply::LongLine) => {
                let mut b = Vec::with_capacity(LONGLINE_LEN + 20);
                b.extend_from_slice(b"250-");
                b.resize(4 + LONGLINE_LEN, b'x');
                b.extend_from_slice(b"\r\n250 ok\r\n");
                self.write_raw(&b)?;
                Ok(Sent::Code(250))
            }
            Some(Reply::Disconnect) => {
                self.log(&format!("scripted disconnect at {}", phase.name()));
                let _ = self.wr.flush();
                self.wr.get_ref().shutdown();
                Ok(Sent::Closed)
            }
            Some(Reply::Hang) => {
                self.log(&format!("scripted hang at {}", phase.name()));
                let _ = self.wr.flush();
                self.hang();
                Ok(Sent::Closed)
            }
        }
    }

    /// Counts the phase and responds; maps a scripted close to `Flow`.
    fn simple(&mut self, phase: Phase, def: Lines) -> io::Result<Flow> {
        let n = self.bump(phase);
        Ok(match self.respond(phase, None, n, def)? {
            Sent::Closed => Flow::Close,
            Sent::Code(_) => Flow::Continue,
        })
    }

    /// Discards input until the client closes (or timeout / stop).
    fn hang(&mut self) {
        while !self.sh.stopping() {
            match self.rd.fill_buf() {
                Ok([]) | Err(_) => return,
                Ok(b) => {
                    let n = b.len();
                    self.rd.consume(n);
                }
            }
        }
    }

    // ---- input --------------------------------------------------------

    /// Appends input up to and including the next LF, at most `max` bytes.
    /// Returns the number of bytes appended (0 at EOF).  Pending output is
    /// flushed before any read that could block.
    fn read_chunk(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let mut total = 0;
        while total < max {
            if self.rd.buffer().is_empty() {
                self.wr.flush()?;
            }
            let avail = match self.rd.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                break;
            }
            let room = max - total;
            let (take, eol) = match avail.iter().position(|&c| c == b'\n') {
                Some(i) if i < room => (i + 1, true),
                _ => (avail.len().min(room), false),
            };
            buf.extend_from_slice(&avail[..take]);
            self.rd.consume(take);
            total += take;
            if eol {
                break;
            }
        }
        Ok(total)
    }

    fn log_client(&mut self, b: &[u8]) {
        if let Some(r) = self.raw.as_mut() {
            r.client(b);
        }
    }

    fn read_command(&mut self) -> io::Result<Cmd> {
        let limit = self
            .cfg
            .max_line
            .map_or(HARD_MAX_LINE, |n| n.min(HARD_MAX_LINE))
            .saturating_add(2);
        let mut line = Vec::new();
        if self.read_chunk(&mut line, limit)? == 0 {
            return Ok(Cmd::Eof);
        }
        self.log_client(&line);
        if !line.ends_with(b"\n") {
            if line.len() < limit {
                return Ok(Cmd::Eof); // partial line, then EOF
            }
            if self.cfg.max_line.is_none() {
                return Ok(Cmd::Overflow);
            }
            let mut rest = Vec::new();
            loop {
                rest.clear();
                if self.read_chunk(&mut rest, 64 * 1024)? == 0 {
                    return Ok(Cmd::Eof);
                }
                self.log_client(&rest);
                if rest.ends_with(b"\n") {
                    return Ok(Cmd::TooLong);
                }
            }
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if self.cfg.max_line.is_some_and(|m| line.len() > m) {
            return Ok(Cmd::TooLong);
        }
        Ok(Cmd::Line(line))
    }

    // ---- dialogue -----------------------------------------------------

    fn serve(&mut self) -> io::Result<()> {
        let n = self.bump(Phase::Greeting);
        let kind = if self.cfg.lmtp { "LMTP" } else { "ESMTP" };
        let def = Lines::one(220, &format!("{} {kind} outpost-sink", self.cfg.hostname));
        match self.respond(Phase::Greeting, None, n, def)? {
            Sent::Closed => return Ok(()),
            Sent::Code(c) => self.greeting_ok = (200..300).contains(&c),
        }
        loop {
            let line = match self.read_command()? {
                Cmd::Line(l) => l,
                Cmd::Eof => return Ok(()),
                Cmd::TooLong => {
                    self.error(500, "5.5.0 Error: line too long")?;
                    continue;
                }
                Cmd::Overflow => {
                    let host = &self.cfg.hostname;
                    let l = Lines::one(
                        421,
                        &format!("4.7.0 {host} Error: line too long, closing connection"),
                    );
                    self.send(&l)?;
                    return Ok(());
                }
            };
            if self.command(&line)? == Flow::Close {
                return Ok(());
            }
        }
    }

    fn command(&mut self, line: &[u8]) -> io::Result<Flow> {
        let (verb, arg) = split_verb(line);
        if !self.greeting_ok && verb != "QUIT" {
            return self.error(503, "5.5.1 Error: waiting for QUIT");
        }
        let lmtp = self.cfg.lmtp;
        match verb.as_str() {
            "EHLO" if !lmtp => self.hello(arg, Phase::Ehlo),
            "HELO" if !lmtp => self.hello(arg, Phase::Helo),
            "LHLO" if lmtp => self.hello(arg, Phase::Lhlo),
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => self.data(arg),
            "RSET" => {
                self.reset();
                self.simple(Phase::Rset, Lines::one(250, "2.0.0 Ok"))
            }
            "NOOP" => self.simple(Phase::Noop, Lines::one(250, "2.0.0 Ok")),
            "QUIT" => self.quit(),
            "VRFY" if arg.is_empty() => self.error(501, "5.5.4 Syntax: VRFY address"),
            "VRFY" => self.simple(
                Phase::Vrfy,
                Lines::one(
                    252,
                    "2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
                ),
            ),
            "STARTTLS" if self.offers("STARTTLS") || self.starttls_offered() => {
                if !arg.is_empty() {
                    return self.error(501, "5.5.4 Syntax: STARTTLS");
                }
                if self.sh.tls.is_some() {
                    return self.starttls();
                }
                self.simple(
                    Phase::Starttls,
                    Lines::one(454, "4.7.0 TLS not available due to local problem"),
                )
            }
            "AUTH" if self.offers("AUTH") => self.auth(arg),
            "XFORWARD" if self.offers("XFORWARD") => self.xforward(arg),
            "" => self.error(500, "5.5.2 Error: bad syntax"),
            _ => self.error(502, "5.5.2 Error: command not recognized"),
        }
    }

    fn hello(&mut self, arg: &[u8], phase: Phase) -> io::Result<Flow> {
        if arg.is_empty() {
            let verb = phase.name().to_ascii_uppercase();
            return self.error(501, &format!("5.5.4 Syntax: {verb} hostname"));
        }
        let n = self.bump(phase);
        let host = self.cfg.hostname.clone();
        let def = if phase == Phase::Helo {
            Lines::one(250, &host)
        } else if phase == Phase::Ehlo && !self.cfg.esmtp {
            Lines::one(502, "5.5.2 Error: command not recognized")
        } else {
            let mut texts = Vec::with_capacity(self.cfg.caps.len() + 2);
            texts.push(host);
            // Inside TLS, STARTTLS is no longer offered (RFC 3207).
            texts.extend(
                self.cfg
                    .caps
                    .iter()
                    .filter(|c| self.tls.is_none() || !c.eq_ignore_ascii_case("STARTTLS"))
                    .cloned(),
            );
            // Verified AUTH brings its own keyword unless --caps already has one.
            if let Some(a) = &self.cfg.auth
                && !self.cfg.caps.iter().any(|c| {
                    c.split_whitespace()
                        .next()
                        .is_some_and(|k| k.eq_ignore_ascii_case("AUTH"))
                })
            {
                texts.push(a.ehlo_keyword());
            }
            if self.starttls_offered() && !self.offers("STARTTLS") {
                texts.push("STARTTLS".into());
            }
            Lines::new(250, &texts)
        };
        let sent = self.respond(phase, None, n, def)?;
        if self.tls.is_some()
            && phase != Phase::Helo
            && let Some(e) = self.cfg.tls.as_ref().and_then(|t| t.early.clone())
        {
            self.write_raw(format!("{e}\r\n").as_bytes())?;
        }
        match sent {
            Sent::Closed => return Ok(Flow::Close),
            Sent::Code(c) if (200..300).contains(&c) => {
                self.reset();
                self.helo = Some(arg.to_vec());
                self.proto = match phase {
                    Phase::Helo => "SMTP",
                    Phase::Lhlo => "LMTP",
                    _ => "ESMTP",
                };
            }
            Sent::Code(_) => {}
        }
        Ok(Flow::Continue)
    }

    fn mail(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if self.helo.is_none() {
            let what = if self.cfg.lmtp { "LHLO" } else { "HELO/EHLO" };
            return self.error(503, &format!("5.5.1 Error: send {what} first"));
        }
        if self.mail.is_some() {
            return self.error(503, "5.5.1 Error: nested MAIL command");
        }
        let Some(rest) = strip_prefix_ci(arg, b"FROM:") else {
            return self.error(501, "5.5.4 Syntax: MAIL FROM:<address>");
        };
        let rest = trim(rest);
        let Some((addr, params)) = parse_path(rest) else {
            return self.error(501, "5.1.7 Bad sender address syntax");
        };
        for p in params.split(is_space).filter(|p| !p.is_empty()) {
            if let Some(v) = strip_prefix_ci(p, b"SIZE=") {
                let size = std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok());
                match size {
                    None => return self.error(501, "5.5.4 Bad message size syntax"),
                    Some(sz) if self.size_limit > 0 && sz > self.size_limit => {
                        return self.error(552, "5.3.4 Message size exceeds fixed limit");
                    }
                    Some(_) => {}
                }
            }
        }
        let n = self.bump(Phase::Mail);
        let def = Lines::one(250, "2.1.0 Ok");
        match self.respond(Phase::Mail, Some(&addr), n, def)? {
            Sent::Closed => return Ok(Flow::Close),
            Sent::Code(c) if (200..300).contains(&c) => {
                self.mail = Some(rest.to_vec());
                self.mail_addr = addr;
            }
            Sent::Code(_) => {}
        }
        Ok(Flow::Continue)
    }

    fn rcpt(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if self.mail.is_none() {
            return self.error(503, "5.5.1 Error: need MAIL command");
        }
        let Some(rest) = strip_prefix_ci(arg, b"TO:") else {
            return self.error(501, "5.5.4 Syntax: RCPT TO:<address>");
        };
        let rest = trim(rest);
        let addr = match parse_path(rest) {
            Some((a, _)) if !a.is_empty() => a,
            _ => return self.error(501, "5.1.3 Bad recipient address syntax"),
        };
        let n = self.bump(Phase::Rcpt);
        let def = Lines::one(250, "2.1.5 Ok");
        match self.respond(Phase::Rcpt, Some(&addr), n, def)? {
            Sent::Closed => return Ok(Flow::Close),
            Sent::Code(c) if (200..300).contains(&c) => self.rcpts.push(Rcpt {
                arg: rest.to_vec(),
                addr,
            }),
            Sent::Code(_) => {}
        }
        Ok(Flow::Continue)
    }

    fn data(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if !arg.is_empty() {
            return self.error(501, "5.5.4 Syntax: DATA");
        }
        if self.rcpts.is_empty() {
            return if self.mail.is_none() {
                self.error(503, "5.5.1 Error: need RCPT command")
            } else {
                self.error(554, "5.5.1 Error: no valid recipients")
            };
        }
        let n = self.bump(Phase::Data);
        let def = Lines::one(354, "End data with <CR><LF>.<CR><LF>");
        match self.respond(Phase::Data, None, n, def)? {
            Sent::Closed => Ok(Flow::Close),
            Sent::Code(c) if (300..400).contains(&c) => self.receive(),
            Sent::Code(_) => Ok(Flow::Continue),
        }
    }

    /// Indexes of recipients that will get a success reply at end of data.
    fn planned_deliveries(&self, nth: u64) -> Vec<usize> {
        let script = &self.cfg.script;
        if !self.cfg.lmtp {
            return if is_success(script.reply(Phase::Dot, None, nth)) {
                (0..self.rcpts.len()).collect()
            } else {
                Vec::new()
            };
        }
        let mut v = Vec::new();
        for (i, r) in self.rcpts.iter().enumerate() {
            let reply = script.reply(Phase::Dot, Some(&r.addr), nth);
            if matches!(reply, Some(Reply::Disconnect | Reply::Hang)) {
                break;
            }
            if is_success(reply) {
                v.push(i);
            }
        }
        v
    }

    fn start_file(&self, nth: u64) -> (Option<MessageFile>, bool) {
        let tls_desc = self.tls.as_ref().map(TlsRecord::describe);
        let Some(dir) = self.cfg.dir.as_ref() else {
            return (None, false);
        };
        let planned = self.planned_deliveries(nth);
        if planned.is_empty() {
            return (None, false);
        }
        let env = Envelope {
            helo: self.helo.as_deref().unwrap_or_default(),
            mail: self.mail.as_deref().unwrap_or_default(),
            rcpts: planned
                .iter()
                .filter_map(|&i| self.rcpts.get(i).map(|r| r.arg.as_slice()))
                .collect(),
            proto: self.proto,
            auth: self.auth_info.as_deref(),
            tls: tls_desc.as_deref(),
        };
        match MessageFile::create(dir, &env) {
            Ok(f) => (Some(f), false),
            Err(e) => {
                self.log(&format!("cannot create message file: {e}"));
                (None, true)
            }
        }
    }

    /// Reads message data after a 3xx DATA reply and answers end of data.
    fn receive(&mut self) -> io::Result<Flow> {
        let nth = self.bump(Phase::Dot);
        let (mut file, mut record_failed) = self.start_file(nth);
        let mut size: u64 = 0;
        let mut bol = true;
        let mut buf = Vec::with_capacity(1024);
        loop {
            buf.clear();
            if self.read_chunk(&mut buf, DATA_CHUNK)? == 0 {
                self.log("lost connection during DATA");
                return Ok(Flow::Close);
            }
            self.log_client(&buf);
            let at_bol = bol;
            bol = buf.ends_with(b"\n");
            let mut body: &[u8] = &buf;
            if at_bol && body.first() == Some(&b'.') {
                if body == b".\r\n" || body == b".\n" {
                    break;
                }
                body = &body[1..];
            }
            size += body.len() as u64;
            if let Some(f) = file.as_mut()
                && let Err(e) = f.write(body)
            {
                self.log(&format!("cannot write message file: {e}"));
                file = None;
                record_failed = true;
            }
        }
        self.messages += 1;
        let seq = format!("{:06}", MSG_SEQ.fetch_add(1, Ordering::Relaxed));
        let too_big = self.size_limit > 0 && size > self.size_limit;
        if too_big {
            file = None;
        } else if let Some(f) = file.take()
            && let Err(e) = f.commit(&seq)
        {
            self.log(&format!("cannot save message file: {e}"));
            record_failed = true;
        }
        drop(file);
        self.log(&format!(
            "message {seq} from=<{}> rcpts={} size={size}",
            self.mail_addr,
            self.rcpts.len()
        ));
        let rcpts = std::mem::take(&mut self.rcpts);
        let fail = if too_big {
            Some(Lines::one(552, "5.3.4 Message size exceeds fixed limit"))
        } else if record_failed {
            Some(Lines::one(451, "4.3.0 Error: cannot record message"))
        } else {
            None
        };
        let mut flow = Flow::Continue;
        if let Some(f) = fail {
            let count = if self.cfg.lmtp { rcpts.len() } else { 1 };
            for _ in 0..count {
                self.send(&f)?;
            }
        } else if self.cfg.lmtp {
            for r in &rcpts {
                let def = Lines::one(250, &format!("2.1.5 <{}> Ok", r.addr));
                if let Sent::Closed = self.respond(Phase::Dot, Some(&r.addr), nth, def)? {
                    flow = Flow::Close;
                    break;
                }
            }
        } else {
            let def = Lines::one(250, &format!("2.0.0 Ok: queued as {seq}"));
            if let Sent::Closed = self.respond(Phase::Dot, None, nth, def)? {
                flow = Flow::Close;
            }
        }
        self.reset();
        self.sh.message_done();
        Ok(flow)
    }

    fn quit(&mut self) -> io::Result<Flow> {
        let n = self.bump(Phase::Quit);
        if let Sent::Code(_) = self.respond(Phase::Quit, None, n, Lines::one(221, "2.0.0 Bye"))? {
            // Save the wire log before the client can see the reply.
            if let Some(r) = self.raw.as_mut()
                && let Err(e) = r.commit()
            {
                self.log(&format!("cannot save raw log: {e}"));
            }
            self.wr.flush()?;
        }
        Ok(Flow::Close)
    }

    /// STARTTLS is offered automatically with a certificate, until TLS is on.
    fn starttls_offered(&self) -> bool {
        self.sh.tls.is_some()
            && self.tls.is_none()
            && !self.cfg.tls.as_ref().is_some_and(|t| t.wrapper)
    }

    /// Answers STARTTLS (scripted replies apply); after a 2xx runs the handshake and
    /// forgets the plaintext state as RFC 3207 requires. Input pipelined after STARTTLS
    /// is discarded, so it can never be taken as TLS-protected.
    fn starttls(&mut self) -> io::Result<Flow> {
        if self.tls.is_some() {
            return self.error(554, "5.5.1 Error: TLS already active");
        }
        let n = self.bump(Phase::Starttls);
        let def = Lines::one(220, "2.0.0 Ready to start TLS");
        let inject = self.cfg.tls.as_ref().and_then(|t| t.inject.clone());
        let code = match self.cfg.script.reply(Phase::Starttls, None, n) {
            // Injection: the 220 and the extra line leave in one write.
            None if inject.is_some() => {
                let mut b = def.to_wire("\r\n");
                if let Some(i) = inject {
                    b.extend_from_slice(i.as_bytes());
                    b.extend_from_slice(b"\r\n");
                }
                self.write_raw(&b)?;
                220
            }
            _ => match self.respond(Phase::Starttls, None, n, def)? {
                Sent::Closed => return Ok(Flow::Close),
                Sent::Code(c) => c,
            },
        };
        if !(200..300).contains(&code) {
            return Ok(Flow::Continue);
        }
        self.wr.flush()?;
        let pending = self.rd.buffer().len();
        if pending > 0 {
            self.log(&format!(
                "discarding {pending} bytes sent before the TLS handshake"
            ));
            self.rd.consume(pending);
        }
        let Some(server) = self.sh.tls.as_ref() else {
            return Ok(Flow::Close);
        };
        let raw = self.rd.get_ref().try_clone()?;
        match server.accept(self.id, raw, self.cfg.timeout) {
            Ok((s, rec)) => {
                self.log(&format!("TLS established: {}", rec.describe()));
                let w = s.try_clone()?;
                self.rd = BufReader::with_capacity(64 * 1024, s);
                self.wr = BufWriter::with_capacity(64 * 1024, w);
                self.tls = Some(rec);
                self.reset();
                self.helo = None;
                Ok(Flow::Continue)
            }
            Err(e) => {
                self.log(&format!("TLS handshake failed: {e}"));
                Ok(Flow::Close)
            }
        }
    }

    fn auth(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if self.authenticated {
            return self.error(503, "5.5.1 Error: already authenticated");
        }
        if self.mail.is_some() {
            return self.error(503, "5.5.1 Error: MAIL transaction in progress");
        }
        let mut words = arg.split(is_space).filter(|w| !w.is_empty());
        let Some(mech) = words.next() else {
            return self.error(501, "5.5.4 Syntax: AUTH mechanism");
        };
        if self.cfg.auth.is_some() {
            let initial = words.next();
            return self.auth_verified(mech, initial);
        }
        let initial = words.next().is_some();
        let challenges: &[&str] = match (mech.eq_ignore_ascii_case(b"LOGIN"), initial) {
            (true, false) => &["VXNlcm5hbWU6", "UGFzc3dvcmQ6"],
            (true, true) => &["UGFzc3dvcmQ6"],
            (false, false) => &[""],
            (false, true) => &[],
        };
        for ch in challenges {
            self.write_raw(format!("334 {ch}\r\n").as_bytes())?;
            match self.read_command()? {
                Cmd::Line(l) if l == b"*" => {
                    return self.error(501, "5.7.0 Authentication aborted");
                }
                Cmd::Line(_) => {}
                Cmd::TooLong => return self.error(500, "5.5.0 Error: line too long"),
                Cmd::Eof | Cmd::Overflow => return Ok(Flow::Close),
            }
        }
        let n = self.bump(Phase::Auth);
        let def = Lines::one(235, "2.7.0 Authentication successful");
        match self.respond(Phase::Auth, None, n, def)? {
            Sent::Closed => return Ok(Flow::Close),
            Sent::Code(c) if (200..300).contains(&c) => self.authenticated = true,
            Sent::Code(_) => {}
        }
        Ok(Flow::Continue)
    }

    /// AUTH with real verification (`--auth-user`); see `auth.rs`.
    fn auth_verified(&mut self, mech: &[u8], initial: Option<&[u8]>) -> io::Result<Flow> {
        let Some(cfg) = self.cfg.auth.as_ref() else {
            return self.error(503, "5.5.1 Error: authentication not enabled");
        };
        let (mut exchange, mut step) = Exchange::start(cfg, &self.cfg.hostname, mech, initial);
        let verdict: Verdict = loop {
            match step {
                Step::Reply(code, text) => return self.error(code, &text),
                Step::Done(v) => break v,
                Step::Challenge(c) => {
                    self.write_raw(format!("334 {c}\r\n").as_bytes())?;
                    let line = match self.read_command()? {
                        Cmd::Line(l) => l,
                        Cmd::TooLong => return self.error(500, "5.5.0 Error: line too long"),
                        Cmd::Eof | Cmd::Overflow => return Ok(Flow::Close),
                    };
                    if line == b"*" {
                        return self.error(501, "5.7.0 Authentication aborted");
                    }
                    step = match exchange.as_mut() {
                        Some(x) => x.next(&line),
                        None => return self.error(501, "5.5.2 Unexpected response"),
                    };
                }
            }
        };
        let n = self.bump(Phase::Auth);
        let def = if verdict.ok {
            Lines::one(235, "2.7.0 Authentication successful")
        } else {
            Lines::one(
                535,
                "5.7.8 Error: authentication failed: authentication failure",
            )
        };
        let sent = self.respond(Phase::Auth, None, n, def)?;
        let what = format!("{} {}", verdict.mech, verdict.user);
        match sent {
            Sent::Closed => return Ok(Flow::Close),
            Sent::Code(c) if (200..300).contains(&c) => {
                self.authenticated = true;
                self.log(&format!(
                    "auth {what}: {}",
                    if verdict.ok {
                        "ok"
                    } else {
                        "accepted by script"
                    }
                ));
                self.auth_info = Some(if verdict.ok {
                    what
                } else {
                    format!("{what} (unverified)")
                });
            }
            Sent::Code(c) => self.log(&format!(
                "auth {what}: {} (reply {c})",
                if verdict.ok { "ok" } else { "failed" }
            )),
        }
        Ok(Flow::Continue)
    }

    fn xforward(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if arg.is_empty() {
            return self.error(501, "5.5.4 Syntax: XFORWARD attribute=value...");
        }
        if self.mail.is_some() {
            return self.error(503, "5.5.1 Error: MAIL transaction in progress");
        }
        self.simple(Phase::Xforward, Lines::one(250, "2.0.0 Ok"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_paths() {
        let (v, a) = split_verb(b"  mail  FROM:<a@b> SIZE=5  ");
        assert_eq!(v, "MAIL");
        assert_eq!(a, b"FROM:<a@b> SIZE=5");
        let (v, a) = split_verb(b"QUIT");
        assert_eq!((v.as_str(), a), ("QUIT", &b""[..]));
        assert_eq!(split_verb(b"").0, "");
        assert_eq!(
            parse_path(b"<a@b> SIZE=5"),
            Some(("a@b".to_string(), &b"SIZE=5"[..]))
        );
        assert_eq!(parse_path(b"<>"), Some((String::new(), &b""[..])));
        assert_eq!(
            parse_path(b"<\"x>y\"@b>"),
            Some(("\"x>y\"@b".to_string(), &b""[..]))
        );
        assert_eq!(parse_path(b"a@b X"), Some(("a@b".to_string(), &b"X"[..])));
        assert_eq!(parse_path(b"<a@b"), None);
        assert_eq!(parse_path(b""), None);
        assert_eq!(strip_prefix_ci(b"from:<x>", b"FROM:"), Some(&b"<x>"[..]));
        assert_eq!(strip_prefix_ci(b"fr", b"FROM:"), None);
    }

    #[test]
    fn size_cap() {
        let caps = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(size_limit(&caps(&["PIPELINING", "SIZE 1000"])), 1000);
        assert_eq!(size_limit(&caps(&["size"])), 0);
        assert_eq!(size_limit(&caps(&[])), 0);
    }
}
