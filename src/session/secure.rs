//! The optional session steps after EHLO: STARTTLS (or TLS from the first byte in wrapper
//! mode) and SASL authentication, in Postfix's order and with its texts.
//!
//! What is decided elsewhere comes in ready-made: the TLS policy for this server (resolved
//! by the delivery loop from main.cf and smtp_tls_policy_maps) and the credentials (looked
//! up in smtp_sasl_password_maps). The session only talks.

use super::conn::IoFailure;
use super::{Failure, Params, Session, io_failure_dsn, reply_dsn};
use crate::log;
use crate::outcome::Dsn;
use crate::sasl::{self, AuthCache, ConnSecurity, Credentials, SaslParams};
use crate::tls::{ClientContext, Level, Policy, Settings, StartProps, TlsInfo};
use std::sync::Mutex;

/// TLS for one server.
pub struct TlsPlan<'a> {
    /// The TLS engine; `None` when it could not be set up (TLS then only if optional).
    pub ctx: Option<&'a ClientContext>,
    pub settings: &'a Settings,
    pub policy: Policy,
    /// The next-hop domain (for nexthop / dot-nexthop matching and SNI).
    pub nexthop: &'a str,
    /// The server's host name.
    pub host: &'a str,
    /// Session-cache identity of the server (service, nexthop, host, address).
    pub serverid: String,
}

/// SASL for one server.
pub struct SaslPlan<'a> {
    pub params: &'a SaslParams,
    /// The password-table lookup: no entry means no AUTH; an error defers. SASL fix:
    /// asked only once the server offered AUTH, as Postfix does (no lookups, and no
    /// table warnings, for servers without AUTH).
    pub credentials: Box<dyn Fn() -> Result<Option<Credentials>, String> + 'a>,
    /// Table title for "lookup error" warnings (e.g. "smtp_sasl_password_maps").
    pub table_title: &'a str,
    /// smtp_sasl_mechanism_filter's `type:table` elements.
    pub filter_table: &'a dyn Fn(&str, &str) -> Result<bool, String>,
    pub cache: Option<&'a Mutex<AuthCache>>,
}

/// Optional steps for a session.
#[derive(Default)]
pub struct Extras<'a> {
    pub tls: Option<TlsPlan<'a>>,
    pub sasl: Option<SaslPlan<'a>>,
    /// Opportunistic TLS was turned off for a UNIX-domain server: warn once connected.
    pub unix_may: bool,
}

fn local(status: &str, text: String, send_quit: bool) -> Failure {
    Failure::new(Dsn::new(status, text), send_quit)
}

impl Session {
    fn start_tls(&mut self, plan: &TlsPlan) -> Result<TlsInfo, Failure> {
        let Some(ctx) = plan.ctx else {
            let (st, text) = crate::tls::smtp::engine_unavailable();
            return Err(local(&st, text, true));
        };
        let namaddr = self.peer.namaddrport();
        let props = StartProps {
            policy: &plan.policy,
            nexthop: plan.nexthop,
            host: plan.host,
            namaddr: &namaddr,
            serverid: &plan.serverid,
            helo: &self.caps.helo,
            timeout: plan.settings.starttls_timeout,
        };
        let mut info = None;
        let mut failure = None;
        // Whatever the server sent before the handshake is thrown away with the old
        // stream's buffer: a reply injected there can never be read as a TLS reply. A
        // failed handshake leaves a closed stream behind.
        let swapped = self
            .conn
            .replace_stream(|old| match ctx.start(old, &props) {
                Ok((stream, i)) => {
                    info = Some(i);
                    Ok(Box::new(stream))
                }
                Err(e) => {
                    failure = Some(e);
                    Err(std::io::Error::other("TLS handshake failed"))
                }
            });
        match (swapped, info, failure) {
            (Ok(()), Some(i), _) => Ok(i),
            (_, _, e) => {
                if let Some(e) = &e {
                    for l in &e.log {
                        // Postfix reports "SSL_connect error to ..." as info; the
                        // library problems and set-up trouble are warnings.
                        if l.starts_with("SSL_connect error to ") {
                            log::info(l);
                        } else {
                            log::warn(l);
                        }
                    }
                }
                self.usable = false;
                self.dont_cache();
                let mut f = local("4.7.5", "Cannot start TLS: handshake failure".into(), false);
                f.tls_failed = plan.policy.level == Level::May;
                Err(f)
            }
        }
    }

    /// After the handshake: log as Postfix does, and insist on a matched certificate where
    /// the level requires one.
    fn tls_established(&mut self, plan: &TlsPlan, info: TlsInfo) -> Result<(), Failure> {
        // Set-up warnings (e.g. "all fingerprints unusable") come before the result, as
        // in Postfix where they are logged before the handshake.
        for w in &info.setup_warnings {
            log::warn(w);
        }
        for d in &info.details {
            log::info(d);
        }
        if let Some(w) = &info.verify_failure {
            log::info(w);
        }
        if let Some(l) = &info.subject_line {
            log::info(l);
        }
        if plan.settings.log_mask & crate::tls::policy::logmask::SUMMARY != 0 {
            log::info(&info.summary(false));
        }
        let enforced = info.enforce();
        // A TLS connection cannot be handed to another process (no tlsproxy): never cache.
        self.dont_cache();
        self.tls = Some(info);
        if let Err((st, text)) = enforced {
            return Err(local(st, text.into(), true));
        }
        Ok(())
    }

    /// smtp_tls_wrappermode: TLS from the first byte, before the greeting.
    pub(super) fn wrap_tls(&mut self, plan: &TlsPlan) -> Result<(), Failure> {
        let info = self.start_tls(plan)?;
        self.tls_wrapped = true;
        self.tls_established(plan, info)
    }

    /// STARTTLS after EHLO, then EHLO again over TLS.
    pub(super) fn starttls(
        &mut self,
        plan: &TlsPlan,
        params: &Params,
        queue_id: &str,
        loop_detect: bool,
        best_mx: bool,
        nexthop: &str,
    ) -> Result<(), Failure> {
        let level = plan.policy.level;
        if let Some(note) = crate::tls::smtp::note_offer(
            plan.settings.note_starttls_offer && self.caps.starttls,
            level,
            plan.host,
        ) {
            log::info(&note);
        }
        if crate::tls::smtp::should_starttls(self.caps.starttls, plan.ctx.is_some(), level) {
            let peer = self.peer.clone();
            let io = |e: IoFailure| {
                Failure::new(
                    io_failure_dsn(&peer, &e, "receiving the STARTTLS response"),
                    false,
                )
            };
            self.conn.set_timeout(plan.settings.starttls_timeout);
            self.conn.queue_cmd("STARTTLS");
            self.conn.flush().map_err(io)?;
            let r = self.read_reply(queue_id).map_err(io)?;
            if r.class() == 2 {
                let info = self.start_tls(plan)?;
                self.tls_wrapped = true;
                self.tls_established(plan, info)?;
                self.conn.set_timeout(params.helo_timeout);
                self.caps.esmtp = true;
                return self.ehlo(params, queue_id, loop_detect, best_mx, nexthop);
            }
            self.caps.starttls = false;
            if level.required() {
                let text = crate::tls::smtp::refused(&self.peer.namaddr(), &r.one_line());
                return Err(Failure::new(reply_dsn(&self.peer, &r, text), true));
            }
        }
        if level.required() {
            let (st, text) = if !self.caps.starttls {
                crate::tls::smtp::not_offered(&self.peer.namaddr())
            } else {
                crate::tls::smtp::engine_unavailable()
            };
            return Err(local(&st, text, true));
        }
        Ok(())
    }

    /// SASL authentication when the server offers AUTH and we have credentials.
    pub(super) fn sasl_login(
        &mut self,
        plan: &SaslPlan,
        params: &Params,
        queue_id: &str,
    ) -> Result<(), Failure> {
        if self.caps.auth.is_empty() && !self.caps.auth_offered {
            return Ok(());
        }
        let offered = self.caps.auth.clone();
        let mechs = sasl::filter_offered(&self.peer, &offered, plan.params, plan.filter_table)
            .map_err(|e| {
                log::warn(&e);
                local("4.3.5", "SASL configuration error".into(), true)
            })?;
        let creds = match (plan.credentials)() {
            Ok(Some(c)) => c,
            Ok(None) => {
                // No password for this server: carry on without AUTH, as Postfix does.
                self.caps.auth.clear();
                self.caps.auth_offered = false;
                return Ok(());
            }
            Err(e) => {
                log::warn(&format!("{queue_id}: {} lookup error", plan.table_title));
                let _ = e;
                return Err(sasl::lookup_error_failure(&self.peer));
            }
        };
        let security = match &self.tls {
            None => ConnSecurity::Plaintext,
            Some(i) if i.matched => ConnSecurity::TlsVerified,
            Some(_) => ConnSecurity::Tls,
        };
        let while_ = if params.lmtp {
            "performing the LHLO handshake"
        } else {
            "performing the EHLO handshake"
        };
        let req = sasl::AuthRequest {
            peer: &self.peer,
            mechanisms: &mechs,
            params: plan.params,
            security,
            credentials: &creds,
            while_,
        };
        // AUTH runs on in the EHLO phase, under smtp_helo_timeout as already set: Postfix
        // does not restart the stream timer for it, which matters with
        // smtp_per_request_deadline (greeting, EHLO and AUTH share one deadline).
        let peer = self.peer.clone();
        let pipelining = self.caps.pipelining;
        let lmtp = self.lmtp;
        let mut guard = plan
            .cache
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()));
        let cache = guard.as_deref_mut();
        let result = sasl::authenticate(&mut self.conn, &req, cache, &mut |c| {
            super::reply::read_reply(c, |w| {
                super::log_reply_warning(&peer, pipelining, lmtp, queue_id, w)
            })
        });
        match result {
            Ok(a) => {
                self.sasl_mechanism = Some(a.mechanism.name().to_string());
                Ok(())
            }
            Err(f) => {
                self.dont_cache();
                Err(f)
            }
        }
    }
}

/// Postfix's session-cache identity of a TLS server: service, nexthop (with its port,
/// if any), host and address.
pub fn serverid(service: &str, nexthop: &str, host: &str, addr: &str) -> String {
    crate::tls::session_cache::serverid_prefix(service, nexthop, host, addr)
}

/// The level a plan would use, for callers deciding about connection caching.
pub fn level_of(plan: Option<&TlsPlan>) -> Level {
    plan.map(|p| p.policy.level).unwrap_or(Level::None)
}
