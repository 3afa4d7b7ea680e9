//! Address selection, as Postfix's smtp_addr.c does it: MX lookup and preference order,
//! the domain's own addresses when there is no MX, null MX, "mail loops back to myself",
//! randomisation among equal preferences, address-family preference and balancing, and
//! the DSN status each lookup failure gets.
//!
//! Lookups go through the `Lookup` trait (the DNS stub, or the system resolver), so the
//! rules here are tested without a network.

use crate::outcome::Dsn;
use std::net::IpAddr;

/// Outcome classes of one DNS lookup, as Postfix's dns_lookup() reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// NXDOMAIN or no records of the type (DNS_NOTFOUND).
    NotFound(String),
    /// Temporary trouble: SERVFAIL, timeout, refused (DNS_RETRY).
    Retry(String),
    /// Permanent trouble (DNS_FAIL).
    Fail(String),
    /// A malformed name or answer (DNS_INVAL).
    Inval(String),
    /// The domain publishes a null MX (DNS_NULLMX).
    NullMx(String),
    /// smtp_dns_reply_filter dropped every record (DNS_POLICY).
    Policy(String),
}

impl LookupError {
    pub fn text(&self) -> &str {
        match self {
            LookupError::NotFound(t)
            | LookupError::Retry(t)
            | LookupError::Fail(t)
            | LookupError::Inval(t)
            | LookupError::NullMx(t)
            | LookupError::Policy(t) => t,
        }
    }
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub pref: u16,
    pub host: String,
}

/// What Postfix keeps of an MX answer for DANE (`iter->mx`): the name asked, the owner
/// name of the records (after CNAMEs), and whether the answer was DNSSEC-validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MxFacts {
    pub qname: String,
    pub rname: String,
    pub secure: bool,
}

/// DNSSEC facts about one server address, for the DANE levels (Postfix's `DNS_RR` qname,
/// rname and dnssec_valid of the address record, and the MX answer that led to it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dnssec {
    /// The MX answer, when the server came from an MX lookup.
    pub mx: Option<MxFacts>,
    /// The host name looked up (MX exchange or destination host).
    pub qname: String,
    /// The name the address records were found under (the end of any CNAME chain).
    pub rname: String,
    /// The address answer was DNSSEC-validated.
    pub secure: bool,
}

/// Addresses with whether each came from a validated answer, and the name they were
/// found under.
pub type HostFacts = (Vec<(IpAddr, bool)>, String);

pub trait Lookup {
    /// MX records of a domain (unsorted, as received).
    fn mx(&self, domain: &str) -> Result<Vec<Mx>, LookupError>;
    /// Addresses of a host in the families wanted, in the order received.
    fn host(&self, host: &str, want4: bool, want6: bool) -> Result<Vec<IpAddr>, LookupError>;
    /// Like `host`, also giving the name the addresses were found under (the end of any
    /// CNAME chain), for smtp_cname_overrides_servername.
    fn host_canonical(
        &self,
        host: &str,
        want4: bool,
        want6: bool,
    ) -> Result<(Vec<IpAddr>, String), LookupError> {
        self.host(host, want4, want6).map(|v| (v, host.to_string()))
    }
    /// Like `mx`, with the DNSSEC facts of the answer (default: not validated).
    fn mx_facts(&self, domain: &str) -> Result<(Vec<Mx>, MxFacts), LookupError> {
        self.mx(domain).map(|v| {
            let f = MxFacts {
                qname: domain.to_string(),
                rname: domain.to_string(),
                secure: false,
            };
            (v, f)
        })
    }
    /// Like `host_canonical`, saying for each address whether its answer was
    /// DNSSEC-validated (default: none is).
    fn host_facts(&self, host: &str, want4: bool, want6: bool) -> Result<HostFacts, LookupError> {
        self.host_canonical(host, want4, want6)
            .map(|(v, n)| (v.into_iter().map(|a| (a, false)).collect(), n))
    }
}

/// One address to try, with its MX preference and host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub host: String,
    pub addr: IpAddr,
    pub pref: u32,
    /// Whether this address belongs to the best (lowest) MX preference.
    pub best_mx: bool,
    /// DNSSEC facts for DANE.
    pub dnssec: Dnssec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    Any,
    Ipv4,
    Ipv6,
}

/// The settings address selection depends on.
#[derive(Debug, Clone)]
pub struct SelectParams {
    pub want4: bool,
    pub want6: bool,
    pub preference: Preference,
    pub randomize: bool,
    pub balance: bool,
    pub address_limit: usize,
    pub ignore_mx_lookup_error: bool,
    pub defer_if_no_mx_address: bool,
    /// Loop detection on (SMTP to port 25).
    pub loop_detect: bool,
    /// Addresses this host receives mail on (inet_interfaces and proxy_interfaces).
    pub my_addrs: Vec<IpAddr>,
    /// smtp_cname_overrides_servername: name servers by their canonical (CNAME target) name.
    pub cname_overrides: bool,
}

/// Result of selection: candidates, or the reason there are none (with its DSN status).
pub type Selection = Result<Vec<Candidate>, Dsn>;

fn soft(d: &Option<Dsn>) -> bool {
    d.as_ref().is_some_and(|d| d.status.starts_with('4'))
}

/// Look up one host's addresses with Postfix's status rules (smtp_addr_one): numeric
/// addresses are used as is, a soft error is never overwritten by a hard one.
fn addr_one(
    dns: &dyn Lookup,
    host: &str,
    pref: u32,
    p: &SelectParams,
    why: &mut Option<Dsn>,
    out: &mut Vec<Candidate>,
) {
    if let Ok(ip) = host.parse::<IpAddr>() {
        if (ip.is_ipv4() && p.want4) || (ip.is_ipv6() && p.want6) {
            out.push(Candidate {
                host: host.to_string(),
                addr: ip,
                pref,
                best_mx: false,
                dnssec: Dnssec {
                    mx: None,
                    qname: host.to_string(),
                    rname: host.to_string(),
                    secure: false,
                },
            });
        }
        return;
    }
    match dns.host_facts(host, p.want4, p.want6) {
        Ok((addrs, rname)) => {
            let name = if p.cname_overrides {
                rname.clone()
            } else {
                host.to_string()
            };
            out.extend(addrs.into_iter().map(|(addr, secure)| Candidate {
                host: name.clone(),
                addr,
                pref,
                best_mx: false,
                dnssec: Dnssec {
                    mx: None,
                    qname: host.to_string(),
                    rname: rname.clone(),
                    secure,
                },
            }))
        }
        Err(e) => {
            let was_soft = soft(why);
            let status = match &e {
                LookupError::Retry(_) => "4.4.3",
                LookupError::Policy(_) => "4.7.0",
                LookupError::Fail(_) => {
                    if was_soft {
                        "4.4.3"
                    } else {
                        "5.4.3"
                    }
                }
                LookupError::Inval(_) | LookupError::NotFound(_) | LookupError::NullMx(_) => {
                    if was_soft {
                        "4.4.4"
                    } else {
                        "5.4.4"
                    }
                }
            };
            *why = Some(Dsn::new(status, e.text()));
        }
    }
}

fn shuffle(v: &mut [Candidate]) {
    // A small xorshift seeded from the clock and pid: enough to spread load, no crate.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ (u64::from(std::process::id()) << 32)
        | 1;
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = (seed % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

fn family_rank(c: &Candidate, pref: Preference) -> u8 {
    match (pref, c.addr.is_ipv4()) {
        (Preference::Ipv4, true) | (Preference::Ipv6, false) => 0,
        (Preference::Ipv4, false) | (Preference::Ipv6, true) => 1,
        (Preference::Any, _) => 0,
    }
}

/// Order by preference (stable, so shuffled or received order survives among equals),
/// then family preference within one MX preference.
fn sort(v: &mut [Candidate], pref: Preference) {
    v.sort_by_key(|c| (c.pref, family_rank(c, pref)));
}

/// smtp_balance_inet_protocols: keep both families represented within the limit.
fn balance(v: Vec<Candidate>, limit: usize) -> Vec<Candidate> {
    let v4 = v.iter().filter(|c| c.addr.is_ipv4()).count();
    let v6 = v.len() - v4;
    if v4 == 0 || v6 == 0 || v.len() <= limit {
        return v;
    }
    let (mut t4, mut t6) = if v6 <= limit / 2 {
        (limit - v6, v6)
    } else if v4 <= limit / 2 {
        (v4, limit - v4)
    } else {
        let first4 = usize::from(v.first().is_some_and(|c| c.addr.is_ipv4()));
        let t4 = (limit + first4) / 2;
        (t4, limit - t4)
    };
    v.into_iter()
        .filter(|c| {
            let t = if c.addr.is_ipv4() { &mut t4 } else { &mut t6 };
            if *t > 0 {
                *t -= 1;
                true
            } else {
                false
            }
        })
        .collect()
}

fn finish_list(mut v: Vec<Candidate>, p: &SelectParams) -> Vec<Candidate> {
    if v.len() > 1 {
        if p.randomize {
            shuffle(&mut v);
        }
        sort(&mut v, p.preference);
        if p.address_limit > 0 && p.balance {
            v = balance(v, p.address_limit);
        }
    }
    v
}

/// Direct host lookup (a bracketed destination, LMTP, or no MX records).
pub fn host_addr(dns: &dyn Lookup, host: &str, p: &SelectParams) -> Selection {
    let mut why = None;
    let mut list = Vec::new();
    addr_one(dns, host, 0, p, &mut why, &mut list);
    if list.is_empty() {
        return Err(why.unwrap_or_else(|| Dsn::new("4.4.4", format!("{host}: host not found"))));
    }
    if p.loop_detect && list.iter().any(|c| p.my_addrs.contains(&c.addr)) {
        return Err(Dsn::new(
            "5.4.6",
            format!("mail for {host} loops back to myself"),
        ));
    }
    let mut list = finish_list(list, p);
    for c in &mut list {
        c.best_mx = true;
    }
    Ok(list)
}

/// MX-based selection for a domain (smtp_domain_addr). Also returns whether this host
/// was found among the MX hosts (so that non-MX backups must not be tried).
pub fn domain_addr(dns: &dyn Lookup, domain: &str, p: &SelectParams) -> (Selection, bool) {
    let (mx, facts) = match dns.mx_facts(domain) {
        Ok(mx) => mx,
        Err(LookupError::NotFound(_)) => return (host_addr(dns, domain, p), false),
        Err(LookupError::NullMx(t)) => return (Err(Dsn::new("5.1.10", t)), false),
        Err(LookupError::Policy(t)) => return (Err(Dsn::new("4.7.0", t)), false),
        Err(e) => {
            let status = match e {
                LookupError::Inval(_) => "5.4.4",
                LookupError::Fail(_) => "5.4.3",
                _ => "4.4.3",
            };
            if p.ignore_mx_lookup_error {
                return (host_addr(dns, domain, p), false);
            }
            return (Err(Dsn::new(status, e.text())), false);
        }
    };
    let mut mx = mx;
    mx.sort_by_key(|m| m.pref);
    let best_pref = mx.first().map(|m| u32::from(m.pref)).unwrap_or(u32::MAX);
    let mut why = None;
    let mut list = Vec::new();
    for m in &mx {
        addr_one(dns, &m.host, u32::from(m.pref), p, &mut why, &mut list);
        if list.len() >= 100 {
            list.truncate(100);
            break;
        }
    }
    if list.is_empty() {
        crate::log::warn(&format!(
            "no MX host for {domain} has a valid address record"
        ));
        let mut d = why.unwrap_or_else(|| {
            Dsn::new(
                "4.4.3",
                format!("no MX host for {domain} has a valid address record"),
            )
        });
        if p.defer_if_no_mx_address && d.status.starts_with('5') {
            d.status.replace_range(0..1, "4");
        }
        return (Err(d), false);
    }
    let best_found = list.first().map(|c| c.pref).unwrap_or(u32::MAX);
    let mut found_myself = false;
    if p.loop_detect
        && let Some(self_pref) = list
            .iter()
            .find(|c| p.my_addrs.contains(&c.addr))
            .map(|c| c.pref)
    {
        found_myself = true;
        // Only MX hosts more preferred than this one are useful.
        list.retain(|c| c.pref < self_pref);
        if list.is_empty() {
            let d = if best_pref != best_found {
                Dsn::new(
                    "4.4.4",
                    format!("unable to find primary relay for {domain}"),
                )
            } else {
                Dsn::new("5.4.6", format!("mail for {domain} loops back to myself"))
            };
            return (Err(d), true);
        }
    }
    let mut list = finish_list(list, p);
    for c in &mut list {
        c.best_mx = c.pref == best_pref;
        c.dnssec.mx = Some(facts.clone());
    }
    (Ok(list), found_myself)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake {
        mx: HashMap<String, Result<Vec<Mx>, LookupError>>,
        hosts: HashMap<String, Result<Vec<IpAddr>, LookupError>>,
    }

    impl Lookup for Fake {
        fn mx(&self, d: &str) -> Result<Vec<Mx>, LookupError> {
            self.mx
                .get(d)
                .cloned()
                .unwrap_or(Err(LookupError::NotFound(format!("nf {d}"))))
        }
        fn host(&self, h: &str, w4: bool, w6: bool) -> Result<Vec<IpAddr>, LookupError> {
            let r = self.hosts.get(h).cloned().unwrap_or(Err(LookupError::NotFound(format!("Host or domain name not found. Name service error for name={h} type=A: Host not found"))))?;
            let v: Vec<IpAddr> = r
                .into_iter()
                .filter(|a| (a.is_ipv4() && w4) || (a.is_ipv6() && w6))
                .collect();
            if v.is_empty() {
                Err(LookupError::NotFound(format!("no addr {h}")))
            } else {
                Ok(v)
            }
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn params() -> SelectParams {
        SelectParams {
            want4: true,
            want6: true,
            preference: Preference::Any,
            randomize: false,
            balance: true,
            address_limit: 5,
            ignore_mx_lookup_error: false,
            defer_if_no_mx_address: false,
            loop_detect: true,
            my_addrs: vec![ip("192.0.2.99")],
            cname_overrides: false,
        }
    }

    fn fake() -> Fake {
        let mut f = Fake {
            mx: HashMap::new(),
            hosts: HashMap::new(),
        };
        f.mx.insert(
            "d.test".into(),
            Ok(vec![
                Mx {
                    pref: 20,
                    host: "mx2.d.test".into(),
                },
                Mx {
                    pref: 10,
                    host: "mx1.d.test".into(),
                },
            ]),
        );
        f.hosts
            .insert("mx1.d.test".into(), Ok(vec![ip("192.0.2.1")]));
        f.hosts.insert(
            "mx2.d.test".into(),
            Ok(vec![ip("192.0.2.2"), ip("2001:db8::2")]),
        );
        f
    }

    #[test]
    fn mx_order_and_best_flag() {
        let (r, me) = domain_addr(&fake(), "d.test", &params());
        let v = r.unwrap_or_default();
        let hosts: Vec<&str> = v.iter().map(|c| c.host.as_str()).collect();
        assert_eq!(hosts, ["mx1.d.test", "mx2.d.test", "mx2.d.test"]);
        assert!(v[0].best_mx && !v[1].best_mx);
        assert!(!me);
    }

    #[test]
    fn no_mx_uses_the_domain_itself() {
        let mut f = fake();
        f.hosts
            .insert("plain.test".into(), Ok(vec![ip("192.0.2.5")]));
        let (r, _) = domain_addr(&f, "plain.test", &params());
        assert_eq!(r.map(|v| v[0].addr), Ok(ip("192.0.2.5")));
    }

    #[test]
    fn nxdomain_bounces_servfail_defers_null_mx() {
        let f = fake();
        let (r, _) = domain_addr(&f, "nx.test", &params());
        assert_eq!(r.err().map(|d| d.status), Some("5.4.4".to_string()));
        let mut f = fake();
        f.mx.insert(
            "sf.test".into(),
            Err(LookupError::Retry("try again".into())),
        );
        let (r, _) = domain_addr(&f, "sf.test", &params());
        assert_eq!(r.err().map(|d| d.status), Some("4.4.3".to_string()));
        f.mx.insert(
            "null.test".into(),
            Err(LookupError::NullMx("null MX".into())),
        );
        let (r, _) = domain_addr(&f, "null.test", &params());
        assert_eq!(r.err().map(|d| d.status), Some("5.1.10".to_string()));
    }

    #[test]
    fn loops_back_to_myself() {
        let mut f = fake();
        f.mx.insert(
            "me.test".into(),
            Ok(vec![
                Mx {
                    pref: 10,
                    host: "self.test".into(),
                },
                Mx {
                    pref: 20,
                    host: "mx2.d.test".into(),
                },
            ]),
        );
        f.hosts
            .insert("self.test".into(), Ok(vec![ip("192.0.2.99")]));
        let (r, me) = domain_addr(&f, "me.test", &params());
        let d = r.err().unwrap_or_else(|| Dsn::new("", ""));
        assert_eq!(
            (d.status.as_str(), d.reason.as_str(), me),
            ("5.4.6", "mail for me.test loops back to myself", true)
        );
        // A backup MX that is me: only better ones are tried.
        f.mx.insert(
            "backup.test".into(),
            Ok(vec![
                Mx {
                    pref: 10,
                    host: "mx1.d.test".into(),
                },
                Mx {
                    pref: 20,
                    host: "self.test".into(),
                },
            ]),
        );
        let (r, me) = domain_addr(&f, "backup.test", &params());
        assert_eq!(r.map(|v| v.len()), Ok(1));
        assert!(me);
    }

    #[test]
    fn families_and_preference() {
        let mut p = params();
        p.want6 = false;
        let (r, _) = domain_addr(&fake(), "d.test", &p);
        assert_eq!(r.map(|v| v.len()), Ok(2));
        let mut p = params();
        p.preference = Preference::Ipv6;
        let (r, _) = domain_addr(&fake(), "d.test", &p);
        let v = r.unwrap_or_default();
        assert_eq!(v[1].addr, ip("2001:db8::2"));
    }

    #[test]
    fn balance_keeps_both_families() {
        let mk = |a: &str| Candidate {
            host: "h".into(),
            addr: ip(a),
            pref: 0,
            best_mx: true,
            dnssec: Dnssec::default(),
        };
        let v: Vec<Candidate> = (1..=6)
            .map(|i| mk(&format!("2001:db8::{i}")))
            .chain([mk("192.0.2.1")])
            .collect();
        let b = balance(v, 5);
        assert_eq!(b.len(), 5);
        assert!(b.iter().any(|c| c.addr.is_ipv4()));
    }

    #[test]
    fn shuffling_spreads_equal_preferences() {
        let mut f = fake();
        f.mx.insert(
            "eq.test".into(),
            Ok(vec![
                Mx {
                    pref: 10,
                    host: "a.test".into(),
                },
                Mx {
                    pref: 10,
                    host: "b.test".into(),
                },
            ]),
        );
        f.hosts.insert("a.test".into(), Ok(vec![ip("192.0.2.10")]));
        f.hosts.insert("b.test".into(), Ok(vec![ip("192.0.2.11")]));
        let mut p = params();
        p.randomize = true;
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..64 {
            if let (Ok(v), _) = domain_addr(&f, "eq.test", &p) {
                firsts.insert(v[0].addr);
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        assert_eq!(firsts.len(), 2);
    }
}
