//! Certificates for the end-to-end TLS tests (tests/tls_e2e.rs, tests/tls_daemon.rs),
//! made once per test process with the `openssl` command-line tool:
//!
//! * `ca`: the test CA; `inter`: an intermediate CA signed by it;
//! * `srv`: mx.example.test (SANs mx.example.test, *.wild.example.test), by the CA;
//! * `expired`: mx.example.test, expired yesterday; `wrong`: other.example.test;
//! * `deep`: mx.example.test issued by the intermediate (chain leaf, intermediate);
//! * `self`: self-signed mx.example.test; `client`: a client certificate (CN client.test);
//! * `capath/`: the CA certificate under its OpenSSL hash name (for smtp_tls_CApath).
//!
//! Every server certificate file NAME-chain.pem holds the leaf followed by its issuers
//! (without the root), NAME.key its key. The directory and files are world-readable:
//! Postfix's smtp(8) and Outpost under master(8) read them as the mail_owner.

#![allow(dead_code)]

use openssl::hash::MessageDigest;
use openssl::x509::X509;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Pki {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Pki {
    /// Path of a file in the PKI directory, as a string for -o options.
    pub fn p(&self, name: &str) -> String {
        self.path.join(name).to_string_lossy().into_owned()
    }

    /// Colon-separated upper-case hex digest of NAME.pem (the certificate) with `alg`.
    pub fn cert_fp(&self, name: &str, alg: &str) -> String {
        let x = self.x509(name);
        let md = MessageDigest::from_name(alg).expect("digest name");
        colon_hex(&x.digest(md).expect("digest"))
    }

    /// The same over the DER SubjectPublicKeyInfo (Postfix's public-key fingerprint).
    pub fn pkey_fp(&self, name: &str, alg: &str) -> String {
        let x = self.x509(name);
        let der = x
            .public_key()
            .expect("public key")
            .public_key_to_der()
            .expect("der");
        let md = MessageDigest::from_name(alg).expect("digest name");
        colon_hex(&openssl::hash::hash(md, &der).expect("hash"))
    }

    fn x509(&self, name: &str) -> X509 {
        let pem = std::fs::read(self.path.join(format!("{name}.pem"))).expect("read cert");
        X509::from_pem(&pem).expect("parse cert")
    }
}

fn colon_hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether the openssl CLI is there (tests print SKIP otherwise).
pub fn have_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
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

fn key_and_csr(dir: &Path, name: &str, cn: &str) {
    key_and_csr_with(dir, name, cn, &["-newkey", "rsa:2048"]);
}

/// Like `key_and_csr` with other key options (e.g. an EC key).
fn key_and_csr_with(dir: &Path, name: &str, cn: &str, key: &[&str]) {
    openssl(
        dir,
        &[
            &["req"][..],
            key,
            &[
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        ]
        .concat(),
    );
}

/// NAME.pem signed by ISSUER with extensions `ext` (one per line) and validity `days`
/// (-1: already expired, as in tests/tls.rs).
fn sign(dir: &Path, name: &str, issuer: &str, ext: &str, days: i32) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).expect("ext file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{issuer}.pem"),
            "-CAkey",
            &format!("{issuer}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            &days.to_string(),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

fn chain(dir: &Path, name: &str, issuers: &[&str]) {
    let mut pem = std::fs::read(dir.join(format!("{name}.pem"))).expect("leaf");
    for i in issuers {
        pem.extend(std::fs::read(dir.join(format!("{i}.pem"))).expect("issuer"));
    }
    std::fs::write(dir.join(format!("{name}-chain.pem")), pem).expect("chain");
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("outpost-pki")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
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
        let leaf = |sans: &str| format!("basicConstraints=CA:FALSE\nsubjectAltName={sans}\n");
        key_and_csr(d, "inter", "Test Intermediate");
        sign(
            d,
            "inter",
            "ca",
            "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n",
            30,
        );
        key_and_csr(d, "srv", "mx.example.test");
        sign(
            d,
            "srv",
            "ca",
            &leaf("DNS:mx.example.test,DNS:*.wild.example.test"),
            30,
        );
        key_and_csr(d, "expired", "mx.example.test");
        sign(d, "expired", "ca", &leaf("DNS:mx.example.test"), -1);
        key_and_csr(d, "wrong", "other.example.test");
        sign(d, "wrong", "ca", &leaf("DNS:other.example.test"), 30);
        key_and_csr(d, "deep", "mx.example.test");
        sign(d, "deep", "inter", &leaf("DNS:mx.example.test"), 30);
        // Two intermediates: leaf <- inter2 <- inter <- root.
        key_and_csr(d, "inter2", "Test Intermediate 2");
        sign(
            d,
            "inter2",
            "inter",
            "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n",
            30,
        );
        key_and_csr(d, "deeper", "mx.example.test");
        sign(d, "deeper", "inter2", &leaf("DNS:mx.example.test"), 30);
        key_and_csr(d, "client", "client.test");
        sign(d, "client", "ca", &leaf("DNS:client.test"), 30);
        // Client certificates for the eccert and dcert slots.
        key_and_csr_with(
            d,
            "ecclient",
            "ecclient.test",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        );
        sign(d, "ecclient", "ca", &leaf("DNS:ecclient.test"), 30);
        key_and_csr(d, "dclient", "dclient.test");
        sign(d, "dclient", "ca", &leaf("DNS:dclient.test"), 30);
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
        for n in ["srv", "expired", "wrong", "client", "self"] {
            chain(d, n, &[]);
        }
        chain(d, "deep", &["inter"]);
        chain(d, "deeper", &["inter2", "inter"]);
        // CApath: the CA under "<subject hash>.0".
        let hash = String::from_utf8_lossy(&openssl(
            d,
            &["x509", "-in", "ca.pem", "-noout", "-subject_hash"],
        ))
        .trim()
        .to_string();
        std::fs::create_dir_all(d.join("capath")).expect("capath");
        std::fs::copy(d.join("ca.pem"), d.join("capath").join(format!("{hash}.0")))
            .expect("capath cert");
        for e in walk(d) {
            let mode = if e.is_dir() { 0o755 } else { 0o644 };
            let _ = std::fs::set_permissions(&e, std::fs::Permissions::from_mode(mode));
        }
        let path = d.to_path_buf();
        Pki { _dir: dir, path }
    })
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            }
            v.push(p);
        }
    }
    v
}
