//! Differential runs against Postfix's own smtp(8) in a throw-away Postfix instance:
//! smtp_generic_maps and the header/body checks, same message through both agents,
//! comparing what the server received and the check log lines.

mod common;
mod pf_instance;
mod support;
use common::Sink;
use pf_instance::{Instance, usable};
use std::process::Command;

/// Normalise what a sink received: the headers cleanup(8) adds differ between runs
/// (Received with queue ids and times, Date, Message-Id) and are left out.
fn comparable(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg);
    let mut out = Vec::new();
    let mut skipping = false;
    let mut in_head = true;
    for line in text.split("\r\n") {
        if in_head {
            if line.is_empty() {
                in_head = false;
            } else if line.starts_with([' ', '\t']) {
                if skipping {
                    continue;
                }
            } else {
                skipping = ["Received:", "Date:", "Message-Id:"]
                    .iter()
                    .any(|h| line.starts_with(h));
                if skipping {
                    continue;
                }
            }
        }
        out.push(line);
    }
    out.join("\n")
}

/// The header/body check log lines and table warnings, without time, pid and queue id.
fn check_lines(log: &str, tag: &str) -> Vec<String> {
    let mut v: Vec<String> = log
        .lines()
        .filter(|l| l.contains(&format!("postfix/{tag}[")))
        .filter_map(|l| l.split_once("]: ").map(|(_, rest)| rest.to_string()))
        .map(|l| match l.split_once(": ") {
            Some((id, rest)) if id.chars().all(|c| c.is_ascii_alphanumeric()) && id.len() >= 8 => {
                format!("QID: {rest}")
            }
            _ => l,
        })
        .filter(|l| {
            [
                ": replace: ",
                ": prepend: ",
                ": strip: ",
                ": warning: header",
                ": info: ",
                "unsupported command",
                "multi-valued",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .collect();
    v.sort();
    v
}

const CHECK_MSG: &[u8] = b"From: Alice Example <alice@sender.test>\n\
To: ok@dest.test, \"Some One\" <some.one@dest.test>,\n  third@elsewhere.test (third)\n\
Cc: friends: bob@sender.test, carol@sender.test;\n\
Reply-To: <alice+lists@sender.test>\n\
Subject: secret plans for alice@sender.test\n\
X-Drop: gone\n\
X-Strip: gone too\n\
X-Warn: stays\n\
X-Reject: stays as well\n\
MIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"b1\"\n\
\n\
preamble\n\
--b1\n\
Content-Type: text/plain\n\
X-Part: one\n\
\n\
password=hunter2\n\
note this\n\
--b1\n\
Content-Type: message/rfc822\n\
\n\
From: inner@sender.test\n\
X-Part: nested\n\
\n\
inner body\n\
--b1--\n";

#[test]
fn generic_maps_and_checks_match_postfix_smtp() {
    if !usable() {
        return;
    }
    let mut runs = Vec::new();
    for transport in ["smtp", "outpost"] {
        let sink = Sink::start(&[]);
        let map = format!("dest.test {transport}:[127.0.0.1]:{}\n", sink.port());
        let tables = tempfile::tempdir().expect("tmp");
        let t = tables.path();
        let _ = Command::new("chmod").arg("755").arg(t).status();
        std::fs::write(
            t.join("generic"),
            "alice@sender.test alice@public.example\n\
             @sender.test @public.example\n\
             ok@dest.test okay@dest.example\n",
        )
        .expect("generic");
        std::fs::write(
            t.join("header_checks"),
            "/^Subject: secret/ REPLACE Subject: public\n\
             /^X-Drop:/ IGNORE\n\
             /^X-Strip:/ STRIP stripped it\n\
             /^X-Warn:/ WARN looked at it\n\
             /^From:/ PREPEND X-Pre: yes\n\
             /^X-Reject:/ REJECT no way\n",
        )
        .expect("hc");
        std::fs::write(
            t.join("mime_checks"),
            "/^Content-Type: text/ INFO text part\n/^X-Part:/ REPLACE X-Part: mime\n",
        )
        .expect("mc");
        std::fs::write(
            t.join("nested_checks"),
            "/^X-Part:/ REPLACE X-Part: nested\n",
        )
        .expect("nc");
        std::fs::write(
            t.join("body_checks"),
            "/^password/ REPLACE [redacted]\n/^note/ PREPEND before note\n/^preamble/ IGNORE\n",
        )
        .expect("bc");
        let d = t.display();
        let extra = format!(
            "smtp_generic_maps = texthash:{d}/generic\n\
             smtp_header_checks = regexp:{d}/header_checks\n\
             smtp_mime_header_checks = regexp:{d}/mime_checks\n\
             smtp_nested_header_checks = regexp:{d}/nested_checks\n\
             smtp_body_checks = regexp:{d}/body_checks\n\
             recipient_delimiter = +\n"
        );
        let pf = Instance::start(&map, &extra);
        pf.sendmail(
            &["-f", "alice@sender.test", "ok@dest.test", "other@dest.test"],
            CHECK_MSG,
        );
        let log = pf.wait_log(&["to=<ok@dest.test>", "to=<other@dest.test>"]);
        assert!(log.contains("status=sent"), "{transport}: {log}");
        let msgs = sink.messages();
        assert_eq!(msgs.len(), 1, "{transport}: {log}");
        runs.push((
            transport,
            comparable(&sink.body(0)),
            sink.meta(0, "Mail"),
            sink.rcpts(0),
            check_lines(&log, "smtp"),
        ));
    }
    let (_, pf_body, pf_mail, pf_rcpts, pf_log) = &runs[0];
    let (_, op_body, op_mail, op_rcpts, op_log) = &runs[1];
    assert_eq!(op_mail, pf_mail);
    assert_eq!(op_rcpts, pf_rcpts);
    assert_eq!(op_body, pf_body, "message as received");
    assert_eq!(op_log, pf_log, "check log lines");
    // The scenario really exercised the features.
    assert!(pf_body.contains("alice@public.example"), "{pf_body}");
    assert!(
        pf_log.iter().any(|l| l.contains("replace: header Subject")),
        "{pf_log:?}"
    );
}

/// smtp_connection_cache_destinations as a string list with a table element: the
/// destination is found in the table, so connections are cached and reused.
#[test]
fn connection_cache_destinations_from_a_table() {
    if !usable() {
        return;
    }
    const N: usize = 4;
    let sink = Sink::start(&[]);
    let map = format!("dest.test outpost:[127.0.0.1]:{}\n", sink.port());
    let tables = tempfile::tempdir().expect("tmp");
    let _ = Command::new("chmod").arg("755").arg(tables.path()).status();
    let t = tables.path().join("cache_dest");
    std::fs::write(&t, "127.0.0.1 yes\n").expect("table");
    let pf = Instance::start(
        &map,
        &format!(
            "smtp_connection_cache_destinations = !other.test, texthash:{}\n\
             outpost_destination_concurrency_limit = 1\n\
             smtp_connection_cache_time_limit = 10s\n",
            t.display()
        ),
    );
    for i in 0..N {
        pf.sendmail(
            &["-f", "s@sender.test", &format!("r{i}@dest.test")],
            b"Subject: x\n\nx\n",
        );
    }
    let needles: Vec<String> = (0..N).map(|i| format!("to=<r{i}@dest.test>")).collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let log = pf.wait_log(&needles);
    assert!(log.contains("conn_use="), "no reused connection:\n{log}");
}

/// A hash: table rebuilt with postmap while the agents run: each agent process that uses
/// it logs "table ... has changed -- restarting" and exits before its next request, so
/// the next delivery uses the new table. Same lines from Postfix's smtp and Outpost.
#[test]
fn changed_table_restarts_the_agent_like_postfix_smtp() {
    if !usable() {
        return;
    }
    let tables = tempfile::tempdir().expect("tmp");
    let t = tables.path();
    let _ = Command::new("chmod").arg("755").arg(t).status();
    let generic = t.join("generic");
    let postmap = |conf: &std::path::Path, content: &str| {
        std::fs::write(&generic, content).expect("generic");
        let out = Command::new("postmap")
            .arg("-c")
            .arg(conf)
            .arg(format!("hash:{}", generic.display()))
            .output()
            .expect("postmap");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = Command::new("chmod")
            .arg("644")
            .arg(format!("{}.db", generic.display()))
            .status();
    };
    let (spf, sop) = (Sink::start(&[]), Sink::start(&[]));
    let map = format!(
        "pf.test smtp:[127.0.0.1]:{}\nop.test outpost:[127.0.0.1]:{}\n",
        spf.port(),
        sop.port()
    );
    let extra = format!("smtp_generic_maps = hash:{}\n", generic.display());
    let pf = Instance::start(&map, &extra);
    postmap(&pf.conf, "@sender.test @first.example\n");
    for d in ["pf", "op"] {
        pf.sendmail(
            &["-f", "a@sender.test", &format!("r1@{d}.test")],
            b"Subject: 1\n\nx\n",
        );
        pf.wait_log(&[&format!("to=<r1@{d}.test>")]);
    }
    // postmap writes the file anew (a later mtime); make sure the second differs.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    postmap(&pf.conf, "@sender.test @second.example\n");
    for d in ["pf", "op"] {
        pf.sendmail(
            &["-f", "a@sender.test", &format!("r2@{d}.test")],
            b"Subject: 2\n\nx\n",
        );
        pf.wait_log(&[&format!("to=<r2@{d}.test>")]);
    }
    let log = pf.maillog();
    let line = format!(
        "table hash:{}(0,lock|fold_fix|utf8_request) has changed -- restarting",
        generic.display()
    );
    // One line per agent process that had the table open: at least one each.
    let pids: Vec<&str> = log
        .lines()
        .filter(|l| l.ends_with(&line))
        .filter_map(|l| {
            l.split_once("postfix/smtp[")?
                .1
                .split_once(']')
                .map(|x| x.0)
        })
        .collect();
    let served = |d: &str| -> Vec<&str> {
        log.lines()
            .filter(|l| l.contains(&format!("to=<r1@{d}.test>")))
            .filter_map(|l| {
                l.split_once("postfix/smtp[")?
                    .1
                    .split_once(']')
                    .map(|x| x.0)
            })
            .collect()
    };
    for d in ["pf", "op"] {
        assert!(
            served(d).iter().any(|p| pids.contains(p)),
            "{d}: the agent that used the table did not restart:\n{log}"
        );
    }
    for (d, sink) in [("pf", &spf), ("op", &sop)] {
        assert_eq!(sink.messages().len(), 2, "{d}: {log}");
        assert!(
            sink.meta(0, "Mail")[0].starts_with("<a@first.example>"),
            "{d}"
        );
        assert!(
            sink.meta(1, "Mail")[0].starts_with("<a@second.example>"),
            "{d}: {log}"
        );
    }
}

/// `-v` in master.cf, and debug_peer_list: both agents log the SMTP dialogue ("> host:
/// command", "< host: reply line"); the lines are compared with Postfix's smtp.
#[test]
fn verbose_and_debug_peer_list_trace_the_dialogue_like_postfix_smtp() {
    if !usable() {
        return;
    }
    let sinks: Vec<Sink> = (0..4).map(|_| Sink::start(&[])).collect();
    let names = [
        ("smtpv", "v-pf"),
        ("outpostv", "v-op"),
        ("smtpd", "d-pf"),
        ("outpostd", "d-op"),
    ];
    let mut map = String::new();
    for ((tr, dom), sink) in names.iter().zip(&sinks) {
        map.push_str(&format!("{dom}.test {tr}:[127.0.0.1]:{}\n", sink.port()));
    }
    let master = "smtpv unix - - n - - smtp -v\n\
                  outpostv unix - - n - - outpost/smtp -v\n\
                  smtpd unix - - n - - smtp\n  -o debug_peer_list=127.0.0.1\n\
                  outpostd unix - - n - - outpost/smtp\n  -o debug_peer_list=127.0.0.1\n";
    let pf = Instance::start_full(&map, "", master, false);
    for (_, dom) in names {
        pf.sendmail(
            &["-f", "s@sender.test", &format!("r@{dom}.test")],
            b"Subject: v\n\nx\n",
        );
        pf.wait_log(&[&format!("to=<r@{dom}.test>")]);
    }
    let log = pf.maillog();
    let dialogue = |dom: &str, port: u16| -> Vec<String> {
        let pid = log
            .lines()
            .find(|l| l.contains(&format!("to=<r@{dom}.test>")))
            .and_then(|l| {
                l.split_once("postfix/smtp[")?
                    .1
                    .split_once(']')
                    .map(|x| x.0.to_string())
            })
            .unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(&format!("postfix/smtp[{pid}]: ")))
            .filter_map(|l| l.split_once("]: ").map(|x| x.1.to_string()))
            .filter(|l| l.starts_with("> ") || l.starts_with("< "))
            .map(|l| {
                l.replace(&format!(":{port}:"), ":PORT:")
                    .replace(dom, "DOM")
            })
            // Queue ids in the server's replies differ.
            .map(|l| match l.find("queued as ") {
                Some(i) => l[..i].to_string(),
                None => l,
            })
            .collect()
    };
    for pair in [[0, 1], [2, 3]] {
        let a = dialogue(names[pair[0]].1, sinks[pair[0]].port());
        let b = dialogue(names[pair[1]].1, sinks[pair[1]].port());
        assert!(
            a.iter().any(|l| l.contains(": MAIL FROM:<s@sender.test>")),
            "{a:#?}\n{log}"
        );
        assert_eq!(a, b, "dialogue lines differ ({})\n{log}", names[pair[1]].0);
    }
}
