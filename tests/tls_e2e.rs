//! TLS end to end through `outpost send` (CLI mode): every security level except dane
//! against servers with matching and mismatching certificates (`outpost sink` with
//! --tls-cert, Postfix's smtpd with TLS), smtp_tls_policy_maps attributes and lookup keys,
//! the plaintext retry after a failed opportunistic handshake, cipher and protocol limits
//! as negotiated at the server, client certificates, SNI, implicit TLS, a reply injected
//! before the handshake, the EHLO after the handshake, and Postfix's log texts.
//!
//! Certificates come from tests/tls_pki (openssl CLI). Name-based checks (hostname,
//! nexthop and dot-nexthop matching, parent-domain policy keys) run in a private network
//! namespace with dnsmasq (tests/support_dns). Tests print SKIP and pass when openssl, root,
//! ip/dnsmasq or Postfix are missing.

mod common;
mod support_dns;
mod tls_pki;

use common::{MSG, Run, Sink, send};
use tls_pki::{have_openssl, pki};

const R: &str = "rcpt@dest.test";
const UNTRUSTED: &str = "Untrusted TLS connection established to ADDR: TLSv1.3 with cipher";
const TRUSTED: &str = "Trusted TLS connection established to ADDR: TLSv1.3 with cipher";
const VERIFIED: &str = "Verified TLS connection established to ADDR: TLSv1.3 with cipher";

fn usable() -> bool {
    let ok = have_openssl();
    if !ok {
        eprintln!("SKIP: the openssl command is missing (scripts/test-deps.sh installs it)");
    }
    ok
}

/// A sink offering STARTTLS with certificate NAME (tests/tls_pki), plus `extra` options.
fn tls_sink(name: &str, extra: &[&str]) -> Sink {
    let k = pki();
    let mut a = vec![
        "--tls-cert".to_string(),
        k.p(&format!("{name}-chain.pem")),
        "--tls-key".to_string(),
        k.p(&format!("{name}.key")),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    Sink::start(&a)
}

/// `outpost send` to the sink with `-o` settings.
fn deliver(sink: &Sink, opts: &[&str]) -> Run {
    // Postfix's default smtp_tls_loglevel is 0 (no "TLS connection established" lines);
    // later -o settings win.
    let mut extra = vec!["-o", "smtp_tls_loglevel=1"];
    for o in opts {
        extra.push("-o");
        extra.push(*o);
    }
    send(&sink.dest(), &extra, &[R], MSG)
}

/// A texthash policy table file with these lines; returns `texthash:PATH`.
fn policy_table(dir: &tempfile::TempDir, lines: &str) -> String {
    let p = dir.path().join(format!(
        "policy{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::write(&p, lines).expect("policy file");
    format!("texthash:{}", p.display())
}

fn tls_header(sink: &Sink) -> Option<String> {
    let m = sink.messages();
    if m.is_empty() {
        return None;
    }
    sink.meta(0, "TLS").into_iter().next()
}

/// What a case expects.
struct Want {
    sent: bool,
    /// Substrings of stderr (log) that must appear.
    log: &'static [&'static str],
    /// Substrings of the result line.
    result: &'static [&'static str],
    /// The server recorded a TLS session for the message.
    tls: bool,
}

fn check(what: &str, sink: &Sink, run: &Run, w: &Want) {
    let line = run.result(R).to_string();
    let addr = format!("127.0.0.1[127.0.0.1]:{}", sink.port());
    let ok_state = if w.sent {
        line.contains(": sent ") && run.code == 0
    } else {
        line.contains(": deferred ") && run.code == 75
    };
    assert!(ok_state, "{what}: want sent={}:\n{run}", w.sent);
    for l in w.log {
        let l = l.replace("ADDR", &addr);
        assert!(run.stderr.contains(&l), "{what}: log lacks {l:?}:\n{run}");
    }
    for r in w.result {
        let r = r.replace("ADDR", &addr);
        assert!(line.contains(&r), "{what}: result lacks {r:?}:\n{run}");
    }
    if w.sent {
        let tls = tls_header(sink);
        assert_eq!(tls.is_some(), w.tls, "{what}: X-Sink-TLS {tls:?}\n{run}");
    }
}

#[test]
fn levels_against_matching_and_mismatching_servers() {
    if !usable() {
        return;
    }
    let k = pki();
    let ca = format!("smtp_tls_CAfile={}", k.p("ca.pem"));
    let capath = format!("smtp_tls_CApath={}", k.p("capath"));
    let fp = format!(
        "smtp_tls_fingerprint_cert_match={}",
        k.cert_fp("srv", "sha256")
    );
    let fp_pkey = format!(
        "smtp_tls_fingerprint_cert_match={}",
        k.pkey_fp("srv", "sha256")
    );
    let fp_sha1 = format!(
        "smtp_tls_fingerprint_cert_match={}",
        k.cert_fp("srv", "sha1")
    );
    let fp_other = format!(
        "smtp_tls_fingerprint_cert_match={}",
        k.cert_fp("wrong", "sha256")
    );
    let not_verified: &[&str] = &["deferred dsn=4.7.5", "(Server certificate not verified)"];
    // (name, server certificate (None: no STARTTLS), settings, expectation)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<&'a str>, Want);
    let cases: Vec<Case> = vec![
        (
            "none",
            Some("srv"),
            vec!["smtp_tls_security_level=none"],
            Want {
                sent: true,
                log: &[],
                result: &[],
                tls: false,
            },
        ),
        (
            "none+note_starttls_offer",
            Some("srv"),
            vec![
                "smtp_tls_security_level=none",
                "smtp_tls_note_starttls_offer=yes",
            ],
            Want {
                sent: true,
                log: &["Host offered STARTTLS: [127.0.0.1]"],
                result: &[],
                tls: false,
            },
        ),
        (
            "may, no CA",
            Some("srv"),
            vec!["smtp_tls_security_level=may"],
            Want {
                sent: true,
                log: &[UNTRUSTED],
                result: &[],
                tls: true,
            },
        ),
        (
            "may, CAfile",
            Some("srv"),
            vec!["smtp_tls_security_level=may", &ca],
            Want {
                sent: true,
                log: &[TRUSTED],
                result: &[],
                tls: true,
            },
        ),
        (
            "may, plaintext server",
            None,
            vec!["smtp_tls_security_level=may"],
            Want {
                sent: true,
                log: &[],
                result: &[],
                tls: false,
            },
        ),
        (
            "encrypt, plaintext server",
            None,
            vec!["smtp_tls_security_level=encrypt"],
            Want {
                sent: false,
                log: &[],
                result: &[
                    "deferred dsn=4.7.4",
                    "(TLS is required, but was not offered by host 127.0.0.1[127.0.0.1])",
                ],
                tls: false,
            },
        ),
        (
            "encrypt, self-signed",
            Some("self"),
            vec!["smtp_tls_security_level=encrypt"],
            Want {
                sent: true,
                log: &[UNTRUSTED],
                result: &[],
                tls: true,
            },
        ),
        (
            "fingerprint sha256 cert",
            Some("srv"),
            vec![
                "smtp_tls_security_level=fingerprint",
                "smtp_tls_fingerprint_digest=sha256",
                &fp,
            ],
            Want {
                sent: true,
                log: &[VERIFIED],
                result: &[],
                tls: true,
            },
        ),
        (
            "fingerprint sha256 public key",
            Some("srv"),
            vec![
                "smtp_tls_security_level=fingerprint",
                "smtp_tls_fingerprint_digest=sha256",
                &fp_pkey,
            ],
            Want {
                sent: true,
                log: &[VERIFIED],
                result: &[],
                tls: true,
            },
        ),
        (
            "fingerprint sha1 digest",
            Some("srv"),
            vec![
                "smtp_tls_security_level=fingerprint",
                "smtp_tls_fingerprint_digest=sha1",
                &fp_sha1,
            ],
            Want {
                sent: true,
                log: &[VERIFIED],
                result: &[],
                tls: true,
            },
        ),
        (
            "fingerprint sha1 value, sha256 digest",
            Some("srv"),
            vec![
                "smtp_tls_security_level=fingerprint",
                "smtp_tls_fingerprint_digest=sha256",
                &fp_sha1,
            ],
            Want {
                sent: false,
                log: &[UNTRUSTED, "warning: ADDR: all fingerprints unusable"],
                result: not_verified,
                tls: false,
            },
        ),
        (
            // compatibility_level < 3.6 (the built-in default): md5, so a SHA-256 value
            // cannot be used.
            "fingerprint sha256 value, default digest md5",
            Some("srv"),
            vec!["smtp_tls_security_level=fingerprint", &fp],
            Want {
                sent: false,
                log: &[UNTRUSTED, "warning: ADDR: all fingerprints unusable"],
                result: not_verified,
                tls: false,
            },
        ),
        (
            "fingerprint of another certificate",
            Some("srv"),
            vec![
                "smtp_tls_security_level=fingerprint",
                "smtp_tls_fingerprint_digest=sha256",
                &fp_other,
            ],
            Want {
                sent: false,
                log: &[UNTRUSTED],
                result: not_verified,
                tls: false,
            },
        ),
        (
            "verify, CAfile, hostname 127.0.0.1 does not match",
            Some("srv"),
            vec!["smtp_tls_security_level=verify", &ca],
            // Postfix 3.7 lets OpenSSL check the names: a mismatch fails the chain.
            Want {
                sent: false,
                log: &[
                    UNTRUSTED,
                    "server certificate verification failed for ADDR: num=64:IP address mismatch",
                ],
                result: not_verified,
                tls: false,
            },
        ),
        (
            "verify, CAfile, literal match name",
            Some("srv"),
            vec![
                "smtp_tls_security_level=verify",
                &ca,
                "smtp_tls_verify_cert_match=mx.example.test",
            ],
            Want {
                sent: true,
                log: &[VERIFIED],
                result: &[],
                tls: true,
            },
        ),
        (
            "verify, CAfile, wildcard SAN",
            Some("srv"),
            vec![
                "smtp_tls_security_level=verify",
                &ca,
                "smtp_tls_verify_cert_match=a.wild.example.test",
            ],
            Want {
                sent: true,
                log: &[VERIFIED],
                result: &[],
                tls: true,
            },
        ),
        (
            "verify, CApath",
            Some("srv"),
            vec![
                "smtp_tls_security_level=verify",
                &capath,
                "smtp_tls_verify_cert_match=mx.example.test",
            ],
            Want {
                sent: true,
                log: &[VERIFIED],
                result: &[],
                tls: true,
            },
        ),
        (
            "verify, no CA",
            Some("srv"),
            vec![
                "smtp_tls_security_level=verify",
                "smtp_tls_verify_cert_match=mx.example.test",
            ],
            Want {
                sent: false,
                log: &[
                    UNTRUSTED,
                    "certificate verification failed for ADDR: untrusted issuer /CN=Test CA",
                ],
                result: not_verified,
                tls: false,
            },
        ),
        (
            "verify, expired",
            Some("expired"),
            vec![
                "smtp_tls_security_level=verify",
                &ca,
                "smtp_tls_verify_cert_match=mx.example.test",
            ],
            Want {
                sent: false,
                log: &[
                    UNTRUSTED,
                    "server certificate verification failed for ADDR: certificate has expired",
                ],
                result: not_verified,
                tls: false,
            },
        ),
        (
            "verify, wrong name",
            Some("wrong"),
            vec![
                "smtp_tls_security_level=verify",
                &ca,
                "smtp_tls_verify_cert_match=mx.example.test",
            ],
            Want {
                sent: false,
                log: &[
                    UNTRUSTED,
                    "server certificate verification failed for ADDR: num=62:hostname mismatch",
                ],
                result: not_verified,
                tls: false,
            },
        ),
        (
            "verify, intermediate CA, default depth",
            Some("deep"),
            vec![
                "smtp_tls_security_level=verify",
                &ca,
                "smtp_tls_verify_cert_match=mx.example.test",
            ],
            Want {
                sent: true,
                log: &[VERIFIED],
                result: &[],
                tls: true,
            },
        ),
        (
            "secure, literal match",
            Some("srv"),
            vec![
                "smtp_tls_security_level=secure",
                &ca,
                "smtp_tls_secure_cert_match=mx.example.test",
            ],
            Want {
                sent: true,
                log: &[VERIFIED],
                result: &[],
                tls: true,
            },
        ),
        (
            "secure, nexthop 127.0.0.1 does not match",
            Some("srv"),
            vec!["smtp_tls_security_level=secure", &ca],
            Want {
                sent: false,
                log: &[UNTRUSTED],
                result: not_verified,
                tls: false,
            },
        ),
        (
            "secure, self-signed",
            Some("self"),
            vec![
                "smtp_tls_security_level=secure",
                &ca,
                "smtp_tls_secure_cert_match=mx.example.test",
            ],
            Want {
                sent: false,
                log: &[
                    UNTRUSTED,
                    "certificate verification failed for ADDR: self-signed certificate",
                ],
                result: not_verified,
                tls: false,
            },
        ),
        (
            "secure, plaintext server",
            None,
            vec!["smtp_tls_security_level=secure", &ca],
            Want {
                sent: false,
                log: &[],
                result: &["deferred dsn=4.7.4", "TLS is required, but was not offered"],
                tls: false,
            },
        ),
        (
            "loglevel 0",
            Some("srv"),
            vec!["smtp_tls_security_level=encrypt", "smtp_tls_loglevel=0"],
            Want {
                sent: true,
                log: &[],
                result: &[],
                tls: true,
            },
        ),
    ];
    for (name, cert, opts, want) in &cases {
        let sink = match cert {
            Some(c) => tls_sink(c, &[]),
            None => Sink::start(&[]),
        };
        let run = deliver(&sink, opts);
        check(name, &sink, &run, want);
        if *name == "loglevel 0" {
            assert!(
                !run.stderr.contains("TLS connection established"),
                "{name}: {run}"
            );
        }
        if *name == "none" || *name == "may, plaintext server" {
            assert!(!run.stderr.contains("TLS connection"), "{name}: {run}");
            assert!(
                !run.stderr.contains("Host offered STARTTLS"),
                "{name}: {run}"
            );
        }
    }
}

#[test]
fn ciphers_protocols_and_client_certificates_as_the_server_saw_them() {
    if !usable() {
        return;
    }
    let k = pki();
    let dir = tempfile::tempdir().expect("tmp");
    // smtp_tls_protocols (may): TLS 1.2 at most.
    let sink = tls_sink("srv", &[]);
    let run = deliver(
        &sink,
        &["smtp_tls_security_level=may", "smtp_tls_protocols=!TLSv1.3"],
    );
    let h = tls_header(&sink).unwrap_or_else(|| panic!("no TLS: {run}"));
    assert!(h.starts_with("TLSv1.2 "), "{h}\n{run}");
    assert!(run.stderr.contains(": TLSv1.2 with cipher "), "{run}");
    // smtp_tls_mandatory_protocols applies from encrypt up, not to may.
    let sink = tls_sink("srv", &[]);
    let run = deliver(
        &sink,
        &[
            "smtp_tls_security_level=may",
            "smtp_tls_mandatory_protocols=<=TLSv1.2",
        ],
    );
    assert!(
        tls_header(&sink).is_some_and(|h| h.starts_with("TLSv1.3 ")),
        "{run}"
    );
    let sink = tls_sink("srv", &[]);
    let run = deliver(
        &sink,
        &[
            "smtp_tls_security_level=encrypt",
            "smtp_tls_mandatory_protocols=<=TLSv1.2",
        ],
    );
    assert!(
        tls_header(&sink).is_some_and(|h| h.starts_with("TLSv1.2 ")),
        "{run}"
    );
    // Cipher exclusions (TLS 1.2 ciphers; TLS 1.3 suites are not affected by them).
    let sink = tls_sink("srv", &[]);
    let run = deliver(
        &sink,
        &[
            "smtp_tls_security_level=may",
            "smtp_tls_protocols=<=TLSv1.2",
            "smtp_tls_exclude_ciphers=AESGCM, CHACHA20",
        ],
    );
    let h = tls_header(&sink).unwrap_or_else(|| panic!("no TLS: {run}"));
    assert!(
        h.starts_with("TLSv1.2 ")
            && !(h.contains("AES") && h.contains("GCM"))
            && !h.contains("CHACHA"),
        "{h}"
    );
    // The same limits from smtp_tls_policy_maps attributes (mandatory level).
    let sink = tls_sink("srv", &[]);
    let table = policy_table(
        &dir,
        &format!(
            "{} encrypt protocols=<=TLSv1.2 ciphers=high exclude=AESGCM:CHACHA20\n",
            sink.dest()
        ),
    );
    let run = deliver(&sink, &[&format!("smtp_tls_policy_maps={table}")]);
    let h = tls_header(&sink).unwrap_or_else(|| panic!("no TLS: {run}"));
    assert!(
        h.starts_with("TLSv1.2 ")
            && !(h.contains("AES") && h.contains("GCM"))
            && !h.contains("CHACHA"),
        "{h}\n{run}"
    );
    // Client certificate: presented when configured, not otherwise.
    let sink = tls_sink("srv", &[]);
    let run = deliver(
        &sink,
        &[
            "smtp_tls_security_level=may",
            &format!("smtp_tls_cert_file={}", k.p("client-chain.pem")),
            &format!("smtp_tls_key_file={}", k.p("client.key")),
        ],
    );
    let h = tls_header(&sink).unwrap_or_else(|| panic!("no TLS: {run}"));
    assert!(h.contains("client-cert=client.test"), "{h}\n{run}");
    let sink = tls_sink("srv", &[]);
    let run = deliver(&sink, &["smtp_tls_security_level=may"]);
    assert!(
        tls_header(&sink).is_some_and(|h| h.contains("client-cert=no")),
        "{run}"
    );
    // SNI: smtp_tls_servername literal, and the policy attribute servername=.
    let sink = tls_sink("srv", &[]);
    let run = deliver(
        &sink,
        &[
            "smtp_tls_security_level=may",
            "smtp_tls_servername=sni.example.test",
        ],
    );
    assert!(
        tls_header(&sink).is_some_and(|h| h.ends_with("sni=sni.example.test")),
        "{run}"
    );
    let sink = tls_sink("srv", &[]);
    let run = deliver(&sink, &["smtp_tls_security_level=may"]);
    assert!(
        tls_header(&sink).is_some_and(|h| !h.contains("sni=")),
        "no SNI by default: {run}"
    );
    let sink = tls_sink("srv", &[]);
    let table = policy_table(
        &dir,
        &format!("{} may servername=policy.example.test\n", sink.dest()),
    );
    let run = deliver(&sink, &[&format!("smtp_tls_policy_maps={table}")]);
    assert!(
        tls_header(&sink).is_some_and(|h| h.ends_with("sni=policy.example.test")),
        "{run}"
    );
    // smtp_tls_servername=hostname with a literal IP: Postfix 3.7 does not filter
    // addresses out, the "host name" 127.0.0.1 is sent as is.
    let sink = tls_sink("srv", &[]);
    let run = deliver(
        &sink,
        &[
            "smtp_tls_security_level=may",
            "smtp_tls_servername=hostname",
        ],
    );
    assert!(
        tls_header(&sink).is_some_and(|h| h.ends_with("sni=127.0.0.1")),
        "{run}"
    );
}

#[test]
fn policy_table_levels_keys_and_match() {
    if !usable() {
        return;
    }
    let k = pki();
    let dir = tempfile::tempdir().expect("tmp");
    let ca = format!("smtp_tls_CAfile={}", k.p("ca.pem"));
    // The exact nexthop "[127.0.0.1]:PORT" is the key; the per-destination level wins
    // over the global one, and match= names the certificate.
    let sink = tls_sink("srv", &[]);
    let t = policy_table(
        &dir,
        &format!("{} verify match=mx.example.test\n", sink.dest()),
    );
    let run = deliver(
        &sink,
        &[
            "smtp_tls_security_level=none",
            &ca,
            &format!("smtp_tls_policy_maps={t}"),
        ],
    );
    assert!(run.result(R).contains(": sent "), "{run}");
    assert!(
        run.stderr.contains("Verified TLS connection established"),
        "{run}"
    );
    // match= with several names, none right: not verified.
    let sink = tls_sink("srv", &[]);
    let t = policy_table(
        &dir,
        &format!(
            "{} secure match=a.example.test:b.example.test\n",
            sink.dest()
        ),
    );
    let run = deliver(&sink, &[&ca, &format!("smtp_tls_policy_maps={t}")]);
    assert!(
        run.result(R).contains("(Server certificate not verified)"),
        "{run}"
    );
    // match= with a parent-domain pattern ".example.test" matches mx.example.test.
    let sink = tls_sink("srv", &[]);
    let t = policy_table(
        &dir,
        &format!("{} secure match=.example.test\n", sink.dest()),
    );
    let run = deliver(&sink, &[&ca, &format!("smtp_tls_policy_maps={t}")]);
    assert!(run.result(R).contains(": sent "), "{run}");
    // A key without the port ("[127.0.0.1]") does not apply to "[127.0.0.1]:PORT".
    let sink = tls_sink("srv", &[]);
    let t = policy_table(&dir, "[127.0.0.1] encrypt\n");
    let plain = Sink::start(&[]);
    let run = deliver(&plain, &[&format!("smtp_tls_policy_maps={t}")]);
    assert!(
        run.result(R).contains(": sent "),
        "key without port must not match: {run}"
    );
    drop(sink);
    // Per-destination "none" beats a global mandatory level.
    let sink = tls_sink("srv", &[]);
    let t = policy_table(&dir, &format!("{} none\n", sink.dest()));
    let run = deliver(
        &sink,
        &[
            "smtp_tls_security_level=encrypt",
            &format!("smtp_tls_policy_maps={t}"),
        ],
    );
    assert!(
        run.result(R).contains(": sent ") && tls_header(&sink).is_none(),
        "{run}"
    );
    // fingerprint level from the table, with match= fingerprints ("|"-separated).
    let sink = tls_sink("srv", &[]);
    let t = policy_table(
        &dir,
        &format!(
            "{} fingerprint match={}|{}\n",
            sink.dest(),
            k.cert_fp("wrong", "sha256"),
            k.cert_fp("srv", "sha256")
        ),
    );
    let run = deliver(
        &sink,
        &[
            "smtp_tls_fingerprint_digest=sha256",
            &format!("smtp_tls_policy_maps={t}"),
        ],
    );
    assert!(
        run.stderr.contains("Verified TLS connection established"),
        "{run}"
    );
    // A bad policy entry defers (and is logged), never bounces or goes plaintext.
    let sink = tls_sink("srv", &[]);
    let t = policy_table(&dir, &format!("{} bogus-level\n", sink.dest()));
    let run = deliver(&sink, &[&format!("smtp_tls_policy_maps={t}")]);
    assert!(run.result(R).contains(": deferred "), "{run}");
    assert!(run.stderr.contains("TLS policy lookup for "), "{run}");
    assert!(sink.messages().is_empty(), "{run}");
}

#[test]
fn failed_handshake_retry_in_plaintext_or_defer() {
    if !usable() {
        return;
    }
    // The server says 220 to STARTTLS but does not speak TLS: the handshake fails.
    let broken = || {
        Sink::start(&[
            "--caps",
            "PIPELINING,8BITMIME,STARTTLS",
            "--reply",
            "starttls=220 2.0.0 Ready to start TLS",
        ])
    };
    // may, mail that did not wait minimal_backoff_time: deferred, no second connection.
    let sink = broken();
    let run = deliver(&sink, &["smtp_tls_security_level=may"]);
    assert!(
        run.result(R).contains("deferred dsn=4.7.5")
            && run
                .result(R)
                .contains("Cannot start TLS: handshake failure"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("SSL_connect error to 127.0.0.1[127.0.0.1]:"),
        "{run}"
    );
    assert_eq!(
        sink.dialogue().matches("EHLO").count(),
        1,
        "{}",
        sink.dialogue()
    );
    // (The plaintext retry itself needs mail that waited minimal_backoff_time, at least
    // 1s: tests/tls_daemon.rs covers it through Postfix's queue, and probes.)
    // encrypt: deferred.
    let sink = broken();
    let run = deliver(&sink, &["smtp_tls_security_level=encrypt"]);
    assert!(run.result(R).contains("deferred dsn=4.7.5"), "{run}");
    assert_eq!(sink.dialogue().matches("EHLO").count(), 1);
    // STARTTLS refused with a 4xx while TLS is required: the server's reply.
    let sink = tls_sink("srv", &["--reply", "starttls=454 4.7.0 TLS not available"]);
    let run = deliver(&sink, &["smtp_tls_security_level=encrypt"]);
    // (Postfix names the host without the port here.)
    let want = "(TLS is required, but host 127.0.0.1[127.0.0.1] refused to start TLS: 454 4.7.0 TLS not available)";
    assert!(run.result(R).contains(want), "want {want}\n{run}");
    assert!(run.result(R).contains("deferred dsn=4.7.0"), "{run}");
    // ... and with may the delivery goes on in plaintext on the same connection.
    let sink = tls_sink("srv", &["--reply", "starttls=454 4.7.0 TLS not available"]);
    let run = deliver(&sink, &["smtp_tls_security_level=may"]);
    assert!(
        run.result(R).contains(": sent ") && tls_header(&sink).is_none(),
        "{run}"
    );
}

#[test]
fn wrapper_mode_injection_and_ehlo_after_tls() {
    if !usable() {
        return;
    }
    // Implicit TLS (port 465 style).
    let sink = tls_sink("srv", &["--tls-wrapper"]);
    let run = deliver(
        &sink,
        &[
            "smtp_tls_wrappermode=yes",
            "smtp_tls_security_level=encrypt",
        ],
    );
    assert!(run.result(R).contains(": sent "), "{run}");
    assert!(tls_header(&sink).is_some(), "{run}");
    assert!(!sink.dialogue().contains("STARTTLS"), "{}", sink.dialogue());
    // Wrapper mode below encrypt: Postfix's warning, the server is skipped.
    let sink = tls_sink("srv", &["--tls-wrapper"]);
    let run = deliver(
        &sink,
        &["smtp_tls_wrappermode=yes", "smtp_tls_security_level=may"],
    );
    assert!(
        run.stderr.contains(
            "smtp_tls_wrappermode requires \"smtp_tls_security_level = encrypt\" (or stronger)"
        ),
        "{run}"
    );
    assert!(run.result(R).contains(": deferred "), "{run}");
    assert!(sink.messages().is_empty());
    // A reply injected right after "220 Ready to start TLS" is discarded: the delivery
    // goes through and the injected text is never taken as a reply.
    let sink = tls_sink("srv", &["--tls-inject", "250 injected-before-handshake"]);
    let extra = ["-v", "-o", "smtp_tls_security_level=encrypt"];
    let run = send(&sink.dest(), &extra, &[R], MSG);
    assert!(run.result(R).contains(": sent "), "{run}");
    assert!(!run.stderr.contains("injected-before-handshake"), "{run}");
    // EHLO is sent again over TLS and only its keywords count: before TLS the server
    // offers SIZE and DSN, after it neither; no SIZE= / RET= / NOTIFY= may follow.
    let sink = tls_sink(
        "srv",
        &[
            "--reply",
            "ehlo#1=250-sink.test\\n250-STARTTLS\\n250-DSN\\n250-PIPELINING\\n250 SIZE 10240000",
            "--reply",
            "ehlo#2=250-sink.test\\n250 8BITMIME",
        ],
    );
    let run = send(
        &sink.dest(),
        &[
            "-o",
            "smtp_tls_security_level=encrypt",
            "-N",
            "success,failure",
            "-R",
            "full",
        ],
        &[R],
        MSG,
    );
    assert!(run.result(R).contains(": sent "), "{run}");
    let d = sink.dialogue();
    assert_eq!(d.matches("EHLO client.test").count(), 2, "{d}");
    let mail = d
        .lines()
        .find(|l| l.contains("MAIL FROM:"))
        .unwrap_or_default();
    assert!(
        !mail.contains("SIZE=") && !mail.contains("RET="),
        "{mail}\n{d}"
    );
    let rcpt = d
        .lines()
        .find(|l| l.contains("RCPT TO:"))
        .unwrap_or_default();
    assert!(!rcpt.contains("NOTIFY="), "{rcpt}\n{d}");
    // Control: without TLS the first EHLO's DSN and SIZE are used.
    let sink = tls_sink(
        "srv",
        &[
            "--reply",
            "ehlo#1=250-sink.test\\n250-STARTTLS\\n250-DSN\\n250 SIZE 10240000",
        ],
    );
    let run = send(
        &sink.dest(),
        // A declared 7-bit body: an undeclared one would be MIME-converted (no SIZE=),
        // as Postfix does for servers without 8BITMIME.
        &[
            "-o",
            "smtp_tls_security_level=none",
            "-N",
            "success",
            "-B",
            "7BIT",
        ],
        &[R],
        MSG,
    );
    let d = sink.dialogue();
    assert!(run.result(R).contains(": sent "), "{run}");
    assert!(d.contains("SIZE=") && d.contains("NOTIFY=SUCCESS"), "{d}");
}

/// X-Sink-TLS of each message a namespace sink recorded.
fn ns_tls(sink: &support_dns::Sink) -> Vec<String> {
    sink.messages()
        .iter()
        .map(|m| {
            m.split("\r\n\r\n")
                .next()
                .unwrap_or("")
                .lines()
                .find_map(|l| l.strip_prefix("X-Sink-TLS: "))
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn names_from_dns_hostname_nexthop_and_parent_domain_keys() {
    if !usable() {
        return;
    }
    let Some(mut net) = support_dns::Net::start(&[
        "--mx-host=example.test,mx.example.test,10",
        "--mx-host=sub.example.test,mx.example.test,10",
        "--host-record=mx.example.test,127.0.0.2",
    ]) else {
        return;
    };
    let k = pki();
    let sink = net.sink(
        "127.0.0.2:25",
        &[
            "--tls-cert",
            &k.p("srv-chain.pem"),
            "--tls-key",
            &k.p("srv.key"),
        ],
    );
    let ca = format!("smtp_tls_CAfile={}", k.p("ca.pem"));
    let dir = tempfile::tempdir().expect("tmp");
    let _ = std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    );
    let verified = "Verified TLS connection established to mx.example.test[127.0.0.2]:25: TLSv1.3";
    let mut delivered = 0;
    let mut ok = |run: &support_dns::Run, what: &str, rcpt: &str| {
        assert!(
            run.result(rcpt).contains(": sent "),
            "{what}: {run}\n{}",
            sink.show()
        );
        assert!(run.stderr.contains(verified), "{what}: {run}");
        delivered += 1;
    };
    // verify: the MX host name (smtp_tls_verify_cert_match=hostname) is the match.
    let run = net.send(
        &[
            "-o",
            "smtp_tls_loglevel=1",
            "-o",
            "smtp_tls_security_level=verify",
            "-o",
            &ca,
        ],
        &["a@example.test"],
    );
    ok(&run, "verify/hostname", "a@example.test");
    // secure: nexthop, dot-nexthop: mx.example.test is below example.test ...
    let run = net.send(
        &[
            "-o",
            "smtp_tls_loglevel=1",
            "-o",
            "smtp_tls_security_level=secure",
            "-o",
            &ca,
        ],
        &["b@example.test"],
    );
    ok(&run, "secure/dot-nexthop", "b@example.test");
    // ... but not below sub.example.test.
    let run = net.send(
        &[
            "-o",
            "smtp_tls_loglevel=1",
            "-o",
            "smtp_tls_security_level=secure",
            "-o",
            &ca,
        ],
        &["c@sub.example.test"],
    );
    assert!(
        run.result("c@sub.example.test")
            .contains("(Server certificate not verified)"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("Untrusted TLS connection established to mx.example.test")
            && run.stderr.contains("num=62:hostname mismatch"),
        "{run}"
    );
    // smtp_tls_secure_cert_match=hostname makes it match.
    let run = net.send(
        &[
            "-o",
            "smtp_tls_loglevel=1",
            "-o",
            "smtp_tls_security_level=secure",
            "-o",
            &ca,
            "-o",
            "smtp_tls_secure_cert_match=hostname",
        ],
        &["d@sub.example.test"],
    );
    ok(&run, "secure/hostname", "d@sub.example.test");
    // Policy keys: the nexthop domain itself, then its parent domains as ".parent".
    let t = policy_table(
        &dir,
        "example.test secure match=nomatch.test\n.example.test verify match=hostname\n",
    );
    let pm = format!("smtp_tls_policy_maps={t}");
    let run = net.send(
        &["-o", "smtp_tls_loglevel=1", "-o", &ca, "-o", &pm],
        &["e@sub.example.test"],
    );
    ok(
        &run,
        "parent-domain key .example.test",
        "e@sub.example.test",
    );
    let run = net.send(
        &["-o", "smtp_tls_loglevel=1", "-o", &ca, "-o", &pm],
        &["f@example.test"],
    );
    assert!(
        run.result("f@example.test")
            .contains("(Server certificate not verified)"),
        "exact key example.test wins for example.test: {run}"
    );
    // SNI from the host name and from the nexthop.
    let run = net.send(
        &[
            "-o",
            "smtp_tls_security_level=may",
            "-o",
            "smtp_tls_servername=hostname",
        ],
        &["g@example.test"],
    );
    assert!(run.result("g@example.test").contains(": sent "), "{run}");
    let run = net.send(
        &[
            "-o",
            "smtp_tls_security_level=may",
            "-o",
            "smtp_tls_servername=nexthop",
        ],
        &["h@sub.example.test"],
    );
    assert!(
        run.result("h@sub.example.test").contains(": sent "),
        "{run}"
    );
    let tls = ns_tls(&sink);
    assert_eq!(tls.len(), delivered + 2, "{tls:?}\n{}", sink.show());
    assert!(
        tls[tls.len() - 2].ends_with("sni=mx.example.test"),
        "{tls:?}"
    );
    assert!(
        tls[tls.len() - 1].ends_with("sni=sub.example.test"),
        "{tls:?}"
    );
}

mod support;

/// Postfix's smtpd with TLS as the server; posttls-finger against the same server as a
/// cross-check of the "Verified TLS connection established" summary.
#[test]
fn postfix_smtpd_as_tls_server_and_posttls_finger() {
    if !usable() {
        return;
    }
    if !support::is_root() || support::require(&["postfix", "postconf"]).is_none() {
        eprintln!("SKIP: needs root and Debian's postfix (scripts/test-deps.sh)");
        return;
    }
    let k = pki();
    let dir = support::TestDir::new("tls-smtpd");
    let main = format!(
        "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {c}\nsmtpd_tls_key_file = {key}\n\
         smtpd_tls_CAfile = {ca}\nsmtpd_tls_ask_ccert = yes\nsmtpd_tls_loglevel = 1\n\
         default_transport = discard\nsmtpd_relay_restrictions = permit_mynetworks, reject\n",
        c = k.p("srv-chain.pem"),
        key = k.p("srv.key"),
        ca = k.p("ca.pem"),
    );
    let pf = support::Postfix::start(&dir, &main, &[], true);
    let dest = format!("[127.0.0.1]:{}", pf.port);
    let addr = format!("127.0.0.1[127.0.0.1]:{}", pf.port);
    let run = send(
        &dest,
        &[
            "-o",
            "smtp_tls_loglevel=1",
            "-o",
            "smtp_tls_security_level=secure",
            "-o",
            &format!("smtp_tls_CAfile={}", k.p("ca.pem")),
            "-o",
            "smtp_tls_secure_cert_match=mx.example.test",
            "-o",
            &format!("smtp_tls_cert_file={}", k.p("client-chain.pem")),
            "-o",
            &format!("smtp_tls_key_file={}", k.p("client.key")),
        ],
        &[R],
        MSG,
    );
    let diag = format!("{run}\n{}", pf.show());
    assert!(run.result(R).contains(": sent "), "{diag}");
    let with_cert = run;
    // smtpd saw our client certificate and trusted it (same CA).
    let srv = pf
        .wait_log(
            &["Trusted TLS connection established from"],
            std::time::Duration::from_secs(10),
        )
        .unwrap_or_else(|| {
            panic!(
                "smtpd did not log a trusted client: {}\n{with_cert}",
                pf.show()
            )
        });
    assert!(srv.contains("TLSv1.3 with cipher"), "{srv}");
    // Without a client certificate (as posttls-finger below).
    let run = send(
        &dest,
        &[
            "-o",
            "smtp_tls_loglevel=1",
            "-o",
            "smtp_tls_security_level=secure",
            "-o",
            &format!("smtp_tls_CAfile={}", k.p("ca.pem")),
            "-o",
            "smtp_tls_secure_cert_match=mx.example.test",
        ],
        &[R],
        MSG,
    );
    let diag = format!("{run}\n{}", pf.show());
    let ours = run
        .stderr
        .lines()
        .find(|l| l.contains(&format!("Verified TLS connection established to {addr}: ")))
        .unwrap_or_else(|| panic!("no Verified line: {diag}"))
        .to_string();
    // A level smtpd cannot satisfy: fingerprint of another certificate.
    let run = send(
        &dest,
        &[
            "-o",
            "smtp_tls_security_level=fingerprint",
            "-o",
            &format!(
                "smtp_tls_fingerprint_cert_match={}",
                k.cert_fp("wrong", "sha256")
            ),
        ],
        &[R],
        MSG,
    );
    assert!(
        run.result(R).contains("(Server certificate not verified)"),
        "{run}"
    );
    // posttls-finger: the same summary after "established to ADDR: ".
    let Some(finger) = support::find_bin("posttls-finger") else {
        eprintln!("SKIP (part): posttls-finger is missing");
        return;
    };
    let out = std::process::Command::new(finger)
        .args([
            "-c",
            "-l",
            "secure",
            "-F",
            &k.p("ca.pem"),
            &format!("[127.0.0.1]:{}", pf.port),
            "mx.example.test",
        ])
        .env("MAIL_CONFIG", &pf.conf)
        .output()
        .expect("posttls-finger");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let theirs = text
        .lines()
        .find(|l| l.contains("Verified TLS connection established to"))
        .unwrap_or_else(|| panic!("posttls-finger: {text}"));
    let tail = |l: &str| l.split_once("established to ").map(|x| x.1.to_string());
    assert_eq!(
        tail(&ours),
        tail(theirs),
        "outpost: {ours}\nposttls-finger: {theirs}"
    );
}

#[test]
fn verify_depth_client_cert_slots_per_site_and_lmtp() {
    if !usable() {
        return;
    }
    let k = pki();
    let dir = tempfile::tempdir().expect("tmp");
    let secure = "smtp_tls_security_level=secure";
    let matching = "smtp_tls_secure_cert_match=mx.example.test";
    let ca = format!("smtp_tls_CAfile={}", k.p("ca.pem"));
    // smtp_tls_scert_verifydepth: the limit counts intermediates beyond the first.
    // Postfix enforces no minimum: -1 allows no intermediate at all.
    for (cert, depth, sent) in [
        ("deep", 0, true),
        ("deeper", 0, false),
        ("deeper", 1, true),
        ("deep", -1, false),
    ] {
        let sink = tls_sink(cert, &[]);
        let d = format!("smtp_tls_scert_verifydepth={depth}");
        let run = deliver(&sink, &[secure, matching, &ca, &d]);
        let what = format!("{cert} at depth {depth}");
        if sent {
            check(
                &what,
                &sink,
                &run,
                &Want {
                    sent: true,
                    log: &[VERIFIED],
                    result: &[],
                    tls: true,
                },
            );
        } else {
            check(
                &what,
                &sink,
                &run,
                &Want {
                    sent: false,
                    log: &[],
                    result: &["dsn=4.7.5", "Server certificate not verified"],
                    tls: false,
                },
            );
            let want = format!(
                "certificate verification failed for 127.0.0.1[127.0.0.1]:{}: certificate chain longer than limit({})",
                sink.port(),
                depth + 1
            );
            assert!(run.stderr.contains(&want), "{what}: {run}");
        }
    }
    // Client certificates: the ECDSA slot, the "DSA" slot, and no certificate.
    for (opts, want) in [
        (
            vec![
                format!("smtp_tls_eccert_file={}", k.p("ecclient.pem")),
                format!("smtp_tls_eckey_file={}", k.p("ecclient.key")),
            ],
            "client-cert=ecclient.test",
        ),
        (
            vec![
                format!("smtp_tls_dcert_file={}", k.p("dclient.pem")),
                format!("smtp_tls_dkey_file={}", k.p("dclient.key")),
            ],
            "client-cert=dclient.test",
        ),
        (Vec::new(), "client-cert=no"),
    ] {
        let sink = tls_sink("srv", &[]);
        let mut o: Vec<&str> = vec!["smtp_tls_security_level=encrypt"];
        o.extend(opts.iter().map(String::as_str));
        let run = deliver(&sink, &o);
        let h = tls_header(&sink).unwrap_or_else(|| panic!("no TLS: {run}"));
        assert!(h.contains(want), "{want}: {h}\n{run}");
    }
    // A client key that does not match its certificate: Postfix gives up TLS for the
    // session, so a mandatory level defers.
    let sink = tls_sink("srv", &[]);
    let run = deliver(
        &sink,
        &[
            "smtp_tls_security_level=encrypt",
            &format!("smtp_tls_eccert_file={}", k.p("ecclient.pem")),
            &format!("smtp_tls_eckey_file={}", k.p("client.key")),
        ],
    );
    assert!(
        run.result(R)
            .contains("TLS is required, but our TLS engine is unavailable"),
        "{run}"
    );
    assert!(
        run.stderr.contains("does not match public key in")
            && run.stderr.contains("disabling TLS support"),
        "{run}"
    );
    assert!(sink.messages().is_empty(), "{run}");
    // smtp_tls_per_site (no level set): MUST verifies the name, MUST_NOPEERMATCH does not,
    // NONE turns TLS off.
    for (entry, w) in [
        (
            "MUST",
            Want {
                sent: false,
                log: &[UNTRUSTED],
                result: &["dsn=4.7.5", "Server certificate not verified"],
                tls: false,
            },
        ),
        (
            "MUST_NOPEERMATCH",
            Want {
                sent: true,
                log: &[TRUSTED],
                result: &[],
                tls: true,
            },
        ),
        (
            "NONE",
            Want {
                sent: true,
                log: &[],
                result: &[],
                tls: false,
            },
        ),
    ] {
        let sink = tls_sink("srv", &[]);
        let table = policy_table(&dir, &format!("127.0.0.1 {entry}\n"));
        let run = deliver(
            &sink,
            &[
                "smtp_tls_security_level=",
                &ca,
                &format!("smtp_tls_per_site={table}"),
            ],
        );
        check(&format!("per_site {entry}"), &sink, &run, &w);
    }
    // tafile= in a policy entry replaces the CA store for that destination.
    for (cert, w) in [
        (
            "self",
            Want {
                sent: true,
                log: &[VERIFIED],
                result: &[],
                tls: true,
            },
        ),
        (
            "srv",
            Want {
                sent: false,
                log: &[],
                result: &["dsn=4.7.5", "Server certificate not verified"],
                tls: false,
            },
        ),
    ] {
        let sink = tls_sink(cert, &[]);
        let table = policy_table(
            &dir,
            &format!(
                "{} secure tafile={} match=mx.example.test\n",
                sink.dest(),
                k.p("self.pem")
            ),
        );
        let run = deliver(&sink, &[&ca, &format!("smtp_tls_policy_maps={table}")]);
        check(&format!("tafile with {cert}"), &sink, &run, &w);
    }
    // A reply waiting before MAIL FROM inside TLS: with
    // smtp_tls_block_early_mail_reply the site is failed.
    let sink = tls_sink("srv", &["--tls-early", "250 2.1.0 Ok"]);
    let run = deliver(
        &sink,
        &[
            "smtp_tls_security_level=encrypt",
            "smtp_tls_block_early_mail_reply=yes",
        ],
    );
    check(
        "early reply",
        &sink,
        &run,
        &Want {
            sent: false,
            log: &[
                "warning: server 127.0.0.1[127.0.0.1] violates smtp_tls_block_early_mail_reply policy",
            ],
            result: &["dsn=4.7.0", "unexpected server message"],
            tls: false,
        },
    );
    // The obsolete level parameters with smtp_tls_security_level empty.
    for (opts, w) in [
        (
            [
                "smtp_use_tls=yes",
                "smtp_enforce_tls=no",
                "smtp_tls_enforce_peername=yes",
            ],
            Want {
                sent: true,
                log: &[TRUSTED],
                result: &[],
                tls: true,
            },
        ),
        (
            [
                "smtp_use_tls=no",
                "smtp_enforce_tls=yes",
                "smtp_tls_enforce_peername=yes",
            ],
            Want {
                sent: false,
                log: &["num=64:IP address mismatch", UNTRUSTED],
                result: &["dsn=4.7.5", "Server certificate not verified"],
                tls: false,
            },
        ),
        (
            [
                "smtp_use_tls=no",
                "smtp_enforce_tls=yes",
                "smtp_tls_enforce_peername=no",
            ],
            Want {
                sent: true,
                log: &[TRUSTED],
                result: &[],
                tls: true,
            },
        ),
    ] {
        let sink = tls_sink("srv", &[]);
        let mut o = vec!["smtp_tls_security_level=", ca.as_str()];
        o.extend(opts);
        let run = deliver(&sink, &o);
        check(&format!("{opts:?}"), &sink, &run, &w);
    }
    // smtp_starttls_timeout covers the reply to STARTTLS.
    let sink = tls_sink("srv", &["--delay", "starttls=3s"]);
    let run = deliver(
        &sink,
        &[
            "smtp_tls_security_level=encrypt",
            "smtp_starttls_timeout=1s",
        ],
    );
    check(
        "starttls timeout",
        &sink,
        &run,
        &Want {
            sent: false,
            log: &[],
            result: &[
                "conversation with 127.0.0.1[127.0.0.1] timed out while receiving the STARTTLS response",
            ],
            tls: false,
        },
    );
    // With a policy table, the per-site table is ignored (and not even opened).
    let sink = tls_sink("srv", &[]);
    let table = policy_table(&dir, &format!("{} encrypt\n", sink.dest()));
    let run = deliver(
        &sink,
        &[
            "smtp_tls_security_level=",
            &format!("smtp_tls_policy_maps={table}"),
            "smtp_tls_per_site=hash:/nonexistent/per_site",
        ],
    );
    check(
        "per_site ignored",
        &sink,
        &run,
        &Want {
            sent: true,
            log: &[
                UNTRUSTED,
                "smtp_tls_per_site ignored when smtp_tls_policy_maps is not empty.",
            ],
            result: &[],
            tls: true,
        },
    );
    assert!(!run.stderr.contains("/nonexistent/per_site"), "{run}");
    // LMTP over TCP with STARTTLS: the lmtp_tls_* parameters apply, not smtp_tls_*.
    let sink = tls_sink("srv", &["--lmtp"]);
    let dest = format!("inet:127.0.0.1:{}", sink.port());
    let run = send(
        &dest,
        &[
            "-o",
            "lmtp_tls_loglevel=1",
            "-o",
            "lmtp_tls_security_level=verify",
            "-o",
            &format!("lmtp_tls_CAfile={}", k.p("ca.pem")),
            "-o",
            "lmtp_tls_verify_cert_match=mx.example.test",
            "-o",
            "smtp_tls_security_level=none",
        ],
        &[R],
        MSG,
    );
    check(
        "lmtp verify",
        &sink,
        &run,
        &Want {
            sent: true,
            log: &[VERIFIED],
            result: &[],
            tls: true,
        },
    );
    // LMTP over a UNIX-domain socket: opportunistic TLS is turned off (with Postfix's
    // warning, once connected); a mandatory level uses $myhostname as the TLS nexthop.
    let sink = tls_sink("srv", &["--lmtp", "LISTEN=unix:{dir}/lmtp.sock"]);
    let run = send(
        &sink.dest(),
        &[
            "-o",
            "lmtp_tls_loglevel=1",
            "-o",
            "lmtp_tls_security_level=may",
        ],
        &[R],
        MSG,
    );
    assert!(run.result(R).contains(": sent "), "{run}");
    assert!(
        run.stderr.contains(
            "warning: smtp_connect_local: opportunistic TLS encryption is not appropriate for unix-domain destinations."
        ),
        "{run}"
    );
    assert!(tls_header(&sink).is_none(), "{run}");
    let run = send(
        &sink.dest(),
        &[
            "-o",
            "lmtp_tls_loglevel=1",
            "-o",
            "lmtp_tls_security_level=secure",
            "-o",
            &format!("lmtp_tls_CAfile={}", k.p("ca.pem")),
            "-o",
            "myhostname=mx.example.test",
        ],
        &[R],
        MSG,
    );
    assert!(run.result(R).contains(": sent "), "{run}");
    assert!(
        run.stderr
            .contains("Verified TLS connection established to mx.example.test["),
        "{run}"
    );
    // A dead socket: the opportunistic-TLS warning needs a connection first.
    drop(sink);
    let dead = format!("unix:{}/none.sock", dir.path().display());
    let run = send(&dead, &["-o", "lmtp_tls_security_level=may"], &[R], MSG);
    assert!(run.result(R).contains(": deferred "), "{run}");
    assert!(!run.stderr.contains("opportunistic TLS"), "{run}");
}
