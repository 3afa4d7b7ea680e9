//! Postfix lookup tables: opening a map list such as `hash:/etc/postfix/sasl_passwd,
//! lmdb:/x texthash:/y` and answering lookups the way Postfix's smtp(8) does.
//!
//! Which Postfix function each piece mirrors:
//! - [`Maps::open`]: maps_create() (global/maps.c) with dict_open() per element; a table
//!   that cannot be opened becomes a stand-in whose every lookup fails, as Postfix's
//!   dict_surrogate() does in a daemon ([`Maps::open_strict`] refuses instead).
//! - [`Maps::find`]: maps_find(): first table with the key wins, a table error stops the
//!   search, an empty result is a configuration error.
//! - [`Maps::find_addr`] / [`Maps::find_addr_opt`]: mail_addr_find_opt()
//!   (global/mail_addr_find.c) with the legacy query forms (internal in, external-first
//!   query, external out) that mail_addr_find() uses, e.g. for sender-dependent SASL.
//! - [`Maps::find_domain`]: the parent-domain walk of smtp_tls_policy.c's
//!   tls_policy_lookup() (`.parent` keys) and of MA_FIND_DOMAIN|MA_FIND_PDMS (`parent`
//!   keys).
//! - [`MatchList`]: match_list_init()/match_list_match() (util/match_list.c) with
//!   match_string, match_hostname and match_hostaddr (util/match_ops.c), i.e. the
//!   string_list, domain_list and namadr_list flavours (debug_peer_list etc.).
//! - unionmap:/pipemap: follow dict_union.c/dict_pipe.c; client/server types (tcp,
//!   socketmap, ldap, mysql, ...) are not supported and open as "unsupported".
//!
//! Key folding: tables with fixed keys (hash, btree, lmdb, cdb, texthash, inline) see a
//! lowercased key (DICT_FLAG_FOLD_FIX, which all smtp(8) maps use); with SMTPUTF8 on the
//! fold is Unicode case folding, otherwise ASCII only. regexp, pcre and cidr see the key
//! unchanged. `proxy:type:name` is served by opening `type:name` directly (no proxymap
//! process, proxy_read_maps is not consulted): it works where this process can read the
//! file.
//!
//! File names are used as given: like Postfix, a relative name is relative to the
//! process's working directory (the queue directory under master). [`Maps::changed`]
//! mirrors dict_changed_name(): a daemon should exit when a table file was replaced.

mod cidr;
mod db;
mod regex;
mod text;

#[cfg(test)]
mod tests;

pub use cidr::Cidr;

use std::collections::HashMap;
use std::fmt;

/// What kind of failure a table reported. Either way the caller defers the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Syntax or unsupported type: fix main.cf or the table.
    Config,
    /// The table could not be opened or read: retry later.
    Temporary,
}

/// A table problem, naming the table (`type:name`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError {
    pub class: ErrorClass,
    pub table: String,
    pub message: String,
}

impl TableError {
    fn config(table: &str, message: String) -> TableError {
        TableError {
            class: ErrorClass::Config,
            table: table.to_string(),
            message,
        }
    }
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TableError {}

/// How tables are opened; mirrors the dict flags smtp(8) passes to maps_create().
#[derive(Debug, Clone)]
pub struct MapsOptions {
    /// smtputf8_enable: validate UTF-8 and use Unicode case folding.
    pub utf8: bool,
    /// DICT_FLAG_FOLD_FIX: lowercase keys for fixed-key tables (all smtp maps set it).
    pub fold: bool,
}

impl Default for MapsOptions {
    fn default() -> Self {
        // Postfix 3.7 with compatibility_level >= 1 has smtputf8_enable = yes.
        MapsOptions {
            utf8: true,
            fold: true,
        }
    }
}

/// One opened table.
/// Used by one thread at a time but may move between threads, hence Send.
pub(crate) trait Dict: Send {
    /// Look up an already folded key. Values are raw bytes (no trailing NUL).
    fn lookup(&self, key: &str) -> Result<Option<Vec<u8>>, TableError>;
    /// DICT_FLAG_FIXED: exact keys (partial-address lookups only go to these).
    fn fixed(&self) -> bool;
    /// Whether the map layer folds the key before this table sees it. For plain tables
    /// that is "has fixed keys"; unionmap/pipemap differ (see Chain).
    fn prefold(&self) -> bool {
        self.fixed()
    }
    /// Warnings from parsing (skipped rules and the like).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// static: every key has the same value.
struct StaticTable(Vec<u8>);

impl Dict for StaticTable {
    fn lookup(&self, _key: &str) -> Result<Option<Vec<u8>>, TableError> {
        Ok(Some(self.0.clone()))
    }
    fn fixed(&self) -> bool {
        true
    }
}

/// inline: and texthash: (Postfix's in-memory "internal" table).
struct HashTable {
    map: HashMap<String, Vec<u8>>,
    warnings: Vec<String>,
}

impl Dict for HashTable {
    fn lookup(&self, key: &str) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self.map.get(key).cloned())
    }
    fn fixed(&self) -> bool {
        true
    }
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}

/// fail: and tables that could not be opened: every lookup is an error.
struct FailTable(TableError);

impl Dict for FailTable {
    fn lookup(&self, _key: &str) -> Result<Option<Vec<u8>>, TableError> {
        Err(self.0.clone())
    }
    fn fixed(&self) -> bool {
        false
    }
}

/// unionmap:{...} (all answers joined with commas) and pipemap:{...} (each answer is
/// the next table's key), as dict_union.c and dict_pipe.c.
struct Chain {
    union: bool,
    parts: Vec<Box<dyn Dict>>,
    opts: MapsOptions,
}

impl Dict for Chain {
    fn lookup(&self, key: &str) -> Result<Option<Vec<u8>>, TableError> {
        // Each member folds for itself, as each Postfix member does in dict_get().
        let ask = |d: &dyn Dict, k: &str| {
            if self.opts.fold && d.fixed() {
                d.lookup(&text::fold_key(k, self.opts.utf8))
            } else {
                d.lookup(k)
            }
        };
        if self.union {
            let mut out: Vec<u8> = Vec::new();
            for d in &self.parts {
                if let Some(v) = ask(d.as_ref(), key)? {
                    if !out.is_empty() {
                        out.push(b',');
                    }
                    out.extend_from_slice(&v);
                }
            }
            return Ok((!out.is_empty()).then_some(out));
        }
        let mut q = key.to_string();
        for d in &self.parts {
            match ask(d.as_ref(), &q)? {
                Some(v) => q = String::from_utf8_lossy(&v).into_owned(),
                None => return Ok(None),
            }
        }
        Ok(Some(q.into_bytes()))
    }
    /// The first member decides, as in Postfix.
    fn fixed(&self) -> bool {
        self.parts.first().is_some_and(|d| d.fixed())
    }
    /// Only the SMTPUTF8 wrapper folds at the union/pipe level itself.
    fn prefold(&self) -> bool {
        self.opts.utf8 && self.fixed()
    }
    fn warnings(&self) -> Vec<String> {
        self.parts.iter().flat_map(|d| d.warnings()).collect()
    }
}

fn open_chain(
    spec: &str,
    kind: &str,
    name: &str,
    opts: &MapsOptions,
) -> Result<Box<dyn Dict>, TableError> {
    let bad = || {
        TableError::config(
            spec,
            format!("bad syntax: \"{kind}:{name}\"; need \"{kind}:{{type:name...}}\""),
        )
    };
    let b = name.as_bytes();
    let len = text::balanced_len(b);
    if len == 0 || len != b.len() || len <= 2 {
        return Err(bad());
    }
    let members = text::tokens_with_braces(&name[1..len - 1], b", \t\r\n");
    if members.is_empty() || members.iter().any(|m| !m.contains(':')) {
        return Err(bad());
    }
    let parts = members
        .iter()
        .map(|m| open_dict(m, opts))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Box::new(Chain {
        union: kind == "unionmap",
        parts,
        opts: opts.clone(),
    }))
}

/// The table types this module knows (`postconf -m` minus client/server types).
pub const SUPPORTED_TYPES: &[&str] = &[
    #[cfg(feature = "bdb")]
    "btree",
    "cdb",
    "cidr",
    "fail",
    #[cfg(feature = "bdb")]
    "hash",
    "inline",
    "lmdb",
    "pcre",
    "pipemap",
    "proxy",
    "regexp",
    "static",
    "texthash",
    "unionmap",
];

fn read_source(spec: &str, kind: &str, path: &str) -> Result<Vec<u8>, TableError> {
    // `type:{{rule}, {rule}}`: the rules inline, each in its own braces (Postfix 3.7).
    if path.starts_with('{') {
        let map = spec.split_once(':').map(|(k, _)| k).unwrap_or(spec);
        let inner = text::strip_braces(path)
            .map_err(|e| TableError::config(spec, format!("{map} map: {e}")))?;
        let mut data = Vec::new();
        for rule in text::tokens_with_braces(inner, b", \t\r\n") {
            let body = if rule.starts_with('{') {
                text::strip_braces(rule).ok()
            } else {
                None
            };
            let Some(body) = body else {
                return Err(TableError::config(
                    spec,
                    format!("{map} map: no '{{' at start of text in \"{rule}\""),
                ));
            };
            data.extend_from_slice(body.trim().as_bytes());
            data.push(b'\n');
        }
        return Ok(data);
    }
    std::fs::read(path).map_err(|e| TableError {
        class: ErrorClass::Temporary,
        table: spec.to_string(),
        message: format!("{kind} {path}: {}", crate::log::strerror(&e)),
    })
}

/// Open one `type:name` table. `fold` is applied by the caller per lookup.
fn open_dict(spec: &str, opts: &MapsOptions) -> Result<Box<dyn Dict>, TableError> {
    let Some((kind, name)) = spec.split_once(':') else {
        return Err(TableError::config(
            spec,
            format!("open dictionary: expecting \"type:name\" form instead of \"{spec}\""),
        ));
    };
    if kind.is_empty() || name.is_empty() {
        return Err(TableError::config(
            spec,
            format!("open dictionary: expecting \"type:name\" form instead of \"{spec}\""),
        ));
    }
    match kind {
        #[cfg(feature = "bdb")]
        "hash" => Ok(Box::new(db::BdbTable::open(spec, name, false)?)),
        #[cfg(feature = "bdb")]
        "btree" => Ok(Box::new(db::BdbTable::open(spec, name, true)?)),
        "lmdb" => Ok(Box::new(db::LmdbTable::open(spec, name)?)),
        "cdb" => Ok(Box::new(db::CdbTable::open(spec, name)?)),
        "texthash" => {
            let data = read_source(spec, "open database", name)?;
            Ok(Box::new(parse_texthash(spec, name, &data, opts)?))
        }
        "inline" => Ok(Box::new(parse_inline(spec, name, opts)?)),
        "static" => {
            let value = if name.starts_with('{') {
                text::strip_braces(name)
                    .map_err(|e| TableError::config(spec, format!("bad static:name syntax: {e}")))?
            } else {
                name
            };
            Ok(Box::new(StaticTable(value.as_bytes().to_vec())))
        }
        "regexp" => {
            let data = read_source(spec, "open", name)?;
            Ok(Box::new(regex::RegexTable::<regex::Posix>::parse(
                name, &data,
            )))
        }
        "pcre" => {
            let data = read_source(spec, "open", name)?;
            Ok(Box::new(regex::RegexTable::<regex::Pcre>::parse(
                name, &data,
            )))
        }
        "cidr" => {
            let data = read_source(spec, "open", name)?;
            Ok(Box::new(cidr::CidrTable::parse(name, &data)))
        }
        "fail" => Ok(Box::new(FailTable(TableError {
            class: ErrorClass::Temporary,
            table: spec.to_string(),
            message: format!("{spec}: a fail: table fails every lookup"),
        }))),
        "proxy" => open_dict(name, opts),
        "unionmap" | "pipemap" => open_chain(spec, kind, name, opts),
        _ => Err(TableError::config(
            spec,
            format!("unsupported dictionary type: {kind}"),
        )),
    }
}

/// Store a key as the internal table does: folded when the maps fold.
fn ht_key(key: &str, opts: &MapsOptions) -> String {
    if opts.fold {
        text::fold_key(key, opts.utf8)
    } else {
        key.to_string()
    }
}

/// texthash: a flat `key whitespace value` file read into memory (dict_thash.c).
fn parse_texthash(
    spec: &str,
    path: &str,
    data: &[u8],
    opts: &MapsOptions,
) -> Result<HashTable, TableError> {
    let mut warnings = Vec::new();
    let lines = text::logical_lines(data, &mut warnings, path);
    let mut map = HashMap::new();
    for (lineno, line) in lines {
        let Ok(line) = std::str::from_utf8(&line) else {
            if opts.utf8 {
                warnings.push(format!(
                    "{path}, line {lineno}: non-UTF-8 input -- ignoring this line"
                ));
                continue;
            }
            // Without SMTPUTF8 Postfix takes bytes as they are; a non-UTF-8 key
            // can never equal one of our (UTF-8) lookup keys, so skipping is the same.
            continue;
        };
        let b = line.as_bytes();
        let mut i = 0;
        let mut quoted = false;
        while i < b.len() {
            if b[i] == b'\\' {
                i += 1;
                if i >= b.len() {
                    break;
                }
            } else if text::is_space(b[i]) {
                if !quoted {
                    break;
                }
            } else if b[i] == b'"' {
                quoted = !quoted;
            }
            i += 1;
        }
        if quoted {
            warnings.push(format!(
                "{path}, line {lineno}: unbalanced '\"' in '{line}' -- ignoring this line"
            ));
            continue;
        }
        let i = i.min(b.len());
        let key = &line[..i];
        let value =
            String::from_utf8_lossy(text::trim_end(text::trim_start(&b[(i + 1).min(b.len())..])))
                .into_owned();
        if key.is_empty() || value.is_empty() {
            warnings.push(format!(
                "{path}, line {lineno}: expected format: key whitespace value -- ignoring this line"
            ));
            continue;
        }
        if key.ends_with(':') {
            warnings.push(format!(
                "{path}, line {lineno}: record is in \"key: value\" format; is this an alias file?"
            ));
        }
        let k = ht_key(key, opts);
        if map.contains_key(&k) {
            // smtp(8)'s maps ask for neither duplicate-ignore nor -replace: the table
            // is unusable, as in Postfix.
            return Err(TableError::config(
                spec,
                format!("{path}, line {lineno}: duplicate entry: \"{key}\""),
            ));
        }
        map.insert(k, value.into_bytes());
    }
    Ok(HashTable { map, warnings })
}

/// inline:{ key=value, { key = value with spaces } } (dict_inline.c).
fn parse_inline(spec: &str, name: &str, opts: &MapsOptions) -> Result<HashTable, TableError> {
    let what = "need \"inline:{name=value...}\"";
    let b = name.as_bytes();
    let len = text::balanced_len(b);
    if len == 0 || len != b.len() || len <= 2 {
        return Err(TableError::config(
            spec,
            format!("bad syntax: \"{spec}\"; {what}"),
        ));
    }
    let inner = &name[1..len - 1];
    let mut map = HashMap::new();
    let mut count = 0;
    let mut err: Option<String> = None;
    for tok in text::tokens_with_braces(inner, b", \t\r\n") {
        let item = if tok.starts_with('{') {
            match text::strip_braces(tok) {
                Ok(s) => s,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        } else {
            tok
        };
        match split_qnameval(item) {
            Ok((k, v)) => {
                map.insert(ht_key(k, opts), v.as_bytes().to_vec());
                count += 1;
            }
            Err(e) => {
                err = Some(e.to_string());
                break;
            }
        }
    }
    if err.is_some() || count == 0 {
        let why = err.unwrap_or_else(|| "empty table".to_string());
        return Err(TableError::config(
            spec,
            format!("{why}: \"{spec}\"; {what}"),
        ));
    }
    Ok(HashTable {
        map,
        warnings: Vec::new(),
    })
}

/// `key = value` with an optionally quoted key (split_qnameval.c).
fn split_qnameval(s: &str) -> Result<(&str, &str), &'static str> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && text::is_space(b[i]) {
        i += 1;
    }
    if i >= b.len() {
        return Err("no key found; expected format: key = value");
    }
    let start = i;
    let mut quoted = false;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 1;
            if i >= b.len() {
                break;
            }
        } else if text::is_space(b[i]) || b[i] == b'=' {
            if !quoted {
                break;
            }
        } else if b[i] == b'"' {
            quoted = !quoted;
        }
        i += 1;
    }
    if quoted {
        return Err("unbalanced '\"'");
    }
    let i = i.min(b.len());
    let key = &s[start..i];
    let mut j = i;
    while j < b.len() && text::is_space(b[j]) {
        j += 1;
    }
    if b.get(j) != Some(&b'=') {
        return Err("missing '=' after attribute name");
    }
    j += 1;
    while j < b.len() && text::is_space(b[j]) {
        j += 1;
    }
    let value = std::str::from_utf8(text::trim_end(&b[j..])).unwrap_or("");
    Ok((key, value))
}

struct Entry {
    spec: String,
    dict: Box<dyn Dict>,
    /// The table's files and what they looked like when opened.
    files: Vec<(String, Option<FileStamp>)>,
}

/// Identity and age of a file, to notice postmap replacing or rewriting it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
}

fn stamp(path: &str) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        dev: m.dev(),
        ino: m.ino(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
    })
}

/// The files a `type:name` table is read from (proxy: means the inner table).
fn table_files(spec: &str) -> Vec<String> {
    let Some((kind, name)) = spec.split_once(':') else {
        return Vec::new();
    };
    match kind {
        "hash" | "btree" => vec![format!("{name}.db")],
        "lmdb" => vec![format!("{name}.lmdb")],
        "cdb" => vec![format!("{name}.cdb")],
        "texthash" | "regexp" | "pcre" | "cidr" => vec![name.to_string()],
        "proxy" => table_files(name),
        "unionmap" | "pipemap" => {
            let inner = name
                .strip_prefix('{')
                .and_then(|n| n.strip_suffix('}'))
                .unwrap_or("");
            text::tokens_with_braces(inner, b", \t\r\n")
                .into_iter()
                .flat_map(table_files)
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Every indexed table this process opened: its registered name and its files, kept
/// open (as Postfix keeps the table open) with their modification time then, for
/// [`changed_table`]. Holding the file works after a privilege drop and notices a file
/// that postmap replaced (the old one is unlinked).
static OPENED: std::sync::Mutex<Vec<(String, Vec<Watched>)>> = std::sync::Mutex::new(Vec::new());

/// An open table file and its modification time (seconds, nanoseconds) when opened.
type Watched = (std::fs::File, i64, i64);

fn register(e: &Entry, opts: &MapsOptions) {
    use std::os::unix::fs::MetadataExt;
    // As Postfix: only indexed files (postmap's output) are watched; text-based tables
    // (texthash, regexp, pcre, cidr) are read once and need `postfix reload`.
    if !watched(&e.spec) || e.files.is_empty() {
        return;
    }
    // Postfix names a table by its registration: open flags (read-only) and the lookup
    // flags every smtp(8) table is opened with.
    let name = format!(
        "{}(0,lock|fold_fix{})",
        e.spec,
        if opts.utf8 { "|utf8_request" } else { "" }
    );
    let mut o = OPENED.lock().unwrap_or_else(|p| p.into_inner());
    if o.iter().any(|(n, _)| *n == name) {
        return;
    }
    let files: Vec<Watched> = e
        .files
        .iter()
        .filter_map(|(f, _)| {
            let file = std::fs::File::open(f).ok()?;
            let m = file.metadata().ok()?;
            Some((file, m.mtime(), m.mtime_nsec()))
        })
        .collect();
    if !files.is_empty() {
        o.push((name, files));
    }
}

/// Whether Postfix watches a table of this type for changes (file-based, kept open).
fn watched(spec: &str) -> bool {
    match spec.split_once(':') {
        Some(("hash" | "btree" | "lmdb" | "cdb", _)) => true,
        // We open proxy: tables ourselves, so we must notice their changes too.
        Some(("proxy", inner)) => watched(inner),
        _ => false,
    }
}

/// The first table opened by this process whose file has since been rewritten or
/// removed (Postfix's dict_changed_name(): a daemon then exits before its next request,
/// so that a new process reads the new table).
pub fn changed_table() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let o = OPENED.lock().unwrap_or_else(|p| p.into_inner());
    o.iter()
        .find(|(_, files)| {
            files.iter().any(|(f, mtime, nsec)| match f.metadata() {
                Ok(m) => m.nlink() == 0 || m.mtime() != *mtime || m.mtime_nsec() != *nsec,
                Err(_) => false,
            })
        })
        .map(|(name, _)| name.clone())
}

fn entry(spec: &str, dict: Box<dyn Dict>) -> Entry {
    let files = table_files(spec).into_iter().map(|f| {
        let s = stamp(&f);
        (f, s)
    });
    Entry {
        spec: spec.to_string(),
        dict,
        files: files.collect(),
    }
}

/// A list of tables searched in order (Postfix's MAPS).
pub struct Maps {
    title: String,
    opts: MapsOptions,
    tables: Vec<Entry>,
    open_errors: Vec<TableError>,
}

impl fmt::Debug for Maps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let specs: Vec<&str> = self.tables.iter().map(|e| e.spec.as_str()).collect();
        f.debug_struct("Maps")
            .field("title", &self.title)
            .field("tables", &specs)
            .finish()
    }
}

/// Split a map list parameter value: comma/whitespace separated, `{...}` kept whole.
pub fn split_map_list(value: &str) -> Vec<&str> {
    text::tokens_with_braces(value, b", \t\r\n")
}

impl Maps {
    /// Open every `type:name` in `list`, as Postfix does in a daemon: an element without
    /// `type:` is an error (Postfix exits), any other failure (unknown type, missing or
    /// corrupt file, syntax) leaves a stand-in whose lookups fail, and the reason is in
    /// [`Maps::open_errors`] for logging now.
    pub fn open(title: &str, list: &str, opts: &MapsOptions) -> Result<Maps, TableError> {
        let mut maps = Maps {
            title: title.to_string(),
            opts: opts.clone(),
            tables: Vec::new(),
            open_errors: Vec::new(),
        };
        for spec in split_map_list(list) {
            match open_dict(spec, opts) {
                Ok(dict) => {
                    let e = entry(spec, dict);
                    register(&e, opts);
                    maps.tables.push(e)
                }
                Err(e) => {
                    let head = spec
                        .split_once(':')
                        .map(|(k, n)| k.is_empty() || n.is_empty());
                    if head.is_none_or(|bad| bad) {
                        return Err(e);
                    }
                    let stand_in = TableError {
                        class: e.class,
                        table: spec.to_string(),
                        message: format!("{spec} is unavailable. {}", e.message),
                    };
                    maps.open_errors.push(e);
                    maps.tables.push(entry(spec, Box::new(FailTable(stand_in))));
                }
            }
        }
        Ok(maps)
    }

    /// Like [`Maps::open`] but any table that cannot be opened is an error.
    pub fn open_strict(title: &str, list: &str, opts: &MapsOptions) -> Result<Maps, TableError> {
        let mut maps = Maps::open(title, list, opts)?;
        if !maps.open_errors.is_empty() {
            return Err(maps.open_errors.remove(0));
        }
        Ok(maps)
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    /// The `type:name` elements, in search order.
    pub fn specs(&self) -> Vec<&str> {
        self.tables.iter().map(|e| e.spec.as_str()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The first table whose file was replaced, rewritten or removed since it was opened
    /// (or created, for one that was missing). Postfix daemons exit after the current
    /// request when this happens ("table ... has changed -- restarting"), so that the
    /// next process reads the new contents; callers should do the same.
    pub fn changed(&self) -> Option<&str> {
        self.tables
            .iter()
            .find(|e| e.files.iter().any(|(f, s)| stamp(f) != *s))
            .map(|e| e.spec.as_str())
    }

    /// Tables that could not be opened (their lookups fail with Temporary/Config).
    pub fn open_errors(&self) -> &[TableError] {
        &self.open_errors
    }

    /// Parse warnings (skipped regexp/pcre/cidr rules, bad texthash lines), prefixed as
    /// Postfix logs them.
    pub fn warnings(&self) -> Vec<String> {
        self.tables.iter().flat_map(|e| e.dict.warnings()).collect()
    }

    /// maps_find(): the first table that has `key` answers.
    pub fn find(&self, key: &str) -> Result<Option<String>, TableError> {
        self.search(key, false)
    }

    fn lookup_one(&self, e: &Entry, key: &str) -> Result<Option<Vec<u8>>, TableError> {
        // C strings end at NUL: a key with one is the shorter key to Postfix.
        let key = &key[..key.find('\0').unwrap_or(key.len())];
        if e.dict.prefold() && self.opts.fold {
            e.dict.lookup(&text::fold_key(key, self.opts.utf8))
        } else {
            e.dict.lookup(key)
        }
    }

    /// maps_find() with DICT_FLAG_FIXED as filter when `fixed_only` (partial keys must
    /// never reach regular expressions).
    fn search(&self, key: &str, fixed_only: bool) -> Result<Option<String>, TableError> {
        if key.is_empty() {
            return Ok(None);
        }
        for e in &self.tables {
            if fixed_only && !e.dict.fixed() {
                continue;
            }
            match self.lookup_one(e, key) {
                Ok(Some(v)) => {
                    if v.is_empty() {
                        return Err(TableError::config(
                            &e.spec,
                            format!(
                                "{} lookup of {key} returns an empty string result; {} should return NO RESULT in case of NOT FOUND",
                                self.title, self.title
                            ),
                        ));
                    }
                    return match String::from_utf8(v) {
                        Ok(s) => Ok(Some(s)),
                        Err(_) if self.opts.utf8 => Err(TableError::config(
                            &e.spec,
                            format!("{}: key \"{key}\": non-UTF-8 value", e.spec),
                        )),
                        Err(err) => Ok(Some(String::from_utf8_lossy(err.as_bytes()).into_owned())),
                    };
                }
                Ok(None) => {}
                Err(err) => {
                    return Err(TableError {
                        class: err.class,
                        table: e.spec.clone(),
                        message: format!("{} lookup error for \"{key}\": {}", e.spec, err.message),
                    });
                }
            }
        }
        Ok(None)
    }

    /// Domain lookup with parent domains, for destinations such as TLS policy: first
    /// `domain` itself, then each parent, as `.parent` (the default, tls_policy_lookup)
    /// or as `parent` when `parent_matches` (parent_domain_matches_subdomains style,
    /// MA_FIND_PDMS). Every table is asked every time, as tls_policy_lookup does.
    pub fn find_domain(
        &self,
        domain: &str,
        parent_matches: bool,
    ) -> Result<Option<String>, TableError> {
        let mut name = domain;
        loop {
            if let Some(v) = self.find(name)? {
                return Ok(Some(v));
            }
            // The next dot after the first character.
            let Some(dot) = next_dot(name) else {
                return Ok(None);
            };
            name = if parent_matches {
                &name[dot + 1..]
            } else {
                &name[dot..]
            };
            if name.is_empty() {
                return Ok(None);
            }
        }
    }

    /// mail_addr_find() with the default strategy (full address, address without
    /// extension, localpart when the domain is local, @domain).
    pub fn find_addr(
        &self,
        address: &str,
        opts: &AddrOptions,
        is_local: &mut dyn FnMut(&str) -> Result<bool, TableError>,
    ) -> Result<Option<AddrMatch>, TableError> {
        self.find_addr_opt(address, &AddrStrategy::DEFAULT, opts, is_local)
    }

    /// mail_addr_find_opt() with the legacy query forms and a chosen strategy.
    pub fn find_addr_opt(
        &self,
        address: &str,
        strategy: &AddrStrategy,
        opts: &AddrOptions,
        is_local: &mut dyn FnMut(&str) -> Result<bool, TableError>,
    ) -> Result<Option<AddrMatch>, TableError> {
        let full = address;
        let stripped = if strategy.noext {
            strip_extension(full, opts)
        } else {
            None
        };
        let found = |value: String, ext: Option<&str>| {
            Ok(Some(AddrMatch {
                value,
                extension: ext.map(str::to_string),
            }))
        };

        // user+foo@domain, then user@domain (partial: fixed tables only).
        if strategy.full
            && let Some(v) = self.find_quoted(full, false, true)?
        {
            return found(v, None);
        }
        if let Some((bare, ext)) = &stripped
            && let Some(v) = self.find_quoted(bare, true, true)?
        {
            return found(v, Some(ext));
        }
        let at = full.rfind('@');
        // user+foo, user (and/or with a trailing @) when the domain is ours.
        if let Some(at) = at
            && (strategy.localpart_if_local || strategy.localpart_at_if_local)
            && is_local(&full[at + 1..])?
        {
            if strategy.localpart_if_local
                && let Some(m) = self.find_local(full, stripped.as_ref(), 0)?
            {
                return Ok(Some(m));
            }
            if strategy.localpart_at_if_local
                && let Some(m) = self.find_local(full, stripped.as_ref(), 1)?
            {
                return Ok(Some(m));
            }
        }
        if let Some(at) = at {
            if strategy.at_domain
                && let Some(v) = self.search(&full[at..], true)?
            {
                return found(v, None);
            }
            if strategy.domain {
                let mut name = &full[at + 1..];
                while !name.is_empty() {
                    if let Some(v) = self.search(name, true)? {
                        return found(v, None);
                    }
                    if !(strategy.parent_matches_subdomains || strategy.parent_dot_subdomains) {
                        break;
                    }
                    let Some(dot) = next_dot(name) else {
                        break;
                    };
                    name = if strategy.parent_dot_subdomains {
                        &name[dot..]
                    } else {
                        &name[dot + 1..]
                    };
                }
            }
        }
        if strategy.localpart_at
            && let Some(m) = self.find_local(full, stripped.as_ref(), 1)?
        {
            return Ok(Some(m));
        }
        Ok(None)
    }

    /// Look up the localpart (`keep` = 0) or `localpart@` (`keep` = 1), first with the
    /// extension, then without (find_local in mail_addr_find.c).
    fn find_local(
        &self,
        full: &str,
        stripped: Option<&(String, String)>,
        keep: usize,
    ) -> Result<Option<AddrMatch>, TableError> {
        let cut = |a: &str| -> String {
            match a.rfind('@') {
                Some(at) => a[..at + keep].to_string(),
                None => a.to_string(),
            }
        };
        let with_domain = keep == 1;
        if let Some(v) = self.find_quoted(&cut(full), true, with_domain)? {
            return Ok(Some(AddrMatch {
                value: v,
                extension: None,
            }));
        }
        if let Some((bare, ext)) = stripped
            && let Some(v) = self.find_quoted(&cut(bare), true, with_domain)?
        {
            return Ok(Some(AddrMatch {
                value: v,
                extension: Some(ext.clone()),
            }));
        }
        Ok(None)
    }

    /// The external-first query form: the RFC 822 quoted form of the address, then the
    /// address as is when that differs.
    fn find_quoted(
        &self,
        key: &str,
        fixed_only: bool,
        with_domain: bool,
    ) -> Result<Option<String>, TableError> {
        let quoted = quote_822_local(key, !with_domain);
        if let Some(v) = self.search(&quoted, fixed_only)? {
            return Ok(Some(v));
        }
        if quoted == key {
            return Ok(None);
        }
        self.search(key, fixed_only)
    }
}

/// Address-lookup settings from main.cf that mail_addr_find() depends on.
#[derive(Debug, Clone)]
pub struct AddrOptions {
    /// recipient_delimiter (a set of characters; empty disables extension stripping).
    pub recipient_delimiter: String,
    /// double_bounce_sender: never split.
    pub double_bounce_sender: String,
    /// owner_request_special: do not split owner-foo and foo-request when `-` delimits.
    pub owner_request_special: bool,
}

impl Default for AddrOptions {
    fn default() -> Self {
        AddrOptions {
            recipient_delimiter: String::new(),
            double_bounce_sender: "double-bounce".into(),
            owner_request_special: true,
        }
    }
}

/// MA_FIND_* flags of mail_addr_find_opt().
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrStrategy {
    pub full: bool,
    pub noext: bool,
    pub localpart_if_local: bool,
    pub localpart_at_if_local: bool,
    pub at_domain: bool,
    pub domain: bool,
    pub parent_matches_subdomains: bool,
    pub parent_dot_subdomains: bool,
    pub localpart_at: bool,
}

impl AddrStrategy {
    /// MA_FIND_DEFAULT: full, noext, localpart_if_local, at_domain.
    pub const DEFAULT: AddrStrategy = AddrStrategy {
        full: true,
        noext: true,
        localpart_if_local: true,
        localpart_at_if_local: false,
        at_domain: true,
        domain: false,
        parent_matches_subdomains: false,
        parent_dot_subdomains: false,
        localpart_at: false,
    };
}

/// A find_addr answer; `extension` is set when the match needed the extension removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrMatch {
    pub value: String,
    pub extension: Option<String>,
}

/// strip_addr_internal(): remove the address extension. Returns (address without the
/// extension, extension including its delimiter) or None when nothing was stripped.
pub fn strip_extension(full: &str, opts: &AddrOptions) -> Option<(String, String)> {
    let delims = opts.recipient_delimiter.as_str();
    if delims.is_empty() || !full.chars().any(|c| delims.contains(c)) {
        return None;
    }
    let (local, domain) = match full.rfind('@') {
        Some(at) => (&full[..at], &full[at..]),
        None => (full, ""),
    };
    // split_addr(): special local parts are never split.
    if local.eq_ignore_ascii_case("postmaster")
        || local.eq_ignore_ascii_case("mailer-daemon")
        || text::fold_key(local, true) == text::fold_key(&opts.double_bounce_sender, true)
    {
        return None;
    }
    if delims.contains('-') && opts.owner_request_special {
        let lb = local.as_bytes();
        if lb.len() >= 6 && lb[..6].eq_ignore_ascii_case(b"owner-") {
            return None;
        }
        if lb.len() > 8 && lb[lb.len() - 8..].eq_ignore_ascii_case(b"-request") {
            return None;
        }
    }
    let pos = local.find(|c| delims.contains(c))?;
    if pos == 0 {
        return None;
    }
    Some((
        format!("{}{domain}", &local[..pos]),
        local[pos..].to_string(),
    ))
}

/// quote_822_local(): quote the local part when it is not an RFC 822 dot-string
/// (8-bit bytes are left alone, as Postfix's default flags say).
pub fn quote_822_local(addr: &str, bare_localpart: bool) -> String {
    let (prefix, start) = match addr.strip_prefix('@').and_then(|_| addr.find(':')) {
        Some(colon) => addr.split_at(colon + 1),
        None => ("", addr),
    };
    let end = if bare_localpart {
        start.len()
    } else {
        start.rfind('@').unwrap_or(start.len())
    };
    let (local, rest) = start.split_at(end);
    if is_dot_string(local) {
        return addr.to_string();
    }
    let mut out = String::with_capacity(addr.len() + 4);
    out.push_str(prefix);
    out.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' || c == '\r' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out.push_str(rest);
    out
}

fn is_dot_string(local: &str) -> bool {
    let b = local.as_bytes();
    if b.is_empty() || b[0] == b'.' || b[b.len() - 1] == b'.' {
        return false;
    }
    for (i, &c) in b.iter().enumerate() {
        if c == b'.' && b.get(i + 1) == Some(&b'.') {
            return false;
        }
        if c < 128 && (c == b' ' || c.is_ascii_control() || b"()<>@,;:\\\"[]".contains(&c)) {
            return false;
        }
    }
    true
}

// ---- match lists ----

enum Pattern {
    Text(String),
    Table { spec: String, dict: Box<dyn Dict> },
}

struct Item {
    positive: bool,
    pattern: Pattern,
}

/// A Postfix match list (string_list, domain_list, namadr_list): patterns, `!pattern`,
/// `/file/name` (one pattern per line) and `type:table` elements, first match wins.
pub struct MatchList {
    name: String,
    parent: bool,
    utf8: bool,
    items: Vec<Item>,
    warnings: Vec<String>,
}

impl fmt::Debug for MatchList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatchList")
            .field("name", &self.name)
            .field("items", &self.items.len())
            .finish()
    }
}

/// Postfix's test for a table element: has a colon and is not a `[address]`.
fn is_table(p: &str) -> bool {
    !p.starts_with('[') && p.contains(':')
}

impl MatchList {
    /// match_list_init(). `name` is the parameter name (used in messages);
    /// `parent_matches` is MATCH_FLAG_PARENT, i.e. the parameter is listed in
    /// parent_domain_matches_subdomains. Tables that cannot be opened fail at match
    /// time, as Postfix's stand-ins do. A bare `!` is an error.
    pub fn new(
        name: &str,
        patterns: &str,
        parent_matches: bool,
        utf8: bool,
    ) -> Result<MatchList, TableError> {
        let mut list = MatchList {
            name: name.into(),
            parent: parent_matches,
            utf8,
            items: Vec::new(),
            warnings: Vec::new(),
        };
        list.parse(patterns, true, 0)?;
        Ok(list)
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn parse(&mut self, patterns: &str, init: bool, depth: usize) -> Result<(), TableError> {
        let toks = text::tokens_with_braces(patterns, b", \t\r\n");
        for (i, tok) in toks.iter().enumerate() {
            if tok.starts_with('#') {
                self.warnings.push(format!(
                    "{}: comment at end of line is not supported: {}",
                    self.name,
                    toks[i..].join(" ")
                ));
                break;
            }
            let mut positive = init;
            let mut item = *tok;
            while let Some(r) = item.strip_prefix('!') {
                positive = !positive;
                item = r;
            }
            if item.is_empty() {
                return Err(TableError::config(
                    &self.name,
                    format!("{}: no pattern after '!'", self.name),
                ));
            }
            if item.starts_with('/') {
                match std::fs::read(item) {
                    Ok(data) if depth < 16 => {
                        let data = String::from_utf8_lossy(&data).into_owned();
                        for line in data.lines() {
                            if !line.starts_with('#') {
                                self.parse(line, positive, depth + 1)?;
                            }
                        }
                    }
                    Ok(_) => {
                        let e = TableError::config(
                            item,
                            format!("{}: file nesting too deep at {item}", self.name),
                        );
                        self.items.push(Item {
                            positive,
                            pattern: Pattern::Table {
                                spec: item.into(),
                                dict: Box::new(FailTable(e)),
                            },
                        });
                    }
                    Err(e) => {
                        let reason = format!("open file {item}: {}", crate::log::strerror(&e));
                        let err = TableError {
                            class: ErrorClass::Temporary,
                            table: item.to_string(),
                            message: format!("{item} is unavailable. {reason}"),
                        };
                        self.warnings.push(reason);
                        self.items.push(Item {
                            positive,
                            pattern: Pattern::Table {
                                spec: item.into(),
                                dict: Box::new(FailTable(err)),
                            },
                        });
                    }
                }
            } else if is_table(item) {
                // Match lists open tables without key folding: the subject is folded
                // before the search instead.
                let opts = MapsOptions {
                    utf8: self.utf8,
                    fold: false,
                };
                let dict: Box<dyn Dict> = match open_dict(item, &opts) {
                    Ok(d) => d,
                    Err(e) => {
                        self.warnings.push(e.message.clone());
                        Box::new(FailTable(TableError {
                            class: e.class,
                            table: item.to_string(),
                            message: format!("{item} is unavailable. {}", e.message),
                        }))
                    }
                };
                self.items.push(Item {
                    positive,
                    pattern: Pattern::Table {
                        spec: item.into(),
                        dict,
                    },
                });
            } else {
                let folded = text::fold_key(item, self.utf8);
                self.items.push(Item {
                    positive,
                    pattern: Pattern::Text(folded),
                });
            }
        }
        Ok(())
    }

    fn table_error(&self, spec: &str, e: TableError) -> TableError {
        TableError {
            class: e.class,
            table: spec.into(),
            message: format!("{}: {spec}: table lookup problem: {}", self.name, e.message),
        }
    }

    fn table_has(&self, spec: &str, dict: &dyn Dict, key: &str) -> Result<bool, TableError> {
        dict.lookup(key)
            .map(|v| v.is_some())
            .map_err(|e| self.table_error(spec, e))
    }

    /// match_list_match() over the given match functions and subjects.
    fn run(&self, subjects: &[(Kind, &str)]) -> Result<bool, TableError> {
        let folded: Vec<(Kind, String)> = subjects
            .iter()
            .map(|(k, s)| (*k, text::fold_key(s, self.utf8)))
            .collect();
        for item in &self.items {
            for (kind, s) in &folded {
                let hit = match kind {
                    Kind::String => self.match_string(s, &item.pattern)?,
                    Kind::Host => self.match_hostname(s, &item.pattern)?,
                    Kind::Addr => self.match_hostaddr(s, &item.pattern)?,
                };
                if hit {
                    return Ok(item.positive);
                }
            }
        }
        Ok(false)
    }

    /// string_list_match().
    fn match_string(&self, s: &str, p: &Pattern) -> Result<bool, TableError> {
        match p {
            Pattern::Table { spec, dict } => self.table_has(spec, dict.as_ref(), s),
            Pattern::Text(t) => Ok(s == t),
        }
    }

    fn match_hostname(&self, name: &str, p: &Pattern) -> Result<bool, TableError> {
        match p {
            Pattern::Table { spec, dict } => {
                let mut entry = name;
                let mut first = true;
                // An empty name makes no lookup at all (not even a failing one).
                while !entry.is_empty() {
                    if (first || dict.fixed()) && self.table_has(spec, dict.as_ref(), entry)? {
                        return Ok(true);
                    }
                    first = false;
                    let Some(dot) = next_dot(entry) else {
                        return Ok(false);
                    };
                    entry = if self.parent {
                        &entry[dot + 1..]
                    } else {
                        &entry[dot..]
                    };
                }
                Ok(false)
            }
            Pattern::Text(pat) => {
                if name == pat {
                    return Ok(true);
                }
                if self.parent {
                    Ok(name.len() > pat.len() + 1
                        && name.ends_with(pat.as_str())
                        && name.as_bytes()[name.len() - pat.len() - 1] == b'.')
                } else if pat.starts_with('.') {
                    Ok(name.len() > pat.len() && name.ends_with(pat.as_str()))
                } else {
                    Ok(false)
                }
            }
        }
    }

    fn match_hostaddr(&self, addr: &str, p: &Pattern) -> Result<bool, TableError> {
        const V4: &str = "01234567890.";
        const V6: &str = "01234567890.abcdefABCDEF:";
        if !addr.chars().all(|c| V6.contains(c)) {
            return Ok(false);
        }
        let pat = match p {
            Pattern::Table { spec, dict } => return self.table_has(spec, dict.as_ref(), addr),
            Pattern::Text(t) => t.as_str(),
        };
        if let Some(inner) = pat.strip_prefix('[') {
            if inner.strip_suffix(']') == Some(addr) {
                return Ok(true);
            }
        } else if addr == pat {
            return Ok(true);
        }
        if addr.contains(':') != pat.contains(':')
            || !pat.contains([':', '/'])
            || pat.chars().all(|c| V4.contains(c))
            || !pat.chars().all(|c| V6.contains(c) || "[]/".contains(c))
        {
            return Ok(false);
        }
        match Cidr::parse(pat) {
            Ok(c) => Ok(cidr::pton(addr).is_some_and(|(v6, a)| c.contains(v6, &a))),
            Err(e) => Err(TableError {
                class: ErrorClass::Temporary,
                table: self.name.clone(),
                message: format!("{}: {e}", self.name),
            }),
        }
    }

    /// string_list_match(list, string).
    pub fn matches_string(&self, s: &str) -> Result<bool, TableError> {
        self.run(&[(Kind::String, s)])
    }

    /// domain_list_match(list, hostname).
    pub fn matches_domain(&self, name: &str) -> Result<bool, TableError> {
        self.run(&[(Kind::Host, name)])
    }

    /// namadr_list_match(list, hostname, address): each pattern is tried against the
    /// name, then the address (debug_peer_list, smtp_*_domains style lists).
    pub fn matches_host(&self, name: &str, addr: &str) -> Result<bool, TableError> {
        self.run(&[(Kind::Host, name), (Kind::Addr, addr)])
    }
}

#[derive(Clone, Copy)]
enum Kind {
    String,
    Host,
    Addr,
}

/// Byte index of the first `.` after the first byte (C's strchr(name + 1, '.')); the
/// first character may be multi-byte, so search bytes, not a sliced str.
fn next_dot(name: &str) -> Option<usize> {
    name.bytes().skip(1).position(|b| b == b'.').map(|i| i + 1)
}
