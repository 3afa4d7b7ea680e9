//! Shared helpers for integration tests: an in-process `outpost sink` with its recordings,
//! and a runner for the `outpost` binary.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_outpost")
}

/// A running sink with its message and wire-log directories.
pub struct Sink {
    handle: Option<outpost::sink::SinkHandle>,
    pub dir: tempfile::TempDir,
    pub addr: String,
}

impl Sink {
    /// Start a sink on 127.0.0.1:0 (or the LISTEN given last in `args`).
    pub fn start(args: &[&str]) -> Sink {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut v: Vec<String> = vec![
            "--quiet".into(),
            "--dir".into(),
            dir.path().join("msg").display().to_string(),
            "--raw-dir".into(),
            dir.path().join("raw").display().to_string(),
        ];
        let mut listen = "127.0.0.1:0".to_string();
        for a in args {
            if let Some(path) = a.strip_prefix("LISTEN=") {
                listen = path.replace("{dir}", &dir.path().display().to_string());
            } else {
                v.push(a.to_string());
            }
        }
        v.push(listen);
        let cfg = outpost::sink::SinkConfig::from_args(&v).expect("sink args");
        let handle = outpost::sink::spawn(cfg).expect("sink spawn");
        let addr = handle.addr();
        Sink {
            handle: Some(handle),
            dir,
            addr,
        }
    }

    /// Destination for `send -d`: `[127.0.0.1]:PORT` or `unix:PATH`.
    pub fn dest(&self) -> String {
        if self.addr.starts_with("unix:") {
            return self.addr.clone();
        }
        let (h, p) = self.addr.rsplit_once(':').expect("host:port");
        format!(
            "[{}]:{}",
            h.trim_start_matches('[').trim_end_matches(']'),
            p
        )
    }

    pub fn port(&self) -> u16 {
        self.addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("port")
    }

    /// Recorded messages (files in name order).
    pub fn messages(&self) -> Vec<Vec<u8>> {
        read_dir_sorted(&self.dir.path().join("msg"))
    }

    /// Wire logs of all sessions, concatenated in name order.
    pub fn dialogue(&self) -> String {
        // The raw log is written when a session ends; give the server a moment.
        for _ in 0..50 {
            let logs = read_dir_sorted(&self.dir.path().join("raw"));
            if !logs.is_empty() {
                return logs
                    .iter()
                    .map(|l| String::from_utf8_lossy(l).to_string())
                    .collect::<Vec<_>>()
                    .join("");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        String::new()
    }

    /// Body of the n-th recorded message (after the X-Sink headers).
    pub fn body(&self, n: usize) -> Vec<u8> {
        let m = self.messages();
        let msg = m.get(n).expect("message recorded");
        let sep = msg
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header separator");
        msg[sep + 4..].to_vec()
    }

    /// The recipients (`<addr>` without parameters) of the n-th message.
    pub fn rcpts(&self, n: usize) -> Vec<String> {
        self.meta(n, "Rcpt")
            .iter()
            .map(|r| match r.rfind('>') {
                Some(end) => r[..=end].to_string(),
                None => r.clone(),
            })
            .collect()
    }

    /// X-Sink-* header values of the n-th message, by name.
    pub fn meta(&self, n: usize, name: &str) -> Vec<String> {
        let m = self.messages();
        let msg = m.get(n).expect("message recorded");
        let text = String::from_utf8_lossy(msg);
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        head.lines()
            .filter_map(|l| l.strip_prefix(&format!("X-Sink-{name}: ")))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop();
        }
    }
}

pub fn read_dir_sorted(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect(),
        Err(_) => return Vec::new(),
    };
    names.sort();
    names.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The result line for one recipient.
    pub fn result(&self, rcpt: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{rcpt}: ")))
            .unwrap_or_else(|| panic!("no result for {rcpt} in:\n{}\n{}", self.stdout, self.stderr))
    }

    /// Log lines (stderr) about a recipient's delivery.
    pub fn log_for(&self, rcpt: &str) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains(&format!(": to=<{rcpt}>")))
            .collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run `outpost ARGS` with `input` on standard input.
pub fn outpost(args: &[&str], input: &[u8]) -> Run {
    let mut child = Command::new(bin())
        .args(args)
        .env_remove("MAIL_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn outpost");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().expect("wait outpost");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// `outpost send -d DEST -f sender@example.org -o myhostname=client.test EXTRA... RCPTS...`
pub fn send(dest: &str, extra: &[&str], rcpts: &[&str], msg: &[u8]) -> Run {
    let mut args = vec![
        "send",
        "-d",
        dest,
        "-f",
        "sender@example.org",
        "-o",
        "myhostname=client.test",
        "--queue-id",
        "TESTQID",
    ];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(rcpts);
    outpost(&args, msg)
}

pub const MSG: &[u8] = b"From: a@example.org\nTo: b@example.net\nSubject: test\n\nHello.\n";
