//! TLS client against the sink's STARTTLS and implicit TLS on loopback.
//!
//! Certificates are made with the `openssl` command-line tool in a temporary directory:
//! a CA, a server certificate for mx.example.test (with a wildcard SAN), an expired one,
//! one for the wrong name, a self-signed one and a client certificate. Each test runs a
//! real handshake through `outpost::tls` and checks both what the client concluded
//! (trust class, match, log texts) and what the sink says was negotiated.

use outpost::session::conn::{Conn, Stream};
use outpost::sink::{self, SinkConfig, SinkTls, TlsRecord};
use outpost::tls::policy::{self, Level, Settings, Tables};
use outpost::tls::{ClientContext, HandshakeError, Policy, StartProps, TlsInfo, TlsaRecord, Trust};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

struct Pki {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Pki {
    fn p(&self, name: &str) -> String {
        self.path.join(name).to_string_lossy().into_owned()
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Issues `name`.pem / `name`.key signed by the CA, with the given SANs and validity.
fn issue(dir: &Path, name: &str, cn: &str, sans: &str, days: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!("subjectAltName={sans}\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            days,
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
    // Leaf followed by the CA: DANE-TA(2) needs the anchor in the chain sent.
    let mut chain = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
    chain.extend(std::fs::read(dir.join("ca.pem")).unwrap());
    std::fs::write(dir.join(format!("{name}-chain.pem")), chain).unwrap();
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                "/CN=Test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
            ],
        );
        issue(
            d,
            "srv",
            "mx.example.test",
            "DNS:mx.example.test,DNS:*.wild.example.test",
            "30",
        );
        issue(d, "expired", "mx.example.test", "DNS:mx.example.test", "-1");
        issue(
            d,
            "wrong",
            "other.example.test",
            "DNS:other.example.test",
            "30",
        );
        issue(d, "client", "client.test", "DNS:client.test", "30");
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "self.key",
                "-out",
                "self.pem",
                "-days",
                "30",
                "-subj",
                "/CN=mx.example.test",
                "-addext",
                "subjectAltName=DNS:mx.example.test",
            ],
        );
        let path = d.to_path_buf();
        Pki { _dir: dir, path }
    })
}

fn sink_with(cert: &str, wrapper: bool, inject: Option<&str>) -> sink::SinkHandle {
    let k = pki();
    let cfg = SinkConfig {
        quiet: true,
        tls: Some(SinkTls {
            anon: false,
            early: None,
            cert: k.path.join(format!("{cert}-chain.pem")),
            key: Some(k.path.join(format!("{cert}.key"))),
            wrapper,
            inject: inject.map(String::from),
        }),
        ..SinkConfig::default()
    };
    sink::spawn(cfg).unwrap()
}

fn self_signed_sink() -> sink::SinkHandle {
    let k = pki();
    let cfg = SinkConfig {
        quiet: true,
        tls: Some(SinkTls {
            anon: false,
            early: None,
            cert: k.path.join("self.pem"),
            key: Some(k.path.join("self.key")),
            ..SinkTls::default()
        }),
        ..SinkConfig::default()
    };
    sink::spawn(cfg).unwrap()
}

fn settings(level: Level) -> Settings {
    Settings {
        level,
        ca_file: pki().p("ca.pem"),
        ..Settings::default()
    }
}

fn resolve(s: &Settings, entry: Option<&str>, nexthop: &str, host: &str) -> Policy {
    let e = entry.map(String::from);
    let f = move |_: &str| -> Result<Option<String>, String> { Ok(e.clone()) };
    let r = policy::resolve(
        s,
        nexthop,
        host,
        Tables {
            policy: Some(&f),
            policy_title: "smtp_tls_policy_maps",
            ..Tables::default()
        },
        None,
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    r.result.unwrap()
}

fn read_reply(c: &mut Conn) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let l = c
            .read_line(4096)
            .unwrap_or_else(|_| panic!("reply after {lines:?}"));
        let t = String::from_utf8_lossy(&l.text).into_owned();
        let last = t.as_bytes().get(3) != Some(&b'-');
        lines.push(t);
        if last {
            return lines;
        }
    }
}

fn chat(c: &mut Conn, cmd: &str) -> Vec<String> {
    c.queue_cmd(cmd);
    c.flush().unwrap();
    read_reply(c)
}

struct Outcome {
    result: Result<TlsInfo, HandshakeError>,
    /// The EHLO reply over TLS (empty when the handshake failed).
    ehlo: Vec<String>,
    /// What the sink negotiated.
    sink: Vec<TlsRecord>,
}

/// Greeting, EHLO, STARTTLS, handshake (through Conn::replace_stream, as the session
/// will do it), then EHLO again over TLS and QUIT.
fn starttls_with(
    ctx: &ClientContext,
    sink: &sink::SinkHandle,
    policy: &Policy,
    nexthop: &str,
    host: &str,
    serverid: &str,
) -> Outcome {
    let addr = sink.addr();
    let tcp = TcpStream::connect(&addr).unwrap();
    let mut c = Conn::new(Box::new(tcp), false);
    c.set_timeout(Duration::from_secs(10));
    assert!(read_reply(&mut c)[0].starts_with("220 "));
    let caps = chat(&mut c, "EHLO client.test");
    assert!(caps.iter().any(|l| l.ends_with("STARTTLS")), "{caps:?}");
    assert!(chat(&mut c, "STARTTLS")[0].starts_with("220 "));
    let (ip, port) = addr.rsplit_once(':').unwrap();
    let namaddr = format!("{host}[{ip}]:{port}");
    let mut info = None;
    let mut err = None;
    let r = c.replace_stream(|old| {
        let props = StartProps {
            policy,
            nexthop,
            host,
            namaddr: &namaddr,
            serverid,
            helo: "sink.test",
            timeout: Duration::from_secs(10),
        };
        match ctx.start(old, &props) {
            Ok((s, i)) => {
                info = Some(i);
                Ok(Box::new(s) as Box<dyn Stream>)
            }
            Err(e) => {
                err = Some(e);
                Err(std::io::ErrorKind::Other.into())
            }
        }
    });
    let mut ehlo = Vec::new();
    if r.is_ok() {
        ehlo = chat(&mut c, "EHLO client.test");
        let _ = chat(&mut c, "QUIT");
        c.close();
    }
    // The sink records the handshake on its own thread; give it a moment.
    std::thread::sleep(Duration::from_millis(50));
    Outcome {
        result: match (info, err) {
            (Some(i), _) => Ok(i),
            (None, Some(e)) => Err(e),
            (None, None) => unreachable!(),
        },
        ehlo,
        sink: sink.tls_records(),
    }
}

fn starttls(s: &Settings, sink: &sink::SinkHandle, policy: &Policy, host: &str) -> Outcome {
    let ctx = ClientContext::new(s).unwrap();
    starttls_with(&ctx, sink, policy, "example.test", host, "test")
}

fn info(o: &Outcome) -> &TlsInfo {
    match &o.result {
        Ok(i) => i,
        Err(e) => panic!("handshake failed: {:?}", e.log),
    }
}

#[test]
fn may_with_ca_is_trusted_and_logged_like_postfix() {
    let sink = sink_with("srv", false, None);
    let s = settings(Level::May);
    let p = resolve(&s, None, "example.test", "mx.example.test");
    let o = starttls(&s, &sink, &p, "mx.example.test");
    let i = info(&o);
    assert_eq!(i.trust, Trust::Trusted);
    assert!(i.enforce().is_ok());
    let port = sink.addr().rsplit(':').next().unwrap().to_string();
    assert_eq!(
        i.summary(false),
        format!(
            "Trusted TLS connection established to mx.example.test[127.0.0.1]:{port}: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256"
        )
    );
    assert_eq!(
        (i.peer_cn.as_str(), i.issuer_cn.as_str()),
        ("mx.example.test", "Test CA")
    );
    assert_eq!(i.cert_fingerprint.len(), 32 * 3 - 1);
    // Over TLS the sink no longer offers STARTTLS, and the client sent no certificate.
    assert!(o.ehlo[0].starts_with("250-") && !o.ehlo.iter().any(|l| l.contains("STARTTLS")));
    assert_eq!(o.sink.len(), 1);
    assert_eq!(o.sink[0].protocol, "TLSv1.3");
    assert!(!o.sink[0].client_cert);
}

#[test]
fn encrypt_without_ca_is_untrusted_but_acceptable() {
    let sink = sink_with("srv", false, None);
    let s = Settings {
        level: Level::Encrypt,
        ..Settings::default()
    };
    let p = resolve(&s, None, "example.test", "mx.example.test");
    let i = info(&starttls(&s, &sink, &p, "mx.example.test")).clone();
    assert_eq!(i.trust, Trust::Untrusted);
    assert!(i.enforce().is_ok());
    assert!(i.verify_failure.is_none());
}

#[test]
fn verify_matches_hostname_and_one_wildcard_label() {
    let sink = sink_with("srv", false, None);
    let s = settings(Level::Verify);
    // The verified name is the certificate's name that matched (OpenSSL's peername).
    for (host, name) in [
        ("mx.example.test", "mx.example.test"),
        ("a.wild.example.test", "*.wild.example.test"),
    ] {
        let p = resolve(&s, None, "example.test", host);
        let i = info(&starttls(&s, &sink, &p, host)).clone();
        assert_eq!(i.trust, Trust::Verified, "{host}");
        assert!(
            i.summary(false)
                .starts_with("Verified TLS connection established to")
        );
        assert_eq!(i.verified_name.as_deref(), Some(name));
    }
    // A wildcard covers exactly one label.
    let host = "b.a.wild.example.test";
    let p = resolve(&s, None, "example.test", host);
    let i = info(&starttls(&s, &sink, &p, host)).clone();
    assert_eq!(i.trust, Trust::Untrusted);
    assert_eq!(
        i.enforce(),
        Err(("4.7.5", "Server certificate not verified"))
    );
    let f = i.verify_failure.unwrap();
    assert!(
        f.starts_with(
            "server certificate verification failed for b.a.wild.example.test[127.0.0.1]:"
        ) && f.ends_with(": num=62:hostname mismatch"),
        "{f}"
    );
}

#[test]
fn verify_rejects_wrong_name_expired_and_self_signed() {
    let s = settings(Level::Verify);
    let p = resolve(&s, None, "example.test", "mx.example.test");
    let sink = sink_with("wrong", false, None);
    let i = info(&starttls(&s, &sink, &p, "mx.example.test")).clone();
    assert_eq!((i.trust, i.matched), (Trust::Untrusted, false));
    assert!(
        i.verify_failure
            .unwrap()
            .ends_with("num=62:hostname mismatch")
    );

    let sink = sink_with("expired", false, None);
    let i = info(&starttls(&s, &sink, &p, "mx.example.test")).clone();
    assert_eq!(i.trust, Trust::Untrusted);
    assert!(i.enforce().is_err());
    let f = i.verify_failure.unwrap();
    assert!(
        f.ends_with(": certificate has expired") && f.starts_with("server certificate"),
        "{f}"
    );

    let sink = self_signed_sink();
    let i = info(&starttls(&s, &sink, &p, "mx.example.test")).clone();
    assert_eq!(i.trust, Trust::Untrusted);
    let f = i.verify_failure.unwrap();
    assert!(f.ends_with(": self-signed certificate"), "{f}");
}

#[test]
fn secure_uses_nexthop_and_dot_nexthop() {
    let sink = sink_with("srv", false, None);
    let s = settings(Level::Secure);
    // mx.example.test is a subdomain of the next-hop: dot-nexthop matches.
    let p = resolve(&s, None, "example.test", "whatever.invalid");
    assert_eq!(p.match_names, vec!["nexthop", "dot-nexthop"]);
    let i = info(&starttls(&s, &sink, &p, "whatever.invalid")).clone();
    assert_eq!(i.trust, Trust::Verified);
    // A policy-table match list that does not cover the certificate fails.
    let p = resolve(
        &s,
        Some("secure match=nexthop:other.test"),
        "example.test",
        "x",
    );
    let i = info(&starttls(&s, &sink, &p, "x")).clone();
    assert_eq!(i.trust, Trust::Untrusted);
    assert!(i.enforce().is_err());
}

fn fingerprint_of(args: &[&str]) -> String {
    let out = openssl(&pki().path, args);
    let t = String::from_utf8(out).unwrap();
    t.trim().rsplit('=').next().unwrap().to_string()
}

#[test]
fn fingerprint_level_matches_cert_or_key_digest() {
    let sink = sink_with("wrong", false, None);
    let sha256 = fingerprint_of(&[
        "x509",
        "-in",
        "wrong.pem",
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    let s = Settings {
        level: Level::Fingerprint,
        ..Settings::default()
    };
    // The name does not matter, the CA is not even known.
    let p = resolve(
        &s,
        Some(&format!("fingerprint match={sha256}")),
        "example.test",
        "mx",
    );
    let i = info(&starttls(&s, &sink, &p, "mx")).clone();
    assert_eq!(i.trust, Trust::Verified);
    assert_eq!(i.cert_fingerprint, sha256);
    // Public-key fingerprint, lower case without colons, from main.cf.
    let s2 = Settings {
        fingerprint_cert_match: "00:11, ".to_string()
            + &i.pkey_fingerprint.replace(':', "").to_lowercase(),
        ..s.clone()
    };
    let p = resolve(&s2, Some("fingerprint"), "example.test", "mx");
    assert_eq!(info(&starttls(&s2, &sink, &p, "mx")).trust, Trust::Verified);
    // md5 as the digest.
    let md5 = fingerprint_of(&["x509", "-in", "wrong.pem", "-noout", "-fingerprint", "-md5"]);
    let s3 = Settings {
        fingerprint_digest: "md5".into(),
        ..s.clone()
    };
    let p = resolve(
        &s3,
        Some(&format!("fingerprint match={md5}")),
        "example.test",
        "mx",
    );
    let i = info(&starttls(&s3, &sink, &p, "mx")).clone();
    assert_eq!(
        (i.trust, i.cert_fingerprint.as_str()),
        (Trust::Verified, md5.as_str())
    );
    // A fingerprint of another certificate.
    let other = fingerprint_of(&[
        "x509",
        "-in",
        "srv.pem",
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    let p = resolve(
        &s,
        Some(&format!("fingerprint match={other}")),
        "example.test",
        "mx",
    );
    let i = info(&starttls(&s, &sink, &p, "mx")).clone();
    assert_eq!(i.trust, Trust::Untrusted);
    assert_eq!(
        i.enforce(),
        Err(("4.7.5", "Server certificate not verified"))
    );
}

#[test]
fn protocol_and_cipher_exclusions_reach_the_wire() {
    let sink = sink_with("srv", false, None);
    let s = settings(Level::Encrypt);
    let p = resolve(
        &s,
        Some("encrypt protocols=<=TLSv1.2 exclude=AESGCM"),
        "e",
        "mx",
    );
    let o = starttls(&s, &sink, &p, "mx");
    let i = info(&o).clone();
    assert_eq!(i.protocol, "TLSv1.2");
    assert_eq!(o.sink[0].protocol, "TLSv1.2");
    assert_eq!(o.sink[0].cipher, i.cipher);
    assert!(!i.cipher.contains("GCM"), "{}", i.cipher);
    // No key-exchange details below TLS 1.3, as in Postfix.
    assert!(!i.summary(false).contains("key-exchange"));
    let p = resolve(&s, Some("encrypt protocols=!TLSv1.3"), "e", "mx");
    let o = starttls(&s, &sink, &p, "mx");
    assert_eq!(o.sink.last().unwrap().protocol, "TLSv1.2");
    let p = resolve(&s, Some("encrypt protocols=TLSv1.3"), "e", "mx");
    let o = starttls(&s, &sink, &p, "mx");
    assert_eq!(o.sink.last().unwrap().protocol, "TLSv1.3");
}

#[test]
fn client_certificate_is_sent() {
    let sink = sink_with("srv", false, None);
    let s = Settings {
        cert_file: pki().p("client.pem"),
        key_file: pki().p("client.key"),
        ..settings(Level::Verify)
    };
    let p = resolve(&s, None, "example.test", "mx.example.test");
    let o = starttls(&s, &sink, &p, "mx.example.test");
    assert!(o.sink[0].client_cert);
    assert_eq!(o.sink[0].client_cn.as_deref(), Some("client.test"));
    assert!(
        info(&o)
            .summary(false)
            .ends_with("client-signature RSA-PSS (2048 bits) client-digest SHA256")
    );
}

fn sha256_hex(der_args: &[&str]) -> Vec<u8> {
    let der = openssl(&pki().path, der_args);
    openssl::sha::sha256(&der).to_vec()
}

fn dane_policy(records: Vec<TlsaRecord>) -> Policy {
    let s = Settings {
        level: Level::Dane,
        ..Settings::default()
    };
    let recs = records.clone();
    let tlsa = move || {
        (
            Ok(outpost::tls::DaneLookup::Records {
                base: "mx.example.test".into(),
                records: recs.clone(),
            }),
            Vec::new(),
        )
    };
    let input = policy::DaneInput {
        port: Some(25),
        dnssec_enabled: true,
        mx_errors_ignored: false,
        resolver_search: false,
        mx: Some(("mx.example.test".into(), "mx.example.test".into(), true)),
        tlsa: &tlsa,
    };
    let r = policy::resolve(
        &s,
        "example.test",
        "mx.example.test",
        Tables::default(),
        Some(&input),
    );
    let p = r.result.unwrap();
    assert_eq!(p.level, Level::Dane);
    p
}

#[test]
fn dane_ee_spki_sha256() {
    let spki = {
        let pem = openssl(
            &pki().path,
            &["x509", "-in", "self.pem", "-noout", "-pubkey"],
        );
        let k = openssl::pkey::PKey::public_key_from_pem(&pem).unwrap();
        openssl::sha::sha256(&k.public_key_to_der().unwrap()).to_vec()
    };
    let s = Settings::default();
    // DANE-EE ignores the (self-signed) issuer.
    let sink = self_signed_sink();
    let p = dane_policy(vec![TlsaRecord::new(3, 1, 1, spki.clone())]);
    let i = info(&starttls(&s, &sink, &p, "mx.example.test")).clone();
    assert_eq!(i.trust, Trust::Verified);
    assert!(i.enforce().is_ok());
    // Wrong association data.
    let mut bad = spki;
    bad[0] ^= 1;
    let p = dane_policy(vec![TlsaRecord::new(3, 1, 1, bad)]);
    let i = info(&starttls(&s, &sink, &p, "mx.example.test")).clone();
    assert_eq!(i.trust, Trust::Untrusted);
    assert!(i.enforce().is_err());
}

#[test]
fn dane_ta_cert_sha256_checks_names() {
    let ca = sha256_hex(&["x509", "-in", "ca.pem", "-outform", "DER"]);
    let s = Settings::default();
    let p = dane_policy(vec![TlsaRecord::new(2, 0, 1, ca)]);
    let sink = sink_with("srv", false, None);
    let i = info(&starttls(&s, &sink, &p, "mx.example.test")).clone();
    assert_eq!(i.trust, Trust::Verified);
    // Same trust anchor, wrong name: DANE-TA requires the name to match.
    let sink = sink_with("wrong", false, None);
    let i = info(&starttls(&s, &sink, &p, "mx.example.test")).clone();
    assert_eq!(i.trust, Trust::Untrusted);
    assert!(i.enforce().is_err());
}

#[test]
fn all_tlsa_unusable_falls_back_to_encrypt() {
    let s = Settings::default();
    // Matching type 1 needs 32 bytes; these records cannot be used.
    let p = dane_policy(vec![TlsaRecord::new(3, 1, 1, vec![1, 2, 3])]);
    let sink = sink_with("srv", false, None);
    let i = info(&starttls(&s, &sink, &p, "mx.example.test")).clone();
    assert_eq!(i.level, Level::Encrypt);
    assert!(i.enforce().is_ok());
}

#[test]
fn injected_reply_before_handshake_is_discarded() {
    let sink = sink_with("srv", false, Some("250 injected"));
    let s = settings(Level::Verify);
    let p = resolve(&s, None, "example.test", "mx.example.test");
    let o = starttls(&s, &sink, &p, "mx.example.test");
    assert_eq!(info(&o).trust, Trust::Verified);
    // The first reply read over TLS is the real EHLO reply.
    assert!(o.ehlo[0].starts_with("250-sink.test"), "{:?}", o.ehlo);
    assert!(!o.ehlo.iter().any(|l| l.contains("injected")));
}

#[test]
fn wrapper_mode_handshakes_before_the_greeting() {
    let sink = sink_with("srv", true, None);
    let s = settings(Level::Encrypt);
    let p = resolve(&s, None, "example.test", "mx.example.test");
    let ctx = ClientContext::new(&s).unwrap();
    let tcp = TcpStream::connect(sink.addr()).unwrap();
    let props = StartProps {
        policy: &p,
        nexthop: "example.test",
        host: "mx.example.test",
        namaddr: "mx.example.test[127.0.0.1]:465",
        serverid: "wrapper",
        helo: "sink.test",
        timeout: Duration::from_secs(10),
    };
    let (tls, i) = ctx.start(Box::new(tcp), &props).unwrap();
    assert_eq!(i.trust, Trust::Trusted);
    let mut c = Conn::new(Box::new(tls), false);
    assert!(read_reply(&mut c)[0].starts_with("220 sink.test"));
    let caps = chat(&mut c, "EHLO client.test");
    assert!(!caps.iter().any(|l| l.contains("STARTTLS")));
    assert_eq!(chat(&mut c, "QUIT")[0].split(' ').next(), Some("221"));
}

#[test]
fn handshake_failure_and_timeout() {
    // A sink that says 220 to STARTTLS but has no TLS: the handshake fails.
    let cfg = SinkConfig {
        quiet: true,
        caps: vec!["STARTTLS".into()],
        ..SinkConfig::default()
    };
    let mut cfg = cfg;
    cfg.script.add_reply("starttls=220 go ahead").unwrap();
    let plain = sink::spawn(cfg).unwrap();
    let s = settings(Level::May);
    let p = resolve(&s, None, "example.test", "mx.example.test");
    let o = starttls(&s, &plain, &p, "mx.example.test");
    let e = o.result.expect_err("handshake must fail");
    assert_eq!(
        (e.status, e.reason),
        ("4.7.5", "Cannot start TLS: handshake failure")
    );
    assert!(
        e.log[0].starts_with("SSL_connect error to mx.example.test["),
        "{:?}",
        e.log
    );

    // A server that never answers: the deadline ends the handshake.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    let _keep = std::thread::spawn(move || {
        let c = l.accept();
        std::thread::sleep(Duration::from_secs(5));
        drop(c);
    });
    let ctx = ClientContext::new(&s).unwrap();
    let props = StartProps {
        policy: &p,
        nexthop: "example.test",
        host: "mx.example.test",
        namaddr: "mx.example.test[127.0.0.1]:25",
        serverid: "t",
        helo: "sink.test",
        timeout: Duration::from_secs(1),
    };
    let started = std::time::Instant::now();
    let e = ctx
        .start(Box::new(TcpStream::connect(a).unwrap()), &props)
        .err()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(
        e.log,
        vec!["SSL_connect error to mx.example.test[127.0.0.1]:25: Connection timed out"]
    );
}

#[test]
fn sessions_resume_only_under_the_same_policy() {
    let sink = sink_with("srv", false, None);
    let s = settings(Level::Verify);
    let ctx = ClientContext::new(&s).unwrap();
    let p = resolve(&s, None, "example.test", "mx.example.test");
    let first = starttls_with(&ctx, &sink, &p, "example.test", "mx.example.test", "id1");
    assert!(!info(&first).reused);
    let again = starttls_with(&ctx, &sink, &p, "example.test", "mx.example.test", "id1");
    let i = info(&again);
    assert!(i.reused);
    assert_eq!(i.trust, Trust::Verified);
    assert!(!i.summary(false).contains("server-signature"));
    // Session names do not cover the match list (as in Postfix): a session resumed under
    // a different list is re-checked and not Verified, and then dropped, so that the next
    // handshake verifies the server afresh.
    let p2 = resolve(
        &s,
        Some("verify match=nexthop"),
        "example.test",
        "mx.example.test",
    );
    let other = starttls_with(&ctx, &sink, &p2, "example.test", "mx.example.test", "id1");
    assert!(info(&other).reused);
    assert_ne!(info(&other).trust, Trust::Verified);
    let fresh = starttls_with(&ctx, &sink, &p2, "example.test", "mx.example.test", "id1");
    assert!(!info(&fresh).reused);
    assert_eq!(info(&fresh).trust, Trust::Untrusted);
    // A different protocol list is part of the name: no resumption.
    let p3 = resolve(
        &s,
        Some("verify protocols=TLSv1.3"),
        "example.test",
        "mx.example.test",
    );
    let third = starttls_with(&ctx, &sink, &p3, "example.test", "mx.example.test", "id1");
    assert!(!info(&third).reused);
}

#[test]
fn sni_follows_servername_and_dane_base() {
    let sink = sink_with("srv", false, None);
    let s = settings(Level::May);
    let p = resolve(&s, None, "example.test", "mx.example.test");
    let o = starttls(&s, &sink, &p, "mx.example.test");
    assert_eq!(o.sink.last().unwrap().sni, None);
    let p = resolve(
        &s,
        Some("may servername=hostname"),
        "example.test",
        "mx.example.test",
    );
    let o = starttls(&s, &sink, &p, "mx.example.test");
    assert_eq!(
        o.sink.last().unwrap().sni.as_deref(),
        Some("mx.example.test")
    );
    let p = resolve(
        &s,
        Some("may servername=sni.example.test"),
        "example.test",
        "mx",
    );
    let o = starttls(&s, &sink, &p, "mx");
    assert_eq!(
        o.sink.last().unwrap().sni.as_deref(),
        Some("sni.example.test")
    );
    let n = Settings {
        servername: "nexthop".into(),
        ..s.clone()
    };
    let p = resolve(&n, None, "example.test", "mx");
    let o = starttls(&n, &sink, &p, "mx");
    assert_eq!(o.sink.last().unwrap().sni.as_deref(), Some("example.test"));
    // DANE: the TLSA base domain, whatever servername says.
    let ca = sha256_hex(&["x509", "-in", "ca.pem", "-outform", "DER"]);
    let p = dane_policy(vec![TlsaRecord::new(2, 0, 1, ca)]);
    let o = starttls(&n, &sink, &p, "mx.example.test");
    assert_eq!(
        o.sink.last().unwrap().sni.as_deref(),
        Some("mx.example.test")
    );
}

#[test]
fn trust_anchor_file_replaces_the_ca_store() {
    let sink = sink_with("srv", false, None);
    // No CAfile: only the tafile makes the chain trusted.
    let s = Settings {
        level: Level::Verify,
        ..Settings::default()
    };
    let ta = pki().p("ca.pem");
    let p = resolve(
        &s,
        Some(&format!("verify tafile={ta}")),
        "example.test",
        "mx.example.test",
    );
    assert_eq!(p.tlsa[0].usage, 2);
    let i = info(&starttls(&s, &sink, &p, "mx.example.test")).clone();
    assert_eq!(i.trust, Trust::Verified);
    // Names are still checked.
    let p = resolve(
        &s,
        Some(&format!("verify tafile={ta}")),
        "example.test",
        "other.test",
    );
    let i = info(&starttls(&s, &sink, &p, "other.test")).clone();
    assert_eq!(i.trust, Trust::Untrusted);
    // Without it, the same policy has no trust at all.
    let p = resolve(&s, None, "example.test", "mx.example.test");
    let i = info(&starttls(&s, &sink, &p, "mx.example.test")).clone();
    assert_eq!(i.trust, Trust::Untrusted);
    assert!(
        i.verify_failure
            .unwrap()
            .contains("untrusted issuer /CN=Test CA")
    );
}

#[test]
fn messages_over_tls_are_recorded_with_the_session() {
    let k = pki();
    let dir = tempfile::tempdir().unwrap();
    let sink = sink::spawn(SinkConfig {
        quiet: true,
        dir: Some(dir.path().to_path_buf()),
        tls: Some(SinkTls {
            anon: false,
            early: None,
            cert: k.path.join("srv-chain.pem"),
            key: Some(k.path.join("srv.key")),
            wrapper: true,
            inject: None,
        }),
        ..SinkConfig::default()
    })
    .unwrap();
    let s = Settings {
        cert_file: k.p("client.pem"),
        key_file: k.p("client.key"),
        ..settings(Level::Encrypt)
    };
    let p = resolve(
        &s,
        // At "encrypt" Postfix (security level 0) allows anonymous suites, which the
        // sink would pick over certificate ones: exclude them to see the client cert.
        Some("encrypt protocols=<=TLSv1.2 exclude=aNULL"),
        "example.test",
        "mx",
    );
    let ctx = ClientContext::new(&s).unwrap();
    let props = StartProps {
        policy: &p,
        nexthop: "example.test",
        host: "mx",
        namaddr: "mx[127.0.0.1]:465",
        serverid: "rec",
        helo: "sink.test",
        timeout: Duration::from_secs(10),
    };
    let (tls, i) = ctx
        .start(Box::new(TcpStream::connect(sink.addr()).unwrap()), &props)
        .unwrap();
    let mut c = Conn::new(Box::new(tls), false);
    read_reply(&mut c);
    chat(&mut c, "EHLO client.test");
    chat(&mut c, "MAIL FROM:<a@example.test>");
    chat(&mut c, "RCPT TO:<b@example.test>");
    chat(&mut c, "DATA");
    assert!(chat(&mut c, "Subject: t\r\n\r\nbody\r\n.")[0].starts_with("250"));
    chat(&mut c, "QUIT");
    sink.stop();
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(files.len(), 1);
    let text = String::from_utf8(std::fs::read(&files[0]).unwrap()).unwrap();
    let want = format!(
        "X-Sink-TLS: TLSv1.2 {} client-cert=client.test\r\n",
        i.cipher
    );
    assert!(text.contains(&want), "{text}");
}

#[test]
fn engine_setup_errors_are_reported() {
    use outpost::log::Level as Sev;
    let s = Settings {
        ca_file: "/nonexistent/ca.pem".into(),
        ..Settings::default()
    };
    let e = ClientContext::new(&s).err().unwrap();
    // Postfix logs this one with msg_info, OpenSSL's reasons as warnings.
    assert_eq!(
        e[0],
        (
            Sev::Info,
            "cannot load Certification Authority data, CAfile=\"/nonexistent/ca.pem\": disabling TLS support"
                .to_string()
        )
    );
    assert!(e[1..].iter().all(|(l, _)| *l == Sev::Warning), "{e:?}");
    // The key file defaults to $smtp_tls_cert_file: the same name means one file read in
    // one pass, here without a key.
    let s = Settings {
        cert_file: pki().p("client.pem"),
        key_file: pki().p("client.pem"),
        ..Settings::default()
    };
    let e = ClientContext::new(&s).err().unwrap();
    assert_eq!(
        e,
        vec![
            (
                Sev::Warning,
                format!("No private key found in {}", pki().p("client.pem"))
            ),
            (
                Sev::Warning,
                format!(
                    "error loading private keys and certificates from: {}: disabling TLS support",
                    pki().p("client.pem")
                )
            ),
        ]
    );
    // An explicitly empty key file is not replaced by the certificate file.
    let s = Settings {
        cert_file: pki().p("client.pem"),
        ..Settings::default()
    };
    let e = ClientContext::new(&s).err().unwrap();
    assert_eq!(
        e[0],
        (
            Sev::Warning,
            "cannot get RSA private key from file \"\": disabling TLS support".to_string()
        )
    );
    let s = Settings {
        cert_file: pki().p("client.pem"),
        key_file: pki().p("srv.key"),
        ..Settings::default()
    };
    let e = ClientContext::new(&s).err().unwrap();
    assert!(
        e[0].1.starts_with("cannot get RSA private key from file"),
        "{e:?}"
    );
    assert!(e[1].1.contains("key values mismatch"), "{e:?}");
    let s = Settings {
        fingerprint_digest: "sha3000".into(),
        ..Settings::default()
    };
    assert_eq!(
        ClientContext::new(&s).err().unwrap(),
        vec![
            (
                Sev::Warning,
                "Digest algorithm \"sha3000\" not found".to_string()
            ),
            (Sev::Warning, "disabling TLS support".to_string()),
        ]
    );
}

#[test]
fn entropy_is_added_at_start_up_and_before_each_handshake() {
    let sink = sink_with("srv", false, None);
    let s = settings(Level::May);
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let c = std::sync::Arc::clone(&calls);
    let ctx = ClientContext::new(&s).unwrap().with_entropy(
        Box::new(move |n| {
            c.lock().unwrap().push(n);
            Some(vec![7u8; n])
        }),
        32,
    );
    assert_eq!(*calls.lock().unwrap(), vec![32]);
    let p = resolve(&s, None, "example.test", "mx.example.test");
    for _ in 0..2 {
        let o = starttls_with(&ctx, &sink, &p, "example.test", "mx.example.test", "e");
        assert!(o.result.is_ok());
    }
    assert_eq!(*calls.lock().unwrap(), vec![32, 32, 32]);
}
