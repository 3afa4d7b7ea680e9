//! Indexed files written by postmap: hash:/btree: (Berkeley DB, `<name>.db`), lmdb:
//! (`<name>.lmdb`) and cdb: (`<name>.cdb`). Postfix writes keys and values with a trailing
//! NUL for the first three; files from other tools may lack it, so, as Postfix does, we
//! try with the NUL and then without, and stick to whichever form answered first.

use super::{Dict, ErrorClass, TableError};
use std::cell::Cell;
use std::ffi::CString;

/// Which NUL conventions are still possible for a file.
#[derive(Clone, Copy)]
struct NulStyle {
    with: bool,
    without: bool,
}

impl NulStyle {
    fn both() -> Cell<NulStyle> {
        Cell::new(NulStyle {
            with: true,
            without: true,
        })
    }
}

/// Try the key with a trailing NUL, then without, latching the style that worked.
fn try_nul_styles(
    style: &Cell<NulStyle>,
    key: &str,
    mut get: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, TableError>,
) -> Result<Option<Vec<u8>>, TableError> {
    let k = key.as_bytes();
    let k = &k[..k.iter().position(|&b| b == 0).unwrap_or(k.len())];
    let s = style.get();
    if s.with {
        let mut kz = k.to_vec();
        kz.push(0);
        if let Some(v) = get(&kz)? {
            style.set(NulStyle {
                with: true,
                without: false,
            });
            return Ok(Some(v));
        }
    }
    if s.without
        && let Some(v) = get(k)?
    {
        style.set(NulStyle {
            with: false,
            without: true,
        });
        return Ok(Some(v));
    }
    Ok(None)
}

/// Values end at the first NUL, as they do for Postfix's C strings.
fn c_value(v: &[u8]) -> Vec<u8> {
    v[..v.iter().position(|&b| b == 0).unwrap_or(v.len())].to_vec()
}

fn temp(table: &str, message: String) -> TableError {
    TableError {
        class: ErrorClass::Temporary,
        table: table.to_string(),
        message,
    }
}

fn errno_text(e: &std::io::Error) -> String {
    // "No such file or directory", without Rust's " (os error 2)" suffix.
    crate::log::strerror(e)
}

/// Take a shared fcntl lock on `fd` for the duration of a lookup, as Postfix's readers
/// do (DICT_FLAG_LOCK), so that we never read a file that postmap is rewriting in place.
struct SharedLock(libc::c_int);

impl SharedLock {
    fn take(fd: libc::c_int, table: &str, path: &str) -> Result<SharedLock, TableError> {
        if fd < 0 {
            return Ok(SharedLock(-1));
        }
        loop {
            // SAFETY: a zeroed flock is valid; we set the fields we use.
            let mut fl: libc::flock = unsafe { std::mem::zeroed() };
            fl.l_type = libc::F_RDLCK as libc::c_short;
            fl.l_whence = libc::SEEK_SET as libc::c_short;
            // SAFETY: fd is an open descriptor owned by the table.
            if unsafe { libc::fcntl(fd, libc::F_SETLKW, &fl) } == 0 {
                return Ok(SharedLock(fd));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(temp(
                    table,
                    format!("{path}: lock dictionary: {}", errno_text(&e)),
                ));
            }
        }
    }
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        if self.0 >= 0 {
            // SAFETY: as above.
            let mut fl: libc::flock = unsafe { std::mem::zeroed() };
            fl.l_type = libc::F_UNLCK as libc::c_short;
            fl.l_whence = libc::SEEK_SET as libc::c_short;
            // SAFETY: fd still open (owned by the table that outlives the lock).
            unsafe { libc::fcntl(self.0, libc::F_SETLK, &fl) };
        }
    }
}

#[cfg(feature = "bdb")]
fn open_lock_fd(path: &str) -> libc::c_int {
    match CString::new(path) {
        // SAFETY: c is NUL-terminated.
        Ok(c) => unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) },
        Err(_) => -1,
    }
}

// ---- Berkeley DB ----

#[cfg(feature = "bdb")]
mod bdb {
    use super::*;

    unsafe extern "C" {
        fn outpost_bdb_open(
            path: *const libc::c_char,
            btree: libc::c_int,
            handle: *mut *mut libc::c_void,
        ) -> libc::c_int;
        fn outpost_bdb_get(
            handle: *mut libc::c_void,
            key: *const libc::c_void,
            klen: libc::size_t,
            val: *mut *const libc::c_void,
            vlen: *mut libc::size_t,
        ) -> libc::c_int;
        fn outpost_bdb_strerror(code: libc::c_int) -> *const libc::c_char;
        fn outpost_bdb_close(handle: *mut libc::c_void);
    }

    fn db_error(code: libc::c_int) -> String {
        // SAFETY: db_strerror returns a static or thread-local NUL-terminated string.
        let p = unsafe { outpost_bdb_strerror(code) };
        if p.is_null() {
            return format!("error {code}");
        }
        // SAFETY: non-null NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned()
    }

    pub struct BdbTable {
        handle: *mut libc::c_void,
        lock_fd: libc::c_int,
        spec: String,
        path: String,
        style: Cell<NulStyle>,
    }

    impl BdbTable {
        pub fn open(spec: &str, name: &str, btree: bool) -> Result<BdbTable, TableError> {
            let path = format!("{name}.db");
            let c = CString::new(path.as_str()).map_err(|_| {
                TableError::config(spec, format!("open database {path}: bad file name"))
            })?;
            // Hold a shared lock while opening, as Postfix does, so that a postmap
            // rewriting the file in place is never seen half-way.
            let lock_fd = open_lock_fd(&path);
            let guard = SharedLock::take(lock_fd, spec, &path);
            let mut h = std::ptr::null_mut();
            // SAFETY: c is NUL-terminated; h receives the handle.
            let rc = unsafe { outpost_bdb_open(c.as_ptr(), btree as libc::c_int, &mut h) };
            drop(guard);
            if rc != 0 || h.is_null() {
                if lock_fd >= 0 {
                    // SAFETY: we own the descriptor and nothing else uses it.
                    unsafe { libc::close(lock_fd) };
                }
                return Err(temp(
                    spec,
                    format!("open database {path}: {}", db_error(rc)),
                ));
            }
            Ok(BdbTable {
                handle: h,
                lock_fd,
                spec: spec.to_string(),
                path,
                style: NulStyle::both(),
            })
        }
    }

    // SAFETY: the handle is owned by this value alone and is used by one thread at a
    // time (the type is not Sync); Berkeley DB handles have no thread affinity.
    unsafe impl Send for BdbTable {}

    impl Drop for BdbTable {
        fn drop(&mut self) {
            // SAFETY: handle came from outpost_bdb_open and is closed once.
            unsafe { outpost_bdb_close(self.handle) };
            if self.lock_fd >= 0 {
                // SAFETY: we own the descriptor.
                unsafe { libc::close(self.lock_fd) };
            }
        }
    }

    impl Dict for BdbTable {
        fn lookup(&self, key: &str) -> Result<Option<Vec<u8>>, TableError> {
            let _lock = SharedLock::take(self.lock_fd, &self.spec, &self.path)?;
            try_nul_styles(&self.style, key, |k| {
                let mut v: *const libc::c_void = std::ptr::null();
                let mut vlen: libc::size_t = 0;
                // SAFETY: k is valid for its length; v/vlen receive DB-owned memory valid
                // until the next call on this handle, and we copy it at once.
                let rc = unsafe {
                    outpost_bdb_get(self.handle, k.as_ptr().cast(), k.len(), &mut v, &mut vlen)
                };
                match rc {
                    0 if v.is_null() => Ok(Some(Vec::new())),
                    // SAFETY: see above.
                    0 => Ok(Some(c_value(unsafe {
                        std::slice::from_raw_parts(v.cast::<u8>(), vlen)
                    }))),
                    1 => Ok(None),
                    e => Err(temp(
                        &self.spec,
                        format!("error reading {}: {}", self.path, db_error(e)),
                    )),
                }
            })
        }
        fn fixed(&self) -> bool {
            true
        }
    }
}

#[cfg(feature = "bdb")]
pub use bdb::BdbTable;

// ---- LMDB ----

use lmdb_master_sys as mdb;

fn mdb_error(code: libc::c_int) -> String {
    // SAFETY: mdb_strerror returns a static string (or strerror's).
    let p = unsafe { mdb::mdb_strerror(code) };
    if p.is_null() {
        return format!("error {code}");
    }
    // SAFETY: non-null NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

pub struct LmdbTable {
    env: *mut mdb::MDB_env,
    dbi: mdb::MDB_dbi,
    fd: libc::c_int,
    spec: String,
    path: String,
    style: Cell<NulStyle>,
}

/// Postfix's default lmdb_map_size; read-only opens also cover the whole file.
const LMDB_MAP_SIZE: usize = 16 * 1024 * 1024;

impl LmdbTable {
    pub fn open(spec: &str, name: &str) -> Result<LmdbTable, TableError> {
        let path = format!("{name}.lmdb");
        let fail = |rc: libc::c_int| temp(spec, format!("open database {path}: {}", mdb_error(rc)));
        let c = CString::new(path.as_str()).map_err(|_| fail(libc::EINVAL))?;
        let size = std::fs::metadata(&path)
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        let mut env = std::ptr::null_mut();
        // SAFETY: standard LMDB open sequence; every failure path closes the env.
        unsafe {
            let rc = mdb::mdb_env_create(&mut env);
            if rc != 0 {
                return Err(fail(rc));
            }
            let close = |env, rc| {
                mdb::mdb_env_close(env);
                Err(fail(rc))
            };
            // Postfix opens with NOSUBDIR|NOLOCK|RDONLY and locks the file itself.
            let flags = mdb::MDB_NOSUBDIR | mdb::MDB_NOLOCK | mdb::MDB_RDONLY;
            let rc = mdb::mdb_env_set_mapsize(env, LMDB_MAP_SIZE.max(size + 10240));
            if rc != 0 {
                return close(env, rc);
            }
            let rc = mdb::mdb_env_open(env, c.as_ptr(), flags, 0o644);
            if rc != 0 {
                return close(env, rc);
            }
            let mut txn = std::ptr::null_mut();
            let rc = mdb::mdb_txn_begin(env, std::ptr::null_mut(), mdb::MDB_RDONLY, &mut txn);
            if rc != 0 {
                return close(env, rc);
            }
            let mut dbi: mdb::MDB_dbi = 0;
            let rc = mdb::mdb_dbi_open(txn, std::ptr::null(), 0, &mut dbi);
            mdb::mdb_txn_abort(txn);
            if rc != 0 {
                return close(env, rc);
            }
            let mut fd: libc::c_int = -1;
            if mdb::mdb_env_get_fd(env, &mut fd) != 0 {
                fd = -1;
            }
            Ok(LmdbTable {
                env,
                dbi,
                fd,
                spec: spec.to_string(),
                path,
                style: NulStyle::both(),
            })
        }
    }
}

// SAFETY: the environment is owned by this value alone; each lookup begins and ends its
// own read transaction, so no transaction is ever carried across threads.
unsafe impl Send for LmdbTable {}

impl Drop for LmdbTable {
    fn drop(&mut self) {
        // SAFETY: env was opened in open() and is closed once.
        unsafe { mdb::mdb_env_close(self.env) };
    }
}

impl Dict for LmdbTable {
    fn lookup(&self, key: &str) -> Result<Option<Vec<u8>>, TableError> {
        let _lock = SharedLock::take(self.fd, &self.spec, &self.path)?;
        try_nul_styles(&self.style, key, |k| {
            // SAFETY: a read-only transaction per lookup, as Postfix's slmdb does; the
            // value is copied before the transaction ends.
            unsafe {
                let mut txn = std::ptr::null_mut();
                let rc =
                    mdb::mdb_txn_begin(self.env, std::ptr::null_mut(), mdb::MDB_RDONLY, &mut txn);
                if rc != 0 {
                    return Err(temp(
                        &self.spec,
                        format!("error reading {}: {}", self.path, mdb_error(rc)),
                    ));
                }
                let mut mk = mdb::MDB_val {
                    mv_size: k.len(),
                    mv_data: k.as_ptr() as *mut libc::c_void,
                };
                let mut mv = mdb::MDB_val {
                    mv_size: 0,
                    mv_data: std::ptr::null_mut(),
                };
                let rc = mdb::mdb_get(txn, self.dbi, &mut mk, &mut mv);
                let out = match rc {
                    0 if mv.mv_data.is_null() => Ok(Some(Vec::new())),
                    0 => Ok(Some(c_value(std::slice::from_raw_parts(
                        mv.mv_data.cast::<u8>(),
                        mv.mv_size,
                    )))),
                    mdb::MDB_NOTFOUND => Ok(None),
                    e => Err(temp(
                        &self.spec,
                        format!("error reading {}: {}", self.path, mdb_error(e)),
                    )),
                };
                mdb::mdb_txn_abort(txn);
                out
            }
        })
    }
    fn fixed(&self) -> bool {
        true
    }
}

// ---- CDB ----

/// A cdb file read into memory (the format is a constant database: postmap replaces the
/// file, it never changes in place).
pub struct CdbTable {
    data: Vec<u8>,
    spec: String,
    path: String,
    style: Cell<NulStyle>,
}

fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    let b = d.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl CdbTable {
    pub fn open(spec: &str, name: &str) -> Result<CdbTable, TableError> {
        let path = format!("{name}.cdb");
        let data = std::fs::read(&path)
            .map_err(|e| temp(spec, format!("open database {path}: {}", errno_text(&e))))?;
        if data.len() < 2048 {
            return Err(temp(
                spec,
                format!("error reading {path}: file too short for a cdb header"),
            ));
        }
        Ok(CdbTable {
            data,
            spec: spec.to_string(),
            path,
            style: NulStyle::both(),
        })
    }

    fn corrupt(&self) -> TableError {
        temp(
            &self.spec,
            format!("error reading {}: corrupt cdb file", self.path),
        )
    }

    /// The cdb lookup algorithm (D. J. Bernstein's format, as tinycdb reads it).
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        let d = &self.data;
        let mut h: u32 = 5381;
        for &b in key {
            h = (h << 5).wrapping_add(h) ^ b as u32;
        }
        let slot = (h & 255) as usize * 8;
        let (Some(tpos), Some(tlen)) = (u32_at(d, slot), u32_at(d, slot + 4)) else {
            return Err(self.corrupt());
        };
        if tlen == 0 {
            return Ok(None);
        }
        let (tpos, tlen) = (tpos as usize, tlen as usize);
        let mut i = (h >> 8) as usize % tlen;
        for _ in 0..tlen {
            let at = tpos + 8 * i;
            let (Some(eh), Some(rpos)) = (u32_at(d, at), u32_at(d, at + 4)) else {
                return Err(self.corrupt());
            };
            if rpos == 0 {
                return Ok(None);
            }
            if eh == h {
                let rpos = rpos as usize;
                let (Some(kl), Some(vl)) = (u32_at(d, rpos), u32_at(d, rpos + 4)) else {
                    return Err(self.corrupt());
                };
                let ks = rpos + 8;
                let ke = ks.checked_add(kl as usize).ok_or_else(|| self.corrupt())?;
                let ve = ke.checked_add(vl as usize).ok_or_else(|| self.corrupt())?;
                let (Some(k), Some(v)) = (d.get(ks..ke), d.get(ke..ve)) else {
                    return Err(self.corrupt());
                };
                if k == key {
                    return Ok(Some(c_value(v)));
                }
            }
            i = (i + 1) % tlen;
        }
        Ok(None)
    }
}

impl Dict for CdbTable {
    fn lookup(&self, key: &str) -> Result<Option<Vec<u8>>, TableError> {
        try_nul_styles(&self.style, key, |k| self.get(k))
    }
    fn fixed(&self) -> bool {
        true
    }
}
