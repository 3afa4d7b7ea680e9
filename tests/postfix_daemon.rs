//! Outpost as Postfix's smtp/lmtp delivery agent, driven by a real Postfix (master, qmgr,
//! cleanup, bounce, verify, postlogd) in a throw-away instance: delivery, bounces in
//! Postfix's DSN format, deferrals in the queue, success DSNs, address probes, corrupt queue
//! files, a killed agent, and differential runs against Postfix's own smtp(8) and lmtp(8)
//! with real final peers: smtp-sink (mail from sendmail and smtp-source), dovecot LMTP,
//! address probes with smtp_address_verify_target = data (sendmail -bv and smtpd's
//! reject_unverified_recipient), and a held queue of 50 messages drained at once.

mod common;
mod pf_instance;
mod support;
use common::Sink;
use pf_instance::{Instance, usable};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The delivery lines of the maillog for a service tag, with queue ids, pids and delays
/// normalised, for comparing runs.
fn delivery_lines(log: &str, tag: &str) -> Vec<String> {
    let mut v: Vec<String> = log
        .lines()
        .filter(|l| l.contains(&format!("postfix/{tag}[")) && l.contains(": to=<"))
        .filter_map(|l| {
            l.split_once(": to=<")
                .map(|(_, rest)| format!("to=<{rest}"))
        })
        .map(|l| {
            let mut out = String::new();
            for field in l.split(", ") {
                if field.starts_with("delay=") || field.starts_with("delays=") {
                    continue;
                }
                out.push_str(field);
                out.push_str(", ");
            }
            // "queued as N" differs between runs of the sink.
            match out.find("queued as ") {
                Some(i) => out[..i].to_string(),
                None => out,
            }
        })
        .collect();
    v.sort();
    v
}

const MSG: &[u8] = b"Subject: via postfix\nFrom: s@sender.test\n\n.dot line\nplain line\n";

#[test]
fn delivers_bounces_and_defers_like_postfix_smtp() {
    if !usable() {
        return;
    }
    // Same scenario twice: once through Postfix's smtp, once through Outpost.
    let mut runs = Vec::new();
    for transport in ["smtp", "outpost"] {
        let senders = Sink::start(&[]);
        let sink = Sink::start(&[
            "--reply",
            "rcpt:hard@dest.test=550 5.1.1 <hard@dest.test>: no such user",
            "--reply",
            "rcpt:soft@dest.test=450 4.2.0 <soft@dest.test>: try later",
        ]);
        let map = format!(
            "dest.test {transport}:[127.0.0.1]:{}\nsender.test {transport}:[127.0.0.1]:{}\n",
            sink.port(),
            senders.port()
        );
        let pf = Instance::start(&map, "");
        pf.sendmail(
            &[
                "-f",
                "s@sender.test",
                "ok@dest.test",
                "hard@dest.test",
                "soft@dest.test",
            ],
            MSG,
        );
        let log = pf.wait_log(&[
            "to=<ok@dest.test>",
            "to=<hard@dest.test>",
            "to=<soft@dest.test>",
            "sender non-delivery notification",
            "to=<s@sender.test>",
        ]);
        // Exactly one outcome per recipient in this first attempt.
        for r in ["ok", "hard"] {
            assert_eq!(
                log.matches(&format!("to=<{r}@dest.test>")).count(),
                1,
                "{log}"
            );
        }
        let q = pf.mailq();
        assert!(
            q.contains("soft@dest.test") && q.contains("450 4.2.0 <soft@dest.test>: try later"),
            "{q}"
        );
        // The bounce went to the sender in Postfix's DSN format.
        let bounce = String::from_utf8_lossy(&senders.body(0)).to_string();
        assert!(
            bounce.contains("Final-Recipient: rfc822; hard@dest.test"),
            "{bounce}"
        );
        assert!(
            bounce.contains("Diagnostic-Code: smtp; 550 5.1.1 <hard@dest.test>: no such user"),
            "{bounce}"
        );
        assert!(bounce.contains("Status: 5.1.1"), "{bounce}");
        let body = sink.body(0);
        runs.push((
            delivery_lines(&log, "smtp"),
            body,
            normalise_bounce(&bounce),
        ));
    }
    let (pf_lines, pf_body, pf_bounce) = &runs[0];
    let (op_lines, op_body, op_bounce) = &runs[1];
    // Differential: the same log lines (ports and queue ids normalised away) ...
    let norm = |v: &Vec<String>| -> Vec<String> { v.iter().map(|l| normalise_ports(l)).collect() };
    assert_eq!(norm(op_lines), norm(pf_lines));
    // ... the same bytes at the server (apart from Postfix's per-message headers) ...
    assert_eq!(strip_headers(op_body), strip_headers(pf_body));
    // ... and the same bounce report.
    assert_eq!(op_bounce, pf_bounce);
}

fn normalise_ports(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("]:") {
        out.push_str(&rest[..i + 2]);
        rest = rest[i + 2..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push_str("PORT");
    }
    out.push_str(rest);
    out
}

fn strip_headers(msg: &[u8]) -> Vec<u8> {
    // Received:, Message-Id:, Date: differ by run; compare from Subject: on.
    let text = String::from_utf8_lossy(msg);
    let start = text.find("Subject:").unwrap_or(0);
    let mut v: Vec<String> = text[start..]
        .split("\r\n")
        .filter(|l| !l.starts_with("Message-Id:") && !l.starts_with("Date:"))
        .map(str::to_string)
        .collect();
    v.sort();
    v.join("\n").into_bytes()
}

fn normalise_bounce(b: &str) -> Vec<String> {
    let mut v: Vec<String> = b
        .split("\r\n")
        .filter(|l| {
            ![
                "Received:",
                "Message-Id:",
                "Date:",
                "Arrival-Date:",
                "X-Postfix-Queue-ID:",
                "Content-Type: multipart",
                "--",
                "\tboundary=",
                "Reporting-MTA",
                "Remote-MTA",
                "Diagnostic-Code",
                "To:",
                "From:",
                "Subject:",
                "Auto-Submitted",
                "MIME-Version",
                "Content-Description",
                "Content-Type",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(normalise_ports)
        .filter(|l| !l.contains("queued as") && !l.trim().is_empty() && !l.starts_with("\tid "))
        .collect();
    v.sort();
    v
}

#[test]
fn probes_success_dsn_and_lmtp() {
    if !usable() {
        return;
    }
    let senders = Sink::start(&[]);
    let nodsn = Sink::start(&["--caps", "PIPELINING,8BITMIME"]);
    let lmtp = Sink::start(&["--lmtp", "LISTEN=unix:{dir}/lmtp.sock"]);
    // The agent runs as mail_owner: let it reach the socket.
    let _ = Command::new("chmod")
        .arg("755")
        .arg(lmtp.dir.path())
        .status();
    let _ = Command::new("chmod")
        .arg("666")
        .arg(lmtp.addr.trim_start_matches("unix:"))
        .status();
    let map = format!(
        "sender.test outpost:[127.0.0.1]:{}\nnodsn.test outpost:[127.0.0.1]:{}\nlmtp.test outpost-lmtp:{}\n",
        senders.port(),
        nodsn.port(),
        lmtp.addr
    );
    let pf = Instance::start(&map, "");
    // NOTIFY=SUCCESS to a server without DSN: Postfix sends the success notice itself.
    pf.sendmail(
        &["-N", "success", "-f", "s@sender.test", "n@nodsn.test"],
        MSG,
    );
    // Address probe: stops after RCPT, nothing is delivered.
    pf.sendmail(&["-bv", "-f", "s@sender.test", "probe@nodsn.test"], b"");
    // sendmail -v: the delivery is recorded (trace) and reported to the sender.
    pf.sendmail(&["-v", "-f", "s@sender.test", "v@nodsn.test"], MSG);
    // LMTP over a UNIX socket, two recipients.
    pf.sendmail(&["-f", "s@sender.test", "a@lmtp.test", "b@lmtp.test"], MSG);
    let log = pf.wait_log(&[
        "to=<n@nodsn.test>",
        "sender delivery status notification",
        "to=<probe@nodsn.test>",
        "to=<a@lmtp.test>",
        "to=<b@lmtp.test>",
    ]);
    assert!(
        log.contains("status=deliverable (250 2.1.0 Ok)")
            || log.contains("to=<probe@nodsn.test>, relay=127.0.0.1[127.0.0.1]"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("to=<probe@nodsn.test>") && l.contains("status=deliverable")),
        "{log}"
    );
    // Only real messages reached the no-DSN server (the probe did not).
    let t = Instant::now();
    while nodsn.messages().len() < 2 && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let got: Vec<String> = (0..nodsn.messages().len())
        .flat_map(|i| nodsn.rcpts(i))
        .collect();
    assert_eq!(got.len(), 2, "{got:?} {log}");
    assert!(!got.iter().any(|r| r.contains("probe")), "{got:?}");
    let path = lmtp.addr.trim_start_matches("unix:");
    assert!(
        log.lines().any(|l| l.contains("postfix/lmtp[")
            && l.contains(&format!("to=<a@lmtp.test>, relay=postfix.test[{path}]"))
            && l.contains("status=sent")),
        "{log}"
    );
    assert_eq!(lmtp.rcpts(0), ["<a@lmtp.test>", "<b@lmtp.test>"]);
    // The success notice and the probe report went to the sender.
    let wait = Instant::now();
    while senders.messages().len() < 2 && wait.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let all: String = senders
        .messages()
        .iter()
        .map(|m| String::from_utf8_lossy(m).to_string())
        .collect();
    assert!(
        all.contains("Action: relayed") || all.contains("Action: delivered"),
        "{all}"
    );
    assert!(
        all.contains("Final-Recipient: rfc822; n@nodsn.test"),
        "{all}"
    );
    assert!(
        all.contains("Final-Recipient: rfc822; probe@nodsn.test"),
        "{all}"
    );
    let t = Instant::now();
    while !senders
        .messages()
        .iter()
        .any(|m| String::from_utf8_lossy(m).contains("Final-Recipient: rfc822; v@nodsn.test"))
    {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "no -v report: {}",
            pf.maillog()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = pf.maillog();
    assert!(
        log.lines()
            .any(|l| l.contains("to=<v@nodsn.test>") && l.contains("status=sent")),
        "{log}"
    );
}

#[test]
fn relay_service_with_overrides() {
    if !usable() {
        return;
    }
    let sink = Sink::start(&[]);
    let pf = Instance::start(
        &format!("relay.test outpost-relay:[127.0.0.1]:{}\n", sink.port()),
        "",
    );
    pf.sendmail(&["-f", "s@sender.test", "r@relay.test"], MSG);
    let log = pf.wait_log(&["to=<r@relay.test>"]);
    // master.cf's -o overrides apply: the service's own log tag and HELO name.
    assert!(
        log.lines()
            .any(|l| l.contains("postfix/outpost-relay/smtp[")
                && l.contains("to=<r@relay.test>")
                && l.contains("status=sent")),
        "{log}"
    );
    assert_eq!(sink.meta(0, "Helo"), ["relay.helo.test"]);
}

#[test]
fn corrupt_queue_file_goes_to_the_corrupt_queue() {
    if !usable() {
        return;
    }
    let sink = Sink::start(&[]);
    // Mail with this subject is put on hold by cleanup, so the test can damage it.
    let pf = Instance::start(
        &format!("dest.test outpost:[127.0.0.1]:{}\n", sink.port()),
        "header_checks = regexp:$config_directory/hold_re",
    );
    std::fs::write(pf.conf.join("hold_re"), "/^Subject: corrupt me/ HOLD\n").expect("write");
    let post = |args: &[&str]| {
        let _ = Command::new("postsuper")
            .arg("-c")
            .arg(&pf.conf)
            .args(args)
            .output();
    };
    pf.sendmail(
        &["-f", "s@sender.test", "c@dest.test"],
        b"Subject: corrupt me\n\nline one\nline two\n",
    );
    let hold = pf.queue_dir().join("hold");
    let t = Instant::now();
    let file = loop {
        if let Some(f) = std::fs::read_dir(&hold)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
        {
            break f.path();
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "nothing held: {}",
            pf.maillog()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut data = std::fs::read(&file).expect("read queue file");
    let pos = data
        .windows(8)
        .position(|w| w == b"line one")
        .expect("content")
        - 2;
    assert_eq!(data[pos], b'N', "record type before the line");
    data[pos] = b'Z';
    std::fs::write(&file, &data).expect("write queue file");
    post(&["-H", "ALL"]);
    let log = pf.wait_log(&["corrupted queue file", "bad record type"]);
    let t = Instant::now();
    while std::fs::read_dir(pf.queue_dir().join("corrupt"))
        .map(|d| d.count())
        .unwrap_or(0)
        == 0
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "not moved to corrupt/: {log}\n{}",
            pf.maillog()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        sink.messages().is_empty(),
        "nothing must be delivered from a damaged file"
    );
}

/// A minimal SMTP server: the first connection never answers the end of data (so the
/// agent can be killed mid-delivery); later ones accept. Returns the port and a counter of
/// accepted messages.
fn stalling_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let done = std::sync::Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    std::thread::spawn(move || {
        for (n, conn) in l.incoming().enumerate() {
            let Ok(s) = conn else { continue };
            let d = d.clone();
            std::thread::spawn(move || {
                let Ok(mut w) = s.try_clone() else { return };
                let _ = w.write_all(b"220 stall.test ESMTP\r\n");
                let mut r = BufReader::new(s);
                let mut line = String::new();
                let mut in_data = false;
                while r.read_line(&mut line).map(|k| k > 0).unwrap_or(false) {
                    let cmd = line.trim_end().to_ascii_uppercase();
                    line.clear();
                    let reply: &[u8] = if in_data {
                        if cmd != "." {
                            continue;
                        }
                        in_data = false;
                        if n == 0 {
                            std::thread::sleep(Duration::from_secs(60));
                            return;
                        }
                        d.fetch_add(1, Ordering::SeqCst);
                        b"250 2.0.0 Ok: queued\r\n"
                    } else if cmd.starts_with("DATA") {
                        in_data = true;
                        b"354 go\r\n"
                    } else if cmd.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = w.write_all(reply);
                }
            });
        }
    });
    (port, done)
}

#[test]
fn killed_agent_leaves_mail_queued_and_it_is_delivered_later() {
    if !usable() {
        return;
    }
    let fast = Sink::start(&[]);
    let (port, done) = stalling_server();
    let map = format!(
        "fast.test outpost:[127.0.0.1]:{}\ndest.test outpost:[127.0.0.1]:{port}\n",
        fast.port()
    );
    let pf = Instance::start(&map, "");
    // A first delivery, so that master does not count the kill as a failed start-up
    // (which would throttle the service for a minute, for Postfix's smtp as for us).
    pf.sendmail(&["-f", "s@sender.test", "first@fast.test"], MSG);
    pf.wait_log(&["to=<first@fast.test>"]);
    pf.sendmail(&["-f", "s@sender.test", "k@dest.test"], MSG);
    let t = Instant::now();
    let master_pid =
        std::fs::read_to_string(pf.queue_dir().join("pid/master.pid")).unwrap_or_default();
    // Wait until the transfer is under way, then kill the agent.
    loop {
        std::thread::sleep(Duration::from_millis(300));
        if pf.maillog().matches("(queue active)").count() >= 2 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "not active: {}",
            pf.maillog()
        );
    }
    std::thread::sleep(Duration::from_millis(700));
    let out = Command::new("pgrep")
        .args(["-P", master_pid.trim(), "-f", "n outpost -t"])
        .output()
        .expect("pgrep");
    let pids = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!pids.trim().is_empty(), "no agent: {}", pf.maillog());
    for pid in pids.split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    // Still queued, then delivered on the next attempt.
    let log = pf.wait_log(&["to=<k@dest.test>", "status=sent", "killed by signal 9"]);
    assert!(
        log.lines()
            .any(|l| l.contains("to=<k@dest.test>") && l.contains("status=sent")),
        "{log}"
    );
    assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 1, "{log}");
    assert!(!log.contains("bad command startup"), "{log}");
}

/// A dead destination, twice in a row: the same log lines (and the same handling of the
/// second message by qmgr, which sees our hop status) as with Postfix's smtp.
#[test]
fn dead_destination_like_postfix() {
    if !usable() {
        return;
    }
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut seen = Vec::new();
    for transport in ["smtp", "outpost"] {
        let pf = Instance::start(
            &format!("dead.test {transport}:[127.0.0.1]:{dead}\n"),
            "minimal_backoff_time = 60s\nmaximal_backoff_time = 120s",
        );
        pf.sendmail(&["-f", "s@sender.test", "one@dead.test"], MSG);
        pf.wait_log(&["to=<one@dead.test>", "status=deferred"]);
        pf.sendmail(&["-f", "s@sender.test", "two@dead.test"], MSG);
        let log = pf.wait_log(&["to=<two@dead.test>", "status=deferred"]);
        let two = log
            .lines()
            .find(|l| l.contains("to=<two@dead.test>"))
            .unwrap_or_default()
            .to_string();
        assert!(
            two.contains("connect to 127.0.0.1[127.0.0.1]"),
            "{transport}: {log}"
        );
        seen.push(two.split("status=").nth(1).unwrap_or_default().to_string());
    }
    assert_eq!(seen[0], seen[1]);
}

// ---------------------------------------------------------------------------------------
// Real peers as the final hop: smtp-sink, dovecot LMTP; address probes; a queue drain.

/// The log lines of agent `tag` (smtp, lmtp) for one recipient.
fn agent_lines<'a>(log: &'a str, tag: &str, rcpt: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains(&format!("postfix/{tag}[")) && l.contains(&format!(" to=<{rcpt}>,")))
        .collect()
}

/// Every log line of agent `tag` (not only deliveries: warnings, "breaking line" notes),
/// normalised for comparing runs: no pid, queue id, delays, ports or "queued as"; sorted.
fn agent_log(log: &str, tag: &str) -> Vec<String> {
    let mut v: Vec<String> = log
        .lines()
        .filter(|l| l.contains(&format!("postfix/{tag}[")))
        .filter_map(|l| l.split_once("]: ").map(|(_, rest)| rest))
        .map(|rest| {
            // "4F1A2B3C4D: ..." -> "QID: ..."
            let rest = match rest.split_once(": ") {
                Some((id, r)) if id.len() >= 8 && id.chars().all(|c| c.is_ascii_hexdigit()) => {
                    format!("QID: {r}")
                }
                _ => rest.to_string(),
            };
            let mut out = rest
                .split(", ")
                .filter(|f| !f.starts_with("delay=") && !f.starts_with("delays="))
                .collect::<Vec<_>>()
                .join(", ");
            if let Some(i) = out.find("queued as ") {
                out.truncate(i);
            }
            normalise_ports(&out)
        })
        .collect();
    v.sort();
    v
}

/// Replace every occurrence of `from` (e.g. a socket path that differs per run).
fn replace_all(v: &[String], from: &str, to: &str) -> Vec<String> {
    v.iter().map(|l| l.replace(from, to)).collect()
}

/// "SIZE=1234" -> ("SIZE=N", 1234).
fn split_size(args: &str) -> (String, i64) {
    let mut n = -1;
    let norm = args
        .split(' ')
        .map(|w| match w.strip_prefix("SIZE=") {
            Some(v) => {
                n = v.parse().unwrap_or(-1);
                "SIZE=N".to_string()
            }
            None => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    (norm, n)
}

/// Message data without the header lines that differ per run: Received: (with its
/// continuation lines), Date:, Message-Id:.
fn without_run_headers(data: &[u8]) -> Vec<u8> {
    let (_, rest) = support::strip_added_headers(data, &["Received"]);
    let mut out = Vec::new();
    let mut in_head = true;
    for line in rest.split_inclusive(|&b| b == b'\n') {
        if line == b"\n" {
            in_head = false;
        }
        let l = String::from_utf8_lossy(line).to_ascii_lowercase();
        if in_head && (l.starts_with("date:") || l.starts_with("message-id:")) {
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

fn expected_stored(msg: &[u8]) -> Vec<u8> {
    support::stored_lf(&support::postfix_wire(msg))
}

fn assert_bytes(want: &[u8], got: &[u8], what: &str) {
    if let Some(d) = support::byte_diff(want, got) {
        panic!("{what}: not byte-exact: {d}");
    }
}

/// smtp-sink as the final SMTP peer: a 5-recipient message from sendmail and one from
/// smtp-source (through the instance's smtpd), delivered by Postfix's smtp and by
/// Outpost: each arrives once with all RCPTs, byte-exact, and the log lines, envelopes
/// and stored messages are the same for both agents.
#[test]
fn smtp_sink_peer_multi_recipient_like_postfix_smtp() {
    if !usable() {
        return;
    }
    let Some(bins) = support::require(&["smtp-sink", "smtp-source"]) else {
        return;
    };
    let dir = support::TestDir::new("daemon-sink");
    let msg = support::tricky_message();
    // smtp-source -F sends each file line with CRLF (dots doubled) after its own header
    // block; a CR inside the file would reach the server as a bare CR, so leave it out.
    let src_body: Vec<u8> = msg.iter().copied().filter(|&b| b != b'\r').collect();
    let src_file = dir.join("source.msg");
    std::fs::write(&src_file, &src_body).expect("write smtp-source file");
    let mail_rcpts: Vec<String> = (1..=5).map(|i| format!("r{i}@dest.test")).collect();
    // smtp-source -r 5 -t src@dest.test: RCPT TO:<5src@dest.test> ... <2src@dest.test>,
    // then <src@dest.test>.
    let src_rcpts: Vec<String> = (1..=5)
        .map(|i| match i {
            1 => "src@dest.test".to_string(),
            _ => format!("{i}src@dest.test"),
        })
        .collect();
    let mut runs = Vec::new();
    for transport in ["smtp", "outpost"] {
        let sink = support::SmtpSink::start(&bins[0], &dir, &[], support::Listen::Tcp);
        let pf = Instance::start_with(
            &format!("dest.test {transport}:{}\n", sink.dest_tcp()),
            "",
            true,
        );
        let mut args = vec!["-i", "-f", "s@sender.test"];
        args.extend(mail_rcpts.iter().map(String::as_str));
        pf.sendmail(&args, &msg);
        let out = Command::new(&bins[1])
            .args([
                "-M",
                "source.test",
                "-f",
                "s@sender.test",
                "-t",
                "src@dest.test",
            ])
            .args(["-r", "5", "-F"])
            .arg(&src_file)
            .arg(format!("127.0.0.1:{}", pf.smtpd_port))
            .output()
            .expect("run smtp-source");
        assert!(
            out.status.success(),
            "smtp-source: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let needles: Vec<String> = mail_rcpts
            .iter()
            .chain(&src_rcpts)
            .map(|r| format!("to=<{r}>"))
            .collect();
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let log = pf.wait_log(&needles);
        let diag = || format!("[{transport}]\n{}\n{}", pf.maillog(), sink.show());
        // Exactly one outcome per recipient, and it is a delivery.
        for r in mail_rcpts.iter().chain(&src_rcpts) {
            let l = agent_lines(&log, "smtp", r);
            assert!(
                l.len() == 1 && l[0].contains(", dsn=2.0.0, status=sent (250 "),
                "{r}: {l:#?}\n{}",
                diag()
            );
        }
        let dumps = sink.dumps(2).unwrap_or_else(|e| panic!("{e}\n{}", diag()));
        // Nothing else arrives (no second copy of either message).
        std::thread::sleep(Duration::from_millis(300));
        let dumps_now = sink.dumps(2).unwrap_or_else(|e| panic!("{e}\n{}", diag()));
        assert_eq!(dumps_now.len(), 2, "{}", diag());
        let rcpts_of = |d: &support::Dump| -> Vec<String> {
            let mut v: Vec<String> = d
                .all("X-Rcpt-Args")
                .iter()
                .map(|a| a.split(' ').next().unwrap_or_default().to_string())
                .collect();
            v.sort();
            v
        };
        let want = |rs: &[String]| -> Vec<String> {
            let mut v: Vec<String> = rs.iter().map(|r| format!("<{r}>")).collect();
            v.sort();
            v
        };
        let by_mail = dumps
            .iter()
            .find(|d| rcpts_of(d).contains(&"<r1@dest.test>".to_string()))
            .unwrap_or_else(|| panic!("sendmail's message not received\n{}", diag()));
        let by_source = dumps
            .iter()
            .find(|d| rcpts_of(d).contains(&"<2src@dest.test>".to_string()))
            .unwrap_or_else(|| panic!("smtp-source's message not received\n{}", diag()));
        assert_eq!(rcpts_of(by_mail), want(&mail_rcpts), "{}", diag());
        assert_eq!(rcpts_of(by_source), want(&src_rcpts), "{}", diag());
        // Byte-exact: what the sink stored is the input (after cleanup's Received:).
        let (_, stored) = support::strip_added_headers(&by_mail.data, &["Received"]);
        assert_bytes(
            &expected_stored(&msg),
            stored,
            &format!("[{transport}] sendmail message at smtp-sink"),
        );
        let (_, stored) = support::strip_added_headers(&by_source.data, &["Received"]);
        // smtp-source ends its -F data with one more CRLF (smtp_fputs), an empty line.
        let mut src_sent = src_body.clone();
        src_sent.extend_from_slice(b"\n\n");
        assert_bytes(
            &expected_stored(&src_sent),
            stored,
            &format!("[{transport}] smtp-source message at smtp-sink"),
        );
        // Envelopes: the dump headers with SIZE= normalised (when the peer offers SIZE),
        // and SIZE relative to the stored data, whose length varies with the queue id.
        let envelope = |d: &support::Dump| -> (Vec<(String, String)>, Option<i64>) {
            let mut size = None;
            let h = d
                .headers
                .iter()
                .filter(|(n, _)| n != "Received")
                .map(|(n, v)| {
                    if n == "X-Mail-Args" {
                        let (norm, s) = split_size(v);
                        size = (s >= 0).then(|| s - d.data.len() as i64);
                        (n.clone(), norm)
                    } else {
                        (n.clone(), v.clone())
                    }
                })
                .collect();
            (h, size)
        };
        runs.push((
            agent_log(&log, "smtp"),
            envelope(by_mail),
            envelope(by_source),
            without_run_headers(&by_mail.data),
            without_run_headers(&by_source.data),
        ));
    }
    let (pf, op) = (&runs[0], &runs[1]);
    assert_eq!(op.0, pf.0, "log lines: Outpost vs Postfix smtp");
    assert_eq!(
        op.1, pf.1,
        "sendmail message envelope: Outpost vs Postfix smtp"
    );
    assert_eq!(
        op.2, pf.2,
        "smtp-source message envelope: Outpost vs Postfix smtp"
    );
    assert_bytes(&pf.3, &op.3, "sendmail message: Outpost vs Postfix smtp");
    assert_bytes(&pf.4, &op.4, "smtp-source message: Outpost vs Postfix smtp");
}

/// dovecot LMTP as the final peer of the lmtp service over a UNIX socket: three known
/// users get the message byte-exact in their maildirs, an unknown one is bounced with
/// dovecot's 5.1.1 text, each recipient has exactly one outcome, and the log lines, the
/// stored messages and the bounce are the same as with Postfix's lmtp.
#[test]
fn dovecot_lmtp_peer_per_recipient_like_postfix_lmtp() {
    if !usable() {
        return;
    }
    let Some(bins) = support::require(&["dovecot", "/usr/lib/dovecot/lmtp"]) else {
        return;
    };
    let dir = support::TestDir::new("daemon-dovecot");
    let msg = support::tricky_message();
    let users = ["alice@lmtp.test", "bob@lmtp.test", "dave@lmtp.test"];
    let mut runs = Vec::new();
    for transport in ["lmtp", "outpost-lmtp"] {
        let dc = support::Dovecot::start(&bins[0], &dir, &users);
        let senders = Sink::start(&[]);
        let sock = dc.socket.display().to_string();
        let pf = Instance::start(
            &format!(
                "lmtp.test {transport}:unix:{sock}\nsender.test outpost:[127.0.0.1]:{}\n",
                senders.port()
            ),
            "",
        );
        pf.sendmail(
            &[
                "-i",
                "-f",
                "s@sender.test",
                "alice@lmtp.test",
                "bob@lmtp.test",
                "carol@lmtp.test",
                "dave@lmtp.test",
            ],
            &msg,
        );
        let log = pf.wait_log(&[
            "to=<alice@lmtp.test>",
            "to=<bob@lmtp.test>",
            "to=<carol@lmtp.test>",
            "to=<dave@lmtp.test>",
            "sender non-delivery notification",
            "to=<s@sender.test>",
        ]);
        let diag = || format!("[{transport}]\n{}\n{}", pf.maillog(), dc.show());
        for u in users {
            let l = agent_lines(&log, "lmtp", u);
            assert!(
                l.len() == 1
                    && l[0].contains(&format!(", dsn=2.0.0, status=sent (250 2.0.0 <{u}> ")),
                "{u}: {l:#?}\n{}",
                diag()
            );
            let m = dc.messages(u);
            assert_eq!(m.len(), 1, "{u}: one message in the maildir\n{}", diag());
            let (added, rest) =
                support::strip_added_headers(&m[0].1, &["Return-Path", "Delivered-To", "Received"]);
            assert_eq!(
                added.first().map(String::as_str),
                Some("Return-Path: <s@sender.test>\n"),
                "{}",
                diag()
            );
            assert_bytes(
                &expected_stored(&msg),
                rest,
                &format!("[{transport}] maildir of {u}"),
            );
        }
        let l = agent_lines(&log, "lmtp", "carol@lmtp.test");
        let want = format!(
            ", dsn=5.1.1, status=bounced (host postfix.test[{sock}] said: 550 5.1.1 \
             <carol@lmtp.test> User doesn't exist: carol@lmtp.test (in reply to RCPT TO command))"
        );
        assert!(
            l.len() == 1 && l[0].ends_with(&want),
            "carol: {l:#?}, want ...{want}\n{}",
            diag()
        );
        assert!(dc.messages("carol@lmtp.test").is_empty(), "{}", diag());
        let t = Instant::now();
        while senders.messages().is_empty() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(senders.messages().len(), 1, "one bounce\n{}", diag());
        let bounce = String::from_utf8_lossy(&senders.body(0)).to_string();
        let unfolded = unfold(&bounce);
        assert!(
            unfolded.contains("Final-Recipient: rfc822; carol@lmtp.test")
                && unfolded.contains("Status: 5.1.1")
                && unfolded.contains(
                    "Diagnostic-Code: smtp; 550 5.1.1 <carol@lmtp.test> User doesn't exist: carol@lmtp.test\r\n"
                )
                && unfolded.contains(&format!(
                    "<carol@lmtp.test>: host postfix.test[{sock}] said: 550 5.1.1 <carol@lmtp.test> \
                     User doesn't exist: carol@lmtp.test (in reply to RCPT TO command)\r\n"
                ))
                && !unfolded.contains("alice@lmtp.test"),
            "{unfolded}"
        );
        // For the comparison: dovecot's per-delivery ids and the socket path vary by run.
        let lines: Vec<String> = agent_log(&log, "lmtp")
            .iter()
            .map(|l| {
                let l = l.replace(&sock, "SOCK");
                match (l.find("> "), l.find(" Saved)")) {
                    (Some(a), Some(b)) if a < b => format!("{}> ID{}", &l[..a], &l[b..]),
                    _ => l,
                }
            })
            .collect();
        let stored: Vec<Vec<u8>> = users
            .iter()
            .map(|u| {
                without_run_headers(
                    support::strip_added_headers(
                        &dc.messages(u)[0].1,
                        &["Return-Path", "Delivered-To"],
                    )
                    .1,
                )
            })
            .collect();
        runs.push((
            lines,
            stored,
            replace_all(&normalise_bounce(&bounce), &sock, "SOCK"),
            unfolded.replace(&sock, "SOCK"),
        ));
    }
    let (pf, op) = (&runs[0], &runs[1]);
    assert_eq!(op.0, pf.0, "log lines: Outpost vs Postfix lmtp");
    for (i, u) in users.iter().enumerate() {
        assert_bytes(
            &pf.1[i],
            &op.1[i],
            &format!("maildir of {u}: Outpost vs Postfix lmtp"),
        );
    }
    let diag = |b: &str| {
        b.lines()
            .filter(|l| l.starts_with("Diagnostic-Code") || l.contains("said:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(op.2, pf.2, "bounce: Outpost vs Postfix lmtp");
    assert_eq!(
        diag(&op.3),
        diag(&pf.3),
        "bounce texts: Outpost vs Postfix lmtp"
    );
}

/// dovecot LMTP over TCP (lmtp:inet:127.0.0.1:PORT) with a per-recipient failure after
/// the data: eve's quota (1K) is too small for the message, so dovecot answers 5xx for her
/// at the end of data while alice and bob get 250. Each is delivered or bounced exactly
/// once, eve's bounce quotes dovecot's reply "in reply to end of DATA command", and the
/// log lines and the bounce are the same as with Postfix's lmtp.
#[test]
fn dovecot_lmtp_inet_quota_after_data_like_postfix_lmtp() {
    if !usable() {
        return;
    }
    let Some(bins) = support::require(&["dovecot", "/usr/lib/dovecot/lmtp"]) else {
        return;
    };
    let dir = support::TestDir::new("daemon-dovecot-inet");
    let msg = support::tricky_message();
    let users = ["alice@lmtp.test", "bob@lmtp.test", "eve@lmtp.test"];
    let mut runs = Vec::new();
    for transport in ["lmtp", "outpost-lmtp"] {
        let port = support::free_port();
        let dc = support::Dovecot::start_with(
            &bins[0],
            &dir,
            &users,
            &[("eve@lmtp.test", "userdb_quota_rule=*:storage=1K")],
            Some(port),
            "mail_plugins = $mail_plugins quota\nplugin {\n  quota = maildir:User quota\n}\n",
        );
        let senders = Sink::start(&[]);
        let pf = Instance::start(
            &format!(
                "lmtp.test {transport}:inet:127.0.0.1:{port}\nsender.test outpost:[127.0.0.1]:{}\n",
                senders.port()
            ),
            "",
        );
        pf.sendmail(
            &[
                "-i",
                "-f",
                "s@sender.test",
                "alice@lmtp.test",
                "bob@lmtp.test",
                "eve@lmtp.test",
            ],
            &msg,
        );
        let log = pf.wait_log(&[
            "to=<alice@lmtp.test>",
            "to=<bob@lmtp.test>",
            "to=<eve@lmtp.test>",
            "sender non-delivery notification",
            "to=<s@sender.test>",
        ]);
        let diag = || format!("[{transport}]\n{}\n{}", pf.maillog(), dc.show());
        let relay = format!("relay=127.0.0.1[127.0.0.1]:{port}, ");
        for u in ["alice@lmtp.test", "bob@lmtp.test"] {
            let l = agent_lines(&log, "lmtp", u);
            assert!(
                l.len() == 1
                    && l[0].contains(&relay)
                    && l[0].contains(&format!(", dsn=2.0.0, status=sent (250 2.0.0 <{u}> ")),
                "{u}: {l:#?}\n{}",
                diag()
            );
            let m = dc.messages(u);
            assert_eq!(m.len(), 1, "{u}: one message in the maildir\n{}", diag());
            let (_, rest) =
                support::strip_added_headers(&m[0].1, &["Return-Path", "Delivered-To", "Received"]);
            assert_bytes(
                &expected_stored(&msg),
                rest,
                &format!("[{transport}] maildir of {u}"),
            );
        }
        let l = agent_lines(&log, "lmtp", "eve@lmtp.test");
        assert!(
            l.len() == 1
                && l[0].contains(&relay)
                && l[0].contains(", status=bounced (host 127.0.0.1[127.0.0.1] said: 5")
                && l[0].ends_with(" (in reply to end of DATA command))"),
            "eve: {l:#?}\n{}",
            diag()
        );
        assert!(dc.messages("eve@lmtp.test").is_empty(), "{}", diag());
        let t = Instant::now();
        while senders.messages().is_empty() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(senders.messages().len(), 1, "one bounce\n{}", diag());
        let bounce = unfold(&String::from_utf8_lossy(&senders.body(0)));
        assert!(
            bounce.contains("Final-Recipient: rfc822; eve@lmtp.test")
                && !bounce.contains("Final-Recipient: rfc822; alice@lmtp.test")
                && !bounce.contains("Final-Recipient: rfc822; bob@lmtp.test"),
            "{bounce}"
        );
        let texts: Vec<String> = bounce
            .lines()
            .filter(|l| l.starts_with("Diagnostic-Code") || l.contains(" said: "))
            .map(normalise_ports)
            .collect();
        runs.push((
            agent_log(&log, "lmtp")
                .iter()
                .map(|l| match (l.find("> "), l.find(" Saved)")) {
                    (Some(a), Some(b)) if a < b => format!("{}> ID{}", &l[..a], &l[b..]),
                    _ => l.clone(),
                })
                .collect::<Vec<_>>(),
            normalise_bounce(&bounce),
            texts,
        ));
    }
    let (pf, op) = (&runs[0], &runs[1]);
    assert_eq!(op.0, pf.0, "log lines: Outpost vs Postfix lmtp");
    assert_eq!(op.1, pf.1, "bounce: Outpost vs Postfix lmtp");
    assert_eq!(op.2, pf.2, "bounce texts: Outpost vs Postfix lmtp");
}

/// A 4xx for one recipient after the data (dovecot with quota_full_tempfail: 452 4.2.2
/// for eve over quota, 250 for alice): alice is delivered once, eve stays in the queue;
/// once her quota is raised the retry delivers her, and only her (alice still has exactly
/// one copy and one log line). The first attempt logs the same as Postfix's lmtp.
#[test]
fn dovecot_lmtp_tempfail_after_data_retries_only_that_recipient() {
    if !usable() {
        return;
    }
    let Some(bins) = support::require(&["dovecot", "/usr/lib/dovecot/lmtp"]) else {
        return;
    };
    let dir = support::TestDir::new("daemon-dovecot-tempfail");
    let msg = support::tricky_message();
    let users = ["alice@lmtp.test", "eve@lmtp.test"];
    let mut runs = Vec::new();
    for transport in ["lmtp", "outpost-lmtp"] {
        let dc = support::Dovecot::start_with(
            &bins[0],
            &dir,
            &users,
            &[("eve@lmtp.test", "userdb_quota_rule=*:storage=1K")],
            None,
            "mail_plugins = $mail_plugins quota\nquota_full_tempfail = yes\n\
             plugin {\n  quota = maildir:User quota\n}\n",
        );
        let sock = dc.socket.display().to_string();
        // A retry due 1 s after the deferral can find the queue file still locked by the
        // agent that reported it; qmgr then logs "skipped, still being delivered" and
        // leaves it in active/ until it restarts (seen with Postfix's own lmtp): 2 s.
        let pf = Instance::start(
            &format!("lmtp.test {transport}:unix:{sock}\n"),
            "minimal_backoff_time = 2s\nmaximal_backoff_time = 2s",
        );
        pf.sendmail(
            &[
                "-i",
                "-f",
                "s@sender.test",
                "alice@lmtp.test",
                "eve@lmtp.test",
            ],
            &msg,
        );
        let diag = || format!("[{transport}]\n{}\n{}", pf.maillog(), dc.show());
        let deferred = format!(
            ", dsn=4.2.2, status=deferred (host postfix.test[{sock}] said: 452 4.2.2 \
             <eve@lmtp.test> Quota exceeded (mailbox for user is full) (in reply to end of DATA \
             command))"
        );
        // The first attempt: alice delivered, eve deferred and still queued.
        let t = Instant::now();
        let log = loop {
            let log = pf.maillog();
            if !agent_lines(&log, "lmtp", "eve@lmtp.test").is_empty() {
                break log;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "no retry\n{}",
                diag()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        for l in agent_lines(&log, "lmtp", "eve@lmtp.test") {
            assert!(
                l.ends_with(&deferred),
                "eve: {l}\nwant ...{deferred}\n{}",
                diag()
            );
        }
        let q = pf.mailq();
        assert!(
            q.contains("eve@lmtp.test") && !q.contains("alice@lmtp.test"),
            "{q}\n{}",
            diag()
        );
        // Raise eve's quota (Maildir++ keeps the old limit in maildirsize when the rule is
        // merely removed): the next attempt delivers her, and only her.
        std::fs::write(
            dc.conf.parent().expect("dir").join("users"),
            "alice@lmtp.test:::::::\neve@lmtp.test:::::::userdb_quota_rule=*:storage=100M\n",
        )
        .expect("rewrite users");
        let t = Instant::now();
        let log = loop {
            let log = pf.maillog();
            if agent_lines(&log, "lmtp", "eve@lmtp.test")
                .iter()
                .any(|l| l.contains(" status=sent "))
            {
                break log;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "eve not delivered\n{}",
                diag()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let alice = agent_lines(&log, "lmtp", "alice@lmtp.test");
        assert!(
            alice.len() == 1 && alice[0].contains(" status=sent (250 2.0.0 <alice@lmtp.test> "),
            "alice: {alice:#?}\n{}",
            diag()
        );
        for u in users {
            let m = dc.messages(u);
            assert_eq!(m.len(), 1, "{u}: exactly one message\n{}", diag());
            let (_, rest) =
                support::strip_added_headers(&m[0].1, &["Return-Path", "Delivered-To", "Received"]);
            assert_bytes(
                &expected_stored(&msg),
                rest,
                &format!("[{transport}] maildir of {u}"),
            );
        }
        let t = Instant::now();
        while !pf.mailq().contains("Mail queue is empty") {
            assert!(t.elapsed() < Duration::from_secs(10), "{}", pf.mailq());
            std::thread::sleep(Duration::from_millis(100));
        }
        // The first attempt, for the comparison.
        let first: Vec<String> = ["alice@lmtp.test", "eve@lmtp.test"]
            .iter()
            .map(|u| {
                let l = agent_lines(&log, "lmtp", u)[0].replace(&sock, "SOCK");
                let l = l
                    .split_once(": to=<")
                    .map(|(_, r)| r)
                    .unwrap_or(&l)
                    .to_string();
                let l: Vec<&str> = l.split(", ").filter(|f| !f.starts_with("delay")).collect();
                let l = l.join(", ");
                match (l.find("> "), l.find(" Saved)")) {
                    (Some(a), Some(b)) if a < b => format!("{}> ID{}", &l[..a], &l[b..]),
                    _ => l,
                }
            })
            .collect();
        runs.push(first);
    }
    assert_eq!(runs[1], runs[0], "first attempt: Outpost vs Postfix lmtp");
}

/// Join folded lines (CRLF followed by white space) as a reader of the header would.
fn unfold(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\r\n") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let trimmed = after.trim_start_matches([' ', '\t']);
        if trimmed.len() < after.len() && !trimmed.starts_with("\r\n") && !trimmed.is_empty() {
            out.push(' ');
            rest = trimmed;
        } else {
            out.push_str("\r\n");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A scripted SMTP server that records every line it receives, per connection, and
/// "<EOF>" when the client closes. RCPT for a local part starting with "bad" gets 550.
fn recording_server() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let rec = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<String>>::new()));
    let r2 = rec.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(s) = conn else { continue };
            let idx = {
                let mut g = r2.lock().expect("lock");
                g.push(Vec::new());
                g.len() - 1
            };
            let r3 = r2.clone();
            std::thread::spawn(move || {
                let push = |line: String| r3.lock().expect("lock")[idx].push(line);
                let Ok(mut w) = s.try_clone() else { return };
                let _ = w.write_all(b"220 rec.test ESMTP\r\n");
                let mut r = BufReader::new(s);
                let mut line = String::new();
                let mut in_data = false;
                loop {
                    line.clear();
                    if !r.read_line(&mut line).map(|k| k > 0).unwrap_or(false) {
                        push("<EOF>".into());
                        return;
                    }
                    let cmd = line.trim_end_matches(['\r', '\n']).to_string();
                    if in_data {
                        if cmd == "." {
                            in_data = false;
                            push(".".into());
                            let _ = w.write_all(b"250 2.0.0 Ok: queued\r\n");
                        } else {
                            push(format!("data: {cmd}"));
                        }
                        continue;
                    }
                    push(cmd.clone());
                    let up = cmd.to_ascii_uppercase();
                    let reply: &[u8] = if up.starts_with("EHLO") {
                        b"250-rec.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n"
                    } else if up.starts_with("RCPT TO:<BAD") {
                        b"550 5.1.1 <bad>: Recipient address rejected: no such user\r\n"
                    } else if up.starts_with("DATA") {
                        in_data = true;
                        b"354 End data with <CR><LF>.<CR><LF>\r\n"
                    } else if up.starts_with("QUIT") {
                        let _ = w.write_all(b"221 2.0.0 Bye\r\n");
                        push("<EOF>".into());
                        return;
                    } else {
                        b"250 2.0.0 Ok\r\n"
                    };
                    let _ = w.write_all(reply);
                }
            });
        }
    });
    (port, rec)
}

/// An SMTP client dialogue with the instance's smtpd: the reply to each command.
fn smtpd_replies(port: u16, cmds: &[&str]) -> Vec<String> {
    use std::io::{BufRead, BufReader, Write};
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect smtpd");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let read_reply = |r: &mut BufReader<std::net::TcpStream>| {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(line.trim_end());
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
            all.push('|');
        }
    };
    let _ = read_reply(&mut r);
    cmds.iter()
        .map(|c| {
            let _ = w.write_all(format!("{c}\r\n").as_bytes());
            read_reply(&mut r)
        })
        .collect()
}

/// smtp_address_verify_target = data, end to end: a sendmail -bv probe and smtpd's
/// reject_unverified_recipient probes go MAIL, RCPT, DATA and hang up at the 354 without
/// sending data or QUIT (smtp_proto.c); the recipient the server took is "deliverable"
/// with the 354 text and dsn 2.0.0, the refused one "undeliverable"; smtpd accepts and
/// rejects on that result. Server dialogues, log lines, the -bv report and smtpd's replies
/// are the same with Postfix's smtp.
#[test]
fn verify_target_data_probes_like_postfix_smtp() {
    if !usable() {
        return;
    }
    let mut runs = Vec::new();
    for transport in ["smtp", "outpost"] {
        let (port, rec) = recording_server();
        let senders = Sink::start(&[]);
        let pf = Instance::start_with(
            &format!(
                "vrfy.test {transport}:[127.0.0.1]:{port}\nsender.test outpost:[127.0.0.1]:{}\n",
                senders.port()
            ),
            "smtp_address_verify_target = data\naddress_verify_poll_delay = 1s\n\
             smtpd_recipient_restrictions = reject_unverified_recipient\n\
             unverified_recipient_reject_code = 550",
            true,
        );
        pf.sendmail(
            &[
                "-bv",
                "-f",
                "s@sender.test",
                "probe@vrfy.test",
                "bad1@vrfy.test",
            ],
            b"",
        );
        let log = pf.wait_log(&[
            "to=<probe@vrfy.test>",
            "to=<bad1@vrfy.test>",
            "to=<s@sender.test>",
        ]);
        let diag = || {
            format!(
                "[{transport}]\n{}\nserver: {:#?}",
                pf.maillog(),
                rec.lock().expect("lock")
            )
        };
        let probe = agent_lines(&log, "smtp", "probe@vrfy.test");
        assert!(
            probe.len() == 1
                && probe[0].ends_with(
                    ", dsn=2.0.0, status=deliverable (354 End data with <CR><LF>.<CR><LF>)"
                ),
            "{probe:#?}\n{}",
            diag()
        );
        let bad = agent_lines(&log, "smtp", "bad1@vrfy.test");
        assert!(
            bad.len() == 1
                && bad[0].contains(", dsn=5.1.1, status=undeliverable (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <bad>: Recipient address rejected: no such user (in reply to RCPT TO command))"),
            "{bad:#?}\n{}",
            diag()
        );
        // Address verification through smtpd: the verify service's probes.
        let replies = smtpd_replies(
            pf.smtpd_port,
            &[
                "EHLO client.test",
                "MAIL FROM:<c@client.test>",
                "RCPT TO:<ok2@vrfy.test>",
                "RCPT TO:<bad2@vrfy.test>",
                "QUIT",
            ],
        );
        pf.wait_log(&["to=<ok2@vrfy.test>", "to=<bad2@vrfy.test>"]);
        assert!(replies[2].starts_with("250 "), "{replies:#?}\n{}", diag());
        assert!(
            replies[3].starts_with("550 5.1.1 "),
            "{replies:#?}\n{}",
            diag()
        );
        // The server's view: no message data, no RSET, no QUIT after DATA.
        let t = Instant::now();
        let sessions = loop {
            let s = rec.lock().expect("lock").clone();
            if s.len() >= 3
                && s.iter()
                    .all(|c| c.last().map(String::as_str) == Some("<EOF>"))
            {
                break s;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "{}", diag());
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut normalised: Vec<Vec<String>> = sessions
            .iter()
            .map(|s| s.iter().map(|l| split_size(l).0).collect())
            .collect();
        normalised.sort();
        for s in &normalised {
            let tail: Vec<&str> = s.iter().rev().take(2).rev().map(String::as_str).collect();
            // A session with a bad recipient only never reaches DATA (RSET/QUIT instead).
            if s.iter()
                .any(|l| l.starts_with("RCPT TO:<probe") || l.starts_with("RCPT TO:<ok2"))
            {
                assert_eq!(tail, ["DATA", "<EOF>"], "{s:#?}\n{}", diag());
            }
            assert!(!s.iter().any(|l| l.starts_with("data: ")), "{s:#?}");
        }
        runs.push((agent_log(&pf.maillog(), "smtp"), normalised, replies, {
            let t = Instant::now();
            while senders.messages().is_empty() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(100));
            }
            normalise_bounce(&String::from_utf8_lossy(&senders.body(0)))
        }));
    }
    let (pf, op) = (&runs[0], &runs[1]);
    assert_eq!(op.0, pf.0, "log lines: Outpost vs Postfix smtp");
    assert_eq!(op.1, pf.1, "server dialogues: Outpost vs Postfix smtp");
    assert_eq!(op.2, pf.2, "smtpd replies: Outpost vs Postfix smtp");
    assert_eq!(op.3, pf.3, "-bv report: Outpost vs Postfix smtp");
}

/// 50 messages (smtp-source -m 50 -N, one recipient each) held, then released at once
/// and drained by Outpost to smtp-sink: every recipient has exactly one log line, sent;
/// the sink has exactly 50 transactions, each recipient once; the queue ends empty.
#[test]
fn drains_fifty_queued_messages_once_each() {
    if !usable() {
        return;
    }
    let Some(bins) = support::require(&["smtp-sink", "smtp-source", "postsuper"]) else {
        return;
    };
    const N: usize = 50;
    let dir = support::TestDir::new("daemon-drain");
    let sink = support::SmtpSink::start(&bins[0], &dir, &[], support::Listen::Tcp);
    let pf = Instance::start_with(
        &format!("dest.test outpost:{}\n", sink.dest_tcp()),
        "header_checks = regexp:$config_directory/hold_re",
        true,
    );
    std::fs::write(pf.conf.join("hold_re"), "/^Subject: drain me/ HOLD\n").expect("write");
    let out = Command::new(&bins[1])
        .args([
            "-s",
            "5",
            "-m",
            &N.to_string(),
            "-N",
            "-S",
            "drain me",
            "-l",
            "2000",
        ])
        .args([
            "-M",
            "source.test",
            "-f",
            "s@sender.test",
            "-t",
            "d@dest.test",
        ])
        .arg(format!("127.0.0.1:{}", pf.smtpd_port))
        .output()
        .expect("run smtp-source");
    assert!(
        out.status.success(),
        "smtp-source: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = |sub: &str| {
        std::fs::read_dir(pf.queue_dir().join(sub))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let t = Instant::now();
    while count("hold") < N {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{} of {N} held\n{}",
            count("hold"),
            pf.maillog()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("postsuper")
        .arg("-c")
        .arg(&pf.conf)
        .args(["-H", "ALL"])
        .output();
    let rcpts: Vec<String> = (1..=N).map(|i| format!("{i}d@dest.test")).collect();
    let t = Instant::now();
    let log = loop {
        let log = pf.maillog();
        let sent = log
            .lines()
            .filter(|l| l.contains("postfix/smtp[") && l.contains(" status=sent "))
            .count();
        if sent >= N {
            break log;
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "{sent} of {N} sent\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for r in &rcpts {
        let l = agent_lines(&log, "smtp", r);
        assert!(
            l.len() == 1 && l[0].contains(", dsn=2.0.0, status=sent (250 "),
            "{r}: {l:#?}\n{log}"
        );
    }
    assert_eq!(
        log.lines().filter(|l| l.contains("postfix/smtp[")).count(),
        N,
        "only delivery lines from the agent, one per recipient:\n{log}"
    );
    let dumps = sink
        .dumps(N)
        .unwrap_or_else(|e| panic!("{e}\n{}", sink.show()));
    std::thread::sleep(Duration::from_millis(300));
    let dumps_now = sink.dumps(N).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dumps_now.len(), N, "no duplicate transactions");
    let mut got: Vec<String> = dumps
        .iter()
        .flat_map(|d| {
            d.all("X-Rcpt-Args")
                .into_iter()
                .map(|a| a.split(' ').next().unwrap_or_default().to_string())
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = rcpts.iter().map(|r| format!("<{r}>")).collect();
    want.sort();
    assert_eq!(got, want, "each recipient exactly once at the sink");
    for d in &dumps {
        let (_, body) = support::strip_added_headers(&d.data, &["Received"]);
        assert!(
            body.windows(17).any(|w| w == b"Subject: drain me"),
            "{}",
            String::from_utf8_lossy(&d.data)
        );
    }
    let t = Instant::now();
    while !pf.mailq().contains("Mail queue is empty") {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "queue not empty: {}",
            pf.mailq()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // No queue file left anywhere (deferred/ and defer/ are hashed: walk them).
    fn files(p: &Path) -> usize {
        std::fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .map(|e| match e.file_type() {
                        Ok(t) if t.is_dir() => files(&e.path()),
                        _ => 1,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    for q in ["incoming", "active", "deferred", "defer", "hold", "corrupt"] {
        assert_eq!(
            files(&pf.queue_dir().join(q)),
            0,
            "{q}/ not empty\n{}",
            pf.maillog()
        );
    }
}

/// Connection reuse through Postfix's scache(8): with caching on for the destination and
/// one delivery at a time, later messages go over the connection the first one opened
/// (RSET probe, no new EHLO), logged with conn_use=N, exactly as with Postfix's smtp.
#[test]
fn reuses_connections_through_scache_like_postfix_smtp() {
    if !usable() {
        return;
    }
    const N: usize = 6;
    let mut runs = Vec::new();
    for transport in ["smtp", "outpost"] {
        let sink = Sink::start(&[]);
        let map = format!("dest.test {transport}:[127.0.0.1]:{}\n", sink.port());
        let pf = Instance::start(
            &map,
            "smtp_connection_cache_destinations = 127.0.0.1\n\
             smtp_destination_concurrency_limit = 1\noutpost_destination_concurrency_limit = 1\n\
             smtp_connection_cache_time_limit = 10s\n",
        );
        for i in 0..N {
            pf.sendmail(&["-f", "s@sender.test", &format!("r{i}@dest.test")], MSG);
        }
        let needles: Vec<String> = (0..N).map(|i| format!("to=<r{i}@dest.test>")).collect();
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let log = pf.wait_log(&needles);
        let lines = delivery_lines(&log, "smtp");
        assert_eq!(lines.len(), N, "{log}");
        assert!(lines.iter().all(|l| l.contains("status=sent")), "{log}");
        let reused = lines.iter().filter(|l| l.contains("conn_use=")).count();
        assert!(reused >= 1, "{transport}: no reused connection:\n{log}");
        // The cache closes idle connections when postfix stops; then every session's
        // wire log is written.
        drop(pf);
        let t = Instant::now();
        let mut dialogue = sink.dialogue();
        while dialogue.matches("MAIL FROM").count() < N && t.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(200));
            dialogue = sink.dialogue();
        }
        let sessions = dialogue.matches("EHLO ").count();
        assert_eq!(dialogue.matches("MAIL FROM").count(), N, "{dialogue}");
        assert!(
            sessions < N,
            "{transport}: {sessions} sessions for {N} messages"
        );
        // Each reuse starts with the RSET probe.
        assert!(dialogue.matches("RSET").count() >= reused, "{dialogue}");
        let norm: Vec<String> = lines
            .iter()
            .map(|l| {
                l.split(", ")
                    .filter(|f| !f.starts_with("conn_use="))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .map(|l| normalise_ports(&l))
            .collect();
        runs.push(norm);
    }
    assert_eq!(runs[1], runs[0]);
}

/// A cached connection that the server dropped: the RSET probe fails, and the message goes
/// over a new connection without a deferral; what is logged matches Postfix's smtp.
#[test]
fn dead_cached_connection_is_replaced_like_postfix_smtp() {
    if !usable() {
        return;
    }
    const N: usize = 3;
    let mut runs = Vec::new();
    for transport in ["smtp", "outpost"] {
        let sink = Sink::start(&["--reply", "rset#1=disconnect"]);
        let map = format!("dest.test {transport}:[127.0.0.1]:{}\n", sink.port());
        let pf = Instance::start(
            &map,
            "smtp_connection_cache_destinations = 127.0.0.1\n\
             smtp_destination_concurrency_limit = 1\noutpost_destination_concurrency_limit = 1\n\
             smtp_connection_cache_time_limit = 10s\n",
        );
        for i in 0..N {
            pf.sendmail(&["-f", "s@sender.test", &format!("r{i}@dest.test")], MSG);
        }
        let needles: Vec<String> = (0..N).map(|i| format!("to=<r{i}@dest.test>")).collect();
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let log = pf.wait_log(&needles);
        let lines = delivery_lines(&log, "smtp");
        assert_eq!(lines.len(), N, "{log}");
        assert!(lines.iter().all(|l| l.contains("status=sent")), "{log}");
        // No reuse succeeded: every probe met a closed connection.
        assert!(lines.iter().all(|l| !l.contains("conn_use=")), "{log}");
        let probe: Vec<String> = log
            .lines()
            .filter(|l| l.contains("RSET probe"))
            .filter_map(|l| l.split_once("]: ").map(|(_, r)| r.to_string()))
            .map(|l| normalise_ports(l.split_once(": ").map(|x| x.1).unwrap_or(&l)))
            .collect();
        // The sink did drop each reused connection at the probe.
        let t = Instant::now();
        while sink.dialogue().matches("RSET").count() < N - 1
            && t.elapsed() < Duration::from_secs(15)
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            sink.dialogue().matches("RSET").count() >= N - 1,
            "{}",
            sink.dialogue()
        );
        runs.push((lines, probe));
    }
    let norm = |v: &Vec<String>| -> Vec<String> { v.iter().map(|l| normalise_ports(l)).collect() };
    assert_eq!(norm(&runs[1].0), norm(&runs[0].0));
    assert_eq!(runs[1].1, runs[0].1);
}

/// best_mx_transport applies to destinations whose best MX is this host (found while
/// routing); a server that merely answers EHLO with our name is a session-level loop,
/// and Postfix bounces it even with best_mx_transport set. Outpost must do the same.
#[test]
fn ehlo_loop_bounces_despite_best_mx_transport_like_postfix_smtp() {
    if !usable() {
        return;
    }
    // A server on port 25 that calls itself by our name: "mail loops back to myself".
    let Ok(probe) = std::net::TcpListener::bind("127.0.0.2:25") else {
        eprintln!("SKIP: 127.0.0.2:25 is not available");
        return;
    };
    drop(probe);
    let mut runs = Vec::new();
    for transport in ["smtp", "outpost"] {
        let looping = Sink::start(&["--hostname", "postfix.test", "LISTEN=127.0.0.2:25"]);
        let other = Sink::start(&[]);
        let map = format!("loop.test {transport}:[127.0.0.2]:25\n");
        let pf = Instance::start(
            &map,
            &format!(
                "best_mx_transport = outpost-relay:[127.0.0.1]:{}\n",
                other.port()
            ),
        );
        pf.sendmail(&["-f", "s@sender.test", "r@loop.test"], MSG);
        let log = pf.wait_log(&["to=<r@loop.test>", "loops back to myself"]);
        assert!(!log.contains("passing <"), "{log}");
        assert!(other.messages().is_empty());
        assert!(looping.messages().is_empty());
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains("own hostname") || l.contains("to=<r@loop.test>"))
            .filter_map(|l| l.split_once("]: ").map(|(_, r)| r.to_string()))
            .map(|l| {
                l.split(", ")
                    .filter(|f| !f.starts_with("delay"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .map(|l| normalise_ports(&l))
            .map(|l| match l.split_once(": to=") {
                Some((_, rest)) => format!("to={rest}"),
                None => l,
            })
            .collect();
        assert_eq!(lines.len(), 3, "{log}");
        runs.push(lines);
        drop(pf);
        drop(looping);
    }
    assert_eq!(runs[1], runs[0]);
}

/// max_use and max_idle given with -o in master.cf: an agent serves at most max_use
/// requests, and exits when idle for max_idle; the next request then gets a new process.
/// Checked for Postfix's smtp and Outpost alike, by the pids in the delivery lines.
#[test]
fn max_use_and_max_idle_end_agent_processes_like_postfix_smtp() {
    if !usable() {
        return;
    }
    let sink = Sink::start(&[]);
    let map = format!(
        "use-pf.test smtpu:[127.0.0.1]:{p}\nuse-op.test outpostu:[127.0.0.1]:{p}\n\
         idle-pf.test smtpi:[127.0.0.1]:{p}\nidle-op.test outposti:[127.0.0.1]:{p}\n",
        p = sink.port()
    );
    let master = "smtpu unix - - n - 1 smtp\n  -o max_use=2\n\
                  outpostu unix - - n - 1 outpost/smtp\n  -o max_use=2\n\
                  smtpi unix - - n - 1 smtp\n  -o max_idle=1s\n\
                  outposti unix - - n - 1 outpost/smtp\n  -o max_idle=1s\n";
    let pf = Instance::start_full(&map, "", master, false);
    let pid_of = |log: &str, rcpt: &str| -> String {
        log.lines()
            .find(|l| l.contains(&format!("to=<{rcpt}>")))
            .and_then(|l| {
                l.split_once("postfix/smtp[")?
                    .1
                    .split_once(']')
                    .map(|x| x.0.to_string())
            })
            .unwrap_or_else(|| panic!("no delivery of {rcpt}:\n{log}"))
    };
    for tag in ["pf", "op"] {
        // max_use=2: deliveries 1 and 2 share a process, 3 gets a new one.
        for n in 1..=3 {
            let rcpt = format!("r{n}@use-{tag}.test");
            pf.sendmail(&["-f", "s@sender.test", &rcpt], b"Subject: u\n\nx\n");
            pf.wait_log(&[&format!("to=<{rcpt}>")]);
        }
        let log = pf.maillog();
        let p: Vec<String> = (1..=3)
            .map(|n| pid_of(&log, &format!("r{n}@use-{tag}.test")))
            .collect();
        assert_eq!(p[0], p[1], "{tag}: max_use=2\n{log}");
        assert_ne!(p[1], p[2], "{tag}: max_use=2\n{log}");
        // max_idle=1s: after 3 s without work the process is gone.
        for n in 1..=2 {
            let rcpt = format!("r{n}@idle-{tag}.test");
            pf.sendmail(&["-f", "s@sender.test", &rcpt], b"Subject: i\n\nx\n");
            pf.wait_log(&[&format!("to=<{rcpt}>")]);
            if n == 1 {
                std::thread::sleep(Duration::from_secs(3));
            }
        }
        let log = pf.maillog();
        let (a, b) = (
            pid_of(&log, &format!("r1@idle-{tag}.test")),
            pid_of(&log, &format!("r2@idle-{tag}.test")),
        );
        assert_ne!(a, b, "{tag}: max_idle=1s\n{log}");
        assert!(
            !Path::new(&format!("/proc/{a}")).exists(),
            "{tag}: idle agent {a} still running"
        );
    }
}

/// daemon_timeout: an agent stuck in one request longer than this is ended by its
/// watchdog ("fatal: watchdog timeout"); qmgr sees a malformed response and master
/// throttles the transport; the mail stays queued. Same lines for Postfix's smtp and
/// Outpost.
#[test]
fn daemon_timeout_watchdog_like_postfix_smtp() {
    if !usable() {
        return;
    }
    let sinks = [
        Sink::start(&["--delay", "dot=15s"]),
        Sink::start(&["--delay", "dot=15s"]),
    ];
    let map = format!(
        "wd-pf.test smtpwd:[127.0.0.1]:{}\nwd-op.test outpostwd:[127.0.0.1]:{}\n",
        sinks[0].port(),
        sinks[1].port()
    );
    let master = "smtpwd unix - - n - - smtp\n  -o daemon_timeout=4s -o smtp_data_done_timeout=30s\n\
                  outpostwd unix - - n - - outpost/smtp\n  -o daemon_timeout=4s -o smtp_data_done_timeout=30s\n";
    let pf = Instance::start_full(&map, "", master, false);
    for tag in ["pf", "op"] {
        pf.sendmail(
            &["-f", "s@sender.test", &format!("r@wd-{tag}.test")],
            b"Subject: w\n\nx\n",
        );
    }
    let log = pf.wait_log(&[
        "private/smtpwd socket: malformed response",
        "private/outpostwd socket: malformed response",
    ]);
    // The agent's last words, qmgr's and master's, by the agent's pid.
    let lines = |svc: &str, program: &str| -> Vec<String> {
        let exit = log
            .lines()
            .find(|l| l.contains(&format!("libexec/{program} pid ")) && l.contains("exit status"))
            .unwrap_or_else(|| panic!("{program} did not exit:\n{log}"));
        let pid = exit
            .split("pid ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        log.lines()
            .filter(|l| {
                l.contains(&format!("postfix/smtp[{pid}]: "))
                    || l.contains(&format!("private/{svc} socket"))
                    || l.contains(&format!("libexec/{program} "))
                    || l.contains(&format!("libexec/{program}:"))
            })
            .filter_map(|l| l.split_once("]: ").map(|x| x.1.to_string()))
            .map(|l| {
                l.replace(&pid, "PID")
                    .replace(&format!("private/{svc}"), "private/SVC")
                    .replace(&format!("libexec/{program}"), "libexec/AGENT")
            })
            .map(|l| match l.find("/libexec/") {
                Some(i) => l[i..].to_string(),
                None => l,
            })
            .collect()
    };
    // Lines of different processes (agent, qmgr, master) come in any order: sorted.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let a = sorted(lines("smtpwd", "smtp"));
    let b = sorted(lines("outpostwd", "outpost/smtp"));
    assert!(
        a.iter().any(|l| l == "fatal: watchdog timeout"),
        "{a:#?}\n{log}"
    );
    assert_eq!(a, b, "{log}");
    // Nothing was delivered or bounced: the mail is still queued.
    let q = pf.mailq();
    assert!(
        q.contains("r@wd-pf.test") && q.contains("r@wd-op.test"),
        "{q}"
    );
}
