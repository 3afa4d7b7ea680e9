//! The smtp_/lmtp_ parameter name space.
//!
//! Postfix builds smtp(8) and lmtp(8) from one program; at start-up it loads
//! either smtp_params.c or lmtp_params.c, two tables that fill the *same*
//! variables from differently named parameters. Outpost's engine always asks
//! by the smtp_ name and this module answers which parameter supplies the
//! value in LMTP mode. Most twins just swap the prefix; four use "lhlo"
//! instead of "helo"/"ehlo" (marked below).

use super::Mode;

/// (name the engine asks for, parameter read in LMTP mode), sorted by the
/// first column. Every smtp_ parameter with an lmtp_ counterpart is listed,
/// including qmgr's per-transport ones and those read by tlsmgr.
#[rustfmt::skip]
pub(crate) const LMTP_TWINS: &[(&str, &str)] = &[
    ("smtp_address_preference", "lmtp_address_preference"),
    ("smtp_address_verify_target", "lmtp_address_verify_target"),
    ("smtp_balance_inet_protocols", "lmtp_balance_inet_protocols"),
    ("smtp_bind_address", "lmtp_bind_address"),
    ("smtp_bind_address6", "lmtp_bind_address6"),
    ("smtp_bind_address_enforce", "lmtp_bind_address_enforce"),
    ("smtp_body_checks", "lmtp_body_checks"),
    ("smtp_cname_overrides_servername", "lmtp_cname_overrides_servername"),
    ("smtp_connect_timeout", "lmtp_connect_timeout"),
    ("smtp_connection_cache_destinations", "lmtp_connection_cache_destinations"),
    ("smtp_connection_cache_on_demand", "lmtp_connection_cache_on_demand"),
    ("smtp_connection_cache_time_limit", "lmtp_connection_cache_time_limit"),
    ("smtp_connection_reuse_count_limit", "lmtp_connection_reuse_count_limit"),
    ("smtp_connection_reuse_time_limit", "lmtp_connection_reuse_time_limit"),
    ("smtp_data_done_timeout", "lmtp_data_done_timeout"),
    ("smtp_data_init_timeout", "lmtp_data_init_timeout"),
    ("smtp_data_xfer_timeout", "lmtp_data_xfer_timeout"),
    ("smtp_defer_if_no_mx_address_found", "lmtp_defer_if_no_mx_address_found"),
    ("smtp_delivery_slot_cost", "lmtp_delivery_slot_cost"),
    ("smtp_delivery_slot_discount", "lmtp_delivery_slot_discount"),
    ("smtp_delivery_slot_loan", "lmtp_delivery_slot_loan"),
    ("smtp_delivery_status_filter", "lmtp_delivery_status_filter"),
    ("smtp_destination_concurrency_failed_cohort_limit", "lmtp_destination_concurrency_failed_cohort_limit"),
    ("smtp_destination_concurrency_limit", "lmtp_destination_concurrency_limit"),
    ("smtp_destination_concurrency_negative_feedback", "lmtp_destination_concurrency_negative_feedback"),
    ("smtp_destination_concurrency_positive_feedback", "lmtp_destination_concurrency_positive_feedback"),
    ("smtp_destination_rate_delay", "lmtp_destination_rate_delay"),
    ("smtp_destination_recipient_limit", "lmtp_destination_recipient_limit"),
    ("smtp_discard_ehlo_keyword_address_maps", "lmtp_discard_lhlo_keyword_address_maps"),  // renamed
    ("smtp_discard_ehlo_keywords", "lmtp_discard_lhlo_keywords"),  // renamed
    ("smtp_dns_reply_filter", "lmtp_dns_reply_filter"),
    ("smtp_dns_resolver_options", "lmtp_dns_resolver_options"),
    ("smtp_dns_support_level", "lmtp_dns_support_level"),
    ("smtp_enforce_tls", "lmtp_enforce_tls"),
    ("smtp_extra_recipient_limit", "lmtp_extra_recipient_limit"),
    ("smtp_fallback_relay", "lmtp_fallback_relay"),
    ("smtp_generic_maps", "lmtp_generic_maps"),
    ("smtp_header_checks", "lmtp_header_checks"),
    ("smtp_helo_name", "lmtp_lhlo_name"),  // renamed
    ("smtp_helo_timeout", "lmtp_lhlo_timeout"),  // renamed
    ("smtp_host_lookup", "lmtp_host_lookup"),
    ("smtp_initial_destination_concurrency", "lmtp_initial_destination_concurrency"),
    ("smtp_line_length_limit", "lmtp_line_length_limit"),
    ("smtp_mail_timeout", "lmtp_mail_timeout"),
    ("smtp_mime_header_checks", "lmtp_mime_header_checks"),
    ("smtp_min_data_rate", "lmtp_min_data_rate"),
    ("smtp_minimum_delivery_slots", "lmtp_minimum_delivery_slots"),
    ("smtp_mx_address_limit", "lmtp_mx_address_limit"),
    ("smtp_mx_session_limit", "lmtp_mx_session_limit"),
    ("smtp_nested_header_checks", "lmtp_nested_header_checks"),
    ("smtp_per_record_deadline", "lmtp_per_record_deadline"),
    ("smtp_per_request_deadline", "lmtp_per_request_deadline"),
    ("smtp_pix_workaround_delay_time", "lmtp_pix_workaround_delay_time"),
    ("smtp_pix_workaround_maps", "lmtp_pix_workaround_maps"),
    ("smtp_pix_workaround_threshold_time", "lmtp_pix_workaround_threshold_time"),
    ("smtp_pix_workarounds", "lmtp_pix_workarounds"),
    ("smtp_quit_timeout", "lmtp_quit_timeout"),
    ("smtp_quote_rfc821_envelope", "lmtp_quote_rfc821_envelope"),
    ("smtp_randomize_addresses", "lmtp_randomize_addresses"),
    ("smtp_rcpt_timeout", "lmtp_rcpt_timeout"),
    ("smtp_recipient_limit", "lmtp_recipient_limit"),
    ("smtp_recipient_refill_delay", "lmtp_recipient_refill_delay"),
    ("smtp_recipient_refill_limit", "lmtp_recipient_refill_limit"),
    ("smtp_reply_filter", "lmtp_reply_filter"),
    ("smtp_rset_timeout", "lmtp_rset_timeout"),
    ("smtp_sasl_auth_cache_name", "lmtp_sasl_auth_cache_name"),
    ("smtp_sasl_auth_cache_time", "lmtp_sasl_auth_cache_time"),
    ("smtp_sasl_auth_enable", "lmtp_sasl_auth_enable"),
    ("smtp_sasl_auth_soft_bounce", "lmtp_sasl_auth_soft_bounce"),
    ("smtp_sasl_mechanism_filter", "lmtp_sasl_mechanism_filter"),
    ("smtp_sasl_password_maps", "lmtp_sasl_password_maps"),
    ("smtp_sasl_path", "lmtp_sasl_path"),
    ("smtp_sasl_security_options", "lmtp_sasl_security_options"),
    ("smtp_sasl_tls_security_options", "lmtp_sasl_tls_security_options"),
    ("smtp_sasl_tls_verified_security_options", "lmtp_sasl_tls_verified_security_options"),
    ("smtp_sasl_type", "lmtp_sasl_type"),
    ("smtp_send_dummy_mail_auth", "lmtp_send_dummy_mail_auth"),
    ("smtp_send_xforward_command", "lmtp_send_xforward_command"),
    ("smtp_sender_dependent_authentication", "lmtp_sender_dependent_authentication"),
    ("smtp_skip_5xx_greeting", "lmtp_skip_5xx_greeting"),
    ("smtp_skip_quit_response", "lmtp_skip_quit_response"),
    ("smtp_starttls_timeout", "lmtp_starttls_timeout"),
    ("smtp_tcp_port", "lmtp_tcp_port"),
    ("smtp_tls_CAfile", "lmtp_tls_CAfile"),
    ("smtp_tls_CApath", "lmtp_tls_CApath"),
    ("smtp_tls_block_early_mail_reply", "lmtp_tls_block_early_mail_reply"),
    ("smtp_tls_cert_file", "lmtp_tls_cert_file"),
    ("smtp_tls_chain_files", "lmtp_tls_chain_files"),
    ("smtp_tls_ciphers", "lmtp_tls_ciphers"),
    ("smtp_tls_connection_reuse", "lmtp_tls_connection_reuse"),
    ("smtp_tls_dcert_file", "lmtp_tls_dcert_file"),
    ("smtp_tls_dkey_file", "lmtp_tls_dkey_file"),
    ("smtp_tls_eccert_file", "lmtp_tls_eccert_file"),
    ("smtp_tls_eckey_file", "lmtp_tls_eckey_file"),
    ("smtp_tls_enforce_peername", "lmtp_tls_enforce_peername"),
    ("smtp_tls_exclude_ciphers", "lmtp_tls_exclude_ciphers"),
    ("smtp_tls_fingerprint_cert_match", "lmtp_tls_fingerprint_cert_match"),
    ("smtp_tls_fingerprint_digest", "lmtp_tls_fingerprint_digest"),
    ("smtp_tls_force_insecure_host_tlsa_lookup", "lmtp_tls_force_insecure_host_tlsa_lookup"),
    ("smtp_tls_key_file", "lmtp_tls_key_file"),
    ("smtp_tls_loglevel", "lmtp_tls_loglevel"),
    ("smtp_tls_mandatory_ciphers", "lmtp_tls_mandatory_ciphers"),
    ("smtp_tls_mandatory_exclude_ciphers", "lmtp_tls_mandatory_exclude_ciphers"),
    ("smtp_tls_mandatory_protocols", "lmtp_tls_mandatory_protocols"),
    ("smtp_tls_note_starttls_offer", "lmtp_tls_note_starttls_offer"),
    ("smtp_tls_per_site", "lmtp_tls_per_site"),
    ("smtp_tls_policy_maps", "lmtp_tls_policy_maps"),
    ("smtp_tls_protocols", "lmtp_tls_protocols"),
    ("smtp_tls_scert_verifydepth", "lmtp_tls_scert_verifydepth"),
    ("smtp_tls_secure_cert_match", "lmtp_tls_secure_cert_match"),
    ("smtp_tls_security_level", "lmtp_tls_security_level"),
    ("smtp_tls_servername", "lmtp_tls_servername"),
    ("smtp_tls_session_cache_database", "lmtp_tls_session_cache_database"),
    ("smtp_tls_session_cache_timeout", "lmtp_tls_session_cache_timeout"),
    ("smtp_tls_trust_anchor_file", "lmtp_tls_trust_anchor_file"),
    ("smtp_tls_verify_cert_match", "lmtp_tls_verify_cert_match"),
    ("smtp_tls_wrappermode", "lmtp_tls_wrappermode"),
    ("smtp_transport_rate_delay", "lmtp_transport_rate_delay"),
    ("smtp_use_tls", "lmtp_use_tls"),
    ("smtp_xforward_timeout", "lmtp_xforward_timeout"),
];

/// Parameters that smtp_params.c reads but lmtp_params.c does not, so in LMTP
/// mode Postfix leaves the variable at its compiled-in value, which is given
/// here. `None`: Postfix never consults the setting in LMTP mode (or at all,
/// for obsolete names); the parameter's own value is returned unchanged.
pub(crate) const SMTP_ONLY: &[(&str, Option<&str>)] = &[
    ("ignore_mx_lookup_error", Some("no")),
    ("smtp_always_send_ehlo", Some("no")),
    ("smtp_never_send_ehlo", Some("no")),
    ("smtp_skip_4xx_greeting", None),
    ("smtp_tls_cipherlist", None),
    ("smtp_tls_dane_insecure_mx_policy", None),
];

/// Where a parameter's value comes from in the current mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source<'a> {
    /// Read this parameter (main.cf, -o or its default).
    Param(&'a str),
    /// Postfix does not read `name` in this mode; the value is fixed.
    Fixed { name: &'a str, value: &'static str },
}

/// Maps a name as the engine asks for it to the parameter that supplies it.
/// Names that are not smtp_ parameters (and all names in SMTP mode) map to
/// themselves.
pub(crate) fn resolve(mode: Mode, name: &str) -> Source<'_> {
    if mode == Mode::Smtp {
        return Source::Param(name);
    }
    if let Ok(i) = LMTP_TWINS.binary_search_by(|(s, _)| (*s).cmp(name))
        && let Some((_, lmtp)) = LMTP_TWINS.get(i)
    {
        return Source::Param(lmtp);
    }
    match SMTP_ONLY.iter().find(|(s, _)| *s == name) {
        Some((_, Some(value))) => Source::Fixed { name, value },
        _ => Source::Param(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::params;

    #[test]
    fn tables_are_sorted() {
        for pair in LMTP_TWINS.windows(2) {
            if let [a, b] = pair {
                assert!(a.0 < b.0, "{} !< {}", a.0, b.0);
            }
        }
    }

    #[test]
    fn every_twin_exists_and_every_smtp_name_is_mapped() {
        for (s, l) in LMTP_TWINS {
            assert!(params::find(s).is_some(), "{s}");
            assert!(params::find(l).is_some(), "{l}");
        }
        for p in params::all() {
            let Some(rest) = p.name.strip_prefix("smtp_") else {
                continue;
            };
            let twin = format!("lmtp_{rest}");
            let listed = LMTP_TWINS.iter().any(|(s, _)| *s == p.name);
            let smtp_only = SMTP_ONLY.iter().any(|(s, _)| *s == p.name);
            assert!(
                listed || smtp_only,
                "{} is neither twinned nor smtp-only",
                p.name
            );
            if params::find(&twin).is_some() {
                assert!(
                    listed,
                    "{} has an lmtp twin {twin} but is not listed",
                    p.name
                );
            }
        }
    }

    #[test]
    fn resolution() {
        assert_eq!(
            resolve(Mode::Smtp, "smtp_helo_timeout"),
            Source::Param("smtp_helo_timeout")
        );
        assert_eq!(
            resolve(Mode::Lmtp, "smtp_helo_timeout"),
            Source::Param("lmtp_lhlo_timeout")
        );
        assert_eq!(
            resolve(Mode::Lmtp, "smtp_helo_name"),
            Source::Param("lmtp_lhlo_name")
        );
        assert_eq!(
            resolve(Mode::Lmtp, "smtp_discard_ehlo_keywords"),
            Source::Param("lmtp_discard_lhlo_keywords")
        );
        assert_eq!(
            resolve(Mode::Lmtp, "smtp_tcp_port"),
            Source::Param("lmtp_tcp_port")
        );
        assert_eq!(
            resolve(Mode::Lmtp, "myhostname"),
            Source::Param("myhostname")
        );
        assert_eq!(
            resolve(Mode::Lmtp, "lmtp_assume_final"),
            Source::Param("lmtp_assume_final")
        );
        assert_eq!(
            resolve(Mode::Lmtp, "smtp_always_send_ehlo"),
            Source::Fixed {
                name: "smtp_always_send_ehlo",
                value: "no"
            }
        );
        assert_eq!(
            resolve(Mode::Lmtp, "smtp_tls_dane_insecure_mx_policy"),
            Source::Param("smtp_tls_dane_insecure_mx_policy")
        );
    }
}
