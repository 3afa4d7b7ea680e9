//! The TLS policy for one destination and server, resolved as smtp_tls_policy.c does.
//!
//! The global level comes from smtp_tls_security_level, or, when that is empty, from the
//! obsolete smtp_enforce_tls / smtp_tls_enforce_peername / smtp_use_tls. A table entry
//! then overrides it: smtp_tls_policy_maps (looked up by next-hop destination, then by
//! its parent domains with a leading dot) or, only when there is no policy map, the
//! obsolete smtp_tls_per_site (NONE, MAY, MUST_NOPEERMATCH, MUST; looked up by next-hop
//! and by server hostname, the stronger/more specific one winning). Any error that could
//! weaken security makes the policy invalid, which defers delivery with 4.7.5 "client TLS
//! configuration problem" (4.3.0 "Temporary lookup error" for a per-site table failure).
//!
//! DANE levels need DNS facts about the server; `DaneInput` brings them so that the
//! level can be downgraded or failed exactly as Postfix does before the remaining
//! attributes (protocols, ciphers, match names) are chosen for the final level.

use super::dane::{self, DaneLookup, TlsaRecord};
use super::fprint;
use super::grade::CipherLists;
use crate::config::Config;
use std::time::Duration;

/// TLS security levels, in Postfix's order (a larger level is stricter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    None,
    May,
    Encrypt,
    Fingerprint,
    /// DANE for a server whose MX record was not DNSSEC-signed: names are still matched,
    /// but the connection is never logged as "Verified". Not selectable by users.
    HalfDane,
    Dane,
    DaneOnly,
    Verify,
    Secure,
}

impl Level {
    /// A user-selectable level name, any case.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "none" => Level::None,
            "may" => Level::May,
            "encrypt" => Level::Encrypt,
            "fingerprint" => Level::Fingerprint,
            "dane" => Level::Dane,
            "dane-only" => Level::DaneOnly,
            "verify" => Level::Verify,
            "secure" => Level::Secure,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::May => "may",
            Level::Encrypt => "encrypt",
            Level::Fingerprint => "fingerprint",
            Level::HalfDane => "halfdane",
            Level::Dane => "dane",
            Level::DaneOnly => "dane-only",
            Level::Verify => "verify",
            Level::Secure => "secure",
        }
    }

    /// TLS is mandatory: no plaintext delivery ("TLS is required, ...").
    pub fn required(self) -> bool {
        self > Level::May
    }

    /// The server certificate must match (fingerprint, DANE, or CA plus name).
    pub fn must_match(self) -> bool {
        self > Level::Encrypt
    }

    /// Trust comes from the CA (PKIX) chain.
    pub fn must_pkix(self) -> bool {
        self >= Level::Verify
    }

    pub fn dane_based(self) -> bool {
        matches!(self, Level::HalfDane | Level::Dane | Level::DaneOnly)
    }

    /// Never logged as "Verified", even when matched.
    pub fn never_secured(self) -> bool {
        self == Level::HalfDane
    }
}

/// Why a policy cannot be used: the delivery is deferred with this status and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Enhanced status code (4.7.5, or 4.3.0 for a per-site table lookup failure).
    pub status: &'static str,
    /// Text for the DSN and the log ("client TLS configuration problem", ...).
    pub reason: String,
}

impl PolicyError {
    fn config() -> PolicyError {
        PolicyError {
            status: "4.7.5",
            reason: "client TLS configuration problem".into(),
        }
    }
}

/// The resolved policy for one (destination, server) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub level: Level,
    /// Protocol list (the `protocols` attribute, else smtp_tls_protocols at "may" and
    /// smtp_tls_mandatory_protocols above).
    pub protocols: String,
    /// Cipher grade (the `ciphers` attribute, else smtp_tls_ciphers / _mandatory_ciphers).
    pub grade: String,
    /// Ciphers to exclude, space separated, including the level's implied exclusion.
    pub exclusions: String,
    /// Names to match at verify/secure and DANE levels: `hostname`, `nexthop`,
    /// `dot-nexthop`, a literal name, or `.domain` for its subdomains.
    pub match_names: Vec<String>,
    /// TLSA data: DNS records for DANE, fingerprints, or trust anchors (tafile).
    pub tlsa: Vec<TlsaRecord>,
    /// The TLSA base domain at DANE levels (also the SNI name there).
    pub dane_base: Option<String>,
    /// SNI: empty (none), `hostname`, `nexthop` or a literal name.
    pub sni: String,
    /// smtp_tls_connection_reuse or the `connection_reuse` attribute.
    pub conn_reuse: bool,
}

impl Policy {
    fn empty(level: Level, conn_reuse: bool) -> Policy {
        Policy {
            level,
            protocols: String::new(),
            grade: String::new(),
            exclusions: String::new(),
            match_names: Vec::new(),
            tlsa: Vec::new(),
            dane_base: None,
            sni: String::new(),
            conn_reuse,
        }
    }
}

/// The outcome of policy resolution, with Postfix's warnings to log (msg_warn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub result: Result<Policy, PolicyError>,
    pub warnings: Vec<String>,
}

/// A table lookup: `Ok(Some(value))`, `Ok(None)` for no match, `Err` for a table error.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Result<Option<String>, String>;

/// The tables in use; `policy_title` / `per_site_title` name them in warnings (Postfix
/// uses the parameter name, e.g. "smtp_tls_policy_maps").
#[derive(Clone, Copy, Default)]
pub struct Tables<'a> {
    pub policy: Option<Lookup<'a>>,
    pub policy_title: &'a str,
    pub per_site: Option<Lookup<'a>>,
    pub per_site_title: &'a str,
}

/// DNS facts for the DANE levels.
pub struct DaneInput<'a> {
    /// TCP port of the server; `None` for a UNIX-domain socket.
    pub port: Option<u16>,
    /// DNS lookups are enabled and smtp_dns_support_level = dnssec.
    pub dnssec_enabled: bool,
    /// SMTP with ignore_mx_lookup_error = yes.
    pub mx_errors_ignored: bool,
    /// The resolver would append or search domains (RES_DEFNAMES / RES_DNSRCH).
    pub resolver_search: bool,
    /// The MX record that led to this server: (query name, name after CNAMEs, signed).
    pub mx: Option<(String, String, bool)>,
    /// The TLSA lookup for this server (see `dane::lookup`).
    pub tlsa: &'a dyn Fn() -> (Result<DaneLookup, String>, Vec<String>),
}

/// Every main.cf parameter the TLS client uses, read once (smtp_* names; the
/// configuration maps them to lmtp_* in LMTP mode).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Global level (already resolved from the obsolete parameters when empty).
    pub level: Level,
    pub protocols: String,
    pub mandatory_protocols: String,
    pub ciphers: String,
    pub mandatory_ciphers: String,
    pub exclude_ciphers: String,
    pub mandatory_exclude_ciphers: String,
    pub cipher_lists: CipherLists,
    pub verify_cert_match: String,
    pub secure_cert_match: String,
    pub fingerprint_cert_match: String,
    pub fingerprint_digest: String,
    pub servername: String,
    /// The servername parameter's real name (smtp_ or lmtp_), for warnings.
    pub servername_param: String,
    pub trust_anchor_file: String,
    pub conn_reuse: bool,
    /// smtp_tls_dane_insecure_mx_policy: may, encrypt or dane.
    pub insecure_mx_policy: Level,
    pub force_insecure_host_tlsa: bool,
    pub ca_file: String,
    pub ca_path: String,
    pub append_default_ca: bool,
    pub cert_file: String,
    pub key_file: String,
    pub dcert_file: String,
    pub dkey_file: String,
    pub eccert_file: String,
    pub eckey_file: String,
    pub chain_files: String,
    /// smtp_tls_scert_verifydepth as given (Postfix enforces no minimum: -1 allows no
    /// intermediate CA at all, lower values mean OpenSSL's default).
    pub verify_depth: i32,
    pub starttls_timeout: Duration,
    pub session_cache_timeout: Duration,
    pub wrappermode: bool,
    pub note_starttls_offer: bool,
    /// smtp_tls_loglevel as Postfix's feature mask (`logmask`).
    pub log_mask: u32,
    /// The warning about an unknown smtp_tls_loglevel word (logged at engine set-up and
    /// for each session, as Postfix parses the value at both).
    pub log_warning: Option<String>,
}

/// The TLS log features behind smtp_tls_loglevel (Postfix's TLS_LOG_* bits).
pub mod logmask {
    pub const SUMMARY: u32 = 1 << 1;
    pub const UNTRUSTED: u32 = 1 << 2;
    pub const PEERCERT: u32 = 1 << 3;
    pub const CERTMATCH: u32 = 1 << 4;
    pub const VERBOSE: u32 = 1 << 5;
    pub const CACHE: u32 = 1 << 6;
    pub const DEBUG: u32 = 1 << 7;
    pub const TLSPKTS: u32 = 1 << 8;
    pub const ALLPKTS: u32 = 1 << 9;
    pub const DANE: u32 = 1 << 10;
    /// The lines of the peer-certificate details ("matched peername", "subject_CN=...").
    pub const CERT_DETAILS: u32 = CERTMATCH | VERBOSE | PEERCERT;
}

/// smtp_tls_loglevel: a number 0-9 or Postfix's words (`routine`, `debug`, `untrusted`,
/// `peercert`, ...), several separated by commas or white space, any case. An unknown word
/// makes the whole value 0, with Postfix's warning.
pub fn parse_log_mask(param: &str, value: &str) -> (u32, Option<String>) {
    use logmask::*;
    const L1: u32 = SUMMARY;
    const L2: u32 = L1 | VERBOSE | CACHE | DEBUG;
    const L3: u32 = L2 | TLSPKTS;
    const L4: u32 = L3 | ALLPKTS;
    let mut mask = 0;
    for w in value
        .split([',', ' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
    {
        mask |= match w.to_ascii_lowercase().as_str() {
            // TLS_LOG_NONE is a bit of its own in Postfix, but nothing tests it.
            "0" | "none" => 1,
            "1" | "routine" | "summary" => L1,
            "2" | "debug" => L2,
            "3" | "ssl-expert" => L3,
            "4" | "ssl-developer" | "5" | "6" | "7" | "8" | "9" => L4,
            "untrusted" => UNTRUSTED,
            "peercert" => PEERCERT,
            "certmatch" => CERTMATCH,
            "verbose" => VERBOSE,
            "cache" => CACHE,
            "dane" => DANE,
            "ssl-debug" => DEBUG,
            "ssl-handshake-packet-dump" => TLSPKTS,
            "ssl-session-packet-dump" => TLSPKTS | ALLPKTS,
            _ => {
                return (
                    0,
                    Some(format!("unknown {param} value \"{w}\" in \"{value}\"")),
                );
            }
        };
    }
    (mask, None)
}

impl Default for Settings {
    /// Postfix 3.7 defaults (compatibility level 3.6 or later).
    fn default() -> Settings {
        Settings {
            level: Level::None,
            protocols: ">=TLSv1".into(),
            mandatory_protocols: ">=TLSv1".into(),
            ciphers: "medium".into(),
            mandatory_ciphers: "medium".into(),
            exclude_ciphers: String::new(),
            mandatory_exclude_ciphers: String::new(),
            cipher_lists: CipherLists::default(),
            verify_cert_match: "hostname".into(),
            secure_cert_match: "nexthop, dot-nexthop".into(),
            fingerprint_cert_match: String::new(),
            fingerprint_digest: "sha256".into(),
            servername: String::new(),
            servername_param: "smtp_tls_servername".into(),
            trust_anchor_file: String::new(),
            conn_reuse: false,
            insecure_mx_policy: Level::May,
            force_insecure_host_tlsa: false,
            ca_file: String::new(),
            ca_path: String::new(),
            append_default_ca: false,
            cert_file: String::new(),
            key_file: String::new(),
            dcert_file: String::new(),
            dkey_file: String::new(),
            eccert_file: String::new(),
            eckey_file: String::new(),
            chain_files: String::new(),
            verify_depth: 9,
            starttls_timeout: Duration::from_secs(300),
            session_cache_timeout: Duration::from_secs(3600),
            wrappermode: false,
            note_starttls_offer: false,
            log_mask: 1,
            log_warning: None,
        }
    }
}

/// The global level from smtp_tls_security_level or the obsolete parameters.
pub fn global_level(
    level: &str,
    use_tls: bool,
    enforce_tls: bool,
    enforce_peername: bool,
) -> Result<Level, String> {
    if !level.is_empty() {
        return Level::parse(level)
            .ok_or_else(|| format!("invalid tls security level: \"{level}\""));
    }
    Ok(if enforce_tls {
        if enforce_peername {
            Level::Verify
        } else {
            Level::Encrypt
        }
    } else if use_tls {
        Level::May
    } else {
        Level::None
    })
}

impl Settings {
    /// Reads the parameters; `Err` is Postfix's fatal text for an invalid global level or
    /// insecure-MX policy.
    pub fn from_config(cfg: &Config) -> Result<Settings, String> {
        let level = global_level(
            &cfg.get("smtp_tls_security_level"),
            cfg.bool("smtp_use_tls"),
            cfg.bool("smtp_enforce_tls"),
            cfg.bool("smtp_tls_enforce_peername"),
        )?;
        let (log_mask, log_warning) = parse_log_mask(
            &cfg.name_for("smtp_tls_loglevel"),
            &cfg.get("smtp_tls_loglevel"),
        );
        let imx = cfg.get("smtp_tls_dane_insecure_mx_policy");
        let insecure_mx_policy = match Level::parse(&imx) {
            Some(l @ (Level::May | Level::Encrypt | Level::Dane)) => l,
            _ => {
                return Err(format!(
                    "{}: bad value: \"{imx}\"",
                    cfg.name_for("smtp_tls_dane_insecure_mx_policy")
                ));
            }
        };
        Ok(Settings {
            level,
            protocols: cfg.get("smtp_tls_protocols"),
            mandatory_protocols: cfg.get("smtp_tls_mandatory_protocols"),
            ciphers: cfg.get("smtp_tls_ciphers"),
            mandatory_ciphers: cfg.get("smtp_tls_mandatory_ciphers"),
            exclude_ciphers: cfg.get("smtp_tls_exclude_ciphers"),
            mandatory_exclude_ciphers: cfg.get("smtp_tls_mandatory_exclude_ciphers"),
            cipher_lists: CipherLists {
                high: cfg.get("tls_high_cipherlist"),
                medium: cfg.get("tls_medium_cipherlist"),
                low: cfg.get("tls_low_cipherlist"),
                export: cfg.get("tls_export_cipherlist"),
                null: cfg.get("tls_null_cipherlist"),
            },
            verify_cert_match: cfg.get("smtp_tls_verify_cert_match"),
            secure_cert_match: cfg.get("smtp_tls_secure_cert_match"),
            fingerprint_cert_match: cfg.get("smtp_tls_fingerprint_cert_match"),
            fingerprint_digest: cfg.get("smtp_tls_fingerprint_digest"),
            servername: cfg.get("smtp_tls_servername"),
            servername_param: cfg.name_for("smtp_tls_servername"),
            trust_anchor_file: cfg.get("smtp_tls_trust_anchor_file"),
            conn_reuse: cfg.bool("smtp_tls_connection_reuse"),
            insecure_mx_policy,
            force_insecure_host_tlsa: cfg.bool("smtp_tls_force_insecure_host_tlsa_lookup"),
            ca_file: cfg.get("smtp_tls_CAfile"),
            ca_path: cfg.get("smtp_tls_CApath"),
            append_default_ca: cfg.bool("tls_append_default_CA"),
            cert_file: cfg.get("smtp_tls_cert_file"),
            key_file: cfg.get("smtp_tls_key_file"),
            dcert_file: cfg.get("smtp_tls_dcert_file"),
            dkey_file: cfg.get("smtp_tls_dkey_file"),
            eccert_file: cfg.get("smtp_tls_eccert_file"),
            eckey_file: cfg.get("smtp_tls_eckey_file"),
            chain_files: cfg.get("smtp_tls_chain_files"),
            verify_depth: i32::try_from(
                cfg.int("smtp_tls_scert_verifydepth")
                    .clamp(-100_000, 100_000),
            )
            .unwrap_or(9),
            starttls_timeout: cfg.time("smtp_starttls_timeout"),
            // Postfix caches client sessions only when tlsmgr(8) has a cache database
            // (smtp_tls_session_cache_database, empty by default); without one no
            // session is ever resumed. Outpost's cache is per process, but the same
            // switch decides whether there is one.
            session_cache_timeout: if cfg.get("smtp_tls_session_cache_database").is_empty() {
                Duration::ZERO
            } else {
                cfg.time("smtp_tls_session_cache_timeout")
            },
            wrappermode: cfg.bool("smtp_tls_wrappermode"),
            note_starttls_offer: cfg.bool("smtp_tls_note_starttls_offer"),
            log_mask,
            log_warning,
        })
    }
}

/// The keys Postfix tries in smtp_tls_policy_maps for a next-hop destination: the
/// destination as written, then, for a valid host name, each parent domain with a
/// leading dot (`mail.example.com`, `.example.com`, `.com`). `[host]:port`, `host:port`
/// and UNIX-domain paths are looked up once, as written.
pub fn policy_keys(dest: &str) -> Vec<String> {
    let mut keys = vec![dest.to_string()];
    if crate::route::dns::valid_hostname(dest, false).is_err() {
        return keys;
    }
    let mut rest = dest;
    while let Some(i) = rest.get(1..).and_then(|r| r.find('.')) {
        rest = &rest[i + 1..];
        keys.push(rest.to_string());
    }
    keys
}

fn split_list(s: &str, seps: &[char]) -> Vec<String> {
    s.split(seps)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

const COMMA_SP: [char; 5] = [',', ' ', '\t', '\r', '\n'];

/// Work in progress while a policy is resolved.
struct Draft {
    level: Option<Level>,
    invalid: Option<PolicyError>,
    grade: Option<String>,
    protocols: Option<String>,
    sni: Option<String>,
    matches: Option<Vec<String>>,
    exclusions: Option<String>,
    fingerprints: Vec<TlsaRecord>,
    anchors: Vec<TlsaRecord>,
    conn_reuse: bool,
}

/// Parses one policy-table value into `d`; `where_` is the warning prefix. Returns the
/// table's level (or marks the draft invalid).
fn apply_policy_entry(
    d: &mut Draft,
    value: &str,
    where_: &str,
    warn: &mut Vec<String>,
    verbose: bool,
) {
    let mut toks = value.split(COMMA_SP).filter(|t| !t.is_empty());
    let Some(first) = toks.next() else {
        warn.push(format!("{where_}: invalid empty policy"));
        d.invalid = Some(PolicyError::config());
        return;
    };
    let Some(level) = Level::parse(first) else {
        warn.push(format!("{where_}: invalid security level \"{first}\""));
        d.invalid = Some(PolicyError::config());
        return;
    };
    d.level = Some(level);
    if level < Level::May {
        for t in toks {
            warn.push(format!(
                "{where_}: ignoring attribute \"{t}\" with TLS disabled"
            ));
        }
        return;
    }
    let mut bad = |warn: &mut Vec<String>, msg: String| {
        warn.push(msg);
        d.invalid = Some(PolicyError::config());
    };
    for tok in toks {
        let Some((name, val)) = tok.split_once('=') else {
            bad(
                warn,
                format!(
                    "{where_}: malformed attribute/value pair \"{tok}\": missing '=' after attribute name"
                ),
            );
            return;
        };
        let name = name.trim();
        let val = val.trim();
        if name.is_empty() {
            bad(
                warn,
                format!(
                    "{where_}: malformed attribute/value pair \"{tok}\": missing attribute name"
                ),
            );
            return;
        }
        let lname = name.to_ascii_lowercase();
        let dup = |warn: &mut Vec<String>| {
            warn.push(format!(
                "{where_}: attribute \"{name}\" is specified multiple times"
            ));
        };
        match lname.as_str() {
            "ciphers" => {
                if val.is_empty() {
                    warn.push(format!("{where_}: attribute \"{name}\" has empty value"));
                    d.invalid = Some(PolicyError::config());
                    return;
                }
                if d.grade.is_some() {
                    dup(warn);
                    d.invalid = Some(PolicyError::config());
                    return;
                }
                d.grade = Some(val.to_string());
            }
            "protocols" => {
                if d.protocols.is_some() {
                    dup(warn);
                    d.invalid = Some(PolicyError::config());
                    return;
                }
                d.protocols = Some(val.to_string());
            }
            "servername" => {
                if d.sni.is_some() {
                    dup(warn);
                    d.invalid = Some(PolicyError::config());
                    return;
                }
                if crate::route::dns::valid_hostname(val, false).is_err() {
                    warn.push(format!(
                        "{where_}: \"{name}={val}\" specifies an invalid hostname"
                    ));
                    d.invalid = Some(PolicyError::config());
                    return;
                }
                d.sni = Some(val.to_string());
            }
            "match" => {
                if val.is_empty() {
                    warn.push(format!("{where_}: attribute \"{name}\" has empty value"));
                    d.invalid = Some(PolicyError::config());
                    return;
                }
                match level {
                    Level::Fingerprint => {
                        let v = fingerprint_list(val, &['|'], warn, verbose);
                        d.fingerprints.extend(v);
                    }
                    Level::Verify | Level::Secure => {
                        d.matches
                            .get_or_insert_with(Vec::new)
                            .extend(split_list(val, &[':']));
                    }
                    _ => {
                        warn.push(format!(
                            "{where_}: attribute \"{name}\" invalid at security level \"{}\"",
                            level.name()
                        ));
                        d.invalid = Some(PolicyError::config());
                        return;
                    }
                }
            }
            "exclude" => {
                if d.exclusions.is_some() {
                    dup(warn);
                    d.invalid = Some(PolicyError::config());
                    return;
                }
                d.exclusions = Some(val.to_string());
            }
            "tafile" => {
                if !level.must_pkix() {
                    warn.push(format!(
                        "{where_}: attribute \"{name}\" invalid at security level \"{}\"",
                        level.name()
                    ));
                    d.invalid = Some(PolicyError::config());
                    return;
                }
                if val.is_empty() {
                    warn.push(format!("{where_}: attribute \"{name}\" has empty value"));
                    d.invalid = Some(PolicyError::config());
                    return;
                }
                match dane::load_trust_anchors(val, verbose) {
                    Ok(v) => d.anchors.extend(v),
                    Err(e) => {
                        warn.extend(e);
                        d.invalid = Some(PolicyError::config());
                        return;
                    }
                }
            }
            "connection_reuse" => {
                if val.eq_ignore_ascii_case("yes") {
                    d.conn_reuse = true;
                } else if val.eq_ignore_ascii_case("no") {
                    d.conn_reuse = false;
                } else {
                    warn.push(format!(
                        "{where_}: attribute \"{name}\" has bad value: \"{val}\""
                    ));
                    d.invalid = Some(PolicyError::config());
                    return;
                }
            }
            _ => {
                warn.push(format!("{where_}: invalid attribute name: \"{name}\""));
                d.invalid = Some(PolicyError::config());
                return;
            }
        }
    }
}

/// Decodes a fingerprint list into synthetic TLSA records; malformed values are skipped
/// with Postfix's warning.
fn fingerprint_list(
    list: &str,
    seps: &[char],
    warn: &mut Vec<String>,
    verbose: bool,
) -> Vec<TlsaRecord> {
    let mut digests = Vec::new();
    for v in split_list(list, seps) {
        // 64 bytes (SHA-512) in colon-hex is the longest digest OpenSSL produces.
        if v.len() > 3 * 64 {
            let head: String = v.chars().take(100).collect();
            warn.push(format!("malformed fingerprint value: {head}..."));
            continue;
        }
        match fprint::decode(&v) {
            Some(raw) => {
                if verbose {
                    crate::log::info(&format!(
                        "fingerprint: digest as private-use TLSA record: 3 0 255 {}",
                        dane::hex_dump(&raw)
                    ));
                }
                digests.push(raw)
            }
            None => {
                let head: String = v.chars().take(384).collect();
                warn.push(format!("malformed fingerprint value: {head}"));
            }
        }
    }
    dane::fingerprint_records(&digests)
}

/// smtp_tls_per_site semantics for one lookup.
fn per_site_lookup(
    d: &mut Draft,
    site: &mut Option<Level>,
    lookup: Lookup<'_>,
    title: &str,
    name: &str,
    class: &str,
    warn: &mut Vec<String>,
) {
    match lookup(name) {
        Ok(Some(v)) => {
            let v = v.trim();
            let cur = *site;
            if v.eq_ignore_ascii_case("NONE") {
                if cur.is_none_or(|l| l <= Level::May) {
                    *site = Some(Level::None);
                }
            } else if v.eq_ignore_ascii_case("MAY") {
                if cur.is_none() {
                    *site = Some(Level::May);
                }
            } else if v.eq_ignore_ascii_case("MUST_NOPEERMATCH") {
                if cur.is_none_or(|l| l < Level::Encrypt) {
                    *site = Some(Level::Encrypt);
                }
            } else if v.eq_ignore_ascii_case("MUST") {
                if cur.is_none_or(|l| l < Level::Verify) {
                    *site = Some(Level::Verify);
                }
            } else {
                warn.push(format!(
                    "{title}: unknown TLS policy '{v}' for {class} {name}"
                ));
                d.invalid = Some(PolicyError::config());
            }
        }
        Ok(None) => {}
        Err(_) => {
            warn.push(format!(
                "{title}: {class} \"{name}\": per-site table lookup error"
            ));
            d.invalid = Some(PolicyError {
                status: "4.3.0",
                reason: "Temporary lookup error".into(),
            });
        }
    }
}

/// Resolves the policy for next-hop `dest` (as written, e.g. `example.com` or
/// `[mx.example.com]:587`) and server `host`.
pub fn resolve(
    s: &Settings,
    dest: &str,
    host: &str,
    tables: Tables<'_>,
    dane_in: Option<&DaneInput<'_>>,
) -> Resolution {
    let mut warn = Vec::new();
    let mut d = Draft {
        level: None,
        invalid: None,
        grade: None,
        protocols: None,
        sni: None,
        matches: None,
        exclusions: None,
        fingerprints: Vec::new(),
        anchors: Vec::new(),
        conn_reuse: s.conn_reuse,
    };
    let global = s.level;
    if let Some(lookup) = tables.policy {
        for key in policy_keys(dest) {
            let where_ = format!("{}, next-hop destination \"{key}\"", tables.policy_title);
            match lookup(&key) {
                Ok(Some(v)) => {
                    apply_policy_entry(
                        &mut d,
                        &v,
                        &where_,
                        &mut warn,
                        s.log_mask & (logmask::VERBOSE | logmask::DANE) != 0,
                    );
                    break;
                }
                Ok(None) => {}
                Err(_) => {
                    warn.push(format!("{where_}: policy table lookup error"));
                    d.invalid = Some(PolicyError::config());
                    break;
                }
            }
        }
    } else if let Some(lookup) = tables.per_site {
        let mut site = None;
        let title = tables.per_site_title;
        per_site_lookup(
            &mut d,
            &mut site,
            lookup,
            title,
            dest,
            "next-hop destination",
            &mut warn,
        );
        if d.invalid.is_none() && !dest.eq_ignore_ascii_case(host) {
            per_site_lookup(
                &mut d,
                &mut site,
                lookup,
                title,
                host,
                "server hostname",
                &mut warn,
            );
        }
        // A per-site MAY is a wildcard that a stricter global level overrides.
        if site == Some(Level::May) && global > Level::May {
            site = Some(global);
        }
        d.level = site;
    }
    if let Some(e) = d.invalid.take() {
        return Resolution {
            result: Err(e),
            warnings: warn,
        };
    }
    let mut p = Policy::empty(d.level.unwrap_or(global), d.conn_reuse);

    if p.level.dane_based() {
        match dane_init(&mut p, dest, host, s, dane_in, &mut warn) {
            Ok(()) => {}
            Err(e) => {
                return Resolution {
                    result: Err(e),
                    warnings: warn,
                };
            }
        }
    }

    if p.level > Level::None {
        p.protocols = d.protocols.take().unwrap_or_else(|| {
            if p.level == Level::May {
                s.protocols.clone()
            } else {
                s.mandatory_protocols.clone()
            }
        });
        p.sni = match d.sni.take() {
            Some(n) => n,
            None => {
                let n = &s.servername;
                if n.is_empty()
                    || n == "hostname"
                    || n == "nexthop"
                    || crate::route::dns::valid_hostname(n, false).is_ok()
                {
                    n.clone()
                } else {
                    warn.push(format!(
                        "\"{} = {n}\" specifies an invalid hostname",
                        s.servername_param
                    ));
                    return Resolution {
                        result: Err(PolicyError::config()),
                        warnings: warn,
                    };
                }
            }
        };
    }
    set_cipher_grade(&mut p, s, d.grade.take(), d.exclusions.take());

    match p.level {
        Level::Fingerprint => {
            let mut recs = std::mem::take(&mut d.fingerprints);
            if recs.is_empty() {
                recs = fingerprint_list(
                    &s.fingerprint_cert_match,
                    &COMMA_SP,
                    &mut warn,
                    s.log_mask & (logmask::VERBOSE | logmask::DANE) != 0,
                );
            }
            if recs.is_empty() {
                warn.push(format!(
                    "nexthop domain {dest}: configured at fingerprint security level, but with no fingerprints to match."
                ));
                return Resolution {
                    result: Err(PolicyError::config()),
                    warnings: warn,
                };
            }
            p.tlsa = recs;
        }
        Level::Verify | Level::Secure => {
            p.match_names = d.matches.take().unwrap_or_else(|| {
                let m = if p.level == Level::Verify {
                    &s.verify_cert_match
                } else {
                    &s.secure_cert_match
                };
                split_list(m, &[',', ' ', '\t', '\r', '\n', ':'])
            });
            let mut anchors = std::mem::take(&mut d.anchors);
            if anchors.is_empty() && !s.trust_anchor_file.is_empty() {
                for f in split_list(&s.trust_anchor_file, &COMMA_SP) {
                    match dane::load_trust_anchors(
                        &f,
                        s.log_mask & (logmask::VERBOSE | logmask::DANE) != 0,
                    ) {
                        Ok(v) => anchors.extend(v),
                        Err(e) => {
                            warn.extend(e);
                            return Resolution {
                                result: Err(PolicyError::config()),
                                warnings: warn,
                            };
                        }
                    }
                }
            }
            p.tlsa = anchors;
        }
        _ => {}
    }
    Resolution {
        result: Ok(p),
        warnings: warn,
    }
}

/// Cipher grade by level, and the exclusions (the `exclude` attribute replaces the
/// main.cf lists; the level's own exclusion is always added).
fn set_cipher_grade(p: &mut Policy, s: &Settings, grade: Option<String>, excl: Option<String>) {
    let (def, mand, also) = match p.level {
        Level::None => return,
        Level::May => (&s.ciphers, "", ""),
        Level::Encrypt => (
            &s.mandatory_ciphers,
            s.mandatory_exclude_ciphers.as_str(),
            "eNULL",
        ),
        _ => (
            &s.mandatory_ciphers,
            s.mandatory_exclude_ciphers.as_str(),
            "aNULL",
        ),
    };
    p.grade = grade.unwrap_or_else(|| def.clone());
    let mut parts: Vec<String> = Vec::new();
    match excl {
        Some(e) => {
            if !e.is_empty() {
                parts.push(e);
            }
        }
        None => {
            for x in [s.exclude_ciphers.as_str(), mand] {
                if !x.is_empty() {
                    parts.push(x.to_string());
                }
            }
        }
    }
    if !also.is_empty() {
        parts.push(also.to_string());
    }
    p.exclusions = parts.join(" ");
}

/// Why DANE cannot be used, in Postfix's three classes.
#[derive(PartialEq, Eq, Clone, Copy)]
enum NonDane {
    /// Our configuration: warn.
    Config,
    /// The destination does not do DANE.
    Dest,
    /// TLSA exists but cannot authenticate: at least encrypt.
    CantAuth,
}

fn dane_incompat(
    p: &mut Policy,
    kind: NonDane,
    msg: String,
    warn: &mut Vec<String>,
) -> Result<(), PolicyError> {
    if p.level == Level::Dane {
        p.level = if kind == NonDane::CantAuth {
            Level::Encrypt
        } else {
            Level::May
        };
        if kind == NonDane::Config {
            warn.push(msg);
        }
        Ok(())
    } else if kind == NonDane::Config {
        warn.push(msg);
        Err(PolicyError::config())
    } else {
        Err(PolicyError {
            status: "4.7.5",
            reason: msg,
        })
    }
}

fn dane_init(
    p: &mut Policy,
    dest: &str,
    host: &str,
    s: &Settings,
    input: Option<&DaneInput<'_>>,
    warn: &mut Vec<String>,
) -> Result<(), PolicyError> {
    let lvl = p.level.name();
    let Some(inp) = input else {
        return dane_incompat(
            p,
            NonDane::Config,
            format!("{dest}: {lvl} configured with dnssec lookups disabled"),
            warn,
        );
    };
    let Some(port) = inp.port else {
        warn.push(format!(
            "{dest}: the \"dane\" security level is invalid for delivery via unix-domain sockets"
        ));
        return Err(PolicyError::config());
    };
    if !inp.dnssec_enabled {
        return dane_incompat(
            p,
            NonDane::Config,
            format!("{dest}: {lvl} configured with dnssec lookups disabled"),
            warn,
        );
    }
    if inp.mx_errors_ignored {
        return dane_incompat(
            p,
            NonDane::Config,
            format!("{dest}: {lvl} configured with MX lookup errors ignored"),
            warn,
        );
    }
    if inp.resolver_search {
        return dane_incompat(
            p,
            NonDane::Config,
            format!("{dest}: dns resolver options incompatible with {lvl} TLS"),
            warn,
        );
    }
    let mx_insecure = inp.mx.as_ref().is_some_and(|m| !m.2);
    if mx_insecure && (p.level == Level::DaneOnly || s.insecure_mx_policy <= Level::May) {
        return dane_incompat(p, NonDane::Dest, "non DNSSEC destination".into(), warn);
    }
    let (res, w) = (inp.tlsa)();
    warn.extend(w);
    let (base, records) = match res {
        Err(_) => {
            return Err(PolicyError {
                status: "4.7.5",
                reason: format!("TLSA lookup error for {host}:{port}"),
            });
        }
        Ok(DaneLookup::NotFound) => {
            return dane_incompat(p, NonDane::Dest, "no TLSA records found".into(), warn);
        }
        Ok(DaneLookup::Unusable) => {
            return dane_incompat(p, NonDane::CantAuth, "TLSA records unusable".into(), warn);
        }
        Ok(DaneLookup::Records { base, records }) => (base, records),
    };
    if mx_insecure {
        if s.insecure_mx_policy == Level::Encrypt {
            return dane_incompat(
                p,
                NonDane::CantAuth,
                "Verification not possible, MX RRset is insecure".into(),
                warn,
            );
        }
        p.level = Level::HalfDane;
    }
    p.match_names = vec![base.clone()];
    if let Some((q, r, _)) = inp.mx.as_ref() {
        if q == r {
            p.match_names.push(q.clone());
        } else {
            p.match_names.push(r.clone());
            p.match_names.push(q.clone());
        }
    }
    p.dane_base = Some(base);
    p.tlsa = records;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn table(entries: &[(&str, &str)]) -> HashMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn with_policy(s: &Settings, t: &HashMap<String, String>, dest: &str) -> Resolution {
        let f = |k: &str| -> Result<Option<String>, String> { Ok(t.get(k).cloned()) };
        resolve(
            s,
            dest,
            "mx.example.com",
            Tables {
                policy: Some(&f),
                policy_title: "smtp_tls_policy_maps",
                ..Tables::default()
            },
            None,
        )
    }

    #[test]
    fn settings_from_config() {
        use crate::config::Mode;
        let mut cfg = Config::builtin(Mode::Smtp, "smtp");
        let s = Settings::from_config(&cfg).unwrap();
        assert_eq!(s.level, Level::None);
        assert_eq!(s.protocols, ">=TLSv1");
        assert_eq!(s.secure_cert_match, "nexthop, dot-nexthop");
        assert_eq!(s.insecure_mx_policy, Level::May);
        assert_eq!(s.verify_depth, 9);
        assert_eq!(s.log_mask & logmask::SUMMARY, 0);
        assert_eq!(parse_log_mask("p", "routine").0, logmask::SUMMARY);
        let (m, w) = parse_log_mask("p", "1, untrusted");
        assert_eq!((m, w), (logmask::SUMMARY | logmask::UNTRUSTED, None));
        let (m, _) = parse_log_mask("p", "DEBUG");
        assert_ne!(m & logmask::VERBOSE, 0);
        assert_eq!(m & logmask::TLSPKTS, 0);
        assert_ne!(parse_log_mask("p", "4").0 & logmask::ALLPKTS, 0);
        assert_eq!(
            parse_log_mask("smtp_tls_loglevel", "1 loud"),
            (
                0,
                Some("unknown smtp_tls_loglevel value \"loud\" in \"1 loud\"".into())
            )
        );
        assert_eq!(s.cipher_lists, CipherLists::default());
        // The insecure-MX default follows the level (a $-expression in main.cf terms).
        cfg.set("smtp_tls_security_level", "dane");
        let s = Settings::from_config(&cfg).unwrap();
        assert_eq!((s.level, s.insecure_mx_policy), (Level::Dane, Level::Dane));
        cfg.set("smtp_tls_security_level", "");
        cfg.set("smtp_enforce_tls", "yes");
        assert_eq!(Settings::from_config(&cfg).unwrap().level, Level::Verify);
        cfg.set("smtp_tls_security_level", "bogus");
        assert_eq!(
            Settings::from_config(&cfg).unwrap_err(),
            "invalid tls security level: \"bogus\""
        );
        // LMTP reads the lmtp_ twins.
        let mut cfg = Config::builtin(Mode::Lmtp, "lmtp");
        cfg.set("lmtp_tls_security_level", "encrypt");
        cfg.set("lmtp_tls_servername", "hostname");
        let s = Settings::from_config(&cfg).unwrap();
        assert_eq!(s.level, Level::Encrypt);
        assert_eq!(s.servername, "hostname");
        assert_eq!(s.servername_param, "lmtp_tls_servername");
    }

    #[test]
    fn levels_order_and_names() {
        assert!(Level::Secure > Level::Verify && Level::Verify > Level::DaneOnly);
        assert!(Level::Fingerprint.must_match() && !Level::Encrypt.must_match());
        assert!(Level::Encrypt.required() && !Level::May.required());
        assert_eq!(Level::parse("DANE-only"), Some(Level::DaneOnly));
        assert_eq!(Level::parse("halfdane"), None);
    }

    #[test]
    fn obsolete_parameters() {
        assert_eq!(global_level("", false, false, true), Ok(Level::None));
        assert_eq!(global_level("", true, false, true), Ok(Level::May));
        assert_eq!(global_level("", true, true, true), Ok(Level::Verify));
        assert_eq!(global_level("", false, true, false), Ok(Level::Encrypt));
        assert_eq!(global_level("may", false, true, true), Ok(Level::May));
        assert!(global_level("maybe", false, false, false).is_err());
    }

    #[test]
    fn lookup_keys() {
        assert_eq!(
            policy_keys("mail.example.com"),
            vec!["mail.example.com", ".example.com", ".com"]
        );
        assert_eq!(
            policy_keys("[mx.example.com]:587"),
            vec!["[mx.example.com]:587"]
        );
        assert_eq!(policy_keys("example.com:25"), vec!["example.com:25"]);
    }

    #[test]
    fn defaults_by_level() {
        let s = Settings {
            level: Level::May,
            mandatory_protocols: ">=TLSv1.2".into(),
            exclude_ciphers: "RC4".into(),
            mandatory_exclude_ciphers: "3DES".into(),
            ..Settings::default()
        };
        let p = with_policy(&s, &HashMap::new(), "example.com")
            .result
            .unwrap();
        assert_eq!(p.level, Level::May);
        assert_eq!(p.protocols, ">=TLSv1");
        assert_eq!(p.exclusions, "RC4");
        let t = table(&[(".example.com", "encrypt")]);
        let p = with_policy(&s, &t, "a.example.com").result.unwrap();
        assert_eq!(
            (p.level, p.protocols.as_str()),
            (Level::Encrypt, ">=TLSv1.2")
        );
        assert_eq!(p.exclusions, "RC4 3DES eNULL");
        let t = table(&[("example.com", "secure exclude=MD5 ciphers=high")]);
        let p = with_policy(&s, &t, "example.com").result.unwrap();
        assert_eq!(p.exclusions, "MD5 aNULL");
        assert_eq!(p.grade, "high");
        assert_eq!(p.match_names, vec!["nexthop", "dot-nexthop"]);
        let t = table(&[("example.com", "none")]);
        let p = with_policy(&s, &t, "example.com").result.unwrap();
        assert_eq!((p.level, p.protocols.as_str()), (Level::None, ""));
    }

    #[test]
    fn policy_attributes() {
        let s = Settings::default();
        let t = table(&[(
            "[mx.example.com]:587",
            "verify match=hostname:.example.com match=nexthop protocols=!SSLv3,servername=sni.example connection_reuse=YES",
        )]);
        let r = with_policy(&s, &t, "[mx.example.com]:587");
        let p = r.result.unwrap();
        assert_eq!(p.level, Level::Verify);
        assert_eq!(p.match_names, vec!["hostname", ".example.com", "nexthop"]);
        assert_eq!(p.protocols, "!SSLv3");
        assert_eq!(p.sni, "sni.example");
        assert!(p.conn_reuse);
        assert!(r.warnings.is_empty());
        // Key order: the bracketed form is looked up once, never by parent domain.
        let t = table(&[(".example.com", "secure")]);
        let p = with_policy(&s, &t, "[mx.example.com]:587").result.unwrap();
        assert_eq!(p.level, Level::None);
    }

    #[test]
    fn fingerprint_policy() {
        let s = Settings::default();
        let t = table(&[("example.com", "fingerprint match=AB:CD|ef01 match=zz")]);
        let r = with_policy(&s, &t, "example.com");
        let p = r.result.unwrap();
        assert_eq!(p.tlsa.len(), 4);
        assert_eq!(p.tlsa[0], TlsaRecord::new(3, 0, 255, vec![0xab, 0xcd]));
        assert_eq!(r.warnings, vec!["malformed fingerprint value: zz"]);
        assert_eq!(p.exclusions, "aNULL");
        // No fingerprints at all: invalid.
        let t = table(&[("example.com", "fingerprint")]);
        let r = with_policy(&s, &t, "example.com");
        assert_eq!(r.result.unwrap_err().status, "4.7.5");
        assert_eq!(
            r.warnings,
            vec![
                "nexthop domain example.com: configured at fingerprint security level, but with no fingerprints to match."
            ]
        );
        // main.cf list, comma/space separated.
        let s = Settings {
            fingerprint_cert_match: "AA:BB, CC:DD".into(),
            ..Settings::default()
        };
        let p = with_policy(&s, &t, "example.com").result.unwrap();
        assert_eq!(p.tlsa.len(), 4);
    }

    #[test]
    fn policy_errors_defer() {
        let s = Settings::default();
        let cases = [
            (
                "",
                "smtp_tls_policy_maps, next-hop destination \"example.com\": invalid empty policy",
            ),
            (
                "maybe",
                "smtp_tls_policy_maps, next-hop destination \"example.com\": invalid security level \"maybe\"",
            ),
            (
                "may foo",
                "smtp_tls_policy_maps, next-hop destination \"example.com\": malformed attribute/value pair \"foo\": missing '=' after attribute name",
            ),
            (
                "may ciphers=",
                "smtp_tls_policy_maps, next-hop destination \"example.com\": attribute \"ciphers\" has empty value",
            ),
            (
                "may ciphers=high ciphers=low",
                "smtp_tls_policy_maps, next-hop destination \"example.com\": attribute \"ciphers\" is specified multiple times",
            ),
            (
                "encrypt match=x",
                "smtp_tls_policy_maps, next-hop destination \"example.com\": attribute \"match\" invalid at security level \"encrypt\"",
            ),
            (
                "may tafile=/x",
                "smtp_tls_policy_maps, next-hop destination \"example.com\": attribute \"tafile\" invalid at security level \"may\"",
            ),
            (
                "may connection_reuse=maybe",
                "smtp_tls_policy_maps, next-hop destination \"example.com\": attribute \"connection_reuse\" has bad value: \"maybe\"",
            ),
            (
                "may servername=-bad-",
                "smtp_tls_policy_maps, next-hop destination \"example.com\": \"servername=-bad-\" specifies an invalid hostname",
            ),
            (
                "may color=red",
                "smtp_tls_policy_maps, next-hop destination \"example.com\": invalid attribute name: \"color\"",
            ),
        ];
        for (v, w) in cases {
            let r = with_policy(&s, &table(&[("example.com", v)]), "example.com");
            let e = r.result.expect_err(v);
            assert_eq!(e, PolicyError::config(), "{v}");
            assert_eq!(r.warnings, vec![w.to_string()], "{v}");
        }
        // Attributes with TLS off are ignored with a warning, not an error.
        let r = with_policy(
            &s,
            &table(&[("example.com", "none ciphers=high")]),
            "example.com",
        );
        assert_eq!(r.result.unwrap().level, Level::None);
        assert_eq!(r.warnings.len(), 1);
        // A table error defers.
        let f = |_: &str| -> Result<Option<String>, String> { Err("down".into()) };
        let r = resolve(
            &s,
            "example.com",
            "mx",
            Tables {
                policy: Some(&f),
                policy_title: "smtp_tls_policy_maps",
                ..Tables::default()
            },
            None,
        );
        assert!(r.result.is_err());
        // An invalid main.cf servername.
        let s = Settings {
            level: Level::May,
            servername: "bad name".into(),
            ..Settings::default()
        };
        let r = with_policy(&s, &HashMap::new(), "example.com");
        assert!(r.result.is_err());
        assert_eq!(
            r.warnings,
            vec!["\"smtp_tls_servername = bad name\" specifies an invalid hostname"]
        );
    }

    #[test]
    fn per_site_semantics() {
        let s = Settings {
            level: Level::Verify,
            ..Settings::default()
        };
        let run = |t: HashMap<String, String>, s: &Settings| {
            let f = move |k: &str| -> Result<Option<String>, String> { Ok(t.get(k).cloned()) };
            resolve(
                s,
                "example.com",
                "mx.example.com",
                Tables {
                    per_site: Some(&f),
                    per_site_title: "smtp_tls_per_site",
                    ..Tables::default()
                },
                None,
            )
        };
        // A per-site MAY wildcard yields to the stricter global level.
        let p = run(table(&[("example.com", "MAY")]), &s).result.unwrap();
        assert_eq!(p.level, Level::Verify);
        // NONE overrides MAY; MUST_NOPEERMATCH is encrypt.
        let p = run(
            table(&[("example.com", "MAY"), ("mx.example.com", "NONE")]),
            &s,
        )
        .result
        .unwrap();
        assert_eq!(p.level, Level::None);
        let g = Settings::default();
        let p = run(table(&[("mx.example.com", "MUST_NOPEERMATCH")]), &g)
            .result
            .unwrap();
        assert_eq!(p.level, Level::Encrypt);
        let r = run(table(&[("example.com", "SOMETIMES")]), &g);
        assert_eq!(
            r.warnings,
            vec![
                "smtp_tls_per_site: unknown TLS policy 'SOMETIMES' for next-hop destination example.com"
            ]
        );
        assert!(r.result.is_err());
    }

    #[test]
    fn dane_downgrades() {
        let s = Settings {
            level: Level::Dane,
            ..Settings::default()
        };
        let none = || (Ok(DaneLookup::NotFound), Vec::new());
        let unusable = || (Ok(DaneLookup::Unusable), Vec::new());
        let fail = || (Err("SERVFAIL".to_string()), Vec::new());
        let recs = || {
            (
                Ok(DaneLookup::Records {
                    base: "mx.example.com".into(),
                    records: vec![TlsaRecord::new(3, 1, 1, vec![1; 32])],
                }),
                Vec::new(),
            )
        };
        type Tlsa = dyn Fn() -> (Result<DaneLookup, String>, Vec<String>);
        fn input(f: &Tlsa, mx_secure: bool) -> DaneInput<'_> {
            DaneInput {
                port: Some(25),
                dnssec_enabled: true,
                mx_errors_ignored: false,
                resolver_search: false,
                mx: Some(("mx.example.com".into(), "mx.example.com".into(), mx_secure)),
                tlsa: f,
            }
        }
        let go = |s: &Settings, i: &DaneInput<'_>| {
            resolve(
                s,
                "example.com",
                "mx.example.com",
                Tables::default(),
                Some(i),
            )
        };
        assert_eq!(
            go(&s, &input(&none, true)).result.unwrap().level,
            Level::May
        );
        let p = go(&s, &input(&unusable, true)).result.unwrap();
        assert_eq!((p.level, p.exclusions.as_str()), (Level::Encrypt, "eNULL"));
        let e = go(&s, &input(&fail, true)).result.unwrap_err();
        assert_eq!(e.reason, "TLSA lookup error for mx.example.com:25");
        let p = go(&s, &input(&recs, true)).result.unwrap();
        assert_eq!(p.level, Level::Dane);
        assert_eq!(p.match_names, vec!["mx.example.com", "mx.example.com"]);
        assert_eq!(p.dane_base.as_deref(), Some("mx.example.com"));
        // Insecure MX with the default insecure-MX policy "may".
        assert_eq!(
            go(&s, &input(&recs, false)).result.unwrap().level,
            Level::May
        );
        let half = Settings {
            insecure_mx_policy: Level::Dane,
            ..s.clone()
        };
        assert_eq!(
            go(&half, &input(&recs, false)).result.unwrap().level,
            Level::HalfDane
        );
        // dane-only turns every miss into a deferral with the reason as text.
        let only = Settings {
            level: Level::DaneOnly,
            ..Settings::default()
        };
        let e = go(&only, &input(&none, true)).result.unwrap_err();
        assert_eq!(
            (e.status, e.reason.as_str()),
            ("4.7.5", "no TLSA records found")
        );
        let e = go(&only, &input(&recs, false)).result.unwrap_err();
        assert_eq!(e.reason, "non DNSSEC destination");
        // Without DNSSEC lookups: a warning and opportunistic TLS.
        let r = resolve(&s, "example.com", "mx", Tables::default(), None);
        assert_eq!(r.result.unwrap().level, Level::May);
        assert_eq!(
            r.warnings,
            vec!["example.com: dane configured with dnssec lookups disabled"]
        );
    }
}
