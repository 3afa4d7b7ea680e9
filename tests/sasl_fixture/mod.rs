//! Shared by tests/sasl_e2e.rs (CLI) and tests/sasl_daemon.rs (under Postfix's master): a
//! receiving Postfix smtpd whose SASL backend is a throw-away dovecot auth service
//! (PLAIN, LOGIN, CRAM-MD5; passwd-file users with plaintext-equivalent passwords), with
//! STARTTLS on a self-signed certificate and AUTH offered before and after STARTTLS, and
//! mail accepted for relay only from authenticated clients (then discarded). Plus
//! sasl_passwd tables built with Debian's postmap, and the secrets that must never show.

#![allow(dead_code)]

use crate::support::{self, Postfix, TestDir, read_lossy, unique, wait_for};
use base64::Engine;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Users known to dovecot: (name, password). No colons (passwd-file fields).
pub const JOE: (&str, &str) = ("joe", "Joe-pw-4b7Zq9");
pub const BOB: (&str, &str) = ("bob", "Bob-pw-Xk2m8R");
pub const CARL: (&str, &str) = ("carl", "Carl-pw-Tq5w1N");
/// A wrong password, also never to be shown.
pub const WRONG: &str = "Wrong-pw-9yHs3D";

/// Every string that would betray a credential in a log, a trace or an error text: the
/// passwords, and the base64 forms PLAIN and LOGIN put on the wire.
pub fn secrets() -> Vec<String> {
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut v = Vec::new();
    for (u, p) in [JOE, BOB, CARL, ("joe", WRONG)] {
        v.push(p.to_string());
        v.push(b(p));
        v.push(b(&format!("\0{u}\0{p}")));
    }
    v
}

/// Panic if any secret occurs in `text` (named `what`).
pub fn assert_no_secrets(what: &str, text: &str) {
    for s in secrets() {
        assert!(
            !text.contains(&s),
            "{what} shows a credential ({s:?}):\n{text}"
        );
    }
}

/// dovecot with nothing but its auth service, listening on DIR/NAME/auth.sock.
pub struct DovecotAuth {
    child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl DovecotAuth {
    pub fn start(bin: &Path, dir: &TestDir) -> DovecotAuth {
        let name = unique("dcauth");
        let base = dir.subdir(&name, 0o755, None);
        let socket = base.join("auth.sock");
        let log = base.join("dovecot.log");
        let users = base.join("users");
        let mut u = String::new();
        for (n, p) in [JOE, BOB, CARL] {
            u.push_str(&format!("{n}:{{PLAIN}}{p}::::::\n"));
        }
        std::fs::write(&users, u).expect("users file");
        let conf = base.join("dovecot.conf");
        std::fs::write(
            &conf,
            format!(
                "protocols = none\n\
                 instance_name = {name}\n\
                 base_dir = {base}/run\n\
                 state_dir = {base}/state\n\
                 log_path = {log}\n\
                 info_log_path = {log}\n\
                 ssl = no\n\
                 disable_plaintext_auth = no\n\
                 auth_failure_delay = 0\n\
                 auth_verbose = yes\n\
                 auth_mechanisms = plain login cram-md5\n\
                 passdb {{\n  driver = passwd-file\n  args = {users}\n}}\n\
                 userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home=/nonexistent\n}}\n\
                 service auth {{\n  unix_listener {socket} {{\n    mode = 0666\n  }}\n}}\n",
                base = base.display(),
                log = log.display(),
                users = users.display(),
                socket = socket.display(),
            ),
        )
        .expect("dovecot.conf");
        let out = std::fs::File::create(base.join("dovecot.out")).expect("dovecot.out");
        let child = Command::new(bin)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn dovecot");
        let d = DovecotAuth { child, socket, log };
        let up = wait_for(Duration::from_secs(15), || {
            UnixStream::connect(&d.socket).ok()
        });
        assert!(
            up.is_some(),
            "dovecot auth did not start:\n{}\n{}",
            read_lossy(&d.log),
            read_lossy(&base.join("dovecot.out"))
        );
        d
    }
}

impl Drop for DovecotAuth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate and key for the receiving smtpd: (cert, key).
pub fn self_signed(dir: &TestDir) -> (PathBuf, PathBuf) {
    let cert = dir.join("smtpd-cert.pem");
    let key = dir.join("smtpd-key.pem");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// The receiving side: smtpd + dovecot SASL. Keep `auth` alive as long as `pf`.
pub struct Relay {
    pub pf: Postfix,
    pub auth: DovecotAuth,
}

/// Root, postfix, postmap, dovecot and openssl, or None (after printing SKIP).
pub fn tools() -> Option<Vec<PathBuf>> {
    if !support::is_root() {
        eprintln!("SKIP: needs root (a throw-away Postfix instance and dovecot)");
        return None;
    }
    let bins = support::require(&["postfix", "postconf", "postmap", "dovecot", "openssl"])?;
    Some(bins)
}

/// Whether Cyrus SASL's client plugins are installed (Postfix's smtp needs them).
pub fn cyrus_plugins() -> bool {
    let ok = Command::new("sh")
        .args([
            "-c",
            "ls /usr/lib/*/sasl2/libplain.so /usr/lib/*/sasl2/libcrammd5.so",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: libsasl2-modules not installed (run make test-deps as root)");
    }
    ok
}

impl Relay {
    pub fn start(dir: &TestDir, dovecot: &Path) -> Relay {
        let auth = DovecotAuth::start(dovecot, dir);
        let (cert, key) = self_signed(dir);
        let pf = Postfix::start(
            dir,
            &format!(
                "smtpd_sasl_auth_enable = yes\n\
                 smtpd_sasl_type = dovecot\n\
                 smtpd_sasl_path = {sock}\n\
                 smtpd_sasl_security_options = noanonymous\n\
                 smtpd_tls_security_level = may\n\
                 smtpd_tls_cert_file = {cert}\n\
                 smtpd_tls_key_file = {key}\n\
                 smtpd_tls_loglevel = 1\n\
                 smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination\n\
                 default_transport = discard\n\
                 relay_transport = discard\n\
                 smtpd_sasl_authenticated_header = no\n",
                sock = auth.socket.display(),
                cert = cert.display(),
                key = key.display(),
            ),
            &[],
            true,
        );
        // smtpd needs tlsmgr(8) for TLS (its PRNG seed); the shared master.cf has none.
        let master = pf.conf.join("master.cf");
        let mut text = std::fs::read_to_string(&master).expect("read master.cf");
        text.push_str("tlsmgr unix - - n 1000? 1 tlsmgr\n");
        std::fs::write(&master, text).expect("write master.cf");
        let out = Command::new("postfix")
            .arg("-c")
            .arg(&pf.conf)
            .arg("reload")
            .output()
            .expect("postfix reload");
        assert!(out.status.success(), "postfix reload: {out:?}");
        let reloaded = wait_for(Duration::from_secs(10), || {
            pf.maillog().contains("reload -- version").then_some(())
        });
        assert!(reloaded.is_some(), "no reload: {}", pf.maillog());
        Relay { pf, auth }
    }

    /// The `sasl_method=..., sasl_username=...` the smtpd logged for the client sessions
    /// so far, in order.
    pub fn logins(&self) -> Vec<String> {
        self.pf
            .maillog()
            .lines()
            .filter(|l| l.contains("postfix/smtpd[") && l.contains(" client="))
            .map(|l| match l.find("sasl_method=") {
                Some(i) => l[i..].to_string(),
                None => "none".to_string(),
            })
            .collect()
    }

    /// Wait until the smtpd has logged `n` client= lines (or 10 s have passed).
    pub fn wait_logins(&self, n: usize) -> Vec<String> {
        wait_for(Duration::from_secs(10), || {
            let v = self.logins();
            (v.len() >= n).then_some(v)
        })
        .unwrap_or_else(|| self.logins())
    }

    pub fn show(&self) -> String {
        format!(
            "{}\n--- dovecot ---\n{}",
            self.pf.show(),
            read_lossy(&self.auth.log)
        )
    }
}

/// Build a sasl_passwd table of `kind` (hash, btree, lmdb, cdb, texthash) from `source`
/// under `dir/name` with Debian's postmap; returns the map spec (`kind:path`). The file
/// and its database are mode 0600 root, as the usual how-tos make them.
pub fn sasl_passwd(dir: &Path, name: &str, kind: &str, source: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, source).expect("write sasl_passwd");
    let spec = format!("{kind}:{}", path.display());
    if kind != "texthash" {
        // postmap reads main.cf (and dynamicmaps.cf for lmdb/cdb): a minimal one here.
        let conf = dir.join("postmap-conf");
        if !conf.exists() {
            std::fs::create_dir_all(&conf).expect("mkdir postmap-conf");
            std::fs::write(conf.join("main.cf"), "compatibility_level = 3.6\n")
                .expect("postmap main.cf");
            let _ = std::fs::copy("/etc/postfix/dynamicmaps.cf", conf.join("dynamicmaps.cf"));
        }
        let out = Command::new("postmap")
            .arg("-c")
            .arg(&conf)
            .arg(&spec)
            .output()
            .expect("run postmap");
        assert!(
            out.status.success(),
            "postmap {spec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for f in std::fs::read_dir(dir).expect("read dir").flatten() {
        if f.file_name().to_string_lossy().starts_with(name) {
            let _ = Command::new("chmod").arg("600").arg(f.path()).status();
        }
    }
    spec
}
