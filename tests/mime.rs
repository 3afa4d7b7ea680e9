//! Differential tests of MIME output conversion (8-bit to quoted-printable for servers
//! without 8BITMIME) against Postfix's own smtp(8).
//!
//! The same 8-bit messages go through a throw-away Postfix instance (sendmail -B 8BITMIME,
//! relayed by its smtp client) and through `outpost send -B 8BITMIME` to one smtp-sink
//! started with -8 (no 8BITMIME). The message data stored by the sink must be byte for
//! byte the same (Postfix's copy minus the Received: header its cleanup adds), and so must
//! the MAIL FROM parameters. A message nested deeper than mime_nesting_limit must bounce
//! with Postfix's text and never reach the sink. Tests skip (with "SKIP: ...") unless run
//! as root with Postfix and smtp-sink installed.

mod support;

use std::io::Write;
use std::time::Duration;
use support::*;

/// One test message: a unique subject (to pair the two copies) and its bytes.
fn message(tag: &str, headers: &str, body: &[u8]) -> (String, Vec<u8>) {
    let subject = format!("mime {tag}");
    let mut m = format!(
        "From: Sender <sender@x.test>\nTo: rcpt@dest.test\nDate: Sat, 28 Nov 2026 07:00:00 +0000\nMessage-ID: <mime-{tag}@x.test>\nSubject: {subject}\n{headers}\n"
    )
    .into_bytes();
    m.extend_from_slice(body);
    (subject, m)
}

fn shapes() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    // Top-level 8bit text: QP of 8-bit bytes, '=', trailing white space, leading dots,
    // lines longer than 76 (and than Postfix's 2048-byte queue records).
    let mut body = b"caf\xc3\xa9 a=b\n.leading dot\n..two\n.\ntrailing spaces  \ntrailing tab\t\n\nbare cr \x7f\x01\n"
        .to_vec();
    for (n, c) in [(150, b'x'), (1200, b'\xe9'), (3000, b'y')] {
        body.extend(std::iter::repeat_n(c, n));
        body.push(b'\n');
    }
    body.extend_from_slice(b"last line without newline \xe9");
    v.push(message(
        "text",
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n",
        &body,
    ));
    // Multipart: an 8bit part, a base64 part, a part with no CTE (7bit by default).
    v.push(message(
        "multi",
        "MIME-Version: 1.0\nContent-Type: multipart/mixed;\n\tboundary=\"=_b1 x\"\n",
        b"preamble \xe9\n--=_b1 x\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n\
caf\xe9 =\n.dot\n--=_b1 x\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAECAwQ=\n\
--=_b1 x\nContent-Type: text/plain\n\nseven \xe9 bit\n--=_b1 x--\nepilogue\n",
    ));
    // message/rfc822 inside a multipart, with an 8bit body inside that.
    v.push(message(
        "nested",
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=outer\nContent-Transfer-Encoding: 8bit\n",
        b"--outer\nContent-Type: text/plain\nContent-Transfer-Encoding: binary\n\nfirst \xc3\xa9\n\
--outer\nContent-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n\n\
Subject: inner (8-bit here would make Postfix require SMTPUTF8)\nContent-Type: multipart/alternative; boundary=inner\n\n--inner\nContent-Transfer-Encoding: 8bit\n\n\
inner \xc3\xa9\t\n--inner--\n--outer--\n",
    ));
    // No MIME headers at all: nothing is converted, nothing added.
    v.push(message("plain", "", b"just 8-bit \xc3\xa9 = text\n"));
    // A digest (parts default to message/rfc822) and an unknown encoding after 8bit.
    v.push(message(
        "digest",
        "MIME-Version: 1.0\nContent-Type: multipart/digest; boundary=d\n",
        b"--d\n\nSubject: in digest\nContent-Transfer-Encoding: 8bit\n\nd\xe9\n--d\nContent-Type: text/plain\n\
Content-Transfer-Encoding: 8bit\nContent-Transfer-Encoding: x-unknown\n\nu\xe9\n--d--\n",
    ));
    v
}

fn deep_message() -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for i in 0..6 {
        body.extend_from_slice(
            format!(
                "--b{i}\nContent-Type: multipart/mixed; boundary=b{}\n\n",
                i + 1
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(b"--b6\nContent-Transfer-Encoding: 8bit\n\ndeep \xe9\n");
    message(
        "deep",
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b0\n",
        &body,
    )
}

fn subject(d: &Dump) -> Option<String> {
    let text = String::from_utf8_lossy(&d.data);
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Subject: ").map(|s| s.to_string()))
}

#[test]
fn downgrade_is_byte_identical_to_postfix_smtp() {
    require_root!("a throw-away Postfix instance");
    let bins = require!("smtp-sink", "postfix", "sendmail");
    let dir = TestDir::new("mime");
    // -8: no 8BITMIME in the EHLO reply.
    let sink = SmtpSink::start(&bins[0], &dir, &["-8"], Listen::Tcp);
    let pf = Postfix::start(
        &dir,
        &format!(
            "relayhost = [127.0.0.1]:{}\nlocal_header_rewrite_clients =\nmime_nesting_limit = 3\n",
            sink.port
        ),
        &[],
        false,
    );
    let mut msgs = shapes();
    msgs.push(deep_message());
    for (_, m) in &msgs {
        let mut child = std::process::Command::new(&bins[2])
            .arg("-C")
            .arg(&pf.conf)
            .args([
                "-i",
                "-B",
                "8BITMIME",
                "-f",
                "sender@x.test",
                "ref@one.test",
            ])
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
    let mut runs = Vec::new();
    for (subj, m) in &msgs {
        let run = send(
            &["-B", "8BITMIME", "-o", "mime_nesting_limit=3", "-d", &dest],
            &["ref@one.test"],
            m,
        );
        runs.push((subj.clone(), run));
    }
    let diag = || {
        let mut s = String::new();
        for (_, r) in &runs {
            s.push_str(&r.show());
            s.push('\n');
        }
        format!("{s}{}\n{}", sink.show(), pf.show())
    };
    // The deep message fails in both; the rest arrive twice.
    let n = 2 * (msgs.len() - 1);
    let dumps = sink.dumps(n).unwrap_or_else(|e| panic!("{e}\n{}", diag()));
    let (deep_subject, _) = deep_message();
    for (subj, run) in &runs {
        let by = |helo: &str| -> Vec<&Dump> {
            dumps
                .iter()
                .filter(|d| {
                    d.get("X-Helo-Args") == Some(helo) && subject(d).as_deref() == Some(subj)
                })
                .collect()
        };
        let (p, o) = (by("postfix.test"), by(MYHOSTNAME));
        if *subj == deep_subject {
            ensure!(
                p.is_empty() && o.is_empty(),
                diag(),
                "{subj}: nested too deep, yet delivered"
            );
            let want = "ref@one.test: bounced dsn=5.6.0";
            ensure!(
                run.result("ref@one.test")
                    .is_some_and(|r| r.starts_with(want)
                        && r.ends_with("(MIME nesting exceeds safety limit)")),
                diag(),
                "{subj}: Outpost result: expected {want:?} ... (MIME nesting exceeds safety limit), got {:?}",
                run.result("ref@one.test")
            );
            let log = pf
                .wait_log(
                    &["dsn=5.6.0, status=bounced (MIME nesting exceeds safety limit)"],
                    Duration::from_secs(20),
                )
                .is_some();
            ensure!(
                log,
                diag(),
                "{subj}: Postfix did not bounce with the nesting text"
            );
            ensure!(
                !run.stderr.contains("warning"),
                diag(),
                "{subj}: Outpost logged a warning; Postfix does not"
            );
            continue;
        }
        ensure!(
            run.code == 0,
            diag(),
            "{subj}: outpost exit code {}",
            run.code
        );
        ensure!(
            p.len() == 1 && o.len() == 1,
            diag(),
            "{subj}: expected one copy from each client, got {} from Postfix and {} from Outpost",
            p.len(),
            o.len()
        );
        // Postfix's copy starts with the Received: header its cleanup(8) added.
        let pdata = strip_added_headers(&p[0].data, &["Received"]).1.to_vec();
        if let Some(d) = byte_diff(&pdata, &o[0].data) {
            panic!(
                "{subj}: Outpost's data differs from Postfix's\n{d}\n{}",
                diag()
            );
        }
        // Neither sends BODY= to a server without 8BITMIME.
        ensure!(
            p[0].get("X-Mail-Args") == o[0].get("X-Mail-Args"),
            diag(),
            "{subj}: MAIL FROM parameters differ: Postfix {:?}, Outpost {:?}",
            p[0].get("X-Mail-Args"),
            o[0].get("X-Mail-Args")
        );
    }
    // Sanity: the conversion really happened (and 8-bit text stayed where Postfix keeps it).
    let text = dumps.iter().find(|d| {
        subject(d).as_deref() == Some("mime text") && d.get("X-Helo-Args") == Some(MYHOSTNAME)
    });
    ensure!(
        text.is_some_and(|d| {
            let s = String::from_utf8_lossy(&d.data);
            s.contains("Content-Transfer-Encoding: quoted-printable\n")
                && s.contains("caf=C3=A9 a=3Db\n")
        }),
        diag(),
        "the 8bit text message was not converted to quoted-printable"
    );
}

/// disable_mime_output_conversion = yes sends the 8-bit content unchanged.
#[test]
fn conversion_can_be_disabled() {
    let bins = require!("smtp-sink");
    let dir = TestDir::new("mime-off");
    let sink = SmtpSink::start(&bins[0], &dir, &["-8"], Listen::Tcp);
    let dest = sink.dest_tcp();
    let (_, m) = shapes().remove(0);
    let on = send(&["-B", "8BITMIME", "-d", &dest], &["a@one.test"], &m);
    let off = send(
        &[
            "-B",
            "8BITMIME",
            "-o",
            "disable_mime_output_conversion=yes",
            "-d",
            &dest,
        ],
        &["b@one.test"],
        &m,
    );
    let diag = || format!("{}\n{}\n{}", on.show(), off.show(), sink.show());
    ensure!(on.code == 0 && off.code == 0, diag(), "exit codes");
    let dumps = sink.dumps(2).unwrap_or_else(|e| panic!("{e}\n{}", diag()));
    let data = |rcpt: &str| {
        dumps
            .iter()
            .find(|d| {
                d.all("X-Rcpt-Args")
                    .iter()
                    .any(|r| r.starts_with(&format!("<{rcpt}>")))
            })
            .map(|d| d.data.clone())
            .unwrap_or_default()
    };
    ensure!(
        data("a@one.test").windows(9).any(|w| w == b"caf=C3=A9"),
        diag(),
        "conversion enabled: no quoted-printable"
    );
    if let Some(d) = byte_diff(&stored_lf(&postfix_wire(&m)), &data("b@one.test")) {
        panic!("conversion disabled: content changed\n{d}\n{}", diag());
    }
}
