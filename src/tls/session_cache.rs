//! Client TLS session resumption: where sessions are kept (a [`SessionStore`]: Postfix's
//! tlsmgr(8) under master, memory in the process otherwise) and under which name.
//!
//! The name is Postfix's: the caller's server identity (service, nexthop, host, address)
//! plus a SHA-256 over everything that must match for a session to be reused safely (the
//! server's EHLO name, the OpenSSL version, protocols, cipher list, whether trust set-up
//! failed, the TLSA/fingerprint/trust-anchor records and the SNI name at levels that
//! authenticate). With the same names, Postfix's smtp and Outpost share one tlsmgr cache.

use super::dane::TlsaRecord;
use super::policy::Level;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A session cache: DER-encoded sessions by name. Failures are not errors for the caller:
/// caching only saves handshakes.
pub trait SessionStore: Send {
    fn lookup(&mut self, id: &str) -> Option<Vec<u8>>;
    fn update(&mut self, id: &str, session: &[u8]);
    fn delete(&mut self, id: &str);
}

/// Sessions kept in this process for `timeout` (the command line, or no tlsmgr).
pub struct MemoryStore {
    timeout: Duration,
    map: HashMap<String, (Vec<u8>, Instant)>,
}

impl MemoryStore {
    pub fn new(timeout: Duration) -> MemoryStore {
        MemoryStore {
            timeout,
            map: HashMap::new(),
        }
    }
}

impl SessionStore for MemoryStore {
    fn lookup(&mut self, id: &str) -> Option<Vec<u8>> {
        match self.map.get(id) {
            Some((s, t)) if t.elapsed() < self.timeout => Some(s.clone()),
            Some(_) => {
                self.map.remove(id);
                None
            }
            None => None,
        }
    }

    fn update(&mut self, id: &str, session: &[u8]) {
        // Bound the memory a long-lived process can use for sessions.
        if self.map.len() >= 1000 {
            let timeout = self.timeout;
            self.map.retain(|_, (_, t)| t.elapsed() < timeout);
            if self.map.len() >= 1000 {
                self.map.clear();
            }
        }
        self.map
            .insert(id.to_string(), (session.to_vec(), Instant::now()));
    }

    fn delete(&mut self, id: &str) {
        self.map.remove(id);
    }
}

/// A session cache for the TLS engine: the store, the cache type for log lines
/// (`smtp` / `lmtp`) and the session lifetime.
pub struct CacheSetup {
    pub store: Box<dyn SessionStore>,
    pub cache_type: String,
    pub timeout: Duration,
}

impl CacheSetup {
    /// Sessions kept in this process for `timeout`; none when it is zero (no
    /// smtp_tls_session_cache_database).
    pub fn in_process(timeout: Duration, cache_type: &str) -> Option<CacheSetup> {
        (!timeout.is_zero()).then(|| CacheSetup {
            store: Box::new(MemoryStore::new(timeout)),
            cache_type: cache_type.into(),
            timeout,
        })
    }
}

/// The first part of a session name, as Postfix's smtp builds it: service, nexthop as
/// given, server host name and address, each followed by `&` (a value holding `&` is
/// base64-encoded; an empty one is left empty).
pub fn serverid_prefix(service: &str, nexthop: &str, host: &str, addr: &str) -> String {
    let mut out = String::new();
    for v in [service, nexthop, host, addr] {
        if v.contains('&') {
            out.push_str(&crate::postfix::attr::base64_encode(v.as_bytes()));
        } else {
            out.push_str(v);
        }
        out.push('&');
    }
    out
}

/// What the session name is salted with (Postfix's tls_serverid_digest inputs).
pub struct DigestInput<'a> {
    /// The server's name from its EHLO reply ("" in wrapper mode).
    pub helo: &'a str,
    pub protocols: &'a str,
    pub cipher_list: &'a str,
    pub must_fail: bool,
    pub level: Level,
    pub tlsa: &'a [TlsaRecord],
    pub sni: Option<&'a str>,
}

/// `prefix` + "&" + upper-case hex SHA-256 of the inputs, hashed as Postfix does: strings
/// with their NUL, numbers in the machine's C layout (long, int, uint8, uint16).
pub fn serverid(prefix: &str, d: &DigestInput<'_>) -> String {
    let mut h = openssl::sha::Sha256::new();
    let string = |h: &mut openssl::sha::Sha256, s: &str| {
        h.update(s.as_bytes());
        h.update(&[0]);
    };
    string(&mut h, d.helo);
    let version: libc::c_long = openssl::version::number() as libc::c_long;
    h.update(&version.to_ne_bytes());
    string(&mut h, d.protocols);
    string(&mut h, d.cipher_list);
    h.update(&libc::c_int::from(d.must_fail).to_ne_bytes());
    // Levels that authenticate the server (above "encrypt") keep their trust records and
    // SNI name apart.
    let authenticating = d.level > Level::Encrypt;
    if authenticating && !d.tlsa.is_empty() {
        let mut recs: Vec<&TlsaRecord> = d.tlsa.iter().collect();
        recs.sort_by(|a, b| {
            (a.usage, a.selector, a.mtype, a.data.len(), &a.data).cmp(&(
                b.usage,
                b.selector,
                b.mtype,
                b.data.len(),
                &b.data,
            ))
        });
        let n = libc::c_int::try_from(recs.len()).unwrap_or(libc::c_int::MAX);
        h.update(&n.to_ne_bytes());
        for r in recs {
            h.update(&[r.usage, r.selector, r.mtype]);
            let len = u16::try_from(r.data.len()).unwrap_or(u16::MAX);
            h.update(&len.to_ne_bytes());
            h.update(&r.data);
        }
    } else {
        // No records: a count of zero.
        h.update(&(0 as libc::c_int).to_ne_bytes());
    }
    match d.sni {
        Some(s) if authenticating => string(&mut h, s),
        _ => string(&mut h, ""),
    }
    let md = h.finish();
    let hex: String = md.iter().map(|b| format!("{b:02X}")).collect();
    format!("{prefix}&{hex}")
}
