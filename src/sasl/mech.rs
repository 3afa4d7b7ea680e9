//! Client SASL mechanisms (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256), their
//! security properties, the security-option parser and the mechanism chooser.
//!
//! The chooser stands in for Cyrus SASL's `sasl_client_start`: among the mechanisms the
//! server offered (after smtp_sasl_mechanism_filter) it keeps those whose properties cover
//! every flag in the active security options, then takes the strongest. Our order, best
//! first: SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN. Cyrus ranks a mechanism above
//! another when its property set is a superset of the other's, which puts SCRAM (mutual
//! authentication, no active attack, no plaintext) above CRAM-MD5 (no plaintext) above the
//! password-passing pair. Where Cyrus' outcome depends on plugin load order (SHA-256 vs
//! SHA-1, PLAIN vs LOGIN) we pick the stronger hash and the single-round-trip, standard
//! PLAIN.
//!
//! Mechanism steps return Cyrus' error strings (`sasl_errstring`) because Postfix puts
//! those in its "cannot authenticate to server" texts. Nothing here logs; errors never
//! contain credentials.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};

/// Cyrus' texts for the SASL result codes we can produce.
pub const ERR_NOMECH: &str = "no mechanism available";
pub const ERR_BADPROT: &str = "bad protocol / cancel";
pub const ERR_BADAUTH: &str = "authentication failure";

/// Security properties, with Cyrus' bit meanings (a mechanism "has" a flag when it
/// provides that protection; security options list the protections required).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecFlags(pub u32);

impl SecFlags {
    pub const NOPLAINTEXT: SecFlags = SecFlags(0x0001);
    pub const NOACTIVE: SecFlags = SecFlags(0x0002);
    pub const NODICTIONARY: SecFlags = SecFlags(0x0004);
    pub const FORWARD_SECRECY: SecFlags = SecFlags(0x0008);
    pub const NOANONYMOUS: SecFlags = SecFlags(0x0010);
    pub const MUTUAL_AUTH: SecFlags = SecFlags(0x0040);

    /// Option names as smtp_sasl_security_options spells them.
    const NAMES: [(&'static str, SecFlags); 6] = [
        ("noplaintext", SecFlags::NOPLAINTEXT),
        ("noactive", SecFlags::NOACTIVE),
        ("nodictionary", SecFlags::NODICTIONARY),
        ("forward_secrecy", SecFlags::FORWARD_SECRECY),
        ("noanonymous", SecFlags::NOANONYMOUS),
        ("mutual_auth", SecFlags::MUTUAL_AUTH),
    ];

    pub fn contains(self, other: SecFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: SecFlags) -> SecFlags {
        SecFlags(self.0 | other.0)
    }

    /// Parse a security-option list (comma/blank separated, names matched exactly, as
    /// Postfix does). An empty list requires nothing. An unknown name, like Postfix, makes
    /// the whole list invalid: the error carries the two warnings Postfix logs before
    /// giving up on the SASL client.
    pub fn parse(list: &str) -> Result<SecFlags, String> {
        let mut flags = SecFlags::default();
        let mut any = false;
        for word in list
            .split([',', ' ', '\t', '\r', '\n'])
            .filter(|w| !w.is_empty())
        {
            any = true;
            match SecFlags::NAMES.iter().find(|(n, _)| *n == word) {
                Some((_, f)) => flags = flags.union(*f),
                None => {
                    return Err(format!(
                        "unknown SASL security options value \"{word}\" in \"{list}\"; \
                         bad per-session SASL security properties"
                    ));
                }
            }
        }
        if any && flags.0 == 0 {
            return Err("bad per-session SASL security properties".to_string());
        }
        Ok(flags)
    }
}

/// The mechanisms we implement, in our order of preference (best first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    ScramSha256,
    ScramSha1,
    CramMd5,
    Plain,
    Login,
}

impl Mech {
    pub const ALL: [Mech; 5] = [
        Mech::ScramSha256,
        Mech::ScramSha1,
        Mech::CramMd5,
        Mech::Plain,
        Mech::Login,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mech::ScramSha256 => "SCRAM-SHA-256",
            Mech::ScramSha1 => "SCRAM-SHA-1",
            Mech::CramMd5 => "CRAM-MD5",
            Mech::Plain => "PLAIN",
            Mech::Login => "LOGIN",
        }
    }

    /// Case-insensitive, as SASL mechanism names are.
    pub fn from_name(name: &str) -> Option<Mech> {
        Mech::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The protections each mechanism gives, as the Cyrus plugins declare them.
    pub fn flags(self) -> SecFlags {
        match self {
            Mech::ScramSha256 | Mech::ScramSha1 => SecFlags::NOPLAINTEXT
                .union(SecFlags::NOACTIVE)
                .union(SecFlags::NOANONYMOUS)
                .union(SecFlags::MUTUAL_AUTH),
            Mech::CramMd5 => SecFlags::NOPLAINTEXT.union(SecFlags::NOANONYMOUS),
            Mech::Plain | Mech::Login => SecFlags::NOANONYMOUS,
        }
    }

    /// True when the password itself crosses the wire (what "noplaintext" forbids).
    pub fn is_plaintext(self) -> bool {
        !self.flags().contains(SecFlags::NOPLAINTEXT)
    }
}

/// Choose the mechanism to use among those offered, given the required protections.
/// None: Cyrus' "no mechanism available".
pub fn choose(offered: &[String], required: SecFlags) -> Option<Mech> {
    Mech::ALL.into_iter().find(|m| {
        m.flags().contains(required) && offered.iter().any(|o| o.eq_ignore_ascii_case(m.name()))
    })
}

/// Apply smtp_sasl_mechanism_filter (a Postfix string list) to the offered mechanisms.
///
/// Elements are mechanism names (case-insensitive), `!name` for an explicit refusal, or
/// `type:table`, which `table(table_name, mechanism)` decides (Ok(true): listed). The first
/// element that matches decides; a negated match or no match drops the mechanism. An empty
/// filter keeps everything. `/file/name` elements must be expanded by the caller. A table
/// error is fatal in Postfix; it comes back as Err.
pub fn filter_mechanisms(
    offered: &[String],
    filter: &str,
    table: &dyn Fn(&str, &str) -> Result<bool, String>,
) -> Result<Vec<String>, String> {
    let patterns: Vec<&str> = filter
        .split([',', ' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
        .collect();
    if patterns.is_empty() {
        return Ok(offered.to_vec());
    }
    let mut kept = Vec::new();
    'mech: for mech in offered {
        for pat in &patterns {
            let (negated, pat) = match pat.strip_prefix('!') {
                Some(p) => (true, p.trim_start()),
                None => (false, *pat),
            };
            let hit = if pat.contains(':') {
                table(pat, mech)
                    .map_err(|e| format!("SASL mechanism filter failed for: '{mech}': {e}"))?
            } else {
                pat.eq_ignore_ascii_case(mech)
            };
            if hit {
                if !negated {
                    kept.push(mech.clone());
                }
                continue 'mech;
            }
        }
    }
    Ok(kept)
}

/// A SASL username and password, as found in smtp_sasl_password_maps. Debug output never
/// shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// A table value "username:password"; the password is everything after the first ':'
    /// (so it may contain ':'), and empty when there is none.
    pub fn parse(value: &str) -> Credentials {
        match value.split_once(':') {
            Some((u, p)) => Credentials {
                username: u.to_string(),
                password: p.to_string(),
            },
            None => Credentials {
                username: value.to_string(),
                password: String::new(),
            },
        }
    }
}

/// The client side of one mechanism run.
pub struct Client {
    mech: Mech,
    state: State,
}

enum State {
    Plain,
    Login {
        step: u8,
        user: String,
        pass: String,
    },
    Cram {
        user: String,
        pass: String,
    },
    ScramFirst(ScramFirst),
    ScramFinal {
        server_signature: Vec<u8>,
    },
    Done,
    Failed,
}

struct ScramFirst {
    hash: Hash,
    password: String,
    nonce: String,
    gs2: String,
    client_first_bare: String,
}

impl Client {
    /// Start a mechanism; returns the client and its initial response (None: the
    /// mechanism waits for a challenge). `authzid`: send_cyrus_sasl_authzid — the
    /// authorization id is then the username, otherwise empty.
    pub fn start(mech: Mech, creds: &Credentials, authzid: bool) -> (Client, Option<Vec<u8>>) {
        let user = creds.username.clone();
        let pass = creds.password.clone();
        let (state, initial) = match mech {
            Mech::Plain => {
                let mut v = Vec::new();
                if authzid {
                    v.extend_from_slice(user.as_bytes());
                }
                v.push(0);
                v.extend_from_slice(user.as_bytes());
                v.push(0);
                v.extend_from_slice(pass.as_bytes());
                (State::Plain, Some(v))
            }
            Mech::Login => (
                State::Login {
                    step: 0,
                    user,
                    pass,
                },
                None,
            ),
            Mech::CramMd5 => (State::Cram { user, pass }, None),
            Mech::ScramSha1 | Mech::ScramSha256 => {
                let hash = if mech == Mech::ScramSha1 {
                    Hash::Sha1
                } else {
                    Hash::Sha256
                };
                let (first, msg) = scram_client_first(hash, &user, &pass, authzid, &new_nonce());
                (State::ScramFirst(first), Some(msg.into_bytes()))
            }
        };
        (Client { mech, state }, initial)
    }

    pub fn mech(&self) -> Mech {
        self.mech
    }

    /// Answer one (decoded) server challenge.
    pub fn step(&mut self, challenge: &[u8]) -> Result<Vec<u8>, &'static str> {
        let r = self.step_inner(challenge);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    fn step_inner(&mut self, challenge: &[u8]) -> Result<Vec<u8>, &'static str> {
        match std::mem::replace(&mut self.state, State::Done) {
            // PLAIN says everything up front; a further challenge is a protocol error.
            State::Plain | State::Done | State::Failed => Err(ERR_BADPROT),
            // The LOGIN prompts ("Username:", "Password:") are free text; like Cyrus we
            // answer by position, not by what they say.
            State::Login { step, user, pass } => match step {
                0 => {
                    let out = user.clone().into_bytes();
                    self.state = State::Login {
                        step: 1,
                        user,
                        pass,
                    };
                    Ok(out)
                }
                1 => Ok(pass.into_bytes()),
                _ => Err(ERR_BADPROT),
            },
            State::Cram { user, pass } => Ok(cram_md5_response(&user, &pass, challenge)),
            State::ScramFirst(first) => {
                let (msg, sig) = scram_client_final(&first, challenge)?;
                self.state = State::ScramFinal {
                    server_signature: sig,
                };
                Ok(msg.into_bytes())
            }
            State::ScramFinal { server_signature } => {
                scram_verify_server_final(&server_signature, challenge)?;
                Ok(Vec::new())
            }
        }
    }

    /// True when the mechanism has finished and verified everything it must: SCRAM has
    /// checked the server signature. A server's success reply before that is not trusted.
    pub fn complete(&self) -> bool {
        match &self.state {
            State::ScramFirst(_) | State::ScramFinal { .. } | State::Failed => false,
            State::Done => true,
            State::Plain | State::Login { .. } | State::Cram { .. } => true,
        }
    }
}

/// CRAM-MD5 (RFC 2195): "user hex(HMAC-MD5(password, challenge))".
pub fn cram_md5_response(user: &str, pass: &str, challenge: &[u8]) -> Vec<u8> {
    let mac = hmac_md5(pass.as_bytes(), challenge);
    let mut out = user.as_bytes().to_vec();
    out.push(b' ');
    for b in mac {
        out.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    out
}

fn hmac_md5(key: &[u8], data: &[u8]) -> Vec<u8> {
    match hmac::Hmac::<md5::Md5>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => Vec::new(),
    }
}

/// The hash behind a SCRAM variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Hash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
        }
    }

    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            match <M as KeyInit>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }
        match self {
            Hash::Sha1 => run::<hmac::Hmac<sha1::Sha1>>(key, data),
            Hash::Sha256 => run::<hmac::Hmac<sha2::Sha256>>(key, data),
        }
    }

    /// RFC 5802's Hi(): PBKDF2 with HMAC and a single output block.
    pub fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut block = salt.to_vec();
        block.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac(password, &block);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &u);
            for (o, x) in out.iter_mut().zip(&u) {
                *o ^= x;
            }
        }
        out
    }
}

/// The keys both SCRAM sides derive from the password.
pub struct ScramKeys {
    pub client_key: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

pub fn scram_keys(hash: Hash, password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
    let salted = hash.hi(password.as_bytes(), salt, iterations);
    let client_key = hash.hmac(&salted, b"Client Key");
    ScramKeys {
        stored_key: hash.digest(&client_key),
        server_key: hash.hmac(&salted, b"Server Key"),
        client_key,
    }
}

/// RFC 5802 saslname: ',' and '=' are escaped.
pub fn scram_escape(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// Inverse of `scram_escape`; None for a malformed escape.
pub fn scram_unescape(name: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Largest iteration count we compute; a hostile server could otherwise make us spin.
const SCRAM_MAX_ITERATIONS: u32 = 1_000_000;

fn scram_client_first(
    hash: Hash,
    user: &str,
    pass: &str,
    authzid: bool,
    nonce: &str,
) -> (ScramFirst, String) {
    // No channel binding: "n" says we neither support nor use it.
    let gs2 = if authzid && !user.is_empty() {
        format!("n,a={},", scram_escape(user))
    } else {
        "n,,".to_string()
    };
    let bare = format!("n={},r={nonce}", scram_escape(user));
    let msg = format!("{gs2}{bare}");
    (
        ScramFirst {
            hash,
            password: pass.to_string(),
            nonce: nonce.to_string(),
            gs2,
            client_first_bare: bare,
        },
        msg,
    )
}

/// Split "a=x,b=y" into attributes; values may contain '='.
pub fn scram_attrs(msg: &str) -> Vec<(char, &str)> {
    msg.split(',')
        .filter_map(|f| {
            let mut c = f.chars();
            let k = c.next()?;
            f.get(1..)?.strip_prefix('=').map(|v| (k, v))
        })
        .collect()
}

fn scram_client_final(
    first: &ScramFirst,
    server_first: &[u8],
) -> Result<(String, Vec<u8>), &'static str> {
    let sf = std::str::from_utf8(server_first).map_err(|_| ERR_BADPROT)?;
    let attrs = scram_attrs(sf);
    // A mandatory extension we do not know ("m=") must fail the exchange.
    if attrs.first().is_some_and(|(k, _)| *k == 'm') {
        return Err(ERR_BADPROT);
    }
    let get = |k: char| attrs.iter().find(|(a, _)| *a == k).map(|(_, v)| *v);
    let nonce = get('r').ok_or(ERR_BADPROT)?;
    let salt = get('s')
        .and_then(|s| B64.decode(s).ok())
        .ok_or(ERR_BADPROT)?;
    let iterations: u32 = get('i')
        .and_then(|i| i.parse().ok())
        .filter(|i| (1..=SCRAM_MAX_ITERATIONS).contains(i))
        .ok_or(ERR_BADPROT)?;
    // The server must extend our nonce, not replace it.
    if !nonce.starts_with(&first.nonce) || nonce.len() <= first.nonce.len() {
        return Err(ERR_BADPROT);
    }
    let keys = scram_keys(first.hash, &first.password, &salt, iterations);
    let without_proof = format!("c={},r={nonce}", B64.encode(first.gs2.as_bytes()));
    let auth_message = format!("{},{sf},{without_proof}", first.client_first_bare);
    let sig = first.hash.hmac(&keys.stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = keys
        .client_key
        .iter()
        .zip(&sig)
        .map(|(a, b)| a ^ b)
        .collect();
    let server_signature = first.hash.hmac(&keys.server_key, auth_message.as_bytes());
    Ok((
        format!("{without_proof},p={}", B64.encode(proof)),
        server_signature,
    ))
}

fn scram_verify_server_final(expected: &[u8], server_final: &[u8]) -> Result<(), &'static str> {
    let sf = std::str::from_utf8(server_final).map_err(|_| ERR_BADPROT)?;
    let attrs = scram_attrs(sf);
    match attrs.first() {
        Some(('v', v)) => match B64.decode(v) {
            Ok(got) if ct_eq(&got, expected) => Ok(()),
            // A wrong server signature means the server does not know the password:
            // the same failure Cyrus reports.
            _ => Err(ERR_BADAUTH),
        },
        Some(('e', _)) => Err(ERR_BADAUTH),
        _ => Err(ERR_BADPROT),
    }
}

/// Constant-time comparison, so a verifier leaks nothing through timing.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Random bytes from the kernel; falls back to time and counter mixing only if getrandom
/// is unavailable (nonces must be unique, and secrecy is a bonus for SCRAM's client nonce).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let r = unsafe {
            libc::getrandom(
                buf[filled..].as_mut_ptr().cast::<libc::c_void>(),
                n - filled,
                0,
            )
        };
        if r <= 0 {
            break;
        }
        filled += r as usize;
    }
    if filled < n {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seed = format!(
            "{:?}{}{}",
            std::time::SystemTime::now(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let d = Hash::Sha256.digest(seed.as_bytes());
        for (i, b) in buf.iter_mut().enumerate().skip(filled) {
            *b = d[i % d.len()];
        }
    }
    buf
}

fn new_nonce() -> String {
    B64.encode(random_bytes(18))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    fn offered(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cram_md5_rfc2195() {
        let r = cram_md5_response(
            "tim",
            "tanstaaftanstaaf",
            b"<1896.697170952@postoffice.reston.mci.net>",
        );
        assert_eq!(r, b"tim b913a602c7eda7a495b4e6e7334d3890");
        let (mut c, ir) = Client::start(Mech::CramMd5, &creds("tim", "tanstaaftanstaaf"), false);
        assert!(ir.is_none());
        assert_eq!(
            c.step(b"<1896.697170952@postoffice.reston.mci.net>"),
            Ok(b"tim b913a602c7eda7a495b4e6e7334d3890".to_vec())
        );
    }

    fn scram_run(hash: Hash, nonce: &str, server_first: &str, final_expect: &str, v: &str) {
        let (first, msg) = scram_client_first(hash, "user", "pencil", false, nonce);
        assert_eq!(msg, format!("n,,n=user,r={nonce}"));
        let mut c = Client {
            mech: if hash == Hash::Sha1 {
                Mech::ScramSha1
            } else {
                Mech::ScramSha256
            },
            state: State::ScramFirst(first),
        };
        assert!(!c.complete());
        let out = c.step(server_first.as_bytes());
        assert_eq!(out, Ok(final_expect.as_bytes().to_vec()));
        assert!(!c.complete());
        assert_eq!(c.step(v.as_bytes()), Ok(Vec::new()));
        assert!(c.complete());
    }

    #[test]
    fn scram_sha1_rfc5802() {
        scram_run(
            Hash::Sha1,
            "fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        );
    }

    #[test]
    fn scram_sha256_rfc7677() {
        scram_run(
            Hash::Sha256,
            "rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        );
    }

    #[test]
    fn scram_bad_server_signature_fails() {
        let (first, _) = scram_client_first(
            Hash::Sha1,
            "user",
            "pencil",
            false,
            "fyko+d2lbbFgONRv9qkxdawL",
        );
        let mut c = Client {
            mech: Mech::ScramSha1,
            state: State::ScramFirst(first),
        };
        assert!(
            c.step(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
                .is_ok()
        );
        assert_eq!(c.step(b"v=AAAApqV8S7suAoZWja4dJRkFsKQ="), Err(ERR_BADAUTH));
        assert!(!c.complete());
    }

    #[test]
    fn scram_rejects_bad_server_first() {
        for sf in [
            "r=other,s=QSXCR+Q6sek8bf92,i=4096",
            "r=abc,s=QSXCR+Q6sek8bf92,i=4096",
            "r=abcX,s=QSXCR+Q6sek8bf92,i=0",
            "r=abcX,s=QSXCR+Q6sek8bf92,i=99999999",
            "r=abcX,s=!!,i=10",
            "m=x,r=abcX,s=QSXCR+Q6sek8bf92,i=10",
            "",
        ] {
            let (first, _) = scram_client_first(Hash::Sha256, "u", "p", false, "abc");
            let mut c = Client {
                mech: Mech::ScramSha256,
                state: State::ScramFirst(first),
            };
            assert_eq!(c.step(sf.as_bytes()), Err(ERR_BADPROT), "{sf}");
        }
    }

    #[test]
    fn scram_authzid_and_escaping() {
        let (_, msg) = scram_client_first(Hash::Sha256, "a,b=c", "p", true, "N");
        assert_eq!(msg, "n,a=a=2Cb=3Dc,n=a=2Cb=3Dc,r=N");
        assert_eq!(scram_unescape("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(scram_unescape("a=2"), None);
        assert_eq!(scram_unescape("a=41"), None);
    }

    #[test]
    fn plain_authzid_semantics() {
        let c = creds("joe", "pa:ss");
        let (_, ir) = Client::start(Mech::Plain, &c, false);
        assert_eq!(ir, Some(b"\0joe\0pa:ss".to_vec()));
        let (mut cl, ir) = Client::start(Mech::Plain, &c, true);
        assert_eq!(ir, Some(b"joe\0joe\0pa:ss".to_vec()));
        assert_eq!(cl.step(b""), Err(ERR_BADPROT));
    }

    #[test]
    fn login_answers_by_position() {
        let (mut c, ir) = Client::start(Mech::Login, &creds("joe", "secret"), false);
        assert!(ir.is_none());
        assert_eq!(c.step(b"Username:"), Ok(b"joe".to_vec()));
        assert_eq!(c.step(b"whatever"), Ok(b"secret".to_vec()));
        assert_eq!(c.step(b"more?"), Err(ERR_BADPROT));
    }

    #[test]
    fn security_options() {
        let f = SecFlags::parse("noplaintext, noanonymous").unwrap();
        assert_eq!(f, SecFlags::NOPLAINTEXT.union(SecFlags::NOANONYMOUS));
        assert_eq!(SecFlags::parse("").unwrap(), SecFlags::default());
        assert!(SecFlags::parse("noplaintext, bogus").is_err());
        // Postfix matches option names case-sensitively.
        assert!(SecFlags::parse("NOPLAINTEXT").is_err());
    }

    #[test]
    fn chooser_respects_options() {
        let all = offered(&["LOGIN", "PLAIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]);
        let none = SecFlags::default();
        let nopt = SecFlags::parse("noplaintext, noanonymous").unwrap();
        assert_eq!(choose(&all, none), Some(Mech::ScramSha256));
        assert_eq!(
            choose(&offered(&["login", "plain"]), none),
            Some(Mech::Plain)
        );
        assert_eq!(choose(&offered(&["LOGIN"]), none), Some(Mech::Login));
        assert_eq!(choose(&offered(&["PLAIN", "LOGIN"]), nopt), None);
        assert_eq!(
            choose(&offered(&["PLAIN", "CRAM-MD5"]), nopt),
            Some(Mech::CramMd5)
        );
        let mutual = SecFlags::parse("mutual_auth").unwrap();
        assert_eq!(
            choose(&offered(&["CRAM-MD5", "SCRAM-SHA-1"]), mutual),
            Some(Mech::ScramSha1)
        );
        assert_eq!(choose(&offered(&["CRAM-MD5"]), mutual), None);
        let nodict = SecFlags::parse("nodictionary").unwrap();
        assert_eq!(choose(&all, nodict), None);
        assert_eq!(choose(&offered(&["GSSAPI", "NTLM"]), none), None);
        // noplaintext never lets a password-passing mechanism through.
        for m in Mech::ALL {
            if m.is_plaintext() {
                assert!(!m.flags().contains(SecFlags::NOPLAINTEXT));
                assert_ne!(choose(&offered(&[m.name()]), nopt), Some(m));
            }
        }
    }

    #[test]
    fn mechanism_filter() {
        let off = offered(&["PLAIN", "LOGIN", "CRAM-MD5", "GSSAPI"]);
        let no_table = |_: &str, _: &str| -> Result<bool, String> { Err("no tables".into()) };
        assert_eq!(filter_mechanisms(&off, "", &no_table).unwrap(), off);
        assert_eq!(
            filter_mechanisms(&off, "plain, cram-md5", &no_table).unwrap(),
            offered(&["PLAIN", "CRAM-MD5"])
        );
        assert_eq!(
            filter_mechanisms(&off, "!gssapi, !login, static:all", &|t: &str, _: &str| {
                Ok(t == "static:all")
            })
            .unwrap(),
            offered(&["PLAIN", "CRAM-MD5"])
        );
        assert!(filter_mechanisms(&off, "hash:/x", &no_table).is_err());
        let tbl = |t: &str, m: &str| -> Result<bool, String> { Ok(t == "hash:/m" && m == "LOGIN") };
        assert_eq!(
            filter_mechanisms(&off, "hash:/m", &tbl).unwrap(),
            offered(&["LOGIN"])
        );
    }

    #[test]
    fn credentials_parse_and_debug() {
        let c = Credentials::parse("user@example.com:pa:ss:word");
        assert_eq!(c.username, "user@example.com");
        assert_eq!(c.password, "pa:ss:word");
        assert_eq!(Credentials::parse("lonely").password, "");
        let shown = format!("{c:?}");
        assert!(!shown.contains("pa:ss"), "{shown}");
    }

    #[test]
    fn hi_and_random() {
        // RFC 6070 PBKDF2-HMAC-SHA1 vector (c=2).
        let hi = Hash::Sha1.hi(b"password", b"salt", 2);
        assert_eq!(
            hi.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"
        );
        assert_ne!(random_bytes(16), random_bytes(16));
        assert_ne!(new_nonce(), new_nonce());
    }
}
