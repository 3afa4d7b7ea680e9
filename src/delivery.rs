//! One delivery request from start to end: the address loop, the per-recipient
//! bookkeeping, and the rules that turn failures into deferrals, bounces, or "try the next
//! server" (Postfix's final-server logic).
//!
//! A recipient is reported exactly once: when it gets a final outcome it is dropped from
//! the request; a soft failure on a server that is not the last one only keeps it for the
//! next server, with an informational log line. Whatever is left after the last server is
//! deferred (or bounced) with the last error.

use crate::log::{self, DeliveryLine, MsgStats};
use crate::message::BodyWriter;
use crate::outcome::{Dsn, Outcome, Status};
use crate::request::{Content, Recipient, Request};
use crate::session::conn::Tracer;
use crate::session::reuse::{self, ConnCache};
use crate::session::{Endpoint, Failure, Params, Peer, Session};
use std::time::SystemTime;

/// How the delivery line for a reported outcome is to be logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogAs {
    /// From the outcome itself.
    Outcome,
    /// With this status word, DSN code and reason (e.g. "deliverable" for probes).
    Custom {
        word: String,
        status: String,
        reason: String,
    },
    /// Not at all.
    Nothing,
}

/// Receives each final recipient outcome (the terminal report, or Postfix's bounce/defer/
/// sent clients) and says how its delivery line is logged.
pub trait Reporter {
    fn report(
        &mut self,
        index: usize,
        rcpt: &Recipient,
        outcome: &Outcome,
        stats: &MsgStats,
    ) -> LogAs;
}

/// Collects outcomes in memory (command line, tests).
#[derive(Default)]
pub struct Collect {
    pub outcomes: Vec<Option<Outcome>>,
}

impl Reporter for Collect {
    fn report(&mut self, index: usize, _r: &Recipient, o: &Outcome, _s: &MsgStats) -> LogAs {
        if self.outcomes.len() <= index {
            self.outcomes.resize(index + 1, None);
        }
        self.outcomes[index] = Some(o.clone());
        LogAs::Outcome
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Still to be delivered.
    Open,
    /// Soft failure on a non-final server: retry on the next one.
    Kept,
    /// Final outcome reported.
    Dropped,
}

pub struct Delivery<'a> {
    pub req: &'a Request,
    pub params: &'a Params,
    reporter: &'a mut dyn Reporter,
    marks: Vec<Mark>,
    pub final_server: bool,
    pub stats: MsgStats,
    /// The last error seen, used for recipients left over at the end.
    pub why: Option<Dsn>,
    /// `host[addr]:port` of the current session, or "none".
    pub relay: String,
    /// Nexthop as the user or qmgr gave it, for texts.
    pub nexthop: String,
    /// Whether a "mail loops back to myself" failure happened.
    pub loop_detected: bool,
    /// Postfix notes line folding once per request.
    pub logged_folding: bool,
    /// Set by a site failure: qmgr should throttle the destination.
    pub hop_status: Option<Dsn>,
    /// Some session of this request went through a whole transaction.
    pub session_completed: bool,
    /// The message content could not be read: the queue file is damaged.
    pub corrupt: bool,
    /// False when fallback relays follow this destination (their servers come later).
    pub final_nexthop: bool,
    /// The connection cache, when there is one (scache(8) under master).
    pub cache: Option<&'a mut dyn ConnCache>,
    /// Look up cached connections / cache new ones (decided per destination).
    pub cache_load: bool,
    pub cache_store: bool,
    /// What qmgr asked for in this request (DEL_REQ_FLAG_CONN_LOAD, _STORE).
    pub cache_request: (bool, bool),
    /// The nexthop under which the first good session is filed (cleared after it).
    request_nexthop: Option<String>,
    /// Servers whose cached connection this request already used.
    cache_used: std::collections::HashSet<String>,
    /// The current session ended in a site failure (Postfix's "throttled").
    site_failed: bool,
    /// TLS policies resolved for this request (per nexthop, host and port).
    tls_policies: crate::security::PolicyCache,
    /// TLS and SASL set-up (none: plaintext, no AUTH).
    pub security: Option<&'a crate::security::Security>,
    /// smtp_generic_maps and header/body checks (none: the message goes out as is).
    pub rewrite: Option<&'a crate::rewrite::Rewrite>,
    /// The destination being tried, as written (request nexthop or fallback relay).
    hop_dest: String,
    /// best_mx_transport: mail that loops back to this host goes to another transport
    /// instead of bouncing. Called per recipient; `Err` is our deferral.
    pub loop_handoff: Option<&'a mut dyn FnMut(usize) -> Result<(), Dsn>>,
}

fn endpoint_key(ep: &Endpoint) -> String {
    match &ep.addr {
        crate::session::Address::Inet(sa) => format!("{}:{}", sa.ip(), sa.port()),
        crate::session::Address::Unix(p) => p.display().to_string(),
    }
}

fn peer_key(p: &Peer) -> String {
    if p.port == 0 {
        p.addr.clone()
    } else {
        format!("{}:{}", p.addr, p.port)
    }
}

impl<'a> Delivery<'a> {
    pub fn new(req: &'a Request, params: &'a Params, reporter: &'a mut dyn Reporter) -> Self {
        Delivery {
            req,
            params,
            reporter,
            marks: vec![Mark::Open; req.recipients.len()],
            final_server: false,
            stats: req.stats,
            why: None,
            relay: "none".into(),
            nexthop: String::new(),
            loop_detected: false,
            logged_folding: false,
            hop_status: None,
            session_completed: false,
            corrupt: false,
            final_nexthop: true,
            cache: None,
            cache_load: false,
            cache_store: false,
            cache_request: (false, false),
            request_nexthop: None,
            cache_used: std::collections::HashSet::new(),
            site_failed: false,
            security: None,
            rewrite: None,
            hop_dest: String::new(),
            loop_handoff: None,
            tls_policies: Default::default(),
        }
    }

    /// Recipients still to be delivered in this session (Postfix's unmarked recipients).
    pub fn open(&self) -> Vec<usize> {
        (0..self.marks.len())
            .filter(|&i| self.marks[i] == Mark::Open)
            .collect()
    }

    pub fn is_open(&self, i: usize) -> bool {
        self.marks.get(i) == Some(&Mark::Open)
    }

    /// Recipients without a final outcome (open or kept).
    pub fn left(&self) -> usize {
        self.marks.iter().filter(|m| **m != Mark::Dropped).count()
    }

    /// After a session: recipients kept for another server become open again.
    pub fn unkeep(&mut self) {
        for m in &mut self.marks {
            if *m == Mark::Kept {
                *m = Mark::Open;
            }
        }
    }

    fn soft(&self, dsn: &Dsn) -> bool {
        dsn.status.starts_with('4') || (dsn.status.starts_with('5') && self.params.soft_bounce)
    }

    fn finish(&mut self, i: usize, mut dsn: Dsn) {
        // smtp_delivery_status_filter comes first, then soft_bounce (as in bounce(3)).
        if let Some(new) = self.params.dsn_filter.as_ref().and_then(|f| f.apply(&dsn)) {
            dsn = new;
        }
        let mut word = None;
        if dsn.status.starts_with('5') && self.params.soft_bounce {
            // soft_bounce: a would-be bounce is deferred, keeping the text; Postfix logs
            // it with its own status word.
            dsn.status.replace_range(0..1, "4");
            word = Some("SOFTBOUNCE");
        }
        let outcome = Outcome::from_dsn(dsn, self.relay.clone());
        self.emit(i, outcome, word);
    }

    fn emit(&mut self, i: usize, outcome: Outcome, word: Option<&str>) {
        let Some(rcpt) = self.req.recipients.get(i) else {
            return;
        };
        self.marks[i] = Mark::Dropped;
        let how = self.reporter.report(i, rcpt, &outcome, &self.stats);
        let (word, status, reason) = match &how {
            LogAs::Nothing => return,
            LogAs::Outcome => (
                word.unwrap_or(outcome.status.word()),
                outcome.dsn.status.as_str(),
                outcome.dsn.reason.as_str(),
            ),
            LogAs::Custom {
                word,
                status,
                reason,
            } => (word.as_str(), status.as_str(), reason.as_str()),
        };
        let line = DeliveryLine {
            queue_id: &self.req.queue_id,
            recipient: &rcpt.address,
            orig_recipient: &rcpt.orig_address,
            relay: &outcome.relay,
            stats: &self.stats,
            dsn_status: status,
            status: word,
            reason,
            resolution: self.params.delay_resolution,
        }
        .format(SystemTime::now());
        log::info(&line);
    }

    /// One recipient failed (RCPT rejected, or an LMTP end-of-data reply).
    pub fn rcpt_fail(&mut self, i: usize, dsn: Dsn) {
        if !self.is_open(i) {
            return;
        }
        if self.soft(&dsn) && !self.final_server {
            log::info(&format!("{}: {}", self.req.queue_id, dsn.reason));
            self.marks[i] = Mark::Kept;
        } else {
            self.finish(i, dsn.clone());
        }
        self.why = Some(dsn);
    }

    /// Every open recipient failed the same way (session or message failure).
    pub fn bulk_fail(&mut self, dsn: Dsn) {
        if self.soft(&dsn) && !self.final_server {
            log::info(&format!("{}: {}", self.req.queue_id, dsn.reason));
            for m in &mut self.marks {
                if *m == Mark::Open {
                    *m = Mark::Kept;
                }
            }
        } else {
            let now = SystemTime::now();
            if self.stats.conn_setup_done.is_none() {
                self.stats.conn_setup_done = Some(now);
            }
            self.stats.deliver_done = Some(now);
            for i in self.open() {
                self.finish(i, dsn.clone());
            }
        }
        self.why = Some(dsn);
    }

    /// A failure of the site rather than of this message (no connection, refused
    /// greeting, lost or timed-out conversation). Besides failing the open recipients, a
    /// deferral here becomes the hop status that tells qmgr to hold back other mail for
    /// this destination ("delivery temporarily suspended"), as Postfix's throttling does.
    pub fn site_fail(&mut self, dsn: Dsn) {
        self.site_failed = true;
        let settles = self.final_server || !self.soft(&dsn);
        let had_open = !self.open().is_empty();
        self.bulk_fail(dsn.clone());
        if settles
            && had_open
            && dsn.status.starts_with('4')
            && self.hop_status.is_none()
            && !self.session_completed
        {
            self.hop_status = Some(dsn);
        }
    }

    /// A recipient was delivered; `reply` is the server's (one-line) reply text.
    #[allow(clippy::too_many_arguments)]
    pub fn rcpt_done(
        &mut self,
        i: usize,
        dsn_status: &str,
        reply: &str,
        host: &str,
        delivered: bool,
        dsn_offered: bool,
    ) {
        if !self.is_open(i) {
            return;
        }
        let mut dsn = Dsn {
            status: dsn_status.to_string(),
            reason: reply.to_string(),
            mta: Some(host.to_string()),
            reply: Some(reply.to_string()),
        };
        if let Some(new) = self.params.dsn_filter.as_ref().and_then(|f| f.apply(&dsn)) {
            dsn = new;
        }
        let mut outcome = Outcome::from_dsn(dsn, self.relay.clone());
        // A 2xx reply is success whatever enhanced code came with it.
        outcome.status = Status::Sent;
        outcome.delivered = delivered;
        outcome.dsn_offered = dsn_offered;
        self.emit(i, outcome, None);
    }

    /// Deliver over the given endpoints in order, as Postfix's address loop does: first
    /// over cached connections (by the request's nexthop, then to the best-preference
    /// servers), then over new connections (or cached ones to backup servers).
    pub fn run(
        &mut self,
        endpoints: &[Endpoint],
        content: &mut dyn Content,
        tracer: &mut dyn FnMut(&Peer) -> Option<Tracer>,
    ) {
        // Servers already used through the cache in this request are not tried again.
        let mut list: Vec<&Endpoint> = endpoints
            .iter()
            .filter(|ep| !self.cache_used.contains(&endpoint_key(ep)))
            .collect();
        let mut sessions = 0;
        let mut addrs = 0;
        if self.cache_load && self.cache.is_some() && !list.is_empty() {
            // By the delivery request's nexthop: may land on any server of the destination.
            if self.request_nexthop.is_some()
                && self.left() > 0
                && let Some((sess, best_mx)) = self.reuse_nexthop(tracer)
            {
                sessions += 1;
                addrs += 1;
                let key = peer_key(&sess.peer);
                list.retain(|ep| endpoint_key(ep) != key);
                if self.params.mx_session_limit > 0 && sessions >= self.params.mx_session_limit {
                    list.clear();
                }
                self.final_server = self.final_nexthop && list.is_empty();
                self.deliver_on(sess, best_mx, content);
            }
            // By address, for the servers of the best preference only.
            let mut k = 0;
            while k < list.len() && self.left() > 0 && list[k].best_mx {
                let ep = list[k];
                match self.reuse_endpoint(ep, tracer) {
                    Some(sess) => {
                        sessions += 1;
                        addrs += 1;
                        list.remove(k);
                        if self.params.mx_session_limit > 0
                            && sessions >= self.params.mx_session_limit
                        {
                            list.clear();
                        }
                        self.final_server = self.final_nexthop && list.get(k).is_none();
                        self.deliver_on(sess, true, content);
                    }
                    None => k += 1,
                }
            }
        }
        // smtp_mx_address_limit caps the addresses tried; smtp_mx_session_limit the
        // sessions that got as far as a transaction. The last allowed one is final.
        let limit = match self.params.mx_address_limit {
            0 => list.len(),
            n => n.saturating_sub(addrs).min(list.len()),
        };
        let mut k = 0;
        while k < limit && self.left() > 0 {
            let ep = list[k];
            k += 1;
            let mut last = k == limit;
            self.final_server = self.final_nexthop && last;
            // Set-up latency and the completion time are measured per session.
            self.stats.conn_setup_done = None;
            self.stats.deliver_done = None;
            self.stats.reuse_count = 0;
            // Cached connections to backup servers are used before new ones.
            let cached = if self.cache_load && !ep.best_mx {
                self.reuse_endpoint(ep, tracer)
            } else {
                None
            };
            let opened = match cached {
                Some(sess) => Ok(sess),
                None => match self.open_new(ep, tracer, false) {
                    Some(r) => r,
                    None => continue,
                },
            };
            // Opportunistic TLS that failed to start: the same server again, in plaintext
            // (Postfix's RETRY_AS_PLAINTEXT), when the mail has waited long enough.
            let opened = match opened {
                Err(f) if f.1.tls_failed && self.plaintext_retry_ok() => {
                    let saved = self.final_server;
                    self.final_server = false;
                    self.relay =
                        f.0.as_ref()
                            .map(|p| p.namaddrport())
                            .unwrap_or("none".into());
                    self.site_fail(f.1.dsn);
                    self.relay = "none".into();
                    self.unkeep();
                    self.final_server = saved;
                    match self.open_new(ep, tracer, true) {
                        Some(r) => r,
                        None => continue,
                    }
                }
                other => other,
            };
            match opened {
                Ok(sess) => {
                    sessions += 1;
                    if self.params.mx_session_limit > 0 && sessions >= self.params.mx_session_limit
                    {
                        last = true;
                        k = limit;
                    }
                    self.final_server = self.final_nexthop && last;
                    self.deliver_on(sess, ep.best_mx, content);
                }
                Err(failed) => {
                    let (
                        peer,
                        Failure {
                            dsn, loop_detected, ..
                        },
                    ) = *failed;
                    if loop_detected {
                        self.loop_detected = true;
                    }
                    match peer {
                        Some(p) => {
                            self.relay = p.namaddrport();
                            self.site_fail(dsn);
                        }
                        None => {
                            // No connection: nothing to report yet, remember why. Postfix
                            // logs failed TCP connects (not UNIX-domain ones) as they happen.
                            if matches!(ep.addr, crate::session::Address::Inet(_)) {
                                log::info(&dsn.reason);
                            }
                            self.why = Some(dsn);
                        }
                    }
                    self.relay = "none".into();
                    self.unkeep();
                }
            }
        }
        if self.left() > 0 && self.final_nexthop {
            self.stats.conn_setup_done = None;
            self.stats.deliver_done = None;
            let dsn = self.why.clone().unwrap_or_else(|| {
                Dsn::new("4.3.0", "server unavailable or unable to receive mail")
            });
            self.fail_all(dsn);
        }
    }

    /// Connect to a new server with the TLS and SASL plan for it. `None`: the server is
    /// skipped (a TLS policy problem, logged; the reason is kept for the final deferral).
    #[allow(clippy::type_complexity)]
    fn open_new(
        &mut self,
        ep: &Endpoint,
        tracer: &mut dyn FnMut(&Peer) -> Option<Tracer>,
        force_plain: bool,
    ) -> Option<Result<Session, Box<(Option<Peer>, Failure)>>> {
        let start = SystemTime::now();
        let peer = Peer::of(ep, &self.params.myhostname);
        let dest = if self.hop_dest.is_empty() {
            self.nexthop.clone()
        } else {
            self.hop_dest.clone()
        };
        let unix = !matches!(ep.addr, crate::session::Address::Inet(_));
        // LMTP: Postfix looks up TLS policy and SASL credentials under the destination
        // without its "unix:" / "inet:" prefix, and a UNIX-domain server's TLS nexthop
        // (certificate matching, SNI) is $myhostname.
        let dest = match dest
            .strip_prefix("unix:")
            .or_else(|| dest.strip_prefix("inet:"))
        {
            Some(d) if self.params.lmtp => d.to_string(),
            _ => dest,
        };
        let domain = if unix {
            self.params.myhostname.clone()
        } else {
            crate::route::dest::cache_names(&dest).0
        };
        let sec = self.security;
        let filter = |spec: &str, mech: &str| -> Result<bool, String> {
            match sec {
                Some(s) => s.filter_lookup(spec, mech),
                None => Ok(false),
            }
        };
        let host = peer.name.clone();
        let extras = match sec {
            Some(s) => {
                match s.extras(
                    &dest,
                    &domain,
                    &host,
                    &peer.addr,
                    peer.port,
                    unix,
                    force_plain,
                    &self.req.sender,
                    &filter,
                    &ep.dnssec,
                    &mut self.tls_policies,
                ) {
                    Ok(x) => {
                        if let Some(t) = &x.tls
                            && !unix
                            && t.settings.wrappermode
                            && let Some(w) = crate::tls::smtp::wrappermode_level_warning(
                                t.policy.level,
                                &s.tls_param("smtp_tls_wrappermode"),
                                &s.tls_param("smtp_tls_security_level"),
                            )
                        {
                            log::warn(&w);
                            return None;
                        }
                        Some(x)
                    }
                    Err(dsn) => {
                        self.why = Some(dsn);
                        return None;
                    }
                }
            }
            None => None,
        };
        let r = Session::open_with(
            ep,
            self.params,
            &self.req.queue_id,
            tracer,
            ep.best_mx,
            &self.nexthop,
            self.req.stats.incoming_arrival,
            extras.as_ref(),
        )
        .map(|mut sess| {
            // TLS connections cannot be handed to another process.
            if self.cache_store && !sess.tls_wrapped {
                sess.expire = Some(start + self.params.reuse_time_limit);
            }
            sess
        });
        Some(r)
    }

    /// Postfix retries a failed opportunistic TLS handshake in plaintext only for mail that
    /// waited at least minimal_backoff_time (or an address probe), and never when SASL
    /// credentials exist.
    fn plaintext_retry_ok(&self) -> bool {
        let Some(sec) = self.security else {
            return false;
        };
        let waited = match (
            self.req.stats.active_arrival,
            self.req.stats.incoming_arrival,
        ) {
            (Some(a), Some(i)) => a.duration_since(i).unwrap_or_default(),
            _ => std::time::Duration::ZERO,
        };
        crate::tls::smtp::retry_plaintext(
            crate::tls::Level::May,
            self.req.trace_only,
            waited,
            self.params.min_backoff,
            sec.sasl_enable && sec.sasl_labels().0,
        )
    }

    /// One session: the transaction, then back to the cache or closed.
    fn deliver_on(&mut self, mut sess: Session, best_mx: bool, content: &mut dyn Content) {
        self.stats.conn_setup_done = None;
        self.stats.deliver_done = None;
        self.stats.reuse_count = 0;
        self.site_failed = false;
        self.relay = sess.peer.namaddrport();
        let body = BodyWriter::new(self.params.line_length_limit);
        crate::transaction::run(&mut sess, self, content, &body);
        self.cleanup_session(sess, best_mx);
        self.relay = "none".into();
        self.unkeep();
    }

    /// The sender field of cache labels: only with sender-dependent SASL credentials.
    fn label_sender(&self) -> Option<&str> {
        let (_, by_sender) = self.security.map(|s| s.sasl_labels()).unwrap_or_default();
        by_sender.then_some(self.req.sender.as_str())
    }

    /// The cache label of a server (Postfix's endpoint label).
    fn endp_label(&self, peer: &Peer) -> String {
        let (sasl, _) = self.security.map(|s| s.sasl_labels()).unwrap_or_default();
        reuse::label(&reuse::LabelParts {
            service: &self.params.service,
            sender: self.label_sender(),
            cur_nexthop: sasl.then_some(self.hop_dest.as_str()),
            hostname: sasl.then_some(peer.name.as_str()),
            addr: Some((&peer.addr, peer.port)),
            tls_level: self.params.tls_level,
            smtputf8: self.req.smtputf8_required,
            ..Default::default()
        })
    }

    /// The cache label of the request's nexthop, while one is set.
    fn dest_label(&self) -> Option<String> {
        self.request_nexthop.as_deref().map(|n| {
            reuse::label(&reuse::LabelParts {
                service: &self.params.service,
                sender: self.label_sender(),
                request_nexthop: Some(n),
                tls_level: self.params.tls_level,
                smtputf8: self.req.smtputf8_required,
                ..Default::default()
            })
        })
    }

    /// After the transaction: cache a session that is still good, QUIT one whose time
    /// is up, close the rest. The first good session of the request is also filed under
    /// the request's nexthop, so that later requests can skip dead servers.
    fn cleanup_session(&mut self, mut sess: Session, best_mx: bool) {
        let throttled = self.site_failed;
        if sess.usable && sess.expire.is_some() && !sess.cacheable(self.params) {
            sess.quit(self.params, &self.req.queue_id);
        }
        if sess.cacheable(self.params) && self.cache.is_some() {
            let (endp_label, dest_label) = (self.endp_label(&sess.peer), self.dest_label());
            let dest = match (dest_label, &self.request_nexthop) {
                (Some(l), Some(n)) => Some((l, reuse::dest_prop(n, &sess.peer, best_mx))),
                _ => None,
            };
            let ttl = self.params.cache_time_limit;
            let tls_level = self.params.tls_level;
            if let (Some((fd, prop)), Some(cache)) =
                (sess.passivate(tls_level), self.cache.as_deref_mut())
            {
                if let Some((label, dprop)) = &dest {
                    cache.save_dest(ttl, label, dprop, &endp_label);
                }
                cache.save_endp(ttl, &endp_label, &prop, fd);
            }
        } else {
            sess.conn.close();
        }
        if !throttled {
            self.request_nexthop = None;
        }
    }

    fn reuse_nexthop(
        &mut self,
        tracer: &mut dyn FnMut(&Peer) -> Option<Tracer>,
    ) -> Option<(Session, bool)> {
        let label = self.dest_label()?;
        let found = self.cache.as_deref_mut()?.find_dest(&label)?;
        let Some(b) = reuse::parse_dest_prop(&found.dest_prop) else {
            log::warn("smtp_session_activate: bad cached dest properties");
            return None;
        };
        let inet = b.addr.parse::<std::net::IpAddr>().is_ok();
        let peer = Peer {
            name: b.name,
            addr: b.addr,
            port: if inet {
                b.port.unwrap_or(self.params.default_port)
            } else {
                0
            },
        };
        let sess = self.activate(found, peer, tracer)?;
        Some((sess, b.best_mx))
    }

    fn reuse_endpoint(
        &mut self,
        ep: &Endpoint,
        tracer: &mut dyn FnMut(&Peer) -> Option<Tracer>,
    ) -> Option<Session> {
        // Postfix looks up UNIX-domain servers by nexthop only.
        if !matches!(ep.addr, crate::session::Address::Inet(_)) {
            return None;
        }
        let peer = Peer::of(ep, &self.params.myhostname);
        let label = self.endp_label(&peer);
        let found = self.cache.as_deref_mut()?.find_endp(&label)?;
        self.activate(found, peer, tracer)
    }

    /// Revive a cached connection and check it with an RSET probe, as Postfix does. A
    /// connection that died in the cache, or refuses RSET, is dropped without a word.
    fn activate(
        &mut self,
        found: reuse::Cached,
        peer: Peer,
        tracer: &mut dyn FnMut(&Peer) -> Option<Tracer>,
    ) -> Option<Session> {
        let t = tracer(&peer);
        let mut sess = Session::activate(found.fd, &found.endp_prop, peer, self.params, t)?;
        self.cache_used.insert(peer_key(&sess.peer));
        match sess.rset_probe(self.params, &self.req.queue_id) {
            Ok(true) => Some(sess),
            // Refused or gone: dropped silently, as in Postfix (the probe is not part of
            // sending mail).
            Ok(false) | Err(_) => {
                sess.conn.close();
                None
            }
        }
    }

    /// Connection caching for this request and destination (Postfix's smtp_cache_policy):
    /// always for smtp_connection_cache_destinations, else as qmgr asked.
    pub fn set_cache_policy(&mut self, domain: &str, nexthop: &str, load: bool, store: bool) {
        if self.params.cache_destination(domain) {
            self.cache_load = true;
            self.cache_store = true;
        } else if self.params.cache_on_demand {
            self.cache_load = load;
            self.cache_store = store;
        } else {
            self.cache_load = false;
            self.cache_store = false;
        }
        if self.cache.is_none() {
            self.cache_load = false;
            self.cache_store = false;
        }
        self.request_nexthop = (self.cache_load || self.cache_store).then(|| nexthop.to_string());
    }

    /// Deliver over a destination and its fallback relays (Postfix's smtp_connect_inet site
    /// loop), then settle what is left.
    pub fn run_hops(
        &mut self,
        hops: &[crate::route::Hop],
        content: &mut dyn Content,
        tracer: &mut dyn FnMut(&Peer) -> Option<Tracer>,
    ) {
        let n = hops.len();
        for (k, hop) in hops.iter().enumerate() {
            if self.left() == 0 {
                break;
            }
            self.final_nexthop = k + 1 == n;
            self.hop_dest = hop.nexthop.clone();
            match &hop.endpoints {
                Ok(eps) => {
                    if k == 0 && !eps.is_empty() {
                        let (load, store) = self.cache_request;
                        let (domain, label) = crate::route::dest::cache_names(&hop.nexthop);
                        self.set_cache_policy(&domain, &label, load, store);
                    }
                    self.run(eps, content, tracer)
                }
                Err(dsn) => {
                    // The reason already says which name failed.
                    if !self.final_nexthop {
                        log::info(&format!("{}: {}", self.req.queue_id, dsn.reason));
                    }
                    self.why = Some(dsn.clone());
                }
            }
        }
        if self.left() > 0 {
            let mut dsn = self.why.clone().unwrap_or_else(|| {
                Dsn::new("4.3.0", "server unavailable or unable to receive mail")
            });
            // Mail for a destination that loops back to us: best_mx_transport takes it.
            if !self.params.lmtp
                && dsn.status.get(1..) == Some(".4.6")
                && self.loop_handoff.is_some()
            {
                let open = self.open();
                let mut failed = Vec::new();
                for i in open {
                    let r = match self.loop_handoff.as_deref_mut() {
                        Some(h) => h(i),
                        None => Ok(()),
                    };
                    match r {
                        Ok(()) => self.marks[i] = Mark::Dropped,
                        Err(d) => failed.push((i, d)),
                    }
                }
                self.relay = "none".into();
                for (i, d) in failed {
                    self.finish(i, d);
                }
                return;
            }
            if !dsn.status.starts_with('4') {
                // A relay we were told to use that does not resolve or refuses us is a
                // configuration problem: defer rather than bounce.
                let last = hops.last();
                if last.is_some_and(|h| h.is_fallback) {
                    log::warn("smtp_fallback_relay configuration problem");
                    dsn.status = "4.3.5".into();
                } else if !self.params.lmtp
                    && !self.params.relayhost.is_empty()
                    && hops
                        .first()
                        .is_some_and(|h| h.nexthop == self.params.relayhost)
                {
                    log::warn("relayhost configuration problem");
                    dsn.status = "4.3.5".into();
                }
            }
            self.fail_all(dsn);
        }
    }

    /// Fail every recipient without trying any server (bad destination, no addresses).
    pub fn fail_all(&mut self, dsn: Dsn) {
        self.final_server = true;
        self.relay = "none".into();
        self.unkeep();
        self.site_fail(dsn);
    }
}
