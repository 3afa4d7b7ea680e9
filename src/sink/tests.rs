//! Protocol tests for `outpost sink`: spawn a server and talk to it over
//! TCP (and a UNIX-domain socket) with plain std::net clients.

use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Instant;

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn start(extra: &[&str]) -> SinkHandle {
    let mut a = args(&["--quiet", "--timeout", "10s"]);
    a.extend(args(extra));
    a.push("127.0.0.1:0".into());
    let cfg = SinkConfig::from_args(&a).unwrap();
    spawn(cfg).unwrap()
}

struct Client<S: Read + Write> {
    r: BufReader<S>,
}

impl Client<TcpStream> {
    fn tcp(h: &SinkHandle) -> Self {
        let s = TcpStream::connect(h.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client::new(s)
    }
}

impl<S: Read + Write> Client<S> {
    fn new(s: S) -> Self {
        Client {
            r: BufReader::new(s),
        }
    }

    fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l),
        }
    }

    /// Reads one complete (possibly multi-line) reply.
    fn reply(&mut self) -> Option<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            let l = self.line()?;
            let done = l.as_bytes().get(3) != Some(&b'-');
            lines.push(l.trim_end().to_string());
            if done {
                return Some(lines);
            }
        }
    }

    fn last(&mut self) -> String {
        self.reply()
            .and_then(|mut v| v.pop())
            .unwrap_or_else(|| "<eof>".into())
    }

    fn send(&mut self, s: &str) {
        self.r.get_mut().write_all(s.as_bytes()).unwrap();
    }

    fn cmd(&mut self, s: &str) -> String {
        self.send(&format!("{s}\r\n"));
        self.last()
    }

    fn eof(&mut self) -> bool {
        self.line().is_none()
    }
}

fn eml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    v.sort();
    v
}

#[test]
fn full_transaction_recorded_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let raw = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let r = raw.path().to_str().unwrap();
    let h = start(&[
        "--dir",
        d,
        "--raw-dir",
        r,
        "--reply",
        "rcpt:no@x.test=550 5.1.1 nope",
    ]);
    let mut c = Client::tcp(&h);
    assert_eq!(c.last(), "220 sink.test ESMTP outpost-sink");
    c.send("EHLO client.test\r\n");
    let ehlo = c.reply().unwrap();
    assert_eq!(ehlo[0], "250-sink.test");
    assert_eq!(ehlo.last().unwrap(), "250 SMTPUTF8");
    assert!(ehlo.contains(&"250-SIZE 10240000".to_string()));
    assert_eq!(
        c.cmd("MAIL FROM:<a@x.test> SIZE=100 BODY=8BITMIME"),
        "250 2.1.0 Ok"
    );
    assert_eq!(c.cmd("RCPT TO:<b@x.test> NOTIFY=NEVER"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("RCPT TO:<NO@x.test>"), "550 5.1.1 nope");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    c.send("Subject: t\r\n\r\n..leading dot\r\n.x\r\nbare lf\nlast\r\n.\r\n");
    let dot = c.last();
    let seq = dot
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap()
        .to_string();
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    let files = eml_files(dir.path());
    assert_eq!(files.len(), 1);
    assert!(
        files[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&format!("{seq}-"))
    );
    assert_eq!(
        std::fs::read(&files[0]).unwrap(),
        b"X-Sink-Helo: client.test\r\nX-Sink-Mail: <a@x.test> SIZE=100 BODY=8BITMIME\r\n\
          X-Sink-Rcpt: <b@x.test> NOTIFY=NEVER\r\nX-Sink-Proto: ESMTP\r\n\r\n\
          Subject: t\r\n\r\n.leading dot\r\nx\r\nbare lf\nlast\r\n"
            .to_vec()
    );
    // The wire log is saved before the QUIT reply goes out.
    let logs: Vec<_> = std::fs::read_dir(raw.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    assert_eq!(logs.len(), 1);
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(log.starts_with("S: 220 sink.test ESMTP outpost-sink\r\nC: EHLO client.test\r\n"));
    assert!(log.contains("C: RCPT TO:<NO@x.test>\r\nS: 550 5.1.1 nope\r\n"));
    assert!(log.contains("C: ..leading dot\r\n"));
    assert!(log.ends_with("C: QUIT\r\nS: 221 2.0.0 Bye\r\n"));
    h.stop();
}

#[test]
fn pipelined_commands_answered_in_order() {
    let h = start(&["--reply", "rcpt#2=451 4.3.0 second"]);
    let mut c = Client::tcp(&h);
    c.last();
    c.send(
        "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nRCPT TO:<d@x>\r\nDATA\r\n",
    );
    assert_eq!(c.last(), "250 SMTPUTF8");
    assert_eq!(c.last(), "250 2.1.0 Ok");
    assert_eq!(c.last(), "250 2.1.5 Ok");
    assert_eq!(c.last(), "451 4.3.0 second");
    assert_eq!(c.last(), "250 2.1.5 Ok");
    assert_eq!(c.last(), "354 End data with <CR><LF>.<CR><LF>");
    // Data, next transaction and QUIT all in one write.
    c.send("hi\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<e@x>\r\nRSET\r\nNOOP\r\nQUIT\r\n");
    assert!(c.last().starts_with("250 2.0.0 Ok: queued as "));
    assert_eq!(c.last(), "250 2.1.0 Ok");
    // Occurrences are counted per connection: the 2nd RCPT was in mail 1.
    assert_eq!(c.last(), "250 2.1.5 Ok");
    assert_eq!(c.last(), "250 2.0.0 Ok");
    assert_eq!(c.last(), "250 2.0.0 Ok");
    assert_eq!(c.last(), "221 2.0.0 Bye");
    assert!(c.eof());
    assert_eq!(h.messages(), 1);
}

#[test]
fn per_recipient_and_multiline_script() {
    let h = start(&[
        "--reply",
        "rcpt:<Bob@X.test>=452 4.2.2 full\\nreally full",
        "--reply",
        "rcpt=250 2.1.5 fine",
        "--reply",
        "mail#2=421 4.3.2 go away",
    ]);
    let mut c = Client::tcp(&h);
    c.last();
    c.cmd("EHLO c");
    c.cmd("MAIL FROM:<a@x>");
    assert_eq!(c.cmd("RCPT TO:<x@x>"), "250 2.1.5 fine");
    c.send("RCPT TO:<bob@x.TEST>\r\n");
    assert_eq!(
        c.reply().unwrap(),
        vec!["452-4.2.2 full", "452 really full"]
    );
    assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok");
    assert_eq!(c.cmd("MAIL FROM:<a@x>"), "421 4.3.2 go away");
    assert_eq!(c.cmd("RCPT TO:<x@x>"), "503 5.5.1 Error: need MAIL command");
}

#[test]
fn protocol_state_errors() {
    let h = start(&["--caps", "PIPELINING,SIZE 100"]);
    let mut c = Client::tcp(&h);
    c.last();
    assert_eq!(
        c.cmd("MAIL FROM:<a@x>"),
        "503 5.5.1 Error: send HELO/EHLO first"
    );
    assert_eq!(c.cmd("EHLO"), "501 5.5.4 Syntax: EHLO hostname");
    assert_eq!(c.cmd("HELO c"), "250 sink.test");
    assert_eq!(c.cmd("RCPT TO:<b@x>"), "503 5.5.1 Error: need MAIL command");
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command");
    assert_eq!(
        c.cmd("MAIL TO:<a@x>"),
        "501 5.5.4 Syntax: MAIL FROM:<address>"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@x"),
        "501 5.1.7 Bad sender address syntax"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@x> SIZE=101"),
        "552 5.3.4 Message size exceeds fixed limit"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@x> SIZE=x"),
        "501 5.5.4 Bad message size syntax"
    );
    assert_eq!(c.cmd("mail from: <a@x> SIZE=100"), "250 2.1.0 Ok");
    assert_eq!(
        c.cmd("MAIL FROM:<a@x>"),
        "503 5.5.1 Error: nested MAIL command"
    );
    assert_eq!(c.cmd("DATA"), "554 5.5.1 Error: no valid recipients");
    assert_eq!(
        c.cmd("RCPT TO:<>"),
        "501 5.1.3 Bad recipient address syntax"
    );
    assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<b@x>"), "503 5.5.1 Error: need MAIL command");
    assert_eq!(
        c.cmd("BDAT 10 LAST"),
        "502 5.5.2 Error: command not recognized"
    );
    assert_eq!(
        c.cmd("AUTH PLAIN AGEAYg=="),
        "502 5.5.2 Error: command not recognized"
    );
    assert_eq!(c.cmd(""), "500 5.5.2 Error: bad syntax");
    // Oversized data is refused at end of data.
    c.cmd("MAIL FROM:<a@x>");
    c.cmd("RCPT TO:<b@x>");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(&format!("{}\r\n.\r\n", "y".repeat(200)));
    assert_eq!(c.last(), "552 5.3.4 Message size exceeds fixed limit");
    assert_eq!(c.cmd("RCPT TO:<b@x>"), "503 5.5.1 Error: need MAIL command");
}

#[test]
fn lmtp_per_recipient_replies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let h = start(&[
        "--lmtp",
        "--dir",
        d,
        "--reply",
        "dot:bob@x=452 4.2.2 mailbox full",
    ]);
    let mut c = Client::tcp(&h);
    assert_eq!(c.last(), "220 sink.test LMTP outpost-sink");
    assert_eq!(c.cmd("EHLO c"), "502 5.5.2 Error: command not recognized");
    assert_eq!(c.cmd("MAIL FROM:<a@x>"), "503 5.5.1 Error: send LHLO first");
    assert_eq!(c.cmd("LHLO c"), "250 SMTPUTF8");
    c.cmd("MAIL FROM:<a@x>");
    c.cmd("RCPT TO:<alice@x>");
    c.cmd("RCPT TO:<bob@x>");
    c.cmd("RCPT TO:<carol@x>");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send("body\r\n.\r\n");
    assert_eq!(c.last(), "250 2.1.5 <alice@x> Ok");
    assert_eq!(c.last(), "452 4.2.2 mailbox full");
    assert_eq!(c.last(), "250 2.1.5 <carol@x> Ok");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    let files = eml_files(dir.path());
    assert_eq!(files.len(), 1);
    assert_eq!(
        std::fs::read(&files[0]).unwrap(),
        b"X-Sink-Helo: c\r\nX-Sink-Mail: <a@x>\r\nX-Sink-Rcpt: <alice@x>\r\n\
          X-Sink-Rcpt: <carol@x>\r\nX-Sink-Proto: LMTP\r\n\r\nbody\r\n"
            .to_vec()
    );
}

#[test]
fn lmtp_disconnect_mid_recipient_list() {
    let h = start(&["--lmtp", "--reply", "dot:b@x=disconnect"]);
    let mut c = Client::tcp(&h);
    c.last();
    c.cmd("LHLO c");
    c.send("MAIL FROM:<a@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n");
    for _ in 0..3 {
        assert!(c.last().starts_with("250"));
    }
    assert!(c.last().starts_with("354"));
    c.send(".\r\n");
    assert_eq!(c.last(), "250 2.1.5 <a@x> Ok");
    assert!(c.eof());
}

#[test]
fn disconnect_at_phase_flushes_earlier_replies() {
    let h = start(&["--reply", "rcpt#2=disconnect"]);
    let mut c = Client::tcp(&h);
    c.last();
    c.cmd("EHLO c");
    c.send("MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n");
    assert_eq!(c.last(), "250 2.1.0 Ok");
    assert_eq!(c.last(), "250 2.1.5 Ok");
    assert!(c.eof());

    let h2 = start(&["--reply", "greeting=disconnect"]);
    let mut c = Client::tcp(&h2);
    assert!(c.eof());
}

#[test]
fn rejected_data_reads_no_data_and_greeting_reject() {
    let h = start(&["--reply", "data=451 4.3.0 no data today"]);
    let mut c = Client::tcp(&h);
    c.last();
    c.cmd("EHLO c");
    c.cmd("MAIL FROM:<a@x>");
    c.cmd("RCPT TO:<b@x>");
    assert_eq!(c.cmd("DATA"), "451 4.3.0 no data today");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok");
    drop(c);

    let h = start(&["--reply", "greeting=554 5.7.1 go away"]);
    let mut c = Client::tcp(&h);
    assert_eq!(c.last(), "554 5.7.1 go away");
    assert_eq!(c.cmd("EHLO c"), "503 5.5.1 Error: waiting for QUIT");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
}

#[test]
fn malformed_reply_modes() {
    let h = start(&[
        "--reply",
        "helo=garbage",
        "--reply",
        "noop=badcode",
        "--reply",
        "rset=bare-lf",
        "--reply",
        "vrfy=longline",
    ]);
    let mut c = Client::tcp(&h);
    c.last();
    c.send("HELO c\r\n");
    assert_eq!(c.line().unwrap(), "this is not smtp\r\n");
    c.send("NOOP\r\n");
    assert_eq!(c.line().unwrap(), "2x0 malformed\r\n");
    c.send("RSET\r\n");
    assert_eq!(c.line().unwrap(), "250 2.0.0 Ok\n");
    c.send("VRFY x\r\n");
    let l = c.line().unwrap();
    assert!(l.starts_with("250-xxx") && l.len() > 5000);
    assert_eq!(c.line().unwrap(), "250 ok\r\n");
}

#[test]
fn no_esmtp_caps_and_max_line() {
    let h = start(&["--no-esmtp", "--max-line", "20", "--caps", ""]);
    let mut c = Client::tcp(&h);
    c.last();
    assert_eq!(c.cmd("EHLO c"), "502 5.5.2 Error: command not recognized");
    assert_eq!(c.cmd("HELO c"), "250 sink.test");
    assert_eq!(
        c.cmd(&format!("NOOP {}", "z".repeat(100))),
        "500 5.5.0 Error: line too long"
    );
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok");
    drop(c);
    let h = start(&["--caps", "", "--hostname", "mx.example"]);
    let mut c = Client::tcp(&h);
    assert_eq!(c.last(), "220 mx.example ESMTP outpost-sink");
    c.send("EHLO c\r\n");
    assert_eq!(c.reply().unwrap(), vec!["250 mx.example"]);
}

#[test]
fn auth_and_xforward_when_offered() {
    let h = start(&[
        "--caps",
        "AUTH PLAIN LOGIN,XFORWARD NAME ADDR",
        "--reply",
        "auth#2=535 5.7.8 no",
    ]);
    let mut c = Client::tcp(&h);
    c.last();
    c.cmd("EHLO c");
    assert_eq!(c.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd("dXNlcg=="), "334 UGFzc3dvcmQ6");
    assert_eq!(c.cmd("cGFzcw=="), "235 2.7.0 Authentication successful");
    assert_eq!(
        c.cmd("AUTH PLAIN AGEAYg=="),
        "503 5.5.1 Error: already authenticated"
    );
    assert_eq!(c.cmd("XFORWARD NAME=x ADDR=1.2.3.4"), "250 2.0.0 Ok");
    assert_eq!(c.cmd("STARTTLS"), "502 5.5.2 Error: command not recognized");
    drop(c);
    let mut c = Client::tcp(&h);
    c.last();
    c.cmd("EHLO c");
    assert_eq!(c.cmd("AUTH PLAIN"), "334");
    assert_eq!(c.cmd("*"), "501 5.7.0 Authentication aborted");
}

#[test]
fn delay_and_hang_and_stop() {
    let h = start(&["--delay", "noop=300ms", "--reply", "rset=hang"]);
    let mut c = Client::tcp(&h);
    c.last();
    let t = Instant::now();
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok");
    assert!(t.elapsed() >= Duration::from_millis(300));
    c.send("RSET\r\n");
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    h.stop();
    assert!(c.eof());
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn max_messages_and_once() {
    let h = start(&["--max-messages", "2"]);
    let mut c = Client::tcp(&h);
    c.last();
    c.cmd("HELO c");
    for _ in 0..2 {
        c.cmd("MAIL FROM:<a@x>");
        c.cmd("RCPT TO:<b@x>");
        c.cmd("DATA");
        assert!(c.cmd(".").starts_with("250 2.0.0 Ok: queued as"));
    }
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    let t = Instant::now();
    h.wait();
    assert!(t.elapsed() < Duration::from_secs(2));

    let h = start(&["--once"]);
    let addr = h.addr();
    let mut c = Client::tcp(&h);
    c.last();
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    h.wait();
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn unix_socket_listener() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sink.sock");
    std::fs::write(&path, b"").unwrap();
    let listen = format!("unix:{}", path.display());
    let a = args(&["--quiet", &listen]);
    // A regular file in the way is not removed.
    assert!(spawn(SinkConfig::from_args(&a).unwrap()).is_err());
    std::fs::remove_file(&path).unwrap();
    let h = spawn(SinkConfig::from_args(&a).unwrap()).unwrap();
    assert_eq!(h.addr(), listen);
    h.stop();
    // A stale socket is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    let h = spawn(SinkConfig::from_args(&a).unwrap()).unwrap();
    let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let mut c = Client::new(s);
    assert_eq!(c.last(), "220 sink.test ESMTP outpost-sink");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    h.stop();
    assert!(!path.exists());
}

#[test]
fn command_line_errors() {
    for bad in [
        &[][..],
        &["a:1", "b:2"],
        &["nohost"],
        &["--bogus", ":0"],
        &["--reply", "rcpt=hello", ":0"],
        &["--reply", "nosuch=250 ok", ":0"],
        &["--delay", "rcpt=soon", ":0"],
        &["--max-messages", "0", ":0"],
        &["--max-line", "x", ":0"],
        &["--hostname", "a b", ":0"],
    ] {
        assert!(
            SinkConfig::from_args(&args(bad)).is_err(),
            "{bad:?} accepted"
        );
    }
    assert_eq!(main(&args(&["--bogus"])), EX_USAGE);
    assert_eq!(main(&args(&["--help"])), 0);
    let c = SinkConfig::from_args(&args(&["--lmtp", "--caps", "", "[::1]:0"])).unwrap();
    assert!(c.lmtp && c.caps.is_empty());
    assert_eq!(c.listen, "[::1]:0");
}

#[test]
fn robust_against_garbage_input() {
    let h = start(&[]);
    let mut c = Client::tcp(&h);
    c.last();
    c.r.get_mut()
        .write_all(b"\xff\xfe\x00\r\nMAIL\r\n\r\n.\r\nRCPT TO:\r\nEHLO \xc3\x28\r\n")
        .unwrap();
    assert_eq!(c.last(), "502 5.5.2 Error: command not recognized");
    assert_eq!(c.last(), "503 5.5.1 Error: send HELO/EHLO first");
    assert_eq!(c.last(), "500 5.5.2 Error: bad syntax");
    assert_eq!(c.last(), "502 5.5.2 Error: command not recognized");
    assert_eq!(c.last(), "503 5.5.1 Error: need MAIL command");
    assert_eq!(c.last(), "250 SMTPUTF8");
    assert_eq!(c.cmd("MAIL FROM:"), "501 5.1.7 Bad sender address syntax");
    assert_eq!(c.cmd("MAIL FROM:<>"), "250 2.1.0 Ok");
    // Unterminated data followed by EOF must not disturb the server.
    c.cmd("RCPT TO:<b@x>");
    c.cmd("DATA");
    c.send("partial data without end");
    drop(c);
    let mut c = Client::tcp(&h);
    assert!(c.last().starts_with("220"));
}

#[test]
fn tls_options() {
    let c = SinkConfig::from_args(&args(&[
        "--tls-cert",
        "c.pem",
        "--tls-wrapper",
        "--tls-inject",
        "250 injected",
        ":0",
    ]))
    .unwrap();
    let t = c.tls.unwrap();
    assert!(t.wrapper);
    assert_eq!(t.inject.as_deref(), Some("250 injected"));
    assert_eq!(t.key, None);
    assert_eq!(
        SinkConfig::from_args(&args(&["--tls-wrapper", ":0"])).unwrap_err(),
        "--tls-wrapper needs --tls-cert"
    );
    assert!(
        SinkConfig::from_args(&args(&["--tls-cert", "c", "--tls-inject", "a\rb", ":0"])).is_err()
    );
    // A certificate that cannot be loaded stops the sink from starting.
    let cfg = SinkConfig {
        tls: Some(SinkTls {
            anon: false,
            early: None,
            cert: "/nonexistent/cert.pem".into(),
            ..SinkTls::default()
        }),
        ..SinkConfig::default()
    };
    let e = spawn(cfg).err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}
