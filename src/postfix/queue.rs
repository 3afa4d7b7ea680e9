//! Postfix queue files, as a delivery agent sees them.
//!
//! A queue file is a sequence of records: one type byte, the payload length as a base-128
//! number (seven bits per byte, least significant group first, the high bit saying that
//! another length byte follows), then the payload. The envelope comes first (the `C` size
//! record, arrival time, sender, recipients, named attributes), then an `M` record and the
//! message content as `N` (complete line) and `L` (piece of a longer line) records, then an
//! `X` record, the extracted envelope, and `E` at the end.
//!
//! A delivery agent only ever does four things with the file, and this module does them the
//! way Postfix's own agents do:
//!
//! - open it by queue name and queue id (with the hashed subdirectories of
//!   `hash_queue_names`), after the same sanity checks, read-write, holding a shared
//!   `flock()` lock so that a restarted queue manager cannot hand the same file out twice;
//! - read the content from the data offset the queue manager passed, following `p` pointer
//!   records and skipping `w` padding as the record layer does by default, until `X`;
//! - mark a recipient done by overwriting the type byte of its record with `D`;
//! - mark the whole file corrupt by changing its mode, so that the queue manager moves it
//!   out of the way.
//!
//! [`QueueFileBuilder`] writes files in the same format for tests and tools.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::log;
use crate::outcome::Error;
use crate::request::{Content, Record};

/// Record type bytes (the subset of Postfix's that a delivery agent or a test needs).
pub mod rec {
    /// Size record, always first: six fixed-width numbers.
    pub const SIZE: u8 = b'C';
    /// Arrival time, "seconds microseconds".
    pub const TIME: u8 = b'T';
    /// Sender address.
    pub const FROM: u8 = b'S';
    /// Recipient still to be delivered.
    pub const RCPT: u8 = b'R';
    /// Recipient already delivered.
    pub const DONE: u8 = b'D';
    /// Original recipient of the next `R` record.
    pub const ORCP: u8 = b'O';
    /// Named attribute, "name=value".
    pub const ATTR: u8 = b'A';
    /// Start of the message content.
    pub const MESG: u8 = b'M';
    /// A complete content line.
    pub const NORM: u8 = b'N';
    /// Part of a long content line; the next record continues it.
    pub const CONT: u8 = b'L';
    /// Padding, invisible to readers.
    pub const DTXT: u8 = b'w';
    /// End of content, start of the extracted envelope.
    pub const XTRA: u8 = b'X';
    /// Pointer to another offset in the same file ("0" is a placeholder).
    pub const PTR: u8 = b'p';
    /// End of the file.
    pub const END: u8 = b'E';
}

/// Mode bits of a queue file that is ready for delivery (owner rwx).
pub const MODE_READY: u32 = 0o700;
/// Mode of a file marked corrupt (owner read only); qmgr then moves it to `corrupt/`.
pub const MODE_CORRUPT: u32 = 0o400;

/// The record layer keeps the length in a C int and gives up before a shift would reach
/// its width: at most four length bytes, 28 bits.
const LENGTH_BITS: u32 = 32;
/// Backward pointer jumps tolerated while reading one file before it counts as a loop.
const REVERSE_JUMP_LIMIT: u32 = 10_000;
/// Width of a pointer record's payload as the cleanup server writes it.
const PTR_WIDTH: usize = 15;
/// Length of the size record's payload: six 15-wide fields and five spaces.
const SIZE_PAYLOAD: usize = 6 * 15 + 5;
/// Longest content record the builder writes (the cleanup server's line_length_limit).
const BUILDER_LINE_LIMIT: usize = 2048;

/// A problem after which Postfix's delivery agent logs `fatal:` and exits; the text is what
/// it logs. Converted into a deferral when the caller prefers to carry on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatalError(pub String);

impl std::fmt::Display for FatalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FatalError {}

impl From<FatalError> for Error {
    fn from(e: FatalError) -> Error {
        Error::temp("4.3.0", e.0)
    }
}

/// Why a queue file could not be opened for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// The request names no usable file (bad name or id, missing, not a regular file, not
    /// ready). Any warning has been logged; the request is answered with a deferral and no
    /// per-recipient status, as Postfix does.
    Rejected,
    /// Postfix exits with this fatal error (open failed other than ENOENT, lock failed).
    Fatal(FatalError),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Rejected => f.write_str("queue file not available"),
            OpenError::Fatal(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Error {
        match e {
            OpenError::Rejected => Error::temp("4.3.0", "queue file not available"),
            OpenError::Fatal(f) => f.into(),
        }
    }
}

pub(crate) use crate::log::strerror;

// ---------------------------------------------------------------------------------------
// Names and paths
// ---------------------------------------------------------------------------------------

/// A queue name as Postfix accepts it: 1-100 ASCII letters and digits.
pub fn queue_name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A queue id (or fast-flush log name) as Postfix accepts it: 1-255 letters, digits and
/// underscores.
pub fn queue_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Which queues have hashed subdirectories, and how deep (`hash_queue_names`,
/// `hash_queue_depth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLayout {
    pub hash_queue_names: Vec<String>,
    pub hash_queue_depth: usize,
}

impl Default for QueueLayout {
    /// Postfix 3.7's defaults: `deferred, defer`, depth 1.
    fn default() -> QueueLayout {
        QueueLayout {
            hash_queue_names: vec!["deferred".into(), "defer".into()],
            hash_queue_depth: 1,
        }
    }
}

/// The 52-character alphabet of long queue ids (digits and consonants).
const SAFE_CHARS: &[u8] = b"0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

impl QueueLayout {
    /// From the parameter values: a list split on commas and white space, and a depth (at
    /// least 1; Postfix refuses to start with less).
    pub fn new(hash_queue_names: &str, hash_queue_depth: usize) -> QueueLayout {
        QueueLayout {
            hash_queue_names: hash_queue_names
                .split(|c: char| c == ',' || c.is_ascii_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            hash_queue_depth: hash_queue_depth.max(1),
        }
    }

    /// The file's path relative to the queue directory, e.g. `deferred/B/B42DE99C706`, as
    /// Postfix names it in its logs. `None` for a name or id Postfix would not accept.
    pub fn relative_path(&self, queue_name: &str, queue_id: &str) -> Option<String> {
        if !queue_name_ok(queue_name) || !queue_id_ok(queue_id) {
            return None;
        }
        let mut path = format!("{queue_name}/");
        if self
            .hash_queue_names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(queue_name))
        {
            let key = hash_key(queue_id);
            let mut chars = key.chars();
            for _ in 0..self.hash_queue_depth.max(1) {
                path.push(chars.next().unwrap_or('_'));
                path.push('/');
            }
        }
        path.push_str(queue_id);
        Some(path)
    }
}

/// The string whose first characters name the hash subdirectories: the id itself for a
/// short (hex) id; for a long id, its microseconds field re-encoded as five hex digits, so
/// that both id styles spread over the same directories.
fn hash_key(queue_id: &str) -> String {
    let bytes = queue_id.as_bytes();
    // Long ids: 6+ characters of seconds, 4 of microseconds, 'z', inode number.
    if let Some(z) = bytes.iter().rposition(|&b| b == b'z')
        && z >= 10
    {
        let mut usec: u64 = 0;
        let mut valid = true;
        for &b in &bytes[z - 4..z] {
            match SAFE_CHARS.iter().position(|&c| c == b) {
                Some(v) => usec = usec * 52 + v as u64,
                None => valid = false,
            }
        }
        if !valid {
            usec = 0;
        }
        return format!("{usec:05X}");
    }
    queue_id.to_string()
}

// ---------------------------------------------------------------------------------------
// Record encoding
// ---------------------------------------------------------------------------------------

/// Append one record in queue-file encoding.
pub fn put_record(out: &mut Vec<u8>, rec_type: u8, data: &[u8]) {
    out.push(rec_type);
    let mut rest = data.len();
    loop {
        let mut byte = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest != 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(data);
}

/// What reading one raw record produced.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Raw {
    /// A record of this type; the payload is in the caller's buffer.
    Type(u8),
    /// Clean end of file before a type byte.
    Eof,
    /// A malformed record; the warning Postfix logs for it.
    Bad(String),
}

/// A buffered reader at an explicit position, on top of positioned reads, so that several
/// readers (and the done-marker's positioned writes) can share one descriptor.
struct Cursor {
    pos: u64,
    /// Where the record last read by `get_raw` began.
    record_start: u64,
    buf: Vec<u8>,
    /// File offset of buf[0].
    buf_start: u64,
}

impl Cursor {
    const CHUNK: usize = 16 * 1024;

    fn new(pos: u64) -> Cursor {
        Cursor {
            pos,
            record_start: pos,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    fn seek(&mut self, pos: u64) {
        self.pos = pos;
    }

    /// Make bytes at `pos` available; false at end of file.
    fn fill(&mut self, file: &File) -> io::Result<bool> {
        let end = self.buf_start + self.buf.len() as u64;
        if self.pos >= self.buf_start && self.pos < end {
            return Ok(true);
        }
        self.buf.resize(Self::CHUNK, 0);
        self.buf_start = self.pos;
        loop {
            match file.read_at(&mut self.buf, self.pos) {
                Ok(n) => {
                    self.buf.truncate(n);
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.clear();
                    return Err(e);
                }
            }
        }
    }

    fn getc(&mut self, file: &File) -> io::Result<Option<u8>> {
        if !self.fill(file)? {
            return Ok(None);
        }
        let b = self.buf[(self.pos - self.buf_start) as usize];
        self.pos += 1;
        Ok(Some(b))
    }

    /// Append up to `len` bytes to `out`; returns how many were available before EOF.
    /// Memory grows only with data actually present, whatever length a record claims.
    fn read_into(&mut self, file: &File, len: usize, out: &mut Vec<u8>) -> io::Result<usize> {
        let mut got = 0;
        while got < len {
            if !self.fill(file)? {
                break;
            }
            let at = (self.pos - self.buf_start) as usize;
            let n = (self.buf.len() - at).min(len - got);
            out.extend_from_slice(&self.buf[at..at + n]);
            self.pos += n as u64;
            got += n;
        }
        Ok(got)
    }
}

/// Read one record without any transparency (Postfix's rec_get_raw with no flags).
/// `maxsize` 0 means no limit beyond the four length bytes. `name` is the file name for
/// warnings.
fn get_raw(
    file: &File,
    cur: &mut Cursor,
    buf: &mut Vec<u8>,
    maxsize: usize,
    name: &str,
) -> io::Result<Raw> {
    buf.clear();
    cur.record_start = cur.pos;
    let Some(rec_type) = cur.getc(file)? else {
        return Ok(Raw::Eof);
    };
    let mut len: usize = 0;
    let mut shift: u32 = 0;
    loop {
        if shift + 7 >= LENGTH_BITS {
            return Ok(Raw::Bad(format!(
                "{name}: too many length bits, record type {rec_type}"
            )));
        }
        let Some(b) = cur.getc(file)? else {
            return Ok(Raw::Bad(format!(
                "{name}: unexpected EOF reading length, record type {rec_type}"
            )));
        };
        len |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    if maxsize > 0 && len > maxsize {
        return Ok(Raw::Bad(format!(
            "{name}: illegal length {len}, record type {rec_type}"
        )));
    }
    if cur.read_into(file, len, buf)? != len {
        return Ok(Raw::Bad(format!(
            "{name}: unexpected EOF in data, record type {rec_type} length {len}"
        )));
    }
    Ok(Raw::Type(rec_type))
}

/// Pointer-following state, kept per reader like Postfix keeps it per file.
#[derive(Debug, Default, Clone)]
struct JumpState {
    saved_offset: u64,
    reverse_count: u32,
}

/// Follow a pointer record: `None` to carry on reading, `Some(warning)` when the
/// pointer is unusable.
fn follow_ptr(cur: &mut Cursor, data: &[u8], jumps: &mut JumpState, name: &str) -> Option<String> {
    // The payload is read like a C string: it ends at the first NUL.
    let text = data.split(|&b| b == 0).next().unwrap_or(&[]);
    let start = text
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .unwrap_or(text.len());
    let digits = &text[start..];
    let mut offset: u64 = 0;
    for &b in digits {
        let parsed = if b.is_ascii_digit() {
            offset
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .filter(|&v| v <= i64::MAX as u64)
        } else {
            None
        };
        match parsed {
            Some(v) => offset = v,
            None => {
                return Some(format!(
                    "{name}: malformed pointer record value: {}",
                    String::from_utf8_lossy(digits)
                ));
            }
        }
    }
    if offset == 0 {
        // A placeholder the cleanup server left for later edits.
        return None;
    }
    if offset <= jumps.saved_offset {
        jumps.reverse_count += 1;
        if jumps.reverse_count > REVERSE_JUMP_LIMIT {
            return Some(format!("{name}: too many reverse jump records"));
        }
    }
    cur.seek(offset);
    jumps.saved_offset = offset;
    None
}

/// Read one record the way Postfix's rec_get() does by default: pointer records are
/// followed and padding is skipped, so callers never see `p` or `w`.
fn get(
    file: &File,
    cur: &mut Cursor,
    buf: &mut Vec<u8>,
    maxsize: usize,
    jumps: &mut JumpState,
    name: &str,
) -> io::Result<Raw> {
    loop {
        match get_raw(file, cur, buf, maxsize, name)? {
            Raw::Type(rec::PTR) => {
                if let Some(warning) = follow_ptr(cur, buf, jumps, name) {
                    return Ok(Raw::Bad(warning));
                }
            }
            Raw::Type(rec::DTXT) => {}
            other => return Ok(other),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The size record
// ---------------------------------------------------------------------------------------

/// The `C` record's fields. The queue manager passes `message_size()` as the delivery
/// request's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SizeRecord {
    /// Bytes of content records, from the data offset to the `X` record.
    pub data_size: i64,
    /// Offset of the first content record (just after `M`).
    pub data_offset: i64,
    pub rcpt_count: i64,
    /// Queue manager hint flags.
    pub qmgr_flags: i64,
    /// Content length (Postfix 2.4 and later); 0 in older files.
    pub cont_length: i64,
    pub smtputf8: i64,
}

impl SizeRecord {
    /// Parse the payload; `None` unless at least three numbers are present and the data
    /// offset and size are positive, as the queue manager requires.
    pub fn parse(text: &[u8]) -> Option<SizeRecord> {
        let text = std::str::from_utf8(text).ok()?;
        let mut fields = [0i64; 6];
        let mut count = 0;
        for (slot, word) in fields.iter_mut().zip(text.split_ascii_whitespace()) {
            match word.parse::<i64>() {
                Ok(v) => *slot = v,
                Err(_) => break,
            }
            count += 1;
        }
        let [
            data_size,
            data_offset,
            rcpt_count,
            qmgr_flags,
            cont_length,
            smtputf8,
        ] = fields;
        if count < 3 || data_offset <= 0 || data_size <= 0 || cont_length < 0 {
            return None;
        }
        Some(SizeRecord {
            data_size,
            data_offset,
            rcpt_count,
            qmgr_flags,
            cont_length,
            smtputf8,
        })
    }

    /// The payload as the cleanup server writes it (six right-aligned 15-wide fields).
    pub fn format(&self) -> String {
        format!(
            "{:15} {:15} {:15} {:15} {:15} {:15}",
            self.data_size,
            self.data_offset,
            self.rcpt_count,
            self.qmgr_flags,
            self.cont_length,
            self.smtputf8
        )
    }

    /// What the queue manager sends as the request's `size`: the content length, or the
    /// data size for files written before Postfix 2.4.
    pub fn message_size(&self) -> i64 {
        if self.cont_length == 0 {
            self.data_size
        } else {
            self.cont_length
        }
    }
}

// ---------------------------------------------------------------------------------------
// The open file
// ---------------------------------------------------------------------------------------

/// A queue file opened for delivery: read-write, shared-locked.
#[derive(Debug)]
pub struct QueueFile {
    file: File,
    path: PathBuf,
    name: String,
    queue_id: String,
}

impl QueueFile {
    /// Open with Postfix's default hashing (`deferred` and `defer`, depth 1).
    pub fn open(
        queue_dir: &Path,
        queue_name: &str,
        queue_id: &str,
    ) -> Result<QueueFile, OpenError> {
        QueueFile::open_with(queue_dir, &QueueLayout::default(), queue_name, queue_id)
    }

    /// Open `queue_dir/<queue_name>/<hash dirs>/<queue_id>` as a delivery agent does: check
    /// the name and id, that the path is a regular file with the ready mode (owner rwx),
    /// open it read-write and take a shared, non-blocking `flock()` lock. Warnings Postfix
    /// logs on the way are logged here.
    pub fn open_with(
        queue_dir: &Path,
        layout: &QueueLayout,
        queue_name: &str,
        queue_id: &str,
    ) -> Result<QueueFile, OpenError> {
        if !queue_name_ok(queue_name) {
            log::warn(&format!("bad mail queue name: {queue_name}"));
            return Err(OpenError::Rejected);
        }
        let Some(name) = layout.relative_path(queue_name, queue_id) else {
            return Err(OpenError::Rejected);
        };
        let path = queue_dir.join(&name);

        // The checks Postfix makes before it opens the file (lstat: a symlink is refused).
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    log::warn(&format!("{name}: {}", strerror(&e)));
                }
                return Err(OpenError::Rejected);
            }
        };
        if !meta.file_type().is_file() {
            log::warn(&format!("{name}: uid {}: not a regular file", meta.uid()));
            return Err(OpenError::Rejected);
        }
        if meta.mode() & 0o700 != MODE_READY {
            return Err(OpenError::Rejected);
        }
        if meta.nlink() > 1 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            if meta.ctime() < now - 60 {
                log::warn(&format!(
                    "{name}: uid {}: file has {} links",
                    meta.uid(),
                    meta.nlink()
                ));
            }
        }

        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                let text = format!("open {queue_name} {queue_id}: {}", strerror(&e));
                if e.kind() == io::ErrorKind::NotFound {
                    log::warn(&text);
                    return Err(OpenError::Rejected);
                }
                return Err(OpenError::Fatal(FatalError(text)));
            }
        };
        // The same test on what was actually opened, in case the name changed meanwhile.
        match file.metadata() {
            Ok(m) if m.file_type().is_file() => {}
            Ok(m) => {
                log::warn(&format!("{name}: uid {}: not a regular file", m.uid()));
                return Err(OpenError::Rejected);
            }
            Err(e) => {
                return Err(OpenError::Fatal(FatalError(format!(
                    "open {queue_name} {queue_id}: {}",
                    strerror(&e)
                ))));
            }
        }
        // SAFETY: flock() on a descriptor this function owns; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(OpenError::Fatal(FatalError(format!(
                "shared lock {name}: {}",
                strerror(&e)
            ))));
        }
        Ok(QueueFile {
            file,
            path,
            name,
            queue_id: queue_id.to_string(),
        })
    }

    /// The full path that was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name Postfix uses for this file in warnings, relative to the queue directory
    /// (e.g. `active/B42DE99C706`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn queue_id(&self) -> &str {
        &self.queue_id
    }

    /// Read the `C` record at the start of the file (for checking the request's size;
    /// smtp(8) itself never reads it). Nothing is logged.
    pub fn size_record(&self) -> Result<SizeRecord, Error> {
        let mut cur = Cursor::new(0);
        let mut buf = Vec::new();
        let mut jumps = JumpState::default();
        let raw = get(&self.file, &mut cur, &mut buf, 0, &mut jumps, &self.name)
            .map_err(|_| Error::temp("4.3.0", "queue file read error"))?;
        match raw {
            Raw::Type(rec::SIZE) => SizeRecord::parse(&buf),
            _ => None,
        }
        .ok_or_else(|| Error::corrupt("unreadable mail queue entry"))
    }

    /// A content reader starting at `data_offset` (the request's offset). It has its own
    /// position, so several can be used alongside each other and alongside `mark_done`.
    pub fn content(&self, data_offset: u64) -> Result<QueueContent, FatalError> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| FatalError(format!("dup queue file {}: {}", self.name, strerror(&e))))?;
        Ok(QueueContent {
            file,
            name: self.name.clone(),
            queue_id: self.queue_id.clone(),
            data_offset,
            cur: Cursor::new(data_offset),
            jumps: JumpState::default(),
            state: ReadState::Reading,
            extra_offset: None,
        })
    }

    /// Record a delivered recipient (Postfix's deliver_completed()): overwrite the type byte
    /// of the record at `offset` with `D`. The queue manager then skips it on a later pass
    /// and deletes the file when no recipients are left. Like Postfix, the old byte is not
    /// checked and there is no fsync: the write goes straight to the file.
    pub fn mark_done(&self, offset: u64) -> Result<(), FatalError> {
        if offset == 0 || offset > i64::MAX as u64 {
            return Err(FatalError(format!(
                "deliver_completed: bad offset {offset}"
            )));
        }
        loop {
            match self.file.write_at(&[rec::DONE], offset) {
                Ok(1) => return Ok(()),
                Ok(_) => {
                    return Err(FatalError(format!(
                        "update queue file {}: short write",
                        self.name
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn(&format!("{}: seek or write error", self.name));
                    return Err(FatalError(format!(
                        "update queue file {}: {}",
                        self.name,
                        strerror(&e)
                    )));
                }
            }
        }
    }

    /// Give up on a damaged file (Postfix's mark_corrupt()): log the warning and make the
    /// file owner-read-only; the queue manager moves such files to `corrupt/`. The request
    /// is then answered with a deferral. Postfix switches to the mail owner first if it is
    /// not running as it; a delivery agent under master(8) always is.
    pub fn mark_corrupt(&self) -> Result<(), FatalError> {
        log::warn(&format!("corrupted queue file: {}", self.name));
        let perms = std::fs::Permissions::from_mode(MODE_CORRUPT);
        self.file.set_permissions(perms).map_err(|e| {
            FatalError(format!(
                "mark_corrupt: fchmod {}: {}",
                self.name,
                strerror(&e)
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------
// Content reader
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadState {
    Reading,
    /// The `X` record was reached.
    Done,
    /// The content is damaged (or unreadable); this is returned again until a rewind.
    Failed(Error),
}

/// The message content of a queue file, as `N`/`L` records up to `X`.
pub struct QueueContent {
    file: File,
    name: String,
    queue_id: String,
    data_offset: u64,
    cur: Cursor,
    jumps: JumpState,
    state: ReadState,
    extra_offset: Option<u64>,
}

impl QueueContent {
    /// Another reader over the same file, from the start of the content.
    pub fn share(&self) -> Result<QueueContent, FatalError> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| FatalError(format!("dup queue file {}: {}", self.name, strerror(&e))))?;
        Ok(QueueContent {
            file,
            name: self.name.clone(),
            queue_id: self.queue_id.clone(),
            data_offset: self.data_offset,
            cur: Cursor::new(self.data_offset),
            jumps: JumpState::default(),
            state: ReadState::Reading,
            extra_offset: None,
        })
    }

    /// Where the `X` record was found, once the reader got there. In a file without
    /// pointer jumps out of the content, `extra_offset - data_offset` is the `C` record's
    /// data size (and content length).
    pub fn extra_offset(&self) -> Option<u64> {
        self.extra_offset
    }

    /// The content's size as the `C` record would state it, once the end was reached.
    pub fn data_size(&self) -> Option<u64> {
        self.extra_offset
            .map(|x| x.saturating_sub(self.data_offset))
    }

    fn fail(&mut self, rec_type: i32, warning: Option<String>) -> Error {
        if let Some(w) = warning {
            log::warn(&w);
        }
        log::warn(&format!(
            "{}: bad record type: {rec_type} in message content",
            self.queue_id
        ));
        // smtp(8) bounces the message with this status and text, then marks the file
        // corrupt if the bounce could be recorded.
        let mut err = Error::corrupt("unreadable mail queue entry");
        err.dsn.status = "5.3.0".into();
        self.state = ReadState::Failed(err.clone());
        err
    }
}

/// Record type numbers for the "bad record type" warning, as the record layer returns them.
const REC_TYPE_EOF: i32 = -1;
const REC_TYPE_ERROR: i32 = -2;

impl Content for QueueContent {
    fn rewind(&mut self) -> Result<(), Error> {
        // Postfix keeps the pointer-loop count per file for the life of the process; a
        // loop shows within one pass, so each pass starts afresh here and many passes
        // over a file with many edited headers cannot add up to a false alarm.
        self.jumps = JumpState::default();
        self.cur.seek(self.data_offset);
        self.state = ReadState::Reading;
        Ok(())
    }

    fn next_record(&mut self, buf: &mut Vec<u8>) -> Result<Option<Record>, Error> {
        buf.clear();
        match &self.state {
            ReadState::Reading => {}
            ReadState::Done => return Ok(None),
            ReadState::Failed(e) => return Err(e.clone()),
        }
        let raw = match get(
            &self.file,
            &mut self.cur,
            buf,
            0,
            &mut self.jumps,
            &self.name,
        ) {
            Ok(r) => r,
            Err(e) => {
                buf.clear();
                // Postfix exits with "fatal: queue file read error" here; we defer.
                let err = Error::temp("4.3.0", "queue file read error");
                log::warn(&format!("{}: {}", self.name, strerror(&e)));
                self.state = ReadState::Failed(err.clone());
                return Err(err);
            }
        };
        match raw {
            Raw::Type(rec::NORM) => Ok(Some(Record::Line)),
            Raw::Type(rec::CONT) => Ok(Some(Record::Partial)),
            Raw::Type(rec::XTRA) => {
                buf.clear();
                self.extra_offset = Some(self.cur.record_start);
                self.state = ReadState::Done;
                Ok(None)
            }
            Raw::Type(t) => {
                buf.clear();
                Err(self.fail(i32::from(t), None))
            }
            Raw::Eof => Err(self.fail(REC_TYPE_EOF, None)),
            Raw::Bad(w) => {
                buf.clear();
                Err(self.fail(REC_TYPE_ERROR, Some(w)))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writing queue files (tests and tools)
// ---------------------------------------------------------------------------------------

/// One recipient for [`QueueFileBuilder`].
#[derive(Debug, Clone, Default)]
pub struct BuilderRecipient {
    pub address: String,
    /// Original recipient (`O` record), empty for none.
    pub orig: String,
    /// DSN NOTIFY bits (crate::request::notify), 0 for none.
    pub notify: u32,
    /// DSN ORCPT ("rfc822;addr"), empty for none.
    pub orcpt: String,
}

/// Writes a queue file the way the cleanup server lays it out, for tests and tools.
#[derive(Debug, Clone, Default)]
pub struct QueueFileBuilder {
    pub arrival_sec: i64,
    pub arrival_usec: i64,
    pub sender: String,
    pub envid: String,
    /// DSN RET flags as Postfix stores them (1 FULL, 2 HDRS), 0 for none.
    pub ret_flags: u32,
    /// Extra named attributes written before the sender.
    pub attrs: Vec<(String, String)>,
    pub recipients: Vec<BuilderRecipient>,
    /// Content records (type, payload), normally `N` and `L`.
    pub content: Vec<(u8, Vec<u8>)>,
    /// Lay the file out as cleanup does when milters are configured: padding after a short
    /// first header, placeholder pointers after the headers, after the body and after `X`.
    pub milter_layout: bool,
    /// Records written after `X` (extracted envelope), before `E`.
    pub extracted: Vec<(u8, Vec<u8>)>,
}

/// A file produced by [`QueueFileBuilder::build`].
#[derive(Debug, Clone)]
pub struct BuiltQueueFile {
    pub bytes: Vec<u8>,
    pub data_offset: u64,
    /// Offset of each recipient's `R` record, in order.
    pub rcpt_offsets: Vec<u64>,
    pub size: SizeRecord,
}

impl QueueFileBuilder {
    pub fn new(sender: &str) -> QueueFileBuilder {
        QueueFileBuilder {
            arrival_sec: 1_700_000_000,
            arrival_usec: 123_456,
            sender: sender.to_string(),
            ..Default::default()
        }
    }

    pub fn recipient(mut self, address: &str) -> QueueFileBuilder {
        self.recipients.push(BuilderRecipient {
            address: address.to_string(),
            ..Default::default()
        });
        self
    }

    /// Split a message into content records as the cleanup server does: one `N` per line
    /// (the line end, LF or CRLF, removed), long lines as `L` pieces of 2048 bytes ending
    /// with an `N`. Text after the last line end becomes a final `N` record.
    pub fn body(mut self, message: &[u8]) -> QueueFileBuilder {
        let mut lines: Vec<&[u8]> = message.split(|&b| b == b'\n').collect();
        if message.ends_with(b"\n") {
            lines.pop();
        }
        for line in lines {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let mut rest = line;
            while rest.len() > BUILDER_LINE_LIMIT {
                self.content
                    .push((rec::CONT, rest[..BUILDER_LINE_LIMIT].to_vec()));
                rest = &rest[BUILDER_LINE_LIMIT..];
            }
            self.content.push((rec::NORM, rest.to_vec()));
        }
        self
    }

    pub fn build(&self) -> BuiltQueueFile {
        let mut out = Vec::new();
        // Placeholder size record, rewritten below (the payload has a fixed width).
        put_record(
            &mut out,
            rec::SIZE,
            SizeRecord::default().format().as_bytes(),
        );
        let time = format!("{} {}", self.arrival_sec, self.arrival_usec);
        put_record(&mut out, rec::TIME, time.as_bytes());
        let ctime = format!("create_time={}", self.arrival_sec);
        put_record(&mut out, rec::ATTR, ctime.as_bytes());
        if !self.envid.is_empty() {
            put_record(
                &mut out,
                rec::ATTR,
                format!("envelope_id={}", self.envid).as_bytes(),
            );
        }
        if self.ret_flags != 0 {
            put_record(
                &mut out,
                rec::ATTR,
                format!("ret_flags={}", self.ret_flags).as_bytes(),
            );
        }
        put_record(&mut out, rec::FROM, self.sender.as_bytes());
        if self.milter_layout {
            // Room to patch in a different sender later.
            put_record(&mut out, rec::PTR, b"0");
        }
        for (k, v) in &self.attrs {
            put_record(&mut out, rec::ATTR, format!("{k}={v}").as_bytes());
        }
        let mut rcpt_offsets = Vec::new();
        for r in &self.recipients {
            if r.notify != 0 {
                put_record(
                    &mut out,
                    rec::ATTR,
                    format!("notify_flags={}", r.notify).as_bytes(),
                );
            }
            if !r.orcpt.is_empty() {
                put_record(
                    &mut out,
                    rec::ATTR,
                    format!("dsn_orig_rcpt={}", r.orcpt).as_bytes(),
                );
            }
            if !r.orig.is_empty() {
                put_record(&mut out, rec::ORCP, r.orig.as_bytes());
            }
            rcpt_offsets.push(out.len() as u64);
            put_record(&mut out, rec::RCPT, r.address.as_bytes());
        }
        if self.milter_layout {
            put_record(&mut out, rec::PTR, format!("{:PTR_WIDTH$}", 0).as_bytes());
        }
        put_record(&mut out, rec::MESG, b"");
        let data_offset = out.len() as u64;
        let header_end = self
            .content
            .iter()
            .position(|(t, d)| *t == rec::NORM && d.is_empty());
        for (i, (t, d)) in self.content.iter().enumerate() {
            if self.milter_layout && Some(i) == header_end {
                put_record(&mut out, rec::PTR, format!("{:PTR_WIDTH$}", 0).as_bytes());
            }
            put_record(&mut out, *t, d);
            // The first line of each header is padded so that a pointer record can later
            // replace it in place.
            let in_headers = header_end.is_none_or(|end| i < end);
            let header_start = i == 0 || self.content[i - 1].0 == rec::NORM;
            if self.milter_layout
                && in_headers
                && header_start
                && *t == rec::NORM
                && !d.starts_with(b" ")
                && !d.starts_with(b"\t")
                && d.len() < PTR_WIDTH
            {
                let pad = (PTR_WIDTH - d.len()).saturating_sub(2).max(1);
                put_record(&mut out, rec::DTXT, format!("{:>pad$}", "0").as_bytes());
            }
        }
        if self.milter_layout {
            put_record(&mut out, rec::PTR, format!("{:PTR_WIDTH$}", 0).as_bytes());
        }
        let extra_offset = out.len() as u64;
        put_record(&mut out, rec::XTRA, b"");
        for (t, d) in &self.extracted {
            put_record(&mut out, *t, d);
        }
        if self.milter_layout {
            put_record(&mut out, rec::PTR, format!("{:PTR_WIDTH$}", 0).as_bytes());
        }
        put_record(&mut out, rec::END, b"");

        let data_size = (extra_offset - data_offset) as i64;
        let size = SizeRecord {
            data_size,
            data_offset: data_offset as i64,
            rcpt_count: self.recipients.len() as i64,
            qmgr_flags: 0,
            cont_length: data_size,
            smtputf8: 0,
        };
        let text = size.format();
        // Type byte, one length byte (the payload is 95 bytes), payload.
        if text.len() == SIZE_PAYLOAD
            && let Some(slot) = out.get_mut(2..2 + text.len())
        {
            slot.copy_from_slice(text.as_bytes());
        }
        BuiltQueueFile {
            bytes: out,
            data_offset,
            rcpt_offsets,
            size,
        }
    }
}

impl BuiltQueueFile {
    /// Write the file as `dir/<queue name>/<hash dirs>/<id>` with the ready mode, creating
    /// directories as needed; returns the path.
    pub fn install(
        &self,
        queue_dir: &Path,
        layout: &QueueLayout,
        queue_name: &str,
        queue_id: &str,
    ) -> io::Result<PathBuf> {
        let rel = layout
            .relative_path(queue_name, queue_id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad queue name or id"))?;
        let path = queue_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &self.bytes)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(MODE_READY))?;
        Ok(path)
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
