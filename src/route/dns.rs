//! A small blocking DNS stub resolver with Postfix's lookup semantics.
//!
//! Postfix's smtp(8) asks the system resolver (res_search(3)) for MX, A, AAAA and TLSA
//! records and interprets the replies in `dns/dns_lookup.c`. This module does both parts
//! itself, without an async runtime:
//!
//! * transport: the nameservers of `/etc/resolv.conf` (at most three, as glibc), `options
//!   timeout:`, `attempts:`, `rotate` and `use-vc`; UDP with EDNS0 (payload 1232) first, TCP
//!   when the reply is truncated; a fresh socket on a kernel-chosen port and a random query id
//!   for every try; replies whose id or question differ from the query are ignored until the
//!   try's deadline (anti-spoofing); SERVFAIL, REFUSED and NOTIMP move on to the next server,
//!   FORMERR to an EDNS0 query is retried once without EDNS0 (as glibc does).
//! * DNSSEC: when requested, the query carries the DO bit and the AD flag (Postfix turns on
//!   `RES_USE_EDNS0 | RES_TRUSTAD` for `RES_USE_DNSSEC`) and an answer is `authentic` only if
//!   the reply, and every reply that contributed a CNAME, had the AD bit set. As in Postfix,
//!   once a CNAME came from an unauthenticated reply the remaining queries are sent without DO.
//! * interpretation, after `dns_lookup_x()`: names are queried as given (absolute, no search
//!   list); CNAMEs are followed inside the answer section and by new queries (at most 10
//!   queries, like Postfix, and a repeated name is a loop); the class of every answer record
//!   must be IN and its owner name valid; invalid MX exchange names are dropped with Postfix's
//!   warning, a root MX exchange is a null MX (RFC 7505, [`DnsErrorKind::NullMx`]); at most
//!   [`RR_LIST_LIMIT`] records are kept.
//!
//! Errors carry Postfix's classification ([`DnsErrorKind`]) and produce its exact texts
//! ([`DnsError::postfix_text`]): h_errno wording from `dns/dns_strerror.c`, the
//! "Host or domain name not found. Name service error for name=... type=...: ..." frame from
//! `dns_query()`, and the "Malformed or unexpected name server reply", nullMX and
//! "Name server loop" texts from `dns_lookup_x()`.
//!
//! Not done here (caller's business): IDNA conversion, `smtp_dns_reply_filter` (see
//! [`DnsError::policy`]), Postfix's one-time `dnssec_probe`, sorting and shuffling.

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// At most this many records of one lookup are used (Postfix's `var_dns_rr_list_limit`).
pub const RR_LIST_LIMIT: usize = 100;
/// EDNS0 UDP payload size we advertise (DNS flag day 2020).
pub const EDNS_PAYLOAD: u16 = 1232;
/// Queries per lookup, the first one included (Postfix: `for (count = 0; count < 10; ...)`).
const MAX_QUERIES: usize = 10;
/// CNAME hops per lookup, within answers and across queries.
const MAX_CNAME_HOPS: usize = 16;
/// glibc's MAXNS, RES_MAXRETRANS and RES_MAXRETRY.
const MAX_NAMESERVERS: usize = 3;
const MAX_TIMEOUT_SECS: u32 = 30;
const MAX_ATTEMPTS: u32 = 5;

/// Resolver settings: what /etc/resolv.conf says, or explicit values for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Servers to ask, in order (port 53 unless a test says otherwise).
    pub nameservers: Vec<SocketAddr>,
    /// Wait per try (`options timeout:`, default 5 s).
    pub timeout: Duration,
    /// Rounds over all nameservers (`options attempts:`, default 2).
    pub attempts: u32,
    /// Start each query at the next nameserver (`options rotate`).
    pub rotate: bool,
    /// TCP only (`options use-vc`).
    pub use_vc: bool,
    /// Send EDNS0 (always on unless a test turns it off; DNSSEC needs it).
    pub edns: bool,
    /// Ask for DNSSEC (DO bit, AD flag) by default; see [`Resolver::with_dnssec`].
    pub dnssec: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nameservers: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 53))],
            timeout: Duration::from_secs(5),
            attempts: 2,
            rotate: false,
            use_vc: false,
            edns: true,
            dnssec: false,
        }
    }
}

impl Config {
    /// Defaults with these nameservers.
    pub fn with_nameservers(nameservers: Vec<SocketAddr>) -> Config {
        Config {
            nameservers,
            ..Config::default()
        }
    }

    /// Settings from the text of a resolv.conf file plus the `RES_OPTIONS` value, if any.
    /// Unparsable lines are skipped; no nameserver means 127.0.0.1 (as glibc).
    pub fn from_resolv_conf(text: &[u8], res_options: Option<&str>) -> Config {
        let mut buf = text.to_vec();
        if let Some(opts) = res_options {
            buf.extend_from_slice(format!("\noptions {opts}\n").as_bytes());
        }
        let (parsed, _errors) = resolv_conf::Config::parse_with_errors(&buf);
        let mut nameservers: Vec<SocketAddr> = parsed
            .nameservers
            .iter()
            .filter_map(scoped_to_socketaddr)
            .take(MAX_NAMESERVERS)
            .collect();
        if nameservers.is_empty() {
            nameservers.push(SocketAddr::from((Ipv4Addr::LOCALHOST, 53)));
        }
        Config {
            nameservers,
            timeout: Duration::from_secs(u64::from(parsed.timeout.clamp(1, MAX_TIMEOUT_SECS))),
            attempts: parsed.attempts.clamp(1, MAX_ATTEMPTS),
            rotate: parsed.rotate,
            use_vc: parsed.use_vc,
            edns: true,
            dnssec: false,
        }
    }
}

fn scoped_to_socketaddr(ip: &resolv_conf::ScopedIp) -> Option<SocketAddr> {
    match ip {
        resolv_conf::ScopedIp::V4(a) => Some(SocketAddr::from((*a, 53))),
        resolv_conf::ScopedIp::V6(a, scope) => {
            let scope_id = match scope {
                None => 0,
                Some(s) => match s.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => {
                        let c = std::ffi::CString::new(s.as_str()).ok()?;
                        // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
                        let n = unsafe { libc::if_nametoindex(c.as_ptr()) };
                        if n == 0 {
                            return None;
                        }
                        n
                    }
                },
            };
            Some(SocketAddr::V6(SocketAddrV6::new(*a, 53, 0, scope_id)))
        }
    }
}

/// A mail exchanger: preference and (validated, non-empty) host name without trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    pub exchange: String,
}

/// A TLSA record, raw: certificate usage, selector, matching type, association data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub mtype: u8,
    pub data: Vec<u8>,
}

impl From<Tlsa> for (u8, u8, u8, Vec<u8>) {
    fn from(t: Tlsa) -> Self {
        (t.usage, t.selector, t.mtype, t.data)
    }
}

/// The records found for a name, with what Postfix keeps about them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<T> {
    /// In reply order, at most [`RR_LIST_LIMIT`].
    pub records: Vec<T>,
    /// DNSSEC-validated: requested, and the AD bit was set on every reply used.
    pub authentic: bool,
    /// The owner name of the records (Postfix's `fqdn`): the queried name or the CNAME target.
    pub canonical_name: String,
    /// CNAME targets followed, in order (empty when there was no alias).
    pub cname_chain: Vec<String>,
    /// Smallest TTL of the records and of the CNAMEs followed.
    pub ttl: u32,
    /// More than [`RR_LIST_LIMIT`] records were offered; the excess was dropped.
    pub truncated: bool,
    /// Postfix's warnings for this lookup (dropped records, numeric names, truncation), to log
    /// with `msg_warn`.
    pub warnings: Vec<String>,
}

/// Postfix's classes of lookup failure (`dns/dns.h`), NXDOMAIN and NODATA kept apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DnsErrorKind {
    /// DNS_NOTFOUND from NXDOMAIN (h_errno HOST_NOT_FOUND), an invalid query name, a name
    /// server loop, or an answer with nothing usable.
    NotFound,
    /// DNS_NOTFOUND from NODATA (h_errno NO_DATA): the name exists, the type does not.
    NoData,
    /// DNS_RETRY: timeout, SERVFAIL, REFUSED, network error, malformed reply.
    Retry,
    /// DNS_FAIL: h_errno NO_RECOVERY (FORMERR, NOTAUTH and other rcodes).
    Fail,
    /// DNS_INVAL: the reply holds invalid names (every MX, a CNAME target, an owner name).
    Inval,
    /// DNS_POLICY: a reply filter dropped every record (see [`DnsError::policy`]).
    Policy,
    /// DNS_NULLMX: the domain publishes a null MX (RFC 7505).
    NullMx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// `dns_query()`: "Host or domain name not found. Name service error for ...: <h_errno>".
    HErrno,
    /// `dns_lookup_x()` after a failed parse.
    Malformed,
    NullMx,
    Loop,
    InvalidName,
    Policy,
    FilterSyntax,
}

/// A failed lookup: Postfix's class, the name and type it concerns, and detail for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsError {
    pub kind: DnsErrorKind,
    /// The name queried when the lookup failed; after a CNAME this is the alias target, which
    /// is the name Postfix reports.
    pub name: String,
    /// Record type mnemonic ("MX", "A", "AAAA", "TLSA").
    pub qtype: &'static str,
    /// The reply's RCODE, when there was a reply.
    pub rcode: Option<u16>,
    /// What happened underneath (timeouts, server, decoder error); not part of Postfix's text.
    pub detail: String,
    /// Postfix's warnings emitted before the failure (invalid names and the like).
    pub warnings: Vec<String>,
    form: Form,
}

impl DnsError {
    fn new(kind: DnsErrorKind, form: Form, name: &str, qtype: &'static str) -> DnsError {
        DnsError {
            kind,
            name: name.to_string(),
            qtype,
            rcode: None,
            detail: String::new(),
            warnings: Vec::new(),
            form,
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> DnsError {
        self.detail = detail.into();
        self
    }

    /// DNS_POLICY for callers that apply `smtp_dns_reply_filter` and drop every record.
    pub fn policy(name: &str, qtype: &'static str) -> DnsError {
        DnsError::new(DnsErrorKind::Policy, Form::Policy, name, qtype)
    }

    /// Postfix's DNS_NOTFOUND (NXDOMAIN, NODATA, loops, invalid query names): the caller may
    /// fall back (MX → A lookup, DNS → native lookup).
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, DnsErrorKind::NotFound | DnsErrorKind::NoData)
    }

    /// Postfix's `why` text for this failure, worded for `name` and `qtype`.
    pub fn postfix_text(&self, name: &str, qtype: &str) -> String {
        match self.form {
            Form::HErrno => format!(
                "Host or domain name not found. Name service error for name={name} type={qtype}: {}",
                h_errno_text(self.kind)
            ),
            Form::Malformed => format!(
                "Name service error for name={name} type={qtype}: Malformed or unexpected name server reply"
            ),
            Form::NullMx => format!("Domain {name} does not accept mail (nullMX)"),
            Form::Loop => format!("Name server loop for {name}"),
            Form::InvalidName => {
                format!("Name service error for {name}: invalid host or domain name")
            }
            Form::Policy => format!(
                "Error looking up name={name} type={qtype}: DNS reply filter drops all results"
            ),
            Form::FilterSyntax => format!(
                "Error looking up name={name} type={qtype}: Invalid DNS reply filter syntax"
            ),
        }
    }
}

/// dns_strerror() for the h_errno behind each class.
fn h_errno_text(kind: DnsErrorKind) -> &'static str {
    match kind {
        DnsErrorKind::NotFound => "Host not found",
        DnsErrorKind::NoData => "Host found but no data record of requested type",
        DnsErrorKind::Fail => "Non-recoverable error",
        _ => "Host not found, try again",
    }
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.postfix_text(&self.name, self.qtype))
    }
}

impl std::error::Error for DnsError {}

/// smtp_dns_reply_filter: looks up a record's text form ("name. ttl IN TYPE data") and
/// returns the table's action (`None`: keep the record); `Err` is a table error.
pub type RrLookup = dyn Fn(&str) -> Result<Option<String>, String> + Send + Sync;

/// The reply filter with its parameter name (for warnings).
#[derive(Clone)]
pub struct RrFilter {
    pub title: String,
    pub lookup: Arc<RrLookup>,
}

impl fmt::Debug for RrFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RrFilter({})", self.title)
    }
}

/// The stub resolver. Cheap to clone; clones share the rotation counter.
#[derive(Clone, Debug)]
pub struct Resolver {
    config: Config,
    next: Arc<AtomicUsize>,
    filter: Option<RrFilter>,
}

impl Resolver {
    pub fn new(config: Config) -> Resolver {
        Resolver {
            config,
            next: Arc::new(AtomicUsize::new(0)),
            filter: None,
        }
    }

    /// From /etc/resolv.conf and `RES_OPTIONS`; a missing file means glibc's defaults.
    pub fn from_system() -> Resolver {
        let text = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        let opts = std::env::var("RES_OPTIONS").ok();
        Resolver::new(Config::from_resolv_conf(&text, opts.as_deref()))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The same resolver with DNSSEC requested (or not) for its queries.
    pub fn with_dnssec(&self, dnssec: bool) -> Resolver {
        let mut r = self.clone();
        r.config.dnssec = dnssec;
        r
    }

    /// The same resolver with smtp_dns_reply_filter applied to MX, A and AAAA answers.
    pub fn with_filter(&self, filter: Option<RrFilter>) -> Resolver {
        let mut r = self.clone();
        r.filter = filter;
        r
    }

    /// Postfix's dns_rr_filter_execute(): each record's text form is looked up; IGNORE
    /// drops it (logged), any other action or a table error fails the lookup (DNS_RETRY,
    /// "Invalid DNS reply filter syntax"), and a reply left empty is DNS_POLICY.
    fn filter<T>(
        &self,
        mut answer: Answer<T>,
        qtype: &'static str,
        text: impl Fn(&T) -> String,
    ) -> Result<Answer<T>, DnsError> {
        let Some(f) = &self.filter else {
            return Ok(answer);
        };
        let owner = answer.canonical_name.clone();
        let invalid = || DnsError::new(DnsErrorKind::Retry, Form::FilterSyntax, &owner, qtype);
        let mut kept = Vec::with_capacity(answer.records.len());
        for rec in answer.records {
            let rr = format!("{owner}. {} IN {qtype} {}", answer.ttl, text(&rec));
            match (f.lookup)(&rr) {
                Ok(None) => kept.push(rec),
                Ok(Some(action)) => {
                    let word = action.split([' ', '\t']).next().unwrap_or("");
                    if word.eq_ignore_ascii_case("IGNORE") {
                        crate::log::info(&format!("ignoring DNS RR: {rr}"));
                    } else {
                        crate::log::warn(&format!(
                            "{}: unknown DNS filter action: \"{action}\"",
                            f.title
                        ));
                        return Err(invalid());
                    }
                }
                Err(e) => {
                    crate::log::warn(&e);
                    return Err(invalid());
                }
            }
        }
        if kept.is_empty() {
            return Err(DnsError::policy(&owner, qtype));
        }
        answer.records = kept;
        Ok(answer)
    }

    /// MX records. A null MX is the error [`DnsErrorKind::NullMx`].
    pub fn mx(&self, name: &str) -> Result<Answer<Mx>, DnsError> {
        let a = self.lookup(name, RecordType::MX, extract_mx)?;
        self.filter(a, "MX", |m| format!("{} {}.", m.preference, m.exchange))
    }

    pub fn a(&self, name: &str) -> Result<Answer<Ipv4Addr>, DnsError> {
        let a = self.lookup(name, RecordType::A, |rd, _| match rd {
            RData::A(a) => Item::Keep(a.0),
            _ => Item::Other,
        })?;
        self.filter(a, "A", |ip| ip.to_string())
    }

    pub fn aaaa(&self, name: &str) -> Result<Answer<Ipv6Addr>, DnsError> {
        let a = self.lookup(name, RecordType::AAAA, |rd, _| match rd {
            RData::AAAA(a) => Item::Keep(a.0),
            _ => Item::Other,
        })?;
        self.filter(a, "AAAA", |ip| ip.to_string())
    }

    pub fn tlsa(&self, name: &str) -> Result<Answer<Tlsa>, DnsError> {
        self.lookup(name, RecordType::TLSA, |rd, _| match rd {
            RData::TLSA(t) => Item::Keep(Tlsa {
                usage: t.cert_usage.into(),
                selector: t.selector.into(),
                mtype: t.matching.into(),
                data: t.cert_data.clone(),
            }),
            _ => Item::Other,
        })
    }

    /// The CNAME record of a name (its target, not followed further).
    pub fn cname(&self, name: &str) -> Result<Answer<String>, DnsError> {
        self.lookup(name, RecordType::CNAME, |rd, _| match rd {
            RData::CNAME(c) => Item::Keep(name_to_text(&c.0)),
            _ => Item::Other,
        })
    }

    /// TLSA records of a service, `_port._proto.host`, always asked with DNSSEC (DO bit, AD
    /// flag) since DANE may use only authenticated answers; the caller reads `authentic`.
    /// `host` is the (already fully qualified) MX or host name, without a trailing dot.
    pub fn tlsa_service(
        &self,
        port: u16,
        proto: &str,
        host: &str,
    ) -> Result<Answer<Tlsa>, DnsError> {
        self.with_dnssec(true)
            .tlsa(&format!("_{port}._{proto}.{host}"))
    }

    fn lookup<T>(
        &self,
        name: &str,
        qtype: RecordType,
        extract: fn(&RData, &mut Ctx) -> Item<T>,
    ) -> Result<Answer<T>, DnsError> {
        let qt = type_name(qtype);
        // One trailing dot is accepted: names are queried as absolute names anyway.
        let orig = name
            .strip_suffix('.')
            .filter(|s| !s.is_empty() && !s.ends_with('.'))
            .unwrap_or(name);
        let invalid = || DnsError::new(DnsErrorKind::NotFound, Form::InvalidName, orig, qt);
        if valid_hostaddr(orig) || (orig != "." && valid_hostname(orig, true).is_err()) {
            return Err(invalid());
        }
        let mut qname = text_to_name(orig).ok_or_else(invalid)?;
        let mut current = orig.to_string();
        let mut dnssec = self.config.dnssec;
        let mut maybe_secure = true;
        let mut chain: Vec<String> = Vec::new();
        let mut seen: Vec<Vec<Vec<u8>>> = vec![name_key(&qname)];
        let mut ttl = u32::MAX;
        let mut ctx = Ctx {
            warnings: Vec::new(),
            current: String::new(),
        };

        for _ in 0..MAX_QUERIES {
            let err = |kind, form, ctx: &mut Ctx, cur: &str| {
                let mut e = DnsError::new(kind, form, cur, qt);
                e.warnings = std::mem::take(&mut ctx.warnings);
                e
            };
            let msg = match self.exchange(&qname, qtype, dnssec) {
                Ok(m) => m,
                Err(Failure::Retry(d)) => {
                    return Err(
                        err(DnsErrorKind::Retry, Form::HErrno, &mut ctx, &current).detail(d)
                    );
                }
                Err(Failure::Malformed(d)) => {
                    return Err(
                        err(DnsErrorKind::Retry, Form::Malformed, &mut ctx, &current).detail(d),
                    );
                }
            };
            let rcode = u16::from(msg.metadata.response_code);
            let kind = match msg.metadata.response_code {
                ResponseCode::NXDomain => Some(DnsErrorKind::NotFound),
                ResponseCode::NoError if msg.answers.is_empty() => Some(DnsErrorKind::NoData),
                ResponseCode::NoError => None,
                _ => Some(DnsErrorKind::Fail),
            };
            if let Some(kind) = kind {
                let mut e = err(kind, Form::HErrno, &mut ctx, &current);
                e.rcode = Some(rcode);
                e.detail = format!("rcode {}", rcode_name(rcode));
                return Err(e);
            }
            let ad = dnssec && msg.metadata.authentic_data;
            let malformed = |kind, ctx: &mut Ctx, cur: &str, d: String| {
                let mut e = err(kind, Form::Malformed, ctx, cur).detail(d);
                e.rcode = Some(rcode);
                e
            };

            // Every answer record: class IN, valid owner name (dns_get_fixed, valid_rr_name).
            for rec in &msg.answers {
                if rec.dns_class != DNSClass::IN {
                    let d = format!("dns_get_fixed: bad class: {}", u16::from(rec.dns_class));
                    ctx.warnings.push(d.clone());
                    return Err(malformed(DnsErrorKind::Retry, &mut ctx, &current, d));
                }
                let owner = name_to_text(&rec.name);
                // An empty owner name is fine for a query of the root (as in Postfix).
                let root_ok = rec.name.is_root() && qname.is_root();
                if !root_ok
                    && !check_rr_name(
                        &owner,
                        "resource name",
                        rec.record_type(),
                        &current,
                        &mut ctx,
                    )
                {
                    return Err(malformed(
                        DnsErrorKind::Inval,
                        &mut ctx,
                        &current,
                        format!("invalid owner name {owner}"),
                    ));
                }
            }

            // Follow the CNAME chain inside this answer.
            let mut owner = qname.clone();
            let mut owner_text = current.clone();
            loop {
                let key = name_key(&owner);
                if msg
                    .answers
                    .iter()
                    .any(|r| r.record_type() == qtype && name_key(&r.name) == key)
                {
                    break;
                }
                let Some(cname) = msg.answers.iter().find_map(|r| match &r.data {
                    RData::CNAME(c) if name_key(&r.name) == key => Some((c.0.clone(), r.ttl)),
                    _ => None,
                }) else {
                    break;
                };
                let target = name_to_text(&cname.0);
                if !check_rr_name(
                    &target,
                    "resource data",
                    RecordType::CNAME,
                    &current,
                    &mut ctx,
                ) {
                    return Err(malformed(
                        DnsErrorKind::Inval,
                        &mut ctx,
                        &current,
                        format!("invalid CNAME target {target}"),
                    ));
                }
                if !ad {
                    maybe_secure = false;
                }
                let tkey = name_key(&cname.0);
                if seen.contains(&tkey) || chain.len() >= MAX_CNAME_HOPS {
                    ctx.warnings
                        .push(format!("dns_lookup: Name server loop for {target}"));
                    return Err(err(DnsErrorKind::NotFound, Form::Loop, &mut ctx, &target)
                        .detail("CNAME loop"));
                }
                seen.push(tkey);
                chain.push(target.clone());
                ttl = ttl.min(cname.1);
                owner = cname.0;
                owner_text = target;
            }

            // Records of the requested type at the end of the chain.
            let key = name_key(&owner);
            let mut records = Vec::new();
            let mut dropped = false;
            let mut truncated = false;
            let mut rec_ttl = ttl;
            for rec in &msg.answers {
                if rec.record_type() != qtype || name_key(&rec.name) != key {
                    continue;
                }
                ctx.current = current.clone();
                match extract(&rec.data, &mut ctx) {
                    Item::Keep(v) => {
                        if records.len() >= RR_LIST_LIMIT {
                            truncated = true;
                            ctx.warnings.push(format!(
                                "DNS record count limit ({RR_LIST_LIMIT}) exceeded -- dropping excess record(s) after qname={orig} qtype={qt}"
                            ));
                            break;
                        }
                        records.push(v);
                        rec_ttl = rec_ttl.min(rec.ttl);
                    }
                    Item::Drop => dropped = true,
                    Item::NullMx => {
                        return Err(err(DnsErrorKind::NullMx, Form::NullMx, &mut ctx, &current)
                            .detail("null MX"));
                    }
                    Item::Other => {}
                }
            }
            if !records.is_empty() {
                return Ok(Answer {
                    records,
                    authentic: dnssec && maybe_secure && ad,
                    canonical_name: owner_text,
                    cname_chain: chain,
                    ttl: rec_ttl,
                    truncated,
                    warnings: ctx.warnings,
                });
            }
            if dropped {
                return Err(malformed(
                    DnsErrorKind::Inval,
                    &mut ctx,
                    &current,
                    "all records dropped".into(),
                ));
            }
            if key == name_key(&qname) {
                return Err(malformed(
                    DnsErrorKind::NotFound,
                    &mut ctx,
                    &current,
                    "no records of the requested type in the answer".into(),
                ));
            }
            // The answer ended in an alias without data: ask for the target.
            if !maybe_secure {
                dnssec = false;
            }
            qname = owner;
            current = owner_text;
        }
        ctx.warnings
            .push(format!("dns_lookup: Name server loop for {current}"));
        let mut e = DnsError::new(DnsErrorKind::NotFound, Form::Loop, &current, qt);
        e.warnings = ctx.warnings;
        Err(e.detail("too many CNAME queries"))
    }

    /// Send one query to the nameservers until one gives a usable reply.
    fn exchange(&self, qname: &Name, qtype: RecordType, dnssec: bool) -> Result<Message, Failure> {
        let servers = &self.config.nameservers;
        let n = servers.len();
        if n == 0 {
            return Err(Failure::Retry("no nameservers configured".into()));
        }
        let start = if self.config.rotate {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        } else {
            0
        };
        let timeout = self.config.timeout.max(Duration::from_millis(1));
        let mut edns = self.config.edns;
        let mut last = String::from("no reply");
        for _attempt in 0..self.config.attempts.max(1) {
            for i in 0..n {
                let server = servers[(start + i) % n];
                loop {
                    let id = random_u16();
                    let query = build_query(id, qname, qtype, edns, dnssec)
                        .map_err(|e| Failure::Retry(format!("cannot encode query: {e}")))?;
                    let want = Want { id, qname, qtype };
                    let result = if self.config.use_vc {
                        tcp_exchange(server, &query, &want, timeout)
                    } else {
                        udp_exchange(server, &query, &want, timeout)
                    };
                    match result {
                        Ok(Reply::Message(msg)) => match msg.metadata.response_code {
                            ResponseCode::ServFail
                            | ResponseCode::Refused
                            | ResponseCode::NotImp => {
                                last = format!(
                                    "{} from {server}",
                                    rcode_name(u16::from(msg.metadata.response_code))
                                );
                                break;
                            }
                            ResponseCode::FormErr if edns => {
                                edns = false;
                                continue;
                            }
                            _ => return Ok(*msg),
                        },
                        Ok(Reply::Malformed(d)) => {
                            return Err(Failure::Malformed(format!("reply from {server}: {d}")));
                        }
                        Err(e) => {
                            last = format!("{server}: {e}");
                            break;
                        }
                    }
                }
            }
        }
        Err(Failure::Retry(last))
    }
}

enum Failure {
    /// No usable reply (h_errno TRY_AGAIN).
    Retry(String),
    /// A reply to our query that does not decode.
    Malformed(String),
}

enum Reply {
    Message(Box<Message>),
    Malformed(String),
}

/// What a reply must match.
struct Want<'a> {
    id: u16,
    qname: &'a Name,
    qtype: RecordType,
}

/// Per-lookup state the record extractors report into.
struct Ctx {
    warnings: Vec<String>,
    current: String,
}

enum Item<T> {
    Keep(T),
    /// Invalid record, dropped with a warning.
    Drop,
    NullMx,
    /// Not the requested type after all.
    Other,
}

fn extract_mx(rd: &RData, ctx: &mut Ctx) -> Item<Mx> {
    let RData::MX(mx) = rd else {
        return Item::Other;
    };
    if mx.exchange.is_root() {
        return Item::NullMx;
    }
    let host = name_to_text(&mx.exchange);
    let current = ctx.current.clone();
    if !check_rr_name(&host, "resource data", RecordType::MX, &current, ctx) {
        return Item::Drop;
    }
    Item::Keep(Mx {
        preference: mx.preference,
        exchange: host,
    })
}

/// Postfix's valid_rr_name(): numeric names pass with a warning, invalid ones fail.
fn check_rr_name(
    name: &str,
    location: &str,
    rtype: RecordType,
    query: &str,
    ctx: &mut Ctx,
) -> bool {
    let (pass, gripe) = if valid_hostaddr(name) {
        (true, "numeric domain name")
    } else if let Err(w) = valid_hostname(name, true) {
        ctx.warnings.push(w);
        (false, "malformed domain name")
    } else {
        return true;
    };
    ctx.warnings.push(format!(
        "{gripe} in {location} of {} record for {query}: {}",
        type_name(rtype),
        trunc100(name)
    ));
    pass
}

fn build_query(
    id: u16,
    qname: &Name,
    qtype: RecordType,
    edns: bool,
    dnssec: bool,
) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.metadata.authentic_data = dnssec;
    msg.add_query(Query::query(qname.clone(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD);
        e.set_version(0);
        e.set_dnssec_ok(dnssec);
        msg.set_edns(e);
    }
    msg.to_vec()
}

enum Classified {
    /// Not a reply to our query: keep waiting.
    Ignore,
    Truncated,
    Reply(Reply),
}

/// Check that `buf` answers `want` (id, QR, opcode, question), then decode it.
fn classify(buf: &[u8], want: &Want<'_>, tcp: bool) -> Classified {
    let mut dec = BinDecoder::new(buf);
    let Ok(header) = Header::read(&mut dec) else {
        return Classified::Ignore;
    };
    let md = header.metadata;
    if md.id != want.id || md.message_type != MessageType::Response || md.op_code != OpCode::Query {
        return Classified::Ignore;
    }
    // glibc accepts a FORMERR without question section; everything else must echo ours.
    let formerr_noq = header.counts.queries == 0 && md.response_code == ResponseCode::FormErr;
    if !formerr_noq {
        if header.counts.queries != 1 {
            return Classified::Ignore;
        }
        let Ok(q) = Query::read(&mut dec) else {
            return Classified::Ignore;
        };
        if q.query_type() != want.qtype
            || q.query_class() != DNSClass::IN
            || name_key(q.name()) != name_key(want.qname)
        {
            return Classified::Ignore;
        }
    }
    if md.truncation && !tcp {
        return Classified::Truncated;
    }
    match Message::from_vec(buf) {
        Ok(m) => Classified::Reply(Reply::Message(Box::new(m))),
        Err(e) => Classified::Reply(Reply::Malformed(e.to_string())),
    }
}

fn udp_exchange(
    server: SocketAddr,
    query: &[u8],
    want: &Want<'_>,
    timeout: Duration,
) -> io::Result<Reply> {
    let deadline = Instant::now() + timeout;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local)?;
    sock.connect(server)?;
    sock.send(query)?;
    let mut buf = vec![0u8; 65535];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timeout"));
        }
        sock.set_read_timeout(Some(deadline - now))?;
        let len = match sock.recv(&mut buf) {
            Ok(len) => len,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timeout"));
            }
            Err(e) => return Err(e),
        };
        match classify(&buf[..len], want, false) {
            Classified::Ignore => continue,
            Classified::Truncated => return tcp_exchange(server, query, want, timeout),
            Classified::Reply(r) => return Ok(r),
        }
    }
}

fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    want: &Want<'_>,
    timeout: Duration,
) -> io::Result<Reply> {
    let deadline = Instant::now() + timeout;
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "timeout"))
    };
    let mut s = TcpStream::connect_timeout(&server, remaining()?)?;
    let _ = s.set_nodelay(true);
    let qlen = u16::try_from(query.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    let mut out = Vec::with_capacity(query.len() + 2);
    out.extend_from_slice(&qlen.to_be_bytes());
    out.extend_from_slice(query);
    s.set_write_timeout(Some(remaining()?))?;
    s.write_all(&out)?;
    let mut len = [0u8; 2];
    s.set_read_timeout(Some(remaining()?))?;
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.set_read_timeout(Some(remaining()?))?;
    s.read_exact(&mut buf)?;
    match classify(&buf, want, true) {
        Classified::Reply(r) => Ok(r),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TCP reply does not match the query",
        )),
    }
}

/// Random 16 bits from the kernel (getrandom), else from std's randomly keyed hasher.
fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: `b` is a valid writable buffer of the length passed.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 2 {
        return u16::from_ne_bytes(b);
    }
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    (h >> 16) as u16
}

fn type_name(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::MX => "MX",
        RecordType::TLSA => "TLSA",
        RecordType::CNAME => "CNAME",
        _ => "UNKNOWN",
    }
}

fn rcode_name(rcode: u16) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        9 => "NOTAUTH".into(),
        n => format!("RCODE{n}"),
    }
}

/// Lower-cased labels, for comparing names.
fn name_key(name: &Name) -> Vec<Vec<u8>> {
    name.iter().map(|l| l.to_ascii_lowercase()).collect()
}

/// A validated text name as a wire name ("." is the root).
fn text_to_name(text: &str) -> Option<Name> {
    if text == "." {
        return Some(Name::root());
    }
    Name::from_labels(text.split('.').map(str::as_bytes)).ok()
}

/// A wire name as text the way dn_expand(3) writes it: no trailing dot, the root as "",
/// special characters escaped with a backslash, others as \DDD.
fn name_to_text(name: &Name) -> String {
    let mut out = String::new();
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            match b {
                b'.' | b';' | b'\\' | b'(' | b')' | b'@' | b'$' | b'"' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                0x21..=0x7e => out.push(char::from(b)),
                _ => out.push_str(&format!("\\{b:03}")),
            }
        }
    }
    out
}

/// `%.100s`.
fn trunc100(s: &str) -> &str {
    match s.char_indices().nth(100) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Postfix's valid_hostname() (labels of letters, digits, '_' and inner hyphens, at most 63
/// characters; not all-numeric; at most 255 characters; optionally a leading "*" label).
/// The error is Postfix's warning text.
pub fn valid_hostname(name: &str, wildcard: bool) -> Result<(), String> {
    let gripe = |what: String| Err(format!("valid_hostname: {what}"));
    if name.is_empty() {
        return gripe("empty hostname".into());
    }
    let bytes = name.as_bytes();
    let mut label_len = 0usize;
    let mut labels = 0usize;
    let mut non_numeric = false;
    for (i, &ch) in bytes.iter().enumerate() {
        let next = bytes.get(i + 1).copied();
        if ch.is_ascii_alphanumeric() || ch == b'_' {
            if label_len == 0 {
                labels += 1;
            }
            label_len += 1;
            if label_len > 63 {
                return gripe(format!("hostname label too long: {}", trunc100(name)));
            }
            if !ch.is_ascii_digit() {
                non_numeric = true;
            }
        } else if wildcard && ch == b'*' {
            if label_len > 0 || labels > 0 || next.is_some_and(|c| c != b'.') {
                return gripe(format!(
                    "'*' can be the first label only: {}",
                    trunc100(name)
                ));
            }
            labels += 1;
            label_len += 1;
            non_numeric = true;
        } else if ch == b'.' {
            if label_len == 0 || next.is_none() {
                return gripe(format!("misplaced delimiter: {}", trunc100(name)));
            }
            label_len = 0;
        } else if ch == b'-' {
            non_numeric = true;
            label_len += 1;
            if label_len == 1 || next.is_none() || next == Some(b'.') {
                return gripe(format!("misplaced hyphen: {}", trunc100(name)));
            }
        } else {
            return gripe(format!(
                "invalid character {ch}(decimal): {}",
                trunc100(name)
            ));
        }
    }
    if !non_numeric {
        return gripe(format!("numeric hostname: {}", trunc100(name)));
    }
    if bytes.len() > 255 {
        return gripe(format!(
            "bad length {} for {}...",
            bytes.len(),
            trunc100(name)
        ));
    }
    Ok(())
}

/// Postfix's valid_hostaddr(): a dotted-quad IPv4 address or an IPv6 address.
pub fn valid_hostaddr(name: &str) -> bool {
    if name.contains(':') {
        return name.parse::<Ipv6Addr>().is_ok();
    }
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() != 4 {
        return false;
    }
    let mut first = None;
    for p in &parts {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let mut v = 0u32;
        for b in p.bytes() {
            v = v * 10 + u32::from(b - b'0');
            if v > 255 {
                return false;
            }
        }
        first.get_or_insert(v);
    }
    // 0.0.0.0 is allowed, 0.1.2.3 is not.
    !(first == Some(0) && name.bytes().any(|b| b != b'0' && b != b'.'))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, TLSA};
    use std::net::TcpListener;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    type Handler = dyn Fn(&Message, bool) -> Vec<Vec<u8>> + Send + Sync;

    /// A scripted DNS server on 127.0.0.1 (UDP and TCP on the same port).
    pub(crate) struct FakeServer {
        addr: SocketAddr,
        /// Queries seen: (over TCP, decoded query).
        seen: Arc<Mutex<Vec<(bool, Message)>>>,
        stop: Arc<AtomicBool>,
        threads: Vec<std::thread::JoinHandle<()>>,
    }

    impl FakeServer {
        pub(crate) fn start(
            handler: impl Fn(&Message, bool) -> Vec<Vec<u8>> + Send + Sync + 'static,
        ) -> Self {
            let handler: Arc<Handler> = Arc::new(handler);
            let (udp, tcp) = loop {
                let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
                if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
                    break (udp, tcp);
                }
            };
            let addr = udp.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            udp.set_read_timeout(Some(Duration::from_millis(10)))
                .unwrap();
            tcp.set_nonblocking(true).unwrap();
            let (h, sn, st) = (handler.clone(), seen.clone(), stop.clone());
            let t1 = std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !st.load(Ordering::Relaxed) {
                    let Ok((len, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(q) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    sn.lock().unwrap().push((false, q.clone()));
                    for r in h(&q, false) {
                        let _ = udp.send_to(&r, peer);
                    }
                }
            });
            let (h, sn, st) = (handler, seen.clone(), stop.clone());
            let t2 = std::thread::spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    let Ok((mut s, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if s.read_exact(&mut buf).is_err() {
                        continue;
                    }
                    let Ok(q) = Message::from_vec(&buf) else {
                        continue;
                    };
                    sn.lock().unwrap().push((true, q.clone()));
                    for r in h(&q, true) {
                        let mut out = (r.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&r);
                        let _ = s.write_all(&out);
                    }
                }
            });
            FakeServer {
                addr,
                seen,
                stop,
                threads: vec![t1, t2],
            }
        }

        pub(crate) fn resolver(&self) -> Resolver {
            Resolver::new(test_config(vec![self.addr]))
        }

        pub(crate) fn queries(&self) -> Vec<(bool, Message)> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Drop for FakeServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    fn test_config(nameservers: Vec<SocketAddr>) -> Config {
        Config {
            timeout: Duration::from_millis(200),
            ..Config::with_nameservers(nameservers)
        }
    }

    pub(crate) fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    /// A reply to `q`, edited by `f`.
    pub(crate) fn reply(q: &Message, f: impl FnOnce(&mut Message)) -> Vec<u8> {
        let mut m = Message::response(q.metadata.id, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.metadata.recursion_available = true;
        m.add_queries(q.queries.clone());
        f(&mut m);
        m.to_vec().unwrap()
    }

    pub(crate) fn qname(q: &Message) -> String {
        name_to_text(q.queries[0].name()).to_ascii_lowercase()
    }

    pub(crate) fn a_rec(owner: &str, ip: [u8; 4]) -> Record {
        Record::from_rdata(name(owner), 300, RData::A(A::from(Ipv4Addr::from(ip))))
    }

    pub(crate) fn cname_rec(owner: &str, target: &str) -> Record {
        Record::from_rdata(name(owner), 60, RData::CNAME(CNAME(name(target))))
    }

    pub(crate) fn mx_rec(owner: &str, pref: u16, exchange: Name) -> Record {
        Record::from_rdata(name(owner), 300, RData::MX(MX::new(pref, exchange)))
    }

    fn rcode_server(rcode: ResponseCode) -> FakeServer {
        FakeServer::start(move |q, _| vec![reply(q, |m| m.metadata.response_code = rcode)])
    }

    #[test]
    fn a_aaaa_and_mx_answers() {
        let srv = FakeServer::start(|q, _| {
            let n = q.queries[0].name().clone();
            vec![reply(q, |m| match q.queries[0].query_type() {
                RecordType::A => {
                    m.add_answer(a_rec("host.example.", [192, 0, 2, 1]));
                    m.add_answer(Record::from_rdata(
                        n,
                        100,
                        RData::A(A::from(Ipv4Addr::new(192, 0, 2, 2))),
                    ));
                }
                RecordType::AAAA => {
                    m.add_answer(Record::from_rdata(
                        n,
                        300,
                        RData::AAAA(AAAA::from("2001:db8::1".parse::<Ipv6Addr>().unwrap())),
                    ));
                }
                RecordType::MX => {
                    m.add_answer(mx_rec("example.", 20, name("mx2.example.")));
                    m.add_answer(mx_rec("example.", 10, name("mx1.example.")));
                }
                _ => {}
            })]
        });
        let r = srv.resolver();
        let a = r.a("host.example").unwrap();
        assert_eq!(
            a.records,
            vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)]
        );
        assert_eq!(a.ttl, 100);
        assert_eq!(a.canonical_name, "host.example");
        assert!(a.cname_chain.is_empty() && !a.authentic && !a.truncated);
        let aaaa = r.aaaa("host.example.").unwrap();
        assert_eq!(
            aaaa.records,
            vec!["2001:db8::1".parse::<Ipv6Addr>().unwrap()]
        );
        let mx = r.mx("Example").unwrap();
        assert_eq!(
            mx.records,
            vec![
                Mx {
                    preference: 20,
                    exchange: "mx2.example".into()
                },
                Mx {
                    preference: 10,
                    exchange: "mx1.example".into()
                },
            ]
        );
        assert!(mx.warnings.is_empty());
        // Plain queries: RD set, EDNS0 with payload 1232, no DO bit, no AD flag.
        let qs = srv.queries();
        assert_eq!(qs.len(), 3);
        for (tcp, q) in qs {
            assert!(!tcp && q.metadata.recursion_desired && !q.metadata.authentic_data);
            let e = q.edns.as_ref().expect("EDNS0");
            assert_eq!(e.max_payload(), EDNS_PAYLOAD);
            assert!(!e.flags().dnssec_ok);
        }
    }

    #[test]
    fn tlsa_records() {
        let srv = FakeServer::start(|q, _| {
            vec![reply(q, |m| {
                m.add_answer(Record::from_rdata(
                    name("_25._tcp.mx.example."),
                    300,
                    RData::TLSA(TLSA::new(3.into(), 1.into(), 1.into(), vec![0xab; 32])),
                ));
            })]
        });
        let t = srv.resolver().tlsa("_25._tcp.mx.example").unwrap();
        assert_eq!(t.records.len(), 1);
        let (u, s, m, d) = t.records[0].clone().into();
        assert_eq!((u, s, m, d), (3, 1, 1, vec![0xab; 32]));
    }

    #[test]
    fn tlsa_service_asks_with_dnssec() {
        let srv = FakeServer::start(|q, _| {
            let n = qname(q);
            vec![reply(q, |m| {
                if n == "_25._tcp.secure.example" {
                    m.metadata.authentic_data = true;
                }
                m.add_answer(Record::from_rdata(
                    Name::from_ascii(format!("{n}.")).unwrap(),
                    300,
                    RData::TLSA(TLSA::new(2.into(), 0.into(), 1.into(), vec![7; 32])),
                ));
            })]
        });
        let r = srv.resolver();
        let t = r.tlsa_service(25, "tcp", "secure.example").unwrap();
        assert!(t.authentic);
        assert_eq!(t.records[0].usage, 2);
        let t = r.tlsa_service(587, "tcp", "plain.example").unwrap();
        assert!(!t.authentic);
        let qs = srv.queries();
        assert_eq!(qname(&qs[0].1), "_25._tcp.secure.example");
        assert_eq!(qname(&qs[1].1), "_587._tcp.plain.example");
        assert!(
            qs.iter()
                .all(|(_, q)| q.edns.as_ref().unwrap().flags().dnssec_ok)
        );
    }

    #[test]
    fn dane_tlsa_lookup_classes() {
        use crate::tls::dane::{self, DaneLookup, TlsaRecord};
        let srv = FakeServer::start(|q, _| {
            let n = qname(q);
            vec![reply(q, |m| {
                m.metadata.authentic_data = !n.contains("unsigned");
                let rec = |u: u8| {
                    Record::from_rdata(
                        Name::from_ascii(format!("{n}.")).unwrap(),
                        300,
                        RData::TLSA(TLSA::new(u.into(), 1.into(), 1.into(), vec![9; 32])),
                    )
                };
                match n.as_str() {
                    "_25._tcp.mx.secure.example"
                    | "_25._tcp.target.example"
                    | "_25._tcp.mx.unsigned.example" => {
                        m.add_answer(rec(3));
                    }
                    "_25._tcp.pkix.example" => {
                        m.add_answer(rec(1));
                    }
                    "_25._tcp.broken.example" => {
                        m.metadata.response_code = ResponseCode::ServFail;
                    }
                    _ => m.metadata.response_code = ResponseCode::NXDomain,
                };
            })]
        });
        let r = srv.resolver();
        let ee = vec![TlsaRecord::new(3, 1, 1, vec![9; 32])];
        let (res, _) = dane::lookup(
            &r,
            25,
            "mx.secure.example",
            "mx.secure.example",
            true,
            false,
        );
        assert_eq!(
            res,
            Ok(DaneLookup::Records {
                base: "mx.secure.example".into(),
                records: ee.clone()
            })
        );
        // The CNAME target is tried first and becomes the base domain.
        let (res, _) = dane::lookup(&r, 25, "alias.example", "target.example", true, false);
        assert_eq!(
            res,
            Ok(DaneLookup::Records {
                base: "target.example".into(),
                records: ee
            })
        );
        // ... and when it has none, the original name.
        let (res, _) = dane::lookup(&r, 25, "mx.secure.example", "nothing.example", true, false);
        assert!(matches!(res, Ok(DaneLookup::Records { base, .. }) if base == "mx.secure.example"));
        // Unsigned answers, NXDOMAIN and usage 1 only.
        let (res, _) = dane::lookup(
            &r,
            25,
            "mx.unsigned.example",
            "mx.unsigned.example",
            true,
            false,
        );
        assert_eq!(res, Ok(DaneLookup::NotFound));
        let (res, _) = dane::lookup(&r, 25, "none.example", "none.example", true, false);
        assert_eq!(res, Ok(DaneLookup::NotFound));
        let (res, w) = dane::lookup(&r, 25, "pkix.example", "pkix.example", true, false);
        assert_eq!(res, Ok(DaneLookup::Unusable));
        assert_eq!(w.len(), 1);
        let (res, w) = dane::lookup(&r, 25, "broken.example", "broken.example", true, false);
        assert!(res.is_err());
        assert!(w[0].starts_with("DANE TLSA lookup problem: "), "{w:?}");
        // An insecure host name gets no TLSA query unless forced.
        let before = srv.queries().len();
        let (res, _) = dane::lookup(
            &r,
            25,
            "mx.secure.example",
            "mx.secure.example",
            false,
            false,
        );
        assert_eq!(res, Ok(DaneLookup::NotFound));
        assert_eq!(srv.queries().len(), before);
        let (res, _) = dane::lookup(
            &r,
            25,
            "mx.secure.example",
            "mx.secure.example",
            false,
            true,
        );
        assert!(matches!(res, Ok(DaneLookup::Records { .. })));
    }

    #[test]
    fn cname_in_answer_and_by_requery() {
        let srv = FakeServer::start(|q, _| {
            let n = qname(q);
            vec![reply(q, |m| match n.as_str() {
                "www.example" => {
                    m.add_answer(cname_rec("www.example.", "web.example."));
                    m.add_answer(cname_rec("web.example.", "host.example."));
                    m.add_answer(a_rec("host.example.", [192, 0, 2, 7]));
                }
                "alias.example" => {
                    m.add_answer(cname_rec("alias.example.", "Target.example."));
                }
                "target.example" => {
                    m.add_answer(a_rec("target.example.", [192, 0, 2, 8]));
                }
                _ => m.metadata.response_code = ResponseCode::NXDomain,
            })]
        });
        let r = srv.resolver();
        let a = r.a("www.example").unwrap();
        assert_eq!(a.records, vec![Ipv4Addr::new(192, 0, 2, 7)]);
        assert_eq!(a.cname_chain, vec!["web.example", "host.example"]);
        assert_eq!(a.canonical_name, "host.example");
        assert_eq!(a.ttl, 60);
        assert_eq!(srv.queries().len(), 1);
        let a = r.a("alias.example").unwrap();
        assert_eq!(a.records, vec![Ipv4Addr::new(192, 0, 2, 8)]);
        assert_eq!(a.cname_chain, vec!["Target.example"]);
        assert_eq!(srv.queries().len(), 3);
    }

    #[test]
    fn cname_loops_are_bounded() {
        let srv = FakeServer::start(|q, _| {
            let n = qname(q);
            vec![reply(q, |m| match n.as_str() {
                "a.example" => {
                    m.add_answer(cname_rec("a.example.", "b.example."));
                }
                "b.example" => {
                    m.add_answer(cname_rec("b.example.", "a.example."));
                }
                "x.example" => {
                    m.add_answer(cname_rec("x.example.", "y.example."));
                    m.add_answer(cname_rec("y.example.", "x.example."));
                }
                // An endless chain of new names: c0 -> c1 -> c2 ...
                _ => {
                    let i: u32 = n[1..n.find('.').unwrap()].parse().unwrap();
                    m.add_answer(cname_rec(
                        &format!("c{i}.example."),
                        &format!("c{}.example.", i + 1),
                    ));
                }
            })]
        });
        let r = srv.resolver();
        let e = r.a("a.example").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::NotFound);
        assert_eq!(e.to_string(), "Name server loop for a.example");
        assert_eq!(srv.queries().len(), 2);
        let e = r.mx("x.example").unwrap_err();
        assert_eq!(e.to_string(), "Name server loop for x.example");
        assert_eq!(srv.queries().len(), 3);
        let e = r.a("c0.example").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::NotFound);
        assert_eq!(e.to_string(), "Name server loop for c10.example");
        assert_eq!(srv.queries().len(), 3 + MAX_QUERIES);
    }

    #[test]
    fn nxdomain_nodata_and_postfix_texts() {
        let srv = FakeServer::start(|q, _| {
            let n = qname(q);
            vec![reply(q, |m| match n.as_str() {
                "example.invalid" => m.metadata.response_code = ResponseCode::NXDomain,
                "alias.example" => {
                    m.add_answer(cname_rec("alias.example.", "nodata.example."));
                }
                _ => {}
            })]
        });
        let r = srv.resolver();
        let e = r.mx("example.invalid").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::NotFound);
        assert!(e.is_not_found());
        assert_eq!(e.rcode, Some(3));
        assert_eq!(
            e.to_string(),
            "Host or domain name not found. Name service error for name=example.invalid type=MX: Host not found"
        );
        let e = r.a("nodata.example").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::NoData);
        assert_eq!(
            e.to_string(),
            "Host or domain name not found. Name service error for name=nodata.example type=A: Host found but no data record of requested type"
        );
        // After a CNAME Postfix names the alias target.
        let e = r.aaaa("alias.example").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Host or domain name not found. Name service error for name=nodata.example type=AAAA: Host found but no data record of requested type"
        );
        assert_eq!(
            e.postfix_text("x.example", "MX"),
            "Host or domain name not found. Name service error for name=x.example type=MX: Host found but no data record of requested type"
        );
        // Invalid query names never reach the wire.
        for bad in ["1.2.3.4", "bad..example", "-x.example", "a b.example"] {
            let e = r.a(bad).unwrap_err();
            assert_eq!(e.kind, DnsErrorKind::NotFound);
            assert_eq!(
                e.to_string(),
                format!("Name service error for {bad}: invalid host or domain name")
            );
        }
        assert_eq!(srv.queries().len(), 4);
    }

    #[test]
    fn servfail_refused_and_other_rcodes() {
        let srv = rcode_server(ResponseCode::ServFail);
        let e = srv.resolver().a("example.com").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::Retry);
        assert_eq!(
            e.to_string(),
            "Host or domain name not found. Name service error for name=example.com type=A: Host not found, try again"
        );
        assert!(e.detail.contains("SERVFAIL"), "{}", e.detail);
        assert_eq!(srv.queries().len(), 2, "attempts=2 rounds");

        let srv = rcode_server(ResponseCode::Refused);
        let e = srv.resolver().mx("example.com").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::Retry);
        assert!(
            e.to_string()
                .ends_with("type=MX: Host not found, try again")
        );

        let srv = rcode_server(ResponseCode::NotAuth);
        let e = srv.resolver().a("example.com").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::Fail);
        assert!(e.to_string().ends_with("type=A: Non-recoverable error"));

        // SERVFAIL from the first server, an answer from the second.
        let bad = rcode_server(ResponseCode::ServFail);
        let good = FakeServer::start(|q, _| {
            vec![reply(q, |m| {
                m.add_answer(a_rec("example.com.", [192, 0, 2, 9]));
            })]
        });
        let r = Resolver::new(test_config(vec![bad.addr, good.addr]));
        assert_eq!(
            r.a("example.com").unwrap().records,
            vec![Ipv4Addr::new(192, 0, 2, 9)]
        );
    }

    #[test]
    fn formerr_to_edns_query_retries_without_edns() {
        let srv = FakeServer::start(|q, _| {
            vec![reply(q, |m| {
                if q.edns.is_some() {
                    m.metadata.response_code = ResponseCode::FormErr;
                } else {
                    m.add_answer(a_rec("old.example.", [192, 0, 2, 10]));
                }
            })]
        });
        let a = srv.resolver().a("old.example").unwrap();
        assert_eq!(a.records, vec![Ipv4Addr::new(192, 0, 2, 10)]);
        let qs = srv.queries();
        assert_eq!(qs.len(), 2);
        assert!(qs[0].1.edns.is_some() && qs[1].1.edns.is_none());
    }

    #[test]
    fn timeout_respects_attempts_and_rotation() {
        let srv = FakeServer::start(|_, _| Vec::new());
        let t0 = Instant::now();
        let e = srv.resolver().a("slow.example").unwrap_err();
        let took = t0.elapsed();
        assert_eq!(e.kind, DnsErrorKind::Retry);
        assert!(e.detail.contains("timeout"), "{}", e.detail);
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
        let qs = srv.queries();
        assert_eq!(qs.len(), 2);
        assert_ne!(qs[0].1.metadata.id, qs[1].1.metadata.id);

        // rotate: consecutive lookups start at different servers.
        let s1 = rcode_server(ResponseCode::NXDomain);
        let s2 = rcode_server(ResponseCode::NXDomain);
        let mut cfg = test_config(vec![s1.addr, s2.addr]);
        cfg.rotate = true;
        let r = Resolver::new(cfg);
        for _ in 0..4 {
            let _ = r.a("x.example");
        }
        assert_eq!((s1.queries().len(), s2.queries().len()), (2, 2));
    }

    #[test]
    fn truncated_udp_retries_over_tcp() {
        let srv = FakeServer::start(|q, tcp| {
            vec![reply(q, |m| {
                if tcp {
                    for i in 0..3 {
                        m.add_answer(a_rec("big.example.", [192, 0, 2, i]));
                    }
                } else {
                    m.metadata.truncation = true;
                }
            })]
        });
        let a = srv.resolver().a("big.example").unwrap();
        assert_eq!(a.records.len(), 3);
        let qs = srv.queries();
        assert_eq!(
            qs.iter().map(|q| q.0).collect::<Vec<_>>(),
            vec![false, true]
        );
    }

    #[test]
    fn mismatched_replies_are_ignored() {
        let srv = FakeServer::start(|q, _| {
            let wrong_id = {
                let mut q2 = q.clone();
                q2.metadata.id = q.metadata.id.wrapping_add(1);
                reply(&q2, |m| {
                    m.add_answer(a_rec("spoof.example.", [6, 6, 6, 6]));
                })
            };
            let wrong_q = {
                let mut q2 = q.clone();
                q2.queries[0].set_name(name("other.example."));
                reply(&q2, |m| {
                    m.add_answer(a_rec("spoof.example.", [6, 6, 6, 7]));
                })
            };
            let wrong_type = {
                let mut q2 = q.clone();
                q2.queries[0].set_query_type(RecordType::AAAA);
                reply(&q2, |_| {})
            };
            let not_response = {
                let mut v = reply(q, |m| {
                    m.add_answer(a_rec("spoof.example.", [6, 6, 6, 8]));
                });
                v[2] &= 0x7f;
                v
            };
            let right = reply(q, |m| {
                m.add_answer(a_rec("SPOOF.example.", [192, 0, 2, 1]));
            });
            vec![
                wrong_id,
                wrong_q,
                wrong_type,
                not_response,
                vec![1, 2, 3],
                right,
            ]
        });
        let a = srv.resolver().a("spoof.example").unwrap();
        assert_eq!(a.records, vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert_eq!(srv.queries().len(), 1);
    }

    #[test]
    fn dnssec_do_bit_and_ad_propagation() {
        let srv = FakeServer::start(|q, _| {
            let n = qname(q);
            vec![reply(q, |m| {
                m.metadata.authentic_data = !n.starts_with("insecure");
                match n.as_str() {
                    "insecure-alias.example" => {
                        m.add_answer(cname_rec("insecure-alias.example.", "secure.example."))
                    }
                    _ => m.add_answer(a_rec(&format!("{n}."), [192, 0, 2, 1])),
                };
            })]
        });
        let plain = srv.resolver();
        let sec = plain.with_dnssec(true);
        assert!(sec.a("secure.example").unwrap().authentic);
        assert!(!sec.a("insecure.example").unwrap().authentic);
        // AD without asking for DNSSEC is not trusted (no RES_TRUSTAD).
        assert!(!plain.a("secure.example").unwrap().authentic);
        // A CNAME from an unauthenticated reply taints the rest; the follow-up has no DO bit.
        let a = sec.a("insecure-alias.example").unwrap();
        assert!(!a.authentic);
        let qs = srv.queries();
        let flags: Vec<(bool, bool)> = qs
            .iter()
            .map(|(_, q)| {
                (
                    q.edns.as_ref().unwrap().flags().dnssec_ok,
                    q.metadata.authentic_data,
                )
            })
            .collect();
        assert_eq!(
            flags,
            vec![
                (true, true),
                (true, true),
                (false, false),
                (true, true),
                (false, false)
            ]
        );
    }

    #[test]
    fn null_mx_is_distinct() {
        let srv = FakeServer::start(|q, _| {
            vec![reply(q, |m| {
                m.add_answer(mx_rec("nomail.example.", 0, Name::root()));
            })]
        });
        let e = srv.resolver().mx("nomail.example").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::NullMx);
        assert!(!e.is_not_found());
        assert_eq!(
            e.to_string(),
            "Domain nomail.example does not accept mail (nullMX)"
        );
    }

    #[test]
    fn record_count_is_capped() {
        let srv = FakeServer::start(|q, _| {
            vec![reply(q, |m| {
                for i in 0..150u32 {
                    let b = (i + 1).to_be_bytes();
                    m.add_answer(a_rec("many.example.", [10, b[1], b[2], b[3]]));
                }
            })]
        });
        let a = srv.resolver().a("many.example").unwrap();
        assert_eq!(a.records.len(), RR_LIST_LIMIT);
        assert_eq!(a.records[99], Ipv4Addr::new(10, 0, 0, 100));
        assert!(a.truncated);
        assert_eq!(
            a.warnings,
            vec![
                "DNS record count limit (100) exceeded -- dropping excess record(s) after qname=many.example qtype=A"
            ]
        );
    }

    #[test]
    fn invalid_mx_names_are_dropped() {
        let srv = FakeServer::start(|q, _| {
            let n = qname(q);
            vec![reply(q, |m| {
                let bad = Name::from_labels(vec![&b"bad host"[..], b"example"]).unwrap();
                m.add_answer(mx_rec(&format!("{n}."), 10, bad));
                m.add_answer(mx_rec(
                    &format!("{n}."),
                    15,
                    Name::from_labels(vec![&b"-x"[..], b"example"]).unwrap(),
                ));
                if n == "some.example" {
                    m.add_answer(mx_rec(&format!("{n}."), 20, name("good.example.")));
                    m.add_answer(mx_rec(&format!("{n}."), 30, name("192.0.2.1.")));
                }
            })]
        });
        let r = srv.resolver();
        let mx = r.mx("some.example").unwrap();
        assert_eq!(
            mx.records,
            vec![
                Mx {
                    preference: 20,
                    exchange: "good.example".into()
                },
                Mx {
                    preference: 30,
                    exchange: "192.0.2.1".into()
                },
            ]
        );
        assert_eq!(
            mx.warnings,
            vec![
                "valid_hostname: invalid character 92(decimal): bad\\032host.example",
                "malformed domain name in resource data of MX record for some.example: bad\\032host.example",
                "valid_hostname: misplaced hyphen: -x.example",
                "malformed domain name in resource data of MX record for some.example: -x.example",
                "numeric domain name in resource data of MX record for some.example: 192.0.2.1",
            ]
        );
        let e = r.mx("all.example").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::Inval);
        assert_eq!(
            e.to_string(),
            "Name service error for name=all.example type=MX: Malformed or unexpected name server reply"
        );
        assert_eq!(e.warnings.len(), 4);
    }

    #[test]
    fn invalid_owner_or_class_or_unexpected_answer() {
        let srv = FakeServer::start(|q, _| {
            let n = qname(q);
            vec![reply(q, |m| match n.as_str() {
                "owner.example" => {
                    m.add_answer(a_rec("bad_-.example.", [192, 0, 2, 1]));
                }
                "class.example" => {
                    let mut r = a_rec("class.example.", [192, 0, 2, 1]);
                    r.dns_class = DNSClass::CH;
                    m.add_answer(r);
                }
                "cname.example" => {
                    m.add_answer(cname_rec("cname.example.", "bad..x."));
                }
                _ => {
                    m.add_answer(a_rec("elsewhere.example.", [192, 0, 2, 1]));
                }
            })]
        });
        let r = srv.resolver();
        let e = r.a("owner.example").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::Inval);
        assert!(e.warnings[1].starts_with("malformed domain name in resource name of A record"));
        let e = r.a("class.example").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::Retry);
        assert!(
            e.to_string()
                .ends_with("Malformed or unexpected name server reply")
        );
        let e = r.a("other.example").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "Name service error for name=other.example type=A: Malformed or unexpected name server reply"
        );
    }

    #[test]
    fn garbage_never_panics() {
        // Matching header and question, broken body: a malformed reply (DNS_RETRY).
        let srv = FakeServer::start(|q, _| {
            let mut v = reply(q, |m| {
                m.add_answer(a_rec("g.example.", [192, 0, 2, 1]));
            });
            v.truncate(v.len() - 3);
            v[7] = 9; // ANCOUNT
            vec![v]
        });
        let e = srv.resolver().a("g.example").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::Retry);
        assert_eq!(
            e.to_string(),
            "Name service error for name=g.example type=A: Malformed or unexpected name server reply"
        );
        // Pure garbage is not a reply to us: it is ignored until the timeout.
        let srv = FakeServer::start(|_, _| vec![vec![0xff; 40], Vec::new(), vec![0; 12]]);
        let mut cfg = test_config(vec![srv.addr]);
        cfg.attempts = 1;
        let e = Resolver::new(cfg).a("g.example").unwrap_err();
        assert_eq!(e.kind, DnsErrorKind::Retry);
        assert!(e.to_string().ends_with("Host not found, try again"));

        // Every truncation and many byte flips of a real reply, through the whole parser.
        let qn = name("g.example.");
        let want = Want {
            id: 7,
            qname: &qn,
            qtype: RecordType::MX,
        };
        let mut q = Message::new(7, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(qn.clone(), RecordType::MX));
        let good = reply(&q, |m| {
            m.add_answer(cname_rec("g.example.", "h.example."));
            m.add_answer(mx_rec("h.example.", 1, name("mx.h.example.")));
            m.add_answer(mx_rec("h.example.", 2, Name::root()));
        });
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let mut cases: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
        for _ in 0..3000 {
            let mut v = good.clone();
            for _ in 0..1 + next() % 4 {
                let i = next() as usize % v.len();
                v[i] = next() as u8;
            }
            cases.push(v);
        }
        for case in cases {
            let _ = classify(&case, &want, false);
            let _ = classify(&case, &want, true);
            if let Ok(m) = Message::from_vec(&case) {
                for r in &m.answers {
                    let _ = name_to_text(&r.name);
                    let mut ctx = Ctx {
                        warnings: Vec::new(),
                        current: "g.example".into(),
                    };
                    let _ = extract_mx(&r.data, &mut ctx);
                }
            }
        }
    }

    #[test]
    fn resolv_conf_parsing() {
        let text = b"# comment\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nnameserver fe80::1%2\nnameserver 192.0.2.54\noptions timeout:3 attempts:9 rotate\nsearch example.com\n";
        let c = Config::from_resolv_conf(text, None);
        assert_eq!(
            c.nameservers,
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
                SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 2)),
            ]
        );
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.attempts, MAX_ATTEMPTS);
        assert!(c.rotate && !c.use_vc && c.edns && !c.dnssec);
        let c = Config::from_resolv_conf(b"garbage line\n", Some("timeout:1 use-vc"));
        assert_eq!(c.nameservers, vec!["127.0.0.1:53".parse().unwrap()]);
        assert_eq!(
            (c.timeout, c.attempts, c.use_vc),
            (Duration::from_secs(1), 2, true)
        );
        assert_eq!(Config::from_resolv_conf(b"", None), Config::default());
        let _ = Resolver::from_system();
    }

    #[test]
    fn use_vc_goes_straight_to_tcp() {
        let srv = FakeServer::start(|q, _| {
            vec![reply(q, |m| {
                m.add_answer(a_rec("vc.example.", [192, 0, 2, 1]));
            })]
        });
        let mut cfg = test_config(vec![srv.addr]);
        cfg.use_vc = true;
        assert_eq!(Resolver::new(cfg).a("vc.example").unwrap().records.len(), 1);
        assert!(srv.queries()[0].0);
    }

    #[test]
    fn hostname_rules() {
        assert!(valid_hostname("mx-1.example.com", false).is_ok());
        assert!(valid_hostname("_25._tcp.example", false).is_ok());
        assert!(valid_hostname("*.example", true).is_ok());
        assert!(valid_hostname("*.example", false).is_err());
        assert!(valid_hostname("a.*.example", true).is_err());
        assert_eq!(
            valid_hostname("1.2.3", false),
            Err("valid_hostname: numeric hostname: 1.2.3".into())
        );
        assert!(valid_hostname("example.", false).is_err());
        assert!(valid_hostname("ex-.com", false).is_err());
        assert!(valid_hostname(&"a".repeat(64), false).is_err());
        assert!(valid_hostname(&"a".repeat(63), false).is_ok());
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(
            valid_hostname(&long, false)
                .unwrap_err()
                .starts_with("valid_hostname: bad length 259 for ")
        );
        assert!(valid_hostaddr("192.0.2.1") && valid_hostaddr("0.0.0.0") && valid_hostaddr("::1"));
        assert!(
            !valid_hostaddr("0.1.2.3") && !valid_hostaddr("1.2.3") && !valid_hostaddr("256.1.1.1")
        );
        let n = Name::from_labels(vec![&b"a.b"[..], b"c\\d", b"\x01"]).unwrap();
        assert_eq!(name_to_text(&n), "a\\.b.c\\\\d.\\001");
        assert_eq!(name_to_text(&Name::root()), "");
    }
}
