//! Unit tests of the 8-bit to quoted-printable converter. The expected outputs follow
//! Postfix's mime_state rules (see the module header); tests/mime.rs compares whole
//! messages with Postfix's own smtp(8).

use super::*;
use crate::message::memory::MemoryContent;

/// Records given one by one (to feed partial records).
struct Records {
    recs: Vec<(Record, Vec<u8>)>,
    pos: usize,
}

impl Content for Records {
    fn rewind(&mut self) -> Result<(), Error> {
        self.pos = 0;
        Ok(())
    }
    fn next_record(&mut self, buf: &mut Vec<u8>) -> Result<Option<Record>, Error> {
        buf.clear();
        let Some((k, d)) = self.recs.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        buf.extend_from_slice(d);
        Ok(Some(*k))
    }
}

fn run(content: &mut dyn Content, limits: Limits) -> Result<Vec<(Record, Vec<u8>)>, Error> {
    let mut d = Downgrade::new(content, limits);
    d.rewind()?;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(k) = d.next_record(&mut buf)? {
        out.push((k, buf.clone()));
    }
    Ok(out)
}

/// The converted message as text: complete records end in "\n", partial ones in "+\n".
fn convert_with(input: &[u8], limits: Limits) -> Result<String, Error> {
    let recs = run(&mut MemoryContent::new(input.to_vec()), limits)?;
    Ok(render(&recs))
}

fn render(recs: &[(Record, Vec<u8>)]) -> String {
    let mut s = String::new();
    for (k, d) in recs {
        s.push_str(&String::from_utf8_lossy(d));
        s.push_str(if *k == Record::Line { "\n" } else { "+\n" });
    }
    s
}

fn convert(input: &[u8]) -> String {
    match convert_with(input, Limits::default()) {
        Ok(s) => s,
        Err(e) => panic!("unexpected error {:?}", e.dsn),
    }
}

#[test]
fn decision_follows_postfix() {
    // Undeclared body types are converted too; 7BIT never; a server with 8BITMIME never.
    assert!(downgrading(false, false, Encoding::EightBit));
    assert!(downgrading(false, false, Encoding::Unknown));
    assert!(!downgrading(false, false, Encoding::SevenBit));
    assert!(!downgrading(false, true, Encoding::EightBit));
    assert!(!downgrading(true, false, Encoding::EightBit));
}

#[test]
fn non_mime_8bit_mail_is_left_alone() {
    // No Content-Transfer-Encoding: the default entity is 7bit text/plain, so nothing is
    // converted and no MIME headers are added (Postfix does the same).
    let m = b"From: a@x\nSubject: caf\xc3\xa9\n\nbody caf\xc3\xa9 =\n";
    assert_eq!(convert(m), String::from_utf8_lossy(m));
}

#[test]
fn seven_bit_mime_message_is_unchanged() {
    let m = b"MIME-Version: 1.0\nContent-Type: text/plain\nContent-Transfer-Encoding: 7bit\n\n.dot =3D\n  trailing  \n";
    assert_eq!(convert(m), String::from_utf8_lossy(m));
}

#[test]
fn top_level_8bit_text_becomes_quoted_printable() {
    let m = b"From: a@x\nMIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\nContent-Type: text/plain;\n charset=utf-8\nSubject: caf\xc3\xa9\n\n\
caf\xc3\xa9 a=b\ttab\n.dot\ntrailing space \ntrailing tab\t\n\nbare\rcr\x7f\n";
    let want = "From: a@x\nMIME-Version: 1.0\nContent-Type: text/plain;\n charset=utf-8\nSubject: caf\u{e9}\n\
Content-Transfer-Encoding: quoted-printable\n\n\
caf=C3=A9 a=3Db\ttab\n.dot\ntrailing space=20\ntrailing tab=09\n\nbare=0Dcr=7F\n";
    assert_eq!(convert(m), want);
}

#[test]
fn soft_line_breaks() {
    // A soft break goes in once a line holds more than 72 bytes; encoded triplets can take
    // it to 75, so no line exceeds 76 with the "=".
    let mut m = b"Content-Transfer-Encoding: 8bit\n\n".to_vec();
    m.extend_from_slice(&[b'x'; 73]);
    m.extend_from_slice(b" \n");
    m.extend_from_slice(&[b'='; 30]);
    m.push(b'\n');
    m.extend_from_slice(&[b'y'; 200]);
    m.push(b'\n');
    let out = convert(&m);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Content-Transfer-Encoding: quoted-printable");
    assert_eq!(lines[1], "");
    assert_eq!(lines[2], format!("{}=", "x".repeat(73)));
    assert_eq!(lines[3], "=20");
    assert_eq!(lines[4], format!("{}=", "=3D".repeat(25)));
    assert_eq!(lines[4].len(), 76);
    assert_eq!(lines[5], "=3D".repeat(5));
    assert_eq!(lines[6], format!("{}=", "y".repeat(73)));
    assert_eq!(lines[7], format!("{}=", "y".repeat(73)));
    assert_eq!(lines[8], "y".repeat(54));
    assert_eq!(lines.len(), 9);
    assert!(lines.iter().all(|l| l.len() <= 76));
}

const MULTI: &[u8] = b"MIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"b1\"\n\
Content-Transfer-Encoding: 8bit\n\
\n\
preamble \xe9\n\
--b1\n\
Content-Type: text/plain; charset=iso-8859-1\n\
Content-Transfer-Encoding: 8bit\n\
\n\
caf\xe9\n\
--b1\n\
Content-Type: application/octet-stream\n\
Content-Transfer-Encoding: base64\n\
\n\
AAEC\n\
--b1\n\
Content-Type: text/plain\n\
\n\
default 7bit \xe9\n\
--b1--\n\
epilogue \xe9\n";

#[test]
fn multipart_converts_only_8bit_leaves() {
    let want = "MIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"b1\"\n\
Content-Transfer-Encoding: 7bit\n\
\n\
preamble \u{fffd}\n\
--b1\n\
Content-Type: text/plain; charset=iso-8859-1\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
caf=E9\n\
--b1\n\
Content-Type: application/octet-stream\n\
Content-Transfer-Encoding: base64\n\
\n\
AAEC\n\
--b1\n\
Content-Type: text/plain\n\
\n\
default 7bit \u{fffd}\n\
--b1--\n\
epilogue \u{fffd}\n";
    assert_eq!(convert(MULTI), want);
}

#[test]
fn nested_message_rfc822() {
    let m = b"Content-Type: multipart/mixed; boundary=outer\n\
\n\
--outer\n\
Content-Type: message/rfc822\n\
Content-Transfer-Encoding: 8bit\n\
\n\
Subject: inner\n\
Content-Type: text/plain\n\
Content-Transfer-Encoding: 8bit\n\
\n\
inner \xc3\xa9\n\
--outer--\n";
    let want = "Content-Type: multipart/mixed; boundary=outer\n\
\n\
--outer\n\
Content-Type: message/rfc822\n\
Content-Transfer-Encoding: 7bit\n\
\n\
Subject: inner\n\
Content-Type: text/plain\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
inner =C3=A9\n\
--outer--\n";
    assert_eq!(convert(m), want);
}

#[test]
fn digest_parts_default_to_message_rfc822() {
    let m = b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nContent-Transfer-Encoding: 8bit\n\nx\xe9\n--d--\n";
    let want = "Content-Type: multipart/digest; boundary=d\n\n--d\n\nContent-Transfer-Encoding: quoted-printable\n\nx=E9\n--d--\n";
    assert_eq!(convert(m), want);
}

#[test]
fn header_rules() {
    // "Name  :" loses the space; an 8bit CTE at the end of the headers is still replaced;
    // a folded header is passed on line by line; non-header text where the top-level
    // headers should be gets a blank line in front.
    assert_eq!(
        convert(b"Subject  : x\n folded\nContent-Transfer-Encoding: binary"),
        "Subject: x\n folded\nContent-Transfer-Encoding: quoted-printable\n"
    );
    assert_eq!(
        convert(b"Content-Transfer-Encoding: 8bit\nnot a header\n"),
        "Content-Transfer-Encoding: quoted-printable\n\nnot a header\n"
    );
    // The last of several CTE headers wins; a 7-bit one is kept as it is.
    assert_eq!(
        convert(b"Content-Transfer-Encoding: 8bit\nContent-Transfer-Encoding: Base64\n\n\xe9\n"),
        "Content-Transfer-Encoding: Base64\n\n\u{fffd}\n"
    );
    // Unknown encodings change nothing; comments are skipped.
    assert_eq!(
        convert(b"Content-Transfer-Encoding: (c) 8BIT\nContent-Transfer-Encoding: x-uue\n\n\xe9\n"),
        "Content-Transfer-Encoding: quoted-printable\n\n=E9\n"
    );
}

#[test]
fn message_partial_gets_7bit_header_but_encoded_body() {
    // Postfix cannot look inside message/partial, and converts its body as a leaf.
    assert_eq!(
        convert(b"Content-Type: message/partial; id=1\nContent-Transfer-Encoding: 8bit\n\n\xe9\n"),
        "Content-Type: message/partial; id=1\nContent-Transfer-Encoding: 7bit\n\n=E9\n"
    );
}

#[test]
fn partial_records() {
    let rec = |k, d: &[u8]| (k, d.to_vec());
    let mut c = Records {
        recs: vec![
            rec(Record::Partial, b"Subject: long"),
            rec(Record::Line, b" header"),
            rec(Record::Line, b"Content-Transfer-Encoding: 8bit"),
            rec(Record::Line, b""),
            rec(Record::Partial, b"ab\xe9 "),
            rec(Record::Line, b"cd "),
            rec(Record::Partial, b"--not-a-boundary "),
        ],
        pos: 0,
    };
    let out = run(&mut c, Limits::default()).unwrap_or_default();
    // The header's pieces are joined into one line; the body's into QP lines; the
    // unfinished last line is finished (its trailing space encoded).
    assert_eq!(
        render(&out),
        "Subject: long header\nContent-Transfer-Encoding: quoted-printable\n\nab=E9 cd=20\n--not-a-boundary=20\n"
    );
    // 7-bit content keeps its partial records for the BodyWriter.
    let mut c = Records {
        recs: vec![rec(Record::Line, b""), rec(Record::Partial, b"abc")],
        pos: 0,
    };
    let out = run(&mut c, Limits::default()).unwrap_or_default();
    assert_eq!(render(&out), "\nabc+\n\n");
}

#[test]
fn boundary_length_limit_truncates_and_still_matches() {
    let limits = Limits {
        boundary_len: 3,
        ..Limits::default()
    };
    let m = b"Content-Type: multipart/mixed; boundary=abcdef\n\n--abcXYZ\nContent-Transfer-Encoding: 8bit\n\n\xe9\n--abc--\n\xe9\n";
    let out = convert_with(m, limits).unwrap_or_default();
    assert_eq!(
        out,
        "Content-Type: multipart/mixed; boundary=abcdef\n\n--abcXYZ\nContent-Transfer-Encoding: quoted-printable\n\n=E9\n--abc--\n\u{fffd}\n"
    );
}

fn nested_multiparts(depth: usize) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..depth {
        m.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n").as_bytes(),
        );
    }
    m.extend_from_slice(b"Content-Transfer-Encoding: 8bit\n\n\xe9\n");
    m
}

#[test]
fn nesting_limit() {
    let limits = Limits {
        nesting: 2,
        ..Limits::default()
    };
    // Depth counts from -1: limit + 2 multiparts are fine, one more is an error.
    let ok = convert_with(&nested_multiparts(4), limits);
    assert!(ok.as_deref().is_ok_and(|s| s.ends_with("=E9\n")), "{ok:?}");
    match convert_with(&nested_multiparts(5), limits) {
        Err(e) => {
            assert!(is_mime_error(&e));
            assert_eq!(e.dsn.status, "5.6.0");
            assert_eq!(e.dsn.reason, "MIME nesting exceeds safety limit");
        }
        Ok(s) => panic!("no nesting error: {s}"),
    }
    // Closing boundaries pop, so siblings never add up.
    let mut m = Vec::new();
    for _ in 0..10 {
        m.extend_from_slice(b"--o\nContent-Type: multipart/mixed; boundary=i\n\n--i\n\n--i--\n");
    }
    let mut msg = b"Content-Type: multipart/mixed; boundary=o\n\n".to_vec();
    msg.extend_from_slice(&m);
    assert!(convert_with(&msg, limits).is_ok());
}

#[test]
fn tokenizer_edge_cases() {
    let toks = |v: &[u8], term| {
        let mut pos = 0;
        tokenize(v, &mut pos, 3, TSPECIALS, term)
    };
    assert_eq!(toks(b"", Some(b';')), None);
    assert_eq!(toks(b"  (only (nested) comment)", Some(b';')), None);
    assert_eq!(toks(b";", Some(b';')), Some(vec![]));
    assert_eq!(
        toks(b"text/plain", None),
        Some(vec![
            Tok::Word(b"text".to_vec()),
            Tok::Special(b'/'),
            Tok::Word(b"plain".to_vec())
        ])
    );
    assert_eq!(
        toks(b"boundary=\"a\\\"b \n c\"", Some(b';')),
        Some(vec![
            Tok::Word(b"boundary".to_vec()),
            Tok::Special(b'='),
            Tok::Quoted(b"a\"b c".to_vec())
        ])
    );
    assert_eq!(header_name_len(b"Subject: x"), 7);
    assert_eq!(header_name_len(b"Sub ject: x"), 0);
    assert_eq!(header_name_len(b"Subject \t: x"), 7);
    assert_eq!(header_name_len(b": x"), 0);
    assert_eq!(header_name_len(b"caf\xe9: x"), 0);
    assert_eq!(header_name_len(b"no colon"), 0);
}

#[test]
fn garbage_never_panics() {
    // Random splices of MIME-ish fragments with tiny limits: the converter must neither
    // panic nor loop, and its output stays within what one record can produce.
    let frags: &[&[u8]] = &[
        b"Content-Type: multipart/mixed; boundary=",
        b"Content-Type: message/rfc822",
        b"Content-Type: message/global",
        b"Content-Type: multipart/digest;boundary=\"",
        b"Content-Transfer-Encoding: 8bit",
        b"Content-Transfer-Encoding:binary (",
        b"--",
        b"b",
        b"\n",
        b"\n\n",
        b" ",
        b"\t",
        b"\xff\xfe",
        b"\0",
        b"\"",
        b"(",
        b"\\",
        b";",
        b"=",
        b":",
        b"\r",
        b"-",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3000 {
        let mut m = Vec::new();
        let n = (next() % 200) as usize;
        for _ in 0..n {
            m.extend_from_slice(frags[(next() % frags.len() as u64) as usize]);
        }
        let limits = Limits {
            boundary_len: (next() % 4) as usize,
            nesting: (next() % 4) as i64,
            header_size: (next() % 64) as usize + 1,
        };
        if round % 2 == 0 {
            let _ = convert_with(&m, limits);
        } else {
            // The same bytes as partial records of random sizes.
            let mut recs = Vec::new();
            let mut rest = &m[..];
            while !rest.is_empty() {
                let k = ((next() % 9) as usize + 1).min(rest.len());
                let kind = if next() % 2 == 0 {
                    Record::Line
                } else {
                    Record::Partial
                };
                recs.push((kind, rest[..k].to_vec()));
                rest = &rest[k..];
            }
            let _ = run(&mut Records { recs, pos: 0 }, limits);
        }
    }
}

#[test]
fn rewind_starts_over() {
    let mut c = MemoryContent::new(MULTI.to_vec());
    let mut d = Downgrade::new(&mut c, Limits::default());
    let mut first = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..2 {
        let mut out = Vec::new();
        assert!(d.rewind().is_ok());
        while let Ok(Some(k)) = d.next_record(&mut buf) {
            out.push((k, buf.clone()));
        }
        if first.is_empty() {
            first = out;
        } else {
            assert_eq!(first, out);
        }
    }
}
