//! Per-recipient status reporting to Postfix's bounce(8), defer(8), trace(8), verify(8)
//! and flush(8) services, following Postfix 3.7's client library (global/bounce.c,
//! defer.c, trace.c, sent.c, verify.c, verify_clnt.c, flush_clnt.c,
//! mail_command_client.c).
//!
//! Each report is one short connection to `<queue_directory>/private/<service>` (flush:
//! `public/flush`): the server announces its protocol (`delivery_status_protocol` for
//! bounce, defer and trace), the client sends one request list, the server answers with
//! `status` (0 = done). Reads and writes time out after `ipc_timeout`.
//!
//! These functions make the same decisions as Postfix (address probes go to verify(8) or
//! trace(8), `soft_bounce` turns bounces into deferrals, a failed bounce becomes a deferral
//! with "bounce or trace service failure", ...), but they do not write the per-recipient
//! log line: they return a [`Report`] that says what that line would be (`status=` word
//! and DSN), and the caller logs it. Postfix's own warnings ("...: defer service failure")
//! are logged here with [`crate::log::warn`] and also listed in the report.
//!
//! Status words of the log line, by path:
//! * `sent()`: "sent"; address probe (MTA or user): "deliverable";
//! * `bounce_append()`: "bounced", or "SOFTBOUNCE" with soft_bounce; address probe:
//!   "undeliverable" ("undeliverable-but-not-cached" for MTA probes when
//!   address_verify_negative_cache is off);
//! * `defer_append()`: "deferred"; address probe as for bounces;
//! * a bounce whose service fails is logged as "deferred" with 4.3.0;
//! * `trace_append()` itself logs only for user probes (word = the DSN action).

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::attr::{AttrError, AttrReader, AttrWriter};
use super::request::{
    DEL_RCPT_STAT_BOUNCE, DEL_RCPT_STAT_DEFER, DEL_RCPT_STAT_OK, DEL_REQ_FLAG_MTA_VRFY,
    DEL_REQ_FLAG_REC_DLY_SENT, DEL_REQ_FLAG_RECORD, DEL_REQ_FLAG_USR_VRFY, PfDsn, PfRecipient,
};
use crate::outcome::parse_enhanced;
use crate::request::notify;

/// Request codes of the bounce/defer/trace protocol (global/bounce.h).
pub const BOUNCE_CMD_APPEND: i32 = 0;
pub const BOUNCE_CMD_FLUSH: i32 = 1;
pub const BOUNCE_CMD_WARN: i32 = 2;
pub const BOUNCE_CMD_VERP: i32 = 3;
pub const BOUNCE_CMD_ONE: i32 = 4;
pub const BOUNCE_CMD_TRACE: i32 = 5;

/// With this flag a failed bounce is not turned into a deferral (Postfix's
/// BOUNCE_FLAG_CLEAN; bit 0, so it is never set by callers that pass trace flags only).
pub const BOUNCE_FLAG_CLEAN: i32 = 1 << 0;

/// The relay name that means "no relay": trace records then get no "delivery via".
pub const NO_RELAY_AGENT: &str = "none";

pub const PROTO_BOUNCE: &str = "delivery_status_protocol";
/// [sic], as in Postfix.
pub const PROTO_VERIFY: &str = "address_verification_prrotocol";
pub const PROTO_FLUSH: &str = "queue_flush_protocol";

pub const CLASS_PRIVATE: &str = "private";
pub const CLASS_PUBLIC: &str = "public";

/// verify(8) request status.
pub const VRFY_STAT_OK: i32 = 0;
pub const VRFY_STAT_FAIL: i32 = -1;
pub const VRFY_STAT_BAD: i32 = -2;

/// flush(8) request status.
pub const FLUSH_STAT_FAIL: i32 = -1;
pub const FLUSH_STAT_OK: i32 = 0;
pub const FLUSH_STAT_BAD: i32 = 3;
pub const FLUSH_STAT_DENY: i32 = 4;

/// A replacement DSN for a DSN (smtp_delivery_status_filter); `None` = unchanged.
pub type DsnFilter = Box<dyn Fn(&PfDsn) -> Option<PfDsn> + Send + Sync>;
/// Whether a domain is in fast_flush_domains: `Ok(true)` yes, `Ok(false)` no, `Err` the
/// lookup failed.
pub type FlushMatch = Box<dyn Fn(&str) -> Result<bool, ()> + Send + Sync>;

/// The per-recipient log line that Postfix would write for a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The `status=` word: "sent", "deferred", "bounced", "SOFTBOUNCE", "deliverable",
    /// "undeliverable", "undeliverable-but-not-cached".
    pub status: String,
    /// `dsn=` is `dsn.status`, the parenthesised text is `dsn.reason`.
    pub dsn: PfDsn,
}

/// The outcome of one status report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Postfix's return value 0: the recipient reached a final state and, with
    /// DEL_REQ_FLAG_SUCCESS, may be marked done in the queue file. `false` (-1): leave it
    /// in the queue and answer the queue manager with DEL_STAT_DEFER. (A deferral is
    /// always `false`, whether or not the defer service took it.)
    pub ok: bool,
    /// The delivery log line to write, if Postfix would write one.
    pub log: Option<LogEntry>,
    /// Warnings Postfix would log (already passed to `crate::log::warn`).
    pub warnings: Vec<String>,
}

impl Report {
    fn warn(&mut self, text: String) {
        crate::log::warn(&text);
        self.warnings.push(text);
    }

    fn log(&mut self, status: &str, dsn: &PfDsn) {
        self.log = Some(LogEntry {
            status: status.to_string(),
            dsn: dsn.clone(),
        });
    }
}

/// Client for the status services, with the settings that steer it.
pub struct StatusClient {
    /// The queue directory (or "." when the process already runs inside it).
    pub queue_dir: PathBuf,
    /// ipc_timeout: read and write deadline on each connection.
    pub ipc_timeout: Duration,
    /// bounce_service_name.
    pub bounce_service: String,
    /// defer_service_name.
    pub defer_service: String,
    /// trace_service_name.
    pub trace_service: String,
    /// address_verify_service_name.
    pub verify_service: String,
    /// flush_service_name.
    pub flush_service: String,
    /// soft_bounce.
    pub soft_bounce: bool,
    /// address_verify_negative_cache.
    pub verify_neg_cache: bool,
    /// How many times to try verify(8) before giving up. Postfix retries forever (one
    /// second apart); `None` does the same.
    pub verify_attempts: Option<u32>,
    /// Pause between verify(8) attempts (Postfix: one second).
    pub verify_retry_delay: Duration,
    /// smtp_delivery_status_filter, when configured.
    pub dsn_filter: Option<DsnFilter>,
    /// fast_flush_domains matching; `None` never notifies flush(8) (as an empty list).
    pub flush_domains: Option<FlushMatch>,
}

impl StatusClient {
    /// Postfix's defaults, sockets under `queue_dir`.
    pub fn new(queue_dir: impl Into<PathBuf>) -> StatusClient {
        StatusClient {
            queue_dir: queue_dir.into(),
            ipc_timeout: Duration::from_secs(3600),
            bounce_service: "bounce".into(),
            defer_service: "defer".into(),
            trace_service: "trace".into(),
            verify_service: "verify".into(),
            flush_service: "flush".into(),
            soft_bounce: false,
            verify_neg_cache: true,
            verify_attempts: None,
            verify_retry_delay: Duration::from_secs(1),
            dsn_filter: None,
            flush_domains: None,
        }
    }

    /// `<queue_dir>/<class>/<service>`.
    pub fn socket_path(&self, class: &str, service: &str) -> PathBuf {
        self.queue_dir.join(class).join(service)
    }

    fn connect(&self, path: &Path) -> std::io::Result<UnixStream> {
        let s = UnixStream::connect(path)?;
        let t = (!self.ipc_timeout.is_zero()).then_some(self.ipc_timeout);
        s.set_read_timeout(t)?;
        s.set_write_timeout(t)?;
        Ok(s)
    }

    /// One request/status exchange (mail_command_client): connect, check the server's
    /// protocol, send the list that `body` writes (terminated here), read `status`.
    /// Returns the server's status, or -1 on any failure (with a warning).
    fn command(
        &self,
        class: &str,
        service: &str,
        proto: &str,
        rep: &mut Report,
        body: &dyn Fn(&mut AttrWriter<&UnixStream>) -> Result<(), AttrError>,
    ) -> i32 {
        let stream = match self.connect(&self.socket_path(class, service)) {
            Ok(s) => s,
            Err(e) => {
                rep.warn(format!("connect to {class}/{service}: {}", errtext(&e)));
                return -1;
            }
        };
        let label = format!("{class}/{service} socket");
        let mut r = AttrReader::new(BufReader::new(&stream));
        if let Err(e) = r.expect_protocol(proto) {
            rep.warn(format!("read {label}: {}", errtext(&e)));
            return -1;
        }
        let mut w = AttrWriter::new(&stream);
        if let Err(e) = body(&mut w).and_then(|()| w.end()).and_then(|()| w.flush()) {
            rep.warn(format!("write {label}: {}", errtext(&e)));
            return -1;
        }
        match r
            .expect_int("status")
            .and_then(|s| r.expect_end().map(|()| s))
        {
            Ok(s) => s,
            Err(e) => {
                rep.warn(format!("write/read {label}: {}", errtext(&e)));
                -1
            }
        }
    }

    /// An APPEND request to bounce, defer or trace.
    fn append_request(
        &self,
        service: &str,
        flags: i32,
        id: &str,
        rcpt: &PfRecipient,
        dsn: &PfDsn,
        rep: &mut Report,
    ) -> i32 {
        self.command(CLASS_PRIVATE, service, PROTO_BOUNCE, rep, &|w| {
            w.int("nrequest", BOUNCE_CMD_APPEND)?;
            w.int("flags", flags)?;
            w.str("queue_id", id)?;
            rcpt.write(w)?;
            dsn.write(w)
        })
    }

    fn filter(&self, dsn: &PfDsn) -> Option<PfDsn> {
        self.dsn_filter.as_ref().and_then(|f| f(dsn))
    }

    /// The recipient bounced (5.x.x). Sends to bounce(8) (defer(8) with soft_bounce), or
    /// to verify/trace for address probes; also to trace(8) with DEL_REQ_FLAG_RECORD.
    /// A status code that is not a valid 5.x.x becomes 5.0.0 (with a warning).
    pub fn bounce_append(
        &self,
        flags: i32,
        queue_id: &str,
        rcpt: &PfRecipient,
        relay: &str,
        dsn: &PfDsn,
    ) -> Report {
        let mut rep = Report::default();
        let mut my = dsn.clone();
        if !status_ok(&my.status, '5') {
            rep.warn(format!(
                "bounce_append: ignoring dsn code \"{}\"",
                my.status
            ));
            my.status = "5.0.0".into();
        }
        let st = match self.filter(&my) {
            Some(f) if f.status.starts_with('4') => {
                self.defer_intern(flags, queue_id, rcpt, relay, &f, &mut rep)
            }
            Some(f) => self.bounce_intern(flags, queue_id, rcpt, relay, &f, &mut rep),
            None => self.bounce_intern(flags, queue_id, rcpt, relay, &my, &mut rep),
        };
        rep.ok = st == 0;
        rep
    }

    /// The recipient must be tried again (4.x.x). Sends to defer(8) (and trace(8) with
    /// DEL_REQ_FLAG_RECORD), or to verify/trace for address probes. Never `ok` for real
    /// mail. A status code that is not a valid 4.x.x becomes 4.0.0 (with a warning).
    pub fn defer_append(
        &self,
        flags: i32,
        queue_id: &str,
        rcpt: &PfRecipient,
        relay: &str,
        dsn: &PfDsn,
    ) -> Report {
        let mut rep = Report::default();
        let st = self.defer_public(flags, queue_id, rcpt, relay, dsn, &mut rep);
        rep.ok = st == 0;
        rep
    }

    /// The recipient was delivered (2.x.x). `dsn.action` is "relayed" or "delivered"
    /// (empty means "delivered"). Pass the recipient's NOTIFY bits as they should count:
    /// smtp(8) first drops NOTIFY=SUCCESS when the server announced DSN. Appends to
    /// trace(8) for DEL_REQ_FLAG_RECORD, for DEL_REQ_FLAG_REC_DLY_SENT (NOTIFY empty or
    /// with DELAY) and again for NOTIFY=SUCCESS; if that fails, the recipient is deferred
    /// with 4.3.0 "<queue_id>: trace service failed". Address probes go to verify/trace.
    pub fn sent(
        &self,
        flags: i32,
        queue_id: &str,
        rcpt: &PfRecipient,
        relay: &str,
        dsn: &PfDsn,
    ) -> Report {
        let mut rep = Report::default();
        let mut my = dsn.clone();
        if !status_ok(&my.status, '2') {
            rep.warn(format!("sent: ignoring dsn code \"{}\"", my.status));
            my.status = "2.0.0".into();
        }
        if let Some(f) = self.filter(&my) {
            my = f;
        }
        let st = if flags & DEL_REQ_FLAG_MTA_VRFY != 0 {
            my.action = "deliverable".into();
            self.verify_intern(queue_id, rcpt, relay, &my, DEL_RCPT_STAT_OK, &mut rep)
        } else if flags & DEL_REQ_FLAG_USR_VRFY != 0 {
            my.action = "deliverable".into();
            self.trace_intern(flags, queue_id, rcpt, relay, &my, &mut rep)
        } else {
            if my.action.is_empty() {
                my.action = "delivered".into();
            }
            let notify = rcpt.dsn_notify as u32;
            let rec_all = flags & DEL_REQ_FLAG_RECORD != 0;
            let rec_dly = flags & DEL_REQ_FLAG_REC_DLY_SENT != 0
                && (notify == 0 || notify & notify::DELAY != 0);
            let traced = (!rec_all && !rec_dly)
                || self.trace_intern(flags, queue_id, rcpt, relay, &my, &mut rep) == 0;
            let notified = traced
                && (notify & notify::SUCCESS == 0
                    || self.trace_intern(flags, queue_id, rcpt, relay, &my, &mut rep) == 0);
            if notified {
                rep.log("sent", &my);
                0
            } else {
                my.reason = format!("{queue_id}: {} service failed", self.trace_service);
                my.status = "4.3.0".into();
                self.defer_public(flags, queue_id, rcpt, relay, &my, &mut rep)
            }
        };
        rep.ok = st == 0;
        rep
    }

    /// Append a record to the message's trace log (user probes, `sendmail -v`, NOTIFY=
    /// SUCCESS). The reason gets "delivery via RELAY: " unless the relay is "none". For
    /// user probes (DEL_REQ_FLAG_USR_VRFY) the log line uses the action as its word.
    pub fn trace_append(
        &self,
        flags: i32,
        queue_id: &str,
        rcpt: &PfRecipient,
        relay: &str,
        dsn: &PfDsn,
    ) -> Report {
        let mut rep = Report::default();
        let st = self.trace_intern(flags, queue_id, rcpt, relay, dsn, &mut rep);
        rep.ok = st == 0;
        rep
    }

    /// Record an MTA address probe's result with verify(8): `vrfy_stat` is
    /// DEL_RCPT_STAT_OK, _DEFER or _BOUNCE; `dsn.action` is the log word
    /// ("deliverable"/"undeliverable"). Both the original and the final address are
    /// updated when they differ.
    pub fn verify_append(
        &self,
        queue_id: &str,
        rcpt: &PfRecipient,
        relay: &str,
        dsn: &PfDsn,
        vrfy_stat: i32,
    ) -> Report {
        let mut rep = Report::default();
        let st = self.verify_intern(queue_id, rcpt, relay, dsn, vrfy_stat, &mut rep);
        rep.ok = st == 0;
        rep
    }

    // ---- the internal paths, each returning Postfix's 0 / -1 ------------------------

    fn defer_public(
        &self,
        flags: i32,
        id: &str,
        rcpt: &PfRecipient,
        relay: &str,
        dsn: &PfDsn,
        rep: &mut Report,
    ) -> i32 {
        let mut my = dsn.clone();
        if !status_ok(&my.status, '4') {
            rep.warn(format!("defer_append: ignoring dsn code \"{}\"", my.status));
            my.status = "4.0.0".into();
        }
        match self.filter(&my) {
            Some(f) if f.status.starts_with('5') => {
                self.bounce_intern(flags, id, rcpt, relay, &f, rep)
            }
            Some(f) => self.defer_intern(flags, id, rcpt, relay, &f, rep),
            None => self.defer_intern(flags, id, rcpt, relay, &my, rep),
        }
    }

    fn bounce_intern(
        &self,
        flags: i32,
        id: &str,
        rcpt: &PfRecipient,
        relay: &str,
        dsn: &PfDsn,
        rep: &mut Report,
    ) -> i32 {
        let mut my = dsn.clone();
        if flags & DEL_REQ_FLAG_MTA_VRFY != 0 {
            my.action = "undeliverable".into();
            return self.verify_intern(id, rcpt, relay, &my, DEL_RCPT_STAT_BOUNCE, rep);
        }
        if flags & DEL_REQ_FLAG_USR_VRFY != 0 {
            my.action = "undeliverable".into();
            return self.trace_intern(flags, id, rcpt, relay, &my, rep);
        }
        if self.soft_bounce && flags & BOUNCE_FLAG_CLEAN != 0 {
            return -1;
        }
        let (service, word) = if self.soft_bounce {
            my.status = format!("4{}", my.status.get(1..).unwrap_or(""));
            my.action = "delayed".into();
            (&self.defer_service, "SOFTBOUNCE")
        } else {
            my.action = "failed".into();
            (&self.bounce_service, "bounced")
        };
        if self.append_request(service, flags, id, rcpt, &my, rep) == 0
            && (flags & DEL_REQ_FLAG_RECORD == 0
                || self.trace_intern(flags, id, rcpt, relay, &my, rep) == 0)
        {
            rep.log(word, &my);
            if self.soft_bounce { -1 } else { 0 }
        } else if flags & BOUNCE_FLAG_CLEAN == 0 {
            my.status = "4.3.0".into();
            my.reason = format!(
                "{} or {} service failure",
                self.bounce_service, self.trace_service
            );
            self.defer_intern(flags, id, rcpt, relay, &my, rep)
        } else {
            -1
        }
    }

    fn defer_intern(
        &self,
        flags: i32,
        id: &str,
        rcpt: &PfRecipient,
        relay: &str,
        dsn: &PfDsn,
        rep: &mut Report,
    ) -> i32 {
        let mut my = dsn.clone();
        if flags & DEL_REQ_FLAG_MTA_VRFY != 0 {
            my.action = "undeliverable".into();
            return self.verify_intern(id, rcpt, relay, &my, DEL_RCPT_STAT_DEFER, rep);
        }
        if flags & DEL_REQ_FLAG_USR_VRFY != 0 {
            my.action = "undeliverable".into();
            return self.trace_intern(flags, id, rcpt, relay, &my, rep);
        }
        my.action = "delayed".into();
        if self.append_request(&self.defer_service, flags, id, rcpt, &my, rep) != 0 {
            rep.warn(format!("{id}: {} service failure", self.defer_service));
        }
        rep.log("deferred", &my);
        if flags & DEL_REQ_FLAG_RECORD != 0
            && self.trace_intern(flags, id, rcpt, relay, &my, rep) != 0
        {
            rep.warn(format!("{id}: {} service failure", self.trace_service));
        }
        if let Some((_, domain)) = rcpt.address.rsplit_once('@')
            && !domain.is_empty()
        {
            match self.flush_add(domain, id, rep) {
                FLUSH_STAT_OK | FLUSH_STAT_DENY => {}
                _ => rep.warn(format!("{id}: {} service failure", self.flush_service)),
            }
        }
        -1
    }

    fn trace_intern(
        &self,
        flags: i32,
        id: &str,
        rcpt: &PfRecipient,
        relay: &str,
        dsn: &PfDsn,
        rep: &mut Report,
    ) -> i32 {
        let mut my = dsn.clone();
        if relay != NO_RELAY_AGENT {
            my.reason = format!("delivery via {relay}: {}", dsn.reason);
        }
        if self.append_request(&self.trace_service, flags, id, rcpt, &my, rep) != 0 {
            rep.warn(format!("{id}: {} service failure", self.trace_service));
            return -1;
        }
        if flags & DEL_REQ_FLAG_USR_VRFY != 0 {
            rep.log(&dsn.action, dsn);
        }
        0
    }

    fn verify_intern(
        &self,
        id: &str,
        rcpt: &PfRecipient,
        _relay: &str,
        dsn: &PfDsn,
        vrfy_stat: i32,
        rep: &mut Report,
    ) -> i32 {
        let mut word = dsn.action.clone();
        let st = if self.verify_neg_cache || vrfy_stat == DEL_RCPT_STAT_OK {
            let mut st = VRFY_STAT_OK;
            if !rcpt.orig_addr.is_empty() {
                st = self.verify_update(&rcpt.orig_addr, vrfy_stat, &dsn.reason, rep);
            }
            if st == VRFY_STAT_OK && rcpt.address != rcpt.orig_addr {
                st = self.verify_update(&rcpt.address, vrfy_stat, &dsn.reason, rep);
            }
            st
        } else {
            word = "undeliverable-but-not-cached".into();
            VRFY_STAT_OK
        };
        if st == VRFY_STAT_OK {
            rep.log(&word, dsn);
            0
        } else {
            rep.warn(format!("{id}: {} service failure", self.verify_service));
            -1
        }
    }

    /// verify_clnt_update: retried (Postfix: forever) until one exchange completes;
    /// returns the server's status, or VRFY_STAT_FAIL after the last attempt.
    fn verify_update(&self, addr: &str, status: i32, why: &str, rep: &mut Report) -> i32 {
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            match self.verify_exchange(addr, status, why) {
                Ok(st) => return st,
                Err(e) => {
                    let quiet = matches!(&e, AttrError::Io(io)
                        if matches!(io.kind(), std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::NotFound));
                    if !quiet {
                        rep.warn(format!(
                            "problem talking to service {}: {}",
                            self.verify_service,
                            errtext(&e)
                        ));
                    }
                }
            }
            if self.verify_attempts.is_some_and(|max| attempt >= max) {
                return VRFY_STAT_FAIL;
            }
            std::thread::sleep(self.verify_retry_delay);
        }
    }

    fn verify_exchange(&self, addr: &str, status: i32, why: &str) -> Result<i32, AttrError> {
        let stream = self.connect(&self.socket_path(CLASS_PRIVATE, &self.verify_service))?;
        let mut r = AttrReader::new(BufReader::new(&stream));
        r.expect_protocol(PROTO_VERIFY)?;
        let mut w = AttrWriter::new(&stream);
        w.str("request", "update")?;
        w.str("address", addr)?;
        w.int("recipient_status", status)?;
        w.str("reason", why)?;
        w.end()?;
        w.flush()?;
        // verify_clnt reads the reply without ATTR_FLAG_EXTRA: extras are skipped.
        r.set_strict(false);
        let st = r.expect_int("status")?;
        r.expect_end()?;
        Ok(st)
    }

    /// flush_add: tell flush(8) that mail for `site` waits in the queue, when the site is
    /// in fast_flush_domains.
    fn flush_add(&self, site: &str, id: &str, rep: &mut Report) -> i32 {
        let Some(matcher) = &self.flush_domains else {
            return FLUSH_STAT_DENY;
        };
        match matcher(site) {
            Ok(true) => self.command(CLASS_PUBLIC, &self.flush_service, PROTO_FLUSH, rep, &|w| {
                w.str("request", "add")?;
                w.str("site", site)?;
                w.str("queue_id", id)
            }),
            Ok(false) => FLUSH_STAT_DENY,
            Err(()) => FLUSH_STAT_FAIL,
        }
    }
}

/// An error as Postfix's "%m" shows it: without Rust's " (os error N)" suffix.
fn errtext(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

/// A valid enhanced status code (Postfix's dsn_valid) of the given class.
fn status_ok(status: &str, class: char) -> bool {
    status.starts_with(class) && parse_enhanced(status).is_some_and(|(_, rest)| rest.is_empty())
}

/// Write the bytes of a bounce/defer/trace APPEND request as Postfix's client sends them
/// (for tests and tools).
pub fn append_request_bytes(
    flags: i32,
    queue_id: &str,
    rcpt: &PfRecipient,
    dsn: &PfDsn,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = AttrWriter::new(&mut out);
    let res = (|| {
        w.int("nrequest", BOUNCE_CMD_APPEND)?;
        w.int("flags", flags)?;
        w.str("queue_id", queue_id)?;
        rcpt.write(&mut w)?;
        dsn.write(&mut w)?;
        w.end()?;
        w.flush()
    })();
    drop(w);
    if res.is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Read};
    use std::os::unix::net::UnixListener;
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;

    /// What a fake service saw: one entry per connection, the raw request bytes.
    type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

    struct Fake {
        seen: Seen,
        _handle: JoinHandle<()>,
    }

    /// A fake Postfix service: announce `proto`, read one attribute list, answer
    /// `status` with `reply_status`, close. Serves connections until the test ends.
    fn fake(dir: &Path, class: &str, name: &str, proto: &'static str, reply_status: i32) -> Fake {
        let cdir = dir.join(class);
        std::fs::create_dir_all(&cdir).unwrap();
        let listener = UnixListener::bind(cdir.join(name)).unwrap();
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let mut w = AttrWriter::new(&conn);
                if w.protocol(proto).and_then(|()| w.flush()).is_err() {
                    continue;
                }
                // Read raw bytes up to the list terminator (a NUL where a name starts).
                let mut r = BufReader::new(&conn);
                let mut raw = Vec::new();
                loop {
                    let mut name = Vec::new();
                    if r.read_until(0, &mut name).unwrap_or(0) == 0 {
                        break;
                    }
                    raw.extend_from_slice(&name);
                    if name == [0] {
                        break;
                    }
                    let mut value = Vec::new();
                    if r.read_until(0, &mut value).unwrap_or(0) == 0 {
                        break;
                    }
                    raw.extend_from_slice(&value);
                }
                seen2.lock().unwrap().push(raw);
                let _ = w.int("status", reply_status);
                let _ = w.end();
                let _ = w.flush();
                let mut rest = Vec::new();
                let _ = (&conn).read_to_end(&mut rest);
            }
        });
        Fake {
            seen,
            _handle: handle,
        }
    }

    fn tmpdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn client(dir: &Path) -> StatusClient {
        let mut c = StatusClient::new(dir);
        c.ipc_timeout = Duration::from_secs(10);
        c.verify_attempts = Some(1);
        c.verify_retry_delay = Duration::from_millis(1);
        c
    }

    fn rcpt() -> PfRecipient {
        PfRecipient {
            orig_addr: "orig@example.com".into(),
            address: "user@example.com".into(),
            offset: 1234,
            dsn_orcpt: "rfc822;orig@example.com".into(),
            dsn_notify: 0,
        }
    }

    fn reply_dsn(status: &str, reason: &str) -> PfDsn {
        PfDsn {
            status: status.into(),
            dtype: "smtp".into(),
            dtext: format!("550 {status} {reason}"),
            mtype: "dns".into(),
            mname: "mx.example.com".into(),
            action: String::new(),
            reason: format!("host mx.example.com[192.0.2.1] said: 550 {status} {reason}"),
        }
    }

    #[test]
    fn bounce_append_exact_bytes() {
        let dir = tmpdir();
        let bounce = fake(dir.path(), "private", "bounce", PROTO_BOUNCE, 0);
        let c = client(dir.path());
        let dsn = reply_dsn("5.1.1", "no such user");
        let rep = c.bounce_append(0, "4ABC123", &rcpt(), "mx.example.com[192.0.2.1]:25", &dsn);
        assert!(rep.ok, "{rep:?}");
        let log = rep.log.unwrap();
        assert_eq!(log.status, "bounced");
        assert_eq!(log.dsn.status, "5.1.1");
        assert_eq!(log.dsn.action, "failed");
        let seen = bounce.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let expected: &[u8] = b"nrequest\x000\0flags\x000\0queue_id\x004ABC123\0\
original_recipient\0orig@example.com\0recipient\0user@example.com\0offset\x001234\0\
dsn_orig_rcpt\0rfc822;orig@example.com\0notify_flags\x000\0\
status\x005.1.1\0diag_type\0smtp\0diag_text\x00550 5.1.1 no such user\0\
mta_type\0dns\0mta_mname\0mx.example.com\0action\0failed\0\
reason\0host mx.example.com[192.0.2.1] said: 550 5.1.1 no such user\0\0";
        assert_eq!(seen[0], expected);
        let mut d = dsn.clone();
        d.action = "failed".into();
        assert_eq!(append_request_bytes(0, "4ABC123", &rcpt(), &d), expected);
    }

    #[test]
    fn bounce_failure_becomes_deferral() {
        let dir = tmpdir();
        let bounce = fake(dir.path(), "private", "bounce", PROTO_BOUNCE, -1);
        let defer = fake(dir.path(), "private", "defer", PROTO_BOUNCE, 0);
        let c = client(dir.path());
        let rep = c.bounce_append(0, "Q1", &rcpt(), "relay", &reply_dsn("5.1.1", "x"));
        assert!(!rep.ok);
        let log = rep.log.unwrap();
        assert_eq!(log.status, "deferred");
        assert_eq!(log.dsn.status, "4.3.0");
        assert_eq!(log.dsn.reason, "bounce or trace service failure");
        assert_eq!(bounce.seen.lock().unwrap().len(), 1);
        let seen = defer.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let text = String::from_utf8_lossy(&seen[0]).into_owned();
        assert!(text.contains("status\x004.3.0\0"), "{text:?}");
        assert!(text.contains("action\0delayed\0"));
        assert!(text.contains("reason\0bounce or trace service failure\0"));
    }

    #[test]
    fn defer_is_never_ok_and_survives_missing_service() {
        let dir = tmpdir();
        let c = client(dir.path());
        // No defer service at all: still logged as deferred, with a warning.
        let rep = c.defer_append(0, "Q2", &rcpt(), "relay", &reply_dsn("4.2.0", "busy"));
        assert!(!rep.ok);
        assert_eq!(rep.log.as_ref().unwrap().status, "deferred");
        assert_eq!(rep.log.as_ref().unwrap().dsn.action, "delayed");
        assert!(
            rep.warnings
                .iter()
                .any(|w| w == "Q2: defer service failure")
        );
        assert_eq!(
            rep.warnings[0],
            "connect to private/defer: No such file or directory"
        );
        // With the service present.
        let defer = fake(dir.path(), "private", "defer", PROTO_BOUNCE, 0);
        let rep = c.defer_append(0, "Q2", &rcpt(), "relay", &reply_dsn("4.2.0", "busy"));
        assert!(!rep.ok);
        assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
        assert_eq!(defer.seen.lock().unwrap().len(), 1);
        // A 5xx code given to defer is sanitised.
        let rep = c.defer_append(0, "Q2", &rcpt(), "relay", &reply_dsn("5.0.0", "x"));
        assert_eq!(rep.log.unwrap().dsn.status, "4.0.0");
    }

    #[test]
    fn wrong_protocol_is_a_failure() {
        let dir = tmpdir();
        let _defer = fake(dir.path(), "private", "bounce", "something_else", 0);
        let _d = fake(dir.path(), "private", "defer", PROTO_BOUNCE, 0);
        let c = client(dir.path());
        let rep = c.bounce_append(0, "Q3", &rcpt(), "relay", &reply_dsn("5.1.1", "x"));
        assert!(!rep.ok);
        assert_eq!(rep.log.unwrap().status, "deferred");
        assert!(rep.warnings[0].starts_with("read "), "{:?}", rep.warnings);
    }

    #[test]
    fn soft_bounce() {
        let dir = tmpdir();
        let defer = fake(dir.path(), "private", "defer", PROTO_BOUNCE, 0);
        let mut c = client(dir.path());
        c.soft_bounce = true;
        let rep = c.bounce_append(0, "Q4", &rcpt(), "relay", &reply_dsn("5.7.1", "denied"));
        assert!(!rep.ok);
        let log = rep.log.unwrap();
        assert_eq!(log.status, "SOFTBOUNCE");
        assert_eq!(log.dsn.status, "4.7.1");
        let seen = defer.seen.lock().unwrap();
        let text = String::from_utf8_lossy(&seen[0]).into_owned();
        assert!(text.contains("status\x004.7.1\0"));
        assert!(text.contains("action\0delayed\0"));
    }

    #[test]
    fn sent_plain_and_with_notify_success() {
        let dir = tmpdir();
        let c = client(dir.path());
        let mut dsn = reply_dsn("2.0.0", "Ok");
        dsn.action = "relayed".into();
        // No tracing needed: no service contacted.
        let rep = c.sent(0, "Q5", &rcpt(), "mx[192.0.2.1]:25", &dsn);
        assert!(rep.ok);
        assert_eq!(rep.log.as_ref().unwrap().status, "sent");
        assert_eq!(rep.log.unwrap().dsn.action, "relayed");
        // NOTIFY=SUCCESS without a trace service: deferred with "trace service failed".
        let _defer = fake(dir.path(), "private", "defer", PROTO_BOUNCE, 0);
        let mut r = rcpt();
        r.dsn_notify = notify::SUCCESS as i32;
        let rep = c.sent(0, "Q5", &r, "mx[192.0.2.1]:25", &dsn);
        assert!(!rep.ok);
        let log = rep.log.unwrap();
        assert_eq!(log.status, "deferred");
        assert_eq!(log.dsn.reason, "Q5: trace service failed");
        // With the trace service: one trace record, reason prefixed with the relay.
        let trace = fake(dir.path(), "private", "trace", PROTO_BOUNCE, 0);
        let rep = c.sent(DEL_REQ_FLAG_RECORD, "Q5", &r, "mx[192.0.2.1]:25", &dsn);
        assert!(rep.ok, "{rep:?}");
        assert_eq!(rep.log.unwrap().status, "sent");
        let seen = trace.seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "RECORD and NOTIFY=SUCCESS each append");
        let text = String::from_utf8_lossy(&seen[0]).into_owned();
        assert!(text.contains("flags\x001024\0"));
        assert!(text.contains("action\0relayed\0"));
        assert!(text.contains("reason\0delivery via mx[192.0.2.1]:25: host mx.example.com"));
    }

    #[test]
    fn user_probe_goes_to_trace() {
        let dir = tmpdir();
        let trace = fake(dir.path(), "private", "trace", PROTO_BOUNCE, 0);
        let c = client(dir.path());
        let rep = c.bounce_append(
            DEL_REQ_FLAG_USR_VRFY,
            "Q6",
            &rcpt(),
            NO_RELAY_AGENT,
            &reply_dsn("5.1.1", "x"),
        );
        assert!(rep.ok);
        let log = rep.log.unwrap();
        assert_eq!(log.status, "undeliverable");
        assert!(!log.dsn.reason.starts_with("delivery via"));
        let seen = trace.seen.lock().unwrap();
        let text = String::from_utf8_lossy(&seen[0]).into_owned();
        assert!(text.contains("flags\x00512\0"));
        assert!(text.contains("action\0undeliverable\0"));
        assert!(
            text.contains("reason\0host mx"),
            "no relay prefix for relay=none"
        );
    }

    #[test]
    fn mta_probe_goes_to_verify() {
        let dir = tmpdir();
        let verify = fake(dir.path(), "private", "verify", PROTO_VERIFY, 0);
        let c = client(dir.path());
        let mut dsn = reply_dsn("2.0.0", "Ok");
        dsn.action = "relayed".into();
        let rep = c.sent(DEL_REQ_FLAG_MTA_VRFY, "Q7", &rcpt(), "mx:25", &dsn);
        assert!(rep.ok, "{rep:?}");
        assert_eq!(rep.log.unwrap().status, "deliverable");
        let seen = verify.seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "original and final address both updated");
        let expected: &[u8] = b"request\0update\0address\0orig@example.com\0\
recipient_status\x000\0reason\0host mx.example.com[192.0.2.1] said: 550 2.0.0 Ok\0\0";
        assert_eq!(seen[0], expected);
        assert!(seen[1].starts_with(b"request\0update\0address\0user@example.com\0"));
        drop(seen);
        // Deferred probe: status 1, word "undeliverable".
        let rep = c.defer_append(
            DEL_REQ_FLAG_MTA_VRFY,
            "Q7",
            &rcpt(),
            "mx:25",
            &reply_dsn("4.4.1", "x"),
        );
        assert!(rep.ok);
        assert_eq!(rep.log.unwrap().status, "undeliverable");
        let third = verify.seen.lock().unwrap()[2].clone();
        let want: &[u8] = b"recipient_status\x001\0";
        assert!(third.windows(want.len()).any(|w| w == want));
        // Negative caching off: bounced probe not sent to verify.
        let mut c2 = client(dir.path());
        c2.verify_neg_cache = false;
        let before = verify.seen.lock().unwrap().len();
        let rep = c2.bounce_append(
            DEL_REQ_FLAG_MTA_VRFY,
            "Q7",
            &rcpt(),
            "mx:25",
            &reply_dsn("5.1.1", "x"),
        );
        assert!(rep.ok);
        assert_eq!(rep.log.unwrap().status, "undeliverable-but-not-cached");
        assert_eq!(verify.seen.lock().unwrap().len(), before);
    }

    #[test]
    fn verify_unavailable() {
        let dir = tmpdir();
        let c = client(dir.path());
        let rep = c.sent(
            DEL_REQ_FLAG_MTA_VRFY,
            "Q8",
            &rcpt(),
            "mx:25",
            &reply_dsn("2.0.0", "Ok"),
        );
        assert!(!rep.ok);
        assert!(rep.log.is_none());
        assert!(
            rep.warnings
                .iter()
                .any(|w| w == "Q8: verify service failure")
        );
    }

    #[test]
    fn dsn_filter_and_flush() {
        let dir = tmpdir();
        let defer = fake(dir.path(), "private", "defer", PROTO_BOUNCE, 0);
        let flush = fake(dir.path(), "public", "flush", PROTO_FLUSH, FLUSH_STAT_OK);
        let mut c = client(dir.path());
        c.dsn_filter = Some(Box::new(|d: &PfDsn| {
            (d.status == "5.7.1").then(|| PfDsn {
                status: "4.7.1".into(),
                ..d.clone()
            })
        }));
        c.flush_domains = Some(Box::new(|site: &str| Ok(site == "example.com")));
        let rep = c.bounce_append(0, "Q9", &rcpt(), "relay", &reply_dsn("5.7.1", "denied"));
        assert!(!rep.ok);
        assert_eq!(rep.log.unwrap().status, "deferred");
        assert_eq!(defer.seen.lock().unwrap().len(), 1);
        let seen = flush.seen.lock().unwrap();
        assert_eq!(
            seen[0],
            b"request\0add\0site\0example.com\0queue_id\0Q9\0\0"
        );
    }
}
