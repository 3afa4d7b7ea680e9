//! Next-hop destination syntax, as Postfix's smtp(8) and lmtp(8) accept it:
//! `domain`, `domain:port`, `[host]`, `[host]:port`, `[ipv6:addr]:port`, and for LMTP
//! `unix:pathname`, `inet:host`, `inet:host:port`, `inet:[addr]:port`.
//!
//! Parsing only: what the destination means (MX lookup or not) is the caller's business.
//! A malformed destination is a configuration error, which defers mail rather than bouncing.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Inet {
        /// Host name or address, without brackets or an `ipv6:` prefix.
        host: String,
        port: u16,
        /// True unless the host was in brackets: look up MX records first.
        mx: bool,
    },
    Unix(PathBuf),
}

/// Well-known service names, resolved without /etc/services as Postfix 3.6+ does for the
/// names that matter to mail.
pub fn port_by_name(name: &str) -> Option<u16> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return name.parse::<u16>().ok().filter(|&p| p != 0);
    }
    Some(match name.to_ascii_lowercase().as_str() {
        "smtp" => 25,
        "lmtp" => 24,
        "submission" => 587,
        "submissions" | "smtps" => 465,
        _ => return None,
    })
}

fn split_host_port(s: &str) -> Result<(String, Option<&str>, bool), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("missing \"]\" in destination \"{s}\""))?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("garbage after \"]\" in destination \"{s}\""))?,
            ),
        };
        let host = host
            .strip_prefix("ipv6:")
            .or_else(|| host.strip_prefix("IPv6:"))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(format!("empty host in destination \"{s}\""));
        }
        Ok((host.to_string(), port, false))
    } else {
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if host.is_empty() {
            return Err(format!("empty host in destination \"{s}\""));
        }
        if host.contains(':') {
            return Err(format!(
                "bad destination \"{s}\": an IPv6 address must be in [brackets]"
            ));
        }
        Ok((host.to_string(), port, true))
    }
}

fn valid_host(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
        || (host.len() <= 255
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }))
}

/// The names connection caching goes by (Postfix's smtp_cache_policy and request-nexthop
/// label): the bare domain or path for smtp_connection_cache_destinations, and the
/// destination as given (a UNIX-domain path without `unix:`) for the cache label.
pub fn cache_names(dest: &str) -> (String, String) {
    let dest = dest.trim();
    if let Some(path) = dest.strip_prefix("unix:") {
        return (path.to_string(), path.to_string());
    }
    let body = dest.strip_prefix("inet:").unwrap_or(dest);
    let domain = split_host_port(body)
        .map(|(h, _, _)| h)
        .unwrap_or_else(|_| body.to_string());
    (domain, dest.to_string())
}

/// Parse a destination. `lmtp` enables the `unix:`/`inet:` forms and changes the meaning of
/// a bare name (LMTP never looks up MX records). `default_port` is smtp_tcp_port/lmtp_tcp_port.
pub fn parse(dest: &str, lmtp: bool, default_port: u16) -> Result<Dest, String> {
    let dest = dest.trim();
    if dest.is_empty() {
        return Err("empty destination".to_string());
    }
    if let Some(path) = dest.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("empty pathname in destination \"{dest}\""));
        }
        return Ok(Dest::Unix(PathBuf::from(path)));
    }
    let (body, mx_allowed) = match dest.strip_prefix("inet:") {
        Some(rest) => (rest, false),
        None => (dest, !lmtp),
    };
    let (host, port, mx) = split_host_port(body)?;
    if !valid_host(&host) {
        return Err(format!(
            "bad host name \"{host}\" in destination \"{dest}\""
        ));
    }
    let port = match port {
        None => default_port,
        Some(p) => {
            port_by_name(p).ok_or_else(|| format!("bad port \"{p}\" in destination \"{dest}\""))?
        }
    };
    Ok(Dest::Inet {
        host,
        port,
        mx: mx && mx_allowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(host: &str, port: u16, mx: bool) -> Dest {
        Dest::Inet {
            host: host.into(),
            port,
            mx,
        }
    }

    #[test]
    fn cache_names_strip_brackets_ports_and_unix() {
        assert_eq!(
            cache_names("[mx.example]:587"),
            ("mx.example".to_string(), "[mx.example]:587".to_string())
        );
        assert_eq!(
            cache_names("unix:/run/lmtp"),
            ("/run/lmtp".to_string(), "/run/lmtp".to_string())
        );
        assert_eq!(cache_names("example.com").0, "example.com");
    }

    #[test]
    fn forms() {
        assert_eq!(
            parse("example.com", false, 25),
            Ok(inet("example.com", 25, true))
        );
        assert_eq!(
            parse("example.com:2525", false, 25),
            Ok(inet("example.com", 2525, true))
        );
        assert_eq!(
            parse("[mx.example.com]", false, 25),
            Ok(inet("mx.example.com", 25, false))
        );
        assert_eq!(
            parse("[mx.example.com]:submission", false, 25),
            Ok(inet("mx.example.com", 587, false))
        );
        assert_eq!(
            parse("[127.0.0.1]:26", false, 25),
            Ok(inet("127.0.0.1", 26, false))
        );
        assert_eq!(
            parse("[ipv6:::1]:26", false, 25),
            Ok(inet("::1", 26, false))
        );
        assert_eq!(parse("[::1]:26", false, 25), Ok(inet("::1", 26, false)));
        assert_eq!(
            parse("unix:/run/lmtp", true, 24),
            Ok(Dest::Unix("/run/lmtp".into()))
        );
        assert_eq!(parse("inet:host", true, 24), Ok(inet("host", 24, false)));
        assert_eq!(
            parse("inet:host:lmtp", true, 24),
            Ok(inet("host", 24, false))
        );
        assert_eq!(
            parse("inet:[::1]:2400", true, 24),
            Ok(inet("::1", 2400, false))
        );
        assert_eq!(parse("host", true, 24), Ok(inet("host", 24, false)));
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "[x",
            "[x]y",
            "[]",
            "host:",
            "host:0",
            "host:99999",
            "host:bogus",
            "a..b",
            "::1",
            "unix:",
            "bad host",
        ] {
            assert!(parse(bad, false, 25).is_err(), "{bad}");
        }
    }
}
