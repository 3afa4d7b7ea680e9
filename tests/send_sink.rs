//! `outpost send` against `outpost sink`: every reply class at every phase, timeouts,
//! lost connections, malformed replies, pipelining and lock-step, LMTP, the message stream,
//! exit codes and log lines.

mod common;
use common::*;

const R1: &str = "r1@example.net";
const R2: &str = "r2@example.net";
const R3: &str = "r3@example.net";

fn sent(run: &Run, rcpt: &str) {
    assert!(run.result(rcpt).contains(": sent dsn=2."), "{run}");
}

#[test]
fn delivers_two_recipients_byte_exact() {
    let sink = Sink::start(&[]);
    let msg = b"Subject: t\n\n.leading dot\n..two dots\n.\nplain\r\nCRLF line\n\nlast";
    let run = send(&sink.dest(), &[], &[R1, R2], msg);
    assert_eq!(run.code, 0, "{run}");
    sent(&run, R1);
    sent(&run, R2);
    assert_eq!(
        sink.messages().len(),
        1,
        "one transaction for both recipients"
    );
    // The sink undoes dot-stuffing; what it holds must be the message with CRLF endings.
    assert_eq!(
        sink.body(0),
        b"Subject: t\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nplain\r\nCRLF line\r\n\r\nlast\r\n"
    );
    assert_eq!(sink.rcpts(0), ["<r1@example.net>", "<r2@example.net>"]);
    assert_eq!(sink.meta(0, "Helo"), ["client.test"]);
    // Postfix's delivery log line, field by field.
    let line = run.log_for(R1);
    assert_eq!(line.len(), 1, "{run}");
    let l = line[0];
    assert!(l.starts_with("postfix/smtp["), "{l}");
    let want = format!(
        ": TESTQID: to=<{R1}>, relay=127.0.0.1[127.0.0.1]:{}, delay=",
        sink.port()
    );
    assert!(l.contains(&want), "{l}");
    assert!(
        l.contains(", dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as "),
        "{l}"
    );
    let delays = l
        .split("delays=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("");
    assert_eq!(delays.split('/').count(), 4, "{l}");
}

#[test]
fn mail_from_parameters_follow_capabilities() {
    let sink = Sink::start(&[]);
    let msg =
        "Subject: 8bit\nMIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\n\nGr\u{fc}\u{df}e\n"
            .as_bytes();
    let run = send(
        &sink.dest(),
        &["-N", "success,delay", "-R", "hdrs", "-V", "env+id=1"],
        &[R1],
        msg,
    );
    assert_eq!(run.code, 0, "{run}");
    // LF-terminated lines: the size Postfix reports is that of the queue-file content.
    let size = msg.len();
    assert_eq!(
        sink.meta(0, "Mail"),
        [format!(
            "<sender@example.org> SIZE={size} BODY=8BITMIME ENVID=env+2Bid+3D1 RET=HDRS"
        )]
    );
    assert_eq!(
        sink.meta(0, "Rcpt"),
        ["<r1@example.net> ORCPT=rfc822;r1@example.net NOTIFY=SUCCESS,DELAY"]
    );

    // Without DSN, 8BITMIME and SIZE, none of their parameters may be sent.
    let plain = Sink::start(&["--caps", "PIPELINING"]);
    let run = send(
        &plain.dest(),
        &["-N", "failure", "-R", "full", "-V", "x"],
        &[R1],
        msg,
    );
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(plain.meta(0, "Mail"), ["<sender@example.org>"]);
    assert_eq!(plain.meta(0, "Rcpt"), ["<r1@example.net>"]);
}

#[test]
fn envelope_quoting() {
    let sink = Sink::start(&[]);
    let run = send(&sink.dest(), &[], &["odd local..part@example.net"], MSG);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(sink.rcpts(0), ["<\"odd local..part\"@example.net>"]);
    let sink2 = Sink::start(&[]);
    let run = send(
        &sink2.dest(),
        &["-o", "smtp_quote_rfc821_envelope=no"],
        &["a..b@example.net"],
        MSG,
    );
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(sink2.rcpts(0), ["<a..b@example.net>"]);
}

#[test]
fn pipelining_batches_commands_until_data() {
    let sink = Sink::start(&[]);
    let run = send(&sink.dest(), &["-v"], &[R1, R2], MSG);
    assert_eq!(run.code, 0, "{run}");
    let trace: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("> ") || l.starts_with("< "))
        .map(|l| {
            l.split_once(": ")
                .map(|(d, t)| if d.starts_with('>') { t } else { "<" })
                .unwrap_or("")
        })
        .collect();
    // Greeting, EHLO and its reply, then MAIL RCPT RCPT DATA before any reply, then the
    // four replies, then the body's end with QUIT pipelined behind it.
    let pos = trace
        .iter()
        .position(|t| t.starts_with("MAIL FROM"))
        .expect("MAIL");
    assert!(trace[pos + 1].starts_with("RCPT TO:<r1"), "{trace:?}");
    assert!(trace[pos + 2].starts_with("RCPT TO:<r2"), "{trace:?}");
    assert_eq!(trace[pos + 3], "DATA", "{trace:?}");
    assert_eq!(&trace[pos + 4..pos + 8], ["<", "<", "<", "<"], "{trace:?}");
    assert_eq!(&trace[pos + 8..pos + 10], [".", "QUIT"], "{trace:?}");
    assert_eq!(
        trace.last(),
        Some(&"<"),
        "QUIT reply is not read by default: {trace:?}"
    );
}

#[test]
fn lock_step_without_pipelining() {
    let sink = Sink::start(&["--caps", "SIZE 1000000,8BITMIME"]);
    let run = send(
        &sink.dest(),
        &["-v", "-o", "smtp_skip_quit_response=no"],
        &[R1, R2],
        MSG,
    );
    assert_eq!(run.code, 0, "{run}");
    let dirs: String = run
        .stderr
        .lines()
        .filter_map(|l| l.chars().next().filter(|c| *c == '>' || *c == '<'))
        .collect();
    // greeting, EHLO+7 lines... then strictly alternating one command, one reply.
    let after_ehlo = dirs.rfind("><").map(|_| ()).is_some();
    assert!(after_ehlo);
    let tail = &dirs[dirs.find("<><").unwrap_or(0)..];
    assert!(tail.ends_with("<><><><><><><"), "{dirs}");
    assert!(run.stderr.contains("> 127.0.0.1[127.0.0.1]:"), "{run}");
    let d = sink.dialogue();
    assert!(d.contains("C: QUIT"), "{d}");
}

#[test]
fn rcpt_replies_give_one_outcome_each() {
    let sink = Sink::start(&[
        "--reply",
        "rcpt:r1@example.net=550 5.1.1 no such user",
        "--reply",
        "rcpt:r2@example.net=450 4.2.0 mailbox busy",
    ]);
    let run = send(&sink.dest(), &[], &[R1, R2, R3], MSG);
    assert_eq!(run.code, 75, "deferred wins over bounced: {run}");
    assert!(run.result(R1).contains("bounced dsn=5.1.1"), "{run}");
    assert!(run.result(R2).contains("deferred dsn=4.2.0"), "{run}");
    sent(&run, R3);
    for r in [R1, R2, R3] {
        assert_eq!(
            run.log_for(r).len(),
            1,
            "exactly one log line for {r}: {run}"
        );
        assert_eq!(run.stdout.matches(&format!("{r}: ")).count(), 1, "{run}");
    }
    assert!(
        run.log_for(R1)[0].contains(
            "status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 no such user (in reply to RCPT TO command))"
        ),
        "{run}"
    );
    assert_eq!(sink.rcpts(0), ["<r3@example.net>"]);
}

#[test]
fn all_rcpts_rejected_sends_rset_not_data() {
    let sink = Sink::start(&[
        "--caps",
        "SIZE,8BITMIME",
        "--reply",
        "rcpt=550 5.1.1 unknown",
    ]);
    let run = send(&sink.dest(), &[], &[R1, R2], MSG);
    assert_eq!(run.code, 67, "EX_NOUSER for 5.1.1: {run}");
    let d = sink.dialogue();
    assert!(d.contains("C: RSET"), "{d}");
    assert!(!d.contains("C: DATA"), "{d}");
    assert!(sink.messages().is_empty());
}

#[test]
fn mail_rejected_bounces_everyone() {
    let sink = Sink::start(&["--reply", "mail=553 5.7.1 sender rejected"]);
    let run = send(&sink.dest(), &[], &[R1, R2], MSG);
    assert_eq!(run.code, 77, "EX_NOPERM for 5.7.x: {run}");
    for r in [R1, R2] {
        assert!(run.result(r).contains("bounced dsn=5.7.1"), "{run}");
        assert!(
            run.result(r).contains("(in reply to MAIL FROM command)"),
            "{run}"
        );
    }
    assert!(sink.dialogue().contains("C: RSET"));
}

#[test]
fn mail_4xx_defers() {
    let sink = Sink::start(&["--reply", "mail=451 4.3.0 try later"]);
    let run = send(&sink.dest(), &[], &[R1], MSG);
    assert_eq!(run.code, 75, "{run}");
    assert!(run.result(R1).contains("deferred dsn=4.3.0"), "{run}");
}

#[test]
fn data_rejected() {
    let sink = Sink::start(&["--reply", "data=554 5.5.1 no data for you"]);
    let run = send(&sink.dest(), &[], &[R1, R2], MSG);
    assert_eq!(run.code, 76, "{run}");
    assert!(
        run.result(R1).contains("(in reply to DATA command)"),
        "{run}"
    );
    assert!(sink.dialogue().contains("C: RSET"));
}

#[test]
fn data_2xx_is_a_protocol_error() {
    let sink = Sink::start(&["--reply", "data=250 2.0.0 ok?"]);
    let run = send(&sink.dest(), &[], &[R1], MSG);
    assert!(run.result(R1).contains("bounced dsn=5.5.0"), "{run}");
    assert!(run.log_for(R1)[0].contains("(Protocol error: host 127.0.0.1[127.0.0.1] said: 250 2.0.0 ok? (in reply to DATA command))"), "{run}");
}

#[test]
fn end_of_data_replies() {
    let soft = Sink::start(&["--reply", "dot=452 4.3.1 insufficient storage"]);
    let run = send(&soft.dest(), &[], &[R1, R2], MSG);
    assert_eq!(run.code, 75, "{run}");
    assert!(run.result(R2).contains("deferred dsn=4.3.1"), "{run}");
    assert!(
        run.result(R2).contains("(in reply to end of DATA command)"),
        "{run}"
    );
    let hard = Sink::start(&["--reply", "dot=552 message too big"]);
    let run = send(&hard.dest(), &[], &[R1], MSG);
    assert_eq!(run.code, 69, "{run}");
    // No enhanced code: derived from the reply class.
    assert!(run.result(R1).contains("bounced dsn=5.0.0"), "{run}");
}

#[test]
fn greeting_5xx_defers_by_default_and_bounces_when_told() {
    let sink = Sink::start(&["--reply", "greeting=554 5.7.1 go away"]);
    let run = send(&sink.dest(), &[], &[R1], MSG);
    assert_eq!(run.code, 75, "{run}");
    assert!(run.result(R1).contains("deferred dsn=4.7.1"), "{run}");
    assert!(
        run.result(R1)
            .contains("host 127.0.0.1[127.0.0.1] refused to talk to me: 554 5.7.1 go away"),
        "{run}"
    );
    let run = send(
        &sink.dest(),
        &["-o", "smtp_skip_5xx_greeting=no"],
        &[R1],
        MSG,
    );
    assert!(run.result(R1).contains("bounced dsn=5.7.1"), "{run}");
    let busy = Sink::start(&["--reply", "greeting=421 4.3.2 busy"]);
    let run = send(&busy.dest(), &[], &[R1], MSG);
    assert!(run.result(R1).contains("deferred dsn=4.3.2"), "{run}");
}

#[test]
fn ehlo_rejected_falls_back_to_helo() {
    let sink = Sink::start(&["--no-esmtp"]);
    let run = send(
        &sink.dest(),
        &[],
        &[R1],
        "Subject: x\n\n8bit \u{e9}\n".as_bytes(),
    );
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(sink.meta(0, "Proto"), ["SMTP"]);
    // No ESMTP: no SIZE=, no BODY=.
    assert_eq!(sink.meta(0, "Mail"), ["<sender@example.org>"]);
    let d = sink.dialogue();
    assert!(
        d.contains("C: EHLO client.test") && d.contains("C: HELO client.test"),
        "{d}"
    );
}

#[test]
fn helo_rejected_bounces() {
    let sink = Sink::start(&["--no-esmtp", "--reply", "helo=550 5.7.0 no"]);
    let run = send(&sink.dest(), &[], &[R1], MSG);
    assert!(run.result(R1).contains("bounced dsn=5.7.0"), "{run}");
    assert!(run.result(R1).contains("refused to talk to me"), "{run}");
}

#[test]
fn ehlo_421_ends_session() {
    let sink = Sink::start(&["--reply", "ehlo=421 4.7.0 closing"]);
    let run = send(&sink.dest(), &[], &[R1], MSG);
    assert!(run.result(R1).contains("deferred dsn=4.7.0"), "{run}");
    assert!(!sink.dialogue().contains("C: HELO"));
}

#[test]
fn never_send_ehlo_and_helo_name() {
    let sink = Sink::start(&[]);
    let run = send(
        &sink.dest(),
        &[
            "-o",
            "smtp_never_send_ehlo=yes",
            "-o",
            "smtp_helo_name=helo.example",
        ],
        &[R1],
        MSG,
    );
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(sink.meta(0, "Helo"), ["helo.example"]);
    assert!(!sink.dialogue().contains("C: EHLO"));
}

#[test]
fn discarded_ehlo_keywords_are_not_used() {
    let sink = Sink::start(&[]);
    let run = send(
        &sink.dest(),
        &["-o", "smtp_discard_ehlo_keywords=size, pipelining,smtputf8"],
        &[R1],
        MSG,
    );
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(sink.meta(0, "Mail"), ["<sender@example.org>"]);
    assert!(
        run.stderr
            .contains("discarding EHLO keywords: PIPELINING SIZE EHLO_MASK_SMTPUTF8"),
        "{run}"
    );
}

#[test]
fn size_limit_fails_before_mail() {
    let sink = Sink::start(&["--caps", "PIPELINING,SIZE 100"]);
    let body = vec![b'x'; 500];
    let mut msg = b"Subject: big\n\n".to_vec();
    msg.extend_from_slice(&body);
    msg.push(b'\n');
    let run = send(&sink.dest(), &[], &[R1], &msg);
    assert_eq!(run.code, 69, "{run}");
    assert!(run.result(R1).contains(&format!(
        "bounced dsn=5.3.4 relay=127.0.0.1[127.0.0.1]:{} (message size {} exceeds size limit 100 of server 127.0.0.1[127.0.0.1])",
        sink.port(),
        msg.len()
    )), "{run}");
    assert!(!sink.dialogue().contains("C: MAIL"));
}

#[test]
fn long_lines_are_folded_like_postfix() {
    let sink = Sink::start(&[]);
    let mut msg = b"Subject: long\n\n".to_vec();
    msg.extend(std::iter::repeat_n(b'a', 2500));
    msg.extend_from_slice(b"\n");
    msg.extend(std::iter::repeat_n(b'b', 998));
    msg.extend_from_slice(b"\n");
    let run = send(&sink.dest(), &[], &[R1], &msg);
    assert_eq!(run.code, 0, "{run}");
    let mut want = b"Subject: long\r\n\r\n".to_vec();
    want.extend(std::iter::repeat_n(b'a', 998));
    want.extend_from_slice(b"\r\n ");
    want.extend(std::iter::repeat_n(b'a', 997));
    want.extend_from_slice(b"\r\n ");
    want.extend(std::iter::repeat_n(b'a', 2500 - 998 - 997));
    want.extend_from_slice(b"\r\n");
    want.extend(std::iter::repeat_n(b'b', 998));
    want.extend_from_slice(b"\r\n");
    assert_eq!(sink.body(0), want);
    assert!(
        run.stderr
            .contains("TESTQID: breaking line > 998 bytes with <CR><LF>SPACE"),
        "{run}"
    );
}

#[test]
fn smuggling_shapes_cannot_end_the_data_early() {
    let sink = Sink::start(&[]);
    // Bare LF.LF, CR.CR and LF.CRLF shapes inside a message.
    let msg = b"Subject: s\n\nbefore\n.\nMAIL FROM:<evil@x>\r.\rafter\n.\r\nend\n";
    let run = send(&sink.dest(), &[], &[R1], msg);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(sink.messages().len(), 1, "exactly one transaction");
    // A dot after a bare CR is stuffed too (a deliberate difference from Postfix, which
    // passes bare CRs through): a receiver that takes CR as a line end sees "..", not ".".
    assert_eq!(
        sink.body(0),
        b"Subject: s\r\n\r\nbefore\r\n.\r\nMAIL FROM:<evil@x>\r..\rafter\r\n.\r\nend\r\n"
    );
    assert_eq!(
        sink.dialogue()
            .matches("C: MAIL FROM:<sender@example.org>")
            .count(),
        1
    );
}

#[test]
fn timeouts_per_phase() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "greeting",
            "smtp_helo_timeout",
            "receiving the initial server greeting",
        ),
        ("ehlo", "smtp_helo_timeout", "performing the EHLO handshake"),
        ("mail", "smtp_mail_timeout", "sending MAIL FROM"),
        ("rcpt", "smtp_rcpt_timeout", "sending RCPT TO"),
        ("data", "smtp_data_init_timeout", "sending DATA command"),
        (
            "dot",
            "smtp_data_done_timeout",
            "sending end of data -- message may be sent more than once",
        ),
    ];
    let handles: Vec<_> = cases
        .iter()
        .map(|&(phase, param, doing)| {
            std::thread::spawn(move || {
                // Lock-step so that each command's own timeout applies to its reply.
                let sink = Sink::start(&["--caps", "8BITMIME", "--delay", &format!("{phase}=3s")]);
                let o = format!("{param}=1s");
                let run = send(&sink.dest(), &["-o", &o], &[R1], MSG);
                assert_eq!(run.code, 75, "{phase}: {run}");
                let want = format!(
                    "deferred dsn=4.4.2 relay=127.0.0.1[127.0.0.1]:{} (conversation with 127.0.0.1[127.0.0.1] timed out while {doing})",
                    sink.port()
                );
                assert!(run.result(R1).contains(&want), "{phase}: {run}");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("timeout case");
    }
}

#[test]
fn lost_connection_per_phase() {
    let cases: &[(&str, &str)] = &[
        ("greeting", "receiving the initial server greeting"),
        ("ehlo", "performing the EHLO handshake"),
        ("mail", "sending MAIL FROM"),
        ("rcpt", "sending RCPT TO"),
        ("data", "sending DATA command"),
        (
            "dot",
            "sending end of data -- message may be sent more than once",
        ),
    ];
    for &(phase, doing) in cases {
        let sink = Sink::start(&[
            "--caps",
            "8BITMIME",
            "--reply",
            &format!("{phase}=disconnect"),
        ]);
        let run = send(&sink.dest(), &[], &[R1, R2], MSG);
        assert_eq!(run.code, 75, "{phase}: {run}");
        for r in [R1, R2] {
            assert!(
                run.result(r).contains(&format!(
                    "(lost connection with 127.0.0.1[127.0.0.1] while {doing})"
                )),
                "{phase}: {run}"
            );
            assert_eq!(run.log_for(r).len(), 1, "{phase}: {run}");
        }
    }
}

#[test]
fn malformed_replies() {
    // Garbage is skipped while waiting for a real reply; none coming means a timeout.
    let g = Sink::start(&["--caps", "8BITMIME", "--reply", "mail=garbage"]);
    let run = send(&g.dest(), &["-o", "smtp_mail_timeout=1s"], &[R1], MSG);
    assert!(run.result(R1).contains("deferred dsn=4.4.2"), "{run}");
    assert!(
        run.result(R1).contains("timed out while sending MAIL FROM"),
        "{run}"
    );

    // With pipelining, garbage shifts replies exactly as it does for Postfix, and it warns.
    let gp = Sink::start(&["--reply", "mail=garbage"]);
    let run = send(&gp.dest(), &["-o", "smtp_data_init_timeout=1s"], &[R1], MSG);
    assert!(
        run.stderr
            .contains("warning: TESTQID: non-ESMTP response from 127.0.0.1[127.0.0.1]:"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("to prevent loss of mail, turn off command pipelining for 127.0.0.1"),
        "{run}"
    );
    assert!(
        run.result(R1).contains("said: this is not smtp 503 5.5.1"),
        "{run}"
    );

    let b = Sink::start(&["--caps", "8BITMIME", "--reply", "rcpt=badcode"]);
    let run = send(&b.dest(), &["-o", "smtp_rcpt_timeout=1s"], &[R1], MSG);
    assert!(run.result(R1).contains("deferred"), "{run}");

    // An overlong reply line is truncated with a warning, not fatal.
    let l = Sink::start(&["--reply", "mail=longline"]);
    let run = send(&l.dest(), &[], &[R1], MSG);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stderr.contains("response longer than 2048"), "{run}");

    // LF-only replies are fine.
    let lf = Sink::start(&["--reply", "ehlo=bare-lf"]);
    let run = send(&lf.dest(), &[], &[R1], MSG);
    assert_eq!(run.code, 0, "{run}");

    // Multi-line reply text is joined with spaces in the reason.
    let m = Sink::start(&[
        "--reply",
        "rcpt=550 5.1.1 first line\\n550 5.1.1 second line",
    ]);
    let run = send(&m.dest(), &[], &[R1], MSG);
    assert!(
        run.result(R1).contains(
            "said: 550-5.1.1 first line 550 5.1.1 second line (in reply to RCPT TO command)"
        ),
        "{run}"
    );
}

#[test]
fn connection_refused() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dest = format!("[127.0.0.1]:{port}");
    let run = send(&dest, &[], &[R1], MSG);
    assert_eq!(run.code, 75, "{run}");
    let want = format!(
        "{R1}: deferred dsn=4.4.1 relay=none (connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused)"
    );
    assert_eq!(run.result(R1), want, "{run}");
    assert!(run.log_for(R1)[0].contains(", relay=none, "), "{run}");
}

#[test]
fn lmtp_per_recipient_replies_over_unix_socket() {
    let sink = Sink::start(&[
        "--lmtp",
        "--reply",
        "dot:r2@example.net=452 4.2.2 mailbox full",
        "--reply",
        "dot:r3@example.net=550 5.1.1 gone",
        "LISTEN=unix:{dir}/lmtp.sock",
    ]);
    let run = send(&sink.dest(), &[], &[R1, R2, R3], MSG);
    assert_eq!(run.code, 75, "{run}");
    sent(&run, R1);
    assert!(run.result(R2).contains("deferred dsn=4.2.2"), "{run}");
    assert!(run.result(R3).contains("bounced dsn=5.1.1"), "{run}");
    let path = sink.addr.trim_start_matches("unix:").to_string();
    let l = run.log_for(R1)[0];
    assert!(l.starts_with("postfix/lmtp["), "{l}");
    assert!(l.contains(&format!("relay=client.test[{path}], ")), "{l}");
    assert!(sink.dialogue().contains("C: LHLO client.test"));
    assert_eq!(sink.rcpts(0), ["<r1@example.net>"]);
}

#[test]
fn lmtp_over_tcp_with_inet_destination() {
    let sink = Sink::start(&["--lmtp"]);
    let dest = format!("inet:127.0.0.1:{}", sink.port());
    let run = send(&dest, &[], &[R1, R2], MSG);
    assert_eq!(run.code, 0, "{run}");
    sent(&run, R1);
    sent(&run, R2);
    assert_eq!(sink.meta(0, "Proto"), ["LMTP"]);
}

#[test]
fn lmtp_lost_connection_after_data() {
    let sink = Sink::start(&["--lmtp", "--reply", "dot#1=disconnect"]);
    let run = send(
        &format!("inet:127.0.0.1:{}", sink.port()),
        &[],
        &[R1, R2],
        MSG,
    );
    assert_eq!(run.code, 75, "{run}");
    for r in [R1, R2] {
        assert_eq!(run.log_for(r).len(), 1, "{run}");
        assert!(run.result(r).contains("deferred dsn=4.4.2"), "{run}");
    }
}

#[test]
fn recipients_from_headers_and_bcc_removed() {
    let sink = Sink::start(&[]);
    let msg = b"From: a@example.org\nTo: \"X, Y\" <r1@example.net>\nCc: r2@example.net\nBcc: r3@example.net\nSubject: t\n\nbody\n";
    let mut args = vec!["send", "-t", "-d"];
    let dest = sink.dest();
    args.push(&dest);
    args.extend(["-f", "s@example.org", "-o", "myhostname=client.test"]);
    let run = outpost(&args, msg);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        sink.rcpts(0),
        ["<r1@example.net>", "<r2@example.net>", "<r3@example.net>"]
    );
    let body = String::from_utf8_lossy(&sink.body(0)).to_string();
    assert!(!body.contains("Bcc"), "{body}");
    assert!(body.contains("Cc: r2@example.net"), "{body}");
}

#[test]
fn config_errors_name_file_line_and_parameter() {
    let run = outpost(
        &[
            "send",
            "-d",
            "[127.0.0.1]:1",
            "-o",
            "smtp_helo_timeout=10x",
            "a@b",
        ],
        MSG,
    );
    assert_eq!(run.code, 78, "{run}");
    assert!(run.stderr.contains("smtp_helo_timeout"), "{run}");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("main.cf"),
        "# test\nmyhostname = ok.test\n\nsmtp_line_length_limit = lots\n",
    )
    .expect("write");
    let d = dir.path().display().to_string();
    let run = outpost(&["send", "-c", &d, "-d", "[127.0.0.1]:1", "a@b"], MSG);
    assert_eq!(run.code, 78, "{run}");
    assert!(
        run.stderr.contains(&format!(
            "{d}/main.cf, line 4: parameter smtp_line_length_limit"
        )),
        "{run}"
    );
    let run = outpost(&["send", "-c", "/nonexistent/dir", "a@b"], MSG);
    assert_eq!(run.code, 78, "{run}");
}

#[test]
fn usage_errors() {
    assert_eq!(outpost(&["send"], MSG).code, 64);
    assert_eq!(outpost(&["send", "-N", "bogus", "a@b"], MSG).code, 64);
    assert_eq!(outpost(&["send", "--no-such-option"], MSG).code, 64);
    assert_eq!(outpost(&["bogus"], MSG).code, 64);
    let h = outpost(&["send", "--help"], b"");
    assert_eq!(h.code, 0);
    assert!(h.stdout.contains("-d, --destination"), "{h}");
    let run = outpost(&["send", "-d", "[bad", "a@b"], MSG);
    assert_eq!(run.code, 75, "a bad destination defers: {run}");
    assert!(run.result("a@b").contains("dsn=4.3.5"), "{run}");
}

#[test]
fn config_dir_is_read() {
    let sink = Sink::start(&[]);
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("main.cf"),
        format!(
            "myhostname = cfg.test\nsmtp_helo_name = helo.$myhostname\nrelayhost = {}\n",
            sink.dest()
        ),
    )
    .expect("write");
    let d = dir.path().display().to_string();
    let run = outpost(&["send", "-c", &d, "-f", "s@x.test", R1], MSG);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(sink.meta(0, "Helo"), ["helo.cfg.test"]);
}

#[test]
fn pix_greeting_is_logged_and_uses_helo() {
    let sink = Sink::start(&["--reply", "greeting=220 *******"]);
    let run = send(&sink.dest(), &[], &[R1], MSG);
    assert_eq!(run.code, 0, "{run}");
    // A fresh message: only disable_esmtp (delay_dotcrlf is for mail older than 500s).
    assert!(
        run.stderr.contains(&format!(
            "TESTQID: enabling PIX workarounds: disable_esmtp for 127.0.0.1[127.0.0.1]:{}",
            sink.port()
        )),
        "{run}"
    );
    assert_eq!(sink.meta(0, "Proto"), ["SMTP"]);
}
