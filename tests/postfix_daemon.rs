//! Outpost as Postfix's smtp/lmtp delivery agent, driven by a real Postfix (master, qmgr,
//! cleanup, bounce, verify, postlogd) in a throw-away instance: delivery, bounces in
//! Postfix's DSN format, deferrals in the queue, success DSNs, address probes, corrupt queue
//! files, a killed agent, and differential runs against Postfix's own smtp(8).

mod common;
mod support;
use common::Sink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DAEMON_DIR: &str = "/usr/lib/postfix/sbin";

fn usable() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let ok = root && Path::new(DAEMON_DIR).join("master").exists() && which("sendmail");
    if !ok {
        eprintln!("SKIP: needs root and Debian's postfix (run make test-deps as root)");
    }
    ok
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A Postfix instance whose `outpost` and `outpost-lmtp` transports run our binary.
struct Instance {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Instance {
    fn start(transport: &str, extra_main: &str) -> Instance {
        let dir = tempfile::Builder::new()
            .prefix("outpost-pf")
            .tempdir()
            .expect("tmp");
        let d = dir.path();
        let _ = Command::new("chmod").arg("755").arg(d).status();
        let conf = d.join("conf");
        let libexec = d.join("libexec");
        for sub in ["conf", "queue", "data", "libexec/outpost"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let _ = Command::new("chown")
            .args(["postfix:postfix"])
            .arg(d.join("data"))
            .status();
        // daemon_directory: Postfix's daemons plus ours under outpost/ (process name
        // smtp/lmtp, as master.cf `outpost/smtp` gives it).
        for e in std::fs::read_dir(DAEMON_DIR).expect("daemon dir").flatten() {
            // Hard links where possible: postfix-script warns about symlinks leaving the
            // directory (harmless, but noisy in the maillog).
            if std::fs::hard_link(e.path(), libexec.join(e.file_name())).is_err() {
                let _ = std::os::unix::fs::symlink(e.path(), libexec.join(e.file_name()));
            }
        }
        for name in ["smtp", "lmtp"] {
            std::fs::copy(
                env!("CARGO_BIN_EXE_outpost"),
                libexec.join("outpost").join(name),
            )
            .expect("copy outpost");
        }
        let _ = std::fs::copy("/etc/postfix/dynamicmaps.cf", conf.join("dynamicmaps.cf"));
        let main = format!(
            "compatibility_level = 3.6\nqueue_directory = {q}\ndata_directory = {data}\n\
             daemon_directory = {lib}\nmail_owner = postfix\nsetgid_group = postdrop\n\
             myhostname = postfix.test\nmydomain = postfix.test\nmydestination =\n\
             inet_interfaces = loopback-only\ninet_protocols = ipv4\n\
             maillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\nalias_maps =\n\
             queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n\
             transport_maps = texthash:{c}/transport\ndelay_warning_time = 0\n{extra_main}\n",
            q = d.join("queue").display(),
            data = d.join("data").display(),
            lib = libexec.display(),
            d = d.display(),
            c = conf.display(),
        );
        std::fs::write(conf.join("main.cf"), main).expect("main.cf");
        std::fs::write(conf.join("transport"), transport).expect("transport");
        // Postfix's services (none chrooted) plus ours.
        let master = format!(
            "{}outpost   unix  -       -       n       -       -       outpost/smtp\n\
             outpost-lmtp unix -     -       n       -       -       outpost/lmtp\n\
             outpost-relay unix -    -       n       -       -       outpost/smtp\n  \
             -o syslog_name=postfix/$service_name -o smtp_helo_name=relay.helo.test\n",
            support::MASTER_CF
        );
        std::fs::write(conf.join("master.cf"), master).expect("master.cf");
        let inst = Instance { dir, conf };
        let out = Command::new("script")
            .args([
                "-qec",
                &format!("postfix -c {} start", inst.conf.display()),
                "/dev/null",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("postfix start");
        assert!(
            out.status.success(),
            "postfix start: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        inst
    }

    fn sendmail(&self, args: &[&str], msg: &[u8]) {
        let mut c = Command::new("sendmail")
            .arg("-C")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sendmail");
        if let Some(mut i) = c.stdin.take() {
            use std::io::Write;
            let _ = i.write_all(msg);
        }
        let _ = c.wait();
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Wait until every needle is in the maillog; panic with the log if not.
    fn wait_log(&self, needles: &[&str]) -> String {
        let t = Instant::now();
        loop {
            let log = self.maillog();
            if needles.iter().all(|n| log.contains(n)) {
                return log;
            }
            if t.elapsed() > Duration::from_secs(20) {
                panic!("timed out waiting for {needles:?} in maillog:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn mailq(&self) -> String {
        Command::new("postqueue")
            .arg("-c")
            .arg(&self.conf)
            .arg("-p")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    }

    fn queue_dir(&self) -> PathBuf {
        self.dir.path().join("queue")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if std::env::var_os("OUTPOST_KEEP_TMP").is_some() {
            let p = self.dir.path().to_path_buf();
            eprintln!("kept {}", p.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("tmp"),
            ));
        }
    }
}

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
