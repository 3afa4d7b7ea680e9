//! The message stream: content records to the bytes of a DATA transfer.
//!
//! Lines end in CRLF on the wire whatever the input used; dot-stuffing covers a '.' at the
//! start of a line and also after a bare CR (some servers treat a bare CR as a line end,
//! which is how "SMTP smuggling" hides an end-of-data inside a message); lines longer than
//! smtp_line_length_limit are broken with CRLF SPACE as Postfix does.

pub mod filter;
pub mod memory;
pub mod mime;
#[cfg(test)]
mod tests_partial;

use crate::outcome::Error;
use crate::request::{Content, Record};

/// Writes one message's content to a byte sink in wire form.
pub struct BodyWriter {
    /// smtp_line_length_limit; 0 means no limit.
    pub line_limit: usize,
    folded: std::cell::Cell<bool>,
}

impl BodyWriter {
    pub fn new(line_limit: usize) -> BodyWriter {
        BodyWriter {
            line_limit,
            folded: std::cell::Cell::new(false),
        }
    }

    /// Whether the last `write` had to break a long line (Postfix logs this once).
    pub fn folded(&self) -> bool {
        self.folded.get()
    }

    /// Stream the whole content into `out` chunk by chunk; `out` is called with wire bytes
    /// whenever a buffer fills so that memory stays bounded for large messages.
    pub fn write(
        &self,
        content: &mut dyn Content,
        out: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        content.rewind()?;
        self.folded.set(false);
        let mut rec = Vec::new();
        let mut wire = Vec::with_capacity(64 * 1024);
        // Column within the current output line, to apply the length limit across records.
        let mut col = 0usize;
        let mut prev_partial = false;
        while let Some(kind) = content.next_record(&mut rec)? {
            self.encode(&rec, !prev_partial, &mut col, &mut wire);
            if kind == Record::Partial && self.line_limit > 0 && col >= self.line_limit {
                // Postfix breaks the line as soon as a continued record fills it, even if
                // nothing follows on that line.
                wire.extend_from_slice(b"\r\n ");
                self.folded.set(true);
                col = 1;
            }
            if kind == Record::Line {
                wire.extend_from_slice(b"\r\n");
                col = 0;
            }
            prev_partial = kind == Record::Partial;
            if wire.len() >= 48 * 1024 {
                out(&wire)?;
                wire.clear();
            }
        }
        if prev_partial {
            wire.extend_from_slice(b"\r\n");
        }
        if !wire.is_empty() {
            out(&wire)?;
        }
        Ok(())
    }

    fn encode(&self, data: &[u8], line_start: bool, col: &mut usize, wire: &mut Vec<u8>) {
        let mut at_start = line_start && *col == 0;
        let mut prev_cr = false;
        for &b in data {
            if self.line_limit > 0 && *col >= self.line_limit {
                // Break the line; the SPACE keeps a header continued and hides a leading
                // dot, so the continuation needs no stuffing of its own.
                wire.extend_from_slice(b"\r\n ");
                self.folded.set(true);
                *col = 1;
                at_start = false;
            }
            if b == b'.' && (at_start || prev_cr) {
                // Like Postfix, the stuffed dot does not count toward the line limit.
                wire.push(b'.');
            }
            wire.push(b);
            *col += 1;
            at_start = false;
            prev_cr = b == b'\r';
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory::MemoryContent;
    use super::*;

    fn wire(input: &[u8], limit: usize) -> Vec<u8> {
        let mut c = MemoryContent::new(input.to_vec());
        let mut out = Vec::new();
        BodyWriter::new(limit)
            .write(&mut c, &mut |b| {
                out.extend_from_slice(b);
                Ok(())
            })
            .ok();
        out
    }

    #[test]
    fn crlf_and_dots() {
        assert_eq!(wire(b"a\nb\r\n.c\n.\n", 0), b"a\r\nb\r\n..c\r\n..\r\n");
        assert_eq!(wire(b"no newline", 0), b"no newline\r\n");
        assert_eq!(wire(b"", 0), b"");
    }

    #[test]
    fn smuggling_shapes_cannot_end_data() {
        // LF.LF and CR.CR must not produce a lone dot line on the wire.
        let w = wire(b"x\n.\nmore\r.\rend\n", 0);
        assert_eq!(w, b"x\r\n..\r\nmore\r..\rend\r\n");
        assert!(!w.windows(5).any(|s| s == b"\r\n.\r\n"));
    }

    #[test]
    fn long_lines_fold() {
        assert_eq!(wire(b"abcdefgh\n", 3), b"abc\r\n de\r\n fg\r\n h\r\n");
        assert_eq!(wire(b"abc\n", 3), b"abc\r\n");
        assert_eq!(wire(b".bcdef\n", 3), b"..bc\r\n de\r\n f\r\n");
    }
}
