//! Harness for tests/dns.rs: a private network namespace per test, with dnsmasq answering
//! on 127.0.0.53 (the namespace's /etc/resolv.conf points there), `outpost sink`
//! processes on 127.0.0.x:25 and [::1]:25, and `outpost send` run inside it.
//!
//! Every `Net` has its own namespace (`odns-PID-SEQ`), its own temporary directory and its
//! own /etc/netns/NAME, so tests run in parallel threads without sharing anything; port 25
//! on any 127.x address is free inside a fresh namespace. `Drop` kills what the test
//! started (sinks, dnsmasq, anything left in the namespace), deletes the namespace and
//! /etc/netns/NAME, even when the test panics. Namespaces left by a killed test run (their
//! PID no longer exists) are removed the first time a `Net` is made.
//!
//! Without root, `ip netns` or dnsmasq, `Net::start` prints "SKIP: ..." and returns None.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");
pub const SENDER: &str = "s@example.org";
pub const MSG: &[u8] =
    b"From: s@example.org\nTo: rcpt@example.test\nSubject: routing test\n\nHello.\n";
/// The address dnsmasq listens on inside each namespace.
pub const DNS_ADDR: &str = "127.0.0.53";
const PREFIX: &str = "odns";

static SEQ: AtomicUsize = AtomicUsize::new(0);
static STALE: std::sync::Once = std::sync::Once::new();

fn find_bin(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn skip(why: &str) -> Option<Net> {
    eprintln!("SKIP: {why} (needs root and ip netns; run make test-deps)");
    None
}

/// Run `ip ARGS`; Ok(stdout) or Err(stderr).
fn ip(ip_bin: &Path, args: &[&str]) -> Result<String, String> {
    match Command::new(ip_bin).args(args).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("ip {}: {e}", args.join(" "))),
    }
}

/// Kill what runs in a namespace (only ever one of ours) by PID.
fn kill_ns_pids(ip_bin: &Path, ns: &str) {
    if let Ok(out) = ip(ip_bin, &["netns", "pids", ns]) {
        for pid in out.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            // SAFETY: plain kill(2) of a process that lives in our private namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Remove namespaces a previous, killed run of these tests left behind.
fn remove_stale(ip_bin: &Path) {
    let Ok(rd) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut parts = name.split('-');
        if parts.next() != Some(PREFIX) {
            continue;
        }
        let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_ns_pids(ip_bin, &name);
        let _ = ip(ip_bin, &["netns", "del", &name]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{name}"));
    }
}

/// Run `f` in a thread that has joined the namespace `ns` (network namespaces are
/// per thread, so the rest of the test process is not affected).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns(2) on a valid namespace descriptor, for this thread only.
        let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// A DNS query for `name` type `qtype` (1 = A, 15 = MX); returns the reply's RCODE.
pub fn dns_rcode(server: &str, name: &str, qtype: u16, wait: Duration) -> Option<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(wait)).ok()?;
    let mut q = vec![0x4f, 0x50, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    sock.send_to(&q, (server, 53)).ok()?;
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    (n >= 12 && buf[..2] == q[..2]).then_some(buf[3] & 0x0f)
}

/// A result of running a command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub args: String,
}

impl Run {
    /// The result line for one recipient (panics with the whole run when missing).
    pub fn result(&self, rcpt: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{rcpt}: ")))
            .unwrap_or_else(|| panic!("no result for {rcpt}:\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit {}\n--- stdout\n{}--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

fn run_cmd(mut cmd: Command, input: &[u8], limit: Duration, args: String) -> Run {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {args}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let ro = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let re = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let code = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s.code().unwrap_or(-1),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break -2;
            }
        }
    };
    let _ = w.join();
    let stdout = String::from_utf8_lossy(&ro.join().unwrap_or_default()).into_owned();
    let mut stderr = String::from_utf8_lossy(&re.join().unwrap_or_default()).into_owned();
    if code == -2 {
        stderr.push_str(&format!("(killed after {limit:?})\n"));
    }
    Run {
        code,
        stdout,
        stderr,
        args,
    }
}

/// An `outpost sink` running inside the namespace, with its recordings.
pub struct Sink {
    pub listen: String,
    dir: PathBuf,
}

impl Sink {
    fn files(&self, sub: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.join(sub))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        !p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Messages recorded (accepted), in order.
    pub fn messages(&self) -> Vec<String> {
        self.files("msg")
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    /// Number of SMTP sessions (connections) this sink has finished.
    pub fn sessions(&self) -> usize {
        self.files("raw").len()
    }

    /// Wait (up to 2 s) until at least `n` sessions have been recorded; returns the count.
    pub fn wait_sessions(&self, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let s = self.sessions();
            if s >= n || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The RCPT TO addresses (`<addr>`) of every recorded message, message by message.
    pub fn rcpts(&self) -> Vec<Vec<String>> {
        self.messages()
            .iter()
            .map(|m| {
                m.split("\r\n\r\n")
                    .next()
                    .unwrap_or("")
                    .lines()
                    .filter_map(|l| l.strip_prefix("X-Sink-Rcpt: "))
                    .map(|r| match r.find('>') {
                        Some(end) => r[..=end].to_string(),
                        None => r.to_string(),
                    })
                    .collect()
            })
            .collect()
    }

    /// Everything the sink's sessions said, for failure messages.
    pub fn show(&self) -> String {
        let mut s = format!(
            "--- sink {} ({} messages)\n",
            self.listen,
            self.messages().len()
        );
        for p in self.files("raw") {
            s.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
        }
        s.push_str(&std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default());
        s
    }
}

/// One private network namespace with dnsmasq and sinks.
pub struct Net {
    pub name: String,
    ip_bin: PathBuf,
    dir: tempfile::TempDir,
    children: Vec<Child>,
    stops: Vec<(Arc<AtomicBool>, JoinHandle<()>)>,
    sink_seq: usize,
}

/// How the namespace resolves names.
pub enum Dns<'a> {
    /// dnsmasq on 127.0.0.53 with these extra options (record definitions); every
    /// other name under .test is NXDOMAIN (`--local=/test/`).
    Dnsmasq(&'a [&'a str]),
    /// resolv.conf names this server, and nothing runs there.
    Dead(&'a str),
}

impl Net {
    /// A namespace answering DNS with dnsmasq and `records`; None (after printing SKIP)
    /// when the machine cannot do it.
    pub fn start(records: &[&str]) -> Option<Net> {
        Net::with(Dns::Dnsmasq(records))
    }

    pub fn with(dns: Dns<'_>) -> Option<Net> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return skip("not root");
        }
        let Some(ip_bin) = find_bin("ip") else {
            return skip("ip (iproute2) not installed");
        };
        let dnsmasq = find_bin("dnsmasq");
        if matches!(dns, Dns::Dnsmasq(_)) && dnsmasq.is_none() {
            return skip("dnsmasq not installed (Debian package dnsmasq-base)");
        }
        STALE.call_once(|| remove_stale(&ip_bin));
        let name = format!(
            "{PREFIX}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(e) = ip(&ip_bin, &["netns", "add", &name]) {
            return skip(&format!("cannot create a network namespace: {e}"));
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .expect("tempdir");
        let mut net = Net {
            name,
            ip_bin,
            dir,
            children: Vec::new(),
            stops: Vec::new(),
            sink_seq: 0,
        };
        let n = net.name.clone();
        ip(&net.ip_bin, &["-n", &n, "link", "set", "lo", "up"]).expect("lo up");
        let server = match dns {
            Dns::Dnsmasq(_) => DNS_ADDR,
            Dns::Dead(addr) => addr,
        };
        let etc = PathBuf::from(format!("/etc/netns/{n}"));
        std::fs::create_dir_all(&etc).expect("mkdir /etc/netns/NS");
        std::fs::write(
            etc.join("resolv.conf"),
            format!("nameserver {server}\noptions timeout:1 attempts:2\n"),
        )
        .expect("write resolv.conf");
        if let (Dns::Dnsmasq(records), Some(dnsmasq)) = (dns, dnsmasq) {
            net.start_dnsmasq(&dnsmasq, records);
        }
        Some(net)
    }

    fn start_dnsmasq(&mut self, dnsmasq: &Path, records: &[&str]) {
        let d = self.dir.path();
        let mut cmd = Command::new(&self.ip_bin);
        cmd.args(["netns", "exec", &self.name])
            .arg(dnsmasq)
            .args([
                "--conf-file=/dev/null",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--no-negcache",
                &format!("--listen-address={DNS_ADDR}"),
                "--bind-interfaces",
                "--port=53",
                "--user=root",
                "--group=root",
                "--log-queries",
            ])
            .arg(format!("--pid-file={}", d.join("dnsmasq.pid").display()))
            .arg(format!(
                "--log-facility={}",
                d.join("dnsmasq.log").display()
            ))
            .arg("--local=/test/")
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("dnsmasq.err")).expect("dnsmasq.err"));
        let child = cmd.spawn().expect("spawn dnsmasq");
        self.children.push(child);
        // Ready when it answers (any RCODE).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ready = in_ns(&self.name, || {
                dns_rcode(DNS_ADDR, "ready.probe.test", 1, Duration::from_millis(200))
            })
            .join()
            .ok()
            .flatten();
            if ready.is_some() {
                return;
            }
            let exited = self
                .children
                .last_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!("dnsmasq did not start ({exited:?}):\n{}", self.dns_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// dnsmasq's error output and query log.
    pub fn dns_log(&self) -> String {
        let d = self.dir.path();
        format!(
            "--- dnsmasq\n{}{}",
            std::fs::read_to_string(d.join("dnsmasq.err")).unwrap_or_default(),
            std::fs::read_to_string(d.join("dnsmasq.log"))
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.contains("compile time options"))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        )
    }

    /// Start `outpost sink --quiet ... EXTRA LISTEN` inside the namespace.
    pub fn sink(&mut self, listen: &str, extra: &[&str]) -> Sink {
        self.sink_seq += 1;
        let dir = self.dir.path().join(format!("sink{}", self.sink_seq));
        for sub in ["msg", "raw"] {
            std::fs::create_dir_all(dir.join(sub)).expect("sink dir");
        }
        let mut cmd = Command::new(&self.ip_bin);
        cmd.args(["netns", "exec", &self.name, OUTPOST, "sink", "--quiet"])
            .arg("--dir")
            .arg(dir.join("msg"))
            .arg("--raw-dir")
            .arg(dir.join("raw"))
            .args(extra)
            .arg(listen)
            .env_remove("MAIL_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("stderr")).expect("sink stderr"));
        let mut child = cmd.spawn().expect("spawn sink");
        let out = child.stdout.take().expect("sink stdout");
        self.children.push(child);
        let (tx, rx) = std::sync::mpsc::channel();
        // Read the "listening on" line, then keep draining so the sink never gets EPIPE.
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
        let sink = Sink {
            listen: listen.to_string(),
            dir,
        };
        assert!(
            line.starts_with("listening on "),
            "sink {listen} did not start: {line:?}\n{}",
            sink.show()
        );
        sink
    }

    /// A DNS server at `addr`:53 inside the namespace that answers every query with
    /// SERVFAIL (dnsmasq forwards a zone there with `--server=/zone/addr`).
    pub fn servfail_server(&mut self, addr: &str) {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (addr, flag) = (addr.to_string(), stop.clone());
        let h = in_ns(&self.name, move || {
            let sock = UdpSocket::bind((addr.as_str(), 53)).expect("bind servfail server");
            let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
            let _ = tx.send(());
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if n < 12 {
                    continue;
                }
                // Header: same id, QR RD / RA SERVFAIL, one question, nothing else.
                let mut end = 12;
                while end < n && buf[end] != 0 {
                    end += 1 + buf[end] as usize;
                }
                end = (end + 5).min(n);
                let mut r = vec![
                    buf[0],
                    buf[1],
                    0x80 | (buf[2] & 0x01),
                    0x82,
                    0,
                    1,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                ];
                r.extend_from_slice(&buf[12..end]);
                let _ = sock.send_to(&r, from);
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("servfail server did not start");
        self.stops.push((stop, h));
    }

    /// `outpost ARGS` inside the namespace, message on stdin.
    pub fn outpost(&self, args: &[&str], input: &[u8]) -> Run {
        let mut cmd = Command::new(&self.ip_bin);
        cmd.args(["netns", "exec", &self.name, OUTPOST])
            .args(args)
            .env_remove("MAIL_CONFIG");
        let shown = format!("ip netns exec {} outpost {}", self.name, args.join(" "));
        run_cmd(cmd, input, Duration::from_secs(20), shown)
    }

    /// `outpost send -f s@example.org -o myhostname=client.test -o inet_protocols=ipv4
    /// --queue-id TESTQID EXTRA -- RCPTS` (without the inet_protocols default when EXTRA
    /// sets it).
    pub fn send(&self, extra: &[&str], rcpts: &[&str]) -> Run {
        let mut args = vec![
            "send",
            "-f",
            SENDER,
            "-o",
            "myhostname=client.test",
            "--queue-id",
            "TESTQID",
        ];
        if !extra.iter().any(|a| a.starts_with("inet_protocols=")) {
            args.extend_from_slice(&["-o", "inet_protocols=ipv4"]);
        }
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(rcpts);
        self.outpost(&args, MSG)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (flag, _) in &self.stops {
            flag.store(true, Ordering::Relaxed);
        }
        for (_, h) in self.stops.drain(..) {
            let _ = h.join();
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_ns_pids(&self.ip_bin, &self.name);
        let _ = ip(&self.ip_bin, &["netns", "del", &self.name]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// One record for `Net::signed_dns`.
#[derive(Clone, Debug)]
pub enum Rr {
    Mx(u16, &'static str),
    A([u8; 4]),
    /// usage, selector, matching type, data.
    Tlsa(u8, u8, u8, Vec<u8>),
}

/// The zone `Net::signed_dns` serves: (owner name without trailing dot, record), and the
/// owner names whose answers are not authenticated (no AD bit).
#[derive(Clone, Debug, Default)]
pub struct Zone {
    pub records: Vec<(&'static str, Rr)>,
    pub unsigned: Vec<&'static str>,
}

/// The reply of `Net::signed_dns` to one query; None for a message that is not a query.
fn signed_reply(zone: &Zone, raw: &[u8]) -> Option<Vec<u8>> {
    use hickory_proto::op::{Message, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::{A, MX, TLSA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    let q = Message::from_vec(raw).ok()?;
    let query = q.queries.first()?.clone();
    let qname = query
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_queries(q.queries.clone());
    // A validating resolver sets AD only for a client that asks (AD flag or DO bit).
    let asked = q.metadata.authentic_data || q.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    m.metadata.authentic_data = asked && !zone.unsigned.iter().any(|u| *u == qname);
    let owner = Name::from_ascii(format!("{qname}.")).ok()?;
    let mut known = false;
    for (name, rr) in &zone.records {
        if !name.eq_ignore_ascii_case(&qname) {
            continue;
        }
        known = true;
        let data = match (rr, query.query_type()) {
            (Rr::Mx(pref, ex), RecordType::MX) => {
                RData::MX(MX::new(*pref, Name::from_ascii(format!("{ex}.")).ok()?))
            }
            (Rr::A(ip), RecordType::A) => RData::A(A::from(std::net::Ipv4Addr::from(*ip))),
            (Rr::Tlsa(u, s, t, d), RecordType::TLSA) => {
                RData::TLSA(TLSA::new((*u).into(), (*s).into(), (*t).into(), d.clone()))
            }
            _ => continue,
        };
        m.add_answer(Record::from_rdata(owner.clone(), 300, data));
    }
    if !known {
        m.metadata.response_code = ResponseCode::NXDomain;
    }
    m.to_vec().ok()
}

impl Net {
    /// A namespace whose resolv.conf names `addr` (no dnsmasq), where `signed_dns` runs.
    pub fn without_dnsmasq(addr: &str) -> Option<Net> {
        Net::with(Dns::Dead(addr))
    }

    /// A DNS server on `addr`:53 (UDP and TCP) inside the namespace that answers from
    /// `zone`, setting the AD bit, as a validating resolver would, for every name not in
    /// `zone.unsigned`. Unknown names are NXDOMAIN; a known name without records of the
    /// type asked is NODATA.
    pub fn signed_dns(&mut self, addr: &str, zone: Zone) {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (addr, flag) = (addr.to_string(), stop.clone());
        let h = in_ns(&self.name, move || {
            let udp = UdpSocket::bind((addr.as_str(), 53)).expect("bind signed dns (udp)");
            let tcp =
                std::net::TcpListener::bind((addr.as_str(), 53)).expect("bind signed dns (tcp)");
            let _ = udp.set_read_timeout(Some(Duration::from_millis(20)));
            let _ = tcp.set_nonblocking(true);
            let _ = tx.send(());
            let mut buf = [0u8; 4096];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = udp.recv_from(&mut buf)
                    && let Some(r) = signed_reply(&zone, &buf[..n])
                {
                    let _ = udp.send_to(&r, from);
                }
                if let Ok((mut s, _)) = tcp.accept() {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if s.read_exact(&mut q).is_err() {
                        continue;
                    }
                    if let Some(r) = signed_reply(&zone, &q) {
                        let mut out = (r.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&r);
                        let _ = s.write_all(&out);
                    }
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("signed dns server did not start");
        self.stops.push((stop, h));
    }
}
