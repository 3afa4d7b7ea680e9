//! Helpers for tests/interop.rs: real peers (Postfix smtp-sink, a throw-away Postfix
//! instance, dovecot LMTP, swaks) started on loopback in a private temporary directory,
//! each behind a guard whose Drop stops it, even when the test panics.
//!
//! Nothing here is shared between tests: every test gets its own directory, its own free
//! port(s) and its own instance names, so the tests can run in parallel.
//!
//! Set OUTPOST_KEEP_TMP=1 to keep the temporary directories for inspection.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");
/// The EHLO/LHLO name Outpost uses in every test (`-o myhostname=...`).
pub const MYHOSTNAME: &str = "outpost.test";

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this test process and call: for instance names and file names.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------
// Skipping when a peer is missing

/// Find an executable by name in PATH and the usual system directories, or by absolute path.
pub fn find_bin(name: &str) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| is_exec(p))
}

pub fn is_root() -> bool {
    // /proc/self belongs to the effective uid of the process looking at it.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Returns the paths of the binaries, or prints "SKIP: ..." and returns None.
pub fn require(bins: &[&str]) -> Option<Vec<PathBuf>> {
    let mut out = Vec::new();
    for b in bins {
        match find_bin(b) {
            Some(p) => out.push(p),
            None => {
                eprintln!("SKIP: {b} not installed (run make test-deps as root)");
                return None;
            }
        }
    }
    Some(out)
}

/// Skip (return from the test) unless every binary is installed.
#[macro_export]
macro_rules! require {
    ($($bin:expr),+ $(,)?) => {
        match $crate::support::require(&[$($bin),+]) {
            Some(v) => v,
            None => return,
        }
    };
}

/// Skip (return from the test) unless running as root.
#[macro_export]
macro_rules! require_root {
    ($what:expr) => {
        if !$crate::support::is_root() {
            eprintln!("SKIP: {} needs root (run the tests as root)", $what);
            return;
        }
    };
}

// ---------------------------------------------------------------------------------------
// Temporary directory and ports

pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A fresh directory under /tmp, mode 0755 so that the unprivileged users of the peers
    /// (nobody, postfix, dovecot) can reach the sockets and directories below it.
    pub fn new(name: &str) -> TestDir {
        let mut dir = tempfile::Builder::new()
            .prefix(&format!("outpost-interop-{name}-"))
            .tempdir_in("/tmp")
            .expect("create a temporary directory under /tmp");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod 0755 the temporary directory");
        if std::env::var_os("OUTPOST_KEEP_TMP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("keeping {}", dir.path().display());
        }
        TestDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A subdirectory with the given mode and, when root, owner.
    pub fn subdir(&self, name: &str, mode: u32, owner: Option<&str>) -> PathBuf {
        let p = self.join(name);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
        if let (Some(o), true) = (owner, is_root()) {
            let st = Command::new("chown")
                .arg(o)
                .arg(&p)
                .status()
                .expect("run chown");
            assert!(st.success(), "chown {o} {} failed", p.display());
        }
        p
    }
}

/// A TCP port that was free a moment ago on 127.0.0.1 (bind port 0, read it, release it).
/// Callers detect the rare race with another test by checking that their peer came up.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to pick a free port")
        .port()
}

pub fn read_lossy(p: &Path) -> String {
    match std::fs::read(p) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => format!("<cannot read {}: {e}>", p.display()),
    }
}

/// Poll `f` every 50 ms until it returns Some or `limit` has passed.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stop a child we started: SIGTERM (by pid), a grace period, then SIGKILL.
fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    if wait_for(grace, || child.try_wait().ok().flatten()).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Running outpost send

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub args: Vec<String>,
}

impl Run {
    /// Everything worth seeing when an assertion about this run fails.
    pub fn show(&self) -> String {
        format!(
            "command: outpost {}\nexit: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    /// The stdout result line for this recipient.
    pub fn result(&self, rcpt: &str) -> Option<&str> {
        let prefix = format!("{rcpt}: ");
        self.stdout.lines().find(|l| l.starts_with(&prefix))
    }

    /// Log lines (stderr) for this recipient.
    pub fn log_lines(&self, rcpt: &str) -> Vec<&str> {
        let needle = format!(" to=<{rcpt}>, ");
        self.stderr
            .lines()
            .filter(|l| l.contains(&needle))
            .collect()
    }

    /// The dialogue printed by -v: lines starting with "> " (sent) or "< " (received),
    /// with the "HOST: " prefix removed.
    pub fn trace(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("> ") || l.starts_with("< "))
            .map(|l| {
                let (dir, rest) = l.split_at(2);
                // "NAME[ADDR]:PORT: TEXT" or "NAME[PATH]: TEXT"
                let after = rest.find(']').map(|i| &rest[i + 1..]).unwrap_or(rest);
                let text = match after.strip_prefix(": ") {
                    Some(t) => t,
                    None => {
                        let a = after.strip_prefix(':').unwrap_or(after);
                        let digits = a.bytes().take_while(u8::is_ascii_digit).count();
                        a[digits..].strip_prefix(": ").unwrap_or(&a[digits..])
                    }
                };
                format!("{dir}{text}")
            })
            .collect()
    }
}

/// Run `outpost ARGS` with `input` on stdin; kill it after 60 s.
pub fn outpost(args: &[&str], input: &[u8]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut child = Command::new(OUTPOST)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the outpost binary");
    let mut stdin = child.stdin.take().expect("outpost stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = child.stdout.take().expect("outpost stdout");
    let mut err = child.stderr.take().expect("outpost stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = wait_for(Duration::from_secs(60), || child.try_wait().ok().flatten());
    let timed_out = status.is_none();
    if timed_out {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait for outpost");
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
        args,
    };
    assert!(
        !timed_out,
        "outpost did not finish within 60 s\n{}",
        run.show()
    );
    run
}

/// `outpost send -o myhostname=outpost.test -f sender@x.test EXTRA... RCPTS...`
pub fn send(extra: &[&str], rcpts: &[&str], msg: &[u8]) -> Run {
    let mut args = vec![
        "send",
        "-o",
        "myhostname=outpost.test",
        "-f",
        "sender@x.test",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(rcpts);
    outpost(&args, msg)
}

// ---------------------------------------------------------------------------------------
// Diagnostics

/// Panic with a message and the diagnostics (outpost's output, peer logs).
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $diag:expr, $($fmt:tt)+) => {
        if !$cond {
            panic!("{}\n========== diagnostics ==========\n{}", format!($($fmt)+), $diag);
        }
    };
}

/// Show where two byte strings first differ, escaped, with some context.
pub fn byte_diff(expected: &[u8], actual: &[u8]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let at = expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(actual.len()));
    let lo = at.saturating_sub(60);
    let esc = |b: &[u8], from: usize| {
        let to = (from + 160).min(b.len());
        b.get(from..to)
            .map(|s| s.escape_ascii().to_string())
            .unwrap_or_default()
    };
    let line = expected[..at.min(expected.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
        + 1;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "bytes differ at offset {at} (line {line}); expected {} bytes, got {}",
        expected.len(),
        actual.len()
    );
    let _ = writeln!(s, "expected[{lo}..]: {}", esc(expected, lo));
    let _ = writeln!(s, "actual  [{lo}..]: {}", esc(actual, lo));
    Some(s)
}

// ---------------------------------------------------------------------------------------
// Test content

/// A printable pattern whose misalignment shows when a fold lands one byte off.
pub fn pattern(n: usize, seed: usize) -> Vec<u8> {
    const A: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..n).map(|i| A[(i + seed) % A.len()]).collect()
}

/// Lines starting with '.', a line of just '.', empty lines, 8-bit bytes, a CRLF-ended
/// input line, lines of exactly 998 and 999 bytes, a 2000-byte line (folded at 998 with
/// CRLF SPACE), a 5000-byte line (longer than Postfix's 2048-byte queue records), and a
/// last line without a newline.
pub fn tricky_message() -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(
        b"From: Sender <sender@x.test>\n\
          To: rcpt@dest.test\n\
          Date: Sat, 28 Nov 2026 07:00:00 +0000\n\
          Message-ID: <interop-1@x.test>\n\
          Subject: outpost interop\n\
          MIME-Version: 1.0\n\
          Content-Type: text/plain; charset=utf-8\n\
          Content-Transfer-Encoding: 8bit\n\
          \n\
          .leading dot\n\
          ..two leading dots\n\
          .\n\
          \n\
          \n\
          From the start of a line\n\
          8-bit: caf\xc3\xa9 \xe9\xff\x80 end\n\
          CRLF-ended input line\r\n\
          tab\there, trailing spaces   \n",
    );
    for (n, seed) in [(998, 1), (999, 2), (2000, 3), (5000, 4)] {
        m.extend(pattern(n, seed));
        m.push(b'\n');
    }
    m.extend_from_slice(b" leading space\n.\n\nlast line without newline");
    m
}

// ---------------------------------------------------------------------------------------
// What Postfix's smtp(8) puts on the wire, and what a receiver stores

/// Postfix's smtp_line_length_limit default.
pub const LINE_LIMIT: usize = 998;

/// Split a message into lines as Postfix's sendmail/cleanup do: LF ends a line, a CR
/// right before it is dropped, a last line without LF is still a line.
pub fn lines(msg: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = msg.split(|&b| b == b'\n').collect();
    if msg.ends_with(b"\n") || msg.is_empty() {
        v.pop();
    }
    v.into_iter()
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect()
}

/// The DATA bytes Postfix's smtp client sends for this message (without the final
/// ".\r\n"): smtp_text_out() for each line with smtp_line_length_limit = 998: a '.' at the
/// start of a line is doubled (the extra dot does not count toward the limit); a line
/// longer than the limit is sent as 998 bytes, CRLF, then SPACE + up to 997 bytes per
/// continuation line; every line ends in CRLF.
pub fn postfix_wire(msg: &[u8]) -> Vec<u8> {
    let mut w = Vec::with_capacity(msg.len() + msg.len() / 50);
    for line in lines(msg) {
        let mut data = line;
        let mut space_left = LINE_LIMIT;
        loop {
            if space_left == LINE_LIMIT && data.first() == Some(&b'.') {
                w.push(b'.');
            }
            if data.len() >= space_left {
                w.extend_from_slice(&data[..space_left]);
                w.extend_from_slice(b"\r\n");
                data = &data[space_left..];
                space_left = LINE_LIMIT;
                if data.is_empty() {
                    break;
                }
                w.push(b' ');
                space_left -= 1;
            } else {
                w.extend_from_slice(data);
                w.extend_from_slice(b"\r\n");
                break;
            }
        }
    }
    w
}

/// What a receiver that un-dot-stuffs and stores lines with LF (smtp-sink -d, Postfix
/// virtual(8) maildir, dovecot maildir) keeps of these DATA bytes.
pub fn stored_lf(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let body = wire.strip_suffix(b"\r\n").unwrap_or(wire);
    if wire.is_empty() {
        return out;
    }
    for line in split_crlf(body) {
        let line = line.strip_prefix(b".").unwrap_or(line);
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

fn split_crlf(b: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\r' && b[i + 1] == b'\n' {
            v.push(&b[start..i]);
            i += 2;
            start = i;
        } else {
            i += 1;
        }
    }
    v.push(&b[start..]);
    v
}

/// The SIZE= Postfix would announce: the message with LF line ends.
pub fn lf_size(msg: &[u8]) -> usize {
    lines(msg).iter().map(|l| l.len() + 1).sum()
}

/// Remove the leading header lines a delivery agent added: each line whose name is in
/// `names` (case-insensitive), with its continuation lines; stops at the first other line.
pub fn strip_added_headers<'a>(mut msg: &'a [u8], names: &[&str]) -> (Vec<String>, &'a [u8]) {
    let mut removed = Vec::new();
    while let Some(colon) = msg.iter().position(|&b| b == b':' || b == b'\n') {
        if msg[colon] != b':' {
            break;
        }
        let name = String::from_utf8_lossy(&msg[..colon]).to_string();
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            break;
        }
        // The header ends at the first LF not followed by SPACE or TAB.
        let mut end = 0;
        loop {
            match msg[end..].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    end += i + 1;
                    if !matches!(msg.get(end), Some(b' ') | Some(b'\t')) {
                        break;
                    }
                }
                None => {
                    end = msg.len();
                    break;
                }
            }
        }
        removed.push(String::from_utf8_lossy(&msg[..end]).into_owned());
        msg = &msg[end..];
    }
    (removed, msg)
}

// ---------------------------------------------------------------------------------------
// smtp-sink

pub enum Listen {
    Tcp,
    Unix(PathBuf),
}

/// A running `smtp-sink -d DIR/%M%S. ... LISTEN 64`.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub socket: Option<PathBuf>,
    pub dump_dir: PathBuf,
    pub log: PathBuf,
}

/// One transaction as `smtp-sink -d` wrote it.
#[derive(Debug)]
pub struct Dump {
    pub file: PathBuf,
    /// X-Client-Addr, X-Client-Proto, X-Helo-Args, X-Mail-Args, X-Rcpt-Args... in order.
    pub headers: Vec<(String, String)>,
    /// The message data as stored (un-dot-stuffed, LF line ends).
    pub data: Vec<u8>,
}

impl Dump {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Parse a dump file: "X-...: value" lines, the three-line Received: header smtp-sink
/// adds, the message data, then one empty line.
pub fn parse_dump(file: &Path) -> Result<Dump, String> {
    let raw = std::fs::read(file).map_err(|e| format!("read {}: {e}", file.display()))?;
    let mut headers = Vec::new();
    let mut rest: &[u8] = &raw;
    loop {
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("dump ends inside its header block")?;
        let line = String::from_utf8_lossy(&rest[..nl]).into_owned();
        rest = &rest[nl + 1..];
        if let Some(v) = line.strip_prefix("Received: ") {
            // Two continuation lines follow ("\tby ... id ...;" and "\tDATE").
            for _ in 0..2 {
                let nl = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .ok_or("dump ends inside smtp-sink's Received: header")?;
                if rest.first() != Some(&b'\t') {
                    return Err("smtp-sink's Received: header is not three lines".into());
                }
                rest = &rest[nl + 1..];
            }
            headers.push(("Received".to_string(), v.to_string()));
            break;
        }
        let (n, v) = line
            .split_once(": ")
            .ok_or_else(|| format!("unexpected dump header line {line:?}"))?;
        headers.push((n.to_string(), v.to_string()));
    }
    let data = rest
        .strip_suffix(b"\n")
        .ok_or("dump does not end with the empty line smtp-sink appends")?
        .to_vec();
    Ok(Dump {
        file: file.to_path_buf(),
        headers,
        data,
    })
}

impl SmtpSink {
    /// Start smtp-sink with extra options (e.g. "-L", "-p", "-r", "RCPT").
    pub fn start(bin: &Path, dir: &TestDir, opts: &[&str], listen: Listen) -> SmtpSink {
        let name = unique("sink");
        let dump_dir = dir.subdir(&name, 0o777, None);
        let log = dir.join(&format!("{name}.log"));
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let (port, addr, socket) = match &listen {
                Listen::Tcp => {
                    let p = free_port();
                    (p, format!("127.0.0.1:{p}"), None)
                }
                Listen::Unix(path) => (0, format!("unix:{}", path.display()), Some(path.clone())),
            };
            let logf = std::fs::File::create(&log).expect("create the smtp-sink log");
            let mut cmd = Command::new(bin);
            if is_root() {
                cmd.args(["-u", "nobody"]);
            }
            cmd.args(opts)
                .arg("-d")
                .arg(format!("{}/%M%S.", dump_dir.display()))
                .arg(&addr)
                .arg("64")
                .stdin(Stdio::null())
                .stdout(logf.try_clone().expect("dup log"))
                .stderr(logf);
            let child = cmd.spawn().expect("spawn smtp-sink");
            let mut sink = SmtpSink {
                child,
                port,
                socket: socket.clone(),
                dump_dir: dump_dir.clone(),
                log: log.clone(),
            };
            let up = wait_for(Duration::from_secs(10), || {
                if let Ok(Some(st)) = sink.child.try_wait() {
                    return Some(Err(format!("smtp-sink exited: {st}")));
                }
                let ok = match &socket {
                    None => TcpStream::connect(("127.0.0.1", port)).is_ok(),
                    Some(p) => UnixStream::connect(p).is_ok(),
                };
                ok.then_some(Ok(()))
            });
            match up {
                Some(Ok(())) => return sink,
                Some(Err(e)) => last_err = format!("{e}\n{}", read_lossy(&log)),
                None => last_err = format!("smtp-sink not listening on {addr} after 10 s"),
            }
            drop(sink);
        }
        panic!("cannot start smtp-sink {opts:?}: {last_err}");
    }

    pub fn dest_tcp(&self) -> String {
        format!("[127.0.0.1]:{}", self.port)
    }

    /// Wait for `n` complete dump files and parse them (oldest first).
    pub fn dumps(&self, n: usize) -> Result<Vec<Dump>, String> {
        let mut last = String::from("no dump file");
        let got = wait_for(Duration::from_secs(10), || {
            let mut files: Vec<(std::time::SystemTime, PathBuf)> =
                std::fs::read_dir(&self.dump_dir)
                    .ok()?
                    .filter_map(|e| e.ok())
                    .map(|e| {
                        let t = e
                            .metadata()
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH);
                        (t, e.path())
                    })
                    .collect();
            if files.len() < n {
                last = format!("{} of {n} dump files", files.len());
                return None;
            }
            files.sort();
            let mut out = Vec::new();
            for (_, f) in files {
                match parse_dump(&f) {
                    Ok(d) => out.push(d),
                    Err(e) => {
                        last = e;
                        return None;
                    }
                }
            }
            Some(out)
        });
        got.ok_or(last)
    }

    pub fn show(&self) -> String {
        let mut s = format!(
            "--- smtp-sink log {} ---\n{}",
            self.log.display(),
            read_lossy(&self.log)
        );
        if let Ok(rd) = std::fs::read_dir(&self.dump_dir) {
            for e in rd.flatten() {
                let text = read_lossy(&e.path());
                let cut: String = text.chars().take(1500).collect();
                let _ = write!(
                    s,
                    "--- dump {} ({} bytes{}) ---\n{}\n",
                    e.path().display(),
                    text.len(),
                    if cut.len() < text.len() {
                        ", first 1500 chars"
                    } else {
                        ""
                    },
                    cut.escape_debug()
                );
            }
        }
        s
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(2));
    }
}

// ---------------------------------------------------------------------------------------
// A throw-away Postfix instance

pub struct Postfix {
    pub conf: PathBuf,
    pub base: PathBuf,
    pub maillog: PathBuf,
    /// The smtpd port when the instance has an inet listener.
    pub port: u16,
    postfix: PathBuf,
    started: bool,
}

/// The services any test instance needs; none chrooted. The smtp inet line is added only
/// when the instance should listen.
pub const MASTER_CF: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
";

impl Postfix {
    /// Configure and start an instance in DIR/postfix-N. `main_extra` is appended to
    /// main.cf (use @BASE@ and @CONF@ for the instance directories); `files` are written
    /// into the config directory. With `listen`, smtpd listens on 127.0.0.1:<free port>.
    pub fn start(dir: &TestDir, main_extra: &str, files: &[(&str, &str)], listen: bool) -> Postfix {
        let bins = require(&["postfix"]).expect("postfix is installed (checked by caller)");
        let name = unique("postfix");
        let base = dir.subdir(&name, 0o755, None);
        let conf = base.join("conf");
        std::fs::create_dir_all(&conf).expect("mkdir conf");
        std::fs::create_dir_all(base.join("queue")).expect("mkdir queue");
        dir.subdir(&format!("{name}/data"), 0o700, Some("postfix:postfix"));
        // Maildirs of virtual(8) deliveries (virtual_uid_maps = static:65534).
        dir.subdir(&format!("{name}/vmail"), 0o755, Some("nobody:nogroup"));
        let _ = std::fs::copy("/etc/postfix/dynamicmaps.cf", conf.join("dynamicmaps.cf"));
        let maillog = base.join("maillog");
        let subst = |s: &str| {
            s.replace("@BASE@", &base.display().to_string())
                .replace("@CONF@", &conf.display().to_string())
        };
        let main_cf = format!(
            "# throw-away instance for outpost interop tests\n\
             compatibility_level = 3.6\n\
             queue_directory = {base}/queue\n\
             data_directory = {base}/data\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             myhostname = postfix.test\n\
             mydomain = postfix.test\n\
             myorigin = $myhostname\n\
             mydestination =\n\
             inet_interfaces = loopback-only\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             maillog_file = {base}/maillog\n\
             maillog_file_prefixes = {base}\n\
             alias_maps =\n\
             alias_database =\n\
             biff = no\n\
             queue_run_delay = 2s\n\
             minimal_backoff_time = 2s\n\
             maximal_backoff_time = 4s\n\
             {extra}\n",
            base = base.display(),
            extra = subst(main_extra),
        );
        std::fs::write(conf.join("main.cf"), main_cf).expect("write main.cf");
        for (f, text) in files {
            std::fs::write(conf.join(f), subst(text)).expect("write a map file");
        }
        let mut pf = Postfix {
            conf,
            base,
            maillog,
            port: 0,
            postfix: bins[0].clone(),
            started: false,
        };
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let mut master = MASTER_CF.to_string();
            if listen {
                pf.port = free_port();
                master = format!("127.0.0.1:{} inet n - n - - smtpd\n{master}", pf.port);
            }
            std::fs::write(pf.conf.join("master.cf"), master).expect("write master.cf");
            let out = pf.postfix_cmd("start");
            pf.started = true;
            let up = !listen
                || wait_for(Duration::from_secs(10), || {
                    TcpStream::connect(("127.0.0.1", pf.port)).ok()
                })
                .is_some();
            if out.0 && up {
                return pf;
            }
            last_err = format!(
                "postfix start: ok={} output:\n{}\n--- maillog ---\n{}",
                out.0,
                out.1,
                read_lossy(&pf.maillog)
            );
            pf.stop();
        }
        panic!("cannot start a Postfix instance: {last_err}");
    }

    /// Run `postfix -c CONF VERB`; under script(1) when available, because postfix
    /// reports start-up errors only to a terminal or syslog.
    fn postfix_cmd(&self, verb: &str) -> (bool, String) {
        let cmdline = format!(
            "{} -c {} {verb}",
            self.postfix.display(),
            self.conf.display()
        );
        let out = match find_bin("script") {
            Some(script) => Command::new(script)
                .args(["-qec", &cmdline, "/dev/null"])
                .stdin(Stdio::null())
                .output(),
            None => Command::new(&self.postfix)
                .arg("-c")
                .arg(&self.conf)
                .arg(verb)
                .stdin(Stdio::null())
                .output(),
        };
        match out {
            Ok(o) => (
                o.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            ),
            Err(e) => (false, format!("cannot run {cmdline}: {e}")),
        }
    }

    fn stop(&mut self) {
        if self.started {
            let _ = self.postfix_cmd("stop");
            self.started = false;
        }
    }

    pub fn maillog(&self) -> String {
        read_lossy(&self.maillog)
    }

    /// Wait until the maillog has a line containing all the needles.
    pub fn wait_log(&self, needles: &[&str], limit: Duration) -> Option<String> {
        wait_for(limit, || {
            self.maillog()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .map(|l| l.to_string())
        })
    }

    /// Lines of the maillog reporting a fatal error, panic or error of the instance.
    pub fn errors(&self) -> Vec<String> {
        self.maillog()
            .lines()
            .filter(|l| {
                [" fatal: ", " panic: ", " error: "]
                    .iter()
                    .any(|k| l.contains(k))
            })
            .map(str::to_string)
            .collect()
    }

    pub fn show(&self) -> String {
        format!(
            "--- Postfix maillog {} ---\n{}",
            self.maillog.display(),
            self.maillog()
        )
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// dovecot LMTP

pub struct Dovecot {
    child: Child,
    pub socket: PathBuf,
    pub mail: PathBuf,
    pub log: PathBuf,
    pub conf: PathBuf,
}

impl Dovecot {
    /// Start `dovecot -F -c CONF` with only LMTP on DIR/NAME/lmtp.sock; users from a
    /// passwd-file (so that unknown users fail), all mail stored as nobody in
    /// maildir:DIR/NAME/mail/%u.
    pub fn start(bin: &Path, dir: &TestDir, users: &[&str]) -> Dovecot {
        Dovecot::start_with(bin, dir, users, &[], None, "")
    }

    /// As `start`, with userdb extra fields per user (e.g. ("eve@x", "userdb_quota_rule=
    /// *:storage=1K")), an optional LMTP listener on 127.0.0.1:PORT and extra dovecot.conf
    /// text (e.g. "mail_plugins = quota").
    pub fn start_with(
        bin: &Path,
        dir: &TestDir,
        users: &[&str],
        fields: &[(&str, &str)],
        inet_port: Option<u16>,
        extra_conf: &str,
    ) -> Dovecot {
        let name = unique("dovecot");
        let base = dir.subdir(&name, 0o755, None);
        let mail = dir.subdir(&format!("{name}/mail"), 0o755, Some("nobody:nogroup"));
        let run = base.join("run");
        let socket = base.join("lmtp.sock");
        let log = base.join("dovecot.log");
        let conf = base.join("dovecot.conf");
        let users_file = base.join("users");
        let mut u = String::new();
        for user in users {
            let extra: Vec<&str> = fields
                .iter()
                .filter(|(n, _)| n == user)
                .map(|(_, f)| *f)
                .collect();
            let _ = writeln!(u, "{user}:::::::{}", extra.join(" "));
        }
        let inet = match inet_port {
            Some(p) => {
                format!("  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {p}\n  }}\n")
            }
            None => String::new(),
        };
        std::fs::write(&users_file, u).expect("write the dovecot users file");
        let text = format!(
            "# throw-away dovecot for outpost interop tests: LMTP only\n\
             protocols = lmtp\n\
             instance_name = {name}\n\
             base_dir = {run}\n\
             state_dir = {base}/state\n\
             log_path = {log}\n\
             info_log_path = {log}\n\
             ssl = no\n\
             listen = 127.0.0.1\n\
             first_valid_uid = 1\n\
             mail_location = maildir:{mail}/%u\n\
             passdb {{\n  driver = static\n  args = nopassword=y\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = {users}\n  \
               default_fields = uid=nobody gid=nogroup home={mail}/%u\n}}\n\
             service lmtp {{\n  unix_listener {socket} {{\n    mode = 0666\n  }}\n{inet}}}\n\
             {extra_conf}\n",
            run = run.display(),
            base = base.display(),
            log = log.display(),
            mail = mail.display(),
            users = users_file.display(),
            socket = socket.display(),
        );
        std::fs::write(&conf, text).expect("write dovecot.conf");
        let out = std::fs::File::create(base.join("dovecot.out")).expect("create dovecot.out");
        let child = Command::new(bin)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn dovecot");
        let mut dc = Dovecot {
            child,
            socket,
            mail,
            log,
            conf,
        };
        let up = wait_for(Duration::from_secs(15), || {
            if let Ok(Some(st)) = dc.child.try_wait() {
                return Some(Err(format!("dovecot exited: {st}")));
            }
            let inet_up = inet_port.is_none_or(|p| TcpStream::connect(("127.0.0.1", p)).is_ok());
            (UnixStream::connect(&dc.socket).is_ok() && inet_up).then_some(Ok(()))
        });
        match up {
            Some(Ok(())) => dc,
            other => panic!(
                "dovecot did not start ({other:?})\n{}\n--- dovecot.out ---\n{}",
                dc.show(),
                read_lossy(&base.join("dovecot.out"))
            ),
        }
    }

    /// The messages in a user's maildir (new/ and cur/), sorted by file name.
    pub fn messages(&self, user: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.mail.join(user).join(sub)) {
                for e in rd.flatten() {
                    if let Ok(b) = std::fs::read(e.path()) {
                        v.push((e.path(), b));
                    }
                }
            }
        }
        v.sort();
        v
    }

    /// Lines of the dovecot log reporting an error or fatal condition.
    pub fn errors(&self) -> Vec<String> {
        read_lossy(&self.log)
            .lines()
            .filter(|l| l.contains(" Error: ") || l.contains(" Fatal: ") || l.contains(" Panic: "))
            .map(str::to_string)
            .collect()
    }

    pub fn show(&self) -> String {
        format!(
            "--- dovecot log {} ---\n{}--- dovecot.conf ---\n{}",
            self.log.display(),
            read_lossy(&self.log),
            read_lossy(&self.conf)
        )
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

// ---------------------------------------------------------------------------------------
// outpost sink (for third-party clients)

pub struct OutpostSink {
    child: Child,
    pub addr: String,
    pub port: u16,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl OutpostSink {
    pub fn start(dir: &TestDir, extra: &[&str]) -> OutpostSink {
        let name = unique("osink");
        let mail = dir.subdir(&name, 0o755, None);
        let log = dir.join(&format!("{name}.err"));
        let errf = std::fs::File::create(&log).expect("create the sink log");
        let mut child = Command::new(OUTPOST)
            .arg("sink")
            .arg("--dir")
            .arg(&mail)
            .args(extra)
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(errf)
            .spawn()
            .expect("spawn outpost sink");
        let stdout = child.stdout.take().expect("sink stdout");
        // The first stdout line is "listening on ADDR".
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(stdout);
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut r, &mut line);
            let _ = tx.send(line);
            // Keep draining so the sink never blocks on a full pipe.
            let mut sink = Vec::new();
            let _ = r.read_to_end(&mut sink);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        let mut s = OutpostSink {
            child,
            addr: String::new(),
            port: 0,
            dir: mail,
            log,
        };
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "outpost sink did not say \"listening on ADDR\" (got {line:?})\n{}",
                    read_lossy(&s.log)
                )
            })
            .to_string();
        s.port = addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("bad sink address {addr:?}"));
        s.addr = addr;
        s
    }

    /// The recorded .eml files, waiting up to 10 s for `n` of them.
    pub fn messages(&self, n: usize) -> Vec<(PathBuf, Vec<u8>)> {
        wait_for(Duration::from_secs(10), || {
            let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&self.dir)
                .ok()?
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .filter_map(|e| std::fs::read(e.path()).ok().map(|b| (e.path(), b)))
                .collect();
            v.sort();
            (v.len() >= n).then_some(v)
        })
        .unwrap_or_default()
    }

    pub fn show(&self) -> String {
        format!(
            "--- outpost sink stderr {} ---\n{}",
            self.log.display(),
            read_lossy(&self.log)
        )
    }
}

impl Drop for OutpostSink {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(2));
    }
}
