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
        let dsn = Dsn {
            status: dsn_status.to_string(),
            reason: reply.to_string(),
            mta: Some(host.to_string()),
            reply: Some(reply.to_string()),
        };
        let mut outcome = Outcome::from_dsn(dsn, self.relay.clone());
        // A 2xx reply is success whatever enhanced code came with it.
        outcome.status = Status::Sent;
        outcome.delivered = delivered;
        outcome.dsn_offered = dsn_offered;
        self.emit(i, outcome, None);
    }

    /// Deliver over the given endpoints in order, as Postfix's address loop does.
    pub fn run(
        &mut self,
        endpoints: &[Endpoint],
        content: &mut dyn Content,
        tracer: &mut dyn FnMut(&Peer) -> Option<Tracer>,
    ) {
        // smtp_mx_address_limit caps the addresses tried; smtp_mx_session_limit the
        // sessions that got as far as a transaction. The last allowed one is final.
        let limit = match self.params.mx_address_limit {
            0 => endpoints.len(),
            n => n.min(endpoints.len()),
        };
        let mut sessions = 0;
        let mut k = 0;
        while k < limit && self.left() > 0 {
            let ep = &endpoints[k];
            k += 1;
            let mut last = k == limit;
            self.final_server = self.final_nexthop && last;
            // Set-up latency and the completion time are measured per session.
            self.stats.conn_setup_done = None;
            self.stats.deliver_done = None;
            self.stats.reuse_count = 0;
            match Session::open(
                ep,
                self.params,
                &self.req.queue_id,
                tracer,
                ep.best_mx,
                &self.nexthop,
                self.req.stats.incoming_arrival,
            ) {
                Ok(mut sess) => {
                    sessions += 1;
                    if self.params.mx_session_limit > 0 && sessions >= self.params.mx_session_limit
                    {
                        last = true;
                        k = limit;
                    }
                    self.final_server = self.final_nexthop && last;
                    self.relay = sess.peer.namaddrport();
                    let body = BodyWriter::new(self.params.line_length_limit);
                    crate::transaction::run(&mut sess, self, content, &body);
                    sess.conn.close();
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
                }
            }
            self.relay = "none".into();
            self.unkeep();
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
            match &hop.endpoints {
                Ok(eps) => self.run(eps, content, tracer),
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
