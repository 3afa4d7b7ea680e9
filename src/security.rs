//! Per-process TLS and SASL set-up, read once from the configuration: the TLS engine and
//! settings, smtp_tls_policy_maps / smtp_tls_per_site, smtp_sasl_password_maps and the
//! SASL options. For each server the delivery loop asks for a ready-made plan
//! (`session::secure::Extras`): the resolved TLS policy and the credentials.
//!
//! Table trouble never bounces mail: a policy lookup error defers (4.7.5 / 4.3.0), a
//! password lookup error defers with Postfix's "local data error".

use crate::config::Config;
use crate::log;
use crate::outcome::Dsn;
use crate::route::dns::Resolver;
use crate::route::select::Dnssec;
use crate::sasl::{self, AuthCache, Credentials, KeyQuery, MemoryStore, SaslParams};
use crate::session::secure::{Extras, SaslPlan, TlsPlan, serverid};
use crate::table::{Maps, MapsOptions};
use crate::tls::dane;
use crate::tls::policy::{self, DaneInput, Tables};
use crate::tls::{ClientContext, Level, Settings};
use std::sync::Mutex;

pub struct Security {
    pub tls: Settings,
    tls_ctx: Option<ClientContext>,
    // Tables are used by one thread at a time (their handles are not thread-safe).
    tls_policy: Option<Mutex<Maps>>,
    tls_per_site: Option<Mutex<Maps>>,
    policy_title: String,
    per_site_title: String,
    pub sasl_enable: bool,
    pub sasl: SaslParams,
    passwords: Option<Mutex<Maps>>,
    password_title: String,
    sender_dependent: bool,
    recipient_delimiter: String,
    local_domains: Vec<String>,
    pub dummy_mail_auth: bool,
    auth_cache: Option<Mutex<AuthCache>>,
    service: String,
    opts: MapsOptions,
    lmtp: bool,
    wrapper_param: String,
    level_param: String,
    dane: DaneParams,
}

/// The settings the DANE levels check (Postfix's dane_init), and the resolver for TLSA.
struct DaneParams {
    /// DNS host lookups on and smtp_dns_support_level = dnssec.
    dnssec_enabled: bool,
    /// SMTP with ignore_mx_lookup_error = yes.
    mx_errors_ignored: bool,
    /// smtp_dns_resolver_options has res_defnames or res_dnsrch.
    resolver_search: bool,
    /// For TLSA lookups; present when `dnssec_enabled`.
    resolver: Option<Resolver>,
}

impl DaneParams {
    fn from_config(cfg: &Config, lmtp: bool) -> DaneParams {
        // The same reading of the DNS settings as the route layer's.
        let support = cfg.get("smtp_dns_support_level").to_ascii_lowercase();
        let dns_on = !cfg.bool("disable_dns_lookups") && support != "disabled";
        let host_dns = cfg
            .list("smtp_host_lookup")
            .iter()
            .any(|x| x.eq_ignore_ascii_case("dns"));
        let dnssec_enabled = dns_on && host_dns && support == "dnssec";
        let resolver_search = cfg
            .get("smtp_dns_resolver_options")
            .split([',', ' ', '\t', '\r', '\n'])
            .any(|o| o == "res_defnames" || o == "res_dnsrch");
        DaneParams {
            dnssec_enabled,
            mx_errors_ignored: !lmtp && cfg.bool("ignore_mx_lookup_error"),
            resolver_search,
            resolver: dnssec_enabled.then(|| Resolver::from_system().with_dnssec(true)),
        }
    }
}

fn find(m: &Mutex<Maps>, key: &str) -> Result<Option<String>, String> {
    m.lock()
        .unwrap_or_else(|p| p.into_inner())
        .find(key)
        .map_err(|e| e.to_string())
}

fn open_maps(cfg: &Config, param: &str, opts: &MapsOptions) -> Result<Option<Mutex<Maps>>, String> {
    let list = cfg.get(param);
    if list.trim().is_empty() {
        return Ok(None);
    }
    let title = cfg.name_for(param);
    let maps = Maps::open(&title, &list, opts).map_err(|e| format!("{title}: {e}"))?;
    // Postfix logs a table that cannot be opened and fails its lookups (mail defers).
    // SASL fix: as an error, the class dict_surrogate() uses in daemons.
    for e in maps.open_errors() {
        log::error(&e.to_string());
    }
    Ok(Some(Mutex::new(maps)))
}

/// TLS policies resolved during one delivery request, by "nexthop:host:port".
#[derive(Default)]
pub struct PolicyCache(
    std::collections::HashMap<String, Result<policy::Policy, policy::PolicyError>>,
);

/// Postfix keeps at most this many policies per request.
const POLICY_CACHE_SIZE: usize = 20;

/// tlsmgr(8)'s socket, when one answers: `private/$tlsmgr_service_name` relative to the
/// queue directory (our working directory under master), or under $queue_directory.
fn tlsmgr_socket(cfg: &Config) -> Option<std::path::PathBuf> {
    let service = match cfg.get("tlsmgr_service_name") {
        s if s.is_empty() => "tlsmgr".to_string(),
        s => s,
    };
    let local = std::path::PathBuf::from("private").join(&service);
    let global = std::path::Path::new(&cfg.get("queue_directory"))
        .join("private")
        .join(&service);
    [local, global]
        .into_iter()
        .find(|p| std::os::unix::net::UnixStream::connect(p).is_ok())
}

/// Where TLS sessions are cached. Under master (or with a reachable Postfix instance),
/// tlsmgr(8) decides, from its own smtp_tls_session_cache_database, and the cache is
/// shared with every other smtp/lmtp process; otherwise sessions stay in this process,
/// when smtp_tls_session_cache_database is set. `tlsmgr`: its socket, when one answered.
fn session_cache(
    cfg: &Config,
    tls: &Settings,
    tlsmgr: Option<&std::path::Path>,
    cache_type: &str,
) -> Option<crate::tls::session_cache::CacheSetup> {
    use crate::tls::session_cache::CacheSetup;
    match tlsmgr {
        Some(path) => {
            let mut client = crate::postfix::tlsmgr::TlsmgrClient::new(
                path.to_path_buf(),
                cache_type,
                cfg.time("ipc_timeout"),
            );
            client.policy().map(|timeout| CacheSetup {
                store: Box::new(client),
                cache_type: cache_type.into(),
                timeout,
            })
        }
        None => CacheSetup::in_process(tls.session_cache_timeout, cache_type),
    }
}

impl Security {
    /// Read the TLS and SASL configuration. `Err`: a fatal configuration error (Postfix
    /// exits; the mail stays queued).
    pub fn from_config(cfg: &Config) -> Result<Security, String> {
        let mut tls = Settings::from_config(cfg)?;
        // Postfix resumes TLS sessions only with a session cache database (through tlsmgr);
        // ours lives in the process, but is on under the same condition.
        if cfg.get("smtp_tls_session_cache_database").trim().is_empty() {
            tls.session_cache_timeout = std::time::Duration::ZERO;
        }
        // Postfix knows one SASL client implementation here: Cyrus (which we speak for).
        let sasl_type = cfg.get("smtp_sasl_type");
        if cfg.bool("smtp_sasl_auth_enable") && !sasl_type.eq_ignore_ascii_case("cyrus") {
            log::warn(&format!(
                "unsupported SASL client implementation: {sasl_type}"
            ));
            return Err("SASL library initialization".into());
        }
        let opts = MapsOptions {
            utf8: cfg.bool("smtputf8_enable"),
            fold: true,
        };
        let tls_policy = open_maps(cfg, "smtp_tls_policy_maps", &opts)?;
        // The obsolete per-site table is not even opened when a policy table is set.
        let tls_per_site = if tls_policy.is_some() {
            if !cfg.get("smtp_tls_per_site").trim().is_empty() {
                log::warn(&format!(
                    "{} ignored when {} is not empty.",
                    cfg.name_for("smtp_tls_per_site"),
                    cfg.name_for("smtp_tls_policy_maps")
                ));
            }
            None
        } else {
            open_maps(cfg, "smtp_tls_per_site", &opts)?
        };
        // Postfix sets up its TLS engine only when TLS can be used at all.
        let wanted = tls.level > Level::None || tls_policy.is_some() || tls_per_site.is_some();
        let tls_ctx = if wanted {
            let tlsmgr = tlsmgr_socket(cfg);
            let cache_type = if cfg
                .name_for("smtp_tls_session_cache_database")
                .starts_with("lmtp")
            {
                "lmtp"
            } else {
                "smtp"
            };
            let cache = session_cache(cfg, &tls, tlsmgr.as_deref(), cache_type);
            match ClientContext::new_with_cache(&tls, cache) {
                Ok(c) => Some(match tlsmgr {
                    // Postfix adds tlsmgr's entropy to OpenSSL's at start-up and before
                    // each handshake. (Without tlsmgr it would disable TLS; OpenSSL 3
                    // seeds itself, so we go on.)
                    Some(path) => {
                        let mut m = crate::postfix::tlsmgr::TlsmgrClient::new(
                            path,
                            cache_type,
                            cfg.time("ipc_timeout"),
                        );
                        let n = usize::try_from(cfg.int("tls_daemon_random_bytes")).unwrap_or(32);
                        c.with_entropy(Box::new(move |n| m.seed(n)), n)
                    }
                    None => c,
                }),
                Err(lines) => {
                    for (level, l) in lines {
                        log::log(level, &l);
                    }
                    None
                }
            }
        } else {
            None
        };
        let sasl_enable = cfg.bool("smtp_sasl_auth_enable");
        let sasl = SaslParams {
            security_options: cfg.get("smtp_sasl_security_options"),
            tls_security_options: cfg.get("smtp_sasl_tls_security_options"),
            tls_verified_security_options: cfg.get("smtp_sasl_tls_verified_security_options"),
            mechanism_filter: cfg.get("smtp_sasl_mechanism_filter"),
            send_authzid: cfg.bool("send_cyrus_sasl_authzid"),
            soft_bounce: cfg.bool("smtp_sasl_auth_soft_bounce"),
        };
        let passwords = if sasl_enable {
            open_maps(cfg, "smtp_sasl_password_maps", &opts)?
        } else {
            None
        };
        let cache_name = cfg.get("smtp_sasl_auth_cache_name");
        let auth_cache = if sasl_enable && !cache_name.is_empty() {
            sasl::cache::check_cache_name(&cache_name)?;
            // SASL fix: like Postfix, keep the cache in the proxy: table through the
            // proxywrite service when it is there (under master: private/ relative to the
            // queue directory; for `outpost send`: that of $queue_directory), shared by all
            // processes and kept across them. Without one, in this process only.
            let local = std::path::PathBuf::from("private/proxywrite");
            let global =
                std::path::Path::new(&cfg.get("queue_directory")).join("private/proxywrite");
            let socket = [local, global]
                .into_iter()
                .find(|p| std::os::unix::net::UnixStream::connect(p).is_ok());
            let store: Box<dyn sasl::CacheStore + Send> = match socket.and_then(|s| {
                sasl::proxy::ProxyStore::new(
                    &cache_name,
                    s,
                    cfg.time("ipc_timeout")
                        .max(std::time::Duration::from_secs(1)),
                )
            }) {
                Some(p) => Box::new(p),
                None => Box::new(MemoryStore::default()),
            };
            Some(Mutex::new(AuthCache::new(
                &cache_name,
                store,
                cfg.time("smtp_sasl_auth_cache_time"),
            )))
        } else {
            None
        };
        // SASL fix: "local" for the sender-dependent bare-localpart keys is Postfix's
        // resolve_local(), i.e. $mydestination (and interface address literals), not
        // $myorigin: a null client (mydestination empty) never tries `user` keys.
        let local_domains: Vec<String> = cfg
            .list("mydestination")
            .into_iter()
            .filter(|d| !d.contains(':') && !d.starts_with('/'))
            .collect();
        let service = {
            let s = cfg.get("service_name");
            if s.is_empty() {
                cfg.get("process_name")
            } else {
                s
            }
        };
        let lmtp = cfg.mode() == crate::config::Mode::Lmtp;
        Ok(Security {
            dane: DaneParams::from_config(cfg, lmtp),
            tls,
            tls_ctx,
            tls_policy,
            tls_per_site,
            policy_title: cfg.name_for("smtp_tls_policy_maps"),
            per_site_title: cfg.name_for("smtp_tls_per_site"),
            sasl_enable,
            sasl,
            passwords,
            password_title: cfg.name_for("smtp_sasl_password_maps"),
            sender_dependent: cfg.bool("smtp_sender_dependent_authentication"),
            recipient_delimiter: cfg.get("recipient_delimiter"),
            local_domains,
            dummy_mail_auth: cfg.bool("smtp_send_dummy_mail_auth"),
            auth_cache,
            service,
            opts,
            lmtp,
            wrapper_param: cfg.name_for("smtp_tls_wrappermode"),
            level_param: cfg.name_for("smtp_tls_security_level"),
        })
    }

    /// The real (smtp_ or lmtp_) name of a TLS parameter, for warnings.
    pub fn tls_param(&self, name: &str) -> String {
        match name {
            "smtp_tls_wrappermode" => self.wrapper_param.clone(),
            "smtp_tls_security_level" => self.level_param.clone(),
            other => other.to_string(),
        }
    }

    /// Whether a TLS level applies at all (for cache labels).
    pub fn global_level(&self) -> Level {
        self.tls.level
    }

    /// The TLS policy for one server. `Ok(None)`: plaintext. `Err`: skip this server with
    /// this reason (Postfix's "TLS policy lookup" failures), already logged. `dnssec`: what
    /// the DNS lookups that found the server said (for the DANE levels).
    #[allow(clippy::too_many_arguments)]
    pub fn tls_plan<'a>(
        &'a self,
        dest: &str,
        domain: &'a str,
        host: &'a str,
        addr: &str,
        port: u16,
        unix: bool,
        force_plain: bool,
        dnssec: &Dnssec,
        unix_may: &mut bool,
        cache: &mut PolicyCache,
    ) -> Result<Option<TlsPlan<'a>>, Dsn> {
        if force_plain {
            return Ok(None);
        }
        // A plan at level "none" is still needed when something must happen for such a
        // server: smtp_tls_note_starttls_offer logs an unused STARTTLS offer, and
        // smtp_tls_wrappermode with a level below "encrypt" is warned about and the
        // server skipped (Postfix checks both whatever the level).
        let level_none_plan = self.tls.note_starttls_offer || self.tls.wrappermode;
        if self.tls_ctx.is_none()
            && self.tls.level == Level::None
            && self.tls_policy.is_none()
            && self.tls_per_site.is_none()
            && !level_none_plan
        {
            return Ok(None);
        }
        let lookup_policy = |k: &str| -> Result<Option<String>, String> {
            match &self.tls_policy {
                Some(m) => find(m, k),
                None => Ok(None),
            }
        };
        let lookup_site = |k: &str| -> Result<Option<String>, String> {
            match &self.tls_per_site {
                Some(m) => find(m, k),
                None => Ok(None),
            }
        };
        let tables = Tables {
            policy: self
                .tls_policy
                .as_ref()
                .map(|_| &lookup_policy as policy::Lookup),
            policy_title: &self.policy_title,
            per_site: self
                .tls_per_site
                .as_ref()
                .map(|_| &lookup_site as policy::Lookup),
            per_site_title: &self.per_site_title,
        };
        let tlsa = || self.tlsa_lookup(host, port, dnssec);
        let dane_in = DaneInput {
            port: (!unix).then_some(port),
            dnssec_enabled: self.dane.dnssec_enabled,
            mx_errors_ignored: self.dane.mx_errors_ignored,
            resolver_search: self.dane.resolver_search,
            mx: dnssec
                .mx
                .as_ref()
                .map(|m| (m.qname.clone(), m.rname.clone(), m.secure)),
            tlsa: &tlsa,
        };
        // Once per server name and port in a request, as Postfix's policy cache: table
        // warnings and TLSA lookups are not repeated for each address.
        let key = format!("{dest}:{host}:{port}");
        let result = match cache.0.get(&key) {
            Some(r) => r.clone(),
            None => {
                let res = policy::resolve(&self.tls, dest, host, tables, Some(&dane_in));
                for w in &res.warnings {
                    log::warn(w);
                }
                if cache.0.len() >= POLICY_CACHE_SIZE {
                    cache.0.clear();
                }
                cache.0.insert(key, res.result.clone());
                res.result
            }
        };
        let mut pol = match result {
            Ok(p) => p,
            Err(e) => {
                // Postfix words the UNIX-domain case differently (host/path).
                log::warn(&if unix {
                    format!("TLS policy lookup error for {host}/{addr}: {}", e.reason)
                } else {
                    format!("TLS policy lookup for {dest}/{host}: {}", e.reason)
                });
                return Err(Dsn::new(e.status, e.reason));
            }
        };
        // Opportunistic TLS over a private UNIX-domain socket only costs: Postfix turns it
        // off, with a warning once connected (Session::open_with).
        if unix && pol.level == Level::May {
            *unix_may = true;
            pol.level = Level::None;
        }
        if pol.level == Level::None && !level_none_plan {
            return Ok(None);
        }
        Ok(Some(TlsPlan {
            ctx: self.tls_ctx.as_ref(),
            settings: &self.tls,
            policy: pol,
            nexthop: domain,
            host,
            serverid: serverid(&self.service, dest, host, addr),
        }))
    }

    /// The TLSA records for a server (asked only when a DANE level needs them).
    fn tlsa_lookup(
        &self,
        host: &str,
        port: u16,
        dnssec: &Dnssec,
    ) -> (Result<dane::DaneLookup, String>, Vec<String>) {
        let Some(r) = &self.dane.resolver else {
            return (Err("no DNS resolver".into()), Vec::new());
        };
        let qname = if dnssec.qname.is_empty() {
            host
        } else {
            &dnssec.qname
        };
        let rname = if dnssec.rname.is_empty() {
            qname
        } else {
            &dnssec.rname
        };
        let found = dane::lookup(
            r,
            port,
            qname,
            rname,
            dnssec.secure,
            self.tls.force_insecure_host_tlsa,
        );
        // The verbose and "dane" log features list the records used.
        use crate::tls::policy::logmask;
        if self.tls.log_mask & (logmask::VERBOSE | logmask::DANE) != 0
            && let Ok(dane::DaneLookup::Records { base, records }) = &found.0
        {
            for rec in records {
                log::info(&format!(
                    "DNSSEC-signed TLSA record: _{port}._tcp.{base}: {}",
                    rec.log_form()
                ));
            }
        }
        found
    }

    /// Credentials for one server (smtp_sasl_password_maps): `None` when SASL is off.
    pub fn credentials(
        &self,
        sender: &str,
        host: &str,
        dest: &str,
    ) -> Option<Result<Option<Credentials>, String>> {
        if !self.sasl_enable {
            return None;
        }
        let Some(maps) = &self.passwords else {
            return Some(Ok(None));
        };
        // SASL fix: a failed lookup is logged as Postfix logs it, the table's own
        // complaint (e.g. "hash:/x is unavailable. open database ...") and then
        // `TYPE:NAME lookup error for "KEY"`; the caller adds "QUEUEID: ... lookup error".
        let find = |key: &str| -> Result<Option<String>, String> {
            let m = maps.lock().unwrap_or_else(|p| p.into_inner());
            m.find(key).map_err(|e| {
                let head = format!("{} lookup error for \"{key}\"", e.table);
                if let Some(why) = e.message.strip_prefix(&format!("{head}: ")) {
                    log::warn(why);
                }
                log::warn(&head);
                e.to_string()
            })
        };
        let local = |d: &str| self.local_domains.iter().any(|l| l.eq_ignore_ascii_case(d));
        let q = KeyQuery {
            sender_dependent: self.sender_dependent,
            lmtp: self.lmtp,
            sender,
            recipient_delimiter: &self.recipient_delimiter,
            is_local_domain: &local,
            host,
            dest,
        };
        Some(sasl::lookup_credentials(&q, &|k: &str, _partial: bool| {
            find(k)
        }))
    }

    /// Label fields Postfix adds when SASL credentials may differ per nexthop/host/sender.
    pub fn sasl_labels(&self) -> (bool, bool) {
        let has = self.sasl_enable && self.passwords.is_some();
        (has, has && self.sender_dependent && !self.lmtp)
    }

    /// The SASL part of a plan.
    pub fn sasl_plan<'a>(
        &'a self,
        credentials: Box<dyn Fn() -> Result<Option<Credentials>, String> + 'a>,
        filter: &'a dyn Fn(&str, &str) -> Result<bool, String>,
    ) -> SaslPlan<'a> {
        SaslPlan {
            params: &self.sasl,
            credentials,
            table_title: &self.password_title,
            filter_table: filter,
            cache: self.auth_cache.as_ref(),
        }
    }

    /// smtp_sasl_mechanism_filter's `type:table` elements.
    pub fn filter_lookup(&self, spec: &str, mech: &str) -> Result<bool, String> {
        Maps::open("smtp_sasl_mechanism_filter", spec, &self.opts)
            .and_then(|m| m.find(mech))
            .map(|v| v.is_some())
            .map_err(|e| e.to_string())
    }

    /// Everything for one server, or why it must be skipped.
    #[allow(clippy::too_many_arguments)]
    pub fn extras<'a>(
        &'a self,
        dest: &str,
        domain: &'a str,
        host: &'a str,
        addr: &str,
        port: u16,
        unix: bool,
        force_plain: bool,
        sender: &str,
        filter: &'a dyn Fn(&str, &str) -> Result<bool, String>,
        dnssec: &Dnssec,
        cache: &mut PolicyCache,
    ) -> Result<Extras<'a>, Dsn> {
        let mut unix_may = false;
        let tls = self.tls_plan(
            dest,
            domain,
            host,
            addr,
            port,
            unix,
            force_plain,
            dnssec,
            &mut unix_may,
            cache,
        )?;
        // The lookup runs when the server has offered AUTH (see SaslPlan::credentials).
        let sasl = self.sasl_enable.then(|| {
            let (sender, host, dest) = (sender.to_string(), host.to_string(), dest.to_string());
            let lookup = move || self.credentials(&sender, &host, &dest).unwrap_or(Ok(None));
            self.sasl_plan(Box::new(lookup), filter)
        });
        Ok(Extras {
            tls,
            sasl,
            unix_may,
        })
    }
}

#[cfg(test)]
mod dane_tests {
    //! The DANE levels end to end through the route layer and a scripted DNS server:
    //! MX answer -> address answer -> endpoint DNSSEC facts -> TLS policy with TLSA.
    use super::*;
    use crate::config::Mode;
    use crate::route::dns::tests::{FakeServer, a_rec, cname_rec, mx_rec, name, qname, reply};
    use crate::route::{self, RouteParams};
    use crate::session::{Endpoint, Params};
    use crate::tls::dane::TlsaRecord;
    use crate::tls::policy::Policy;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::rdata::TLSA;
    use hickory_proto::rr::{RData, Record, RecordType};

    const KEY: [u8; 32] = [0xaa; 32];

    /// Zone `X.test` for each case X: MX 10 mx.X.test (alias.X.test for "cname"),
    /// A 192.0.2.10, TLSA at _25._tcp.mx.X.test. Everything is signed (AD) except the MX of
    /// "insecure" and the address of "unsignedhost".
    fn zone() -> FakeServer {
        FakeServer::start(|q, _| {
            let n = qname(q);
            let case = n
                .trim_end_matches(".test")
                .rsplit('.')
                .next()
                .unwrap_or("")
                .to_string();
            let t = q.queries[0].query_type();
            vec![reply(q, |m| {
                m.metadata.authentic_data = true;
                match t {
                    RecordType::MX => {
                        m.metadata.authentic_data = case != "insecure";
                        let ex = if case.ends_with("cname") || case.ends_with("alias") {
                            "alias"
                        } else {
                            "mx"
                        };
                        m.add_answer(mx_rec(&format!("{n}."), 10, name(&format!("{ex}.{n}."))));
                    }
                    RecordType::CNAME => {
                        m.metadata.authentic_data = case != "unsignedalias";
                        let target = n.replacen("alias.", "mx.", 1);
                        m.add_answer(cname_rec(&format!("{n}."), &format!("{target}.")));
                    }
                    RecordType::A if n.starts_with("alias.") => {
                        // Only "cname" has a signed target.
                        m.metadata.authentic_data = case == "cname";
                        let target = n.replacen("alias.", "mx.", 1);
                        m.add_answer(cname_rec(&format!("{n}."), &format!("{target}.")));
                        m.add_answer(a_rec(&format!("{target}."), [192, 0, 2, 10]));
                    }
                    RecordType::A => {
                        m.metadata.authentic_data = case != "unsignedhost";
                        m.add_answer(a_rec(&format!("{n}."), [192, 0, 2, 10]));
                    }
                    RecordType::TLSA => match case.as_str() {
                        "notlsa" => m.metadata.response_code = ResponseCode::NXDomain,
                        "tlsafail" => m.metadata.response_code = ResponseCode::ServFail,
                        _ => {
                            let usage = if case == "unusable" { 0 } else { 3 };
                            m.add_answer(Record::from_rdata(
                                name(&format!("{n}.")),
                                300,
                                RData::TLSA(TLSA::new(
                                    usage.into(),
                                    1.into(),
                                    1.into(),
                                    KEY.to_vec(),
                                )),
                            ));
                        }
                    },
                    _ => {}
                }
            })]
        })
    }

    /// Route `dest` with these settings and resolve the TLS policy for its first server:
    /// the endpoint, and the policy (None: plaintext) or the deferral.
    fn plan(
        srv: &FakeServer,
        dest: &str,
        set: &[(&str, &str)],
    ) -> (Endpoint, Result<Option<Policy>, Dsn>) {
        let mut cfg = Config::builtin(Mode::Smtp, "smtp");
        cfg.set("inet_protocols", "ipv4");
        cfg.set("smtp_dns_support_level", "dnssec");
        cfg.set("smtp_tls_security_level", "dane");
        for (k, v) in set {
            cfg.set(k, v);
        }
        let rp = RouteParams::from_config(&cfg, &Params::from_config(&cfg));
        let lookup = route::lookup_with(&rp, srv.resolver());
        let hops = route::plan(dest, &rp, &*lookup);
        let ep = match hops.into_iter().next().map(|h| h.endpoints) {
            Some(Ok(v)) if !v.is_empty() => v[0].clone(),
            other => panic!("no endpoint for {dest}: {other:?}"),
        };
        let mut sec = Security::from_config(&cfg).unwrap();
        if sec.dane.resolver.is_some() {
            sec.dane.resolver = Some(srv.resolver().with_dnssec(true));
        }
        let r = sec
            .tls_plan(
                dest,
                dest,
                &ep.name,
                "192.0.2.10",
                25,
                false,
                false,
                &ep.dnssec,
                &mut false,
                &mut PolicyCache::default(),
            )
            .map(|o| o.map(|t| t.policy));
        (ep, r)
    }

    fn tlsa_queries(srv: &FakeServer) -> Vec<String> {
        srv.queries()
            .iter()
            .filter(|(_, q)| q.queries[0].query_type() == RecordType::TLSA)
            .map(|(_, q)| qname(q))
            .collect()
    }

    fn level(r: &Result<Option<Policy>, Dsn>) -> Option<Level> {
        r.as_ref()
            .ok()
            .map(|o| o.as_ref().map_or(Level::None, |p| p.level))
    }

    fn deferral(r: Result<Option<Policy>, Dsn>) -> (String, String) {
        let d = r.err().unwrap_or_else(|| Dsn::new("", "not deferred"));
        (d.status, d.reason)
    }

    #[test]
    fn policies_are_resolved_once_per_server_name_in_a_request() {
        let srv = zone();
        let (ep, _) = plan(&srv, "secure.test", &[]);
        let before = tlsa_queries(&srv).len();
        let mut cfg = Config::builtin(Mode::Smtp, "smtp");
        cfg.set("smtp_dns_support_level", "dnssec");
        cfg.set("smtp_tls_security_level", "dane");
        let mut sec = Security::from_config(&cfg).unwrap();
        sec.dane.resolver = Some(srv.resolver().with_dnssec(true));
        let mut cache = PolicyCache::default();
        let plan_for = |addr: &str, port: u16, cache: &mut PolicyCache| {
            sec.tls_plan(
                "secure.test",
                "secure.test",
                &ep.name,
                addr,
                port,
                false,
                false,
                &ep.dnssec,
                &mut false,
                cache,
            )
            .map(|o| o.map(|t| t.policy.level))
        };
        // Two addresses of one server: one TLSA lookup.
        assert_eq!(
            plan_for("192.0.2.10", 25, &mut cache),
            Ok(Some(Level::Dane))
        );
        assert_eq!(
            plan_for("192.0.2.11", 25, &mut cache),
            Ok(Some(Level::Dane))
        );
        assert_eq!(tlsa_queries(&srv).len(), before + 1);
        // Another port is another policy; a new request starts afresh.
        assert_eq!(
            plan_for("192.0.2.10", 587, &mut cache),
            Ok(Some(Level::Dane))
        );
        assert_eq!(tlsa_queries(&srv).len(), before + 2);
        assert_eq!(
            plan_for("192.0.2.10", 25, &mut PolicyCache::default()),
            Ok(Some(Level::Dane))
        );
        assert_eq!(tlsa_queries(&srv).len(), before + 3);
    }

    #[test]
    fn secure_mx_and_host_with_tlsa_gives_dane_with_records() {
        let srv = zone();
        let (ep, r) = plan(&srv, "secure.test", &[]);
        let mx = ep.dnssec.mx.clone().unwrap();
        assert_eq!(
            (mx.qname.as_str(), mx.rname.as_str()),
            ("secure.test", "secure.test")
        );
        assert!(mx.secure && ep.dnssec.secure);
        assert_eq!(ep.dnssec.qname, "mx.secure.test");
        let p = r.unwrap().unwrap();
        assert_eq!(p.level, Level::Dane);
        assert_eq!(p.tlsa, vec![TlsaRecord::new(3, 1, 1, KEY.to_vec())]);
        assert_eq!(p.dane_base.as_deref(), Some("mx.secure.test"));
        assert_eq!(p.match_names, vec!["mx.secure.test", "secure.test"]);
        assert_eq!(tlsa_queries(&srv), vec!["_25._tcp.mx.secure.test"]);
        // The same from a policy-table entry, with "may" as the global level.
        let (_, r) = plan(
            &srv,
            "secure.test",
            &[
                ("smtp_tls_security_level", "may"),
                ("smtp_tls_policy_maps", "inline:{secure.test=dane-only}"),
            ],
        );
        assert_eq!(level(&r), Some(Level::DaneOnly));
    }

    #[test]
    fn cname_target_is_the_tlsa_base() {
        let srv = zone();
        let (ep, r) = plan(&srv, "cname.test", &[]);
        assert_eq!(
            (ep.dnssec.qname.as_str(), ep.dnssec.rname.as_str()),
            ("alias.cname.test", "mx.cname.test")
        );
        let p = r.unwrap().unwrap();
        assert_eq!(p.dane_base.as_deref(), Some("mx.cname.test"));
        assert_eq!(tlsa_queries(&srv), vec!["_25._tcp.mx.cname.test"]);
    }

    #[test]
    fn signed_alias_to_an_unsigned_host_uses_the_alias_name() {
        let srv = zone();
        let (ep, r) = plan(&srv, "signedalias.test", &[]);
        assert!(!ep.dnssec.secure);
        let p = r.unwrap().unwrap();
        assert_eq!(p.level, Level::Dane);
        assert_eq!(p.dane_base.as_deref(), Some("alias.signedalias.test"));
        assert_eq!(tlsa_queries(&srv), vec!["_25._tcp.alias.signedalias.test"]);
        let (_, r) = plan(&srv, "unsignedalias.test", &[]);
        assert_eq!(level(&r), Some(Level::May));
        assert_eq!(tlsa_queries(&srv).len(), 1, "no second TLSA lookup");
    }

    #[test]
    fn insecure_mx() {
        let srv = zone();
        // Global "dane": the insecure-MX policy defaults to dane (matched, never Verified).
        let (ep, r) = plan(&srv, "insecure.test", &[]);
        assert!(!ep.dnssec.mx.unwrap().secure);
        assert_eq!(level(&r), Some(Level::HalfDane));
        // A policy-table "dane" under global "may": insecure-MX policy may.
        let t = [
            ("smtp_tls_security_level", "may"),
            ("smtp_tls_policy_maps", "inline:{insecure.test=dane}"),
        ];
        let before = tlsa_queries(&srv).len();
        let (_, r) = plan(&srv, "insecure.test", &t);
        assert_eq!(level(&r), Some(Level::May));
        assert_eq!(tlsa_queries(&srv).len(), before, "no TLSA lookup");
        let (_, r) = plan(
            &srv,
            "insecure.test",
            &[("smtp_tls_dane_insecure_mx_policy", "encrypt")],
        );
        assert_eq!(level(&r), Some(Level::Encrypt));
        let (_, r) = plan(
            &srv,
            "insecure.test",
            &[("smtp_tls_security_level", "dane-only")],
        );
        assert_eq!(
            deferral(r),
            ("4.7.5".into(), "non DNSSEC destination".into())
        );
    }

    #[test]
    fn no_tlsa_unusable_tlsa_and_lookup_errors() {
        let srv = zone();
        let (_, r) = plan(&srv, "notlsa.test", &[]);
        assert_eq!(level(&r), Some(Level::May));
        let only = [("smtp_tls_security_level", "dane-only")];
        let (_, r) = plan(&srv, "notlsa.test", &only);
        assert_eq!(
            deferral(r),
            ("4.7.5".into(), "no TLSA records found".into())
        );
        let (_, r) = plan(&srv, "unusable.test", &[]);
        let p = r.unwrap().unwrap();
        assert_eq!((p.level, p.exclusions.as_str()), (Level::Encrypt, "eNULL"));
        let (_, r) = plan(&srv, "unusable.test", &only);
        assert_eq!(
            deferral(r),
            ("4.7.5".into(), "TLSA records unusable".into())
        );
        let (_, r) = plan(&srv, "tlsafail.test", &[]);
        assert_eq!(
            deferral(r),
            (
                "4.7.5".into(),
                "TLSA lookup error for mx.tlsafail.test:25".into()
            )
        );
    }

    #[test]
    fn insecure_host_gets_no_tlsa_lookup_unless_forced() {
        let srv = zone();
        let (ep, r) = plan(&srv, "unsignedhost.test", &[]);
        assert!(ep.dnssec.mx.unwrap().secure && !ep.dnssec.secure);
        assert_eq!(level(&r), Some(Level::May));
        assert!(tlsa_queries(&srv).is_empty());
        let force = [("smtp_tls_force_insecure_host_tlsa_lookup", "yes")];
        let (_, r) = plan(&srv, "unsignedhost.test", &force);
        assert_eq!(level(&r), Some(Level::Dane));
        assert_eq!(tlsa_queries(&srv), vec!["_25._tcp.mx.unsignedhost.test"]);
    }

    #[test]
    fn configuration_that_rules_out_dane() {
        let srv = zone();
        for (set, dest) in [
            (("smtp_dns_support_level", "enabled"), "secure.test"),
            (("smtp_host_lookup", "native"), "[192.0.2.10]"),
            (("ignore_mx_lookup_error", "yes"), "secure.test"),
            (("smtp_dns_resolver_options", "res_defnames"), "secure.test"),
        ] {
            let (_, r) = plan(&srv, dest, &[set]);
            assert_eq!(level(&r), Some(Level::May), "{set:?}");
            let only = ("smtp_tls_security_level", "dane-only");
            let (_, r) = plan(&srv, dest, &[set, only]);
            assert_eq!(
                deferral(r),
                ("4.7.5".into(), "client TLS configuration problem".into()),
                "{set:?}"
            );
        }
        assert!(tlsa_queries(&srv).is_empty());
        // A bracketed destination has no MX: only the host's own status counts.
        let (ep, r) = plan(&srv, "[mx.secure.test]", &[]);
        assert!(ep.dnssec.mx.is_none() && ep.dnssec.secure);
        assert_eq!(level(&r), Some(Level::Dane));
    }
}
