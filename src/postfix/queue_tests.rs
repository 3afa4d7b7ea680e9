//! Tests for queue.rs: record coding, paths, the content reader on built and real files,
//! damaged files, done/corrupt marking, and a cross-check with Debian's postcat.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// A queue file written by Postfix 3.7.11's cleanup(8) (deferred/B/BC18D99C011), with
/// smtpd_milters set so that it carries the placeholder pointers and padding a milter
/// setup leaves: `p` records in the envelope, after the headers, after the body and after
/// `X`, and a `w` record after the short "Subject: x" header.
const REAL_MILTER_FILE: &[u8] =
    b"C_            358             674               1               0             358        \
      \x20      0T\x111795854465 764581A\x16create_time=1795854465A\x15log_ident=BC18D99C011A\
      \x15rewrite_context=localS\x0es2@example.comp\x010A\x19log_client_name=localhostA\x1clog_\
      client_address=127.0.0.1A\x15log_client_port=42328A'log_message_origin=localhost[127.0.0.\
      1]A\x19log_helo_name=[127.0.0.1]A\x17log_protocol_name=ESMTPA\x15client_name=localhostA\
      \x1dreverse_client_name=localhostA\x18client_address=127.0.0.1A\x11client_port=42328A\x18\
      server_address=127.0.0.1A\x11server_port=10527A\x15helo_name=[127.0.0.1]A\x13protocol_nam\
      e=ESMTPA\x15client_address_type=2A\x22dsn_orig_rcpt=rfc822;d@example.netO\x0dd@example.ne\
      tR\x0dd@example.netp\x0f              0M\x00N2Received: from [127.0.0.1] (localhost [127.\
      0.0.1])N9\x09by qtest.example.org (Postfix) with ESMTP id BC18D99C011N;\x09for <d@example\
      .net>; Sat, 28 Nov 2026 08:27:45 +0000 (UTC)N\x0aSubject: xw\x03  0N:Message-Id: <2026112\
      8082745.BC18D99C011@qtest.example.org>N+Date: Sat, 28 Nov 2026 08:27:45 +0000 (UTC)N\x14F\
      rom: s2@example.comp\x0f              0N\x00N\x04bodyp\x0f              0X\x00p\x0f      \
      \x20       0E\x00";

/// Read all content records, or the error that ended the reading.
fn read_all(c: &mut QueueContent) -> Result<Vec<(Record, Vec<u8>)>, Error> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    // Bounded, so that a reader that never ends fails the test instead of hanging.
    for _ in 0..1_000_000 {
        match c.next_record(&mut buf)? {
            Some(r) => out.push((r, buf.clone())),
            None => return Ok(out),
        }
    }
    panic!("reader did not terminate");
}

fn lines(recs: &[(Record, Vec<u8>)]) -> Vec<String> {
    recs.iter()
        .map(|(r, d)| {
            let tag = if *r == Record::Line { "N" } else { "L" };
            format!("{tag}:{}", String::from_utf8_lossy(d))
        })
        .collect()
}

fn install(dir: &Path, bytes: &[u8], name: &str, id: &str) -> PathBuf {
    let rel = QueueLayout::default().relative_path(name, id).unwrap();
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
}

fn open(dir: &Path, name: &str, id: &str) -> QueueFile {
    QueueFile::open(dir, name, id).unwrap()
}

/// Raw bytes as a reader over a temporary file.
fn reader_over(bytes: &[u8], data_offset: u64) -> (tempfile::TempDir, QueueContent) {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), bytes, "active", "ABC123");
    let qf = open(dir.path(), "active", "ABC123");
    let c = qf.content(data_offset).unwrap();
    (dir, c)
}

fn sample() -> QueueFileBuilder {
    let mut b = QueueFileBuilder::new("sender@example.com")
        .recipient("one@example.net")
        .recipient("two@example.net");
    b.recipients[1].orig = "alias@example.net".into();
    b.recipients[1].notify = 6;
    b.recipients[1].orcpt = "rfc822;alias@example.net".into();
    let long = "y".repeat(5000);
    let msg = format!("Subject: hi\r\nFrom: a@b\r\n\r\nfirst\r\n{long}\r\n.dot\r\n\r\nlast\r\n");
    b.body(msg.as_bytes())
}

fn unreadable(e: &Error) -> bool {
    e.class == crate::outcome::Class::Corrupt
        && e.dsn.status == "5.3.0"
        && e.dsn.reason == "unreadable mail queue entry"
}

// ---- record coding ------------------------------------------------------------------

#[test]
fn length_is_base128_low_group_first() {
    let cases: [(usize, &[u8]); 6] = [
        (0, &[0x00]),
        (5, &[0x05]),
        (127, &[0x7f]),
        (128, &[0x80, 0x01]),
        (2048, &[0x80, 0x10]),
        (16384, &[0x80, 0x80, 0x01]),
    ];
    for (len, want) in cases {
        let mut out = Vec::new();
        put_record(&mut out, b'N', &vec![b'a'; len]);
        assert_eq!(out[0], b'N');
        assert_eq!(&out[1..1 + want.len()], want, "length {len}");
        assert_eq!(out.len(), 1 + want.len() + len);
    }
}

#[test]
fn raw_reader_decodes_what_put_record_writes() {
    let mut bytes = Vec::new();
    for len in [0usize, 1, 127, 128, 300, 20000] {
        put_record(&mut bytes, b'N', &vec![b'q'; len]);
    }
    put_record(&mut bytes, b'X', b"");
    let (_d, mut c) = reader_over(&bytes, 0);
    let recs = read_all(&mut c).unwrap();
    let lens: Vec<usize> = recs.iter().map(|(_, d)| d.len()).collect();
    assert_eq!(lens, [0, 1, 127, 128, 300, 20000]);
}

// ---- paths --------------------------------------------------------------------------

#[test]
fn paths_follow_hash_queue_names() {
    let l = QueueLayout::default();
    assert_eq!(
        l.relative_path("active", "B42DE99C706").unwrap(),
        "active/B42DE99C706"
    );
    assert_eq!(
        l.relative_path("incoming", "B42DE99C706").unwrap(),
        "incoming/B42DE99C706"
    );
    // As Postfix 3.7.11 placed these files.
    assert_eq!(
        l.relative_path("deferred", "B42DE99C706").unwrap(),
        "deferred/B/B42DE99C706"
    );
    assert_eq!(
        l.relative_path("defer", "C0FFEE").unwrap(),
        "defer/C/C0FFEE"
    );
    assert_eq!(
        l.relative_path("deferred", "4jc3RB0pNKz1Sxky").unwrap(),
        "deferred/1/4jc3RB0pNKz1Sxky"
    );
    assert_eq!(
        l.relative_path("deferred", "4jc3RB3qmRz1Sxks").unwrap(),
        "deferred/8/4jc3RB3qmRz1Sxks"
    );
    assert_eq!(
        l.relative_path("deferred", "4jc3RC0JBDz1Sxl0").unwrap(),
        "deferred/0/4jc3RC0JBDz1Sxl0"
    );

    let deep = QueueLayout::new("active, Deferred incoming", 2);
    assert_eq!(deep.hash_queue_names, ["active", "Deferred", "incoming"]);
    assert_eq!(
        deep.relative_path("active", "AB12").unwrap(),
        "active/A/B/AB12"
    );
    assert_eq!(
        deep.relative_path("deferred", "AB12").unwrap(),
        "deferred/A/B/AB12"
    );
    assert_eq!(deep.relative_path("hold", "AB12").unwrap(), "hold/AB12");
    // Long id: 0pNK = 114626 us = 1BFC2.
    assert_eq!(
        deep.relative_path("active", "4jc3RB0pNKz1Sxky").unwrap(),
        "active/1/B/4jc3RB0pNKz1Sxky"
    );
    // Deeper than the key: underscores.
    let deeper = QueueLayout::new("active", 7);
    assert_eq!(
        deeper.relative_path("active", "AB").unwrap(),
        "active/A/B/_/_/_/_/_/AB"
    );
    // Depth 0 is not a valid setting; treated as 1.
    assert_eq!(QueueLayout::new("active", 0).hash_queue_depth, 1);
    // A 'z' too early is no long id; invalid microsecond characters count as 0.
    assert_eq!(
        deep.relative_path("active", "ABzC").unwrap(),
        "active/A/B/ABzC"
    );
    assert_eq!(
        deep.relative_path("active", "4jc3RB0pN_z1Sxky").unwrap(),
        "active/0/0/4jc3RB0pN_z1Sxky"
    );
}

#[test]
fn bad_names_and_ids_are_refused() {
    let l = QueueLayout::default();
    for (name, id) in [
        ("", "ABC"),
        ("act/ive", "ABC"),
        ("active", ""),
        ("active", "../etc"),
        ("active", "A.B"),
        ("active", "A B"),
        ("x".repeat(101).as_str(), "ABC"),
    ] {
        assert!(l.relative_path(name, id).is_none(), "{name:?} {id:?}");
    }
    assert!(queue_id_ok("example_com"));
    assert!(!queue_id_ok(&"a".repeat(256)));
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        QueueFile::open(dir.path(), "act.ive", "ABC").unwrap_err(),
        OpenError::Rejected
    );
    assert_eq!(
        QueueFile::open(dir.path(), "active", "../x").unwrap_err(),
        OpenError::Rejected
    );
}

// ---- opening ------------------------------------------------------------------------

#[test]
fn open_checks_like_mail_open_ok() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = sample().build().bytes;
    // Missing.
    assert_eq!(
        QueueFile::open(dir.path(), "active", "NOPE").unwrap_err(),
        OpenError::Rejected
    );
    // Not ready (the mode qmgr or cleanup leaves on an unfinished or corrupt file).
    let p = install(dir.path(), &bytes, "active", "NOTREADY");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        QueueFile::open(dir.path(), "active", "NOTREADY").unwrap_err(),
        OpenError::Rejected
    );
    // Group/other bits do not matter.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o744)).unwrap();
    assert!(QueueFile::open(dir.path(), "active", "NOTREADY").is_ok());
    // A directory and a symlink are not regular files.
    std::fs::create_dir_all(dir.path().join("active/ADIR")).unwrap();
    assert_eq!(
        QueueFile::open(dir.path(), "active", "ADIR").unwrap_err(),
        OpenError::Rejected
    );
    let real = install(dir.path(), &bytes, "active", "REAL");
    std::os::unix::fs::symlink(&real, dir.path().join("active/LINK")).unwrap();
    assert_eq!(
        QueueFile::open(dir.path(), "active", "LINK").unwrap_err(),
        OpenError::Rejected
    );
    // Hashed queue.
    install(dir.path(), &bytes, "deferred", "D00D");
    let qf = open(dir.path(), "deferred", "D00D");
    assert_eq!(qf.name(), "deferred/D/D00D");
    assert_eq!(qf.path(), dir.path().join("deferred/D/D00D"));
    assert_eq!(qf.queue_id(), "D00D");
}

#[test]
fn open_takes_a_shared_lock() {
    let dir = tempfile::tempdir().unwrap();
    let p = install(dir.path(), &sample().build().bytes, "active", "LOCKED");
    // Two delivery agents may share the file.
    let a = open(dir.path(), "active", "LOCKED");
    let b = open(dir.path(), "active", "LOCKED");
    // An exclusive lock (what qmgr holds while it scans a new file) is refused meanwhile.
    let other = File::open(&p).unwrap();
    let rc = unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, -1);
    drop((a, b));
    let rc = unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0);
    // And while qmgr holds it, the agent's open is a fatal error, as in Postfix.
    match QueueFile::open(dir.path(), "active", "LOCKED").unwrap_err() {
        OpenError::Fatal(FatalError(text)) => assert_eq!(
            text,
            "shared lock active/LOCKED: Resource temporarily unavailable"
        ),
        e => panic!("{e:?}"),
    }
}

// ---- content -----------------------------------------------------------------------

#[test]
fn reads_content_lines_and_pieces() {
    let built = sample().build();
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), &built.bytes, "active", "AAA1");
    let qf = open(dir.path(), "active", "AAA1");
    let size = qf.size_record().unwrap();
    assert_eq!(size, built.size);
    assert_eq!(size.data_offset as u64, built.data_offset);
    assert_eq!(size.rcpt_count, 2);
    let mut c = qf.content(built.data_offset).unwrap();
    let recs = read_all(&mut c).unwrap();
    let long = "y".repeat(5000);
    let want = vec![
        "N:Subject: hi".to_string(),
        "N:From: a@b".into(),
        "N:".into(),
        "N:first".into(),
        format!("L:{}", &long[..2048]),
        format!("L:{}", &long[2048..4096]),
        format!("N:{}", &long[4096..]),
        "N:.dot".into(),
        "N:".into(),
        "N:last".into(),
    ];
    assert_eq!(lines(&recs), want);
    // The reader agrees with the size record.
    assert_eq!(c.data_size(), Some(size.data_size as u64));
    assert_eq!(size.message_size(), size.cont_length);
    // After the end: more Nones; after a rewind: the same again.
    let mut buf = b"junk".to_vec();
    assert_eq!(c.next_record(&mut buf).unwrap(), None);
    assert!(buf.is_empty());
    c.rewind().unwrap();
    assert_eq!(lines(&read_all(&mut c).unwrap()), want);
    // Shared readers are independent.
    let mut d = c.share().unwrap();
    c.rewind().unwrap();
    let mut first = Vec::new();
    c.next_record(&mut first).unwrap();
    assert_eq!(lines(&read_all(&mut d).unwrap()), want);
    assert_eq!(first, b"Subject: hi");
}

#[test]
fn reads_a_real_cleanup_file_with_milter_placeholders() {
    let (_d, mut c) = reader_over(REAL_MILTER_FILE, 674);
    let recs = read_all(&mut c).unwrap();
    assert_eq!(
        lines(&recs),
        [
            "N:Received: from [127.0.0.1] (localhost [127.0.0.1])",
            "N:\tby qtest.example.org (Postfix) with ESMTP id BC18D99C011",
            "N:\tfor <d@example.net>; Sat, 28 Nov 2026 08:27:45 +0000 (UTC)",
            "N:Subject: x",
            "N:Message-Id: <20261128082745.BC18D99C011@qtest.example.org>",
            "N:Date: Sat, 28 Nov 2026 08:27:45 +0000 (UTC)",
            "N:From: s2@example.com",
            "N:",
            "N:body",
        ]
    );
    // qmgr logged size=358 for this file: the X record is at 674 + 358.
    assert_eq!(c.data_size(), Some(358));
    assert_eq!(c.extra_offset(), Some(1032));
    let size = SizeRecord::parse(&REAL_MILTER_FILE[2..97]).unwrap();
    assert_eq!(size.data_size, 358);
    assert_eq!(size.data_offset, 674);
    assert_eq!(size.rcpt_count, 1);
    assert_eq!(size.message_size(), 358);
}

#[test]
fn builder_lays_out_content_like_cleanup() {
    // Rebuild the real file's content with the builder: the bytes from the data offset to
    // the end must be identical.
    let mut b = QueueFileBuilder::new("s2@example.com").recipient("d@example.net");
    b.milter_layout = true;
    let b = b.body(
        b"Received: from [127.0.0.1] (localhost [127.0.0.1])\n\
          \tby qtest.example.org (Postfix) with ESMTP id BC18D99C011\n\
          \tfor <d@example.net>; Sat, 28 Nov 2026 08:27:45 +0000 (UTC)\n\
          Subject: x\n\
          Message-Id: <20261128082745.BC18D99C011@qtest.example.org>\n\
          Date: Sat, 28 Nov 2026 08:27:45 +0000 (UTC)\n\
          From: s2@example.com\n\
          \n\
          body\n",
    );
    let built = b.build();
    let ours = &built.bytes[built.data_offset as usize..];
    assert_eq!(ours, &REAL_MILTER_FILE[674..]);
    assert_eq!(built.size.data_size, 358);
}

/// A file whose first header was replaced the way cleanup does for a milter: the
/// original record is overwritten by a pointer to new records after `E`, which end with a
/// pointer back to the record after the replaced one.
fn file_with_edited_header() -> (Vec<u8>, u64) {
    let built = QueueFileBuilder::new("s@x")
        .recipient("r@y")
        .body(b"Subject: original subject\nTo: r@y\n\nbody\n")
        .build();
    let mut bytes = built.bytes.clone();
    let data_offset = built.data_offset as usize;
    // The Subject record is 2 + 25 bytes, room for a 2 + 15 byte pointer plus padding.
    let heap = bytes.len();
    let mut ptr = Vec::new();
    put_record(&mut ptr, rec::PTR, format!("{heap:15}").as_bytes());
    let subject_len = 2 + "Subject: original subject".len();
    let back = data_offset + subject_len;
    let pad = subject_len - ptr.len();
    let mut w = Vec::new();
    put_record(&mut w, rec::DTXT, &vec![b' '; pad - 2]);
    bytes[data_offset..data_offset + ptr.len()].copy_from_slice(&ptr);
    bytes[data_offset + ptr.len()..back].copy_from_slice(&w);
    put_record(&mut bytes, rec::NORM, b"X-Added: by milter");
    put_record(&mut bytes, rec::NORM, b"Subject: new subject");
    put_record(&mut bytes, rec::PTR, format!("{back:15}").as_bytes());
    (bytes, built.data_offset)
}

#[test]
fn follows_pointer_records() {
    let (bytes, off) = file_with_edited_header();
    let (_d, mut c) = reader_over(&bytes, off);
    let recs = read_all(&mut c).unwrap();
    assert_eq!(
        lines(&recs),
        [
            "N:X-Added: by milter",
            "N:Subject: new subject",
            "N:To: r@y",
            "N:",
            "N:body"
        ]
    );
    // Reading again gives the same (the reverse jump is counted, far from the limit).
    c.rewind().unwrap();
    assert_eq!(read_all(&mut c).unwrap(), recs);
}

// ---- damaged files -------------------------------------------------------------------

#[test]
fn foreign_record_in_content_is_unreadable() {
    let mut bytes = Vec::new();
    put_record(&mut bytes, rec::NORM, b"one");
    put_record(&mut bytes, rec::RCPT, b"someone@example");
    put_record(&mut bytes, rec::NORM, b"two");
    put_record(&mut bytes, rec::XTRA, b"");
    let (_d, mut c) = reader_over(&bytes, 0);
    let mut buf = Vec::new();
    assert_eq!(c.next_record(&mut buf).unwrap(), Some(Record::Line));
    let e = c.next_record(&mut buf).unwrap_err();
    assert!(unreadable(&e), "{e:?}");
    assert!(buf.is_empty());
    // The error sticks until a rewind.
    assert_eq!(c.next_record(&mut buf).unwrap_err(), e);
    c.rewind().unwrap();
    assert_eq!(c.next_record(&mut buf).unwrap(), Some(Record::Line));
    assert_eq!(buf, b"one");
}

#[test]
fn each_kind_of_damage_is_unreadable() {
    let mut good = Vec::new();
    put_record(&mut good, rec::NORM, b"line");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("eof before X", good.clone()),
        ("empty", Vec::new()),
        ("E in content", [good.clone(), vec![b'E', 0]].concat()),
        ("M in content", [good.clone(), vec![b'M', 0]].concat()),
        ("type zero", [good.clone(), vec![0, 0]].concat()),
        ("eof in length", [good.clone(), vec![b'N', 0x85]].concat()),
        ("eof in data", [good.clone(), vec![b'N', 10, b'a']].concat()),
        (
            "too many length bits",
            [good.clone(), vec![b'N', 0xff, 0xff, 0xff, 0xff, 0x01]].concat(),
        ),
        (
            // 2^28 - 1 bytes claimed, four bytes present: no huge allocation, an error.
            "absurd length",
            [
                good.clone(),
                vec![b'N', 0xff, 0xff, 0xff, 0x7f],
                b"abcd".to_vec(),
            ]
            .concat(),
        ),
        (
            "malformed pointer",
            [good.clone(), vec![b'p', 3], b"12x".to_vec()].concat(),
        ),
        (
            "pointer past the end",
            [good.clone(), vec![b'p', 5], b"99999".to_vec()].concat(),
        ),
        (
            "pointer overflow",
            [
                good.clone(),
                vec![b'p', 20],
                b"99999999999999999999".to_vec(),
            ]
            .concat(),
        ),
    ];
    for (what, bytes) in cases {
        let (_d, mut c) = reader_over(&bytes, 0);
        let e = read_all(&mut c).unwrap_err();
        assert!(unreadable(&e), "{what}: {e:?}");
    }
}

#[test]
fn raw_record_warnings_match_postfix() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[u8], &str); 5] = [
        (
            b"N\x85",
            "active/Q: unexpected EOF reading length, record type 78",
        ),
        (
            b"N\x0aab",
            "active/Q: unexpected EOF in data, record type 78 length 10",
        ),
        (
            b"L\xff\xff\xff\xff\x01",
            "active/Q: too many length bits, record type 76",
        ),
        (b"p\x03 1x", "active/Q: malformed pointer record value: 1x"),
        (b"p\x00", ""),
    ];
    for (bytes, want) in cases {
        let p = dir.path().join("f");
        std::fs::write(&p, bytes).unwrap();
        let f = File::open(&p).unwrap();
        let mut cur = Cursor::new(0);
        let mut buf = Vec::new();
        let mut jumps = JumpState::default();
        let got = get(&f, &mut cur, &mut buf, 0, &mut jumps, "active/Q").unwrap();
        if want.is_empty() {
            // An empty pointer is a placeholder; then plain EOF.
            assert_eq!(got, Raw::Eof);
        } else {
            assert_eq!(got, Raw::Bad(want.to_string()));
        }
    }
    // The illegal-length check applies when a limit is given.
    let p = dir.path().join("g");
    std::fs::write(&p, b"N\x05hello").unwrap();
    let f = File::open(&p).unwrap();
    let mut buf = Vec::new();
    let got = get_raw(&f, &mut Cursor::new(0), &mut buf, 4, "active/Q").unwrap();
    assert_eq!(
        got,
        Raw::Bad("active/Q: illegal length 5, record type 78".into())
    );
}

#[test]
fn pointer_loops_end() {
    // A pointer to itself: Postfix gives up after 10000 reverse jumps.
    let mut bytes = Vec::new();
    put_record(&mut bytes, rec::NORM, b"x");
    let at = bytes.len();
    put_record(&mut bytes, rec::PTR, format!("{at:15}").as_bytes());
    let (_d, mut c) = reader_over(&bytes, 0);
    let e = read_all(&mut c).unwrap_err();
    assert!(unreadable(&e));
    // Two pointers jumping at each other.
    let mut bytes = Vec::new();
    let a = 0;
    let b = 17;
    put_record(&mut bytes, rec::PTR, format!("{b:15}").as_bytes());
    put_record(&mut bytes, rec::PTR, format!("{a:15}").as_bytes());
    // (a = 0 is a placeholder, so this one just runs on to EOF.)
    let (_d, mut c) = reader_over(&bytes, 0);
    assert!(unreadable(&read_all(&mut c).unwrap_err()));
    let mut bytes = Vec::new();
    put_record(&mut bytes, rec::NORM, b"");
    let first = bytes.len();
    put_record(
        &mut bytes,
        rec::PTR,
        format!("{:15}", first + 17).as_bytes(),
    );
    put_record(&mut bytes, rec::PTR, format!("{first:15}").as_bytes());
    let (_d, mut c) = reader_over(&bytes, 0);
    assert!(unreadable(&read_all(&mut c).unwrap_err()));
}

/// A tiny deterministic generator, so that the damage tests need no extra crates.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn damaged_files_never_panic_or_hang() {
    let (edited, edited_off) = file_with_edited_header();
    let built = sample().build();
    let bases = [
        (built.bytes.clone(), built.data_offset),
        (REAL_MILTER_FILE.to_vec(), 674),
        (edited, edited_off),
    ];
    let dir = tempfile::tempdir().unwrap();
    // One open file whose bytes are replaced in place for each case (same inode, so the
    // open descriptor sees the new bytes).
    let p = install(dir.path(), b"", "active", "FUZZ");
    let qf = open(dir.path(), "active", "FUZZ");
    let mut rng = Lcg(42);
    let mut n = 0;
    for (base, off) in &bases {
        // Every truncation point (every few in the long file with its 5000-byte line).
        let step = if base.len() > 2000 { 7 } else { 1 };
        for cut in (0..base.len()).step_by(step) {
            std::fs::write(&p, &base[..cut]).unwrap();
            let _ = qf.size_record();
            let mut c = qf.content(*off).unwrap();
            if read_all(&mut c).is_ok() {
                // Only possible when the cut left the X record whole.
                let x_end = c.extra_offset().map(|x| x + 2).unwrap_or(u64::MAX);
                assert!(x_end <= cut as u64, "cut {cut} read ok");
            }
            n += 1;
        }
        // Random byte changes.
        for _ in 0..1500 {
            let mut bytes = base.clone();
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() as usize) % bytes.len();
                bytes[i] = rng.next() as u8;
            }
            std::fs::write(&p, &bytes).unwrap();
            let _ = qf.size_record();
            let start = if rng.next().is_multiple_of(8) {
                rng.next() % bytes.len() as u64
            } else {
                *off
            };
            let mut c = qf.content(start).unwrap();
            let _ = read_all(&mut c);
            let _ = c.rewind();
            let _ = read_all(&mut c);
            n += 1;
        }
    }
    assert!(n > 6000);
}

// ---- size record ---------------------------------------------------------------------

#[test]
fn size_record_parsing() {
    let s = SizeRecord::parse(
        b"           5368             801               2              12       ",
    )
    .unwrap();
    assert_eq!(
        (s.data_size, s.data_offset, s.rcpt_count, s.qmgr_flags),
        (5368, 801, 2, 12)
    );
    assert_eq!(s.cont_length, 0);
    // Before Postfix 2.4 there was no content length: the data size stands in.
    assert_eq!(s.message_size(), 5368);
    let s = SizeRecord::parse(b"5368 801 2 0 5000 1").unwrap();
    assert_eq!(s.message_size(), 5000);
    assert_eq!(s.smtputf8, 1);
    assert_eq!(
        s.format(),
        "           5368             801               2               0            5000               1"
    );
    assert_eq!(s.format().len(), 95);
    for bad in [
        &b""[..],
        b"5368",
        b"5368 801",
        b"0 801 2",
        b"5368 0 2",
        b"x y z",
        b"1 2 3 4 -5",
        b"\xff",
    ] {
        assert!(
            SizeRecord::parse(bad).is_none(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // A file that does not start with a size record.
    let mut bytes = Vec::new();
    put_record(&mut bytes, rec::TIME, b"1 2");
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), &bytes, "active", "NOSIZE");
    let qf = open(dir.path(), "active", "NOSIZE");
    assert_eq!(
        qf.size_record().unwrap_err().class,
        crate::outcome::Class::Corrupt
    );
}

// ---- marking -------------------------------------------------------------------------

#[test]
fn mark_done_overwrites_the_type_byte() {
    let built = sample().build();
    let dir = tempfile::tempdir().unwrap();
    let p = install(dir.path(), &built.bytes, "active", "DONE1");
    let qf = open(dir.path(), "active", "DONE1");
    let mut c = qf.content(built.data_offset).unwrap();
    let mut buf = Vec::new();
    c.next_record(&mut buf).unwrap();
    for &off in &built.rcpt_offsets {
        assert_eq!(built.bytes[off as usize], b'R');
        qf.mark_done(off).unwrap();
    }
    let after = std::fs::read(&p).unwrap();
    for (i, (a, b)) in built.bytes.iter().zip(&after).enumerate() {
        if built.rcpt_offsets.contains(&(i as u64)) {
            assert_eq!(*b, b'D');
        } else {
            assert_eq!(a, b, "byte {i} changed");
        }
    }
    // A reader in the middle of the content is not disturbed.
    let rest = read_all(&mut c).unwrap();
    assert_eq!(rest.len(), 9);
    assert_eq!(
        qf.mark_done(0).unwrap_err(),
        FatalError("deliver_completed: bad offset 0".into())
    );
}

#[test]
fn mark_corrupt_makes_the_file_owner_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let p = install(dir.path(), &sample().build().bytes, "active", "BAD1");
    let qf = open(dir.path(), "active", "BAD1");
    qf.mark_corrupt().unwrap();
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o400);
    drop(qf);
    // Postfix no longer considers it ready for delivery.
    assert_eq!(
        QueueFile::open(dir.path(), "active", "BAD1").unwrap_err(),
        OpenError::Rejected
    );
}

#[test]
fn strerror_is_the_c_text() {
    let e = io::Error::from_raw_os_error(libc::ENOENT);
    assert_eq!(strerror(&e), "No such file or directory");
    let e = io::Error::from_raw_os_error(libc::EWOULDBLOCK);
    assert_eq!(strerror(&e), "Resource temporarily unavailable");
}

// ---- cross-check with Postfix's own postcat -------------------------------------------

/// Run Debian's postcat on a file with an empty configuration directory; None when
/// postcat is not installed.
fn postcat(args: &[&str], file: &Path) -> Option<String> {
    let conf = tempfile::tempdir().ok()?;
    let main_cf = conf.path().join("main.cf");
    std::fs::write(&main_cf, "").ok()?;
    // Postfix waits for a main.cf modified in the last seconds to settle: backdate it.
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    File::options()
        .write(true)
        .open(&main_cf)
        .ok()?
        .set_modified(old)
        .ok()?;
    let out = Command::new("postcat")
        .arg("-c")
        .arg(conf.path())
        .args(args)
        .arg(file)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "postcat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Content as postcat -bh prints it: lines, with L pieces joined.
fn as_text(recs: &[(Record, Vec<u8>)]) -> String {
    let mut s = String::new();
    for (r, d) in recs {
        s.push_str(&String::from_utf8_lossy(d));
        if *r == Record::Line {
            s.push('\n');
        }
    }
    s
}

#[test]
fn postcat_reads_what_the_builder_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut milter = sample();
    milter.milter_layout = true;
    let (edited, edited_off) = file_with_edited_header();
    let files = [
        (
            "PLAIN1",
            sample().build().bytes,
            sample().build().data_offset,
        ),
        ("MILTER1", milter.build().bytes, milter.build().data_offset),
        ("EDITED1", edited, edited_off),
        ("REAL1", REAL_MILTER_FILE.to_vec(), 674),
    ];
    for (id, bytes, off) in files {
        let p = install(dir.path(), &bytes, "active", id);
        let Some(text) = postcat(&["-bh"], &p) else {
            eprintln!("postcat not installed; skipped");
            return;
        };
        let qf = open(dir.path(), "active", id);
        let recs = read_all(&mut qf.content(off).unwrap()).unwrap();
        assert_eq!(text, as_text(&recs), "{id}");
        // The envelope parses, and postcat reports the same size record.
        let env = postcat(&["-e"], &p).unwrap();
        let size = qf.size_record().unwrap();
        let want = format!("message_size: {}", size.format());
        assert!(env.contains(&want), "{id}: {env}");
    }
    // Recipient offsets and done marking, as postcat sees them.
    let built = sample().build();
    let p = install(dir.path(), &built.bytes, "active", "OFFS1");
    let env = postcat(&["-e", "-o"], &p).unwrap();
    for (off, addr) in built
        .rcpt_offsets
        .iter()
        .zip(["one@example.net", "two@example.net"])
    {
        let want = format!("{off:>9} recipient: {addr}");
        assert!(env.contains(&want), "missing {want:?} in {env}");
    }
    let qf = open(dir.path(), "active", "OFFS1");
    qf.mark_done(built.rcpt_offsets[0]).unwrap();
    let env = postcat(&["-e"], &p).unwrap();
    assert!(env.contains("done_recipient: one@example.net"), "{env}");
    assert!(env.contains("\nrecipient: two@example.net"), "{env}");
}

/// Against a real queue: set OUTPOST_TEST_QUEUE_DIR to a queue directory (default hashing)
/// and every file in its deferred queue is opened by name and id, read, and compared with
/// postcat's view. Files are only read.
#[test]
fn real_deferred_queue_reads_like_postcat() {
    let Ok(dir) = std::env::var("OUTPOST_TEST_QUEUE_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let mut seen = 0;
    for sub in std::fs::read_dir(dir.join("deferred")).unwrap() {
        for entry in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let entry = entry.unwrap();
            let id = entry.file_name().into_string().unwrap();
            let qf = open(&dir, "deferred", &id);
            assert_eq!(qf.path(), entry.path());
            let size = qf.size_record().unwrap();
            let mut c = qf.content(size.data_offset as u64).unwrap();
            let recs = read_all(&mut c).unwrap();
            assert_eq!(c.data_size(), Some(size.data_size as u64), "{id}");
            assert_eq!(size.message_size(), size.data_size, "{id}");
            if let Some(text) = postcat(&["-bh"], &entry.path()) {
                assert_eq!(text, as_text(&recs), "{id}");
            }
            seen += 1;
        }
    }
    assert!(seen > 0);
    eprintln!("{seen} real queue files read");
}
