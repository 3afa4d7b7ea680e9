//! Tests for postlog.rs: the datagram format, byte for byte, through a real socket.

use super::*;
use std::time::Duration;

/// A datagram socket in a temporary directory standing in for public/postlog.
fn receiver() -> (tempfile::TempDir, PathBuf, UnixDatagram) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postlog");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (dir, path, sock)
}

fn recv(sock: &UnixDatagram) -> Vec<u8> {
    let mut buf = vec![0u8; 8192];
    let n = sock.recv(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Check `Mmm dd hh:mm:ss ` and return the rest.
fn strip_stamp(data: &[u8]) -> &[u8] {
    assert!(data.len() > 16, "{:?}", String::from_utf8_lossy(data));
    let (stamp, rest) = data.split_at(16);
    let s = std::str::from_utf8(stamp).unwrap();
    assert!(MONTHS.contains(&&s[0..3]), "{s}");
    let b = s.as_bytes();
    for (i, c) in b.iter().enumerate().skip(3) {
        match i {
            3 | 6 | 15 => assert_eq!(*c, b' ', "{s}"),
            9 | 12 => assert_eq!(*c, b':', "{s}"),
            _ => assert!(c.is_ascii_digit(), "{s}"),
        }
    }
    rest
}

#[test]
fn stamp_is_month_and_zero_padded_fields() {
    assert_eq!(format_stamp(10, 5, 7, 3, 9), "Nov 05 07:03:09");
    assert_eq!(format_stamp(0, 31, 23, 59, 60), "Jan 31 23:59:60");
    assert_eq!(format_stamp(12, 1, 0, 0, 0), "??? 01 00:00:00");
    let now = timestamp_now();
    assert_eq!(now.len(), 15);
    strip_stamp(format!("{now} x").as_bytes());
}

#[test]
fn datagram_layout() {
    let d = format_datagram(
        "Nov 28 08:27:55",
        "qtest.example.org",
        "postfix/smtp[14018]: warning: ",
        b"hello world",
    );
    assert_eq!(
        d,
        b"Nov 28 08:27:55 qtest postfix/smtp[14018]: warning: hello world"
    );
    // The text, not the prefix, is limited to 2000 bytes.
    let long = vec![b'x'; 3000];
    let d = format_datagram("Nov 28 08:27:55", "h", "t[1]: ", &long);
    assert_eq!(d.len(), "Nov 28 08:27:55 h t[1]: ".len() + TEXT_LIMIT);
}

#[test]
fn sends_what_postfix_sends() {
    let (_dir, path, rx) = receiver();
    let client = PostlogClient::connect(&path, "qtest.example.org", "postfix/smtp").unwrap();
    assert!(client.is_connected());
    client.send("warning: hello world");
    let got = recv(&rx);
    let want = format!(
        "qtest postfix/smtp[{}]: warning: hello world",
        std::process::id()
    );
    assert_eq!(String::from_utf8_lossy(strip_stamp(&got)), want);
    // No newline, no <PRI>.
    assert!(!got.ends_with(b"\n"));
    assert!(!got.starts_with(b"<"));

    client.send("4ABC: to=<a@b>, relay=none, status=deferred");
    let got = recv(&rx);
    let want = format!(
        "qtest postfix/smtp[{}]: 4ABC: to=<a@b>, relay=none, status=deferred",
        std::process::id()
    );
    assert_eq!(String::from_utf8_lossy(strip_stamp(&got)), want);
}

#[test]
fn log_target_forwards_tagged_lines() {
    let (_dir, path, rx) = receiver();
    let client = PostlogClient::connect(&path, "mx1", "postfix/smtp").unwrap();
    let Target::Custom(mut sink) = client.into_log_target() else {
        panic!("not a custom target");
    };
    sink(
        Level::Warning,
        "postfix-out/lmtp[42]: warning: something odd",
    );
    assert_eq!(
        strip_stamp(&recv(&rx)),
        b"mx1 postfix-out/lmtp[42]: warning: something odd"
    );
    sink(Level::Info, "postfix/smtp[42]: ABC: removed");
    assert_eq!(
        strip_stamp(&recv(&rx)),
        b"mx1 postfix/smtp[42]: ABC: removed"
    );
    // The 2000-byte limit applies after the severity prefix, as in Postfix.
    let text = "y".repeat(2500);
    sink(Level::Error, &format!("postfix/smtp[42]: error: {text}"));
    let got = recv(&rx);
    let rest = strip_stamp(&got);
    let head = b"mx1 postfix/smtp[42]: error: ";
    assert_eq!(&rest[..head.len()], head);
    assert_eq!(rest.len() - head.len(), TEXT_LIMIT);
    // A line without the expected shape is passed on, limited as a whole.
    sink(Level::Info, "no tag here");
    assert_eq!(strip_stamp(&recv(&rx)), b"mx1 no tag here");
}

#[test]
fn connects_late_when_the_service_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postlog");
    assert!(PostlogClient::connect(&path, "h", "postfix/smtp").is_err());
    let client = PostlogClient::open(&path, "h", "postfix/smtp");
    assert!(!client.is_connected());
    client.send("lost"); // nobody listening: dropped, no error
    let rx = UnixDatagram::bind(&path).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    client.send("found");
    assert!(client.is_connected());
    let want = format!("h postfix/smtp[{}]: found", std::process::id());
    assert_eq!(String::from_utf8_lossy(strip_stamp(&recv(&rx))), want);
}

#[test]
fn send_failures_are_ignored() {
    let (dir, path, rx) = receiver();
    let client = PostlogClient::connect(&path, "h", "t").unwrap();
    drop(rx);
    drop(dir);
    client.send("into the void");
    client.send("again");
}

#[test]
fn empty_hostname_is_amnesiac_from_env() {
    // Only the hostname choice is tested here; the environment is not touched.
    let (_dir, path, rx) = receiver();
    let c = PostlogClient::open(&path, NO_HOSTNAME, "t");
    c.send("x");
    assert_eq!(
        String::from_utf8_lossy(strip_stamp(&recv(&rx))),
        format!("amnesiac t[{}]: x", std::process::id())
    );
}

/// Against a running Postfix with maillog_file: set OUTPOST_TEST_POSTLOG to its
/// public/postlog socket and OUTPOST_TEST_MAILLOG to the log file.
#[test]
fn real_postlogd_writes_our_lines() {
    let (Ok(sock), Ok(log)) = (
        std::env::var("OUTPOST_TEST_POSTLOG"),
        std::env::var("OUTPOST_TEST_MAILLOG"),
    ) else {
        return;
    };
    let marker = format!("outpost postlog test {}", std::process::id());
    let client = PostlogClient::connect(Path::new(&sock), "probe.example", "postfix/smtp").unwrap();
    client.send(&format!("warning: {marker}"));
    let want = format!(
        "probe postfix/smtp[{}]: warning: {marker}",
        std::process::id()
    );
    for _ in 0..50 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(&marker)) {
            assert_eq!(String::from_utf8_lossy(strip_stamp(line.as_bytes())), want);
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("line not found in {log}");
}
