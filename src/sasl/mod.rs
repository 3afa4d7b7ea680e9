//! SASL client authentication for smtp(8)/lmtp(8): mechanisms (`mech`), password-map keys
//! (`passwd`), the failure cache (`cache`) and the AUTH dialogue (`authenticate`).
//!
//! The session calls this after EHLO (and again after STARTTLS's second EHLO) when
//! smtp_sasl_auth_enable is on, the server offered AUTH and credentials were found. The
//! result is a `session::Failure` with Postfix's texts and DSN; the delivery loop decides
//! defer or bounce from its status as for any session failure. Credentials never appear in
//! a log line, an error text or the `-v` trace: the AUTH line and every client response are
//! traced redacted.

pub mod cache;
pub mod mech;
pub mod passwd;
pub mod proxy;

pub use cache::{AuthCache, CacheStore, CachedFailure, MemoryStore};
pub use mech::{Credentials, Mech, SecFlags};
pub use passwd::{KeyQuery, LookupKey, lookup_credentials, password_keys};

use crate::log;
use crate::outcome::Dsn;
use crate::session::conn::{Conn, Dir, IoFailure};
use crate::session::reply::Reply;
use crate::session::{Failure, Peer, io_failure_dsn};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// The SASL parameters (smtp_ or lmtp_ prefixed in main.cf).
#[derive(Debug, Clone)]
pub struct SaslParams {
    /// smtp_sasl_security_options (default "noplaintext, noanonymous").
    pub security_options: String,
    /// smtp_sasl_tls_security_options (default: $smtp_sasl_security_options).
    pub tls_security_options: String,
    /// smtp_sasl_tls_verified_security_options (default: the TLS options).
    pub tls_verified_security_options: String,
    /// smtp_sasl_mechanism_filter (default empty: no filter).
    pub mechanism_filter: String,
    /// send_cyrus_sasl_authzid (default no).
    pub send_authzid: bool,
    /// smtp_sasl_auth_soft_bounce (default yes).
    pub soft_bounce: bool,
}

impl Default for SaslParams {
    fn default() -> SaslParams {
        SaslParams {
            security_options: "noplaintext, noanonymous".into(),
            tls_security_options: "noplaintext, noanonymous".into(),
            tls_verified_security_options: "noplaintext, noanonymous".into(),
            mechanism_filter: String::new(),
            send_authzid: false,
            soft_bounce: true,
        }
    }
}

/// How the connection is protected; selects which security options apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnSecurity {
    Plaintext,
    /// TLS without a matched (verified) server certificate.
    Tls,
    /// TLS with a matched certificate (TLS_CERT_IS_MATCHED).
    TlsVerified,
}

impl SaslParams {
    pub fn options_for(&self, sec: ConnSecurity) -> &str {
        match sec {
            ConnSecurity::Plaintext => &self.security_options,
            ConnSecurity::Tls => &self.tls_security_options,
            ConnSecurity::TlsVerified => &self.tls_verified_security_options,
        }
    }
}

/// The RFC 5321 command line limit (512 octets with CRLF) that decides whether the initial
/// response may ride on the AUTH line.
const AUTH_LINE_LIMIT: usize = 512;
/// Challenge rounds before we call it a loop.
const MAX_STEPS: usize = 100;

/// What the trace shows instead of credentials.
pub const REDACTED: &str = "<redacted>";

/// Apply smtp_sasl_mechanism_filter to the EHLO AUTH list, at EHLO time as Postfix does,
/// with its warnings (logged here). `offered`: mechanisms as the server listed them.
/// Returns the usable list, possibly empty. A table error is fatal in Postfix; it comes
/// back as Err with the text to log.
pub fn filter_offered(
    peer: &Peer,
    offered: &[String],
    params: &SaslParams,
    table: &dyn Fn(&str, &str) -> Result<bool, String>,
) -> Result<Vec<String>, String> {
    let kept = mech::filter_mechanisms(offered, &params.mechanism_filter, table)?;
    if kept.is_empty() {
        let words = offered.join(" ");
        if words.is_empty() {
            log::warn(&format!(
                "{} offered null AUTH mechanism list",
                peer.namaddrport()
            ));
        } else {
            log::warn(&format!(
                "{} offered no supported AUTH mechanisms: '{words}'",
                peer.namaddrport()
            ));
        }
    }
    Ok(kept)
}

/// The MAIL FROM parameter smtp_send_dummy_mail_auth adds: " AUTH=<>" when SASL is
/// enabled, the option is on and this session authenticated (Postfix adds it whenever the
/// AUTH feature survived the password lookup, which on a live session means we
/// authenticated).
pub fn mail_from_auth_param(
    sasl_enable: bool,
    dummy_mail_auth: bool,
    authenticated: bool,
) -> Option<&'static str> {
    (sasl_enable && dummy_mail_auth && authenticated).then_some(" AUTH=<>")
}

/// Postfix's failure when the password table lookup fails: the session ends, mail defers.
pub fn lookup_error_failure(peer: &Peer) -> Failure {
    failure(
        Dsn::new(
            "4.3.0",
            format!("local data error while talking to {}", peer.namaddr()),
        ),
        true,
    )
}

fn failure(dsn: Dsn, send_quit: bool) -> Failure {
    Failure {
        dsn,
        send_quit,
        loop_detected: false,
        tls_failed: false,
    }
}

/// A successful authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub mechanism: Mech,
}

/// Everything the dialogue needs besides the connection.
pub struct AuthRequest<'a> {
    pub peer: &'a Peer,
    /// Mechanisms left after `filter_offered` (empty: nothing compatible).
    pub mechanisms: &'a [String],
    pub params: &'a SaslParams,
    pub security: ConnSecurity,
    pub credentials: &'a Credentials,
    /// The `while ...` of I/O failure texts: the handshake phase AUTH runs in
    /// ("performing the EHLO handshake", or LHLO).
    pub while_: &'a str,
}

/// Queue a line, tracing `shown` instead of its content.
fn send_redacted(conn: &mut Conn, line: &str, shown: &str) -> Result<(), IoFailure> {
    conn.trace(Dir::Sent, shown.as_bytes());
    conn.queue(line.as_bytes());
    conn.queue(b"\r\n");
    conn.flush()
}

/// The challenge text of a 334 reply: the first line after the code and its separator.
fn challenge_text(reply: &Reply) -> &str {
    reply.lines().next().unwrap_or("").trim_matches([' ', '\t'])
}

/// Run the AUTH dialogue. `read` reads one reply (the session's reader, which logs reader
/// warnings); `cache` is the smtp_sasl_auth_cache when configured. Call with the
/// connection in the helo timeout, as Postfix does.
///
/// Ok: authenticated, go on with MAIL. Err: the session ends: QUIT when `send_quit`,
/// then defer or bounce the recipients by the DSN's class (4.x.x defer, 5.x.x bounce);
/// the connection must not be reused.
pub fn authenticate(
    conn: &mut Conn,
    req: &AuthRequest,
    mut cache: Option<&mut AuthCache>,
    read: &mut dyn FnMut(&mut Conn) -> Result<Reply, IoFailure>,
) -> Result<Authenticated, Failure> {
    let peer = req.peer;
    let namaddr = peer.namaddr();
    let fail_local = |why: &str| {
        failure(
            Dsn::new(
                "4.7.0",
                format!(
                    "SASL authentication failed; cannot authenticate to server {namaddr}: {why}"
                ),
            ),
            true,
        )
    };
    if req.mechanisms.is_empty() {
        return Err(failure(
            Dsn::new(
                "4.7.0",
                format!(
                    "SASL authentication failed: server {namaddr} offered no compatible \
                     authentication mechanisms for this type of connection security"
                ),
            ),
            true,
        ));
    }
    // A bad option list makes Postfix's SASL client setup fail (a fatal error there);
    // here the delivery is deferred with the warnings logged.
    let required = match SecFlags::parse(req.params.options_for(req.security)) {
        Ok(f) => f,
        Err(e) => {
            log::warn(&e);
            return Err(failure(
                Dsn::new("4.3.5", "SASL per-connection initialization failed"),
                true,
            ));
        }
    };
    if let Some(c) = cache.as_deref_mut()
        && let Some(hit) = c.find(&peer.name, req.credentials, &mut |w| log::warn(&w))
    {
        let mut status = hit.dsn.clone();
        if req.params.soft_bounce && status.starts_with('5') {
            status.replace_range(0..1, "4");
        }
        return Err(failure(
            Dsn {
                status,
                reason: format!(
                    "SASL [CACHED] authentication failed; server {} said: {}",
                    peer.name, hit.text
                ),
                mta: Some(peer.name.clone()),
                reply: Some(hit.text),
            },
            true,
        ));
    }
    let Some(m) = mech::choose(req.mechanisms, required) else {
        // The warning Postfix's smtp logs here (its Cyrus SASL client's words).
        log::warn("SASL authentication failure: No worthy mechs found");
        return Err(fail_local(mech::ERR_NOMECH));
    };
    let (mut client, initial) = mech::Client::start(m, req.credentials, req.params.send_authzid);
    let io = |e: IoFailure| failure(io_failure_dsn(peer, &e, req.while_), false);

    // The initial response goes on the AUTH line unless that would break the line limit;
    // then it waits for the server's empty challenge.
    let mut deferred: Option<String> = None;
    match initial.map(|ir| B64.encode(ir)) {
        Some(ir) if m.name().len() + ir.len() + 8 <= AUTH_LINE_LIMIT => {
            send_redacted(
                conn,
                &format!("AUTH {} {ir}", m.name()),
                &format!("AUTH {} {REDACTED}", m.name()),
            )
            .map_err(io)?;
        }
        other => {
            deferred = other;
            conn.queue_cmd(&format!("AUTH {}", m.name()));
            conn.flush().map_err(io)?;
        }
    }

    let mut steps = 0;
    let reply = loop {
        let reply = read(conn).map_err(io)?;
        if reply.class() != 3 {
            break reply;
        }
        steps += 1;
        if steps > MAX_STEPS {
            return Err(failure(
                Dsn::new(
                    "4.3.0",
                    format!(
                        "SASL authentication failed; authentication protocol loop with server {namaddr}"
                    ),
                ),
                true,
            ));
        }
        let challenge = challenge_text(&reply).to_string();
        let response = if let Some(ir) = deferred.take() {
            if !challenge.is_empty() {
                // Both sides want to speak first. Postfix shows our initial response
                // here; that is a credential, so we show the server's challenge.
                cancel(conn, read);
                return Err(failure(
                    Dsn::new(
                        "4.7.0",
                        format!(
                            "SASL authentication failed; non-empty initial {} challenge from server {namaddr}: {challenge}",
                            m.name()
                        ),
                    ),
                    true,
                ));
            }
            ir
        } else {
            let step = match B64.decode(challenge.as_bytes()) {
                Ok(decoded) => client.step(&decoded),
                Err(_) => Err(mech::ERR_BADPROT),
            };
            match step {
                Ok(out) => B64.encode(out),
                Err(why) => {
                    // The server waits for an answer; "*" cancels the exchange cleanly
                    // (Postfix just stops answering), so QUIT is understood afterwards.
                    let alive = cancel(conn, read);
                    let mut f = fail_local(why);
                    f.send_quit = alive;
                    return Err(f);
                }
            }
        };
        let shown = if response.is_empty() { "" } else { REDACTED };
        send_redacted(conn, &response, shown).map_err(io)?;
    };

    if reply.class() == 2 {
        if !client.complete() {
            // The server claims success before proving it knows the password (SCRAM's
            // server signature): not trusted.
            return Err(fail_local("server failed mutual authentication step"));
        }
        return Ok(Authenticated { mechanism: m });
    }
    let text = reply.one_line();
    let mut status = if reply.dsn.starts_with('4') || reply.dsn.starts_with('5') {
        reply.dsn.clone()
    } else {
        "5.5.0".to_string()
    };
    if reply.code == 535
        && let Some(c) = cache
    {
        c.store(&peer.name, req.credentials, &status, &reply.text);
    }
    if req.params.soft_bounce && reply.class() == 5 {
        status.replace_range(0..1, "4");
    }
    Err(failure(
        Dsn {
            status,
            reason: format!("SASL authentication failed; server {namaddr} said: {text}"),
            mta: Some(peer.name.clone()),
            reply: Some(reply.text.clone()),
        },
        true,
    ))
}

/// Send "*" and read the server's answer; false when the connection is no longer usable.
fn cancel(conn: &mut Conn, read: &mut dyn FnMut(&mut Conn) -> Result<Reply, IoFailure>) -> bool {
    conn.queue_cmd("*");
    conn.flush().is_ok() && read(conn).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_extraction() {
        assert_eq!(
            challenge_text(&Reply::parse_text("334 VXNlcm5hbWU6")),
            "VXNlcm5hbWU6"
        );
        assert_eq!(challenge_text(&Reply::parse_text("334")), "");
        assert_eq!(challenge_text(&Reply::parse_text("334 ")), "");
    }

    #[test]
    fn dummy_mail_auth() {
        assert_eq!(mail_from_auth_param(true, true, true), Some(" AUTH=<>"));
        assert_eq!(mail_from_auth_param(true, false, true), None);
        assert_eq!(mail_from_auth_param(true, true, false), None);
        assert_eq!(mail_from_auth_param(false, true, true), None);
    }

    #[test]
    fn options_per_security() {
        let p = SaslParams {
            security_options: "a".into(),
            tls_security_options: "b".into(),
            tls_verified_security_options: "c".into(),
            ..SaslParams::default()
        };
        assert_eq!(p.options_for(ConnSecurity::Plaintext), "a");
        assert_eq!(p.options_for(ConnSecurity::Tls), "b");
        assert_eq!(p.options_for(ConnSecurity::TlsVerified), "c");
    }
}
