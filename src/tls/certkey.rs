//! Our own (client) private keys and certificates, put into the OpenSSL context the way
//! Postfix 3.7's tls_set_my_certificate_key_info does it, log lines included.
//!
//! * smtp_tls_chain_files, when not empty, replaces everything else: its files form one
//!   stream of PEM objects in which each private key comes first and is followed by its
//!   certificate and that certificate's issuers; a new key starts the next chain (one per
//!   algorithm; a second chain for an algorithm already loaded is refused).
//! * Otherwise the RSA, DSA and ECDSA (cert, key) file pairs, each when its certificate
//!   file is set. When both names are the same string the file is read in one pass with
//!   the key anywhere in it (the "mixed" loader below); otherwise OpenSSL's file loaders
//!   read the two files.
//!
//! The PEM reader and DER decoders are OpenSSL's own (through `ffi`), so that what parses,
//! what counts as a clean end of file and which library errors get reported are the same
//! as in Postfix.

use super::client::{SetupLog as Lines, library_problem};
use super::ffi;
use super::policy::Settings;
use crate::log::Level;
use foreign_types::ForeignType;
use libc::{c_char, c_int, c_long, c_uchar};
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslContextBuilder, SslFiletype};
use openssl::stack::Stack;
use openssl::x509::X509;
use std::ffi::{CStr, CString};
use std::ptr;

/// Loads the configured keys and certificates into `b`. `false` means TLS must be
/// disabled; the reasons (and any warnings on success) are appended to `log`.
pub fn load(b: &mut SslContextBuilder, s: &Settings, log: &mut Lines) -> bool {
    let chain_files = c_string_prefix(&s.chain_files);
    if !chain_files.is_empty() {
        return load_chain_files(b, chain_files, log);
    }
    for (kind, cert, key) in [
        ("RSA", &s.cert_file, &s.key_file),
        ("DSA", &s.dcert_file, &s.dkey_file),
        ("ECDSA", &s.eccert_file, &s.eckey_file),
    ] {
        let cert = c_string_prefix(cert);
        if !cert.is_empty() && !load_pair(b, kind, cert, c_string_prefix(key), log) {
            return false;
        }
    }
    true
}

/// Postfix sees parameter values as C strings: anything after a NUL byte does not exist.
/// Cutting there also keeps OpenSSL path arguments valid (the openssl crate panics on
/// an interior NUL).
pub(super) fn c_string_prefix(s: &str) -> &str {
    s.split('\0').next().unwrap_or("")
}

fn warn(log: &mut Lines, text: String) {
    log.push((Level::Warning, text));
}

/// Drains OpenSSL's error queue into `log`, as warnings (tls_print_errors).
fn library_errors(log: &mut Lines) {
    stack_errors(&ErrorStack::get(), log);
}

/// The errors a failed `openssl` crate call took off the queue (it drains the whole
/// queue, which is what Postfix would have printed at that point).
fn stack_errors(e: &ErrorStack, log: &mut Lines) {
    for err in e.errors() {
        log.push((Level::Warning, library_problem(err)));
    }
}

fn clear_library_errors() {
    // SAFETY: only touches this thread's OpenSSL error queue.
    unsafe { openssl_sys::ERR_clear_error() };
}

/// One (cert, key) pair of the per-algorithm parameters.
fn load_pair(
    b: &mut SslContextBuilder,
    kind: &str,
    cert: &str,
    key: &str,
    log: &mut Lines,
) -> bool {
    // The same name for both (key_file defaults to $cert_file) means one file read in a
    // single pass, so that a key rollover cannot pair an old key with a new certificate.
    if cert == key {
        return load_mixed_file(b, cert, log);
    }
    clear_library_errors();
    if let Err(e) = b.set_certificate_chain_file(cert) {
        warn(
            log,
            format!("cannot get {kind} certificate from file \"{cert}\": disabling TLS support"),
        );
        stack_errors(&e, log);
        return false;
    }
    if let Err(e) = b.set_private_key_file(key, SslFiletype::PEM) {
        warn(
            log,
            format!("cannot get {kind} private key from file \"{key}\": disabling TLS support"),
        );
        stack_errors(&e, log);
        return false;
    }
    if b.check_private_key().is_err() {
        // No library errors here: Postfix logs only its own line for a mismatch.
        warn(
            log,
            format!(
                "{kind} private key in {key} does not match public key in {cert}: disabling TLS support"
            ),
        );
        return false;
    }
    true
}

/// Where the reader stands. The numbers are Postfix's, for the internal-error line; the
/// two negative states stop reading (`Fail` also reports OpenSSL's errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Unusable object or sequence (already explained).
    NoGo = -2,
    /// A library call failed; its queued errors explain why.
    Fail = -1,
    /// Nothing seen yet.
    Init = 1,
    /// The last object was a key.
    PKey = 2,
    /// The last object was a certificate.
    Cert = 3,
    /// Mixed mode: the key and the first certificate have both been seen.
    Both = 4,
}

impl State {
    fn stops(self) -> bool {
        matches!(self, State::NoGo | State::Fail)
    }
}

/// smtp_tls_chain_files: every file in turn, one state across all of them, so a chain
/// may continue in the next file.
fn load_chain_files(b: &mut SslContextBuilder, chain_files: &str, log: &mut Lines) -> bool {
    let files: Vec<&str> = chain_files
        .split([',', ' ', '\t', '\r', '\n'])
        .filter(|f| !f.is_empty())
        .collect();
    let mut ld = Loader::new(b, chain_files, false, log);
    for (i, file) in files.iter().enumerate() {
        ld.source = file.to_string();
        let bio = match Bio::open(file) {
            Ok(bio) => bio,
            Err(e) => {
                let text = format!(
                    "error opening chain file: {file}: {}",
                    crate::log::strerror(&e)
                );
                warn(ld.log, text);
                // Postfix 3.7 stops here but reports success: TLS stays enabled with
                // whatever chains were completed before this file.
                return true;
            }
        };
        if !ld.load_bio(bio, i + 1 == files.len()) {
            return false;
        }
    }
    true
}

/// A (cert, key) pair naming one file: at most one key, anywhere; the first certificate
/// is the leaf and the others its issuers.
fn load_mixed_file(b: &mut SslContextBuilder, file: &str, log: &mut Lines) -> bool {
    let bio = match Bio::open(file) {
        Ok(bio) => bio,
        Err(e) => {
            warn(
                log,
                format!(
                    "error opening chain file: {file}: {}",
                    crate::log::strerror(&e)
                ),
            );
            return false;
        }
    };
    Loader::new(b, file, true, log).load_bio(bio, true)
}

/// The PEM stream reader (Postfix's pem_load_state).
struct Loader<'a> {
    /// The context the chains go into, borrowed for as long as the loader lives.
    ctx: &'a mut SslContextBuilder,
    /// The whole chain_files value, or the mixed file: named in the final lines.
    origin: String,
    /// The file being read.
    source: String,
    /// The file and object number (from 1 in each file) of the current key.
    keysrc: String,
    keynum: i32,
    objnum: i32,
    pkey: Option<PKey<Private>>,
    cert: Option<X509>,
    chain: Vec<X509>,
    state: State,
    mixed: bool,
    log: &'a mut Lines,
}

impl<'a> Loader<'a> {
    fn new(b: &'a mut SslContextBuilder, origin: &str, mixed: bool, log: &'a mut Lines) -> Self {
        Loader {
            ctx: b,
            origin: origin.to_string(),
            source: origin.to_string(),
            keysrc: String::new(),
            keynum: 0,
            objnum: 0,
            pkey: None,
            cert: None,
            chain: Vec::new(),
            state: State::Init,
            mixed,
            log,
        }
    }

    fn warn(&mut self, text: String) {
        warn(self.log, text);
    }

    /// Reads one file to its end. With `last` false a clean end only pauses (the next
    /// file continues the current chain); with `last` true the final chain is installed.
    fn load_bio(&mut self, bio: Bio, last: bool) -> bool {
        // Errors queued before us are not ours to report.
        clear_library_errors();
        self.objnum = 1;
        let clean_end = loop {
            let Some(state) = self.next_object(&bio) else {
                break true;
            };
            // Remember where the current key is, for the messages about its chain. In
            // mixed mode only the first key counts (later ones are ignored). Note that a
            // skipped object right after a key also moves the position, as in Postfix.
            if (self.mixed && self.keynum == 0 && matches!(state, State::PKey | State::Both))
                || (!self.mixed && state == State::PKey)
            {
                self.keynum = self.objnum;
                self.keysrc = self.source.clone();
            }
            if state.stops() {
                break false;
            }
            self.objnum += 1;
        };
        drop(bio);
        if !last && clean_end {
            return true;
        }
        match self.state {
            State::Fail => library_errors(self.log),
            State::NoGo => {}
            State::Init => {
                let text = format!("No PEM data in {}", self.origin);
                self.warn(text);
            }
            State::PKey => {
                let text = format!(
                    "No certs for key at index {} in {}",
                    self.keynum, self.keysrc
                );
                self.warn(text);
            }
            State::Cert if self.mixed => {
                let text = format!("No private key found in {}", self.origin);
                self.warn(text);
            }
            State::Cert | State::Both => {
                if self.use_chain() {
                    return true;
                }
                let text = format!(
                    "key at index {} in {} does not match next certificate",
                    self.keynum, self.keysrc
                );
                self.warn(text);
                library_errors(self.log);
            }
        }
        self.pkey = None;
        self.cert = None;
        self.chain.clear();
        let text = format!(
            "error loading private keys and certificates from: {}: disabling TLS support",
            self.origin
        );
        self.warn(text);
        false
    }

    /// Reads and handles the next PEM object; `None` at a clean end of the file (no
    /// further BEGIN line), otherwise the new state.
    fn next_object(&mut self, bio: &Bio) -> Option<State> {
        let obj = match PemObject::read(bio) {
            Ok(Some(obj)) => obj,
            Ok(None) => return None,
            Err(()) => {
                self.state = State::Fail;
                return Some(self.state);
            }
        };
        match obj.name() {
            b"CERTIFICATE" | b"X509 CERTIFICATE" => self.load_cert(&obj),
            // PKCS#8 carries its own algorithm; the traditional forms name theirs.
            b"PRIVATE KEY" => self.load_pkey(None, &obj),
            b"RSA PRIVATE KEY" => self.load_pkey(Some(openssl_sys::EVP_PKEY_RSA), &obj),
            b"EC PRIVATE KEY" => self.load_pkey(Some(openssl_sys::EVP_PKEY_EC), &obj),
            b"DSA PRIVATE KEY" => self.load_pkey(Some(openssl_sys::EVP_PKEY_DSA), &obj),
            other if !self.mixed => {
                let text = format!(
                    "loading {}: ignoring PEM type: {}",
                    self.source,
                    String::from_utf8_lossy(other)
                );
                self.warn(text);
            }
            _ => {}
        }
        Some(self.state)
    }

    fn load_cert(&mut self, obj: &PemObject) {
        let (cert, exact) = obj.decode_cert();
        // Outside mixed mode every chain starts with its key.
        if !self.mixed && self.state == State::Init {
            let text = format!("error loading chain from {}: key not first", self.source);
            self.warn(text);
            self.state = State::NoGo;
            return;
        }
        let Some(cert) = cert else {
            let text = format!(
                "error loading certificate (PEM object number {}) from {}",
                self.objnum, self.source
            );
            self.warn(text);
            self.state = State::Fail;
            return;
        };
        if !exact {
            let text = format!(
                "error loading certificate (PEM object number {}) from {}: excess data",
                self.objnum, self.source
            );
            self.warn(text);
            self.state = State::NoGo;
            return;
        }
        // The first certificate after the key (or, in mixed mode, before it) is the
        // leaf; the rest are its issuers.
        match self.state {
            State::PKey => {
                self.cert = Some(cert);
                self.state = if self.mixed { State::Both } else { State::Cert };
            }
            State::Init => {
                self.cert = Some(cert);
                self.state = State::Cert;
            }
            State::Cert | State::Both => self.chain.push(cert),
            State::NoGo | State::Fail => {}
        }
    }

    /// `nid`: the algorithm of a traditional key, `None` for PKCS#8.
    fn load_pkey(&mut self, nid: Option<c_int>, obj: &PemObject) {
        let (pkey, exact) = obj.decode_key(nid);
        match self.state {
            State::Init | State::Cert => {
                // A key after certificates closes the previous chain (not in mixed mode,
                // where the certificates before the key are its own).
                if self.state == State::Cert && !self.mixed && !self.use_chain() {
                    let text = format!(
                        "error loading certificate chain: key at index {} in {} does not match the certificate",
                        self.keynum, self.keysrc
                    );
                    self.warn(text);
                    self.state = State::Fail;
                    return;
                }
                let Some(pkey) = pkey else {
                    let text = format!(
                        "error loading private key (PEM object number {}) from {}",
                        self.objnum, self.source
                    );
                    self.warn(text);
                    self.state = State::Fail;
                    return;
                };
                if !exact {
                    let text = format!(
                        "error loading private key (PEM object number {}) from {}: excess data",
                        self.objnum, self.source
                    );
                    self.warn(text);
                    self.state = State::NoGo;
                    return;
                }
                self.pkey = Some(pkey);
                self.state = if self.state == State::Cert && self.mixed {
                    State::Both
                } else {
                    State::PKey
                };
            }
            State::PKey | State::Both => {
                drop(pkey);
                if self.mixed {
                    let text = format!(
                        "ignoring 2nd key at index {} in {} after 1st at {}",
                        self.objnum, self.source, self.keynum
                    );
                    self.warn(text);
                    return;
                }
                let text = format!(
                    "error loading certificate chain: key at index {} in {} not followed by a certificate",
                    self.keynum, self.keysrc
                );
                self.warn(text);
                self.state = State::NoGo;
            }
            State::NoGo | State::Fail => {
                // Reading stops in these states, so this is a bug if it happens.
                self.log.push((
                    Level::Error,
                    format!(
                        "load_pkey: internal error: bad state: {}",
                        self.state as i32
                    ),
                ));
                self.state = State::NoGo;
            }
        }
    }

    /// Installs the current key, leaf and issuers in the context. Without replacement:
    /// a second chain for an algorithm that already has one fails.
    fn use_chain(&mut self) -> bool {
        let (Some(cert), Some(pkey)) = (self.cert.take(), self.pkey.take()) else {
            self.chain.clear();
            return false;
        };
        let issuers = std::mem::take(&mut self.chain);
        // No issuers means no stack at all: OpenSSL then builds the chain from the trust
        // store at handshake time, which an empty stack would prevent.
        let stack = if issuers.is_empty() {
            None
        } else {
            let Ok(mut stack) = Stack::new() else {
                return false;
            };
            for c in issuers {
                if stack.push(c).is_err() {
                    return false;
                }
            }
            Some(stack)
        };
        let chain_ptr = stack.as_ref().map_or(ptr::null_mut(), |s| s.as_ptr());
        // SAFETY: ctx is the live SSL_CTX of the builder this loader borrows; cert, pkey
        // and the stack are owned here and OpenSSL takes its own references to them.
        unsafe {
            ffi::SSL_CTX_use_cert_and_key(
                self.ctx.as_ptr(),
                cert.as_ptr(),
                pkey.as_ptr(),
                chain_ptr,
                0,
            ) != 0
        }
    }
}

/// Why a PEM file could not be read to its end.
pub(crate) enum PemError {
    /// The file could not be opened.
    Open(std::io::Error),
    /// A malformed object; OpenSSL's error lines.
    Read(Lines),
}

/// Every PEM object of a file, as (type name, decoded bytes), read as Postfix reads
/// trust-anchor files: up to the first malformed object, which fails the whole file.
pub(crate) fn pem_objects(path: &str) -> Result<Vec<(String, Vec<u8>)>, PemError> {
    clear_library_errors();
    let bio = Bio::open(path).map_err(PemError::Open)?;
    let mut out = Vec::new();
    loop {
        match PemObject::read(&bio) {
            Ok(Some(obj)) => {
                let len = usize::try_from(obj.len).unwrap_or(0);
                let data = if obj.data.is_null() || len == 0 {
                    Vec::new()
                } else {
                    // SAFETY: PEM_read_bio allocated `len` bytes at `data`.
                    unsafe { std::slice::from_raw_parts(obj.data, len) }.to_vec()
                };
                out.push((String::from_utf8_lossy(obj.name()).into_owned(), data));
            }
            Ok(None) => return Ok(out),
            Err(()) => {
                let mut log = Lines::new();
                library_errors(&mut log);
                return Err(PemError::Read(log));
            }
        }
    }
}

/// An OpenSSL file BIO opened for reading.
struct Bio(*mut openssl_sys::BIO);

impl Bio {
    /// The error is errno from the failed fopen (Postfix's `%m`).
    fn open(path: &str) -> std::io::Result<Bio> {
        let c = CString::new(path).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: both arguments are NUL-terminated strings that outlive the call.
        let p = unsafe { ffi::BIO_new_file(c.as_ptr(), c"r".as_ptr()) };
        if p.is_null() {
            // OpenSSL keeps errno intact while it queues its own errors.
            return Err(std::io::Error::last_os_error());
        }
        Ok(Bio(p))
    }
}

impl Drop for Bio {
    fn drop(&mut self) {
        // SAFETY: the BIO was created by BIO_new_file and is freed only here.
        unsafe { ffi::BIO_free(self.0) };
    }
}

/// One PEM object as PEM_read_bio returns it: type name, headers and decoded bytes, all
/// allocated by OpenSSL.
struct PemObject {
    name: *mut c_char,
    header: *mut c_char,
    data: *mut c_uchar,
    len: c_long,
}

impl PemObject {
    /// `Ok(None)`: no further object (no BEGIN line up to the end of the file);
    /// `Err`: a malformed object, the reason is in OpenSSL's error queue.
    fn read(bio: &Bio) -> Result<Option<PemObject>, ()> {
        let mut obj = PemObject {
            name: ptr::null_mut(),
            header: ptr::null_mut(),
            data: ptr::null_mut(),
            len: 0,
        };
        // SAFETY: the BIO is live; the out-pointers refer to fields of `obj`, whose Drop
        // frees whatever OpenSSL allocated into them (nothing, on failure).
        let ok = unsafe {
            ffi::PEM_read_bio(
                bio.0,
                &mut obj.name,
                &mut obj.header,
                &mut obj.data,
                &mut obj.len,
            )
        };
        if ok != 0 {
            return Ok(Some(obj));
        }
        // SAFETY: reads this thread's error queue.
        let last = unsafe { openssl_sys::ERR_peek_last_error() };
        if openssl_sys::ERR_GET_REASON(last) != openssl_sys::PEM_R_NO_START_LINE {
            return Err(());
        }
        // Running out of BEGIN lines is the normal end, not an error to report later.
        clear_library_errors();
        Ok(None)
    }

    fn name(&self) -> &[u8] {
        if self.name.is_null() {
            return b"";
        }
        // SAFETY: PEM_read_bio succeeded, so name is a NUL-terminated string it allocated.
        unsafe { CStr::from_ptr(self.name) }.to_bytes()
    }

    /// Whether a decoder that stopped at `end` used exactly the object's bytes: anything
    /// after the DER structure makes the object unacceptable.
    fn exact(&self, end: *const c_uchar) -> bool {
        (end as usize).wrapping_sub(self.data as usize) == self.len as usize
    }

    fn decode_cert(&self) -> (Option<X509>, bool) {
        let mut p = self.data as *const c_uchar;
        // SAFETY: data/len describe the buffer PEM_read_bio allocated; d2i_X509 reads at
        // most len bytes and advances p past what it decoded.
        let x = unsafe { openssl_sys::d2i_X509(ptr::null_mut(), &mut p, self.len) };
        if x.is_null() {
            return (None, false);
        }
        // SAFETY: x is a fresh X509 whose single reference we now own.
        (Some(unsafe { X509::from_ptr(x) }), self.exact(p))
    }

    fn decode_key(&self, nid: Option<c_int>) -> (Option<PKey<Private>>, bool) {
        let mut p = self.data as *const c_uchar;
        // SAFETY: as in decode_cert; the PKCS#8 structure is freed right after the key
        // has been extracted from it.
        let k = unsafe {
            match nid {
                Some(nid) => ffi::d2i_PrivateKey(nid, ptr::null_mut(), &mut p, self.len),
                None => {
                    let p8 =
                        openssl_sys::d2i_PKCS8_PRIV_KEY_INFO(ptr::null_mut(), &mut p, self.len);
                    if p8.is_null() {
                        ptr::null_mut()
                    } else {
                        let k = openssl_sys::EVP_PKCS82PKEY(p8);
                        openssl_sys::PKCS8_PRIV_KEY_INFO_free(p8);
                        k
                    }
                }
            }
        };
        if k.is_null() {
            return (None, false);
        }
        // SAFETY: k is a fresh EVP_PKEY whose single reference we now own.
        (Some(unsafe { PKey::from_ptr(k) }), self.exact(p))
    }
}

impl Drop for PemObject {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or was allocated by PEM_read_bio with OPENSSL_malloc.
        unsafe {
            openssl_sys::OPENSSL_free(self.name.cast());
            openssl_sys::OPENSSL_free(self.header.cast());
            openssl_sys::OPENSSL_free(self.data.cast());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foreign_types::ForeignTypeRef;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::rsa::Rsa;
    use openssl::ssl::SslMethod;
    use openssl::stack::StackRef;
    use openssl::x509::{X509Name, X509Ref};
    use std::path::Path;
    use std::sync::OnceLock;

    /// PEM texts: a CA, RSA leaves `rsa` and `other` and an EC leaf `ec` issued by it.
    struct Material {
        ca: Vec<u8>,
        rsa: Vec<u8>,
        /// PKCS#8 ("PRIVATE KEY").
        rsa_key: Vec<u8>,
        /// Traditional ("RSA PRIVATE KEY").
        rsa_key_trad: Vec<u8>,
        rsa_pub: Vec<u8>,
        other: Vec<u8>,
        other_key: Vec<u8>,
        ec: Vec<u8>,
        /// Traditional ("EC PRIVATE KEY").
        ec_key: Vec<u8>,
    }

    fn cert(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
        let mut name = X509Name::builder().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let serial = BigNum::from_u32(cn.len() as u32 + 1).unwrap();
        b.set_serial_number(&serial.to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(10).unwrap())
            .unwrap();
        let (iname, ikey) = match issuer {
            Some((c, k)) => (c.subject_name().to_owned().unwrap(), k),
            None => (name, key),
        };
        b.set_issuer_name(&iname).unwrap();
        b.sign(ikey, MessageDigest::sha256()).unwrap();
        b.build()
    }

    fn material() -> &'static Material {
        static M: OnceLock<Material> = OnceLock::new();
        M.get_or_init(|| {
            let ca_key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
            let ca = cert("ca", &ca_key, None);
            let rsa = Rsa::generate(2048).unwrap();
            let rsa_key_trad = rsa.private_key_to_pem().unwrap();
            let rsa_key = PKey::from_rsa(rsa).unwrap();
            let other_key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
            let ec = EcKey::generate(&group).unwrap();
            let ec_key_trad = ec.private_key_to_pem().unwrap();
            let ec_key = PKey::from_ec_key(ec).unwrap();
            Material {
                ca: ca.to_pem().unwrap(),
                rsa: cert("rsa", &rsa_key, Some((&ca, &ca_key)))
                    .to_pem()
                    .unwrap(),
                rsa_key: rsa_key.private_key_to_pem_pkcs8().unwrap(),
                rsa_key_trad,
                rsa_pub: rsa_key.public_key_to_pem().unwrap(),
                other: cert("other", &other_key, Some((&ca, &ca_key)))
                    .to_pem()
                    .unwrap(),
                other_key: other_key.private_key_to_pem_pkcs8().unwrap(),
                ec: cert("ec", &ec_key, Some((&ca, &ca_key))).to_pem().unwrap(),
                ec_key: ec_key_trad,
            }
        })
    }

    /// Writes the concatenation of `parts` to `dir/name`; returns its path.
    fn write(dir: &Path, name: &str, parts: &[&[u8]]) -> String {
        let path = dir.join(name);
        std::fs::write(&path, parts.concat()).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// What `load` did: its verdict, the log lines ("warning: " for warnings; OpenSSL's
    /// lines cut after the reason, as file and line vary between builds) and, for each
    /// loaded key slot, the leaf's CN and the number of issuer certificates.
    fn run(s: &Settings) -> (bool, Vec<String>, Vec<(String, usize)>) {
        let mut b = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
        let mut log = Lines::new();
        let ok = load(&mut b, s, &mut log);
        let lines = log
            .into_iter()
            .map(|(level, l)| {
                let l = match l.find("::") {
                    Some(i) if l.starts_with("TLS library problem: ") => {
                        let end = l[i + 2..].find(':').map_or(l.len(), |j| i + 2 + j);
                        l[..end].to_string()
                    }
                    _ => l,
                };
                match level {
                    Level::Warning => format!("warning: {l}"),
                    Level::Info => l,
                    _ => format!("{level:?}: {l}"),
                }
            })
            .collect();
        (ok, lines, slots(&b))
    }

    const SSL_CTRL_GET_CHAIN_CERTS: c_int = 115;
    const SSL_CTRL_SET_CURRENT_CERT: c_int = 117;
    const SSL_CERT_SET_FIRST: c_long = 1;
    const SSL_CERT_SET_NEXT: c_long = 2;

    /// Walks the context's key slots (as Postfix's tls_certkey test driver does).
    fn slots(b: &SslContextBuilder) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let ctx = b.as_ptr();
        // SAFETY: ctx is live; the certificate and chain pointers returned are borrowed
        // from it and only read before the next call.
        unsafe {
            let mut op = SSL_CERT_SET_FIRST;
            while openssl_sys::SSL_CTX_ctrl(ctx, SSL_CTRL_SET_CURRENT_CERT, op, ptr::null_mut())
                == 1
            {
                op = SSL_CERT_SET_NEXT;
                let x = openssl_sys::SSL_CTX_get0_certificate(ctx);
                if x.is_null() {
                    break;
                }
                let cn = X509Ref::from_ptr(x)
                    .subject_name()
                    .entries_by_nid(Nid::COMMONNAME)
                    .next()
                    .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
                    .unwrap_or_default();
                let mut chain: *mut openssl_sys::stack_st_X509 = ptr::null_mut();
                openssl_sys::SSL_CTX_ctrl(
                    ctx,
                    SSL_CTRL_GET_CHAIN_CERTS,
                    0,
                    (&mut chain as *mut *mut openssl_sys::stack_st_X509).cast(),
                );
                let n = if chain.is_null() {
                    0
                } else {
                    StackRef::<X509>::from_ptr(chain).len()
                };
                out.push((cn, n));
            }
        }
        out
    }

    fn mixed(file: &str) -> Settings {
        Settings {
            cert_file: file.to_string(),
            key_file: file.to_string(),
            ..Settings::default()
        }
    }

    fn chains(files: &str) -> Settings {
        Settings {
            chain_files: files.to_string(),
            ..Settings::default()
        }
    }

    fn failed(origin: &str) -> String {
        format!(
            "warning: error loading private keys and certificates from: {origin}: disabling TLS support"
        )
    }

    fn rsa_with_ca() -> Vec<(String, usize)> {
        vec![("rsa".to_string(), 1)]
    }

    #[test]
    fn mixed_file_key_first_last_or_middle() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        for (name, parts) in [
            ("first.pem", [&m.rsa_key[..], &m.rsa, &m.ca]),
            ("last.pem", [&m.rsa[..], &m.ca, &m.rsa_key]),
            ("middle.pem", [&m.rsa[..], &m.rsa_key_trad, &m.ca]),
        ] {
            let f = write(d.path(), name, &parts);
            assert_eq!(run(&mixed(&f)), (true, vec![], rsa_with_ca()), "{name}");
        }
    }

    #[test]
    fn mixed_file_without_key() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "nokey.pem", &[&m.rsa, &m.ca]);
        assert_eq!(
            run(&mixed(&f)),
            (
                false,
                vec![format!("warning: No private key found in {f}"), failed(&f)],
                vec![]
            )
        );
    }

    #[test]
    fn mixed_file_mismatched_key() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "mismatch.pem", &[&m.other_key, &m.rsa]);
        assert_eq!(
            run(&mixed(&f)),
            (
                false,
                vec![
                    format!("warning: key at index 1 in {f} does not match next certificate"),
                    "warning: TLS library problem: error:0A000120:SSL routines::private key mismatch"
                        .to_string(),
                    failed(&f),
                ],
                vec![]
            )
        );
    }

    #[test]
    fn mixed_file_second_key_is_ignored() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "two.pem",
            &[&m.rsa_key, &m.rsa, &m.other_key, &m.ca],
        );
        assert_eq!(
            run(&mixed(&f)),
            (
                true,
                vec![format!(
                    "warning: ignoring 2nd key at index 3 in {f} after 1st at 1"
                )],
                rsa_with_ca()
            )
        );
    }

    #[test]
    fn mixed_file_missing() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("missing.pem").to_string_lossy().into_owned();
        // No final line: Postfix returns before its summary.
        assert_eq!(
            run(&mixed(&f)),
            (
                false,
                vec![format!(
                    "warning: error opening chain file: {f}: No such file or directory"
                )],
                vec![]
            )
        );
    }

    #[test]
    fn explicitly_empty_key_file_is_not_the_cert_file() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "ec.pem", &[&m.ec_key, &m.ec]);
        let s = Settings {
            eccert_file: f,
            eckey_file: String::new(),
            ..Settings::default()
        };
        let (ok, lines, _) = run(&s);
        assert!(!ok);
        assert_eq!(
            lines[0],
            "warning: cannot get ECDSA private key from file \"\": disabling TLS support"
        );
        assert!(
            lines[1..]
                .iter()
                .all(|l| l.starts_with("warning: TLS library problem: ")),
            "{lines:?}"
        );
    }

    #[test]
    fn separate_files_and_slots() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let s = Settings {
            cert_file: write(d.path(), "rsa.pem", &[&m.rsa, &m.ca]),
            key_file: write(d.path(), "rsa.key", &[&m.rsa_key]),
            eccert_file: write(d.path(), "ec.pem", &[&m.ec]),
            eckey_file: write(d.path(), "ec.key", &[&m.ec_key]),
            ..Settings::default()
        };
        assert_eq!(
            run(&s),
            (true, vec![], vec![("rsa".into(), 1), ("ec".into(), 0)])
        );
        // A key of another algorithm than the certificate.
        let s = Settings {
            eccert_file: s.eccert_file.clone(),
            eckey_file: s.key_file.clone(),
            ..Settings::default()
        };
        assert_eq!(
            run(&s).1,
            vec![format!(
                "warning: ECDSA private key in {} does not match public key in {}: disabling TLS support",
                s.eckey_file, s.eccert_file
            )]
        );
    }

    #[test]
    fn chain_files_rsa_then_ec_in_one_file() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "chains.pem",
            &[&m.rsa_key, &m.rsa, &m.ca, &m.ec_key, &m.ec, &m.ca],
        );
        // The chain files win over the per-algorithm parameters.
        let s = Settings {
            cert_file: d.path().join("absent.pem").to_string_lossy().into_owned(),
            ..chains(&f)
        };
        assert_eq!(
            run(&s),
            (true, vec![], vec![("rsa".into(), 1), ("ec".into(), 1)])
        );
    }

    #[test]
    fn chain_files_continue_across_files() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let f1 = write(d.path(), "one.pem", &[&m.rsa_key, &m.rsa]);
        let f2 = write(d.path(), "two.pem", &[&m.ca, &m.ec_key, &m.ec]);
        assert_eq!(
            run(&chains(&format!("{f1}, {f2}"))),
            (true, vec![], vec![("rsa".into(), 1), ("ec".into(), 0)])
        );
        // A key at the end of one file takes its certificate from the next; object
        // numbers start again at 1 in each file.
        let f3 = write(d.path(), "three.pem", &[&m.rsa_key]);
        let f4 = write(d.path(), "four.pem", &[&m.rsa, &m.ec_key]);
        let both = format!("{f3}\t{f4}");
        assert_eq!(
            run(&chains(&both)),
            (
                false,
                vec![
                    format!("warning: No certs for key at index 2 in {f4}"),
                    failed(&both)
                ],
                vec![("rsa".into(), 0)]
            )
        );
    }

    #[test]
    fn chain_files_key_not_first() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "c.pem", &[&m.rsa, &m.rsa_key]);
        assert_eq!(
            run(&chains(&f)),
            (
                false,
                vec![
                    format!("warning: error loading chain from {f}: key not first"),
                    failed(&f)
                ],
                vec![]
            )
        );
    }

    #[test]
    fn chain_files_back_to_back_keys() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "c.pem", &[&m.rsa_key, &m.ec_key, &m.rsa]);
        assert_eq!(
            run(&chains(&f)),
            (
                false,
                vec![
                    format!(
                        "warning: error loading certificate chain: key at index 1 in {f} not followed by a certificate"
                    ),
                    failed(&f)
                ],
                vec![]
            )
        );
    }

    #[test]
    fn chain_files_ignored_pem_type() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "c.pem", &[&m.rsa_key, &m.rsa, &m.rsa_pub, &m.ca]);
        assert_eq!(
            run(&chains(&f)),
            (
                true,
                vec![format!(
                    "warning: loading {f}: ignoring PEM type: PUBLIC KEY"
                )],
                rsa_with_ca()
            )
        );
        // Right after a key, a skipped object takes over the key's position (Postfix).
        let f = write(d.path(), "k.pem", &[&m.rsa_key, &m.rsa_pub]);
        assert_eq!(
            run(&chains(&f)).1,
            vec![
                format!("warning: loading {f}: ignoring PEM type: PUBLIC KEY"),
                format!("warning: No certs for key at index 2 in {f}"),
                failed(&f)
            ]
        );
    }

    #[test]
    fn chain_files_empty_file() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "empty.pem", &[]);
        assert_eq!(
            run(&chains(&f)),
            (
                false,
                vec![format!("warning: No PEM data in {f}"), failed(&f)],
                vec![]
            )
        );
    }

    #[test]
    fn chain_files_second_chain_of_same_algorithm() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "c.pem",
            &[&m.rsa_key, &m.rsa, &m.other_key, &m.other],
        );
        let (ok, lines, _) = run(&chains(&f));
        assert!(!ok);
        assert_eq!(
            lines,
            vec![
                format!("warning: key at index 3 in {f} does not match next certificate"),
                "warning: TLS library problem: error:0A000121:SSL routines::not replacing certificate"
                    .to_string(),
                failed(&f)
            ]
        );
        // A mismatch is found when the next key closes the chain.
        let f = write(d.path(), "m.pem", &[&m.other_key, &m.rsa, &m.ec_key, &m.ec]);
        assert_eq!(
            run(&chains(&f)).1,
            vec![
                format!(
                    "warning: error loading certificate chain: key at index 1 in {f} does not match the certificate"
                ),
                "warning: TLS library problem: error:0A000120:SSL routines::private key mismatch"
                    .to_string(),
                failed(&f)
            ]
        );
    }

    #[test]
    fn chain_files_missing_file_keeps_tls() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let f1 = write(d.path(), "one.pem", &[&m.rsa_key, &m.rsa, &m.ec_key, &m.ec]);
        let missing = d.path().join("missing.pem").to_string_lossy().into_owned();
        // Postfix 3.7 logs the error and goes on with the chains completed so far (the
        // RSA one; the EC chain was still open).
        assert_eq!(
            run(&chains(&format!("{f1},{missing}"))),
            (
                true,
                vec![format!(
                    "warning: error opening chain file: {missing}: No such file or directory"
                )],
                vec![("rsa".into(), 0)]
            )
        );
    }

    #[test]
    fn chain_files_excess_data_and_bad_objects() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let der = X509::from_pem(&m.rsa).unwrap().to_der().unwrap();
        let pem = |label: &str, data: &[u8]| {
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                openssl::base64::encode_block(data)
            )
            .into_bytes()
        };
        let excess = pem("CERTIFICATE", &[&der[..], &[0, 0]].concat());
        let f = write(d.path(), "x.pem", &[&m.rsa_key, &excess]);
        assert_eq!(
            run(&chains(&f)).1,
            vec![
                format!(
                    "warning: error loading certificate (PEM object number 2) from {f}: excess data"
                ),
                failed(&f)
            ]
        );
        let bad_key = pem("PRIVATE KEY", b"no DER");
        let f = write(d.path(), "k.pem", &[&bad_key, &m.rsa]);
        let lines = run(&chains(&f)).1;
        assert_eq!(
            lines[0],
            format!("warning: error loading private key (PEM object number 1) from {f}")
        );
        assert_eq!(lines.last(), Some(&failed(&f)));
        assert!(lines.len() > 2, "{lines:?}");
        // The old certificate label is still a certificate.
        let old = pem("X509 CERTIFICATE", &der);
        let f = write(d.path(), "o.pem", &[&m.rsa_key, &old]);
        assert_eq!(run(&chains(&f)), (true, vec![], vec![("rsa".into(), 0)]));
    }

    #[test]
    fn chain_files_separators_only() {
        // Not empty, so the per-algorithm files are ignored, but names no file at all.
        let s = Settings {
            cert_file: "/nonexistent/cert.pem".into(),
            ..chains(" , ")
        };
        assert_eq!(run(&s), (true, vec![], vec![]));
    }

    #[test]
    fn file_names_end_at_a_nul_byte() {
        let m = material();
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "k.pem", &[&m.rsa_key, &m.rsa]);
        let s = Settings {
            cert_file: format!("{f}\0junk"),
            key_file: format!("{f}\0other junk"),
            ..Settings::default()
        };
        assert_eq!(run(&s), (true, vec![], vec![("rsa".into(), 0)]));
        let s = Settings {
            cert_file: format!("{f}\0"),
            key_file: format!("{f}\0x"),
            ca_file: "\0".into(),
            ..Settings::default()
        };
        assert!(super::super::ClientContext::new(&s).is_ok());
    }
}
