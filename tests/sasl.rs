//! The SASL AUTH dialogue (`outpost::sasl::authenticate`) against `outpost sink` over
//! loopback: every mechanism succeeds with the right password and fails with a wrong
//! one, Postfix's failure texts and DSN codes (soft bounce, 454, no common mechanism,
//! noplaintext), SCRAM server verification, the failure cache, the deferred initial
//! response, and that the -v trace never shows credentials.

use outpost::sasl::{
    self, AuthCache, AuthRequest, ConnSecurity, Credentials, MemoryStore, SaslParams,
};
use outpost::session::conn::{Conn, Dir};
use outpost::session::reply::{self, Reply};
use outpost::session::{Failure, Peer};
use outpost::sink::{SinkConfig, SinkHandle, spawn};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PASS: &str = "s3cr:et-pw";

fn sink(extra: &[&str], dir: Option<&std::path::Path>) -> SinkHandle {
    let mut a: Vec<String> = ["--quiet", "--timeout", "10s", "--auth-user", "joe"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.push("--auth-pass".into());
    a.push(PASS.into());
    a.extend(extra.iter().map(|s| s.to_string()));
    if let Some(d) = dir {
        a.push("--dir".into());
        a.push(d.display().to_string());
    }
    a.push("127.0.0.1:0".into());
    spawn(SinkConfig::from_args(&a).expect("sink options")).expect("sink starts")
}

struct Client {
    conn: Conn,
    peer: Peer,
    offered: Vec<String>,
    trace: Arc<Mutex<Vec<String>>>,
}

fn read(conn: &mut Conn) -> Result<Reply, outpost::session::conn::IoFailure> {
    reply::read_reply(conn, |_| {})
}

/// Connect, read the greeting, EHLO, and collect the AUTH mechanisms.
fn connect(h: &SinkHandle) -> Client {
    let addr: std::net::SocketAddr = h.addr().parse().expect("sink address");
    let stream = TcpStream::connect(addr).expect("connect");
    let mut conn = Conn::new(Box::new(stream), false);
    conn.set_timeout(Duration::from_secs(10));
    let trace = Arc::new(Mutex::new(Vec::new()));
    let t = Arc::clone(&trace);
    conn.set_tracer(Some(Box::new(move |dir, line| {
        let arrow = if dir == Dir::Sent { ">" } else { "<" };
        if let Ok(mut v) = t.lock() {
            v.push(format!("{arrow} {}", String::from_utf8_lossy(line)));
        }
    })));
    assert_eq!(read(&mut conn).expect("greeting").code, 220);
    conn.queue_cmd("EHLO client.test");
    conn.flush().expect("EHLO");
    let ehlo = read(&mut conn).expect("EHLO reply");
    let mut offered = Vec::new();
    for l in ehlo.lines() {
        let mut w = l.split([' ', '=']);
        if w.next().is_some_and(|k| k.eq_ignore_ascii_case("AUTH")) {
            offered.extend(w.filter(|m| !m.is_empty()).map(|m| m.to_ascii_uppercase()));
        }
    }
    Client {
        conn,
        peer: Peer {
            name: "sink.test".into(),
            addr: addr.ip().to_string(),
            port: addr.port(),
        },
        offered,
        trace,
    }
}

fn creds(pass: &str) -> Credentials {
    Credentials {
        username: "joe".into(),
        password: pass.into(),
    }
}

/// Options that allow every mechanism (Postfix's default forbids PLAIN and LOGIN).
fn permissive() -> SaslParams {
    SaslParams {
        security_options: String::new(),
        soft_bounce: false,
        ..SaslParams::default()
    }
}

fn auth(
    c: &mut Client,
    params: &SaslParams,
    cr: &Credentials,
    cache: Option<&mut AuthCache>,
) -> Result<sasl::Authenticated, Failure> {
    let no_tables = |_: &str, _: &str| -> Result<bool, String> { Ok(false) };
    let mechs = sasl::filter_offered(&c.peer, &c.offered, params, &no_tables).expect("filter");
    let req = AuthRequest {
        peer: &c.peer,
        mechanisms: &mechs,
        params,
        security: ConnSecurity::Plaintext,
        credentials: cr,
        while_: "performing the EHLO handshake",
    };
    sasl::authenticate(&mut c.conn, &req, cache, &mut read)
}

fn trace(c: &Client) -> Vec<String> {
    c.trace.lock().map(|v| v.clone()).unwrap_or_default()
}

/// Nothing in the trace or the failure may reveal the password or the encoded secrets.
fn assert_no_secrets(c: &Client, extra: &str) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let all = format!("{}\n{extra}", trace(c).join("\n"));
    for secret in [
        PASS.to_string(),
        "wrong-pw".to_string(),
        b64.encode(format!("\0joe\0{PASS}")),
        b64.encode(PASS),
        b64.encode("joe"),
    ] {
        assert!(!all.contains(&secret), "secret {secret:?} leaked:\n{all}");
    }
}

fn send_message(c: &mut Client) {
    for cmd in [
        "MAIL FROM:<a@example.org>",
        "RCPT TO:<b@example.net>",
        "DATA",
    ] {
        c.conn.queue_cmd(cmd);
        c.conn.flush().expect("send");
        let r = read(&mut c.conn).expect("reply");
        assert!(r.class() == 2 || r.class() == 3, "{cmd}: {}", r.text);
    }
    c.conn.queue(b"Subject: t\r\n\r\nhi\r\n.\r\n");
    c.conn.flush().expect("data");
    assert_eq!(read(&mut c.conn).expect("dot reply").class(), 2);
}

fn recorded_headers(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        if e.path().extension().is_some_and(|x| x == "eml") {
            out.push_str(&String::from_utf8_lossy(
                &std::fs::read(e.path()).unwrap_or_default(),
            ));
        }
    }
    out
}

#[test]
fn each_mechanism_authenticates_and_is_recorded() {
    for mech in ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = sink(&["--auth-mechs", mech], Some(dir.path()));
        let mut c = connect(&h);
        assert_eq!(c.offered, [mech]);
        let ok = auth(&mut c, &permissive(), &creds(PASS), None).expect(mech);
        assert_eq!(ok.mechanism.name(), mech);
        send_message(&mut c);
        assert!(
            recorded_headers(dir.path()).contains(&format!("X-Sink-Auth: {mech} joe\r\n")),
            "{mech}"
        );
        let t = trace(&c);
        // The AUTH line is traced with the mechanism but without the response.
        let auth_line = t
            .iter()
            .find(|l| l.starts_with("> AUTH "))
            .expect("AUTH traced");
        assert!(
            auth_line.starts_with(&format!("> AUTH {mech}")),
            "{auth_line}"
        );
        if mech == "PLAIN" || mech.starts_with("SCRAM") {
            assert_eq!(auth_line, &format!("> AUTH {mech} <redacted>"));
        }
        assert_no_secrets(&c, "");
    }
}

#[test]
fn best_mechanism_is_chosen() {
    let h = sink(&[], None);
    let mut c = connect(&h);
    let ok = auth(&mut c, &SaslParams::default(), &creds(PASS), None).expect("auth");
    assert_eq!(ok.mechanism.name(), "SCRAM-SHA-256");
}

#[test]
fn wrong_password_gives_535_text_and_bounce_class() {
    for mech in ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"] {
        let h = sink(&["--auth-mechs", mech], None);
        let mut c = connect(&h);
        let f = auth(&mut c, &permissive(), &creds("wrong-pw"), None).expect_err(mech);
        let want = "SASL authentication failed; server sink.test[127.0.0.1] said: \
             535 5.7.8 Error: authentication failed: authentication failure";
        assert_eq!(f.dsn.reason, want, "{mech}");
        assert_eq!(f.dsn.status, "5.7.8");
        assert_eq!(f.dsn.mta.as_deref(), Some("sink.test"));
        assert!(f.send_quit);
        assert_no_secrets(&c, &format!("{f:?}"));
    }
}

#[test]
fn soft_bounce_turns_5xx_into_4xx() {
    let h = sink(&["--auth-mechs", "CRAM-MD5"], None);
    let mut c = connect(&h);
    let params = SaslParams {
        soft_bounce: true,
        ..permissive()
    };
    let f = auth(&mut c, &params, &creds("wrong-pw"), None).expect_err("must fail");
    assert_eq!(f.dsn.status, "4.7.8");
    assert!(
        f.dsn
            .reason
            .ends_with("said: 535 5.7.8 Error: authentication failed: authentication failure")
    );
}

#[test]
fn scripted_454_defers() {
    let h = sink(
        &[
            "--auth-mechs",
            "PLAIN",
            "--reply",
            "auth=454 4.7.0 Temporary authentication failure",
        ],
        None,
    );
    let mut c = connect(&h);
    let f = auth(&mut c, &permissive(), &creds(PASS), None).expect_err("454");
    assert_eq!(f.dsn.status, "4.7.0");
    assert_eq!(
        f.dsn.reason,
        "SASL authentication failed; server sink.test[127.0.0.1] said: 454 4.7.0 Temporary authentication failure"
    );
}

#[test]
fn no_common_mechanism() {
    // The filter leaves nothing: Postfix's "offered no compatible" failure.
    let h = sink(&["--auth-mechs", "CRAM-MD5"], None);
    let mut c = connect(&h);
    let params = SaslParams {
        mechanism_filter: "plain, login".into(),
        ..permissive()
    };
    let f = auth(&mut c, &params, &creds(PASS), None).expect_err("no mechanism");
    assert_eq!(f.dsn.status, "4.7.0");
    assert_eq!(
        f.dsn.reason,
        "SASL authentication failed: server sink.test[127.0.0.1] offered no compatible \
         authentication mechanisms for this type of connection security"
    );
    assert!(!trace(&c).iter().any(|l| l.starts_with("> AUTH")));
}

#[test]
fn noplaintext_refuses_plain_and_login() {
    let h = sink(&["--auth-mechs", "PLAIN LOGIN"], None);
    let mut c = connect(&h);
    // Postfix's default options: noplaintext, noanonymous.
    let f = auth(&mut c, &SaslParams::default(), &creds(PASS), None).expect_err("refused");
    assert_eq!(f.dsn.status, "4.7.0");
    assert_eq!(
        f.dsn.reason,
        "SASL authentication failed; cannot authenticate to server sink.test[127.0.0.1]: no mechanism available"
    );
    assert!(f.dsn.mta.is_none());
    assert!(
        !trace(&c).iter().any(|l| l.starts_with("> AUTH")),
        "nothing sent"
    );
    // With TLS the TLS options apply; the same sink is fine when they allow plaintext.
    let mut c = connect(&h);
    let params = SaslParams {
        tls_security_options: "noanonymous".into(),
        ..SaslParams::default()
    };
    let no_tables = |_: &str, _: &str| -> Result<bool, String> { Ok(false) };
    let mechs = sasl::filter_offered(&c.peer, &c.offered, &params, &no_tables).expect("filter");
    let cr = creds(PASS);
    let req = AuthRequest {
        peer: &c.peer,
        mechanisms: &mechs,
        params: &params,
        security: ConnSecurity::Tls,
        credentials: &cr,
        while_: "performing the EHLO handshake",
    };
    let ok = sasl::authenticate(&mut c.conn, &req, None, &mut read).expect("tls options");
    assert_eq!(ok.mechanism.name(), "PLAIN");
}

#[test]
fn scram_server_signature_is_verified() {
    let h = sink(
        &[
            "--auth-mechs",
            "SCRAM-SHA-256",
            "--auth-bad-server-signature",
        ],
        None,
    );
    let mut c = connect(&h);
    let f = auth(&mut c, &permissive(), &creds(PASS), None).expect_err("bad signature");
    assert_eq!(
        f.dsn.reason,
        "SASL authentication failed; cannot authenticate to server sink.test[127.0.0.1]: authentication failure"
    );
    assert_eq!(f.dsn.status, "4.7.0");
    // The exchange was cancelled, so the connection is still in step for QUIT.
    assert!(trace(&c).iter().any(|l| l == "> *"), "{:?}", trace(&c));
    assert!(f.send_quit);
    c.conn.queue_cmd("QUIT");
    c.conn.flush().expect("QUIT");
    assert_eq!(read(&mut c.conn).expect("QUIT reply").code, 221);
}

#[test]
fn failure_cache_replays_535_without_auth() {
    let h = sink(&["--auth-mechs", "CRAM-MD5"], None);
    let mut cache = AuthCache::new(
        "proxy:btree:/test",
        Box::new(MemoryStore::default()),
        Duration::from_secs(3600),
    );
    let params = SaslParams {
        soft_bounce: true,
        ..permissive()
    };
    let mut c = connect(&h);
    let first = auth(&mut c, &params, &creds("wrong-pw"), Some(&mut cache)).expect_err("535");
    assert_eq!(first.dsn.status, "4.7.8");
    let mut c = connect(&h);
    let second = auth(&mut c, &params, &creds("wrong-pw"), Some(&mut cache)).expect_err("cached");
    assert_eq!(second.dsn.status, "4.7.8");
    assert_eq!(
        second.dsn.reason,
        "SASL [CACHED] authentication failed; server sink.test said: \
         535 5.7.8 Error: authentication failed: authentication failure"
    );
    assert!(!trace(&c).iter().any(|l| l.starts_with("> AUTH")));
    // The right password is not blocked by the cached failure.
    let mut c = connect(&h);
    auth(&mut c, &params, &creds(PASS), Some(&mut cache)).expect("new password works");
}

#[test]
fn long_initial_response_waits_for_empty_challenge() {
    let long = "x".repeat(600);
    let args = ["--auth-mechs", "PLAIN"];
    let mut a: Vec<String> = [
        "--quiet",
        "--timeout",
        "10s",
        "--auth-user",
        "joe",
        "--auth-pass",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(long.clone());
    a.extend(args.iter().map(|s| s.to_string()));
    a.push("127.0.0.1:0".into());
    let h = spawn(SinkConfig::from_args(&a).expect("options")).expect("sink");
    let mut c = connect(&h);
    auth(&mut c, &permissive(), &creds(&long), None).expect("deferred initial response");
    let t = trace(&c);
    assert!(t.iter().any(|l| l == "> AUTH PLAIN"), "{t:?}");
    assert!(t.iter().any(|l| l == "< 334" || l == "< 334 "), "{t:?}");
    assert!(!t.join("\n").contains(&long));
}
