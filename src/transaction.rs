//! One mail transaction on an open session: XFORWARD, MAIL FROM, RCPT TO, DATA, the
//! message, end-of-data, and the final RSET/QUIT, pipelined exactly where Postfix
//! pipelines them.
//!
//! Commands are queued in order with the reply each expects; with PIPELINING the queue is
//! flushed and the replies read only at DATA (a synchronisation point), when the queued
//! bytes would exceed Postfix's 4096-byte pipelining buffer, or at the end. Without
//! PIPELINING every command waits for its reply. After end-of-data QUIT is pipelined as
//! Postfix does. Each reply is read with the timeout of the command it answers, and a
//! failure names that command's phase.

use crate::delivery::Delivery;
use crate::envelope::{quote_821, quote_822, uxtext, xtext};
use crate::log;
use crate::message::BodyWriter;
use crate::outcome::Dsn;
use crate::request::{Content, Encoding, Ret, notify};
use crate::session::conn::IoFailure;
use crate::session::reply::Reply;
use crate::session::{Params, Session, io_failure_dsn, reply_dsn};
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// Postfix's PIPELINING buffer: never more unacknowledged command bytes than this.
const PIPELINING_BUFSIZE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    XforwardNameAddr,
    XforwardProtoHelo,
    Mail,
    Rcpt(usize),
    Data,
    Dot,
    Abort,
    Quit,
}

impl State {
    fn timeout(self, p: &Params) -> Duration {
        match self {
            State::XforwardNameAddr | State::XforwardProtoHelo => p.xforward_timeout,
            State::Mail => p.mail_timeout,
            State::Rcpt(_) => p.rcpt_timeout,
            State::Data => p.data_init_timeout,
            State::Dot => p.data_done_timeout,
            State::Abort => p.rset_timeout,
            State::Quit => p.quit_timeout,
        }
    }
    /// "... while sending X" phrase.
    fn doing(self) -> &'static str {
        match self {
            State::XforwardNameAddr => "sending XFORWARD name/address",
            State::XforwardProtoHelo => "sending XFORWARD protocol/helo_name",
            State::Mail => "sending MAIL FROM",
            State::Rcpt(_) => "sending RCPT TO",
            State::Data => "sending DATA command",
            State::Dot => "sending end of data -- message may be sent more than once",
            State::Abort => "sending final RSET",
            State::Quit => "sending QUIT",
        }
    }
    /// "(in reply to X)" phrase.
    fn request(self) -> &'static str {
        match self {
            State::XforwardNameAddr => "XFORWARD name/address command",
            State::XforwardProtoHelo => "XFORWARD helo/protocol command",
            State::Mail => "MAIL FROM command",
            State::Rcpt(_) => "RCPT TO command",
            State::Data => "DATA command",
            State::Dot => "end of DATA command",
            State::Abort => "final RSET command",
            State::Quit => "QUIT command",
        }
    }
    /// Whether a failure here still concerns the mail (before end-of-data was answered).
    fn sending_mail(self) -> bool {
        !matches!(self, State::Abort | State::Quit)
    }
}

struct Tx<'s, 'd, 'a> {
    sess: &'s mut Session,
    dl: &'d mut Delivery<'a>,
    /// Commands sent or queued whose replies are outstanding.
    pending: VecDeque<State>,
    /// Recipients in this transaction, by RCPT position.
    rcpts: Vec<usize>,
    /// Accepted recipients (by request index), in order; LMTP expects one reply each.
    accepted: Vec<usize>,
    mail_rejected: bool,
    /// A reply was waiting before MAIL FROM was sent (smtp_tls_block_early_mail_reply).
    early_mail_reply: bool,
    data_rejected: bool,
    /// DATA was answered with 3xx: the server is now reading message text.
    data_accepted: bool,
    lmtp_replies: usize,
    /// Envelope sender and recipients (by request index) after smtp_generic_maps.
    sender: String,
    addresses: Vec<String>,
}

fn xforward_ok(v: &str, unknown_allowed: bool) -> bool {
    !v.is_empty() && (unknown_allowed || !v.eq_ignore_ascii_case("unknown"))
}

/// Build the MAIL FROM command for this session's capabilities.
/// `sender` is the envelope sender after smtp_generic_maps.
pub fn mail_command(
    sess: &Session,
    req: &crate::request::Request,
    p: &Params,
    sender: &str,
) -> String {
    let sender = if p.quote_rfc821_envelope {
        quote_821(sender)
    } else {
        sender.to_string()
    };
    let mut cmd = format!("MAIL FROM:<{sender}>");
    // Postfix leaves SIZE out when it converts the body: the size would be wrong.
    if sess.caps.size && !p.mime_downgrade(sess.caps.eightbitmime, req.encoding) {
        cmd.push_str(&format!(" SIZE={}", req.size));
    }
    if sess.caps.eightbitmime {
        match req.encoding {
            Encoding::EightBit => cmd.push_str(" BODY=8BITMIME"),
            Encoding::SevenBit => cmd.push_str(" BODY=7BIT"),
            Encoding::Unknown => {}
        }
    }
    if sess.caps.dsn {
        if !req.envid.is_empty() {
            cmd.push_str(&format!(" ENVID={}", xtext(&req.envid, "+=")));
        }
        match req.ret {
            Some(Ret::Full) => cmd.push_str(" RET=FULL"),
            Some(Ret::Hdrs) => cmd.push_str(" RET=HDRS"),
            None => {}
        }
    }
    if sess.caps.smtputf8 && req.smtputf8 {
        cmd.push_str(" SMTPUTF8");
    }
    // smtp_send_dummy_mail_auth: we authenticated the MTA, not the sender.
    if p.dummy_mail_auth && sess.sasl_mechanism.is_some() {
        cmd.push_str(" AUTH=<>");
    }
    cmd
}

/// Build the RCPT TO command for one recipient; `address` is its address after
/// smtp_generic_maps (ORCPT still names the original).
pub fn rcpt_command(
    sess: &Session,
    req: &crate::request::Request,
    i: usize,
    p: &Params,
    address: &str,
) -> String {
    let Some(r) = req.recipients.get(i) else {
        return String::new();
    };
    let addr = if p.quote_rfc821_envelope {
        quote_821(address)
    } else {
        address.to_string()
    };
    let mut cmd = format!("RCPT TO:<{addr}>");
    if sess.caps.dsn {
        let mut orcpt = r.orcpt.clone();
        if orcpt.is_empty() && !r.orig_address.is_empty() {
            let q = quote_822(&r.orig_address);
            let kind = if req.smtputf8 && !q.is_ascii() {
                "utf-8"
            } else {
                "rfc822"
            };
            orcpt = format!("{kind};{q}");
        }
        if !orcpt.is_empty() {
            if orcpt
                .as_bytes()
                .get(..6)
                .is_some_and(|b| b.eq_ignore_ascii_case(b"utf-8;"))
            {
                cmd.push_str(&format!(" ORCPT={}", uxtext(&orcpt, "+=")));
            } else {
                cmd.push_str(&format!(" ORCPT={}", xtext(&orcpt, "=")));
            }
        }
        if r.notify != 0 {
            cmd.push_str(&format!(" NOTIFY={}", notify::to_string(r.notify)));
        }
    }
    cmd
}

impl Tx<'_, '_, '_> {
    fn params(&self) -> &Params {
        self.dl.params
    }

    fn queue(&mut self, state: State, cmd: &str) -> Result<(), (State, IoFailure)> {
        let pipelining = self.sess.caps.pipelining;
        // Synchronise first when this command would overflow the pipelining buffer.
        if !self.pending.is_empty()
            && (!pipelining || self.sess.conn.queued() + cmd.len() + 2 > PIPELINING_BUFSIZE)
        {
            self.sync()?;
            // Now that every reply is in, a course correction may make this command moot
            // (Postfix sends RSET instead).
            let moot = match state {
                State::Rcpt(_) => self.mail_rejected,
                State::Data => self.mail_rejected || self.accepted.is_empty(),
                _ => false,
            };
            if moot {
                return Ok(());
            }
        }
        self.sess.conn.queue_cmd(cmd);
        self.pending.push_back(state);
        if !pipelining {
            self.sync()?;
        }
        Ok(())
    }

    /// Flush queued commands and process every outstanding reply.
    fn sync(&mut self) -> Result<(), (State, IoFailure)> {
        // Commands without an awaited reply (QUIT with smtp_skip_quit_response) still go out.
        if self.sess.conn.queued() > 0 {
            let first = self.pending.front().copied().unwrap_or(State::Quit);
            self.sess.conn.set_timeout(first.timeout(self.dl.params));
            self.sess.conn.flush().map_err(|e| (first, e))?;
        }
        while let Some(&state) = self.pending.front() {
            self.sess.conn.set_timeout(state.timeout(self.dl.params));
            let reply = self
                .sess
                .read_reply(&self.dl.req.queue_id)
                .map_err(|e| (state, e))?;
            match state {
                // LMTP: one end-of-data reply per accepted recipient.
                State::Dot if self.sess.lmtp => {
                    self.on_reply(state, &reply);
                    if self.lmtp_replies < self.accepted.len() {
                        continue;
                    }
                    self.pending.pop_front();
                }
                _ => {
                    self.pending.pop_front();
                    self.on_reply(state, &reply);
                }
            }
        }
        Ok(())
    }

    fn said(&mut self, reply: &Reply, state: State) -> Dsn {
        // After a reply that breaks the protocol the conversation may be out of step:
        // such a session is never cached (Postfix 3.4.6 and later).
        if !(400..=599).contains(&reply.code)
            || reply.code == 555
            || (500..510).contains(&reply.code)
        {
            self.sess.dont_cache();
        }
        reply_dsn(
            &self.sess.peer,
            reply,
            format!(
                "host {} said: {} (in reply to {})",
                self.sess.peer.namaddr(),
                reply.one_line(),
                state.request()
            ),
        )
    }

    /// Recipient `i` succeeded with this reply (and this session's DSN support).
    fn done(&mut self, i: usize, status: &str, reply: &Reply, delivered: bool) {
        let host = self.sess.peer.name.clone();
        let dsn = self.sess.caps.dsn;
        self.dl
            .rcpt_done(i, status, &reply.one_line(), &host, delivered, dsn);
    }

    fn on_reply(&mut self, state: State, reply: &Reply) {
        match state {
            State::XforwardNameAddr | State::XforwardProtoHelo => {
                if reply.class() != 2 {
                    log::warn(&format!(
                        "host {} said: {} (in reply to {})",
                        self.sess.peer.namaddrport(),
                        reply.one_line(),
                        state.request()
                    ));
                }
            }
            State::Mail => {
                if reply.class() != 2 {
                    let dsn = self.said(reply, state);
                    self.dl.bulk_fail(dsn);
                    self.mail_rejected = true;
                }
                if self.early_mail_reply {
                    self.dl
                        .site_fail(Dsn::new("4.7.0", "unexpected server message"));
                    log::warn(&format!(
                        "server {} violates {} policy",
                        self.sess.peer.namaddr(),
                        if self.dl.params.lmtp {
                            "lmtp_tls_block_early_mail_reply"
                        } else {
                            "smtp_tls_block_early_mail_reply"
                        }
                    ));
                    self.mail_rejected = true;
                    self.sess.usable = false;
                }
            }
            State::Rcpt(k) => {
                if let (false, Some(&i)) = (self.mail_rejected, self.rcpts.get(k)) {
                    if reply.class() == 2 {
                        self.accepted.push(i);
                        // An address probe that stops at RCPT: this reply is the answer.
                        if self.dl.req.trace_only && self.dl.params.verify_at_rcpt {
                            self.done(i, &reply.dsn, reply, false);
                        }
                    } else {
                        let dsn = self.said(reply, state);
                        self.dl.rcpt_fail(i, dsn);
                    }
                }
            }
            State::Data => {
                self.data_accepted = reply.class() == 3;
                // A probe that stops at DATA: 354 means the recipients are deliverable.
                if self.data_accepted && self.dl.req.trace_only {
                    for i in self.accepted.clone() {
                        self.done(i, "2.0.0", reply, false);
                    }
                }
                if reply.class() != 3 {
                    if !self.accepted.is_empty() {
                        let dsn = self.said(reply, state);
                        self.dl.bulk_fail(dsn);
                    }
                    self.data_rejected = true;
                }
            }
            State::Dot => {
                self.dl.stats.deliver_done = Some(SystemTime::now());
                if self.sess.lmtp {
                    if let Some(&i) = self.accepted.get(self.lmtp_replies) {
                        if reply.class() == 2 {
                            let delivered = !self.sess.caps.dsn && self.params().lmtp_assume_final;
                            self.done(i, &reply.dsn, reply, delivered);
                        } else {
                            let dsn = self.said(reply, state);
                            self.dl.rcpt_fail(i, dsn);
                        }
                    }
                    self.lmtp_replies += 1;
                } else if !self.accepted.is_empty() {
                    if reply.class() == 2 {
                        for i in self.accepted.clone() {
                            self.done(i, &reply.dsn, reply, false);
                        }
                    } else {
                        let dsn = self.said(reply, state);
                        self.dl.bulk_fail(dsn);
                    }
                }
            }
            State::Abort | State::Quit => {}
        }
    }

    /// smtp_generic_maps for MAIL FROM and RCPT TO. A table that fails defers the mail
    /// (Postfix's smtp(8) exits, leaving it queued) and drops the connection.
    fn rewrite_envelope(&mut self) -> bool {
        let req = self.dl.req;
        let Some(rw) = self.dl.rewrite.filter(|r| r.has_generic()) else {
            self.sender = req.sender.clone();
            self.addresses = req.recipients.iter().map(|r| r.address.clone()).collect();
            return true;
        };
        let mapped = (|| -> Result<(String, Vec<String>), String> {
            let sender = rw.envelope(&req.sender)?;
            let mut addrs = Vec::with_capacity(req.recipients.len());
            for (i, r) in req.recipients.iter().enumerate() {
                // Only the recipients of this transaction are looked up.
                if self.rcpts.contains(&i) {
                    addrs.push(rw.envelope(&r.address)?);
                } else {
                    addrs.push(r.address.clone());
                }
            }
            Ok((sender, addrs))
        })();
        match mapped {
            Ok((sender, addrs)) => {
                self.sender = sender;
                self.addresses = addrs;
                true
            }
            Err(text) => {
                self.data_trouble(&text);
                false
            }
        }
    }

    /// Local table trouble: log it, defer every open recipient ("local data error", as
    /// Postfix reports it) without trying other servers, and drop the connection.
    fn data_trouble(&mut self, text: &str) {
        log::warn(&format!("{}: {text}", self.dl.req.queue_id));
        self.sess.usable = false;
        self.sess.conn.purge_output();
        self.sess.conn.close();
        self.dl.final_server = true;
        let dsn = Dsn::new(
            "4.3.0",
            format!(
                "local data error while talking to {}",
                self.sess.peer.namaddr()
            ),
        );
        self.dl.bulk_fail(dsn);
    }

    fn stream_fail(&mut self, state: State, e: IoFailure, body: bool) {
        self.sess.usable = false;
        if !state.sending_mail() {
            return;
        }
        let doing = if body {
            "sending message body"
        } else {
            state.doing()
        };
        let dsn = io_failure_dsn(&self.sess.peer, &e, doing);
        self.dl.site_fail(dsn);
    }

    /// End the transaction with RSET (after a course correction), then QUIT unless the
    /// session goes back to the connection cache.
    fn abort(&mut self) {
        let skip = self.params().skip_quit_response;
        let keep = self.sess.cacheable(self.dl.params);
        let r = (|| {
            self.queue(State::Abort, "RSET")?;
            if !keep {
                self.sess.conn.queue_cmd("QUIT");
                if !skip {
                    self.pending.push_back(State::Quit);
                }
            }
            self.sync()
        })();
        match r {
            Ok(()) => self.dl.session_completed = true,
            Err((s, e)) => self.stream_fail(s, e, false),
        }
        if !keep {
            self.sess.usable = false;
        }
    }

    fn run(&mut self, content: &mut dyn Content, body: &BodyWriter) {
        let p = self.dl.params;
        let req = self.dl.req;
        self.rcpts = self.dl.open();
        if self.rcpts.is_empty() {
            return;
        }
        if self.sess.caps.size_limit > 0 && self.sess.caps.size_limit < req.size {
            let dsn = Dsn::new(
                "5.3.4",
                format!(
                    "message size {} exceeds size limit {} of server {}",
                    req.size,
                    self.sess.caps.size_limit,
                    self.sess.peer.namaddr()
                ),
            );
            self.dl.bulk_fail(dsn);
            // Postfix drops the connection here without MAIL, RSET or QUIT.
            self.sess.usable = false;
            return;
        }
        if req.smtputf8_required && !self.sess.caps.smtputf8 {
            let dsn = Dsn::new(
                "5.6.7",
                format!(
                    "SMTPUTF8 is required, but was not offered by host {}",
                    self.sess.peer.namaddr()
                ),
            );
            self.dl.bulk_fail(dsn);
            self.sess.quit(p, &req.queue_id);
            return;
        }
        if !self.rewrite_envelope() {
            return;
        }
        let r = self.envelope(req, p);
        if let Err((s, e)) = r {
            return self.stream_fail(s, e, false);
        }
        if self.dl.req.trace_only {
            // Probes never send a message: after RCPT, RSET; after DATA's 354, hang up,
            // since the server now reads message text.
            if self.data_accepted {
                self.sess.usable = false;
                self.sess.conn.close();
                return;
            }
            return self.abort();
        }
        if !self.data_accepted {
            return self.abort();
        }
        if self.accepted.is_empty() {
            // DATA got 354 although nobody is left: end it with a lone "." (RFC 2920), as
            // Postfix does, since RSET would now be taken as message text.
            return self.finish(p, false);
        }
        // DATA was accepted: send the message, then end-of-data with QUIT pipelined
        // behind it when the server pipelines. Under smtp_per_request_deadline the body
        // earns time as it moves (smtp_min_data_rate), as in Postfix.
        self.sess
            .conn
            .set_timeout_rate(p.data_xfer_timeout, p.min_data_rate);
        // Generic maps and header/body checks need the header/body pass; the MIME
        // downgrade (servers without 8BITMIME) works on what the checks let through.
        let rewrite = self.dl.rewrite.filter(|r| !r.is_empty());
        let mut filter = None;
        let filtered: &mut dyn Content = match rewrite {
            Some(rw) => filter.insert(crate::message::filter::Filter::new(
                content,
                rw,
                &req.queue_id,
            )),
            None => content,
        };
        let mut mime;
        let source: &mut dyn Content =
            if p.mime_downgrade(self.sess.caps.eightbitmime, req.encoding) {
                mime = crate::message::mime::Downgrade::new(filtered, p.mime_limits());
                &mut mime
            } else {
                filtered
            };
        let result = {
            let conn = &mut self.sess.conn;
            let mut io_err = None;
            let r = body.write(source, &mut |chunk| {
                conn.queue(chunk);
                if conn.queued() < 32 * 1024 {
                    return Ok(());
                }
                conn.flush().map_err(|e| {
                    io_err = Some(e);
                    crate::outcome::Error::temp("4.4.2", "write error")
                })
            });
            match (r, io_err) {
                (_, Some(e)) => Err(e),
                (Err(_), None) if filter.as_ref().is_some_and(|f| f.trouble.is_some()) => {
                    let text = match filter.as_ref().and_then(|f| f.trouble.clone()) {
                        Some(crate::message::filter::Trouble::Checks(what)) => {
                            format!("smtp {what} checks lookup error")
                        }
                        Some(crate::message::filter::Trouble::Generic(t)) => t,
                        None => String::new(),
                    };
                    self.data_trouble(&text);
                    return;
                }
                (Err(e), None) => {
                    // Reading our own content failed: never send a partial message. (A MIME
                    // conversion failure is not worth a warning: Postfix only bounces.)
                    if !crate::message::mime::is_mime_error(&e) {
                        log::warn(&format!("{}: {}", req.queue_id, e.dsn.reason));
                    }
                    self.sess.usable = false;
                    self.sess.conn.purge_output();
                    if e.class == crate::outcome::Class::Corrupt {
                        // As Postfix: the mail bounces, and the queue file is set aside.
                        self.dl.corrupt = true;
                        self.dl
                            .bulk_fail(Dsn::new("5.3.0", "unreadable mail queue entry"));
                    } else {
                        self.dl.bulk_fail(e.dsn);
                    }
                    return;
                }
                // The body's tail goes out with end-of-data (and a pipelined QUIT) in one
                // write, as in Postfix: the same TCP segments and TLS records.
                (Ok(()), None) => Ok(()),
            }
        };
        if body.folded() && !self.dl.logged_folding {
            self.dl.logged_folding = true;
            log::info(&format!(
                "{}: breaking line > {} bytes with <CR><LF>SPACE",
                req.queue_id, p.line_length_limit
            ));
        }
        if let Err(e) = result {
            self.sess.conn.purge_output();
            // A lost connection may still have left a premature reply (e.g. 552) for us.
            if matches!(e, IoFailure::Lost) {
                self.pending.push_back(State::Dot);
                if self.sync().is_ok() {
                    self.sess.usable = false;
                    return;
                }
                self.pending.clear();
            }
            return self.stream_fail(State::Dot, e, true);
        }
        self.finish(p, true)
    }

    /// Send end-of-data (QUIT pipelined behind it when the server pipelines) and read the
    /// outstanding replies. `body`: a message was sent (not the lone dot after a DATA
    /// that no recipient needs).
    fn finish(&mut self, p: &Params, body: bool) {
        // Postfix pauses only after a message body; its lone "." goes out at once.
        if body && self.sess.pix_delay_dotcrlf {
            // PIX workaround: the final dot must not share a packet with the message, and
            // the firewall needs a moment (this hurts, so Postfix only does it for old mail).
            if let Err(e) = self.sess.conn.flush() {
                return self.stream_fail(State::Dot, e, true);
            }
            std::thread::sleep(p.pix_delay);
        }
        self.sess.conn.queue_cmd(".");
        self.pending.push_back(State::Dot);
        // Decided when "." is built, as Postfix does: a session still good for the cache
        // ends without QUIT.
        let keep = self.sess.cacheable(p);
        if !keep {
            if !self.sess.caps.pipelining
                && let Err((s, e)) = self.sync()
            {
                return self.stream_fail(s, e, false);
            }
            self.sess.conn.queue_cmd("QUIT");
            if !p.skip_quit_response {
                self.pending.push_back(State::Quit);
            }
        }
        match self.sync() {
            Ok(()) => self.dl.session_completed = true,
            Err((s, e)) => self.stream_fail(s, e, false),
        }
        if !keep {
            self.sess.usable = false;
        }
    }

    fn envelope(
        &mut self,
        req: &crate::request::Request,
        p: &Params,
    ) -> Result<(), (State, IoFailure)> {
        if p.send_xforward && !self.sess.caps.xforward.is_empty() {
            let x = &req.xforward;
            let has = |k: &str| self.sess.caps.xforward.iter().any(|c| c == k);
            let mut first = String::from("XFORWARD");
            for (key, val, unk) in [
                ("NAME", &x.name, false),
                ("ADDR", &x.addr, false),
                ("PORT", &x.port, false),
            ] {
                if has(key) && xforward_ok(val, unk) {
                    first.push_str(&format!(" {key}={}", xtext(val, "")));
                }
            }
            let mut second = String::from("XFORWARD");
            let domain = if x.domain.is_empty() {
                String::new()
            } else if x.domain == "local" {
                "LOCAL".to_string()
            } else {
                "REMOTE".to_string()
            };
            for (key, val, unk) in [
                ("PROTO", &x.proto, false),
                ("HELO", &x.helo, true),
                ("IDENT", &x.ident, true),
                ("SOURCE", &domain, true),
            ] {
                if has(key) && xforward_ok(val, unk) {
                    second.push_str(&format!(" {key}={}", xtext(val, "")));
                }
            }
            if first.len() > "XFORWARD".len() {
                self.queue(State::XforwardNameAddr, &first)?;
            }
            if second.len() > "XFORWARD".len() {
                self.queue(State::XforwardProtoHelo, &second)?;
            }
        }
        self.dl.stats.reuse_count = self.sess.reuse_count;
        self.dl.stats.conn_setup_done = Some(SystemTime::now());
        let mail = mail_command(self.sess, req, p, &self.sender);
        // Anything the server says before our MAIL FROM inside TLS was not asked for: a
        // sign of a TLS renegotiation injection (CVE-2009-3555), as Postfix checks.
        self.early_mail_reply = p.tls_block_early_mail_reply
            && self.sess.tls.is_some()
            && self.sess.conn.input_waiting();
        self.queue(State::Mail, &mail)?;
        for k in 0..self.rcpts.len() {
            // After a synchronisation point, stop sending recipients if MAIL was refused.
            if self.mail_rejected {
                return Ok(());
            }
            let i = self.rcpts[k];
            let addr = self.addresses.get(i).map_or("", String::as_str);
            let cmd = rcpt_command(self.sess, req, i, p, addr);
            self.queue(State::Rcpt(k), &cmd)?;
        }
        if self.mail_rejected || (self.pending.is_empty() && self.accepted.is_empty()) {
            return Ok(());
        }
        if req.trace_only && p.verify_at_rcpt {
            return self.sync();
        }
        self.queue(State::Data, "DATA")?;
        self.sync()
    }
}

/// Run one transaction for every open recipient of the delivery on this session, ending
/// the session with QUIT.
pub fn run(sess: &mut Session, dl: &mut Delivery, content: &mut dyn Content, body: &BodyWriter) {
    let mut tx = Tx {
        sess,
        dl,
        pending: VecDeque::new(),
        rcpts: Vec::new(),
        accepted: Vec::new(),
        mail_rejected: false,
        early_mail_reply: false,
        data_rejected: false,
        data_accepted: false,
        lmtp_replies: 0,
        sender: String::new(),
        addresses: Vec::new(),
    };
    tx.run(content, body);
}
