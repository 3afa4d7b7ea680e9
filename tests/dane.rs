//! End-to-end DANE: `outpost send` with smtp_tls_security_level = dane / dane-only, in a
//! private network namespace (see tests/support_dns) whose resolver is a small signed-zone
//! DNS server (`Net::signed_dns`: MX, A and TLSA answers with the AD bit, as a validating
//! resolver gives them; dnsmasq cannot), and an `outpost sink` with STARTTLS on
//! 127.0.0.2:25. The server certificate is self-signed (made with the `openssl` tool), so
//! only the TLSA record can make it trusted. Needs root and iproute2; otherwise each test
//! prints "SKIP: ..." and passes.

mod support_dns;

use std::path::Path;
use std::process::Command;
use support_dns::*;

const EX_TEMPFAIL: i32 = 75;
const DNS: &str = "127.0.0.53";

/// A self-signed certificate (for a name no test uses) and key in `dir`; returns (cert,
/// key, the SHA-256 of its public key: TLSA 3 1 1 data).
fn server_cert(dir: &Path) -> (String, String, Vec<u8>) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"])
        .args(["-subj", "/CN=not-the-mx-name.example"])
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
    let pem = std::fs::read(&cert).expect("read cert");
    let x = openssl::x509::X509::from_pem(&pem).expect("parse cert");
    let spki = x
        .public_key()
        .and_then(|k| k.public_key_to_der())
        .expect("public key");
    let digest = openssl::sha::sha256(&spki).to_vec();
    (
        cert.display().to_string(),
        key.display().to_string(),
        digest,
    )
}

/// dom.test: MX 10 mx.dom.test, mx.dom.test A 127.0.0.2, and `tlsa` at _25._tcp.mx.dom.test.
fn zone(dom: &'static str, mx: &'static str, tlsa: Option<Vec<u8>>) -> Zone {
    let mut z = Zone::default();
    z.records.push((dom, Rr::Mx(10, mx)));
    z.records.push((mx, Rr::A([127, 0, 0, 2])));
    if let Some(d) = tlsa {
        let owner: &'static str = Box::leak(format!("_25._tcp.{mx}").into_boxed_str());
        z.records.push((owner, Rr::Tlsa(3, 1, 1, d)));
    }
    z
}

/// A namespace with the signed DNS server and a STARTTLS sink; None when not possible.
fn setup(z: Zone) -> Option<(Net, Sink, tempfile::TempDir)> {
    let mut net = Net::without_dnsmasq(DNS)?;
    net.signed_dns(DNS, z);
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = server_cert(dir.path());
    let sink = net.sink("127.0.0.2:25", &["--tls-cert", &cert, "--tls-key", &key]);
    Some((net, sink, dir))
}

fn send(net: &Net, level: &str, extra: &[&str], rcpt: &str) -> Run {
    let lvl = format!("smtp_tls_security_level={level}");
    let mut args = vec![
        "-o",
        "smtp_dns_support_level=dnssec",
        "-o",
        &lvl,
        "-o",
        "smtp_tls_loglevel=1",
    ];
    args.extend_from_slice(extra);
    net.send(&args, &[rcpt])
}

/// The sink's key is used for the TLSA record: the zone is built after the certificate.
fn setup_with_key(
    dom: &'static str,
    mx: &'static str,
    tlsa: impl FnOnce(Vec<u8>) -> Option<Vec<u8>>,
    unsigned: &[&'static str],
) -> Option<(Net, Sink, tempfile::TempDir)> {
    let mut net = Net::without_dnsmasq(DNS)?;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, digest) = server_cert(dir.path());
    let mut z = zone(dom, mx, tlsa(digest));
    z.unsigned.extend_from_slice(unsigned);
    net.signed_dns(DNS, z);
    let sink = net.sink("127.0.0.2:25", &["--tls-cert", &cert, "--tls-key", &key]);
    Some((net, sink, dir))
}

#[test]
fn matching_tlsa_gives_verified_tls_and_delivery() {
    let Some((net, sink, _dir)) = setup_with_key("dane.test", "mx.dane.test", Some, &[]) else {
        return;
    };
    for level in ["dane", "dane-only"] {
        let run = send(&net, level, &[], "rcpt@dane.test");
        let why = format!("{run}{}", sink.show());
        assert_eq!(run.code, 0, "{level}: {why}");
        assert!(
            run.stderr
                .contains("Verified TLS connection established to mx.dane.test[127.0.0.2]:25"),
            "{level}: {why}"
        );
        assert!(
            run.result("rcpt@dane.test")
                .starts_with("rcpt@dane.test: sent dsn=2."),
            "{why}"
        );
    }
    assert_eq!(sink.messages().len(), 2);
}

#[test]
fn wrong_tlsa_defers() {
    let Some((net, sink, _dir)) =
        setup_with_key("wrong.test", "mx.wrong.test", |_| Some(vec![0x5a; 32]), &[])
    else {
        return;
    };
    let run = send(&net, "dane", &[], "rcpt@wrong.test");
    let why = format!("{run}{}", sink.show());
    assert_eq!(run.code, EX_TEMPFAIL, "{why}");
    let line = run.result("rcpt@wrong.test");
    assert!(
        line.contains("dsn=4.7.5") && line.contains("Server certificate not verified"),
        "{why}"
    );
    assert!(
        run.stderr.contains(
            "server certificate verification failed for mx.wrong.test[127.0.0.2]:25: num=65:"
        ),
        "{why}"
    );
    assert_eq!(sink.messages().len(), 0, "{why}");
}

#[test]
fn dane_only_with_unsigned_mx_defers_without_connecting() {
    let Some((net, sink, _dir)) = setup_with_key(
        "insecure.test",
        "mx.insecure.test",
        Some,
        &["insecure.test"],
    ) else {
        return;
    };
    let run = send(&net, "dane-only", &[], "rcpt@insecure.test");
    let why = format!("{run}{}", sink.show());
    assert_eq!(run.code, EX_TEMPFAIL, "{why}");
    let line = run.result("rcpt@insecure.test");
    assert!(
        line.contains("dsn=4.7.5") && line.contains("non DNSSEC destination"),
        "{why}"
    );
    assert!(
        run.stderr.contains(
            "TLS policy lookup for insecure.test/mx.insecure.test: non DNSSEC destination"
        ),
        "{why}"
    );
    assert_eq!(sink.sessions(), 0, "{why}");
    // "dane" with the default insecure-MX policy (dane): TLSA still applies, the
    // connection is matched but never logged as Verified.
    let run = send(&net, "dane", &[], "rcpt@insecure.test");
    let why = format!("{run}{}", sink.show());
    assert_eq!(run.code, 0, "{why}");
    assert!(
        run.stderr
            .contains("Trusted TLS connection established to mx.insecure.test[127.0.0.2]:25"),
        "{why}"
    );
}

#[test]
fn dane_without_tlsa_is_opportunistic_tls() {
    let Some((net, sink, _dir)) = setup(zone("plain.test", "mx.plain.test", None)) else {
        return;
    };
    let run = send(&net, "dane", &[], "rcpt@plain.test");
    let why = format!("{run}{}", sink.show());
    assert_eq!(run.code, 0, "{why}");
    assert!(
        run.stderr
            .contains("Untrusted TLS connection established to mx.plain.test[127.0.0.2]:25"),
        "{why}"
    );
    // dane-only needs TLSA records.
    let run = send(&net, "dane-only", &[], "rcpt@plain.test");
    let why = format!("{run}{}", sink.show());
    assert_eq!(run.code, EX_TEMPFAIL, "{why}");
    assert!(
        run.result("rcpt@plain.test")
            .contains("no TLSA records found"),
        "{why}"
    );
    // Without DNSSEC lookups Postfix warns and uses opportunistic TLS.
    let run = send(
        &net,
        "dane",
        &["-o", "smtp_dns_support_level=enabled"],
        "rcpt@plain.test",
    );
    let why = format!("{run}{}", sink.show());
    assert_eq!(run.code, 0, "{why}");
    assert!(
        run.stderr
            .contains("warning: plain.test: dane configured with dnssec lookups disabled"),
        "{why}"
    );
    assert_eq!(sink.messages().len(), 2, "{why}");
}
