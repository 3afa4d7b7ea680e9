//! Per-server tables keyed by the server's IP address: smtp_discard_ehlo_keyword_address_maps
//! (EHLO keywords to ignore) and smtp_pix_workaround_maps (PIX workarounds to apply).
//!
//! Opened once per process and configuration (the daemon front and the command line build
//! their `Params` per request) and shared; handles are used under a Mutex since they are
//! not thread-safe.

use crate::config::Config;
use crate::log;
use crate::table::{Maps, MapsOptions};
use std::sync::{Arc, Mutex, OnceLock};

pub struct PeerTables {
    ehlo_discard: Option<(Mutex<Maps>, String)>,
    pix: Option<(Mutex<Maps>, String)>,
}

impl std::fmt::Debug for PeerTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTables")
            .field("ehlo_discard", &self.ehlo_discard.as_ref().map(|m| &m.1))
            .field("pix", &self.pix.as_ref().map(|m| &m.1))
            .finish()
    }
}

fn open(cfg: &Config, param: &str) -> Option<(Mutex<Maps>, String)> {
    let list = cfg.get(param);
    if list.trim().is_empty() {
        return None;
    }
    let title = cfg.name_for(param);
    let opts = MapsOptions {
        utf8: cfg.bool("smtputf8_enable"),
        fold: true,
    };
    match Maps::open(&title, &list, &opts) {
        Ok(maps) => {
            for e in maps.open_errors() {
                log::warn(&e.to_string());
            }
            Some((Mutex::new(maps), title))
        }
        Err(e) => {
            // A malformed list: every lookup fails, so mail defers rather than bounces.
            log::warn(&format!("{title}: {e}"));
            let stand_in = Maps::open(&title, "fail:broken", &opts).ok()?;
            Some((Mutex::new(stand_in), title))
        }
    }
}

type Cache = Mutex<Vec<(String, Arc<PeerTables>)>>;

impl PeerTables {
    /// The tables for this configuration, opened on first use; `None` when neither
    /// parameter is set.
    pub fn shared(cfg: &Config) -> Option<Arc<PeerTables>> {
        let a = cfg.get("smtp_discard_ehlo_keyword_address_maps");
        let b = cfg.get("smtp_pix_workaround_maps");
        if a.trim().is_empty() && b.trim().is_empty() {
            return None;
        }
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let key = format!("{a}\n{b}");
        let mut cache = CACHE
            .get_or_init(Cache::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((_, t)) = cache.iter().find(|(k, _)| *k == key) {
            return Some(t.clone());
        }
        let t = Arc::new(PeerTables {
            ehlo_discard: open(cfg, "smtp_discard_ehlo_keyword_address_maps"),
            pix: open(cfg, "smtp_pix_workaround_maps"),
        });
        cache.push((key, t.clone()));
        Some(t)
    }

    /// EHLO keywords to discard for the server at `addr`: `Ok(None)` means use
    /// smtp_discard_ehlo_keywords. `Err` is Postfix's warning text (the session then
    /// fails with "local data error").
    pub fn ehlo_discard(&self, addr: &str) -> Result<Option<Vec<String>>, String> {
        let Some((maps, title)) = &self.ehlo_discard else {
            return Ok(None);
        };
        let found = maps.lock().unwrap_or_else(|p| p.into_inner()).find(addr);
        match found {
            Ok(v) => Ok(v.map(|v| words(&v))),
            Err(e) => {
                log::warn(&e.to_string());
                Err(format!("{title} map lookup error for {addr}"))
            }
        }
    }

    /// PIX workarounds for the server at `addr`, when the table has it. Lookup errors
    /// fall back to smtp_pix_workarounds, as in Postfix.
    pub fn pix(&self, addr: &str) -> Option<Vec<String>> {
        let (maps, _) = self.pix.as_ref()?;
        let found = maps.lock().unwrap_or_else(|p| p.into_inner()).find(addr);
        found.ok().flatten().map(|v| words(&v))
    }
}

/// A name list as name_mask() splits it: on commas and white space.
fn words(v: &str) -> Vec<String> {
    v.split([',', ' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words() {
        assert_eq!(
            words(" pipelining, AUTH\tsize "),
            ["pipelining", "AUTH", "size"]
        );
    }
}
