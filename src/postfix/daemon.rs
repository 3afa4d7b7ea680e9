//! The delivery agent under Postfix's master(8): take a delivery request from qmgr, read
//! the queue file, deliver with the engine, report each recipient to bounce/defer/trace/
//! verify, mark finished recipients done in the queue file, and answer qmgr.
//!
//! This is the only place that joins the Postfix protocols to the engine.

use super::attr::AttrWriter;
use super::master::{self, Service};
use super::queue::{OpenError, QueueFile, QueueLayout};
use super::request::{self, DEL_REQ_FLAG_SUCCESS, PfDsn, PfRecipient};
use super::scache::ScacheClient;
use super::status::{Report, StatusClient};
use crate::config::Config;
use crate::delivery::{Delivery, LogAs, Reporter};
use crate::log::{self, MsgStats};
use crate::outcome::{Outcome, Status};
use crate::request::Recipient;
use crate::route;
use crate::session::conn::Tracer;
use crate::session::reuse::ConnCache;
use crate::session::{Params, Peer};
use std::io::BufReader;
use std::sync::Mutex;

static SCACHE: Mutex<Option<ScacheClient>> = Mutex::new(None);
/// TLS engine, policy tables and SASL set-up: read once per process, as Postfix does.
static SECURITY: std::sync::OnceLock<crate::security::Security> = std::sync::OnceLock::new();
static REWRITE: std::sync::OnceLock<crate::rewrite::Rewrite> = std::sync::OnceLock::new();
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Entry point when started by master as `smtp` or `lmtp`.
pub fn main() -> i32 {
    master::main(master::load_config, Agent::default())
}

#[derive(Default)]
struct Agent {
    postlog: bool,
}

impl Service for Agent {
    fn init_logging(&mut self, tag: &str, cfg: Option<&Config>) {
        // With maillog_file, Postfix daemons log through postlogd (POSTLOG_SERVICE).
        let maillog = cfg.map(|c| c.get("maillog_file")).unwrap_or_default();
        if !maillog.is_empty()
            && let Some(client) = super::postlog::PostlogClient::from_env(
                tag,
                cfg.map(|c| c.get("myhostname")).as_deref(),
            )
        {
            self.postlog = true;
            log::init(client.into_log_target(), tag);
            return;
        }
        let fac = cfg
            .and_then(|c| log::facility(&c.get("syslog_facility")))
            .unwrap_or(libc::LOG_MAIL);
        log::init(log::Target::Syslog(fac), tag);
    }

    /// SASL fix: read the TLS/SASL set-up (smtp_sasl_password_maps above all) while still
    /// root, as Postfix's smtp does before dropping privileges. sasl_passwd and its .db are
    /// normally mode 0600 root; opened after setuid(mail_owner), every lookup failed and
    /// all authenticated mail was deferred ("local data error").
    fn pre_jail(&mut self, cfg: &Config) -> Result<(), String> {
        if SECURITY.get().is_none() {
            let s = crate::security::Security::from_config(cfg)?;
            let _ = SECURITY.set(s);
        }
        Ok(())
    }

    /// A table this process uses has changed: exit before the next request, so that
    /// master starts a process that reads the new one (as Postfix's smtp does).
    fn pre_accept(&mut self, _cfg: &Config) -> bool {
        match crate::table::changed_table() {
            Some(t) => {
                log::info(&format!("table {t} has changed -- restarting"));
                false
            }
            None => true,
        }
    }

    fn serve(&mut self, cfg: &Config, stream: UnixStream) {
        serve_one(cfg, stream);
    }
}

/// Reports outcomes to Postfix's status services and marks the queue file.
struct PostfixReporter<'a> {
    status: &'a StatusClient,
    queue: &'a QueueFile,
    flags: i32,
    queue_id: &'a str,
    recipients: &'a [PfRecipient],
    /// Some recipient could not be settled: qmgr must keep the message.
    failed: bool,
}

fn pf_dsn(o: &Outcome) -> PfDsn {
    let action = match o.status {
        Status::Sent if o.delivered => "delivered",
        s => s.action(),
    };
    PfDsn::from_dsn(&o.dsn, action)
}

impl Reporter for PostfixReporter<'_> {
    fn report(&mut self, index: usize, _r: &Recipient, o: &Outcome, _s: &MsgStats) -> LogAs {
        let Some(pr) = self.recipients.get(index) else {
            self.failed = true;
            return LogAs::Outcome;
        };
        let dsn = pf_dsn(o);
        let rep: Report = match o.status {
            Status::Sent => {
                let mut rcpt = pr.clone();
                // A server that offers DSN takes over NOTIFY=SUCCESS.
                if o.dsn_offered {
                    rcpt.dsn_notify &= !crate::request::notify::SUCCESS as i32;
                }
                self.status
                    .sent(self.flags, self.queue_id, &rcpt, &o.relay, &dsn)
            }
            Status::Deferred => {
                self.status
                    .defer_append(self.flags, self.queue_id, pr, &o.relay, &dsn)
            }
            Status::Bounced => {
                self.status
                    .bounce_append(self.flags, self.queue_id, pr, &o.relay, &dsn)
            }
        };
        if rep.ok {
            let mark = o.status != Status::Sent || self.flags & DEL_REQ_FLAG_SUCCESS != 0;
            if mark
                && let Ok(off) = u64::try_from(pr.offset)
                && let Err(e) = self.queue.mark_done(off)
            {
                log::warn(&e.to_string());
                self.failed = true;
            }
        } else {
            self.failed = true;
        }
        match rep.log {
            Some(entry) => LogAs::Custom {
                word: entry.status,
                status: entry.dsn.status,
                reason: entry.dsn.reason,
            },
            None => LogAs::Nothing,
        }
    }
}

fn status_client(cfg: &Config) -> StatusClient {
    let mut s = StatusClient::new(".");
    s.ipc_timeout = cfg.time("ipc_timeout");
    s.bounce_service = cfg.get("bounce_service_name");
    s.defer_service = cfg.get("defer_service_name");
    s.trace_service = cfg.get("trace_service_name");
    s.verify_service = cfg.get("address_verify_service_name");
    s.flush_service = cfg.get("flush_service_name");
    s.soft_bounce = cfg.bool("soft_bounce");
    s.verify_neg_cache = cfg.bool("address_verify_negative_cache");
    s
}

/// Serve one qmgr connection: one delivery request.
fn serve_one(cfg: &Config, stream: UnixStream) {
    let ipc = cfg.time("ipc_timeout").max(Duration::from_secs(1));
    let _ = stream.set_read_timeout(Some(ipc));
    let _ = stream.set_write_timeout(Some(ipc));
    let Ok(wstream) = stream.try_clone() else {
        return;
    };
    let mut writer = AttrWriter::new(wstream);
    if request::write_initial(&mut writer).is_err() {
        return;
    }
    let mut reader = BufReader::new(stream);
    let req = match request::read_request(&mut reader) {
        Ok(r) => r,
        Err(e) => {
            log::warn(&format!("deliver_request_get: {e}"));
            let _ = request::write_reply(&mut writer, -1, None);
            return;
        }
    };
    let (status, hop_status) = deliver(cfg, &req);
    let _ = request::write_reply(&mut writer, status, hop_status.as_ref());
    request::wait_for_close(&mut reader);
}

/// Deliver one request; returns the status for qmgr (0 = all recipients settled) and the
/// hop status that asks qmgr to throttle the destination.
fn deliver(cfg: &Config, req: &request::DeliveryRequest) -> (i32, Option<crate::outcome::Dsn>) {
    let layout = QueueLayout::new(
        &cfg.get("hash_queue_names"),
        usize::try_from(cfg.int("hash_queue_depth")).unwrap_or(1),
    );
    let queue = match QueueFile::open_with(
        std::path::Path::new("."),
        &layout,
        &req.queue_name,
        &req.queue_id,
    ) {
        Ok(q) => q,
        Err(OpenError::Rejected) => return (request::DEL_STAT_DEFER, None),
        Err(OpenError::Fatal(f)) => {
            log::fatal(&f.to_string());
            std::process::exit(1);
        }
    };
    let mut content = match queue.content(u64::try_from(req.data_offset).unwrap_or(0)) {
        Ok(c) => c,
        Err(f) => {
            log::fatal(&f.to_string());
            std::process::exit(1);
        }
    };
    let params = Params::from_config(cfg);
    let security = match SECURITY.get() {
        Some(s) => s,
        None => match crate::security::Security::from_config(cfg) {
            Ok(s) => SECURITY.get_or_init(|| s),
            Err(e) => {
                // A configuration error: Postfix's daemon exits; master throttles the
                // service and the mail stays queued.
                log::fatal(&e);
                std::process::exit(1);
            }
        },
    };
    let rewrite = match REWRITE.get() {
        Some(r) => r,
        None => match crate::rewrite::Rewrite::from_config(cfg) {
            Ok(r) => REWRITE.get_or_init(|| r),
            Err(e) => {
                log::fatal(&e);
                std::process::exit(1);
            }
        },
    };
    let rp = route::RouteParams::from_config(cfg, &params);
    let lookup = route::system_lookup(&rp);
    let engine_req = req.to_request();
    let status = status_client(cfg);
    let mut reporter = PostfixReporter {
        status: &status,
        queue: &queue,
        flags: req.flags,
        queue_id: &req.queue_id,
        recipients: &req.recipients,
        failed: false,
    };
    let corrupt;
    let hop_status;
    let passed_deferred = std::cell::Cell::new(false);
    // One scache client per process, kept between requests as Postfix keeps its
    // auto_clnt; created only when caching can happen at all.
    let mut cache_guard = SCACHE.lock().unwrap_or_else(|p| p.into_inner());
    if cache_guard.is_none() && (params.cache_on_demand || !params.cache_destinations.is_empty()) {
        *cache_guard = Some(ScacheClient::new(
            &cfg.get("connection_cache_service_name"),
            cfg.time("connection_cache_protocol_timeout"),
        ));
    }
    {
        let mut dl = Delivery::new(&engine_req, &params, &mut reporter);
        dl.nexthop = req.nexthop.clone();
        dl.security = Some(security);
        dl.rewrite = Some(rewrite);
        if let Some(c) = cache_guard.as_mut() {
            dl.cache = Some(c as &mut dyn ConnCache);
        }
        let best_mx = cfg.get("best_mx_transport");
        let mut handoff = |i: usize| -> Result<(), crate::outcome::Dsn> {
            let Some(r) = req.recipients.get(i) else {
                return Err(crate::outcome::Dsn::new(
                    "4.3.0",
                    "mail transport unavailable",
                ));
            };
            let ipc = cfg.time("ipc_timeout").max(Duration::from_secs(1));
            match super::pass::deliver_pass(&best_mx, req, r, ipc) {
                Ok(deferred) => {
                    if deferred {
                        passed_deferred.set(true);
                    }
                    Ok(())
                }
                Err(d) => Err(d),
            }
        };
        if !best_mx.is_empty() {
            dl.loop_handoff = Some(&mut handoff);
        }
        dl.cache_request = (
            req.flags & request::DEL_REQ_FLAG_CONN_LOAD != 0,
            req.flags & request::DEL_REQ_FLAG_CONN_STORE != 0,
        );
        let hops = route::plan(&req.nexthop, &rp, lookup.as_ref());
        // debug_peer_list, or -v in master.cf: the dialogue goes to the log (Postfix's
        // smtp_chat logs it under msg_verbose, which both turn on).
        let mut no_trace = |peer: &Peer| -> Option<Tracer> {
            (log::verbose() > 0 || params.debug_peer(peer))
                .then(|| crate::session::conn::logging_tracer(peer.namaddrport()))
        };
        dl.run_hops(&hops, &mut content, &mut no_trace);
        corrupt = dl.corrupt;
        hop_status = dl.hop_status.take();
    }
    drop(cache_guard);
    if corrupt {
        if let Err(e) = queue.mark_corrupt() {
            log::warn(&e.to_string());
        }
        return (request::DEL_STAT_DEFER, None);
    }
    let status = if reporter.failed || passed_deferred.get() {
        request::DEL_STAT_DEFER
    } else {
        request::DEL_STAT_FINAL
    };
    (status, hop_status)
}
