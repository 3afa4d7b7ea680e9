//! The TLS client engine: one OpenSSL context per agent, one handshake per connection.
//!
//! As in Postfix 3.7, the handshake always completes when the TLS layer itself works;
//! certificate problems only decide the trust class (Anonymous, Untrusted, Trusted,
//! Verified) and whether the policy's match requirement is met. Name checks are done by
//! OpenSSL (SSL_add1_host, no partial wildcards, subjectAltName DNS names before the CN);
//! fingerprints, DANE records and trust-anchor files go through OpenSSL's DANE verifier.
//! The caller enforces the outcome: a failed handshake is "Cannot start TLS: handshake
//! failure" (opportunistic TLS may retry in plaintext), an unmatched certificate at a
//! matching level is "Server certificate not verified".

use super::certkey;
use super::dane::TlsaRecord;
use super::ffi;
use super::fprint;
use super::grade;
use super::policy::logmask;
use super::policy::{Level, Policy, Settings};
use super::session_cache::{self, CacheSetup, SessionStore};
use crate::log::Level as LogLevel;
use crate::session::conn::Stream;
use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::ssl::{
    self, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslRef, SslSession,
    SslSessionCacheMode, SslStream, SslVerifyMode,
};
use openssl::x509::{X509NameRef, X509Ref, X509VerifyResult};
use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far the server certificate was authenticated (the first word of the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// No certificate (anonymous cipher).
    Anonymous,
    /// A certificate whose chain (or name, or DANE/fingerprint match) failed.
    Untrusted,
    /// The chain verified; no match was required, or only "half" DANE.
    Trusted,
    /// The certificate satisfied the policy's match requirement.
    Verified,
}

impl Trust {
    pub fn name(self) -> &'static str {
        match self {
            Trust::Anonymous => "Anonymous",
            Trust::Untrusted => "Untrusted",
            Trust::Trusted => "Trusted",
            Trust::Verified => "Verified",
        }
    }
}

/// What was negotiated, for logging, Received: headers and the policy decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// "host[addr]:port" as used in the log lines.
    pub namaddr: String,
    /// The effective level: DANE falls back to encrypt when no TLSA record is usable.
    pub level: Level,
    pub protocol: String,
    pub cipher: String,
    pub cipher_bits: i32,
    pub cipher_alg_bits: i32,
    pub kex_name: String,
    pub kex_curve: String,
    pub kex_bits: u32,
    pub server_sig_name: String,
    pub server_sig_curve: String,
    pub server_sig_bits: u32,
    pub server_sig_digest: String,
    pub client_sig_name: String,
    pub client_sig_curve: String,
    pub client_sig_bits: u32,
    pub client_sig_digest: String,
    pub trust: Trust,
    /// The match requirement of a fingerprint/DANE/verify/secure level was met.
    pub matched: bool,
    /// The session was resumed from the cache (no certificate checks were run).
    pub reused: bool,
    pub peer_cn: String,
    pub issuer_cn: String,
    pub cert_fingerprint: String,
    pub pkey_fingerprint: String,
    /// The reference name that matched (SSL_get0_peername), if any.
    pub verified_name: Option<String>,
    /// Postfix's info line about why verification failed, when the level requires a
    /// match and it was not met (to log with msg_info).
    pub verify_failure: Option<String>,
    /// Info lines of the verbose log levels about the peer: "Reusing old session",
    /// "matched peername", "Matched DANE ...", in Postfix's order before the verification
    /// failure; the "subject_CN=..." line is `subject_line`.
    pub details: Vec<String>,
    /// "subject_CN=..., issuer_CN=..., fingerprint=..., pkey_fingerprint=..." (verbose).
    pub subject_line: Option<String>,
    /// Warnings from setting up the handshake (unusable fingerprints or TLSA records,
    /// invalid match names, protocol limits), to be logged even when it succeeded.
    pub setup_warnings: Vec<String>,
}

impl TlsInfo {
    /// Postfix's summary line (tls_log_summary), e.g. `Verified TLS connection established
    /// to mx.example.com[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384
    /// (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits)
    /// server-digest SHA256`. `reused_connection` selects "reused" (a cached connection).
    pub fn summary(&self, reused_connection: bool) -> String {
        let mut s = format!(
            "{} TLS connection {} to {}: {} with cipher {} ({}/{} bits)",
            self.trust.name(),
            if reused_connection {
                "reused"
            } else {
                "established"
            },
            self.namaddr,
            self.protocol,
            self.cipher,
            self.cipher_bits,
            self.cipher_alg_bits
        );
        if !self.kex_name.is_empty() {
            s.push_str(&format!(" key-exchange {}", self.kex_name));
            if !self.kex_curve.is_empty() {
                s.push_str(&format!(" ({})", self.kex_curve));
            } else if self.kex_bits > 0 {
                s.push_str(&format!(" ({} bits)", self.kex_bits));
            }
        }
        for (who, name, curve, bits, dgst) in [
            (
                "server",
                &self.server_sig_name,
                &self.server_sig_curve,
                self.server_sig_bits,
                &self.server_sig_digest,
            ),
            (
                "client",
                &self.client_sig_name,
                &self.client_sig_curve,
                self.client_sig_bits,
                &self.client_sig_digest,
            ),
        ] {
            if name.is_empty() {
                continue;
            }
            s.push_str(&format!(" {who}-signature {name}"));
            if !curve.is_empty() {
                s.push_str(&format!(" ({curve})"));
            } else if bits > 0 {
                s.push_str(&format!(" ({bits} bits)"));
            }
            if !dgst.is_empty() {
                s.push_str(&format!(" {who}-digest {dgst}"));
            }
        }
        s
    }

    /// The policy decision after the handshake: `Err((status, text))` when the level
    /// requires a match that the certificate did not provide (smtp_site_fail, 4.7.5).
    pub fn enforce(&self) -> Result<(), (&'static str, &'static str)> {
        if self.level.must_match() && !self.matched {
            return Err(("4.7.5", "Server certificate not verified"));
        }
        Ok(())
    }
}

/// A failed TLS start. The connection is unusable afterwards (the peer is in an unknown
/// state); with opportunistic TLS the caller may retry the same server in plaintext.
#[derive(Debug)]
pub struct HandshakeError {
    /// Lines to log first (msg_warn / msg_info texts from the TLS layer).
    pub log: Vec<String>,
    /// Enhanced status code for the deferral.
    pub status: &'static str,
    /// "Cannot start TLS: handshake failure".
    pub reason: &'static str,
}

impl HandshakeError {
    fn new(log: Vec<String>) -> HandshakeError {
        HandshakeError {
            log,
            status: "4.7.5",
            reason: "Cannot start TLS: handshake failure",
        }
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason)
    }
}

/// Per-connection facts the handshake needs besides the policy.
pub struct StartProps<'a> {
    pub policy: &'a Policy,
    /// The next-hop domain (for `nexthop` / `dot-nexthop` and servername=nexthop).
    pub nexthop: &'a str,
    /// The server host name (for `hostname` and servername=hostname).
    pub host: &'a str,
    /// "host[addr]:port" for log lines.
    pub namaddr: &'a str,
    /// The first part of the session-cache name (`session_cache::serverid_prefix`).
    pub serverid: &'a str,
    /// The server's name from its EHLO reply ("" before EHLO, in wrapper mode).
    pub helo: &'a str,
    /// smtp_starttls_timeout: the whole handshake must finish within it.
    pub timeout: Duration,
}

/// The plaintext stream under TLS; during the handshake each read and write gets what is
/// left of the overall deadline.
struct Under {
    inner: Box<dyn Stream>,
    deadline: Option<Instant>,
    /// Log every TLS record read and written as a hex dump (the packet-dump log
    /// features: the handshake only, or the whole session).
    dump: bool,
}

/// One read or write of TLS records as Postfix's packet dump logs it: the call, then 16
/// bytes per line in hex and text, trailing spaces and NULs summarised. The "addresses"
/// only tell calls apart, as in Postfix.
fn dump_io(what: &str, obj: usize, buf: &[u8], asked: usize, got: &io::Result<usize>) {
    let base = buf.as_ptr() as usize;
    match got {
        Ok(n) if *n > 0 => {
            crate::log::info(&format!(
                "{what} {obj:08X} [{base:08X}] ({asked} bytes => {n} (0x{n:X}))"
            ));
            for l in dump_lines(&buf[..*n]) {
                crate::log::info(&l);
            }
        }
        Ok(_) => crate::log::info(&format!(
            "{what} {obj:08X} [{base:08X}] ({asked} bytes => 0)"
        )),
        Err(_) => crate::log::info(&format!(
            "{what} {obj:08X} [{base:08X}] ({asked} bytes => -1)"
        )),
    }
}

/// The hex-dump lines of `data` (tls_dump_buffer's layout).
fn dump_lines(data: &[u8]) -> Vec<String> {
    let end = data
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for (i, row) in data[..end].chunks(16).enumerate() {
        let mut l = format!("{:04x} ", i * 16);
        for c in 0..16 {
            match row.get(c) {
                Some(b) => l.push_str(&format!("{b:02x}{}", if c == 7 { '|' } else { ' ' })),
                None => l.push_str("   "),
            }
        }
        l.push(' ');
        for (c, &b) in row.iter().enumerate() {
            l.push(if (0x20..0x7f).contains(&b) {
                char::from(b)
            } else {
                '.'
            });
            if c == 7 {
                l.push(' ');
            }
        }
        out.push(l);
    }
    if end < data.len() {
        out.push(format!("{end:04x} - <SPACES/NULLS>"));
    }
    out
}

impl Under {
    fn arm(&self) -> io::Result<()> {
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.inner.set_timeouts(Some(left))?;
        }
        Ok(())
    }
}

impl Read for Under {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        let r = self.inner.read(buf);
        if self.dump {
            dump_io(
                "read from",
                self as *const Under as usize,
                buf,
                buf.len(),
                &r,
            );
        }
        r
    }
}

impl Write for Under {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        let r = self.inner.write(buf);
        if self.dump {
            dump_io(
                "write to",
                self as *const Under as usize,
                buf,
                buf.len(),
                &r,
            );
        }
        r
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A TLS connection over any `Stream`; what `Conn::replace_stream` installs.
pub struct TlsStream {
    ssl: Mutex<SslStream<Under>>,
    /// Log the first 40 bytes of each read and write (the session packet dump).
    log_chars: bool,
}

impl TlsStream {
    fn get(&mut self) -> &mut SslStream<Under> {
        self.ssl.get_mut().unwrap_or_else(|e| e.into_inner())
    }
}

/// "Read/Write N chars: TEXT" with the first 40 bytes.
fn log_chars(what: &str, data: &[u8]) {
    let head = &data[..data.len().min(40)];
    let head = head.split(|&b| b == 0).next().unwrap_or(&[]);
    crate::log::info(&format!(
        "{what} {} chars: {}",
        data.len(),
        String::from_utf8_lossy(head)
    ));
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.get().read(buf);
        if self.log_chars
            && let Ok(n) = r
            && n > 0
        {
            log_chars("Read", &buf[..n]);
        }
        r
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.log_chars {
            log_chars("Write", buf);
        }
        self.get().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.get().flush()
    }
}

impl Stream for TlsStream {
    fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self.ssl.lock() {
            Ok(s) => s.get_ref().inner.set_timeouts(timeout),
            Err(e) => e.into_inner().get_ref().inner.set_timeouts(timeout),
        }
    }

    /// Sends close_notify (bounded to one second, the peer may be gone) and closes.
    fn close(&self) {
        let mut s = match self.ssl.lock() {
            Ok(s) => s,
            Err(e) => e.into_inner(),
        };
        let _ = s.get_ref().inner.set_timeouts(Some(Duration::from_secs(1)));
        let _ = s.shutdown();
        s.get_ref().inner.close();
    }
    fn input_waiting(&self) -> bool {
        let s = self.ssl.lock().unwrap_or_else(|e| e.into_inner());
        s.ssl().pending() > 0 || s.get_ref().inner.input_waiting()
    }
}

/// A connection's session name, and whether new sessions from it may be cached.
struct SessionName {
    id: String,
    keep: Arc<std::sync::atomic::AtomicBool>,
}

/// The session cache as the engine uses it (shared with the new-session callback).
struct SessionCache {
    store: Mutex<Box<dyn SessionStore>>,
    cache_type: String,
}

impl SessionCache {
    fn store(&self) -> std::sync::MutexGuard<'_, Box<dyn SessionStore>> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The client TLS engine: certificates, CAs and the session cache (tls_client_init).
pub struct ClientContext {
    settings: Settings,
    ctx: SslContext,
    md: MessageDigest,
    /// Present when sessions are cached (smtp_tls_session_cache_database, or tlsmgr's
    /// policy under master).
    cache: Option<Arc<SessionCache>>,
    /// The session name of a connection, for the new-session callback.
    cache_key: Index<Ssl, SessionName>,
    /// Extra entropy for OpenSSL before each handshake (tlsmgr's pool under master).
    entropy: Option<Mutex<EntropySource>>,
    entropy_bytes: usize,
}

/// A source of `n` random bytes.
pub type EntropySource = Box<dyn FnMut(usize) -> Option<Vec<u8>> + Send>;

/// Mixes bytes from an outside source into OpenSSL's generator.
fn add_entropy(src: &Mutex<EntropySource>, n: usize) {
    let mut f = src.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(buf) = f(n) {
        let len = libc::c_int::try_from(buf.len()).unwrap_or(0);
        // SAFETY: buf is valid for len bytes; OpenSSL copies what it needs.
        unsafe { openssl_sys::RAND_add(buf.as_ptr().cast(), len, f64::from(len)) };
    }
}

fn errors(stack: &ErrorStack) -> Vec<String> {
    stack.errors().iter().map(library_problem).collect()
}

/// Engine set-up log lines, each with the severity Postfix gives it.
pub type SetupLog = Vec<(LogLevel, String)>;

fn warning(text: String) -> (LogLevel, String) {
    (LogLevel::Warning, text)
}

/// OpenSSL's queued errors as set-up lines (tls_print_errors logs them as warnings).
fn setup_errors(stack: &ErrorStack) -> SetupLog {
    errors(stack).into_iter().map(warning).collect()
}

/// One queued OpenSSL error in Postfix's form: ERR_error_string_n's text (the function
/// field is empty with OpenSSL 3; system errors get their strerror text), then file, line
/// and, when it is text, the data. The openssl crate's Display adds the function name,
/// which Postfix's log does not have, and has no text for system errors.
pub(super) fn library_problem(e: &openssl::error::Error) -> String {
    let mut buf = [0 as libc::c_char; 1024];
    // SAFETY: the buffer is valid for its length; OpenSSL always NUL-terminates it.
    let text = unsafe {
        ffi::ERR_error_string_n(e.code(), buf.as_mut_ptr(), buf.len());
        CStr::from_ptr(buf.as_ptr())
    };
    let mut s = format!(
        "TLS library problem: {}:{}:{}:",
        text.to_string_lossy(),
        e.file(),
        e.line()
    );
    if let Some(d) = e.data() {
        s.push_str(d);
        s.push(':');
    }
    s
}

/// Longest session lifetime Postfix accepts (100 days).
const MAX_CACHE_TIMEOUT: Duration = Duration::from_secs(8_640_000);

impl ClientContext {
    /// Sets up the engine (tls_client_init) with sessions cached in this process when
    /// smtp_tls_session_cache_database is set; `Err` lines, each with its severity, mean
    /// TLS is unavailable ("TLS is required, but our TLS engine is unavailable" for
    /// mandatory levels, plaintext otherwise). Warnings about a usable set-up are logged
    /// here.
    pub fn new(settings: &Settings) -> Result<ClientContext, SetupLog> {
        let cache = CacheSetup::in_process(settings.session_cache_timeout, "smtp");
        ClientContext::new_with_cache(settings, cache)
    }

    /// Sets up the engine with a session cache (or none).
    pub fn new_with_cache(
        settings: &Settings,
        session_cache: Option<CacheSetup>,
    ) -> Result<ClientContext, SetupLog> {
        let mask = settings.log_mask;
        if let Some(w) = &settings.log_warning {
            crate::log::warn(w);
        }
        if mask & logmask::VERBOSE != 0 {
            crate::log::info("initializing the client-side TLS engine");
        }
        let md = fprint::digest_by_name(&settings.fingerprint_digest).ok_or_else(|| {
            vec![
                warning(format!(
                    "Digest algorithm \"{}\" not found",
                    settings.fingerprint_digest
                )),
                warning("disabling TLS support".to_string()),
            ]
        })?;
        let mut b = SslContextBuilder::new(SslMethod::tls_client()).map_err(|e| {
            let mut v = vec![warning(
                "cannot allocate client SSL_CTX: disabling TLS support".to_string(),
            )];
            v.extend(setup_errors(&e));
            v
        })?;
        // Postfix starts from OpenSSL security level 0 (backwards compatible, for
        // opportunistic TLS: anonymous ciphers, old protocols and small keys stay
        // possible) and raises it to 1 per connection only where a match is required.
        // Without this the library default (1 or 2) silently removed ciphers that
        // smtp_tls_ciphers/exclude settings allow, e.g. the aNULL suites at "encrypt".
        // SAFETY: b wraps a live SSL_CTX.
        unsafe { openssl_sys::SSL_CTX_set_security_level(b.as_ptr(), 0) };
        // One more than the parameter, as Postfix; a negative result means OpenSSL's
        // default limit.
        // SAFETY: b wraps a live SSL_CTX.
        unsafe {
            openssl_sys::SSL_CTX_set_verify_depth(
                b.as_ptr(),
                settings.verify_depth.saturating_add(1),
            )
        };
        // SAFETY: the builder owns a valid SSL_CTX for the duration of these calls; the
        // digest pointer is a static OpenSSL method table.
        unsafe {
            // Needed for fingerprints and trust-anchor files too, not only DANE.
            if ffi::SSL_CTX_dane_enable(b.as_ptr()) <= 0 {
                let mut v = vec![warning(
                    "OpenSSL DANE initialization failed: disabling TLS support".to_string(),
                )];
                v.extend(setup_errors(&ErrorStack::get()));
                return Err(v);
            }
            // The fingerprint level's private-use matching type means the configured
            // digest; the standard ones (1 = SHA-256, 2 = SHA-512) keep OpenSSL's default.
            // Postfix only complains about a failure here and carries on.
            if ffi::SSL_CTX_dane_mtype_set(b.as_ptr(), md.as_ptr(), 255, 3) <= 0 {
                crate::log::warn("tls_dane_digests: error configuring matching type 255");
                for (_, l) in setup_errors(&ErrorStack::get()) {
                    crate::log::warn(&l);
                }
            }
        }
        b.set_options(SslOptions::ALL | SslOptions::NO_COMPRESSION);
        if mask & logmask::DEBUG != 0 {
            // SAFETY: b wraps a live SSL_CTX; the callback is a plain function.
            unsafe { ffi::SSL_CTX_set_info_callback(b.as_ptr(), Some(info_callback)) };
        }
        let (cafile, capath) = (
            certkey::c_string_prefix(&settings.ca_file),
            certkey::c_string_prefix(&settings.ca_path),
        );
        let cafile = (!cafile.is_empty()).then_some(cafile);
        let capath = (!capath.is_empty()).then_some(capath);
        if cafile.is_some() || capath.is_some() {
            let loaded = match (cafile, capath) {
                (Some(f), p) => b.load_verify_locations(Some(f.as_ref()), p.map(AsRef::as_ref)),
                (None, p) => b.load_verify_locations(None, p.map(AsRef::as_ref)),
            };
            // Postfix reports these two with msg_info, the library errors as warnings.
            if let Err(e) = loaded {
                let mut v = vec![(
                    LogLevel::Info,
                    format!(
                        "cannot load Certification Authority data, {}: disabling TLS support",
                        ca_args(cafile, capath)
                    ),
                )];
                v.extend(setup_errors(&e));
                return Err(v);
            }
            if settings.append_default_ca
                && let Err(e) = b.set_default_verify_paths()
            {
                let mut v = vec![(
                    LogLevel::Info,
                    "cannot set default OpenSSL certificate verification paths: disabling TLS support"
                        .to_string(),
                )];
                v.extend(setup_errors(&e));
                return Err(v);
            }
        }
        let mut keylog = SetupLog::new();
        if !certkey::load(&mut b, settings, &mut keylog) {
            return Err(keylog);
        }
        for (level, line) in &keylog {
            crate::log::log(*level, line);
        }
        let cache_key = Ssl::new_ex_index::<SessionName>().map_err(|e| setup_errors(&e))?;
        let cache = match session_cache {
            Some(c) if !c.timeout.is_zero() => {
                let timeout = c.timeout.min(MAX_CACHE_TIMEOUT);
                let cache = Arc::new(SessionCache {
                    store: Mutex::new(c.store),
                    cache_type: c.cache_type,
                });
                // The store is the only cache: OpenSSL keeps none of its own, and a
                // session outlives its time in the store (Postfix sets twice the time).
                b.set_session_cache_mode(
                    SslSessionCacheMode::CLIENT
                        | SslSessionCacheMode::NO_INTERNAL_STORE
                        | SslSessionCacheMode::NO_AUTO_CLEAR,
                );
                let secs = u32::try_from(timeout.as_secs().saturating_mul(2)).unwrap_or(u32::MAX);
                // SAFETY: b wraps a live SSL_CTX.
                unsafe { ffi::SSL_CTX_set_timeout(b.as_ptr(), libc::c_long::from(secs)) };
                let c = Arc::clone(&cache);
                b.set_new_session_callback(move |ssl, session| {
                    let Some(SessionName { id, keep }) = ssl.ex_data(cache_key) else {
                        return;
                    };
                    if !keep.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    if mask & logmask::CACHE != 0 {
                        crate::log::info(&format!("save session {id} to {} cache", c.cache_type));
                    }
                    if let Ok(der) = session.to_der() {
                        c.store().update(id, &der);
                    }
                });
                Some(cache)
            }
            _ => None,
        };
        Ok(ClientContext {
            settings: settings.clone(),
            ctx: b.build(),
            md,
            cache,
            cache_key,
            entropy: None,
            entropy_bytes: 0,
        })
    }

    /// Seeds OpenSSL from `src` now and before each handshake with `n` bytes
    /// (tls_daemon_random_bytes), as Postfix's client does with tlsmgr's pool.
    pub fn with_entropy(mut self, src: EntropySource, n: usize) -> ClientContext {
        let src = Mutex::new(src);
        add_entropy(&src, n);
        self.entropy = Some(src);
        self.entropy_bytes = n;
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A cached session for `id`, logged as Postfix does at the "cache" log feature.
    fn cached_session(&self, id: &str) -> Option<SslSession> {
        let c = self.cache.as_ref()?;
        let log = self.settings.log_mask & logmask::CACHE != 0;
        if log {
            crate::log::info(&format!(
                "looking for session {id} in {} cache",
                c.cache_type
            ));
        }
        let der = c.store().lookup(id)?;
        let s = SslSession::from_der(&der).ok()?;
        if log {
            crate::log::info(&format!(
                "reloaded session {id} from {} cache",
                c.cache_type
            ));
        }
        Some(s)
    }

    /// Drops the session of a failed handshake from the store.
    fn uncache(&self, id: &str) {
        let Some(c) = &self.cache else {
            return;
        };
        if self.settings.log_mask & logmask::CACHE != 0 {
            crate::log::info(&format!("remove session {id} from client cache"));
        }
        c.store().delete(id);
    }

    /// Runs the client handshake over `stream` (after the server's 220 to STARTTLS, or at
    /// once in wrapper mode) and classifies the server certificate.
    pub fn start(
        &self,
        stream: Box<dyn Stream>,
        p: &StartProps<'_>,
    ) -> Result<(TlsStream, TlsInfo), HandshakeError> {
        let pol = p.policy;
        let mask = self.settings.log_mask;
        if let Some(w) = &self.settings.log_warning {
            crate::log::warn(w);
        }
        if mask & logmask::VERBOSE != 0 {
            crate::log::info(&format!("setting up TLS connection to {}", p.namaddr));
        }
        let mut level = pol.level;
        let mut protos = grade::parse_protocols(&pol.protocols).map_err(|_| {
            HandshakeError::new(vec![format!(
                "{}: Invalid TLS protocol list \"{}\": aborting TLS session",
                p.namaddr, pol.protocols
            )])
        })?;
        // SSLv2/SSLv3 are never acceptable with DANE.
        if level.dane_based() {
            protos.exclude |= grade::SSLV2 | grade::SSLV3;
        }
        let mut ssl = Ssl::new(&self.ctx).map_err(|e| HandshakeError::new(errors(&e)))?;
        let clist = grade::cipher_list(&self.settings.cipher_lists, &pol.grade, &pol.exclusions)
            .map_err(|w| HandshakeError::new(vec![format!("{}: {w}", p.namaddr)]))?;
        if let Err(e) = ssl.set_cipher_list(&clist) {
            let mut v = vec![format!(
                "{}: error setting cipher grade: \"{}\"",
                p.namaddr, pol.grade
            )];
            v.extend(errors(&e));
            return Err(HandshakeError::new(v));
        }
        if mask & logmask::VERBOSE != 0 {
            crate::log::info(&format!("{}: TLS cipher list \"{clist}\"", p.namaddr));
        }
        let mut log = Vec::new();
        set_protocols(&mut ssl, protos, p.namaddr, &mut log);

        let must_fail = Arc::new(Mutex::new(false));
        let mut fail_now = false;
        let sni = auth_enable(&mut ssl, p, mask, &mut log, &mut fail_now)?;

        if !pol.tlsa.is_empty() && level.must_match() {
            match add_tlsa(&mut ssl, &pol.tlsa, p.namaddr, &mut log) {
                Err(()) => return Err(HandshakeError::new(log)),
                Ok(0) => match level {
                    Level::HalfDane | Level::Dane => {
                        log.push(format!(
                            "{}: all TLSA records unusable, fallback to unauthenticated TLS",
                            p.namaddr
                        ));
                        level = Level::Encrypt;
                    }
                    _ => {
                        log.push(format!(
                            "{}: {}",
                            p.namaddr,
                            match level {
                                Level::Fingerprint => "all fingerprints unusable",
                                Level::DaneOnly => "all TLSA records unusable",
                                _ => "all trust anchors unusable",
                            }
                        ));
                        fail_now = true;
                    }
                },
                Ok(_) => {}
            }
        }
        *must_fail.lock().unwrap_or_else(|e| e.into_inner()) = fail_now;
        if level.must_match() {
            // SAFETY: ssl is a live SSL object owned by this function.
            unsafe { openssl_sys::SSL_set_security_level(ssl.as_ptr(), 1) };
        }

        let key = session_cache::serverid(
            p.serverid,
            &session_cache::DigestInput {
                helo: p.helo,
                protocols: &pol.protocols,
                cipher_list: &clist,
                must_fail: fail_now,
                level,
                tlsa: &pol.tlsa,
                sni: sni.as_deref(),
            },
        );
        if let Some(sess) = self.cached_session(&key) {
            // SAFETY: the session comes from this same SSL_CTX (the cache belongs to it).
            let _ = unsafe { ssl.set_session(&sess) };
        }
        let keep = Arc::new(std::sync::atomic::AtomicBool::new(true));
        ssl.set_ex_data(
            self.cache_key,
            SessionName {
                id: key.clone(),
                keep: Arc::clone(&keep),
            },
        );

        let verr: Arc<Mutex<VerifyError>> = Arc::new(Mutex::new(VerifyError::default()));
        let ve = Arc::clone(&verr);
        let mf = Arc::clone(&must_fail);
        let namaddr = p.namaddr.to_string();
        // Verification never aborts the handshake (SSL_VERIFY_NONE); the callback only
        // remembers the error closest to the leaf for the log.
        ssl.set_verify_callback(SslVerifyMode::NONE, move |ok, ctx| {
            let depth = ctx.error_depth();
            let issuer = ctx
                .current_cert()
                .map(|c| oneline(c.issuer_name()))
                .unwrap_or_else(|| "<unknown>".into());
            let mut e = ve.lock().unwrap_or_else(|e| e.into_inner());
            if *mf.lock().unwrap_or_else(|e| e.into_inner()) {
                if depth == 0 {
                    // SAFETY: a valid X509_V_ERR code.
                    ctx.set_error(unsafe { X509VerifyResult::from_raw(X509_V_ERR_UNSPECIFIED) });
                    e.update(depth, X509_V_ERR_UNSPECIFIED, issuer);
                }
                return true;
            }
            if !ok {
                e.update(depth, ctx.error().as_raw(), issuer);
            }
            if mask & logmask::VERBOSE != 0 {
                let subject = ctx
                    .current_cert()
                    .map(|c| oneline(c.subject_name()))
                    .unwrap_or_else(|| "<unknown>".into());
                crate::log::info(&format!(
                    "{namaddr}: depth={depth} verify={} subject={subject}",
                    i32::from(ok)
                ));
            }
            true
        });

        if let Some(src) = &self.entropy {
            add_entropy(src, self.entropy_bytes);
        }
        let under = Under {
            inner: stream,
            deadline: Some(Instant::now() + p.timeout.max(Duration::from_secs(1))),
            dump: mask & logmask::TLSPKTS != 0,
        };
        let mut tls = match ssl.connect(under) {
            Ok(s) => s,
            Err(e) => {
                self.uncache(&key);
                log.extend(connect_error(p.namaddr, e));
                return Err(HandshakeError::new(log));
            }
        };
        tls.get_mut().deadline = None;
        // The handshake dump ends here unless the whole session is dumped.
        tls.get_mut().dump = mask & logmask::ALLPKTS != 0;
        let mut info = self.post_connect(tls.ssl(), p, level, fail_now, &verr, (&key, &keep));
        // Postfix logs these as they happen, before the handshake: keep them for the
        // caller also when the handshake succeeds (they were dropped before).
        info.setup_warnings = log;
        Ok((
            TlsStream {
                ssl: Mutex::new(tls),
                log_chars: mask & logmask::ALLPKTS != 0,
            },
            info,
        ))
    }

    fn post_connect(
        &self,
        ssl: &SslRef,
        p: &StartProps<'_>,
        level: Level,
        must_fail: bool,
        verr: &Mutex<VerifyError>,
        (id, keep): (&str, &std::sync::atomic::AtomicBool),
    ) -> TlsInfo {
        let reused = ssl.session_reused();
        let cipher = ssl.current_cipher();
        let bits = cipher.map(|c| c.bits());
        let mut info = TlsInfo {
            namaddr: p.namaddr.to_string(),
            level,
            protocol: ssl.version_str().to_string(),
            cipher: cipher.map(|c| c.name().to_string()).unwrap_or_default(),
            cipher_bits: bits.as_ref().map_or(0, |b| b.secret),
            cipher_alg_bits: bits.as_ref().map_or(0, |b| b.algorithm),
            kex_name: String::new(),
            kex_curve: String::new(),
            kex_bits: 0,
            server_sig_name: String::new(),
            server_sig_curve: String::new(),
            server_sig_bits: 0,
            server_sig_digest: String::new(),
            client_sig_name: String::new(),
            client_sig_curve: String::new(),
            client_sig_bits: 0,
            client_sig_digest: String::new(),
            trust: Trust::Anonymous,
            matched: false,
            reused,
            peer_cn: String::new(),
            issuer_cn: String::new(),
            cert_fingerprint: String::new(),
            pkey_fingerprint: String::new(),
            verified_name: None,
            verify_failure: None,
            details: Vec::new(),
            subject_line: None,
            setup_warnings: Vec::new(),
        };
        // SAFETY: ssl is live; the returned name is owned by it and copied at once.
        info.verified_name = unsafe {
            let n = ffi::SSL_get0_peername(ssl.as_ptr());
            (!n.is_null()).then(|| CStr::from_ptr(n).to_string_lossy().into_owned())
        };
        if let Some(cert) = ssl.peer_certificate() {
            info.cert_fingerprint = fprint::cert_fprint(&cert, self.md).unwrap_or_default();
            info.pkey_fingerprint = fprint::pkey_fprint(&cert, self.md).unwrap_or_default();
            info.issuer_cn = text_name(cert.issuer_name(), Nid::COMMONNAME)
                .or_else(|| text_name(cert.issuer_name(), Nid::ORGANIZATIONNAME))
                .unwrap_or_default();
            info.peer_cn = text_name(cert.subject_name(), Nid::COMMONNAME)
                .or_else(|| info.verified_name.clone())
                .unwrap_or_default();
            let trusted = ssl.verify_result() == X509VerifyResult::OK && !must_fail;
            info.matched = trusted && level.must_match();
            // A resumed session carries the verification of its first handshake, and its
            // name (like Postfix's) does not cover the match list. Postfix trusts it as
            // is; we re-check the names, and drop a session that no longer passes so that
            // the next attempt verifies the server afresh.
            if reused
                && info.matched
                && matches!(level, Level::Verify | Level::Secure)
                && !names_match(&cert, p)
            {
                info.matched = false;
                self.uncache(id);
                // Nor may tickets from this connection take its place.
                keep.store(false, std::sync::atomic::Ordering::Relaxed);
            }
            let mask = self.settings.log_mask;
            if reused && mask & logmask::CACHE != 0 {
                info.details
                    .push(format!("{}: Reusing old session", p.namaddr));
            }
            if info.matched && mask & logmask::CERT_DETAILS != 0 {
                if let Some(n) = &info.verified_name {
                    info.details
                        .push(format!("{}: matched peername: {n}", p.namaddr));
                }
                if let Some(l) = dane_match_line(ssl, p.namaddr, level) {
                    info.details.push(l);
                }
            }
            info.trust = if info.matched && !level.never_secured() {
                Trust::Verified
            } else if trusted {
                Trust::Trusted
            } else {
                Trust::Untrusted
            };
            // Postfix logs why verification failed where a match is required, or for
            // any level with the "untrusted" log feature (when there was an error).
            let untrusted_log = mask & logmask::UNTRUSTED != 0 && {
                let e = verr.lock().unwrap_or_else(|e| e.into_inner());
                e.code != 0 || ssl.verify_result() != X509VerifyResult::OK
            };
            if (level.must_match() || untrusted_log) && !info.matched {
                info.verify_failure = Some(if reused {
                    format!(
                        "{}: re-using session with untrusted certificate, look for details earlier in the log",
                        p.namaddr
                    )
                } else {
                    let e = verr.lock().unwrap_or_else(|e| e.into_inner());
                    let (err, depth, issuer) = if e.code != 0 {
                        (e.code, e.depth, e.issuer.clone())
                    } else {
                        (ssl.verify_result().as_raw(), 0, "<unknown>".into())
                    };
                    verify_error_text(p.namaddr, err, depth, &issuer)
                });
            }
            if mask & logmask::CERT_DETAILS != 0 {
                info.subject_line = Some(format!(
                    "{}: subject_CN={}, issuer_CN={}, fingerprint={}, pkey_fingerprint={}",
                    p.namaddr,
                    info.peer_cn,
                    info.issuer_cn,
                    info.cert_fingerprint,
                    info.pkey_fingerprint
                ));
            }
        }
        if info.protocol == "TLSv1.3" {
            signature_params(ssl, reused, &mut info);
        }
        info
    }
}

/// The verbose line about what a DANE-style match (TLSA records, fingerprints, trust
/// anchors) matched, as Postfix logs it; None when OpenSSL's DANE did not authenticate.
fn dane_match_line(ssl: &SslRef, namaddr: &str, level: Level) -> Option<String> {
    let mut spki: *mut openssl_sys::EVP_PKEY = std::ptr::null_mut();
    // SAFETY: ssl is live; OpenSSL only stores borrowed pointers into the out-parameters.
    let depth =
        unsafe { ffi::SSL_get0_dane_authority(ssl.as_ptr(), std::ptr::null_mut(), &mut spki) };
    if depth < 0 {
        return None;
    }
    if matches!(level, Level::Verify | Level::Secure) {
        return Some(format!("{namaddr}: Matched trust anchor at depth {depth}"));
    }
    let (mut u, mut s, mut m) = (0u8, 0u8, 0u8);
    let mut data: *const u8 = std::ptr::null();
    let mut dlen: libc::size_t = 0;
    // SAFETY: as above; `data` points into the SSL's TLSA record for `dlen` bytes and is
    // copied before the SSL can change.
    let bytes = unsafe {
        ffi::SSL_get0_dane_tlsa(ssl.as_ptr(), &mut u, &mut s, &mut m, &mut data, &mut dlen);
        if data.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(data, dlen).to_vec()
        }
    };
    let shown = super::dane::hex_dump(&bytes);
    Some(if level == Level::Fingerprint {
        format!("{namaddr}: Matched fingerprint: {shown}")
    } else {
        let what = if !spki.is_null() {
            "TA public key verified certificate"
        } else if depth > 0 {
            "TA certificate"
        } else {
            "EE certificate"
        };
        format!("{namaddr}: Matched DANE {what} at depth {depth}: {u} {s} {m} {shown}")
    })
}

/// OpenSSL's handshake progress, logged at the ssl-debug log feature (level 2 and up) as
/// Postfix's info callback does. Installed on the SSL_CTX, so it also reports events after
/// the handshake (TLS 1.3 session tickets).
unsafe extern "C" fn info_callback(
    ssl: *const openssl_sys::SSL,
    where_: libc::c_int,
    ret: libc::c_int,
) {
    // Never unwind into OpenSSL.
    let _ = std::panic::catch_unwind(|| {
        let text = |p: *const libc::c_char| -> String {
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: OpenSSL returns static NUL-terminated strings.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        // SAFETY: ssl is the live SSL the callback is made for.
        let state = || text(unsafe { openssl_sys::SSL_state_string_long(ssl) });
        let w = where_ & !ffi::SSL_ST_MASK;
        let role = if w & ffi::SSL_ST_CONNECT != 0 {
            "SSL_connect"
        } else if w & ffi::SSL_ST_ACCEPT != 0 {
            "SSL_accept"
        } else {
            "unknown"
        };
        if where_ & ffi::SSL_CB_LOOP != 0 {
            crate::log::info(&format!("{role}:{}", state()));
        } else if where_ & ffi::SSL_CB_ALERT != 0 {
            // close_notify is routine.
            if ret & 0xff != 0 {
                let dir = if where_ & ffi::SSL_CB_READ != 0 {
                    "read"
                } else {
                    "write"
                };
                // SAFETY: static strings for any value.
                let (t, d) = unsafe {
                    (
                        text(ffi::SSL_alert_type_string_long(ret)),
                        text(openssl_sys::SSL_alert_desc_string_long(ret)),
                    )
                };
                crate::log::info(&format!("SSL3 alert {dir}:{t}:{d}"));
            }
        } else if where_ & ffi::SSL_CB_EXIT != 0 {
            if ret == 0 {
                crate::log::info(&format!("{role}:failed in {}", state()));
            } else if ret < 0 {
                // SAFETY: ssl is live; SSL_get_error only reads its state.
                let e = unsafe { openssl_sys::SSL_get_error(ssl, ret) };
                if e != openssl_sys::SSL_ERROR_WANT_READ && e != openssl_sys::SSL_ERROR_WANT_WRITE {
                    crate::log::info(&format!("{role}:error in {}", state()));
                }
            }
        }
    });
}

fn ca_args(cafile: Option<&str>, capath: Option<&str>) -> String {
    match (cafile, capath) {
        (Some(f), Some(p)) => format!("CAfile=\"{f}\", CApath=\"{p}\""),
        (Some(f), None) => format!("CAfile=\"{f}\""),
        (None, Some(p)) => format!("CApath=\"{p}\""),
        (None, None) => String::new(),
    }
}

fn set_protocols(ssl: &mut Ssl, p: grade::Protocols, namaddr: &str, log: &mut Vec<String>) {
    let mut op = SslOptions::empty();
    for (bit, o) in [
        (grade::SSLV2, SslOptions::NO_SSLV2),
        (grade::SSLV3, SslOptions::NO_SSLV3),
        (grade::TLSV1, SslOptions::NO_TLSV1),
        (grade::TLSV1_1, SslOptions::NO_TLSV1_1),
        (grade::TLSV1_2, SslOptions::NO_TLSV1_2),
        (grade::TLSV1_3, SslOptions::NO_TLSV1_3),
    ] {
        if p.exclude & bit != 0 {
            op |= o;
        }
    }
    // SAFETY: ssl is a live SSL object owned by the caller.
    unsafe {
        if !op.is_empty() {
            ffi::SSL_set_options(ssl.as_ptr(), op.bits());
        }
        if openssl_sys::SSL_set_min_proto_version(ssl.as_ptr(), p.min) == 0 {
            log.push(version_warning(namaddr, "min", p.min));
        }
        if openssl_sys::SSL_set_max_proto_version(ssl.as_ptr(), p.max) == 0 {
            log.push(version_warning(namaddr, "max", p.max));
        }
    }
}

fn version_warning(namaddr: &str, which: &str, v: i32) -> String {
    if v != 0 {
        format!("{namaddr}: error setting {which}imum TLS version to: 0x{v:04x}")
    } else {
        format!("{namaddr}: error clearing {which}imum TLS version")
    }
}

/// SNI, DANE enabling and reference names for the policy's level (tls_auth_enable).
fn auth_enable(
    ssl: &mut Ssl,
    p: &StartProps<'_>,
    mask: u32,
    log: &mut Vec<String>,
    must_fail: &mut bool,
) -> Result<Option<String>, HandshakeError> {
    let pol = p.policy;
    let mut sni: Option<String> = match pol.sni.as_str() {
        "" => None,
        "hostname" => Some(p.host.to_string()),
        "nexthop" => Some(p.nexthop.to_string()),
        n => Some(n.to_string()),
    };
    let dane_on = |ssl: &mut Ssl, what: &str| -> Result<(), HandshakeError> {
        // SAFETY: ssl is live; a null base domain leaves SNI and names to us.
        let r = unsafe { ffi::SSL_dane_enable(ssl.as_ptr(), std::ptr::null()) };
        if r <= 0 {
            let mut v = vec![format!("{}: {what}", p.namaddr)];
            v.extend(errors(&ErrorStack::get()));
            return Err(HandshakeError::new(v));
        }
        Ok(())
    };
    match pol.level {
        Level::HalfDane | Level::Dane | Level::DaneOnly => {
            dane_on(ssl, "error enabling DANE-based certificate validation")?;
            // SAFETY: ssl is live.
            unsafe { ffi::SSL_dane_set_flags(ssl.as_ptr(), ffi::DANE_FLAG_NO_DANE_EE_NAMECHECKS) };
            // RFC 7672: the SNI name is the TLSA base domain.
            if let Some(b) = &pol.dane_base {
                sni = Some(b.clone());
            }
            add_namechecks(ssl, p, log, must_fail);
        }
        Level::Fingerprint => {
            dane_on(ssl, "error enabling fingerprint certificate validation")?;
            // SAFETY: ssl is live.
            unsafe { ffi::SSL_dane_set_flags(ssl.as_ptr(), ffi::DANE_FLAG_NO_DANE_EE_NAMECHECKS) };
        }
        Level::Verify | Level::Secure => {
            if !pol.tlsa.is_empty() {
                dane_on(ssl, "error configuring local trust anchors")?;
            }
            add_namechecks(ssl, p, log, must_fail);
        }
        _ => {}
    }
    if let Some(name) = sni {
        if name.len() > 255 {
            let head: String = name.chars().take(100).collect();
            log.push(format!(
                "{}: ignoring too long SNI hostname: {head}",
                p.namaddr
            ));
            return Err(HandshakeError::new(std::mem::take(log)));
        }
        if ssl.set_hostname(&name).is_err() {
            log.push(format!(
                "{}: error setting SNI hostname to: {name}",
                p.namaddr
            ));
            return Err(HandshakeError::new(std::mem::take(log)));
        }
        if mask & logmask::DEBUG != 0 {
            crate::log::info(&format!("{}: SNI hostname: {name}", p.namaddr));
        }
        return Ok(Some(name));
    }
    Ok(None)
}

/// Registers the reference names; with none registered OpenSSL would check no name, so
/// the connection must then fail verification.
fn add_namechecks(ssl: &mut Ssl, p: &StartProps<'_>, log: &mut Vec<String>, must_fail: &mut bool) {
    // SAFETY: ssl is live.
    unsafe { ffi::SSL_set_hostflags(ssl.as_ptr(), ffi::X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS) };
    let mut count = 0;
    for m in &p.policy.match_names {
        let name = match reference_name(m, p.nexthop, p.host) {
            Some(n) => n,
            None => {
                log.push(format!("{}: ignoring invalid match name: \".\"", p.namaddr));
                continue;
            }
        };
        let ok = CString::new(name.as_str())
            // SAFETY: ssl is live and the C string outlives the call (OpenSSL copies it).
            .map(|c| unsafe { ffi::SSL_add1_host(ssl.as_ptr(), c.as_ptr()) } == 1)
            .unwrap_or(false);
        if ok {
            count += 1;
        } else {
            log.push(format!(
                "{}: error loading match name: \"{name}\"",
                p.namaddr
            ));
        }
    }
    if count == 0 {
        log.push(format!(
            "{}: could not configure peer name checks",
            p.namaddr
        ));
        *must_fail = true;
    }
}

/// Whether the certificate matches one of the policy's reference names (as OpenSSL
/// checks them during a full handshake).
fn names_match(cert: &X509Ref, p: &StartProps<'_>) -> bool {
    p.policy
        .match_names
        .iter()
        .filter_map(|m| reference_name(m, p.nexthop, p.host))
        .any(|name| {
            // SAFETY: cert is live; the name is passed with its length; no peername out.
            unsafe {
                openssl_sys::X509_check_host(
                    cert.as_ptr(),
                    name.as_ptr().cast(),
                    name.len(),
                    ffi::X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                    std::ptr::null_mut(),
                ) == 1
            }
        })
}

/// The name OpenSSL should check for one match-list entry: `hostname` is the server
/// name, `nexthop` the next-hop domain, `dot-nexthop` and `.domain` any subdomain
/// (OpenSSL's leading-dot reference form). `None` for a bare ".".
pub fn reference_name(entry: &str, nexthop: &str, host: &str) -> Option<String> {
    if entry.eq_ignore_ascii_case("nexthop") {
        Some(nexthop.to_string())
    } else if entry.eq_ignore_ascii_case("dot-nexthop") {
        Some(format!(".{nexthop}"))
    } else if entry.eq_ignore_ascii_case("hostname") {
        Some(host.to_string())
    } else if entry == "." {
        None
    } else {
        Some(entry.to_string())
    }
}

/// Loads TLSA data into the connection; `Ok(n)` usable records, `Err` a hard error.
fn add_tlsa(
    ssl: &mut Ssl,
    recs: &[TlsaRecord],
    namaddr: &str,
    log: &mut Vec<String>,
) -> Result<usize, ()> {
    let mut usable = 0;
    for t in recs {
        // SAFETY: ssl is live; OpenSSL copies the data.
        let r = unsafe {
            ffi::SSL_dane_tlsa_add(
                ssl.as_ptr(),
                t.usage,
                t.selector,
                t.mtype,
                t.data.as_ptr(),
                t.data.len(),
            )
        };
        if r > 0 {
            usable += 1;
        } else if r == 0 {
            log.push(format!("{namaddr}: unusable TLSA RR: {}", t.display()));
        } else {
            log.push(format!(
                "{namaddr}: error loading trust settings: {}",
                t.display()
            ));
            log.extend(errors(&ErrorStack::get()));
            return Err(());
        }
    }
    Ok(usable)
}

fn connect_error(namaddr: &str, e: ssl::HandshakeError<Under>) -> Vec<String> {
    let err = match e {
        ssl::HandshakeError::SetupFailure(s) => {
            let mut v = vec![format!("SSL_connect error to {namaddr}: -1")];
            v.extend(errors(&s));
            return v;
        }
        ssl::HandshakeError::Failure(m) | ssl::HandshakeError::WouldBlock(m) => m.into_error(),
    };
    if let Some(stack) = err.ssl_error()
        && !stack.errors().is_empty()
    {
        let mut v = vec![format!("SSL_connect error to {namaddr}: -1")];
        v.extend(errors(stack));
        return v;
    }
    match err.io_error() {
        Some(io)
            if io.kind() == io::ErrorKind::WouldBlock || io.kind() == io::ErrorKind::TimedOut =>
        {
            vec![format!(
                "SSL_connect error to {namaddr}: Connection timed out"
            )]
        }
        Some(io) => vec![format!(
            "SSL_connect error to {namaddr}: {}",
            crate::log::strerror(io)
        )],
        None => vec![format!("SSL_connect error to {namaddr}: lost connection")],
    }
}

const X509_V_ERR_UNSPECIFIED: i32 = 1;

#[derive(Default)]
struct VerifyError {
    code: i32,
    depth: u32,
    issuer: String,
}

impl VerifyError {
    /// Keeps the error nearest the leaf certificate.
    fn update(&mut self, depth: u32, code: i32, issuer: String) {
        if self.code != 0 && self.depth <= depth {
            return;
        }
        self.code = code;
        self.depth = depth;
        self.issuer = issuer;
    }
}

/// Postfix's wording of a verification failure (tls_log_verify_error); `issuer` is the
/// X509_NAME_oneline form of the failing certificate's issuer.
pub fn verify_error_text(namaddr: &str, err: i32, depth: u32, issuer: &str) -> String {
    let purpose = if depth > 0 { "CA" } else { "server" };
    match err {
        27 => format!(
            "certificate verification failed for {namaddr}: not trusted by local or TLSA policy"
        ),
        18 => format!("certificate verification failed for {namaddr}: self-signed certificate"),
        19 | 20 => {
            format!("certificate verification failed for {namaddr}: untrusted issuer {issuer}")
        }
        9 | 13 => format!(
            "{purpose} certificate verification failed for {namaddr}: certificate not yet valid"
        ),
        10 | 14 => format!(
            "{purpose} certificate verification failed for {namaddr}: certificate has expired"
        ),
        26 => format!(
            "certificate verification failed for {namaddr}: not designated for use as a {purpose} certificate"
        ),
        22 => format!(
            "certificate verification failed for {namaddr}: certificate chain longer than limit({})",
            i64::from(depth) - 1
        ),
        _ => format!(
            "{purpose} certificate verification failed for {namaddr}: num={err}:{}",
            // SAFETY: any int is accepted; unknown codes get OpenSSL's generic text.
            unsafe { X509VerifyResult::from_raw(err) }.error_string()
        ),
    }
}

/// X509_NAME_oneline with non-printable bytes shown as '?', as Postfix logs issuers.
fn oneline(name: &X509NameRef) -> String {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: buf is writable for its length; OpenSSL NUL-terminates within it.
    let s = unsafe {
        let len = libc::c_int::try_from(buf.len()).unwrap_or(0);
        let p = ffi::X509_NAME_oneline(name.as_ptr(), buf.as_mut_ptr(), len);
        if p.is_null() {
            return "<unknown>".into();
        }
        CStr::from_ptr(buf.as_ptr()).to_bytes().to_vec()
    };
    s.iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

/// The first entry of `nid` as UTF-8, refused (None) when it has NUL or ASCII control
/// characters, or is too long, as Postfix does for peer names.
fn text_name(name: &X509NameRef, nid: Nid) -> Option<String> {
    let e = name.entries_by_nid(nid).next()?;
    let data = e.data();
    // A NUL inside the value would let "good.example\0.evil" pass as "good.example".
    if data
        .as_slice()
        .iter()
        .rev()
        .skip_while(|&&b| b == 0)
        .any(|&b| b == 0)
    {
        return None;
    }
    let s = data.to_string().ok()?.to_string();
    let s = s.trim_end_matches('\0');
    if s.len() >= 256
        || s.bytes()
            .any(|b| b == 0 || (b.is_ascii() && !(0x20..0x7f).contains(&b)))
    {
        return None;
    }
    Some(s.to_string())
}

fn pkey_desc(k: &PKey<Public>) -> (String, String, u32) {
    match k.id() {
        Id::RSA => ("RSA-PSS".into(), String::new(), k.bits()),
        Id::EC => (
            "ECDSA".into(),
            k.ec_key()
                .ok()
                .and_then(|e| e.group().curve_name())
                .and_then(|n| n.short_name().ok())
                .unwrap_or_default()
                .to_string(),
            0,
        ),
        other => (
            Nid::from_raw(other.as_raw())
                .short_name()
                .unwrap_or_default()
                .to_string(),
            String::new(),
            0,
        ),
    }
}

fn sig_digest(ssl: &SslRef, cmd: libc::c_int) -> String {
    let mut nid: libc::c_int = 0;
    // SAFETY: ssl is live; the control writes one int through the pointer.
    let ok = unsafe {
        openssl_sys::SSL_ctrl(ssl.as_ptr(), cmd, 0, (&mut nid as *mut libc::c_int).cast())
    };
    if ok == 0 || nid == 0 {
        return String::new();
    }
    Nid::from_raw(nid)
        .short_name()
        .unwrap_or_default()
        .to_string()
}

/// Key exchange and signature details (TLS 1.3 only, as in Postfix).
fn signature_params(ssl: &SslRef, reused: bool, info: &mut TlsInfo) {
    if let Ok(k) = ssl.peer_tmp_key() {
        match k.id() {
            Id::DH => {
                info.kex_name = "DHE".into();
                info.kex_bits = k.bits();
            }
            Id::EC => {
                info.kex_name = "ECDHE".into();
                info.kex_curve = pkey_desc(&k).1;
            }
            other => {
                info.kex_name = Nid::from_raw(other.as_raw())
                    .short_name()
                    .unwrap_or_default()
                    .to_string();
            }
        }
    }
    if reused {
        return;
    }
    let local_dgst = sig_digest(ssl, ffi::SSL_CTRL_GET_SIGNATURE_NID);
    if !local_dgst.is_empty()
        && let Some(c) = ssl.certificate()
        && let Ok(k) = c.public_key()
    {
        let (n, curve, bits) = pkey_desc(&k);
        info.client_sig_name = n;
        info.client_sig_curve = curve;
        info.client_sig_bits = bits;
        info.client_sig_digest = local_dgst;
    }
    if let Some(c) = ssl.peer_certificate()
        && let Ok(k) = c.public_key()
    {
        let (n, curve, bits) = pkey_desc(&k);
        info.server_sig_name = n;
        info.server_sig_curve = curve;
        info.server_sig_bits = bits;
        info.server_sig_digest = sig_digest(ssl, ffi::SSL_CTRL_GET_PEER_SIGNATURE_NID);
    }
}

/// Certificate fingerprint helper for callers that hold an `X509Ref` (tests, tools).
pub fn fingerprints(cert: &X509Ref, md: MessageDigest) -> (String, String) {
    (
        fprint::cert_fprint(cert, md).unwrap_or_default(),
        fprint::pkey_fprint(cert, md).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_names() {
        assert_eq!(
            reference_name("nexthop", "example.com", "mx").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            reference_name("dot-nexthop", "example.com", "mx").as_deref(),
            Some(".example.com")
        );
        assert_eq!(
            reference_name("HOSTNAME", "e", "mx.e").as_deref(),
            Some("mx.e")
        );
        assert_eq!(
            reference_name(".example.net", "e", "h").as_deref(),
            Some(".example.net")
        );
        assert_eq!(reference_name(".", "e", "h"), None);
    }

    #[test]
    fn verify_texts() {
        let n = "mx.example.com[192.0.2.1]:25";
        assert_eq!(
            verify_error_text(n, 10, 0, ""),
            "server certificate verification failed for mx.example.com[192.0.2.1]:25: certificate has expired"
        );
        assert_eq!(
            verify_error_text(n, 10, 1, ""),
            "CA certificate verification failed for mx.example.com[192.0.2.1]:25: certificate has expired"
        );
        assert_eq!(
            verify_error_text(n, 20, 0, "/CN=Test CA"),
            "certificate verification failed for mx.example.com[192.0.2.1]:25: untrusted issuer /CN=Test CA"
        );
        assert_eq!(
            verify_error_text(n, 62, 0, ""),
            "server certificate verification failed for mx.example.com[192.0.2.1]:25: num=62:hostname mismatch"
        );
    }

    #[test]
    fn packet_dump_layout() {
        let mut data: Vec<u8> = b"EHLO client.test\r\n".to_vec();
        data.extend_from_slice(&[0, b' ', 0]);
        assert_eq!(
            dump_lines(&data),
            vec![
                "0000 45 48 4c 4f 20 63 6c 69|65 6e 74 2e 74 65 73 74  EHLO cli ent.test",
                "0010 0d 0a                                            ..",
                "0012 - <SPACES/NULLS>",
            ]
        );
        assert!(dump_lines(&[0, 0]).len() == 1);
    }

    #[test]
    fn summary_format() {
        let info = TlsInfo {
            namaddr: "mx.example.com[1.2.3.4]:25".into(),
            level: Level::Verify,
            protocol: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            cipher_bits: 256,
            cipher_alg_bits: 256,
            kex_name: "X25519".into(),
            kex_curve: String::new(),
            kex_bits: 0,
            server_sig_name: "RSA-PSS".into(),
            server_sig_curve: String::new(),
            server_sig_bits: 2048,
            server_sig_digest: "SHA256".into(),
            client_sig_name: String::new(),
            client_sig_curve: String::new(),
            client_sig_bits: 0,
            client_sig_digest: String::new(),
            trust: Trust::Verified,
            matched: true,
            reused: false,
            peer_cn: String::new(),
            issuer_cn: String::new(),
            cert_fingerprint: String::new(),
            pkey_fingerprint: String::new(),
            verified_name: None,
            verify_failure: None,
            details: Vec::new(),
            subject_line: None,
            setup_warnings: Vec::new(),
        };
        assert_eq!(
            info.summary(false),
            "Verified TLS connection established to mx.example.com[1.2.3.4]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256"
        );
        assert!(info.enforce().is_ok());
        let mut u = info.clone();
        u.matched = false;
        u.trust = Trust::Untrusted;
        assert_eq!(
            u.enforce(),
            Err(("4.7.5", "Server certificate not verified"))
        );
        u.level = Level::Encrypt;
        assert!(u.enforce().is_ok());
        let mut e = info;
        e.kex_name = "ECDHE".into();
        e.kex_curve = "prime256v1".into();
        e.server_sig_name = "ECDSA".into();
        e.server_sig_curve = "prime256v1".into();
        e.trust = Trust::Trusted;
        assert!(
            e.summary(true)
                .starts_with("Trusted TLS connection reused to")
        );
        assert!(e.summary(true).ends_with(
            "key-exchange ECDHE (prime256v1) server-signature ECDSA (prime256v1) server-digest SHA256"
        ));
    }
}
