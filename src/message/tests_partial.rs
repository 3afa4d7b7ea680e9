//! Records split across queue-file records (Postfix's 'L' records) on the wire.

use super::BodyWriter;
use crate::outcome::Error;
use crate::request::{Content, Record};

struct Recs(Vec<(Vec<u8>, Record)>, usize);

impl Content for Recs {
    fn rewind(&mut self) -> Result<(), Error> {
        self.1 = 0;
        Ok(())
    }
    fn next_record(&mut self, buf: &mut Vec<u8>) -> Result<Option<Record>, Error> {
        buf.clear();
        let Some((d, k)) = self.0.get(self.1) else {
            return Ok(None);
        };
        buf.extend_from_slice(d);
        self.1 += 1;
        Ok(Some(*k))
    }
}

fn wire(recs: Vec<(&[u8], Record)>, limit: usize) -> Vec<u8> {
    let mut c = Recs(recs.into_iter().map(|(d, k)| (d.to_vec(), k)).collect(), 0);
    let mut out = Vec::new();
    let _ = BodyWriter::new(limit).write(&mut c, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    });
    out
}

#[test]
fn partial_records_join_and_fold_like_postfix() {
    use Record::*;
    // Joined into one line; the dot of the continuation is not at a line start.
    assert_eq!(wire(vec![(b"ab", Partial), (b".c", Line)], 0), b"ab.c\r\n");
    // A partial record ending exactly at the limit, then an empty line record:
    // Postfix's smtp_text_out emits CRLF SPACE CRLF.
    assert_eq!(
        wire(vec![(b"abc", Partial), (b"", Line)], 3),
        b"abc\r\n \r\n"
    );
    // ... and with more data, the same bytes as folding in one record.
    assert_eq!(
        wire(vec![(b"abc", Partial), (b"de", Line)], 3),
        wire(vec![(b"abcde", Line)], 3)
    );
    // A message ending in a partial record still ends its last line.
    assert_eq!(wire(vec![(b"ab", Partial)], 0), b"ab\r\n");
}
