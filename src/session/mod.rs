//! A session with one SMTP or LMTP server: connect, greeting, EHLO/HELO/LHLO and the
//! capabilities the server offered; QUIT at the end.
//!
//! Session state (connection, capabilities, later TLS and authentication) lives here and
//! outlives any one transaction, so that connection reuse can be added without a rewrite.
//! This module reports what happened as a `Failure` with Postfix's wording and DSN; it never
//! decides whether that means defer or bounce: the delivery loop does.

pub mod conn;
pub mod params;
pub mod peer_tables;
pub mod reply;
pub mod reuse;
pub mod secure;

use crate::log;
use crate::outcome::Dsn;
use conn::{Conn, IoFailure, Stream, Tracer};
pub use params::Params;
use reply::{Reply, ReplyWarning};
use socket2::{Domain, SockAddr, Socket, Type};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Where to connect, and the name to show for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name for `host[addr]`; for UNIX sockets, myhostname (as Postfix shows it).
    pub name: String,
    pub addr: Address,
    /// The address belongs to the best MX preference (decides 5.4.6 vs 4.4.6 for a loop).
    pub best_mx: bool,
    /// DNSSEC facts from the lookups that found this server (for the DANE levels).
    pub dnssec: crate::route::select::Dnssec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl Endpoint {
    pub fn inet(name: String, addr: SocketAddr) -> Endpoint {
        Endpoint {
            name,
            addr: Address::Inet(addr),
            best_mx: true,
            dnssec: Default::default(),
        }
    }
    pub fn unix(path: PathBuf) -> Endpoint {
        Endpoint {
            name: String::new(),
            addr: Address::Unix(path),
            best_mx: true,
            dnssec: Default::default(),
        }
    }
}

/// How a server is named in texts: `host[addr]` and `host[addr]:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub addr: String,
    pub port: u16,
}

impl Peer {
    pub fn of(ep: &Endpoint, myhostname: &str) -> Peer {
        match &ep.addr {
            Address::Inet(sa) => Peer {
                name: if ep.name.is_empty() {
                    sa.ip().to_string()
                } else {
                    ep.name.clone()
                },
                addr: sa.ip().to_string(),
                port: sa.port(),
            },
            Address::Unix(p) => Peer {
                name: if ep.name.is_empty() {
                    myhostname.to_string()
                } else {
                    ep.name.clone()
                },
                addr: p.display().to_string(),
                port: 0,
            },
        }
    }
    pub fn namaddr(&self) -> String {
        format!("{}[{}]", self.name, self.addr)
    }
    pub fn namaddrport(&self) -> String {
        if self.port == 0 {
            self.namaddr()
        } else {
            format!("{}[{}]:{}", self.name, self.addr, self.port)
        }
    }
}

/// What the server offered in its EHLO/LHLO reply (after smtp_discard_ehlo_keywords).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    pub esmtp: bool,
    pub pipelining: bool,
    pub size: bool,
    /// SIZE limit; 0 when none was announced.
    pub size_limit: u64,
    pub eightbitmime: bool,
    pub dsn: bool,
    pub enhanced_status_codes: bool,
    pub smtputf8: bool,
    pub starttls: bool,
    pub chunking: bool,
    /// AUTH mechanisms as offered (upper case).
    pub auth: Vec<String>,
    /// The server sent an AUTH keyword (possibly with no mechanisms).
    pub auth_offered: bool,
    /// XFORWARD attribute names offered (upper case).
    pub xforward: Vec<String>,
    /// The server's name from the first EHLO line.
    pub helo: String,
}

/// A failure that ends (or prevents) a session, in Postfix's terms.
#[derive(Debug, Clone)]
pub struct Failure {
    pub dsn: Dsn,
    /// Whether the connection is still usable for a polite QUIT.
    pub send_quit: bool,
    /// A "mail loops back to myself" failure (for best_mx_transport handling).
    pub loop_detected: bool,
    /// The TLS handshake failed (opportunistic TLS may retry in plaintext).
    pub tls_failed: bool,
}

impl Failure {
    pub fn new(dsn: Dsn, send_quit: bool) -> Failure {
        Failure {
            dsn,
            send_quit,
            loop_detected: false,
            tls_failed: false,
        }
    }
}

/// Postfix's stream exception texts.
pub fn io_failure_dsn(peer: &Peer, e: &IoFailure, while_: &str) -> Dsn {
    match e {
        IoFailure::Timeout => Dsn::new(
            "4.4.2",
            format!(
                "conversation with {} timed out while {}",
                peer.namaddr(),
                while_
            ),
        ),
        IoFailure::Lost => Dsn::new(
            "4.4.2",
            format!("lost connection with {} while {}", peer.namaddr(), while_),
        ),
        // Other socket errors end the conversation just like a lost connection.
        IoFailure::Other(_) => Dsn::new(
            "4.4.2",
            format!("lost connection with {} while {}", peer.namaddr(), while_),
        ),
    }
}

/// A reply-based failure: the server's status and reply text, with Postfix's "Protocol
/// error" treatment for replies that are neither 4xx nor 5xx.
pub fn reply_dsn(peer: &Peer, reply: &Reply, text: String) -> Dsn {
    let (status, reason) = if reply.dsn.starts_with('4') || reply.dsn.starts_with('5') {
        (reply.dsn.clone(), text)
    } else {
        ("5.5.0".to_string(), format!("Protocol error: {text}"))
    };
    Dsn {
        status,
        reason,
        mta: Some(peer.name.clone()),
        reply: Some(reply.text.clone()),
    }
}

/// Connect to an endpoint within smtp_connect_timeout. The error is Postfix's
/// "connect to host[addr]:port: reason" with DSN 4.4.1.
pub fn connect(ep: &Endpoint, peer: &Peer, params: &Params) -> Result<Box<dyn Stream>, Dsn> {
    let timeout = (!params.connect_timeout.is_zero()).then_some(params.connect_timeout);
    match &ep.addr {
        Address::Unix(path) => {
            let fail = |e: std::io::Error| {
                Dsn::new(
                    "4.4.1",
                    format!("connect to {}: {}", peer.namaddr(), log::strerror(&e)),
                )
            };
            let sock = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(fail)?;
            let addr = SockAddr::unix(path).map_err(|_| {
                log::warn(&format!("unix-domain name too long: {}", path.display()));
                Dsn::new("4.3.5", "Server configuration error")
            })?;
            match timeout {
                Some(t) => sock.connect_timeout(&addr, t),
                None => sock.connect(&addr),
            }
            .map_err(fail)?;
            Ok(Box::new(std::os::unix::net::UnixStream::from(
                std::os::fd::OwnedFd::from(sock),
            )))
        }
        Address::Inet(sa) => {
            let fail = |e: std::io::Error| {
                let text = if e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::WouldBlock
                {
                    "Connection timed out".to_string()
                } else {
                    log::strerror(&e)
                };
                Dsn::new(
                    "4.4.1",
                    format!("connect to {}: {}", peer.namaddrport(), text),
                )
            };
            let domain = if sa.is_ipv4() {
                Domain::IPV4
            } else {
                Domain::IPV6
            };
            let sock = Socket::new(domain, Type::STREAM, None).map_err(fail)?;
            if params.tcp_windowsize > 0 {
                // Before connect, so that the window scale is negotiated for it; failures
                // are only warned about (Postfix's set_inet_windowsize()).
                let size = usize::try_from(params.tcp_windowsize).unwrap_or(usize::MAX);
                if let Err(e) = sock.set_send_buffer_size(size) {
                    log::warn(&format!(
                        "setsockopt SO_SNDBUF {size}: {}",
                        log::strerror(&e)
                    ));
                }
                if let Err(e) = sock.set_recv_buffer_size(size) {
                    log::warn(&format!(
                        "setsockopt SO_RCVBUF {size}: {}",
                        log::strerror(&e)
                    ));
                }
            }
            let bind = if sa.is_ipv4() {
                &params.bind_address
            } else {
                &params.bind_address6
            };
            if !bind.is_empty() {
                match bind.parse::<IpAddr>() {
                    Ok(ip) if ip.is_ipv4() == sa.is_ipv4() => {
                        if let Err(e) = sock.bind(&SockAddr::from(SocketAddr::new(ip, 0))) {
                            log::warn(&format!(
                                "smtp_connect_addr: bind {bind}: {}",
                                log::strerror(&e)
                            ));
                            return Err(Dsn::new("4.4.0", "server configuration error"));
                        }
                    }
                    _ => {
                        log::warn(&format!("smtp_connect_addr: bad bind address: {bind}"));
                        return Err(Dsn::new("4.4.0", "server configuration error"));
                    }
                }
            }
            let addr = SockAddr::from(*sa);
            match timeout {
                Some(t) => sock.connect_timeout(&addr, t),
                None => sock.connect(&addr),
            }
            .map_err(fail)?;
            // We buffer whole command groups ourselves; Nagle would only add a round trip
            // (delayed ACK) before the final dot.
            let _ = sock.set_tcp_nodelay(true);
            Ok(Box::new(std::net::TcpStream::from(
                std::os::fd::OwnedFd::from(sock),
            )))
        }
    }
}

/// An open session, ready for transactions.
pub struct Session {
    pub conn: Conn,
    pub peer: Peer,
    pub caps: Caps,
    pub lmtp: bool,
    /// Number of transactions already done on this connection.
    pub reuse_count: u32,
    /// Whether the connection is still in a state where QUIT makes sense.
    pub usable: bool,
    /// PIX workaround: pause before the final dot.
    pub pix_delay_dotcrlf: bool,
    /// Until when the connection may go back to the connection cache; `None`: never
    /// (caching not asked for, or the session is in doubt).
    pub expire: Option<std::time::SystemTime>,
    /// The connection came out of the connection cache.
    pub from_cache: bool,
    /// TLS is on (STARTTLS or wrapper mode) and what it achieved.
    pub tls_wrapped: bool,
    pub tls: Option<crate::tls::TlsInfo>,
    /// The SASL mechanism we authenticated with.
    pub sasl_mechanism: Option<String>,
}

/// Names of the EHLO keywords smtp_discard_ehlo_keywords understands.
const DISCARDABLE: &[&str] = &[
    "8BITMIME",
    "AUTH",
    "ETRN",
    "PIPELINING",
    "SIZE",
    "VERP",
    "VRFY",
    "XCLIENT",
    "XFORWARD",
    "STARTTLS",
    "ENHANCEDSTATUSCODES",
    "DSN",
    "SMTPUTF8",
    "CHUNKING",
    "SILENT-DISCARD",
];

/// Log one reply-reader warning as Postfix does.
pub fn log_reply_warning(
    peer: &Peer,
    pipelining: bool,
    lmtp: bool,
    queue_id: &str,
    w: ReplyWarning,
) {
    let namaddr = peer.namaddrport();
    let proto = if lmtp { "LMTP" } else { "ESMTP" };
    let param = if lmtp {
        "lmtp_discard_lhlo_keyword_address_maps"
    } else {
        "smtp_discard_ehlo_keyword_address_maps"
    };
    match w {
        ReplyWarning::LongLine(s) => log::warn(&format!(
            "{namaddr}: response longer than {}: {s}...",
            reply::LINE_LIMIT
        )),
        ReplyWarning::LongReply(s) => log::warn(&format!(
            "{namaddr}: multi-line response longer than {} {s}...",
            reply::LINE_LIMIT
        )),
        ReplyWarning::Garbage(s) => {
            if pipelining {
                log::warn(&format!(
                    "{queue_id}: non-{proto} response from {namaddr}: {s}"
                ));
                log::warn(&format!(
                    "to prevent loss of mail, turn off command pipelining for {} with the {param} parameter",
                    peer.addr
                ));
            }
        }
    }
}

impl Session {
    /// Read a reply, logging reader warnings the way Postfix's reply reader does.
    pub fn read_reply(&mut self, queue_id: &str) -> Result<Reply, IoFailure> {
        let peer = self.peer.clone();
        let pipelining = self.caps.pipelining;
        let lmtp = self.lmtp;
        let mut garbage = false;
        let r = reply::read_reply(&mut self.conn, |w| {
            if matches!(w, ReplyWarning::Garbage(_)) {
                garbage = true;
            }
            log_reply_warning(&peer, pipelining, lmtp, queue_id, w)
        });
        // A server that answers with garbage is out of step: never cache its connection.
        if garbage {
            self.dont_cache();
        }
        r
    }

    /// Connect and greet: read the banner, send EHLO (or HELO, or LHLO) and record the
    /// server's capabilities. `loop_detect`: refuse a server that calls itself by our name.
    pub fn open(
        ep: &Endpoint,
        params: &Params,
        queue_id: &str,
        tracer: &mut dyn FnMut(&Peer) -> Option<Tracer>,
        best_mx: bool,
        nexthop: &str,
        arrival: Option<std::time::SystemTime>,
    ) -> Result<Session, Box<(Option<Peer>, Failure)>> {
        Self::open_with(
            ep, params, queue_id, tracer, best_mx, nexthop, arrival, None,
        )
    }

    /// `open` with TLS and SASL when `extras` asks for them.
    #[allow(clippy::too_many_arguments)]
    pub fn open_with(
        ep: &Endpoint,
        params: &Params,
        queue_id: &str,
        tracer: &mut dyn FnMut(&Peer) -> Option<Tracer>,
        best_mx: bool,
        nexthop: &str,
        arrival: Option<std::time::SystemTime>,
        extras: Option<&secure::Extras>,
    ) -> Result<Session, Box<(Option<Peer>, Failure)>> {
        let peer = Peer::of(ep, &params.myhostname);
        let stream =
            connect(ep, &peer, params).map_err(|d| Box::new((None, Failure::new(d, false))))?;
        if extras.is_some_and(|x| x.unix_may) {
            log::warn(
                "smtp_connect_local: opportunistic TLS encryption is not appropriate for unix-domain destinations.",
            );
        }
        let mut conn = Conn::new(stream, params.per_record_deadline);
        conn.set_tracer(tracer(&peer));
        let mut s = Session {
            conn,
            peer: peer.clone(),
            caps: Caps::default(),
            lmtp: params.lmtp,
            reuse_count: 0,
            usable: true,
            pix_delay_dotcrlf: false,
            expire: None,
            from_cache: false,
            tls_wrapped: false,
            tls: None,
            sasl_mechanism: None,
        };
        let loop_detect = !params.lmtp && matches!(ep.addr, Address::Inet(sa) if sa.port() == 25);
        match s.handshake(
            params,
            queue_id,
            loop_detect,
            best_mx,
            nexthop,
            arrival,
            extras,
        ) {
            Ok(()) => Ok(s),
            Err(f) => {
                if f.send_quit {
                    s.quit(params, queue_id);
                }
                s.conn.close();
                Err(Box::new((Some(peer), f)))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handshake(
        &mut self,
        params: &Params,
        queue_id: &str,
        loop_detect: bool,
        best_mx: bool,
        nexthop: &str,
        arrival: Option<std::time::SystemTime>,
        extras: Option<&secure::Extras>,
    ) -> Result<(), Failure> {
        let peer = self.peer.clone();
        if let Some(plan) = extras.and_then(|x| x.tls.as_ref())
            && plan.settings.wrappermode
        {
            self.wrap_tls(plan)?;
        }
        self.conn.set_timeout(params.helo_timeout);
        let where_ = "receiving the initial server greeting";
        let io = |e: IoFailure, w: &str| Failure::new(io_failure_dsn(&peer, &e, w), false);
        let refused = |r: &Reply, status_override: Option<char>| {
            let mut dsn = reply_dsn(
                &peer,
                r,
                format!(
                    "host {} refused to talk to me: {}",
                    peer.namaddr(),
                    r.one_line()
                ),
            );
            if let Some(c) = status_override {
                dsn.status.replace_range(0..1, &c.to_string());
            }
            Failure::new(dsn, true)
        };

        let greeting = self.read_reply(queue_id).map_err(|e| io(e, where_))?;
        match greeting.class() {
            2 => {}
            5 if params.skip_5xx_greeting => return Err(refused(&greeting, Some('4'))),
            _ => return Err(refused(&greeting, None)),
        }
        let mut esmtp = false;
        // The first token is the code (ended by '-' or blank); words after it by blanks.
        let after_code = greeting
            .text
            .trim_start_matches(['-', ' ', '\t', '\n'])
            .split_once(['-', ' ', '\t', '\n'])
            .map(|(_, rest)| rest)
            .unwrap_or("");
        for (n, word) in after_code
            .split([' ', '\t', '\n'])
            .filter(|w| !w.is_empty())
            .enumerate()
        {
            if n == 0 && word.eq_ignore_ascii_case(&params.myhostname) {
                if loop_detect {
                    log::warn(&format!(
                        "host {} greeted me with my own hostname {}",
                        peer.namaddrport(),
                        params.myhostname
                    ));
                }
            } else if word.eq_ignore_ascii_case("ESMTP") {
                esmtp = true;
            }
        }
        // A greeting of nothing but "220" and asterisks is a Cisco PIX mangling the
        // conversation: apply smtp_pix_workarounds as Postfix does.
        let mut pix_no_esmtp = false;
        if greeting
            .text
            .chars()
            .all(|c| matches!(c, '2' | '0' | ' ' | '*' | '\t' | '\n'))
        {
            // smtp_pix_workaround_maps overrides smtp_pix_workarounds per server.
            let per_server = params.peer_tables.as_ref().and_then(|t| t.pix(&peer.addr));
            let words: Vec<String> = per_server
                .as_ref()
                .unwrap_or(&params.pix_workarounds)
                .iter()
                .map(|w| w.to_ascii_lowercase())
                .collect();
            pix_no_esmtp = words.iter().any(|w| w == "disable_esmtp");
            // Old enough for delay_dotcrlf: Postfix compares whole seconds, arrival <=
            // now - smtp_pix_workaround_threshold_time.
            let secs = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i128::from(d.as_secs()))
            };
            let old_enough = arrival.is_some_and(|a| {
                secs(a)
                    <= secs(std::time::SystemTime::now())
                        - i128::from(params.pix_threshold.as_secs())
            });
            self.pix_delay_dotcrlf = words.iter().any(|w| w == "delay_dotcrlf") && old_enough;
            let mut on = Vec::new();
            if pix_no_esmtp {
                on.push("disable_esmtp");
            }
            if self.pix_delay_dotcrlf {
                on.push("delay_dotcrlf");
            }
            // Postfix logs this whenever the setting is not empty, even when nothing is
            // left to enable ("enabling PIX workarounds:  for ..." for fresh mail with
            // only delay_dotcrlf).
            if !words.is_empty() {
                log::info(&format!(
                    "{queue_id}: enabling PIX workarounds: {} for {}",
                    on.join(" "),
                    peer.namaddrport()
                ));
            }
        }
        if params.lmtp {
            esmtp = true;
        } else {
            if params.always_send_ehlo && !pix_no_esmtp {
                esmtp = true;
            }
            if params.never_send_ehlo || pix_no_esmtp {
                esmtp = false;
            }
        }

        self.caps.esmtp = esmtp;
        self.ehlo(params, queue_id, loop_detect, best_mx, nexthop)?;
        if let Some(x) = extras {
            if let Some(plan) = &x.tls
                && !self.tls_wrapped
            {
                self.starttls(plan, params, queue_id, loop_detect, best_mx, nexthop)?;
            }
            if let Some(sasl) = &x.sasl {
                self.sasl_login(sasl, params, queue_id)?;
            }
        }
        Ok(())
    }

    /// EHLO/HELO/LHLO and what the reply offers (also again after STARTTLS).
    fn ehlo(
        &mut self,
        params: &Params,
        queue_id: &str,
        loop_detect: bool,
        best_mx: bool,
        nexthop: &str,
    ) -> Result<(), Failure> {
        let peer = self.peer.clone();
        let mut where_;
        let io = |e: IoFailure, w: &str| Failure::new(io_failure_dsn(&peer, &e, w), false);
        let refused = |r: &Reply| {
            Failure::new(
                reply_dsn(
                    &peer,
                    r,
                    format!(
                        "host {} refused to talk to me: {}",
                        peer.namaddr(),
                        r.one_line()
                    ),
                ),
                true,
            )
        };
        let mut esmtp = self.caps.esmtp;
        self.caps = Caps::default();
        let ehlo_reply;
        if params.lmtp {
            where_ = "performing the LHLO handshake";
            self.conn.queue_cmd(&format!("LHLO {}", params.helo_name));
            self.conn.flush().map_err(|e| io(e, where_))?;
            let r = self.read_reply(queue_id).map_err(|e| io(e, where_))?;
            if r.class() != 2 {
                return Err(refused(&r));
            }
            ehlo_reply = Some(r);
        } else {
            let mut got = None;
            if esmtp {
                where_ = "performing the EHLO handshake";
                self.conn.queue_cmd(&format!("EHLO {}", params.helo_name));
                self.conn.flush().map_err(|e| io(e, where_))?;
                let r = self.read_reply(queue_id).map_err(|e| io(e, where_))?;
                if r.class() == 2 {
                    got = Some(r);
                } else if r.code == 421 {
                    return Err(refused(&r));
                } else {
                    esmtp = false;
                }
            }
            if !esmtp {
                where_ = "performing the HELO handshake";
                self.conn.queue_cmd(&format!("HELO {}", params.helo_name));
                self.conn.flush().map_err(|e| io(e, where_))?;
                let r = self.read_reply(queue_id).map_err(|e| io(e, where_))?;
                if r.class() != 2 {
                    return Err(refused(&r));
                }
            }
            ehlo_reply = got;
        }

        self.caps.esmtp = esmtp;
        if let Some(r) = ehlo_reply {
            // smtp_discard_ehlo_keyword_address_maps, by server address; a lookup error
            // ends the session with "local data error".
            let per_server = match &params.peer_tables {
                Some(t) => t.ehlo_discard(&peer.addr).map_err(|text| {
                    log::warn(&format!("{queue_id}: {text}"));
                    Failure::new(
                        Dsn::new(
                            "4.3.0",
                            format!("local data error while talking to {}", peer.namaddr()),
                        ),
                        false,
                    )
                })?,
                None => None,
            };
            let words = per_server.as_ref().unwrap_or(&params.discard_ehlo_keywords);
            self.parse_ehlo(&r, words);
            if loop_detect && self.caps.helo.eq_ignore_ascii_case(&params.myhostname) {
                log::warn(&format!(
                    "host {} replied to HELO/EHLO with my own hostname {}",
                    peer.namaddrport(),
                    params.myhostname
                ));
                let status = if best_mx { "5.4.6" } else { "4.4.6" };
                let mut f = Failure::new(
                    Dsn::new(status, format!("mail for {nexthop} loops back to myself")),
                    true,
                );
                f.loop_detected = true;
                return Err(f);
            }
        }
        if self.caps.smtputf8 && !self.caps.eightbitmime {
            log::info(&format!(
                "host {} offers SMTPUTF8 support, but not 8BITMIME",
                peer.namaddr()
            ));
            self.caps.eightbitmime = true;
        }
        Ok(())
    }

    fn parse_ehlo(&mut self, r: &Reply, discard_words: &[String]) {
        let wanted: Vec<String> = discard_words
            .iter()
            .map(|k| k.to_ascii_uppercase())
            .collect();
        // Table order, as Postfix prints the mask; its SMTPUTF8 bit shows under the alias
        // that comes first in its table.
        let discard: Vec<&str> = DISCARDABLE
            .iter()
            .copied()
            .filter(|k| wanted.iter().any(|w| w == k))
            .collect();
        let shown: Vec<&str> = discard
            .iter()
            .filter(|k| **k != "SILENT-DISCARD")
            .map(|k| {
                if *k == "SMTPUTF8" {
                    "EHLO_MASK_SMTPUTF8"
                } else {
                    *k
                }
            })
            .collect();
        if !shown.is_empty() && !discard.contains(&"SILENT-DISCARD") {
            log::info(&format!("discarding EHLO keywords: {}", shown.join(" ")));
        }
        let keep = |k: &str| !discard.contains(&k);
        let mut n = 0;
        for line in r.lines() {
            let mut words = line.split([' ', '\t', '=']).filter(|w| !w.is_empty());
            let Some(word) = words.next() else { continue };
            n += 1;
            if n == 1 {
                self.caps.helo = word.to_string();
                continue;
            }
            let key = word.to_ascii_uppercase();
            match key.as_str() {
                "8BITMIME" if keep("8BITMIME") => self.caps.eightbitmime = true,
                "PIPELINING" if keep("PIPELINING") => self.caps.pipelining = true,
                "XFORWARD" if keep("XFORWARD") => {
                    const KNOWN: [&str; 7] =
                        ["NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"];
                    for w in words {
                        let w = w.to_ascii_uppercase();
                        if KNOWN.contains(&w.as_str()) && !self.caps.xforward.contains(&w) {
                            self.caps.xforward.push(w);
                        }
                    }
                }
                "SIZE" if keep("SIZE") => {
                    self.caps.size = true;
                    if let Some(v) = words.next() {
                        if v.bytes().all(|b| b.is_ascii_digit()) {
                            self.caps.size_limit = v.parse().unwrap_or(u64::MAX);
                        } else {
                            log::warn(&format!(
                                "bad EHLO SIZE limit \"{v}\" from {}",
                                self.peer.namaddrport()
                            ));
                        }
                    }
                }
                "STARTTLS" if keep("STARTTLS") => self.caps.starttls = true,
                "AUTH" if keep("AUTH") => {
                    self.caps.auth_offered = true;
                    for m in words {
                        let m = m.to_ascii_uppercase();
                        if !self.caps.auth.contains(&m) {
                            self.caps.auth.push(m);
                        }
                    }
                }
                "DSN" if keep("DSN") => self.caps.dsn = true,
                "SMTPUTF8" if keep("SMTPUTF8") => self.caps.smtputf8 = true,
                "ENHANCEDSTATUSCODES" if keep("ENHANCEDSTATUSCODES") => {
                    self.caps.enhanced_status_codes = true
                }
                "CHUNKING" if keep("CHUNKING") => self.caps.chunking = true,
                _ => {}
            }
        }
    }

    /// Send QUIT (and read its reply unless smtp_skip_quit_response), then close.
    pub fn quit(&mut self, params: &Params, queue_id: &str) {
        if !self.usable {
            self.conn.close();
            return;
        }
        self.conn.set_timeout(params.quit_timeout);
        self.conn.queue_cmd("QUIT");
        if self.conn.flush().is_ok() && !params.skip_quit_response {
            let _ = self.read_reply(queue_id);
        }
        self.usable = false;
        self.conn.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_names() {
        let p = Peer::of(
            &Endpoint::inet(
                "mx.example".into(),
                "[2001:db8::1]:25"
                    .parse()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            ),
            "me",
        );
        assert_eq!(p.namaddrport(), "mx.example[2001:db8::1]:25");
        let u = Peer::of(&Endpoint::unix("/run/lmtp".into()), "me.example");
        assert_eq!(u.namaddr(), "me.example[/run/lmtp]");
        assert_eq!(u.namaddrport(), "me.example[/run/lmtp]");
    }

    #[test]
    fn protocol_error_wording() {
        let p = Peer {
            name: "h".into(),
            addr: "1.2.3.4".into(),
            port: 25,
        };
        let d = reply_dsn(
            &p,
            &Reply::parse_text("250 ok"),
            "host h[1.2.3.4] said: 250 ok".into(),
        );
        assert_eq!(d.status, "5.5.0");
        assert!(d.reason.starts_with("Protocol error: "));
        let d = reply_dsn(&p, &Reply::parse_text("451 4.3.0 x"), "t".into());
        assert_eq!(d.status, "4.3.0");
    }
}
