//! Outpost: a reimplementation of Postfix's smtp(8)/lmtp(8) delivery agent.
//!
//! Modules follow the data: configuration -> request -> routing -> session -> transaction
//! -> message stream -> outcomes -> reporting and logging. The command line (`cli`) and the
//! test server (`sink`) sit on top; Postfix-internal protocols live in `postfix` and
//! nowhere else.

pub mod cli;
pub mod config;
pub mod delivery;
pub mod dsn_filter;
pub mod envelope;
pub mod log;
pub mod message;
pub mod outcome;
pub mod postfix;
pub mod request;
pub mod rewrite;
pub mod route;
pub mod sasl;
pub mod security;
pub mod session;
pub mod sink;
pub mod sysexits;
pub mod table;
pub mod tls;
pub mod tok822;
pub mod transaction;
