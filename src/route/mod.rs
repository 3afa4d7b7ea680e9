//! Routing: from a next-hop destination to the ordered list of endpoints to try.
//!
//! Until the DNS layer arrives, names are resolved with the system resolver (A/AAAA only,
//! no MX); `Dest::Inet { mx: true }` is then treated like a bracketed host.

pub mod dest;

use crate::session::Endpoint;
use dest::Dest;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Resolve a destination to endpoints in the order to try them.
pub fn endpoints(
    dest: &Dest,
    inet_protocols: &str,
) -> Result<Vec<Endpoint>, crate::outcome::Error> {
    match dest {
        Dest::Unix(path) => Ok(vec![Endpoint::unix(path.clone())]),
        Dest::Inet { host, port, .. } => {
            let want4 = inet_protocols.contains("ipv4") || inet_protocols.contains("all");
            let want6 = inet_protocols.contains("ipv6") || inet_protocols.contains("all");
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Ok(vec![Endpoint::inet(
                    host.clone(),
                    SocketAddr::new(ip, *port),
                )]);
            }
            let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| {
                    crate::outcome::Error::temp(
                        "4.4.3",
                        format!("Host or domain name not found. Name service error for name={host} type=A: {e}"),
                    )
                })?
                .filter(|a| (a.is_ipv4() && want4) || (a.is_ipv6() && want6))
                .collect();
            let mut seen = Vec::new();
            for a in addrs {
                if !seen.contains(&a) {
                    seen.push(a);
                }
            }
            if seen.is_empty() {
                return Err(crate::outcome::Error::temp(
                    "4.4.4",
                    format!(
                        "Host or domain name not found. Name service error for name={host} type=A: Host not found"
                    ),
                ));
            }
            Ok(seen
                .into_iter()
                .map(|a| Endpoint::inet(host.clone(), a))
                .collect())
        }
    }
}
