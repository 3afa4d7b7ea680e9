//! Storage for the SASL failure cache through Postfix's proxywrite service (proxymap(8)).
//!
//! Postfix insists that smtp_sasl_auth_cache_name is a `proxy:` table so that one process
//! (proxywrite) writes it for every smtp(8) process: a failure one process saw is known
//! to the others and survives the process. This store speaks that protocol
//! (global/dict_proxy.c): a `proxymap_protocol` announcement, then `open`, `lookup`,
//! `update` and `delete` requests naming the table (without `proxy:`) with the request
//! flags of the cache table; reply status 0 = done, 1 = no such key, others = error.
//! Failures come back as Err; the cache then warns and carries on (it is an optimisation).

use super::cache::CacheStore;
use crate::postfix::attr::{AttrReader, AttrWriter};
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

const PROTO: &str = "proxymap_protocol";
/// DICT_FLAG_DUP_REPLACE | DICT_FLAG_SYNC_UPDATE | DICT_FLAG_UTF8_REQUEST: what Postfix
/// opens the cache with; all are request flags, so `open` itself carries none.
const REQUEST_FLAGS: i32 = (1 << 7) | (1 << 8) | (1 << 19);
const STAT_OK: i32 = 0;
const STAT_NOKEY: i32 = 1;

type Chan = (AttrReader<BufReader<UnixStream>>, AttrWriter<UnixStream>);

pub struct ProxyStore {
    socket: PathBuf,
    /// The table behind `proxy:`, e.g. `btree:/var/lib/postfix/sasl_auth_cache`.
    table: String,
    timeout: Duration,
    chan: Option<Chan>,
}

impl ProxyStore {
    /// For `proxy:TYPE:NAME` via the proxywrite socket at `socket`; None for any other name.
    pub fn new(cache_name: &str, socket: PathBuf, timeout: Duration) -> Option<ProxyStore> {
        let table = cache_name.strip_prefix("proxy:")?.to_string();
        Some(ProxyStore {
            socket,
            table,
            timeout,
            chan: None,
        })
    }

    fn connect(&mut self) -> Result<&mut Chan, String> {
        if self.chan.is_none() {
            let sock = UnixStream::connect(&self.socket)
                .map_err(|e| format!("connect to {}: {e}", self.socket.display()))?;
            let _ = sock.set_read_timeout(Some(self.timeout));
            let _ = sock.set_write_timeout(Some(self.timeout));
            let r = sock.try_clone().map_err(|e| e.to_string())?;
            let mut reader = AttrReader::new(BufReader::new(r));
            let mut writer = AttrWriter::new(sock);
            reader.expect_protocol(PROTO).map_err(|e| e.to_string())?;
            let e = |e: crate::postfix::attr::AttrError| e.to_string();
            writer.str("request", "open").map_err(e)?;
            writer.str("table", &self.table).map_err(e)?;
            writer.int("flags", 0).map_err(e)?;
            writer.end().map_err(e)?;
            writer.flush().map_err(e)?;
            let status = reader.expect_int("status").map_err(e)?;
            let _server_flags = reader.expect_int("flags").map_err(e)?;
            reader.expect_end().map_err(e)?;
            if status != STAT_OK {
                return Err(format!("open {}: proxymap status {status}", self.table));
            }
            self.chan = Some((reader, writer));
        }
        self.chan.as_mut().ok_or_else(|| "no channel".to_string())
    }

    /// One request: `request`, table, flags, key [, value]; returns (status, value).
    fn call(&mut self, req: &str, key: &str, value: Option<&str>) -> Result<(i32, String), String> {
        let table = self.table.clone();
        let r = (|| {
            let (reader, writer) = self.connect()?;
            let e = |e: crate::postfix::attr::AttrError| e.to_string();
            writer.str("request", req).map_err(e)?;
            writer.str("table", &table).map_err(e)?;
            writer.int("flags", REQUEST_FLAGS).map_err(e)?;
            writer.str("key", key).map_err(e)?;
            if let Some(v) = value {
                writer.str("value", v).map_err(e)?;
            }
            writer.end().map_err(e)?;
            writer.flush().map_err(e)?;
            let status = reader.expect_int("status").map_err(e)?;
            let v = if req == "lookup" {
                reader.expect_str("value").map_err(e)?
            } else {
                String::new()
            };
            reader.expect_end().map_err(e)?;
            Ok((status, v))
        })();
        if r.is_err() {
            // A broken connection is not reused; the next request reconnects.
            self.chan = None;
        }
        r
    }
}

impl CacheStore for ProxyStore {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.call("lookup", key, None)? {
            (STAT_OK, v) => Ok(Some(v)),
            (STAT_NOKEY, _) => Ok(None),
            (s, _) => Err(format!("proxymap status {s}")),
        }
    }
    fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        match self.call("update", key, Some(value))? {
            (STAT_OK, _) => Ok(()),
            (s, _) => Err(format!("proxymap status {s}")),
        }
    }
    fn delete(&mut self, key: &str) -> Result<(), String> {
        match self.call("delete", key, None)? {
            (STAT_OK, _) | (STAT_NOKEY, _) => Ok(()),
            (s, _) => Err(format!("proxymap status {s}")),
        }
    }
}
