//! Routing: from a next-hop destination to the ordered list of endpoints Postfix's smtp(8)
//! would try, including fallback relays, and the error (with its DSN) when there are none.
//!
//! `dest` parses destination syntax, `select` applies Postfix's address-selection rules
//! over a `Lookup` (the DNS stub in `dns`, or the system resolver in `native`).

pub mod dest;
pub mod dns;
pub mod native;
pub mod select;

use crate::outcome::Dsn;
use crate::session::{Endpoint, Params};
use dest::Dest;
use select::{Lookup, Preference, SelectParams};
use std::net::{IpAddr, SocketAddr};

/// What routing needs beyond the engine's Params.
#[derive(Debug, Clone)]
pub struct RouteParams {
    pub lmtp: bool,
    pub default_port: u16,
    /// MX lookups allowed (smtp_dns_support_level not "disabled", disable_dns_lookups off).
    pub dns: bool,
    pub dnssec: bool,
    pub host_lookup_dns: bool,
    pub host_lookup_native: bool,
    pub fallback_relays: Vec<String>,
    pub relayhost: String,
    pub select: SelectParams,
    /// smtp_dns_reply_filter, when set.
    pub dns_reply_filter: Option<dns::RrFilter>,
}

impl RouteParams {
    pub fn from_config(cfg: &crate::config::Config, p: &Params) -> RouteParams {
        let protos = cfg.list("inet_protocols");
        let all = protos.iter().any(|x| x.eq_ignore_ascii_case("all"));
        let want4 = all || protos.iter().any(|x| x.eq_ignore_ascii_case("ipv4"));
        let want6 = all || protos.iter().any(|x| x.eq_ignore_ascii_case("ipv6"));
        let support = cfg.get("smtp_dns_support_level").to_ascii_lowercase();
        let disabled = cfg.bool("disable_dns_lookups") || support == "disabled";
        let lookup = cfg.list("smtp_host_lookup");
        let mut fallback = cfg.list("smtp_fallback_relay");
        if fallback.is_empty() {
            fallback = cfg.list("fallback_relay");
        }
        let mut my_addrs = own_addresses(&cfg.list("inet_interfaces"));
        my_addrs.extend(own_addresses(&cfg.list("proxy_interfaces")));
        RouteParams {
            lmtp: p.lmtp,
            default_port: p.default_port,
            dns: !disabled,
            dnssec: support == "dnssec",
            host_lookup_dns: !disabled && lookup.iter().any(|x| x.eq_ignore_ascii_case("dns")),
            host_lookup_native: disabled || lookup.iter().any(|x| x.eq_ignore_ascii_case("native")),
            fallback_relays: fallback,
            relayhost: p.relayhost.clone(),
            select: SelectParams {
                want4,
                want6,
                preference: match cfg
                    .get("smtp_address_preference")
                    .to_ascii_lowercase()
                    .as_str()
                {
                    "ipv4" => Preference::Ipv4,
                    "ipv6" => Preference::Ipv6,
                    _ => Preference::Any,
                },
                randomize: cfg.bool("smtp_randomize_addresses"),
                balance: cfg.bool("smtp_balance_inet_protocols"),
                address_limit: p.mx_address_limit,
                ignore_mx_lookup_error: cfg.bool("ignore_mx_lookup_error"),
                defer_if_no_mx_address: cfg.bool("smtp_defer_if_no_mx_address_found"),
                loop_detect: false,
                my_addrs,
                cname_overrides: cfg.bool("smtp_cname_overrides_servername"),
            },
            dns_reply_filter: reply_filter(cfg),
        }
    }
}

/// smtp_dns_reply_filter as a lookup over its tables (opened once; a table that cannot be
/// opened fails its lookups, which fails the DNS lookup softly, as in Postfix).
fn reply_filter(cfg: &crate::config::Config) -> Option<dns::RrFilter> {
    let list = cfg.get("smtp_dns_reply_filter");
    if list.trim().is_empty() {
        return None;
    }
    let title = cfg.name_for("smtp_dns_reply_filter");
    let opts = crate::table::MapsOptions {
        utf8: cfg.bool("smtputf8_enable"),
        fold: true,
    };
    let maps = match crate::table::Maps::open(&title, &list, &opts) {
        Ok(m) => m,
        Err(e) => {
            crate::log::warn(&e.to_string());
            return Some(dns::RrFilter {
                title,
                lookup: std::sync::Arc::new(move |_: &str| Err(e.to_string())),
            });
        }
    };
    for e in maps.open_errors() {
        crate::log::warn(&e.to_string());
    }
    let maps = std::sync::Mutex::new(maps);
    Some(dns::RrFilter {
        title,
        lookup: std::sync::Arc::new(move |rr: &str| {
            maps.lock()
                .unwrap_or_else(|p| p.into_inner())
                .find(rr)
                .map_err(|e| e.to_string())
        }),
    })
}

/// The addresses this host receives mail on, for "loops back to myself".
pub fn own_addresses(list: &[String]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for item in list {
        let item = item.trim_start_matches('[').trim_end_matches(']');
        match item.to_ascii_lowercase().as_str() {
            "all" => out.extend(interface_addresses()),
            "loopback-only" => {
                out.push(IpAddr::from([127, 0, 0, 1]));
                out.push(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
            }
            _ => match item.parse::<IpAddr>() {
                Ok(ip) => out.push(ip),
                Err(_) => {
                    if let Ok(v) = native::getaddrinfo(item) {
                        out.extend(v);
                    }
                }
            },
        }
    }
    out
}

fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifa: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we walk read-only and free once.
    if unsafe { libc::getifaddrs(&mut ifa) } != 0 {
        return out;
    }
    let mut p = ifa;
    while !p.is_null() {
        let i = unsafe { &*p };
        if !i.ifa_addr.is_null() {
            match unsafe { (*i.ifa_addr).sa_family } as i32 {
                libc::AF_INET => {
                    let sin = unsafe { &*(i.ifa_addr as *const libc::sockaddr_in) };
                    out.push(IpAddr::from(
                        u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                    ));
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(i.ifa_addr as *const libc::sockaddr_in6) };
                    out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
        p = i.ifa_next;
    }
    unsafe { libc::freeifaddrs(ifa) };
    out
}

/// One next hop (the destination or a fallback relay) and what it resolved to.
#[derive(Debug)]
pub struct Hop {
    pub nexthop: String,
    pub endpoints: Result<Vec<Endpoint>, Dsn>,
    /// This host is one of the MX hosts: non-MX backups must not be used.
    pub i_am_mx: bool,
    pub is_fallback: bool,
}

/// Resolve a destination and, after it, the fallback relays (SMTP only).
pub fn plan(nexthop: &str, rp: &RouteParams, dns: &dyn Lookup) -> Vec<Hop> {
    let mut hops = Vec::new();
    let mut sites = vec![(nexthop.to_string(), false)];
    if !rp.lmtp {
        sites.extend(rp.fallback_relays.iter().map(|f| (f.clone(), true)));
    }
    for (site, is_fallback) in sites {
        let (endpoints, i_am_mx) = resolve(&site, rp, dns);
        let stop = i_am_mx;
        hops.push(Hop {
            nexthop: site,
            endpoints,
            i_am_mx,
            is_fallback,
        });
        // If we are an MX host for the destination, backups are not ours to use.
        if stop {
            break;
        }
    }
    hops
}

/// Resolve one destination to endpoints.
pub fn resolve(
    site: &str,
    rp: &RouteParams,
    dns: &dyn Lookup,
) -> (Result<Vec<Endpoint>, Dsn>, bool) {
    let dest = match dest::parse(site, rp.lmtp, rp.default_port) {
        Ok(d) => d,
        Err(e) => {
            crate::log::warn(&format!("bad destination \"{site}\": {e}"));
            return (
                Err(Dsn::new("4.3.5", format!("bad destination syntax: {e}"))),
                false,
            );
        }
    };
    match dest {
        Dest::Unix(path) => (Ok(vec![Endpoint::unix(path)]), false),
        Dest::Inet { host, port, mx } => {
            let mut sp = rp.select.clone();
            sp.loop_detect = !rp.lmtp && port == 25;
            let (sel, i_am_mx) = if mx && rp.dns {
                select::domain_addr(dns, &host, &sp)
            } else {
                (select::host_addr(dns, &host, &sp), false)
            };
            let eps = sel.map(|v| {
                v.into_iter()
                    .map(|c| {
                        let mut e = Endpoint::inet(c.host, SocketAddr::new(c.addr, port));
                        e.best_mx = c.best_mx;
                        e.dnssec = c.dnssec;
                        e
                    })
                    .collect()
            });
            (eps, i_am_mx)
        }
    }
}

/// The lookup to use for these settings: the DNS stub for MX records and, per
/// smtp_host_lookup, DNS and/or the system resolver for host addresses.
pub fn system_lookup(rp: &RouteParams) -> Box<dyn Lookup + Send + Sync> {
    lookup_with(rp, dns::Resolver::from_system())
}

/// Like `system_lookup`, asking this resolver (DNSSEC turned on per the settings).
pub fn lookup_with(rp: &RouteParams, resolver: dns::Resolver) -> Box<dyn Lookup + Send + Sync> {
    Box::new(SystemLookup {
        dns: rp.dns.then(|| {
            resolver
                .with_dnssec(rp.dnssec)
                .with_filter(rp.dns_reply_filter.clone())
        }),
        host_dns: rp.host_lookup_dns,
        host_native: rp.host_lookup_native,
    })
}

struct SystemLookup {
    dns: Option<dns::Resolver>,
    host_dns: bool,
    host_native: bool,
}

fn lookup_error(e: &dns::DnsError) -> select::LookupError {
    use select::LookupError as L;
    for w in &e.warnings {
        crate::log::warn(w);
    }
    let text = e.to_string();
    match e.kind {
        dns::DnsErrorKind::NotFound | dns::DnsErrorKind::NoData => L::NotFound(text),
        dns::DnsErrorKind::Fail => L::Fail(text),
        dns::DnsErrorKind::Inval => L::Inval(text),
        dns::DnsErrorKind::NullMx => L::NullMx(text),
        dns::DnsErrorKind::Policy => L::Policy(text),
        _ => L::Retry(text),
    }
}

impl SystemLookup {
    /// Host addresses per smtp_host_lookup: DNS first (with the owner name of the records
    /// found, for smtp_cname_overrides_servername, and whether each answer was
    /// DNSSEC-validated), the system resolver when DNS finds nothing or DNS lookups are off.
    fn lookup(
        &self,
        host: &str,
        want4: bool,
        want6: bool,
    ) -> Result<select::HostFacts, select::LookupError> {
        let mut err = None;
        if self.host_dns
            && let Some(r) = &self.dns
        {
            let mut out = Vec::new();
            let mut name = host.to_string();
            if want4 {
                match r.a(host) {
                    Ok(a) => {
                        name = a.canonical_name.clone();
                        let sec = a.authentic;
                        out.extend(a.records.into_iter().map(|x| (IpAddr::V4(x), sec)));
                    }
                    Err(e) => err = Some(lookup_error(&e)),
                }
            }
            if want6 {
                match r.aaaa(host) {
                    Ok(a) => {
                        if out.is_empty() {
                            name = a.canonical_name.clone();
                        }
                        let sec = a.authentic;
                        out.extend(a.records.into_iter().map(|x| (IpAddr::V6(x), sec)));
                    }
                    // A soft error is not overwritten by a later "not found".
                    Err(e) => {
                        if !matches!(err, Some(select::LookupError::Retry(_))) {
                            err = Some(lookup_error(&e));
                        }
                    }
                }
            }
            if !out.is_empty() {
                return Ok((out, name));
            }
            // Only "not found" lets the system resolver have a go.
            if !matches!(err, Some(select::LookupError::NotFound(_)) | None) || !self.host_native {
                return Err(err.unwrap_or_else(|| {
                    select::LookupError::NotFound(format!("{host}: host not found"))
                }));
            }
        }
        if self.host_native || self.dns.is_none() {
            return native::Native.host(host, want4, want6).map(|v| {
                (
                    v.into_iter().map(|a| (a, false)).collect(),
                    host.to_string(),
                )
            });
        }
        Err(err.unwrap_or_else(|| select::LookupError::NotFound(format!("{host}: host not found"))))
    }
}

impl Lookup for SystemLookup {
    fn host_canonical(
        &self,
        host: &str,
        want4: bool,
        want6: bool,
    ) -> Result<(Vec<IpAddr>, String), select::LookupError> {
        self.lookup(host, want4, want6)
            .map(|(v, n)| (v.into_iter().map(|(a, _)| a).collect(), n))
    }

    fn host_facts(
        &self,
        host: &str,
        want4: bool,
        want6: bool,
    ) -> Result<select::HostFacts, select::LookupError> {
        self.lookup(host, want4, want6)
    }

    fn mx(&self, domain: &str) -> Result<Vec<select::Mx>, select::LookupError> {
        self.mx_facts(domain).map(|(v, _)| v)
    }

    fn mx_facts(
        &self,
        domain: &str,
    ) -> Result<(Vec<select::Mx>, select::MxFacts), select::LookupError> {
        let Some(r) = &self.dns else {
            return Err(select::LookupError::NotFound(format!(
                "no DNS lookups for {domain}"
            )));
        };
        match r.mx(domain) {
            Ok(a) => {
                for w in &a.warnings {
                    crate::log::warn(w);
                }
                let facts = select::MxFacts {
                    qname: domain.to_string(),
                    rname: a.canonical_name.clone(),
                    secure: a.authentic,
                };
                let v = a
                    .records
                    .into_iter()
                    .map(|m| select::Mx {
                        pref: m.preference,
                        host: m.exchange,
                    })
                    .collect();
                Ok((v, facts))
            }
            Err(e) => Err(lookup_error(&e)),
        }
    }

    fn host(
        &self,
        host: &str,
        want4: bool,
        want6: bool,
    ) -> Result<Vec<IpAddr>, select::LookupError> {
        self.lookup(host, want4, want6)
            .map(|(v, _)| v.into_iter().map(|(a, _)| a).collect())
    }
}
