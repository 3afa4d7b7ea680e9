//! Reply script for `outpost sink`: parses `--reply` and `--delay` specs and
//! answers "what should the sink say, and how long should it wait first, at
//! this point of the dialogue".
//!
//! A spec is `SELECTOR=VALUE`.  A selector is `PHASE`, `PHASE:ADDR` (mail,
//! rcpt and dot only; case-insensitive match on the address inside `<>`) or
//! `PHASE#N` (the Nth occurrence of that phase in a connection, 1-based).
//! Lookup precedence: `PHASE#N`, then `PHASE:ADDR`, then `PHASE`; among
//! equally specific selectors the spec given last wins.

use std::time::Duration;

/// A point in the dialogue where the sink sends a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Greeting,
    Ehlo,
    Helo,
    Lhlo,
    Mail,
    Rcpt,
    Data,
    Dot,
    Rset,
    Quit,
    Noop,
    Vrfy,
    Starttls,
    Auth,
    Xforward,
}

impl Phase {
    /// Number of phases (size of per-phase counter arrays).
    pub const COUNT: usize = 15;

    const ALL: [Phase; Phase::COUNT] = [
        Phase::Greeting,
        Phase::Ehlo,
        Phase::Helo,
        Phase::Lhlo,
        Phase::Mail,
        Phase::Rcpt,
        Phase::Data,
        Phase::Dot,
        Phase::Rset,
        Phase::Quit,
        Phase::Noop,
        Phase::Vrfy,
        Phase::Starttls,
        Phase::Auth,
        Phase::Xforward,
    ];

    /// The phase name as used in specs.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Greeting => "greeting",
            Phase::Ehlo => "ehlo",
            Phase::Helo => "helo",
            Phase::Lhlo => "lhlo",
            Phase::Mail => "mail",
            Phase::Rcpt => "rcpt",
            Phase::Data => "data",
            Phase::Dot => "dot",
            Phase::Rset => "rset",
            Phase::Quit => "quit",
            Phase::Noop => "noop",
            Phase::Vrfy => "vrfy",
            Phase::Starttls => "starttls",
            Phase::Auth => "auth",
            Phase::Xforward => "xforward",
        }
    }

    /// Parses a phase name (case-insensitive).
    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL
            .iter()
            .copied()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Index into per-phase counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    fn takes_addr(self) -> bool {
        matches!(self, Phase::Mail | Phase::Rcpt | Phase::Dot)
    }
}

/// Which occurrences of a phase a spec applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// Every occurrence.
    Any,
    /// Occurrences concerning this address (stored without `<>`).
    Addr(String),
    /// Only the Nth occurrence in a connection (1-based).
    Nth(u64),
}

/// The left-hand side of a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub phase: Phase,
    pub matcher: Matcher,
}

impl Selector {
    /// Parses `PHASE`, `PHASE:ADDR` or `PHASE#N`.
    pub fn parse(key: &str) -> Result<Selector, String> {
        let key = key.trim();
        let (pname, matcher) = if let Some((p, n)) = key.split_once('#') {
            let n: u64 = n
                .trim()
                .parse()
                .map_err(|_| format!("bad occurrence number in \"{key}\""))?;
            if n == 0 {
                return Err(format!("occurrence numbers start at 1 in \"{key}\""));
            }
            (p, Matcher::Nth(n))
        } else if let Some((p, a)) = key.split_once(':') {
            (p, Matcher::Addr(strip_brackets(a.trim()).to_string()))
        } else {
            (key, Matcher::Any)
        };
        let phase = Phase::parse(pname).ok_or_else(|| format!("unknown phase \"{pname}\""))?;
        if matches!(matcher, Matcher::Addr(_)) && !phase.takes_addr() {
            return Err(format!(
                "an address selector is only valid for mail, rcpt and dot: \"{key}\""
            ));
        }
        Ok(Selector { phase, matcher })
    }

    /// Specificity rank when this selector matches, or None.
    fn rank(&self, phase: Phase, addr: Option<&str>, nth: u64) -> Option<u8> {
        if self.phase != phase {
            return None;
        }
        match &self.matcher {
            Matcher::Any => Some(0),
            Matcher::Addr(a) => match addr {
                Some(x) if x.eq_ignore_ascii_case(a) => Some(1),
                _ => None,
            },
            Matcher::Nth(n) => (*n == nth).then_some(2),
        }
    }
}

fn strip_brackets(a: &str) -> &str {
    a.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(a)
}

/// A well-formed SMTP reply: code plus complete wire lines (without CRLF).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lines {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Lines {
    /// Builds a reply from a code and text lines, adding `CODE-` to all but
    /// the last line and `CODE ` to the last.
    pub fn new<S: AsRef<str>>(code: u16, texts: &[S]) -> Lines {
        let n = texts.len().max(1);
        let mut lines = Vec::with_capacity(n);
        for i in 0..n {
            let text = texts.get(i).map(|s| s.as_ref()).unwrap_or("");
            let sep = if i + 1 < n { "-" } else { " " };
            if text.is_empty() && i + 1 == n {
                lines.push(format!("{code}"));
            } else {
                lines.push(format!("{code}{sep}{text}"));
            }
        }
        Lines { code, lines }
    }

    /// Single-line reply.
    pub fn one(code: u16, text: &str) -> Lines {
        Lines::new(code, &[text])
    }

    /// Parses user reply text: lines separated by a real newline or by the
    /// two characters `\n`; the first line must start with a 3-digit code;
    /// later lines may repeat the code (stripped) or be bare text.
    pub fn parse(spec: &str) -> Result<Lines, String> {
        let spec = spec.replace("\\n", "\n");
        let raw: Vec<&str> = spec
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        let first = raw.first().copied().unwrap_or("");
        let b = first.as_bytes();
        let valid_code = b.len() >= 3
            && (b'1'..=b'5').contains(&b[0])
            && b[1].is_ascii_digit()
            && b[2].is_ascii_digit();
        if !valid_code {
            return Err(format!(
                "reply \"{spec}\" must start with a 3-digit code 1xx-5xx (or be one of \
                 disconnect, hang, garbage, longline, badcode, bare-lf)"
            ));
        }
        let code_str = &first[..3];
        let code: u16 = code_str
            .parse()
            .map_err(|_| format!("bad reply code in \"{spec}\""))?;
        let mut texts = Vec::with_capacity(raw.len());
        for (i, line) in raw.iter().enumerate() {
            let rest = line.strip_prefix(code_str);
            let text = match rest {
                Some("") => "",
                Some(r) if r.starts_with(' ') || r.starts_with('-') => &r[1..],
                _ if i == 0 => {
                    return Err(format!(
                        "reply code must be followed by a space in \"{spec}\""
                    ));
                }
                _ => line,
            };
            texts.push(text);
        }
        Ok(Lines::new(code, &texts))
    }

    /// The reply as wire bytes, each line ending with `eol`.
    pub fn to_wire(&self, eol: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in &self.lines {
            out.extend_from_slice(l.as_bytes());
            out.extend_from_slice(eol.as_bytes());
        }
        out
    }
}

/// What the sink sends at a scripted point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A normal reply.
    Text(Lines),
    /// Close the connection without replying.
    Disconnect,
    /// Never reply; wait until the client closes.
    Hang,
    /// Send `this is not smtp`.
    Garbage,
    /// Send `250-` plus 5000 `x`, then `250 ok`.
    LongLine,
    /// Send `2x0 malformed`.
    BadCode,
    /// Send the phase's default reply with bare LF line endings.
    BareLf,
}

impl Reply {
    /// Parses a REPLY value (special keyword or reply text).
    pub fn parse(s: &str) -> Result<Reply, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "disconnect" => Reply::Disconnect,
            "hang" => Reply::Hang,
            "garbage" => Reply::Garbage,
            "longline" => Reply::LongLine,
            "badcode" => Reply::BadCode,
            "bare-lf" | "barelf" => Reply::BareLf,
            _ => Reply::Text(Lines::parse(s)?),
        })
    }
}

/// Parses a duration like `500ms`, `2s`, `1.5s`, `1m`, `250us`; a bare
/// number means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration \"{s}\""))?;
    let secs = v * mult;
    if !secs.is_finite() || !(0.0..=86400.0 * 365.0).contains(&secs) {
        return Err(format!("duration out of range: \"{s}\""));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("bad duration \"{s}\""))
}

/// Splits `SELECTOR=VALUE` at the first `=` whose right-hand side parses,
/// so addresses that contain `=` (e.g. SRS) still work.
fn split_spec<T>(
    spec: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<(Selector, T), String> {
    let mut last_err = format!("spec \"{spec}\" must look like SELECTOR=VALUE");
    for (i, _) in spec.match_indices('=') {
        let (key, val) = (&spec[..i], &spec[i + 1..]);
        match parse(val) {
            Ok(v) => return Ok((Selector::parse(key)?, v)),
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

/// The full set of scripted replies and delays.
#[derive(Clone, Debug, Default)]
pub struct Script {
    replies: Vec<(Selector, Reply)>,
    delays: Vec<(Selector, Duration)>,
    /// Pauses between the lines of a multi-line reply (`--line-delay`).
    line_delays: Vec<(Selector, Duration)>,
}

impl Script {
    /// Adds a `--reply` spec.
    pub fn add_reply(&mut self, spec: &str) -> Result<(), String> {
        let (sel, reply) = split_spec(spec, Reply::parse)?;
        self.replies.push((sel, reply));
        Ok(())
    }

    /// Adds a `--delay` spec.
    pub fn add_delay(&mut self, spec: &str) -> Result<(), String> {
        let (sel, d) = split_spec(spec, parse_duration)?;
        self.delays.push((sel, d));
        Ok(())
    }

    /// Adds a `--line-delay` spec.
    pub fn add_line_delay(&mut self, spec: &str) -> Result<(), String> {
        let (sel, d) = split_spec(spec, parse_duration)?;
        self.line_delays.push((sel, d));
        Ok(())
    }

    /// True if no spec was given.
    pub fn is_empty(&self) -> bool {
        self.replies.is_empty() && self.delays.is_empty() && self.line_delays.is_empty()
    }

    /// Scripted reply for this point, if any.
    pub fn reply(&self, phase: Phase, addr: Option<&str>, nth: u64) -> Option<&Reply> {
        best(&self.replies, phase, addr, nth)
    }

    /// Scripted delay for this point, if any.
    pub fn delay(&self, phase: Phase, addr: Option<&str>, nth: u64) -> Option<Duration> {
        best(&self.delays, phase, addr, nth).copied()
    }

    /// Scripted pause before each line after the first of a reply, if any.
    pub fn line_delay(&self, phase: Phase, addr: Option<&str>, nth: u64) -> Option<Duration> {
        best(&self.line_delays, phase, addr, nth).copied()
    }
}

fn best<'a, T>(
    list: &'a [(Selector, T)],
    phase: Phase,
    addr: Option<&str>,
    nth: u64,
) -> Option<&'a T> {
    let mut found: Option<(u8, &T)> = None;
    for (sel, v) in list {
        if let Some(r) = sel.rank(phase, addr, nth)
            && found.is_none_or(|(fr, _)| r >= fr)
        {
            found = Some((r, v));
        }
    }
    found.map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Reply) -> Vec<String> {
        match r {
            Reply::Text(l) => l.lines.clone(),
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn phases_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.name()), Some(p));
            assert_eq!(Phase::ALL[p.index()], p);
        }
        assert_eq!(Phase::parse("RCPT"), Some(Phase::Rcpt));
        assert_eq!(Phase::parse("bogus"), None);
    }

    #[test]
    fn single_line_reply() {
        let r = Reply::parse("450 4.1.1 try later").unwrap();
        assert_eq!(text(&r), vec!["450 4.1.1 try later"]);
        let r = Reply::parse("250").unwrap();
        assert_eq!(text(&r), vec!["250"]);
    }

    #[test]
    fn multi_line_reply_forms() {
        let a = Reply::parse("250 first\\nsecond\\nthird").unwrap();
        assert_eq!(text(&a), vec!["250-first", "250-second", "250 third"]);
        let b = Reply::parse("250-first\n250-second\n250 third").unwrap();
        assert_eq!(a, b);
        let c = Reply::parse("421 a\\n421 b").unwrap();
        assert_eq!(text(&c), vec!["421-a", "421 b"]);
        let Reply::Text(l) = c else { panic!() };
        assert_eq!(l.code, 421);
        assert_eq!(l.to_wire("\r\n"), b"421-a\r\n421 b\r\n".to_vec());
    }

    #[test]
    fn bad_replies() {
        for bad in ["", "abc", "25", "2x0 x", "650 x", "4501 x", "hello"] {
            assert!(Reply::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn special_replies() {
        assert_eq!(Reply::parse("disconnect").unwrap(), Reply::Disconnect);
        assert_eq!(Reply::parse("HANG").unwrap(), Reply::Hang);
        assert_eq!(Reply::parse("garbage").unwrap(), Reply::Garbage);
        assert_eq!(Reply::parse("longline").unwrap(), Reply::LongLine);
        assert_eq!(Reply::parse("badcode").unwrap(), Reply::BadCode);
        assert_eq!(Reply::parse("bare-lf").unwrap(), Reply::BareLf);
    }

    #[test]
    fn selectors() {
        let s = Selector::parse("rcpt:<Bob@Example.COM>").unwrap();
        assert_eq!(s.phase, Phase::Rcpt);
        assert_eq!(s.matcher, Matcher::Addr("Bob@Example.COM".into()));
        let s = Selector::parse("mail#3").unwrap();
        assert_eq!(s.matcher, Matcher::Nth(3));
        assert!(Selector::parse("mail#0").is_err());
        assert!(Selector::parse("mail#x").is_err());
        assert!(Selector::parse("helo:foo").is_err());
        assert!(Selector::parse("nosuch").is_err());
        let s = Selector::parse("mail:<>").unwrap();
        assert_eq!(s.matcher, Matcher::Addr(String::new()));
    }

    #[test]
    fn script_precedence() {
        let mut s = Script::default();
        s.add_reply("rcpt=450 4.0.0 all").unwrap();
        s.add_reply("rcpt:bob@x.test=550 5.1.1 bob").unwrap();
        s.add_reply("rcpt#2=451 4.0.0 second").unwrap();
        let get = |s: &Script, addr: &str, n| text(s.reply(Phase::Rcpt, Some(addr), n).unwrap());
        assert_eq!(get(&s, "a@x.test", 1), vec!["450 4.0.0 all"]);
        assert_eq!(get(&s, "BOB@X.TEST", 1), vec!["550 5.1.1 bob"]);
        assert_eq!(get(&s, "bob@x.test", 2), vec!["451 4.0.0 second"]);
        assert!(s.reply(Phase::Mail, Some("a"), 1).is_none());
        s.add_reply("rcpt=252 later wins").unwrap();
        assert_eq!(get(&s, "a@x.test", 1), vec!["252 later wins"]);
    }

    #[test]
    fn spec_with_equals_in_address() {
        let mut s = Script::default();
        s.add_reply("rcpt:SRS0=ab=cd@x.test=550 5.1.1 no").unwrap();
        assert!(s.reply(Phase::Rcpt, Some("srs0=ab=cd@x.test"), 1).is_some());
        assert!(s.add_reply("rcpt").is_err());
        assert!(s.add_reply("rcpt=nonsense").is_err());
        assert!(s.add_reply("bogus=250 ok").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        for bad in ["", "x", "-1s", "nan", "inf", "1e300s", "5 parsecs"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        let mut s = Script::default();
        s.add_delay("dot#2=100ms").unwrap();
        assert_eq!(s.delay(Phase::Dot, None, 1), None);
        assert_eq!(
            s.delay(Phase::Dot, None, 2),
            Some(Duration::from_millis(100))
        );
        assert!(s.add_delay("dot=soon").is_err());
        s.add_line_delay("mail=250ms").unwrap();
        assert_eq!(
            s.line_delay(Phase::Mail, None, 1),
            Some(Duration::from_millis(250))
        );
        assert_eq!(s.delay(Phase::Mail, None, 1), None);
        assert!(s.add_line_delay("mail=later").is_err());
    }
}
