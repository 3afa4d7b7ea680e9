//! SASL end to end through `outpost send` (CLI mode), with the configuration most Postfix
//! clients have: a relayhost with authentication (`relayhost = [host]:port`,
//! `smtp_sasl_auth_enable = yes`, `smtp_sasl_password_maps = hash:.../sasl_passwd` built
//! by Debian's postmap, mode 0600). The server is Postfix's smtpd with dovecot's SASL
//! (tests/sasl_fixture), over STARTTLS and in plaintext; `outpost sink` scripts the 454
//! and 535 replies. Every run's output and log are searched for the passwords (and their
//! base64 wire forms). Skips without root, postfix, postmap, dovecot or openssl.

mod sasl_fixture;
mod support;

use sasl_fixture::*;
use std::path::{Path, PathBuf};
use support::*;

const RCPT: &str = "rcpt@remote.test";
const MSG: &[u8] = b"Subject: sasl e2e\n\nhello\n";

/// A config directory with main.cf: relayhost [localhost]:PORT (resolved through
/// /etc/hosts), SASL on, the given password maps, and `extra` lines.
fn config(dir: &TestDir, port: u16, maps: &str, extra: &str) -> PathBuf {
    let conf = dir.subdir(&unique("conf"), 0o755, None);
    std::fs::write(
        conf.join("main.cf"),
        format!(
            "myhostname = outpost.test\n\
             inet_protocols = ipv4\n\
             smtp_host_lookup = native\n\
             relayhost = [localhost]:{port}\n\
             smtp_sasl_auth_enable = yes\n\
             smtp_sasl_password_maps = {maps}\n\
             {extra}\n"
        ),
    )
    .expect("main.cf");
    conf
}

/// `outpost send -c CONF -f FROM [-o ...] RCPT`; asserts that no credential shows in the
/// output or log.
fn send_with(conf: &Path, from: &str, opts: &[&str]) -> Run {
    let c = conf.display().to_string();
    let mut args = vec!["send", "-c", &c, "-f", from];
    for o in opts {
        args.push("-o");
        args.push(o);
    }
    args.push(RCPT);
    let r = outpost(&args, MSG);
    assert_no_secrets("outpost send output", &format!("{}{}", r.stdout, r.stderr));
    r
}

/// The stdout result for RCPT, without the server's queue id.
fn result(r: &Run) -> String {
    let l = r
        .result(RCPT)
        .unwrap_or_else(|| panic!("no result\n{}", r.show()));
    match l.find("queued as ") {
        Some(i) => l[..i].to_string(),
        None => l.to_string(),
    }
}

fn start() -> Option<(TestDir, Relay)> {
    let bins = tools()?;
    let dir = TestDir::new("sasl-e2e");
    let relay = Relay::start(&dir, &bins[3]);
    Some((dir, relay))
}

/// Each mechanism logs in, in plaintext and over STARTTLS (smtp_tls_security_level =
/// encrypt), with the relayhost configuration; -v shows the dialogue without credentials;
/// smtp_send_dummy_mail_auth adds AUTH=<>.
#[test]
fn relayhost_each_mechanism_plaintext_and_starttls() {
    let Some((dir, relay)) = start() else { return };
    let port = relay.pf.port;
    let maps = sasl_passwd(
        dir.path(),
        "sasl_passwd",
        "hash",
        &format!("[localhost]:{port} {}:{}\n", JOE.0, JOE.1),
    );
    let conf = config(
        &dir,
        port,
        &maps,
        "smtp_sasl_security_options = noanonymous",
    );
    let mut n = 0;
    for tls in ["none", "encrypt"] {
        for mech in ["PLAIN", "LOGIN", "CRAM-MD5"] {
            let level = format!("smtp_tls_security_level={tls}");
            let filter = format!("smtp_sasl_mechanism_filter={mech}");
            let r = send_with(&conf, "sender@x.test", &[&level, &filter]);
            n += 1;
            ensure!(
                r.code == 0 && result(&r).contains(": sent dsn=2.0.0 relay=localhost[127.0.0.1]:"),
                format!("{}\n{}", r.show(), relay.show()),
                "{mech} with TLS {tls}: not sent"
            );
            let logins = relay.wait_logins(n);
            assert_eq!(
                logins.get(n - 1).map(String::as_str),
                Some(format!("sasl_method={mech}, sasl_username=joe").as_str()),
                "{mech}/{tls}: {logins:?}\n{}",
                relay.show()
            );
        }
    }
    // The TLS sessions were TLS at the server.
    let log = relay.pf.maillog();
    assert_eq!(
        log.matches("TLS connection established from localhost")
            .count(),
        3,
        "{log}"
    );
    // -v: the AUTH exchange is traced, redacted; AUTH=<> on MAIL FROM when asked for.
    let c = conf.display().to_string();
    let r = outpost(
        &[
            "send",
            "-v",
            "-c",
            &c,
            "-f",
            "sender@x.test",
            "-o",
            "smtp_sasl_mechanism_filter=login",
            "-o",
            "smtp_send_dummy_mail_auth=yes",
            RCPT,
        ],
        MSG,
    );
    assert_eq!(r.code, 0, "{}", r.show());
    assert_no_secrets("outpost send -v", &format!("{}{}", r.stdout, r.stderr));
    let trace = r.trace();
    ensure!(
        trace.iter().any(|l| l == "> AUTH LOGIN")
            && trace.iter().filter(|l| *l == "> <redacted>").count() == 2
            && trace
                .iter()
                .any(|l| l.starts_with("> MAIL FROM:<sender@x.test> ") && l.ends_with(" AUTH=<>"))
            && trace.iter().any(|l| l.starts_with("< 235 ")),
        r.show(),
        "unexpected -v trace: {trace:#?}"
    );
    assert_no_secrets("smtpd maillog", &relay.pf.maillog());
}

/// smtp_sasl_security_options' default (noplaintext) refuses PLAIN and LOGIN without TLS
/// (and picks CRAM-MD5 when offered); smtp_sasl_tls_security_options = noanonymous
/// allows PLAIN over TLS, while its default (the plaintext options) does not.
#[test]
fn noplaintext_refuses_plain_without_tls_and_allows_it_over_tls() {
    let Some((dir, relay)) = start() else { return };
    let port = relay.pf.port;
    let maps = sasl_passwd(
        dir.path(),
        "sasl_passwd",
        "hash",
        &format!("[localhost]:{port} {}:{}\n", JOE.0, JOE.1),
    );
    let conf = config(&dir, port, &maps, "");
    let plain_login = "smtp_sasl_mechanism_filter=plain, login";
    // Plaintext, only PLAIN/LOGIN left: nothing acceptable.
    let r = send_with(&conf, "s@x.test", &[plain_login]);
    assert_eq!(r.code, 75, "{}", r.show());
    assert_eq!(
        result(&r),
        format!(
            "{RCPT}: deferred dsn=4.7.0 relay=localhost[127.0.0.1]:{port} (SASL authentication \
             failed; cannot authenticate to server localhost[127.0.0.1]: no mechanism available)"
        ),
        "{}",
        r.show()
    );
    // Plaintext, everything offered: CRAM-MD5.
    let r = send_with(&conf, "s@x.test", &[]);
    assert_eq!(r.code, 0, "{}", r.show());
    // TLS with the default TLS options (= the plaintext ones): still refused.
    let r = send_with(
        &conf,
        "s@x.test",
        &[plain_login, "smtp_tls_security_level=encrypt"],
    );
    assert_eq!(r.code, 75, "{}", r.show());
    assert!(
        result(&r).contains("no mechanism available"),
        "{}",
        r.show()
    );
    // TLS with smtp_sasl_tls_security_options = noanonymous: PLAIN is fine.
    let r = send_with(
        &conf,
        "s@x.test",
        &[
            plain_login,
            "smtp_tls_security_level=encrypt",
            "smtp_sasl_tls_security_options=noanonymous",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.show());
    let logins = relay.wait_logins(2);
    assert_eq!(
        logins,
        [
            "sasl_method=CRAM-MD5, sasl_username=joe",
            "sasl_method=PLAIN, sasl_username=joe"
        ],
        "{}",
        relay.show()
    );
    // A filter that leaves nothing: Postfix's warning and deferral text.
    let r = send_with(
        &conf,
        "s@x.test",
        &["smtp_sasl_mechanism_filter=digest-md5"],
    );
    assert_eq!(r.code, 75, "{}", r.show());
    assert!(
        r.stderr.contains(&format!(
            "warning: localhost[127.0.0.1]:{port} offered no supported AUTH mechanisms: 'PLAIN LOGIN CRAM-MD5'"
        )),
        "{}",
        r.show()
    );
    assert!(
        result(&r).contains(
            "(SASL authentication failed: server localhost[127.0.0.1] offered no compatible \
             authentication mechanisms for this type of connection security)"
        ),
        "{}",
        r.show()
    );
}

/// A wrong password: deferred with smtp_sasl_auth_soft_bounce = yes (the default, 5.x.x
/// turned into 4.x.x), bounced with no; the server's 535 text in both.
#[test]
fn wrong_password_defers_or_bounces_per_soft_bounce() {
    let Some((dir, relay)) = start() else { return };
    let port = relay.pf.port;
    let maps = sasl_passwd(
        dir.path(),
        "sasl_passwd",
        "hash",
        &format!("[localhost]:{port} joe:{WRONG}\n"),
    );
    let conf = config(
        &dir,
        port,
        &maps,
        "smtp_sasl_security_options = noanonymous",
    );
    // dovecot adds its reason ("(reason unavailable)" from its auth service).
    let said = "(SASL authentication failed; server localhost[127.0.0.1] said: 535 5.7.8 Error: \
                authentication failed: ";
    for mech in ["plain", "login", "cram-md5"] {
        let f = format!("smtp_sasl_mechanism_filter={mech}");
        let r = send_with(&conf, "s@x.test", &[&f]);
        assert_eq!(r.code, 75, "{}", r.show());
        assert!(
            result(&r).starts_with(&format!(
                "{RCPT}: deferred dsn=4.7.8 relay=localhost[127.0.0.1]:{port} {said}"
            )),
            "{}\n{}",
            r.show(),
            relay.show()
        );
        let r = send_with(&conf, "s@x.test", &[&f, "smtp_sasl_auth_soft_bounce=no"]);
        assert_eq!(r.code, 77, "{}", r.show());
        assert!(
            result(&r).starts_with(&format!(
                "{RCPT}: bounced dsn=5.7.8 relay=localhost[127.0.0.1]:{port} {said}"
            )),
            "{}",
            r.show()
        );
    }
    assert_no_secrets("smtpd maillog", &relay.pf.maillog());
    assert_no_secrets("dovecot log", &read_lossy(&relay.auth.log));
}

/// Scripted replies from `outpost sink`: 454 always defers; 535 defers or bounces by
/// smtp_sasl_auth_soft_bounce.
#[test]
fn sink_454_defers_and_535_follows_soft_bounce() {
    let dir = TestDir::new("sasl-sink");
    for (reply, soft, code, word, dsn) in [
        (
            "454 4.7.0 Temporary authentication failure",
            "yes",
            75,
            "deferred",
            "4.7.0",
        ),
        (
            "454 4.7.0 Temporary authentication failure",
            "no",
            75,
            "deferred",
            "4.7.0",
        ),
        (
            "535 5.7.8 Authentication credentials invalid",
            "yes",
            75,
            "deferred",
            "4.7.8",
        ),
        (
            "535 5.7.8 Authentication credentials invalid",
            "no",
            77,
            "bounced",
            "5.7.8",
        ),
    ] {
        let sink = OutpostSink::start(
            &dir,
            &[
                "--auth-user",
                JOE.0,
                "--auth-pass",
                JOE.1,
                "--reply",
                &format!("auth={reply}"),
            ],
        );
        let maps = format!("inline:{{ [127.0.0.1]:{}={}:{} }}", sink.port, JOE.0, JOE.1);
        let conf = config(
            &dir,
            sink.port,
            &maps,
            "smtp_sasl_security_options = noanonymous",
        );
        let d = format!("[127.0.0.1]:{}", sink.port);
        let soft = format!("smtp_sasl_auth_soft_bounce={soft}");
        let c = conf.display().to_string();
        let r = outpost(
            &[
                "send", "-c", &c, "-f", "s@x.test", "-d", &d, "-o", &soft, RCPT,
            ],
            MSG,
        );
        assert_no_secrets("outpost send", &format!("{}{}", r.stdout, r.stderr));
        assert_eq!(r.code, code, "{}\n{}", r.show(), sink.show());
        assert_eq!(
            result(&r),
            format!(
                "{RCPT}: {word} dsn={dsn} relay=127.0.0.1[127.0.0.1]:{} (SASL authentication \
                 failed; server 127.0.0.1[127.0.0.1] said: {reply})",
                sink.port
            ),
            "{}",
            r.show()
        );
    }
}

/// smtp_sender_dependent_authentication: the sender address, then @domain, then the
/// relayhost; off, or for the null sender, only the relayhost key counts.
#[test]
fn sender_dependent_credentials() {
    let Some((dir, relay)) = start() else { return };
    let port = relay.pf.port;
    let maps = sasl_passwd(
        dir.path(),
        "sasl_passwd",
        "hash",
        &format!(
            "sender@x.test {}:{}\n@other.test {}:{}\n[localhost]:{port} {}:{}\n",
            JOE.0, JOE.1, BOB.0, BOB.1, CARL.0, CARL.1
        ),
    );
    let conf = config(
        &dir,
        port,
        &maps,
        "smtp_sasl_security_options = noanonymous\nsmtp_sender_dependent_authentication = yes",
    );
    let runs = [
        ("sender@x.test", "yes", "joe"),
        ("sender+ext@x.test", "yes", "joe"),
        ("anyone@other.test", "yes", "bob"),
        ("nobody@elsewhere.test", "yes", "carl"),
        ("", "yes", "carl"),
        ("sender@x.test", "no", "carl"),
    ];
    for (i, (from, dep, _)) in runs.iter().enumerate() {
        let o = format!("smtp_sender_dependent_authentication={dep}");
        let r = send_with(&conf, from, &[&o, "recipient_delimiter=+"]);
        assert_eq!(r.code, 0, "{from}: {}", r.show());
        let logins = relay.wait_logins(i + 1);
        assert_eq!(logins.len(), i + 1, "{}", relay.show());
    }
    let want: Vec<String> = runs
        .iter()
        .map(|(_, _, u)| format!("sasl_method=PLAIN, sasl_username={u}"))
        .collect();
    // Bare localpart keys only for a local domain ($mydestination, not $myorigin).
    let local_maps = sasl_passwd(
        dir.path(),
        "sasl_passwd_local",
        "hash",
        &format!(
            "mine {}:{}\n[localhost]:{port} {}:{}\n",
            BOB.0, BOB.1, CARL.0, CARL.1
        ),
    );
    let local_conf = config(
        &dir,
        port,
        &local_maps,
        "smtp_sasl_security_options = noanonymous\nsmtp_sender_dependent_authentication = yes\n\
         myorigin = here.test",
    );
    let mut more = Vec::new();
    for (mydest, user) in [
        ("mydestination=", "carl"),
        ("mydestination=here.test", "bob"),
    ] {
        let r = send_with(&local_conf, "mine@here.test", &[mydest]);
        assert_eq!(r.code, 0, "{mydest}: {}", r.show());
        more.push(user);
    }
    let n = runs.len() + more.len();
    let got = relay.wait_logins(n);
    let (got, got_more) = got.split_at(runs.len().min(got.len()));
    let more_users: Vec<String> = got_more
        .iter()
        .map(|l| l.rsplit("sasl_username=").next().unwrap_or("").to_string())
        .collect();
    assert_eq!(more_users, more, "{}", relay.show());
    // PLAIN or CRAM-MD5 depending on the options; compare the user names.
    let users = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|l| l.rsplit("sasl_username=").next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(users(got), users(&want), "{}", relay.show());
}

/// Which keys find the password, as Postfix looks them up: the host name, then the
/// next-hop destination as written ([host]:port, host:port); never host:port made up
/// from a [host]:port destination, never [host] without the port. No password: no AUTH,
/// and the server refuses to relay.
#[test]
fn password_lookup_keys_like_postfix() {
    let Some((dir, relay)) = start() else { return };
    let port = relay.pf.port;
    let cases: Vec<(String, &str, bool)> = vec![
        (format!("[localhost]:{port}"), "relayhost", true),
        ("localhost".to_string(), "relayhost", true),
        (format!("localhost:{port}"), "relayhost", false),
        ("[localhost]".to_string(), "relayhost", false),
        ("127.0.0.1".to_string(), "relayhost", false),
        (format!("localhost:{port}"), "plain-nexthop", true),
        ("localhost".to_string(), "plain-nexthop", true),
    ];
    for (i, (key, how, ok)) in cases.iter().enumerate() {
        let maps = sasl_passwd(
            dir.path(),
            &format!("sasl_passwd{i}"),
            "hash",
            &format!("{key} {}:{}\n", JOE.0, JOE.1),
        );
        let conf = config(
            &dir,
            port,
            &maps,
            "smtp_sasl_security_options = noanonymous\nsmtp_dns_support_level = disabled",
        );
        let r = if *how == "relayhost" {
            send_with(&conf, "s@x.test", &[])
        } else {
            let relayhost = format!("relayhost=localhost:{port}");
            send_with(&conf, "s@x.test", &[&relayhost])
        };
        if *ok {
            assert_eq!(
                r.code,
                0,
                "key {key} ({how}): {}\n{}",
                r.show(),
                relay.show()
            );
        } else {
            assert_eq!(r.code, 77, "key {key} ({how}): {}", r.show());
            assert!(
                result(&r).contains("Relay access denied"),
                "key {key} ({how}): {}",
                r.show()
            );
        }
    }
}

/// The same sasl_passwd as hash:, btree:, lmdb:, cdb: (postmap) and texthash: gives the
/// same results for the same scenarios.
#[test]
fn table_types_give_identical_results() {
    let Some((dir, relay)) = start() else { return };
    let port = relay.pf.port;
    let source = format!(
        "# comment\nsender@x.test {}:{}\n[localhost]:{port} {}:{}\nwrong@x.test joe:{WRONG}\n",
        JOE.0, JOE.1, BOB.0, BOB.1
    );
    let mut all = Vec::new();
    for kind in ["hash", "btree", "lmdb", "cdb", "texthash"] {
        let maps = sasl_passwd(dir.path(), &format!("sasl_passwd_{kind}"), kind, &source);
        let conf = config(
            &dir,
            port,
            &maps,
            "smtp_sasl_security_options = noanonymous\nsmtp_sender_dependent_authentication = yes",
        );
        let mut outcome = Vec::new();
        for from in [
            "sender@x.test",
            "other@x.test",
            "wrong@x.test",
            "SENDER@X.TEST",
        ] {
            let r = send_with(&conf, from, &[]);
            outcome.push(format!("{from}: {} {}", r.code, result(&r)));
        }
        all.push((kind, outcome));
    }
    for (kind, o) in &all[1..] {
        assert_eq!(o, &all[0].1, "{kind} differs from hash");
    }
    assert!(all[0].1[0].contains(": 0 "), "{:?}", all[0].1);
    assert!(all[0].1[2].contains("deferred dsn=4.7.8"), "{:?}", all[0].1);
    let users: Vec<String> = relay
        .logins()
        .iter()
        .map(|l| l.rsplit("sasl_username=").next().unwrap_or("").to_string())
        .collect();
    // joe, bob, (wrong: no login), joe (keys are case-insensitive), five times.
    assert_eq!(users, ["joe", "bob", "joe"].repeat(5), "{}", relay.show());
}

/// A password table that cannot be opened (missing .db, unknown type, unreadable lmdb):
/// the mail is deferred with Postfix's "local data error" text and warnings, never
/// bounced; with no AUTH offered the table is never consulted.
#[test]
fn unusable_password_table_defers() {
    let Some((dir, relay)) = start() else { return };
    let port = relay.pf.port;
    let missing = format!("hash:{}/nonexistent/sasl_passwd", dir.path().display());
    for (maps, soft) in [
        (missing.as_str(), "yes"),
        (missing.as_str(), "no"),
        ("nosuchtype:/etc/postfix/sasl_passwd", "no"),
    ] {
        let conf = config(&dir, port, maps, "smtp_sasl_security_options = noanonymous");
        let o = format!("smtp_sasl_auth_soft_bounce={soft}");
        let r = send_with(&conf, "s@x.test", &[&o]);
        assert_eq!(r.code, 75, "{maps}: {}", r.show());
        assert_eq!(
            result(&r),
            format!(
                "{RCPT}: deferred dsn=4.3.0 relay=localhost[127.0.0.1]:{port} (local data error \
                 while talking to localhost[127.0.0.1])"
            ),
            "{}",
            r.show()
        );
        assert!(
            r.stderr.contains("smtp_sasl_password_maps lookup error"),
            "{}",
            r.show()
        );
    }
}

/// smtp_sasl_auth_cache_name must name a proxy: table (Postfix's fatal error otherwise);
/// with a good name, deliveries work as before.
#[test]
fn auth_cache_name_must_be_proxy() {
    let Some((dir, relay)) = start() else { return };
    let port = relay.pf.port;
    let maps = sasl_passwd(
        dir.path(),
        "sasl_passwd",
        "hash",
        &format!("[localhost]:{port} {}:{}\n", JOE.0, JOE.1),
    );
    let conf = config(
        &dir,
        port,
        &maps,
        "smtp_sasl_security_options = noanonymous",
    );
    let bad = format!(
        "smtp_sasl_auth_cache_name=btree:{}/cache",
        dir.path().display()
    );
    let r = send_with(&conf, "s@x.test", &[&bad]);
    assert_ne!(r.code, 0, "{}", r.show());
    assert!(
        r.stderr.contains(&format!(
            "SASL authentication cache name \"btree:{}/cache\" must start with \"proxy:",
            dir.path().display()
        )),
        "{}",
        r.show()
    );
    let good = format!(
        "smtp_sasl_auth_cache_name=proxy:btree:{}/cache",
        dir.path().display()
    );
    let r = send_with(&conf, "s@x.test", &[&good]);
    assert_eq!(r.code, 0, "{}", r.show());
}
