//! The settings the engine runs with, resolved once from the configuration.
//!
//! The engine reads only this struct, never the configuration itself, so it can be driven
//! from tests, the command line or the Postfix daemon front alike. `from_config` is the one
//! place that knows Postfix's parameter names (through the smtp_/lmtp_ mapping).

use crate::config::Config;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Params {
    pub lmtp: bool,
    pub myhostname: String,
    pub helo_name: String,
    pub connect_timeout: Duration,
    pub helo_timeout: Duration,
    pub xforward_timeout: Duration,
    pub mail_timeout: Duration,
    pub rcpt_timeout: Duration,
    pub data_init_timeout: Duration,
    pub data_xfer_timeout: Duration,
    pub data_done_timeout: Duration,
    pub rset_timeout: Duration,
    pub quit_timeout: Duration,
    /// smtp_per_request_deadline (formerly smtp_per_record_deadline): each phase's timeout
    /// is a deadline for all its I/O, not a limit per system call.
    pub per_record_deadline: bool,
    /// smtp_min_data_rate: with the deadline, the message body earns one second per this
    /// many bytes sent.
    pub min_data_rate: u64,
    pub always_send_ehlo: bool,
    pub never_send_ehlo: bool,
    pub skip_5xx_greeting: bool,
    pub skip_quit_response: bool,
    /// smtp_tls_block_early_mail_reply: a reply waiting before MAIL FROM, inside TLS,
    /// fails the site (CVE-2009-3555 style injection).
    pub tls_block_early_mail_reply: bool,
    pub discard_ehlo_keywords: Vec<String>,
    /// smtp_discard_ehlo_keyword_address_maps and smtp_pix_workaround_maps.
    pub peer_tables: Option<std::sync::Arc<super::peer_tables::PeerTables>>,
    /// smtp_delivery_status_filter.
    pub dsn_filter: Option<std::sync::Arc<crate::dsn_filter::DsnFilter>>,
    pub quote_rfc821_envelope: bool,
    pub line_length_limit: usize,
    pub send_xforward: bool,
    pub bind_address: String,
    pub bind_address6: String,
    pub tcp_windowsize: i64,
    pub lmtp_assume_final: bool,
    pub inet_protocols: String,
    pub delay_resolution: u32,
    pub soft_bounce: bool,
    pub default_port: u16,
    pub mx_address_limit: usize,
    pub mx_session_limit: usize,
    pub relayhost: String,
    /// smtp_address_verify_target: probes stop after RCPT (true) or after DATA (false).
    pub verify_at_rcpt: bool,
    /// smtp_pix_workarounds, smtp_pix_workaround_threshold_time and _delay_time.
    pub pix_workarounds: Vec<String>,
    pub pix_threshold: Duration,
    pub pix_delay: Duration,
    /// Connection caching: smtp_connection_cache_on_demand, _destinations, _time_limit,
    /// smtp_connection_reuse_time_limit and _count_limit.
    pub cache_on_demand: bool,
    pub cache_destinations: Vec<String>,
    /// The same list as a Postfix string list (patterns, !negation, /file, type:table).
    pub cache_destination_list: Option<std::sync::Arc<std::sync::Mutex<crate::table::MatchList>>>,
    /// debug_peer_list: servers whose SMTP dialogue is logged (Postfix raises the
    /// verbosity by debug_peer_level, which logs the dialogue).
    pub debug_peers: Option<std::sync::Arc<std::sync::Mutex<crate::table::MatchList>>>,
    pub cache_time_limit: Duration,
    pub reuse_time_limit: Duration,
    pub reuse_count_limit: u32,
    /// smtp_send_dummy_mail_auth with SASL enabled.
    pub dummy_mail_auth: bool,
    /// minimal_backoff_time (decides the plaintext retry after a failed TLS handshake).
    pub min_backoff: Duration,
    /// The master.cf service name, part of every connection-cache label.
    pub service: String,
    /// Postfix's TLS level number for cache labels (0 = none, 1 = may, ...).
    pub tls_level: u8,
    /// disable_mime_output_conversion: send 8-bit mail as is to servers without 8BITMIME.
    pub disable_mime_output_conversion: bool,
    /// The MIME parser's safety limits while converting: mime_boundary_length_limit,
    /// mime_nesting_limit, header_size_limit.
    pub mime_boundary_length_limit: usize,
    pub mime_nesting_limit: i64,
    pub header_size_limit: usize,
}

impl Default for Params {
    /// Postfix 3.7's defaults for SMTP mode, for tests and for callers without a config.
    fn default() -> Params {
        Params {
            lmtp: false,
            myhostname: "localhost".into(),
            helo_name: "localhost".into(),
            connect_timeout: Duration::from_secs(30),
            helo_timeout: Duration::from_secs(300),
            xforward_timeout: Duration::from_secs(300),
            mail_timeout: Duration::from_secs(300),
            rcpt_timeout: Duration::from_secs(300),
            data_init_timeout: Duration::from_secs(120),
            data_xfer_timeout: Duration::from_secs(180),
            data_done_timeout: Duration::from_secs(600),
            rset_timeout: Duration::from_secs(20),
            quit_timeout: Duration::from_secs(300),
            per_record_deadline: false,
            min_data_rate: 500,
            always_send_ehlo: true,
            never_send_ehlo: false,
            skip_5xx_greeting: true,
            skip_quit_response: true,
            tls_block_early_mail_reply: false,
            discard_ehlo_keywords: Vec::new(),
            peer_tables: None,
            dsn_filter: None,
            quote_rfc821_envelope: true,
            line_length_limit: 998,
            send_xforward: false,
            bind_address: String::new(),
            bind_address6: String::new(),
            tcp_windowsize: 0,
            lmtp_assume_final: false,
            inet_protocols: "all".into(),
            delay_resolution: 2,
            soft_bounce: false,
            default_port: 25,
            mx_address_limit: 5,
            mx_session_limit: 2,
            relayhost: String::new(),
            verify_at_rcpt: true,
            pix_workarounds: vec!["disable_esmtp".into(), "delay_dotcrlf".into()],
            pix_threshold: Duration::from_secs(500),
            pix_delay: Duration::from_secs(10),
            cache_on_demand: true,
            cache_destinations: Vec::new(),
            cache_destination_list: None,
            debug_peers: None,
            cache_time_limit: Duration::from_secs(2),
            reuse_time_limit: Duration::from_secs(300),
            reuse_count_limit: 0,
            min_backoff: Duration::from_secs(300),
            dummy_mail_auth: false,
            service: "smtp".into(),
            tls_level: 0,
            disable_mime_output_conversion: false,
            mime_boundary_length_limit: 2048,
            mime_nesting_limit: 100,
            header_size_limit: 102400,
        }
    }
}

impl Params {
    pub fn from_config(cfg: &Config) -> Params {
        let lmtp = cfg.mode() == crate::config::Mode::Lmtp;
        let port_param = if lmtp {
            "lmtp_tcp_port"
        } else {
            "smtp_tcp_port"
        };
        let default_port = crate::route::dest::port_by_name(&cfg.get(port_param))
            .unwrap_or(if lmtp { 24 } else { 25 });
        Params {
            lmtp,
            myhostname: cfg.get("myhostname"),
            helo_name: cfg.get("smtp_helo_name"),
            connect_timeout: cfg.time("smtp_connect_timeout"),
            helo_timeout: cfg.time("smtp_helo_timeout"),
            xforward_timeout: cfg.time("smtp_xforward_timeout"),
            mail_timeout: cfg.time("smtp_mail_timeout"),
            rcpt_timeout: cfg.time("smtp_rcpt_timeout"),
            data_init_timeout: cfg.time("smtp_data_init_timeout"),
            data_xfer_timeout: cfg.time("smtp_data_xfer_timeout"),
            data_done_timeout: cfg.time("smtp_data_done_timeout"),
            rset_timeout: cfg.time("smtp_rset_timeout"),
            quit_timeout: cfg.time("smtp_quit_timeout"),
            per_record_deadline: cfg.bool("smtp_per_request_deadline"),
            min_data_rate: u64::try_from(cfg.int("smtp_min_data_rate").max(1)).unwrap_or(1),
            always_send_ehlo: cfg.bool("smtp_always_send_ehlo"),
            never_send_ehlo: cfg.bool("smtp_never_send_ehlo"),
            skip_5xx_greeting: cfg.bool("smtp_skip_5xx_greeting"),
            skip_quit_response: cfg.bool("smtp_skip_quit_response"),
            tls_block_early_mail_reply: cfg.bool("smtp_tls_block_early_mail_reply"),
            discard_ehlo_keywords: cfg.list("smtp_discard_ehlo_keywords"),
            peer_tables: super::peer_tables::PeerTables::shared(cfg),
            dsn_filter: crate::dsn_filter::DsnFilter::shared(cfg),
            quote_rfc821_envelope: cfg.bool("smtp_quote_rfc821_envelope"),
            line_length_limit: usize::try_from(cfg.int("smtp_line_length_limit").max(0))
                .unwrap_or(0),
            send_xforward: cfg.bool("smtp_send_xforward_command"),
            bind_address: cfg.get("smtp_bind_address"),
            bind_address6: cfg.get("smtp_bind_address6"),
            tcp_windowsize: cfg.int("tcp_windowsize"),
            lmtp_assume_final: cfg.bool("lmtp_assume_final"),
            inet_protocols: cfg.get("inet_protocols"),
            delay_resolution: u32::try_from(cfg.int("delay_logging_resolution_limit").clamp(0, 6))
                .unwrap_or(2),
            soft_bounce: cfg.bool("soft_bounce"),
            default_port,
            mx_address_limit: usize::try_from(cfg.int("smtp_mx_address_limit").max(0)).unwrap_or(0),
            mx_session_limit: usize::try_from(cfg.int("smtp_mx_session_limit").max(0)).unwrap_or(0),
            relayhost: cfg.get("relayhost"),
            verify_at_rcpt: !cfg
                .get("smtp_address_verify_target")
                .eq_ignore_ascii_case("data"),
            pix_workarounds: cfg.list("smtp_pix_workarounds"),
            pix_threshold: cfg.time("smtp_pix_workaround_threshold_time"),
            pix_delay: cfg.time("smtp_pix_workaround_delay_time"),
            cache_on_demand: cfg.bool("smtp_connection_cache_on_demand"),
            cache_destinations: cfg.list("smtp_connection_cache_destinations"),
            cache_destination_list: cache_list(cfg),
            debug_peers: {
                let parent = cfg
                    .list("parent_domain_matches_subdomains")
                    .iter()
                    .any(|p| p == "debug_peer_list");
                match_list(cfg, "debug_peer_list", parent)
            },
            cache_time_limit: cfg.time("smtp_connection_cache_time_limit"),
            reuse_time_limit: cfg.time("smtp_connection_reuse_time_limit"),
            reuse_count_limit: u32::try_from(cfg.int("smtp_connection_reuse_count_limit").max(0))
                .unwrap_or(0),
            min_backoff: cfg.time("minimal_backoff_time"),
            dummy_mail_auth: cfg.bool("smtp_send_dummy_mail_auth")
                && cfg.bool("smtp_sasl_auth_enable"),
            service: {
                let s = cfg.get("service_name");
                if s.is_empty() {
                    cfg.get("process_name")
                } else {
                    s
                }
            },
            tls_level: tls_level_number(&cfg.get("smtp_tls_security_level")),
            disable_mime_output_conversion: cfg.bool("disable_mime_output_conversion"),
            mime_boundary_length_limit: usize::try_from(cfg.int("mime_boundary_length_limit"))
                .unwrap_or(0),
            mime_nesting_limit: cfg.int("mime_nesting_limit"),
            header_size_limit: usize::try_from(cfg.int("header_size_limit")).unwrap_or(0),
        }
    }

    /// The MIME parser limits for 8-bit to 7-bit conversion.
    pub fn mime_limits(&self) -> crate::message::mime::Limits {
        crate::message::mime::Limits {
            boundary_len: self.mime_boundary_length_limit,
            nesting: self.mime_nesting_limit,
            header_size: self.header_size_limit,
        }
    }

    /// Whether mail of this body type is converted to 7-bit for a server with or without
    /// 8BITMIME.
    pub fn mime_downgrade(&self, server_8bitmime: bool, enc: crate::request::Encoding) -> bool {
        crate::message::mime::downgrading(self.disable_mime_output_conversion, server_8bitmime, enc)
    }

    /// Whether connections to this destination are cached because
    /// smtp_connection_cache_destinations matches it (string_list_match(): names compared
    /// case-insensitively, `!name`, `/file` and `type:table` elements; a table that fails
    /// counts as no match, as in Postfix).
    pub fn cache_destination(&self, domain: &str) -> bool {
        match &self.cache_destination_list {
            Some(list) => list
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .matches_string(domain)
                .unwrap_or(false),
            None => self
                .cache_destinations
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain)),
        }
    }

    /// Whether debug_peer_list names this server (by host name or address).
    pub fn debug_peer(&self, peer: &super::Peer) -> bool {
        match &self.debug_peers {
            Some(list) => list
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .matches_host(&peer.name, &peer.addr)
                .unwrap_or(false),
            None => false,
        }
    }

    pub fn proto(&self) -> &'static str {
        if self.lmtp { "LMTP" } else { "ESMTP" }
    }
}

/// Postfix's numbers for TLS security levels (tls.h), used in connection-cache labels so
/// that a connection made under one policy is never reused under another.
pub fn tls_level_number(level: &str) -> u8 {
    match level.to_ascii_lowercase().as_str() {
        "may" => 1,
        "encrypt" => 2,
        "fingerprint" => 3,
        "dane" => 5,
        "dane-only" => 6,
        "verify" => 7,
        "secure" => 8,
        _ => 0,
    }
}

/// smtp_connection_cache_destinations as a string list; `None` when empty or malformed
/// (then the plain names are compared).
fn cache_list(cfg: &Config) -> Option<std::sync::Arc<std::sync::Mutex<crate::table::MatchList>>> {
    match_list(cfg, "smtp_connection_cache_destinations", false)
}

/// A Postfix match list parameter, opened once; `None` when empty or malformed (logged).
fn match_list(
    cfg: &Config,
    param: &str,
    parent: bool,
) -> Option<std::sync::Arc<std::sync::Mutex<crate::table::MatchList>>> {
    let value = cfg.get(param);
    if value.trim().is_empty() {
        return None;
    }
    let name = cfg.name_for(param);
    match crate::table::MatchList::new(&name, &value, parent, cfg.bool("smtputf8_enable")) {
        Ok(list) => {
            for w in list.warnings() {
                crate::log::warn(w);
            }
            Some(std::sync::Arc::new(std::sync::Mutex::new(list)))
        }
        Err(e) => {
            crate::log::warn(&e.to_string());
            None
        }
    }
}
