//! DANE in daemon mode, DIFFERENTIAL against Postfix's own smtp(8): a throw-away Postfix
//! instance runs inside a private network namespace (tests/support_dns) whose resolver is
//! the signed test DNS server (answers with the AD bit, as a validating resolver gives
//! them). Each scenario has two domains, `NAME-pf.test` routed to Postfix's `smtp` and
//! `NAME-op.test` to Outpost's `outpost` service, with the same records and the same
//! smtp_tls_policy_maps level. The maillog lines (TLS, verification failures, policy
//! warnings, delivery lines) and the queue's defer reasons are compared after
//! normalising queue ids, pids, delays and the `-pf` / `-op` name parts.
//!
//! Servers: `outpost sink` on 127.0.0.2:25 with a self-signed certificate (only a
//! DANE-EE TLSA record can make it trusted) and on 127.0.0.3:25 with a certificate of
//! the test CA for *.wild.example.test, sent with the CA (for DANE-TA).
//! Needs root, iproute2, Debian's postfix and openssl; otherwise the test prints SKIP.

mod pf_instance;
mod support;
mod support_dns;
mod tls_pki;

use pf_instance::{Instance, usable};
use std::process::Command;
use std::time::{Duration, Instant};
use support_dns::*;

const DNS: &str = "127.0.0.53";
const MSG: &[u8] = b"Subject: dane via postfix\nFrom: s@sender.test\n\nhello over dane\n";

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// SHA-256 of a PEM certificate's public key (TLSA x 1 1) or of the whole certificate
/// (x 0 1).
fn digest(pem_file: &str, spki: bool) -> Vec<u8> {
    let pem = std::fs::read(pem_file).expect("read cert");
    let x = openssl::x509::X509::from_pem(&pem).expect("parse cert");
    let der = if spki {
        x.public_key()
            .and_then(|k| k.public_key_to_der())
            .expect("public key")
    } else {
        x.to_der().expect("der")
    };
    openssl::sha::sha256(&der).to_vec()
}

/// One scenario: its policy level, where its MX points, its TLSA record, whether the
/// domain is unsigned, what the log must show, and whether the mail goes out.
struct Scenario {
    name: &'static str,
    level: &'static str,
    /// The MX host name under the scenario's domain (a full name for DANE-TA).
    mx: fn(&str) -> String,
    addr: [u8; 4],
    tlsa: Option<(u8, u8, u8, Vec<u8>)>,
    unsigned_domain: bool,
    needles: Vec<&'static str>,
    sent: bool,
}

/// The maillog lines about one domain, normalised; `tag` is "pf" or "op".
fn lines_for(log: &str, name: &str, tag: &str) -> Vec<String> {
    let key = format!("{name}-{tag}.");
    let mut v: Vec<String> = log
        .lines()
        .filter(|l| l.contains(" postfix/smtp[") && l.contains(&key))
        .filter_map(|l| l.split_once("]: ").map(|x| x.1.to_string()))
        .map(|l| {
            let l = match l.split_once(": ") {
                Some((id, rest))
                    if id.len() >= 6 && id.chars().all(|c| c.is_ascii_alphanumeric()) =>
                {
                    rest.to_string()
                }
                _ => l,
            };
            let l: Vec<&str> = l
                .split(", ")
                .filter(|f| !f.starts_with("delay=") && !f.starts_with("delays="))
                .collect();
            let l = l.join(", ");
            let l = match l.find("queued as ") {
                Some(i) => l[..i].to_string(),
                None => l,
            };
            l.replace(&key, &format!("{name}-XX."))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Defer reasons in the queue for the scenario's recipient, normalised.
fn reasons_for(mailq: &str, name: &str, tag: &str) -> Vec<String> {
    let key = format!("{name}-{tag}.");
    let rcpt = format!("r@{name}-{tag}.test");
    let mut v = Vec::new();
    let mut reason = String::new();
    for l in mailq.lines() {
        let t = l.trim();
        if t.starts_with('(') {
            reason = t.to_string();
        } else if t == rcpt {
            // A message being retried right now (active) shows no reason: skip it.
            if !reason.is_empty() {
                v.push(reason.replace(&key, &format!("{name}-XX.")));
            }
        } else if t.is_empty() {
            reason.clear();
        }
    }
    v.sort();
    v.dedup();
    v
}

#[test]
fn dane_levels_like_postfix_smtp() {
    if !usable() || !tls_pki::have_openssl() {
        eprintln!("SKIP: needs root, Debian's postfix and openssl");
        return;
    }
    let Some(mut net) = Net::without_dnsmasq(DNS) else {
        return;
    };
    let k = tls_pki::pki();
    let dir = tempfile::Builder::new()
        .prefix("outpost-dane")
        .tempdir()
        .expect("tmp");
    let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
    // The self-signed EE certificate.
    let (ee_cert, ee_key) = (
        dir.path().join("ee.pem").display().to_string(),
        dir.path().join("ee.key").display().to_string(),
    );
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"])
        .args(["-subj", "/CN=not-the-mx-name.example"])
        .args(["-keyout", &ee_key, "-out", &ee_cert])
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The CA-issued certificate, sent with its CA.
    let ta_chain = dir.path().join("ta-chain.pem").display().to_string();
    let chain = [
        std::fs::read(k.p("srv.pem")).expect("srv.pem"),
        std::fs::read(k.p("ca.pem")).expect("ca.pem"),
    ]
    .concat();
    std::fs::write(&ta_chain, chain).expect("write chain");
    let ee = digest(&ee_cert, true);
    let ca = digest(&k.p("ca.pem"), false);
    let sc = |name, level, tlsa: Option<(u8, u8, u8, Vec<u8>)>, needles, sent| Scenario {
        name,
        level,
        mx: |d| format!("mx.{d}"),
        addr: [127, 0, 0, 2],
        tlsa,
        unsigned_domain: false,
        needles,
        sent,
    };
    let mut scenarios = vec![
        sc(
            "ee",
            "dane",
            Some((3, 1, 1, ee.clone())),
            vec!["Verified TLS connection established to mx.DOM[127.0.0.2]:25"],
            true,
        ),
        sc(
            "eeonly",
            "dane-only",
            Some((3, 1, 1, ee.clone())),
            vec!["Verified TLS connection established to mx.DOM[127.0.0.2]:25"],
            true,
        ),
        sc(
            "wrong",
            "dane",
            Some((3, 1, 1, vec![0x5a; 32])),
            vec!["Server certificate not verified"],
            false,
        ),
        sc(
            "notlsa",
            "dane",
            None,
            vec!["Untrusted TLS connection established to mx.DOM[127.0.0.2]:25"],
            true,
        ),
        sc(
            "notlsaonly",
            "dane-only",
            None,
            vec!["no TLSA records found"],
            false,
        ),
        sc(
            "unusable",
            "dane",
            Some((1, 1, 1, ee.clone())),
            vec!["TLS connection established to mx.DOM[127.0.0.2]:25"],
            true,
        ),
    ];
    let mut s = sc(
        "insecure",
        "dane-only",
        Some((3, 1, 1, ee.clone())),
        vec!["non DNSSEC destination"],
        false,
    );
    s.unsigned_domain = true;
    scenarios.push(s);
    let mut s = sc(
        "insecuredane",
        "dane",
        Some((3, 1, 1, ee.clone())),
        vec!["TLS connection established to mx.DOM[127.0.0.2]:25"],
        true,
    );
    s.unsigned_domain = true;
    scenarios.push(s);
    let mut s = sc(
        "ta",
        "dane",
        Some((2, 0, 1, ca.clone())),
        vec!["Verified TLS connection established to mx.DOM[127.0.0.3]:25"],
        true,
    );
    // One label under the certificate's wildcard, still holding "ta-pf." / "ta-op.".
    s.mx = |d| format!("{}.wild.example.test", d.trim_end_matches(".test"));
    s.addr = [127, 0, 0, 3];
    scenarios.push(s);

    // The zone, the transport and policy tables.
    let mut zone = Zone::default();
    let mut transport = String::from("sender.test discard:\n");
    let mut policy = String::new();
    let mut want: Vec<String> = Vec::new();
    for s in &scenarios {
        for (tag, tr) in [("pf", "smtp"), ("op", "outpost")] {
            let dom = format!("{}-{tag}.test", s.name);
            let mx = (s.mx)(&dom);
            let (d, m) = (leak(dom.clone()), leak(mx.clone()));
            zone.records.push((d, Rr::Mx(10, m)));
            zone.records.push((m, Rr::A(s.addr)));
            if let Some((u, sel, t, data)) = &s.tlsa {
                zone.records.push((
                    leak(format!("_25._tcp.{mx}")),
                    Rr::Tlsa(*u, *sel, *t, data.clone()),
                ));
            }
            if s.unsigned_domain {
                zone.unsigned.push(d);
            }
            transport.push_str(&format!("{dom} {tr}:\n"));
            policy.push_str(&format!("{dom} {}\n", s.level));
            for n in &s.needles {
                want.push(n.replace("mx.DOM", &mx));
            }
            if s.sent {
                want.push(format!("to=<r@{dom}>, relay={mx}[127.0.0."));
            }
        }
    }
    net.signed_dns(DNS, zone);
    let sink_ee = net.sink(
        "127.0.0.2:25",
        &["--tls-cert", &ee_cert, "--tls-key", &ee_key],
    );
    let sink_ta = net.sink(
        "127.0.0.3:25",
        &["--tls-cert", &ta_chain, "--tls-key", &k.p("srv.key")],
    );
    let pfile = dir.path().join("tls_policy");
    std::fs::write(&pfile, &policy).expect("policy");
    let _ = Command::new("chmod").arg("644").arg(&pfile).status();
    let main = format!(
        "smtp_dns_support_level = dnssec\nsmtp_tls_security_level = may\n\
         smtp_tls_loglevel = 2\nsmtp_tls_policy_maps = texthash:{}\n\
         smtp_tls_session_cache_database =\n",
        pfile.display()
    );
    let pf = Instance::start_in(Some(&net.name), &transport, &main, "", false);
    for s in &scenarios {
        for tag in ["pf", "op"] {
            pf.sendmail(
                &["-f", "s@sender.test", &format!("r@{}-{tag}.test", s.name)],
                MSG,
            );
        }
    }
    let t = Instant::now();
    loop {
        let log = pf.maillog();
        let missing: Vec<&String> = want.iter().filter(|n| !log.contains(n.as_str())).collect();
        if missing.is_empty() {
            break;
        }
        if t.elapsed() > Duration::from_secs(40) {
            panic!("missing {missing:?} in maillog:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let deferred mail be retried once more on both sides.
    std::thread::sleep(Duration::from_millis(2500));
    let log = pf.maillog();
    let q = pf.mailq();
    let delivered: Vec<String> = [&sink_ee, &sink_ta]
        .iter()
        .flat_map(|s| s.rcpts())
        .flatten()
        .collect();
    let mut failures = Vec::new();
    for s in &scenarios {
        let (la, lb) = (lines_for(&log, s.name, "pf"), lines_for(&log, s.name, "op"));
        if la != lb {
            failures.push(format!(
                "{}: log lines differ\n  smtp:    {la:#?}\n  outpost: {lb:#?}",
                s.name
            ));
        }
        let (ra, rb) = (reasons_for(&q, s.name, "pf"), reasons_for(&q, s.name, "op"));
        // Either side may be in the middle of a retry when mailq runs; the deferral texts
        // are compared in the log lines above anyway.
        if !ra.is_empty() && !rb.is_empty() && ra != rb {
            failures.push(format!(
                "{}: mailq reasons differ\n  smtp:    {ra:?}\n  outpost: {rb:?}",
                s.name
            ));
        }
        for tag in ["pf", "op"] {
            let rcpt = format!("r@{}-{tag}.test", s.name);
            let got = delivered.iter().any(|r| r.contains(&rcpt));
            if got != s.sent {
                failures.push(format!("{} ({tag}): delivered={got}", s.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n--- maillog ---\n{log}\n--- mailq ---\n{q}",
        failures.join("\n")
    );
}
