//! The few OpenSSL 3 functions that neither `openssl` nor `openssl-sys` binds: the DANE
//! verifier (which Postfix also uses for fingerprints and trust-anchor files), multiple
//! peer names, and details for the log line. Safe wrappers live in `client.rs`; every
//! pointer passed comes from a live `SslRef`/`SslContextRef`/`X509Ref` of the caller.

#![allow(non_camel_case_types)]

use libc::{c_char, c_int, c_uint, c_ulong, size_t};
use openssl_sys::{EVP_MD, SSL, SSL_CTX, X509_NAME};

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
        mcert: *mut *mut openssl_sys::X509,
        mspki: *mut *mut openssl_sys::EVP_PKEY,
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
}
