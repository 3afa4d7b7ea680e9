//! Per-process set-up for what smtp(8) changes in the mail it sends: smtp_generic_maps
//! (envelope and header addresses) and the restricted header/body checks
//! (smtp_header_checks, smtp_mime_header_checks, smtp_nested_header_checks,
//! smtp_body_checks). The message pass itself is in `message::filter`.
//!
//! Tables are opened once per process and used under a Mutex (their handles are not
//! thread-safe), as in `security`. A lookup that fails never bounces mail: Postfix exits
//! (generic maps) or drops the connection with "local data error" (checks), and either way
//! the mail is deferred; Outpost defers it with the same 4.3.0 text.

use crate::config::Config;
use crate::log;
use crate::table::{AddrOptions, Maps, MapsOptions, TableError};
use crate::tok822::{self, Tree};
use std::sync::Mutex;

/// Which header section a header belongs to (mime_state's header classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderClass {
    Primary,
    /// After a multipart boundary (also: any MIME header, e.g. Content-Type, anywhere).
    Multipart,
    /// The headers of an attached message/rfc822.
    Nested,
}

/// One set of header or body checks: the tables and the parameter name used in messages.
pub struct Checks {
    maps: Mutex<Maps>,
    pub title: String,
}

impl Checks {
    pub fn find(&self, key: &str) -> Result<Option<String>, TableError> {
        self.maps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .find(key)
    }
}

/// What a header or body check decided for one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send the line (possibly replaced by this text).
    Keep(Option<String>),
    /// Leave the line out.
    Drop,
}

pub struct Rewrite {
    generic: Option<Mutex<Maps>>,
    generic_title: String,
    /// propagate_unmatched_extensions includes "generic".
    propagate: bool,
    addr_opts: AddrOptions,
    local_domains: Vec<String>,
    myorigin: String,
    mydomain: String,
    append_dot_mydomain: bool,
    /// Header checks by class: primary, MIME, nested.
    headers: [Option<Checks>; 3],
    body: Option<Checks>,
    pub header_limit: usize,
    pub nesting_limit: i64,
    pub boundary_limit: usize,
}

fn open(cfg: &Config, param: &str, opts: &MapsOptions) -> Result<Option<Mutex<Maps>>, String> {
    let list = cfg.get(param);
    if list.trim().is_empty() {
        return Ok(None);
    }
    let title = cfg.name_for(param);
    let maps = Maps::open(&title, &list, opts).map_err(|e| format!("{title}: {e}"))?;
    // Postfix logs a table that cannot be opened; its lookups then fail (mail defers).
    for e in maps.open_errors() {
        log::warn(&e.to_string());
    }
    for w in maps.warnings() {
        log::warn(&w);
    }
    Ok(Some(Mutex::new(maps)))
}

fn checks(cfg: &Config, param: &str, opts: &MapsOptions) -> Result<Option<Checks>, String> {
    Ok(open(cfg, param, opts)?.map(|maps| Checks {
        maps,
        title: cfg.name_for(param),
    }))
}

/// is_header(): a header name (printable ASCII, no colon), optional blanks, then ':'.
/// Returns the length of the name.
pub fn header_name_len(text: &[u8]) -> usize {
    let mut len = 0;
    let mut after_space = false;
    for &c in text {
        match c {
            b':' => return if len > 0 { len } else { 0 },
            b' ' | b'\t' => {
                if len == 0 {
                    return 0;
                }
                after_space = true;
            }
            c if c == 0 || !c.is_ascii() || c.is_ascii_control() || after_space => return 0,
            _ => len += 1,
        }
    }
    0
}

/// Headers that hold addresses (HDR_OPT_SENDER or HDR_OPT_RECIP in header_opts.c).
pub const ADDRESS_HEADERS: &[&str] = &[
    "apparently-to",
    "bcc",
    "cc",
    "disposition-notification-to",
    "errors-to",
    "from",
    "mail-followup-to",
    "reply-to",
    "resent-bcc",
    "resent-cc",
    "resent-from",
    "resent-reply-to",
    "resent-sender",
    "resent-to",
    "return-path",
    "return-receipt-to",
    "sender",
    "to",
];

/// Headers that header_opts.c marks as MIME headers.
const MIME_HEADERS: &[&str] = &[
    "content-description",
    "content-disposition",
    "content-id",
    "content-transfer-encoding",
    "content-type",
    "mime-version",
];

/// The known header a buffer starts with (header_opts_find: name up to blanks or ':',
/// case-insensitive), as its lowercased name.
pub fn known_header(buf: &[u8]) -> Option<String> {
    let end = buf
        .iter()
        .position(|&c| c == b':' || c == b' ' || c == b'\t')
        .unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let known = ADDRESS_HEADERS.contains(&name.as_str())
        || MIME_HEADERS.contains(&name.as_str())
        || matches!(
            name.as_str(),
            "content-length"
                | "delivered-to"
                | "date"
                | "message-id"
                | "received"
                | "resent-date"
                | "resent-message-id"
        );
    known.then_some(name)
}

pub fn is_mime_header(name: &str) -> bool {
    MIME_HEADERS.contains(&name)
}

impl Rewrite {
    /// Read the configuration. `Err`: a fatal configuration error.
    pub fn from_config(cfg: &Config) -> Result<Rewrite, String> {
        let utf8 = cfg.bool("smtputf8_enable");
        let generic = open(cfg, "smtp_generic_maps", &MapsOptions { utf8, fold: true })?;
        // Header and body checks are opened without key folding (DICT_FLAG_LOCK only).
        let plain = MapsOptions { utf8, fold: false };
        let headers = [
            checks(cfg, "smtp_header_checks", &plain)?,
            checks(cfg, "smtp_mime_header_checks", &plain)?,
            checks(cfg, "smtp_nested_header_checks", &plain)?,
        ];
        let body = checks(cfg, "smtp_body_checks", &plain)?;
        let propagate = cfg
            .list("propagate_unmatched_extensions")
            .iter()
            .any(|w| w.eq_ignore_ascii_case("generic"));
        let mut local_domains: Vec<String> = cfg
            .list("mydestination")
            .into_iter()
            .filter(|d| !d.contains(':') && !d.starts_with('/'))
            .collect();
        local_domains.push(cfg.get("myorigin"));
        // Postfix 3.7: yes below compatibility level 1, else no.
        let append_dot_mydomain = match cfg.raw("append_dot_mydomain") {
            Some(v) if !v.contains('$') => v.trim().eq_ignore_ascii_case("yes"),
            _ => {
                let level = cfg.get("compatibility_level");
                let major = level.split('.').next().unwrap_or("0");
                major.trim().parse::<u32>().unwrap_or(0) < 1
            }
        };
        Ok(Rewrite {
            generic,
            generic_title: cfg.name_for("smtp_generic_maps"),
            propagate,
            addr_opts: AddrOptions {
                recipient_delimiter: cfg.get("recipient_delimiter"),
                double_bounce_sender: cfg.get("double_bounce_sender"),
                owner_request_special: cfg.bool("owner_request_special"),
            },
            local_domains,
            myorigin: cfg.get("myorigin"),
            mydomain: cfg.get("mydomain"),
            append_dot_mydomain,
            headers,
            body,
            header_limit: usize::try_from(cfg.int("header_size_limit")).unwrap_or(102400),
            nesting_limit: cfg.int("mime_nesting_limit"),
            boundary_limit: usize::try_from(cfg.int("mime_boundary_length_limit")).unwrap_or(2048),
        })
    }

    /// Nothing configured: the message goes out unparsed.
    pub fn is_empty(&self) -> bool {
        self.generic.is_none() && !self.any_checks()
    }

    pub fn has_generic(&self) -> bool {
        self.generic.is_some()
    }

    /// Header or body checks are configured (they need the MIME structure).
    pub fn any_checks(&self) -> bool {
        self.headers.iter().any(Option::is_some) || self.body.is_some()
    }

    pub fn header_checks_on(&self) -> bool {
        self.headers.iter().any(Option::is_some)
    }

    pub fn body_checks_on(&self) -> bool {
        self.body.is_some()
    }

    /// smtp_rewrite_generic_internal(): an envelope address through smtp_generic_maps
    /// (internal form in and out; the null sender is never mapped). `Err` is Postfix's
    /// fatal "map lookup problem" text.
    pub fn envelope(&self, addr: &str) -> Result<String, String> {
        if addr.is_empty() {
            return Ok(String::new());
        }
        Ok(self.map11(addr)?.unwrap_or_else(|| addr.to_string()))
    }

    /// smtp_map11_internal(): `Some(new)` when the table has the address.
    fn map11(&self, addr: &str) -> Result<Option<String>, String> {
        let Some(maps) = &self.generic else {
            return Ok(None);
        };
        let problem = || format!("{} map lookup problem for {addr}", self.generic_title);
        let found = {
            let m = maps.lock().unwrap_or_else(|p| p.into_inner());
            let local = |d: &str| -> Result<bool, TableError> {
                Ok(self.local_domains.iter().any(|l| l.eq_ignore_ascii_case(d)))
            };
            m.find_addr(addr, &self.addr_opts, &mut { local })
        };
        let found = match found {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(e) => {
                log::warn(&e.to_string());
                return Err(problem());
            }
        };
        // mail_addr_map(): "@domain" keeps the original local part (without extension).
        let mut value = found.value.clone();
        if value.starts_with('@') {
            let mut user = match addr.rfind('@') {
                Some(at) => addr[..at].to_string(),
                None => addr.to_string(),
            };
            if let Some(ext) = &found.extension
                && let Some(bare) = user.strip_suffix(ext.as_str())
            {
                user = bare.to_string();
            }
            value = crate::table::quote_822_local(&format!("{user}{value}"), false);
        }
        let ext = if self.propagate {
            found.extension.as_deref()
        } else {
            None
        };
        let list = self.crunch(&value, ext);
        match list.first() {
            None => {
                log::warn(&format!(
                    "{} lookup of {addr} returns non-address result \"{value}\"",
                    self.generic_title
                ));
                Err(problem())
            }
            Some(first) => {
                if list.len() > 1 {
                    log::warn(&format!(
                        "multi-valued {} result for {addr}",
                        self.generic_title
                    ));
                }
                Ok(Some(first.clone()))
            }
        }
    }

    /// mail_addr_crunch(): the addresses in a table result, canonical and internal form,
    /// each with the unmatched extension put back.
    fn crunch(&self, value: &str, ext: Option<&str>) -> Vec<String> {
        let value = if value.is_empty() || value == "<>" {
            "\"\""
        } else {
            value
        };
        let tree = Tree::parse(value.as_bytes());
        let mut out = Vec::new();
        for a in tree.addresses() {
            let external = tree.address_external(a);
            let canon = self.canon_external(&String::from_utf8_lossy(&external));
            let mut internal = tok822::unquote_822_local(&canon);
            if let Some(ext) = ext {
                match internal.rfind('@') {
                    Some(at) => internal.insert_str(at, ext),
                    None => internal.push_str(ext),
                }
            }
            out.push(internal);
        }
        out
    }

    /// canon_addr_external() as trivial-rewrite's "local" context does it for the common
    /// cases: a bare local part gets @$myorigin, a dotless domain gets .$mydomain when
    /// append_dot_mydomain is on.
    fn canon_external(&self, addr: &str) -> String {
        if addr.is_empty() || addr == "\"\"" {
            return addr.to_string();
        }
        match last_unquoted_at(addr) {
            None => {
                if self.myorigin.is_empty() {
                    addr.to_string()
                } else {
                    format!("{addr}@{}", self.myorigin)
                }
            }
            Some(at) => {
                let domain = &addr[at + 1..];
                let domain = domain.strip_suffix('.').unwrap_or(domain);
                let mut out = format!("{}@{domain}", &addr[..at]);
                if self.append_dot_mydomain
                    && !domain.is_empty()
                    && !domain.contains('.')
                    && !domain.starts_with('[')
                    && !self.mydomain.is_empty()
                {
                    out.push('.');
                    out.push_str(&self.mydomain);
                }
                out
            }
        }
    }

    /// Rewrite the addresses of one primary header (smtp_header_rewrite's generic part).
    /// `name_len` is the length of the header name. Returns the new header text, with
    /// continuation lines, when some address changed.
    pub fn header_addresses(
        &self,
        header: &[u8],
        name_len: usize,
    ) -> Result<Option<Vec<u8>>, String> {
        let value = header.get(name_len + 1..).unwrap_or_default();
        let mut tree = Tree::parse(value);
        let mut changed = false;
        for a in tree.addresses() {
            let internal = String::from_utf8_lossy(&tree.address_text(a)).into_owned();
            let new = match self.map11(&internal)? {
                Some(n) => {
                    changed = true;
                    n
                }
                None => internal,
            };
            let ext = crate::table::quote_822_local(&new, false);
            tree.set_address(a, ext.as_bytes());
        }
        if !changed {
            return Ok(None);
        }
        let mut buf = header[..name_len.min(header.len())].to_vec();
        buf.extend_from_slice(b": ");
        tree.externalize_head(&mut buf, &mut |w| log::warn(&w));
        Ok(Some(refold(&buf)))
    }

    /// The header checks that apply to a header of this class.
    pub fn header_checks(&self, class: HeaderClass) -> Option<&Checks> {
        let i = match class {
            HeaderClass::Primary => 0,
            HeaderClass::Multipart => 1,
            HeaderClass::Nested => 2,
        };
        self.headers[i].as_ref()
    }

    pub fn body_checks(&self) -> Option<&Checks> {
        self.body.as_ref()
    }
}

fn last_unquoted_at(addr: &str) -> Option<usize> {
    let mut in_quote = false;
    let mut at = None;
    let mut esc = false;
    for (i, c) in addr.char_indices() {
        if esc {
            esc = false;
            continue;
        }
        match c {
            '\\' => esc = true,
            '"' => in_quote = !in_quote,
            '@' if !in_quote => at = Some(i),
            _ => {}
        }
    }
    at
}

/// A rewritten address list has one address per line: join lines while the result stays
/// under 70 columns, and indent continuation lines with a tab (cleanup's folding, which
/// smtp(8) reuses).
fn refold(buf: &[u8]) -> Vec<u8> {
    let mut b = buf.to_vec();
    let mut start = 0usize;
    let mut line = 0usize;
    loop {
        let end = b[line..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |p| line + p);
        if line > start {
            if end - start < 70 {
                b[line - 1] = b' ';
            } else {
                start = line;
            }
        }
        if end >= b.len() {
            break;
        }
        line = end + 1;
    }
    let mut out = Vec::with_capacity(b.len() + 8);
    for (i, l) in b.split(|&c| c == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
            if !matches!(l.first(), Some(b' ' | b'\t')) {
                out.push(b'\t');
            }
        }
        out.extend_from_slice(l);
    }
    out
}

/// hbc_action(): what one checks table result means for a line, logging as Postfix
/// does. `prepend` receives PREPEND text (sent before the line).
pub fn action(
    queue_id: &str,
    title: &str,
    header: bool,
    line: &[u8],
    cmd: &str,
    prepend: &mut dyn FnMut(&str),
) -> Verdict {
    let split = cmd.find([' ', '\t']).unwrap_or(cmd.len());
    let (word, args) = (&cmd[..split], cmd[split..].trim_start());
    let where_ = if header { "header" } else { "body" };
    let shown = String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
    let logger = |act: &str, text: &str| {
        let line = if text.is_empty() {
            format!("{queue_id}: {act}: {where_} {shown}")
        } else {
            format!("{queue_id}: {act}: {where_} {shown}: {text}")
        };
        // Postfix's logging replaces non-printable characters (e.g. the newline inside
        // a multi-line header) with '?'.
        let line: String = line
            .chars()
            .map(|c| if c.is_ascii_control() { '?' } else { c })
            .collect();
        log::info(&line);
    };
    let is = |w: &str| word.eq_ignore_ascii_case(w);
    if is("WARN") {
        logger("warning", args);
        return Verdict::Keep(None);
    }
    if is("INFO") {
        logger("info", args);
        return Verdict::Keep(None);
    }
    if is("REPLACE") {
        if args.is_empty() {
            log::warn(&format!("REPLACE action without text in {title} map"));
        } else if header && header_name_len(args.as_bytes()) == 0 {
            log::warn(&format!(
                "bad REPLACE header text \"{args}\" in {title} map -- need \"headername: headervalue\""
            ));
        } else {
            logger("replace", args);
            return Verdict::Keep(Some(args.to_string()));
        }
        return Verdict::Keep(None);
    }
    if is("PREPEND") {
        if args.is_empty() {
            log::warn(&format!("PREPEND action without text in {title} map"));
        } else if header && header_name_len(args.as_bytes()) == 0 {
            log::warn(&format!(
                "bad PREPEND header text \"{args}\" in {title} map -- need \"headername: headervalue\""
            ));
        } else {
            logger("prepend", args);
            prepend(args);
        }
        return Verdict::Keep(None);
    }
    if is("STRIP") {
        logger("strip", args);
        return Verdict::Drop;
    }
    if is("IGNORE") {
        // Not logged, as in cleanup(8).
        return Verdict::Drop;
    }
    if is("DUNNO") || is("OK") {
        return Verdict::Keep(None);
    }
    log::warn(&format!("unsupported command in {title} map: {cmd}"));
    Verdict::Keep(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names() {
        assert_eq!(header_name_len(b"From: x"), 4);
        assert_eq!(header_name_len(b"From : x"), 4);
        assert_eq!(header_name_len(b" From: x"), 0);
        assert_eq!(header_name_len(b"Fr om: x"), 0);
        assert_eq!(header_name_len(b": x"), 0);
        assert_eq!(header_name_len(b"no colon"), 0);
    }

    #[test]
    fn folding() {
        assert_eq!(refold(b"To: a@b,\nc@d"), b"To: a@b, c@d");
        let long = format!("To: {}@x,\n{}@y", "a".repeat(40), "b".repeat(40));
        let want = format!("To: {}@x,\n\t{}@y", "a".repeat(40), "b".repeat(40));
        assert_eq!(refold(long.as_bytes()), want.as_bytes());
    }

    #[test]
    fn known_headers() {
        assert_eq!(known_header(b"FROM: x").as_deref(), Some("from"));
        assert_eq!(known_header(b"X-Foo: x"), None);
        assert!(is_mime_header("content-type"));
    }
}
