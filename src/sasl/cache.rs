//! The SASL authentication failure cache (smtp_sasl_auth_cache_name,
//! smtp_sasl_auth_cache_time).
//!
//! After a server answers AUTH with 535, Postfix remembers that failure under
//! `host;username` with value `time;base64(SHA1(password));dsn;reply`. While the entry is
//! younger than the cache time and the password is unchanged, later deliveries skip the
//! AUTH dialogue and fail with the remembered reply ("SASL [CACHED] authentication
//! failed"), so a wrong password does not hammer the server (or lock the account). An
//! expired, malformed or outdated entry is deleted. Only the password hash is stored.
//!
//! Storage is a small trait so a Postfix table (proxy:btree:...) can back it later; the
//! in-memory store serves tests and single-process use.

use super::mech::Credentials;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Key/value storage for the cache (a Postfix table in production).
pub trait CacheStore {
    fn get(&mut self, key: &str) -> Result<Option<String>, String>;
    fn put(&mut self, key: &str, value: &str) -> Result<(), String>;
    fn delete(&mut self, key: &str) -> Result<(), String>;
}

/// A process-local store.
#[derive(Default, Debug)]
pub struct MemoryStore(pub HashMap<String, String>);

impl CacheStore for MemoryStore {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        Ok(self.0.get(key).cloned())
    }
    fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        self.0.insert(key.to_string(), value.to_string());
        Ok(())
    }
    fn delete(&mut self, key: &str) -> Result<(), String> {
        self.0.remove(key);
        Ok(())
    }
}

/// A remembered failure: the server's enhanced status and reply text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFailure {
    pub dsn: String,
    pub text: String,
}

pub struct AuthCache {
    name: String,
    store: Box<dyn CacheStore + Send>,
    ttl: Duration,
}

/// Postfix requires the cache to be written through proxymap (one writer); the texts are
/// Postfix's fatal errors for a bad smtp_sasl_auth_cache_name.
pub fn check_cache_name(name: &str) -> Result<(), String> {
    if name.contains([',', ' ', '\t', '\r', '\n']) {
        return Err(format!(
            "SASL authentication cache name \"{name}\" contains multiple values"
        ));
    }
    if !name.starts_with("proxy:") {
        return Err(format!(
            "SASL authentication cache name \"{name}\" must start with \"proxy:"
        ));
    }
    Ok(())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn password_hash(password: &str) -> String {
    B64.encode(super::mech::Hash::Sha1.digest(password.as_bytes()))
}

fn key(host: &str, user: &str) -> String {
    format!("{host};{user}")
}

/// An enhanced status code as Postfix's dsn_valid accepts it: [245].N{1,3}.N{1,3}.
fn dsn_valid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

impl AuthCache {
    /// `name` is only used in warnings (the table's name).
    pub fn new(name: &str, store: Box<dyn CacheStore + Send>, ttl: Duration) -> AuthCache {
        AuthCache {
            name: name.to_string(),
            store,
            ttl,
        }
    }

    /// The remembered failure for this server and these credentials, if still valid.
    /// Warnings (Postfix's texts) go to `warn`.
    pub fn find(
        &mut self,
        host: &str,
        creds: &Credentials,
        warn: &mut dyn FnMut(String),
    ) -> Option<CachedFailure> {
        let k = key(host, &creds.username);
        let entry = match self.store.get(&k) {
            Ok(Some(e)) => e,
            Ok(None) => return None,
            Err(_) => {
                warn(format!(
                    "SASL auth failure map {}: lookup failed for {k}",
                    self.name
                ));
                return None;
            }
        };
        let mut f = entry.splitn(4, ';');
        let (stamp, hash, dsn, text) = (f.next(), f.next(), f.next(), f.next());
        let parsed = match (stamp.and_then(|s| s.parse::<u64>().ok()), hash, dsn, text) {
            (Some(t), Some(h), Some(d), Some(x))
                if dsn_valid(d) && !h.is_empty() && !x.is_empty() =>
            {
                // Postfix reads the text up to the first newline only.
                Some((t, h, d, x.split('\n').next().unwrap_or("")))
            }
            _ => {
                let shown: String = entry.chars().take(100).collect();
                warn(format!("bad smtp_sasl_auth_cache entry: {shown}"));
                None
            }
        };
        let valid = parsed.and_then(|(t, h, d, x)| {
            let fresh = t.saturating_add(self.ttl.as_secs()) >= now_secs();
            (fresh && h == password_hash(&creds.password)).then(|| CachedFailure {
                dsn: d.to_string(),
                text: x.to_string(),
            })
        });
        if valid.is_none() && self.store.delete(&k).is_err() {
            warn(format!(
                "SASL auth failure map {}: entry not deleted: {k}",
                self.name
            ));
        }
        valid
    }

    /// Remember a 535 failure (status and reply as the server gave them).
    pub fn store(&mut self, host: &str, creds: &Credentials, dsn: &str, text: &str) {
        let value = format!(
            "{};{};{dsn};{text}",
            now_secs(),
            password_hash(&creds.password)
        );
        // Postfix ignores update errors here too: the cache is an optimisation.
        let _ = self.store.put(&key(host, &creds.username), &value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(p: &str) -> Credentials {
        Credentials {
            username: "joe".into(),
            password: p.into(),
        }
    }

    #[test]
    fn store_find_expire_and_password_change() {
        let mut c = AuthCache::new(
            "proxy:btree:/x",
            Box::new(MemoryStore::default()),
            Duration::from_secs(3600),
        );
        let mut warnings = Vec::new();
        let mut w = |s: String| warnings.push(s);
        assert_eq!(c.find("mx", &creds("pw"), &mut w), None);
        c.store("mx", &creds("pw"), "5.7.8", "535 5.7.8 bad credentials");
        assert_eq!(
            c.find("mx", &creds("pw"), &mut w),
            Some(CachedFailure {
                dsn: "5.7.8".into(),
                text: "535 5.7.8 bad credentials".into()
            })
        );
        assert_eq!(c.find("other", &creds("pw"), &mut w), None);
        // A changed password invalidates (and removes) the entry.
        assert_eq!(c.find("mx", &creds("new"), &mut w), None);
        assert_eq!(c.find("mx", &creds("pw"), &mut w), None);
        assert!(warnings.is_empty());
    }

    #[test]
    fn stored_value_format_and_bad_entries() {
        let mut store = MemoryStore::default();
        store.put("mx;joe", "1;xx;9.9.9;text").unwrap();
        let mut c = AuthCache::new("proxy:btree:/x", Box::new(store), Duration::from_secs(60));
        let mut warnings = Vec::new();
        assert_eq!(c.find("mx", &creds("pw"), &mut |s| warnings.push(s)), None);
        assert_eq!(
            warnings,
            ["bad smtp_sasl_auth_cache entry: 1;xx;9.9.9;text"]
        );
        // Expired entries are dropped silently.
        c.store("mx", &creds("pw"), "5.7.8", "535 x");
        let mut c2 = AuthCache::new("n", Box::new(MemoryStore::default()), Duration::ZERO);
        c2.store("mx", &creds("pw"), "5.7.8", "535 x");
        let mut w2 = Vec::new();
        // A zero TTL still holds within the same second, as in Postfix (time + ttl < now).
        assert!(c2.find("mx", &creds("pw"), &mut |s| w2.push(s)).is_some());
        assert_eq!(password_hash("pw").len(), 28);
        assert!(!format!("{:?}", password_hash("pw")).contains("pw"));
    }

    #[test]
    fn cache_name_rules() {
        assert!(check_cache_name("proxy:btree:/var/lib/postfix/sasl_auth_cache").is_ok());
        assert!(check_cache_name("btree:/x").is_err());
        assert!(check_cache_name("proxy:a, proxy:b").is_err());
    }
}
