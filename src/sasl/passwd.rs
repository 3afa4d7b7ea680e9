//! smtp_sasl_password_maps: which keys are tried, in which order, and how the value is
//! read.
//!
//! Order (Postfix 3.7): with smtp_sender_dependent_authentication, in SMTP mode only and
//! for a non-empty sender, the sender address the way mail_addr_find looks it up
//! (`user+ext@domain`, `user@domain`, for a local domain `user+ext` and `user`, then
//! `@domain`); then the server's host name; then the next-hop destination as written
//! (`[mail.isp.example]:587`, `example.com`). No port is appended to the host name: Postfix
//! keys on the port only through the destination text. The first key that finds a value
//! wins; a lookup error stops the search (the delivery is deferred).

use super::mech::Credentials;

/// One lookup key. `partial` marks keys derived from the address (not the full query):
/// Postfix sends those only to tables with fixed-string keys, never to regexp/pcre ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupKey {
    pub key: String,
    pub partial: bool,
}

/// What decides the keys.
pub struct KeyQuery<'a> {
    /// smtp_sender_dependent_authentication.
    pub sender_dependent: bool,
    /// True for lmtp(8): sender-dependent lookups are SMTP-only in Postfix.
    pub lmtp: bool,
    /// The envelope sender (empty for the null sender).
    pub sender: &'a str,
    /// recipient_delimiter (empty: none).
    pub recipient_delimiter: &'a str,
    /// Whether a domain is local ($myorigin, $mydestination, our interface addresses),
    /// which enables the bare localpart keys.
    pub is_local_domain: &'a dyn Fn(&str) -> bool,
    /// The server host name (the MX host, or the host of a [host] destination).
    pub host: &'a str,
    /// The next-hop destination as given (relayhost, transport nexthop, or domain).
    pub dest: &'a str,
}

/// Strip an address extension: `user+ext@domain` -> `user@domain`; None without one.
fn strip_extension(addr: &str, delims: &str) -> Option<String> {
    if delims.is_empty() {
        return None;
    }
    let (local, domain) = match addr.rfind('@') {
        Some(i) => (&addr[..i], Some(&addr[i..])),
        None => (addr, None),
    };
    // Postfix leaves alone a localpart that starts with the delimiter (owner-, -request).
    let i = local
        .char_indices()
        .skip(1)
        .find(|(_, c)| delims.contains(*c))?
        .0;
    Some(format!("{}{}", &local[..i], domain.unwrap_or("")))
}

/// The keys to try, in order (duplicates removed, first occurrence kept).
pub fn password_keys(q: &KeyQuery) -> Vec<LookupKey> {
    let mut keys: Vec<LookupKey> = Vec::new();
    let mut push = |key: String, partial: bool| {
        if !key.is_empty() && !keys.iter().any(|k| k.key == key) {
            keys.push(LookupKey { key, partial });
        }
    };
    if q.sender_dependent && !q.lmtp && !q.sender.is_empty() {
        let full = q.sender.to_string();
        let bare = strip_extension(&full, q.recipient_delimiter);
        push(full.clone(), false);
        if let Some(b) = &bare {
            push(b.clone(), true);
        }
        if let Some(at) = full.rfind('@') {
            let domain = &full[at + 1..];
            if (q.is_local_domain)(domain) {
                push(full[..at].to_string(), true);
                if let Some(b) = &bare
                    && let Some(bat) = b.rfind('@')
                {
                    push(b[..bat].to_string(), true);
                }
            }
            push(full[at..].to_string(), true);
        }
    }
    push(q.host.to_string(), false);
    push(q.dest.to_string(), false);
    keys
}

/// A smtp_sasl_password_maps query: (key, partial) -> value, or a table error.
pub type PasswordLookup<'a> = &'a dyn Fn(&str, bool) -> Result<Option<String>, String>;

/// Look the credentials up. `lookup(key, partial)` queries smtp_sasl_password_maps;
/// Ok(None) when no key matched, Err(table error) to defer ("local data error").
pub fn lookup_credentials(
    q: &KeyQuery,
    lookup: PasswordLookup,
) -> Result<Option<Credentials>, String> {
    for k in password_keys(q) {
        if let Some(v) = lookup(&k.key, k.partial)? {
            return Ok(Some(Credentials::parse(&v)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(q: &KeyQuery) -> Vec<String> {
        password_keys(q).into_iter().map(|k| k.key).collect()
    }

    fn base<'a>(local: &'a dyn Fn(&str) -> bool) -> KeyQuery<'a> {
        KeyQuery {
            sender_dependent: false,
            lmtp: false,
            sender: "joe+list@example.com",
            recipient_delimiter: "+",
            is_local_domain: local,
            host: "mx1.isp.example",
            dest: "[mail.isp.example]:587",
        }
    }

    #[test]
    fn host_then_destination() {
        let nl = |_: &str| false;
        assert_eq!(
            keys(&base(&nl)),
            ["mx1.isp.example", "[mail.isp.example]:587"]
        );
        let mut q = base(&nl);
        q.dest = "mx1.isp.example";
        assert_eq!(keys(&q), ["mx1.isp.example"]);
    }

    #[test]
    fn sender_dependent_order() {
        let nl = |_: &str| false;
        let mut q = base(&nl);
        q.sender_dependent = true;
        assert_eq!(
            keys(&q),
            [
                "joe+list@example.com",
                "joe@example.com",
                "@example.com",
                "mx1.isp.example",
                "[mail.isp.example]:587"
            ]
        );
        let p = password_keys(&q);
        assert!(!p[0].partial && p[1].partial && p[2].partial && !p[3].partial);
        let local = |d: &str| d == "example.com";
        let mut q = base(&local);
        q.sender_dependent = true;
        assert_eq!(
            keys(&q)[..5],
            [
                "joe+list@example.com",
                "joe@example.com",
                "joe+list",
                "joe",
                "@example.com"
            ]
        );
        // Null sender and LMTP: no sender keys.
        let mut q = base(&nl);
        q.sender_dependent = true;
        q.sender = "";
        assert_eq!(keys(&q).len(), 2);
        q.sender = "a@b";
        q.lmtp = true;
        assert_eq!(keys(&q).len(), 2);
        // No delimiter: no extension stripping.
        let mut q = base(&nl);
        q.sender_dependent = true;
        q.recipient_delimiter = "";
        assert_eq!(keys(&q)[..2], ["joe+list@example.com", "@example.com"]);
    }

    #[test]
    fn first_match_wins_and_errors_stop() {
        let nl = |_: &str| false;
        let q = base(&nl);
        let found = lookup_credentials(&q, &|k, _| {
            Ok((k == "[mail.isp.example]:587").then(|| "u:p:w".to_string()))
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("u", "p:w")
        );
        assert!(lookup_credentials(&q, &|_, _| Err("hash:/etc/x".into())).is_err());
        assert_eq!(lookup_credentials(&q, &|_, _| Ok(None)).unwrap(), None);
    }

    #[test]
    fn extension_stripping() {
        assert_eq!(strip_extension("a+b@c", "+").as_deref(), Some("a@c"));
        assert_eq!(strip_extension("a-b+c@d", "+-").as_deref(), Some("a@d"));
        assert_eq!(strip_extension("+a@c", "+"), None);
        assert_eq!(strip_extension("ab@c", "+"), None);
    }
}
