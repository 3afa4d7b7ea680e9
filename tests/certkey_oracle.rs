//! Client key and certificate loading, DIFFERENTIAL against Postfix: each set of PEM files
//! goes through posttls-finger(1) (`-H` for chain files, `-k`/`-K` for a certificate and
//! key pair, which Postfix loads into the RSA slot) and through Outpost's
//! `ClientContext::new` with the same smtp_tls_chain_files / smtp_tls_cert_file /
//! smtp_tls_key_file, and the set-up log lines (severity and text, OpenSSL's error lines
//! included: both link the same libssl) must be the same, as must the verdict (TLS
//! disabled or not). posttls-finger is pointed at a closed port, so it only initialises
//! its TLS engine and gives up.
//!
//! Skips (with a note) when posttls-finger or the openssl command-line tool is missing.

mod support;

use outpost::log::{self, Level, Target};
use outpost::tls::{ClientContext, Settings};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn openssl(dir: &Path, args: &[&str]) {
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
}

/// The CA, RSA leaves `rsa` and `other` and an EC leaf `ec`, all issued by the CA;
/// `*.key` are PKCS#8 keys, `*.trad.key` the traditional (algorithm-named) forms, and
/// `rsa.pub` a public key (a PEM type the loader skips).
fn make_pki(dir: &Path) {
    let days = ["-days", "10"];
    openssl(
        dir,
        &[
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes"][..],
            &["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=ca"],
            &days,
        ]
        .concat(),
    );
    for (name, alg) in [
        ("rsa", &["-newkey", "rsa:2048"][..]),
        ("other", &["-newkey", "rsa:2048"][..]),
        (
            "ec",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        ),
    ] {
        let (key, csr, pem, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("/CN={name}"),
        );
        openssl(
            dir,
            &[
                &["req", "-nodes"][..],
                alg,
                &["-keyout", &key, "-out", &csr, "-subj", &subj],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                &[
                    "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key",
                ][..],
                &["-CAcreateserial", "-out", &pem],
                &days,
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "pkey",
                "-in",
                &key,
                "-traditional",
                "-out",
                &format!("{name}.trad.key"),
            ],
        );
    }
    openssl(
        dir,
        &["pkey", "-in", "rsa.key", "-pubout", "-out", "rsa.pub"],
    );
    // Encrypted keys: PKCS#8 ("ENCRYPTED PRIVATE KEY", not a type the loader reads) and
    // traditional ("RSA PRIVATE KEY" with encryption headers, undecodable as it is).
    let enc = ["-aes128", "-passout", "pass:secret"];
    openssl(
        dir,
        &[&["pkey", "-in", "rsa.key", "-out", "enc8.key"][..], &enc].concat(),
    );
    openssl(
        dir,
        &[
            &[
                "pkey",
                "-in",
                "rsa.key",
                "-traditional",
                "-out",
                "enctrad.key",
            ][..],
            &enc,
        ]
        .concat(),
    );
    // Hand-made objects: DER with trailing bytes, undecodable DER, the old label.
    let der = |name: &str| {
        let pem = std::fs::read_to_string(dir.join(name)).expect("read pem");
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        openssl::base64::decode_block(&b64).expect("base64")
    };
    let write_pem = |out: &str, label: &str, data: &[u8]| {
        let b64 = openssl::base64::encode_block(data);
        let mut text = format!("-----BEGIN {label}-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            text.push_str(&String::from_utf8_lossy(chunk));
            text.push('\n');
        }
        text.push_str(&format!("-----END {label}-----\n"));
        std::fs::write(dir.join(out), text).expect("write pem");
    };
    let mut cert = der("rsa.pem");
    write_pem("rsa.old.pem", "X509 CERTIFICATE", &cert);
    cert.extend_from_slice(&[0, 0]);
    write_pem("rsa.excess.pem", "CERTIFICATE", &cert);
    let mut key = der("rsa.key");
    key.extend_from_slice(&[0, 0]);
    write_pem("rsa.excess.key", "PRIVATE KEY", &key);
    write_pem("bad.pem", "CERTIFICATE", b"not DER at all");
    write_pem("bad.key", "PRIVATE KEY", b"not DER at all");
    write_pem("bad.trad.key", "EC PRIVATE KEY", b"not DER at all");
}

/// Concatenates fixture files (`trunc:NAME` is the first 300 bytes of NAME).
fn cat(dir: &Path, out: &str, parts: &[&str]) -> String {
    let mut data = Vec::new();
    for p in parts {
        if let Some(n) = p.strip_prefix("trunc:") {
            let b = std::fs::read(dir.join(n)).expect("read part");
            data.extend_from_slice(&b[..300.min(b.len())]);
        } else {
            data.extend(std::fs::read(dir.join(p)).expect("read part"));
        }
    }
    let path = dir.join(out);
    std::fs::write(&path, data).expect("write");
    path.to_string_lossy().into_owned()
}

/// What becomes of TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Enabled,
    /// "... disabling TLS support" is logged.
    Disabled,
    /// Postfix disables TLS without saying so (an unreadable single cert+key file), so
    /// only Outpost's verdict can be checked.
    DisabledSilently,
}
use Verdict::*;

enum Input {
    /// smtp_tls_chain_files / posttls-finger -H.
    Chains(String),
    /// smtp_tls_cert_file and smtp_tls_key_file / posttls-finger -k and -K.
    Pair(String, String),
}

/// posttls-finger's TLS set-up lines ("warning: ..." or plain info) and whether TLS was
/// disabled.
fn theirs(finger: &Path, conf: &Path, input: &Input) -> (Vec<String>, bool) {
    let mut cmd = Command::new(finger);
    cmd.env("MAIL_CONFIG", conf).args(["-c", "-l", "may"]);
    match input {
        Input::Chains(c) => cmd.args(["-H", c]),
        Input::Pair(c, k) => cmd.args(["-k", c, "-K", k]),
    };
    let out = cmd.arg("[127.0.0.1]:1").output().expect("posttls-finger");
    // posttls-finger writes its log to standard output.
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let lines: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("posttls-finger: "))
        .filter(|l| !l.starts_with("Failed to establish session"))
        .map(str::to_string)
        .collect();
    let disabled = lines.iter().any(|l| l.ends_with("disabling TLS support"));
    (lines, disabled)
}

fn ours(input: &Input) -> (Vec<String>, bool) {
    let mut s = Settings::default();
    match input {
        Input::Chains(c) => s.chain_files = c.clone(),
        Input::Pair(c, k) => {
            s.cert_file = c.clone();
            s.key_file = k.clone();
        }
    }
    LINES.lock().unwrap().clear();
    let r = ClientContext::new(&s);
    let mut lines = std::mem::take(&mut *LINES.lock().unwrap());
    let disabled = match r {
        Ok(_) => false,
        Err(v) => {
            lines.extend(v.into_iter().map(|(level, l)| match level {
                Level::Info => l,
                Level::Warning => format!("warning: {l}"),
                Level::Error => format!("error: {l}"),
                Level::Fatal => format!("fatal: {l}"),
            }));
            true
        }
    };
    (lines, disabled)
}

#[test]
fn key_and_certificate_loading_as_postfix() {
    let Some(finger) = support::find_bin("posttls-finger") else {
        eprintln!("SKIP: posttls-finger is missing");
        return;
    };
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIP: the openssl command is missing");
        return;
    }
    log::init(
        Target::Custom(Box::new(|_, line| {
            // "tag[pid]: text" -> "text" (the level prefix stays).
            let text = line.split_once(": ").map_or(line, |x| x.1);
            LINES.lock().unwrap().push(text.to_string());
        })),
        "outpost/test",
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    std::fs::write(d.join("main.cf"), "").expect("main.cf");
    make_pki(d);
    let p = |n: &str| d.join(n).to_string_lossy().into_owned();
    let chains = |parts: &[&str], name: &str| Input::Chains(cat(d, name, parts));
    let mixed = |parts: &[&str], name: &str| {
        let f = cat(d, name, parts);
        Input::Pair(f.clone(), f)
    };
    // Chains that continue across files.
    let f1 = cat(d, "f1.pem", &["rsa.key", "rsa.pem"]);
    let f2 = cat(d, "f2.pem", &["ca.pem", "ec.key", "ec.pem"]);
    let f3 = cat(d, "f3.pem", &["rsa.key"]);
    let f4 = cat(d, "f4.pem", &["rsa.pem", "ec.key"]);
    let cases: Vec<(&str, Input, Verdict)> = vec![
        (
            "mixed key first",
            mixed(&["rsa.key", "rsa.pem", "ca.pem"], "m1.pem"),
            Enabled,
        ),
        (
            "mixed key last",
            mixed(&["rsa.pem", "ca.pem", "rsa.key"], "m2.pem"),
            Enabled,
        ),
        (
            "mixed key middle",
            mixed(&["rsa.pem", "rsa.trad.key", "ca.pem"], "m3.pem"),
            Enabled,
        ),
        (
            "mixed no key",
            mixed(&["rsa.pem", "ca.pem"], "m4.pem"),
            Disabled,
        ),
        (
            "mixed mismatch",
            mixed(&["other.key", "rsa.pem"], "m5.pem"),
            Disabled,
        ),
        (
            "mixed 2nd key",
            mixed(&["rsa.key", "rsa.pem", "other.key", "ca.pem"], "m6.pem"),
            Enabled,
        ),
        (
            "mixed key only",
            mixed(&["rsa.key", "rsa.pub"], "m7.pem"),
            Disabled,
        ),
        (
            "mixed truncated",
            mixed(&["rsa.key", "trunc:rsa.pem"], "m8.pem"),
            Disabled,
        ),
        ("mixed empty", mixed(&[], "m9.pem"), Disabled),
        (
            "mixed missing",
            Input::Pair(p("nope.pem"), p("nope.pem")),
            DisabledSilently,
        ),
        ("pair", Input::Pair(p("rsa.pem"), p("rsa.key")), Enabled),
        (
            "pair other type",
            Input::Pair(p("ec.pem"), p("rsa.key")),
            Disabled,
        ),
        (
            "pair same type",
            Input::Pair(p("rsa.pem"), p("other.key")),
            Disabled,
        ),
        (
            "pair missing cert",
            Input::Pair(p("nope.pem"), p("rsa.key")),
            Disabled,
        ),
        (
            "pair missing key",
            Input::Pair(p("rsa.pem"), p("nope.key")),
            Disabled,
        ),
        (
            "chain rsa and ec",
            chains(
                &[
                    "rsa.key",
                    "rsa.pem",
                    "ca.pem",
                    "ec.trad.key",
                    "ec.pem",
                    "ca.pem",
                ],
                "c1.pem",
            ),
            Enabled,
        ),
        (
            "chain key not first",
            chains(&["rsa.pem", "rsa.key"], "c2.pem"),
            Disabled,
        ),
        (
            "chain back-to-back keys",
            chains(&["rsa.key", "ec.key", "rsa.pem"], "c3.pem"),
            Disabled,
        ),
        (
            "chain ignored type",
            chains(&["rsa.key", "rsa.pem", "rsa.pub", "ca.pem"], "c4.pem"),
            Enabled,
        ),
        (
            "chain ignored after key",
            chains(&["rsa.key", "rsa.pub"], "c5.pem"),
            Disabled,
        ),
        ("chain empty", chains(&[], "c6.pem"), Disabled),
        (
            "chain same algorithm twice",
            chains(&["rsa.key", "rsa.pem", "other.key", "other.pem"], "c7.pem"),
            Disabled,
        ),
        (
            "chain mismatch then next",
            chains(&["other.key", "rsa.pem", "ec.key", "ec.pem"], "c8.pem"),
            Disabled,
        ),
        (
            "chain no certs",
            chains(&["rsa.trad.key"], "c9.pem"),
            Disabled,
        ),
        (
            "chain old label",
            chains(&["rsa.key", "rsa.old.pem"], "c11.pem"),
            Enabled,
        ),
        (
            "chain cert excess",
            chains(&["rsa.key", "rsa.excess.pem"], "c12.pem"),
            Disabled,
        ),
        (
            "chain key excess",
            chains(&["rsa.excess.key", "rsa.pem"], "c13.pem"),
            Disabled,
        ),
        (
            "chain bad cert",
            chains(&["rsa.key", "bad.pem"], "c14.pem"),
            Disabled,
        ),
        (
            "chain bad key",
            chains(&["bad.key", "rsa.pem"], "c15.pem"),
            Disabled,
        ),
        (
            "chain bad next key",
            chains(&["rsa.key", "rsa.pem", "bad.trad.key", "ec.pem"], "c16.pem"),
            Disabled,
        ),
        (
            "chain pkcs8 encrypted",
            chains(&["enc8.key", "rsa.pem"], "c17.pem"),
            Disabled,
        ),
        (
            "chain trad encrypted",
            chains(&["enctrad.key", "rsa.pem"], "c18.pem"),
            Disabled,
        ),
        (
            "mixed bad 2nd key then mismatch",
            mixed(&["rsa.key", "bad.key", "other.pem"], "m10.pem"),
            Disabled,
        ),
        (
            "mixed bad cert",
            mixed(&["rsa.key", "rsa.pem", "bad.pem"], "m11.pem"),
            Disabled,
        ),
        (
            "mixed cert excess",
            mixed(&["rsa.excess.pem", "rsa.key"], "m12.pem"),
            Disabled,
        ),
        (
            "mixed encrypted",
            mixed(&["rsa.pem", "enc8.key"], "m13.pem"),
            Disabled,
        ),
        (
            "chain truncated",
            chains(&["rsa.key", "trunc:rsa.pem"], "c10.pem"),
            Disabled,
        ),
        // Postfix 3.7 carries on without the file's keys.
        ("chain missing", Input::Chains(p("nope.pem")), Enabled),
        ("chain directory", Input::Chains(p("")), Disabled),
        ("two files", Input::Chains(format!("{f1}, {f2}")), Enabled),
        (
            "key ends a file",
            Input::Chains(format!("{f3} {f4}")),
            Disabled,
        ),
        (
            "second file missing",
            Input::Chains(format!("{f1},{}", p("nope.pem"))),
            Enabled,
        ),
    ];
    let mut failures = Vec::new();
    for (name, input, verdict) in &cases {
        let (their_lines, their_disabled) = theirs(&finger, d, input);
        let (our_lines, our_disabled) = ours(input);
        let expect_disabled = *verdict != Enabled;
        if their_lines != our_lines
            || our_disabled != expect_disabled
            || (*verdict != DisabledSilently && their_disabled != expect_disabled)
        {
            failures.push(format!(
                "{name} (expected {verdict:?}):\n  postfix: {their_lines:?} disabled={their_disabled}\n  outpost: {our_lines:?} disabled={our_disabled}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
