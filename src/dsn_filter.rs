//! smtp_delivery_status_filter (global/dsn_filter.c): each final outcome's status and text
//! looked up as "STATUS TEXT"; a result "NEWSTATUS NEW TEXT" replaces them. A success stays
//! a success and a failure stays a failure; a failure may move between deferral (4.x.x)
//! and bounce (5.x.x). The table is opened once per process and configuration.

use crate::config::Config;
use crate::log;
use crate::outcome::Dsn;
use crate::table::{Maps, MapsOptions};
use std::sync::{Arc, Mutex, OnceLock};

pub struct DsnFilter {
    maps: Mutex<Maps>,
    title: String,
}

impl std::fmt::Debug for DsnFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsnFilter")
            .field("title", &self.title)
            .finish()
    }
}

type Cache = Mutex<Vec<(String, Arc<DsnFilter>)>>;

/// dsn_valid(): the length of the status code at the start of `text` (followed by the
/// end or white space), 0 when there is none.
pub fn dsn_valid(text: &str) -> usize {
    let b = text.as_bytes();
    if b.len() < 2 || !matches!(b[0], b'2' | b'4' | b'5') || b[1] != b'.' {
        return 0;
    }
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let n2 = digits(2);
    if !(1..=3).contains(&n2) || b.get(2 + n2) != Some(&b'.') {
        return 0;
    }
    let start3 = 3 + n2;
    let n3 = digits(start3);
    let end = start3 + n3;
    if !(1..=3).contains(&n3) || !(end == b.len() || b[end].is_ascii_whitespace()) {
        return 0;
    }
    end
}

impl DsnFilter {
    /// The filter for this configuration (None when the parameter is empty).
    pub fn shared(cfg: &Config) -> Option<Arc<DsnFilter>> {
        let list = cfg.get("smtp_delivery_status_filter");
        if list.trim().is_empty() {
            return None;
        }
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let mut cache = CACHE
            .get_or_init(Cache::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((_, f)) = cache.iter().find(|(k, _)| *k == list) {
            return Some(f.clone());
        }
        let title = cfg.name_for("smtp_delivery_status_filter");
        // Opened as Postfix does: DICT_FLAG_LOCK only, keys not folded.
        let opts = MapsOptions {
            utf8: cfg.bool("smtputf8_enable"),
            fold: false,
        };
        let maps = match Maps::open(&title, &list, &opts) {
            Ok(m) => m,
            Err(e) => {
                log::warn(&format!("{title}: {e}"));
                Maps::open(&title, "fail:broken", &opts).ok()?
            }
        };
        for e in maps.open_errors() {
            log::warn(&e.to_string());
        }
        let f = Arc::new(DsnFilter {
            maps: Mutex::new(maps),
            title,
        });
        cache.push((list, f.clone()));
        Some(f)
    }

    /// dsn_filter_lookup(): the replacement for `dsn`, if any. A lookup error leaves a
    /// success alone and turns a bounce into a deferral (a broken table never bounces).
    pub fn apply(&self, dsn: &Dsn) -> Option<Dsn> {
        let success = dsn.status.starts_with('2');
        let key = format!("{} {}", dsn.status, dsn.reason);
        let found = self
            .maps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .find(&key);
        let result = match found {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                log::warn(&e.to_string());
                if dsn.status.starts_with('5') {
                    let mut d = dsn.clone();
                    d.status.replace_range(0..1, "4");
                    return Some(d);
                }
                return None;
            }
        };
        let len = dsn_valid(&result);
        let ok = len > 0
            && if success {
                result.starts_with('2')
            } else {
                result.starts_with('4') || result.starts_with('5')
            };
        if !ok {
            log::warn(&format!("{}: bad status code: {result}", self.title));
            return None;
        }
        let mut d = dsn.clone();
        d.status = result[..len].to_string();
        d.reason = result[len..].trim_start().to_string();
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        assert_eq!(dsn_valid("5.1.1 text"), 5);
        assert_eq!(dsn_valid("4.7.1"), 5);
        assert_eq!(dsn_valid("2.0.0\tx"), 5);
        assert_eq!(dsn_valid("3.0.0 x"), 0);
        assert_eq!(dsn_valid("5.1.1x"), 0);
        assert_eq!(dsn_valid("5.1234.1 x"), 0);
        assert_eq!(dsn_valid("5..1 x"), 0);
    }
}
