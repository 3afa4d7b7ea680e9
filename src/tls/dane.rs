//! TLSA records for DANE, fingerprint and trust-anchor-file policies.
//!
//! Postfix hands OpenSSL's DANE verifier three kinds of "TLSA" data: DNSSEC-validated
//! records from DNS (only usages DANE-TA(2) and DANE-EE(3) are used for SMTP, and the
//! private-use matching type 255 is refused), fingerprints from the fingerprint level
//! (as 3 0 255 and 3 1 255, where 255 means smtp_tls_fingerprint_digest), and trust
//! anchors from tafile / smtp_tls_trust_anchor_file (2 0 0 for certificates, 2 1 0 for
//! public keys). The DNS outcome classes follow tls_dane.c: no records or an insecure
//! answer means DANE does not apply; authenticated records none of which is usable
//! means "TLSA records unusable"; any other failure defers.

use crate::route::dns::{Answer, DnsError, Resolver, Tlsa};

/// One TLSA association as given to SSL_dane_tlsa_add.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsaRecord {
    pub usage: u8,
    pub selector: u8,
    pub mtype: u8,
    pub data: Vec<u8>,
}

impl TlsaRecord {
    pub fn new(usage: u8, selector: u8, mtype: u8, data: Vec<u8>) -> TlsaRecord {
        TlsaRecord {
            usage,
            selector,
            mtype,
            data,
        }
    }

    /// Presentation form for log lines: `3 1 1 ABCD...` (data in hex).
    /// "u s m HEX" as Postfix logs a record: data over 64 bytes as its first and last 32.
    pub fn log_form(&self) -> String {
        format!(
            "{} {} {} {}",
            self.usage,
            self.selector,
            self.mtype,
            hex_dump(&self.data)
        )
    }

    pub fn display(&self) -> String {
        let hex: String = self.data.iter().map(|b| format!("{b:02X}")).collect();
        format!("{} {} {} {hex}", self.usage, self.selector, self.mtype)
    }
}

/// The private-use matching type Postfix gives fingerprints.
pub const MTYPE_FPRINT: u8 = 255;

/// What a TLSA lookup means for the DANE security levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaneLookup {
    /// No records, or records from an unauthenticated answer: DANE does not apply.
    NotFound,
    /// Authenticated records, none usable for SMTP.
    Unusable,
    /// Usable, authenticated records, found for `base` (the TLSA base domain, which is
    /// also the SNI name and the first match name).
    Records {
        base: String,
        records: Vec<TlsaRecord>,
    },
}

/// Record data as Postfix logs it: upper-case hex, over 64 bytes as the first and last 32.
pub fn hex_dump(d: &[u8]) -> String {
    const HEAD: usize = 32;
    const TAIL: usize = 32;
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02X}")).collect::<String>();
    if d.len() > HEAD + TAIL {
        format!("{}...{}", hex(&d[..HEAD]), hex(&d[d.len() - TAIL..]))
    } else {
        hex(d)
    }
}

/// The warning about a skipped TLSA record, worded as Postfix's: the owner name, no colon
/// after it, and long data shown as its first and last 32 bytes.
fn carp(name: &str, why: &str, t: &Tlsa) -> String {
    let data = if t.data.is_empty() {
        "...".to_string()
    } else {
        hex_dump(&t.data)
    };
    format!(
        "{name} {why}: {} {} {} {data}",
        t.usage, t.selector, t.mtype
    )
}

/// Postfix's filter for one DNS TLSA record; `Err` is the warning text.
fn usable(name: &str, t: &Tlsa) -> Result<TlsaRecord, String> {
    if !matches!(t.usage, 2 | 3) {
        return Err(carp(name, "unsupported TLSA certificate usage", t));
    }
    if t.mtype == MTYPE_FPRINT {
        return Err(carp(name, "reserved private-use matching type", t));
    }
    Ok(TlsaRecord::new(
        t.usage,
        t.selector,
        t.mtype,
        t.data.clone(),
    ))
}

/// Classifies the answer to `_port._tcp.host` TLSA; `Err` is the lookup problem (the
/// policy then defers with "TLSA lookup error for host:port"). Warnings about records that
/// were skipped come back with the result, for the caller to log.
pub fn classify(
    base: &str,
    name: &str,
    answer: Result<Answer<Tlsa>, DnsError>,
) -> (Result<DaneLookup, String>, Vec<String>) {
    let mut warnings = Vec::new();
    let result = match answer {
        Ok(a) if a.authentic => {
            // Records found through a CNAME are named "query -> owner", as Postfix does.
            let owner = a.canonical_name.trim_end_matches('.');
            let shown = if owner.is_empty() || owner.eq_ignore_ascii_case(name) {
                name.to_string()
            } else {
                format!("{name} -> {owner}")
            };
            let recs: Vec<TlsaRecord> = a
                .records
                .iter()
                .filter_map(|t| usable(&shown, t).map_err(|w| warnings.push(w)).ok())
                .collect();
            if recs.is_empty() {
                Ok(DaneLookup::Unusable)
            } else {
                Ok(DaneLookup::Records {
                    base: base.to_string(),
                    records: recs,
                })
            }
        }
        Ok(_) => Ok(DaneLookup::NotFound),
        Err(e) if e.is_not_found() => Ok(DaneLookup::NotFound),
        Err(e) => {
            let why = e.postfix_text(name, "TLSA");
            warnings.push(format!("DANE TLSA lookup problem: {why}"));
            Err(why)
        }
    };
    (result, warnings)
}

/// Looks up the TLSA records for a server reached as `qname` whose address records
/// were found under `rname` (different when a CNAME was followed); `host_secure` is
/// whether that address lookup was DNSSEC-validated. As in Postfix, an insecure host
/// name gets no TLSA lookup unless `force` (smtp_tls_force_insecure_host_tlsa_lookup) or
/// it is an alias whose own CNAME record is signed (then only `qname` is asked), and for
/// a secure alias the CNAME target is tried before the original name.
pub fn lookup(
    resolver: &Resolver,
    port: u16,
    qname: &str,
    rname: &str,
    host_secure: bool,
    force: bool,
) -> (Result<DaneLookup, String>, Vec<String>) {
    let aliased = !qname.eq_ignore_ascii_case(rname);
    if !force && !host_secure {
        if !aliased {
            return (Ok(DaneLookup::NotFound), Vec::new());
        }
        // The DNSSEC status of the CNAME record itself.
        match resolver.with_dnssec(true).cname(qname) {
            Ok(a) if a.authentic => {}
            Ok(_) => return (Ok(DaneLookup::NotFound), Vec::new()),
            Err(e) => {
                let why = if e.is_not_found() {
                    "no longer a CNAME".to_string()
                } else {
                    e.postfix_text(qname, "CNAME")
                };
                let w = format!("DNSSEC status lookup error for {qname}: {why}");
                return (Err(why), vec![w]);
            }
        }
    }
    if host_secure && aliased {
        let name = format!("_{port}._tcp.{rname}");
        let (r, w) = classify(rname, &name, resolver.tlsa_service(port, "tcp", rname));
        if r != Ok(DaneLookup::NotFound) {
            return (r, w);
        }
    }
    let name = format!("_{port}._tcp.{qname}");
    classify(qname, &name, resolver.tlsa_service(port, "tcp", qname))
}

/// Synthetic DANE-EE records for fingerprints (certificate and public key alike).
pub fn fingerprint_records(digests: &[Vec<u8>]) -> Vec<TlsaRecord> {
    let mut v = Vec::with_capacity(digests.len() * 2);
    for d in digests {
        v.push(TlsaRecord::new(3, 0, MTYPE_FPRINT, d.clone()));
        v.push(TlsaRecord::new(3, 1, MTYPE_FPRINT, d.clone()));
    }
    v
}

/// Trust anchors from a PEM file, as Postfix takes them: each certificate as a DANE-TA
/// and a DANE-EE record with the full certificate (2 0 0 and 3 0 0; so that a
/// self-signed server certificate can be its own anchor), each bare public key likewise
/// (2 1 0 and 3 1 0); other PEM objects are skipped. `Err` carries the lines to log
/// (none for a file without anchors, as in Postfix). `verbose`: log each anchor.
pub fn load_trust_anchors(path: &str, verbose: bool) -> Result<Vec<TlsaRecord>, Vec<String>> {
    use super::certkey::{PemError, pem_objects};
    let objects = match pem_objects(path) {
        Ok(o) => o,
        Err(PemError::Open(e)) => {
            return Err(vec![format!(
                "error opening trust anchor file: {path}: {}",
                crate::log::strerror(&e)
            )]);
        }
        Err(PemError::Read(lines)) => return Err(lines.into_iter().map(|(_, l)| l).collect()),
    };
    let mut out = Vec::new();
    for (name, der) in objects {
        let (selector, what) = match name.as_str() {
            "CERTIFICATE" | "X509 CERTIFICATE" => (0, "TA cert as TLSA record"),
            "PUBLIC KEY" => (1, "TA pkey as TLSA record"),
            _ => continue,
        };
        let ta = TlsaRecord::new(2, selector, 0, der.clone());
        if verbose {
            crate::log::info(&format!("{what}: {path}: {}", ta.log_form()));
        }
        out.push(ta);
        out.push(TlsaRecord::new(3, selector, 0, der));
    }
    if out.is_empty() {
        return Err(Vec::new());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(authentic: bool, recs: Vec<Tlsa>) -> Answer<Tlsa> {
        Answer {
            records: recs,
            authentic,
            canonical_name: "_25._tcp.mx.example".into(),
            cname_chain: Vec::new(),
            ttl: 300,
            truncated: false,
            warnings: Vec::new(),
        }
    }

    fn t(u: u8, s: u8, m: u8) -> Tlsa {
        Tlsa {
            usage: u,
            selector: s,
            mtype: m,
            data: vec![1, 2],
        }
    }

    #[test]
    fn classify_outcomes() {
        let n = "_25._tcp.mx.example";
        let (r, w) = classify(
            "mx.example",
            n,
            Ok(answer(true, vec![t(3, 1, 1), t(1, 0, 1), t(2, 0, 255)])),
        );
        assert_eq!(
            r,
            Ok(DaneLookup::Records {
                base: "mx.example".into(),
                records: vec![TlsaRecord::new(3, 1, 1, vec![1, 2])]
            })
        );
        assert_eq!(
            w,
            vec![
                "_25._tcp.mx.example unsupported TLSA certificate usage: 1 0 1 0102",
                "_25._tcp.mx.example reserved private-use matching type: 2 0 255 0102"
            ]
        );
        // Long data is shown as its first and last 32 bytes; a CNAME as "query -> owner".
        let mut long = t(1, 1, 1);
        long.data = (0..70).collect();
        let mut a = answer(true, vec![long]);
        a.canonical_name = "_25._tcp.other.example".into();
        let (_, w) = classify("mx.example", n, Ok(a));
        let head: String = (0..32).map(|b| format!("{b:02X}")).collect();
        let tail: String = (38..70).map(|b| format!("{b:02X}")).collect();
        assert_eq!(
            w,
            vec![format!(
                "_25._tcp.mx.example -> _25._tcp.other.example unsupported TLSA certificate \
                 usage: 1 1 1 {head}...{tail}"
            )]
        );
        let (r, _) = classify("mx.example", n, Ok(answer(true, vec![t(0, 0, 1)])));
        assert_eq!(r, Ok(DaneLookup::Unusable));
        // Unsigned answers never count.
        let (r, _) = classify("mx.example", n, Ok(answer(false, vec![t(3, 1, 1)])));
        assert_eq!(r, Ok(DaneLookup::NotFound));
    }

    #[test]
    fn fingerprints_become_private_use_records() {
        let r = fingerprint_records(&[vec![0xaa]]);
        assert_eq!(
            r,
            vec![
                TlsaRecord::new(3, 0, 255, vec![0xaa]),
                TlsaRecord::new(3, 1, 255, vec![0xaa])
            ]
        );
    }

    #[test]
    fn trust_anchor_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ta.pem");
        let path = p.to_str().unwrap();
        // No anchors: the policy fails, with nothing more to say (as in Postfix).
        std::fs::write(&p, "nothing here\n").unwrap();
        assert_eq!(load_trust_anchors(path, false), Err(Vec::new()));
        assert_eq!(
            load_trust_anchors("/nonexistent/ta.pem", false),
            Err(vec![
                "error opening trust anchor file: /nonexistent/ta.pem: No such file or directory"
                    .to_string()
            ])
        );
        // Anchors are taken as they are (OpenSSL judges them when they are used): each
        // gives a TA and an EE record; other PEM objects are skipped.
        std::fs::write(
            &p,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\
             -----BEGIN DH PARAMETERS-----\nAAAA\n-----END DH PARAMETERS-----\n\
             -----BEGIN PUBLIC KEY-----\nAQID\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        assert_eq!(
            load_trust_anchors(path, false),
            Ok(vec![
                TlsaRecord::new(2, 0, 0, vec![0, 0, 0]),
                TlsaRecord::new(3, 0, 0, vec![0, 0, 0]),
                TlsaRecord::new(2, 1, 0, vec![1, 2, 3]),
                TlsaRecord::new(3, 1, 0, vec![1, 2, 3]),
            ])
        );
        // Broken base64 fails the file with OpenSSL's reasons.
        std::fs::write(
            &p,
            "-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_trust_anchors(path, false).unwrap_err();
        assert!(
            !e.is_empty() && e.iter().all(|l| l.starts_with("TLS library problem: ")),
            "{e:?}"
        );
    }
}
