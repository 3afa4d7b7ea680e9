//! The STARTTLS decisions and texts of Postfix's SMTP client (smtp_proto.c and
//! smtp_connect.c), kept here so that the session layer only has to call them.
//!
//! Order in the session, after the (first) EHLO reply:
//! 1. `note_offer` when the server offers STARTTLS but the level is "none".
//! 2. If STARTTLS is offered, an engine exists and the level is at least "may": send
//!    STARTTLS (smtp_starttls_timeout). On 2xx: `ClientContext::start` through
//!    `Conn::replace_stream`, then `TlsInfo::enforce`, then EHLO again (TLS features
//!    reset). On other replies: `refused` when TLS is required, else continue in plaintext.
//! 3. If TLS is required and was not started: `not_offered` / `engine_unavailable`.
//!
//! In wrapper mode (smtp_tls_wrappermode) the handshake runs right after connect, before
//! the greeting, and `wrappermode_level_warning` applies first.

use super::policy::Level;

/// A deferral: enhanced status code and text (the text names the server).
pub type Failure = (String, String);

/// `info` line when the server offers STARTTLS that we will not use.
pub fn note_offer(note_starttls_offer: bool, level: Level, host: &str) -> Option<String> {
    (note_starttls_offer && level <= Level::None)
        .then(|| format!("Host offered STARTTLS: [{host}]"))
}

/// Whether to send STARTTLS.
pub fn should_starttls(offered: bool, engine: bool, level: Level) -> bool {
    offered && engine && level >= Level::May
}

/// The server answered STARTTLS with `reply` (first line code, all lines joined by a
/// space) although TLS is required; the status comes from the server's reply.
pub fn refused(namaddr: &str, reply: &str) -> String {
    format!("TLS is required, but host {namaddr} refused to start TLS: {reply}")
}

/// TLS is required but the server did not offer STARTTLS.
pub fn not_offered(namaddr: &str) -> Failure {
    (
        "4.7.4".into(),
        format!("TLS is required, but was not offered by host {namaddr}"),
    )
}

/// TLS is required but `ClientContext::new` failed.
pub fn engine_unavailable() -> Failure {
    (
        "4.7.5".into(),
        "TLS is required, but our TLS engine is unavailable".into(),
    )
}

/// smtp_tls_wrappermode with a level below "encrypt": Postfix warns and skips the host.
pub fn wrappermode_level_warning(
    level: Level,
    wrapper_param: &str,
    level_param: &str,
) -> Option<String> {
    (level < Level::Encrypt)
        .then(|| format!("{wrapper_param} requires \"{level_param} = encrypt\" (or stronger)"))
}

/// After a failed handshake: retry the same server in plaintext (opportunistic TLS only,
/// and not when SASL credentials exist, since AUTH may be offered only over TLS). The
/// delay condition is Postfix's: the message waited at least minimal_backoff_time, or
/// this is an address-verification probe.
pub fn retry_plaintext(
    level: Level,
    trace_only: bool,
    waited: std::time::Duration,
    min_backoff: std::time::Duration,
    have_sasl_credentials: bool,
) -> bool {
    level == Level::May && (trace_only || waited >= min_backoff) && !have_sasl_credentials
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn texts_and_decisions() {
        assert_eq!(
            not_offered("mx.example.com[192.0.2.1]:25"),
            (
                "4.7.4".to_string(),
                "TLS is required, but was not offered by host mx.example.com[192.0.2.1]:25"
                    .to_string()
            )
        );
        assert_eq!(
            refused("h[1.2.3.4]:25", "454 4.7.0 TLS not available"),
            "TLS is required, but host h[1.2.3.4]:25 refused to start TLS: 454 4.7.0 TLS not available"
        );
        assert_eq!(
            note_offer(true, Level::None, "h").as_deref(),
            Some("Host offered STARTTLS: [h]")
        );
        assert_eq!(note_offer(true, Level::May, "h"), None);
        assert!(
            should_starttls(true, true, Level::May) && !should_starttls(true, true, Level::None)
        );
        assert_eq!(
            wrappermode_level_warning(
                Level::May,
                "smtp_tls_wrappermode",
                "smtp_tls_security_level"
            )
            .as_deref(),
            Some(
                "smtp_tls_wrappermode requires \"smtp_tls_security_level = encrypt\" (or stronger)"
            )
        );
        let min = Duration::from_secs(300);
        assert!(retry_plaintext(Level::May, false, min, min, false));
        assert!(!retry_plaintext(
            Level::May,
            false,
            Duration::from_secs(1),
            min,
            false
        ));
        assert!(retry_plaintext(
            Level::May,
            true,
            Duration::ZERO,
            min,
            false
        ));
        assert!(!retry_plaintext(Level::May, true, min, min, true));
        assert!(!retry_plaintext(Level::Encrypt, true, min, min, false));
    }
}
