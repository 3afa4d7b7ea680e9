//! The queue manager's delivery request and the delivery agent's reply, as Postfix 3.7
//! exchanges them over the attribute protocol (`global/deliver_request.c` on the agent
//! side, `qmgr/qmgr_deliver.c` on the queue manager side).
//!
//! The conversation on one connection:
//!
//! 1. the delivery agent announces itself: `protocol NUL delivery_request_protocol NUL NUL`
//!    ([`write_initial`]);
//! 2. the queue manager sends one list of common attributes ending with
//!    `recipient_count`, then one separately terminated list per recipient
//!    ([`read_request`]); it may instead just close the connection;
//! 3. the agent answers with the hop status (a DSN, all empty when there is none) and
//!    `status` 0 (all recipients final) or -1 (try again) ([`write_reply`]), then waits for
//!    the queue manager to close ([`wait_for_close`]).
//!
//! Also here: the recipient (`rcpt_print`) and DSN (`dsn_print`) attribute groups and the
//! binary message statistics, which the status clients reuse.

use std::io::{BufRead, Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::attr::{AttrError, AttrReader, AttrWriter, Limits};
use crate::log::MsgStats;
use crate::outcome::Dsn;
use crate::request::{Encoding, Recipient, Request, Ret, Xforward};

/// Attribute names (global/mail_proto.h).
pub mod names {
    pub const PROTO_DELIVER: &str = "delivery_request_protocol";
    pub const FLAGS: &str = "flags";
    pub const QUEUE: &str = "queue_name";
    pub const QUEUEID: &str = "queue_id";
    pub const OFFSET: &str = "offset";
    pub const SIZE: &str = "size";
    pub const NEXTHOP: &str = "nexthop";
    pub const ENCODING: &str = "encoding";
    pub const SMTPUTF8: &str = "smtputf8";
    pub const SENDER: &str = "sender";
    pub const DSN_ENVID: &str = "envelope_id";
    pub const DSN_RET: &str = "ret_flags";
    pub const TIME: &str = "time";
    pub const LOG_CLIENT_NAME: &str = "log_client_name";
    pub const LOG_CLIENT_ADDR: &str = "log_client_address";
    pub const LOG_CLIENT_PORT: &str = "log_client_port";
    pub const LOG_PROTO_NAME: &str = "log_protocol_name";
    pub const LOG_HELO_NAME: &str = "log_helo_name";
    pub const SASL_METHOD: &str = "sasl_method";
    pub const SASL_USERNAME: &str = "sasl_username";
    pub const SASL_SENDER: &str = "sasl_sender";
    pub const LOG_IDENT: &str = "log_ident";
    pub const RWR_CONTEXT: &str = "rewrite_context";
    pub const RCPT_COUNT: &str = "recipient_count";
    pub const ORCPT: &str = "original_recipient";
    pub const RECIP: &str = "recipient";
    pub const DSN_ORCPT: &str = "dsn_orig_rcpt";
    pub const DSN_NOTIFY: &str = "notify_flags";
    pub const DSN_STATUS: &str = "status";
    pub const DSN_DTYPE: &str = "diag_type";
    pub const DSN_DTEXT: &str = "diag_text";
    pub const DSN_MTYPE: &str = "mta_type";
    pub const DSN_MNAME: &str = "mta_mname";
    pub const DSN_ACTION: &str = "action";
    pub const WHY: &str = "reason";
    pub const STATUS: &str = "status";
}

/// Delete recipients that were delivered (qmgr sets it by default).
pub const DEL_REQ_FLAG_SUCCESS: i32 = 1 << 0;
/// Historical; set by default alongside SUCCESS.
pub const DEL_REQ_FLAG_BOUNCE: i32 = 1 << 1;
/// The default flags.
pub const DEL_REQ_FLAG_DEFLT: i32 = DEL_REQ_FLAG_SUCCESS | DEL_REQ_FLAG_BOUNCE;
/// Address probe requested by the MTA (address verification): report to verify(8).
pub const DEL_REQ_FLAG_MTA_VRFY: i32 = 1 << 8;
/// Address probe requested by a user (`sendmail -bv`): report to trace(8).
pub const DEL_REQ_FLAG_USR_VRFY: i32 = 1 << 9;
/// Deliver and record every delivery in the trace log (`sendmail -v`).
pub const DEL_REQ_FLAG_RECORD: i32 = 1 << 10;
/// The connection cache may be consulted.
pub const DEL_REQ_FLAG_CONN_LOAD: i32 = 1 << 11;
/// The connection cache may be updated.
pub const DEL_REQ_FLAG_CONN_STORE: i32 = 1 << 12;
/// Record delayed deliveries in the trace log (delay notification follow-up).
pub const DEL_REQ_FLAG_REC_DLY_SENT: i32 = 1 << 13;
/// Both connection cache bits.
pub const DEL_REQ_FLAG_CONN_MASK: i32 = DEL_REQ_FLAG_CONN_LOAD | DEL_REQ_FLAG_CONN_STORE;
/// The flags that the status clients take (what smtp passes to sent/defer/bounce).
pub const DEL_REQ_TRACE_FLAGS_MASK: i32 =
    DEL_REQ_FLAG_MTA_VRFY | DEL_REQ_FLAG_USR_VRFY | DEL_REQ_FLAG_RECORD | DEL_REQ_FLAG_REC_DLY_SENT;
/// Requests that only probe and must not really deliver.
pub const DEL_REQ_TRACE_ONLY_MASK: i32 = DEL_REQ_FLAG_MTA_VRFY | DEL_REQ_FLAG_USR_VRFY;

/// `flags & DEL_REQ_TRACE_FLAGS_MASK`.
pub fn trace_flags(flags: i32) -> i32 {
    flags & DEL_REQ_TRACE_FLAGS_MASK
}

/// Reply status: every recipient reached a final state (delivered or bounced).
pub const DEL_STAT_FINAL: i32 = 0;
/// Reply status: some recipients must be tried again.
pub const DEL_STAT_DEFER: i32 = -1;

/// Per-recipient status codes (verify(8) updates use them).
pub const DEL_RCPT_STAT_OK: i32 = 0;
pub const DEL_RCPT_STAT_DEFER: i32 = 1;
pub const DEL_RCPT_STAT_BOUNCE: i32 = 2;

/// `smtputf8` bits (global/smtputf8.h).
pub const SMTPUTF8_FLAG_REQUESTED: i32 = 1 << 0;
pub const SMTPUTF8_FLAG_HEADER: i32 = 1 << 1;
pub const SMTPUTF8_FLAG_SENDER: i32 = 1 << 2;
pub const SMTPUTF8_FLAG_RECIPIENT: i32 = 1 << 3;

/// `ret_flags` values (global/dsn_mask.h).
pub const DSN_RET_FULL: i32 = 1 << 0;
pub const DSN_RET_HDRS: i32 = 1 << 1;

/// Most recipients accepted in one request (qmgr sends at most the transport's
/// recipient limit; this only stops absurd counts).
pub const MAX_RECIPIENTS: i32 = 100_000;

/// One recipient as the queue manager and the status services see it (rcpt_print order:
/// original_recipient, recipient, offset, dsn_orig_rcpt, notify_flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PfRecipient {
    pub orig_addr: String,
    pub address: String,
    /// Offset of the recipient record in the queue file.
    pub offset: i64,
    /// DSN ORCPT, "type;value", empty when none.
    pub dsn_orcpt: String,
    /// DSN NOTIFY bits (same bits as crate::request::notify).
    pub dsn_notify: i32,
}

impl PfRecipient {
    pub fn write<W: Write>(&self, w: &mut AttrWriter<W>) -> Result<(), AttrError> {
        w.str(names::ORCPT, &self.orig_addr)?;
        w.str(names::RECIP, &self.address)?;
        w.long(names::OFFSET, self.offset)?;
        w.str(names::DSN_ORCPT, &self.dsn_orcpt)?;
        w.int(names::DSN_NOTIFY, self.dsn_notify)
    }

    pub fn read<R: BufRead>(r: &mut AttrReader<R>) -> Result<PfRecipient, AttrError> {
        Ok(PfRecipient {
            orig_addr: r.expect_str(names::ORCPT)?,
            address: r.expect_str(names::RECIP)?,
            offset: r.expect_long(names::OFFSET)?,
            dsn_orcpt: r.expect_str(names::DSN_ORCPT)?,
            dsn_notify: r.expect_int(names::DSN_NOTIFY)?,
        })
    }

    /// The engine's view of this recipient.
    pub fn to_recipient(&self) -> Recipient {
        Recipient {
            address: self.address.clone(),
            orig_address: self.orig_addr.clone(),
            notify: self.dsn_notify as u32,
            orcpt: self.dsn_orcpt.clone(),
            offset: u64::try_from(self.offset).unwrap_or(0),
        }
    }
}

impl From<&Recipient> for PfRecipient {
    fn from(r: &Recipient) -> PfRecipient {
        PfRecipient {
            orig_addr: r.orig_address.clone(),
            address: r.address.clone(),
            offset: i64::try_from(r.offset).unwrap_or(i64::MAX),
            dsn_orcpt: r.orcpt.clone(),
            dsn_notify: r.notify as i32,
        }
    }
}

/// A delivery status notification in Postfix's seven fields (dsn_print order: status,
/// diag_type, diag_text, mta_type, mta_mname, action, reason). Absent fields are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PfDsn {
    /// Enhanced status code, "5.1.1".
    pub status: String,
    /// Diagnostic type: "smtp" when `dtext` is a server reply, else empty.
    pub dtype: String,
    /// Diagnostic text (the server reply).
    pub dtext: String,
    /// Remote MTA type: "dns" when `mname` is set.
    pub mtype: String,
    /// Remote MTA name.
    pub mname: String,
    /// DSN action: "relayed", "delivered", "failed", "delayed", "deliverable", ...
    pub action: String,
    /// Human-readable text (the parenthesised part of the log line).
    pub reason: String,
}

impl PfDsn {
    /// Convert the engine's DSN, with the given action ("" for none). The MTA becomes
    /// mtype "dns", the server reply dtype "smtp", as smtp(8)'s dsb_update/dsb_formal do.
    pub fn from_dsn(dsn: &Dsn, action: &str) -> PfDsn {
        PfDsn {
            status: dsn.status.clone(),
            dtype: if dsn.reply.is_some() { "smtp" } else { "" }.to_string(),
            dtext: dsn.reply.clone().unwrap_or_default(),
            mtype: if dsn.mta.is_some() { "dns" } else { "" }.to_string(),
            mname: dsn.mta.clone().unwrap_or_default(),
            action: action.to_string(),
            reason: dsn.reason.clone(),
        }
    }

    /// Back to the engine's DSN (action and types dropped).
    pub fn to_dsn(&self) -> Dsn {
        Dsn {
            status: self.status.clone(),
            reason: self.reason.clone(),
            mta: (!self.mname.is_empty()).then(|| self.mname.clone()),
            reply: (!self.dtext.is_empty()).then(|| self.dtext.clone()),
        }
    }

    pub fn write<W: Write>(&self, w: &mut AttrWriter<W>) -> Result<(), AttrError> {
        w.str(names::DSN_STATUS, &self.status)?;
        w.str(names::DSN_DTYPE, &self.dtype)?;
        w.str(names::DSN_DTEXT, &self.dtext)?;
        w.str(names::DSN_MTYPE, &self.mtype)?;
        w.str(names::DSN_MNAME, &self.mname)?;
        w.str(names::DSN_ACTION, &self.action)?;
        w.str(names::WHY, &self.reason)
    }

    pub fn read<R: BufRead>(r: &mut AttrReader<R>) -> Result<PfDsn, AttrError> {
        Ok(PfDsn {
            status: r.expect_str(names::DSN_STATUS)?,
            dtype: r.expect_str(names::DSN_DTYPE)?,
            dtext: r.expect_str(names::DSN_DTEXT)?,
            mtype: r.expect_str(names::DSN_MTYPE)?,
            mname: r.expect_str(names::DSN_MNAME)?,
            action: r.expect_str(names::DSN_ACTION)?,
            reason: r.expect_str(names::WHY)?,
        })
    }
}

// ---- message statistics -------------------------------------------------------------

/// Postfix sends its C `MSG_STATS` structure as raw memory (five `struct timeval` then an
/// `int`, native byte order and padding), base64-encoded in the attribute `time`. Both
/// ends run on the same machine, so the layout is this platform's `struct timeval`.
#[repr(C)]
struct RawMsgStats {
    stamps: [libc::timeval; 5],
    reuse_count: libc::c_int,
}

/// Size in bytes of Postfix's MSG_STATS on this platform (88 on 64-bit Linux).
pub const MSG_STATS_SIZE: usize = std::mem::size_of::<RawMsgStats>();
const TIMEVAL_SIZE: usize = std::mem::size_of::<libc::timeval>();
const SEC_OFF: usize = std::mem::offset_of!(libc::timeval, tv_sec);
const SEC_SIZE: usize = std::mem::size_of::<libc::time_t>();
const USEC_OFF: usize = std::mem::offset_of!(libc::timeval, tv_usec);
const USEC_SIZE: usize = std::mem::size_of::<libc::suseconds_t>();
const REUSE_OFF: usize = std::mem::offset_of!(RawMsgStats, reuse_count);
const INT_SIZE: usize = std::mem::size_of::<libc::c_int>();

/// Native-endian signed integer of 4 or 8 bytes.
fn get_signed(b: &[u8]) -> Option<i64> {
    match b.len() {
        8 => Some(i64::from_ne_bytes(b.try_into().ok()?)),
        4 => Some(i64::from(i32::from_ne_bytes(b.try_into().ok()?))),
        _ => None,
    }
}

fn put_signed(b: &mut [u8], v: i64) {
    match b.len() {
        8 => b.copy_from_slice(&v.to_ne_bytes()),
        4 => b.copy_from_slice(&(v as i32).to_ne_bytes()),
        _ => {}
    }
}

/// Encode message statistics as Postfix's raw MSG_STATS (missing stamps are zero).
pub fn encode_msg_stats(stats: &MsgStats) -> Vec<u8> {
    let mut out = vec![0u8; MSG_STATS_SIZE];
    let stamps = [
        stats.incoming_arrival,
        stats.active_arrival,
        stats.agent_handoff,
        stats.conn_setup_done,
        stats.deliver_done,
    ];
    for (i, stamp) in stamps.iter().enumerate() {
        let (sec, usec) = match stamp.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
            Some(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                i64::from(d.subsec_micros()),
            ),
            None => (0, 0),
        };
        let base = i * TIMEVAL_SIZE;
        put_signed(&mut out[base + SEC_OFF..base + SEC_OFF + SEC_SIZE], sec);
        put_signed(&mut out[base + USEC_OFF..base + USEC_OFF + USEC_SIZE], usec);
    }
    let reuse = i64::from(i32::try_from(stats.reuse_count).unwrap_or(i32::MAX));
    put_signed(&mut out[REUSE_OFF..REUSE_OFF + INT_SIZE], reuse);
    out
}

/// Decode Postfix's raw MSG_STATS; a zero stamp means "not supplied".
pub fn decode_msg_stats(raw: &[u8]) -> Result<MsgStats, AttrError> {
    if raw.len() != MSG_STATS_SIZE {
        return Err(AttrError::Invalid(format!(
            "msg_stats size mis-match: {} != {}",
            raw.len(),
            MSG_STATS_SIZE
        )));
    }
    let bad = || AttrError::Invalid("malformed msg_stats time stamp".to_string());
    let mut stamps = [None; 5];
    for (i, slot) in stamps.iter_mut().enumerate() {
        let base = i * TIMEVAL_SIZE;
        let sec = get_signed(&raw[base + SEC_OFF..base + SEC_OFF + SEC_SIZE]).ok_or_else(bad)?;
        let usec =
            get_signed(&raw[base + USEC_OFF..base + USEC_OFF + USEC_SIZE]).ok_or_else(bad)?;
        if sec < 0 || !(0..1_000_000).contains(&usec) {
            return Err(bad());
        }
        if sec == 0 && usec == 0 {
            continue;
        }
        let d = Duration::from_secs(sec as u64) + Duration::from_micros(usec as u64);
        *slot = Some(UNIX_EPOCH.checked_add(d).ok_or_else(bad)?);
    }
    let reuse = get_signed(&raw[REUSE_OFF..REUSE_OFF + INT_SIZE]).ok_or_else(bad)?;
    Ok(MsgStats {
        incoming_arrival: stamps[0],
        active_arrival: stamps[1],
        agent_handoff: stamps[2],
        conn_setup_done: stamps[3],
        deliver_done: stamps[4],
        reuse_count: u32::try_from(reuse).unwrap_or(0),
    })
}

// ---- the request --------------------------------------------------------------------

/// Everything the queue manager sends in one delivery request (Postfix 3.7).
#[derive(Debug, Clone, Default)]
pub struct DeliveryRequest {
    /// DEL_REQ_FLAG_* bits.
    pub flags: i32,
    /// Queue directory name ("active").
    pub queue_name: String,
    pub queue_id: String,
    /// Offset of the message content in the queue file.
    pub data_offset: i64,
    /// Content size (for SIZE=).
    pub data_size: i64,
    pub nexthop: String,
    /// "8bit", "7bit" or "" (unknown).
    pub encoding: String,
    /// SMTPUTF8_FLAG_* bits.
    pub smtputf8: i32,
    pub sender: String,
    pub dsn_envid: String,
    /// DSN_RET_FULL, DSN_RET_HDRS or 0.
    pub dsn_ret: i32,
    /// Arrival stamps; `agent_handoff` is set when the request is read unless the
    /// queue manager already supplied one.
    pub msg_stats: MsgStats,
    pub client_name: String,
    pub client_addr: String,
    pub client_port: String,
    pub client_proto: String,
    pub client_helo: String,
    pub sasl_method: String,
    pub sasl_username: String,
    pub sasl_sender: String,
    /// The original queue ID (for XFORWARD IDENT).
    pub log_ident: String,
    /// "local" or "remote" (for XFORWARD SOURCE).
    pub rewrite_context: String,
    pub recipients: Vec<PfRecipient>,
}

/// Postfix's mail_queue_name_ok: 1-100 alphanumerics.
pub fn queue_name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Postfix's mail_queue_id_ok: 1-255 alphanumerics or underscores.
pub fn queue_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The agent's greeting to the queue manager.
pub fn write_initial<W: Write>(w: &mut AttrWriter<W>) -> Result<(), AttrError> {
    w.protocol(names::PROTO_DELIVER)?;
    w.flush()
}

/// The queue manager's check of that greeting (for tests and tools).
pub fn read_initial<R: BufRead>(r: &mut AttrReader<R>) -> Result<(), AttrError> {
    r.expect_protocol(names::PROTO_DELIVER)
}

/// Read one delivery request in qmgr's order, strictly.
///
/// `Err(AttrError::Eof)` means the queue manager closed the connection without sending
/// a request, which it may do; any other error means a bad request, to be answered with
/// [`DEL_STAT_DEFER`] as Postfix does. Queue name and id are checked like Postfix's
/// mail_open_ok (so they are safe as path components); at least one recipient is
/// required.
pub fn read_request<R: BufRead>(r: &mut R) -> Result<DeliveryRequest, AttrError> {
    read_request_with(&mut AttrReader::with_limits(r, Limits::default()))
}

/// [`read_request`] on an existing attribute reader (its limits and strictness apply).
pub fn read_request_with<R: BufRead>(r: &mut AttrReader<R>) -> Result<DeliveryRequest, AttrError> {
    if r.at_eof()? {
        return Err(AttrError::Eof);
    }
    let mut req = DeliveryRequest {
        flags: r.expect_int(names::FLAGS)?,
        queue_name: r.expect_str(names::QUEUE)?,
        queue_id: r.expect_str(names::QUEUEID)?,
        data_offset: r.expect_long(names::OFFSET)?,
        data_size: r.expect_long(names::SIZE)?,
        nexthop: r.expect_str(names::NEXTHOP)?,
        encoding: r.expect_str(names::ENCODING)?,
        smtputf8: r.expect_int(names::SMTPUTF8)?,
        sender: r.expect_str(names::SENDER)?,
        dsn_envid: r.expect_str(names::DSN_ENVID)?,
        dsn_ret: r.expect_int(names::DSN_RET)?,
        msg_stats: decode_msg_stats(&r.expect_data(names::TIME)?)?,
        client_name: r.expect_str(names::LOG_CLIENT_NAME)?,
        client_addr: r.expect_str(names::LOG_CLIENT_ADDR)?,
        client_port: r.expect_str(names::LOG_CLIENT_PORT)?,
        client_proto: r.expect_str(names::LOG_PROTO_NAME)?,
        client_helo: r.expect_str(names::LOG_HELO_NAME)?,
        sasl_method: r.expect_str(names::SASL_METHOD)?,
        sasl_username: r.expect_str(names::SASL_USERNAME)?,
        sasl_sender: r.expect_str(names::SASL_SENDER)?,
        log_ident: r.expect_str(names::LOG_IDENT)?,
        rewrite_context: r.expect_str(names::RWR_CONTEXT)?,
        recipients: Vec::new(),
    };
    let count = r.expect_int(names::RCPT_COUNT)?;
    r.expect_end()?;
    if !queue_name_ok(&req.queue_name) {
        return Err(AttrError::Invalid(format!(
            "bad mail queue name: {}",
            req.queue_name
        )));
    }
    if !queue_id_ok(&req.queue_id) {
        return Err(AttrError::Invalid(format!(
            "bad mail queue id: {}",
            req.queue_id
        )));
    }
    if count > MAX_RECIPIENTS {
        return Err(AttrError::Invalid(format!(
            "{}: recipient count {count} exceeds limit {MAX_RECIPIENTS}",
            req.queue_id
        )));
    }
    if count <= 0 {
        return Err(AttrError::Invalid(format!(
            "{}: no recipients in delivery request for destination {}",
            req.queue_id, req.nexthop
        )));
    }
    for _ in 0..count {
        let rcpt = PfRecipient::read(r)?;
        r.expect_end()?;
        req.recipients.push(rcpt);
    }
    if req.msg_stats.agent_handoff.is_none() {
        req.msg_stats.agent_handoff = Some(SystemTime::now());
    }
    Ok(req)
}

/// Write a delivery request as the queue manager does (for tests and tools), flushed.
pub fn write_request<W: Write>(
    w: &mut AttrWriter<W>,
    req: &DeliveryRequest,
) -> Result<(), AttrError> {
    w.int(names::FLAGS, req.flags)?;
    w.str(names::QUEUE, &req.queue_name)?;
    w.str(names::QUEUEID, &req.queue_id)?;
    w.long(names::OFFSET, req.data_offset)?;
    w.long(names::SIZE, req.data_size)?;
    w.str(names::NEXTHOP, &req.nexthop)?;
    w.str(names::ENCODING, &req.encoding)?;
    w.int(names::SMTPUTF8, req.smtputf8)?;
    w.str(names::SENDER, &req.sender)?;
    w.str(names::DSN_ENVID, &req.dsn_envid)?;
    w.int(names::DSN_RET, req.dsn_ret)?;
    w.data(names::TIME, &encode_msg_stats(&req.msg_stats))?;
    w.str(names::LOG_CLIENT_NAME, &req.client_name)?;
    w.str(names::LOG_CLIENT_ADDR, &req.client_addr)?;
    w.str(names::LOG_CLIENT_PORT, &req.client_port)?;
    w.str(names::LOG_PROTO_NAME, &req.client_proto)?;
    w.str(names::LOG_HELO_NAME, &req.client_helo)?;
    w.str(names::SASL_METHOD, &req.sasl_method)?;
    w.str(names::SASL_USERNAME, &req.sasl_username)?;
    w.str(names::SASL_SENDER, &req.sasl_sender)?;
    w.str(names::LOG_IDENT, &req.log_ident)?;
    w.str(names::RWR_CONTEXT, &req.rewrite_context)?;
    let count = i32::try_from(req.recipients.len()).unwrap_or(i32::MAX);
    w.int(names::RCPT_COUNT, count)?;
    w.end()?;
    for rcpt in &req.recipients {
        rcpt.write(w)?;
        w.end()?;
    }
    w.flush()
}

/// The final reply: hop status (all fields empty when `None`) and status, flushed.
/// `status` is [`DEL_STAT_FINAL`] or [`DEL_STAT_DEFER`]. The hop status is what the queue
/// manager uses to throttle the destination ("delivery temporarily suspended: ..."), so
/// it is set only when the whole site should be avoided.
pub fn write_reply<W: Write>(
    w: &mut AttrWriter<W>,
    status: i32,
    hop_status: Option<&Dsn>,
) -> Result<(), AttrError> {
    let dsn = hop_status
        .map(|d| PfDsn::from_dsn(d, ""))
        .unwrap_or_default();
    dsn.write(w)?;
    w.int(names::STATUS, status)?;
    w.end()?;
    w.flush()
}

/// The queue manager's reading of that reply (for tests and tools).
pub fn read_reply<R: BufRead>(r: &mut AttrReader<R>) -> Result<(i32, PfDsn), AttrError> {
    let dsn = PfDsn::read(r)?;
    let status = r.expect_int(names::STATUS)?;
    r.expect_end()?;
    Ok((status, dsn))
}

/// After the reply, Postfix reads once more so that the queue manager closes first
/// (some systems lose data written just before a close). Returns when the peer closes,
/// sends anything, or the read fails (e.g. the stream's read timeout expires).
pub fn wait_for_close<R: Read>(r: &mut R) {
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            _ => return,
        }
    }
}

impl DeliveryRequest {
    /// The engine's request. Encoding "8bit"/"7bit" (any case) map to their variants,
    /// anything else to Unknown; SMTPUTF8 is "requested" when the sender asked for it and
    /// "required" when it was asked for and the envelope or headers really need it;
    /// XFORWARD gets the logged client attributes, IDENT the log_ident and SOURCE the
    /// rewrite context.
    pub fn to_request(&self) -> Request {
        let encoding = if self.encoding.eq_ignore_ascii_case("8bit") {
            Encoding::EightBit
        } else if self.encoding.eq_ignore_ascii_case("7bit") {
            Encoding::SevenBit
        } else {
            Encoding::Unknown
        };
        let ret = match self.dsn_ret {
            DSN_RET_FULL => Some(Ret::Full),
            DSN_RET_HDRS => Some(Ret::Hdrs),
            _ => None,
        };
        let requested = self.smtputf8 & SMTPUTF8_FLAG_REQUESTED != 0;
        let mut stats = self.msg_stats;
        if stats.agent_handoff.is_none() {
            stats.agent_handoff = Some(SystemTime::now());
        }
        Request {
            queue_id: self.queue_id.clone(),
            sender: self.sender.clone(),
            recipients: self
                .recipients
                .iter()
                .map(PfRecipient::to_recipient)
                .collect(),
            envid: self.dsn_envid.clone(),
            ret,
            encoding,
            smtputf8: requested,
            smtputf8_required: requested && self.smtputf8 & !SMTPUTF8_FLAG_REQUESTED != 0,
            size: u64::try_from(self.data_size).unwrap_or(0),
            stats,
            trace_only: self.flags & DEL_REQ_TRACE_ONLY_MASK != 0,
            xforward: Xforward {
                name: self.client_name.clone(),
                addr: self.client_addr.clone(),
                port: self.client_port.clone(),
                proto: self.client_proto.clone(),
                helo: self.client_helo.clone(),
                ident: self.log_ident.clone(),
                domain: self.rewrite_context.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn t(secs: u64, micros: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros)
    }

    fn sample() -> DeliveryRequest {
        DeliveryRequest {
            flags: DEL_REQ_FLAG_DEFLT | DEL_REQ_FLAG_CONN_STORE,
            queue_name: "active".into(),
            queue_id: "4ABCD1234".into(),
            data_offset: 123,
            data_size: 4567,
            nexthop: "example.com".into(),
            encoding: "8bit".into(),
            smtputf8: SMTPUTF8_FLAG_REQUESTED | SMTPUTF8_FLAG_RECIPIENT,
            sender: "sender@example.org".into(),
            dsn_envid: "envid+2B1".into(),
            dsn_ret: DSN_RET_HDRS,
            msg_stats: MsgStats {
                incoming_arrival: Some(t(1_700_000_000, 250_000)),
                active_arrival: Some(t(1_700_000_001, 999_999)),
                ..Default::default()
            },
            client_name: "client.example".into(),
            client_addr: "192.0.2.1".into(),
            client_port: "54321".into(),
            client_proto: "ESMTP".into(),
            client_helo: "helo.example".into(),
            sasl_method: "PLAIN".into(),
            sasl_username: "user".into(),
            sasl_sender: "".into(),
            log_ident: "4ABCD1234".into(),
            rewrite_context: "remote".into(),
            recipients: vec![
                PfRecipient {
                    orig_addr: "Alias@example.com".into(),
                    address: "a@example.com".into(),
                    offset: 300,
                    dsn_orcpt: "rfc822;Alias@example.com".into(),
                    dsn_notify: 2 | 4,
                },
                PfRecipient {
                    orig_addr: "".into(),
                    address: "b@example.com".into(),
                    offset: 350,
                    dsn_orcpt: "".into(),
                    dsn_notify: 0,
                },
                PfRecipient {
                    orig_addr: "c@example.com".into(),
                    address: "ü@example.com".into(),
                    offset: 400,
                    dsn_orcpt: "".into(),
                    dsn_notify: 1,
                },
            ],
        }
    }

    fn wire(req: &DeliveryRequest) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = AttrWriter::new(&mut out);
        write_request(&mut w, req).unwrap();
        drop(w);
        out
    }

    #[test]
    fn request_round_trip() {
        let req = sample();
        let bytes = wire(&req);
        let got = read_request(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!(got.flags, req.flags);
        assert_eq!(got.queue_name, "active");
        assert_eq!(got.queue_id, req.queue_id);
        assert_eq!(got.data_offset, 123);
        assert_eq!(got.data_size, 4567);
        assert_eq!(got.nexthop, req.nexthop);
        assert_eq!(got.encoding, "8bit");
        assert_eq!(got.smtputf8, req.smtputf8);
        assert_eq!(got.sender, req.sender);
        assert_eq!(got.dsn_envid, req.dsn_envid);
        assert_eq!(got.dsn_ret, DSN_RET_HDRS);
        assert_eq!(
            got.msg_stats.incoming_arrival,
            req.msg_stats.incoming_arrival
        );
        assert_eq!(got.msg_stats.active_arrival, req.msg_stats.active_arrival);
        assert!(got.msg_stats.agent_handoff.is_some());
        assert_eq!(got.msg_stats.conn_setup_done, None);
        assert_eq!(got.client_name, req.client_name);
        assert_eq!(got.client_addr, req.client_addr);
        assert_eq!(got.client_port, req.client_port);
        assert_eq!(got.client_proto, req.client_proto);
        assert_eq!(got.client_helo, req.client_helo);
        assert_eq!(got.sasl_method, req.sasl_method);
        assert_eq!(got.sasl_username, req.sasl_username);
        assert_eq!(got.sasl_sender, req.sasl_sender);
        assert_eq!(got.log_ident, req.log_ident);
        assert_eq!(got.rewrite_context, req.rewrite_context);
        assert_eq!(got.recipients, req.recipients);
    }

    #[test]
    fn request_wire_layout() {
        let bytes = wire(&sample());
        // Leading attributes exactly as qmgr writes them.
        let head: &[u8] = b"flags\x004099\0queue_name\0active\0queue_id\x004ABCD1234\0\
offset\x00123\0size\x004567\0nexthop\0example.com\0encoding\x008bit\0smtputf8\x009\0\
sender\0sender@example.org\0envelope_id\0envid+2B1\0ret_flags\x002\0time\0";
        assert!(bytes.starts_with(head));
        // Statistics: base64 of the raw struct, then the client attributes.
        let rest = &bytes[head.len()..];
        let nul = rest.iter().position(|&b| b == 0).unwrap();
        assert_eq!(nul, MSG_STATS_SIZE.div_ceil(3) * 4);
        let tail: &[u8] = b"log_client_name\0client.example\0";
        assert!(rest[nul + 1..].starts_with(tail));
        // Each recipient is its own terminated list.
        let first: &[u8] = b"recipient_count\x003\0\0original_recipient\0Alias@example.com\0\
recipient\0a@example.com\0offset\x00300\0dsn_orig_rcpt\0rfc822;Alias@example.com\0\
notify_flags\x006\0\0original_recipient\0\0recipient\0b@example.com\0";
        assert!(bytes.windows(first.len()).any(|w| w == first));
        assert!(bytes.ends_with(b"notify_flags\x001\0\0"));
    }

    #[test]
    fn msg_stats_layout() {
        let stats = MsgStats {
            incoming_arrival: Some(t(0x0102_0304, 5)),
            deliver_done: Some(t(7, 999_999)),
            reuse_count: 3,
            ..Default::default()
        };
        let raw = encode_msg_stats(&stats);
        assert_eq!(raw.len(), MSG_STATS_SIZE);
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(MSG_STATS_SIZE, 88);
            assert_eq!(&raw[0..8], &0x0102_0304i64.to_le_bytes());
            assert_eq!(&raw[8..16], &5i64.to_le_bytes());
            assert_eq!(&raw[64..72], &7i64.to_le_bytes());
            assert_eq!(&raw[72..80], &999_999i64.to_le_bytes());
            assert_eq!(&raw[80..84], &3i32.to_le_bytes());
            assert_eq!(&raw[84..88], &[0, 0, 0, 0]);
        }
        let back = decode_msg_stats(&raw).unwrap();
        assert_eq!(back.incoming_arrival, stats.incoming_arrival);
        assert_eq!(back.active_arrival, None);
        assert_eq!(back.deliver_done, stats.deliver_done);
        assert_eq!(back.reuse_count, 3);
        assert!(decode_msg_stats(&raw[..80]).is_err());
        let mut bad = raw.clone();
        bad[8..16].copy_from_slice(&2_000_000i64.to_ne_bytes());
        assert!(decode_msg_stats(&bad).is_err());
    }

    #[test]
    fn bad_requests() {
        let good = wire(&sample());
        // Every truncation is an error, never a panic.
        for cut in 0..good.len() {
            let res = read_request(&mut Cursor::new(&good[..cut]));
            assert!(res.is_err(), "cut at {cut}");
            if cut == 0 {
                assert!(matches!(res, Err(AttrError::Eof)));
            }
        }
        // Unsafe queue names, no recipients, an extra attribute.
        for edit in [
            |r: &mut DeliveryRequest| r.queue_name = "../etc".into(),
            |r: &mut DeliveryRequest| r.queue_id = "a/b".into(),
            |r: &mut DeliveryRequest| r.recipients.clear(),
        ] {
            let mut req = sample();
            edit(&mut req);
            assert!(matches!(
                read_request(&mut Cursor::new(wire(&req))),
                Err(AttrError::Invalid(_))
            ));
        }
        let mut extra = good.clone();
        let pos = extra.windows(6).position(|w| w == b"flags\0").unwrap();
        extra.splice(pos..pos, b"bogus\0x\0".iter().copied());
        assert!(matches!(
            read_request(&mut Cursor::new(extra)),
            Err(AttrError::Unexpected { .. })
        ));
    }

    #[test]
    fn initial_and_reply() {
        let mut out = Vec::new();
        let mut w = AttrWriter::new(&mut out);
        write_initial(&mut w).unwrap();
        write_reply(&mut w, DEL_STAT_DEFER, None).unwrap();
        drop(w);
        let expected: &[u8] = b"protocol\0delivery_request_protocol\0\0\
status\0\0diag_type\0\0diag_text\0\0mta_type\0\0mta_mname\0\0action\0\0reason\0\0\
status\x004294967295\0\0";
        assert_eq!(out, expected);
        let mut r = AttrReader::new(Cursor::new(out));
        read_initial(&mut r).unwrap();
        let (status, dsn) = read_reply(&mut r).unwrap();
        assert_eq!(status, DEL_STAT_DEFER);
        assert_eq!(dsn, PfDsn::default());

        let mut out = Vec::new();
        let mut w = AttrWriter::new(&mut out);
        let mut hop = Dsn::new("4.4.1", "connect to mx[192.0.2.9]:25: Connection refused");
        hop.mta = Some("mx.example".into());
        write_reply(&mut w, DEL_STAT_FINAL, Some(&hop)).unwrap();
        drop(w);
        let (status, dsn) = read_reply(&mut AttrReader::new(Cursor::new(out))).unwrap();
        assert_eq!(status, 0);
        assert_eq!(dsn.status, "4.4.1");
        assert_eq!(dsn.mtype, "dns");
        assert_eq!(dsn.mname, "mx.example");
        assert_eq!(dsn.dtype, "");
        assert_eq!(dsn.to_dsn(), hop);
    }

    #[test]
    fn engine_request() {
        let mut d = sample();
        let r = d.to_request();
        assert_eq!(r.queue_id, "4ABCD1234");
        assert_eq!(r.encoding, Encoding::EightBit);
        assert!(r.smtputf8 && r.smtputf8_required);
        assert_eq!(r.ret, Some(Ret::Hdrs));
        assert_eq!(r.size, 4567);
        assert_eq!(r.envid, "envid+2B1");
        assert_eq!(r.recipients.len(), 3);
        assert_eq!(r.recipients[0].orig_address, "Alias@example.com");
        assert_eq!(r.recipients[0].notify, 6);
        assert_eq!(r.recipients[0].orcpt, "rfc822;Alias@example.com");
        assert_eq!(r.recipients[0].offset, 300);
        assert_eq!(r.xforward.ident, "4ABCD1234");
        assert_eq!(r.xforward.domain, "remote");
        assert_eq!(r.xforward.port, "54321");
        assert!(r.stats.agent_handoff.is_some());
        assert_eq!(r.stats.incoming_arrival, d.msg_stats.incoming_arrival);
        d.encoding = "".into();
        d.smtputf8 = SMTPUTF8_FLAG_REQUESTED;
        d.dsn_ret = 0;
        let r = d.to_request();
        assert_eq!(r.encoding, Encoding::Unknown);
        assert!(r.smtputf8 && !r.smtputf8_required);
        assert_eq!(r.ret, None);
        d.smtputf8 = SMTPUTF8_FLAG_HEADER;
        let r = d.to_request();
        assert!(!r.smtputf8 && !r.smtputf8_required);
        assert_eq!(PfRecipient::from(&r.recipients[0]), d.recipients[0]);
    }
}
