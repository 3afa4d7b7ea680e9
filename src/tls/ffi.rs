//! The few OpenSSL 3 functions that neither `openssl` nor `openssl-sys` binds: the DANE
//! verifier (which Postfix also uses for fingerprints and trust-anchor files), multiple
//! peer names, details for the log line, and the raw PEM reader and DER decoders that
//! the client key loader needs to see object names and trailing bytes. Safe wrappers live
//! in `client.rs` and `certkey.rs`; every pointer passed comes from a live
//! `SslRef`/`SslContextRef`/`X509Ref` or an owned wrapper of the caller.

#![allow(non_camel_case_types)]

use libc::{c_char, c_int, c_long, c_uchar, c_uint, c_ulong, size_t};
use openssl_sys::{BIO, EVP_MD, EVP_PKEY, SSL, SSL_CTX, X509, X509_NAME, stack_st_X509};

/// RFC 7672: no name checks for DANE-EE(3) matches.
pub const DANE_FLAG_NO_DANE_EE_NAMECHECKS: c_ulong = 1;
/// RFC 6125: no partial-label wildcards such as `foo*.example.com`.
pub const X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS: c_uint = 0x4;

pub const SSL_CTRL_GET_PEER_SIGNATURE_NID: c_int = 108;
pub const SSL_CTRL_GET_SIGNATURE_NID: c_int = 132;

/// SSL_CTX_set_info_callback's `where` bits.
pub const SSL_ST_MASK: c_int = 0x0FFF;
pub const SSL_ST_CONNECT: c_int = 0x1000;
pub const SSL_ST_ACCEPT: c_int = 0x2000;
pub const SSL_CB_LOOP: c_int = 0x01;
pub const SSL_CB_EXIT: c_int = 0x02;
pub const SSL_CB_READ: c_int = 0x04;
pub const SSL_CB_ALERT: c_int = 0x4000;

unsafe extern "C" {
    pub fn SSL_CTX_dane_enable(ctx: *mut SSL_CTX) -> c_int;
    pub fn SSL_CTX_dane_mtype_set(
        ctx: *mut SSL_CTX,
        md: *const EVP_MD,
        mtype: u8,
        ord: u8,
    ) -> c_int;
    pub fn SSL_dane_enable(ssl: *mut SSL, basedomain: *const c_char) -> c_int;
    pub fn SSL_dane_set_flags(ssl: *mut SSL, flags: c_ulong) -> c_ulong;
    pub fn SSL_dane_tlsa_add(
        ssl: *mut SSL,
        usage: u8,
        selector: u8,
        mtype: u8,
        data: *const u8,
        dlen: size_t,
    ) -> c_int;
    pub fn SSL_add1_host(ssl: *mut SSL, hostname: *const c_char) -> c_int;
    pub fn SSL_set_hostflags(ssl: *mut SSL, flags: c_uint);
    pub fn SSL_get0_peername(ssl: *mut SSL) -> *const c_char;
    pub fn SSL_set_options(ssl: *mut SSL, op: u64) -> u64;
    pub fn SSL_CTX_set_info_callback(
        ctx: *mut SSL_CTX,
        cb: Option<unsafe extern "C" fn(ssl: *const SSL, where_: c_int, ret: c_int)>,
    );
    pub fn SSL_CTX_set_timeout(ctx: *mut SSL_CTX, t: libc::c_long) -> libc::c_long;
    pub fn SSL_alert_type_string_long(value: c_int) -> *const c_char;
    pub fn SSL_get0_dane_authority(
        ssl: *mut SSL,
        mcert: *mut *mut X509,
        mspki: *mut *mut EVP_PKEY,
    ) -> c_int;
    pub fn SSL_get0_dane_tlsa(
        ssl: *mut SSL,
        usage: *mut u8,
        selector: *mut u8,
        mtype: *mut u8,
        data: *mut *const u8,
        dlen: *mut size_t,
    ) -> c_int;
    pub fn X509_NAME_oneline(name: *const X509_NAME, buf: *mut c_char, size: c_int) -> *mut c_char;
    pub fn ERR_error_string_n(e: c_ulong, buf: *mut c_char, len: size_t);
    pub fn BIO_new_file(filename: *const c_char, mode: *const c_char) -> *mut BIO;
    pub fn BIO_free(bio: *mut BIO) -> c_int;
    pub fn PEM_read_bio(
        bio: *mut BIO,
        name: *mut *mut c_char,
        header: *mut *mut c_char,
        data: *mut *mut c_uchar,
        len: *mut c_long,
    ) -> c_int;
    pub fn d2i_PrivateKey(
        type_: c_int,
        a: *mut *mut EVP_PKEY,
        pp: *mut *const c_uchar,
        length: c_long,
    ) -> *mut EVP_PKEY;
    pub fn SSL_CTX_use_cert_and_key(
        ctx: *mut SSL_CTX,
        x509: *mut X509,
        privatekey: *mut EVP_PKEY,
        chain: *mut stack_st_X509,
        override_: c_int,
    ) -> c_int;
}
