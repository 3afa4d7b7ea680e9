//! Interoperability tests of `outpost send` and `outpost sink` against real peers:
//! Postfix smtp-sink (SMTP and LMTP), a throw-away Postfix instance (smtpd as the
//! receiver; smtp as the reference client), dovecot LMTP, and swaks as a client.
//!
//! Every test starts its own peers on loopback (free ports, private temporary directory,
//! unique instance names) behind guards that stop them on drop, so the tests run in
//! parallel and clean up after a failure. A test whose peer is not installed prints
//! "SKIP: ..." and passes; `make test` installs the peers first.
//!
//! The peers store what they received with LF line ends (smtp-sink -d, maildir), so the
//! byte-exact comparisons are made against `stored_lf(postfix_wire(msg))`: the DATA bytes
//! Postfix's smtp(8) would send (dot-stuffing, 998-byte folding with CRLF SPACE, CRLF),
//! un-stuffed and with CRLF turned into LF. That the wire really uses CRLF is checked by
//! the Postfix smtpd test, whose smtpd rejects any bare LF (smtpd_forbid_bare_newline).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::*;

// ---------------------------------------------------------------------------------------
// Test content

/// What the receivers must have stored for `msg`.
fn expected_stored(msg: &[u8]) -> Vec<u8> {
    stored_lf(&postfix_wire(msg))
}

const ENVID: &str = "env+1=x y";
const ENVID_XTEXT: &str = "env+2B1+3Dx+20y";

fn dsn_opts() -> Vec<&'static str> {
    vec!["-N", "success,failure", "-R", "hdrs", "-V", ENVID]
}

/// Check (non-)pipelining in the -v trace: with PIPELINING, MAIL, every RCPT and DATA go
/// out before the first reply to them; without it, each command waits for its reply.
fn assert_pipelining(run: &Run, nrcpt: usize, pipelined: bool, diag: &str) {
    let t = run.trace();
    let mail = t
        .iter()
        .position(|l| l.starts_with("> MAIL FROM:"))
        .unwrap_or_else(|| panic!("no MAIL FROM in the -v trace\n{diag}"));
    let window: Vec<&str> = t[mail..].iter().map(|s| s.as_str()).collect();
    ensure!(
        window.len() >= 2 * (nrcpt + 2),
        diag,
        "trace too short after MAIL FROM: {window:#?}"
    );
    if pipelined {
        for (i, l) in window.iter().take(nrcpt + 2).enumerate() {
            let want = match i {
                0 => "> MAIL FROM:",
                i if i <= nrcpt => "> RCPT TO:",
                _ => "> DATA",
            };
            ensure!(
                l.starts_with(want),
                diag,
                "PIPELINING offered: expected {want:?} at position {i} after MAIL, got {l:?}\ntrace: {window:#?}"
            );
        }
    } else {
        // Lock step: every command is followed by its reply.
        for (i, pair) in window.chunks(2).take(nrcpt + 2).enumerate() {
            ensure!(
                pair.len() == 2 && pair[0].starts_with("> ") && pair[1].starts_with("< "),
                diag,
                "PIPELINING not offered: command {i} after MAIL is not followed by its reply\ntrace: {window:#?}"
            );
        }
    }
}

fn assert_sent_all(run: &Run, rcpts: &[&str], relay: &str, reply: &str, diag: &str) {
    // The DSN status comes from the server's enhanced status code.
    let dsn = reply.split(' ').nth(1).unwrap_or("2.0.0");
    for r in rcpts {
        let want = format!("{r}: sent dsn={dsn} relay={relay} ({reply})");
        ensure!(
            run.result(r) == Some(want.as_str()),
            diag,
            "result line for {r}: expected {want:?}, got {:?}",
            run.result(r)
        );
        let logs = run.log_lines(r);
        ensure!(
            logs.len() == 1
                && logs[0].contains(&format!(" to=<{r}>, relay={relay}, delay="))
                && logs[0].ends_with(&format!(", dsn={dsn}, status=sent ({reply})")),
            diag,
            "log line for {r}: expected one \"to=<{r}>, relay={relay}, ... dsn={dsn}, status=sent ({reply})\", got {logs:#?}"
        );
    }
}

fn assert_data(expected: &[u8], actual: &[u8], what: &str, diag: &str) {
    if let Some(d) = byte_diff(expected, actual) {
        panic!(
            "{what}: stored message differs from what Postfix's smtp would send\n{d}\n========== diagnostics ==========\n{diag}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 1. Postfix smtp-sink as the SMTP server

struct SinkCase {
    /// smtp-sink options hiding features.
    opts: &'static [&'static str],
    /// Outpost options beyond -o myhostname and -f.
    send_opts: Vec<&'static str>,
    proto: &'static str,
    mail_args: String,
    rcpt_suffix: &'static str,
    pipelined: bool,
}

fn smtp_sink_case(name: &str, case: SinkCase) {
    let bins = require!("smtp-sink");
    let dir = TestDir::new(name);
    let sink = SmtpSink::start(&bins[0], &dir, case.opts, Listen::Tcp);
    let msg = tricky_message();
    let rcpts = ["a@one.test", "b@two.test", "c@three.test"];
    let dest = sink.dest_tcp();
    let mut opts = vec!["-v", "-d", dest.as_str()];
    opts.extend(case.send_opts.iter().copied());
    let run = send(&opts, &rcpts, &msg);
    let diag = || format!("{}\n{}", run.show(), sink.show());

    ensure!(run.code == 0, diag(), "exit code: expected 0");
    let relay = format!("127.0.0.1[127.0.0.1]:{}", sink.port);
    assert_sent_all(&run, &rcpts, &relay, "250 2.0.0 Ok", &diag());
    ensure!(
        run.stderr
            .contains(": breaking line > 998 bytes with <CR><LF>SPACE"),
        diag(),
        "no \"breaking line > 998 bytes with <CR><LF>SPACE\" log line (Postfix logs one)"
    );
    assert_pipelining(&run, rcpts.len(), case.pipelined, &diag());

    let dumps = sink.dumps(1).unwrap_or_else(|e| panic!("{e}\n{}", diag()));
    ensure!(
        dumps.len() == 1,
        diag(),
        "expected one transaction, got {}",
        dumps.len()
    );
    let d = &dumps[0];
    ensure!(
        d.get("X-Client-Proto") == Some(case.proto),
        diag(),
        "X-Client-Proto: expected {}, got {:?}",
        case.proto,
        d.get("X-Client-Proto")
    );
    ensure!(
        d.get("X-Helo-Args") == Some(MYHOSTNAME),
        diag(),
        "X-Helo-Args: expected {MYHOSTNAME}, got {:?}",
        d.get("X-Helo-Args")
    );
    ensure!(
        d.get("X-Mail-Args") == Some(case.mail_args.as_str()),
        diag(),
        "X-Mail-Args: expected {:?}, got {:?} (smtp-sink never offers SIZE, so no SIZE=)",
        case.mail_args,
        d.get("X-Mail-Args")
    );
    let want_rcpts: Vec<String> = rcpts
        .iter()
        .map(|r| {
            // With DSN the original recipient travels as ORCPT, as with Postfix.
            let orcpt = if case.rcpt_suffix.is_empty() {
                String::new()
            } else {
                format!(" ORCPT=rfc822;{r}")
            };
            format!("<{r}>{orcpt}{}", case.rcpt_suffix)
        })
        .collect();
    ensure!(
        d.all("X-Rcpt-Args") == want_rcpts,
        diag(),
        "X-Rcpt-Args: expected {want_rcpts:?}, got {:?}",
        d.all("X-Rcpt-Args")
    );
    assert_data(&expected_stored(&msg), &d.data, name, &diag());
}

#[test]
fn smtp_sink_full_esmtp_byte_exact_and_dsn_args() {
    smtp_sink_case(
        "full",
        SinkCase {
            opts: &[],
            send_opts: dsn_opts(),
            proto: "ESMTP",
            mail_args: format!("<sender@x.test> BODY=8BITMIME ENVID={ENVID_XTEXT} RET=HDRS"),
            rcpt_suffix: " NOTIFY=SUCCESS,FAILURE",
            pipelined: true,
        },
    );
}

#[test]
fn smtp_sink_without_pipelining_sends_in_lock_step() {
    smtp_sink_case(
        "nopipe",
        SinkCase {
            opts: &["-p"],
            send_opts: dsn_opts(),
            proto: "ESMTP",
            mail_args: format!("<sender@x.test> BODY=8BITMIME ENVID={ENVID_XTEXT} RET=HDRS"),
            rcpt_suffix: " NOTIFY=SUCCESS,FAILURE",
            pipelined: false,
        },
    );
}

/// Without 8BITMIME there is no BODY=; with MIME output conversion off the 8-bit content
/// passes unchanged (conversion itself is tested against Postfix in tests/mime.rs).
#[test]
fn smtp_sink_without_8bitmime_has_no_body_param() {
    let mut send_opts = dsn_opts();
    send_opts.extend(["-o", "disable_mime_output_conversion=yes"]);
    smtp_sink_case(
        "no8bit",
        SinkCase {
            opts: &["-8"],
            send_opts,
            proto: "ESMTP",
            mail_args: format!("<sender@x.test> ENVID={ENVID_XTEXT} RET=HDRS"),
            rcpt_suffix: " NOTIFY=SUCCESS,FAILURE",
            pipelined: true,
        },
    );
}

/// Without DSN: no RET=, ENVID=, NOTIFY= or ORCPT=.
#[test]
fn smtp_sink_without_dsn_has_no_dsn_params() {
    smtp_sink_case(
        "nodsn",
        SinkCase {
            opts: &["-N"],
            send_opts: dsn_opts(),
            proto: "ESMTP",
            mail_args: "<sender@x.test> BODY=8BITMIME".to_string(),
            rcpt_suffix: "",
            pipelined: true,
        },
    );
}

/// EHLO refused: HELO fallback, plain MAIL FROM/RCPT TO without any parameter, no
/// pipelining. (Without EHLO there is no 8BITMIME either: MIME output conversion is
/// turned off so that the 8-bit test message is compared as it is.)
#[test]
fn smtp_sink_without_esmtp_falls_back_to_helo() {
    let name = "noesmtp";
    let mut send_opts = dsn_opts();
    send_opts.extend(["-o", "disable_mime_output_conversion=yes"]);
    smtp_sink_case(
        name,
        SinkCase {
            opts: &["-e"],
            send_opts,
            proto: "SMTP",
            mail_args: "<sender@x.test>".to_string(),
            rcpt_suffix: "",
            pipelined: false,
        },
    );
}

#[test]
fn smtp_sink_without_esmtp_trace_shows_ehlo_then_helo() {
    let bins = require!("smtp-sink");
    let dir = TestDir::new("helo");
    let sink = SmtpSink::start(&bins[0], &dir, &["-e"], Listen::Tcp);
    let dest = sink.dest_tcp();
    let run = send(&["-v", "-d", &dest], &["a@one.test"], b"Subject: x\n\nhi\n");
    let diag = format!("{}\n{}", run.show(), sink.show());
    ensure!(run.code == 0, diag, "exit code: expected 0");
    let t = run.trace();
    let ehlo = t.iter().position(|l| l == "> EHLO outpost.test");
    ensure!(ehlo.is_some(), diag, "no EHLO in trace {t:#?}");
    let i = ehlo.unwrap_or_default();
    ensure!(
        t.get(i + 1).is_some_and(|l| l.starts_with("< 5"))
            && t.get(i + 2).map(String::as_str) == Some("> HELO outpost.test"),
        diag,
        "expected a 5xx reply to EHLO, then HELO outpost.test; trace {t:#?}"
    );
}

/// BODY= follows the declared or detected body type: BODY=7BIT with -B 7BIT, nothing for
/// an undeclared 7-bit message, BODY=8BITMIME with -B 8BITMIME.
#[test]
fn smtp_sink_body_type_parameter() {
    let bins = require!("smtp-sink");
    let dir = TestDir::new("body");
    let sink = SmtpSink::start(&bins[0], &dir, &[], Listen::Tcp);
    let dest = sink.dest_tcp();
    let msg = b"Subject: seven bit\n\nplain ASCII\n";
    let cases: [(&[&str], &str); 3] = [
        (&["-B", "7BIT"], "<sender@x.test> BODY=7BIT"),
        (&[], "<sender@x.test>"),
        (&["-B", "8BITMIME"], "<sender@x.test> BODY=8BITMIME"),
    ];
    for (i, (extra, want)) in cases.iter().enumerate() {
        let mut opts = vec!["-d", dest.as_str()];
        opts.extend_from_slice(extra);
        let run = send(&opts, &["a@one.test"], msg);
        let diag = || format!("{}\n{}", run.show(), sink.show());
        ensure!(run.code == 0, diag(), "exit code: expected 0");
        let dumps = sink
            .dumps(i + 1)
            .unwrap_or_else(|e| panic!("{e}\n{}", diag()));
        let got: Vec<&str> = dumps.iter().filter_map(|d| d.get("X-Mail-Args")).collect();
        ensure!(
            got.contains(want),
            diag(),
            "{extra:?}: expected X-Mail-Args {want:?} among {got:?}"
        );
        assert_data(&expected_stored(msg), &dumps[i].data, "7-bit", &diag());
    }
}

/// Postfix's smtp_text_out() doubles a leading '.' without counting it
/// toward smtp_line_length_limit, so ".xxx...(1200)" goes out as "." + 998 bytes, then
/// " " + 202 bytes. (The reference is confirmed against the real Postfix smtp client in
/// postfix_smtp_client_is_the_reference.)
#[test]
fn smtp_sink_dot_stuffed_long_line_folds_like_postfix() {
    let bins = require!("smtp-sink");
    let dir = TestDir::new("dotlong");
    let sink = SmtpSink::start(&bins[0], &dir, &[], Listen::Tcp);
    let dest = sink.dest_tcp();
    let msg = dot_long_message();
    let run = send(&["-d", &dest], &["a@one.test"], &msg);
    let diag = format!("{}\n{}", run.show(), sink.show());
    ensure!(run.code == 0, diag, "exit code: expected 0");
    let dumps = sink.dumps(1).unwrap_or_else(|e| panic!("{e}\n{diag}"));
    assert_data(
        &expected_stored(&msg),
        &dumps[0].data,
        "dot + long line",
        &diag,
    );
}

fn dot_long_message() -> Vec<u8> {
    let mut m = b"From: Sender <sender@x.test>\n\
                  To: rcpt@dest.test\n\
                  Date: Sat, 28 Nov 2026 07:00:00 +0000\n\
                  Message-ID: <interop-2@x.test>\n\
                  Subject: dot long\n\
                  \n."
    .to_vec();
    m.extend(pattern(1200, 5));
    m.extend_from_slice(b"\nend\n");
    m
}

// ---------------------------------------------------------------------------------------
// 2. smtp-sink in LMTP mode

fn lmtp_sink_delivery(name: &str, unix: bool) {
    let bins = require!("smtp-sink");
    let dir = TestDir::new(name);
    let listen = if unix {
        Listen::Unix(dir.join("lmtp.sock"))
    } else {
        Listen::Tcp
    };
    let sink = SmtpSink::start(&bins[0], &dir, &["-L"], listen);
    let (dest, relay) = match &sink.socket {
        Some(p) => (
            format!("unix:{}", p.display()),
            format!("{MYHOSTNAME}[{}]", p.display()),
        ),
        None => (
            format!("inet:127.0.0.1:{}", sink.port),
            format!("127.0.0.1[127.0.0.1]:{}", sink.port),
        ),
    };
    let msg = tricky_message();
    let rcpts = ["a@one.test", "b@two.test", "c@three.test"];
    let run = send(&["-v", "-d", &dest], &rcpts, &msg);
    let diag = || format!("{}\n{}", run.show(), sink.show());
    ensure!(run.code == 0, diag(), "exit code: expected 0");
    // smtp-sink answers each LMTP recipient with "250 2.2.0 Ok" after end of data.
    assert_sent_all(&run, &rcpts, &relay, "250 2.2.0 Ok", &diag());
    ensure!(
        run.trace().iter().any(|l| l == "> LHLO outpost.test"),
        diag(),
        "no \"LHLO outpost.test\" in the trace"
    );
    let dumps = sink.dumps(1).unwrap_or_else(|e| panic!("{e}\n{}", diag()));
    let d = &dumps[0];
    ensure!(
        d.get("X-Client-Proto") == Some("LMTP"),
        diag(),
        "X-Client-Proto: expected LMTP, got {:?}",
        d.get("X-Client-Proto")
    );
    ensure!(
        d.get("X-Mail-Args") == Some("<sender@x.test> BODY=8BITMIME"),
        diag(),
        "X-Mail-Args: got {:?}",
        d.get("X-Mail-Args")
    );
    // smtp-sink offers DSN, so the original recipient travels as ORCPT.
    let want: Vec<String> = rcpts
        .iter()
        .map(|r| format!("<{r}> ORCPT=rfc822;{r}"))
        .collect();
    ensure!(
        d.all("X-Rcpt-Args") == want,
        diag(),
        "X-Rcpt-Args: expected {want:?}, got {:?}",
        d.all("X-Rcpt-Args")
    );
    assert_data(&expected_stored(&msg), &d.data, name, &diag());
}

#[test]
fn lmtp_smtp_sink_over_tcp() {
    lmtp_sink_delivery("lmtp-tcp", false);
}

#[test]
fn lmtp_smtp_sink_over_unix_socket() {
    lmtp_sink_delivery("lmtp-unix", true);
}

/// `smtp-sink -L -r RCPT`: every RCPT gets 450 → all deferred, exit 75 (EX_TEMPFAIL), no
/// DATA.
#[test]
fn lmtp_smtp_sink_rcpt_4xx_defers() {
    let bins = require!("smtp-sink");
    let dir = TestDir::new("lmtp-4xx");
    let sink = SmtpSink::start(&bins[0], &dir, &["-L", "-r", "RCPT"], Listen::Tcp);
    let dest = format!("inet:127.0.0.1:{}", sink.port);
    let rcpts = ["a@one.test", "b@two.test"];
    let run = send(&["-d", &dest], &rcpts, b"Subject: x\n\nhi\n");
    let diag = format!("{}\n{}", run.show(), sink.show());
    ensure!(run.code == 75, diag, "exit code: expected 75 (EX_TEMPFAIL)");
    let relay = format!("127.0.0.1[127.0.0.1]:{}", sink.port);
    for r in rcpts {
        let want = format!(
            "{r}: deferred dsn=4.3.0 relay={relay} (host 127.0.0.1[127.0.0.1] said: 450 4.3.0 Error: command failed (in reply to RCPT TO command))"
        );
        ensure!(
            run.result(r) == Some(want.as_str()),
            diag,
            "result for {r}: expected {want:?}"
        );
        ensure!(
            run.log_lines(r).iter().any(|l| l.contains("dsn=4.3.0, status=deferred (host 127.0.0.1[127.0.0.1] said: 450 4.3.0 Error: command failed (in reply to RCPT TO command))")),
            diag,
            "no status=deferred log line for {r}"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let files = std::fs::read_dir(&sink.dump_dir)
        .map(|d| d.count())
        .unwrap_or(0);
    ensure!(
        files == 0,
        diag,
        "no transaction may be stored, found {files}"
    );
}

/// `smtp-sink -L -f .`: one 500 per recipient after end of data → all bounced with the
/// LMTP per-recipient reply, exit 69 (EX_UNAVAILABLE for 5.3.0).
#[test]
fn lmtp_smtp_sink_data_5xx_bounces_each_recipient() {
    let bins = require!("smtp-sink");
    let dir = TestDir::new("lmtp-5xx");
    let sink = SmtpSink::start(&bins[0], &dir, &["-L", "-f", "."], Listen::Tcp);
    let dest = format!("inet:127.0.0.1:{}", sink.port);
    let rcpts = ["a@one.test", "b@two.test"];
    let run = send(&["-v", "-d", &dest], &rcpts, b"Subject: x\n\nhi\n");
    let diag = format!("{}\n{}", run.show(), sink.show());
    ensure!(
        run.code == 69,
        diag,
        "exit code: expected 69 (EX_UNAVAILABLE)"
    );
    let relay = format!("127.0.0.1[127.0.0.1]:{}", sink.port);
    for r in rcpts {
        let want = format!(
            "{r}: bounced dsn=5.3.0 relay={relay} (host 127.0.0.1[127.0.0.1] said: 500 5.3.0 Error: command failed (in reply to end of DATA command))"
        );
        ensure!(
            run.result(r) == Some(want.as_str()),
            diag,
            "result for {r}: expected {want:?}"
        );
    }
    let replies = run
        .trace()
        .iter()
        .filter(|l| l.starts_with("< 500 5.3.0"))
        .count();
    ensure!(
        replies == 2,
        diag,
        "expected two end-of-data replies (one per recipient), saw {replies}"
    );
}

// ---------------------------------------------------------------------------------------
// 3. A throw-away Postfix instance

/// main.cf for a receiving instance: dest.test is a virtual(8) mailbox domain delivered
/// as maildir under BASE/vmail (as nobody); everything else is refused by
/// reject_unauth_destination (no permit_mynetworks); later@dest.test gets 450 from an
/// access map; bare LF in DATA is refused for every client, loopback included.
const SMTPD_MAIN: &str = "\
virtual_mailbox_domains = dest.test
virtual_mailbox_base = @BASE@/vmail
virtual_mailbox_maps = texthash:@CONF@/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 1
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:@CONF@/rcpt_access
local_header_rewrite_clients =
smtpd_forbid_bare_newline = reject
smtpd_forbid_bare_newline_exclusions =
";

/// Talk to an SMTP server by hand, sending a message body with bare LF line ends; returns
/// the reply after end-of-data (or after the data, if the server hangs up).
fn bare_lf_probe(port: u16) -> String {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to smtpd");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut w = s.try_clone().expect("clone stream");
    let mut r = BufReader::new(s);
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                return all + "<EOF>";
            }
            all.push_str(&l);
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return all;
            }
        }
    };
    let mut out = reply();
    for cmd in [
        "EHLO probe.test\r\n",
        "MAIL FROM:<probe@x.test>\r\n",
        "RCPT TO:<alice@dest.test>\r\n",
        "DATA\r\n",
    ] {
        let _ = w.write_all(cmd.as_bytes());
        out += &reply();
    }
    let _ = w.write_all(b"Subject: bare LF\r\n\r\nbare LF line\nnext line\r\n.\r\n");
    out += &reply();
    let _ = w.write_all(b"QUIT\r\n");
    out
}

#[test]
fn postfix_smtpd_receives_byte_exact_and_rejects_per_recipient() {
    require_root!("a throw-away Postfix instance");
    let _ = require!("postfix", "postconf");
    let dir = TestDir::new("smtpd");
    let pf = Postfix::start(
        &dir,
        SMTPD_MAIN,
        &[
            ("vmailbox", "alice@dest.test alice/\nbob@dest.test bob/\n"),
            (
                "rcpt_access",
                "later@dest.test 450 4.2.1 Mailbox busy, try later\n",
            ),
        ],
        true,
    );
    let dest = format!("[127.0.0.1]:{}", pf.port);
    let relay = format!("127.0.0.1[127.0.0.1]:{}", pf.port);

    // The instance really refuses bare LF, so an accepted message proves CRLF on the wire.
    let probe = bare_lf_probe(pf.port);
    ensure!(
        probe.contains("bare <LF>"),
        format!("{probe}\n{}", pf.show()),
        "smtpd_forbid_bare_newline is not in force; the CRLF check below would prove nothing"
    );

    // (a) Two local recipients: sent, byte-exact in both maildirs.
    let msg = tricky_message();
    let rcpts = ["alice@dest.test", "bob@dest.test"];
    let run = send(&["-v", "-d", &dest], &rcpts, &msg);
    let diag = || format!("{}\n{}", run.show(), pf.show());
    ensure!(run.code == 0, diag(), "exit code: expected 0");
    let mut qid = String::new();
    for r in rcpts {
        let line = run.result(r).unwrap_or_default();
        let prefix = format!("{r}: sent dsn=2.0.0 relay={relay} (250 2.0.0 Ok: queued as ");
        ensure!(
            line.starts_with(&prefix) && line.ends_with(')'),
            diag(),
            "result for {r}: expected {prefix}QUEUEID), got {line:?}"
        );
        let id = &line[prefix.len()..line.len() - 1];
        ensure!(
            qid.is_empty() || qid == id,
            diag(),
            "one transaction, one queue id"
        );
        qid = id.to_string();
    }
    let want_mail = format!(
        "> MAIL FROM:<sender@x.test> SIZE={} BODY=8BITMIME",
        lf_size(&msg)
    );
    ensure!(
        run.trace().contains(&want_mail),
        diag(),
        "expected {want_mail:?} in the trace (smtpd offers SIZE)"
    );
    let want = expected_stored(&msg);
    for r in rcpts {
        let user = r.split('@').next().unwrap_or_default();
        let logged = pf.wait_log(
            &[
                &format!("{qid}: to=<{r}>, relay=virtual"),
                "status=sent (delivered to maildir)",
            ],
            Duration::from_secs(20),
        );
        ensure!(
            logged.is_some(),
            diag(),
            "Postfix did not deliver {qid} to {r}"
        );
        let newdir = pf.base.join("vmail").join(user).join("new");
        let files: Vec<_> = std::fs::read_dir(&newdir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        ensure!(
            files.len() == 1,
            diag(),
            "expected one message in {}, found {files:?}",
            newdir.display()
        );
        let stored = std::fs::read(&files[0]).expect("read the maildir file");
        let (added, rest) = strip_added_headers(
            &stored,
            &["Return-Path", "X-Original-To", "Delivered-To", "Received"],
        );
        ensure!(
            added.len() == 4
                && added[0] == "Return-Path: <sender@x.test>\n"
                && added[2] == format!("Delivered-To: {r}\n")
                && added[3].starts_with("Received: from outpost.test (localhost [127.0.0.1])\n\tby postfix.test (Postfix) with ESMTP id ")
                && added[3].contains(&qid),
            diag(),
            "headers added by Postfix: {added:#?}"
        );
        assert_data(&want, rest, &format!("Postfix maildir of {r}"), &diag());
    }

    // (b) Per-recipient outcomes in one transaction: sent, bounced (relay denied) and
    // deferred (450 from the access map); any deferral makes the exit code 75.
    let rcpts = ["alice@dest.test", "x@other.test", "later@dest.test"];
    let run = send(&["-d", &dest], &rcpts, b"Subject: mixed\n\nhi\n");
    let diag = || format!("{}\n{}", run.show(), pf.show());
    ensure!(
        run.code == 75,
        diag(),
        "exit code: expected 75 (a recipient was deferred)"
    );
    let alice = run.result("alice@dest.test").unwrap_or_default();
    ensure!(
        alice.starts_with(&format!(
            "alice@dest.test: sent dsn=2.0.0 relay={relay} (250 2.0.0 Ok: queued as "
        )),
        diag(),
        "alice: {alice:?}"
    );
    let want = format!(
        "x@other.test: bounced dsn=5.7.1 relay={relay} (host 127.0.0.1[127.0.0.1] said: 554 5.7.1 <x@other.test>: Relay access denied (in reply to RCPT TO command))"
    );
    ensure!(
        run.result("x@other.test") == Some(want.as_str()),
        diag(),
        "expected {want:?}"
    );
    let want = format!(
        "later@dest.test: deferred dsn=4.2.1 relay={relay} (host 127.0.0.1[127.0.0.1] said: 450 4.2.1 <later@dest.test>: Recipient address rejected: Mailbox busy, try later (in reply to RCPT TO command))"
    );
    ensure!(
        run.result("later@dest.test") == Some(want.as_str()),
        diag(),
        "expected {want:?}"
    );

    // (c) The only recipient refused with 554 5.7.1: bounced, exit 77 (EX_NOPERM).
    let run = send(&["-d", &dest], &["x@other.test"], b"Subject: relay\n\nhi\n");
    let diag = || format!("{}\n{}", run.show(), pf.show());
    ensure!(
        run.code == 77,
        diag(),
        "exit code: expected 77 (EX_NOPERM for 5.7.1)"
    );
    let reason = "host 127.0.0.1[127.0.0.1] said: 554 5.7.1 <x@other.test>: Relay access denied (in reply to RCPT TO command)";
    let want = format!("x@other.test: bounced dsn=5.7.1 relay={relay} ({reason})");
    ensure!(
        run.result("x@other.test") == Some(want.as_str()),
        diag(),
        "expected {want:?}"
    );
    ensure!(
        run.log_lines("x@other.test")
            .iter()
            .any(|l| l.ends_with(&format!("dsn=5.7.1, status=bounced ({reason})"))),
        diag(),
        "no status=bounced log line with Postfix's text"
    );
    let errors = pf.errors();
    ensure!(
        errors.is_empty(),
        pf.show(),
        "the Postfix instance logged errors: {errors:#?}"
    );
}

/// The reference itself: the real Postfix smtp(8) client and `outpost send` deliver the
/// same message to the same smtp-sink; the stored data must be identical, and both must
/// match the model used by the other tests (postfix_wire). The ".long" case, where Outpost
/// differs (see the ignored test), is checked against Postfix only.
#[test]
fn postfix_smtp_client_is_the_reference() {
    require_root!("a throw-away Postfix instance");
    let bins = require!("smtp-sink", "postfix", "sendmail");
    let dir = TestDir::new("reference");
    let sink = SmtpSink::start(&bins[0], &dir, &[], Listen::Tcp);
    let pf = Postfix::start(
        &dir,
        &format!(
            "relayhost = [127.0.0.1]:{}\nlocal_header_rewrite_clients =\n",
            sink.port
        ),
        &[],
        false,
    );
    let m1 = tricky_message();
    let m2 = dot_long_message();
    for m in [&m1, &m2] {
        let mut child = std::process::Command::new(&bins[2])
            .arg("-C")
            .arg(&pf.conf)
            .args(["-i", "-f", "sender@x.test", "ref@one.test"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn Postfix sendmail");
        child
            .stdin
            .take()
            .expect("sendmail stdin")
            .write_all(m)
            .expect("write to sendmail");
        let st = child.wait().expect("wait for sendmail");
        ensure!(st.success(), pf.show(), "Postfix sendmail failed: {st}");
    }
    let dest = sink.dest_tcp();
    let run = send(&["-d", &dest], &["ref@one.test"], &m1);
    let diag = || format!("{}\n{}\n{}", run.show(), sink.show(), pf.show());
    ensure!(run.code == 0, diag(), "exit code: expected 0");
    let dumps = sink.dumps(3).unwrap_or_else(|e| panic!("{e}\n{}", diag()));
    let by_postfix: Vec<&Dump> = dumps
        .iter()
        .filter(|d| d.get("X-Helo-Args") == Some("postfix.test"))
        .collect();
    let by_outpost: Vec<&Dump> = dumps
        .iter()
        .filter(|d| d.get("X-Helo-Args") == Some(MYHOSTNAME))
        .collect();
    ensure!(
        by_postfix.len() == 2 && by_outpost.len() == 1,
        diag(),
        "expected two transactions from Postfix and one from Outpost"
    );
    // Postfix's copy starts with the Received: header its cleanup(8) added.
    let strip = |d: &Dump| strip_added_headers(&d.data, &["Received"]).1.to_vec();
    let p1 = by_postfix
        .iter()
        .map(|d| strip(d))
        .find(|d| d.windows(16).any(|w| w == b"outpost interop\n"))
        .unwrap_or_else(|| panic!("Postfix's copy of message 1 not found\n{}", diag()));
    let p2 = by_postfix
        .iter()
        .map(|d| strip(d))
        .find(|d| d.windows(18).any(|w| w == b"Subject: dot long\n"))
        .unwrap_or_else(|| panic!("Postfix's copy of message 2 not found\n{}", diag()));
    assert_data(
        &expected_stored(&m1),
        &p1,
        "model vs real Postfix (message 1)",
        &diag(),
    );
    assert_data(
        &expected_stored(&m2),
        &p2,
        "model vs real Postfix (dot + long line)",
        &diag(),
    );
    assert_data(&p1, &by_outpost[0].data, "Outpost vs real Postfix", &diag());
    let errors = pf.errors();
    ensure!(
        errors.is_empty(),
        diag(),
        "the Postfix instance logged errors: {errors:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// 4. dovecot LMTP on a UNIX socket

#[test]
fn dovecot_lmtp_unix_socket() {
    require_root!("dovecot");
    let bins = require!("dovecot", "/usr/lib/dovecot/lmtp");
    let dir = TestDir::new("dovecot");
    let dc = Dovecot::start(&bins[0], &dir, &["alice@lmtp.test", "bob@lmtp.test"]);
    let dest = format!("unix:{}", dc.socket.display());
    let relay = format!("{MYHOSTNAME}[{}]", dc.socket.display());
    let msg = tricky_message();
    let rcpts = ["alice@lmtp.test", "bob@lmtp.test"];
    let run = send(&["-d", &dest], &rcpts, &msg);
    let diag = || format!("{}\n{}", run.show(), dc.show());
    ensure!(run.code == 0, diag(), "exit code: expected 0");
    let sent: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("status=sent"))
        .collect();
    ensure!(
        sent.len() == 2,
        diag(),
        "expected two status=sent log lines, got {sent:#?}"
    );
    let want = expected_stored(&msg);
    for r in rcpts {
        let line = run.result(r).unwrap_or_default();
        let prefix = format!("{r}: sent dsn=2.0.0 relay={relay} (250 2.0.0 <{r}> ");
        ensure!(
            line.starts_with(&prefix) && line.ends_with(" Saved)"),
            diag(),
            "result for {r}: expected {prefix}ID Saved), got {line:?}"
        );
        ensure!(
            sent.iter()
                .any(|l| l.contains(&format!(" to=<{r}>, relay={relay}, "))
                    && l.contains(", dsn=2.0.0, status=sent (250 2.0.0 <")),
            diag(),
            "no status=sent log line for {r} with relay={relay}"
        );
        let msgs = dc.messages(r);
        ensure!(
            msgs.len() == 1,
            diag(),
            "expected one message in {r}'s maildir, found {}",
            msgs.len()
        );
        // With several recipients in one transaction dovecot adds Return-Path and a
        // Received: header without "for <...>", but no Delivered-To.
        let (added, rest) =
            strip_added_headers(&msgs[0].1, &["Return-Path", "Delivered-To", "Received"]);
        ensure!(
            added.len() == 2
                && added[0] == "Return-Path: <sender@x.test>\n"
                && added[1].starts_with("Received: from outpost.test\n")
                && added[1].contains(" with LMTP\n"),
            diag(),
            "headers added by dovecot: {added:#?}"
        );
        assert_data(&want, rest, &format!("dovecot maildir of {r}"), &diag());
    }

    let errors = dc.errors();
    ensure!(
        errors.is_empty(),
        diag(),
        "dovecot logged errors: {errors:#?}"
    );

    // An unknown user is refused at RCPT by dovecot; the other recipient is delivered.
    let run = send(
        &["-d", &dest],
        &["alice@lmtp.test", "carol@lmtp.test"],
        b"Subject: 2\n\nhi\n",
    );
    let diag = || format!("{}\n{}", run.show(), dc.show());
    ensure!(
        run.code == 67,
        diag(),
        "exit code: expected 67 (EX_NOUSER for 5.1.1)"
    );
    let want = format!(
        "carol@lmtp.test: bounced dsn=5.1.1 relay={relay} (host {relay} said: 550 5.1.1 <carol@lmtp.test> User doesn't exist: carol@lmtp.test (in reply to RCPT TO command))"
    );
    ensure!(
        run.result("carol@lmtp.test") == Some(want.as_str()),
        diag(),
        "expected {want:?}"
    );
    ensure!(
        run.result("alice@lmtp.test")
            .is_some_and(|l| l.starts_with("alice@lmtp.test: sent dsn=2.0.0 ")),
        diag(),
        "alice must still be delivered"
    );
    ensure!(
        dc.messages("alice@lmtp.test").len() == 2,
        diag(),
        "alice must have two messages now"
    );
}

// ---------------------------------------------------------------------------------------
// 5. swaks as a client of outpost sink

fn header_value<'a>(eml: &'a str, name: &str) -> Vec<&'a str> {
    let head = eml.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n")
        .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
        .collect()
}

#[test]
fn swaks_smtp_client_to_outpost_sink() {
    let bins = require!("swaks");
    let dir = TestDir::new("swaks");
    let sink = OutpostSink::start(&dir, &[]);
    let out = std::process::Command::new(&bins[0])
        .args([
            "--server", &sink.addr, "--from", "c@d.test", "--to", "a@b.test",
        ])
        .args(["--helo", "swaks.test", "--header", "Subject: swaks interop"])
        .args(["--body", "hello from swaks\n.leading dot\nend"])
        .output()
        .expect("run swaks");
    let diag = format!(
        "swaks exit {}\n--- swaks stdout ---\n{}--- swaks stderr ---\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        sink.show()
    );
    ensure!(
        out.status.success(),
        diag,
        "swaks failed against outpost sink"
    );
    let msgs = sink.messages(1);
    ensure!(
        msgs.len() == 1,
        diag,
        "expected one recorded message, got {}",
        msgs.len()
    );
    let eml = String::from_utf8_lossy(&msgs[0].1).into_owned();
    let diag = format!("{diag}\n--- recorded ---\n{}", eml.escape_debug());
    ensure!(
        header_value(&eml, "X-Sink-Helo") == ["swaks.test"],
        diag,
        "X-Sink-Helo"
    );
    ensure!(
        header_value(&eml, "X-Sink-Mail")
            .first()
            .is_some_and(|v| v.starts_with("<c@d.test>")),
        diag,
        "X-Sink-Mail"
    );
    ensure!(
        header_value(&eml, "X-Sink-Rcpt")
            .first()
            .is_some_and(|v| v.starts_with("<a@b.test>")),
        diag,
        "X-Sink-Rcpt"
    );
    ensure!(
        eml.contains("\r\nSubject: swaks interop\r\n")
            && eml.contains("\r\n\r\nhello from swaks\r\n.leading dot\r\nend\r\n"),
        diag,
        "message data not recorded as sent (CRLF, un-dot-stuffed)"
    );
}

#[test]
fn swaks_lmtp_pipelining_client_to_outpost_sink() {
    let bins = require!("swaks");
    let dir = TestDir::new("swaks-lmtp");
    let sink = OutpostSink::start(&dir, &["--lmtp"]);
    let out = std::process::Command::new(&bins[0])
        .args(["--server", &sink.addr, "--protocol", "LMTP", "--pipeline"])
        .args(["--from", "c@d.test", "--to", "a@b.test,e@f.test"])
        .args(["--helo", "swaks.test", "--body", "lmtp body"])
        .output()
        .expect("run swaks");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let diag = format!(
        "swaks exit {}\n--- swaks stdout ---\n{stdout}--- swaks stderr ---\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        sink.show()
    );
    ensure!(
        out.status.success(),
        diag,
        "swaks (LMTP, pipelining) failed against outpost sink --lmtp"
    );
    ensure!(
        stdout.contains("LHLO swaks.test"),
        diag,
        "swaks did not speak LMTP"
    );
    let msgs = sink.messages(1);
    ensure!(
        msgs.len() == 1,
        diag,
        "expected one recorded message, got {}",
        msgs.len()
    );
    let eml = String::from_utf8_lossy(&msgs[0].1).into_owned();
    let rcpts = header_value(&eml, "X-Sink-Rcpt");
    ensure!(
        rcpts.len() == 2
            && rcpts[0].starts_with("<a@b.test>")
            && rcpts[1].starts_with("<e@f.test>"),
        format!("{diag}\n{}", eml.escape_debug()),
        "X-Sink-Rcpt: {rcpts:?}"
    );
    ensure!(
        eml.contains("\r\nlmtp body\r\n"),
        format!("{diag}\n{}", eml.escape_debug()),
        "body"
    );
}
