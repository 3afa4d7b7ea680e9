//! Client of Postfix's tlsmgr(8): the TLS session cache shared by all smtp/lmtp processes
//! (and with Postfix's own smtp, which names sessions the same way), over
//! `private/tlsmgr` with the attribute protocol.
//!
//! Requests (tls/tls_mgr.c, tlsmgr/tlsmgr.c): `policy` (is the cache type enabled, and
//! for how long), `lookup`, `update` and `delete` of DER-encoded sessions by name. As with
//! Postfix, any failure only costs a full handshake: it is never a reason to delay mail.
//! The connection is kept between requests and reopened once after a failure.

use super::attr::ServiceConn;
use crate::tls::session_cache::SessionStore;
use std::path::PathBuf;
use std::time::Duration;

const PROTO: &str = "tlsmgr_protocol";
const STAT_OK: i32 = 0;

type Channel = ServiceConn;

pub struct TlsmgrClient {
    path: PathBuf,
    timeout: Duration,
    chan: Option<Channel>,
    cache_type: String,
}

type Res<T> = Result<T, String>;

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl TlsmgrClient {
    /// A client for the socket at `path` (`private/tlsmgr` under master), for sessions
    /// of `cache_type` (`smtp` or `lmtp`).
    pub fn new(path: PathBuf, cache_type: &str, timeout: Duration) -> TlsmgrClient {
        TlsmgrClient {
            path,
            timeout: timeout.max(Duration::from_secs(1)),
            chan: None,
            cache_type: cache_type.to_string(),
        }
    }

    fn channel(&mut self) -> Res<&mut Channel> {
        if self.chan.is_none() {
            self.chan = Some(ServiceConn::connect(&self.path, self.timeout, PROTO)?);
        }
        self.chan.as_mut().ok_or_else(|| "no channel".to_string())
    }

    /// Starts a request about a cache entry: request name, our cache type and, for
    /// entry requests, the session name.
    fn head(ch: &mut Channel, request: &str, cache_type: &str, id: Option<&str>) -> Res<()> {
        ch.writer.str("request", request).map_err(e2s)?;
        ch.writer.str("cache_type", cache_type).map_err(e2s)?;
        if let Some(id) = id {
            ch.writer.str("cache_id", id).map_err(e2s)?;
        }
        Ok(())
    }

    /// Ends a request and sends it.
    fn send(ch: &mut Channel) -> Res<()> {
        ch.writer.end().map_err(e2s)?;
        ch.writer.flush().map_err(e2s)
    }

    /// One request, retried once on a fresh connection (a kept connection may have been
    /// closed by tlsmgr in the meantime).
    fn call<T>(&mut self, mut f: impl FnMut(&mut Channel) -> Res<T>) -> Option<T> {
        for _ in 0..2 {
            match self.channel().and_then(&mut f) {
                Ok(v) => return Some(v),
                Err(_) => self.chan = None,
            }
        }
        None
    }

    /// `n` bytes from tlsmgr's entropy pool ("seed"), to add to OpenSSL's.
    pub fn seed(&mut self, n: usize) -> Option<Vec<u8>> {
        let size = i32::try_from(n).unwrap_or(i32::MAX);
        let (status, data) = self.call(|ch| {
            ch.writer.str("request", "seed").map_err(e2s)?;
            ch.writer.int("size", size).map_err(e2s)?;
            Self::send(ch)?;
            let status = ch.reader.expect_int("status").map_err(e2s)?;
            let data = ch.reader.expect_data("seed").map_err(e2s)?;
            ch.reader.expect_end().map_err(e2s)?;
            Ok((status, data))
        })?;
        (status == STAT_OK && !data.is_empty()).then_some(data)
    }

    /// tlsmgr's answer to "policy": `Some(timeout)` when sessions of our type are cached.
    pub fn policy(&mut self) -> Option<Duration> {
        let ct = self.cache_type.clone();
        let (status, cachable, timeout) = self.call(|ch| {
            Self::head(ch, "policy", &ct, None)?;
            Self::send(ch)?;
            let status = ch.reader.expect_int("status").map_err(e2s)?;
            let cachable = ch.reader.expect_int("cachable").map_err(e2s)?;
            let timeout = ch.reader.expect_int("timeout").map_err(e2s)?;
            ch.reader.expect_end().map_err(e2s)?;
            Ok((status, cachable, timeout))
        })?;
        (status == STAT_OK && cachable != 0 && timeout > 0)
            .then(|| Duration::from_secs(u64::try_from(timeout).unwrap_or(0)))
    }
}

impl SessionStore for TlsmgrClient {
    fn lookup(&mut self, id: &str) -> Option<Vec<u8>> {
        let ct = self.cache_type.clone();
        let (status, data) = self.call(|ch| {
            Self::head(ch, "lookup", &ct, Some(id))?;
            Self::send(ch)?;
            let status = ch.reader.expect_int("status").map_err(e2s)?;
            let data = ch.reader.expect_data("session").map_err(e2s)?;
            ch.reader.expect_end().map_err(e2s)?;
            Ok((status, data))
        })?;
        (status == STAT_OK && !data.is_empty()).then_some(data)
    }

    fn update(&mut self, id: &str, session: &[u8]) {
        let ct = self.cache_type.clone();
        let _ = self.call(|ch| {
            Self::head(ch, "update", &ct, Some(id))?;
            ch.writer.data("session", session).map_err(e2s)?;
            Self::send(ch)?;
            ch.reader.expect_int("status").map_err(e2s)?;
            ch.reader.expect_end().map_err(e2s)
        });
    }

    fn delete(&mut self, id: &str) {
        let ct = self.cache_type.clone();
        let _ = self.call(|ch| {
            Self::head(ch, "delete", &ct, Some(id))?;
            Self::send(ch)?;
            ch.reader.expect_int("status").map_err(e2s)?;
            ch.reader.expect_end().map_err(e2s)
        });
    }
}
