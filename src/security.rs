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
use crate::sasl::{self, AuthCache, Credentials, KeyQuery, MemoryStore, SaslParams};
use crate::session::secure::{Extras, SaslPlan, TlsPlan, serverid};
use crate::table::{Maps, MapsOptions};
use crate::tls::policy::{self, Tables};
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
    for e in maps.open_errors() {
        log::warn(&e.to_string());
    }
    Ok(Some(Mutex::new(maps)))
}

impl Security {
    /// Read the TLS and SASL configuration. `Err`: a fatal configuration error (Postfix
    /// exits; the mail stays queued).
    pub fn from_config(cfg: &Config) -> Result<Security, String> {
        let tls = Settings::from_config(cfg)?;
        let opts = MapsOptions {
            utf8: cfg.bool("smtputf8_enable"),
            fold: true,
        };
        let tls_policy = open_maps(cfg, "smtp_tls_policy_maps", &opts)?;
        let tls_per_site = open_maps(cfg, "smtp_tls_per_site", &opts)?;
        // Postfix sets up its TLS engine only when TLS can be used at all.
        let wanted = tls.level > Level::None || tls_policy.is_some() || tls_per_site.is_some();
        let tls_ctx = if wanted {
            match ClientContext::new(&tls) {
                Ok(c) => Some(c),
                Err(lines) => {
                    for l in lines {
                        log::warn(&l);
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
            // Kept in this process (see the closing notes: not shared through proxymap).
            Some(Mutex::new(AuthCache::new(
                &cache_name,
                Box::new(MemoryStore::default()),
                cfg.time("smtp_sasl_auth_cache_time"),
            )))
        } else {
            None
        };
        let mut local_domains: Vec<String> = cfg
            .list("mydestination")
            .into_iter()
            .filter(|d| !d.contains(':') && !d.starts_with('/'))
            .collect();
        local_domains.push(cfg.get("myorigin"));
        let service = {
            let s = cfg.get("service_name");
            if s.is_empty() {
                cfg.get("process_name")
            } else {
                s
            }
        };
        Ok(Security {
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
            lmtp: cfg.mode() == crate::config::Mode::Lmtp,
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
    /// this reason (Postfix's "TLS policy lookup" failures), already logged.
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
        let res = policy::resolve(&self.tls, dest, host, tables, None);
        for w in &res.warnings {
            log::warn(w);
        }
        let mut pol = match res.result {
            Ok(p) => p,
            Err(e) => {
                log::warn(&format!(
                    "TLS policy lookup for {dest}/{host}: {}",
                    e.reason
                ));
                return Err(Dsn::new(e.status, e.reason));
            }
        };
        if pol.level == Level::None && !level_none_plan {
            return Ok(None);
        }
        // Opportunistic TLS over a private UNIX-domain socket only costs (Postfix).
        if unix && pol.level == Level::May {
            log::warn(
                "smtp_connect_local: opportunistic TLS encryption is not appropriate for unix-domain destinations.",
            );
            pol.level = Level::None;
            return Ok(None);
        }
        Ok(Some(TlsPlan {
            ctx: self.tls_ctx.as_ref(),
            settings: &self.tls,
            policy: pol,
            nexthop: domain,
            host,
            serverid: serverid(&self.service, dest, host, addr, port),
        }))
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
            find(maps, k)
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
        credentials: Result<Option<Credentials>, String>,
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
    ) -> Result<Extras<'a>, Dsn> {
        let tls = self.tls_plan(dest, domain, host, addr, port, unix, force_plain)?;
        let sasl = self
            .credentials(sender, host, dest)
            .map(|c| self.sasl_plan(c, filter));
        Ok(Extras { tls, sasl })
    }
}
