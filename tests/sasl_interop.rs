//! `outpost::sasl::authenticate` against a real server: a throw-away Postfix smtpd whose
//! SASL backend is a throw-away dovecot auth service (passwd-file, plaintext-equivalent
//! password so every mechanism works). Each mechanism must succeed with the right password
//! and fail with Postfix's 535 text with a wrong one. Skips without root, postfix or dovecot.

mod support;

use outpost::sasl::{self, AuthRequest, ConnSecurity, Credentials, SaslParams};
use outpost::session::Peer;
use outpost::session::conn::Conn;
use outpost::session::reply::{self, Reply};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

// No colon: passwd-file fields are colon-separated.
const PASS: &str = "s3cret pw";

/// dovecot with nothing but its auth service, listening on DIR/NAME/auth.sock.
struct DovecotAuth {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl DovecotAuth {
    fn start(bin: &std::path::Path, dir: &TestDir) -> DovecotAuth {
        let name = unique("dcauth");
        let base = dir.subdir(&name, 0o755, None);
        let socket = base.join("auth.sock");
        let log = base.join("dovecot.log");
        let users = base.join("users");
        std::fs::write(&users, format!("joe:{{PLAIN}}{PASS}::::::\n")).expect("users file");
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
                 auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256\n\
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

fn read(conn: &mut Conn) -> Result<Reply, outpost::session::conn::IoFailure> {
    reply::read_reply(conn, |_| {})
}

/// Connect, EHLO, and run the dialogue with only `mech` left by the filter.
fn try_auth(port: u16, mech: &str, pass: &str) -> Result<sasl::Authenticated, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let mut conn = Conn::new(Box::new(stream), false);
    conn.set_timeout(Duration::from_secs(20));
    let greet = read(&mut conn).map_err(|e| format!("{e:?}"))?;
    assert_eq!(greet.code, 220, "{}", greet.text);
    conn.queue_cmd("EHLO client.test");
    conn.flush().map_err(|e| format!("{e:?}"))?;
    let ehlo = read(&mut conn).map_err(|e| format!("{e:?}"))?;
    let mut offered = Vec::new();
    for l in ehlo.lines() {
        let mut w = l.split([' ', '=']);
        if w.next().is_some_and(|k| k.eq_ignore_ascii_case("AUTH")) {
            offered.extend(w.filter(|m| !m.is_empty()).map(|m| m.to_ascii_uppercase()));
        }
    }
    let peer = Peer {
        name: "postfix.test".into(),
        addr: "127.0.0.1".into(),
        port,
    };
    let params = SaslParams {
        security_options: "noanonymous".into(),
        mechanism_filter: mech.into(),
        soft_bounce: false,
        ..SaslParams::default()
    };
    let no_tables = |_: &str, _: &str| -> Result<bool, String> { Ok(false) };
    let mechs = sasl::filter_offered(&peer, &offered, &params, &no_tables)?;
    assert_eq!(mechs, [mech], "offered: {offered:?}");
    let creds = Credentials {
        username: "joe".into(),
        password: pass.into(),
    };
    let req = AuthRequest {
        peer: &peer,
        mechanisms: &mechs,
        params: &params,
        security: ConnSecurity::Plaintext,
        credentials: &creds,
        while_: "performing the EHLO handshake",
    };
    let r = sasl::authenticate(&mut conn, &req, None, &mut read)
        .map_err(|f| format!("{} {}", f.dsn.status, f.dsn.reason));
    conn.queue_cmd("QUIT");
    let _ = conn.flush();
    r
}

#[test]
fn postfix_smtpd_with_dovecot_sasl() {
    require_root!("a throw-away Postfix instance and dovecot");
    let bins = require!("postfix", "postconf", "dovecot");
    let dir = TestDir::new("sasl");
    let auth = DovecotAuth::start(&bins[2], &dir);
    let pf = Postfix::start(
        &dir,
        &format!(
            "smtpd_sasl_auth_enable = yes\n\
             smtpd_sasl_type = dovecot\n\
             smtpd_sasl_path = {}\n\
             smtpd_sasl_security_options = noanonymous\n\
             smtpd_relay_restrictions = permit_sasl_authenticated, reject\n",
            auth.socket.display()
        ),
        &[],
        true,
    );
    for mech in ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"] {
        let ok = try_auth(pf.port, mech, PASS).unwrap_or_else(|e| {
            panic!(
                "{mech}: {e}\n--- maillog ---\n{}\n--- dovecot ---\n{}",
                pf.maillog(),
                read_lossy(&auth.log)
            )
        });
        assert_eq!(ok.mechanism.name(), mech);
        let bad = try_auth(pf.port, mech, "wrong").expect_err(mech);
        assert!(
            bad.starts_with(
                "5.7.8 SASL authentication failed; server postfix.test[127.0.0.1] said: 535 5.7.8 Error: authentication failed"
            ),
            "{mech}: {bad}"
        );
    }
}
