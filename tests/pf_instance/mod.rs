//! A throw-away Postfix instance for daemon-mode tests: its own configuration, queue and
//! data directories, loopback only, maillog_file, and Outpost installed in its
//! daemon_directory as `outpost/smtp` and `outpost/lmtp` behind the services `outpost`,
//! `outpost-lmtp` and `outpost-relay` (next to Postfix's own smtp and lmtp), so that one
//! instance can run a scenario through either agent. Shared by the *_daemon.rs tests.

#![allow(dead_code)]

use crate::support;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DAEMON_DIR: &str = "/usr/lib/postfix/sbin";

pub fn usable() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let ok = root && Path::new(DAEMON_DIR).join("master").exists() && which("sendmail");
    if !ok {
        eprintln!("SKIP: needs root and Debian's postfix (run make test-deps as root)");
    }
    ok
}

pub fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A Postfix instance whose `outpost` and `outpost-lmtp` transports run our binary.
pub struct Instance {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    /// The port of the instance's smtpd (127.0.0.1), when started with `listen`.
    pub smtpd_port: u16,
}

impl Instance {
    pub fn start(transport: &str, extra_main: &str) -> Instance {
        Instance::start_with(transport, extra_main, false)
    }

    pub fn start_with(transport: &str, extra_main: &str, listen: bool) -> Instance {
        Instance::start_full(transport, extra_main, "", listen)
    }

    /// With `listen`, smtpd also listens on 127.0.0.1:<free port> (for smtp-source and
    /// SMTP clients; mynetworks is 127.0.0.0/8).
    /// `extra_master`: more master.cf lines (services with their own -o settings).
    pub fn start_full(
        transport: &str,
        extra_main: &str,
        extra_master: &str,
        listen: bool,
    ) -> Instance {
        Instance::start_in(None, transport, extra_main, extra_master, listen)
    }

    /// Like `start_full`, with master started inside the network namespace `ns` (by
    /// `ip netns exec`, so its daemons also see the namespace's resolv.conf).
    pub fn start_in(
        ns: Option<&str>,
        transport: &str,
        extra_main: &str,
        extra_master: &str,
        listen: bool,
    ) -> Instance {
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
             transport_maps = texthash:{c}/transport\ndelay_warning_time = 0\n\
             mynetworks = 127.0.0.0/8\n{extra_main}\n",
            q = d.join("queue").display(),
            data = d.join("data").display(),
            lib = libexec.display(),
            d = d.display(),
            c = conf.display(),
        );
        std::fs::write(conf.join("main.cf"), main).expect("main.cf");
        std::fs::write(conf.join("transport"), transport).expect("transport");
        // Postfix's services (none chrooted), its lmtp, plus ours.
        let smtpd_port = if listen { support::free_port() } else { 0 };
        let smtpd = if listen {
            format!("127.0.0.1:{smtpd_port} inet n - n - - smtpd\n")
        } else {
            String::new()
        };
        let master = format!(
            "{smtpd}{}lmtp      unix  -       -       n       -       -       lmtp\n\
             outpost   unix  -       -       n       -       -       outpost/smtp\n\
             outpost-lmtp unix -     -       n       -       -       outpost/lmtp\n\
             outpost-relay unix -    -       n       -       -       outpost/smtp\n  \
             -o syslog_name=postfix/$service_name -o smtp_helo_name=relay.helo.test\n\
             {extra_master}",
            support::MASTER_CF
        );
        std::fs::write(conf.join("master.cf"), master).expect("master.cf");
        let inst = Instance {
            dir,
            conf,
            smtpd_port,
        };
        let prefix = ns
            .map(|n| format!("ip netns exec {n} "))
            .unwrap_or_default();
        let out = Command::new("script")
            .args([
                "-qec",
                &format!("{prefix}postfix -c {} start", inst.conf.display()),
                "/dev/null",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("postfix start");
        assert!(
            out.status.success(),
            "postfix start: {}{}\n--- maillog ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            inst.maillog()
        );
        if listen {
            let up = support::wait_for(Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", smtpd_port)).ok()
            });
            assert!(up.is_some(), "smtpd not listening: {}", inst.maillog());
        }
        inst
    }

    pub fn sendmail(&self, args: &[&str], msg: &[u8]) {
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

    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Wait until every needle is in the maillog; panic with the log if not.
    pub fn wait_log(&self, needles: &[&str]) -> String {
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

    pub fn mailq(&self) -> String {
        Command::new("postqueue")
            .arg("-c")
            .arg(&self.conf)
            .arg("-p")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.dir.path().join("queue")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill, killpg};
        use nix::unistd::Pid;
        use std::os::unix::process::CommandExt;
        let master = std::fs::read_to_string(self.queue_dir().join("pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        // `postfix stop` in its own process group, with a time limit: a Postfix whose
        // postlogd is stuck (seen once under load: master, postlogd and `master -t` all
        // blocked sending to the full postlog socket) would otherwise hang the test.
        let stop = Command::new("postfix")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        if let Ok(mut c) = stop {
            let done = support::wait_for(Duration::from_secs(15), || c.try_wait().ok().flatten());
            if done.is_none() {
                let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
                let _ = c.wait();
                if let Some(pid) = master {
                    eprintln!("postfix stop hung: killing master {pid} and its children");
                    let kids = Command::new("pgrep")
                        .args(["-P", &pid.to_string()])
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                        .unwrap_or_default();
                    for k in kids
                        .split_whitespace()
                        .filter_map(|k| k.parse::<i32>().ok())
                    {
                        let _ = kill(Pid::from_raw(k), Signal::SIGKILL);
                    }
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
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
