//! `outpost send` against `outpost sink` with the table-driven smtp(8) features:
//! smtp_generic_maps (envelope and headers) and the restricted header/body checks,
//! asserting what the server received and what was logged.

mod common;
use common::*;
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write table");
    p.display().to_string()
}

fn body_text(sink: &Sink) -> String {
    String::from_utf8_lossy(&sink.body(0)).into_owned()
}

#[test]
fn generic_maps_rewrite_envelope_and_address_headers() {
    let sink = Sink::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let generic = write(
        dir.path(),
        "generic",
        "sender@example.org outside@public.example\n\
         r1@example.net rr@public.example\n\
         @example.com @public.example\n\
         a@example.org alice@public.example\n",
    );
    let opt = format!("smtp_generic_maps=texthash:{generic}");
    let msg = b"From: Alice Example <a@example.org>\n\
To: r1@example.net, other@elsewhere.test\n\
Cc: bob@example.com (Bob)\n\
Subject: mail for a@example.org\n\
X-Note: a@example.org\n\
\n\
a@example.org in the body\n";
    let run = send(
        &sink.dest(),
        &["-o", &opt],
        &["r1@example.net", "r2@example.com"],
        msg,
    );
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        sink.meta(0, "Mail")[0].split(' ').next(),
        Some("<outside@public.example>")
    );
    assert_eq!(
        sink.rcpts(0),
        ["<rr@public.example>", "<r2@public.example>"]
    );
    // The delivery log keeps the original recipient addresses.
    assert!(run.result("r1@example.net").contains("sent"), "{run}");
    assert_eq!(
        body_text(&sink),
        "From: Alice Example <alice@public.example>\r\n\
To: rr@public.example, other@elsewhere.test\r\n\
Cc: bob@public.example (Bob)\r\n\
Subject: mail for a@example.org\r\n\
X-Note: a@example.org\r\n\
\r\n\
a@example.org in the body\r\n"
    );
}

#[test]
fn generic_maps_fold_long_rewritten_lists_and_keep_untouched_headers() {
    let sink = Sink::start(&[]);
    let msg = format!(
        "To: {a}@example.net,\n {b}@example.net, x@example.com\nCc: {a}@example.net,\n\t{b}@example.net\n\nbody\n",
        a = "a".repeat(30),
        b = "b".repeat(30)
    );
    let run = send(
        &sink.dest(),
        &[
            "-o",
            "smtp_generic_maps=inline:{ x@example.com=y@example.com }",
        ],
        &["r@example.net"],
        msg.as_bytes(),
    );
    assert_eq!(run.code, 0, "{run}");
    let want = format!(
        "To: {a}@example.net,\r\n\t{b}@example.net, y@example.com\r\nCc: {a}@example.net,\r\n\t{b}@example.net\r\n\r\nbody\r\n",
        a = "a".repeat(30),
        b = "b".repeat(30)
    );
    assert_eq!(body_text(&sink), want);
}

#[test]
fn generic_maps_table_trouble_defers() {
    let sink = Sink::start(&[]);
    let run = send(
        &sink.dest(),
        &["-o", "smtp_generic_maps=hash:/nonexistent/generic"],
        &["r@example.net"],
        MSG,
    );
    let r = run.result("r@example.net");
    assert!(r.contains("deferred") && r.contains("4.3.0"), "{run}");
    assert!(
        run.stderr
            .contains("local data error while talking to 127.0.0.1[127.0.0.1]"),
        "{run}"
    );
    assert!(sink.messages().is_empty());
}

#[test]
fn header_and_body_checks_actions_and_log_lines() {
    let sink = Sink::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let hc = write(
        dir.path(),
        "header_checks",
        "/^Subject: secret/ REPLACE Subject: public\n\
         /^X-Drop:/ IGNORE\n\
         /^X-Strip:/ STRIP stripped it\n\
         /^X-Warn:/ WARN looked at it\n\
         /^X-Info:/ INFO\n\
         /^From:/ PREPEND X-Pre: yes\n\
         /^X-Reject:/ REJECT no way\n\
         /^X-Bad:/ REPLACE no colon here\n",
    );
    let bc = write(
        dir.path(),
        "body_checks",
        "/^password/ REPLACE [redacted]\n\
         /^dropme/ IGNORE\n\
         /^note/ PREPEND before note\n",
    );
    let msg = b"From: a@example.org\n\
Subject: secret plans\n\
X-Drop: gone\n\
X-Strip: gone too\n\
X-Warn: stays\n\
X-Info: stays too\n\
X-Reject: stays as well\n\
X-Bad: unchanged\n\
\n\
password=hunter2\n\
dropme\n\
note this\n\
end\n";
    let o1 = format!("smtp_header_checks=regexp:{hc}");
    let o2 = format!("smtp_body_checks=regexp:{bc}");
    let run = send(
        &sink.dest(),
        &["-o", &o1, "-o", &o2],
        &["r@example.net"],
        msg,
    );
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        body_text(&sink),
        "X-Pre: yes\r\n\
From: a@example.org\r\n\
Subject: public\r\n\
X-Warn: stays\r\n\
X-Info: stays too\r\n\
X-Reject: stays as well\r\n\
X-Bad: unchanged\r\n\
\r\n\
[redacted]\r\n\
before note\r\n\
note this\r\n\
end\r\n"
    );
    let log = &run.stderr;
    for want in [
        ": TESTQID: prepend: header From: a@example.org: X-Pre: yes",
        ": TESTQID: replace: header Subject: secret plans: Subject: public",
        ": TESTQID: strip: header X-Strip: gone too: stripped it",
        ": TESTQID: warning: header X-Warn: stays: looked at it",
        ": TESTQID: info: header X-Info: stays too\n",
        ": warning: unsupported command in smtp_header_checks map: REJECT no way",
        ": warning: bad REPLACE header text \"no colon here\" in smtp_header_checks map -- need \"headername: headervalue\"",
        ": TESTQID: replace: body password=hunter2: [redacted]",
        ": TESTQID: prepend: body note this: before note",
    ] {
        assert!(log.contains(want), "missing {want:?} in\n{run}");
    }
    // IGNORE is not logged (as in cleanup).
    assert!(!log.contains("X-Drop") && !log.contains("dropme"), "{run}");
}

#[test]
fn mime_and_nested_header_checks_see_their_own_sections() {
    let sink = Sink::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let primary = write(dir.path(), "h", "/^X-Tag:/ REPLACE X-Tag: primary\n");
    let mime = write(
        dir.path(),
        "m",
        "/^Content-Type: text/ WARN mime\n/^X-Tag:/ REPLACE X-Tag: part\n",
    );
    let nested = write(dir.path(), "n", "/^X-Tag:/ REPLACE X-Tag: nested\n");
    let msg = b"X-Tag: 1\n\
MIME-Version: 1.0\n\
Content-Type: multipart/mixed;\n\tboundary=\"BB\"\n\
\n\
preamble\n\
--BB\n\
Content-Type: text/plain\n\
X-Tag: 2\n\
\n\
X-Tag: body text is not a header\n\
--BB\n\
Content-Type: message/rfc822\n\
\n\
X-Tag: 3\n\
Subject: inner\n\
\n\
inner body\n\
--BB--\n\
epilogue\n";
    let o1 = format!("smtp_header_checks=regexp:{primary}");
    let o2 = format!("smtp_mime_header_checks=regexp:{mime}");
    let o3 = format!("smtp_nested_header_checks=regexp:{nested}");
    let run = send(
        &sink.dest(),
        &["-o", &o1, "-o", &o2, "-o", &o3],
        &["r@example.net"],
        msg,
    );
    assert_eq!(run.code, 0, "{run}");
    let got = body_text(&sink);
    let want = String::from_utf8_lossy(msg)
        .replace('\n', "\r\n")
        .replacen("X-Tag: 1", "X-Tag: primary", 1)
        .replacen("X-Tag: 2", "X-Tag: part", 1)
        .replacen("X-Tag: 3", "X-Tag: nested", 1);
    assert_eq!(got, want);
    // Content-Type of the primary header is a MIME header too.
    assert!(
        run.stderr
            .contains(": TESTQID: warning: header Content-Type: text/plain: mime"),
        "{run}"
    );
    assert!(
        !run.stderr.contains("header Content-Type: multipart"),
        "{run}"
    );
}

#[test]
fn header_section_without_empty_line_gets_one() {
    let sink = Sink::start(&[]);
    let run = send(
        &sink.dest(),
        &["-o", "smtp_header_checks=inline:{ /^X-Never:/=IGNORE }"],
        &["r@example.net"],
        b"Subject: x\nnot a header line\n",
    );
    // inline: is not a regexp table, so the key never matches; what matters is the pass.
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(body_text(&sink), "Subject: x\r\n\r\nnot a header line\r\n");
}

#[test]
fn checks_table_trouble_defers_with_local_data_error() {
    let sink = Sink::start(&[]);
    let run = send(
        &sink.dest(),
        &["-o", "smtp_body_checks=hash:/nonexistent/body_checks"],
        &["r@example.net"],
        MSG,
    );
    let r = run.result("r@example.net");
    assert!(r.contains("deferred") && r.contains("4.3.0"), "{run}");
    assert!(
        run.stderr
            .contains("TESTQID: smtp body checks lookup error"),
        "{run}"
    );
    assert!(sink.messages().is_empty(), "no message may be delivered");
}

#[test]
fn discard_ehlo_keyword_address_maps_by_server_address() {
    let sink = Sink::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let table = write(dir.path(), "ehlo", "127.0.0.1 size, dsn\n");
    let opt = format!("smtp_discard_ehlo_keyword_address_maps=texthash:{table}");
    // The table names this server: its words replace smtp_discard_ehlo_keywords.
    let run = send(
        &sink.dest(),
        &[
            "-o",
            "smtp_discard_ehlo_keywords=pipelining",
            "-o",
            &opt,
            "-N",
            "success",
        ],
        &["r@example.net"],
        MSG,
    );
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stderr
            .contains(": discarding EHLO keywords: SIZE DSN\n"),
        "{run}"
    );
    let mail = &sink.meta(0, "Mail")[0];
    assert!(!mail.contains("SIZE="), "{mail}");
    assert!(
        !sink.meta(0, "Rcpt")[0].contains("NOTIFY="),
        "{:?}",
        sink.meta(0, "Rcpt")
    );

    // Another address: the main.cf list applies.
    let sink2 = Sink::start(&[]);
    let run = send(
        &sink2.dest(),
        &[
            "-o",
            "smtp_discard_ehlo_keywords=size",
            "-o",
            "smtp_discard_ehlo_keyword_address_maps=inline:{ 192.0.2.1=dsn }",
        ],
        &["r@example.net"],
        MSG,
    );
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stderr.contains(": discarding EHLO keywords: SIZE\n"),
        "{run}"
    );
}

#[test]
fn discard_ehlo_keyword_address_maps_trouble_defers() {
    let sink = Sink::start(&[]);
    let run = send(
        &sink.dest(),
        &[
            "-o",
            "smtp_discard_ehlo_keyword_address_maps=hash:/nonexistent/ehlo",
        ],
        &["r@example.net"],
        MSG,
    );
    let r = run.result("r@example.net");
    assert!(r.contains("deferred") && r.contains("4.3.0"), "{run}");
    assert!(
        run.stderr.contains(
            "TESTQID: smtp_discard_ehlo_keyword_address_maps map lookup error for 127.0.0.1"
        ),
        "{run}"
    );
    assert!(sink.messages().is_empty());
}

#[test]
fn pix_workaround_maps_override_the_default_per_server() {
    let sink = Sink::start(&["--reply", "greeting=220 *******"]);
    // An empty-ish per-server setting: only delay_dotcrlf, which a fresh message does not
    // get; so no workaround is enabled (Postfix still logs the line, with an empty list)
    // and EHLO is used.
    let run = send(
        &sink.dest(),
        &[
            "-o",
            "smtp_pix_workaround_maps=inline:{ 127.0.0.1=delay_dotcrlf }",
        ],
        &["r@example.net"],
        MSG,
    );
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stderr.contains(&format!(
            "enabling PIX workarounds:  for 127.0.0.1[127.0.0.1]:{}",
            sink.port()
        )),
        "{run}"
    );
    assert_eq!(sink.meta(0, "Proto"), ["ESMTP"]);
    // A table without this server: smtp_pix_workarounds (disable_esmtp) applies.
    let sink2 = Sink::start(&["--reply", "greeting=220 *******"]);
    let run = send(
        &sink2.dest(),
        &[
            "-o",
            "smtp_pix_workaround_maps=inline:{ 192.0.2.1=delay_dotcrlf }",
        ],
        &["r@example.net"],
        MSG,
    );
    assert!(
        run.stderr
            .contains("enabling PIX workarounds: disable_esmtp"),
        "{run}"
    );
    assert_eq!(sink2.meta(0, "Proto"), ["SMTP"]);
}

#[test]
fn delivery_status_filter_rewrites_outcomes() {
    let sink = Sink::start(&[
        "--reply",
        "rcpt:hard@example.net=550 5.1.1 <hard@example.net>: no such user",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(
        dir.path(),
        "dsn_filter",
        "/^5\\.1\\.1 (.*)$/ 4.1.1 filtered: $1\n\
         /^2\\.0\\.0 / 2.0.0 delivered, filtered\n\
         /^5\\.7\\.1 / 2.0.0 not allowed: a failure stays a failure\n",
    );
    let opt = format!("smtp_delivery_status_filter=regexp:{f}");
    let run = send(
        &sink.dest(),
        &["-o", &opt],
        &["ok@example.net", "hard@example.net"],
        MSG,
    );
    let hard = run.log_for("hard@example.net");
    assert_eq!(hard.len(), 1, "{run}");
    assert!(
        hard[0].contains(
            "dsn=4.1.1, status=deferred (filtered: host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <hard@example.net>: no such user (in reply to RCPT TO command))"
        ),
        "{run}"
    );
    let ok = run.log_for("ok@example.net");
    assert!(
        ok[0].contains("dsn=2.0.0, status=sent (delivered, filtered)"),
        "{run}"
    );
}

#[test]
fn delivery_status_filter_cannot_turn_failure_into_success() {
    let sink = Sink::start(&["--reply", "rcpt=550 5.7.1 denied"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "dsn_filter", "/^5\\.7\\.1 / 2.0.0 fine\n");
    let opt = format!("smtp_delivery_status_filter=regexp:{f}");
    let run = send(&sink.dest(), &["-o", &opt], &["r@example.net"], MSG);
    assert!(run.result("r@example.net").contains("bounced"), "{run}");
    assert!(
        run.stderr
            .contains("warning: smtp_delivery_status_filter: bad status code: 2.0.0 fine"),
        "{run}"
    );
}

#[test]
fn delivery_status_filter_trouble_never_bounces() {
    let sink = Sink::start(&["--reply", "rcpt=550 5.7.1 denied"]);
    let run = send(
        &sink.dest(),
        &[
            "-o",
            "smtp_delivery_status_filter=hash:/nonexistent/dsn_filter",
        ],
        &["r@example.net"],
        MSG,
    );
    assert!(
        run.result("r@example.net").contains("deferred dsn=4.7.1"),
        "{run}"
    );
}

#[test]
fn generic_maps_extensions_propagate_only_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generic = write(
        dir.path(),
        "generic",
        "user@example.org other@public.example\n@example.com @public.example\n",
    );
    let opt = format!("smtp_generic_maps=texthash:{generic}");
    for (propagate, want) in [
        (
            "canonical, virtual",
            ["<other@public.example>", "<who+x@public.example>"],
        ),
        (
            "canonical, virtual, generic",
            ["<other+tag@public.example>", "<who+x@public.example>"],
        ),
    ] {
        let sink = Sink::start(&[]);
        let p = format!("propagate_unmatched_extensions={propagate}");
        let run = send(
            &sink.dest(),
            &["-o", &opt, "-o", "recipient_delimiter=+", "-o", &p],
            &["user+tag@example.org", "who+x@example.com"],
            MSG,
        );
        assert_eq!(run.code, 0, "{run}");
        // An "@domain" match keeps the whole local part, extension included (the
        // extension was never split off for that lookup).
        assert_eq!(sink.rcpts(0), want, "{propagate}");
    }
}

/// debug_peer_list: the dialogue with a matching server (by address, by a cidr table)
/// goes to the log as Postfix's verbose smtp writes it; other servers stay quiet.
#[test]
fn debug_peer_list_logs_the_dialogue_of_matching_servers() {
    let sink = Sink::start(&[]);
    let dir = tempfile::tempdir().expect("tmp");
    let cidr = dir.path().join("peers.cidr");
    std::fs::write(&cidr, "127.0.0.0/8 yes\n").expect("cidr");
    let tables = format!("cidr:{}", cidr.display());
    for list in ["127.0.0.1", tables.as_str()] {
        let run = send(
            &sink.dest(),
            &["-o", &format!("debug_peer_list={list}")],
            &["r@example.net"],
            MSG,
        );
        assert!(run.result("r@example.net").contains(": sent "), "{run}");
        let port = sink.port();
        let sent = format!("> 127.0.0.1[127.0.0.1]:{port}: MAIL FROM:<sender@example.org>");
        let got = format!("< 127.0.0.1[127.0.0.1]:{port}: 250 2.0.0 Ok");
        assert!(run.stderr.contains(&sent), "{list}: {run}");
        assert!(run.stderr.contains(&got), "{list}: {run}");
    }
    let run = send(
        &sink.dest(),
        &["-o", "debug_peer_list=192.0.2.1, !127.0.0.1"],
        &["r@example.net"],
        MSG,
    );
    assert!(!run.stderr.contains("MAIL FROM:<"), "{run}");
}
