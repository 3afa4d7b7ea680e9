//! TLS for the SMTP/LMTP client, as Postfix's smtp(8) does it.
//!
//! * `policy`: the per-destination TLS policy (security level, protocols, cipher grade,
//!   match names, fingerprints, trust anchors) resolved from main.cf parameters and an
//!   optional smtp_tls_policy_maps / smtp_tls_per_site entry.
//! * `grade`: protocol-list syntax (min/max version and exclusions) and cipher-grade
//!   strings, exactly as Postfix feeds them to OpenSSL.
//! * `fprint`: certificate and public-key fingerprints in Postfix's colon-hex format.
//! * `dane`: TLSA records (from DNS or synthesised from fingerprints and trust-anchor
//!   files) and Postfix's rules for which of them are usable.
//! * `certkey`: our client keys and certificates (smtp_tls_chain_files or the per-algorithm
//!   cert/key files) loaded as Postfix loads them, with its log lines.
//! * `client`: the OpenSSL client context, the handshake over any `conn::Stream`, the
//!   trust decision (Anonymous, Untrusted, Trusted, Verified), the session cache and the
//!   log and error texts Postfix produces.
//! * `session_cache`: where resumable sessions are kept and Postfix's names for them.
//! * `smtp`: the STARTTLS decisions and failure texts of smtp_proto.c / smtp_connect.c.
//!
//! The session layer drives STARTTLS (see `smtp` for the order of calls); nothing here
//! reads or writes SMTP itself.

mod certkey;
pub mod client;
pub mod dane;
mod ffi;
pub mod fprint;
pub mod grade;
pub mod policy;
pub mod session_cache;
pub mod smtp;

pub use client::{ClientContext, HandshakeError, SetupLog, StartProps, TlsInfo, TlsStream, Trust};
pub use dane::{DaneLookup, TlsaRecord};
pub use policy::{Level, Policy, PolicyError, Resolution, Settings};
