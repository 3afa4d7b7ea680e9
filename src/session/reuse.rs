//! Connection reuse: turning an idle session into a socket plus a property string for a
//! connection cache, and back; the lookup labels; the RSET probe.
//!
//! The labels and property strings follow Postfix's smtp (smtp_key.c, smtp_session.c) so
//! that the fields mean the same to an admin reading scache(8) verbose logs: fields of a
//! label are separated by newlines, with `*` for a field that does not apply; properties
//! are `name=value` lines. The cache itself is behind [`ConnCache`]: Postfix's scache(8)
//! under master, nothing on the command line.

use super::conn::{Conn, IoFailure, Stream, Tracer};
use super::{Caps, Params, Peer, Session};
use std::os::fd::OwnedFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A cached connection as the cache hands it back.
pub struct Cached {
    pub fd: OwnedFd,
    /// Destination-to-server binding (empty for lookups by endpoint).
    pub dest_prop: String,
    pub endp_prop: String,
}

/// A connection cache (Postfix's scache(8) client, or a test double).
pub trait ConnCache {
    fn find_dest(&mut self, label: &str) -> Option<Cached>;
    fn find_endp(&mut self, label: &str) -> Option<Cached>;
    fn save_endp(&mut self, ttl: Duration, label: &str, prop: &str, fd: OwnedFd);
    fn save_dest(&mut self, ttl: Duration, label: &str, prop: &str, endp_label: &str);
}

/// What goes into a label, in Postfix's field order.
#[derive(Default)]
pub struct LabelParts<'a> {
    pub service: &'a str,
    /// The envelope sender (with sender-dependent SASL credentials).
    pub sender: Option<&'a str>,
    /// The delivery request's nexthop (destination labels only).
    pub request_nexthop: Option<&'a str>,
    /// The destination being tried and the server's name (with SASL credentials, which
    /// may differ per destination or host).
    pub cur_nexthop: Option<&'a str>,
    pub hostname: Option<&'a str>,
    /// Server address and port (endpoint labels only).
    pub addr: Option<(&'a str, u16)>,
    pub tls_level: u8,
    pub smtputf8: bool,
}

/// Build a cache label. A value containing the separator characters is base64-encoded,
/// as Postfix does, so that no field can forge another.
pub fn label(parts: &LabelParts) -> String {
    let mut out = String::new();
    let field = |out: &mut String, v: &str| {
        if v.is_empty() {
            out.push_str("*\n");
        } else if v.contains(['\n', '*']) {
            out.push_str(&crate::postfix::attr::base64_encode(v.as_bytes()));
            out.push('\n');
        } else {
            out.push_str(v);
            out.push('\n');
        }
    };
    field(&mut out, parts.service);
    if let Some(s) = parts.sender {
        field(&mut out, s);
    }
    if let Some(n) = parts.request_nexthop {
        field(&mut out, n);
    }
    if let Some(n) = parts.cur_nexthop {
        field(&mut out, n);
    }
    if let Some(h) = parts.hostname {
        field(&mut out, h);
    }
    if let Some((a, port)) = parts.addr {
        field(&mut out, a);
        out.push_str(&format!("{port}\n"));
    }
    out.push_str(&format!("{}\n", parts.tls_level));
    out.push_str(&format!("{}\n", u8::from(parts.smtputf8)));
    out
}

// Postfix's server feature bits (smtp.h), so that the numbers in the property strings
// mean what they mean to Postfix.
const F_ESMTP: u32 = 1 << 0;
const F_8BITMIME: u32 = 1 << 1;
const F_PIPELINING: u32 = 1 << 2;
const F_SIZE: u32 = 1 << 3;
const F_STARTTLS: u32 = 1 << 4;
const F_AUTH: u32 = 1 << 5;
const F_BEST_MX: u32 = 1 << 12;
const F_DSN: u32 = 1 << 15;
const F_PIX_DELAY_DOTCRLF: u32 = 1 << 17;
const F_SMTPUTF8: u32 = 1 << 21;

fn features(s: &Session) -> u32 {
    let c = &s.caps;
    let mut f = 0;
    for (on, bit) in [
        (c.esmtp, F_ESMTP),
        (c.eightbitmime, F_8BITMIME),
        (c.pipelining, F_PIPELINING),
        (c.size, F_SIZE),
        (c.starttls, F_STARTTLS),
        (!c.auth.is_empty(), F_AUTH),
        (c.dsn, F_DSN),
        (s.pix_delay_dotcrlf, F_PIX_DELAY_DOTCRLF),
        (c.smtputf8, F_SMTPUTF8),
    ] {
        if on {
            f |= bit;
        }
    }
    f
}

fn parse_props(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .collect::<Vec<_>>()
}

fn prop<'a>(props: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    props.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// The destination-to-server binding stored under a nexthop label.
pub fn dest_prop(nexthop: &str, peer: &Peer, best_mx: bool) -> String {
    format!(
        "destination={nexthop}\nhost_name={}\nhost_addr={}\ndestination_features={}\nhost_port={}\n",
        peer.name,
        peer.addr,
        if best_mx { F_BEST_MX } else { 0 },
        peer.port
    )
}

/// What a nexthop lookup tells about the server behind the cached connection.
pub struct DestBinding {
    pub name: String,
    pub addr: String,
    pub port: Option<u16>,
    pub best_mx: bool,
}

pub fn parse_dest_prop(text: &str) -> Option<DestBinding> {
    let p = parse_props(text);
    Some(DestBinding {
        name: prop(&p, "host_name")?.to_string(),
        addr: prop(&p, "host_addr")?.to_string(),
        port: prop(&p, "host_port").and_then(|v| v.parse().ok()),
        best_mx: prop(&p, "destination_features")?.parse::<u32>().ok()? & F_BEST_MX != 0,
    })
}

impl Session {
    /// Whether this session may go back to the cache after the current transaction
    /// (Postfix's "cached and not expired": a deadline was set, it has not passed, and the
    /// reuse count limit has not been reached).
    pub fn cacheable(&self, p: &Params) -> bool {
        self.usable
            && self.expire.is_some_and(|t| SystemTime::now() <= t)
            && (p.reuse_count_limit == 0 || self.reuse_count < p.reuse_count_limit)
    }

    /// Never cache this session (protocol trouble, or a state the label cannot express).
    pub fn dont_cache(&mut self) {
        self.expire = None;
    }

    /// Turn the idle session into a socket and its endpoint properties. `None` when the
    /// session cannot be handed over (TLS, unread input); it is closed then.
    pub fn passivate(self, tls_level: u8) -> Option<(OwnedFd, String)> {
        let expire = self
            .expire?
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let c = &self.caps;
        let prop = format!(
            "tls_level={tls_level}\nreuse_count={}\nendpoint_features={}\nexpire_time={expire}\n\
             size_limit={}\nserver_helo={}\nauth={}\nxforward={}\nenhanced_status_codes={}\n",
            self.reuse_count,
            features(&self),
            c.size_limit,
            c.helo.replace('\n', " "),
            c.auth.join(" "),
            c.xforward.join(" "),
            u8::from(c.enhanced_status_codes),
        );
        let fd = self.conn.into_fd()?;
        Some((fd, prop))
    }

    /// Bring a cached connection back to life. `None` (and a warning, as Postfix gives)
    /// when the properties do not make sense; the socket is closed then.
    pub fn activate(
        fd: OwnedFd,
        endp_prop: &str,
        peer: Peer,
        params: &Params,
        tracer: Option<Tracer>,
    ) -> Option<Session> {
        let p = parse_props(endp_prop);
        let num = |name: &str| prop(&p, name).and_then(|v| v.parse::<u64>().ok());
        let (Some(reuse), Some(feat), Some(expire)) = (
            num("reuse_count"),
            num("endpoint_features"),
            num("expire_time"),
        ) else {
            crate::log::warn("smtp_session_activate: bad cached endp properties");
            return None;
        };
        let feat = u32::try_from(feat).unwrap_or(0);
        let words = |name: &str| -> Vec<String> {
            prop(&p, name)
                .unwrap_or("")
                .split(' ')
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        };
        let caps = Caps {
            esmtp: feat & F_ESMTP != 0,
            pipelining: feat & F_PIPELINING != 0,
            size: feat & F_SIZE != 0,
            size_limit: num("size_limit").unwrap_or(0),
            eightbitmime: feat & F_8BITMIME != 0,
            dsn: feat & F_DSN != 0,
            enhanced_status_codes: num("enhanced_status_codes") == Some(1),
            smtputf8: feat & F_SMTPUTF8 != 0,
            starttls: feat & F_STARTTLS != 0,
            chunking: false,
            auth_offered: prop(&p, "auth").is_some_and(|a| !a.is_empty()),
            auth: words("auth"),
            xforward: words("xforward"),
            helo: prop(&p, "server_helo").unwrap_or("").to_string(),
        };
        let stream: Box<dyn Stream> = if peer.port == 0 {
            Box::new(std::os::unix::net::UnixStream::from(fd))
        } else {
            Box::new(std::net::TcpStream::from(fd))
        };
        let mut conn = Conn::new(stream, params.per_record_deadline);
        conn.set_tracer(tracer);
        Some(Session {
            conn,
            peer,
            caps,
            lmtp: params.lmtp,
            reuse_count: u32::try_from(reuse).unwrap_or(u32::MAX).saturating_add(1),
            usable: true,
            pix_delay_dotcrlf: feat & F_PIX_DELAY_DOTCRLF != 0,
            expire: Some(UNIX_EPOCH + Duration::from_secs(expire)),
            from_cache: true,
            tls_wrapped: false,
            tls: None,
            sasl_mechanism: None,
        })
    }

    /// Postfix's RSET probe before reusing a cached connection: `Ok(true)` when the server
    /// answered 2xx, `Ok(false)` when it refused, `Err` when the connection is gone.
    pub fn rset_probe(&mut self, params: &Params, queue_id: &str) -> Result<bool, IoFailure> {
        self.conn.set_timeout(params.rset_timeout);
        self.conn.queue_cmd("RSET");
        self.conn.flush()?;
        let r = self.read_reply(queue_id)?;
        Ok(r.class() == 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_postfix_field_order() {
        let endp = label(&LabelParts {
            service: "smtp",
            request_nexthop: None,
            addr: Some(("192.0.2.1", 25)),
            tls_level: 1,
            smtputf8: false,
            ..Default::default()
        });
        assert_eq!(endp, "smtp\n192.0.2.1\n25\n1\n0\n");
        let dest = label(&LabelParts {
            service: "relay",
            request_nexthop: Some("[mx.example]:587"),
            addr: None,
            tls_level: 0,
            smtputf8: true,
            ..Default::default()
        });
        assert_eq!(dest, "relay\n[mx.example]:587\n0\n1\n");
        // A separator inside a value cannot forge a field.
        let odd = label(&LabelParts {
            service: "smtp",
            request_nexthop: Some("a\nb"),
            addr: None,
            tls_level: 0,
            smtputf8: false,
            ..Default::default()
        });
        assert_eq!(odd.lines().count(), 4);
        // With SASL credentials the sender (when they depend on it), the destination
        // and the host name are part of the label.
        let sasl = label(&LabelParts {
            service: "smtp",
            sender: Some("a@b"),
            cur_nexthop: Some("[relay]:587"),
            hostname: Some("relay"),
            addr: Some(("192.0.2.1", 587)),
            ..Default::default()
        });
        assert_eq!(
            sasl,
            "smtp\na@b\n[relay]:587\nrelay\n192.0.2.1\n587\n0\n0\n"
        );
        assert!(!odd.contains("a\nb"));
    }

    #[test]
    fn dest_props_round_trip() {
        let peer = Peer {
            name: "mx.example".into(),
            addr: "192.0.2.7".into(),
            port: 2525,
        };
        let b = parse_dest_prop(&dest_prop("example.com", &peer, true));
        let b = b.filter(|b| b.best_mx);
        assert_eq!(b.as_ref().map(|b| b.name.as_str()), Some("mx.example"));
        assert_eq!(b.as_ref().and_then(|b| b.port), Some(2525));
        assert!(parse_dest_prop("garbage").is_none());
    }

    #[test]
    fn session_round_trips_through_passivation() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
        let params = Params::default();
        let mut s = Session {
            conn: Conn::new(Box::new(a), false),
            peer: Peer {
                name: "h".into(),
                addr: "/tmp/x".into(),
                port: 0,
            },
            caps: Caps {
                esmtp: true,
                pipelining: true,
                size: true,
                size_limit: 1000,
                dsn: true,
                xforward: vec!["NAME".into(), "ADDR".into()],
                helo: "server.example".into(),
                ..Caps::default()
            },
            lmtp: false,
            reuse_count: 0,
            usable: true,
            pix_delay_dotcrlf: false,
            expire: Some(SystemTime::now() + Duration::from_secs(60)),
            from_cache: false,
            tls_wrapped: false,
            tls: None,
            sasl_mechanism: None,
        };
        assert!(s.cacheable(&params));
        let caps = s.caps.clone();
        let peer = s.peer.clone();
        s.reuse_count = 2;
        let (fd, prop) = s.passivate(0).unwrap_or_else(|| panic!("not passivated"));
        let back = Session::activate(fd, &prop, peer, &params, None)
            .unwrap_or_else(|| panic!("not activated"));
        assert_eq!(back.caps, caps);
        assert_eq!(back.reuse_count, 3);
        assert!(back.from_cache);
        assert!(
            Session::activate(
                std::os::unix::net::UnixStream::pair()
                    .map(|(x, _)| OwnedFd::from(x))
                    .unwrap_or_else(|e| panic!("{e}")),
                "nonsense",
                back.peer.clone(),
                &params,
                None
            )
            .is_none()
        );
        let mut limited = params.clone();
        limited.reuse_count_limit = 3;
        assert!(!back.cacheable(&limited));
    }
}
