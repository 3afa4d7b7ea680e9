//! Postfix's attribute protocol, "0" flavour: the byte format that Postfix daemons speak
//! to each other over local stream sockets (qmgr to delivery agents, delivery agents to
//! bounce/defer/trace/verify/flush).
//!
//! Wire format (Postfix 3.7, `util/attr_print0.c`, `util/attr_scan0.c`):
//!
//! * a simple attribute is `NAME NUL VALUE NUL`;
//! * integers (`int`) are unsigned decimal text of the 32-bit value, so -1 travels as
//!   `4294967295`; longs the same with 64 bits;
//! * binary data is base64 text (standard alphabet, `=` padding);
//! * a table is the group `{ NUL` followed by name/value pairs and `} NUL`;
//! * "function" attributes (a DSN, a recipient, message statistics) are not framed at all:
//!   their members are simply written inline, in the order the function defines;
//! * a lone NUL (an empty name) ends the list.
//!
//! The reader here is strict by default, like Postfix's `ATTR_FLAG_STRICT`: attributes
//! must come in exactly the expected order and an unexpected one is an error. It can be
//! switched to Postfix's lenient default, which skips attributes nobody asked for. Every
//! string is bounded ([`Limits`]); malformed, truncated or oversized input yields an
//! [`AttrError`], never a panic.

use std::fmt;
use std::io::{self, BufRead, Write};

/// The attribute that carries a server's protocol announcement.
pub const ATTR_PROTOCOL: &str = "protocol";
/// Opening name of a table group.
pub const ATTR_NAME_OPEN: &str = "{";
/// Closing name of a table group.
pub const ATTR_NAME_CLOSE: &str = "}";

/// Bounds applied while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest name or value accepted, in bytes, without the NUL.
    pub max_len: usize,
    /// Most table entries, and most unrequested attributes skipped in one list.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_len: 100_000,
            // Postfix's own cap on a received table (ATTR_HASH_LIMIT).
            max_items: 1024,
        }
    }
}

/// Why reading or writing an attribute list failed.
#[derive(Debug)]
pub enum AttrError {
    /// The peer closed the stream before sending anything of the next item.
    Eof,
    /// The stream ended in the middle of a name or value.
    Truncated { context: &'static str },
    /// A name or value was longer than the configured limit.
    TooLong { context: &'static str, limit: usize },
    /// The list ended where this attribute was expected.
    Missing { expected: String },
    /// Another attribute came where this one was expected (strict mode), or the list
    /// did not end where it should have.
    Unexpected { expected: String, found: String },
    /// A number that is not unsigned decimal text or does not fit.
    BadNumber { name: String, value: String },
    /// Base64 data that does not decode.
    BadBase64 { name: String },
    /// A value that must be one fixed string was something else (e.g. the protocol name).
    Mismatch {
        name: String,
        expected: String,
        found: String,
    },
    /// Too many table entries or skipped attributes.
    TooMany { limit: usize },
    /// Well-formed attributes whose content makes no sense to the caller.
    Invalid(String),
    /// A read or write timed out.
    Timeout,
    /// Any other I/O error.
    Io(io::Error),
}

impl fmt::Display for AttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrError::Eof => f.write_str("premature end-of-input"),
            AttrError::Truncated { context } => {
                write!(f, "unexpected end-of-input while reading {context}")
            }
            AttrError::TooLong { context, limit } => {
                write!(f, "{context} longer than {limit} bytes")
            }
            AttrError::Missing { expected } => write!(f, "missing attribute {expected}"),
            AttrError::Unexpected { expected, found } => {
                write!(f, "unexpected attribute {found} (expecting: {expected})")
            }
            AttrError::BadNumber { name, value } => {
                write!(f, "malformed numerical data in {name}: {}", clip(value))
            }
            AttrError::BadBase64 { name } => write!(f, "malformed base64 data in {name}"),
            AttrError::Mismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "unexpected {name} {} (expected: {expected})",
                clip(found)
            ),
            AttrError::TooMany { limit } => write!(f, "attribute count exceeds limit {limit}"),
            AttrError::Invalid(text) => f.write_str(text),
            AttrError::Timeout => f.write_str("timeout"),
            AttrError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AttrError {}

impl From<io::Error> for AttrError {
    fn from(e: io::Error) -> AttrError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => AttrError::Timeout,
            io::ErrorKind::UnexpectedEof => AttrError::Truncated { context: "input" },
            _ => AttrError::Io(e),
        }
    }
}

/// At most 100 characters of peer-supplied text in an error message.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(100) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Bytes to text. Postfix strings are C strings of arbitrary bytes; ours are UTF-8, so
/// invalid sequences become U+FFFD.
pub fn lossy(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Parse unsigned decimal text of at most `max` (C's `%u`/`%lu` as Postfix writes it,
/// without the leniency of sscanf: digits only).
fn parse_unsigned(name: &str, value: &[u8], max: u64) -> Result<u64, AttrError> {
    let bad = || AttrError::BadNumber {
        name: name.to_string(),
        value: String::from_utf8_lossy(value).into_owned(),
    };
    if value.is_empty() || value.len() > 20 {
        return Err(bad());
    }
    let mut n: u64 = 0;
    for &c in value {
        if !c.is_ascii_digit() {
            return Err(bad());
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
            .ok_or_else(bad)?;
    }
    if n > max {
        return Err(bad());
    }
    Ok(n)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 with the standard alphabet and `=` padding, as Postfix's base64_code.c writes it.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = chunk[0];
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        out.push(B64[usize::from(b0 >> 2)] as char);
        out.push(B64[usize::from((b0 & 3) << 4 | b1 >> 4)] as char);
        if chunk.len() > 1 {
            out.push(B64[usize::from((b1 & 0xf) << 2 | b2 >> 6)] as char);
        } else {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(B64[usize::from(b2 & 0x3f)] as char);
        } else {
            out.push('=');
        }
    }
    out
}

/// Decode base64 text; `None` when it is not a whole number of well-formed quads.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let quads = text.len() / 4;
    for (i, q) in text.chunks(4).enumerate() {
        let last = i + 1 == quads;
        let a = val(q[0])?;
        let b = val(q[1])?;
        out.push(a << 2 | b >> 4);
        match (q[2], q[3]) {
            (b'=', b'=') if last => {}
            (c, b'=') if last => {
                let c = val(c)?;
                out.push(b << 4 | c >> 2);
            }
            (c, d) => {
                let c = val(c)?;
                let d = val(d)?;
                out.push(b << 4 | c >> 2);
                out.push(c << 6 | d);
            }
        }
    }
    Some(out)
}

/// Reads attribute lists from a buffered byte stream.
pub struct AttrReader<R> {
    inner: R,
    limits: Limits,
    strict: bool,
}

impl<R: BufRead> AttrReader<R> {
    /// A strict reader with default limits.
    pub fn new(inner: R) -> AttrReader<R> {
        AttrReader::with_limits(inner, Limits::default())
    }

    pub fn with_limits(inner: R, limits: Limits) -> AttrReader<R> {
        AttrReader {
            inner,
            limits,
            strict: true,
        }
    }

    /// Strict (the default): an attribute other than the expected one is an error.
    /// Lenient: unexpected attributes are skipped, as Postfix does without
    /// `ATTR_FLAG_EXTRA` (at most `max_items` of them per lookup).
    pub fn set_strict(&mut self, strict: bool) {
        self.strict = strict;
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Read one NUL-terminated string. `Eof` if the stream ends before its first byte.
    fn read_cstring(&mut self, context: &'static str) -> Result<Vec<u8>, AttrError> {
        let mut out = Vec::new();
        let mut started = false;
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if buf.is_empty() {
                return Err(if started {
                    AttrError::Truncated { context }
                } else {
                    AttrError::Eof
                });
            }
            started = true;
            let (take, done) = match buf.iter().position(|&b| b == 0) {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if out.len() + take > self.limits.max_len {
                return Err(AttrError::TooLong {
                    context,
                    limit: self.limits.max_len,
                });
            }
            out.extend_from_slice(&buf[..take]);
            self.inner.consume(take + usize::from(done));
            if done {
                return Ok(out);
            }
        }
    }

    /// The next attribute name; `None` for the list terminator.
    pub fn read_name(&mut self) -> Result<Option<String>, AttrError> {
        let name = self.read_cstring("input attribute name")?;
        if name.is_empty() {
            Ok(None)
        } else {
            Ok(Some(lossy(name)))
        }
    }

    /// The value that follows a name just read, as raw bytes.
    pub fn read_value(&mut self) -> Result<Vec<u8>, AttrError> {
        match self.read_cstring("input attribute value") {
            Err(AttrError::Eof) => Err(AttrError::Truncated {
                context: "input attribute value",
            }),
            other => other,
        }
    }

    /// True when the stream has ended cleanly (no byte left). Blocks until a byte arrives
    /// or the peer closes, like Postfix's peek before reading a delivery request.
    pub fn at_eof(&mut self) -> Result<bool, AttrError> {
        loop {
            match self.inner.fill_buf() {
                Ok(b) => return Ok(b.is_empty()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Look ahead (attr_scan_more): `Ok(false)` and the terminator consumed when the list
    /// ends here, `Ok(true)` when another attribute follows (nothing consumed).
    pub fn more(&mut self) -> Result<bool, AttrError> {
        let first = loop {
            match self.inner.fill_buf() {
                Ok(b) => break b.first().copied(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        match first {
            None => Err(AttrError::Eof),
            Some(0) => {
                self.inner.consume(1);
                Ok(false)
            }
            Some(_) => Ok(true),
        }
    }

    /// Position the stream just after the name `name`, skipping others when lenient.
    fn locate(&mut self, name: &str) -> Result<(), AttrError> {
        let mut skipped = 0;
        loop {
            match self.read_name()? {
                None => {
                    return Err(AttrError::Missing {
                        expected: name.to_string(),
                    });
                }
                Some(found) if found == name => return Ok(()),
                Some(found) => {
                    if self.strict {
                        return Err(AttrError::Unexpected {
                            expected: name.to_string(),
                            found,
                        });
                    }
                    skipped += 1;
                    if skipped > self.limits.max_items {
                        return Err(AttrError::TooMany {
                            limit: self.limits.max_items,
                        });
                    }
                    self.read_value()?;
                }
            }
        }
    }

    /// The raw bytes of attribute `name`.
    pub fn expect_bytes(&mut self, name: &str) -> Result<Vec<u8>, AttrError> {
        self.locate(name)?;
        self.read_value()
    }

    /// A string attribute (invalid UTF-8 replaced, see [`lossy`]).
    pub fn expect_str(&mut self, name: &str) -> Result<String, AttrError> {
        self.expect_bytes(name).map(lossy)
    }

    /// An `int` attribute: unsigned 32-bit decimal text, reinterpreted as C's `int`.
    pub fn expect_int(&mut self, name: &str) -> Result<i32, AttrError> {
        let v = self.expect_bytes(name)?;
        let n = parse_unsigned(name, &v, u64::from(u32::MAX))?;
        Ok(n as u32 as i32)
    }

    /// A `long` attribute: unsigned 64-bit decimal text, reinterpreted as C's `long`.
    pub fn expect_long(&mut self, name: &str) -> Result<i64, AttrError> {
        let v = self.expect_bytes(name)?;
        let n = parse_unsigned(name, &v, u64::MAX)?;
        Ok(n as i64)
    }

    /// A binary (base64-encoded) attribute.
    pub fn expect_data(&mut self, name: &str) -> Result<Vec<u8>, AttrError> {
        let v = self.expect_bytes(name)?;
        base64_decode(&v).ok_or_else(|| AttrError::BadBase64 {
            name: name.to_string(),
        })
    }

    /// An attribute whose value must equal `value` exactly.
    pub fn expect_streq(&mut self, name: &str, value: &str) -> Result<(), AttrError> {
        let v = self.expect_bytes(name)?;
        if v == value.as_bytes() {
            Ok(())
        } else {
            Err(AttrError::Mismatch {
                name: name.to_string(),
                expected: value.to_string(),
                found: lossy(v),
            })
        }
    }

    /// The list terminator. Strict: any attribute here is an error; lenient: remaining
    /// attributes are skipped up to the terminator.
    pub fn expect_end(&mut self) -> Result<(), AttrError> {
        let mut skipped = 0;
        loop {
            match self.read_name()? {
                None => return Ok(()),
                Some(found) => {
                    if self.strict {
                        return Err(AttrError::Unexpected {
                            expected: "(list terminator)".to_string(),
                            found,
                        });
                    }
                    skipped += 1;
                    if skipped > self.limits.max_items {
                        return Err(AttrError::TooMany {
                            limit: self.limits.max_items,
                        });
                    }
                    self.read_value()?;
                }
            }
        }
    }

    /// A table group `{ NUL (name NUL value NUL)* } NUL`, entries in wire order. As in
    /// Postfix, a repeated name keeps its first value.
    pub fn expect_hash(&mut self) -> Result<Vec<(String, String)>, AttrError> {
        self.locate(ATTR_NAME_OPEN)?;
        let mut out: Vec<(String, String)> = Vec::new();
        loop {
            let name = match self.read_name()? {
                None => {
                    return Err(AttrError::Missing {
                        expected: ATTR_NAME_CLOSE.to_string(),
                    });
                }
                Some(n) if n == ATTR_NAME_CLOSE => return Ok(out),
                Some(n) => n,
            };
            let value = lossy(self.read_value()?);
            if out.iter().any(|(k, _)| *k == name) {
                continue;
            }
            if out.len() >= self.limits.max_items {
                return Err(AttrError::TooMany {
                    limit: self.limits.max_items,
                });
            }
            out.push((name, value));
        }
    }

    /// Every remaining attribute up to and including the terminator, raw.
    pub fn read_list(&mut self) -> Result<Vec<(String, Vec<u8>)>, AttrError> {
        let mut out = Vec::new();
        while let Some(name) = self.read_name()? {
            if out.len() >= self.limits.max_items {
                return Err(AttrError::TooMany {
                    limit: self.limits.max_items,
                });
            }
            let value = self.read_value()?;
            out.push((name, value));
        }
        Ok(out)
    }

    /// A server's protocol announcement: `protocol NUL <name> NUL NUL`.
    pub fn expect_protocol(&mut self, name: &str) -> Result<(), AttrError> {
        self.expect_streq(ATTR_PROTOCOL, name)?;
        self.expect_end()
    }
}

/// Writes attribute lists. Output is collected in memory and handed to the underlying
/// writer by [`AttrWriter::flush`] (or when it grows large), so that one request normally
/// leaves in one write.
pub struct AttrWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

/// Pending output beyond this is written out before more is added.
const WRITE_CHUNK: usize = 64 * 1024;

/// C strings end at the first NUL; so do ours on the wire.
fn until_nul(s: &[u8]) -> &[u8] {
    match s.iter().position(|&b| b == 0) {
        Some(i) => &s[..i],
        None => s,
    }
}

impl<W: Write> AttrWriter<W> {
    pub fn new(inner: W) -> AttrWriter<W> {
        AttrWriter {
            inner,
            buf: Vec::new(),
        }
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The underlying writer; unflushed output is discarded.
    pub fn into_inner(self) -> W {
        self.inner
    }

    fn push_cstring(&mut self, s: &[u8]) -> Result<(), AttrError> {
        self.buf.extend_from_slice(until_nul(s));
        self.buf.push(0);
        if self.buf.len() >= WRITE_CHUNK {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// A string attribute. A NUL inside the value cuts it short, as in C.
    pub fn str(&mut self, name: &str, value: &str) -> Result<(), AttrError> {
        self.bytes(name, value.as_bytes())
    }

    /// A string attribute from raw bytes.
    pub fn bytes(&mut self, name: &str, value: &[u8]) -> Result<(), AttrError> {
        self.push_cstring(name.as_bytes())?;
        self.push_cstring(value)
    }

    /// An `int` attribute, written as Postfix does: the unsigned 32-bit value.
    pub fn int(&mut self, name: &str, value: i32) -> Result<(), AttrError> {
        self.str(name, &(value as u32).to_string())
    }

    /// A `long` attribute, written as the unsigned 64-bit value.
    pub fn long(&mut self, name: &str, value: i64) -> Result<(), AttrError> {
        self.str(name, &(value as u64).to_string())
    }

    /// A binary attribute, base64-encoded.
    pub fn data(&mut self, name: &str, value: &[u8]) -> Result<(), AttrError> {
        self.str(name, &base64_encode(value))
    }

    /// A table group.
    pub fn hash(&mut self, entries: &[(&str, &str)]) -> Result<(), AttrError> {
        self.push_cstring(ATTR_NAME_OPEN.as_bytes())?;
        for (k, v) in entries {
            self.str(k, v)?;
        }
        self.push_cstring(ATTR_NAME_CLOSE.as_bytes())
    }

    /// The list terminator.
    pub fn end(&mut self) -> Result<(), AttrError> {
        self.buf.push(0);
        Ok(())
    }

    /// A protocol announcement, terminated: `protocol NUL <name> NUL NUL`.
    pub fn protocol(&mut self, name: &str) -> Result<(), AttrError> {
        self.str(ATTR_PROTOCOL, name)?;
        self.end()
    }

    /// Send everything collected so far.
    pub fn flush(&mut self) -> Result<(), AttrError> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.inner.flush()?;
        Ok(())
    }
}

/// An open connection to a Postfix service that speaks the attribute protocol: the
/// reader (past the server's protocol announcement), the writer, and the socket itself
/// (for descriptor passing).
pub struct ServiceConn {
    pub reader: AttrReader<io::BufReader<std::os::unix::net::UnixStream>>,
    pub writer: AttrWriter<std::os::unix::net::UnixStream>,
    pub sock: std::os::unix::net::UnixStream,
}

impl ServiceConn {
    /// Connects to `path` with `timeout` on each read and write, and checks that the
    /// server announces protocol `proto`. `Err` says what failed, for a warning.
    pub fn connect(
        path: &std::path::Path,
        timeout: std::time::Duration,
        proto: &str,
    ) -> Result<ServiceConn, String> {
        let sock = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
            format!(
                "connect to {}: {}",
                path.display(),
                crate::log::strerror(&e)
            )
        })?;
        let _ = sock.set_read_timeout(Some(timeout));
        let _ = sock.set_write_timeout(Some(timeout));
        let r = sock.try_clone().map_err(|e| e.to_string())?;
        let w = sock.try_clone().map_err(|e| e.to_string())?;
        let mut reader = AttrReader::new(io::BufReader::new(r));
        reader.expect_protocol(proto).map_err(|e| e.to_string())?;
        Ok(ServiceConn {
            reader,
            writer: AttrWriter::new(w),
            sock,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn reader(bytes: &[u8]) -> AttrReader<Cursor<Vec<u8>>> {
        AttrReader::new(Cursor::new(bytes.to_vec()))
    }

    fn written(f: impl FnOnce(&mut AttrWriter<&mut Vec<u8>>) -> Result<(), AttrError>) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = AttrWriter::new(&mut out);
            f(&mut w).unwrap();
            w.flush().unwrap();
        }
        out
    }

    #[test]
    fn wire_format_of_each_type() {
        let out = written(|w| {
            w.str("protocol", "test")?;
            w.int("number", 4711)?;
            w.int("status", -1)?;
            w.long("long_number", 1234)?;
            w.data("data", b"whoopee")?;
            w.hash(&[("foo-name", "foo-value")])?;
            w.end()
        });
        let expected: &[u8] = b"protocol\0test\0number\x004711\0status\x004294967295\0\
long_number\x001234\0data\0d2hvb3BlZQ==\0{\0foo-name\0foo-value\0}\0\0";
        assert_eq!(out, expected);
    }

    #[test]
    fn round_trip() {
        let out = written(|w| {
            w.str("s", "hello wörld")?;
            w.int("i", -1)?;
            w.int("j", 7)?;
            w.long("l", -2)?;
            w.long("m", i64::MAX)?;
            w.data("d", &[0, 1, 2, 255, 254])?;
            w.hash(&[("a", "1"), ("b", "2")])?;
            w.str("empty", "")?;
            w.end()
        });
        let mut r = reader(&out);
        assert_eq!(r.expect_str("s").unwrap(), "hello wörld");
        assert_eq!(r.expect_int("i").unwrap(), -1);
        assert_eq!(r.expect_int("j").unwrap(), 7);
        assert_eq!(r.expect_long("l").unwrap(), -2);
        assert_eq!(r.expect_long("m").unwrap(), i64::MAX);
        assert_eq!(r.expect_data("d").unwrap(), vec![0, 1, 2, 255, 254]);
        assert_eq!(
            r.expect_hash().unwrap(),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "2".to_string())
            ]
        );
        assert_eq!(r.expect_str("empty").unwrap(), "");
        r.expect_end().unwrap();
        assert!(r.at_eof().unwrap());
        assert!(matches!(r.read_name(), Err(AttrError::Eof)));
    }

    #[test]
    fn base64_matches_postfix() {
        for (plain, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64_encode(plain), enc);
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), plain);
        }
        assert!(base64_decode(b"Zm9").is_none());
        assert!(base64_decode(b"Zm!v").is_none());
        assert!(base64_decode(b"Zg==Zm9v").is_none());
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(base64_encode(&all).as_bytes()).unwrap(), all);
    }

    #[test]
    fn protocol_handshake() {
        let out = written(|w| w.protocol("delivery_status_protocol"));
        assert_eq!(out, b"protocol\0delivery_status_protocol\0\0");
        reader(&out)
            .expect_protocol("delivery_status_protocol")
            .unwrap();
        assert!(matches!(
            reader(&out).expect_protocol("delivery_request_protocol"),
            Err(AttrError::Mismatch { .. })
        ));
    }

    #[test]
    fn strict_and_lenient() {
        let input = b"extra\0x\0status\x000\0more\0y\0\0";
        let mut r = reader(input);
        assert!(matches!(
            r.expect_int("status"),
            Err(AttrError::Unexpected { .. })
        ));
        let mut r = reader(input);
        r.set_strict(false);
        assert_eq!(r.expect_int("status").unwrap(), 0);
        r.expect_end().unwrap();
        let mut r = reader(b"\0");
        assert!(matches!(
            r.expect_int("status"),
            Err(AttrError::Missing { .. })
        ));
        let mut r = reader(b"status\x000\0more\0y\0\0");
        assert_eq!(r.expect_int("status").unwrap(), 0);
        assert!(matches!(r.expect_end(), Err(AttrError::Unexpected { .. })));
    }

    #[test]
    fn malformed_input_is_an_error() {
        // Truncated in a name, in a value, missing NUL at the end, empty stream.
        for input in [&b"stat"[..], b"status\0", b"status\x000", b"status\x000\0"] {
            let mut r = reader(input);
            let res = r.expect_int("status").and_then(|_| r.expect_end());
            assert!(res.is_err(), "{input:?}");
        }
        assert!(matches!(reader(b"").read_name(), Err(AttrError::Eof)));
        assert!(matches!(
            reader(b"status\0").expect_int("status"),
            Err(AttrError::Truncated { .. })
        ));
        // Bad numbers.
        for v in [
            &b"-1"[..],
            b"",
            b" 1",
            b"1x",
            b"4294967296",
            b"99999999999999999999999",
        ] {
            let mut input = b"n\0".to_vec();
            input.extend_from_slice(v);
            input.extend_from_slice(b"\0\0");
            assert!(
                matches!(
                    reader(&input).expect_int("n"),
                    Err(AttrError::BadNumber { .. })
                ),
                "{v:?}"
            );
        }
        assert!(matches!(
            reader(b"l\x0018446744073709551616\0").expect_long("l"),
            Err(AttrError::BadNumber { .. })
        ));
        assert!(matches!(
            reader(b"d\0abc\0").expect_data("d"),
            Err(AttrError::BadBase64 { .. })
        ));
        // Unterminated table.
        assert!(reader(b"{\0a\0b\0\0").expect_hash().is_err());
    }

    #[test]
    fn length_limits() {
        let limits = Limits {
            max_len: 8,
            max_items: 2,
        };
        let mut r = AttrReader::with_limits(Cursor::new(b"name\x00123456789\0".to_vec()), limits);
        assert!(matches!(
            r.expect_str("name"),
            Err(AttrError::TooLong { limit: 8, .. })
        ));
        let mut r = AttrReader::with_limits(Cursor::new(b"name\x0012345678\0".to_vec()), limits);
        assert_eq!(r.expect_str("name").unwrap(), "12345678");
        let mut r = AttrReader::with_limits(Cursor::new(b"longername\0x\0".to_vec()), limits);
        assert!(matches!(r.read_name(), Err(AttrError::TooLong { .. })));
        let mut r = AttrReader::with_limits(
            Cursor::new(b"a\0x\0b\0x\0c\0x\0want\x001\0".to_vec()),
            limits,
        );
        r.set_strict(false);
        assert!(matches!(
            r.expect_int("want"),
            Err(AttrError::TooMany { .. })
        ));
        let mut r =
            AttrReader::with_limits(Cursor::new(b"{\0a\0x\0b\0x\0c\0x\0}\0\0".to_vec()), limits);
        assert!(matches!(r.expect_hash(), Err(AttrError::TooMany { .. })));
    }

    #[test]
    fn small_reads_and_more() {
        // A reader that hands out one byte at a time.
        let data = b"a\x001\0\0b\x002\0\0".to_vec();
        let mut r = AttrReader::new(io::BufReader::with_capacity(1, Cursor::new(data)));
        assert!(r.more().unwrap());
        assert_eq!(r.expect_int("a").unwrap(), 1);
        assert!(!r.more().unwrap());
        assert_eq!(r.expect_int("b").unwrap(), 2);
        r.expect_end().unwrap();
        assert!(r.at_eof().unwrap());
    }

    #[test]
    fn nul_in_value_truncates_like_c() {
        let out = written(|w| {
            w.str("a", "x\0y")?;
            w.end()
        });
        assert_eq!(out, b"a\0x\0\0");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut r = reader(b"a\0\xff\xfe\0");
        assert_eq!(r.expect_str("a").unwrap(), "\u{fffd}\u{fffd}");
    }
}
