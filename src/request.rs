//! What is to be delivered: envelope, recipients, DSN options and the message content.
//!
//! A request is built either by the command line or by the Postfix daemon front from a
//! qmgr delivery request; the engine only ever sees this type and never learns which.

use crate::log::MsgStats;
use crate::outcome::Error;

/// DSN NOTIFY bits as Postfix encodes them.
pub mod notify {
    pub const NEVER: u32 = 1 << 0;
    pub const SUCCESS: u32 = 1 << 1;
    pub const FAILURE: u32 = 1 << 2;
    pub const DELAY: u32 = 1 << 3;

    /// The NOTIFY= value as Postfix writes it (names in its table order, comma-separated).
    pub fn to_string(mask: u32) -> String {
        let names = [
            (NEVER, "NEVER"),
            (SUCCESS, "SUCCESS"),
            (FAILURE, "FAILURE"),
            (DELAY, "DELAY"),
        ];
        names
            .iter()
            .filter(|(bit, _)| mask & bit != 0)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parse a NOTIFY list (case-insensitive); NEVER cannot be combined with others.
    pub fn parse(text: &str) -> Option<u32> {
        let mut mask = 0;
        for word in text.split(',') {
            mask |= match word.trim().to_ascii_uppercase().as_str() {
                "NEVER" => NEVER,
                "SUCCESS" => SUCCESS,
                "FAILURE" => FAILURE,
                "DELAY" => DELAY,
                _ => return None,
            };
        }
        if mask & NEVER != 0 && mask != NEVER {
            None
        } else {
            Some(mask)
        }
    }
}

/// DSN RET values as Postfix encodes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

/// The body type the sender declared (or the cleanup server found).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    #[default]
    Unknown,
    SevenBit,
    EightBit,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recipient {
    pub address: String,
    /// The original recipient, before rewriting (Postfix's orig_to); may be empty.
    pub orig_address: String,
    /// NOTIFY bits, 0 when the sender gave none.
    pub notify: u32,
    /// ORCPT as "type;xtext-or-utf8 value", empty when none.
    pub orcpt: String,
    /// Where this recipient's record lives in the queue file (daemon mode), else 0.
    pub offset: u64,
}

impl Recipient {
    pub fn new(address: impl Into<String>) -> Recipient {
        Recipient {
            address: address.into(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Postfix queue id, or a made-up one for the command line.
    pub queue_id: String,
    pub sender: String,
    pub recipients: Vec<Recipient>,
    pub envid: String,
    pub ret: Option<Ret>,
    pub encoding: Encoding,
    pub smtputf8: bool,
    /// The sender asked for SMTPUTF8 and the envelope or headers really need it: a server
    /// without SMTPUTF8 cannot take this message.
    pub smtputf8_required: bool,
    /// Message size as the SIZE= parameter reports it.
    pub size: u64,
    pub stats: MsgStats,
    /// An address probe (sendmail -bv, verify(8)): find out whether the recipients would be
    /// accepted, without delivering the message.
    pub trace_only: bool,
    /// Extra SMTP-client information for XFORWARD: name, addr, port, proto, helo, ident,
    /// source (empty strings when unknown).
    pub xforward: Xforward,
}

#[derive(Debug, Clone, Default)]
pub struct Xforward {
    pub name: String,
    pub addr: String,
    pub port: String,
    pub proto: String,
    pub helo: String,
    pub ident: String,
    pub domain: String,
}

/// One unit of message content, as the queue file stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// A complete line (the wire gets CRLF after it).
    Line,
    /// Part of a long line: the next record continues it.
    Partial,
}

/// Message content that can be read record by record, more than once (each new session
/// starts again from the beginning).
pub trait Content {
    fn rewind(&mut self) -> Result<(), Error>;
    /// Fill `buf` with the next record; `None` at the end of the message.
    fn next_record(&mut self, buf: &mut Vec<u8>) -> Result<Option<Record>, Error>;
}
